//! The simple-signing payload cosign signs for an image (cosign `pkg/cosign/payload`,
//! containers/image `docs/containers-signature.5.md`, "JSON Data Format") and the
//! docker-reference check (containers-policy.json(5), `signedIdentity`).
#![deny(clippy::indexing_slicing)]

use serde::Deserialize;

use super::layer::MAX_PAYLOAD_BYTES;
use crate::oci::reference::repository_of;
use crate::oci::Digest;
use crate::verify::Rejection;

/// `critical.type` of a cosign image signature (containers-signature(5): "atomic
/// container signature"; cosign writes its own value, `pkg/cosign/payload/payload.go`).
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";

/// The parts of a simple-signing payload that are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimpleSigning {
    /// `critical.image.docker-manifest-digest`.
    pub manifest_digest: Digest,
    /// `critical.identity.docker-reference`.
    pub docker_reference: String,
}

/// How the signed `docker-reference` must relate to the repository being admitted,
/// following the `signedIdentity` of containers-policy.json(5) as CRI-O applies it.
/// cosign itself does not check it; crigate defaults to [`MatchRepository`].
///
/// [`MatchRepository`]: DockerReferenceCheck::MatchRepository
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DockerReferenceCheck {
    /// The signed reference's repository equals the admitted repository (tag or digest
    /// in the signed reference ignored): `matchRepository`. The default, because a
    /// signature for `registry/test-app` should not admit the same bytes as
    /// `registry/prod-app` unless the operator says so.
    #[default]
    MatchRepository,
    /// The signed reference equals this string exactly: `exactReference`.
    Exact { docker_reference: String },
    /// If the admitted repository starts with `prefix`, it is rewritten to start with
    /// `signed_prefix` before `MatchRepository` applies: `remapIdentity`.
    RemapPrefix {
        prefix: String,
        signed_prefix: String,
    },
    /// Not compared (cosign's behaviour).
    NotChecked,
}

#[derive(Deserialize)]
struct Wire {
    critical: WireCritical,
}

#[derive(Deserialize)]
struct WireCritical {
    #[serde(rename = "type")]
    kind: String,
    image: WireImage,
    identity: WireIdentity,
}

#[derive(Deserialize)]
struct WireImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

#[derive(Deserialize)]
struct WireIdentity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

/// Parses a simple-signing payload. Call only on bytes whose signature verified.
///
/// # Errors
///
/// `Malformed` for a payload over [`MAX_PAYLOAD_BYTES`], not JSON, missing a critical
/// field, of another `critical.type`, or with a digest that does not parse.
pub fn parse_simple_signing(payload: &[u8]) -> Result<SimpleSigning, Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejection::Malformed(format!(
            "payload is {} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit",
            payload.len()
        )));
    }
    let wire: Wire = serde_json::from_slice(payload)
        .map_err(|e| Rejection::Malformed(format!("simple-signing payload: {e}")))?;
    refuse_case_variants(payload)?;
    // containers-signature(5): "critical.type ... consumers MUST reject" other values.
    if wire.critical.kind != COSIGN_SIGNATURE_TYPE {
        return Err(Rejection::Malformed(format!(
            "payload critical.type is {:?}, not {COSIGN_SIGNATURE_TYPE:?}",
            wire.critical.kind
        )));
    }
    let manifest_digest = wire
        .critical
        .image
        .docker_manifest_digest
        .parse::<Digest>()
        .map_err(|e| Rejection::Malformed(format!("payload docker-manifest-digest: {e}")))?;
    Ok(SimpleSigning {
        manifest_digest,
        docker_reference: wire.critical.identity.docker_reference,
    })
}

/// The names each object of the payload is read by, keyed by the object's path.
const FIELDS: [(&[&str], &[&str]); 4] = [
    (&[], &["critical", "optional"]),
    (&["critical"], &["type", "image", "identity"]),
    (&["critical", "image"], &["docker-manifest-digest"]),
    (&["critical", "identity"], &["docker-reference"]),
];

/// Refuses a payload with a key that names one of its fields but for case
/// ([`crate::oci::json`]): a payload holding both `docker-manifest-digest` and
/// `Docker-Manifest-Digest` would name one digest to crigate and another to cosign and to
/// anyone auditing with it.
fn refuse_case_variants(payload: &[u8]) -> Result<(), Rejection> {
    let value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| Rejection::Malformed(format!("simple-signing payload: {e}")))?;
    for (path, fields) in FIELDS {
        let object = path
            .iter()
            .try_fold(&value, |value, name| value.get(name))
            .and_then(serde_json::Value::as_object);
        let Some(object) = object else { continue };
        for key in object.keys() {
            if let Some(field) = crate::oci::json::case_variant(key, fields) {
                return Err(Rejection::Malformed(format!(
                    "payload key {key:?} differs from {field:?} only in case; cosign would \
                     read it as {field:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Checks that the signed manifest digest is the admitted image's digest
/// (containers-signature(5): "critical.image.docker-manifest-digest ... MUST match").
///
/// # Errors
///
/// `DigestMismatch` naming both digests.
pub fn check_manifest_digest(signed: &SimpleSigning, image: &Digest) -> Result<(), Rejection> {
    if signed.manifest_digest == *image {
        Ok(())
    } else {
        Err(Rejection::DigestMismatch {
            signed: signed.manifest_digest.to_string(),
            image: image.clone(),
        })
    }
}

/// Checks the signed `docker-reference` against the admitted repository under `mode`.
///
/// # Errors
///
/// `IdentityNotTrusted` when the reference does not satisfy the mode.
pub fn check_docker_reference(
    signed: &SimpleSigning,
    image_repository: &str,
    mode: &DockerReferenceCheck,
) -> Result<(), Rejection> {
    let ok = match mode {
        DockerReferenceCheck::NotChecked => true,
        DockerReferenceCheck::Exact { docker_reference } => {
            signed.docker_reference == *docker_reference
        }
        DockerReferenceCheck::MatchRepository => {
            normalize_repository(repository_of(&signed.docker_reference))
                == normalize_repository(image_repository)
        }
        DockerReferenceCheck::RemapPrefix {
            prefix,
            signed_prefix,
        } => {
            // containers-policy.json(5), remapIdentity: the prefix matches whole path
            // components only, then the rewritten name is matched as matchRepository.
            let expected = match image_repository.strip_prefix(prefix.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/') => {
                    format!("{signed_prefix}{rest}")
                }
                _ => image_repository.to_owned(),
            };
            normalize_repository(repository_of(&signed.docker_reference))
                == normalize_repository(&expected)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Rejection::IdentityNotTrusted(format!(
            "signed docker-reference {:?} does not name repository {image_repository:?}",
            signed.docker_reference
        )))
    }
}

/// Docker Hub spellings made equal: go-containerregistry (used by cosign) writes
/// `index.docker.io/library/x` where a user writes `x` or `docker.io/x`.
fn normalize_repository(repository: &str) -> String {
    let (domain, path) = match repository.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => ("docker.io", repository),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    if domain == "docker.io" && !path.contains('/') {
        format!("docker.io/library/{path}")
    } else {
        format!("{domain}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:d37ada95d47ad12224c205a938129df7a3e52345828b4fa27b03a98825d1e2e7";

    fn payload(kind: &str, digest: &str, reference: &str) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{kind}"}},"optional":null}}"#
        )
        .into_bytes()
    }

    #[test]
    fn parses_cosign_payload() {
        let p = parse_simple_signing(&payload(COSIGN_SIGNATURE_TYPE, DIGEST, "example.com/app"))
            .unwrap();
        assert_eq!(p.manifest_digest.to_string(), DIGEST);
        assert_eq!(p.docker_reference, "example.com/app");
    }

    #[test]
    fn keys_that_name_a_field_but_for_case_are_malformed() {
        let other = format!("sha256:{}", "ab".repeat(32));
        let good = payload(COSIGN_SIGNATURE_TYPE, DIGEST, "a/b");
        let good = std::str::from_utf8(&good).unwrap();
        // Go's encoding/json would take each of these keys for the field, the later
        // one winning.
        for (from, to) in [
            (
                r#""docker-manifest-digest":"#,
                format!(r#""docker-manifest-digest":"{DIGEST}","Docker-Manifest-Digest":"#),
            ),
            (
                r#""docker-manifest-digest":"#,
                format!(r#""docker-manifest-digest":"{DIGEST}","docker-manifeſt-digest":"#),
            ),
            (
                r#"{"critical":"#,
                format!(
                    r#"{{"Critical":{{"identity":{{"docker-reference":"a/b"}},"image":{{"docker-manifest-digest":"{other}"}},"type":"{COSIGN_SIGNATURE_TYPE}"}},"critical":"#
                ),
            ),
            (r#""image":"#, r#""IMAGE":{},"image":"#.to_owned()),
        ] {
            let bad = good.replacen(from, &to, 1);
            assert_ne!(bad, good);
            let parsed = parse_simple_signing(bad.as_bytes());
            assert!(
                matches!(&parsed, Err(Rejection::Malformed(m)) if m.contains("only in case")),
                "{bad}: {parsed:?}"
            );
        }
        // Other keys, anywhere, are read by neither and stay allowed.
        let extra = good
            .replacen(r#""type":"#, r#""Typo":1,"extra":{"Type":2},"type":"#, 1)
            .replacen(r#""optional":null"#, r#""optional":{"Critical":true}"#, 1);
        let parsed = parse_simple_signing(extra.as_bytes()).unwrap();
        assert_eq!(parsed.manifest_digest.to_string(), DIGEST);
    }

    #[test]
    fn other_type_bad_digest_and_garbage_are_malformed() {
        for bad in [
            payload("atomic container signature", DIGEST, "a/b"),
            payload(COSIGN_SIGNATURE_TYPE, "sha256:abc", "a/b"),
            b"not json".to_vec(),
            br#"{"critical":{}}"#.to_vec(),
        ] {
            assert!(matches!(
                parse_simple_signing(&bad),
                Err(Rejection::Malformed(_))
            ));
        }
    }

    #[test]
    fn payload_limit_is_enforced_at_its_edge() {
        let base = payload(COSIGN_SIGNATURE_TYPE, DIGEST, "a/b");
        for (len, ok) in [
            (MAX_PAYLOAD_BYTES - 1, true),
            (MAX_PAYLOAD_BYTES, true),
            (MAX_PAYLOAD_BYTES + 1, false),
        ] {
            let mut p = base.clone();
            p.resize(len, b' ');
            assert_eq!(parse_simple_signing(&p).is_ok(), ok, "{len} bytes");
        }
    }

    #[test]
    fn other_digest_is_a_digest_mismatch() {
        let p = parse_simple_signing(&payload(COSIGN_SIGNATURE_TYPE, DIGEST, "a/b")).unwrap();
        let other = Digest::sha256(b"other");
        assert!(matches!(
            check_manifest_digest(&p, &other),
            Err(Rejection::DigestMismatch { .. })
        ));
        assert!(check_manifest_digest(&p, &DIGEST.parse().unwrap()).is_ok());
    }

    #[test]
    fn docker_reference_modes() {
        let signed =
            |r: &str| parse_simple_signing(&payload(COSIGN_SIGNATURE_TYPE, DIGEST, r)).unwrap();
        let m = DockerReferenceCheck::MatchRepository;
        assert!(
            check_docker_reference(&signed("example.com/app:v1"), "example.com/app", &m).is_ok()
        );
        assert!(
            check_docker_reference(&signed("localhost:5000/app"), "localhost:5000/app", &m).is_ok()
        );
        assert!(
            check_docker_reference(&signed("index.docker.io/library/busybox"), "busybox", &m)
                .is_ok()
        );
        assert!(matches!(
            check_docker_reference(&signed("example.com/other"), "example.com/app", &m),
            Err(Rejection::IdentityNotTrusted(_))
        ));
        let exact = DockerReferenceCheck::Exact {
            docker_reference: "example.com/app:v1".to_owned(),
        };
        assert!(check_docker_reference(&signed("example.com/app:v1"), "x/y", &exact).is_ok());
        assert!(check_docker_reference(&signed("example.com/app:v2"), "x/y", &exact).is_err());
        let remap = DockerReferenceCheck::RemapPrefix {
            prefix: "mirror.local/hub".to_owned(),
            signed_prefix: "docker.io/library".to_owned(),
        };
        assert!(check_docker_reference(
            &signed("index.docker.io/library/busybox"),
            "mirror.local/hub/busybox",
            &remap
        )
        .is_ok());
        assert!(check_docker_reference(
            &signed("docker.io/library/busybox"),
            "mirror.local/hubx/busybox",
            &remap
        )
        .is_err());
        assert!(
            check_docker_reference(&signed("q/r"), "x/y", &DockerReferenceCheck::NotChecked)
                .is_ok()
        );
    }
}
