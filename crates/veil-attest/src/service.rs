//! The attestation service's logic (`veil attest serve`; its routes are in
//! `veil_server::attest`): single-use nonces ([`NonceStore`]), evidence verification
//! ([`Verifiers`]), the binding of the runtime key, policy evaluation and signed attestation
//! tokens ([`AttestationService::attest_from`]). Every decision, issued or refused, is
//! appended to the audit log before it is returned. Binary fields are base64url (padding
//! optional). A full replay cache is [`TeeError::Overloaded`] (HTTP 503 with `Retry-After`),
//! never a replay accepted.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::AuditLog;
use crate::binding::check_binding;
use crate::claims::VerifiedClaims;
use crate::error::{Result, TeeError};
use crate::evidence::{detect, EvidenceKind, Verifier};
use crate::policy::Policy;
use crate::token::{AttestationClaims, Jwks, TokenIssuer, ISSUER};
use crate::util::{decode_b64, encode_b64, system_clock, Clock};

/// Largest evidence accepted by the service.
pub const MAX_EVIDENCE_LEN: usize = 64 * 1024;
/// Largest runtime data accepted.
pub const MAX_RUNTIME_DATA_LEN: usize = 16 * 1024;
/// Kept for compatibility: nonces are no longer stored when issued (see [`NonceStore`]);
/// this is now the bound of the replay cache, [`MAX_USED_NONCES`].
pub const MAX_OUTSTANDING_NONCES: usize = MAX_USED_NONCES;

/// The trust anchors the service verifies evidence with.
#[derive(Default)]
pub struct Verifiers {
    /// SGX/TDX collateral sets (feature `dcap`); a quote passes if one of them verifies it.
    #[cfg(feature = "dcap")]
    pub dcap: Vec<crate::evidence::dcap::DcapVerifier>,
    /// SEV-SNP VCEKs and VLEKs, each with the CRLs it checks (feature `snp`).
    #[cfg(feature = "snp")]
    pub snp: Vec<crate::evidence::snp::SnpVerifier>,
    /// Simulated platform keys.
    pub sim: Vec<crate::evidence::sim::SimVerifier>,
    /// Fetch SGX/TDX collateral from a PCCS when no stored collateral verifies a quote.
    #[cfg(feature = "dcap")]
    pub pccs: Option<crate::pccs::CollateralCache>,
    /// Fixed verification time for DCAP/SNP collateral (recorded evidence); `None`: now.
    pub verify_at: Option<u64>,
}

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifiers").finish_non_exhaustive()
    }
}

fn first_success(
    candidates: Vec<&dyn Verifier>,
    evidence: &[u8],
    now: u64,
    missing: &'static str,
) -> Result<VerifiedClaims> {
    let mut first_err = None;
    for v in candidates {
        match v.verify(evidence, now) {
            Ok(c) => return Ok(c),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or(TeeError::MissingInput(missing)))
}

impl Verifiers {
    /// Verifies evidence of any configured kind.
    pub fn verify(&self, evidence: &[u8], now: u64) -> Result<VerifiedClaims> {
        // The time hardware evidence is checked at (`verify_at`, for recorded evidence).
        #[cfg_attr(not(any(feature = "dcap", feature = "snp")), allow(unused_variables))]
        let at = self.verify_at.unwrap_or(now);
        match detect(evidence)? {
            EvidenceKind::Simulated => first_success(
                self.sim.iter().map(|v| v as &dyn Verifier).collect(),
                evidence,
                now,
                "simulated platform key (the service trusts no simulated platform)",
            ),
            #[cfg(feature = "dcap")]
            EvidenceKind::SgxQuote | EvidenceKind::TdxQuote => {
                let stored = first_success(
                    self.dcap.iter().map(|v| v as &dyn Verifier).collect(),
                    evidence,
                    at,
                    "DCAP collateral (the service was started without --collateral or --pccs)",
                );
                match (&self.pccs, stored) {
                    (_, Ok(claims)) => Ok(claims),
                    (Some(cache), Err(stored_err)) => {
                        let fetched = cache.verifier_for(evidence, now)?;
                        fetched.verify(evidence, at).map_err(|e| {
                            if self.dcap.is_empty() {
                                e
                            } else {
                                TeeError::Rejected(format!("{e} (stored collateral: {stored_err})"))
                            }
                        })
                    }
                    (None, Err(e)) => Err(e),
                }
            }
            #[cfg(feature = "snp")]
            EvidenceKind::SnpReport => first_success(
                self.snp.iter().map(|v| v as &dyn Verifier).collect(),
                evidence,
                at,
                "VCEK or VLEK certificate (the service was started without --vcek or --vlek)",
            ),
            #[allow(unreachable_patterns, reason = "reachable when a feature is off")]
            other => Err(TeeError::VerifierNotEnabled(
                match other {
                    EvidenceKind::SnpReport => "SEV-SNP",
                    _ => "SGX/TDX",
                },
                match other {
                    EvidenceKind::SnpReport => "snp",
                    _ => "dcap",
                },
            )),
        }
    }
}

/// Single-use, expiring nonces that cost the service no memory until they are used.
///
/// **Threat model.** Anyone can ask for a nonce; nobody may be able to stop another client
/// from attesting by asking for many. A nonce is therefore *stateless*: 8 bytes of expiry
/// (big-endian Unix seconds), 8 random bytes and a 16-byte HMAC-SHA256 tag over both under a
/// key drawn when the store is created. Issuing one stores nothing, so a flood of
/// `GET /nonce` fills no table; a client's own nonce is valid whatever others asked for.
/// The tag makes nonces unforgeable and unpredictable (the evidence cannot be prepared before
/// the nonce was issued), the expiry makes them short-lived.
///
/// Single use needs memory: a nonce that was *used* is remembered until it expires (a
/// replay cache bounded by expiry, ordered by it so that expired entries are dropped first).
/// The cache holds at most [`MAX_USED_NONCES`] entries and one client (peer IP address) at
/// most [`MAX_USED_NONCES_PER_CLIENT`] of them; beyond either bound the request is refused
/// with [`TeeError::Overloaded`] (HTTP 503 with `Retry-After`: the time until the oldest
/// entry expires), never by forgetting a used nonce (which would allow a replay).
///
/// Not protected: a distributed flood of *used* nonces from many addresses can keep the
/// cache full (clients then get 503, not a wrong answer); nonces issued before a restart are
/// unknown after it (the key is not persisted), and clients simply ask again.
#[derive(Debug)]
pub struct NonceStore {
    key: Option<ring::hmac::Key>,
    capacity: usize,
    per_client: usize,
    inner: Mutex<ReplayCache>,
}

/// Most used nonces remembered (each until its expiry); beyond it `POST /attest` answers 503.
pub const MAX_USED_NONCES: usize = 1 << 20;
/// Most entries of the replay cache one client (peer IP address) may hold.
pub const MAX_USED_NONCES_PER_CLIENT: usize = 1 << 14;

const NONCE_MAC_CONTEXT: &[u8] = b"veil-attest nonce v1\0";

#[derive(Debug, Default)]
struct ReplayCache {
    /// Used nonces by expiry, with the client that used them.
    by_expiry: std::collections::BTreeMap<(u64, [u8; 32]), Option<std::net::IpAddr>>,
    /// Entries per client.
    per_client: HashMap<std::net::IpAddr, usize>,
}

impl ReplayCache {
    fn purge(&mut self, now: u64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let client = entry.remove();
            if let Some(ip) = client {
                if let std::collections::hash_map::Entry::Occupied(mut n) =
                    self.per_client.entry(ip)
                {
                    *n.get_mut() = n.get().saturating_sub(1);
                    if *n.get() == 0 {
                        n.remove();
                    }
                }
            }
        }
    }

    /// Seconds until the oldest entry expires.
    fn retry_after(&self, now: u64) -> u64 {
        self.by_expiry
            .keys()
            .next()
            .map_or(1, |k| k.0.saturating_sub(now).max(1))
    }
}

impl Default for NonceStore {
    fn default() -> Self {
        Self::with_capacity(MAX_USED_NONCES, MAX_USED_NONCES_PER_CLIENT)
    }
}

impl NonceStore {
    /// A store whose replay cache holds at most `capacity` used nonces, `per_client` of them
    /// from one client (both at least 1).
    pub fn with_capacity(capacity: usize, per_client: usize) -> Self {
        let mut key = [0u8; 32];
        let key = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .ok()
            .map(|()| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key));
        Self {
            key,
            capacity: capacity.max(1),
            per_client: per_client.max(1),
            inner: Mutex::new(ReplayCache::default()),
        }
    }

    fn tag(key: &ring::hmac::Key, body: &[u8]) -> [u8; 16] {
        let mut ctx = ring::hmac::Context::with_key(key);
        ctx.update(NONCE_MAC_CONTEXT);
        ctx.update(body);
        let full = ctx.sign();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full.as_ref()[..16]);
        tag
    }

    fn key(&self) -> Result<&ring::hmac::Key> {
        self.key
            .as_ref()
            .ok_or(TeeError::Crypto("no system randomness for the nonce key"))
    }

    /// Issues a fresh 32-byte nonce valid until `now + ttl`. Stores nothing.
    pub fn issue(&self, now: u64, ttl: u64) -> Result<[u8; 32]> {
        let key = self.key()?;
        let mut nonce = [0u8; 32];
        nonce[..8].copy_from_slice(&now.saturating_add(ttl).to_be_bytes());
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce[8..16])
            .map_err(|_| TeeError::Crypto("no system randomness"))?;
        let tag = Self::tag(key, &nonce[..16]);
        nonce[16..].copy_from_slice(&tag);
        Ok(nonce)
    }

    /// Consumes `nonce`: succeeds once, before its expiry.
    pub fn consume(&self, nonce: &[u8], now: u64) -> Result<()> {
        self.consume_from(nonce, now, None)
    }

    /// Consumes `nonce` for `client` (its IP address, counted against its share of the
    /// replay cache): succeeds once, before its expiry.
    pub fn consume_from(
        &self,
        nonce: &[u8],
        now: u64,
        client: Option<std::net::IpAddr>,
    ) -> Result<()> {
        let nonce: [u8; 32] = nonce.try_into().map_err(|_| {
            TeeError::NonceRejected(format!("a nonce is 32 bytes, not {}", nonce.len()))
        })?;
        let expected = Self::tag(self.key()?, &nonce[..16]);
        // Constant time: the tag is the secret-dependent part.
        let diff = expected
            .iter()
            .zip(&nonce[16..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(TeeError::NonceRejected(
                "unknown nonce (not issued by this service, or issued before it restarted)".into(),
            ));
        }
        let mut exp_bytes = [0u8; 8];
        exp_bytes.copy_from_slice(&nonce[..8]);
        let exp = u64::from_be_bytes(exp_bytes);
        if now >= exp {
            return Err(TeeError::NonceRejected(format!(
                "nonce expired at {exp} (now {now})"
            )));
        }
        let mut cache = self
            .inner
            .lock()
            .map_err(|_| TeeError::Internal("nonce store poisoned"))?;
        cache.purge(now);
        if cache.by_expiry.contains_key(&(exp, nonce)) {
            return Err(TeeError::NonceRejected(
                "nonce already used (replay)".into(),
            ));
        }
        if cache.by_expiry.len() >= self.capacity {
            return Err(TeeError::Overloaded {
                reason: "too many attestations in flight".into(),
                retry_after: cache.retry_after(now),
            });
        }
        if let Some(ip) = client {
            if cache.per_client.get(&ip).copied().unwrap_or(0) >= self.per_client {
                // Its own entries expire within a nonce lifetime; this one's rest is a bound
                // that costs no scan of the cache.
                return Err(TeeError::Overloaded {
                    reason: format!("too many attestations from {ip}"),
                    retry_after: exp.saturating_sub(now).max(1),
                });
            }
            *cache.per_client.entry(ip).or_insert(0) += 1;
        }
        cache.by_expiry.insert((exp, nonce), client);
        Ok(())
    }

    /// The number of used nonces remembered now.
    pub fn used(&self) -> usize {
        self.inner.lock().map_or(0, |c| c.by_expiry.len())
    }
}

/// `GET /nonce` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NonceResponse {
    /// The nonce (base64url, 32 bytes).
    pub nonce: String,
    /// Expiry (Unix seconds).
    pub expires_at: u64,
}

/// `POST /attest` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// The evidence (base64url): a quote, an SNP report or simulated evidence.
    pub evidence: String,
    /// The nonce from `GET /nonce`.
    pub nonce: String,
    /// The workload's runtime public key (base64url), bound in the report data.
    pub runtime_public_key: String,
    /// Other runtime data bound in the report data (base64url; default empty).
    #[serde(default)]
    pub runtime_data: String,
}

/// `POST /attest` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttestResponse {
    /// The attestation token (JWT).
    pub token: String,
    /// Its claims, for convenience (the token is authoritative).
    pub claims: AttestationClaims,
}

/// Configuration and state of the attestation service.
pub struct AttestationService {
    verifiers: Verifiers,
    policy: Policy,
    issuer: TokenIssuer,
    nonces: NonceStore,
    audit: AuditLog,
    clock: Clock,
    nonce_ttl: u64,
    token_ttl: u64,
}

impl std::fmt::Debug for AttestationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttestationService")
            .field("policy", &self.policy)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl AttestationService {
    /// A service with nonces valid 60 s and tokens valid 5 min, on the system clock.
    pub fn new(verifiers: Verifiers, policy: Policy, issuer: TokenIssuer, audit: AuditLog) -> Self {
        Self {
            verifiers,
            policy,
            issuer,
            nonces: NonceStore::default(),
            audit,
            clock: system_clock(),
            nonce_ttl: 60,
            token_ttl: 300,
        }
    }

    /// Sets how long nonces and tokens stay valid (seconds, at least 1).
    pub fn with_lifetimes(mut self, nonce_ttl: u64, token_ttl: u64) -> Self {
        self.nonce_ttl = nonce_ttl.max(1);
        self.token_ttl = token_ttl.max(1);
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Bounds the replay cache (used nonces remembered until they expire): at most `total`
    /// entries, `per_client` of them from one client. See [`NonceStore`].
    pub fn with_replay_capacity(mut self, total: usize, per_client: usize) -> Self {
        self.nonces = NonceStore::with_capacity(total, per_client);
        self
    }

    /// The nonce store.
    pub fn nonces(&self) -> &NonceStore {
        &self.nonces
    }

    /// The public keys tokens are signed with.
    pub fn jwks(&self) -> Jwks {
        self.issuer.jwks()
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The audit log's head, signed now (see [`crate::audit::SignedHead`]).
    pub fn audit_head(&self) -> Result<crate::audit::SignedHead> {
        self.audit.signed_head((self.clock)())
    }

    /// Issues a nonce.
    pub fn nonce(&self) -> Result<NonceResponse> {
        let now = (self.clock)();
        let nonce = self.nonces.issue(now, self.nonce_ttl)?;
        Ok(NonceResponse {
            nonce: encode_b64(&nonce),
            expires_at: now + self.nonce_ttl,
        })
    }

    /// Verifies, binds and evaluates; returns a token or the reason for refusing. The
    /// decision is in the audit log before this returns.
    pub fn attest(&self, req: &AttestRequest) -> Result<AttestResponse> {
        self.attest_from(req, None)
    }

    /// [`AttestationService::attest`] for a request from `client` (its IP address), whose
    /// share of the replay cache is bounded (see [`NonceStore`]).
    pub fn attest_from(
        &self,
        req: &AttestRequest,
        client: Option<std::net::IpAddr>,
    ) -> Result<AttestResponse> {
        let now = (self.clock)();
        let outcome = self.decide(req, now, client);
        let record = match &outcome {
            Ok(r) => (
                "token_issued",
                json!({
                    "jti": r.claims.jti,
                    "tee": r.claims.evidence.tee,
                    "measurements": r.claims.evidence.measurements,
                    "tcb_status": r.claims.evidence.tcb_status,
                    "policy": r.claims.policy,
                    "expires": r.claims.exp,
                }),
            ),
            Err(e) => (
                "attestation_refused",
                json!({ "reason": e.to_string(), "policy": self.policy.reference() }),
            ),
        };
        self.audit.append(now, record.0, record.1)?;
        outcome
    }

    fn decide(
        &self,
        req: &AttestRequest,
        now: u64,
        client: Option<std::net::IpAddr>,
    ) -> Result<AttestResponse> {
        if req.evidence.len() > MAX_EVIDENCE_LEN * 4 / 3 + 4 {
            return Err(TeeError::BadRequest(format!(
                "evidence larger than {MAX_EVIDENCE_LEN} bytes"
            )));
        }
        let evidence = decode_b64("evidence", &req.evidence)?;
        let nonce = decode_b64("nonce", &req.nonce)?;
        let public_key = decode_b64("runtime_public_key", &req.runtime_public_key)?;
        let runtime_data = decode_b64("runtime_data", &req.runtime_data)?;
        if public_key.is_empty() || public_key.len() > 1024 {
            return Err(TeeError::BadRequest(
                "runtime_public_key must be 1 to 1024 bytes".into(),
            ));
        }
        if runtime_data.len() > MAX_RUNTIME_DATA_LEN {
            return Err(TeeError::BadRequest(format!(
                "runtime_data larger than {MAX_RUNTIME_DATA_LEN} bytes"
            )));
        }
        // The nonce is spent first: a refused attempt cannot be retried with it.
        self.nonces.consume_from(&nonce, now, client)?;
        let claims = self.verifiers.verify(&evidence, now)?;
        check_binding(&claims, &nonce, &public_key, &runtime_data)?;
        let input =
            serde_json::to_value(&claims).map_err(|_| TeeError::Internal("claims are not JSON"))?;
        self.policy.evaluate(&input)?;
        let mut jti = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti)
            .map_err(|_| TeeError::Crypto("no system randomness"))?;
        let claims = AttestationClaims {
            iss: ISSUER.into(),
            iat: now,
            nbf: now,
            exp: now + self.token_ttl,
            jti: hex::encode(jti),
            evidence: claims,
            runtime_public_key: encode_b64(&public_key),
            runtime_data: encode_b64(&runtime_data),
            policy: self.policy.reference().clone(),
        };
        let token = self.issuer.sign(&claims)?;
        Ok(AttestResponse { token, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use_and_expire() {
        let store = NonceStore::default();
        let n = store.issue(100, 10).unwrap();
        store.consume(&n, 105).unwrap();
        let err = store.consume(&n, 106).unwrap_err().to_string();
        assert!(err.contains("replay"), "{err}");
        let m = store.issue(100, 10).unwrap();
        let err = store.consume(&m, 110).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
        let err = store.consume(&[0u8; 32], 100).unwrap_err().to_string();
        assert!(err.contains("unknown"), "{err}");
        assert!(store.consume(&[0u8; 5], 100).is_err());
    }

    #[test]
    fn issuing_stores_nothing_and_a_full_replay_cache_is_503_not_a_replay() {
        let store = NonceStore::with_capacity(2, 1);
        // Issuing is free: no entry, however many.
        let mut issued = Vec::new();
        for _ in 0..10_000 {
            issued.push(store.issue(100, 10).unwrap());
        }
        assert_eq!(store.used(), 0);
        // A forged nonce (right expiry, wrong tag) is unknown.
        let mut forged = issued[0];
        forged[31] ^= 1;
        assert!(store
            .consume(&forged, 101)
            .unwrap_err()
            .to_string()
            .contains("unknown"));
        let a: std::net::IpAddr = [10, 0, 0, 1].into();
        let b: std::net::IpAddr = [10, 0, 0, 2].into();
        store.consume_from(&issued[0], 101, Some(a)).unwrap();
        // One client's share is full: 503 for it, with a retry hint within the lifetime...
        let err = store.consume_from(&issued[1], 101, Some(a)).unwrap_err();
        match &err {
            TeeError::Overloaded { retry_after, .. } => assert!((1..=10).contains(retry_after)),
            other => panic!("{other}"),
        }
        // ...while another client still gets through.
        store.consume_from(&issued[2], 101, Some(b)).unwrap();
        // The whole cache is full: 503, and a used nonce is still a replay (never forgotten
        // early).
        assert!(matches!(
            store.consume(&issued[3], 102),
            Err(TeeError::Overloaded { retry_after: 8, .. })
        ));
        assert!(store
            .consume(&issued[0], 102)
            .unwrap_err()
            .to_string()
            .contains("replay"));
        // Once the entries expire, the space is back (and those nonces are expired anyway).
        let fresh = store.issue(110, 10).unwrap();
        store.consume_from(&fresh, 111, Some(a)).unwrap();
        assert_eq!(store.used(), 1);
    }
}
