//! Multi-party data rooms: several parties agree on the code to run, check the TEE's identity,
//! send their data encrypted to it, and receive the output — nobody else, the operator
//! included, sees any party's data, and every step is in a signed, hash-chained audit log.
//!
//! - A [`Manifest`] (TOML) names the code's measurement and launch configuration, the parties
//!   with their signing (Ed25519) and encryption (X25519) keys, who receives the output, the
//!   attestation policy and the trusted platform keys. The room id is the SHA-256 of the
//!   manifest file: every party holds the same bytes.
//! - [`RoomServer`] is the room's side: it runs in the TEE (simulated here), launches the
//!   workload with a fresh HPKE key and a fresh Ed25519 *audit key*, and gives evidence whose
//!   report data binds a verifier's nonce, the HPKE key, the room id and the audit key.
//! - [`RoomClient`] is a party's side: it verifies that evidence against *its* manifest
//!   (measurement, policy, platform key, binding) before anything leaves the party — a room
//!   running other code gets no data path — then uploads data sealed to the attested key and
//!   signed by the party, asks for the run, fetches the output sealed to itself, and verifies
//!   the audit log.
//!
//! Every event (creation, attestation, upload with the data's SHA-256, run, output release or
//! refusal) is appended to a hash-chained log whose entries are signed by the audit key; a
//! reader asks for the log with a fresh nonce and gets the writer's signed head (entry count
//! and last hash), so an edited, dropped, reordered or truncated copy is detected.
//!
//! A room launched with [`RoomServer::open`] keeps its state in a directory — its keys sealed
//! to the measurement, the audit log, every accepted upload and the outputs, each on disk
//! before the room answers — and resumes from it after a restart, refusing a tampered,
//! swapped, cut or missing file by name (issue 12, item 19; `docs/security/cc.md`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::audit::{verify_against_head, verify_entries, AuditEntry, AuditLog, SignedHead};
use crate::binding::check_binding;
use crate::claims::VerifiedClaims;
use crate::error::{Result, TeeError};
use crate::evidence::sim::{SimVerifier, SimulatedPlatform};
use crate::kbs::{seal_to, ReleasedSecret, WorkloadKeyPair};

mod store;
use crate::policy::{AllowList, Policy};
use crate::service::{decode_b64, encode_b64, system_clock, Clock, HttpError, Verifiers};
use crate::workload::{measure, LaunchConfig, LaunchedWorkload, SealedUpload, Workload};

/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;
/// Largest upload (plaintext) a room accepts.
pub const MAX_UPLOAD: usize = 512 << 20;
/// Largest upload header.
const MAX_HEADER: usize = 64 << 10;
/// How far a signed request's time may be from the room's clock, in seconds.
pub const REQUEST_WINDOW: u64 = 300;

/// The statistics workload shipped with Veil (WebAssembly text).
pub const STATS_WAT: &str = include_str!("../workloads/stats.wat");
/// The logistic-regression workload shipped with Veil (WebAssembly text).
pub const LOGREG_WAT: &str = include_str!("../workloads/logreg.wat");

/// A workload shipped with Veil: its source and how its inputs and outputs look.
#[derive(Clone, Copy, Debug)]
pub struct Builtin {
    /// Name (`stats`, `logreg`).
    pub name: &'static str,
    /// WebAssembly text.
    pub wat: &'static str,
    /// How parties' CSVs are encoded for it.
    pub input: InputFormat,
    /// Names of its f64 outputs (empty: numbered).
    pub output_labels: &'static [&'static str],
}

/// The workloads shipped with Veil.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "stats",
        wat: STATS_WAT,
        input: InputFormat::F64Column,
        output_labels: &[
            "count", "mean", "variance", "min", "max", "hist0", "hist1", "hist2", "hist3", "hist4",
            "hist5", "hist6", "hist7", "hist8", "hist9",
        ],
    },
    Builtin {
        name: "logreg",
        wat: LOGREG_WAT,
        input: InputFormat::F64LabelledRows,
        output_labels: &[],
    },
];

/// A shipped workload by name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// How a party's table is encoded as the workload's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// One numeric column: little-endian f64 values.
    F64Column,
    /// Numeric rows whose last column is a 0/1 label: the feature count, then every row's
    /// values, as little-endian f64.
    F64LabelledRows,
    /// The file's bytes as they are.
    Raw,
}

/// The room's name, salt and recipients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSection {
    /// Manifest format version ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// A name for people.
    pub name: String,
    /// Random hex that makes every room's id unique, even for the same code and parties.
    pub salt: String,
    /// Unix seconds when the manifest was written.
    pub created: u64,
    /// The parties that receive the output.
    pub output_to: Vec<String>,
}

/// The code a room runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeSection {
    /// Where the module came from (informative; the measurement is what counts).
    pub file: String,
    /// SHA-384 (hex) over the module and its launch configuration ([`measure`]).
    pub measurement: String,
    /// How parties encode their data.
    pub input: InputFormat,
    /// Names of the f64 values the workload outputs (empty: raw output, or numbered values).
    #[serde(default)]
    pub output_labels: Vec<String>,
    /// Fuel and memory limits, grants.
    pub launch: LaunchConfig,
}

/// A party: its name and public keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// Name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Ed25519 key (hex) that signs the party's uploads and requests.
    pub signing_key: String,
    /// X25519 key (hex) that outputs are sealed to.
    pub encryption_key: String,
}

/// Trust anchors for the room's evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSection {
    /// Simulated platform keys (hex) the parties accept. Simulated evidence has no hardware
    /// protection: only for demos and tests, and only if the policy names `sim`.
    #[serde(default)]
    pub sim_platform_keys: Vec<String>,
}

/// A room manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Name, salt, recipients.
    pub room: RoomSection,
    /// The code.
    pub code: CodeSection,
    /// The attestation policy the room's evidence must satisfy (a TOML allow-list).
    pub policy: AllowList,
    /// Trust anchors.
    #[serde(default)]
    pub trust: TrustSection,
    /// The parties, in the order their inputs reach the workload.
    pub parties: Vec<Party>,
}

fn refused(why: impl Into<String>) -> TeeError {
    TeeError::RoomRefused(why.into())
}

fn bad(why: impl Into<String>) -> TeeError {
    TeeError::BadRequest(why.into())
}

fn hex_key<const N: usize>(what: &str, text: &str) -> Result<[u8; N]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(format!("{what} must be {N} bytes of hex")))
}

fn verifying_key(what: &str, text: &str) -> Result<VerifyingKey> {
    VerifyingKey::from_bytes(&hex_key::<32>(what, text)?)
        .map_err(|_| bad(format!("{what} is not an Ed25519 public key")))
}

/// Whether a party name is acceptable.
pub fn valid_party_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The room id of a manifest file's bytes.
pub fn room_id(manifest_text: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"veil-room-v1\0");
    h.update(manifest_text.as_bytes());
    h.finalize().into()
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)
        .map_err(|_| TeeError::Crypto("no system randomness"))?;
    Ok(out)
}

/// What `veil room create` needs.
#[derive(Clone, Debug)]
pub struct RoomSpec {
    /// Room name.
    pub name: String,
    /// Informative file name of the module.
    pub file: String,
    /// Input encoding.
    pub input: InputFormat,
    /// Output value names.
    pub output_labels: Vec<String>,
    /// Launch configuration.
    pub launch: LaunchConfig,
    /// Parties, in input order.
    pub parties: Vec<Party>,
    /// Recipients of the output.
    pub output_to: Vec<String>,
    /// Trusted simulated platform keys (hex).
    pub sim_platform_keys: Vec<String>,
    /// Minimum security version of the TEE.
    pub min_security_version: Option<u16>,
}

impl Manifest {
    /// A manifest for `module` (binary or text WebAssembly): measures it under the launch
    /// configuration and pins that measurement in the policy.
    pub fn create(module: &[u8], spec: RoomSpec, now: u64) -> Result<Self> {
        let module = wat::parse_bytes(module)
            .map_err(|e| TeeError::Workload(format!("not WebAssembly: {e}")))?;
        let measurement = hex::encode(measure(&module, &spec.launch));
        let mut measurements = BTreeMap::new();
        measurements.insert("measurement".to_string(), vec![measurement.clone()]);
        let manifest = Self {
            room: RoomSection {
                version: MANIFEST_VERSION,
                name: spec.name,
                salt: hex::encode(random::<16>()?),
                created: now,
                output_to: spec.output_to,
            },
            code: CodeSection {
                file: spec.file,
                measurement,
                input: spec.input,
                output_labels: spec.output_labels,
                launch: spec.launch,
            },
            policy: AllowList {
                tee: if spec.sim_platform_keys.is_empty() {
                    Vec::new()
                } else {
                    vec!["sim".into()]
                },
                min_security_version: spec.min_security_version,
                measurements,
                ..AllowList::default()
            },
            trust: TrustSection {
                sim_platform_keys: spec.sim_platform_keys,
            },
            parties: spec.parties,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// Parses and validates a manifest file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Self =
            toml::from_str(text).map_err(|e| bad(format!("room manifest: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The manifest as TOML (the bytes parties share; the room id is their hash).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| bad(format!("room manifest: {e}")))
    }

    /// Checks names, keys and references.
    pub fn validate(&self) -> Result<()> {
        if self.room.version != MANIFEST_VERSION {
            return Err(bad(format!(
                "room manifest version {} (this build reads {MANIFEST_VERSION})",
                self.room.version
            )));
        }
        if self.parties.is_empty() {
            return Err(bad("a room needs at least one party"));
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &self.parties {
            if !valid_party_name(&p.name) {
                return Err(bad(format!(
                    "party name {:?}: use 1-64 letters, digits, '.', '_' or '-'",
                    p.name
                )));
            }
            if !names.insert(p.name.as_str()) {
                return Err(bad(format!("party {} is listed twice", p.name)));
            }
            verifying_key(&format!("{}'s signing_key", p.name), &p.signing_key)?;
            hex_key::<32>(&format!("{}'s encryption_key", p.name), &p.encryption_key)?;
        }
        if self.room.output_to.is_empty() {
            return Err(bad(
                "output_to names no party: nobody could read the output",
            ));
        }
        for r in &self.room.output_to {
            if !names.contains(r.as_str()) {
                return Err(bad(format!("output_to names {r}, who is not a party")));
            }
        }
        hex_key::<48>("code.measurement", &self.code.measurement)?;
        for k in &self.trust.sim_platform_keys {
            hex_key::<32>("trust.sim_platform_keys", k)?;
        }
        Ok(())
    }

    /// The party named `name`.
    pub fn party(&self, name: &str) -> Result<&Party> {
        self.parties
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| refused(format!("{name} is not a party of this room")))
    }

    /// The verifiers for this room's trust anchors.
    pub fn verifiers(&self) -> Result<Verifiers> {
        let mut v = Verifiers::default();
        for k in &self.trust.sim_platform_keys {
            v.sim.push(SimVerifier::new(&hex_key::<32>(
                "trust.sim_platform_keys",
                k,
            )?)?);
        }
        Ok(v)
    }

    /// The attestation policy.
    pub fn attestation_policy(&self) -> Result<Policy> {
        let text = toml::to_string(&self.policy).map_err(|e| bad(format!("policy: {e}")))?;
        Ok(Policy::from_allow_list(
            "room-manifest",
            &text,
            self.policy.clone(),
        ))
    }
}

/// A party's key pair: Ed25519 to sign, X25519 to receive outputs (both zeroized on drop).
pub struct PartyKey {
    name: String,
    signing: SigningKey,
    encryption: WorkloadKeyPair,
}

impl std::fmt::Debug for PartyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartyKeyFile {
    name: String,
    signing_secret: String,
    encryption_secret: String,
}

impl PartyKey {
    /// Fresh keys for `name`.
    pub fn generate(name: &str) -> Result<Self> {
        if !valid_party_name(name) {
            return Err(bad(format!(
                "party name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"
            )));
        }
        let seed = Zeroizing::new(random::<32>()?);
        Ok(Self {
            name: name.into(),
            signing: SigningKey::from_bytes(&seed),
            encryption: WorkloadKeyPair::generate(),
        })
    }

    /// The party's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half, as the manifest lists it.
    pub fn public(&self) -> Party {
        Party {
            name: self.name.clone(),
            signing_key: hex::encode(self.signing.verifying_key().to_bytes()),
            encryption_key: hex::encode(self.encryption.public_bytes()),
        }
    }

    /// The secret key file's text (TOML; keep it private).
    pub fn to_text(&self) -> Result<Zeroizing<String>> {
        let file = PartyKeyFile {
            name: self.name.clone(),
            signing_secret: hex::encode(self.signing.to_bytes()),
            encryption_secret: hex::encode(self.encryption.private_bytes().as_slice()),
        };
        let mut file = file;
        let text = toml::to_string(&file).map_err(|e| bad(e.to_string()));
        zeroize::Zeroize::zeroize(&mut file.signing_secret);
        zeroize::Zeroize::zeroize(&mut file.encryption_secret);
        text.map(Zeroizing::new)
    }

    /// Reads a secret key file's text.
    pub fn from_text(text: &str) -> Result<Self> {
        let mut file: PartyKeyFile =
            toml::from_str(text).map_err(|e| bad(format!("party key file: {e}")))?;
        let signing = Zeroizing::new(hex_key::<32>("signing_secret", &file.signing_secret)?);
        let encryption =
            Zeroizing::new(hex_key::<32>("encryption_secret", &file.encryption_secret)?);
        zeroize::Zeroize::zeroize(&mut file.signing_secret);
        zeroize::Zeroize::zeroize(&mut file.encryption_secret);
        Ok(Self {
            name: file.name,
            signing: SigningKey::from_bytes(&signing),
            encryption: WorkloadKeyPair::from_private_bytes(encryption.as_ref())?,
        })
    }

    /// Opens an output sealed to this party.
    pub fn open(&self, sealed: &ReleasedSecret) -> Result<Zeroizing<Vec<u8>>> {
        self.encryption.open(sealed)
    }

    fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }
}

/// A domain-separated, length-prefixed byte string to sign.
fn transcript(domain: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    for f in fields {
        out.extend_from_slice(&(f.len() as u64).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn check_sig(key: &VerifyingKey, message: &[u8], sig: &str, what: &str) -> Result<()> {
    let sig: [u8; 64] = hex::decode(sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(format!("{what}: malformed signature")))?;
    key.verify_strict(message, &Signature::from_bytes(&sig))
        .map_err(|_| refused(format!("{what}: bad signature")))
}

/// The runtime data a room's evidence binds: the room id and the audit key.
pub fn runtime_data(room_id: &[u8; 32], audit_key: &[u8; 32]) -> Vec<u8> {
    transcript("veil-room-runtime-v1", &[room_id, audit_key])
}

fn upload_label(room_id: &[u8; 32], party: &str, label: &str) -> String {
    format!("veil-room/{}/{party}/{label}", hex::encode(room_id))
}

fn output_label(room_id: &[u8; 32], party: &str) -> String {
    format!("veil-room/{}/output/{party}", hex::encode(room_id))
}

/// `GET /room`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room id (hex).
    pub room_id: String,
    /// The manifest the room was launched with.
    pub manifest: String,
}

/// `POST /attest` and `POST /audit` bodies.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NonceRequest {
    /// 16 to 64 random bytes (base64url) from the verifier.
    pub nonce: String,
}

/// `POST /attest` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoomEvidence {
    /// The evidence (base64url).
    pub evidence: String,
    /// The workload's HPKE key (base64url).
    pub workload_key: String,
    /// The workload's Ed25519 audit key (base64url).
    pub audit_key: String,
}

/// Bytes of random salt in front of every upload's plaintext.
pub const SALT_LEN: usize = 32;

/// What an upload says about itself; signed by the party.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadHeader {
    /// The room the upload is for (hex).
    pub room_id: String,
    /// The uploading party.
    pub party: String,
    /// A label (e.g. the file name).
    pub label: String,
    /// SHA-256 (hex) of the upload's random salt followed by the plaintext (the salt is the
    /// first [`SALT_LEN`] bytes inside the ciphertext): it commits to the data without letting
    /// anyone who sees it confirm a guess of the data.
    pub data_sha256: String,
    /// The data key, HPKE-sealed to the workload key.
    pub wrapped_key: ReleasedSecret,
    /// AES-256-GCM nonce (hex).
    pub nonce: String,
    /// SHA-256 (hex) of the ciphertext that follows the header.
    pub ciphertext_sha256: String,
    /// The party's Ed25519 signature (hex) over all of the above.
    pub signature: String,
}

impl UploadHeader {
    fn message(&self) -> Vec<u8> {
        transcript(
            "veil-room-upload-v1",
            &[
                self.room_id.as_bytes(),
                self.party.as_bytes(),
                self.label.as_bytes(),
                self.data_sha256.as_bytes(),
                self.wrapped_key.name.as_bytes(),
                self.wrapped_key.suite.as_bytes(),
                self.wrapped_key.encapsulated_key.as_bytes(),
                self.wrapped_key.ciphertext.as_bytes(),
                self.nonce.as_bytes(),
                self.ciphertext_sha256.as_bytes(),
            ],
        )
    }
}

/// The room's receipt for an upload, signed by the audit key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Receipt {
    /// Room id (hex).
    pub room_id: String,
    /// Party.
    pub party: String,
    /// Label.
    pub label: String,
    /// The salted SHA-256 of the data the room decrypted (hex; see [`UploadHeader`]).
    pub data_sha256: String,
    /// Signature (hex) by the audit key.
    pub signature: String,
}

impl Receipt {
    fn message(&self) -> Vec<u8> {
        transcript(
            "veil-room-receipt-v1",
            &[
                self.room_id.as_bytes(),
                self.party.as_bytes(),
                self.label.as_bytes(),
                self.data_sha256.as_bytes(),
            ],
        )
    }
}

/// A party's signed request (`run`, `fetch-output`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    /// Room id (hex).
    pub room_id: String,
    /// Party.
    pub party: String,
    /// `run` or `fetch-output`.
    pub action: String,
    /// Unix seconds (within [`REQUEST_WINDOW`] of the room's clock).
    pub time: u64,
    /// The party's signature (hex).
    pub signature: String,
}

impl SignedRequest {
    fn message(&self) -> Vec<u8> {
        transcript(
            "veil-room-request-v1",
            &[
                self.room_id.as_bytes(),
                self.party.as_bytes(),
                self.action.as_bytes(),
                &self.time.to_le_bytes(),
            ],
        )
    }

    /// A request by `party` for `action` in room `room_id`, signed now.
    pub fn new(room_id: &[u8; 32], party: &PartyKey, action: &str, time: u64) -> Self {
        let mut r = Self {
            room_id: hex::encode(room_id),
            party: party.name.clone(),
            action: action.into(),
            time,
            signature: String::new(),
        };
        r.signature = party.sign(&r.message());
        r
    }
}

/// `POST /run` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    /// SHA-256 of the output (hex).
    pub output_sha256: String,
    /// Output length in bytes.
    pub output_bytes: usize,
    /// Fuel the workload used.
    pub fuel_used: u64,
    /// Who receives the output.
    pub output_to: Vec<String>,
}

/// `POST /output` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutputResponse {
    /// The output, HPKE-sealed to the party's encryption key.
    pub sealed: ReleasedSecret,
    /// Signature (hex) by the audit key over the room, party and sealed output.
    pub signature: String,
}

fn output_message(room_id: &str, party: &str, sealed: &ReleasedSecret) -> Vec<u8> {
    transcript(
        "veil-room-output-v1",
        &[
            room_id.as_bytes(),
            party.as_bytes(),
            sealed.name.as_bytes(),
            sealed.encapsulated_key.as_bytes(),
            sealed.ciphertext.as_bytes(),
        ],
    )
}

/// `POST /audit` response: the log and the writer's signed head.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditReport {
    /// The log (JSON lines).
    pub log: String,
    /// How many entries the room has written.
    pub entries: u64,
    /// SHA-256 (hex) of the last line the room wrote.
    pub last_hash: String,
    /// Signature (hex) by the audit key over the nonce, `entries` and `last_hash`.
    pub signature: String,
}

fn audit_head_message(nonce: &[u8], entries: u64, last_hash: &str) -> Vec<u8> {
    transcript(
        "veil-room-audit-head-v1",
        &[nonce, &entries.to_le_bytes(), last_hash.as_bytes()],
    )
}

struct StoredUpload {
    label: String,
    data_sha256: String,
    /// The upload record (who, what, salt ‖ data) sealed to the workload's measurement: the
    /// bytes of its file in the state directory.
    sealed: Vec<u8>,
}

#[derive(Default)]
struct RoomState {
    uploads: BTreeMap<String, StoredUpload>,
    outputs: Option<(BTreeMap<String, ReleasedSecret>, String)>,
}

/// The room's side, running in the (simulated) TEE.
pub struct RoomServer {
    manifest: Manifest,
    manifest_text: String,
    room_id: [u8; 32],
    platform: SimulatedPlatform,
    launched: LaunchedWorkload,
    audit_signer: SigningKey,
    audit: AuditLog,
    state: Mutex<RoomState>,
    clock: Clock,
    store: Option<store::Store>,
    resumed: bool,
}

impl std::fmt::Debug for RoomServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomServer")
            .field("room_id", &hex::encode(self.room_id))
            .field("name", &self.manifest.room.name)
            .finish_non_exhaustive()
    }
}

/// The manifest, room id and compiled workload, checked to have the manifest's measurement.
fn prepare(manifest_text: &str, module: &[u8]) -> Result<(Manifest, [u8; 32], Workload)> {
    let manifest = Manifest::parse(manifest_text)?;
    let room_id = room_id(manifest_text);
    let workload = Workload::new(module, manifest.code.launch.clone())?;
    let measurement = hex::encode(workload.measurement());
    if measurement != manifest.code.measurement {
        return Err(refused(format!(
            "the module's measurement {measurement} differs from the manifest's {}",
            manifest.code.measurement
        )));
    }
    Ok((manifest, room_id, workload))
}

fn named(path: &Path, why: impl std::fmt::Display) -> TeeError {
    store::storage(format!("{}: {why}", path.display()))
}

fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|_| TeeError::Internal("state record is not JSON"))
}

impl RoomServer {
    /// Launches the room described by `manifest_text` with `module` (binary or text
    /// WebAssembly) on `platform`. The module must have the manifest's measurement. The audit
    /// log goes to `audit_path`, which must not exist yet (a room's log starts at its launch
    /// and is signed by a key that lives only as long as the launch); `None` keeps it in
    /// memory. Uploads and outputs live in memory only: a restart loses them. Use
    /// [`RoomServer::open`] for a room that survives restarts.
    pub fn launch(
        manifest_text: &str,
        module: &[u8],
        platform: SimulatedPlatform,
        security_version: u16,
        audit_path: Option<&Path>,
    ) -> Result<Self> {
        let (manifest, room_id, workload) = prepare(manifest_text, module)?;
        let audit_signer = SigningKey::from_bytes(&Zeroizing::new(random::<32>()?));
        let audit_public = audit_signer.verifying_key().to_bytes();
        let audit = match audit_path {
            Some(p) if p.exists() => {
                return Err(TeeError::Audit(format!(
                    "{} exists: a room's audit log starts at its launch (choose a new file, \
                     or keep the room's state in a directory that survives restarts)",
                    p.display()
                )))
            }
            Some(p) => AuditLog::open(p)?,
            None => AuditLog::in_memory(),
        }
        .with_signer(audit_signer.clone());
        let launched = LaunchedWorkload::launch(
            workload,
            &platform,
            security_version,
            b"launch",
            &runtime_data(&room_id, &audit_public),
        );
        let room = Self {
            manifest,
            manifest_text: manifest_text.to_string(),
            room_id,
            platform,
            launched,
            audit_signer,
            audit,
            state: Mutex::new(RoomState::default()),
            clock: system_clock(),
            store: None,
            resumed: false,
        };
        room.log_created()?;
        Ok(room)
    }

    /// Launches the room keeping its state in `state_dir`, or resumes the room whose state
    /// `state_dir` holds, so that a restart (a crash, `kill -9`, a reboot) loses nothing the
    /// room acknowledged.
    ///
    /// The directory holds the room's audit and HPKE keys sealed to the workload's
    /// measurement on `platform`, the signed audit log (synced after every entry) and the
    /// room's signed head of it, every accepted upload sealed to the measurement, and the
    /// run's outputs. Each is on disk before the receipt or answer it backs is returned.
    ///
    /// Resuming unseals the keys (refused for another manifest, measurement or platform),
    /// verifies the log (chain, every entry signed by the room's key, not shorter than the
    /// room's last signed head), checks every upload and the outputs against the entries
    /// that record them, and logs `resumed`. A file that is tampered with, swapped, missing
    /// while the log records it, or a log that is cut, stops the room with an error naming
    /// the file: it never starts without a party's data. Temporary files a crash left
    /// half-written are removed; an upload written but never logged (so never acknowledged)
    /// is discarded and logged as `upload_discarded`; outputs computed but not yet logged
    /// are kept and their `run` entry written.
    ///
    /// Not detected: the whole directory replaced by an older copy of itself (rollback needs
    /// a monotonic counter the platform keeps).
    pub fn open(
        manifest_text: &str,
        module: &[u8],
        platform: SimulatedPlatform,
        security_version: u16,
        state_dir: &Path,
    ) -> Result<Self> {
        let (manifest, room_id, workload) = prepare(manifest_text, module)?;
        let store = store::Store::open(state_dir)?;
        if store.path(store::META).exists() {
            return Self::resume(
                manifest,
                manifest_text,
                workload,
                platform,
                security_version,
                store,
            );
        }
        // A fresh room. A crash while one was being created leaves at most the log's first
        // entry and its head (room.json is written last, and the room served nothing before
        // it): start over. Anything else without room.json is not ours to overwrite.
        let names = store.names()?;
        let log_path = store.path(store::AUDIT);
        let creation_only = names.iter().all(|n| n == store::AUDIT || n == store::HEAD)
            && (!log_path.exists()
                || std::fs::read(&log_path)
                    .map(|t| t.iter().filter(|b| **b == b'\n').count() <= 1)
                    .unwrap_or(false));
        if !creation_only {
            return Err(store::storage(format!(
                "{} holds {} but no {}: not this room's state, or its {} was removed; \
                 refusing to start a new room over it (use an empty directory)",
                store.dir().display(),
                names.join(", "),
                store::META,
                store::META
            )));
        }
        for name in [store::AUDIT, store::HEAD] {
            let path = store.path(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| named(&path, e))?;
            }
        }
        let audit_signer = SigningKey::from_bytes(&Zeroizing::new(random::<32>()?));
        let audit_public = audit_signer.verifying_key().to_bytes();
        let key = WorkloadKeyPair::generate();
        let keys = store::SealedKeys {
            room_id: hex::encode(room_id),
            audit_secret: hex::encode(Zeroizing::new(audit_signer.to_bytes()).as_ref()),
            workload_secret: hex::encode(key.private_bytes().as_slice()),
        };
        let workload_key = key.public_bytes();
        let launched = LaunchedWorkload::launch_with_key(
            workload,
            key,
            &platform,
            security_version,
            b"launch",
            &runtime_data(&room_id, &audit_public),
        );
        let meta = store::RoomMeta {
            version: store::STATE_VERSION,
            room_id: hex::encode(room_id),
            manifest_sha256: hex::encode(Sha256::digest(manifest_text.as_bytes())),
            measurement: manifest.code.measurement.clone(),
            platform_key: hex::encode(platform.public_key()),
            audit_key: hex::encode(audit_public),
            workload_key: hex::encode(workload_key),
            sealed_keys: hex::encode(launched.seal(&to_json(&keys)?)?),
        };
        drop(keys);
        let audit = AuditLog::open(&log_path)?
            .durable()
            .with_signer(audit_signer.clone());
        store.sync()?;
        let room = Self {
            manifest,
            manifest_text: manifest_text.to_string(),
            room_id,
            platform,
            launched,
            audit_signer,
            audit,
            state: Mutex::new(RoomState::default()),
            clock: system_clock(),
            store: Some(store),
            resumed: false,
        };
        room.log_created()?;
        if let Some(store) = &room.store {
            store.write(store::META, &to_json(&meta)?)?;
        }
        Ok(room)
    }

    fn resume(
        manifest: Manifest,
        manifest_text: &str,
        workload: Workload,
        platform: SimulatedPlatform,
        security_version: u16,
        store: store::Store,
    ) -> Result<Self> {
        let room_id = room_id(manifest_text);
        let ours = hex::encode(room_id);
        let meta_path = store.path(store::META);
        let meta: store::RoomMeta = serde_json::from_slice(&store::Store::read(&meta_path)?)
            .map_err(|e| named(&meta_path, format!("not a room's state file ({e})")))?;
        if meta.version != store::STATE_VERSION {
            return Err(named(
                &meta_path,
                format!(
                    "state format {} (this build reads {})",
                    meta.version,
                    store::STATE_VERSION
                ),
            ));
        }
        if meta.room_id != ours {
            return Err(named(
                &meta_path,
                format!(
                    "this is the state of room {}, not of this manifest's room {}: give the \
                     manifest the room was launched with, or another state directory",
                    short(&meta.room_id),
                    short(&ours)
                ),
            ));
        }
        let measurement = hex::encode(workload.measurement());
        if meta.measurement != measurement {
            return Err(named(
                &meta_path,
                format!(
                    "written by code measured {}, not {measurement}: sealed state opens only \
                     for the code that sealed it",
                    meta.measurement
                ),
            ));
        }
        let platform_key = hex::encode(platform.public_key());
        if meta.platform_key != platform_key {
            return Err(named(
                &meta_path,
                format!(
                    "sealed on platform {}, not on this platform {platform_key}: sealed state \
                     opens only on the platform that sealed it",
                    meta.platform_key
                ),
            ));
        }
        let sealed_keys = hex::decode(&meta.sealed_keys)
            .map_err(|_| named(&meta_path, "sealed_keys is not hex"))?;
        let keys_json = workload.unseal_on(&platform, &sealed_keys).map_err(|_| {
            named(
                &meta_path,
                "the room's keys do not unseal: sealed by another measurement or platform, or \
                 tampered with",
            )
        })?;
        let keys: store::SealedKeys = serde_json::from_slice(&keys_json)
            .map_err(|_| named(&meta_path, "the sealed keys are malformed"))?;
        drop(keys_json);
        if keys.room_id != ours {
            return Err(named(&meta_path, "the sealed keys belong to another room"));
        }
        let audit_seed = Zeroizing::new(
            hex_key::<32>("audit_secret", &keys.audit_secret)
                .map_err(|_| named(&meta_path, "the sealed audit key is malformed"))?,
        );
        let audit_signer = SigningKey::from_bytes(&audit_seed);
        let workload_secret = Zeroizing::new(
            hex::decode(&keys.workload_secret)
                .map_err(|_| named(&meta_path, "the sealed workload key is malformed"))?,
        );
        let key = WorkloadKeyPair::from_private_bytes(&workload_secret)
            .map_err(|_| named(&meta_path, "the sealed workload key is malformed"))?;
        drop(keys);
        let audit_public = audit_signer.verifying_key();
        if hex::encode(audit_public.to_bytes()) != meta.audit_key
            || hex::encode(key.public_bytes()) != meta.workload_key
        {
            return Err(named(
                &meta_path,
                "the sealed keys are not the room's public keys it names",
            ));
        }

        // The log: complete lines, one chain, every entry signed by this room's key, this
        // room's creation first, and nothing the room's last signed head vouches for missing.
        let log_path = store.path(store::AUDIT);
        if !log_path.exists() {
            return Err(named(
                &log_path,
                "missing: a room does not resume without its audit log",
            ));
        }
        let cut_partial = store::cut_partial_line(&log_path)?;
        let text = String::from_utf8(store::Store::read(&log_path)?)
            .map_err(|_| named(&log_path, "not text"))?;
        let entries =
            verify_entries(&text, Some(&audit_public)).map_err(|e| named(&log_path, e))?;
        let created = entries.first().is_some_and(|e| {
            e.event == "room_created"
                && e.details["room_id"] == ours.as_str()
                && e.details["audit_key"] == meta.audit_key.as_str()
        });
        if !created {
            return Err(named(
                &log_path,
                "does not begin with this room's creation by its audit key",
            ));
        }
        let head_path = store.path(store::HEAD);
        let head: SignedHead = serde_json::from_slice(&store::Store::read(&head_path)?)
            .map_err(|e| named(&head_path, format!("not a signed head ({e})")))?;
        head.verify(Some(&audit_public))
            .map_err(|e| named(&head_path, e))?;
        verify_against_head(&text, &head, Some(&audit_public)).map_err(|e| {
            named(
                &log_path,
                format!(
                    "{e} (the room's last signed head is {})",
                    head_path.display()
                ),
            )
        })?;
        let audit = AuditLog::open(&log_path)?
            .durable()
            .with_signer(audit_signer.clone());
        let launched = LaunchedWorkload::launch_with_key(
            workload,
            key,
            &platform,
            security_version,
            b"launch",
            &runtime_data(&room_id, &audit_public.to_bytes()),
        );

        // The uploads and the run the log records.
        let mut logged: BTreeMap<String, (String, u64)> = BTreeMap::new();
        let mut run_entry = None;
        for e in &entries {
            match e.event.as_str() {
                "upload" => {
                    let party = e.details["party"].as_str().unwrap_or_default();
                    let sha = e.details["data_sha256"].as_str().unwrap_or_default();
                    logged.insert(party.to_string(), (sha.to_string(), e.seq));
                }
                "run" => run_entry = Some(e),
                _ => {}
            }
        }
        let mut uploads = BTreeMap::new();
        let mut unlogged = Vec::new();
        for name in store.upload_files()? {
            let path = store.dir().join(store::UPLOADS).join(&name);
            let party = name
                .strip_suffix(".sealed")
                .filter(|p| manifest.party(p).is_ok())
                .ok_or_else(|| {
                    named(
                        &path,
                        "not a file this room writes (uploads are PARTY.sealed, for the \
                         manifest's parties)",
                    )
                })?;
            let sealed = store::Store::read(&path)?;
            let record = launched.unseal(&sealed).map_err(|_| {
                named(
                    &path,
                    "does not unseal: tampered with, or sealed by another measurement or \
                     platform",
                )
            })?;
            let (meta_u, salted) = store::parse_upload_record(&record)
                .ok_or_else(|| named(&path, "not an upload record"))?;
            if meta_u.room_id != ours || meta_u.party != party {
                return Err(named(
                    &path,
                    format!(
                        "holds {}'s upload to room {}, not {party}'s to this room: files were \
                         swapped",
                        meta_u.party,
                        short(&meta_u.room_id)
                    ),
                ));
            }
            if hex::encode(Sha256::digest(salted)) != meta_u.data_sha256 {
                return Err(named(&path, "the data does not match its recorded hash"));
            }
            match logged.get(party) {
                Some((sha, _)) if *sha == meta_u.data_sha256 => {
                    uploads.insert(
                        party.to_string(),
                        StoredUpload {
                            label: meta_u.label,
                            data_sha256: meta_u.data_sha256,
                            sealed,
                        },
                    );
                }
                Some((_, seq)) => {
                    return Err(named(
                        &path,
                        format!(
                            "does not match {party}'s upload that the audit log records \
                             (entry {seq})"
                        ),
                    ))
                }
                // Written, then a crash before its log entry: never acknowledged.
                None => unlogged.push((party.to_string(), meta_u.data_sha256, path)),
            }
        }
        for (party, (_, seq)) in &logged {
            if !uploads.contains_key(party) {
                return Err(named(
                    &store.upload_path(party),
                    format!(
                        "missing, but the audit log records {party}'s upload (entry {seq}): \
                         refusing to start without a party's data"
                    ),
                ));
            }
        }
        let out_path = store.path(store::OUTPUTS);
        let mut outputs = None;
        let mut recovered_run = None;
        if out_path.exists() {
            let record = launched
                .unseal(&store::Store::read(&out_path)?)
                .map_err(|_| {
                    named(
                        &out_path,
                        "does not unseal: tampered with, or sealed by another measurement or \
                         platform",
                    )
                })?;
            let record: store::OutputRecord = serde_json::from_slice(&record)
                .map_err(|_| named(&out_path, "not an output record"))?;
            if record.room_id != ours {
                return Err(named(&out_path, "holds another room's outputs"));
            }
            match run_entry {
                Some(e) if e.details["output_sha256"] == record.output_sha256.as_str() => {}
                Some(e) => {
                    return Err(named(
                        &out_path,
                        format!(
                            "does not match the run the audit log records (entry {})",
                            e.seq
                        ),
                    ))
                }
                None => recovered_run = Some(record.run.clone()),
            }
            outputs = Some((record.outputs, record.output_sha256));
        } else if let Some(e) = run_entry {
            return Err(named(
                &out_path,
                format!(
                    "missing, but the audit log records a run (entry {}): refusing to start \
                     without the outputs the parties were told about",
                    e.seq
                ),
            ));
        }
        let ran = outputs.is_some();
        let resumed_uploads: Vec<String> = uploads.keys().cloned().collect();
        let room = Self {
            manifest,
            manifest_text: manifest_text.to_string(),
            room_id,
            platform,
            launched,
            audit_signer,
            audit,
            state: Mutex::new(RoomState { uploads, outputs }),
            clock: system_clock(),
            store: Some(store),
            resumed: true,
        };
        for (party, data_sha256, path) in unlogged {
            room.log(
                "upload_discarded",
                json!({
                    "party": party,
                    "data_sha256": data_sha256,
                    "reason": "written before a crash but never logged, so never acknowledged: \
                               the party got no receipt and uploads again",
                }),
            )?;
            std::fs::remove_file(&path).map_err(|e| named(&path, e))?;
        }
        if let Some(store) = &room.store {
            store.sync()?;
        }
        if let Some(mut run) = recovered_run {
            if let Some(details) = run.as_object_mut() {
                details.insert("recovered_at_resume".into(), json!(true));
            }
            room.log("run", run)?;
        }
        room.log(
            "resumed",
            json!({
                "room_id": ours,
                "uploads": resumed_uploads,
                "ran": ran,
                "entries_before": entries.len(),
                "cut_partial_entry": cut_partial,
                "platform_key": platform_key,
                "audit_key": meta.audit_key,
                "workload_key": meta.workload_key,
            }),
        )?;
        Ok(room)
    }

    fn log_created(&self) -> Result<()> {
        self.log(
            "room_created",
            json!({
                "room_id": hex::encode(self.room_id),
                "name": self.manifest.room.name,
                "manifest_sha256": hex::encode(Sha256::digest(self.manifest_text.as_bytes())),
                "measurement": self.manifest.code.measurement,
                "parties": self.manifest.parties.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "output_to": self.manifest.room.output_to,
                "platform_key": hex::encode(self.platform.public_key()),
                "audit_key": hex::encode(self.audit_key()),
                "workload_key": hex::encode(self.launched.public_key()),
                "state": if self.store.is_some() { "directory" } else { "memory" },
            }),
        )
    }

    /// Appends an entry to the log and, with a state directory, writes the room's signed head
    /// of it (so a log cut later is detected on resume). Callers hold the state lock, so heads
    /// are written in order. A decision must not be acted on if this fails.
    fn log(&self, event: &str, details: serde_json::Value) -> Result<()> {
        let now = (self.clock)();
        self.audit.append(now, event, details)?;
        if let Some(store) = &self.store {
            let head = self.audit.signed_head(now)?;
            store.write(store::HEAD, &to_json(&head)?)?;
        }
        Ok(())
    }

    /// Whether [`RoomServer::open`] resumed a room from its state directory (rather than
    /// launching a new one).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Whether the room keeps its state in a directory ([`RoomServer::open`]).
    pub fn state_dir(&self) -> Option<&Path> {
        self.store.as_ref().map(store::Store::dir)
    }

    /// Uses `clock` for request times and log entries.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The room id.
    pub fn room_id(&self) -> [u8; 32] {
        self.room_id
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The audit log.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// The audit key (Ed25519 public key).
    pub fn audit_key(&self) -> [u8; 32] {
        self.audit_signer.verifying_key().to_bytes()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, RoomState>> {
        self.state
            .lock()
            .map_err(|_| TeeError::Internal("room state poisoned"))
    }

    /// `GET /room`.
    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            room_id: hex::encode(self.room_id),
            manifest: self.manifest_text.clone(),
        }
    }

    /// Evidence for a verifier's nonce.
    pub fn attest(&self, req: &NonceRequest) -> Result<RoomEvidence> {
        let nonce = decode_nonce(&req.nonce)?;
        let evidence = self.launched.attest(
            &self.platform,
            &nonce,
            &runtime_data(&self.room_id, &self.audit_key()),
        );
        let _guard = self.lock()?;
        self.log(
            "attestation",
            json!({ "nonce_sha256": hex::encode(Sha256::digest(&nonce)) }),
        )?;
        Ok(RoomEvidence {
            evidence: encode_b64(&evidence),
            workload_key: encode_b64(&self.launched.public_key()),
            audit_key: encode_b64(&self.audit_key()),
        })
    }

    /// Accepts an upload (`header length (u32 BE) ‖ header JSON ‖ ciphertext`).
    pub fn upload(&self, body: &[u8]) -> Result<Receipt> {
        let (header, ciphertext) = split_upload(body)?;
        let ours = hex::encode(self.room_id);
        if header.room_id != ours {
            return Err(refused(format!(
                "the upload is for room {}, not this room {ours}: replayed into another room",
                short(&header.room_id)
            )));
        }
        let party = self.manifest.party(&header.party)?;
        check_sig(
            &verifying_key("signing_key", &party.signing_key)?,
            &header.message(),
            &header.signature,
            &format!("upload by {}", header.party),
        )?;
        if hex::encode(Sha256::digest(ciphertext)) != header.ciphertext_sha256 {
            return Err(refused("the ciphertext does not match the signed header"));
        }
        if header.wrapped_key.name != upload_label(&self.room_id, &header.party, &header.label) {
            return Err(refused(
                "the upload's key is labelled for another room or party",
            ));
        }
        let nonce: [u8; 12] = hex::decode(&header.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| bad("upload nonce must be 12 bytes of hex"))?;
        {
            let state = self.lock()?;
            if state.outputs.is_some() {
                return Err(TeeError::RoomState("the room already ran".into()));
            }
            if state.uploads.contains_key(&header.party) {
                return Err(TeeError::RoomState(format!(
                    "{} already uploaded (one dataset per party)",
                    header.party
                )));
            }
        }
        let plain = self.launched.open_upload(&SealedUpload {
            wrapped_key: header.wrapped_key.clone(),
            nonce,
            ciphertext: ciphertext.to_vec(),
        })?;
        let data_sha256 = hex::encode(Sha256::digest(plain.as_slice()));
        if data_sha256 != header.data_sha256 {
            return Err(refused("the decrypted data does not match the signed hash"));
        }
        if plain.len() < SALT_LEN {
            return Err(refused("the upload is shorter than its salt"));
        }
        let record = store::upload_record(
            &store::UploadMeta {
                room_id: ours.clone(),
                party: header.party.clone(),
                label: header.label.clone(),
                data_sha256: data_sha256.clone(),
            },
            &plain,
        )?;
        drop(plain);
        let sealed = self.launched.seal(&record)?;
        drop(record);
        let mut state = self.lock()?;
        if state.outputs.is_some() || state.uploads.contains_key(&header.party) {
            return Err(TeeError::RoomState(format!(
                "{} already uploaded, or the room already ran",
                header.party
            )));
        }
        // On disk before the log entry and the receipt: an acknowledged upload survives a
        // crash (a file without its entry was never acknowledged; see `open`).
        if let Some(store) = &self.store {
            store.write_upload(&header.party, &sealed)?;
        }
        self.log(
            "upload",
            json!({
                "party": header.party,
                "label": header.label,
                "data_sha256": data_sha256,
                "bytes": ciphertext.len().saturating_sub(16),
            }),
        )?;
        state.uploads.insert(
            header.party.clone(),
            StoredUpload {
                label: header.label.clone(),
                data_sha256: data_sha256.clone(),
                sealed,
            },
        );
        let mut receipt = Receipt {
            room_id: ours,
            party: header.party,
            label: header.label,
            data_sha256,
            signature: String::new(),
        };
        receipt.signature = hex::encode(self.audit_signer.sign(&receipt.message()).to_bytes());
        Ok(receipt)
    }

    fn check_request(&self, req: &SignedRequest, action: &str) -> Result<()> {
        if req.action != action {
            return Err(bad(format!(
                "expected a {action} request, got {}",
                req.action
            )));
        }
        if req.room_id != hex::encode(self.room_id) {
            return Err(refused(format!(
                "the request is for room {}, not this one",
                short(&req.room_id)
            )));
        }
        let party = self.manifest.party(&req.party)?;
        let now = (self.clock)();
        if req.time.abs_diff(now) > REQUEST_WINDOW {
            return Err(refused(format!(
                "request time {} is more than {REQUEST_WINDOW} s from the room's clock {now}",
                req.time
            )));
        }
        check_sig(
            &verifying_key("signing_key", &party.signing_key)?,
            &req.message(),
            &req.signature,
            &format!("{action} request by {}", req.party),
        )
    }

    /// Runs the workload on every party's upload, in manifest order; seals the output to each
    /// recipient.
    pub fn run(&self, req: &SignedRequest) -> Result<RunSummary> {
        self.check_request(req, "run")?;
        let mut state = self.lock()?;
        if state.outputs.is_some() {
            return Err(TeeError::RoomState(
                "the room already ran: fetch the output".into(),
            ));
        }
        let missing: Vec<&str> = self
            .manifest
            .parties
            .iter()
            .filter(|p| !state.uploads.contains_key(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(TeeError::RoomState(format!(
                "waiting for uploads from {}",
                missing.join(", ")
            )));
        }
        let mut inputs = Vec::with_capacity(self.manifest.parties.len());
        let mut described = Vec::new();
        for p in &self.manifest.parties {
            let u = &state.uploads[&p.name];
            let record = self.launched.unseal(&u.sealed)?;
            let data = store::parse_upload_record(&record)
                .and_then(|(_, salted)| salted.get(SALT_LEN..))
                .ok_or(TeeError::Internal(
                    "a stored upload is not an upload record",
                ))?;
            inputs.push(Zeroizing::new(data.to_vec()));
            described
                .push(json!({"party": p.name, "label": u.label, "data_sha256": u.data_sha256}));
        }
        let out = match self.launched.workload().run(inputs) {
            Ok(out) => out,
            Err(e) => {
                self.log(
                    "run_failed",
                    json!({ "requested_by": req.party, "reason": e.to_string() }),
                )?;
                return Err(e);
            }
        };
        let output_sha256 = hex::encode(Sha256::digest(out.output.as_slice()));
        let mut sealed = BTreeMap::new();
        for r in &self.manifest.room.output_to {
            let party = self.manifest.party(r)?;
            let key = hex_key::<32>("encryption_key", &party.encryption_key)?;
            sealed.insert(
                r.clone(),
                seal_to(&key, &output_label(&self.room_id, r), &out.output)?,
            );
        }
        let details = json!({
            "requested_by": req.party,
            "inputs": described,
            "output_sha256": output_sha256,
            "fuel_used": out.fuel_used,
        });
        // On disk before the log entry and the answer: outputs computed before a crash are
        // served after it, unchanged, and the run is not redone.
        if let Some(store) = &self.store {
            let record = store::OutputRecord {
                room_id: hex::encode(self.room_id),
                output_sha256: output_sha256.clone(),
                outputs: sealed.clone(),
                run: details.clone(),
            };
            store.write(store::OUTPUTS, &self.launched.seal(&to_json(&record)?)?)?;
        }
        self.log("run", details)?;
        state.outputs = Some((sealed, output_sha256.clone()));
        Ok(RunSummary {
            output_sha256,
            output_bytes: out.output.len(),
            fuel_used: out.fuel_used,
            output_to: self.manifest.room.output_to.clone(),
        })
    }

    /// The output sealed to the requesting party, if it is a recipient.
    pub fn output(&self, req: &SignedRequest) -> Result<OutputResponse> {
        self.check_request(req, "fetch-output")?;
        let state = self.lock()?;
        let Some((outputs, digest)) = &state.outputs else {
            return Err(TeeError::RoomState("the room has not run yet".into()));
        };
        let Some(sealed) = outputs.get(&req.party) else {
            self.log(
                "output_refused",
                json!({ "party": req.party, "reason": "not a recipient" }),
            )?;
            return Err(refused(format!(
                "{} is not a recipient of this room's output (output_to: {})",
                req.party,
                self.manifest.room.output_to.join(", ")
            )));
        };
        self.log(
            "output_released",
            json!({ "party": req.party, "output_sha256": digest }),
        )?;
        let message = output_message(&req.room_id, &req.party, sealed);
        Ok(OutputResponse {
            sealed: sealed.clone(),
            signature: hex::encode(self.audit_signer.sign(&message).to_bytes()),
        })
    }

    /// The log's text and the signed head for a reader's nonce.
    pub fn audit_report(&self, req: &NonceRequest) -> Result<AuditReport> {
        let nonce = decode_nonce(&req.nonce)?;
        let _guard = self.lock()?;
        let (entries, last_hash) = self.audit.head();
        let log = self.audit.text()?;
        let signature = hex::encode(
            self.audit_signer
                .sign(&audit_head_message(&nonce, entries, &last_hash))
                .to_bytes(),
        );
        Ok(AuditReport {
            log,
            entries,
            last_hash,
            signature,
        })
    }
}

fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

fn decode_nonce(text: &str) -> Result<Vec<u8>> {
    let nonce = decode_b64("nonce", text)?;
    if !(16..=64).contains(&nonce.len()) {
        return Err(bad("the nonce must be 16 to 64 bytes"));
    }
    Ok(nonce)
}

fn split_upload(body: &[u8]) -> Result<(UploadHeader, &[u8])> {
    let (len, rest) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("upload shorter than its header length"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > MAX_HEADER || len > rest.len() {
        return Err(bad("upload header length out of range"));
    }
    let (header, ciphertext) = rest.split_at(len);
    let header: UploadHeader =
        serde_json::from_slice(header).map_err(|e| bad(format!("upload header: {e}")))?;
    Ok((header, ciphertext))
}

/// The room's HTTP routes.
pub fn router(room: Arc<RoomServer>) -> Router {
    Router::new()
        .route(
            "/room",
            get(|State(r): State<Arc<RoomServer>>| async move { Json(r.info()) }),
        )
        .route("/attest", post(attest_route))
        .route(
            "/upload",
            post(upload_route).layer(DefaultBodyLimit::max(MAX_UPLOAD + MAX_HEADER + 64)),
        )
        .route("/run", post(run_route))
        .route("/output", post(output_route))
        .route("/audit", post(audit_route))
        .route("/health", get(|| async { "ok" }))
        .with_state(room)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::result::Result<Json<T>, HttpError> {
    let out = tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| TeeError::Internal("room task failed"))??;
    Ok(Json(out))
}

fn json_body<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| bad(format!("{what}: {e}")))
}

async fn attest_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<RoomEvidence>, HttpError> {
    let req: NonceRequest = json_body("attest request", &body)?;
    blocking(move || r.attest(&req)).await
}

async fn upload_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<Receipt>, HttpError> {
    blocking(move || r.upload(&body)).await
}

async fn run_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<RunSummary>, HttpError> {
    let req: SignedRequest = json_body("run request", &body)?;
    blocking(move || r.run(&req)).await
}

async fn output_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<OutputResponse>, HttpError> {
    let req: SignedRequest = json_body("output request", &body)?;
    blocking(move || r.output(&req)).await
}

async fn audit_route(
    State(r): State<Arc<RoomServer>>,
    body: axum::body::Bytes,
) -> std::result::Result<Json<AuditReport>, HttpError> {
    let req: NonceRequest = json_body("audit request", &body)?;
    blocking(move || r.audit_report(&req)).await
}

/// What a party established about the room.
#[derive(Debug)]
pub struct VerifiedRoom {
    /// The room id.
    pub room_id: [u8; 32],
    /// The attested workload key (X25519) uploads are sealed to.
    pub workload_key: Vec<u8>,
    /// The attested audit key.
    pub audit_key: VerifyingKey,
    /// The verified claims.
    pub claims: VerifiedClaims,
}

/// Checks a room's evidence against a party's manifest: trusted platform, the manifest's
/// measurement, the policy, and the binding of `nonce`, the workload key, the room id and the
/// audit key. Anything else is refused.
pub fn verify_room_evidence(
    manifest: &Manifest,
    room_id: &[u8; 32],
    nonce: &[u8],
    evidence: &RoomEvidence,
    now: u64,
) -> Result<VerifiedRoom> {
    let raw = decode_b64("evidence", &evidence.evidence)?;
    let workload_key = decode_b64("workload_key", &evidence.workload_key)?;
    let audit_key: [u8; 32] = decode_b64("audit_key", &evidence.audit_key)?
        .try_into()
        .map_err(|_| bad("audit_key must be 32 bytes"))?;
    let claims = manifest.verifiers()?.verify(&raw, now)?;
    let measured = claims
        .measurements
        .get("measurement")
        .map_or("(none)", String::as_str);
    if measured != manifest.code.measurement {
        return Err(refused(format!(
            "the room runs code measured {measured}, but your manifest names {}: no data path",
            manifest.code.measurement
        )));
    }
    check_binding(
        &claims,
        nonce,
        &workload_key,
        &runtime_data(room_id, &audit_key),
    )?;
    let input =
        serde_json::to_value(&claims).map_err(|_| TeeError::Internal("claims are not JSON"))?;
    manifest.attestation_policy()?.evaluate(&input)?;
    Ok(VerifiedRoom {
        room_id: *room_id,
        workload_key,
        audit_key: VerifyingKey::from_bytes(&audit_key)
            .map_err(|_| refused("the audit key is not an Ed25519 key"))?,
        claims,
    })
}

/// Encodes a party's CSV table as the workload's input. `column` picks the column of a
/// [`InputFormat::F64Column`] table (by header name); without it the table must have one
/// column.
pub fn encode_csv(format: InputFormat, text: &str, column: Option<&str>) -> Result<Vec<u8>> {
    if format == InputFormat::Raw {
        return Ok(text.as_bytes().to_vec());
    }
    let mut lines = text
        .lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty());
    let Some((_, first)) = lines.next() else {
        return Err(bad("the CSV has no rows"));
    };
    let cells = |l: &str| {
        l.split(',')
            .map(str::trim)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let first_cells = cells(first);
    let is_header = first_cells.iter().any(|c| c.parse::<f64>().is_err());
    let width = first_cells.len();
    let pick = match (format, column) {
        (InputFormat::F64Column, Some(name)) => {
            if !is_header {
                return Err(bad(format!("--column {name}: the CSV has no header row")));
            }
            Some(
                first_cells
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| bad(format!("the CSV has no column {name:?}")))?,
            )
        }
        (InputFormat::F64Column, None) if width == 1 => Some(0),
        (InputFormat::F64Column, None) => {
            return Err(bad(format!(
                "the CSV has {width} columns: name the one to upload (--column)"
            )))
        }
        _ => None,
    };
    if format == InputFormat::F64LabelledRows && width < 2 {
        return Err(bad("labelled rows need at least one feature and a label"));
    }
    let mut out = Vec::new();
    if format == InputFormat::F64LabelledRows {
        out.extend_from_slice(&((width - 1) as f64).to_le_bytes());
    }
    let rows = std::iter::once((0, first))
        .filter(|_| !is_header)
        .chain(lines);
    for (i, line) in rows {
        let row = cells(line);
        if row.len() != width {
            return Err(bad(format!(
                "line {}: {} cells where {width} were expected",
                i + 1,
                row.len()
            )));
        }
        let parse = |c: &str| {
            c.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("line {}: {c:?} is not a finite number", i + 1)))
        };
        match pick {
            Some(j) => out.extend_from_slice(&parse(&row[j])?.to_le_bytes()),
            None => {
                for c in &row {
                    out.extend_from_slice(&parse(c)?.to_le_bytes());
                }
            }
        }
    }
    Ok(out)
}

/// The output as labelled f64 values (`value[i]` where the manifest names none), or `None`
/// when it is not a whole number of f64s.
pub fn decode_output(manifest: &Manifest, output: &[u8]) -> Option<Vec<(String, f64)>> {
    if output.is_empty() || !output.len().is_multiple_of(8) {
        return None;
    }
    Some(
        output
            .chunks_exact(8)
            .enumerate()
            .map(|(i, c)| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                let label = manifest
                    .code
                    .output_labels
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("value[{i}]"));
                (label, f64::from_le_bytes(b))
            })
            .collect(),
    )
}

/// A party's client for a room served over HTTP.
#[derive(Clone)]
pub struct RoomClient {
    url: String,
    http: reqwest::Client,
    manifest: Manifest,
    room_id: [u8; 32],
    clock: Clock,
}

impl std::fmt::Debug for RoomClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomClient")
            .field("url", &self.url)
            .field("room_id", &hex::encode(self.room_id))
            .finish_non_exhaustive()
    }
}

impl RoomClient {
    /// A client for the room at `url` described by `manifest_text` (the party's own copy).
    pub fn new(url: &str, manifest_text: &str) -> Result<Self> {
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            http: crate::client::http_client()?,
            manifest: Manifest::parse(manifest_text)?,
            room_id: room_id(manifest_text),
            clock: system_clock(),
        })
    }

    /// Uses `client` for HTTP (e.g. with a longer timeout for large uploads).
    #[must_use]
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// The room id of the party's manifest.
    pub fn room_id(&self) -> [u8; 32] {
        self.room_id
    }

    /// The party's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    async fn post<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let url = format!("{}{path}", self.url);
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| crate::client::net(&url, e))?;
        crate::client::read(&url, resp).await
    }

    /// Checks that the room serves this manifest and that its fresh evidence satisfies it.
    pub async fn verify(&self) -> Result<VerifiedRoom> {
        let url = format!("{}/room", self.url);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| crate::client::net(&url, e))?;
        let info: RoomInfo = crate::client::read(&url, resp).await?;
        if info.room_id != hex::encode(self.room_id) {
            return Err(refused(format!(
                "the room at {} serves room {}, but your manifest is room {}: no data path",
                self.url,
                short(&info.room_id),
                short(&hex::encode(self.room_id))
            )));
        }
        let nonce = random::<32>()?;
        let evidence: RoomEvidence = self
            .post(
                "/attest",
                &NonceRequest {
                    nonce: encode_b64(&nonce),
                },
            )
            .await?;
        verify_room_evidence(
            &self.manifest,
            &self.room_id,
            &nonce,
            &evidence,
            (self.clock)(),
        )
    }

    /// Verifies the room, then uploads `data` sealed to its attested key and signed by `party`.
    /// Returns the room's signed receipt (checked).
    pub async fn upload(&self, party: &PartyKey, label: &str, data: &[u8]) -> Result<Receipt> {
        self.manifest.party(party.name())?;
        if party.public() != *self.manifest.party(party.name())? {
            return Err(refused(format!(
                "this key is not {}'s key in the manifest",
                party.name()
            )));
        }
        if data.len() > MAX_UPLOAD {
            return Err(bad(format!("uploads are limited to {MAX_UPLOAD} bytes")));
        }
        let room = self.verify().await?;
        let (header, body) = self.prepare_upload(&room, party, label, data)?;
        let url = format!("{}/upload", self.url);
        let resp = self
            .http
            .post(&url)
            .body(body)
            .send()
            .await
            .map_err(|e| crate::client::net(&url, e))?;
        let receipt: Receipt = crate::client::read(&url, resp).await?;
        check_sig(
            &room.audit_key,
            &receipt.message(),
            &receipt.signature,
            "the room's receipt",
        )?;
        if receipt.data_sha256 != header.data_sha256 || receipt.party != header.party {
            return Err(refused("the receipt is for other data"));
        }
        Ok(receipt)
    }

    /// The body of an upload of `data` by `party` to a verified room: the data sealed to the
    /// attested workload key (envelope: HPKE-wrapped AES-256-GCM key), and a header signed by
    /// the party that names the room, the label and the data's SHA-256.
    pub fn prepare_upload(
        &self,
        room: &VerifiedRoom,
        party: &PartyKey,
        label: &str,
        data: &[u8],
    ) -> Result<(UploadHeader, Vec<u8>)> {
        // A random salt travels inside the ciphertext: the signed hash commits to salt ‖ data,
        // so whoever sees headers, receipts or the audit log cannot confirm a guess of
        // low-entropy data by hashing it.
        let mut salted = Zeroizing::new(Vec::with_capacity(SALT_LEN + data.len()));
        salted.resize(SALT_LEN, 0);
        rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut salted[..])
            .map_err(|_| TeeError::Crypto("no system randomness"))?;
        salted.extend_from_slice(data);
        let sealed = crate::workload::seal_upload(
            &room.workload_key,
            &upload_label(&room.room_id, party.name(), label),
            &salted,
        )?;
        let mut header = UploadHeader {
            room_id: hex::encode(room.room_id),
            party: party.name().into(),
            label: label.into(),
            data_sha256: hex::encode(Sha256::digest(salted.as_slice())),
            wrapped_key: sealed.wrapped_key,
            nonce: hex::encode(sealed.nonce),
            ciphertext_sha256: hex::encode(Sha256::digest(&sealed.ciphertext)),
            signature: String::new(),
        };
        header.signature = party.sign(&header.message());
        let body = upload_body(&header, &sealed.ciphertext)?;
        Ok((header, body))
    }

    /// Asks the room to run (after every party uploaded).
    pub async fn run(&self, party: &PartyKey) -> Result<RunSummary> {
        let req = SignedRequest::new(&self.room_id, party, "run", (self.clock)());
        self.post("/run", &req).await
    }

    /// Verifies the room, fetches the output sealed to `party` and opens it.
    pub async fn fetch_output(&self, party: &PartyKey) -> Result<Zeroizing<Vec<u8>>> {
        let room = self.verify().await?;
        let req = SignedRequest::new(&self.room_id, party, "fetch-output", (self.clock)());
        let resp: OutputResponse = self.post("/output", &req).await?;
        check_sig(
            &room.audit_key,
            &output_message(&req.room_id, party.name(), &resp.sealed),
            &resp.signature,
            "the room's output",
        )?;
        if resp.sealed.name != output_label(&self.room_id, party.name()) {
            return Err(refused("the output is labelled for another room or party"));
        }
        party.open(&resp.sealed)
    }

    /// Verifies the room, fetches its audit log with a fresh nonce and checks the chain, every
    /// entry's signature by the attested audit key, and the signed head (no truncation).
    pub async fn audit(&self) -> Result<Vec<AuditEntry>> {
        let room = self.verify().await?;
        let nonce = random::<32>()?;
        let report: AuditReport = self
            .post(
                "/audit",
                &NonceRequest {
                    nonce: encode_b64(&nonce),
                },
            )
            .await?;
        check_sig(
            &room.audit_key,
            &audit_head_message(&nonce, report.entries, &report.last_hash),
            &report.signature,
            "the audit log's head",
        )?;
        check_audit_text(
            &report.log,
            &room.audit_key,
            report.entries,
            &report.last_hash,
        )
    }
}

/// Verifies a room's audit log text: chain, signatures by `audit_key`, and that it ends at the
/// head the room signed (`entries`, `last_hash`) — nothing dropped from the end.
pub fn check_audit_text(
    log: &str,
    audit_key: &VerifyingKey,
    entries: u64,
    last_hash: &str,
) -> Result<Vec<AuditEntry>> {
    let list = verify_entries(log, Some(audit_key))?;
    if list.len() as u64 != entries || crate::audit::last_hash(log) != last_hash {
        return Err(TeeError::Audit(format!(
            "the log has {} entries but the room signed a head of {entries}: truncated or \
             replaced",
            list.len()
        )));
    }
    Ok(list)
}

fn upload_body(header: &UploadHeader, ciphertext: &[u8]) -> Result<Vec<u8>> {
    let header = serde_json::to_vec(header).map_err(|e| bad(e.to_string()))?;
    let len = u32::try_from(header.len()).map_err(|_| bad("header too large"))?;
    let mut body = Vec::with_capacity(4 + header.len() + ciphertext.len());
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(&header);
    body.extend_from_slice(ciphertext);
    Ok(body)
}

/// Serves a room on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    room: Arc<RoomServer>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    crate::service::serve(listener, router(room), shutdown).await
}
