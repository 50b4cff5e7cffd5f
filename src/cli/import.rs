//! `crigate import ratify|kritis FILE... --out DIR`: turn the Ratify or kritis resources an
//! operator already has into crigate configuration and trust files.
//!
//! Written to DIR: `config.toml` (verifiers and policies, to review and merge into
//! `/etc/crigate/config.toml`), a Notation configuration directory per Ratify notation
//! verifier (`notation/<verifier>/trustpolicy.json` and `truststore/x509/...`), and PEM
//! keys for kritis authorities (`keys/<authority>.pub`). Everything that could not be
//! mapped is listed with the reason. Exit 0 when everything was mapped, 1 when
//! something was left out, 2 on error (unreadable file, invalid YAML).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use base64::Engine as _;
use serde_yaml_ng::Value;

use super::{EXIT_DENIED, EXIT_OK};
use crate::config::Config;

/// The largest resource file read.
const MAX_RESOURCE_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The kind of resources in the files.
    #[arg(value_enum)]
    pub kind: Kind,

    /// YAML files of resources (several documents per file are fine).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Where to write the configuration and trust files.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Ratify `CertificateStore`, `Store`, `Verifier`, `Policy` (config.ratify.deislabs.io).
    Ratify,
    /// kritis `AdmissionAllowlist`, `AttestationAuthority`, `GenericAttestationPolicy`.
    Kritis,
}

/// What an import produced and what it could not map.
#[derive(Default)]
struct Import {
    config: String,
    mapped: Vec<String>,
    left_out: Vec<String>,
}

/// Runs the import.
///
/// # Errors
///
/// A file cannot be read or is not YAML, DIR cannot be written, or the configuration
/// produced does not load (a bug).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut documents = Vec::new();
    let mut misnamed = Vec::new();
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
            if value.is_null() {
                continue;
            }
            // Names become file names and TOML keys: only the ones Kubernetes itself
            // accepts are used.
            let (kind, name) = kind_of(&value);
            let namespace = value["metadata"]["namespace"].as_str();
            if let Err(reason) = object_name(name, 253, true)
                .map_err(|r| format!("metadata.name {name:?} {r}"))
                .and_then(|()| match namespace {
                    Some(ns) => object_name(ns, 63, false)
                        .map_err(|r| format!("metadata.namespace {ns:?} {r}")),
                    None => Ok(()),
                })
            {
                misnamed.push(format!("{kind} ({}): {reason}", file.display()));
                continue;
            }
            documents.push((file.clone(), value));
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = std::fs::canonicalize(&args.out)?;
    let mut import = match args.kind {
        Kind::Ratify => ratify(&documents, &out)?,
        Kind::Kritis => kritis(&documents, &out)?,
    };
    import.left_out.extend(misnamed);
    let config_path = out.join("config.toml");
    Config::parse(&import.config, &config_path)
        .context("the imported configuration does not load (a crigate bug)")?;
    std::fs::write(&config_path, &import.config)?;
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

fn kind_of(value: &Value) -> (&str, &str) {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = value
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    (kind, name)
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

fn header(kind: &str) -> String {
    format!(
        "# Imported by `crigate import {kind}`. Review, then merge into /etc/crigate/config.toml;\n\
         # `crigate policy check --config FILE` validates the result.\n"
    )
}

fn ratify(documents: &[(PathBuf, Value)], out: &Path) -> anyhow::Result<Import> {
    let mut import = Import {
        config: header("ratify"),
        ..Import::default()
    };
    // CertificateStore name -> PEM text.
    let mut stores: BTreeMap<String, String> = BTreeMap::new();
    for (file, doc) in documents {
        let (kind, name) = kind_of(doc);
        if kind != "CertificateStore" {
            continue;
        }
        let provider = doc["spec"]["provider"].as_str().unwrap_or("");
        match (provider, doc["spec"]["parameters"]["value"].as_str()) {
            ("inline", Some(pem)) if pem.contains("-----BEGIN CERTIFICATE-----") => {
                stores.insert(name.to_owned(), pem.to_owned());
                import.mapped.push(format!("CertificateStore {name} (inline certificates)"));
            }
            (provider, _) => import.left_out.push(format!(
                "CertificateStore {name} ({}): provider {provider:?} is not supported; export its certificates \
                 into a Notation trust store directory",
                file.display()
            )),
        }
    }
    let mut verifiers = Vec::new();
    for (file, doc) in documents {
        let (kind, name) = kind_of(doc);
        match kind {
            "CertificateStore" => {}
            "Store" => {
                let store = doc["spec"]["name"].as_str().unwrap_or("");
                if store == "oras" && doc["spec"].get("parameters").is_none() {
                    import.mapped.push(format!(
                        "Store {name} (oras): crigate reads signatures from the registry itself; registry access \
                         is [registry] (plain_http, ca_file, docker_config)"
                    ));
                } else {
                    import.left_out.push(format!(
                        "Store {name} ({}): store {store:?} with parameters (e.g. an auth provider) is not mapped; \
                         give registry credentials through [registry] docker_config",
                        file.display()
                    ));
                }
            }
            "Verifier" => {
                let verifier = doc["spec"]["name"].as_str().unwrap_or("");
                if verifier != "notation" {
                    import.left_out.push(format!(
                        "Verifier {name} ({}): {verifier:?} verifiers are not imported; configure a \
                         [verifiers.<name>] kind = \"cosign\" section",
                        file.display()
                    ));
                    continue;
                }
                match notation_verifier(name, doc, &stores, out) {
                    Ok(dir) => {
                        let key = config_name(name);
                        let _ = write!(
                            import.config,
                            "\n[verifiers.{key}]\nkind = \"notation\"\ndir = \"{}\"\n",
                            dir.display()
                        );
                        import.mapped.push(format!(
                            "Verifier {name} (notation): [verifiers.{key}], trust policy and trust stores in {}",
                            dir.display()
                        ));
                        verifiers.push(key);
                    }
                    Err(reason) => import.left_out.push(format!("Verifier {name} ({}): {reason}", file.display())),
                }
            }
            "Policy" => import.left_out.push(format!(
                "Policy {name} ({}): Ratify's policy is replaced by crigate's [[policies]]; a default policy \
                 requiring any imported verifier was written instead",
                file.display()
            )),
            other => import.left_out.push(format!(
                "{other} {name} ({}): not a Ratify resource crigate imports",
                file.display()
            )),
        }
    }
    if verifiers.is_empty() {
        import
            .left_out
            .push("no verifier could be imported, so no policy was written".to_owned());
    } else {
        let list = verifiers
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            import.config,
            "\n# Gatekeeper + Ratify admit what any verifier trusts, in every namespace.\n\
             [[policies]]\nname = \"default\"\nnamespaces = [\"*\"]\nmode = \"enforce\"\nverifiers = [{list}]\n\
             require = \"any\"\n"
        );
    }
    Ok(import)
}

/// Checks a Notation trust store name: letters, digits, `_`, `.` and `-`, and not a
/// directory's own or parent's name.
fn store_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "trust store name {name:?} may hold only letters, digits, '_', '.' and '-'"
        ))
    }
}

/// Writes the Notation configuration directory of a Ratify notation verifier.
fn notation_verifier(
    name: &str,
    doc: &Value,
    stores: &BTreeMap<String, String>,
    out: &Path,
) -> Result<PathBuf, String> {
    let parameters = &doc["spec"]["parameters"];
    let policy = parameters
        .get("trustPolicyDoc")
        .ok_or("no trustPolicyDoc in parameters")?;
    let dir = out.join("notation").join(name);
    let write = |path: &Path, bytes: &[u8]| {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let json = serde_json::to_vec_pretty(policy).map_err(|e| format!("trustPolicyDoc: {e}"))?;
    write(&dir.join("trustpolicy.json"), &json)?;
    // The trust store names a policy refers to, with their types (`ca:certs`).
    let mut referenced: Vec<(String, String)> = Vec::new();
    for trust_policy in policy["trustPolicies"].as_sequence().into_iter().flatten() {
        for store in trust_policy["trustStores"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            if let Some((kind, store)) = store.as_str().and_then(|s| s.split_once(':')) {
                // The trust store types and the name rule of the Notation trust policy
                // (trust-store-trust-policy.md, "Trust Store"; notation-go
                // `IsValidFileName`), so the store is a directory under its type's.
                if !matches!(kind, "ca" | "signingAuthority" | "tsa") {
                    return Err(format!(
                        "trust store type {kind:?} is not ca, signingAuthority or tsa"
                    ));
                }
                store_name(store)?;
                referenced.push((kind.to_owned(), store.to_owned()));
            }
        }
    }
    let cert_stores = parameters["verificationCertStores"]
        .as_mapping()
        .ok_or("no verificationCertStores in parameters")?;
    for (store, members) in cert_stores {
        let store = store
            .as_str()
            .ok_or("a verificationCertStores key is not a string")?;
        store_name(store)?;
        let kinds: Vec<&str> = referenced
            .iter()
            .filter(|(_, s)| s == store)
            .map(|(k, _)| k.as_str())
            .collect();
        if kinds.is_empty() {
            continue;
        }
        for member in members.as_sequence().into_iter().flatten() {
            let member = member
                .as_str()
                .ok_or("a certificate store name is not a string")?;
            let pem = stores.get(member).ok_or_else(|| {
                format!("certificate store {member:?} is not an imported inline CertificateStore")
            })?;
            for kind in &kinds {
                write(
                    &dir.join("truststore/x509")
                        .join(kind)
                        .join(store)
                        .join(format!("{member}.pem")),
                    pem.as_bytes(),
                )?;
            }
        }
    }
    Ok(dir)
}

fn kritis(documents: &[(PathBuf, Value)], out: &Path) -> anyhow::Result<Import> {
    let mut import = Import {
        config: header("kritis"),
        ..Import::default()
    };
    let mut authorities: Vec<String> = Vec::new();
    let mut allowlist = String::new();
    for (file, doc) in documents {
        let (kind, name) = kind_of(doc);
        match kind {
            "AttestationAuthority" => match authority_key(doc) {
                Ok(pem) => {
                    let path = out.join("keys").join(format!("{name}.pub"));
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&path, pem)?;
                    let _ = write!(
                        import.config,
                        "\n# kritis verified attestations in Grafeas; crigate verifies cosign signatures in the\n\
                         # registry made with this key pair.\n[verifiers.{key}]\nkind = \"cosign\"\nkeys = [\"{}\"]\n\
                         require_tlog = false\n",
                        path.display(),
                        key = config_name(name),
                    );
                    import.mapped.push(format!(
                        "AttestationAuthority {name}: PKIX key in {}",
                        path.display()
                    ));
                    authorities.push(name.to_owned());
                }
                Err(reason) => import.left_out.push(format!(
                    "AttestationAuthority {name} ({}): {reason}",
                    file.display()
                )),
            },
            "AdmissionAllowlist" => {
                for entry in doc["spec"]["patterns"].as_sequence().into_iter().flatten() {
                    let Some(pattern) = entry["namePattern"].as_str() else {
                        import.left_out.push(format!(
                            "AdmissionAllowlist {name}: an entry has no namePattern"
                        ));
                        continue;
                    };
                    let namespace = entry["namespace"]
                        .as_str()
                        .map(|ns| format!(", namespace = {ns:?}"))
                        .unwrap_or_default();
                    let _ = writeln!(allowlist, "  {{ pattern = {pattern:?}{namespace} }},");
                    import
                        .mapped
                        .push(format!("AdmissionAllowlist {name}: {pattern}"));
                }
            }
            "GenericAttestationPolicy" => {}
            other => import.left_out.push(format!(
                "{other} {name} ({}): not a kritis resource crigate imports",
                file.display()
            )),
        }
    }
    let mut policies = 0;
    for (file, doc) in documents {
        let (kind, name) = kind_of(doc);
        if kind != "GenericAttestationPolicy" {
            continue;
        }
        let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("default");
        let required: Vec<&str> = doc["spec"]["attestationAuthorityNames"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let missing: Vec<&&str> = required
            .iter()
            .filter(|a| !authorities.iter().any(|m| m == **a))
            .collect();
        if required.is_empty() || !missing.is_empty() {
            import.left_out.push(format!(
                "GenericAttestationPolicy {name} ({}): needs authorities {missing:?} that could not be imported",
                file.display()
            ));
            continue;
        }
        let list = required
            .iter()
            .map(|v| format!("{:?}", config_name(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let policy = config_name(&format!("{namespace}-{name}"));
        let _ = write!(
            import.config,
            "\n[[policies]]\nname = \"{policy}\"\nnamespaces = [{namespace:?}]\nmode = \"enforce\"\n\
             verifiers = [{list}]\nrequire = \"all\"\nallowlist = [\n{allowlist}]\n"
        );
        import.mapped.push(format!(
            "GenericAttestationPolicy {name}: namespace {namespace}, all of {list}"
        ));
        policies += 1;
    }
    if policies == 0 && !allowlist.is_empty() {
        // crigate keeps allowlists in policies; with none to attach them to, leave them
        // ready to paste.
        let commented: String = allowlist
            .lines()
            .map(|l| format!("#   {}\n", l.trim()))
            .collect();
        let _ = write!(
            import.config,
            "\n# No policy could be imported; the allowlist entries, for a policy of your own:\n# allowlist = [\n{commented}# ]\n"
        );
        import
            .left_out
            .push("the allowlist entries: no policy to attach them to (written commented out in config.toml)".to_owned());
    }
    Ok(import)
}

/// The PEM public key of a kritis AttestationAuthority, if it holds a usable PKIX key.
fn authority_key(doc: &Value) -> Result<String, String> {
    let data = doc["spec"]["publicKeyData"]
        .as_str()
        .ok_or("no spec.publicKeyData")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| {
            "spec.publicKeyData is not base64 (is the key material redacted?)".to_owned()
        })?;
    let text =
        String::from_utf8(bytes).map_err(|_| "spec.publicKeyData is not PEM text".to_owned())?;
    if text.contains("BEGIN PGP PUBLIC KEY BLOCK") {
        return Err(
            "PGP keys are not supported: crigate verifies cosign signatures (PKIX keys)".to_owned(),
        );
    }
    if !text.contains("-----BEGIN PUBLIC KEY-----") {
        return Err("spec.publicKeyData is not a PEM public key".to_owned());
    }
    crate::verify::cosign::TrustedKey::from_pem("kritis", text.as_bytes())
        .map_err(|e| format!("unusable key: {e}"))?;
    Ok(text)
}
