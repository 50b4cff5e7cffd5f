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
