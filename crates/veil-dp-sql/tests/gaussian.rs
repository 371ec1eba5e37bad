//! Gaussian noise in DP SQL (issue 18): each statistic sized by its L2 sensitivity, the query's
//! (ε, δ) converted to ρ (zCDP) and split over its measurements, the charge exactly the
//! (ε, δ) asked; refusals that cost nothing; private keys thresholded with their share of δ;
//! and the grid rounding of every group a person moves covered by the noise (an audit found
//! one step covered where L0 were needed).

use std::path::{Path, PathBuf};

use veil_dp::accountant::{epsilon_to_zcdp, zcdp_to_epsilon};
use veil_dp::ledger::SqliteLedger;
use veil_dp::noise::Grid;
use veil_dp_sql::{Engine, Metadata, Noise, QueryOptions};

/// Ten public cities; a person brings at most one row to each of at most 9 of them.
const TRIPS: &str = r#"
[budget]
epsilon = 1000000.0
delta = 0.5

[table.trips]
privacy_unit = "person_id"
max_rows_per_unit = 100
max_groups_per_unit = 9
max_rows_per_group = 1

[table.trips.columns]
person_id = { type = "int" }
city = { type = "string", public_keys = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"] }
place = { type = "string" }
fare = { type = "float", lower = 0, upper = 100 }
"#;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 200 persons with one trip to A; person 9999 with one trip to each city and to two places
/// nobody else visits.
fn trips(name: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("veil-dp-sql-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("person_id,city,place,fare\n");
    for i in 1..=200 {
        csv.push_str(&format!("{i},A,home,10.0\n"));
    }
    for c in ["B", "C", "D", "E", "F", "G", "H", "I", "J"] {
        csv.push_str(&format!("9999,{c},home,100.0\n"));
    }
    csv.push_str("9999,A,secret-1,100.0\n9999,A,secret-2,100.0\n");
    std::fs::write(dir.join("trips.csv"), &csv).unwrap();
    Dir(dir)
}

async fn engine(dir: &Path, meta: &str) -> Engine {
    let path = dir.join("trips.csv");
    Engine::embedded(
        Metadata::from_toml(meta).unwrap(),
        &[("trips".into(), path.as_path())],
    )
    .await
    .unwrap()
}

fn ledger(dir: &Path) -> SqliteLedger {
    let l = SqliteLedger::open(dir.join("budget.db")).unwrap();
    l.set_budget("trips", None, 1e6, 0.5).unwrap();
    l
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn gaussian(epsilon: f64, delta: f64) -> QueryOptions {
    QueryOptions {
        epsilon,
        delta,
        noise: Some(Noise::Gaussian),
        ..QueryOptions::default()
    }
}

const PER_CITY: &str = "SELECT city, COUNT(*) AS n FROM trips GROUP BY city ORDER BY city";

#[test]
fn gaussian_noise_is_sized_by_l2_and_charged_as_its_zcdp_conversion() {
    let d = trips("gauss-l2");
    let l = ledger(&d.0);
    rt().block_on(async {
        let e = engine(&d.0, TRIPS).await;
        let (eps, delta) = (1.0, 1e-3);
        // Laplace: L1 = 9 groups × 1 row. Gaussian: L2 = √(9 · 1) = 3.
        let lap = e
            .preview(&l, "trips", "t", PER_CITY, QueryOptions::default())
            .await
            .unwrap();
        assert_eq!(lap.noise, Noise::Laplace);
        assert_eq!(lap.measurements[0].sensitivity, 9.0);
        assert_eq!(lap.delta, 0.0, "Laplace over public keys spends no δ");
        let p = e
            .preview(&l, "trips", "t", PER_CITY, gaussian(eps, delta))
            .await
            .unwrap();
        assert_eq!(p.noise, Noise::Gaussian);
        assert_eq!(p.measurements[0].mechanism, "Gaussian");
        assert_eq!(p.measurements[0].sensitivity, 3.0);
        let rho = epsilon_to_zcdp(eps, delta).unwrap();
        assert_eq!(p.rho, Some(rho));
        assert!(zcdp_to_epsilon(rho, delta).unwrap() <= eps * (1.0 + 1e-12));
        assert_eq!((p.epsilon, p.delta), (eps, delta));
        // σ covers L2 plus √L0 grid steps (one per group a person moves).
        let sigma = p.measurements[0].scale.unwrap();
        let s = Grid::for_scale(3.0 / (2.0 * rho).sqrt()).spacing();
        let want = (3.0 + 3.0 * s) / (2.0 * rho).sqrt();
        assert!((sigma - want).abs() <= 1e-12 * want, "σ {sigma} ≠ {want}");
        // At ε = 1, δ = 10⁻³ and L0 = 9, a Gaussian per-city count is the more accurate.
        let (lap_w, gau_w) = (lap.accuracy["n"].unwrap(), p.accuracy["n"].unwrap());
        assert!(gau_w < lap_w, "Gaussian ±{gau_w} vs Laplace ±{lap_w}");

        // A quantile keeps report-noisy-max, pure at the ε whose ε²/2 is its ρ share.
        let q = e
            .preview(
                &l,
                "trips",
                "t",
                "SELECT city, MEDIAN(fare) AS m FROM trips GROUP BY city",
                gaussian(eps, delta),
            )
            .await
            .unwrap();
        let m = &q.measurements[0];
        assert_eq!(m.mechanism, "report noisy max", "{q:?}");
        assert!((m.epsilon - (2.0 * rho).sqrt()).abs() < 1e-12, "{m:?}");
        // The charge is exactly the (ε, δ) asked, and the answer says what it was.
        let before = l.remaining("trips", None).unwrap();
        let r = e
            .query(&l, "trips", "t", PER_CITY, gaussian(eps, delta))
            .await
            .unwrap();
        let after = l.remaining("trips", None).unwrap();
        assert!((before.epsilon - after.epsilon - eps).abs() < 1e-9);
        assert!((before.delta - after.delta - delta).abs() < 1e-12);
        assert_eq!((r.noise, r.rho), (Noise::Gaussian, Some(rho)));
        let j = r.to_json().unwrap();
        assert_eq!(j["noise"], "gaussian");
        assert_eq!(r.rows().unwrap().len(), 10, "every public key");
    });
}

#[test]
fn gaussian_answers_fall_in_their_stated_interval_as_often_as_stated() {
    let d = trips("gauss-cover");
    let l = ledger(&d.0);
    rt().block_on(async {
        let e = engine(&d.0, TRIPS).await;
        let sql = "SELECT COUNT(*) AS n FROM trips WHERE city = 'A'";
        let (mut inside, mut errs, runs) = (0, Vec::new(), 300);
        let mut half = 0.0;
        for _ in 0..runs {
            let r = e
                .query(&l, "trips", "t", sql, gaussian(0.5, 1e-5))
                .await
                .unwrap();
            half = r.accuracy["n"].unwrap();
            let n = r.rows().unwrap()[0][0].as_f64().unwrap();
            // The truth: 200 persons, and one of person 9999's two trips to A (one row per
            // unit without GROUP BY: L∞ = 1).
            let err = n - 201.0;
            errs.push(err);
            if err.abs() <= half + 0.5 {
                inside += 1;
            }
        }
        let rate = f64::from(inside) / f64::from(runs);
        assert!((0.90..=0.995).contains(&rate), "{rate} inside ±{half}");
        // The spread is the announced σ (1.96 σ = the 95% half-width), not smaller.
        let sd = (errs.iter().map(|x| x * x).sum::<f64>() / f64::from(runs)).sqrt();
        let sigma = half / 1.96;
        assert!(
            (0.85 * sigma..1.15 * sigma).contains(&sd),
            "sd {sd} vs σ {sigma}"
        );
    });
}

#[test]
fn gaussian_noise_without_delta_is_refused_and_costs_nothing() {
    let d = trips("gauss-refuse");
    let l = ledger(&d.0);
    rt().block_on(async {
        let e = engine(&d.0, TRIPS).await;
        let before = l.remaining("trips", None).unwrap();
        let err = e
            .query(&l, "trips", "t", PER_CITY, gaussian(1.0, 0.0))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("δ > 0"), "{err}");
        assert_eq!(l.remaining("trips", None).unwrap(), before);
        // A dataset whose metadata chooses Gaussian noise gets it by default…
        let meta = TRIPS.replace("delta = 0.5", "delta = 0.5\nnoise = \"gaussian\"");
        let g = engine(&d.0, &meta).await;
        let p = g
            .preview(&l, "trips", "t", PER_CITY, QueryOptions::default())
            .await
            .unwrap();
        assert_eq!(p.noise, Noise::Gaussian);
        // … and a query may still ask for Laplace.
        let lap = QueryOptions {
            noise: Some(Noise::Laplace),
            ..QueryOptions::default()
        };
        let p = g.preview(&l, "trips", "t", PER_CITY, lap).await.unwrap();
        assert_eq!(p.noise, Noise::Laplace);
        // Metadata that chooses Gaussian noise with no δ to spend is refused when loaded.
        let bad = TRIPS
            .replace("delta = 0.5", "delta = 0.0\nnoise = \"gaussian\"")
            .to_string();
        let err = Metadata::from_toml(&bad).unwrap_err();
        assert!(err.to_string().contains("gaussian"), "{err}");
        assert!("uniform".parse::<Noise>().is_err());
    });
}

/// The attack on private keys: person 9999 alone visits `secret-1` and `secret-2`. With
/// Gaussian noise the threshold is `L∞ + σ √(2 ln(L0 / δ_τ))` with `δ_τ = δ/2` (the other half
/// converts ρ): over many queries at a large δ, a secret place comes out no more often than
/// `δ_τ` allows.
#[test]
fn a_key_only_one_person_holds_passes_the_gaussian_threshold_at_most_delta_of_the_time() {
    let d = trips("gauss-tau");
    rt().block_on(async {
        let e = engine(&d.0, TRIPS).await;
        let sql = "SELECT place, COUNT(*) AS n FROM trips GROUP BY place";
        let delta = 0.1;
        let runs = 300;
        let mut leaked = 0;
        let mut tau = 0.0;
        for i in 0..runs {
            // A fresh budget every four queries: δ = 0.1 each would exhaust any one.
            if i % 4 == 0 {
                let _ = std::fs::remove_file(d.0.join("budget.db"));
            }
            let l = ledger(&d.0);
            let r = e
                .query(&l, "trips", "t", sql, gaussian(1.0, delta))
                .await
                .unwrap();
            tau = r.threshold.unwrap();
            let rows = r.rows().unwrap();
            assert!(rows.iter().any(|row| row[0] == "home"), "200 persons");
            if rows
                .iter()
                .any(|row| row[0].as_str().unwrap().starts_with("secret"))
            {
                leaked += 1;
            }
        }
        let p = e
            .preview(&ledger(&d.0), "trips", "t", sql, gaussian(1.0, delta))
            .await
            .unwrap();
        let sigma = p.measurements[0].scale.unwrap();
        let want = 1.0 + sigma * (2.0 * (9.0 / (delta / 2.0)).ln()).sqrt();
        assert!((tau - want).abs() < 1e-9, "τ {tau} ≠ {want}");
        // δ_τ = 0.05: the bound, plus three standard deviations of a binomial over 300 runs.
        let rate = f64::from(leaked) / f64::from(runs);
        assert!(
            rate <= 0.05 + 3.0 * (0.05f64 * 0.95 / 300.0).sqrt(),
            "{rate}"
        );
    });
}

/// The engine sizes Laplace noise for the grid rounding of every group a person moves: with
/// L0 = 9, `b = (L1 + 9·step) / ε`, not `(L1 + step) / ε` as before the audit.
#[test]
fn laplace_noise_covers_the_rounding_of_every_group_a_person_moves() {
    let d = trips("lap-grid");
    let l = ledger(&d.0);
    rt().block_on(async {
        let e = engine(&d.0, TRIPS).await;
        let sql = "SELECT city, SUM(fare) AS f FROM trips GROUP BY city";
        let p = e
            .preview(&l, "trips", "t", sql, QueryOptions::default())
            .await
            .unwrap();
        let m = &p.measurements[0];
        assert_eq!(m.mechanism, "Laplace");
        assert_eq!(m.sensitivity, 900.0, "9 groups × 1 row × 100");
        let s = Grid::for_scale(900.0 / m.epsilon).spacing();
        let want = (900.0 + 9.0 * s) / m.epsilon;
        let b = m.scale.unwrap();
        assert!((b - want).abs() <= 1e-12 * want, "b {b} ≠ {want}");
    });
}

/// The ledger composes Gaussian queries in zCDP (a dataset whose metadata chooses Gaussian
/// noise is registered with zCDP accounting): at (0.5, 10⁻⁶) each against a total of
/// (2, 10⁻⁵), basic composition pays for 4 queries and zCDP for ⌊ρ_total / ρ_each⌋ = 17. Each
/// answer says what was charged; a Laplace query is charged ε²/2 per measurement share; the
/// δ of private-key thresholding is charged outright; the preview agrees with the charge, and
/// a refused query costs nothing.
#[test]
fn a_zcdp_dataset_pays_for_many_more_gaussian_queries_than_basic_composition() {
    use veil_dp::ledger::Accounting;
    let d = trips("zcdp-ledger");
    let meta_text = TRIPS
        .replace("epsilon = 1000000.0", "epsilon = 2.0")
        .replace("delta = 0.5", "delta = 1e-5\nnoise = \"gaussian\"");
    let meta = Metadata::from_toml(&meta_text).unwrap();
    assert_eq!(meta.budget.accounting(), Accounting::Zcdp);
    let l = SqliteLedger::open(d.0.join("budget.db")).unwrap();
    for (name, accounting) in [("trips", Accounting::Zcdp), ("basic", Accounting::Approx)] {
        l.register_with(
            name,
            &veil_dp_sql::dataset::metadata_sha256(meta_text.as_bytes()),
            2.0,
            1e-5,
            accounting,
        )
        .unwrap();
    }
    let count = "SELECT COUNT(*) AS n FROM trips";
    rt().block_on(async {
        let e = engine(&d.0, &meta_text).await;
        let (eps, delta) = (0.5, 1e-6);
        let rho_each = epsilon_to_zcdp(eps, delta).unwrap();
        let rho_total = epsilon_to_zcdp(2.0, 5e-6).unwrap();
        let until_refused = |dataset: &'static str| {
            let e = &e;
            let l = &l;
            async move {
                let mut n = 0;
                loop {
                    match e.query(l, dataset, "t", count, gaussian(eps, delta)).await {
                        Ok(r) => {
                            n += 1;
                            if dataset == "trips" {
                                assert_eq!(r.accounting, Accounting::Zcdp);
                                assert_eq!(r.charged.epsilon, 0.0);
                                assert_eq!(r.charged.delta, 0.0, "public keys: no δ outright");
                                assert_eq!(r.charged.rho, rho_each);
                                assert_eq!(r.rho, Some(rho_each));
                                assert_eq!(r.to_json().unwrap()["accounting"], "zcdp");
                            } else {
                                assert_eq!((r.charged.epsilon, r.charged.delta), (eps, delta));
                            }
                        }
                        Err(err) => {
                            assert!(err.to_string().contains("budget"), "{err}");
                            return n;
                        }
                    }
                    assert!(n < 1000);
                }
            }
        };
        assert_eq!(until_refused("basic").await, 4);
        let n = until_refused("trips").await;
        let expected = (rho_total / rho_each).floor() as usize;
        assert!(n + 1 >= expected && n <= expected, "{n} vs {expected}");
        assert!(n >= 4 * 4, "{n}: four times basic composition's 4");
        let spent: f64 = l.history("trips").unwrap().iter().map(|c| c.rho).sum();
        assert!(zcdp_to_epsilon(spent, 5e-6).unwrap() <= 2.0);
        // The preview says the next one is not affordable, and the refusal costs nothing.
        let p = e
            .preview(&l, "trips", "t", count, gaussian(eps, delta))
            .await
            .unwrap();
        assert!(!p.affordable);
        assert_eq!(p.charged.rho, rho_each);
        assert_eq!(l.history("trips").unwrap().len(), n);
    });

    // Laplace on a zCDP budget: one measurement at ε is ε²/2; private keys spend δ outright.
    let d2 = trips("zcdp-laplace");
    let l = SqliteLedger::open(d2.0.join("budget.db")).unwrap();
    l.register_with("trips", &"a".repeat(64), 100.0, 1e-3, Accounting::Zcdp)
        .unwrap();
    rt().block_on(async {
        let e = engine(&d2.0, &meta_text).await;
        let lap = QueryOptions {
            epsilon: 0.4,
            delta: 1e-6,
            noise: Some(Noise::Laplace),
            ..QueryOptions::default()
        };
        let p = e.preview(&l, "trips", "t", count, lap).await.unwrap();
        assert_eq!(p.measurements.len(), 1);
        let r = e.query(&l, "trips", "t", count, lap).await.unwrap();
        assert!((r.charged.rho - 0.08).abs() < 1e-12, "{:?}", r.charged);
        assert_eq!((r.charged.epsilon, r.charged.delta), (0.0, 0.0));
        assert_eq!(p.charged, r.charged);
        let places = "SELECT place, COUNT(*) AS n FROM trips GROUP BY place";
        let r = e
            .query(&l, "trips", "t", places, gaussian(1.0, 1e-6))
            .await
            .unwrap();
        assert_eq!(
            r.charged.delta, 5e-7,
            "half of δ thresholds the private keys"
        );
        assert_eq!(r.charged.rho, epsilon_to_zcdp(1.0, 5e-7).unwrap());
        let left = l.remaining("trips", None).unwrap();
        assert!((left.delta - (5e-4 - 5e-7)).abs() < 1e-15, "{left:?}");
    });
}
