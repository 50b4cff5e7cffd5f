//! `crigate import` on the resources operators already have: the Ratify configuration
//! and the kritis resources their platforms' documentation publishes
//! (../shared/fixtures), and a kritis authority with a real PKIX key.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;

use crate::daemon::crigate_binary;
use crate::harness::{Registry, TestImage};
use crate::signer::KeySigner;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(name)
}

fn crigate(args: &[&str]) -> (i32, String) {
    let output = Command::new(crigate_binary()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratify_aks_configuration_imports_and_applies() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let (code, report) = crigate(&[
        "import",
        "ratify",
        fixture("ratify-aks-verify-config.yaml").to_str().unwrap(),
        "--out",
        dir,
    ]);
    // Everything is mapped, but no Ratify Policy is given, and Ratify's default denies an
    // image one of whose signatures fails where crigate admits it: reported, exit 1.
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains("mapped:   Verifier verifier-notary-inline"),
        "{report}"
    );
    assert!(
        report.contains("left out: Ratify Policy: none given"),
        "{report}"
    );
    // Nor is the Gatekeeper constraint, which says where Ratify applies and whether it
    // denies: the policy written enforces everywhere, and the report says so.
    assert!(
        report.contains("left out: the Gatekeeper constraint"),
        "{report}"
    );
    assert_eq!(report.matches("left out:").count(), 2, "{report}");
    // The store has no namespace: it is taken to be where Ratify runs.
    let store = out.path().join(
        "notation/verifier-notary-inline/truststore/x509/ca/certs/gatekeeper-system_certstore-inline.pem",
    );
    assert!(std::fs::read_to_string(&store)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let config = out.path().join("config.toml");
    let (code, report) = crigate(&["policy", "check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");

    // The imported trust policy applies: a Notation signature from a CA other than the
    // Ratify Sample CA is refused, as Ratify would.
    let registry = Registry::start().await.unwrap();
    crate::notation::registry::push_layout(&registry, "e2e", "e2e-valid-signature").await;
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[registry]\nplain_http = [\"{}\"]\n",
        registry.host()
    ));
    std::fs::write(&config, text).unwrap();
    let image = format!("{}/e2e:v1", registry.host());
    let (code, report) = crigate(&[
        "verify",
        &image,
        "--config",
        config.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("\"untrusted_root\""), "{report}");
}

#[test]
fn kritis_ack_resources_import_and_say_what_was_left_out() {
    let out = tempfile::tempdir().unwrap();
    let (code, report) = crigate(&[
        "import",
        "kritis",
        fixture("kritis-ack.yaml").to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "the redacted key must be reported: {report}");
    assert!(
        report.contains("left out: AttestationAuthority demo-aa"),
        "{report}"
    );
    assert!(
        report.contains("left out: GenericAttestationPolicy default/demo-gap"),
        "{report}"
    );
    assert!(
        report.contains(
            "mapped:   AdmissionAllowlist common-entries: registry-cn-*.ack.aliyuncs.com/acs/*"
        ),
        "{report}"
    );
    // The GAP is left out, so no policy is written: the file enforces nothing, and both
    // the report and the file say so.
    assert!(
        report.contains("no policy could be written, so the file enforces nothing"),
        "{report}"
    );
    let config = std::fs::read_to_string(out.path().join("config.toml")).unwrap();
    assert!(config.contains("this file ENFORCES NOTHING"), "{config}");
    assert!(
        config.contains(
            "registry-vpc.cn-beijing.aliyuncs.com/arms-docker-repo/*\", namespace = \"default\""
        ),
        "{config}"
    );
}

/// Names become file names and TOML keys. A dotted name Kubernetes accepts is imported
/// as it is; a name or trust store that would leave the output directory, or that
/// Kubernetes would refuse, is left out, and nothing is written outside the directory.
#[test]
fn resource_names_are_used_only_as_kubernetes_and_notation_allow_them() {
    let fixture_text = std::fs::read_to_string(fixture("ratify-aks-verify-config.yaml")).unwrap();
    let certificate = fixture_text.split("\n---\n").next().unwrap().to_owned() + "\n";
    let verifier = |name: &str, store: &str| {
        format!(
            "---\napiVersion: config.ratify.deislabs.io/v1beta1\nkind: Verifier\nmetadata:\n  \
             name: {name}\nspec:\n  name: notation\n  parameters:\n    verificationCertStores:\n      \
             {store:?}:\n        - certstore-inline\n    trustPolicyDoc:\n      version: \"1.0\"\n      \
             trustPolicies:\n        - name: default\n          registryScopes: [\"*\"]\n          \
             signatureVerification:\n            level: strict\n          trustStores: [\"ca:{store}\"]\n          \
             trustedIdentities: [\"*\"]\n"
        )
    };
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let resources = root.path().join("resources.yaml");
    let text = [
        certificate,
        verifier("notation.example", "certs"),
        verifier("escape-store", "../../../../../../escaped"),
        verifier("\"../../escaped-name\"", "certs"),
        verifier("Upper", "certs"),
    ]
    .concat();
    std::fs::write(&resources, text).unwrap();
    let (code, report) = crigate(&[
        "import",
        "ratify",
        resources.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{report}");
    assert!(
        report.contains(
            "mapped:   Verifier notation.example (notation): [verifiers.notation_example]"
        ),
        "{report}"
    );
    assert!(
        report.contains("Verifier escape-store")
            && report.contains("trust store name \"../../../../../../escaped\""),
        "{report}"
    );
    assert!(
        report.contains("metadata.name \"../../escaped-name\" must start and end"),
        "{report}"
    );
    assert!(report.contains("metadata.name \"Upper\""), "{report}");
    // Nothing beside the output directory; the dotted name is one verifier, under a name
    // crigate accepts.
    let beside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside.len(), 2, "{beside:?}");
    let config = out.join("config.toml");
    let (code, report) = crigate(&["policy", "check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[verifiers.notation_example]"), "{text}");
    assert!(
        text.contains("verifiers = [\"notation_example\"]"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kritis_authority_with_a_pkix_key_becomes_a_verifier_and_a_namespace_policy() {
    let registry = Registry::start().await.unwrap();
    let signer = KeySigner::generate();
    let image = TestImage::builder().label("kritis").build().unwrap();
    let digest = registry.push("app", "v1", &image).await.unwrap();
    signer.sign_legacy(&registry, "app", &digest).await;
    let resources = format!(
        r#"apiVersion: kritis.grafeas.io/v1beta1
kind: AttestationAuthority
metadata:
  name: release
  namespace: prod
spec:
  noteReference: namespaces/release
  publicKeyData: {key}
---
apiVersion: kritis.grafeas.io/v1beta1
kind: GenericAttestationPolicy
metadata:
  name: prod-gap
  namespace: prod
spec:
  attestationAuthorityNames:
  - release
---
apiVersion: kritis.grafeas.io/v1beta1
kind: AdmissionAllowlist
metadata:
  name: tools
spec:
  patterns:
  - namePattern: 'registry.example/tools/*'
"#,
        key = base64::engine::general_purpose::STANDARD.encode(signer.public_pem()),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kritis.yaml");
    std::fs::write(&file, resources).unwrap();
    let out = dir.path().join("out");
    let (code, report) = crigate(&[
        "import",
        "kritis",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{report}");
    let config = out.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[registry]\nplain_http = [\"{}\"]\n",
        registry.host()
    ));
    std::fs::write(&config, text).unwrap();
    let image = format!("{}/app:v1", registry.host());
    let (code, report) = crigate(&[
        "policy",
        "explain",
        &image,
        "--namespace",
        "prod",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.contains("policy:     prod_prod-gap (enforce)"),
        "{report}"
    );
    let (code, report) = crigate(&[
        "policy",
        "explain",
        "registry.example/tools/x:1",
        "--namespace",
        "prod",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("allowlist:"), "{report}");
    let (code, _) = crigate(&[
        "policy",
        "explain",
        &image,
        "--namespace",
        "other",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(
        code, 1,
        "kritis policies are per namespace; others have none"
    );
}
