//! Who sets a DP dataset's budget, and the PostgreSQL ledger under the async engine, through
//! the `veil` command as an analyst (or an attacker) runs it.
//!
//! Set `VEIL_BIN` to run these tests against another build of `veil` (e.g. a release binary).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use veil_dp::ledger::SqliteLedger;

fn bin() -> PathBuf {
    std::env::var_os("VEIL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_veil")))
}

fn veil(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Stdout of a command that must succeed.
fn ok(args: &[&str]) -> String {
    let out = veil(args);
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}): {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Stderr of a command that must fail cleanly (an error, not a panic).
fn refused(args: &[&str]) -> String {
    let out = veil(args);
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} must fail with an error: stdout {} stderr {err}",
        text(&out.stdout)
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A directory with the sample dataset (`persons.csv`, `persons.toml`: total ε = 10).
struct Data {
    dir: PathBuf,
}

impl Data {
    fn new(name: &str, rows: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("veil-dpb-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_string_lossy().into_owned();
        ok(&["dp", "sample", "--dir", &d, "--rows", &rows.to_string()]);
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    fn meta(&self) -> String {
        self.path("persons.toml")
    }

    fn table(&self) -> String {
        format!("persons={}", self.path("persons.csv"))
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `veil dp query` arguments.
fn query<'a>(
    meta: &'a str,
    table: &'a str,
    ledger: Option<&'a str>,
    analyst: &'a str,
    epsilon: &'a str,
) -> Vec<&'a str> {
    let mut a = vec![
        "dp",
        "query",
        "--metadata",
        meta,
        "--table",
        table,
        "--analyst",
        analyst,
        "--epsilon",
        epsilon,
        "--format",
        "json",
    ];
    if let Some(l) = ledger {
        a.extend(["--ledger", l]);
    }
    a.push("SELECT COUNT(*) AS n FROM persons");
    a
}

fn register(meta: &str, ledger: Option<&str>, extra: &[&str]) -> String {
    let mut a = vec!["dp", "dataset", "register", "--metadata", meta];
    if let Some(l) = ledger {
        a.extend(["--ledger", l]);
    }
    a.extend_from_slice(extra);
    ok(&a)
}

fn budget(meta: &str, ledger: Option<&str>, extra: &[&str]) -> serde_json::Value {
    let mut a = vec!["dp", "budget", "--metadata", meta, "--format", "json"];
    if let Some(l) = ledger {
        a.extend(["--ledger", l]);
    }
    a.extend_from_slice(extra);
    serde_json::from_str(&ok(&a)).unwrap()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap()
}

fn close(a: &serde_json::Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Item 5: metadata nobody registered gets no budget at all — the query is refused before
/// anything is charged (or any data read), with what to do.
#[test]
fn unregistered_metadata_is_refused_before_any_charge() {
    let d = Data::new("unreg", 300);
    let (m, t) = (d.meta(), d.table());
    let err = refused(&query(&m, &t, None, "mallory", "1"));
    assert!(
        err.contains("not registered") && err.contains("veil dp dataset register"),
        "{err}"
    );
    let err = refused(&["dp", "budget", "--metadata", &m]);
    assert!(err.contains("not registered"), "{err}");
    // Nothing was charged, and no total was taken from the file.
    let ledger = SqliteLedger::open(d.path("persons.budget.db")).unwrap();
    assert!(ledger.history("persons").unwrap().is_empty());
    assert!(ledger.remaining("persons", None).is_err());
}

/// Item 5: copying the metadata under another name (or into another directory, with the
/// ledger that defaults to beside it) gives no fresh budget on the same data.
#[test]
fn a_copy_of_the_metadata_gets_no_budget_of_its_own() {
    let d = Data::new("copy", 300);
    let (m, t) = (d.meta(), d.table());
    let l = d.path("shared.db");
    register(&m, Some(&l), &[]);
    // The operator's total (10) is spent.
    let v = json(&ok(&query(&m, &t, Some(&l), "mallory", "10")));
    assert!(close(&v["remaining_epsilon"], 0.0), "{v}");
    let err = refused(&query(&m, &t, Some(&l), "mallory", "1"));
    assert!(err.contains("budget exhausted"), "{err}");
    // Another name, same ledger: not a registered dataset.
    let copy = d.path("persons_again.toml");
    std::fs::copy(&m, &copy).unwrap();
    let err = refused(&query(&copy, &t, Some(&l), "mallory", "1"));
    assert!(err.contains("not registered"), "{err}");
    // Same name in another directory, with its default ledger beside it: a fresh ledger
    // file, in which nothing is registered.
    let other = d.dir.join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let moved = other.join("persons.toml").to_string_lossy().into_owned();
    std::fs::copy(&m, &moved).unwrap();
    let err = refused(&query(&moved, &t, None, "mallory", "1"));
    assert!(err.contains("not registered"), "{err}");
    // The same file by another path into the shared ledger is the same dataset: still spent.
    let err = refused(&query(&moved, &t, Some(&l), "mallory", "1"));
    assert!(err.contains("budget exhausted"), "{err}");
    let ledger = SqliteLedger::open(&l).unwrap();
    assert_eq!(ledger.history("persons").unwrap().len(), 1);
    assert!(ledger.history("persons_again").unwrap().is_empty());
}

/// Item 5: editing the metadata (the total, or anything else) after registration is refused;
/// the registered total stays what the operator set.
#[test]
fn edited_metadata_is_refused() {
    let d = Data::new("edit", 300);
    let (m, t) = (d.meta(), d.table());
    register(&m, None, &[]);
    let original = std::fs::read_to_string(&m).unwrap();
    assert!(original.contains("epsilon = 10.0"));
    std::fs::write(&m, original.replace("epsilon = 10.0", "epsilon = 1000.0")).unwrap();
    let err = refused(&query(&m, &t, None, "mallory", "20"));
    assert!(
        err.contains("not the registered one") && err.contains("veil dp dataset register"),
        "{err}"
    );
    let err = refused(&["dp", "budget", "--metadata", &m]);
    assert!(err.contains("not the registered one"), "{err}");
    // Any other change is refused too (here a bound).
    std::fs::write(&m, original.replace("upper = 100", "upper = 99")).unwrap();
    let err = refused(&query(&m, &t, None, "mallory", "1"));
    assert!(err.contains("not the registered one"), "{err}");
    // Back to the registered bytes: answered, against the registered total.
    std::fs::write(&m, &original).unwrap();
    let err = refused(&query(&m, &t, None, "mallory", "20"));
    assert!(err.contains("budget exhausted"), "{err}");
    let v = json(&ok(&query(&m, &t, None, "mallory", "1")));
    assert!(close(&v["remaining_epsilon"], 9.0), "{v}");
    let ledger = SqliteLedger::open(d.path("persons.budget.db")).unwrap();
    assert_eq!(ledger.history("persons").unwrap().len(), 1);
}

/// Item 5: the operator sets the total at registration and analysts' own budgets with
/// `budget set`; every query is charged to both, and re-registering keeps what was spent.
#[test]
fn the_operator_sets_the_total_and_analyst_budgets() {
    let d = Data::new("operator", 300);
    let (m, t) = (d.meta(), d.table());
    let out = register(&m, None, &["--total-epsilon", "3", "--total-delta", "1e-6"]);
    assert!(out.contains("budget     ε 3"), "{out}");
    let v = budget(&m, None, &[]);
    assert!(
        close(&v["epsilon"], 3.0) && close(&v["remaining_epsilon"], 3.0),
        "{v}"
    );
    assert_eq!(v["metadata_sha256"].as_str().unwrap().len(), 64);
    let out = ok(&[
        "dp",
        "budget",
        "set",
        "--metadata",
        &m,
        "--analyst",
        "bob",
        "--epsilon",
        "1",
    ]);
    assert!(out.contains("bob"), "{out}");
    ok(&query(&m, &t, None, "bob", "0.6"));
    let err = refused(&query(&m, &t, None, "bob", "0.6"));
    assert!(
        err.contains("budget exhausted") && err.contains("analyst \"bob\""),
        "{err}"
    );
    ok(&query(&m, &t, None, "alice", "1.2"));
    ok(&query(&m, &t, None, "alice", "1.2"));
    let err = refused(&query(&m, &t, None, "alice", "0.1"));
    assert!(err.contains("budget exhausted"), "{err}");
    let v = budget(&m, None, &["--analyst", "bob"]);
    assert!(close(&v["spent_epsilon"], 3.0), "{v}");
    assert!(close(&v["analyst_remaining_epsilon"], 0.4), "{v}");
    // Re-registering with a larger total: the charges stay.
    register(&m, None, &["--total-epsilon", "5"]);
    let v = budget(&m, None, &[]);
    assert!(close(&v["remaining_epsilon"], 2.0), "{v}");
    // `budget set` is refused for metadata that is not registered.
    let copy = d.path("other.toml");
    std::fs::copy(&m, &copy).unwrap();
    let err = refused(&[
        "dp",
        "budget",
        "set",
        "--metadata",
        &copy,
        "--analyst",
        "bob",
        "--epsilon",
        "9",
    ]);
    assert!(err.contains("not registered"), "{err}");
}

/// Item 5: a ledger written before registration existed (budget set from the file, charges
/// made) refuses queries until the operator registers; then it keeps what was spent.
#[test]
fn a_ledger_from_before_registration_keeps_its_charges() {
    let d = Data::new("old-ledger", 300);
    let (m, t) = (d.meta(), d.table());
    {
        // What the old `veil dp query` left behind: a total copied from the file, a charge.
        let old = SqliteLedger::open(d.path("persons.budget.db")).unwrap();
        old.set_budget("persons", None, 10.0, 1e-5).unwrap();
        old.charge("persons", "alice", 4.0, 0.0, "SELECT COUNT(*) FROM persons")
            .unwrap();
    }
    let err = refused(&query(&m, &t, None, "alice", "1"));
    assert!(err.contains("not registered"), "{err}");
    register(&m, None, &[]);
    let v = json(&ok(&query(&m, &t, None, "alice", "1")));
    assert!(close(&v["remaining_epsilon"], 5.0), "{v}");
}

/// Item 5: concurrent queries from separate processes never spend more than the registered
/// total: with ε = 1 and eight queries of 0.3, exactly three are answered.
#[test]
fn concurrent_queries_never_overspend_the_registered_total() {
    let d = Data::new("concurrent", 300);
    let (m, t) = (d.meta(), d.table());
    register(&m, None, &["--total-epsilon", "1"]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            let analyst = format!("analyst-{i}");
            Command::new(bin())
                .args(query(&m, &t, None, &analyst, "0.3"))
                .env("RAYON_NUM_THREADS", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut answered = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        if out.status.success() {
            answered += 1;
        } else {
            let err = text(&out.stderr);
            assert!(err.contains("budget exhausted"), "{err}");
        }
    }
    assert_eq!(answered, 3);
    let ledger = SqliteLedger::open(d.path("persons.budget.db")).unwrap();
    let spent: f64 = ledger
        .history("persons")
        .unwrap()
        .iter()
        .map(|c| c.epsilon)
        .sum();
    assert!((spent - 0.9).abs() < 1e-9, "{spent}");
}

/// Item 7: `veil dp query` and `veil dp bench` with the shared PostgreSQL ledger (the engine is
/// async; the old synchronous ledger panicked inside it, exit 101), on a real server on
/// loopback; registration and the refusals work the same there.
#[test]
fn dp_sql_with_a_postgresql_ledger() {
    let Some(server) = veil_dp::testing::PostgresServer::start("cli-ledger").unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is not installed"
        );
        return;
    };
    let d = Data::new("pg-ledger", 500);
    let (m, t) = (d.meta(), d.table());
    let url = format!("postgres://veil@127.0.0.1:{}/postgres", server.port);
    let err = refused(&query(&m, &t, Some(&url), "alice", "1"));
    assert!(err.contains("not registered"), "{err}");
    register(&m, Some(&url), &[]);
    let out = veil(&query(&m, &t, Some(&url), "alice", "1"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "dp query with a PostgreSQL ledger: {}",
        text(&out.stderr)
    );
    let v = json(&text(&out.stdout));
    assert!(close(&v["remaining_epsilon"], 9.0), "{v}");
    let out = veil(&[
        "dp",
        "bench",
        "--metadata",
        &m,
        "--table",
        &t,
        "--ledger",
        &url,
        "--epsilon",
        "0.5",
        "--runs",
        "2",
        "SELECT AVG(age) FROM persons",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "dp bench with a PostgreSQL ledger: {}",
        text(&out.stderr)
    );
    let v = budget(&m, Some(&url), &[]);
    assert!(close(&v["spent_epsilon"], 2.0), "{v}");
    assert_eq!(v["charges"].as_array().unwrap().len(), 3);
    // The ledger is shared: the default SQLite file beside the metadata was never used.
    assert!(!Path::new(&d.path("persons.budget.db")).exists());
    // Edited metadata is refused there too.
    let original = std::fs::read_to_string(&m).unwrap();
    std::fs::write(&m, original.replace("epsilon = 10.0", "epsilon = 1000.0")).unwrap();
    let err = refused(&query(&m, &t, Some(&url), "alice", "1"));
    assert!(err.contains("not the registered one"), "{err}");
    std::fs::write(&m, &original).unwrap();
    // Concurrent processes on the shared ledger: 8 left, four queries of 3 → two answered.
    let children: Vec<_> = (0..4)
        .map(|i| {
            let analyst = format!("analyst-{i}");
            Command::new(bin())
                .args(query(&m, &t, Some(&url), &analyst, "3"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let answered = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .filter(|o| {
            let err = text(&o.stderr);
            assert!(
                o.status.success() || err.contains("budget exhausted"),
                "{err}"
            );
            o.status.success()
        })
        .count();
    assert_eq!(answered, 2);
    let v = budget(&m, Some(&url), &[]);
    assert!(close(&v["spent_epsilon"], 8.0), "{v}");
}

fn as_refs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

/// Issue 18: `veil dp query --dry-run` tells the cost, the measurements with their share of ε,
/// the 95% interval per column and the keys policy, reading no data and charging nothing; the
/// run that follows charges exactly what it announced. A refused query is refused by the dry
/// run too, and an unaffordable one is said to be so, still free.
#[test]
fn a_dry_run_announces_the_cost_and_charges_nothing() {
    let d = Data::new("dry-run", 300);
    let (m, t) = (d.meta(), d.table());
    register(&m, None, &["--total-epsilon", "2", "--total-delta", "1e-6"]);
    let sql = "SELECT sex, SUM(age * 2) AS s, AVG(income) AS a FROM persons GROUP BY sex";
    let args = |format: &'static str, epsilon: &'static str| -> Vec<String> {
        [
            "dp",
            "query",
            "--metadata",
            &m,
            "--table",
            &t,
            "--analyst",
            "ann",
            "--epsilon",
            epsilon,
            "--format",
            format,
            "--dry-run",
            sql,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let p = json(&ok(&as_refs(&args("json", "1.5"))));
    assert!(
        close(&p["epsilon"], 1.5) && close(&p["remaining_epsilon"], 2.0),
        "{p}"
    );
    assert_eq!(p["affordable"], true);
    let ms = p["measurements"].as_array().unwrap();
    // SUM(age * 2), and AVG(income)'s count and centered sum: ε/3 each.
    assert_eq!(ms.len(), 3, "{p}");
    for m in ms {
        assert!(close(&m["epsilon"], 0.5), "{m}");
    }
    // One person moves SUM(age * 2) by at most 2 × 100 (age is declared in [0, 100]).
    let sum = ms
        .iter()
        .find(|m| {
            m["what"]
                .as_str()
                .unwrap()
                .starts_with("sum of persons.age * ")
        })
        .unwrap_or_else(|| panic!("{p}"));
    assert!(close(&sum["sensitivity"], 200.0), "{sum}");
    assert!(
        sum["what"].as_str().unwrap().ends_with("in [0, 200]"),
        "{sum}"
    );
    assert_eq!(sum["mechanism"], "Laplace");
    assert!(p["accuracy"]["s"].as_f64().unwrap() > 0.0, "{p}");
    assert!(
        p["keys"].as_str().unwrap().starts_with("public key sets"),
        "{p}"
    );
    let v = budget(&m, None, &[]);
    assert!(
        close(&v["spent_epsilon"], 0.0),
        "a dry run charges nothing: {v}"
    );
    let table = ok(&as_refs(&args("table", "1.5")));
    assert!(
        table.contains("nothing was read and nothing was charged"),
        "{table}"
    );
    assert!(table.contains("affordable yes"), "{table}");
    assert!(
        table.contains("measure    sum of persons.age * "),
        "{table}"
    );
    // The run charges what the dry run announced.
    let mut real = args("json", "1.5");
    real.retain(|a| a != "--dry-run");
    let r = json(&ok(&as_refs(&real)));
    assert!(close(&r["epsilon"], 1.5), "{r}");
    assert_eq!(r["accuracy"]["s"], p["accuracy"]["s"]);
    // 0.5 left: the dry run says the next one is unaffordable, and still charges nothing.
    let p = json(&ok(&as_refs(&args("json", "1.5"))));
    assert_eq!(p["affordable"], false, "{p}");
    let v = budget(&m, None, &[]);
    assert!(close(&v["spent_epsilon"], 1.5), "{v}");
    // Per-group bounds asked on the command line: stated, and they set the sensitivity
    // (the persons metadata allows 1 row per person: min(k = 1, 3 × 1)).
    let mut bounded = args("table", "0.1");
    let at = bounded.len() - 1;
    bounded.splice(
        at..at,
        ["--max-groups-per-unit", "3", "--max-rows-per-group", "1"].map(String::from),
    );
    let table = ok(&as_refs(&bounded));
    assert!(
        table.contains(
            "bounds     each privacy unit brings at most 1 row in all, into at most 1 group, \
             at most 1 row per group (a unit in more groups keeps that many of them"
        ),
        "{table}"
    );
    *bounded.iter_mut().find(|a| *a == "3").unwrap() = "0".into();
    let err = refused(&as_refs(&bounded));
    assert!(
        err.contains("max_groups_per_unit must be between 1"),
        "{err}"
    );
    // `EXPLAIN <query>` is the same dry run; EXPLAIN ANALYZE is refused. Neither charges.
    let mut explain = args("table", "0.1");
    explain.retain(|a| a != "--dry-run");
    *explain.last_mut().unwrap() = format!("EXPLAIN {sql}");
    let table = ok(&as_refs(&explain));
    assert!(
        table.contains("nothing was read and nothing was charged"),
        "{table}"
    );
    *explain.last_mut().unwrap() = format!("EXPLAIN ANALYZE {sql}");
    let err = refused(&as_refs(&explain));
    assert!(err.contains("EXPLAIN ANALYZE is not supported"), "{err}");
    let v = budget(&m, None, &[]);
    assert!(close(&v["spent_epsilon"], 1.5), "{v}");
    // Gaussian noise (issue 18): the dry run states ρ and σ; without δ it is refused; an
    // unknown noise is a usage error. None of it charges.
    let mut gauss = args("table", "0.1");
    let at = gauss.len() - 1;
    gauss.splice(at..at, ["--noise", "gaussian"].map(String::from));
    let table = ok(&as_refs(&gauss));
    assert!(table.contains("(Gaussian noise: ρ "), "{table}");
    assert!(table.contains("(Gaussian, ε "), "{table}");
    assert!(table.contains(", σ "), "{table}");
    gauss.splice(at..at, ["--delta", "0"].map(String::from));
    let err = refused(&as_refs(&gauss));
    assert!(err.contains("δ > 0"), "{err}");
    *gauss.iter_mut().find(|a| *a == "gaussian").unwrap() = "uniform".into();
    let out = veil(&as_refs(&gauss));
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("laplace or gaussian"),
        "{err}"
    );
    let v = budget(&m, None, &[]);
    assert!(close(&v["spent_epsilon"], 1.5), "{v}");
    // A refused shape is refused by the dry run, before anything is read.
    let mut bad = args("json", "0.1");
    *bad.last_mut().unwrap() = "SELECT age FROM persons".into();
    let err = refused(&as_refs(&bad));
    assert!(err.contains("row-level output"), "{err}");
}

/// Issue 18: metadata that chooses Gaussian noise is registered with zCDP accounting; the
/// ledger charges each query its ρ and `dp budget` reports ρ spent and left. Gaussian queries
/// at (1, 10⁻⁶) against a total of (3, 10⁻⁵): basic composition would pay for 3, zCDP pays for
/// ⌊ρ_total / ρ_each⌋ = 9. An analyst budget without δ is refused with what to give.
#[test]
fn a_gaussian_dataset_is_accounted_in_zcdp() {
    let d = Data::new("zcdp", 300);
    let (m, t) = (d.meta(), d.table());
    let toml = std::fs::read_to_string(&m).unwrap();
    assert!(toml.contains("delta = 1e-5\n"));
    std::fs::write(
        &m,
        toml.replace("delta = 1e-5\n", "delta = 1e-5\nnoise = \"gaussian\"\n"),
    )
    .unwrap();
    let out = register(&m, None, &["--total-epsilon", "3"]);
    assert!(
        out.contains("(zcdp accounting)") && out.contains("= ρ "),
        "{out}"
    );
    let mut passed = 0;
    loop {
        let out = veil(&query(&m, &t, None, "alice", "1"));
        if !out.status.success() {
            let err = text(&out.stderr);
            assert!(
                err.contains("budget exhausted") && err.contains("ρ"),
                "{err}"
            );
            break;
        }
        let v = json(&text(&out.stdout));
        assert_eq!(v["accounting"], "zcdp", "{v}");
        assert_eq!(v["noise"], "gaussian", "{v}");
        assert!(close(&v["charged"]["epsilon"], 0.0), "{v}");
        assert!(
            close(&v["charged"]["rho"], v["rho"].as_f64().unwrap()),
            "{v}"
        );
        passed += 1;
        assert!(passed < 100);
    }
    assert_eq!(
        passed, 9,
        "zCDP: 9 queries where basic composition pays for 3"
    );
    let v = budget(&m, None, &[]);
    assert_eq!(v["accounting"], "zcdp", "{v}");
    assert!(v["spent_rho"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["remaining_rho"].as_f64().unwrap() >= 0.0, "{v}");
    assert!(v["epsilon"].as_f64().unwrap() <= 3.0 + 1e-9, "{v}");
    let table = ok(&["dp", "budget", "--metadata", &m]);
    assert!(table.contains("remaining  ρ "), "{table}");
    let err = refused(&[
        "dp",
        "budget",
        "set",
        "--metadata",
        &m,
        "--analyst",
        "bob",
        "--epsilon",
        "1",
    ]);
    assert!(err.contains("needs δ > 0"), "{err}");
}
