//! COSE_Sign1 envelopes, `application/cose` (Notary Project COSE envelope spec;
//! RFC 9052 4.2). The signature covers the Sig_structure
//! `["Signature1", protected, h'', payload]` (RFC 9052 4.4), rebuilt here from the
//! protected header bytes exactly as received.
#![deny(clippy::indexing_slicing)]

use super::cbor::{self, Value};
use super::chain::MAX_CHAIN_LEN;
use super::crypto::{PssSaltLength, SignatureAlgorithm};
use super::envelope::{
    Envelope, EnvelopeError, Payload, SignedHeaders, HEADER_AUTHENTIC_SIGNING_TIME, HEADER_EXPIRY,
    HEADER_SIGNING_SCHEME, HEADER_SIGNING_TIME, HEADER_TIMESTAMP_SIGNATURE,
    HEADER_VERIFICATION_PLUGIN, MAX_ENVELOPE_BYTES,
};
use super::time::Moment;

/// CBOR tag of COSE_Sign1 (RFC 9052 2).
const TAG_COSE_SIGN1: u64 = 18;
/// CBOR tag of an epoch-based date/time (RFC 8949 3.4.2).
const TAG_EPOCH_TIME: u64 = 1;
const LABEL_ALG: i64 = 1;
const LABEL_CRIT: i64 = 2;
const LABEL_CONTENT_TYPE: i64 = 3;
/// x5chain (RFC 9360 2).
const LABEL_X5CHAIN: i64 = 33;

/// A header label: an integer or a text string (RFC 9052 3).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Label<'a> {
    Int(i64),
    Text(&'a str),
}

/// Parses a COSE_Sign1_Tagged envelope.
///
/// # Errors
///
/// [`EnvelopeError::Malformed`] for anything that is not a Notary Project COSE
/// envelope; [`EnvelopeError::Unsupported`] for an algorithm outside the Notary Project
/// set.
pub(crate) fn parse(data: &[u8]) -> Result<Envelope, EnvelopeError> {
    let malformed = |m: String| EnvelopeError::Malformed(m);
    if data.len() > MAX_ENVELOPE_BYTES {
        return Err(malformed(format!(
            "envelope is {} bytes, over the limit of {MAX_ENVELOPE_BYTES}",
            data.len()
        )));
    }
    let value = cbor::decode(data).map_err(|e| malformed(format!("COSE: {e}")))?;
    // COSE envelope spec: "The signature envelope MUST be a COSE_Sign1_Tagged object."
    let Value::Tag(TAG_COSE_SIGN1, inner) = value else {
        return Err(malformed(
            "COSE envelope is not a COSE_Sign1_Tagged item (tag 18)".into(),
        ));
    };
    let Value::Array(items) = *inner else {
        return Err(malformed("COSE_Sign1 is not an array".into()));
    };
    let [protected, unprotected, payload, signature] = items.as_slice() else {
        return Err(malformed(format!(
            "COSE_Sign1 has {} elements, not 4",
            items.len()
        )));
    };
    let Value::Bytes(protected_bytes) = protected else {
        return Err(malformed(
            "COSE protected header is not a byte string".into(),
        ));
    };
    let Value::Bytes(payload) = payload else {
        return Err(malformed(
            "COSE payload is not an embedded byte string".into(),
        ));
    };
    let Value::Bytes(signature) = signature else {
        return Err(malformed("COSE signature is not a byte string".into()));
    };
    let protected_map = cbor::decode(protected_bytes)
        .map_err(|e| malformed(format!("COSE protected header: {e}")))?;
    let protected_map = labelled(&protected_map, "protected")?;
    let unprotected_map = labelled(unprotected, "unprotected")?;
    // RFC 9052 3: "The same label MUST NOT occur as a label in both the protected and
    // unprotected headers".
    if let Some((label, _)) = unprotected_map
        .iter()
        .find(|(label, _)| protected_map.iter().any(|(p, _)| p == label))
    {
        return Err(malformed(format!(
            "COSE header label {} is both protected and unprotected",
            label_name(label)
        )));
    }

    let mut headers = SignedHeaders::default();
    let mut alg = None;
    for (label, value) in &protected_map {
        match label {
            Label::Int(n) => headers.present_labels.push(*n),
            Label::Text(text) => headers.present.push((*text).to_owned()),
        }
        match label {
            Label::Int(LABEL_ALG) => {
                let id = int(value).ok_or_else(|| malformed("alg is not an integer".into()))?;
                alg = Some(
                    SignatureAlgorithm::from_cose(id)
                        .ok_or_else(|| EnvelopeError::Unsupported(format!("COSE alg {id}")))?,
                );
            }
            Label::Int(LABEL_CRIT) => {
                let Value::Array(list) = value else {
                    return Err(malformed("crit is not an array".into()));
                };
                for entry in list {
                    match to_label(entry)
                        .ok_or_else(|| malformed("crit entry is not a label".into()))?
                    {
                        Label::Int(n) => headers.critical_labels.push(n),
                        Label::Text(text) => headers.critical.push(text.to_owned()),
                    }
                }
            }
            Label::Int(LABEL_CONTENT_TYPE) => {
                let Value::Text(text) = value else {
                    return Err(malformed("content type is not text".into()));
                };
                headers.content_type = Some((*text).to_owned());
            }
            Label::Text(HEADER_SIGNING_SCHEME) => {
                headers.signing_scheme = Some(text(value, HEADER_SIGNING_SCHEME)?)
            }
            Label::Text(HEADER_SIGNING_TIME) => {
                headers.signing_time = Some(time(value, HEADER_SIGNING_TIME)?)
            }
            Label::Text(HEADER_AUTHENTIC_SIGNING_TIME) => {
                headers.authentic_signing_time = Some(time(value, HEADER_AUTHENTIC_SIGNING_TIME)?);
            }
            Label::Text(HEADER_EXPIRY) => headers.expiry = Some(time(value, HEADER_EXPIRY)?),
            Label::Text(HEADER_VERIFICATION_PLUGIN) => {
                headers.verification_plugin = Some(text(value, HEADER_VERIFICATION_PLUGIN)?);
            }
            _ => {}
        }
    }
    let alg = alg.ok_or_else(|| malformed("protected header has no alg".into()))?;

    let mut cert_chain = None;
    let mut timestamp = None;
    for (label, value) in &unprotected_map {
        match label {
            // RFC 9360 2: one certificate as a bstr, several as an array of bstr.
            Label::Int(LABEL_X5CHAIN) => {
                let certs = match value {
                    Value::Bytes(der) => vec![der.to_vec()],
                    Value::Array(list) => {
                        if list.len() > MAX_CHAIN_LEN {
                            return Err(malformed(format!(
                                "x5chain has {} certificates, over {MAX_CHAIN_LEN}",
                                list.len()
                            )));
                        }
                        list.iter()
                            .map(|entry| match entry {
                                Value::Bytes(der) => Ok(der.to_vec()),
                                _ => Err(malformed("x5chain entry is not a byte string".into())),
                            })
                            .collect::<Result<Vec<_>, _>>()?
                    }
                    _ => {
                        return Err(malformed(
                            "x5chain is neither a byte string nor an array".into(),
                        ))
                    }
                };
                cert_chain = Some(certs);
            }
            Label::Text(HEADER_TIMESTAMP_SIGNATURE) => {
                let Value::Bytes(token) = value else {
                    return Err(malformed("timestamp signature is not a byte string".into()));
                };
                timestamp = Some(token.to_vec());
            }
            _ => {}
        }
    }
    let cert_chain =
        cert_chain.ok_or_else(|| malformed("unprotected header has no x5chain (33)".into()))?;
    if cert_chain.is_empty() {
        return Err(malformed("x5chain is empty".into()));
    }

    Ok(Envelope {
        alg,
        pss_salt: PssSaltLength::EqualsHash,
        signing_input: sig_structure(protected_bytes, payload),
        signature: signature.to_vec(),
        payload: Payload::Bytes(payload.to_vec()),
        headers,
        cert_chain,
        timestamp,
    })
}

/// `Sig_structure = ["Signature1", body_protected, external_aad, payload]` with empty
/// external AAD (RFC 9052 4.4).
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(protected.len() + payload.len() + 32);
    cbor::encode_head(4, 4, &mut out);
    cbor::encode_head(3, 10, &mut out);
    out.extend_from_slice(b"Signature1");
    cbor::encode_head(2, protected.len() as u64, &mut out);
    out.extend_from_slice(protected);
    cbor::encode_head(2, 0, &mut out);
    cbor::encode_head(2, payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A header map with unique labels (RFC 9052 3: "Labels in each of the maps MUST be
/// unique").
fn labelled<'v, 'a>(
    value: &'v Value<'a>,
    which: &str,
) -> Result<Vec<(Label<'a>, &'v Value<'a>)>, EnvelopeError> {
    let Value::Map(entries) = value else {
        return Err(EnvelopeError::Malformed(format!(
            "COSE {which} header is not a map"
        )));
    };
    let mut out: Vec<(Label<'a>, &'v Value<'a>)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let key = to_label(key).ok_or_else(|| {
            EnvelopeError::Malformed(format!("COSE {which} header label is not int or text"))
        })?;
        if out.iter().any(|(seen, _)| *seen == key) {
            return Err(EnvelopeError::Malformed(format!(
                "COSE {which} header repeats label {}",
                label_name(&key)
            )));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn to_label<'a>(value: &Value<'a>) -> Option<Label<'a>> {
    match value {
        Value::Text(text) => Some(Label::Text(text)),
        _ => int(value).map(Label::Int),
    }
}

fn label_name(label: &Label<'_>) -> String {
    match label {
        Label::Int(n) => n.to_string(),
        Label::Text(text) => (*text).to_owned(),
    }
}

fn int(value: &Value<'_>) -> Option<i64> {
    match value {
        Value::Unsigned(n) => i64::try_from(*n).ok(),
        Value::Negative(n) => i64::try_from(*n).ok().map(|n| -1 - n),
        _ => None,
    }
}

fn text(value: &Value<'_>, what: &str) -> Result<String, EnvelopeError> {
    match value {
        Value::Text(text) => Ok((*text).to_owned()),
        _ => Err(EnvelopeError::Malformed(format!("{what} is not text"))),
    }
}

/// COSE envelope spec: times are "tdate" values, CBOR tag 1 around an integer epoch.
fn time(value: &Value<'_>, what: &str) -> Result<Moment, EnvelopeError> {
    match value {
        Value::Tag(TAG_EPOCH_TIME, inner) => {
            int(inner).map(Moment::from_unix_seconds).ok_or_else(|| {
                EnvelopeError::Malformed(format!("{what} is not an integer epoch time"))
            })
        }
        _ => Err(EnvelopeError::Malformed(format!(
            "{what} is not a tag-1 time"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `18([<<protected>>, {33: h'3000'}, h'7b7d', h'00'])`.
    fn envelope(protected: &[u8]) -> Vec<u8> {
        let mut out = vec![0xd2, 0x84];
        cbor::encode_head(2, protected.len() as u64, &mut out);
        out.extend_from_slice(protected);
        out.extend([0xa1, 0x18, 0x21, 0x42, 0x30, 0x00]);
        out.extend([0x42, b'{', b'}', 0x41, 0x00]);
        out
    }

    /// {1: -37, 2: ["io.cncf.notary.signingScheme"]}
    fn protected() -> Vec<u8> {
        let mut out = vec![0xa2, 0x01, 0x38, 0x24, 0x02, 0x81];
        cbor::encode_head(3, HEADER_SIGNING_SCHEME.len() as u64, &mut out);
        out.extend_from_slice(HEADER_SIGNING_SCHEME.as_bytes());
        out
    }

    #[test]
    fn parses_a_minimal_envelope() {
        let env = parse(&envelope(&protected())).unwrap();
        assert_eq!(env.alg, SignatureAlgorithm::Ps256);
        assert_eq!(env.cert_chain, vec![vec![0x30, 0x00]]);
        assert_eq!(env.headers.critical, vec![HEADER_SIGNING_SCHEME.to_owned()]);
        assert!(env.signing_input.starts_with(&[0x84, 0x6a]));
    }

    /// A crit entry: an integer label or a text one.
    enum Crit<'a> {
        Int(u8),
        Text(&'a str),
    }

    fn put_text(out: &mut Vec<u8>, text: &str) {
        cbor::encode_head(3, text.len() as u64, out);
        out.extend_from_slice(text.as_bytes());
    }

    /// Notation's protected header (alg, crit, content type, signing scheme and time),
    /// `crit` listing the signing scheme and `crit`, and the text headers `extra`.
    fn notation_protected(crit: &[Crit<'_>], extra: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        cbor::encode_head(5, 5 + extra.len() as u64, &mut out);
        out.extend([0x01, 0x38, 0x24, 0x02]);
        cbor::encode_head(4, 1 + crit.len() as u64, &mut out);
        put_text(&mut out, HEADER_SIGNING_SCHEME);
        for entry in crit {
            match entry {
                Crit::Int(n) => out.push(*n),
                Crit::Text(text) => put_text(&mut out, text),
            }
        }
        out.push(0x03);
        put_text(&mut out, super::super::envelope::PAYLOAD_CONTENT_TYPE);
        put_text(&mut out, HEADER_SIGNING_SCHEME);
        put_text(&mut out, "notary.x509");
        put_text(&mut out, super::super::envelope::HEADER_SIGNING_TIME);
        out.extend([0xc1, 0x19, 0x03, 0xe8]);
        for (name, value) in extra {
            put_text(&mut out, name);
            put_text(&mut out, value);
        }
        out
    }

    #[test]
    fn integer_and_text_labels_are_told_apart_in_crit() {
        let check = |crit: &[Crit<'_>], extra: &[(&str, &str)]| {
            let env = parse(&envelope(&notation_protected(crit, extra))).unwrap();
            super::super::envelope::check_headers(&env.headers).map(|_| ())
        };
        assert_eq!(check(&[], &[]), Ok(()));
        // alg (1) and content type (3) may be critical: they are processed.
        assert_eq!(check(&[Crit::Int(1), Crit::Int(3)], &[]), Ok(()));
        // The text label "1" is not alg: absent, it is a critical header missing.
        assert!(matches!(
            check(&[Crit::Text("1")], &[]),
            Err(EnvelopeError::Malformed(m)) if m.contains("\"1\" is not present")
        ));
        // Present, it and "cty" are extensions crigate does not know.
        for name in ["1", "3", "cty"] {
            assert!(
                matches!(
                    check(&[Crit::Text(name)], &[(name, "x")]),
                    Err(EnvelopeError::Unsupported(_))
                ),
                "{name}"
            );
        }
        // An integer label listed and absent is missing, as a text one is.
        assert!(matches!(
            check(&[Crit::Int(7)], &[]),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn truncations_are_malformed() {
        let good = envelope(&protected());
        for len in 0..good.len() {
            assert!(
                matches!(
                    parse(good.get(..len).unwrap()),
                    Err(EnvelopeError::Malformed(_))
                ),
                "{len}"
            );
        }
    }

    #[test]
    fn bad_alg_is_unsupported() {
        // {1: -257} (RS256)
        let env = envelope(&[0xa1, 0x01, 0x39, 0x01, 0x00]);
        assert!(matches!(parse(&env), Err(EnvelopeError::Unsupported(_))));
    }

    #[test]
    fn structural_errors_are_malformed() {
        let untagged = envelope(&protected()).split_off(1);
        assert!(matches!(parse(&untagged), Err(EnvelopeError::Malformed(_))));
        // Duplicate alg label.
        let dup = envelope(&[0xa2, 0x01, 0x38, 0x24, 0x01, 0x38, 0x24]);
        assert!(matches!(parse(&dup), Err(EnvelopeError::Malformed(_))));
        // No alg.
        assert!(matches!(
            parse(&envelope(&[0xa0])),
            Err(EnvelopeError::Malformed(_))
        ));
        // Detached payload (nil) is not supported.
        let mut detached = envelope(&protected());
        let at = detached.len() - 5;
        detached.splice(at..at + 3, [0xf6]);
        assert!(matches!(parse(&detached), Err(EnvelopeError::Malformed(_))));
    }

    #[test]
    fn envelope_size_limit_holds_at_its_edge() {
        // An envelope whose payload is sized so the whole envelope is `total` bytes.
        let sized = |total: usize| {
            let mut payload_len = total - 64;
            loop {
                let mut out = vec![0xd2, 0x84];
                let protected = protected();
                cbor::encode_head(2, protected.len() as u64, &mut out);
                out.extend_from_slice(&protected);
                out.extend([0xa1, 0x18, 0x21, 0x42, 0x30, 0x00]);
                cbor::encode_head(2, payload_len as u64, &mut out);
                out.extend(std::iter::repeat_n(b' ', payload_len));
                out.extend([0x41, 0x00]);
                match out.len().cmp(&total) {
                    std::cmp::Ordering::Equal => return out,
                    std::cmp::Ordering::Greater => payload_len -= out.len() - total,
                    std::cmp::Ordering::Less => payload_len += total - out.len(),
                }
            }
        };
        assert!(parse(&sized(MAX_ENVELOPE_BYTES - 1)).is_ok());
        assert!(parse(&sized(MAX_ENVELOPE_BYTES)).is_ok());
        assert!(matches!(
            parse(&sized(MAX_ENVELOPE_BYTES + 1)),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
