//! What the JWS and COSE parsers produce: one format-neutral view of a Notary Project
//! signature envelope, and the signed-attribute rules both formats share (Notary
//! Project signature spec, "Signed Attributes").
#![deny(clippy::indexing_slicing)]

use super::crypto::{PssSaltLength, SignatureAlgorithm};
use super::time::Moment;

/// Largest envelope accepted. Envelopes are a few KiB (a chain of three certificates
/// and a timestamp token is under 16 KiB); 1 MiB leaves room for long chains.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

/// The JWS envelope media type (Notary Project JWS envelope spec).
pub const MEDIA_TYPE_JWS: &str = "application/jose+json";
/// The COSE envelope media type (Notary Project COSE envelope spec).
pub const MEDIA_TYPE_COSE: &str = "application/cose";
/// The only payload content type (signature spec, "Content Type").
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

pub(crate) const HEADER_SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
pub(crate) const HEADER_SIGNING_TIME: &str = "io.cncf.notary.signingTime";
pub(crate) const HEADER_AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
pub(crate) const HEADER_EXPIRY: &str = "io.cncf.notary.expiry";
pub(crate) const HEADER_VERIFICATION_PLUGIN: &str = "io.cncf.notary.verificationPlugin";
pub(crate) const HEADER_VERIFICATION_PLUGIN_MIN_VERSION: &str =
    "io.cncf.notary.verificationPluginMinVersion";
pub(crate) const HEADER_TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";

/// The Notary Project signing schemes (signing scheme spec).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningScheme {
    /// `notary.x509`: chain to a `ca` store; signing time is unauthenticated.
    X509,
    /// `notary.x509.signingAuthority`: chain to a `signingAuthority` store; the signing
    /// authority attests the signing time.
    X509SigningAuthority,
}

/// A parsed envelope, not yet verified.
#[derive(Clone, Debug)]
pub(crate) struct Envelope {
    pub alg: SignatureAlgorithm,
    /// The RSASSA-PSS salt lengths the envelope's format accepts.
    pub pss_salt: PssSaltLength,
    /// The bytes the signature covers: JWS signing input or COSE Sig_structure.
    pub signing_input: Vec<u8>,
    pub signature: Vec<u8>,
    pub payload: Payload,
    pub headers: SignedHeaders,
    /// DER certificates, signing certificate first.
    pub cert_chain: Vec<Vec<u8>>,
    pub timestamp: Option<Vec<u8>>,
}

/// The payload as carried: COSE carries bytes, JWS base64url text that is decoded only
/// after the signature over it verified.
#[derive(Clone, Debug)]
pub(crate) enum Payload {
    Bytes(Vec<u8>),
    Base64Url(String),
}

/// Protected (signed) header parameters, format-neutral.
#[derive(Clone, Debug, Default)]
pub(crate) struct SignedHeaders {
    pub content_type: Option<String>,
    pub signing_scheme: Option<String>,
    pub signing_time: Option<Moment>,
    pub authentic_signing_time: Option<Moment>,
    pub expiry: Option<Moment>,
    /// Names listed in `crit` (JWS names, COSE text labels).
    pub critical: Vec<String>,
    /// Every protected header name present, known or not.
    pub present: Vec<String>,
    /// COSE integer labels listed in `crit`, kept apart from text labels: the text label
    /// `"1"` is not `alg`.
    pub critical_labels: Vec<i64>,
    /// Every COSE integer label present in the protected header.
    pub present_labels: Vec<i64>,
    pub verification_plugin: Option<String>,
}

/// Why an envelope cannot be verified, split by the reason class an operator acts on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    /// Not an envelope of the format, or a required part is missing or mistyped.
    #[error("{0}")]
    Malformed(String),
    /// Well formed, but uses an algorithm, scheme or critical header crigate cannot
    /// process.
    #[error("{0}")]
    Unsupported(String),
}

/// The signed-attribute checks both formats share, after the signature verified.
///
/// # Errors
///
/// The first rule the headers break.
pub(crate) fn check_headers(
    headers: &SignedHeaders,
) -> Result<(SigningScheme, Moment), EnvelopeError> {
    let malformed = |m: String| EnvelopeError::Malformed(m);
    // Signature spec, "Content Type": "The supported value is
    // application/vnd.cncf.notary.payload.v1+json."
    match headers.content_type.as_deref() {
        Some(PAYLOAD_CONTENT_TYPE) => {}
        Some(other) => {
            return Err(EnvelopeError::Unsupported(format!(
                "payload content type {other:?}"
            )))
        }
        None => return Err(malformed("content type header is missing".into())),
    }
    // Signature spec, "Signing Scheme": "Supported values are notary.x509 and
    // notary.x509.signingAuthority."
    let scheme = match headers.signing_scheme.as_deref() {
        Some("notary.x509") => SigningScheme::X509,
        Some("notary.x509.signingAuthority") => SigningScheme::X509SigningAuthority,
        Some(other) => {
            return Err(EnvelopeError::Unsupported(format!(
                "signing scheme {other:?}"
            )))
        }
        None => {
            return Err(malformed(format!(
                "{HEADER_SIGNING_SCHEME} header is missing"
            )))
        }
    };
    // Signature spec: Signing Time "is REQUIRED and only valid when signing scheme is
    // notary.x509"; Authentic Signing Time "is REQUIRED and only valid when signing
    // scheme is notary.x509.signingAuthority".
    let signing_time = match (scheme, headers.signing_time, headers.authentic_signing_time) {
        (SigningScheme::X509, Some(time), None) => time,
        (SigningScheme::X509SigningAuthority, None, Some(time)) => time,
        (SigningScheme::X509, _, _) => {
            return Err(malformed(format!(
                "notary.x509 requires {HEADER_SIGNING_TIME} and forbids {HEADER_AUTHENTIC_SIGNING_TIME}"
            )));
        }
        (SigningScheme::X509SigningAuthority, _, _) => {
            return Err(malformed(format!(
                "notary.x509.signingAuthority requires {HEADER_AUTHENTIC_SIGNING_TIME} and forbids {HEADER_SIGNING_TIME}"
            )));
        }
    };
    // notation-core-go: "expiry cannot be equal or before the signing time".
    if headers.expiry.is_some_and(|expiry| expiry <= signing_time) {
        return Err(malformed("expiry is not after the signing time".into()));
    }
    // Signature spec, "Signed Attributes": "Claims that MUST be processed by a verifier
    // MUST be marked as critical": the signing scheme, expiry when present, authentic
    // signing time.
    if headers.critical.is_empty() {
        return Err(malformed("crit header is missing or empty".into()));
    }
    let mut required = vec![HEADER_SIGNING_SCHEME];
    if headers.expiry.is_some() {
        required.push(HEADER_EXPIRY);
    }
    if scheme == SigningScheme::X509SigningAuthority {
        required.push(HEADER_AUTHENTIC_SIGNING_TIME);
    }
    for name in required {
        if !headers.critical.iter().any(|c| c == name) {
            return Err(malformed(format!("{name} is not marked critical")));
        }
    }
    for name in &headers.critical {
        // RFC 7515 4.1.11 / RFC 9052 3.1: a header listed in crit must be present.
        if !headers.present.iter().any(|p| p == name) {
            return Err(malformed(format!(
                "critical header {name:?} is not present"
            )));
        }
    }
    for label in &headers.critical_labels {
        if !headers.present_labels.contains(label) {
            return Err(malformed(format!(
                "critical header label {label} is not present"
            )));
        }
    }
    // Signature spec, "Guidelines for implementations": an implementation that does not
    // implement the plugin protocol "MUST fail signature verification if it cannot
    // perform the equivalent verification logic".
    if let Some(plugin) = &headers.verification_plugin {
        return Err(EnvelopeError::Unsupported(format!(
            "signature requires verification plugin {plugin:?}"
        )));
    }
    if headers
        .present
        .iter()
        .any(|p| p == HEADER_VERIFICATION_PLUGIN_MIN_VERSION)
    {
        return Err(EnvelopeError::Unsupported(
            "signature requires a minimum verification plugin version".into(),
        ));
    }
    // Signature spec, "Extended attributes": "unknown critical attributes MUST cause
    // signature verification to fail."
    for name in &headers.critical {
        if !understood(name) {
            return Err(EnvelopeError::Unsupported(format!(
                "critical header {name:?} is not understood"
            )));
        }
    }
    // COSE labels 1 (alg) and 3 (content type) may be marked critical too (RFC 9052
    // 3.1); they are processed. No other integer label is.
    for label in &headers.critical_labels {
        if !matches!(label, 1 | 3) {
            return Err(EnvelopeError::Unsupported(format!(
                "critical header label {label} is not understood"
            )));
        }
    }
    Ok((scheme, signing_time))
}

/// Critical header names this verifier processes.
fn understood(name: &str) -> bool {
    matches!(
        name,
        HEADER_SIGNING_SCHEME | HEADER_EXPIRY | HEADER_AUTHENTIC_SIGNING_TIME | HEADER_SIGNING_TIME
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> SignedHeaders {
        SignedHeaders {
            content_type: Some(PAYLOAD_CONTENT_TYPE.into()),
            signing_scheme: Some("notary.x509".into()),
            signing_time: Some(Moment::from_unix_seconds(1000)),
            critical: vec![HEADER_SIGNING_SCHEME.into()],
            present: vec![HEADER_SIGNING_SCHEME.into(), HEADER_SIGNING_TIME.into()],
            ..SignedHeaders::default()
        }
    }

    #[test]
    fn minimal_x509_headers_pass() {
        assert_eq!(check_headers(&headers()).unwrap().0, SigningScheme::X509);
    }

    #[test]
    fn unknown_critical_header_is_unsupported() {
        let mut h = headers();
        h.critical.push("com.example.extension".into());
        h.present.push("com.example.extension".into());
        assert!(matches!(
            check_headers(&h),
            Err(EnvelopeError::Unsupported(_))
        ));
    }

    #[test]
    fn critical_header_must_be_present() {
        let mut h = headers();
        h.critical.push("com.example.absent".into());
        assert!(matches!(
            check_headers(&h),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn required_headers_must_be_critical() {
        let mut h = headers();
        h.critical = vec![HEADER_SIGNING_TIME.into()];
        assert!(matches!(
            check_headers(&h),
            Err(EnvelopeError::Malformed(_))
        ));
        let mut h = headers();
        h.expiry = Some(Moment::from_unix_seconds(2000));
        h.present.push(HEADER_EXPIRY.into());
        assert!(matches!(
            check_headers(&h),
            Err(EnvelopeError::Malformed(_))
        ));
        h.critical.push(HEADER_EXPIRY.into());
        assert!(check_headers(&h).is_ok());
    }

    #[test]
    fn scheme_and_time_headers_must_agree() {
        let mut h = headers();
        h.signing_scheme = Some("notary.x509.signingAuthority".into());
        assert!(matches!(
            check_headers(&h),
            Err(EnvelopeError::Malformed(_))
        ));
        let mut h = headers();
        h.signing_scheme = Some("notary.other".into());
        assert!(matches!(
            check_headers(&h),
            Err(EnvelopeError::Unsupported(_))
        ));
        let mut h = headers();
        h.content_type = Some("application/json".into());
        assert!(matches!(
            check_headers(&h),
            Err(EnvelopeError::Unsupported(_))
        ));
        let mut h = headers();
        h.expiry = Some(Moment::from_unix_seconds(1000));
        h.critical.push(HEADER_EXPIRY.into());
        assert!(matches!(
            check_headers(&h),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn plugin_requirement_is_unsupported() {
        let mut h = headers();
        h.verification_plugin = Some("plugin-name".into());
        assert!(matches!(
            check_headers(&h),
            Err(EnvelopeError::Unsupported(_))
        ));
    }
}
