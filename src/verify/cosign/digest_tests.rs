//! Which hashes a key-based cosign signature may use (`key` module docs): SHA-256, as
//! cosign before 2.5 signed with any key (vector C02), or the key's default in sigstore's
//! algorithm registry, as cosign 2.5 and v3 sign (P-384 SHA-384, P-521 SHA-512,
//! Ed25519ph); only the one set when the operator sets a digest. Signed here with
//! aws-lc-rs (ECDSA) and ed25519-dalek (Ed25519, Ed25519ph), in `.sig` layers and in
//! key-based bundles.

use std::time::SystemTime;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as alg, EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair as _};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use sha2::{Digest as _, Sha512};

use super::key::{AcceptedDigests, PublicKey, SignatureDigest};
use super::layer::{SignatureLayer, SIMPLE_SIGNING_MEDIA_TYPE};
use super::policy::{CosignPolicy, TrustedKey};
use super::{bundle, check_key_signature, verify, SigstoreBundle};
use crate::oci::Digest;
use crate::verify::{Rejection, Verdict};

const REPO: &str = "registry.example.com/app";
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/cosign");

fn vector(path: &str) -> Vec<u8> {
    let path = format!("{VECTORS}/{path}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("vector file {path} missing: {e}"))
}

fn image() -> Digest {
    Digest::sha256(b"image manifest")
}

fn payload() -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{REPO}"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":null}}"#,
        image()
    )
    .into_bytes()
}

/// An ECDSA key: its PKCS#8 document, loadable under any hash for its curve.
struct Ecdsa(aws_lc_rs::pkcs8::Document);

impl Ecdsa {
    fn generate(curve: &'static EcdsaSigningAlgorithm) -> Self {
        Self(EcdsaKeyPair::generate_pkcs8(curve, &SystemRandom::new()).unwrap())
    }

    /// ASN.1 DER ECDSA over `alg`'s hash of `message` (the curve must be the key's).
    fn sign(&self, alg: &'static EcdsaSigningAlgorithm, message: &[u8]) -> Vec<u8> {
        let pair = EcdsaKeyPair::from_pkcs8(alg, self.0.as_ref()).unwrap();
        pair.sign(&SystemRandom::new(), message)
            .unwrap()
            .as_ref()
            .to_vec()
    }

    fn trusted(&self, curve: &'static EcdsaSigningAlgorithm) -> TrustedKey {
        let pair = EcdsaKeyPair::from_pkcs8(curve, self.0.as_ref()).unwrap();
        trusted_spki(pair.public_key().as_der().unwrap().as_ref())
    }
}

fn trusted_spki(spki_der: &[u8]) -> TrustedKey {
    let pem_text = pem::encode(&pem::Pem::new("PUBLIC KEY", spki_der.to_vec()));
    TrustedKey::from_pem("release", pem_text.as_bytes()).unwrap()
}

fn ed25519() -> ed25519_dalek::SigningKey {
    let mut seed = [0u8; 32];
    aws_lc_rs::rand::fill(&mut seed).unwrap();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

/// An Ed25519 `SubjectPublicKeyInfo` (RFC 8410 §4): the fixed prefix, then the key.
fn ed25519_spki(raw: &[u8]) -> Vec<u8> {
    let mut der = hex::decode("302a300506032b6570032100").unwrap();
    der.extend_from_slice(raw);
    der
}

fn ed25519_trusted(key: &ed25519_dalek::SigningKey) -> TrustedKey {
    trusted_spki(&ed25519_spki(key.verifying_key().as_bytes()))
}

/// Ed25519ph with an empty context, as sigstore's `ED25519phSigner` signs.
fn sign_ed25519ph(key: &ed25519_dalek::SigningKey, message: &[u8]) -> Vec<u8> {
    key.sign_prehashed(Sha512::new_with_prefix(message), None)
        .unwrap()
        .to_bytes()
        .to_vec()
}

fn accepted(key: &TrustedKey, message: &[u8], signature: &[u8]) -> bool {
    check_key_signature(std::slice::from_ref(key), message, signature).is_ok()
}

fn layer(signature: &[u8]) -> SignatureLayer {
    SignatureLayer {
        payload: payload(),
        media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
        signature_b64: B64.encode(signature),
        certificate_pem: None,
        chain_pem: None,
        rfc3161_timestamp_json: None,
        bundle_json: None,
    }
}

fn policy(key: TrustedKey) -> CosignPolicy {
    CosignPolicy {
        keys: vec![key],
        ..CosignPolicy::default()
    }
}

fn run_layer(signature: &[u8], key: TrustedKey) -> Verdict {
    let policy = policy(key);
    verify(
        &[layer(signature)],
        &[],
        &image(),
        REPO,
        &policy,
        SystemTime::now(),
    )
}

/// The statement cosign v3 signs for an image, in DSSE.
fn statement() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": image().encoded()}}],
        "predicateType": bundle::COSIGN_SIGN_PREDICATE_TYPE,
        "predicate": {}
    }))
    .unwrap()
}

/// The PAE a bundle's DSSE signature signs.
fn pae() -> Vec<u8> {
    bundle::pae(bundle::IN_TOTO_PAYLOAD_TYPE, &statement())
}

/// A v0.3 key-based bundle (`cosign sign --key`, no transparency log) over `statement()`.
fn run_bundle(signature: &[u8], key: TrustedKey) -> Verdict {
    let json = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "release-key"}},
        "dsseEnvelope": {
            "payload": B64.encode(statement()),
            "payloadType": bundle::IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": B64.encode(signature), "keyid": ""}]
        }
    });
    let b = SigstoreBundle {
        json: serde_json::to_vec(&json).unwrap(),
    };
    let policy = policy(key);
    verify(
        &[],
        std::slice::from_ref(&b),
        &image(),
        REPO,
        &policy,
        SystemTime::now(),
    )
}

fn trusted(v: &Verdict) -> bool {
    matches!(v, Verdict::Trusted(signer) if signer.identity == "release")
}

fn untrusted_root(v: &Verdict) -> bool {
    matches!(v, Verdict::Rejected(Rejection::UntrustedRoot(_)))
}

#[test]
fn p384_and_p521_signatures_over_their_sigstore_default_hash_are_trusted() {
    let p384 = Ecdsa::generate(&alg::ECDSA_P384_SHA384_ASN1_SIGNING);
    let p521 = Ecdsa::generate(&alg::ECDSA_P521_SHA512_ASN1_SIGNING);
    let p384_key = || p384.trusted(&alg::ECDSA_P384_SHA384_ASN1_SIGNING);
    let p521_key = || p521.trusted(&alg::ECDSA_P521_SHA512_ASN1_SIGNING);
    // cosign 2.5 and later: LoadDefaultSignerVerifier, P-384 SHA-384, P-521 SHA-512.
    let sig = p384.sign(&alg::ECDSA_P384_SHA384_ASN1_SIGNING, &payload());
    assert!(trusted(&run_layer(&sig, p384_key())));
    let sig = p521.sign(&alg::ECDSA_P521_SHA512_ASN1_SIGNING, &payload());
    assert!(trusted(&run_layer(&sig, p521_key())));
    // cosign before 2.5: SHA-256 whatever the curve.
    let sig = p521.sign(&alg::ECDSA_P521_SHA256_ASN1_SIGNING, &payload());
    assert!(trusted(&run_layer(&sig, p521_key())));
    // A hash that is neither is refused: P-521 over SHA-384.
    let sig = p521.sign(&alg::ECDSA_P521_SHA384_ASN1_SIGNING, &payload());
    assert!(untrusted_root(&run_layer(&sig, p521_key())));
    // ... unless the operator set that digest.
    let key = p521_key().with_digest(SignatureDigest::Sha384);
    assert!(trusted(&run_layer(&sig, key)));

    // The same rule for a key-based bundle's DSSE signature.
    let sig = p384.sign(&alg::ECDSA_P384_SHA384_ASN1_SIGNING, &pae());
    assert!(trusted(&run_bundle(&sig, p384_key())));
    let sig = p521.sign(&alg::ECDSA_P521_SHA512_ASN1_SIGNING, &pae());
    assert!(trusted(&run_bundle(&sig, p521_key())));
    let sig = p521.sign(&alg::ECDSA_P521_SHA256_ASN1_SIGNING, &pae());
    assert!(trusted(&run_bundle(&sig, p521_key())));
}

#[test]
fn p384_with_sha256_vector_c02_is_still_trusted() {
    // Vector C02: cosign before 2.5 signed with a P-384 key file over SHA-256.
    let key = TrustedKey::from_pem("release", &vector("key/hello-world/ecdsa-p384.pub")).unwrap();
    assert_eq!(key.digests, AcceptedDigests::CosignDefaults);
    let payload = vector("key/hello-world/payload.json");
    let sig = B64
        .decode(vector("key/hello-world/ecdsa-p384.sig"))
        .unwrap();
    assert!(accepted(&key, &payload, &sig));
    // Also when SHA-256 is set explicitly (cosign's `--signature-digest-algorithm sha256`).
    let explicit = key.clone().with_digest(SignatureDigest::Sha256);
    assert!(accepted(&explicit, &payload, &sig));
    // Set to SHA-384, the SHA-256 signature is refused.
    let other = key.with_digest(SignatureDigest::Sha384);
    assert!(!accepted(&other, &payload, &sig));
}

#[test]
fn an_explicit_digest_is_the_only_one_accepted() {
    let p384 = Ecdsa::generate(&alg::ECDSA_P384_SHA384_ASN1_SIGNING);
    let key = p384.trusted(&alg::ECDSA_P384_SHA384_ASN1_SIGNING);
    let sig = p384.sign(&alg::ECDSA_P384_SHA384_ASN1_SIGNING, &payload());
    assert!(accepted(&key, &payload(), &sig));
    // The operator set SHA-256: a SHA-384 signature no longer verifies.
    let sha256_only = key.clone().with_digest(SignatureDigest::Sha256);
    assert_eq!(
        sha256_only.digests,
        AcceptedDigests::Only(SignatureDigest::Sha256)
    );
    assert!(!accepted(&sha256_only, &payload(), &sig));
    assert!(untrusted_root(&run_layer(&sig, sha256_only.clone())));
    let bundle_sig = p384.sign(&alg::ECDSA_P384_SHA384_ASN1_SIGNING, &pae());
    assert!(untrusted_root(&run_bundle(&bundle_sig, sha256_only)));
    assert!(trusted(&run_bundle(
        &bundle_sig,
        key.with_digest(SignatureDigest::Sha384)
    )));
}

#[test]
fn ed25519_keys_accept_pure_and_prehashed_signatures() {
    let signer = ed25519();
    let key = ed25519_trusted(&signer);
    let pure = signer.sign(&payload()).to_bytes().to_vec();
    let prehashed = sign_ed25519ph(&signer, &payload());
    assert_ne!(pure, prehashed);
    // cosign without a tlog upload signs pure Ed25519; with one, Ed25519ph.
    assert!(trusted(&run_layer(&pure, key.clone())));
    assert!(trusted(&run_layer(&prehashed, key.clone())));
    assert!(trusted(&run_bundle(
        &signer.sign(&pae()).to_bytes(),
        key.clone()
    )));
    assert!(trusted(&run_bundle(
        &sign_ed25519ph(&signer, &pae()),
        key.clone()
    )));
    // Another message, or another context (Ed25519ctx-style domain separation), fails.
    let other = sign_ed25519ph(&signer, b"another payload");
    assert!(!accepted(&key, &payload(), &other));
    let with_context = signer
        .sign_prehashed(
            Sha512::new_with_prefix(payload()),
            Some(b"cosign".as_slice()),
        )
        .unwrap()
        .to_bytes();
    assert!(!accepted(&key, &payload(), &with_context));
    // With a digest set: pure always (it takes none), Ed25519ph only under SHA-512.
    let sha256 = key.clone().with_digest(SignatureDigest::Sha256);
    assert!(accepted(&sha256, &payload(), &pure));
    assert!(!accepted(&sha256, &payload(), &prehashed));
    let sha512 = key.with_digest(SignatureDigest::Sha512);
    assert!(accepted(&sha512, &payload(), &prehashed));
    assert!(accepted(&sha512, &payload(), &pure));
}

#[test]
fn rfc8032_ed25519ph_test_vector_verifies() {
    // RFC 8032 §7.3, "TEST abc".
    let secret: [u8; 32] =
        hex::decode("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
            .unwrap()
            .try_into()
            .unwrap();
    let public =
        hex::decode("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf").unwrap();
    let signature = hex::decode(
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41\
         31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406",
    )
    .unwrap();
    let signer = ed25519_dalek::SigningKey::from_bytes(&secret);
    assert_eq!(signer.verifying_key().as_bytes().as_slice(), public);
    assert_eq!(sign_ed25519ph(&signer, b"abc"), signature);
    let key = PublicKey::from_spki_der(&ed25519_spki(&public)).unwrap();
    assert!(key
        .verify_cosign(AcceptedDigests::CosignDefaults, b"abc", &signature)
        .is_ok());
    // Not as pure Ed25519: the scheme is part of what is verified.
    assert!(key
        .verify_message(SignatureDigest::Sha512, b"abc", &signature)
        .is_err());
}

#[test]
fn a_signature_under_another_key_is_refused() {
    let p384 = Ecdsa::generate(&alg::ECDSA_P384_SHA384_ASN1_SIGNING);
    let other = Ecdsa::generate(&alg::ECDSA_P384_SHA384_ASN1_SIGNING);
    let other_key = other.trusted(&alg::ECDSA_P384_SHA384_ASN1_SIGNING);
    let sig = p384.sign(&alg::ECDSA_P384_SHA384_ASN1_SIGNING, &payload());
    assert!(untrusted_root(&run_layer(&sig, other_key.clone())));
    let sig = p384.sign(&alg::ECDSA_P384_SHA384_ASN1_SIGNING, &pae());
    assert!(untrusted_root(&run_bundle(&sig, other_key)));
    let signer = ed25519();
    let stranger = ed25519_trusted(&ed25519());
    let prehashed = sign_ed25519ph(&signer, &payload());
    assert!(untrusted_root(&run_layer(&prehashed, stranger.clone())));
    let pure = signer.sign(&payload()).to_bytes();
    assert!(untrusted_root(&run_layer(&pure, stranger)));
    // A P-521 key does not verify a P-384 signature whatever the hash.
    let p521 = Ecdsa::generate(&alg::ECDSA_P521_SHA512_ASN1_SIGNING);
    let p521_key = p521.trusted(&alg::ECDSA_P521_SHA512_ASN1_SIGNING);
    let sig = p384.sign(&alg::ECDSA_P384_SHA384_ASN1_SIGNING, &payload());
    assert!(!accepted(&p521_key, &payload(), &sig));
}
