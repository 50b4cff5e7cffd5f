//! `crigate aggregator`: the cluster audit aggregator.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::aggregator::{Aggregator, AggregatorConfig};

use super::{EXIT_CONFIG, EXIT_OK};

/// Worker threads: ingest is I/O and SQLite (on the blocking pool), so two suffice.
const WORKER_THREADS: usize = 2;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The aggregator's configuration file (TOML).
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/crigate/aggregator.toml"
    )]
    pub config: PathBuf,
}

/// Serves until SIGTERM or SIGINT.
///
/// # Errors
///
/// The runtime, the database or a port cannot be set up, or serving failed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match AggregatorConfig::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error:#}");
            tracing::error!(%error, "invalid configuration");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let aggregator = match Aggregator::bind(config).await {
            Ok(aggregator) => aggregator,
            Err(error) if error.is_config() => {
                eprintln!(
                    "error: {}: {:#}",
                    args.config.display(),
                    anyhow::Error::new(error)
                );
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
            Err(error) => return Err(anyhow::Error::new(error).context("starting the aggregator")),
        };
        let cancel = CancellationToken::new();
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stopping on signal");
            stop.cancel();
        });
        aggregator
            .serve(cancel)
            .await
            .context("serving the aggregator")?;
        Ok(ExitCode::from(EXIT_OK))
    })
}
