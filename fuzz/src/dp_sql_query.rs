//! Arbitrary SQL text through the DP SQL engine (planner, bounding, noise, post-processing)
//! over a small sample table: it must answer or refuse, never panic.

use std::sync::OnceLock;

use veil_dp::ledger::SqliteLedger;
use veil_dp_sql::{Engine, Metadata, QueryOptions};

struct Setup {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    ledger: SqliteLedger,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("veil-fuzz-dpsql-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("persons.csv");
        let mut out = std::fs::File::create(&csv).unwrap();
        veil_dp_sql::sample::write_persons(&mut out, 50, 3).unwrap();
        let meta = Metadata::from_toml(veil_dp_sql::sample::PERSONS_METADATA).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let engine = rt
            .block_on(Engine::embedded(meta, &[("persons".into(), csv.as_path())]))
            .unwrap();
        let ledger = SqliteLedger::open(dir.join("budget.db")).unwrap();
        ledger.set_budget("persons", None, 1e12, 0.5).unwrap();
        Setup { rt, engine, ledger }
    })
}

/// One fuzz input: must never panic.
pub fn run(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let s = setup();
    let _ =
        s.rt.block_on(
            s.engine
                .query(&s.ledger, "persons", "fuzz", sql, QueryOptions::default()),
        );
}
