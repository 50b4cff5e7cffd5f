//! Real-process tests: containerd, a registry and crigate, started in a temp dir per test.
//!
//! These tests need root and the Debian packages `.ci/run` installs (containerd, runc,
//! docker-registry, socat, gcc with static libc).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test code may block its own thread while it waits for a process.
#![allow(clippy::disallowed_methods)]

mod aggregator;
mod client;
mod daemon;
mod enforce;
mod grpc_core;
mod harness;
mod harness_tests;
mod import;
mod lifecycle;
mod nghttp;
mod notation;
mod notation_e2e;
mod notation_signer;
mod proxy;
mod registry_client;
mod relay;
mod signer;
mod standin;
mod transparency;
mod verify;
