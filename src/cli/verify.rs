//! `crigate verify IMAGE`: verify one image with the daemon's engine, from the command
//! line, with flags named as cosign names them.
//!
//! Exit codes: 0 the image is trusted, 1 it is not (the reason is printed), 2 the
//! verification could not finish (registry unreachable, bad flags or files).
//!
//! `--output json` prints one object, documented in the README ("`crigate verify`
//! JSON"); fields are added in later versions, never renamed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::config::{Config, DockerReference, IdentityConfig, SignatureDigestName, VerifierConfig};
use crate::oci::ImageRef;
use crate::registry::{Client, RegistryConfig};
use crate::verify::cache::{CacheConfig, Source, VerdictCache};
use crate::verify::engine::{Engine, Outcome, Requirement};
use crate::verify::material;
use crate::verify::{Rejection, Verdict};

use super::{EXIT_DENIED, EXIT_OK};

/// Version of the JSON output format.
const JSON_VERSION: u32 = 1;

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes: 0 trusted, 1 not trusted, 2 error.")]
pub struct Args {
    /// The image: a tag or a digest reference (`registry/repo:tag`, `repo@sha256:…`).
    #[arg(value_name = "IMAGE", value_parser = parse_image)]
    pub image: ImageRef,

    /// crigate's configuration file: its `[registry]`, `[verify]` and `[verifiers.*]`
    /// sections are used, as the daemon uses them. Without it, the flags below say what to
    /// trust, as cosign's and notation's do.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["keys", "certificate_identity", "certificate_identity_regexp", "trusted_root", "notation_dir"]
    )]
    pub config: Option<PathBuf>,

    /// With --config: use only this verifier (repeatable). Default: all configured ones.
    #[arg(long = "verifier", value_name = "NAME", requires = "config")]
    pub verifiers: Vec<String>,

    /// A cosign public key (PEM: ECDSA P-256/P-384/P-521, RSA, Ed25519). Repeatable; any one
    /// key may sign.
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<PathBuf>,

    /// The keyless signer's identity (certificate SAN), exactly.
    #[arg(
        long,
        value_name = "IDENTITY",
        conflicts_with = "certificate_identity_regexp"
    )]
    pub certificate_identity: Option<String>,

    /// The keyless signer's identity, as a regular expression matched against the whole SAN.
    #[arg(long, value_name = "REGEX")]
    pub certificate_identity_regexp: Option<String>,

    /// The OIDC issuer of the keyless certificate, exactly.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "certificate_oidc_issuer_regexp"
    )]
    pub certificate_oidc_issuer: Option<String>,

    /// The OIDC issuer, as a regular expression matched against the whole issuer.
    #[arg(long, value_name = "REGEX")]
    pub certificate_oidc_issuer_regexp: Option<String>,

    /// Sigstore trust material in `trusted_root.json` form: Fulcio CAs, Rekor and CT log
    /// keys. Required for keyless signatures (crigate fetches no trust material).
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,

    /// Do not consult the transparency log at all (cosign's flag of the same name): Rekor
    /// bundles and tlog entries are ignored; a key is judged alone, a keyless signature
    /// by an RFC 3161 timestamp.
    #[arg(long)]
    pub insecure_ignore_tlog: bool,

    /// Accept keyless certificates without an embedded SCT (cosign's flag of the same name).
    #[arg(long)]
    pub insecure_ignore_sct: bool,

    /// How the signed docker-reference must relate to IMAGE's repository. cosign itself
    /// does not compare it; crigate does unless told not to.
    #[arg(long, value_enum, default_value_t = ReferenceCheck::MatchRepository)]
    pub docker_reference: ReferenceCheck,

    /// The one hash `--key` signatures are made over (cosign's flag of the same name).
    /// Unset: SHA-256 or the key's own hash, as older and newer cosign sign.
    #[arg(long, value_enum, value_name = "ALGORITHM", requires = "keys")]
    pub signature_digest_algorithm: Option<SignatureDigestName>,

    /// A Notation configuration directory as the notation CLI lays it out
    /// (`trustpolicy.json` or `trustpolicy.oci.json`, `truststore/x509/...`), used as it is.
    #[arg(long, value_name = "DIR")]
    pub notation_dir: Option<PathBuf>,

    /// Check Notation certificates' revocation with the CRLs in the directory's `crl/`
    /// only, never asking a certificate's OCSP responder or CRL distribution point.
    #[arg(long, requires = "notation_dir")]
    pub offline_revocation: bool,

    /// Talk plain HTTP to IMAGE's registry (as notation names it), for a local registry
    /// without TLS.
    #[arg(long)]
    pub plain_http: bool,

    /// A CA certificate (PEM) to trust for the registry's TLS, beside the system roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// A docker-style `config.json` with registry credentials.
    #[arg(long, value_name = "FILE")]
    pub docker_config: Option<PathBuf>,

    /// containerd's registry hosts directory (`<host>/hosts.toml`; its CRI plugin's
    /// `registry.config_path`): ask the mirrors it names, as containerd does.
    #[arg(long, value_name = "DIR", conflicts_with = "containerd_config")]
    pub hosts_dir: Option<String>,

    /// containerd's config file: ask the mirrors its CRI plugin names (`registry.mirrors`
    /// or `registry.config_path`), with the TLS files and credentials of `registry.configs`.
    #[arg(long, value_name = "FILE")]
    pub containerd_config: Option<PathBuf>,

    /// Reach a mirror whose `hosts.toml` sets `skip_verify` (or whose containerd
    /// `registry.configs` TLS sets `insecure_skip_verify`) without checking its
    /// certificate, as containerd does (with --config: `registry.honour_skip_verify`).
    #[arg(long)]
    pub honour_skip_verify: bool,

    /// Bound on the whole verification, registry included (with --config: `verify.timeout`).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReferenceCheck {
    /// The signed reference names the same repository (tag or digest ignored).
    MatchRepository,
    /// Not compared, as cosign does.
    NotChecked,
}

/// What `--output json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    version: u32,
    image: String,
    digest: String,
    /// `trusted` or `rejected`.
    result: &'static str,
    /// The verifier that established trust (`cosign` or `notation`), when trusted.
    verifier: Option<String>,
    signer: Option<SignerReport<'a>>,
    /// The reference the runtime would be given: the repository at the signed digest.
    pinned: Option<String>,
    reason: Option<ReasonReport>,
    cached: bool,
}

#[derive(Debug, Serialize)]
struct SignerReport<'a> {
    identity: &'a str,
    issuer: Option<&'a str>,
    matched: &'a str,
    signed_digest: String,
}

#[derive(Debug, Serialize)]
struct ReasonReport {
    code: &'static str,
    message: String,
}

/// Verifies the image and prints the outcome.
///
/// # Errors
///
/// Bad flags or files, or a verification that could not finish.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Each configured verifier on its own, as a policy listing them asks each: one's trust
    // material never vouches under another's rules.
    let (requirements, mut registry, timeout) = match &args.config {
        Some(path) => {
            let config = Config::load(path)?;
            let names: Vec<&String> = if args.verifiers.is_empty() {
                config.verifiers.keys().collect()
            } else {
                args.verifiers.iter().collect()
            };
            if names.is_empty() {
                bail!(
                    "{} configures no verifier: add a [verifiers.<name>] section",
                    path.display()
                );
            }
            let requirements = names
                .into_iter()
                .map(|name| material::requirement(&config.verifiers, std::slice::from_ref(name)))
                .collect::<Result<Vec<_>, _>>()?;
            (requirements, config.registry, config.verify.timeout)
        }
        None => (
            vec![requirement_from_flags(&args)?],
            RegistryConfig::default(),
            args.timeout,
        ),
    };
    if args.ca_file.is_some() {
        registry.ca_file.clone_from(&args.ca_file);
    }
    if args.docker_config.is_some() {
        registry.docker_config.clone_from(&args.docker_config);
    }
    if args.hosts_dir.is_some() {
        registry.hosts_dir.clone_from(&args.hosts_dir);
        registry.containerd_config = None;
    }
    if args.containerd_config.is_some() {
        registry
            .containerd_config
            .clone_from(&args.containerd_config);
        registry.hosts_dir = None;
    }
    if args.honour_skip_verify {
        registry.honour_skip_verify = true;
    }
    if args.plain_http {
        registry.plain_http.push(args.image.registry().to_owned());
    }
    let client = Client::new(registry).context("cannot set up the registry client")?;
    let cache = VerdictCache::open(CacheConfig {
        positive_ttl: Duration::ZERO,
        negative_ttl: Duration::ZERO,
        max_entries: 16,
        path: None,
    })
    .context("cannot set up the verdict cache")?;
    let engine = Engine::new(client, Arc::new(cache), timeout);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Trusted by the first verifier that trusts it; otherwise the first rejection the
    // next run may not repeat (a revocation status not determined), or the first.
    let mut rejected: Vec<Outcome> = Vec::new();
    let mut trusted = None;
    for requirement in &requirements {
        let outcome = runtime
            .block_on(engine.verify(&args.image, requirement, None))
            .with_context(|| format!("cannot verify {}", args.image))?;
        match outcome.verdict {
            Verdict::Trusted(_) => {
                trusted = Some(outcome);
                break;
            }
            Verdict::Rejected(_) => rejected.push(outcome),
        }
    }
    let unsettled = rejected
        .iter()
        .position(|o| matches!(&o.verdict, Verdict::Rejected(r) if !r.is_lasting()));
    let rejected = (!rejected.is_empty()).then(|| rejected.swap_remove(unsettled.unwrap_or(0)));
    let Some(outcome) = trusted.or(rejected) else {
        bail!("no verifier to verify with");
    };
    print(&outcome, args.output)?;
    Ok(ExitCode::from(match outcome.verdict {
        Verdict::Trusted(_) => EXIT_OK,
        Verdict::Rejected(_) => EXIT_DENIED,
    }))
}

/// What the flags say to trust: the verifiers they describe, read by the same loader as
/// the `[verifiers.*]` sections of the config.
fn requirement_from_flags(args: &Args) -> anyhow::Result<Requirement> {
    let mut verifiers = BTreeMap::new();
    let subject = (
        args.certificate_identity.clone(),
        args.certificate_identity_regexp.clone(),
    );
    let issuer = (
        args.certificate_oidc_issuer.clone(),
        args.certificate_oidc_issuer_regexp.clone(),
    );
    let identities = match (subject, issuer) {
        ((None, None), (None, None)) => Vec::new(),
        ((None, None), _) => {
            bail!("--certificate-oidc-issuer needs --certificate-identity or --certificate-identity-regexp")
        }
        (_, (None, None)) => {
            bail!("--certificate-identity needs --certificate-oidc-issuer or --certificate-oidc-issuer-regexp, as cosign's does")
        }
        ((subject, subject_regexp), (issuer, issuer_regexp)) => vec![IdentityConfig {
            subject,
            subject_regexp,
            issuer,
            issuer_regexp,
        }],
    };
    if !args.keys.is_empty() || !identities.is_empty() {
        if !identities.is_empty() && args.trusted_root.is_none() {
            bail!("keyless verification needs Fulcio roots: give --trusted-root FILE (crigate fetches no trust material)");
        }
        verifiers.insert(
            "flags".to_owned(),
            VerifierConfig::Cosign {
                keys: args.keys.clone(),
                identities,
                trusted_root: args.trusted_root.clone(),
                require_tlog: !args.insecure_ignore_tlog,
                require_sct: !args.insecure_ignore_sct,
                docker_reference: match args.docker_reference {
                    ReferenceCheck::MatchRepository => DockerReference::MatchRepository,
                    ReferenceCheck::NotChecked => DockerReference::NotChecked,
                },
                signature_digest: args.signature_digest_algorithm,
            },
        );
    }
    if let Some(dir) = &args.notation_dir {
        verifiers.insert(
            "notation-dir".to_owned(),
            VerifierConfig::Notation {
                dir: dir.clone(),
                online_revocation: !args.offline_revocation,
                timestamp_revocation: true,
            },
        );
    }
    if verifiers.is_empty() {
        bail!(
            "nothing to verify against: give --key FILE, --certificate-identity[-regexp] with --trusted-root FILE, \
             --notation-dir DIR, or --config FILE"
        );
    }
    Ok(material::requirement(&verifiers, &[])?)
}

fn print(outcome: &Outcome, output: Output) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let text = match output {
        Output::Json => {
            let report = report(outcome);
            let mut text = serde_json::to_string_pretty(&report)?;
            text.push('\n');
            text
        }
        Output::Text => text(outcome),
    };
    match stdout.write_all(text.as_bytes()) {
        // A closed pipe (`| head`) ends the command quietly.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

fn report(outcome: &Outcome) -> Report<'_> {
    let (result, verifier, signer, reason) = match &outcome.verdict {
        Verdict::Trusted(signer) => (
            "trusted",
            Some(signer.verifier.to_string()),
            Some(SignerReport {
                identity: &signer.identity,
                issuer: signer.issuer.as_deref(),
                matched: &signer.matched,
                signed_digest: signer.signed_digest.to_string(),
            }),
            None,
        ),
        Verdict::Rejected(rejection) => ("rejected", None, None, Some(reason(rejection))),
    };
    Report {
        version: JSON_VERSION,
        image: outcome.image.to_string(),
        digest: outcome.digest.to_string(),
        result,
        verifier,
        signer,
        pinned: outcome.pinned().map(|p| p.to_string()),
        reason,
        cached: outcome.source == Source::Cache,
    }
}

fn reason(rejection: &Rejection) -> ReasonReport {
    ReasonReport {
        code: rejection.code(),
        message: rejection.to_string(),
    }
}

fn text(outcome: &Outcome) -> String {
    let mut out = format!(
        "image:    {}\ndigest:   {}\n",
        outcome.image, outcome.digest
    );
    match &outcome.verdict {
        Verdict::Trusted(signer) => {
            out.push_str(&format!("result:   trusted ({})\n", signer.verifier));
            out.push_str(&format!("signer:   {}\n", signer.identity));
            if let Some(issuer) = &signer.issuer {
                out.push_str(&format!("issuer:   {issuer}\n"));
            }
            out.push_str(&format!("matched:  {}\n", signer.matched));
            if let Some(pinned) = outcome.pinned() {
                out.push_str(&format!("pinned:   {pinned}\n"));
            }
        }
        Verdict::Rejected(rejection) => {
            out.push_str("result:   rejected\n");
            out.push_str(&format!("reason:   {} ({})\n", rejection, rejection.code()));
        }
    }
    out
}

fn parse_image(value: &str) -> Result<ImageRef, String> {
    value.parse::<ImageRef>().map_err(|e| e.to_string())
}

/// A duration of at most [`crate::config::MAX_TIMEOUT`], as the config file's timeouts.
fn parse_timeout(value: &str) -> Result<Duration, String> {
    let timeout =
        humantime_serde::re::humantime::parse_duration(value).map_err(|e| e.to_string())?;
    crate::config::check_timeout(timeout).map_err(str::to_owned)
}

#[cfg(test)]
mod tests {
    /// A timeout past what the clock can add to now would make every deadline panic.
    #[test]
    fn a_timeout_past_a_day_is_refused() {
        assert_eq!(
            super::parse_timeout("90s"),
            Ok(std::time::Duration::from_secs(90))
        );
        assert!(super::parse_timeout("24h").is_ok());
        for refused in ["25h", "500000000000years"] {
            assert_eq!(
                super::parse_timeout(refused),
                Err("must be at most 24h".to_owned()),
                "{refused}"
            );
        }
    }
}
