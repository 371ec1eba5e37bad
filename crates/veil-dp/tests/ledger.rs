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
