//! Notation (Notary Project) signature verification, as pure functions over bytes
//! already fetched: envelopes, the image descriptor, the artifact's repository, and a
//! [`NotationConfig`] (trust policy document and trust stores) loaded from disk once.
//!
//! Owns: JWS and COSE envelope parsing ([`jws`], [`cose`]), the payload
//! ([`payload`]), certificate chains ([`chain`]), RFC 3161 timestamps ([`timestamp`]),
//! trust policy documents ([`trustpolicy`]) and trust stores ([`truststore`]).
//! Leaves to others: finding and fetching signature manifests and envelope blobs
//! (`registry`), and what a [`Verdict`] means for a CRI call (`policy`).
//!
//! Implements (notaryproject/specifications): `signature-specification.md` (payload,
//! signed attributes, algorithm and certificate requirements),
//! `signature-envelope-jws.md`, `signature-envelope-cose.md`, `signing-scheme.md`, and
//! `trust-store-trust-policy.md` (trust store layout, trust policy 1.0, verification
//! levels, the signature verification steps). Check order follows notation-go's
//! `verifier.go`: integrity, authenticity (trust store, then trusted identity), expiry,
//! authentic timestamp, revocation; the target descriptor is compared last.
//!
//! Revocation: CRL files in `crl/` ([`revocation`]) and, unless turned off, OCSP
//! ([`ocsp`]) and CRLs fetched from the certificates' `http` distribution points
//! ([`fetch`]). The checks run with what is at hand; a certificate of a chain that passed
//! every earlier check, whose status that does not settle, names the sources to ask
//! ([`Outcome::revocation_wanted`]), and the caller runs the checks again with their
//! answers ([`verify_fetched`]). A signing certificate that names CRL or OCSP locations and has
//! no usable CRL has an undeterminable status, which the spec treats as a revocation
//! failure (enforced under `strict`, logged under `permissive`/`audit`, not checked
//! with `"revocation": "skip"`). A listed certificate is revoked unless its entry's
//! invalidity date is after the authentic signing time of a `notary.x509.signingAuthority`
//! signature, as notation-go weighs it (`verifyRevocation`); a `notary.x509` signing
//! certificate that is listed is revoked whatever its timestamp or claimed
//! `signingTime` say. The chain of a verified timestamp's TSA is checked the same way (from
//! the same sources) as part of the authentic timestamp check, as notation-go checks it
//! (`verifyTimestamp`): a revoked or undeterminable TSA certificate fails that check,
//! whatever the revocation time and whatever `"revocation"` says; `timestamp_revocation =
//! false` turns it off for nodes with neither network nor the TSA's CRL. Verification plugins are not
//! supported: a signature that names one is rejected, as the spec requires of
//! implementations without plugins.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::oci::Descriptor;
use crate::verify::{Rejection, Signer, Verdict, VerifierKind};

pub(crate) mod cbor;
pub mod chain;
pub mod cose;
pub mod crypto;
pub mod envelope;
pub mod fetch;
pub mod jws;
pub mod ocsp;
pub mod payload;
pub mod revocation;
pub mod time;
pub mod timestamp;
pub(crate) mod tlv;
pub mod trustpolicy;
pub mod truststore;

use chain::{Cert, ChainError};
use envelope::{Envelope, EnvelopeError, SigningScheme, MEDIA_TYPE_COSE, MEDIA_TYPE_JWS};
pub use fetch::RevocationFetcher;
pub use revocation::{CrlError, CrlParseError, CrlSet};
use time::Moment;
use timestamp::TimestampError;
pub use trustpolicy::{Action, Check, LevelName, PolicyError, TrustPolicy, TrustPolicyDocument};
use trustpolicy::{StoreKind, TimestampOption, TrustedIdentities};
pub use truststore::{StoreError, TrustStore};

/// Most envelopes examined for one image: the notation CLI's default for
/// `--max-signatures` (`notation verify`), so an image the CLI finds a trusted signature
/// for among its first signatures is not refused here for having many. Further ones are
/// not verified (and counted in the [`Outcome`]); the registry client decides which come
/// first.
pub const MAX_SIGNATURES: usize = 100;

/// The trust policy file name notation-go reads first.
pub const OCI_POLICY_FILE: &str = "trustpolicy.oci.json";
/// The trust policy file name notation-go falls back to.
pub const POLICY_FILE: &str = "trustpolicy.json";
/// The trust store directory, holding `x509/`.
pub const TRUST_STORE_DIR: &str = "truststore";
/// crigate's directory of CRL files next to the trust store (not a Notation layout:
/// Notation only fetches CRLs). They are used before any fetched one, so a node that
/// cannot reach a distribution point can still check revocation.
pub const CRL_DIR: &str = "crl";

/// A validated trust policy document and the trust stores it names.
#[derive(Clone, Debug)]
pub struct NotationConfig {
    policy: TrustPolicyDocument,
    store: TrustStore,
    crls: CrlSet,
    /// Ask certificates' `http` OCSP responders and fetch CRLs from their `http`
    /// distribution points when the configured CRLs do not settle a status, as the
    /// notation CLI does. On unless turned off.
    online_revocation: bool,
    /// Check the revocation of a verified timestamp's TSA chain, as notation-go does. On
    /// unless turned off.
    timestamp_revocation: bool,
}

/// Why a Notation configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no trust policy in {0}: write {OCI_POLICY_FILE} or {POLICY_FILE} there")]
    NoPolicyFile(PathBuf),
    #[error("cannot read trust policy {path}")]
    ReadPolicy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trust policy {path} is a symlink or not a regular file")]
    PolicyNotRegularFile { path: PathBuf },
    #[error("trust policy {path} is invalid")]
    Policy {
        path: PathBuf,
        #[source]
        source: PolicyError,
    },
    #[error(transparent)]
    TrustStore(#[from] StoreError),
    #[error(transparent)]
    Crl(#[from] CrlError),
}

/// A verdict and how it was reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub verdict: Verdict,
    pub outcome: Outcome,
}

/// What verification did, for audit records and `policy explain`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The trust policy statement that applied, if one did.
    pub policy: Option<String>,
    pub level: Option<LevelName>,
    /// The statement's level is `skip`: no signature was fetched or verified, and the
    /// verdict is `Trusted` only because the spec says "return success".
    pub skipped: bool,
    /// The subject DN of the signing certificate of the signature that established
    /// trust.
    pub signer_subject: Option<String>,
    /// Failures of checks the level only logs (permissive, audit, `log` overrides), for
    /// the signature that established trust.
    pub logged: Vec<LoggedFailure>,
    /// Why each rejected signature was rejected, by envelope index.
    pub rejected: Vec<(usize, Rejection)>,
    /// Envelopes past [`MAX_SIGNATURES`], not examined.
    pub not_examined: usize,
    /// OCSP responders and CRL distribution points (`http`) of certificates whose
    /// revocation status nothing at hand settled ([`verify_fetched`]).
    pub revocation_wanted: Vec<Wanted>,
}

/// A failed check the verification level did not enforce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedFailure {
    pub check: Check,
    pub rejection: Rejection,
}

// === impl NotationConfig ===

impl NotationConfig {
    /// Reads `dir/trustpolicy.oci.json` (or, if absent, `dir/trustpolicy.json`), the
    /// stores it names under `dir/truststore/`, and CRL files in `dir/crl/` if that
    /// directory exists.
    ///
    /// Blocking file I/O: call it from `spawn_blocking` on an async runtime.
    ///
    /// # Errors
    ///
    /// No policy file, an invalid policy, a named store that is missing, empty or
    /// unreadable, or an unreadable CRL.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let oci = dir.join(OCI_POLICY_FILE);
        // Present even as a dangling symlink: then refused below, as notation-go refuses
        // it, rather than passed over for the other file.
        let path = if std::fs::symlink_metadata(&oci).is_ok() {
            oci
        } else {
            dir.join(POLICY_FILE)
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoPolicyFile(dir.to_path_buf()))
            }
            Err(source) => return Err(Error::ReadPolicy { path, source }),
        };
        // notation-go: "trust policy is not a regular file (symlinks are not supported)".
        if !meta.is_file() {
            return Err(Error::PolicyNotRegularFile { path });
        }
        let bytes = read_limited(&path, trustpolicy::MAX_TRUST_POLICY_BYTES)?;
        let policy =
            TrustPolicyDocument::parse(&bytes).map_err(|source| Error::Policy { path, source })?;
        let config = Self::new(policy, &dir.join(TRUST_STORE_DIR))?;
        let crl_dir = dir.join(CRL_DIR);
        if crl_dir.is_dir() {
            return Ok(config.with_crls(CrlSet::load_dir(&crl_dir)?));
        }
        Ok(config)
    }

    /// Feeds everything this configuration trusts by to `digest`: the trust policy as
    /// parsed, every certificate of every store it loaded, with the store's name, and every
    /// CRL. Made from what was loaded, not from the directory read again, so that no file
    /// the loader reads (a symlinked `crl/`, a large CRL) escapes it, and no change
    /// between the load and the digest goes unseen.
    pub fn digest_content(&self, digest: &mut impl sha2::Digest) {
        digest.update(format!("{:?}", self.policy).as_bytes());
        self.store.digest_content(digest);
        self.crls.digest_content(digest);
    }

    /// Uses `crls` for revocation checking, replacing any loaded before.
    pub fn with_crls(mut self, crls: CrlSet) -> Self {
        self.crls = crls;
        self
    }

    /// A configuration from a parsed policy and a trust store root (the directory that
    /// holds `x509/`).
    ///
    /// # Errors
    ///
    /// A store the policy names is missing, empty or unreadable.
    pub fn new(policy: TrustPolicyDocument, trust_store_root: &Path) -> Result<Self, Error> {
        let refs: Vec<_> = policy
            .policies()
            .iter()
            .flat_map(|p| p.trust_stores.iter())
            .collect();
        let store = TrustStore::load(trust_store_root, refs)?;
        Ok(Self {
            policy,
            store,
            crls: CrlSet::default(),
            online_revocation: true,
            timestamp_revocation: true,
        })
    }

    pub fn policy(&self) -> &TrustPolicyDocument {
        &self.policy
    }

    /// Whether OCSP responders and CRL distribution points may be asked (otherwise only
    /// the configured CRLs are used).
    pub fn with_online_revocation(mut self, online: bool) -> Self {
        self.online_revocation = online;
        self
    }

    pub fn online_revocation(&self) -> bool {
        self.online_revocation
    }

    /// Whether a verified timestamp's TSA chain is checked for revocation (as notation-go
    /// checks it, with no way to turn it off).
    pub fn with_timestamp_revocation(mut self, check: bool) -> Self {
        self.timestamp_revocation = check;
        self
    }
}

/// Verifies the Notation signatures of one image.
///
/// `envelopes` are `(media type, bytes)` of the signature manifests' layers;
/// `target` is the image manifest descriptor the reference resolved to;
/// `repository` is `registry/repository` (a tag or digest suffix is ignored) and selects
/// the trust policy statement; `now` is the verification time.
///
/// Trusted if any signature passes every enforced check. Otherwise the rejection of the
/// signature that got furthest through the checks; [`Rejection::NoSignature`] when there
/// are no envelopes. A `skip` statement yields `Trusted` without looking at signatures,
/// with [`Outcome::skipped`] set and an identity saying so. Under `audit` (or an
/// `authenticity: log` override) a signature from an untrusted signer is `Trusted` with
/// the failure in [`Outcome::logged`], as the spec's level table says ("audit: ...
/// only enforces signature integrity"); the engine admits it, as notation and Ratify
/// do, and logs each such failure.
///
/// CPU-bound (RSA and ECDSA verifications): call it from `spawn_blocking`.
pub fn verify<M, B>(
    envelopes: &[(M, B)],
    target: &Descriptor,
    repository: &str,
    config: &NotationConfig,
    now: SystemTime,
) -> Verification
where
    M: AsRef<str>,
    B: AsRef<[u8]>,
{
    verify_fetched(
        envelopes,
        target,
        repository,
        config,
        &Fetched::default(),
        now,
    )
}

/// As [`verify`], with OCSP answers and CRLs fetched for this verification besides the
/// configured CRLs. A certificate whose status nothing at hand settles puts the `http`
/// sources it names in [`Outcome::revocation_wanted`]: the caller may fetch them and
/// verify again. Only certificates of chains the trust store vouched for (authenticity
/// and identity checked and passed, not skipped or only logged) are asked about, so an
/// untrusted envelope cannot make crigate fetch a URL of its choosing.
pub fn verify_fetched<M, B>(
    envelopes: &[(M, B)],
    target: &Descriptor,
    repository: &str,
    config: &NotationConfig,
    fetched: &Fetched,
    now: SystemTime,
) -> Verification
where
    M: AsRef<str>,
    B: AsRef<[u8]>,
{
    let mut outcome = Outcome::default();
    // Trust policy spec, "Selecting a trust policy based on artifact URI": "if there is
    // no applicable trust policy then implementations ... MUST consider the artifact as
    // untrusted and fail signature verification."
    let Some(policy) = config.policy.select(repository) else {
        let rejection =
            Rejection::UntrustedRoot(format!("no trust policy statement applies to {repository}"));
        return Verification {
            verdict: Verdict::Rejected(rejection),
            outcome,
        };
    };
    outcome.policy = Some(policy.name.clone());
    outcome.level = Some(policy.level.name);
    // Trust policy spec, "Signature Verification" step 2: "If signatureVerification level
    // is set to skip in the trust policy, return success."
    if policy.level.name == LevelName::Skip {
        outcome.skipped = true;
        let signer = Signer {
            verifier: VerifierKind::Notation,
            identity: format!("(verification skipped by trust policy {})", policy.name),
            issuer: None,
            matched: policy.name.clone(),
            signed_digest: target.digest.clone(),
            valid_until: None,
        };
        return Verification {
            verdict: Verdict::Trusted(signer),
            outcome,
        };
    }
    if envelopes.is_empty() {
        return Verification {
            verdict: Verdict::Rejected(Rejection::NoSignature(target.digest.clone())),
            outcome,
        };
    }
    outcome.not_examined = envelopes.len().saturating_sub(MAX_SIGNATURES);
    let now = Moment::from_system_time(now);
    let mut best: Option<Failure> = None;
    // A signature that passed with logged failures is kept in case no signature passes
    // cleanly; the first clean pass ends the search.
    let mut passed: Option<(Passed, Vec<LoggedFailure>)> = None;
    let mut notes = Notes {
        fetched,
        logged: Vec::new(),
        revocation_wanted: Vec::new(),
    };
    for (index, (media_type, bytes)) in envelopes.iter().take(MAX_SIGNATURES).enumerate() {
        let verified = verify_one(
            media_type.as_ref(),
            bytes.as_ref(),
            target,
            policy,
            config,
            now,
            &mut notes,
        );
        let logged = std::mem::take(&mut notes.logged);
        match verified {
            Ok(pass) => {
                let clean = logged.is_empty();
                if passed.is_none() || clean {
                    passed = Some((pass, logged));
                }
                if clean {
                    break;
                }
            }
            Err(failure) => {
                outcome.rejected.push((index, failure.rejection.clone()));
                if best.as_ref().is_none_or(|b| failure.rank() > b.rank()) {
                    best = Some(failure);
                }
            }
        }
    }
    outcome.revocation_wanted = notes.revocation_wanted;
    if let Some((pass, logged)) = passed {
        outcome.signer_subject = Some(pass.subject.clone());
        outcome.logged = logged;
        let signer = Signer {
            verifier: VerifierKind::Notation,
            identity: pass.subject,
            issuer: None,
            matched: policy.name.clone(),
            signed_digest: target.digest.clone(),
            valid_until: pass.until.map(Moment::to_system_time),
        };
        return Verification {
            verdict: Verdict::Trusted(signer),
            outcome,
        };
    }
    let rejection = best.map_or_else(
        || Rejection::NoSignature(target.digest.clone()),
        |f| f.rejection,
    );
    Verification {
        verdict: Verdict::Rejected(rejection),
        outcome,
    }
}

/// How far a rejected signature got; the furthest is the most informative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Parse,
    Integrity,
    Authenticity,
    Identity,
    Expiry,
    AuthenticTimestamp,
    Revocation,
    Target,
}

struct Failure {
    stage: Stage,
    rejection: Rejection,
}

impl Failure {
    /// Which of several failures is reported: the furthest, but first one the next
    /// verification may not repeat (a revocation status not determined), so that the
    /// verdict is not cached while some signature may yet pass.
    fn rank(&self) -> (bool, Stage) {
        (!self.rejection.is_lasting(), self.stage)
    }
}

/// What one verification carries from envelope to envelope.
struct Notes<'a> {
    fetched: &'a Fetched,
    /// The current envelope's failures that the level only logs.
    logged: Vec<LoggedFailure>,
    /// Sources a certificate's status waits on, without repeats.
    revocation_wanted: Vec<Wanted>,
}

/// A revocation source a certificate's status waits on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Wanted {
    /// An `http` CRL distribution point.
    Crl(String),
    /// An `http` OCSP responder, and the DER `OCSPRequest` that names the certificate.
    Ocsp { url: String, request: Vec<u8> },
}

/// Revocation material fetched for one verification: CRLs, OCSP answers by request,
/// and the sources that gave nothing, with the reason (named in a rejection).
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    pub crls: CrlSet,
    pub ocsp: Vec<(Wanted, bytes::Bytes)>,
    pub failures: Vec<(Wanted, String)>,
}

// === impl Wanted ===

impl Wanted {
    pub fn url(&self) -> &str {
        match self {
            Self::Crl(url) | Self::Ocsp { url, .. } => url,
        }
    }
}

// === impl Fetched ===

impl Fetched {
    /// Adds what `more` holds.
    pub fn merge(&mut self, more: Fetched) {
        self.crls.extend(&more.crls);
        self.ocsp.extend(more.ocsp);
        self.failures.extend(more.failures);
    }
}

/// Runs the checks on one envelope; `Ok` holds the signer's subject.
fn verify_one(
    media_type: &str,
    bytes: &[u8],
    target: &Descriptor,
    policy: &TrustPolicy,
    config: &NotationConfig,
    now: Moment,
    notes: &mut Notes<'_>,
) -> Result<Passed, Failure> {
    let store = &config.store;
    let fail = |stage: Stage| move |rejection: Rejection| Failure { stage, rejection };

    // --- Integrity: always enforced (trust policy spec, "Validate Integrity"). ---
    // "Validate that signature envelope can be parsed successfully based on the
    // signature envelope type specified in the blobs[0].mediaType attribute".
    let envelope = parse_envelope(media_type, bytes).map_err(fail(Stage::Parse))?;
    let chain = envelope
        .cert_chain
        .iter()
        .map(|der| Cert::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(Stage::Parse)(chain_rejection(e)))?;
    let leaf = chain.first().ok_or_else(|| {
        fail(Stage::Parse)(Rejection::Malformed("certificate chain is empty".into()))
    })?;
    check_signature(&envelope, leaf).map_err(fail(Stage::Integrity))?;
    let payload_bytes = match &envelope.payload {
        envelope::Payload::Bytes(bytes) => bytes.clone(),
        envelope::Payload::Base64Url(text) => {
            jws::decode_payload(text).map_err(|e| fail(Stage::Integrity)(envelope_rejection(e)))?
        }
    };
    let (scheme, signing_time) = envelope::check_headers(&envelope.headers)
        .map_err(|e| fail(Stage::Integrity)(envelope_rejection(e)))?;
    // Trust policy spec, "Validate Authenticity": "validate that the signature envelope
    // contains a complete certificate chain that starts from a code signing certificate
    // and terminates with a root certificate" - checked with the signing time, as
    // notation-core-go does while validating the envelope.
    chain::validate_signing_chain(&chain, signing_time)
        .map_err(|e| fail(Stage::Integrity)(chain_rejection(e)))?;
    let payload = payload::Payload::parse(&payload_bytes)
        .map_err(|e| fail(Stage::Integrity)(Rejection::Malformed(e.to_string())))?;

    let mut check = |check: Check,
                     stage: Stage,
                     result: Result<(), Rejection>|
     -> Result<(), Failure> {
        match (result, policy.level.action(check)) {
            (Ok(()), _) | (Err(_), Action::Skip) => Ok(()),
            (Err(rejection), Action::Enforce) => Err(Failure { stage, rejection }),
            (Err(rejection), Action::Log) => {
                tracing::debug!(policy = %policy.name, ?check, %rejection, "notation check failure logged, not enforced");
                notes.logged.push(LoggedFailure { check, rejection });
                Ok(())
            }
        }
    };

    // --- Authenticity: trust store, then trusted identity. ---
    // Only a chain the trust store vouched for may send crigate to a URL for its
    // revocation status: under `audit` or an `authenticity` override a chain from anyone
    // gets that far.
    let mut vouched = false;
    if policy.level.action(Check::Authenticity) != Action::Skip {
        let trusted = check_trust_store(&chain, scheme, policy, store);
        let identified = check_identity(leaf, policy);
        vouched = trusted.is_ok() && identified.is_ok();
        check(Check::Authenticity, Stage::Authenticity, trusted)?;
        check(Check::Authenticity, Stage::Identity, identified)?;
    }
    // --- Expiry (trust policy spec, "Validate Expiry"). ---
    if policy.level.action(Check::Expiry) != Action::Skip {
        check(Check::Expiry, Stage::Expiry, check_expiry(&envelope, now))?;
    }
    // --- Authentic timestamp. ---
    let mut authentic_time = None;
    if policy.level.action(Check::AuthenticTimestamp) != Action::Skip {
        let tsa_revocation = config
            .timestamp_revocation
            .then_some((&config.crls, notes.fetched));
        let mut wanted = Vec::new();
        let result = check_authentic_timestamp(
            &envelope,
            &chain,
            scheme,
            signing_time,
            policy,
            store,
            target,
            now,
            tsa_revocation,
            &mut wanted,
        )
        .map(|time| authentic_time = time);
        // The TSA chain reached the policy's `tsa` store: its sources may be asked.
        want(&mut notes.revocation_wanted, wanted);
        check(Check::AuthenticTimestamp, Stage::AuthenticTimestamp, result)?;
    }
    // --- Revocation: configured CRLs, OCSP, fetched CRLs; see the module docs. ---
    if policy.level.action(Check::Revocation) != Action::Skip {
        // notation-go `verifyRevocation` weighs a revocation's time against the signing
        // authority's authentic signing time only: a `notary.x509` signing certificate
        // that is revoked fails, a timestamp notwithstanding.
        let revocation_time = match scheme {
            SigningScheme::X509SigningAuthority => authentic_time,
            SigningScheme::X509 => None,
        };
        let result = check_revocation(
            &chain,
            &config.crls,
            notes.fetched,
            now,
            revocation_time,
            Purpose::Signing,
        );
        if let (Err(unsettled), true) = (&result, vouched) {
            want(
                &mut notes.revocation_wanted,
                unsettled.wanted.iter().cloned(),
            );
        }
        check(
            Check::Revocation,
            Stage::Revocation,
            result.map_err(|unsettled| unsettled.rejection),
        )?;
    }
    // --- Target: the signed descriptor must be the image's. ---
    payload.check_target(target).map_err(fail(Stage::Target))?;
    // What was checked against `now` stops holding at these times: the signature's
    // expiry, and the chain's validity where no authentic timestamp fixed the time it
    // is judged at.
    let mut until = None;
    if policy.level.action(Check::Expiry) == Action::Enforce {
        until = envelope.headers.expiry;
    }
    if authentic_time.is_none() && policy.level.action(Check::AuthenticTimestamp) == Action::Enforce
    {
        let chain_ends = chain.iter().map(Cert::not_after).min();
        until = until.into_iter().chain(chain_ends).min();
    }
    Ok(Passed {
        subject: leaf.subject(),
        until,
    })
}

/// A signature that passed every enforced check.
struct Passed {
    subject: String,
    /// When a check made against the verification time would first fail.
    until: Option<Moment>,
}

fn parse_envelope(media_type: &str, bytes: &[u8]) -> Result<Envelope, Rejection> {
    let parsed = match media_type {
        MEDIA_TYPE_JWS => jws::parse(bytes),
        MEDIA_TYPE_COSE => cose::parse(bytes),
        other => {
            return Err(Rejection::Malformed(format!(
                "{other:?} is not a Notary Project envelope media type"
            )))
        }
    };
    parsed.map_err(envelope_rejection)
}

/// Trust policy spec, "Validate Integrity": "Determine the signing algorithm
/// (hash+encryption) from the signing certificate and validate that the signing
/// algorithm satisfies algorithm requirements", then verify with it.
fn check_signature(envelope: &Envelope, leaf: &Cert) -> Result<(), Rejection> {
    let key = leaf.public_key().map_err(chain_rejection)?;
    let expected = crypto::SignatureAlgorithm::for_key(key).ok_or_else(|| {
        Rejection::UnsupportedAlgorithm(format!(
            "signing key of {} bits has no Notary Project algorithm",
            key.bits()
        ))
    })?;
    if expected != envelope.alg {
        return Err(Rejection::UnsupportedAlgorithm(format!(
            "envelope uses {} but the signing key requires {}",
            envelope.alg.name(),
            expected.name()
        )));
    }
    envelope
        .alg
        .verify(
            key,
            envelope.pss_salt,
            &envelope.signing_input,
            &envelope.signature,
        )
        .map_err(|e| Rejection::Tampered(format!("envelope signature: {e}")))
}

/// Trust policy spec, "Validate Authenticity": the chain must "lead to a trusted
/// certificate present in the named store". notation-core-go's `VerifyAuthenticity`:
/// some certificate of the (already validated) chain equals a store certificate.
/// Signing scheme spec: `notary.x509` anchors in `ca` stores, `notary.x509.signingAuthority`
/// in `signingAuthority` stores.
fn check_trust_store(
    chain: &[Cert],
    scheme: SigningScheme,
    policy: &TrustPolicy,
    store: &TrustStore,
) -> Result<(), Rejection> {
    let kind = match scheme {
        SigningScheme::X509 => StoreKind::Ca,
        SigningScheme::X509SigningAuthority => StoreKind::SigningAuthority,
    };
    let trusted = policy
        .stores(kind)
        .flat_map(|s| store.certs(s))
        .any(|anchor| chain.iter().any(|cert| cert.der() == anchor.der()));
    if trusted {
        Ok(())
    } else {
        Err(Rejection::UntrustedRoot(format!(
            "chain of {} does not lead to a certificate in the {} stores of trust policy {}",
            chain.first().map(Cert::subject).unwrap_or_default(),
            kind.dir_name(),
            policy.name
        )))
    }
}

/// Trust policy spec, "Validate Authenticity": "If trustedIdentities is *, any signing
/// certificate issued by a CA in trustStore is allowed ... Else validate if the X.509
/// subject (x509.subject) in the trustedIdentities list matches".
fn check_identity(leaf: &Cert, policy: &TrustPolicy) -> Result<(), Rejection> {
    match &policy.identities {
        TrustedIdentities::Any => Ok(()),
        TrustedIdentities::Subjects(dns) => {
            let subject = leaf.subject_attributes().map_err(|why| {
                Rejection::IdentityNotTrusted(format!(
                    "{} matches no trusted identity: notation cannot read it ({why})",
                    leaf.subject()
                ))
            })?;
            if let Some(kind) = trustpolicy::repeated_list_attribute(&subject) {
                return Err(Rejection::IdentityNotTrusted(format!(
                    "{} names {kind} more than once, which matches no trusted identity \
                     (notation reads it as a multi-valued RDN, which it does not support)",
                    leaf.subject()
                )));
            }
            if dns.iter().any(|dn| dn.matches(&subject)) {
                Ok(())
            } else {
                Err(Rejection::IdentityNotTrusted(format!(
                    "{} is not a trusted identity of trust policy {}",
                    leaf.subject(),
                    policy.name
                )))
            }
        }
    }
}

/// Signature spec, "Expiry": "The artifact is considered expired when the current time
/// is greater than or equal to expiry time".
fn check_expiry(envelope: &Envelope, now: Moment) -> Result<(), Rejection> {
    match envelope.headers.expiry {
        Some(expiry) if now >= expiry => {
            Err(Rejection::Expired(format!("signature expired at {expiry}")))
        }
        _ => Ok(()),
    }
}

/// Trust policy spec, "Validate Trusted Timestamp", with notation-go's
/// `verifyTimestamp` option: a `notary.x509` signature under a policy with a `tsa`
/// store needs a verified RFC 3161 timestamp whose range lies within every chain
/// certificate's validity; without a `tsa` store (or with `afterCertExpiry` while the
/// chain is unexpired) the chain must be valid now. A `notary.x509.signingAuthority`
/// signature's authentic signing time was already checked against the chain.
///
/// With `revocation`, the timestamp's TSA chain must not be revoked nor of unknown
/// status (notation-go `verifyTimestamp`, checked last); the sources that could settle
/// an unknown status are added to `wanted`.
///
/// Returns the authentic signing time established, if any (the latest instant of a
/// timestamp's range, or the signing authority's time).
#[allow(clippy::too_many_arguments)]
fn check_authentic_timestamp(
    envelope: &Envelope,
    chain: &[Cert],
    scheme: SigningScheme,
    signing_time: Moment,
    policy: &TrustPolicy,
    store: &TrustStore,
    target: &Descriptor,
    now: Moment,
    revocation: Option<(&CrlSet, &Fetched)>,
    wanted: &mut Vec<Wanted>,
) -> Result<Option<Moment>, Rejection> {
    if scheme == SigningScheme::X509SigningAuthority {
        return Ok(Some(signing_time));
    }
    let anchors: Vec<&Cert> = policy
        .stores(StoreKind::Tsa)
        .flat_map(|s| store.certs(s))
        .collect();
    let mut use_timestamp = policy.stores(StoreKind::Tsa).next().is_some();
    if use_timestamp && policy.verify_timestamp == TimestampOption::AfterCertExpiry {
        use_timestamp = chain.iter().any(|cert| now > cert.not_after());
    }
    if !use_timestamp {
        // Signature spec, "Other requirements" 4: "In the absence of an Authentic
        // Timestamp, each and every certificate in the certificate chain ... must be
        // valid ... at the time of signature verification."
        for cert in chain {
            cert.check_valid_at(now).map_err(chain_rejection)?;
        }
        return Ok(None);
    }
    // notation-go: "no timestamp countersignature was found in the signature envelope".
    // The vectors (N26b) class a missing countersignature as no-signature.
    let Some(token) = &envelope.timestamp else {
        return Err(Rejection::NoSignature(target.digest.clone()));
    };
    let verified =
        timestamp::verify(token, &envelope.signature, &anchors).map_err(timestamp_rejection)?;
    let range = verified.range;
    // notation-go `verifyTimestamp`: the timestamp countersigns the finished signature,
    // so no instant of its range may come before the signing time the signature claims.
    if range.earliest < signing_time {
        return Err(Rejection::Tampered(format!(
            "timestamp {} (range from {}) is before the signing time {} the signature claims",
            range.gen_time, range.earliest, signing_time
        )));
    }
    // "Validate that the time range from timeStampLowerLimit to timeStampUpperLimit
    // timestamp is entirely within the signing certificate and certificate chain's
    // validity period."
    for cert in chain {
        if range.earliest < cert.not_before() || range.latest > cert.not_after() {
            return Err(Rejection::Expired(format!(
                "timestamp {} is not within the validity of {} ({} to {})",
                range.gen_time,
                cert.subject(),
                cert.not_before(),
                cert.not_after()
            )));
        }
    }
    // notation-go checks the TSA chain last, with no signing time: a revocation counts
    // whenever it took effect.
    if let Some((configured, fetched)) = revocation {
        check_revocation(
            &verified.chain,
            configured,
            fetched,
            now,
            None,
            Purpose::Timestamping,
        )
        .map_err(|unsettled| {
            wanted.extend(unsettled.wanted);
            match unsettled.rejection {
                Rejection::UntrustedRoot(m) => {
                    Rejection::UntrustedRoot(format!("timestamp: TSA chain: {m}"))
                }
                Rejection::RevocationUnknown(m) => {
                    Rejection::RevocationUnknown(format!("timestamp: TSA chain: {m}"))
                }
                other => other,
            }
        })?;
    }
    Ok(Some(range.latest))
}

/// Adds `sources` to `wanted`, each once.
fn want(wanted: &mut Vec<Wanted>, sources: impl IntoIterator<Item = Wanted>) {
    for source in sources {
        if !wanted.contains(&source) {
            wanted.push(source);
        }
    }
}

/// What a chain checked for revocation is for: it names the setting that relaxes the
/// check in an undeterminable status's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Signing,
    Timestamping,
}

/// A revocation check that failed, and the sources that could settle it.
struct Unsettled {
    rejection: Rejection,
    wanted: Vec<Wanted>,
}

/// Trust policy spec, "Certificate Revocation Evaluation": "Starting from Root to leaf
/// certificate, for each certificate in the certificate chain" (but the root, which
/// notation-core-go deems never revoked): one without OCSP or CRL information "is
/// considered valid (not revoked)"; "If both OCSP URLs and CDP URLs are present, then
/// OCSP is preferred over CRLs. If revocation status cannot be determined using OCSP
/// ... then fallback to using CRLs"; and "If the revocation status of any of the
/// certificates is revoked or cannot be determined (revocation unavailable), fail this
/// step." CRL files the operator configured come first, so a node that has them needs
/// no network. The sources not yet asked are returned as wanted: OCSP responders first,
/// a certificate's distribution points once its responders gave no answer.
fn check_revocation(
    chain: &[Cert],
    configured: &CrlSet,
    fetched: &Fetched,
    now: Moment,
    signed_at: Option<Moment>,
    purpose: Purpose,
) -> Result<(), Unsettled> {
    let mut unsettled: Option<Unsettled> = None;
    for (index, cert) in chain.iter().enumerate().rev().skip(1) {
        let Some(issuer) = chain.get(index + 1) else {
            continue;
        };
        match cert_status(cert, issuer, configured, fetched, now, signed_at, purpose) {
            CertStatus::Good => {}
            CertStatus::Revoked(message) => {
                return Err(Unsettled {
                    rejection: Rejection::UntrustedRoot(message),
                    wanted: Vec::new(),
                })
            }
            CertStatus::Unknown { message, wanted } => match &mut unsettled {
                // The first certificate from the root names the rejection; every one
                // says what it waits on.
                Some(first) => first.wanted.extend(wanted),
                None => {
                    unsettled = Some(Unsettled {
                        rejection: Rejection::RevocationUnknown(message),
                        wanted,
                    })
                }
            },
        }
    }
    unsettled.map_or(Ok(()), Err)
}

enum CertStatus {
    Good,
    Revoked(String),
    Unknown {
        message: String,
        wanted: Vec<Wanted>,
    },
}

/// The status of one certificate of the chain; see [`check_revocation`].
fn cert_status(
    cert: &Cert,
    issuer: &Cert,
    configured: &CrlSet,
    fetched: &Fetched,
    now: Moment,
    signed_at: Option<Moment>,
    purpose: Purpose,
) -> CertStatus {
    let revoked = |subject: String, at: Moment| {
        CertStatus::Revoked(format!("certificate {subject} was revoked at {at}"))
    };
    match CrlSet::status(&[configured], cert, issuer, now, signed_at) {
        revocation::Status::Good => return CertStatus::Good,
        revocation::Status::Revoked { subject, at } => return revoked(subject, at),
        revocation::Status::Unknown { .. } => {}
    }
    let mut notes = Vec::new();
    let mut wanted = Vec::new();
    let responders: Vec<String> = cert
        .revocation_info()
        .map(|info| info.ocsp)
        .unwrap_or_default();
    let request = ocsp::request(cert, issuer);
    for url in &responders {
        if !revocation::is_http(url) {
            notes.push(format!("OCSP {url}: not an http URL"));
            continue;
        }
        let request = match &request {
            Ok(request) => request,
            Err(reason) => {
                notes.push(format!("OCSP: {reason}"));
                break;
            }
        };
        let source = Wanted::Ocsp {
            url: url.clone(),
            request: request.clone(),
        };
        if let Some((_, response)) = fetched.ocsp.iter().find(|(asked, _)| *asked == source) {
            match ocsp::answer(response, cert, issuer, now, signed_at) {
                Ok(ocsp::Answer::Good) => return CertStatus::Good,
                Ok(ocsp::Answer::Revoked { at }) => return revoked(cert.subject(), at),
                Err(reason) => notes.push(format!("OCSP {url}: {reason}")),
            }
        } else if let Some((_, error)) = fetched.failures.iter().find(|(asked, _)| *asked == source)
        {
            notes.push(format!("OCSP {url}: {error}"));
        } else {
            wanted.push(source);
        }
    }
    if !wanted.is_empty() {
        // Responders not asked yet: their answer may settle it without any CRL.
        return CertStatus::Unknown {
            message: format!(
                "revocation status of {} cannot be determined: its OCSP responders were not \
                 asked (online revocation checking is off)",
                cert.subject()
            ),
            wanted,
        };
    }
    let (subject, reason, fetch) =
        match CrlSet::status(&[configured, &fetched.crls], cert, issuer, now, signed_at) {
            revocation::Status::Good => return CertStatus::Good,
            revocation::Status::Revoked { subject, at } => return revoked(subject, at),
            revocation::Status::Unknown {
                subject,
                reason,
                fetch,
            } => (subject, reason, fetch),
        };
    let mut message = format!("revocation status of {subject} cannot be determined: {reason}");
    for note in &notes {
        let _ = write!(message, "; {note}");
    }
    for url in &fetch {
        let source = Wanted::Crl(url.clone());
        match fetched.failures.iter().find(|(asked, _)| *asked == source) {
            Some((_, error)) => {
                let _ = write!(message, "; fetching {url}: {error}");
            }
            None => wanted.push(source),
        }
    }
    let relax = match purpose {
        Purpose::Signing => "\"revocation\" to \"log\" or \"skip\"",
        Purpose::Timestamping => {
            "\"authenticTimestamp\" to \"log\", or turn timestamp_revocation off"
        }
    };
    let _ = write!(
        message,
        " (put a current CRL in the crl directory, let crigate reach the certificate's http \
         OCSP responder or CRL distribution point, or set the trust policy override {relax})"
    );
    CertStatus::Unknown { message, wanted }
}

fn envelope_rejection(error: EnvelopeError) -> Rejection {
    match error {
        EnvelopeError::Malformed(m) => Rejection::Malformed(m),
        EnvelopeError::Unsupported(m) => Rejection::UnsupportedAlgorithm(m),
    }
}

fn chain_rejection(error: ChainError) -> Rejection {
    let message = error.to_string();
    match error {
        ChainError::Malformed(_)
        | ChainError::TooLarge(_)
        | ChainError::Empty
        | ChainError::TooLong(_) => Rejection::Malformed(message),
        ChainError::Key { .. } => Rejection::UnsupportedAlgorithm(message),
        ChainError::NotValidAt { .. } => Rejection::Expired(message),
        ChainError::NotIssuedBy { .. }
        | ChainError::RootNotSelfSigned(_)
        | ChainError::SelfSignedInChain(_)
        | ChainError::Requirement { .. }
        | ChainError::NoIssuer(_)
        | ChainError::TooManyCandidates => Rejection::UntrustedRoot(message),
    }
}

fn timestamp_rejection(error: TimestampError) -> Rejection {
    let message = format!("timestamp: {error}");
    match error {
        TimestampError::TooLarge(_)
        | TimestampError::Malformed(_)
        | TimestampError::NotTstInfo(_)
        | TimestampError::SignerCount(_)
        | TimestampError::MissingAttribute(_)
        | TimestampError::SignerCertificateMissing => Rejection::Malformed(message),
        TimestampError::UnsupportedHash(_) | TimestampError::Algorithm(_) => {
            Rejection::UnsupportedAlgorithm(message)
        }
        TimestampError::ImprintMismatch
        | TimestampError::AttributeMismatch(_)
        | TimestampError::BadSignature => Rejection::Tampered(message),
        TimestampError::Chain(chain) => match chain_rejection(chain) {
            Rejection::Expired(m) => Rejection::Expired(format!("timestamp: {m}")),
            Rejection::UntrustedRoot(m) => Rejection::UntrustedRoot(format!("timestamp: {m}")),
            other => other,
        },
    }
}

fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>, Error> {
    crate::files::read_bounded(path, limit as u64)
        .map_err(|source| Error::ReadPolicy {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| Error::Policy {
            path: path.to_path_buf(),
            // At least this many: reading stopped one byte past the limit.
            source: PolicyError::TooLarge(limit.saturating_add(1)),
        })
}

/// Fuzzing entry point: reads `data` as the revocation material crigate takes from the
/// network: an OCSP answer (checked against each certificate it carries), a
/// certificate's revocation locations and OCSP request, and CRLs. Must return for any
/// input, never panic.
pub fn fuzz_revocation(data: &[u8]) {
    let now = Moment::from_unix_seconds(1_767_225_600);
    ocsp::fuzz_answer(data, now);
    if let Ok(cert) = Cert::from_der(data) {
        let _ = cert.revocation_info();
        let _ = ocsp::request(&cert, &cert);
    }
    let mut crls = CrlSet::default();
    if crls.add(data).is_ok() {
        let _ = crls.next_update();
    }
}

/// Fuzz entry point: parses `data` as a JWS and as a COSE envelope and runs every
/// parse-level step on what parses (headers, certificates, payload, timestamp token).
/// Must return for any input, never panic.
pub fn fuzz_envelope(data: &[u8]) {
    for parsed in [jws::parse(data), cose::parse(data)] {
        let Ok(envelope) = parsed else { continue };
        let _ = envelope::check_headers(&envelope.headers);
        let chain: Vec<Cert> = envelope
            .cert_chain
            .iter()
            .filter_map(|der| Cert::from_der(der).ok())
            .collect();
        if let Some(leaf) = chain.first() {
            let _ = check_signature(&envelope, leaf);
            let _ = leaf.subject_attributes();
        }
        let _ = chain::validate_signing_chain(&chain, Moment::from_unix_seconds(0));
        if let envelope::Payload::Base64Url(text) = &envelope.payload {
            if let Ok(bytes) = jws::decode_payload(text) {
                let _ = payload::Payload::parse(&bytes);
            }
        }
        if let Some(token) = &envelope.timestamp {
            let anchors: Vec<&Cert> = chain.iter().collect();
            let _ = timestamp::verify(token, &envelope.signature, &anchors);
        }
    }
    let _ = timestamp::verify(data, b"", &[]);
    // A Sigstore bundle's timestamp: a TimeStampResp around the token.
    if let Ok(token) = timestamp::token_of_response(data) {
        let _ = timestamp::verify(token, b"", &[]);
    }
}

/// Fuzz entry point: parses `data` as a trust policy document and, if valid, selects a
/// statement. Must return for any input, never panic.
pub fn fuzz_trust_policy(data: &[u8]) {
    if let Ok(document) = TrustPolicyDocument::parse(data) {
        let _ = document.select("registry.example.com/app@sha256:00");
        let _ = document.select("*");
    }
}

#[cfg(test)]
mod tests;
