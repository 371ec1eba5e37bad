//! `veil mpc …` and `veil psi`: secure multi-party computation between processes over mutual
//! TLS (see `veil_mpc`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use veil_mpc::config::{init, SessionConfig};
use veil_mpc::net::{connect_party, connect_peers, run_dealer, NetExchange};
use veil_mpc::protocol::{Party, Shared};

use crate::attest::Format;

#[derive(Subcommand, Debug)]
pub enum MpcCommand {
    /// Write a local test session: a CA, per-party and dealer certificates, parties.toml.
    /// Every private key is created in that one directory: for a test on one machine.
    Init(InitArgs),
    /// A participant's own key and certificate request (the key never leaves its owner).
    Keygen(KeygenArgs),
    /// The organiser: a session from the participants' certificate requests (no private key).
    Certify(CertifyArgs),
    /// Run one party (an OS process; start one per party, plus the dealer).
    Party(PartyArgs),
    /// Run the dealer of correlated randomness.
    Dealer(DealerArgs),
    /// Start the dealer and every party as local processes and print the results.
    Run(RunArgs),
    /// Measure operations with N party processes and the dealer on loopback (real TLS).
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Number of parties.
    #[arg(long, default_value_t = 3)]
    pub parties: usize,
    /// Party names (comma-separated; default p0, p1, …).
    #[arg(long, value_delimiter = ',')]
    pub names: Vec<String>,
    /// Directory to write (must not hold a session yet).
    #[arg(long, default_value = "mpc-session")]
    pub dir: PathBuf,
    /// The dealer's port; parties use the next ones.
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The party whose key this is (its position in parties.toml, from 0).
    #[arg(long, conflicts_with = "dealer", required_unless_present = "dealer")]
    pub party: Option<usize>,
    /// The key is the dealer's.
    #[arg(long)]
    pub dealer: bool,
    /// Directory to write the key (`party-N.key`, readable by you only) and the request
    /// (`party-N.csr`, to send to the organiser).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct CertifyArgs {
    /// Directory holding every participant's request: dealer.csr, party-0.csr, …
    #[arg(long)]
    pub requests: PathBuf,
    /// Number of parties.
    #[arg(long, default_value_t = 3)]
    pub parties: usize,
    /// Party names (comma-separated; default p0, p1, …).
    #[arg(long, value_delimiter = ',')]
    pub names: Vec<String>,
    /// Directory to write the session to (certificates, ca.pem, parties.toml).
    #[arg(long, default_value = "mpc-session")]
    pub dir: PathBuf,
    /// The dealer's port; parties use the next ones (edit the addresses in parties.toml).
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
}

/// What the parties compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Program {
    /// Sum, mean, variance, standard deviation, histogram of the parties' columns.
    Stats,
    /// Logistic regression trained on the parties' rows (features…, 0/1 label).
    Logreg,
    /// Inference of a two-layer perceptron with ReLU: the model owner's weights (JSON) on the
    /// other parties' rows (CSV of features); each party learns the classes of its own rows.
    Mlp,
    /// Timing of the basic operations (random data).
    Bench,
}

#[derive(Args, Debug, Clone)]
pub struct ProgramArgs {
    /// The computation (every party and the dealer must give the same one and the same
    /// options: they are part of the session hash).
    #[arg(long, value_enum)]
    pub program: Program,
    /// stats: low end of the histogram.
    #[arg(long, default_value_t = 0.0)]
    pub low: f64,
    /// stats: high end of the histogram.
    #[arg(long, default_value_t = 100.0)]
    pub high: f64,
    /// stats: number of bins.
    #[arg(long, default_value_t = 10)]
    pub bins: usize,
    /// stats: the largest magnitude of a value (public, the same for every party). Values
    /// beyond are refused — by their owner before it connects, and on the shares — never
    /// miscomputed. A bound far above the data costs precision; at most 2,965,820 with 16
    /// fractional bits (scale larger data).
    #[arg(long, default_value_t = 1_000_000.0)]
    pub max_abs: f64,
    /// logreg: gradient-descent epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// logreg: learning rate.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// mlp: the party holding the model (default: the last).
    #[arg(long)]
    pub model_owner: Option<usize>,
    /// bench: elements of the batched multiplication.
    #[arg(long, default_value_t = 1_000_000)]
    pub bench_mul: usize,
    /// bench: comparisons per batch.
    #[arg(long, default_value_t = 10_000)]
    pub bench_lt: usize,
}

impl ProgramArgs {
    /// The `stats` program with these options.
    fn stats(&self) -> veil_mpc::programs::Stats {
        veil_mpc::programs::Stats {
            low: self.low,
            high: self.high,
            bins: self.bins,
            max_abs: self.max_abs,
        }
    }

    /// The canonical description hashed into the session.
    fn spec(&self) -> String {
        match self.program {
            Program::Stats => self.stats().spec(),
            Program::Logreg => format!("logreg epochs={} rate={}", self.epochs, self.rate),
            Program::Mlp => format!("mlp owner={:?}", self.model_owner),
            Program::Bench => format!("bench mul={} lt={}", self.bench_mul, self.bench_lt),
        }
    }
}

#[derive(Args, Debug)]
pub struct PartyArgs {
    /// The session configuration.
    #[arg(long, default_value = "mpc-session/parties.toml")]
    pub config: PathBuf,
    /// This party's id (its position in parties.toml, from 0).
    #[arg(long)]
    pub id: usize,
    #[command(flatten)]
    pub program: ProgramArgs,
    /// This party's data (CSV).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// stats: the CSV column (default: the only, or first numeric, column).
    #[arg(long)]
    pub column: Option<String>,
    /// Print bytes sent and rounds per operation (stderr).
    #[arg(long)]
    pub stats: bool,
    /// Output format of the results.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct DealerArgs {
    /// The session configuration.
    #[arg(long, default_value = "mpc-session/parties.toml")]
    pub config: PathBuf,
    #[command(flatten)]
    pub program: ProgramArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The session configuration.
    #[arg(long, default_value = "mpc-session/parties.toml")]
    pub config: PathBuf,
    #[command(flatten)]
    pub program: ProgramArgs,
    /// Each party's CSV, in party order (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub inputs: Vec<PathBuf>,
    /// stats: the CSV column.
    #[arg(long)]
    pub column: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Number of party processes.
    #[arg(long, default_value_t = 2)]
    pub parties: usize,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Elements of the batched multiplication.
    #[arg(long, default_value_t = 1_000_000)]
    pub mul: usize,
    /// Comparisons per batch.
    #[arg(long, default_value_t = 10_000)]
    pub lt: usize,
}

#[derive(Args, Debug)]
pub struct PsiArgs {
    /// Which side: the receiver learns the intersection, the sender learns nothing.
    #[arg(long, value_enum)]
    pub role: PsiRole,
    /// A two-party session configuration (party 0 receives, party 1 sends).
    #[arg(long, default_value = "mpc-session/parties.toml")]
    pub config: PathBuf,
    /// Identifiers, one per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Learn only the size of the intersection.
    #[arg(long)]
    pub cardinality_only: bool,
    /// How identifiers are normalised before matching: a comma-separated list of `trim`
    /// (white space at both ends), `casefold` (upper/lower case), `nfkc` (Unicode
    /// compatibility forms: full-width letters, ligatures, composed accents), or `none`.
    /// Both sides must give the same (it is part of the session; a difference is refused).
    /// For e-mail addresses: `trim,casefold,nfkc`.
    #[arg(long, default_value = "trim")]
    pub normalize: String,
    /// Receiver: write the intersection here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The two sides of PSI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PsiRole {
    /// Learns the intersection (party 0).
    Receiver,
    /// Helps, learns nothing but the other set's size (party 1).
    Sender,
}

pub fn run(cmd: MpcCommand) -> Result<()> {
    match cmd {
        MpcCommand::Init(a) => {
            let names: Vec<String> = if a.names.is_empty() {
                (0..a.parties).map(|i| format!("p{i}")).collect()
            } else {
                a.names.clone()
            };
            if a.dir.join("parties.toml").exists() {
                bail!("{} already holds a session", a.dir.display());
            }
            let path = init(&a.dir, &names, a.base_port)?;
            outln!("session       {}", path.display());
            outln!("parties       {} ({})", names.len(), names.join(", "));
            outln!(
                "certificates  {} (CA key discarded: nobody can add a party)",
                a.dir.display()
            );
            Ok(())
        }
        MpcCommand::Keygen(a) => {
            let party = if a.dealer { None } else { a.party };
            let (key, csr) = veil_mpc::config::keygen(&a.dir, party)?;
            outln!("key      {} (keep it: it never leaves you)", key.display());
            outln!(
                "request  {} (send it to the session's organiser)",
                csr.display()
            );
            Ok(())
        }
        MpcCommand::Certify(a) => {
            let names: Vec<String> = if a.names.is_empty() {
                (0..a.parties).map(|i| format!("p{i}")).collect()
            } else {
                a.names.clone()
            };
            if a.dir.join("parties.toml").exists() {
                bail!("{} already holds a session", a.dir.display());
            }
            let path = veil_mpc::config::certify(&a.dir, &names, a.base_port, &a.requests)?;
            outln!("session       {}", path.display());
            outln!("parties       {} ({})", names.len(), names.join(", "));
            outln!(
                "certificates  {} (CA key discarded; no private key here: each participant adds its own)",
                a.dir.display()
            );
            Ok(())
        }
        MpcCommand::Party(a) => party(&a),
        MpcCommand::Dealer(a) => {
            let config = SessionConfig::load(&a.config)?;
            let report = run_dealer(&config, &a.program.spec())?;
            eprintln!(
                "dealer: {} requests, {} bytes of corrections to the last party",
                report.requests, report.correction_bytes
            );
            Ok(())
        }
        MpcCommand::Run(a) => run_local(&a),
        MpcCommand::Bench(a) => bench(&a),
    }
}

/// Numeric columns of a CSV: the header (if any) and the rows.
fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .peekable();
    let first: Vec<String> = lines
        .peek()
        .map(|l| l.split(',').map(|c| c.trim().to_string()).collect())
        .unwrap_or_default();
    let header = if first.iter().any(|c| c.parse::<f64>().is_err()) {
        lines.next();
        first
    } else {
        Vec::new()
    };
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let row = line
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .with_context(|| {
                        format!("{}: row {}: {c:?} is not a number", path.display(), i + 1)
                    })
            })
            .collect::<Result<Vec<f64>>>()?;
        // Every row as wide as the header (or, without one, as the first row).
        let width = if header.is_empty() {
            rows.first().map(Vec::len)
        } else {
            Some(header.len())
        };
        if let Some(width) = width.filter(|w| *w != row.len()) {
            bail!(
                "{}: row {} has {} cells where {} has {width}",
                path.display(),
                i + 1,
                row.len(),
                if header.is_empty() {
                    "the first row"
                } else {
                    "the header"
                }
            );
        }
        rows.push(row);
    }
    Ok((header, rows))
}

fn column(path: &Path, name: Option<&str>) -> Result<Vec<f64>> {
    let (header, rows) = read_csv(path)?;
    let j = match name {
        Some(n) => header
            .iter()
            .position(|h| h == n)
            .with_context(|| format!("{} has no column {n:?}", path.display()))?,
        None => 0,
    };
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            r.get(j)
                .copied()
                .with_context(|| format!("{}: row {} has no cell {}", path.display(), i + 1, j + 1))
        })
        .collect()
}

fn print_stats(party: &Party<NetExchange>) {
    for (op, s) in &party.stats().ops {
        eprintln!(
            "party {} {op:<12} calls {:>5}  rounds {:>6}  sent {:>12} B  dealer {:>12} B",
            party.id(),
            s.calls,
            s.rounds,
            s.bytes_sent,
            s.dealer_bytes
        );
    }
    let t = party.stats().total();
    eprintln!(
        "party {} total        rounds {:>6}  sent {:>12} B  dealer {:>12} B",
        party.id(),
        t.rounds,
        t.bytes_sent,
        t.dealer_bytes
    );
}

/// Opens `x` to the parties that learn results; `Some` at those.
fn reveal(
    p: &mut Party<NetExchange>,
    config: &SessionConfig,
    x: &Shared,
) -> Result<Option<Vec<u64>>> {
    Ok(veil_mpc::programs::reveal_to_learners(p, config, x)?)
}

fn party(a: &PartyArgs) -> Result<()> {
    let config = SessionConfig::load(&a.config)?;
    let spec = a.program.spec();
    // Input problems are found before connecting, where only this party's data is known.
    let stats_column = match a.program.program {
        Program::Stats => {
            let path = a.input.as_ref().context("stats needs --input FILE.csv")?;
            let col = column(path, a.column.as_deref())?;
            let max_abs = a.program.max_abs;
            if let Some((i, v)) = col.iter().enumerate().find(|(_, v)| v.abs() > max_abs) {
                bail!(
                    "{}: row {}: {v} is beyond --max-abs {max_abs} (every party must give the same bound)",
                    path.display(),
                    i + 1
                );
            }
            col
        }
        _ => Vec::new(),
    };
    let (ex, seed) = connect_party(&config, a.id, &spec)?;
    let mut p = Party::new(ex, &seed, config.fixed())?;
    drop(seed);
    let fp = config.fixed();
    let result = match a.program.program {
        Program::Stats => a
            .program
            .stats()
            .run(&mut p, &config, &stats_column)?
            .map(serde_json::to_value)
            .transpose()?,
        Program::Logreg => {
            let path = a.input.as_ref().context("logreg needs --input FILE.csv")?;
            let (_, rows) = read_csv(path)?;
            let width = rows.first().map_or(0, Vec::len);
            let widths = p.exchange_lengths(width)?;
            if widths.iter().any(|w| *w != width) || width < 2 {
                bail!(
                    "every party needs the same number of columns (features…, label): {widths:?}"
                );
            }
            let counts = p.exchange_lengths(rows.len())?;
            let d = width; // features + bias column
            let x: Vec<f64> = rows
                .iter()
                .flat_map(|r| r[..width - 1].iter().copied().chain(std::iter::once(1.0)))
                .collect();
            let y: Vec<f64> = rows.iter().map(|r| r[width - 1]).collect();
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            for (owner, n) in counts.iter().enumerate() {
                let mine = owner == a.id;
                xs.push(p.input(owner, mine.then_some(&x[..]), n * d)?);
                ys.push(p.input(owner, mine.then_some(&y[..]), *n)?);
            }
            let (x, y) = (p.concat(&xs), p.concat(&ys));
            let w = p.train_logistic_regression(&x, &y, d, a.program.epochs, a.program.rate)?;
            reveal(&mut p, &config, &w)?.map(|w| {
                let w = fp.decode_all(&w);
                let correct = rows
                    .iter()
                    .filter(|r| {
                        let z: f64 = r[..width - 1]
                            .iter()
                            .zip(&w)
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            + w[d - 1];
                        (z >= 0.0) == (r[width - 1] >= 0.5)
                    })
                    .count();
                serde_json::json!({
                    "weights": &w[..d - 1],
                    "bias": w[d - 1],
                    "rows": counts.iter().sum::<usize>(),
                    "accuracy_on_my_rows": correct as f64 / rows.len().max(1) as f64,
                })
            })
        }
        Program::Mlp => mlp_party(&mut p, a)?,
        Program::Bench => bench_party(&mut p, &a.program)?,
    };
    // The computation is over: the dealer may stop (without this it reports this party as
    // gone).
    p.exchange_mut().finish()?;
    if a.stats {
        print_stats(&p);
    }
    if let Some(r) = result {
        match a.format {
            Format::Json => outln!("{r}"),
            Format::Text => match r.as_object() {
                Some(map) if a.program.program != Program::Bench => {
                    outln!("party {} ({}) learns:", a.id, config.parties[a.id].name);
                    for (k, v) in map {
                        outln!("  {k:<20} {v}");
                    }
                }
                _ => outln!("{r}"),
            },
        }
    }
    Ok(())
}

/// A two-layer perceptron's weights, as the model owner gives them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MlpModel {
    /// `inputs × hidden`.
    w1: Vec<Vec<f64>>,
    /// `hidden`.
    b1: Vec<f64>,
    /// `hidden × classes`.
    w2: Vec<Vec<f64>>,
    /// `classes`.
    b2: Vec<f64>,
}

impl MlpModel {
    fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the model {}", path.display()))?;
        let m: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: a model is {{\"w1\": [[…]], \"b1\": […], \"w2\": [[…]], \"b2\": […]}}",
                path.display()
            )
        })?;
        let (inputs, hidden, classes) = m.shape();
        let rect = |w: &[Vec<f64>], cols: usize| w.iter().all(|r| r.len() == cols);
        if inputs == 0 || hidden == 0 || classes == 0 {
            bail!("{}: empty layers", path.display());
        }
        if !rect(&m.w1, hidden) || m.w2.len() != hidden || !rect(&m.w2, classes) {
            bail!(
                "{}: w1 must be inputs × hidden ({inputs} × {hidden}) and w2 hidden × classes ({hidden} × {classes})",
                path.display()
            );
        }
        let all = m.w1.iter().chain(&m.w2).flatten().chain(&m.b1).chain(&m.b2);
        if all.clone().any(|v| !v.is_finite()) {
            bail!("{}: weights must be finite numbers", path.display());
        }
        Ok(m)
    }

    /// (inputs, hidden, classes).
    fn shape(&self) -> (usize, usize, usize) {
        (self.w1.len(), self.b1.len(), self.b2.len())
    }
}

/// `veil mpc party --program mlp`: the owner's model on the other parties' rows; each data
/// party learns its rows' scores and classes, the owner learns how many rows there were.
fn mlp_party(p: &mut Party<NetExchange>, a: &PartyArgs) -> Result<Option<serde_json::Value>> {
    let n = p.parties();
    let owner = a.program.model_owner.unwrap_or(n - 1);
    if owner >= n {
        bail!("--model-owner {owner}: there are {n} parties");
    }
    let me = a.id;
    let path = a.input.as_ref().context(if me == owner {
        "the model owner needs --input MODEL.json"
    } else {
        "mlp needs --input ROWS.csv (features)"
    })?;
    let model = if me == owner {
        Some(MlpModel::load(path)?)
    } else {
        None
    };
    let (inputs, hidden, classes) = model.as_ref().map_or((0, 0, 0), MlpModel::shape);
    // The model's shape is public; its weights are not.
    let inputs = p.exchange_lengths(inputs)?[owner];
    let hidden = p.exchange_lengths(hidden)?[owner];
    let classes = p.exchange_lengths(classes)?[owner];
    let rows = if me == owner {
        Vec::new()
    } else {
        let (_, rows) = read_csv(path)?;
        if let Some(r) = rows.first().filter(|r| r.len() != inputs) {
            bail!(
                "{}: rows of {} features for a model of {inputs} inputs",
                path.display(),
                r.len()
            );
        }
        rows
    };
    let counts = p.exchange_lengths(rows.len())?;
    let batch: usize = counts.iter().sum();
    if batch == 0 {
        bail!("no party brought rows to classify");
    }
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let mut xs = Vec::new();
    for (j, c) in counts.iter().enumerate() {
        xs.push(p.input(j, (j == me).then_some(&flat[..]), c * inputs)?);
    }
    let x = p.concat(&xs);
    let weights = |f: fn(&MlpModel) -> Vec<f64>| model.as_ref().map(f);
    let w1 = weights(|m| m.w1.iter().flatten().copied().collect());
    let b1 = weights(|m| m.b1.clone());
    let w2 = weights(|m| m.w2.iter().flatten().copied().collect());
    let b2 = weights(|m| m.b2.clone());
    let w1 = p.input(owner, w1.as_deref(), inputs * hidden)?;
    let b1 = p.input(owner, b1.as_deref(), hidden)?;
    let w2 = p.input(owner, w2.as_deref(), hidden * classes)?;
    let b2 = p.input(owner, b2.as_deref(), classes)?;
    let (scores, onehot) =
        p.mlp_predict(&x, (&w1, &b1), (&w2, &b2), batch, inputs, hidden, classes)?;
    // Each party's rows' results go to that party only.
    let mut mine = None;
    let mut start = 0;
    for (j, c) in counts.iter().enumerate() {
        let range = start * classes..(start + c) * classes;
        start += c;
        if *c == 0 {
            continue;
        }
        let s = Shared::from_share(scores.share()[range.clone()].to_vec());
        let o = Shared::from_share(onehot.share()[range].to_vec());
        let s = p.reveal_to(&s, j)?;
        let o = p.reveal_to_raw(&o, j)?;
        if let (Some(s), Some(o)) = (s, o) {
            mine = Some((s, o));
        }
    }
    Ok(Some(match mine {
        Some((s, o)) => {
            let classes_of: Vec<usize> = o
                .chunks(classes)
                .map(|row| row.iter().position(|b| *b == 1).unwrap_or(0))
                .collect();
            let scores: Vec<&[f64]> = s.chunks(classes).collect();
            serde_json::json!({ "predictions": classes_of, "scores": scores })
        }
        None => serde_json::json!({ "rows_classified": batch }),
    }))
}

/// Times the basic operations; party 0 returns the JSON lines.
fn bench_party(
    p: &mut Party<NetExchange>,
    args: &ProgramArgs,
) -> Result<Option<serde_json::Value>> {
    let n = p.parties();
    let mut lines = Vec::new();
    let data = |len: usize| -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 7919) % 2000) as f64 / 100.0 - 10.0)
            .collect()
    };
    let mut timed = |p: &mut Party<NetExchange>,
                     op: &'static str,
                     count: usize,
                     run: &mut dyn FnMut(&mut Party<NetExchange>) -> veil_mpc::Result<()>|
     -> Result<()> {
        // One warm-up run (first-touch page faults, connection buffers), then the median of
        // three timed runs.
        const REPS: u64 = 3;
        run(p)?;
        let before = p.stats().total();
        let mut secs = Vec::new();
        for _ in 0..REPS {
            let t = Instant::now();
            run(p)?;
            secs.push(t.elapsed().as_secs_f64());
        }
        secs.sort_by(f64::total_cmp);
        let median = secs[secs.len() / 2];
        let after = p.stats().total();
        let per_op = |x: u64| x as f64 / (count as u64 * REPS) as f64;
        let rounds = (after.rounds - before.rounds) / REPS;
        lines.push(serde_json::json!({
            "op": op,
            "parties": n,
            "per_sec": count as f64 / median,
            "bytes_per_op_per_party": per_op(after.bytes_sent - before.bytes_sent),
            "dealer_bytes_per_op": per_op(after.dealer_bytes - before.dealer_bytes),
            "rounds": rounds,
            "ms_per_round": median * 1e3 / rounds.max(1) as f64,
            "seconds": median,
        }));
        Ok(())
    };
    let m = args.bench_mul;
    let x = p.input(0, (p.id() == 0).then_some(&data(m)[..]), m)?;
    let y = p.input(0, (p.id() == 0).then_some(&data(m)[..]), m)?;
    timed(p, "mul", m, &mut |p| p.mul(&x, &y).map(drop))?;
    let k = 128;
    let a = p.input(0, (p.id() == 0).then_some(&data(k * k)[..]), k * k)?;
    timed(p, "matmul_128", 1, &mut |p| {
        p.matmul(&a, &a, k, k, k).map(drop)
    })?;
    let c = args.bench_lt;
    let v = p.input(0, (p.id() == 0).then_some(&data(c)[..]), c)?;
    timed(p, "lt", c, &mut |p| p.ltz(&v).map(drop))?;
    timed(p, "relu", c, &mut |p| p.relu(&v).map(drop))?;
    // Latency: a chain of dependent fixed-point multiplications of one element (each needs
    // the previous result: two rounds apiece, nothing to batch).
    let chain = 100;
    let one = p.input(0, (p.id() == 0).then_some(&[1.0001][..]), 1)?;
    timed(p, "mul_dependent", chain, &mut |p| {
        let mut z = one.clone();
        for _ in 0..chain {
            z = p.mul(&z, &one)?;
        }
        Ok(())
    })?;
    // One epoch of logistic regression on 2000 rows × 20 features (as CrypTen's figure).
    let (rows, d) = (2000, 21);
    let feats: Vec<f64> = data(rows * d).iter().map(|v| v / 10.0).collect();
    let labels: Vec<f64> = (0..rows).map(|i| (i % 2) as f64).collect();
    let xs = p.input(0, (p.id() == 0).then_some(&feats[..]), rows * d)?;
    let ys = p.input(0, (p.id() == 0).then_some(&labels[..]), rows)?;
    timed(p, "logreg_epoch", 1, &mut |p| {
        p.train_logistic_regression(&xs, &ys, d, 1, 1.0).map(drop)
    })?;
    Ok((p.id() == 0).then_some(serde_json::Value::Array(lines)))
}

/// Spawns `veil` with `args`, stdout captured.
pub(crate) fn spawn(args: &[String]) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the veil executable")?;
    let (key, value) = crate::KEEP_FREED_MEMORY;
    Command::new(exe)
        .args(args)
        .env(key, value)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start a party process")
}

fn program_flags(p: &ProgramArgs) -> Vec<String> {
    let program = match p.program {
        Program::Stats => "stats",
        Program::Logreg => "logreg",
        Program::Mlp => "mlp",
        Program::Bench => "bench",
    };
    let mut flags: Vec<String> = vec![
        "--program".into(),
        program.into(),
        "--low".into(),
        p.low.to_string(),
        "--high".into(),
        p.high.to_string(),
        "--bins".into(),
        p.bins.to_string(),
        "--max-abs".into(),
        p.max_abs.to_string(),
        "--epochs".into(),
        p.epochs.to_string(),
        "--rate".into(),
        p.rate.to_string(),
        "--bench-mul".into(),
        p.bench_mul.to_string(),
        "--bench-lt".into(),
        p.bench_lt.to_string(),
    ];
    if let Some(owner) = p.model_owner {
        flags.extend(["--model-owner".into(), owner.to_string()]);
    }
    flags
}

/// Starts the dealer and the parties as processes; returns each party's stdout.
pub fn run_processes(
    config: &Path,
    program: &ProgramArgs,
    inputs: &[PathBuf],
    column: Option<&str>,
    json: bool,
) -> Result<Vec<String>> {
    let session = SessionConfig::load(config)?;
    let n = session.parties();
    let cfg = config.to_string_lossy().into_owned();
    let mut dealer_args = vec![
        "mpc".into(),
        "dealer".into(),
        "--config".into(),
        cfg.clone(),
    ];
    dealer_args.extend(program_flags(program));
    let mut dealer = spawn(&dealer_args)?;
    let mut parties = Vec::new();
    for id in 0..n {
        let mut args = vec![
            "mpc".into(),
            "party".into(),
            "--config".into(),
            cfg.clone(),
            "--id".into(),
            id.to_string(),
        ];
        args.extend(program_flags(program));
        if let Some(path) = inputs.get(id) {
            args.extend(["--input".into(), path.to_string_lossy().into_owned()]);
        }
        if let Some(c) = column {
            args.extend(["--column".into(), c.to_string()]);
        }
        if json {
            args.extend(["--format".into(), "json".into()]);
        }
        parties.push(spawn(&args)?);
    }
    let mut outputs = Vec::new();
    let mut failures = Vec::new();
    for (id, child) in parties.into_iter().enumerate() {
        let out = child.wait_with_output().context("waiting for a party")?;
        if !out.status.success() {
            failures.push(format!(
                "party {id}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    if !failures.is_empty() {
        // The parties have said why; the dealer would only wait for its timeout.
        let _ = dealer.kill();
        let _ = dealer.wait();
        bail!("{}", failures.join("\n"));
    }
    let dealer = dealer
        .wait_with_output()
        .context("waiting for the dealer")?;
    if !dealer.status.success() {
        bail!("dealer: {}", String::from_utf8_lossy(&dealer.stderr).trim());
    }
    Ok(outputs)
}

fn run_local(a: &RunArgs) -> Result<()> {
    let session = SessionConfig::load(&a.config)?;
    if a.program.program != Program::Bench && a.inputs.len() != session.parties() {
        bail!("give one --inputs file per party ({})", session.parties());
    }
    let outputs = run_processes(
        &a.config,
        &a.program,
        &a.inputs,
        a.column.as_deref(),
        matches!(a.format, Format::Json),
    )?;
    for out in outputs {
        let out = out.trim();
        if !out.is_empty() {
            outln!("{out}");
        }
    }
    Ok(())
}

/// A throwaway session on free loopback ports in a temp dir.
pub fn temp_session(tag: &str, parties: usize, names: &[&str]) -> Result<(PathBuf, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("veil-mpc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<String> = if names.is_empty() {
        (0..parties).map(|i| format!("p{i}")).collect()
    } else {
        names.iter().map(|s| (*s).to_string()).collect()
    };
    let path = veil_mpc::config::init_loopback(&dir, &names)?;
    Ok((dir, path))
}

fn bench(a: &BenchArgs) -> Result<()> {
    if a.parties < 2 {
        bail!("--parties must be at least 2");
    }
    let (dir, path) = temp_session("bench", a.parties, &[])?;
    let program = ProgramArgs {
        program: Program::Bench,
        low: 0.0,
        high: 100.0,
        bins: 10,
        max_abs: 1_000_000.0,
        epochs: 1,
        rate: 1.0,
        model_owner: None,
        bench_mul: a.mul,
        bench_lt: a.lt,
    };
    let outputs = run_processes(&path, &program, &[], None, true)?;
    let _ = std::fs::remove_dir_all(&dir);
    let lines: serde_json::Value =
        serde_json::from_str(outputs[0].trim()).context("party 0's report")?;
    for line in lines.as_array().into_iter().flatten() {
        if a.json {
            outln!("{line}");
        } else {
            outln!(
                "{:<14} {:>14.1}/s  {:>10.1} B/op/party  {:>4} rounds  ({} parties)",
                line["op"].as_str().unwrap_or("?"),
                line["per_sec"].as_f64().unwrap_or(0.0),
                line["bytes_per_op_per_party"].as_f64().unwrap_or(0.0),
                line["rounds"],
                line["parties"]
            );
        }
    }
    Ok(())
}

/// `veil psi`.
pub fn psi(a: &PsiArgs) -> Result<()> {
    let config = SessionConfig::load(&a.config)?;
    if config.parties() != 2 {
        bail!(
            "PSI is between 2 parties; {} lists {}",
            a.config.display(),
            config.parties()
        );
    }
    let normalization = veil_mpc::psi::Normalization::parse(&a.normalize)?;
    let text = std::fs::read_to_string(&a.input)
        .with_context(|| format!("cannot read {}", a.input.display()))?;
    let items = normalization.identifiers(text.lines());
    let program = veil_mpc::psi::program(normalization, a.cardinality_only);
    let id = match a.role {
        PsiRole::Receiver => 0,
        PsiRole::Sender => 1,
    };
    let mut ex = connect_peers(&config, id, &program)?;
    match a.role {
        PsiRole::Sender => {
            let theirs = veil_mpc::psi::send(&mut ex, 0, &items, a.cardinality_only)?;
            ex.finish()?;
            eprintln!("psi: helped the receiver ({theirs} identifiers); learned nothing else");
        }
        PsiRole::Receiver => {
            let out = veil_mpc::psi::receive(&mut ex, 1, &items, a.cardinality_only)?;
            ex.finish()?;
            eprintln!(
                "psi: {} common identifiers (you have {}, the sender {})",
                out.size,
                items.len(),
                out.other_set_size
            );
            if a.cardinality_only {
                outln!("{}", out.size);
            } else {
                let mut lines: Vec<String> = out
                    .intersection
                    .iter()
                    .map(|i| String::from_utf8_lossy(i).into_owned())
                    .collect();
                lines.sort();
                match &a.out {
                    Some(path) => std::fs::write(path, lines.join("\n") + "\n")
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => {
                        for l in lines {
                            outln!("{l}");
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
