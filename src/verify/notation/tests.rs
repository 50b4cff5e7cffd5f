//! Verification against the third-party vectors in `../shared/vectors` (MANIFEST.md,
//! cases.json) and the behaviour of levels, selection and limits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::*;
use crate::oci::{Descriptor, Digest};

fn vectors() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    assert!(
        dir.join("cases.json").is_file(),
        "the shared test vectors are missing: expected {}/cases.json",
        dir.display()
    );
    dir
}

fn at(rfc3339: &str) -> SystemTime {
    let seconds = Moment::parse_rfc3339(rfc3339).unwrap().unix_seconds();
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap())
}

fn descriptor(value: &Value) -> Descriptor {
    Descriptor::new(
        value["mediaType"].as_str().unwrap(),
        value["digest"].as_str().unwrap().parse::<Digest>().unwrap(),
        value["size"].as_u64().unwrap(),
    )
}

fn config(policy: &str) -> NotationConfig {
    let dir = vectors();
    let bytes = std::fs::read(dir.join(policy)).unwrap();
    let document = TrustPolicyDocument::parse(&bytes).unwrap_or_else(|e| panic!("{policy}: {e}"));
    NotationConfig::new(document, &dir.join("notation/truststore")).unwrap()
}

/// Reads a blob of an OCI layout, checking that it hashes to its name.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(
        Digest::sha256(&bytes).to_string(),
        digest,
        "blob {digest} in {}",
        layout.display()
    );
    bytes
}

/// The envelopes of the Notation signature manifests in an OCI layout whose `subject`
/// is `target`: what the referrers API (or the `sha256-<hex>` tag index) would list.
fn layout_envelopes(layout: &Path, target: &Digest) -> Vec<(String, Vec<u8>)> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut queue: Vec<Value> = index["manifests"].as_array().unwrap().clone();
    let mut seen = BTreeSet::new();
    let mut envelopes = Vec::new();
    while let Some(desc) = queue.pop() {
        let digest = desc["digest"].as_str().unwrap().to_owned();
        if !seen.insert(digest.clone()) {
            continue;
        }
        let manifest: Value = serde_json::from_slice(&blob(layout, &digest)).unwrap();
        if let Some(children) = manifest["manifests"].as_array() {
            queue.extend(children.iter().cloned());
            continue;
        }
        let is_signature = manifest["config"]["mediaType"]
            == "application/vnd.cncf.notary.signature"
            || manifest["artifactType"] == "application/vnd.cncf.notary.signature";
        if is_signature && manifest["subject"]["digest"] == target.to_string() {
            for layer in manifest["layers"].as_array().unwrap() {
                let media_type = layer["mediaType"].as_str().unwrap().to_owned();
                envelopes.push((media_type, blob(layout, layer["digest"].as_str().unwrap())));
            }
        }
    }
    envelopes
}

fn class(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Trusted(_) => "valid".to_owned(),
        Verdict::Rejected(rejection) => format!("invalid: {}", rejection.code().replace('_', "-")),
    }
}

/// The envelopes, target, configuration (its trust policy and trust store) and
/// verification instant of a `cases.json` entry.
fn vector_case(
    dir: &Path,
    case: &Value,
) -> (
    Vec<(String, Vec<u8>)>,
    Descriptor,
    NotationConfig,
    SystemTime,
) {
    let id = case["id"].as_str().unwrap();
    let target = descriptor(&case["target"]);
    let envelopes = match case["kind"].as_str().unwrap() {
        "notation-oci-layout" => layout_envelopes(
            &dir.join(case["oci_layout"].as_str().unwrap()),
            &target.digest,
        ),
        "notation-envelope" => vec![(
            case["envelope_media_type"].as_str().unwrap().to_owned(),
            std::fs::read(dir.join(case["envelope"].as_str().unwrap())).unwrap(),
        )],
        other => panic!("{id}: unknown kind {other}"),
    };
    let policy = case["trust_policy"].as_str().unwrap();
    let bytes = std::fs::read(dir.join(policy)).unwrap();
    let document =
        TrustPolicyDocument::parse(&bytes).unwrap_or_else(|e| panic!("{id}: {policy}: {e}"));
    let config = NotationConfig::new(
        document,
        &dir.join(case["trust_store_root"].as_str().unwrap()),
    )
    .unwrap();
    let now = at(case["verify_at"].as_str().unwrap());
    (envelopes, target, config, now)
}

#[test]
fn every_notation_vector_case_has_its_expected_result() {
    let dir = vectors();
    let cases: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for case in cases["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        if !id.starts_with('N') {
            continue;
        }
        count += 1;
        let (envelopes, target, config, now) = vector_case(&dir, case);
        // MANIFEST.md: "The expected results assume revocation checking of the TSA
        // chain is either off or succeeds" (the GlobalSign TSA of N20-N25 names OCSP
        // responders, which cannot be reached here).
        let config = config.with_timestamp_revocation(false);
        let result = verify(
            &envelopes,
            &target,
            "registry.example.com/app",
            &config,
            now,
        );
        let actual = class(&result.verdict);
        let expected = case["expected"].as_str().unwrap();
        let detail = match &result.verdict {
            Verdict::Trusted(signer) => format!(
                "{} via {}; logged {:?}",
                signer.identity, signer.matched, result.outcome.logged
            ),
            Verdict::Rejected(rejection) => rejection.to_string(),
        };
        eprintln!("{id:5} expected {expected:32} got {actual:32} {detail}");
        if actual != expected {
            failures.push(format!(
                "{id}: expected {expected}, got {actual} ({detail})"
            ));
        }
    }
    assert_eq!(count, 52, "cases.json should list 52 Notation variants");
    assert!(
        failures.is_empty(),
        "vector cases failed:\n{}",
        failures.join("\n")
    );
}

/// N20 (a JWS timestamped by GlobalSign, whose TSA certificates name OCSP responders)
/// with the TSA chain checked for revocation, as notation-go checks it: nothing here
/// reaches GlobalSign, so the timestamp is not authentic.
#[test]
fn a_timestamp_whose_tsa_revocation_cannot_be_determined_is_not_authentic() {
    let dir = vectors();
    let cases: Value =
        serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let case = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|case| case["id"] == "N20")
        .unwrap();
    let (envelopes, target, config, now) = vector_case(&dir, case);
    let repo = "registry.example.com/app";
    let rejection = |result: &Verification| match &result.verdict {
        Verdict::Rejected(rejection) => rejection.to_string(),
        Verdict::Trusted(_) => panic!("trusted: {:?}", result.outcome),
    };

    // Online: the TSA's responders are named for the caller to ask.
    let online = verify(&envelopes, &target, repo, &config, now);
    let message = rejection(&online);
    assert!(
        message.contains("timestamp: TSA chain: revocation status of CN=GlobalSign"),
        "{message}"
    );
    assert!(!online.outcome.revocation_wanted.is_empty());
    assert!(online
        .outcome
        .revocation_wanted
        .iter()
        .all(|wanted| matches!(wanted, Wanted::Ocsp { url, .. } if url.contains("globalsign"))));
    // Asked, and unanswered (no network): still not authentic, and the answer says so.
    let fetched = Fetched {
        failures: online
            .outcome
            .revocation_wanted
            .iter()
            .map(|wanted| (wanted.clone(), "connection refused".to_owned()))
            .collect(),
        ..Fetched::default()
    };
    let asked = verify_fetched(&envelopes, &target, repo, &config, &fetched, now);
    let message = rejection(&asked);
    assert!(
        message.contains("connection refused")
            && message.contains("\"authenticTimestamp\" to \"log\""),
        "{message}"
    );

    // Not the signing chain's revocation check: "revocation": "skip" leaves it on, and
    // only the authentic timestamp check's own level or the setting turns it off.
    let with_override = |name: &str, value: &str| {
        let mut policy: Value = serde_json::from_slice(
            &std::fs::read(dir.join(case["trust_policy"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        policy["trustPolicies"][0]["signatureVerification"]["override"] =
            serde_json::json!({ name: value });
        let document = TrustPolicyDocument::parse(&serde_json::to_vec(&policy).unwrap()).unwrap();
        NotationConfig::new(
            document,
            &dir.join(case["trust_store_root"].as_str().unwrap()),
        )
        .unwrap()
    };
    let skipped = with_override("revocation", "skip");
    assert!(matches!(
        verify(&envelopes, &target, repo, &skipped, now).verdict,
        Verdict::Rejected(_)
    ));
    let logged = verify(
        &envelopes,
        &target,
        repo,
        &with_override("authenticTimestamp", "log"),
        now,
    );
    assert!(matches!(logged.verdict, Verdict::Trusted(_)), "{logged:?}");
    assert!(logged
        .outcome
        .logged
        .iter()
        .any(|failure| failure.rejection.to_string().contains("TSA chain")));
    let off = config.with_timestamp_revocation(false);
    assert!(matches!(
        verify(&envelopes, &target, repo, &off, now).verdict,
        Verdict::Trusted(_)
    ));
}

fn n04_envelope() -> Vec<(String, Vec<u8>)> {
    let layout = vectors().join("notation/oci-layout/e2e-expired-signature");
    layout_envelopes(&layout, &n01_target().digest)
}

fn n01_target() -> Descriptor {
    Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json",
        "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9"
            .parse()
            .unwrap(),
        517,
    )
}

fn n13() -> (Vec<(String, Vec<u8>)>, Descriptor) {
    let envelope =
        std::fs::read(vectors().join("notation/jws/notation-test-root/ca_valid_sig_env.json"))
            .unwrap();
    let target = Descriptor::new(
        "application/vnd.docker.distribution.manifest.v2+json",
        "sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e"
            .parse()
            .unwrap(),
        528,
    );
    (vec![(MEDIA_TYPE_JWS.to_owned(), envelope)], target)
}

/// A configuration from policy JSON over the vector trust store.
fn config_from_json(json: &str) -> NotationConfig {
    let document = TrustPolicyDocument::parse(json.as_bytes()).unwrap();
    NotationConfig::new(document, &vectors().join("notation/truststore")).unwrap()
}

fn policy_json(level: &str, extra: &str, stores: &str) -> String {
    format!(
        r#"{{"version":"1.0","trustPolicies":[{{"name":"p","registryScopes":["*"],
        "signatureVerification":{{"level":"{level}"{extra}}},"trustStores":[{stores}],"trustedIdentities":["*"]}}]}}"#
    )
}

/// `strict` over `ca:e2e`, with the expiry check only logged.
fn expiry_logged() -> NotationConfig {
    config_from_json(&policy_json(
        "strict",
        r#","override":{"expiry":"log"}"#,
        r#""ca:e2e""#,
    ))
}

const NOW: &str = "2026-01-01T00:00:00Z";

#[test]
fn strict_enforces_expiry_and_an_override_logs_it() {
    let strict = config_from_json(&policy_json("strict", "", r#""ca:e2e""#));
    let result = verify(
        &n04_envelope(),
        &n01_target(),
        "r.example/a",
        &strict,
        at(NOW),
    );
    assert!(matches!(
        result.verdict,
        Verdict::Rejected(Rejection::Expired(_))
    ));

    let overridden = expiry_logged();
    let result = verify(
        &n04_envelope(),
        &n01_target(),
        "r.example/a",
        &overridden,
        at(NOW),
    );
    assert!(
        matches!(result.verdict, Verdict::Trusted(_)),
        "{:?}",
        result.verdict
    );
    assert_eq!(result.outcome.logged.len(), 1);
    assert_eq!(result.outcome.logged[0].check, Check::Expiry);
    assert!(matches!(
        result.outcome.logged[0].rejection,
        Rejection::Expired(_)
    ));
}

/// The signer's `valid_until`, which a trusted verdict must carry.
fn valid_until(verdict: &Verdict) -> SystemTime {
    match verdict {
        Verdict::Trusted(signer) => signer.valid_until.expect("an end of trust"),
        rejected => panic!("not trusted: {rejected:?}"),
    }
}

#[test]
fn a_trusted_verdict_ends_when_the_signature_expires_or_its_chain_does() {
    // N04 carries an expiry: trusted just before it, and the verdict says until when.
    let strict = config_from_json(&policy_json("strict", "", r#""ca:e2e""#));
    let check = |when: SystemTime| {
        verify(&n04_envelope(), &n01_target(), "r.example/a", &strict, when).verdict
    };
    let until = valid_until(&check(at("2023-06-27T05:21:00Z")));
    assert!(matches!(
        check(until - Duration::from_secs(1)),
        Verdict::Trusted(_)
    ));
    assert!(matches!(
        check(until),
        Verdict::Rejected(Rejection::Expired(_))
    ));
    // An expiry that is only logged ends nothing.
    let logged = expiry_logged();
    let result = verify(
        &n04_envelope(),
        &n01_target(),
        "r.example/a",
        &logged,
        at("2023-06-27T05:21:00Z"),
    );
    assert!(
        matches!(&result.verdict, Verdict::Trusted(s) if s.valid_until.is_none_or(|t| t > until))
    );

    // N26 has no expiry and no timestamp: its chain, valid now, must still be valid
    // when it is judged again (notAfter is the last valid instant).
    let config = config_from_json(&policy_json("strict", "", r#""ca:alpine-2023""#));
    let envelope =
        std::fs::read(vectors().join("notation/jws/timestamp/withoutTimestamp.sig")).unwrap();
    let (_, target, _) = n20();
    let envelopes = [(MEDIA_TYPE_JWS, envelope)];
    let check =
        |when: SystemTime| verify(&envelopes, &target, "r.example/a", &config, when).verdict;
    let until = valid_until(&check(at(NOW)));
    let last = check(until);
    assert!(matches!(last, Verdict::Trusted(_)), "{last:?}");
    assert!(matches!(
        check(until + Duration::from_secs(1)),
        Verdict::Rejected(_)
    ));
}

#[test]
fn permissive_logs_expiry_but_enforces_authenticity() {
    let permissive = config_from_json(&policy_json("permissive", "", r#""ca:e2e""#));
    let result = verify(
        &n04_envelope(),
        &n01_target(),
        "r.example/a",
        &permissive,
        at(NOW),
    );
    assert!(matches!(result.verdict, Verdict::Trusted(_)));
    assert_eq!(result.outcome.logged[0].check, Check::Expiry);

    // N13 does not chain to ca:e2e.
    let (envelopes, target) = n13();
    let result = verify(&envelopes, &target, "r.example/a", &permissive, at(NOW));
    assert!(matches!(
        result.verdict,
        Verdict::Rejected(Rejection::UntrustedRoot(_))
    ));
}

#[test]
fn audit_enforces_only_integrity() {
    let audit = config_from_json(&policy_json("audit", "", r#""ca:e2e""#));
    let (envelopes, target) = n13();
    let result = verify(&envelopes, &target, "r.example/a", &audit, at(NOW));
    assert!(
        matches!(result.verdict, Verdict::Trusted(_)),
        "{:?}",
        result.verdict
    );
    assert!(result
        .outcome
        .logged
        .iter()
        .any(|l| l.check == Check::Authenticity
            && matches!(l.rejection, Rejection::UntrustedRoot(_))));

    // Integrity stays enforced: the tampered N14 envelope is rejected even under audit.
    let tampered =
        std::fs::read(vectors().join("notation/jws/notation-test-root/ca_invalid_sig_env.json"))
            .unwrap();
    let result = verify(
        &[(MEDIA_TYPE_JWS, tampered)],
        &target,
        "r.example/a",
        &audit,
        at(NOW),
    );
    assert!(matches!(
        result.verdict,
        Verdict::Rejected(Rejection::Tampered(_))
    ));

    // And the target descriptor still has to match.
    let other = n01_target();
    let result = verify(&envelopes, &other, "r.example/a", &audit, at(NOW));
    assert!(matches!(
        result.verdict,
        Verdict::Rejected(Rejection::DigestMismatch { .. })
    ));
}

#[test]
fn authenticity_override_to_log_is_honoured_under_strict() {
    let config = config_from_json(&policy_json(
        "strict",
        r#","override":{"authenticity":"log"}"#,
        r#""ca:e2e""#,
    ));
    let (envelopes, target) = n13();
    let result = verify(&envelopes, &target, "r.example/a", &config, at(NOW));
    assert!(matches!(result.verdict, Verdict::Trusted(_)));
}

#[test]
fn skip_level_trusts_without_looking_and_says_so() {
    let config = config_from_json(
        r#"{"version":"1.0","trustPolicies":[
            {"name":"unsigned","registryScopes":["registry.example.com/unsigned"],"signatureVerification":{"level":"skip"}},
            {"name":"all","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:e2e"],"trustedIdentities":["*"]}]}"#,
    );
    let target = n01_target();
    let none: [(&str, &[u8]); 0] = [];
    let result = verify(
        &none,
        &target,
        "registry.example.com/unsigned:latest",
        &config,
        at(NOW),
    );
    let Verdict::Trusted(signer) = &result.verdict else {
        panic!("{:?}", result.verdict)
    };
    assert!(result.outcome.skipped);
    assert_eq!(signer.matched, "unsigned");
    assert!(signer.identity.contains("skipped"));

    // Exact scope beats the global one; other repositories fall to the global statement.
    let result = verify(
        &none,
        &target,
        "registry.example.com/other",
        &config,
        at(NOW),
    );
    assert!(matches!(
        result.verdict,
        Verdict::Rejected(Rejection::NoSignature(_))
    ));
    assert_eq!(result.outcome.policy.as_deref(), Some("all"));
}

#[test]
fn no_applicable_policy_is_untrusted() {
    let config = config_from_json(
        r#"{"version":"1.0","trustPolicies":[{"name":"one","registryScopes":["registry.example.com/one"],
        "signatureVerification":{"level":"strict"},"trustStores":["ca:e2e"],"trustedIdentities":["*"]}]}"#,
    );
    let result = verify(
        &n04_envelope(),
        &n01_target(),
        "registry.example.com/two",
        &config,
        at(NOW),
    );
    assert!(matches!(
        result.verdict,
        Verdict::Rejected(Rejection::UntrustedRoot(_))
    ));
    assert_eq!(result.outcome.policy, None);
}

#[test]
fn the_furthest_rejection_is_reported() {
    let config = config("notation/trustpolicy/upstream/trustpolicy.json");
    let layout = vectors().join("notation/oci-layout/e2e-valid-signature");
    let mut envelopes = layout_envelopes(&layout, &n01_target().digest);
    envelopes.insert(0, (MEDIA_TYPE_JWS.to_owned(), b"garbage".to_vec()));
    let other = Descriptor::new(
        "application/vnd.oci.image.manifest.v1+json",
        "sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0"
            .parse()
            .unwrap(),
        481,
    );
    let result = verify(&envelopes, &other, "r.example/a", &config, at(NOW));
    assert!(matches!(
        result.verdict,
        Verdict::Rejected(Rejection::DigestMismatch { .. })
    ));
    assert_eq!(result.outcome.rejected.len(), 2);
    assert!(matches!(
        result.outcome.rejected[0].1,
        Rejection::Malformed(_)
    ));
}

#[test]
fn signature_count_limit_holds_at_its_edge() {
    let config = config("notation/trustpolicy/upstream/trustpolicy.json");
    for (count, not_examined) in [
        (MAX_SIGNATURES - 1, 0),
        (MAX_SIGNATURES, 0),
        (MAX_SIGNATURES + 1, 1),
    ] {
        let envelopes = vec![(MEDIA_TYPE_COSE, b"x".to_vec()); count];
        let result = verify(&envelopes, &n01_target(), "r.example/a", &config, at(NOW));
        assert!(matches!(
            result.verdict,
            Verdict::Rejected(Rejection::Malformed(_))
        ));
        assert_eq!(result.outcome.not_examined, not_examined, "{count}");
        assert_eq!(result.outcome.rejected.len(), count.min(MAX_SIGNATURES));
    }
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
fn load_reads_the_notation_layout_and_prefers_the_oci_file() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &vectors().join("notation/truststore"),
        &tmp.path().join(TRUST_STORE_DIR),
    );
    assert!(matches!(
        NotationConfig::load(tmp.path()),
        Err(Error::NoPolicyFile(_))
    ));

    std::fs::copy(
        vectors().join("notation/trustpolicy/alpine-2000.json"),
        tmp.path().join(POLICY_FILE),
    )
    .unwrap();
    let config = NotationConfig::load(tmp.path()).unwrap();
    assert_eq!(config.policy().policies()[0].name, "alpine-2000");

    std::fs::copy(
        vectors().join("notation/trustpolicy/alpine-2023.json"),
        tmp.path().join(OCI_POLICY_FILE),
    )
    .unwrap();
    let config = NotationConfig::load(tmp.path()).unwrap();
    assert_eq!(config.policy().policies()[0].name, "alpine-2023");

    let envelope =
        std::fs::read(vectors().join("notation/jws/timestamp/withoutTimestamp.sig")).unwrap();
    let target = Descriptor::new(
        "application/vnd.docker.distribution.manifest.v2+json",
        "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda"
            .parse()
            .unwrap(),
        528,
    );
    let result = verify(
        &[(MEDIA_TYPE_JWS, envelope)],
        &target,
        "r.example/a",
        &config,
        at(NOW),
    );
    let Verdict::Trusted(signer) = result.verdict else {
        panic!("{:?}", result.verdict)
    };
    assert_eq!(signer.identity, "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US");
    assert_eq!(
        result.outcome.signer_subject.as_deref(),
        Some("CN=alpine,O=Notary,L=Seattle,ST=WA,C=US")
    );

    // A dangling symlink in the OCI file's place is refused, not passed over for the
    // other file (notation-go checks the OCI file with Lstat).
    std::fs::remove_file(tmp.path().join(OCI_POLICY_FILE)).unwrap();
    std::os::unix::fs::symlink(
        tmp.path().join("gone.json"),
        tmp.path().join(OCI_POLICY_FILE),
    )
    .unwrap();
    assert!(matches!(
        NotationConfig::load(tmp.path()),
        Err(Error::PolicyNotRegularFile { .. })
    ));
}

#[test]
fn load_refuses_missing_and_symlinked_stores() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        vectors().join("notation/trustpolicy/alpine-2000.json"),
        tmp.path().join(POLICY_FILE),
    )
    .unwrap();
    assert!(matches!(
        NotationConfig::load(tmp.path()),
        Err(Error::TrustStore(StoreError::Missing { .. }))
    ));

    let ca = tmp.path().join("truststore/x509/ca");
    std::fs::create_dir_all(&ca).unwrap();
    std::os::unix::fs::symlink(
        vectors().join("notation/truststore/x509/ca/alpine-2000"),
        ca.join("alpine-2000"),
    )
    .unwrap();
    assert!(matches!(
        NotationConfig::load(tmp.path()),
        Err(Error::TrustStore(StoreError::Symlink { .. }))
    ));

    std::fs::remove_file(ca.join("alpine-2000")).unwrap();
    std::fs::create_dir(ca.join("alpine-2000")).unwrap();
    assert!(matches!(
        NotationConfig::load(tmp.path()),
        Err(Error::TrustStore(StoreError::Empty { .. }))
    ));
    std::fs::write(
        ca.join("alpine-2000/bad.pem"),
        "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(matches!(
        NotationConfig::load(tmp.path()),
        Err(Error::TrustStore(StoreError::Pem { .. }))
    ));
}

#[test]
fn a_pem_file_may_hold_several_certificates() {
    let dir = vectors().join("notation/truststore/x509");
    let a = std::fs::read_to_string(dir.join("ca/alpine-2000/alpine-2000.pem")).unwrap();
    let b =
        std::fs::read_to_string(dir.join("ca/notation-test-root/NotationTestRoot.pem")).unwrap();
    let both = format!("{a}\n{b}");
    let certs = truststore::certificates_in_file(Path::new("both.pem"), both.as_bytes()).unwrap();
    assert_eq!(certs.len(), 2);
    let der = std::fs::read(dir.join("tsa/globalsign-r6/globalsignRoot.cer")).unwrap();
    assert_eq!(
        truststore::certificates_in_file(Path::new("r6.cer"), &der).unwrap(),
        vec![der]
    );
}

/// Corpus replay for the fuzz targets: every vector envelope and policy, and byte-level
/// mutations of them, must never panic.
#[test]
fn fuzz_entry_points_survive_vectors_and_mutations() {
    let dir = vectors().join("notation");
    let mut inputs = Vec::new();
    for sub in [
        "jws/alpine-2000",
        "jws/notation-test-root",
        "jws/timestamp",
        "cose/alpine-2000",
        "cose/timestamp",
    ] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            inputs.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    for entry in std::fs::read_dir(dir.join("trustpolicy")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            inputs.push(std::fs::read(path).unwrap());
        }
    }
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for seed in &inputs {
        fuzz_envelope(seed);
        fuzz_trust_policy(seed);
        for _ in 0..40 {
            let mut input = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = if input.is_empty() {
                    0
                } else {
                    (next() as usize) % input.len()
                };
                match next() % 3 {
                    0 if !input.is_empty() => input[at] ^= 1 << (next() % 8),
                    1 => input.truncate(at),
                    _ => input.insert(at, next() as u8),
                }
            }
            fuzz_envelope(&input);
            fuzz_trust_policy(&input);
        }
    }
}

fn n20() -> (Value, Descriptor, NotationConfig) {
    let envelope: Value = serde_json::from_slice(
        &std::fs::read(vectors().join("notation/jws/timestamp/jwsWithTimestamp.sig")).unwrap(),
    )
    .unwrap();
    let target = Descriptor::new(
        "application/vnd.docker.distribution.manifest.v2+json",
        "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda"
            .parse()
            .unwrap(),
        528,
    );
    (
        envelope,
        target,
        config("notation/trustpolicy/alpine-2023-tsa.json"),
    )
}

fn with_token(mut envelope: Value, token: &[u8]) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    envelope["header"]["io.cncf.notary.timestampSignature"] =
        Value::String(base64::engine::general_purpose::STANDARD.encode(token));
    vec![(
        MEDIA_TYPE_JWS.to_owned(),
        serde_json::to_vec(&envelope).unwrap(),
    )]
}

fn token_of(envelope: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let text = envelope["header"]["io.cncf.notary.timestampSignature"]
        .as_str()
        .unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[test]
fn a_timestamp_whose_tsa_signature_was_altered_is_tampered() {
    let (envelope, target, config) = n20();
    let mut token = token_of(&envelope);
    // The TSA's signature value is the last element of the token.
    let last = token.len() - 1;
    token[last] ^= 0x01;
    let result = verify(
        &with_token(envelope, &token),
        &target,
        "r.example/a",
        &config,
        at(NOW),
    );
    assert!(
        matches!(result.verdict, Verdict::Rejected(Rejection::Tampered(_))),
        "{:?}",
        result.verdict
    );
}

#[test]
fn a_timestamp_of_another_signature_is_tampered() {
    let (n20, target, config) = n20();
    let token = token_of(&n20);
    // N26 is signed by the same key for the same target, without a timestamp; the N20
    // token's messageImprint names N20's signature, not N26's.
    let n26: Value = serde_json::from_slice(
        &std::fs::read(vectors().join("notation/jws/timestamp/withoutTimestamp.sig")).unwrap(),
    )
    .unwrap();
    let result = verify(
        &with_token(n26, &token),
        &target,
        "r.example/a",
        &config,
        at(NOW),
    );
    assert!(
        matches!(result.verdict, Verdict::Rejected(Rejection::Tampered(_))),
        "{:?}",
        result.verdict
    );
}

#[test]
fn after_cert_expiry_skips_the_timestamp_while_the_chain_is_valid() {
    // N26 has no timestamp: with verifyTimestamp afterCertExpiry and a chain valid
    // until 2033 it verifies; once the chain expired the timestamp is required.
    let config = config_from_json(&policy_json(
        "strict",
        r#","verifyTimestamp":"afterCertExpiry""#,
        r#""ca:alpine-2023","tsa:globalsign-r6""#,
    ));
    let envelope =
        std::fs::read(vectors().join("notation/jws/timestamp/withoutTimestamp.sig")).unwrap();
    let (_, target, _) = n20();
    let envelopes = [(MEDIA_TYPE_JWS, envelope)];
    let result = verify(&envelopes, &target, "r.example/a", &config, at(NOW));
    assert!(
        matches!(result.verdict, Verdict::Trusted(_)),
        "{:?}",
        result.verdict
    );
    let result = verify(
        &envelopes,
        &target,
        "r.example/a",
        &config,
        at("2034-01-01T00:00:00Z"),
    );
    assert!(
        matches!(result.verdict, Verdict::Rejected(Rejection::NoSignature(_))),
        "{:?}",
        result.verdict
    );
}

#[test]
fn a_clean_pass_is_preferred_to_one_with_logged_failures() {
    // N03: the e2e signature and an untrusted, expired testcert11 signature. Under
    // audit both pass; the outcome names the one that passed every check, in either
    // order.
    let audit = config_from_json(&policy_json("audit", "", r#""ca:e2e""#));
    let layout = vectors().join("notation/oci-layout/e2e-valid-multiple-signatures");
    let mut envelopes = layout_envelopes(&layout, &n01_target().digest);
    assert_eq!(envelopes.len(), 2);
    for _ in 0..2 {
        let result = verify(&envelopes, &n01_target(), "r.example/a", &audit, at(NOW));
        assert!(matches!(result.verdict, Verdict::Trusted(_)));
        assert_eq!(
            result.outcome.signer_subject.as_deref(),
            Some("CN=e2e,O=Notary,L=Seattle,ST=WA,C=US")
        );
        assert!(
            result.outcome.logged.is_empty(),
            "{:?}",
            result.outcome.logged
        );
        envelopes.reverse();
    }
}

#[test]
fn a_revocation_status_not_determined_is_reported_before_a_signature_for_other_content() {
    // Of two signatures, one for other content (failed last, at the target) and one
    // whose revocation status nothing settled: the second is reported, so the verdict
    // is not cached while the second may yet pass.
    let unknown = Failure {
        stage: Stage::Revocation,
        rejection: Rejection::RevocationUnknown("no OCSP answer".into()),
    };
    let other = Failure {
        stage: Stage::Target,
        rejection: Rejection::DigestMismatch {
            signed: "sha256:00".into(),
            image: Digest::sha256(b"image"),
        },
    };
    assert!(unknown.rank() > other.rank());
    let revoked = Failure {
        stage: Stage::Revocation,
        rejection: Rejection::UntrustedRoot("revoked".into()),
    };
    assert!(other.rank() > revoked.rank());
}

/// ECDSA envelopes, which no third-party vector covers: a self-signed code-signing
/// certificate made with rcgen signs a JWS and a COSE envelope per curve.
mod ecdsa {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use rcgen::SigningKey as _;

    use super::*;
    use crate::verify::notation::cbor;

    struct Signer {
        key: rcgen::KeyPair,
        cert_der: Vec<u8>,
        /// The x5c chain; the certificate alone unless a test sets a chain.
        x5c: Vec<Vec<u8>>,
        width: usize,
        jws_alg: &'static str,
        cose_alg: i64,
        _store: tempfile::TempDir,
        config: NotationConfig,
    }

    fn signer(
        alg: &'static rcgen::SignatureAlgorithm,
        width: usize,
        jws_alg: &'static str,
        cose_alg: i64,
    ) -> Signer {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "US");
        params
            .distinguished_name
            .push(rcgen::DnType::StateOrProvinceName, "WA");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "crigate test");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, jws_alg);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        let cert = params.self_signed(&key).unwrap();
        let store = tempfile::tempdir().unwrap();
        let dir = store.path().join("x509/ca/ec");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("leaf.pem"), cert.pem()).unwrap();
        let policy = policy_json("strict", "", r#""ca:ec""#).replace(
            r#""trustedIdentities":["*"]"#,
            &format!(
                r#""trustedIdentities":["x509.subject: C=US, ST=WA, O=crigate test, CN={jws_alg}"]"#
            ),
        );
        let config = NotationConfig::new(
            TrustPolicyDocument::parse(policy.as_bytes()).unwrap(),
            store.path(),
        )
        .unwrap();
        Signer {
            key,
            x5c: vec![cert.der().to_vec()],
            cert_der: cert.der().to_vec(),
            width,
            jws_alg,
            cose_alg,
            _store: store,
            config,
        }
    }

    /// rcgen signs ECDSA as DER `Ecdsa-Sig-Value`; JWS and COSE carry `r || s`.
    fn sign_fixed(signer: &Signer, message: &[u8]) -> Vec<u8> {
        let der = signer.key.sign(message).unwrap();
        let seq = crate::verify::notation::tlv::single(&der, 0x30).unwrap();
        let mut reader = crate::verify::notation::tlv::DerReader::new(seq.value);
        let mut fixed = Vec::new();
        for _ in 0..2 {
            let int = reader.read(0x02).unwrap().value;
            let int = &int[int.len().saturating_sub(signer.width)..];
            fixed.extend(std::iter::repeat_n(0, signer.width - int.len()));
            fixed.extend_from_slice(int);
        }
        fixed
    }

    fn payload(target: &Descriptor) -> Vec<u8> {
        format!(
            r#"{{"targetArtifact":{{"mediaType":"{}","digest":"{}","size":{}}}}}"#,
            target.media_type, target.digest, target.size
        )
        .into_bytes()
    }

    fn jws(signer: &Signer, alg: &str, target: &Descriptor, tamper: bool) -> Vec<u8> {
        let protected = format!(
            r#"{{"alg":"{alg}","crit":["io.cncf.notary.signingScheme"],"cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2025-06-01T00:00:00Z"}}"#
        );
        let protected = URL_SAFE_NO_PAD.encode(protected);
        let payload = URL_SAFE_NO_PAD.encode(payload(target));
        let mut signature = sign_fixed(signer, format!("{protected}.{payload}").as_bytes());
        if tamper {
            signature[3] ^= 1;
        }
        serde_json::to_vec(&serde_json::json!({
            "payload": payload,
            "protected": protected,
            "header": {"x5c": signer.x5c.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>()},
            "signature": URL_SAFE_NO_PAD.encode(signature),
        }))
        .unwrap()
    }

    fn text(out: &mut Vec<u8>, text: &str) {
        cbor::encode_head(3, text.len() as u64, out);
        out.extend_from_slice(text.as_bytes());
    }

    fn bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        cbor::encode_head(2, bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    fn cose(signer: &Signer, target: &Descriptor) -> Vec<u8> {
        let mut protected = Vec::new();
        cbor::encode_head(5, 5, &mut protected);
        cbor::encode_head(0, 1, &mut protected);
        cbor::encode_head(1, (-1 - signer.cose_alg) as u64, &mut protected);
        cbor::encode_head(0, 2, &mut protected);
        cbor::encode_head(4, 1, &mut protected);
        text(&mut protected, "io.cncf.notary.signingScheme");
        cbor::encode_head(0, 3, &mut protected);
        text(
            &mut protected,
            "application/vnd.cncf.notary.payload.v1+json",
        );
        text(&mut protected, "io.cncf.notary.signingScheme");
        text(&mut protected, "notary.x509");
        text(&mut protected, "io.cncf.notary.signingTime");
        cbor::encode_head(6, 1, &mut protected);
        cbor::encode_head(0, 1_748_736_000, &mut protected);
        let payload = payload(target);
        let mut to_sign = Vec::new();
        cbor::encode_head(4, 4, &mut to_sign);
        text(&mut to_sign, "Signature1");
        bytes(&mut to_sign, &protected);
        bytes(&mut to_sign, &[]);
        bytes(&mut to_sign, &payload);
        let signature = sign_fixed(signer, &to_sign);
        let mut out = Vec::new();
        cbor::encode_head(6, 18, &mut out);
        cbor::encode_head(4, 4, &mut out);
        bytes(&mut out, &protected);
        cbor::encode_head(5, 1, &mut out);
        cbor::encode_head(0, 33, &mut out);
        bytes(&mut out, &signer.cert_der);
        bytes(&mut out, &payload);
        bytes(&mut out, &signature);
        out
    }

    #[test]
    fn es256_es384_es512_envelopes_verify_in_both_formats() {
        let target = n01_target();
        for signer in [
            signer(&rcgen::PKCS_ECDSA_P256_SHA256, 32, "ES256", -7),
            signer(&rcgen::PKCS_ECDSA_P384_SHA384, 48, "ES384", -35),
            signer(&rcgen::PKCS_ECDSA_P521_SHA512, 66, "ES512", -36),
        ] {
            let name = signer.jws_alg;
            let envelopes = [
                (MEDIA_TYPE_JWS, jws(&signer, signer.jws_alg, &target, false)),
                (MEDIA_TYPE_COSE, cose(&signer, &target)),
            ];
            for envelope in &envelopes {
                let result = verify(
                    std::slice::from_ref(envelope),
                    &target,
                    "r.example/a",
                    &signer.config,
                    at(NOW),
                );
                assert!(
                    matches!(result.verdict, Verdict::Trusted(_)),
                    "{name} {}: {:?}",
                    envelope.0,
                    result.verdict
                );
            }
            let tampered = [(MEDIA_TYPE_JWS, jws(&signer, signer.jws_alg, &target, true))];
            let result = verify(&tampered, &target, "r.example/a", &signer.config, at(NOW));
            assert!(
                matches!(result.verdict, Verdict::Rejected(Rejection::Tampered(_))),
                "{name}: {:?}",
                result.verdict
            );
        }
    }

    /// A CA and a leaf that names a CRL distribution point, signing with ES256, and a
    /// configuration trusting the CA.
    struct CrlFixture {
        ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
        signer: Signer,
        store: tempfile::TempDir,
    }

    const LEAF_SERIAL: u64 = 42;

    fn crl_fixture() -> CrlFixture {
        crl_fixture_with(|params| {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![CRL_URL.into()],
            }];
        })
    }

    const CRL_URL: &str = "http://crl.example.com/ca.crl";

    /// As [`crl_fixture`], with the leaf's revocation locations set by `locations`.
    fn crl_fixture_with(locations: impl FnOnce(&mut rcgen::CertificateParams)) -> CrlFixture {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "crigate test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "crigate test leaf");
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        params.serial_number = Some(rcgen::SerialNumber::from(LEAF_SERIAL));
        locations(&mut params);
        let leaf = params.signed_by(&key, &ca).unwrap();

        let store = tempfile::tempdir().unwrap();
        let dir = store.path().join("x509/ca/crl");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let sa_dir = store.path().join("x509/signingAuthority/crl");
        std::fs::create_dir_all(&sa_dir).unwrap();
        std::fs::write(sa_dir.join("ca.pem"), ca.pem()).unwrap();
        let config = NotationConfig::new(
            TrustPolicyDocument::parse(policy_json("strict", "", r#""ca:crl""#).as_bytes())
                .unwrap(),
            store.path(),
        )
        .unwrap();
        let signer = Signer {
            key,
            cert_der: leaf.der().to_vec(),
            x5c: vec![leaf.der().to_vec(), ca.der().to_vec()],
            width: 32,
            jws_alg: "ES256",
            cose_alg: -7,
            _store: tempfile::tempdir().unwrap(),
            config,
        };
        CrlFixture { ca, signer, store }
    }

    /// Year, month, day.
    type Ymd = (i32, u8, u8);

    fn crl(fixture: &CrlFixture, next_update: Ymd, revoked: &[u64]) -> CrlSet {
        let revoked: Vec<_> = revoked.iter().map(|serial| (*serial, None)).collect();
        crl_with(fixture, next_update, &revoked, None)
    }

    fn crl_with(
        fixture: &CrlFixture,
        next_update: Ymd,
        revoked: &[(u64, Option<Ymd>)],
        scope: Option<rcgen::CrlScope>,
    ) -> CrlSet {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(next_update.0, next_update.1, next_update.2),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: scope.map(|scope| rcgen::CrlIssuingDistributionPoint {
                distribution_point: rcgen::CrlDistributionPoint {
                    uris: vec!["http://crl.example.com/ca.crl".into()],
                },
                scope: Some(scope),
            }),
            revoked_certs: revoked
                .iter()
                .map(|(serial, invalid)| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*serial),
                    revocation_time: rcgen::date_time_ymd(2025, 3, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: invalid.map(|(y, m, d)| rcgen::date_time_ymd(y, m, d)),
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&fixture.ca).unwrap();
        let mut set = CrlSet::default();
        set.add(crl.der()).unwrap();
        set
    }

    fn verify_with(fixture: &CrlFixture, config: NotationConfig) -> Verification {
        verify_under(fixture, &config, &Fetched::default())
    }

    /// `fixture`'s leaf signs the target; verified under `config` with `fetched`.
    fn verify_under(
        fixture: &CrlFixture,
        config: &NotationConfig,
        fetched: &Fetched,
    ) -> Verification {
        let target = n01_target();
        let envelopes = [(
            MEDIA_TYPE_JWS,
            jws(&fixture.signer, "ES256", &target, false),
        )];
        verify_fetched(&envelopes, &target, "r.example/a", config, fetched, at(NOW))
    }

    fn config_with(fixture: &CrlFixture, extra: &str, crls: CrlSet) -> NotationConfig {
        config_at("strict", fixture, extra).with_crls(crls)
    }

    /// A `level` policy (with `extra` statement keys) trusting `fixture`'s CA.
    fn config_at(level: &str, fixture: &CrlFixture, extra: &str) -> NotationConfig {
        let policy = policy_json(level, extra, r#""ca:crl""#);
        NotationConfig::new(
            TrustPolicyDocument::parse(policy.as_bytes()).unwrap(),
            fixture.store.path(),
        )
        .unwrap()
    }

    #[test]
    fn a_certificate_with_a_crl_location_needs_a_current_crl() {
        let fixture = crl_fixture();
        // No CRL: the status cannot be determined, which strict enforces.
        let result = verify_with(&fixture, config_with(&fixture, "", CrlSet::default()));
        assert!(
            matches!(
                result.verdict,
                Verdict::Rejected(Rejection::RevocationUnknown(_))
            ),
            "{:?}",
            result.verdict
        );
        // A current CRL that does not list the leaf.
        let result = verify_with(
            &fixture,
            config_with(&fixture, "", crl(&fixture, (2027, 1, 1), &[7])),
        );
        assert!(
            matches!(result.verdict, Verdict::Trusted(_)),
            "{:?}",
            result.verdict
        );
        // A CRL past its nextUpdate is not current.
        let result = verify_with(
            &fixture,
            config_with(&fixture, "", crl(&fixture, (2025, 12, 1), &[])),
        );
        assert!(
            matches!(
                result.verdict,
                Verdict::Rejected(Rejection::RevocationUnknown(_))
            ),
            "{:?}",
            result.verdict
        );
        // With "revocation": "log" the failure is recorded, not enforced.
        let logged = config_with(
            &fixture,
            r#","override":{"revocation":"log"}"#,
            CrlSet::default(),
        );
        let result = verify_with(&fixture, logged);
        assert!(matches!(result.verdict, Verdict::Trusted(_)));
        assert_eq!(result.outcome.logged[0].check, Check::Revocation);
        // With "skip" it is not run at all.
        let skipped = config_with(
            &fixture,
            r#","override":{"revocation":"skip"}"#,
            CrlSet::default(),
        );
        let result = verify_with(&fixture, skipped);
        assert!(matches!(result.verdict, Verdict::Trusted(_)));
        assert!(result.outcome.logged.is_empty());
    }

    /// The message of a revocation found.
    fn revoked_message(result: &Verification) -> String {
        match &result.verdict {
            Verdict::Rejected(Rejection::UntrustedRoot(message)) => message.clone(),
            other => panic!("expected an untrusted-root rejection, got {other:?}"),
        }
    }

    /// The message of a revocation status not determined.
    fn unknown_message(result: &Verification) -> String {
        match &result.verdict {
            Verdict::Rejected(Rejection::RevocationUnknown(message)) => message.clone(),
            other => panic!("expected a revocation-unknown rejection, got {other:?}"),
        }
    }

    fn verify_fetched_with(fixture: &CrlFixture, fetched: &Fetched) -> Verification {
        verify_under(
            fixture,
            &config_with(fixture, "", CrlSet::default()),
            fetched,
        )
    }

    #[test]
    fn a_trusted_chain_asks_for_its_distribution_points_and_is_judged_by_what_was_fetched() {
        let fixture = crl_fixture();
        let result = verify_fetched_with(&fixture, &Fetched::default());
        assert_eq!(
            result.outcome.revocation_wanted,
            [Wanted::Crl(CRL_URL.to_owned())]
        );
        assert!(unknown_message(&result).contains("no CRL from its issuer, configured or fetched"));

        let good = Fetched {
            crls: crl(&fixture, (2027, 1, 1), &[7]),
            ..Fetched::default()
        };
        let result = verify_fetched_with(&fixture, &good);
        assert!(
            matches!(result.verdict, Verdict::Trusted(_)),
            "{:?}",
            result.verdict
        );
        assert!(result.outcome.revocation_wanted.is_empty());

        let revoked = Fetched {
            crls: crl(&fixture, (2027, 1, 1), &[LEAF_SERIAL]),
            ..Fetched::default()
        };
        let result = verify_fetched_with(&fixture, &revoked);
        assert!(revoked_message(&result).contains("crigate test leaf was revoked"));

        let failed = Fetched {
            failures: vec![(
                Wanted::Crl(CRL_URL.to_owned()),
                "answered 404 Not Found, not 200 OK".to_owned(),
            )],
            ..Fetched::default()
        };
        let message = unknown_message(&verify_fetched_with(&fixture, &failed));
        assert!(
            message.contains(&format!("fetching {CRL_URL}: answered 404 Not Found")),
            "{message}"
        );
    }

    #[test]
    fn an_untrusted_chain_asks_for_no_distribution_point() {
        let fixture = crl_fixture();
        // The trust store holds another CA: authenticity fails before revocation, and
        // the envelope's CRL location is never a URL crigate is asked to fetch.
        let other = crl_fixture();
        let result = verify_with(&fixture, config_with(&other, "", CrlSet::default()));
        assert!(matches!(
            result.verdict,
            Verdict::Rejected(Rejection::UntrustedRoot(_))
        ));
        assert!(
            result.outcome.revocation_wanted.is_empty(),
            "{:?}",
            result.outcome
        );
    }

    #[test]
    fn a_chain_trusted_only_for_the_audit_log_asks_for_no_distribution_point() {
        // Under `audit` a chain from another CA passes with its authenticity failure
        // logged, and reaches the revocation check; its CRL location is still not asked.
        let fixture = crl_fixture();
        let other = crl_fixture();
        let log_authenticity = r#","override":{"authenticity":"log"}"#;
        for (level, extra) in [("audit", ""), ("strict", log_authenticity)] {
            let result = verify_with(&fixture, config_at(level, &other, extra));
            // It got as far as the revocation check: logged as passed under `audit`,
            // rejected there under `strict`.
            let reached = match &result.verdict {
                Verdict::Trusted(_) => result
                    .outcome
                    .logged
                    .iter()
                    .any(|failure| failure.check == Check::Revocation),
                Verdict::Rejected(Rejection::RevocationUnknown(message)) => {
                    message.contains("revocation status")
                }
                Verdict::Rejected(_) => false,
            };
            assert!(reached, "{level}: {:?}", result);
            assert!(
                result.outcome.revocation_wanted.is_empty(),
                "{level}: {:?}",
                result.outcome
            );
        }
        // The same chain trusted by the store asks for it.
        let result = verify_with(&fixture, config_at("strict", &fixture, log_authenticity));
        assert_eq!(
            result.outcome.revocation_wanted,
            [Wanted::Crl(CRL_URL.to_owned())]
        );
    }

    /// A CRL as [`built_crl`] writes it.
    #[derive(Clone, Default)]
    struct Built<'a> {
        number: u64,
        /// The BaseCRLNumber of a delta CRL.
        delta_of: Option<u64>,
        /// A FreshestCRL location.
        freshest: Option<&'a str>,
        /// Serial numbers and CRLReason codes.
        revoked: &'a [(u64, u8)],
        next_update: Option<Ymd>,
    }

    const DELTA_URL: &str = "http://crl.example.com/delta.crl";
    /// CRLReason `certificateHold` and `removeFromCRL` (RFC 5280 5.3.1).
    const HOLD: u8 = 6;
    const REMOVE: u8 = 8;

    /// A CRL signed by the fixture's CA, built with x509-cert's types: rcgen writes
    /// neither delta CRLs nor the FreshestCRL extension.
    fn built_crl(fixture: &CrlFixture, built: Built<'_>) -> CrlSet {
        use der::asn1::{BitString, Ia5String, OctetString, UtcTime};
        use der::{Decode as _, Encode as _};
        use rcgen::SigningKey as _;
        use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
        use x509_cert::ext::pkix::crl::dp::DistributionPoint;
        use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
        use x509_cert::ext::pkix::FreshestCrl;
        use x509_cert::ext::Extension;
        use x509_cert::serial_number::SerialNumber;
        use x509_cert::spki::AlgorithmIdentifierOwned;
        use x509_cert::time::Time;

        let integer = |n: u64| {
            let bytes = n.to_be_bytes();
            let start = bytes.iter().position(|b| *b != 0).unwrap_or(7);
            let mut value = bytes[start..].to_vec();
            if value[0] & 0x80 != 0 {
                value.insert(0, 0);
            }
            value
        };
        let extension = |oid: &str, critical: bool, value: Vec<u8>| Extension {
            extn_id: const_oid::ObjectIdentifier::new_unwrap(oid),
            critical,
            extn_value: OctetString::new(value).unwrap(),
        };
        let der_integer = |n: u64| {
            let value = integer(n);
            [&[0x02, value.len() as u8][..], &value].concat()
        };
        let mut extensions = vec![extension("2.5.29.20", false, der_integer(built.number))];
        if let Some(base) = built.delta_of {
            extensions.push(extension("2.5.29.27", true, der_integer(base)));
        }
        if let Some(url) = built.freshest {
            let points = FreshestCrl(vec![DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(vec![
                    GeneralName::UniformResourceIdentifier(Ia5String::new(url).unwrap()),
                ])),
                reasons: None,
                crl_issuer: None,
            }]);
            extensions.push(extension("2.5.29.46", false, points.to_der().unwrap()));
        }
        let time = |(y, m, d): Ymd| {
            let unix = Moment::parse_rfc3339(&format!("{y:04}-{m:02}-{d:02}T00:00:00Z"))
                .unwrap()
                .unix_seconds() as u64;
            Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(unix)).unwrap())
        };
        let revoked: Vec<RevokedCert> = built
            .revoked
            .iter()
            .map(|(serial, reason)| RevokedCert {
                serial_number: SerialNumber::new(&integer(*serial)).unwrap(),
                revocation_date: time((2025, 3, 1)),
                crl_entry_extensions: Some(vec![extension(
                    "2.5.29.21",
                    false,
                    vec![0x0a, 0x01, *reason],
                )]),
            })
            .collect();
        let algorithm = AlgorithmIdentifierOwned {
            oid: const_oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2"),
            parameters: None,
        };
        let ca = x509_cert::Certificate::from_der(fixture.ca.der()).unwrap();
        let tbs = TbsCertList {
            version: x509_cert::Version::V2,
            signature: algorithm.clone(),
            issuer: ca.tbs_certificate().subject().clone(),
            this_update: time((2025, 1, 1)),
            next_update: Some(time(built.next_update.unwrap_or((2027, 1, 1)))),
            revoked_certificates: (!revoked.is_empty()).then_some(revoked),
            crl_extensions: Some(extensions),
        };
        let signature = fixture.ca.key().sign(&tbs.to_der().unwrap()).unwrap();
        let list = CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: algorithm,
            signature: BitString::from_bytes(&signature).unwrap(),
        };
        let mut set = CrlSet::default();
        set.add(&list.to_der().unwrap()).unwrap();
        set
    }

    fn with_crls(sets: &[&CrlSet]) -> Fetched {
        let mut fetched = Fetched::default();
        for set in sets {
            fetched.crls.extend(set);
        }
        fetched
    }

    #[test]
    fn the_newest_complete_crl_decides_whichever_is_read_first() {
        // Two current CRLs from the issuer: the older does not list the leaf, the newer
        // (a higher CRL number) does. In either order the leaf is revoked.
        let fixture = crl_fixture();
        let older = built_crl(
            &fixture,
            Built {
                number: 1,
                ..Built::default()
            },
        );
        let newer = built_crl(
            &fixture,
            Built {
                number: 2,
                revoked: &[(LEAF_SERIAL, 1)],
                ..Built::default()
            },
        );
        for sets in [[&older, &newer], [&newer, &older]] {
            let result = verify_fetched_with(&fixture, &with_crls(&sets));
            assert!(
                revoked_message(&result).contains("was revoked"),
                "{result:?}"
            );
        }
        // The same among the configured CRL files.
        let mut both = older.clone();
        both.extend(&newer);
        let result = verify_under(
            &fixture,
            &config_with(&fixture, "", both),
            &Fetched::default(),
        );
        assert!(
            revoked_message(&result).contains("was revoked"),
            "{result:?}"
        );
    }

    /// RFC 5280 lists a certificate once in a CRL; one that lists it twice revokes it if
    /// either entry does, in either order (a `removeFromCRL` entry beside a
    /// `keyCompromise` one is not read as a release).
    #[test]
    fn a_crl_listing_a_certificate_twice_revokes_it_if_either_entry_does() {
        const KEY_COMPROMISE: u8 = 1;
        let fixture = crl_fixture();
        for revoked in [
            [(LEAF_SERIAL, REMOVE), (LEAF_SERIAL, KEY_COMPROMISE)],
            [(LEAF_SERIAL, KEY_COMPROMISE), (LEAF_SERIAL, REMOVE)],
        ] {
            let crl = built_crl(
                &fixture,
                Built {
                    number: 1,
                    revoked: &revoked,
                    ..Built::default()
                },
            );
            let result = verify_fetched_with(&fixture, &with_crls(&[&crl]));
            assert!(
                revoked_message(&result).contains("was revoked"),
                "{revoked:?}: {result:?}"
            );
        }
        // Listed twice, released by both: good.
        let crl = built_crl(
            &fixture,
            Built {
                number: 1,
                revoked: &[(LEAF_SERIAL, REMOVE), (LEAF_SERIAL, REMOVE)],
                ..Built::default()
            },
        );
        let result = verify_fetched_with(&fixture, &with_crls(&[&crl]));
        assert!(matches!(result.verdict, Verdict::Trusted(_)), "{result:?}");
    }

    #[test]
    fn a_complete_crl_that_names_a_delta_crl_is_read_with_it() {
        let fixture = crl_fixture();
        let base = built_crl(
            &fixture,
            Built {
                number: 10,
                freshest: Some(DELTA_URL),
                ..Built::default()
            },
        );
        // The base alone: what was revoked since it was issued is in the delta.
        let result = verify_fetched_with(&fixture, &with_crls(&[&base]));
        assert!(
            unknown_message(&result).contains("names a delta CRL, and no current one"),
            "{result:?}"
        );
        assert_eq!(
            result.outcome.revocation_wanted,
            [Wanted::Crl(DELTA_URL.to_owned())]
        );

        let delta = |built: Built<'_>| {
            built_crl(
                &fixture,
                Built {
                    delta_of: Some(10),
                    ..built
                },
            )
        };
        // The delta lists the leaf: revoked, though the base does not.
        let listing = delta(Built {
            number: 11,
            revoked: &[(LEAF_SERIAL, 1)],
            ..Built::default()
        });
        let result = verify_fetched_with(&fixture, &with_crls(&[&base, &listing]));
        assert!(
            revoked_message(&result).contains("was revoked"),
            "{result:?}"
        );

        // The delta does not list it: good.
        let clean = delta(Built {
            number: 11,
            revoked: &[(7, 1)],
            ..Built::default()
        });
        let result = verify_fetched_with(&fixture, &with_crls(&[&base, &clean]));
        assert!(matches!(result.verdict, Verdict::Trusted(_)), "{result:?}");

        // On hold in the base, released in the delta: good.
        let held = built_crl(
            &fixture,
            Built {
                number: 10,
                freshest: Some(DELTA_URL),
                revoked: &[(LEAF_SERIAL, HOLD)],
                ..Built::default()
            },
        );
        let released = delta(Built {
            number: 11,
            revoked: &[(LEAF_SERIAL, REMOVE)],
            ..Built::default()
        });
        let result = verify_fetched_with(&fixture, &with_crls(&[&held]));
        assert!(unknown_message(&result).contains("names a delta CRL"));
        let result = verify_fetched_with(&fixture, &with_crls(&[&held, &released]));
        assert!(matches!(result.verdict, Verdict::Trusted(_)), "{result:?}");

        // A delta made against a later complete CRL, or one past its nextUpdate, does
        // not apply.
        let later = built_crl(
            &fixture,
            Built {
                number: 13,
                delta_of: Some(12),
                ..Built::default()
            },
        );
        let stale = delta(Built {
            number: 11,
            next_update: Some((2025, 6, 1)),
            ..Built::default()
        });
        for unusable in [&later, &stale] {
            let result = verify_fetched_with(&fixture, &with_crls(&[&base, unusable]));
            assert!(
                unknown_message(&result).contains("names a delta CRL, and no current one"),
                "{result:?}"
            );
        }
    }

    #[test]
    fn a_certificate_that_names_a_delta_crl_is_read_with_it() {
        // FreshestCRL in the certificate (RFC 5280 4.2.1.15), none in the complete CRL.
        let fixture = crl_fixture_with(|params| {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![CRL_URL.into()],
            }];
            let uri = [&[0x86, DELTA_URL.len() as u8][..], DELTA_URL.as_bytes()].concat();
            let names = [&[0xa0, uri.len() as u8][..], &uri].concat();
            let point = [&[0xa0, names.len() as u8][..], &names].concat();
            let sequence = [&[0x30, point.len() as u8][..], &point].concat();
            let syntax = [&[0x30, sequence.len() as u8][..], &sequence].concat();
            params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
                &[2, 5, 29, 46],
                syntax,
            )];
        });
        let base = built_crl(
            &fixture,
            Built {
                number: 3,
                ..Built::default()
            },
        );
        let result = verify_fetched_with(&fixture, &with_crls(&[&base]));
        assert_eq!(
            result.outcome.revocation_wanted,
            [Wanted::Crl(DELTA_URL.to_owned())]
        );
        let delta = built_crl(
            &fixture,
            Built {
                number: 4,
                delta_of: Some(3),
                ..Built::default()
            },
        );
        let result = verify_fetched_with(&fixture, &with_crls(&[&base, &delta]));
        assert!(matches!(result.verdict, Verdict::Trusted(_)), "{result:?}");
    }

    /// An authority information access extension (RFC 5280 4.2.2.1) with one URI entry.
    fn aia(method: &[u8], uri: &str) -> rcgen::CustomExtension {
        let location = [&[0x86, uri.len() as u8][..], uri.as_bytes()].concat();
        let oid = [&[0x06, method.len() as u8][..], method].concat();
        let entry = [
            &[0x30, (oid.len() + location.len()) as u8][..],
            &oid,
            &location,
        ]
        .concat();
        let syntax = [&[0x30, entry.len() as u8][..], &entry].concat();
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], syntax)
    }

    /// `id-ad-caIssuers` and `id-ad-ocsp`, DER content octets.
    const CA_ISSUERS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
    const OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];

    #[test]
    fn revocation_locations_are_read_as_notation_reads_them() {
        // Only the issuer's certificate location: nothing to check, as in Go, where such a
        // certificate has neither OCSPServer nor CRLDistributionPoints.
        let fixture = crl_fixture_with(|params| {
            params.custom_extensions = vec![aia(CA_ISSUERS, "http://ca.example.com/ca.cer")];
        });
        let result = verify_fetched_with(&fixture, &Fetched::default());
        assert!(
            matches!(result.verdict, Verdict::Trusted(_)),
            "{:?}",
            result.verdict
        );

        // An OCSP responder only: it is the source asked for, with the request naming
        // the leaf.
        let fixture = crl_fixture_with(|params| {
            params.custom_extensions = vec![aia(OCSP, "http://ocsp.example.com")];
        });
        let result = verify_fetched_with(&fixture, &Fetched::default());
        assert!(unknown_message(&result).contains("its OCSP responders were not asked"));
        match result.outcome.revocation_wanted.as_slice() {
            [Wanted::Ocsp { url, request }] => {
                assert_eq!(url, "http://ocsp.example.com");
                assert!(!request.is_empty());
            }
            other => panic!("{other:?}"),
        }
        // Its responder failed: with no distribution point there is nothing else.
        let failed = Fetched {
            failures: vec![(
                result.outcome.revocation_wanted[0].clone(),
                "no answer within 2s".to_owned(),
            )],
            ..Fetched::default()
        };
        let result = verify_fetched_with(&fixture, &failed);
        let message = unknown_message(&result);
        assert!(
            message.contains("no OCSP answer settled it, and it names no CRL distribution point")
                && message.contains("OCSP http://ocsp.example.com: no answer within 2s"),
            "{message}"
        );
        assert!(result.outcome.revocation_wanted.is_empty());

        // A distribution point Notation would not fetch.
        let fixture = crl_fixture_with(|params| {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec!["ldap://ldap.example.com/cn=CA?certificateRevocationList".into()],
            }];
        });
        let result = verify_fetched_with(&fixture, &Fetched::default());
        assert!(
            unknown_message(&result).contains("none of its CRL distribution points is an http URL")
        );
        assert!(result.outcome.revocation_wanted.is_empty());
    }

    /// A `notary.x509.signingAuthority` JWS, authentic signing time 2025-06-01.
    fn jws_sa(signer: &Signer, target: &Descriptor) -> Vec<u8> {
        let protected = r#"{"alg":"ES256","crit":["io.cncf.notary.signingScheme","io.cncf.notary.authenticSigningTime"],"cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509.signingAuthority","io.cncf.notary.authenticSigningTime":"2025-06-01T00:00:00Z"}"#;
        let protected = URL_SAFE_NO_PAD.encode(protected);
        let payload = URL_SAFE_NO_PAD.encode(payload(target));
        let signature = sign_fixed(signer, format!("{protected}.{payload}").as_bytes());
        serde_json::to_vec(&serde_json::json!({
            "payload": payload,
            "protected": protected,
            "header": {"x5c": signer.x5c.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>()},
            "signature": URL_SAFE_NO_PAD.encode(signature),
        }))
        .unwrap()
    }

    #[test]
    fn an_invalidity_date_after_the_authentic_signing_time_does_not_revoke() {
        let fixture = crl_fixture();
        let target = n01_target();
        let policy = policy_json("strict", "", r#""signingAuthority:crl""#);
        let config = |crls| {
            NotationConfig::new(
                TrustPolicyDocument::parse(policy.as_bytes()).unwrap(),
                fixture.store.path(),
            )
            .unwrap()
            .with_crls(crls)
        };
        let envelopes = [(MEDIA_TYPE_JWS, jws_sa(&fixture.signer, &target))];
        // Key compromised from 2025-07-01; signed (authentically) 2025-06-01.
        let later = crl_with(
            &fixture,
            (2027, 1, 1),
            &[(LEAF_SERIAL, Some((2025, 7, 1)))],
            None,
        );
        let result = verify(&envelopes, &target, "r.example/a", &config(later), at(NOW));
        assert!(
            matches!(result.verdict, Verdict::Trusted(_)),
            "{:?}",
            result.verdict
        );
        let earlier = crl_with(
            &fixture,
            (2027, 1, 1),
            &[(LEAF_SERIAL, Some((2025, 5, 1)))],
            None,
        );
        let result = verify(
            &envelopes,
            &target,
            "r.example/a",
            &config(earlier),
            at(NOW),
        );
        assert!(
            matches!(
                result.verdict,
                Verdict::Rejected(Rejection::UntrustedRoot(_))
            ),
            "{:?}",
            result.verdict
        );

        // A notary.x509 signature without a timestamp has no authentic signing time:
        // its claimed signing time cannot save a revoked certificate.
        let later = crl_with(
            &fixture,
            (2027, 1, 1),
            &[(LEAF_SERIAL, Some((2030, 1, 1)))],
            None,
        );
        let result = verify_with(&fixture, config_with(&fixture, "", later));
        assert!(
            matches!(
                result.verdict,
                Verdict::Rejected(Rejection::UntrustedRoot(_))
            ),
            "{:?}",
            result.verdict
        );
    }

    #[test]
    fn a_crl_scoped_away_from_the_certificate_is_not_used() {
        let fixture = crl_fixture();
        let users = crl_with(
            &fixture,
            (2027, 1, 1),
            &[],
            Some(rcgen::CrlScope::UserCertsOnly),
        );
        let result = verify_with(&fixture, config_with(&fixture, "", users));
        assert!(
            matches!(result.verdict, Verdict::Trusted(_)),
            "{:?}",
            result.verdict
        );
        let cas = crl_with(
            &fixture,
            (2027, 1, 1),
            &[],
            Some(rcgen::CrlScope::CaCertsOnly),
        );
        let result = verify_with(&fixture, config_with(&fixture, "", cas));
        assert!(
            matches!(
                result.verdict,
                Verdict::Rejected(Rejection::RevocationUnknown(_))
            ),
            "{:?}",
            result.verdict
        );
    }

    #[test]
    fn a_revoked_signing_certificate_is_rejected() {
        let fixture = crl_fixture();
        let result = verify_with(
            &fixture,
            config_with(&fixture, "", crl(&fixture, (2027, 1, 1), &[LEAF_SERIAL])),
        );
        let Verdict::Rejected(Rejection::UntrustedRoot(message)) = &result.verdict else {
            panic!("{:?}", result.verdict)
        };
        assert!(message.contains("revoked"), "{message}");
    }

    #[test]
    fn a_crl_signed_by_another_key_is_not_used() {
        let fixture = crl_fixture();
        // Same CA name, different key: the CRL revoking nothing must not vouch for the leaf.
        let other = crl_fixture();
        let result = verify_with(
            &fixture,
            config_with(&fixture, "", crl(&other, (2027, 1, 1), &[])),
        );
        assert!(
            matches!(
                result.verdict,
                Verdict::Rejected(Rejection::RevocationUnknown(_))
            ),
            "{:?}",
            result.verdict
        );
    }

    #[test]
    fn crl_files_load_from_the_crl_directory() {
        let fixture = crl_fixture();
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(fixture.store.path(), &tmp.path().join(TRUST_STORE_DIR));
        std::fs::write(
            tmp.path().join(POLICY_FILE),
            policy_json("strict", "", r#""ca:crl""#),
        )
        .unwrap();
        std::fs::create_dir(tmp.path().join(CRL_DIR)).unwrap();
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2025, 1, 1),
            next_update: rcgen::date_time_ymd(2027, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&fixture.ca).unwrap();
        std::fs::write(tmp.path().join(CRL_DIR).join("ca.crl"), crl.der()).unwrap();
        let result = verify_with(&fixture, NotationConfig::load(tmp.path()).unwrap());
        assert!(
            matches!(result.verdict, Verdict::Trusted(_)),
            "{:?}",
            result.verdict
        );
        std::fs::write(tmp.path().join(CRL_DIR).join("bad.crl"), b"not a crl").unwrap();
        assert!(matches!(
            NotationConfig::load(tmp.path()),
            Err(Error::Crl(CrlError::Malformed { .. }))
        ));
    }

    #[test]
    fn an_algorithm_that_does_not_fit_the_key_is_unsupported() {
        let target = n01_target();
        let p256 = signer(&rcgen::PKCS_ECDSA_P256_SHA256, 32, "ES256", -7);
        for alg in ["ES384", "PS256"] {
            let envelopes = [(MEDIA_TYPE_JWS, jws(&p256, alg, &target, false))];
            let result = verify(&envelopes, &target, "r.example/a", &p256.config, at(NOW));
            assert!(
                matches!(
                    result.verdict,
                    Verdict::Rejected(Rejection::UnsupportedAlgorithm(_))
                ),
                "{alg}: {:?}",
                result.verdict
            );
        }
    }
}

#[test]
fn trust_store_limits_hold_at_their_edges() {
    let pem =
        std::fs::read_to_string(vectors().join("notation/truststore/x509/ca/e2e/e2e.crt")).unwrap();
    let store = store_ref("ca:s");
    let load = |files: &[(&str, Vec<u8>)]| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("x509/ca/s");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        TrustStore::load(tmp.path(), [&store]).map(|s| s.certs(&store).len())
    };
    let copies = |n: usize| pem.repeat(n).into_bytes();
    assert_eq!(
        load(&[("a.pem", copies(truststore::MAX_CERTS_PER_STORE - 1))]).unwrap(),
        truststore::MAX_CERTS_PER_STORE - 1
    );
    assert_eq!(
        load(&[("a.pem", copies(truststore::MAX_CERTS_PER_STORE))]).unwrap(),
        truststore::MAX_CERTS_PER_STORE
    );
    assert!(matches!(
        load(&[("a.pem", copies(truststore::MAX_CERTS_PER_STORE + 1))]),
        Err(StoreError::TooManyCertificates { .. })
    ));

    let limit = truststore::MAX_CERT_FILE_BYTES as usize;
    let padded = |len: usize| {
        let mut bytes = pem.clone().into_bytes();
        bytes.resize(len, b'\n');
        bytes
    };
    assert_eq!(load(&[("a.pem", padded(limit - 1))]).unwrap(), 1);
    assert_eq!(load(&[("a.pem", padded(limit))]).unwrap(), 1);
    assert!(matches!(
        load(&[("a.pem", padded(limit + 1))]),
        Err(StoreError::FileTooLarge { .. })
    ));
    // Files with other extensions are not read; the spec's three are, in any case.
    assert!(matches!(
        load(&[("a.txt", copies(1))]),
        Err(StoreError::Empty { .. })
    ));
    assert_eq!(
        load(&[
            ("a.CER", copies(1)),
            ("b.Pem", copies(1)),
            ("c.CRT", copies(1)),
            ("d.der", copies(1))
        ])
        .unwrap(),
        3
    );
}

fn store_ref(value: &str) -> trustpolicy::StoreRef {
    let document =
        TrustPolicyDocument::parse(policy_json("strict", "", &format!("\"{value}\"")).as_bytes())
            .unwrap();
    document.policies()[0].trust_stores[0].clone()
}

#[test]
fn a_trust_store_holds_only_what_notation_admits_to_one() {
    // notation-go truststore.go: CA or self-signed certificates in every store, and only
    // self-signed root CAs in a tsa store. A leaf issued by a CA anchors nothing.
    let ca_params = |name: &str| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        params
    };
    let leaf_params = |name: &str| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        params
    };
    let key = || rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let root = rcgen::CertifiedIssuer::self_signed(ca_params("root"), key()).unwrap();
    let intermediate =
        rcgen::CertifiedIssuer::signed_by(ca_params("intermediate"), key(), &root).unwrap();
    let leaf = leaf_params("leaf").signed_by(&key(), &root).unwrap();
    let self_signed = leaf_params("self-signed").self_signed(&key()).unwrap();

    let load = |store: &str, pem: String| {
        let store = match store.split_once(':') {
            Some(("tsa", name)) => trustpolicy::StoreRef {
                kind: trustpolicy::StoreKind::Tsa,
                name: name.into(),
            },
            _ => store_ref(store),
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp
            .path()
            .join("x509")
            .join(store.kind.dir_name())
            .join(&store.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c.pem"), pem).unwrap();
        TrustStore::load(tmp.path(), [&store]).map(|_| ())
    };
    for store in ["ca:s", "signingAuthority:s"] {
        assert!(load(store, root.pem()).is_ok(), "{store}");
        assert!(load(store, intermediate.pem()).is_ok(), "{store}");
        assert!(load(store, self_signed.pem()).is_ok(), "{store}");
        let refused = load(store, root.pem() + &leaf.pem());
        assert!(
            matches!(&refused, Err(StoreError::NotAnAnchor { subject, .. }) if subject == "CN=leaf"),
            "{store}: {refused:?}"
        );
    }
    assert!(load("tsa:s", root.pem()).is_ok());
    for pem in [intermediate.pem(), self_signed.pem(), leaf.pem()] {
        let refused = load("tsa:s", pem);
        assert!(
            matches!(refused, Err(StoreError::NotARoot { .. })),
            "{refused:?}"
        );
    }
}

/// notation-go matches `x509.subject` identities against
/// `pkix.ParseDistinguishedName(leafCert.Subject.String())`: an attribute Go writes as
/// `OID=#hex`, or a value holding "=#", makes the subject unreadable and so matches no
/// identity; of several CNs, Go keeps the last.
#[test]
fn a_leaf_subject_is_matched_as_notation_reads_it() {
    const PLACEHOLDER: [u64; 4] = [2, 5, 4, 99];
    let json = policy_json("strict", "", r#""ca:e2e""#).replace(
        r#""trustedIdentities":["*"]"#,
        r#""trustedIdentities":["x509.subject: C=US, ST=WA, O=crigate test, CN=builder"]"#,
    );
    let document = TrustPolicyDocument::parse(json.as_bytes()).unwrap();
    let policy = &document.policies()[0];
    // A leaf whose subject is C, ST, O, then `extra` in order; PLACEHOLDER stands for a
    // CN that comes before another (rcgen keeps one value per type).
    let leaf = |extra: &[(rcgen::DnType, &str)]| -> Cert {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let dn = &mut params.distinguished_name;
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::StateOrProvinceName, "WA");
        dn.push(rcgen::DnType::OrganizationName, "crigate test");
        for (kind, value) in extra {
            dn.push(kind.clone(), *value);
        }
        let mut der = params.self_signed(&key).unwrap().der().to_vec();
        let (from, to) = ([0x06, 0x03, 0x55, 0x04, 99], [0x06, 0x03, 0x55, 0x04, 0x03]);
        // In the issuer and the subject alike: the same length, so the DER stays valid.
        while let Some(at) = der.windows(5).position(|w| w == from) {
            der[at..at + 5].copy_from_slice(&to);
        }
        Cert::from_der(&der).unwrap()
    };
    let cn = |v| (rcgen::DnType::CommonName, v);
    let custom = |oid: &[u64], v| (rcgen::DnType::CustomDnType(oid.to_vec()), v);
    let cases = [
        ("plain", vec![cn("builder")], true),
        (
            "emailAddress",
            vec![
                cn("builder"),
                custom(&[1, 2, 840, 113549, 1, 9, 1], "a@example.com"),
            ],
            false,
        ),
        (
            "UID",
            vec![
                custom(&[0, 9, 2342, 19200300, 100, 1, 1], "u1"),
                cn("builder"),
            ],
            false,
        ),
        (
            "DC",
            vec![
                custom(&[0, 9, 2342, 19200300, 100, 1, 25], "example"),
                cn("builder"),
            ],
            false,
        ),
        (
            "a value holding =#",
            vec![(rcgen::DnType::LocalityName, "x=#41"), cn("builder")],
            false,
        ),
        (
            "CN other, then builder",
            vec![custom(&PLACEHOLDER, "other"), cn("builder")],
            true,
        ),
        (
            "CN builder, then other",
            vec![custom(&PLACEHOLDER, "builder"), cn("other")],
            false,
        ),
        (
            "CN builder, then empty",
            vec![custom(&PLACEHOLDER, "builder"), cn("")],
            false,
        ),
        ("no CN", vec![], false),
    ];
    for (what, extra, trusted) in cases {
        match check_identity(&leaf(&extra), policy) {
            Ok(()) => assert!(trusted, "{what}: trusted"),
            Err(Rejection::IdentityNotTrusted(_)) => assert!(!trusted, "{what}: not trusted"),
            Err(other) => panic!("{what}: {other:?}"),
        }
    }
}
