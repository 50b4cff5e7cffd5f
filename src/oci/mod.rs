//! Value types every module shares: content digests, image references, media types and
//! descriptors (OCI image spec). A value of these types is valid once built.

pub mod descriptor;
pub mod digest;
pub mod json;
pub mod manifest;
pub mod reference;

pub use descriptor::{Descriptor, Platform};
pub use digest::{Digest, DigestAlgorithm, DigestError, DigestMismatch};
pub use manifest::{
    ImageIndex, ImageManifest, Manifest, ManifestError, ManifestKind, MAX_MANIFEST_BYTES,
};
pub use reference::{ImageRef, ReferenceError, Repository};
