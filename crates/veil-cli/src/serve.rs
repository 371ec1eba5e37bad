//! `veil serve`: the one service an operator deploys (see `veil_server::app`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::services::runtime;

/// `veil serve`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServeArgs {
    #[command(subcommand)]
    command: Option<ServeCommand>,
    /// The configuration (TOML; see docs/serve.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen here instead of the configuration's `listen` (port 0: any free port; the
    /// address is printed).
    #[arg(long)]
    listen: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ServeCommand {
    /// Make an API token for an analyst: prints the token (give it to the analyst, privately)
    /// and the lines for the configuration, which keeps only its SHA-256.
    Token {
        /// The analyst's or client's name (as the ledger and the logs record it).
        name: String,
        /// Which part of the service the token is for.
        #[arg(long = "for", value_enum, default_value_t = TokenFor::Dp)]
        section: TokenFor,
    },
}

/// Who a token is for.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum TokenFor {
    /// An analyst of DP SQL (`[[dp.analysts]]`).
    Dp,
    /// A client of encrypted inference (`[[inference.clients]]`).
    Inference,
    /// An organiser of MPC sessions (`[[mpc.organisers]]`).
    Mpc,
    /// An operator reading the web console (`[[console.operators]]`).
    Console,
}

/// Runs `veil serve`.
pub fn run(args: &ServeArgs) -> Result<()> {
    if let Some(ServeCommand::Token { name, section }) = &args.command {
        return token(name, *section);
    }
    let path = args
        .config
        .as_ref()
        .context("give the configuration: veil serve --config veil.toml")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut config = veil_server::app::ServeConfig::parse(&text)
        .with_context(|| format!("in {}", path.display()))?;
    if let Some(listen) = &args.listen {
        config.listen.clone_from(listen);
    }
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf);
    let rt = runtime()?;
    rt.block_on(async move {
        let router = veil_server::app::router(&config, &base)
            .await
            .with_context(|| format!("cannot serve {}", path.display()))?;
        let tls = veil_server::tls::setup(&config.tls, &base, &config.listen)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("[tls] in {}", path.display()))?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        if let Some(tls) = &tls {
            outln!(
                "veil serve: certificate {} (SHA-256 {})",
                tls.cert_path.display(),
                tls.fingerprint
            );
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        outln!("veil serve: listening on {scheme}://{addr}");
        let header_timeout = config.limits.header_read_timeout();
        let options = veil_server::ServeOptions {
            header_read_timeout: header_timeout,
            tls: tls.map(|t| t.server),
            max_connections_per_ip: config.limits.max_connections_per_ip,
        };
        veil_server::serve_tls(listener, router, shutdown(), options).await?;
        outln!("veil serve: stopped");
        Ok(())
    })
}

/// Ctrl-C or SIGTERM: stop accepting, finish the requests in flight, exit.
async fn shutdown() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return crate::services::shutdown_signal().await,
            };
        tokio::select! {
            () = crate::services::shutdown_signal() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    crate::services::shutdown_signal().await;
}

fn token(name: &str, section: TokenFor) -> Result<()> {
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, raw.as_mut())
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let token = zeroize::Zeroizing::new(format!("veil_{}", hex::encode(raw.as_ref())));
    let hash = hex::encode(veil_server::auth::token_sha256(&token));
    outln!(
        "token (give it to {name}; it is not stored anywhere): {}",
        token.as_str()
    );
    outln!();
    outln!(
        "{}",
        match section {
            TokenFor::Dp => "[[dp.analysts]]",
            TokenFor::Inference => "[[inference.clients]]",
            TokenFor::Mpc => "[[mpc.organisers]]",
            TokenFor::Console => "[[console.operators]]",
        }
    );
    outln!("name = {name:?}");
    outln!("token_sha256 = \"{hash}\"");
    Ok(())
}
