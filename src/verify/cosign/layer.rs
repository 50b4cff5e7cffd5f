//! One cosign signature in the legacy `sha256-<hex>.sig` tag format: a layer of the
//! signature manifest whose blob is the simple-signing payload and whose annotations carry
//! the signature, certificate, chain and Rekor bundle (cosign `pkg/oci/static/signature.go`,
//! `pkg/oci/static/options.go` annotation keys).
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;

/// `mediaType` of a simple-signing payload layer (cosign `pkg/types/media.go`).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the base64 signature over the payload blob.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Annotation holding the PEM signing certificate (keyless, or a key with a certificate).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Annotation holding the PEM certificate chain above the signing certificate.
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Annotation holding the Rekor bundle (SignedEntryTimestamp and entry) as JSON.
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Annotation holding an RFC 3161 timestamp over the signature, as JSON
/// `{"SignedRFC3161Timestamp": "<base64 DER TimeStampResp>"}` (cosign
/// `pkg/cosign/bundle/tsa.go`, written by `cosign sign --timestamp-server-url`).
pub const RFC3161_TIMESTAMP_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

/// The largest simple-signing payload blob we verify. cosign's payloads are under 1 KiB
/// plus whatever `-a key=value` annotations the signer added; 64 KiB leaves room.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The largest signature annotation: base64 of an RSA-8192 signature is 1.4 KiB.
pub const MAX_SIGNATURE_B64_BYTES: usize = 4 * 1024;
/// The largest certificate or chain annotation (a Fulcio leaf is ~1 KiB, a chain ~2 KiB).
pub const MAX_CERTIFICATES_PEM_BYTES: usize = 64 * 1024;
/// The largest Rekor bundle annotation: a hashedrekord body with a certificate is ~3 KiB.
pub const MAX_BUNDLE_JSON_BYTES: usize = 64 * 1024;
/// The largest RFC 3161 timestamp annotation: a TimeStampResp carrying the TSA's chain is
/// a few KiB, base64 in JSON a third more.
pub const MAX_TIMESTAMP_JSON_BYTES: usize = 64 * 1024;

/// One signature as stored in a `.sig` manifest layer. The payload is the layer blob,
/// already fetched by the caller and checked against the layer descriptor's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLayer {
    pub payload: Vec<u8>,
    pub media_type: String,
    /// `dev.cosignproject.cosign/signature`, standard base64.
    pub signature_b64: String,
    /// `dev.sigstore.cosign/certificate`.
    pub certificate_pem: Option<String>,
    /// `dev.sigstore.cosign/chain`.
    pub chain_pem: Option<String>,
    /// `dev.sigstore.cosign/bundle`.
    pub bundle_json: Option<String>,
    /// `dev.sigstore.cosign/rfc3161timestamp`.
    pub rfc3161_timestamp_json: Option<String>,
}

/// Why a layer is not a cosign signature we can verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayerError {
    #[error("layer has no {SIGNATURE_ANNOTATION} annotation")]
    MissingSignature,
    #[error("layer media type {0:?} is not {SIMPLE_SIGNING_MEDIA_TYPE}")]
    MediaType(String),
    #[error("{what} is {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        len: usize,
        limit: usize,
    },
}

// === impl SignatureLayer ===

impl SignatureLayer {
    /// Whether a layer of `media_type` with `annotations` may be a signature, told
    /// before its blob is read.
    ///
    /// # Errors
    ///
    /// Not the simple-signing media type, or no signature annotation.
    pub fn may_be(
        media_type: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), LayerError> {
        if media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            return Err(LayerError::MediaType(media_type.to_owned()));
        }
        if !annotations.contains_key(SIGNATURE_ANNOTATION) {
            return Err(LayerError::MissingSignature);
        }
        Ok(())
    }

    /// Builds a signature from a `.sig` layer descriptor's media type and annotations and
    /// the layer's blob, enforcing the size limits.
    ///
    /// # Errors
    ///
    /// No signature annotation, a media type other than simple signing, or a value over
    /// its limit.
    pub fn from_annotations(
        media_type: &str,
        annotations: &BTreeMap<String, String>,
        blob: Vec<u8>,
    ) -> Result<Self, LayerError> {
        Self::may_be(media_type, annotations)?;
        let signature_b64 = annotations
            .get(SIGNATURE_ANNOTATION)
            .ok_or(LayerError::MissingSignature)?;
        let layer = Self {
            payload: blob,
            media_type: media_type.to_owned(),
            signature_b64: signature_b64.clone(),
            certificate_pem: annotations.get(CERTIFICATE_ANNOTATION).cloned(),
            chain_pem: annotations.get(CHAIN_ANNOTATION).cloned(),
            bundle_json: annotations.get(BUNDLE_ANNOTATION).cloned(),
            rfc3161_timestamp_json: annotations.get(RFC3161_TIMESTAMP_ANNOTATION).cloned(),
        };
        layer.check_limits()?;
        Ok(layer)
    }

    /// Checks every field against its limit; `verify` calls it too, since the fields are
    /// public.
    ///
    /// # Errors
    ///
    /// The first field over its limit.
    pub fn check_limits(&self) -> Result<(), LayerError> {
        let checks = [
            ("payload", self.payload.len(), MAX_PAYLOAD_BYTES),
            (
                "signature annotation",
                self.signature_b64.len(),
                MAX_SIGNATURE_B64_BYTES,
            ),
            (
                "certificate annotation",
                self.certificate_pem.as_ref().map_or(0, String::len),
                MAX_CERTIFICATES_PEM_BYTES,
            ),
            (
                "chain annotation",
                self.chain_pem.as_ref().map_or(0, String::len),
                MAX_CERTIFICATES_PEM_BYTES,
            ),
            (
                "bundle annotation",
                self.bundle_json.as_ref().map_or(0, String::len),
                MAX_BUNDLE_JSON_BYTES,
            ),
            (
                "RFC 3161 timestamp annotation",
                self.rfc3161_timestamp_json.as_ref().map_or(0, String::len),
                MAX_TIMESTAMP_JSON_BYTES,
            ),
        ];
        for (what, len, limit) in checks {
            if len > limit {
                return Err(LayerError::TooLarge { what, len, limit });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reads_annotations_into_fields() {
        let a = annotations(&[
            (SIGNATURE_ANNOTATION, "c2ln"),
            (CERTIFICATE_ANNOTATION, "cert"),
            (CHAIN_ANNOTATION, "chain"),
            (BUNDLE_ANNOTATION, "{}"),
        ]);
        let layer = SignatureLayer::from_annotations(SIMPLE_SIGNING_MEDIA_TYPE, &a, b"{}".to_vec())
            .unwrap();
        assert_eq!(layer.signature_b64, "c2ln");
        assert_eq!(layer.certificate_pem.as_deref(), Some("cert"));
        assert_eq!(layer.chain_pem.as_deref(), Some("chain"));
        assert_eq!(layer.bundle_json.as_deref(), Some("{}"));
    }

    #[test]
    fn layer_without_signature_or_of_another_type_is_refused() {
        let err =
            SignatureLayer::from_annotations(SIMPLE_SIGNING_MEDIA_TYPE, &annotations(&[]), vec![]);
        assert_eq!(err, Err(LayerError::MissingSignature));
        let a = annotations(&[(SIGNATURE_ANNOTATION, "c2ln")]);
        let err = SignatureLayer::from_annotations("application/octet-stream", &a, vec![]);
        assert!(matches!(err, Err(LayerError::MediaType(_))));
    }

    #[test]
    fn payload_limit_is_enforced_at_its_edge() {
        let a = annotations(&[(SIGNATURE_ANNOTATION, "c2ln")]);
        for (len, ok) in [
            (MAX_PAYLOAD_BYTES - 1, true),
            (MAX_PAYLOAD_BYTES, true),
            (MAX_PAYLOAD_BYTES + 1, false),
        ] {
            let got =
                SignatureLayer::from_annotations(SIMPLE_SIGNING_MEDIA_TYPE, &a, vec![b' '; len]);
            assert_eq!(got.is_ok(), ok, "payload of {len} bytes");
        }
    }
}
