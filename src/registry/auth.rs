//! Registry credentials and the token flow: where credentials come from (the CRI
//! `PullImageRequest.auth`, a Docker `config.json`), how a `WWW-Authenticate` challenge is
//! read (RFC 7235 section 4.1; distribution token authentication spec, "How to
//! authenticate"), and the cache of bearer tokens.
#![deny(clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::hosts::split_port;
use super::Error;

/// The largest Docker `config.json` read: a credentials file is a few kilobytes.
pub const MAX_DOCKER_CONFIG_BYTES: u64 = 1024 * 1024;
/// The largest token endpoint response read: tokens are JWTs of a few kilobytes.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 1024 * 1024;
/// Token lifetime when the token endpoint gives none (token spec, "Token Response Fields":
/// `expires_in` defaults to 60 seconds).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a token is cached, whatever `expires_in` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Tokens are dropped this long before they expire, so none expires in flight.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// Tokens cached at most; past this, expired ones are dropped, then all.
const MAX_CACHED_TOKENS: usize = 1024;

/// A secret string (password, token): `Debug` prints `[redacted]`, there is no `Display`
/// or `Serialize`, and the memory is zeroed on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

/// How to authenticate to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials (public images, anonymous tokens).
    #[default]
    Anonymous,
    /// A user name and password, sent as HTTP Basic or to the token endpoint.
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token exchanged at the token endpoint (token spec, "OAuth2
    /// Token"); CRI `identity_token`, config.json `identitytoken`.
    IdentityToken(Secret),
    /// A bearer token sent to the registry as is; CRI `registry_token`.
    RegistryToken(Secret),
}

/// The `auth` fields of a CRI `PullImageRequest` (`AuthConfig`), borrowed. Empty strings
/// mean absent, as in the protobuf.
#[derive(Clone, Copy, Default)]
pub struct CriAuth<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub auth: &'a str,
    pub server_address: &'a str,
    pub identity_token: &'a str,
    pub registry_token: &'a str,
}

/// The credentials of a CRI request, and the registry host they are for when the request
/// names one (`AuthConfig.server_address`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriCredentials {
    pub credentials: Credentials,
    /// `host[:port]` of the server address; `None` when the request gave none, and the
    /// credentials go to every host the image is fetched from (a mirror included).
    pub host: Option<String>,
}

/// A `WWW-Authenticate` challenge crigate can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`
    Basic,
    /// `Bearer realm=...,service=...,scope=...` (token spec, "How to authenticate").
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Bearer tokens by (registry, scope, credentials), until they expire.
#[derive(Default)]
pub(super) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    pub(super) registry: String,
    pub(super) scope: String,
    /// SHA-256 of the credentials, so a token fetched with one user's credentials is never
    /// used for another's request; the credentials themselves are not kept here.
    pub(super) credentials: [u8; 32],
}

struct CachedToken {
    token: Secret,
    expires: Instant,
}

/// Credentials from a Docker `config.json` (and containerd's `registry.configs`), looked
/// up as kubelet's credential keyring looks up a pull secret's keys (kubelet
/// `pkg/credentialprovider/keyring.go`): a key names a host, which may hold `*` and `?`
/// globs one label at a time (`*.azurecr.io`), a port, and a path prefix
/// (`registry.example/team-a`); an image matches a key whose host matches its registry's,
/// whose port is its port, and whose path is a prefix of its repository path. Of several
/// matches the most specific key answers (kubelet tries them in reverse lexicographic
/// order). Entries with no credentials in them (what `docker login` leaves in `auths`
/// when a `credsStore` or `credHelpers` program holds the secret) are not kept.
#[derive(Clone, Default)]
pub(super) struct DockerAuths {
    /// By normalized key; the most specific is the last (kubelet's reverse
    /// lexicographic order, read backwards). A map, so that adding a key is not a walk
    /// over those already there: a `config.json` within its size bound holds tens of
    /// thousands of keys.
    entries: BTreeMap<String, AuthEntry>,
}

#[derive(Clone)]
struct AuthEntry {
    /// The normalized key, `host[:port][/path]`: what the order is taken on.
    key: String,
    /// Host labels, each possibly a glob.
    labels: Vec<String>,
    port: Option<String>,
    /// The path prefix, without its leading `/`.
    path: String,
    credentials: Credentials,
}

/// A token endpoint's answer (token spec, "Token Response Fields"; OAuth2 answers use
/// `access_token`).
#[derive(Deserialize)]
pub(super) struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

// === impl Secret ===

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

// === impl CriCredentials ===

impl CriCredentials {
    /// The credentials of a CRI `AuthConfig` ([`Credentials::from_cri`]) and the host its
    /// `server_address` names, as containerd's `ParseAuth` reads it: the host of the
    /// address parsed as a URL, so an address without a scheme names no host and its
    /// credentials go nowhere.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCredentials`] when `auth` is not base64 of `user:password` or the
    /// server address does not parse.
    pub fn from_cri(auth: CriAuth<'_>) -> Result<Self, Error> {
        let credentials = Credentials::from_cri(auth)?;
        let address = auth.server_address;
        let host = if address.is_empty() {
            None
        } else if address.contains("://") || address.starts_with("//") {
            let absolute = if address.starts_with("//") {
                format!("https:{address}")
            } else {
                address.to_owned()
            };
            let url = url::Url::parse(&absolute).map_err(|_| Error::InvalidCredentials {
                reason: "server_address is not a URL",
            })?;
            Some(super::hosts::authority(&url))
        } else {
            Some(String::new())
        };
        Ok(Self { credentials, host })
    }

    /// What is sent to `authority`: the credentials, or none when they are for another
    /// host. Host names compare without regard to case (RFC 4343: DNS names do), ports
    /// exactly: the server address was lowercased as a URL holds it, while `authority`
    /// keeps the letters of the image reference (`MyReg.Example:5000/app`).
    pub(super) fn for_host(&self, authority: &str) -> Credentials {
        match &self.host {
            Some(host) if !same_authority(host, authority) => Credentials::Anonymous,
            _ => self.credentials.clone(),
        }
    }

    /// A hash naming these credentials and their host.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.credentials.fingerprint());
        match &self.host {
            Some(host) => {
                hash.update(b"host\0");
                hash.update(host.as_bytes());
            }
            None => hash.update(b"any host"),
        }
        hash.finalize().into()
    }
}

impl From<Credentials> for CriCredentials {
    fn from(credentials: Credentials) -> Self {
        Self {
            credentials,
            host: None,
        }
    }
}

// === impl Credentials ===

impl Credentials {
    /// Credentials from a CRI `AuthConfig`, in containerd's order of precedence
    /// (`ParseAuth` in containerd's CRI plugin): `username`/`password`, then
    /// `identity_token`, then `auth` (base64 of `user:password`), then `registry_token`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCredentials`] when `auth` is not base64 of `user:password`.
    pub fn from_cri(auth: CriAuth<'_>) -> Result<Self, Error> {
        if !auth.username.is_empty() {
            return Ok(Self::Basic {
                username: auth.username.to_owned(),
                password: Secret::new(auth.password),
            });
        }
        if !auth.identity_token.is_empty() {
            return Ok(Self::IdentityToken(Secret::new(auth.identity_token)));
        }
        if !auth.auth.is_empty() {
            return decode_basic(auth.auth);
        }
        if !auth.registry_token.is_empty() {
            return Ok(Self::RegistryToken(Secret::new(auth.registry_token)));
        }
        Ok(Self::Anonymous)
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous)
    }

    /// A hash naming these credentials in the token cache.
    pub(crate) fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        match self {
            Self::Anonymous => hash.update(b"anonymous"),
            Self::Basic { username, password } => {
                hash.update(b"basic\0");
                hash.update(username.as_bytes());
                hash.update(b"\0");
                hash.update(password.expose().as_bytes());
            }
            Self::IdentityToken(token) => {
                hash.update(b"identity\0");
                hash.update(token.expose().as_bytes());
            }
            Self::RegistryToken(token) => {
                hash.update(b"registry\0");
                hash.update(token.expose().as_bytes());
            }
        }
        hash.finalize().into()
    }

    /// The `Authorization` value for HTTP Basic, when these are basic credentials.
    pub(super) fn basic_header(&self) -> Option<Secret> {
        match self {
            Self::Basic { username, password } => {
                let raw = Zeroizing::new(format!("{username}:{}", password.expose()));
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
                Some(Secret::new(format!("Basic {encoded}")))
            }
            Self::Anonymous | Self::IdentityToken(_) | Self::RegistryToken(_) => None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[redacted]")
                .finish(),
            Self::IdentityToken(_) => f.write_str("IdentityToken([redacted])"),
            Self::RegistryToken(_) => f.write_str("RegistryToken([redacted])"),
        }
    }
}

/// Whether `host[:port]` `a` and `b` name the same host: the host without regard to
/// ASCII case, the port as written.
fn same_authority(a: &str, b: &str) -> bool {
    let ((a_host, a_port), (b_host, b_port)) = (split_port(a), split_port(b));
    a_host.eq_ignore_ascii_case(b_host) && a_port == b_port
}

/// `user:password` from base64 (the `auth` field of CRI and of `config.json`). Line
/// breaks anywhere in it are skipped, as Go's `base64.StdEncoding`, which containerd and
/// kubelet decode it with, skips them (a value wrapped over lines is read); other
/// whitespace is not. The `=` padding may be left out, as kubelet also reads it with
/// `RawStdEncoding`.
fn decode_basic(auth: &str) -> Result<Credentials, Error> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
    const PADDING_OPTIONAL: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact = Zeroizing::new(
        auth.chars()
            .filter(|c| !matches!(c, '\r' | '\n'))
            .collect::<String>(),
    );
    let decoded = Zeroizing::new(PADDING_OPTIONAL.decode(compact.as_bytes()).map_err(|_| {
        Error::InvalidCredentials {
            reason: "auth is not base64",
        }
    })?);
    let text = std::str::from_utf8(&decoded).map_err(|_| Error::InvalidCredentials {
        reason: "auth is not UTF-8",
    })?;
    let (username, password) = text.split_once(':').ok_or(Error::InvalidCredentials {
        reason: "auth is not user:password",
    })?;
    Ok(Credentials::Basic {
        username: username.to_owned(),
        password: Secret::new(password),
    })
}

// === impl Challenge ===

impl Challenge {
    /// Parses the first challenge of a `WWW-Authenticate` value: `Bearer` or `Basic`, then
    /// `name=value` parameters separated by commas, values a token or a quoted string
    /// (RFC 7235 section 2.1, "auth-param"); another challenge after it is left.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] when the syntax is broken or a Bearer challenge has no realm;
    /// [`Error::UnsupportedAuth`] for another scheme.
    pub fn parse(header: &str) -> Result<Self, Error> {
        let malformed = |reason| Error::Malformed {
            what: "WWW-Authenticate header".to_owned(),
            reason,
        };
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") && !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::UnsupportedAuth {
                scheme: scheme.chars().take(32).collect(),
            });
        }
        let params = parse_auth_params(rest).map_err(malformed)?;
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        if scheme.eq_ignore_ascii_case("basic") {
            return Ok(Self::Basic);
        }
        Ok(Self::Bearer {
            realm: param("realm")
                .ok_or_else(|| malformed("bearer challenge has no realm".to_owned()))?,
            service: param("service"),
            scope: param("scope"),
        })
    }
}

/// `name=value` pairs, comma separated; values are tokens or quoted strings with `\`
/// escapes.
fn parse_auth_params(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut params = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(params);
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',' && !c.is_whitespace()) {
            name.push(c);
        }
        let spaced = chars.next_if(|c| c.is_whitespace()).is_some();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek() != Some(&'=') {
            // A token, a space and no `=`: the scheme of the next challenge in the same
            // header (RFC 7235 section 4.1 allows several); this one ends here, as
            // containerd's parser ends it.
            if spaced && !name.is_empty() && chars.peek().is_some_and(|c| *c != ',') {
                return Ok(params);
            }
            return Err(format!("parameter {name:?} has no value"));
        }
        chars.next();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err("unterminated quoted string".to_owned()),
                    },
                    Some(c) => value.push(c),
                    None => return Err("unterminated quoted string".to_owned()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                value.push(c);
            }
        }
        if name.is_empty() {
            return Err("parameter with an empty name".to_owned());
        }
        params.push((name, value));
    }
}

// === impl TokenCache ===

impl TokenCache {
    /// The cached token for `key`, if it has not expired.
    pub(super) fn get(&self, key: &TokenKey) -> Option<Secret> {
        let tokens = self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens
            .get(key)
            .filter(|cached| cached.expires > Instant::now())
            .map(|cached| cached.token.clone())
    }

    /// Caches `token` for `key` for `lifetime`, less a margin, at most an hour.
    pub(super) fn insert(&self, key: TokenKey, token: Secret, lifetime: Duration) {
        let lifetime = lifetime
            .min(MAX_TOKEN_LIFETIME)
            .saturating_sub(TOKEN_EXPIRY_MARGIN);
        if lifetime.is_zero() {
            return;
        }
        let now = Instant::now();
        let Some(expires) = now.checked_add(lifetime) else {
            return;
        };
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if tokens.len() >= MAX_CACHED_TOKENS {
            tokens.retain(|_, cached| cached.expires > now);
            if tokens.len() >= MAX_CACHED_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(key, CachedToken { token, expires });
    }

    /// Forgets the token for `key` (the registry refused it).
    pub(super) fn remove(&self, key: &TokenKey) {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.remove(key);
    }
}

// === impl TokenResponse ===

impl TokenResponse {
    /// The token and how long it may be used.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] when the body is not JSON or holds no token.
    pub(super) fn parse(body: &[u8]) -> Result<(Secret, Duration), Error> {
        let malformed = |reason: String| Error::Malformed {
            what: "token response".to_owned(),
            reason,
        };
        let response: TokenResponse =
            serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
        // Token spec, "Token Response Fields": `token`, with `access_token` as its OAuth2
        // alias; either may be present. With both, `access_token` is the one used, as
        // containerd (`remotes/docker/auth` `FetchToken`) and go-containerregistry take it.
        let token = response
            .access_token
            .filter(|t| !t.is_empty())
            .or(response.token.filter(|t| !t.is_empty()))
            .ok_or_else(|| malformed("no token or access_token".to_owned()))?;
        let lifetime = response
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok((Secret::new(token), lifetime))
    }
}

// === impl DockerAuths ===

impl DockerAuths {
    /// Reads the `auths` of a Docker `config.json`.
    ///
    /// # Errors
    ///
    /// [`Error::DockerConfig`] when the file cannot be read, is larger than
    /// [`MAX_DOCKER_CONFIG_BYTES`], or is not JSON of that shape. An entry whose `auth`
    /// cannot be read is ignored, with a warning.
    pub(super) fn load(path: &Path) -> Result<Self, Error> {
        let fail = |reason: String| Error::DockerConfig {
            path: path.to_owned(),
            reason,
        };
        let bytes = crate::files::read_bounded(path, MAX_DOCKER_CONFIG_BYTES)
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail(format!("larger than {MAX_DOCKER_CONFIG_BYTES} bytes")))?;
        Self::parse(&bytes).map_err(fail)
    }

    fn parse(bytes: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            auths: BTreeMap<String, ConfigEntry>,
            #[serde(default, rename = "credsStore")]
            creds_store: Option<String>,
            #[serde(default, rename = "credHelpers")]
            cred_helpers: BTreeMap<String, String>,
        }
        let file: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if file.creds_store.is_some() || !file.cred_helpers.is_empty() {
            tracing::warn!(
                creds_store = ?file.creds_store,
                cred_helpers = ?file.cred_helpers.keys().collect::<Vec<_>>(),
                "the docker config names credential helper programs, which crigate does not run: \
                 registries whose secrets only they hold are asked anonymously"
            );
        }
        let mut auths = Self::default();
        for (key, entry) in file.auths {
            // docker's client: an `identitytoken` is the refresh token to use, whatever
            // `auth` holds; else `auth` (base64 `user:password`); else the plain fields.
            let credentials = if !entry.identitytoken.is_empty() {
                Ok(Credentials::IdentityToken(Secret::new(entry.identitytoken)))
            } else if !entry.auth.is_empty() {
                decode_basic(&entry.auth)
            } else {
                Credentials::from_cri(CriAuth {
                    username: &entry.username,
                    password: &entry.password,
                    registry_token: &entry.registrytoken,
                    ..CriAuth::default()
                })
            };
            // One entry that cannot be read costs its own credentials, not the others':
            // kubelet, too, goes on without a pull secret it cannot read. Its registry is
            // then asked anonymously.
            let credentials = match credentials {
                Ok(credentials) => credentials,
                Err(error) => {
                    tracing::warn!(key = %key, %error,
                        "a docker config entry that cannot be read is ignored");
                    continue;
                }
            };
            auths.add_missing(&key, credentials);
        }
        Ok(auths)
    }

    /// Adds `credentials` for `key` (a host, or a `config.json` style key), unless there
    /// are some for that key already; credentials that are none are not added.
    pub(super) fn add_missing(&mut self, key: &str, credentials: Credentials) {
        if credentials.is_anonymous() {
            return;
        }
        let Some(entry) = AuthEntry::new(key, credentials) else {
            tracing::warn!(key, "a docker config key that names no registry is ignored");
            return;
        };
        self.entries.entry(entry.key.clone()).or_insert(entry);
    }

    /// The credentials for the repository `path` in `registry` (a reference's domain,
    /// `host[:port]`), if some key matches.
    pub(super) fn credentials(&self, registry: &str, path: &str) -> Option<&Credentials> {
        let registry = normalize_host(registry);
        let (host, port) = split_port(&registry);
        let labels: Vec<&str> = host.split('.').collect();
        // Reverse lexicographic, as kubelet orders its keys: a longer key sharing a
        // prefix comes first.
        self.entries
            .values()
            .rev()
            .find(|e| e.matches(&labels, port, path))
            .map(|e| &e.credentials)
    }
}

/// An entry of a `config.json`'s `auths`. Its fields are matched as Go's
/// `encoding/json` matches them, and so kubelet and docker read them: without regard to
/// case (`Auth`, `Username`, `IdentityToken`), the last of two spellings winning, a
/// `null` leaving a field as it was; other fields (`email`, `serveraddress`) are skipped.
#[derive(Default)]
struct ConfigEntry {
    auth: String,
    username: String,
    password: String,
    identitytoken: String,
    registrytoken: String,
}

// === impl ConfigEntry ===

impl<'de> Deserialize<'de> for ConfigEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = ConfigEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a docker config auths entry (an object)")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ConfigEntry, A::Error> {
                let mut entry = ConfigEntry::default();
                while let Some(name) = map.next_key::<String>()? {
                    let field = match name.to_ascii_lowercase().as_str() {
                        "auth" => &mut entry.auth,
                        "username" => &mut entry.username,
                        "password" => &mut entry.password,
                        "identitytoken" => &mut entry.identitytoken,
                        "registrytoken" => &mut entry.registrytoken,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    if let Some(value) = map.next_value::<Option<String>>()? {
                        *field = value;
                    }
                }
                Ok(entry)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

// === impl AuthEntry ===

impl AuthEntry {
    /// Reads a key: the scheme, a trailing `/` and a leading API version path dropped,
    /// Docker Hub's names (`https://index.docker.io/v1/`) read as `docker.io`.
    fn new(key: &str, credentials: Credentials) -> Option<Self> {
        let bare = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key)
            .trim_end_matches('/');
        let (authority, path) = bare.split_once('/').unwrap_or((bare, ""));
        let authority = normalize_host(authority);
        // A key's `/v1/` or `/v2/` names the registry API, not a repository path (kubelet
        // reads `registry.example/v2/team` as `registry.example/team`, as docker's
        // `ResolveAuthConfig` does).
        let path = match path {
            "v1" | "v2" => "",
            _ => path
                .strip_prefix("v1/")
                .or_else(|| path.strip_prefix("v2/"))
                .unwrap_or(path),
        };
        if authority.is_empty() {
            return None;
        }
        let (host, port) = split_port(&authority);
        let key = if path.is_empty() {
            authority.clone()
        } else {
            format!("{authority}/{path}")
        };
        Some(Self {
            key,
            labels: host.split('.').map(str::to_owned).collect(),
            port: port.map(str::to_owned),
            path: path.to_owned(),
            credentials,
        })
    }

    /// kubelet's `URLsMatch`: as many labels, each matching its glob; the same port; the
    /// key's path a prefix of the repository's.
    fn matches(&self, labels: &[&str], port: Option<&str>, path: &str) -> bool {
        self.labels.len() == labels.len()
            && self
                .labels
                .iter()
                .zip(labels)
                .all(|(glob, label)| glob_matches(glob, label))
            && self.port.as_deref() == port
            && path.starts_with(&self.path)
    }
}

/// Docker Hub's registry names read as `docker.io`, lowercased as hosts compare.
fn normalize_host(authority: &str) -> String {
    let authority = authority.to_ascii_lowercase();
    match authority.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => authority,
    }
}

/// A shell glob over one host label: `*` any run of characters, `?` one character, the
/// rest itself (Go's `filepath.Match`, which kubelet uses, without character classes).
fn glob_matches(glob: &str, text: &str) -> bool {
    let (glob, text) = (glob.as_bytes(), text.as_bytes());
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    g = sg + 1;
                    t = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    glob.get(g..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// Fuzz entry point: reads `data` as `WWW-Authenticate` values, one a line, each alone
/// and all as the headers of one 401 answer. Must return for any input, never panic.
pub fn fuzz_challenge(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Challenge::parse(text);
    let mut headers = http::HeaderMap::new();
    for line in text.lines() {
        let _ = Challenge::parse(line);
        if let Ok(value) = http::HeaderValue::from_str(line) {
            headers.append(http::header::WWW_AUTHENTICATE, value);
        }
    }
    let _ = super::client::fuzz_challenge(&headers);
}

/// Fuzz entry point: reads `data` as a token endpoint's answer and caches what it
/// gives. Must return for any input, never panic.
pub fn fuzz_token_response(data: &[u8]) {
    if let Ok((token, lifetime)) = TokenResponse::parse(data) {
        let cache = TokenCache::default();
        let key = TokenKey {
            registry: "registry.example".to_owned(),
            scope: "repository:app:pull".to_owned(),
            credentials: Credentials::Anonymous.fingerprint(),
        };
        cache.insert(key.clone(), token, lifetime);
        let _ = cache.get(&key);
    }
}

/// Fuzz entry point: reads `data` as a Docker `config.json` and looks up credentials for
/// a few registries and repositories in what it gives; also reads it as the base64
/// `auth` of a CRI request. Must return for any input, never panic.
pub fn fuzz_docker_config(data: &[u8]) {
    if let Ok(auths) = DockerAuths::parse(data) {
        for (registry, path) in [
            ("docker.io", "library/alpine"),
            ("registry.example:5000", "team-a/app"),
            ("ghcr.io", "org/app"),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com", "app"),
            ("[::1]:5000", "app"),
        ] {
            let _ = auths.credentials(registry, path);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Credentials::from_cri(CriAuth {
            auth: text,
            ..CriAuth::default()
        });
    }
}

#[cfg(test)]
mod tests;
