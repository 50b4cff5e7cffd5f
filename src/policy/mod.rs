//! Namespace-scoped policy: which images are exempt, and (to come) which verifiers a
//! namespace requires and what happens when verification fails.
//!
//! Built so far: [`allowlist`], the kritis `AdmissionAllowlist` semantics.

pub mod allowlist;
pub mod decider;
pub mod model;
