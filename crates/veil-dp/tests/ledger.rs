//! The budget ledger under concurrency, and charge-before-compute.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use veil_dp::accountant::Cost;
use veil_dp::ledger::{Ledger, SqliteLedger};
use veil_dp::mechanisms::LaplaceMechanism;
use veil_dp::{release, DpError};

fn temp_ledger(name: &str) -> (SqliteLedger, PathBuf) {
    let dir = std::env::temp_dir().join(format!("veil-dp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("budget.db");
    (SqliteLedger::open(&path).unwrap(), dir)
}

/// 32 threads, each with its own connection (as separate processes would have), charge 0.1
/// three times each against a total of 1.0: exactly ten charges pass, the rest are refused,
/// and what was recorded never exceeds the budget.
fn thirty_two_concurrent_queries(open: &(dyn Fn() -> Box<dyn Ledger + Send> + Sync)) {
    let ledger = open();
    ledger.set_budget("persons", None, 1.0, 1e-5).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for t in 0..32 {
            let (accepted, rejected) = (accepted.clone(), rejected.clone());
            scope.spawn(move || {
                let ledger = open();
                for q in 0..3 {
                    match ledger.charge(
                        "persons",
                        &format!("analyst-{}", t % 4),
                        0.1,
                        1e-7,
                        &format!("query {t}/{q}"),
                    ) {
                        Ok(_) => accepted.fetch_add(1, Ordering::SeqCst),
                        Err(DpError::BudgetExhausted { .. }) => {
                            rejected.fetch_add(1, Ordering::SeqCst)
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    };
                }
            });
        }
    });
    // 0.1 fits exactly ten times in 1.0 (integer accounting: no float drift lets an 11th in).
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
    assert_eq!(rejected.load(Ordering::SeqCst), 96 - 10);
    let history = ledger.history("persons").unwrap();
    assert_eq!(history.len(), 10);
    let spent: f64 = history.iter().map(|c| c.epsilon).sum();
    assert!(spent <= 1.0 + 1e-12, "spent {spent}");
    let left = ledger.remaining("persons", None).unwrap();
    assert!(left.epsilon.abs() < 1e-9);
}

/// Analyst budgets under the total, and refusals that record nothing.
fn analyst_and_total_budgets(ledger: &dyn Ledger) {
    ledger.set_budget("d", None, 1.0, 1e-6).unwrap();
    ledger.set_budget("d", Some("bob"), 0.3, 1e-6).unwrap();
    ledger.charge("d", "bob", 0.25, 0.0, "q1").unwrap();
    let err = ledger.charge("d", "bob", 0.25, 0.0, "q2").unwrap_err();
    assert!(
        matches!(err, DpError::BudgetExhausted { ref analyst, .. } if analyst.contains("bob")),
        "{err}"
    );
    for _ in 0..3 {
        ledger.charge("d", "alice", 0.25, 0.0, "q").unwrap();
    }
    let err = ledger.charge("d", "alice", 0.01, 0.0, "q").unwrap_err();
    assert!(
        matches!(err, DpError::BudgetExhausted { ref analyst, .. } if analyst.is_empty()),
        "{err}"
    );
    assert_eq!(
        ledger.history("d").unwrap().len(),
        4,
        "refusals record nothing"
    );
    assert!(ledger.remaining("d", None).unwrap().epsilon.abs() < 1e-9);
    assert!((ledger.remaining("d", Some("bob")).unwrap().epsilon - 0.05).abs() < 1e-9);
    assert!(matches!(
        ledger.charge("other", "alice", 0.1, 0.0, ""),
        Err(DpError::UnknownDataset(_))
    ));
    assert!(ledger.charge("d", "alice", -0.1, 0.0, "").is_err());
    assert!(ledger.charge("d", "alice", 0.1, 1.5, "").is_err());
    assert!(ledger.charge("d", "*", 0.1, 0.0, "").is_err());
    assert!(ledger.set_budget("d", Some("*"), 1.0, 0.0).is_err());
}

#[test]
fn thirty_two_concurrent_queries_never_overspend() {
    let (ledger, dir) = temp_ledger("concurrent");
    let path = ledger.path().to_path_buf();
    thirty_two_concurrent_queries(&|| Box::new(SqliteLedger::open(&path).unwrap()));
    let (ledger, dir2) = temp_ledger("budgets");
    analyst_and_total_budgets(&ledger);
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(dir2).unwrap();
}

#[test]
fn the_postgres_ledger_never_overspends_under_32_connections() {
    use veil_dp::ledger::postgres::PostgresLedger;
    let Some(server) = veil_dp::testing::PostgresServer::start("ledger").unwrap() else {
        // CI installs PostgreSQL (.ci/run); elsewhere the test needs Debian's package.
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL (initdb, pg_ctl) is not installed"
        );
        eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
        return;
    };
    let url = server.url.clone();
    thirty_two_concurrent_queries(&|| Box::new(PostgresLedger::connect(&url).unwrap()));
    let ledger = PostgresLedger::connect(&server.url).unwrap();
    analyst_and_total_budgets(&ledger);
    // The ledger is shared: a new connection sees every charge.
    let other = PostgresLedger::connect(&server.url).unwrap();
    assert_eq!(other.history("persons").unwrap().len(), 10);
    // A release charges the shared ledger before it computes.
    other.set_budget("z", None, 0.5, 0.0).unwrap();
    let m = LaplaceMechanism::new(1.0, 0.5).unwrap();
    release(&other, "z", "a", "count", &m.cost(), 1e-6, || {
        m.release_integer(7)
    })
    .unwrap();
    let computed = AtomicUsize::new(0);
    assert!(release(&other, "z", "a", "count", &m.cost(), 1e-6, || {
        computed.fetch_add(1, Ordering::SeqCst);
        m.release_integer(7)
    })
    .is_err());
    assert_eq!(
        computed.load(Ordering::SeqCst),
        0,
        "refused before computing"
    );
    assert!(PostgresLedger::connect("host=127.0.0.1 port=1 user=veil").is_err());
}

#[test]
fn rejected_queries_cost_nothing_and_compute_nothing() {
    let (ledger, dir) = temp_ledger("reject");
    ledger.set_budget("persons", None, 1.0, 1e-6).unwrap();
    ledger
        .set_budget("persons", Some("bob"), 0.3, 1e-6)
        .unwrap();
    let m = LaplaceMechanism::new(1.0, 0.25).unwrap();
    let computed = AtomicUsize::new(0);
    let run = |who: &str| {
        release(
            &ledger,
            "persons",
            who,
            "SELECT COUNT(*)",
            &m.cost(),
            1e-6,
            || {
                computed.fetch_add(1, Ordering::SeqCst);
                m.release_integer(100)
            },
        )
    };
    run("bob").unwrap();
    // Bob's own budget (0.3) cannot pay a second 0.25.
    let err = run("bob").unwrap_err();
    assert!(
        matches!(err, DpError::BudgetExhausted { ref analyst, .. } if analyst.contains("bob")),
        "{err}"
    );
    assert_eq!(
        computed.load(Ordering::SeqCst),
        1,
        "a rejected query must not compute"
    );
    // Alice draws on the dataset's total: 0.25 + 3 × 0.25 = 1.0 exactly, then no more.
    for _ in 0..3 {
        run("alice").unwrap();
    }
    let err = run("alice").unwrap_err();
    assert!(
        matches!(err, DpError::BudgetExhausted { ref analyst, .. } if analyst.is_empty()),
        "{err}"
    );
    assert_eq!(computed.load(Ordering::SeqCst), 4);
    let left = ledger.remaining("persons", None).unwrap();
    assert!(left.epsilon.abs() < 1e-9, "{left:?}");
    assert_eq!(ledger.history("persons").unwrap().len(), 4);
    // Unknown datasets and bad amounts are errors, not charges.
    assert!(matches!(
        ledger.charge("other", "alice", 0.1, 0.0, ""),
        Err(DpError::UnknownDataset(_))
    ));
    assert!(ledger.charge("persons", "alice", -0.1, 0.0, "").is_err());
    assert!(ledger.charge("persons", "alice", 0.1, 1.5, "").is_err());
    assert!(ledger.charge("persons", "*", 0.1, 0.0, "").is_err());
    // zCDP costs are converted before charging.
    let (ledger2, dir2) = temp_ledger("zcdp");
    ledger2.set_budget("d", None, 10.0, 1e-5).unwrap();
    release(
        &ledger2,
        "d",
        "a",
        "gauss",
        &Cost::Zcdp { rho: 0.01 },
        1e-6,
        || Ok(()),
    )
    .unwrap();
    let h = ledger2.history("d").unwrap();
    assert!(
        (h[0].epsilon - veil_dp::accountant::zcdp_to_epsilon(0.01, 1e-6).unwrap()).abs() < 1e-9
    );
    assert!((h[0].delta - 1e-6).abs() < 1e-15);
    // The ledger persists across reopening.
    let reopened = SqliteLedger::open(ledger.path()).unwrap();
    assert_eq!(reopened.history("persons").unwrap().len(), 4);
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(dir2).unwrap();
}

const H1: &str = "a3f1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const H2: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// Registration (issue 12, item 5): the total is the operator's, bound to the metadata hash.
fn registrations(ledger: &dyn Ledger) {
    use veil_dp::ledger::check_registered;
    assert!(matches!(
        check_registered(ledger, "reg", H1),
        Err(DpError::NotRegistered { .. })
    ));
    assert_eq!(ledger.registration("reg").unwrap(), None);
    ledger.register("reg", H1, 2.0, 1e-6).unwrap();
    let r = check_registered(ledger, "reg", &H1.to_ascii_uppercase()).unwrap();
    assert_eq!(
        (r.dataset.as_str(), r.metadata_sha256.as_str()),
        ("reg", H1)
    );
    assert!((r.epsilon - 2.0).abs() < 1e-12 && (r.delta - 1e-6).abs() < 1e-18);
    let err = check_registered(ledger, "reg", H2).unwrap_err();
    assert!(
        matches!(err, DpError::MetadataChanged { ref registered, ref found, .. }
            if registered == H1 && found == H2),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was charged"), "{err}");
    assert!(matches!(
        check_registered(ledger, "reg", "abc"),
        Err(DpError::InvalidParameter(_))
    ));
    assert!(ledger.register("reg", "not a hash", 1.0, 0.0).is_err());
    assert!(ledger.register("", H1, 1.0, 0.0).is_err());
    assert!(ledger.register("reg", H1, f64::NAN, 0.0).is_err());
    // Charges count against the registered total; re-registering keeps them.
    ledger.charge("reg", "alice", 1.5, 0.0, "q").unwrap();
    ledger.register("reg", H2, 1.0, 0.0).unwrap();
    let r = ledger.registration("reg").unwrap().unwrap();
    assert_eq!(r.metadata_sha256, H2);
    assert!((r.epsilon - 1.0).abs() < 1e-12);
    assert!(ledger.remaining("reg", None).unwrap().epsilon <= 0.0);
    assert!(matches!(
        ledger.charge("reg", "alice", 0.1, 0.0, "q"),
        Err(DpError::BudgetExhausted { .. })
    ));
    assert_eq!(ledger.history("reg").unwrap().len(), 1);
}

#[test]
fn sqlite_registration_binds_the_total_to_the_metadata() {
    let (ledger, dir) = temp_ledger("register");
    registrations(&ledger);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A ledger file made before registration existed (no `datasets` table) opens, registers,
/// and keeps its charges.
#[test]
fn a_sqlite_ledger_from_before_registration_keeps_working() {
    let dir = std::env::temp_dir().join(format!("veil-dp-{}-old", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("budget.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE budgets (
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon INTEGER NOT NULL, delta INTEGER NOT NULL,
                 PRIMARY KEY (dataset, analyst));
             CREATE TABLE charges (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon INTEGER NOT NULL, delta INTEGER NOT NULL,
                 note TEXT NOT NULL, at INTEGER NOT NULL);
             INSERT INTO budgets VALUES ('persons', '*', 10000000000000, 0);
             INSERT INTO charges (dataset, analyst, epsilon, delta, note, at)
                 VALUES ('persons', 'alice', 4000000000000, 0, 'old', 0);",
        )
        .unwrap();
    }
    let ledger = SqliteLedger::open(&path).unwrap();
    assert_eq!(ledger.registration("persons").unwrap(), None);
    ledger.register("persons", H1, 10.0, 1e-6).unwrap();
    assert!((ledger.remaining("persons", None).unwrap().epsilon - 6.0).abs() < 1e-9);
    assert_eq!(ledger.history("persons").unwrap().len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The PostgreSQL ledger: registration, an old schema upgraded on connect, and an analyst's
/// role that can charge but cannot set or register a budget (the documented grants).
#[test]
fn postgres_registration_and_roles() {
    use veil_dp::ledger::postgres::PostgresLedger;
    let Some(server) = veil_dp::testing::PostgresServer::start("ledger-reg").unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL (initdb, pg_ctl) is not installed"
        );
        return;
    };
    let mut admin = postgres::Client::connect(&server.url, postgres::NoTls).unwrap();
    // The schema an older Veil created: no veil_dp_datasets.
    admin
        .batch_execute(
            "CREATE TABLE veil_dp_budgets (
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon BIGINT NOT NULL, delta BIGINT NOT NULL,
                 PRIMARY KEY (dataset, analyst));
             CREATE TABLE veil_dp_charges (
                 id BIGSERIAL PRIMARY KEY,
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon BIGINT NOT NULL, delta BIGINT NOT NULL,
                 note TEXT NOT NULL, at BIGINT NOT NULL);
             INSERT INTO veil_dp_budgets VALUES ('persons', '*', 10000000000000, 0);
             INSERT INTO veil_dp_charges (dataset, analyst, epsilon, delta, note, at)
                 VALUES ('persons', 'alice', 4000000000000, 0, 'old', 0);",
        )
        .unwrap();
    let ledger = PostgresLedger::connect(&server.url).unwrap();
    ledger.register("persons", H1, 10.0, 1e-6).unwrap();
    assert!((ledger.remaining("persons", None).unwrap().epsilon - 6.0).abs() < 1e-9);
    registrations(&ledger);
    admin
        .batch_execute(
            "CREATE ROLE analyst LOGIN;
             GRANT SELECT ON veil_dp_budgets, veil_dp_datasets TO analyst;
             GRANT SELECT, INSERT ON veil_dp_charges TO analyst;
             GRANT USAGE ON SEQUENCE veil_dp_charges_id_seq TO analyst;",
        )
        .unwrap();
    let url = server.url.replace("user=veil", "user=analyst");
    let analyst = PostgresLedger::connect(&url).unwrap();
    analyst
        .charge("persons", "mallory", 1.0, 0.0, "SELECT COUNT(*)")
        .unwrap();
    let r = veil_dp::ledger::check_registered(&analyst, "persons", H1).unwrap();
    assert!((r.epsilon - 10.0).abs() < 1e-9);
    for attempt in [
        analyst.register("persons", H1, 1000.0, 0.0),
        analyst.set_budget("persons", None, 1000.0, 0.0),
        analyst.register("persons_copy", H1, 1000.0, 0.0),
    ] {
        assert!(
            matches!(attempt, Err(DpError::Ledger(ref m)) if m.contains("permission denied")),
            "{attempt:?}"
        );
    }
    assert!((ledger.remaining("persons", None).unwrap().epsilon - 5.0).abs() < 1e-9);
    assert!(matches!(
        analyst.charge("persons", "mallory", 5.5, 0.0, "q"),
        Err(DpError::BudgetExhausted { .. })
    ));
}

/// PostgreSQL restarts under a running service: while it is down every call fails with a
/// clear ledger error (nothing is released), and once it is back the same ledger object
/// works again — no restart of the service — with every charge made before the outage still
/// counted.
#[test]
fn the_postgres_ledger_recovers_after_the_database_restarts() {
    use veil_dp::ledger::postgres::PostgresLedger;
    let Some(server) = veil_dp::testing::PostgresServer::start("restart").unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL (initdb, pg_ctl) is not installed"
        );
        eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
        return;
    };
    let ledger = PostgresLedger::connect(&server.url).unwrap();
    ledger.set_budget("d", None, 10.0, 0.0).unwrap();
    let m = LaplaceMechanism::new(1.0, 1.0).unwrap();
    release(&ledger, "d", "a", "count", &m.cost(), 0.0, || {
        m.release_integer(7)
    })
    .unwrap();
    server.stop().unwrap();
    let computed = AtomicUsize::new(0);
    let down = release(&ledger, "d", "a", "count", &m.cost(), 0.0, || {
        computed.fetch_add(1, Ordering::SeqCst);
        m.release_integer(7)
    });
    assert!(
        matches!(&down, Err(veil_dp::DpError::Ledger(_))),
        "{down:?}"
    );
    assert_eq!(
        computed.load(Ordering::SeqCst),
        0,
        "nothing computed while down"
    );
    server.start_again().unwrap();
    // Back: the same ledger object charges again (a call or two may still see the dead
    // connection; none may succeed without charging).
    let mut recovered = false;
    for _ in 0..3 {
        if release(&ledger, "d", "a", "count", &m.cost(), 0.0, || {
            m.release_integer(7)
        })
        .is_ok()
        {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "the ledger did not recover after the restart");
    let history = ledger.history("d").unwrap();
    assert_eq!(
        history.len(),
        2,
        "the charge before the outage is still counted"
    );
    let r = ledger.remaining("d", None).unwrap();
    assert!((r.epsilon - 8.0).abs() < 1e-9, "{r:?}");
}
