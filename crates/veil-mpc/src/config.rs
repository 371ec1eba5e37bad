//! The session configuration every party and the dealer share (`parties.toml`), and
//! `veil mpc init`: a CA and per-party certificates for a local test.
//!
//! ```toml
//! [session]
//! name = "joint-study"
//! frac_bits = 16
//! timeout_secs = 30
//! results_to = [0, 2]          # who learns the results (default: everyone)
//! max_frame_mib = 64           # largest message accepted from a peer (default 64 MiB)
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
//! to go on if they differ; each side also sends the file and the program
//! ([`SessionConfig::session_description`]), so that the refusal quotes the first differing
//! line of both — nothing in the file is secret (keys are paths to files only their owners
//! hold).

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
    /// The largest message (frame) accepted from a peer, in MiB (1 to 1024; default 64): a
    /// batch of `n` multiplications sends `16 n` bytes to every party.
    #[serde(default = "default_max_frame_mib")]
    pub max_frame_mib: u32,
}

fn default_max_frame_mib() -> u32 {
    64
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
    /// The file's text (what [`SessionConfig::session_description`] shows peers); not part
    /// of the file.
    #[serde(skip)]
    pub file_text: String,
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
        config.file_text = text.to_string();
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
        if !(1..=1024).contains(&config.session.max_frame_mib) {
            return Err(MpcError::Config(format!(
                "max_frame_mib must be 1 to 1024, not {}",
                config.session.max_frame_mib
            )));
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

    /// What the parties and the dealer show each other at connection time, so that a
    /// different session is refused with the first differing line of both: the program on
    /// the first line, then the configuration file.
    pub fn session_description(&self, program: &str) -> String {
        format!(
            "program: {}\n{}",
            program.replace(['\n', '\r'], " "),
            self.file_text
        )
    }

    /// The largest frame body accepted from a peer, in bytes.
    pub fn max_frame_bytes(&self) -> usize {
        (self.session.max_frame_mib as usize) << 20
    }

    /// The fixed-point format.
    pub fn fixed(&self) -> crate::fixed::FixedPoint {
        crate::fixed::FixedPoint::new(self.session.frac_bits).unwrap_or_default()
    }

    /// Moves the dealer and every party to loopback ports that are free now
    /// ([`loopback_ports`]): a session run on one machine.
    pub fn use_loopback_ports(&mut self) -> Result<()> {
        let ports = loopback_ports(self.parties.len() + 1)?;
        self.dealer.address = format!("127.0.0.1:{}", ports[0]);
        for (p, port) in self.parties.iter_mut().zip(&ports[1..]) {
            p.address = format!("127.0.0.1:{port}");
        }
        Ok(())
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

/// Where a participant's certified key comes from when a session is written.
enum Keys<'a> {
    /// Generated here, private key written next to the certificate (a local test).
    Generate,
    /// The participants' own certificate requests in this directory ([`keygen`]).
    Requests(&'a Path),
}

/// The file stem of a role's credentials: `dealer` or `party-{i}`.
fn stem(party: Option<usize>) -> String {
    party.map_or_else(|| "dealer".to_string(), |i| format!("party-{i}"))
}

fn gen_err(e: rcgen::Error) -> MpcError {
    MpcError::Config(format!("certificate generation: {e}"))
}

/// The certificate parameters of a participant: its TLS name, a signature key for TLS as
/// client and server, no CA rights.
fn leaf_params(name: &str) -> Result<rcgen::CertificateParams> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose};
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(gen_err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

/// Writes a local test session into `dir`: a CA (its key is discarded, so nobody can add a
/// party later), a certificate and key per party and for the dealer, and `parties.toml`
/// with loopback addresses from `base_port` (dealer) upwards. Returns the config's path.
///
/// Every private key is created here, in one place: this is for a test on one machine.
/// Between organisations, each participant runs [`keygen`] and the organiser [`certify`].
pub fn init(dir: &Path, names: &[String], base_port: u16) -> Result<PathBuf> {
    write_session(dir, names, base_port, Keys::Generate)
}

/// Like [`init`], on loopback ports that are free now ([`loopback_ports`]): a session for
/// the tests, the notebook and `veil mpc run` to start on one machine.
pub fn init_loopback(dir: &Path, names: &[String]) -> Result<PathBuf> {
    let path = init(dir, names, 20000)?;
    let mut config = SessionConfig::load(&path)?;
    config.use_loopback_ports()?;
    let text =
        toml::to_string(&config).map_err(|e| MpcError::Config(format!("parties.toml: {e}")))?;
    std::fs::write(&path, text)
        .map_err(|e| MpcError::Config(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// Ports this process has handed out already: never handed out twice.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// The ports a loopback session may take: below the kernel's ephemeral range, so that the
/// source port of some other connection cannot take a port between the moment it is chosen
/// and the moment the dealer or a party listens on it (asking the kernel for port 0 and
/// releasing it had exactly that race).
fn port_range() -> std::ops::Range<u16> {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        });
    match ephemeral {
        Some((low, _)) if low >= 12_000 => 10_000..u16::try_from(low).unwrap_or(32_768),
        Some((_, high)) if high < 60_000 => u16::try_from(high + 1).unwrap_or(61_000)..65_535,
        _ => 10_000..32_768,
    }
}

/// `count` distinct loopback ports that are free now, none handed out before by this process,
/// outside the kernel's ephemeral range; each process starts at its own place in the range.
pub fn loopback_ports(count: usize) -> Result<Vec<u16>> {
    let range = port_range();
    let span = u64::from(range.end - range.start);
    let seed = u64::from(std::process::id()).wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mut handed = HANDED_OUT
        .lock()
        .map_err(|_| MpcError::Config("port allocator poisoned".into()))?;
    let mut held = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for step in 0..span {
        if ports.len() == count {
            break;
        }
        let port = range.start + u16::try_from((seed + step) % span).unwrap_or(0);
        if handed.contains(&port) {
            continue;
        }
        // Held until every port is found, so that one call never returns a port twice.
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
            ports.push(port);
        }
    }
    if ports.len() < count {
        return Err(MpcError::Config(format!(
            "only {} of {count} loopback ports are free in {}..{}",
            ports.len(),
            range.start,
            range.end
        )));
    }
    handed.extend_from_slice(&ports);
    Ok(ports)
}

/// A participant's own credentials: generates its key pair in `dir` — `party-{i}.key`
/// (`None`: `dealer.key`; readable by its owner only, and it never leaves) — and a
/// certificate request `party-{i}.csr` to send to the session's organiser, who answers with
/// a certificate ([`certify`]). Returns (key, request).
pub fn keygen(dir: &Path, party: Option<usize>) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)
        .map_err(|e| MpcError::Config(format!("{}: {e}", dir.display())))?;
    let name = party.map_or_else(|| DEALER_NAME.to_string(), party_name);
    let key = rcgen::KeyPair::generate().map_err(gen_err)?;
    // The request names the role; the organiser certifies the role of the file anyway.
    let mut params = rcgen::CertificateParams::new(vec![name.clone()]).map_err(gen_err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name.as_str());
    let csr = params
        .serialize_request(&key)
        .map_err(gen_err)?
        .pem()
        .map_err(gen_err)?;
    let file = stem(party);
    let (k, c) = (
        dir.join(format!("{file}.key")),
        dir.join(format!("{file}.csr")),
    );
    write(&k, &key.serialize_pem(), true)?;
    write(&c, &csr, false)?;
    Ok((k, c))
}

/// The organiser's side of [`keygen`]: writes a session into `dir` from the participants'
/// certificate requests in `requests` (`dealer.csr`, `party-0.csr`, … as [`keygen`] names
/// them). A CA is created; each request's signature must prove its key, and the key is
/// certified **for the role the file stands for** — the names and extensions the request
/// asks for are ignored; then the CA's key is discarded. Writes `ca.pem`, the certificates
/// and `parties.toml` (whose key paths name the file each participant keeps: put it next to
/// your copy of the session), and no private key. Returns the config's path.
pub fn certify(dir: &Path, names: &[String], base_port: u16, requests: &Path) -> Result<PathBuf> {
    write_session(dir, names, base_port, Keys::Requests(requests))
}

fn write_session(dir: &Path, names: &[String], base_port: u16, keys: Keys<'_>) -> Result<PathBuf> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    if names.len() < 2 {
        return Err(MpcError::Config("MPC needs at least 2 parties".into()));
    }
    if usize::from(base_port) + names.len() > usize::from(u16::MAX) {
        return Err(MpcError::Config(format!("ports from {base_port} run out")));
    }
    // Every request is read and checked before anything is written.
    let requests = match keys {
        Keys::Generate => None,
        Keys::Requests(from) => {
            let roles = std::iter::once(None).chain((0..names.len()).map(Some));
            let read = |party: Option<usize>| -> Result<rcgen::PublicKey> {
                let path = from.join(format!("{}.csr", stem(party)));
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| MpcError::Config(format!("{}: {e}", path.display())))?;
                let csr = rcgen::CertificateSigningRequestParams::from_pem(&text).map_err(|e| {
                    MpcError::Config(format!(
                        "{}: not a valid certificate request: {e}",
                        path.display()
                    ))
                })?;
                Ok(csr.public_key)
            };
            Some(roles.map(read).collect::<Result<Vec<_>>>()?)
        }
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| MpcError::Config(format!("{}: {e}", dir.display())))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "veil mpc session CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    write(&dir.join("ca.pem"), &ca_cert.pem(), false)?;
    // Role k: None is the dealer (requests[0]), Some(i) party i (requests[i + 1]).
    let leaf = |party: Option<usize>| -> Result<(PathBuf, PathBuf)> {
        let name = party.map_or_else(|| DEALER_NAME.to_string(), party_name);
        let params = leaf_params(&name)?;
        let file = stem(party);
        let (c, k) = (
            PathBuf::from(format!("{file}.pem")),
            PathBuf::from(format!("{file}.key")),
        );
        let index = party.map_or(0, |i| i + 1);
        let cert = match requests.as_ref().and_then(|r| r.get(index)) {
            Some(public_key) => rcgen::CertificateSigningRequestParams {
                params,
                public_key: public_key.clone(),
            }
            .signed_by(&issuer)
            .map_err(gen_err)?,
            None => {
                let key = KeyPair::generate().map_err(gen_err)?;
                let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
                write(&dir.join(&k), &key.serialize_pem(), true)?;
                cert
            }
        };
        write(&dir.join(&c), &cert.pem(), false)?;
        Ok((c, k))
    };
    let (dc, dk) = leaf(None)?;
    let mut parties = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (c, k) = leaf(Some(i))?;
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
            max_frame_mib: default_max_frame_mib(),
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
        file_text: String::new(),
    };
    let text = toml::to_string(&config).map_err(|e| MpcError::Config(e.to_string()))?;
    let path = dir.join("parties.toml");
    write(&path, &text, false)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use super::*;

    /// The race a session on loopback had: a port taken from the kernel's ephemeral range and
    /// released could become the source port of any other connection (or another test's
    /// "free" port) before the dealer listened on it. Ports now come from outside that range
    /// and one process never hands the same port out twice, even from many threads.
    #[test]
    fn loopback_ports_are_distinct_and_outside_the_ephemeral_range() {
        let range = port_range();
        let threads: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| loopback_ports(8).unwrap()))
            .collect();
        let mut all: Vec<u16> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(
            all.iter().all(|p| range.contains(p)),
            "{all:?} vs {range:?}"
        );
        if let Ok(s) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") {
            let bounds: Vec<u16> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert!(
                all.iter().all(|p| *p < bounds[0] || *p > bounds[1]),
                "{all:?} in the ephemeral range {bounds:?}"
            );
        }
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "a port was handed out twice");
    }

    #[test]
    fn a_loopback_session_listens_where_its_file_says() {
        let dir = std::env::temp_dir().join(format!("veil-mpc-loop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = init_loopback(&dir, &["a".into(), "b".into(), "c".into()]).unwrap();
        let config = SessionConfig::load(&path).unwrap();
        let mut addresses: Vec<&str> = config.parties.iter().map(|p| p.address.as_str()).collect();
        addresses.push(&config.dealer.address);
        for a in &addresses {
            std::net::TcpListener::bind(a).unwrap();
        }
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
