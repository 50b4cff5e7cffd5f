//! Namespace-scoped policy: which policy governs a namespace, which images it exempts,
//! which verifiers it requires, and what happens when verification fails.
//!
//! [`model`] holds the policies as configured (selection by namespace, modes, `on_error`,
//! fingerprints); [`allowlist`], the kritis `AdmissionAllowlist` semantics; [`decider`],
//! the [`Decide`](crate::decision::Decide) implementation that puts them together with
//! verification and the runtime's view of images, and writes each decision's record.

pub mod allowlist;
pub mod decider;
pub mod model;
