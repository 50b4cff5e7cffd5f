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

use crate::harness::Registry;

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

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
    pub async fn sign_bundle(
        &self,
        registry: &Registry,
        repo: &str,
        image_digest: &str,
        image_size: u64,
        image_media_type: &str,
    ) {
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
        let bundle = serde_json::to_vec(&json!({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": "test-key"}},
            "dsseEnvelope": {
                "payload": B64.encode(&statement),
                "payloadType": payload_type,
                "signatures": [{"sig": B64.encode(self.sign(&message)), "keyid": ""}]
            }
        }))
        .unwrap();
        let subject =
            json!({"mediaType": image_media_type, "digest": image_digest, "size": image_size});
        push_referrer(registry, repo, image_digest, BUNDLE_V03, &bundle, subject).await;
    }
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

/// Pushes an artifact manifest with `subject`, and the referrers tag schema index that
/// lists it (OCI distribution spec, "Referrers Tag Schema").
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
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": empty.len()},
        "layers": [{"mediaType": artifact_type, "digest": blob_digest, "size": blob.len()}],
        "subject": subject,
    }))
    .unwrap();
    let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
    registry
        .push_manifest(repo, &manifest_digest, OCI_MANIFEST, &manifest)
        .await
        .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "artifactType": artifact_type,
        }],
    }))
    .unwrap();
    let tag = image_digest.replace(':', "-");
    registry
        .push_manifest(repo, &tag, OCI_INDEX, &index)
        .await
        .unwrap();
}
