//! Public keys: cosign signing keys, Fulcio and Rekor keys, CT log keys.
//!
//! Keys are read as PKIX `SubjectPublicKeyInfo` (PEM label `PUBLIC KEY`) or, for RSA, as
//! PKCS#1 (`RSA PUBLIC KEY`), which is what `cosign generate-key-pair` and KMS exports
//! write. Verification runs on aws-lc-rs, the backend the `sigstore` crate uses.
//!
//! Which hash a cosign signature over a payload uses depends on the cosign version.
//! Before 2.5, cosign hashed with SHA-256 whatever the key (vector C02: P-384 with
//! SHA-256), unless `--signature-digest-algorithm` said otherwise. From 2.5 on, and in v3,
//! cosign loads a key file's signer with sigstore's `LoadDefaultSignerVerifier`
//! (sigstore/cosign `pkg/cosign/keys.go`, `LoadPrivateKey`, with `GetDefaultLoadOptions`
//! adding `WithED25519ph`), which signs with the algorithm sigstore's registry pairs with
//! the key (sigstore/sigstore `pkg/signature/algorithm_registry.go`,
//! `GetDefaultPublicKeyDetails`): P-256 with SHA-256, P-384 with SHA-384, P-521 with
//! SHA-512, RSA with PKCS#1 v1.5 and SHA-256, Ed25519 as Ed25519ph (prehashed with
//! SHA-512, `pkg/signature/ed25519ph.go`), or pure Ed25519 where cosign keeps the old
//! behaviour (no tlog upload). Keyless signing with `--signing-algorithm` signs the same
//! way with the ephemeral key, and sigstore-go verifies a certificate's signature with the
//! key's default hash and, for P-384 and P-521, SHA-256 as well (`pkg/verify/signature.go`,
//! `compatSignatureVerifier`). [`AcceptedDigests`] states which of these a check accepts.
//!
//! Why not `sigstore::crypto::CosignVerificationKey`: its auto-detection binds P-384 to
//! SHA-384 alone, which refuses what older cosign signed (C02). Pure Ed25519 and ECDSA
//! and RSA verify on aws-lc-rs; Ed25519ph, which aws-lc-rs does not offer, on
//! ed25519-dalek.
#![deny(clippy::indexing_slicing)]

use aws_lc_rs::signature::{self as alg, UnparsedPublicKey, VerificationAlgorithm};
use sha2::{Digest as _, Sha256, Sha512};
use x509_cert::der::asn1::{AnyRef, BitString, ObjectIdentifier};
use x509_cert::der::{Decode, Encode};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

/// The largest PEM or DER key we read. An RSA-8192 SPKI is about 1.1 KiB in DER.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// A public key of a kind cosign and Sigstore sign with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    kind: KeyKind,
    /// DER `SubjectPublicKeyInfo`: what log IDs hash (RFC 6962 §3.2, Rekor `logID`).
    spki_der: Vec<u8>,
    /// The `subjectPublicKey` bits: an uncompressed EC point, a PKCS#1 `RSAPublicKey`,
    /// or the 32 Ed25519 bytes; what aws-lc-rs verifies with.
    raw: Vec<u8>,
}

/// The algorithm family and curve of a [`PublicKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Rsa,
    Ed25519,
}

/// A hash applied to the message before an ECDSA or RSA signature (cosign's
/// `--signature-digest-algorithm` values we verify). Pure Ed25519 signs the message itself
/// and ignores it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SignatureDigest {
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

/// Which hashes a cosign signature over a payload may have been made with (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AcceptedDigests {
    /// No digest fixed: SHA-256, as cosign before 2.5 signed with any key,
    /// or the key's default in sigstore's algorithm registry, as cosign 2.5 and later sign
    /// (P-384 SHA-384, P-521 SHA-512; P-256 and RSA SHA-256 either way). An Ed25519 key
    /// accepts pure Ed25519 and Ed25519ph.
    #[default]
    CosignDefaults,
    /// One digest fixed, as cosign `verify --signature-digest-algorithm` fixes it (a
    /// cosign verifier's `signature_digest`, [`super::policy::TrustedKey::with_digest`]): ECDSA
    /// and RSA signatures over that hash only. An Ed25519 key accepts pure Ed25519, which
    /// takes no digest, and Ed25519ph only when the digest is SHA-512, its one hash.
    Only(SignatureDigest),
}

/// One way cosign may have signed: what [`AcceptedDigests`] expands to for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CosignScheme {
    /// ASN.1 DER ECDSA or RSASSA-PKCS1-v1_5 over the digest of the message.
    Hashed(SignatureDigest),
    /// Ed25519 over the message itself (RFC 8032 §5.1).
    PureEd25519,
    /// Ed25519ph over SHA-512 of the message, empty context (RFC 8032 §5.1; sigstore
    /// signs with Go's `ed25519.Options{Hash: crypto.SHA512}`).
    Ed25519ph,
}

/// Why bytes are not a usable public key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("public key is {len} bytes, over the {MAX_KEY_BYTES}-byte limit")]
    TooLarge { len: usize },
    #[error("public key is not PEM")]
    Pem(#[source] pem::PemError),
    #[error("PEM block {0:?} is not a public key (expected PUBLIC KEY or RSA PUBLIC KEY)")]
    Label(String),
    #[error("public key is not valid DER")]
    Der(#[source] x509_cert::der::Error),
    #[error(
        "public key algorithm {0} is not supported (ECDSA P-256/P-384/P-521, RSA, Ed25519 are)"
    )]
    UnsupportedAlgorithm(String),
    #[error("elliptic curve {0} is not supported (P-256, P-384, P-521 are)")]
    UnsupportedCurve(String),
}

/// Why a signature did not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature does not verify")]
    Invalid,
    #[error("signature algorithm {0} is not supported with this key")]
    UnsupportedAlgorithm(String),
}

// === impl PublicKey ===

impl PublicKey {
    /// Reads one PEM public key (`PUBLIC KEY` or `RSA PUBLIC KEY`).
    ///
    /// # Errors
    ///
    /// Not PEM, another PEM label, bad DER, or an algorithm we do not verify.
    pub fn from_pem(pem_bytes: &[u8]) -> Result<Self, KeyError> {
        if pem_bytes.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLarge {
                len: pem_bytes.len(),
            });
        }
        let block = pem::parse(pem_bytes).map_err(KeyError::Pem)?;
        match block.tag() {
            "PUBLIC KEY" => Self::from_spki_der(block.contents()),
            "RSA PUBLIC KEY" => Self::from_pkcs1_der(block.contents()),
            other => Err(KeyError::Label(other.to_owned())),
        }
    }

    /// Reads a DER `SubjectPublicKeyInfo`.
    ///
    /// # Errors
    ///
    /// Bad DER or an unsupported algorithm.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        if der.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLarge { len: der.len() });
        }
        let spki = SubjectPublicKeyInfoOwned::from_der(der).map_err(KeyError::Der)?;
        Self::from_spki(&spki)
    }

    /// Reads a decoded `SubjectPublicKeyInfo` (as found in a certificate).
    ///
    /// # Errors
    ///
    /// An unsupported algorithm or curve.
    pub fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, KeyError> {
        let kind = match spki.algorithm.oid {
            ID_EC_PUBLIC_KEY => {
                // RFC 5480 §2.1.1: namedCurve is the only form allowed in PKIX.
                let curve: ObjectIdentifier = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .ok_or_else(|| KeyError::UnsupportedCurve("(none)".to_owned()))?
                    .decode_as()
                    .map_err(KeyError::Der)?;
                match curve {
                    SECP256R1 => KeyKind::EcdsaP256,
                    SECP384R1 => KeyKind::EcdsaP384,
                    SECP521R1 => KeyKind::EcdsaP521,
                    other => return Err(KeyError::UnsupportedCurve(other.to_string())),
                }
            }
            RSA_ENCRYPTION => KeyKind::Rsa,
            ID_ED25519 => KeyKind::Ed25519,
            other => return Err(KeyError::UnsupportedAlgorithm(other.to_string())),
        };
        let raw = spki
            .subject_public_key
            .as_bytes()
            .ok_or(KeyError::Der(
                x509_cert::der::ErrorKind::Noncanonical {
                    tag: x509_cert::der::Tag::BitString,
                }
                .into(),
            ))?
            .to_vec();
        let spki_der = spki.to_der().map_err(KeyError::Der)?;
        Ok(Self {
            kind,
            spki_der,
            raw,
        })
    }

    /// Reads a DER PKCS#1 `RSAPublicKey` (RFC 8017 §A.1.1).
    fn from_pkcs1_der(der: &[u8]) -> Result<Self, KeyError> {
        // Check that it is one well-formed SEQUENCE before wrapping it.
        let _ = x509_cert::der::asn1::AnyRef::from_der(der).map_err(KeyError::Der)?;
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: RSA_ENCRYPTION,
                parameters: Some(AnyRef::NULL.into()),
            },
            subject_public_key: BitString::from_bytes(der).map_err(KeyError::Der)?,
        };
        Self::from_spki(&spki)
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key as its `subjectPublicKey` bits (for Ed25519, the 32 bytes of RFC 8032).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// SHA-256 of the DER SPKI: a Rekor log ID and an RFC 6962 §3.2 CT `LogID`.
    pub fn key_id(&self) -> [u8; 32] {
        Sha256::digest(&self.spki_der).into()
    }

    /// Verifies a cosign signature over `message` made by any scheme `accepted` allows for
    /// this key ([`AcceptedDigests`]). Every scheme tried is a full signature check under
    /// this key; none is weaker than SHA-256.
    ///
    /// # Errors
    ///
    /// `Invalid` when no accepted scheme verifies it.
    pub fn verify_cosign(
        &self,
        accepted: AcceptedDigests,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let verified = cosign_schemes(self.kind, accepted)
            .iter()
            .any(|scheme| self.verify_scheme(*scheme, message, signature).is_ok());
        if verified {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }

    /// Verifies one signature scheme over `message`: ASN.1 DER ECDSA or
    /// RSASSA-PKCS1-v1_5 over `digest(message)`, or pure Ed25519 over `message` (what
    /// transparency logs and X.509 structures sign with; cosign payloads go through
    /// [`Self::verify_cosign`]).
    ///
    /// # Errors
    ///
    /// The signature does not verify, or the key cannot use `digest`.
    pub fn verify_message(
        &self,
        digest: SignatureDigest,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        use SignatureDigest::{Sha256 as S256, Sha384 as S384, Sha512 as S512};
        let algorithm: &'static dyn VerificationAlgorithm = match (self.kind, digest) {
            (KeyKind::EcdsaP256, S256) => &alg::ECDSA_P256_SHA256_ASN1,
            (KeyKind::EcdsaP256, S384) => &alg::ECDSA_P256_SHA384_ASN1,
            (KeyKind::EcdsaP256, S512) => &alg::ECDSA_P256_SHA512_ASN1,
            (KeyKind::EcdsaP384, S256) => &alg::ECDSA_P384_SHA256_ASN1,
            (KeyKind::EcdsaP384, S384) => &alg::ECDSA_P384_SHA384_ASN1,
            (KeyKind::EcdsaP384, S512) => &alg::ECDSA_P384_SHA512_ASN1,
            (KeyKind::EcdsaP521, S256) => &alg::ECDSA_P521_SHA256_ASN1,
            (KeyKind::EcdsaP521, S384) => &alg::ECDSA_P521_SHA384_ASN1,
            (KeyKind::EcdsaP521, S512) => &alg::ECDSA_P521_SHA512_ASN1,
            (KeyKind::Rsa, S256) => &alg::RSA_PKCS1_2048_8192_SHA256,
            (KeyKind::Rsa, S384) => &alg::RSA_PKCS1_2048_8192_SHA384,
            (KeyKind::Rsa, S512) => &alg::RSA_PKCS1_2048_8192_SHA512,
            (KeyKind::Ed25519, _) => &alg::ED25519,
        };
        self.verify_with(algorithm, message, signature)
    }

    /// Verifies an X.509-style signature (certificate, SCT, SET) whose algorithm is named
    /// by `algorithm_oid` (RFC 5758 §3.2 ECDSA, RFC 4055 §5 RSA, RFC 8410 §6 Ed25519).
    ///
    /// # Errors
    ///
    /// The signature does not verify, or the algorithm does not fit the key.
    pub fn verify_x509(
        &self,
        algorithm_oid: ObjectIdentifier,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let digest = match (self.kind, algorithm_oid) {
            (KeyKind::Ed25519, ID_ED25519) => SignatureDigest::Sha256,
            (KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521, ECDSA_WITH_SHA256)
            | (KeyKind::Rsa, SHA256_WITH_RSA) => SignatureDigest::Sha256,
            (KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521, ECDSA_WITH_SHA384)
            | (KeyKind::Rsa, SHA384_WITH_RSA) => SignatureDigest::Sha384,
            (KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521, ECDSA_WITH_SHA512)
            | (KeyKind::Rsa, SHA512_WITH_RSA) => SignatureDigest::Sha512,
            (_, other) => return Err(SignatureError::UnsupportedAlgorithm(other.to_string())),
        };
        self.verify_message(digest, message, signature)
    }

    fn verify_scheme(
        &self,
        scheme: CosignScheme,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        match (scheme, self.kind) {
            (
                CosignScheme::Hashed(digest),
                KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521 | KeyKind::Rsa,
            ) => self.verify_message(digest, message, signature),
            (CosignScheme::PureEd25519, KeyKind::Ed25519) => {
                self.verify_with(&alg::ED25519, message, signature)
            }
            (CosignScheme::Ed25519ph, KeyKind::Ed25519) => {
                self.verify_ed25519ph(message, signature)
            }
            (CosignScheme::Hashed(_), KeyKind::Ed25519)
            | (
                CosignScheme::PureEd25519 | CosignScheme::Ed25519ph,
                KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521 | KeyKind::Rsa,
            ) => Err(SignatureError::UnsupportedAlgorithm(format!(
                "{scheme:?} with a {:?} key",
                self.kind
            ))),
        }
    }

    /// Ed25519ph (RFC 8032 §5.1 with `PH` = SHA-512 and an empty context), strict: a
    /// non-canonical `S` or a small-order `R` or key is refused.
    fn verify_ed25519ph(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let raw: &[u8; 32] = self
            .raw
            .as_slice()
            .try_into()
            .map_err(|_| SignatureError::Invalid)?;
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(raw).map_err(|_| SignatureError::Invalid)?;
        let signature =
            ed25519_dalek::Signature::from_slice(signature).map_err(|_| SignatureError::Invalid)?;
        key.verify_prehashed_strict(Sha512::new_with_prefix(message), None, &signature)
            .map_err(|_| SignatureError::Invalid)
    }

    fn verify_with(
        &self,
        algorithm: &'static dyn VerificationAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        UnparsedPublicKey::new(algorithm, &self.raw)
            .verify(message, signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// The schemes `accepted` allows for a key of `kind`, the newest cosign's first.
fn cosign_schemes(kind: KeyKind, accepted: AcceptedDigests) -> &'static [CosignScheme] {
    use CosignScheme::{Ed25519ph, Hashed, PureEd25519};
    use SignatureDigest::{Sha256 as S256, Sha384 as S384, Sha512 as S512};
    match (accepted, kind) {
        // sigstore `GetDefaultPublicKeyDetails`, then SHA-256 as cosign before 2.5 and
        // sigstore-go's compatibility verifier for P-384 and P-521.
        (AcceptedDigests::CosignDefaults, KeyKind::EcdsaP256 | KeyKind::Rsa) => &[Hashed(S256)],
        (AcceptedDigests::CosignDefaults, KeyKind::EcdsaP384) => &[Hashed(S384), Hashed(S256)],
        (AcceptedDigests::CosignDefaults, KeyKind::EcdsaP521) => &[Hashed(S512), Hashed(S256)],
        (AcceptedDigests::CosignDefaults, KeyKind::Ed25519)
        | (AcceptedDigests::Only(S512), KeyKind::Ed25519) => &[Ed25519ph, PureEd25519],
        (AcceptedDigests::Only(S256 | S384), KeyKind::Ed25519) => &[PureEd25519],
        (
            AcceptedDigests::Only(S256),
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521 | KeyKind::Rsa,
        ) => &[Hashed(S256)],
        (
            AcceptedDigests::Only(S384),
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521 | KeyKind::Rsa,
        ) => &[Hashed(S384)],
        (
            AcceptedDigests::Only(S512),
            KeyKind::EcdsaP256 | KeyKind::EcdsaP384 | KeyKind::EcdsaP521 | KeyKind::Rsa,
        ) => &[Hashed(S512)],
    }
}

/// The X.509 signature algorithm fitting `key` for TLS-style `DigitallySigned` values
/// (RFC 5246 §7.4.1.4.1: hash and signature bytes).
pub(crate) fn tls_signature_oid(hash: u8, signature: u8) -> Option<ObjectIdentifier> {
    // RFC 5246 §7.4.1.4.1: hash 4 = sha256, 5 = sha384, 6 = sha512; signature 1 = rsa,
    // 3 = ecdsa. RFC 6962 §2.1.4 allows only sha256 with ecdsa or rsa.
    match (hash, signature) {
        (4, 3) => Some(ECDSA_WITH_SHA256),
        (5, 3) => Some(ECDSA_WITH_SHA384),
        (4, 1) => Some(SHA256_WITH_RSA),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/cosign");

    fn vector(path: &str) -> Vec<u8> {
        let path = format!("{VECTORS}/{path}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("vector file {path} missing: {e}"))
    }

    #[test]
    fn reads_every_vector_key_kind() {
        for (file, kind) in [
            ("key/hello-world/ecdsa-p256.pub", KeyKind::EcdsaP256),
            ("key/hello-world/ecdsa-p384.pub", KeyKind::EcdsaP384),
            ("key/hello-world/rsa-2048.pub", KeyKind::Rsa),
            ("key/hello-world/rsa-3072.pub", KeyKind::Rsa),
            ("trust/rekor.pub", KeyKind::EcdsaP256),
        ] {
            assert_eq!(
                PublicKey::from_pem(&vector(file)).unwrap().kind(),
                kind,
                "{file}"
            );
        }
    }

    #[test]
    fn rekor_key_id_is_the_production_log_id() {
        let key = PublicKey::from_pem(&vector("trust/rekor.pub")).unwrap();
        assert_eq!(
            hex::encode(key.key_id()),
            "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
        );
    }

    #[test]
    fn p384_cosign_signature_uses_sha256() {
        let key = PublicKey::from_pem(&vector("key/hello-world/ecdsa-p384.pub")).unwrap();
        let payload = vector("key/hello-world/payload.json");
        let sig = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            vector("key/hello-world/ecdsa-p384.sig"),
        )
        .unwrap();
        assert!(key
            .verify_message(SignatureDigest::Sha256, &payload, &sig)
            .is_ok());
        assert_eq!(
            key.verify_message(SignatureDigest::Sha384, &payload, &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn ed25519_signs_the_message_itself() {
        let pair = Ed25519KeyPair::generate().unwrap();
        let spki = ed25519_spki(pair.public_key().as_ref());
        let key = PublicKey::from_spki_der(&spki).unwrap();
        let sig = pair.sign(b"payload");
        assert!(key
            .verify_message(SignatureDigest::Sha256, b"payload", sig.as_ref())
            .is_ok());
        assert!(key
            .verify_message(SignatureDigest::Sha256, b"other", sig.as_ref())
            .is_err());
    }

    #[test]
    fn rejects_other_pem_labels_and_oversized_input() {
        let cert = vector("trust/fulcio-root-2021-03.pem");
        assert!(matches!(
            PublicKey::from_pem(&cert),
            Err(KeyError::Label(_))
        ));
        let big = vec![b'A'; MAX_KEY_BYTES + 1];
        assert!(matches!(
            PublicKey::from_pem(&big),
            Err(KeyError::TooLarge { .. })
        ));
        assert!(matches!(
            PublicKey::from_spki_der(b"\x30\x00"),
            Err(KeyError::Der(_))
        ));
    }

    #[test]
    fn x509_algorithm_must_fit_the_key() {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&alg::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&alg::ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref()).unwrap();
        let key = PublicKey::from_spki_der(pair.public_key().as_der().unwrap().as_ref()).unwrap();
        let sig = pair.sign(&rng, b"m").unwrap();
        assert!(key
            .verify_x509(ECDSA_WITH_SHA256, b"m", sig.as_ref())
            .is_ok());
        assert!(matches!(
            key.verify_x509(SHA256_WITH_RSA, b"m", sig.as_ref()),
            Err(SignatureError::UnsupportedAlgorithm(_))
        ));
    }

    pub(crate) fn ed25519_spki(raw: &[u8]) -> Vec<u8> {
        let spki = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: ID_ED25519,
                parameters: None,
            },
            subject_public_key: BitString::from_bytes(raw).unwrap(),
        };
        spki.to_der().unwrap()
    }
}
