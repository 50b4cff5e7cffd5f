//! OCI distribution client (in progress).
