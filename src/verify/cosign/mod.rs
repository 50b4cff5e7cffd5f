//! cosign signature verification, as pure functions over bytes already fetched.
//!
//! Owns: the legacy `.sig` tag format ([`SignatureLayer`]: simple-signing payload plus
//! annotations), Sigstore bundles attached as OCI referrers ([`SigstoreBundle`], see
//! [`bundle`]), key-based and keyless (Fulcio certificate, Rekor entry, embedded SCT)
//! checks, and the [`CosignPolicy`] they are checked against. Leaves to others: fetching
//! (`registry`), choosing the policy (`policy`), caching verdicts.
//!
//! Implements: containers-signature(5) simple signing as cosign writes it (cosign
//! `specs/SIGNATURE_SPEC.md`); RFC 5280 §6.1 path validation as far as Fulcio needs it;
//! RFC 6962 §3.2 SCTs; Rekor v1 SignedEntryTimestamps and hashedrekord/rekord 0.0.1
//! bodies; RFC 6962 §2.1.1 inclusion proofs and signed-note checkpoints ([`merkle`]).
//!
//! Every check is a named function returning `Err(Rejection)`; [`verify`] runs them per
//! signature in a fixed order and keeps the most informative rejection.
//!
//! # Order of checks for one signature
//!
//! Key-based: signature base64 → signature under a trusted key (`UntrustedRoot`) →
//! with `require_tlog`, the Rekor bundle (SET, body; none is `UntrustedRoot`), without
//! it nothing of the log is read → payload → digest → docker-reference.
//!
//! Keyless: certificate parse → with `require_tlog`, the Rekor bundle if present: parse
//! (`Malformed`), SET (`UntrustedRoot` for an unknown log, `Tampered`), body vs this
//! signature (`Tampered`) → the time it signed: the verified integratedTime, else a
//! verified RFC 3161 timestamp, else `now` → chain to the root of a Fulcio CA valid at
//! that time, through that CA's own certificates (`UntrustedRoot`) → validity of the
//! chain at that time (`Expired`) → `require_tlog` → code-signing EKU → signature over
//! the payload with the leaf key (`Tampered`) → SCT if `require_sct` → identity
//! (`IdentityNotTrusted`) → payload → digest (`DigestMismatch`) → docker-reference
//! (`IdentityNotTrusted`).
//!
//! # Precedence among rejections
//!
//! When no signature is trusted, the reason reported is the highest of all signatures'
//! first failures, in this order: DigestMismatch > IdentityNotTrusted > Expired >
//! Tampered > UntrustedRoot > UnsupportedAlgorithm > Malformed. The order ranks how much
//! of the signature was authentic when it failed: a digest mismatch comes from an
//! otherwise trusted signature, a malformed one proved nothing. Ties keep the first.
#![deny(clippy::indexing_slicing)]

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::oci::Digest;
use crate::verify::{Rejection, Signer, Verdict, VerifierKind};

pub mod bundle;
pub mod cert;
pub mod key;
pub mod layer;
pub mod merkle;
pub mod payload;
pub mod policy;
pub mod rekor;
pub mod sct;

pub use bundle::SigstoreBundle;
pub use cert::{LeafIdentity, ParsedCertificate};
pub use key::{AcceptedDigests, KeyKind, PublicKey, SignatureDigest};
pub use layer::SignatureLayer;
pub use payload::{DockerReferenceCheck, SimpleSigning};
pub use policy::{CosignPolicy, KeylessIdentity, Matcher, PolicyError, TrustedKey, TrustedRoot};

/// Most signatures considered for one image from each of cosign's two places (the `.sig`
/// tag's layers, the referrers); the rest are ignored (and the caller should not fetch
/// them). A `.sig` manifest normally has one to a few layers.
pub const MAX_SIGNATURES: usize = 64;

/// Most signature layers [`verify`] judges: [`MAX_SIGNATURES`] from each place, so that
/// layers in one cannot crowd out a signature in the other.
pub const MAX_LAYERS: usize = 2 * MAX_SIGNATURES;

/// Verifies an image's cosign signatures, legacy `.sig` layers and Sigstore bundles
/// alike: trusted if ANY one signature satisfies ALL of the policy by itself; otherwise
/// the most informative rejection (see the module docs); `NoSignature` when there is
/// none. Bundles whose statement is not a cosign image signature (attestations attached
/// as other referrers) do not count as signatures.
pub fn verify(
    layers: &[SignatureLayer],
    bundles: &[SigstoreBundle],
    image: &Digest,
    image_repository: &str,
    policy: &CosignPolicy,
    now: SystemTime,
) -> Verdict {
    let mut best: Option<Rejection> = None;
    for layer in layers.iter().take(MAX_LAYERS) {
        match verify_layer(layer, image, image_repository, policy, now) {
            Ok(signer) => return Verdict::Trusted(signer),
            Err(rejection) => best = Some(more_informative(best, rejection)),
        }
    }
    let signature_bundles = bundles.iter().filter(|b| bundle::is_image_signature(b));
    for b in signature_bundles.take(MAX_SIGNATURES) {
        match bundle::verify_bundle(b, image, policy, now) {
            Ok(signer) => return Verdict::Trusted(signer),
            Err(rejection) => best = Some(more_informative(best, rejection)),
        }
    }
    Verdict::Rejected(best.unwrap_or_else(|| Rejection::NoSignature(image.clone())))
}

/// Verifies one signature layer against the whole policy.
///
/// # Errors
///
/// The first check that fails, as a [`Rejection`].
pub fn verify_layer(
    layer: &SignatureLayer,
    image: &Digest,
    image_repository: &str,
    policy: &CosignPolicy,
    now: SystemTime,
) -> Result<Signer, Rejection> {
    layer
        .check_limits()
        .map_err(|e| Rejection::Malformed(e.to_string()))?;
    if layer.media_type != layer::SIMPLE_SIGNING_MEDIA_TYPE {
        return Err(Rejection::Malformed(format!(
            "signature layer media type {:?} is not simple signing",
            layer.media_type
        )));
    }
    let signature = decode_signature(&layer.signature_b64)?;
    let mut best: Option<Rejection> = None;
    if !policy.keys.is_empty() {
        match verify_with_key(layer, &signature, image, image_repository, policy) {
            Ok(signer) => return Ok(signer),
            Err(r) => best = Some(more_informative(best, r)),
        }
    }
    if layer.certificate_pem.is_some() && !policy.identities.is_empty() {
        match verify_keyless(layer, &signature, image, image_repository, policy, now) {
            Ok(signer) => return Ok(signer),
            Err(r) => best = Some(more_informative(best, r)),
        }
    }
    Err(best.unwrap_or_else(|| {
        Rejection::UntrustedRoot(if layer.certificate_pem.is_some() {
            "keyless signature, but the policy trusts no keyless identity".to_owned()
        } else {
            "key-based signature, but the policy trusts no key".to_owned()
        })
    }))
}

/// Decodes the signature annotation (standard base64, cosign
/// `pkg/oci/static/signature.go`).
///
/// # Errors
///
/// `Malformed` when it is not base64 or empty.
pub fn decode_signature(signature_b64: &str) -> Result<Vec<u8>, Rejection> {
    let sig = B64
        .decode(signature_b64.trim().as_bytes())
        .map_err(|e| Rejection::Malformed(format!("signature annotation is not base64: {e}")))?;
    if sig.is_empty() {
        return Err(Rejection::Malformed("empty signature".to_owned()));
    }
    Ok(sig)
}

/// Key-based verification (cosign `verify --key`): the signature must verify over the
/// exact payload bytes under one configured key.
fn verify_with_key(
    layer: &SignatureLayer,
    signature: &[u8],
    image: &Digest,
    image_repository: &str,
    policy: &CosignPolicy,
) -> Result<Signer, Rejection> {
    let trusted = check_key_signature(&policy.keys, &layer.payload, signature)?;
    // Without `require_tlog` the log is not consulted (cosign `--insecure-ignore-tlog`
    // skips `VerifyBundle`): a bundle annotation, good or bad, changes nothing.
    if policy.require_tlog {
        let spki = trusted.key.spki_der();
        let certificate = certificate_for_key(layer, spki);
        let signer = match &certificate {
            Some(certificate) => rekor::LoggedSigner::KeyOrItsCertificate {
                spki,
                certificate: certificate.der(),
            },
            None => rekor::LoggedSigner::SpkiDer(spki),
        };
        if check_tlog(layer, signature, signer, policy)?.is_none() {
            return Err(Rejection::UntrustedRoot(
                "no transparency log entry for the signature, and the policy requires one"
                    .to_owned(),
            ));
        }
    }
    let signed = check_payload(layer, image, image_repository, policy)?;
    Ok(Signer {
        verifier: VerifierKind::Cosign,
        identity: trusted.name.clone(),
        issuer: None,
        matched: trusted.name.clone(),
        signed_digest: signed.manifest_digest,
        valid_until: None,
    })
}

/// The layer's certificate, when it is one for the key with DER SPKI `spki`: the form in
/// which cosign logs a key signature made with a certificate beside the key. A
/// certificate for another key, or one that does not parse, is no such form.
fn certificate_for_key(layer: &SignatureLayer, spki: &[u8]) -> Option<ParsedCertificate> {
    let pem = layer.certificate_pem.as_deref()?;
    let leaf = ParsedCertificate::from_pem_many(pem.as_bytes())
        .ok()?
        .into_iter()
        .next()?;
    (leaf.spki_der().ok()? == spki).then_some(leaf)
}

/// Finds the trusted key whose signature over `payload` verifies (cosign
/// `pkg/cosign/verify.go` `VerifyImageSignature`: the payload bytes as stored, not a
/// re-serialization), with a hash the key accepts ([`TrustedKey::digests`]: SHA-256 as
/// older cosign signs, or the key's sigstore default as cosign 2.5 and later sign).
///
/// # Errors
///
/// `UntrustedRoot` when no configured key verifies it (vectors C01c, C05b; a payload
/// altered after signing looks the same, C06).
pub fn check_key_signature<'a>(
    keys: &'a [TrustedKey],
    payload: &[u8],
    signature: &[u8],
) -> Result<&'a TrustedKey, Rejection> {
    keys.iter()
        .find(|k| k.key.verify_cosign(k.digests, payload, signature).is_ok())
        .ok_or_else(|| {
            Rejection::UntrustedRoot(
                "signature does not verify under any trusted key (or the payload was altered)"
                    .to_owned(),
            )
        })
}

/// Verifies the layer's Rekor bundle if present: SET under a configured log key, then the
/// entry body against this very signature. Returns the verified integratedTime, or
/// `None` without a bundle. Called only when the policy consults the log
/// ([`CosignPolicy::require_tlog`]).
fn check_tlog(
    layer: &SignatureLayer,
    signature: &[u8],
    signer: rekor::LoggedSigner<'_>,
    policy: &CosignPolicy,
) -> Result<Option<SystemTime>, Rejection> {
    let Some(json) = &layer.bundle_json else {
        return Ok(None);
    };
    let bundle = rekor::RekorBundle::parse(json.as_bytes())?;
    let integrated = rekor::verify_set(&bundle, &policy.rekor_keys)?;
    rekor::check_entry_body(&bundle.payload, &layer.payload, signature, signer)?;
    Ok(Some(integrated))
}

/// Keyless verification (cosign `verify --certificate-identity ... --certificate-oidc-issuer`).
fn verify_keyless(
    layer: &SignatureLayer,
    signature: &[u8],
    image: &Digest,
    image_repository: &str,
    policy: &CosignPolicy,
    now: SystemTime,
) -> Result<Signer, Rejection> {
    let leaf_pem = layer.certificate_pem.as_deref().unwrap_or_default();
    let leaf = ParsedCertificate::from_pem_many(leaf_pem.as_bytes())
        .map_err(|e| Rejection::Malformed(format!("certificate annotation: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| Rejection::Malformed("certificate annotation is empty".to_owned()))?;
    // The chain annotation is read as cosign reads it (`sig.Chain()`: one that does not
    // parse is an error). Its intermediates may complete a path only to a root
    // configured as PEM, as legacy cosign takes them; a `trusted_root.json` CA is
    // reached through its own intermediates alone (sigstore-go
    // `FulcioCertificateAuthority.Verify`), so a retired intermediate the signer
    // attaches does not make its leaf trusted. A self-issued certificate in it is never
    // an anchor.
    let chain = match &layer.chain_pem {
        Some(pem) => ParsedCertificate::from_pem_many(pem.as_bytes())
            .map_err(|e| Rejection::Malformed(format!("chain annotation: {e}")))?,
        None => Vec::new(),
    };
    let supplied: Vec<&ParsedCertificate> = chain.iter().collect();

    // The log is consulted only with `require_tlog` (cosign `--insecure-ignore-tlog`
    // skips `VerifyBundle`). `require_tlog` itself is applied after the validity check,
    // so that a certificate without a log entry reports why it fails at the time it is
    // judged (vector K01g).
    let logged = if policy.require_tlog {
        check_tlog(
            layer,
            signature,
            rekor::LoggedSigner::CertificateDer(leaf.der()),
            policy,
        )?
    } else {
        None
    };
    // When the certificate was used: the SET's integratedTime; without one, the genTime
    // of the layer's RFC 3161 timestamp from a configured authority (`cosign sign
    // --timestamp-server-url`, typically with `--tlog-upload=false`; cosign
    // `VerifyRFC3161Timestamp` checks it over the raw signature bytes); else now (cosign
    // pkg/cosign/verify.go: CheckExpiry(cert, time.Now()) when neither is there). As for
    // bundles, a SET's time stands and a timestamp beside it is not consulted.
    let stamped = match logged {
        Some(at) => Some(at),
        None => layer_timestamp(layer, signature, policy)?,
    };
    let at = stamped.unwrap_or(now);
    let path = cert::trusted_chain(&leaf, &supplied, policy, at)?;
    cert::check_validity(&path, at)?;
    // Judged at the current time, the trust ends with the chain: a verdict is not kept
    // past the Fulcio certificate's few minutes.
    let valid_until = match stamped {
        Some(_) => None,
        None => path.iter().map(|cert| cert.not_after()).min(),
    };
    if logged.is_none() && policy.require_tlog {
        return Err(Rejection::UntrustedRoot(
            "no transparency log entry for the certificate, and the policy requires one".to_owned(),
        ));
    }
    cert::check_code_signing(&leaf)?;
    check_leaf_signature(&leaf, &layer.payload, signature)?;
    if policy.require_sct {
        let issuer = path.get(1).copied().unwrap_or(&leaf);
        sct::verify_embedded_sct(&leaf, issuer, &policy.ct_log_keys)?;
    }
    let identity = cert::leaf_identity(&leaf)?;
    check_identity(&identity, &policy.identities)?;
    let signed = check_payload(layer, image, image_repository, policy)?;
    Ok(Signer {
        verifier: VerifierKind::Cosign,
        identity: identity
            .subject_alternative_names
            .first()
            .cloned()
            .unwrap_or_default(),
        issuer: identity.issuer,
        matched: path
            .last()
            .map(|root| format!("fulcio root {}", root.inner().tbs_certificate().subject()))
            .unwrap_or_default(),
        signed_digest: signed.manifest_digest,
        valid_until,
    })
}

/// The genTime of the layer's RFC 3161 timestamp annotation, verified over `signature`
/// against the policy's timestamp authorities; `None` when the layer has none, or the
/// policy names no authority.
///
/// # Errors
///
/// `Malformed` for an unreadable annotation; `UntrustedRoot` when the timestamp does not
/// verify against a configured authority.
fn layer_timestamp(
    layer: &SignatureLayer,
    signature: &[u8],
    policy: &CosignPolicy,
) -> Result<Option<SystemTime>, Rejection> {
    #[derive(serde::Deserialize)]
    struct Annotation {
        #[serde(rename = "SignedRFC3161Timestamp")]
        signed_rfc3161_timestamp: String,
    }
    let Some(json) = &layer.rfc3161_timestamp_json else {
        return Ok(None);
    };
    // Without an authority to check it against, a timestamp shows nothing, and the
    // signature is judged as one without (cosign asks for TSA roots only when the
    // operator gives them).
    if policy.timestamp_authorities.is_empty() {
        tracing::debug!(
            "a signature's RFC 3161 timestamp is not read: no timestamp authority is configured"
        );
        return Ok(None);
    }
    let annotation: Annotation = serde_json::from_str(json)
        .map_err(|e| Rejection::Malformed(format!("RFC 3161 timestamp annotation: {e}")))?;
    let response = base64::engine::general_purpose::STANDARD
        .decode(annotation.signed_rfc3161_timestamp.as_bytes())
        .map_err(|e| Rejection::Malformed(format!("RFC 3161 timestamp annotation: {e}")))?;
    bundle::verify_timestamp(&response, signature, policy)
        .map(Some)
        .map_err(|why| {
            Rejection::UntrustedRoot(format!("RFC 3161 timestamp of the signature: {why}"))
        })
}

/// Verifies the payload signature with the certificate's key. cosign before 2.5 signed
/// with SHA-256 and verifies so (`pkg/cosign/verify.go` `ValidateAndUnpackCert` loads the
/// key with `crypto.SHA256`); a Fulcio key made with `cosign sign --signing-algorithm`
/// signs with its sigstore default hash (P-384 SHA-384, P-521 SHA-512, Ed25519ph), which
/// sigstore-go accepts beside SHA-256 (`pkg/verify/signature.go`,
/// `compatSignatureVerifier`). Both are accepted ([`AcceptedDigests::CosignDefaults`]);
/// cosign's `--signature-digest-algorithm` applies to keys, not certificates. The
/// `sigstore` crate's identity checks skip this; here it is required.
///
/// # Errors
///
/// `Tampered`: the certificate is trusted but did not sign these bytes;
/// `UnsupportedAlgorithm` for a key we cannot verify with.
pub fn check_leaf_signature(
    leaf: &ParsedCertificate,
    payload: &[u8],
    signature: &[u8],
) -> Result<(), Rejection> {
    leaf.public_key()?
        .verify_cosign(AcceptedDigests::CosignDefaults, payload, signature)
        .map_err(|e| match e {
            key::SignatureError::Invalid => Rejection::Tampered(
                "signature does not verify with the certificate's key".to_owned(),
            ),
            key::SignatureError::UnsupportedAlgorithm(a) => Rejection::UnsupportedAlgorithm(a),
        })
}

/// Matches the leaf's SANs and OIDC issuer against the accepted identities (cosign
/// `pkg/cosign/verify.go` `CheckCertificatePolicy`).
///
/// # Errors
///
/// `IdentityNotTrusted` when no identity matches (vectors K01b, K01c).
pub fn check_identity(
    identity: &LeafIdentity,
    accepted: &[KeylessIdentity],
) -> Result<(), Rejection> {
    if accepted.iter().any(|a| {
        a.matches(
            &identity.subject_alternative_names,
            identity.issuer.as_deref(),
        )
    }) {
        Ok(())
    } else {
        Err(Rejection::IdentityNotTrusted(format!(
            "certificate identity {:?} (issuer {:?}) is not an accepted signer",
            identity.subject_alternative_names, identity.issuer
        )))
    }
}

/// Parses the (authenticated) payload and checks digest and docker-reference.
fn check_payload(
    layer: &SignatureLayer,
    image: &Digest,
    image_repository: &str,
    policy: &CosignPolicy,
) -> Result<SimpleSigning, Rejection> {
    let signed = payload::parse_simple_signing(&layer.payload)?;
    payload::check_manifest_digest(&signed, image)?;
    payload::check_docker_reference(&signed, image_repository, &policy.docker_reference)?;
    Ok(signed)
}

/// The more informative of two rejections (module docs, "Precedence"); ties keep `best`.
pub fn more_informative(best: Option<Rejection>, candidate: Rejection) -> Rejection {
    match best {
        Some(best) if rank(&best) >= rank(&candidate) => best,
        _ => candidate,
    }
}

fn rank(rejection: &Rejection) -> u8 {
    match rejection {
        // Not a cosign rejection; ranked first as any that a later call may not repeat.
        Rejection::RevocationUnknown(_) => 8,
        Rejection::DigestMismatch { .. } => 7,
        Rejection::IdentityNotTrusted(_) => 6,
        Rejection::Expired(_) => 5,
        Rejection::Tampered(_) => 4,
        Rejection::UntrustedRoot(_) => 3,
        Rejection::UnsupportedAlgorithm(_) => 2,
        Rejection::Malformed(_) => 1,
        Rejection::NoSignature(_) => 0,
    }
}

/// Fuzz entry point: parses arbitrary bytes as every input this module reads from a
/// registry (payload, annotations, Rekor bundle, certificates, SCT list, checkpoint) and
/// runs a full verification with an empty policy. Must return, never panic.
pub fn fuzz_signature(data: &[u8]) {
    let _ = payload::parse_simple_signing(data);
    let _ = rekor::RekorBundle::parse(data);
    let _ = sct::parse_sct_list(data);
    let _ = ParsedCertificate::from_pem_many(data);
    let _ = ParsedCertificate::from_der(data);
    let _ = PublicKey::from_spki_der(data);
    let _ = merkle::Checkpoint::parse(data);
    let bundle = SigstoreBundle {
        json: data.to_vec(),
    };
    let _ = bundle::is_image_signature(&bundle);
    let _ = bundle::verify_bundle(
        &bundle,
        &Digest::sha256(data),
        &CosignPolicy::default(),
        SystemTime::UNIX_EPOCH,
    );
    let text = String::from_utf8_lossy(data);
    let _ = decode_signature(&text);
    if let Ok(annotations) =
        serde_json::from_slice::<std::collections::BTreeMap<String, String>>(data)
    {
        if let Ok(layer) = SignatureLayer::from_annotations(
            layer::SIMPLE_SIGNING_MEDIA_TYPE,
            &annotations,
            data.to_vec(),
        ) {
            let image = Digest::sha256(data);
            let policy = CosignPolicy {
                identities: vec![KeylessIdentity {
                    subject: Matcher::Exact(String::new()),
                    issuer: None,
                }],
                ..CosignPolicy::default()
            };
            let _ = verify(
                &[layer],
                &[],
                &image,
                "example.com/app",
                &policy,
                SystemTime::UNIX_EPOCH,
            );
        }
    }
}

/// Fuzz entry point: reads `data` as a Sigstore `trusted_root.json` and adds what it
/// gives to a policy. Must return for any input, never panic.
pub fn fuzz_trusted_root(data: &[u8]) {
    if let Ok(root) = TrustedRoot::from_json(data) {
        let mut policy = CosignPolicy::default();
        policy.add_trusted_root(root);
    }
}

#[cfg(test)]
mod digest_tests;
#[cfg(test)]
mod keyless_tests;
#[cfg(test)]
mod tests;
