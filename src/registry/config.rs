//! How the registry client connects: timeouts, limits, which hosts may be reached over
//! plain HTTP, extra trust roots and where stored credentials are.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Default time allowed for a TCP (and TLS) connection to a registry.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed from sending a request to receiving the response's headers.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed to read one response body, start to end.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of redirects followed for one request (blob downloads redirect once, to
/// storage; a chain longer than this is a loop or a misconfiguration).
pub const DEFAULT_MAX_REDIRECTS: usize = 5;
/// Default number of referrers API pages read for one subject (each page is bounded by
/// [`crate::oci::MAX_MANIFEST_BYTES`]).
pub const DEFAULT_MAX_REFERRER_PAGES: usize = 16;

/// Registry client settings. Every field has a default, and the defaults are the safe
/// choices: HTTPS with the system's roots only, no plain-HTTP hosts, no stored
/// credentials.
///
/// In TOML (durations as `humantime`, e.g. `"5s"`):
///
/// ```toml
/// connect_timeout = "5s"
/// request_timeout = "10s"
/// body_timeout = "30s"
/// max_redirects = 5
/// max_referrer_pages = 16
/// plain_http = ["127.0.0.1:5000"]
/// ca_file = "/etc/crigate/registry-ca.pem"
/// docker_config = "/var/lib/kubelet/config.json"
/// hosts_dir = "/etc/containerd/certs.d"
/// honour_skip_verify = false
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Time allowed to connect (TCP and TLS handshake). Default 5 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed from sending a request until the response's headers arrive, connection
    /// included. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time allowed to read one response body. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Redirects followed per request. Default 5.
    pub max_redirects: usize,
    /// Referrers API pages read per subject. Default 16.
    pub max_referrer_pages: usize,
    /// Registry hosts (`host[:port]`, as in image references) reached over plain HTTP.
    /// Every other host is HTTPS only. Default: none.
    pub plain_http: Vec<String>,
    /// A PEM file of CA certificates trusted for registries in addition to the system's
    /// roots. Default: none.
    pub ca_file: Option<PathBuf>,
    /// A Docker-style `config.json` whose `auths` supply credentials for registries the
    /// CRI request gave none for. Default: none.
    pub docker_config: Option<PathBuf>,
    /// containerd's registry hosts directory (the CRI plugin's `registry.config_path`,
    /// `:`-separated roots of `<host>/hosts.toml`): the mirrors each registry is reached
    /// through, asked in containerd's order before the registry itself. Read at start and
    /// on reload. Default: none (every registry is reached directly).
    pub hosts_dir: Option<String>,
    /// containerd's config file, for nodes whose CRI plugin names its registries there:
    /// its `registry.config_path` is read as `hosts_dir` is, or, without one, its older
    /// `registry.mirrors` and the `tls` of `registry.configs`; the `auth` of
    /// `registry.configs` supplies credentials after `docker_config`'s. Read at start and on
    /// reload. Not with `hosts_dir`. Default: none.
    pub containerd_config: Option<PathBuf>,
    /// Whether a host whose table in `hosts_dir` sets `skip_verify = true` (or whose
    /// `registry.configs` TLS in `containerd_config` sets `insecure_skip_verify = true`)
    /// is reached without checking its certificate, as containerd reaches it. Signatures
    /// are verified all the same, so what runs is still what was signed; what is given up
    /// is the secrecy of the credentials sent to that host and its token service. Default
    /// false: its certificate is checked, and a host whose certificate no trusted CA
    /// vouches for is unreachable.
    pub honour_skip_verify: bool,
}

// === impl RegistryConfig ===

impl RegistryConfig {
    /// What identifies the current contents of `hosts_dir` or `containerd_config` (and the
    /// hosts directory it names), to notice an edit (containerd reads them at each pull);
    /// `None` without either.
    pub fn hosts_stamp(&self) -> Option<super::HostsStamp> {
        match (&self.hosts_dir, &self.containerd_config) {
            (Some(roots), _) => Some(super::hosts::stamp(roots)),
            (None, Some(path)) => Some(super::hosts::stamp_containerd(path)),
            (None, None) => None,
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_referrer_pages: DEFAULT_MAX_REFERRER_PAGES,
            plain_http: Vec::new(),
            ca_file: None,
            docker_config: None,
            hosts_dir: None,
            containerd_config: None,
            honour_skip_verify: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_gives_the_defaults() {
        let config: RegistryConfig = toml::from_str("").unwrap();
        assert_eq!(config, RegistryConfig::default());
    }

    #[test]
    fn keys_parse_and_unknown_keys_are_refused() {
        let config: RegistryConfig = toml::from_str(
            "connect_timeout = \"1s\"\nrequest_timeout = \"2s\"\nbody_timeout = \"3s\"\n\
             max_redirects = 1\nmax_referrer_pages = 2\nplain_http = [\"127.0.0.1:5000\"]\n\
             ca_file = \"/ca.pem\"\ndocker_config = \"/config.json\"\n",
        )
        .unwrap();
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        assert_eq!(config.body_timeout, Duration::from_secs(3));
        assert_eq!(config.plain_http, vec!["127.0.0.1:5000".to_owned()]);
        assert!(toml::from_str::<RegistryConfig>("insecure = true").is_err());
    }
}
