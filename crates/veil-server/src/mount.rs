//! The attestation service and the key broker built from their configuration sections, for
//! `veil serve` (mounted at `/attest` and `/kbs`) and for `veil attest serve` / `veil kbs
//! serve`, which fill the same structures from their flags.
//!
//! ```toml
//! [attest]
//! policy = "policy.toml"              # TOML allow-list, or Rego (`.rego`)
//! collateral = ["sgx-collateral.json"] # SGX/TDX (dcap-qvl JSON)
//! vcek = ["vcek.der"]                 # SEV-SNP chips; also vlek, snp_crl, snp_min_tcb
//! sim_platform_keys = ["…"]           # simulated platforms (the policy must allow "sim")
//! signing_key = "veil-attest-signing.key"   # made (mode 0600) if absent
//! alg = "ES256"
//! nonce_ttl_secs = 60
//! token_ttl_secs = 300
//! audit_log = "veil-attest-audit.jsonl"
//!
//! [kbs]
//! store = "veil-kbs"                  # `veil kbs put` fills it
//! # jwks = "https://…/.well-known/jwks.json"   # default: this process's [attest] keys
//!
//! [[rooms]]                           # a data room at /rooms/{name} (see `veil room`)
//! name = "study"
//! manifest = "room.toml"              # `veil room create`
//! platform_seed_file = "platform.seed"  # the simulated TEE's seed (hex)
//! state = "room-state"                # crash-safe state: a restart resumes the room
//! # code = "module.wasm"              # default: the manifest's file (`builtin:…` or a path)
//! # security_version = 1
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use veil_attest::audit::AuditLog;
use veil_attest::evidence::sim::SimVerifier;
use veil_attest::policy::Policy;
use veil_attest::service::{AttestationService, Verifiers};
use veil_attest::token::{TokenAlgorithm, TokenIssuer, TokenVerifier};
use veil_attest::TeeError;
use veil_kbs::{KeyBroker, SecretStore};

/// Section `[attest]`: what `veil attest serve` takes as flags.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestConfig {
    /// The attestation policy: a TOML allow-list, or Rego if the file ends in `.rego`.
    pub policy: PathBuf,
    /// SGX/TDX collateral files (dcap-qvl JSON).
    #[serde(default)]
    pub collateral: Vec<PathBuf>,
    /// A PCCS (v4 API) to fetch SGX/TDX collateral from.
    pub pccs: Option<String>,
    /// Extra trusted CA (PEM) for the PCCS.
    pub pccs_ca: Option<PathBuf>,
    /// How long fetched collateral is reused per platform (seconds).
    #[serde(default = "default_pccs_cache")]
    pub pccs_cache_secs: u64,
    /// SEV-SNP VCEK certificates (DER).
    #[serde(default)]
    pub vcek: Vec<PathBuf>,
    /// SEV-SNP VLEK certificates (DER).
    #[serde(default)]
    pub vlek: Vec<PathBuf>,
    /// AMD CRLs (DER); with them, SNP reports whose chain no current CRL covers are refused.
    #[serde(default)]
    pub snp_crl: Vec<PathBuf>,
    /// The oldest SEV-SNP TCB still current (`bootloader=N,tee=N,snp=N,microcode=N`).
    pub snp_min_tcb: Option<String>,
    /// Trusted simulated platform keys (hex).
    #[serde(default)]
    pub sim_platform_keys: Vec<String>,
    /// Verify collateral as of this time (RFC 3339) instead of now.
    pub verify_at: Option<String>,
    /// Token signing key (PKCS#8 DER); made (mode 0600) if absent.
    #[serde(default = "default_signing_key")]
    pub signing_key: PathBuf,
    /// Token signature algorithm: ES256 or ES384.
    #[serde(default = "default_alg")]
    pub alg: String,
    /// How long a nonce stays valid (seconds).
    #[serde(default = "default_nonce_ttl")]
    pub nonce_ttl_secs: u64,
    /// How long a token stays valid (seconds).
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    /// The audit log (JSON lines, hash-chained, signed).
    #[serde(default = "default_audit_log")]
    pub audit_log: PathBuf,
    /// The audit log's Ed25519 key (default: beside the log, extension `.key`).
    pub audit_key: Option<PathBuf>,
}

fn default_pccs_cache() -> u64 {
    3600
}
fn default_signing_key() -> PathBuf {
    "veil-attest-signing.key".into()
}
fn default_alg() -> String {
    "ES256".into()
}
fn default_nonce_ttl() -> u64 {
    60
}
fn default_token_ttl() -> u64 {
    300
}
fn default_audit_log() -> PathBuf {
    "veil-attest-audit.jsonl".into()
}

/// Section `[kbs]`: what `veil kbs serve` takes as flags.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbsConfig {
    /// The secret store directory.
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// The attestation service's JWKS: a URL (refetched when a token names an unknown key) or
    /// a file. Default in `veil serve`: the keys of its own `[attest]` section.
    pub jwks: Option<String>,
    /// The audit log (default: `audit.jsonl` in the store).
    pub audit_log: Option<PathBuf>,
    /// The audit log's Ed25519 key (default: `audit.key` in the store).
    pub audit_key: Option<PathBuf>,
}

fn default_store() -> PathBuf {
    "veil-kbs".into()
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TeeError> {
    std::fs::read(path)
        .map_err(|e| TeeError::BadRequest(format!("cannot read {}: {e}", path.display())))
}

/// The signing key at `path`, or a new one written there (mode 0600); says which.
fn signing_key(path: &Path, alg: TokenAlgorithm) -> Result<(TokenIssuer, bool), TeeError> {
    if path.exists() {
        let der = read(path)?;
        let issuer = TokenIssuer::from_pkcs8(alg, &der).map_err(|e| {
            TeeError::BadRequest(format!("{} (is it a {alg:?} key?): {e}", path.display()))
        })?;
        return Ok((issuer, false));
    }
    let issuer = TokenIssuer::generate(alg)?;
    veil_attest::util::write_private(path, issuer.pkcs8_der())?;
    Ok((issuer, true))
}

/// A built attestation service and what its operator should be told.
#[derive(Debug)]
pub struct BuiltAttestation {
    /// The service.
    pub service: AttestationService,
    /// The audit log's public key (hex), if signed.
    pub audit_key: Option<String>,
    /// Whether a new token signing key was made.
    pub new_signing_key: bool,
}

/// Builds the attestation service `config` describes (relative paths from `base`).
pub fn attestation_service(
    config: &AttestConfig,
    base: &Path,
) -> Result<BuiltAttestation, TeeError> {
    let policy = Policy::from_file(&resolve(base, &config.policy))?;
    let mut verifiers = Verifiers::default();
    for path in &config.collateral {
        let path = resolve(base, path);
        let json = String::from_utf8(read(&path)?)
            .map_err(|_| TeeError::BadRequest(format!("{} is not UTF-8", path.display())))?;
        verifiers
            .dcap
            .push(veil_attest::evidence::dcap::DcapVerifier::from_collateral_json(&json)?);
    }
    if !config.snp_crl.is_empty() && config.vcek.is_empty() && config.vlek.is_empty() {
        return Err(TeeError::BadRequest(
            "snp_crl checks SEV-SNP chains: give the reports' vcek or vlek too".into(),
        ));
    }
    let min_tcb = config
        .snp_min_tcb
        .as_deref()
        .map(str::parse::<veil_attest::evidence::snp::SnpTcb>)
        .transpose()
        .map_err(|e| TeeError::BadRequest(format!("snp_min_tcb: {e}")))?;
    let veks = config
        .vcek
        .iter()
        .map(|p| (p, false))
        .chain(config.vlek.iter().map(|p| (p, true)));
    for (path, is_vlek) in veks {
        use veil_attest::evidence::snp::SnpVerifier;
        let der = read(&resolve(base, path))?;
        let mut verifier = if is_vlek {
            SnpVerifier::from_vlek_der(&der)?
        } else {
            SnpVerifier::from_vcek_der(&der)?
        };
        if let Some(min) = min_tcb {
            verifier = verifier.with_min_tcb(min);
        }
        for crl in &config.snp_crl {
            let crl = resolve(base, crl);
            verifier = verifier
                .with_crl(&read(&crl)?)
                .map_err(|e| TeeError::BadRequest(format!("snp_crl {}: {e}", crl.display())))?;
        }
        verifiers.snp.push(verifier);
    }
    for key in &config.sim_platform_keys {
        let key: [u8; 32] = hex::decode(key.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| {
                TeeError::BadRequest("a simulated platform key is 64 hex digits".into())
            })?;
        verifiers.sim.push(SimVerifier::new(&key)?);
    }
    if let Some(url) = &config.pccs {
        let ca = config
            .pccs_ca
            .as_ref()
            .map(|p| read(&resolve(base, p)))
            .transpose()?;
        let client = veil_attest::pccs::PccsClient::new(url, ca.as_deref())?;
        verifiers.pccs = Some(veil_attest::pccs::CollateralCache::new(
            client,
            config.pccs_cache_secs,
        ));
    }
    verifiers.verify_at = config
        .verify_at
        .as_deref()
        .map(|t| {
            humantime::parse_rfc3339(t.trim())
                .map_err(|e| TeeError::BadRequest(format!("verify_at {t:?}: {e}")))
                .map(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                })
        })
        .transpose()?;
    let alg = TokenAlgorithm::parse(&config.alg)?;
    let (issuer, new_signing_key) = signing_key(&resolve(base, &config.signing_key), alg)?;
    let audit_log = resolve(base, &config.audit_log);
    let audit_key_path = config
        .audit_key
        .as_ref()
        .map_or_else(|| audit_log.with_extension("key"), |p| resolve(base, p));
    let audit = AuditLog::open(&audit_log)?.with_signer(
        veil_attest::audit::load_or_create_signing_key(&audit_key_path)?,
    );
    let audit_key = audit.public_key().map(|k| hex::encode(k.as_bytes()));
    let service = AttestationService::new(verifiers, policy, issuer, audit)
        .with_lifetimes(config.nonce_ttl_secs, config.token_ttl_secs);
    Ok(BuiltAttestation {
        service,
        audit_key,
        new_signing_key,
    })
}

/// Builds the key broker `config` describes. Tokens are checked against `config.jwks`, or
/// else against `local` (the keys of an attestation service in the same process).
pub async fn key_broker(
    config: &KbsConfig,
    base: &Path,
    local: Option<&AttestationService>,
) -> Result<(KeyBroker, Option<String>), TeeError> {
    let store_dir = resolve(base, &config.store);
    let store = SecretStore::open(&store_dir)?;
    let audit_path = config
        .audit_log
        .as_ref()
        .map_or_else(|| store_dir.join("audit.jsonl"), |p| resolve(base, p));
    let key_path = config
        .audit_key
        .as_ref()
        .map_or_else(|| store_dir.join("audit.key"), |p| resolve(base, p));
    let audit = AuditLog::open(&audit_path)?
        .with_signer(veil_attest::audit::load_or_create_signing_key(&key_path)?);
    let audit_key = audit.public_key().map(|k| hex::encode(k.as_bytes()));
    let (verifier, source) = match (&config.jwks, local) {
        (Some(jwks), _) if jwks.starts_with("http://") || jwks.starts_with("https://") => (
            crate::client::fetch_jwks(jwks).await?,
            Some(crate::client::jwks_source(jwks)),
        ),
        (Some(file), _) => {
            let path = resolve(base, Path::new(file));
            let json = String::from_utf8(read(&path)?)
                .map_err(|_| TeeError::BadRequest(format!("{} is not UTF-8", path.display())))?;
            (TokenVerifier::from_jwks_json(&json)?, None)
        }
        (None, Some(service)) => (TokenVerifier::new(&service.jwks())?, None),
        (None, None) => {
            return Err(TeeError::BadRequest(
                "[kbs] needs `jwks` (a URL or file) unless [attest] is served too".into(),
            ))
        }
    };
    Ok((KeyBroker::new(store, verifier, source, audit), audit_key))
}

/// One `[[rooms]]`: what `veil room serve --state` takes as flags.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomConfig {
    /// The room's name in its routes (`/rooms/{name}/…`).
    pub name: String,
    /// The manifest (`veil room create`).
    pub manifest: PathBuf,
    /// The WebAssembly module (default: the manifest's `code.file`, relative to the manifest).
    pub code: Option<PathBuf>,
    /// The simulated TEE platform's seed (64 hex digits in a file).
    pub platform_seed_file: PathBuf,
    /// The platform's security version (default 1).
    #[serde(default = "default_svn")]
    pub security_version: u16,
    /// The room's state directory (uploads, outputs, audit log; resumed after a restart).
    pub state: PathBuf,
}

fn default_svn() -> u16 {
    1
}

/// Opens (or resumes) the room `config` describes.
pub fn room_server(config: &RoomConfig, base: &Path) -> Result<veil_room::RoomServer, TeeError> {
    let ok = !config.name.is_empty()
        && config.name.len() <= 64
        && config
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    if !ok {
        return Err(TeeError::BadRequest(format!(
            "room name {:?}: 1 to 64 of [A-Za-z0-9-_]",
            config.name
        )));
    }
    let manifest_path = resolve(base, &config.manifest);
    let text = String::from_utf8(read(&manifest_path)?)
        .map_err(|_| TeeError::BadRequest(format!("{} is not UTF-8", manifest_path.display())))?;
    let manifest = veil_room::Manifest::parse(&text)?;
    let module = match (&config.code, manifest.code.file.strip_prefix("builtin:")) {
        (Some(path), _) => read(&resolve(base, path))?,
        (None, Some(name)) => veil_room::builtin(name)
            .ok_or_else(|| TeeError::BadRequest(format!("no shipped workload {name:?}")))?
            .wat
            .as_bytes()
            .to_vec(),
        (None, None) => {
            let dir = manifest_path.parent().unwrap_or(Path::new("."));
            read(&dir.join(&manifest.code.file))?
        }
    };
    let seed_path = resolve(base, &config.platform_seed_file);
    let seed_text = zeroize::Zeroizing::new(read(&seed_path)?);
    let seed: zeroize::Zeroizing<[u8; 32]> = zeroize::Zeroizing::new(
        std::str::from_utf8(&seed_text)
            .ok()
            .and_then(|t| hex::decode(t.trim()).ok())
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| {
                TeeError::BadRequest(format!("{} must hold 64 hex digits", seed_path.display()))
            })?,
    );
    let platform = veil_attest::evidence::sim::SimulatedPlatform::from_seed(&seed);
    veil_room::RoomServer::open(
        &text,
        &module,
        platform,
        config.security_version,
        &resolve(base, &config.state),
    )
}
