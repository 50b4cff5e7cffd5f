//! OCSP (RFC 6960): the request crigate sends a certificate's responder, and the reading
//! of its answer.
//!
//! Trust policy spec, "Certificate Revocation Evaluation": "If both OCSP URLs and CDP
//! URLs are present, then OCSP is preferred over CRLs. If revocation status cannot be
//! determined using OCSP because of any reason such as unavailability then fallback to
//! using CRLs"; an OCSP `unknown` status is "revocation unavailable". As notation-core-go
//! does (`revocation/internal/ocsp/ocsp.go`, with golang.org/x/crypto's `ocsp`): the
//! certificate is named by a SHA-1 `CertID` (which every responder supports; several
//! refuse SHA-256) with no nonce; an answer past its `nextUpdate` is unavailable; a
//! critical extension in it is refused; and a certificate whose entry's invalidity date
//! is after the authentic signing time was good when it signed. Stricter than Go's
//! parser, as RFC 6960 4.2.2.2 requires: a responder certificate must carry
//! `id-kp-OCSPSigning` and be valid now, and the answer's `CertID` must match the
//! issuer's name and key hashes as well as the serial number.
#![deny(clippy::indexing_slicing)]

use const_oid::ObjectIdentifier;
use der::asn1::{BitString, GeneralizedTime, Null, OctetString};
use der::{Choice, Decode, Encode, Enumerated, Sequence};
use sha2::Digest as _;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::ext::Extensions;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use super::chain::Cert;
use super::crypto::X509Algorithm;
use super::time::Moment;
use super::tlv::{self, DerReader};

/// Largest OCSP answer read (notation-core-go's `ocspMaxResponseSize`).
pub const MAX_OCSP_RESPONSE_BYTES: usize = 20 * 1024;
/// How far a responder's clock may run ahead of the node's for `thisUpdate`.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// `id-sha1` (RFC 3279 2.2.1).
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
/// `id-sha256` (RFC 5754 2.2).
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// `id-ce-invalidityDate` (RFC 5280 5.3.2).
const INVALIDITY_DATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.24");
/// `id-pkix-ocsp-basic` (RFC 6960 4.2.1).
const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
/// `id-kp-OCSPSigning` (RFC 6960 4.2.2.2).
const ID_KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");

/// What a responder said of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Good,
    Revoked { at: Moment },
}

// --- RFC 6960 4.1.1 and 4.2.1, as much as crigate sends and reads. ---

#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
struct CertId {
    hash_algorithm: AlgorithmIdentifierOwned,
    issuer_name_hash: OctetString,
    issuer_key_hash: OctetString,
    serial_number: SerialNumber,
}

#[derive(Sequence)]
struct OcspRequest {
    tbs_request: TbsRequest,
}

#[derive(Sequence)]
struct TbsRequest {
    request_list: Vec<Request>,
}

#[derive(Sequence)]
struct Request {
    req_cert: CertId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enumerated)]
#[repr(u32)]
enum ResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

#[derive(Sequence)]
struct OcspResponse {
    response_status: ResponseStatus,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    response_bytes: Option<ResponseBytes>,
}

#[derive(Sequence)]
struct ResponseBytes {
    response_type: ObjectIdentifier,
    response: OctetString,
}

#[derive(Sequence)]
struct BasicOcspResponse {
    tbs_response_data: ResponseData,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    certs: Option<Vec<Certificate>>,
}

#[derive(Sequence)]
struct ResponseData {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<u8>,
    responder_id: ResponderId,
    produced_at: GeneralizedTime,
    responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    response_extensions: Option<Extensions>,
}

#[derive(Choice)]
enum ResponderId {
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", constructed = "true")]
    ByName(Name),
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(OctetString),
}

#[derive(Sequence)]
struct SingleResponse {
    cert_id: CertId,
    cert_status: CertStatus,
    this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    single_extensions: Option<Extensions>,
}

#[derive(Choice)]
enum CertStatus {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

#[derive(Sequence)]
struct RevokedInfo {
    revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    revocation_reason: Option<der::asn1::Any>,
}

/// The `CertID` of `cert` under `hash` (SHA-1 or SHA-256): the hashes of the issuer's
/// name and of its public key's bits (RFC 6960 4.1.1), and the serial number.
fn cert_id(cert: &Cert, issuer: &Cert, hash: ObjectIdentifier) -> Result<CertId, &'static str> {
    let name = cert
        .issuer_der()
        .map_err(|_| "its issuer name cannot be encoded")?;
    let key = issuer.public_key_bits();
    let octets = |bytes: &[u8]| {
        let digest = if hash == ID_SHA256 {
            sha2::Sha256::digest(bytes).to_vec()
        } else {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
                .as_ref()
                .to_vec()
        };
        OctetString::new(digest).map_err(|_| "hash too long")
    };
    Ok(CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: hash,
            parameters: Some(Null.into()),
        },
        issuer_name_hash: octets(&name)?,
        issuer_key_hash: octets(key)?,
        serial_number: SerialNumber::new(cert.serial())
            .map_err(|_| "its serial number is malformed")?,
    })
}

/// The DER `OCSPRequest` for `cert`, issued by `issuer`.
///
/// # Errors
///
/// The certificate's issuer name or serial number cannot be encoded.
pub(crate) fn request(cert: &Cert, issuer: &Cert) -> Result<Vec<u8>, &'static str> {
    OcspRequest {
        tbs_request: TbsRequest {
            request_list: vec![Request {
                req_cert: cert_id(cert, issuer, ID_SHA1)?,
            }],
        },
    }
    .to_der()
    .map_err(|_| "the OCSP request cannot be encoded")
}

/// The `nextUpdate` of the first answer in `der`, if it parses: how long it may be kept.
pub(crate) fn next_update(der: &[u8]) -> Option<Moment> {
    let basic = basic_response(der).ok()?;
    let single = basic.tbs_response_data.responses.first()?;
    single.next_update.map(time)
}

/// What the responder's answer `der` says of `cert` at `now`; `signed_at` is the
/// authentic signing time, if one was established.
///
/// # Errors
///
/// The status is unavailable: the answer is not a successful, well-formed basic
/// response signed by the issuer or its responder, does not cover `cert`, is outside
/// its validity window, or says `unknown`.
pub(crate) fn answer(
    der: &[u8],
    cert: &Cert,
    issuer: &Cert,
    now: Moment,
    signed_at: Option<Moment>,
) -> Result<Answer, String> {
    let basic = basic_response(der)?;
    // RFC 6960 4.2.1: the signature is over the DER of tbsResponseData, exactly as sent.
    let tbs = tbs_response_data(der)?;
    let algorithm = X509Algorithm::from_identifier(&basic.signature_algorithm, None)
        .map_err(|e| format!("signature algorithm: {e}"))?;
    let signature = basic
        .signature
        .as_bytes()
        .ok_or("the signature is not a whole number of bytes")?;
    let signed_by = |signer: &Cert| {
        signer
            .public_key()
            .is_ok_and(|key| algorithm.verify(key, &tbs, signature).is_ok())
    };
    // RFC 6960 4.2.2.2: signed by the CA that issued the certificate, or by a responder
    // the CA issued a certificate with id-kp-OCSPSigning to.
    if !signed_by(issuer) {
        let delegated = basic
            .certs
            .iter()
            .flatten()
            .filter_map(|c| Cert::from_certificate(c.clone()).ok())
            .any(|responder| {
                responder.is_issued_by(issuer)
                    && responder.check_valid_at(now).is_ok()
                    && ocsp_signing(&responder)
                    && signed_by(&responder)
            });
        if !delegated {
            return Err(
                "the answer is signed neither by the certificate's issuer nor by a responder \
                 it authorised"
                    .to_owned(),
            );
        }
    }
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|single| covers(&single.cert_id, cert, issuer))
        .ok_or("the answer does not cover this certificate")?;
    let this_update = time(single.this_update);
    if this_update > now.plus(CLOCK_SKEW) {
        return Err(format!(
            "the answer's thisUpdate {this_update} is in the future"
        ));
    }
    if let Some(next) = single.next_update.map(time) {
        if next < now {
            return Err(format!("the answer expired at its nextUpdate {next}"));
        }
    }
    let mut invalidity = None;
    for extension in single.single_extensions.iter().flatten() {
        if extension.extn_id == INVALIDITY_DATE {
            invalidity = GeneralizedTime::from_der(extension.extn_value.as_bytes())
                .ok()
                .map(time);
        } else if extension.critical {
            return Err(format!(
                "the answer has a critical extension {} crigate does not process",
                extension.extn_id
            ));
        }
    }
    match &single.cert_status {
        CertStatus::Good(_) => Ok(Answer::Good),
        // notation-core-go: an invalidity date after the authentic signing time means
        // the certificate was good when it signed.
        CertStatus::Revoked(_)
            if signed_at
                .zip(invalidity)
                .is_some_and(|(signed, invalid)| signed < invalid) =>
        {
            Ok(Answer::Good)
        }
        CertStatus::Revoked(info) => Ok(Answer::Revoked {
            at: time(info.revocation_time),
        }),
        CertStatus::Unknown(_) => Err("the responder does not know the certificate".to_owned()),
    }
}

/// Whether `id` names `cert`: its serial number, and the hashes of its issuer's name and
/// key under the algorithm the responder used (SHA-1 or SHA-256).
fn covers(id: &CertId, cert: &Cert, issuer: &Cert) -> bool {
    let hash = id.hash_algorithm.oid;
    (hash == ID_SHA1 || hash == ID_SHA256)
        && cert_id(cert, issuer, hash).is_ok_and(|ours| {
            ours.serial_number == id.serial_number
                && ours.issuer_name_hash == id.issuer_name_hash
                && ours.issuer_key_hash == id.issuer_key_hash
        })
}

fn ocsp_signing(responder: &Cert) -> bool {
    matches!(
        responder.certificate().tbs_certificate().get_extension::<ExtendedKeyUsage>(),
        Ok(Some((_, eku))) if eku.0.contains(&ID_KP_OCSP_SIGNING)
    )
}

fn basic_response(der: &[u8]) -> Result<BasicOcspResponse, String> {
    let response =
        OcspResponse::from_der(der).map_err(|e| format!("not a DER OCSPResponse: {e}"))?;
    if response.response_status != ResponseStatus::Successful {
        return Err(format!(
            "the responder answered {:?}",
            response.response_status
        ));
    }
    let bytes = response
        .response_bytes
        .ok_or("a successful answer without responseBytes")?;
    if bytes.response_type != ID_PKIX_OCSP_BASIC {
        return Err(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        ));
    }
    BasicOcspResponse::from_der(bytes.response.as_bytes())
        .map_err(|e| format!("not a DER BasicOCSPResponse: {e}"))
}

/// The exact bytes of the BasicOCSPResponse's tbsResponseData.
fn tbs_response_data(der: &[u8]) -> Result<Vec<u8>, String> {
    let malformed = |_| "the OCSPResponse's structure is malformed".to_owned();
    let outer = tlv::single(der, tlv::SEQUENCE).map_err(malformed)?;
    let mut fields = DerReader::new(outer.value);
    fields.read(ENUMERATED).map_err(malformed)?;
    let explicit = fields.read_any().map_err(malformed)?;
    let bytes = tlv::single(explicit.value, tlv::SEQUENCE).map_err(malformed)?;
    let mut inner = DerReader::new(bytes.value);
    inner.read(tlv::OID).map_err(malformed)?;
    let basic = inner.read(tlv::OCTET_STRING).map_err(malformed)?;
    let basic = tlv::single(basic.value, tlv::SEQUENCE).map_err(malformed)?;
    let tbs = DerReader::new(basic.value)
        .read(tlv::SEQUENCE)
        .map_err(malformed)?;
    Ok(tbs.raw.to_vec())
}

/// Fuzzing: reads `der` as an answer about each certificate it carries, each its own
/// issuer, at `now`.
pub(crate) fn fuzz_answer(der: &[u8], now: Moment) {
    let _ = next_update(der);
    let Ok(basic) = basic_response(der) else {
        return;
    };
    for cert in basic.certs.into_iter().flatten() {
        if let Ok(cert) = Cert::from_certificate(cert) {
            let _ = answer(der, &cert, &cert, now, Some(now));
        }
    }
}

const ENUMERATED: u8 = 0x0a;

fn time(time: GeneralizedTime) -> Moment {
    Moment::from_unix_duration(time.to_unix_duration())
}

#[cfg(test)]
mod tests;
