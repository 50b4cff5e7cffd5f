//! Public keys and the signature algorithms a Notary Project verifier needs: the
//! envelope algorithms (Notary Project signature spec, "Signature Algorithm
//! Requirements") and the X.509/CMS algorithms that sign certificates and timestamp
//! tokens (RSASSA-PKCS1-v1_5, RSASSA-PSS, ECDSA; never SHA-1).
#![deny(clippy::indexing_slicing)]

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use rsa::pkcs1::DecodeRsaPublicKey;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use signature::hazmat::PrehashVerifier;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use super::tlv::{self, DerReader};

pub(crate) const RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_WITH_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// A hash function the Notary Project accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

/// A signature algorithm a Notary Project envelope may use (signature spec, "Signature
/// Algorithm Requirements").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
}

/// The RSASSA-PSS salt lengths an envelope format accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PssSaltLength {
    /// As long as the hash (RFC 8230 2): COSE, as go-cose verifies it
    /// (`rsa.PSSSaltLengthEqualsHash`).
    EqualsHash,
    /// Any length, read from the encoded message (RFC 8017 9.1.2): JWS, as
    /// notation-core-go verifies it through golang-jwt v4 (`verifyJWT`), whose PS256,
    /// PS384 and PS512 verify with `rsa.PSSSaltLengthAuto`.
    Any,
}

/// A public key taken from a certificate.
#[derive(Clone, Debug)]
pub(crate) enum PublicKey {
    /// `RSAPublicKey` DER (PKCS #1), as the certificate carries it; verified with
    /// aws-lc-rs, which takes it as is.
    Rsa {
        pkcs1: Vec<u8>,
        bits: usize,
    },
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

/// How an X.509 certificate or a CMS signer signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum X509Algorithm {
    RsaPkcs1(HashAlgorithm),
    RsaPss {
        hash: HashAlgorithm,
        salt_len: usize,
    },
    Ecdsa(HashAlgorithm),
}

/// Why a key or algorithm cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("public key algorithm {0} is not supported (RSA and ECDSA P-256/P-384/P-521 are)")]
    UnsupportedKey(String),
    #[error("public key is malformed")]
    MalformedKey,
    #[error("signature algorithm {0} is not supported")]
    UnsupportedAlgorithm(String),
    #[error("signature algorithm parameters are malformed")]
    MalformedParameters,
    #[error("signature does not verify")]
    BadSignature,
}

// === impl HashAlgorithm ===

impl HashAlgorithm {
    pub(crate) fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        match *oid {
            ID_SHA256 => Some(Self::Sha256),
            ID_SHA384 => Some(Self::Sha384),
            ID_SHA512 => Some(Self::Sha512),
            _ => None,
        }
    }

    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

// === impl SignatureAlgorithm ===

impl SignatureAlgorithm {
    /// The JWS `alg` names (RFC 7518 3.1).
    pub(crate) fn from_jws(alg: &str) -> Option<Self> {
        match alg {
            "PS256" => Some(Self::Ps256),
            "PS384" => Some(Self::Ps384),
            "PS512" => Some(Self::Ps512),
            "ES256" => Some(Self::Es256),
            "ES384" => Some(Self::Es384),
            "ES512" => Some(Self::Es512),
            _ => None,
        }
    }

    /// The COSE algorithm labels (RFC 9053 2.1, RFC 8230 2; Notary Project COSE
    /// envelope spec, "Protected Headers": -37/-38/-39 and -7/-35/-36).
    pub(crate) fn from_cose(alg: i64) -> Option<Self> {
        match alg {
            -37 => Some(Self::Ps256),
            -38 => Some(Self::Ps384),
            -39 => Some(Self::Ps512),
            -7 => Some(Self::Es256),
            -35 => Some(Self::Es384),
            -36 => Some(Self::Es512),
            _ => None,
        }
    }

    /// The algorithm a signing key must use. Notary Project signature spec, "Algorithm
    /// Selection": the certificate's key type and size determine the algorithm; RSA keys
    /// of other sizes and other curves are not supported.
    pub(crate) fn for_key(key: &PublicKey) -> Option<Self> {
        match key {
            PublicKey::Rsa { bits: 2048, .. } => Some(Self::Ps256),
            PublicKey::Rsa { bits: 3072, .. } => Some(Self::Ps384),
            PublicKey::Rsa { bits: 4096, .. } => Some(Self::Ps512),
            PublicKey::Rsa { .. } => None,
            PublicKey::P256(_) => Some(Self::Es256),
            PublicKey::P384(_) => Some(Self::Es384),
            PublicKey::P521(_) => Some(Self::Es512),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
        }
    }

    /// Verifies an envelope signature: RSASSA-PSS with the salt lengths `pss_salt`
    /// allows (RFC 7518 3.5 and RFC 8230 2 name the hash length), or ECDSA with the
    /// fixed-width `r || s` encoding of JWS and COSE (RFC 7518 3.4, RFC 9053 2.1).
    pub(crate) fn verify(
        self,
        key: &PublicKey,
        pss_salt: PssSaltLength,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        let pss = |hash: HashAlgorithm, pkcs1: &[u8]| {
            let salt_len = match pss_salt {
                PssSaltLength::EqualsHash => Some(hash.len()),
                PssSaltLength::Any => None,
            };
            verify_pss(pkcs1, hash, salt_len, message, signature)
        };
        match (self, key) {
            (Self::Ps256, PublicKey::Rsa { pkcs1, .. }) => pss(HashAlgorithm::Sha256, pkcs1),
            (Self::Ps384, PublicKey::Rsa { pkcs1, .. }) => pss(HashAlgorithm::Sha384, pkcs1),
            (Self::Ps512, PublicKey::Rsa { pkcs1, .. }) => pss(HashAlgorithm::Sha512, pkcs1),
            (Self::Es256, PublicKey::P256(_))
            | (Self::Es384, PublicKey::P384(_))
            | (Self::Es512, PublicKey::P521(_)) => {
                let hash = match self {
                    Self::Es384 => HashAlgorithm::Sha384,
                    Self::Es512 => HashAlgorithm::Sha512,
                    _ => HashAlgorithm::Sha256,
                };
                verify_ecdsa_fixed(key, &hash.digest(message), signature)
            }
            _ => Err(CryptoError::UnsupportedAlgorithm(format!(
                "{} with this key",
                self.name()
            ))),
        }
    }
}

// === impl PublicKey ===

impl PublicKey {
    /// Reads the key of a certificate.
    ///
    /// # Errors
    ///
    /// The key is of an unsupported type or curve, or malformed.
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<Self, CryptoError> {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or(CryptoError::MalformedKey)?;
        match spki.algorithm.oid {
            RSA_ENCRYPTION => {
                // Structure only (modulus and exponent); the arithmetic checks are
                // aws-lc-rs's, at verification.
                let key = rsa::pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(bits)
                    .map_err(|_| CryptoError::MalformedKey)?;
                let modulus_bits = bit_length(key.modulus.as_bytes());
                Ok(Self::Rsa {
                    pkcs1: bits.to_vec(),
                    bits: modulus_bits,
                })
            }
            EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                    .ok_or(CryptoError::MalformedKey)?;
                match curve {
                    SECP256R1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                        .map(Self::P256)
                        .map_err(|_| CryptoError::MalformedKey),
                    SECP384R1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                        .map(Self::P384)
                        .map_err(|_| CryptoError::MalformedKey),
                    SECP521R1 => p521::ecdsa::VerifyingKey::from_sec1_bytes(bits)
                        .map(Self::P521)
                        .map_err(|_| CryptoError::MalformedKey),
                    other => Err(CryptoError::UnsupportedKey(format!("EC curve {other}"))),
                }
            }
            other => Err(CryptoError::UnsupportedKey(other.to_string())),
        }
    }

    /// Key size in bits (modulus length for RSA, field size for EC).
    pub(crate) fn bits(&self) -> usize {
        match self {
            Self::Rsa { bits, .. } => *bits,
            Self::P256(_) => 256,
            Self::P384(_) => 384,
            Self::P521(_) => 521,
        }
    }

    pub(crate) fn is_rsa(&self) -> bool {
        matches!(self, Self::Rsa { .. })
    }
}

// === impl X509Algorithm ===

impl X509Algorithm {
    /// Reads a certificate or CMS signature algorithm. `digest` is the CMS
    /// `digestAlgorithm`, used when the signature algorithm is bare `rsaEncryption`
    /// (RFC 5652 5.3 allows either form).
    ///
    /// # Errors
    ///
    /// SHA-1 and other algorithms are unsupported (signature spec, "Certificate
    /// Requirements": no SHA1WithRSA or ECDSAWithSHA1).
    pub(crate) fn from_identifier(
        alg: &AlgorithmIdentifierOwned,
        digest: Option<HashAlgorithm>,
    ) -> Result<Self, CryptoError> {
        match alg.oid {
            SHA256_WITH_RSA => Ok(Self::RsaPkcs1(HashAlgorithm::Sha256)),
            SHA384_WITH_RSA => Ok(Self::RsaPkcs1(HashAlgorithm::Sha384)),
            SHA512_WITH_RSA => Ok(Self::RsaPkcs1(HashAlgorithm::Sha512)),
            ECDSA_WITH_SHA256 => Ok(Self::Ecdsa(HashAlgorithm::Sha256)),
            ECDSA_WITH_SHA384 => Ok(Self::Ecdsa(HashAlgorithm::Sha384)),
            ECDSA_WITH_SHA512 => Ok(Self::Ecdsa(HashAlgorithm::Sha512)),
            RSA_ENCRYPTION => digest.map(Self::RsaPkcs1).ok_or_else(|| {
                CryptoError::UnsupportedAlgorithm("rsaEncryption without a digest".into())
            }),
            EC_PUBLIC_KEY => digest.map(Self::Ecdsa).ok_or_else(|| {
                CryptoError::UnsupportedAlgorithm("ecPublicKey without a digest".into())
            }),
            RSASSA_PSS => {
                let params = alg
                    .parameters
                    .as_ref()
                    .ok_or(CryptoError::MalformedParameters)?;
                let der = params
                    .to_der()
                    .map_err(|_| CryptoError::MalformedParameters)?;
                pss_parameters(&der)
            }
            other => Err(CryptoError::UnsupportedAlgorithm(other.to_string())),
        }
    }

    /// The hash this algorithm signs with.
    pub(crate) fn hash(self) -> HashAlgorithm {
        match self {
            Self::RsaPkcs1(hash) | Self::Ecdsa(hash) | Self::RsaPss { hash, .. } => hash,
        }
    }

    /// Verifies a signature over `message`; ECDSA signatures are DER `Ecdsa-Sig-Value`.
    pub(crate) fn verify(
        self,
        key: &PublicKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        let digest = self.hash().digest(message);
        match (self, key) {
            (Self::RsaPkcs1(hash), PublicKey::Rsa { pkcs1, .. }) => {
                let algorithm: &'static aws_lc_rs::signature::RsaParameters = match hash {
                    HashAlgorithm::Sha256 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                    HashAlgorithm::Sha384 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA384,
                    HashAlgorithm::Sha512 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512,
                };
                aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, pkcs1)
                    .verify(message, signature)
                    .map_err(|_| CryptoError::BadSignature)
            }
            (Self::RsaPss { hash, salt_len }, PublicKey::Rsa { pkcs1, .. }) => {
                verify_pss(pkcs1, hash, Some(salt_len), message, signature)
            }
            (Self::Ecdsa(_), _) if !key.is_rsa() => {
                let fixed = ecdsa_der_to_fixed(signature, key)?;
                verify_ecdsa_fixed(key, &digest, &fixed)
            }
            _ => Err(CryptoError::UnsupportedAlgorithm(
                "algorithm does not match the key".into(),
            )),
        }
    }
}

/// RSASSA-PSS with MGF1 over the same hash, with a salt of `salt_len` bytes, or of any
/// length when `None` (EMSA-PSS-VERIFY, RFC 8017 9.1.2, with the length taken from the
/// position of DB's 0x01 separator). A salt as long as the hash (what COSE and almost
/// every PSS signature use) aws-lc-rs verifies, tried first; otherwise the `rsa` crate,
/// which takes the length as a parameter or finds it.
fn verify_pss(
    pkcs1: &[u8],
    hash: HashAlgorithm,
    salt_len: Option<usize>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    if salt_len.is_none_or(|len| len == hash.len()) {
        let algorithm: &'static aws_lc_rs::signature::RsaParameters = match hash {
            HashAlgorithm::Sha256 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
            HashAlgorithm::Sha384 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA384,
            HashAlgorithm::Sha512 => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA512,
        };
        let verified = aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, pkcs1)
            .verify(message, signature)
            .is_ok();
        // A salt of any length: one as long as the hash verified here is one the
        // separator search finds too; any other is sought below.
        match (verified, salt_len) {
            (true, _) => return Ok(()),
            (false, Some(_)) => return Err(CryptoError::BadSignature),
            (false, None) => {}
        }
    }
    let key = rsa::PublicKey::from_pkcs1_der(pkcs1).map_err(|_| CryptoError::MalformedKey)?;
    let digest = hash.digest(message);
    let result = match hash {
        HashAlgorithm::Sha256 => key.verify(
            rsa::Pss::<Sha256> {
                salt_len,
                ..rsa::Pss::new()
            },
            &digest,
            signature,
        ),
        HashAlgorithm::Sha384 => key.verify(
            rsa::Pss::<Sha384> {
                salt_len,
                ..rsa::Pss::new()
            },
            &digest,
            signature,
        ),
        HashAlgorithm::Sha512 => key.verify(
            rsa::Pss::<Sha512> {
                salt_len,
                ..rsa::Pss::new()
            },
            &digest,
            signature,
        ),
    };
    result.map_err(|_| CryptoError::BadSignature)
}

fn verify_ecdsa_fixed(
    key: &PublicKey,
    prehash: &[u8],
    signature: &[u8],
) -> Result<(), CryptoError> {
    match key {
        PublicKey::P256(key) => p256::ecdsa::Signature::from_slice(signature)
            .map_err(|_| CryptoError::BadSignature)
            .and_then(|sig| {
                key.verify_prehash(prehash, &sig)
                    .map_err(|_| CryptoError::BadSignature)
            }),
        PublicKey::P384(key) => p384::ecdsa::Signature::from_slice(signature)
            .map_err(|_| CryptoError::BadSignature)
            .and_then(|sig| {
                key.verify_prehash(prehash, &sig)
                    .map_err(|_| CryptoError::BadSignature)
            }),
        PublicKey::P521(key) => p521::ecdsa::Signature::from_slice(signature)
            .map_err(|_| CryptoError::BadSignature)
            .and_then(|sig| {
                key.verify_prehash(prehash, &sig)
                    .map_err(|_| CryptoError::BadSignature)
            }),
        PublicKey::Rsa { .. } => Err(CryptoError::UnsupportedAlgorithm(
            "ECDSA with an RSA key".into(),
        )),
    }
}

/// `Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 2.2.3) to the
/// fixed-width `r || s` form.
fn ecdsa_der_to_fixed(signature: &[u8], key: &PublicKey) -> Result<Vec<u8>, CryptoError> {
    let width = key.bits().div_ceil(8);
    let seq = tlv::single(signature, tlv::SEQUENCE).map_err(|_| CryptoError::BadSignature)?;
    let mut reader = DerReader::new(seq.value);
    let mut fixed = Vec::with_capacity(width * 2);
    for _ in 0..2 {
        let int = reader
            .read(tlv::INTEGER)
            .map_err(|_| CryptoError::BadSignature)?;
        let mut value = int.value;
        while let [0, rest @ ..] = value {
            value = rest;
        }
        if value.len() > width {
            return Err(CryptoError::BadSignature);
        }
        fixed.extend(std::iter::repeat_n(0u8, width - value.len()));
        fixed.extend_from_slice(value);
    }
    reader.finish().map_err(|_| CryptoError::BadSignature)?;
    Ok(fixed)
}

/// RSASSA-PSS-params (RFC 4055 3.1): hash and MGF1 hash must be the same SHA-2 function.
fn pss_parameters(der: &[u8]) -> Result<X509Algorithm, CryptoError> {
    let malformed = |_| CryptoError::MalformedParameters;
    let seq = tlv::single(der, tlv::SEQUENCE).map_err(malformed)?;
    let mut reader = DerReader::new(seq.value);
    // The defaults are SHA-1, which the Notary Project does not accept.
    let hash_alg = reader
        .read_optional(0xa0)
        .map_err(malformed)?
        .ok_or_else(|| CryptoError::UnsupportedAlgorithm("RSASSA-PSS with SHA-1".into()))?;
    let hash = algorithm_hash(hash_alg.value)?;
    let mgf = reader
        .read_optional(0xa1)
        .map_err(malformed)?
        .ok_or_else(|| CryptoError::UnsupportedAlgorithm("RSASSA-PSS with MGF1-SHA-1".into()))?;
    let mgf_alg = AlgorithmIdentifierOwned::from_der(mgf.value)
        .map_err(|_| CryptoError::MalformedParameters)?;
    let mgf_hash = mgf_alg
        .parameters
        .as_ref()
        .and_then(|p| p.to_der().ok())
        .ok_or(CryptoError::MalformedParameters)
        .and_then(|p| algorithm_hash(&p))?;
    if mgf_alg.oid != MGF1 || mgf_hash != hash {
        return Err(CryptoError::UnsupportedAlgorithm(
            "RSASSA-PSS with a different MGF".into(),
        ));
    }
    let salt_len = match reader.read_optional(0xa2).map_err(malformed)? {
        Some(salt) => {
            let int = tlv::single(salt.value, tlv::INTEGER).map_err(malformed)?;
            if int.value.len() > 2 {
                return Err(CryptoError::MalformedParameters);
            }
            int.value
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        }
        None => 20,
    };
    // trailerField, if present, must be 1 (RFC 4055 3.1); anything else is unknown.
    if let Some(trailer) = reader.read_optional(0xa3).map_err(malformed)? {
        if trailer.value != [0x02, 0x01, 0x01] {
            return Err(CryptoError::MalformedParameters);
        }
    }
    reader.finish().map_err(malformed)?;
    Ok(X509Algorithm::RsaPss { hash, salt_len })
}

fn algorithm_hash(der: &[u8]) -> Result<HashAlgorithm, CryptoError> {
    let alg =
        AlgorithmIdentifierOwned::from_der(der).map_err(|_| CryptoError::MalformedParameters)?;
    HashAlgorithm::from_oid(&alg.oid)
        .ok_or_else(|| CryptoError::UnsupportedAlgorithm(alg.oid.to_string()))
}

fn bit_length(big_endian: &[u8]) -> usize {
    let mut bytes = big_endian;
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    match bytes.first() {
        Some(&first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// golang-jwt v4 verifies PS256/384/512 with `rsa.PSSSaltLengthAuto` (notation-core-go
    /// JWS), go-cose with `rsa.PSSSaltLengthEqualsHash`. Signed by `openssl dgst` with
    /// each salt length.
    #[test]
    fn a_jws_pss_signature_may_have_any_salt_length_and_a_cose_one_the_hash_length() {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "key.pem",
        ]);
        let spki = openssl(&["pkey", "-in", "key.pem", "-pubout", "-outform", "DER"]);
        let key =
            PublicKey::from_spki(&SubjectPublicKeyInfoOwned::from_der(&spki).unwrap()).unwrap();
        let message = b"protected.payload";
        std::fs::write(dir.path().join("message"), message).unwrap();
        for (alg, digest, hash_len) in [
            (SignatureAlgorithm::Ps256, "-sha256", "32"),
            (SignatureAlgorithm::Ps512, "-sha512", "64"),
        ] {
            // "max": emLen - hLen - 2 bytes, the longest salt; 0: none.
            for salt in ["0", "20", hash_len, "100", "max"] {
                let salt_opt = format!("rsa_pss_saltlen:{salt}");
                let signature = openssl(&[
                    "dgst",
                    digest,
                    "-sign",
                    "key.pem",
                    "-sigopt",
                    "rsa_padding_mode:pss",
                    "-sigopt",
                    &salt_opt,
                    "message",
                ]);
                let case = format!("{} salt {salt}", alg.name());
                assert!(
                    alg.verify(&key, PssSaltLength::Any, message, &signature)
                        .is_ok(),
                    "{case}: JWS"
                );
                assert_eq!(
                    alg.verify(&key, PssSaltLength::EqualsHash, message, &signature)
                        .is_ok(),
                    salt == hash_len,
                    "{case}: COSE"
                );
                let mut tampered = signature.clone();
                tampered[100] ^= 1;
                for pss_salt in [PssSaltLength::Any, PssSaltLength::EqualsHash] {
                    assert_eq!(
                        alg.verify(&key, pss_salt, message, &tampered),
                        Err(CryptoError::BadSignature),
                        "{case}: tampered"
                    );
                    assert_eq!(
                        alg.verify(&key, pss_salt, b"another message", &signature),
                        Err(CryptoError::BadSignature),
                        "{case}: another message"
                    );
                }
            }
        }
    }

    #[test]
    fn envelope_algorithms_by_name_and_label() {
        assert_eq!(
            SignatureAlgorithm::from_jws("PS384"),
            Some(SignatureAlgorithm::Ps384)
        );
        assert_eq!(SignatureAlgorithm::from_jws("RS256"), None);
        assert_eq!(SignatureAlgorithm::from_jws("none"), None);
        assert_eq!(
            SignatureAlgorithm::from_cose(-37),
            Some(SignatureAlgorithm::Ps256)
        );
        assert_eq!(
            SignatureAlgorithm::from_cose(-36),
            Some(SignatureAlgorithm::Es512)
        );
        assert_eq!(SignatureAlgorithm::from_cose(-257), None);
    }

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[]), 0);
    }

    #[test]
    fn pss_parameters_require_sha2() {
        // RSASSA-PSS-params with all defaults (SHA-1): refused.
        assert!(matches!(
            pss_parameters(&[0x30, 0x00]),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        // SHA-256, MGF1-SHA-256, salt 32 (as OpenSSL writes them).
        let der = hex::decode(concat!(
            "3034a00f300d06096086480165030402010500",
            "a11c301a06092a864886f70d010108300d06096086480165030402010500",
            "a203020120"
        ))
        .unwrap();
        assert_eq!(
            pss_parameters(&der).unwrap(),
            X509Algorithm::RsaPss {
                hash: HashAlgorithm::Sha256,
                salt_len: 32
            }
        );
    }
}
