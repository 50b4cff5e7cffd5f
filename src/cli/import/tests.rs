use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_yaml_ng::Value;

use super::{import, Args, Import, Kind, DEFAULT_RATIFY_NAMESPACE};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name)
}

/// The "Ratify Sample" CA certificate of the AKS fixture's inline CertificateStore.
fn sample_certificate() -> String {
    let text = std::fs::read_to_string(fixture("ratify-aks-verify-config.yaml")).unwrap();
    let first = serde_yaml_ng::Deserializer::from_str(&text).next().unwrap();
    let store = <Value as serde::Deserialize>::deserialize(first).unwrap();
    store["spec"]["parameters"]["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// A test's directory (kept alive while the test runs), its output directory and the
/// result of the import.
struct Run {
    _dir: tempfile::TempDir,
    out: PathBuf,
    result: anyhow::Result<(Import, PathBuf)>,
}

impl Run {
    fn import(&self) -> &Import {
        match &self.result {
            Ok((import, _)) => import,
            Err(e) => panic!("import failed: {e:#}"),
        }
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.out.join("config.toml")).unwrap()
    }

    fn left_out(&self, fragment: &str) -> bool {
        self.import().left_out.iter().any(|l| l.contains(fragment))
    }

    fn mapped(&self, fragment: &str) -> bool {
        self.import().mapped.iter().any(|l| l.contains(fragment))
    }
}

fn run_with(kind: Kind, resources: &str, ratify_namespace: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resources.yaml");
    std::fs::write(&file, resources).unwrap();
    let out = dir.path().join("out");
    let args = Args {
        kind,
        files: vec![file],
        out: out.clone(),
        ratify_namespace: ratify_namespace.to_owned(),
    };
    let result = import(&args);
    Run {
        _dir: dir,
        out,
        result,
    }
}

fn run(kind: Kind, resources: &str) -> Run {
    run_with(kind, resources, DEFAULT_RATIFY_NAMESPACE)
}

fn certificate_store(name: &str, namespace: Option<&str>) -> String {
    let namespace = namespace
        .map(|ns| format!("  namespace: {ns}\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: config.ratify.deislabs.io/v1beta1\nkind: CertificateStore\nmetadata:\n  \
         name: {name}\n{namespace}spec:\n  provider: inline\n  parameters:\n    value: |\n{}",
        indent(&sample_certificate(), 6)
    )
}

fn key_management_provider(name: &str, kind: &str, content_type: &str) -> String {
    format!(
        "---\napiVersion: config.ratify.deislabs.io/v1beta1\nkind: KeyManagementProvider\nmetadata:\n  \
         name: {name}\nspec:\n  type: {kind}\n  parameters:\n    contentType: {content_type}\n    value: |\n{}",
        indent(&sample_certificate(), 6)
    )
}

/// A notation Verifier: `spec_type` is its `type:` or `name:` line, `cert_stores` the
/// body of `verificationCertStores` (indented by 6), `trust_stores` its trust policy's.
fn verifier(name: &str, spec_type: &str, cert_stores: &str, trust_stores: &str) -> String {
    format!(
        "---\napiVersion: config.ratify.deislabs.io/v1beta1\nkind: Verifier\nmetadata:\n  name: {name}\n\
         spec:\n  {spec_type}\n  artifactTypes: application/vnd.cncf.notary.signature\n  parameters:\n    \
         verificationCertStores:\n{cert_stores}    trustPolicyDoc:\n      version: \"1.0\"\n      \
         trustPolicies:\n        - name: default\n          registryScopes: [\"*\"]\n          \
         signatureVerification:\n            level: strict\n          trustStores: [{trust_stores}]\n          \
         trustedIdentities: [\"*\"]\n"
    )
}

/// The AKS fixture's Verifier shape: flat `certs: [members]`, trust store `ca:certs`.
fn flat_verifier(name: &str, members: &[&str]) -> String {
    let members: String = members.iter().map(|m| format!("        - {m}\n")).collect();
    verifier(
        name,
        "name: notation",
        &format!("      certs:\n{members}"),
        "\"ca:certs\"",
    )
}

const ANY_POLICY: &str =
    "---\napiVersion: config.ratify.deislabs.io/v1beta1\nkind: Policy\nmetadata:\n  \
     name: ratify-policy\nspec:\n  type: config-policy\n  parameters:\n    \
     artifactVerificationPolicies:\n      default: any\n";

// --- --out ---

#[test]
fn out_directory_holding_files_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let stale = out.join("notation/verifier-notary-inline/truststore/x509/ca/certs/old.pem");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, sample_certificate()).unwrap();
    let args = Args {
        kind: Kind::Ratify,
        files: vec![fixture("ratify-aks-verify-config.yaml")],
        out: out.clone(),
        ratify_namespace: DEFAULT_RATIFY_NAMESPACE.to_owned(),
    };
    let error = import(&args).unwrap_err().to_string();
    assert!(error.contains("is not empty"), "{error}");
    assert!(error.contains("stay trusted"), "{error}");
    assert!(stale.exists());
    assert!(!out.join("config.toml").exists());
}

#[test]
fn empty_out_directory_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let args = Args {
        kind: Kind::Ratify,
        files: vec![fixture("ratify-aks-verify-config.yaml")],
        out: dir.path().to_owned(),
        ratify_namespace: DEFAULT_RATIFY_NAMESPACE.to_owned(),
    };
    let (import, config) = import(&args).unwrap();
    assert!(config.exists());
    assert!(import.mapped.iter().any(|l| l.contains("Verifier")));
}

#[test]
fn refused_verifier_leaves_no_file() {
    // A member that names no store and a store whose "certificate" does not parse are
    // refused before writing; a trust policy crigate does not load, after loading what
    // was written.
    let broken = "---\napiVersion: config.ratify.deislabs.io/v1beta1\nkind: CertificateStore\n\
                  metadata:\n  name: broken\nspec:\n  provider: inline\n  parameters:\n    value: |\n      \
                  -----BEGIN CERTIFICATE-----\n      bm90IGEgY2VydGlmaWNhdGU=\n      -----END CERTIFICATE-----\n";
    let resources = [
        broken.to_owned(),
        certificate_store("certstore-inline", None),
        flat_verifier("missing-member", &["nowhere"]),
        flat_verifier("unreadable", &["broken"]),
        flat_verifier("unloadable", &["certstore-inline"]).replace(
            "trustedIdentities: [\"*\"]",
            "trustedIdentities: [\"CN=no prefix\"]",
        ),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(run.left_out("Verifier missing-member"));
    assert!(
        run.left_out(
            "broken holds no certificate a ca trust store can anchor in: a certificate that \
             does not parse"
        ),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("Verifier unloadable"));
    assert!(run.left_out("none of it was kept"));
    for name in ["missing-member", "unreadable", "unloadable"] {
        assert!(!run.out.join("notation").join(name).exists(), "{name}");
    }
    assert!(!run.config().contains("[verifiers."));
}

// --- kind: List ---

fn list(items: Vec<Value>) -> Value {
    let mut list = serde_yaml_ng::Mapping::new();
    list.insert("apiVersion".into(), "v1".into());
    list.insert("kind".into(), "List".into());
    list.insert("items".into(), Value::Sequence(items));
    Value::Mapping(list)
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn kubectl_list_is_read_as_its_items_nested_too() {
    let store = documents(&certificate_store("certstore-inline", None));
    let verifier = documents(&flat_verifier("from-a-list", &["certstore-inline"]));
    let nested = list(vec![list(verifier)]);
    let text =
        serde_yaml_ng::to_string(&list(store.into_iter().chain([nested]).collect())).unwrap();
    let run = run(Kind::Ratify, &text);
    assert!(
        run.mapped("Verifier from-a-list (notation)"),
        "{:?}",
        run.import()
    );
    assert!(!run.left_out("metadata.name"), "{:?}", run.import());
    assert!(run
        .out
        .join(
            "notation/from-a-list/truststore/x509/ca/certs/gatekeeper-system_certstore-inline.pem"
        )
        .exists());
}

#[test]
fn lists_nested_past_the_bound_are_reported() {
    let mut value = list(documents(&certificate_store("deep", None)));
    for _ in 0..super::MAX_LIST_DEPTH {
        value = list(vec![value]);
    }
    let run = run(Kind::Ratify, &serde_yaml_ng::to_string(&value).unwrap());
    assert!(run.left_out("nested more than"), "{:?}", run.import());
    assert!(!run.mapped("deep"));
}

// --- Verifier type, KeyManagementProvider, grouped verificationCertStores ---

#[test]
fn verifier_type_notation_and_notaryv2_name_are_notation() {
    let resources = [
        certificate_store("certstore-inline", None),
        verifier(
            "by-type",
            "type: notation",
            "      certs:\n        - certstore-inline\n",
            "\"ca:certs\"",
        ),
        verifier(
            "by-v1alpha1-name",
            "name: notaryv2",
            "      certs:\n        - certstore-inline\n",
            "\"ca:certs\"",
        ),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.mapped("Verifier by-type (notation)"),
        "{:?}",
        run.import()
    );
    assert!(run.mapped("Verifier by-v1alpha1-name (notation)"));
}

#[test]
fn inline_key_management_provider_fills_a_grouped_trust_store() {
    let resources = [
        key_management_provider("kmp-inline", "inline", "certificate"),
        key_management_provider("kmp-akv", "azurekeyvault", "certificate"),
        verifier(
            "grouped",
            "type: notation",
            "      ca:\n        ca-certs:\n          - kmp-inline\n",
            "\"ca:ca-certs\"",
        ),
        ANY_POLICY.to_owned(),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.mapped("Verifier grouped (notation)"),
        "{:?}",
        run.import()
    );
    assert!(run.mapped("KeyManagementProvider gatekeeper-system/kmp-inline"));
    assert!(run.left_out("type \"azurekeyvault\" is not supported"));
    let pem = run
        .out
        .join("notation/grouped/truststore/x509/ca/ca-certs/gatekeeper-system_kmp-inline.pem");
    assert_eq!(std::fs::read_to_string(pem).unwrap(), sample_certificate());
    assert_eq!(run.import().left_out.len(), 2, "{:?}", run.import());
    assert!(run.left_out(CONSTRAINT));
}

#[test]
fn trust_store_the_policy_names_but_nothing_fills_refuses_the_verifier() {
    // Grouped form whose type key is not a trust store name: `ca:certs` stays empty.
    let resources = [
        certificate_store("certstore-inline", None),
        verifier(
            "unfilled",
            "type: notation",
            "      ca:\n        ca-certs:\n          - certstore-inline\n",
            "\"ca:certs\"",
        ),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(run.left_out("trust store ca:certs, which verificationCertStores does not fill"));
    assert!(run.left_out("no verifier could be imported"));
    assert!(!run.out.join("notation/unfilled").exists());
}

#[test]
fn the_flat_form_fills_ca_stores_only_as_ratify_reads_it() {
    // Ratify 1.2+ files a flat `certs: [...]` under `ca`; a trust policy that also names
    // `signingAuthority:certs` or `tsa:certs` gets nothing there from Ratify, so the
    // verifier is refused rather than given those certificates as other roots.
    for other in ["signingAuthority", "tsa"] {
        let resources = [
            certificate_store("certstore-inline", None),
            verifier(
                "flat",
                "type: notation",
                "      certs:\n        - certstore-inline\n",
                &format!("\"ca:certs\", \"{other}:certs\""),
            ),
        ]
        .concat();
        let run = run(Kind::Ratify, &resources);
        assert!(
            run.left_out(&format!(
                "names trust store {other}:certs, but the flat verificationCertStores form \
                 fills certs as a ca store only"
            )),
            "{other}: {:?}",
            run.import()
        );
        assert!(!run.out.join("notation/flat").exists(), "{other}");
    }
}

#[test]
fn grouped_and_flat_forms_mixed_are_refused() {
    let resources = [
        certificate_store("certstore-inline", None),
        verifier(
            "mixed",
            "type: notation",
            "      ca:\n        certs:\n          - certstore-inline\n      certs:\n        - certstore-inline\n",
            "\"ca:certs\"",
        ),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(run.left_out("mixes the grouped form"), "{:?}", run.import());
}

// --- namespaces of certificate stores ---

#[test]
fn namespace_qualified_member_names_that_namespaces_store() {
    let resources = [
        certificate_store("certs-a", Some("security")),
        flat_verifier("qualified", &["security/certs-a"]),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.mapped("Verifier qualified (notation)"),
        "{:?}",
        run.import()
    );
    assert!(run
        .out
        .join("notation/qualified/truststore/x509/ca/certs/security_certs-a.pem")
        .exists());
}

#[test]
fn unqualified_member_is_looked_up_where_ratify_runs() {
    let resources = [
        certificate_store("certs-a", Some("security")),
        flat_verifier("unqualified", &["certs-a"]),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.left_out("write security/certs-a, or pass --ratify-namespace security"),
        "{:?}",
        run.import()
    );
    let elsewhere = run_with(Kind::Ratify, &resources, "security");
    assert!(elsewhere.mapped("Verifier unqualified (notation)"));
}

#[test]
fn same_named_stores_in_two_namespaces_make_an_unqualified_member_ambiguous() {
    let resources = [
        certificate_store("certs-a", Some("team-a")),
        certificate_store("certs-a", Some("team-b")),
        flat_verifier("ambiguous", &["certs-a"]),
        flat_verifier("exact", &["team-b/certs-a"]),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.left_out("\"certs-a\" is ambiguous"),
        "{:?}",
        run.import()
    );
    assert!(run.mapped("Verifier exact (notation)"));
    assert!(!run.out.join("notation/ambiguous").exists());
}

#[test]
fn a_verifier_is_cluster_scoped_so_its_written_namespace_does_not_place_its_members() {
    // Kubernetes keeps no namespace for a Verifier: Ratify looks its members up where it
    // runs, not in a namespace its file names.
    let resources = [
        certificate_store("certs-a", Some("gatekeeper-system")),
        certificate_store("certs-a", Some("team-a")),
        flat_verifier("v", &["certs-a"]).replace(
            "metadata:\n  name: v\n",
            "metadata:\n  name: v\n  namespace: team-a\n",
        ),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(run.mapped("Verifier v (notation)"), "{:?}", run.import());
    assert!(run.left_out("metadata.namespace team-a is not kept for this cluster-scoped kind"));
    let dir = run.out.join("notation/v/truststore/x509/ca/certs");
    assert!(dir.join("gatekeeper-system_certs-a.pem").exists());
    assert!(!dir.join("team-a_certs-a.pem").exists());
}

#[test]
fn a_key_management_provider_is_cluster_scoped_so_its_written_namespace_is_reported() {
    let resources = [
        key_management_provider("kmp-inline", "inline", "certificate").replace(
            "metadata:\n  name: kmp-inline\n",
            "metadata:\n  name: kmp-inline\n  namespace: team-a\n",
        ),
        flat_verifier("v", &["kmp-inline"]),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(run.mapped("Verifier v (notation)"), "{:?}", run.import());
    assert!(run.left_out("KeyManagementProvider kmp-inline"));
    assert!(run.left_out("metadata.namespace team-a is not kept for this cluster-scoped kind"));
}

#[test]
fn a_namespaced_key_management_provider_serves_no_cluster_verifier() {
    let resources = [
        key_management_provider("kmp-inline", "inline", "certificate").replace(
            "kind: KeyManagementProvider\nmetadata:\n",
            "kind: NamespacedKeyManagementProvider\nmetadata:\n  namespace: gatekeeper-system\n",
        ),
        flat_verifier("v", &["kmp-inline"]),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.left_out("NamespacedKeyManagementProvider gatekeeper-system/kmp-inline"),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("Ratify lets only its own namespace's verifications use it"));
    assert!(!run.out.join("notation/v").exists());
}

// --- Ratify Policy ---

#[test]
fn aks_fixture_reports_ratify_default_policy() {
    let run = run(
        Kind::Ratify,
        &std::fs::read_to_string(fixture("ratify-aks-verify-config.yaml")).unwrap(),
    );
    assert!(run.mapped("Verifier verifier-notary-inline (notation)"));
    assert_eq!(run.import().left_out.len(), 2, "{:?}", run.import());
    assert!(run.left_out("Ratify Policy: none given"));
    assert!(run.left_out("default \"all\""));
    // AKS Image Integrity only audits; what the written policy does is said.
    assert!(run.left_out(CONSTRAINT));
    assert!(run
        .config()
        .contains("namespaces = [\"*\"]\nmode = \"enforce\""));
}

/// The report line saying the Gatekeeper constraint's scope and action are not imported.
const CONSTRAINT: &str = "the Gatekeeper constraint: Ratify decides nothing alone";

#[test]
fn config_policy_any_is_what_crigate_does() {
    let resources = [
        certificate_store("certstore-inline", None),
        flat_verifier("v", &["certstore-inline"]),
        ANY_POLICY.to_owned(),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert_eq!(run.import().left_out.len(), 1, "{:?}", run.import());
    assert!(run.left_out(CONSTRAINT));
    assert!(run.mapped("Policy ratify-policy (config-policy)"));
}

/// One notation Verifier with a config-policy whose `default: any` line is `rules`.
fn run_with_policy_rules(rules: &str) -> Run {
    let resources = [
        certificate_store("certstore-inline", None),
        flat_verifier("v", &["certstore-inline"]),
        ANY_POLICY.replace("default: any", rules),
    ]
    .concat();
    run(Kind::Ratify, &resources)
}

#[test]
fn config_policy_all_for_notation_signatures_is_reported() {
    let run =
        run_with_policy_rules("\"application/vnd.cncf.notary.signature\": all\n      default: any");
    assert!(run.left_out("config-policy application/vnd.cncf.notary.signature \"all\""));
}

#[test]
fn config_policy_requirements_no_verifier_checks_and_passthrough_are_reported() {
    // Ratify requires a verified SBOM here, and with passthroughEnabled lets a Gatekeeper
    // template decide: neither is something the imported verifiers carry.
    let run = run_with_policy_rules(
        "\"application/spdx+json\": all\n      default: any\n    passthroughEnabled: true",
    );
    assert!(
        run.left_out(
            "config-policy requires a verified application/spdx+json artifact, which no \
             imported verifier checks"
        ),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("passthroughEnabled leaves the decision to a Gatekeeper"));
    assert!(run.mapped("Verifier v (notation)"));
    assert_eq!(run.import().left_out.len(), 3, "{:?}", run.import());
}

#[test]
fn skip_level_statement_is_reported() {
    let resources = [
        certificate_store("certstore-inline", None),
        flat_verifier("v", &["certstore-inline"]).replace(
            "          trustedIdentities: [\"*\"]\n",
            "          trustedIdentities: [\"*\"]\n        - name: unsigned-ok\n          \
             registryScopes: [\"registry.example/tools\"]\n          signatureVerification:\n            \
             level: skip\n",
        ),
        ANY_POLICY.to_owned(),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(run.mapped("Verifier v (notation)"), "{:?}", run.import());
    assert!(run.left_out("trust policy \"unsigned-ok\" has signatureVerification level \"skip\""));
}

// --- kritis ---

fn public_key() -> String {
    rcgen::KeyPair::generate().unwrap().public_key_pem()
}

fn authority(name: &str, namespace: Option<&str>, key: &str) -> String {
    let namespace = namespace
        .map(|ns| format!("  namespace: {ns}\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: kritis.grafeas.io/v1beta1\nkind: AttestationAuthority\nmetadata:\n  name: {name}\n\
         {namespace}spec:\n  noteReference: namespaces/{name}\n  publicKeyData: {}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn gap(name: &str, namespace: Option<&str>, authorities: &[&str]) -> String {
    let namespace = namespace
        .map(|ns| format!("  namespace: {ns}\n"))
        .unwrap_or_default();
    let names: String = authorities.iter().map(|a| format!("  - {a}\n")).collect();
    format!(
        "---\napiVersion: kritis.grafeas.io/v1beta1\nkind: GenericAttestationPolicy\nmetadata:\n  \
         name: {name}\n{namespace}spec:\n  attestationAuthorityNames:\n{names}"
    )
}

#[test]
fn two_single_authority_gaps_in_a_namespace_become_one_any_policy() {
    let resources = [
        authority("a", Some("prod"), &public_key()),
        authority("b", Some("prod"), &public_key()),
        gap("g1", Some("prod"), &["a"]),
        gap("g2", Some("prod"), &["b"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(run.import().left_out.is_empty(), "{:?}", run.import());
    let config = run.config();
    assert!(config.contains("name = \"prod_g1_g2\""), "{config}");
    assert!(
        config.contains("verifiers = [\"prod_a\", \"prod_b\"]\nrequire = \"any\""),
        "{config}"
    );
    // The other namespaces, which kritis never reviews, are the operator's choice: a
    // default policy is offered commented out, and the config loads as it is.
    assert!(
        config.contains("# [[policies]]\n# name = \"kritis-unreviewed\"\n# namespaces = [\"*\"]\n# mode = \"off\"\n"),
        "{config}"
    );
    let parsed =
        crate::config::Config::parse(&config, std::path::Path::new("config.toml")).unwrap();
    assert_eq!(parsed.policies.len(), 1);
}

#[test]
fn gap_whose_authorities_include_anothers_adds_nothing() {
    let resources = [
        authority("a", Some("prod"), &public_key()),
        authority("b", Some("prod"), &public_key()),
        gap("both", Some("prod"), &["a", "b"]),
        gap("one", Some("prod"), &["a"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    let config = run.config();
    assert!(
        config.contains("verifiers = [\"prod_a\"]\nrequire = \"all\""),
        "{config}"
    );
}

#[test]
fn gaps_crigate_cannot_state_are_refused_not_merged() {
    let resources = [
        authority("a", Some("prod"), &public_key()),
        authority("b", Some("prod"), &public_key()),
        authority("c", Some("prod"), &public_key()),
        gap("ab", Some("prod"), &["a", "b"]),
        gap("bc", Some("prod"), &["b", "c"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.left_out("namespace prod: GenericAttestationPolicies"),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("cannot state"));
    assert!(!run.config().contains("[[policies]]"));
}

#[test]
fn same_named_authorities_in_two_namespaces_stay_apart() {
    let (key_a, key_b) = (public_key(), public_key());
    let resources = [
        authority("release", Some("team-a"), &key_a),
        authority("release", Some("team-b"), &key_b),
        gap("gap", Some("team-a"), &["release"]),
        gap("gap", Some("team-b"), &["release"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(run.import().left_out.is_empty(), "{:?}", run.import());
    let config = run.config();
    assert!(config.contains("[verifiers.team-a_release]"), "{config}");
    assert!(config.contains("[verifiers.team-b_release]"), "{config}");
    assert!(
        config.contains("verifiers = [\"team-b_release\"]"),
        "{config}"
    );
    let read = |ns: &str| std::fs::read_to_string(run.out.join(format!("keys/{ns}/release.pub")));
    assert_eq!(read("team-a").unwrap(), key_a);
    assert_eq!(read("team-b").unwrap(), key_b);
}

#[test]
fn authority_without_namespace_is_reported() {
    let resources = [
        authority("release", None, &public_key()),
        gap("gap", Some("prod"), &["release"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.left_out("AttestationAuthority release"),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("no metadata.namespace"));
    assert!(run.left_out("needs authorities [\"release\"] in namespace prod"));
    assert!(!run.out.join("keys").exists());
}

#[test]
fn public_key_data_wrapped_over_lines_decodes() {
    let encoded = base64::engine::general_purpose::STANDARD.encode(public_key());
    let wrapped: String = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| format!("    {}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    let resources = format!(
        "apiVersion: kritis.grafeas.io/v1beta1\nkind: AttestationAuthority\nmetadata:\n  name: wrapped\n  \
         namespace: prod\nspec:\n  noteReference: namespaces/wrapped\n  publicKeyData: |\n{wrapped}"
    );
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.mapped("AttestationAuthority prod/wrapped"),
        "{:?}",
        run.import()
    );
}

#[test]
fn gap_without_namespace_is_reported_not_put_in_default() {
    let resources = [
        authority("release", Some("default"), &public_key()),
        gap("gap", None, &["release"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.left_out("GenericAttestationPolicy gap"),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("kubectl applies it to the namespace of its context"));
    assert!(!run.config().contains("[[policies]]"));
}

#[test]
fn gap_admission_allowlist_patterns_are_allowlisted_in_their_namespace() {
    // kritis admits what a namespace's GAP allowlists unverified, there only; a `*` before
    // a pattern's end is literal to kritis and a wildcard to crigate, so it is reported.
    let resources = [
        authority("release", Some("prod"), &public_key()),
        gap("gap", Some("prod"), &["release"]),
        "  admissionAllowlistPatterns:\n  - namePattern: registry.example/tools/*\n  \
         - namePattern: registry.example/*/agent:1\n  - namePattern: registry.example/app**\n"
            .to_owned(),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.mapped(
            "GenericAttestationPolicy prod/gap: registry.example/tools/* allowlisted in prod"
        ),
        "{:?}",
        run.import()
    );
    assert!(run.left_out(
        "namePattern \"registry.example/*/agent:1\" is not imported: kritis reads a `*` before \
         its end literally"
    ));
    // Only the last `*` is kritis' wildcard: the one before it is literal to kritis.
    assert!(run.left_out("namePattern \"registry.example/app**\" is not imported"));
    let config = run.config();
    assert!(config.contains("name = \"prod_gap\""));
    assert!(
        config.contains("{ pattern = \"registry.example/tools/*\", namespace = \"prod\" }"),
        "{config}"
    );
    assert!(!config.contains("agent"), "{config}");
    assert!(!config.contains("app*"), "{config}");
}

#[test]
fn a_resource_defined_twice_is_imported_from_neither_copy() {
    // Two versions of one GAP, as a base file and an overlay give them: the cluster holds
    // the one applied last, which the files do not tell.
    let (old_key, new_key) = (public_key(), public_key());
    let resources = [
        authority("a", Some("prod"), &public_key()),
        authority("b", Some("prod"), &public_key()),
        gap("gap", Some("prod"), &["a"]),
        gap("gap", Some("prod"), &["a", "b"]),
        // A rotated key in two versions of one authority, which a GAP elsewhere needs.
        authority("release", Some("staging"), &old_key),
        authority("release", Some("staging"), &new_key),
        gap("gap", Some("staging"), &["release"]),
        // Two versions of one allowlist: an entry removed from the newer one.
        "---\napiVersion: kritis.grafeas.io/v1beta1\nkind: AdmissionAllowlist\nmetadata:\n  \
         name: tools\nspec:\n  patterns:\n  - namePattern: registry.example/old/*\n"
            .to_owned(),
        "---\napiVersion: kritis.grafeas.io/v1beta1\nkind: AdmissionAllowlist\nmetadata:\n  \
         name: tools\nspec:\n  patterns:\n  - namePattern: registry.example/new/*\n"
            .to_owned(),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    for title in [
        "GenericAttestationPolicy prod/gap: defined 2 times",
        "AttestationAuthority staging/release: defined 2 times",
        "AdmissionAllowlist tools: defined 2 times",
    ] {
        assert!(run.left_out(title), "{title}: {:?}", run.import());
    }
    let config = run.config();
    assert!(!config.contains("[[policies]]"), "{config}");
    assert!(!config.contains("registry.example/"), "{config}");
    assert!(!config.contains("staging_release"), "{config}");
    assert!(!run.out.join("keys/staging").exists());
}

#[test]
fn copies_alike_in_every_word_are_one_resource() {
    let key = public_key();
    let resources = [
        authority("release", Some("prod"), &key),
        authority("release", Some("prod"), &key),
        gap("gap", Some("prod"), &["release"]),
        gap("gap", Some("prod"), &["release"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(run.import().left_out.is_empty(), "{:?}", run.import());
    assert!(
        run.config().contains("name = \"prod_gap\""),
        "{}",
        run.config()
    );
}

#[test]
fn an_authority_name_yaml_reads_as_a_number_refuses_its_namespace() {
    let resources = [
        authority("release", Some("prod"), &public_key()),
        authority("2024", Some("prod"), &public_key()),
        gap("gap", Some("prod"), &["release", "2024"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.left_out("attestationAuthorityNames holds Number(2024), which is not a string"),
        "{:?}",
        run.import()
    );
    assert!(!run.config().contains("[[policies]]"), "{}", run.config());
}

#[test]
fn a_notation_verifier_for_other_artifact_types_is_not_imported() {
    let resources = [
        certificate_store("certstore-inline", None),
        flat_verifier("v", &["certstore-inline"]).replace(
            "application/vnd.cncf.notary.signature",
            "application/spdx+json",
        ),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.left_out("so Ratify verifies no Notation signature with it"),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("no verifier could be imported"));
    assert!(!run.out.join("notation/v").exists());
}

#[test]
fn a_ratify_verifier_defined_twice_is_imported_from_neither_copy() {
    let resources = [
        certificate_store("certstore-inline", None),
        flat_verifier("v", &["certstore-inline"]),
        // A later version of it, with a weaker level.
        flat_verifier("v", &["certstore-inline"]).replace("level: strict", "level: permissive"),
        ANY_POLICY.to_owned(),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.left_out("Verifier v: defined 2 times"),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("no verifier could be imported"));
}

#[test]
fn namespace_with_a_gap_that_cannot_be_imported_gets_no_policy() {
    let resources = [
        authority("a", Some("prod"), &public_key()),
        gap("good", Some("prod"), &["a"]),
        gap("broken", Some("prod"), &["absent"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.left_out("GenericAttestationPolicy prod/broken"),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("one from good alone would not decide as kritis does"));
    assert!(!run.config().contains("[[policies]]"));
}

#[test]
fn allowlist_entries_crigate_cannot_take_are_reported_and_the_rest_imported() {
    // An empty or spaced pattern is no image name, and kritis allowlists nothing by it; an
    // entry whose namespace is not a string would apply everywhere if that were dropped.
    let resources = "---\napiVersion: kritis.grafeas.io/v1beta1\nkind: AdmissionAllowlist\n\
                     metadata:\n  name: tools\nspec:\n  patterns:\n  - namePattern: ''\n  \
                     - namePattern: 'registry.example/a b'\n  \
                     - namePattern: 'registry.example/numbered/*'\n    namespace: 2024\n  \
                     - namePattern: 'registry.example/tools/*'\n    namespace: ops\n";
    let run = run(Kind::Kritis, resources);
    assert!(run.left_out("namePattern \"\""), "{:?}", run.import());
    assert!(run.left_out("namePattern \"registry.example/a b\""));
    assert!(run.left_out("has a namespace that is not a string"));
    assert!(run.mapped("AdmissionAllowlist tools: registry.example/tools/*"));
    let config = run.config();
    assert!(config.contains("pattern = \"registry.example/tools/*\", namespace = \"ops\""));
    assert!(!config.contains("numbered"), "{config}");
}

/// A root CA, an intermediate CA it issued, and a leaf the intermediate issued, as PEM.
fn pasted_chain() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca = |cn: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
    };
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca("pasted root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let inter_key = KeyPair::generate().unwrap();
    let inter_params = ca("pasted intermediate");
    let inter = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
    let inter_issuer = Issuer::new(inter_params, inter_key);
    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "pasted leaf");
    let leaf = leaf_params
        .signed_by(&KeyPair::generate().unwrap(), &inter_issuer)
        .unwrap();
    (root.pem(), inter.pem(), leaf.pem())
}

#[test]
fn a_store_holding_a_whole_chain_keeps_the_certificates_ratify_anchors_in() {
    // Ratify hands notation only CA and self-signed certificates (filterValidCerts): a
    // leaf pasted with its chain is passed over, as it is here, and said so; a tsa store
    // keeps self-signed roots only, as notation's trust store does.
    let (root, intermediate, leaf) = pasted_chain();
    let store = format!(
        "---\napiVersion: config.ratify.deislabs.io/v1beta1\nkind: CertificateStore\nmetadata:\n  \
         name: chain\nspec:\n  provider: inline\n  parameters:\n    value: |\n{}",
        indent(&format!("{leaf}{intermediate}{root}"), 6)
    );
    let resources = [
        store,
        verifier(
            "v",
            "type: notation",
            "      ca:\n        certs:\n          - chain\n      tsa:\n        stamps:\n          - chain\n",
            "\"ca:certs\", \"tsa:stamps\"",
        ),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(run.mapped("Verifier v (notation)"), "{:?}", run.import());
    assert!(run.left_out("ca:certs gatekeeper-system/chain: CN=pasted leaf left out"));
    assert!(run.left_out("tsa:stamps gatekeeper-system/chain: CN=pasted leaf left out"));
    assert!(run.left_out("tsa:stamps gatekeeper-system/chain: CN=pasted intermediate left out"));
    let stores = run.out.join("notation/v/truststore/x509");
    let ca = std::fs::read_to_string(stores.join("ca/certs/gatekeeper-system_chain.pem")).unwrap();
    let count = |pem: &str| pem.matches("BEGIN CERTIFICATE").count();
    assert_eq!(count(&ca), 2, "{ca}");
    assert!(!ca.contains(leaf.lines().nth(1).unwrap()));
    let tsa =
        std::fs::read_to_string(stores.join("tsa/stamps/gatekeeper-system_chain.pem")).unwrap();
    assert_eq!(count(&tsa), 1, "{tsa}");
    assert!(tsa.contains(root.lines().nth(1).unwrap()));
}

#[test]
fn an_upstream_kritis_authority_lists_its_keys_in_public_keys() {
    // grafeas kritis v1beta1: spec.publicKeys, PKIX keys as PEM text; any one of them
    // attests. A PGP key beside them is reported.
    let (first, other) = (public_key(), public_key());
    let resources = format!(
        "---\napiVersion: kritis.grafeas.io/v1beta1\nkind: AttestationAuthority\nmetadata:\n  \
         name: release\n  namespace: prod\nspec:\n  noteReference: projects/p/notes/release\n  \
         publicKeys:\n  - keyType: PKIX\n    keyId: key-1\n    pkixPublicKey:\n      \
         signatureAlgorithm: ECDSA_P256_SHA256\n      publicKeyPem: |\n{}  \
         - keyType: PGP\n    keyId: ABCDEF\n    asciiArmoredPgpPublicKey: LS0tLS1CRUdJTiBQR1A=\n  \
         - keyType: PKIX\n    keyId: key-2\n    pkixPublicKey:\n      publicKeyPem: |\n{}{}",
        indent(&first, 8),
        indent(&other, 8),
        gap("gap", Some("prod"), &["release"]),
    );
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.mapped("AttestationAuthority prod/release: [verifiers.prod_release], PKIX keys in"),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("spec.publicKeys[1] \"ABCDEF\": PGP keys are not supported"));
    let keys = run.out.join("keys/prod/release.d");
    assert_eq!(std::fs::read_to_string(keys.join("0.pub")).unwrap(), first);
    assert_eq!(std::fs::read_to_string(keys.join("1.pub")).unwrap(), other);
    let config = run.config();
    assert!(config.contains("release.d/0.pub\", \""), "{config}");
    assert!(config.contains("name = \"prod_gap\""), "{config}");
}

#[test]
fn authorities_whose_names_differ_by_a_dot_keep_their_own_keys() {
    // `release` with two keys and `release.1` with one, in one namespace: each verifier
    // names its own key files, and no file is written twice. The two keys have keyIds of
    // their own: kritis keeps one key per keyId.
    let (first, second, third) = (public_key(), public_key(), public_key());
    let two = format!(
        "---\napiVersion: kritis.grafeas.io/v1beta1\nkind: AttestationAuthority\nmetadata:\n  \
         name: release\n  namespace: prod\nspec:\n  publicKeys:\n  - keyType: PKIX\n    \
         keyId: key-1\n    pkixPublicKey:\n      publicKeyPem: |\n{}  - keyType: PKIX\n    \
         keyId: key-2\n    pkixPublicKey:\n      publicKeyPem: |\n{}",
        indent(&first, 8),
        indent(&second, 8),
    );
    let resources = [two, authority("release.1", Some("prod"), &third)].concat();
    let run = run(Kind::Kritis, &resources);
    let keys = run.out.join("keys/prod");
    assert_eq!(
        std::fs::read_to_string(keys.join("release.d/1.pub")).unwrap(),
        second
    );
    assert_eq!(
        std::fs::read_to_string(keys.join("release.1.pub")).unwrap(),
        third
    );
    assert!(
        run.mapped("AttestationAuthority prod/release.1"),
        "{:?}",
        run.import()
    );
    assert!(run.mapped("AttestationAuthority prod/release:"));
}

/// A kritis ImageSecurityPolicy in `namespace` with vulnerability requirements.
fn image_security_policy(name: &str, namespace: &str) -> String {
    format!(
        "---\napiVersion: kritis.grafeas.io/v1beta1\nkind: ImageSecurityPolicy\nmetadata:\n  \
         name: {name}\n  namespace: {namespace}\nspec:\n  packageVulnerabilityRequirements:\n    \
         maximumSeverity: MEDIUM\n    maximumFixNotAvailableSeverity: HIGH\n"
    )
}

#[test]
fn an_image_security_policy_leaves_its_namespace_without_a_policy() {
    // kritis reviews a namespace against its ISPs as well as its GAPs, and either denies
    // (pkg/kritis/admission/admission.go): a policy from the GAP alone would admit an
    // image the ISP's vulnerability requirements deny. Another namespace is unaffected.
    let resources = [
        authority("a", Some("prod"), &public_key()),
        gap("gap", Some("prod"), &["a"]),
        image_security_policy("vulns", "prod"),
        authority("a", Some("staging"), &public_key()),
        gap("gap", Some("staging"), &["a"]),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.left_out("ImageSecurityPolicy prod/vulns ("),
        "{:?}",
        run.import()
    );
    assert!(run.left_out(
        "its vulnerability requirements (packageVulnerabilityRequirements) are not enforced by \
         crigate"
    ));
    assert!(!run.left_out("not a kritis resource crigate imports"));
    assert!(run.left_out("namespace prod: no policy written"));
    let config = run.config();
    assert!(!config.contains("name = \"prod_gap\""), "{config}");
    assert!(config.contains("name = \"staging_gap\""), "{config}");
}

/// An AttestationAuthority `release` in `prod` listing `keys` in `spec.publicKeys`, each
/// as (keyType, keyId, PEM); `None` leaves the field out.
fn authority_with_public_keys(keys: &[(Option<&str>, Option<&str>, &str)]) -> String {
    let listed: String = keys
        .iter()
        .map(|(key_type, id, pem)| {
            let key_type = key_type
                .map(|t| format!("    keyType: {t}\n"))
                .unwrap_or_default();
            let id = id.map(|i| format!("    keyId: {i}\n")).unwrap_or_default();
            format!(
                "  - pkixPublicKey:\n      publicKeyPem: |\n{}{key_type}{id}",
                indent(pem, 8)
            )
        })
        .collect();
    format!(
        "---\napiVersion: kritis.grafeas.io/v1beta1\nkind: AttestationAuthority\nmetadata:\n  \
         name: release\n  namespace: prod\nspec:\n  publicKeys:\n{listed}"
    )
}

#[test]
fn a_public_key_without_a_key_type_is_not_trusted() {
    // kritis skips a key whose keyType is not PGP or PKIX (validatePublicKeyType in
    // pkg/kritis/review/validating_transport.go), a missing one included.
    let (typed, untyped) = (public_key(), public_key());
    let resources = authority_with_public_keys(&[
        (Some("PKIX"), Some("key-1"), &typed),
        (None, Some("key-2"), &untyped),
    ]);
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.left_out("spec.publicKeys[1] \"key-2\": no keyType: kritis skips the key"),
        "{:?}",
        run.import()
    );
    let keys = run.out.join("keys/prod");
    assert_eq!(
        std::fs::read_to_string(keys.join("release.pub")).unwrap(),
        typed
    );
    assert!(!keys.join("release.d").exists());
}

#[test]
fn a_repeated_key_id_keeps_the_last_key_as_kritis_does() {
    // kritis keeps its keys in a map by keyId, the last of a keyId replacing the earlier
    // ones (`keys[pubKey.KeyId] = pubKey`); keys without a keyId share the empty one.
    let (first, second, third, fourth) = (public_key(), public_key(), public_key(), public_key());
    let resources = authority_with_public_keys(&[
        (Some("PKIX"), Some("key"), &first),
        (Some("PKIX"), Some("key"), &second),
        (Some("PKIX"), None, &third),
        (Some("PKIX"), None, &fourth),
    ]);
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.left_out("spec.publicKeys[0] \"key\": spec.publicKeys[1] has the same keyId"),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("spec.publicKeys[2] \"\": spec.publicKeys[3] has no keyId either"));
    let keys = run.out.join("keys/prod/release.d");
    assert_eq!(std::fs::read_to_string(keys.join("0.pub")).unwrap(), second);
    assert_eq!(std::fs::read_to_string(keys.join("1.pub")).unwrap(), fourth);
    assert!(!keys.join("2.pub").exists());
}

#[test]
fn a_gap_with_both_allowlist_fields_allowlists_only_what_both_name() {
    // A kritis version reads admissionWhitelistPatterns or admissionAllowlistPatterns, not
    // both: only a pattern in both is allowlisted by every version.
    let resources = [
        authority("release", Some("prod"), &public_key()),
        gap("gap", Some("prod"), &["release"]),
        "  admissionAllowlistPatterns:\n  - namePattern: registry.example/new/*\n  \
         - namePattern: registry.example/both/*\n  admissionWhitelistPatterns:\n  \
         - namePattern: registry.example/both/*\n  - namePattern: registry.example/old/*\n"
            .to_owned(),
    ]
    .concat();
    let run = run(Kind::Kritis, &resources);
    assert!(
        run.left_out(
            "namePattern \"registry.example/new/*\" is only in spec.admissionAllowlistPatterns, \
             which only kritis since the rename of whitelist to allowlist reads"
        ),
        "{:?}",
        run.import()
    );
    assert!(run.left_out(
        "namePattern \"registry.example/old/*\" is only in spec.admissionWhitelistPatterns, \
         which only kritis before the rename of whitelist to allowlist reads"
    ));
    assert!(run.mapped("registry.example/both/* allowlisted in prod"));
    let config = run.config();
    assert!(
        config.contains("{ pattern = \"registry.example/both/*\", namespace = \"prod\" }"),
        "{config}"
    );
    assert_eq!(
        config.matches("registry.example/both/*").count(),
        1,
        "{config}"
    );
    assert!(!config.contains("registry.example/new/"), "{config}");
    assert!(!config.contains("registry.example/old/"), "{config}");
}

#[test]
fn a_notation_verifier_for_every_artifact_type_is_imported_and_reported() {
    // Ratify's notation CanVerify takes `*` as every artifact type.
    let resources = [
        certificate_store("certstore-inline", None),
        flat_verifier("v", &["certstore-inline"]).replace(
            "artifactTypes: application/vnd.cncf.notary.signature",
            "artifactTypes: \"*\"",
        ),
        ANY_POLICY.to_owned(),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(run.mapped("Verifier v (notation)"), "{:?}", run.import());
    assert!(run.left_out("artifactTypes *: Ratify verifies every artifact"));
    assert!(run.mapped("application/vnd.cncf.notary.signature \"any\""));
}

#[test]
fn artifact_types_entries_are_matched_as_written_and_spaced_ones_reported() {
    // Ratify splits artifactTypes at commas without trimming: " application/vnd.cncf...."
    // names no artifact type, so this verifier verifies no Notation signature there.
    let resources = [
        certificate_store("certstore-inline", None),
        flat_verifier("v", &["certstore-inline"]).replace(
            "artifactTypes: application/vnd.cncf.notary.signature",
            "artifactTypes: application/spdx+json, application/vnd.cncf.notary.signature",
        ),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.left_out(
            "artifactTypes entry \" application/vnd.cncf.notary.signature\" has spaces around it"
        ),
        "{:?}",
        run.import()
    );
    assert!(run.left_out("so Ratify verifies no Notation signature with it"));
    assert!(!run.mapped("Verifier v"));
    assert!(!run.out.join("notation/v").exists());
}

#[test]
fn verifiers_sharing_an_artifact_type_are_reported() {
    // Ratify verifies a signature with only the first verifier that takes its artifact
    // type, in no fixed order; crigate's `any` trusts one any of them trusts.
    let resources = [
        certificate_store("certstore-inline", None),
        flat_verifier("v1", &["certstore-inline"]),
        flat_verifier("v2", &["certstore-inline"]),
        ANY_POLICY.to_owned(),
    ]
    .concat();
    let run = run(Kind::Ratify, &resources);
    assert!(
        run.left_out(
            "Verifiers v1, v2 all verify application/vnd.cncf.notary.signature artifacts: Ratify \
             verifies each with only the first of them"
        ),
        "{:?}",
        run.import()
    );
    assert!(run
        .config()
        .contains("verifiers = [\"v1\", \"v2\"]\nrequire = \"any\""));
}

#[test]
fn config_policy_rules_are_compared_exactly() {
    // Ratify compares a rule with "any" and "all" exactly: "ANY" is neither, and Ratify
    // never counts such an artifact as verified.
    let run = run_with_policy_rules("default: ANY");
    assert!(
        run.left_out("config-policy rule \"ANY\" for application/vnd.cncf.notary.signature is not"),
        "{:?}",
        run.import()
    );
    assert!(!run.mapped("Policy ratify-policy (config-policy)"));
    // An empty default is Ratify's "all".
    let run = run_with_policy_rules("default: ''");
    assert!(
        run.left_out("config-policy application/vnd.cncf.notary.signature \"all\""),
        "{:?}",
        run.import()
    );
}

#[test]
fn an_import_without_policies_says_its_config_enforces_nothing() {
    // `crigate serve` without [[policies]] allows and records every call: the file and the
    // report say so.
    let kritis = run(
        Kind::Kritis,
        &authority("release", Some("prod"), &public_key()),
    );
    let ratify = run(Kind::Ratify, &certificate_store("certstore-inline", None));
    for run in [kritis, ratify] {
        assert!(
            run.left_out("no policy could be written, so the file enforces nothing"),
            "{:?}",
            run.import()
        );
        let config = run.config();
        assert!(config.contains("this file ENFORCES NOTHING"), "{config}");
        let parsed =
            crate::config::Config::parse(&config, std::path::Path::new("config.toml")).unwrap();
        assert!(parsed.policies.is_empty());
    }
}
