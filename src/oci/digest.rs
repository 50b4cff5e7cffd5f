//! Content digests, `algorithm:encoded` (OCI image spec, "Digests").
#![deny(clippy::indexing_slicing)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};

/// An OCI content digest. Built only by parsing or hashing, so it is always well formed:
/// a registered algorithm and an encoded part of the right length in lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    algorithm: DigestAlgorithm,
    encoded: Box<str>,
}

/// The algorithms the OCI image spec registers ("Registered algorithms").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    Sha256,
    Sha512,
}

/// Why a string is not a digest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} has no algorithm prefix (expected sha256:<hex>)")]
    MissingAlgorithm(String),
    #[error("digest algorithm {0:?} is not supported (sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    #[error("{algorithm} digest must be {expected} lowercase hex characters, got {value:?}")]
    BadEncoding {
        algorithm: &'static str,
        expected: usize,
        value: String,
    },
}

/// Content whose hash differs from the digest it was fetched by.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("content hashes to {actual}, expected {expected}")]
pub struct DigestMismatch {
    pub expected: Digest,
    pub actual: Digest,
}

// === impl Digest ===

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Self {
        Self {
            algorithm: DigestAlgorithm::Sha256,
            encoded: hex::encode(Sha256::digest(bytes)).into_boxed_str(),
        }
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn compute(algorithm: DigestAlgorithm, bytes: &[u8]) -> Self {
        let encoded = match algorithm {
            DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(bytes)),
            DigestAlgorithm::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        Self {
            algorithm,
            encoded: encoded.into_boxed_str(),
        }
    }

    /// Checks that `bytes` hash to this digest.
    ///
    /// # Errors
    ///
    /// The content differs from what this digest names.
    pub fn check(&self, bytes: &[u8]) -> Result<(), DigestMismatch> {
        let actual = Self::compute(self.algorithm, bytes);
        if actual == *self {
            Ok(())
        } else {
            Err(DigestMismatch {
                expected: self.clone(),
                actual,
            })
        }
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The encoded (hex) part.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    /// The tag form cosign names its signatures by: `<algorithm>-<hex>` (`sha256-<hex>`).
    pub fn tag_form(&self) -> String {
        format!("{}-{}", self.algorithm, self.encoded)
    }

    /// The tag of the referrers tag schema (OCI distribution spec 1.1, "Referrers Tag
    /// Schema"): `<alg>-<ref>`, the encoded part cut to 64 characters and any character a
    /// tag cannot hold replaced with `-`. The same as [`Digest::tag_form`] for sha256.
    pub fn referrers_tag(&self) -> String {
        let encoded: String = self.encoded.chars().take(64).collect();
        format!("{}-{encoded}", self.algorithm)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, encoded) = s
            .split_once(':')
            .ok_or_else(|| DigestError::MissingAlgorithm(s.to_owned()))?;
        let algorithm = match algorithm {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_owned())),
        };
        let expected = algorithm.hex_len();
        // OCI image spec, "Digests": sha256 and sha512 encoded parts are lowercase hex of
        // fixed length; uppercase is not allowed.
        let well_formed = encoded.len() == expected
            && encoded
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            return Err(DigestError::BadEncoding {
                algorithm: algorithm.name(),
                expected,
                value: encoded.to_owned(),
            });
        }
        Ok(Self {
            algorithm,
            encoded: encoded.into(),
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> Self {
        digest.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.encoded)
    }
}

// === impl DigestAlgorithm ===

impl DigestAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha512 => 128,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashing_and_parsing_agree() {
        let digest = Digest::sha256(b"");
        assert_eq!(digest.to_string(), EMPTY_SHA256);
        assert_eq!(EMPTY_SHA256.parse::<Digest>().unwrap(), digest);
        assert!(digest.check(b"").is_ok());
        let mismatch = digest.check(b"x").unwrap_err();
        assert_eq!(mismatch.expected, digest);
        assert_eq!(mismatch.actual, Digest::sha256(b"x"));
    }

    #[test]
    fn sha512_is_supported() {
        let digest = Digest::compute(DigestAlgorithm::Sha512, b"abc");
        assert_eq!(digest.encoded().len(), 128);
        assert_eq!(digest.to_string().parse::<Digest>().unwrap(), digest);
        assert!(digest.check(b"abc").is_ok());
    }

    #[test]
    fn malformed_digests_are_refused() {
        let hex64 = "a".repeat(64);
        for (input, what) in [
            (hex64.clone(), "no algorithm"),
            (format!("md5:{hex64}"), "unknown algorithm"),
            (format!("sha256:{}", "A".repeat(64)), "uppercase"),
            (format!("sha256:{}", "a".repeat(63)), "short"),
            (format!("sha256:{}", "a".repeat(65)), "long"),
            (format!("sha256:{}g", "a".repeat(63)), "non-hex"),
            (format!("sha512:{hex64}"), "sha512 of sha256 length"),
            ("sha256:".to_owned(), "empty"),
            (format!("SHA256:{hex64}"), "uppercase algorithm"),
        ] {
            assert!(input.parse::<Digest>().is_err(), "{what}: {input}");
        }
    }

    #[test]
    fn tag_form_is_the_referrers_tag() {
        let digest: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(
            digest.tag_form(),
            "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digest.referrers_tag(), digest.tag_form());
    }

    #[test]
    fn a_sha512_referrers_tag_is_cut_to_64_characters_of_its_digest() {
        let hex = "ab".repeat(64);
        let digest: Digest = format!("sha512:{hex}").parse().unwrap();
        assert_eq!(digest.referrers_tag(), format!("sha512-{}", &hex[..64]));
        assert!(digest.referrers_tag().len() <= 128);
        assert_eq!(digest.tag_form(), format!("sha512-{hex}"));
    }

    #[test]
    fn serde_round_trip_validates() {
        let digest: Digest = serde_json::from_str(&format!("\"{EMPTY_SHA256}\"")).unwrap();
        assert_eq!(
            serde_json::to_string(&digest).unwrap(),
            format!("\"{EMPTY_SHA256}\"")
        );
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
