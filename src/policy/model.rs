//! Policies as the configuration states them (`[[policies]]`), validated, and the choice
//! of the policy that governs a namespace.
//!
//! ```toml
//! [[policies]]
//! name = "prod"
//! namespaces = ["prod", "prod-*"]     # exact names and globs; "*" is the default policy
//! mode = "enforce"                    # enforce | audit | off
//! verifiers = ["release", "notary"]   # names of [verifiers.<name>] sections
//! require = "any"                     # any | all of the verifiers
//! on_error = "deny"                   # deny | allow, for registry or verification errors
//! allowlist = [
//!   { pattern = "registry*.*.aliyuncs.com/acs/*" },
//!   { pattern = "registry.example/tools/*", namespace = "prod-tools" },
//! ]
//! ```
//!
//! **Selection.** An exact namespace name beats any glob; among globs the one with the
//! most literal characters wins (`prod-eu-*` over `prod-*` over `*`); a policy whose
//! only pattern is `*` is the default. Two policies claiming the same name or the same
//! glob, or globs equally specific that both match some namespace (`prod-*` and
//! `*-dev1`), are a configuration error, so the winner never depends on the order of the
//! file. A namespace no policy selects and no default covers has no policy: the daemon
//! denies it in enforce mode with that reason.
//!
//! **Namespace globs**: `*` matches any run of the characters a namespace name may hold
//! (lowercase letters, digits, `-`); everything else matches itself.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::allowlist::{Allowlist, Entry, NamePattern, PatternError};
use crate::verify::cache::Fingerprint;

/// How a policy acts on its decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny what the policy does not allow.
    #[default]
    Enforce,
    /// Allow everything; record what enforce would have done.
    Audit,
    /// Neither verify nor record (beyond the allow itself).
    Off,
}

/// What a registry or verification error means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail closed (the default).
    #[default]
    Deny,
    /// Fail open, as an operator may choose for a namespace; every such allow is recorded.
    Allow,
}

/// Whether one or all of a policy's verifiers must trust an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    #[default]
    Any,
    All,
}

/// A policy as written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub verifiers: Vec<String>,
    #[serde(default)]
    pub require: Require,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub allowlist: Vec<AllowlistEntryConfig>,
}

/// One allowlist entry as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistEntryConfig {
    pub pattern: String,
    pub namespace: Option<String>,
}

/// A validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub namespaces: Vec<NamespacePattern>,
    pub mode: Mode,
    pub verifiers: Vec<String>,
    pub require: Require,
    pub on_error: OnError,
    pub allowlist: Allowlist,
    /// The hash of this policy's effective content (its settings and the fingerprints of
    /// the verifiers it names), recorded with every decision it makes.
    pub fingerprint: Fingerprint,
}

/// The validated policies of a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policies {
    policies: Vec<Policy>,
    /// Exact namespace names -> policy index: an exact name beats every glob, so these
    /// answer without looking at the globs.
    exact: std::collections::HashMap<String, usize>,
}

/// A namespace name or glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespacePattern {
    source: String,
}

/// Why the policies cannot be used; each names the policy and the field.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("policies[{index}]: name {name:?} must be letters, digits, '-' or '_'")]
    BadName { index: usize, name: String },
    #[error("policy {0:?} is defined twice")]
    DuplicateName(String),
    #[error("policy {policy:?}: namespaces is empty")]
    NoNamespaces { policy: String },
    #[error("policy {policy:?}: namespace pattern {pattern:?} may hold only lowercase letters, digits, '-' and '*'")]
    BadNamespace { policy: String, pattern: String },
    #[error("namespace pattern {pattern:?} is claimed by policies {first:?} and {second:?}")]
    Overlap {
        pattern: String,
        first: String,
        second: String,
    },
    /// Each side is (pattern, policy).
    #[error(
        "namespace patterns {:?} (policy {:?}) and {:?} (policy {:?}) are equally specific and \
         both match {example:?}: which policy governs such a namespace would depend on the order \
         of the file; make one pattern more specific, or name the namespace",
        first.0, first.1, second.0, second.1
    )]
    Tie {
        first: Box<(String, String)>,
        second: Box<(String, String)>,
        example: String,
    },
    #[error("policy {policy:?}: verifier {verifier:?} is not defined in [verifiers]")]
    UnknownVerifier { policy: String, verifier: String },
    #[error("policy {policy:?}: mode {mode:?} needs at least one verifier")]
    NoVerifier { policy: String, mode: &'static str },
    #[error("policy {policy:?}: allowlist[{index}]: {source}")]
    Pattern {
        policy: String,
        index: usize,
        #[source]
        source: PatternError,
    },
}

// === impl Policies ===

impl Policies {
    /// Validates `configs` against the verifier names that exist. `verifier_fingerprints`
    /// gives each verifier's fingerprint, folded into the policies that name it.
    ///
    /// # Errors
    ///
    /// The first problem found, naming the policy and the field.
    pub fn new(
        configs: &[PolicyConfig],
        verifier_fingerprints: &BTreeMap<String, Fingerprint>,
    ) -> Result<Self, Error> {
        let mut names = BTreeSet::new();
        let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
        let mut policies = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            let name_ok = !config.name.is_empty()
                && config
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return Err(Error::BadName {
                    index,
                    name: config.name.clone(),
                });
            }
            if !names.insert(config.name.as_str()) {
                return Err(Error::DuplicateName(config.name.clone()));
            }
            if config.namespaces.is_empty() {
                return Err(Error::NoNamespaces {
                    policy: config.name.clone(),
                });
            }
            let mut namespaces = Vec::new();
            for pattern in &config.namespaces {
                let valid = !pattern.is_empty()
                    && pattern.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'*'
                    });
                if !valid {
                    return Err(Error::BadNamespace {
                        policy: config.name.clone(),
                        pattern: pattern.clone(),
                    });
                }
                if let Some(first) = claimed.insert(pattern, &config.name) {
                    return Err(Error::Overlap {
                        pattern: pattern.clone(),
                        first: first.to_owned(),
                        second: config.name.clone(),
                    });
                }
                namespaces.push(NamespacePattern {
                    source: pattern.clone(),
                });
            }
            for verifier in &config.verifiers {
                if !verifier_fingerprints.contains_key(verifier) {
                    return Err(Error::UnknownVerifier {
                        policy: config.name.clone(),
                        verifier: verifier.clone(),
                    });
                }
            }
            if config.mode != Mode::Off && config.verifiers.is_empty() {
                return Err(Error::NoVerifier {
                    policy: config.name.clone(),
                    mode: match config.mode {
                        Mode::Enforce => "enforce",
                        _ => "audit",
                    },
                });
            }
            let mut entries = Vec::new();
            for (i, entry) in config.allowlist.iter().enumerate() {
                let pattern: NamePattern =
                    entry.pattern.parse().map_err(|source| Error::Pattern {
                        policy: config.name.clone(),
                        index: i,
                        source,
                    })?;
                entries.push(Entry {
                    pattern,
                    namespace: entry.namespace.clone(),
                });
            }
            let fingerprint = fingerprint(config, verifier_fingerprints);
            policies.push(Policy {
                name: config.name.clone(),
                namespaces,
                mode: config.mode,
                verifiers: config.verifiers.clone(),
                require: config.require,
                on_error: config.on_error,
                allowlist: Allowlist::new(entries),
                fingerprint,
            });
        }
        tie(&policies)?;
        let mut exact = std::collections::HashMap::new();
        for (index, policy) in policies.iter().enumerate() {
            for pattern in policy.namespaces.iter().filter(|p| !p.source.contains('*')) {
                exact.insert(pattern.source.clone(), index);
            }
        }
        Ok(Self { policies, exact })
    }

    /// The policy governing `namespace` (module docs), or `None` when none does.
    pub fn select(&self, namespace: &str) -> Option<&Policy> {
        if let Some(policy) = self
            .exact
            .get(namespace)
            .and_then(|i| self.policies.get(*i))
        {
            return Some(policy);
        }
        let mut best: Option<(usize, &Policy)> = None;
        for policy in &self.policies {
            for pattern in &policy.namespaces {
                let Some(rank) = pattern.rank(namespace) else {
                    continue;
                };
                if best.is_none_or(|(r, _)| rank > r) {
                    best = Some((rank, policy));
                }
            }
        }
        best.map(|(_, policy)| policy)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter()
    }
}

// === impl NamespacePattern ===

impl NamespacePattern {
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// How specifically this pattern matches `namespace`, or `None` if it does not: an
    /// exact name ranks above every glob, a glob by its count of literal characters.
    fn rank(&self, namespace: &str) -> Option<usize> {
        if !self.source.contains('*') {
            return (self.source == namespace).then_some(usize::MAX);
        }
        glob_matches(self.source.as_bytes(), namespace.as_bytes())
            .then(|| self.source.bytes().filter(|b| *b != b'*').count())
    }
}

/// Refuses two globs of different policies that are equally specific and match a common
/// namespace: selection would then follow the order of the file.
fn tie(policies: &[Policy]) -> Result<(), Error> {
    let globs: Vec<(&str, &str)> = policies
        .iter()
        .flat_map(|policy| {
            policy
                .namespaces
                .iter()
                .filter(|p| p.source.contains('*'))
                .map(|p| (p.source.as_str(), policy.name.as_str()))
        })
        .collect();
    let literals = |glob: &str| glob.bytes().filter(|b| *b != b'*').count();
    for (i, &(first_pattern, first)) in globs.iter().enumerate() {
        for &(second_pattern, second) in globs.iter().skip(i + 1) {
            if first == second || literals(first_pattern) != literals(second_pattern) {
                continue;
            }
            if let Some(example) = common_match(first_pattern.as_bytes(), second_pattern.as_bytes())
            {
                return Err(Error::Tie {
                    first: Box::new((first_pattern.to_owned(), first.to_owned())),
                    second: Box::new((second_pattern.to_owned(), second.to_owned())),
                    example,
                });
            }
        }
    }
    Ok(())
}

/// A namespace name both globs match, if there is one: a search over pairs of positions
/// in the two globs, each step reading one character both accept (a `*` accepts any).
/// A name must start and end with a letter or a digit, as Kubernetes requires, so
/// `-*` and `*-` share none.
fn common_match(a: &[u8], b: &[u8]) -> Option<String> {
    // What a star reads where both globs are at one: any letter serves.
    const ANY: u8 = b'a';
    let alphanumeric = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    // Each state: the two positions, and whether the name read so far ends in a letter
    // or digit (an empty one does not, nor can it start with anything else).
    let mut seen = BTreeSet::new();
    let mut queue = std::collections::VecDeque::from([(0, 0, Vec::<u8>::new())]);
    while let Some((i, j, name)) = queue.pop_front() {
        let ends_well = name.last().copied().is_some_and(alphanumeric);
        if !seen.insert((i, j, name.is_empty(), ends_well)) {
            continue;
        }
        if i == a.len() && j == b.len() && ends_well {
            return String::from_utf8(name).ok();
        }
        let (x, y) = (a.get(i).copied(), b.get(j).copied());
        let mut step = |i: usize, j: usize, read: Option<u8>| {
            if read.is_some_and(|c| name.is_empty() && !alphanumeric(c)) {
                return;
            }
            let mut name = name.clone();
            name.extend(read);
            queue.push_back((i, j, name));
        };
        // A star that reads nothing more.
        if x == Some(b'*') {
            step(i + 1, j, None);
        }
        if y == Some(b'*') {
            step(i, j + 1, None);
        }
        match (x, y) {
            (Some(b'*'), Some(b'*')) if !ends_well => step(i, j, Some(ANY)),
            (Some(b'*'), Some(c)) if c != b'*' => step(i, j + 1, Some(c)),
            (Some(c), Some(b'*')) if c != b'*' => step(i + 1, j, Some(c)),
            (Some(c), Some(d)) if c == d && c != b'*' => step(i + 1, j + 1, Some(c)),
            _ => {}
        }
    }
    None
}

/// `*` matches any run of namespace characters; all else matches itself.
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let name_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    // reachable[j]: the pattern so far can end at name position j. Two buffers, swapped
    // per pattern character.
    let mut reachable = vec![false; name.len() + 1];
    let mut next = vec![false; name.len() + 1];
    if let Some(first) = reachable.first_mut() {
        *first = true;
    }
    for &p in pattern {
        next.iter_mut().for_each(|slot| *slot = false);
        if p == b'*' {
            let mut run = false;
            for (j, slot) in next.iter_mut().enumerate() {
                run = reachable.get(j).copied().unwrap_or(false)
                    || (run && j > 0 && name.get(j - 1).copied().is_some_and(name_char));
                *slot = run;
            }
        } else {
            for (j, &c) in name.iter().enumerate() {
                if c == p && reachable.get(j).copied().unwrap_or(false) {
                    if let Some(slot) = next.get_mut(j + 1) {
                        *slot = true;
                    }
                }
            }
        }
        std::mem::swap(&mut reachable, &mut next);
    }
    reachable.last().copied().unwrap_or(false)
}

/// SHA-256 over the policy's settings, in a fixed order, and its verifiers' fingerprints.
fn fingerprint(
    config: &PolicyConfig,
    verifier_fingerprints: &BTreeMap<String, Fingerprint>,
) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(
        format!(
            "{:?}|{:?}|{:?}|{:?}",
            config.name, config.mode, config.require, config.on_error
        )
        .as_bytes(),
    );
    for namespace in &config.namespaces {
        hasher.update(b"|ns:");
        hasher.update(namespace.as_bytes());
    }
    for entry in &config.allowlist {
        hasher.update(format!("|allow:{:?}:{:?}", entry.pattern, entry.namespace).as_bytes());
    }
    for verifier in &config.verifiers {
        hasher.update(b"|verifier:");
        hasher.update(verifier.as_bytes());
        if let Some(fingerprint) = verifier_fingerprints.get(verifier) {
            hasher.update(fingerprint.to_string().as_bytes());
        }
    }
    Fingerprint::new(hasher.finalize().into())
}

#[cfg(test)]
mod tests;
