//! `veil attest …`: attestation evidence verification.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use veil_attest::evidence::dcap::DcapVerifier;
use veil_attest::evidence::sim::SimVerifier;
use veil_attest::evidence::{detect, EvidenceKind, Verifier};

#[derive(Subcommand, Debug)]
pub enum AttestCommand {
    /// Verify evidence (SGX quote v3, TDX quote v4/v5, SEV-SNP report, or simulated) and print its claims;
    /// exit 1 with the reason if it is rejected.
    Verify(Box<VerifyArgs>),
    /// Produce evidence from Veil's simulated TEE (software only, for demos and tests): the
    /// measurement is SHA-384 of the workload file, the report data binds the nonce and
    /// public key. Prints the simulated platform's public key, and also the module's launch
    /// measurement (module + launch limits), which measured workloads and data rooms report.
    Simulate(SimulateArgs),
    /// Run the attestation service: nonces, `POST /attest` → policy → signed token (JWT), JWKS.
    Serve(Box<crate::services::AttestServeArgs>),
    /// Act as a simulated workload: get a nonce, attest to the service, print the token.
    Request(crate::services::AttestRequestArgs),
    /// Measure the attestation service and key broker on loopback: attestations per second
    /// and key release latency, with simulated evidence.
    Bench(crate::services::AttestBenchArgs),
    /// Verify a Veil audit log (attestation service, key broker) against a signed head: the
    /// chain, every entry's signature, and that the log holds the history the head vouches
    /// for (a cut tail or a rewritten history is refused).
    VerifyLog(VerifyLogArgs),
}

#[derive(Args, Debug)]
pub struct VerifyLogArgs {
    /// The log (JSON lines).
    pub log: PathBuf,
    /// The signed head: a file, or the service's URL (`…/audit/head`).
    #[arg(long)]
    pub head: String,
    /// The writer's Ed25519 public key (hex), as printed when the service started. Without
    /// it, the key named in the head is used, which proves only that head and log agree.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The workload whose bytes are measured.
    #[arg(long)]
    pub workload: PathBuf,
    /// Nonce from the verifier, as the attestation service issues it (`GET /nonce`):
    /// base64url or base64. A value that is not base64 is bound as text, with a warning.
    #[arg(long, default_value = "")]
    pub nonce: String,
    /// A nonce given as text (its UTF-8 bytes are bound).
    #[arg(long, conflicts_with = "nonce")]
    pub nonce_text: Option<String>,
    /// The workload's public key (hex).
    #[arg(long, default_value = "")]
    pub public_key: String,
    /// 32-byte platform seed (hex), to make the platform key reproducible; default: random.
    #[arg(long)]
    pub platform_seed: Option<String>,
    /// Where to write the evidence.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object.
    Json,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The evidence file (raw quote bytes, or simulated evidence).
    pub evidence: PathBuf,
    /// Collateral for SGX/TDX quotes: the JSON form used by dcap-qvl (PCK CRL and chains, TCB
    /// info and QE identity with their signatures).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// For SEV-SNP reports signed by the chip's VCEK: the VCEK certificate (DER, as AMD's
    /// KDS serves it).
    #[arg(long)]
    pub vcek: Option<PathBuf>,
    /// For SEV-SNP reports signed by a VLEK (a key AMD issued to a cloud provider): the VLEK
    /// certificate (DER). It must chain to AMD's ASVK; the chip id is not checked.
    #[arg(long, conflicts_with = "vcek")]
    pub vlek: Option<PathBuf>,
    /// For SEV-SNP reports: AMD's certificate revocation list (DER, from
    /// `https://kdsintf.amd.com/{vcek,vlek}/v1/{Milan,Genoa,Turin}/crl`), read offline;
    /// repeat for several product lines. It must be signed by AMD's ARK and current at the
    /// verification time (`--at`), and must not list the chain's ASK/ASVK. Without it,
    /// revocation is not checked.
    #[arg(long, value_name = "FILE")]
    pub snp_crl: Vec<PathBuf>,
    /// Fetch SGX/TDX collateral from this PCCS (v4 API) instead of --collateral.
    #[arg(long, conflicts_with = "collateral")]
    pub pccs: Option<String>,
    /// Extra trusted CA (PEM) for a PCCS with a self-signed certificate.
    #[arg(long, requires = "pccs")]
    pub pccs_ca: Option<PathBuf>,
    /// Save the collateral fetched from the PCCS (JSON, readable by --collateral).
    #[arg(long, requires = "pccs")]
    pub save_collateral: Option<PathBuf>,
    /// Verify as of this time (RFC 3339, e.g. 2025-07-01T00:00:00Z, or a date, 2025-07-01,
    /// meaning its midnight UTC); default: now. Certificates, CRLs and TCB information must be
    /// valid then.
    #[arg(long)]
    pub at: Option<String>,
    /// For SEV-SNP reports: the oldest TCB still current for the product line (from AMD's
    /// security bulletins), `bootloader=N,tee=N,snp=N,microcode=N[,fmc=N]`. The TCB status is
    /// `UpToDate` or `OutOfDate` against it; without it, `Unknown`.
    #[arg(long)]
    pub snp_min_tcb: Option<veil_attest::evidence::snp::SnpTcb>,
    /// Exit 1 unless the TCB status is `UpToDate` (a platform needing configuration or
    /// software hardening, out of date, or of unknown status fails). Without it, such
    /// evidence verifies (exit 0) and a note on stderr says so.
    #[arg(long)]
    pub require_up_to_date: bool,
    /// Also evaluate this policy (TOML allow-list or `.rego`) on the claims; exit 1 if it
    /// denies them.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The simulated platform's public key (64 hex characters), for simulated evidence.
    #[arg(long)]
    pub sim_platform_key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(cmd: AttestCommand) -> Result<()> {
    crate::room::escape_error(match cmd {
        AttestCommand::Verify(args) => verify(&args),
        AttestCommand::Simulate(args) => simulate(&args),
        AttestCommand::Serve(args) => crate::services::attest_serve(&args),
        AttestCommand::Request(args) => crate::services::attest_request(&args),
        AttestCommand::Bench(args) => crate::services::attest_bench(&args),
        AttestCommand::VerifyLog(args) => verify_log(&args),
    })
}

fn verify_log(args: &VerifyLogArgs) -> Result<()> {
    use veil_attest::audit::{parse_public_key, verify_against_head, SignedHead};
    let text = std::fs::read_to_string(&args.log)
        .with_context(|| format!("cannot read {}", args.log.display()))?;
    let head_json = if args.head.starts_with("http://") || args.head.starts_with("https://") {
        let url = args.head.clone();
        crate::services::runtime()?.block_on(async move {
            let client = veil_server::client::http_client()?;
            let resp = client
                .get(&url)
                .send()
                .await
                .with_context(|| format!("cannot fetch {url}"))?;
            if !resp.status().is_success() {
                bail!("{url} answered {}", resp.status());
            }
            Ok(resp.text().await?)
        })?
    } else {
        std::fs::read_to_string(&args.head).with_context(|| format!("cannot read {}", args.head))?
    };
    let head: SignedHead =
        serde_json::from_str(&head_json).context("the head is not a Veil signed head")?;
    let key = args.key.as_deref().map(parse_public_key).transpose()?;
    let entries = verify_against_head(&text, &head, key.as_ref())?;
    outln!(
        "log verified: {} entries, chain intact, every entry signed; the head signed at {} \
         vouches for the first {}",
        entries.len(),
        head.time,
        head.entries
    );
    if key.is_none() {
        eprintln!(
            "note: the writer's key was taken from the head itself ({}): pass --key to pin it",
            crate::room::untrusted(&head.public_key)
        );
    }
    Ok(())
}

/// The nonce bytes of `veil attest simulate`: base64url/base64 as the service issues them,
/// or text when asked for (or when the value is not base64, with a warning).
fn nonce_bytes(args: &SimulateArgs) -> Vec<u8> {
    if let Some(text) = &args.nonce_text {
        return text.as_bytes().to_vec();
    }
    if args.nonce.is_empty() {
        return Vec::new();
    }
    match veil_attest::util::decode_b64("nonce", args.nonce.trim()) {
        Ok(bytes) => bytes,
        Err(_) => {
            eprintln!(
                "warning: --nonce is not base64 (the attestation service's format): binding \
                 its text; say --nonce-text to mean text"
            );
            args.nonce.as_bytes().to_vec()
        }
    }
}

fn simulate(args: &SimulateArgs) -> Result<()> {
    use sha2::{Digest, Sha384};
    use veil_attest::evidence::sim::SimulatedPlatform;
    let code = std::fs::read(&args.workload)
        .with_context(|| format!("cannot read {}", args.workload.display()))?;
    let measurement: [u8; 48] = Sha384::digest(&code).into();
    let pk = hex::decode(args.public_key.trim()).context("--public-key is not hex")?;
    let nonce = nonce_bytes(args);
    let report_data = veil_attest::binding::expected_report_data(&nonce, &pk, b"");
    let platform = match &args.platform_seed {
        Some(seed) => {
            let bytes = hex::decode(seed.trim()).context("--platform-seed is not hex")?;
            let seed: [u8; 32] = bytes.try_into().map_err(|_| {
                anyhow::anyhow!("--platform-seed must be 32 bytes (64 hex characters)")
            })?;
            SimulatedPlatform::from_seed(&seed)
        }
        None => SimulatedPlatform::generate()?,
    };
    let evidence = platform.issue(&measurement, &report_data, false, 1);
    std::fs::write(&args.out, &evidence)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    outln!("WARNING: simulated TEE — no hardware protection");
    outln!("evidence       {}", args.out.display());
    // Scripts read the first field of each line: the explanations go on lines of their own.
    outln!("measurement    {}", hex::encode(measurement));
    outln!("               (SHA-384 of the file: what this simulated evidence reports)");
    // A measured workload (and a data room) measures the module *and* its launch limits, so
    // the same file has a second measurement there: say which is which.
    let launch = veil_room::workload::LaunchConfig::default();
    if let Ok(launch_measurement) = veil_room::workload::measure_module(&code, &launch) {
        outln!("launch_measurement {}", hex::encode(launch_measurement));
        outln!(
            "               (the module with its launch limits, fuel {}, memory {} bytes, no \
             clock: what a measured workload or data room launched with these limits reports)",
            launch.fuel,
            launch.max_memory_bytes
        );
    }
    outln!(
        "nonce          {} bytes bound{}",
        nonce.len(),
        if args.nonce_text.is_some() {
            " (text)"
        } else {
            ""
        }
    );
    outln!("platform_key   {}", hex::encode(platform.public_key()));
    Ok(())
}

/// Fetches the collateral for `quote` from a PCCS.
pub fn fetch_collateral(
    url: &str,
    ca: Option<&std::path::Path>,
    quote: &[u8],
) -> Result<DcapVerifier> {
    let ca_pem = ca
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let client = veil_attest::pccs::PccsClient::new(url, ca_pem.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let collateral = rt
        .block_on(client.fetch(quote))
        .with_context(|| format!("cannot fetch collateral from {url}"))?;
    Ok(DcapVerifier::from_collateral(collateral))
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let evidence = std::fs::read(&args.evidence)
        .with_context(|| format!("cannot read evidence {}", args.evidence.display()))?;
    let now = match &args.at {
        Some(t) => parse_time(t)
            .with_context(|| {
                format!(
                    "--at {t:?} is not an RFC 3339 time (e.g. 2025-07-01T00:00:00Z) or a date \
                     (2025-07-01)"
                )
            })?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let kind = detect(&evidence)?;
    let claims = match kind {
        EvidenceKind::SgxQuote | EvidenceKind::TdxQuote => {
            if let Some(url) = &args.pccs {
                let verifier = fetch_collateral(url, args.pccs_ca.as_deref(), &evidence)?;
                if let Some(path) = &args.save_collateral {
                    std::fs::write(path, verifier.collateral_json()?)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                verifier.verify(&evidence, now)?
            } else {
                let Some(path) = &args.collateral else {
                    bail!("{kind:?} evidence needs --collateral FILE (offline verification against stored collateral) or --pccs URL");
                };
                let json = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read collateral {}", path.display()))?;
                DcapVerifier::from_collateral_json(&json)?.verify(&evidence, now)?
            }
        }
        EvidenceKind::SnpReport => {
            use veil_attest::evidence::snp::SnpVerifier;
            type FromDer = fn(&[u8]) -> veil_attest::Result<SnpVerifier>;
            let (path, what, from_der): (_, _, FromDer) = match (&args.vcek, &args.vlek) {
                (Some(p), _) => (p, "VCEK", SnpVerifier::from_vcek_der),
                (None, Some(p)) => (p, "VLEK", SnpVerifier::from_vlek_der),
                (None, None) => bail!(
                    "SEV-SNP evidence needs --vcek FILE (the chip's VCEK certificate, DER) \
                         or --vlek FILE (a cloud provider's VLEK certificate, DER)"
                ),
            };
            let der = std::fs::read(path)
                .with_context(|| format!("cannot read {what} {}", path.display()))?;
            let mut verifier = from_der(&der)?;
            if let Some(min) = args.snp_min_tcb {
                verifier = verifier.with_min_tcb(min);
            }
            verifier = with_snp_crls(verifier, &args.snp_crl)?;
            verifier.verify(&evidence, now)?
        }
        EvidenceKind::Simulated => {
            let Some(key) = &args.sim_platform_key else {
                bail!("simulated evidence needs --sim-platform-key HEX (the simulated platform's public key)");
            };
            let bytes = hex::decode(key.trim()).context("--sim-platform-key is not hex")?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| {
                anyhow::anyhow!("--sim-platform-key must be 32 bytes (64 hex characters)")
            })?;
            SimVerifier::new(&key)?.verify(&evidence, now)?
        }
    };
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string(&claims)?),
        Format::Text => {
            use crate::room::untrusted;
            outln!("verified: {} evidence", claims.tee.name());
            if claims.tee == veil_attest::TeeKind::Sim {
                outln!("WARNING: simulated TEE — no hardware protection");
            }
            for (name, value) in &claims.measurements {
                outln!("{:<14} {}", untrusted(name), untrusted(value));
            }
            if let Some(signer) = &claims.signer {
                outln!("{:<14} {}", "signer", untrusted(signer));
            }
            if let Some(p) = claims.product_id {
                outln!("{:<14} {p}", "product_id");
            }
            if let Some(s) = claims.security_version {
                outln!("{:<14} {s}", "svn");
            }
            if let Some(vmpl) = claims.vmpl {
                outln!("{:<14} {vmpl}", "vmpl");
            }
            if let Some(key) = &claims.signing_key {
                outln!("{:<14} {}", "signing_key", untrusted(key));
            }
            if !claims.tcb.is_empty() {
                let tcb: Vec<String> = claims
                    .tcb
                    .iter()
                    .map(|(k, v)| format!("{}={v}", untrusted(k)))
                    .collect();
                outln!("{:<14} {}", "tcb", tcb.join(","));
            }
            outln!("{:<14} {}", "debug", claims.debug);
            outln!("{:<14} {}", "tcb_status", untrusted(&claims.tcb_status));
            if !claims.advisory_ids.is_empty() {
                outln!(
                    "{:<14} {}",
                    "advisories",
                    untrusted(&claims.advisory_ids.join(", "))
                );
            }
            outln!("{:<14} {}", "report_data", untrusted(&claims.report_data));
        }
    }
    let status_ok = claims.tcb_status == "UpToDate" || claims.tee == veil_attest::TeeKind::Sim;
    let advisories = if claims.advisory_ids.is_empty() {
        String::new()
    } else {
        format!(
            " (advisories: {})",
            crate::room::untrusted(&claims.advisory_ids.join(", "))
        )
    };
    if args.require_up_to_date && !status_ok {
        bail!(
            "the evidence verifies but its TCB status is {}, not UpToDate{advisories}",
            crate::room::untrusted(&claims.tcb_status)
        );
    }
    if let Some(path) = &args.policy {
        let policy = veil_attest::policy::Policy::from_file(path)?;
        policy.evaluate(&serde_json::to_value(&claims)?)?;
        eprintln!("policy {} allows these claims", path.display());
    } else if !status_ok {
        eprintln!(
            "note: verified, but the TCB status is {}, not UpToDate{advisories}; this exits 0. \
             Pass --require-up-to-date to fail unless UpToDate, or --policy FILE to judge the \
             claims with a policy.",
            crate::room::untrusted(&claims.tcb_status)
        );
    }
    Ok(())
}

/// Adds AMD's CRLs read from `paths` to an SNP verifier.
pub fn with_snp_crls(
    mut verifier: veil_attest::evidence::snp::SnpVerifier,
    paths: &[PathBuf],
) -> Result<veil_attest::evidence::snp::SnpVerifier> {
    for path in paths {
        let der = std::fs::read(path)
            .with_context(|| format!("cannot read the CRL {}", path.display()))?;
        verifier = verifier
            .with_crl(&der)
            .with_context(|| format!("--snp-crl {}", path.display()))?;
    }
    Ok(verifier)
}

/// An RFC 3339 time, or a date meaning its midnight UTC.
fn parse_time(t: &str) -> Result<SystemTime> {
    let t = t.trim();
    let full = if t.len() == 10 && t.as_bytes().get(4) == Some(&b'-') {
        format!("{t}T00:00:00Z")
    } else {
        t.to_string()
    };
    Ok(humantime::parse_rfc3339(&full)?)
}
