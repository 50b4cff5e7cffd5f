//! The Notary Project payload, `application/vnd.cncf.notary.payload.v1+json`
//! (signature spec, "Payload"): `{"targetArtifact": <OCI descriptor>}`.
#![deny(clippy::indexing_slicing)]

use serde::Deserialize;

use crate::oci::Descriptor;
use crate::verify::Rejection;

/// The signed claims about the target.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Payload {
    #[serde(rename = "targetArtifact")]
    pub target_artifact: TargetArtifact,
}

/// The signed descriptor. "Descriptor MUST contain mediaType, digest, and size fields";
/// other descriptor fields (annotations, artifactType) are signed but not compared.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TargetArtifact {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// Why payload bytes are not a Notary Project payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("payload is not a Notary Project payload: {0}")]
pub(crate) struct PayloadError(String);

// === impl Payload ===

impl Payload {
    /// # Errors
    ///
    /// Not JSON, or no `targetArtifact` with `mediaType`, `digest` and `size`.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        serde_json::from_slice(bytes).map_err(|e| PayloadError(e.to_string()))
    }

    /// Compares the signed descriptor with the image's: mediaType, digest and size must
    /// all be equal (notation-go `verifier.go`, as the Notary Project signing workflow
    /// spec requires the signed target to be the artifact being verified).
    ///
    /// # Errors
    ///
    /// [`Rejection::DigestMismatch`] naming what was signed.
    pub(crate) fn check_target(&self, target: &Descriptor) -> Result<(), Rejection> {
        let signed = &self.target_artifact;
        if signed.media_type == target.media_type
            && signed.digest == target.digest.to_string()
            && signed.size == target.size
        {
            return Ok(());
        }
        Err(Rejection::DigestMismatch {
            signed: format!(
                "{} ({}, {} bytes)",
                signed.digest, signed.media_type, signed.size
            ),
            image: target.digest.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:b8479de3f88fb259a0a9ea82a5b2a052a1ef3c4ebbcfc61482d5ae4c831f8af9";

    fn target(media_type: &str, size: u64) -> Descriptor {
        Descriptor::new(media_type, DIGEST.parse().unwrap(), size)
    }

    #[test]
    fn all_three_fields_are_compared() {
        let payload = Payload::parse(
            format!(
                r#"{{"targetArtifact":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{DIGEST}","size":517,"annotations":{{"a":"b"}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(payload
            .check_target(&target("application/vnd.oci.image.manifest.v1+json", 517))
            .is_ok());
        for other in [
            target("application/vnd.docker.distribution.manifest.v2+json", 517),
            target("application/vnd.oci.image.manifest.v1+json", 518),
        ] {
            assert!(matches!(
                payload.check_target(&other),
                Err(Rejection::DigestMismatch { .. })
            ));
        }
    }

    #[test]
    fn payload_without_required_fields_is_refused() {
        for bad in [
            &br#"{}"#[..],
            br#"{"targetArtifact":{"digest":"x","size":1}}"#,
            br#"{"targetArtifact":{"mediaType":"m","digest":"x","size":-1}}"#,
            b"invalid",
        ] {
            assert!(Payload::parse(bad).is_err());
        }
    }
}
