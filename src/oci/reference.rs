//! Image references, `[domain/]path[:tag][@digest]`, parsed by the grammar of the
//! distribution project's `reference` package (`reference/reference.go`, "Grammar") with
//! Docker's normalisation on top (`reference/normalize.go`).
//!
//! Normalisation, applied once when a reference is built, so every `ImageRef` is in its
//! full form and two spellings of one image compare equal:
//!
//! - no domain: `docker.io` (the first component is a domain only when it holds a `.` or a
//!   `:`, is `localhost`, or has an uppercase letter, as Docker decides);
//! - `index.docker.io` becomes `docker.io`;
//! - a single-component path on `docker.io` gets the `library/` prefix (`nginx` is
//!   `docker.io/library/nginx`);
//! - no tag and no digest: tag `latest`. A reference with a digest keeps its tag, if it
//!   had one, for display only; the digest is what names the content.
//!
//! API calls for `docker.io` go to `registry-1.docker.io` ([`ImageRef::api_host`]).
//!
//! Narrower than the grammar on purpose: a digest must be one [`Digest`] accepts
//! (`sha256` or `sha512`, lowercase hex of the right length), and a port must fit 16 bits.
#![deny(clippy::indexing_slicing)]

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Digest, DigestError};

/// The longest name (domain and path) a reference may have (distribution `reference`
/// package, `NameTotalLengthMax`).
pub const MAX_NAME_LEN: usize = 255;
/// The longest tag: one leading character and up to 127 more (grammar, `tag`).
pub const MAX_TAG_LEN: usize = 128;
/// The domain used when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Docker Hub's legacy domain, normalised to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The host that serves the registry API for [`DEFAULT_DOMAIN`].
const DEFAULT_API_HOST: &str = "registry-1.docker.io";
/// The namespace of Docker Hub's official images.
const OFFICIAL_NAMESPACE: &str = "library";

/// A parsed, normalised image reference. Valid once built; see the module docs for the
/// normalisation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageRef {
    repo: Repository,
    tag: Option<Box<str>>,
    digest: Option<Digest>,
}

/// A repository: a registry domain and a path within it, `domain/path`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    domain: Box<str>,
    path: Box<str>,
}

/// Why a string is not an image reference.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image name {name:?} is {len} characters long; at most {MAX_NAME_LEN} are allowed")]
    NameTooLong { name: String, len: usize },
    #[error("registry domain {0:?} is not a host name, IPv4 or bracketed IPv6 address with an optional port")]
    InvalidDomain(String),
    #[error("repository {0:?} must be lowercase")]
    UppercaseRepository(String),
    #[error("repository {0:?} has an empty path component")]
    EmptyComponent(String),
    #[error("repository path component {0:?} is not lowercase letters and digits joined by '.', '_', '__' or '-'")]
    InvalidComponent(String),
    #[error("tag {0:?} is not 1 to 128 of [A-Za-z0-9_.-] starting with a letter, digit or '_'")]
    InvalidTag(String),
    #[error("digest in image reference is invalid")]
    InvalidDigest(#[source] DigestError),
}

// === impl ImageRef ===

impl ImageRef {
    /// The registry domain as normalised (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        self.repo.domain()
    }

    /// The host (and port) the registry API is served on: the domain, except
    /// `registry-1.docker.io` for `docker.io`.
    pub fn api_host(&self) -> &str {
        self.repo.api_host()
    }

    /// The repository path within the registry (`library/nginx`).
    pub fn repository(&self) -> &str {
        self.repo.path()
    }

    /// The registry and path together.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The tag, if the reference has one. A reference with neither tag nor digest was given
    /// `latest` when parsed.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The pinned form `domain/path@digest`, dropping the tag: the reference the decision
    /// binds to (architecture, decision 3).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            repo: self.repo.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// What names the manifest in the registry API: the digest if there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_string(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // Grammar: reference := name [ ":" tag ] [ "@" digest ]
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(
                    digest
                        .parse::<Digest>()
                        .map_err(ReferenceError::InvalidDigest)?,
                ),
            ),
            None => (s, None),
        };
        // The tag's ':' is the one after the last '/': a ':' before it is a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest
            .get(last_slash..)
            .and_then(|last| last.rfind(':'))
            .map(|i| i + last_slash)
        {
            Some(colon) => {
                let name = rest.get(..colon).unwrap_or_default();
                let tag = rest.get(colon + 1..).unwrap_or_default();
                (name, Some(tag))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag)?;
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let repo = Repository::parse_name(name)?;
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.into()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.into()),
        };
        Ok(Self { repo, tag, digest })
    }
}

impl TryFrom<String> for ImageRef {
    type Error = ReferenceError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ImageRef> for String {
    fn from(image: ImageRef) -> Self {
        image.to_string()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repo)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

// === impl Repository ===

impl Repository {
    /// The registry domain (`docker.io`, `127.0.0.1:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The path within the registry (`library/nginx`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The host (and port) the registry API is served on.
    pub fn api_host(&self) -> &str {
        if &*self.domain == DEFAULT_DOMAIN {
            DEFAULT_API_HOST
        } else {
            &self.domain
        }
    }

    /// Parses and normalises a name, `[domain/]path`.
    fn parse_name(name: &str) -> Result<Self, ReferenceError> {
        // normalize.go, splitDockerDomain: the first component is a domain when it holds
        // '.' or ':', is "localhost", or is not all lowercase.
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first, rest.to_owned())
            }
            _ => (DEFAULT_DOMAIN, name.to_owned()),
        };
        check_domain(domain)?;
        let domain = if domain == LEGACY_DEFAULT_DOMAIN {
            DEFAULT_DOMAIN
        } else {
            domain
        };
        check_path(&path)?;
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path
        };
        // reference.go: NameTotalLengthMax applies to the whole normalised name, domain
        // included (normalize.go parses `domain + "/" + remainder`).
        let len = domain.len() + 1 + path.len();
        if len > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong {
                name: format!("{domain}/{path}"),
                len,
            });
        }
        Ok(Self {
            domain: domain.into(),
            path: path.into(),
        })
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)
    }
}

impl FromStr for Repository {
    type Err = ReferenceError;

    /// Parses `[domain/]path` with the normalisation of [`ImageRef`] (no tag or digest).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        Self::parse_name(s)
    }
}

/// The repository part of a reference as written: without `@digest`, and without a
/// `:tag` in its last path component (a colon before the last `/` is a registry's port).
/// For the references signatures name, which need not parse as an [`ImageRef`].
pub fn repository_of(reference: &str) -> &str {
    let without_digest = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest
        .get(last_slash..)
        .and_then(|tail| tail.find(':'))
    {
        Some(colon) => without_digest
            .get(..last_slash + colon)
            .unwrap_or(without_digest),
        None => without_digest,
    }
}

/// Fuzz entry point: parses `data` as an image reference and, when it parses, checks that
/// printing and parsing again gives the same reference. Never panics on any input except
/// when that round trip breaks.
#[allow(clippy::panic)] // The fuzzer's oracle: a broken round trip is the finding.
pub fn fuzz_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(image) = text.parse::<ImageRef>() {
        let printed = image.to_string();
        let again = printed.parse::<ImageRef>();
        if again.as_ref() != Ok(&image) {
            panic!("{text:?} printed as {printed:?} parsed back as {again:?}");
        }
    }
}

/// Grammar: `tag := /[\w][\w.-]{0,127}/`.
fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut bytes = tag.bytes();
    let ok = tag.len() <= MAX_TAG_LEN
        && bytes.next().is_some_and(word)
        && bytes.all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::InvalidTag(tag.to_owned()))
    }
}

/// Grammar: `domain := host [":" port-number]`, `host := domain-name | IPv4address |
/// "[" IPv6address "]"`.
fn check_domain(domain: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::InvalidDomain(domain.to_owned());
    let (host, port) = if let Some(bracketed) = domain.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or_else(invalid)?;
        address.parse::<Ipv6Addr>().map_err(|_| invalid())?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        // domain-name := domain-component ("." domain-component)*, and
        // domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/.
        // An IPv4 address is a domain-name by this rule too.
        let component_ok = |c: &str| {
            !c.is_empty()
                && !c.starts_with('-')
                && !c.ends_with('-')
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !host.split('.').all(component_ok) {
            return Err(invalid());
        }
    }
    if let Some(port) = port {
        // port-number := /[0-9]+/; a port must also fit TCP's 16 bits.
        if port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err()
        {
            return Err(invalid());
        }
    }
    Ok(())
}

/// Grammar: `path := path-component ("/" path-component)*`, `path-component :=
/// alpha-numeric (separator alpha-numeric)*`, `alpha-numeric := /[a-z0-9]+/`,
/// `separator := /[_.]|__|[-]+/`.
fn check_path(path: &str) -> Result<(), ReferenceError> {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ReferenceError::UppercaseRepository(path.to_owned()));
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(ReferenceError::EmptyComponent(path.to_owned()));
        }
        if !path_component_ok(component) {
            return Err(ReferenceError::InvalidComponent(component.to_owned()));
        }
    }
    Ok(())
}

fn path_component_ok(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    let mut expect_alnum = true;
    while let Some(&b) = bytes.get(i) {
        if expect_alnum {
            // Each alpha-numeric run is at least one character.
            if !alnum(b) {
                return false;
            }
            while bytes.get(i).copied().is_some_and(alnum) {
                i += 1;
            }
            expect_alnum = false;
        } else {
            // A separator: '.', '_', '__', or one or more '-'.
            match b {
                b'.' => i += 1,
                b'_' => {
                    i += 1;
                    if bytes.get(i) == Some(&b'_') {
                        i += 1;
                    }
                }
                b'-' => {
                    while bytes.get(i) == Some(&b'-') {
                        i += 1;
                    }
                }
                _ => return false,
            }
            expect_alnum = true;
        }
    }
    // A component may not end in a separator.
    !expect_alnum
}

#[cfg(test)]
mod tests;
