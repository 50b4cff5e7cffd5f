//! Value types every module shares: content digests, image references, media types and
//! descriptors (OCI image spec). A value of these types is valid once built.

pub mod descriptor;
pub mod digest;

pub use descriptor::{Descriptor, Platform};
pub use digest::{Digest, DigestAlgorithm, DigestError, DigestMismatch};
