//! Ratify resources (`config.ratify.deislabs.io`) as crigate configuration.
//!
//! - `CertificateStore` (provider `inline`) and `KeyManagementProvider` (type `inline`,
//!   `contentType: certificate`; it replaces the inline CertificateStore from Ratify 1.2)
//!   hold the certificates a notation Verifier's `verificationCertStores` names. Both are
//!   kept by namespace and name, as Ratify keys them (`namespace/name`).
//! - A notation `Verifier` (`spec.type`, or the deprecated `spec.name`: `notation`, or
//!   `notaryv2` in v1alpha1) becomes a Notation configuration directory: its
//!   `trustPolicyDoc` as `trustpolicy.json`, and a trust store per store it names, filled
//!   from the certificate stores `verificationCertStores` lists for it.
//! - The `Policy` is compared with what crigate's written policy does, and every
//!   difference reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_yaml_ng::Value;

use super::{config_name, header, object_name, toml_string, write_file, Import, Resource};
use crate::verify::notation::trustpolicy::StoreKind;
use crate::verify::notation::NotationConfig;

/// The artifact type of Notation signatures, the one a notation Verifier's
/// `artifactTypes` names when it names none.
const NOTATION_SIGNATURE: &str = "application/vnd.cncf.notary.signature";

/// The only v1beta1 Policy Ratify applies: "Ratify would only accept a policy setting
/// `metadata.name` as `ratify-policy`" (Ratify docs/reference/crds/policies.md).
const RATIFY_POLICY_NAME: &str = "ratify-policy";

/// Whether a Ratify kind has no namespace (its CRD's scope); the `Namespaced` kinds and
/// `CertificateStore` have one.
pub(super) fn cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Verifier" | "Store" | "Policy" | "KeyManagementProvider"
    )
}

/// Imports the Ratify `resources` into `out`. `ratify_namespace` is where Ratify runs.
///
/// # Errors
///
/// A file cannot be written.
pub(super) fn import(
    resources: &[Resource],
    out: &Path,
    ratify_namespace: &str,
) -> anyhow::Result<Import> {
    let mut import = Import {
        config: header("ratify"),
        ..Import::default()
    };
    let stores = Stores::read(resources, ratify_namespace, &mut import);
    let mut verifiers: Vec<Imported> = Vec::new();
    let mut policies: Vec<&Resource> = Vec::new();
    for resource in resources {
        let Resource { file, name, .. } = resource;
        match resource.kind.as_str() {
            "CertificateStore" | "KeyManagementProvider" | "NamespacedKeyManagementProvider" => {}
            "Store" => {
                let spec = &resource.value["spec"];
                let store = spec_type(spec);
                // `kubectl get -o yaml` prints an empty `parameters: {}`.
                let parameters = spec
                    .get("parameters")
                    .is_some_and(|p| !p.is_null() && p.as_mapping().is_none_or(|m| !m.is_empty()));
                if store == "oras" && !parameters {
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
                let spec = &resource.value["spec"];
                // v1alpha1 called the notation verifier `notaryv2`.
                let verifier = spec_type(spec);
                if !matches!(verifier, "notation" | "notaryv2") {
                    import.left_out.push(format!(
                        "Verifier {name} ({}): {verifier:?} verifiers are not imported; configure a \
                         [verifiers.<name>] kind = \"cosign\" section",
                        file.display()
                    ));
                    continue;
                }
                let key = config_name(name);
                // Ratify pkg/verifier/notation/notation.go: `strings.Split(artifactTypes,
                // ",")`, entries kept as written, spaces and all; `CanVerify` takes an entry
                // equal to the artifact type, or `*`.
                let listed: Vec<&str> = spec
                    .get("artifactTypes")
                    .and_then(Value::as_str)
                    .map(|types| types.split(',').collect())
                    .unwrap_or_default();
                for spaced in listed.iter().filter(|t| t.trim() != **t) {
                    import.left_out.push(format!(
                        "Verifier {name} ({}): artifactTypes entry {spaced:?} has spaces around \
                         it, which Ratify keeps (it splits the list at commas without trimming), \
                         so no artifact type ever matches it",
                        file.display()
                    ));
                }
                let artifact_types: Vec<String> = if listed.iter().all(|t| t.is_empty()) {
                    vec![NOTATION_SIGNATURE.to_owned()]
                } else {
                    listed
                        .iter()
                        .filter(|t| !t.is_empty() && t.trim() == **t)
                        .map(|t| (*t).to_owned())
                        .collect()
                };
                // Ratify applies a verifier only to the artifacts its types name: one that
                // names no Notation signature trusts none, and crigate's would.
                if !artifact_types
                    .iter()
                    .any(|t| t == NOTATION_SIGNATURE || t == "*")
                {
                    import.left_out.push(format!(
                        "Verifier {name} ({}): artifactTypes {artifact_types:?} does not name \
                         {NOTATION_SIGNATURE} or *, so Ratify verifies no Notation signature with \
                         it; not imported",
                        file.display()
                    ));
                    continue;
                }
                if artifact_types.iter().any(|t| t == "*") {
                    import.left_out.push(format!(
                        "Verifier {name} ({}): artifactTypes *: Ratify verifies every artifact \
                         attached to an image with it, not only Notation signatures (an SBOM, \
                         say, which fails as a signature, and its Policy then counts the \
                         failure); crigate verifies Notation signatures only",
                        file.display()
                    ));
                }
                // Ratify's getCertStoreNamespace: the Verifier's own namespace, else the
                // one Ratify runs in. A Verifier is cluster-scoped (the CRD's scope), so
                // Kubernetes keeps no namespace for it, whatever its file says: members
                // are looked up where Ratify runs.
                let namespace = ratify_namespace;
                if let Some(written) = resource.namespace.as_deref().filter(|n| *n != namespace) {
                    import.left_out.push(format!(
                        "Verifier {name} ({}): metadata.namespace {written} is not kept for this \
                         cluster-scoped kind; its certificate stores are looked up in {namespace}, \
                         where Ratify runs (--ratify-namespace), as Ratify looks them up",
                        file.display()
                    ));
                }
                let plan = match notation_files(resource, &stores, namespace) {
                    Ok(plan) => plan,
                    Err(reason) => {
                        import
                            .left_out
                            .push(format!("Verifier {name} ({}): {reason}", file.display()));
                        continue;
                    }
                };
                let dir = match install(out, name, &plan.files)? {
                    Ok(dir) => dir,
                    Err(reason) => {
                        import
                            .left_out
                            .push(format!("Verifier {name} ({}): {reason}", file.display()));
                        continue;
                    }
                };
                let _ = write!(
                    import.config,
                    "\n[verifiers.{key}]\nkind = \"notation\"\ndir = {}\n",
                    toml_string(&dir.display().to_string())
                );
                import.mapped.push(format!(
                    "Verifier {name} (notation): [verifiers.{key}], trust policy and trust stores in {}",
                    dir.display()
                ));
                for why in &plan.dropped {
                    import
                        .left_out
                        .push(format!("Verifier {name} ({}): {why}", file.display()));
                }
                for statement in &plan.skipped {
                    import.left_out.push(format!(
                        "Verifier {name} ({}): trust policy {statement:?} has signatureVerification level \
                         \"skip\": Ratify denies an image with no signature whatever the level, crigate's \
                         skip admits it unverified",
                        file.display()
                    ));
                }
                verifiers.push(Imported {
                    name: name.clone(),
                    key,
                    artifact_types,
                });
            }
            "Policy" => policies.push(resource),
            // Ratify 1.2's multi-tenancy kinds apply in their own namespace only.
            other if other.starts_with("Namespaced") => import.left_out.push(format!(
                "{other} {name} ({}): applies only in its namespace, which the imported default \
                 policy does not model; not imported",
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
        return Ok(import);
    }
    let list = verifiers
        .iter()
        .map(|v| format!("{:?}", v.key))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = write!(
        import.config,
        "\n# crigate admits an image one of whose signatures a verifier trusts; the import's report\n\
         # says where Ratify's Policy differs. Where Ratify's verdicts apply, and whether they deny\n\
         # or only audit, is the Gatekeeper constraint's (its match and enforcementAction), which\n\
         # is not imported: this policy enforces in every namespace. Set mode and namespaces to\n\
         # match the constraint (AKS Image Integrity, for one, only audits).\n\
         [[policies]]\nname = \"default\"\nnamespaces = [\"*\"]\nmode = \"enforce\"\nverifiers = [{list}]\n\
         require = \"any\"\n"
    );
    import.left_out.push(
        "the Gatekeeper constraint: Ratify decides nothing alone; its constraint's match (which \
         namespaces) and enforcementAction (deny, or only warn or audit, as AKS Image Integrity \
         does) are not in these resources. The policy written enforces in every namespace: set its \
         mode and namespaces to match"
            .to_owned(),
    );
    report_shared_artifact_types(&verifiers, &mut import);
    compare_policy(&policies, &verifiers, &mut import);
    Ok(import)
}

/// Reports the imported verifiers that verify the same artifact type. Ratify verifies
/// each artifact with only the first verifier whose `CanVerify` takes it
/// (pkg/executor/core/executor.go, `verifyReference`, which stops at the first), and its
/// verifiers come from a map, in no fixed order: one of their trust policies judges a
/// signature, which one may change from one start of Ratify to the next. crigate's
/// policy is `any` of them: a signature any of them trusts is trusted.
fn report_shared_artifact_types(verifiers: &[Imported], import: &mut Import) {
    let verifies = |v: &Imported, t: &str| v.artifact_types.iter().any(|a| a == t || a == "*");
    // Every imported verifier verifies Notation signatures, by name or by `*`.
    let types: BTreeSet<&str> = verifiers
        .iter()
        .flat_map(|v| v.artifact_types.iter().map(String::as_str))
        .filter(|t| *t != "*")
        .chain([NOTATION_SIGNATURE])
        .collect();
    // The verifiers that share types, and the types they share.
    let mut shared: BTreeMap<Vec<&str>, Vec<&str>> = BTreeMap::new();
    for artifact_type in types {
        let names: Vec<&str> = verifiers
            .iter()
            .filter(|v| verifies(v, artifact_type))
            .map(|v| v.name.as_str())
            .collect();
        if names.len() > 1 {
            shared.entry(names).or_default().push(artifact_type);
        }
    }
    for (names, types) in shared {
        import.left_out.push(format!(
            "Verifiers {} all verify {} artifacts: Ratify verifies each with only the first of \
             them whose artifactTypes take it, in an order it does not fix, so one of their \
             trust policies judges a signature, and which one can change when Ratify restarts; \
             crigate trusts a signature any of them trusts",
            names.join(", "),
            types.join(", ")
        ));
    }
}

/// What a Verifier or Store is: Ratify v1beta1 names it in `spec.type`, and in `spec.name`
/// before that field was deprecated (api/v1beta1/verifier_types.go).
fn spec_type(spec: &Value) -> &str {
    spec.get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .or_else(|| spec.get("name").and_then(Value::as_str))
        .unwrap_or("")
}

/// A notation Verifier that was imported: its crigate name and the artifact types Ratify
/// verifies with it, as written (`*` for all).
struct Imported {
    name: String,
    key: String,
    artifact_types: Vec<String>,
}

/// The certificates of an inline CertificateStore or KeyManagementProvider.
struct Store {
    pem: String,
    /// `Kind namespace/name (file)`, for messages.
    source: String,
    /// What the report says when the store is used.
    mapped: String,
    key_management_provider: bool,
}

/// What one `namespace/name` holds.
enum Slot {
    One(Store),
    /// Two resources of one kind under one name: which one a cluster holds depends on
    /// which was applied last.
    Twice(String, String),
}

/// The certificate stores a Verifier's `verificationCertStores` may name, by namespace
/// and name.
#[derive(Default)]
struct Stores {
    slots: BTreeMap<(String, String), Slot>,
}

// === impl Stores ===

impl Stores {
    /// Reads the inline CertificateStores and KeyManagementProviders of `resources`,
    /// reporting each in `import`. A store without `metadata.namespace` is taken to be in
    /// `ratify_namespace`, the one place a member without a namespace finds it (the AKS
    /// documentation's resources rely on this).
    fn read(resources: &[Resource], ratify_namespace: &str, import: &mut Import) -> Self {
        let mut stores = Self::default();
        for resource in resources {
            let Resource {
                file, name, value, ..
            } = resource;
            let kind = resource.kind.as_str();
            let key_management_provider = match kind {
                "CertificateStore" => false,
                "KeyManagementProvider" => true,
                // Ratify keymanagementprovider `hasAccessToProvider`: a namespaced provider
                // serves verifications in its own namespace only, never a cluster-wide
                // Verifier, the one kind imported.
                "NamespacedKeyManagementProvider" => {
                    import.left_out.push(format!(
                        "{kind} {}/{name} ({}): Ratify lets only its own namespace's \
                         verifications use it, and no cluster-wide Verifier; NamespacedVerifiers \
                         are not imported",
                        resource.namespace.as_deref().unwrap_or(ratify_namespace),
                        file.display()
                    ));
                    continue;
                }
                _ => continue,
            };
            // A KeyManagementProvider is cluster-scoped: Ratify names it by its name alone,
            // which a member without a namespace reaches here in Ratify's namespace.
            let namespace = if key_management_provider {
                if let Some(written) = resource
                    .namespace
                    .as_deref()
                    .filter(|n| *n != ratify_namespace)
                {
                    import.left_out.push(format!(
                        "{kind} {name} ({}): metadata.namespace {written} is not kept for this \
                         cluster-scoped kind; Ratify names it by its name alone, as a member \
                         without a namespace does here ({ratify_namespace}/{name} would not \
                         find it)",
                        file.display()
                    ));
                }
                ratify_namespace
            } else {
                resource.namespace.as_deref().unwrap_or(ratify_namespace)
            };
            match store_certificates(value, key_management_provider) {
                Ok(pem) => {
                    let placed = if resource.namespace.is_some() || key_management_provider {
                        String::new()
                    } else {
                        format!(
                            "; without metadata.namespace, taken to be in {namespace}, Ratify's \
                             namespace: --ratify-namespace"
                        )
                    };
                    let store = Store {
                        pem: pem.to_owned(),
                        source: format!("{kind} {namespace}/{name} ({})", file.display()),
                        mapped: format!("{kind} {namespace}/{name} (inline certificates{placed})"),
                        key_management_provider,
                    };
                    stores.insert(namespace, name, store, import);
                }
                Err(reason) => import.left_out.push(format!(
                    "{kind} {namespace}/{name} ({}): {reason}",
                    file.display()
                )),
            }
        }
        for slot in stores.slots.values() {
            match slot {
                Slot::One(store) => import.mapped.push(store.mapped.clone()),
                Slot::Twice(first, second) => import.left_out.push(format!(
                    "{second}: {first} has the same namespace and name; a cluster holds the one \
                     applied last, so neither is used"
                )),
            }
        }
        stores
    }

    fn insert(&mut self, namespace: &str, name: &str, store: Store, import: &mut Import) {
        let key = (namespace.to_owned(), name.to_owned());
        let Some(slot) = self.slots.get_mut(&key) else {
            self.slots.insert(key, Slot::One(store));
            return;
        };
        match slot {
            Slot::One(old) if old.key_management_provider != store.key_management_provider => {
                // Ratify notation verifier docs (1.2): "Ratify is configured to prefer KMP
                // resources when a matching CertificateStore with same name is found."
                let unused = if store.key_management_provider {
                    std::mem::replace(old, store)
                } else {
                    store
                };
                import.left_out.push(format!(
                    "{}: not used, Ratify prefers the KeyManagementProvider of the same namespace \
                     and name",
                    unused.source
                ));
            }
            Slot::One(old) => {
                let first = old.source.clone();
                *slot = Slot::Twice(first, store.source);
            }
            Slot::Twice(..) => {}
        }
    }

    /// The store a `verificationCertStores` member names, and its `namespace/name`. A
    /// member without a namespace names the store in `namespace` (Ratify's
    /// appendNamespaceToCertStore, pkg/verifier/notation/notation.go).
    fn resolve(&self, member: &str, namespace: &str) -> Result<(&Store, String, String), String> {
        let (ns, name) = member.split_once('/').unwrap_or((namespace, member));
        if object_name(ns, 63, false).is_err() || object_name(name, 253, true).is_err() {
            return Err(format!(
                "certificate store {member:?} is not NAME or NAMESPACE/NAME of a Kubernetes object"
            ));
        }
        match self.slots.get(&(ns.to_owned(), name.to_owned())) {
            Some(Slot::One(store)) => Ok((store, ns.to_owned(), name.to_owned())),
            Some(Slot::Twice(first, second)) => Err(format!(
                "certificate store {ns}/{name} is defined twice ({first}; {second}): keep one"
            )),
            None => {
                let elsewhere: Vec<&str> = self
                    .slots
                    .keys()
                    .filter(|(_, n)| n == name)
                    .map(|(n, _)| n.as_str())
                    .collect();
                Err(match elsewhere.as_slice() {
                    _ if member.contains('/') || elsewhere.is_empty() => format!(
                        "certificate store {ns}/{name} is not an imported inline CertificateStore or \
                         KeyManagementProvider"
                    ),
                    [other] => format!(
                        "certificate store {member:?} names {ns}/{name} (Ratify looks a member without \
                         a namespace up in the namespace it runs in, --ratify-namespace), but {name} is \
                         in namespace {other}: write {other}/{name}, or pass --ratify-namespace {other} \
                         if Ratify runs there"
                    ),
                    several => format!(
                        "certificate store {member:?} is ambiguous: stores named {name} are in \
                         namespaces {}, none in {ns}, where Ratify looks a member without a namespace \
                         up: write NAMESPACE/{name}",
                        several.join(", ")
                    ),
                })
            }
        }
    }
}

/// The PEM certificates of an inline CertificateStore or KeyManagementProvider, or why it
/// holds none crigate can use.
fn store_certificates(value: &Value, key_management_provider: bool) -> Result<&str, String> {
    let parameters = &value["spec"]["parameters"];
    let certificate = parameters["value"]
        .as_str()
        .filter(|p| p.contains("-----BEGIN CERTIFICATE-----"));
    if key_management_provider {
        // Ratify docs, "Key Management Provider": an inline provider holds one
        // `contentType: key` or `certificate` in `value`.
        let provider = value["spec"]["type"].as_str().unwrap_or("");
        let content = parameters["contentType"].as_str().unwrap_or("");
        return match (provider, content, certificate) {
            ("inline", "certificate", Some(pem)) => Ok(pem),
            ("inline", "certificate", None) => {
                Err("parameters.value holds no PEM certificate".to_owned())
            }
            ("inline", "key", _) => Err(
                "it holds a key (contentType key): Notation verifies with certificates, and Ratify \
                 cosign verifiers are not imported"
                    .to_owned(),
            ),
            ("inline", content, _) => Err(format!(
                "contentType {content:?} is not certificate or key"
            )),
            (provider, _, _) => Err(format!(
                "type {provider:?} is not supported; export its certificates into a Notation trust \
                 store directory"
            )),
        };
    }
    // Ratify trims and lowercases the provider name (getCertificateProvider).
    let provider = value["spec"]["provider"]
        .as_str()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match (provider.as_str(), certificate) {
        ("inline", Some(pem)) => Ok(pem),
        ("inline", None) => Err("parameters.value holds no PEM certificate".to_owned()),
        (provider, _) => Err(format!(
            "provider {provider:?} is not supported; export its certificates into a Notation trust \
             store directory"
        )),
    }
}

/// The files of a notation Verifier's Notation configuration directory, and the trust
/// policy statements whose level is `skip`.
#[derive(Debug)]
struct NotationPlan {
    /// Paths relative to the directory, and contents.
    files: Vec<(PathBuf, Vec<u8>)>,
    skipped: Vec<String>,
    /// Certificates of a store that Ratify does not trust as anchors, left out, each as
    /// `store: subject (why)`.
    dropped: Vec<String>,
}

/// Plans the Notation configuration directory of a notation Verifier. Nothing is
/// written: a Verifier that is refused leaves no file behind.
fn notation_files(
    verifier: &Resource,
    stores: &Stores,
    namespace: &str,
) -> Result<NotationPlan, String> {
    let parameters = &verifier.value["spec"]["parameters"];
    let policy = parameters
        .get("trustPolicyDoc")
        .ok_or("no trustPolicyDoc in parameters")?;
    // The trust stores the statements name, by type and name (`ca:certs`).
    let mut referenced: BTreeSet<(String, String)> = BTreeSet::new();
    let mut skipped = Vec::new();
    let mut dropped = Vec::new();
    for statement in policy["trustPolicies"].as_sequence().into_iter().flatten() {
        if statement["signatureVerification"]["level"].as_str() == Some("skip") {
            skipped.push(statement["name"].as_str().unwrap_or("").to_owned());
        }
        for store in statement["trustStores"].as_sequence().into_iter().flatten() {
            let store = store
                .as_str()
                .ok_or("a trustStores entry is not a string")?;
            let (kind, name) = store
                .split_once(':')
                .ok_or_else(|| format!("trust store {store:?} is not TYPE:NAME"))?;
            store_type(kind)?;
            store_name(name)?;
            referenced.insert((kind.to_owned(), name.to_owned()));
        }
    }
    let members = cert_store_members(parameters, &referenced)?;
    let json = serde_json::to_vec_pretty(policy).map_err(|e| format!("trustPolicyDoc: {e}"))?;
    let mut files = vec![(PathBuf::from("trustpolicy.json"), json)];
    for (kind, name) in &referenced {
        let listed = members
            .get(&(kind.clone(), name.clone()))
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                format!(
                    "the trust policy names trust store {kind}:{name}, which verificationCertStores \
                     does not fill"
                )
            })?;
        for member in listed {
            let (store, ns, store_name) = stores.resolve(member, namespace)?;
            let (pem, left) = anchors_only(&store.pem, store_type(kind)?);
            if pem.is_empty() {
                return Err(format!(
                    "certificate store {ns}/{store_name} holds no certificate a {kind} trust \
                     store can anchor in: {}",
                    left.join("; ")
                ));
            }
            dropped.extend(
                left.into_iter()
                    .map(|why| format!("{kind}:{name} {ns}/{store_name}: {why}")),
            );
            // A namespace holds no `_`, so distinct stores get distinct files.
            files.push((
                Path::new("truststore/x509")
                    .join(kind)
                    .join(name)
                    .join(format!("{ns}_{store_name}.pem")),
                pem.into_bytes(),
            ));
        }
    }
    Ok(NotationPlan {
        files,
        skipped,
        dropped,
    })
}

/// The certificates of `pem` that a trust store of type `kind` anchors in, as PEM, and
/// why each other one is left out. Ratify hands notation only CA certificates and
/// self-signed ones (its trust store's `filterValidCerts`), so a leaf pasted into a
/// store with its chain is passed over there; notation's own trust store also holds a
/// `tsa` store to self-signed root CAs (`isRootCACertificate`), which a Notation
/// directory is read by. A block that does not parse is left out the same way.
fn anchors_only(pem: &str, kind: StoreKind) -> (String, Vec<String>) {
    use crate::verify::notation::chain::Cert;
    use crate::verify::notation::truststore::{anchor_refusal, NotAnAnchor};
    let mut kept = String::new();
    let mut dropped = Vec::new();
    let blocks = match pem::parse_many(pem) {
        Ok(blocks) => blocks,
        Err(error) => return (String::new(), vec![format!("not PEM: {error}")]),
    };
    for block in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
        let cert = match Cert::from_der(block.contents()) {
            Ok(cert) => cert,
            Err(error) => {
                dropped.push(format!("a certificate that does not parse ({error})"));
                continue;
            }
        };
        let why = anchor_refusal(kind, &cert).map(|refusal| match refusal {
            NotAnAnchor::NotARoot => "not a self-signed root CA, as a tsa store needs",
            NotAnAnchor::Neither => "neither a CA nor self-signed, which Ratify passes over",
        });
        match why {
            Some(why) => dropped.push(format!("{} left out: {why}", cert.subject())),
            None => kept.push_str(&pem::encode_config(
                block,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )),
        }
    }
    if dropped.is_empty() {
        // The store's own text, comments and all, when every certificate stays.
        return (pem.to_owned(), dropped);
    }
    (kept, dropped)
}

/// The certificate store names `verificationCertStores` lists for each trust store the
/// policy names, by type and name. Two forms (Ratify pkg/verifier/notation
/// certstoresbytype.go): grouped by trust store type, `{ca: {ca-certs: [store, ...]},
/// tsa: {...}}` (Ratify 1.2+), or the earlier flat `{certs: [store, ...]}`, which Ratify
/// 1.2+ reads as `ca` stores only (`normalizeVerificationCertsStores`: "normalize
/// <store>:<certs> to ca:<store><certs>"). A policy that names a flat store under
/// another type (`signingAuthority:certs`, `tsa:certs`) gets no certificates from Ratify
/// there, and is refused here rather than given them.
fn cert_store_members(
    parameters: &Value,
    referenced: &BTreeSet<(String, String)>,
) -> Result<BTreeMap<(String, String), Vec<String>>, String> {
    let cert_stores = parameters["verificationCertStores"]
        .as_mapping()
        .ok_or("no verificationCertStores in parameters")?;
    let grouped = cert_stores.values().filter(|v| v.is_mapping()).count();
    if grouped != 0 && grouped != cert_stores.len() {
        return Err(
            "verificationCertStores mixes the grouped form (TYPE: {STORE: [...]}) and the \
                    flat form (STORE: [...])"
                .to_owned(),
        );
    }
    let mut members: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (key, value) in cert_stores {
        let key = key
            .as_str()
            .ok_or("a verificationCertStores key is not a string")?;
        if let Some(named) = value.as_mapping() {
            store_type(key)?;
            for (name, list) in named {
                let name = name
                    .as_str()
                    .ok_or("a verificationCertStores trust store name is not a string")?;
                store_name(name)?;
                members
                    .entry((key.to_owned(), name.to_owned()))
                    .or_default()
                    .extend(store_list(list)?);
            }
        } else {
            store_name(key)?;
            let list = store_list(value)?;
            if let Some((kind, _)) = referenced
                .iter()
                .find(|(kind, name)| name == key && kind != "ca")
            {
                return Err(format!(
                    "the trust policy names trust store {kind}:{key}, but the flat \
                     verificationCertStores form fills {key} as a ca store only, as Ratify \
                     reads it (group it by type, {kind}: {{{key}: [...]}}, to fill it)"
                ));
            }
            members
                .entry(("ca".to_owned(), key.to_owned()))
                .or_default()
                .extend(list);
        }
    }
    Ok(members)
}

/// The certificate store names of one trust store in `verificationCertStores`.
fn store_list(list: &Value) -> Result<Vec<String>, String> {
    list.as_sequence()
        .ok_or("a verificationCertStores trust store is not a list of certificate stores")?
        .iter()
        .map(|m| {
            m.as_str()
                .map(str::to_owned)
                .ok_or_else(|| "a certificate store name is not a string".to_owned())
        })
        .collect()
}

/// Checks a Notation trust store type, which is a directory under `truststore/x509/`.
fn store_type(kind: &str) -> Result<StoreKind, String> {
    StoreKind::from_dir_name(kind)
        .ok_or_else(|| format!("trust store type {kind:?} is not ca, signingAuthority or tsa"))
}

/// Checks a Notation trust store name: letters, digits, `_`, `.` and `-`, and not a
/// directory's own or parent's name (notation-go `IsValidFileName`), so the store is a
/// directory under its type's.
fn store_name(name: &str) -> Result<(), String> {
    if crate::verify::notation::trustpolicy::is_store_name(name) {
        Ok(())
    } else {
        Err(format!(
            "trust store name {name:?} may hold only letters, digits, '_', '.' and '-'"
        ))
    }
}

/// Writes a Notation configuration directory `out/notation/<name>` and loads it as the
/// daemon will. One crigate cannot load is removed again, and the reason returned: no
/// file of a refused verifier stays.
///
/// # Errors
///
/// A file cannot be written or removed.
fn install(
    out: &Path,
    name: &str,
    files: &[(PathBuf, Vec<u8>)],
) -> anyhow::Result<Result<PathBuf, String>> {
    let dir = out.join("notation").join(name);
    for (path, bytes) in files {
        write_file(&dir.join(path), bytes)?;
    }
    match NotationConfig::load(&dir) {
        Ok(_) => Ok(Ok(dir)),
        Err(error) => {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
            Ok(Err(format!(
                "crigate cannot use the result, so none of it was kept: {:#}",
                anyhow::Error::new(error)
            )))
        }
    }
}

/// Reports how Ratify's Policy decides otherwise than crigate's written policy, which
/// admits an image one of whose signatures a verifier trusts.
fn compare_policy(policies: &[&Resource], verifiers: &[Imported], import: &mut Import) {
    let mut effective: Option<&Resource> = None;
    for policy in policies {
        let Resource { file, name, .. } = policy;
        let v1beta1 = policy.value["apiVersion"]
            .as_str()
            .is_some_and(|v| v.ends_with("/v1beta1"));
        if v1beta1 && name != RATIFY_POLICY_NAME {
            import.left_out.push(format!(
                "Policy {name} ({}): Ratify applies only the Policy named {RATIFY_POLICY_NAME}, so \
                 this one is not in effect and was not read",
                file.display()
            ));
            continue;
        }
        if let Some(first) = effective {
            import.left_out.push(format!(
                "Policy {name} ({}): Ratify applies one Policy; {} was read first",
                file.display(),
                first.name
            ));
            continue;
        }
        effective = Some(policy);
    }
    let artifact_types: BTreeSet<&str> = verifiers
        .iter()
        .flat_map(|v| v.artifact_types.iter().map(String::as_str))
        // A `*` verifier's Notation signatures are what crigate verifies.
        .map(|t| if t == "*" { NOTATION_SIGNATURE } else { t })
        .collect();
    let all_differs =
        "Ratify denies an image one of whose signatures fails verification (say, one \
                       trusted and one untrusted Notation signature); crigate has no such rule and \
                       admits an image one of whose signatures verifies";
    let Some(policy) = effective else {
        // Ratify docs/reference/crds/policies.md, config-policy: "default ... The `default`
        // policy applies to unspecified artifact types" with default value "all".
        import.left_out.push(format!(
            "Ratify Policy: none given, so Ratify applies its default, config-policy with \
             artifactVerificationPolicies default \"all\": {all_differs}"
        ));
        return;
    };
    let Resource { file, name, .. } = policy;
    // v1beta1 names the policy type in spec.type; v1alpha1 in metadata.name.
    let kind = policy.value["spec"]["type"].as_str().unwrap_or(name);
    match kind {
        "config-policy" | "configpolicy" => {
            let parameters = &policy.value["spec"]["parameters"];
            // Ratify pkg/policyprovider/configpolicy: with passthroughEnabled the policy
            // decides nothing; the Gatekeeper constraint template does.
            if parameters["passthroughEnabled"].as_bool() == Some(true) {
                import.left_out.push(format!(
                    "Policy {name} ({}): passthroughEnabled leaves the decision to a Gatekeeper \
                     constraint template, which is not imported; crigate admits an image one of \
                     whose signatures verifies",
                    file.display()
                ));
            }
            let rules = &parameters["artifactVerificationPolicies"];
            // Every artifact type the policy names besides `default` is required (Ratify
            // configpolicy `OverallVerifyResult`: "all" and "any" alike need that type
            // verified); one no imported verifier checks is a requirement crigate drops.
            for required in rules
                .as_mapping()
                .into_iter()
                .flatten()
                .filter_map(|(key, _)| key.as_str())
                .filter(|key| *key != "default" && !artifact_types.contains(key))
            {
                import.left_out.push(format!(
                    "Policy {name} ({}): config-policy requires a verified {required} artifact, \
                     which no imported verifier checks; crigate does not require it",
                    file.display()
                ));
            }
            for artifact_type in artifact_types {
                // Ratify configpolicy `Create`: a `default` that is empty or absent is "all".
                let rule = match rules.get(artifact_type) {
                    Some(rule) => rule.as_str(),
                    None => match rules.get("default") {
                        None | Some(Value::Null) => Some("all"),
                        Some(Value::String(rule)) if rule.is_empty() => Some("all"),
                        Some(rule) => rule.as_str(),
                    },
                };
                // Ratify configpolicy `OverallVerifyResult` compares the rule with "any" and
                // "all" exactly: under any other, an artifact of the type never counts as
                // verified, and the image is denied.
                match rule {
                    Some("any") => import.mapped.push(format!(
                        "Policy {name} (config-policy): {artifact_type} \"any\", as crigate's policy: \
                         one verified signature suffices"
                    )),
                    Some("all") => import.left_out.push(format!(
                        "Policy {name} ({}): config-policy {artifact_type} \"all\": {all_differs}",
                        file.display()
                    )),
                    other => import.left_out.push(format!(
                        "Policy {name} ({}): config-policy rule {} for {artifact_type} is not \
                         \"any\" or \"all\" as Ratify spells them (it compares them exactly): \
                         Ratify never counts such an artifact as verified and denies the image; \
                         crigate admits an image one of whose signatures verifies",
                        file.display(),
                        other.map_or_else(|| "(not a string)".to_owned(), |r| format!("{r:?}")),
                    )),
                }
            }
        }
        "rego-policy" | "regopolicy" => import.left_out.push(format!(
            "Policy {name} ({}): Rego policies are not translated; crigate admits an image one of \
             whose signatures verifies",
            file.display()
        )),
        other => import.left_out.push(format!(
            "Policy {name} ({}): type {other:?} is not config-policy or rego-policy",
            file.display()
        )),
    }
}
