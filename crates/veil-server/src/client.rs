//! HTTP clients of the attestation service and the key broker, and a simulated workload that
//! goes through the whole flow: nonce → evidence binding its key → token → key release.

use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use veil_attest::binding::expected_report_data;
use veil_attest::error::{Result, TeeError};
use veil_attest::evidence::sim::SimulatedPlatform;
use veil_attest::service::{AttestRequest, AttestResponse, NonceResponse};
use veil_attest::token::TokenVerifier;
use veil_attest::util::{decode_b64, encode_b64};
use veil_kbs::{KeySource, ReleaseRequest, ReleasedSecret, WorkloadKeyPair};

use crate::error::ErrorBody;

/// Makes `ring` the process's rustls crypto provider (HTTPS), unless one is installed already.
pub fn install_crypto_provider() {
    // An error means another provider was installed first, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A new HTTP client (30 s timeout). Clients pool connections: keep one per task that makes
/// many requests (as [`SimulatedWorkload`] does); a pooled connection must not outlive the
/// async runtime it was made in.
pub fn http_client() -> Result<reqwest::Client> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| TeeError::Network(e.to_string()))
}

pub(crate) async fn read<T: DeserializeOwned>(url: &str, resp: reqwest::Response) -> Result<T> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| TeeError::Network(format!("{url}: {e}")))?;
    if status.is_success() {
        serde_json::from_slice(&bytes)
            .map_err(|e| TeeError::Network(format!("{url}: unexpected response: {e}")))
    } else {
        let reason = serde_json::from_slice::<ErrorBody>(&bytes).map_or_else(
            |_| String::from_utf8_lossy(&bytes).into_owned(),
            |b| b.error,
        );
        Err(TeeError::Refused {
            status: status.as_u16(),
            reason,
        })
    }
}

pub(crate) fn net(url: &str, e: reqwest::Error) -> TeeError {
    TeeError::Network(format!("{url}: {e}"))
}

/// The key broker's source of the attestation service's keys: the JWKS at `url`, fetched
/// again when a token names an unknown key (see [`veil_kbs::KeyBroker::new`]).
pub fn jwks_source(url: &str) -> KeySource {
    let url = url.to_string();
    std::sync::Arc::new(move || {
        let url = url.clone();
        Box::pin(async move { fetch_jwks(&url).await })
    })
}

/// Fetches a JWKS and trusts its keys.
pub async fn fetch_jwks(url: &str) -> Result<TokenVerifier> {
    let resp = http_client()?
        .get(url)
        .send()
        .await
        .map_err(|e| net(url, e))?;
    let jwks: veil_attest::token::Jwks = read(url, resp).await?;
    TokenVerifier::new(&jwks)
}

/// `GET {service}/nonce`.
pub async fn fetch_nonce(service: &str) -> Result<NonceResponse> {
    fetch_nonce_with(&http_client()?, service).await
}

async fn fetch_nonce_with(client: &reqwest::Client, service: &str) -> Result<NonceResponse> {
    let url = format!("{}/nonce", service.trim_end_matches('/'));
    let resp = client.get(&url).send().await.map_err(|e| net(&url, e))?;
    read(&url, resp).await
}

/// `POST {service}/attest`.
pub async fn attest(service: &str, request: &AttestRequest) -> Result<AttestResponse> {
    attest_with(&http_client()?, service, request).await
}

async fn attest_with(
    client: &reqwest::Client,
    service: &str,
    request: &AttestRequest,
) -> Result<AttestResponse> {
    let url = format!("{}/attest", service.trim_end_matches('/'));
    let resp = client
        .post(&url)
        .json(request)
        .send()
        .await
        .map_err(|e| net(&url, e))?;
    read(&url, resp).await
}

/// `POST {kbs}/release/{name}` with `token`.
pub async fn release(kbs: &str, name: &str, token: &str) -> Result<ReleasedSecret> {
    release_with(&http_client()?, kbs, name, token).await
}

async fn release_with(
    client: &reqwest::Client,
    kbs: &str,
    name: &str,
    token: &str,
) -> Result<ReleasedSecret> {
    let url = format!("{}/release/{name}", kbs.trim_end_matches('/'));
    let resp = client
        .post(&url)
        .json(&ReleaseRequest {
            token: token.to_string(),
        })
        .send()
        .await
        .map_err(|e| net(&url, e))?;
    read(&url, resp).await
}

/// A workload in the simulated TEE: a measurement, a security version and a fresh HPKE key.
#[derive(Debug)]
pub struct SimulatedWorkload {
    platform: SimulatedPlatform,
    measurement: [u8; 48],
    security_version: u16,
    key: WorkloadKeyPair,
    http: Option<reqwest::Client>,
}

impl SimulatedWorkload {
    /// A workload with this measurement on `platform`, with a fresh key pair.
    pub fn new(platform: SimulatedPlatform, measurement: [u8; 48], security_version: u16) -> Self {
        Self {
            platform,
            measurement,
            security_version,
            key: WorkloadKeyPair::generate(),
            http: None,
        }
    }

    /// Reuses `client` (and its pooled connections) for every request.
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    fn http(&self) -> Result<reqwest::Client> {
        self.http.clone().map_or_else(http_client, Ok)
    }

    /// The workload's HPKE key pair.
    pub fn key(&self) -> &WorkloadKeyPair {
        &self.key
    }

    /// Builds the attestation request for `nonce` (base64url): evidence binding the nonce and
    /// the workload's public key.
    pub fn attest_request(&self, nonce: &str) -> Result<AttestRequest> {
        let nonce_bytes = decode_b64("nonce", nonce)?;
        let pk = self.key.public_bytes();
        let report_data = expected_report_data(&nonce_bytes, &pk, b"");
        let evidence = self.platform.issue(
            &self.measurement,
            &report_data,
            false,
            self.security_version,
        );
        Ok(AttestRequest {
            evidence: encode_b64(&evidence),
            nonce: nonce.to_string(),
            runtime_public_key: encode_b64(&pk),
            runtime_data: String::new(),
        })
    }

    /// Gets a nonce, attests, and returns the token.
    pub async fn attest(&self, service: &str) -> Result<AttestResponse> {
        let client = self.http()?;
        let nonce = fetch_nonce_with(&client, service).await?;
        attest_with(&client, service, &self.attest_request(&nonce.nonce)?).await
    }

    /// Asks the broker for `name` with `token` and opens the wrapped secret.
    pub async fn fetch_secret(
        &self,
        kbs: &str,
        name: &str,
        token: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let released = release_with(&self.http()?, kbs, name, token).await?;
        self.key.open(&released)
    }
}
