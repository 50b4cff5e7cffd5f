//! `crigate policy check` and `crigate policy explain`: the configuration's policies as
//! the daemon would apply them, from the command line.

use std::path::{Component, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use super::serve::policy_decider;
use super::{EXIT_DENIED, EXIT_ERROR, EXIT_OK};
use crate::audit::Auditor;
use crate::config::{policies_by_name, Config};
use crate::decision::{ApiVersion, Caller, Phase, RequestContext};
use crate::policy::decider::{Conclusion, Explanation};
use crate::registry;
use crate::verify::cache::CacheConfig;
use crate::verify::material;

/// Version of the `policy explain --output json` format.
const JSON_VERSION: u32 = 1;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the configuration and everything it names (trust policies, trust stores,
    /// keys, trusted roots); print each problem. Exit 1 if there is any.
    Check(CheckArgs),
    /// Show how the daemon would decide IMAGE for a pod in NAMESPACE: which policy,
    /// which allowlist entry or verifier, which signature, and why. Pulls nothing into the
    /// runtime. Exit 0 the pod would be allowed, 1 denied, 2 error.
    Explain(ExplainArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/crigate/config.toml"
    )]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The image, as a pod spec names it.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The pod's namespace.
    #[arg(long, short, value_name = "NAMESPACE")]
    pub namespace: String,

    /// The configuration file.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/crigate/config.toml"
    )]
    pub config: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Serialize)]
struct Report<'a> {
    version: u32,
    #[serde(flatten)]
    explanation: &'a Explanation,
}

/// Runs `crigate policy`.
///
/// # Errors
///
/// The explanation could not be computed (bad configuration, no async runtime).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Check(args) => check(&args),
        Command::Explain(args) => explain(&args),
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            println!("error: {error}");
            return Ok(ExitCode::from(EXIT_DENIED));
        }
    };
    let mut problems = 0usize;
    let mut report = |error: &dyn std::error::Error| {
        problems += 1;
        println!("error: {}: {error}", args.config.display());
        let mut source = error.source();
        while let Some(cause) = source {
            println!("  caused by: {cause}");
            source = cause.source();
        }
    };
    for name in config.verifiers.keys() {
        if let Err(error) = material::requirement(&config.verifiers, std::slice::from_ref(name)) {
            report(&error);
        }
    }
    // The socket's group, which the daemon looks up as it binds its socket; one systemd
    // passes (crigate.socket) is the socket unit's (`SocketGroup=`): a warning only.
    if let Some(group) = &config.cri.socket_group {
        if !matches!(nix::unistd::Group::from_name(group), Ok(Some(_))) {
            println!(
                "warning: {}: {}: a socket crigate binds itself could not be given it (one \
                 systemd passes is not)",
                args.config.display(),
                crate::proxy::server::Error::UnknownGroup(group.clone())
            );
        }
    }
    // The registry's files: CA bundle, credentials, the hosts directory.
    if let Err(error) = registry::Client::new(config.registry.clone()) {
        report(&error);
    }
    // The aggregator's: CA, client certificate and key, server name.
    if let Some(Err(error)) = config
        .audit
        .shipping()
        .map(|to| crate::audit::shipper::Shipper::check(&to, &config.audit.node_name()))
    {
        report(&error);
    }
    if problems > 0 {
        return Ok(ExitCode::from(EXIT_DENIED));
    }
    for warning in uncovered_system_namespaces(&config)
        .into_iter()
        .chain(outside_the_units_writable_paths(&config))
    {
        println!("warning: {}: {warning}", args.config.display());
    }
    let default = config
        .policies
        .iter()
        .any(|p| p.namespaces.iter().any(|n| n == "*"));
    println!(
        "ok: {} verifier(s), {} policy(ies){}",
        config.verifiers.len(),
        config.policies.len(),
        if config.policies.is_empty() {
            "; no [[policies]]: the daemon allows and records every call"
        } else if default {
            ""
        } else {
            "; no default policy (namespaces = [\"*\"]): namespaces no policy covers are denied"
        }
    );
    Ok(ExitCode::from(EXIT_OK))
}

/// Namespaces a node cannot run without: the control plane's add-ons (CNI, kube-proxy,
/// DNS) and the installer's own pods.
const SYSTEM_NAMESPACES: [&str; 2] = ["kube-system", "crigate-system"];

/// A warning for each of [`SYSTEM_NAMESPACES`] that no policy covers: its pods would be
/// denied `no_policy`. A config that loads is not refused for it: the namespaces may be
/// named otherwise on a given cluster.
fn uncovered_system_namespaces(config: &Config) -> Vec<String> {
    if config.policies.is_empty() {
        return Vec::new();
    }
    // The policies loaded with the config; this cannot fail where loading did not.
    let Ok(policies) = policies_by_name(&config.policies, config.verifiers.keys()) else {
        return Vec::new();
    };
    SYSTEM_NAMESPACES
        .iter()
        .filter(|namespace| policies.select(namespace).is_none())
        .map(|namespace| {
            format!(
                "no policy covers namespace {namespace}: its pods would be denied \
                 (no_policy); give it a policy (mode = \"audit\", or enforcing with its \
                 images allowlisted) or a default one (namespaces = [\"*\"])"
            )
        })
        .collect()
}

/// What `systemd/crigate.service` lets crigate write (`ProtectSystem=strict`, with
/// `StateDirectory=crigate` and `ReadWritePaths=/run/crigate`).
const UNIT_WRITABLE: [&str; 2] = ["/var/lib/crigate", "/run/crigate"];

/// A warning for each file crigate writes that the packaged unit does not let it write:
/// under the unit the daemon would do without it. A warning only, as the unit may have a
/// drop-in with `ReadWritePaths=` for it, and the daemon may run without the unit.
fn outside_the_units_writable_paths(config: &Config) -> Vec<String> {
    let mut written = Vec::new();
    if !config.policies.is_empty() {
        if let Some(path) = &config.cache.path {
            written.push(("cache.path", path.as_path()));
        }
    }
    if config.audit.shipping().is_some() {
        written.push(("audit.spool_dir", config.audit.spool_dir.as_path()));
    }
    written
        .into_iter()
        .filter(|(_, path)| {
            let climbs = path.components().any(|c| c == Component::ParentDir);
            climbs || !UNIT_WRITABLE.iter().any(|dir| path.starts_with(dir))
        })
        .map(|(key, path)| {
            // The daemon starts without either: without its cache file it keeps its
            // verdicts in memory; without its spool, records reach neither the spool
            // nor the aggregator.
            let consequence = if key == "cache.path" {
                "the daemon would keep its verdicts in memory only, and verify every image \
                 again after each restart"
            } else {
                "no record would reach the aggregator, and with \
                 audit.on_record_failure = \"deny\" every call would be denied"
            };
            format!(
                "{key} {} is outside what crigate.service lets crigate write ({}): under \
                 that unit {consequence}; add it to ReadWritePaths= in a drop-in",
                path.display(),
                UNIT_WRITABLE.join(", ")
            )
        })
        .collect()
}

fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let explanation = runtime.block_on(async {
        // A private, in-memory cache: explaining never reads or writes the daemon's.
        let cache = CacheConfig {
            positive_ttl: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            max_entries: 16,
            path: None,
        };
        let request = RequestContext {
            phase: Phase::Pull,
            api: ApiVersion::V1,
            image: args.image.clone(),
            user_specified_image: Some(args.image.clone()),
            namespace: Some(args.namespace.clone()),
            pod_name: None,
            pod_uid: None,
            container_name: None,
            pod_sandbox_id: None,
            caller: Caller {
                pid: Some(std::process::id() as i32),
                uid: nix::unistd::getuid().as_raw(),
                gid: nix::unistd::getgid().as_raw(),
            },
            credentials: None,
            image_volumes: Vec::new(),
        };
        // Without policies the daemon allows and records every call, as its own seam
        // says; nothing is verified.
        if config.policies.is_empty() {
            return anyhow::Ok(Explanation::new(&request).conclude(
                Conclusion::Allow,
                "no_policies",
                format!(
                    "{} has no [[policies]]: the daemon allows and records every call",
                    args.config.display()
                ),
            ));
        }
        let decider = policy_decider(&config, cache, None, Auditor::discard())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(decider.explain(&request).await)
    })?;
    let text = match args.output {
        Output::Json => {
            let mut text = serde_json::to_string_pretty(&Report {
                version: JSON_VERSION,
                explanation: &explanation,
            })?;
            text.push('\n');
            text
        }
        Output::Text => text(&explanation),
    };
    {
        use std::io::Write;
        if let Err(error) = std::io::stdout().lock().write_all(text.as_bytes()) {
            if error.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(error).context("cannot write to stdout");
            }
        }
    }
    // The pod's fate: allowed (audit mode included), denied, or refused because trust
    // could not be decided (as `crigate verify` exits 2 for an unreachable registry).
    Ok(ExitCode::from(match explanation.decision {
        Conclusion::Allow
        | Conclusion::AuditDeny
        | Conclusion::ErrorAllow
        | Conclusion::AuditError => EXIT_OK,
        Conclusion::Deny => EXIT_DENIED,
        Conclusion::ErrorDeny => EXIT_ERROR,
    }))
}

fn text(e: &Explanation) -> String {
    let mut out = format!("image:      {}\nnamespace:  {}\n", e.image, e.namespace);
    match (&e.policy, e.mode) {
        (Some(policy), Some(mode)) => out.push_str(&format!("policy:     {policy} ({mode})\n")),
        _ => out.push_str("policy:     none\n"),
    }
    if let Some(entry) = &e.allowlisted_by {
        out.push_str(&format!("allowlist:  {entry}\n"));
    }
    for check in &e.checks {
        out.push_str(&format!(
            "verifier:   {} on {}{}: {} {}\n",
            check.verifier,
            check.image,
            check
                .digest
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
            check.result,
            check.detail
        ));
    }
    out.push_str(&format!(
        "decision:   {}\nreason:     {}\n",
        e.decision, e.reason
    ));
    if let Some(pinned) = &e.pinned {
        out.push_str(&format!("pinned:     {pinned}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(more: &str) -> Config {
        let text = format!(
            "[verifiers.release]\nkind = \"cosign\"\nkeys = [\"/etc/crigate/keys/release.pub\"]\n\n\
             [[policies]]\nname = \"prod\"\nnamespaces = [\"prod\"]\nverifiers = [\"release\"]\n\n{more}"
        );
        Config::parse(&text, Path::new("/etc/crigate/config.toml")).unwrap()
    }

    #[test]
    fn files_the_packaged_unit_would_not_let_crigate_write_are_named() {
        // The defaults are the unit's.
        assert!(outside_the_units_writable_paths(&config("")).is_empty());
        let warned = |more: &str| outside_the_units_writable_paths(&config(more));
        for path in [
            "/var/cache/crigate/verdicts.jsonl",
            "/var/lib/crigate-old/verdicts.jsonl",
            "/var/lib/crigate/../../../etc/verdicts.jsonl",
        ] {
            let warnings = warned(&format!("[cache]\npath = \"{path}\"\n"));
            assert_eq!(warnings.len(), 1, "{path}: {warnings:?}");
            assert!(warnings[0].starts_with(&format!("cache.path {path} is outside")));
        }
        assert!(warned("[cache]\npath = \"/run/crigate/verdicts.jsonl\"\n").is_empty());
        // The spool counts only where records are shipped.
        let spool = "[audit]\nspool_dir = \"/var/spool/crigate\"\n";
        assert!(warned(spool).is_empty());
        let shipped = format!(
            "{spool}aggregator = \"https://aggregator.example:7443\"\n\
             ca_file = \"/etc/crigate/ca.pem\"\ncert_file = \"/etc/crigate/node.pem\"\n\
             key_file = \"/etc/crigate/node.key\"\n"
        );
        let warnings = warned(&shipped);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("audit.spool_dir /var/spool/crigate is outside"));
    }
}
