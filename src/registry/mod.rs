//! OCI distribution client: resolves tags to digests, fetches manifests and blobs, and
//! discovers the signatures attached to an image.
//!
//! What it owns: the HTTP side of the OCI distribution spec v1.1 ("Pulling manifests",
//! "Pulling blobs", "Listing referrers" and its tag-schema fallback), the distribution
//! token authentication spec, cosign's legacy `sha256-<hex>.sig` tag, the mirrors of
//! containerd's registry host configuration (`hosts.toml`), and the limits and timeouts
//! that keep a hostile or broken registry from stalling or flooding the node.
//! What it leaves: deciding what a signature means ([`crate::verify`]); parsing the
//! documents ([`crate::oci::manifest`]).
//!
//! Rules it keeps:
//!
//! - Every fetched manifest and blob is hashed and compared with the digest asked for
//!   before it is parsed or returned. [`Client::resolve`] gives a tag the digest of the
//!   bytes read. [`Client::resolve_digest`], as containerd's resolver, takes a HEAD's
//!   `Docker-Content-Digest` header: a name only, under which content is then fetched and
//!   checked like any other.
//! - Every body is read through a limit whatever `Content-Length` says, within a timeout;
//!   connecting and awaiting headers have timeouts of their own ([`RegistryConfig`]).
//! - HTTPS, except for hosts the configuration lists; a redirect never goes from HTTPS to
//!   HTTP, and credentials are sent only to the registry's own origin.
//! - "Not there" ([`Error::NotFound`], or `Ok(None)` / an empty list where absence is an
//!   answer) is kept apart from "could not ask" (every other error).

mod auth;
mod client;
mod config;
mod containerd;
mod hosts;
mod referrers;

use std::path::PathBuf;
use std::time::Duration;

pub use auth::{
    fuzz_challenge, fuzz_docker_config, fuzz_token_response, Challenge, Credentials, CriAuth,
    CriCredentials, Secret, MAX_DOCKER_CONFIG_BYTES, MAX_TOKEN_RESPONSE_BYTES,
};
pub use client::{Client, FetchedManifest, MAX_CA_FILE_BYTES};
pub use config::{
    RegistryConfig, DEFAULT_BODY_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_REDIRECTS,
    DEFAULT_MAX_REFERRER_PAGES, DEFAULT_REQUEST_TIMEOUT,
};
pub use containerd::MAX_CONTAINERD_CONFIG_BYTES;
pub use hosts::{
    fuzz_hosts_toml, Capability, HostsError, HostsStamp, HOSTS_FILE, MAX_HOSTS_FILE_BYTES,
};
pub use referrers::{
    fuzz_referrers_page, next_link, Wanted, ARTIFACT_TYPE_FILTER, MAX_MANIFESTS_READ,
};

use crate::oci::{DigestMismatch, ManifestError};

/// Why the registry client could not answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("registry {registry} is unreachable")]
    Unreachable {
        registry: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: usize },
    #[error("{what}: digest mismatch")]
    DigestMismatch {
        what: String,
        #[source]
        source: DigestMismatch,
    },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("registry {registry} refused {} for {what} (HTTP {status})", asked_with(*.anonymous))]
    Unauthorized {
        registry: String,
        what: String,
        status: u16,
        /// Whether crigate had no credentials to send for it.
        anonymous: bool,
    },
    #[error("registry {registry} sent the request for {what} to {host}, which refused it (HTTP {status}) without a challenge crigate answers anonymously")]
    RedirectRefused {
        registry: String,
        host: String,
        what: String,
        status: u16,
    },
    #[error("{what} answered HTTP {code}")]
    Status { what: String, code: u16 },
    #[error("{what} is malformed: {reason}")]
    Malformed { what: String, reason: String },
    #[error("{what} is not a manifest crigate accepts")]
    Manifest {
        what: String,
        #[source]
        source: ManifestError,
    },
    #[error("{what} is a {found}, expected {expected}")]
    UnexpectedKind {
        what: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("{what}: redirected in a loop or more than {limit} times")]
    RedirectLoop { what: String, limit: usize },
    #[error("{what}: refusing to leave HTTPS for {to}")]
    InsecureRedirect { what: String, to: String },
    #[error("{url}: plain HTTP is not allowed for this host (add it to plain_http) and only http and https are known")]
    InsecureScheme { url: String },
    #[error("{what}: more than {limit} pages")]
    TooManyPages { what: String, limit: usize },
    #[error("reading {what} failed")]
    Body {
        what: String,
        #[source]
        source: hyper::Error,
    },
    #[error("registry asked for {scheme:?} authentication, which crigate does not speak")]
    UnsupportedAuth { scheme: String },
    #[error("registry credentials are invalid: {reason}")]
    InvalidCredentials { reason: &'static str },
    #[error("docker config {path}: {reason}")]
    DockerConfig { path: PathBuf, reason: String },
    #[error("registry CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("registry client certificate {path}: {reason}")]
    ClientCertificate { path: PathBuf, reason: String },
    #[error("building the registry TLS configuration failed")]
    Tls(#[source] rustls::Error),
    #[error("registry hosts directory")]
    Hosts(#[from] HostsError),
    #[error("no host of registry {registry} may {capability} (hosts.toml capabilities)")]
    NoHost {
        registry: String,
        capability: Capability,
    },
}

// === impl Error ===

/// What a refused request was made with, as [`Error::Unauthorized`] says it.
fn asked_with(anonymous: bool) -> &'static str {
    if anonymous {
        "a request without credentials (crigate holds none it can answer with: the pod's \
         pull secret, `[registry] docker_config`'s `auths`, or `registry.configs` in the \
         containerd config it reads; credential helpers are not run)"
    } else {
        "our credentials"
    }
}

impl Error {
    /// A stable snake_case name for the kind of error, for metrics and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreachable { .. } => "registry_unreachable",
            Self::Timeout { .. } => "registry_timeout",
            Self::TooLarge { .. } => "registry_too_large",
            Self::DigestMismatch { .. } => "registry_digest_mismatch",
            Self::NotFound { .. } => "registry_not_found",
            Self::Unauthorized { .. } | Self::RedirectRefused { .. } => "registry_unauthorized",
            Self::Status { .. } => "registry_status",
            Self::Malformed { .. } => "registry_malformed",
            Self::Manifest { .. } => "registry_bad_manifest",
            Self::UnexpectedKind { .. } => "registry_unexpected_kind",
            Self::RedirectLoop { .. } => "registry_redirect_loop",
            Self::InsecureRedirect { .. } => "registry_insecure_redirect",
            Self::InsecureScheme { .. } => "registry_insecure_scheme",
            Self::TooManyPages { .. } => "registry_too_many_pages",
            Self::Body { .. } => "registry_body",
            Self::UnsupportedAuth { .. } => "registry_unsupported_auth",
            Self::InvalidCredentials { .. } => "registry_invalid_credentials",
            Self::DockerConfig { .. } => "registry_docker_config",
            Self::CaFile { .. } => "registry_ca_file",
            Self::ClientCertificate { .. } => "registry_client_certificate",
            Self::Tls(_) => "registry_tls",
            Self::Hosts(_) => "registry_hosts",
            Self::NoHost { .. } => "registry_no_host",
        }
    }

    /// Whether this error says the thing asked for does not exist (as opposed to: it could
    /// not be asked for).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}
