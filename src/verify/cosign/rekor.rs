//! The Rekor v1 bundle cosign stores in `dev.sigstore.cosign/bundle`: the
//! SignedEntryTimestamp (SET) over the entry, and the entry body matched against the
//! signature it claims to log (cosign `pkg/cosign/bundle/rekor.go`,
//! `pkg/cosign/verify.go` `VerifyBundle` and `compareSigs`; Rekor
//! `pkg/types/hashedrekord/v0.0.1`, `pkg/types/rekord/v0.0.1`).
#![deny(clippy::indexing_slicing)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::key::SignatureDigest;
use super::layer::MAX_BUNDLE_JSON_BYTES;
use super::policy::LogKey;
use crate::verify::Rejection;

/// The largest decoded Rekor entry body (a hashedrekord with a certificate is ~2 KiB).
pub const MAX_ENTRY_BODY_BYTES: usize = 32 * 1024;

/// A parsed `dev.sigstore.cosign/bundle` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RekorBundle {
    pub signed_entry_timestamp: Vec<u8>,
    pub payload: RekorPayload,
}

/// The logged entry the SET covers. Field names and order are those of the canonical
/// JSON the SET signs (Rekor `pkg/generated/models`, `verifyTlogEntry`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekorPayload {
    /// Base64 of the canonicalized entry body.
    pub body: String,
    #[serde(rename = "integratedTime")]
    pub integrated_time: i64,
    #[serde(rename = "logIndex")]
    pub log_index: i64,
    /// Hex SHA-256 of the log's DER public key.
    #[serde(rename = "logID")]
    pub log_id: String,
}

/// What the entry must name as the signer: the certificate (keyless) or the key.
#[derive(Clone, Copy, Debug)]
pub enum LoggedSigner<'a> {
    CertificateDer(&'a [u8]),
    SpkiDer(&'a [u8]),
    /// A trusted key, logged as itself or as `certificate`, the signature's certificate
    /// for that key (`cosign sign --key --certificate`, a hardware token's certificate):
    /// cosign logs the certificate then, and `cosign verify --key` compares the entry
    /// with it once the key and the certificate's key are equal (`pkg/cosign/verify.go`,
    /// `keyBytes`).
    KeyOrItsCertificate {
        spki: &'a [u8],
        certificate: &'a [u8],
    },
}

#[derive(Deserialize)]
struct WireBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    payload: RekorPayload,
}

#[derive(Deserialize)]
struct WireEntry {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    spec: WireSpec,
}

/// The parts hashedrekord 0.0.1 and rekord 0.0.1 share.
#[derive(Deserialize)]
struct WireSpec {
    data: WireData,
    signature: WireSignature,
}

#[derive(Deserialize)]
struct WireData {
    hash: Option<WireHash>,
}

#[derive(Deserialize)]
struct WireHash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct WireSignature {
    content: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(rename = "publicKey")]
    public_key: WirePublicKey,
}

#[derive(Deserialize)]
struct WirePublicKey {
    content: String,
}

// === impl RekorBundle ===

impl RekorBundle {
    /// Parses the bundle annotation.
    ///
    /// # Errors
    ///
    /// `Malformed` when over [`MAX_BUNDLE_JSON_BYTES`], not the expected JSON, or the SET
    /// is not base64 (vector K02).
    pub fn parse(json: &[u8]) -> Result<Self, Rejection> {
        if json.len() > MAX_BUNDLE_JSON_BYTES {
            return Err(Rejection::Malformed(format!(
                "Rekor bundle is {} bytes, over the {MAX_BUNDLE_JSON_BYTES}-byte limit",
                json.len()
            )));
        }
        let wire: WireBundle = serde_json::from_slice(json)
            .map_err(|e| Rejection::Malformed(format!("Rekor bundle: {e}")))?;
        let signed_entry_timestamp = B64
            .decode(wire.signed_entry_timestamp.as_bytes())
            .map_err(|e| Rejection::Malformed(format!("Rekor SignedEntryTimestamp: {e}")))?;
        Ok(Self {
            signed_entry_timestamp,
            payload: wire.payload,
        })
    }
}

// === impl RekorPayload ===

impl RekorPayload {
    /// `integratedTime` as an instant.
    ///
    /// # Errors
    ///
    /// `Malformed` for a negative time.
    pub fn integrated_time(&self) -> Result<SystemTime, Rejection> {
        let secs = u64::try_from(self.integrated_time)
            .map_err(|_| Rejection::Malformed("negative Rekor integratedTime".to_owned()))?;
        UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .ok_or_else(|| Rejection::Malformed("Rekor integratedTime out of range".to_owned()))
    }
}

/// Verifies the SET: the entry's `logID` must be the SHA-256 of a configured Rekor key's
/// DER SPKI, and that key's ECDSA signature must cover the RFC 8785 canonical JSON of
/// `{body, integratedTime, logID, logIndex}` (cosign `pkg/cosign/tlog.go`,
/// `VerifySET`), and the integratedTime must lie in the key's `validFor` (sigstore-go
/// `pkg/verify/tlog.go`). Returns the verified integratedTime.
///
/// # Errors
///
/// `UntrustedRoot` when no configured key has the entry's log ID (vector K01e);
/// `Tampered` when the SET does not verify under it (vector K03); `Malformed` for a log
/// ID that is not hex or a time out of range.
pub fn verify_set(bundle: &RekorBundle, rekor_keys: &[LogKey]) -> Result<SystemTime, Rejection> {
    let log_id = hex::decode(&bundle.payload.log_id)
        .map_err(|e| Rejection::Malformed(format!("Rekor logID is not hex: {e}")))?;
    let key = rekor_keys
        .iter()
        .find(|k| k.key.key_id().as_slice() == log_id.as_slice())
        .ok_or_else(|| {
            Rejection::UntrustedRoot(format!(
                "Rekor entry is from log {}, which is not a configured transparency log",
                bundle.payload.log_id
            ))
        })?;
    // cosign pkg/cosign/tlog.go VerifySET: json canonicalization (RFC 8785) of the
    // payload, then ecdsa.VerifyASN1 over its SHA-256.
    let canonical = serde_json_canonicalizer::to_vec(&bundle.payload)
        .map_err(|e| Rejection::Malformed(format!("Rekor payload canonicalization: {e}")))?;
    key.key
        .verify_message(
            SignatureDigest::Sha256,
            &canonical,
            &bundle.signed_entry_timestamp,
        )
        .map_err(|_| {
            Rejection::Tampered(
                "Rekor SignedEntryTimestamp does not verify over the entry".to_owned(),
            )
        })?;
    let integrated = bundle.payload.integrated_time()?;
    if !key.valid_for.contains(integrated) {
        return Err(Rejection::UntrustedRoot(
            "Rekor key was not in use at the entry's integratedTime".to_owned(),
        ));
    }
    Ok(integrated)
}

/// Checks that the logged entry is this signature: body kind `hashedrekord` or `rekord`
/// 0.0.1, data hash = the payload's SHA-256, SHA-384 or SHA-512 as the entry names it,
/// signature = the layer's signature, and the public key = the signing certificate (or
/// key). cosign `pkg/cosign/verify.go` `VerifyBundle` compares exactly these (the
/// `sigstore` crate does not).
///
/// # Errors
///
/// `Tampered` on any difference (vector K04); `Malformed` for a body that does not
/// decode; `UnsupportedAlgorithm` for another entry kind or version.
pub fn check_entry_body(
    payload: &RekorPayload,
    signed_payload: &[u8],
    signature: &[u8],
    signer: LoggedSigner<'_>,
) -> Result<(), Rejection> {
    let body = B64
        .decode(payload.body.as_bytes())
        .map_err(|e| Rejection::Malformed(format!("Rekor entry body: {e}")))?;
    if body.len() > MAX_ENTRY_BODY_BYTES {
        return Err(Rejection::Malformed(
            "Rekor entry body over its limit".to_owned(),
        ));
    }
    let entry: WireEntry = serde_json::from_slice(&body)
        .map_err(|e| Rejection::Malformed(format!("Rekor entry body: {e}")))?;
    match (entry.kind.as_str(), entry.api_version.as_str()) {
        ("hashedrekord", "0.0.1") | ("rekord", "0.0.1") => {}
        (kind, version) => {
            return Err(Rejection::UnsupportedAlgorithm(format!(
                "Rekor entry kind {kind} {version} (hashedrekord and rekord 0.0.1 are supported)"
            )))
        }
    }
    let spec = entry.spec;
    if let Some(format) = &spec.signature.format {
        // Rekor rekord 0.0.1: format names the signature scheme; cosign writes x509.
        if format != "x509" {
            return Err(Rejection::UnsupportedAlgorithm(format!(
                "rekord signature format {format}"
            )));
        }
    }
    let hash = spec.data.hash.ok_or_else(|| {
        Rejection::UnsupportedAlgorithm("Rekor entry without a data hash".to_owned())
    })?;
    // Rekor `hashedrekord_v0_0_1_schema.json`: sha256, sha384 or sha512. cosign logs the
    // digest it signed, which from 2.5 on is the key's default hash (`key` module docs):
    // SHA-384 for P-384, SHA-512 for P-521 and Ed25519ph.
    let ours = match hash.algorithm.as_str() {
        "sha256" => hex::encode(Sha256::digest(signed_payload)),
        "sha384" => hex::encode(Sha384::digest(signed_payload)),
        "sha512" => hex::encode(Sha512::digest(signed_payload)),
        other => {
            return Err(Rejection::UnsupportedAlgorithm(format!(
                "Rekor data hash {other}"
            )))
        }
    };
    if !hash.value.eq_ignore_ascii_case(&ours) {
        return Err(Rejection::Tampered(
            "Rekor entry logs another payload".to_owned(),
        ));
    }
    let logged_signature = B64
        .decode(spec.signature.content.as_bytes())
        .map_err(|e| Rejection::Malformed(format!("Rekor entry signature: {e}")))?;
    if logged_signature != signature {
        return Err(Rejection::Tampered(
            "Rekor entry logs another signature".to_owned(),
        ));
    }
    let logged_key_pem = B64
        .decode(spec.signature.public_key.content.as_bytes())
        .map_err(|e| Rejection::Malformed(format!("Rekor entry public key: {e}")))?;
    let block = pem::parse(&logged_key_pem)
        .map_err(|e| Rejection::Malformed(format!("Rekor entry public key: {e}")))?;
    let same = match (signer, block.tag()) {
        (
            LoggedSigner::CertificateDer(der)
            | LoggedSigner::KeyOrItsCertificate {
                certificate: der, ..
            },
            "CERTIFICATE",
        )
        | (
            LoggedSigner::SpkiDer(der) | LoggedSigner::KeyOrItsCertificate { spki: der, .. },
            "PUBLIC KEY",
        ) => block.contents() == der,
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(Rejection::Tampered(
            "Rekor entry logs another signing key".to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::cosign::key::PublicKey;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/cosign");

    fn vector(path: &str) -> Vec<u8> {
        let path = format!("{VECTORS}/{path}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("vector file {path} missing: {e}"))
    }

    fn rekor() -> Vec<LogKey> {
        vec![PublicKey::from_pem(&vector("trust/rekor.pub"))
            .unwrap()
            .into()]
    }

    #[test]
    fn production_set_verifies_and_yields_integrated_time() {
        let bundle =
            RekorBundle::parse(&vector("keyless/wabbitnetworks-2023/bundle.json")).unwrap();
        let t = verify_set(&bundle, &rekor()).unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_676_524_985));
    }

    #[test]
    fn entry_outside_the_key_validity_is_untrusted() {
        let bundle =
            RekorBundle::parse(&vector("keyless/wabbitnetworks-2023/bundle.json")).unwrap();
        let mut keys = rekor();
        keys[0].valid_for.start = Some(UNIX_EPOCH + Duration::from_secs(1_676_524_986));
        assert!(matches!(
            verify_set(&bundle, &keys),
            Err(Rejection::UntrustedRoot(_))
        ));
    }

    #[test]
    fn changed_integrated_time_is_tampered() {
        let bundle = RekorBundle::parse(&vector(
            "keyless/derived/wabbitnetworks-2023-integratedtime-changed.bundle.json",
        ))
        .unwrap();
        assert!(matches!(
            verify_set(&bundle, &rekor()),
            Err(Rejection::Tampered(_))
        ));
    }

    #[test]
    fn unknown_log_is_untrusted() {
        let bundle =
            RekorBundle::parse(&vector("keyless/wabbitnetworks-2023/bundle.json")).unwrap();
        let other = vec![PublicKey::from_pem(&vector("key/busybox/cosign.pub"))
            .unwrap()
            .into()];
        assert!(matches!(
            verify_set(&bundle, &other),
            Err(Rejection::UntrustedRoot(_))
        ));
    }

    #[test]
    fn set_that_is_not_base64_is_malformed() {
        let annotations: std::collections::BTreeMap<String, String> = serde_json::from_slice(
            &vector("keyless/wabbitnetworks-2023-bad-set/annotations.json"),
        )
        .unwrap();
        let json = &annotations["dev.sigstore.cosign/bundle"];
        assert!(matches!(
            RekorBundle::parse(json.as_bytes()),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn body_matches_only_its_own_signature() {
        let bundle =
            RekorBundle::parse(&vector("keyless/wabbitnetworks-2023/bundle.json")).unwrap();
        let payload = vector("keyless/wabbitnetworks-2023/payload.json");
        let sig = B64
            .decode(vector("keyless/wabbitnetworks-2023/signature.sig"))
            .unwrap();
        let cert = pem::parse(vector("keyless/wabbitnetworks-2023/certificate.pem")).unwrap();
        let signer = LoggedSigner::CertificateDer(cert.contents());
        assert!(check_entry_body(&bundle.payload, &payload, &sig, signer).is_ok());
        assert!(matches!(
            check_entry_body(&bundle.payload, b"other payload", &sig, signer),
            Err(Rejection::Tampered(_))
        ));
        assert!(matches!(
            check_entry_body(&bundle.payload, &payload, b"other sig", signer),
            Err(Rejection::Tampered(_))
        ));
        assert!(matches!(
            check_entry_body(
                &bundle.payload,
                &payload,
                &sig,
                LoggedSigner::CertificateDer(b"x")
            ),
            Err(Rejection::Tampered(_))
        ));
        let rekord = RekorBundle::parse(&vector("keyless/kubewarden-2021/bundle.json")).unwrap();
        assert!(matches!(
            check_entry_body(&rekord.payload, &payload, &sig, signer),
            Err(Rejection::Tampered(_))
        ));
    }
}
