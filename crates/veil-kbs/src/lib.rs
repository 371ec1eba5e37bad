//! The key broker (`veil kbs serve`): secure key release.
//!
//! Secrets (dataset keys, model keys) are stored encrypted at rest (ChaCha20-Poly1305 under a
//! master key kept in the store directory, the secret's name as associated data), each with
//! a release policy. `POST /release/{name}` with an attestation token: the broker verifies the
//! token against the attestation service's JWKS, evaluates the secret's policy on the token's
//! claims and returns the secret **wrapped to the runtime public key bound in the evidence**
//! with HPKE (RFC 9180; DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base
//! mode, `info` = `veil-kbs release v1` ‖ 0 ‖ name). Only the attested workload can open it;
//! proxies on the path, the broker operator's included, see ciphertext.
//!
//! | route | what |
//! |---|---|
//! | `POST /release/{name}` | body `{"token": "<JWT>"}` (or `Authorization: Bearer`) → [`ReleasedSecret`] |
//! | `GET /audit/head` | the audit log's signed head ([`veil_attest::audit::SignedHead`]), if the log is signed |
//! | `GET /health` | `ok` |
//!
//! Secrets are managed on the store directly: [`SecretStore::put`], [`SecretStore::list`],
//! [`SecretStore::revoke`] (`veil kbs put|list|revoke`); a running broker sees changes at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroizing;

use veil_attest::audit::AuditLog;
use veil_attest::error::{Result, TeeError};
use veil_attest::policy::Policy;
use veil_attest::token::TokenVerifier;
use veil_attest::util::{decode_b64, encode_b64, system_clock, write_private, Clock};

/// The HPKE suite secrets are released with.
pub const HPKE_SUITE: &str = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305";
/// Largest secret stored.
pub const MAX_SECRET_LEN: usize = 1 << 20;
/// Least time (seconds) between two JWKS refetches caused by tokens naming an unknown key.
pub const JWKS_REFRESH_INTERVAL_SECS: u64 = 30;

fn release_info(name: &str) -> Vec<u8> {
    let mut info = b"veil-kbs release v1\0".to_vec();
    info.extend_from_slice(name.as_bytes());
    info
}

fn os_rng() -> rand_core::UnwrapErr<rand_core::OsRng> {
    rand_core::UnwrapErr(rand_core::OsRng)
}

/// A secret wrapped to a workload's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedSecret {
    /// The secret's name.
    pub name: String,
    /// The HPKE suite ([`HPKE_SUITE`]).
    pub suite: String,
    /// HPKE encapsulated key (base64url).
    pub encapsulated_key: String,
    /// The sealed secret (base64url).
    pub ciphertext: String,
}

/// A workload's HPKE key pair (X25519): the public half goes into the evidence's report
/// data; the private half opens released secrets. The private key is zeroized on drop.
pub struct WorkloadKeyPair {
    private: <X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    public: <X25519HkdfSha256 as hpke::Kem>::PublicKey,
}

impl std::fmt::Debug for WorkloadKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadKeyPair")
            .field("public", &hex::encode(self.public_bytes()))
            .finish_non_exhaustive()
    }
}

impl WorkloadKeyPair {
    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Self {
        let (private, public) = X25519HkdfSha256::gen_keypair(&mut os_rng());
        Self { private, public }
    }

    /// The key pair from a stored 32-byte X25519 private key.
    pub fn from_private_bytes(bytes: &[u8]) -> Result<Self> {
        let private = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map_err(|_| TeeError::BadRequest("not an X25519 private key".into()))?;
        let public = X25519HkdfSha256::sk_to_pk(&private);
        Ok(Self { private, public })
    }

    /// The private key's bytes, for storing the pair (zeroized when dropped).
    pub fn private_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.private.to_bytes().to_vec())
    }

    /// The public key (32 bytes).
    pub fn public_bytes(&self) -> Vec<u8> {
        self.public.to_bytes().to_vec()
    }

    /// Opens a secret released to this key.
    pub fn open(&self, released: &ReleasedSecret) -> Result<Zeroizing<Vec<u8>>> {
        if released.suite != HPKE_SUITE {
            return Err(TeeError::BadRequest(format!(
                "unsupported HPKE suite {:?}",
                released.suite
            )));
        }
        let enc = decode_b64("encapsulated_key", &released.encapsulated_key)?;
        let ct = decode_b64("ciphertext", &released.ciphertext)?;
        let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&enc)
            .map_err(|_| TeeError::BadRequest("malformed encapsulated key".into()))?;
        hpke::single_shot_open::<
            hpke::aead::ChaCha20Poly1305,
            hpke::kdf::HkdfSha256,
            X25519HkdfSha256,
        >(
            &OpModeR::Base,
            &self.private,
            &enc,
            &release_info(&released.name),
            &ct,
            b"",
        )
        .map(Zeroizing::new)
        .map_err(|_| TeeError::Crypto("the released secret does not open with this key"))
    }
}

/// Seals `secret` named `name` to the X25519 public key `recipient`.
pub fn seal_to(recipient: &[u8], name: &str, secret: &[u8]) -> Result<ReleasedSecret> {
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(recipient).map_err(|_| {
        TeeError::BadRequest(format!(
            "the runtime public key ({} bytes) is not an X25519 key",
            recipient.len()
        ))
    })?;
    let (enc, ct) = hpke::single_shot_seal::<
        hpke::aead::ChaCha20Poly1305,
        hpke::kdf::HkdfSha256,
        X25519HkdfSha256,
        _,
    >(
        &OpModeS::Base,
        &pk,
        &release_info(name),
        secret,
        b"",
        &mut os_rng(),
    )
    .map_err(|_| TeeError::Crypto("HPKE seal failed"))?;
    Ok(ReleasedSecret {
        name: name.to_string(),
        suite: HPKE_SUITE.into(),
        encapsulated_key: encode_b64(&enc.to_bytes()),
        ciphertext: encode_b64(&ct),
    })
}

/// What `list` shows about a secret (never its value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    /// Name.
    pub name: String,
    /// Length of the value in bytes.
    pub len: usize,
    /// The release policy's name.
    pub policy: String,
    /// SHA-256 of the policy text.
    pub policy_sha256: String,
    /// When it was stored (Unix seconds).
    pub created: u64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// Secrets encrypted at rest, with their release policies, in a directory:
/// `master.key` (32 random bytes, mode 0600) and `secrets.db` (SQLite).
pub struct SecretStore {
    dir: PathBuf,
    master: Zeroizing<[u8; 32]>,
    conn: Mutex<Connection>,
    policies: Mutex<HashMap<String, Policy>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn store_err(e: impl std::fmt::Display) -> TeeError {
    TeeError::Store(e.to_string())
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(TeeError::BadRequest(format!(
            "secret name {name:?}: use 1-128 characters from A-Z a-z 0-9 . _ -"
        )))
    }
}

impl SecretStore {
    /// Opens or creates the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| store_err(format!("{}: {e}", dir.display())))?;
        let key_path = dir.join("master.key");
        let master = if key_path.exists() {
            let bytes = Zeroizing::new(std::fs::read(&key_path).map_err(store_err)?);
            let arr: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| store_err(format!("{} is not a 32-byte key", key_path.display())))?;
            Zeroizing::new(arr)
        } else {
            let mut k = Zeroizing::new([0u8; 32]);
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), k.as_mut())
                .map_err(|_| TeeError::Crypto("no system randomness"))?;
            write_private(&key_path, k.as_ref())?;
            k
        };
        let conn = Connection::open(dir.join("secrets.db")).map_err(store_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(store_err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS secrets (
                name TEXT PRIMARY KEY,
                nonce BLOB NOT NULL,
                ciphertext BLOB NOT NULL,
                len INTEGER NOT NULL,
                policy_kind TEXT NOT NULL,
                policy_name TEXT NOT NULL,
                policy_text TEXT NOT NULL,
                created INTEGER NOT NULL,
                revoked INTEGER NOT NULL DEFAULT 0
            );",
        )
        .map_err(store_err)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            master,
            conn: Mutex::new(conn),
            policies: Mutex::new(HashMap::new()),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| TeeError::Internal("store connection poisoned"))
    }

    fn aead(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(self.master.as_ref()))
    }

    /// Stores (or replaces, un-revoking) `value` under `name` with a release policy of `kind`
    /// (`toml` or `rego`). The policy is checked before anything is written.
    pub fn put(
        &self,
        name: &str,
        value: &[u8],
        policy_kind: &str,
        policy_name: &str,
        policy_text: &str,
        now: u64,
    ) -> Result<()> {
        check_name(name)?;
        if value.is_empty() || value.len() > MAX_SECRET_LEN {
            return Err(TeeError::BadRequest(format!(
                "a secret is 1 to {MAX_SECRET_LEN} bytes"
            )));
        }
        Policy::parse(policy_kind, policy_name, policy_text)?;
        let mut nonce = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| TeeError::Crypto("no system randomness"))?;
        let aad = format!("veil-kbs secret v1\0{name}");
        let ct = self
            .aead()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| TeeError::Crypto("encryption at rest failed"))?;
        self.conn()?
            .execute(
                "INSERT OR REPLACE INTO secrets
                 (name, nonce, ciphertext, len, policy_kind, policy_name, policy_text, created, revoked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0)",
                params![
                    name,
                    nonce.as_slice(),
                    ct,
                    value.len() as i64,
                    policy_kind,
                    policy_name,
                    policy_text,
                    now as i64
                ],
            )
            .map_err(store_err)?;
        Ok(())
    }

    /// Lists the secrets (names, sizes, policies; never values).
    pub fn list(&self) -> Result<Vec<SecretInfo>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT name, len, policy_name, policy_text, created, revoked
                 FROM secrets ORDER BY name",
            )
            .map_err(store_err)?;
        let rows = stmt
            .query_map([], |r| {
                let text: String = r.get(3)?;
                Ok(SecretInfo {
                    name: r.get(0)?,
                    len: r.get::<_, i64>(1)?.max(0) as usize,
                    policy: r.get(2)?,
                    policy_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                        text.as_bytes(),
                    )),
                    created: r.get::<_, i64>(4)?.max(0) as u64,
                    revoked: r.get::<_, i64>(5)? != 0,
                })
            })
            .map_err(store_err)?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(store_err)
    }

    /// Revokes `name`: it is never released again (until replaced with `put`).
    pub fn revoke(&self, name: &str) -> Result<()> {
        let n = self
            .conn()?
            .execute(
                "UPDATE secrets SET revoked = 1 WHERE name = ?1",
                params![name],
            )
            .map_err(store_err)?;
        if n == 0 {
            Err(TeeError::SecretNotFound(name.to_string()))
        } else {
            Ok(())
        }
    }

    /// The value and release policy of an active secret.
    pub fn get(&self, name: &str) -> Result<(Zeroizing<Vec<u8>>, Policy)> {
        type Row = (Vec<u8>, Vec<u8>, String, String, String, i64);
        let row: Option<Row> = self
            .conn()?
            .query_row(
                "SELECT nonce, ciphertext, policy_kind, policy_name, policy_text, revoked
                 FROM secrets WHERE name = ?1",
                params![name],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(store_err)?;
        let Some((nonce, ct, kind, policy_name, text, revoked)) = row else {
            return Err(TeeError::SecretNotFound(name.to_string()));
        };
        if revoked != 0 {
            return Err(TeeError::SecretNotFound(name.to_string()));
        }
        if nonce.len() != 12 {
            return Err(store_err(format!("secret {name}: corrupt nonce")));
        }
        let aad = format!("veil-kbs secret v1\0{name}");
        let value = self
            .aead()
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| store_err(format!("secret {name} does not decrypt (tampered store?)")))?;
        let key = format!("{kind}\0{policy_name}\0{text}");
        let cached = self
            .policies
            .lock()
            .map_err(|_| TeeError::Internal("policy cache poisoned"))?
            .get(&key)
            .cloned();
        let policy = match cached {
            Some(p) => p,
            None => {
                let p = Policy::parse(&kind, &policy_name, &text)?;
                if let Ok(mut cache) = self.policies.lock() {
                    if cache.len() > 1024 {
                        cache.clear();
                    }
                    cache.insert(key, p.clone());
                }
                p
            }
        };
        Ok((Zeroizing::new(value), policy))
    }
}

/// Where a broker gets the attestation service's current keys when a token names a key it
/// does not know (the service rotated its key): no HTTP here, the caller supplies the fetch.
pub type KeySource = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<TokenVerifier>> + Send>>
        + Send
        + Sync,
>;

/// `POST /release/{name}` body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The attestation token.
    pub token: String,
}

/// The key broker: a store, the attestation service's keys, an audit log.
pub struct KeyBroker {
    store: SecretStore,
    verifier: RwLock<TokenVerifier>,
    key_source: Option<KeySource>,
    audit: AuditLog,
    clock: Clock,
    /// When the JWKS was last refetched (Unix seconds), and the least interval between two.
    last_refresh: Mutex<Option<u64>>,
    refresh_interval: u64,
}

impl std::fmt::Debug for KeyBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyBroker")
            .field("store", &self.store)
            .field("refetches_keys", &self.key_source.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyBroker {
    /// A broker trusting tokens signed by `verifier`'s keys. With `key_source` (the service's
    /// JWKS, e.g. `veil_server::client::jwks_source`), the keys are fetched again when a token names an unknown key (the service rotated its key), at most
    /// once per [`JWKS_REFRESH_INTERVAL_SECS`]: a token is unauthenticated until verified, so
    /// forged key ids must not turn the broker into a request amplifier against the JWKS
    /// endpoint. A rotation is therefore seen up to that long after a forged token.
    pub fn new(
        store: SecretStore,
        verifier: TokenVerifier,
        key_source: Option<KeySource>,
        audit: AuditLog,
    ) -> Self {
        Self {
            store,
            verifier: RwLock::new(verifier),
            key_source,
            audit,
            clock: system_clock(),
            last_refresh: Mutex::new(None),
            refresh_interval: JWKS_REFRESH_INTERVAL_SECS,
        }
    }

    /// Sets the least time between two JWKS refetches (default
    /// [`JWKS_REFRESH_INTERVAL_SECS`]).
    pub fn with_jwks_refresh_interval(mut self, seconds: u64) -> Self {
        self.refresh_interval = seconds;
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &SecretStore {
        &self.store
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The audit log's head, signed now (see [`veil_attest::audit::SignedHead`]).
    pub fn audit_head(&self) -> Result<veil_attest::audit::SignedHead> {
        self.audit.signed_head((self.clock)())
    }

    async fn refresh_keys_if_unknown(&self, token: &str) {
        let Some(source) = &self.key_source else {
            return;
        };
        let Some(kid) = TokenVerifier::key_id_of(token) else {
            return;
        };
        let known = self.verifier.read().map(|v| v.knows(&kid)).unwrap_or(true);
        if known {
            return;
        }
        // Anyone can send a token naming a key id: refetch at most once per interval, the
        // slot claimed before fetching so that concurrent tokens do not all fetch.
        let now = (self.clock)();
        {
            let Ok(mut last) = self.last_refresh.lock() else {
                return;
            };
            if last.is_some_and(|t| now < t.saturating_add(self.refresh_interval)) {
                return;
            }
            *last = Some(now);
        }
        if let Ok(v) = source().await {
            if let Ok(mut w) = self.verifier.write() {
                *w = v;
            }
        }
    }

    /// Releases `name` to the workload the token describes, or says why not. The decision is
    /// in the audit log before this returns.
    pub async fn release(&self, name: &str, token: &str) -> Result<ReleasedSecret> {
        self.refresh_keys_if_unknown(token).await;
        let now = (self.clock)();
        let outcome = self.decide(name, token, now);
        let (event, details) = match &outcome {
            Ok((_, jti, m)) => (
                "secret_released",
                json!({ "name": name, "jti": jti, "measurements": m }),
            ),
            Err(e) => (
                "release_refused",
                json!({ "name": name, "reason": e.to_string() }),
            ),
        };
        self.audit.append(now, event, details)?;
        outcome.map(|(r, _, _)| r)
    }

    #[allow(clippy::type_complexity, reason = "private helper")]
    fn decide(
        &self,
        name: &str,
        token: &str,
        now: u64,
    ) -> Result<(ReleasedSecret, String, serde_json::Value)> {
        check_name(name)?;
        let claims = self
            .verifier
            .read()
            .map_err(|_| TeeError::Internal("verifier lock poisoned"))?
            .verify(token, now)?;
        let (value, policy) = self.store.get(name)?;
        let input =
            serde_json::to_value(&claims).map_err(|_| TeeError::Internal("claims are not JSON"))?;
        policy.evaluate(&input)?;
        let pk = decode_b64("runtime_public_key", &claims.runtime_public_key)?;
        let released = seal_to(&pk, name, &value)?;
        Ok((
            released,
            claims.jti,
            serde_json::to_value(&claims.evidence.measurements).unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpke_release_opens_only_with_the_bound_key_and_name() {
        let workload = WorkloadKeyPair::generate();
        let sealed = seal_to(&workload.public_bytes(), "model-key", b"s3cret").unwrap();
        assert_eq!(workload.open(&sealed).unwrap().as_slice(), b"s3cret");
        let other = WorkloadKeyPair::generate();
        assert!(other.open(&sealed).is_err());
        let mut renamed = sealed.clone();
        renamed.name = "other".into();
        assert!(workload.open(&renamed).is_err());
        assert!(seal_to(&[1, 2, 3], "x", b"y").is_err());
    }

    #[test]
    fn store_encrypts_at_rest_lists_and_revokes() {
        let dir = std::env::temp_dir().join(format!("veil-kbs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SecretStore::open(&dir).unwrap();
        let policy = "tee = [\"sim\"]";
        store
            .put(
                "dataset-key",
                b"0123456789abcdef-secret-value",
                "toml",
                "p.toml",
                policy,
                7,
            )
            .unwrap();
        // Encrypted at rest: the value is nowhere in the database file.
        let db = std::fs::read(dir.join("secrets.db")).unwrap();
        assert!(!db.windows(12).any(|w| w == b"secret-value"));
        assert_eq!(
            store.get("dataset-key").unwrap().0.as_slice(),
            b"0123456789abcdef-secret-value"
        );
        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].len, 29);
        assert!(!list[0].revoked);
        // A second handle (another process) sees the same secrets with the same master key.
        let again = SecretStore::open(&dir).unwrap();
        again.revoke("dataset-key").unwrap();
        assert!(matches!(
            store.get("dataset-key"),
            Err(TeeError::SecretNotFound(_))
        ));
        assert!(matches!(
            store.revoke("nope"),
            Err(TeeError::SecretNotFound(_))
        ));
        // Bad names, empty values and broken policies are refused before writing.
        assert!(store.put("../x", b"v", "toml", "p", policy, 0).is_err());
        assert!(store.put("x", b"", "toml", "p", policy, 0).is_err());
        assert!(store.put("x", b"v", "toml", "p", "tee = 1", 0).is_err());
        assert!(store.put("x", b"v", "yaml", "p", policy, 0).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
