//! What parties and the room exchange: party keys, signed requests, upload headers,
//! receipts, evidence and audit reports, and the transcripts that are signed.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use veil_attest::error::Result;
use veil_kbs::{ReleasedSecret, WorkloadKeyPair};

use crate::manifest::*;

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

    pub(crate) fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }
}

/// A domain-separated, length-prefixed byte string to sign.
pub(crate) fn transcript(domain: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    for f in fields {
        out.extend_from_slice(&(f.len() as u64).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

pub(crate) fn check_sig(key: &VerifyingKey, message: &[u8], sig: &str, what: &str) -> Result<()> {
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

pub(crate) fn upload_label(room_id: &[u8; 32], party: &str, label: &str) -> String {
    format!("veil-room/{}/{party}/{label}", hex::encode(room_id))
}

pub(crate) fn output_label(room_id: &[u8; 32], party: &str) -> String {
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
    pub(crate) fn message(&self) -> Vec<u8> {
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
    pub(crate) fn message(&self) -> Vec<u8> {
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
    pub(crate) fn message(&self) -> Vec<u8> {
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

pub(crate) fn output_message(room_id: &str, party: &str, sealed: &ReleasedSecret) -> Vec<u8> {
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

pub(crate) fn audit_head_message(nonce: &[u8], entries: u64, last_hash: &str) -> Vec<u8> {
    transcript(
        "veil-room-audit-head-v1",
        &[nonce, &entries.to_le_bytes(), last_hash.as_bytes()],
    )
}

/// The body of an upload: the header's length (4 bytes, big endian), the header (JSON), the
/// ciphertext.
pub fn upload_body(header: &UploadHeader, ciphertext: &[u8]) -> Result<Vec<u8>> {
    let header = serde_json::to_vec(header).map_err(|e| bad(e.to_string()))?;
    let len = u32::try_from(header.len()).map_err(|_| bad("header too large"))?;
    let mut body = Vec::with_capacity(4 + header.len() + ciphertext.len());
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(&header);
    body.extend_from_slice(ciphertext);
    Ok(body)
}
