//! Sigstore bundles (`application/vnd.dev.sigstore.bundle.v0.3+json`, and
//! `application/vnd.dev.sigstore.bundle+json;version=0.1|0.2`) as newer cosign attaches
//! them to an image as OCI referrers (sigstore/protobuf-specs
//! `protos/sigstore_bundle.proto`).
//!
//! What cosign signs in this format for an image (cosign `cmd/cosign/cli/sign/sign.go`,
//! `signDigestBundle`): an in-toto Statement v1 whose single subject has
//! `digest: {"sha256": <hex>}` of the image manifest, `predicateType`
//! `https://sigstore.dev/cosign/sign/v1` and an empty predicate, wrapped in a DSSE
//! envelope (`payloadType` `application/vnd.in-toto+json`) signed with the Fulcio leaf
//! or the key, and logged in Rekor v1 as a `dsse` 0.0.1 entry, or in a Rekor v2 log as a
//! `dsse` 0.0.2 entry (rekor-tiles; no SET, no integratedTime: an inclusion proof whose
//! checkpoint the log signs with Ed25519, and RFC 3161 timestamps from a timestamp
//! authority for the time). A `messageSignature` bundle (`cosign sign-blob`) states nothing about
//! an image and is refused.
//!
//! Checks, in order: bundle parse → verification material → DSSE signature over PAE
//! (DSSE protocol spec, "Signature definition") → with `require_tlog`, the tlog entries:
//! each from a configured log with SET and/or inclusion proof with checkpoint, body vs
//! this envelope, and at least one
//! → keyless: the time it signed (the verified integratedTime, else each verified
//! RFC 3161 genTime; none is a refusal), chain through a Fulcio CA valid at that time,
//! validity at that time, code signing, SCT, identity → statement subject vs image
//! digest. Without `require_tlog` the tlog entries are not read (cosign
//! `--insecure-ignore-tlog`).
//! The statement carries no docker-reference, so `DockerReferenceCheck` does not apply.
//!
//! The DSSE signature's hash follows the rule of `.sig` layers ([`super::key`] module
//! docs): SHA-256, or the key's default in sigstore's algorithm registry (a key fixed
//! to one digest, [`super::policy::TrustedKey::with_digest`], takes that one). An Ed25519 signature may be pure or Ed25519ph: cosign
//! v3 signs a bundle with a key file's default signer, Ed25519ph (cosign
//! `internal/key/svkeypair.go`, `SignData`), while sigstore-go verifies a certificate's
//! DSSE signature as pure Ed25519 (`pkg/verify/signature.go`, `compatSignatureVerifier`).
#![deny(clippy::indexing_slicing)]

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use sha2::{Digest as _, Sha256};

use super::cert::{self, ParsedCertificate};
use super::merkle;
use super::policy::{CosignPolicy, TrustedKey};
use super::rekor::{self, RekorBundle, RekorPayload};
use super::{check_identity, sct};
use crate::oci::{Digest, DigestAlgorithm};
use crate::verify::{Rejection, Signer, VerifierKind};

/// The largest bundle we parse (a keyless bundle with proof and checkpoint is ~6 KiB).
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;
/// Most tlog entries in one bundle; a bundle with more is refused (sigstore-go
/// `internal/limits`, `MaxAllowedTlogEntries`).
pub const MAX_TLOG_ENTRIES: usize = 32;
/// The predicate type of a cosign image signature in bundle form.
pub const COSIGN_SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// A Sigstore bundle's bytes, as fetched from a referrer's layer (digest-checked by the
/// caller). Parsed during verification, so a bad bundle is a `Malformed` rejection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigstoreBundle {
    pub json: Vec<u8>,
}

/// The bundle versions we read, by media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V01,
    V02,
    V03,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBundle {
    media_type: String,
    verification_material: WireMaterial,
    dsse_envelope: Option<WireEnvelope>,
    message_signature: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMaterial {
    certificate: Option<WireRaw>,
    x509_certificate_chain: Option<WireChain>,
    public_key: Option<serde_json::Value>,
    #[serde(default)]
    tlog_entries: Vec<WireTlogEntry>,
    /// RFC 3161 timestamps over the signature (`timestampVerificationData`), the time
    /// evidence of a bundle logged in Rekor v2 ([`signed_times`]).
    timestamp_verification_data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRaw {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct WireChain {
    certificates: Vec<WireRaw>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTlogEntry {
    #[serde(deserialize_with = "int64")]
    log_index: i64,
    /// Needed for a SET; Rekor v2 entries, which have none, may leave it out.
    log_id: Option<WireLogId>,
    kind_version: WireKindVersion,
    /// Absent, or 0, in a Rekor v2 entry: that log states no time.
    #[serde(default, deserialize_with = "int64")]
    integrated_time: i64,
    inclusion_promise: Option<WirePromise>,
    inclusion_proof: Option<WireProof>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLogId {
    key_id: String,
}

#[derive(Deserialize)]
struct WireKindVersion {
    kind: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePromise {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireProof {
    #[serde(deserialize_with = "int64")]
    log_index: i64,
    root_hash: String,
    #[serde(deserialize_with = "int64")]
    tree_size: i64,
    #[serde(default)]
    hashes: Vec<String>,
    checkpoint: Option<WireCheckpoint>,
}

#[derive(Deserialize)]
struct WireCheckpoint {
    envelope: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEnvelope {
    payload: String,
    payload_type: String,
    signatures: Vec<WireDsseSignature>,
}

#[derive(Deserialize)]
struct WireDsseSignature {
    sig: String,
}

#[derive(Deserialize)]
struct WireDsseBody {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    spec: WireDsseSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDsseSpec {
    payload_hash: WireHash,
    signatures: Vec<WireDsseBodySignature>,
}

#[derive(Deserialize)]
struct WireHash {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
struct WireDsseBodySignature {
    signature: String,
    verifier: String,
}

/// A Rekor v2 `dsse` 0.0.2 body (rekor-tiles `api/proto/rekor/v2/dsse.proto`,
/// `DSSELogEntryV002`, in protobuf JSON: hash algorithms by enum name, bytes in base64).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDsseBodyV002 {
    api_version: String,
    kind: String,
    spec: WireSpecV002,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSpecV002 {
    dsse_v002: WireDsseV002,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDsseV002 {
    payload_hash: WireHashV002,
    #[serde(default)]
    signatures: Vec<WireSignatureV002>,
}

#[derive(Deserialize)]
struct WireHashV002 {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
struct WireSignatureV002 {
    content: String,
    verifier: WireVerifierV002,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireVerifierV002 {
    public_key: Option<WireRaw>,
    x509_certificate: Option<WireRaw>,
}

#[derive(Deserialize)]
struct WireStatement {
    #[serde(rename = "_type")]
    kind: String,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    subject: Vec<WireSubject>,
}

#[derive(Deserialize)]
struct WireSubject {
    digest: std::collections::BTreeMap<String, String>,
}

/// protobuf JSON writes int64 as a string; accept a number too.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Number(i64),
        Text(String),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn malformed(what: &str) -> impl Fn(base64::DecodeError) -> Rejection + '_ {
    move |e| Rejection::Malformed(format!("bundle {what}: {e}"))
}

/// DSSE pre-authentication encoding (DSSE protocol spec, "Signature definition"):
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths as ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Whether the bundle is a cosign image signature (and not, say, an SBOM attestation
/// attached as another referrer): its DSSE statement's predicateType. Used only to skip
/// bundles that make no claim to be signatures; skipping can only lower trust.
pub fn is_image_signature(bundle: &SigstoreBundle) -> bool {
    let Ok(wire) = serde_json::from_slice::<WireBundle>(&bundle.json) else {
        return true; // Let verification report it as malformed.
    };
    let Some(envelope) = wire.dsse_envelope else {
        return true;
    };
    let Ok(payload) = B64.decode(envelope.payload.as_bytes()) else {
        return true;
    };
    match serde_json::from_slice::<WireStatement>(&payload) {
        Ok(statement) => statement.predicate_type == COSIGN_SIGN_PREDICATE_TYPE,
        Err(_) => true,
    }
}

/// Verifies one bundle against the whole policy. A keyless certificate is judged at the
/// time the log or a timestamp authority vouches for, and a key at none; `now` counts
/// only for a keyless bundle with neither under a policy that does not consult the log
/// (cosign `--insecure-ignore-tlog`, which then verifies at the current time).
///
/// # Errors
///
/// The first failing check, as a [`Rejection`].
pub fn verify_bundle(
    bundle: &SigstoreBundle,
    image: &Digest,
    policy: &CosignPolicy,
    now: SystemTime,
) -> Result<Signer, Rejection> {
    if bundle.json.len() > MAX_BUNDLE_BYTES {
        return Err(Rejection::Malformed(format!(
            "bundle is {} bytes, over the {MAX_BUNDLE_BYTES}-byte limit",
            bundle.json.len()
        )));
    }
    let wire: WireBundle = serde_json::from_slice(&bundle.json)
        .map_err(|e| Rejection::Malformed(format!("bundle: {e}")))?;
    let version = match wire.media_type.as_str() {
        "application/vnd.dev.sigstore.bundle+json;version=0.1" => Version::V01,
        "application/vnd.dev.sigstore.bundle+json;version=0.2" => Version::V02,
        "application/vnd.dev.sigstore.bundle.v0.3+json"
        | "application/vnd.dev.sigstore.bundle+json;version=0.3" => Version::V03,
        other => {
            return Err(Rejection::UnsupportedAlgorithm(format!(
                "bundle media type {other}"
            )))
        }
    };
    if wire.message_signature.is_some() {
        return Err(Rejection::UnsupportedAlgorithm(
            "messageSignature bundle: not a cosign image signature (DSSE statement expected)"
                .to_owned(),
        ));
    }
    let envelope = wire
        .dsse_envelope
        .ok_or_else(|| Rejection::Malformed("bundle has no content".to_owned()))?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(Rejection::UnsupportedAlgorithm(format!(
            "DSSE payload type {}",
            envelope.payload_type
        )));
    }
    // sigstore_bundle.proto: a bundle's DSSE envelope carries exactly one signature.
    let [dsse_sig] = envelope.signatures.as_slice() else {
        return Err(Rejection::Malformed(
            "DSSE envelope must carry exactly one signature".to_owned(),
        ));
    };
    let payload = B64
        .decode(envelope.payload.as_bytes())
        .map_err(malformed("DSSE payload"))?;
    let signature = B64
        .decode(dsse_sig.sig.as_bytes())
        .map_err(malformed("DSSE signature"))?;
    let signed = pae(&envelope.payload_type, &payload);

    let material = &wire.verification_material;
    let leaf_der = match (&material.certificate, &material.x509_certificate_chain) {
        (Some(raw), _) => Some(
            B64.decode(raw.raw_bytes.as_bytes())
                .map_err(malformed("certificate"))?,
        ),
        (None, Some(chain)) => match chain.certificates.first() {
            Some(raw) => Some(
                B64.decode(raw.raw_bytes.as_bytes())
                    .map_err(malformed("certificate"))?,
            ),
            None => {
                return Err(Rejection::Malformed(
                    "bundle certificate chain is empty".to_owned(),
                ))
            }
        },
        (None, None) => None,
    };
    // The rest of a v0.1/v0.2 `x509CertificateChain` must parse, and lends no trust: a
    // path runs through the certificates of a configured CA only (sigstore-go
    // `FulcioCertificateAuthority.Verify`).
    if let Some(chain) = &material.x509_certificate_chain {
        for raw in chain
            .certificates
            .iter()
            .skip(1)
            .take(cert::MAX_PEM_CERTIFICATES)
        {
            let der = B64
                .decode(raw.raw_bytes.as_bytes())
                .map_err(malformed("chain certificate"))?;
            ParsedCertificate::from_der(&der)
                .map_err(|e| Rejection::Malformed(format!("chain certificate: {e}")))?;
        }
    }

    match leaf_der {
        Some(der) => {
            let leaf = ParsedCertificate::from_der(&der)
                .map_err(|e| Rejection::Malformed(format!("bundle certificate: {e}")))?;
            verify_keyless(
                &leaf,
                &signed,
                &signature,
                &payload,
                version,
                &wire.verification_material,
                image,
                policy,
                now,
            )
        }
        None if material.public_key.is_some() => {
            let trusted = super::check_key_signature(&policy.keys, &signed, &signature)?;
            // For a key, the time does not matter: only that the entry verifies.
            required_tlog_entry(
                &material.tlog_entries,
                version,
                &payload,
                &signature,
                Verifier::SpkiDer(trusted.key.spki_der()),
                policy,
            )?;
            let digest = check_statement(&payload, image)?;
            Ok(key_signer(trusted, digest))
        }
        None => Err(Rejection::Malformed(
            "bundle has no verification material".to_owned(),
        )),
    }
}

fn key_signer(trusted: &TrustedKey, signed_digest: Digest) -> Signer {
    Signer {
        verifier: VerifierKind::Cosign,
        identity: trusted.name.clone(),
        issuer: None,
        matched: trusted.name.clone(),
        signed_digest,
        valid_until: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn verify_keyless(
    leaf: &ParsedCertificate,
    signed: &[u8],
    signature: &[u8],
    payload: &[u8],
    version: Version,
    material: &WireMaterial,
    image: &Digest,
    policy: &CosignPolicy,
    now: SystemTime,
) -> Result<Signer, Rejection> {
    if policy.identities.is_empty() {
        return Err(Rejection::UntrustedRoot(
            "keyless bundle, but the policy trusts no keyless identity".to_owned(),
        ));
    }
    let logged = required_tlog_entry(
        &material.tlog_entries,
        version,
        payload,
        signature,
        Verifier::Certificate(leaf),
        policy,
    )?;
    // When the certificate was used: the integratedTimes the entries' SETs sign (Rekor
    // v1), and the timestamps are then not consulted; else the genTime of each RFC 3161 timestamp
    // from a configured authority (Rekor v2 entries carry no time). Where the log is
    // consulted, never now: an inclusion proof shows that the entry is logged, not when
    // (sigstore-go takes no time from it, `pkg/verify/tlog.go`), and cosign then verifies
    // a keyless bundle only with an integrated or a signed timestamp
    // (`pkg/cosign/verify.go`, `verificationOptions`: `WithIntegratedTimestamps(1)`).
    // Where it is not (`--insecure-ignore-tlog`) and no timestamp vouches, cosign
    // verifies at the current time (`WithCurrentTime()`), and so does crigate: the
    // verdict then ends with the chain.
    let mut times = match logged {
        Some(evidence) if !evidence.integrated_times.is_empty() => evidence.integrated_times,
        _ => signed_times(material, signature, policy)?,
    };
    let judged_now = times.is_empty() && !policy.require_tlog;
    if judged_now {
        times.push(now);
    }
    if times.is_empty() {
        return Err(Rejection::UntrustedRoot(
            "keyless bundle has no trusted time: a Fulcio certificate needs the integrated \
             time of a tlog entry's SET or a verified RFC 3161 timestamp"
                .to_owned(),
        ));
    }
    // sigstore-go `pkg/verify/signed_entity.go`: the leaf must chain to a CA valid at,
    // and be valid at, every verified time.
    let mut first_path = None;
    for at in &times {
        let path = cert::trusted_chain(leaf, &[], policy, *at)?;
        cert::check_validity(&path, *at)?;
        first_path.get_or_insert(path);
    }
    let path = first_path.unwrap_or_default();
    cert::check_code_signing(leaf)?;
    super::check_leaf_signature(leaf, signed, signature)?;
    if policy.require_sct {
        let issuer = path.get(1).copied().unwrap_or(leaf);
        sct::verify_embedded_sct(leaf, issuer, &policy.ct_log_keys)?;
    }
    // sigstore-go matches a bundle's identity against one SAN, not every SAN.
    let identity = cert::bundle_identity(leaf)?;
    check_identity(&identity, &policy.identities)?;
    let signed_digest = check_statement(payload, image)?;
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
        signed_digest,
        valid_until: if judged_now {
            path.iter().map(|cert| cert.not_after()).min()
        } else {
            None
        },
    })
}

/// Most RFC 3161 timestamps read from one bundle.
const MAX_TIMESTAMPS: usize = 8;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTimestampData {
    #[serde(default)]
    rfc3161_timestamps: Vec<WireSignedTimestamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSignedTimestamp {
    signed_timestamp: String,
}

/// The genTimes of the bundle's RFC 3161 timestamps (`timestampVerificationData`,
/// sigstore_bundle.proto; each a DER TimeStampResp over the signature bytes, as
/// sigstore-go requests it) that verify against a configured timestamp authority, at a
/// time within that authority's `validFor`. Empty when the bundle has none.
///
/// # Errors
///
/// `Malformed` for unreadable timestamp data; `UntrustedRoot` when the bundle has
/// timestamps and none verifies (each one's reason given).
fn signed_times(
    material: &WireMaterial,
    signature: &[u8],
    policy: &CosignPolicy,
) -> Result<Vec<SystemTime>, Rejection> {
    let Some(data) = &material.timestamp_verification_data else {
        return Ok(Vec::new());
    };
    let data: WireTimestampData = serde_json::from_value(data.clone())
        .map_err(|e| Rejection::Malformed(format!("bundle timestampVerificationData: {e}")))?;
    if data.rfc3161_timestamps.is_empty() {
        return Ok(Vec::new());
    }
    let mut times = Vec::new();
    let mut failures = Vec::new();
    for stamp in data.rfc3161_timestamps.iter().take(MAX_TIMESTAMPS) {
        let response = B64
            .decode(stamp.signed_timestamp.as_bytes())
            .map_err(malformed("RFC 3161 timestamp"))?;
        match verify_timestamp(&response, signature, policy) {
            Ok(at) => times.push(at),
            Err(why) => failures.push(why),
        }
    }
    if times.is_empty() {
        return Err(Rejection::UntrustedRoot(format!(
            "no RFC 3161 timestamp of the bundle is from a configured timestamp authority: {}",
            if failures.is_empty() {
                "none is configured".to_owned()
            } else {
                failures.join("; ")
            }
        )));
    }
    Ok(times)
}

/// The genTime of one TimeStampResp over `signature`, from a configured authority.
pub(super) fn verify_timestamp(
    response: &[u8],
    signature: &[u8],
    policy: &CosignPolicy,
) -> Result<SystemTime, String> {
    use crate::verify::notation::timestamp;
    let token = timestamp::token_of_response(response).map_err(|e| e.to_string())?;
    if policy.timestamp_authorities.is_empty() {
        return Err("no timestamp authority is configured".to_owned());
    }
    let mut last = String::new();
    for tsa in &policy.timestamp_authorities {
        let Some(root) = tsa.chain.last() else {
            continue;
        };
        match timestamp::verify_with(token, signature, &[root], &tsa.chain) {
            Ok(verified) => {
                let at = verified.range.gen_time.to_system_time();
                if tsa.valid_for.contains(at) {
                    return Ok(at);
                }
                last = format!(
                    "genTime {} is outside the authority's validFor",
                    cert::fmt_time(at)
                );
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// Who the tlog entry must name as the signer.
#[derive(Clone, Copy)]
enum Verifier<'a> {
    Certificate(&'a ParsedCertificate),
    SpkiDer(&'a [u8]),
}

/// The tlog entries the policy requires ([`CosignPolicy::require_tlog`]), judged as
/// sigstore-go judges them (`pkg/verify/tlog.go`, `VerifyTlogEntry`): more than
/// [`MAX_TLOG_ENTRIES`], or two with the same log and index, refuse the bundle. An entry
/// that names no configured log is passed over, and so is one whose SET does not verify
/// (sigstore-go "skip entries the trust root cannot verify"); any other failure of an
/// entry from a configured log (no proof where one is needed, a proof or checkpoint that
/// does not verify, a body that logs another payload, signature or signer, a kind not
/// read, a keyless entry's integratedTime outside the leaf's validity) refuses the
/// bundle, whatever the other entries show. At least one entry must verify. `None` when
/// the policy does not require the log: the entries are then not read (cosign
/// `--insecure-ignore-tlog`).
///
/// # Errors
///
/// The failing entry's rejection; when no entry verifies, the most informative reason an
/// entry was passed over, or `UntrustedRoot`.
fn required_tlog_entry(
    entries: &[WireTlogEntry],
    version: Version,
    payload: &[u8],
    signature: &[u8],
    verifier: Verifier<'_>,
    policy: &CosignPolicy,
) -> Result<Option<TlogEvidence>, Rejection> {
    if !policy.require_tlog {
        return Ok(None);
    }
    if entries.len() > MAX_TLOG_ENTRIES {
        return Err(Rejection::Malformed(format!(
            "bundle has {} tlog entries, over the limit of {MAX_TLOG_ENTRIES}",
            entries.len()
        )));
    }
    let log_ids = entries
        .iter()
        .map(|entry| {
            entry
                .log_id
                .as_ref()
                .map(|id| {
                    B64.decode(id.key_id.as_bytes())
                        .map_err(malformed("log id"))
                })
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    // sigstore-go: "disallow duplicate entries, as a malicious actor could use
    // duplicates to bypass the threshold".
    for (i, (entry, id)) in entries.iter().zip(&log_ids).enumerate() {
        let duplicated = entries
            .iter()
            .zip(&log_ids)
            .skip(i + 1)
            .any(|(other, other_id)| other.log_index == entry.log_index && other_id == id);
        if duplicated {
            return Err(Rejection::Malformed(format!(
                "bundle has two tlog entries for log index {} of one log",
                entry.log_index
            )));
        }
    }
    let mut verified = false;
    let mut integrated_times = Vec::new();
    let mut timed_logs: Vec<&[u8]> = Vec::new();
    let mut passed_over = None;
    for (entry, log_id) in entries.iter().zip(&log_ids) {
        match check_tlog_entry(
            entry,
            log_id.as_deref(),
            version,
            payload,
            signature,
            verifier,
            policy,
        )? {
            EntryOutcome::Verified { integrated_time } => {
                verified = true;
                // One time per log, its first entry's (sigstore-go `hasTimestampMap`).
                if let (Some(at), Some(id)) = (integrated_time, log_id.as_deref()) {
                    if !timed_logs.contains(&id) {
                        timed_logs.push(id);
                        integrated_times.push(at);
                    }
                }
            }
            EntryOutcome::PassedOver(rejection) => {
                tracing::debug!(
                    log_index = entry.log_index,
                    %rejection,
                    "tlog entry passed over"
                );
                passed_over = Some(super::more_informative(passed_over, rejection));
            }
        }
    }
    if verified {
        Ok(Some(TlogEvidence { integrated_times }))
    } else {
        Err(passed_over.unwrap_or_else(|| {
            Rejection::UntrustedRoot("bundle has no verified transparency log entry".to_owned())
        }))
    }
}

/// What one tlog entry shows, when it does not refuse the bundle.
enum EntryOutcome {
    /// The entry logs this signature; its integratedTime if a SET covers it.
    Verified { integrated_time: Option<SystemTime> },
    /// The entry is not from a configured log, or its SET does not verify: it counts
    /// for nothing.
    PassedOver(Rejection),
}

/// Judges one tlog entry ([`required_tlog_entry`]). v0.1 bundles must carry an inclusion
/// promise (SET); v0.2 and later an inclusion proof with a checkpoint
/// (sigstore_bundle.proto, "VerificationMaterial"). The integratedTime is returned only
/// when a SET covers it: the Merkle leaf does not include the time, so a proof alone
/// gives none.
///
/// # Errors
///
/// A failure that refuses the bundle.
fn check_tlog_entry(
    entry: &WireTlogEntry,
    log_id: Option<&[u8]>,
    version: Version,
    payload: &[u8],
    signature: &[u8],
    verifier: Verifier<'_>,
    policy: &CosignPolicy,
) -> Result<EntryOutcome, Rejection> {
    let body = B64
        .decode(entry.canonicalized_body.as_bytes())
        .map_err(malformed("tlog body"))?;
    if body.len() > rekor::MAX_ENTRY_BODY_BYTES {
        return Err(Rejection::Malformed("tlog body over its limit".to_owned()));
    }
    // The form every entry must have, from a configured log or not: sigstore_bundle.proto
    // (and sigstore-go's bundle validation): v0.1 needs a promise, v0.2 and later a proof;
    // sigstore-go `VerifyTlogEntry`: a promise or a proof, and a Rekor v2 entry a proof,
    // as it has no SET to stand for it.
    let rekor_v2 = entry.kind_version.kind == "dsse" && entry.kind_version.version == "0.0.2";
    match (&entry.inclusion_promise, &entry.inclusion_proof, version) {
        (None, None, _) => {
            return Err(Rejection::Malformed(
                "tlog entry has neither inclusion promise nor inclusion proof".to_owned(),
            ))
        }
        (_, None, _) if rekor_v2 => {
            return Err(Rejection::Malformed(
                "Rekor v2 tlog entry without inclusion proof".to_owned(),
            ))
        }
        (None, _, Version::V01) => {
            return Err(Rejection::Malformed(
                "v0.1 bundle tlog entry without inclusion promise".to_owned(),
            ))
        }
        (_, None, Version::V02 | Version::V03) => {
            return Err(Rejection::Malformed(
                "bundle tlog entry without inclusion proof".to_owned(),
            ))
        }
        _ => {}
    }
    if !names_a_configured_log(entry, log_id, policy) {
        return Ok(EntryOutcome::PassedOver(Rejection::UntrustedRoot(
            "tlog entry names no configured transparency log (by log id or checkpoint signer)"
                .to_owned(),
        )));
    }
    let kind = match (
        entry.kind_version.kind.as_str(),
        entry.kind_version.version.as_str(),
    ) {
        ("dsse", "0.0.1") => EntryKind::DsseV001,
        ("dsse", "0.0.2") => EntryKind::DsseV002,
        _ => {
            // Only a policy that requires the log reads entries; one that does not
            // (`require_tlog = false`) never gets here, whatever their kind.
            return Err(Rejection::UnsupportedAlgorithm(format!(
                "tlog entry kind {} {} (dsse 0.0.1 and 0.0.2 are supported)",
                entry.kind_version.kind, entry.kind_version.version
            )));
        }
    };
    let mut time = None;
    if let Some(promise) = &entry.inclusion_promise {
        match verify_promise(entry, log_id, promise, &body, policy) {
            Ok(at) => time = Some(at),
            Err(rejection) => return Ok(EntryOutcome::PassedOver(rejection)),
        }
    }
    if let Some(proof) = &entry.inclusion_proof {
        check_inclusion_proof(proof, &body, policy)?;
    }
    check_dsse_body(kind, &body, payload, signature, verifier)?;
    // sigstore-go: "Check tlog entry time against bundle certificates", for any entry
    // that states a time, signed or not.
    if let (Verifier::Certificate(leaf), true) = (verifier, entry.integrated_time != 0) {
        let (not_before, not_after) = leaf.validity();
        let at = u64::try_from(entry.integrated_time).ok().and_then(|secs| {
            SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
        });
        if !at.is_some_and(|at| not_before <= at && at <= not_after) {
            return Err(Rejection::Expired(format!(
                "tlog entry integratedTime {} is outside the certificate's validity",
                entry.integrated_time
            )));
        }
    }
    Ok(EntryOutcome::Verified {
        integrated_time: time,
    })
}

/// Whether the entry claims a configured log: its log id is a configured Rekor key's
/// (SHA-256 of its SPKI, as `trusted_root.json` names logs), or its checkpoint bears a
/// signature naming one (a Rekor v2 entry may carry no log id). Claims only: the SET and
/// the checkpoint are verified after.
fn names_a_configured_log(
    entry: &WireTlogEntry,
    log_id: Option<&[u8]>,
    policy: &CosignPolicy,
) -> bool {
    let by_id = log_id.is_some_and(|id| {
        policy
            .rekor_keys
            .iter()
            .any(|k| k.key.key_id().as_slice() == id)
    });
    let by_checkpoint = entry
        .inclusion_proof
        .as_ref()
        .and_then(|proof| proof.checkpoint.as_ref())
        .and_then(|cp| merkle::Checkpoint::parse(cp.envelope.as_bytes()).ok())
        .is_some_and(|cp| cp.names_a_key(&policy.rekor_keys));
    by_id || by_checkpoint
}

/// Verifies an entry's SET and returns the integratedTime it signs.
fn verify_promise(
    entry: &WireTlogEntry,
    log_id: Option<&[u8]>,
    promise: &WirePromise,
    body: &[u8],
    policy: &CosignPolicy,
) -> Result<SystemTime, Rejection> {
    let log_id = log_id
        .ok_or_else(|| Rejection::Malformed("tlog entry with a SET but no log id".to_owned()))?;
    let rekor_bundle = RekorBundle {
        signed_entry_timestamp: B64
            .decode(promise.signed_entry_timestamp.as_bytes())
            .map_err(malformed("SET"))?,
        payload: RekorPayload {
            body: B64.encode(body),
            integrated_time: entry.integrated_time,
            log_index: entry.log_index,
            log_id: hex::encode(log_id),
        },
    };
    rekor::verify_set(&rekor_bundle, &policy.rekor_keys)
}

/// The tlog entry kinds read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    /// Rekor v1 `dsse` 0.0.1.
    DsseV001,
    /// Rekor v2 `dsse` 0.0.2.
    DsseV002,
}

/// The verified tlog entries for the signature: the integratedTimes their SETs cover,
/// one per log.
struct TlogEvidence {
    integrated_times: Vec<SystemTime>,
}

/// RFC 6962 §2.1.1 audit path from the entry's leaf hash to the checkpoint's root, and
/// the checkpoint signed by a configured Rekor key.
fn check_inclusion_proof(
    proof: &WireProof,
    body: &[u8],
    policy: &CosignPolicy,
) -> Result<(), Rejection> {
    let to_hash = |s: &str| -> Result<[u8; 32], Rejection> {
        B64.decode(s.as_bytes())
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| Rejection::Malformed("inclusion proof hash".to_owned()))
    };
    if proof.hashes.len() > merkle::MAX_PROOF_HASHES {
        return Err(Rejection::Malformed("inclusion proof too long".to_owned()));
    }
    let hashes = proof
        .hashes
        .iter()
        .map(|h| to_hash(h))
        .collect::<Result<Vec<_>, _>>()?;
    let root = to_hash(&proof.root_hash)?;
    let index = u64::try_from(proof.log_index)
        .map_err(|_| Rejection::Malformed("negative log index".to_owned()))?;
    let size = u64::try_from(proof.tree_size)
        .map_err(|_| Rejection::Malformed("negative tree size".to_owned()))?;
    merkle::verify_inclusion(index, size, &merkle::leaf_hash(body), &hashes, &root)?;
    let checkpoint = proof
        .checkpoint
        .as_ref()
        .ok_or_else(|| Rejection::Malformed("inclusion proof without checkpoint".to_owned()))?;
    let checkpoint = merkle::Checkpoint::parse(checkpoint.envelope.as_bytes())?;
    checkpoint.verify(&policy.rekor_keys)?;
    if checkpoint.root_hash != root || checkpoint.tree_size != size {
        return Err(Rejection::Tampered(
            "checkpoint does not commit to the proof's root".to_owned(),
        ));
    }
    Ok(())
}

/// The `dsse` body of `kind` must log this envelope: a payload hash that is the SHA-256
/// of the payload, and a signature equal to ours whose verifier is our certificate or
/// key. Rekor v1's `dsse` 0.0.1 (Rekor `pkg/types/dsse/v0.0.1`) also has an
/// `envelopeHash`, not compared: Rekor hashes the envelope as submitted, which the bundle
/// does not reproduce byte for byte. Rekor v2's `dsse` 0.0.2 (rekor-tiles
/// `pkg/types/dsse`) has no envelope: the payload hash and the signature bind it.
fn check_dsse_body(
    kind: EntryKind,
    body: &[u8],
    payload: &[u8],
    signature: &[u8],
    verifier: Verifier<'_>,
) -> Result<(), Rejection> {
    let (logged, version) = match kind {
        EntryKind::DsseV001 => (LoggedDsse::v001(body)?, "0.0.1"),
        EntryKind::DsseV002 => (LoggedDsse::v002(body)?, "0.0.2"),
    };
    if logged.kind != "dsse" || logged.api_version != version {
        return Err(Rejection::Tampered(
            "tlog body kind differs from the entry's kindVersion".to_owned(),
        ));
    }
    if logged.payload_sha256.as_deref() != Some(Sha256::digest(payload).as_slice()) {
        return Err(Rejection::Tampered(
            "tlog entry logs another payload".to_owned(),
        ));
    }
    let ours = logged.signatures.iter().any(|s| {
        let signer = match verifier {
            Verifier::Certificate(leaf) => s.certificate.as_deref() == Some(leaf.der()),
            Verifier::SpkiDer(der) => s.key.as_deref() == Some(der),
        };
        s.signature.as_deref() == Some(signature) && signer
    });
    if ours {
        Ok(())
    } else {
        Err(Rejection::Tampered(
            "tlog entry logs another signature or signer".to_owned(),
        ))
    }
}

/// What a `dsse` tlog body logs, read from either version's form. Fields that do not
/// decode are `None`, and so match nothing.
struct LoggedDsse {
    kind: String,
    api_version: String,
    /// The payload hash, when its algorithm is SHA-256.
    payload_sha256: Option<Vec<u8>>,
    signatures: Vec<LoggedSignature>,
}

/// One signature of a `dsse` body, and the certificate or key (DER) it names.
struct LoggedSignature {
    signature: Option<Vec<u8>>,
    certificate: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
}

impl LoggedDsse {
    /// `dsse` 0.0.1: the hash in hex under `sha256`, each signature in base64 with its
    /// verifier a base64 PEM block.
    fn v001(body: &[u8]) -> Result<Self, Rejection> {
        let entry: WireDsseBody = serde_json::from_slice(body)
            .map_err(|e| Rejection::Malformed(format!("tlog dsse body: {e}")))?;
        let hash = &entry.spec.payload_hash;
        Ok(Self {
            payload_sha256: (hash.algorithm == "sha256")
                .then(|| hex::decode(&hash.value).ok())
                .flatten(),
            signatures: entry
                .spec
                .signatures
                .iter()
                .map(|s| {
                    let block = B64
                        .decode(s.verifier.as_bytes())
                        .ok()
                        .and_then(|pem_bytes| pem::parse(pem_bytes).ok());
                    let tagged = |tag: &str| {
                        block
                            .as_ref()
                            .filter(|b| b.tag() == tag)
                            .map(|b| b.contents().to_vec())
                    };
                    LoggedSignature {
                        signature: B64.decode(s.signature.as_bytes()).ok(),
                        certificate: tagged("CERTIFICATE"),
                        key: tagged("PUBLIC KEY"),
                    }
                })
                .collect(),
            kind: entry.kind,
            api_version: entry.api_version,
        })
    }

    /// `dsse` 0.0.2, in protobuf JSON: the hash in base64 under `SHA2_256`, each
    /// signature's `content` in base64 with its verifier's certificate or key as DER.
    fn v002(body: &[u8]) -> Result<Self, Rejection> {
        let entry: WireDsseBodyV002 = serde_json::from_slice(body)
            .map_err(|e| Rejection::Malformed(format!("tlog dsse 0.0.2 body: {e}")))?;
        let bytes = |text: &str| B64.decode(text.as_bytes()).ok();
        let raw = |raw: &Option<WireRaw>| raw.as_ref().and_then(|r| bytes(&r.raw_bytes));
        let dsse = &entry.spec.dsse_v002;
        Ok(Self {
            payload_sha256: (dsse.payload_hash.algorithm == "SHA2_256")
                .then(|| bytes(&dsse.payload_hash.digest))
                .flatten(),
            signatures: dsse
                .signatures
                .iter()
                .map(|s| LoggedSignature {
                    signature: bytes(&s.content),
                    certificate: raw(&s.verifier.x509_certificate),
                    key: raw(&s.verifier.public_key),
                })
                .collect(),
            kind: entry.kind,
            api_version: entry.api_version,
        })
    }
}

/// The in-toto statement must be a cosign image signature whose subject is the image:
/// `_type` Statement v1, `predicateType` `https://sigstore.dev/cosign/sign/v1`, and a
/// subject digest equal to the image digest.
///
/// # Errors
///
/// `Malformed` for another statement type or predicate; `DigestMismatch` when no subject
/// names the image.
pub fn check_statement(payload: &[u8], image: &Digest) -> Result<Digest, Rejection> {
    let statement: WireStatement = serde_json::from_slice(payload)
        .map_err(|e| Rejection::Malformed(format!("in-toto statement: {e}")))?;
    if statement.kind != IN_TOTO_STATEMENT_V1
        || statement.predicate_type != COSIGN_SIGN_PREDICATE_TYPE
    {
        return Err(Rejection::Malformed(format!(
            "statement {} / {} is not a cosign image signature",
            statement.kind, statement.predicate_type
        )));
    }
    let algorithm = match image.algorithm() {
        DigestAlgorithm::Sha256 => "sha256",
        DigestAlgorithm::Sha512 => "sha512",
    };
    let mut first = None;
    for subject in &statement.subject {
        if let Some(hex_digest) = subject.digest.get(algorithm) {
            if hex_digest == image.encoded() {
                return Ok(image.clone());
            }
            first.get_or_insert_with(|| format!("{algorithm}:{hex_digest}"));
        }
    }
    Err(Rejection::DigestMismatch {
        signed: first.unwrap_or_else(|| "(no subject digest)".to_owned()),
        image: image.clone(),
    })
}
