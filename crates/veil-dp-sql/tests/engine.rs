//! The DP SQL engine end to end: every supported query shape answered within its error bound
//! on CSV, Parquet and a live PostgreSQL; every refused shape refused before touching data,
//! charging nothing; the budget never overspent under concurrent queries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use veil_dp::ledger::{Ledger, SqliteLedger};
use veil_dp_sql::{DpResult, Engine, Metadata, QueryOptions, SqlError};

const ROWS: u64 = 20_000;

/// The sample's metadata plus a `visits` table (up to 3 visits per person) and an unbounded
/// column.
fn metadata() -> Metadata {
    let text = format!(
        "{}\n{}",
        veil_dp_sql::sample::PERSONS_METADATA.replace(
            "state = { type = \"string\" }",
            "state = { type = \"string\" }\nnote = { type = \"float\" }"
        ),
        r#"
[table.visits]
privacy_unit = "person_id"
max_rows_per_unit = 3

[table.visits.columns]
person_id = { type = "int" }
cost = { type = "float", lower = 0, upper = 1000 }
"#
    );
    Metadata::from_toml(&text).unwrap()
}

struct Data {
    dir: PathBuf,
    persons: Vec<Person>,
    visits: Vec<(u64, f64)>,
}

#[derive(Clone, Debug)]
struct Person {
    id: u64,
    age: f64,
    income: f64,
    sex: String,
    state: String,
}

impl Drop for Data {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes the sample persons (with a `note` column) and a visits table into a temp dir.
fn data(name: &str) -> Data {
    let dir = std::env::temp_dir().join(format!("veil-dp-sql-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut raw = Vec::new();
    veil_dp_sql::sample::write_persons(&mut raw, ROWS, 11).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let mut persons = Vec::new();
    let mut csv = String::from("person_id,age,income,sex,state,note\n");
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let p = Person {
            id: f[0].parse().unwrap(),
            age: f[1].parse().unwrap(),
            income: f[2].parse().unwrap(),
            sex: f[3].into(),
            state: f[4].into(),
        };
        csv.push_str(&format!("{line},{}\n", p.id % 7));
        persons.push(p);
    }
    std::fs::write(dir.join("persons.csv"), csv).unwrap();
    let mut visits = Vec::new();
    let mut v = String::from("person_id,cost\n");
    for p in &persons {
        for j in 0..(p.id % 4) {
            let cost = ((p.id * 37 + j * 101) % 900) as f64 + 0.5;
            visits.push((p.id, cost));
            v.push_str(&format!("{},{cost}\n", p.id));
        }
    }
    std::fs::write(dir.join("visits.csv"), v).unwrap();
    Data {
        dir,
        persons,
        visits,
    }
}

fn ledger(dir: &Path, epsilon: f64) -> SqliteLedger {
    let l = SqliteLedger::open(dir.join("budget.db")).unwrap();
    l.set_budget("persons", None, epsilon, 1e-3).unwrap();
    l
}

async fn embedded(d: &Data) -> Engine {
    Engine::embedded(
        metadata(),
        &[
            ("persons".into(), d.dir.join("persons.csv").as_path()),
            ("visits".into(), d.dir.join("visits.csv").as_path()),
        ],
    )
    .await
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A query at a large ε (tight answers), charged to a generous budget.
async fn ask(engine: &Engine, ledger: &(dyn Ledger + Sync), sql: &str, epsilon: f64) -> DpResult {
    engine
        .query(
            ledger,
            "persons",
            "tester",
            sql,
            QueryOptions {
                epsilon,
                delta: 1e-6,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} ± {tol}"
    );
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Checks every supported shape against the truth computed here from the same rows.
async fn every_supported_shape(engine: &Engine, ledger: &(dyn Ledger + Sync), d: &Data) {
    let n = d.persons.len() as f64;
    let ages: Vec<f64> = d.persons.iter().map(|p| p.age).collect();
    let incomes: Vec<f64> = d.persons.iter().map(|p| p.income.min(500_000.0)).collect();

    // COUNT(*) at ε = 10 (the only measurement): Laplace(0.1 + grid), 95% ± ~0.3.
    let r = ask(engine, ledger, "SELECT COUNT(*) AS n FROM persons", 10.0).await;
    assert_eq!(r.columns, ["n"]);
    let rows = r.rows().unwrap();
    close("COUNT(*)", num(&rows[0][0]), n, 3.0);
    let acc = r.accuracy["n"].unwrap();
    assert!(acc > 0.0 && acc < 1.0, "accuracy {acc}");
    assert_eq!((r.epsilon, r.delta), (10.0, 0.0));

    // Distinct values of a column other than the unit (any type): sensitivity k = 1.
    let r = ask(
        engine,
        ledger,
        "SELECT sex, COUNT(DISTINCT state) AS s, COUNT(DISTINCT age) AS a FROM persons \
         GROUP BY sex ORDER BY sex",
        20.0,
    )
    .await;
    for (i, sex) in ["F", "M"].into_iter().enumerate() {
        let of = |f: fn(&Person) -> String| {
            d.persons
                .iter()
                .filter(|p| p.sex == sex)
                .map(f)
                .collect::<std::collections::HashSet<_>>()
                .len() as f64
        };
        let row = &r.rows().unwrap()[i];
        close(
            "distinct states",
            num(&row[1]),
            of(|p| p.state.clone()),
            3.0,
        );
        close(
            "distinct ages",
            num(&row[2]),
            of(|p| p.age.to_string()),
            3.0,
        );
    }

    // Aggregates of bounded columns, a WHERE, and post-processing arithmetic.
    let sql = "SELECT COUNT(income), COUNT(DISTINCT person_id), SUM(age), AVG(income), \
               VAR(age), STDDEV(income), COUNT(*) * 2 AS twice FROM persons WHERE age >= 30";
    let r = ask(engine, ledger, sql, 60.0).await;
    let sel: Vec<&Person> = d.persons.iter().filter(|p| p.age >= 30.0).collect();
    let m = sel.len() as f64;
    let a: Vec<f64> = sel.iter().map(|p| p.age).collect();
    let inc: Vec<f64> = sel.iter().map(|p| p.income.min(500_000.0)).collect();
    let row = &r.rows().unwrap()[0];
    close("COUNT(income)", num(&row[0]), m, 20.0);
    close("COUNT(DISTINCT)", num(&row[1]), m, 20.0);
    // SUM(age): sensitivity 100, ε = 60/6 per measurement… 95% ± ~30 (plus the bound).
    close("SUM(age)", num(&row[2]), a.iter().sum(), 200.0);
    close("AVG(income)", num(&row[3]), mean(&inc), 2_000.0);
    let va = a.iter().map(|x| (x - mean(&a)).powi(2)).sum::<f64>() / (m - 1.0);
    close("VAR(age)", num(&row[4]), va, 0.05 * va);
    let vi = (inc.iter().map(|x| (x - mean(&inc)).powi(2)).sum::<f64>() / (m - 1.0)).sqrt();
    close("STDDEV(income)", num(&row[5]), vi, 0.25 * vi);
    close("twice", num(&row[6]), 2.0 * m, 60.0);
    assert!(
        r.accuracy["twice"].is_none(),
        "post-processed: no closed form"
    );

    // Aggregates of expressions: bounds derived from the declared ones by interval
    // arithmetic, values computed on the clamped columns (an integer division truncates, as
    // SQL's does).
    let sql = "SELECT SUM(age * 2) AS s, AVG(income / 1000) AS a, AVG(age / 7) AS q, \
               MAX(age + 5) AS mx, COUNT(age - 1) AS c, SUM(100 - age) AS r, \
               SUM(-age) AS neg FROM persons";
    let r = ask(engine, ledger, sql, 80.0).await;
    let row = &r.rows().unwrap()[0];
    let total_age: f64 = ages.iter().sum();
    close("SUM(age * 2)", num(&row[0]), 2.0 * total_age, 400.0);
    close(
        "AVG(income / 1000)",
        num(&row[1]),
        mean(&incomes) / 1000.0,
        2.0,
    );
    let sevenths: Vec<f64> = ages.iter().map(|a| (a / 7.0).trunc()).collect();
    close("AVG(age / 7)", num(&row[2]), mean(&sevenths), 0.1);
    close(
        "MAX(age + 5)",
        num(&row[3]),
        quantile(&ages, 1.0) + 5.0,
        3.0,
    );
    close("COUNT(age - 1)", num(&row[4]), n, 20.0);
    close("SUM(100 - age)", num(&row[5]), 100.0 * n - total_age, 400.0);
    close("SUM(-age)", num(&row[6]), -total_age, 400.0);
    // One person moves SUM(age * 2) by up to 200: the stated interval is exactly twice
    // SUM(age)'s at the same ε.
    let one = |sql: &'static str| async move { ask(engine, ledger, sql, 5.0).await.accuracy };
    let twice = one("SELECT SUM(age * 2) AS s FROM persons").await["s"].unwrap();
    let once = one("SELECT SUM(age) AS s FROM persons").await["s"].unwrap();
    assert!((twice / once - 2.0).abs() < 1e-9, "{twice} vs {once}");
    // Over a join on the unit (three visits per person at most): cost × age / 100 ∈ [0, 1000].
    let r = ask(
        engine,
        ledger,
        "SELECT SUM(v.cost * p.age / 100) AS x FROM persons p \
         JOIN visits v ON p.person_id = v.person_id",
        40.0,
    )
    .await;
    let age_of: std::collections::HashMap<u64, f64> =
        d.persons.iter().map(|p| (p.id, p.age)).collect();
    let want: f64 = d.visits.iter().map(|(id, c)| c * age_of[id] / 100.0).sum();
    close(
        "SUM(cost * age / 100)",
        num(&r.rows().unwrap()[0][0]),
        want,
        1_000.0,
    );

    // Quantiles: MIN/MAX/MEDIAN/percentile over the declared bounds.
    let sql = "SELECT MEDIAN(age), MIN(age), MAX(age), \
               percentile_cont(0.9) WITHIN GROUP (ORDER BY age), \
               approx_percentile_cont(income, 0.25) FROM persons";
    let r = ask(engine, ledger, sql, 20.0).await;
    let row = &r.rows().unwrap()[0];
    close("MEDIAN(age)", num(&row[0]), quantile(&ages, 0.5), 2.0);
    close("MIN(age)", num(&row[1]), quantile(&ages, 0.0), 3.0);
    close("MAX(age)", num(&row[2]), quantile(&ages, 1.0), 3.0);
    close("P90(age)", num(&row[3]), quantile(&ages, 0.9), 2.0);
    close(
        "P25(income)",
        num(&row[4]),
        quantile(&incomes, 0.25),
        3_000.0,
    );

    // Public keys: both listed keys appear even when the WHERE leaves only one in the data.
    let r = ask(
        engine,
        ledger,
        "SELECT sex, COUNT(*) AS n FROM persons WHERE sex = 'F' GROUP BY sex ORDER BY sex",
        10.0,
    )
    .await;
    let rows = r.rows().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][0], "F");
    assert_eq!(rows[1][0], "M");
    let f = d.persons.iter().filter(|p| p.sex == "F").count() as f64;
    close("F", num(&rows[0][1]), f, 3.0);
    close("M (absent, public)", num(&rows[1][1]), 0.0, 3.0);
    assert!(r.threshold.is_none());
    assert_eq!(r.delta, 0.0, "public keys spend no δ");

    // Private keys: only keys in the data appear, and only above τ; HAVING, ORDER BY, LIMIT
    // are post-processing.
    let r = ask(
        engine,
        ledger,
        "SELECT state, COUNT(*) AS n, AVG(age) FROM persons WHERE state IN ('CA', 'TX', 'WI') \
         GROUP BY state HAVING COUNT(*) > 10 ORDER BY n DESC LIMIT 2",
        10.0,
    )
    .await;
    let rows = r.rows().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0][0].as_str(), rows[1][0].as_str()),
        (Some("CA"), Some("TX"))
    );
    let ca = d.persons.iter().filter(|p| p.state == "CA").count() as f64;
    close("CA", num(&rows[0][1]), ca, 5.0);
    assert!(r.threshold.unwrap() > 1.0);
    assert_eq!(r.delta, 1e-6, "τ-thresholding spends δ");
    // A key absent from the data never appears.
    let r = ask(
        engine,
        ledger,
        "SELECT state, COUNT(*) FROM persons WHERE state = 'CA' GROUP BY state",
        10.0,
    )
    .await;
    let keys: Vec<Value> = r
        .rows()
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(keys, [Value::from("CA")]);
    // A key held by very few persons is suppressed: one person's state is unique here.
    let r = ask(
        engine,
        ledger,
        "SELECT state, COUNT(*) FROM persons WHERE person_id = 17 GROUP BY state",
        1.0,
    )
    .await;
    assert!(r.rows().unwrap().is_empty(), "{:?}", r.rows());

    // GROUP BY an expression (a private key) and two keys.
    let r = ask(
        engine,
        ledger,
        "SELECT sex, age / 10 AS decade, COUNT(*) FROM persons GROUP BY sex, age / 10 \
         ORDER BY sex, decade",
        10.0,
    )
    .await;
    let rows = r.rows().unwrap();
    assert!(rows.len() >= 14, "{rows:?}");
    let f20 = d
        .persons
        .iter()
        .filter(|p| p.sex == "F" && (p.age as i64) / 10 == 2)
        .count() as f64;
    let got = rows
        .iter()
        .find(|r| r[0] == "F" && r[1] == 2)
        .map(|r| num(&r[2]))
        .unwrap();
    close("F, 20s", got, f20, 5.0);

    // A join on the privacy unit: bound 1 × 3.
    let r = ask(
        engine,
        ledger,
        "SELECT COUNT(*), SUM(v.cost) FROM persons p JOIN visits v ON p.person_id = v.person_id \
         WHERE p.age < 50",
        20.0,
    )
    .await;
    let young: std::collections::HashSet<u64> = d
        .persons
        .iter()
        .filter(|p| p.age < 50.0)
        .map(|p| p.id)
        .collect();
    let vs: Vec<f64> = d
        .visits
        .iter()
        .filter(|(id, _)| young.contains(id))
        .map(|(_, c)| *c)
        .collect();
    let row = &r.rows().unwrap()[0];
    close("join COUNT", num(&row[0]), vs.len() as f64, 10.0);
    close("join SUM", num(&row[1]), vs.iter().sum(), 3_000.0);
    // Per-group bounds asked with the query (ZetaSQL's max_groups_contributed): one group
    // per person, at most 2 of their (up to 3) visits in it, each of a person's visits
    // weighted min(1, 2 / visits). Each person has one sex, so which groups are kept does not
    // depend on the random choice and the answer is exact before noise on every backend.
    let r = engine
        .query(
            ledger,
            "persons",
            "tester",
            "SELECT p.sex, COUNT(*) AS n, SUM(v.cost) AS c, MEDIAN(v.cost) AS m, \
             COUNT(DISTINCT v.cost) AS d \
             FROM persons p JOIN visits v ON p.person_id = v.person_id \
             GROUP BY p.sex ORDER BY p.sex",
            QueryOptions {
                epsilon: 30.0,
                delta: 1e-6,
                max_groups_per_unit: Some(1),
                max_rows_per_group: Some(2),
                noise: None,
            },
        )
        .await
        .unwrap();
    let sex_of: std::collections::HashMap<u64, &str> =
        d.persons.iter().map(|p| (p.id, p.sex.as_str())).collect();
    let mut per_person: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for (id, c) in &d.visits {
        per_person.entry(*id).or_default().push(*c);
    }
    for (i, sex) in ["F", "M"].into_iter().enumerate() {
        let mut n = 0.0;
        let mut sum = 0.0;
        let mut weighted: Vec<(f64, f64)> = Vec::new();
        let mut per_value: std::collections::BTreeMap<u64, f64> = Default::default();
        for (id, costs) in &per_person {
            if sex_of[id] != sex {
                continue;
            }
            let w = (2.0 / costs.len() as f64).min(1.0);
            n += w * costs.len() as f64;
            sum += w * costs.iter().sum::<f64>();
            weighted.extend(costs.iter().map(|c| (*c, w)));
            for c in costs {
                *per_value.entry(c.to_bits()).or_default() += w;
            }
        }
        // Distinct values under bounding: Σ over values of min(1, their rows' weight).
        let soft: f64 = per_value.values().map(|w| w.min(1.0)).sum();
        weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let half = weighted.iter().map(|x| x.1).sum::<f64>() / 2.0;
        let mut acc = 0.0;
        let median = weighted
            .iter()
            .find(|(_, w)| {
                acc += w;
                acc >= half
            })
            .unwrap()
            .0;
        let row = &r.rows().unwrap()[i];
        // Sensitivities: 2 rows in all (1 group × 2 rows), 2 × 1000 for the sum.
        close(&format!("{sex} bounded n"), num(&row[1]), n, 5.0);
        close(&format!("{sex} bounded sum"), num(&row[2]), sum, 2_000.0);
        close(&format!("{sex} bounded median"), num(&row[3]), median, 20.0);
        close(&format!("{sex} bounded distinct"), num(&row[4]), soft, 5.0);
        // Without the per-group bound every visit would count.
        let all = d.visits.iter().filter(|(id, _)| sex_of[id] == sex).count() as f64;
        assert!(all - n > 100.0, "{sex}: the data must exercise the bound");
    }
    // Derived tables that keep the unit are row-level work.
    let r = ask(
        engine,
        ledger,
        "SELECT COUNT(*) FROM (SELECT person_id, age FROM persons WHERE age > 60) t",
        10.0,
    )
    .await;
    let old = d.persons.iter().filter(|p| p.age > 60.0).count() as f64;
    close("derived", num(&r.rows().unwrap()[0][0]), old, 3.0);
}

/// Every refused shape, with the reason it must give; none of them charges anything.
async fn every_refused_shape(engine: &Engine, ledger: &(dyn Ledger + Sync)) {
    let before = ledger.history("persons").unwrap().len();
    let cases: &[(&str, &str)] = &[
        ("SELECT * FROM persons", "row-level output"),
        (
            "SELECT age, income FROM persons WHERE age > 30",
            "row-level output",
        ),
        (
            "SELECT person_id, COUNT(*) FROM persons GROUP BY person_id",
            "privacy unit",
        ),
        (
            "SELECT COUNT(*) FROM persons p JOIN visits v ON p.age = v.person_id",
            "join on the privacy units",
        ),
        (
            "SELECT COUNT(*) FROM persons p LEFT JOIN visits v ON p.person_id = v.person_id",
            "joins are not supported",
        ),
        ("SELECT COUNT(*) FROM persons, visits", "join"),
        (
            "SELECT COUNT(*) FROM (SELECT sex, COUNT(*) AS c FROM persons GROUP BY sex) t",
            "exact statistics",
        ),
        (
            "SELECT COUNT(*) FROM persons WHERE age > (SELECT AVG(age) FROM persons)",
            "subquery",
        ),
        (
            "SELECT COUNT(*) FROM persons WHERE person_id IN (SELECT person_id FROM visits)",
            "subquery",
        ),
        ("SELECT SUM(note) FROM persons", "no bounds"),
        (
            "SELECT COUNT(*) FROM persons WHERE 1 / (CASE WHEN person_id = 17 THEN 0 ELSE 1 END) = 1",
            "must not be able to fail",
        ),
        (
            "SELECT COUNT(*) FROM persons WHERE CAST(state AS BIGINT) = 0",
            "TRY_CAST",
        ),
        ("SELECT COUNT(*) FROM persons WHERE sqrt(age - 50) > 1", "sqrt"),
        ("SELECT COUNT(*) FROM persons WHERE age * age > 100", "operator *"),
        ("SELECT MIN(state) FROM persons", "no numeric bounds"),
        ("SELECT AVG(state) FROM persons", "avg"),
        ("SELECT SUM(age * note) FROM persons", "no bounds"),
        ("SELECT SUM(age / income) FROM persons", "non-zero constant"),
        ("SELECT SUM(age / 0) FROM persons", "non-zero constant"),
        ("SELECT SUM(age % 7) FROM persons", "the operator %"),
        ("SELECT AVG(sqrt(age)) FROM persons", "sqrt"),
        ("SELECT SUM(income * 1e12) FROM persons", "2^53"),
        ("SELECT SUM(income * 1e-299) FROM persons", "round to zero"),
        ("SELECT SUM(CAST(income AS INT) * 2) FROM persons", "CAST"),
        ("SELECT SUM(CASE WHEN age > 3 THEN age END) FROM persons", "arithmetic"),
        (
            "SELECT COUNT(DISTINCT age + 1) FROM persons",
            "a column, not an expression",
        ),
        ("SELECT SUM(DISTINCT age) FROM persons", "DISTINCT"),
        (
            "SELECT string_agg(state, ',') FROM persons",
            "not supported",
        ),
        (
            "SELECT age, ROW_NUMBER() OVER (ORDER BY income) FROM persons",
            "window",
        ),
        (
            "SELECT COUNT(*) FROM persons GROUP BY ROLLUP (sex)",
            "ROLLUP",
        ),
        (
            "SELECT COUNT(*) FROM (SELECT age FROM persons) t",
            "drops the privacy unit",
        ),
        (
            "SELECT COUNT(*) FROM (SELECT * FROM persons LIMIT 10) t",
            "LIMIT",
        ),
        ("CREATE TABLE x AS SELECT * FROM persons", "only SELECT"),
        ("SELECT 1", "no private table"),
        ("SELECT COUNT(*) FROM nowhere", "nowhere"),
        ("SELEKT COUNT(*) FROM persons", "invalid SQL"),
        (
            "SELECT COUNT(*) FROM persons UNION ALL SELECT COUNT(*) FROM persons",
            "UNION",
        ),
    ];
    for (sql, want) in cases {
        let e = engine
            .query(ledger, "persons", "tester", sql, QueryOptions::default())
            .await
            .expect_err(sql);
        assert!(
            matches!(e, SqlError::Rejected(_) | SqlError::Sql(_)),
            "{sql}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains(want), "{sql}: {msg}");
        assert!(msg.contains("nothing was charged"), "{sql}: {msg}");
    }
    // Private keys need δ.
    let e = engine
        .query(
            ledger,
            "persons",
            "tester",
            "SELECT state, COUNT(*) FROM persons GROUP BY state",
            QueryOptions {
                epsilon: 1.0,
                delta: 0.0,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("δ > 0"), "{e}");
    assert_eq!(
        ledger.history("persons").unwrap().len(),
        before,
        "nothing was charged"
    );
}

#[test]
fn csv_answers_and_refuses_every_shape() {
    let d = data("csv");
    let l = ledger(&d.dir, 10_000.0);
    rt().block_on(async {
        let engine = embedded(&d).await;
        every_supported_shape(&engine, &l, &d).await;
        every_refused_shape(&engine, &l).await;
        // Budget accounting: every answered query was charged exactly its ε.
        let history = l.history("persons").unwrap();
        let spent: f64 = history.iter().map(|c| c.epsilon).sum();
        let left = l.remaining("persons", None).unwrap();
        assert!((left.epsilon - (10_000.0 - spent)).abs() < 1e-6);
        assert_eq!(history.len(), 16);
    });
}

#[test]
fn parquet_gives_the_same_answers() {
    let d = data("parquet");
    let l = ledger(&d.dir, 10_000.0);
    rt().block_on(async {
        // Convert with DataFusion itself.
        let ctx = datafusion::prelude::SessionContext::new();
        for t in ["persons", "visits"] {
            let df = ctx
                .read_csv(
                    d.dir.join(format!("{t}.csv")).to_str().unwrap(),
                    datafusion::prelude::CsvReadOptions::new(),
                )
                .await
                .unwrap();
            df.write_parquet(
                d.dir.join(format!("{t}.parquet")).to_str().unwrap(),
                datafusion::dataframe::DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
            .unwrap();
        }
        let engine = Engine::embedded(
            metadata(),
            &[
                ("persons".into(), d.dir.join("persons.parquet").as_path()),
                ("visits".into(), d.dir.join("visits.parquet").as_path()),
            ],
        )
        .await
        .unwrap();
        every_supported_shape(&engine, &l, &d).await;
        every_refused_shape(&engine, &l).await;
    });
}

#[test]
fn contributions_beyond_the_bound_are_cut_not_assumed() {
    // 500 persons with one row each, and one person with 5000 rows (the bound says 1).
    let dir = std::env::temp_dir().join(format!("veil-dp-sql-bound-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("person_id,age,income,sex,state\n");
    for i in 1..=500 {
        csv.push_str(&format!("{i},40,1000.0,F,CA\n"));
    }
    for _ in 0..5000 {
        csv.push_str("9999,100,500000.0,M,NY\n");
    }
    std::fs::write(dir.join("persons.csv"), &csv).unwrap();
    let l = ledger(&dir, 1000.0);
    let meta = Metadata::from_toml(veil_dp_sql::sample::PERSONS_METADATA).unwrap();
    rt().block_on(async {
        let path = dir.join("persons.csv");
        let engine = Engine::embedded(meta, &[("persons".into(), path.as_path())])
            .await
            .unwrap();
        let r = ask(
            &engine,
            &l,
            "SELECT COUNT(*), SUM(age), COUNT(DISTINCT person_id), MAX(age) FROM persons",
            40.0,
        )
        .await;
        let row = &r.rows().unwrap()[0];
        // The heavy person counts as one row (weight 1/5000 on each), not 5000.
        close("COUNT(*)", num(&row[0]), 501.0, 3.0);
        close("SUM(age)", num(&row[1]), 500.0 * 40.0 + 100.0, 300.0);
        close("COUNT(DISTINCT)", num(&row[2]), 501.0, 3.0);
        // The heavy person's 5000 copies of age 100 no longer decide the maximum.
        close("MAX(age)", num(&row[3]), 40.0, 1.0);
        // Distinct values under the enforced bound: CA (500 people) and NY, whose 5000 rows
        // weigh 1 in all, so min(1, 1) — one value, not 5000 rows' worth.
        let r = ask(
            &engine,
            &l,
            "SELECT COUNT(DISTINCT state) FROM persons",
            40.0,
        )
        .await;
        close(
            "COUNT(DISTINCT state)",
            num(&r.rows().unwrap()[0][0]),
            2.0,
            0.5,
        );
        let r = ask(&engine, &l, "SELECT COUNT(DISTINCT age) FROM persons", 40.0).await;
        close(
            "COUNT(DISTINCT age)",
            num(&r.rows().unwrap()[0][0]),
            2.0,
            0.5,
        );
        let r = ask(
            &engine,
            &l,
            "SELECT sex, COUNT(*) AS n FROM persons GROUP BY sex ORDER BY sex",
            40.0,
        )
        .await;
        let rows = r.rows().unwrap();
        close("M", num(&rows[1][1]), 1.0, 3.0);
        // Private keys: a unit in more groups than the bound is dropped from them.
        let r = ask(
            &engine,
            &l,
            "SELECT state, COUNT(*) AS n FROM persons GROUP BY state ORDER BY state",
            40.0,
        )
        .await;
        let states: Vec<Value> = r
            .rows()
            .unwrap()
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(states, [Value::from("CA")], "NY is one person: below τ");
    });
    std::fs::remove_dir_all(dir).unwrap();
}

/// Attack (found while building automatic bounds): one unit spreads rows over many cells of a
/// public key set. Down-weighted to `k/N` per row it moved N noisy cells by a sliver each,
/// while the discrete noise's grid term (one grid step per moved cell) counts `k` — at
/// ~10⁶ cells the privacy loss doubles. Under the enforced bound a unit in more than `k`
/// groups is now dropped, public keys or not: the cells do not see it at all.
#[test]
fn a_unit_spread_over_many_public_cells_is_dropped_from_them() {
    let dir = std::env::temp_dir().join(format!("veil-dp-sql-spread-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // 300 persons with one row each (F or M); person 9999 with 500 rows in each of F and M.
    let mut csv = String::from("person_id,age,income,sex,state\n");
    for i in 1..=300 {
        let sex = if i % 2 == 0 { "F" } else { "M" };
        csv.push_str(&format!("{i},40,1000.0,{sex},CA\n"));
    }
    for sex in ["F", "M"] {
        for _ in 0..500 {
            csv.push_str(&format!("9999,100,500000.0,{sex},NY\n"));
        }
    }
    std::fs::write(dir.join("persons.csv"), &csv).unwrap();
    let l = ledger(&dir, 1000.0);
    let meta = Metadata::from_toml(veil_dp_sql::sample::PERSONS_METADATA).unwrap();
    rt().block_on(async {
        let path = dir.join("persons.csv");
        let engine = Engine::embedded(meta, &[("persons".into(), path.as_path())])
            .await
            .unwrap();
        let r = ask(
            &engine,
            &l,
            "SELECT sex, SUM(age) AS s FROM persons GROUP BY sex ORDER BY sex",
            200.0,
        )
        .await;
        let rows = r.rows().unwrap();
        // Down-weighted, the unit would add 0.5 × 100 to each cell (6050); dropped, nothing.
        close("F", num(&rows[0][1]), 6000.0, 5.0);
        close("M", num(&rows[1][1]), 6000.0, 5.0);
    });
    std::fs::remove_dir_all(dir).unwrap();
}

/// Metadata for trips: a person may bring 100 rows, into at most 2 cities, 1 row per city.
const TRIPS: &str = r#"
[budget]
epsilon = 1000.0
delta = 1e-3

[table.trips]
privacy_unit = "person_id"
max_rows_per_unit = 100
max_groups_per_unit = 2
max_rows_per_group = 1

[table.trips.columns]
person_id = { type = "int" }
city = { type = "string", public_keys = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"] }
place = { type = "string" }
fare = { type = "float", lower = 0, upper = 100 }
"#;

#[test]
fn a_unit_in_many_groups_keeps_at_most_l0_of_them_with_one_row_each() {
    // 300 persons with one trip to A (fare 10); one traveller with 3 trips to each of the 10
    // cities (fare 100), and 50 trips to places no one else visits. Without the per-group
    // bounds the traveller's 30 rows (≤ 100) would all count: 3 in each of B..J.
    let dir = std::env::temp_dir().join(format!("veil-dp-sql-l0-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("person_id,city,place,fare\n");
    for i in 1..=300 {
        csv.push_str(&format!("{i},A,home,10.0\n"));
    }
    for c in ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"] {
        for _ in 0..3 {
            csv.push_str(&format!("9999,{c},home,100.0\n"));
        }
    }
    for j in 0..50 {
        csv.push_str(&format!("9999,A,secret-{j},100.0\n"));
    }
    std::fs::write(dir.join("trips.csv"), &csv).unwrap();
    let l = SqliteLedger::open(dir.join("budget.db")).unwrap();
    l.set_budget("trips", None, 1e6, 1e-3).unwrap();
    let meta = Metadata::from_toml(TRIPS).unwrap();
    let options = |max_groups: Option<u64>| QueryOptions {
        epsilon: 200.0,
        delta: 1e-6,
        max_groups_per_unit: max_groups,
        max_rows_per_group: None,
        noise: None,
    };
    rt().block_on(async {
        let path = dir.join("trips.csv");
        let engine = Engine::embedded(meta, &[("trips".into(), path.as_path())])
            .await
            .unwrap();
        let sql =
            "SELECT city, COUNT(*) AS n, SUM(fare) AS f FROM trips GROUP BY city ORDER BY city";
        for (asked, l0) in [(None, 2.0), (Some(1), 1.0)] {
            // Repeated: the choice of groups is random, the bound is not.
            for _ in 0..4 {
                let r = engine
                    .query(&l, "trips", "tester", sql, options(asked))
                    .await;
                let rows = r.unwrap().rows().unwrap();
                assert_eq!(rows.len(), 10, "public keys: every city");
                let n: Vec<f64> = rows.iter().map(|r| num(&r[1])).collect();
                let f: Vec<f64> = rows.iter().map(|r| num(&r[2])).collect();
                // Count sensitivity l0 × 1 row ≤ 2 (scale 0.02), fares 200 (scale 2).
                close("rows in all", n.iter().sum(), 300.0 + l0, 0.5);
                close("fares in all", f.iter().sum(), 3000.0 + 100.0 * l0, 50.0);
                let elsewhere = n[1..].iter().filter(|x| **x > 0.5).count() as f64;
                // Kept, not dropped: the traveller is in l0 cities (one of them may be A).
                assert!(
                    elsewhere <= l0 && elsewhere >= l0 - 1.0,
                    "the traveller shows up in {elsewhere} of B..J: {n:?}"
                );
                assert!(n[1..].iter().all(|x| *x < 1.5), "one row per group: {n:?}");
            }
        }
        // Private keys: the traveller's 50 secret places are each theirs alone; with at most
        // 1 row per place and 2 places, τ = 1 + b·ln(2 / 2δ) keeps them all hidden.
        let r = engine
            .query(
                &l,
                "trips",
                "tester",
                "SELECT place, COUNT(*) AS n FROM trips GROUP BY place ORDER BY place",
                options(None),
            )
            .await
            .unwrap();
        let places: Vec<Value> = r
            .rows()
            .unwrap()
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(places, [Value::from("home")]);
        // b covers L1 = 2 and a grid step of rounding in each of the L0 = 2 groups.
        let step = veil_dp::noise::Grid::for_scale(2.0 / 200.0).spacing();
        let b = (2.0 + 2.0 * step) / 200.0;
        close(
            "τ",
            r.threshold.unwrap(),
            1.0 + b * (2.0f64 / 2e-6).ln(),
            1e-9,
        );
        // COUNT(DISTINCT place): without a GROUP BY the traveller brings one row in all (L∞),
        // spread over its 80 rows: its 50 secret places add 50/80, not 50.
        let r = engine
            .query(
                &l,
                "trips",
                "tester",
                "SELECT COUNT(DISTINCT place) AS d FROM trips",
                options(None),
            )
            .await
            .unwrap();
        close(
            "distinct places",
            num(&r.rows().unwrap()[0][0]),
            1.0 + 50.0 / 80.0,
            0.5, // counts are released as integers: 1.625 rounds to 2
        );
        // The dry run states the bounds and the sensitivities they give.
        let p = engine
            .preview(&l, "trips", "tester", sql, QueryOptions::default())
            .await
            .unwrap();
        assert!(
            p.contribution
                .contains("at most 2 rows in all, into at most 2 groups, at most 1 row per group"),
            "{}",
            p.contribution
        );
        assert_eq!(p.measurements[0].sensitivity, 2.0);
        close(
            "sum sensitivity",
            p.measurements[1].sensitivity,
            200.0,
            1e-9,
        );
        // A bound out of range is refused before anything is charged.
        let before = l.remaining("trips", None).unwrap().epsilon;
        let bad = QueryOptions {
            max_groups_per_unit: Some(0),
            ..Default::default()
        };
        let e = engine
            .query(&l, "trips", "tester", sql, bad)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("max_groups_per_unit"), "{e}");
        assert_eq!(l.remaining("trips", None).unwrap().epsilon, before);
    });
    std::fs::remove_dir_all(dir).unwrap();
}

const GEO: &str = r#"
[budget]
epsilon = 1000.0

[table.persons]
privacy_unit = "person_id"
max_rows_per_unit = 1

[table.persons.columns]
person_id = { type = "int" }
state = { type = "string" }
income = { type = "float", lower = 0, upper = 1000 }

[table.states]
public = true

[table.states.columns]
code = { type = "string" }
region = { type = "string", public_keys = ["East", "West"] }
population = { type = "float", lower = 0, upper = 100 }
"#;

#[test]
fn a_public_table_joins_without_multiplying_a_person() {
    // 400 persons in 4 states; a public table of the states, and a copy of it in which CA is
    // listed 50 times (a join on it would count every Californian 50 times).
    let dir = std::env::temp_dir().join(format!("veil-dp-sql-public-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let states = [
        ("CA", "West", 39.0),
        ("OR", "West", 4.0),
        ("NY", "East", 20.0),
        ("MA", "East", 7.0),
    ];
    let mut persons = String::from("person_id,state,income\n");
    for i in 0..400 {
        let (code, _, _) = states[i % 4];
        persons.push_str(&format!("{i},{code},{}\n", 10 * (i % 4) + 100));
    }
    std::fs::write(dir.join("persons.csv"), persons).unwrap();
    let mut table = String::from("code,region,population\n");
    for (code, region, pop) in states {
        table.push_str(&format!("{code},{region},{pop}\n"));
    }
    std::fs::write(dir.join("states.csv"), &table).unwrap();
    for _ in 0..49 {
        table.push_str("CA,West,39.0\n");
    }
    std::fs::write(dir.join("states_dup.csv"), &table).unwrap();
    let l = SqliteLedger::open(dir.join("budget.db")).unwrap();
    l.set_budget("geo", None, 1e6, 1e-3).unwrap();
    let opts = QueryOptions {
        epsilon: 100.0,
        delta: 1e-6,
        ..Default::default()
    };
    rt().block_on(async {
        let meta = Metadata::from_toml(GEO).unwrap();
        let engine = |states: &'static str| {
            let meta = meta.clone();
            let dir = dir.clone();
            async move {
                let p = dir.join("persons.csv");
                let s = dir.join(states);
                Engine::embedded(
                    meta,
                    &[("persons".into(), p.as_path()), ("states".into(), s.as_path())],
                )
                .await
                .unwrap()
            }
        };
        let sql = "SELECT s.region, COUNT(*) AS n, SUM(p.income) AS i, SUM(s.population) AS pop \
                   FROM persons p JOIN states s ON p.state = s.code \
                   GROUP BY s.region ORDER BY s.region";
        let good = engine("states.csv").await;
        let r = good.query(&l, "geo", "tester", sql, opts).await.unwrap();
        let rows = r.rows().unwrap();
        // East: NY (i%4 = 2, income 120) and MA (130); West: CA (100) and OR (110).
        for (row, (region, income, pop)) in
            rows.iter().zip([("East", 100.0 * 250.0, 100.0 * 27.0), ("West", 100.0 * 210.0, 100.0 * 43.0)])
        {
            assert_eq!(row[0], Value::from(region));
            close("n", num(&row[1]), 200.0, 1.0);
            close("income", num(&row[2]), income, 300.0);
            // A public column summed over private rows: each person meets one state.
            close("population", num(&row[3]), pop, 30.0);
        }
        // The same join on a public table listing CA 50 times is refused before the charge.
        let spent = l.history("geo").unwrap().len();
        let bad = engine("states_dup.csv").await;
        let e = bad.query(&l, "geo", "tester", sql, opts).await.unwrap_err();
        assert!(e.to_string().contains("holds some value of code more than once"), "{e}");
        assert_eq!(l.history("geo").unwrap().len(), spent, "nothing charged");
        // Shapes that would not bound the join, or read only public data, are refused.
        for (sql, why) in [
            (
                "SELECT COUNT(*) FROM persons p JOIN states s ON s.code = s.region",
                "must be on an equality with one of its columns",
            ),
            (
                "SELECT COUNT(*) FROM persons p JOIN states s ON p.state < s.code",
                "must be on an equality with one of its columns",
            ),
            ("SELECT region, COUNT(*) FROM states GROUP BY region", "only the public table"),
            (
                "SELECT COUNT(*) FROM persons p LEFT JOIN states s ON p.state = s.code",
                "joins are not supported",
            ),
            (
                "SELECT COUNT(*) FROM persons p JOIN (SELECT code FROM states) s ON p.state = s.code",
                "derived table over the public table",
            ),
        ] {
            let e = good.query(&l, "geo", "tester", sql, opts).await.unwrap_err();
            assert!(e.to_string().contains(why), "{sql}: {e}");
        }
        assert_eq!(l.history("geo").unwrap().len(), spent, "refusals charge nothing");
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn thirty_two_concurrent_queries_never_overspend() {
    let d = data("concurrent");
    let db = d.dir.join("budget.db");
    // Total ε = 10: exactly ten queries of ε = 1 can be paid for.
    ledger(&d.dir, 10.0);
    let engine = Arc::new(rt().block_on(embedded(&d)));
    let results: Vec<Result<DpResult, SqlError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let engine = engine.clone();
                let db = db.clone();
                s.spawn(move || {
                    let l = SqliteLedger::open(&db).unwrap();
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(engine.query(
                        &l,
                        "persons",
                        &format!("analyst{i}"),
                        "SELECT sex, AVG(age) FROM persons GROUP BY sex",
                        QueryOptions {
                            epsilon: 1.0,
                            delta: 0.0,
                            ..Default::default()
                        },
                    ))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(SqlError::Dp(veil_dp::DpError::BudgetExhausted { .. }))
            )
        })
        .count();
    assert_eq!((ok, refused), (10, 22), "{results:?}");
    let l = SqliteLedger::open(&db).unwrap();
    let spent: f64 = l
        .history("persons")
        .unwrap()
        .iter()
        .map(|c| c.epsilon)
        .sum();
    assert!(spent <= 10.0 + 1e-9, "spent {spent}");
    assert!(l.remaining("persons", None).unwrap().epsilon < 1e-9);
}

#[test]
fn bad_tables_are_errors_not_panics() {
    let d = data("bad");
    rt().block_on(async {
        let missing = d.dir.join("nope.csv");
        let e = Engine::embedded(metadata(), &[("persons".into(), missing.as_path())])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        let visits = d.dir.join("visits.csv");
        let e = Engine::embedded(metadata(), &[("persons".into(), visits.as_path())])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not in the data"), "{e}");
        let persons = d.dir.join("persons.csv");
        let e = Engine::embedded(metadata(), &[("people".into(), persons.as_path())])
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("not described by the metadata"),
            "{e}"
        );
        // A query on a table that was not given is an error, charging nothing.
        let engine = Engine::embedded(metadata(), &[("persons".into(), persons.as_path())])
            .await
            .unwrap();
        let l = ledger(&d.dir, 10.0);
        let e = engine
            .query(
                &l,
                "persons",
                "t",
                "SELECT COUNT(*) FROM visits",
                QueryOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("'datafusion.public.visits' not found"),
            "{e}"
        );
        assert!(l.history("persons").unwrap().is_empty());
    });
}

/// Loads the test data into PostgreSQL.
async fn load_postgres(url: &str, d: &Data) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE persons (person_id bigint PRIMARY KEY, age integer, \
             income double precision, sex text, state text, note real);
             CREATE TABLE visits (person_id bigint, cost double precision);",
        )
        .await
        .unwrap();
    for chunk in d.persons.chunks(2000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|p| {
                format!(
                    "({}, {}, {}, '{}', '{}', {})",
                    p.id,
                    p.age,
                    p.income,
                    p.sex,
                    p.state,
                    p.id % 7
                )
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO persons VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    for chunk in d.visits.chunks(4000) {
        let values: Vec<String> = chunk.iter().map(|(id, c)| format!("({id}, {c})")).collect();
        client
            .batch_execute(&format!("INSERT INTO visits VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
}

#[test]
fn postgres_answers_and_refuses_every_shape() {
    let Some(server) = veil_dp::testing::PostgresServer::start("dpsql").unwrap() else {
        // CI installs PostgreSQL (.ci/run); elsewhere the test needs Debian's package.
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL (initdb, pg_ctl) is not installed"
        );
        eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
        return;
    };
    let d = data("pg");
    let l = ledger(&d.dir, 10_000.0);
    rt().block_on(async {
        load_postgres(&server.url, &d).await;
        let engine = Engine::postgres(metadata(), &server.url).await.unwrap();
        every_supported_shape(&engine, &l, &d).await;
        every_refused_shape(&engine, &l).await;
        // The same budget accounting as the embedded backend.
        assert_eq!(l.history("persons").unwrap().len(), 16);
        // What PostgreSQL runs is the clamped, bounded aggregation: no noise, no random().
        let sql = engine
            .explain_postgres("SELECT sex, SUM(income) FROM persons GROUP BY sex")
            .await
            .unwrap();
        assert!(sql[0].contains("CASE WHEN"), "{sql:?}");
        assert!(!sql[0].to_lowercase().contains("random"), "{sql:?}");
        // A table the server lacks is named.
        let meta = Metadata::from_toml(
            "[budget]\nepsilon = 1.0\n[table.absent]\nprivacy_unit = \"id\"\nmax_rows_per_unit = 1\n[table.absent.columns]\nid = { type = \"int\" }\n",
        )
        .unwrap();
        let e = Engine::postgres(meta, &server.url).await.unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
    });
}

#[test]
fn hostile_sql_is_answered_or_refused_never_a_panic() {
    let d = data("hostile");
    let l = ledger(&d.dir, 1e9);
    let queries = [
        "",
        ";",
        "SELECT",
        "SELECT COUNT(*) FROM persons; DROP TABLE persons",
        "SELECT COUNT(*) FROM persons LIMIT -1",
        "SELECT COUNT(*) FROM persons OFFSET 99999999999",
        "SELECT COUNT(*) FROM persons WHERE age IN ()",
        "SELECT COUNT(*) FROM persons WHERE age > 1e308 * 10",
        "SELECT COUNT(*) FROM persons WHERE age > 99999999999999999999999999999",
        "SELECT SUM(age) FROM persons GROUP BY 1",
        "SELECT COUNT(*) FROM persons GROUP BY age, age, age ORDER BY 1 DESC",
        "SELECT COUNT(*) c FROM persons GROUP BY state HAVING c > 0 AND c < 1e300",
        "SELECT state, COUNT(*) FROM persons GROUP BY state ORDER BY COUNT(*) / 0",
        "SELECT percentile_cont(2.0) WITHIN GROUP (ORDER BY age) FROM persons",
        "SELECT percentile_cont(age) WITHIN GROUP (ORDER BY age) FROM persons",
        "SELECT approx_percentile_cont(age, -0.5) FROM persons",
        "SELECT MEDIAN(person_id) FROM persons",
        "SELECT COUNT(*) FROM persons WHERE state LIKE '%' || state",
        "SELECT COUNT(*) FROM persons WHERE CASE WHEN age > 1 THEN TRUE END",
        "SELECT COUNT(*) FROM persons p JOIN persons q ON p.person_id = q.person_id",
        "SELECT COUNT(*) FROM persons p JOIN visits v ON p.person_id = v.person_id \
         JOIN visits w ON v.person_id = w.person_id",
        "SELECT 'é', COUNT(*) FROM persons GROUP BY 'é'",
        "SELECT COUNT(*) FROM persons WHERE sex = '\u{0}'",
        "WITH t AS (SELECT * FROM persons) SELECT COUNT(*) FROM t",
        "SELECT COUNT(*) FROM (SELECT person_id, age FROM persons) AS t(a, b)",
        "EXPLAIN SELECT COUNT(*) FROM persons",
        "SELECT COUNT(*) FROM persons WHERE TRY_CAST(state AS BIGINT) IS NULL",
    ];
    rt().block_on(async {
        let engine = embedded(&d).await;
        for sql in queries {
            match engine
                .query(&l, "persons", "fuzz", sql, QueryOptions::default())
                .await
            {
                Ok(r) => {
                    r.rows().unwrap();
                    r.to_json().unwrap();
                }
                Err(e) => assert!(!e.to_string().is_empty(), "{sql}"),
            }
        }
    });
}

/// A dry run reads nothing and charges nothing, and what it announces is what the query then
/// reports: the same cost, the same accuracy for data-independent columns.
#[test]
fn a_preview_costs_nothing_and_announces_the_query() {
    let d = data("preview");
    let l = ledger(&d.dir, 3.0);
    l.set_budget("persons", Some("tester"), 2.0, 1e-3).unwrap();
    rt().block_on(async {
        let engine = embedded(&d).await;
        let sql = "SELECT sex, COUNT(*) AS n, SUM(age) AS total, AVG(age) AS mean FROM persons GROUP BY sex";
        let options = QueryOptions {
            epsilon: 1.5,
            delta: 1e-6,
            ..Default::default()
        };
        let before = l.history("persons").unwrap().len();
        let p = engine
            .preview(&l, "persons", "tester", sql, options)
            .await
            .unwrap();
        assert_eq!(l.history("persons").unwrap().len(), before, "a preview charges nothing");
        assert_eq!(p.epsilon, 1.5);
        assert_eq!(p.delta, 0.0, "public keys spend no δ");
        assert!(p.affordable);
        assert_eq!(p.analyst_remaining_epsilon, 2.0);
        assert!(p.accuracy["n"].is_some() && p.accuracy["total"].is_some());
        assert_eq!(p.accuracy["mean"], None, "a mean's accuracy depends on the data");
        let r = engine
            .query(&l, "persons", "tester", sql, options)
            .await
            .unwrap();
        assert_eq!(r.epsilon, p.epsilon);
        assert_eq!(r.accuracy["n"], p.accuracy["n"]);
        assert_eq!(r.accuracy["total"], p.accuracy["total"]);
        // Now the analyst's own budget (0.5 left) cannot pay: the preview says so, still free.
        let again = engine
            .preview(&l, "persons", "tester", sql, options)
            .await
            .unwrap();
        assert!(!again.affordable);
        assert_eq!(l.history("persons").unwrap().len(), before + 1);
        // A query the engine refuses is refused by the preview too.
        assert!(engine
            .preview(&l, "persons", "tester", "SELECT age FROM persons", options)
            .await
            .is_err());
    });
}

/// Issue 18: a join with a public table on PostgreSQL answers as the embedded backend does,
/// and the public table's key uniqueness is checked against the live table at every query: a
/// duplicate inserted after a first answer (a join on it would count every Californian
/// twice) is refused before the charge.
#[test]
fn postgres_joins_a_public_table_and_rechecks_its_keys_at_every_query() {
    let Some(server) = veil_dp::testing::PostgresServer::for_test("dpsql-public") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("veil-dp-sql-pgpublic-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let l = SqliteLedger::open(dir.join("budget.db")).unwrap();
    l.set_budget("geo", None, 1e6, 1e-3).unwrap();
    let opts = QueryOptions {
        epsilon: 100.0,
        delta: 1e-6,
        ..Default::default()
    };
    rt().block_on(async {
        let (client, conn) = tokio_postgres::connect(&server.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let states = [("CA", "West", 39.0), ("OR", "West", 4.0), ("NY", "East", 20.0), ("MA", "East", 7.0)];
        let persons: Vec<String> = (0..400)
            .map(|i| format!("({i}, '{}', {})", states[i % 4].0, 10 * (i % 4) + 100))
            .collect();
        let rows: Vec<String> = states
            .iter()
            .map(|(c, r, p)| format!("('{c}', '{r}', {p})"))
            .collect();
        client
            .batch_execute(&format!(
                "CREATE TABLE persons (person_id bigint PRIMARY KEY, state text, income double precision);
                 CREATE TABLE states (code text, region text, population double precision);
                 INSERT INTO persons VALUES {};
                 INSERT INTO states VALUES {};",
                persons.join(","),
                rows.join(",")
            ))
            .await
            .unwrap();
        let engine = Engine::postgres(Metadata::from_toml(GEO).unwrap(), &server.url)
            .await
            .unwrap();
        let sql = "SELECT s.region, COUNT(*) AS n, SUM(p.income) AS i, SUM(s.population) AS pop \
                   FROM persons p JOIN states s ON p.state = s.code \
                   GROUP BY s.region ORDER BY s.region";
        let r = engine.query(&l, "geo", "tester", sql, opts).await.unwrap();
        let rows = r.rows().unwrap();
        for (row, (region, income, pop)) in rows
            .iter()
            .zip([("East", 100.0 * 250.0, 100.0 * 27.0), ("West", 100.0 * 210.0, 100.0 * 43.0)])
        {
            assert_eq!(row[0], Value::from(region));
            close("n", num(&row[1]), 200.0, 1.0);
            close("income", num(&row[2]), income, 300.0);
            close("population", num(&row[3]), pop, 30.0);
        }
        let spent = l.history("geo").unwrap().len();
        client
            .batch_execute("INSERT INTO states VALUES ('CA', 'West', 39.0)")
            .await
            .unwrap();
        let e = engine.query(&l, "geo", "tester", sql, opts).await.unwrap_err();
        assert!(e.to_string().contains("holds some value of code more than once"), "{e}");
        assert_eq!(l.history("geo").unwrap().len(), spent, "nothing charged");
        // Reading only the public table is refused on this backend too.
        let e = engine
            .query(&l, "geo", "tester", "SELECT region, COUNT(*) FROM states GROUP BY region", opts)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("only the public table"), "{e}");
        assert_eq!(l.history("geo").unwrap().len(), spent);
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_directory_of_partitions_is_one_table_and_a_new_partition_is_proven_again() {
    // 400 persons in two CSV partitions, one row each: the bound (1 row per person) is proven
    // by the first query and cached for this version of the directory.
    let dir = std::env::temp_dir().join(format!("veil-dp-sql-parts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let parts = dir.join("persons");
    std::fs::create_dir_all(&parts).unwrap();
    let header = "person_id,age,income,sex,state\n";
    for (k, range) in [(0, 1..=200), (1, 201..=400)] {
        let mut csv = String::from(header);
        for i in range {
            csv.push_str(&format!("{i},40,1000.0,F,CA\n"));
        }
        std::fs::write(parts.join(format!("part-{k}.csv")), csv).unwrap();
    }
    let l = ledger(&dir, 1000.0);
    let meta = Metadata::from_toml(veil_dp_sql::sample::PERSONS_METADATA).unwrap();
    rt().block_on(async {
        let engine = Engine::embedded(meta.clone(), &[("persons".into(), parts.as_path())])
            .await
            .unwrap();
        let count = || async {
            let r = ask(&engine, &l, "SELECT COUNT(*) FROM persons", 40.0).await;
            num(&r.rows().unwrap()[0][0])
        };
        close("COUNT(*) over two partitions", count().await, 400.0, 3.0);
        // The attack: a partition added after the proof repeats person 7 a thousand times. A
        // proof cached for the old directory would skip enforcing the bound and count 1000
        // more rows; the directory's version changed, so the bound is proven again, found
        // exceeded, and enforced: person 7 still counts once.
        let mut csv = String::from(header);
        for _ in 0..1000 {
            csv.push_str("7,40,1000.0,F,CA\n");
        }
        std::fs::write(parts.join("part-2.csv"), csv).unwrap();
        close(
            "COUNT(*) after a heavy partition",
            count().await,
            400.0,
            3.0,
        );
        // A partition beside a file of another format, or a subdirectory (which DataFusion
        // would read recursively, out of sight of the version): refused when registered.
        std::fs::write(parts.join("part-3.parquet"), b"PAR1").unwrap();
        let e = Engine::embedded(meta.clone(), &[("persons".into(), parts.as_path())])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("mixes file types"), "{e}");
        std::fs::remove_file(parts.join("part-3.parquet")).unwrap();
        std::fs::create_dir_all(parts.join("more")).unwrap();
        let e = Engine::embedded(meta.clone(), &[("persons".into(), parts.as_path())])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not a file"), "{e}");
        std::fs::remove_dir_all(parts.join("more")).unwrap();
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let e = Engine::embedded(meta, &[("persons".into(), empty.as_path())])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("holds no data files"), "{e}");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
