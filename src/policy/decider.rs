//! The daemon's decision seam filled by policy: which policy governs the pod's namespace,
//! whether the image is allowlisted, and whether its signatures satisfy the policy's
//! verifiers; then what the policy's mode and `on_error` make of that.
//!
//! - **PullImage**: the requested reference is verified, and an allowed pull is pinned to
//!   the digest the trusted signature covers, so the runtime fetches exactly that.
//! - **CreateContainer**: the container's image (a name, or the image id PullImage
//!   returned) is resolved through the runtime's ImageStatus to the repository digests
//!   it was pulled as, and one of them must be trusted under the pod's policy. An image
//!   pulled behind crigate's back, or allowed in another namespace, gets no pass. An
//!   image id that a pinned pull through this daemon was answered with resolves to the
//!   pinned reference without asking the runtime (ids are content addresses; see
//!   [`RuntimeImages`]), but only to allow: any other outcome is decided again on the
//!   runtime's answer. An allowed create that named its image by anything but its id is
//!   pinned to the id the name led to, so a name moved after the decision changes nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{ImageSpec, ImageStatusRequest, PodSandboxStatusRequest};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use serde::Serialize;

use super::model::{Mode, OnError, Policies, Policy, Require};
use crate::audit::{self, AuditRecord, Auditor, DecisionKind};
use crate::config::RecordFailure;
use crate::decision::{
    BoxFuture, Decide, Decided, Decision, Durable, ImageVolume, Phase, RequestContext, VolumePin,
};
use crate::oci::manifest::Manifest;
use crate::oci::{Digest, ImageRef, Repository};
use crate::registry::CriCredentials;
use crate::runtime::{
    record_document, stored_document, stored_manifest, unix_channel, Stored, Typed,
};
use crate::verify::cache::Source;
use crate::verify::engine::{Engine, Outcome, Requirement};
use crate::verify::{Rejection, Verdict};

/// Decides CRI calls by the configured policies.
pub struct PolicyDecider {
    policies: Policies,
    /// Each verifier's trust material, by name.
    verifiers: BTreeMap<String, Requirement>,
    engine: Arc<Engine>,
    /// The runtime, to resolve CreateContainer's image; `None` outside the daemon.
    runtime: Option<RuntimeImages>,
    /// Where each decision's record goes.
    auditor: Auditor,
    /// What an allowed call becomes when its record could not be written everywhere.
    on_record_failure: RecordFailure,
}

/// Looks images up in the runtime through CRI ImageStatus, and remembers the image ids
/// the runtime answered pinned pulls with.
#[derive(Clone)]
pub struct RuntimeImages {
    channel: Channel,
    pulled: PulledImages,
    /// The runtime's working directory, which a relative image string that names a file
    /// is taken from (see [`RuntimeImages::names_a_file`]).
    working_dir: PathBuf,
}

/// containerd's working directory as systemd starts it (no `WorkingDirectory=`).
const RUNTIME_WORKING_DIR: &str = "/";

/// Whether a path's `stat` (as `is_file`) leaves open that the runtime finds a regular
/// file there. A path crigate may not look at (EACCES, EPERM: the runtime, with every
/// capability, may; `/proc/PID/root` of a process with capabilities crigate lacks, for
/// one) is taken to be one, so that what crigate cannot see is refused rather than
/// decided as an image name.
fn may_be_a_file(stat: std::io::Result<bool>) -> bool {
    match stat {
        Ok(is_file) => is_file,
        Err(error) => error.kind() == std::io::ErrorKind::PermissionDenied,
    }
}

/// The image ids pinned pulls were answered with, shared by every
/// [`RuntimeImages`] made from it: the daemon makes one at start and keeps it across
/// reloads, since what the runtime pulled does not change with the policies.
#[derive(Clone, Default)]
pub struct PulledImages(Arc<Mutex<PulledIds>>);

/// How many image ids [`PulledIds`] remembers; the oldest is forgotten first.
const MAX_PULLED_IDS: usize = 4096;
/// How many pinned references one image id keeps (one content pulled from many places).
const MAX_REFS_PER_ID: usize = 8;
/// How many repositories' pull credentials [`PulledIds`] keeps; the oldest is forgotten
/// first.
const MAX_CREDENTIALS: usize = 1024;
/// How many pod sandboxes' namespaces [`PulledIds`] keeps; the oldest is forgotten first.
const MAX_SANDBOXES: usize = 4096;

/// Image ids (`sha256:…` of the image's config) and the pinned references
/// (`repo@sha256:…`) the runtime pulled them as.
///
/// An image id is content-addressed: the config it names lists the digests of every
/// layer (`rootfs.diff_ids`, which the runtime checks as it unpacks). A name is never
/// remembered: it can be moved. (containerd takes a container's layers through the
/// image record its image store names first for the id, so a record retargeted before
/// the store catches up is the gap README.md's "Not built for the container's own
/// image" describes.)
///
/// It also keeps, per repository, the credentials of the last PullImage of it that
/// carried some (kubelet sends a pod's pull secrets with PullImage only): a container
/// created from the image later, once its verdict has expired, is verified again with
/// them, where a private registry would refuse an anonymous look at its signatures. They
/// are kept in memory only, and used only to read signatures.
///
/// And the pod of each sandbox a CreateContainer named, as the runtime has it: a
/// sandbox's metadata never changes, and its id is never reused.
struct PulledIds {
    by_id: Recent<Digest, Vec<PulledRef>>,
    credentials: Recent<Repository, CriCredentials>,
    sandboxes: Recent<String, SandboxPod>,
}

/// A pinned reference an image id was pulled as, and, when it names an index, the
/// manifest in it that leads to the image: the one the runtime holds, which trust in
/// another of the index's manifests does not cover.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PulledRef {
    pinned: ImageRef,
    platform: Option<Digest>,
}

/// The pod a sandbox was created for, from the runtime's `PodSandboxStatus`: what a
/// CreateContainer into it is decided under and recorded with, whatever the sandbox
/// config the caller sends beside the sandbox's id says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SandboxPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A map that keeps at most `limit` keys, forgetting the one inserted first.
struct Recent<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    limit: usize,
}

// === impl PulledIds ===

impl Default for PulledIds {
    fn default() -> Self {
        Self {
            by_id: Recent::new(MAX_PULLED_IDS),
            credentials: Recent::new(MAX_CREDENTIALS),
            sandboxes: Recent::new(MAX_SANDBOXES),
        }
    }
}

impl PulledIds {
    fn remember(&mut self, id: Digest, pulled: PulledRef) {
        self.by_id.admit(&id);
        let refs = self.by_id.map.entry(id).or_default();
        refs.retain(|kept| kept.pinned != pulled.pinned);
        if refs.len() == MAX_REFS_PER_ID {
            refs.remove(0);
        }
        refs.push(pulled);
    }

    fn get(&self, id: &Digest) -> Option<Vec<PulledRef>> {
        self.by_id.map.get(id).cloned()
    }

    fn forget(&mut self, id: &Digest) {
        if self.by_id.map.remove(id).is_some() {
            self.by_id.order.retain(|kept| kept != id);
        }
    }

    fn forget_all(&mut self) {
        self.by_id.map.clear();
        self.by_id.order.clear();
    }
}

// === impl Recent ===

impl<K: Clone + Eq + std::hash::Hash, V> Recent<K, V> {
    fn new(limit: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            limit,
        }
    }

    /// Makes room for `key` if it is new, forgetting the oldest key at the limit.
    fn admit(&mut self, key: &K) {
        if self.map.contains_key(key) {
            return;
        }
        if self.order.len() == self.limit {
            if let Some(oldest) = self.order.pop_front() {
                self.map.remove(&oldest);
            }
        }
        self.order.push_back(key.clone());
    }
}

// === impl RuntimeImages ===

impl RuntimeImages {
    /// A client of the runtime's CRI socket, connecting on first use, that remembers
    /// pulled image ids in `pulled`.
    ///
    /// # Errors
    ///
    /// Never in practice: the endpoint is a constant URI.
    pub fn new(socket: PathBuf, pulled: PulledImages) -> Result<Self, tonic::transport::Error> {
        let channel = unix_channel(Endpoint::try_from("http://localhost")?, socket);
        Ok(Self {
            channel,
            pulled,
            working_dir: PathBuf::from(RUNTIME_WORKING_DIR),
        })
    }

    /// The same, for a runtime whose working directory is `dir`.
    pub fn with_working_dir(mut self, dir: PathBuf) -> Self {
        self.working_dir = dir;
        self
    }

    /// Whether a CreateContainer's image string names a file from the runtime's working
    /// directory. containerd 2.x restores a container from a checkpoint archive when it
    /// does (`internal/cri/server/container_create.go`: `os.Stat` of the image string),
    /// before it looks the string up as an image: `sha256:<id of a trusted image>`
    /// written there as a file (CheckpointContainer's `location` can) would run the
    /// archive's content, and what it names as its base, in place of the image decided
    /// on.
    /// A directory is no archive (the runtime fails to restore one), so an image whose
    /// name a directory also has (`srv`, `opt`) is looked up as usual.
    fn names_a_file(&self, image: &str) -> bool {
        !image.is_empty()
            && may_be_a_file(
                self.working_dir
                    .join(image)
                    .metadata()
                    .map(|found| found.is_file()),
            )
    }

    /// Remembers that the runtime pulled `pinned`, an image manifest's reference, as
    /// image `image_id`. Ignored unless `pinned` carries a digest and `image_id` is a
    /// content address.
    pub fn remember(&self, pinned: &str, image_id: &str) {
        let (Ok(pinned), Ok(id)) = (pinned.parse::<ImageRef>(), image_id.parse::<Digest>()) else {
            return;
        };
        self.remember_leading(pinned, id, None);
    }

    /// Remembers that the runtime pulled `pinned` as image `id`, through the manifest
    /// `platform` when `pinned` names an index.
    fn remember_leading(&self, pinned: ImageRef, id: Digest, platform: Option<Digest>) {
        if pinned.digest().is_none() {
            return;
        }
        if let Ok(mut pulled) = self.pulled.0.lock() {
            pulled.remember(id, PulledRef { pinned, platform });
        }
    }

    /// Forgets what was remembered of the image id `image_id` ([`Decide::forget`]).
    pub fn forget(&self, image_id: &str) {
        let Ok(id) = image_id.parse::<Digest>() else {
            return;
        };
        if let Ok(mut pulled) = self.pulled.0.lock() {
            pulled.forget(&id);
        }
    }

    /// Forgets every image id remembered from pinned pulls: a pull let through unpinned
    /// may bring any of them content (a checkpoint index listing its manifest) that
    /// changes what a create of it does, and crigate does not learn what it pulled.
    fn forget_all(&self) {
        if let Ok(mut pulled) = self.pulled.0.lock() {
            pulled.forget_all();
        }
    }

    /// Keeps the credentials a pull of `image` came with, replacing earlier ones of its
    /// repository, for verifying it later.
    fn remember_credentials(&self, image: &ImageRef, credentials: &CriCredentials) {
        if let Ok(mut pulled) = self.pulled.0.lock() {
            let repo = image.repo().clone();
            pulled.credentials.admit(&repo);
            pulled.credentials.map.insert(repo, credentials.clone());
        }
    }

    /// The pod of the sandbox `id` (namespace, name, uid) as the runtime has it; `None`
    /// for a sandbox the runtime does not have (it refuses a create in it itself).
    async fn sandbox(&self, id: &str) -> Result<Option<SandboxPod>, tonic::Status> {
        let known = self
            .pulled
            .0
            .lock()
            .ok()
            .and_then(|pulled| pulled.sandboxes.map.get(id).cloned());
        if known.is_some() {
            return Ok(known);
        }
        let mut client = RuntimeServiceClient::new(self.channel.clone());
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        };
        let status = match client.pod_sandbox_status(request).await {
            Ok(response) => response.into_inner().status,
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(status),
        };
        let Some(pod) = status.and_then(|s| s.metadata).map(|m| SandboxPod {
            namespace: m.namespace,
            name: m.name,
            uid: m.uid,
        }) else {
            return Ok(None);
        };
        if !is_sandbox_id(id) {
            return Ok(Some(pod));
        }
        if let Ok(mut pulled) = self.pulled.0.lock() {
            let id = id.to_owned();
            pulled.sandboxes.admit(&id);
            pulled.sandboxes.map.insert(id, pod.clone());
        }
        Ok(Some(pod))
    }

    /// The credentials the last pull of `image`'s repository came with, if any.
    fn credentials_for(&self, image: &ImageRef) -> Option<CriCredentials> {
        let pulled = self.pulled.0.lock().ok()?;
        pulled.credentials.map.get(image.repo()).cloned()
    }

    /// The pinned references `image` (an image id) was pulled as, if remembered.
    fn pulled_as(&self, image: &str) -> Option<Vec<PulledRef>> {
        let id = image.parse::<Digest>().ok()?;
        self.pulled.0.lock().ok()?.get(&id)
    }

    /// What the runtime knows `image` by: its repository digests (`repo@sha256:…`), each
    /// kept only if the content it names leads to the image's id, and its repository tags.
    ///
    /// CRI ImageStatus lists as repository digests the names of the image that carry a
    /// digest, as names: containerd does not check that a record named `repo@sha256:D`
    /// has target D, and an image import, `ctr images tag` or its images API can give
    /// any content such a name. So the name's digest is looked up in the runtime's
    /// content store (content-addressed, and checked again here) and must be the image's
    /// manifest, or an index listing it: a manifest whose config is the image's id. A
    /// name that fails this is left out, and logged.
    async fn names(&self, image: &str) -> Result<RuntimeNames, tonic::Status> {
        let mut client = ImageServiceClient::new(self.channel.clone());
        let response = client
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await?
            .into_inner();
        let Some(found) = response.image else {
            return Ok(RuntimeNames::default());
        };
        let Ok(id) = found.id.parse::<Digest>() else {
            tracing::warn!(image, id = %found.id, "the runtime's image id is not a digest; none of its names is taken");
            return Ok(RuntimeNames::default());
        };
        // One content read per digest, however many repositories name it.
        let mut leads: HashMap<Digest, Option<(Digest, bool)>> = HashMap::new();
        let mut digests = Vec::with_capacity(found.repo_digests.len());
        let mut platforms = HashMap::new();
        let mut checkpoint = None;
        for name in found.repo_digests {
            let Some((reference, digest)) = name.parse::<ImageRef>().ok().and_then(|reference| {
                let digest = reference.digest()?.clone();
                Some((reference, digest))
            }) else {
                continue;
            };
            let lead = match leads.get(&digest) {
                Some(lead) => lead.clone(),
                None => {
                    let lead = self.leads_to(&name, &digest, &id).await?;
                    leads.insert(digest.clone(), lead.clone());
                    lead
                }
            };
            if let Some((manifest, is_checkpoint)) = lead {
                if is_checkpoint {
                    checkpoint.get_or_insert_with(|| reference.clone());
                }
                if manifest != digest {
                    platforms.insert(digest, manifest);
                }
                digests.push(reference);
            } else {
                tracing::warn!(
                    image,
                    %id,
                    name,
                    "a runtime name claims a digest whose content is not this image; the name is not taken as the image's digest"
                );
            }
        }
        // containerd restores from the document its image's first reference targets, tags
        // sorting before digests: a tag naming a checkpoint with this image's config (an
        // index listing it) makes every create of the image a restore.
        let mut tags = Vec::with_capacity(found.repo_tags.len());
        for name in found.repo_tags {
            let Ok(tag) = name.parse::<ImageRef>() else {
                continue;
            };
            if checkpoint.is_none() {
                if let Some(Stored::Document(document)) =
                    record_document(&self.channel, &name).await?
                {
                    if document.is_checkpoint() {
                        checkpoint = Some(tag.clone());
                    }
                }
            }
            tags.push(tag);
        }
        Ok(RuntimeNames {
            id: Some(id),
            digests,
            platforms,
            checkpoint,
            tags,
        })
    }

    /// The manifest with the config `id` that `digest`, the target of the image record
    /// `name`, leads to: the one stored under `digest`, or one listed by the index stored
    /// there; `None` when neither has it. With it, whether the document under `digest`
    /// marks a container checkpoint ([`Manifest::is_checkpoint`]).
    async fn leads_to(
        &self,
        name: &str,
        digest: &Digest,
        id: &Digest,
    ) -> Result<Option<(Digest, bool)>, tonic::Status> {
        let stored = stored_manifest(&self.channel, digest, Typed::Record(name)).await?;
        let is_checkpoint = stored.as_ref().is_some_and(Manifest::is_checkpoint);
        let lead = match stored {
            Some(Manifest::Image(manifest)) => {
                (manifest.config.digest == *id).then(|| digest.clone())
            }
            Some(Manifest::Index(index)) => {
                // The runtime holds the manifests of the platforms it pulled; the others
                // are not in its store and are skipped. An index listed in the index is
                // descended, as the runtime descends it, to [`MAX_INDEX_DEPTH`] levels and
                // [`MAX_INDEX_MANIFESTS`] entries in all.
                let mut found = None;
                let mut listed: Vec<(crate::oci::Descriptor, usize)> = index
                    .manifests
                    .into_iter()
                    .take(MAX_INDEX_MANIFESTS)
                    .rev()
                    .map(|child| (child, 1))
                    .collect();
                let mut read = 0;
                while let Some((child, depth)) = listed.pop() {
                    read += 1;
                    if read > MAX_INDEX_MANIFESTS {
                        break;
                    }
                    let typed = Typed::As(&child.media_type);
                    match stored_manifest(&self.channel, &child.digest, typed).await? {
                        Some(Manifest::Image(manifest)) if manifest.config.digest == *id => {
                            found = Some(child.digest.clone());
                            break;
                        }
                        Some(Manifest::Index(nested)) if depth < MAX_INDEX_DEPTH => {
                            listed
                                .extend(nested.manifests.into_iter().rev().map(|c| (c, depth + 1)));
                        }
                        _ => {}
                    }
                }
                found
            }
            None => None,
        };
        Ok(lead.map(|lead| (lead, is_checkpoint)))
    }

    /// Whether the runtime's image record `name` leads to the image `id` and to no other:
    /// its target is a manifest whose config is `id`, or an index whose manifests for this
    /// node's platform that the runtime holds (at least one) all have that config. `None`
    /// when the runtime has no record of that name.
    ///
    /// A record's name is only a name in containerd: its images API, `ctr images tag` or
    /// an import can point any name at any content, `sha256:<id>` included. Where the
    /// runtime reads content through the record named by the very string it was given,
    /// rather than through its image store's resolution of that string (which is what
    /// ImageStatus answers and what the decision was made on), that record must lead to
    /// what was decided on. Manifests for other platforms are not read: the runtime's
    /// platform matcher passes over them.
    async fn record_holds(&self, name: &str, id: &Digest) -> Result<Option<bool>, tonic::Status> {
        let Some(stored) = record_document(&self.channel, name).await? else {
            return Ok(None);
        };
        let document = match stored {
            Stored::Document(document) => *document,
            Stored::Absent | Stored::Unreadable => return Ok(Some(false)),
        };
        match document {
            Manifest::Image(manifest) => Ok(Some(manifest.config.digest == *id)),
            Manifest::Index(index) => {
                if index.manifests.len() > MAX_INDEX_MANIFESTS {
                    return Ok(Some(false));
                }
                let architecture = crate::verify::engine::oci_architecture();
                let mut held = false;
                for child in &index.manifests {
                    let candidate = child.platform.as_ref().is_none_or(|platform| {
                        platform.os == "linux" && platform.architecture == architecture
                    });
                    if !candidate {
                        continue;
                    }
                    // A manifest the runtime holds but crigate cannot read (a parser's
                    // limits are not the runtime's) may be the one it mounts.
                    match stored_document(
                        &self.channel,
                        &child.digest,
                        Typed::As(&child.media_type),
                    )
                    .await?
                    {
                        Stored::Document(document) if matches!(&*document, Manifest::Image(manifest) if manifest.config.digest == *id) =>
                        {
                            held = true;
                        }
                        Stored::Absent => {}
                        Stored::Document(_) | Stored::Unreadable => return Ok(Some(false)),
                    }
                }
                Ok(Some(held))
            }
        }
    }
}

/// Whether `id` has the form of the sandbox ids containerd makes: 64 lowercase
/// hexadecimal digits.
fn is_sandbox_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The names the runtime knows an image by.
#[derive(Default)]
struct RuntimeNames {
    /// The image's id (the digest of its config), as the runtime resolved the name to it.
    id: Option<Digest>,
    /// Repository digests, each confirmed to lead to the image.
    digests: Vec<ImageRef>,
    /// For each of those digests that is an index: the manifest in it that leads to the
    /// image, the platform the runtime holds.
    platforms: HashMap<Digest, Digest>,
    /// Repository tags (`repo:tag`): names, which point where the runtime was last told.
    tags: Vec<ImageRef>,
    /// The first of `digests` whose document marks a container checkpoint.
    checkpoint: Option<ImageRef>,
}

/// What a request's image is decided on.
#[derive(Default)]
struct Subject {
    /// For a create, the id of the image the runtime resolved the request's image to.
    id: Option<Digest>,
    /// The references whose signatures are verified: the requested one for a pull; for a
    /// create, the repository digests the runtime confirmed for the container's image.
    images: Vec<ImageRef>,
    /// For a create, of those that are indexes: the manifest in each that leads to the
    /// container's image. Trust in an index's signature covers it; trust found on another
    /// of its manifests (the engine's platform match) does not.
    platforms: HashMap<Digest, Digest>,
    /// Further names an allowlist entry may match: for a create, the repository tags the
    /// runtime has for the image.
    tags: Vec<ImageRef>,
    /// For a create, a name of the image whose document marks a container checkpoint.
    checkpoint: Option<ImageRef>,
    /// The image as the request named it, for allowlist patterns written for an
    /// unnormalised form: a pull's reference, which is what is fetched. A create's
    /// `user_specified_image` is the caller's word, not the runtime's, and is not used:
    /// any CRI client could name an allowlisted image there and run another.
    requested: Option<String>,
}

/// The reason code of a request whose image reference does not parse.
const INVALID_IMAGE: &str = "invalid_image";

/// What [`PolicyDecider::verify`] found: trusted by the policy's verifiers (the first
/// one's outcome) or rejected, and the digest each that trusted found signed.
type Verified = (Result<(String, Outcome), Rejected>, Vec<Option<Digest>>);

/// How many of an index's manifests [`RuntimeImages::leads_to`] looks at.
const MAX_INDEX_MANIFESTS: usize = 64;

/// How deep [`RuntimeImages::leads_to`] follows indexes listed in an index: an index, and
/// the indexes it lists.
const MAX_INDEX_DEPTH: usize = 2;

/// The trace of one decision: what `crigate policy explain` prints and what the daemon
/// acts on and records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub phase: String,
    pub namespace: String,
    pub image: String,
    /// The policy that governs the namespace, if any.
    pub policy: Option<String>,
    pub mode: Option<&'static str>,
    pub fingerprint: Option<String>,
    /// The allowlist entry that exempted the image.
    pub allowlisted_by: Option<String>,
    /// Each verification made, in order.
    pub checks: Vec<CheckTrace>,
    pub decision: Conclusion,
    /// A stable code for the reason (README.md lists them): `signed`, `allowlisted`, a
    /// rejection's code such as `no_signature`, or an error's such as `verification_error`.
    pub reason_code: &'static str,
    pub reason: String,
    /// The image the decision is about: `repo@digest` once resolved.
    pub subject: String,
    /// For an allowed pull, the reference the runtime is given; for an allowed create
    /// that named its image otherwise, the image id the runtime is given.
    pub pinned: Option<String>,
    /// The verifier that established trust, or the last one that rejected the image.
    pub verifier: Option<String>,
    /// The trusted signer's identity.
    pub signer: Option<String>,
    /// For a create, the pod of the sandbox the runtime creates the container in.
    pub sandbox: Option<SandboxPod>,
    /// For a create whose sandbox config named another namespace than its sandbox's,
    /// the namespace named.
    pub claimed_namespace: Option<String>,
}

/// What a decision concluded, and so what happens to the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Conclusion {
    /// Trusted, allowlisted, or the policy is off.
    Allow,
    /// Not trusted under an enforcing policy (or no policy covers the namespace).
    Deny,
    /// Not trusted under an auditing policy: allowed, recorded as what enforce would do.
    AuditDeny,
    /// Trust could not be decided; the policy's `on_error = "allow"` let the call go.
    ErrorAllow,
    /// Trust could not be decided; refused (`on_error = "deny"`, the default).
    ErrorDeny,
    /// Trust could not be decided under an auditing policy: allowed.
    AuditError,
}

/// One verification within a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckTrace {
    pub image: String,
    pub verifier: String,
    /// `trusted`, `rejected` or `error`.
    pub result: &'static str,
    /// The signer when trusted; the reason code when rejected.
    pub detail: String,
    pub digest: Option<String>,
    pub cached: bool,
}

/// Why an image was not trusted, for the trace.
struct Rejected {
    subject: String,
    verifier: Option<String>,
    code: &'static str,
    reason: String,
}

/// Why trust could not be decided, for the trace.
struct Undecided {
    code: &'static str,
    reason: String,
}

// === impl Explanation ===

impl Explanation {
    pub(crate) fn new(request: &RequestContext) -> Self {
        Self {
            phase: request.phase.to_string(),
            namespace: request.namespace.clone().unwrap_or_default(),
            image: request.image.clone(),
            policy: None,
            mode: None,
            fingerprint: None,
            allowlisted_by: None,
            checks: Vec::new(),
            decision: Conclusion::Deny,
            reason_code: "",
            reason: String::new(),
            subject: request.image.clone(),
            pinned: None,
            verifier: None,
            signer: None,
            sandbox: None,
            claimed_namespace: None,
        }
    }

    pub(crate) fn conclude(
        mut self,
        decision: Conclusion,
        code: &'static str,
        reason: String,
    ) -> Self {
        self.decision = decision;
        self.reason_code = code;
        self.reason = reason;
        self
    }

    /// Whether the call goes ahead.
    pub fn allows(&self) -> bool {
        self.decision.allows()
    }

    /// Whether every verdict the decision used came from the verdict cache.
    pub fn cached(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.cached)
    }
}

// === impl Conclusion ===

impl Conclusion {
    /// Whether the call goes ahead.
    pub fn allows(self) -> bool {
        match self {
            Conclusion::Allow
            | Conclusion::AuditDeny
            | Conclusion::ErrorAllow
            | Conclusion::AuditError => true,
            Conclusion::Deny | Conclusion::ErrorDeny => false,
        }
    }

    /// The audit record's decision kind.
    pub fn kind(self) -> DecisionKind {
        match self {
            Conclusion::Allow => DecisionKind::Allow,
            Conclusion::Deny => DecisionKind::Deny,
            Conclusion::AuditDeny => DecisionKind::AuditDeny,
            Conclusion::ErrorAllow | Conclusion::ErrorDeny | Conclusion::AuditError => {
                DecisionKind::Error
            }
        }
    }

    /// The stable text form (`policy explain`'s `decision`).
    pub fn code(self) -> &'static str {
        match self {
            Conclusion::Allow => "allow",
            Conclusion::Deny => "deny",
            Conclusion::AuditDeny => "audit-deny",
            Conclusion::ErrorAllow => "error-allow",
            Conclusion::ErrorDeny => "error-deny",
            Conclusion::AuditError => "audit-error",
        }
    }
}

impl std::fmt::Display for Conclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

// === impl PolicyDecider ===

impl PolicyDecider {
    pub fn new(
        policies: Policies,
        verifiers: BTreeMap<String, Requirement>,
        engine: Arc<Engine>,
        runtime: Option<RuntimeImages>,
        auditor: Auditor,
    ) -> Self {
        Self {
            policies,
            verifiers,
            engine,
            runtime,
            auditor,
            on_record_failure: RecordFailure::Allow,
        }
    }

    /// What an allowed call becomes when its record could not be written to every sink
    /// (`[audit] on_record_failure`).
    pub fn with_record_failure(mut self, on_record_failure: RecordFailure) -> Self {
        self.on_record_failure = on_record_failure;
        self
    }

    /// The refusal of a call `trace` allowed, when `[audit] on_record_failure = "deny"`
    /// and a sink could not take its record (`written`): recorded as a denial of its own,
    /// which the sinks that work take, so that no record says the call went ahead.
    async fn refuse_unrecorded(
        &self,
        request: &RequestContext,
        volume: Option<&ImageVolume>,
        trace: &Explanation,
        failures: Option<String>,
    ) -> Option<(Decision, Durable)> {
        let failures = failures.filter(|_| self.on_record_failure == RecordFailure::Deny)?;
        let refused = trace.clone().conclude(
            Conclusion::Deny,
            "record_failed",
            format!(
                "its audit record could not be written ({failures}), and [audit] \
                 on_record_failure is \"deny\""
            ),
        );
        let (id, refusal) = write_record(
            &self.auditor,
            request,
            volume,
            &refused,
            Duration::ZERO,
            None,
        )
        .await;
        Some((denial(&refused, volume, &id), refusal.durable))
    }

    /// Decides `request` and says why. Makes registry calls (verification) and, for
    /// CreateContainer, asks the runtime what the image is; never pulls anything. Its
    /// verifications share one `[verify] timeout`.
    pub async fn explain(&self, request: &RequestContext) -> Explanation {
        self.explain_by(request, self.verification_deadline()).await
    }

    /// When a decision started now must have its verifications done: one
    /// `[verify] timeout` for all of them, whatever the number of verifiers, of names
    /// the runtime has for the image, and of image volumes. Each verification is bounded
    /// by that timeout on its own as well; bounding their sum keeps a registry that
    /// answers each of them slowly from holding a call for a multiple of it, past the
    /// caller's own deadline (kubelet's `--runtime-request-timeout`, 2 min by default),
    /// where the caller would learn only that its deadline passed.
    fn verification_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.engine.timeout()
    }

    /// As [`PolicyDecider::explain`], its verifications done by `deadline`.
    async fn explain_by(
        &self,
        request: &RequestContext,
        deadline: tokio::time::Instant,
    ) -> Explanation {
        let mut trace = Explanation::new(request);
        // The runtime creates the container in the sandbox `pod_sandbox_id` names; the
        // sandbox config beside it is the caller's to fill. The namespace decided under,
        // and recorded, is the sandbox's own.
        let sandbox = match (
            request.phase,
            &self.runtime,
            request.pod_sandbox_id.as_deref(),
        ) {
            // containerd finds a sandbox by any unique prefix of its id (its `truncindex`),
            // so a prefix may name one sandbox when crigate looks it up and another when
            // the runtime does: the caller's own, removed in between, then a pod of another
            // namespace; or none, then one created meanwhile; or two, then one. The ids it
            // makes are 64 hex digits (`util.GenerateID`), as kubelet sends them; any other
            // string is refused, whatever namespace the caller claims, since the namespace
            // it would be decided under is the caller's word.
            (Phase::Create, Some(_), Some(id)) if !id.is_empty() && !is_sandbox_id(id) => {
                let reason = format!(
                    "pod sandbox {id:?} is not a whole sandbox id (64 hexadecimal digits), \
                     which the runtime could take for another sandbox: name the sandbox by \
                     its whole id"
                );
                return trace.conclude(Conclusion::Deny, "invalid_sandbox_id", reason);
            }
            (Phase::Create, Some(runtime), Some(id)) if !id.is_empty() => {
                runtime.sandbox(id).await.map_err(|status| Undecided {
                    code: "runtime_error",
                    reason: format!(
                        "cannot look up pod sandbox {id} in the runtime: {}",
                        status.message()
                    ),
                })
            }
            _ => Ok(None),
        };
        if let Ok(Some(pod)) = &sandbox {
            if pod.namespace != trace.namespace {
                tracing::warn!(
                    claimed = %trace.namespace,
                    actual = %pod.namespace,
                    "a CreateContainer names another namespace than its pod sandbox's; decided under the sandbox's"
                );
                let claimed = std::mem::replace(&mut trace.namespace, pod.namespace.clone());
                trace.claimed_namespace = Some(claimed);
            }
            trace.sandbox = Some(pod.clone());
        }
        let namespace = trace.namespace.clone();
        let Some(policy) = self.policies.select(&namespace) else {
            let reason = format!(
                "no policy covers namespace {namespace:?}; add one to [[policies]] or a default (namespaces = [\"*\"])"
            );
            return trace.conclude(Conclusion::Deny, "no_policy", reason);
        };
        trace.policy = Some(policy.name.clone());
        trace.mode = Some(match policy.mode {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Off => "off",
        });
        trace.fingerprint = Some(policy.fingerprint.to_string());
        if let Err(undecided) = sandbox {
            return on_error(trace, policy, undecided);
        }
        if policy.mode == Mode::Off {
            let reason = "policy mode is off".to_owned();
            return trace.conclude(Conclusion::Allow, "mode_off", reason);
        }
        if let Some(rejected) = (request.phase == Phase::Create)
            .then(|| self.checkpoint_archive(&request.image))
            .flatten()
        {
            return self.rejected(trace, policy, rejected);
        }
        // An image id a pinned pull of this node answered with resolves without a runtime
        // round trip; only to allow, though: anything else is decided on what the
        // runtime says the image is now, as for any other image.
        if let Some(pulled) = (request.phase == Phase::Create)
            .then(|| self.runtime.as_ref()?.pulled_as(&request.image))
            .flatten()
        {
            let platforms = pulled
                .iter()
                .filter_map(|kept| {
                    let index = kept.pinned.digest()?.clone();
                    Some((index, kept.platform.clone()?))
                })
                .collect();
            let subject = Subject {
                images: pulled.into_iter().map(|kept| kept.pinned).collect(),
                platforms,
                ..Subject::default()
            };
            let judged = self
                .judge(trace.clone(), policy, request, &subject, deadline)
                .await;
            if judged.decision == Conclusion::Allow {
                return judged;
            }
        }
        let subject = match self.subject(request).await {
            Ok(subject) => subject,
            // A reference crigate cannot parse (a digest algorithm it does not know, say)
            // is the request's, not an outage: refused whatever `on_error` says, as
            // anything unverifiable is.
            Err(undecided) if undecided.code == INVALID_IMAGE => {
                let rejected = Rejected {
                    subject: request.image.clone(),
                    verifier: None,
                    code: INVALID_IMAGE,
                    reason: undecided.reason,
                };
                return self.rejected(trace, policy, rejected);
            }
            Err(undecided) => return on_error(trace, policy, undecided),
        };
        // containerd 2.1+ restores a container from an image whose document carries a
        // checkpoint annotation, and pulls the image the checkpoint was taken from itself
        // (`CRImportCheckpoint`): a pull crigate never sees, whatever the checkpoint's own
        // signature says. Refused, allowlisted or not.
        if let Some(checkpoint) = &subject.checkpoint {
            let rejected = Rejected {
                subject: checkpoint.to_string(),
                verifier: None,
                code: "checkpoint_image",
                reason: format!(
                    "image {checkpoint} is a container checkpoint, which the runtime would \
                     restore onto an image it pulls itself, unverified"
                ),
            };
            return self.rejected(trace, policy, rejected);
        }
        if let (Some(credentials), Some(runtime)) = (&request.credentials, &self.runtime) {
            for image in &subject.images {
                runtime.remember_credentials(image, credentials);
            }
        }
        // A create that names its image (`repo:tag`, a short id) is allowed for the image
        // the name led to now; the runtime resolves the name again when it creates, and a
        // name can be moved in between. Pinned to the image's id, the content-addressed
        // form kubelet itself sends, it creates from the image that was decided on. The
        // runtime is then given the id as its image string, so that string must name no
        // checkpoint archive either.
        let Some(pin) = subject
            .id
            .as_ref()
            .map(ToString::to_string)
            .filter(|id| *id != request.image)
        else {
            return self.judge(trace, policy, request, &subject, deadline).await;
        };
        let mut judged = self
            .judge(trace.clone(), policy, request, &subject, deadline)
            .await;
        if judged.decision == Conclusion::Allow {
            // Checked once allowed, just before the id goes to the runtime.
            if let Some(rejected) = self.checkpoint_archive(&pin) {
                return self.rejected(trace, policy, rejected);
            }
            judged.pinned = Some(pin);
        }
        judged
    }

    /// An image volume's decision, `trace`, once the runtime's record named as the volume
    /// is sent is known to lead to the image decided on. containerd 2.1+ mounts an image
    /// volume from the image record named exactly as the mount names it
    /// (`internal/cri/server/container_image_mount.go`, `mutateImageMount`: the images
    /// service's `Get` of that string), not from the image its CRI image store resolves
    /// the string to, which is what ImageStatus answered and the decision was made on.
    /// The string sent is the image's id, `sha256:…`, and a record of that name leading to
    /// other content mounts that content: refused (`image_record_mismatch`). No such
    /// record leaves nothing for the runtime to mount, and the decision stands.
    async fn mounted_as_decided(&self, asked: &RequestContext, trace: Explanation) -> Explanation {
        let Some(runtime) = &self.runtime else {
            return trace;
        };
        if !trace.allows() {
            return trace;
        }
        let Some(policy) = self.policies.select(&trace.namespace) else {
            return trace;
        };
        if policy.mode == Mode::Off {
            return trace;
        }
        let name = trace.pinned.clone().unwrap_or_else(|| asked.image.clone());
        let Ok(id) = name.parse::<Digest>() else {
            return trace;
        };
        match runtime.record_holds(&name, &id).await {
            Ok(None | Some(true)) => trace,
            Ok(Some(false)) => {
                let rejected = Rejected {
                    subject: trace.subject.clone(),
                    verifier: None,
                    code: "image_record_mismatch",
                    reason: format!(
                        "the runtime's image record {name} leads to other content than image \
                         {id}, and the runtime mounts an image volume from that record"
                    ),
                };
                let mut refused = self.rejected(trace, policy, rejected);
                // What established trust in the image does not vouch for the record.
                refused.signer = None;
                refused.allowlisted_by = None;
                if !refused.allows() {
                    refused.pinned = None;
                }
                refused
            }
            Err(status) => on_error(
                trace,
                policy,
                Undecided {
                    code: "runtime_error",
                    reason: format!(
                        "cannot read the runtime's image record {name}: {}",
                        status.message()
                    ),
                },
            ),
        }
    }

    /// The refusal of a create whose runtime would be given `image`, when that string
    /// names a file the runtime would restore as a checkpoint archive.
    fn checkpoint_archive(&self, image: &str) -> Option<Rejected> {
        let runtime = self.runtime.as_ref()?;
        runtime.names_a_file(image).then(|| Rejected {
            subject: image.to_owned(),
            verifier: None,
            code: "checkpoint_archive",
            reason: format!(
                "image {image:?} names a file in the runtime's working directory, which the \
                 runtime would restore as a checkpoint archive, unverified"
            ),
        })
    }

    /// Decides `request` on `subject`, what its image resolved to.
    async fn judge(
        &self,
        mut trace: Explanation,
        policy: &Policy,
        request: &RequestContext,
        subject: &Subject,
        deadline: tokio::time::Instant,
    ) -> Explanation {
        let namespace = trace.namespace.clone();
        let images = subject.images.as_slice();
        // Allowlisted: no verification, but the decision is still recorded.
        if let Some((image, entry)) = images.iter().chain(&subject.tags).find_map(|image| {
            policy
                .allowlist
                .find(image, subject.requested.as_deref(), Some(&namespace))
                .map(|entry| (image, entry))
        }) {
            trace.allowlisted_by = Some(entry.pattern.as_str().to_owned());
            if image.digest().is_some() {
                trace.subject = image.to_string();
            }
            let reason = format!("allowlisted by {:?}", entry.pattern.as_str());
            return trace.conclude(Conclusion::Allow, "allowlisted", reason);
        }
        if images.is_empty() {
            let rejected = Rejected {
                subject: request.image.clone(),
                verifier: None,
                code: "image_unknown",
                reason: format!(
                    "the runtime has no image {}, or no repository digest for it that leads to its content",
                    request.image
                ),
            };
            return self.rejected(trace, policy, rejected);
        }
        let mut rejection = None;
        // An image the runtime holds under several names is allowed by any name that is
        // trusted; one that cannot be checked (its registry away) does not stop the
        // others, but is the outcome when none is trusted, as it may hide a signature.
        let mut undecided_first = None;
        for image in images {
            // A pull's own credentials; for a create, those a pull of the repository
            // came with.
            let remembered = match (&request.credentials, &self.runtime) {
                (None, Some(runtime)) => runtime.credentials_for(image),
                _ => None,
            };
            let credentials = request.credentials.as_ref().or(remembered.as_ref());
            let platform = image.digest().and_then(|d| subject.platforms.get(d));
            match self
                .verify_as_run(
                    policy,
                    image,
                    platform,
                    credentials,
                    deadline,
                    &mut trace.checks,
                )
                .await
            {
                Ok(Ok((verifier, outcome))) => {
                    let pinned = outcome.pinned();
                    trace.subject = pinned
                        .as_ref()
                        .map_or_else(|| image.to_string(), ToString::to_string);
                    // A pull that names a digest names content that cannot change. When
                    // it is an index trusted through this node's platform manifest, the
                    // runtime pulls the index as asked: pinned to the manifest, it would
                    // never hold the name asked for, and kubelet, finding no image by
                    // that name, would pull it again for every container. The manifest
                    // the runtime picks from the index is checked at CreateContainer, as
                    // for an image pulled behind crigate's back.
                    let platform_of_requested = image.digest().is_some()
                        && pinned.as_ref().and_then(ImageRef::digest) != image.digest();
                    if request.phase == Phase::Pull && !platform_of_requested {
                        trace.pinned = pinned.map(|p| p.to_string());
                    }
                    if let Verdict::Trusted(signer) = &outcome.verdict {
                        trace.signer = Some(signer.identity.clone());
                    }
                    trace.verifier = Some(verifier);
                    let reason = format!("signed ({})", signer_text(&outcome));
                    return trace.conclude(Conclusion::Allow, "signed", reason);
                }
                Ok(Err(rejected)) => rejection = Some(rejected),
                Err(undecided) => {
                    undecided_first.get_or_insert((image, undecided));
                }
            }
        }
        if let Some((image, undecided)) = undecided_first {
            trace.subject = image.to_string();
            return on_error(trace, policy, undecided);
        }
        let rejected = rejection.unwrap_or_else(|| Rejected {
            subject: request.image.clone(),
            verifier: None,
            code: "not_trusted",
            reason: "not trusted".to_owned(),
        });
        self.rejected(trace, policy, rejected)
    }

    fn rejected(&self, mut trace: Explanation, policy: &Policy, rejected: Rejected) -> Explanation {
        let reason = format!("{} under policy {:?}", rejected.reason, policy.name);
        trace.subject = rejected.subject;
        trace.verifier = rejected.verifier;
        match policy.mode {
            Mode::Audit => trace.conclude(Conclusion::AuditDeny, rejected.code, reason),
            Mode::Enforce | Mode::Off => trace.conclude(Conclusion::Deny, rejected.code, reason),
        }
    }

    /// What to decide `request` on: the requested reference for a pull; for a create,
    /// the names the runtime has for the container's image.
    async fn subject(&self, request: &RequestContext) -> Result<Subject, Undecided> {
        let parse = || {
            request
                .image
                .parse::<ImageRef>()
                .map(|image| Subject {
                    images: vec![image],
                    requested: Some(request.image.clone()),
                    ..Subject::default()
                })
                .map_err(|e| Undecided {
                    code: INVALID_IMAGE,
                    reason: format!("cannot parse image {:?}: {e}", request.image),
                })
        };
        match (request.phase, &self.runtime) {
            (Phase::Pull, _) | (Phase::Create, None) => parse(),
            (Phase::Create, Some(runtime)) => {
                let names = runtime
                    .names(&request.image)
                    .await
                    .map_err(|status| Undecided {
                        code: "runtime_error",
                        reason: format!(
                            "cannot look up image {} in the runtime: {}",
                            request.image,
                            status.message()
                        ),
                    })?;
                Ok(Subject {
                    id: names.id,
                    images: names.digests,
                    platforms: names.platforms,
                    tags: names.tags,
                    checkpoint: names.checkpoint,
                    requested: None,
                })
            }
        }
    }

    /// As [`PolicyDecider::verify`], for an image named by an index whose manifest
    /// `platform` is the one the runtime holds: trusted when the index's own signature is,
    /// or that manifest's. Trust the engine found on another manifest of the index (its
    /// match for this node's platform, which need not be the runtime's choice) is not
    /// taken; `platform` is then verified on its own.
    async fn verify_as_run(
        &self,
        policy: &Policy,
        image: &ImageRef,
        platform: Option<&Digest>,
        credentials: Option<&CriCredentials>,
        deadline: tokio::time::Instant,
        checks: &mut Vec<CheckTrace>,
    ) -> Result<Result<(String, Outcome), Rejected>, Undecided> {
        let (first, signed) = self
            .verify(policy, image, credentials, deadline, checks)
            .await?;
        let Some(platform) = platform else {
            return Ok(first);
        };
        // Under `require = "all"` each verifier's trust must cover it, not the first's.
        let covers = |signed: &Option<Digest>| {
            signed
                .as_ref()
                .is_some_and(|signed| Some(signed) == image.digest() || signed == platform)
        };
        if first.is_ok() && signed.iter().all(covers) {
            return Ok(first);
        }
        let manifest = image.with_digest(platform.clone());
        let (second, _) = self
            .verify(policy, &manifest, credentials, deadline, checks)
            .await?;
        Ok(match (first, second) {
            (_, trusted @ Ok(_)) => trusted,
            // Nothing trusted: the manifest the runtime holds is what would run.
            (_, rejected @ Err(_)) => rejected,
        })
    }

    /// `Ok(Ok((verifier, outcome)))` trusted, `Ok(Err(_))` rejected, `Err` could not
    /// decide, or not by `deadline`; beside it, the digest each verifier that trusted the
    /// image found signed (the image's own, or, for an index, the manifest its platform
    /// match took). Each verification is added to `checks`.
    async fn verify(
        &self,
        policy: &Policy,
        image: &ImageRef,
        credentials: Option<&CriCredentials>,
        deadline: tokio::time::Instant,
        checks: &mut Vec<CheckTrace>,
    ) -> Result<Verified, Undecided> {
        let mut signed = Vec::new();
        let mut rejections = Vec::new();
        let mut unsettled = None;
        let mut trusted = None;
        // Every verifier judges the digest the first one found the tag at: a tag looked
        // up again may lead elsewhere (moved meanwhile, or a registry that answers each
        // lookup differently), and trust by one verifier in one image and by another in
        // another is not trust by all in either.
        let mut resolved: Option<ImageRef> = None;
        for name in &policy.verifiers {
            let image = resolved.clone().unwrap_or_else(|| image.clone());
            let image = &image;
            let Some(requirement) = self.verifiers.get(name) else {
                return Err(Undecided {
                    code: "verifier_not_loaded",
                    reason: format!("verifier {name:?} is not loaded"),
                });
            };
            // Each verifier's verdicts are its own: under `require = "all"` one verifier's
            // trust must not answer for another's.
            let requirement = Requirement {
                fingerprint: policy
                    .fingerprint
                    .scoped(requirement.fingerprint.as_bytes()),
                ..requirement.clone()
            };
            // A verification this caller stops waiting for goes on in its own task,
            // bounded by its own timeout, and its verdict is cached.
            let verified = tokio::time::timeout_at(
                deadline,
                self.engine
                    .verify(image, &requirement, credentials.cloned()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(crate::verify::engine::Error::DecisionTimeout {
                    image: image.to_string(),
                    after: self.engine.timeout(),
                })
            });
            let outcome = match verified {
                Ok(outcome) => outcome,
                Err(error) => {
                    let reason = format!("{error:#}");
                    checks.push(CheckTrace {
                        image: image.to_string(),
                        verifier: name.clone(),
                        result: "error",
                        detail: reason.clone(),
                        digest: None,
                        cached: false,
                    });
                    return Err(Undecided {
                        code: "verification_error",
                        reason,
                    });
                }
            };
            if image.digest().is_none() {
                resolved = Some(image.with_digest(outcome.digest.clone()));
            }
            let cached = outcome.source == Source::Cache;
            match &outcome.verdict {
                Verdict::Trusted(_) => {
                    checks.push(CheckTrace {
                        image: image.to_string(),
                        verifier: name.clone(),
                        result: "trusted",
                        detail: signer_text(&outcome),
                        digest: Some(outcome.digest.to_string()),
                        cached,
                    });
                    signed.push(
                        crate::verify::engine::signer(&outcome.verdict)
                            .map(|signer| signer.signed_digest.clone()),
                    );
                    if policy.require == Require::Any {
                        return Ok((Ok((name.clone(), outcome)), signed));
                    }
                    trusted.get_or_insert((name.clone(), outcome));
                }
                Verdict::Rejected(rejection) => {
                    checks.push(CheckTrace {
                        image: image.to_string(),
                        verifier: name.clone(),
                        result: "rejected",
                        detail: rejection.code().to_owned(),
                        digest: Some(outcome.digest.to_string()),
                        cached,
                    });
                    let rejected = Rejected {
                        subject: image.with_digest(outcome.digest.clone()).to_string(),
                        verifier: Some(name.clone()),
                        code: rejection.code(),
                        reason: rejection_text(rejection, name),
                    };
                    // One the next call may not repeat (a revocation status not
                    // determined) is what the record names, as the engine reports it.
                    if !rejection.is_lasting() {
                        unsettled.get_or_insert(rejected);
                    } else {
                        rejections.push(rejected);
                    }
                    if policy.require == Require::All {
                        break;
                    }
                }
            }
        }
        let verdict = match (trusted, unsettled.or_else(|| rejections.pop())) {
            (Some(trusted), None) => Ok(trusted),
            (_, Some(rejection)) => Err(rejection),
            (None, None) => Err(Rejected {
                subject: image.to_string(),
                verifier: None,
                code: "no_verifier",
                reason: "no verifier configured".to_owned(),
            }),
        };
        Ok((verdict, signed))
    }
}

fn on_error(trace: Explanation, policy: &Policy, undecided: Undecided) -> Explanation {
    let Undecided { code, reason } = undecided;
    match (policy.mode, policy.on_error) {
        (Mode::Audit, _) => trace.conclude(Conclusion::AuditError, code, reason),
        (_, OnError::Allow) => trace.conclude(Conclusion::ErrorAllow, code, reason),
        (_, OnError::Deny) => trace.conclude(
            Conclusion::ErrorDeny,
            code,
            format!(
                "could not verify: {reason} under policy {:?} (on_error = \"deny\")",
                policy.name
            ),
        ),
    }
}

impl Decide for PolicyDecider {
    /// Remembers the image id a pinned pull was answered with, so that a create of that
    /// id is decided without asking the runtime what the image is; unless the runtime
    /// holds the image under a name that is a container checkpoint (`checkpoint_image`:
    /// a checkpoint index can list the manifest just pulled), or cannot say: what was
    /// remembered of the id is forgotten, and a create of it asks the runtime.
    fn pulled<'a>(&'a self, pinned: &'a str, image_id: &'a str) -> BoxFuture<'a, ()> {
        // Forgotten before the first await, so a pull whose answer comes too late (the
        // future dropped) leaves nothing remembered of the id.
        if let Some(runtime) = &self.runtime {
            runtime.forget(image_id);
        }
        Box::pin(async move {
            let Some(runtime) = &self.runtime else {
                return;
            };
            // Only a pinned digest the runtime itself confirms as a name of the image, its
            // content leading to the image's id (the manifest, or an index listing it), is
            // remembered, with the manifest it leads through: what a create of the id then
            // runs is what the decision covers, as on the runtime's own names.
            let confirmed = |names: &RuntimeNames| {
                let pinned = pinned.parse::<ImageRef>().ok()?;
                let id = names.id.clone().filter(|id| id.to_string() == image_id)?;
                let named = names
                    .digests
                    .iter()
                    .any(|name| name.repo() == pinned.repo() && name.digest() == pinned.digest());
                if names.checkpoint.is_some() || !named {
                    return None;
                }
                let platform = names.platforms.get(pinned.digest()?).cloned();
                Some((pinned, id, platform))
            };
            let seen = runtime.names(image_id).await;
            match seen.as_ref().ok().and_then(confirmed) {
                Some((pinned, id, platform)) => runtime.remember_leading(pinned, id, platform),
                None => tracing::debug!(
                    pinned,
                    image_id,
                    error = seen.err().map(|status| status.message().to_owned()),
                    "a create of this pull's image id is decided on what the runtime says it is"
                ),
            }
        })
    }

    fn decide<'a>(&'a self, request: &'a RequestContext) -> BoxFuture<'a, Decided> {
        Box::pin(async move {
            let started = Instant::now();
            let deadline = self.verification_deadline();
            let trace = self.explain_by(request, deadline).await;
            let latency = started.elapsed();
            if request.phase == Phase::Pull && trace.allows() && trace.pinned.is_none() {
                if let Some(runtime) = &self.runtime {
                    runtime.forget_all();
                }
            }
            // Each image volume is decided as the container's own image is, under the
            // same policy, with a record of its own; the first refusal refuses the call.
            // They are decided before any record is written, so that the container's
            // record says what became of the call.
            let mut judged = Vec::new();
            let mut refused_by = None;
            if trace.allows() {
                for volume in &request.image_volumes {
                    let started = Instant::now();
                    let asked = request.for_volume(volume);
                    let trace = self.explain_by(&asked, deadline).await;
                    let trace = self.mounted_as_decided(&asked, trace).await;
                    let allows = trace.allows();
                    judged.push((volume, asked, trace, started.elapsed()));
                    if !allows {
                        refused_by = Some(volume);
                        break;
                    }
                }
            }
            let (id, written) =
                write_record(&self.auditor, request, None, &trace, latency, refused_by).await;
            let failed = failures(&written);
            let durable = written.durable;
            if !trace.allows() {
                return Decided {
                    decision: denial(&trace, None, &id),
                    durable,
                };
            }
            if refused_by.is_none() {
                if let Some((decision, refusal)) =
                    self.refuse_unrecorded(request, None, &trace, failed).await
                {
                    return Decided {
                        decision,
                        durable: Durable::all(vec![durable, refusal]),
                    };
                }
            }
            if judged.is_empty() {
                return Decided {
                    decision: Decision::Allow {
                        pin: trace.pinned,
                        volumes: Vec::new(),
                    },
                    durable,
                };
            }
            let mut durables = vec![durable];
            let mut volumes = Vec::new();
            for (volume, asked, judged, latency) in judged {
                let refused_by = refused_by.filter(|_| judged.allows());
                let (id, written) = write_record(
                    &self.auditor,
                    &asked,
                    Some(volume),
                    &judged,
                    latency,
                    refused_by,
                )
                .await;
                if !judged.allows() {
                    durables.push(written.durable);
                    return Decided {
                        decision: denial(&judged, Some(volume), &id),
                        durable: Durable::all(durables),
                    };
                }
                let failed = failures(&written).filter(|_| refused_by.is_none());
                durables.push(written.durable);
                let refused = self
                    .refuse_unrecorded(&asked, Some(volume), &judged, failed)
                    .await;
                if let Some((decision, refusal)) = refused {
                    durables.push(refusal);
                    return Decided {
                        decision,
                        durable: Durable::all(durables),
                    };
                }
                if let Some(image) = judged.pinned {
                    volumes.push(VolumePin {
                        mount: volume.mount,
                        image,
                    });
                }
            }
            Decided {
                decision: Decision::Allow {
                    pin: trace.pinned,
                    volumes,
                },
                durable: Durable::all(durables),
            }
        })
    }
}

/// Writes the record of one decision, about `request`'s image or, for `volume`, that
/// image volume's; its id, and what became of it. A call `refused_by` an image volume
/// is recorded as refused, with that volume named, whatever `trace` decided of the
/// image itself.
async fn write_record(
    auditor: &Auditor,
    request: &RequestContext,
    volume: Option<&ImageVolume>,
    trace: &Explanation,
    latency: Duration,
    refused_by: Option<&ImageVolume>,
) -> (String, audit::Written) {
    let mut record = audit_record(auditor.node(), request, trace, latency);
    if let Some(volume) = volume {
        record.volume_path.clone_from(&volume.container_path);
    }
    if let Some(refusing) = refused_by {
        record.set_action(audit::Action::Refuse);
        record.reason = format!(
            "{}; the call was refused for its image volume at {}",
            record.reason, refusing.container_path
        );
    }
    let id = record.id.clone();
    (id, auditor.record(record).await)
}

/// What the sinks that could not take a record said, if any failed.
fn failures(written: &audit::Written) -> Option<String> {
    (!written.failed.is_empty()).then(|| {
        written
            .failed
            .iter()
            .map(|(sink, error)| format!("{sink}: {error}"))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// The refusal of a call whose image, or image volume `volume`, `trace` did not allow:
/// what was refused, where, why and under which reason code (a verification rejection's
/// reason names its code already), and the record that says more.
fn denial(trace: &Explanation, volume: Option<&ImageVolume>, id: &str) -> Decision {
    let volume = volume
        .map(|v| format!(" (image volume at {})", v.container_path))
        .unwrap_or_default();
    let code = format!("[{}]", trace.reason_code);
    let code = if trace.reason.contains(&code) {
        String::new()
    } else {
        format!(" {code}")
    };
    Decision::Deny {
        message: format!(
            "denied {}{volume} in namespace {}: {}{code} (audit id {id})",
            trace.subject, trace.namespace, trace.reason
        ),
    }
}

/// Allows every call and records each one: the daemon's decider while no
/// `[[policies]]` are configured. Never the state of an enforcing node.
pub struct AllowAndRecord {
    auditor: Auditor,
}

// === impl AllowAndRecord ===

impl AllowAndRecord {
    pub fn new(auditor: Auditor) -> Self {
        Self { auditor }
    }
}

impl Decide for AllowAndRecord {
    fn decide<'a>(&'a self, request: &'a RequestContext) -> BoxFuture<'a, Decided> {
        Box::pin(async move {
            let allowed = |request: &RequestContext| {
                Explanation::new(request).conclude(
                    Conclusion::Allow,
                    "no_policies",
                    "no [[policies]] configured: every call is allowed".to_owned(),
                )
            };
            let (_, written) = write_record(
                &self.auditor,
                request,
                None,
                &allowed(request),
                Duration::ZERO,
                None,
            )
            .await;
            let mut durables = vec![written.durable];
            for volume in &request.image_volumes {
                let asked = request.for_volume(volume);
                let trace = allowed(&asked);
                let (_, written) = write_record(
                    &self.auditor,
                    &asked,
                    Some(volume),
                    &trace,
                    Duration::ZERO,
                    None,
                )
                .await;
                durables.push(written.durable);
            }
            Decided {
                decision: Decision::allow(),
                durable: Durable::all(durables),
            }
        })
    }
}

fn rejection_text(rejection: &Rejection, verifier: &str) -> String {
    format!("{rejection} [{}] (verifier {verifier:?})", rejection.code())
}

fn signer_text(outcome: &Outcome) -> String {
    match &outcome.verdict {
        Verdict::Trusted(signer) => format!("{} by {}", signer.verifier, signer.identity),
        Verdict::Rejected(_) => String::new(),
    }
}

/// The audit record of a decision.
pub fn audit_record(
    node: &str,
    request: &RequestContext,
    trace: &Explanation,
    latency: Duration,
) -> AuditRecord {
    let digest = trace
        .subject
        .parse::<ImageRef>()
        .ok()
        .and_then(|image| image.digest().map(ToString::to_string))
        .unwrap_or_default();
    let mut record = AuditRecord {
        id: audit::new_id(),
        time_unix_nanos: audit::now_unix_nanos(),
        node: node.to_owned(),
        api_version: request.api.to_string(),
        namespace: trace.namespace.clone(),
        pod_name: trace.sandbox.as_ref().map_or_else(
            || request.pod_name.clone().unwrap_or_default(),
            |pod| pod.name.clone(),
        ),
        pod_uid: trace.sandbox.as_ref().map_or_else(
            || request.pod_uid.clone().unwrap_or_default(),
            |pod| pod.uid.clone(),
        ),
        container_name: request.container_name.clone().unwrap_or_default(),
        image: request.image.clone(),
        user_specified_image: request.user_specified_image.clone().unwrap_or_default(),
        subject: trace.subject.clone(),
        digest,
        pinned: trace.pinned.clone().unwrap_or_default(),
        verifier: trace.verifier.clone().unwrap_or_default(),
        signer: trace.signer.clone().unwrap_or_default(),
        allowlisted_by: trace.allowlisted_by.clone().unwrap_or_default(),
        policy: trace.policy.clone().unwrap_or_default(),
        mode: trace.mode.unwrap_or_default().to_owned(),
        fingerprint: trace.fingerprint.clone().unwrap_or_default(),
        reason_code: trace.reason_code.to_owned(),
        reason: trace.reason.clone(),
        cached: trace.cached(),
        latency_micros: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        caller_pid: request.caller.pid.unwrap_or(0),
        caller_uid: request.caller.uid,
        ..Default::default()
    };
    if let Some(claimed) = &trace.claimed_namespace {
        record.reason = format!(
            "{}; the call's sandbox config named namespace {claimed:?}, its pod sandbox is in {:?}",
            record.reason, trace.namespace
        );
    }
    record.set_phase(request.phase.into());
    record.set_decision(trace.decision.kind());
    record.set_action(if trace.allows() {
        audit::Action::Forward
    } else {
        audit::Action::Refuse
    });
    record
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::decision::{ApiVersion, Caller};
    use crate::verify::cache::CacheConfig;

    const KEY: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/cosign/key/hello-world/ecdsa-p256.pub"
    );
    /// A registry nothing listens on: verification there fails at once.
    const REGISTRY: &str = "127.0.0.1:1";

    fn id() -> String {
        format!("sha256:{}", "c".repeat(64))
    }

    fn pinned() -> String {
        format!("{REGISTRY}/app@sha256:{}", "d".repeat(64))
    }

    /// `prod` allowlists `app` (no registry call to allow it), `secure` does not; the
    /// runtime's socket does not exist, so any question to it fails.
    fn decider(dir: &Path) -> PolicyDecider {
        decider_remembering(dir, PulledImages::default())
    }

    /// [`decider`], remembering pulled image ids in `pulled`.
    fn decider_remembering(dir: &Path, pulled: PulledImages) -> PolicyDecider {
        decider_from(dir, &config(), pulled)
    }

    /// The configuration of [`decider`].
    fn config() -> String {
        format!(
            r#"
[registry]
plain_http = ["{REGISTRY}"]

[verifiers.release]
kind = "cosign"
keys = ["{KEY}"]
require_tlog = false

[[policies]]
name = "prod"
namespaces = ["prod"]
verifiers = ["release"]
allowlist = [{{ pattern = "{REGISTRY}/app*" }}]

[[policies]]
name = "secure"
namespaces = ["secure"]
verifiers = ["release"]
"#
        )
    }

    /// The decider of the config `text`, caching nothing, whose runtime socket in `dir`
    /// does not exist, remembering pulled image ids in `pulled`.
    fn decider_from(dir: &Path, text: &str, pulled: PulledImages) -> PolicyDecider {
        let runtime = RuntimeImages::new(dir.join("missing.sock"), pulled).unwrap();
        decider_over(text, runtime)
    }

    /// The decider of the config `text`, caching nothing, over `runtime`.
    fn decider_over(text: &str, runtime: RuntimeImages) -> PolicyDecider {
        let config = Config::parse(text, Path::new("test.toml")).unwrap();
        let cache = CacheConfig {
            positive_ttl: Duration::ZERO,
            negative_ttl: Duration::ZERO,
            max_entries: 16,
            path: None,
        };
        crate::cli::serve::policy_decider(&config, cache, Some(runtime), Auditor::discard())
            .unwrap()
    }

    fn create(image: &str, namespace: &str) -> RequestContext {
        RequestContext {
            phase: Phase::Create,
            api: ApiVersion::V1,
            image: image.to_owned(),
            user_specified_image: None,
            namespace: Some(namespace.to_owned()),
            pod_name: Some("web".to_owned()),
            pod_uid: None,
            container_name: Some("app".to_owned()),
            pod_sandbox_id: None,
            caller: Caller {
                pid: None,
                uid: 0,
                gid: 0,
            },
            credentials: None,
            image_volumes: Vec::new(),
        }
    }

    /// A registry on loopback that refuses anonymous requests with a Basic challenge and
    /// answers 404 to authorised ones, recording whether each request was authorised.
    async fn private_registry() -> (String, Arc<Mutex<Vec<bool>>>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                // user:pass
                let authorised = text.contains("authorization: basic dxnlcjpwyxnz");
                log.lock().unwrap().push(authorised);
                let answer = if authorised {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"r\"\r\n\
                     content-length: 0\r\nconnection: close\r\n\r\n"
                };
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        (host, seen)
    }

    /// A registry on loopback that answers each request `delay` after reading it: with
    /// `manifest` (an OCI image manifest) where its path ends in that manifest's digest,
    /// else 404.
    async fn slow_registry(delay: Duration, manifest: &'static str) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let digest = Digest::sha256(manifest.as_bytes()).to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let digest = digest.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    tokio::time::sleep(delay).await;
                    let line = String::from_utf8_lossy(&request);
                    let line = line.lines().next().unwrap_or_default();
                    let answer = if line.contains(&format!("/manifests/{digest} ")) {
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
                             docker-content-digest: {digest}\r\nconnection: close\r\n\r\n{}",
                            crate::oci::descriptor::OCI_MANIFEST,
                            manifest.len(),
                            if line.starts_with("HEAD") {
                                ""
                            } else {
                                manifest
                            }
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_owned()
                    };
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        host
    }

    /// The verifications of one decision share one `[verify] timeout`: four verifiers,
    /// each of which finds no signature well within it on a slow registry, together
    /// exceed it, and the decision is the timeout's (`on_error`), made when it passes.
    #[tokio::test]
    async fn the_verifiers_of_one_decision_share_one_timeout() {
        const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
        let host = slow_registry(Duration::from_millis(150), MANIFEST).await;
        let verifiers: String = ["a", "b", "c", "d"]
            .iter()
            .map(|name| {
                format!("[verifiers.{name}]\nkind = \"cosign\"\nkeys = [\"{KEY}\"]\nrequire_tlog = false\n\n")
            })
            .collect();
        let text = format!(
            r#"
[registry]
plain_http = ["{host}"]

[verify]
timeout = "1s"

{verifiers}
[[policies]]
name = "secure"
namespaces = ["secure"]
verifiers = ["a", "b", "c", "d"]
"#
        );
        let dir = tempfile::tempdir().unwrap();
        let decider = decider_from(dir.path(), &text, PulledImages::default());
        let digest = Digest::sha256(MANIFEST.as_bytes());
        let mut pull = create(&format!("{host}/app@{digest}"), "secure");
        pull.phase = Phase::Pull;
        let started = Instant::now();
        let trace = decider.explain(&pull).await;
        let took = started.elapsed();
        // Each verifier alone finishes within the timeout, with no signature found.
        let first = &trace.checks[0];
        assert_eq!(
            (first.verifier.as_str(), first.result),
            ("a", "rejected"),
            "{trace:?}"
        );
        assert_eq!(trace.reason_code, "verification_error", "{trace:?}");
        assert!(
            trace.reason.contains("its decision's verifications share"),
            "{}",
            trace.reason
        );
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }

    #[tokio::test]
    async fn a_create_is_verified_with_the_credentials_its_repositorys_pull_came_with() {
        let (host, seen) = private_registry().await;
        let text = format!(
            r#"
[registry]
plain_http = ["{host}"]

[verifiers.release]
kind = "cosign"
keys = ["{KEY}"]
require_tlog = false

[[policies]]
name = "secure"
namespaces = ["secure"]
verifiers = ["release"]
"#
        );
        let dir = tempfile::tempdir().unwrap();
        let decider = decider_from(dir.path(), &text, PulledImages::default());
        let pinned = format!("{host}/app@sha256:{}", "d".repeat(64));
        decider.runtime.as_ref().unwrap().remember(&pinned, &id());
        let authorised = || seen.lock().unwrap().iter().filter(|a| **a).count();

        // Before any pull with credentials: the registry is asked anonymously.
        decider.explain(&create(&id(), "secure")).await;
        assert!(!seen.lock().unwrap().is_empty());
        assert_eq!(authorised(), 0);

        // A pull of the repository with the pod's pull secret...
        let mut pull = create(&pinned, "secure");
        pull.phase = Phase::Pull;
        pull.credentials = Some(CriCredentials::from(crate::registry::Credentials::Basic {
            username: "user".to_owned(),
            password: crate::registry::Secret::new("pass"),
        }));
        decider.explain(&pull).await;
        let after_pull = authorised();
        assert!(after_pull > 0);
        // ...lends it to a later create of an image from that repository.
        decider.explain(&create(&id(), "secure")).await;
        assert!(authorised() > after_pull, "{:?}", seen.lock().unwrap());
    }

    #[tokio::test]
    async fn a_create_whose_image_names_a_file_of_the_runtime_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let runtime_dir = dir.path().join("runtime-cwd");
        std::fs::create_dir(&runtime_dir).unwrap();
        let runtime = RuntimeImages::new(dir.path().join("missing.sock"), PulledImages::default())
            .unwrap()
            .with_working_dir(runtime_dir.clone());
        let decider = decider_over(&config(), runtime);
        // An id a pull through crigate was answered with: allowed, even with a directory
        // of that name beside the runtime, which it cannot restore from.
        decider.runtime.as_ref().unwrap().remember(&pinned(), &id());
        std::fs::create_dir(runtime_dir.join(id())).unwrap();
        let allowed = decider.explain(&create(&id(), "prod")).await;
        assert_eq!(allowed.decision, Conclusion::Allow, "{allowed:?}");
        std::fs::remove_dir(runtime_dir.join(id())).unwrap();
        // The same string, once a file of that name is in the runtime's working directory.
        std::fs::write(runtime_dir.join(id()), b"checkpoint").unwrap();
        let refused = decider.explain(&create(&id(), "prod")).await;
        assert_eq!(refused.decision, Conclusion::Deny, "{refused:?}");
        assert_eq!(refused.reason_code, "checkpoint_archive");
        // An absolute path is the runtime's as much as crigate's.
        let archive = dir.path().join("archive.tar");
        std::fs::write(&archive, b"checkpoint").unwrap();
        let refused = decider
            .explain(&create(archive.to_str().unwrap(), "prod"))
            .await;
        assert_eq!(refused.reason_code, "checkpoint_archive", "{refused:?}");
        // A pull names no file the runtime restores.
        let mut pull = create(&id(), "prod");
        pull.phase = Phase::Pull;
        assert_ne!(
            decider.explain(&pull).await.reason_code,
            "checkpoint_archive"
        );
    }

    #[test]
    fn a_path_crigate_may_not_look_at_is_taken_for_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("archive.tar");
        std::fs::write(&file, b"checkpoint").unwrap();
        let stat = |path: &Path| path.metadata().map(|found| found.is_file());
        assert!(may_be_a_file(stat(&file)));
        assert!(!may_be_a_file(stat(dir.path())));
        assert!(!may_be_a_file(stat(&dir.path().join("missing"))));
        // Through a file, as if it were a directory (ENOTDIR): nothing there either.
        assert!(!may_be_a_file(stat(&file.join("inside"))));
        // Refused a look (tests run as root, who is refused none: the errors `stat`
        // gives a process without CAP_DAC_READ_SEARCH, or short of the capabilities of
        // the process whose /proc/PID/root it goes through).
        for errno in [libc::EACCES, libc::EPERM] {
            assert!(may_be_a_file(Err(std::io::Error::from_raw_os_error(errno))));
        }
    }

    #[tokio::test]
    async fn an_image_id_a_pinned_pull_answered_with_resolves_without_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let decider = decider(dir.path());
        // Not yet pulled through crigate: only the runtime can say what the id is.
        let before = decider.explain(&create(&id(), "prod")).await;
        assert_eq!(before.decision, Conclusion::ErrorDeny, "{before:?}");
        assert_eq!(before.reason_code, "runtime_error");

        decider.runtime.as_ref().unwrap().remember(&pinned(), &id());
        let after = decider.explain(&create(&id(), "prod")).await;
        assert_eq!(after.decision, Conclusion::Allow, "{after:?}");
        assert_eq!(after.reason_code, "allowlisted");
        assert_eq!(after.subject, pinned());
    }

    /// A create of `image` in `namespace` mounting each of `volumes` as an image volume.
    fn with_volumes(image: &str, namespace: &str, volumes: &[&str]) -> RequestContext {
        RequestContext {
            image_volumes: volumes
                .iter()
                .enumerate()
                .map(|(mount, image)| ImageVolume {
                    mount,
                    container_path: format!("/v{mount}"),
                    image: (*image).to_owned(),
                    user_specified_image: None,
                })
                .collect(),
            ..create(image, namespace)
        }
    }

    /// A stand-in for the runtime's socket that holds one image record, named by
    /// [`id`], whose target is a manifest with that config, and answers every other call
    /// UNAVAILABLE: what the decision of an image volume sent as [`id`] reads from the
    /// runtime, without a containerd (the integration tests use a real one).
    fn holding_its_id_record(socket: &Path) {
        use containerd_client::services::v1::{GetImageResponse, Image, ReadContentResponse};
        use containerd_client::types::Descriptor;
        use http_body_util::Full;
        use prost::Message as _;

        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
            id()
        );
        let target = Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: Digest::sha256(manifest.as_bytes()).to_string(),
            size: i64::try_from(manifest.len()).unwrap(),
            ..Default::default()
        };
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (target, manifest) = (target.clone(), manifest.clone());
                let serve = hyper::service::service_fn(move |request: http::Request<_>| {
                    let message = match request.uri().path() {
                        "/containerd.services.images.v1.Images/Get" => Some(
                            GetImageResponse {
                                image: Some(Image {
                                    name: id(),
                                    target: Some(target.clone()),
                                    ..Default::default()
                                }),
                            }
                            .encode_to_vec(),
                        ),
                        "/containerd.services.content.v1.Content/Read" => Some(
                            ReadContentResponse {
                                offset: 0,
                                data: manifest.clone().into_bytes(),
                            }
                            .encode_to_vec(),
                        ),
                        _ => None,
                    };
                    let mut response = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", if message.is_some() { "0" } else { "14" });
                    let mut body = Vec::new();
                    if let Some(message) = message {
                        body.push(0);
                        body.extend_from_slice(
                            &u32::try_from(message.len()).unwrap().to_be_bytes(),
                        );
                        body.extend_from_slice(&message);
                    } else {
                        response = response.header("grpc-message", "stand-in");
                    }
                    std::future::ready(response.body(Full::new(bytes::Bytes::from(body))))
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), serve),
                );
            }
        });
    }

    /// [`decider`] over a runtime that holds [`id`]'s record ([`holding_its_id_record`]).
    fn decider_holding_its_id_record(dir: &Path) -> PolicyDecider {
        let socket = dir.join("runtime.sock");
        holding_its_id_record(&socket);
        let runtime = RuntimeImages::new(socket, PulledImages::default()).unwrap();
        decider_over(&config(), runtime)
    }

    #[tokio::test]
    async fn a_create_is_refused_for_the_first_image_volume_its_policy_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let decider = decider_holding_its_id_record(dir.path());
        decider.runtime.as_ref().unwrap().remember(&pinned(), &id());
        let unknown = format!("sha256:{}", "d".repeat(64));
        // The container's image and the first volume resolve (remembered, allowlisted);
        // the second volume's image only the runtime could resolve, and it is down.
        let request = with_volumes(&id(), "prod", &[&id(), &unknown, &unknown]);
        let decided = decider.decide(&request).await;
        let Decision::Deny { message } = decided.decision else {
            panic!("allowed: {:?}", decided.decision);
        };
        assert!(
            message.starts_with(&format!(
                "denied {unknown} (image volume at /v1) in namespace prod: could not verify"
            )),
            "{message}"
        );
        // An outage's refusal names the policy, the setting that refused, and the code.
        assert!(
            message
                .contains(r#"under policy "prod" (on_error = "deny") [runtime_error] (audit id "#),
            "{message}"
        );
        // A refusal whose reason does not name its code has it added, once.
        let request = create(&id(), "staging");
        let Decision::Deny { message } = decider.decide(&request).await.decision else {
            panic!("allowed");
        };
        assert!(message.contains("[no_policy] (audit id "), "{message}");
        assert_eq!(message.matches("[no_policy]").count(), 1, "{message}");
        // The same create without that volume goes ahead as sent: nothing to pin.
        let request = with_volumes(&id(), "prod", &[&id()]);
        assert_eq!(decider.decide(&request).await.decision, Decision::allow());
    }

    /// The records of a create refused for an image volume: the container's image,
    /// allowed, is recorded with the call refused and the volume named, then each volume
    /// decided, up to the one that refused the call; none after it is decided.
    #[tokio::test]
    async fn a_create_refused_for_an_image_volume_is_recorded_as_refused_throughout() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let decider = PolicyDecider {
            auditor: Auditor::new("node", vec![sink.clone()]),
            ..decider_holding_its_id_record(dir.path())
        };
        decider.runtime.as_ref().unwrap().remember(&pinned(), &id());
        let unknown = format!("sha256:{}", "d".repeat(64));
        let request = with_volumes(&id(), "prod", &[&id(), &unknown, &id()]);
        let decided = decider.decide(&request).await;
        assert!(matches!(decided.decision, Decision::Deny { .. }));
        decided.durable.wait().await;
        let records = sink.0.lock().unwrap().clone();
        let seen: Vec<(&str, &str, &str)> = records
            .iter()
            .map(|r| {
                (
                    r.volume_path.as_str(),
                    r.decision().code(),
                    r.action().code(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("", "allow", "refuse"),
                ("/v0", "allow", "refuse"),
                ("/v1", "error", "refuse")
            ]
        );
        assert!(
            records[0]
                .reason
                .ends_with("; the call was refused for its image volume at /v1"),
            "{}",
            records[0].reason
        );
        // Each record of an allowed create says it went ahead.
        sink.0.lock().unwrap().clear();
        let request = with_volumes(&id(), "prod", &[&id()]);
        decider.decide(&request).await.durable.wait().await;
        let actions: Vec<&str> = sink
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.action().code())
            .collect();
        assert_eq!(actions, ["forward", "forward"]);
    }

    /// A sink that keeps every record it is given.
    struct Collect(Mutex<Vec<AuditRecord>>);

    impl crate::audit::Sink for Collect {
        fn name(&self) -> &'static str {
            "collect"
        }
        fn write(
            &self,
            record: Arc<AuditRecord>,
        ) -> BoxFuture<'static, Result<crate::audit::Durability, crate::audit::Error>> {
            self.0.lock().unwrap().push((*record).clone());
            Box::pin(std::future::ready(Ok(
                Box::pin(std::future::ready(Ok(()))) as crate::audit::Durability
            )))
        }
    }

    #[tokio::test]
    async fn without_policies_each_image_volume_is_recorded_beside_the_container() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let decider = AllowAndRecord::new(Auditor::new("node", vec![sink.clone()]));
        let request = with_volumes("app:v1", "prod", &["models:v1", "plugins:v1"]);
        let decided = decider.decide(&request).await;
        assert_eq!(decided.decision, Decision::allow());
        decided.durable.wait().await;
        let records = sink.0.lock().unwrap();
        let seen: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.image.as_str(), r.volume_path.as_str()))
            .collect();
        assert_eq!(
            seen,
            [("app:v1", ""), ("models:v1", "/v0"), ("plugins:v1", "/v1")]
        );
        assert!(records.iter().all(|r| r.reason_code == "no_policies"));
    }

    #[tokio::test]
    async fn an_unrecorded_allow_is_denied_only_when_the_operator_chose_so() {
        /// A sink that cannot take any record, as a full disk would leave the spool.
        struct Full;
        impl crate::audit::Sink for Full {
            fn name(&self) -> &'static str {
                "spool"
            }
            fn write(
                &self,
                _record: Arc<AuditRecord>,
            ) -> BoxFuture<'static, Result<crate::audit::Durability, crate::audit::Error>>
            {
                Box::pin(std::future::ready(Err(crate::audit::Error::Lost {
                    sink: "spool",
                })))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut pull = create(&format!("{REGISTRY}/app:v1"), "prod");
        pull.phase = Phase::Pull;
        // journald takes the records, the spool takes none.
        let journal = Arc::new(Collect(Mutex::new(Vec::new())));
        let with = |on_failure| {
            let decider = decider(dir.path());
            PolicyDecider {
                auditor: Auditor::new("node", vec![journal.clone(), Arc::new(Full)]),
                ..decider
            }
            .with_record_failure(on_failure)
        };
        // The allowlisted pull is allowed, record or not, by default...
        let decided = with(RecordFailure::Allow).decide(&pull).await;
        assert!(
            matches!(decided.decision, Decision::Allow { .. }),
            "{:?}",
            decided.decision
        );
        // ...and denied, saying why, when every call must be recorded: the denial is a
        // record of its own, which journald has, and the one kubelet is told of.
        journal.0.lock().unwrap().clear();
        let decided = with(RecordFailure::Deny).decide(&pull).await;
        let Decision::Deny { message } = decided.decision else {
            panic!("{:?}", decided.decision)
        };
        assert!(
            message.contains("audit record could not be written")
                && message.contains("on_record_failure"),
            "{message}"
        );
        let records = journal.0.lock().unwrap().clone();
        let kinds: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.decision().code(), r.reason_code.as_str()))
            .collect();
        assert_eq!(kinds, [("allow", "allowlisted"), ("deny", "record_failed")]);
        assert!(
            message.ends_with(&format!("(audit id {})", records[1].id)),
            "{message}"
        );
        // A call denied anyway says why it was denied, not that its record failed.
        let mut other = create("127.0.0.1:1/other:v1", "prod");
        other.phase = Phase::Pull;
        let decided = with(RecordFailure::Deny).decide(&other).await;
        let Decision::Deny { message } = decided.decision else {
            panic!("{:?}", decided.decision)
        };
        assert!(!message.contains("on_record_failure"), "{message}");
    }

    #[tokio::test]
    async fn remembered_ids_outlive_a_rebuilt_decider_sharing_the_memory() {
        let dir = tempfile::tempdir().unwrap();
        let pulled = PulledImages::default();
        decider_remembering(dir.path(), pulled.clone())
            .runtime
            .as_ref()
            .unwrap()
            .remember(&pinned(), &id());
        // A reload builds a new decider; the daemon hands it the same memory.
        let reloaded = decider_remembering(dir.path(), pulled);
        let trace = reloaded.explain(&create(&id(), "prod")).await;
        assert_eq!(trace.decision, Conclusion::Allow, "{trace:?}");
        // A decider with a memory of its own knows nothing of it.
        let fresh = decider(dir.path()).explain(&create(&id(), "prod")).await;
        assert_eq!(fresh.reason_code, "runtime_error", "{fresh:?}");
    }

    #[tokio::test]
    async fn a_remembered_id_that_would_not_be_allowed_is_decided_by_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let decider = decider(dir.path());
        decider.runtime.as_ref().unwrap().remember(&pinned(), &id());
        // secure does not allowlist the image and its registry is down: the remembered
        // reference is not enough, and the decision falls to the runtime's answer.
        let trace = decider.explain(&create(&id(), "secure")).await;
        assert_eq!(trace.decision, Conclusion::ErrorDeny, "{trace:?}");
        assert_eq!(trace.reason_code, "runtime_error");
    }

    #[tokio::test]
    async fn names_and_undigested_pulls_are_never_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let decider = decider(dir.path());
        let tag = format!("{REGISTRY}/app:v1");
        // A name as the image id, and a pull without a digest: both ignored.
        decider.runtime.as_ref().unwrap().remember(&pinned(), &tag);
        decider.runtime.as_ref().unwrap().remember(&tag, &id());
        for image in [tag.as_str(), id().as_str()] {
            let trace = decider.explain(&create(image, "prod")).await;
            assert_eq!(trace.reason_code, "runtime_error", "{image}: {trace:?}");
        }
    }

    #[tokio::test]
    async fn a_reference_that_does_not_parse_is_refused_whatever_on_error_says() {
        let text = format!(
            r#"
[verifiers.release]
kind = "cosign"
keys = ["{KEY}"]
require_tlog = false

[[policies]]
name = "lenient"
namespaces = ["lenient"]
verifiers = ["release"]
on_error = "allow"

[[policies]]
name = "watching"
namespaces = ["watching"]
mode = "audit"
verifiers = ["release"]
"#
        );
        let dir = tempfile::tempdir().unwrap();
        let decider = decider_from(dir.path(), &text, PulledImages::default());
        // sha384 is a digest the runtime accepts and crigate does not verify.
        let image = format!("{REGISTRY}/app@sha384:{}", "a".repeat(96));
        for (namespace, conclusion) in [
            ("lenient", Conclusion::Deny),
            ("watching", Conclusion::AuditDeny),
        ] {
            let mut pull = create(&image, namespace);
            pull.phase = Phase::Pull;
            let trace = decider.explain(&pull).await;
            assert_eq!(trace.decision, conclusion, "{trace:?}");
            assert_eq!(trace.reason_code, "invalid_image");
        }
        // An outage, by contrast, is what on_error decides.
        let mut pull = create(&format!("{REGISTRY}/app:v1"), "lenient");
        pull.phase = Phase::Pull;
        let trace = decider.explain(&pull).await;
        assert_eq!(trace.decision, Conclusion::ErrorAllow, "{trace:?}");
    }

    #[test]
    fn pulled_ids_keep_a_bounded_number_oldest_first() {
        let mut pulled = PulledIds::default();
        let digest = |n: usize| format!("sha256:{n:064x}").parse::<Digest>().unwrap();
        let image = |n: usize| PulledRef {
            pinned: format!("{REGISTRY}/app@sha256:{n:064x}")
                .parse::<ImageRef>()
                .unwrap(),
            platform: None,
        };
        for n in 0..=MAX_PULLED_IDS {
            pulled.remember(digest(n), image(n));
        }
        assert!(pulled.get(&digest(0)).is_none(), "the oldest is forgotten");
        assert_eq!(pulled.get(&digest(1)), Some(vec![image(1)]));
        assert_eq!(pulled.by_id.map.len(), MAX_PULLED_IDS);
        // One id pulled as many references keeps the newest few, each once.
        for n in 0..MAX_REFS_PER_ID + 2 {
            pulled.remember(digest(1), image(100 + n));
            pulled.remember(digest(1), image(100 + n));
        }
        let refs = pulled.get(&digest(1)).unwrap();
        assert_eq!(refs.len(), MAX_REFS_PER_ID);
        assert_eq!(refs.last(), Some(&image(100 + MAX_REFS_PER_ID + 1)));
    }
}
