//! JWS JSON serialization envelopes, `application/jose+json` (Notary Project JWS
//! envelope spec; RFC 7515 7.2.2 flattened syntax).
//!
//! The signature covers `ASCII(BASE64URL(protected) || '.' || BASE64URL(payload))` as
//! transmitted (RFC 7515 5.2), so a re-encoded payload (N14, N17) fails verification
//! rather than being normalised.
#![deny(clippy::indexing_slicing)]

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::chain::MAX_CHAIN_LEN;
use super::crypto::{PssSaltLength, SignatureAlgorithm};
use super::envelope::{
    Envelope, EnvelopeError, Payload, SignedHeaders, HEADER_AUTHENTIC_SIGNING_TIME, HEADER_EXPIRY,
    HEADER_SIGNING_SCHEME, HEADER_SIGNING_TIME, HEADER_TIMESTAMP_SIGNATURE,
    HEADER_VERIFICATION_PLUGIN, MAX_ENVELOPE_BYTES,
};
use super::time::Moment;

/// The flattened JWS JSON serialization, members as Notation writes them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    payload: String,
    protected: String,
    header: UniqueMap,
    signature: String,
}

/// A JSON object whose member names are unique (RFC 7515 4: "The Header Parameter
/// names within the JOSE Header MUST be unique"; crigate rejects duplicates rather than
/// taking the last).
struct UniqueMap(Vec<(String, Value)>);

/// Parses a JWS envelope.
///
/// # Errors
///
/// [`EnvelopeError::Malformed`] for anything that is not a Notary Project JWS envelope;
/// [`EnvelopeError::Unsupported`] for an `alg` outside the Notary Project set.
pub(crate) fn parse(data: &[u8]) -> Result<Envelope, EnvelopeError> {
    let malformed = |m: String| EnvelopeError::Malformed(m);
    if data.len() > MAX_ENVELOPE_BYTES {
        return Err(malformed(format!(
            "envelope is {} bytes, over the limit of {MAX_ENVELOPE_BYTES}",
            data.len()
        )));
    }
    let jws: Flattened =
        serde_json::from_slice(data).map_err(|e| malformed(format!("JWS JSON: {e}")))?;
    let protected_json = URL_SAFE_NO_PAD
        .decode(&jws.protected)
        .map_err(|e| malformed(format!("protected header is not base64url: {e}")))?;
    let protected: UniqueMap = serde_json::from_slice(&protected_json)
        .map_err(|e| malformed(format!("protected header JSON: {e}")))?;
    let signature = URL_SAFE_NO_PAD
        .decode(&jws.signature)
        .map_err(|e| malformed(format!("signature is not base64url: {e}")))?;

    let mut headers = SignedHeaders::default();
    let mut alg = None;
    for (name, value) in &protected.0 {
        headers.present.push(name.clone());
        match name.as_str() {
            "alg" => {
                let text = as_str(value, "alg")?;
                alg = Some(
                    SignatureAlgorithm::from_jws(text)
                        .ok_or_else(|| EnvelopeError::Unsupported(format!("JWS alg {text:?}")))?,
                );
            }
            "crit" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| malformed("crit is not an array".into()))?;
                for entry in list {
                    headers
                        .critical
                        .push(as_str(entry, "crit entry")?.to_owned());
                }
            }
            "cty" => headers.content_type = Some(as_str(value, "cty")?.to_owned()),
            HEADER_SIGNING_SCHEME => headers.signing_scheme = Some(as_str(value, name)?.to_owned()),
            HEADER_SIGNING_TIME => headers.signing_time = Some(time(value, name)?),
            HEADER_AUTHENTIC_SIGNING_TIME => {
                headers.authentic_signing_time = Some(time(value, name)?)
            }
            HEADER_EXPIRY => headers.expiry = Some(time(value, name)?),
            HEADER_VERIFICATION_PLUGIN => {
                headers.verification_plugin = Some(as_str(value, name)?.to_owned())
            }
            // Extended attributes: kept by name so crit can be checked against them.
            _ => {}
        }
    }
    let alg = alg.ok_or_else(|| malformed("protected header has no alg".into()))?;
    check_critical(&headers)?;

    // JWS envelope spec, "Unprotected Headers": x5c (REQUIRED), the timestamp
    // countersignature and the signing agent. Others are unsigned and not processed.
    let mut cert_chain = None;
    let mut timestamp = None;
    for (name, value) in &jws.header.0 {
        match name.as_str() {
            "x5c" => {
                let list = value
                    .as_array()
                    .ok_or_else(|| malformed("x5c is not an array".into()))?;
                if list.len() > MAX_CHAIN_LEN {
                    return Err(malformed(format!(
                        "x5c has {} certificates, over {MAX_CHAIN_LEN}",
                        list.len()
                    )));
                }
                // RFC 7515 4.1.6: each entry is base64 (not base64url) DER.
                let certs = list
                    .iter()
                    .map(|entry| {
                        STANDARD
                            .decode(as_str(entry, "x5c entry")?)
                            .map_err(|e| malformed(format!("x5c entry is not base64: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                cert_chain = Some(certs);
            }
            HEADER_TIMESTAMP_SIGNATURE => {
                let token = STANDARD
                    .decode(as_str(value, name)?)
                    .map_err(|e| malformed(format!("timestamp signature is not base64: {e}")))?;
                timestamp = Some(token);
            }
            _ => {}
        }
    }
    let cert_chain = cert_chain.ok_or_else(|| malformed("unprotected header has no x5c".into()))?;
    if cert_chain.is_empty() {
        return Err(malformed("x5c is empty".into()));
    }

    let mut signing_input = Vec::with_capacity(jws.protected.len() + jws.payload.len() + 1);
    signing_input.extend_from_slice(jws.protected.as_bytes());
    signing_input.push(b'.');
    signing_input.extend_from_slice(jws.payload.as_bytes());
    Ok(Envelope {
        alg,
        pss_salt: PssSaltLength::Any,
        signing_input,
        signature,
        payload: Payload::Base64Url(jws.payload),
        headers,
        cert_chain,
        timestamp,
    })
}

/// The `crit` list as notation-core-go's JWS envelope takes it (`validateCriticalHeaders`
/// in `signature/jws/jws.go`): each entry is a header the signing scheme requires marked
/// critical (the signing scheme, an expiry, the authentic signing time), named once, or
/// an extended attribute the protected header holds. The JWS and Notary headers the
/// envelope defines otherwise (`alg`, `cty`, `io.cncf.notary.signingTime`, a required
/// one named twice) are refused there, so they are here: a signature notation rejects is
/// not trusted by crigate. Whether each required header is marked at all is
/// [`super::envelope::check_headers`]' part, shared with COSE.
fn check_critical(headers: &SignedHeaders) -> Result<(), EnvelopeError> {
    let mut required = vec![HEADER_SIGNING_SCHEME];
    if headers.expiry.is_some() {
        required.push(HEADER_EXPIRY);
    }
    if headers.signing_scheme.as_deref() == Some("notary.x509.signingAuthority") {
        required.push(HEADER_AUTHENTIC_SIGNING_TIME);
    }
    for name in &headers.critical {
        if let Some(at) = required.iter().position(|r| r == name) {
            required.swap_remove(at);
            continue;
        }
        let defined = matches!(
            name.as_str(),
            "alg"
                | "cty"
                | "crit"
                | HEADER_SIGNING_SCHEME
                | HEADER_SIGNING_TIME
                | HEADER_AUTHENTIC_SIGNING_TIME
                | HEADER_EXPIRY
        );
        if defined || !headers.present.contains(name) {
            return Err(EnvelopeError::Malformed(format!(
                "critical header {name:?} is not a header this signature may mark critical \
                 (a required one named once, or an extended attribute it holds)"
            )));
        }
    }
    Ok(())
}

/// Decodes a JWS payload member after its signature verified.
///
/// # Errors
///
/// The member is not unpadded base64url.
pub(crate) fn decode_payload(encoded: &str) -> Result<Vec<u8>, EnvelopeError> {
    URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|e| EnvelopeError::Malformed(format!("payload is not base64url: {e}")))
}

fn as_str<'v>(value: &'v Value, what: &str) -> Result<&'v str, EnvelopeError> {
    value
        .as_str()
        .ok_or_else(|| EnvelopeError::Malformed(format!("{what} is not a string")))
}

/// JWS envelope spec: the time headers are RFC 3339 strings.
fn time(value: &Value, what: &str) -> Result<Moment, EnvelopeError> {
    Moment::parse_rfc3339(as_str(value, what)?)
        .map_err(|e| EnvelopeError::Malformed(format!("{what}: {e}")))
}

// === impl UniqueMap ===

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor;

        impl<'de> Visitor<'de> for UniqueVisitor {
            type Value = UniqueMap;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with unique member names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMap, A::Error> {
                let mut entries: Vec<(String, Value)> = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Value>()? {
                    if entries.iter().any(|(seen, _)| *seen == name) {
                        return Err(serde::de::Error::custom(format!(
                            "duplicate member {name:?}"
                        )));
                    }
                    entries.push((name, value));
                }
                Ok(UniqueMap(entries))
            }
        }

        deserializer.deserialize_map(UniqueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    fn envelope(protected: &str, header: &str) -> Vec<u8> {
        format!(
            r#"{{"payload":"{}","protected":"{}","header":{header},"signature":"AAAA"}}"#,
            b64("{}"),
            b64(protected)
        )
        .into_bytes()
    }

    const GOOD_HEADER: &str = r#"{"x5c":["MAA="]}"#;

    #[test]
    fn parses_a_minimal_envelope() {
        let env = parse(&envelope(
            r#"{"alg":"PS256","crit":["io.cncf.notary.signingScheme"]}"#,
            GOOD_HEADER,
        ))
        .unwrap();
        assert_eq!(env.alg, SignatureAlgorithm::Ps256);
        assert_eq!(env.cert_chain, vec![vec![0x30, 0x00]]);
        assert_eq!(
            env.headers.critical,
            vec!["io.cncf.notary.signingScheme".to_owned()]
        );
    }

    #[test]
    fn crit_lists_only_what_notation_lets_it_list() {
        let x509 = r#""io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2024-01-01T00:00:00Z""#;
        let authority = r#""io.cncf.notary.signingScheme":"notary.x509.signingAuthority","io.cncf.notary.authenticSigningTime":"2024-01-01T00:00:00Z""#;
        let expiry = r#""io.cncf.notary.expiry":"2030-01-01T00:00:00Z""#;
        let parses = |fields: &str, crit: &str| {
            let protected = format!(r#"{{"alg":"PS256",{fields},"crit":[{crit}]}}"#);
            parse(&envelope(&protected, GOOD_HEADER)).map(drop)
        };
        let scheme = r#""io.cncf.notary.signingScheme""#;
        // What notation writes.
        assert_eq!(parses(x509, scheme), Ok(()));
        assert_eq!(
            parses(
                &format!("{x509},{expiry}"),
                &format!(r#"{scheme},"io.cncf.notary.expiry""#)
            ),
            Ok(())
        );
        assert_eq!(
            parses(
                authority,
                &format!(r#"{scheme},"io.cncf.notary.authenticSigningTime""#)
            ),
            Ok(())
        );
        // An extended attribute the header holds.
        assert_eq!(
            parses(
                &format!(r#"{x509},"com.example.build":"7""#),
                &format!(r#"{scheme},"com.example.build""#)
            ),
            Ok(())
        );
        // What notation-core-go refuses: a defined header that is not required, a
        // required one twice, an attribute the header does not hold.
        for crit in [
            format!(r#"{scheme},"io.cncf.notary.signingTime""#),
            format!(r#"{scheme},"cty""#),
            format!(r#"{scheme},{scheme}"#),
            format!(r#"{scheme},"io.cncf.notary.expiry""#),
            format!(r#"{scheme},"io.cncf.notary.authenticSigningTime""#),
            format!(r#"{scheme},"com.example.build""#),
        ] {
            assert!(
                matches!(parses(x509, &crit), Err(EnvelopeError::Malformed(_))),
                "{crit}"
            );
        }
    }

    #[test]
    fn bad_alg_is_unsupported() {
        for alg in ["RS256", "none", "HS256"] {
            let protected = format!(r#"{{"alg":"{alg}"}}"#);
            assert!(
                matches!(
                    parse(&envelope(&protected, GOOD_HEADER)),
                    Err(EnvelopeError::Unsupported(_))
                ),
                "{alg}"
            );
        }
    }

    #[test]
    fn malformed_inputs_are_malformed() {
        let good = envelope(r#"{"alg":"PS256"}"#, GOOD_HEADER);
        // Every truncation of a valid envelope is refused, none panics.
        for len in 0..good.len() {
            assert!(
                matches!(
                    parse(good.get(..len).unwrap()),
                    Err(EnvelopeError::Malformed(_))
                ),
                "{len}"
            );
        }
        for (input, what) in [
            (
                envelope(r#"{"alg":"PS256","alg":"PS384"}"#, GOOD_HEADER),
                "duplicate header",
            ),
            (envelope(r#"{"alg":"PS256"}"#, r#"{}"#), "no x5c"),
            (envelope(r#"{"alg":"PS256"}"#, r#"{"x5c":[]}"#), "empty x5c"),
            (
                envelope(r#"{"alg":"PS256"}"#, r#"{"x5c":"MAA="}"#),
                "x5c not array",
            ),
            (
                envelope(r#"{"alg":"PS256","crit":"x"}"#, GOOD_HEADER),
                "crit not array",
            ),
            (envelope(r#"{"crit":[]}"#, GOOD_HEADER), "no alg"),
            (
                envelope(
                    r#"{"alg":"PS256","io.cncf.notary.signingTime":"yesterday"}"#,
                    GOOD_HEADER,
                ),
                "bad time",
            ),
            (
                br#"{"payload":"","protected":"","header":{},"signature":"","signatures":[]}"#
                    .to_vec(),
                "general syntax",
            ),
        ] {
            assert!(
                matches!(parse(&input), Err(EnvelopeError::Malformed(_))),
                "{what}"
            );
        }
    }

    #[test]
    fn envelope_size_limit_holds_at_its_edge() {
        let base = envelope(r#"{"alg":"PS256"}"#, GOOD_HEADER);
        let pad = |total: usize| {
            let mut data = base.clone();
            data.resize(total, b' ');
            data
        };
        assert!(parse(&pad(MAX_ENVELOPE_BYTES - 1)).is_ok());
        assert!(parse(&pad(MAX_ENVELOPE_BYTES)).is_ok());
        assert!(matches!(
            parse(&pad(MAX_ENVELOPE_BYTES + 1)),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn chain_length_limit_holds_at_its_edge() {
        let chain = |n: usize| format!(r#"{{"x5c":[{}]}}"#, vec![r#""MAA=""#; n].join(","));
        assert!(parse(&envelope(r#"{"alg":"PS256"}"#, &chain(MAX_CHAIN_LEN - 1))).is_ok());
        assert!(parse(&envelope(r#"{"alg":"PS256"}"#, &chain(MAX_CHAIN_LEN))).is_ok());
        assert!(parse(&envelope(r#"{"alg":"PS256"}"#, &chain(MAX_CHAIN_LEN + 1))).is_err());
    }

    #[test]
    fn padded_payload_is_refused_when_decoded() {
        assert!(decode_payload("e30").is_ok());
        assert!(decode_payload("e30=").is_err());
    }
}
