//! `veil attest serve|request` and `veil kbs serve|put|list|revoke|get`: the attestation
//! service, the key broker, and a simulated workload client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sha2::{Digest, Sha384};
use veil_attest::audit::AuditLog;
use veil_attest::evidence::sim::{SimVerifier, SimulatedPlatform};
use veil_attest::policy::Policy;
use veil_attest::service::{AttestationService, Verifiers};
use veil_attest::token::{TokenAlgorithm, TokenIssuer};
use veil_kbs::{KeyBroker, SecretStore};
use veil_server::client::SimulatedWorkload;

use crate::attest::Format;

#[derive(Args, Debug)]
pub struct AttestServeArgs {
    /// Address to listen on (loopback by default; put TLS in front of it to expose it).
    #[arg(long, default_value = "127.0.0.1:8470")]
    pub listen: SocketAddr,
    /// The attestation policy: a TOML allow-list, or Rego if the file ends in `.rego`.
    #[arg(long)]
    pub policy: PathBuf,
    /// SGX/TDX collateral (dcap-qvl JSON); repeat for several platforms.
    #[arg(long)]
    pub collateral: Vec<PathBuf>,
    /// Fetch SGX/TDX collateral from this PCCS (v4 API) for quotes no --collateral verifies.
    #[arg(long)]
    pub pccs: Option<String>,
    /// Extra trusted CA (PEM) for a PCCS with a self-signed certificate.
    #[arg(long, requires = "pccs")]
    pub pccs_ca: Option<PathBuf>,
    /// How long fetched collateral is reused per platform (e.g. 1h).
    #[arg(long, default_value = "1h")]
    pub pccs_cache: humantime::Duration,
    /// SEV-SNP VCEK certificate (DER); repeat for several chips.
    #[arg(long)]
    pub vcek: Vec<PathBuf>,
    /// SEV-SNP VLEK certificate (DER, a key AMD issued to a cloud provider); repeat for
    /// several.
    #[arg(long)]
    pub vlek: Vec<PathBuf>,
    /// AMD's certificate revocation list for SEV-SNP (DER, from
    /// `https://kdsintf.amd.com/{vcek,vlek}/v1/{product}/crl`), read at start; repeat for
    /// several product lines. Every SNP report is then refused unless a CRL from its chain's
    /// ARK is current and does not list its ASK/ASVK. Restart with a fresh one before its
    /// nextUpdate.
    #[arg(long, value_name = "FILE")]
    pub snp_crl: Vec<PathBuf>,
    /// Trust a simulated platform key (hex); repeat for several. Simulated evidence still
    /// needs a policy that allows `sim` by name.
    #[arg(long)]
    pub sim_platform_key: Vec<String>,
    /// Verify DCAP/SNP collateral as of this time (RFC 3339) instead of now: for recorded
    /// evidence whose collateral has expired.
    #[arg(long)]
    pub verify_at: Option<String>,
    /// Token signing key (PKCS#8 DER); generated and written (mode 0600) if absent.
    #[arg(long, default_value = "veil-attest-signing.key")]
    pub signing_key: PathBuf,
    /// Token signature algorithm: ES256 or ES384.
    #[arg(long, default_value = "ES256")]
    pub alg: String,
    /// How long a nonce stays valid (e.g. 60s).
    #[arg(long, default_value = "60s")]
    pub nonce_ttl: humantime::Duration,
    /// How long a token stays valid (e.g. 5m).
    #[arg(long, default_value = "5m")]
    pub token_ttl: humantime::Duration,
    /// Audit log (JSON lines, hash-chained); appended to.
    #[arg(long, default_value = "veil-attest-audit.jsonl")]
    pub audit_log: PathBuf,
    /// Ed25519 key the audit log's entries and heads (`GET /audit/head`) are signed with
    /// (default: beside the log, with the extension `.key`); generated and written (mode
    /// 0600) if absent.
    #[arg(long)]
    pub audit_key: Option<PathBuf>,
    /// For SEV-SNP reports: the oldest TCB still current (`bootloader=N,tee=N,snp=N,
    /// microcode=N[,fmc=N]`); without it their TCB status is `Unknown`.
    #[arg(long)]
    pub snp_min_tcb: Option<String>,
}

#[derive(Args, Debug)]
pub struct AttestRequestArgs {
    /// The attestation service's URL.
    #[arg(long, default_value = "http://127.0.0.1:8470")]
    pub service: String,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Write the token here (default: print it).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A simulated workload: its code and the simulated platform it runs on.
#[derive(Args, Debug)]
pub struct WorkloadArgs {
    /// The workload's code: its measurement is SHA-384 of these bytes.
    #[arg(long)]
    pub workload: PathBuf,
    /// The simulated platform's 32-byte seed (hex).
    #[arg(long)]
    pub platform_seed: String,
    /// The workload's security version.
    #[arg(long, default_value_t = 1)]
    pub svn: u16,
}

#[derive(Subcommand, Debug)]
pub enum KbsCommand {
    /// Run the key broker: `POST /release/{name}` with an attestation token.
    Serve(KbsServeArgs),
    /// Store a secret with its release policy (replaces and un-revokes an existing one).
    Put(KbsPutArgs),
    /// List secrets (names, sizes, policies; never values).
    List(KbsListArgs),
    /// Revoke a secret: it is never released again.
    Revoke(KbsRevokeArgs),
    /// Act as a simulated workload: attest, then have a secret released to it and open it.
    Get(KbsGetArgs),
}

#[derive(Args, Debug)]
pub struct KbsServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8471")]
    pub listen: SocketAddr,
    /// The secret store directory.
    #[arg(long, default_value = "veil-kbs")]
    pub store: PathBuf,
    /// The attestation service's JWKS: a URL (fetched now and again when a token names an
    /// unknown key) or a file.
    #[arg(long)]
    pub jwks: String,
    /// Audit log (default: audit.jsonl in the store).
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Ed25519 key the audit log's entries and heads (`GET /audit/head`) are signed with
    /// (default: audit.key in the store); generated (mode 0600) if absent.
    #[arg(long)]
    pub audit_key: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct KbsPutArgs {
    /// The secret's name.
    pub name: String,
    /// The secret store directory.
    #[arg(long, default_value = "veil-kbs")]
    pub store: PathBuf,
    /// Release policy: a TOML allow-list, or Rego if the file ends in `.rego`.
    #[arg(long)]
    pub policy: PathBuf,
    /// Read the value from this file.
    #[arg(long, conflicts_with = "generate")]
    pub value_file: Option<PathBuf>,
    /// Generate a random value of this many bytes (e.g. a 32-byte data key).
    #[arg(long)]
    pub generate: Option<usize>,
}

#[derive(Args, Debug)]
pub struct KbsListArgs {
    /// The secret store directory.
    #[arg(long, default_value = "veil-kbs")]
    pub store: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct KbsRevokeArgs {
    /// The secret's name.
    pub name: String,
    /// The secret store directory.
    #[arg(long, default_value = "veil-kbs")]
    pub store: PathBuf,
}

#[derive(Args, Debug)]
pub struct KbsGetArgs {
    /// The secret's name.
    pub name: String,
    /// The key broker's URL.
    #[arg(long, default_value = "http://127.0.0.1:8471")]
    pub kbs: String,
    /// The attestation service's URL.
    #[arg(long, default_value = "http://127.0.0.1:8470")]
    pub service: String,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Where to write the secret.
    #[arg(long)]
    pub out: PathBuf,
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn hex32(text: &str, flag: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(text.trim()).with_context(|| format!("{flag} is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{flag} must be 32 bytes (64 hex characters)"))
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    veil_attest::util::write_private(path, bytes)
        .with_context(|| format!("cannot write {} (it must not exist yet)", path.display()))
}

pub(crate) async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

pub fn attest_serve(args: &AttestServeArgs) -> Result<()> {
    let config = veil_server::mount::AttestConfig {
        policy: args.policy.clone(),
        collateral: args.collateral.clone(),
        pccs: args.pccs.clone(),
        pccs_ca: args.pccs_ca.clone(),
        pccs_cache_secs: args.pccs_cache.as_secs(),
        vcek: args.vcek.clone(),
        vlek: args.vlek.clone(),
        snp_crl: args.snp_crl.clone(),
        snp_min_tcb: args.snp_min_tcb.clone(),
        sim_platform_keys: args.sim_platform_key.clone(),
        verify_at: args.verify_at.clone(),
        signing_key: args.signing_key.clone(),
        alg: args.alg.clone(),
        nonce_ttl_secs: args.nonce_ttl.as_secs(),
        token_ttl_secs: args.token_ttl.as_secs(),
        audit_log: args.audit_log.clone(),
        audit_key: args.audit_key.clone(),
    };
    let built = veil_server::mount::attestation_service(&config, Path::new(""))?;
    if built.new_signing_key {
        eprintln!(
            "generated a new {} signing key in {}",
            args.alg,
            args.signing_key.display()
        );
    }
    let (service, audit_key) = (built.service, built.audit_key);
    let router = veil_server::attest::router(Arc::new(service));
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "attestation service on http://{addr} (JWKS at /.well-known/jwks.json); Ctrl-C stops"
        );
        if let Some(key) = &audit_key {
            eprintln!("audit log signed by Ed25519 key {key} (signed head at /audit/head)");
        }
        veil_server::serve(listener, router, shutdown_signal()).await?;
        Ok(())
    })
}

pub fn attest_request(args: &AttestRequestArgs) -> Result<()> {
    let workload = workload(&args.workload)?;
    let resp = runtime()?.block_on(workload.attest(&args.service))?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &resp.token)
                .with_context(|| format!("cannot write {}", path.display()))?;
            outln!(
                "token written to {} (expires {})",
                path.display(),
                resp.claims.exp
            );
        }
        None => outln!("{}", resp.token),
    }
    Ok(())
}

fn workload(args: &WorkloadArgs) -> Result<SimulatedWorkload> {
    let code = std::fs::read(&args.workload)
        .with_context(|| format!("cannot read {}", args.workload.display()))?;
    let platform = SimulatedPlatform::from_seed(&hex32(&args.platform_seed, "--platform-seed")?);
    Ok(SimulatedWorkload::new(
        platform,
        Sha384::digest(&code).into(),
        args.svn,
    ))
}

pub fn kbs(cmd: KbsCommand) -> Result<()> {
    match cmd {
        KbsCommand::Serve(args) => kbs_serve(&args),
        KbsCommand::Put(args) => {
            let store = SecretStore::open(&args.store)?;
            let value = match (&args.value_file, args.generate) {
                (Some(path), None) => zeroize::Zeroizing::new(
                    std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                (None, Some(n)) => {
                    if n == 0 || n > veil_kbs::MAX_SECRET_LEN {
                        bail!("--generate takes 1 to {} bytes", veil_kbs::MAX_SECRET_LEN);
                    }
                    let mut v = zeroize::Zeroizing::new(vec![0u8; n]);
                    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut v)
                        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
                    v
                }
                _ => bail!("give the value with --value-file FILE or --generate BYTES"),
            };
            let text = std::fs::read_to_string(&args.policy)
                .with_context(|| format!("cannot read {}", args.policy.display()))?;
            let kind = if args.policy.extension().is_some_and(|e| e == "rego") {
                "rego"
            } else {
                "toml"
            };
            let policy_name = args
                .policy
                .file_name()
                .map_or_else(|| "policy".into(), |n| n.to_string_lossy().into_owned());
            store.put(
                &args.name,
                &value,
                kind,
                &policy_name,
                &text,
                veil_attest::util::unix_now(),
            )?;
            outln!(
                "stored {} ({} bytes, policy {policy_name})",
                args.name,
                value.len()
            );
            Ok(())
        }
        KbsCommand::List(args) => {
            let list = SecretStore::open(&args.store)?.list()?;
            match args.format {
                Format::Json => outln!("{}", serde_json::to_string(&list)?),
                Format::Text => {
                    outln!(
                        "{:<24} {:>8}  {:<8} {:<20} policy sha256",
                        "name",
                        "bytes",
                        "state",
                        "policy"
                    );
                    for s in list {
                        outln!(
                            "{:<24} {:>8}  {:<8} {:<20} {}",
                            s.name,
                            s.len,
                            if s.revoked { "revoked" } else { "active" },
                            s.policy,
                            &s.policy_sha256[..16]
                        );
                    }
                }
            }
            Ok(())
        }
        KbsCommand::Revoke(args) => {
            SecretStore::open(&args.store)?.revoke(&args.name)?;
            outln!("revoked {}", args.name);
            Ok(())
        }
        KbsCommand::Get(args) => {
            let workload = workload(&args.workload)?;
            let secret = runtime()?.block_on(async {
                let token = workload.attest(&args.service).await?.token;
                workload.fetch_secret(&args.kbs, &args.name, &token).await
            })?;
            write_private(&args.out, &secret)?;
            outln!(
                "{} ({} bytes) released to the attested key, written to {}",
                args.name,
                secret.len(),
                args.out.display()
            );
            Ok(())
        }
    }
}

fn kbs_serve(args: &KbsServeArgs) -> Result<()> {
    let config = veil_server::mount::KbsConfig {
        store: args.store.clone(),
        jwks: Some(args.jwks.clone()),
        audit_log: args.audit_log.clone(),
        audit_key: args.audit_key.clone(),
    };
    let rt = runtime()?;
    let (broker, audit_key) = rt
        .block_on(veil_server::mount::key_broker(&config, Path::new(""), None))
        .with_context(|| format!("cannot start the key broker (JWKS {})", args.jwks))?;
    let router = veil_server::kbs::router(Arc::new(broker));
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("key broker on http://{addr} (POST /release/NAME); Ctrl-C stops");
        if let Some(key) = &audit_key {
            eprintln!("audit log signed by Ed25519 key {key} (signed head at /audit/head)");
        }
        veil_server::serve(listener, router, shutdown_signal()).await?;
        Ok(())
    })
}

/// The attestation service and the key broker running in this process on loopback ports.
pub struct LocalServices {
    /// The attestation service's URL.
    pub attest_url: String,
    /// The key broker's URL.
    pub kbs_url: String,
    stop: tokio::sync::watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<veil_attest::Result<()>>>,
}

impl LocalServices {
    /// Starts both on 127.0.0.1 (ephemeral ports); the broker trusts the service's JWKS.
    pub async fn start(
        service: AttestationService,
        store: SecretStore,
        kbs_audit: AuditLog,
    ) -> Result<Self> {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.changed().await;
        };
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let attest_url = format!("http://{}", l1.local_addr()?);
        let h1 = tokio::spawn(veil_server::serve(
            l1,
            veil_server::attest::router(Arc::new(service)),
            until(rx.clone()),
        ));
        let verifier =
            veil_server::client::fetch_jwks(&format!("{attest_url}/.well-known/jwks.json")).await?;
        let broker = KeyBroker::new(store, verifier, None, kbs_audit);
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let kbs_url = format!("http://{}", l2.local_addr()?);
        let h2 = tokio::spawn(veil_server::serve(
            l2,
            veil_server::kbs::router(Arc::new(broker)),
            until(rx),
        ));
        Ok(Self {
            attest_url,
            kbs_url,
            stop,
            handles: vec![h1, h2],
        })
    }

    /// Stops both and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for h in self.handles {
            let _ = h.await;
        }
    }
}

#[derive(Args, Debug)]
pub struct AttestBenchArgs {
    /// Attestations (nonce + evidence → token) to time.
    #[arg(long, default_value_t = 4000)]
    pub attestations: usize,
    /// Key releases to time.
    #[arg(long, default_value_t = 2000)]
    pub releases: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

struct Timing {
    op: &'static str,
    count: usize,
    concurrency: usize,
    seconds: f64,
    latencies_ms: Vec<f64>,
}

impl Timing {
    fn quantile(&self, q: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// Runs `count` operations from `concurrency` workloads; `op` gets the worker's workload and
/// its token.
async fn drive<F, Fut>(
    op: &'static str,
    count: usize,
    concurrency: usize,
    make: impl Fn() -> Result<SimulatedWorkload>,
    attest_url: &str,
    f: F,
) -> Result<Timing>
where
    F: Fn(Arc<SimulatedWorkload>, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = veil_attest::Result<()>> + Send,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..concurrency {
        let w = Arc::new(make()?.with_http_client(veil_server::client::http_client()?));
        let token = w.attest(attest_url).await?.token;
        ready.push((w, token));
    }
    let start = std::time::Instant::now();
    for (w, token) in ready {
        let (next, f) = (next.clone(), f.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t = std::time::Instant::now();
                f(w.clone(), token.clone()).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, veil_attest::TeeError>(lat)
        }));
    }
    let mut latencies_ms = Vec::with_capacity(count);
    for h in workers {
        latencies_ms.extend(h.await.context("benchmark worker failed")??);
    }
    Ok(Timing {
        op,
        count,
        concurrency,
        seconds: start.elapsed().as_secs_f64(),
        latencies_ms,
    })
}

pub fn attest_bench(args: &AttestBenchArgs) -> Result<()> {
    if args.attestations == 0 || args.releases == 0 || args.concurrency == 0 {
        bail!("--attestations, --releases and --concurrency must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("veil-attest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, seed.as_mut())
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let measurement: [u8; 48] = Sha384::digest(b"benchmark workload").into();
    let policy_text = format!(
        "tee = [\"sim\"]\nmin_security_version = 1\n[measurements]\nmeasurement = [\"{}\"]\n",
        hex::encode(measurement)
    );
    let service = AttestationService::new(
        Verifiers {
            sim: vec![SimVerifier::new(
                &SimulatedPlatform::from_seed(&seed).public_key(),
            )?],
            ..Verifiers::default()
        },
        Policy::toml("bench.toml", &policy_text)?,
        TokenIssuer::generate(TokenAlgorithm::ES256)?,
        AuditLog::open(&dir.join("attest.jsonl"))?,
    );
    let store = SecretStore::open(&dir.join("kbs"))?;
    store.put("key", &[7u8; 32], "toml", "bench.toml", &policy_text, 0)?;
    let make = || {
        Ok(SimulatedWorkload::new(
            SimulatedPlatform::from_seed(&seed),
            measurement,
            1,
        ))
    };
    let rt = runtime()?;
    let results = rt.block_on(async {
        let services =
            LocalServices::start(service, store, AuditLog::open(&dir.join("kbs.jsonl"))?).await?;
        let (a, k) = (services.attest_url.clone(), services.kbs_url.clone());
        let attest_op = {
            let a = a.clone();
            move |w: Arc<SimulatedWorkload>, _t: String| {
                let a = a.clone();
                async move { w.attest(&a).await.map(|_| ()) }
            }
        };
        let release_op = {
            let k = k.clone();
            move |w: Arc<SimulatedWorkload>, t: String| {
                let k = k.clone();
                async move { w.fetch_secret(&k, "key", &t).await.map(|_| ()) }
            }
        };
        // Warm up connections and caches.
        drive("warmup", 200, args.concurrency, make, &a, attest_op.clone()).await?;
        let mut out = Vec::new();
        let n_seq = args.attestations.min(500);
        out.push(drive("attest", n_seq, 1, make, &a, attest_op.clone()).await?);
        out.push(
            drive(
                "attest",
                args.attestations,
                args.concurrency,
                make,
                &a,
                attest_op,
            )
            .await?,
        );
        let r_seq = args.releases.min(500);
        out.push(drive("release", r_seq, 1, make, &a, release_op.clone()).await?);
        out.push(
            drive(
                "release",
                args.releases,
                args.concurrency,
                make,
                &a,
                release_op,
            )
            .await?,
        );
        services.stop().await;
        Ok::<_, anyhow::Error>(out)
    })?;
    let entries = veil_attest::audit::verify_log(&dir.join("attest.jsonl"))?.len();
    std::fs::remove_dir_all(&dir)?;
    if !args.json {
        outln!(
            "attestation service and key broker on loopback, simulated evidence, ES256 tokens, audit log on disk ({entries} entries, chain verified); clients share the same {} cores",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        outln!(
            "{:<9} {:>7} {:>12} {:>10} {:>10} {:>10}",
            "op",
            "clients",
            "count",
            "per_sec",
            "p50_ms",
            "p99_ms"
        );
    }
    for t in &results {
        let per_sec = t.count as f64 / t.seconds;
        if args.json {
            outln!(
                "{}",
                serde_json::json!({
                    "op": t.op, "concurrency": t.concurrency, "count": t.count,
                    "per_sec": (per_sec * 10.0).round() / 10.0,
                    "p50_ms": (t.quantile(0.5) * 1000.0).round() / 1000.0,
                    "p99_ms": (t.quantile(0.99) * 1000.0).round() / 1000.0,
                })
            );
        } else {
            outln!(
                "{:<9} {:>7} {:>12} {:>10.0} {:>10.3} {:>10.3}",
                t.op,
                t.concurrency,
                t.count,
                per_sec,
                t.quantile(0.5),
                t.quantile(0.99)
            );
        }
    }
    Ok(())
}
