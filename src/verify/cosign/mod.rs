//! cosign signature verification (in progress).
