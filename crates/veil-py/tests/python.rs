//! Runs the Python test suite (pytest, including the tutorial notebooks) against the
//! extension module this workspace build just made.
//!
//! The module is `target/<profile>/deps/libveil_native.so`, built with the workspace (see
//! `.cargo/config.toml`). The test stages it as `veil/_native.abi3.so` beside the package's
//! Python sources, makes a virtual environment in the target dir with the test requirements
//! from PyPI (once; kept while `tests/requirements.txt` is unchanged) and runs pytest there.
//! Under `CI=true` a missing Python or a failed install fails the test; elsewhere it skips
//! with a message.

#![allow(clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (prints why) outside CI, fails under CI.
fn unavailable(why: &str) {
    assert!(!in_ci(), "the Python suite cannot run under CI: {why}");
    eprintln!("skipping the Python suite: {why}");
}

fn extension_module() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    for name in ["libveil_native.so", "libveil_native.dylib"] {
        let p = deps.join(name);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target)?;
            }
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn run(cmd: &mut Command) -> std::io::Result<(bool, String)> {
    let out = cmd.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// The virtual environment with the test requirements, made once per requirements file.
fn venv(tmp: &Path) -> Result<PathBuf, String> {
    let requirements = crate_dir().join("tests/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| e.to_string())?;
    let dir = tmp.join("veil-py-venv");
    let python = dir.join("bin/python");
    let stamp = dir.join("requirements.installed");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return Ok(python);
    }
    let system = std::env::var("VEIL_PYTHON").unwrap_or_else(|_| "python3".into());
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, out) = run(Command::new(&system).args(["-m", "venv"]).arg(&dir))
        .map_err(|e| format!("cannot run {system}: {e}"))?;
    if !ok {
        return Err(format!("{system} -m venv failed:\n{out}"));
    }
    eprintln!("installing the Python test requirements (once) …");
    let (ok, out) = run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))
    .map_err(|e| e.to_string())?;
    if !ok {
        return Err(format!(
            "pip install -r {} failed:\n{out}",
            requirements.display()
        ));
    }
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    Ok(python)
}

/// An attestation service and a key broker on loopback for the `veil.tee` client tests, kept
/// running by `runtime` while pytest runs. The simulated platform of seed `[9; 32]` is
/// trusted; measurement `0x11 × 48` at security version ≥ 2 gets tokens; the broker holds
/// `model-key` for that measurement and `other-key` for another workload.
///
/// A data room (the shipped `stats` workload) of parties `hospital-a` and `hospital-b` (output
/// to `hospital-a` only) runs on a simulated platform of seed `[7; 32]`; the parties' secret
/// key files and the manifest (`room.toml`) are in `room_dir`, with `impostor.key` (keys of
/// the name `hospital-a` that the manifest does not hold).
struct TeeServices {
    attest_url: String,
    kbs_url: String,
    room_url: String,
    room_dir: PathBuf,
    _runtime: tokio::runtime::Runtime,
}

const TEE_SEED: [u8; 32] = [9; 32];
const TEE_GOOD: [u8; 48] = [0x11; 48];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn start_tee_services(tmp: &Path) -> TeeServices {
    use std::sync::Arc;
    use veil_attest::audit::AuditLog;
    use veil_attest::evidence::sim::{SimVerifier, SimulatedPlatform};
    use veil_attest::policy::Policy;
    use veil_attest::service::{AttestationService, Verifiers};
    use veil_attest::token::{TokenAlgorithm, TokenIssuer};
    use veil_kbs::{KeyBroker, SecretStore};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the TEE services");
    let dir = tmp.join("veil-py-tee");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the TEE services' directory");
    let room_dir = dir.join("room");
    let (attest_url, kbs_url, room_url) = runtime.block_on(async {
        async fn spawn(router: axum::Router) -> String {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let addr = listener.local_addr().expect("its address");
            tokio::spawn(veil_server::serve(listener, router, std::future::pending()));
            format!("http://{addr}")
        }
        let platform = SimulatedPlatform::from_seed(&TEE_SEED);
        let policy = Policy::toml(
            "workload.toml",
            &format!(
                "tee = [\"sim\"]\nmin_security_version = 2\n[measurements]\nmeasurement = [\"{}\"]\n",
                hex(&TEE_GOOD)
            ),
        )
        .expect("the attestation policy");
        let verifiers = Verifiers {
            sim: vec![SimVerifier::new(&platform.public_key()).expect("the sim verifier")],
            ..Verifiers::default()
        };
        let service = AttestationService::new(
            verifiers,
            policy,
            TokenIssuer::generate(TokenAlgorithm::ES256).expect("a token key"),
            AuditLog::open(&dir.join("attest.jsonl")).expect("the attestation audit log"),
        );
        let attest_url = spawn(veil_server::attest::router(Arc::new(service))).await;
        let store = SecretStore::open(&dir.join("kbs")).expect("the secret store");
        let good = format!(
            "tee = [\"sim\"]\n[measurements]\nmeasurement = [\"{}\"]\n",
            hex(&TEE_GOOD)
        );
        store
            .put("model-key", b"the model key", "toml", "release.toml", &good, 0)
            .expect("store model-key");
        let other = format!(
            "tee = [\"sim\"]\n[measurements]\nmeasurement = [\"{}\"]\n",
            hex(&[0x22; 48])
        );
        store
            .put("other-key", b"for another workload", "toml", "other.toml", &other, 0)
            .expect("store other-key");
        let jwks_url = format!("{attest_url}/.well-known/jwks.json");
        let verifier = veil_server::client::fetch_jwks(&jwks_url)
            .await
            .expect("the service's JWKS");
        let broker = KeyBroker::new(
            store,
            verifier,
            Some(veil_server::client::jwks_source(&jwks_url)),
            AuditLog::open(&dir.join("kbs.jsonl")).expect("the broker's audit log"),
        );
        let kbs_url = spawn(veil_server::kbs::router(Arc::new(broker))).await;
        let room = start_room(&room_dir);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let room_url = format!("http://{}", listener.local_addr().expect("its address"));
        tokio::spawn(veil_server::room::serve(
            listener,
            Arc::new(room),
            std::future::pending(),
        ));
        (attest_url, kbs_url, room_url)
    });
    TeeServices {
        attest_url,
        kbs_url,
        room_url,
        room_dir,
        _runtime: runtime,
    }
}

/// Writes the room's keys and manifest into `dir` and launches it (see [`TeeServices`]).
fn start_room(dir: &Path) -> veil_room::RoomServer {
    use veil_attest::evidence::sim::SimulatedPlatform;
    use veil_room::{builtin, Manifest, PartyKey, RoomServer, RoomSpec};

    std::fs::create_dir_all(dir).expect("the room's directory");
    let a = PartyKey::generate("hospital-a").expect("a party key");
    let b = PartyKey::generate("hospital-b").expect("a party key");
    let impostor = PartyKey::generate("hospital-a").expect("a party key");
    for (file, key) in [
        ("hospital-a.key", &a),
        ("hospital-b.key", &b),
        ("impostor.key", &impostor),
    ] {
        let text = key.to_text().expect("the key file's text");
        std::fs::write(dir.join(file), text.as_bytes()).expect("write a key file");
    }
    let stats = builtin("stats").expect("the shipped stats workload");
    let seed = [7u8; 32];
    let spec = RoomSpec {
        sim_platform_keys: vec![hex(&SimulatedPlatform::from_seed(&seed).public_key())],
        min_security_version: Some(1),
        ..RoomSpec::builtin(
            stats,
            "joint study",
            vec![a.public(), b.public()],
            vec!["hospital-a".into()],
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock")
        .as_secs();
    let text = Manifest::create(stats.wat.as_bytes(), spec, now)
        .and_then(|m| m.to_toml())
        .expect("the room's manifest");
    std::fs::write(dir.join("room.toml"), &text).expect("write the manifest");
    RoomServer::launch(
        &text,
        stats.wat.as_bytes(),
        SimulatedPlatform::from_seed(&seed),
        1,
        Some(&dir.join("audit.jsonl")),
    )
    .expect("launch the room")
}

#[test]
fn python_suite_and_notebooks() {
    let Some(module) = extension_module() else {
        unavailable("the extension module (libveil_native.so) was not built beside this test");
        return;
    };
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let python = match venv(&tmp) {
        Ok(p) => p,
        Err(e) => {
            unavailable(&e);
            return;
        }
    };
    // Stage the package: the Python sources plus this build's module.
    let stage = tmp.join("veil-py-stage");
    let _ = std::fs::remove_dir_all(&stage);
    let package = stage.join("veil");
    copy_dir(&crate_dir().join("python/veil"), &package).expect("stage the Python sources");
    std::fs::copy(&module, package.join("_native.abi3.so")).expect("stage the module");

    // A throwaway PostgreSQL server on loopback for the shared-ledger test (CI installs
    // Debian's package; elsewhere that one test skips without it).
    let postgres = match veil_dp::testing::PostgresServer::start("veil-py") {
        Ok(Some(server)) => Some(server),
        Ok(None) => {
            assert!(!in_ci(), "PostgreSQL (initdb, pg_ctl) is not installed");
            None
        }
        Err(e) => panic!("cannot start PostgreSQL: {e}"),
    };
    let mut pytest = Command::new(&python);
    if let Some(server) = &postgres {
        pytest.env("VEIL_TEST_POSTGRES_PORT", server.port.to_string());
    }
    let tee = start_tee_services(&tmp);
    pytest
        .env("VEIL_TEST_ATTEST_URL", &tee.attest_url)
        .env("VEIL_TEST_KBS_URL", &tee.kbs_url)
        .env("VEIL_TEST_ROOM_URL", &tee.room_url)
        .env("VEIL_TEST_ROOM_DIR", &tee.room_dir)
        .env("VEIL_TEST_SIM_SEED", hex(&TEE_SEED))
        .env("VEIL_TEST_SIM_MEASUREMENT", hex(&TEE_GOOD));
    let (ok, out) = run(pytest
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/python",
        ])
        .current_dir(crate_dir())
        .env("PYTHONPATH", &stage)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("VEIL_REPO", crate_dir().join("../..")))
    .expect("run pytest");
    println!("{out}");
    assert!(ok, "the Python suite failed:\n{out}");
}
