//! crigate's own test signer: signs images in the registry the way cosign stores its
//! signatures, in both formats.
//!
//! - Legacy: a `sha256-<hex>.sig` tagged manifest whose layers are simple-signing
//!   payloads (`application/vnd.dev.cosign.simplesigning.v1+json`) with the signature in
//!   the `dev.cosignproject.cosign/signature` annotation (cosign `specs/SIGNATURE_SPEC.md`).
//! - Bundle: an OCI referrer (`subject` = the image) whose artifact type and single layer
//!   are a Sigstore bundle v0.3, DSSE over an in-toto statement with predicate type
//!   `https://sigstore.dev/cosign/sign/v1`, as `cosign sign --new-bundle-format` writes.
//!   Debian's registry lacks the referrers API, so the referrers tag schema
//!   (`sha256-<hex>` index) is written too, as ORAS and cosign do on such registries.
//!
//! Keys are ECDSA P-256, generated per test (the tests never see a private key file).
#![allow(dead_code)]

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rcgen::{KeyPair, PublicKeyData, SigningKey, PKCS_ECDSA_P256_SHA256};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::harness::{Registry, TestImage};

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
pub const COSIGN_SIG_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// A cosign key pair.
pub struct KeySigner {
    key: KeyPair,
}

/// One signature, before it is pushed: what a `.sig` layer holds.
#[derive(Clone)]
pub struct LegacySignature {
    pub payload: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl KeySigner {
    pub fn generate() -> Self {
        Self {
            key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    /// The public key, PEM, as `cosign generate-key-pair` writes `cosign.pub`.
    pub fn public_pem(&self) -> String {
        pem::encode(&pem::Pem::new(
            "PUBLIC KEY",
            self.key.subject_public_key_info(),
        ))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).unwrap()
    }

    /// The simple-signing payload cosign signs for `image_digest` pushed as
    /// `docker_reference`.
    pub fn payload(docker_reference: &str, image_digest: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": image_digest},
                "type": "cosign container image signature"
            },
            "optional": null
        }))
        .unwrap()
    }

    /// A legacy signature over `payload`.
    pub fn legacy(&self, payload: Vec<u8>) -> LegacySignature {
        let signature = B64.encode(self.sign(&payload));
        let mut annotations = BTreeMap::new();
        annotations.insert("dev.cosignproject.cosign/signature".to_owned(), signature);
        LegacySignature {
            payload,
            annotations,
        }
    }

    /// Signs `repo@image_digest` in the legacy format and pushes the `.sig` manifest.
    pub async fn sign_legacy(&self, registry: &Registry, repo: &str, image_digest: &str) {
        let reference = format!("{}/{repo}", registry.host());
        let signature = self.legacy(Self::payload(&reference, image_digest));
        push_legacy(registry, repo, image_digest, &[signature]).await;
    }

    /// Signs `repo@image_digest` as a Sigstore bundle referrer (key-based, no tlog entry).
    pub async fn sign_bundle(&self, registry: &Registry, repo: &str, image: &TestImage) {
        let image_digest = image.manifest_digest();
        let bundle = self.bundle(registry, repo, image_digest);
        push_referrer(
            registry,
            repo,
            image_digest,
            BUNDLE_V03,
            &bundle,
            subject_of(image),
        )
        .await;
    }

    /// Signs `repo@image_digest` as cosign v3 stores a bundle on a registry without the
    /// referrers API: the referrer manifest `WriteReferrer` writes (empty config, the
    /// bundle's artifact type, the predicate type annotation), listed in the referrers
    /// tag schema index the way go-containerregistry lists it, by its config's media type
    /// (`application/vnd.oci.empty.v1+json`). Keeps the index's other entries.
    pub async fn sign_bundle_as_cosign_lists_it(
        &self,
        registry: &Registry,
        repo: &str,
        image: &TestImage,
    ) {
        let image_digest = image.manifest_digest();
        let bundle = self.bundle(registry, repo, image_digest);
        let empty = b"{}";
        let config_digest = registry.push_blob(repo, empty).await.unwrap();
        let blob_digest = registry.push_blob(repo, &bundle).await.unwrap();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE_V03,
            "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": empty.len()},
            "layers": [{"mediaType": BUNDLE_V03, "digest": blob_digest, "size": bundle.len()}],
            "subject": subject_of(image),
            "annotations": {
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1",
            },
        });
        list_referrer(registry, repo, image_digest, &manifest, EMPTY_CONFIG).await;
    }

    /// Signs `repo@image_digest` in the legacy simple-signing format stored as an OCI
    /// referrer, as `cosign sign --registry-referrers-mode=oci-1-1` does without the new
    /// bundle format (`WriteSignaturesExperimentalOCI`: the `.sig` manifest with the
    /// config media type `application/vnd.dev.cosign.artifact.sig.v1+json` and a
    /// subject, no tag), listed by that type in the referrers tag schema index.
    pub async fn sign_legacy_as_referrer(
        &self,
        registry: &Registry,
        repo: &str,
        image: &TestImage,
    ) {
        let image_digest = image.manifest_digest();
        let reference = format!("{}/{repo}", registry.host());
        let signature = self.legacy(Self::payload(&reference, image_digest));
        let config = b"{}";
        let config_digest = registry.push_blob(repo, config).await.unwrap();
        let layer_digest = registry.push_blob(repo, &signature.payload).await.unwrap();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": COSIGN_SIG_ARTIFACT, "digest": config_digest, "size": config.len()},
            "layers": [{
                "mediaType": SIMPLE_SIGNING,
                "digest": layer_digest,
                "size": signature.payload.len(),
                "annotations": signature.annotations,
            }],
            "subject": subject_of(image),
        });
        list_referrer(registry, repo, image_digest, &manifest, COSIGN_SIG_ARTIFACT).await;
    }

    /// A Sigstore bundle v0.3 (key-based, no tlog entry) signing `repo@image_digest`.
    fn bundle(&self, registry: &Registry, repo: &str, image_digest: &str) -> Vec<u8> {
        let statement = serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{
                "name": format!("{}/{repo}", registry.host()),
                "digest": {"sha256": image_digest.trim_start_matches("sha256:")}
            }],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {}
        }))
        .unwrap();
        let payload_type = "application/vnd.in-toto+json";
        let pae = format!(
            "DSSEv1 {} {} {} ",
            payload_type.len(),
            payload_type,
            statement.len()
        );
        let mut message = pae.into_bytes();
        message.extend_from_slice(&statement);
        serde_json::to_vec(&json!({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": "test-key"}},
            "dsseEnvelope": {
                "payload": B64.encode(&statement),
                "payloadType": payload_type,
                "signatures": [{"sig": B64.encode(self.sign(&message)), "keyid": ""}]
            }
        }))
        .unwrap()
    }
}

/// The descriptor of `image`'s manifest, as a referrer's `subject` names it.
pub fn subject_of(image: &TestImage) -> serde_json::Value {
    json!({
        "mediaType": image.manifest_media_type(),
        "digest": image.manifest_digest(),
        "size": image.manifest_size(),
    })
}

/// Pushes `manifest` by its digest and adds it to the referrers tag schema index of
/// `image_digest` (created if missing), listed with `artifact_type`; returns the
/// manifest's digest.
pub async fn list_referrer(
    registry: &Registry,
    repo: &str,
    image_digest: &str,
    manifest: &serde_json::Value,
    artifact_type: &str,
) -> String {
    let manifest = serde_json::to_vec(manifest).unwrap();
    let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
    registry
        .push_manifest(repo, &manifest_digest, OCI_MANIFEST, &manifest)
        .await
        .unwrap();
    let tag = image_digest.replace(':', "-");
    let mut entries = match registry.manifest(repo, &tag).await {
        Ok((_, index)) => serde_json::from_slice::<serde_json::Value>(&index).unwrap()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    entries.push(json!({
        "mediaType": OCI_MANIFEST,
        "digest": manifest_digest,
        "size": manifest.len(),
        "artifactType": artifact_type,
    }));
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": entries,
    }))
    .unwrap();
    registry
        .push_manifest(repo, &tag, OCI_INDEX, &index)
        .await
        .unwrap();
    manifest_digest
}

/// Pushes a `.sig` manifest holding `signatures` as layers, replacing any earlier one.
pub async fn push_legacy(
    registry: &Registry,
    repo: &str,
    image_digest: &str,
    signatures: &[LegacySignature],
) {
    let config = br#"{}"#;
    let config_digest = registry.push_blob(repo, config).await.unwrap();
    let mut layers = Vec::new();
    for signature in signatures {
        let digest = registry.push_blob(repo, &signature.payload).await.unwrap();
        layers.push(json!({
            "mediaType": SIMPLE_SIGNING,
            "digest": digest,
            "size": signature.payload.len(),
            "annotations": signature.annotations,
        }));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    let tag = format!("{}.sig", image_digest.replace(':', "-"));
    registry
        .push_manifest(repo, &tag, OCI_MANIFEST, &manifest)
        .await
        .unwrap();
}

/// Pushes an artifact manifest with `subject` whose one layer is `blob`, and lists it in
/// the referrers tag schema index (OCI distribution spec, "Referrers Tag Schema"), as
/// [`list_referrer`] does.
pub async fn push_referrer(
    registry: &Registry,
    repo: &str,
    image_digest: &str,
    artifact_type: &str,
    blob: &[u8],
    subject: serde_json::Value,
) {
    let empty = b"{}";
    let config_digest = registry.push_blob(repo, empty).await.unwrap();
    let blob_digest = registry.push_blob(repo, blob).await.unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": empty.len()},
        "layers": [{"mediaType": artifact_type, "digest": blob_digest, "size": blob.len()}],
        "subject": subject,
    });
    list_referrer(registry, repo, image_digest, &manifest, artifact_type).await;
}

/// A Sigstore of the test's own: a Fulcio-like CA issuing short-lived leaf certificates
/// with a SAN and the OIDC issuer extension (1.3.6.1.4.1.57264.1.8), and a Rekor-like
/// log key signing SignedEntryTimestamps over hashedrekord 0.0.1 entries.
pub struct KeylessSigner {
    pub root_pem: String,
    root_issuer: rcgen::Issuer<'static, KeyPair>,
    pub rekor_key: KeyPair,
}

/// One keyless signing identity: a leaf certificate and its key.
pub struct KeylessLeaf {
    pub leaf_pem: String,
    key: KeyPair,
    /// Unix seconds of the leaf's notBefore.
    pub not_before: i64,
}

impl KeylessSigner {
    pub fn generate() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "crigate-test-fulcio");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let root = params.self_signed(&key).unwrap();
        Self {
            root_pem: pem::encode(&pem::Pem::new("CERTIFICATE", root.der().to_vec())),
            root_issuer: rcgen::Issuer::new(params, key),
            rekor_key: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    /// A leaf for `san` (an e-mail) and `issuer`, valid ten minutes from `not_before`
    /// (Unix seconds).
    pub fn leaf(&self, san: &str, issuer: &str, not_before: i64) -> KeylessLeaf {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::Rfc822Name(san.try_into().unwrap())];
        let start = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        params.not_before = start;
        params.not_after = start + std::time::Duration::from_secs(600);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        let mut issuer_der = vec![0x0c, issuer.len() as u8];
        issuer_der.extend_from_slice(issuer.as_bytes());
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
                issuer_der,
            ));
        let leaf = params.signed_by(&key, &self.root_issuer).unwrap();
        KeylessLeaf {
            leaf_pem: pem::encode(&pem::Pem::new("CERTIFICATE", leaf.der().to_vec())),
            key,
            not_before,
        }
    }

    /// A legacy signature by `leaf` over `payload`, with a Rekor bundle logged at
    /// `integrated_time` (Unix seconds).
    pub fn legacy(
        &self,
        leaf: &KeylessLeaf,
        payload: Vec<u8>,
        integrated_time: i64,
    ) -> LegacySignature {
        self.legacy_logged_as(leaf, payload, integrated_time, "hashedrekord")
    }

    /// As [`KeylessSigner::legacy`], with the Rekor entry logged as `kind`.
    pub fn legacy_logged_as(
        &self,
        leaf: &KeylessLeaf,
        payload: Vec<u8>,
        integrated_time: i64,
        kind: &str,
    ) -> LegacySignature {
        let signature = leaf.key.sign(&payload).unwrap();
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": kind,
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(&payload))}},
                "signature": {
                    "content": B64.encode(&signature),
                    "publicKey": {"content": B64.encode(leaf.leaf_pem.as_bytes())}
                }
            }
        });
        let entry = json!({
            "body": B64.encode(serde_json::to_vec(&body).unwrap()),
            "integratedTime": integrated_time,
            "logIndex": 1,
            "logID": hex::encode(Sha256::digest(self.rekor_key.subject_public_key_info())),
        });
        let set = self
            .rekor_key
            .sign(&serde_json_canonicalizer::to_vec(&entry).unwrap())
            .unwrap();
        let bundle = json!({"SignedEntryTimestamp": B64.encode(set), "Payload": entry}).to_string();
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "dev.cosignproject.cosign/signature".to_owned(),
            B64.encode(&signature),
        );
        annotations.insert(
            "dev.sigstore.cosign/certificate".to_owned(),
            leaf.leaf_pem.clone(),
        );
        annotations.insert(
            "dev.sigstore.cosign/chain".to_owned(),
            self.root_pem.clone(),
        );
        annotations.insert("dev.sigstore.cosign/bundle".to_owned(), bundle);
        LegacySignature {
            payload,
            annotations,
        }
    }

    /// The Rekor public key, PEM.
    pub fn rekor_pem(&self) -> String {
        pem::encode(&pem::Pem::new(
            "PUBLIC KEY",
            self.rekor_key.subject_public_key_info(),
        ))
    }
}
