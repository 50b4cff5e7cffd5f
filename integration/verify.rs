//! `crigate verify` end to end: images in the real registry, signed by the project's own
//! signer (signer.rs) in both cosign storage formats, each failure reason produced for
//! real and reported as itself, with the exit code the README documents.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::daemon::crigate_binary;
use crate::harness::{Registry, TestImage};
use crate::signer::{list_referrer, push_legacy, subject_of, KeySigner};

const TRUSTED: i32 = 0;
const REJECTED: i32 = 1;
const ERROR: i32 = 2;

struct Fixture {
    _dir: tempfile::TempDir,
    registry: Registry,
    signer: KeySigner,
    key: PathBuf,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start().await.unwrap();
        let signer = KeySigner::generate();
        let key = dir.path().join("cosign.pub");
        std::fs::write(&key, signer.public_pem()).unwrap();
        Self {
            _dir: dir,
            registry,
            signer,
            key,
        }
    }

    /// Pushes a fresh image as `repo:v1` and returns its digest.
    async fn image(&self, repo: &str) -> (String, TestImage) {
        let image = TestImage::builder()
            .label(&format!("repo={repo}"))
            .build()
            .unwrap();
        let digest = self.registry.push(repo, "v1", &image).await.unwrap();
        (digest, image)
    }

    fn dir_path(&self) -> &Path {
        self._dir.path()
    }

    fn reference(&self, repo: &str) -> String {
        format!("{}/{repo}:v1", self.registry.host())
    }

    /// Runs `crigate verify IMAGE --key KEY --plain-http --output json [extra]`.
    fn verify(&self, image: &str, extra: &[&str]) -> (i32, Value) {
        verify_with_key(image, &self.key, extra)
    }

    /// A containerd hosts directory in which `mirrored` is mirrored by this registry.
    fn mirror_hosts_dir(&self, mirrored: &str) -> PathBuf {
        let hosts = self.dir_path().join("certs.d");
        std::fs::create_dir_all(hosts.join(mirrored)).unwrap();
        std::fs::write(
            hosts.join(mirrored).join("hosts.toml"),
            format!("[host.\"http://{}\"]\n", self.registry.host()),
        )
        .unwrap();
        hosts
    }

    /// Asserts that `repo:v1` verifies as trusted by a signature on `digest`.
    fn assert_trusted(&self, repo: &str, digest: &str) {
        let (code, json) = self.verify(&self.reference(repo), &[]);
        assert_eq!(code, TRUSTED, "{json}");
        assert_eq!(json["signer"]["signed_digest"], digest);
    }
}

fn verify_with_key(image: &str, key: &Path, extra: &[&str]) -> (i32, Value) {
    let output = Command::new(crigate_binary())
        .args([
            "--log-format",
            "text",
            "verify",
            image,
            "--plain-http",
            "--insecure-ignore-tlog",
            "--output",
            "json",
            "--key",
        ])
        .arg(key)
        .args(extra)
        .output()
        .unwrap();
    let code = output.status.code().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|_| {
        assert_eq!(
            code,
            ERROR,
            "no JSON on stdout: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Value::Null
    });
    (code, json)
}

fn reason(json: &Value) -> &str {
    json["reason"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_signature_is_trusted_and_pinned() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("app").await;
    f.signer.sign_legacy(&f.registry, "app", &digest).await;
    let (code, json) = f.verify(&f.reference("app"), &[]);
    assert_eq!(code, TRUSTED, "{json}");
    assert_eq!(json["version"], 1);
    assert_eq!(json["result"], "trusted");
    assert_eq!(json["digest"], digest.as_str());
    assert_eq!(json["verifier"], "cosign");
    assert_eq!(json["signer"]["matched"], f.key.display().to_string());
    assert_eq!(json["signer"]["signed_digest"], digest.as_str());
    assert_eq!(
        json["pinned"],
        format!("{}/app@{digest}", f.registry.host())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_referrer_is_trusted_on_a_registry_without_the_referrers_api() {
    let f = Fixture::new().await;
    let (digest, image) = f.image("bundled").await;
    f.signer.sign_bundle(&f.registry, "bundled", &image).await;
    f.assert_trusted("bundled", &digest);
}

/// cosign v3's default on a registry without the referrers API (distribution, GHCR,
/// Docker Hub): the referrers index lists the bundle by its config's empty media type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_referrer_listed_by_its_empty_config_type_is_trusted() {
    let f = Fixture::new().await;
    let (digest, image) = f.image("listed").await;
    let (code, json) = f.verify(&f.reference("listed"), &[]);
    assert_eq!(code, REJECTED, "{json}");
    f.signer
        .sign_bundle_as_cosign_lists_it(&f.registry, "listed", &image)
        .await;
    f.assert_trusted("listed", &digest);
}

/// `cosign sign --registry-referrers-mode=oci-1-1` in the legacy format: a simple-signing
/// manifest attached as a referrer, with no `.sig` tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_signature_stored_as_a_referrer_is_trusted() {
    let f = Fixture::new().await;
    let (digest, image) = f.image("oci11").await;
    f.signer
        .sign_legacy_as_referrer(&f.registry, "oci11", &image)
        .await;
    f.assert_trusted("oci11", &digest);
    // Signed by another key: found, and not trusted.
    let stranger = KeySigner::generate();
    let (_, other_image) = f.image("oci11-other").await;
    stranger
        .sign_legacy_as_referrer(&f.registry, "oci11-other", &other_image)
        .await;
    let (code, json) = f.verify(&f.reference("oci11-other"), &[]);
    assert_eq!(code, REJECTED, "{json}");
    assert_ne!(reason(&json), "no_signature", "{json}");
}

/// A referrer listed but gone (deleted since the referrers tag index was written, which
/// nothing prunes: GHCR's and ECR's clean-ups of untagged manifests do this) is no
/// signature. It hides neither a signature under cosign's `.sig` tag nor another
/// referrer listed after it, whether it was listed by the bundle type (read as listed)
/// or by the empty config type (read to learn its type); with nothing else, the image
/// has no signature, which is a rejection and not a registry error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referrer_listed_but_gone_hides_no_other_signature() {
    let f = Fixture::new().await;
    let repos = [
        "tagged",
        "referred-typed",
        "referred-by-config",
        "untagged-typed",
        "untagged-by-config",
    ];
    for repo in repos {
        let (digest, image) = f.image(repo).await;
        // Two referrers for those that keep one, and the first deleted.
        let signatures = if repo.starts_with("referred") { 2 } else { 1 };
        for _ in 0..signatures {
            if repo.ends_with("typed") {
                f.signer.sign_bundle(&f.registry, repo, &image).await;
            } else {
                f.signer
                    .sign_bundle_as_cosign_lists_it(&f.registry, repo, &image)
                    .await;
            }
        }
        if repo == "tagged" {
            f.signer.sign_legacy(&f.registry, repo, &digest).await;
        }
        let (_, index) = f
            .registry
            .manifest(repo, &digest.replace(':', "-"))
            .await
            .unwrap();
        let index: Value = serde_json::from_slice(&index).unwrap();
        let listed = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
        f.registry.delete_manifest(repo, &listed).await.unwrap();
    }
    for repo in ["tagged", "referred-typed", "referred-by-config"] {
        let (code, json) = f.verify(&f.reference(repo), &[]);
        assert_eq!(code, TRUSTED, "{repo}: {json}");
    }
    for repo in ["untagged-typed", "untagged-by-config"] {
        let (code, json) = f.verify(&f.reference(repo), &[]);
        assert_eq!(
            (code, reason(&json)),
            (REJECTED, "no_signature"),
            "{repo}: {json}"
        );
    }
    // A referrer whose bundle the registry lost is no deletion: what it held is unknown,
    // so the outcome is the registry's error, not a rejection.
    let (digest, image) = f.image("blob-gone").await;
    f.signer.sign_bundle(&f.registry, "blob-gone", &image).await;
    let (_, index) = f
        .registry
        .manifest("blob-gone", &digest.replace(':', "-"))
        .await
        .unwrap();
    let index: Value = serde_json::from_slice(&index).unwrap();
    let listed = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let (_, referrer) = f.registry.manifest("blob-gone", &listed).await.unwrap();
    let referrer: Value = serde_json::from_slice(&referrer).unwrap();
    let bundle = referrer["layers"][0]["digest"].as_str().unwrap();
    f.registry.delete_blob("blob-gone", bundle).await.unwrap();
    let (code, json) = f.verify(&f.reference("blob-gone"), &[]);
    assert_eq!(code, ERROR, "{json}");
}

/// More referrers than are read: the referrers tag index is read newest first, as its
/// writers append, so a signature made after many others (a key rotated, an image signed
/// again and again) is among those read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_referrers_are_read_first() {
    let f = Fixture::new().await;
    let (digest, image) = f.image("resigned").await;
    let retired = KeySigner::generate();
    for _ in 0..crigate::registry::MAX_MANIFESTS_READ {
        retired
            .sign_bundle_as_cosign_lists_it(&f.registry, "resigned", &image)
            .await;
    }
    let (code, json) = f.verify(&f.reference("resigned"), &[]);
    assert_eq!(code, REJECTED, "{json}");
    f.signer
        .sign_bundle_as_cosign_lists_it(&f.registry, "resigned", &image)
        .await;
    f.assert_trusted("resigned", &digest);
}

/// The `.sig` tag, as cosign writes it: each new signature appended to the manifest
/// (`mutate.AppendSignatures`), and each judged on its own by `cosign verify`. Past the
/// layers read, the newest are the ones read; a layer whose blob the registry lost hides
/// no good signature beside it, and is the outcome (an error) only when none is good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sig_tags_newest_layers_are_read_and_a_lost_blob_hides_no_other() {
    let f = Fixture::new().await;
    let retired = KeySigner::generate();
    let (digest, _) = f.image("resigned").await;
    let reference = format!("{}/resigned", f.registry.host());
    let mut signatures: Vec<_> = (0..crigate::verify::cosign::MAX_SIGNATURES)
        .map(|_| retired.legacy(KeySigner::payload(&reference, &digest)))
        .collect();
    push_legacy(&f.registry, "resigned", &digest, &signatures).await;
    let (code, json) = f.verify(&f.reference("resigned"), &[]);
    assert_eq!(
        (code, reason(&json)),
        (REJECTED, "untrusted_root"),
        "{json}"
    );
    signatures.push(f.signer.legacy(KeySigner::payload(&reference, &digest)));
    push_legacy(&f.registry, "resigned", &digest, &signatures).await;
    f.assert_trusted("resigned", &digest);

    let (digest, _) = f.image("lost").await;
    let reference = format!("{}/lost", f.registry.host());
    let good = || f.signer.legacy(KeySigner::payload(&reference, &digest));
    // A payload of its own (another repository named), so its blob is no other's.
    let lost = || retired.legacy(KeySigner::payload(&format!("{reference}-copy"), &digest));
    let lost_blob = format!("sha256:{}", hex::encode(Sha256::digest(&lost().payload)));
    for layers in [[good(), lost()], [lost(), good()]] {
        push_legacy(&f.registry, "lost", &digest, &layers).await;
        f.registry.delete_blob("lost", &lost_blob).await.unwrap();
        f.assert_trusted("lost", &digest);
    }
    let untrusted = retired.legacy(KeySigner::payload(&reference, &digest));
    push_legacy(&f.registry, "lost", &digest, &[untrusted, lost()]).await;
    f.registry.delete_blob("lost", &lost_blob).await.unwrap();
    let (code, json) = f.verify(&f.reference("lost"), &[]);
    assert_eq!(code, ERROR, "{json}");
}

/// A referrer whose manifest crigate cannot read hides no signature listed beside it;
/// beside only an untrusted one, it is the outcome (an error: what it holds is unknown).
/// Here the manifest repeats `size` as `Size`, which the registry takes (Go's
/// `encoding/json` reads both as one field) and crigate refuses; anyone who may push to
/// the repository can list one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_referrer_hides_no_signature_beside_it() {
    let f = Fixture::new().await;
    for (repo, signer, trusted) in [
        ("spoiled", &f.signer, true),
        ("spoiled-untrusted", &KeySigner::generate(), false),
    ] {
        let (digest, image) = f.image(repo).await;
        signer
            .sign_bundle_as_cosign_lists_it(&f.registry, repo, &image)
            .await;
        let empty = b"{}";
        let config = f.registry.push_blob(repo, empty).await.unwrap();
        let spoiled = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": config,
                "size": empty.len(),
                "Size": empty.len(),
            },
            "layers": [],
            "subject": subject_of(&image),
        });
        list_referrer(
            &f.registry,
            repo,
            &digest,
            &spoiled,
            "application/vnd.oci.empty.v1+json",
        )
        .await;
        if trusted {
            f.assert_trusted(repo, &digest);
        } else {
            let (code, json) = f.verify(&f.reference(repo), &[]);
            assert_eq!(code, ERROR, "{json}");
        }
    }
}

/// `--signature-digest-algorithm`, as cosign's flag: a P-256 signature over SHA-256 (the
/// test signer's) verifies with the hash named `sha256`, and not with `sha384`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_signature_digest_is_the_only_one_accepted() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("fixed").await;
    f.signer.sign_legacy(&f.registry, "fixed", &digest).await;
    let image = f.reference("fixed");
    let (code, json) = f.verify(&image, &["--signature-digest-algorithm", "sha256"]);
    assert_eq!(code, TRUSTED, "{json}");
    let (code, json) = f.verify(&image, &["--signature-digest-algorithm", "sha384"]);
    assert_eq!(code, REJECTED, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_image_is_rejected_with_no_signature() {
    let f = Fixture::new().await;
    f.image("plain").await;
    let (code, json) = f.verify(&f.reference("plain"), &[]);
    assert_eq!((code, reason(&json)), (REJECTED, "no_signature"), "{json}");
    assert_eq!(json["result"], "rejected");
    assert!(json["pinned"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_by_another_key_is_untrusted() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("app").await;
    KeySigner::generate()
        .sign_legacy(&f.registry, "app", &digest)
        .await;
    let (code, json) = f.verify(&f.reference("app"), &[]);
    assert_eq!(
        (code, reason(&json)),
        (REJECTED, "untrusted_root"),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_copied_from_another_image_is_a_digest_mismatch() {
    let f = Fixture::new().await;
    let (signed, _) = f.image("app").await;
    let (other, _) = f.image("app2").await;
    // A genuine signature for `app`, stored under `app2`'s signature tag.
    let reference = format!("{}/app2", f.registry.host());
    let signature = f.signer.legacy(KeySigner::payload(&reference, &signed));
    push_legacy(&f.registry, "app2", &other, &[signature]).await;
    let (code, json) = f.verify(&f.reference("app2"), &[]);
    assert_eq!(
        (code, reason(&json)),
        (REJECTED, "digest_mismatch"),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_altered_after_signing_is_rejected() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("app").await;
    let reference = format!("{}/app", f.registry.host());
    let mut signature = f.signer.legacy(KeySigner::payload(&reference, &digest));
    // Same meaning, one byte more: the signature no longer covers the payload. With a
    // key-based signature this cannot be told from a signature by another key.
    signature.payload.push(b' ');
    push_legacy(&f.registry, "app", &digest, &[signature]).await;
    let (code, json) = f.verify(&f.reference("app"), &[]);
    assert_eq!(code, REJECTED, "{json}");
    assert!(
        ["tampered", "untrusted_root"].contains(&reason(&json)),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_for_another_repository_is_not_trusted_unless_relaxed() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("app").await;
    let signature = f
        .signer
        .legacy(KeySigner::payload("registry.example/other-app", &digest));
    push_legacy(&f.registry, "app", &digest, &[signature]).await;
    let (code, json) = f.verify(&f.reference("app"), &[]);
    assert_eq!(
        (code, reason(&json)),
        (REJECTED, "identity_not_trusted"),
        "{json}"
    );
    let (code, json) = f.verify(&f.reference("app"), &["--docker-reference", "not-checked"]);
    assert_eq!(code, TRUSTED, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_signature_annotation_is_malformed() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("app").await;
    let reference = format!("{}/app", f.registry.host());
    let mut signature = f.signer.legacy(KeySigner::payload(&reference, &digest));
    signature.annotations.insert(
        "dev.cosignproject.cosign/signature".into(),
        "%%% not base64 %%%".into(),
    );
    push_legacy(&f.registry, "app", &digest, &[signature]).await;
    let (code, json) = f.verify(&f.reference("app"), &[]);
    assert_eq!((code, reason(&json)), (REJECTED, "malformed"), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_good_signature_among_bad_ones_is_enough() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("app").await;
    let reference = format!("{}/app", f.registry.host());
    let stranger = KeySigner::generate().legacy(KeySigner::payload(&reference, &digest));
    let good = f.signer.legacy(KeySigner::payload(&reference, &digest));
    push_legacy(&f.registry, "app", &digest, &[stranger, good]).await;
    let (code, json) = f.verify(&f.reference("app"), &[]);
    assert_eq!(code, TRUSTED, "{json}");
}

/// Pushes `layers` as the `.sig` manifest of `image_digest` in `repo`.
async fn push_legacy_layers(registry: &Registry, repo: &str, image_digest: &str, layers: &[Value]) {
    let config = registry.push_blob(repo, b"{}").await.unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": layers,
    }))
    .unwrap();
    let tag = format!("{}.sig", image_digest.replace(':', "-"));
    registry
        .push_manifest(
            repo,
            &tag,
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )
        .await
        .unwrap();
}

/// GETs of `blob` in `repo` in the registry's access log.
fn blob_reads(registry: &Registry, repo: &str, blob: &str) -> usize {
    let access = std::fs::read_to_string(registry.log_path()).unwrap();
    access
        .lines()
        .filter(|line| line.contains(&format!("\"GET /v2/{repo}/blobs/{blob} ")))
        .count()
}

/// A `.sig` manifest of many layers costs at most 64 blob reads: a layer whose
/// descriptor shows it is no signature (another media type) is passed over unread, so
/// 200 of them do not hide the trusted signature after them; and signature layers past
/// the 64th read are not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sig_manifest_of_many_layers_costs_at_most_64_blob_reads() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("many").await;
    let reference = format!("{}/many", f.registry.host());
    let stranger = KeySigner::generate().legacy(KeySigner::payload(&reference, &digest));
    let good = f.signer.legacy(KeySigner::payload(&reference, &digest));
    let blob = f
        .registry
        .push_blob("many", &stranger.payload)
        .await
        .unwrap();
    let good_blob = f.registry.push_blob("many", &good.payload).await.unwrap();
    let layer = |media_type: &str| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": blob,
            "size": stranger.payload.len(),
            "annotations": stranger.annotations,
        })
    };
    let trusted = serde_json::json!({
        "mediaType": crate::signer::SIMPLE_SIGNING,
        "digest": good_blob,
        "size": good.payload.len(),
        "annotations": good.annotations,
    });
    let others = std::iter::repeat_with(|| layer("application/octet-stream")).take(200);
    let strangers = |n| std::iter::repeat_with(|| layer(crate::signer::SIMPLE_SIGNING)).take(n);
    let layers: Vec<Value> = others
        .clone()
        .chain(strangers(40))
        .chain(std::iter::once(trusted))
        .collect();
    push_legacy_layers(&f.registry, "many", &digest, &layers).await;
    let (code, json) = f.verify(&f.reference("many"), &[]);
    assert_eq!(code, TRUSTED, "{json}");

    // Signature layers by a stranger only, more than are read.
    let layers: Vec<Value> = others.chain(strangers(100)).collect();
    push_legacy_layers(&f.registry, "many", &digest, &layers).await;
    let before = blob_reads(&f.registry, "many", &blob);
    let (code, json) = f.verify(&f.reference("many"), &[]);
    assert_eq!(code, REJECTED, "{json}");
    let reads = blob_reads(&f.registry, "many", &blob) - before;
    assert_eq!(reads, 64, "{reads} blob reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_signature_covers_the_platforms_and_a_platform_signature_its_manifest() {
    let f = Fixture::new().await;
    let (_, image) = f.image("multi").await;
    let index = f
        .registry
        .push_index("multi", "v1", &[&image])
        .await
        .unwrap();
    // Signed on the index.
    f.signer.sign_legacy(&f.registry, "multi", &index).await;
    let (code, json) = f.verify(&f.reference("multi"), &[]);
    assert_eq!(code, TRUSTED, "{json}");
    assert_eq!(json["digest"], index.as_str());
    assert_eq!(json["signer"]["signed_digest"], index.as_str());

    // An unsigned index whose manifest for this node's platform is signed: trusted, and
    // pinned to the platform manifest, the digest the signature covers.
    let (platform_manifest, image) = f.image("multi2").await;
    let arch = crigate::verify::engine::oci_architecture();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": image.manifest_media_type(),
            "digest": platform_manifest,
            "size": image.manifest_size(),
            "platform": {"os": "linux", "architecture": arch},
        }],
    }))
    .unwrap();
    let index_digest = f
        .registry
        .push_manifest(
            "multi2",
            "v1",
            "application/vnd.oci.image.index.v1+json",
            &index,
        )
        .await
        .unwrap();
    let (code, json) = f.verify(&f.reference("multi2"), &[]);
    assert_eq!((code, reason(&json)), (REJECTED, "no_signature"), "{json}");
    f.signer
        .sign_legacy(&f.registry, "multi2", &platform_manifest)
        .await;
    let (code, json) = f.verify(&f.reference("multi2"), &[]);
    assert_eq!(code, TRUSTED, "{json}");
    assert_eq!(json["digest"], index_digest.as_str());
    assert_eq!(json["signer"]["signed_digest"], platform_manifest.as_str());
    assert_eq!(
        json["pinned"],
        format!("{}/multi2@{platform_manifest}", f.registry.host())
    );

    // An index listing a signed build for a variant of this architecture first (on
    // amd64 `v3`, on arm64 `v9`) and the unsigned baseline after it: the runtime pulls
    // the baseline, so that is the manifest verified, and it is not signed.
    let variant = if arch == "arm64" { "v9" } else { "v3" };
    let build = |label: &str| TestImage::builder().label(label).build().unwrap();
    let (variant_image, baseline_image) = (build("variant"), build("baseline"));
    let variant_manifest = f
        .registry
        .push("multi3", "variant", &variant_image)
        .await
        .unwrap();
    let baseline = f
        .registry
        .push("multi3", "baseline", &baseline_image)
        .await
        .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": variant_image.manifest_media_type(),
            "digest": variant_manifest,
            "size": variant_image.manifest_size(),
            "platform": {"os": "linux", "architecture": arch, "variant": variant},
        }, {
            "mediaType": baseline_image.manifest_media_type(),
            "digest": baseline,
            "size": baseline_image.manifest_size(),
            "platform": {"os": "linux", "architecture": arch},
        }],
    }))
    .unwrap();
    f.registry
        .push_manifest(
            "multi3",
            "v1",
            "application/vnd.oci.image.index.v1+json",
            &index,
        )
        .await
        .unwrap();
    f.signer
        .sign_legacy(&f.registry, "multi3", &variant_manifest)
        .await;
    let (code, json) = f.verify(&f.reference("multi3"), &[]);
    assert_eq!((code, reason(&json)), (REJECTED, "no_signature"), "{json}");
    f.signer.sign_legacy(&f.registry, "multi3", &baseline).await;
    let (code, json) = f.verify(&f.reference("multi3"), &[]);
    assert_eq!(code, TRUSTED, "{json}");
    assert_eq!(json["signer"]["signed_digest"], baseline.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_registry_is_an_error_not_a_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cosign.pub");
    std::fs::write(&key, KeySigner::generate().public_pem()).unwrap();
    let port = crate::harness::process::free_port().unwrap();
    let (code, _) = verify_with_key(
        &format!("127.0.0.1:{port}/app:v1"),
        &key,
        &["--timeout", "5s"],
    );
    assert_eq!(code, ERROR);
}

#[test]
fn verify_without_trust_material_is_a_usage_error() {
    let output = Command::new(crigate_binary())
        .args(["verify", "127.0.0.1:1/app:v1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(ERROR));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--key"), "{stderr}");
    // A keyless identity without its issuer, as cosign refuses it.
    let root = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(crigate_binary())
        .args(["verify", "127.0.0.1:1/app:v1", "--certificate-identity"])
        .arg("release@example.com")
        .arg("--trusted-root")
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(ERROR));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs --certificate-oidc-issuer"),
        "{stderr}"
    );
}

mod keyless {
    //! Keyless signatures through the engine, against the real registry, with the test's
    //! own Fulcio-like CA and Rekor key (signer.rs).

    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use crigate::oci::ImageRef;
    use crigate::registry::{Client, RegistryConfig};
    use crigate::verify::cache::{CacheConfig, Fingerprint, Source, VerdictCache};
    use crigate::verify::cosign::{CosignPolicy, KeylessIdentity, Matcher, PublicKey};
    use crigate::verify::engine::{Engine, Requirement};
    use crigate::verify::{Rejection, Verdict};

    use crate::harness::{Registry, TestImage};
    use crate::signer::{push_legacy, KeySigner, KeylessSigner};

    const SAN: &str = "release@example.com";
    const ISSUER: &str = "https://issuer.example.com";

    fn engine(registry: &Registry) -> Engine {
        engine_keeping(registry, Duration::ZERO)
    }

    /// An engine whose cache keeps verdicts for `ttl`.
    fn engine_keeping(registry: &Registry, ttl: Duration) -> Engine {
        let config = RegistryConfig {
            plain_http: vec![registry.host()],
            ..RegistryConfig::default()
        };
        let cache = VerdictCache::open(CacheConfig {
            positive_ttl: ttl,
            negative_ttl: ttl,
            max_entries: 16,
            path: None,
        })
        .unwrap();
        Engine::new(
            Client::new(config).unwrap(),
            Arc::new(cache),
            Duration::from_secs(10),
        )
    }

    fn policy(sigstore: &KeylessSigner, san: &str) -> Requirement {
        let mut policy = CosignPolicy {
            require_tlog: true,
            require_sct: false,
            identities: vec![KeylessIdentity {
                subject: Matcher::Exact(san.to_owned()),
                issuer: Some(Matcher::Exact(ISSUER.to_owned())),
            }],
            rekor_keys: vec![PublicKey::from_pem(sigstore.rekor_pem().as_bytes())
                .unwrap()
                .into()],
            ..CosignPolicy::default()
        };
        policy
            .add_fulcio_roots_pem(sigstore.root_pem.as_bytes())
            .unwrap();
        Requirement {
            cosign: Some(Arc::new(policy)),
            notation: None,
            fingerprint: Fingerprint::of(san.as_bytes()),
        }
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// Pushes a fresh image as `repo:v1`, signs it keyless with a leaf issued
    /// `age_secs` ago and logged one minute into the leaf's life, and verifies it.
    async fn sign_and_verify(
        registry: &Registry,
        sigstore: &KeylessSigner,
        repo: &str,
        requirement: &Requirement,
        age_secs: i64,
        alter: impl FnOnce(&mut crate::signer::LegacySignature),
    ) -> Verdict {
        let image = TestImage::builder()
            .label(&format!("repo={repo}"))
            .build()
            .unwrap();
        let digest = registry.push(repo, "v1", &image).await.unwrap();
        let leaf = sigstore.leaf(SAN, ISSUER, now() - age_secs);
        let payload = KeySigner::payload(&format!("{}/{repo}", registry.host()), &digest);
        let mut signature = sigstore.legacy(&leaf, payload, leaf.not_before + 60);
        alter(&mut signature);
        push_legacy(registry, repo, &digest, &[signature]).await;
        let image: ImageRef = format!("{}/{repo}:v1", registry.host()).parse().unwrap();
        engine(registry)
            .verify(&image, requirement, None)
            .await
            .unwrap()
            .verdict
    }

    /// `METHOD path` of the requests for manifests of `repo` in the registry's access log,
    /// once there are at least `count` (the log line follows the answer).
    async fn manifest_requests(registry: &Registry, repo: &str, count: usize) -> Vec<String> {
        let prefix = format!("/v2/{repo}/manifests/");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(registry.log_path()).unwrap();
            let requests: Vec<String> = log
                .lines()
                .filter_map(|line| {
                    let (_, request) = line.split_once('"')?;
                    let mut words = request.split(' ');
                    let (method, path) = (words.next()?, words.next()?);
                    path.starts_with(&prefix)
                        .then(|| format!("{method} {path}"))
                })
                .collect();
            if requests.len() >= count || std::time::Instant::now() > deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tag_whose_verdict_is_cached_costs_one_head_and_no_manifest_read() {
        let registry = Registry::start().await.unwrap();
        let sigstore = KeylessSigner::generate();
        let image = TestImage::builder().label("head").build().unwrap();
        let digest = registry.push("app", "v1", &image).await.unwrap();
        let leaf = sigstore.leaf(SAN, ISSUER, now() - 60);
        let payload = KeySigner::payload(&format!("{}/app", registry.host()), &digest);
        let signature = sigstore.legacy(&leaf, payload, leaf.not_before + 60);
        push_legacy(&registry, "app", &digest, &[signature]).await;
        let pushed = manifest_requests(&registry, "app", 0).await.len();
        let engine = engine_keeping(&registry, Duration::from_secs(3600));
        let requirement = policy(&sigstore, SAN);
        let tag: ImageRef = format!("{}/app:v1", registry.host()).parse().unwrap();

        // A miss: the tag resolved by a HEAD, the manifest read by its digest.
        let first = engine.verify(&tag, &requirement, None).await.unwrap();
        assert!(matches!(first.verdict, Verdict::Trusted(_)), "{first:?}");
        assert_eq!(
            (first.digest.to_string(), first.source),
            (digest.clone(), Source::Verified)
        );
        let requests = manifest_requests(&registry, "app", pushed + 2).await;
        let missed = &requests[pushed..];
        assert_eq!(missed[0], "HEAD /v2/app/manifests/v1", "{missed:?}");
        assert!(
            missed.contains(&format!("GET /v2/app/manifests/{digest}")),
            "{missed:?}"
        );
        assert!(
            !missed.iter().any(|r| r == "GET /v2/app/manifests/v1"),
            "{missed:?}"
        );

        // A hit: one HEAD, and nothing read.
        let second = engine.verify(&tag, &requirement, None).await.unwrap();
        assert_eq!(
            (second.digest.to_string(), second.source),
            (digest, Source::Cache)
        );
        let after = manifest_requests(&registry, "app", requests.len() + 1).await;
        assert_eq!(after[requests.len()..], ["HEAD /v2/app/manifests/v1"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keyless_signature_is_trusted_long_after_its_certificate_expired() {
        let registry = Registry::start().await.unwrap();
        let sigstore = KeylessSigner::generate();
        // Issued two hours ago, valid ten minutes: expired now, valid when logged.
        let verdict = sign_and_verify(
            &registry,
            &sigstore,
            "app",
            &policy(&sigstore, SAN),
            7200,
            |_| {},
        )
        .await;
        match verdict {
            Verdict::Trusted(signer) => {
                assert_eq!(signer.identity, SAN);
                assert_eq!(signer.issuer.as_deref(), Some(ISSUER));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_identity_is_not_trusted() {
        let registry = Registry::start().await.unwrap();
        let sigstore = KeylessSigner::generate();
        let requirement = policy(&sigstore, "someone-else@example.com");
        let verdict = sign_and_verify(&registry, &sigstore, "app", &requirement, 60, |_| {}).await;
        assert!(
            matches!(verdict, Verdict::Rejected(Rejection::IdentityNotTrusted(_))),
            "{verdict:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn certificate_from_another_ca_is_untrusted() {
        let registry = Registry::start().await.unwrap();
        let sigstore = KeylessSigner::generate();
        let stranger = KeylessSigner::generate();
        let mut requirement = policy(&stranger, SAN);
        // Trust the stranger's CA but the signer's Rekor key: only the chain fails.
        let mut cosign = CosignPolicy::clone(requirement.cosign.as_ref().unwrap());
        cosign.rekor_keys = vec![PublicKey::from_pem(sigstore.rekor_pem().as_bytes())
            .unwrap()
            .into()];
        requirement.cosign = Some(Arc::new(cosign));
        let verdict = sign_and_verify(&registry, &sigstore, "app", &requirement, 60, |_| {}).await;
        assert!(
            matches!(verdict, Verdict::Rejected(Rejection::UntrustedRoot(_))),
            "{verdict:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payload_altered_after_signing_is_tampered() {
        let registry = Registry::start().await.unwrap();
        let sigstore = KeylessSigner::generate();
        let verdict = sign_and_verify(
            &registry,
            &sigstore,
            "app",
            &policy(&sigstore, SAN),
            60,
            |s| {
                s.payload.push(b' ');
            },
        )
        .await;
        assert!(
            matches!(verdict, Verdict::Rejected(Rejection::Tampered(_))),
            "{verdict:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_certificate_without_a_log_entry_is_expired() {
        let registry = Registry::start().await.unwrap();
        let sigstore = KeylessSigner::generate();
        let mut requirement = policy(&sigstore, SAN);
        let mut cosign = CosignPolicy::clone(requirement.cosign.as_ref().unwrap());
        cosign.require_tlog = false;
        requirement.cosign = Some(Arc::new(cosign));
        let verdict = sign_and_verify(&registry, &sigstore, "app", &requirement, 7200, |s| {
            s.annotations.remove("dev.sigstore.cosign/bundle");
        })
        .await;
        assert!(
            matches!(verdict, Verdict::Rejected(Rejection::Expired(_))),
            "{verdict:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_entry_of_a_kind_crigate_does_not_verify_is_unsupported() {
        let registry = Registry::start().await.unwrap();
        let sigstore = KeylessSigner::generate();
        let image = TestImage::builder().label("kind").build().unwrap();
        let digest = registry.push("app", "v1", &image).await.unwrap();
        let leaf = sigstore.leaf(SAN, ISSUER, now() - 60);
        let payload = KeySigner::payload(&format!("{}/app", registry.host()), &digest);
        let signature = sigstore.legacy_logged_as(&leaf, payload, leaf.not_before + 30, "intoto");
        push_legacy(&registry, "app", &digest, &[signature]).await;
        let image: ImageRef = format!("{}/app:v1", registry.host()).parse().unwrap();
        let requirement = policy(&sigstore, SAN);
        let verdict = engine(&registry)
            .verify(&image, &requirement, None)
            .await
            .unwrap()
            .verdict;
        assert!(
            matches!(
                verdict,
                Verdict::Rejected(Rejection::UnsupportedAlgorithm(_))
            ),
            "{verdict:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signature_blob_over_the_size_limit_is_an_error_not_a_verdict() {
        let registry = Registry::start().await.unwrap();
        let image = TestImage::builder().label("big").build().unwrap();
        let digest = registry.push("app", "v1", &image).await.unwrap();
        // A 1 MiB "payload" whose descriptor claims 300 bytes: the read stops at crigate's
        // signature blob limit, whatever the descriptor said.
        let blob = vec![b'x'; 1024 * 1024];
        let blob_digest = registry.push_blob("app", &blob).await.unwrap();
        let config = registry.push_blob("app", b"{}").await.unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [{
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "digest": blob_digest,
                "size": 300,
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
            }],
        }))
        .unwrap();
        let tag = format!("{}.sig", digest.replace(':', "-"));
        registry
            .push_manifest(
                "app",
                &tag,
                "application/vnd.oci.image.manifest.v1+json",
                &manifest,
            )
            .await
            .unwrap();
        let sigstore = KeylessSigner::generate();
        let image: ImageRef = format!("{}/app:v1", registry.host()).parse().unwrap();
        let error = engine(&registry)
            .verify(&image, &policy(&sigstore, SAN), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                crigate::verify::engine::Error::Registry(crigate::registry::Error::TooLarge { .. })
            ),
            "{error:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_entry_signed_by_another_log_is_untrusted() {
        let registry = Registry::start().await.unwrap();
        let sigstore = KeylessSigner::generate();
        let mut requirement = policy(&sigstore, SAN);
        let mut cosign = CosignPolicy::clone(requirement.cosign.as_ref().unwrap());
        cosign.rekor_keys =
            vec![
                PublicKey::from_pem(KeylessSigner::generate().rekor_pem().as_bytes())
                    .unwrap()
                    .into(),
            ];
        requirement.cosign = Some(Arc::new(cosign));
        let verdict = sign_and_verify(&registry, &sigstore, "app", &requirement, 60, |_| {}).await;
        assert!(
            matches!(verdict, Verdict::Rejected(Rejection::UntrustedRoot(_))),
            "{verdict:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_verifiers_are_used_and_selectable() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("app").await;
    f.signer.sign_legacy(&f.registry, "app", &digest).await;
    let other = f.dir_path().join("other.pub");
    std::fs::write(&other, KeySigner::generate().public_pem()).unwrap();
    let config = f.dir_path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[registry]\nplain_http = [\"{host}\"]\n\n[verifiers.release]\nkind = \"cosign\"\nkeys = [\"{key}\"]\nrequire_tlog = false\n\n\
             [verifiers.stranger]\nkind = \"cosign\"\nkeys = [\"{other}\"]\nrequire_tlog = false\n",
            host = f.registry.host(),
            key = f.key.display(),
            other = other.display()
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let output = Command::new(crigate_binary())
            .args([
                "verify",
                &f.reference("app"),
                "--output",
                "json",
                "--config",
            ])
            .arg(&config)
            .args(extra)
            .output()
            .unwrap();
        let json: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&output.stderr).into_owned())
        });
        (output.status.code().unwrap(), json)
    };
    let (code, json) = run(&[]);
    assert_eq!(
        code, TRUSTED,
        "any configured verifier may establish trust: {json}"
    );
    let (code, json) = run(&["--verifier", "stranger"]);
    assert_eq!(
        (code, reason(&json)),
        (REJECTED, "untrusted_root"),
        "{json}"
    );
    let (code, _) = run(&["--verifier", "nonexistent"]);
    assert_eq!(code, ERROR);

    // Each verifier is asked on its own: `stranger`'s relaxed docker_reference does not
    // apply to `release`'s key. A signature by that key naming another repository is
    // refused by `release`, and `stranger` has no signature of its own key.
    let (digest, _) = f.image("copied").await;
    let signature = f
        .signer
        .legacy(KeySigner::payload("registry.example/other-app", &digest));
    push_legacy(&f.registry, "copied", &digest, &[signature]).await;
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}docker_reference = \"not-checked\"\n"),
    )
    .unwrap();
    let output = Command::new(crigate_binary())
        .args([
            "verify",
            &f.reference("copied"),
            "--output",
            "json",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (output.status.code(), reason(&json)),
        (Some(REJECTED), "identity_not_trusted"),
        "{json}"
    );
}

/// A mirror whose referrers of the image are other artifacts (an SBOM) does not hide the
/// cosign bundle the registry itself holds: the registry is asked next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_holding_other_referrers_does_not_hide_the_registrys_signature() {
    let f = Fixture::new().await;
    let mirror = Registry::start().await.unwrap();
    let (digest, image) = f.image("app").await;
    assert_eq!(mirror.push("app", "v1", &image).await.unwrap(), digest);
    let subject = serde_json::json!({
        "mediaType": image.manifest_media_type(),
        "digest": digest,
        "size": image.manifest_size(),
    });
    crate::signer::push_referrer(
        &mirror,
        "app",
        &digest,
        "application/spdx+json",
        b"{}",
        subject.clone(),
    )
    .await;
    // And one listed by its config's empty type, as go-containerregistry lists what it
    // pushes: only its manifest says it is no signature.
    let empty = mirror.push_blob("app", b"{}").await.unwrap();
    let sbom = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cyclonedx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
        "subject": subject,
    });
    crate::signer::list_referrer(
        &mirror,
        "app",
        &digest,
        &sbom,
        "application/vnd.oci.empty.v1+json",
    )
    .await;
    f.signer.sign_bundle(&f.registry, "app", &image).await;
    let hosts = f.dir_path().join("certs.d");
    let upstream = f.registry.host();
    std::fs::create_dir_all(hosts.join(&upstream)).unwrap();
    std::fs::write(
        hosts.join(&upstream).join("hosts.toml"),
        format!(
            "server = \"http://{upstream}\"\n[host.\"http://{}\"]\n",
            mirror.host()
        ),
    )
    .unwrap();
    let (code, json) = f.verify(
        &f.reference("app"),
        &["--hosts-dir", hosts.to_str().unwrap()],
    );
    assert_eq!(code, TRUSTED, "{json}");
}

/// A mirror without the image and a registry that cannot be reached: the answer is the
/// mirror's "not there", and the registry's failure, which may have hidden the image, is
/// said in a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_host_behind_a_mirrors_not_found_is_warned_of() {
    let f = Fixture::new().await;
    let mirrored = "registry.invalid";
    let hosts = f.mirror_hosts_dir(mirrored);
    let output = Command::new(crigate_binary())
        .args([
            "--log-format",
            "text",
            "verify",
            &format!("{mirrored}/absent:v1"),
        ])
        .args(["--plain-http", "--insecure-ignore-tlog", "--key"])
        .arg(&f.key)
        .args(["--hosts-dir", hosts.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(TRUSTED), "{stderr}");
    assert!(
        stderr.contains("a registry host failed and another had nothing"),
        "{stderr}"
    );
    assert!(stderr.contains(mirrored), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_verified_through_the_mirror_its_hosts_dir_or_containerd_config_names() {
    let f = Fixture::new().await;
    let (digest, _) = f.image("app").await;
    // Signed under the name it is pulled by; the registry of that name is unreachable
    // (RFC 6761 `.invalid`) and mirrored by the local one.
    let mirrored = "registry.invalid";
    let payload = KeySigner::payload(&format!("{mirrored}/app"), &digest);
    push_legacy(&f.registry, "app", &digest, &[f.signer.legacy(payload)]).await;
    let hosts = f.mirror_hosts_dir(mirrored);
    let image = format!("{mirrored}/app:v1");
    let (code, json) = f.verify(&image, &["--hosts-dir", hosts.to_str().unwrap()]);
    assert_eq!(code, TRUSTED, "{json}");
    assert_eq!(json["pinned"], format!("{mirrored}/app@{digest}"));
    // The same mirror in containerd's own config file.
    let containerd = f.dir_path().join("containerd.toml");
    std::fs::write(
        &containerd,
        format!(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"{mirrored}\"]\n  \
             endpoint = [\"http://{}\"]\n",
            f.registry.host()
        ),
    )
    .unwrap();
    let (code, json) = f.verify(
        &image,
        &["--containerd-config", containerd.to_str().unwrap()],
    );
    assert_eq!(code, TRUSTED, "{json}");
    assert_eq!(json["pinned"], format!("{mirrored}/app@{digest}"));
    // Without either the registry itself is asked, and cannot be reached.
    let (code, json) = f.verify(&image, &[]);
    assert_eq!(code, ERROR, "{json}");
}

/// A verification that outlives its deadline is ended with it, not only its caller's wait:
/// a registry that never answers does not keep the job, and its connections, for the
/// client's per-request timeouts (10 s each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_past_its_deadline_lets_go_of_the_registry() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use crigate::oci::ImageRef;
    use crigate::registry::{Client, RegistryConfig};
    use crigate::verify::cache::{CacheConfig, Fingerprint, VerdictCache};
    use crigate::verify::cosign::{CosignPolicy, TrustedKey};
    use crigate::verify::engine::{Engine, Error, Requirement};
    use tokio::io::AsyncReadExt;

    // Takes every connection and request, answers nothing, and notes when each closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (opened, closed) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(Vec::new())));
    let (counter, log) = (opened.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            *counter.lock().unwrap() += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
                log.lock().unwrap().push(Instant::now());
            });
        }
    });
    let cache = VerdictCache::open(CacheConfig {
        positive_ttl: Duration::ZERO,
        negative_ttl: Duration::ZERO,
        max_entries: 16,
        path: None,
    })
    .unwrap();
    let client = Client::new(RegistryConfig {
        plain_http: vec![host.clone()],
        ..RegistryConfig::default()
    })
    .unwrap();
    let engine = Engine::new(client, Arc::new(cache), Duration::from_secs(1));
    let key = KeySigner::generate();
    let requirement = Requirement {
        cosign: Some(Arc::new(CosignPolicy {
            keys: vec![TrustedKey::from_pem("release", key.public_pem().as_bytes()).unwrap()],
            require_tlog: false,
            ..CosignPolicy::default()
        })),
        notation: None,
        fingerprint: Fingerprint::of(b"slow"),
    };
    let image: ImageRef = format!("{host}/app@sha256:{}", "a".repeat(64))
        .parse()
        .unwrap();
    let started = Instant::now();
    let outcome = engine.verify(&image, &requirement, None).await;
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    assert!(*opened.lock().unwrap() > 0, "the registry was never asked");
    // Every connection the verification opened is closed soon after its deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (open, closed) = (*opened.lock().unwrap(), closed.lock().unwrap().len());
        if closed >= open {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {open} connections still open {:?} after the verification began",
            open - closed,
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
