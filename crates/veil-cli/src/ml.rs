//! `veil ml …`: run trained ONNX models on protected data (CKKS encryption or MPC).
//!
//! The commands are glue over `veil-ml`: [`veil_ml::onnx`] reads the model, [`veil_ml::he`]
//! compiles it onto CKKS (client keys, encrypted query, server evaluation with the public
//! context only, flooded decryption) and [`veil_ml::mpc`] runs it on secret shares with the
//! parties and the dealer in this process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use veil_he::ckks::params::SECURITY_TABLE_128;
use veil_he::ckks::{CkksVector, RotationKeys, VectorContext};
use veil_ml::data::LabelledData;
use veil_ml::he::{CompileOptions, EncryptedSamples, Packing, Plan, Step};
use veil_ml::ir::Graph;
use veil_ml::mpc::{run_local, MpcOptions, MpcPlan, Reveal};
use veil_ml::onnx::OnnxModel;
use veil_ml::MlError;

use crate::progress;

#[derive(Subcommand, Debug)]
pub enum MlCommand {
    /// What a model file holds (producer, opsets, each node with its shapes) and whether each
    /// protected backend (he, mpc) can run it.
    Inspect(InspectArgs),
    /// Compile a model for encrypted inference and print the CKKS plan: depth, N, moduli,
    /// scale, Galois keys, key and query sizes, precision.
    Compile(CompileArgs),
    /// Run a model on a labelled CSV file under encryption (`--he`) or MPC (`--mpc`) and
    /// compare with the plaintext model.
    Run(RunArgs),
    /// Client: make a key set for a saved plan: the public context for the server (public,
    /// relinearization and only the Galois keys the plan needs) and the secret key (kept).
    Keygen(KeygenArgs),
    /// Client: encrypt the samples of a CSV file for a saved plan.
    Encrypt(EncryptArgs),
    /// Server: run a saved plan on encrypted samples with the public context only.
    Eval(EvalArgs),
    /// Client: decrypt the server's answer (noise flooded), print each sample's prediction,
    /// and the accuracy when the CSV's labels are given.
    Decrypt(DecryptArgs),
    /// MPC: run one party of a secure inference (an OS process; the owner gives the model,
    /// the client the samples; start one per party, plus `veil ml dealer`).
    Party(crate::ml_mpc::PartyArgs),
    /// MPC: run the dealer of correlated randomness for a secure inference.
    Dealer(crate::ml_mpc::DealerArgs),
    /// MPC: train logistic regression or an MLP by mini-batch SGD on data split between
    /// parties by rows or by columns, and write the owner's model as ONNX (parties and dealer
    /// as threads of this process).
    Train(crate::ml_mpc::TrainArgs),
}

/// How samples are packed into ciphertexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PackArg {
    /// One sample per ciphertext (latency: smallest query, Galois keys for the rotations).
    Single,
    /// One ciphertext per input value, up to N/2 samples across the slots (throughput: no
    /// Galois keys).
    Batch,
    /// `run`: batch when there are at least 16 samples, single otherwise.
    Auto,
}

/// Which Galois keys single-packed products use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeysArg {
    /// The compiler chooses: compact when a top-level key switch has four digits or more.
    Auto,
    /// One key per power of two: the fewest rotations.
    Fast,
    /// One key per power of four (radix-4 sums): about half the keys, more rotations.
    Compact,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The saved plan (`veil ml compile --out`).
    #[arg(long)]
    pub plan: PathBuf,
    /// Where to write the public context (give it to the server).
    #[arg(long, value_name = "FILE")]
    pub public: PathBuf,
    /// Where to write the secret key (created with mode 0600; it must not exist).
    #[arg(long, value_name = "FILE")]
    pub secret: PathBuf,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// The saved plan.
    #[arg(long)]
    pub plan: PathBuf,
    /// The public context (`veil ml keygen --public`).
    #[arg(long, value_name = "FILE")]
    pub public: PathBuf,
    /// The secret key: with it the query is encrypted seeded (half the size); without it,
    /// with the public key.
    #[arg(long, value_name = "FILE")]
    pub secret: Option<PathBuf>,
    /// Samples: a CSV with a header, then `label,x0,x1,…` per row (labels are not encrypted
    /// nor sent).
    #[arg(long, value_name = "DATA.csv")]
    pub data: PathBuf,
    /// Every feature is multiplied by this (1/16 for the digits pixels).
    #[arg(long, default_value_t = 0.0625)]
    pub scale: f64,
    /// Use only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Where to write the encrypted samples.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The saved plan.
    #[arg(long)]
    pub plan: PathBuf,
    /// The public context (no secret key: the server never has it).
    #[arg(long, value_name = "FILE")]
    pub public: PathBuf,
    /// The encrypted samples (`veil ml encrypt --out`).
    #[arg(long, value_name = "FILE")]
    pub query: PathBuf,
    /// Where to write the encrypted answer.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// The saved plan.
    #[arg(long)]
    pub plan: PathBuf,
    /// The public context.
    #[arg(long, value_name = "FILE")]
    pub public: PathBuf,
    /// The secret key (`veil ml keygen --secret`).
    #[arg(long, value_name = "FILE")]
    pub secret: PathBuf,
    /// The encrypted answer (`veil ml eval --out`).
    #[arg(long, value_name = "FILE")]
    pub answer: PathBuf,
    /// The CSV the samples came from: its labels give the accuracy.
    #[arg(long, value_name = "DATA.csv")]
    pub labels: Option<PathBuf>,
    /// Print each sample's decrypted scores too.
    #[arg(long)]
    pub scores: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The ONNX model.
    pub model: PathBuf,
}

/// How the compiler learns the range of the model's values.
#[derive(Args, Debug)]
pub struct RangeArgs {
    /// Every input value lies in `lo,hi` (bounds propagated as intervals; default 0,1).
    #[arg(long, value_name = "LO,HI", conflicts_with = "calibration")]
    pub input_range: Option<String>,
    /// Measure the value bounds on these samples instead: a labelled CSV like
    /// `digits_test.csv` (a header, then `label,x0,x1,…`) or a NumPy `.npy` array of shape
    /// `(n, …)` (one sample per first-axis entry); `--scale` applies to both.
    #[arg(long, value_name = "DATA.csv|DATA.npy")]
    pub calibration: Option<PathBuf>,
    /// Target standard deviation of the decrypted outputs' error, noise flooding included.
    #[arg(long, value_name = "SIGMA", default_value_t = 0.125)]
    pub precision: f64,
    /// Largest error of each activation's (Relu, Sigmoid, Tanh, Softplus) polynomial on its
    /// input interval (default: the library's).
    #[arg(long, value_name = "ERR")]
    pub activation_precision: Option<f64>,
    /// HE, single packing: the Galois key set — a smaller public context (`compact`) or
    /// fewer rotations per query (`fast`).
    #[arg(long, value_enum, default_value_t = KeysArg::Auto)]
    pub rotation_keys: KeysArg,
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// The ONNX model.
    pub model: PathBuf,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Packing: `single` (latency, one sample per ciphertext) or `batch` (throughput, N/2
    /// samples per evaluation).
    #[arg(long, value_enum, default_value_t = PackArg::Single)]
    pub pack: PackArg,
    /// Save the plan here (HE: for `veil ml keygen/encrypt/eval/decrypt`; MPC: to publish
    /// to the parties and the dealer of `veil ml party/dealer`).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// HE: also save the client's plan here — the same plan without the model's weights, all
    /// a client needs for `veil ml keygen/encrypt/decrypt` (give it this, not `--out`'s).
    #[arg(long, value_name = "FILE")]
    pub client_plan: Option<PathBuf>,
    /// Every feature read from a CSV file is multiplied by this (1/16 for the digits pixels).
    #[arg(long, default_value_t = 0.0625)]
    pub scale: f64,
    /// Compile for MPC instead of HE: the plan holds the architecture only (no weight).
    #[arg(long)]
    pub mpc: bool,
    #[command(flatten)]
    pub roles: MpcRoleArgs,
}

/// Who does what in an MPC inference, and what is checked.
#[derive(Args, Debug)]
pub struct MpcRoleArgs {
    /// MPC: the party that owns the model.
    #[arg(long, default_value_t = 0)]
    pub owner: usize,
    /// MPC: the party that gives the samples and learns the predictions.
    #[arg(long, default_value_t = 1)]
    pub client: usize,
    /// MPC: what the client learns.
    #[arg(long, value_enum, default_value_t = RevealArg::Label)]
    pub reveal: RevealArg,
    /// MPC: declared bound on every input value's magnitude (the range analysis starts
    /// here; the client's samples must lie within it).
    #[arg(long, default_value_t = 1.0)]
    pub input_bound: f64,
}

impl MpcRoleArgs {
    fn options(&self) -> MpcOptions {
        MpcOptions {
            owner: self.owner,
            client: self.client,
            reveal: match self.reveal {
                RevealArg::Label => Reveal::Label,
                RevealArg::Scores => Reveal::Scores,
            },
            input_bound: self.input_bound,
            ..MpcOptions::default()
        }
    }
}

/// What the client of an MPC run learns.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RevealArg {
    /// The predicted label only (secure argmax; scores stay shared).
    Label,
    /// The scores, from which the client computes the label.
    Scores,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("backend").required(true).args(["he", "mpc"])))]
pub struct RunArgs {
    /// The ONNX model.
    pub model: PathBuf,
    /// Homomorphic encryption (CKKS): client keys, encrypted queries, server evaluation
    /// with the public context only, flooded decryption.
    #[arg(long)]
    pub he: bool,
    /// Secure multi-party computation: the model owner and the client secret-share weights
    /// and inputs; the parties and the dealer run as processes over mutual TLS on loopback.
    #[arg(long)]
    pub mpc: bool,
    /// MPC: run the parties and the dealer as threads of this process instead of processes.
    #[arg(long, requires = "mpc")]
    pub in_process: bool,
    /// MPC: measure the value bounds on the first 60 samples (times 2) instead of proving
    /// them for the whole input range — for deep models whose worst case overflows the
    /// fixed point. Values beyond the measured ones can then wrap around silently.
    #[arg(long, requires = "mpc")]
    pub calibrate: bool,
    /// MPC: the protocol family (`replicated`: three parties and no dealer).
    #[arg(long, value_enum, default_value_t = crate::ml_mpc::ProtocolArg::Dealer)]
    pub protocol: crate::ml_mpc::ProtocolArg,
    /// Labelled samples: a CSV with a header, then `label,x0,x1,…` per row.
    #[arg(long, value_name = "DATA.csv")]
    pub data: PathBuf,
    /// Every feature is multiplied by this (1/16 for the digits pixels).
    #[arg(long, default_value_t = 0.0625)]
    pub scale: f64,
    /// Use only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// HE: target standard deviation of the decrypted outputs' error.
    #[arg(long, value_name = "SIGMA", default_value_t = 0.125)]
    pub precision: f64,
    /// HE: largest error of each activation's polynomial (default: the library's).
    #[arg(long, value_name = "ERR")]
    pub activation_precision: Option<f64>,
    /// HE, single packing: the Galois key set (`compact`: a smaller public context;
    /// `fast`: fewer rotations per query).
    #[arg(long, value_enum, default_value_t = KeysArg::Auto)]
    pub rotation_keys: KeysArg,
    /// HE: declare the input range instead of calibrating on the first 60 samples.
    #[arg(long, value_name = "LO,HI")]
    pub input_range: Option<String>,
    /// HE: packing (`auto`: batch from 16 samples on).
    #[arg(long, value_enum, default_value_t = PackArg::Auto)]
    pub pack: PackArg,
    /// MPC: number of parties (default 2 with the dealer, 3 for `replicated`).
    #[arg(long)]
    pub parties: Option<usize>,
    /// MPC: samples per batch (default: all at once).
    #[arg(long)]
    pub batch: Option<usize>,
    #[command(flatten)]
    pub roles: MpcRoleArgs,
}

pub fn run(cmd: MlCommand) -> Result<()> {
    match cmd {
        MlCommand::Inspect(args) => inspect(&args),
        MlCommand::Compile(args) => compile(&args),
        MlCommand::Run(args) if args.he => run_he(&args),
        MlCommand::Run(args) => run_mpc(&args),
        MlCommand::Keygen(args) => keygen(&args),
        MlCommand::Encrypt(args) => encrypt(&args),
        MlCommand::Eval(args) => eval(&args),
        MlCommand::Decrypt(args) => decrypt(&args),
        MlCommand::Party(args) => crate::ml_mpc::party(&args),
        MlCommand::Dealer(args) => crate::ml_mpc::dealer(&args),
        MlCommand::Train(args) => crate::ml_mpc::train(&args),
    }
}

/// Largest plan, context or encrypted-samples file read (a CNN batch query is ~80 MB).
const MAX_FILE_BYTES: u64 = 1 << 31;

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        bail!(
            "the {what} {} is {} bytes, more than the {} accepted",
            path.display(),
            meta.len(),
            MAX_FILE_BYTES
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    std::fs::write(path, bytes)
        .with_context(|| format!("cannot write the {what} {}", path.display()))
}

fn load_plan(path: &Path) -> Result<Plan> {
    Plan::from_bytes(&read_file(path, "plan")?)
        .with_context(|| format!("{} is not a usable plan", path.display()))
}

/// The public context, checked against the plan's parameters; with the secret key when given.
fn load_context(plan: &Plan, public: &Path, secret: Option<&Path>) -> Result<Arc<VectorContext>> {
    let bytes = read_file(public, "public context")?;
    let sk = secret.map(|p| read_file(p, "secret key")).transpose()?;
    let sk = sk.map(zeroize::Zeroizing::new);
    let ctx = VectorContext::from_public_bytes(&bytes, sk.as_ref().map(|k| k.as_slice()))
        .with_context(|| format!("{} is not a usable public context", public.display()))?;
    plan.check_context(&ctx)
        .with_context(|| format!("{} does not fit this plan", public.display()))?;
    Ok(ctx)
}

fn keygen(args: &KeygenArgs) -> Result<()> {
    let plan = load_plan(&args.plan)?;
    let t = Instant::now();
    let client = plan.keygen()?;
    let public = client.make_public().public_to_bytes();
    let secret = client
        .secret_key_bytes()?
        .context("the new key set has no secret key")?;
    crate::services::write_private(&args.secret, &secret)?;
    write_file(&args.public, &public, "public context")?;
    outln!(
        "keys for {} ({} packing) in {:.0} ms",
        args.plan.display(),
        plan.packing().name(),
        t.elapsed().as_secs_f64() * 1e3
    );
    outln!(
        "  public context (give it to the server): {} ({}, {} Galois keys)",
        args.public.display(),
        bytes(public.len()),
        plan.rotation_steps().len()
    );
    outln!(
        "  secret key (keep it; mode 0600): {}",
        args.secret.display()
    );
    Ok(())
}

fn encrypt(args: &EncryptArgs) -> Result<()> {
    let plan = load_plan(&args.plan)?;
    let ctx = load_context(&plan, &args.public, args.secret.as_deref())?;
    let data = load_data_for(&args.data, args.scale, args.limit, plan.input_len())?;
    let t = Instant::now();
    let query = plan.encrypt_samples(&ctx, &data.samples)?.to_bytes();
    write_file(&args.out, &query, "encrypted samples")?;
    outln!(
        "encrypted {} sample(s) of {} ({} packing, {}) in {:.0} ms: {} ({})",
        data.len(),
        args.data.display(),
        plan.packing().name(),
        if ctx.has_secret_key() {
            "seeded with the secret key"
        } else {
            "with the public key"
        },
        t.elapsed().as_secs_f64() * 1e3,
        args.out.display(),
        bytes(query.len())
    );
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    let plan = load_plan(&args.plan)?;
    let ctx = load_context(&plan, &args.public, None)?;
    if ctx.has_secret_key() {
        bail!("the server's context holds a secret key: give it the public context only");
    }
    let query =
        EncryptedSamples::from_bytes(&ctx, &read_file(&args.query, "encrypted samples")?)
            .with_context(|| format!("{} is not usable encrypted samples", args.query.display()))?;
    let t = Instant::now();
    let answer = plan.evaluate_samples(&query)?.to_bytes();
    let secs = t.elapsed().as_secs_f64();
    write_file(&args.out, &answer, "encrypted answer")?;
    outln!(
        "evaluated {} sample(s) in {:.0} ms ({:.2} ms/sample) with the public context only: {} ({})",
        query.samples(),
        secs * 1e3,
        secs * 1e3 / query.samples() as f64,
        args.out.display(),
        bytes(answer.len())
    );
    Ok(())
}

fn decrypt(args: &DecryptArgs) -> Result<()> {
    let plan = load_plan(&args.plan)?;
    let ctx = load_context(&plan, &args.public, Some(&args.secret))?;
    let answer = EncryptedSamples::from_bytes(&ctx, &read_file(&args.answer, "encrypted answer")?)
        .with_context(|| format!("{} is not a usable encrypted answer", args.answer.display()))?;
    let (outputs, flood) = plan.decrypt_samples(&answer)?;
    let labels = match &args.labels {
        Some(p) => {
            let data = load_data_for(p, 1.0, Some(outputs.len()), plan.input_len())?;
            if data.len() != outputs.len() {
                bail!(
                    "{} has {} labelled samples, the answer {}",
                    p.display(),
                    data.len(),
                    outputs.len()
                );
            }
            Some(data.labels)
        }
        None => None,
    };
    outln!("sample,class{}", if args.scores { ",scores" } else { "" });
    let mut correct = 0;
    for (i, out) in outputs.iter().enumerate() {
        let class = class_of(out);
        if let Some(l) = &labels {
            correct += usize::from(l[i] == class);
        }
        if args.scores {
            let s: Vec<String> = out.iter().map(|v| format!("{v:.4}")).collect();
            outln!("{i},{class},{}", s.join(" "));
        } else {
            outln!("{i},{class}");
        }
    }
    eprintln!(
        "decrypted {} sample(s) with noise flooding (σ ≤ {flood:.3})",
        outputs.len()
    );
    if labels.is_some() {
        eprintln!(
            "accuracy: {correct}/{} ({:.1}%)",
            outputs.len(),
            percent(correct, outputs.len())
        );
    }
    Ok(())
}

fn load_model(path: &Path) -> Result<OnnxModel> {
    veil_ml::onnx::import_file(path)
        .with_context(|| format!("cannot use the model {}", path.display()))
}

fn load_data(path: &Path, scale: f64, limit: Option<usize>, graph: &Graph) -> Result<LabelledData> {
    let want: usize = graph.input().shape.iter().product();
    load_data_for(path, scale, limit, want).with_context(|| {
        format!(
            "the model's input has shape {:?} ({want} values)",
            graph.input().shape
        )
    })
}

pub(crate) fn load_data_for(
    path: &Path,
    scale: f64,
    limit: Option<usize>,
    want: usize,
) -> Result<LabelledData> {
    if !(scale.is_finite() && scale > 0.0) {
        bail!("--scale must be a positive number, got {scale}");
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the data file {}", path.display()))?;
    let mut data = LabelledData::from_csv(&text, scale)
        .with_context(|| format!("{} is not a labelled CSV file", path.display()))?;
    if let Some(n) = limit {
        if n == 0 {
            bail!("--limit must be at least 1");
        }
        data.labels.truncate(n);
        data.samples.truncate(n);
    }
    if data.is_empty() {
        bail!(
            "{} has no sample (a header line, then label,x0,x1,… rows)",
            path.display()
        );
    }
    let have = data.samples[0].len();
    if have != want {
        bail!(
            "{}: rows have {have} features, the model takes {want}",
            path.display()
        );
    }
    Ok(data)
}

fn parse_range(s: &str) -> Result<(f64, f64)> {
    let (lo, hi) = s
        .split_once(',')
        .with_context(|| format!("--input-range wants `lo,hi`, got `{s}`"))?;
    let lo: f64 = lo
        .trim()
        .parse()
        .with_context(|| format!("bad lower bound `{lo}`"))?;
    let hi: f64 = hi
        .trim()
        .parse()
        .with_context(|| format!("bad upper bound `{hi}`"))?;
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        bail!("--input-range: need finite lo ≤ hi, got [{lo}, {hi}]");
    }
    Ok((lo, hi))
}

/// The predicted class of a model output: its argmax, or the value itself when the model
/// already ends with ArgMax (one output).
pub fn class_of(out: &[f64]) -> i64 {
    if out.len() == 1 {
        return out[0].round() as i64;
    }
    let mut best = 0;
    for (i, v) in out.iter().enumerate() {
        if *v > out[best] {
            best = i;
        }
    }
    best as i64
}

fn plain_class(graph: &Graph, x: &[f64]) -> Result<i64> {
    let out = graph.run(x).context("plaintext model")?;
    let first = out.first().context("the model has no output")?;
    Ok(class_of(first))
}

fn bytes(n: usize) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

fn percent(k: usize, n: usize) -> f64 {
    100.0 * k as f64 / n.max(1) as f64
}

fn bar(len: usize, what: &str) -> Option<ProgressBar> {
    if !progress::interactive() || len < 5 {
        return None;
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    Some(bar)
}

fn inspect(args: &InspectArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let info = &model.info;
    let g = &model.graph;
    outln!("{}", args.model.display());
    outln!(
        "  producer: {}",
        if info.producer.is_empty() {
            "(not given)"
        } else {
            &info.producer
        }
    );
    outln!(
        "  ONNX IR version {}, opset {}{}, {} ONNX node(s)",
        info.ir_version,
        info.opset,
        info.ml_opset
            .map(|v| format!(", ai.onnx.ml opset {v}"))
            .unwrap_or_default(),
        info.onnx_nodes
    );
    outln!(
        "  input `{}` {:?} (per sample)",
        g.input().name,
        g.input().shape
    );
    outln!(
        "  {} node(s) after import (BatchNormalization and constant scalings folded):",
        g.nodes().len()
    );
    let shape = |id| {
        g.value(id)
            .map(|v| format!("{:?}", v.shape))
            .unwrap_or_else(|| "?".into())
    };
    for n in g.nodes() {
        let ins: Vec<String> = n.inputs.iter().map(|&i| shape(i)).collect();
        outln!(
            "    {:<24} {:<18} {} -> {}",
            n.name,
            n.op.name(),
            ins.join(", "),
            shape(n.output)
        );
    }
    outln!("  backends:");
    let single = Plan::compile(g, &CompileOptions::default());
    let compiled = match single {
        // Tree ensembles need batch packing: say so with the batch plan.
        Err(MlError::UnsupportedUse { ref op, .. }) if op == "TreeEnsemble" => Plan::compile(
            g,
            &CompileOptions {
                packing: Packing::Batch,
                ..CompileOptions::default()
            },
        ),
        other => other,
    };
    match compiled {
        Ok(plan) => outln!(
            "    he   supported{}: depth {}, N = {} (inputs in [0, 1]; see `veil ml compile`)",
            if plan.packing() == Packing::Batch {
                " with --pack batch only"
            } else {
                ""
            },
            plan.depth(),
            plan.parameter_choice().degree
        ),
        // The parameter choice reports itself as the pseudo-node `model (compile)`: the
        // operators are fine, the declared range or precision is not.
        Err(e @ MlError::UnsupportedUse { .. }) if !e.to_string().contains("(compile)") => {
            outln!("    he   not supported: {e}")
        }
        Err(e @ MlError::UnsupportedOp { .. }) => outln!("    he   not supported: {e}"),
        Err(e) => outln!(
            "    he   operators supported, but inputs declared in [0, 1] give: {e}; \
             try `veil ml compile --calibration DATA.csv` or `--precision`"
        ),
    }
    match MpcPlan::compile(g, &MpcOptions::default()) {
        Ok((plan, _)) => outln!(
            "    mpc  supported: {} secret parameters, scores bounded by {:.1} (inputs in [-1, 1])",
            plan.param_count(),
            plan.score_bound()
        ),
        Err(e) => outln!("    mpc  not supported: {e}"),
    }
    Ok(())
}

fn compile_options(range: &RangeArgs, scale: f64, graph: &Graph) -> Result<CompileOptions> {
    let mut options = CompileOptions {
        precision: range.precision,
        rotation_keys: match range.rotation_keys {
            KeysArg::Auto => None,
            KeysArg::Fast => Some(RotationKeys::Fast),
            KeysArg::Compact => Some(RotationKeys::Compact),
        },
        ..CompileOptions::default()
    };
    if !(range.precision.is_finite() && range.precision > 0.0) {
        bail!(
            "--precision must be a positive number, got {}",
            range.precision
        );
    }
    if let Some(e) = range.activation_precision {
        if !(e.is_finite() && e > 0.0) {
            bail!("--activation-precision must be a positive number, got {e}");
        }
        options.activation_precision = e;
    }
    if let Some(r) = &range.input_range {
        options.input_range = parse_range(r)?;
    }
    if let Some(path) = &range.calibration {
        let samples = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
        {
            if !(scale.is_finite() && scale > 0.0) {
                bail!("--scale must be a positive number, got {scale}");
            }
            let samples =
                veil_ml::data::samples_from_npy(&read_file(path, "calibration data")?, scale)
                    .with_context(|| format!("{} is not a usable .npy array", path.display()))?;
            let want: usize = graph.input().shape.iter().product();
            if samples[0].len() != want {
                bail!(
                    "{}: samples have {} values, the model's input {:?} takes {want}",
                    path.display(),
                    samples[0].len(),
                    graph.input().shape
                );
            }
            samples
        } else {
            load_data(path, scale, None, graph)?.samples
        };
        let (lo, hi) = samples
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        options.input_range = (lo, hi);
        options.calibration = samples;
    }
    Ok(options)
}

/// Prints the plan and returns the bytes of the public context and of one query
/// (measured with a throwaway key).
fn describe_plan(plan: &Plan) -> Result<()> {
    let p = plan.parameter_choice();
    let affine = plan
        .steps()
        .iter()
        .map(|s| {
            // `if let` rather than `match`: the backend is gaining step kinds (polynomial
            // activations), named generically here.
            if let Step::Affine { rows, bias } = s {
                format!("affine {}→{}", rows.len(), bias.len())
            } else if matches!(s, Step::Square) {
                "square".into()
            } else if let Step::Leaves { paths } = s {
                format!("leaf products ({} leaves)", paths.len())
            } else {
                "polynomial".into()
            }
        })
        .collect::<Vec<_>>();
    outln!(
        "  steps: {} (input {}, encrypted output {})",
        affine.join(", "),
        plan.input_len(),
        plan.output_len()
    );
    outln!("  multiplicative depth: {}", plan.depth());
    outln!("  ring degree N = {} ({} slots)", p.degree, p.degree / 2);
    outln!(
        "  moduli: {:?} bits ({} special), scale 2^{}",
        p.moduli_bits,
        p.special_primes,
        p.scale_bits
    );
    let bound = SECURITY_TABLE_128
        .iter()
        .find(|(d, _)| *d == p.degree)
        .map(|&(_, b)| b);
    match bound {
        Some(b) if p.total_bits <= b => outln!(
            "  security: 128-bit (log2 QP = {} ≤ {b}, HomomorphicEncryption.org table)",
            p.total_bits
        ),
        _ => outln!(
            "  security: log2 QP = {} (above the 128-bit table for N = {})",
            p.total_bits,
            p.degree
        ),
    }
    outln!(
        "  Galois keys: {} {} (rotation steps {:?})",
        plan.rotation_steps().len(),
        match plan.rotation_keys() {
            RotationKeys::Fast => "fast",
            RotationKeys::Compact => "compact",
        },
        plan.rotation_steps()
    );
    for a in plan.activations() {
        outln!(
            "  activation `{}` ({}) as a degree-{} polynomial on [{:.3}, {:.3}]: max error {:.2e}",
            a.node,
            a.activation.name(),
            a.degree,
            a.lo,
            a.hi,
            a.max_error
        );
    }
    outln!("  intermediate values bounded by {:.2}", plan.value_bound());
    Ok(())
}

fn compile(args: &CompileArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    if args.mpc {
        if args.client_plan.is_some() {
            bail!(
                "--client-plan is for HE plans: an MPC plan holds the architecture only, every \
                 participant gets the same one (--out)"
            );
        }
        return compile_mpc(args, &model.graph);
    }
    let mut options = compile_options(&args.range, args.scale, &model.graph)?;
    options.packing = match args.pack {
        PackArg::Batch => Packing::Batch,
        PackArg::Single | PackArg::Auto => Packing::Single,
    };
    let plan = Plan::compile(&model.graph, &options)
        .with_context(|| format!("{} cannot run under HE", args.model.display()))?;
    match plan.packing() {
        Packing::Single => outln!(
            "HE plan for {} (latency packing: one sample per ciphertext)",
            args.model.display()
        ),
        Packing::Batch => outln!(
            "HE plan for {} (throughput packing: one ciphertext per input value, {} samples \
             per evaluation)",
            args.model.display(),
            plan.samples_per_evaluation()
        ),
    }
    match &args.range.calibration {
        Some(path) => outln!(
            "  value bounds measured on {} samples of {} (×{} margin)",
            options.calibration.len(),
            path.display(),
            options.calibration_margin
        ),
        None => outln!(
            "  value bounds propagated from inputs in [{}, {}]",
            options.input_range.0,
            options.input_range.1
        ),
    }
    describe_plan(&plan)?;
    // Sizes are measured: one throwaway key set and one query.
    let t = Instant::now();
    let client = plan.keygen()?;
    let keygen = t.elapsed();
    let public = client.make_public().public_to_bytes().len();
    let query = plan
        .encrypt_samples(&client, &[vec![0.0; plan.input_len()]])?
        .to_bytes()
        .len();
    outln!(
        "  public context (server keys): {}; one query ({} sample(s)): {} (key generation {:.0} ms)",
        bytes(public),
        plan.samples_per_evaluation(),
        bytes(query),
        keygen.as_secs_f64() * 1e3
    );
    outln!(
        "  expected precision: output error σ ≤ {} (noise flooding included)",
        options.precision
    );
    match &args.out {
        Some(path) => {
            let b = plan.to_bytes();
            write_file(path, &b, "plan")?;
            outln!(
                "  plan saved to {} ({}): next `veil ml keygen --plan {}`",
                path.display(),
                bytes(b.len()),
                path.display()
            );
        }
        None => outln!("  (not saved: add --out FILE for keygen/encrypt/eval/decrypt)"),
    }
    if let Some(path) = &args.client_plan {
        let b = plan.without_weights().to_bytes();
        write_file(path, &b, "client plan")?;
        outln!(
            "  client plan (no weights) saved to {} ({}): give clients this one",
            path.display(),
            bytes(b.len())
        );
    }
    Ok(())
}

fn run_he(args: &RunArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let graph = &model.graph;
    let data = load_data(&args.data, args.scale, args.limit, graph)?;
    let n = data.len();
    let range = RangeArgs {
        input_range: args.input_range.clone(),
        calibration: None,
        precision: args.precision,
        activation_precision: args.activation_precision,
        rotation_keys: args.rotation_keys,
    };
    let mut options = compile_options(&range, args.scale, graph)?;
    if args.input_range.is_none() {
        options.calibration = data.samples.iter().take(60).cloned().collect();
    }
    options.packing = match args.pack {
        PackArg::Single => Packing::Single,
        PackArg::Batch => Packing::Batch,
        PackArg::Auto if n >= AUTO_BATCH_FROM => Packing::Batch,
        PackArg::Auto => Packing::Single,
    };
    let plan = Plan::compile(graph, &options)
        .with_context(|| format!("{} cannot run under HE", args.model.display()))?;
    let p = plan.parameter_choice();
    outln!(
        "HE (CKKS, {} packing): {} on {n} sample(s) of {}",
        match plan.packing() {
            Packing::Single => "latency",
            Packing::Batch => "throughput",
        },
        args.model.display(),
        args.data.display()
    );
    outln!(
        "  plan: depth {}, N = {}, moduli {:?}, scale 2^{}, {} Galois keys",
        plan.depth(),
        p.degree,
        p.moduli_bits,
        p.scale_bits,
        plan.rotation_steps().len()
    );
    let report = he_round_trip(&plan, graph, &data, true)?;
    outln!(
        "  [client] key generation: {:.0} ms; public context for the server: {}",
        report.keygen_s * 1e3,
        bytes(report.public_bytes)
    );
    if plan.packing() == Packing::Batch {
        let per = plan.samples_per_evaluation();
        outln!(
            "  [client] encrypt: {:.0} ms for all {n} sample(s) ({} ciphertexts per {per} \
             samples), query {}",
            report.encrypt_s * 1e3,
            plan.input_len(),
            bytes(report.query_bytes)
        );
        outln!(
            "  [server] evaluate (public context only): {:.0} ms, {:.2} ms/sample; a full \
             batch of {per} would be {:.0} samples/s; answer {}",
            report.eval_s * 1e3,
            report.eval_s * 1e3 / n as f64,
            per as f64 * n.div_ceil(per) as f64 / report.eval_s,
            bytes(report.answer_bytes)
        );
    } else {
        outln!(
            "  [client] encrypt: {:.2} ms/sample, {} per query",
            report.encrypt_s * 1e3 / n as f64,
            bytes(report.query_bytes)
        );
        outln!(
            "  [server] evaluate (public context only): {:.2} ms/sample, {} per answer",
            report.eval_s * 1e3 / n as f64,
            bytes(report.answer_bytes)
        );
    }
    outln!(
        "  [client] flooded decrypt: {:.2} ms/sample (flood σ {:.3}, largest output error {:.3})",
        report.decrypt_s * 1e3 / n as f64,
        report.flood_std,
        report.max_err
    );
    outln!(
        "  agreement with the plaintext model: {}/{n} ({:.1}%)",
        report.agree,
        percent(report.agree, n)
    );
    outln!(
        "  accuracy: encrypted {:.1}%, plaintext {:.1}%",
        percent(report.correct, n),
        percent(report.plain_correct, n)
    );
    Ok(())
}

/// `run --pack auto` packs a batch from this many samples on: one batch evaluation costs
/// about as much as a handful of single ones, whatever its fill.
const AUTO_BATCH_FROM: usize = 16;

/// What an HE round trip over a data set measured.
pub struct HeReport {
    pub keygen_s: f64,
    pub encrypt_s: f64,
    pub eval_s: f64,
    pub decrypt_s: f64,
    pub public_bytes: usize,
    pub query_bytes: usize,
    pub answer_bytes: usize,
    pub agree: usize,
    pub correct: usize,
    pub plain_correct: usize,
    pub max_err: f64,
    pub flood_std: f64,
}

/// Client keygen → encrypt → server evaluation (from bytes, public context only) → flooded
/// decryption, for every sample; compared with the plaintext model.
pub fn he_round_trip(
    plan: &Plan,
    graph: &Graph,
    data: &LabelledData,
    show_progress: bool,
) -> Result<HeReport> {
    if plan.packing() == Packing::Batch {
        return he_round_trip_batch(plan, graph, data);
    }
    let t = Instant::now();
    let client = plan.keygen()?;
    let keygen_s = t.elapsed().as_secs_f64();
    // What the server receives: the public context as bytes, rebuilt without the secret key.
    let public = client.make_public().public_to_bytes();
    let server: Arc<VectorContext> = VectorContext::from_public_bytes(&public, None)
        .context("the server could not read the public context")?;
    let mut r = HeReport {
        keygen_s,
        encrypt_s: 0.0,
        eval_s: 0.0,
        decrypt_s: 0.0,
        public_bytes: public.len(),
        query_bytes: 0,
        answer_bytes: 0,
        agree: 0,
        correct: 0,
        plain_correct: 0,
        max_err: 0.0,
        flood_std: 0.0,
    };
    // The server encodes the model's matrices once for these parameters (counted in its time).
    let t = Instant::now();
    let prepared = plan.prepare(&server)?;
    r.eval_s += t.elapsed().as_secs_f64();
    let bar = if show_progress {
        bar(data.len(), "encrypted inference")
    } else {
        None
    };
    for (x, &label) in data.samples.iter().zip(&data.labels) {
        let reference = graph.run(x).context("plaintext model")?;
        let reference = reference.first().context("the model has no output")?;
        let t = Instant::now();
        let query = plan.encrypt(&client, x)?.to_bytes();
        r.encrypt_s += t.elapsed().as_secs_f64();
        r.query_bytes = query.len();
        let t = Instant::now();
        let query = CkksVector::from_bytes(&server, &query)?;
        let answer = prepared.evaluate(&query)?.to_bytes();
        r.eval_s += t.elapsed().as_secs_f64();
        r.answer_bytes = answer.len();
        let t = Instant::now();
        let answer = CkksVector::from_bytes(&client, &answer)?;
        let (out, flood) = plan.decrypt(&answer)?;
        r.decrypt_s += t.elapsed().as_secs_f64();
        r.flood_std = r.flood_std.max(flood);
        if out.len() == reference.len() && out.len() > 1 {
            for (a, b) in out.iter().zip(reference) {
                r.max_err = r.max_err.max((a - b).abs());
            }
        }
        let (enc, plain) = (class_of(&out), class_of(reference));
        r.agree += usize::from(enc == plain);
        r.correct += usize::from(enc == label);
        r.plain_correct += usize::from(plain == label);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(r)
}

/// [`he_round_trip`] with throughput packing: the whole data set in one query (a batch per
/// N/2 samples), with bytes between client and server.
fn he_round_trip_batch(plan: &Plan, graph: &Graph, data: &LabelledData) -> Result<HeReport> {
    let t = Instant::now();
    let client = plan.keygen()?;
    let keygen_s = t.elapsed().as_secs_f64();
    let public = client.make_public().public_to_bytes();
    let server: Arc<VectorContext> = VectorContext::from_public_bytes(&public, None)
        .context("the server could not read the public context")?;
    let t = Instant::now();
    let query = plan.encrypt_samples(&client, &data.samples)?.to_bytes();
    let encrypt_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let answer = plan
        .evaluate_samples(&EncryptedSamples::from_bytes(&server, &query)?)?
        .to_bytes();
    let eval_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (outputs, flood_std) =
        plan.decrypt_samples(&EncryptedSamples::from_bytes(&client, &answer)?)?;
    let decrypt_s = t.elapsed().as_secs_f64();
    let mut r = HeReport {
        keygen_s,
        encrypt_s,
        eval_s,
        decrypt_s,
        public_bytes: public.len(),
        query_bytes: query.len(),
        answer_bytes: answer.len(),
        agree: 0,
        correct: 0,
        plain_correct: 0,
        max_err: 0.0,
        flood_std,
    };
    for ((x, &label), out) in data.samples.iter().zip(&data.labels).zip(&outputs) {
        let reference = graph.run(x).context("plaintext model")?;
        let reference = reference.first().context("the model has no output")?;
        if out.len() == reference.len() && out.len() > 1 {
            for (a, b) in out.iter().zip(reference) {
                r.max_err = r.max_err.max((a - b).abs());
            }
        }
        let (enc, plain) = (class_of(out), class_of(reference));
        r.agree += usize::from(enc == plain);
        r.correct += usize::from(enc == label);
        r.plain_correct += usize::from(plain == label);
    }
    Ok(r)
}

/// Compiles for MPC, with bounds measured on `samples` (times 2) when given, and says so.
fn mpc_plan(
    graph: &Graph,
    options: &MpcOptions,
    samples: Option<&[Vec<f64>]>,
    model: &Path,
) -> Result<(MpcPlan, veil_ml::mpc::ModelWeights)> {
    let (plan, weights) = match samples {
        Some(samples) => MpcPlan::compile_calibrated(graph, options, samples, 2.0),
        None => MpcPlan::compile(graph, options),
    }
    .with_context(|| format!("{} cannot run under MPC", model.display()))?;
    if let Some(c) = plan.calibration() {
        outln!(
            "  value bounds measured on {} samples (times {}): no worst-case guarantee against wrap-around",
            c.samples,
            c.margin
        );
    }
    Ok((plan, weights))
}

/// `veil ml compile --mpc`.
fn compile_mpc(args: &CompileArgs, graph: &Graph) -> Result<()> {
    let options = args.roles.options();
    let samples = match args.range.calibration {
        // Bounds measured on the calibration samples, not proven.
        Some(_) => Some(compile_options(&args.range, args.scale, graph)?.calibration),
        None => None,
    };
    let (plan, _) = mpc_plan(graph, &options, samples.as_deref(), &args.model)?;
    outln!(
        "MPC plan for {}: party {} owns the model, party {} gives the samples and learns {}",
        args.model.display(),
        options.owner,
        options.client,
        match options.reveal {
            Reveal::Label => "the labels",
            Reveal::Scores => "the scores",
        }
    );
    outln!(
        "  {} inputs per sample in [-{b}, {b}], {} scores bounded by {:.1}, {} secret parameters, {} fractional bits",
        plan.input_len(),
        plan.score_len(),
        plan.score_bound(),
        plan.param_count(),
        options.fixed.frac_bits(),
        b = options.input_bound,
    );
    if let Some(out) = &args.out {
        crate::ml_mpc::save_plan(&plan, out)?;
        outln!(
            "  plan saved to {} (architecture only: publish it to every party and the dealer)",
            out.display()
        );
    }
    Ok(())
}

/// What the client of an MPC run got and what it cost, however the parties ran.
struct MpcOutcome {
    labels: Vec<i64>,
    scores: Option<Vec<Vec<f64>>>,
    share_seconds: f64,
    infer_seconds: f64,
    bytes_sent: u64,
    dealer_bytes: u64,
    rounds: u64,
    /// Processes only: from the first start to the last exit (start-up and TLS included).
    wall_seconds: Option<f64>,
}

fn run_mpc(args: &RunArgs) -> Result<()> {
    let model = load_model(&args.model)?;
    let graph = &model.graph;
    let data = load_data(&args.data, args.scale, args.limit, graph)?;
    let n = data.len();
    let replicated = args.protocol == crate::ml_mpc::ProtocolArg::Replicated;
    let parties = args.parties.unwrap_or(if replicated { 3 } else { 2 });
    if parties < 2 {
        bail!("--parties must be at least 2 (the model owner and the client)");
    }
    if replicated && parties != 3 {
        bail!("--protocol replicated runs with exactly 3 parties, not {parties}");
    }
    let batch = args.batch.unwrap_or(n);
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let options = args.roles.options();
    let samples = args.calibrate.then(|| &data.samples[..n.min(60)]);
    let (plan, weights) = mpc_plan(graph, &options, samples, &args.model)?;
    let how = if args.in_process {
        "threads of this process"
    } else {
        "processes over mutual TLS on loopback"
    };
    let helper = if replicated {
        ", no dealer (replicated shares)"
    } else {
        " + a dealer"
    };
    outln!(
        "MPC ({parties} parties{helper}, as {how}; party {} owns the model, party {} is the client): {} on {n} sample(s), batch {batch}",
        options.owner,
        options.client,
        args.model.display()
    );
    outln!(
        "  {} secret parameters, scores bounded by {:.1}, fixed point with {} fractional bits",
        plan.param_count(),
        plan.score_bound(),
        options.fixed.frac_bits()
    );
    let spinner = progress::spinner("secure inference");
    let outcome = if args.in_process {
        let run = if replicated {
            veil_ml::mpc::run_local_replicated(&plan, &weights, &data.samples, batch)?
        } else {
            run_local(&plan, &weights, parties, &data.samples, batch)?
        };
        MpcOutcome {
            labels: run.predictions.iter().map(|p| p.label).collect(),
            scores: run.predictions.iter().map(|p| p.scores.clone()).collect(),
            share_seconds: run.share_seconds,
            infer_seconds: run.infer_seconds,
            bytes_sent: run.bytes_sent.iter().sum(),
            dealer_bytes: run.dealer_bytes,
            rounds: run.rounds,
            wall_seconds: None,
        }
    } else {
        let run = crate::ml_mpc::run_processes(
            &args.model,
            &plan,
            &args.data,
            args.scale,
            args.limit,
            parties,
            Some(batch),
            args.protocol,
        )?;
        let client = run
            .reports
            .iter()
            .find(|r| r.party == options.client)
            .context("the client did not report")?;
        MpcOutcome {
            labels: client
                .labels
                .clone()
                .context("the client got no prediction")?,
            scores: client.scores.clone(),
            share_seconds: client.share_seconds,
            infer_seconds: client.infer_seconds,
            bytes_sent: run.reports.iter().map(|r| r.bytes_sent).sum(),
            dealer_bytes: run.reports.iter().map(|r| r.dealer_bytes).sum(),
            rounds: run.reports.iter().map(|r| r.rounds).max().unwrap_or(0),
            wall_seconds: Some(run.wall_seconds),
        }
    };
    drop(spinner);
    if outcome.labels.len() != n {
        bail!("{} predictions for {n} samples", outcome.labels.len());
    }
    let mut agree = 0;
    let mut correct = 0;
    let mut plain_correct = 0;
    let mut max_err = 0.0f64;
    for (i, (x, &label)) in data.samples.iter().zip(&data.labels).enumerate() {
        let plain = plain_class(graph, x)?;
        let pred = outcome.labels[i];
        agree += usize::from(pred == plain);
        correct += usize::from(pred == label);
        plain_correct += usize::from(plain == label);
        if let Some(scores) = outcome.scores.as_ref().and_then(|s| s.get(i)) {
            let reference = graph.run(x).context("plaintext model")?;
            if let Some(reference) = reference.first().filter(|r| r.len() == scores.len()) {
                for (a, b) in scores.iter().zip(reference) {
                    max_err = max_err.max((a - b).abs());
                }
            }
        }
    }
    outln!(
        "  model sharing (once): {:.0} ms",
        outcome.share_seconds * 1e3
    );
    outln!(
        "  inference: {:.3} ms/image, {:.0} B/image between parties + {:.0} B/image from the dealer, {} rounds",
        outcome.infer_seconds * 1e3 / n as f64,
        outcome.bytes_sent as f64 / n as f64,
        outcome.dealer_bytes as f64 / n as f64,
        outcome.rounds
    );
    if let Some(w) = outcome.wall_seconds {
        outln!("  wall time with process start-up and TLS handshakes: {w:.2} s");
    }
    if matches!(args.roles.reveal, RevealArg::Scores) {
        outln!("  largest score error vs plaintext: {max_err:.4}");
    }
    outln!(
        "  agreement with the plaintext model: {agree}/{n} ({:.1}%)",
        percent(agree, n)
    );
    outln!(
        "  accuracy: MPC {:.1}%, plaintext {:.1}%",
        percent(correct, n),
        percent(plain_correct, n)
    );
    Ok(())
}
