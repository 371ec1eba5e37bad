//! Automatic bounds (`auto_bounds = true`): a DP estimate of a column's range, charged before
//! any value is read, kept in the ledger per data version, and attacked — an outlier, a
//! person with many rows, a refused query, a budget that cannot pay, concurrent queries, a
//! file that changes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use veil_dp::ledger::{Accounting, SqliteLedger};
use veil_dp_sql::{Engine, Metadata, QueryOptions, SqlError};

const META: &str = r#"
[budget]
epsilon = 10.0
delta = 1e-5
auto_bounds_epsilon = 0.5

[table.t]
privacy_unit = "id"
max_rows_per_unit = 1

[table.t.columns]
id = { type = "int" }
hours = { type = "int", auto_bounds = true }
income = { type = "float", auto_bounds = true }
spend = { type = "float", lower = 0, upper = 1000 }
g = { type = "string", public_keys = ["a", "b"] }
"#;

fn meta() -> Metadata {
    Metadata::from_toml(META).unwrap()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("veil-autobounds-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` people: hours 1..=60, income 1000..=99_999 (spread over its bins), spend 0..1000;
/// then `extra` rows as given.
fn write(path: &Path, n: u64, extra: &[(u64, i64, f64)]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "id,hours,income,spend,g").unwrap();
    for i in 0..n {
        let hours = 1 + (i * 7) % 60;
        let income = 1000.0 + ((i * 7919) % 99_000) as f64;
        let g = if i % 2 == 0 { "a" } else { "b" };
        writeln!(f, "{i},{hours},{income},{},{g}", (i * 13) % 1000).unwrap();
    }
    for (id, hours, income) in extra {
        writeln!(f, "{id},{hours},{income},1,a").unwrap();
    }
}

fn ledger(d: &Path, accounting: Accounting) -> SqliteLedger {
    let l = SqliteLedger::open(d.join("budget.db")).unwrap();
    l.register_with("t", &"0".repeat(64), 10.0, 1e-5, accounting)
        .unwrap();
    l
}

async fn engine(path: &Path) -> Engine {
    Engine::embedded(meta(), &[("t".into(), path)])
        .await
        .unwrap()
}

fn options(epsilon: f64) -> QueryOptions {
    QueryOptions {
        epsilon,
        delta: 1e-6,
        ..Default::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn estimates(l: &SqliteLedger) -> usize {
    l.history("t")
        .unwrap()
        .iter()
        .filter(|c| c.note.starts_with("automatic bounds of"))
        .count()
}

/// The first query that needs a column's bounds pays for their estimate (its own ledger
/// entry, before any value is read) and says which bounds it used; every later query — in
/// another engine, as in another process — reuses them for free.
#[test]
fn the_estimate_is_charged_once_and_kept_in_the_ledger() {
    let d = dir("once");
    let csv = d.join("t.csv");
    write(&csv, 20_000, &[]);
    let l = ledger(&d, Accounting::Approx);
    rt().block_on(async {
        let e = engine(&csv).await;
        let r = e
            .query(&l, "t", "ana", "SELECT AVG(income) FROM t", options(1.0))
            .await
            .unwrap();
        assert_eq!(r.estimated_bounds.len(), 1, "{:?}", r.estimated_bounds);
        let b = &r.estimated_bounds[0];
        assert!(b.estimated_now);
        assert_eq!((b.table.as_str(), b.column.as_str()), ("t", "income"));
        // Incomes 1000..99999 fill the bins [512, 1024) (barely) to [65536, 131072).
        assert!(b.lower <= 1024.0 && b.lower >= 512.0, "{b:?}");
        assert_eq!(b.upper, 131_072.0, "{b:?}");
        let history = l.history("t").unwrap();
        assert_eq!(history.len(), 2);
        assert!(history[0].note.starts_with("automatic bounds of t.income"));
        assert_eq!(history[0].epsilon, 0.5);
        assert_eq!(history[1].epsilon, 1.0);
        // The answer is the mean of the data clamped to the estimate, within its interval.
        let avg = r.rows().unwrap()[0][0].as_f64().unwrap();
        assert!((avg - 50_500.0).abs() < 2_000.0, "{avg}");

        // Another engine (another process) on the same data and ledger: reused, free.
        let e2 = engine(&csv).await;
        let r2 = e2
            .query(&l, "t", "bob", "SELECT SUM(income) FROM t", options(1.0))
            .await
            .unwrap();
        assert_eq!(r2.estimated_bounds.len(), 1);
        assert!(!r2.estimated_bounds[0].estimated_now);
        assert_eq!(r2.estimated_bounds[0].lower, b.lower);
        assert_eq!(r2.estimated_bounds[0].upper, b.upper);
        assert_eq!(l.history("t").unwrap().len(), 3);
        assert_eq!(estimates(&l), 1);

        // A query that needs no bound of an auto column (COUNT, a WHERE on it, a declared
        // column) estimates nothing.
        for sql in [
            "SELECT COUNT(*) FROM t",
            "SELECT COUNT(*) FROM t WHERE hours > 10",
            "SELECT g, SUM(spend) FROM t GROUP BY g",
        ] {
            let r = e2.query(&l, "t", "bob", sql, options(0.5)).await.unwrap();
            assert!(r.estimated_bounds.is_empty(), "{sql}");
        }
        assert_eq!(estimates(&l), 1);
        // The integer column: hours 1..60 → [1, 64].
        let r = e2
            .query(
                &l,
                "t",
                "bob",
                "SELECT g, AVG(hours) FROM t GROUP BY g",
                options(1.0),
            )
            .await
            .unwrap();
        let b = &r.estimated_bounds[0];
        assert_eq!((b.lower, b.upper), (1.0, 64.0), "{b:?}");
        assert!(r.to_json().unwrap()["estimated_bounds"][0]["column"] == "hours");
    });
}

/// Attack: one person with an absurd value (or a thousand rows of one) tries to stretch the
/// bound — and with it the noise everyone's answers get, or the clamp that hides them. The
/// histogram counts at most one unit's weight per person, and a bin needs far more than one
/// person to count: the bound ignores them. (Without contribution bounding the thousand
/// rows would pass the threshold and stretch the upper bound to 2^41.)
#[test]
fn an_outlier_or_a_person_with_many_rows_cannot_stretch_the_bound() {
    let d = dir("outlier");
    let csv = d.join("t.csv");
    let mut extra = vec![(999_999u64, 50i64, 1e15f64)];
    extra.extend((0..1000).map(|_| (888_888u64, 50i64, 2e12f64)));
    write(&csv, 5_000, &extra);
    let l = ledger(&d, Accounting::Approx);
    rt().block_on(async {
        let e = engine(&csv).await;
        let r = e
            .query(&l, "t", "ana", "SELECT SUM(income) FROM t", options(1.0))
            .await
            .unwrap();
        let b = &r.estimated_bounds[0];
        assert!(b.upper <= 131_072.0, "stretched: {b:?}");
        assert!(b.upper >= 65_536.0, "{b:?}");
    });
}

/// A refused query costs nothing — not even the estimate — and leaves nothing in the
/// ledger; a budget that cannot pay for the estimate **and** the query charges neither.
#[test]
fn refusals_and_a_short_budget_charge_nothing() {
    let d = dir("refused");
    let csv = d.join("t.csv");
    write(&csv, 2_000, &[]);
    let l = ledger(&d, Accounting::Approx);
    rt().block_on(async {
        let e = engine(&csv).await;
        for sql in [
            "SELECT id, SUM(income) FROM t GROUP BY id",
            "SELECT SUM(income) FROM t GROUP BY id + 1",
            "SELECT SUM(income) FROM t WHERE sqrt(income - 50) > 1",
            "SELECT SUM(income / hours) FROM t",
            "SELECT AVG(sqrt(income)) FROM t",
            "SELECT SUM(income * spend) FROM t WHERE id IN (SELECT id FROM t)",
            "SELECT SUM(incomes) FROM t",
        ] {
            let err = e
                .query(&l, "t", "ana", sql, options(1.0))
                .await
                .unwrap_err();
            assert!(
                matches!(err, SqlError::Rejected(_) | SqlError::Sql(_)),
                "{sql}: {err}"
            );
            assert!(l.history("t").unwrap().is_empty(), "{sql} charged");
        }
        // A check on the size of the bounds can only run once they are known: refused then,
        // the estimate charged (and kept), the query not.
        let err = e
            .query(
                &l,
                "t",
                "ana",
                "SELECT SUM(hours * income * income * income) FROM t",
                options(1.0),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SqlError::RejectedAfterEstimate(_)), "{err}");
        assert!(err.to_string().contains("2^53"), "{err}");
        assert_eq!(l.history("t").unwrap().len(), 2);
        assert_eq!(estimates(&l), 2);
        let d = dir("refused-2");
        let l = ledger(&d, Accounting::Approx);
        // An analyst whose own budget pays the estimate but not the query too: neither.
        l.set_budget("t", Some("eve"), 1.2, 0.0).unwrap();
        let err = e
            .query(&l, "t", "eve", "SELECT SUM(income) FROM t", options(1.0))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("budget"), "{err}");
        assert!(l.history("t").unwrap().is_empty());
        // 10 − 0.5 (estimate) < 9.8: neither is charged.
        let err = e
            .query(&l, "t", "ana", "SELECT SUM(income) FROM t", options(9.8))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("budget"), "{err}");
        assert!(l.history("t").unwrap().is_empty());
        // The preview announces the estimate and its cost, reads nothing, charges nothing.
        let p = e
            .preview(
                &l,
                "t",
                "ana",
                "SELECT SUM(income), COUNT(*) FROM t",
                options(1.0),
            )
            .await
            .unwrap();
        assert_eq!(p.bounds_to_estimate.len(), 1);
        assert_eq!(p.bounds_to_estimate[0].column, "income");
        assert!((p.charged.epsilon - 1.5).abs() < 1e-12, "{:?}", p.charged);
        assert!(p.accuracy.values().all(Option::is_none));
        assert!(
            p.warnings.iter().any(|w| w.contains("t.income")),
            "{:?}",
            p.warnings
        );
        assert!(l.history("t").unwrap().is_empty());
        let p = e
            .preview(&l, "t", "ana", "SELECT SUM(income) FROM t", options(9.6))
            .await
            .unwrap();
        assert!(!p.affordable);
        // Once estimated, the preview shows the bounds and charges only the query.
        e.query(&l, "t", "ana", "SELECT SUM(income) FROM t", options(1.0))
            .await
            .unwrap();
        let p = e
            .preview(&l, "t", "ana", "SELECT SUM(income) FROM t", options(1.0))
            .await
            .unwrap();
        assert!(p.bounds_to_estimate.is_empty());
        assert_eq!(p.estimated_bounds.len(), 1);
        assert_eq!(p.charged.epsilon, 1.0);
        assert!(p.accuracy.values().all(Option::is_some));
    });
}

/// Concurrent queries that need the same estimate pay for it once; a file that changes is
/// estimated again (its version is new); under zCDP accounting the estimate costs ε²/2.
#[test]
fn concurrent_queries_pay_once_and_new_data_is_estimated_again() {
    let d = dir("concurrent");
    let csv = d.join("t.csv");
    write(&csv, 3_000, &[]);
    let l = Arc::new(ledger(&d, Accounting::Zcdp));
    rt().block_on(async {
        let e = Arc::new(engine(&csv).await);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (e, l) = (e.clone(), l.clone());
            tasks.push(tokio::spawn(async move {
                e.query(&*l, "t", "ana", "SELECT AVG(hours) FROM t", options(0.1))
                    .await
                    .unwrap()
            }));
        }
        let mut made = 0;
        for t in tasks {
            made += usize::from(t.await.unwrap().estimated_bounds[0].estimated_now);
        }
        assert_eq!(made, 1);
        assert_eq!(estimates(&l), 1);
        let first = l
            .history("t")
            .unwrap()
            .into_iter()
            .find(|c| c.note.starts_with("automatic bounds"))
            .unwrap();
        assert!((first.rho - 0.125).abs() < 1e-9, "{first:?}");

        // New data (a new version of the file): estimated again, once.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&csv, 3_001, &[]);
        let e = engine(&csv).await;
        let r = e
            .query(&*l, "t", "ana", "SELECT AVG(hours) FROM t", options(0.1))
            .await
            .unwrap();
        assert!(r.estimated_bounds[0].estimated_now);
        e.query(&*l, "t", "ana", "SELECT AVG(hours) FROM t", options(0.1))
            .await
            .unwrap();
        assert_eq!(estimates(&l), 2);
    });
}

/// The operator's choices are checked when the metadata is read.
#[test]
fn auto_bounds_in_the_metadata_are_checked() {
    for (change, says) in [
        (
            "hours = { type = \"int\", auto_bounds = true, lower = 0, upper = 5 }",
            "not both",
        ),
        (
            "hours = { type = \"string\", auto_bounds = true }",
            "String",
        ),
        ("hours = { type = \"bool\", auto_bounds = true }", "Bool"),
    ] {
        let text = META.replace("hours = { type = \"int\", auto_bounds = true }", change);
        let e = Metadata::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains(says) && e.contains("hours"), "{change}: {e}");
    }
    let text = META.replace("auto_bounds_epsilon = 0.5", "auto_bounds_epsilon = 11");
    let e = Metadata::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("auto_bounds_epsilon"), "{e}");
    let text = META.replace("epsilon = 10.0", "epsilon = 0.05");
    let text = text.replace("auto_bounds_epsilon = 0.5\n", "");
    let e = Metadata::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("auto_bounds_epsilon (0.1)"), "{e}");
    let public = "[budget]\nepsilon = 1.0\n[table.p]\npublic = true\n[table.p.columns]\n\
                  x = { type = \"int\", auto_bounds = true }\n";
    let e = Metadata::from_toml(public).unwrap_err().to_string();
    assert!(e.contains("public table"), "{e}");
}

/// On PostgreSQL — the histogram unparsed to SQL and run by the server, the estimate kept in
/// the shared PostgreSQL ledger — the same bounds, paid for once across engines.
#[test]
fn postgres_estimates_on_the_server_and_keeps_the_bounds_in_its_ledger() {
    use veil_dp::ledger::postgres::PostgresLedger;
    use veil_dp::ledger::Ledger;
    let Some(server) = veil_dp::testing::PostgresServer::start("autobounds").unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL (initdb, pg_ctl) is not installed"
        );
        eprintln!("skipped: PostgreSQL is not installed");
        return;
    };
    rt().block_on(async {
        let (client, conn) = tokio_postgres::connect(&server.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(
                "CREATE TABLE t (id bigint PRIMARY KEY, hours bigint, income double precision,
                                 spend double precision, g text);
                 INSERT INTO t SELECT i, 1 + (i * 7) % 60, 1000 + (i * 7919) % 99000,
                                      (i * 13) % 1000, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END
                 FROM generate_series(0, 19999) AS i;
                 INSERT INTO t VALUES (999999, 50, 1e15, 1, 'a');",
            )
            .await
            .unwrap();
        let l = PostgresLedger::connect(&server.url).unwrap();
        l.set_budget("t", None, 10.0, 1e-5).unwrap();
        for round in 0..2 {
            let e = Engine::postgres(meta(), &server.url).await.unwrap();
            let r = e
                .query(
                    &l,
                    "t",
                    "ana",
                    "SELECT g, AVG(income) FROM t GROUP BY g",
                    options(1.0),
                )
                .await
                .unwrap();
            let b = &r.estimated_bounds[0];
            assert_eq!(b.estimated_now, round == 0, "{b:?}");
            assert!(b.lower >= 512.0 && b.lower <= 1024.0, "{b:?}");
            assert_eq!(b.upper, 131_072.0, "the outlier stretched it: {b:?}");
        }
        let notes: Vec<String> = l
            .history("t")
            .unwrap()
            .into_iter()
            .map(|c| c.note)
            .collect();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].starts_with("automatic bounds of t.income"),
            "{notes:?}"
        );
    });
}
