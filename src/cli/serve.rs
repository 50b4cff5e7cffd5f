//! `crigate serve`: the node daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::decision::AllowAll;
use crate::proxy::{self, Listener};

use super::{EXIT_CONFIG, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file (TOML). Re-read on SIGHUP.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/crigate/config.toml"
    )]
    pub config: PathBuf,
}

/// Serves until SIGTERM or SIGINT.
///
/// # Errors
///
/// The socket cannot be opened or signal handlers installed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            tracing::error!(%error, "invalid configuration");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    // One thread serves every connection. A CRI proxy's work is short and I/O-bound;
    // on the multi-threaded scheduler each relayed call crossed threads several times,
    // which cost more than it gained (benches/passthrough: 0.6-0.7x the relay's calls/s
    // at 16 callers, against 0.95x on one thread). CPU-heavy verification runs on the
    // blocking pool, off this thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = Listener::open(&config.cri).context("cannot open the CRI socket")?;
        proxy::serve(listener, config, args.config, Arc::new(AllowAll))
            .await
            .context("serving CRI")
    })?;
    Ok(ExitCode::from(EXIT_OK))
}
