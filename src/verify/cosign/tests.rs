//! Table test over every cosign case of `../shared/vectors/cases.json` (C*, K*), and
//! `verify` over several layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use super::*;

fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    assert!(
        dir.join("cases.json").is_file(),
        "third-party vectors missing: expected {}",
        dir.join("cases.json").display()
    );
    dir
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    let path = dir.join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("vector file {} missing: {e}", path.display()))
}

fn read_string(dir: &Path, rel: &str) -> String {
    String::from_utf8(read(dir, rel)).unwrap()
}

fn time(s: &str) -> SystemTime {
    let dt: x509_cert::der::DateTime = s
        .trim_end_matches('Z')
        .replace('T', " ")
        .parse()
        .unwrap_or_else(|_| {
            // der's DateTime does not parse RFC 3339; do it by hand.
            let (date, clock) = s.trim_end_matches('Z').split_once('T').unwrap();
            let d: Vec<u16> = date.split('-').map(|x| x.parse().unwrap()).collect();
            let c: Vec<u8> = clock.split(':').map(|x| x.parse().unwrap()).collect();
            x509_cert::der::DateTime::new(d[0], d[1] as u8, d[2] as u8, c[0], c[1], c[2]).unwrap()
        });
    dt.to_system_time()
}

/// The class of a rejection, in cases.json's words.
fn class(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Trusted(_) => "valid",
        Verdict::Rejected(r) => match r {
            Rejection::NoSignature(_) => "invalid: no-signature",
            Rejection::UntrustedRoot(_) => "invalid: untrusted-root",
            Rejection::RevocationUnknown(_) => "invalid: revocation-unknown",
            Rejection::IdentityNotTrusted(_) => "invalid: identity-not-trusted",
            Rejection::DigestMismatch { .. } => "invalid: digest-mismatch",
            Rejection::Expired(_) => "invalid: expired",
            Rejection::Tampered(_) => "invalid: tampered",
            Rejection::UnsupportedAlgorithm(_) => "invalid: unsupported-algorithm",
            Rejection::Malformed(_) => "invalid: malformed",
        },
    }
}

/// Classes MANIFEST.md accepts besides `expected`: C06, "with key-based signatures an
/// altered payload and a signature by another key are indistinguishable;
/// `untrusted-root` is an equally correct report".
fn also_accepted(case: &Value) -> Option<&'static str> {
    let note = case["note"].as_str().unwrap_or_default();
    note.contains("untrusted-root is an equally correct class")
        .then_some("invalid: untrusted-root")
}

/// The repository a case is admitted under: the payload's own docker-reference, since
/// MANIFEST.md says no case depends on it.
fn repository_of_payload(payload: &[u8]) -> String {
    let v: Value = serde_json::from_slice(payload).unwrap();
    v["critical"]["identity"]["docker-reference"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The case `id` of cases.json.
fn vector_case(dir: &Path, id: &str) -> Value {
    let index: Value = serde_json::from_slice(&read(dir, "cases.json")).unwrap();
    index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("cases.json has no case {id}"))
        .clone()
}

/// Runs a case with its PEM roots (`fulcio_roots`), the trust material every keyless
/// case names.
fn run_case(dir: &Path, case: &Value) -> Verdict {
    run_case_with(dir, case, false, |_| {})
}

/// Runs a case; a keyless one with its `trusted_root.json` (each CA with its own
/// intermediates and validFor) when `trusted_root` and the case names one, else with its
/// PEM roots, which the signature's chain annotation completes. `edit` has the last word
/// on the policy.
fn run_case_with(
    dir: &Path,
    case: &Value,
    trusted_root: bool,
    edit: impl FnOnce(&mut CosignPolicy),
) -> Verdict {
    let id = case["id"].as_str().unwrap();
    let payload = read(dir, case["payload"].as_str().unwrap());
    let image: Digest = case["image_digest"].as_str().unwrap().parse().unwrap();
    let now = time(case["verify_at"].as_str().unwrap());
    let mut policy = CosignPolicy {
        require_tlog: false,
        ..CosignPolicy::default()
    };
    let layer = match case["kind"].as_str().unwrap() {
        "cosign-key" => {
            let key = read(dir, case["public_key"].as_str().unwrap());
            policy
                .keys
                .push(TrustedKey::from_pem(case["public_key"].as_str().unwrap(), &key).unwrap());
            SignatureLayer {
                payload: payload.clone(),
                media_type: case["payload_media_type"].as_str().unwrap().to_owned(),
                signature_b64: read_string(dir, case["signature"].as_str().unwrap()),
                certificate_pem: None,
                chain_pem: None,
                rfc3161_timestamp_json: None,
                bundle_json: None,
            }
        }
        "cosign-keyless" => {
            // The case's Fulcio CAs (MANIFEST.md: "roots ... (or trusted_root.json)").
            match case["trusted_root"].as_str().filter(|_| trusted_root) {
                Some(path) => {
                    policy.fulcio_roots = TrustedRoot::from_json(&read(dir, path))
                        .unwrap()
                        .fulcio_roots;
                }
                None => {
                    for root in case["fulcio_roots"].as_array().unwrap() {
                        policy
                            .add_fulcio_roots_pem(&read(dir, root.as_str().unwrap()))
                            .unwrap();
                    }
                }
            }
            policy.rekor_keys.push(
                PublicKey::from_pem(&read(dir, case["rekor_public_key"].as_str().unwrap()))
                    .unwrap()
                    .into(),
            );
            for ct in case["ctlog_public_keys"].as_array().unwrap() {
                policy.ct_log_keys.push(
                    PublicKey::from_pem(&read(dir, ct.as_str().unwrap()))
                        .unwrap()
                        .into(),
                );
            }
            policy.require_sct = case["require_sct"].as_bool().unwrap();
            // cosign's default; K01g still reports Expired: validity is checked first.
            policy.require_tlog = true;
            let identity = &case["identity"];
            policy.identities.push(KeylessIdentity {
                subject: Matcher::Exact(identity["subject"].as_str().unwrap().to_owned()),
                issuer: identity["issuer"]
                    .as_str()
                    .map(|s| Matcher::Exact(s.to_owned())),
            });
            // Per-file paths win over the annotations file (they are the same values,
            // except where a case swaps one, e.g. K03/K04's bundle).
            let annotations: BTreeMap<String, String> = case["annotations"]
                .as_str()
                .map(|a| serde_json::from_slice(&read(dir, a)).unwrap())
                .unwrap_or_default();
            let file_or = |field: &str, annotation: &str| {
                case[field]
                    .as_str()
                    .map(|p| read_string(dir, p))
                    .or_else(|| annotations.get(annotation).cloned())
            };
            let has_files = case.get("signature").is_some();
            SignatureLayer {
                payload: payload.clone(),
                media_type: layer::SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
                signature_b64: file_or("signature", layer::SIGNATURE_ANNOTATION).unwrap(),
                certificate_pem: file_or("certificate", layer::CERTIFICATE_ANNOTATION),
                chain_pem: file_or("chain", layer::CHAIN_ANNOTATION),
                // With per-file inputs, an absent "bundle" means no bundle (K01g).
                rfc3161_timestamp_json: None,
                bundle_json: if has_files {
                    case["bundle"].as_str().map(|p| read_string(dir, p))
                } else {
                    annotations.get(layer::BUNDLE_ANNOTATION).cloned()
                },
            }
        }
        other => panic!("{id}: unknown cosign case kind {other}"),
    };
    edit(&mut policy);
    let repository = repository_of_payload(&payload);
    verify(&[layer], &[], &image, &repository, &policy, now)
}

#[test]
fn every_cosign_vector_gives_its_expected_class() {
    let dir = vectors_dir();
    let index: Value = serde_json::from_slice(&read(&dir, "cases.json")).unwrap();
    let mut ran = 0;
    let mut failures = Vec::new();
    for case in index["cases"].as_array().unwrap() {
        let kind = case["kind"].as_str().unwrap();
        if !kind.starts_with("cosign") {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        let expected = case["expected"].as_str().unwrap();
        // Keyless cases with their PEM roots, and again with their trusted_root.json.
        for trusted_root in [false, true] {
            if trusted_root && case["trusted_root"].is_null() {
                continue;
            }
            let verdict = run_case_with(&dir, case, trusted_root, |_| {});
            let got = class(&verdict);
            if got != expected && Some(got) != also_accepted(case) {
                failures.push(format!(
                    "{id} (trusted_root.json: {trusted_root}): expected {expected}, got {got}: {verdict:?}"
                ));
            }
        }
        ran += 1;
    }
    assert_eq!(ran, 21, "cases.json has 21 cosign cases (C01a..K05b)");
    assert!(
        failures.is_empty(),
        "vector failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn k01a_signer_carries_identity_issuer_and_digest() {
    let dir = vectors_dir();
    let case = vector_case(&dir, "K01a");
    let Verdict::Trusted(signer) = run_case(&dir, &case) else {
        panic!("K01a not trusted");
    };
    assert_eq!(signer.identity, "sozercan@gmail.com");
    assert_eq!(
        signer.issuer.as_deref(),
        Some("https://github.com/login/oauth")
    );
    assert_eq!(
        signer.signed_digest.to_string(),
        case["image_digest"].as_str().unwrap()
    );
}

#[test]
fn k01a_verifies_with_trusted_root_json_instead_of_pem_files() {
    let dir = vectors_dir();
    let mut policy = CosignPolicy {
        require_sct: true,
        require_tlog: true,
        ..CosignPolicy::default()
    };
    policy.add_trusted_root(
        TrustedRoot::from_json(&read(&dir, "cosign/trust/trusted_root.json")).unwrap(),
    );
    policy.identities.push(KeylessIdentity {
        subject: Matcher::regex(r".*@gmail\.com").unwrap(),
        issuer: Some(Matcher::Exact("https://github.com/login/oauth".to_owned())),
    });
    let annotations: BTreeMap<String, String> = serde_json::from_slice(&read(
        &dir,
        "cosign/keyless/wabbitnetworks-2023/annotations.json",
    ))
    .unwrap();
    let payload = read(&dir, "cosign/keyless/wabbitnetworks-2023/payload.json");
    let layer =
        SignatureLayer::from_annotations(layer::SIMPLE_SIGNING_MEDIA_TYPE, &annotations, payload)
            .unwrap();
    let image: Digest = "sha256:623621b56649b5e0c2c7cf3ffd987932f8f9a5a01036e00d6f3ae9480087621c"
        .parse()
        .unwrap();
    let v = verify(
        &[layer],
        &[],
        &image,
        "wabbitnetworks.azurecr.io/test/cosign-image",
        &policy,
        time("2026-01-01T00:00:00Z"),
    );
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
}

#[test]
fn k01a_pem_roots_take_the_annotations_intermediate_and_a_trusted_root_does_not() {
    // K01a's leaf is issued by sigstore-intermediate, which only its chain annotation
    // carries. Its two PEM roots take it, as legacy cosign does with
    // SIGSTORE_ROOT_FILE; a trusted_root.json CA without that intermediate does not
    // (sigstore-go `FulcioCertificateAuthority.Verify`).
    let dir = vectors_dir();
    let case = vector_case(&dir, "K01a");
    let v = run_case(&dir, &case);
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    // The same roots as trusted_root.json CAs without their intermediate.
    let v = run_case_with(&dir, &case, true, |policy| {
        for ca in &mut policy.fulcio_roots {
            ca.intermediates.clear();
        }
    });
    assert!(
        matches!(v, Verdict::Rejected(Rejection::UntrustedRoot(_))),
        "{v:?}"
    );
}

fn c01_layer(dir: &Path, payload: &str) -> SignatureLayer {
    SignatureLayer {
        payload: read(dir, payload),
        media_type: layer::SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
        signature_b64: read_string(dir, "cosign/key/hello-world/ecdsa-p256.sig"),
        certificate_pem: None,
        chain_pem: None,
        rfc3161_timestamp_json: None,
        bundle_json: None,
    }
}

fn c01_policy(dir: &Path) -> CosignPolicy {
    CosignPolicy {
        keys: vec![TrustedKey::from_pem(
            "p256",
            &read(dir, "cosign/key/hello-world/ecdsa-p256.pub"),
        )
        .unwrap()],
        ..CosignPolicy::default()
    }
}

const C01_IMAGE: &str = "sha256:d37ada95d47ad12224c205a938129df7a3e52345828b4fa27b03a98825d1e2e7";
const C01_REPO: &str = "artifactstest.azurecr.io/4-15-24/cosign/hello-world";

#[test]
fn no_layers_is_no_signature() {
    let image: Digest = C01_IMAGE.parse().unwrap();
    let v = verify(
        &[],
        &[],
        &image,
        C01_REPO,
        &c01_policy(&vectors_dir()),
        SystemTime::now(),
    );
    assert_eq!(v, Verdict::Rejected(Rejection::NoSignature(image)));
}

/// The verdict on C01's image of `layers`, under C01's key.
fn c01_verdict(dir: &Path, layers: &[SignatureLayer]) -> Verdict {
    let image: Digest = C01_IMAGE.parse().unwrap();
    verify(
        layers,
        &[],
        &image,
        C01_REPO,
        &c01_policy(dir),
        SystemTime::now(),
    )
}

/// C01's signature layer with its signature replaced by one that does not decode.
fn c01_garbage(dir: &Path) -> SignatureLayer {
    let mut garbage = c01_layer(dir, "cosign/key/hello-world/payload.json");
    garbage.signature_b64 = "!!".to_owned();
    garbage
}

#[test]
fn one_good_layer_among_bad_ones_is_trusted() {
    let dir = vectors_dir();
    let retargeted = c01_layer(
        &dir,
        "cosign/key/derived/hello-world-retargeted.payload.json",
    );
    let good = c01_layer(&dir, "cosign/key/hello-world/payload.json");
    let v = c01_verdict(&dir, &[c01_garbage(&dir), retargeted, good]);
    assert!(
        matches!(v, Verdict::Trusted(ref s) if s.identity == "p256"),
        "{v:?}"
    );
}

/// The `.sig` tag and the referrers each fill a list of [`MAX_SIGNATURES`] layers: a
/// signature from the referrers, after a full list of junk from the tag, is judged.
#[test]
fn a_full_list_of_tag_layers_does_not_hide_a_referrers_signature() {
    let dir = vectors_dir();
    let mut layers = vec![c01_garbage(&dir); MAX_SIGNATURES];
    layers.push(c01_layer(&dir, "cosign/key/hello-world/payload.json"));
    let v = c01_verdict(&dir, &layers);
    assert!(
        matches!(v, Verdict::Trusted(ref s) if s.identity == "p256"),
        "{v:?}"
    );
}

#[test]
fn most_informative_rejection_wins_across_layers() {
    let dir = vectors_dir();
    let other: Digest = "sha256:623621b56649b5e0c2c7cf3ffd987932f8f9a5a01036e00d6f3ae9480087621c"
        .parse()
        .unwrap();
    let mut garbage = c01_layer(&dir, "cosign/key/hello-world/payload.json");
    garbage.signature_b64 = "!!".to_owned();
    let good_for_other_image = c01_layer(&dir, "cosign/key/hello-world/payload.json");
    // Malformed first, digest mismatch second: the mismatch is reported.
    let v = verify(
        &[garbage, good_for_other_image],
        &[],
        &other,
        C01_REPO,
        &c01_policy(&dir),
        SystemTime::now(),
    );
    assert!(
        matches!(v, Verdict::Rejected(Rejection::DigestMismatch { .. })),
        "{v:?}"
    );
    assert_eq!(
        more_informative(
            Some(Rejection::Expired(String::new())),
            Rejection::Malformed(String::new())
        )
        .code(),
        "expired"
    );
}

#[test]
fn docker_reference_of_another_repository_is_not_trusted_by_default() {
    let dir = vectors_dir();
    let image: Digest = C01_IMAGE.parse().unwrap();
    let layer = c01_layer(&dir, "cosign/key/hello-world/payload.json");
    let v = verify(
        std::slice::from_ref(&layer),
        &[],
        &image,
        "example.com/other",
        &c01_policy(&dir),
        SystemTime::now(),
    );
    assert!(
        matches!(v, Verdict::Rejected(Rejection::IdentityNotTrusted(_))),
        "{v:?}"
    );
    let policy = CosignPolicy {
        docker_reference: DockerReferenceCheck::NotChecked,
        ..c01_policy(&dir)
    };
    let v = verify(
        &[layer],
        &[],
        &image,
        "example.com/other",
        &policy,
        SystemTime::now(),
    );
    assert!(matches!(v, Verdict::Trusted(_)));
}

#[test]
fn key_based_signature_without_tlog_is_rejected_when_tlog_required() {
    let dir = vectors_dir();
    let image: Digest = C01_IMAGE.parse().unwrap();
    let policy = CosignPolicy {
        require_tlog: true,
        ..c01_policy(&dir)
    };
    let layer = c01_layer(&dir, "cosign/key/hello-world/payload.json");
    let v = verify(&[layer], &[], &image, C01_REPO, &policy, SystemTime::now());
    assert!(
        matches!(v, Verdict::Rejected(Rejection::UntrustedRoot(_))),
        "{v:?}"
    );
}

#[test]
fn policy_without_keys_or_identities_trusts_nothing() {
    let dir = vectors_dir();
    let image: Digest = C01_IMAGE.parse().unwrap();
    let layer = c01_layer(&dir, "cosign/key/hello-world/payload.json");
    let v = verify(
        &[layer],
        &[],
        &image,
        C01_REPO,
        &CosignPolicy::default(),
        SystemTime::now(),
    );
    assert!(
        matches!(v, Verdict::Rejected(Rejection::UntrustedRoot(_))),
        "{v:?}"
    );
}

#[test]
fn fuzz_entry_point_survives_vector_inputs_and_garbage() {
    let dir = vectors_dir();
    for rel in [
        "cosign/keyless/wabbitnetworks-2023/annotations.json",
        "cosign/keyless/wabbitnetworks-2023-bad-set/annotations.json",
        "cosign/keyless/wabbitnetworks-2023/bundle.json",
        "cosign/keyless/wabbitnetworks-2023/certificate.pem",
        "cosign/key/hello-world/payload.json",
    ] {
        let bytes = read(&dir, rel);
        fuzz_signature(&bytes);
        for cut in [0, 1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            fuzz_signature(&bytes[..cut]);
        }
    }
    fuzz_signature(&[0xff; 64]);
}
