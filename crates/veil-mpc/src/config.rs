//! The session configuration every party and the dealer share (`parties.toml`), and
//! `veil mpc init`: a CA and per-party certificates for a local test.
//!
//! ```toml
//! [session]
//! name = "joint-study"
//! frac_bits = 16
//! timeout_secs = 30
//! results_to = [0, 2]          # who learns the results (default: everyone)
//!
//! [tls]
//! ca = "ca.pem"                # paths are relative to this file
//!
//! [dealer]
//! address = "127.0.0.1:7400"
//! cert = "dealer.pem"
//! key = "dealer.key"
//!
//! [[parties]]
//! name = "hospital-a"
//! address = "127.0.0.1:7401"
//! cert = "party-0.pem"
//! key = "party-0.key"
//! ```
//!
//! Party `i` is the `i`-th `[[parties]]` entry. At connection time the parties and the dealer
//! exchange the SHA-256 of this file's bytes together with the program they run and refuse
//! to go on if they differ.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{MpcError, Result};

/// `[session]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    /// A name.
    pub name: String,
    /// Fixed-point fractional bits.
    #[serde(default = "default_frac_bits")]
    pub frac_bits: u32,
    /// How long to wait for a peer, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The parties that learn the results (empty: all).
    #[serde(default)]
    pub results_to: Vec<usize>,
}

fn default_frac_bits() -> u32 {
    crate::fixed::DEFAULT_FRAC_BITS
}

fn default_timeout() -> u64 {
    30
}

/// `[tls]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The CA certificate (PEM) every certificate must chain to.
    pub ca: PathBuf,
}

/// A party's or the dealer's endpoint and credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// A name for people (parties).
    #[serde(default)]
    pub name: String,
    /// `host:port` it listens on.
    pub address: String,
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM; only its owner needs the file).
    pub key: PathBuf,
}

/// A whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Session parameters.
    pub session: Session,
    /// Trust.
    pub tls: Tls,
    /// The dealer.
    pub dealer: Endpoint,
    /// The parties, in id order.
    pub parties: Vec<Endpoint>,
    /// The file's directory (paths are relative to it); not part of the file.
    #[serde(skip)]
    pub base: PathBuf,
    /// The file's bytes' SHA-256; not part of the file.
    #[serde(skip)]
    pub file_sha256: [u8; 32],
}

impl SessionConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MpcError::Config(format!("{}: {e}", path.display())))?;
        let mut config = Self::parse(&text)?;
        config.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(config)
    }

    /// Parses and checks a configuration's text.
    pub fn parse(text: &str) -> Result<Self> {
        let mut config: Self =
            toml::from_str(text).map_err(|e| MpcError::Config(format!("parties.toml: {e}")))?;
        config.file_sha256 = Sha256::digest(text.as_bytes()).into();
        let n = config.parties.len();
        if n < 2 {
            return Err(MpcError::Config(format!(
                "{n} parties: MPC needs at least 2"
            )));
        }
        crate::fixed::FixedPoint::new(config.session.frac_bits)?;
        if config.session.timeout_secs == 0 {
            return Err(MpcError::Config("timeout_secs must be at least 1".into()));
        }
        if let Some(bad) = config.session.results_to.iter().find(|&&i| i >= n) {
            return Err(MpcError::Config(format!(
                "results_to names party {bad}; there are {n}"
            )));
        }
        Ok(config)
    }

    /// Number of parties.
    pub fn parties(&self) -> usize {
        self.parties.len()
    }

    /// A path from the file, relative to its directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Whether party `id` learns the results.
    pub fn learns_results(&self, id: usize) -> bool {
        self.session.results_to.is_empty() || self.session.results_to.contains(&id)
    }

    /// The hash the parties compare at connection time: the file and the program.
    pub fn session_hash(&self, program: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"veil-mpc-session-v1\0");
        h.update(self.file_sha256);
        h.update((program.len() as u64).to_le_bytes());
        h.update(program.as_bytes());
        h.finalize().into()
    }

    /// The fixed-point format.
    pub fn fixed(&self) -> crate::fixed::FixedPoint {
        crate::fixed::FixedPoint::new(self.session.frac_bits).unwrap_or_default()
    }

    /// The peer timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.session.timeout_secs)
    }
}

/// The TLS name of party `id`.
pub fn party_name(id: usize) -> String {
    format!("party-{id}.veil-mpc")
}

/// The TLS name of the dealer.
pub const DEALER_NAME: &str = "dealer.veil-mpc";

fn write(path: &Path, text: &str, private: bool) -> Result<()> {
    let io = |e: std::io::Error| MpcError::Config(format!("{}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)
}

/// Writes a local test session into `dir`: a CA (its key is discarded, so nobody can add a
/// party later), a certificate and key per party and for the dealer, and `parties.toml`
/// with loopback addresses from `base_port` (dealer) upwards. Returns the config's path.
pub fn init(dir: &Path, names: &[String], base_port: u16) -> Result<PathBuf> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    if names.len() < 2 {
        return Err(MpcError::Config("MPC needs at least 2 parties".into()));
    }
    if usize::from(base_port) + names.len() > usize::from(u16::MAX) {
        return Err(MpcError::Config(format!("ports from {base_port} run out")));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| MpcError::Config(format!("{}: {e}", dir.display())))?;
    let gen = |e: rcgen::Error| MpcError::Config(format!("certificate generation: {e}"));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "veil mpc session CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(gen)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen)?;
    let issuer = Issuer::new(ca_params, ca_key);
    write(&dir.join("ca.pem"), &ca_cert.pem(), false)?;
    let leaf = |name: &str, file: &str| -> Result<(PathBuf, PathBuf)> {
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(gen)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(gen)?;
        let cert = params.signed_by(&key, &issuer).map_err(gen)?;
        let (c, k) = (
            PathBuf::from(format!("{file}.pem")),
            PathBuf::from(format!("{file}.key")),
        );
        write(&dir.join(&c), &cert.pem(), false)?;
        write(&dir.join(&k), &key.serialize_pem(), true)?;
        Ok((c, k))
    };
    let (dc, dk) = leaf(DEALER_NAME, "dealer")?;
    let mut parties = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (c, k) = leaf(&party_name(i), &format!("party-{i}"))?;
        parties.push(Endpoint {
            name: name.clone(),
            address: format!("127.0.0.1:{}", usize::from(base_port) + 1 + i),
            cert: c,
            key: k,
        });
    }
    let config = SessionConfig {
        session: Session {
            name: "veil-mpc".into(),
            frac_bits: default_frac_bits(),
            timeout_secs: default_timeout(),
            results_to: Vec::new(),
        },
        tls: Tls {
            ca: PathBuf::from("ca.pem"),
        },
        dealer: Endpoint {
            name: "dealer".into(),
            address: format!("127.0.0.1:{base_port}"),
            cert: dc,
            key: dk,
        },
        parties,
        base: PathBuf::new(),
        file_sha256: [0; 32],
    };
    let text = toml::to_string(&config).map_err(|e| MpcError::Config(e.to_string()))?;
    let path = dir.join("parties.toml");
    write(&path, &text, false)?;
    Ok(path)
}
