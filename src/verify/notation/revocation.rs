//! CRL checking (trust store and trust policy spec, "Certificate Revocation Evaluation",
//! "CRLs"), with lists configured as files or fetched ([`super::fetch`]); OCSP comes
//! first where a certificate names a responder ([`super::ocsp`]).
//!
//! Follows notation-core-go `revocation/internal/crl/crl.go` where the spec is silent:
//! the CRL must verify with the issuer's key and have a `nextUpdate` not yet passed; an
//! entry whose invalidity date is after the authentic signing time does not revoke; a
//! `removeFromCRL` entry does not revoke.
//!
//! Supported: complete CRLs signed by the certificate's issuer (the next certificate of
//! the envelope's chain), with an issuing distribution point that does not narrow the
//! scope beyond user certificates; and delta CRLs ("MUST support BaseCRLs and Delta
//! CRLs"): where the complete CRL (RFC 5280 5.2.6) or the certificate (4.2.1.15) names a
//! FreshestCRL location, the status needs a current delta CRL made against a complete
//! CRL no newer than the one at hand (5.2.4), and what the delta lists comes first ("If
//! the delta CRL cannot be retrieved for some reason, the revocation result will be
//! 'revocation unavailable'"). Not supported, and so "revocation unavailable" for the
//! certificates they would cover: indirect or reason-partitioned CRLs, and CRLs or
//! entries with other critical extensions.
#![deny(clippy::indexing_slicing)]

use std::cell::OnceCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::FreshestCrl;

use super::chain::Cert;
use super::crypto::X509Algorithm;
use super::time::Moment;
use super::tlv::{self, DerReader};

/// Largest CRL file read. CRLs of public CAs reach a few MiB.
pub const MAX_CRL_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Most CRL files read from one directory.
pub const MAX_CRL_FILES: usize = 256;

const PEM_BEGIN: &str = "-----BEGIN X509 CRL-----";
const PEM_END: &str = "-----END X509 CRL-----";
const DELTA_CRL_INDICATOR: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.27");
const CRL_NUMBER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.20");
const FRESHEST_CRL: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.46");
const ISSUING_DISTRIBUTION_POINT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.28");
const REASON_CODE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.21");
const INVALIDITY_DATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.24");
/// CRLReason `removeFromCRL` (RFC 5280 5.3.1).
const REMOVE_FROM_CRL: u8 = 8;

/// CRLs, parsed; signatures are checked against the issuer at use. Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct CrlSet {
    crls: Vec<Arc<Crl>>,
}

#[derive(Clone, Debug)]
struct Crl {
    tbs: Vec<u8>,
    list: CertificateList,
}

/// Why CRL files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a symlink, which is not supported")]
    Symlink { path: PathBuf },
    #[error("{path} is over the {MAX_CRL_FILE_BYTES}-byte limit")]
    TooLarge { path: PathBuf },
    #[error("{path} has more than {MAX_CRL_FILES} entries")]
    TooManyFiles { path: PathBuf },
    #[error("{path} is not a DER or PEM X.509 CRL")]
    Malformed {
        path: PathBuf,
        #[source]
        source: CrlParseError,
    },
}

/// Why bytes are not CRLs.
#[derive(Debug, thiserror::Error)]
pub enum CrlParseError {
    #[error("PEM: {0}")]
    Pem(&'static str),
    #[error("not a DER CertificateList: {0}")]
    Structure(&'static str),
    #[error(transparent)]
    Der(#[from] der::Error),
}

/// The revocation status of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Good,
    Revoked {
        subject: String,
        at: Moment,
    },
    Unknown {
        subject: String,
        reason: &'static str,
        /// The certificate's `http` CRL distribution points, where a current CRL may be
        /// fetched (trust policy spec: "support only HTTP CRL URLs").
        fetch: Vec<String>,
    },
}

// === impl CrlSet ===

impl CrlSet {
    /// Feeds each CRL's signed content, in order, to `digest`.
    pub(crate) fn digest_content(&self, digest: &mut impl sha2::Digest) {
        digest.update((self.crls.len() as u64).to_be_bytes());
        for crl in &self.crls {
            digest.update((crl.tbs.len() as u64).to_be_bytes());
            digest.update(&crl.tbs);
        }
    }

    /// Reads every `.crl` and `.pem` file of `dir` (DER, or PEM `X509 CRL` blocks).
    ///
    /// # Errors
    ///
    /// A file is unreadable, a symlink, over the limit, or not a CRL.
    pub fn load_dir(dir: &Path) -> Result<Self, CrlError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CrlError::Io { path, source }
        };
        let mut paths = Vec::new();
        for (count, entry) in fs::read_dir(dir).map_err(io(dir))?.enumerate() {
            if count >= MAX_CRL_FILES {
                return Err(CrlError::TooManyFiles {
                    path: dir.to_path_buf(),
                });
            }
            paths.push(entry.map_err(io(dir))?.path());
        }
        paths.sort();
        let mut set = Self::default();
        for path in paths {
            let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
            if meta.file_type().is_symlink() {
                return Err(CrlError::Symlink { path });
            }
            let extension = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            if !meta.is_file() || !matches!(extension, "crl" | "pem") {
                continue;
            }
            let Some(bytes) =
                crate::files::read_bounded(&path, MAX_CRL_FILE_BYTES).map_err(io(&path))?
            else {
                return Err(CrlError::TooLarge { path });
            };
            set.add(&bytes)
                .map_err(|source| CrlError::Malformed { path, source })?;
        }
        Ok(set)
    }

    /// Adds the CRLs in `bytes` (one DER CRL, or PEM `X509 CRL` blocks).
    ///
    /// # Errors
    ///
    /// The bytes are not CRLs.
    pub fn add(&mut self, bytes: &[u8]) -> Result<(), CrlParseError> {
        let text = std::str::from_utf8(bytes)
            .ok()
            .filter(|t| t.contains(PEM_BEGIN));
        let ders = match text {
            Some(text) => pem_blocks(text)?,
            None => vec![bytes.to_vec()],
        };
        for der in ders {
            let structure =
                |_| CrlParseError::Structure("expected SEQUENCE { tbsCertList SEQUENCE, ... }");
            let outer = tlv::single(&der, tlv::SEQUENCE).map_err(structure)?;
            let tbs = DerReader::new(outer.value)
                .read(tlv::SEQUENCE)
                .map_err(structure)?;
            let list = CertificateList::from_der(&der)?;
            self.crls.push(Arc::new(Crl {
                tbs: tbs.raw.to_vec(),
                list,
            }));
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.crls.is_empty()
    }

    /// Adds every CRL of `other`.
    pub fn extend(&mut self, other: &CrlSet) {
        self.crls.extend(other.crls.iter().cloned());
    }

    /// The `nextUpdate` of the CRLs, earliest first: how long they can be used.
    pub(crate) fn next_update(&self) -> Option<Moment> {
        self.crls
            .iter()
            .filter_map(|crl| crl.list.tbs_cert_list.next_update.map(time))
            .min()
    }

    /// The status of `cert`, issued by `issuer`, at `now`, from the CRLs of `sets` in
    /// order; `signed_at` is the authentic signing time, if one was established. A
    /// certificate that names no CRL or OCSP location "is considered valid (not
    /// revoked)".
    pub(crate) fn status(
        sets: &[&CrlSet],
        cert: &Cert,
        issuer: &Cert,
        now: Moment,
        signed_at: Option<Moment>,
    ) -> Status {
        let (info, malformed) = match cert.revocation_info() {
            Ok(info) => (info, None),
            Err(reason) => (Default::default(), Some(reason)),
        };
        let fetch: Vec<String> = info
            .crl
            .iter()
            .filter(|url| is_http(url))
            .cloned()
            .collect();
        let unknown = |reason| Status::Unknown {
            subject: cert.subject(),
            reason,
            fetch: fetch.clone(),
        };
        if let Some(reason) = malformed {
            return unknown(reason);
        }
        if info.is_empty() {
            return Status::Good;
        }
        let Ok(issuer_name) = cert.issuer_der() else {
            return unknown("issuer name cannot be encoded");
        };
        let Ok(key) = issuer.public_key() else {
            return unknown("issuer key is unusable");
        };
        let mut reason = match (info.crl.is_empty(), fetch.is_empty()) {
            (true, _) => "no OCSP answer settled it, and it names no CRL distribution point",
            (false, true) => "no configured CRL from its issuer, and none of its CRL distribution points is an http URL",
            (false, false) => "no CRL from its issuer, configured or fetched",
        };
        // Each CRL is judged (its signature verified) at most once, when first needed:
        // the search for a delta goes over the same CRLs as the search for a base.
        let crls: Vec<Judged<'_>> = sets
            .iter()
            .flat_map(|set| set.crls.iter())
            .map(|crl| (crl.as_ref(), OnceCell::new()))
            .collect();
        let judge = |crl: &Crl| judge(crl, &issuer_name, key, cert.is_ca(), now);
        // The newest complete CRL from the issuer settles the status (RFC 5280 5.2.3: a
        // CRL's number tells which of two supersedes the other; without numbers, the
        // later thisUpdate): an older one still before its nextUpdate must not hide a
        // revocation the newer lists.
        let mut newest: Option<(&Crl, &Option<Vec<u8>>)> = None;
        for entry in &crls {
            match judged(entry, judge) {
                Err(why) => reason = why,
                Ok(Kind::Delta { .. }) => reason = "only a delta CRL from its issuer was found",
                Ok(Kind::Base { number }) => {
                    if newest.is_none_or(|(best, best_number)| {
                        supersedes((entry.0, number), (best, best_number))
                    }) {
                        newest = Some((entry.0, number));
                    }
                }
            }
        }
        let Some((crl, number)) = newest else {
            return unknown(reason);
        };
        // RFC 5280 5.2.6 and 4.2.1.15: a delta CRL is published beside this
        // one, and may list what was revoked since: the status needs it. An
        // unreadable FreshestCRL extension still says a delta exists.
        let (mut points, delta_named) = match freshest(&crl.list.tbs_cert_list) {
            Ok(points) => {
                let named = !points.is_empty();
                (points, named)
            }
            Err(_) => (Vec::new(), true),
        };
        points.extend(info.delta.iter().cloned());
        if delta_named || !points.is_empty() {
            // RFC 5280 5.2.4: a delta applies to a complete CRL numbered at
            // least its BaseCRLNumber; the newest such delta is used.
            let delta = number.as_deref().and_then(|base| {
                crls.iter()
                    .filter_map(|d| match judged(d, judge) {
                        Ok(Kind::Delta { number, base: from })
                            if le(from, base) && lt(base, number) =>
                        {
                            Some((number, d.0))
                        }
                        _ => None,
                    })
                    .max_by(|(a, _), (b, _)| cmp(a, b))
            });
            let Some((_, delta)) = delta else {
                return Status::Unknown {
                    subject: cert.subject(),
                    reason: "its issuer's CRL names a delta CRL, and no current one \
                                 is at hand",
                    fetch: points.into_iter().filter(|url| is_http(url)).collect(),
                };
            };
            // What the delta says is newer than the base.
            match listed(delta, cert, signed_at) {
                Ok(Some(status)) => return status,
                Ok(None) => {}
                Err(why) => return unknown(why),
            }
        }
        match listed(crl, cert, signed_at) {
            Ok(status) => status.unwrap_or(Status::Good),
            Err(why) => unknown(why),
        }
    }
}

/// Whether the first complete CRL supersedes the second: by CRL number where both have
/// one, else by thisUpdate.
fn supersedes(
    (crl, number): (&Crl, &Option<Vec<u8>>),
    (other, other_number): (&Crl, &Option<Vec<u8>>),
) -> bool {
    match (number, other_number) {
        (Some(a), Some(b)) => lt(b, a),
        _ => time(other.list.tbs_cert_list.this_update) < time(crl.list.tbs_cert_list.this_update),
    }
}

/// A CRL and, once judged, what [`judge`] said of it.
type Judged<'a> = (&'a Crl, OnceCell<Result<Kind, &'static str>>);

/// What `judge` says of `entry`'s CRL, judged on the first call only.
fn judged<'e>(
    entry: &'e Judged<'_>,
    judge: impl Fn(&Crl) -> Result<Kind, &'static str>,
) -> &'e Result<Kind, &'static str> {
    entry.1.get_or_init(|| judge(entry.0))
}

/// What a CRL from the issuer is, once it proved usable.
enum Kind {
    /// A complete CRL, with its CRL number.
    Base { number: Option<Vec<u8>> },
    /// A delta CRL: its CRL number, and the BaseCRLNumber of its delta indicator.
    Delta { number: Vec<u8>, base: Vec<u8> },
}

/// Whether `crl` may determine a status for a certificate of `issuer_name` at `now`
/// (RFC 5280 6.3.3): it names that issuer, its signature verifies with the issuer's
/// key, it has no critical extension crigate does not process, its scope covers the
/// certificate, and it is current.
fn judge(
    crl: &Crl,
    issuer_name: &[u8],
    key: &super::crypto::PublicKey,
    cert_is_ca: bool,
    now: Moment,
) -> Result<Kind, &'static str> {
    let tbs = &crl.list.tbs_cert_list;
    if tbs.issuer.to_der().ok().as_deref() != Some(issuer_name) {
        return Err("no CRL from its issuer, configured or fetched");
    }
    // RFC 5280 6.3.3 (f): the CRL signature verifies with the issuer's key.
    let verified = X509Algorithm::from_identifier(&crl.list.signature_algorithm, None)
        .ok()
        .zip(crl.list.signature.as_bytes())
        .is_some_and(|(alg, sig)| alg.verify(key, &crl.tbs, sig).is_ok());
    if !verified {
        return Err("a CRL from its issuer's name does not verify with the issuer's key");
    }
    let extensions = tbs.crl_extensions.as_deref().unwrap_or_default();
    // RFC 5280 5.2: a CRL with an unrecognised critical extension must not be used to
    // determine status. The issuing distribution point is understood when it does not
    // narrow the CRL below what the certificate needs (RFC 5280 5.2.5).
    let unusable = extensions.iter().any(|e| match e.extn_id {
        ISSUING_DISTRIBUTION_POINT => !idp_covers(e.extn_value.as_bytes(), cert_is_ca),
        DELTA_CRL_INDICATOR => false,
        _ => e.critical,
    });
    if unusable {
        return Err("the CRL's scope or a critical extension is not supported");
    }
    // RFC 5280 6.3.3 (a): a CRL past its nextUpdate is not current.
    let current =
        time(tbs.this_update) <= now && tbs.next_update.is_some_and(|next| now <= time(next));
    if !current {
        return Err("its issuer's CRL is past its nextUpdate");
    }
    let integer = |oid| {
        extensions
            .iter()
            .find(|e| e.extn_id == oid)
            .and_then(|e| tlv::single(e.extn_value.as_bytes(), tlv::INTEGER).ok())
            .map(|value| unsigned(value.value).to_vec())
    };
    let number = integer(CRL_NUMBER);
    if extensions.iter().any(|e| e.extn_id == DELTA_CRL_INDICATOR) {
        return match (number, integer(DELTA_CRL_INDICATOR)) {
            (Some(number), Some(base)) => Ok(Kind::Delta { number, base }),
            _ => Err("a delta CRL from its issuer lacks its CRL number or base number"),
        };
    }
    Ok(Kind::Base { number })
}

/// The URIs of a CRL's FreshestCRL extension (RFC 5280 5.2.6): where its delta CRLs are.
///
/// # Errors
///
/// The extension is malformed: a delta exists, but where is unknown.
fn freshest(tbs: &x509_cert::crl::TbsCertList) -> Result<Vec<String>, der::Error> {
    let Some(extension) = tbs
        .crl_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == FRESHEST_CRL)
    else {
        return Ok(Vec::new());
    };
    FreshestCrl::from_der(extension.extn_value.as_bytes())
        .map(|points| super::chain::distribution_point_uris(&points.0))
}

/// What `crl` says of `cert`: `None` if it does not list it. An entry whose reason is
/// `removeFromCRL`, or whose invalidity date is after the authentic signing time, leaves
/// it good. A CRL that lists the serial more than once (RFC 5280 lists a certificate
/// once) revokes it if any of its entries does.
///
/// # Errors
///
/// An entry cannot be read (a malformed invalidity date, an unknown critical
/// extension).
fn listed(
    crl: &Crl,
    cert: &Cert,
    signed_at: Option<Moment>,
) -> Result<Option<Status>, &'static str> {
    let serial = cert.serial();
    let mut found = None;
    for entry in crl
        .list
        .tbs_cert_list
        .revoked_certificates
        .iter()
        .flatten()
        .filter(|entry| entry.serial_number.as_bytes() == serial)
    {
        let status = entry_status(entry, cert, signed_at)?;
        if matches!(status, Status::Revoked { .. }) {
            return Ok(Some(status));
        }
        found = Some(status);
    }
    Ok(found)
}

/// What one CRL entry naming `cert` says of it, as [`listed`] reads it.
fn entry_status(
    entry: &x509_cert::crl::RevokedCert,
    cert: &Cert,
    signed_at: Option<Moment>,
) -> Result<Status, &'static str> {
    let mut invalidity = None;
    let mut removed = false;
    for ext in entry.crl_entry_extensions.iter().flatten() {
        match ext.extn_id {
            INVALIDITY_DATE => {
                let parsed = tlv::single(ext.extn_value.as_bytes(), tlv::GENERALIZED_TIME)
                    .ok()
                    .and_then(|t| std::str::from_utf8(t.value).ok())
                    .and_then(|text| Moment::parse_generalized_time(text).ok());
                match parsed {
                    Some(date) => invalidity = Some(date),
                    None => return Err("its CRL entry has a malformed invalidity date"),
                }
            }
            REASON_CODE => {
                // CRLReason ::= ENUMERATED
                removed = ext.extn_value.as_bytes() == [0x0a, 0x01, REMOVE_FROM_CRL];
            }
            _ if ext.critical => {
                return Err("its CRL entry has a critical extension crigate does not process")
            }
            _ => {}
        }
    }
    // notation-core-go: "signing time is before the invalidity date which means the
    // certificate is not revoked at the time of signing".
    let signed_before_invalid = signed_at
        .zip(invalidity)
        .is_some_and(|(signed, invalid)| signed < invalid);
    if removed || signed_before_invalid {
        return Ok(Status::Good);
    }
    Ok(Status::Revoked {
        subject: cert.subject(),
        at: time(entry.revocation_date),
    })
}

/// An INTEGER's content octets without the leading zero octets of a positive value.
fn unsigned(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.get(zeros..).unwrap_or_default()
}

/// Compares two unsigned big-endian numbers without leading zeros.
fn cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn le(a: &[u8], b: &[u8]) -> bool {
    cmp(a, b) != std::cmp::Ordering::Greater
}

fn lt(a: &[u8], b: &[u8]) -> bool {
    cmp(a, b) == std::cmp::Ordering::Less
}

/// Whether an IssuingDistributionPoint (RFC 5280 5.2.5) leaves `cert` in scope: no
/// `onlyContainsCACerts` for a leaf, no `onlyContainsUserCerts` for a CA, and no
/// reason partitioning, indirect CRL or attribute-certificate scope.
fn idp_covers(der: &[u8], cert_is_ca: bool) -> bool {
    let Ok(seq) = tlv::single(der, tlv::SEQUENCE) else {
        return false;
    };
    let mut reader = DerReader::new(seq.value);
    let true_flag = [0xff];
    while let Some(tag) = reader.peek_tag() {
        let Ok(field) = reader.read_any() else {
            return false;
        };
        match tag {
            0xa0 => {}
            0x81 if field.value == true_flag && cert_is_ca => return false,
            0x81 => {}
            0x82 if field.value == true_flag && !cert_is_ca => return false,
            0x82 => {}
            _ => return false,
        }
    }
    true
}

/// Whether `url` is an `http` URL: the only scheme Notation fetches CRLs over.
pub(crate) fn is_http(url: &str) -> bool {
    url.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

fn time(time: x509_cert::time::Time) -> Moment {
    Moment::from_unix_duration(time.to_unix_duration())
}

fn pem_blocks(text: &str) -> Result<Vec<Vec<u8>>, CrlParseError> {
    use base64::Engine as _;
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(PEM_BEGIN) {
        let after = rest
            .get(start + PEM_BEGIN.len()..)
            .ok_or(CrlParseError::Pem("truncated block"))?;
        let end = after
            .find(PEM_END)
            .ok_or(CrlParseError::Pem("block has no END line"))?;
        let body: String = after
            .get(..end)
            .ok_or(CrlParseError::Pem("truncated block"))?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        blocks.push(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|_| CrlParseError::Pem("body is not base64"))?,
        );
        rest = after.get(end + PEM_END.len()..).unwrap_or_default();
    }
    Ok(blocks)
}
