//! RFC 3161 timestamp countersignatures (`io.cncf.notary.timestampSignature`): a CMS
//! SignedData whose content is a TSTInfo over the envelope's signature bytes.
//!
//! Follows the Notary Project trust store and trust policy spec, "Signature
//! Verification", step "Validate Trusted Timestamp" for `notary.x509`, and RFC 3161
//! 2.4.2 / RFC 5652 5.4 for the token itself. The TSA chain it returns is checked for
//! revocation by the caller (see the module docs of `notation`).
#![deny(clippy::indexing_slicing)]

use std::time::Duration;

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};

use super::chain::{self, Cert, ChainError};
use super::crypto::{HashAlgorithm, X509Algorithm};
use super::time::Moment;
use super::tlv::{self, DerReader, TlvError};

/// Largest token accepted. A token with a three-certificate TSA chain is about 7 KiB.
pub const MAX_TIMESTAMP_BYTES: usize = 256 * 1024;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.12");
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// ETSI baseline time-stamp policy (RFC 3628 5.2), whose accuracy is one second.
const BASELINE_TIMESTAMP_POLICY: &str = "0.4.0.2023.1.1";

/// The interval a verified token places the signature in (RFC 3161 2.4.2, "accuracy").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimestampRange {
    pub gen_time: Moment,
    pub earliest: Moment,
    pub latest: Moment,
}

/// A verified token: the interval it attests and the chain its TSA certificate was
/// verified with, TSA certificate first, the trusted certificate it reached last.
#[derive(Clone, Debug)]
pub(crate) struct VerifiedTimestamp {
    pub range: TimestampRange,
    pub chain: Vec<Cert>,
}

/// Why a timestamp token does not establish an authentic signing time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimestampError {
    #[error("timestamp token is {0} bytes, over the {MAX_TIMESTAMP_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("timestamp token is not a CMS SignedData: {0}")]
    Malformed(String),
    #[error("timestamp token content is {0}, not id-ct-TSTInfo")]
    NotTstInfo(String),
    #[error("timestamp token has {0} signers; RFC 3161 allows only the TSA")]
    SignerCount(usize),
    #[error("timestamp message imprint uses an unsupported hash {0}")]
    UnsupportedHash(String),
    #[error("timestamp message imprint does not match the signature it countersigns")]
    ImprintMismatch,
    #[error("timestamp token lacks the {0} signed attribute")]
    MissingAttribute(&'static str),
    #[error("timestamp signed attribute {0} does not match the token")]
    AttributeMismatch(&'static str),
    #[error("the TSA certificate is not in the token")]
    SignerCertificateMissing,
    #[error("timestamp signature algorithm: {0}")]
    Algorithm(String),
    #[error("TSA signature does not verify")]
    BadSignature,
    #[error("TSA certificate chain: {0}")]
    Chain(#[source] ChainError),
}

/// Verifies `token` as a countersignature of `signature` and returns the time range
/// it attests, with the TSA chain.
///
/// # Errors
///
/// Any RFC 3161 or Notary Project rule the token breaks, including a TSA chain that
/// does not reach `anchors` (the policy's `tsa` stores) at genTime.
pub(crate) fn verify(
    token: &[u8],
    signature: &[u8],
    anchors: &[&Cert],
) -> Result<VerifiedTimestamp, TimestampError> {
    verify_with(token, signature, anchors, &[])
}

/// [`verify`], with `known` certificates beside those the token carries: a TSA chain
/// the verifier was given (a Sigstore trusted root's `timestampAuthorities`), for a
/// token that carries none or only part of it.
///
/// # Errors
///
/// As [`verify`].
pub(crate) fn verify_with(
    token: &[u8],
    signature: &[u8],
    anchors: &[&Cert],
    known: &[Cert],
) -> Result<VerifiedTimestamp, TimestampError> {
    if token.len() > MAX_TIMESTAMP_BYTES {
        return Err(TimestampError::TooLarge(token.len()));
    }
    // A token is read as notation reads it: its lengths in minimal form first.
    let token = &tlv::minimal_lengths(token)
        .map_err(|e| TimestampError::Malformed(format!("timestamp token: {e}")))?;
    let malformed = |e: der::Error| TimestampError::Malformed(e.to_string());
    let content_info = ContentInfo::from_der(token).map_err(malformed)?;
    if content_info.content_type != ID_SIGNED_DATA {
        return Err(TimestampError::Malformed(format!(
            "content type {} is not signedData",
            content_info.content_type
        )));
    }
    let mut signed_data: SignedData = content_info.content.decode_as().map_err(malformed)?;
    // RFC 3161 2.4.2: eContentType is id-ct-TSTInfo and eContent the DER TSTInfo.
    let encap = &signed_data.encap_content_info;
    if encap.econtent_type != ID_CT_TST_INFO {
        return Err(TimestampError::NotTstInfo(encap.econtent_type.to_string()));
    }
    let econtent = encap
        .econtent
        .as_ref()
        .ok_or_else(|| TimestampError::Malformed("eContent is absent".into()))?;
    let tst_der = econtent
        .decode_as::<der::asn1::OctetString>()
        .map_err(malformed)?
        .into_bytes();
    let tst = TstInfo::parse(&tst_der)?;

    // Trust store and trust policy spec, "Validate Trusted Timestamp": "Validate that
    // the timestamp hash in TSTInfo.messageImprint matches the hash of the signature to
    // which the timestamp was applied."
    if tst.imprint_hash.digest(signature) != tst.imprint {
        return Err(TimestampError::ImprintMismatch);
    }

    // RFC 3161 2.4.1: "The time-stamp token MUST NOT contain any signatures other than
    // the signature of the TSA."
    let signers: Vec<_> = signed_data.signer_infos.0.iter().collect();
    let [signer] = signers.as_slice() else {
        return Err(TimestampError::SignerCount(signers.len()));
    };
    // Decoded with the token already: encoded once for their bytes, not decoded again.
    let mut token_certs: Vec<Cert> = match signed_data.certificates.take() {
        Some(set) => set
            .0
            .into_vec()
            .into_iter()
            .filter_map(|choice| match choice {
                CertificateChoices::Certificate(cert) => Some(Cert::from_certificate(cert)),
                CertificateChoices::Other(_) => None,
            })
            .collect::<Result<_, _>>()
            .map_err(TimestampError::Chain)?,
        None => Vec::new(),
    };
    token_certs.extend(known.iter().cloned());
    let tsa_cert = match &signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(isn) => {
            let issuer = isn.issuer.to_der().map_err(malformed)?;
            token_certs
                .iter()
                .find(|c| c.issuer_and_serial_match(&issuer, isn.serial_number.as_bytes()))
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => token_certs
            .iter()
            .find(|c| c.subject_key_identifier().as_deref() == Some(ski.0.as_bytes())),
    }
    .ok_or(TimestampError::SignerCertificateMissing)?;

    // RFC 5652 5.3/5.4: with a content type other than id-data the signed attributes
    // are present; content-type must name the content, message-digest must be its hash,
    // and the signature covers the DER of the SET OF attributes.
    let digest_alg = HashAlgorithm::from_oid(&signer.digest_alg.oid)
        .ok_or_else(|| TimestampError::UnsupportedHash(signer.digest_alg.oid.to_string()))?;
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or(TimestampError::MissingAttribute("signedAttrs"))?;
    let attribute = |oid: ObjectIdentifier, name: &'static str| {
        let mut found = attrs.iter().filter(|a| a.oid == oid);
        match (found.next(), found.next()) {
            (Some(attr), None) if attr.values.len() == 1 => attr
                .values
                .iter()
                .next()
                .ok_or(TimestampError::MissingAttribute(name)),
            (None, _) => Err(TimestampError::MissingAttribute(name)),
            _ => Err(TimestampError::AttributeMismatch(name)),
        }
    };
    let content_type = attribute(ID_CONTENT_TYPE, "content-type")?;
    if content_type.decode_as::<ObjectIdentifier>().ok() != Some(ID_CT_TST_INFO) {
        return Err(TimestampError::AttributeMismatch("content-type"));
    }
    let message_digest = attribute(ID_MESSAGE_DIGEST, "message-digest")?;
    let expected = digest_alg.digest(&tst_der);
    let actual = message_digest
        .decode_as::<der::asn1::OctetString>()
        .map_err(malformed)?;
    if actual.as_bytes() != expected.as_slice() {
        return Err(TimestampError::AttributeMismatch("message-digest"));
    }
    // Trust store and trust policy spec: "Validate the signing-certificate (RFC-2634) or
    // signing-certificate-v2 (RFC-5126) attribute of timestamp CMS."
    check_signing_certificate(attrs, tsa_cert)?;

    let signed_attrs_der =
        raw_signed_attributes(token).map_err(|e| TimestampError::Malformed(e.to_string()))?;
    let algorithm = X509Algorithm::from_identifier(&signer.signature_algorithm, Some(digest_alg))
        .map_err(|e| TimestampError::Algorithm(e.to_string()))?;
    let key = tsa_cert.public_key().map_err(TimestampError::Chain)?;
    algorithm
        .verify(key, &signed_attrs_der, signer.signature.as_bytes())
        .map_err(|_| TimestampError::BadSignature)?;

    // "Validate that timestamp certificate and certificate chain leads to a trusted TSA
    // certificate as per value configured in trustStore" - judged at genTime.
    let chain: Vec<Cert> =
        chain::build_timestamping_chain(tsa_cert, &token_certs, anchors, tst.gen_time)
            .map_err(TimestampError::Chain)?
            .into_iter()
            .cloned()
            .collect();

    // "If the accuracy is explicitly specified in TSTInfo.accuracy, use that value. If
    // the accuracy is not explicitly specified and TSTInfo.policy is the baseline
    // time-stamp policy (RFC-3628), use accuracy of 1 second. Otherwise, use an accuracy
    // of 0."
    let accuracy = match tst.accuracy {
        Some(accuracy) => accuracy,
        None if tst.policy == BASELINE_TIMESTAMP_POLICY => Duration::from_secs(1),
        None => Duration::ZERO,
    };
    Ok(VerifiedTimestamp {
        range: TimestampRange {
            gen_time: tst.gen_time,
            earliest: tst.gen_time.minus(accuracy),
            latest: tst.gen_time.plus(accuracy),
        },
        chain,
    })
}

/// The TimeStampToken of a TimeStampResp (RFC 3161 2.4.2): the token when the status is
/// `granted` (0) or `grantedWithMods` (1).
///
/// # Errors
///
/// Not a TimeStampResp, another status, or no token.
pub(crate) fn token_of_response(response: &[u8]) -> Result<&[u8], TimestampError> {
    let malformed = |e: TlvError| TimestampError::Malformed(format!("TimeStampResp: {e}"));
    if response.len() > MAX_TIMESTAMP_BYTES {
        return Err(TimestampError::TooLarge(response.len()));
    }
    let resp = tlv::single(response, tlv::SEQUENCE).map_err(malformed)?;
    let mut fields = DerReader::new(resp.value);
    // PKIStatusInfo ::= SEQUENCE { status PKIStatus, statusString, failInfo }
    let status_info = fields.read(tlv::SEQUENCE).map_err(malformed)?;
    let status = DerReader::new(status_info.value)
        .read(tlv::INTEGER)
        .map_err(malformed)?;
    if !matches!(status.value, [0] | [1]) {
        return Err(TimestampError::Malformed(format!(
            "TimeStampResp status {:02x?} is not granted",
            status.value
        )));
    }
    let token = fields
        .read_optional(tlv::SEQUENCE)
        .map_err(malformed)?
        .ok_or_else(|| TimestampError::Malformed("TimeStampResp carries no token".into()))?;
    fields.finish().map_err(malformed)?;
    Ok(token.raw)
}

/// The fields of TSTInfo (RFC 3161 2.4.2) crigate uses.
struct TstInfo {
    policy: String,
    imprint_hash: HashAlgorithm,
    imprint: Vec<u8>,
    gen_time: Moment,
    accuracy: Option<Duration>,
}

// === impl TstInfo ===

impl TstInfo {
    fn parse(der: &[u8]) -> Result<Self, TimestampError> {
        let bad = |e: TlvError| TimestampError::Malformed(format!("TSTInfo: {e}"));
        let seq = tlv::single(der, tlv::SEQUENCE).map_err(bad)?;
        let mut reader = DerReader::new(seq.value);
        let version = reader.read(tlv::INTEGER).map_err(bad)?;
        if version.value != [1] {
            return Err(TimestampError::Malformed("TSTInfo version is not 1".into()));
        }
        let policy = reader.read(tlv::OID).map_err(bad)?;
        let policy = ObjectIdentifier::from_bytes(policy.value)
            .map_err(|e| TimestampError::Malformed(e.to_string()))?
            .to_string();
        let imprint = reader.read(tlv::SEQUENCE).map_err(bad)?;
        let mut imprint_reader = DerReader::new(imprint.value);
        let alg = imprint_reader.read(tlv::SEQUENCE).map_err(bad)?;
        let alg = spki::AlgorithmIdentifierOwned::from_der(alg.raw)
            .map_err(|e| TimestampError::Malformed(e.to_string()))?;
        let imprint_hash = HashAlgorithm::from_oid(&alg.oid)
            .ok_or_else(|| TimestampError::UnsupportedHash(alg.oid.to_string()))?;
        let hashed = imprint_reader.read(tlv::OCTET_STRING).map_err(bad)?;
        imprint_reader.finish().map_err(bad)?;
        reader.read(tlv::INTEGER).map_err(bad)?; // serialNumber
        let gen_time = reader.read(tlv::GENERALIZED_TIME).map_err(bad)?;
        let gen_time = std::str::from_utf8(gen_time.value)
            .map_err(|_| TimestampError::Malformed("genTime is not ASCII".into()))
            .and_then(|text| {
                Moment::parse_generalized_time(text)
                    .map_err(|e| TimestampError::Malformed(e.to_string()))
            })?;
        let accuracy = match reader.read_optional(tlv::SEQUENCE).map_err(bad)? {
            Some(accuracy) => Some(parse_accuracy(accuracy.value).map_err(bad)?),
            None => None,
        };
        // ordering, nonce, tsa and extensions follow; crigate does not use them.
        Ok(Self {
            policy,
            imprint_hash,
            imprint: hashed.value.to_vec(),
            gen_time,
            accuracy,
        })
    }
}

/// `Accuracy ::= SEQUENCE { seconds INTEGER OPTIONAL, millis [0] INTEGER (1..999)
/// OPTIONAL, micros [1] INTEGER (1..999) OPTIONAL }` (RFC 3161 2.4.2).
fn parse_accuracy(der: &[u8]) -> Result<Duration, TlvError> {
    let mut reader = DerReader::new(der);
    let small_int = |value: &[u8]| -> u64 {
        if value.len() > 4 {
            return u64::MAX;
        }
        value.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    };
    let seconds = reader
        .read_optional(tlv::INTEGER)?
        .map_or(0, |t| small_int(t.value));
    let millis = reader
        .read_optional(0x80)?
        .map_or(0, |t| small_int(t.value));
    let micros = reader
        .read_optional(0x81)?
        .map_or(0, |t| small_int(t.value));
    reader.finish()?;
    if millis > 999 || micros > 999 || seconds > u64::from(u32::MAX) {
        return Err(TlvError::TrailingBytes(0));
    }
    Ok(
        Duration::from_secs(seconds)
            + Duration::from_millis(millis)
            + Duration::from_micros(micros),
    )
}

/// The ESS attribute that names the TSA certificate, signing-certificate-v2 (RFC 5035 3)
/// or, where a token has only that, signing-certificate (RFC 2634 5.4): its first
/// certificate id's hash must be the TSA certificate's (trust policy spec, "Validate
/// Trusted Timestamp"; tspclient-go reads both). A v1 id hashes with SHA-1, which is
/// used here for that comparison only.
fn check_signing_certificate(
    attrs: &x509_cert::attr::Attributes,
    tsa: &Cert,
) -> Result<(), TimestampError> {
    let (attribute, name) = match attrs.iter().find(|a| a.oid == ID_SIGNING_CERTIFICATE_V2) {
        Some(v2) => (v2, "signing-certificate-v2"),
        None => match attrs.iter().find(|a| a.oid == ID_SIGNING_CERTIFICATE) {
            Some(v1) => (v1, "signing-certificate"),
            None => return Err(TimestampError::MissingAttribute("signing-certificate")),
        },
    };
    let mismatch = || TimestampError::AttributeMismatch(name);
    let value = attribute
        .values
        .iter()
        .next()
        .ok_or_else(mismatch)?
        .to_der()
        .map_err(|_| mismatch())?;
    let bad = |_| mismatch();
    // SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2, ... }, and
    // SigningCertificate ::= SEQUENCE { certs SEQUENCE OF ESSCertID, ... }
    let outer = tlv::single(&value, tlv::SEQUENCE).map_err(bad)?;
    let certs = DerReader::new(outer.value)
        .read(tlv::SEQUENCE)
        .map_err(bad)?;
    let first = DerReader::new(certs.value)
        .read(tlv::SEQUENCE)
        .map_err(bad)?;
    let mut reader = DerReader::new(first.value);
    let matches = if attribute.oid == ID_SIGNING_CERTIFICATE_V2 {
        // ESSCertIDv2 ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier DEFAULT sha256,
        //   certHash OCTET STRING, issuerSerial IssuerSerial OPTIONAL }
        let hash = match reader.read_optional(tlv::SEQUENCE).map_err(bad)? {
            Some(alg) => {
                let alg =
                    spki::AlgorithmIdentifierOwned::from_der(alg.raw).map_err(|_| mismatch())?;
                HashAlgorithm::from_oid(&alg.oid)
                    .ok_or_else(|| TimestampError::UnsupportedHash(alg.oid.to_string()))?
            }
            None => HashAlgorithm::Sha256,
        };
        let cert_hash = reader.read(tlv::OCTET_STRING).map_err(bad)?;
        hash.digest(tsa.der()) == cert_hash.value
    } else {
        // ESSCertID ::= SEQUENCE { certHash Hash, issuerSerial IssuerSerial OPTIONAL },
        // Hash ::= OCTET STRING -- SHA1 hash of entire certificate
        let cert_hash = reader.read(tlv::OCTET_STRING).map_err(bad)?;
        let sha1 =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, tsa.der());
        sha1.as_ref() == cert_hash.value
    };
    if matches {
        Ok(())
    } else {
        Err(mismatch())
    }
}

/// The exact bytes of the first SignerInfo's signed attributes, re-tagged as the
/// `SET OF` the signature covers (RFC 5652 5.4: "the DER encoding of the
/// SignedAttributes value ... with an EXPLICIT SET OF tag").
fn raw_signed_attributes(token: &[u8]) -> Result<Vec<u8>, TlvError> {
    let content_info = tlv::single(token, tlv::SEQUENCE)?;
    let mut reader = DerReader::new(content_info.value);
    reader.read(tlv::OID)?;
    let explicit = reader.read(0xa0)?;
    let signed_data = tlv::single(explicit.value, tlv::SEQUENCE)?;
    let mut reader = DerReader::new(signed_data.value);
    reader.read(tlv::INTEGER)?; // version
    reader.read(tlv::SET)?; // digestAlgorithms
    reader.read(tlv::SEQUENCE)?; // encapContentInfo
    reader.read_optional(0xa0)?; // certificates
    reader.read_optional(0xa1)?; // crls
    let signer_infos = reader.read(tlv::SET)?;
    let signer_info = DerReader::new(signer_infos.value).read(tlv::SEQUENCE)?;
    let mut reader = DerReader::new(signer_info.value);
    reader.read(tlv::INTEGER)?; // version
    reader.read_any()?; // sid
    reader.read(tlv::SEQUENCE)?; // digestAlgorithm
    let attrs = reader.read(0xa0)?;
    let mut der = attrs.raw.to_vec();
    if let Some(tag) = der.first_mut() {
        *tag = tlv::SET;
    }
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_response_gives_its_token_only_when_granted() {
        let tlv = |tag: u8, content: &[u8]| [&[tag, content.len() as u8][..], content].concat();
        let token = tlv(0x30, &tlv(0x06, &[0x2a, 0x03]));
        let response = |status: u8, token: Option<&[u8]>| {
            let status = tlv(0x30, &tlv(0x02, &[status]));
            tlv(
                0x30,
                &[status.as_slice(), token.unwrap_or_default()].concat(),
            )
        };
        for granted in [0, 1] {
            assert_eq!(
                token_of_response(&response(granted, Some(&token))).unwrap(),
                token.as_slice()
            );
        }
        // rejection (2), waiting (3), revocationWarning (4): no timestamp.
        for other in [2, 3, 4] {
            assert!(token_of_response(&response(other, Some(&token))).is_err());
        }
        assert!(token_of_response(&response(0, None)).is_err());
        let whole = response(0, Some(&token));
        for len in 0..whole.len() {
            assert!(token_of_response(&whole[..len]).is_err(), "{len} bytes");
        }
        let mut trailing = whole.clone();
        trailing.push(0);
        assert!(token_of_response(&trailing).is_err());
    }

    #[test]
    fn accuracy_combines_its_parts() {
        // seconds 1, millis 500
        assert_eq!(
            parse_accuracy(&[0x02, 0x01, 0x01, 0x80, 0x02, 0x01, 0xf4]).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_accuracy(&[]).unwrap(), Duration::ZERO);
        // millis 1000 is out of range
        assert!(parse_accuracy(&[0x80, 0x02, 0x03, 0xe8]).is_err());
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for input in [&b""[..], b"invalid!", &[0x30, 0x03, 0x06, 0x01, 0x00]] {
            assert!(
                matches!(
                    verify(input, b"sig", &[]),
                    Err(TimestampError::Malformed(_))
                ),
                "{input:?}"
            );
        }
        let big = vec![0u8; MAX_TIMESTAMP_BYTES + 1];
        assert!(matches!(
            verify(&big, b"sig", &[]),
            Err(TimestampError::TooLarge(_))
        ));
    }
}
