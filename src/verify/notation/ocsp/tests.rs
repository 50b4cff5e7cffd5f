//! Answers built here with the module's own RFC 6960 types and signed with rcgen keys:
//! every way an answer can fail to settle a status, besides the three statuses. The
//! request encoding and a real responder's answers are covered end to end against
//! `openssl ocsp` (integration/notation_e2e.rs).
use der::asn1::{BitString, GeneralizedTime, Null, OctetString};
use der::{Decode, Encode};
use rcgen::SigningKey as _;
use x509_cert::ext::Extension;

use super::*;

/// ecdsa-with-SHA256 (RFC 5758 3.2).
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    ca_cert: Cert,
    leaf: Cert,
}

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    rcgen::CertifiedIssuer::self_signed(params, key).unwrap()
}

fn pki() -> Pki {
    let ca = ca("crigate OCSP test CA");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "crigate OCSP test leaf");
    params.serial_number = Some(rcgen::SerialNumber::from(77u64));
    let leaf = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_cert: Cert::from_der(ca.der()).unwrap(),
        leaf: Cert::from_der(leaf.der()).unwrap(),
        ca,
    }
}

/// A responder certificate issued by `issuer`, with `id-kp-OCSPSigning` if `eku`.
fn responder(
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    eku: bool,
) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "crigate OCSP responder");
    if eku {
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::OcspSigning];
    }
    let cert = params.signed_by(&key, issuer).unwrap();
    (key, cert.der().to_vec())
}

fn at(unix: u64) -> GeneralizedTime {
    GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(unix)).unwrap()
}

/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;
const DAY: u64 = 86_400;

struct Reply {
    status: CertStatus,
    id: CertId,
    this_update: u64,
    next_update: Option<u64>,
    extensions: Option<Vec<Extension>>,
    certs: Option<Vec<Vec<u8>>>,
}

impl Reply {
    fn good(pki: &Pki) -> Self {
        Self {
            status: CertStatus::Good(Null),
            id: cert_id(&pki.leaf, &pki.ca_cert, ID_SHA1).unwrap(),
            this_update: NOW - DAY,
            next_update: Some(NOW + DAY),
            extensions: None,
            certs: None,
        }
    }

    fn revoked(pki: &Pki, at_unix: u64) -> Self {
        Self {
            status: CertStatus::Revoked(RevokedInfo {
                revocation_time: at(at_unix),
                revocation_reason: None,
            }),
            ..Self::good(pki)
        }
    }

    /// The DER OCSPResponse, signed with `key`.
    fn signed(self, key: &rcgen::KeyPair) -> Vec<u8> {
        let tbs = ResponseData {
            version: None,
            responder_id: ResponderId::ByKey(OctetString::new(vec![1; 20]).unwrap()),
            produced_at: at(NOW - DAY),
            responses: vec![SingleResponse {
                cert_id: self.id,
                cert_status: self.status,
                this_update: at(self.this_update),
                next_update: self.next_update.map(at),
                single_extensions: self.extensions,
            }],
            response_extensions: None,
        };
        let signature = key.sign(&tbs.to_der().unwrap()).unwrap();
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: ECDSA_SHA256,
                parameters: None,
            },
            signature: BitString::from_bytes(&signature).unwrap(),
            certs: self.certs.map(|certs| {
                certs
                    .iter()
                    .map(|der| Certificate::from_der(der).unwrap())
                    .collect()
            }),
        };
        OcspResponse {
            response_status: ResponseStatus::Successful,
            response_bytes: Some(ResponseBytes {
                response_type: ID_PKIX_OCSP_BASIC,
                response: OctetString::new(basic.to_der().unwrap()).unwrap(),
            }),
        }
        .to_der()
        .unwrap()
    }
}

fn read(pki: &Pki, der: &[u8], signed_at: Option<u64>) -> Result<Answer, String> {
    let moment = |unix: u64| Moment::from_unix_seconds(unix as i64);
    answer(
        der,
        &pki.leaf,
        &pki.ca_cert,
        moment(NOW),
        signed_at.map(moment),
    )
}

#[test]
fn the_three_statuses_are_read() {
    let pki = pki();
    let key = pki.ca.key();
    assert_eq!(
        read(&pki, &Reply::good(&pki).signed(key), None),
        Ok(Answer::Good)
    );
    assert_eq!(
        read(
            &pki,
            &Reply::revoked(&pki, NOW - 10 * DAY).signed(key),
            None
        ),
        Ok(Answer::Revoked {
            at: Moment::from_unix_seconds((NOW - 10 * DAY) as i64)
        })
    );
    let unknown = Reply {
        status: CertStatus::Unknown(Null),
        ..Reply::good(&pki)
    };
    let error = read(&pki, &unknown.signed(key), None).unwrap_err();
    assert!(error.contains("does not know the certificate"), "{error}");
}

#[test]
fn an_invalidity_date_after_the_authentic_signing_time_leaves_the_signature_good() {
    let pki = pki();
    let invalid_from = NOW - 5 * DAY;
    let reply = || Reply {
        extensions: Some(vec![Extension {
            extn_id: INVALIDITY_DATE,
            critical: false,
            extn_value: OctetString::new(at(invalid_from).to_der().unwrap()).unwrap(),
        }]),
        ..Reply::revoked(&pki, NOW - DAY)
    };
    let key = pki.ca.key();
    assert_eq!(
        read(&pki, &reply().signed(key), Some(invalid_from - DAY)),
        Ok(Answer::Good)
    );
    assert!(matches!(
        read(&pki, &reply().signed(key), Some(invalid_from + DAY)),
        Ok(Answer::Revoked { .. })
    ));
    // Without an authentic signing time, revoked is revoked.
    assert!(matches!(
        read(&pki, &reply().signed(key), None),
        Ok(Answer::Revoked { .. })
    ));
    // A critical extension crigate does not know makes the answer unusable.
    let critical = Reply {
        extensions: Some(vec![Extension {
            extn_id: ObjectIdentifier::new_unwrap("1.2.3.4"),
            critical: true,
            extn_value: OctetString::new(vec![5, 0]).unwrap(),
        }]),
        ..Reply::good(&pki)
    };
    let error = read(&pki, &critical.signed(key), None).unwrap_err();
    assert!(error.contains("critical extension 1.2.3.4"), "{error}");
}

#[test]
fn only_the_issuer_or_a_responder_it_authorised_may_sign_an_answer() {
    let pki = pki();
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let error = read(&pki, &Reply::good(&pki).signed(&stranger), None).unwrap_err();
    assert!(error.contains("signed neither by"), "{error}");

    // A delegated responder (RFC 6960 4.2.2.2): issued by the CA, for OCSPSigning.
    let (key, cert) = responder(&pki.ca, true);
    let delegated = Reply {
        certs: Some(vec![cert]),
        ..Reply::good(&pki)
    };
    assert_eq!(read(&pki, &delegated.signed(&key), None), Ok(Answer::Good));

    // Issued by the CA but not for OCSP: any certificate the CA issued, a code-signing
    // leaf included, could otherwise vouch for itself.
    let (key, cert) = responder(&pki.ca, false);
    let no_eku = Reply {
        certs: Some(vec![cert]),
        ..Reply::good(&pki)
    };
    assert!(read(&pki, &no_eku.signed(&key), None).is_err());

    // For OCSP, but issued by another CA.
    let other = ca("another CA");
    let (key, cert) = responder(&other, true);
    let foreign = Reply {
        certs: Some(vec![cert]),
        ..Reply::good(&pki)
    };
    assert!(read(&pki, &foreign.signed(&key), None).is_err());
}

#[test]
fn an_answer_must_be_current_and_about_this_certificate() {
    let pki = pki();
    let key = pki.ca.key();
    let expired = Reply {
        next_update: Some(NOW - 1),
        ..Reply::good(&pki)
    };
    let error = read(&pki, &expired.signed(key), None).unwrap_err();
    assert!(error.contains("expired at its nextUpdate"), "{error}");

    let early = Reply {
        this_update: NOW + DAY,
        ..Reply::good(&pki)
    };
    let error = read(&pki, &early.signed(key), None).unwrap_err();
    assert!(error.contains("in the future"), "{error}");
    // A responder's clock a minute ahead is tolerated.
    let skewed = Reply {
        this_update: NOW + 60,
        ..Reply::good(&pki)
    };
    assert_eq!(read(&pki, &skewed.signed(key), None), Ok(Answer::Good));
    // No nextUpdate: newer information is always available, and this is current.
    let open = Reply {
        next_update: None,
        ..Reply::good(&pki)
    };
    assert_eq!(read(&pki, &open.signed(key), None), Ok(Answer::Good));

    let mut id = cert_id(&pki.leaf, &pki.ca_cert, ID_SHA1).unwrap();
    id.serial_number = SerialNumber::new(&[78]).unwrap();
    let other_serial = Reply {
        id,
        ..Reply::good(&pki)
    };
    let error = read(&pki, &other_serial.signed(key), None).unwrap_err();
    assert!(error.contains("does not cover this certificate"), "{error}");

    let mut id = cert_id(&pki.leaf, &pki.ca_cert, ID_SHA1).unwrap();
    id.issuer_key_hash = OctetString::new(vec![0; 20]).unwrap();
    let other_issuer = Reply {
        id,
        ..Reply::good(&pki)
    };
    assert!(read(&pki, &other_issuer.signed(key), None).is_err());

    // A responder may name the certificate with SHA-256 although asked with SHA-1.
    let sha256 = Reply {
        id: cert_id(&pki.leaf, &pki.ca_cert, ID_SHA256).unwrap(),
        ..Reply::good(&pki)
    };
    assert_eq!(read(&pki, &sha256.signed(key), None), Ok(Answer::Good));
}

#[test]
fn error_answers_and_malformed_bytes_are_reasons_not_panics() {
    let pki = pki();
    let try_later = OcspResponse {
        response_status: ResponseStatus::TryLater,
        response_bytes: None,
    }
    .to_der()
    .unwrap();
    let error = read(&pki, &try_later, None).unwrap_err();
    assert!(error.contains("TryLater"), "{error}");
    let error = read(&pki, b"<html>503</html>", None).unwrap_err();
    assert!(error.contains("not a DER OCSPResponse"), "{error}");
    let good = Reply::good(&pki).signed(pki.ca.key());
    for end in 0..good.len() {
        assert!(
            read(&pki, &good[..end], None).is_err(),
            "truncated at {end}"
        );
    }
    for index in 0..good.len() {
        let mut flipped = good.clone();
        flipped[index] ^= 0x01;
        // Any answer: a flip may land in the signature's unused or the ignored bits, but
        // a status other than good would need a new signature.
        if let Ok(answer) = read(&pki, &flipped, None) {
            assert_eq!(answer, Answer::Good, "flipped byte {index}");
        }
    }
}

#[test]
fn the_request_names_the_certificate_by_a_sha1_cert_id() {
    let pki = pki();
    let der = request(&pki.leaf, &pki.ca_cert).unwrap();
    // OCSPRequest ::= SEQUENCE { tbsRequest SEQUENCE { requestList SEQUENCE OF
    // Request SEQUENCE { reqCert CertID } } }
    let outer = tlv::single(&der, tlv::SEQUENCE).unwrap();
    let tbs = tlv::single(outer.value, tlv::SEQUENCE).unwrap();
    let list = tlv::single(tbs.value, tlv::SEQUENCE).unwrap();
    let one = tlv::single(list.value, tlv::SEQUENCE).unwrap();
    let id = CertId::from_der(tlv::single(one.value, tlv::SEQUENCE).unwrap().raw).unwrap();
    assert_eq!(id.hash_algorithm.oid, ID_SHA1);
    assert_eq!(id.serial_number.as_bytes(), [77]);
    assert_eq!(id.issuer_key_hash.as_bytes().len(), 20);
    assert!(covers(&id, &pki.leaf, &pki.ca_cert));
    assert_eq!(
        next_update(&Reply::good(&pki).signed(pki.ca.key())),
        Some(Moment::from_unix_seconds((NOW + DAY) as i64))
    );
}
