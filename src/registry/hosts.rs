//! Where a registry is reached: the hosts containerd's registry host configuration
//! (`hosts.toml` under the CRI plugin's `config_path`, containerd `docs/hosts.md`) names
//! for it, in the order containerd tries them, so that crigate asks the mirrors the
//! runtime pulls through, with their capabilities, paths and headers.
//!
//! The layout read, as containerd's `remotes/docker/config` reads it:
//!
//! - Each root (`config_path` is a `:`-separated list) holds one directory per registry
//!   host as image references write it: `docker.io`, `127.0.0.1_5000_` or `127.0.0.1:5000`
//!   for a host with a port (the `_` form first), and `_default` for every host without a
//!   directory of its own. The first root with a matching directory is the one used.
//! - A directory's `hosts.toml` lists `[host."URL"]` tables, tried in file order, then the
//!   registry itself: the top-level `server`, or, without one, `https://<host>/v2`
//!   (`registry-1.docker.io` for `docker.io`). A directory without `hosts.toml` names the
//!   registry alone, with its `*.crt` files as CAs.
//! - A host URL without a scheme is HTTPS; its path has `/v2` appended unless it already
//!   ends in `/v2` or `override_path = true`. `capabilities` (`pull`, `resolve`, `push`)
//!   default to all three; `header` adds headers to every request to that host.
//!
//! - `ca` (a file or a list) and `client` (a file holding certificate and key, a list of
//!   them, or a list of `[certificate, key]` pairs), relative to the host directory, apply
//!   to that host alone: its certificate is checked against the system's roots, `[registry]
//!   ca_file` and its own `ca` files, and it is offered its `client` certificates. A
//!   directory without `hosts.toml` gives its `*.crt` files as CAs and each `*.cert` with
//!   the `*.key` of the same name (or alone, holding both) as a client certificate.
//!
//! `skip_verify = true` is recorded with the host's TLS files and honoured only when the
//! operator allows it (`[registry] honour_skip_verify`); otherwise the host's certificate
//! is verified like any other. Either way the client logs each such host at start.
#![deny(clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use crate::oci::Repository;

/// The file each host directory may hold.
pub const HOSTS_FILE: &str = "hosts.toml";
/// The directory used for registries without one of their own.
const DEFAULT_DIR: &str = "_default";
/// The largest `hosts.toml` read.
pub const MAX_HOSTS_FILE_BYTES: u64 = 1024 * 1024;

/// Why the hosts configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_HOSTS_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// What a host is asked for (containerd `HostCapabilities`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Content by digest: manifests, blobs, referrers.
    Pull,
    /// A tag resolved to a digest. containerd resolves tags only on hosts that can pull too.
    Resolve,
}

/// One host a registry is reached through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// `scheme://authority/path`: API paths (`<repository>/manifests/<ref>`) follow it.
    pub(super) prefix: String,
    /// `host[:port]`, as image references write it.
    pub(super) authority: String,
    pull: bool,
    resolve: bool,
    /// Sent with every request to this host.
    pub(super) headers: HeaderMap,
    /// The registry this host stands in for, sent as the `ns` query parameter as
    /// containerd sends it to a mirror; `None` for the registry itself.
    pub(super) namespace: Option<String>,
    /// The name credentials are looked up by: the registry's domain for the registry
    /// itself, the host's authority for a mirror.
    pub(super) credentials_key: String,
    /// Index of this host's own TLS files in [`HostsConfig::tls`]; `None`: the client's.
    pub(super) tls: Option<usize>,
    /// A first try over plain HTTP at a loopback registry no file gives a URL
    /// ([`loopback_http`]): when it finds the registry does not speak plain HTTP and the
    /// HTTPS host after it fails too, the HTTPS failure is the one reported.
    pub(super) probe: bool,
}

/// The TLS files of a host (containerd `hostConfig.caCerts`, `clientPairs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct HostTls {
    /// CA files trusted for this host, besides the system's roots and `[registry] ca_file`.
    pub(super) ca: Vec<PathBuf>,
    /// Client certificates offered to this host: a certificate file and its key file, or
    /// `None` when the key is in the certificate's file.
    pub(super) client: Vec<(PathBuf, Option<PathBuf>)>,
    /// The host's table asks that its certificate not be checked (`skip_verify`, or
    /// `insecure_skip_verify` in containerd's `registry.configs`).
    pub(super) skip_verify: bool,
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pull => "pull",
            Self::Resolve => "resolve",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// The hosts configuration of every root, read once.
#[derive(Debug, Default)]
pub struct HostsConfig {
    /// Per root, in order: directory name to what it says.
    roots: Vec<BTreeMap<String, Directory>>,
    /// The distinct TLS files hosts name, each host pointing at one by index.
    pub(super) tls: Vec<HostTls>,
    /// The index of each in [`HostsConfig::tls`], so that a file of many hosts is read
    /// without comparing each host's files with every other's.
    tls_index: HashMap<HostTls, usize>,
    /// Authorities some host names with `http://`.
    plain_http: BTreeSet<String>,
    /// The hosts whose table sets `skip_verify`, as `<file>: <host>`, for the client to log
    /// what it does with them.
    pub(super) skip_verify: Vec<String>,
    /// containerd's older `registry.mirrors`, used instead of the roots when its config
    /// file has no `config_path`.
    mirrors: Option<Mirrors>,
}

/// The endpoints of containerd's `registry.mirrors` (CRI plugin `registryEndpoints`).
#[derive(Debug, Default)]
struct Mirrors {
    /// Per registry as image references write it, `*` for every other: endpoint URLs with
    /// their scheme and a path (`/v2` when none was written).
    endpoints: BTreeMap<String, Vec<Url>>,
    /// The [`HostsConfig::tls`] index of each endpoint host with `configs."<host>".tls`.
    tls: BTreeMap<String, usize>,
}

/// One host directory: the hosts before the registry, then the registry's own entry.
#[derive(Clone, Debug, Default)]
struct Directory {
    mirrors: Vec<Entry>,
    server: Entry,
}

/// A host as a file gives it; `url: None` is the registry itself, named by the reference.
#[derive(Clone, Debug, Default)]
struct Entry {
    url: Option<Url>,
    pull: bool,
    resolve: bool,
    headers: HeaderMap,
    tls: Option<usize>,
}

/// `hosts.toml`. Keys containerd knows and crigate does not use are accepted (and logged
/// when they ask for something crigate does not do); others are ignored, as containerd
/// ignores them.
#[derive(Deserialize, Default)]
struct HostsFile {
    server: Option<String>,
    #[serde(flatten)]
    settings: Settings,
    #[serde(default)]
    host: BTreeMap<String, toml::Spanned<Settings>>,
}

#[derive(Deserialize, Default)]
struct Settings {
    capabilities: Option<Vec<String>>,
    ca: Option<OneOrMany>,
    client: Option<toml::Value>,
    skip_verify: Option<bool>,
    #[serde(default)]
    header: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    override_path: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// What identifies a version of a hosts directory, for noticing a change: the
/// modification time and size of each root, each host directory and each file in one.
#[derive(Debug, PartialEq, Eq)]
pub struct HostsStamp(Vec<(PathBuf, Option<(SystemTime, u64)>)>);

/// The [`HostsStamp`] of a `config_path` value. Reads directory metadata only.
pub fn stamp(config_path: &str) -> HostsStamp {
    let one = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    let sorted = |dir: &Path| {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        paths.sort();
        paths
    };
    let mut seen = Vec::new();
    for root in roots(config_path) {
        seen.push((root.to_owned(), one(root)));
        for dir in sorted(root).into_iter().filter(|path| path.is_dir()) {
            seen.push((dir.clone(), one(&dir)));
            for file in sorted(&dir) {
                let stamp = one(&file);
                seen.push((file, stamp));
            }
        }
    }
    HostsStamp(seen)
}

/// The [`HostsStamp`] of a containerd config file: the file's, and that of the hosts
/// directory its `config_path` names, if it can be read and names one.
pub fn stamp_containerd(path: &Path) -> HostsStamp {
    let meta = std::fs::metadata(path)
        .ok()
        .and_then(|meta| Some((meta.modified().ok()?, meta.len())));
    let mut seen = vec![(path.to_owned(), meta)];
    if let Ok(registry) = super::containerd::ContainerdRegistry::load(path) {
        seen.extend(stamp(&registry.config_path).0);
    }
    HostsStamp(seen)
}

/// The roots of a `config_path` value (`:`-separated, as containerd splits it).
fn roots(config_path: &str) -> impl Iterator<Item = &Path> {
    config_path
        .split(':')
        .filter(|root| !root.is_empty())
        .map(Path::new)
}

// === impl HostsConfig ===

impl HostsConfig {
    /// Reads the roots of a `config_path` value (`:`-separated). A root that does not
    /// exist holds nothing, as for containerd.
    ///
    /// # Errors
    ///
    /// A directory or file that cannot be read, a `hosts.toml` that does not parse or
    /// names an unknown capability, a bad URL or header.
    pub fn load(config_path: &str) -> Result<Self, HostsError> {
        let mut config = Self::default();
        for root in roots(config_path) {
            let entries = match std::fs::read_dir(root) {
                Ok(entries) => entries,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!(root = %root.display(), "no registry hosts directory");
                    config.roots.push(BTreeMap::new());
                    continue;
                }
                Err(source) => {
                    return Err(HostsError::Read {
                        path: root.to_owned(),
                        source,
                    })
                }
            };
            let mut directories = BTreeMap::new();
            for entry in entries {
                let entry = entry.map_err(|source| HostsError::Read {
                    path: root.to_owned(),
                    source,
                })?;
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let directory = config.load_directory(&path)?;
                directories.insert(name, directory);
            }
            config.roots.push(directories);
        }
        Ok(config)
    }

    /// The hosts of containerd's config file: its `config_path` roots when it has one (as
    /// [`HostsConfig::load`]), else its `registry.mirrors`, with the TLS files
    /// `registry.configs` names per endpoint host.
    ///
    /// # Errors
    ///
    /// As [`HostsConfig::load`]; an endpoint that is not a URL; a `tls` table with a
    /// certificate and no key or a key and no certificate.
    pub(super) fn from_containerd(
        path: &Path,
        registry: &super::containerd::ContainerdRegistry,
    ) -> Result<Self, HostsError> {
        if !registry.config_path.is_empty() {
            return Self::load(&registry.config_path);
        }
        let invalid = |reason: String| HostsError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut config = Self::default();
        let mut mirrors = Mirrors::default();
        for (registry_host, mirror) in &registry.mirrors {
            let mut urls = Vec::with_capacity(mirror.endpoint.len());
            for endpoint in &mirror.endpoint {
                let url = endpoint_url(endpoint).map_err(|reason| {
                    invalid(format!(
                        "mirrors.{registry_host:?}: endpoint {endpoint:?}: {reason}"
                    ))
                })?;
                if url.scheme() == "http" {
                    config.plain_http.insert(authority(&url));
                }
                urls.push(url);
            }
            mirrors.endpoints.insert(registry_host.clone(), urls);
        }
        for (host, settings) in &registry.configs {
            let Some(tls) = &settings.tls else { continue };
            let files = tls.files(host).map_err(invalid)?;
            if files.skip_verify {
                config.skip_verify.push(format!(
                    "{}: configs.{host:?}.tls.insecure_skip_verify",
                    path.display()
                ));
            }
            if let Some(index) = config.intern(files) {
                mirrors.tls.insert(host.clone(), index);
            }
        }
        config.mirrors = Some(mirrors);
        Ok(config)
    }

    /// Whether some host names `authority` with `http://`.
    pub(super) fn allows_plain_http(&self, authority: &str) -> bool {
        self.plain_http.contains(authority) || (self.mirrors.is_some() && is_local(authority))
    }

    /// The hosts `repo` is reached through, in the order to try them.
    /// `registry_scheme` is the scheme for the registry itself when no file names its URL.
    pub(super) fn hosts(&self, repo: &Repository, registry_scheme: Scheme) -> Vec<Host> {
        if let Some(mirrors) = &self.mirrors {
            return mirrors.hosts(repo);
        }
        let domain = repo.domain();
        let directory = self.directory(domain);
        let own = Entry::everything();
        let (mirrors, server) = match directory {
            Some(directory) => (directory.mirrors.as_slice(), &directory.server),
            None => (&[][..], &own),
        };
        let mut hosts: Vec<Host> = mirrors
            .iter()
            .chain(std::iter::once(server))
            .map(|entry| entry.host(repo, registry_scheme))
            .collect();
        if server.url.is_none()
            && registry_scheme == Scheme::Https
            && loopback_http(repo.api_host())
        {
            // Plain HTTP first, the usual scheme of a registry on the node itself; a TLS
            // port answers a plain request with an error at once.
            let mut probe = server.host(repo, Scheme::Http);
            probe.probe = true;
            hosts.insert(hosts.len() - 1, probe);
        }
        hosts
    }

    /// The directory of the first root that has one for `domain` (containerd
    /// `hostDirFromRoots`, `hostPaths`).
    fn directory(&self, domain: &str) -> Option<&Directory> {
        let underscored = domain
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .map(|(host, port)| format!("{host}_{port}_"));
        let names = underscored
            .iter()
            .map(String::as_str)
            .chain([domain, DEFAULT_DIR]);
        self.roots
            .iter()
            .find_map(|root| names.clone().find_map(|name| root.get(name)))
    }

    fn load_directory(&mut self, dir: &Path) -> Result<Directory, HostsError> {
        let file = dir.join(HOSTS_FILE);
        let text = match crate::files::read_bounded(&file, MAX_HOSTS_FILE_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(HostsError::TooLarge { path: file }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return self.load_cert_files(dir);
            }
            Err(source) => return Err(HostsError::Read { path: file, source }),
        };
        let text = String::from_utf8(text).map_err(|_| HostsError::Invalid {
            path: file.clone(),
            reason: "not UTF-8".to_owned(),
        })?;
        // containerd falls back to the certificate files when hosts.toml is empty.
        if text.trim().is_empty() {
            return self.load_cert_files(dir);
        }
        self.parse_directory(dir, &file, &text)
    }

    /// The directory `dir` whose `hosts.toml`, `file`, holds `text`.
    fn parse_directory(
        &mut self,
        dir: &Path,
        file: &Path,
        text: &str,
    ) -> Result<Directory, HostsError> {
        let invalid = |reason: String| HostsError::Invalid {
            path: file.to_owned(),
            reason,
        };
        let parsed: HostsFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut hosts: Vec<_> = parsed.host.into_iter().collect();
        // containerd sorts the host tables by their place in the file.
        hosts.sort_by_key(|(_, settings)| settings.span().start);
        let mut mirrors = Vec::with_capacity(hosts.len());
        for (name, settings) in hosts {
            let url = host_url(&name, settings.get_ref().override_path)
                .map_err(|reason| invalid(format!("host {name:?}: {reason}")))?;
            let entry = self
                .entry(dir, file, Some(url), settings.get_ref())
                .map_err(|reason| invalid(format!("host {name:?}: {reason}")))?;
            mirrors.push(entry);
        }
        let server = match &parsed.server {
            Some(server) => {
                let url = host_url(server, parsed.settings.override_path)
                    .map_err(|reason| invalid(format!("server {server:?}: {reason}")))?;
                self.entry(dir, file, Some(url), &parsed.settings)
                    .map_err(invalid)?
            }
            // Without `server` the registry itself comes last, able to do everything
            // whatever the top-level capabilities say (containerd `parseHostsFile`).
            None => {
                let mut entry = self
                    .entry(dir, file, None, &parsed.settings)
                    .map_err(invalid)?;
                entry.pull = true;
                entry.resolve = true;
                entry
            }
        };
        Ok(Directory { mirrors, server })
    }

    /// A directory without `hosts.toml`: the registry alone, its `*.crt` files as CAs and
    /// its `*.cert` files as client certificates, each with the `*.key` file of the same
    /// name when there is one (containerd `loadCertFiles`).
    fn load_cert_files(&mut self, dir: &Path) -> Result<Directory, HostsError> {
        let read = |source| HostsError::Read {
            path: dir.to_owned(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read)? {
            names.push(entry.map_err(read)?.path());
        }
        names.sort();
        let mut tls = HostTls::default();
        for path in names.into_iter().filter(|path| !path.is_dir()) {
            match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => tls.ca.push(path),
                Some("cert") => {
                    let key = path.with_extension("key");
                    let key = match std::fs::symlink_metadata(&key) {
                        Ok(_) => Some(key),
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
                        Err(source) => return Err(HostsError::Read { path: key, source }),
                    };
                    tls.client.push((path, key));
                }
                _ => {}
            }
        }
        Ok(Directory {
            mirrors: Vec::new(),
            server: Entry {
                tls: self.intern(tls),
                ..Entry::everything()
            },
        })
    }

    /// The index of `tls` in [`HostsConfig::tls`], added if new; `None` when it names
    /// no file.
    fn intern(&mut self, tls: HostTls) -> Option<usize> {
        if tls == HostTls::default() {
            return None;
        }
        let index = match self.tls_index.get(&tls) {
            Some(&index) => index,
            None => {
                let index = self.tls.len();
                self.tls.push(tls.clone());
                self.tls_index.insert(tls, index);
                index
            }
        };
        Some(index)
    }

    /// The entry for one host table, its TLS files interned and what is not applied logged.
    fn entry(
        &mut self,
        dir: &Path,
        file: &Path,
        url: Option<Url>,
        settings: &Settings,
    ) -> Result<Entry, String> {
        let (pull, resolve) = capabilities(settings.capabilities.as_deref())?;
        let mut headers = HeaderMap::new();
        for (name, values) in &settings.header {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            for value in values.as_slice() {
                let value = HeaderValue::from_str(value)
                    .map_err(|_| format!("header {name}: value {value:?} is not valid"))?;
                headers.append(name.clone(), value);
            }
        }
        let absolute = |name: &str| {
            let path = Path::new(name);
            if path.is_absolute() {
                path.to_owned()
            } else {
                dir.join(path)
            }
        };
        let tls = HostTls {
            ca: settings
                .ca
                .iter()
                .flat_map(OneOrMany::as_slice)
                .map(|name| absolute(name))
                .collect(),
            client: match &settings.client {
                Some(client) => client_files(client)?
                    .into_iter()
                    .map(|(cert, key)| (absolute(cert), key.map(absolute)))
                    .collect(),
                None => Vec::new(),
            },
            skip_verify: settings.skip_verify == Some(true),
        };
        if tls.skip_verify {
            let name = url.as_ref().map_or("the registry", Url::as_str);
            self.skip_verify.push(format!("{}: {name}", file.display()));
        }
        if let Some(url) = &url {
            if url.scheme() == "http" {
                self.plain_http.insert(authority(url));
            }
        }
        Ok(Entry {
            url,
            pull,
            resolve,
            headers,
            tls: self.intern(tls),
        })
    }
}

// === impl Mirrors ===

impl Mirrors {
    /// The registry's endpoints, or those of `*`, then the registry itself unless an
    /// endpoint is it: over HTTP when it is a loopback host, as containerd's CRI plugin
    /// reaches it (`defaultScheme`).
    fn hosts(&self, repo: &Repository) -> Vec<Host> {
        let domain = repo.domain();
        let endpoints = self
            .endpoints
            .get(domain)
            .or_else(|| self.endpoints.get("*"))
            .map_or(&[][..], Vec::as_slice);
        let mut urls = endpoints.to_vec();
        let own = repo.api_host();
        // containerd compares with the domain alone, and so asks Docker Hub twice when
        // `registry-1.docker.io` is one of its endpoints.
        if !endpoints
            .iter()
            .any(|url| authority(url) == domain || authority(url) == own)
        {
            let scheme = if is_local(own) { "http" } else { "https" };
            if let Ok(url) = Url::parse(&format!("{scheme}://{own}/v2")) {
                urls.push(url);
            }
        }
        urls.into_iter()
            .map(|url| {
                let tls = self.tls.get(&authority(&url)).copied();
                Entry {
                    url: Some(url),
                    tls,
                    ..Entry::everything()
                }
                .host(repo, Scheme::Https)
            })
            .collect()
    }
}

/// An endpoint of `registry.mirrors` as containerd's CRI plugin reads it
/// (`addDefaultScheme`, `registryHosts`): without a scheme, HTTP for a loopback host and
/// HTTPS for others; an empty path is `/v2`, any other is used as written.
fn endpoint_url(endpoint: &str) -> Result<Url, String> {
    let host = endpoint.split('/').next().unwrap_or_default();
    let mut url = base_url(endpoint, if is_local(host) { "http" } else { "https" })?;
    if url.path().is_empty() || url.path() == "/" {
        url.set_path("/v2");
    }
    Ok(url)
}

/// Whether a registry at `authority` that no file gives a URL is also asked over plain
/// HTTP: a loopback host on a port other than 443. containerd's `ConfigureHosts` reaches
/// such a registry over HTTPS, or over HTTP when it answers in plain HTTP; its CRI
/// plugin's `registry.mirrors` mode over HTTP only. Either way the runtime pulls from a
/// plain-HTTP registry on the node, and crigate must read the same registry. What is
/// read from it is judged by digests and signatures, never by the transport.
pub(super) fn loopback_http(authority: &str) -> bool {
    is_local(authority) && split_port(authority).1.is_some_and(|port| port != "443")
}

/// Whether `authority` (`host[:port]`) is `localhost` or a loopback address (containerd
/// `isLocalHost`).
fn is_local(authority: &str) -> bool {
    let host = split_port(authority).0;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `authority` (`host[:port]`, an IPv6 host in brackets) as its host and its port, if it
/// names one: the digits after the last `:`, unless that `:` is inside an IPv6 literal.
pub(super) fn split_port(authority: &str) -> (&str, Option<&str>) {
    match authority.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            (host, Some(port))
        }
        _ => (authority, None),
    }
}

// === impl Entry ===

impl Entry {
    /// The registry itself with every capability.
    fn everything() -> Self {
        Self {
            url: None,
            pull: true,
            resolve: true,
            headers: HeaderMap::new(),
            tls: None,
        }
    }

    fn host(&self, repo: &Repository, registry_scheme: Scheme) -> Host {
        let domain = repo.domain();
        match &self.url {
            Some(url) => {
                let authority = authority(url);
                let path = url.path().trim_end_matches('/');
                // containerd `isProxy`: any host but the registry's own is a mirror, and
                // docker.io's API host is docker.io's own.
                let is_registry = authority == domain || authority == repo.api_host();
                Host {
                    prefix: format!("{}://{authority}{path}", url.scheme()),
                    credentials_key: if is_registry {
                        domain.to_owned()
                    } else {
                        authority.clone()
                    },
                    namespace: (!is_registry).then(|| domain.to_owned()),
                    authority,
                    pull: self.pull,
                    resolve: self.resolve,
                    headers: self.headers.clone(),
                    tls: self.tls,
                    probe: false,
                }
            }
            None => {
                let authority = repo.api_host().to_owned();
                let scheme_text = match registry_scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                };
                Host {
                    prefix: format!("{scheme_text}://{authority}/v2"),
                    authority,
                    pull: self.pull,
                    resolve: self.resolve,
                    headers: self.headers.clone(),
                    namespace: None,
                    credentials_key: domain.to_owned(),
                    tls: self.tls,
                    probe: false,
                }
            }
        }
    }
}

// === impl Host ===

impl Host {
    /// Whether this host is asked for `capability`.
    pub fn can(&self, capability: Capability) -> bool {
        match capability {
            Capability::Pull => self.pull,
            Capability::Resolve => self.pull && self.resolve,
        }
    }
}

impl OneOrMany {
    fn as_slice(&self) -> &[String] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

/// `(pull, resolve)` of a `capabilities` list, read as containerd's `parseHostConfig`
/// reads it (`core/remotes/docker/config/hosts.go`): names in any case, and all
/// capabilities when the list is absent or empty. `push` is known and unused (crigate
/// never pushes); so is `referrers`, which newer containerd releases know: crigate asks
/// every host that may pull for referrers.
fn capabilities(names: Option<&[String]>) -> Result<(bool, bool), String> {
    let names = names.unwrap_or_default();
    if names.is_empty() {
        return Ok((true, true));
    }
    let (mut pull, mut resolve) = (false, false);
    for name in names {
        match name.to_ascii_lowercase().as_str() {
            "pull" => pull = true,
            "resolve" => resolve = true,
            "push" | "referrers" => {}
            _ => return Err(format!("unknown capability {name:?}")),
        }
    }
    Ok((pull, resolve))
}

/// The `(certificate, key)` files of a `client` value: a file holding both, a list of
/// such files, or a list of `[certificate, key]` pairs (containerd `parseHostConfig`).
fn client_files(value: &toml::Value) -> Result<Vec<(&str, Option<&str>)>, String> {
    const EXPECTED: &str =
        "client must be a file, a list of files, or a list of [certificate, key] pairs";
    match value {
        toml::Value::String(both) => Ok(vec![(both.as_str(), None)]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(both) => Ok((both.as_str(), None)),
                toml::Value::Array(pair) => match pair.as_slice() {
                    [toml::Value::String(cert), toml::Value::String(key)] => {
                        Ok((cert.as_str(), Some(key.as_str())))
                    }
                    _ => Err(format!("{EXPECTED}, not {item}")),
                },
                other => Err(format!("{EXPECTED}, not {other}")),
            })
            .collect(),
        other => Err(format!("{EXPECTED}, not {other}")),
    }
}

/// A host URL as containerd forms it (`parseHostConfig`): HTTPS when no scheme is given,
/// the path cleaned, `/v2` appended unless it already ends in `/v2` or `override_path`.
fn host_url(text: &str, override_path: bool) -> Result<Url, String> {
    let mut url = base_url(text, "https")?;
    let path = clean_path(url.path());
    let path = if override_path || path.ends_with("/v2") {
        path
    } else {
        format!("{}/v2", path.trim_end_matches('/'))
    };
    url.set_path(&path);
    Ok(url)
}

/// `text` as an http or https URL with a host and nothing but a path after it, `scheme`
/// added when it has none.
fn base_url(text: &str, scheme: &str) -> Result<Url, String> {
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("{scheme}://{text}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| e.to_string())?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("scheme {other:?} is neither http nor https")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("a host URL has no query, fragment or credentials".to_owned());
    }
    Ok(url)
}

/// Go's `path.Clean` for an absolute URL path: `.` and empty segments dropped, `..`
/// removing the one before it.
fn clean_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    if segments.is_empty() {
        String::new()
    } else {
        format!("/{}", segments.join("/"))
    }
}

/// `host[:port]` of a URL, as image references write it (IPv6 in brackets).
pub(super) fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Fuzz entry point: reads `data` as the `hosts.toml` of a registry's directory and lists
/// the hosts an image of it is pulled through. Must return for any input, never panic.
pub fn fuzz_hosts_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = Path::new("/etc/containerd/certs.d/registry.example:5000");
    let mut config = HostsConfig::default();
    let Ok(directory) = config.parse_directory(dir, &dir.join(HOSTS_FILE), text) else {
        return;
    };
    config.roots.push(BTreeMap::from([(
        "registry.example:5000".to_owned(),
        directory,
    )]));
    if let Ok(repo) = "registry.example:5000/team/app".parse::<Repository>() {
        for scheme in [Scheme::Https, Scheme::Http] {
            for host in config.hosts(&repo, scheme) {
                let _ = host.can(Capability::Resolve);
            }
        }
    }
}

#[cfg(test)]
mod tests;
