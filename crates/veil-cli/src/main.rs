//! `veil`: protect sensitive data while it is being computed on.
//!
//! The binary is glue: each subcommand parses its flags and calls the libraries.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc keeps freed pages for reuse: homomorphic operations allocate and free many
/// polynomial-sized buffers, which glibc's allocator returns to the kernel and page-faults
/// back in (about a fifth of the time of a key switch at N = 8192).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that returns an error instead of panicking when stdout is closed (e.g. piped
/// into `head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?;
    }};
}

mod attest;
mod demo;
mod dp;
mod he;
mod ml;
mod ml_mpc;
mod mpc;
mod progress;
mod room;
mod serve;
mod services;

/// Veil: compute on data that must stay hidden (homomorphic encryption, MPC, differential
/// privacy, confidential computing).
#[derive(Parser, Debug)]
#[command(name = "veil", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the end-to-end demonstration on built-in data.
    Demo(demo::DemoArgs),
    /// Homomorphic encryption (CKKS).
    He {
        #[command(subcommand)]
        command: he::HeCommand,
    },
    /// Confidential computing: verify evidence, run the attestation service.
    Attest {
        #[command(subcommand)]
        command: attest::AttestCommand,
    },
    /// Confidential computing: the key broker (secure key release to attested workloads).
    Kbs {
        #[command(subcommand)]
        command: services::KbsCommand,
    },
    /// Differential privacy: budgets (and, next, DP SQL) over a dataset's metadata.
    Dp {
        #[command(subcommand)]
        command: dp::DpCommand,
    },
    /// Trained ONNX models on protected data: inspect, compile for encryption, run under
    /// HE or MPC.
    Ml {
        #[command(subcommand)]
        command: ml::MlCommand,
    },
    /// Secure multi-party computation: parties compute on secret shares over mutual TLS.
    Mpc {
        #[command(subcommand)]
        command: mpc::MpcCommand,
    },
    /// Private set intersection between two parties (the receiver learns the common
    /// identifiers, or only their number).
    Psi(mpc::PsiArgs),
    /// Confidential computing: multi-party data rooms (agreed code in an attested TEE, signed
    /// and encrypted uploads, outputs to named recipients, signed audit log).
    Room {
        #[command(subcommand)]
        command: room::RoomCommand,
    },
    /// One service for analysts and clients: DP SQL with API tokens, per-analyst budgets and
    /// dry runs, behind request limits (`veil serve --config veil.toml`; `veil serve token`).
    Serve(serve::ServeArgs),
}

/// What [`keep_freed_memory`] sets: mimalloc keeps freed memory committed instead of
/// returning it to the kernel.
pub const KEEP_FREED_MEMORY: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "-1");

/// MPC parties and the dealer allocate and free buffers of many megabytes per round; mimalloc
/// hands such blocks back to the kernel at once, so every round page-faults fresh zeroed
/// pages back in (half of a party's time in a batched multiplication, measured with `perf`).
/// mimalloc reads its options when the process loads, so the process re-executes itself once
/// with the option set (same pid, arguments and environment otherwise); processes that
/// `veil mpc run|bench` starts get it directly. If the exec fails, it runs on as it is.
fn keep_freed_memory() {
    let (key, value) = KEEP_FREED_MEMORY;
    if std::env::var_os(key).is_some() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        if let Ok(exe) = std::env::current_exe() {
            let err = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env(key, value)
                .exec();
            tracing::debug!("could not re-execute with {key}={value}: {err}");
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VEIL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Mpc {
            command: mpc::MpcCommand::Party(_) | mpc::MpcCommand::Dealer(_)
        } | Command::Psi(_)
    ) {
        keep_freed_memory();
    }
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::He { command } => he::run(command),
        Command::Attest { command } => attest::run(command),
        Command::Kbs { command } => services::kbs(command),
        Command::Room { command } => room::run(command),
        Command::Dp { command } => dp::run(command),
        Command::Ml { command } => ml::run(command),
        Command::Mpc { command } => mpc::run(command),
        Command::Psi(args) => mpc::psi(&args),
        Command::Serve(args) => serve::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stdout (`veil demo | head`) is not a failure worth reporting.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
