//! crigate's configuration file: TOML, parsed into validated types.
//!
//! The file is the only source of configuration for the node daemon, so that the node
//! keeps working when the control plane does not. Every key has a safe default; an
//! unknown key is an error naming the key and its line, so a typo never silently falls
//! back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::policy::model::{Policies, PolicyConfig};
use crate::registry::RegistryConfig;
use crate::verify::cache::Fingerprint;

/// The largest configuration file crigate reads. A config is a few kilobytes; anything
/// this large is a mistake (a wrong path), not a config.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// kubelet's CRI client accepts messages up to 16 MiB in each direction
/// (`maxMsgSize` in k8s.io/cri-client), so crigate decodes up to that too.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The largest `cri.max_message_bytes` accepted.
const MAX_MESSAGE_BYTES_CEILING: usize = 256 * 1024 * 1024;
/// The longest timeout taken: a deadline is the time now plus a timeout, and one past
/// what a clock can hold would panic each time it is taken.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Checks `timeout` against [`MAX_TIMEOUT`]; the error is the reason a config error or a
/// command-line error gives.
pub fn check_timeout(timeout: Duration) -> Result<Duration, &'static str> {
    if timeout > MAX_TIMEOUT {
        return Err("must be at most 24h");
    }
    Ok(timeout)
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub cri: CriConfig,
    /// How registries are reached (`[registry]`).
    pub registry: RegistryConfig,
    /// The verdict cache (`[cache]`).
    pub cache: CacheSettings,
    /// Verification limits (`[verify]`).
    pub verify: VerifySettings,
    /// Named trust material (`[verifiers.<name>]`): each a cosign or a Notation verifier.
    pub verifiers: BTreeMap<String, VerifierConfig>,
    /// Namespace policies (`[[policies]]`), checked against `verifiers`.
    pub policies: Vec<PolicyConfig>,
    /// Where audit records go (`[audit]`).
    pub audit: AuditSettings,
    /// The Prometheus endpoint (`[metrics]`).
    pub metrics: MetricsSettings,
}

/// The `[metrics]` section: the node daemon's Prometheus endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address of the plain-HTTP `GET /metrics` endpoint, such as `127.0.0.1:9464`.
    /// Unset (the default), no port is opened. The metrics name namespaces and carry no
    /// authentication: keep it on loopback unless the network is trusted.
    pub listen: Option<std::net::SocketAddr>,
}

/// The `[audit]` section: where the record of each decision is written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// The node name records carry. Default: the host name (kubelet's default node name).
    pub node: Option<String>,
    /// Write each record to journald through its native protocol. Default true.
    pub journald: bool,
    /// journald's native-protocol socket. Default `/run/systemd/journal/socket`.
    pub journal_socket: PathBuf,
    /// The cluster aggregator, `https://host:port`. When set, every record is also
    /// spooled on disk and shipped there; unset (the default), nothing is spooled.
    pub aggregator: Option<crate::audit::shipper::AggregatorUrl>,
    /// CA bundle (PEM) the aggregator's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// This node's client certificate chain and key (PEM). The certificate's first DNS
    /// SAN (else its CN) must equal `node`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the aggregator's certificate is checked against. Default: the host of
    /// `aggregator`.
    pub server_name: Option<String>,
    /// Where records wait for the aggregator. Default `/var/lib/crigate/spool`.
    pub spool_dir: PathBuf,
    /// Bound on the spool's size on disk. Default 256 MiB. When full, the oldest
    /// segment is dropped, counted, logged and reported to journald.
    pub spool_max_bytes: u64,
    /// What a call crigate would allow becomes when its record could not be written to
    /// every sink (journald, the spool). Default `allow`: the failure is logged and
    /// counted, and the decision stands.
    pub on_record_failure: RecordFailure,
}

/// `[audit] on_record_failure`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFailure {
    /// The decision stands; the failure is logged and counted (the default, so that a
    /// full disk or a restarting journald does not stop the node's pods).
    #[default]
    Allow,
    /// A call that would be allowed is denied: nothing runs that is not recorded.
    Deny,
}

/// Where records are shipped and the files to reach it: [`AuditSettings::shipping`].
#[derive(Clone, Copy, Debug)]
pub struct Shipping<'a> {
    pub url: &'a crate::audit::shipper::AggregatorUrl,
    pub server_name: Option<&'a str>,
    pub ca_file: &'a std::path::Path,
    pub cert_file: &'a std::path::Path,
    pub key_file: &'a std::path::Path,
}

impl AuditSettings {
    /// The node records carry: `node`, or the host name (kubelet's default node name).
    pub fn node_name(&self) -> String {
        self.node.clone().unwrap_or_else(crate::audit::node_name)
    }

    /// The aggregator and its TLS files, when all four are set: records are spooled and
    /// shipped only then.
    pub fn shipping(&self) -> Option<Shipping<'_>> {
        Some(Shipping {
            url: self.aggregator.as_ref()?,
            server_name: self.server_name.as_deref(),
            ca_file: self.ca_file.as_deref()?,
            cert_file: self.cert_file.as_deref()?,
            key_file: self.key_file.as_deref()?,
        })
    }
}

/// Smallest `spool_max_bytes`: room for a few segments of the largest records.
pub const MIN_SPOOL_BYTES: u64 = 1024 * 1024;

/// The `[cache]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// How long a trusted verdict is reused. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub positive_ttl: Duration,
    /// How long a rejection is reused. Default 5 min, so a newly signed image is picked
    /// up soon.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Most verdicts kept. Default 100,000.
    pub max_entries: usize,
    /// Where verdicts persist across restarts. Default
    /// `/var/lib/crigate/verdicts.jsonl` (systemd's `StateDirectory=crigate`).
    pub path: Option<PathBuf>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            node: None,
            journald: true,
            journal_socket: PathBuf::from(crate::audit::journald::DEFAULT_SOCKET),
            aggregator: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            spool_dir: PathBuf::from("/var/lib/crigate/spool"),
            spool_max_bytes: crate::audit::spool::DEFAULT_MAX_BYTES,
            on_record_failure: RecordFailure::Allow,
        }
    }
}

/// The `[verify]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifySettings {
    /// Bound on one verification, registry round trips included. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// One named verifier: where its trust material is.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "VerifierFields")]
pub enum VerifierConfig {
    /// cosign signatures, key-based and keyless.
    Cosign {
        /// cosign public keys (PEM); any one may sign.
        keys: Vec<PathBuf>,
        /// Accepted keyless signers; any one may sign.
        identities: Vec<IdentityConfig>,
        /// Sigstore trust material in `trusted_root.json` form.
        trusted_root: Option<PathBuf>,
        /// Require a verified Rekor entry (cosign's default). Default true.
        require_tlog: bool,
        /// Require an embedded SCT on keyless certificates (cosign's default). Default true.
        require_sct: bool,
        /// How the signed docker-reference must relate to the image's repository:
        /// `match-repository` (default) or `not-checked` (cosign's behaviour).
        docker_reference: DockerReference,
        /// The one hash key-based signatures are made over (`sha256`, `sha384`,
        /// `sha512`), as cosign's `--signature-digest-algorithm` fixes it. Unset
        /// (default): SHA-256 or the key's own hash in sigstore's algorithm registry,
        /// whichever the signature was made with, as older and newer cosign sign.
        signature_digest: Option<SignatureDigestName>,
    },
    /// Notation signatures, with a Notation configuration directory as the notation CLI
    /// lays it out (`trustpolicy.json`, `truststore/x509/...`).
    Notation {
        dir: PathBuf,
        /// Ask the `http` OCSP responders and CRL distribution points of signing
        /// certificates that no CRL in `dir/crl/` covers, as the notation CLI does.
        /// Default true.
        online_revocation: bool,
        /// Check the revocation of a timestamp's TSA chain (OCSP, CRLs), as notation-go
        /// does; a revoked or undeterminable TSA certificate fails the authentic
        /// timestamp check. Default true; off only for nodes that can neither reach the
        /// TSA's responders nor hold its CRL.
        timestamp_revocation: bool,
    },
}

/// A `[verifiers.<name>]` table as written: one struct of every key, so that an unknown
/// key is reported at its own line (a tagged enum reads the table whole first, and would
/// report the table's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifierFields {
    kind: VerifierKind,
    keys: Option<Vec<PathBuf>>,
    identities: Option<Vec<IdentityConfig>>,
    trusted_root: Option<PathBuf>,
    require_tlog: Option<bool>,
    require_sct: Option<bool>,
    docker_reference: Option<DockerReference>,
    signature_digest: Option<SignatureDigestName>,
    dir: Option<PathBuf>,
    online_revocation: Option<bool>,
    timestamp_revocation: Option<bool>,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum VerifierKind {
    Cosign,
    Notation,
}

impl TryFrom<VerifierFields> for VerifierConfig {
    type Error = String;

    fn try_from(fields: VerifierFields) -> Result<Self, String> {
        let VerifierFields {
            kind,
            keys,
            identities,
            trusted_root,
            require_tlog,
            require_sct,
            docker_reference,
            signature_digest,
            dir,
            online_revocation,
            timestamp_revocation,
        } = fields;
        let (name, others) = match kind {
            VerifierKind::Cosign => (
                "cosign",
                vec![
                    ("dir", dir.is_some()),
                    ("online_revocation", online_revocation.is_some()),
                    ("timestamp_revocation", timestamp_revocation.is_some()),
                ],
            ),
            VerifierKind::Notation => (
                "notation",
                vec![
                    ("keys", keys.is_some()),
                    ("identities", identities.is_some()),
                    ("trusted_root", trusted_root.is_some()),
                    ("require_tlog", require_tlog.is_some()),
                    ("require_sct", require_sct.is_some()),
                    ("docker_reference", docker_reference.is_some()),
                    ("signature_digest", signature_digest.is_some()),
                ],
            ),
        };
        if let Some((key, _)) = others.iter().find(|(_, given)| *given) {
            return Err(format!("`{key}` is not a key of a {name} verifier"));
        }
        Ok(match kind {
            VerifierKind::Cosign => Self::Cosign {
                keys: keys.unwrap_or_default(),
                identities: identities.unwrap_or_default(),
                trusted_root,
                require_tlog: require_tlog.unwrap_or(true),
                require_sct: require_sct.unwrap_or(true),
                docker_reference: docker_reference.unwrap_or_default(),
                signature_digest,
            },
            VerifierKind::Notation => Self::Notation {
                dir: dir.ok_or("missing field `dir`")?,
                online_revocation: online_revocation.unwrap_or(true),
                timestamp_revocation: timestamp_revocation.unwrap_or(true),
            },
        })
    }
}

/// A keyless signer: the certificate SAN and OIDC issuer, each exact or a regular
/// expression matched against the whole value.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub subject: Option<String>,
    pub subject_regexp: Option<String>,
    pub issuer: Option<String>,
    pub issuer_regexp: Option<String>,
}

/// See [`VerifierConfig::Cosign`]'s `docker_reference`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DockerReference {
    #[default]
    MatchRepository,
    NotChecked,
}

/// See [`VerifierConfig::Cosign`]'s `signature_digest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SignatureDigestName {
    Sha256,
    Sha384,
    Sha512,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            positive_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(300),
            max_entries: 100_000,
            path: Some(PathBuf::from("/var/lib/crigate/verdicts.jsonl")),
        }
    }
}

impl Default for VerifySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
        }
    }
}

/// The `[cri]` section: where crigate listens and where the runtime is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriConfig {
    /// The unix socket crigate serves CRI on.
    pub listen: PathBuf,
    /// The runtime's CRI unix socket that calls are forwarded to.
    pub upstream: PathBuf,
    /// Methods of the CRI services crigate does not know (a newer kubelet's). Forwarded
    /// by default, so that upgrading kubelet does not break the node.
    pub unknown_methods: MethodPolicy,
    /// Methods of services that are not CRI, such as containerd's native API on the same
    /// socket, through which images can be pulled and run without PullImage or
    /// CreateContainer. Refused by default.
    pub other_services: MethodPolicy,
    /// Permission bits of the listening socket (the trust boundary: root and one group).
    pub socket_mode: u32,
    /// Group owning the listening socket; unchanged when `None`.
    pub socket_group: Option<String>,
    /// Time allowed to connect to the upstream socket.
    pub connect_timeout: Duration,
    /// Time in-flight calls get to finish after SIGTERM.
    pub drain_timeout: Duration,
    /// Concurrent calls (HTTP/2 streams) per client connection.
    pub max_concurrent_streams: u32,
    /// Largest intercepted request crigate decodes, in bytes.
    pub max_message_bytes: usize,
}

/// Whether calls crigate has no rule for are forwarded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodPolicy {
    /// Forward them to the runtime: the open choice.
    #[default]
    Forward,
    /// Refuse them with UNIMPLEMENTED: the strict choice.
    Deny,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes; is it the right file?")]
    TooLarge { path: PathBuf },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {source}")]
    Policy {
        path: PathBuf,
        #[source]
        source: crate::policy::model::Error,
    },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
}

// === impl Config ===

impl Config {
    /// Reads and validates the configuration file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not valid TOML, has an unknown key (named with its
    /// line), or has a value out of range.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let read = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let text = crate::files::read_bounded_text(path, MAX_CONFIG_BYTES)
            .map_err(read)?
            .ok_or_else(|| Error::TooLarge {
                path: path.to_owned(),
            })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`Config::load`], without the I/O.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, Error> {
        let file: file::File = toml::from_str(text).map_err(|source| Error::Parse {
            path: origin.to_owned(),
            source: Box::new(source),
        })?;
        let invalid = |key, reason: &str| Error::Invalid {
            path: origin.to_owned(),
            key,
            reason: reason.to_owned(),
        };
        let cri = file.cri;
        let socket_mode = u32::from_str_radix(&cri.socket_mode, 8)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .ok_or_else(|| {
                invalid(
                    "cri.socket_mode",
                    "expected octal permission bits such as \"0660\"",
                )
            })?;
        if socket_mode & 0o007 != 0 {
            return Err(invalid(
                "cri.socket_mode",
                "the CRI socket must not be open to other users: anyone who can connect can start containers as root",
            ));
        }
        if !cri.listen.is_absolute() {
            return Err(invalid("cri.listen", "must be an absolute path"));
        }
        if !cri.upstream.is_absolute() {
            return Err(invalid("cri.upstream", "must be an absolute path"));
        }
        if cri.listen == cri.upstream {
            return Err(invalid("cri.listen", "must differ from cri.upstream"));
        }
        if cri.max_concurrent_streams == 0 {
            return Err(invalid("cri.max_concurrent_streams", "must be at least 1"));
        }
        if cri.max_message_bytes < 1024 {
            return Err(invalid("cri.max_message_bytes", "must be at least 1024"));
        }
        // Each connection may hold a few requests of this size while they are decided.
        if cri.max_message_bytes > MAX_MESSAGE_BYTES_CEILING {
            return Err(invalid(
                "cri.max_message_bytes",
                "must be at most 268435456 (256 MiB), sixteen times kubelet's own limit",
            ));
        }
        if cri.socket_group.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(
                "cri.socket_group",
                "must not be empty; leave it out to keep the socket's group",
            ));
        }
        for (key, timeout) in [
            ("cri.connect_timeout", cri.connect_timeout),
            ("registry.connect_timeout", file.registry.connect_timeout),
            ("registry.request_timeout", file.registry.request_timeout),
            ("registry.body_timeout", file.registry.body_timeout),
        ] {
            if timeout.is_zero() {
                return Err(invalid(key, "must be more than zero"));
            }
        }
        for (key, timeout) in [
            ("cri.connect_timeout", cri.connect_timeout),
            ("cri.drain_timeout", cri.drain_timeout),
            ("registry.connect_timeout", file.registry.connect_timeout),
            ("registry.request_timeout", file.registry.request_timeout),
            ("registry.body_timeout", file.registry.body_timeout),
            ("verify.timeout", file.verify.timeout),
        ] {
            check_timeout(timeout).map_err(|reason| invalid(key, reason))?;
        }
        if file.cache.path.as_deref().is_some_and(|p| !p.is_absolute()) {
            return Err(invalid("cache.path", "must be an absolute path"));
        }
        if file.cache.max_entries == 0 {
            return Err(invalid("cache.max_entries", "must be at least 1"));
        }
        if file.audit.node.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(
                "audit.node",
                "must not be empty; leave it out for the host name",
            ));
        }
        if !file.audit.journal_socket.is_absolute() {
            return Err(invalid("audit.journal_socket", "must be an absolute path"));
        }
        if !file.audit.spool_dir.is_absolute() {
            return Err(invalid("audit.spool_dir", "must be an absolute path"));
        }
        if file.audit.spool_max_bytes < MIN_SPOOL_BYTES {
            return Err(invalid(
                "audit.spool_max_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if file.audit.aggregator.is_some() {
            for (key, value) in [
                ("audit.ca_file", &file.audit.ca_file),
                ("audit.cert_file", &file.audit.cert_file),
                ("audit.key_file", &file.audit.key_file),
            ] {
                if value.is_none() {
                    return Err(invalid(
                        key,
                        "required with audit.aggregator: the aggregator accepts nodes by client certificate",
                    ));
                }
            }
        }
        if file.verify.timeout.is_zero() {
            return Err(invalid("verify.timeout", "must be more than zero"));
        }
        // The structure and the verifier references are checked here; the fingerprints are
        // computed when the verifiers' files are read.
        policies_by_name(&file.policies, file.verifiers.keys()).map_err(|source| {
            Error::Policy {
                path: origin.to_owned(),
                source,
            }
        })?;
        for (name, verifier) in &file.verifiers {
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return Err(Error::Invalid {
                    path: origin.to_owned(),
                    key: "verifiers",
                    reason: format!("verifier name {name:?} must be letters, digits, '-' or '_'"),
                });
            }
            if let VerifierConfig::Cosign {
                keys, identities, ..
            } = verifier
            {
                if keys.is_empty() && identities.is_empty() {
                    return Err(Error::Invalid {
                        path: origin.to_owned(),
                        key: "verifiers",
                        reason: format!(
                            "verifier {name:?} trusts nothing: give keys or identities"
                        ),
                    });
                }
                for identity in identities {
                    if identity.subject.is_some() == identity.subject_regexp.is_some() {
                        return Err(Error::Invalid {
                            path: origin.to_owned(),
                            key: "verifiers",
                            reason: format!(
                                "verifier {name:?}: each identity needs exactly one of subject or subject_regexp"
                            ),
                        });
                    }
                    // As cosign requires `--certificate-oidc-issuer[-regexp]`: without one,
                    // the subject would be taken from any OIDC provider Fulcio trusts.
                    if identity.issuer.is_some() == identity.issuer_regexp.is_some() {
                        return Err(Error::Invalid {
                            path: origin.to_owned(),
                            key: "verifiers",
                            reason: format!(
                                "verifier {name:?}: each identity needs exactly one of issuer or \
                                 issuer_regexp (issuer_regexp = \".*\" accepts every issuer)"
                            ),
                        });
                    }
                }
            }
        }
        Ok(Self {
            cri: CriConfig {
                listen: cri.listen,
                upstream: cri.upstream,
                unknown_methods: cri.unknown_methods,
                other_services: cri.other_services,
                socket_mode,
                socket_group: cri.socket_group,
                connect_timeout: cri.connect_timeout,
                drain_timeout: cri.drain_timeout,
                max_concurrent_streams: cri.max_concurrent_streams,
                max_message_bytes: cri.max_message_bytes,
            },
            registry: file.registry,
            cache: file.cache,
            verify: file.verify,
            verifiers: file.verifiers,
            policies: file.policies,
            audit: file.audit,
            metrics: file.metrics,
        })
    }
}

/// The file's shape, as serde reads it. Defaults here are the documented ones.
mod file {
    use std::path::PathBuf;
    use std::time::Duration;

    use serde::Deserialize;

    use super::MethodPolicy;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct File {
        #[serde(default)]
        pub(super) cri: Cri,
        #[serde(default)]
        pub(super) registry: crate::registry::RegistryConfig,
        #[serde(default)]
        pub(super) cache: super::CacheSettings,
        #[serde(default)]
        pub(super) verify: super::VerifySettings,
        #[serde(default)]
        pub(super) verifiers: std::collections::BTreeMap<String, super::VerifierConfig>,
        #[serde(default)]
        pub(super) policies: Vec<crate::policy::model::PolicyConfig>,
        #[serde(default)]
        pub(super) audit: super::AuditSettings,
        #[serde(default)]
        pub(super) metrics: super::MetricsSettings,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub(super) struct Cri {
        pub(super) listen: PathBuf,
        pub(super) upstream: PathBuf,
        pub(super) unknown_methods: MethodPolicy,
        pub(super) other_services: MethodPolicy,
        pub(super) socket_mode: String,
        pub(super) socket_group: Option<String>,
        #[serde(with = "humantime_serde")]
        pub(super) connect_timeout: Duration,
        #[serde(with = "humantime_serde")]
        pub(super) drain_timeout: Duration,
        pub(super) max_concurrent_streams: u32,
        pub(super) max_message_bytes: usize,
    }

    impl Default for Cri {
        fn default() -> Self {
            Self {
                listen: PathBuf::from("/run/crigate/crigate.sock"),
                upstream: PathBuf::from("/run/containerd/containerd.sock"),
                unknown_methods: MethodPolicy::Forward,
                other_services: MethodPolicy::Deny,
                socket_mode: "0660".to_owned(),
                socket_group: None,
                connect_timeout: Duration::from_secs(2),
                drain_timeout: Duration::from_secs(10),
                // grpc-go (containerd, kubelet) sets no limit; hyper's default of 200 could
                // stall a busy kubelet, so the bound is generous.
                max_concurrent_streams: 1024,
                max_message_bytes: super::DEFAULT_MAX_MESSAGE_BYTES,
            }
        }
    }
}

/// `policies` over verifiers fingerprinted by their names alone: enough to check them and
/// to choose the policy of a namespace, not to key verdicts (whose fingerprints come from
/// the verifiers' trust material).
///
/// # Errors
///
/// The policies are not valid, or name a verifier not among `verifiers`.
pub fn policies_by_name<'a>(
    policies: &[PolicyConfig],
    verifiers: impl IntoIterator<Item = &'a String>,
) -> Result<Policies, crate::policy::model::Error> {
    let names: BTreeMap<String, Fingerprint> = verifiers
        .into_iter()
        .map(|name| (name.clone(), Fingerprint::of(name.as_bytes())))
        .collect();
    Policies::new(policies, &names)
}

#[cfg(test)]
mod tests;
