//! Notation verification through the public API, as the daemon will call it: a
//! configuration directory in Notation's layout (`trustpolicy.json`, `truststore/x509/`)
//! and envelope bytes already fetched. The verifier is not wired to the proxy yet; when
//! it is, the PullImage/CreateContainer tests for Notation-signed images go here.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crigate::oci::Descriptor;
use crigate::verify::notation::{self, NotationConfig};
use crigate::verify::{Rejection, Verdict};

fn vectors() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/notation");
    assert!(
        dir.is_dir(),
        "the shared Notation vectors are missing at {}",
        dir.display()
    );
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn notation_config_dir_verifies_a_cose_signature_and_rejects_another_image() {
    let vectors = vectors();
    let config_dir = tempfile::tempdir().unwrap();
    copy_dir(
        &vectors.join("truststore"),
        &config_dir.path().join(notation::TRUST_STORE_DIR),
    );
    std::fs::copy(
        vectors.join("trustpolicy/alpine-2000.json"),
        config_dir.path().join(notation::POLICY_FILE),
    )
    .unwrap();
    let config = NotationConfig::load(config_dir.path()).unwrap();

    let envelope = std::fs::read(vectors.join("cose/alpine-2000/cose_signature.sig")).unwrap();
    let envelopes = [("application/cose", envelope)];
    let image = Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json",
        "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
            .parse()
            .unwrap(),
        481,
    );
    // 2026-01-01T00:00:00Z
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let result = notation::verify(
        &envelopes,
        &image,
        "registry.example.com/alpine",
        &config,
        now,
    );
    let Verdict::Trusted(signer) = result.verdict else {
        panic!("expected trusted, got {:?}", result.verdict)
    };
    assert_eq!(signer.identity, "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US");
    assert_eq!(signer.matched, "alpine-2000");

    let other = Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json",
        "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9"
            .parse()
            .unwrap(),
        517,
    );
    let result = notation::verify(
        &envelopes,
        &other,
        "registry.example.com/alpine",
        &config,
        now,
    );
    assert!(matches!(
        result.verdict,
        Verdict::Rejected(Rejection::DigestMismatch { .. })
    ));
}

pub(crate) mod registry {
    //! `crigate verify --notation-dir` against the real registry, with OCI layouts the
    //! notation CLI signed (third-party vectors), pushed as the notation CLI pushes them
    //! to a registry without the referrers API: the image, the signature manifest with
    //! its `subject`, and the referrers tag schema index.

    use std::path::Path;
    use std::process::Command;

    use serde_json::Value;

    use super::{copy_dir, vectors};
    use crate::daemon::crigate_binary;
    use crate::harness::Registry;

    /// Pushes every blob and manifest of the OCI layout `name` to `repo`: the image as
    /// `v1`, the rest by digest, indexes under their `ref.name` tag.
    pub(crate) async fn push_layout(registry: &Registry, repo: &str, name: &str) -> String {
        let layout = vectors().join("oci-layout").join(name);
        let index: Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let blobs = layout.join("blobs/sha256");
        let manifests: Vec<Value> = index["manifests"].as_array().unwrap().clone();
        let is_manifest = |hex: &str| {
            manifests
                .iter()
                .any(|m| m["digest"].as_str().unwrap().ends_with(hex))
        };
        for entry in std::fs::read_dir(&blobs).unwrap() {
            let path = entry.unwrap().path();
            let hex = path.file_name().unwrap().to_str().unwrap().to_owned();
            if !is_manifest(&hex) {
                registry
                    .push_blob(repo, &std::fs::read(&path).unwrap())
                    .await
                    .unwrap();
            }
        }
        let mut image = String::new();
        // Image manifests first, then the signature manifests, then the indexes.
        let mut ordered = manifests.clone();
        ordered.sort_by_key(|m| match m["mediaType"].as_str().unwrap() {
            t if t.contains("index") => 2,
            _ if m["annotations"]["org.opencontainers.image.ref.name"].is_string() => 0,
            _ => 1,
        });
        for manifest in ordered {
            let digest = manifest["digest"].as_str().unwrap();
            let bytes = std::fs::read(blobs.join(digest.trim_start_matches("sha256:"))).unwrap();
            let media_type = manifest["mediaType"].as_str().unwrap();
            let reference =
                match manifest["annotations"]["org.opencontainers.image.ref.name"].as_str() {
                    Some("v1") => {
                        image = digest.to_owned();
                        "v1".to_owned()
                    }
                    Some(tag) => tag.to_owned(),
                    None => digest.to_owned(),
                };
            registry
                .push_manifest(repo, &reference, media_type, &bytes)
                .await
                .unwrap();
        }
        image
    }

    /// A Notation configuration directory: `policy` (a file under trustpolicy/) as
    /// trustpolicy.json, and the vectors' trust store.
    fn notation_dir(into: &Path, policy: &str) {
        copy_dir(&vectors().join("truststore"), &into.join("truststore"));
        std::fs::copy(
            vectors().join("trustpolicy").join(policy),
            into.join("trustpolicy.json"),
        )
        .unwrap();
    }

    fn verify(image: &str, dir: &Path) -> (i32, Value) {
        let output = Command::new(crigate_binary())
            .args([
                "verify",
                image,
                "--plain-http",
                "--output",
                "json",
                "--notation-dir",
            ])
            .arg(dir)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let json = serde_json::from_str(&stdout)
            .unwrap_or_else(|_| panic!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
        (output.status.code().unwrap(), json)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn notation_signed_image_is_trusted_with_the_operators_notation_dir() {
        let registry = Registry::start().await.unwrap();
        let digest = push_layout(&registry, "e2e", "e2e-valid-signature").await;
        let dir = tempfile::tempdir().unwrap();
        notation_dir(dir.path(), "upstream/trustpolicy.json");
        let (code, json) = verify(&format!("{}/e2e:v1", registry.host()), dir.path());
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["digest"], digest.as_str());
        assert_eq!(json["verifier"], "notation");
        // The output names the trust policy that matched and the signer's subject DN.
        assert_eq!(json["signer"]["matched"], "e2e");
        let identity = json["signer"]["identity"].as_str().unwrap();
        assert!(
            identity.contains("CN=e2e") && identity.contains("O=Notary"),
            "{identity}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_notation_failure_is_reported_as_itself() {
        let registry = Registry::start().await.unwrap();
        push_layout(&registry, "valid", "e2e-valid-signature").await;
        push_layout(&registry, "expired", "e2e-expired-signature").await;
        push_layout(&registry, "invalid", "e2e-invalid-signature").await;
        let image = |repo: &str| format!("{}/{repo}:v1", registry.host());
        let cases = [
            (
                "valid",
                "upstream/invalid_trusted_identity_trustpolicy.json",
                "identity_not_trusted",
            ),
            ("valid", "e2e-new.json", "untrusted_root"),
            ("expired", "upstream/trustpolicy.json", "expired"),
            ("invalid", "upstream/trustpolicy.json", "malformed"),
        ];
        for (repo, policy, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            notation_dir(dir.path(), policy);
            let (code, json) = verify(&image(repo), dir.path());
            assert_eq!(
                (code, json["reason"]["code"].as_str().unwrap_or("")),
                (1, expected),
                "{repo} under {policy}: {json}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn image_without_notation_signature_has_no_signature() {
        let registry = Registry::start().await.unwrap();
        let image = crate::harness::TestImage::builder()
            .label("unsigned")
            .build()
            .unwrap();
        registry.push("plain", "v1", &image).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        notation_dir(dir.path(), "upstream/trustpolicy.json");
        let (code, json) = verify(&format!("{}/plain:v1", registry.host()), dir.path());
        assert_eq!(
            (code, json["reason"]["code"].as_str().unwrap()),
            (1, "no_signature"),
            "{json}"
        );
    }
}
