//! kritis resources (`kritis.grafeas.io`) as crigate configuration.
//!
//! - An `AttestationAuthority` with a PKIX public key becomes a cosign verifier named
//!   `<namespace>_<name>`: kritis verified attestations in Grafeas, crigate verifies cosign
//!   signatures in the registry made with the same key pair.
//! - The `GenericAttestationPolicy`s of a namespace become one policy for it. kritis looks
//!   their authorities up in the policy's own namespace (`getAttestationAuthoritiesForGAP`
//!   uses `gap.Namespace`) and admits an image that all authorities of any one of them
//!   attest (`ReviewGAP`, pkg/kritis/review/review.go).
//! - `AdmissionAllowlist` entries go into every policy's allowlist, and a
//!   GenericAttestationPolicy's `admissionAllowlistPatterns` too, limited to its namespace.
//! - An `ImageSecurityPolicy` is not imported: kritis reviews a namespace against its
//!   vulnerability requirements as well as its GAPs (pkg/kritis/admission/admission.go),
//!   and crigate enforces no vulnerability requirement, so that namespace gets no policy.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use serde_yaml_ng::Value;

use super::{
    config_name, header, namespaced_config_name, toml_string, write_file, Import, Resource,
};

/// Whether a kritis kind has no namespace. crigate applies an `AdmissionAllowlist`'s
/// entries in every namespace, so it is known by its name alone.
pub(super) fn cluster_scoped(kind: &str) -> bool {
    kind == "AdmissionAllowlist"
}

/// Imports the kritis `resources` into `out`; `repeated` are those defined more than once,
/// which are not imported, and leave their namespace without a policy.
///
/// # Errors
///
/// A file cannot be written.
pub(super) fn import(
    resources: &[Resource],
    repeated: &[Resource],
    out: &Path,
) -> anyhow::Result<Import> {
    let mut import = Import {
        config: header("kritis"),
        ..Import::default()
    };
    // (namespace, name) -> crigate verifier name.
    let mut authorities: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut allowlist = String::new();
    // Namespaces kritis also reviews against an ImageSecurityPolicy.
    let mut isp_namespaces: BTreeSet<String> = BTreeSet::new();
    for resource in resources {
        let Resource { file, name, .. } = resource;
        match resource.kind.as_str() {
            "AttestationAuthority" => {
                let (pems, unused) = match authority_keys(&resource.value) {
                    Ok(keys) => keys,
                    Err(reason) => {
                        import.left_out.push(format!(
                            "AttestationAuthority {name} ({}): {reason}",
                            file.display()
                        ));
                        continue;
                    }
                };
                let Some(namespace) = &resource.namespace else {
                    import.left_out.push(format!(
                        "AttestationAuthority {name} ({}): no metadata.namespace: kubectl applies it to \
                         the namespace of its context, which the file does not say, and kritis looks \
                         an authority up in its GenericAttestationPolicy's namespace; add \
                         metadata.namespace",
                        file.display()
                    ));
                    continue;
                };
                let key = (namespace.clone(), name.clone());
                for why in unused {
                    import.left_out.push(format!(
                        "AttestationAuthority {namespace}/{name} ({}): {why}",
                        file.display()
                    ));
                }
                let mut paths = Vec::new();
                // One key is `<name>.pub`; several go in `<name>.d/`. Every file name ends
                // in `.pub` and every directory in `.d`, so no authority's files can be
                // another's, whatever dots Kubernetes allows in their names.
                let keys = out.join("keys").join(namespace);
                for (index, pem) in pems.iter().enumerate() {
                    let path = match pems.len() {
                        1 => keys.join(format!("{name}.pub")),
                        _ => keys.join(format!("{name}.d")).join(format!("{index}.pub")),
                    };
                    write_file(&path, pem.as_bytes())?;
                    paths.push(path.display().to_string());
                }
                let verifier = namespaced_config_name(namespace, name);
                let keys: Vec<String> = paths.iter().map(|p| toml_string(p)).collect();
                let _ = write!(
                    import.config,
                    "\n# kritis verified attestations in Grafeas; crigate verifies cosign signatures in the\n\
                     # registry made with this key pair.\n[verifiers.{verifier}]\nkind = \"cosign\"\n\
                     keys = [{}]\nrequire_tlog = false\n",
                    keys.join(", "),
                );
                import.mapped.push(format!(
                    "AttestationAuthority {namespace}/{name}: [verifiers.{verifier}], PKIX key{} in {}",
                    if paths.len() == 1 { "" } else { "s" },
                    paths.join(", ")
                ));
                authorities.insert(key, verifier);
            }
            "AdmissionAllowlist" => {
                for entry in resource.value["spec"]["patterns"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                {
                    let Some(pattern) = entry["namePattern"].as_str() else {
                        import.left_out.push(format!(
                            "AdmissionAllowlist {name}: an entry has no namePattern"
                        ));
                        continue;
                    };
                    // An entry limited to a namespace that is not a name would apply
                    // everywhere if dropped: it is left out instead.
                    let namespace = match &entry["namespace"] {
                        Value::Null => None,
                        Value::String(ns) => Some(ns.as_str()),
                        other => {
                            import.left_out.push(format!(
                                "AdmissionAllowlist {name}: namePattern {pattern:?} has a namespace \
                                 that is not a string ({other:?}), so it is not allowlisted anywhere"
                            ));
                            continue;
                        }
                    };
                    match push_allowlist_entry(&mut allowlist, pattern, namespace) {
                        Ok(()) => import
                            .mapped
                            .push(format!("AdmissionAllowlist {name}: {pattern}")),
                        Err(error) => import.left_out.push(format!(
                            "AdmissionAllowlist {name}: namePattern {pattern:?}: {error}"
                        )),
                    }
                }
            }
            "GenericAttestationPolicy" => {}
            // grafeas/kritis pkg/kritis/admission/admission.go (`reviewImages`) reviews a
            // namespace's images against its ImageSecurityPolicies as well as its GAPs,
            // and either denies: a policy from the GAPs alone would admit what the ISP's
            // vulnerability requirements deny. kritis has no cluster-scoped variant
            // (pkg/kritis/apis/kritis/v1beta1/register.go).
            "ImageSecurityPolicy" => {
                let Some(namespace) = &resource.namespace else {
                    import.left_out.push(format!(
                        "ImageSecurityPolicy {name} ({}): no metadata.namespace: kubectl applies it \
                         to the namespace of its context, which the file does not say; its \
                         vulnerability requirements are not enforced by crigate in any namespace",
                        file.display()
                    ));
                    continue;
                };
                import.left_out.push(format!(
                    "ImageSecurityPolicy {namespace}/{name} ({}): its vulnerability requirements \
                     (packageVulnerabilityRequirements) are not enforced by crigate, which verifies \
                     signatures only; kritis denies in {namespace} an image they reject, whatever a \
                     GenericAttestationPolicy admits, so {namespace} gets no policy from this import",
                    file.display()
                ));
                isp_namespaces.insert(namespace.clone());
            }
            other => import.left_out.push(format!(
                "{other} {name} ({}): not a kritis resource crigate imports",
                file.display()
            )),
        }
    }
    let mut namespaces =
        policies_by_namespace(resources, &authorities, &mut allowlist, &mut import);
    // A namespace with a GenericAttestationPolicy or ImageSecurityPolicy not imported is
    // decided over all of its policies by kritis: one from the others alone would decide
    // otherwise.
    for policy in repeated {
        if let (Some(namespace), "GenericAttestationPolicy" | "ImageSecurityPolicy") =
            (&policy.namespace, policy.kind.as_str())
        {
            incomplete(&mut namespaces, namespace);
        }
    }
    for namespace in &isp_namespaces {
        incomplete(&mut namespaces, namespace);
    }
    let mut policies = 0;
    for (namespace, Namespace { gaps, complete }) in namespaces {
        if !complete {
            if !gaps.is_empty() {
                let names = gaps.iter().map(|g| g.name.as_str()).collect::<Vec<_>>();
                import.left_out.push(format!(
                    "namespace {namespace}: no policy written, because one of the kritis policies \
                     kritis reviews it against (a GenericAttestationPolicy or an \
                     ImageSecurityPolicy) could not be imported (above); one from {} alone would \
                     not decide as kritis does: write it by hand",
                    names.join(", ")
                ));
            }
            continue;
        }
        let names = gaps.iter().map(|g| g.name.as_str()).collect::<Vec<_>>();
        let Some((verifiers, require)) = requirement(&gaps) else {
            let each = gaps
                .iter()
                .map(|g| format!("{} (all of {:?})", g.name, g.verifiers))
                .collect::<Vec<_>>()
                .join(", ");
            import.left_out.push(format!(
                "namespace {namespace}: GenericAttestationPolicies {each}: kritis admits an image that \
                 all authorities of any one of them attest, which a crigate policy (any or all of one \
                 list of verifiers) cannot state; no policy written for {namespace}, write it by hand"
            ));
            continue;
        };
        let list = verifiers
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let policy = format!(
            "{namespace}_{}",
            names
                .iter()
                .map(|n| config_name(n))
                .collect::<Vec<_>>()
                .join("_")
        );
        let _ = write!(
            import.config,
            "\n# kritis GenericAttestationPolicy {} in namespace {namespace}: kritis admits an image\n\
             # that all authorities of any one of them attest.\n\
             [[policies]]\nname = \"{policy}\"\nnamespaces = [\"{namespace}\"]\nmode = \"enforce\"\n\
             verifiers = [{list}]\nrequire = \"{require}\"\nallowlist = [\n{allowlist}]\n",
            names.join(", ")
        );
        import.mapped.push(format!(
            "GenericAttestationPolicy {} (namespace {namespace}): [[policies]] {policy}, {require} of {list}",
            names.join(", ")
        ));
        policies += 1;
    }
    if policies > 0 {
        // kritis reviews only namespaces that have a GenericAttestationPolicy or an
        // ImageSecurityPolicy: crigate denies a namespace no policy covers. Left to the operator, commented out.
        let _ = write!(
            import.config,
            "\n# kritis admits pods in namespaces without a GenericAttestationPolicy or\n\
             # ImageSecurityPolicy (grafeas/kritis pkg/kritis/admission/admission.go); crigate\n\
             # denies a namespace no policy covers. To keep kritis' behaviour there, uncomment\n\
             # (\"off\" admits and records; \"audit\" also verifies, recording what enforce would do):\n\
             # [[policies]]\n# name = \"kritis-unreviewed\"\n# namespaces = [\"*\"]\n# mode = \"off\"\n"
        );
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

/// A GenericAttestationPolicy whose authorities were all imported.
#[derive(Debug)]
struct Gap {
    name: String,
    /// The crigate verifiers of its authorities; kritis requires all of them.
    verifiers: BTreeSet<String>,
}

/// The GenericAttestationPolicies of one namespace.
#[derive(Debug)]
struct Namespace {
    /// Those whose authorities were all imported.
    gaps: Vec<Gap>,
    /// Whether all of them were: kritis decides over all of a namespace's policies, so a
    /// policy from some of them would decide otherwise.
    complete: bool,
}

/// The GenericAttestationPolicies of each namespace. Reports each policy left out.
fn policies_by_namespace(
    resources: &[Resource],
    authorities: &BTreeMap<(String, String), String>,
    allowlist: &mut String,
    import: &mut Import,
) -> BTreeMap<String, Namespace> {
    let mut namespaces: BTreeMap<String, Namespace> = BTreeMap::new();
    for resource in resources {
        if resource.kind != "GenericAttestationPolicy" {
            continue;
        }
        let Resource { file, name, .. } = resource;
        let Some(namespace) = &resource.namespace else {
            import.left_out.push(format!(
                "GenericAttestationPolicy {name} ({}): no metadata.namespace: kubectl applies it to the \
                 namespace of its context, which the file does not say; add metadata.namespace",
                file.display()
            ));
            continue;
        };
        let spec = &resource.value["spec"];
        // kritis admits an image one of its namespace's GAPs allowlists unverified
        // (`review.go`, `SplitGapAllowedImages`): an entry limited to the namespace.
        for (field, pattern) in gap_allowlist(spec, &format!("{namespace}/{name}"), import) {
            // kritis reads only a trailing `*` as a wildcard; crigate's patterns read one
            // inside a name too, which would admit more than kritis does.
            let placed = if pattern.strip_suffix('*').unwrap_or(pattern).contains('*') {
                Err("kritis reads a `*` before its end literally, crigate as a wildcard".to_owned())
            } else {
                push_allowlist_entry(allowlist, pattern, Some(namespace))
            };
            match placed {
                Ok(()) => import.mapped.push(format!(
                    "GenericAttestationPolicy {namespace}/{name}: {pattern} allowlisted in \
                     {namespace}"
                )),
                Err(why) => import.left_out.push(format!(
                    "GenericAttestationPolicy {namespace}/{name}: spec.{field} namePattern \
                     {pattern:?} is not imported: {why}"
                )),
            }
        }
        let named = spec["attestationAuthorityNames"].as_sequence();
        let required: Vec<&str> = named
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // A name YAML read as another type (`2024`, `true`) would otherwise be dropped, and
        // the policy require fewer authorities than kritis does.
        if let Some(other) = named.into_iter().flatten().find(|n| n.as_str().is_none()) {
            import.left_out.push(format!(
                "GenericAttestationPolicy {namespace}/{name} ({}): attestationAuthorityNames \
                 holds {other:?}, which is not a string (quote it)",
                file.display()
            ));
            incomplete(&mut namespaces, namespace);
            continue;
        }
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|a| !authorities.contains_key(&(namespace.clone(), (*a).to_owned())))
            .collect();
        let entry = namespaces
            .entry(namespace.clone())
            .or_insert_with(|| Namespace {
                gaps: Vec::new(),
                complete: true,
            });
        if required.is_empty() || !missing.is_empty() {
            import.left_out.push(if required.is_empty() {
                format!(
                    "GenericAttestationPolicy {namespace}/{name} ({}): names no attestationAuthorityNames",
                    file.display()
                )
            } else {
                format!(
                    "GenericAttestationPolicy {namespace}/{name} ({}): needs authorities {missing:?} in \
                     namespace {namespace} (kritis looks them up in the policy's namespace), which could \
                     not be imported",
                    file.display()
                )
            });
            entry.complete = false;
            continue;
        }
        entry.gaps.push(Gap {
            name: name.clone(),
            verifiers: required
                .iter()
                .filter_map(|a| authorities.get(&(namespace.clone(), (*a).to_owned())))
                .cloned()
                .collect(),
        });
    }
    namespaces
}

/// The field of a GenericAttestationPolicy's allowlist before kritis renamed whitelist to
/// allowlist, and after (grafeas/kritis pkg/kritis/apis/kritis/v1beta1/genericattestation.go:
/// `AdmissionWhitelistPatterns`, then `AdmissionAllowlistPatterns`).
const GAP_FIELDS: [(&str, &str); 2] = [
    (
        "admissionWhitelistPatterns",
        "kritis before the rename of whitelist to allowlist",
    ),
    (
        "admissionAllowlistPatterns",
        "kritis since the rename of whitelist to allowlist",
    ),
];

/// The `namePattern`s of the allowlist of the GenericAttestationPolicy `title`, each with
/// the field it is in; reports in `import` each entry left out. A kritis version reads one
/// of the two fields ([`GAP_FIELDS`]) and ignores the other: of a GAP that has both, only
/// the patterns both name are returned, which every kritis version allowlists, and the
/// others are reported.
fn gap_allowlist<'a>(
    spec: &'a Value,
    title: &str,
    import: &mut Import,
) -> Vec<(&'static str, &'a str)> {
    let mut fields: Vec<(&'static str, &'static str, Vec<&'a str>)> = Vec::new();
    for (field, reader) in GAP_FIELDS {
        let Some(entries) = spec.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let mut patterns = Vec::new();
        for entry in entries.as_sequence().into_iter().flatten() {
            match entry["namePattern"].as_str() {
                Some(pattern) => patterns.push(pattern),
                None => import.left_out.push(format!(
                    "GenericAttestationPolicy {title}: a spec.{field} entry has no namePattern"
                )),
            }
        }
        fields.push((field, reader, patterns));
    }
    match fields.as_slice() {
        [] => Vec::new(),
        [(field, _, patterns)] => patterns.iter().map(|p| (*field, *p)).collect(),
        [.., (field, _, _)] => {
            let mut both = Vec::new();
            for (index, (only, reader, patterns)) in fields.iter().enumerate() {
                for pattern in patterns {
                    let elsewhere = fields
                        .iter()
                        .enumerate()
                        .all(|(other, (_, _, theirs))| other == index || theirs.contains(pattern));
                    if !elsewhere {
                        import.left_out.push(format!(
                            "GenericAttestationPolicy {title}: namePattern {pattern:?} is only in \
                             spec.{only}, which only {reader} reads; the GAP has both \
                             spec.admissionWhitelistPatterns and spec.admissionAllowlistPatterns, \
                             so only the patterns both name are allowlisted"
                        ));
                    } else if index == 0 && !both.iter().any(|(_, p)| p == pattern) {
                        both.push((*field, *pattern));
                    }
                }
            }
            both
        }
    }
}

/// Marks `namespace` as holding a GenericAttestationPolicy that was not imported.
fn incomplete(namespaces: &mut BTreeMap<String, Namespace>, namespace: &str) {
    namespaces
        .entry(namespace.to_owned())
        .or_insert_with(|| Namespace {
            gaps: Vec::new(),
            complete: false,
        })
        .complete = false;
}

/// The verifiers and `require` of one crigate policy deciding as kritis decides over
/// `gaps`: an image is admitted when all authorities of any one GAP attest it. That is one
/// list's "all" when a single GAP's set is contained in every other's (it alone decides),
/// or "any" when each GAP that matters has one authority; otherwise `None`.
fn requirement(gaps: &[Gap]) -> Option<(BTreeSet<String>, &'static str)> {
    // A GAP whose authorities include all of another's admits nothing the other does not.
    let mut minimal: Vec<&BTreeSet<String>> = Vec::new();
    for gap in gaps {
        let set = &gap.verifiers;
        let redundant = gaps
            .iter()
            .any(|other| other.verifiers.is_subset(set) && other.verifiers != *set);
        if !redundant && !minimal.contains(&set) {
            minimal.push(set);
        }
    }
    match minimal.as_slice() {
        [only] => Some(((*only).clone(), "all")),
        sets if sets.iter().all(|s| s.len() == 1) => {
            Some((sets.iter().flat_map(|s| s.iter().cloned()).collect(), "any"))
        }
        _ => None,
    }
}

/// The PEM public key of a kritis AttestationAuthority, if it holds a usable PKIX key.
/// Appends to `allowlist` the entry for `pattern`, limited to `namespace` if given; or,
/// leaving it as it was, says why crigate cannot take the pattern (kritis allowlists
/// nothing by it either), rather than let it fail the whole configuration.
fn push_allowlist_entry(
    allowlist: &mut String,
    pattern: &str,
    namespace: Option<&str>,
) -> Result<(), String> {
    pattern
        .parse::<crate::policy::allowlist::NamePattern>()
        .map_err(|error| error.to_string())?;
    let namespace = namespace
        .map(|ns| format!(", namespace = {}", toml_string(ns)))
        .unwrap_or_default();
    let _ = writeln!(
        allowlist,
        "  {{ pattern = {}{namespace} }},",
        toml_string(pattern)
    );
    Ok(())
}

/// The PKIX public keys of an AttestationAuthority, as PEM, and why any other key it
/// lists is not used. Two shapes: Alibaba ACK's kritis, `spec.publicKeyData` (one PEM key,
/// base64); grafeas kritis v1beta1 (`attestationauthority.go`), `spec.publicKeys`, each
/// with `keyType` and, for `PKIX`, `pkixPublicKey.publicKeyPem` (PEM text). An
/// attestation by any one of an authority's keys counts there, as a signature by any key
/// of a cosign verifier does here.
///
/// grafeas kritis pkg/kritis/review/validating_transport.go (`GetValidatedAttestations`)
/// skips a key whose `keyType` is not `PGP` or `PKIX`, or whose fields do not fit its
/// type (`validatePublicKeyType`), and keeps the keys left by `keyId`, a later key
/// replacing an earlier one with the same `keyId` (keys without one share the empty
/// `keyId`, which `url.Parse` accepts): only the keys it keeps are trusted here.
fn authority_keys(doc: &Value) -> Result<(Vec<String>, Vec<String>), String> {
    let spec = &doc["spec"];
    if spec.get("publicKeyData").is_some() || spec.get("publicKeys").is_none() {
        return authority_key(doc).map(|pem| (vec![pem], Vec::new()));
    }
    let listed = spec["publicKeys"]
        .as_sequence()
        .ok_or("spec.publicKeys is not a list")?;
    let mut unused = Vec::new();
    // The keys kritis keeps, by keyId: the index of the last with that keyId.
    let mut kept: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, key) in listed.iter().enumerate() {
        let id = key["keyId"].as_str().unwrap_or("");
        let which = format!("spec.publicKeys[{index}] {id:?}");
        let pgp = key["asciiArmoredPgpPublicKey"]
            .as_str()
            .is_some_and(|k| !k.is_empty());
        let pkix = key["pkixPublicKey"].as_mapping().is_some_and(|m| {
            m.values()
                .any(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        });
        let skipped = match key["keyType"].as_str() {
            Some("PGP") if pkix => Some("keyType PGP with a pkixPublicKey"),
            Some("PGP") if !pgp => Some("keyType PGP without an asciiArmoredPgpPublicKey"),
            Some("PKIX") if pgp => Some("keyType PKIX with an asciiArmoredPgpPublicKey"),
            Some("PKIX") if !pkix => Some("keyType PKIX without a pkixPublicKey"),
            Some("PGP" | "PKIX") => None,
            None => Some("no keyType"),
            Some(_) => Some("a keyType other than PGP or PKIX"),
        };
        if let Some(why) = skipped {
            unused.push(format!(
                "{which}: {why}: kritis skips the key (validatePublicKeyType), so it is not trusted"
            ));
            continue;
        }
        if let Some(earlier) = kept.insert(id, index) {
            unused.push(format!(
                "spec.publicKeys[{earlier}] {id:?}: spec.publicKeys[{index}] has {}, and kritis \
                 keeps only the last key of a keyId, so it is not trusted",
                if id.is_empty() {
                    "no keyId either (keys without one share the empty keyId)"
                } else {
                    "the same keyId"
                }
            ));
        }
    }
    let mut pems = Vec::new();
    let mut last: Vec<usize> = kept.into_values().collect();
    last.sort_unstable();
    for index in last {
        let Some(key) = listed.get(index) else {
            continue;
        };
        let id = key["keyId"].as_str().unwrap_or("");
        let which = format!("spec.publicKeys[{index}] {id:?}");
        if key["keyType"].as_str() == Some("PGP") {
            unused.push(format!(
                "{which}: PGP keys are not supported: crigate verifies cosign signatures (PKIX keys)"
            ));
            continue;
        }
        match key["pkixPublicKey"]["publicKeyPem"].as_str() {
            Some(pem) => match pkix_key(pem) {
                Ok(pem) => pems.push(pem),
                Err(why) => unused.push(format!("{which}: {why}")),
            },
            None => unused.push(format!(
                "{which}: keyType PKIX with no pkixPublicKey.publicKeyPem crigate can use"
            )),
        }
    }
    if pems.is_empty() {
        return Err(format!(
            "no usable PKIX key in spec.publicKeys{}",
            if unused.is_empty() {
                String::new()
            } else {
                format!(" ({})", unused.join("; "))
            }
        ));
    }
    Ok((pems, unused))
}

fn authority_key(doc: &Value) -> Result<String, String> {
    let data = doc["spec"]["publicKeyData"]
        .as_str()
        .ok_or("no spec.publicKeyData or spec.publicKeys")?;
    // kritis decodes with Go's base64.StdEncoding, which skips '\r' and '\n', so a value
    // wrapped over several lines is one key.
    let data: String = data.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| {
            "spec.publicKeyData is not base64 (is the key material redacted?)".to_owned()
        })?;
    let text =
        String::from_utf8(bytes).map_err(|_| "spec.publicKeyData is not PEM text".to_owned())?;
    pkix_key(&text).map_err(|why| why.replace("the key", "spec.publicKeyData"))
}

/// `text` if it is one PEM public key crigate verifies cosign signatures with.
fn pkix_key(text: &str) -> Result<String, String> {
    if text.contains("BEGIN PGP PUBLIC KEY BLOCK") {
        return Err(
            "PGP keys are not supported: crigate verifies cosign signatures (PKIX keys)".to_owned(),
        );
    }
    if !text.contains("-----BEGIN PUBLIC KEY-----") {
        return Err("the key is not a PEM public key".to_owned());
    }
    crate::verify::cosign::TrustedKey::from_pem("kritis", text.as_bytes())
        .map_err(|e| format!("unusable key: {e}"))?;
    Ok(text.to_owned())
}
