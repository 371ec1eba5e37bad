//! `veil ml party | dealer` and `veil ml run --mpc`: secure inference with the parties and
//! the dealer as separate processes over mutual TLS (veil-mpc's session, `veil mpc init`).
//!
//! The model owner compiles the model (`veil ml compile --mpc --out plan.json`) and
//! publishes the plan — the architecture, no weight — to the other parties and the dealer.
//! Every participant runs with the same `parties.toml` and plan: the plan's SHA-256 is part
//! of the session hash, so a participant holding another plan is refused at connection.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use veil_ml::data::LabelledData;
use veil_ml::mpc::{MpcPlan, Prediction};
use veil_mpc::config::SessionConfig;
use veil_mpc::net::{connect_party, connect_peers, run_dealer};
use veil_mpc::protocol::Party;
use veil_mpc::rss::Rss;
use veil_mpc::Engine;

use crate::attest::Format;

/// The MPC protocol family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    /// Two or more parties and a dealer of correlated randomness (the dealer and any one
    /// party together see everything).
    #[default]
    Dealer,
    /// Exactly three parties, no dealer: replicated shares, honest majority (any two parties
    /// together see everything).
    Replicated,
}

impl ProtocolArg {
    fn name(self) -> &'static str {
        match self {
            Self::Dealer => "dealer",
            Self::Replicated => "replicated",
        }
    }
}

#[derive(Args, Debug)]
pub struct PartyArgs {
    /// The session configuration (`veil mpc init`, or `veil mpc certify` for separate
    /// machines).
    #[arg(long, default_value = "mpc-session/parties.toml")]
    pub config: PathBuf,
    /// This party's id (its position in parties.toml, from 0).
    #[arg(long)]
    pub id: usize,
    /// The plan the model owner published (`veil ml compile --mpc --out`).
    #[arg(long)]
    pub plan: PathBuf,
    /// The model owner: the ONNX model (it must compile to the published plan).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The client: the samples, a CSV with a header then `label,x0,x1,…` per row (the labels
    /// are not shared; they give the client its accuracy).
    #[arg(long, value_name = "DATA.csv")]
    pub data: Option<PathBuf>,
    /// The client: every feature is multiplied by this (1/16 for the digits pixels).
    #[arg(long, default_value_t = 0.0625)]
    pub scale: f64,
    /// The client: use only the first N samples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The client: samples per batch (default: all at once). The number of samples and the
    /// batch size are revealed to every party.
    #[arg(long)]
    pub batch: Option<usize>,
    /// The protocol family (every participant must give the same: it is part of the
    /// session).
    #[arg(long, value_enum, default_value_t = ProtocolArg::Dealer)]
    pub protocol: ProtocolArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct DealerArgs {
    /// The session configuration.
    #[arg(long, default_value = "mpc-session/parties.toml")]
    pub config: PathBuf,
    /// The published plan (the dealer learns the architecture, nothing else of the model).
    #[arg(long)]
    pub plan: PathBuf,
}

/// Largest plan file read.
const MAX_PLAN_BYTES: u64 = 1 << 30;

/// Reads and validates a published plan; returns it with the program string hashed into
/// the session (for the dealer family).
pub fn load_plan(path: &Path) -> Result<(MpcPlan, String)> {
    load_plan_for(path, ProtocolArg::Dealer)
}

/// [`load_plan`] for a protocol family.
fn load_plan_for(path: &Path, protocol: ProtocolArg) -> Result<(MpcPlan, String)> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read the plan {}", path.display()))?;
    if meta.len() > MAX_PLAN_BYTES {
        bail!("{} is larger than a plan may be", path.display());
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the plan {}", path.display()))?;
    let plan = MpcPlan::from_bytes(&bytes)
        .with_context(|| format!("{} is not a usable MPC plan", path.display()))?;
    Ok((plan, program_spec(&bytes, protocol)))
}

/// The program every participant must agree on: the protocol and the plan file's hash.
fn program_spec(plan_bytes: &[u8], protocol: ProtocolArg) -> String {
    format!(
        "ml-infer protocol={} plan-sha256={}",
        protocol.name(),
        hex::encode(Sha256::digest(plan_bytes))
    )
}

/// Writes `plan` for publication.
pub fn save_plan(plan: &MpcPlan, path: &Path) -> Result<()> {
    std::fs::write(path, plan.to_bytes())
        .with_context(|| format!("cannot write the plan {}", path.display()))
}

/// `veil ml dealer`.
pub fn dealer(a: &DealerArgs) -> Result<()> {
    let config = SessionConfig::load(&a.config)?;
    let (_, spec) = load_plan(&a.plan)?;
    let report = run_dealer(&config, &spec)?;
    eprintln!(
        "dealer: {} requests, {} bytes of corrections to the last party",
        report.requests, report.correction_bytes
    );
    Ok(())
}

/// What a party reports (JSON with `--format json`).
#[derive(serde::Serialize, serde::Deserialize, Debug)]
pub struct PartyReport {
    /// The party's id.
    pub party: usize,
    /// The client's predictions (absent at the other parties).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<i64>>,
    /// The client's scores ([`veil_ml::mpc::Reveal::Scores`] only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<Vec<f64>>>,
    /// Samples inferred.
    pub samples: usize,
    /// Seconds to share the model.
    pub share_seconds: f64,
    /// Seconds of inference (all batches).
    pub infer_seconds: f64,
    /// Bytes this party sent to the other parties during inference.
    pub bytes_sent: u64,
    /// Bytes of dealer corrections this party received during inference.
    pub dealer_bytes: u64,
    /// Communication rounds of inference.
    pub rounds: u64,
}

/// `veil ml party`.
pub fn party(a: &PartyArgs) -> Result<()> {
    let config = SessionConfig::load(&a.config)?;
    if a.id >= config.parties() {
        bail!(
            "--id {} is not a party of {} ({} parties)",
            a.id,
            a.config.display(),
            config.parties()
        );
    }
    let (plan, spec) = load_plan_for(&a.plan, a.protocol)?;
    let options = *plan.options();
    if a.protocol == ProtocolArg::Replicated && config.parties() != 3 {
        bail!(
            "the replicated protocol runs with exactly 3 parties; {} lists {}",
            a.config.display(),
            config.parties()
        );
    }
    let is_owner = a.id == options.owner;
    let is_client = a.id == options.client;
    // Everything this party can check alone, before it connects.
    let weights = match (&a.model, is_owner) {
        (Some(path), true) => {
            let model = veil_ml::onnx::import_file(path)
                .with_context(|| format!("cannot use the model {}", path.display()))?;
            let weights = plan.owner_weights(&model.graph).map_err(|e| {
                anyhow::anyhow!(
                    "{} does not compile to the plan {}: {e}",
                    path.display(),
                    a.plan.display()
                )
            })?;
            Some(weights)
        }
        (None, true) => bail!("party {} owns the model: give it with --model", a.id),
        (Some(_), false) => bail!(
            "party {} does not own the model (party {} does): --model is the owner's",
            a.id,
            options.owner
        ),
        (None, false) => None,
    };
    let data = match (&a.data, is_client) {
        (Some(path), true) => Some(load_samples(path, a.scale, a.limit, &plan)?),
        (None, true) => bail!("party {} is the client: give the samples with --data", a.id),
        (Some(_), false) => bail!(
            "party {} is not the client (party {} is): --data is the client's",
            a.id,
            options.client
        ),
        (None, false) => None,
    };
    if a.batch == Some(0) {
        bail!("--batch must be at least 1");
    }
    let report = match a.protocol {
        ProtocolArg::Dealer => {
            let (ex, seed) = connect_party(&config, a.id, &spec)?;
            let mut p = Party::new(ex, &seed, config.fixed())?;
            drop(seed);
            let report = run_party(&mut p, &plan, weights.as_ref(), data.as_ref(), a.batch)?;
            // The computation is over: the dealer may stop.
            p.exchange_mut().finish()?;
            report
        }
        ProtocolArg::Replicated => {
            let ex = connect_peers(&config, a.id, &spec)?;
            let mut p = Rss::new(ex, config.fixed())?;
            let report = run_party(&mut p, &plan, weights.as_ref(), data.as_ref(), a.batch)?;
            p.exchange_mut().finish()?;
            report
        }
    };
    match a.format {
        Format::Json => outln!("{}", serde_json::to_string(&report)?),
        Format::Text => print_report(&report, data.as_ref())?,
    }
    Ok(())
}

fn load_samples(
    path: &Path,
    scale: f64,
    limit: Option<usize>,
    plan: &MpcPlan,
) -> Result<LabelledData> {
    let data = crate::ml::load_data_for(path, scale, limit, plan.input_len())?;
    let bound = plan.options().input_bound;
    for (i, s) in data.samples.iter().enumerate() {
        if let Some(v) = s.iter().find(|v| v.is_nan() || v.abs() > bound) {
            bail!(
                "{}: sample {} holds {v} (after --scale), outside the plan's input range \
                 [-{bound}, {bound}]",
                path.display(),
                i + 1
            );
        }
    }
    Ok(data)
}

/// One party's part: share the model, agree on the sample count and batch size, infer.
fn run_party<P: Engine>(
    p: &mut P,
    plan: &MpcPlan,
    weights: Option<&veil_ml::mpc::ModelWeights>,
    data: Option<&LabelledData>,
    batch: Option<usize>,
) -> Result<PartyReport> {
    let client = plan.options().client;
    let start = Instant::now();
    let model = plan.share_model(p, weights)?;
    let share_seconds = start.elapsed().as_secs_f64();
    // The client announces how many samples, in batches of how many.
    let n_mine = data.map_or(0, |d| d.samples.len());
    let n = p.exchange_lengths(n_mine)?[client];
    let b = p.exchange_lengths(batch.unwrap_or(n_mine).min(n_mine))?[client];
    if n == 0 || b == 0 {
        bail!("the client announced {n} samples in batches of {b}");
    }
    let before = p.totals();
    let start = Instant::now();
    let mut predictions: Vec<Prediction> = Vec::new();
    let mut done = 0;
    while done < n {
        let take = b.min(n - done);
        let chunk = data.map(|d| &d.samples[done..done + take]);
        if let Some(out) = plan.infer(p, &model, chunk, take)? {
            predictions.extend(out);
        }
        done += take;
    }
    let infer_seconds = start.elapsed().as_secs_f64();
    let after = p.totals();
    let is_client = p.id() == client;
    Ok(PartyReport {
        party: p.id(),
        labels: is_client.then(|| predictions.iter().map(|q| q.label).collect()),
        scores: if is_client && predictions.iter().all(|q| q.scores.is_some()) {
            Some(
                predictions
                    .iter()
                    .filter_map(|q| q.scores.clone())
                    .collect(),
            )
        } else {
            None
        },
        samples: n,
        share_seconds,
        infer_seconds,
        bytes_sent: after.bytes_sent - before.bytes_sent,
        dealer_bytes: after.dealer_bytes - before.dealer_bytes,
        rounds: after.rounds - before.rounds,
    })
}

fn print_report(r: &PartyReport, data: Option<&LabelledData>) -> Result<()> {
    outln!(
        "party {}: {} sample(s); model shared in {:.0} ms; inference {:.3} ms/sample, {} B sent, {} B from the dealer, {} rounds",
        r.party,
        r.samples,
        r.share_seconds * 1e3,
        r.infer_seconds * 1e3 / r.samples.max(1) as f64,
        r.bytes_sent,
        r.dealer_bytes,
        r.rounds
    );
    let (Some(labels), Some(data)) = (&r.labels, data) else {
        return Ok(());
    };
    let mut correct = 0;
    for (i, (&l, &truth)) in labels.iter().zip(&data.labels).enumerate() {
        correct += usize::from(l == truth);
        outln!("  sample {:>4}: {l}", i + 1);
    }
    outln!(
        "  accuracy against the CSV's labels: {correct}/{} ({:.1}%)",
        labels.len(),
        100.0 * correct as f64 / labels.len().max(1) as f64
    );
    Ok(())
}

/// What `veil ml run --mpc` measured with the parties as processes.
pub struct ProcessRun {
    /// Each party's report, in party order.
    pub reports: Vec<PartyReport>,
    /// Wall-clock seconds from the first process started to the last one done.
    pub wall_seconds: f64,
}

/// Starts the dealer and `parties` party processes over mutual TLS on loopback (a
/// throwaway session): the owner with `model`, the client with the samples of `data`.
#[allow(
    clippy::too_many_arguments,
    reason = "what a user gives `veil ml run --mpc`"
)]
pub fn run_processes(
    model: &Path,
    plan: &MpcPlan,
    data: &Path,
    scale: f64,
    limit: Option<usize>,
    parties: usize,
    batch: Option<usize>,
    protocol: ProtocolArg,
) -> Result<ProcessRun> {
    let (dir, config) = crate::mpc::temp_session("ml", parties, &[])?;
    let out = (|| {
        let plan_path = dir.join("plan.json");
        save_plan(plan, &plan_path)?;
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let common = |cmd: &str| -> Vec<String> {
            vec![
                "ml".into(),
                cmd.into(),
                "--config".into(),
                path(&config),
                "--plan".into(),
                path(&plan_path),
            ]
        };
        let start = Instant::now();
        let mut dealer = match protocol {
            ProtocolArg::Dealer => Some(crate::mpc::spawn(&common("dealer"))?),
            ProtocolArg::Replicated => None,
        };
        let options = plan.options();
        let mut children = Vec::with_capacity(parties);
        for id in 0..parties {
            let mut args = common("party");
            args.extend([
                "--id".into(),
                id.to_string(),
                "--format".into(),
                "json".into(),
                "--protocol".into(),
                protocol.name().into(),
            ]);
            if id == options.owner {
                args.extend(["--model".into(), path(model)]);
            }
            if id == options.client {
                args.extend([
                    "--data".into(),
                    path(data),
                    "--scale".into(),
                    scale.to_string(),
                ]);
                if let Some(k) = limit {
                    args.extend(["--limit".into(), k.to_string()]);
                }
                if let Some(b) = batch {
                    args.extend(["--batch".into(), b.to_string()]);
                }
            }
            children.push(crate::mpc::spawn(&args)?);
        }
        let mut reports = Vec::with_capacity(parties);
        let mut failures = Vec::new();
        for (id, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().context("waiting for a party")?;
            if !out.status.success() {
                failures.push(format!(
                    "party {id}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                continue;
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().last().unwrap_or_default();
            reports.push(
                serde_json::from_str::<PartyReport>(line)
                    .with_context(|| format!("party {id} reported `{line}`"))?,
            );
        }
        if !failures.is_empty() {
            if let Some(mut dealer) = dealer {
                let _ = dealer.kill();
                let _ = dealer.wait();
            }
            bail!("{}", failures.join("\n"));
        }
        if let Some(dealer) = dealer.take() {
            let dealer = dealer
                .wait_with_output()
                .context("waiting for the dealer")?;
            if !dealer.status.success() {
                bail!("dealer: {}", String::from_utf8_lossy(&dealer.stderr).trim());
            }
        }
        Ok(ProcessRun {
            reports,
            wall_seconds: start.elapsed().as_secs_f64(),
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// The model `veil ml train` trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TrainModel {
    /// Per-class logistic regression (one dense layer).
    Logreg,
    /// A hidden layer with ReLU (`--hidden` units), then the output layer.
    Mlp,
}

/// How `veil ml train` splits the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    /// Each party's file holds whole rows: `label,x0,x1,…`.
    Rows,
    /// Each party's file holds some columns of the same rows, in the same order; the file
    /// whose header starts with `label` holds the labels (exactly one).
    Columns,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// One CSV per party, in party order (a header line, then one row per line).
    #[arg(long = "part", value_name = "FILE.csv", required = true)]
    pub parts: Vec<PathBuf>,
    /// How the data is split between the parties.
    #[arg(long, value_enum, default_value_t = SplitArg::Rows)]
    pub split: SplitArg,
    /// The model.
    #[arg(long, value_enum, default_value_t = TrainModel::Logreg)]
    pub model: TrainModel,
    /// mlp: hidden units.
    #[arg(long, default_value_t = 16)]
    pub hidden: usize,
    /// Number of classes (labels 0 to classes − 1).
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Passes over the data.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Rows per SGD step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.5)]
    pub rate: f64,
    /// Seed of the initial weights and the row order (public).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Every feature is multiplied by this (1/16 for the digits pixels); features must then
    /// lie in [-1, 1].
    #[arg(long, default_value_t = 0.0625)]
    pub scale: f64,
    /// The party that receives the model.
    #[arg(long, default_value_t = 0)]
    pub owner: usize,
    /// Where the owner writes the trained model (ONNX).
    #[arg(long, value_name = "MODEL.onnx")]
    pub out: PathBuf,
    /// A labelled CSV (`label,x0,…`, all features in party order) to measure the model on,
    /// against plaintext SGD on the pooled rows.
    #[arg(long, value_name = "DATA.csv")]
    pub test: Option<PathBuf>,
}

/// A party's CSV: labels if its header starts with `label`, and the features.
fn read_part(path: &Path, scale: f64) -> Result<veil_ml::train::PartyData> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the data file {}", path.display()))?;
    let header = text.lines().next().unwrap_or_default();
    let labelled = header
        .split(',')
        .next()
        .is_some_and(|f| f.trim().eq_ignore_ascii_case("label"));
    let parsed = if labelled {
        LabelledData::from_csv(&text, scale)
    } else {
        // The same parser with a zero label in front of every row.
        let prefixed: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 || l.trim().is_empty() {
                    format!("{l}\n")
                } else {
                    format!("0,{l}\n")
                }
            })
            .collect();
        LabelledData::from_csv(&prefixed, scale)
    }
    .with_context(|| format!("{} is not a CSV of numbers", path.display()))?;
    let labels = if labelled {
        let labels = parsed
            .labels
            .iter()
            .map(|&l| usize::try_from(l))
            .collect::<std::result::Result<Vec<usize>, _>>()
            .with_context(|| format!("{}: a negative label", path.display()))?;
        Some(labels)
    } else {
        None
    };
    Ok(veil_ml::train::PartyData {
        features: parsed.samples,
        labels,
    })
}

/// `veil ml train`: every party and the dealer as threads of this process.
pub fn train(a: &TrainArgs) -> Result<()> {
    use veil_ml::train::{plaintext_sgd, train_local, Architecture, Split, TrainOptions};
    if !(a.scale.is_finite() && a.scale > 0.0) {
        bail!("--scale must be a positive number, got {}", a.scale);
    }
    if a.parts.len() < 2 {
        bail!("give at least two --part files (one per party)");
    }
    let parts = a
        .parts
        .iter()
        .map(|p| read_part(p, a.scale))
        .collect::<Result<Vec<_>>>()?;
    let options = TrainOptions {
        architecture: match a.model {
            TrainModel::Logreg => Architecture::Logistic,
            TrainModel::Mlp => Architecture::Mlp { hidden: a.hidden },
        },
        classes: a.classes,
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.rate,
        seed: a.seed,
        owner: a.owner,
        ..TrainOptions::default()
    };
    let split = match a.split {
        SplitArg::Rows => Split::Rows,
        SplitArg::Columns => Split::Columns,
    };
    outln!(
        "training {} on {} parties' {} (parties and dealer as threads of this process), \
         {} epochs of batches of {}, rate {}",
        match a.model {
            TrainModel::Logreg => "logistic regression".to_string(),
            TrainModel::Mlp => format!("an MLP with {} hidden units", a.hidden),
        },
        parts.len(),
        match split {
            Split::Rows => "rows",
            Split::Columns => "columns",
        },
        a.epochs,
        a.batch_size,
        a.rate
    );
    let spinner = crate::progress::spinner("training on shares");
    let start = Instant::now();
    let model = train_local(&parts, split, &options)?;
    let seconds = start.elapsed().as_secs_f64();
    drop(spinner);
    let bytes = model.to_onnx()?;
    std::fs::write(&a.out, &bytes)
        .with_context(|| format!("cannot write the model {}", a.out.display()))?;
    outln!(
        "  trained in {seconds:.2} s; party {} wrote the model to {} ({} bytes of ONNX)",
        a.owner,
        a.out.display(),
        bytes.len()
    );
    if let Some(test) = &a.test {
        // The reference: the same schedule in plaintext on the pooled data, which only this
        // single-machine command can see.
        let (x, y) = pooled(&parts, split)?;
        let plain = plaintext_sgd(&x, &y, &options)?;
        let text = std::fs::read_to_string(test)
            .with_context(|| format!("cannot read {}", test.display()))?;
        let data = LabelledData::from_csv(&text, a.scale)
            .with_context(|| format!("{} is not a labelled CSV file", test.display()))?;
        if data.samples.first().map(Vec::len) != Some(model.input_len) {
            bail!(
                "{} has {} features per row, the model takes {}",
                test.display(),
                data.samples.first().map_or(0, Vec::len),
                model.input_len
            );
        }
        let acc = |m: &veil_ml::train::Model| {
            let ok = data
                .samples
                .iter()
                .zip(&data.labels)
                .filter(|(x, &l)| m.predict(x) as i64 == l)
                .count();
            100.0 * ok as f64 / data.samples.len().max(1) as f64
        };
        let mut diff = 0.0f64;
        for (l, r) in model.layers.iter().zip(&plain.layers) {
            for (u, v) in l
                .weight
                .iter()
                .chain(&l.bias)
                .zip(r.weight.iter().chain(&r.bias))
            {
                diff = diff.max((u - v).abs());
            }
        }
        outln!(
            "  accuracy on {}: {:.1}% (plaintext SGD on the pooled rows: {:.1}%); largest weight difference {diff:.4}",
            test.display(),
            acc(&model),
            acc(&plain)
        );
    }
    Ok(())
}

/// The parties' data pooled (for the plaintext reference only).
fn pooled(
    parts: &[veil_ml::train::PartyData],
    split: veil_ml::train::Split,
) -> Result<(Vec<Vec<f64>>, Vec<usize>)> {
    match split {
        veil_ml::train::Split::Rows => {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for p in parts {
                x.extend(p.features.iter().cloned());
                y.extend(p.labels.iter().flatten().copied());
            }
            Ok((x, y))
        }
        veil_ml::train::Split::Columns => {
            let n = parts[0].features.len();
            let x = (0..n)
                .map(|r| {
                    parts
                        .iter()
                        .flat_map(|p| p.features.get(r).cloned().unwrap_or_default())
                        .collect()
                })
                .collect();
            let y = parts
                .iter()
                .find_map(|p| p.labels.clone())
                .context("no party holds the labels")?;
            Ok((x, y))
        }
    }
}
