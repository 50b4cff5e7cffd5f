//! X.509 for keyless signatures: the Fulcio leaf, its path to a configured root (RFC 5280
//! §6.1, reduced to what Fulcio issues), validity, code-signing purpose, and the signer
//! identity Fulcio records (SAN and the OIDC issuer extensions of Fulcio
//! `docs/oid-info.md`).
#![deny(clippy::indexing_slicing)]

use std::time::SystemTime;

use x509_cert::der::asn1::{ObjectIdentifier, OctetString, Utf8StringRef};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName,
    SubjectKeyIdentifier,
};
use x509_cert::Certificate;

use super::key::{KeyError, PublicKey};
use super::policy::{CosignPolicy, FulcioCa};
use crate::verify::Rejection;

/// Most certificates read from one PEM value (leaf, chain annotation, a roots file).
pub const MAX_PEM_CERTIFICATES: usize = 16;
/// Longest path from leaf to root, both counted. Fulcio's is 3.
pub const MAX_CHAIN_DEPTH: usize = 5;
/// Most issuer candidates tried while building one path, so that a chain annotation
/// full of look-alike certificates cannot make path building expensive.
pub const MAX_PATH_CANDIDATES: usize = 64;

/// Fulcio `docs/oid-info.md`: 1.3.6.1.4.1.57264.1.1, issuer as raw bytes (deprecated).
pub const OID_ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// Fulcio `docs/oid-info.md`: 1.3.6.1.4.1.57264.1.8, issuer as a DER UTF8String.
pub const OID_ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// Fulcio's otherName SAN for a username (Fulcio `docs/oid-info.md`, 1.3.6.1.4.1.57264.1.7).
pub const OID_OTHERNAME_USERNAME: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.7");
/// RFC 6962 §3.3: the embedded SCT list extension.
pub const OID_SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
/// RFC 5280 §4.2.1.12: id-kp-codeSigning.
const OID_CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// RFC 5280 §4.2.1.12: anyExtendedKeyUsage.
const OID_ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// Extensions whose criticality we understand; any other critical extension rejects
/// (RFC 5280 §4.2: "A certificate-using system MUST reject the certificate if it
/// encounters a critical extension it does not recognize").
const KNOWN_CRITICAL: [ObjectIdentifier; 4] = [
    ObjectIdentifier::new_unwrap("2.5.29.15"), // keyUsage
    ObjectIdentifier::new_unwrap("2.5.29.17"), // subjectAltName
    ObjectIdentifier::new_unwrap("2.5.29.19"), // basicConstraints
    ObjectIdentifier::new_unwrap("2.5.29.37"), // extKeyUsage
];

/// A parsed certificate with the encodings the checks need.
#[derive(Clone, Debug)]
pub struct ParsedCertificate {
    cert: Certificate,
    der: Vec<u8>,
    tbs_der: Vec<u8>,
    key: Result<PublicKey, String>,
    /// The authorityKeyIdentifier's keyIdentifier (RFC 5280 §4.2.1.1), if present and
    /// readable; used only to order issuer candidates.
    authority_key_id: Option<Box<[u8]>>,
    /// The subjectKeyIdentifier (RFC 5280 §4.2.1.2), likewise.
    subject_key_id: Option<Box<[u8]>>,
}

/// Who a leaf certificate names: the SAN values an identity may match, every one for a
/// legacy layer ([`leaf_identity`]) and at most one for a bundle ([`bundle_identity`]),
/// and the OIDC issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafIdentity {
    pub subject_alternative_names: Vec<String>,
    pub issuer: Option<String>,
}

/// Why a PEM value does not hold certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("not PEM")]
    Pem(#[source] pem::PemError),
    #[error("PEM block {0:?} is not a CERTIFICATE")]
    Label(String),
    #[error("no certificate found")]
    Empty,
    #[error("more than {MAX_PEM_CERTIFICATES} certificates")]
    TooMany,
    #[error("certificate is not valid DER")]
    Der(#[source] x509_cert::der::Error),
    #[error("certificate key")]
    Key(#[source] KeyError),
}

// === impl ParsedCertificate ===

impl ParsedCertificate {
    /// Parses one DER certificate.
    ///
    /// # Errors
    ///
    /// Not DER, or not a certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        let cert = Certificate::from_der(der).map_err(CertificateError::Der)?;
        let tbs_der = cert
            .tbs_certificate()
            .to_der()
            .map_err(CertificateError::Der)?;
        let key = PublicKey::from_spki(cert.tbs_certificate().subject_public_key_info())
            .map_err(|e| e.to_string());
        let tbs = cert.tbs_certificate();
        let authority_key_id = match tbs.get_extension::<AuthorityKeyIdentifier>() {
            Ok(Some((_, aki))) => aki.key_identifier.map(|id| id.into_bytes()),
            _ => None,
        };
        let subject_key_id = match tbs.get_extension::<SubjectKeyIdentifier>() {
            Ok(Some((_, ski))) => Some(ski.0.into_bytes()),
            _ => None,
        };
        Ok(Self {
            cert,
            der: der.to_vec(),
            tbs_der,
            key,
            authority_key_id,
            subject_key_id,
        })
    }

    /// Parses every `CERTIFICATE` block of a PEM value, at most [`MAX_PEM_CERTIFICATES`].
    ///
    /// # Errors
    ///
    /// Bad PEM, another label, no block, too many, or a certificate that does not parse.
    pub fn from_pem_many(pem_bytes: &[u8]) -> Result<Vec<Self>, CertificateError> {
        let blocks = pem::parse_many(pem_bytes).map_err(CertificateError::Pem)?;
        if blocks.is_empty() {
            return Err(CertificateError::Empty);
        }
        if blocks.len() > MAX_PEM_CERTIFICATES {
            return Err(CertificateError::TooMany);
        }
        blocks
            .iter()
            .map(|block| {
                if block.tag() == "CERTIFICATE" {
                    Self::from_der(block.contents())
                } else {
                    Err(CertificateError::Label(block.tag().to_owned()))
                }
            })
            .collect()
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    pub(crate) fn tbs_der(&self) -> &[u8] {
        &self.tbs_der
    }

    pub(crate) fn inner(&self) -> &Certificate {
        &self.cert
    }

    /// The certificate's public key.
    ///
    /// # Errors
    ///
    /// `UnsupportedAlgorithm` for a key kind we cannot verify with.
    pub fn public_key(&self) -> Result<&PublicKey, Rejection> {
        self.key
            .as_ref()
            .map_err(|e| Rejection::UnsupportedAlgorithm(format!("certificate key: {e}")))
    }

    /// The DER `SubjectPublicKeyInfo` (for RFC 6962 §3.2 `issuer_key_hash`).
    pub(crate) fn spki_der(&self) -> Result<Vec<u8>, Rejection> {
        self.cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| Rejection::Malformed(format!("certificate key encoding: {e}")))
    }

    fn subject_der(&self) -> Option<Vec<u8>> {
        self.cert.tbs_certificate().subject().to_der().ok()
    }

    fn issuer_der(&self) -> Option<Vec<u8>> {
        self.cert.tbs_certificate().issuer().to_der().ok()
    }

    pub(crate) fn is_self_issued(&self) -> bool {
        self.subject_der().is_some() && self.subject_der() == self.issuer_der()
    }

    /// Whether `issuer` may have issued this certificate: names chain (RFC 5280 §6.1.3
    /// (a)(4)), `issuer` is a CA (§4.2.1.9) allowed to sign certificates (§4.2.1.3), and
    /// its key verifies this certificate's signature (§6.1.3 (a)(1)).
    fn is_issued_by(&self, issuer: &ParsedCertificate) -> bool {
        if self.issuer_der().is_none() || self.issuer_der() != issuer.subject_der() {
            return false;
        }
        if !issuer.is_ca() {
            return false;
        }
        let Ok(key) = issuer.public_key() else {
            return false;
        };
        let Some(signature) = self.cert.signature().as_bytes() else {
            return false;
        };
        key.verify_x509(
            self.cert.signature_algorithm().oid,
            &self.tbs_der,
            signature,
        )
        .is_ok()
    }

    /// The order in which to try `issuer` as this certificate's issuer: 0 when its
    /// subjectKeyIdentifier is this certificate's authorityKeyIdentifier, 1 when either
    /// is absent, 2 when they differ. RFC 5280 §4.2.1.1 has the AKI identify the key
    /// that signed, "to facilitate chain building"; RFC 4158 §3.5.12 sorts on it. A
    /// mismatch is tried last, not skipped (as Go's `x509.CertPool` does), so ordering
    /// changes the cost of path building, never its outcome.
    pub(super) fn issuer_rank(&self, issuer: &ParsedCertificate) -> u8 {
        match (&self.authority_key_id, &issuer.subject_key_id) {
            (Some(aki), Some(ski)) if aki == ski => 0,
            (Some(_), Some(_)) => 2,
            _ => 1,
        }
    }

    fn is_ca(&self) -> bool {
        let tbs = self.cert.tbs_certificate();
        let ca = matches!(tbs.get_extension::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca);
        // RFC 5280 §4.2.1.3: keyCertSign must be set when keyUsage is present.
        let may_sign = match tbs.get_extension::<KeyUsage>() {
            Ok(Some((_, ku))) => ku.key_cert_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        ca && may_sign
    }

    fn path_len_constraint(&self) -> Option<u8> {
        match self
            .cert
            .tbs_certificate()
            .get_extension::<BasicConstraints>()
        {
            Ok(Some((_, bc))) => bc.path_len_constraint,
            _ => None,
        }
    }

    fn unknown_critical_extension(&self) -> Option<ObjectIdentifier> {
        self.cert
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| e.critical && !KNOWN_CRITICAL.contains(&e.extn_id))
            .map(|e| e.extn_id)
    }

    pub(crate) fn validity(&self) -> (SystemTime, SystemTime) {
        let v = self.cert.tbs_certificate().validity();
        (v.not_before.to_system_time(), v.not_after.to_system_time())
    }

    /// The last instant the certificate is valid.
    pub(crate) fn not_after(&self) -> SystemTime {
        self.validity().1
    }

    fn extension_value(&self, oid: ObjectIdentifier) -> Option<&[u8]> {
        self.cert
            .tbs_certificate()
            .extensions()?
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// The embedded SCT list's TLS bytes (RFC 6962 §3.3: an OCTET STRING inside the
    /// extension value).
    pub(crate) fn sct_list(&self) -> Result<Option<Vec<u8>>, Rejection> {
        let Some(value) = self.extension_value(OID_SCT_LIST) else {
            return Ok(None);
        };
        let inner = OctetString::from_der(value)
            .map_err(|e| Rejection::Malformed(format!("SCT list extension: {e}")))?;
        Ok(Some(inner.as_bytes().to_vec()))
    }
}

/// Builds the path from `leaf` to the root of one CA of `cas`, through that CA's own
/// intermediates and `configured` (intermediates configured apart from any CA,
/// [`CosignPolicy::fulcio_intermediates`]).
/// Each CA is tried as a unit, as sigstore-go `pkg/root/certificate_authority.go`
/// (`FulcioCertificateAuthority.Verify`) pools only the CA's own intermediates under
/// its own root: one CA's intermediate is no candidate under another CA's root, though
/// that root signed it. A self-issued intermediate is never an anchor. Returns the path,
/// leaf first, root last.
///
/// `validFor` is not looked at here: [`trusted_chain`] keeps the CAs whose window holds
/// the time the signature was made, and is what verification calls.
///
/// # Errors
///
/// `UntrustedRoot` when no path of at most [`MAX_CHAIN_DEPTH`] certificates reaches a
/// root of `cas`, or a certificate on it has an unknown critical extension.
pub fn build_chain<'a>(
    leaf: &'a ParsedCertificate,
    configured: &[&'a ParsedCertificate],
    cas: &'a [FulcioCa],
) -> Result<Vec<&'a ParsedCertificate>, Rejection> {
    match chain_through(leaf, configured, &[], cas.iter()) {
        Some(path) => checked(path),
        None => Err(Rejection::UntrustedRoot(
            "certificate does not chain to a configured Fulcio root".to_owned(),
        )),
    }
}

/// The path of a keyless `leaf` that signed at `at` (the verified integrated time, or
/// RFC 3161 time): [`build_chain`] through the CAs of `policy` whose `validFor` holds
/// `at` (sigstore-go `FulcioCertificateAuthority.Verify`: the observer timestamp must
/// lie in the CA's validity period), with the policy's configured intermediates.
///
/// # Errors
///
/// `UntrustedRoot` when no CA is valid at `at`, or none of those issued the leaf.
pub fn trusted_chain<'a>(
    leaf: &'a ParsedCertificate,
    supplied: &[&'a ParsedCertificate],
    policy: &'a CosignPolicy,
    at: SystemTime,
) -> Result<Vec<&'a ParsedCertificate>, Rejection> {
    let configured: Vec<&ParsedCertificate> = policy.fulcio_intermediates.iter().collect();
    let mut in_window = policy
        .fulcio_roots
        .iter()
        .filter(|ca| ca.valid_for.contains(at))
        .peekable();
    if in_window.peek().is_none() {
        return Err(Rejection::UntrustedRoot(format!(
            "no configured Fulcio CA is valid at {}, when the signature was made \
             (trusted_root.json validFor)",
            fmt_time(at)
        )));
    }
    match chain_through(leaf, &configured, supplied, in_window) {
        Some(path) => checked(path),
        None => Err(Rejection::UntrustedRoot(format!(
            "certificate does not chain to a configured Fulcio CA valid at {}",
            fmt_time(at)
        ))),
    }
}

/// The first path from `leaf` to a root of `cas`, each CA searched with its own
/// intermediates and `configured` (and `supplied`, the signature's own, for a CA that
/// takes them: [`FulcioCa::supplied_intermediates`]), within one budget of
/// [`MAX_PATH_CANDIDATES`].
fn chain_through<'a>(
    leaf: &'a ParsedCertificate,
    configured: &[&'a ParsedCertificate],
    supplied: &[&'a ParsedCertificate],
    cas: impl Iterator<Item = &'a FulcioCa>,
) -> Option<Vec<&'a ParsedCertificate>> {
    // Likely CAs first: one holding the leaf's issuer by key identifier. A re-keyed
    // Fulcio root or intermediate of the same name would otherwise cost signature
    // checks that cannot succeed.
    let mut cas: Vec<&FulcioCa> = cas.collect();
    cas.sort_by_key(|ca| {
        std::iter::once(&ca.certificate)
            .chain(&ca.intermediates)
            .map(|issuer| leaf.issuer_rank(issuer))
            .min()
    });
    let mut budget = MAX_PATH_CANDIDATES;
    for ca in cas {
        let supplied = if ca.supplied_intermediates {
            supplied
        } else {
            &[]
        };
        let candidates: Vec<&ParsedCertificate> = ca
            .intermediates
            .iter()
            .chain(configured.iter().copied())
            .chain(supplied.iter().copied())
            .collect();
        let mut path = vec![leaf];
        if extend_path(&mut path, &candidates, &ca.certificate, &mut budget) {
            return Some(path);
        }
        if budget == 0 {
            break;
        }
    }
    None
}

/// The path, unless a certificate on it has a critical extension we do not know.
fn checked(path: Vec<&ParsedCertificate>) -> Result<Vec<&ParsedCertificate>, Rejection> {
    if let Some(oid) = path.iter().find_map(|c| c.unknown_critical_extension()) {
        return Err(Rejection::UntrustedRoot(format!(
            "certificate has unknown critical extension {oid}"
        )));
    }
    // cosign verifies a Fulcio chain with Go's `x509.Certificate.Verify` and
    // `KeyUsages: [CodeSigning]`, which holds every certificate of the chain that names
    // extended key usages to code signing (or anyExtendedKeyUsage); the leaf is held to
    // code signing itself by [`check_code_signing`].
    for ca in path.iter().skip(1) {
        if !allows_code_signing(ca) {
            return Err(Rejection::UntrustedRoot(format!(
                "CA certificate {} does not allow code signing (extendedKeyUsage)",
                ca.inner().tbs_certificate().subject()
            )));
        }
    }
    Ok(path)
}

/// Depth-first search for `root` above the last certificate of `path`.
fn extend_path<'a>(
    path: &mut Vec<&'a ParsedCertificate>,
    intermediates: &[&'a ParsedCertificate],
    root: &'a ParsedCertificate,
    budget: &mut usize,
) -> bool {
    let Some(&current) = path.last() else {
        return false;
    };
    // Intermediates below position k in the path (leaf excluded), for pathLenConstraint.
    let fits_path_len = |issuer: &ParsedCertificate, below: usize| {
        // RFC 5280 §4.2.1.9: pathLenConstraint counts non-self-issued intermediates below.
        issuer
            .path_len_constraint()
            .is_none_or(|max| below <= usize::from(max))
    };
    let below = path.len().saturating_sub(1);
    if !spend(budget) {
        return false;
    }
    if current.is_issued_by(root) && fits_path_len(root, below) {
        path.push(root);
        return true;
    }
    if path.len() >= MAX_CHAIN_DEPTH.saturating_sub(1) {
        return false;
    }
    let mut candidates = intermediates.to_vec();
    candidates.sort_by_key(|candidate| current.issuer_rank(candidate));
    for candidate in candidates {
        let already = path.iter().any(|c| c.der == candidate.der);
        if already || candidate.is_self_issued() {
            continue;
        }
        if !spend(budget) {
            return false;
        }
        if current.is_issued_by(candidate) && fits_path_len(candidate, below) {
            path.push(candidate);
            if extend_path(path, intermediates, root, budget) {
                return true;
            }
            path.pop();
        }
    }
    false
}

/// Takes one candidate from the budget; false once it is spent.
fn spend(budget: &mut usize) -> bool {
    match budget.checked_sub(1) {
        Some(left) => {
            *budget = left;
            true
        }
        None => false,
    }
}

/// Checks that every certificate on the path is valid at `at` (RFC 5280 §6.1.3 (a)(2)).
/// For keyless signatures `at` is the verified Rekor integratedTime or RFC 3161 time;
/// a legacy layer with neither is judged at the current time (cosign
/// `pkg/cosign/verify.go`, `CheckExpiry`).
///
/// # Errors
///
/// `Expired` naming the first certificate outside its validity at `at`.
pub fn check_validity(path: &[&ParsedCertificate], at: SystemTime) -> Result<(), Rejection> {
    for cert in path {
        let (not_before, not_after) = cert.validity();
        if at < not_before || at > not_after {
            return Err(Rejection::Expired(format!(
                "certificate {} is valid {} to {}, not at {}",
                cert.inner().tbs_certificate().subject(),
                fmt_time(not_before),
                fmt_time(not_after),
                fmt_time(at),
            )));
        }
    }
    Ok(())
}

/// An instant as RFC 3339 for messages.
pub(crate) fn fmt_time(t: SystemTime) -> String {
    x509_cert::der::DateTime::from_system_time(t)
        .map_or_else(|_| format!("{t:?}"), |d| d.to_string())
}

/// Checks that the leaf is a code-signing certificate: its extendedKeyUsage, if present,
/// includes id-kp-codeSigning or anyExtendedKeyUsage, and its keyUsage, if present, has
/// digitalSignature. Fulcio issues both. cosign and sigstore-go hold the leaf to
/// `ExtKeyUsageCodeSigning` through Go's `x509.Certificate.Verify`, which lets a
/// certificate that names no extended key usage serve any (`checkChainForKeyUsage` in
/// `crypto/x509/verify.go`): a CA of an operator's own, in a `trusted_root.json`, may
/// issue such leaves.
///
/// # Errors
///
/// `UntrustedRoot`: the certificate is not trusted for signing code.
pub fn check_code_signing(leaf: &ParsedCertificate) -> Result<(), Rejection> {
    let tbs = leaf.inner().tbs_certificate();
    let eku = allows_code_signing(leaf);
    let ku = match tbs.get_extension::<KeyUsage>() {
        Ok(Some((_, ku))) => ku.digital_signature(),
        Ok(None) => true,
        Err(_) => false,
    };
    if eku && ku {
        Ok(())
    } else {
        Err(Rejection::UntrustedRoot(
            "certificate is not for code signing (extendedKeyUsage codeSigning)".to_owned(),
        ))
    }
}

/// The identity a legacy `.sig` layer's leaf names: every email, DNS, IP address and URI
/// SAN and Fulcio's username otherName, any of which may match (cosign
/// `cryptoutils.GetSubjectAlternateNames`, as `CheckCertificatePolicy` uses it), with
/// the OIDC issuer ([`oidc_issuer`]).
///
/// # Errors
///
/// `Malformed` when the SAN or an issuer extension does not decode.
pub fn leaf_identity(leaf: &ParsedCertificate) -> Result<LeafIdentity, Rejection> {
    let tbs = leaf.inner().tbs_certificate();
    let mut names = Vec::new();
    match tbs.get_extension::<SubjectAltName>() {
        Ok(Some((_, san))) => {
            for name in &san.0 {
                match name {
                    GeneralName::Rfc822Name(s)
                    | GeneralName::DnsName(s)
                    | GeneralName::UniformResourceIdentifier(s) => names.push(s.to_string()),
                    GeneralName::IpAddress(octets) => names.extend(ip_address(octets.as_bytes())),
                    _ => {}
                }
            }
            names.extend(fulcio_username(&san.0));
        }
        Ok(None) => {}
        Err(e) => return Err(Rejection::Malformed(format!("subjectAltName: {e}"))),
    }
    Ok(LeafIdentity {
        subject_alternative_names: names,
        issuer: oidc_issuer(leaf)?,
    })
}

/// Whether `cert`'s extended key usages allow code signing, as Go's
/// `checkChainForKeyUsage` judges each certificate of a chain verified for
/// `ExtKeyUsageCodeSigning`: none stated, codeSigning, or anyExtendedKeyUsage. An
/// extension that does not decode allows nothing.
fn allows_code_signing(cert: &ParsedCertificate) -> bool {
    match cert
        .inner()
        .tbs_certificate()
        .get_extension::<ExtendedKeyUsage>()
    {
        Ok(None) => true,
        Ok(Some((_, eku))) => eku
            .0
            .iter()
            .any(|purpose| *purpose == OID_CODE_SIGNING || *purpose == OID_ANY_EKU),
        Err(_) => false,
    }
}

/// An IP address SAN as Go's `net.IP.String` writes it, the form cosign matches: dotted
/// for IPv4, an IPv4-mapped IPv6 address included, and RFC 5952 text for IPv6. An
/// address of another length names no one.
fn ip_address(octets: &[u8]) -> Option<String> {
    match octets.len() {
        4 => <[u8; 4]>::try_from(octets)
            .ok()
            .map(|v4| std::net::Ipv4Addr::from(v4).to_string()),
        16 => <[u8; 16]>::try_from(octets).ok().map(|v6| {
            let v6 = std::net::Ipv6Addr::from(v6);
            v6.to_ipv4_mapped()
                .map_or_else(|| v6.to_string(), |v4| v4.to_string())
        }),
        _ => None,
    }
}

/// The identity a Sigstore bundle's leaf names: one SAN, the first URI if any, else the
/// first email address, else Fulcio's username otherName, and never a DNS name
/// (sigstore-go `pkg/fulcio/certificate/summarize.go`, `SummarizeCertificate`, which
/// `pkg/verify/certificate_identity.go` matches against), with the OIDC issuer as
/// [`leaf_identity`] reads it. A leaf with none of these names no one: its list is empty.
///
/// # Errors
///
/// `Malformed` when the SAN or an issuer extension does not decode.
pub fn bundle_identity(leaf: &ParsedCertificate) -> Result<LeafIdentity, Rejection> {
    let tbs = leaf.inner().tbs_certificate();
    let names = match tbs.get_extension::<SubjectAltName>() {
        Ok(Some((_, san))) => san.0,
        Ok(None) => Vec::new(),
        Err(e) => return Err(Rejection::Malformed(format!("subjectAltName: {e}"))),
    };
    let first_uri = names.iter().find_map(|name| match name {
        GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
        _ => None,
    });
    let first_email = || {
        names.iter().find_map(|name| match name {
            GeneralName::Rfc822Name(s) => Some(s.to_string()),
            _ => None,
        })
    };
    // sigstore-go takes an empty first URI, or an empty first email, as no SAN at all
    // and goes on to the username (not to the email).
    let name = first_uri
        .or_else(first_email)
        .filter(|name| !name.is_empty())
        .or_else(|| fulcio_username(&names));
    Ok(LeafIdentity {
        subject_alternative_names: name.into_iter().collect(),
        issuer: oidc_issuer(leaf)?,
    })
}

/// Fulcio's username otherName as sigstore reads it (`cryptoutils.UnmarshalOtherNameSAN`):
/// Fulcio puts a username in an otherName of its own type as a UTF8String, and it names
/// the signer only as the SAN's only otherName; none when there are several, or when any
/// otherName is of another type or does not decode.
fn fulcio_username(names: &[GeneralName]) -> Option<String> {
    let mut found = None;
    for name in names {
        if let GeneralName::OtherName(other) = name {
            if other.type_id != OID_OTHERNAME_USERNAME || found.is_some() {
                return None;
            }
            let s = other.value.decode_as::<Utf8StringRef<'_>>().ok()?;
            found = Some(s.as_str().to_owned());
        }
    }
    found
}

/// The OIDC issuer of a Fulcio leaf: 1.3.6.1.4.1.57264.1.8 (a DER UTF8String) if present,
/// else the deprecated 1.3.6.1.4.1.57264.1.1 (raw UTF-8 bytes), Fulcio `docs/oid-info.md`.
fn oidc_issuer(leaf: &ParsedCertificate) -> Result<Option<String>, Rejection> {
    let issuer = if let Some(value) = leaf.extension_value(OID_ISSUER_V2) {
        let s = Utf8StringRef::from_der(value)
            .map_err(|e| Rejection::Malformed(format!("OIDC issuer extension: {e}")))?;
        Some(s.as_str().to_owned())
    } else if let Some(value) = leaf.extension_value(OID_ISSUER_V1) {
        Some(
            std::str::from_utf8(value)
                .map_err(|e| Rejection::Malformed(format!("OIDC issuer extension: {e}")))?
                .to_owned(),
        )
    } else {
        None
    };
    Ok(issuer)
}
