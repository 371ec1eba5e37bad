//! Fetching DCAP collateral from a PCCS (Intel's Provisioning Certificate Caching Service, or
//! Intel's PCS itself) for a given quote — the optional online path; verification itself stays
//! offline ([`crate::evidence::dcap::DcapVerifier`]).
//!
//! From the quote's embedded PCK certificate chain (certification data type 5) come the
//! platform's FMSPC and its PCK CA (`processor` or `platform`); then the v4 API gives the PCK
//! CRL, the TCB info and the QE identity (with their signatures and issuer chains) and the
//! root CA CRL. Nothing fetched is trusted: every item is signed by Intel and checked by the
//! verifier. The result can be saved as the collateral JSON `veil attest verify --collateral`
//! reads, for offline use.
//!
//! HTTPS uses rustls with the system's root certificates; a PCCS with a self-signed
//! certificate needs its CA given explicitly.

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::{Result, TeeError};

/// Where Intel's root CA CRL is published (used when the PCCS does not serve `rootcacrl`,
/// as Intel's PCS does not).
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// Largest response accepted from a PCCS.
const MAX_RESPONSE: usize = 1 << 20;

/// A PCCS client.
#[derive(Clone, Debug)]
pub struct PccsClient {
    base: String,
    extra_ca_pem: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct TcbInfoResponse<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct QeIdentityResponse<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

struct Fetched {
    body: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

impl PccsClient {
    /// A client for the PCCS at `url` (e.g. `https://pccs.example:8081`; a trailing
    /// `/sgx/certification/v4` is accepted). `extra_ca_pem` adds trusted root certificates
    /// (a PCCS's self-signed certificate).
    pub fn new(url: &str, extra_ca_pem: Option<&[u8]>) -> Result<Self> {
        let base = url
            .trim_end_matches('/')
            .trim_end_matches("/sgx/certification/v4")
            .trim_end_matches("/tdx/certification/v4")
            .to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(TeeError::BadRequest(format!(
                "PCCS URL {url:?} must start with http:// or https://"
            )));
        }
        let client = Self {
            base,
            extra_ca_pem: extra_ca_pem.map(<[u8]>::to_vec),
        };
        client.http()?;
        Ok(client)
    }

    /// A fresh HTTP client: connections are not pooled across fetches, so a fetch may run in
    /// any async runtime.
    fn http(&self) -> Result<reqwest::Client> {
        // HTTPS through rustls with `ring`, unless the process installed a provider already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(pem) = &self.extra_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| TeeError::BadRequest(format!("PCCS CA certificate: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder
            .build()
            .map_err(|e| TeeError::Network(format!("HTTP client: {e}")))
    }

    async fn get(&self, http: &reqwest::Client, url: &str) -> Result<Fetched> {
        let resp = http
            .get(url)
            .send()
            .await
            .map_err(|e| TeeError::Network(format!("{url}: {e}")))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| TeeError::Network(format!("{url}: {e}")))?;
        if !status.is_success() {
            return Err(TeeError::Network(format!("{url}: HTTP {status}")));
        }
        if body.len() > MAX_RESPONSE {
            return Err(TeeError::Network(format!("{url}: response too large")));
        }
        Ok(Fetched {
            body: body.to_vec(),
            headers,
        })
    }

    /// Fetches the collateral that verifies `quote`.
    pub async fn fetch(&self, quote: &[u8]) -> Result<QuoteCollateralV3> {
        let parsed = std::panic::catch_unwind(|| dcap_qvl::quote::Quote::parse(quote))
            .map_err(|_| TeeError::UnknownEvidence("malformed quote (the parser gave up)".into()))?
            .map_err(|e| TeeError::UnknownEvidence(format!("malformed quote: {e:#}")))?;
        if parsed.inner_cert_type() != 5 {
            return Err(TeeError::MissingInput(
                "a PCK certificate chain in the quote (certification data type 5); this quote carries an encrypted PPID, which needs the PCCS's PCK certificate API",
            ));
        }
        let pck_chain = String::from_utf8_lossy(parsed.inner_cert_data()).into_owned();
        let fmspc = dcap_qvl::intel::quote_fmspc(&parsed).map_err(|e| {
            TeeError::InvalidCollateral(format!("FMSPC from the PCK certificate: {e:#}"))
        })?;
        let ca = dcap_qvl::intel::quote_ca(&parsed)
            .map_err(|e| TeeError::InvalidCollateral(format!("PCK CA: {e:#}")))?;
        let tee = if parsed.header.is_sgx() { "sgx" } else { "tdx" };
        let url = |tee: &str, path: &str| format!("{}/{tee}/certification/v4/{path}", self.base);
        let http = self.http()?;

        let crl = self
            .get(
                &http,
                &url("sgx", &format!("pckcrl?ca={}&encoding=der", ca.as_id_str())),
            )
            .await?;
        let pck_crl_issuer_chain = header(&crl, &["SGX-PCK-CRL-Issuer-Chain"])?;

        let tcb = self
            .get(
                &http,
                &url(tee, &format!("tcb?fmspc={}", hex::encode_upper(fmspc))),
            )
            .await?;
        let tcb_info_issuer_chain = header(
            &tcb,
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
        )?;
        let tcb_json: TcbInfoResponse<'_> = serde_json::from_slice(&tcb.body)
            .map_err(|e| TeeError::InvalidCollateral(format!("TCB info response: {e}")))?;

        let qe = self.get(&http, &url(tee, "qe/identity")).await?;
        let qe_identity_issuer_chain = header(&qe, &["SGX-Enclave-Identity-Issuer-Chain"])?;
        let qe_json: QeIdentityResponse<'_> = serde_json::from_slice(&qe.body)
            .map_err(|e| TeeError::InvalidCollateral(format!("QE identity response: {e}")))?;

        // A PCCS serves the root CA CRL hex-encoded; Intel's PCS does not serve it at all.
        let root_ca_crl = match self.get(&http, &url("sgx", "rootcacrl")).await {
            Ok(r) => {
                let text = String::from_utf8_lossy(&r.body);
                hex::decode(text.trim()).unwrap_or(r.body)
            }
            Err(_) => self.get(&http, INTEL_ROOT_CA_CRL_URL).await?.body,
        };
        let sig = |s: &str, what: &str| {
            hex::decode(s)
                .map_err(|_| TeeError::InvalidCollateral(format!("{what} signature is not hex")))
        };
        Ok(QuoteCollateralV3 {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl: crl.body,
            tcb_info_issuer_chain,
            tcb_info: tcb_json.tcb_info.get().to_string(),
            tcb_info_signature: sig(&tcb_json.signature, "TCB info")?,
            qe_identity_issuer_chain,
            qe_identity: qe_json.enclave_identity.get().to_string(),
            qe_identity_signature: sig(&qe_json.signature, "QE identity")?,
            pck_certificate_chain: Some(pck_chain),
        })
    }
}

/// Fetches collateral for quotes on demand through a PCCS and keeps it for a while, keyed by
/// the platform (FMSPC, PCK CA, SGX or TDX): what the attestation service uses with `--pccs`.
#[derive(Debug)]
pub struct CollateralCache {
    client: PccsClient,
    ttl: u64,
    entries: std::sync::Mutex<
        std::collections::HashMap<String, (u64, crate::evidence::dcap::DcapVerifier)>,
    >,
}

impl CollateralCache {
    /// Keeps fetched collateral `ttl` seconds.
    pub fn new(client: PccsClient, ttl: u64) -> Self {
        Self {
            client,
            ttl,
            entries: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The verifier for `quote`'s platform, fetched (on a separate thread with its own
    /// runtime, so this may be called from any context) if absent or older than the TTL.
    pub fn verifier_for(
        &self,
        quote: &[u8],
        now: u64,
    ) -> Result<crate::evidence::dcap::DcapVerifier> {
        let key = platform_key(quote)?;
        if let Ok(entries) = self.entries.lock() {
            if let Some((at, v)) = entries.get(&key) {
                if now < at.saturating_add(self.ttl) {
                    return Ok(v.clone());
                }
            }
        }
        let client = self.client.clone();
        let fetched = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| TeeError::Network(format!("runtime for the PCCS fetch: {e}")))?;
                rt.block_on(client.fetch(quote))
            })
            .join()
            .unwrap_or(Err(TeeError::Internal("the PCCS fetch thread panicked")))
        })?;
        let verifier = crate::evidence::dcap::DcapVerifier::from_collateral(fetched);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 4096 {
                entries.clear();
            }
            entries.insert(key, (now, verifier.clone()));
        }
        Ok(verifier)
    }
}

/// `sgx|tdx/FMSPC/ca` of a quote with an embedded PCK chain.
fn platform_key(quote: &[u8]) -> Result<String> {
    let parsed = std::panic::catch_unwind(|| dcap_qvl::quote::Quote::parse(quote))
        .map_err(|_| TeeError::UnknownEvidence("malformed quote (the parser gave up)".into()))?
        .map_err(|e| TeeError::UnknownEvidence(format!("malformed quote: {e:#}")))?;
    let fmspc = dcap_qvl::intel::quote_fmspc(&parsed).map_err(|e| {
        TeeError::InvalidCollateral(format!("FMSPC from the PCK certificate: {e:#}"))
    })?;
    let ca = dcap_qvl::intel::quote_ca(&parsed)
        .map_err(|e| TeeError::InvalidCollateral(format!("PCK CA: {e:#}")))?;
    Ok(format!(
        "{}/{}/{}",
        if parsed.header.is_sgx() { "sgx" } else { "tdx" },
        hex::encode_upper(fmspc),
        ca.as_id_str()
    ))
}

fn header(resp: &Fetched, names: &[&str]) -> Result<String> {
    for name in names {
        if let Some(v) = resp.headers.get(*name) {
            let raw = v
                .to_str()
                .map_err(|_| TeeError::InvalidCollateral(format!("{name} header is not text")))?;
            return percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| TeeError::InvalidCollateral(format!("{name} header is not UTF-8")));
        }
    }
    Err(TeeError::InvalidCollateral(format!(
        "the PCCS response lacks the {} header",
        names.join(" / ")
    )))
}
