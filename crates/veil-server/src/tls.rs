//! TLS for `veil serve` (rustls, ring): a self-signed certificate by default, real ones by
//! configuration, plain HTTP only on loopback.
//!
//! ```toml
//! [tls]
//! mode = "self-signed"   # the default: a certificate for localhost, 127.0.0.1 and ::1,
//! dir = "veil-tls"       # made on first start and kept here (cert.pem; key.pem mode 0600)
//!
//! # mode = "files"       # real certificates: the chain and its key (PEM)
//! # cert = "fullchain.pem"
//! # key = "privkey.pem"
//!
//! # mode = "off"         # plain HTTP: refused unless `listen` is a loopback address
//! ```
//!
//! Clients of a self-signed server trust exactly `dir/cert.pem` (`curl --cacert`, or
//! [`client_trusting`]); its SHA-256 fingerprint is printed at start. The certificate and key
//! are kept across restarts so that clients keep trusting the same certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How the service speaks TLS.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// A self-signed certificate made on first start (the default).
    #[default]
    SelfSigned,
    /// A certificate chain and key from files.
    Files,
    /// Plain HTTP, on loopback only.
    Off,
}

/// Section `[tls]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The mode.
    #[serde(default)]
    pub mode: TlsMode,
    /// Where a self-signed certificate and its key are kept (default `veil-tls`).
    pub dir: Option<PathBuf>,
    /// The certificate chain (PEM), mode `files`.
    pub cert: Option<PathBuf>,
    /// The private key (PEM), mode `files`.
    pub key: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            mode: TlsMode::SelfSigned,
            dir: None,
            cert: None,
            key: None,
        }
    }
}

/// A ready TLS set-up.
#[derive(Clone)]
pub struct Tls {
    /// The rustls server configuration.
    pub server: Arc<rustls::ServerConfig>,
    /// The file holding the leaf certificate (what clients of a self-signed server trust).
    pub cert_path: PathBuf,
    /// SHA-256 (hex) of the leaf certificate's DER.
    pub fingerprint: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_path", &self.cert_path)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The TLS set-up `config` describes for a server listening on `listen` (`None`: plain HTTP,
/// which is refused unless every address `listen` names is loopback).
pub fn setup(config: &TlsConfig, base: &Path, listen: &str) -> Result<Option<Tls>, String> {
    let (cert_path, key_path) = match config.mode {
        TlsMode::Off => {
            let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(listen)
                .map_err(|e| format!("listen {listen:?}: {e}"))?
                .collect();
            if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
                return Err(format!(
                    "[tls] mode = \"off\" serves plain HTTP, which is allowed on loopback only \
                     (listen = {listen:?}): API tokens and results would cross the network in \
                     clear; use mode = \"self-signed\" or \"files\""
                ));
            }
            return Ok(None);
        }
        TlsMode::Files => {
            let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
                return Err("[tls] mode = \"files\" needs `cert` and `key`".into());
            };
            (resolve(base, cert), resolve(base, key))
        }
        TlsMode::SelfSigned => {
            let dir = resolve(base, config.dir.as_deref().unwrap_or(Path::new("veil-tls")));
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !cert.exists() && !key.exists() {
                make_self_signed(&dir, &cert, &key)?;
            }
            (cert, key)
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{} holds no certificate", cert_path.display()))?;
    let fingerprint = hex::encode(Sha256::digest(leaf.as_ref()));
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read the key {}: {e}", key_path.display()))?;
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| {
        format!(
            "{} and {} do not make a usable certificate: {e}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(Some(Tls {
        server: Arc::new(server),
        cert_path,
        fingerprint,
    }))
}

fn make_self_signed(dir: &Path, cert: &Path, key: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let key_pem = zeroize::Zeroizing::new(made.signing_key.serialize_pem());
    veil_attest::util::write_private(key, key_pem.as_bytes()).map_err(|e| e.to_string())?;
    std::fs::write(cert, made.cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "made a self-signed certificate");
    Ok(())
}

/// An HTTP client that trusts exactly the certificate(s) in `pem` (a self-signed server's
/// `cert.pem`), and no public CA.
pub fn client_trusting(pem: &[u8]) -> Result<reqwest::Client, String> {
    crate::client::install_crypto_provider();
    let mut certs = Vec::new();
    for der in CertificateDer::pem_slice_iter(pem) {
        let der = der.map_err(|e| e.to_string())?;
        certs.push(reqwest::Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?);
    }
    if certs.is_empty() {
        return Err("no certificate in the PEM".into());
    }
    let builder = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .tls_certs_only(certs);
    builder.build().map_err(|e| e.to_string())
}
