//! Keyless verification (legacy layers and Sigstore bundles) against a Sigstore built in the test: a Fulcio-like root and
//! intermediate issuing a leaf with SAN and issuer extensions, a Rekor key signing SETs,
//! a CT log key signing an embedded SCT. Each failure reason is produced for real.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rcgen::{
    BasicConstraints as RcBasicConstraints, CertificateParams, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SigningKey, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
};
use sha2::{Digest as _, Sha256};

use super::cert::{self, build_chain, ParsedCertificate};
use crate::oci::Digest;
use crate::verify::cosign::key::PublicKey;
use crate::verify::cosign::layer::{SignatureLayer, SIMPLE_SIGNING_MEDIA_TYPE};
use crate::verify::cosign::policy::{
    CosignPolicy, FulcioCa, KeylessIdentity, Matcher, TimestampAuthority, TrustedKey, TrustedRoot,
    ValidFor,
};
use crate::verify::cosign::rekor::RekorPayload;
use crate::verify::cosign::{bundle, merkle, sct, verify, SigstoreBundle};
use crate::verify::{Rejection, Verdict};

const SAN: &str = "builder@example.com";
const ISSUER: &str = "https://issuer.example.com";
const REPO: &str = "registry.example.com/app";
/// The leaf is valid for ten minutes from this instant (2025-01-01T00:00:00Z).
const NOT_BEFORE_UNIX: u64 = 1_735_689_600;

fn at(offset_secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOT_BEFORE_UNIX + offset_secs)
}

fn image() -> Digest {
    Digest::sha256(b"image manifest")
}

fn payload_for(digest: &Digest) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{REPO}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::OrganizationName, "sigstore.test");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(RcBasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2034, 1, 1);
    p
}

/// How the leaf is made.
#[derive(Clone)]
struct LeafSpec {
    sans: Vec<SanType>,
    /// (OID, extension content) for the issuer: .1.8 DER UTF8String or .1.1 raw bytes.
    issuer_ext: Option<(Vec<u64>, Vec<u8>)>,
    /// The leaf's extended key usages (code signing, as Fulcio's leaves name).
    leaf_ekus: Vec<ExtendedKeyUsagePurpose>,
    with_sct: bool,
    /// Sign the SCT over another TBS (a tampered SCT).
    sct_over_other_tbs: bool,
    /// Valid for ten minutes around the present, instead of from 2025-01-01.
    valid_now: bool,
    /// The leaf key's algorithm, which [`Sigstore::sign`] signs the payload with
    /// (`cosign sign --signing-algorithm`).
    leaf_alg: &'static rcgen::SignatureAlgorithm,
    /// The extended key usages the intermediate states (none by default, as Fulcio's
    /// root does).
    intermediate_ekus: Vec<ExtendedKeyUsagePurpose>,
}

impl Default for LeafSpec {
    fn default() -> Self {
        Self {
            sans: vec![SanType::Rfc822Name(SAN.try_into().unwrap())],
            issuer_ext: Some((vec![1, 3, 6, 1, 4, 1, 57264, 1, 8], utf8_der(ISSUER))),
            leaf_ekus: vec![ExtendedKeyUsagePurpose::CodeSigning],
            with_sct: true,
            sct_over_other_tbs: false,
            valid_now: false,
            leaf_alg: &PKCS_ECDSA_P256_SHA256,
            intermediate_ekus: Vec::new(),
        }
    }
}

fn utf8_der(s: &str) -> Vec<u8> {
    let mut v = vec![0x0c, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

struct Sigstore {
    root_pem: String,
    /// The root's key, to issue more intermediates ([`Sigstore::another_intermediate`]).
    root_issuer: Issuer<'static, KeyPair>,
    intermediate_pem: String,
    leaf_pem: String,
    leaf_key: KeyPair,
    rekor_key: KeyPair,
    ct_key: KeyPair,
}

impl Sigstore {
    fn new(spec: LeafSpec) -> Self {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let root_params = ca_params("test-root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let mut inter_params = ca_params("test-intermediate");
        inter_params.extended_key_usages = spec.intermediate_ekus.clone();
        let inter = inter_params.signed_by(&inter_key, &root_issuer).unwrap();
        let inter_spki = inter_key.subject_public_key_info();
        let inter_issuer = Issuer::new(inter_params, inter_key);

        let leaf_key = KeyPair::generate_for(spec.leaf_alg).unwrap();
        let ct_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf_params.subject_alt_names = spec.sans.clone();
        leaf_params.serial_number = Some(rcgen::SerialNumber::from(42u64));
        let start = if spec.valid_now {
            time::OffsetDateTime::now_utc() - Duration::from_secs(300)
        } else {
            rcgen::date_time_ymd(2025, 1, 1)
        };
        leaf_params.not_before = start;
        leaf_params.not_after = start + Duration::from_secs(600);
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = spec.leaf_ekus.clone();
        if let Some((oid, content)) = &spec.issuer_ext {
            leaf_params
                .custom_extensions
                .push(CustomExtension::from_oid_content(oid, content.clone()));
        }
        let precert = leaf_params.signed_by(&leaf_key, &inter_issuer).unwrap();
        let leaf = if spec.with_sct {
            // RFC 6962 §3.2: sign the precertificate TBS (no SCT extension) with the
            // issuer's key hash, then embed the SCT as the last extension.
            let parsed = ParsedCertificate::from_der(precert.der()).unwrap();
            let mut tbs = parsed.tbs_der().to_vec();
            if spec.sct_over_other_tbs {
                tbs.push(0);
            }
            let issuer_key_hash: [u8; 32] = Sha256::digest(&inter_spki).into();
            let log_id: [u8; 32] = Sha256::digest(ct_key.subject_public_key_info()).into();
            let mut unsigned = sct::Sct {
                log_id,
                timestamp_ms: NOT_BEFORE_UNIX * 1000 + 1000,
                extensions: vec![],
                hash_algorithm: 4,
                signature_algorithm: 3,
                signature: vec![],
            };
            let message = sct::signed_entry(&unsigned, &issuer_key_hash, &tbs).unwrap();
            unsigned.signature = ct_key.sign(&message).unwrap();
            let mut one = vec![0u8];
            one.extend_from_slice(&unsigned.log_id);
            one.extend_from_slice(&unsigned.timestamp_ms.to_be_bytes());
            one.extend_from_slice(&[0, 0, 4, 3]);
            one.extend_from_slice(&(unsigned.signature.len() as u16).to_be_bytes());
            one.extend_from_slice(&unsigned.signature);
            let mut list = ((one.len() + 2) as u16).to_be_bytes().to_vec();
            list.extend_from_slice(&(one.len() as u16).to_be_bytes());
            list.extend_from_slice(&one);
            let mut octet = vec![0x04, list.len() as u8];
            octet.extend_from_slice(&list);
            leaf_params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
                    octet,
                ));
            let leaf = leaf_params.signed_by(&leaf_key, &inter_issuer).unwrap();
            let reparsed = ParsedCertificate::from_der(leaf.der()).unwrap();
            assert_eq!(
                sct::precertificate_tbs(&reparsed).unwrap(),
                parsed.tbs_der(),
                "TBS reconstruction"
            );
            leaf
        } else {
            precert
        };
        Self {
            root_pem: to_pem(root.der()),
            root_issuer,
            intermediate_pem: to_pem(inter.der()),
            leaf_pem: to_pem(leaf.der()),
            leaf_key,
            rekor_key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
            ct_key,
        }
    }

    fn policy(&self) -> CosignPolicy {
        let mut policy = CosignPolicy {
            require_sct: true,
            require_tlog: true,
            rekor_keys: vec![
                PublicKey::from_spki_der(&self.rekor_key.subject_public_key_info())
                    .unwrap()
                    .into(),
            ],
            ct_log_keys: vec![
                PublicKey::from_spki_der(&self.ct_key.subject_public_key_info())
                    .unwrap()
                    .into(),
            ],
            identities: vec![KeylessIdentity {
                subject: Matcher::Exact(SAN.to_owned()),
                issuer: Some(Matcher::Exact(ISSUER.to_owned())),
            }],
            ..CosignPolicy::default()
        };
        // The root and the intermediate that issues the leaves, as one PEM list: one CA
        // with no validFor. The chain annotation does not supply the intermediate.
        policy
            .add_fulcio_roots_pem(format!("{}{}", self.root_pem, self.intermediate_pem).as_bytes())
            .unwrap();
        policy
    }

    fn sign(&self, payload: &[u8]) -> Vec<u8> {
        self.leaf_key.sign(payload).unwrap()
    }

    /// Another intermediate of the same root (a re-keyed Fulcio intermediate), PEM. It
    /// did not issue the leaf.
    fn another_intermediate(&self, cn: &str) -> String {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        to_pem(
            ca_params(cn)
                .signed_by(&key, &self.root_issuer)
                .unwrap()
                .der(),
        )
    }

    /// [`Self::layer`] with its Rekor entry integrated at `t`.
    fn layer_logged_at(&self, t: SystemTime) -> SignatureLayer {
        let mut layer = self.layer();
        let signature = B64.decode(&layer.signature_b64).unwrap();
        let unix = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        layer.bundle_json = Some(self.bundle(&layer.payload, &signature, unix, "hashedrekord"));
        layer
    }

    /// A hashedrekord 0.0.1 entry for (payload, signature, leaf) and its SET.
    fn bundle(&self, payload: &[u8], signature: &[u8], integrated_time: i64, kind: &str) -> String {
        let hash = serde_json::json!({"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))});
        self.bundle_logging(hash, signature, integrated_time, kind)
    }

    /// [`Self::bundle`] with the entry's `data.hash` given.
    fn bundle_logging(
        &self,
        hash: serde_json::Value,
        signature: &[u8],
        integrated_time: i64,
        kind: &str,
    ) -> String {
        let body = serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": kind,
            "spec": {
                "data": {"hash": hash},
                "signature": {
                    "content": B64.encode(signature),
                    "publicKey": {"content": B64.encode(self.leaf_pem.as_bytes())}
                }
            }
        });
        let entry = RekorPayload {
            body: B64.encode(serde_json::to_vec(&body).unwrap()),
            integrated_time,
            log_index: 7,
            log_id: hex::encode(Sha256::digest(self.rekor_key.subject_public_key_info())),
        };
        let set = self
            .rekor_key
            .sign(&serde_json_canonicalizer::to_vec(&entry).unwrap())
            .unwrap();
        serde_json::json!({"SignedEntryTimestamp": B64.encode(set), "Payload": entry}).to_string()
    }

    /// A complete, valid layer for `image()`, logged 60 s into the leaf's validity.
    fn layer(&self) -> SignatureLayer {
        self.layer_signed_by(|payload| self.sign(payload))
    }

    /// [`Self::layer`] with the payload signed by `sign`.
    fn layer_signed_by(&self, sign: impl Fn(&[u8]) -> Vec<u8>) -> SignatureLayer {
        let payload = payload_for(&image());
        let signature = sign(&payload);
        let bundle = self.bundle(
            &payload,
            &signature,
            (NOT_BEFORE_UNIX + 60) as i64,
            "hashedrekord",
        );
        SignatureLayer {
            payload,
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
            signature_b64: B64.encode(&signature),
            certificate_pem: Some(self.leaf_pem.clone()),
            chain_pem: Some(format!("{}{}", self.intermediate_pem, self.root_pem)),
            rfc3161_timestamp_json: None,
            bundle_json: Some(bundle),
        }
    }
}

fn to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn run(layer: &SignatureLayer, policy: &CosignPolicy, now: SystemTime) -> Verdict {
    verify(
        std::slice::from_ref(layer),
        &[],
        &image(),
        REPO,
        policy,
        now,
    )
}

fn rejected(v: &Verdict) -> &Rejection {
    match v {
        Verdict::Rejected(r) => r,
        Verdict::Trusted(s) => panic!("unexpectedly trusted: {s:?}"),
    }
}

#[test]
fn generated_keyless_signature_is_trusted_long_after_the_leaf_expired() {
    let s = Sigstore::new(LeafSpec::default());
    let v = run(&s.layer(), &s.policy(), at(10 * 365 * 86_400));
    let Verdict::Trusted(signer) = v else {
        panic!("{v:?}")
    };
    assert_eq!(signer.identity, SAN);
    assert_eq!(signer.issuer.as_deref(), Some(ISSUER));
}

#[test]
fn keyless_leaves_sign_with_their_default_hash_or_sha256() {
    use rcgen::{PKCS_ECDSA_P521_SHA256, PKCS_ECDSA_P521_SHA384, PKCS_ECDSA_P521_SHA512};
    // `cosign sign --signing-algorithm`: the ephemeral key signs as sigstore's default
    // signer for it does (P-384 SHA-384, P-521 SHA-512); older clients signed SHA-256;
    // rcgen signs Ed25519 pure.
    for alg in [
        &PKCS_ECDSA_P384_SHA384,
        &PKCS_ECDSA_P521_SHA512,
        &PKCS_ECDSA_P521_SHA256,
        &PKCS_ED25519,
    ] {
        let s = Sigstore::new(LeafSpec {
            leaf_alg: alg,
            ..LeafSpec::default()
        });
        let v = run(&s.layer(), &s.policy(), at(0));
        assert!(matches!(v, Verdict::Trusted(_)), "{alg:?}: {v:?}");
        let b = s.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
        let v = run_bundle(&b, &s.policy(), at(0));
        assert!(matches!(v, Verdict::Trusted(_)), "{alg:?} bundle: {v:?}");
    }
    // An Ed25519 leaf signing Ed25519ph, as sigstore's default signer with WithED25519ph.
    let s = Sigstore::new(LeafSpec {
        leaf_alg: &PKCS_ED25519,
        ..LeafSpec::default()
    });
    // The seed of an RFC 8410 PKCS#8 Ed25519 key: bytes 16..48, in v1 and v2 alike.
    let pkcs8 = s.leaf_key.serialize_der();
    let seed: [u8; 32] = pkcs8[16..48].try_into().unwrap();
    let signer = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert!(s
        .leaf_key
        .subject_public_key_info()
        .ends_with(signer.verifying_key().as_bytes()));
    let prehashed = s.layer_signed_by(|payload| {
        signer
            .sign_prehashed(sha2::Sha512::new_with_prefix(payload), None)
            .unwrap()
            .to_bytes()
            .to_vec()
    });
    let v = run(&prehashed, &s.policy(), at(0));
    assert!(matches!(v, Verdict::Trusted(_)), "Ed25519ph: {v:?}");
    // Neither the key's default nor SHA-256: P-521 over SHA-384 is not this signature.
    let s = Sigstore::new(LeafSpec {
        leaf_alg: &PKCS_ECDSA_P521_SHA384,
        ..LeafSpec::default()
    });
    assert!(matches!(
        rejected(&run(&s.layer(), &s.policy(), at(0))),
        Rejection::Tampered(_)
    ));
}

#[test]
fn a_rekor_entry_may_log_the_payload_under_sha256_sha384_or_sha512() {
    // cosign logs the digest it signed: for a P-384 key from 2.5 on, SHA-384.
    let s = Sigstore::new(LeafSpec {
        leaf_alg: &PKCS_ECDSA_P384_SHA384,
        ..LeafSpec::default()
    });
    let payload = payload_for(&image());
    let signature = s.sign(&payload);
    let logging = |algorithm: &str, value: String| {
        let mut layer = s.layer_signed_by(|_| signature.clone());
        layer.bundle_json = Some(s.bundle_logging(
            serde_json::json!({"algorithm": algorithm, "value": value}),
            &signature,
            (NOT_BEFORE_UNIX + 60) as i64,
            "hashedrekord",
        ));
        run(&layer, &s.policy(), at(0))
    };
    let sha384 = |m: &[u8]| hex::encode(sha2::Sha384::digest(m));
    for (algorithm, value) in [
        ("sha256", hex::encode(Sha256::digest(&payload))),
        ("sha384", sha384(&payload)),
        ("sha512", hex::encode(sha2::Sha512::digest(&payload))),
    ] {
        let v = logging(algorithm, value);
        assert!(matches!(v, Verdict::Trusted(_)), "{algorithm}: {v:?}");
    }
    assert!(matches!(
        rejected(&logging("sha384", sha384(b"another payload"))),
        Rejection::Tampered(_)
    ));
    assert!(matches!(
        rejected(&logging("sha1", "00".repeat(20))),
        Rejection::UnsupportedAlgorithm(_)
    ));
}

#[test]
fn legacy_issuer_extension_is_read() {
    let s = Sigstore::new(LeafSpec {
        issuer_ext: Some((
            vec![1, 3, 6, 1, 4, 1, 57264, 1, 1],
            ISSUER.as_bytes().to_vec(),
        )),
        ..LeafSpec::default()
    });
    assert!(matches!(
        run(&s.layer(), &s.policy(), at(0)),
        Verdict::Trusted(_)
    ));
}

#[test]
fn uri_san_matches_a_regex_identity() {
    let s = Sigstore::new(LeafSpec {
        sans: vec![SanType::URI(
            "https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1"
                .try_into()
                .unwrap(),
        )],
        ..LeafSpec::default()
    });
    let mut policy = s.policy();
    policy.identities = vec![KeylessIdentity {
        subject: Matcher::regex(r"https://github\.com/org/repo/\.github/workflows/.*").unwrap(),
        issuer: Some(Matcher::regex(r"https://issuer\.example\.(com|org)").unwrap()),
    }];
    assert!(matches!(
        run(&s.layer(), &policy, at(0)),
        Verdict::Trusted(_)
    ));
}

#[test]
fn only_fulcios_username_other_name_is_a_subject() {
    let signed_as = |oid: Vec<u64>| {
        let s = Sigstore::new(LeafSpec {
            sans: vec![SanType::OtherName((oid, "release".into()))],
            ..LeafSpec::default()
        });
        let mut policy = s.policy();
        policy.identities = vec![KeylessIdentity {
            subject: Matcher::Exact("release".to_owned()),
            issuer: Some(Matcher::Exact(ISSUER.to_owned())),
        }];
        run(&s.layer(), &policy, at(0))
    };
    // Fulcio's username SAN (1.3.6.1.4.1.57264.1.7) names the signer.
    assert!(matches!(
        signed_as(vec![1, 3, 6, 1, 4, 1, 57264, 1, 7]),
        Verdict::Trusted(_)
    ));
    // The same text in an otherName of another type names no one.
    let r = rejected(&signed_as(vec![1, 3, 6, 1, 4, 1, 99999, 1])).clone();
    assert!(matches!(r, Rejection::IdentityNotTrusted(_)), "{r:?}");
}

#[test]
fn a_bundle_is_matched_on_one_san_and_a_legacy_layer_on_every_san() {
    const FULCIO_USERNAME: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 7];
    let uri = "https://ci.example.com/job";
    let email = |s: &str| SanType::Rfc822Name(s.try_into().unwrap());
    let username = |s: &str| SanType::OtherName((FULCIO_USERNAME.to_vec(), s.into()));
    let ip = SanType::IpAddress;
    // (SANs, the subject accepted, bundle trusted, legacy layer trusted): sigstore-go's
    // SummarizeCertificate takes the first URI, else the first email, else Fulcio's
    // username, and no DNS name; cosign's GetSubjectAlternateNames takes them all, the
    // username only as the one otherName.
    let cases = [
        (
            vec![SanType::URI(uri.try_into().unwrap()), email(SAN)],
            SAN,
            false,
            true,
        ),
        (
            vec![email(SAN), SanType::URI(uri.try_into().unwrap())],
            uri,
            true,
            true,
        ),
        (
            vec![email("first@example.com"), email(SAN)],
            SAN,
            false,
            true,
        ),
        (
            vec![email("first@example.com"), email(SAN)],
            "first@example.com",
            true,
            true,
        ),
        (
            vec![SanType::DnsName("builder.example.com".try_into().unwrap())],
            "builder.example.com",
            false,
            true,
        ),
        (
            vec![email(SAN), username("release")],
            "release",
            false,
            true,
        ),
        (
            vec![
                SanType::DnsName("builder.example.com".try_into().unwrap()),
                username("release"),
            ],
            "release",
            true,
            true,
        ),
        (
            vec![username("release"), username("other")],
            "release",
            false,
            false,
        ),
        // An empty first email is no SAN to sigstore-go: the username is read instead.
        (vec![email(""), username("release")], "release", true, true),
        // IP addresses as Go's net.IP.String writes them, for cosign's list only.
        (vec![ip([10, 0, 0, 5].into())], "10.0.0.5", false, true),
        (
            vec![email(SAN), ip("2001:db8::1".parse().unwrap())],
            "2001:db8::1",
            false,
            true,
        ),
        (
            vec![ip("::ffff:192.0.2.1".parse().unwrap())],
            "192.0.2.1",
            false,
            true,
        ),
    ];
    for (sans, subject, bundle_trusted, layer_trusted) in cases {
        let s = Sigstore::new(LeafSpec {
            sans: sans.clone(),
            ..LeafSpec::default()
        });
        let mut policy = s.policy();
        policy.identities = vec![KeylessIdentity {
            subject: Matcher::Exact(subject.to_owned()),
            issuer: Some(Matcher::Exact(ISSUER.to_owned())),
        }];
        let b = s.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
        for (what, verdict, trusted) in [
            ("bundle", run_bundle(&b, &policy, at(0)), bundle_trusted),
            ("layer", run(&s.layer(), &policy, at(0)), layer_trusted),
        ] {
            match verdict {
                Verdict::Trusted(ref signer) => {
                    assert!(trusted, "{what} {sans:?} {subject}: {verdict:?}");
                    if what == "bundle" {
                        // The signer named is the one SAN matched.
                        assert_eq!(signer.identity, subject, "{sans:?}");
                    }
                }
                Verdict::Rejected(Rejection::IdentityNotTrusted(_)) => {
                    assert!(!trusted, "{what} {sans:?} {subject}: {verdict:?}")
                }
                other => panic!("{what} {sans:?} {subject}: {other:?}"),
            }
        }
    }
}

#[test]
fn other_root_and_annotation_root_are_untrusted() {
    let s = Sigstore::new(LeafSpec::default());
    let other = Sigstore::new(LeafSpec::default());
    let mut policy = s.policy();
    policy.fulcio_roots = other.policy().fulcio_roots;
    // The chain annotation carries the real root; it earns no trust by being there.
    let r = rejected(&run(&s.layer(), &policy, at(0))).clone();
    assert!(matches!(r, Rejection::UntrustedRoot(_)), "{r:?}");
}

#[test]
fn leaf_without_code_signing_is_untrusted() {
    // Go's x509 Verify with KeyUsages [CodeSigning], as cosign and sigstore-go verify
    // the leaf: a leaf that names no extended key usage may serve any.
    for (ekus, trusted) in [
        (vec![ExtendedKeyUsagePurpose::ClientAuth], false),
        (
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::EmailProtection,
            ],
            false,
        ),
        (Vec::new(), true),
        (vec![ExtendedKeyUsagePurpose::Any], true),
        (
            vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::CodeSigning,
            ],
            true,
        ),
    ] {
        let s = Sigstore::new(LeafSpec {
            leaf_ekus: ekus.clone(),
            ..LeafSpec::default()
        });
        match run(&s.layer(), &s.policy(), at(0)) {
            Verdict::Trusted(_) => assert!(trusted, "{ekus:?}"),
            Verdict::Rejected(Rejection::UntrustedRoot(why)) => {
                assert!(
                    !trusted && why.contains("not for code signing"),
                    "{ekus:?}: {why}"
                )
            }
            other => panic!("{ekus:?}: {other:?}"),
        }
    }
}

#[test]
fn an_intermediate_that_names_other_purposes_than_code_signing_is_untrusted() {
    // Go's x509 Verify with KeyUsages [CodeSigning], as cosign verifies the chain.
    for (ekus, trusted) in [
        (vec![ExtendedKeyUsagePurpose::ServerAuth], false),
        (
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            false,
        ),
        (vec![ExtendedKeyUsagePurpose::CodeSigning], true),
        (vec![ExtendedKeyUsagePurpose::Any], true),
    ] {
        let s = Sigstore::new(LeafSpec {
            intermediate_ekus: ekus.clone(),
            ..LeafSpec::default()
        });
        let verdict = run(&s.layer(), &s.policy(), at(0));
        match verdict {
            Verdict::Trusted(_) => assert!(trusted, "{ekus:?}"),
            Verdict::Rejected(Rejection::UntrustedRoot(ref why)) => {
                assert!(
                    !trusted && why.contains("does not allow code signing"),
                    "{ekus:?}: {why}"
                )
            }
            other => panic!("{ekus:?}: {other:?}"),
        }
    }
}

#[test]
fn other_subject_or_issuer_is_identity_not_trusted() {
    let s = Sigstore::new(LeafSpec::default());
    for (subject, issuer) in [
        ("someone@example.com", ISSUER),
        (SAN, "https://other.example.com"),
    ] {
        let mut policy = s.policy();
        policy.identities = vec![KeylessIdentity {
            subject: Matcher::Exact(subject.to_owned()),
            issuer: Some(Matcher::Exact(issuer.to_owned())),
        }];
        let v = run(&s.layer(), &policy, at(0));
        assert!(
            matches!(rejected(&v), Rejection::IdentityNotTrusted(_)),
            "{subject} {issuer}: {v:?}"
        );
    }
    // A leaf without an issuer extension fails a policy that requires an issuer.
    let s = Sigstore::new(LeafSpec {
        issuer_ext: None,
        ..LeafSpec::default()
    });
    assert!(matches!(
        rejected(&run(&s.layer(), &s.policy(), at(0))),
        Rejection::IdentityNotTrusted(_)
    ));
}

#[test]
fn payload_for_another_image_is_digest_mismatch() {
    let s = Sigstore::new(LeafSpec::default());
    let v = verify(
        &[s.layer()],
        &[],
        &Digest::sha256(b"other"),
        REPO,
        &s.policy(),
        at(0),
    );
    assert!(matches!(rejected(&v), Rejection::DigestMismatch { .. }));
}

#[test]
fn no_bundle_judges_the_leaf_now_and_requires_tlog() {
    let s = Sigstore::new(LeafSpec::default());
    let mut layer = s.layer();
    layer.bundle_json = None;
    let mut policy = s.policy();
    policy.require_tlog = false;
    assert!(matches!(run(&layer, &policy, at(30)), Verdict::Trusted(_)));
    assert!(matches!(
        rejected(&run(&layer, &policy, at(601))),
        Rejection::Expired(_)
    ));
    policy.require_tlog = true;
    assert!(matches!(
        rejected(&run(&layer, &policy, at(30))),
        Rejection::UntrustedRoot(_)
    ));
}

#[test]
fn integrated_time_outside_validity_is_expired() {
    let s = Sigstore::new(LeafSpec::default());
    let mut layer = s.layer();
    let sig = B64.decode(&layer.signature_b64).unwrap();
    layer.bundle_json = Some(s.bundle(
        &layer.payload,
        &sig,
        (NOT_BEFORE_UNIX + 3600) as i64,
        "hashedrekord",
    ));
    assert!(matches!(
        rejected(&run(&layer, &s.policy(), at(0))),
        Rejection::Expired(_)
    ));
}

#[test]
fn altered_payload_set_or_body_is_tampered() {
    let s = Sigstore::new(LeafSpec::default());
    let policy = s.policy();
    // Payload changed after signing: the logged hash no longer matches.
    let mut layer = s.layer();
    layer.payload = payload_for(&image()).iter().chain(b" ").copied().collect();
    assert!(matches!(
        rejected(&run(&layer, &policy, at(0))),
        Rejection::Tampered(_)
    ));
    // Same, without a log: the leaf's signature does not verify.
    layer.bundle_json = None;
    let relaxed = CosignPolicy {
        require_tlog: false,
        ..s.policy()
    };
    assert!(matches!(
        rejected(&run(&layer, &relaxed, at(0))),
        Rejection::Tampered(_)
    ));
    // SET over other bytes.
    let mut layer = s.layer();
    let bundle = layer
        .bundle_json
        .take()
        .unwrap()
        .replace("\"logIndex\":7", "\"logIndex\":8");
    layer.bundle_json = Some(bundle);
    assert!(matches!(
        rejected(&run(&layer, &policy, at(0))),
        Rejection::Tampered(_)
    ));
    // A correctly signed entry for another signature.
    let mut layer = s.layer();
    let other_sig = s.sign(b"something else");
    layer.bundle_json = Some(s.bundle(
        &layer.payload,
        &other_sig,
        (NOT_BEFORE_UNIX + 60) as i64,
        "hashedrekord",
    ));
    assert!(matches!(
        rejected(&run(&layer, &policy, at(0))),
        Rejection::Tampered(_)
    ));
}

#[test]
fn sct_missing_unknown_or_bad_is_rejected_when_required() {
    let no_sct = Sigstore::new(LeafSpec {
        with_sct: false,
        ..LeafSpec::default()
    });
    assert!(matches!(
        rejected(&run(&no_sct.layer(), &no_sct.policy(), at(0))),
        Rejection::UntrustedRoot(_)
    ));
    let mut relaxed = no_sct.policy();
    relaxed.require_sct = false;
    assert!(matches!(
        run(&no_sct.layer(), &relaxed, at(0)),
        Verdict::Trusted(_)
    ));

    let s = Sigstore::new(LeafSpec::default());
    let mut unknown_log = s.policy();
    unknown_log.ct_log_keys = no_sct.policy().ct_log_keys;
    assert!(matches!(
        rejected(&run(&s.layer(), &unknown_log, at(0))),
        Rejection::UntrustedRoot(_)
    ));

    let bad = Sigstore::new(LeafSpec {
        sct_over_other_tbs: true,
        ..LeafSpec::default()
    });
    assert!(matches!(
        rejected(&run(&bad.layer(), &bad.policy(), at(0))),
        Rejection::Tampered(_)
    ));
}

#[test]
fn unknown_rekor_kind_is_unsupported_and_garbage_is_malformed() {
    let s = Sigstore::new(LeafSpec::default());
    let mut layer = s.layer();
    let sig = B64.decode(&layer.signature_b64).unwrap();
    layer.bundle_json = Some(s.bundle(
        &layer.payload,
        &sig,
        (NOT_BEFORE_UNIX + 60) as i64,
        "intoto",
    ));
    assert!(matches!(
        rejected(&run(&layer, &s.policy(), at(0))),
        Rejection::UnsupportedAlgorithm(_)
    ));

    let mut layer = s.layer();
    layer.certificate_pem =
        Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned());
    assert!(matches!(
        rejected(&run(&layer, &s.policy(), at(0))),
        Rejection::Malformed(_)
    ));
    let mut layer = s.layer();
    layer.bundle_json = Some("{".to_owned());
    assert!(matches!(
        rejected(&run(&layer, &s.policy(), at(0))),
        Rejection::Malformed(_)
    ));
}

#[test]
fn chain_building_needs_a_ca_issuer_and_stays_bounded() {
    let s = Sigstore::new(LeafSpec::default());
    let leaf = ParsedCertificate::from_pem_many(s.leaf_pem.as_bytes())
        .unwrap()
        .remove(0);
    let inter = ParsedCertificate::from_pem_many(s.intermediate_pem.as_bytes())
        .unwrap()
        .remove(0);
    let roots: Vec<FulcioCa> = ParsedCertificate::from_pem_many(s.root_pem.as_bytes())
        .unwrap()
        .into_iter()
        .map(FulcioCa::from)
        .collect();
    let path = build_chain(&leaf, &[&inter], &roots).unwrap();
    assert_eq!(path.len(), 3);
    // Without the intermediate there is no path.
    assert!(matches!(
        build_chain(&leaf, &[], &roots),
        Err(Rejection::UntrustedRoot(_))
    ));
    // The leaf cannot act as an intermediate for itself.
    assert!(build_chain(&leaf, &[&leaf, &inter], &roots).is_ok());
    // The intermediate as an anchor works too (configured intermediates as roots).
    assert_eq!(
        build_chain(&leaf, &[], &[FulcioCa::from(inter.clone())])
            .unwrap()
            .len(),
        2
    );
    // The leaf as a "root" does not issue itself: it is no CA.
    assert!(build_chain(&leaf, &[], &[FulcioCa::from(leaf.clone())]).is_err());
}

#[test]
fn generated_rsa_and_ed25519_keys_verify_key_based_signatures() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};

    let payload = payload_for(&image());
    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let mut rsa_sig = vec![0; rsa.public_modulus_len()];
    rsa.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        &payload,
        &mut rsa_sig,
    )
    .unwrap();
    let rsa_pem = pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        rsa.public_key().as_der().unwrap().as_ref().to_vec(),
    ));
    let ed = Ed25519KeyPair::generate().unwrap();
    let ed_sig = ed.sign(&payload).as_ref().to_vec();
    let ed_pem = pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        ed.public_key().as_der().unwrap().as_ref().to_vec(),
    ));
    for (name, pem_text, sig) in [("rsa", rsa_pem, rsa_sig), ("ed25519", ed_pem, ed_sig)] {
        let policy = CosignPolicy {
            keys: vec![TrustedKey::from_pem(name, pem_text.as_bytes()).unwrap()],
            ..CosignPolicy::default()
        };
        let layer = SignatureLayer {
            payload: payload.clone(),
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
            signature_b64: B64.encode(&sig),
            certificate_pem: None,
            chain_pem: None,
            rfc3161_timestamp_json: None,
            bundle_json: None,
        };
        let v = run(&layer, &policy, at(0));
        assert!(
            matches!(v, Verdict::Trusted(ref s) if s.identity == name),
            "{name}: {v:?}"
        );
        let mut altered = layer.clone();
        altered.payload.push(b' ');
        assert!(
            matches!(
                rejected(&run(&altered, &policy, at(0))),
                Rejection::UntrustedRoot(_)
            ),
            "{name}"
        );
    }
}

/// A layer signed with the leaf's key used as a plain key (no certificate), with a
/// hashedrekord bundle of the signature; and that key, trusted as `release`.
fn key_signed_layer(s: &Sigstore) -> (SignatureLayer, TrustedKey) {
    let payload = payload_for(&image());
    let signature = s.sign(&payload);
    let key_pem = pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        s.leaf_key.subject_public_key_info(),
    ));
    let layer = SignatureLayer {
        payload: payload.clone(),
        media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
        signature_b64: B64.encode(&signature),
        certificate_pem: None,
        chain_pem: None,
        rfc3161_timestamp_json: None,
        bundle_json: Some(s.bundle(
            &payload,
            &signature,
            (NOT_BEFORE_UNIX + 60) as i64,
            "hashedrekord",
        )),
    };
    let key = TrustedKey::from_pem("release", key_pem.as_bytes()).unwrap();
    (layer, key)
}

#[test]
fn key_based_signature_with_rekor_bundle_is_checked_against_the_key() {
    let s = Sigstore::new(LeafSpec::default());
    let (layer, key) = key_signed_layer(&s);
    let mut policy = s.policy();
    policy.identities.clear();
    policy.keys = vec![key];
    // The bundle names the certificate, not the key: the logged signer differs.
    assert!(matches!(
        rejected(&run(&layer, &policy, at(0))),
        Rejection::Tampered(_)
    ));
    // Signed with a certificate beside the key (`cosign sign --key --certificate`), the
    // certificate is what cosign logs: the entry may name it, as the certificate of the
    // trusted key.
    let with_certificate = SignatureLayer {
        certificate_pem: Some(s.leaf_pem.clone()),
        ..layer.clone()
    };
    assert!(
        matches!(run(&with_certificate, &policy, at(0)), Verdict::Trusted(_)),
        "{:?}",
        run(&with_certificate, &policy, at(0))
    );
    // A certificate for another key in the layer does not make the logged one the key's.
    let other = Sigstore::new(LeafSpec::default());
    let with_other = SignatureLayer {
        certificate_pem: Some(other.leaf_pem.clone()),
        ..layer
    };
    assert!(matches!(
        rejected(&run(&with_other, &policy, at(0))),
        Rejection::Tampered(_)
    ));
}

// === Sigstore bundles (v0.3, DSSE) ===

const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

fn statement(digest: &Digest, predicate_type: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": digest.encoded()}}],
        "predicateType": predicate_type,
        "predicate": {}
    }))
    .unwrap()
}

impl Sigstore {
    /// A v0.3 bundle as cosign `sign --new-bundle-format` writes it: DSSE over an in-toto
    /// statement, a `dsse` 0.0.1 entry with SET, and an inclusion proof (leaf 2 of 5)
    /// with a checkpoint signed by the Rekor key.
    fn sigstore_bundle(&self, payload: &[u8]) -> serde_json::Value {
        let signature = self.sign(&bundle::pae(bundle::IN_TOTO_PAYLOAD_TYPE, payload));
        let body = serde_json::to_vec(&serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": "00"},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))},
                "signatures": [{"signature": B64.encode(&signature), "verifier": B64.encode(self.leaf_pem.as_bytes())}]
            }
        }))
        .unwrap();
        let key_id: [u8; 32] = Sha256::digest(self.rekor_key.subject_public_key_info()).into();
        let (root, proof) = tree_around(&body);
        let text = format!("rekor.test - 1\n5\n{}\n", B64.encode(root));
        let mut note_sig = key_id[..4].to_vec();
        note_sig.extend(self.rekor_key.sign(text.as_bytes()).unwrap());
        let checkpoint = format!("{text}\n\u{2014} rekor.test {}\n", B64.encode(note_sig));
        let integrated_time = (NOT_BEFORE_UNIX + 60) as i64;
        let entry = RekorPayload {
            body: B64.encode(&body),
            integrated_time,
            log_index: 2,
            log_id: hex::encode(key_id),
        };
        let set = self
            .rekor_key
            .sign(&serde_json_canonicalizer::to_vec(&entry).unwrap())
            .unwrap();
        let leaf_der = pem::parse(self.leaf_pem.as_bytes())
            .unwrap()
            .into_contents();
        serde_json::json!({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {
                "certificate": {"rawBytes": B64.encode(leaf_der)},
                "tlogEntries": [{
                    "logIndex": "2",
                    "logId": {"keyId": B64.encode(key_id)},
                    "kindVersion": {"kind": "dsse", "version": "0.0.1"},
                    "integratedTime": integrated_time.to_string(),
                    "inclusionPromise": {"signedEntryTimestamp": B64.encode(set)},
                    "inclusionProof": proof_json(&root, &proof, &checkpoint),
                    "canonicalizedBody": B64.encode(&body)
                }]
            },
            "dsseEnvelope": envelope_json(payload, &signature)
        })
    }
}

/// The root of a five-leaf tree whose leaf 2 is `body`, and that leaf's audit path.
fn tree_around(body: &[u8]) -> ([u8; 32], Vec<[u8; 32]>) {
    let leaves: Vec<[u8; 32]> = [&b"a"[..], b"b", body, b"d", b"e"]
        .iter()
        .map(|l| merkle::leaf_hash(l))
        .collect();
    (
        merkle::reference::mth(&leaves),
        merkle::reference::path(2, &leaves),
    )
}

/// A bundle's inclusion proof of leaf 2 of a five-leaf tree, with its checkpoint.
fn proof_json(root: &[u8; 32], proof: &[[u8; 32]], checkpoint: &str) -> serde_json::Value {
    serde_json::json!({
        "logIndex": "2",
        "rootHash": B64.encode(root),
        "treeSize": "5",
        "hashes": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "checkpoint": {"envelope": checkpoint}
    })
}

/// A bundle's DSSE envelope of an in-toto `payload` with one signature.
fn envelope_json(payload: &[u8], signature: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "payload": B64.encode(payload),
        "payloadType": bundle::IN_TOTO_PAYLOAD_TYPE,
        "signatures": [{"sig": B64.encode(signature), "keyid": ""}]
    })
}

fn run_bundle(bundle: &serde_json::Value, policy: &CosignPolicy, now: SystemTime) -> Verdict {
    let b = SigstoreBundle {
        json: serde_json::to_vec(bundle).unwrap(),
    };
    verify(&[], std::slice::from_ref(&b), &image(), REPO, policy, now)
}

#[test]
fn generated_v03_bundle_with_set_proof_and_checkpoint_is_trusted() {
    let s = Sigstore::new(LeafSpec::default());
    let b = s.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
    let v = run_bundle(&b, &s.policy(), at(10 * 365 * 86_400));
    assert!(
        matches!(v, Verdict::Trusted(ref signer) if signer.identity == SAN),
        "{v:?}"
    );
}

#[test]
fn bundle_for_another_image_is_digest_mismatch() {
    let s = Sigstore::new(LeafSpec::default());
    let b = s.sigstore_bundle(&statement(
        &Digest::sha256(b"other"),
        bundle::COSIGN_SIGN_PREDICATE_TYPE,
    ));
    assert!(matches!(
        rejected(&run_bundle(&b, &s.policy(), at(0))),
        Rejection::DigestMismatch { .. }
    ));
}

#[test]
fn bundle_with_bad_proof_checkpoint_or_envelope_is_rejected() {
    let s = Sigstore::new(LeafSpec::default());
    let policy = s.policy();
    let good = s.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
    let entry = "/verificationMaterial/tlogEntries/0";

    // An audit path hash flipped: the proof does not reach the root.
    let mut b = good.clone();
    let h = b
        .pointer_mut(&format!("{entry}/inclusionProof/hashes/0"))
        .unwrap();
    let mut raw = B64.decode(h.as_str().unwrap()).unwrap();
    raw[0] ^= 1;
    *h = serde_json::Value::String(B64.encode(raw));
    assert!(matches!(
        rejected(&run_bundle(&b, &policy, at(0))),
        Rejection::Tampered(_)
    ));

    // A checkpoint from an unknown log.
    let other = Sigstore::new(LeafSpec::default());
    let mut b = good.clone();
    let foreign = other.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
    *b.pointer_mut(&format!("{entry}/inclusionProof/checkpoint"))
        .unwrap() = foreign
        .pointer(&format!("{entry}/inclusionProof/checkpoint"))
        .unwrap()
        .clone();
    assert!(matches!(
        rejected(&run_bundle(&b, &policy, at(0))),
        Rejection::UntrustedRoot(_)
    ));

    // The envelope's payload swapped after signing.
    let mut b = good.clone();
    *b.pointer_mut("/dsseEnvelope/payload").unwrap() =
        serde_json::Value::String(B64.encode(statement(
            &Digest::sha256(b"other"),
            bundle::COSIGN_SIGN_PREDICATE_TYPE,
        )));
    assert!(matches!(
        rejected(&run_bundle(&b, &policy, at(0))),
        Rejection::Tampered(_)
    ));

    // v0.2 requires an inclusion proof.
    let mut b = good.clone();
    b["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2".into();
    b.pointer_mut(entry)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("inclusionProof");
    assert!(matches!(
        rejected(&run_bundle(&b, &policy, at(0))),
        Rejection::Malformed(_)
    ));
}

#[test]
fn a_keyless_bundle_without_a_set_or_a_timestamp_has_no_trusted_time_and_is_refused() {
    // An inclusion proof shows the entry is logged, not when (sigstore-go takes no time
    // from it); cosign requires an integrated time or a signed timestamp for keyless.
    let s = Sigstore::new(LeafSpec::default());
    let mut b = s.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
    b.pointer_mut("/verificationMaterial/tlogEntries/0")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("inclusionPromise");
    // Even while the certificate is valid now, now is not when it signed.
    for now in [at(30), at(601)] {
        let v = run_bundle(&b, &s.policy(), now);
        assert!(
            matches!(rejected(&v), Rejection::UntrustedRoot(ref why) if why.contains("time")),
            "{v:?}"
        );
    }
}

#[test]
fn message_signature_bundle_is_unsupported_and_attestations_are_not_signatures() {
    let s = Sigstore::new(LeafSpec::default());
    let mut b = s.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
    let object = b.as_object_mut().unwrap();
    object.remove("dsseEnvelope");
    object.insert(
        "messageSignature".to_owned(),
        serde_json::json!({"messageDigest": {"algorithm": "SHA2_256", "digest": ""}, "signature": ""}),
    );
    assert!(matches!(
        rejected(&run_bundle(&b, &s.policy(), at(0))),
        Rejection::UnsupportedAlgorithm(_)
    ));
    let sbom = s.sigstore_bundle(&statement(&image(), "https://cyclonedx.org/bom"));
    assert!(matches!(
        rejected(&run_bundle(&sbom, &s.policy(), at(0))),
        Rejection::NoSignature(_)
    ));
    let garbage = serde_json::json!({"mediaType": BUNDLE_V03});
    assert!(matches!(
        rejected(&run_bundle(&garbage, &s.policy(), at(0))),
        Rejection::Malformed(_)
    ));
}

#[test]
fn a_ca_vouches_only_for_signatures_made_inside_its_valid_for() {
    // The layer's entry was integrated at at(60); both ends of validFor are inclusive.
    let s = Sigstore::new(LeafSpec::default());
    let mut policy = s.policy();
    for (start, end, trusted) in [
        (None, Some(at(59)), false),
        (None, Some(at(60)), true),
        (Some(at(60)), None, true),
        (Some(at(61)), None, false),
    ] {
        policy.fulcio_roots[0].valid_for = ValidFor { start, end };
        let v = run(&s.layer(), &policy, at(0));
        match trusted {
            true => assert!(matches!(v, Verdict::Trusted(_)), "{start:?} {end:?}: {v:?}"),
            false => assert!(
                matches!(rejected(&v), Rejection::UntrustedRoot(_)),
                "{start:?} {end:?}: {v:?}"
            ),
        }
    }
}

impl Sigstore {
    /// A v0.1 bundle as older cosign wrote it: the leaf and the Fulcio intermediate in
    /// `x509CertificateChain`, a tlog entry with its inclusion promise and no proof.
    fn v01_bundle_with_chain(&self) -> serde_json::Value {
        let mut b = self.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
        b["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.1".into();
        let leaf = b["verificationMaterial"]["certificate"]["rawBytes"].clone();
        let inter = B64.encode(
            pem::parse(self.intermediate_pem.as_bytes())
                .unwrap()
                .into_contents(),
        );
        let material = b["verificationMaterial"].as_object_mut().unwrap();
        material.remove("certificate");
        material.insert(
            "x509CertificateChain".to_owned(),
            serde_json::json!({"certificates": [{"rawBytes": leaf}, {"rawBytes": inter}]}),
        );
        b.pointer_mut("/verificationMaterial/tlogEntries/0")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove("inclusionProof");
        b
    }
}

#[test]
fn v01_bundle_with_certificate_chain_and_promise_only_is_trusted() {
    let s = Sigstore::new(LeafSpec::default());
    let mut b = s.v01_bundle_with_chain();
    // The chain the bundle carries is read (it must parse) and lends nothing: the path
    // runs through the intermediate the policy's CA names.
    let v = run_bundle(&b, &s.policy(), at(10 * 365 * 86_400));
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    // v0.1 requires the inclusion promise.
    b.pointer_mut("/verificationMaterial/tlogEntries/0")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("inclusionPromise");
    assert!(matches!(
        rejected(&run_bundle(&b, &s.policy(), at(0))),
        Rejection::Malformed(_)
    ));
}

// === Rekor v2 entries ===

/// The name a test Rekor v2 log signs its checkpoints under (its origin).
const LOG_V2: &str = "log2099-1.rekor.test";

/// A test Rekor v2 log: an Ed25519 key, as the public-good instances have.
fn log_v2() -> KeyPair {
    KeyPair::generate_for(&PKCS_ED25519).unwrap()
}

impl Sigstore {
    /// A v0.3 bundle logged in a Rekor v2 log with the key `log` (signing its checkpoints
    /// as [`LOG_V2`]): a `dsse` 0.0.2 entry with an inclusion proof (leaf 2 of 5) and a
    /// checkpoint whose signature carries the C2SP signed-note key ID; no SET, no
    /// integratedTime, no log id. Signed with the leaf's key; `key_based` names it by a
    /// public key (`cosign sign --key`) instead of the certificate.
    fn rekor_v2_bundle(&self, payload: &[u8], log: &KeyPair, key_based: bool) -> serde_json::Value {
        let signature = self.sign(&bundle::pae(bundle::IN_TOTO_PAYLOAD_TYPE, payload));
        let leaf_der = pem::parse(self.leaf_pem.as_bytes())
            .unwrap()
            .into_contents();
        let (verifier, material) = if key_based {
            let spki = self.leaf_key.subject_public_key_info();
            (
                serde_json::json!({"publicKey": {"rawBytes": B64.encode(spki)}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}),
                serde_json::json!({"publicKey": {"hint": "release-key"}}),
            )
        } else {
            (
                serde_json::json!({"x509Certificate": {"rawBytes": B64.encode(&leaf_der)}, "keyDetails": "PKIX_ECDSA_P256_SHA_256"}),
                serde_json::json!({"certificate": {"rawBytes": B64.encode(&leaf_der)}}),
            )
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "apiVersion": "0.0.2",
            "kind": "dsse",
            "spec": {"dsseV002": {
                "payloadHash": {"algorithm": "SHA2_256", "digest": B64.encode(Sha256::digest(payload))},
                "signatures": [{"content": B64.encode(&signature), "verifier": verifier}]
            }}
        }))
        .unwrap();
        let (root, proof) = tree_around(&body);
        let text = format!("{LOG_V2}\n5\n{}\n", B64.encode(root));
        let mut note_sig = merkle::note_key_id(LOG_V2, log.public_key_raw()).to_vec();
        note_sig.extend(log.sign(text.as_bytes()).unwrap());
        let checkpoint = format!("{text}\n\u{2014} {LOG_V2} {}\n", B64.encode(note_sig));
        let mut material = material;
        material["tlogEntries"] = serde_json::json!([{
            "logIndex": "2",
            "kindVersion": {"kind": "dsse", "version": "0.0.2"},
            "inclusionProof": proof_json(&root, &proof, &checkpoint),
            "canonicalizedBody": B64.encode(&body)
        }]);
        serde_json::json!({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": material,
            "dsseEnvelope": envelope_json(payload, &signature)
        })
    }
}

/// A policy trusting the leaf's key as `release`, the log `log`, and requiring the log.
fn key_policy_with_log(s: &Sigstore, log: &KeyPair) -> CosignPolicy {
    let key_pem = pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        s.leaf_key.subject_public_key_info(),
    ));
    CosignPolicy {
        keys: vec![TrustedKey::from_pem("release", key_pem.as_bytes()).unwrap()],
        rekor_keys: vec![PublicKey::from_spki_der(&log.subject_public_key_info())
            .unwrap()
            .into()],
        require_tlog: true,
        ..CosignPolicy::default()
    }
}

#[test]
fn a_rekor_v2_entry_is_verified_by_its_proof_and_its_signed_note_checkpoint() {
    let s = Sigstore::new(LeafSpec::default());
    let log = log_v2();
    let payload = statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE);
    let policy = key_policy_with_log(&s, &log);
    let b = s.rekor_v2_bundle(&payload, &log, true);
    let v = run_bundle(&b, &policy, at(10 * 365 * 86_400));
    assert!(
        matches!(v, Verdict::Trusted(ref signer) if signer.identity == "release"),
        "{v:?}"
    );

    // The key ID binds the key name: the same signature under another name is from no
    // configured log (C2SP signed-note: a signature matching a known key's ID but not
    // its name is from an unknown key).
    let mut renamed = b.clone();
    let checkpoint = &mut renamed["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
        ["checkpoint"]["envelope"];
    *checkpoint = serde_json::json!(checkpoint.as_str().unwrap().replace(
        &format!("\u{2014} {LOG_V2} "),
        "\u{2014} other.example/log "
    ));
    let verdict = run_bundle(&renamed, &policy, at(0));
    assert!(
        matches!(rejected(&verdict), Rejection::UntrustedRoot(ref why) if why.contains("checkpoint")),
        "{verdict:?}"
    );
    // Another log's key.
    let verdict = run_bundle(&b, &key_policy_with_log(&s, &log_v2()), at(0));
    assert!(
        matches!(rejected(&verdict), Rejection::UntrustedRoot(_)),
        "{verdict:?}"
    );

    // The body must log this payload and this signer; the entry must have its proof.
    let entry = |b: &serde_json::Value| b["verificationMaterial"]["tlogEntries"][0].clone();
    let body_of = |b: &serde_json::Value| -> serde_json::Value {
        serde_json::from_slice(
            &B64.decode(entry(b)["canonicalizedBody"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    for (field, value) in [
        (
            "payloadHash",
            serde_json::json!({"algorithm": "SHA2_256", "digest": B64.encode([0u8; 32])}),
        ),
        (
            "payloadHash",
            serde_json::json!({"algorithm": "SHA2_384", "digest": B64.encode(Sha256::digest(&payload))}),
        ),
    ] {
        let mut tampered = b.clone();
        let mut body = body_of(&b);
        body["spec"]["dsseV002"][field] = value;
        tampered["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"] =
            serde_json::json!(B64.encode(serde_json::to_vec(&body).unwrap()));
        // The proof no longer covers the changed body: refused at the proof or the body.
        let verdict = run_bundle(&tampered, &policy, at(0));
        assert!(
            matches!(rejected(&verdict), Rejection::Tampered(_)),
            "{verdict:?}"
        );
    }
    // Logged as signed by the certificate, where the bundle is key-based.
    let keyless_body = s.rekor_v2_bundle(&payload, &log, false);
    let mut mixed = b.clone();
    mixed["verificationMaterial"]["tlogEntries"] =
        keyless_body["verificationMaterial"]["tlogEntries"].clone();
    let verdict = run_bundle(&mixed, &policy, at(0));
    assert!(
        matches!(rejected(&verdict), Rejection::Tampered(ref why) if why.contains("signer")),
        "{verdict:?}"
    );
    let mut unproven = b.clone();
    unproven["verificationMaterial"]["tlogEntries"][0]
        .as_object_mut()
        .unwrap()
        .remove("inclusionProof");
    let verdict = run_bundle(&unproven, &policy, at(0));
    assert!(
        matches!(rejected(&verdict), Rejection::Malformed(_)),
        "{verdict:?}"
    );
}

/// A timestamp authority run with `openssl ts` in `dir`: a root, and a TSA certificate it
/// issued with the critical timeStamping usage RFC 3161 2.3 requires.
struct OpensslTsa {
    dir: std::path::PathBuf,
    /// TSA certificate first, root last, as a trusted root lists them.
    chain_der: Vec<Vec<u8>>,
}

impl OpensslTsa {
    fn start(dir: &std::path::Path) -> Self {
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "root.key",
                "-out",
                "root.pem",
                "-subj",
                "/O=crigate test/CN=test tsa root",
                "-days",
                "2",
                "-addext",
                "keyUsage = critical, keyCertSign, cRLSign",
            ],
        ]
        .concat());
        run(&[
            &["req", "-new"][..],
            &ec,
            &[
                "-keyout",
                "tsa.key",
                "-out",
                "tsa.csr",
                "-subj",
                "/O=crigate test/CN=test tsa",
            ],
        ]
        .concat());
        std::fs::write(
            dir.join("tsa.ext"),
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
             extendedKeyUsage = critical, timeStamping\nsubjectKeyIdentifier = hash\n\
             authorityKeyIdentifier = keyid\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "tsa.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "tsa.ext",
            "-out",
            "tsa.pem",
        ]);
        std::fs::write(dir.join("serial"), "01\n").unwrap();
        std::fs::write(
            dir.join("ts.cnf"),
            "[tsa]\ndefault_tsa = test\n[test]\nserial = ./serial\nsigner_cert = ./tsa.pem\n\
             signer_key = ./tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n\
             digests = sha256\naccuracy = secs:1\ness_cert_id_alg = sha256\n",
        )
        .unwrap();
        let der = |file: &str| {
            pem::parse(std::fs::read(dir.join(file)).unwrap())
                .unwrap()
                .into_contents()
        };
        Self {
            dir: dir.to_owned(),
            chain_der: vec![der("tsa.pem"), der("root.pem")],
        }
    }

    /// A TimeStampResp over `data`, as a Sigstore client requests it (SHA-256, the TSA's
    /// certificate included).
    fn stamp(&self, data: &[u8]) -> Vec<u8> {
        std::fs::write(self.dir.join("data.bin"), data).unwrap();
        for args in [
            &[
                "ts",
                "-query",
                "-data",
                "data.bin",
                "-sha256",
                "-cert",
                "-no_nonce",
                "-out",
                "q.tsq",
            ][..],
            &[
                "ts",
                "-reply",
                "-queryfile",
                "q.tsq",
                "-config",
                "ts.cnf",
                "-out",
                "r.tsr",
            ][..],
        ] {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(&self.dir)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        }
        std::fs::read(self.dir.join("r.tsr")).unwrap()
    }

    fn authority(&self, valid_for: ValidFor) -> TimestampAuthority {
        TimestampAuthority {
            chain: self
                .chain_der
                .iter()
                .map(|der| crate::verify::notation::chain::Cert::from_der(der).unwrap())
                .collect(),
            valid_for,
        }
    }
}

#[test]
fn a_keyless_rekor_v2_bundle_is_judged_at_the_time_its_rfc3161_timestamp_gives() {
    let dir = tempfile::tempdir().unwrap();
    let tsa = OpensslTsa::start(dir.path());
    let s = Sigstore::new(LeafSpec {
        valid_now: true,
        ..LeafSpec::default()
    });
    let log = log_v2();
    let mut b = s.rekor_v2_bundle(
        &statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE),
        &log,
        false,
    );
    let signature = B64
        .decode(b["dsseEnvelope"]["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let stamp = |data: &[u8]| serde_json::json!({"rfc3161Timestamps": [{"signedTimestamp": B64.encode(tsa.stamp(data))}]});
    b["verificationMaterial"]["timestampVerificationData"] = stamp(&signature);
    let mut policy = s.policy();
    policy.require_sct = false;
    policy.rekor_keys = vec![PublicKey::from_spki_der(&log.subject_public_key_info())
        .unwrap()
        .into()];
    policy.timestamp_authorities = vec![tsa.authority(ValidFor::default())];
    // A day later the ten-minute certificate has long expired; the timestamp shows it
    // was valid when it signed.
    let later = SystemTime::now() + Duration::from_secs(86_400);
    let v = run_bundle(&b, &policy, later);
    assert!(
        matches!(v, Verdict::Trusted(ref signer) if signer.identity == SAN),
        "{v:?}"
    );

    // Without the authority configured, nothing shows when it signed.
    let mut untrusted = policy.clone();
    untrusted.timestamp_authorities.clear();
    let verdict = run_bundle(&b, &untrusted, later);
    assert!(
        matches!(rejected(&verdict), Rejection::UntrustedRoot(ref why) if why.contains("RFC 3161")),
        "{verdict:?}"
    );
    // A timestamp over other bytes than the signature vouches for nothing.
    let mut other = b.clone();
    other["verificationMaterial"]["timestampVerificationData"] = stamp(b"other bytes");
    let verdict = run_bundle(&other, &policy, later);
    assert!(
        matches!(rejected(&verdict), Rejection::UntrustedRoot(ref why) if why.contains("imprint")),
        "{verdict:?}"
    );
    // An authority whose validFor ended before the timestamp's genTime.
    let mut ended = policy.clone();
    ended.timestamp_authorities = vec![tsa.authority(ValidFor {
        start: None,
        end: Some(SystemTime::now() - Duration::from_secs(3600)),
    })];
    let verdict = run_bundle(&b, &ended, later);
    assert!(
        matches!(rejected(&verdict), Rejection::UntrustedRoot(ref why) if why.contains("validFor")),
        "{verdict:?}"
    );
    // A bundle whose entry has a SET is judged at the SET's time; timestamps beside it
    // (cosign with a TSA and a Rekor v1 log) are not consulted, so a trusted root that
    // names no authority still accepts it.
    let v1_signer = Sigstore::new(LeafSpec::default());
    let mut v1 =
        v1_signer.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
    v1["verificationMaterial"]["timestampVerificationData"] = stamp(b"not this signature");
    let v = run_bundle(&v1, &v1_signer.policy(), at(10 * 365 * 86_400));
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    // Without any timestamp nothing shows when it signed: refused, even while the
    // certificate is still valid now.
    let mut bare = b.clone();
    bare["verificationMaterial"]
        .as_object_mut()
        .unwrap()
        .remove("timestampVerificationData");
    for now in [SystemTime::now(), later] {
        let verdict = run_bundle(&bare, &policy, now);
        assert!(
            matches!(rejected(&verdict), Rejection::UntrustedRoot(ref why) if why.contains("time")),
            "{verdict:?}"
        );
    }
}

/// A bundle signed with the leaf's key and naming it by a hint instead of a certificate
/// (`cosign sign --key`), and a policy trusting that key as `release`.
fn key_based_bundle() -> (Sigstore, serde_json::Value, CosignPolicy) {
    let s = Sigstore::new(LeafSpec::default());
    let mut b = s.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
    let material = b["verificationMaterial"].as_object_mut().unwrap();
    material.remove("certificate");
    material.insert(
        "publicKey".to_owned(),
        serde_json::json!({"hint": "release-key"}),
    );
    let key_pem = pem::encode(&pem::Pem::new(
        "PUBLIC KEY",
        s.leaf_key.subject_public_key_info(),
    ));
    let policy = CosignPolicy {
        keys: vec![TrustedKey::from_pem("release", key_pem.as_bytes()).unwrap()],
        ..CosignPolicy::default()
    };
    (s, b, policy)
}

#[test]
fn key_based_bundle_verifies_under_a_trusted_key() {
    let (s, mut b, mut policy) = key_based_bundle();
    b["verificationMaterial"]
        .as_object_mut()
        .unwrap()
        .remove("tlogEntries");
    let v = run_bundle(&b, &policy, at(0));
    assert!(
        matches!(v, Verdict::Trusted(ref signer) if signer.identity == "release"),
        "{v:?}"
    );
    policy.require_tlog = true;
    assert!(matches!(
        rejected(&run_bundle(&b, &policy, at(0))),
        Rejection::UntrustedRoot(_)
    ));
    policy.require_tlog = false;
    policy.keys = vec![TrustedKey::from_pem(
        "other",
        pem::encode(&pem::Pem::new(
            "PUBLIC KEY",
            s.rekor_key.subject_public_key_info(),
        ))
        .as_bytes(),
    )
    .unwrap()];
    assert!(matches!(
        rejected(&run_bundle(&b, &policy, at(0))),
        Rejection::UntrustedRoot(_)
    ));
}

#[test]
fn a_tlog_entry_of_an_unread_kind_counts_as_none() {
    // A key-based bundle whose entry is of a kind not read here (`intoto` 0.0.2).
    let (s, mut b, mut policy) = key_based_bundle();
    b["verificationMaterial"]["tlogEntries"][0]["kindVersion"] =
        serde_json::json!({"kind": "intoto", "version": "0.0.2"});
    policy.rekor_keys = s.policy().rekor_keys;
    // Not required: judged by the key alone.
    let v = run_bundle(&b, &policy, at(0));
    assert!(
        matches!(v, Verdict::Trusted(ref signer) if signer.identity == "release"),
        "{v:?}"
    );
    // Required: from a configured log, refused, saying which kind it could not read.
    policy.require_tlog = true;
    let verdict = run_bundle(&b, &policy, at(0));
    let rejection = rejected(&verdict);
    assert!(
        matches!(rejection, Rejection::UnsupportedAlgorithm(ref why) if why.contains("intoto 0.0.2")),
        "{rejection:?}"
    );
}

#[test]
fn issuers_are_tried_by_key_identifier_first_and_a_mismatch_last() {
    let with_id = |id: u8| {
        let mut params = ca_params("test-root");
        params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(vec![id; 20]);
        params
    };
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let root_pem = root_key.serialize_pem();
    let root = with_id(1).self_signed(&root_key).unwrap();
    // Another root with the same name (a re-keyed root, say) and its own identifier.
    let decoy_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let decoy = with_id(9).self_signed(&decoy_key).unwrap();
    let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let mut inter_params = ca_params("test-intermediate");
    inter_params.use_authority_key_identifier_extension = true;
    let inter = inter_params
        .signed_by(&inter_key, &Issuer::new(with_id(1), root_key))
        .unwrap();
    // Signed by the root's key, but naming another key identifier.
    let misnamed = inter_params
        .signed_by(
            &inter_key,
            &Issuer::new(with_id(2), KeyPair::from_pem(&root_pem).unwrap()),
        )
        .unwrap();

    let parse = |der: &[u8]| ParsedCertificate::from_der(der).unwrap();
    let (root, decoy) = (parse(root.der()), parse(decoy.der()));
    let (inter, misnamed) = (parse(inter.der()), parse(misnamed.der()));
    assert_eq!(inter.issuer_rank(&root), 0);
    assert_eq!(inter.issuer_rank(&decoy), 2);
    let roots = [FulcioCa::from(decoy.clone()), FulcioCa::from(root.clone())];
    let path = build_chain(&inter, &[], &roots).unwrap();
    assert_eq!(path[1].der(), root.der());
    // A mismatched identifier orders the candidate last; it does not exclude it.
    assert_eq!(misnamed.issuer_rank(&root), 2);
    let path = build_chain(&misnamed, &[], &roots).unwrap();
    assert_eq!(path[1].der(), root.der());
    assert!(build_chain(&misnamed, &[], &roots[..1]).is_err());
}

/// `cosign sign --timestamp-server-url --tlog-upload=false`: a `.sig` layer with no Rekor
/// bundle and an RFC 3161 timestamp over the signature, judged at the timestamp's time.
#[test]
fn a_legacy_layer_without_a_log_entry_is_judged_at_its_rfc3161_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let tsa = OpensslTsa::start(dir.path());
    let s = Sigstore::new(LeafSpec {
        valid_now: true,
        ..LeafSpec::default()
    });
    let annotation = |response: &[u8]| {
        Some(serde_json::json!({"SignedRFC3161Timestamp": B64.encode(response)}).to_string())
    };
    let mut layer = s.layer();
    layer.bundle_json = None;
    let signature = B64.decode(&layer.signature_b64).unwrap();
    layer.rfc3161_timestamp_json = annotation(&tsa.stamp(&signature));
    let mut policy = s.policy();
    policy.require_tlog = false;
    policy.require_sct = false;
    policy.timestamp_authorities = vec![tsa.authority(ValidFor::default())];
    // A day later the ten-minute certificate has expired; the timestamp shows it was
    // valid when it signed.
    let later = SystemTime::now() + Duration::from_secs(86_400);
    let v = run(&layer, &policy, later);
    assert!(
        matches!(v, Verdict::Trusted(ref signer) if signer.identity == SAN),
        "{v:?}"
    );
    // Without the timestamp: judged now, expired.
    let mut bare = layer.clone();
    bare.rfc3161_timestamp_json = None;
    assert!(matches!(
        rejected(&run(&bare, &policy, later)),
        Rejection::Expired(_)
    ));
    // No authority configured: the timestamp shows nothing, and the certificate is
    // judged now, trusted while it is valid and expired after.
    let mut unread = policy.clone();
    unread.timestamp_authorities.clear();
    assert!(matches!(
        run(&layer, &unread, SystemTime::now()),
        Verdict::Trusted(_)
    ));
    assert!(matches!(
        rejected(&run(&layer, &unread, later)),
        Rejection::Expired(_)
    ));
    // A timestamp over other bytes: not trusted.
    let mut other = layer.clone();
    other.rfc3161_timestamp_json = annotation(&tsa.stamp(b"other bytes"));
    let verdict = run(&other, &policy, later);
    assert!(
        matches!(rejected(&verdict), Rejection::UntrustedRoot(ref why) if why.contains("imprint")),
        "{verdict:?}"
    );
    // An unreadable annotation is malformed.
    let mut garbage = layer.clone();
    garbage.rfc3161_timestamp_json = Some("{\"SignedRFC3161Timestamp\": 7}".to_owned());
    assert!(matches!(
        rejected(&run(&garbage, &policy, later)),
        Rejection::Malformed(_)
    ));
    // A layer with a SET is judged at the SET's time; a timestamp beside it is not
    // consulted.
    let v1 = Sigstore::new(LeafSpec::default());
    let mut beside = v1.layer();
    beside.rfc3161_timestamp_json = annotation(&tsa.stamp(b"not this signature"));
    let v = run(&beside, &v1.policy(), at(30));
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
}

// === Fulcio CAs as units (sigstore-go pkg/root/certificate_authority.go) ===

/// A `trusted_root.json` listing these Fulcio CAs: each its chain (PEM, issuing
/// certificate first, root last) and the ends of its validFor.
fn trusted_root_of(cas: &[(&[&str], Option<SystemTime>, Option<SystemTime>)]) -> TrustedRoot {
    let cas: Vec<serde_json::Value> = cas
        .iter()
        .map(|(chain, start, end)| {
            let certificates: Vec<serde_json::Value> = chain
                .iter()
                .map(|text| {
                    let der = pem::parse(text.as_bytes()).unwrap().into_contents();
                    serde_json::json!({"rawBytes": B64.encode(der)})
                })
                .collect();
            let mut valid_for = serde_json::Map::new();
            for (name, t) in [("start", start), ("end", end)] {
                if let Some(t) = t {
                    valid_for.insert(name.to_owned(), cert::fmt_time(*t).into());
                }
            }
            serde_json::json!({"certChain": {"certificates": certificates}, "validFor": valid_for})
        })
        .collect();
    let json = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "certificateAuthorities": cas,
    });
    TrustedRoot::from_json(&serde_json::to_vec(&json).unwrap()).unwrap()
}

/// `s.policy()` trusting exactly the Fulcio CAs of `root`.
fn policy_with_cas(s: &Sigstore, root: TrustedRoot) -> CosignPolicy {
    let mut policy = s.policy();
    policy.fulcio_roots.clear();
    policy.fulcio_intermediates.clear();
    policy.add_trusted_root(root);
    policy
}

#[test]
fn a_leaf_is_trusted_only_through_the_ca_whose_valid_for_holds_its_signing_time() {
    // I_old (the builder's intermediate) issued the leaf; I_new is another intermediate
    // of the same root. CA_old = {I_old, R} until t1, CA_new = {I_new, R} from t1.
    let s = Sigstore::new(LeafSpec::default());
    let i_new = s.another_intermediate("test-intermediate-2");
    let t1 = at(300);
    let later = at(10 * 365 * 86_400);
    let policy = policy_with_cas(
        &s,
        trusted_root_of(&[
            (&[&s.intermediate_pem, &s.root_pem], None, Some(t1)),
            (&[&i_new, &s.root_pem], Some(t1), None),
        ]),
    );
    // Logged before t1: CA_old vouches for it.
    let v = run(&s.layer_logged_at(at(60)), &policy, later);
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    // Logged after t1: only CA_new may vouch, and I_old is none of its certificates,
    // though R signed it and the chain annotation carries it.
    let v = run(&s.layer_logged_at(at(400)), &policy, later);
    assert!(matches!(rejected(&v), Rejection::UntrustedRoot(_)), "{v:?}");
    // The intermediates swapped between the two CAs: the other way round.
    let swapped = policy_with_cas(
        &s,
        trusted_root_of(&[
            (&[&i_new, &s.root_pem], None, Some(t1)),
            (&[&s.intermediate_pem, &s.root_pem], Some(t1), None),
        ]),
    );
    let v = run(&s.layer_logged_at(at(400)), &swapped, later);
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    let v = run(&s.layer_logged_at(at(60)), &swapped, later);
    assert!(matches!(rejected(&v), Rejection::UntrustedRoot(_)), "{v:?}");
}

#[test]
fn intermediates_the_signature_supplies_earn_no_trust() {
    let s = Sigstore::new(LeafSpec::default());
    let i_new = s.another_intermediate("test-intermediate-2");
    let only_new = policy_with_cas(&s, trusted_root_of(&[(&[&i_new, &s.root_pem], None, None)]));
    // The chain annotation carries I_old, which issued the leaf and which R signed.
    let layer = s.layer();
    assert!(layer
        .chain_pem
        .as_deref()
        .unwrap()
        .contains(s.intermediate_pem.trim()));
    let v = run(&layer, &only_new, at(0));
    assert!(matches!(rejected(&v), Rejection::UntrustedRoot(_)), "{v:?}");
    // So does a v0.1 bundle's x509CertificateChain.
    let b = s.v01_bundle_with_chain();
    let v = run_bundle(&b, &only_new, at(0));
    assert!(matches!(rejected(&v), Rejection::UntrustedRoot(_)), "{v:?}");
    // A CA that lists I_old itself trusts both; the signature's copy is the same bytes.
    let with_old = policy_with_cas(
        &s,
        trusted_root_of(&[(&[&s.intermediate_pem, &s.root_pem], None, None)]),
    );
    let v = run(&layer, &with_old, at(0));
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    let v = run_bundle(&b, &with_old, at(0));
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
}

#[test]
fn a_tlog_entry_from_a_log_not_configured_is_passed_over() {
    let s = Sigstore::new(LeafSpec::default());
    let other = Sigstore::new(LeafSpec::default());
    let signed = statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE);
    let foreign = other.sigstore_bundle(&signed)["verificationMaterial"]["tlogEntries"][0].clone();
    let mut b = s.sigstore_bundle(&signed);
    let good = b["verificationMaterial"]["tlogEntries"][0].clone();
    b["verificationMaterial"]["tlogEntries"] = serde_json::json!([foreign, good]);
    let v = run_bundle(&b, &s.policy(), at(0));
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    // Alone, the foreign entry shows nothing.
    b["verificationMaterial"]["tlogEntries"] = serde_json::json!([foreign]);
    let v = run_bundle(&b, &s.policy(), at(0));
    assert!(matches!(rejected(&v), Rejection::UntrustedRoot(_)), "{v:?}");
}

#[test]
fn an_entry_from_a_configured_log_that_fails_refuses_the_bundle() {
    // sigstore-go `VerifyTlogEntry`: only entries from logs not configured, or whose SET
    // does not verify, are passed over; another entry that verifies does not excuse
    // any other failure.
    let s = Sigstore::new(LeafSpec::default());
    let policy = s.policy();
    let signed = statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE);
    let b = s.sigstore_bundle(&signed);
    let good = b["verificationMaterial"]["tlogEntries"][0].clone();
    // Another entry of the same log, at another index: no SET (its SET would sign the
    // index), an inclusion proof that verifies.
    let unpromised = |mut entry: serde_json::Value| {
        entry.as_object_mut().unwrap().remove("inclusionPromise");
        entry["logIndex"] = "3".into();
        entry
    };
    let with = |entries: serde_json::Value| {
        let mut b = b.clone();
        b["verificationMaterial"]["tlogEntries"] = entries;
        run_bundle(&b, &policy, at(0))
    };

    let mut bad_proof = unpromised(good.clone());
    let h = &mut bad_proof["inclusionProof"]["hashes"][0];
    let mut raw = B64.decode(h.as_str().unwrap()).unwrap();
    raw[0] ^= 1;
    *h = B64.encode(raw).into();
    let other_payload = unpromised(
        s.sigstore_bundle(&statement(
            &Digest::sha256(b"other"),
            bundle::COSIGN_SIGN_PREDICATE_TYPE,
        ))["verificationMaterial"]["tlogEntries"][0]
            .clone(),
    );
    let mut out_of_validity = unpromised(good.clone());
    out_of_validity["integratedTime"] = ((NOT_BEFORE_UNIX + 3_600) as i64).to_string().into();
    for (what, entries) in [
        ("proof", serde_json::json!([bad_proof, good])),
        ("body", serde_json::json!([good, other_payload])),
        ("time", serde_json::json!([good, out_of_validity])),
        ("duplicate", serde_json::json!([good, good])),
    ] {
        let v = with(entries);
        let r = rejected(&v);
        assert!(
            matches!(
                (what, r),
                ("proof" | "body", Rejection::Tampered(_))
                    | ("time", Rejection::Expired(_))
                    | ("duplicate", Rejection::Malformed(_))
            ),
            "{what}: {r:?}"
        );
    }
    // A second entry of the log that verifies is no failure.
    assert!(matches!(
        with(serde_json::json!([good, unpromised(good.clone())])),
        Verdict::Trusted(_)
    ));
    // An entry whose SET does not verify is passed over, as sigstore-go skips it.
    let mut bad_set = good.clone();
    bad_set["logIndex"] = "3".into();
    let v = with(serde_json::json!([bad_set, good]));
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    let v = with(serde_json::json!([bad_set]));
    assert!(matches!(rejected(&v), Rejection::Tampered(_)), "{v:?}");
}

#[test]
fn without_require_tlog_a_key_based_signature_ignores_the_log() {
    // cosign --insecure-ignore-tlog: the log material is not read, whatever it holds.
    let s = Sigstore::new(LeafSpec::default());
    // Logged by a log the policy does not configure.
    let (mut layer, key) = key_signed_layer(&s);
    let mut policy = CosignPolicy {
        keys: vec![key],
        require_tlog: false,
        ..CosignPolicy::default()
    };
    let v = run(&layer, &policy, at(0));
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    layer.bundle_json = Some("{".to_owned());
    let v = run(&layer, &policy, at(0));
    assert!(matches!(v, Verdict::Trusted(_)), "{v:?}");
    policy.require_tlog = true;
    let v = run(&layer, &policy, at(0));
    assert!(matches!(rejected(&v), Rejection::Malformed(_)), "{v:?}");
    // A key-based bundle whose entry is from a log the policy does not configure.
    let (_, b, policy) = key_based_bundle();
    assert!(!policy.require_tlog && policy.rekor_keys.is_empty());
    let v = run_bundle(&b, &policy, at(0));
    assert!(
        matches!(v, Verdict::Trusted(ref signer) if signer.identity == "release"),
        "{v:?}"
    );
}

#[test]
fn without_require_tlog_a_keyless_signature_is_judged_now() {
    let s = Sigstore::new(LeafSpec::default());
    let mut policy = s.policy();
    policy.require_tlog = false;
    // A legacy layer: its SET is not read, so the certificate is judged now, as cosign
    // judges it with --insecure-ignore-tlog.
    let layer = s.layer();
    let v = run(&layer, &policy, at(30));
    // Judged now, the verdict ends with the leaf's ten minutes.
    assert!(
        matches!(&v, Verdict::Trusted(signer) if signer.valid_until == Some(at(600))),
        "{v:?}"
    );
    // With the log's time, nothing in the signature ends it.
    let v = run(&layer, &s.policy(), at(30));
    assert!(
        matches!(&v, Verdict::Trusted(signer) if signer.valid_until.is_none()),
        "{v:?}"
    );
    let v = run(&layer, &policy, at(10 * 365 * 86_400));
    assert!(matches!(rejected(&v), Rejection::Expired(_)), "{v:?}");
    // A bundle the same: its tlog entry is not read, and with no RFC 3161 timestamp
    // cosign verifies it at the current time (`WithCurrentTime()`).
    let b = s.sigstore_bundle(&statement(&image(), bundle::COSIGN_SIGN_PREDICATE_TYPE));
    let v = run_bundle(&b, &policy, at(30));
    assert!(
        matches!(&v, Verdict::Trusted(signer) if signer.valid_until == Some(at(600))),
        "{v:?}"
    );
    let v = run_bundle(&b, &s.policy(), at(30));
    assert!(
        matches!(&v, Verdict::Trusted(signer) if signer.valid_until.is_none()),
        "{v:?}"
    );
    let v = run_bundle(&b, &policy, at(601));
    assert!(matches!(rejected(&v), Rejection::Expired(_)), "{v:?}");
}
