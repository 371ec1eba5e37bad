//! The simulated TEE: a software "platform" key signs a report of the same shape as a
//! hardware one. It exists for demos and end-to-end tests on machines without TEE hardware;
//! it protects nothing, and every claim set it yields says `tee: "sim"` so that policies can
//! refuse it unless they allow it by name.
//!
//! Format: `VEILSIM1` ‖ measurement (48) ‖ report data (64) ‖ debug (1) ‖ SVN (2, LE) ‖
//! Ed25519 signature over everything before it (64).

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use rand_core::TryRngCore;

use crate::claims::{TeeKind, VerifiedClaims};
use crate::error::{Result, TeeError};
use crate::evidence::{Verifier, SIM_MAGIC};

const BODY_LEN: usize = 8 + 48 + 64 + 1 + 2;
/// Length of simulated evidence.
pub const SIM_EVIDENCE_LEN: usize = BODY_LEN + 64;

/// A simulated platform: holds the platform signing key (zeroized on drop).
pub struct SimulatedPlatform {
    key: SigningKey,
}

impl std::fmt::Debug for SimulatedPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedPlatform")
            .field("public_key", &hex::encode(self.public_key()))
            .finish()
    }
}

impl SimulatedPlatform {
    /// A platform with a fresh key from the operating system.
    pub fn generate() -> Result<Self> {
        let mut seed = [0u8; 32];
        rand_core::OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|_| TeeError::Internal("no system entropy"))?;
        let key = SigningKey::from_bytes(&seed);
        seed.iter_mut().for_each(|b| *b = 0);
        Ok(Self { key })
    }

    /// A platform from a 32-byte secret seed (tests, or a persisted platform).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The platform's sealing secret (derived from its key): what a hardware TEE's key
    /// derivation provides. Workloads derive their sealing keys from it and their measurement.
    pub fn sealing_secret(&self) -> zeroize::Zeroizing<[u8; 32]> {
        use sha2::{Digest, Sha256};
        let mut seed = zeroize::Zeroizing::new(self.key.to_bytes());
        let mut h = Sha256::new();
        h.update(b"veil-sim-sealing-secret-v1");
        h.update(seed.as_ref());
        seed.as_mut().fill(0);
        zeroize::Zeroizing::new(h.finalize().into())
    }

    /// The platform's public key: the trust anchor verifiers need.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Issues evidence for a workload with `measurement` binding `report_data`.
    pub fn issue(
        &self,
        measurement: &[u8; 48],
        report_data: &[u8; 64],
        debug: bool,
        svn: u16,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIM_EVIDENCE_LEN);
        out.extend_from_slice(SIM_MAGIC);
        out.extend_from_slice(measurement);
        out.extend_from_slice(report_data);
        out.push(u8::from(debug));
        out.extend_from_slice(&svn.to_le_bytes());
        let sig = self.key.sign(&out);
        out.extend_from_slice(&sig.to_bytes());
        out
    }
}

/// Verifies simulated evidence against a platform public key.
#[derive(Clone, Debug)]
pub struct SimVerifier {
    platform: VerifyingKey,
}

impl SimVerifier {
    /// A verifier trusting the platform key `public_key`.
    pub fn new(public_key: &[u8; 32]) -> Result<Self> {
        let platform = VerifyingKey::from_bytes(public_key)
            .map_err(|_| TeeError::InvalidCollateral("not an Ed25519 public key".into()))?;
        Ok(Self { platform })
    }
}

impl Verifier for SimVerifier {
    fn verify(&self, evidence: &[u8], _now: u64) -> Result<VerifiedClaims> {
        if evidence.len() != SIM_EVIDENCE_LEN || !evidence.starts_with(SIM_MAGIC) {
            return Err(TeeError::Rejected(format!(
                "simulated evidence must be {SIM_EVIDENCE_LEN} bytes starting with VEILSIM1, got {}",
                evidence.len()
            )));
        }
        let (body, sig) = evidence.split_at(BODY_LEN);
        let sig = Signature::from_slice(sig)
            .map_err(|_| TeeError::Rejected("malformed signature".into()))?;
        self.platform.verify(body, &sig).map_err(|_| {
            TeeError::Rejected("signature does not verify with the simulated platform key".into())
        })?;
        let debug = match body[120] {
            0 => false,
            1 => true,
            _ => return Err(TeeError::Rejected("invalid debug flag".into())),
        };
        let mut measurements = BTreeMap::new();
        measurements.insert("measurement".to_string(), hex::encode(&body[8..56]));
        Ok(VerifiedClaims {
            tee: TeeKind::Sim,
            measurements,
            signer: Some(hex::encode(self.platform.to_bytes())),
            product_id: None,
            security_version: Some(u16::from_le_bytes([body[121], body[122]])),
            debug,
            tcb_status: "Simulated".to_string(),
            advisory_ids: Vec::new(),
            report_data: hex::encode(&body[56..120]),
            vmpl: None,
            tcb: Default::default(),
            signing_key: None,
        })
    }
}
