//! crigate: container image signature enforcement at the node's container runtime.
//!
//! kubelet (or any CRI client) talks to crigate's unix socket as if it were containerd.
//! crigate forwards every call to containerd's CRI socket and stops at two of them,
//! `PullImage` and `CreateContainer`, to ask a decision seam whether the image may be
//! fetched or run.
//!
//! ```text
//! kubelet / crictl ──CRI gRPC──▶ proxy ──────────────────────────▶ containerd
//!                                 │  every other method: HTTP/2 frames, untouched
//!                                 │  PullImage, CreateContainer (runtime.v1, v1alpha2):
//!                                 └─▶ decision::Decide ── allow: forward original bytes
//!                                                       └ deny:  gRPC error to the caller
//! ```
//!
//! Module map (the proxy knows policy and verification only through the seam:
//! `cli -> proxy -> decision <- policy -> verify -> registry -> oci`):
//!
//! - [`audit`]: the record of each decision, written to journald and the spool, and
//!   shipped from the spool to the aggregator.
//! - [`aggregator`]: `crigate aggregator`, which stores every node's records and
//!   answers queries (`cli -> aggregator -> audit`).
//! - [`cli`]: the `crigate` command line, one module per command.
//! - [`config`]: the TOML configuration file, parsed into validated types.
//! - [`proxy`]: the unix-socket HTTP/2 server, the passthrough, the interception of the
//!   two gated methods, the upstream connection, and the server's lifecycle.
//! - [`decision`]: the seam between the proxy and whatever decides (policy and
//!   verification plug in here); the proxy knows nothing else of them.
//! - [`egress`]: outbound HTTP connections, direct or through the environment's proxy.
//! - [`tcp`]: the accept step of the aggregator's and the metrics endpoint's TCP ports.
//! - [`telemetry`]: diagnostics through `tracing`, to journald or stderr.
//! - [`metrics`]: the Prometheus text format, the bounded decision counters and the
//!   plain-HTTP endpoint shared by the node daemon and the aggregator.
//! - [`policy`]: namespace policies, allowlists, and the decider that implements the
//!   seam with them, verification and the runtime's view of images.
//! - [`verify`]: signature verification and its vocabulary ([`verify::Verdict`],
//!   [`verify::Rejection`]).
//! - [`registry`]: the OCI distribution client: resolution, manifests, signature
//!   discovery, authentication, mirrors.
//! - [`runtime`]: a channel to the container runtime's socket, and requests in its CRI
//!   plugin's containerd namespace.
//! - [`files`]: reading configuration and key files within a size limit.
//! - [`systemd`]: readiness notification and socket activation.
//! - [`oci`]: value types shared by every module (digests, references, media types).
//! - [`fuzzing`]: entry points for the fuzz targets in `fuzz/`.

pub mod aggregator;
pub mod audit;
pub mod cli;
pub mod config;
pub mod decision;
pub mod egress;
pub mod files;
pub mod fuzzing;
pub mod metrics;
pub mod oci;
pub mod policy;
pub mod proxy;
pub mod registry;
pub mod runtime;
pub mod systemd;
pub mod tcp;
pub mod telemetry;
pub mod verify;

/// The version string `crigate --version` prints: the package version and the git commit.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("CRIGATE_GIT_SHA"),
    ")"
);
