//! Attacks on DP SQL through the query text, on both backends.
//!
//! The threat: an analyst with a budget sends any SQL they like and watches *everything* that
//! comes back — results, refusals, error messages, what was charged. DP covers the noisy
//! numbers only; every other channel must say nothing about any one person. Each attack here
//! asks the same question twice, once with a condition that holds for one person (person 42's
//! income is above 50,000) and once with one that does not (above 60,000): both runs must be
//! indistinguishable apart from the noise — both answered, or both refused before anything is
//! charged — and no message may quote a value computed from the data.
//!
//! The corpus covers every place where a value can make a row-level expression fail: the type
//! coercions DataFusion adds after parsing (text compared with numbers in `=`, `IN`,
//! `BETWEEN`, `CASE` branches, `nullif`, `greatest`, `coalesce`; integers narrowed to `Int32`
//! for `round`), and the errors PostgreSQL raises where DataFusion does not (float overflow
//! and underflow, `integer out of range`, a `LIKE` pattern ending with its escape character).
//! The data holds extreme values (a float near its maximum, an integer near 2^63, text with
//! backslashes and digits) so that overflow is reachable.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};

use veil_dp::ledger::{Ledger, SqliteLedger};
use veil_dp_sql::{Engine, Metadata, QueryOptions, SqlError};

const PERSONS: u64 = 300;

fn metadata_text(population: Option<u64>) -> String {
    let population = population
        .map(|n| format!("population = {n}\n"))
        .unwrap_or_default();
    format!(
        r#"
[budget]
epsilon = 1e12
delta = 0.5
{population}
[table.persons]
privacy_unit = "person_id"
max_rows_per_unit = 1

[table.persons.columns]
person_id = {{ type = "int" }}
age = {{ type = "int", lower = 0, upper = 100 }}
income = {{ type = "float", lower = 0, upper = 500000 }}
sex = {{ type = "string", public_keys = ["F", "M"] }}
state = {{ type = "string" }}
score = {{ type = "int" }}
ratio = {{ type = "float" }}
"#
    )
}

struct Data {
    dir: PathBuf,
    rows: Vec<String>,
}

impl Drop for Data {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// 300 persons; person 42 earns 55,000, is 37 and lives in "NY". Some rows hold extreme
/// values: a score near 2^63 (and its negative), a ratio near the largest double and one
/// among the smallest subnormals, text with a backslash and text that looks like a number.
fn data(name: &str) -> Data {
    let dir = std::env::temp_dir().join(format!("veil-dp-attacks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rows = Vec::new();
    for id in 1..=PERSONS {
        let (age, income, state) = match id {
            42 => (37i64, 55_000.0, "NY".to_string()),
            7 => (101, 9e5, "a\\".to_string()),
            8 => (-3, -1.0, "5x".to_string()),
            // The smallest double: half of it rounds to zero, which PostgreSQL fails.
            15 => (40, 5e-324, "CA".to_string()),
            _ => (
                ((id * 7) % 90 + 5) as i64,
                ((id * 7919) % 200_000) as f64 + 0.25,
                ["CA", "TX", "NY", "5"][(id % 4) as usize].to_string(),
            ),
        };
        let sex = if id % 2 == 0 { "F" } else { "M" };
        let score: i64 = match id {
            9 => i64::MAX - 10,
            10 => i64::MIN + 10,
            11 => 2_147_483_000,
            _ => (id as i64) * 1000,
        };
        let ratio = match id {
            12 => "1.7976931348623157e308".to_string(),
            13 => "5e-324".to_string(),
            14 => "-1.7976931348623157e308".to_string(),
            _ => format!("{}", id as f64 / 7.0),
        };
        rows.push(format!("{id},{age},{income},{sex},{state},{score},{ratio}"));
    }
    let mut csv = String::from("person_id,age,income,sex,state,score,ratio\n");
    for r in &rows {
        csv.push_str(r);
        csv.push('\n');
    }
    std::fs::write(dir.join("persons.csv"), csv).unwrap();
    Data { dir, rows }
}

fn ledger(dir: &Path, meta: &Metadata) -> SqliteLedger {
    let l = SqliteLedger::open(dir.join("budget.db")).unwrap();
    l.set_budget("persons", None, meta.budget.epsilon, meta.budget.delta)
        .unwrap();
    l
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// How a query ended, as the analyst sees it (the noisy numbers left out).
#[derive(Debug, PartialEq)]
enum Seen {
    Answered,
    /// Refused before anything was charged.
    Refused,
    /// Anything else: an error after the charge, or a refusal that charged.
    Failed(String),
}

async fn run(
    engine: &Engine,
    ledger: &(dyn Ledger + Sync),
    sql: &str,
    options: QueryOptions,
) -> (Seen, Option<String>) {
    let before = ledger.history("persons").unwrap().len();
    let r = engine
        .query(ledger, "persons", "mallory", sql, options)
        .await;
    let after = ledger.history("persons").unwrap().len();
    match r {
        Ok(r) => {
            r.rows().unwrap();
            assert_eq!(after, before + 1, "{sql}: an answer is charged once");
            (Seen::Answered, None)
        }
        Err(e @ (SqlError::Rejected(_) | SqlError::Sql(_))) if after == before => {
            (Seen::Refused, Some(e.to_string()))
        }
        Err(e) => (
            Seen::Failed(format!("{e} (charged: {})", after > before)),
            Some(e.to_string()),
        ),
    }
}

/// `{c}` holds for person 42 only in the first variant.
const HOLDS: &str = "person_id = 42 AND income > 50000";
const FAILS: &str = "person_id = 42 AND income > 60000";

/// Every query that could fail on one row, as a template over the condition `{c}`.
const CORPUS: &[&str] = &[
    // DataFusion's type coercion casts text to numbers (the audit's query first).
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN 'x' ELSE '0' END = 0",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN 'x' ELSE '0' END > 0",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN 'x' ELSE '0' END IN (0, 1)",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN 'x' ELSE '0' END BETWEEN 0 AND 1",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN 'x' ELSE 0 END = 0",
    "SELECT COUNT(*) FROM persons WHERE nullif(CASE WHEN {c} THEN 'x' ELSE '0' END, 0) IS NULL",
    "SELECT COUNT(*) FROM persons WHERE greatest(CASE WHEN {c} THEN 'x' ELSE '0' END, 0) = 0",
    "SELECT COUNT(*) FROM persons WHERE least(CASE WHEN {c} THEN 'x' ELSE '0' END, 0) = 0",
    "SELECT COUNT(*) FROM persons WHERE coalesce(CASE WHEN {c} THEN 'x' END, 0) = 0",
    "SELECT COUNT(*) FROM persons WHERE CAST(CASE WHEN {c} THEN 'x' ELSE '0' END AS INT) = 0",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN state ELSE '0' END = 5",
    "SELECT COUNT(*) FROM persons GROUP BY CASE WHEN {c} THEN 'x' ELSE '1' END = 1",
    // Integers narrowed to Int32 (round's precision argument).
    "SELECT COUNT(*) FROM persons WHERE round(income, CASE WHEN {c} THEN 3000000000 ELSE 0 END) > 0",
    "SELECT COUNT(*) FROM persons WHERE round(age, CASE WHEN {c} THEN 3000000000 ELSE 0 END) > 0",
    // Errors PostgreSQL raises where DataFusion does not.
    "SELECT COUNT(*) FROM persons WHERE (CASE WHEN {c} THEN income ELSE 0 END) / 1e-305 > 0",
    "SELECT COUNT(*) FROM persons WHERE (CASE WHEN {c} THEN ratio ELSE 0 END) / 1e-305 > 0",
    "SELECT COUNT(*) FROM persons WHERE (CASE WHEN {c} THEN ratio ELSE 1 END) / 3 > 0",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN 2147483000 ELSE 0 END + 1000 > 0",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN 9223372036854775000 ELSE 0 END + 1000 > 0",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN score ELSE 0 END + 1000 > 0",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN score ELSE 0 END - 1000 > 0",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN ratio ELSE 0 END + 1000000 > 0",
    "SELECT COUNT(*) FROM persons WHERE 'a' LIKE CASE WHEN {c} THEN '\\' ELSE 'a' END",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN state ELSE 'a' END LIKE 'a\\'",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN state ELSE 'a' END LIKE state",
    // Casts that fail on some values.
    "SELECT COUNT(*) FROM persons WHERE CAST(CASE WHEN {c} THEN ratio ELSE 0 END AS INT) = 0",
    "SELECT COUNT(*) FROM persons WHERE CAST(CASE WHEN {c} THEN score ELSE 0 END AS INT) = 0",
    "SELECT COUNT(*) FROM persons WHERE CAST(CASE WHEN {c} THEN state ELSE '1' END AS BIGINT) = 0",
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN -score ELSE 0 END > 0",
    "SELECT COUNT(*) FROM persons WHERE (CASE WHEN {c} THEN score ELSE 1 END) % 7 = 0",
    "SELECT COUNT(*) FROM persons WHERE (CASE WHEN {c} THEN score ELSE 1 END) / 7 = 0",
    // Aggregates whose input can fail.
    "SELECT SUM(CASE WHEN {c} THEN income ELSE 0 END) FROM persons",
    "SELECT COUNT(*), state FROM persons WHERE {c} GROUP BY state",
    // Aggregates of expressions: computed on the clamped columns, so they cannot fail on any
    // row (age holds 101 and −3 outside its bounds, person 15 an income of 5e-324, which a
    // product rounds to zero: PostgreSQL's "underflow" error); where the analysis cannot rule
    // an overflow or an underflow out, refused before the charge.
    "SELECT SUM(income * 0.5) FROM persons WHERE {c} OR person_id = 15",
    "SELECT AVG(income / 1000) FROM persons WHERE {c} OR person_id = 15",
    "SELECT SUM(age * income * 2 - age / 7) FROM persons WHERE {c} OR person_id = 7",
    "SELECT SUM((income - 55000) * 1e-300) FROM persons WHERE {c}",
    "SELECT SUM((income - 55000) * 1e-90 * 1e-90 * 1e-90) FROM persons WHERE {c}",
    "SELECT SUM(income * 1e300) FROM persons WHERE {c}",
    "SELECT SUM(score * 2) FROM persons WHERE {c}",
    // Total expressions must stay answerable on both variants.
    "SELECT COUNT(*) FROM persons WHERE CASE WHEN {c} THEN 1 ELSE 0 END = 1",
    "SELECT COUNT(*) FROM persons WHERE TRY_CAST(CASE WHEN {c} THEN 'x' ELSE '0' END AS BIGINT) = 0",
];

/// Both variants of every attack look alike; nothing fails after the charge.
async fn corpus(engine: &Engine, ledger: &(dyn Ledger + Sync), backend: &str) {
    let options = QueryOptions {
        epsilon: 1e-6,
        delta: 1e-9,
        ..Default::default()
    };
    let mut answered = 0;
    for template in CORPUS {
        let a = template.replace("{c}", HOLDS);
        let b = template.replace("{c}", FAILS);
        let (seen_a, msg_a) = run(engine, ledger, &a, options).await;
        let (seen_b, msg_b) = run(engine, ledger, &b, options).await;
        assert!(
            !matches!(seen_a, Seen::Failed(_)) && !matches!(seen_b, Seen::Failed(_)),
            "{backend}: {a}\n  → {seen_a:?}\n{b}\n  → {seen_b:?}"
        );
        assert_eq!(seen_a, seen_b, "{backend}: {a} and {b} are told apart");
        // A refusal's reason is about the query, never the data: the same text for both.
        if let (Some(x), Some(y)) = (&msg_a, &msg_b) {
            assert_eq!(
                x.replace(HOLDS, "{c}").replace("50000", "N"),
                y.replace(FAILS, "{c}").replace("60000", "N"),
                "{backend}: {a}"
            );
        }
        if seen_a == Seen::Answered {
            answered += 1;
        }
        // The expression aggregates over the extreme rows are answered, not dodged.
        if template.contains("OR person_id =") {
            assert_eq!(seen_a, Seen::Answered, "{backend}: {a}");
        }
    }
    // The total ones are answered (the corpus is not refused wholesale).
    assert!(answered >= 3, "{backend}: only {answered} answered");
}

#[test]
fn the_attack_corpus_learns_nothing_on_csv() {
    let d = data("csv");
    let meta = Metadata::from_toml(&metadata_text(None)).unwrap();
    let l = ledger(&d.dir, &meta);
    rt().block_on(async {
        let engine = Engine::embedded(meta, &[("persons".into(), &d.dir.join("persons.csv"))])
            .await
            .unwrap();
        corpus(&engine, &l, "csv").await;
    });
}

async fn load_postgres(url: &str, d: &Data) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE persons (person_id bigint PRIMARY KEY, age integer, \
             income double precision, sex text, state text, score bigint, \
             ratio double precision);",
        )
        .await
        .unwrap();
    let values: Vec<String> = d
        .rows
        .iter()
        .map(|r| {
            let f: Vec<&str> = r.split(',').collect();
            format!(
                "({}, {}, {}, '{}', '{}', {}, {})",
                f[0], f[1], f[2], f[3], f[4], f[5], f[6]
            )
        })
        .collect();
    client
        .batch_execute(&format!("INSERT INTO persons VALUES {}", values.join(",")))
        .await
        .unwrap();
}

fn postgres() -> Option<veil_dp::testing::PostgresServer> {
    let server = veil_dp::testing::PostgresServer::start("dpattack").unwrap();
    if server.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL (initdb, pg_ctl) is not installed"
        );
        eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
    }
    server
}

#[test]
fn the_attack_corpus_learns_nothing_on_postgres() {
    let Some(server) = postgres() else { return };
    let d = data("pg");
    let meta = Metadata::from_toml(&metadata_text(None)).unwrap();
    let l = ledger(&d.dir, &meta);
    rt().block_on(async {
        load_postgres(&server.url, &d).await;
        let engine = Engine::postgres(meta, &server.url).await.unwrap();
        corpus(&engine, &l, "postgres").await;
    });
}

/// Errors that the query and the metadata alone decide are refused before the charge.
#[test]
fn query_errors_are_refused_before_the_charge() {
    let d = data("before");
    let meta = Metadata::from_toml(&metadata_text(None)).unwrap();
    let l = ledger(&d.dir, &meta);
    rt().block_on(async {
        let engine = Engine::embedded(meta, &[("persons".into(), &d.dir.join("persons.csv"))])
            .await
            .unwrap();
        for sql in [
            "SELECT COUNT(*) FROM persons WHERE age = '5x'",
            "SELECT COUNT(*) FROM persons WHERE state = 5",
            "SELECT COUNT(*) FROM persons WHERE CAST(state AS INT) > 0 GROUP BY state",
            "SELECT COUNT(*) FROM persons WHERE age > CAST('x' AS INT)",
        ] {
            let (seen, msg) = run(&engine, &l, sql, QueryOptions::default()).await;
            assert_eq!(seen, Seen::Refused, "{sql}: {msg:?}");
        }
    });
}

/// No message carries a number computed from the data, at any ε: at ε = 9·10^6 the old grid
/// (2^-44) held at most 2^52 steps, 256, and `COUNT(*)` over 300 rows failed quoting the
/// count.
#[test]
fn huge_epsilon_never_errors_with_the_value() {
    let d = data("grid");
    let meta = Metadata::from_toml(&metadata_text(None)).unwrap();
    rt().block_on(async {
        let engine = Engine::embedded(meta, &[("persons".into(), &d.dir.join("persons.csv"))])
            .await
            .unwrap();
        for (i, sql) in [
            "SELECT COUNT(*) FROM persons",
            "SELECT COUNT(*) FROM persons WHERE person_id <> 42",
            "SELECT SUM(income) FROM persons",
        ]
        .into_iter()
        .enumerate()
        {
            // Each query gets the largest budget a ledger holds.
            let l = SqliteLedger::open(d.dir.join(format!("grid{i}.db"))).unwrap();
            l.set_budget("persons", None, 9e6, 0.5).unwrap();
            let options = QueryOptions {
                epsilon: 9e6,
                delta: 0.0,
                ..Default::default()
            };
            let r = engine.query(&l, "persons", "mallory", sql, options).await;
            let r = r.unwrap_or_else(|e| panic!("{sql}: {e}"));
            let v = r.rows().unwrap()[0][0].as_f64().unwrap();
            if i < 2 {
                // At such an ε the answer is exact to within the noise.
                assert!((v - (PERSONS - i as u64) as f64).abs() < 1.0, "{sql}: {v}");
            }
        }
    });
}

/// δ above 1/population is refused for private keys; without a declared population the
/// result warns.
#[test]
fn delta_is_checked_against_the_population() {
    let d = data("delta");
    rt().block_on(async {
        let meta = Metadata::from_toml(&metadata_text(Some(PERSONS))).unwrap();
        let l = ledger(&d.dir, &meta);
        let engine = Engine::embedded(meta, &[("persons".into(), &d.dir.join("persons.csv"))])
            .await
            .unwrap();
        let sql = "SELECT state, COUNT(*) FROM persons GROUP BY state";
        let too_big = QueryOptions {
            epsilon: 1.0,
            delta: 1.0 / 100.0,
            ..Default::default()
        };
        let (seen, msg) = run(&engine, &l, sql, too_big).await;
        assert_eq!(seen, Seen::Refused, "{msg:?}");
        assert!(msg.unwrap().contains("1/300"), "names the bound");
        let fine = QueryOptions {
            epsilon: 1.0,
            delta: 1e-4,
            ..Default::default()
        };
        let r = engine
            .query(&l, "persons", "mallory", sql, fine)
            .await
            .unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);

        let meta = Metadata::from_toml(&metadata_text(None)).unwrap();
        let engine = Engine::embedded(meta, &[("persons".into(), &d.dir.join("persons.csv"))])
            .await
            .unwrap();
        let r = engine
            .query(&l, "persons", "mallory", sql, fine)
            .await
            .unwrap();
        assert!(
            r.warnings.iter().any(|w| w.contains("population")),
            "{:?}",
            r.warnings
        );
    });
}
