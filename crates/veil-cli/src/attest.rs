//! `veil attest …`: attestation evidence verification.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use veil_tee::evidence::dcap::DcapVerifier;
use veil_tee::evidence::sim::SimVerifier;
use veil_tee::evidence::{detect, EvidenceKind, Verifier};

#[derive(Subcommand, Debug)]
pub enum AttestCommand {
    /// Verify evidence (SGX quote v3, TDX quote v4/v5, SEV-SNP report, or simulated) and print its claims;
    /// exit 1 with the reason if it is rejected.
    Verify(VerifyArgs),
    /// Produce evidence from Veil's simulated TEE (software only, for demos and tests): the
    /// measurement is SHA-384 of the workload file, the report data binds the nonce and
    /// public key. Prints the simulated platform's public key.
    Simulate(SimulateArgs),
    /// Run the attestation service: nonces, `POST /attest` → policy → signed token (JWT), JWKS.
    Serve(crate::services::AttestServeArgs),
    /// Act as a simulated workload: get a nonce, attest to the service, print the token.
    Request(crate::services::AttestRequestArgs),
    /// Measure the attestation service and key broker on loopback: attestations per second
    /// and key release latency, with simulated evidence.
    Bench(crate::services::AttestBenchArgs),
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// The workload whose bytes are measured.
    #[arg(long)]
    pub workload: PathBuf,
    /// Nonce from the verifier (text).
    #[arg(long, default_value = "")]
    pub nonce: String,
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
    /// For SEV-SNP reports: the VCEK certificate (DER, as AMD's KDS serves it).
    #[arg(long)]
    pub vcek: Option<PathBuf>,
    /// Fetch SGX/TDX collateral from this PCCS (v4 API) instead of --collateral.
    #[arg(long, conflicts_with = "collateral")]
    pub pccs: Option<String>,
    /// Extra trusted CA (PEM) for a PCCS with a self-signed certificate.
    #[arg(long, requires = "pccs")]
    pub pccs_ca: Option<PathBuf>,
    /// Save the collateral fetched from the PCCS (JSON, readable by --collateral).
    #[arg(long, requires = "pccs")]
    pub save_collateral: Option<PathBuf>,
    /// Verify as of this time (RFC 3339, e.g. 2025-07-01T00:00:00Z); default: now.
    #[arg(long)]
    pub at: Option<String>,
    /// The simulated platform's public key (64 hex characters), for simulated evidence.
    #[arg(long)]
    pub sim_platform_key: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(cmd: AttestCommand) -> Result<()> {
    match cmd {
        AttestCommand::Verify(args) => verify(&args),
        AttestCommand::Simulate(args) => simulate(&args),
        AttestCommand::Serve(args) => crate::services::attest_serve(&args),
        AttestCommand::Request(args) => crate::services::attest_request(&args),
        AttestCommand::Bench(args) => crate::services::attest_bench(&args),
    }
}

fn simulate(args: &SimulateArgs) -> Result<()> {
    use sha2::{Digest, Sha384};
    use veil_tee::evidence::sim::SimulatedPlatform;
    let code = std::fs::read(&args.workload)
        .with_context(|| format!("cannot read {}", args.workload.display()))?;
    let measurement: [u8; 48] = Sha384::digest(&code).into();
    let pk = hex::decode(args.public_key.trim()).context("--public-key is not hex")?;
    let report_data = veil_tee::binding::expected_report_data(args.nonce.as_bytes(), &pk, b"");
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
    outln!("measurement    {}", hex::encode(measurement));
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
    let client = veil_tee::pccs::PccsClient::new(url, ca_pem.as_deref())?;
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
        Some(t) => humantime::parse_rfc3339(t)
            .with_context(|| {
                format!("--at {t:?} is not an RFC 3339 time (e.g. 2025-07-01T00:00:00Z)")
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
            let Some(path) = &args.vcek else {
                bail!("SEV-SNP evidence needs --vcek FILE (the VCEK certificate, DER)");
            };
            let der = std::fs::read(path)
                .with_context(|| format!("cannot read VCEK {}", path.display()))?;
            veil_tee::evidence::snp::SnpVerifier::from_vcek_der(&der)?.verify(&evidence, now)?
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
            outln!("verified: {} evidence", claims.tee.name());
            if claims.tee == veil_tee::TeeKind::Sim {
                outln!("WARNING: simulated TEE — no hardware protection");
            }
            for (name, value) in &claims.measurements {
                outln!("{name:<14} {value}");
            }
            if let Some(signer) = &claims.signer {
                outln!("{:<14} {signer}", "signer");
            }
            if let Some(p) = claims.product_id {
                outln!("{:<14} {p}", "product_id");
            }
            if let Some(s) = claims.security_version {
                outln!("{:<14} {s}", "svn");
            }
            outln!("{:<14} {}", "debug", claims.debug);
            outln!("{:<14} {}", "tcb_status", claims.tcb_status);
            if !claims.advisory_ids.is_empty() {
                outln!("{:<14} {}", "advisories", claims.advisory_ids.join(", "));
            }
            outln!("{:<14} {}", "report_data", claims.report_data);
        }
    }
    Ok(())
}
