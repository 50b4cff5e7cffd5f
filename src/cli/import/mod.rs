//! `crigate import ratify|kritis FILE... --out DIR`: turn the Ratify or kritis resources an
//! operator already has into crigate configuration and trust files.
//!
//! Written to DIR, which must be new or empty: `config.toml` (verifiers and policies, to
//! review and merge into `/etc/crigate/config.toml`), a Notation configuration directory
//! per Ratify notation verifier (`notation/<verifier>/trustpolicy.json` and
//! `truststore/x509/...`), and PEM keys for kritis authorities
//! (`keys/<namespace>/<authority>.pub`). A `config.toml` in which no policy could be
//! written says at its top that it enforces nothing as it is. Everything that could not
//! be mapped, and every way the result decides otherwise than the source, is listed with
//! the reason. Exit 0 when everything was mapped, 1 when something was left out or
//! differs, 2 on error (unreadable file, invalid YAML, an `--out` directory that is not
//! empty).
//!
//! Files hold YAML documents, as `kubectl apply -f` takes them; a `List` (what
//! `kubectl get ... -o yaml` prints) is read as its items.
//!
//! The Ratify mapping is in [`ratify`], the kritis one in [`kritis`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_yaml_ng::Value;

use super::{EXIT_DENIED, EXIT_OK};
use crate::config::Config;

mod kritis;
mod ratify;

#[cfg(test)]
mod tests;

/// The largest resource file read.
const MAX_RESOURCE_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// How deep `List`s may nest. `kubectl` prints one level; a few more allow for lists
/// assembled by scripts, and the bound keeps a hostile file from recursing without end.
const MAX_LIST_DEPTH: usize = 4;

/// What a `config.toml` without `[[policies]]` says below its header.
const NO_POLICIES: &str = "\n\
    # NO POLICY: nothing here could be imported as a policy, so this file ENFORCES NOTHING:\n\
    # `crigate serve` with it allows and records every PullImage and CreateContainer.\n\
    # Write a policy (see the import's report) before using it.\n";

/// The namespace the Ratify chart installs into (Gatekeeper's), and that the AKS Image
/// Integrity documentation's resources assume.
pub const DEFAULT_RATIFY_NAMESPACE: &str = "gatekeeper-system";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kind of resources in the files.
    #[arg(value_enum)]
    pub kind: Kind,

    /// YAML files of resources (several documents per file, and `kind: List`, are fine).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Where to write the configuration and trust files: a new or empty directory, so
    /// that no certificate from an earlier import stays trusted.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The namespace Ratify runs in. A notation Verifier's `verificationCertStores` member
    /// without a namespace (`certs` rather than `ns/certs`) names the certificate store
    /// there, and a store without `metadata.namespace` is taken to be there.
    #[arg(long, value_name = "NS", default_value = DEFAULT_RATIFY_NAMESPACE, value_parser = namespace_arg)]
    pub ratify_namespace: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Ratify `CertificateStore`, `KeyManagementProvider`, `Store`, `Verifier`, `Policy`
    /// (config.ratify.deislabs.io).
    Ratify,
    /// kritis `AdmissionAllowlist`, `AttestationAuthority`, `GenericAttestationPolicy`.
    Kritis,
}

/// What an import produced and what it could not map.
#[derive(Debug, Default)]
struct Import {
    config: String,
    mapped: Vec<String>,
    left_out: Vec<String>,
}

/// One resource read from the files, its name checked.
#[derive(Debug)]
struct Resource {
    file: PathBuf,
    kind: String,
    name: String,
    namespace: Option<String>,
    value: Value,
}

/// Runs the import.
///
/// # Errors
///
/// A file cannot be read or is not YAML, DIR is not empty or cannot be written, or the
/// configuration produced does not load (a bug).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (import, config_path) = import(&args)?;
    println!("wrote {}", config_path.display());
    for line in &import.mapped {
        println!("mapped:   {line}");
    }
    for line in &import.left_out {
        println!("left out: {line}");
    }
    Ok(ExitCode::from(if import.left_out.is_empty() {
        EXIT_OK
    } else {
        EXIT_DENIED
    }))
}

/// Reads the files, writes DIR, and returns the report and the path of `config.toml`.
fn import(args: &Args) -> anyhow::Result<(Import, PathBuf)> {
    let mut resources = Vec::new();
    let mut unread = Vec::new();
    for file in &args.files {
        let len = std::fs::metadata(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .len();
        if len > MAX_RESOURCE_FILE_BYTES {
            bail!(
                "{} is larger than {MAX_RESOURCE_FILE_BYTES} bytes",
                file.display()
            );
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = <Value as serde::Deserialize>::deserialize(document)
                .with_context(|| format!("{} is not valid YAML", file.display()))?;
            collect(value, file, 0, &mut resources, &mut unread);
        }
    }
    let out = prepare_out(&args.out)?;
    let cluster_scoped = match args.kind {
        Kind::Ratify => ratify::cluster_scoped,
        Kind::Kritis => kritis::cluster_scoped,
    };
    let (resources, repeated) = split_repeats(resources, cluster_scoped);
    let mut import = match args.kind {
        Kind::Ratify => ratify::import(&resources, &out, &args.ratify_namespace)?,
        Kind::Kritis => kritis::import(&resources, &repeated, &out)?,
    };
    for copies in repeated.chunk_by(|a, b| a.key(cluster_scoped) == b.key(cluster_scoped)) {
        let files: Vec<String> = copies
            .iter()
            .map(|c| c.file.display().to_string())
            .collect();
        import.left_out.push(format!(
            "{}: defined {} times ({}); a cluster holds the copy applied last, which the files do \
             not tell, so none was imported",
            copies[0].title(cluster_scoped),
            copies.len(),
            files.join(", ")
        ));
    }
    import.left_out.extend(unread);
    let config_path = out.join("config.toml");
    let parsed = Config::parse(&import.config, &config_path)
        .context("the imported configuration does not load (a crigate bug)")?;
    if parsed.policies.is_empty() {
        // Without `[[policies]]` `crigate serve` allows and records every call (README,
        // "Enforcement needs [[policies]]"): the file says so at its top, where whoever
        // merges it reads first, and so does the report.
        let at = import
            .config
            .lines()
            .take_while(|line| line.starts_with('#'))
            .map(|line| line.len() + 1)
            .sum::<usize>()
            .min(import.config.len());
        import.config.insert_str(at, NO_POLICIES);
        import.left_out.push(format!(
            "{}: no policy could be written, so the file enforces nothing: crigate serve with \
             it as it is allows and records every call; write a policy before using it",
            config_path.display()
        ));
    }
    std::fs::write(&config_path, &import.config)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok((import, config_path))
}

impl Resource {
    /// What names the resource in a cluster: its kind, name and, for a kind that is not
    /// `cluster_scoped`, its namespace.
    fn key(&self, cluster_scoped: fn(&str) -> bool) -> (&str, Option<&str>, &str) {
        let namespace = self
            .namespace
            .as_deref()
            .filter(|_| !cluster_scoped(&self.kind));
        (&self.kind, namespace, &self.name)
    }

    /// `Kind namespace/name`, or `Kind name`, for messages.
    fn title(&self, cluster_scoped: fn(&str) -> bool) -> String {
        match self.key(cluster_scoped) {
            (kind, Some(namespace), name) => format!("{kind} {namespace}/{name}"),
            (kind, None, name) => format!("{kind} {name}"),
        }
    }
}

/// Splits `resources` into those defined once and those defined more than once (one
/// kind, namespace and name, in any files, in different words), the latter sorted so
/// that the copies of one resource are together. A cluster holds only the copy applied
/// last, and the files do not say which that is: taking any one could import a key
/// rotated out, or an allowlist entry since removed. Copies alike in every word are one
/// resource, whichever was applied last.
fn split_repeats(
    resources: Vec<Resource>,
    cluster_scoped: fn(&str) -> bool,
) -> (Vec<Resource>, Vec<Resource>) {
    type Key = (String, Option<String>, String);
    let key = |resource: &Resource| -> Key {
        let (kind, namespace, name) = resource.key(cluster_scoped);
        (
            kind.to_owned(),
            namespace.map(str::to_owned),
            name.to_owned(),
        )
    };
    let mut versions: BTreeMap<Key, Vec<&Value>> = BTreeMap::new();
    for resource in &resources {
        let seen = versions.entry(key(resource)).or_default();
        if !seen.contains(&&resource.value) {
            seen.push(&resource.value);
        }
    }
    let differ: BTreeSet<Key> = versions
        .into_iter()
        .filter(|(_, values)| values.len() > 1)
        .map(|(key, _)| key)
        .collect();
    let mut kept: BTreeSet<Key> = BTreeSet::new();
    let (mut once, mut repeated) = (Vec::new(), Vec::new());
    for resource in resources {
        let key = key(&resource);
        if differ.contains(&key) {
            repeated.push(resource);
        } else if kept.insert(key) {
            once.push(resource);
        }
    }
    repeated.sort_by(|a, b| a.key(cluster_scoped).cmp(&b.key(cluster_scoped)));
    (once, repeated)
}

/// Adds the resource `value` to `resources`, or the items of a `List` (at most
/// [`MAX_LIST_DEPTH`] deep), or to `unread` why it is not used.
fn collect(
    value: Value,
    file: &Path,
    depth: usize,
    resources: &mut Vec<Resource>,
    unread: &mut Vec<String>,
) {
    if value.is_null() {
        return;
    }
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    // `kubectl get ... -o yaml` prints `apiVersion: v1, kind: List, items: [...]`; the
    // API server's own lists are `<Kind>List`. Either holds whole resources.
    if kind == "List" || (kind.ends_with("List") && value.get("items").is_some()) {
        if depth >= MAX_LIST_DEPTH {
            unread.push(format!(
                "{kind} ({}): Lists nested more than {MAX_LIST_DEPTH} deep are not read",
                file.display()
            ));
            return;
        }
        let Value::Mapping(mut list) = value else {
            return;
        };
        match list.remove("items") {
            Some(Value::Sequence(items)) => {
                for item in items {
                    collect(item, file, depth + 1, resources, unread);
                }
            }
            None | Some(Value::Null) => {}
            Some(_) => unread.push(format!(
                "{kind} ({}): items is not a list of resources",
                file.display()
            )),
        }
        return;
    }
    // Names become file names and TOML keys: only the ones Kubernetes itself accepts
    // are used.
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let namespace = value
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let checked = object_name(&name, 253, true)
        .map_err(|r| format!("metadata.name {name:?} {r}"))
        .and_then(|()| match &namespace {
            Some(ns) => {
                object_name(ns, 63, false).map_err(|r| format!("metadata.namespace {ns:?} {r}"))
            }
            None => Ok(()),
        });
    match checked {
        Ok(()) => resources.push(Resource {
            file: file.to_owned(),
            kind,
            name,
            namespace,
            value,
        }),
        Err(reason) => unread.push(format!("{kind} ({}): {reason}", file.display())),
    }
}

/// Creates `out`, or checks that it is empty, and returns its canonical path.
///
/// An existing, non-empty directory is refused: the Notation trust store trusts every
/// certificate file in a store directory, so certificates written by an earlier import
/// that the resources no longer name would stay trusted.
fn prepare_out(out: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "--out {} is not empty: certificates an earlier import wrote there would stay \
                     trusted (a Notation trust store trusts every certificate file in it); give a \
                     new or empty directory, or remove {} first",
                    out.display(),
                    out.display()
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read --out {}", out.display())),
    }
    std::fs::canonicalize(out).with_context(|| format!("cannot read --out {}", out.display()))
}

/// Parses a namespace flag: a Kubernetes namespace name (a DNS label).
fn namespace_arg(ns: &str) -> Result<String, String> {
    object_name(ns, 63, false)
        .map(|()| ns.to_owned())
        .map_err(|r| format!("namespace {ns:?} {r}"))
}

/// Whether `name` is a Kubernetes object name: a DNS subdomain (RFC 1123; lowercase
/// letters, digits, `-` and, with `dots`, `.`, starting and ending with a letter or digit)
/// of at most `max` characters, as the API server requires of `metadata.name` (253) and
/// of a namespace, a DNS label (63, no dots).
fn object_name(name: &str, max: usize, dots: bool) -> Result<(), &'static str> {
    let alphanumeric = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if alphanumeric(first) && alphanumeric(last) => {}
        _ => return Err("must start and end with a lowercase letter or digit"),
    }
    if bytes.len() > max {
        return Err("is too long for a Kubernetes name");
    }
    if !bytes
        .iter()
        .all(|&c| alphanumeric(c) || c == b'-' || (dots && c == b'.'))
    {
        return Err(if dots {
            "may hold only lowercase letters, digits, '-' and '.'"
        } else {
            "may hold only lowercase letters, digits and '-'"
        });
    }
    Ok(())
}

/// A Kubernetes object name as a crigate verifier or policy name, which allow letters,
/// digits, `-` and `_`: its dots become `_`, which no Kubernetes name holds, so distinct
/// names stay distinct.
fn config_name(name: &str) -> String {
    name.replace('.', "_")
}

/// A crigate verifier or policy name for the object `name` in `namespace`:
/// `<namespace>_<name>`. A namespace holds no `_` and no `.`, so the first `_` ends it and
/// two objects never share a name.
fn namespaced_config_name(namespace: &str, name: &str) -> String {
    format!("{namespace}_{}", config_name(name))
}

/// `s` as a TOML basic string, quoted and escaped.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Writes `bytes` to `path`, creating its parent directories.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn header(kind: &str) -> String {
    format!(
        "# Imported by `crigate import {kind}`. Review, then merge into /etc/crigate/config.toml;\n\
         # `crigate policy check --config FILE` validates the result.\n"
    )
}
