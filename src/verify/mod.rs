//! Signature verification: what a signature establishes about an image digest.
//!
//! A verifier answers with a [`Verdict`]: trusted (with the [`Signer`]) or rejected (with
//! a typed [`Rejection`]). A rejected signature is an answer, not an error; `Err` means
//! the verifier could not decide (registry unreachable, response over a limit) and goes
//! to the policy's `on_error`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::oci::Digest;

pub mod cache;
pub mod cosign;
pub mod engine;
pub mod material;
pub mod notation;

/// The outcome of verifying one digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum Verdict {
    Trusted(Signer),
    Rejected(Rejection),
}

/// Which kind of signature established trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifierKind {
    Cosign,
    Notation,
}

/// Who signed, as the trust material identified them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    pub verifier: VerifierKind,
    /// The signer's identity: an x509 subject DN (Notation), a certificate SAN (cosign
    /// keyless), or the key's name (cosign key-based).
    pub identity: String,
    /// The OIDC issuer of a keyless certificate.
    pub issuer: Option<String>,
    /// The trust material that matched: a key file, a trust policy name.
    pub matched: String,
    /// The digest the signature covers (an index digest for a platform manifest
    /// covered through its index).
    pub signed_digest: Digest,
    /// When this trust must be judged again whatever the cache's TTL: a Notation
    /// signature's `io.cncf.notary.expiry`, or the end of its chain's validity when no
    /// authentic timestamp vouches for the signing time; for a cosign keyless layer
    /// judged at the current time (no log entry, no timestamp), the end of its chain.
    /// `None` when nothing in the signature ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<std::time::SystemTime>,
}

/// Why no signature established trust: one variant per reason an operator acts on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", content = "detail", rename_all = "snake_case")]
pub enum Rejection {
    #[error("no signature found for {0}")]
    NoSignature(Digest),
    #[error("signature not trusted: {0}")]
    UntrustedRoot(String),
    /// A signature that passed every other check, whose certificate's revocation status
    /// nothing at hand could settle: no CRL on file, no OCSP responder or distribution
    /// point that answered. Notation's `enforce` revocation action fails it (trust policy
    /// spec, "Certificate Revocation Evaluation"); the next call may find a source that
    /// answers, so it is not cached ([`Rejection::is_lasting`]).
    #[error("signature not trusted: {0}")]
    RevocationUnknown(String),
    #[error("signer identity not trusted: {0}")]
    IdentityNotTrusted(String),
    #[error("signed digest {signed} differs from image digest {image}")]
    DigestMismatch { signed: String, image: Digest },
    #[error("signature expired: {0}")]
    Expired(String),
    #[error("signature does not match its payload: {0}")]
    Tampered(String),
    #[error("unsupported signature algorithm: {0}")]
    UnsupportedAlgorithm(String),
    #[error("malformed signature: {0}")]
    Malformed(String),
}

// === impl Rejection ===

impl Rejection {
    /// The stable key of this reason, used in audit records, metrics and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NoSignature(_) => "no_signature",
            Rejection::UntrustedRoot(_) => "untrusted_root",
            Rejection::RevocationUnknown(_) => "revocation_unknown",
            Rejection::IdentityNotTrusted(_) => "identity_not_trusted",
            Rejection::DigestMismatch { .. } => "digest_mismatch",
            Rejection::Expired(_) => "expired",
            Rejection::Tampered(_) => "tampered",
            Rejection::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Rejection::Malformed(_) => "malformed",
        }
    }

    /// Whether the rejection stands for as long as the image and the trust material do.
    /// One that does not (a revocation status that could not be determined, which an
    /// OCSP responder back up may settle) is not cached: each call verifies again.
    pub fn is_lasting(&self) -> bool {
        !matches!(self, Rejection::RevocationUnknown(_))
    }
}

/// The rejection to report of several, each the most informative of its own: the first
/// that is not lasting (a later call may decide otherwise, so the verdict must not be
/// cached), else the first that found a signature, else `none_found`.
pub(crate) fn reported_rejection(
    rejections: Vec<Rejection>,
    none_found: impl FnOnce() -> Rejection,
) -> Rejection {
    let mut found = None;
    for rejection in rejections {
        if !rejection.is_lasting() {
            return rejection;
        }
        if found.is_none() && !matches!(rejection, Rejection::NoSignature(_)) {
            found = Some(rejection);
        }
    }
    found.unwrap_or_else(none_found)
}

// === impl VerifierKind ===

impl fmt::Display for VerifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifierKind::Cosign => "cosign",
            VerifierKind::Notation => "notation",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_that_may_not_last_is_reported_before_any_other() {
        let digest = Digest::sha256(b"image");
        let none = || Rejection::NoSignature(Digest::sha256(b"image"));
        let untrusted = Rejection::UntrustedRoot("cosign: no key matched".into());
        let unknown = Rejection::RevocationUnknown("notation: OCSP down".into());
        // cosign's rejection comes first, Notation's may not last: Notation's is reported.
        assert_eq!(
            reported_rejection(vec![untrusted.clone(), unknown.clone()], none),
            unknown
        );
        // Otherwise the first that found a signature, else none found.
        assert_eq!(
            reported_rejection(
                vec![Rejection::NoSignature(digest.clone()), untrusted.clone()],
                none
            ),
            untrusted
        );
        assert_eq!(
            reported_rejection(vec![Rejection::NoSignature(digest.clone())], none),
            none()
        );
        assert_eq!(reported_rejection(Vec::new(), none), none());
        assert!(!unknown.is_lasting() && untrusted.is_lasting());
    }
}
