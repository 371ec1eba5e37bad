//! The ledger composing in zCDP (issue 18): a dataset registered with zCDP accounting is
//! charged in ρ, ρs add up, and the total converts to (ε, δ) once — so many Gaussian releases
//! cost √k, not k, while what was spent, converted, never exceeds the registered (ε, δ). The
//! attacks: concurrent charges, a charge in the wrong currency, an accounting switch that
//! would forget what was spent, an analyst's own budget, and an old ledger file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use veil_dp::accountant::{epsilon_to_zcdp, zcdp_to_epsilon, Cost};
use veil_dp::ledger::{Accounting, Ledger, Spend, SqliteLedger};
use veil_dp::mechanisms::{GaussianMechanism, LaplaceMechanism};
use veil_dp::{release, DpError};

const H: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("veil-dp-zcdp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Charges `spend` until refused; returns how many passed.
fn charge_until_refused(ledger: &dyn Ledger, dataset: &str, analyst: &str, spend: Spend) -> usize {
    for n in 0..100_000 {
        match ledger.charge_spend(dataset, analyst, spend, "q") {
            Ok(_) => {}
            Err(DpError::BudgetExhausted { .. }) => return n,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    panic!("the budget never ran out");
}

/// Gaussian releases of (0.1, 10⁻⁶) each against a total of (1, 10⁻⁵): basic composition pays
/// for ten; zCDP for ⌊ρ_total / ρ_each⌋ ≈ 100, and the ρ spent, converted at the δ set aside
/// (δ/2), stays within ε = 1.
fn gaussian_releases_compose_in_rho(ledger: &dyn Ledger) {
    ledger
        .register_with("approx", H, 1.0, 1e-5, Accounting::Approx)
        .unwrap();
    ledger
        .register_with("zcdp", H, 1.0, 1e-5, Accounting::Zcdp)
        .unwrap();
    let reg = ledger.registration("zcdp").unwrap().unwrap();
    assert_eq!(reg.accounting, Accounting::Zcdp);
    assert!((reg.epsilon - 1.0).abs() < 1e-9, "{reg:?}");
    assert!((reg.delta - 1e-5).abs() < 1e-15, "{reg:?}");

    // Under basic composition a Gaussian release costs its own (ε, δ).
    let basic = charge_until_refused(ledger, "approx", "alice", Spend::approx(0.1, 1e-6));
    assert_eq!(basic, 10);

    let rho_each = epsilon_to_zcdp(0.1, 1e-6).unwrap();
    let rho_total = epsilon_to_zcdp(1.0, 5e-6).unwrap();
    let n = charge_until_refused(ledger, "zcdp", "alice", Spend::zcdp(rho_each, 0.0));
    let expected = (rho_total / rho_each).floor() as usize;
    assert!(
        n + 1 >= expected && n <= expected,
        "{n} releases, expected {expected}"
    );
    assert!(
        n >= 90,
        "zCDP pays for far more than basic composition's 10: {n}"
    );
    let spent: f64 = ledger.history("zcdp").unwrap().iter().map(|c| c.rho).sum();
    assert!(
        zcdp_to_epsilon(spent, 5e-6).unwrap() <= 1.0 + 1e-9,
        "ρ {spent} converts beyond the total"
    );
    let left = ledger.remaining("zcdp", None).unwrap();
    assert_eq!(left.accounting, Accounting::Zcdp);
    assert!((left.rho - (rho_total - spent)).abs() < 1e-12, "{left:?}");
    assert!(
        (left.epsilon - (1.0 - zcdp_to_epsilon(spent, 5e-6).unwrap())).abs() < 1e-6,
        "{left:?}"
    );
    assert!(
        (left.delta - 5e-6).abs() < 1e-15,
        "δ/2 is left to spend outright"
    );

    // The wrong currency is refused, and a refusal records nothing.
    let before = ledger.history("zcdp").unwrap().len();
    ledger
        .register_with("z2", H, 1.0, 1e-5, Accounting::Zcdp)
        .unwrap();
    assert!(matches!(
        ledger.charge("z2", "alice", 0.01, 0.0, "an ε charge on a ρ budget"),
        Err(DpError::BudgetExhausted { .. })
    ));
    assert!(matches!(
        ledger.charge_spend(
            "approx",
            "bob",
            Spend::zcdp(1e-9, 0.0),
            "a ρ charge on an ε budget"
        ),
        Err(DpError::BudgetExhausted { .. })
    ));
    // The δ set aside for the conversion cannot be spent outright: only δ/2 is left.
    assert!(matches!(
        ledger.charge_spend("z2", "alice", Spend::zcdp(0.0, 6e-6), "δ"),
        Err(DpError::BudgetExhausted { .. })
    ));
    ledger
        .charge_spend("z2", "alice", Spend::zcdp(0.0, 5e-6), "δ")
        .unwrap();
    assert_eq!(ledger.history("zcdp").unwrap().len(), before);
    assert_eq!(ledger.history("z2").unwrap().len(), 1);
    assert!(ledger
        .charge_spend("z2", "alice", Spend::zcdp(f64::NAN, 0.0), "nan")
        .is_err());
    assert!(ledger
        .charge_spend("z2", "alice", Spend::zcdp(-1.0, 0.0), "negative")
        .is_err());
    assert!(ledger
        .register_with("pure", H, 1.0, 0.0, Accounting::Zcdp)
        .is_err());
}

/// An analyst's own budget on a zCDP dataset is split as the total is, and binds.
fn analyst_budgets_split_like_the_total(ledger: &dyn Ledger) {
    ledger
        .register_with("shared", H, 10.0, 1e-5, Accounting::Zcdp)
        .unwrap();
    ledger.set_budget("shared", Some("bob"), 0.5, 1e-6).unwrap();
    let own = ledger.remaining("shared", Some("bob")).unwrap();
    let bob_rho = epsilon_to_zcdp(0.5, 5e-7).unwrap();
    assert!((own.rho - bob_rho).abs() < 1e-12, "{own:?}");
    let each = bob_rho / 4.5;
    assert_eq!(
        charge_until_refused(ledger, "shared", "bob", Spend::zcdp(each, 0.0)),
        4
    );
    match ledger.charge_spend("shared", "bob", Spend::zcdp(each, 0.0), "q") {
        Err(DpError::BudgetExhausted { analyst, .. }) => assert!(analyst.contains("bob")),
        other => panic!("{other:?}"),
    }
    // Alice has no own budget: the total binds her.
    ledger
        .charge_spend("shared", "alice", Spend::zcdp(each, 0.0), "q")
        .unwrap();
}

/// The accounting of a dataset in use cannot change: switching an exhausted ε budget to a
/// fresh ρ one would forget everything spent.
fn the_accounting_of_a_dataset_in_use_cannot_change(ledger: &dyn Ledger) {
    ledger
        .register_with("switch", H, 1.0, 1e-5, Accounting::Approx)
        .unwrap();
    // Unused: the operator may still change their mind.
    ledger
        .register_with("switch", H, 1.0, 1e-5, Accounting::Zcdp)
        .unwrap();
    ledger
        .register_with("switch", H, 1.0, 1e-5, Accounting::Approx)
        .unwrap();
    assert_eq!(
        charge_until_refused(ledger, "switch", "alice", Spend::approx(0.5, 0.0)),
        2
    );
    let err = ledger
        .register_with("switch", H2, 1.0, 1e-5, Accounting::Zcdp)
        .unwrap_err();
    assert!(err.to_string().contains("cannot change"), "{err}");
    let reg = ledger.registration("switch").unwrap().unwrap();
    assert_eq!(
        (reg.accounting, reg.metadata_sha256.as_str()),
        (Accounting::Approx, H)
    );
    assert!(ledger.charge("switch", "alice", 0.01, 0.0, "q").is_err());
    // Same accounting, new metadata: allowed, and what was spent stays spent.
    ledger
        .register_with("switch", H2, 1.0, 1e-5, Accounting::Approx)
        .unwrap();
    assert!(ledger.charge("switch", "alice", 0.01, 0.0, "q").is_err());
}

/// 16 connections charge ρ concurrently: the spent ρ never passes the total.
fn concurrent_rho_charges(open: &(dyn Fn() -> Box<dyn Ledger + Send> + Sync)) {
    let ledger = open();
    ledger
        .register_with("busy", H, 1.0, 1e-5, Accounting::Zcdp)
        .unwrap();
    let rho_total = epsilon_to_zcdp(1.0, 5e-6).unwrap();
    let each = rho_total / 20.0 * 1.000_001;
    let accepted = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for t in 0..16 {
            let accepted = accepted.clone();
            scope.spawn(move || {
                let ledger = open();
                for _ in 0..3 {
                    match ledger.charge_spend("busy", &format!("a{t}"), Spend::zcdp(each, 0.0), "q")
                    {
                        Ok(_) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(DpError::BudgetExhausted { .. }) => {}
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            });
        }
    });
    assert_eq!(accepted.load(Ordering::SeqCst), 19);
    let spent: f64 = ledger.history("busy").unwrap().iter().map(|c| c.rho).sum();
    assert!(spent <= rho_total, "spent ρ {spent} > {rho_total}");
}

/// `release` charges a pure-DP cost as ε²/2 and a zCDP cost as its ρ on a zCDP dataset,
/// refuses an approximate one, and computes only after the charge passed.
fn release_charges_in_the_dataset_currency(ledger: &dyn Ledger) {
    ledger
        .register_with("rel", H, 1.0, 1e-5, Accounting::Zcdp)
        .unwrap();
    let laplace = LaplaceMechanism::new(1.0, 0.1).unwrap();
    release(ledger, "rel", "a", "count", &laplace.cost(), 1e-6, || {
        laplace.release_integer(7)
    })
    .unwrap();
    let gauss = GaussianMechanism::from_rho(1.0, 0.001).unwrap();
    release(ledger, "rel", "a", "sum", &gauss.cost(), 1e-6, || {
        gauss.release(7.0)
    })
    .unwrap();
    let charged: Vec<f64> = ledger
        .history("rel")
        .unwrap()
        .iter()
        .map(|c| c.rho)
        .collect();
    assert_eq!(charged.len(), 2);
    assert!((charged[0] - 0.005).abs() < 1e-12, "{charged:?}");
    assert!((charged[1] - 0.001).abs() < 1e-12, "{charged:?}");
    let computed = AtomicUsize::new(0);
    let approx = Cost::Approx {
        epsilon: 0.1,
        delta: 1e-7,
    };
    assert!(release(ledger, "rel", "a", "x", &approx, 1e-6, || {
        computed.fetch_add(1, Ordering::SeqCst);
        Ok(0)
    })
    .is_err());
    assert_eq!(computed.load(Ordering::SeqCst), 0);
    assert_eq!(ledger.history("rel").unwrap().len(), 2);
}

fn all(ledger: &dyn Ledger) {
    gaussian_releases_compose_in_rho(ledger);
    analyst_budgets_split_like_the_total(ledger);
    the_accounting_of_a_dataset_in_use_cannot_change(ledger);
    release_charges_in_the_dataset_currency(ledger);
}

#[test]
fn a_sqlite_ledger_composes_in_zcdp() {
    let dir = temp_dir("sqlite");
    let path = dir.join("budget.db");
    all(&SqliteLedger::open(&path).unwrap());
    concurrent_rho_charges(&|| Box::new(SqliteLedger::open(&path).unwrap()));
    // A reopened ledger has kept the accounting and every ρ.
    let again = SqliteLedger::open(&path).unwrap();
    assert_eq!(
        again.registration("zcdp").unwrap().unwrap().accounting,
        Accounting::Zcdp
    );
    assert!(again
        .charge_spend("zcdp", "x", Spend::zcdp(1e-3, 0.0), "q")
        .is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A ledger file from before zCDP accounting (registrations but no ρ columns) opens with its
/// budgets under approx accounting and every charge kept; its datasets in use stay approx.
#[test]
fn a_sqlite_ledger_from_before_zcdp_keeps_its_charges() {
    let dir = temp_dir("old");
    let path = dir.join("budget.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE budgets (
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon INTEGER NOT NULL, delta INTEGER NOT NULL,
                 PRIMARY KEY (dataset, analyst));
             CREATE TABLE charges (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon INTEGER NOT NULL, delta INTEGER NOT NULL,
                 note TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE datasets (
                 dataset TEXT NOT NULL PRIMARY KEY, metadata_sha256 TEXT NOT NULL,
                 registered_at INTEGER NOT NULL);
             INSERT INTO datasets VALUES ('persons', '{H}', 0);
             INSERT INTO budgets VALUES ('persons', '*', 10000000000000, 0);
             INSERT INTO charges (dataset, analyst, epsilon, delta, note, at)
                 VALUES ('persons', 'alice', 4000000000000, 0, 'old', 0);"
        ))
        .unwrap();
    }
    let ledger = SqliteLedger::open(&path).unwrap();
    let reg = ledger.registration("persons").unwrap().unwrap();
    assert_eq!(reg.accounting, Accounting::Approx);
    assert!((reg.epsilon - 10.0).abs() < 1e-9);
    assert!((ledger.remaining("persons", None).unwrap().epsilon - 6.0).abs() < 1e-9);
    assert!(ledger
        .register_with("persons", H, 10.0, 1e-5, Accounting::Zcdp)
        .is_err());
    ledger.charge("persons", "alice", 6.0, 0.0, "q").unwrap();
    assert!(ledger.charge("persons", "alice", 1e-9, 0.0, "q").is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_postgres_ledger_composes_in_zcdp() {
    use veil_dp::ledger::postgres::PostgresLedger;
    let Some(server) = veil_dp::testing::PostgresServer::for_test("zcdp") else {
        return;
    };
    let mut admin = postgres::Client::connect(&server.url, postgres::NoTls).unwrap();
    // The tables of the previous version: registrations, no ρ.
    admin
        .batch_execute(&format!(
            "CREATE TABLE veil_dp_budgets (
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon BIGINT NOT NULL, delta BIGINT NOT NULL,
                 PRIMARY KEY (dataset, analyst));
             CREATE TABLE veil_dp_charges (
                 id BIGSERIAL PRIMARY KEY,
                 dataset TEXT NOT NULL, analyst TEXT NOT NULL,
                 epsilon BIGINT NOT NULL, delta BIGINT NOT NULL,
                 note TEXT NOT NULL, at BIGINT NOT NULL);
             CREATE TABLE veil_dp_datasets (
                 dataset TEXT NOT NULL PRIMARY KEY, metadata_sha256 TEXT NOT NULL,
                 registered_at BIGINT NOT NULL);
             INSERT INTO veil_dp_datasets VALUES ('persons', '{H}', 0);
             INSERT INTO veil_dp_budgets VALUES ('persons', '*', 10000000000000, 0);
             INSERT INTO veil_dp_charges (dataset, analyst, epsilon, delta, note, at)
                 VALUES ('persons', 'alice', 4000000000000, 0, 'old', 0);
             CREATE ROLE analyst LOGIN;
             GRANT SELECT ON veil_dp_budgets, veil_dp_datasets TO analyst;
             GRANT SELECT, INSERT ON veil_dp_charges TO analyst;
             GRANT USAGE ON SEQUENCE veil_dp_charges_id_seq TO analyst;"
        ))
        .unwrap();
    // An analyst's role cannot upgrade the tables: a clear error, not a broken charge.
    let analyst_url = server.url.replace("user=veil", "user=analyst");
    let err = PostgresLedger::connect(&analyst_url).unwrap_err();
    assert!(err.to_string().contains("predate zCDP"), "{err}");
    // Their owner can; the old charge is kept.
    let ledger = PostgresLedger::connect(&server.url).unwrap();
    assert!((ledger.remaining("persons", None).unwrap().epsilon - 6.0).abs() < 1e-9);
    assert_eq!(
        ledger.registration("persons").unwrap().unwrap().accounting,
        Accounting::Approx
    );
    // Now the analyst connects, and charges ρ through the same grants.
    all(&ledger);
    let analyst = PostgresLedger::connect(&analyst_url).unwrap();
    analyst
        .charge_spend("shared", "carol", Spend::zcdp(1e-4, 0.0), "q")
        .unwrap();
    let url = server.url.clone();
    concurrent_rho_charges(&|| Box::new(PostgresLedger::connect(&url).unwrap()));
}
