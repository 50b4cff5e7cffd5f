//! `crigate serve`: the node daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::config::{AuditSettings, Config};
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::audit::shipper::Shipper;
use crate::audit::spool::{Spool, SpoolConfig};
use crate::audit::{self, Auditor};
use crate::decision::Decide;
use crate::policy::decider::{AllowAndRecord, PolicyDecider, PulledImages, RuntimeImages};
use crate::policy::model::Policies;
use crate::proxy::{self, BuildError, Listener};
use crate::registry;
use crate::verify::cache::{CacheConfig, VerdictCache};
use crate::verify::engine::Engine;
use crate::verify::material;

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
    // Stamped before it is read, so that an edit while crigate starts is applied.
    let config_seen = proxy::server::file_stamp(&args.config);
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
    let listener = runtime
        .block_on(async { Listener::open(&config.cri) })
        .context("cannot open the CRI socket")?;
    // One auditor for the daemon's life: deciders are rebuilt on reload, the record
    // trail is not. `[audit]` changes apply at the next start.
    let (auditor, shipper) = match auditor_for(&config) {
        Ok(built) => built,
        Err(error) => {
            eprintln!("error: [audit]: {:#}", anyhow::Error::new(error));
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    // `[metrics]`, like `[audit]`, applies at start.
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(
            runtime
                .block_on(tokio::net::TcpListener::bind(addr))
                .with_context(|| {
                    format!("cannot listen for metrics on {addr}: change [metrics] listen")
                })?,
        ),
        None => None,
    };
    let stop_background = CancellationToken::new();
    let served = runtime.block_on(async {
        let shipping = shipper.map(|shipper| tokio::spawn(shipper.run(stop_background.clone())));
        let serving_metrics = metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving metrics");
            }
            let metrics = Arc::clone(auditor.metrics());
            tokio::spawn(crate::metrics::serve(
                listener,
                move || metrics.render(),
                stop_background.clone(),
            ))
        });
        // Image ids pulled through this daemon outlive reloads: kubelet does not pull a
        // present image again, so a fresh memory would never learn them.
        let pulled = PulledImages::default();
        let reloads = auditor.metrics().reload_stats();
        let build = move |config: &Config| decide_for(config, &auditor, &pulled);
        let served = proxy::serve(
            listener,
            config,
            args.config,
            config_seen,
            Box::new(build),
            reloads,
        )
        .await;
        // Whatever was not acknowledged stays in the spool for the next start; the metrics
        // endpoint closes with the proxy.
        stop_background.cancel();
        if let Some(task) = shipping {
            let _ = task.await;
        }
        if let Some(task) = serving_metrics {
            let _ = task.await;
        }
        served
    });
    match served {
        Ok(()) => Ok(ExitCode::from(EXIT_OK)),
        // The configuration's trust material or policies cannot be used: restarting
        // will not help, so say so with EX_CONFIG.
        Err(proxy::server::Error::Decide(error)) => {
            eprintln!("error: cannot set up the decision policy: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        Err(error) => Err(anyhow::Error::new(error).context("serving CRI")),
    }
}

/// Why `[audit]` could not be set up.
#[derive(Debug, thiserror::Error)]
enum AuditSetupError {
    #[error("cannot open the spool")]
    Spool(#[from] audit::spool::Error),
    #[error("cannot set up shipping to the aggregator")]
    Shipper(#[from] audit::shipper::Error),
}

/// The auditor `[audit]` asks for, and the shipper of its spool when an aggregator is
/// configured.
fn auditor_for(config: &Config) -> Result<(Auditor, Option<Shipper>), AuditSetupError> {
    let node = config.audit.node_name();
    let mut sinks: Vec<Arc<dyn audit::Sink>> = Vec::new();
    if config.audit.journald {
        if !config.audit.journal_socket.exists() {
            tracing::warn!(
                socket = %config.audit.journal_socket.display(),
                "journald socket not found; each audit record will fail to reach journald until it appears"
            );
        }
        sinks.push(Arc::new(audit::journald::Journald::new(
            config.audit.journal_socket.clone(),
        )));
    }
    let mut shipper = None;
    let mut watched = None;
    if let Some(to) = config.audit.shipping() {
        let mut spool_config =
            SpoolConfig::new(&config.audit.spool_dir, config.audit.spool_max_bytes);
        if config.audit.journald {
            spool_config.journal_socket = Some(config.audit.journal_socket.clone());
        }
        match Spool::open(spool_config) {
            Ok(spool) => {
                shipper = Some(Shipper::new(spool.clone(), &to, &node)?);
                sinks.push(Arc::new(spool.clone()));
                watched = Some(spool);
            }
            // A spool that cannot be opened (a full or read-only `/var`) stops no pods,
            // as one that fails later does not: each record fails it, and
            // `on_record_failure` decides what becomes of the call.
            Err(error) => {
                tracing::error!(
                    %error,
                    "cannot open the audit spool: records are not shipped until crigate restarts with a usable spool directory, and each counts as not written to the spool"
                );
                sinks.push(Arc::new(audit::spool::Unopened::new(&error)));
            }
        }
    }
    let auditor = if repeats_records(&config.audit, crate::telemetry::journal_socket()) {
        Auditor::without_decision_events(node, sinks)
    } else {
        Auditor::new(node, sinks)
    };
    if let Some(spool) = watched {
        auditor.metrics().watch_spool(spool);
    }
    Ok((auditor, shipper))
}

/// Whether diagnostics sent to `diagnostics` (the journal socket they go to, if any)
/// would repeat each decision in the journal that `audit` writes every record to.
fn repeats_records(audit: &AuditSettings, diagnostics: Option<&Path>) -> bool {
    audit.journald && diagnostics == Some(audit.journal_socket.as_path())
}

/// The decision seam a configuration asks for: its policies over its verifiers, or,
/// with no `[[policies]]`, allow-and-record.
fn decide_for(
    config: &Config,
    auditor: &Auditor,
    pulled: &PulledImages,
) -> Result<Arc<dyn Decide>, BuildError> {
    if config.policies.is_empty() {
        tracing::warn!("no [[policies]] configured: every PullImage and CreateContainer is allowed and recorded");
        return Ok(Arc::new(AllowAndRecord::new(auditor.clone())));
    }
    let mut cache = CacheConfig {
        positive_ttl: config.cache.positive_ttl,
        negative_ttl: config.cache.negative_ttl,
        max_entries: config.cache.max_entries,
        path: config.cache.path.clone(),
    };
    // The cache file only saves verifying again after a restart: one that cannot be
    // used (a path the unit does not let crigate write, a read-only or full disk) leaves
    // the verdicts in memory, where a daemon that would not start would leave the node
    // without a runtime.
    let unusable = |path: &Path, error: &dyn std::fmt::Display| {
        tracing::error!(
            path = %path.display(),
            %error,
            "the verdict cache file cannot be used; verdicts are kept in memory only, and \
             every image is verified again after a restart"
        );
    };
    if let Some(dir) = config.cache.path.as_deref().and_then(Path::parent) {
        if !dir.exists() {
            if let Err(error) = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
            {
                unusable(dir, &error);
                cache.path = None;
            }
        }
    }
    let runtime = RuntimeImages::new(config.cri.upstream.clone(), pulled.clone())?;
    match policy_decider(config, cache.clone(), Some(runtime), auditor.clone()) {
        Ok(decider) => Ok(Arc::new(decider)),
        Err(error) => {
            let Some(path) = cache.path.take().filter(|_| {
                error
                    .downcast_ref::<crate::verify::cache::Error>()
                    .is_some()
            }) else {
                return Err(error);
            };
            unusable(&path, &error);
            let runtime = RuntimeImages::new(config.cri.upstream.clone(), pulled.clone())?;
            Ok(Arc::new(policy_decider(
                config,
                cache,
                Some(runtime),
                auditor.clone(),
            )?))
        }
    }
}

/// The policy decider of `config`, with a verdict cache set up as `cache` says.
///
/// # Errors
///
/// The registry client, the cache file, a verifier's trust material or the policies
/// cannot be set up.
pub fn policy_decider(
    config: &Config,
    cache: CacheConfig,
    runtime: Option<RuntimeImages>,
    auditor: Auditor,
) -> Result<PolicyDecider, BuildError> {
    let client = registry::Client::new(config.registry.clone())?;
    let mut verifiers = BTreeMap::new();
    let mut fingerprints = BTreeMap::new();
    for name in config.verifiers.keys() {
        let requirement = material::requirement(&config.verifiers, std::slice::from_ref(name))?;
        fingerprints.insert(name.clone(), requirement.fingerprint);
        verifiers.insert(name.clone(), requirement);
    }
    let policies = Policies::new(&config.policies, &fingerprints)?;
    // Last: opening the cache writes its file anew, which a reload refused for anything
    // above must leave to the running daemon.
    let cache = VerdictCache::open(cache)?.with_stats(auditor.metrics().cache_stats());
    let engine = Arc::new(
        Engine::new(client, Arc::new(cache), config.verify.timeout)
            .with_revocation_stats(auditor.metrics().revocation_stats()),
    );
    Ok(
        PolicyDecider::new(policies, verifiers, engine, runtime, auditor)
            .with_record_failure(config.audit.on_record_failure),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_refused_for_its_trust_material_leaves_the_cache_file_alone() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verdicts.jsonl");
        let cache = || CacheConfig {
            positive_ttl: std::time::Duration::from_secs(60),
            negative_ttl: std::time::Duration::from_secs(60),
            max_entries: 10,
            path: Some(path.clone()),
        };
        VerdictCache::open(cache()).unwrap();
        let before = std::fs::metadata(&path).unwrap().ino();
        let config = Config::parse(
            &format!(
                "[verifiers.release]\nkind = \"cosign\"\nkeys = [\"{}\"]\n",
                dir.path().join("missing.pub").display()
            ),
            Path::new("config.toml"),
        )
        .unwrap();
        let auditor = Auditor::new("node", Vec::new());
        assert!(policy_decider(&config, cache(), None, auditor).is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), before);
    }

    #[test]
    fn decisions_are_not_repeated_in_the_journal_that_holds_their_records() {
        let audit = AuditSettings::default();
        let journal = audit.journal_socket.clone();
        assert!(audit.journald);
        assert!(repeats_records(&audit, Some(&journal)));
        // Diagnostics on stderr, or in another journal: the event is the only copy there.
        assert!(!repeats_records(&audit, None));
        assert!(!repeats_records(
            &audit,
            Some(Path::new("/run/other/socket"))
        ));
        // No record goes to journald at all.
        let off = AuditSettings {
            journald: false,
            ..AuditSettings::default()
        };
        assert!(!repeats_records(&off, Some(&journal)));
    }
}
