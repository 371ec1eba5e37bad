//! `veil serve` with `[attest]` and `[kbs]`: the attestation service and the key broker in one
//! process, the broker trusting only that process's token keys. A workload attests and gets
//! its secret; a wrong measurement is refused; a token from another attestation service (a
//! second `veil serve`, or anyone else's signing key) releases nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests"
)]

use crate::site;
use site::Site;

use veil_attest::evidence::sim::SimulatedPlatform;
use veil_attest::TeeError;
use veil_kbs::SecretStore;
use veil_server::client::SimulatedWorkload;

const GOOD: [u8; 48] = [0x11; 48];
const BAD: [u8; 48] = [0x22; 48];
const SEED: [u8; 32] = [9; 32];

async fn site(name: &str) -> Site {
    let dir = site::fresh_dir(&format!("tee-{name}"));
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            "tee = [\"sim\"]\nmin_security_version = 2\n[measurements]\nmeasurement = [\"{}\"]\n",
            hex::encode(GOOD)
        ),
    )
    .unwrap();
    SecretStore::open(&dir.join("veil-kbs"))
        .unwrap()
        .put(
            "model-key",
            b"the model key",
            "toml",
            "release.toml",
            &format!(
                "tee = [\"sim\"]\n[measurements]\nmeasurement = [\"{}\"]\n",
                hex::encode(GOOD)
            ),
            0,
        )
        .unwrap();
    let platform = SimulatedPlatform::from_seed(&SEED);
    let config = format!(
        "[attest]\npolicy = \"policy.toml\"\nsim_platform_keys = [\"{}\"]\n\n[kbs]\nstore = \"veil-kbs\"\n",
        hex::encode(platform.public_key())
    );
    site::serve(&config, &dir).await
}

fn workload(measurement: [u8; 48]) -> SimulatedWorkload {
    SimulatedWorkload::new(SimulatedPlatform::from_seed(&SEED), measurement, 3)
}

/// The right workload attests at `/attest` and has its secret released at `/kbs` by the
/// same process, with no JWKS configured: the broker trusts this process's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_attests_and_gets_its_secret_from_one_process() {
    let s = site("ok").await;
    let w = workload(GOOD);
    let token = w.attest(&format!("{}/attest", s.url)).await.unwrap().token;
    let secret = w
        .fetch_secret(&format!("{}/kbs", s.url), "model-key", &token)
        .await
        .unwrap();
    assert_eq!(secret.as_slice(), b"the model key");
    // The signed audit logs are served too.
    for part in ["attest", "kbs"] {
        let r = veil_server::client::http_client()
            .unwrap()
            .get(format!("{}/{part}/audit/head", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{part}");
    }
}

/// A workload with another measurement is refused by the policy, and gets no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_measurement_gets_no_token() {
    let s = site("bad").await;
    let e = workload(BAD)
        .attest(&format!("{}/attest", s.url))
        .await
        .unwrap_err();
    assert!(matches!(&e, TeeError::Refused { status: 403, .. }), "{e:?}");
}

/// A token issued by another attestation service — a second `veil serve` with its own
/// signing key, which accepts the same workload — releases nothing here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_another_attestation_service_releases_nothing() {
    let here = site("here").await;
    let elsewhere = site("elsewhere").await;
    let w = workload(GOOD);
    let foreign = w
        .attest(&format!("{}/attest", elsewhere.url))
        .await
        .unwrap()
        .token;
    let e = w
        .fetch_secret(&format!("{}/kbs", here.url), "model-key", &foreign)
        .await
        .unwrap_err();
    assert!(matches!(&e, TeeError::Refused { status: 401, .. }), "{e:?}");
}
