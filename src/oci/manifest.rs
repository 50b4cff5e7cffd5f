//! Image manifests and image indexes, OCI and Docker (OCI image spec v1.1, "Image
//! Manifest" and "Image Index"; Docker image manifest V2 schema 2 and manifest list).
//!
//! Parsing is bounded ([`MAX_MANIFEST_BYTES`]) and decides the document's kind from two
//! witnesses that must agree: the `Content-Type` the registry sent and the document's own
//! `mediaType`. A document whose kind cannot be told, or whose witnesses disagree, is
//! refused: reading an index as a manifest (or the reverse) is how content confusion
//! attacks start, which is why OCI image spec v1.1 asks for `mediaType` in both.
//!
//! This module does not check digests: the registry client hashes the bytes before it
//! calls [`Manifest::parse`].
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;

use serde::Deserialize;

use super::descriptor::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use super::Descriptor;

/// The largest manifest or index crigate reads: 4 MiB. OCI distribution spec, "Pulling
/// manifests": registries SHOULD accept and clients SHOULD handle manifests of at least
/// 4 MiB; more is refused rather than buffered.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The `schemaVersion` every supported manifest and index carries.
const SCHEMA_VERSION: u32 = 2;

/// What kind of document a manifest is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
}

/// A parsed manifest or index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageManifest {
    pub kind: ManifestKind,
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// The type the referrers API lists this manifest under: its `artifactType`, else its
    /// config's media type (distribution spec, "Listing Referrers"; image spec,
    /// `artifactType`).
    pub fn listed_artifact_type(&self) -> &str {
        self.artifact_type
            .as_deref()
            .unwrap_or(&self.config.media_type)
    }
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageIndex {
    pub kind: ManifestKind,
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

/// Why bytes are not a manifest or index crigate accepts.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {len} bytes; at most {MAX_MANIFEST_BYTES} are read")]
    TooLarge { len: usize },
    #[error("media type {0:?} is not an OCI or Docker schema 2 manifest or index")]
    UnknownMediaType(String),
    #[error("manifest media type is not known: the registry sent no manifest Content-Type and the document has no mediaType")]
    MissingMediaType,
    #[error(
        "the registry sent Content-Type {header:?} but the document says mediaType {document:?}"
    )]
    MediaTypeMismatch { header: String, document: String },
    #[error("document of type {media_type} has fields of the other kind ({field:?})")]
    AmbiguousKind {
        media_type: &'static str,
        field: &'static str,
    },
    #[error("schemaVersion {0} is not supported (2 is)")]
    SchemaVersion(u32),
    #[error("manifest is not valid JSON of its type")]
    Json(#[source] serde_json::Error),
    #[error(
        "manifest key {key:?} names the field {field:?} but for case, which the runtime \
         would read as that field"
    )]
    CaseVariant { key: String, field: &'static str },
    #[error("parsing the manifest did not finish: {0}")]
    Unfinished(String),
}

/// The size past which [`off_thread`] works on the blocking pool. A manifest as
/// registries hold them is a few KiB; one of several MiB of small values takes
/// milliseconds to hash and to parse.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

/// `work` on `len` bytes of a document: on tokio's blocking pool when they are more than
/// a manifest usually is, so that a document made to be slow does not hold up the
/// thread that relays CRI calls; here otherwise. `None` when the runtime shuts down
/// first.
pub async fn off_thread<T: Send + 'static>(
    len: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if len <= PARSE_INLINE_BYTES {
        return Some(work());
    }
    tokio::task::spawn_blocking(work).await.ok()
}

/// Every field of manifests, indexes, descriptors and platforms (OCI image spec v1.1;
/// Docker schema 2 uses the same names), whatever crigate itself reads.
const DOCUMENT_FIELDS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "manifests",
    "subject",
    "annotations",
    "digest",
    "size",
    "urls",
    "data",
    "platform",
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "features",
];

/// A media type without its parameters (`; charset=utf-8`) and surrounding space.
pub fn media_type_essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or_default().trim()
}

// === impl ManifestKind ===

impl ManifestKind {
    /// The kind a media type names, ignoring parameters (`; charset=utf-8`) and case.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let essence = media_type_essence(media_type);
        [
            Self::OciManifest,
            Self::OciIndex,
            Self::DockerManifest,
            Self::DockerManifestList,
        ]
        .into_iter()
        .find(|kind| kind.media_type().eq_ignore_ascii_case(essence))
    }

    /// The media type string.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::OciManifest => OCI_MANIFEST,
            Self::OciIndex => OCI_INDEX,
            Self::DockerManifest => DOCKER_MANIFEST,
            Self::DockerManifestList => DOCKER_MANIFEST_LIST,
        }
    }

    /// Whether documents of this kind list other manifests.
    pub fn is_index(self) -> bool {
        matches!(self, Self::OciIndex | Self::DockerManifestList)
    }
}

// === impl Manifest ===

/// Annotations of a manifest or index that make containerd restore a container from it
/// as a checkpoint, where it would run it: 2.1+ reads the annotation checkpointctl names
/// `CheckpointAnnotationName` on the document an image record targets
/// (`checkIfCheckpointOCIImage`, `internal/cri/server/container_checkpoint_linux.go`),
/// `org.criu.checkpoint.container.name` in current checkpointctl and
/// `checkpointctl.annotation.checkpoint.name` in earlier releases; the container engines'
/// own names for it are taken too.
const CHECKPOINT_ANNOTATIONS: &[&str] = &[
    "org.criu.checkpoint.container.name",
    "checkpointctl.annotation.checkpoint.name",
    "io.kubernetes.cri-o.annotations.checkpoint.name",
    "io.kubernetes.containerd.annotations.checkpoint.name",
    "io.podman.annotations.checkpoint.name",
];

impl Manifest {
    /// The document's own annotations.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        match self {
            Self::Image(manifest) => &manifest.annotations,
            Self::Index(index) => &index.annotations,
        }
    }

    /// Whether the document marks a container checkpoint ([`CHECKPOINT_ANNOTATIONS`]):
    /// containerd 2.1+ restores a container from such an image, and pulls the image the
    /// checkpoint was taken from itself.
    pub fn is_checkpoint(&self) -> bool {
        self.annotations()
            .keys()
            .any(|key| CHECKPOINT_ANNOTATIONS.contains(&key.as_str()))
    }

    /// As [`Manifest::parse`], on tokio's blocking pool when `bytes` are larger than a
    /// manifest usually is, so that a document made to be slow to parse does not hold
    /// up the thread that relays CRI calls.
    ///
    /// # Errors
    ///
    /// As [`Manifest::parse`]; [`ManifestError::Unfinished`] when the runtime shuts down
    /// first.
    pub async fn parse_off_thread(
        content_type: Option<&str>,
        bytes: bytes::Bytes,
    ) -> Result<Self, ManifestError> {
        let content_type = content_type.map(str::to_owned);
        off_thread(bytes.len(), move || {
            Self::parse(content_type.as_deref(), &bytes)
        })
        .await
        .unwrap_or_else(|| {
            Err(ManifestError::Unfinished(
                "the runtime shut down".to_owned(),
            ))
        })
    }

    /// Parses `bytes` as a manifest or index. `content_type` is the `Content-Type` the
    /// registry sent, or `None` when the bytes did not come with one (a blob, a file);
    /// then the document's own `mediaType` decides.
    ///
    /// # Errors
    ///
    /// More than [`MAX_MANIFEST_BYTES`]; a media type that is unknown, missing from both
    /// witnesses, or different between them; fields of an index in a manifest or the
    /// reverse; a `schemaVersion` other than 2; JSON that does not fit the kind.
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge { len: bytes.len() });
        }
        let raw: RawManifest = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
        // containerd reads the document with Go's encoding/json: a key that names a field
        // but for case would be that field to it (an index entry's `Digest`, say), and not
        // to crigate.
        let variant = super::json::find_case_variant_in(bytes, DOCUMENT_FIELDS, &["annotations"])
            .map_err(ManifestError::Json)?;
        if let Some((key, field)) = variant {
            return Err(ManifestError::CaseVariant { key, field });
        }
        let header = match content_type {
            Some(header) => Some(
                ManifestKind::from_media_type(header)
                    .ok_or_else(|| ManifestError::UnknownMediaType(header.to_owned()))?,
            ),
            None => None,
        };
        let document = match &raw.media_type {
            Some(document) => Some(
                ManifestKind::from_media_type(document)
                    .ok_or_else(|| ManifestError::UnknownMediaType(document.clone()))?,
            ),
            None => None,
        };
        let kind = match (header, document) {
            (Some(header), Some(document)) if header != document => {
                return Err(ManifestError::MediaTypeMismatch {
                    header: content_type.unwrap_or_default().to_owned(),
                    document: raw.media_type.unwrap_or_default(),
                })
            }
            (Some(kind), _) | (None, Some(kind)) => kind,
            (None, None) => return Err(ManifestError::MissingMediaType),
        };
        if raw.schema_version != SCHEMA_VERSION {
            return Err(ManifestError::SchemaVersion(raw.schema_version));
        }
        // OCI image spec v1.1, "Image Index" and "Image Manifest": a document is one or the
        // other; fields of both would let two readers see two different things.
        let ambiguous = |field| ManifestError::AmbiguousKind {
            media_type: kind.media_type(),
            field,
        };
        if kind.is_index() {
            if raw.config.is_some() {
                return Err(ambiguous("config"));
            }
            if raw.layers.is_some() {
                return Err(ambiguous("layers"));
            }
            let manifests = raw.manifests.ok_or_else(|| missing("manifests"))?;
            Ok(Self::Index(ImageIndex {
                kind,
                artifact_type: raw.artifact_type,
                manifests,
                subject: raw.subject,
                annotations: raw.annotations,
            }))
        } else {
            if raw.manifests.is_some() {
                return Err(ambiguous("manifests"));
            }
            let config = raw.config.ok_or_else(|| missing("config"))?;
            let layers = raw.layers.ok_or_else(|| missing("layers"))?;
            Ok(Self::Image(ImageManifest {
                kind,
                artifact_type: raw.artifact_type,
                config,
                layers,
                subject: raw.subject,
                annotations: raw.annotations,
            }))
        }
    }

    /// The document's kind.
    pub fn kind(&self) -> ManifestKind {
        match self {
            Self::Image(manifest) => manifest.kind,
            Self::Index(index) => index.kind,
        }
    }

    /// The document's `artifactType`, if it has one.
    pub fn artifact_type(&self) -> Option<&str> {
        match self {
            Self::Image(manifest) => manifest.artifact_type.as_deref(),
            Self::Index(index) => index.artifact_type.as_deref(),
        }
    }

    /// The document's `subject`, if it has one.
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            Self::Image(manifest) => manifest.subject.as_ref(),
            Self::Index(index) => index.subject.as_ref(),
        }
    }
}

/// Fuzz entry point: parses `data` under every Content-Type the client accepts and under
/// none. Must return on any input, never panic.
pub fn fuzz_parse(data: &[u8]) {
    for content_type in [
        None,
        Some(OCI_MANIFEST),
        Some(OCI_INDEX),
        Some(DOCKER_MANIFEST),
        Some(DOCKER_MANIFEST_LIST),
    ] {
        let _ = Manifest::parse(content_type, data);
    }
}

/// A JSON field the document's kind requires.
fn missing(field: &'static str) -> ManifestError {
    ManifestError::Json(serde::de::Error::missing_field(field))
}

/// Every field of either kind, so the kind can be decided before the shape is enforced.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests;
