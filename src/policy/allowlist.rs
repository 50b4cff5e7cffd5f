//! Allowlists with the semantics of kritis `AdmissionAllowlist` `namePattern`s, as
//! Alibaba Cloud's kritis-validation-hook documents them:
//!
//! - a pattern without `*` matches exactly: `nginx:v0.1.0` matches only `nginx:v0.1.0`;
//! - a `*` at the end matches any characters except `/`: `a.com/nginx*` matches
//!   `a.com/nginx:v0.1.0` but not `a.com/nginx/test:v0.1.0`;
//! - a `*` anywhere else matches letters, digits, `-` and `_` only:
//!   `registry-vpc.cn-*.aliyuncs.com/acs/pause:3.2` matches the hangzhou and beijing
//!   registries;
//! - an entry with a namespace applies only in that namespace.
//!
//! **Normalisation.** Images are matched in the forms people write them, so that an
//! entry does not depend on how a pod spec spelled the image: the full form crigate
//! normalises to (`docker.io/library/nginx:v0.1.0`), the familiar Docker Hub form
//! (`nginx:v0.1.0`, and `org/app:1` for `docker.io/org/app:1`), and, for a reference
//! with both a tag and a digest, each of those with the digest alone. Not with the tag
//! alone: the runtime fetches the digest and ignores the tag, so `app:v1` allowlisted must
//! not admit `app:v1@sha256:<anything>` (with immutable tags, `app:v1` names one image),
//! nor `app:release-*` admit `app:release-1@sha256:<anything>`: a pattern with `*` is
//! matched on the forms without the tag only. One without `*` that names both the tag
//! and the digest matches them as written.
//! A pattern without `*` is itself normalised when it parses as a reference, so
//! `nginx:v0.1.0`, `docker.io/nginx:v0.1.0` and `docker.io/library/nginx:v0.1.0` are the
//! same entry. A pattern matches the image if it matches any form.
//!
//! Matching is dynamic programming over (pattern position, name position): linear in
//! the product of their lengths, with no backtracking blow-up whatever the pattern.
#![deny(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::oci::ImageRef;

/// The longest pattern accepted; image names are at most 255 characters plus tag or
/// digest, so anything longer cannot be meant.
pub const MAX_PATTERN_LEN: usize = 512;

/// A kritis `namePattern`, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    source: String,
    parts: Vec<Part>,
    /// For a pattern without `*` that parses as an image reference: its normalised form.
    exact: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(char),
    /// `*` not at the end: `[A-Za-z0-9_-]*`.
    NameChars,
    /// `*` at the end: `[^/]*`.
    NotSlash,
}

/// Why a pattern is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("empty namePattern")]
    Empty,
    #[error("namePattern is {0} characters, over the {MAX_PATTERN_LEN}-character limit")]
    TooLong(usize),
    #[error("namePattern {0:?} contains whitespace or a control character")]
    BadCharacter(String),
}

/// One allowlist entry: a pattern, optionally limited to one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub pattern: NamePattern,
    pub namespace: Option<String>,
}

/// An allowlist: the entries of one or more `AdmissionAllowlist` resources, indexed so
/// that a lookup costs the same whatever the number of entries: patterns without `*` by
/// their normalised form, the others by the literal text before their first `*` (a name
/// can only match a pattern it starts with that text of).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
    /// Normalised form (or the text as written) of each pattern without `*` -> entry
    /// indexes.
    exact: HashMap<String, Vec<usize>>,
    /// Literal prefix of each pattern with `*` -> entry indexes.
    prefixed: HashMap<String, Vec<usize>>,
    /// The lengths of those prefixes: the only prefixes of a name worth looking up.
    prefix_lens: Vec<usize>,
}

// === impl NamePattern ===

impl NamePattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether this pattern matches `name` exactly as given (no normalisation).
    pub fn matches_str(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        // reachable[j]: the pattern prefix processed so far can end at name position j.
        let mut reachable = vec![false; name.len() + 1];
        if let Some(first) = reachable.first_mut() {
            *first = true;
        }
        for part in &self.parts {
            let mut next = vec![false; name.len() + 1];
            match part {
                Part::Literal(c) => {
                    for (j, ch) in name.iter().enumerate() {
                        if reachable.get(j).copied().unwrap_or(false) && ch == c {
                            if let Some(slot) = next.get_mut(j + 1) {
                                *slot = true;
                            }
                        }
                    }
                }
                Part::NameChars | Part::NotSlash => {
                    let allowed = |c: char| match part {
                        Part::NameChars => c.is_ascii_alphanumeric() || c == '-' || c == '_',
                        _ => c != '/',
                    };
                    let mut run = false;
                    for j in 0..=name.len() {
                        // A star extends a run of allowed characters from any reachable start.
                        run = reachable.get(j).copied().unwrap_or(false)
                            || (run && j > 0 && name.get(j - 1).copied().is_some_and(allowed));
                        if run {
                            if let Some(slot) = next.get_mut(j) {
                                *slot = true;
                            }
                        }
                    }
                }
            }
            reachable = next;
        }
        reachable.last().copied().unwrap_or(false)
    }

    /// Whether this pattern matches `image` in any of its forms (module docs).
    pub fn matches(&self, image: &ImageRef, as_requested: Option<&str>) -> bool {
        if let Some(exact) = &self.exact {
            let full = image.to_string();
            if *exact == full || forms(image).iter().any(|f| f == exact) {
                return true;
            }
        }
        match (image.tag(), image.digest()) {
            // Fetched by its digest, the tag ignored: a `*` is matched on the forms
            // without the tag only, so that `app:release-*` does not admit
            // `app:release-1@sha256:<anything>` (module docs).
            (Some(_), Some(digest)) => format!("{}@{digest}", image.repo())
                .parse::<ImageRef>()
                .is_ok_and(|untagged| forms(&untagged).iter().any(|f| self.matches_str(f))),
            _ => {
                as_requested.is_some_and(|r| self.matches_str(r))
                    || forms(image).iter().any(|f| self.matches_str(f))
            }
        }
    }
}

impl FromStr for NamePattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        let len = s.chars().count();
        if len > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong(len));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PatternError::BadCharacter(s.to_owned()));
        }
        let chars: Vec<char> = s.chars().collect();
        let parts = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| match c {
                '*' if i + 1 == chars.len() => Part::NotSlash,
                '*' => Part::NameChars,
                c => Part::Literal(c),
            })
            .collect();
        let exact = if s.contains('*') {
            None
        } else {
            s.parse::<ImageRef>().ok().map(|r| r.to_string())
        };
        Ok(Self {
            source: s.to_owned(),
            parts,
            exact,
        })
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

// === impl Allowlist ===

impl Allowlist {
    pub fn new(entries: Vec<Entry>) -> Self {
        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        let mut prefixed: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let source = entry.pattern.as_str();
            match source.find('*') {
                None => {
                    exact.entry(source.to_owned()).or_default().push(index);
                    if let Some(normalised) = &entry.pattern.exact {
                        if normalised != source {
                            exact.entry(normalised.clone()).or_default().push(index);
                        }
                    }
                }
                Some(star) => prefixed
                    .entry(source.get(..star).unwrap_or_default().to_owned())
                    .or_default()
                    .push(index),
            }
        }
        let mut prefix_lens: Vec<usize> = prefixed.keys().map(String::len).collect();
        prefix_lens.sort_unstable();
        prefix_lens.dedup();
        Self {
            entries,
            exact,
            prefixed,
            prefix_lens,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The first entry (in the order given) that exempts `image` in `namespace`. Only
    /// the entries the index names as candidates are matched.
    pub fn find(
        &self,
        image: &ImageRef,
        as_requested: Option<&str>,
        namespace: Option<&str>,
    ) -> Option<&Entry> {
        if self.entries.is_empty() {
            return None;
        }
        let mut names = forms(image);
        names.extend(as_requested.map(str::to_owned));
        let mut candidates: Vec<usize> = Vec::new();
        for name in &names {
            if let Some(found) = self.exact.get(name) {
                candidates.extend(found);
            }
            // Every prefix of the name as long as some pattern's, the empty one included
            // (`get` refuses a length inside a character).
            for &end in self
                .prefix_lens
                .iter()
                .take_while(|&&end| end <= name.len())
            {
                if let Some(found) = name.get(..end).and_then(|prefix| self.prefixed.get(prefix)) {
                    candidates.extend(found);
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter_map(|index| self.entries.get(index))
            .find(|entry| {
                let in_scope = match (&entry.namespace, namespace) {
                    (None, _) => true,
                    (Some(limited), Some(ns)) => limited == ns,
                    (Some(_), None) => false,
                };
                in_scope && entry.pattern.matches(image, as_requested)
            })
    }
}

/// The forms an image is matched in (module docs).
fn forms(image: &ImageRef) -> Vec<String> {
    let mut names = vec![image.to_string()];
    if let (Some(_), Some(digest)) = (image.tag(), image.digest()) {
        names.push(format!("{}@{digest}", image.repo()));
    }
    // Docker's familiar form (distribution/reference `FamiliarName`): `docker.io/` goes,
    // and `library/` too, but only from a one-component path: `docker.io/library/a/b` is
    // not `a/b`, which is `docker.io/a/b`.
    let familiar: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_prefix("docker.io/"))
        .map(|n| match n.strip_prefix("library/") {
            Some(rest) if !rest.split(['@', ':']).next().unwrap_or(rest).contains('/') => {
                rest.to_owned()
            }
            _ => n.to_owned(),
        })
        .collect();
    names.extend(familiar);
    names
}

#[cfg(test)]
mod tests;
