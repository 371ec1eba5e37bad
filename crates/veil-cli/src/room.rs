//! `veil room …`: multi-party data rooms (see `veil_attest::room`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use veil_attest::evidence::sim::SimulatedPlatform;
use veil_attest::util::unix_now;
use veil_room::workload::LaunchConfig;
use veil_room::{
    builtin, decode_output, encode_csv, InputFormat, Manifest, Party, PartyKey, RoomServer,
    RoomSpec, BUILTINS,
};
use veil_server::room::RoomClient;

use crate::attest::Format;
use crate::services::{hex32, runtime, shutdown_signal, write_private};

#[derive(Subcommand, Debug)]
pub enum RoomCommand {
    /// Generate a party's keys: NAME.key (secret, mode 0600) and NAME.pub (for the manifest).
    Keygen(KeygenArgs),
    /// Generate a simulated TEE platform (its secret seed); prints the public key parties trust.
    Platform(PlatformArgs),
    /// Write a room manifest: the code's measurement, the parties and their keys, who receives
    /// the output, the attestation policy.
    Create(CreateArgs),
    /// Run the room (in the simulated TEE) as an HTTP service.
    Serve(ServeArgs),
    /// Check the room's fresh evidence against your manifest (measurement, policy, platform,
    /// binding of the room's keys).
    Verify(ClientArgs),
    /// Verify the room, then upload your data encrypted to its attested key, signed by you.
    Upload(UploadArgs),
    /// Ask the room to run the workload on every party's upload.
    Run(PartyArgs),
    /// Fetch the output sealed to you (recipients named in the manifest only).
    FetchOutput(FetchArgs),
    /// Verify the room's signed, hash-chained audit log and print its history.
    Audit(AuditArgs),
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The party's name (letters, digits, '.', '_', '-').
    #[arg(long)]
    pub party: String,
    /// Directory for NAME.key and NAME.pub.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct PlatformArgs {
    /// Where to write the platform's secret seed (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The workload: a .wasm or .wat file, or a shipped one (builtin:stats, builtin:logreg).
    #[arg(long)]
    pub code: String,
    /// A party, in input order: NAME (reads DIR/NAME.pub, see --keys-dir) or NAME=FILE.pub.
    #[arg(long = "party", required = true)]
    pub parties: Vec<String>,
    /// Who receives the output (comma-separated party names).
    #[arg(long, value_delimiter = ',', required = true)]
    pub output_to: Vec<String>,
    /// Where the parties' .pub files are.
    #[arg(long, default_value = ".")]
    pub keys_dir: PathBuf,
    /// Trust this simulated platform key (hex; from `veil room platform`). Simulated TEEs have
    /// no hardware protection: for demos and tests.
    #[arg(long = "sim-platform-key")]
    pub sim_platform_keys: Vec<String>,
    /// Room name.
    #[arg(long, default_value = "data room")]
    pub name: String,
    /// How parties' CSVs are encoded (default: the shipped workload's, else f64-column).
    #[arg(long, value_parser = parse_input)]
    pub input: Option<InputFormat>,
    /// Fuel limit of a run.
    #[arg(long, default_value_t = LaunchConfig::default().fuel)]
    pub fuel: u64,
    /// Memory limit of the workload, in bytes.
    #[arg(long, default_value_t = LaunchConfig::default().max_memory_bytes)]
    pub max_memory: u64,
    /// Minimum TEE security version.
    #[arg(long)]
    pub min_svn: Option<u16>,
    /// Where to write the manifest.
    #[arg(long, default_value = "room.toml")]
    pub out: PathBuf,
}

fn parse_input(s: &str) -> std::result::Result<InputFormat, String> {
    match s {
        "f64-column" => Ok(InputFormat::F64Column),
        "f64-labelled-rows" => Ok(InputFormat::F64LabelledRows),
        "raw" => Ok(InputFormat::Raw),
        _ => Err("one of f64-column, f64-labelled-rows, raw".into()),
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The room manifest.
    #[arg(long, default_value = "room.toml")]
    pub manifest: PathBuf,
    /// The module, if the manifest's code is not a shipped workload or its file moved.
    #[arg(long)]
    pub code: Option<PathBuf>,
    /// The simulated platform's seed file (from `veil room platform`).
    #[arg(long)]
    pub platform_seed_file: PathBuf,
    /// The TEE's security version the evidence reports.
    #[arg(long, default_value_t = 1)]
    pub svn: u16,
    /// Where to listen (loopback by default).
    #[arg(long, default_value = "127.0.0.1:7300")]
    pub listen: SocketAddr,
    /// The audit log (a new file; default: room-<id>.audit.jsonl beside the manifest).
    /// Without --state only.
    #[arg(long, conflicts_with = "state")]
    pub audit_log: Option<PathBuf>,
    /// Keep the room's state in this directory (created if absent) and resume from it on
    /// restart: its keys sealed to the measurement, the audit log, every accepted upload
    /// (sealed), the outputs. Each is written (fsync) before the room answers. Without it,
    /// uploads and outputs live in memory and a restart loses them.
    #[arg(long)]
    pub state: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The room's URL.
    #[arg(long, default_value = "http://127.0.0.1:7300")]
    pub url: String,
    /// Your copy of the room manifest.
    #[arg(long, default_value = "room.toml")]
    pub manifest: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct PartyArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Your secret key file (NAME.key).
    #[arg(long)]
    pub key: PathBuf,
}

#[derive(Args, Debug)]
pub struct UploadArgs {
    #[command(flatten)]
    pub party: PartyArgs,
    /// Your data: a CSV (encoded as the manifest says), or any file for raw rooms.
    #[arg(long)]
    pub data: PathBuf,
    /// The CSV column to upload (f64-column rooms with several columns).
    #[arg(long)]
    pub column: Option<String>,
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    #[command(flatten)]
    pub party: PartyArgs,
    /// Also write the raw output bytes here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Also save the verified log here.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

pub fn run(cmd: RoomCommand) -> Result<()> {
    escape_error(match cmd {
        RoomCommand::Keygen(a) => keygen(&a),
        RoomCommand::Platform(a) => platform(&a),
        RoomCommand::Create(a) => create(&a),
        RoomCommand::Serve(a) => serve(&a),
        RoomCommand::Verify(a) => verify(&a),
        RoomCommand::Upload(a) => upload(&a),
        RoomCommand::Run(a) => run_room(&a),
        RoomCommand::FetchOutput(a) => fetch_output(&a),
        RoomCommand::Audit(a) => audit(&a),
    })
}

/// `s`, safe to print on a terminal: backslashes, control characters (newlines, carriage
/// returns, the escape that starts ANSI sequences) and invisible Unicode format characters
/// (bidirectional overrides, zero-width characters) are written as escapes, so a string
/// from a party, a server or a file prints as exactly one line of inert text.
///
/// Every string Veil prints that it did not write itself (labels, party names, reasons,
/// events from a log) goes through this: otherwise a label with a newline could add lines
/// that look like verified log entries, and escape sequences could recolour or erase them.
pub fn untrusted(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible_format(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Unicode format characters that change how text around them is shown (Cf category:
/// bidirectional controls, zero-width characters, soft hyphen, …).
fn is_invisible_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x061C
            | 0x180E
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
    )
}

/// A JSON value from a log or a server as one escaped line: strings without their quotes.
fn untrusted_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => untrusted(s),
        serde_json::Value::Null => "?".into(),
        other => untrusted(&other.to_string()),
    }
}

/// Errors carry servers' and files' words: escape them too (a closed stdout stays an I/O
/// error, which `main` treats as success).
pub fn escape_error(r: Result<()>) -> Result<()> {
    r.map_err(|e| {
        if e.downcast_ref::<std::io::Error>().is_some() {
            e
        } else {
            anyhow::anyhow!(untrusted(&format!("{e:#}")))
        }
    })
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn keygen(args: &KeygenArgs) -> Result<()> {
    let key = PartyKey::generate(&args.party)?;
    let secret = args.dir.join(format!("{}.key", args.party));
    let public = args.dir.join(format!("{}.pub", args.party));
    write_private(&secret, key.to_text()?.as_bytes())?;
    let text = toml::to_string(&key.public()).context("public key file")?;
    std::fs::write(&public, text).with_context(|| format!("cannot write {}", public.display()))?;
    outln!("secret key   {} (keep it; mode 0600)", secret.display());
    outln!(
        "public key   {} (give it to whoever writes the room manifest)",
        public.display()
    );
    Ok(())
}

fn platform(args: &PlatformArgs) -> Result<()> {
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, seed.as_mut())
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    write_private(&args.out, hex::encode(seed.as_ref()).as_bytes())?;
    let platform = SimulatedPlatform::from_seed(&seed);
    outln!("WARNING: simulated TEE — no hardware protection");
    outln!("platform seed  {} (secret)", args.out.display());
    outln!("platform key   {}", hex::encode(platform.public_key()));
    Ok(())
}

fn read_seed(path: &Path) -> Result<SimulatedPlatform> {
    let text = zeroize::Zeroizing::new(read_text(path)?);
    let seed = zeroize::Zeroizing::new(hex32(&text, &path.display().to_string())?);
    Ok(SimulatedPlatform::from_seed(&seed))
}

/// The module bytes and, for a shipped workload, its description.
fn load_code(code: &str) -> Result<(Vec<u8>, Option<&'static veil_room::Builtin>)> {
    if let Some(name) = code.strip_prefix("builtin:") {
        let b = builtin(name).with_context(|| {
            format!(
                "no shipped workload {name:?} (shipped: {})",
                BUILTINS
                    .iter()
                    .map(|b| b.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        return Ok((b.wat.as_bytes().to_vec(), Some(b)));
    }
    let bytes = std::fs::read(code).with_context(|| format!("cannot read {code}"))?;
    Ok((bytes, None))
}

fn create(args: &CreateArgs) -> Result<()> {
    let (module, shipped) = load_code(&args.code)?;
    let mut parties = Vec::new();
    for p in &args.parties {
        let (name, path) = match p.split_once('=') {
            Some((n, f)) => (n.to_string(), PathBuf::from(f)),
            None => (p.clone(), args.keys_dir.join(format!("{p}.pub"))),
        };
        let party: Party = toml::from_str(&read_text(&path)?)
            .with_context(|| format!("{} is not a party's public key file", path.display()))?;
        if party.name != name {
            bail!(
                "{} holds the key of {}, not {name}",
                path.display(),
                party.name
            );
        }
        parties.push(party);
    }
    let spec = RoomSpec {
        name: args.name.clone(),
        file: args.code.clone(),
        input: args
            .input
            .or(shipped.map(|b| b.input))
            .unwrap_or(InputFormat::F64Column),
        output_labels: shipped
            .map(|b| b.output_labels.iter().map(|s| (*s).to_string()).collect())
            .unwrap_or_default(),
        launch: LaunchConfig {
            fuel: args.fuel,
            max_memory_bytes: args.max_memory,
            grant_clock: false,
        },
        parties,
        output_to: args.output_to.clone(),
        sim_platform_keys: args.sim_platform_keys.clone(),
        min_security_version: args.min_svn,
    };
    if spec.sim_platform_keys.is_empty() {
        bail!(
            "this build runs rooms on a simulated TEE only: trust its platform with \
             --sim-platform-key (see `veil room platform`)"
        );
    }
    let manifest = Manifest::create(&module, spec, unix_now())?;
    let text = manifest.to_toml()?;
    if args.out.exists() {
        bail!(
            "{} exists: a manifest is never overwritten",
            args.out.display()
        );
    }
    std::fs::write(&args.out, &text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    outln!("manifest     {}", args.out.display());
    outln!("room id      {}", hex::encode(veil_room::room_id(&text)));
    outln!("measurement  {}", manifest.code.measurement);
    outln!(
        "parties      {}",
        manifest
            .parties
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    outln!("output to    {}", manifest.room.output_to.join(", "));
    Ok(())
}

fn serve(args: &ServeArgs) -> Result<()> {
    let text = read_text(&args.manifest)?;
    let manifest = Manifest::parse(&text)?;
    let module = match &args.code {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => {
            let file = &manifest.code.file;
            if file.starts_with("builtin:") {
                load_code(file)?.0
            } else {
                let base = args.manifest.parent().unwrap_or(Path::new("."));
                let path = base.join(file);
                std::fs::read(&path).with_context(|| {
                    format!(
                        "cannot read {} (give the module with --code)",
                        path.display()
                    )
                })?
            }
        }
    };
    let id = hex::encode(veil_room::room_id(&text));
    let platform = read_seed(&args.platform_seed_file)?;
    let (room, where_) = match &args.state {
        Some(dir) => {
            let room = RoomServer::open(&text, &module, platform, args.svn, dir)?;
            let what = if room.resumed() {
                "resumed from"
            } else {
                "state in"
            };
            (room, format!("{what} {}", dir.display()))
        }
        None => {
            let audit = args.audit_log.clone().unwrap_or_else(|| {
                args.manifest
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(format!("room-{}.audit.jsonl", &id[..16]))
            });
            let room = RoomServer::launch(&text, &module, platform, args.svn, Some(&audit))?;
            eprintln!(
                "note: without --state, uploads and outputs live in memory: a restart loses them"
            );
            (room, format!("audit log {}", audit.display()))
        }
    };
    let room = Arc::new(room);
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("WARNING: simulated TEE — no hardware protection");
        eprintln!(
            "room {} on http://{addr} ({where_}); Ctrl-C stops",
            &id[..16],
        );
        veil_server::room::serve(listener, room, shutdown_signal()).await?;
        Ok(())
    })
}

fn client(args: &ClientArgs) -> Result<RoomClient> {
    Ok(RoomClient::new(&args.url, &read_text(&args.manifest)?)?)
}

fn party_key(path: &Path) -> Result<PartyKey> {
    let text = zeroize::Zeroizing::new(read_text(path)?);
    PartyKey::from_text(&text).with_context(|| format!("{}", path.display()))
}

fn verify(args: &ClientArgs) -> Result<()> {
    let c = client(args)?;
    let room = runtime()?.block_on(c.verify())?;
    match args.format {
        Format::Json => outln!(
            "{}",
            serde_json::json!({
                "room_id": hex::encode(room.room_id),
                "verified": true,
                "claims": room.claims,
                "workload_key": hex::encode(&room.workload_key),
                "audit_key": hex::encode(room.audit_key.to_bytes()),
            })
        ),
        Format::Text => {
            outln!("room {} verified", hex::encode(room.room_id));
            outln!("  tee          {:?}", room.claims.tee);
            if room.claims.tee == veil_attest::TeeKind::Sim {
                outln!("  WARNING      simulated TEE — no hardware protection");
            }
            for (k, v) in &room.claims.measurements {
                outln!("  {:<12} {}", untrusted(k), untrusted(v));
            }
            outln!("  workload key {}", hex::encode(&room.workload_key));
            outln!("  audit key    {}", hex::encode(room.audit_key.to_bytes()));
        }
    }
    Ok(())
}

fn upload(args: &UploadArgs) -> Result<()> {
    let c = client(&args.party.client)?;
    let key = party_key(&args.party.key)?;
    let raw = std::fs::read(&args.data)
        .with_context(|| format!("cannot read {}", args.data.display()))?;
    let input = match c.manifest().code.input {
        InputFormat::Raw => raw,
        format => {
            let text = String::from_utf8(raw)
                .with_context(|| format!("{} is not a UTF-8 CSV", args.data.display()))?;
            encode_csv(format, &text, args.column.as_deref())
                .with_context(|| format!("{}", args.data.display()))?
        }
    };
    let label = args
        .data
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let receipt = runtime()?.block_on(c.upload(&key, &label, &input))?;
    match args.party.client.format {
        Format::Json => outln!("{}", serde_json::to_string(&receipt)?),
        Format::Text => {
            outln!(
                "{} uploaded {} ({} bytes encrypted to the attested workload)",
                untrusted(&receipt.party),
                untrusted(&receipt.label),
                input.len()
            );
            outln!("  data sha256  {}", untrusted(&receipt.data_sha256));
            outln!("  receipt signed by the room's attested audit key");
        }
    }
    Ok(())
}

fn run_room(args: &PartyArgs) -> Result<()> {
    let c = client(&args.client)?;
    let key = party_key(&args.key)?;
    let summary = runtime()?.block_on(c.run(&key))?;
    match args.client.format {
        Format::Json => outln!("{}", serde_json::to_string(&summary)?),
        Format::Text => {
            outln!(
                "ran: {} bytes of output for {}",
                summary.output_bytes,
                untrusted(&summary.output_to.join(", "))
            );
            outln!("  output sha256 {}", untrusted(&summary.output_sha256));
            outln!("  fuel used     {}", summary.fuel_used);
        }
    }
    Ok(())
}

fn fetch_output(args: &FetchArgs) -> Result<()> {
    let c = client(&args.party.client)?;
    let key = party_key(&args.party.key)?;
    let output = runtime()?.block_on(c.fetch_output(&key))?;
    if let Some(path) = &args.out {
        write_private(path, &output)?;
    }
    let values = decode_output(c.manifest(), &output);
    match (args.party.client.format, values) {
        (Format::Json, Some(v)) => outln!(
            "{}",
            serde_json::Value::Object(
                v.into_iter()
                    .map(|(k, x)| (k, serde_json::json!(x)))
                    .collect()
            )
        ),
        (Format::Json, None) => outln!(
            "{}",
            serde_json::json!({ "output_hex": hex::encode(output.as_slice()) })
        ),
        (Format::Text, Some(v)) => {
            for (k, x) in v {
                outln!("{:<12} {x}", untrusted(&k));
            }
        }
        (Format::Text, None) => outln!(
            "{} bytes of output{}",
            output.len(),
            args.out
                .as_ref()
                .map(|p| format!(" written to {}", p.display()))
                .unwrap_or_default()
        ),
    }
    Ok(())
}

fn audit(args: &AuditArgs) -> Result<()> {
    let c = client(&args.client)?;
    let entries = runtime()?.block_on(c.audit())?;
    if let Some(path) = &args.save {
        let text: String = entries
            .iter()
            .map(|e| serde_json::to_string(e).map(|l| l + "\n"))
            .collect::<std::result::Result<_, _>>()?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    match args.client.format {
        Format::Json => outln!("{}", serde_json::to_string(&entries)?),
        Format::Text => {
            outln!(
                "audit log verified: {} entries, chain intact, every entry signed by the \
                 attested audit key, head signed for a fresh nonce",
                entries.len()
            );
            print_history(&entries)?;
        }
    }
    Ok(())
}

/// One line per audit entry. Every string from the log is escaped ([`untrusted`]): the
/// log is signed by the room, but labels, names and reasons in it come from parties.
pub fn print_history(entries: &[veil_attest::audit::AuditEntry]) -> Result<()> {
    for e in entries {
        let d = &e.details;
        let s = |key: &str| untrusted_value(&d[key]);
        let short = |key: &str| {
            let full = s(key);
            full.get(..16).map_or(full.clone(), |p| format!("{p}…"))
        };
        let what = match e.event.as_str() {
            "room_created" => format!(
                "room {} created: parties {}, output to {}",
                s("name"),
                s("parties"),
                s("output_to")
            ),
            "attestation" => "evidence given for a fresh nonce".to_string(),
            "upload" => format!(
                "{} uploaded {} (sha256 {})",
                s("party"),
                s("label"),
                short("data_sha256")
            ),
            "run" => format!(
                "run requested by {}: output sha256 {}",
                s("requested_by"),
                short("output_sha256")
            ),
            "output_released" => format!("output released to {}", s("party")),
            "output_refused" => format!("output refused to {} ({})", s("party"), s("reason")),
            "run_failed" => format!(
                "run requested by {} failed: {}",
                s("requested_by"),
                s("reason")
            ),
            _ => untrusted(&d.to_string()),
        };
        outln!(
            "{:>4}  {}  {:<16} {what}",
            e.seq,
            e.time,
            untrusted(&e.event)
        );
    }
    Ok(())
}
