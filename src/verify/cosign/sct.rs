//! Embedded Signed Certificate Timestamps (RFC 6962 §3.2–3.3) in Fulcio leaves: parsing
//! the TLS-encoded list through a bounded reader and verifying an SCT over the
//! reconstructed precertificate entry. cosign requires one by default (cosign
//! `pkg/cosign/verify.go`, `VerifyEmbeddedSCT`); the `sigstore` crate does not check them.
#![deny(clippy::indexing_slicing)]

use sha2::{Digest as _, Sha256};
use x509_cert::der::asn1::AnyRef;
use x509_cert::der::{Decode, Encode, Reader, SliceReader, Tag, TagNumber, Tagged};
use x509_cert::ext::Extension;

use super::cert::{ParsedCertificate, OID_SCT_LIST};
use super::key::tls_signature_oid;
use super::policy::LogKey;
use crate::verify::Rejection;

/// Most SCTs read from one certificate (Fulcio embeds one; CAs embed 2–5).
pub const MAX_SCTS: usize = 16;

/// One parsed SCT (RFC 6962 §3.2 `SignedCertificateTimestamp`, v1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sct {
    pub log_id: [u8; 32],
    pub timestamp_ms: u64,
    pub extensions: Vec<u8>,
    pub hash_algorithm: u8,
    pub signature_algorithm: u8,
    pub signature: Vec<u8>,
}

/// A length-bounded reader over TLS presentation-language bytes (RFC 5246 §4): a declared
/// length becomes a sub-reader, and leftover bytes are an error.
struct TlsReader<'a> {
    rest: &'a [u8],
}

impl<'a> TlsReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Rejection> {
        if n > self.rest.len() {
            return Err(Rejection::Malformed("SCT list truncated".to_owned()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn uint(&mut self, n: usize) -> Result<u64, Rejection> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn u8(&mut self) -> Result<u8, Rejection> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    /// A `<0..2^(8*len_bytes)-1>` vector as a sub-reader.
    fn vector(&mut self, len_bytes: usize) -> Result<TlsReader<'a>, Rejection> {
        let len = usize::try_from(self.uint(len_bytes)?)
            .map_err(|_| Rejection::Malformed("SCT length out of range".to_owned()))?;
        Ok(TlsReader::new(self.take(len)?))
    }

    fn finish(self) -> Result<(), Rejection> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Rejection::Malformed(
                "trailing bytes in SCT list".to_owned(),
            ))
        }
    }
}

/// Parses a `SignedCertificateTimestampList` (RFC 6962 §3.3).
///
/// # Errors
///
/// `Malformed` for truncated or trailing bytes, more than [`MAX_SCTS`], an empty list;
/// `UnsupportedAlgorithm` for an SCT version other than v1.
pub fn parse_sct_list(bytes: &[u8]) -> Result<Vec<Sct>, Rejection> {
    let mut outer = TlsReader::new(bytes);
    let mut list = outer.vector(2)?;
    outer.finish()?;
    let mut scts = Vec::new();
    while !list.rest.is_empty() {
        if scts.len() == MAX_SCTS {
            return Err(Rejection::Malformed(format!("more than {MAX_SCTS} SCTs")));
        }
        let mut sct = list.vector(2)?;
        // RFC 6962 §3.2: Version v1(0).
        if sct.u8()? != 0 {
            return Err(Rejection::UnsupportedAlgorithm(
                "SCT version other than v1".to_owned(),
            ));
        }
        let mut log_id = [0u8; 32];
        log_id.copy_from_slice(sct.take(32)?);
        let timestamp_ms = sct.uint(8)?;
        let extensions = sct.vector(2)?.rest.to_vec();
        let hash_algorithm = sct.u8()?;
        let signature_algorithm = sct.u8()?;
        let signature = sct.vector(2)?.rest.to_vec();
        sct.finish()?;
        scts.push(Sct {
            log_id,
            timestamp_ms,
            extensions,
            hash_algorithm,
            signature_algorithm,
            signature,
        });
    }
    if scts.is_empty() {
        return Err(Rejection::Malformed("empty SCT list".to_owned()));
    }
    Ok(scts)
}

/// The leaf's TBSCertificate with the SCT list extension removed: the precertificate
/// TBS the log signed (RFC 6962 §3.2: "the TBSCertificate component of the
/// Precertificate ... with the ... SCT extension removed").
///
/// # Errors
///
/// `Malformed` when the TBS does not re-encode.
pub fn precertificate_tbs(leaf: &ParsedCertificate) -> Result<Vec<u8>, Rejection> {
    let malformed = |e: x509_cert::der::Error| Rejection::Malformed(format!("TBSCertificate: {e}"));
    let tbs = AnyRef::from_der(leaf.tbs_der()).map_err(malformed)?;
    let mut reader = SliceReader::new(tbs.value()).map_err(malformed)?;
    let mut content = Vec::new();
    while !reader.is_finished() {
        let element: AnyRef<'_> = reader.decode().map_err(malformed)?;
        // RFC 5280 §4.1: extensions [3] EXPLICIT SEQUENCE OF Extension.
        let extensions_tag = Tag::ContextSpecific {
            constructed: true,
            number: TagNumber(3),
        };
        if element.tag() == extensions_tag {
            let exts_seq = AnyRef::from_der(element.value()).map_err(malformed)?;
            let mut ext_reader = SliceReader::new(exts_seq.value()).map_err(malformed)?;
            let mut kept = Vec::new();
            while !ext_reader.is_finished() {
                let ext: Extension = ext_reader.decode().map_err(malformed)?;
                if ext.extn_id != OID_SCT_LIST {
                    kept.extend(ext.to_der().map_err(malformed)?);
                }
            }
            content.extend(tlv(0xa3, &tlv(0x30, &kept)));
        } else {
            content.extend(element.to_der().map_err(malformed)?);
        }
    }
    Ok(tlv(0x30, &content))
}

/// A DER TLV with a one-byte tag and a definite length (X.690 §8.1.3).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// The bytes an SCT signs for a precertificate entry (RFC 6962 §3.2,
/// `digitally-signed struct { sct_version, signature_type = certificate_timestamp,
/// timestamp, entry_type = precert_entry, PreCert, extensions }`).
///
/// # Errors
///
/// `Malformed` when the TBS or the extensions exceed their TLS length fields.
pub fn signed_entry(
    sct: &Sct,
    issuer_key_hash: &[u8; 32],
    tbs: &[u8],
) -> Result<Vec<u8>, Rejection> {
    let tbs_len = u32::try_from(tbs.len())
        .ok()
        .filter(|l| *l < (1 << 24))
        .ok_or_else(|| Rejection::Malformed("TBSCertificate over 2^24 bytes".to_owned()))?;
    let ext_len = u16::try_from(sct.extensions.len())
        .map_err(|_| Rejection::Malformed("SCT extensions over 2^16 bytes".to_owned()))?;
    let mut out = Vec::with_capacity(tbs.len() + 64);
    out.push(0); // sct_version v1
    out.push(0); // signature_type certificate_timestamp
    out.extend_from_slice(&sct.timestamp_ms.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // entry_type precert_entry
    out.extend_from_slice(issuer_key_hash);
    out.extend_from_slice(tbs_len.to_be_bytes().get(1..).unwrap_or_default());
    out.extend_from_slice(tbs);
    out.extend_from_slice(&ext_len.to_be_bytes());
    out.extend_from_slice(&sct.extensions);
    Ok(out)
}

/// Verifies that the leaf carries an embedded SCT from a configured CT log, signed over
/// the precertificate entry with `issuer`'s key hash (RFC 6962 §3.2: `issuer_key_hash` is
/// the SHA-256 of the issuer's DER SubjectPublicKeyInfo).
///
/// # Errors
///
/// `UntrustedRoot` when the leaf has no SCT or none from a configured log (vector K05b);
/// `Tampered` when an SCT from a configured log does not verify; `Malformed` for a list
/// that does not parse.
pub fn verify_embedded_sct(
    leaf: &ParsedCertificate,
    issuer: &ParsedCertificate,
    ct_log_keys: &[LogKey],
) -> Result<(), Rejection> {
    let Some(list) = leaf.sct_list()? else {
        return Err(Rejection::UntrustedRoot(
            "certificate has no embedded SCT (certificate transparency proof required)".to_owned(),
        ));
    };
    let scts = parse_sct_list(&list)?;
    let tbs = precertificate_tbs(leaf)?;
    let issuer_key_hash: [u8; 32] = Sha256::digest(issuer.spki_der()?).into();
    let mut from_known_log = false;
    for sct in &scts {
        // A log key counts only for SCTs stamped inside its validFor.
        let Some(stamped) =
            std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(sct.timestamp_ms))
        else {
            continue;
        };
        let Some(log) = ct_log_keys
            .iter()
            .find(|k| k.key.key_id() == sct.log_id && k.valid_for.contains(stamped))
        else {
            continue;
        };
        let key = &log.key;
        from_known_log = true;
        let Some(oid) = tls_signature_oid(sct.hash_algorithm, sct.signature_algorithm) else {
            continue;
        };
        let message = signed_entry(sct, &issuer_key_hash, &tbs)?;
        if key.verify_x509(oid, &message, &sct.signature).is_ok() {
            return Ok(());
        }
    }
    if from_known_log {
        Err(Rejection::Tampered(
            "embedded SCT does not verify for this certificate".to_owned(),
        ))
    } else {
        Err(Rejection::UntrustedRoot(
            "no embedded SCT is from a configured certificate transparency log".to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::cosign::key::PublicKey;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/cosign");

    fn vector(path: &str) -> Vec<u8> {
        let path = format!("{VECTORS}/{path}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("vector file {path} missing: {e}"))
    }

    fn cert(path: &str) -> ParsedCertificate {
        ParsedCertificate::from_pem_many(&vector(path))
            .unwrap()
            .remove(0)
    }

    #[test]
    fn fulcio_2023_leaf_sct_verifies_with_ctfe_2022() {
        let leaf = cert("keyless/wabbitnetworks-2023/certificate.pem");
        let issuer = cert("trust/fulcio-intermediate-2022.pem");
        let ctfe: LogKey = PublicKey::from_pem(&vector("trust/ctfe-2022.pub"))
            .unwrap()
            .into();
        assert!(verify_embedded_sct(&leaf, &issuer, std::slice::from_ref(&ctfe)).is_ok());
        // Wrong issuer key hash: the SCT is from a known log but does not verify.
        let root = cert("trust/fulcio-root-2021-10.pem");
        assert!(matches!(
            verify_embedded_sct(&leaf, &root, &[ctfe]),
            Err(Rejection::Tampered(_))
        ));
        // No configured log.
        let other = PublicKey::from_pem(&vector("trust/ctfe-test-2021.pub"))
            .unwrap()
            .into();
        assert!(matches!(
            verify_embedded_sct(&leaf, &issuer, &[other]),
            Err(Rejection::UntrustedRoot(_))
        ));
    }

    #[test]
    fn leaf_without_sct_is_untrusted_when_required() {
        let leaf = cert("keyless/kubewarden-2021/certificate.pem");
        let root = cert("trust/fulcio-root-2021-03.pem");
        let ctfe = PublicKey::from_pem(&vector("trust/ctfe-2022.pub"))
            .unwrap()
            .into();
        assert!(matches!(
            verify_embedded_sct(&leaf, &root, &[ctfe]),
            Err(Rejection::UntrustedRoot(_))
        ));
    }

    #[test]
    fn truncated_and_trailing_lists_are_malformed() {
        let leaf = cert("keyless/wabbitnetworks-2023/certificate.pem");
        let list = leaf.sct_list().unwrap().unwrap();
        assert_eq!(parse_sct_list(&list).unwrap().len(), 1);
        for cut in [0, 1, 2, 10, list.len() - 1] {
            assert!(
                matches!(parse_sct_list(&list[..cut]), Err(Rejection::Malformed(_))),
                "cut {cut}"
            );
        }
        let mut long = list.clone();
        long.push(0);
        assert!(matches!(
            parse_sct_list(&long),
            Err(Rejection::Malformed(_))
        ));
        assert!(matches!(
            parse_sct_list(&[0, 0]),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn long_form_lengths_encode() {
        assert_eq!(tlv(0x30, &[0; 3]), vec![0x30, 3, 0, 0, 0]);
        let long = tlv(0x30, &[0; 300]);
        assert_eq!(&long[..4], &[0x30, 0x82, 0x01, 0x2c]);
    }
}
