//! crigate's own Notation test signer: a generated CA issuing code-signing leaves, JWS and
//! COSE envelopes over `{"targetArtifact": descriptor}`, pushed to the registry as the
//! notation CLI pushes them, and Notation configuration directories to verify them with.
//!
//! - Keys: RSA-2048 (PS256), RSA-3072 (PS384), ECDSA P-256 (ES256) and P-384 (ES384),
//!   generated with aws-lc-rs per test; certificates made with rcgen (Notary Project
//!   signature specification, "Certificate Requirements": leaf keyUsage digitalSignature,
//!   critical; EKU codeSigning; CA basicConstraints and keyUsage critical).
//! - Envelopes: `notary.x509` (`io.cncf.notary.signingTime`) and
//!   `notary.x509.signingAuthority` (`io.cncf.notary.authenticSigningTime`), in the JWS
//!   JSON serialization (`signature-envelope-jws.md`) and as COSE_Sign1
//!   (`signature-envelope-cose.md`), with optional `io.cncf.notary.expiry`, an extra
//!   critical header, a payload altered after signing, and an RFC 3161 timestamp
//!   countersignature made by a [`NotationTsa`].
//! - Storage: a signature manifest with `artifactType`
//!   `application/vnd.cncf.notary.signature`, one layer (the envelope, media type
//!   `application/jose+json` or `application/cose`) and `subject` = the image; Debian's
//!   registry lacks the referrers API, so the referrers tag schema index is written too.
#![allow(dead_code)]

use std::path::Path;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, EcdsaKeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::harness::Registry;

pub const NOTATION_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
pub const MEDIA_TYPE_JWS: &str = "application/jose+json";
pub const MEDIA_TYPE_COSE: &str = "application/cose";
const PAYLOAD_CTY: &str = "application/vnd.cncf.notary.payload.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const HEADER_SCHEME: &str = "io.cncf.notary.signingScheme";
const HEADER_SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const HEADER_AUTHENTIC_TIME: &str = "io.cncf.notary.authenticSigningTime";
const HEADER_EXPIRY: &str = "io.cncf.notary.expiry";
const HEADER_TIMESTAMP: &str = "io.cncf.notary.timestampSignature";
const HEADER_AGENT: &str = "io.cncf.notary.signingAgent";

/// Unix seconds of `y-m-d`T00:00:00Z.
pub fn ymd(year: i32, month: u8, day: u8) -> i64 {
    rcgen::date_time_ymd(year, month, day).unix_timestamp()
}

/// Unix seconds now.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The key type of a signing certificate and, with it, the envelope algorithm the Notary
/// Project signature specification assigns to it ("Algorithm Selection").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA-2048, PS256.
    Rsa2048,
    /// RSA-3072, PS384.
    Rsa3072,
    /// ECDSA P-256, ES256.
    P256,
    /// ECDSA P-384, ES384.
    P384,
}

/// An envelope algorithm; [`KeyKind::alg`] is the one that fits a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Ps256,
    Ps384,
    Es256,
    Es384,
}

/// Envelope format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jws,
    Cose,
}

/// Signing scheme (Notary Project `signing-scheme.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `notary.x509`: anchored in `ca` stores, signing time unauthenticated.
    X509,
    /// `notary.x509.signingAuthority`: anchored in `signingAuthority` stores.
    SigningAuthority,
}

/// The image descriptor a signature is for: `targetArtifact` and the manifest's `subject`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A certificate authority for code-signing leaves (ECDSA P-256, valid 2024 to 2040).
pub struct NotationCa {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    issuer: rcgen::Issuer<'static, KeyPair>,
}

/// A signing certificate, its chain (leaf first, ending with the CA) and its key.
pub struct NotationLeaf {
    key: LeafKey,
    pub kind: KeyKind,
    /// DER certificates, leaf first: what `x5c` / `x5chain` carry.
    pub chain: Vec<Vec<u8>>,
    /// The `x509.subject` trusted identity that names this leaf.
    pub identity: String,
}

enum LeafKey {
    Rsa(lc::RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// What to sign and how. [`SignOptions::new`] gives an ordinary signature: `notary.x509`,
/// signed now, no expiry, the key's own algorithm.
#[derive(Clone, Debug)]
pub struct SignOptions {
    pub format: Format,
    pub scheme: Scheme,
    /// Unix seconds: the signing time, or the authentic signing time under
    /// `notary.x509.signingAuthority`.
    pub signing_time: i64,
    /// Unix seconds of `io.cncf.notary.expiry`.
    pub expiry: Option<i64>,
    /// Overrides the algorithm that fits the key.
    pub alg: Option<Alg>,
    /// An extra protected header `(name, value)`, listed in `crit`.
    pub extra_critical: Option<(String, String)>,
    /// Replace the payload after signing (the envelope's signature no longer covers it).
    pub tamper_payload: bool,
}

/// A signed envelope, ready to push.
#[derive(Clone, Debug)]
pub struct SignedEnvelope {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    /// The raw signature bytes, which an RFC 3161 timestamp countersigns.
    pub signature: Vec<u8>,
    /// SHA-256 fingerprints of the chain, leaf first (the
    /// `io.cncf.notary.x509chain.thumbprint#S256` annotation).
    pub thumbprints: Vec<String>,
}

/// Makes an RFC 3161 timestamp token (DER) countersigning the raw signature bytes given.
pub type Timestamper<'a> = &'a dyn Fn(&[u8]) -> Vec<u8>;

/// A trust store entry of a Notation configuration directory:
/// `truststore/x509/<kind>/<name>/<file>`.
pub struct StoreFile<'a> {
    /// `ca`, `signingAuthority` or `tsa`.
    pub kind: &'a str,
    pub name: &'a str,
    pub file: &'a str,
    pub pem: &'a str,
}

// === impl KeyKind ===

impl KeyKind {
    pub fn alg(self) -> Alg {
        match self {
            KeyKind::Rsa2048 => Alg::Ps256,
            KeyKind::Rsa3072 => Alg::Ps384,
            KeyKind::P256 => Alg::Es256,
            KeyKind::P384 => Alg::Es384,
        }
    }
}

// === impl Alg ===

impl Alg {
    fn jws_name(self) -> &'static str {
        match self {
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }

    /// IANA COSE algorithm values (RFC 9053, RFC 8230).
    fn cose_value(self) -> i64 {
        match self {
            Alg::Ps256 => -37,
            Alg::Ps384 => -38,
            Alg::Es256 => -7,
            Alg::Es384 => -35,
        }
    }
}

// === impl Target ===

impl Target {
    pub fn new(media_type: &str, digest: &str, size: u64) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: digest.to_owned(),
            size,
        }
    }

    fn json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }

    /// The Notation payload, `{"targetArtifact": descriptor}` (signature specification,
    /// "Payload").
    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"targetArtifact": self.json()})).unwrap()
    }
}

// === impl NotationCa ===

impl NotationCa {
    /// A self-signed root CA named `CN=<cn>,O=crigate test`.
    pub fn generate(cn: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "crigate test");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A code-signing leaf `C=US,ST=WA,O=crigate test,CN=<cn>` valid from `not_before`
    /// to `not_after` (Unix seconds).
    pub fn leaf(&self, kind: KeyKind, cn: &str, not_before: i64, not_after: i64) -> NotationLeaf {
        self.leaf_with(kind, cn, not_before, not_after, |_| {})
    }

    /// A current leaf (as [`current_leaf`](Self::current_leaf)) with serial number
    /// `serial` whose CRL distribution point is `crl_url`.
    pub fn leaf_with_crl_point(
        &self,
        kind: KeyKind,
        cn: &str,
        crl_url: &str,
        serial: u64,
    ) -> NotationLeaf {
        self.leaf_with(kind, cn, ymd(2026, 1, 1), ymd(2036, 1, 1), |params| {
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![crl_url.to_owned()],
            }];
        })
    }

    /// A current leaf with serial number `serial` whose authority information access
    /// names the OCSP responder `ocsp_url`, and whose CRL distribution point is
    /// `crl_url` if given.
    pub fn leaf_with_ocsp(
        &self,
        kind: KeyKind,
        cn: &str,
        serial: u64,
        ocsp_url: &str,
        crl_url: Option<&str>,
    ) -> NotationLeaf {
        self.leaf_with(kind, cn, ymd(2026, 1, 1), ymd(2036, 1, 1), |params| {
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
            params.custom_extensions = vec![ocsp_access(ocsp_url)];
            if let Some(url) = crl_url {
                params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                    uris: vec![url.to_owned()],
                }];
            }
        })
    }

    /// The CA's private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A DER CRL from this CA listing the serial numbers `revoked`, issued 2026-01-01
    /// and next updated 2099-01-01.
    pub fn crl(&self, revoked: &[u64]) -> Vec<u8> {
        let entries: Vec<(u64, Option<i64>)> = revoked.iter().map(|&s| (s, None)).collect();
        self.crl_with_invalidity(&entries)
    }

    /// [`crl`](Self::crl), each serial with the invalidity date (Unix seconds) its entry
    /// states, if any: when the key is known to have been compromised (RFC 5280 5.3.2).
    pub fn crl_with_invalidity(&self, revoked: &[(u64, Option<i64>)]) -> Vec<u8> {
        let at = |unix: i64| OffsetDateTime::from_unix_timestamp(unix).unwrap();
        rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2026, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&(serial, invalid_from)| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(serial),
                    revocation_time: rcgen::date_time_ymd(2026, 1, 2),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: invalid_from.map(at),
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .der()
        .to_vec()
    }

    fn leaf_with(
        &self,
        kind: KeyKind,
        cn: &str,
        not_before: i64,
        not_after: i64,
        extra: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> NotationLeaf {
        let (key, pkcs8, rcgen_alg) = match kind {
            KeyKind::Rsa2048 | KeyKind::Rsa3072 => {
                let size = if kind == KeyKind::Rsa2048 {
                    aws_lc_rs::rsa::KeySize::Rsa2048
                } else {
                    aws_lc_rs::rsa::KeySize::Rsa3072
                };
                let key = lc::RsaKeyPair::generate(size).unwrap();
                let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&key).unwrap().as_ref().to_vec();
                (LeafKey::Rsa(key), pkcs8, &rcgen::PKCS_RSA_SHA256)
            }
            KeyKind::P256 | KeyKind::P384 => {
                let (signing, rcgen_alg) = if kind == KeyKind::P256 {
                    (
                        &lc::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &rcgen::PKCS_ECDSA_P256_SHA256,
                    )
                } else {
                    (
                        &lc::ECDSA_P384_SHA384_FIXED_SIGNING,
                        &rcgen::PKCS_ECDSA_P384_SHA384,
                    )
                };
                let key = EcdsaKeyPair::generate(signing).unwrap();
                let pkcs8 = key.to_pkcs8v1().unwrap().as_ref().to_vec();
                (LeafKey::Ec(key), pkcs8, rcgen_alg)
            }
        };
        // rcgen only needs the public key to issue the certificate.
        let public =
            KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), rcgen_alg)
                .unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for (dn_type, value) in [
            (rcgen::DnType::CountryName, "US"),
            (rcgen::DnType::StateOrProvinceName, "WA"),
            (rcgen::DnType::OrganizationName, "crigate test"),
            (rcgen::DnType::CommonName, cn),
        ] {
            params.distinguished_name.push(dn_type, value);
        }
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        params.not_before = OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        params.not_after = OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        extra(&mut params);
        let cert = params.signed_by(&public, &self.issuer).unwrap();
        NotationLeaf {
            key,
            kind,
            chain: vec![cert.der().to_vec(), self.cert_der.clone()],
            identity: format!("x509.subject: C=US, ST=WA, O=crigate test, CN={cn}"),
        }
    }

    /// A leaf of `kind` valid from 2026-01-01 to 2036-01-01.
    pub fn current_leaf(&self, kind: KeyKind, cn: &str) -> NotationLeaf {
        self.leaf(kind, cn, ymd(2026, 1, 1), ymd(2036, 1, 1))
    }
}

// === impl SignOptions ===

impl SignOptions {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            scheme: Scheme::X509,
            signing_time: now(),
            expiry: None,
            alg: None,
            extra_critical: None,
            tamper_payload: false,
        }
    }

    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    pub fn signing_time(mut self, unix: i64) -> Self {
        self.signing_time = unix;
        self
    }

    pub fn expiry(mut self, unix: i64) -> Self {
        self.expiry = Some(unix);
        self
    }

    pub fn alg(mut self, alg: Alg) -> Self {
        self.alg = Some(alg);
        self
    }

    pub fn extra_critical(mut self, name: &str, value: &str) -> Self {
        self.extra_critical = Some((name.to_owned(), value.to_owned()));
        self
    }

    pub fn tamper_payload(mut self) -> Self {
        self.tamper_payload = true;
        self
    }
}

// === impl NotationLeaf ===

impl NotationLeaf {
    /// Signs `target` as `options` say.
    pub fn sign(&self, target: &Target, options: &SignOptions) -> SignedEnvelope {
        self.sign_with_timestamp(target, options, None)
    }

    /// [`sign`](Self::sign), with a timestamp countersignature from `timestamper`
    /// (called with the raw signature bytes, returning a DER TimeStampToken).
    pub fn sign_with_timestamp(
        &self,
        target: &Target,
        options: &SignOptions,
        timestamper: Option<Timestamper<'_>>,
    ) -> SignedEnvelope {
        let alg = options.alg.unwrap_or(self.kind.alg());
        let payload = target.payload();
        let shown_payload = if options.tamper_payload {
            let mut altered: Value = serde_json::from_slice(&payload).unwrap();
            altered["targetArtifact"]["annotations"] = json!({"tampered": "true"});
            serde_json::to_vec(&altered).unwrap()
        } else {
            payload.clone()
        };
        let thumbprints = self
            .chain
            .iter()
            .map(|der| hex::encode(Sha256::digest(der)))
            .collect();
        match options.format {
            Format::Jws => {
                let protected = URL_SAFE_NO_PAD.encode(jws_protected(alg, options).to_string());
                let signing_input = format!("{protected}.{}", URL_SAFE_NO_PAD.encode(&payload));
                let signature = self.raw_sign(alg, signing_input.as_bytes());
                let mut header = json!({
                    "x5c": self.chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
                    HEADER_AGENT: "crigate-test-signer",
                });
                if let Some(timestamper) = timestamper {
                    header[HEADER_TIMESTAMP] = json!(STANDARD.encode(timestamper(&signature)));
                }
                let bytes = serde_json::to_vec(&json!({
                    "payload": URL_SAFE_NO_PAD.encode(&shown_payload),
                    "protected": protected,
                    "header": header,
                    "signature": URL_SAFE_NO_PAD.encode(&signature),
                }))
                .unwrap();
                SignedEnvelope {
                    media_type: MEDIA_TYPE_JWS,
                    bytes,
                    signature,
                    thumbprints,
                }
            }
            Format::Cose => {
                let protected = cose_protected(alg, options);
                // RFC 9052 4.4: Sig_structure = ["Signature1", protected, external_aad, payload].
                let mut to_sign = Vec::new();
                cbor_head(4, 4, &mut to_sign);
                cbor_text("Signature1", &mut to_sign);
                cbor_bytes(&protected, &mut to_sign);
                cbor_bytes(&[], &mut to_sign);
                cbor_bytes(&payload, &mut to_sign);
                let signature = self.raw_sign(alg, &to_sign);
                let token = timestamper.map(|t| t(&signature));
                // COSE_Sign1 (tag 18): [protected, unprotected, payload, signature].
                let mut out = Vec::new();
                cbor_head(6, 18, &mut out);
                cbor_head(4, 4, &mut out);
                cbor_bytes(&protected, &mut out);
                cbor_head(5, 2 + u64::from(token.is_some()), &mut out);
                // x5chain (RFC 9360): an array when there is more than one certificate.
                cbor_head(0, 33, &mut out);
                cbor_head(4, self.chain.len() as u64, &mut out);
                for cert in &self.chain {
                    cbor_bytes(cert, &mut out);
                }
                cbor_text(HEADER_AGENT, &mut out);
                cbor_text("crigate-test-signer", &mut out);
                if let Some(token) = token {
                    cbor_text(HEADER_TIMESTAMP, &mut out);
                    cbor_bytes(&token, &mut out);
                }
                cbor_bytes(&shown_payload, &mut out);
                cbor_bytes(&signature, &mut out);
                SignedEnvelope {
                    media_type: MEDIA_TYPE_COSE,
                    bytes: out,
                    signature,
                    thumbprints,
                }
            }
        }
    }

    /// RSASSA-PSS with salt length = hash length, or ECDSA as fixed-width `r || s`
    /// (RFC 7518 3.4/3.5, RFC 9053 2.1, RFC 8230 2).
    fn raw_sign(&self, alg: Alg, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            LeafKey::Rsa(key) => {
                let encoding: &'static dyn lc::RsaEncoding = match alg {
                    Alg::Ps256 => &lc::RSA_PSS_SHA256,
                    Alg::Ps384 => &lc::RSA_PSS_SHA384,
                    Alg::Es256 | Alg::Es384 => panic!("{alg:?} does not fit an RSA key"),
                };
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(encoding, &rng, message, &mut signature).unwrap();
                signature
            }
            LeafKey::Ec(key) => key.sign(&rng, message).unwrap().as_ref().to_vec(),
        }
    }
}

fn jws_protected(alg: Alg, options: &SignOptions) -> Value {
    let (scheme, time_header) = match options.scheme {
        Scheme::X509 => ("notary.x509", HEADER_SIGNING_TIME),
        Scheme::SigningAuthority => ("notary.x509.signingAuthority", HEADER_AUTHENTIC_TIME),
    };
    let mut crit = vec![HEADER_SCHEME.to_owned()];
    if options.scheme == Scheme::SigningAuthority {
        crit.push(HEADER_AUTHENTIC_TIME.to_owned());
    }
    let mut header = json!({
        "alg": alg.jws_name(),
        "cty": PAYLOAD_CTY,
        HEADER_SCHEME: scheme,
        time_header: rfc3339(options.signing_time),
    });
    if let Some(expiry) = options.expiry {
        crit.push(HEADER_EXPIRY.to_owned());
        header[HEADER_EXPIRY] = json!(rfc3339(expiry));
    }
    if let Some((name, value)) = &options.extra_critical {
        crit.push(name.clone());
        header[name.as_str()] = json!(value);
    }
    header["crit"] = json!(crit);
    header
}

/// The protected header map of a COSE envelope: alg (1), crit (2), content type (3) and
/// the Notary Project text labels; times are tag 1 epoch seconds.
fn cose_protected(alg: Alg, options: &SignOptions) -> Vec<u8> {
    let (scheme, time_header) = match options.scheme {
        Scheme::X509 => ("notary.x509", HEADER_SIGNING_TIME),
        Scheme::SigningAuthority => ("notary.x509.signingAuthority", HEADER_AUTHENTIC_TIME),
    };
    let mut crit = vec![HEADER_SCHEME.to_owned()];
    if options.scheme == Scheme::SigningAuthority {
        crit.push(HEADER_AUTHENTIC_TIME.to_owned());
    }
    if options.expiry.is_some() {
        crit.push(HEADER_EXPIRY.to_owned());
    }
    if let Some((name, _)) = &options.extra_critical {
        crit.push(name.clone());
    }
    let entries =
        5 + u64::from(options.expiry.is_some()) + u64::from(options.extra_critical.is_some());
    let mut out = Vec::new();
    cbor_head(5, entries, &mut out);
    cbor_head(0, 1, &mut out);
    cbor_int(alg.cose_value(), &mut out);
    cbor_head(0, 2, &mut out);
    cbor_head(4, crit.len() as u64, &mut out);
    for name in &crit {
        cbor_text(name, &mut out);
    }
    cbor_head(0, 3, &mut out);
    cbor_text(PAYLOAD_CTY, &mut out);
    cbor_text(HEADER_SCHEME, &mut out);
    cbor_text(scheme, &mut out);
    cbor_text(time_header, &mut out);
    cbor_time(options.signing_time, &mut out);
    if let Some(expiry) = options.expiry {
        cbor_text(HEADER_EXPIRY, &mut out);
        cbor_time(expiry, &mut out);
    }
    if let Some((name, value)) = &options.extra_critical {
        cbor_text(name, &mut out);
        cbor_text(value, &mut out);
    }
    out
}

fn rfc3339(unix: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(unix).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A CBOR head (RFC 8949 3): major type and argument, shortest form.
fn cbor_head(major: u8, value: u64, out: &mut Vec<u8>) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

fn cbor_int(value: i64, out: &mut Vec<u8>) {
    if value >= 0 {
        cbor_head(0, value as u64, out);
    } else {
        cbor_head(1, (-1 - value) as u64, out);
    }
}

fn cbor_text(text: &str, out: &mut Vec<u8>) {
    cbor_head(3, text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

fn cbor_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    cbor_head(2, bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Tag 1 (epoch-based date/time), integer seconds.
fn cbor_time(unix: i64, out: &mut Vec<u8>) {
    cbor_head(6, 1, out);
    cbor_int(unix, out);
}

/// Pushes each envelope as a Notation signature manifest whose `subject` is `target`
/// (in `repo`), and the referrers tag schema index (`sha256-<hex>`) listing them all,
/// replacing any earlier index (OCI distribution spec, "Referrers Tag Schema"; notation
/// writes the same on registries without the referrers API).
pub async fn push_signatures(
    registry: &Registry,
    repo: &str,
    target: &Target,
    envelopes: &[SignedEnvelope],
) {
    let empty = b"{}";
    let config_digest = registry.push_blob(repo, empty).await.unwrap();
    let mut listed = Vec::new();
    for envelope in envelopes {
        let blob_digest = registry.push_blob(repo, &envelope.bytes).await.unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": NOTATION_ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_CONFIG, "digest": config_digest, "size": empty.len()},
            "layers": [{
                "mediaType": envelope.media_type,
                "digest": blob_digest,
                "size": envelope.bytes.len(),
            }],
            "subject": target.json(),
            "annotations": {
                "io.cncf.notary.x509chain.thumbprint#S256":
                    serde_json::to_string(&envelope.thumbprints).unwrap(),
                "org.opencontainers.image.created": rfc3339(now()),
            },
        }))
        .unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        registry
            .push_manifest(repo, &digest, OCI_MANIFEST, &manifest)
            .await
            .unwrap();
        listed.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": manifest.len(),
            "artifactType": NOTATION_ARTIFACT_TYPE,
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": listed,
    }))
    .unwrap();
    registry
        .push_manifest(repo, &target.digest.replace(':', "-"), OCI_INDEX, &index)
        .await
        .unwrap();
}

/// Writes a Notation configuration directory: `trustpolicy.json` and each store file at
/// `truststore/x509/<kind>/<name>/<file>`.
pub fn write_notation_dir(dir: &Path, policy: &Value, stores: &[StoreFile<'_>]) {
    std::fs::write(
        dir.join("trustpolicy.json"),
        serde_json::to_vec_pretty(policy).unwrap(),
    )
    .unwrap();
    for store in stores {
        let path = dir
            .join("truststore/x509")
            .join(store.kind)
            .join(store.name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join(store.file), store.pem).unwrap();
    }
}

/// A trust policy document (version 1.0) with one statement.
pub fn trust_policy(
    name: &str,
    scopes: &[&str],
    level: &str,
    stores: &[&str],
    identities: &[&str],
) -> Value {
    trust_policy_of(vec![statement(name, scopes, level, stores, identities)])
}

/// A trust policy document (version 1.0) with `statements`.
pub fn trust_policy_of(statements: Vec<Value>) -> Value {
    json!({"version": "1.0", "trustPolicies": statements})
}

/// One trust policy statement; a `skip` statement has no stores or identities.
pub fn statement(
    name: &str,
    scopes: &[&str],
    level: &str,
    stores: &[&str],
    identities: &[&str],
) -> Value {
    let mut statement = json!({
        "name": name,
        "registryScopes": scopes,
        "signatureVerification": {"level": level},
    });
    if level != "skip" {
        statement["trustStores"] = json!(stores);
        statement["trustedIdentities"] = json!(identities);
    }
    statement
}

/// An authority information access extension naming `url` as the OCSP responder:
/// AuthorityInfoAccessSyntax ::= SEQUENCE OF AccessDescription { id-ad-ocsp,
/// uniformResourceIdentifier [6] } (RFC 5280 4.2.2.1), short lengths only.
fn ocsp_access(url: &str) -> rcgen::CustomExtension {
    let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
    let uri = [&[0x86, url.len() as u8][..], url.as_bytes()].concat();
    let entry = [&[0x30, (oid.len() + uri.len()) as u8][..], &oid, &uri].concat();
    let syntax = [&[0x30, entry.len() as u8][..], &entry].concat();
    rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], syntax)
}

/// A time-stamping authority: a root CA (the `tsa` trust store entry) and a TSA
/// certificate with EKU timeStamping, both ECDSA P-256, valid 2024 to 2040. Tokens are
/// RFC 3161 TimeStampTokens (CMS SignedData over a TSTInfo), assembled as DER here.
pub struct NotationTsa {
    pub root_pem: String,
    root_der: Vec<u8>,
    cert_der: Vec<u8>,
    subject_key_id: Vec<u8>,
    key: KeyPair,
}

/// How a timestamp's signed attributes name the TSA certificate.
#[derive(Clone)]
pub enum Ess {
    /// signing-certificate-v2 (RFC 5035) with its SHA-256 hash.
    V2,
    /// signing-certificate (RFC 2634) alone, with its SHA-1 hash.
    V1,
    /// signing-certificate alone, with this hash.
    V1Hash(Vec<u8>),
}

// === impl NotationTsa ===

impl NotationTsa {
    pub fn generate(cn: &str) -> Self {
        let root = NotationCa::generate(&format!("{cn} root"));
        Self::issued_by(&root, cn, |_| {})
    }

    /// A TSA certificate issued by `root` with serial number `serial`, naming `ocsp_url`
    /// as its OCSP responder (the authority information access of
    /// [`NotationCa::leaf_with_ocsp`]).
    pub fn with_ocsp(root: &NotationCa, cn: &str, serial: u64, ocsp_url: &str) -> Self {
        Self::issued_by(root, cn, |params| {
            params.serial_number = Some(rcgen::SerialNumber::from(serial));
            params.custom_extensions.push(ocsp_access(ocsp_url));
        })
    }

    fn issued_by(
        root: &NotationCa,
        cn: &str,
        more: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "crigate test");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        // RFC 3161 2.3: extendedKeyUsage critical, timeStamping alone. rcgen writes the
        // extension non-critical, so it is written here: SEQUENCE { id-kp-timeStamping }.
        let mut eku = rcgen::CustomExtension::from_oid_content(
            &[2, 5, 29, 37],
            vec![0x30, 10, 0x06, 8, 0x2b, 6, 1, 5, 5, 7, 3, 8],
        );
        eku.set_criticality(true);
        params.custom_extensions.push(eku);
        // rcgen writes the subject key identifier (which the token's sid names) only with
        // basicConstraints present.
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        more(&mut params);
        let subject_key_id = params.key_identifier(&key);
        let cert = params.signed_by(&key, &root.issuer).unwrap();
        Self {
            root_pem: root.cert_pem.clone(),
            root_der: root.cert_der.clone(),
            cert_der: cert.der().to_vec(),
            subject_key_id,
            key,
        }
    }

    /// An RFC 3161 TimeStampToken whose messageImprint is SHA-256 of `signature`,
    /// genTime `gen_time` (Unix seconds), accuracy one second; signed attributes
    /// content-type, message-digest and signing-certificate-v2 (RFC 5035); the TSA
    /// identified by subject key identifier; the TSA certificate and its root included.
    pub fn timestamp(&self, signature: &[u8], gen_time: i64) -> Vec<u8> {
        self.timestamp_naming(signature, gen_time, Ess::V2)
    }

    /// [`timestamp`](Self::timestamp), with the TSA certificate named in the signed
    /// attributes as `ess` says.
    pub fn timestamp_naming(&self, signature: &[u8], gen_time: i64, ess: Ess) -> Vec<u8> {
        use rcgen::SigningKey as _;

        let sha256 = der(0x30, &oid("2.16.840.1.101.3.4.2.1"));
        let t = OffsetDateTime::from_unix_timestamp(gen_time).unwrap();
        let gen_time = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        // TSTInfo (RFC 3161 2.4.2).
        let tst_info = der(
            0x30,
            &[
                der(0x02, &[1]),
                oid("1.3.6.1.4.1.57264.99.1"),
                der(
                    0x30,
                    &[sha256.clone(), der(0x04, &Sha256::digest(signature))].concat(),
                ),
                der(0x02, &[0x2a]),
                der(0x18, gen_time.as_bytes()),
                der(0x30, &der(0x02, &[1])),
            ]
            .concat(),
        );
        let id_ct_tst_info = oid("1.2.840.113549.1.9.16.1.4");
        let attribute = |type_oid: &str, value: Vec<u8>| {
            der(0x30, &[oid(type_oid), der(0x31, &value)].concat())
        };
        // signing-certificate-v2: SEQUENCE { SEQUENCE OF ESSCertIDv2 { certHash } },
        // hashAlgorithm defaulting to SHA-256; signing-certificate (v1): SEQUENCE {
        // SEQUENCE OF ESSCertID { certHash } }, a SHA-1 hash.
        let (ess_oid, cert_hash) = match ess {
            Ess::V2 => (
                "1.2.840.113549.1.9.16.2.47",
                Sha256::digest(&self.cert_der).to_vec(),
            ),
            Ess::V1 => (
                "1.2.840.113549.1.9.16.2.12",
                aws_lc_rs::digest::digest(
                    &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    &self.cert_der,
                )
                .as_ref()
                .to_vec(),
            ),
            Ess::V1Hash(hash) => ("1.2.840.113549.1.9.16.2.12", hash),
        };
        let ess_cert_id = der(0x30, &der(0x04, &cert_hash));
        let mut attributes = [
            attribute("1.2.840.113549.1.9.3", id_ct_tst_info.clone()),
            attribute(
                "1.2.840.113549.1.9.4",
                der(0x04, &Sha256::digest(&tst_info)),
            ),
            attribute(ess_oid, der(0x30, &der(0x30, &ess_cert_id))),
        ];
        // DER SET OF: elements in ascending order of their encodings.
        attributes.sort();
        let attributes = attributes.concat();
        // RFC 5652 5.4: the signature covers the attributes with a SET OF tag.
        let signed = self.key.sign(&der(0x31, &attributes)).unwrap();
        let signer_info = der(
            0x30,
            &[
                der(0x02, &[3]),
                der(0x80, &self.subject_key_id),
                sha256.clone(),
                der(0xa0, &attributes),
                der(0x30, &oid("1.2.840.10045.4.3.2")),
                der(0x04, &signed),
            ]
            .concat(),
        );
        let mut certificates = [self.cert_der.clone(), self.root_der.clone()];
        certificates.sort();
        let signed_data = der(
            0x30,
            &[
                der(0x02, &[3]),
                der(0x31, &sha256),
                der(
                    0x30,
                    &[id_ct_tst_info, der(0xa0, &der(0x04, &tst_info))].concat(),
                ),
                der(0xa0, &certificates.concat()),
                der(0x31, &signer_info),
            ]
            .concat(),
        );
        der(
            0x30,
            &[oid("1.2.840.113549.1.7.2"), der(0xa0, &signed_data)].concat(),
        )
    }
}

/// `der` re-encoded with every length in the four-octet long form, which BER allows and
/// DER does not (X.690 8.1.3.5, 10.1): what a TSA that does not encode lengths minimally
/// sends.
pub fn long_form_lengths(der: &[u8]) -> Vec<u8> {
    fn element(input: &[u8]) -> (Vec<u8>, &[u8]) {
        let tag = input[0];
        let (len, header) = match input[1] {
            short if short < 0x80 => (usize::from(short), 2),
            long => {
                let count = usize::from(long & 0x7f);
                let len = input[2..2 + count]
                    .iter()
                    .fold(0usize, |len, &b| (len << 8) | usize::from(b));
                (len, 2 + count)
            }
        };
        let (value, rest) = input[header..].split_at(len);
        let content = if tag & 0x20 != 0 {
            let mut members = Vec::new();
            let mut remaining = value;
            while !remaining.is_empty() {
                let (member, after) = element(remaining);
                members.extend(member);
                remaining = after;
            }
            members
        } else {
            value.to_vec()
        };
        let mut out = vec![tag, 0x84];
        out.extend((content.len() as u32).to_be_bytes());
        out.extend(content);
        (out, rest)
    }
    element(der).0
}

/// A DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn oid(dotted: &str) -> Vec<u8> {
    der(
        0x06,
        const_oid::ObjectIdentifier::new(dotted).unwrap().as_bytes(),
    )
}
