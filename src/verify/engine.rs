//! The verification engine: from an image reference to a verdict, through the registry,
//! the verifiers and the verdict cache. The daemon and `crigate verify` share it.
//!
//! One verification:
//!
//! 1. **Resolve** the reference to a digest (a tag is read once; everything after names
//!    the digest).
//! 2. **Cache**: a verdict for (digest, policy fingerprint) still in its TTL answers at
//!    once; concurrent callers for the same key share one verification.
//! 3. **Discover** signatures through the registry client (size- and time-bounded,
//!    every byte digest-checked): cosign's `sha256-<hex>.sig` tag, and Sigstore bundles
//!    and simple-signing manifests attached as OCI referrers.
//! 4. **Verify** with the policy's verifier.
//! 5. **Multi-arch**: a signature on an image index covers the platform manifests it
//!    lists; a signature on a platform manifest covers that manifest. When the index
//!    itself carries no trusted signature, the engine verifies the manifest of this
//!    node's platform, and the decision is pinned to whichever digest the trusted
//!    signature covers ([`Signer::signed_digest`]), so the runtime fetches exactly that.
//!
//! Errors (registry unreachable, response over a limit, verification over its time
//! budget) are `Err` and never cached; the policy decides what they mean (`on_error`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::OnceCell;

use crate::oci::descriptor::{OCI_EMPTY, OCI_MANIFEST};
use crate::oci::manifest::Manifest;
use crate::oci::{Descriptor, Digest, ImageRef, Repository};
use crate::registry::Wanted;
use crate::registry::{self, Client, CriCredentials};
use crate::verify::cache::{CacheKey, Fingerprint, Source, VerdictCache, VerifyError};
use crate::verify::cosign::bundle::{SigstoreBundle, MAX_BUNDLE_BYTES};
use crate::verify::cosign::{self, CosignPolicy, SignatureLayer};
use crate::verify::notation::{self, Fetched, NotationConfig, RevocationFetcher};
use crate::verify::{reported_rejection, Rejection, Signer, Verdict};

/// The simple-signing payload of a cosign signature is a few hundred bytes; a larger
/// layer blob is not a cosign signature.
pub const MAX_SIGNATURE_BLOB_BYTES: usize = 64 * 1024;

/// Media types of Sigstore bundles (`application/vnd.dev.sigstore.bundle+json;version=0.1`,
/// `application/vnd.dev.sigstore.bundle.v0.3+json`, …), as artifact types of referrers.
const SIGSTORE_BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";

/// The artifact type of Notation signatures (Notary Project signature specification,
/// "Storage").
const NOTATION_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";

/// The artifact type of cosign's simple-signing signatures stored as OCI 1.1 referrers
/// (cosign `ArtifactType("sig")`, the config media type of the manifest
/// `WriteSignaturesExperimentalOCI` writes).
const COSIGN_SIG_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// The descriptor annotation in which cosign names a bundle referrer's predicate type
/// (`WriteAttestationNewBundleFormat`).
const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";

/// What a referrer is to cosign, by its artifact type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReferrerKind {
    Bundle,
    SimpleSigning,
    /// Listed with no artifact type, or the empty one: its manifest tells.
    Unknown,
    Other,
}

/// What cosign stores as referrers of an image, read from the registry.
#[derive(Default)]
struct Referred {
    layers: Vec<SignatureLayer>,
    /// Signature layer blobs read for `layers`.
    layers_read: usize,
    bundles: Vec<SigstoreBundle>,
    malformed: Option<String>,
    /// The first referrer that could not be read for a reason that may pass (a
    /// registry error): reported if nothing read is trusted.
    failed: Option<Error>,
}

impl Referred {
    /// Notes that the manifest of the referrer `what` could not be read: one the registry
    /// lists but no longer holds (a signature deleted since the list was written, as a
    /// stale referrers tag index keeps it) is no signature; any other failure may hide
    /// one.
    fn unread(&mut self, what: impl std::fmt::Display, error: registry::Error) {
        match error {
            registry::Error::NotFound { .. } => {
                tracing::debug!(%what, "cosign referrer listed but not found");
            }
            error => {
                tracing::debug!(%what, %error, "cosign referrer not read");
                self.failed.get_or_insert(error.into());
            }
        }
    }
}

fn is_bundle_type(media_type: &str) -> bool {
    media_type.starts_with(SIGSTORE_BUNDLE_MEDIA_TYPE_PREFIX)
}

/// A referrer's kind by an artifact type (or a config media type standing for one).
fn artifact_kind(artifact_type: &str) -> ReferrerKind {
    match artifact_type {
        t if is_bundle_type(t) => ReferrerKind::Bundle,
        COSIGN_SIG_ARTIFACT_TYPE => ReferrerKind::SimpleSigning,
        "" | OCI_EMPTY => ReferrerKind::Unknown,
        _ => ReferrerKind::Other,
    }
}

/// A referrer's kind by its descriptor; a bundle whose descriptor names another
/// predicate than cosign's signing one is no signature.
fn cosign_referrer(referrer: &Descriptor) -> ReferrerKind {
    let kind = artifact_kind(referrer.artifact_type.as_deref().unwrap_or_default());
    let attestation = referrer
        .annotations
        .get(BUNDLE_PREDICATE_ANNOTATION)
        .is_some_and(|p| p != cosign::bundle::COSIGN_SIGN_PREDICATE_TYPE);
    match kind {
        ReferrerKind::Bundle | ReferrerKind::Unknown if attestation => ReferrerKind::Other,
        kind => kind,
    }
}

/// A verification that cannot finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error("verification of {image} took longer than {after:?}")]
    Timeout { image: String, after: Duration },
    #[error(
        "verification of {image} did not finish within the {after:?} its decision's \
         verifications share"
    )]
    DecisionTimeout { image: String, after: Duration },
    #[error("verification of {image} ended without a result")]
    Aborted { image: String },
}

/// What the engine needs to know to verify: the verifiers that may establish trust (any
/// one suffices) and the fingerprint of the policy they come from.
#[derive(Clone)]
pub struct Requirement {
    pub cosign: Option<Arc<CosignPolicy>>,
    pub notation: Option<Arc<NotationConfig>>,
    /// The hash of what the verifiers check against (their configuration and trust
    /// material, and the policy they serve); verdicts are cached under it and the image's
    /// repository.
    pub fingerprint: Fingerprint,
}

/// The result of verifying one image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The reference as asked for.
    pub image: ImageRef,
    /// The digest the reference resolved to.
    pub digest: Digest,
    pub verdict: Verdict,
    /// Whether the verdict came from the cache.
    pub source: Source,
}

/// The verification engine. Cheap to share behind an `Arc`.
pub struct Engine {
    registry: Client,
    cache: Arc<VerdictCache>,
    /// Bound on one verification, registry round trips included, for its callers and for
    /// the verification itself. kubelet gives PullImage no deadline of its own, so this is
    /// what keeps a stuck registry from holding a pull.
    timeout: Duration,
    /// The platform of this node, for choosing a manifest from an index.
    platform: (String, String),
    /// Tag resolutions under way, by (reference, credentials fingerprint).
    resolving: Mutex<HashMap<ResolveKey, Arc<OnceCell<Digest>>>>,
    /// CRLs and OCSP answers fetched for Notation signing certificates, kept until their
    /// `nextUpdate`.
    revocation: Arc<RevocationFetcher>,
}

// === impl Outcome ===

impl Outcome {
    /// The reference to hand to the runtime: the image's repository at the digest the
    /// trusted signature covers. `None` unless the verdict is trusted.
    pub fn pinned(&self) -> Option<ImageRef> {
        match &self.verdict {
            Verdict::Trusted(signer) => Some(self.image.with_digest(signer.signed_digest.clone())),
            Verdict::Rejected(_) => None,
        }
    }
}

// === impl Engine ===

impl Engine {
    pub fn new(registry: Client, cache: Arc<VerdictCache>, timeout: Duration) -> Self {
        Self {
            registry,
            cache,
            timeout,
            platform: ("linux".to_owned(), oci_architecture().to_owned()),
            resolving: Mutex::new(HashMap::new()),
            revocation: Arc::new(RevocationFetcher::default()),
        }
    }

    /// Counts the engine's revocation fetches in `stats` (the node's metrics).
    pub fn with_revocation_stats(mut self, stats: Arc<notation::fetch::RevocationStats>) -> Self {
        self.revocation = Arc::new(RevocationFetcher::default().with_stats(stats));
        self
    }

    /// How long one verification may take (`[verify] timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Verifies `image` against `requirement`, with `credentials` for the registry (a CRI
    /// request's, or none).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons this caller's wait; a verification already started
    /// finishes in its own task and its verdict is cached.
    ///
    /// # Errors
    ///
    /// The registry could not answer, or the verification exceeded its time budget.
    pub async fn verify(
        &self,
        image: &ImageRef,
        requirement: &Requirement,
        credentials: Option<CriCredentials>,
    ) -> Result<Outcome, Error> {
        // A digest already decided under this requirement needs nothing else.
        let repository = image.repo().to_string();
        if let Some(digest) = image.digest() {
            let key = CacheKey::new(&repository, digest.clone(), requirement.fingerprint);
            if let Some(verdict) = self.cache.hit(&key) {
                return Ok(Outcome {
                    image: image.clone(),
                    digest: digest.clone(),
                    verdict,
                    source: Source::Cache,
                });
            }
        }
        let credentials_id = credentials.as_ref().map(CriCredentials::fingerprint);
        let registry = match credentials {
            Some(credentials) => self.registry.with_credentials(credentials),
            None => self.registry.clone(),
        };
        let timed_out = || Error::Timeout {
            image: image.to_string(),
            after: self.timeout,
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        // A digest reference goes straight to the cache; a tag is resolved on every call
        // (it may have moved), concurrent resolves of one tag sharing one request.
        let digest = match image.digest() {
            Some(digest) => digest.clone(),
            None => tokio::time::timeout_at(
                deadline,
                self.resolve_shared(&registry, image, credentials_id),
            )
            .await
            .map_err(|_| timed_out())??,
        };
        let key = CacheKey::new(&repository, digest.clone(), requirement.fingerprint);
        let job = Job {
            registry,
            repo: image.repo().clone(),
            repository,
            digest: digest.clone(),
            cosign: requirement.cosign.clone(),
            notation: requirement.notation.clone(),
            platform: self.platform.clone(),
            revocation: self.revocation.clone(),
        };
        // The verification runs in a task of its own, shared by every caller that wants
        // it; the deadline holds it too, not only this caller's wait, so that a registry
        // that answers slowly cannot keep it, and its connections, past the deadline.
        let (image_text, after) = (image.to_string(), self.timeout);
        let run = move || async move {
            tokio::time::timeout_at(deadline, job.run())
                .await
                .unwrap_or(Err(Error::Timeout {
                    image: image_text,
                    after,
                }))
        };
        let (verdict, source) =
            tokio::time::timeout_at(deadline, self.cache.get_or_verify(key, run))
                .await
                .map_err(|_| timed_out())?
                .map_err(|error| match error {
                    VerifyError::Verify(error) => error,
                    VerifyError::Aborted => Error::Aborted {
                        image: image.to_string(),
                    },
                })?;
        Ok(Outcome {
            image: image.clone(),
            digest,
            verdict,
            source,
        })
    }

    /// Resolves `image`'s tag, sharing one registry request among concurrent callers
    /// with the same credentials. Nothing is kept once the request is answered.
    async fn resolve_shared(
        &self,
        registry: &Client,
        image: &ImageRef,
        credentials: Option<[u8; 32]>,
    ) -> Result<Digest, Error> {
        let key = (image.to_string(), credentials);
        let cell = self
            .resolving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        // Forgotten once this caller is answered or gives up (its deadline passed): a
        // registry that never answers leaves nothing behind.
        let _forget = Forget {
            resolving: &self.resolving,
            key,
            cell: cell.clone(),
        };
        Ok(cell
            .get_or_try_init(|| registry.resolve_digest(image))
            .await
            .cloned()?)
    }

    /// The cache, for lookups that must not touch the registry.
    pub fn cache(&self) -> &VerdictCache {
        &self.cache
    }
}

/// A tag resolution in flight: the reference and the fingerprint of the credentials.
type ResolveKey = (String, Option<[u8; 32]>);

/// Removes a tag resolution from those in flight when dropped, unless another has taken
/// its place.
struct Forget<'a> {
    resolving: &'a Mutex<HashMap<ResolveKey, Arc<OnceCell<Digest>>>>,
    key: ResolveKey,
    cell: Arc<OnceCell<Digest>>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut resolving = self
            .resolving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if resolving
            .get(&self.key)
            .is_some_and(|current| Arc::ptr_eq(current, &self.cell))
        {
            resolving.remove(&self.key);
        }
    }
}

/// One uncached verification, owned so it can run in a task of its own.
struct Job {
    registry: Client,
    repo: Repository,
    repository: String,
    digest: Digest,
    cosign: Option<Arc<CosignPolicy>>,
    notation: Option<Arc<NotationConfig>>,
    platform: (String, String),
    revocation: Arc<RevocationFetcher>,
}

// === impl Job ===

impl Job {
    async fn run(self) -> Result<Verdict, Error> {
        // The manifest is fetched by the digest and checked against it, whatever resolved
        // the tag: its type and size are those of the bytes.
        let fetched = self.registry.manifest(&self.repo, &self.digest).await?;
        let descriptor = fetched.descriptor;
        let verdict = self.verify_target(&descriptor).await?;
        let untrusted_index = descriptor.is_index() && matches!(verdict, Verdict::Rejected(_));
        if !untrusted_index {
            return Ok(verdict);
        }
        // Multi-arch: the index carries no trusted signature; this node's platform
        // manifest may carry one of its own.
        // The index read above, not read again: where pulls are counted (Docker Hub), a
        // manifest GET is one.
        let Some(platform) = self.platform_manifest(fetched.manifest) else {
            return Ok(verdict);
        };
        match self.verify_target(&platform).await? {
            trusted @ Verdict::Trusted(_) => Ok(trusted),
            // A rejection the next call may not repeat: reported, so it is not cached.
            Verdict::Rejected(rejection) if !rejection.is_lasting() => {
                Ok(Verdict::Rejected(rejection))
            }
            // Report what was found on the index: that is what was asked for.
            Verdict::Rejected(_) => Ok(verdict),
        }
    }

    /// Verifies the signatures attached to `target` with every configured verifier:
    /// trusted if any verifier trusts it; otherwise a rejection that is not lasting, the
    /// first rejection that found a signature, or `NoSignature` when no verifier found
    /// one.
    async fn verify_target(&self, target: &Descriptor) -> Result<Verdict, Error> {
        let mut rejections = Vec::new();
        if let Some(policy) = &self.cosign {
            match self.verify_cosign(policy, &target.digest).await? {
                trusted @ Verdict::Trusted(_) => return Ok(trusted),
                Verdict::Rejected(rejection) => rejections.push(rejection),
            }
        }
        if let Some(config) = &self.notation {
            match self.verify_notation(config, target).await? {
                trusted @ Verdict::Trusted(_) => return Ok(trusted),
                Verdict::Rejected(rejection) => rejections.push(rejection),
            }
        }
        Ok(Verdict::Rejected(reported_rejection(rejections, || {
            Rejection::NoSignature(target.digest.clone())
        })))
    }

    /// Verifies the Notation signatures attached to `target` (OCI referrers of artifact
    /// type `application/vnd.cncf.notary.signature`, Notary Project signature
    /// specification, "Storage").
    async fn verify_notation(
        &self,
        config: &Arc<NotationConfig>,
        target: &Descriptor,
    ) -> Result<Verdict, Error> {
        // Trust policy spec, "Signature Verification" step 2: a `skip` statement succeeds
        // without looking for signatures, so the registry is not asked (notation-go's
        // `SkipVerify` comes before any lookup): an image of a skipped repository on a
        // registry without the referrers API, or one that is down, is not refused.
        let skipped = config
            .policy()
            .select(&self.repository)
            .is_some_and(|policy| policy.level.name == notation::LevelName::Skip);
        if skipped {
            let pass = self
                .notation_pass(config, target, &Arc::new(Vec::new()), Fetched::default())
                .await?;
            return Ok(pass.verdict);
        }
        let referrers = self
            .registry
            .referrers(&self.repo, &target.digest, Some(NOTATION_ARTIFACT_TYPE))
            .await?;
        if referrers.len() > notation::MAX_SIGNATURES {
            tracing::warn!(repository = %self.repository, digest = %target.digest, listed = referrers.len(), "Notation signatures past the first {} were not read", notation::MAX_SIGNATURES);
        }
        let mut envelopes = Vec::new();
        let (mut malformed, mut failed) = (None, None);
        // A signature that cannot be fetched does not hide one that is trusted. One the
        // registry lists but no longer holds (deleted after it was listed) is none; with
        // none trusted, another failure is the outcome, as the signature it holds is
        // unknown.
        for referrer in referrers.iter().take(notation::MAX_SIGNATURES) {
            let fetched = match self.registry.manifest(&self.repo, &referrer.digest).await {
                Ok(fetched) => fetched,
                Err(registry::Error::NotFound { .. }) => {
                    tracing::debug!(digest = %referrer.digest, "Notation signature listed but not found");
                    continue;
                }
                Err(error) => {
                    tracing::debug!(%error, digest = %referrer.digest, "cannot fetch a Notation signature");
                    failed.get_or_insert(error);
                    continue;
                }
            };
            let Manifest::Image(manifest) = fetched.manifest else {
                malformed.get_or_insert_with(|| {
                    format!("Notation signature {} is an index", referrer.digest)
                });
                continue;
            };
            // Signature specification, "Storage": exactly one layer, the envelope.
            let [layer] = manifest.layers.as_slice() else {
                malformed.get_or_insert_with(|| {
                    format!(
                        "Notation signature {} has {} layers, not one",
                        referrer.digest,
                        manifest.layers.len()
                    )
                });
                continue;
            };
            if usize::try_from(layer.size)
                .map_or(true, |size| size > notation::envelope::MAX_ENVELOPE_BYTES)
            {
                malformed.get_or_insert_with(|| {
                    format!(
                        "Notation envelope {} is {} bytes, over the limit",
                        layer.digest, layer.size
                    )
                });
                continue;
            }
            let envelope = self
                .registry
                .blob(
                    &self.repo,
                    &layer.digest,
                    notation::envelope::MAX_ENVELOPE_BYTES,
                )
                .await;
            match envelope {
                Ok(envelope) => envelopes.push((layer.media_type.clone(), envelope.to_vec())),
                Err(error) => {
                    tracing::debug!(%error, digest = %layer.digest, "cannot fetch a Notation envelope");
                    failed.get_or_insert(error);
                }
            }
        }
        // The verifier is consulted even with no envelope: the trust policy decides what
        // no signature means (a `skip` level trusts, a missing policy rejects).
        let envelopes = Arc::new(envelopes);
        let mut fetched = Fetched::default();
        let mut verification = self
            .notation_pass(config, target, &envelopes, fetched.clone())
            .await?;
        // A certificate of a trusted chain waits on revocation sources not at hand: ask
        // them (or take their answers from memory) and run the checks again. OCSP
        // responders come first, a certificate's CRLs once its responders gave nothing,
        // and delta CRLs once a complete CRL names them: at most three rounds, each
        // bounded by the fetch timeouts and all by the verification's.
        let mut asked: Vec<notation::Wanted> = Vec::new();
        for _ in 0..3 {
            let new: Vec<_> = verification
                .outcome
                .revocation_wanted
                .iter()
                .filter(|wanted| !asked.contains(wanted))
                .cloned()
                .collect();
            if !config.online_revocation() || new.is_empty() {
                break;
            }
            fetched.merge(self.revocation.fetch(&new, SystemTime::now()).await);
            asked.extend(new);
            verification = self
                .notation_pass(config, target, &envelopes, fetched.clone())
                .await?;
        }
        // Trusted under a level that only logs some checks (`permissive`, `audit`, or a
        // `log` override), as the trust policy says: the image is admitted, and what was
        // only logged is said here.
        if matches!(verification.verdict, Verdict::Trusted(_)) {
            for failure in &verification.outcome.logged {
                tracing::warn!(
                    repository = %self.repository,
                    digest = %target.digest,
                    policy = verification.outcome.policy.as_deref().unwrap_or(""),
                    check = ?failure.check,
                    failure = %failure.rejection,
                    "Notation signature accepted with a failure its trust policy level only logs"
                );
            }
        }
        match (verification.verdict, malformed, failed) {
            (verdict @ Verdict::Trusted(_), _, _) => Ok(verdict),
            (_, _, Some(error)) => Err(Error::Registry(error)),
            (Verdict::Rejected(Rejection::NoSignature(_)), Some(reason), None) => {
                Ok(Verdict::Rejected(Rejection::Malformed(reason)))
            }
            (verdict, _, None) => Ok(verdict),
        }
    }

    /// One run of the Notation checks over `envelopes`, off the async threads.
    async fn notation_pass(
        &self,
        config: &Arc<NotationConfig>,
        target: &Descriptor,
        envelopes: &Arc<Vec<(String, Vec<u8>)>>,
        fetched: Fetched,
    ) -> Result<notation::Verification, Error> {
        let (config, target, repository, envelopes) = (
            config.clone(),
            target.clone(),
            self.repository.clone(),
            envelopes.clone(),
        );
        tokio::task::spawn_blocking(move || {
            notation::verify_fetched(
                &envelopes,
                &target,
                &repository,
                &config,
                &fetched,
                SystemTime::now(),
            )
        })
        .await
        .map_err(|_| Error::Aborted {
            image: self.repository.clone(),
        })
    }

    /// Verifies the cosign signatures attached to `digest`.
    async fn verify_cosign(
        &self,
        policy: &Arc<CosignPolicy>,
        digest: &Digest,
    ) -> Result<Verdict, Error> {
        // Both places cosign stores signatures at once: two lookups, one round trip of
        // waiting. A lookup that fails does not hide what the other found: a signature
        // found and trusted is trusted however the other lookup went; otherwise its
        // error is the outcome, since the signature it would have found is unknown.
        let (tagged, referred) =
            tokio::join!(self.cosign_layers(digest), self.cosign_referrers(digest));
        let (mut layers, mut malformed, mut failed) = match tagged {
            Ok(found) => (found.layers, found.malformed, found.failed),
            Err(error) => (Vec::new(), None, Some(error)),
        };
        let mut bundles = Vec::new();
        match referred {
            Ok(found) => {
                layers.extend(found.layers);
                bundles = found.bundles;
                malformed = malformed.or(found.malformed);
                if let Some(error) = found.failed {
                    failed.get_or_insert(error);
                }
            }
            Err(error) => {
                tracing::debug!(%error, %digest, "cosign referrers lookup failed");
                failed.get_or_insert(error);
            }
        }
        if layers.is_empty() && bundles.is_empty() {
            if let Some(error) = failed {
                return Err(error);
            }
            if let Some(reason) = malformed {
                return Ok(Verdict::Rejected(Rejection::Malformed(reason)));
            }
        }
        // Signature checks are CPU work (about a millisecond for a keyless chain); keep
        // them off the thread that relays CRI calls.
        let (policy, repository) = (policy.clone(), self.repository.clone());
        let signed = digest.clone();
        let verdict = tokio::task::spawn_blocking(move || {
            cosign::verify(
                &layers,
                &bundles,
                &signed,
                &repository,
                &policy,
                SystemTime::now(),
            )
        })
        .await
        .map_err(|_| Error::Aborted {
            image: format!("{}@{digest}", self.repository),
        })?;
        match (verdict, failed, malformed) {
            (trusted @ Verdict::Trusted(_), _, _) => Ok(trusted),
            (Verdict::Rejected(_), Some(error), _) => Err(error),
            (Verdict::Rejected(Rejection::NoSignature(_)), None, Some(reason)) => {
                Ok(Verdict::Rejected(Rejection::Malformed(reason)))
            }
            (verdict, None, _) => Ok(verdict),
        }
    }

    /// The layers of cosign's `.sig` manifest for `digest`, each blob digest-checked, the
    /// first reason a layer was not a usable signature, and the first blob the registry
    /// failed to give.
    async fn cosign_layers(&self, digest: &Digest) -> Result<Referred, Error> {
        let mut found = Referred::default();
        let Some(fetched) = self.registry.cosign_signature(&self.repo, digest).await? else {
            return Ok(found);
        };
        let Manifest::Image(manifest) = fetched.manifest else {
            found.malformed = Some("cosign signature tag holds an index".to_owned());
            return Ok(found);
        };
        self.signature_layers(&manifest.layers, &mut found).await;
        Ok(found)
    }

    /// Reads `descriptors` as cosign signature layers (simple-signing payloads with their
    /// annotations) into `found.layers`, reading at most [`cosign::MAX_SIGNATURES`] blobs
    /// over the calls that share `found` (the `.sig` tag and the referrers each fill one
    /// of their own); the first reason a layer is not a usable signature goes to
    /// `found.malformed`. A layer whose descriptor shows it is none is passed over unread.
    ///
    /// Layers are read last first: cosign appends a new signature to the `.sig` manifest
    /// (`mutate.AppendSignatures` in cosign's `pkg/oci/mutate`), so past the limit the
    /// newest signatures are the ones read, as an image signed again and again (a key
    /// rotated, a build signed on every run) needs. A blob the registry fails to give does
    /// not hide the other layers, as `cosign verify` judges each signature on its own: it
    /// goes to `found.failed`, the outcome if nothing read is trusted.
    async fn signature_layers(&self, descriptors: &[Descriptor], found: &mut Referred) {
        let Referred {
            layers,
            layers_read: read,
            malformed,
            failed,
            ..
        } = found;
        for layer in descriptors.iter().rev() {
            if *read >= cosign::MAX_SIGNATURES {
                tracing::warn!(repository = %self.repository, "cosign signature layers past the first {} read were not read", cosign::MAX_SIGNATURES);
                break;
            }
            if let Err(error) = SignatureLayer::may_be(&layer.media_type, &layer.annotations) {
                malformed
                    .get_or_insert_with(|| format!("signature layer {}: {error}", layer.digest));
                continue;
            }
            if usize::try_from(layer.size).map_or(true, |size| size > MAX_SIGNATURE_BLOB_BYTES) {
                malformed.get_or_insert_with(|| {
                    format!("signature layer {} is {} bytes, over the {MAX_SIGNATURE_BLOB_BYTES}-byte limit", layer.digest, layer.size)
                });
                continue;
            }
            *read += 1;
            let blob = match self
                .registry
                .blob(&self.repo, &layer.digest, MAX_SIGNATURE_BLOB_BYTES)
                .await
            {
                Ok(blob) => blob,
                Err(error) => {
                    tracing::debug!(repository = %self.repository, layer = %layer.digest, %error, "cosign signature layer not read");
                    failed.get_or_insert(error.into());
                    continue;
                }
            };
            match SignatureLayer::from_annotations(
                &layer.media_type,
                &layer.annotations,
                blob.to_vec(),
            ) {
                Ok(signature) => layers.push(signature),
                Err(error) => {
                    malformed.get_or_insert_with(|| {
                        format!("signature layer {}: {error}", layer.digest)
                    });
                }
            }
        }
    }

    /// cosign signatures attached to `digest` as OCI referrers: Sigstore bundles (what
    /// cosign v3 writes by default, `--new-bundle-format`), each the single bundle layer
    /// of a manifest whose artifact type is a bundle media type; and simple-signing
    /// manifests (cosign's `--registry-referrers-mode=oci-1-1` with the legacy format),
    /// whose config media type is [`COSIGN_SIG_ARTIFACT_TYPE`] and whose layers are read
    /// as the `.sig` tag's are.
    ///
    /// A referrer is judged by its descriptor's artifact type where that names one. The
    /// referrers tag schema index go-containerregistry (cosign's registry library) keeps
    /// on a registry without the referrers API lists each referrer with its config's media
    /// type as artifact type (`commitSubjectReferrers` callers in `pkg/v1/remote/write.go`),
    /// which for a bundle is the empty descriptor's type; such a referrer, or one listed
    /// with no artifact type at all, is judged by its manifest. Bundles whose descriptor
    /// names a predicate other than cosign's signing one (attestations, through the
    /// `dev.sigstore.bundle.predicateType` annotation cosign sets) are left unread. At most
    /// [`cosign::MAX_SIGNATURES`] referrers are read, each manifest once.
    async fn cosign_referrers(&self, digest: &Digest) -> Result<Referred, Error> {
        let referrers = self
            .registry
            .referrers_where(&self.repo, digest, |r| match cosign_referrer(r) {
                ReferrerKind::Bundle | ReferrerKind::SimpleSigning => Wanted::Yes,
                ReferrerKind::Unknown => Wanted::ByManifest,
                ReferrerKind::Other => Wanted::No,
            })
            .await?;
        let mut found = Referred::default();
        if referrers.len() > cosign::MAX_SIGNATURES {
            tracing::warn!(repository = %self.repository, %digest, listed = referrers.len(), "cosign referrers past the first {} were not read", cosign::MAX_SIGNATURES);
        }
        // One referrer that cannot be read does not hide the others.
        for (referrer, read) in referrers.into_iter().take(cosign::MAX_SIGNATURES) {
            let what = format!("cosign referrer {}", referrer.digest);
            let manifest = match read {
                Some(manifest) => manifest,
                None => match self.registry.manifest(&self.repo, &referrer.digest).await {
                    Ok(fetched) => match fetched.manifest {
                        Manifest::Image(manifest) => manifest,
                        Manifest::Index(_) => {
                            found
                                .malformed
                                .get_or_insert_with(|| format!("{what} is an index"));
                            continue;
                        }
                    },
                    Err(error) => {
                        found.unread(what, error);
                        continue;
                    }
                },
            };
            let kind = match cosign_referrer(&referrer) {
                // Listed with no type, and not read while listing: its manifest's own
                // type decides, as it does when the manifest is read then.
                ReferrerKind::Unknown => artifact_kind(manifest.listed_artifact_type()),
                kind => kind,
            };
            let read = match kind {
                ReferrerKind::Bundle => {
                    self.bundle_layer(&referrer, &manifest.layers, &mut found)
                        .await
                }
                ReferrerKind::SimpleSigning => {
                    self.signature_layers(&manifest.layers, &mut found).await;
                    Ok(())
                }
                ReferrerKind::Unknown | ReferrerKind::Other => Ok(()),
            };
            // A blob its manifest names but the registry does not hold is no deletion:
            // the registry failed, and the signature it holds is unknown.
            if let Err(error) = read {
                tracing::debug!(%what, %error, "cosign referrer not read");
                found.failed.get_or_insert(error);
            }
        }
        Ok(found)
    }

    /// The bundle layer of a bundle referrer's manifest, read into `found`.
    async fn bundle_layer(
        &self,
        referrer: &Descriptor,
        layers: &[Descriptor],
        found: &mut Referred,
    ) -> Result<(), Error> {
        let Some(layer) = layers.iter().find(|l| is_bundle_type(&l.media_type)) else {
            found.malformed.get_or_insert_with(|| {
                format!(
                    "Sigstore bundle referrer {} has no bundle layer",
                    referrer.digest
                )
            });
            return Ok(());
        };
        if usize::try_from(layer.size).map_or(true, |size| size > MAX_BUNDLE_BYTES) {
            found.malformed.get_or_insert_with(|| {
                format!(
                    "Sigstore bundle {} is {} bytes, over the {MAX_BUNDLE_BYTES}-byte limit",
                    layer.digest, layer.size
                )
            });
            return Ok(());
        }
        let json = self
            .registry
            .blob(&self.repo, &layer.digest, MAX_BUNDLE_BYTES)
            .await?;
        found.bundles.push(SigstoreBundle {
            json: json.to_vec(),
        });
        Ok(())
    }

    /// This node's platform manifest in the index, if the index lists one.
    fn platform_manifest(&self, index: Manifest) -> Option<Descriptor> {
        let Manifest::Index(index) = index else {
            return None;
        };
        let (os, architecture) = &self.platform;
        index.manifests.into_iter().find(|m| {
            m.platform.as_ref().is_some_and(|p| {
                &p.os == os
                    && &p.architecture == architecture
                    && runs_variant(architecture, p.variant.as_deref())
            }) && (m.media_type == OCI_MANIFEST
                || crate::oci::descriptor::is_manifest(&m.media_type))
        })
    }
}

/// Whether a manifest for `variant` of `architecture` is the one containerd's default
/// platform matcher picks for this node (containerd/platforms `Normalize` and `Only`): for
/// amd64 the baseline only (no variant, or `v1`, which it normalizes away), so an index
/// listing an `amd64/v3` build first is answered with the plain one, as the runtime
/// pulls it; for arm64, `v8` or none. Other architectures' variants are not told apart.
fn runs_variant(architecture: &str, variant: Option<&str>) -> bool {
    match (architecture, variant.unwrap_or_default()) {
        ("amd64", "" | "v1") | ("arm64", "" | "v8" | "8" | "v8.0") => true,
        ("amd64" | "arm64", _) => false,
        _ => true,
    }
}

/// This machine's architecture, as OCI names it (image spec, "Properties", `architecture`
/// takes Go's GOARCH values).
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The trusted signer of a verdict, if any.
pub fn signer(verdict: &Verdict) -> Option<&Signer> {
    match verdict {
        Verdict::Trusted(signer) => Some(signer),
        Verdict::Rejected(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryConfig;
    use crate::verify::cache::CacheConfig;

    #[tokio::test]
    async fn a_tag_resolution_whose_callers_gave_up_is_forgotten() {
        // Takes connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let cache = VerdictCache::open(CacheConfig {
            positive_ttl: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            max_entries: 16,
            path: None,
        })
        .unwrap();
        let client = Client::new(RegistryConfig {
            plain_http: vec![host.clone()],
            ..RegistryConfig::default()
        })
        .unwrap();
        let engine = Engine::new(client, Arc::new(cache), Duration::from_millis(300));
        let requirement = Requirement {
            cosign: None,
            notation: None,
            fingerprint: Fingerprint::of(b"silent"),
        };
        for n in 0..3 {
            let image: ImageRef = format!("{host}/app:v{n}").parse().unwrap();
            let outcome = engine.verify(&image, &requirement, None).await;
            assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
        }
        let left = engine
            .resolving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len();
        assert_eq!(left, 0, "tag resolutions kept after every caller left");
        silent.abort();
    }
}
