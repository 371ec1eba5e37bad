//! The room manifest: the code, the parties and their keys, the trust anchors; the room id.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use veil_attest::error::{Result, TeeError};
use veil_attest::evidence::sim::SimVerifier;
use veil_attest::policy::{AllowList, Policy};
use veil_attest::service::Verifiers;

use crate::workload::{measure, LaunchConfig};

/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;
/// Largest upload (plaintext) a room accepts.
pub const MAX_UPLOAD: usize = 512 << 20;
/// Largest upload header.
pub const MAX_HEADER: usize = 64 << 10;
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

pub(crate) fn refused(why: impl Into<String>) -> TeeError {
    TeeError::RoomRefused(why.into())
}

pub(crate) fn bad(why: impl Into<String>) -> TeeError {
    TeeError::BadRequest(why.into())
}

pub(crate) fn hex_key<const N: usize>(what: &str, text: &str) -> Result<[u8; N]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(format!("{what} must be {N} bytes of hex")))
}

pub(crate) fn verifying_key(what: &str, text: &str) -> Result<VerifyingKey> {
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

pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
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

impl RoomSpec {
    /// A room `name` of `parties` running the shipped workload `b` (its input format and
    /// output labels, default launch limits), its output to `output_to`; no platform trusted
    /// yet and no minimum security version (set `sim_platform_keys` and
    /// `min_security_version`).
    pub fn builtin(b: &Builtin, name: &str, parties: Vec<Party>, output_to: Vec<String>) -> Self {
        Self {
            name: name.to_string(),
            file: format!("builtin:{}", b.name),
            input: b.input,
            output_labels: b.output_labels.iter().map(|s| (*s).to_string()).collect(),
            launch: LaunchConfig::default(),
            parties,
            output_to,
            sim_platform_keys: Vec::new(),
            min_security_version: None,
        }
    }
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

/// The first 16 hex digits of a room id, for messages.
pub(crate) fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}
