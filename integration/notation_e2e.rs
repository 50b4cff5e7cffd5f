//! `crigate verify --notation-dir` end to end against the real registry, with envelopes
//! from crigate's own Notation signer (`notation_signer`): each test pushes an image,
//! signs it, pushes the signature as a Notation referrer, writes a Notation
//! configuration directory, and checks the exit code and the reported reason code.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::daemon::crigate_binary;
use crate::harness::process::{free_port, kill_child};
use crate::harness::{Registry, TestImage};
use crate::notation_signer::{
    long_form_lengths, push_signatures, statement, trust_policy, trust_policy_of,
    write_notation_dir, ymd, Alg, Ess, Format, KeyKind, NotationCa, NotationLeaf, NotationTsa,
    Scheme, SignOptions, SignedEnvelope, StoreFile, Target,
};

/// Runs `crigate verify IMAGE --plain-http --output json --notation-dir DIR`, returning
/// the exit code, the JSON report and stderr.
fn verify_with_logs(image: &str, dir: &Path, env: &[(&str, &str)]) -> (i32, Value, String) {
    let output = Command::new(crigate_binary())
        .args(["--log-format", "json", "verify", image, "--plain-http"])
        .args(["--output", "json", "--notation-dir"])
        .arg(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}\n{stderr}"));
    (output.status.code().unwrap(), json, stderr)
}

fn verify(image: &str, dir: &Path) -> (i32, Value) {
    let (code, json, _) = verify_with_logs(image, dir, &[]);
    (code, json)
}

/// As [`verify`], with `--offline-revocation`.
fn verify_offline(image: &str, dir: &Path) -> (i32, Value) {
    let output = Command::new(crigate_binary())
        .args(["--log-format", "json", "verify", image, "--plain-http"])
        .args(["--output", "json", "--offline-revocation", "--notation-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap();
    (output.status.code().unwrap(), json)
}

/// The reason code of a report, or `trusted`.
fn outcome(json: &Value) -> &str {
    match json["result"].as_str() {
        Some("trusted") => "trusted",
        _ => json["reason"]["code"].as_str().unwrap_or("(no reason)"),
    }
}

/// Pushes a fresh image `repo:v1` and returns its descriptor.
pub(crate) async fn push_image(registry: &Registry, repo: &str) -> Target {
    let image = TestImage::builder().label(repo).build().unwrap();
    let digest = registry.push(repo, "v1", &image).await.unwrap();
    Target::new(
        image.manifest_media_type(),
        &digest,
        image.manifest_size() as u64,
    )
}

/// A CA store named `name` holding `ca`.
pub(crate) fn ca_store<'a>(kind: &'a str, name: &'a str, ca: &'a NotationCa) -> StoreFile<'a> {
    StoreFile {
        kind,
        name,
        file: "root.pem",
        pem: &ca.cert_pem,
    }
}

/// One scenario: an image in `repo` signed with `envelopes` (made from its descriptor),
/// verified under `policy` with `stores`. Returns the exit code and report.
async fn scenario(
    registry: &Registry,
    repo: &str,
    sign: impl FnOnce(&Target) -> Vec<SignedEnvelope>,
    policy: &Value,
    stores: &[StoreFile<'_>],
) -> (i32, Value) {
    let target = push_image(registry, repo).await;
    let envelopes = sign(&target);
    if !envelopes.is_empty() {
        push_signatures(registry, repo, &target, &envelopes).await;
    }
    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(dir.path(), policy, stores);
    let (code, json) = verify(&format!("{}/{repo}:v1", registry.host()), dir.path());
    if code == 0 {
        assert_eq!(json["digest"], target.digest.as_str(), "{json}");
    }
    (code, json)
}

/// A strict policy over every repository trusting `store` (`ca:…` or `signingAuthority:…`)
/// and any identity.
pub(crate) fn strict(store: &str) -> Value {
    trust_policy("crigate-e2e", &["*"], "strict", &[store], &["*"])
}

/// Asserts that `(code, json)` is a rejection with `code`.
fn assert_rejected(case: &str, (code, json): (i32, Value), expected: &str) {
    assert_eq!((code, outcome(&json)), (1, expected), "{case}: {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signatures_of_each_format_algorithm_and_scheme_are_trusted() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let cases = [
        (Format::Jws, KeyKind::Rsa2048, Scheme::X509),
        (Format::Cose, KeyKind::Rsa2048, Scheme::X509),
        (Format::Jws, KeyKind::Rsa3072, Scheme::X509),
        (Format::Cose, KeyKind::Rsa3072, Scheme::SigningAuthority),
        (Format::Jws, KeyKind::P256, Scheme::SigningAuthority),
        (Format::Cose, KeyKind::P256, Scheme::X509),
        (Format::Jws, KeyKind::P384, Scheme::X509),
        (Format::Cose, KeyKind::P384, Scheme::SigningAuthority),
        (Format::Jws, KeyKind::Rsa2048, Scheme::SigningAuthority),
    ];
    for (index, (format, kind, scheme)) in cases.into_iter().enumerate() {
        let case = format!("{format:?} {kind:?} {scheme:?}");
        let cn = format!("signer {index}");
        let leaf = ca.current_leaf(kind, &cn);
        let (store_kind, store) = match scheme {
            Scheme::X509 => ("ca", "ca:e2e"),
            Scheme::SigningAuthority => ("signingAuthority", "signingAuthority:e2e"),
        };
        // The trusted identity names the leaf exactly.
        let policy = trust_policy(
            "crigate-e2e",
            &["*"],
            "strict",
            &[store],
            &[leaf.identity.as_str()],
        );
        let (code, json) = scenario(
            &registry,
            &format!("trusted{index}"),
            |target| vec![leaf.sign(target, &SignOptions::new(format).scheme(scheme))],
            &policy,
            &[ca_store(store_kind, "e2e", &ca)],
        )
        .await;
        assert_eq!((code, outcome(&json)), (0, "trusted"), "{case}: {json}");
        assert_eq!(json["verifier"], "notation", "{case}");
        assert_eq!(json["signer"]["matched"], "crigate-e2e", "{case}");
        let identity = json["signer"]["identity"].as_str().unwrap();
        assert!(
            identity.contains(&format!("CN={cn}")) && identity.contains("O=crigate test"),
            "{case}: {identity}"
        );
    }
}

/// A listed signature that cannot be fetched (its manifest deleted) does not hide a
/// trusted one beside it; alone, the image has no signature: the registry says it holds
/// none, which is a rejection, not an error `on_error` could let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_that_cannot_be_fetched_hides_no_trusted_one() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.current_leaf(KeyKind::P256, "signer");
    let repo = "unfetchable";
    let target = push_image(&registry, repo).await;
    let other = ca.current_leaf(KeyKind::P256, "other signer");
    push_signatures(
        &registry,
        repo,
        &target,
        &[
            other.sign(&target, &SignOptions::new(Format::Cose)),
            leaf.sign(&target, &SignOptions::new(Format::Jws)),
        ],
    )
    .await;
    // The referrers tag schema index lists both; the first goes from the registry.
    let (_, index) = registry
        .manifest(repo, &target.digest.replace(':', "-"))
        .await
        .unwrap();
    let index: Value = serde_json::from_slice(&index).unwrap();
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{index}");
    registry.delete_manifest(repo, listed[0]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(dir.path(), &strict("ca:e2e"), &[ca_store("ca", "e2e", &ca)]);
    let image = format!("{}/{repo}:v1", registry.host());
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");
    assert!(
        json["signer"]["identity"]
            .as_str()
            .is_some_and(|id| id.contains("CN=signer")),
        "{json}"
    );

    // Both gone: no signature.
    registry.delete_manifest(repo, listed[1]).await.unwrap();
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (1, "no_signature"), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signature_from_another_ca_is_untrusted_root() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let other = NotationCa::generate("some other CA");
    let leaf = ca.current_leaf(KeyKind::P256, "signer");
    for format in [Format::Jws, Format::Cose] {
        let result = scenario(
            &registry,
            &format!("other-ca-{format:?}").to_lowercase(),
            |target| vec![leaf.sign(target, &SignOptions::new(format))],
            &strict("ca:e2e"),
            &[ca_store("ca", "e2e", &other)],
        )
        .await;
        assert_rejected(&format!("{format:?}"), result, "untrusted_root");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signature_under_the_other_scheme_is_untrusted_root() {
    // Signing scheme spec: notary.x509 anchors in `ca` stores and
    // notary.x509.signingAuthority in `signingAuthority` stores, never across.
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.current_leaf(KeyKind::Rsa2048, "signer");
    let result = scenario(
        &registry,
        "sa-under-ca",
        |target| {
            vec![leaf.sign(
                target,
                &SignOptions::new(Format::Jws).scheme(Scheme::SigningAuthority),
            )]
        },
        &strict("ca:e2e"),
        &[ca_store("ca", "e2e", &ca)],
    )
    .await;
    assert_rejected("signingAuthority under ca", result, "untrusted_root");
    let result = scenario(
        &registry,
        "x509-under-sa",
        |target| vec![leaf.sign(target, &SignOptions::new(Format::Cose))],
        &strict("signingAuthority:e2e"),
        &[ca_store("signingAuthority", "e2e", &ca)],
    )
    .await;
    assert_rejected("x509 under signingAuthority", result, "untrusted_root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signer_outside_trusted_identities_is_identity_not_trusted() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.current_leaf(KeyKind::P384, "signer");
    let policy = trust_policy(
        "crigate-e2e",
        &["*"],
        "strict",
        &["ca:e2e"],
        &["x509.subject: C=US, ST=WA, O=crigate test, CN=someone else"],
    );
    for format in [Format::Jws, Format::Cose] {
        let result = scenario(
            &registry,
            &format!("identity-{format:?}").to_lowercase(),
            |target| vec![leaf.sign(target, &SignOptions::new(format))],
            &policy,
            &[ca_store("ca", "e2e", &ca)],
        )
        .await;
        assert_rejected(&format!("{format:?}"), result, "identity_not_trusted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signature_for_another_digest_is_digest_mismatch() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.current_leaf(KeyKind::Rsa2048, "signer");
    for format in [Format::Jws, Format::Cose] {
        // A valid signature whose targetArtifact is another image's descriptor, attached
        // as a referrer of this image.
        let result = scenario(
            &registry,
            &format!("other-digest-{format:?}").to_lowercase(),
            |target| {
                let other = Target::new(
                    &target.media_type,
                    "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0",
                    target.size,
                );
                vec![leaf.sign(&other, &SignOptions::new(format))]
            },
            &strict("ca:e2e"),
            &[ca_store("ca", "e2e", &ca)],
        )
        .await;
        assert_rejected(&format!("{format:?}"), result, "digest_mismatch");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_payload_altered_after_signing_is_tampered() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    for (format, kind) in [
        (Format::Jws, KeyKind::Rsa2048),
        (Format::Cose, KeyKind::P256),
    ] {
        let leaf = ca.current_leaf(kind, "signer");
        let result = scenario(
            &registry,
            &format!("tampered-{format:?}").to_lowercase(),
            |target| vec![leaf.sign(target, &SignOptions::new(format).tamper_payload())],
            &strict("ca:e2e"),
            &[ca_store("ca", "e2e", &ca)],
        )
        .await;
        assert_rejected(&format!("{format:?} {kind:?}"), result, "tampered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signature_past_its_expiry_is_expired_under_strict() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.current_leaf(KeyKind::P256, "signer");
    for format in [Format::Jws, Format::Cose] {
        let options = SignOptions::new(format)
            .signing_time(ymd(2026, 2, 1))
            .expiry(ymd(2026, 2, 2));
        let result = scenario(
            &registry,
            &format!("expired-sig-{format:?}").to_lowercase(),
            |target| vec![leaf.sign(target, &options)],
            &strict("ca:e2e"),
            &[ca_store("ca", "e2e", &ca)],
        )
        .await;
        assert_rejected(&format!("{format:?}"), result, "expired");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_expired_certificate_without_timestamp_is_expired_under_strict() {
    // Signed while the certificate was valid (2025-03-01), verified after its notAfter
    // (2025-06-01): without an authentic timestamp the chain must be valid now
    // (signature specification, "Other requirements" 4).
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.leaf(KeyKind::Rsa2048, "signer", ymd(2025, 1, 1), ymd(2025, 6, 1));
    for format in [Format::Jws, Format::Cose] {
        let options = SignOptions::new(format).signing_time(ymd(2025, 3, 1));
        let result = scenario(
            &registry,
            &format!("expired-cert-{format:?}").to_lowercase(),
            |target| vec![leaf.sign(target, &options)],
            &strict("ca:e2e"),
            &[ca_store("ca", "e2e", &ca)],
        )
        .await;
        assert_rejected(&format!("{format:?}"), result, "expired");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_unknown_critical_header_is_unsupported_algorithm() {
    // Signature specification, "Extended attributes": unknown critical attributes must
    // fail verification; crigate classes them with what it cannot process.
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.current_leaf(KeyKind::P256, "signer");
    for format in [Format::Jws, Format::Cose] {
        let options = SignOptions::new(format).extra_critical("com.example.must-understand", "1");
        let result = scenario(
            &registry,
            &format!("crit-{format:?}").to_lowercase(),
            |target| vec![leaf.sign(target, &options)],
            &strict("ca:e2e"),
            &[ca_store("ca", "e2e", &ca)],
        )
        .await;
        assert_rejected(&format!("{format:?}"), result, "unsupported_algorithm");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_algorithm_that_does_not_fit_the_key_is_unsupported_algorithm() {
    // Signature specification, "Algorithm Selection": RSA-3072 signs with PS384 only.
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.current_leaf(KeyKind::Rsa3072, "signer");
    let result = scenario(
        &registry,
        "rsa3072-ps256",
        |target| vec![leaf.sign(target, &SignOptions::new(Format::Jws).alg(Alg::Ps256))],
        &strict("ca:e2e"),
        &[ca_store("ca", "e2e", &ca)],
    )
    .await;
    assert_rejected("RSA-3072 with PS256", result, "unsupported_algorithm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_repository_outside_every_registry_scope_is_untrusted_root() {
    // Trust policy spec: "if there is no applicable trust policy then implementations
    // ... MUST consider the artifact as untrusted"; crigate reports untrusted_root.
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.current_leaf(KeyKind::P256, "signer");
    let policy = trust_policy(
        "elsewhere",
        &["registry.example.com/other"],
        "strict",
        &["ca:e2e"],
        &["*"],
    );
    let result = scenario(
        &registry,
        "unscoped",
        |target| vec![leaf.sign(target, &SignOptions::new(Format::Jws))],
        &policy,
        &[ca_store("ca", "e2e", &ca)],
    )
    .await;
    assert_rejected("scope mismatch", result, "untrusted_root");

    // The scope names the repository exactly: the same signature is trusted.
    let scope = format!("{}/scoped", registry.host());
    let policy = trust_policy("here", &[scope.as_str()], "strict", &["ca:e2e"], &["*"]);
    let (code, json) = scenario(
        &registry,
        "scoped",
        |target| vec![leaf.sign(target, &SignOptions::new(Format::Jws))],
        &policy,
        &[ca_store("ca", "e2e", &ca)],
    )
    .await;
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");
    assert_eq!(json["signer"]["matched"], "here");
}

/// Each verification level against the signature it treats differently (trust policy
/// spec, "Signature Verification details", level table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_levels_enforce_or_log_as_the_spec_says() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let stranger = NotationCa::generate("stranger CA");
    let leaf = ca.current_leaf(KeyKind::P256, "signer");
    let untrusted_leaf = stranger.current_leaf(KeyKind::P256, "stranger");
    let stores = [ca_store("ca", "e2e", &ca)];
    let level = |level: &str| trust_policy("crigate-e2e", &["*"], level, &["ca:e2e"], &["*"]);
    let expired = |format| {
        SignOptions::new(format)
            .signing_time(ymd(2026, 2, 1))
            .expiry(ymd(2026, 2, 2))
    };

    // strict: expiry is enforced.
    let result = scenario(
        &registry,
        "strict-expired",
        |target| vec![leaf.sign(target, &expired(Format::Cose))],
        &level("strict"),
        &stores,
    )
    .await;
    assert_rejected("strict, expired signature", result, "expired");

    // permissive: expiry is logged, and the signature is trusted.
    let target = push_image(&registry, "permissive-expired").await;
    push_signatures(
        &registry,
        "permissive-expired",
        &target,
        &[leaf.sign(&target, &expired(Format::Jws))],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(dir.path(), &level("permissive"), &stores);
    let (code, json, stderr) = verify_with_logs(
        &format!("{}/permissive-expired:v1", registry.host()),
        dir.path(),
        &[("RUST_LOG", "crigate=debug")],
    );
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");
    let logged = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .any(|event| {
            event["message"] == "notation check failure logged, not enforced"
                && event["check"] == "Expiry"
        });
    assert!(
        logged,
        "permissive should log the expiry failure:\n{stderr}"
    );
    // And the admission despite it is said at warn, for the node's log.
    let warned = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .any(|event| {
            event["level"] == "WARN"
                && event["message"]
                    == "Notation signature accepted with a failure its trust policy level only logs"
                && event["check"] == "Expiry"
                && event["policy"].is_string()
        });
    assert!(warned, "{stderr}");

    // permissive still enforces authenticity.
    let result = scenario(
        &registry,
        "permissive-stranger",
        |target| vec![untrusted_leaf.sign(target, &SignOptions::new(Format::Jws))],
        &level("permissive"),
        &stores,
    )
    .await;
    assert_rejected("permissive, untrusted signer", result, "untrusted_root");

    // audit: an untrusted signer is trusted (authenticity is only logged) ...
    let (code, json) = scenario(
        &registry,
        "audit-stranger",
        |target| vec![untrusted_leaf.sign(target, &SignOptions::new(Format::Cose))],
        &level("audit"),
        &stores,
    )
    .await;
    assert_eq!((code, outcome(&json)), (0, "trusted"), "audit: {json}");
    // ... but integrity is not.
    let result = scenario(
        &registry,
        "audit-tampered",
        |target| vec![untrusted_leaf.sign(target, &SignOptions::new(Format::Jws).tamper_payload())],
        &level("audit"),
        &stores,
    )
    .await;
    assert_rejected("audit, tampered", result, "tampered");

    // skip: a signature that would fail every check is not looked at. The spec forbids
    // skip on the global scope, so the statement names the repository.
    let (code, json) = scenario(
        &registry,
        "skip-stranger",
        |target| vec![untrusted_leaf.sign(target, &SignOptions::new(Format::Jws))],
        &skip_one(&registry, "skip-stranger"),
        &stores,
    )
    .await;
    assert_eq!((code, outcome(&json)), (0, "trusted"), "skip: {json}");
    assert_eq!(json["signer"]["matched"], "unsigned-ok", "{json}");
}

/// `skip` for `repo` of `registry`, strict over `ca:e2e` everywhere else.
fn skip_one(registry: &Registry, repo: &str) -> Value {
    let scope = format!("{}/{repo}", registry.host());
    trust_policy_of(vec![
        statement("unsigned-ok", &[scope.as_str()], "skip", &[], &[]),
        statement("crigate-e2e", &["*"], "strict", &["ca:e2e"], &["*"]),
    ])
}

/// Trust policy spec, "Signature Verification" step 2: "If signatureVerification level
/// is set to skip in the trust policy, return success" - also for an image with no
/// signature at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_skip_level_trusts_an_unsigned_image() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let (code, json) = scenario(
        &registry,
        "skip-unsigned",
        |_| Vec::new(),
        &skip_one(&registry, "skip-unsigned"),
        &[ca_store("ca", "e2e", &ca)],
    )
    .await;
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");
}

/// notation-go's `SkipVerify` comes before any lookup: a repository under `skip` is
/// trusted without asking the registry for signatures, so a signature listing that
/// cannot be read (here: the referrers index names a manifest that is gone) refuses
/// nothing. Under `strict` the image has no signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_skip_level_asks_the_registry_for_no_signature() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.current_leaf(KeyKind::P256, "signer");
    let repo = "skip-broken";
    let target = push_image(&registry, repo).await;
    let envelope = leaf.sign(&target, &SignOptions::new(Format::Jws));
    push_signatures(&registry, repo, &target, &[envelope]).await;
    let (_, index) = registry
        .manifest(repo, &target.digest.replace(':', "-"))
        .await
        .unwrap();
    let index: Value = serde_json::from_slice(&index).unwrap();
    let listed = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    registry.delete_manifest(repo, &listed).await.unwrap();

    let image = format!("{}/{repo}:v1", registry.host());
    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(
        dir.path(),
        &skip_one(&registry, repo),
        &[ca_store("ca", "e2e", &ca)],
    );
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");

    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(dir.path(), &strict("ca:e2e"), &[ca_store("ca", "e2e", &ca)]);
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (1, "no_signature"), "{json}");
}

/// Signing scheme spec: under `notary.x509.signingAuthority` the signing time is
/// authentic, so the chain is judged at that time, not now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signing_authority_signature_outlives_its_certificate() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let leaf = ca.leaf(KeyKind::P256, "signer", ymd(2025, 1, 1), ymd(2025, 6, 1));
    for format in [Format::Jws, Format::Cose] {
        let (code, json) = scenario(
            &registry,
            &format!("sa-expired-cert-{format:?}").to_lowercase(),
            |target| {
                let options = SignOptions::new(format)
                    .scheme(Scheme::SigningAuthority)
                    .signing_time(ymd(2025, 3, 1));
                vec![leaf.sign(target, &options)]
            },
            &strict("signingAuthority:e2e"),
            &[ca_store("signingAuthority", "e2e", &ca)],
        )
        .await;
        assert_eq!((code, outcome(&json)), (0, "trusted"), "{format:?}: {json}");
        // An authentic signing time after notAfter.
        let result = scenario(
            &registry,
            &format!("sa-late-{format:?}").to_lowercase(),
            |target| {
                let options = SignOptions::new(format)
                    .scheme(Scheme::SigningAuthority)
                    .signing_time(ymd(2025, 7, 1));
                vec![leaf.sign(target, &options)]
            },
            &strict("signingAuthority:e2e"),
            &[ca_store("signingAuthority", "e2e", &ca)],
        )
        .await;
        assert_rejected(
            &format!("{format:?}, signed after notAfter"),
            result,
            "expired",
        );
    }
}

/// Trust policy spec: the artifact is trusted if any signature verifies; otherwise
/// crigate reports the rejection of the signature that got furthest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_one_trusted_signature_among_several_is_enough() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let stranger = NotationCa::generate("stranger CA");
    let leaf = ca.current_leaf(KeyKind::Rsa2048, "signer");
    let stranger_leaf = stranger.current_leaf(KeyKind::P256, "stranger");
    let (code, json) = scenario(
        &registry,
        "several",
        |target| {
            vec![
                stranger_leaf.sign(target, &SignOptions::new(Format::Cose)),
                leaf.sign(target, &SignOptions::new(Format::Jws).tamper_payload()),
                leaf.sign(target, &SignOptions::new(Format::Cose)),
            ]
        },
        &strict("ca:e2e"),
        &[ca_store("ca", "e2e", &ca)],
    )
    .await;
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");
    assert!(
        json["signer"]["identity"]
            .as_str()
            .unwrap()
            .contains("CN=signer"),
        "{json}"
    );

    // Tampered (integrity) and untrusted (authenticity): authenticity got further.
    let result = scenario(
        &registry,
        "several-bad",
        |target| {
            vec![
                leaf.sign(target, &SignOptions::new(Format::Jws).tamper_payload()),
                stranger_leaf.sign(target, &SignOptions::new(Format::Cose)),
            ]
        },
        &strict("ca:e2e"),
        &[ca_store("ca", "e2e", &ca)],
    )
    .await;
    assert_rejected("tampered and untrusted", result, "untrusted_root");
}

/// A leaf valid 2025-01-01 to 2025-06-01, signing on 2025-03-01 with an RFC 3161
/// timestamp from `tsa` made at `stamped_at` (accurate to a second: to be authentic,
/// at least a second after the signing time).
fn timestamped(
    leaf: &NotationLeaf,
    tsa: &NotationTsa,
    format: Format,
    target: &Target,
    stamped_at: i64,
) -> SignedEnvelope {
    stamped_with(leaf, format, target, &|signature| {
        tsa.timestamp(signature, stamped_at)
    })
}

/// [`timestamped`], the token made by `stamp` from the raw signature bytes.
fn stamped_with(
    leaf: &NotationLeaf,
    format: Format,
    target: &Target,
    stamp: &dyn Fn(&[u8]) -> Vec<u8>,
) -> SignedEnvelope {
    leaf.sign_with_timestamp(
        target,
        &SignOptions::new(format).signing_time(ymd(2025, 3, 1)),
        Some(stamp),
    )
}

/// A strict policy over every repository trusting `ca:e2e` and `tsa:e2e-tsa`.
fn strict_with_tsa() -> Value {
    trust_policy(
        "crigate-e2e",
        &["*"],
        "strict",
        &["ca:e2e", "tsa:e2e-tsa"],
        &["*"],
    )
}

/// Stores `ca:e2e` holding `ca` and `tsa:e2e-tsa` holding `tsa_root`.
fn ca_and_tsa<'a>(ca: &'a NotationCa, tsa_root: &'a str) -> Vec<StoreFile<'a>> {
    vec![
        ca_store("ca", "e2e", ca),
        StoreFile {
            kind: "tsa",
            name: "e2e-tsa",
            file: "tsa-root.pem",
            pem: tsa_root,
        },
    ]
}

/// Trust store and trust policy spec, "Validate Trusted Timestamp": with a `tsa` store
/// the chain must be valid at the timestamp, not now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_expired_certificate_with_a_valid_timestamp_is_trusted() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let tsa = NotationTsa::generate("crigate e2e TSA");
    let stores = ca_and_tsa(&ca, &tsa.root_pem);
    let policy = strict_with_tsa();
    for (format, kind) in [
        (Format::Jws, KeyKind::Rsa2048),
        (Format::Cose, KeyKind::P256),
    ] {
        let leaf = ca.leaf(kind, "signer", ymd(2025, 1, 1), ymd(2025, 6, 1));
        let (code, json) = scenario(
            &registry,
            &format!("stamped-{format:?}").to_lowercase(),
            |target| {
                vec![timestamped(
                    &leaf,
                    &tsa,
                    format,
                    target,
                    ymd(2025, 3, 1) + 60,
                )]
            },
            &policy,
            &stores,
        )
        .await;
        assert_eq!(
            (code, outcome(&json)),
            (0, "trusted"),
            "{format:?} {kind:?}: {json}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_timestamp_that_does_not_save_an_expired_certificate_is_rejected() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let tsa = NotationTsa::generate("crigate e2e TSA");
    let other_tsa = NotationTsa::generate("other TSA");
    let leaf = ca.leaf(KeyKind::P384, "signer", ymd(2025, 1, 1), ymd(2025, 6, 1));
    let policy = strict_with_tsa();
    for format in [Format::Jws, Format::Cose] {
        // The TSA does not chain to the tsa store.
        let result = scenario(
            &registry,
            &format!("stranger-tsa-{format:?}").to_lowercase(),
            |target| vec![timestamped(&leaf, &tsa, format, target, ymd(2025, 3, 1))],
            &policy,
            &ca_and_tsa(&ca, &other_tsa.root_pem),
        )
        .await;
        assert_rejected(
            &format!("{format:?}, untrusted TSA"),
            result,
            "untrusted_root",
        );
        // Stamped after the certificate's notAfter.
        let result = scenario(
            &registry,
            &format!("late-stamp-{format:?}").to_lowercase(),
            |target| vec![timestamped(&leaf, &tsa, format, target, ymd(2025, 7, 1))],
            &policy,
            &ca_and_tsa(&ca, &tsa.root_pem),
        )
        .await;
        assert_rejected(&format!("{format:?}, late timestamp"), result, "expired");
        // The token countersigns another signature.
        let result = scenario(
            &registry,
            &format!("foreign-stamp-{format:?}").to_lowercase(),
            |target| {
                let stamp = |_: &[u8]| tsa.timestamp(b"another signature", ymd(2025, 3, 1));
                vec![leaf.sign_with_timestamp(
                    target,
                    &SignOptions::new(format).signing_time(ymd(2025, 3, 1)),
                    Some(&stamp),
                )]
            },
            &policy,
            &ca_and_tsa(&ca, &tsa.root_pem),
        )
        .await;
        assert_rejected(
            &format!("{format:?}, foreign timestamp"),
            result,
            "tampered",
        );
    }
}

/// notation-go `verifyTimestamp`: a timestamp countersigns the finished signature, so one
/// whose range starts before the signing time the signature claims is refused, as is a
/// token whose signing-certificate attribute (RFC 2634, SHA-1) names another
/// certificate than the TSA's; one naming it rightly saves the expired certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_a_timestamp_is_held_to_the_signing_time_and_its_named_tsa() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let tsa = NotationTsa::generate("crigate e2e TSA");
    let leaf = ca.leaf(KeyKind::P256, "signer", ymd(2025, 1, 1), ymd(2025, 6, 1));
    let policy = strict_with_tsa();
    let stores = ca_and_tsa(&ca, &tsa.root_pem);
    for format in [Format::Jws, Format::Cose] {
        let name = |case: &str| format!("{case}-{format:?}").to_lowercase();
        let signed = |target: &Target, stamped_at: i64, ess: Ess| {
            vec![stamped_with(&leaf, format, target, &|signature| {
                tsa.timestamp_naming(signature, stamped_at, ess.clone())
            })]
        };
        // Stamped a month before the claimed signing time, inside the chain's validity.
        let early = scenario(
            &registry,
            &name("early-stamp"),
            |target| signed(target, ymd(2025, 2, 1), Ess::V2),
            &policy,
            &stores,
        )
        .await;
        assert_rejected(&format!("{format:?}, early timestamp"), early, "tampered");
        let (code, json) = scenario(
            &registry,
            &name("ess-v1"),
            |target| signed(target, ymd(2025, 3, 1) + 60, Ess::V1),
            &policy,
            &stores,
        )
        .await;
        assert_eq!((code, outcome(&json)), (0, "trusted"), "{format:?}: {json}");
        let other = scenario(
            &registry,
            &name("ess-v1-other"),
            |target| signed(target, ymd(2025, 3, 1) + 60, Ess::V1Hash(vec![0x5a; 20])),
            &policy,
            &stores,
        )
        .await;
        assert_rejected(
            &format!("{format:?}, ESS v1 names another"),
            other,
            "tampered",
        );
    }
}

/// A TSA may send its token with lengths in BER's long form; notation converts them to
/// DER before reading it (tspclient-go `ConvertToDER`), and so does crigate. An
/// indefinite length, which notation refuses, stays malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_a_timestamp_token_with_long_form_lengths_is_read_as_notation_reads_it() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let tsa = NotationTsa::generate("crigate e2e TSA");
    let leaf = ca.leaf(KeyKind::P256, "signer", ymd(2025, 1, 1), ymd(2025, 6, 1));
    let policy = strict_with_tsa();
    let stores = ca_and_tsa(&ca, &tsa.root_pem);
    let indefinite = |der: Vec<u8>| {
        // The outer SEQUENCE in the indefinite form: 0x30 0x80, its members, two zeros.
        let header = match der[1] {
            short if short < 0x80 => 2,
            long => 2 + usize::from(long & 0x7f),
        };
        [&[0x30, 0x80][..], &der[header..], &[0, 0]].concat()
    };
    for format in [Format::Jws, Format::Cose] {
        let signed = |target: &Target, transform: &dyn Fn(Vec<u8>) -> Vec<u8>| {
            vec![stamped_with(&leaf, format, target, &|signature| {
                transform(tsa.timestamp(signature, ymd(2025, 3, 1) + 60))
            })]
        };
        let (code, json) = scenario(
            &registry,
            &format!("long-form-{format:?}").to_lowercase(),
            |target| signed(target, &|der| long_form_lengths(&der)),
            &policy,
            &stores,
        )
        .await;
        assert_eq!((code, outcome(&json)), (0, "trusted"), "{format:?}: {json}");
        let result = scenario(
            &registry,
            &format!("indefinite-{format:?}").to_lowercase(),
            |target| signed(target, &indefinite),
            &policy,
            &stores,
        )
        .await;
        assert_rejected(
            &format!("{format:?}, indefinite length"),
            result,
            "malformed",
        );
    }
}

/// The "Ratify Sample" CA certificate of Ratify's AKS example (the `certstore-inline`
/// CertificateStore's `parameters.value`), extracted textually: the lines between the
/// PEM markers, indentation removed.
fn ratify_sample_ca_pem() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/ratify-aks-verify-config.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
    let begin = lines
        .iter()
        .position(|l| *l == "-----BEGIN CERTIFICATE-----")
        .unwrap();
    let end = lines
        .iter()
        .position(|l| *l == "-----END CERTIFICATE-----")
        .unwrap();
    assert!(
        yaml.contains("name: certstore-inline"),
        "{} changed",
        path.display()
    );
    let mut pem = lines[begin..=end].join("\n");
    pem.push('\n');
    pem
}

/// Ratify's documented trust policy for that store (the `verifier-notary-inline`
/// Verifier's `trustPolicyDoc`), as JSON.
const RATIFY_TRUST_POLICY: &str = r#"{
    "version": "1.0",
    "trustPolicies": [{
        "name": "default",
        "registryScopes": ["*"],
        "signatureVerification": {"level": "strict"},
        "trustStores": ["ca:certs"],
        "trustedIdentities": ["*"]
    }]
}"#;

#[test]
fn notation_ratify_sample_ca_loads_as_a_ca_store_and_its_policy_applies() {
    use crigate::oci::Descriptor;
    use crigate::verify::notation::{self, NotationConfig};
    use crigate::verify::{Rejection, Verdict};

    let pem = ratify_sample_ca_pem();
    let parsed = ::pem::parse(&pem).unwrap();
    assert_eq!(parsed.tag(), "CERTIFICATE");
    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(
        dir.path(),
        &serde_json::from_str(RATIFY_TRUST_POLICY).unwrap(),
        &[StoreFile {
            kind: "ca",
            name: "certs",
            file: "ratify.pem",
            pem: &pem,
        }],
    );
    let config = NotationConfig::load(dir.path()).unwrap();
    let [statement] = config.policy().policies() else {
        panic!("one statement expected")
    };
    assert_eq!(statement.name, "default");

    // An envelope from a CA that is not Ratify Sample: the policy applies to any
    // repository and rejects it at the trust store.
    let ca = NotationCa::generate("not Ratify Sample");
    let leaf = ca.current_leaf(KeyKind::Rsa2048, "signer");
    let target = Target::new(
        "application/vnd.oci.image.manifest.v1+json",
        "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9",
        517,
    );
    let image = Descriptor::new(
        &target.media_type,
        target.digest.parse().unwrap(),
        target.size,
    );
    for format in [Format::Jws, Format::Cose] {
        let envelope = leaf.sign(&target, &SignOptions::new(format));
        let result = notation::verify(
            &[(envelope.media_type, envelope.bytes)],
            &image,
            "myregistry.azurecr.io/net-monitor",
            &config,
            std::time::SystemTime::now(),
        );
        assert!(
            matches!(
                result.verdict,
                Verdict::Rejected(Rejection::UntrustedRoot(_))
            ),
            "{format:?}: {:?}",
            result.verdict
        );
        assert_eq!(result.outcome.policy.as_deref(), Some("default"));
    }
}

/// `python3 -m http.server` serving a directory on loopback: a CRL distribution point
/// as a CA runs one, a static file over plain HTTP.
struct FileServer {
    child: std::process::Child,
    port: u16,
}

impl FileServer {
    fn start(root: &Path) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(root)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split_whitespace()
            .skip_while(|word| *word != "port")
            .nth(1)
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected http.server banner: {line:?}"));
        Self { child, port }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_revocation_is_judged_by_the_crl_at_the_signing_certificates_distribution_point() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CRL CA");
    let www = tempfile::tempdir().unwrap();
    let mut server = FileServer::start(www.path());
    let url = format!("http://127.0.0.1:{}/ca.crl", server.port);
    const SERIAL: u64 = 4242;
    let leaf = ca.leaf_with_crl_point(KeyKind::P256, "crl signer", &url, SERIAL);
    let target = push_image(&registry, "crl").await;
    let envelope = leaf.sign(&target, &SignOptions::new(Format::Cose));
    push_signatures(&registry, "crl", &target, &[envelope]).await;
    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(dir.path(), &strict("ca:e2e"), &[ca_store("ca", "e2e", &ca)]);
    let image = format!("{}/crl:v1", registry.host());
    let message = |json: &Value| json["reason"]["message"].as_str().unwrap_or("").to_owned();

    // Nothing published yet: the status cannot be determined, which strict enforces.
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (1, "revocation_unknown"), "{json}");
    assert!(
        message(&json).contains(&format!("fetching {url}: answered 404 Not Found")),
        "{json}"
    );

    // The CA publishes a CRL that does not list the leaf.
    std::fs::write(www.path().join("ca.crl"), ca.crl(&[7, 8])).unwrap();
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");

    // Without fetching, only the (absent) configured CRLs count.
    let (code, json) = verify_offline(&image, dir.path());
    assert_eq!((code, outcome(&json)), (1, "revocation_unknown"), "{json}");
    assert!(
        message(&json).contains("no CRL from its issuer, configured or fetched"),
        "{json}"
    );

    // The CA revokes the leaf.
    std::fs::write(www.path().join("ca.crl"), ca.crl(&[7, SERIAL])).unwrap();
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (1, "untrusted_root"), "{json}");
    assert!(
        message(&json).contains("CN=crl signer was revoked"),
        "{json}"
    );

    // The distribution point is down.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (1, "revocation_unknown"), "{json}");
    assert!(
        message(&json).contains(&format!("fetching {url}: ")),
        "{json}"
    );
}

/// notation-go `verifyRevocation`: a revoked `notary.x509` signing certificate fails
/// revocation whatever the time, even when a verified timestamp comes before the key's
/// invalidity date; only a signing authority's authentic signing time is weighed against
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_a_timestamp_does_not_save_a_revoked_signing_certificate() {
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CRL CA");
    let tsa = NotationTsa::generate("crigate e2e TSA");
    let www = tempfile::tempdir().unwrap();
    let server = FileServer::start(www.path());
    let url = format!("http://127.0.0.1:{}/ca.crl", server.port);
    const SERIAL: u64 = 4343;
    let leaf = ca.leaf_with_crl_point(KeyKind::P256, "stamped signer", &url, SERIAL);
    let target = push_image(&registry, "stamped-revoked").await;
    let signed_at = ymd(2026, 2, 1);
    let stamp = |signature: &[u8]| tsa.timestamp(signature, signed_at + 60);
    let envelope = leaf.sign_with_timestamp(
        &target,
        &SignOptions::new(Format::Jws).signing_time(signed_at),
        Some(&stamp),
    );
    push_signatures(&registry, "stamped-revoked", &target, &[envelope]).await;
    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(
        dir.path(),
        &strict_with_tsa(),
        &ca_and_tsa(&ca, &tsa.root_pem),
    );
    let image = format!("{}/stamped-revoked:v1", registry.host());
    // Not revoked: trusted, timestamp and all.
    std::fs::write(www.path().join("ca.crl"), ca.crl(&[7])).unwrap();
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");
    // Revoked, the key compromised only from months after the timestamp.
    std::fs::write(
        www.path().join("ca.crl"),
        ca.crl_with_invalidity(&[(SERIAL, Some(ymd(2026, 6, 1)))]),
    )
    .unwrap();
    let (code, json) = verify(&image, dir.path());
    assert_eq!((code, outcome(&json)), (1, "untrusted_root"), "{json}");
    assert!(
        json["reason"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("CN=stamped signer was revoked"),
        "{json}"
    );
}

/// `openssl ocsp` as a CA runs it: a responder on loopback answering from an `openssl ca`
/// index (`V` valid, `R` revoked, serials it does not list unknown), signing with the
/// CA's own key, answers valid for a day.
pub(crate) struct OcspResponder {
    child: std::process::Child,
}

impl OcspResponder {
    pub(crate) fn start(
        dir: &Path,
        ca: &NotationCa,
        port: u16,
        valid: &[u64],
        revoked: &[u64],
    ) -> Self {
        let serial = |n: u64| {
            let hex = format!("{n:X}");
            if hex.len() % 2 == 1 {
                format!("0{hex}")
            } else {
                hex
            }
        };
        let mut index = String::new();
        for n in valid {
            index.push_str(&format!(
                "V\t360101000000Z\t\t{}\tunknown\t/CN=leaf\n",
                serial(*n)
            ));
        }
        for n in revoked {
            index.push_str(&format!(
                "R\t360101000000Z\t260102000000Z\t{}\tunknown\t/CN=leaf\n",
                serial(*n)
            ));
        }
        std::fs::write(dir.join("index.txt"), index).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
        std::fs::write(dir.join("ca.key"), ca.key_pem()).unwrap();
        let log = dir.join("ocsp.log");
        let child = Command::new("openssl")
            .args(["ocsp", "-index", "index.txt", "-port", &port.to_string()])
            .args([
                "-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem", "-ndays", "1",
            ])
            .current_dir(dir)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Owned from here on: a failed wait below still stops it.
        let responder = Self { child };
        // It says "ACCEPT [::]:PORT" once it listens. A probe connection would not do: the
        // responder serves one connection at a time and waits on an idle one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("ACCEPT")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "openssl ocsp did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        responder
    }
}

impl Drop for OcspResponder {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_revocation_asks_the_signing_certificates_ocsp_responder_before_its_crl() {
    const GOOD: u64 = 4301;
    const REVOKED: u64 = 4302;
    const UNLISTED: u64 = 4303;
    const UNLISTED_WITH_CRL: u64 = 4304;
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e OCSP CA");
    let work = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let responder = OcspResponder::start(work.path(), &ca, port, &[GOOD], &[REVOKED]);
    let ocsp_url = format!("http://127.0.0.1:{port}");
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("ca.crl"), ca.crl(&[REVOKED])).unwrap();
    let crl_server = FileServer::start(www.path());
    let crl_url = format!("http://127.0.0.1:{}/ca.crl", crl_server.port);
    let policy = strict("ca:e2e");
    let stores = [ca_store("ca", "e2e", &ca)];
    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(dir.path(), &policy, &stores);
    let message = |json: &Value| json["reason"]["message"].as_str().unwrap_or("").to_owned();
    // One image per signing certificate.
    let mut images = Vec::new();
    for (repo, serial, crl) in [
        ("ocsp-good", GOOD, None),
        ("ocsp-revoked", REVOKED, None),
        ("ocsp-unlisted", UNLISTED, None),
        ("ocsp-fallback", UNLISTED_WITH_CRL, Some(crl_url.as_str())),
    ] {
        let leaf = ca.leaf_with_ocsp(KeyKind::P256, repo, serial, &ocsp_url, crl);
        let target = push_image(&registry, repo).await;
        let envelope = leaf.sign(&target, &SignOptions::new(Format::Jws));
        push_signatures(&registry, repo, &target, &[envelope]).await;
        images.push(format!("{}/{repo}:v1", registry.host()));
    }

    let (code, json) = verify(&images[0], dir.path());
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");

    let (code, json) = verify(&images[1], dir.path());
    assert_eq!((code, outcome(&json)), (1, "untrusted_root"), "{json}");
    assert!(
        message(&json).contains("CN=ocsp-revoked was revoked"),
        "{json}"
    );

    // The responder does not know the certificate, and there is nothing to fall back on.
    let (code, json) = verify(&images[2], dir.path());
    assert_eq!((code, outcome(&json)), (1, "revocation_unknown"), "{json}");
    assert!(
        message(&json).contains(&format!(
            "OCSP {ocsp_url}: the responder does not know the certificate"
        )),
        "{json}"
    );

    // The responder does not know it; its CRL distribution point settles it.
    let (code, json) = verify(&images[3], dir.path());
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");

    // Offline, a certificate with only a responder cannot be checked.
    let (code, json) = verify_offline(&images[0], dir.path());
    assert_eq!((code, outcome(&json)), (1, "revocation_unknown"), "{json}");
    assert!(
        message(&json).contains("OCSP responders were not asked"),
        "{json}"
    );

    // The responder is down.
    drop(responder);
    let (code, json) = verify(&images[0], dir.path());
    assert_eq!((code, outcome(&json)), (1, "revocation_unknown"), "{json}");
    assert!(
        message(&json).contains(&format!("OCSP {ocsp_url}: ")),
        "{json}"
    );
}

/// notation-go `verifyTimestamp`: a timestamp's TSA chain is checked for revocation
/// (here by the TSA's OCSP responder) after the timestamp itself. A revoked TSA saves no
/// expired signing certificate, whenever the revocation took effect (after the timestamp
/// here), nor does one whose status cannot be determined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_a_timestamp_from_a_revoked_tsa_saves_nothing() {
    const GOOD: u64 = 4401;
    const REVOKED: u64 = 4402;
    const UNLISTED: u64 = 4403;
    let registry = Registry::start().await.unwrap();
    let ca = NotationCa::generate("crigate e2e CA");
    let tsa_root = NotationCa::generate("crigate e2e TSA root");
    let work = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let responder = OcspResponder::start(work.path(), &tsa_root, port, &[GOOD], &[REVOKED]);
    let ocsp_url = format!("http://127.0.0.1:{port}");
    let policy = strict_with_tsa();
    let dir = tempfile::tempdir().unwrap();
    write_notation_dir(dir.path(), &policy, &ca_and_tsa(&ca, &tsa_root.cert_pem));
    // Expired since 2025-06-01: only an authentic timestamp saves it.
    let leaf = ca.leaf(KeyKind::P256, "signer", ymd(2025, 1, 1), ymd(2025, 6, 1));
    let mut images = Vec::new();
    for (repo, serial) in [
        ("tsa-good", GOOD),
        ("tsa-revoked", REVOKED),
        ("tsa-unlisted", UNLISTED),
    ] {
        let tsa = NotationTsa::with_ocsp(&tsa_root, repo, serial, &ocsp_url);
        let target = push_image(&registry, repo).await;
        let envelope = timestamped(&leaf, &tsa, Format::Jws, &target, ymd(2025, 3, 1) + 60);
        push_signatures(&registry, repo, &target, &[envelope]).await;
        images.push(format!("{}/{repo}:v1", registry.host()));
    }
    let message = |json: &Value| json["reason"]["message"].as_str().unwrap_or("").to_owned();

    let (code, json) = verify(&images[0], dir.path());
    assert_eq!((code, outcome(&json)), (0, "trusted"), "{json}");

    let (code, json) = verify(&images[1], dir.path());
    assert_eq!((code, outcome(&json)), (1, "untrusted_root"), "{json}");
    assert!(
        message(&json).contains("timestamp: TSA chain: certificate")
            && message(&json).contains("CN=tsa-revoked was revoked"),
        "{json}"
    );

    let (code, json) = verify(&images[2], dir.path());
    assert_eq!((code, outcome(&json)), (1, "revocation_unknown"), "{json}");
    assert!(
        message(&json).contains("TSA chain: revocation status of")
            && message(&json).contains("the responder does not know the certificate")
            && message(&json).contains("\"authenticTimestamp\" to \"log\""),
        "{json}"
    );

    // The responder down: the TSA's status cannot be determined, so nothing is saved.
    drop(responder);
    let (code, json) = verify(&images[0], dir.path());
    assert_eq!((code, outcome(&json)), (1, "revocation_unknown"), "{json}");
    assert!(message(&json).contains("TSA chain"), "{json}");
}
