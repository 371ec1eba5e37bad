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
use veil_dp::ledger::SqliteLedger;
use veil_dp::mechanisms::LaplaceMechanism;
use veil_dp::{release, DpError};

fn temp_ledger(name: &str) -> (SqliteLedger, PathBuf) {
    let dir = std::env::temp_dir().join(format!("veil-dp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("budget.db");
    (SqliteLedger::open(&path).unwrap(), dir)
}

#[test]
fn thirty_two_concurrent_queries_never_overspend() {
    let (ledger, dir) = temp_ledger("concurrent");
    ledger.set_budget("persons", None, 1.0, 1e-5).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..32)
        .map(|t| {
            // Each thread opens its own connection, as separate processes would.
            let ledger = SqliteLedger::open(ledger.path()).unwrap();
            let (accepted, rejected) = (accepted.clone(), rejected.clone());
            std::thread::spawn(move || {
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
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 0.1 fits exactly ten times in 1.0 (integer accounting: no float drift lets an 11th in).
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
    assert_eq!(rejected.load(Ordering::SeqCst), 96 - 10);
    let history = ledger.history("persons").unwrap();
    assert_eq!(history.len(), 10);
    let spent: f64 = history.iter().map(|c| c.epsilon).sum();
    assert!(spent <= 1.0 + 1e-12, "spent {spent}");
    let left = ledger.remaining("persons", None).unwrap();
    assert!(left.epsilon.abs() < 1e-9);
    std::fs::remove_dir_all(dir).unwrap();
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
