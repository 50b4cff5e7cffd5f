//! X.509 certificates and the chain rules of the Notary Project signature spec
//! ("Certificate Requirements"): the signing chain carried in an envelope, and the
//! timestamping chain built from an RFC 3161 token to a `tsa` trust store.
//!
//! Only Basic Constraints, Key Usage and Extended Key Usage are honoured; other
//! extensions are not evaluated (signature spec, "Other requirements" 2).
#![deny(clippy::indexing_slicing)]

use std::fmt::Write as _;

use const_oid::ObjectIdentifier;
use der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode, Tagged};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, BasicConstraints, CrlDistributionPoints, ExtendedKeyUsage,
    FreshestCrl, KeyUsage, KeyUsages,
};
use x509_cert::Certificate;

use super::crypto::{CryptoError, PublicKey, X509Algorithm};
use super::time::Moment;
use super::tlv::{self, DerReader};

/// Largest certificate accepted; real code-signing and TSA certificates are 1-2 KiB.
pub const MAX_CERT_BYTES: usize = 64 * 1024;
/// Most certificates in a chain, envelope or built (leaf, intermediates, root).
pub const MAX_CHAIN_LEN: usize = 10;

/// Most signature checks spent building one chain through certificates a signature
/// carries (Go's `crypto/x509`, which notation-go builds TSA chains with, stops at 100):
/// a token may carry hundreds of certificates that all name the issuer sought.
pub const MAX_SIGNATURE_CHECKS: usize = 100;

const EKU_ANY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
const EKU_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const EKU_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");
const EKU_EMAIL_PROTECTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4");
const EKU_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const EKU_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
/// `id-ad-ocsp` (RFC 5280 4.2.2.1).
const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");

/// The X.520 attribute types the trust policy's `x509.subject` may name, with the
/// short names RFC 4514 3 gives them. These are also the names x509-cert's `Display`
/// gives them (the shortest in `const_oid::db`, uppercased), which
/// [`Cert::subject`] relies on to format them without searching that database.
const SUBJECT_ATTRIBUTES: &[(ObjectIdentifier, &str)] = &[
    (ObjectIdentifier::new_unwrap("2.5.4.6"), "C"),
    (ObjectIdentifier::new_unwrap("2.5.4.8"), "ST"),
    (ObjectIdentifier::new_unwrap("2.5.4.7"), "L"),
    (ObjectIdentifier::new_unwrap("2.5.4.10"), "O"),
    (ObjectIdentifier::new_unwrap("2.5.4.11"), "OU"),
    (ObjectIdentifier::new_unwrap("2.5.4.3"), "CN"),
    (ObjectIdentifier::new_unwrap("2.5.4.5"), "SERIALNUMBER"),
    (ObjectIdentifier::new_unwrap("2.5.4.9"), "STREET"),
    (ObjectIdentifier::new_unwrap("2.5.4.17"), "POSTALCODE"),
];

/// The URIs among the full names of distribution points (RFC 5280 4.2.1.13), as Go's
/// `crypto/x509` collects them.
pub(crate) fn distribution_point_uris(points: &[DistributionPoint]) -> Vec<String> {
    points
        .iter()
        .filter_map(|point| match &point.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(names.iter().filter_map(uri)),
            _ => None,
        })
        .flatten()
        .collect()
}

fn uri(name: &GeneralName) -> Option<String> {
    match name {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
        _ => None,
    }
}

/// A certificate's revocation locations ([`Cert::revocation_info`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RevocationInfo {
    /// CRL distribution point URIs, in the certificate's order.
    pub crl: Vec<String>,
    /// OCSP responder URIs.
    pub ocsp: Vec<String>,
    /// Delta CRL locations of the FreshestCRL extension (RFC 5280 4.2.1.15).
    pub delta: Vec<String>,
}

impl RevocationInfo {
    /// Whether the certificate names any location: without one it "is considered
    /// valid (not revoked)" (trust policy spec, "Certificate Revocation Evaluation").
    pub(crate) fn is_empty(&self) -> bool {
        self.crl.is_empty() && self.ocsp.is_empty()
    }
}

/// A parsed certificate with the exact bytes it was read from, and its public key, read
/// once: a chain uses each key for up to three checks (envelope or issued certificate,
/// key length, self-signature).
#[derive(Clone, Debug)]
pub(crate) struct Cert {
    der: Vec<u8>,
    tbs: Vec<u8>,
    cert: Certificate,
    key: Result<PublicKey, CryptoError>,
}

/// Which chain a rule was applied to, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    CodeSigning,
    Timestamping,
}

/// Why notation-go cannot read a leaf's subject as a distinguished name
/// ([`Cert::subject_attributes`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("attribute {0} is not one of C, ST, L, O, OU, CN, SERIALNUMBER, STREET, POSTALCODE, which Go writes as {0}=#<hex> and notation refuses")]
    UnnamedAttribute(ObjectIdentifier),
    #[error("{0} is not a string")]
    NotAString(&'static str),
    #[error("{0} holds \"=#\", which notation refuses")]
    HexLike(&'static str),
}

/// Why a chain does not meet the Notary Project certificate requirements.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("certificate is not valid X.509 DER: {0}")]
    Malformed(String),
    #[error("certificate is {0} bytes, over the {MAX_CERT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("certificate chain is empty")]
    Empty,
    #[error("certificate chain has {0} certificates, over the limit of {MAX_CHAIN_LEN}")]
    TooLong(usize),
    #[error(
        "no chain found within {MAX_SIGNATURE_CHECKS} signature checks: too many certificates \
         claim to be an issuer"
    )]
    TooManyCandidates,
    #[error("certificate {subject:?} is not issued by {issuer:?}")]
    NotIssuedBy { subject: String, issuer: String },
    #[error("last certificate {0:?} of the chain is not a self-signed root")]
    RootNotSelfSigned(String),
    #[error("certificate {0:?} is self-signed but not the last of the chain")]
    SelfSignedInChain(String),
    #[error("certificate {subject:?} does not meet the {purpose:?} requirements: {reason}")]
    Requirement {
        subject: String,
        purpose: Purpose,
        reason: &'static str,
    },
    #[error("certificate {subject:?} key: {source}")]
    Key {
        subject: String,
        #[source]
        source: CryptoError,
    },
    #[error("certificate {subject:?} is not valid at {at} (valid {not_before} to {not_after})")]
    NotValidAt {
        subject: String,
        at: Moment,
        not_before: Moment,
        not_after: Moment,
    },
    #[error("no issuer of {0:?} in the token or the trust store")]
    NoIssuer(String),
}

// === impl Cert ===

impl Cert {
    /// Parses one DER certificate.
    ///
    /// # Errors
    ///
    /// Over [`MAX_CERT_BYTES`], or not a DER certificate.
    pub(crate) fn from_der(der: &[u8]) -> Result<Self, ChainError> {
        if der.len() > MAX_CERT_BYTES {
            return Err(ChainError::TooLarge(der.len()));
        }
        let outer =
            tlv::single(der, tlv::SEQUENCE).map_err(|e| ChainError::Malformed(e.to_string()))?;
        let tbs = DerReader::new(outer.value)
            .read(tlv::SEQUENCE)
            .map_err(|e| ChainError::Malformed(e.to_string()))?;
        let cert = Certificate::from_der(der).map_err(|e| ChainError::Malformed(e.to_string()))?;
        let key = PublicKey::from_spki(cert.tbs_certificate().subject_public_key_info());
        Ok(Self {
            der: der.to_vec(),
            tbs: tbs.raw.to_vec(),
            cert,
            key,
        })
    }

    /// A certificate already decoded (from a CMS `SignedData`), encoded once for its
    /// exact bytes rather than decoded again.
    ///
    /// # Errors
    ///
    /// Over [`MAX_CERT_BYTES`] once encoded, or not encodable.
    pub(crate) fn from_certificate(cert: Certificate) -> Result<Self, ChainError> {
        let der = cert
            .to_der()
            .map_err(|e| ChainError::Malformed(e.to_string()))?;
        if der.len() > MAX_CERT_BYTES {
            return Err(ChainError::TooLarge(der.len()));
        }
        let outer =
            tlv::single(&der, tlv::SEQUENCE).map_err(|e| ChainError::Malformed(e.to_string()))?;
        let tbs = DerReader::new(outer.value)
            .read(tlv::SEQUENCE)
            .map_err(|e| ChainError::Malformed(e.to_string()))?
            .raw
            .to_vec();
        let key = PublicKey::from_spki(cert.tbs_certificate().subject_public_key_info());
        Ok(Self {
            der,
            tbs,
            cert,
            key,
        })
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    pub(crate) fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The bits of the subject public key (the BIT STRING's contents), as OCSP hashes
    /// them (RFC 6960 4.1.1 `issuerKeyHash`).
    pub(crate) fn public_key_bits(&self) -> &[u8] {
        self.cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes()
    }

    /// The subject as an RFC 4514 string, most specific attribute first, exactly as
    /// x509-cert's `Display` writes it. That looks each attribute type up by a linear
    /// search of the whole OID database; the common types are written here directly.
    pub(crate) fn subject(&self) -> String {
        let mut out = String::new();
        // RFC 4514 2.1: the RDNs in reverse order, comma-separated; within one, "+".
        let rdns: Vec<_> = self.cert.tbs_certificate().subject().iter_rdn().collect();
        for (i, rdn) in rdns.iter().rev().enumerate() {
            for (j, atv) in rdn.iter().enumerate() {
                if i > 0 && j == 0 {
                    out.push(',');
                } else if j > 0 {
                    out.push('+');
                }
                write_attribute(&mut out, atv);
            }
        }
        out
    }

    /// The subject as notation-go reads it to match `x509.subject` identities
    /// (`verifyX509TrustedIdentities`: `pkix.ParseDistinguishedName(leafCert.Subject.String())`),
    /// by short name, in certificate order. Go's `pkix.Name` keeps one CN and one
    /// SERIALNUMBER, the last the subject gives (`FillFromRDNSequence`), and writes none
    /// when that is empty; its `String` writes any attribute outside
    /// [`SUBJECT_ATTRIBUTES`] as `OID=#hex`, and notation's parser refuses a name holding
    /// `=#`.
    ///
    /// # Errors
    ///
    /// A subject that notation cannot parse, which so matches no identity.
    pub(crate) fn subject_attributes(&self) -> Result<Vec<(&'static str, String)>, SubjectError> {
        let mut attributes: Vec<(&'static str, String)> = Vec::new();
        for atv in self.cert.tbs_certificate().subject().iter() {
            let Some((_, name)) = SUBJECT_ATTRIBUTES.iter().find(|(o, _)| *o == atv.oid) else {
                return Err(SubjectError::UnnamedAttribute(atv.oid));
            };
            // Go's `crypto/x509` parses only string values; it refuses the certificate
            // otherwise.
            let value = directory_string(&atv.value).ok_or(SubjectError::NotAString(name))?;
            // `String` does not escape '=', so such a value alone gives "=#".
            if value.contains("=#") {
                return Err(SubjectError::HexLike(name));
            }
            if matches!(*name, "CN" | "SERIALNUMBER") {
                attributes.retain(|(kind, _)| kind != name);
                if value.is_empty() {
                    continue;
                }
            }
            attributes.push((*name, value));
        }
        Ok(attributes)
    }

    pub(crate) fn not_before(&self) -> Moment {
        time_to_moment(self.cert.tbs_certificate().validity().not_before)
    }

    pub(crate) fn not_after(&self) -> Moment {
        time_to_moment(self.cert.tbs_certificate().validity().not_after)
    }

    /// Notary Project signing time rule: `notBefore <= t <= notAfter`.
    pub(crate) fn check_valid_at(&self, at: Moment) -> Result<(), ChainError> {
        if at < self.not_before() || at > self.not_after() {
            return Err(ChainError::NotValidAt {
                subject: self.subject(),
                at,
                not_before: self.not_before(),
                not_after: self.not_after(),
            });
        }
        Ok(())
    }

    pub(crate) fn public_key(&self) -> Result<&PublicKey, ChainError> {
        self.key.as_ref().map_err(|source| ChainError::Key {
            subject: self.subject(),
            source: source.clone(),
        })
    }

    /// Whether `issuer` issued this certificate: the names link and `issuer`'s key
    /// verifies the signature. Names alone are not enough (N13's leaf and root share a
    /// subject).
    /// Whether `issuer`'s subject is the name this certificate gives its issuer.
    fn names_as_issuer(&self, issuer: &Cert) -> bool {
        match (
            self.cert.tbs_certificate().issuer().to_der(),
            issuer.cert.tbs_certificate().subject().to_der(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    pub(crate) fn is_issued_by(&self, issuer: &Cert) -> bool {
        if !self.names_as_issuer(issuer) {
            return false;
        }
        let Ok(key) = issuer.public_key() else {
            return false;
        };
        let Ok(alg) = X509Algorithm::from_identifier(self.cert.signature_algorithm(), None) else {
            return false;
        };
        let Some(signature) = self.cert.signature().as_bytes() else {
            return false;
        };
        alg.verify(key, &self.tbs, signature).is_ok()
    }

    pub(crate) fn is_self_signed(&self) -> bool {
        self.is_issued_by(self)
    }

    /// Whether this is a self-signed CA certificate, as notation-core-go's `isSelfSigned`
    /// judges certificates inside a chain: with Go's `CheckSignatureFrom`, which refuses
    /// a signer that is a version 3 certificate without basicConstraints, has cA unset
    /// (RFC 5280 4.2.1.9), or has keyUsage without keyCertSign (4.2.1.3), before any
    /// signature arithmetic. A leaf (which the signing chain rules forbid to be a CA)
    /// therefore costs no signature check here, even when it shares its issuer's name.
    pub(crate) fn is_self_signed_ca(&self) -> bool {
        let tbs = self.cert.tbs_certificate();
        let may_sign = match tbs.get_extension::<BasicConstraints>() {
            Ok(Some((_, bc))) => bc.ca,
            Ok(None) => tbs.version() != x509_cert::Version::V3,
            Err(_) => false,
        } && match tbs.get_extension::<KeyUsage>() {
            Ok(Some((_, ku))) => ku.0.contains(KeyUsages::KeyCertSign),
            Ok(None) => true,
            Err(_) => false,
        };
        may_sign && self.is_self_signed()
    }

    /// Where the certificate's revocation status is published, read as Go's
    /// `crypto/x509` reads it (notation-core-go checks revocation from its
    /// `CRLDistributionPoints` and `OCSPServer`): the URIs among the full names of the CRL
    /// distribution points (RFC 5280 4.2.1.13), and the URIs of the authority
    /// information access entries whose method is `id-ad-ocsp` (4.2.2.1). An access entry
    /// that only names the issuer's certificate (`id-ad-caIssuers`) makes nothing
    /// checkable.
    ///
    /// # Errors
    ///
    /// Either extension is malformed (Go refuses such a certificate outright).
    pub(crate) fn revocation_info(&self) -> Result<RevocationInfo, &'static str> {
        let tbs = self.cert.tbs_certificate();
        let mut info = RevocationInfo::default();
        match tbs.get_extension::<CrlDistributionPoints>() {
            Ok(Some((_, points))) => info.crl = distribution_point_uris(&points.0),
            Ok(None) => {}
            Err(_) => return Err("its CRL distribution points extension is malformed"),
        }
        match tbs.get_extension::<FreshestCrl>() {
            Ok(Some((_, points))) => info.delta = distribution_point_uris(&points.0),
            Ok(None) => {}
            Err(_) => return Err("its FreshestCRL extension is malformed"),
        }
        match tbs.get_extension::<AuthorityInfoAccessSyntax>() {
            Ok(Some((_, access))) => info.ocsp.extend(
                access
                    .0
                    .iter()
                    .filter(|entry| entry.access_method == ID_AD_OCSP)
                    .filter_map(|entry| uri(&entry.access_location)),
            ),
            Ok(None) => {}
            Err(_) => return Err("its authority information access extension is malformed"),
        }
        Ok(info)
    }

    /// Whether basicConstraints marks this certificate as a CA.
    pub(crate) fn is_ca(&self) -> bool {
        matches!(
            self.cert.tbs_certificate().get_extension::<BasicConstraints>(),
            Ok(Some((_, bc))) if bc.ca
        )
    }

    pub(crate) fn issuer_der(&self) -> Result<Vec<u8>, der::Error> {
        self.cert.tbs_certificate().issuer().to_der()
    }

    pub(crate) fn serial(&self) -> &[u8] {
        self.cert.tbs_certificate().serial_number().as_bytes()
    }

    pub(crate) fn issuer_and_serial_match(&self, issuer_der: &[u8], serial: &[u8]) -> bool {
        let tbs = self.cert.tbs_certificate();
        tbs.issuer().to_der().is_ok_and(|i| i == issuer_der)
            && tbs.serial_number().as_bytes() == serial
    }

    pub(crate) fn subject_key_identifier(&self) -> Option<Vec<u8>> {
        self.cert
            .tbs_certificate()
            .get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
            .ok()
            .flatten()
            .map(|(_, ski)| ski.0.as_bytes().to_vec())
    }

    fn requirement(&self, purpose: Purpose, reason: &'static str) -> ChainError {
        ChainError::Requirement {
            subject: self.subject(),
            purpose,
            reason,
        }
    }

    fn basic_constraints(
        &self,
        purpose: Purpose,
    ) -> Result<Option<(bool, BasicConstraints)>, ChainError> {
        self.cert
            .tbs_certificate()
            .get_extension::<BasicConstraints>()
            .map_err(|_| self.requirement(purpose, "basicConstraints is malformed or repeated"))
    }

    fn key_usage(&self, purpose: Purpose) -> Result<Option<(bool, KeyUsage)>, ChainError> {
        self.cert
            .tbs_certificate()
            .get_extension::<KeyUsage>()
            .map_err(|_| self.requirement(purpose, "keyUsage is malformed or repeated"))
    }

    /// The extendedKeyUsage extension, if present: whether it is critical, and its
    /// purposes.
    fn extended_key_usage(
        &self,
        purpose: Purpose,
    ) -> Result<Option<(bool, Vec<ObjectIdentifier>)>, ChainError> {
        self.cert
            .tbs_certificate()
            .get_extension::<ExtendedKeyUsage>()
            .map(|found| found.map(|(critical, eku)| (critical, eku.0)))
            .map_err(|_| self.requirement(purpose, "extendedKeyUsage is malformed or repeated"))
    }

    /// Signature spec, "Leaf Certificates".
    fn check_leaf(&self, purpose: Purpose) -> Result<(), ChainError> {
        // "Basic Constraints: ... If present, the cA field MUST be set to false."
        if let Some((_, bc)) = self.basic_constraints(purpose)? {
            if bc.ca {
                return Err(self.requirement(purpose, "leaf basicConstraints has cA set"));
            }
        }
        match (purpose, self.key_usage(purpose)?) {
            // "Key Usage: The keyUsage extension MUST be present and MUST be marked
            // critical. Bit positions for digitalSignature MUST be set. The Bit positions
            // for keyEncipherment, dataEncipherment, keyAgreement, keyCertSign,
            // encipherOnly, decipherOnly and cRLSign MUST NOT be set."
            (Purpose::CodeSigning, None) => {
                return Err(self.requirement(purpose, "keyUsage is missing"))
            }
            (Purpose::CodeSigning, Some((false, _))) => {
                return Err(self.requirement(purpose, "keyUsage is not critical"));
            }
            (_, Some((_, ku))) => {
                if !ku.0.contains(KeyUsages::DigitalSignature) {
                    return Err(self.requirement(purpose, "keyUsage lacks digitalSignature"));
                }
                let forbidden = KeyUsages::KeyEncipherment
                    | KeyUsages::DataEncipherment
                    | KeyUsages::KeyAgreement
                    | KeyUsages::KeyCertSign
                    | KeyUsages::CRLSign
                    | KeyUsages::EncipherOnly
                    | KeyUsages::DecipherOnly;
                // The spec's leaf requirements hold for timestamping certificates too
                // (notation-core-go `validateTimestampingLeafKeyUsage`).
                if !(ku.0 & forbidden).is_empty() {
                    return Err(self
                        .requirement(purpose, "keyUsage sets a bit other than digitalSignature"));
                }
            }
            // notation-core-go `validateTimestampingKeyUsagePresent`: a TSA certificate
            // carries keyUsage too.
            (Purpose::Timestamping, None) => {
                return Err(self.requirement(purpose, "keyUsage is missing"))
            }
        }
        let eku = self.extended_key_usage(purpose)?;
        match purpose {
            // "For signing certificate: If present, the value MAY contain
            // id-kp-codeSigning and MUST NOT contain anyExtendedKeyUsage, serverAuth,
            // clientAuth, emailProtection and timeStamping." (notation-core-go also
            // refuses OCSPSigning.)
            Purpose::CodeSigning => {
                let forbidden = [
                    EKU_ANY,
                    EKU_SERVER_AUTH,
                    EKU_CLIENT_AUTH,
                    EKU_EMAIL_PROTECTION,
                    EKU_TIME_STAMPING,
                    EKU_OCSP_SIGNING,
                ];
                if eku
                    .map(|(_, purposes)| purposes)
                    .unwrap_or_default()
                    .iter()
                    .any(|oid| forbidden.contains(oid))
                {
                    return Err(self.requirement(
                        purpose,
                        "extendedKeyUsage names a non-code-signing purpose",
                    ));
                }
            }
            // RFC 3161 2.3: "The corresponding certificate MUST contain only one instance
            // of the extended key usage field extension as defined in [RFC2459] Section
            // 4.2.1.13 with KeyPurposeID having value: id-kp-timeStamping. This extension
            // MUST be critical." (notation-core-go
            // `validateTimestampingExtendedKeyUsage`: that purpose alone.)
            Purpose::Timestamping => {
                let (critical, purposes) =
                    eku.ok_or_else(|| self.requirement(purpose, "extendedKeyUsage is missing"))?;
                if purposes != [EKU_TIME_STAMPING] {
                    return Err(
                        self.requirement(purpose, "extendedKeyUsage is not timeStamping alone")
                    );
                }
                if !critical {
                    return Err(self.requirement(purpose, "extendedKeyUsage is not critical"));
                }
            }
        }
        // Signature spec, "Algorithm Selection": RSASSA-PSS with 2048, 3072 or 4096-bit
        // keys, ECDSA on P-256, P-384 or P-521 (every curve crigate reads), as
        // notation-core-go `validateSignatureAlgorithm` holds both leaves to.
        let key = self.public_key()?;
        if key.is_rsa() && ![2048, 3072, 4096].contains(&key.bits()) {
            return Err(self.requirement(
                purpose,
                "RSA key is not 2048, 3072 or 4096 bits, as the spec requires",
            ));
        }
        Ok(())
    }

    /// Signature spec, "Root and Intermediate CA Certificates". `below` is how many CA
    /// certificates sit between this one and the leaf.
    fn check_ca(&self, purpose: Purpose, below: usize) -> Result<(), ChainError> {
        // "The basicConstraints extension MUST be present and MUST be marked as
        // critical. The cA field MUST be set true. The pathLenConstraint field is
        // OPTIONAL. If present, it MUST be verified against the depth of the chain below
        // that CA certificate." Its criticality is not held, as notation-core-go
        // (`validateCABasicConstraints` in `x509/helper.go`) does not hold it, for either
        // chain: a CA whose chains the notation CLI verifies is not refused here.
        match self.basic_constraints(purpose)? {
            Some((_, bc)) if bc.ca => {
                if bc
                    .path_len_constraint
                    .is_some_and(|max| usize::from(max) < below)
                {
                    return Err(self.requirement(purpose, "pathLenConstraint is exceeded"));
                }
            }
            _ => return Err(self.requirement(purpose, "CA basicConstraints must have cA set")),
        }
        // "The keyUsage extension MUST be present and MUST be marked critical. Bit
        // positions for keyCertSign MUST be set." For a timestamping chain the spec asks
        // only that it be present ("SHOULD be marked critical": some TSAs' CAs do not),
        // as notation-core-go's `validateTimestampingCAKeyUsage` checks it
        // (`x509/timestamp_cert_validations.go`); a code-signing CA's must be critical
        // (`validateCodeSigningKeyUsagePresent`).
        match self.key_usage(purpose)? {
            Some((critical, ku)) if ku.0.contains(KeyUsages::KeyCertSign) => {
                if critical || purpose == Purpose::Timestamping {
                    Ok(())
                } else {
                    Err(self.requirement(purpose, "CA keyUsage is not critical"))
                }
            }
            _ => Err(self.requirement(purpose, "CA keyUsage must have keyCertSign")),
        }
    }
}

/// Validates the envelope's ordered chain (leaf first) against the Notary Project
/// certificate requirements, each certificate valid at `signing_time`.
///
/// # Errors
///
/// The first rule the chain breaks.
pub(crate) fn validate_signing_chain(
    chain: &[Cert],
    signing_time: Moment,
) -> Result<(), ChainError> {
    validate_ordered_chain(chain, Purpose::CodeSigning)?;
    // Signature spec, "Other requirements" 3: "The certificates in the certificate chain
    // MUST be valid at signing time."
    for cert in chain {
        cert.check_valid_at(signing_time)?;
    }
    Ok(())
}

fn validate_ordered_chain(chain: &[Cert], purpose: Purpose) -> Result<(), ChainError> {
    if chain.len() > MAX_CHAIN_LEN {
        return Err(ChainError::TooLong(chain.len()));
    }
    let (leaf, issuers) = chain.split_first().ok_or(ChainError::Empty)?;
    // Signature spec, "Other requirements" 1: "Valid certificate chain MUST contain a
    // root certificate. If the certificate chain contains only a root certificate then
    // the root certificate MUST meet Leaf Certificates requirements".
    if issuers.is_empty() {
        if !leaf.is_self_signed() {
            return Err(ChainError::RootNotSelfSigned(leaf.subject()));
        }
        return leaf.check_leaf(purpose);
    }
    leaf.check_leaf(purpose)?;
    // "the certificate containing the public key used to digitally sign the payload must
    // be the first certificate, followed by the intermediate and root certificates in
    // the correct order."
    for (index, pair) in chain.windows(2).enumerate() {
        let [cert, issuer] = pair else { continue };
        if cert.is_self_signed_ca() {
            return Err(ChainError::SelfSignedInChain(cert.subject()));
        }
        if !cert.is_issued_by(issuer) {
            return Err(ChainError::NotIssuedBy {
                subject: cert.subject(),
                issuer: issuer.subject(),
            });
        }
        issuer.check_ca(purpose, index)?;
    }
    let root = issuers.last().ok_or(ChainError::Empty)?;
    if !root.is_self_signed() {
        return Err(ChainError::RootNotSelfSigned(root.subject()));
    }
    Ok(())
}

/// Builds the TSA's chain from its certificate through the token's certificates to a
/// certificate of the `tsa` trust store, and validates it at `gen_time` (the token's
/// genTime, as notation-go verifies with `CurrentTime: genTime`).
///
/// # Errors
///
/// No path to a trusted certificate, or a certificate on the path breaks a rule.
pub(crate) fn build_timestamping_chain<'a>(
    tsa: &'a Cert,
    token_certs: &'a [Cert],
    anchors: &[&'a Cert],
    gen_time: Moment,
) -> Result<Vec<&'a Cert>, ChainError> {
    let mut chain = vec![tsa];
    let mut checks = 0;
    loop {
        let current = chain.last().ok_or(ChainError::Empty)?;
        if anchors.iter().any(|anchor| anchor.der == current.der) {
            break;
        }
        if chain.len() >= MAX_CHAIN_LEN {
            return Err(ChainError::TooLong(chain.len() + 1));
        }
        let mut next = None;
        for candidate in anchors.iter().copied().chain(token_certs.iter()) {
            if candidate.der == current.der || !current.names_as_issuer(candidate) {
                continue;
            }
            checks += 1;
            if checks > MAX_SIGNATURE_CHECKS {
                return Err(ChainError::TooManyCandidates);
            }
            if current.is_issued_by(candidate) {
                next = Some(candidate);
                break;
            }
        }
        match next {
            Some(issuer) => chain.push(issuer),
            None => return Err(ChainError::NoIssuer(current.subject())),
        }
    }
    let (leaf, issuers) = chain.split_first().ok_or(ChainError::Empty)?;
    leaf.check_leaf(Purpose::Timestamping)?;
    for (below, ca) in issuers.iter().enumerate() {
        ca.check_ca(Purpose::Timestamping, below)?;
    }
    for cert in &chain {
        cert.check_valid_at(gen_time)?;
    }
    Ok(chain)
}

/// Appends one attribute as x509-cert's `Display` for `AttributeTypeAndValue` writes it
/// (RFC 4514 2.3, 2.4): `NAME=value` with the special characters escaped, for the types
/// of [`SUBJECT_ATTRIBUTES`] with a string value; anything else through that `Display`.
fn write_attribute(out: &mut String, atv: &AttributeTypeAndValue) {
    let name = SUBJECT_ATTRIBUTES
        .iter()
        .find(|(oid, _)| *oid == atv.oid)
        .map(|(_, name)| *name);
    let value = match atv.value.tag() {
        der::Tag::PrintableString => PrintableStringRef::try_from(&atv.value)
            .ok()
            .map(|s| s.as_str()),
        der::Tag::Utf8String => Utf8StringRef::try_from(&atv.value).ok().map(|s| s.as_str()),
        der::Tag::Ia5String => Ia5StringRef::try_from(&atv.value).ok().map(|s| s.as_str()),
        _ => None,
    };
    let (Some(name), Some(value)) = (name, value) else {
        let _ = write!(out, "{atv}");
        return;
    };
    out.push_str(name);
    out.push('=');
    let mut chars = value.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || chars.peek().is_none() => out.push_str("\\ "),
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\x00'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\{:02x}", c as u8);
            }
            _ => out.push(c),
        }
    }
}

fn time_to_moment(time: x509_cert::time::Time) -> Moment {
    Moment::from_unix_duration(time.to_unix_duration())
}

/// The text of a DirectoryString, PrintableString, IA5String or NumericString attribute
/// value (the string types Go's `crypto/x509` reads in a name).
fn directory_string(value: &der::Any) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        der::Tag::Utf8String
        | der::Tag::PrintableString
        | der::Tag::Ia5String
        | der::Tag::NumericString => std::str::from_utf8(bytes).ok().map(str::to_owned),
        // TeletexString: treated as Latin-1, as most decoders do.
        der::Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        der::Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| {
                    u16::from_be_bytes([pair.first().copied()?, pair.get(1).copied()?]).into()
                })
                .collect::<Option<Vec<u16>>>()?;
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn store_cert(path: &str) -> Cert {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/vectors/notation/truststore/x509");
        let bytes = std::fs::read(dir.join(path)).unwrap();
        let der =
            crate::verify::notation::truststore::certificates_in_file(Path::new(path), &bytes)
                .unwrap();
        Cert::from_der(&der[0]).unwrap()
    }

    /// The N13 envelope's x5c: a leaf and a root CA with the same subject.
    fn n13_chain() -> Vec<Cert> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/vectors/notation/jws/notation-test-root/ca_valid_sig_env.json");
        let envelope: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        use base64::Engine as _;
        envelope["header"]["x5c"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let der = base64::engine::general_purpose::STANDARD
                    .decode(c.as_str().unwrap())
                    .unwrap();
                Cert::from_der(&der).unwrap()
            })
            .collect()
    }

    fn at(text: &str) -> Moment {
        Moment::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn a_leaf_and_root_with_one_subject_link_by_signature() {
        let chain = n13_chain();
        assert_eq!(chain[0].subject(), chain[1].subject());
        assert!(chain[0].is_issued_by(&chain[1]));
        assert!(!chain[0].is_self_signed());
        assert!(chain[1].is_self_signed());
        validate_signing_chain(&chain, at("2021-01-01T00:00:00Z")).unwrap();
    }

    #[test]
    fn chain_order_and_completeness_are_enforced() {
        let chain = n13_chain();
        let reversed = vec![chain[1].clone(), chain[0].clone()];
        assert!(validate_signing_chain(&reversed, at("2021-01-01T00:00:00Z")).is_err());
        // A leaf alone is not a chain ending at a root.
        assert!(matches!(
            validate_signing_chain(&chain[..1], at("2021-01-01T00:00:00Z")),
            Err(ChainError::RootNotSelfSigned(_))
        ));
        // A CA certificate used as a one-certificate chain fails the leaf rules.
        assert!(matches!(
            validate_signing_chain(&chain[1..], at("2021-01-01T00:00:00Z")),
            Err(ChainError::Requirement { .. })
        ));
        // An unrelated root after the leaf.
        let unrelated = vec![chain[0].clone(), store_cert("ca/e2e/e2e.crt")];
        assert!(matches!(
            validate_signing_chain(&unrelated, at("2023-01-01T00:00:00Z")),
            Err(ChainError::NotIssuedBy { .. })
        ));
        assert!(matches!(
            validate_signing_chain(&[], at("2023-01-01T00:00:00Z")),
            Err(ChainError::Empty)
        ));
    }

    #[test]
    fn validity_bounds_are_inclusive() {
        let cert = store_cert("ca/e2e-expired/expired_e2e.crt");
        let not_before = cert.not_before();
        let not_after = cert.not_after();
        let second = std::time::Duration::from_secs(1);
        assert!(cert.check_valid_at(not_before.minus(second)).is_err());
        assert!(cert.check_valid_at(not_before).is_ok());
        assert!(cert.check_valid_at(not_after).is_ok());
        assert!(matches!(
            cert.check_valid_at(not_after.plus(second)),
            Err(ChainError::NotValidAt { .. })
        ));
    }

    #[test]
    fn chain_length_limit_holds_at_its_edge() {
        let leaf = store_cert("ca/e2e/e2e.crt");
        let chain = |n: usize| vec![leaf.clone(); n];
        // Within the limit the chain is refused for its content, past it for its length.
        assert!(!matches!(
            validate_signing_chain(&chain(MAX_CHAIN_LEN - 1), at("2023-01-01T00:00:00Z")),
            Err(ChainError::TooLong(_))
        ));
        assert!(!matches!(
            validate_signing_chain(&chain(MAX_CHAIN_LEN), at("2023-01-01T00:00:00Z")),
            Err(ChainError::TooLong(_))
        ));
        assert!(matches!(
            validate_signing_chain(&chain(MAX_CHAIN_LEN + 1), at("2023-01-01T00:00:00Z")),
            Err(ChainError::TooLong(_))
        ));
    }

    #[test]
    fn certificate_size_limit_holds_at_its_edge() {
        for len in [MAX_CERT_BYTES - 1, MAX_CERT_BYTES] {
            assert!(
                matches!(
                    Cert::from_der(&vec![0u8; len]),
                    Err(ChainError::Malformed(_))
                ),
                "{len}"
            );
        }
        assert!(matches!(
            Cert::from_der(&vec![0u8; MAX_CERT_BYTES + 1]),
            Err(ChainError::TooLarge(_))
        ));
    }

    #[test]
    fn subject_attributes_use_short_names() {
        let cert = store_cert("ca/e2e/e2e.crt");
        let attributes = cert.subject_attributes().unwrap();
        assert!(attributes.contains(&("CN", "e2e".to_owned())));
        assert!(attributes.contains(&("C", "US".to_owned())));
        assert_eq!(attributes.len(), 5);
    }

    #[test]
    fn a_tsa_root_is_not_a_code_signing_leaf() {
        let root = store_cert("tsa/globalsign-r6/globalsignRoot.cer");
        assert!(matches!(
            validate_signing_chain(std::slice::from_ref(&root), at("2020-01-01T00:00:00Z")),
            Err(ChainError::Requirement { .. })
        ));
    }

    #[test]
    fn subject_is_written_as_x509_cert_displays_it() {
        use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};
        let mut certs = n13_chain();
        certs.push(store_cert("ca/e2e/e2e.crt"));
        certs.push(store_cert("tsa/globalsign-r6/globalsignRoot.cer"));
        let oid = |arcs: &[u64]| DnType::CustomDnType(arcs.to_vec());
        let names: Vec<Vec<(DnType, DnValue)>> = vec![
            vec![
                (DnType::CountryName, "US".into()),
                (DnType::StateOrProvinceName, "WA".into()),
                (DnType::LocalityName, "Seattle".into()),
                (DnType::OrganizationName, "Example, Inc.".into()),
                (DnType::OrganizationalUnitName, "Build+Release".into()),
                (DnType::CommonName, "#lead <a>;\"b\"\\c trail ".into()),
            ],
            vec![
                (oid(&[2, 5, 4, 5]), "12345".into()),
                (oid(&[2, 5, 4, 9]), " 1 Main St".into()),
                (oid(&[2, 5, 4, 17]), "98101".into()),
                (DnType::CommonName, "ctl\u{1}\u{7f}".into()),
            ],
            // Types outside the table (email, domainComponent, an unknown OID) and a
            // string type it does not write itself.
            vec![
                (
                    oid(&[1, 2, 840, 113549, 1, 9, 1]),
                    DnValue::Ia5String("a@example.com".try_into().unwrap()),
                ),
                (oid(&[0, 9, 2342, 19200300, 100, 1, 25]), "example".into()),
                (oid(&[1, 2, 3, 4]), "x".into()),
                (
                    DnType::CommonName,
                    DnValue::BmpString("bmp".try_into().unwrap()),
                ),
                (
                    DnType::OrganizationName,
                    DnValue::PrintableString("Printable".try_into().unwrap()),
                ),
            ],
        ];
        for attributes in names {
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            for (kind, value) in attributes {
                params.distinguished_name.push(kind, value);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            certs.push(Cert::from_der(cert.der()).unwrap());
        }
        for cert in &certs {
            let expected = cert.cert.tbs_certificate().subject().to_string();
            assert_eq!(cert.subject(), expected);
        }
    }

    #[test]
    fn a_self_signed_ca_inside_a_chain_is_refused() {
        let chain = n13_chain();
        let root_twice = vec![chain[0].clone(), chain[1].clone(), chain[1].clone()];
        assert!(matches!(
            validate_signing_chain(&root_twice, at("2021-01-01T00:00:00Z")),
            Err(ChainError::SelfSignedInChain(_))
        ));
        // The N13 leaf shares its issuer's name but is no CA: not self-signed, and no
        // signature check is spent finding that out.
        assert!(!chain[0].is_self_signed_ca());
        assert!(chain[1].is_self_signed_ca());
    }

    #[test]
    fn a_timestamp_chain_is_sought_within_a_bounded_number_of_signature_checks() {
        use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
        let named = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params
        };
        let root_key = KeyPair::generate().unwrap();
        let root_params = named("TSA Root");
        let root = Cert::from_der(root_params.self_signed(&root_key).unwrap().der()).unwrap();
        let issuer = Issuer::new(root_params, root_key);
        let tsa_key = KeyPair::generate().unwrap();
        let tsa = named("TSA").signed_by(&tsa_key, &issuer).unwrap();
        let tsa = Cert::from_der(tsa.der()).unwrap();
        // Certificates that name themselves as the TSA's issuer, none of which issued it.
        let decoys = |count: usize| -> Vec<Cert> {
            (0..count)
                .map(|_| {
                    let key = KeyPair::generate().unwrap();
                    Cert::from_der(named("TSA Root").self_signed(&key).unwrap().der()).unwrap()
                })
                .collect()
        };
        let now = Moment::from_system_time(std::time::SystemTime::now());
        let (few, many) = (
            decoys(MAX_SIGNATURE_CHECKS - 1),
            decoys(MAX_SIGNATURE_CHECKS + 1),
        );
        // Within the bound, the search goes through them all and ends as it must.
        assert!(matches!(
            build_timestamping_chain(&tsa, &few, &[], now),
            Err(ChainError::NoIssuer(_))
        ));
        // Past it, the search stops.
        assert_eq!(
            build_timestamping_chain(&tsa, &many, &[], now).unwrap_err(),
            ChainError::TooManyCandidates
        );
        // The issuer among the anchors is checked first, whatever the token carries: the
        // path is found, and its certificates go on to the rules (which this TSA
        // certificate, with no key usage, then fails).
        assert!(matches!(
            build_timestamping_chain(&tsa, &many, &[&root], now),
            Err(ChainError::Requirement {
                reason: "keyUsage is missing",
                ..
            })
        ));
    }

    #[test]
    fn token_certificates_keep_their_bytes() {
        for cert in [store_cert("ca/e2e/e2e.crt"), n13_chain().remove(0)] {
            let again = Cert::from_certificate(cert.cert.clone()).unwrap();
            assert_eq!(again.der(), cert.der());
            assert_eq!(again.tbs, cert.tbs);
        }
    }

    /// A CA's basicConstraints and keyUsage as notation-core-go holds them: cA set and
    /// keyCertSign, criticality required only of a code-signing CA's keyUsage.
    #[test]
    fn a_ca_is_held_to_notations_rules_on_critical_extensions() {
        use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair};
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // Written by hand, since rcgen marks both critical. keyUsage: keyCertSign and
        // cRLSign (RFC 5280 4.2.1.3); basicConstraints: cA true, or absent (false).
        let extension = |oid: &[u64], der: &[u8], critical: bool| {
            let mut ext = CustomExtension::from_oid_content(oid, der.to_vec());
            ext.set_criticality(critical);
            ext
        };
        let ca = |bc_critical: bool, ca: bool, ku_critical: bool, usage: u8| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, "ca");
            let bc: &[u8] = if ca {
                &[0x30, 3, 1, 1, 0xff]
            } else {
                &[0x30, 0]
            };
            params.custom_extensions = vec![
                extension(&[2, 5, 29, 19], bc, bc_critical),
                extension(&[2, 5, 29, 15], &[3, 2, 1, usage], ku_critical),
            ];
            Cert::from_der(params.self_signed(&key).unwrap().der()).unwrap()
        };
        const CERT_AND_CRL_SIGN: u8 = 0x06;
        const DIGITAL_SIGNATURE: u8 = 0x80;
        for purpose in [Purpose::CodeSigning, Purpose::Timestamping] {
            assert!(ca(true, true, true, CERT_AND_CRL_SIGN)
                .check_ca(purpose, 0)
                .is_ok());
            // A non-critical basicConstraints, as notation accepts it.
            assert!(ca(false, true, true, CERT_AND_CRL_SIGN)
                .check_ca(purpose, 0)
                .is_ok());
            for (cert, why) in [
                (ca(true, false, true, CERT_AND_CRL_SIGN), "cA set"),
                (ca(true, true, true, DIGITAL_SIGNATURE), "keyCertSign"),
            ] {
                let error = cert.check_ca(purpose, 0).unwrap_err();
                assert!(error.to_string().contains(why), "{purpose:?}: {error}");
            }
        }
        // A non-critical keyUsage: enough for a TSA's CA, not for a code-signing one.
        let relaxed = ca(true, true, false, CERT_AND_CRL_SIGN);
        assert!(relaxed.check_ca(Purpose::Timestamping, 0).is_ok());
        let error = relaxed.check_ca(Purpose::CodeSigning, 0).unwrap_err();
        assert!(error.to_string().contains("not critical"), "{error}");
    }

    #[test]
    fn a_tsa_leaf_has_digital_signature_alone_a_critical_timestamping_purpose_and_a_listed_key_size(
    ) {
        // RFC 3161 2.3 and notation-core-go's timestamping leaf rules.
        use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // The extension written by hand: rcgen marks extendedKeyUsage non-critical.
        const TIME_STAMPING: [u8; 10] = [0x06, 8, 0x2b, 6, 1, 5, 5, 7, 3, 8];
        const OCSP_SIGNING: [u8; 10] = [0x06, 8, 0x2b, 6, 1, 5, 5, 7, 3, 9];
        let eku = |critical: bool, purposes: &[[u8; 10]]| {
            let mut der = vec![0x30, (purposes.len() * 10) as u8];
            der.extend(purposes.iter().flatten());
            let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 37], der);
            ext.set_criticality(critical);
            ext
        };
        let leaf_with = |key: &KeyPair, usages: &[KeyUsagePurpose], eku: CustomExtension| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, "tsa");
            params.key_usages = usages.to_vec();
            params.custom_extensions = vec![eku];
            Cert::from_der(params.self_signed(key).unwrap().der()).unwrap()
        };
        let leaf = |key_usage: bool, eku: CustomExtension| {
            let usages: &[KeyUsagePurpose] = if key_usage {
                &[KeyUsagePurpose::DigitalSignature]
            } else {
                &[]
            };
            leaf_with(&key, usages, eku)
        };
        assert!(leaf(true, eku(true, &[TIME_STAMPING]))
            .check_leaf(Purpose::Timestamping)
            .is_ok());
        // An RSA key of a size the spec does not list (8192 bits), then one it does.
        let rsa = |size| {
            use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
            let key = aws_lc_rs::rsa::KeyPair::generate(size).unwrap();
            let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&key).unwrap();
            KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_ref().into(), &rcgen::PKCS_RSA_SHA256)
                .unwrap()
        };
        let digital_signature = [KeyUsagePurpose::DigitalSignature];
        let rsa_8192 = leaf_with(
            &rsa(aws_lc_rs::rsa::KeySize::Rsa8192),
            &digital_signature,
            eku(true, &[TIME_STAMPING]),
        );
        let rsa_2048 = leaf_with(
            &rsa(aws_lc_rs::rsa::KeySize::Rsa2048),
            &digital_signature,
            eku(true, &[TIME_STAMPING]),
        );
        assert!(rsa_2048.check_leaf(Purpose::Timestamping).is_ok());
        for (cert, why) in [
            (rsa_8192, "RSA key is not 2048, 3072 or 4096 bits"),
            // The spec's leaf key usage rule: digitalSignature alone.
            (
                leaf_with(
                    &key,
                    &[
                        KeyUsagePurpose::DigitalSignature,
                        KeyUsagePurpose::KeyEncipherment,
                    ],
                    eku(true, &[TIME_STAMPING]),
                ),
                "keyUsage sets a bit other than digitalSignature",
            ),
            (
                leaf_with(
                    &key,
                    &[KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign],
                    eku(true, &[TIME_STAMPING]),
                ),
                "keyUsage sets a bit other than digitalSignature",
            ),
            (
                leaf(false, eku(true, &[TIME_STAMPING])),
                "keyUsage is missing",
            ),
            (leaf(true, eku(false, &[TIME_STAMPING])), "not critical"),
            (
                leaf(true, eku(true, &[TIME_STAMPING, OCSP_SIGNING])),
                "not timeStamping alone",
            ),
        ] {
            let error = cert.check_leaf(Purpose::Timestamping).unwrap_err();
            assert!(error.to_string().contains(why), "{error}");
        }
    }
}
