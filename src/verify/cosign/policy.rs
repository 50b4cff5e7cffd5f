//! What a cosign signature must satisfy: trusted keys, keyless identities, and the
//! Sigstore trust material (Fulcio CAs, Rekor keys, CT log keys), read from PEM files or
//! a Sigstore `trusted_root.json` (sigstore/protobuf-specs
//! `protos/sigstore_trustroot.proto`, `TrustedRoot`).
#![deny(clippy::indexing_slicing)]

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;

use super::cert::{CertificateError, ParsedCertificate};
use super::key::{AcceptedDigests, KeyError, PublicKey, SignatureDigest};
use super::payload::DockerReferenceCheck;
use crate::verify::notation::chain::Cert;

/// The largest `trusted_root.json` we read (the public-good one is ~7 KiB).
pub const MAX_TRUSTED_ROOT_BYTES: usize = 1024 * 1024;
/// The largest identity regex, compiled (regex crate size limit), so a policy cannot
/// make matching expensive.
pub const MAX_REGEX_BYTES: usize = 64 * 1024;

/// The cosign part of a policy. Trusted when ANY one signature satisfies ALL of it.
#[derive(Clone, Debug, Default)]
pub struct CosignPolicy {
    /// Keys for key-based signatures (`cosign verify --key`).
    pub keys: Vec<TrustedKey>,
    /// Accepted keyless signers (`--certificate-identity[-regexp]`,
    /// `--certificate-oidc-issuer[-regexp]`); one must match.
    pub identities: Vec<KeylessIdentity>,
    /// Fulcio certificate authorities, each a unit of root, own intermediates and
    /// `validFor`: the only trust anchors for keyless certificates. A leaf is trusted
    /// through one CA whose `validFor` holds the time it signed, by a path through that
    /// CA's certificates (and [`Self::fulcio_intermediates`]) to its root; certificates
    /// the signature carries (the chain annotation, a bundle's `x509CertificateChain`)
    /// earn nothing (sigstore-go `pkg/root/certificate_authority.go`,
    /// `FulcioCertificateAuthority.Verify`).
    pub fulcio_roots: Vec<FulcioCa>,
    /// Fulcio intermediates configured apart from a CA's chain: those of PEM files
    /// ([`Self::add_fulcio_roots_pem`]), which with the PEM roots form one CA with no
    /// `validFor`, as a PEM list of roots and intermediates is one to cosign
    /// (`SIGSTORE_ROOT_FILE`). Any CA may chain through them. A `trusted_root.json`
    /// leaves this empty: each of its CAs keeps its own in [`FulcioCa::intermediates`].
    pub fulcio_intermediates: Vec<ParsedCertificate>,
    /// Rekor public keys; an entry's `logID` selects one.
    pub rekor_keys: Vec<LogKey>,
    /// Certificate transparency log keys; an SCT's `LogID` selects one.
    pub ct_log_keys: Vec<LogKey>,
    /// Timestamp authorities whose RFC 3161 timestamps in a bundle establish when a
    /// keyless certificate was used (the time evidence of a Rekor v2 entry).
    pub timestamp_authorities: Vec<TimestampAuthority>,
    /// Require an embedded SCT from a configured CT log on keyless certificates (cosign's
    /// default; `--insecure-ignore-sct` turns it off).
    pub require_sct: bool,
    /// Require a verified Rekor entry (cosign's default). `false` is cosign's
    /// `--insecure-ignore-tlog`: the transparency log is not consulted at all, and a Rekor
    /// bundle or tlog entry beside the signature is ignored, whatever it holds. A
    /// key-based signature is then judged by its key alone. A keyless one still needs to
    /// show when it signed, which without the log only an RFC 3161 timestamp from a
    /// configured authority can: a bundle without one is refused (cosign
    /// `pkg/cosign/verify.go`, sigstore-go `pkg/verify`); a legacy `.sig` layer without
    /// one is judged at the current time, as cosign judges it (`CheckExpiry(cert,
    /// time.Now())`), which a short-lived Fulcio certificate does not survive.
    pub require_tlog: bool,
    /// How the signed `docker-reference` must relate to the admitted repository.
    pub docker_reference: DockerReferenceCheck,
}

/// When a piece of trust material may be used (`validFor` of `trusted_root.json`,
/// sigstore_common.proto `TimeRange`); both ends inclusive, absent ends open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ValidFor {
    pub start: Option<SystemTime>,
    pub end: Option<SystemTime>,
}

/// A transparency log (Rekor or CT) key and the times its entries may carry.
#[derive(Clone, Debug)]
pub struct LogKey {
    pub key: PublicKey,
    pub valid_for: ValidFor,
}

/// A timestamp authority of a `trusted_root.json` (sigstore_trustroot.proto
/// `CertificateAuthority` under `timestamp_authorities`): its chain, TSA certificate
/// first and root last, and when its timestamps may fall.
#[derive(Clone, Debug)]
pub struct TimestampAuthority {
    pub(crate) chain: Vec<Cert>,
    pub valid_for: ValidFor,
}

/// A Fulcio certificate authority (sigstore_trustroot.proto `CertificateAuthority`
/// under `certificate_authorities`): trusted as a unit, for signatures made inside its
/// `validFor`, through its own certificates only.
#[derive(Clone, Debug)]
pub struct FulcioCa {
    /// The root: the last certificate of the CA's `cert_chain`, the trust anchor.
    pub certificate: ParsedCertificate,
    /// The rest of the CA's `cert_chain`, issuing certificate first.
    pub intermediates: Vec<ParsedCertificate>,
    /// When the signatures it vouches for may have been made: the verified integrated
    /// time or RFC 3161 time must lie inside it.
    pub valid_for: ValidFor,
    /// Whether the intermediates a legacy signature layer carries (its
    /// `dev.sigstore.cosign/chain` annotation) may complete a path to this root: for a
    /// root configured as PEM, which cosign reads as `SIGSTORE_ROOT_FILE` and then takes
    /// the annotation's intermediates as untrusted path candidates (the chain still has
    /// to end at this root); never for a `trusted_root.json` CA, which names its own
    /// intermediates and the window they serve in.
    pub supplied_intermediates: bool,
}

/// A named public key for key-based signatures.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    pub name: String,
    pub key: PublicKey,
    /// The hashes its signatures may use: every one some cosign version signs with for
    /// this key (SHA-256, or the key's sigstore default), unless one is fixed
    /// ([`TrustedKey::with_digest`]; a cosign verifier's `signature_digest`).
    pub digests: AcceptedDigests,
}

/// One accepted keyless signer: a SAN matcher and, optionally, an OIDC issuer matcher.
#[derive(Clone, Debug)]
pub struct KeylessIdentity {
    pub subject: Matcher,
    pub issuer: Option<Matcher>,
}

/// An exact string or a regular expression. Regexes are anchored at both ends (cosign's
/// Go regexps are not; an unanchored `.*@example\.com` also accepts
/// `x@example.com.evil.org`, so crigate anchors and says so).
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(String),
    Regex(regex::Regex),
}

/// Why policy material cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("key {name}")]
    Key {
        name: String,
        #[source]
        source: KeyError,
    },
    #[error("certificates")]
    Certificates(#[source] CertificateError),
    #[error("identity regex {pattern:?}")]
    Regex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("trusted_root.json is {len} bytes, over the {MAX_TRUSTED_ROOT_BYTES}-byte limit")]
    TrustedRootTooLarge { len: usize },
    #[error("trusted_root.json")]
    TrustedRootJson(#[source] serde_json::Error),
    #[error("trusted_root.json mediaType {0:?} is not a Sigstore trusted root")]
    TrustedRootMediaType(String),
    #[error("trusted_root.json timestamp authority: {0}")]
    TimestampAuthority(String),
    #[error("trusted_root.json validFor time {0:?} is not RFC 3339 UTC")]
    TrustedRootTime(String),
    #[error("trusted_root.json {what} is not base64")]
    TrustedRootBase64 {
        what: &'static str,
        #[source]
        source: base64::DecodeError,
    },
}

/// The trust material of a `trusted_root.json`.
#[derive(Clone, Debug, Default)]
pub struct TrustedRoot {
    /// One per `certificateAuthorities` entry, with its own intermediates.
    pub fulcio_roots: Vec<FulcioCa>,
    pub rekor_keys: Vec<LogKey>,
    pub ct_log_keys: Vec<LogKey>,
    pub timestamp_authorities: Vec<TimestampAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTrustedRoot {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<WireLog>,
    #[serde(default)]
    certificate_authorities: Vec<WireCa>,
    #[serde(default)]
    ctlogs: Vec<WireLog>,
    #[serde(default)]
    timestamp_authorities: Vec<WireCa>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLog {
    public_key: WireLogKey,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLogKey {
    raw_bytes: String,
    valid_for: Option<WireRange>,
}

#[derive(Deserialize)]
struct WireRange {
    start: Option<String>,
    end: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRaw {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCa {
    cert_chain: WireChain,
    valid_for: Option<WireRange>,
}

#[derive(Deserialize)]
struct WireChain {
    certificates: Vec<WireRaw>,
}

// === impl TrustedKey ===

impl TrustedKey {
    /// A key from its PEM file, accepting the hashes any cosign version signs with
    /// ([`AcceptedDigests::CosignDefaults`]).
    ///
    /// # Errors
    ///
    /// The PEM is not a supported public key.
    pub fn from_pem(name: impl Into<String>, pem_bytes: &[u8]) -> Result<Self, PolicyError> {
        let name = name.into();
        let key = PublicKey::from_pem(pem_bytes).map_err(|source| PolicyError::Key {
            name: name.clone(),
            source,
        })?;
        Ok(Self {
            name,
            key,
            digests: AcceptedDigests::CosignDefaults,
        })
    }

    /// This key fixed to one digest, as cosign `verify --signature-digest-algorithm`
    /// fixes it: only signatures over that hash verify.
    #[must_use]
    pub fn with_digest(self, digest: SignatureDigest) -> Self {
        Self {
            digests: AcceptedDigests::Only(digest),
            ..self
        }
    }
}

// === impl Matcher ===

impl Matcher {
    /// An anchored regex matcher.
    ///
    /// # Errors
    ///
    /// The pattern does not compile on its own, or anchored, within [`MAX_REGEX_BYTES`].
    pub fn regex(pattern: &str) -> Result<Self, PolicyError> {
        let build = |pattern: &str| {
            regex::RegexBuilder::new(pattern)
                .size_limit(MAX_REGEX_BYTES)
                .build()
        };
        // The pattern must be an expression of its own before the anchors go around it:
        // `x)|(.*` compiles once wrapped, as `^(?:x)|(.*)$`, which matches anything.
        build(pattern)
            .and_then(|_| build(&format!("^(?:{pattern})$")))
            .map(Matcher::Regex)
            .map_err(|source| PolicyError::Regex {
                pattern: pattern.to_owned(),
                source,
            })
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(s) => s == value,
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

// === impl KeylessIdentity ===

impl KeylessIdentity {
    /// Whether a leaf with these SANs and issuer is this signer. A required issuer must
    /// be present in the certificate.
    pub fn matches(&self, sans: &[String], issuer: Option<&str>) -> bool {
        let subject_ok = sans.iter().any(|s| self.subject.matches(s));
        let issuer_ok = match (&self.issuer, issuer) {
            (None, _) => true,
            (Some(m), Some(i)) => m.matches(i),
            (Some(_), None) => false,
        };
        subject_ok && issuer_ok
    }
}

// === impl TrustedRoot ===

impl TrustedRoot {
    /// Reads a Sigstore `trusted_root.json` (media type
    /// `application/vnd.dev.sigstore.trustedroot+json;version=0.1` or `0.2`). Each CA's
    /// chain lists the issuing certificate first and the root last
    /// (`sigstore_trustroot.proto`, `CertificateAuthority.cert_chain`).
    ///
    /// `validFor` is kept with each key and CA: a Rekor key counts only for entries
    /// integrated inside it, a CT key for SCTs stamped inside it, a CA for signatures
    /// whose verified time lies inside it (sigstore-go `pkg/root/trusted_root.go` and
    /// `pkg/root/certificate_authority.go` semantics). Each CA keeps its intermediates:
    /// they are not pooled with another CA's.
    ///
    /// # Errors
    ///
    /// Over the limit, not the expected JSON, or a key or certificate that does not parse.
    pub fn from_json(json: &[u8]) -> Result<Self, PolicyError> {
        if json.len() > MAX_TRUSTED_ROOT_BYTES {
            return Err(PolicyError::TrustedRootTooLarge { len: json.len() });
        }
        let wire: WireTrustedRoot =
            serde_json::from_slice(json).map_err(PolicyError::TrustedRootJson)?;
        if !wire
            .media_type
            .starts_with("application/vnd.dev.sigstore.trustedroot")
        {
            return Err(PolicyError::TrustedRootMediaType(wire.media_type));
        }
        let decode = |what: &'static str, raw: &WireRaw| {
            B64.decode(raw.raw_bytes.as_bytes())
                .map_err(|source| PolicyError::TrustedRootBase64 { what, source })
        };
        let mut root = TrustedRoot::default();
        let log_key = |what: &'static str, log: &WireLog| -> Result<LogKey, PolicyError> {
            let der = B64
                .decode(log.public_key.raw_bytes.as_bytes())
                .map_err(|source| PolicyError::TrustedRootBase64 { what, source })?;
            let key = PublicKey::from_spki_der(&der).map_err(|source| PolicyError::Key {
                name: what.to_owned(),
                source,
            })?;
            Ok(LogKey {
                key,
                valid_for: ValidFor::from_wire(log.public_key.valid_for.as_ref())?,
            })
        };
        for log in &wire.tlogs {
            root.rekor_keys.push(log_key("tlog key", log)?);
        }
        for log in &wire.ctlogs {
            root.ct_log_keys.push(log_key("ctlog key", log)?);
        }
        for tsa in &wire.timestamp_authorities {
            let chain = tsa
                .cert_chain
                .certificates
                .iter()
                .map(|raw| {
                    let der = decode("timestamp authority certificate", raw)?;
                    Cert::from_der(&der).map_err(|e| PolicyError::TimestampAuthority(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if chain.is_empty() {
                return Err(PolicyError::TimestampAuthority(
                    "a timestamp authority lists no certificate".to_owned(),
                ));
            }
            root.timestamp_authorities.push(TimestampAuthority {
                chain,
                valid_for: ValidFor::from_wire(tsa.valid_for.as_ref())?,
            });
        }
        for ca in &wire.certificate_authorities {
            let valid_for = ValidFor::from_wire(ca.valid_for.as_ref())?;
            let mut chain = ca
                .cert_chain
                .certificates
                .iter()
                .map(|raw| {
                    let der = decode("certificate", raw)?;
                    ParsedCertificate::from_der(&der).map_err(PolicyError::Certificates)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let Some(certificate) = chain.pop() else {
                return Err(PolicyError::Certificates(CertificateError::Empty));
            };
            root.fulcio_roots.push(FulcioCa {
                certificate,
                intermediates: chain,
                valid_for,
                supplied_intermediates: false,
            });
        }
        Ok(root)
    }
}

// === impl ValidFor ===

impl ValidFor {
    /// Whether `t` lies in the range.
    pub fn contains(&self, t: SystemTime) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }

    fn from_wire(range: Option<&WireRange>) -> Result<Self, PolicyError> {
        let Some(range) = range else {
            return Ok(Self::default());
        };
        Ok(Self {
            start: range.start.as_deref().map(parse_rfc3339_utc).transpose()?,
            end: range.end.as_deref().map(parse_rfc3339_utc).transpose()?,
        })
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the form protobuf JSON writes for a
/// `google.protobuf.Timestamp`, or with an offset `±HH:MM` for `Z`, which its parsers
/// also accept (protobuf JSON mapping, "Timestamp": "Offsets other than "Z" are also
/// accepted"): each field its digits and no more (no sign, no field left out or added),
/// so a time written otherwise is an error, never another time.
fn parse_rfc3339_utc(s: &str) -> Result<SystemTime, PolicyError> {
    /// The `N` fields of `text` between `separator`s, each exactly its width in ASCII
    /// digits; `None` for any other text.
    fn fields<const N: usize>(text: &str, separator: char, widths: [usize; N]) -> Option<[u16; N]> {
        let mut parts = text.split(separator);
        let mut values = [0u16; N];
        for (value, width) in values.iter_mut().zip(widths) {
            let part = parts.next()?;
            if part.len() != width || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *value = part.parse().ok()?;
        }
        parts.next().is_none().then_some(values)
    }
    let bad = || PolicyError::TrustedRootTime(s.to_owned());
    let (body, offset) = match s.strip_suffix('Z') {
        Some(body) => (body, 0i64),
        None => {
            let split = s.len().checked_sub(6).ok_or_else(bad)?;
            let (body, offset) = (
                s.get(..split).ok_or_else(bad)?,
                s.get(split..).ok_or_else(bad)?,
            );
            let sign = match offset.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return Err(bad()),
            };
            let [hours, minutes] = offset
                .get(1..)
                .and_then(|o| fields(o, ':', [2, 2]))
                .ok_or_else(bad)?;
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            (
                body,
                sign * (i64::from(hours) * 3600 + i64::from(minutes) * 60),
            )
        }
    };
    let (date, clock) = body.split_once('T').ok_or_else(bad)?;
    let (clock, fraction) = match clock.split_once('.') {
        Some((_, "")) => return Err(bad()),
        Some((clock, fraction)) => (clock, fraction),
        None => (clock, ""),
    };
    let [year, month, day] = fields(date, '-', [4, 2, 2]).ok_or_else(bad)?;
    let [hour, minute, second] = fields(clock, ':', [2, 2, 2]).ok_or_else(bad)?;
    let narrow = |value: u16| u8::try_from(value).map_err(|_| bad());
    let (month, day) = (narrow(month)?, narrow(day)?);
    let (hour, minute, second) = (narrow(hour)?, narrow(minute)?, narrow(second)?);
    let dt =
        x509_cert::der::DateTime::new(year, month, day, hour, minute, second).map_err(|_| bad())?;
    let nanos = if fraction.is_empty() {
        0
    } else if fraction.len() <= 9 && fraction.bytes().all(|b| b.is_ascii_digit()) {
        format!("{fraction:0<9}")
            .parse::<u32>()
            .map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    let local = dt.to_system_time() + Duration::from_nanos(u64::from(nanos));
    // A time at offset +01:00 is an hour ahead of UTC: UTC is an hour earlier.
    let shift = Duration::from_secs(offset.unsigned_abs());
    if offset >= 0 {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
    .ok_or_else(bad)
}

// === impl LogKey / FulcioCa ===

impl From<PublicKey> for LogKey {
    fn from(key: PublicKey) -> Self {
        Self {
            key,
            valid_for: ValidFor::default(),
        }
    }
}

/// A root alone, as a PEM file configures one: a CA with no intermediates of its own and
/// no `validFor`, completed by the intermediates a legacy signature carries.
impl From<ParsedCertificate> for FulcioCa {
    fn from(certificate: ParsedCertificate) -> Self {
        Self {
            certificate,
            intermediates: Vec::new(),
            valid_for: ValidFor::default(),
            supplied_intermediates: true,
        }
    }
}

// === impl CosignPolicy ===

impl CosignPolicy {
    /// Adds every CA and key of a trusted root to this policy.
    pub fn add_trusted_root(&mut self, root: TrustedRoot) {
        self.fulcio_roots.extend(root.fulcio_roots);
        self.rekor_keys.extend(root.rekor_keys);
        self.ct_log_keys.extend(root.ct_log_keys);
        self.timestamp_authorities
            .extend(root.timestamp_authorities);
    }

    /// Adds the certificates of a PEM file to the Fulcio CA that PEM files make: its
    /// self-issued certificates as roots ([`Self::fulcio_roots`], no `validFor`), the
    /// others as its intermediates ([`Self::fulcio_intermediates`]), as cosign reads
    /// `SIGSTORE_ROOT_FILE` (`fulcioroots`: self-signed to the root pool, the rest to the
    /// intermediate pool). A legacy signature's chain annotation may supply an
    /// intermediate to these roots, as cosign's legacy verification takes it.
    ///
    /// # Errors
    ///
    /// The file does not hold certificates.
    pub fn add_fulcio_roots_pem(&mut self, pem_bytes: &[u8]) -> Result<(), PolicyError> {
        let certs =
            ParsedCertificate::from_pem_many(pem_bytes).map_err(PolicyError::Certificates)?;
        for cert in certs {
            if cert.is_self_issued() {
                self.fulcio_roots.push(FulcioCa::from(cert));
            } else {
                self.fulcio_intermediates.push(cert);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rcgen::PublicKeyData as _;

    use super::*;
    use crate::verify::cosign::key::KeyKind;

    #[test]
    fn public_good_trusted_root_loads() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/cosign/trust/trusted_root.json"
        );
        let json = std::fs::read(path).unwrap_or_else(|e| panic!("{path} missing: {e}"));
        let root = TrustedRoot::from_json(&json).unwrap();
        // Two CAs: the 2021-03 root alone, and the 2021-10 root with its intermediate.
        assert_eq!(root.fulcio_roots.len(), 2);
        let intermediates: Vec<usize> = root
            .fulcio_roots
            .iter()
            .map(|ca| ca.intermediates.len())
            .collect();
        assert_eq!(intermediates, [0, 1]);
        assert!(root
            .fulcio_roots
            .iter()
            .all(|ca| ca.valid_for.start.is_some()));
        assert!(root.rekor_keys.iter().any(|k| hex::encode(k.key.key_id())
            == "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"));
        assert!(!root.ct_log_keys.is_empty());
        // The test CT log of 2021 stopped at 2022-10-31T23:59:59.999Z.
        let ended = root
            .ct_log_keys
            .iter()
            .filter_map(|k| k.valid_for.end)
            .min()
            .unwrap();
        assert_eq!(
            ended,
            std::time::UNIX_EPOCH + Duration::from_millis(1_667_260_799_999)
        );
    }

    #[test]
    fn a_trusted_root_with_rekor_v2_and_timestamp_authorities_loads() {
        // The public-good root from 2025 on lists Rekor v2 logs (Ed25519 keys, with a
        // checkpoint key ID) beside the v1 log, and timestamp authorities.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/cosign/trust/trusted_root.json"
        );
        let mut root: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let tsa_cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&ed25519)
            .unwrap();
        root["tlogs"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "baseUrl": "https://log2099-1.rekor.test",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": B64.encode(ed25519.subject_public_key_info()),
                    "keyDetails": "PKIX_ED25519",
                    "validFor": {"start": "2099-01-01T00:00:00Z"}
                },
                "logId": {"keyId": B64.encode([7u8; 32])},
                "checkpointKeyId": {"keyId": B64.encode([7u8; 4])}
            }));
        root["timestampAuthorities"] = serde_json::json!([{
            "subject": {"organization": "test", "commonName": "test tsa"},
            "uri": "https://timestamp.test/api/v1/timestamp",
            "certChain": {"certificates": [{"rawBytes": B64.encode(tsa_cert.der())}]},
            "validFor": {"start": "2099-01-01T00:00:00Z"}
        }]);
        let root = TrustedRoot::from_json(&serde_json::to_vec(&root).unwrap()).unwrap();
        assert!(root
            .rekor_keys
            .iter()
            .any(|k| k.key.kind() == KeyKind::Ed25519 && k.valid_for.start.is_some()));
        assert_eq!(root.timestamp_authorities.len(), 1);
        assert_eq!(root.timestamp_authorities[0].chain.len(), 1);
        // An authority without a certificate is a broken root, not an empty one.
        let mut broken: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        broken["timestampAuthorities"] = serde_json::json!([{"certChain": {"certificates": []}}]);
        assert!(matches!(
            TrustedRoot::from_json(&serde_json::to_vec(&broken).unwrap()),
            Err(PolicyError::TimestampAuthority(_))
        ));
    }

    #[test]
    fn valid_for_parses_and_bounds() {
        let t = parse_rfc3339_utc("2021-01-12T11:53:27.000Z").unwrap();
        assert_eq!(
            t,
            std::time::UNIX_EPOCH + Duration::from_secs(1_610_452_407)
        );
        for bad in [
            "2021-01-12T11:53:27",
            "2021-01-12 11:53:27Z",
            "2021-13-12T11:53:27Z",
            "x",
        ] {
            assert!(parse_rfc3339_utc(bad).is_err(), "{bad}");
        }

        let range = ValidFor {
            start: Some(t),
            end: Some(t + Duration::from_secs(10)),
        };
        assert!(range.contains(t) && range.contains(t + Duration::from_secs(10)));
        assert!(
            !range.contains(t - Duration::from_secs(1))
                && !range.contains(t + Duration::from_secs(11))
        );
        assert!(ValidFor::default().contains(t));
    }

    /// A time with an offset for `Z`, which protobuf JSON parsers accept, is the UTC
    /// time it names.
    #[test]
    fn a_valid_for_time_with_an_offset_is_read_as_utc() {
        let utc = parse_rfc3339_utc("2021-01-12T11:53:27.250Z").unwrap();
        for same in [
            "2021-01-12T12:53:27.250+01:00",
            "2021-01-12T06:23:27.25-05:30",
            "2021-01-12T11:53:27.25+00:00",
        ] {
            assert_eq!(parse_rfc3339_utc(same).unwrap(), utc, "{same}");
        }
    }

    /// A validFor time with a field too many, too few digits or a sign was read as some
    /// other time (`2021-01-12-99T11:53:27Z` as 2021-01-12, `2021-+1-12` as January):
    /// it is an error, as any time not in the one form protobuf JSON writes.
    #[test]
    fn a_valid_for_time_in_another_form_is_an_error() {
        for bad in [
            "2021-01-12-99T11:53:27Z",
            "2021-01-12T11:53:27:59Z",
            "2021-+1-12T11:53:27Z",
            "2021-01-12T+1:53:27Z",
            "2021-1-12T11:53:27Z",
            "2021-01-12T11:53:7Z",
            "02021-01-12T11:53:27Z",
            "2021-01-12T11:53Z",
            "2021-01-12T11:53:27.Z",
        ] {
            assert!(
                matches!(parse_rfc3339_utc(bad), Err(PolicyError::TrustedRootTime(ref t)) if t == bad),
                "{bad}"
            );
        }
        assert!(parse_rfc3339_utc("2021-01-12T11:53:27.5Z").is_ok());
        for bad in [
            "2021-01-12T11:53:27+1:00",
            "2021-01-12T11:53:27+01:60",
            "2021-01-12T11:53:27*01:00",
            "2021-01-12T11:53:27+0100",
        ] {
            assert!(parse_rfc3339_utc(bad).is_err(), "{bad}");
        }
        assert!(parse_rfc3339_utc("2021-01-12T11:53:27.123456789Z").is_ok());
    }

    #[test]
    fn trusted_root_of_another_type_or_size_is_refused() {
        assert!(matches!(
            TrustedRoot::from_json(br#"{"mediaType":"application/json"}"#),
            Err(PolicyError::TrustedRootMediaType(_))
        ));
        let big = vec![b' '; MAX_TRUSTED_ROOT_BYTES + 1];
        assert!(matches!(
            TrustedRoot::from_json(&big),
            Err(PolicyError::TrustedRootTooLarge { .. })
        ));
    }

    #[test]
    fn regex_matchers_are_anchored() {
        let m = Matcher::regex(r".*@example\.com").unwrap();
        assert!(m.matches("a@example.com"));
        assert!(!m.matches("a@example.com.evil.org"));
        // Patterns that are no expression of their own, each of which compiles once
        // wrapped in the anchors, and would then match anything.
        for pattern in ["(", "x)|(.*", ").*|(", "a)|.*|(?:b"] {
            assert!(
                matches!(Matcher::regex(pattern), Err(PolicyError::Regex { .. })),
                "{pattern}"
            );
        }
    }

    #[test]
    fn required_issuer_must_be_present() {
        let id = KeylessIdentity {
            subject: Matcher::Exact("a@b".to_owned()),
            issuer: Some(Matcher::Exact("https://issuer".to_owned())),
        };
        let sans = vec!["a@b".to_owned()];
        assert!(id.matches(&sans, Some("https://issuer")));
        assert!(!id.matches(&sans, None));
        assert!(!id.matches(&sans, Some("https://other")));
        assert!(!id.matches(&["c@d".to_owned()], Some("https://issuer")));
    }
}
