//! `veil-ballista`: the processes of a Ballista cluster for Veil's DP SQL.
//!
//! ```text
//! veil-ballista scheduler --bind 127.0.0.1:50050
//! veil-ballista executor --scheduler 127.0.0.1:50050 --bind 127.0.0.1 --flight-port 50051 --grpc-port 50052
//! veil dp query --backend ballista://127.0.0.1:50050 --table persons=/data/persons/ …
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use veil_dp_ballista::{ExecutorOptions, SchedulerOptions};

/// The scheduler and executor processes of an Apache Ballista cluster that runs the bounded
/// statistics of Veil's DP SQL (`veil dp query --backend ballista://HOST:PORT`). Both speak
/// plain gRPC: bind them to loopback or a private network.
#[derive(Parser, Debug)]
#[command(name = "veil-ballista", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a scheduler: it plans the stages of each job and hands tasks to the executors.
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// Seconds without a heartbeat after which an executor is declared dead.
        #[arg(long, default_value_t = 180)]
        executor_timeout: u64,
    },
    /// Run an executor: it reads the data files and computes its share of each job.
    Executor {
        /// The scheduler (HOST:PORT).
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// Address its services listen on and advertise.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Port of its Arrow Flight service (shuffle data).
        #[arg(long, default_value_t = 50051)]
        flight_port: u16,
        /// Port of its gRPC service (tasks).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Directory for shuffle files (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Tasks run at once (0: one per core).
        #[arg(long, default_value_t = 0)]
        vcores: usize,
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, default_value_t = 60)]
        heartbeat: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("VEIL_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // DataFusion's planner recurses deeply on large plans.
        .thread_stack_size(32 << 20)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Scheduler {
                bind,
                executor_timeout,
            } => {
                eprintln!("veil-ballista: scheduler listening on {bind}");
                veil_dp_ballista::run_scheduler(SchedulerOptions {
                    bind,
                    executor_timeout_seconds: executor_timeout,
                })
                .await
            }
            Command::Executor {
                scheduler,
                bind,
                flight_port,
                grpc_port,
                work_dir,
                vcores,
                heartbeat,
            } => {
                let (host, port) = veil_dp_ballista::parse_url(&format!("ballista://{scheduler}"))?;
                eprintln!(
                    "veil-ballista: executor on {bind}:{flight_port} (tasks on :{grpc_port}), \
                     scheduler {host}:{port}"
                );
                veil_dp_ballista::run_executor(ExecutorOptions {
                    scheduler: (host, port),
                    bind_host: bind,
                    flight_port,
                    grpc_port,
                    work_dir,
                    vcores,
                    heartbeat_seconds: heartbeat,
                })
                .await
            }
        }
    })
}
