//! Notary Project trust policy documents, version 1.0 (trust store and trust policy
//! spec, "Trust Policy"), as `trustpolicy.json` / `trustpolicy.oci.json` hold them.
//!
//! A [`TrustPolicyDocument`] exists only once every rule of the spec holds (and the
//! rules notation-go enforces where the spec is silent); each refusal names the policy
//! statement and the field.
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::oci::reference::repository_of;

/// Largest trust policy document read. Real documents are a few KiB.
pub const MAX_TRUST_POLICY_BYTES: usize = 1024 * 1024;
/// Most statements in one document.
pub const MAX_TRUST_POLICIES: usize = 1000;

/// The X.520 attribute short names an `x509.subject` identity may use (the names Go's
/// `pkix.Name.String` prints, which is what notation-go matches against).
const DN_ATTRIBUTES: &[&str] = &[
    "C",
    "ST",
    "L",
    "O",
    "OU",
    "CN",
    "SERIALNUMBER",
    "STREET",
    "POSTALCODE",
];

/// A validated trust policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPolicyDocument {
    policies: Vec<TrustPolicy>,
}

/// One trust policy statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustPolicy {
    pub name: String,
    pub scopes: RegistryScopes,
    pub level: VerificationLevel,
    pub verify_timestamp: TimestampOption,
    pub trust_stores: Vec<StoreRef>,
    pub identities: TrustedIdentities,
}

/// Which artifacts a statement applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryScopes {
    /// `["*"]`: every artifact without a statement of its own.
    Global,
    /// Fully qualified `registry/repository` names.
    Repositories(Vec<String>),
}

/// A verification level with its overrides applied: what happens when each check fails.
/// Integrity is always enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerificationLevel {
    pub name: LevelName,
    pub authenticity: Action,
    pub authentic_timestamp: Action,
    pub expiry: Action,
    pub revocation: Action,
}

/// The predefined levels (trust policy spec, "Signature Verification details").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelName {
    Strict,
    Permissive,
    Audit,
    Skip,
}

/// What a failed check does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The failure rejects the signature.
    Enforce,
    /// The failure is recorded and verification goes on.
    Log,
    /// The check is not run.
    Skip,
}

/// The checks a level governs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Integrity,
    Authenticity,
    AuthenticTimestamp,
    Expiry,
    Revocation,
}

/// `signatureVerification.verifyTimestamp` (notation-go): when to verify the timestamp
/// countersignature of a `notary.x509` signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampOption {
    /// Always (the default).
    Always,
    /// Only once a certificate of the signing chain has expired.
    AfterCertExpiry,
}

/// A named trust store, `{type}:{name}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreRef {
    pub kind: StoreKind,
    pub name: String,
}

/// The trust store types (trust store spec: `x509/ca`, `x509/signingAuthority`,
/// `x509/tsa`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreKind {
    Ca,
    SigningAuthority,
    Tsa,
}

/// Who may sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedIdentities {
    /// `["*"]`: any signing certificate that chains to the stores.
    Any,
    /// `x509.subject:` identities; a certificate matches if its subject has every
    /// attribute of one of them.
    Subjects(Vec<DistinguishedName>),
}

/// A distinguished name from an `x509.subject:` identity: attribute short names
/// (upper case) and unescaped values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistinguishedName {
    raw: String,
    attributes: Vec<(String, String)>,
}

/// Why a trust policy document is refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("trust policy document is {0} bytes, over the limit of {MAX_TRUST_POLICY_BYTES}")]
    TooLarge(usize),
    #[error("trust policy document is not valid JSON for version 1.0: {0}")]
    Json(#[source] serde_json::Error),
    #[error("trust policy document: {field} is missing")]
    MissingDocumentField { field: &'static str },
    #[error("trust policy document: version {0:?} is not supported (1.0 is)")]
    UnsupportedVersion(String),
    #[error("trust policy document: trustPolicies is empty")]
    NoPolicies,
    #[error("trust policy document has {0} statements, over the limit of {MAX_TRUST_POLICIES}")]
    TooManyPolicies(usize),
    #[error("trust policy statement #{index}: name is missing or empty")]
    MissingName { index: usize },
    #[error("trust policy statement {policy:?}: {field} is missing")]
    MissingField { policy: String, field: &'static str },
    #[error("trust policy statement name {0:?} is used more than once")]
    DuplicateName(String),
    #[error("trust policy statement {policy:?}: {field} value {value:?} is invalid: {reason}")]
    InvalidValue {
        policy: String,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("registry scope {0:?} appears more than once in the trust policy statements")]
    ScopeInMultiplePolicies(String),
}

// === impl TrustPolicyDocument ===

impl TrustPolicyDocument {
    /// Parses and validates a trust policy document.
    ///
    /// # Errors
    ///
    /// The document is over [`MAX_TRUST_POLICY_BYTES`], not JSON of the 1.0 shape
    /// (unknown fields included), or breaks a rule of the trust policy spec.
    pub fn parse(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_TRUST_POLICY_BYTES {
            return Err(PolicyError::TooLarge(bytes.len()));
        }
        let raw: RawDocument = serde_json::from_slice(bytes).map_err(PolicyError::Json)?;
        // Trust policy spec, "Trust Policy Properties": "version ... REQUIRED ... The
        // supported value is 1.0."
        match raw.version.as_deref() {
            Some("1.0") => {}
            Some(other) => return Err(PolicyError::UnsupportedVersion(other.to_owned())),
            None => return Err(PolicyError::MissingDocumentField { field: "version" }),
        }
        let statements = raw
            .trust_policies
            .ok_or(PolicyError::MissingDocumentField {
                field: "trustPolicies",
            })?;
        if statements.is_empty() {
            return Err(PolicyError::NoPolicies);
        }
        if statements.len() > MAX_TRUST_POLICIES {
            return Err(PolicyError::TooManyPolicies(statements.len()));
        }
        let mut policies: Vec<TrustPolicy> = Vec::with_capacity(statements.len());
        for (index, statement) in statements.into_iter().enumerate() {
            let policy = TrustPolicy::from_raw(index, statement)?;
            // notation-go: "statement names must be unique".
            if policies.iter().any(|p| p.name == policy.name) {
                return Err(PolicyError::DuplicateName(policy.name));
            }
            // Trust policy spec, "Registry Scopes Constraints": "There can only be one
            // trust policy that uses a global scope"; notation-go: "one registry scope
            // value can only be associated with one statement".
            let scopes = policy.scope_values();
            for (i, scope) in scopes.iter().enumerate() {
                // Named twice in one statement, or in an earlier one, in any spelling
                // that names the same repository.
                let same = |other: &&str| same_repository(other, scope);
                if scopes.iter().take(i).any(same)
                    || policies.iter().any(|p| p.scope_values().iter().any(same))
                {
                    return Err(PolicyError::ScopeInMultiplePolicies((*scope).to_owned()));
                }
            }
            policies.push(policy);
        }
        Ok(Self { policies })
    }

    pub fn policies(&self) -> &[TrustPolicy] {
        &self.policies
    }

    /// The statement for an artifact's repository (`registry/repository`; a tag or
    /// digest suffix is ignored). Trust policy spec, "Selecting a trust policy based on
    /// artifact URI": an exact scope match first, else the global statement, else none.
    ///
    /// A match is on the repository, not on how the pod spelled it: the registry's name
    /// in any letter case, with or without `:443`, and Docker Hub by any of its names
    /// select the same statement, as they fetch the same content. notation itself
    /// compares the strings; there the signer names the image, here the pod's author
    /// does, and a spelling of their choosing must not pass the repository's own
    /// statement over for the global one.
    pub fn select(&self, reference: &str) -> Option<&TrustPolicy> {
        let repository = repository_of(reference);
        self.policies
            .iter()
            .find(|p| matches!(&p.scopes, RegistryScopes::Repositories(scopes) if scopes.iter().any(|s| same_repository(s, repository))))
            .or_else(|| self.policies.iter().find(|p| p.scopes == RegistryScopes::Global))
    }
}

// === impl TrustPolicy ===

impl TrustPolicy {
    fn from_raw(index: usize, raw: RawPolicy) -> Result<Self, PolicyError> {
        let name = match raw.name {
            Some(name) if !name.is_empty() => name,
            _ => return Err(PolicyError::MissingName { index }),
        };
        let invalid =
            |field: &'static str, value: &str, reason: &'static str| PolicyError::InvalidValue {
                policy: name.clone(),
                field,
                value: value.to_owned(),
                reason,
            };
        let missing = |field: &'static str| PolicyError::MissingField {
            policy: name.clone(),
            field,
        };

        let verification = raw
            .signature_verification
            .ok_or_else(|| missing("signatureVerification"))?;
        let level_name = verification
            .level
            .as_deref()
            .ok_or_else(|| missing("signatureVerification.level"))?;
        let mut level = VerificationLevel::named(level_name).ok_or_else(|| {
            invalid(
                "signatureVerification.level",
                level_name,
                "must be strict, permissive, audit or skip",
            )
        })?;
        let overrides = verification.override_.unwrap_or_default();
        // Trust policy spec, "Custom Verification Level": "A skip level cannot be
        // customized."
        if level.name == LevelName::Skip && !overrides.is_empty() {
            return Err(invalid(
                "signatureVerification.override",
                "",
                "the skip level cannot be customized",
            ));
        }
        for (check, action) in &overrides {
            let action_value = match action.as_str() {
                "enforce" => Action::Enforce,
                "log" => Action::Log,
                "skip" => Action::Skip,
                _ => {
                    return Err(invalid(
                        "signatureVerification.override",
                        action,
                        "action must be enforce, log or skip",
                    ))
                }
            };
            // "integrity validation cannot be overriden"; authenticity, authenticTimestamp
            // and expiry take enforce or log; revocation also takes skip.
            let slot = match check.as_str() {
                "integrity" => {
                    return Err(invalid(
                        "signatureVerification.override",
                        check,
                        "integrity cannot be overridden",
                    ))
                }
                "authenticity" => &mut level.authenticity,
                "authenticTimestamp" => &mut level.authentic_timestamp,
                "expiry" => &mut level.expiry,
                "revocation" => &mut level.revocation,
                _ => {
                    return Err(invalid(
                        "signatureVerification.override",
                        check,
                        "unknown check",
                    ))
                }
            };
            if action_value == Action::Skip && check != "revocation" {
                return Err(invalid(
                    "signatureVerification.override",
                    check,
                    "only revocation can be skipped",
                ));
            }
            *slot = action_value;
        }
        let verify_timestamp = match verification.verify_timestamp.as_deref() {
            None | Some("always") => TimestampOption::Always,
            Some("afterCertExpiry") => TimestampOption::AfterCertExpiry,
            Some(other) => {
                return Err(invalid(
                    "signatureVerification.verifyTimestamp",
                    other,
                    "must be always or afterCertExpiry",
                ));
            }
        };

        // Trust policy spec, "Registry Scopes Constraints".
        let scope_values = raw
            .registry_scopes
            .ok_or_else(|| missing("registryScopes"))?;
        let scopes = match scope_values.as_slice() {
            [] => {
                return Err(invalid(
                    "registryScopes",
                    "[]",
                    "must contain at least one value",
                ))
            }
            [only] if only == "*" => RegistryScopes::Global,
            values => {
                for scope in values {
                    // "A single value with one asterisk character *" and "The repository
                    // URI MUST NOT contain the asterisk character".
                    if scope.contains('*') {
                        return Err(invalid(
                            "registryScopes",
                            scope,
                            "the wildcard must be the only scope",
                        ));
                    }
                    if !is_repository_uri(scope) {
                        return Err(invalid(
                            "registryScopes",
                            scope,
                            "not a fully qualified registry/repository",
                        ));
                    }
                }
                RegistryScopes::Repositories(values.to_vec())
            }
        };

        let trust_stores = raw.trust_stores.unwrap_or_default();
        let identities = raw.trusted_identities.unwrap_or_default();
        if level.name == LevelName::Skip {
            // notation-go: skip "but configured with trust stores and/or trusted
            // identities" is an error. Trust policy spec, "signatureVerification details":
            // "skip cannot be used with a global scope (*)".
            if !trust_stores.is_empty() || !identities.is_empty() {
                return Err(invalid(
                    "trustStores",
                    "",
                    "a skip statement takes no trust stores or identities",
                ));
            }
            if scopes == RegistryScopes::Global {
                return Err(invalid(
                    "registryScopes",
                    "*",
                    "skip cannot be used with the global scope",
                ));
            }
            return Ok(Self {
                name,
                scopes,
                level,
                verify_timestamp,
                trust_stores: Vec::new(),
                identities: TrustedIdentities::Any,
            });
        }
        // "trustStores ... REQUIRED ... one or more named trust stores"; "trustedIdentities
        // ... REQUIRED".
        if trust_stores.is_empty() {
            return Err(missing("trustStores"));
        }
        if identities.is_empty() {
            return Err(missing("trustedIdentities"));
        }
        let mut stores = Vec::with_capacity(trust_stores.len());
        for value in &trust_stores {
            let store = StoreRef::parse(value).ok_or_else(|| {
                invalid(
                    "trustStores",
                    value,
                    "must be {ca|signingAuthority|tsa}:{name} with name [a-zA-Z0-9_.-]+",
                )
            })?;
            if !stores.contains(&store) {
                stores.push(store);
            }
        }
        if !stores.iter().any(|s| s.kind != StoreKind::Tsa) {
            return Err(invalid(
                "trustStores",
                "",
                "needs a ca or signingAuthority store, not only tsa",
            ));
        }
        let identities = if identities.iter().any(|i| i == "*") {
            // notation-go: "a wildcard identity cannot be used in conjunction with other
            // values".
            if identities.len() > 1 {
                return Err(invalid(
                    "trustedIdentities",
                    "*",
                    "the wildcard must be the only identity",
                ));
            }
            TrustedIdentities::Any
        } else {
            let mut dns: Vec<DistinguishedName> = Vec::with_capacity(identities.len());
            for identity in &identities {
                let value = identity.strip_prefix("x509.subject:").ok_or_else(|| {
                    invalid(
                        "trustedIdentities",
                        identity,
                        "only x509.subject: identities are supported",
                    )
                })?;
                let dn = DistinguishedName::parse(value)
                    .map_err(|reason| invalid("trustedIdentities", identity, reason))?;
                // Trust policy spec, "Trusted Identities Constraints": "trustedIdentities
                // list items MUST NOT have overlapping values".
                if dns
                    .iter()
                    .any(|other| other.is_subset_of(&dn) || dn.is_subset_of(other))
                {
                    return Err(invalid(
                        "trustedIdentities",
                        identity,
                        "overlaps another identity",
                    ));
                }
                dns.push(dn);
            }
            TrustedIdentities::Subjects(dns)
        };
        Ok(Self {
            name,
            scopes,
            level,
            verify_timestamp,
            trust_stores: stores,
            identities,
        })
    }

    fn scope_values(&self) -> Vec<&str> {
        match &self.scopes {
            RegistryScopes::Global => vec!["*"],
            RegistryScopes::Repositories(scopes) => scopes.iter().map(String::as_str).collect(),
        }
    }

    /// The named stores of one type, in policy order.
    pub fn stores(&self, kind: StoreKind) -> impl Iterator<Item = &StoreRef> {
        self.trust_stores.iter().filter(move |s| s.kind == kind)
    }
}

// === impl VerificationLevel ===

impl VerificationLevel {
    /// The spec's table ("Signature Verification details"): strict enforces all;
    /// permissive logs authentic timestamp, expiry and revocation; audit enforces only
    /// integrity; skip runs nothing.
    pub fn named(name: &str) -> Option<Self> {
        use Action::{Enforce, Log, Skip};
        let (name, authenticity, authentic_timestamp, expiry, revocation) = match name {
            "strict" => (LevelName::Strict, Enforce, Enforce, Enforce, Enforce),
            "permissive" => (LevelName::Permissive, Enforce, Log, Log, Log),
            "audit" => (LevelName::Audit, Log, Log, Log, Log),
            "skip" => (LevelName::Skip, Skip, Skip, Skip, Skip),
            _ => return None,
        };
        Some(Self {
            name,
            authenticity,
            authentic_timestamp,
            expiry,
            revocation,
        })
    }

    pub fn action(&self, check: Check) -> Action {
        match check {
            Check::Integrity if self.name == LevelName::Skip => Action::Skip,
            Check::Integrity => Action::Enforce,
            Check::Authenticity => self.authenticity,
            Check::AuthenticTimestamp => self.authentic_timestamp,
            Check::Expiry => self.expiry,
            Check::Revocation => self.revocation,
        }
    }
}

/// Whether `name` may name a trust store: notation-go's "Named store name needs to follow
/// [a-zA-Z0-9_.-]+ format" (`IsValidFileName`), and not `.` or `..`, so that it is one
/// directory under its type's.
pub fn is_store_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

// === impl StoreRef ===

impl StoreRef {
    fn parse(value: &str) -> Option<Self> {
        let (kind, name) = value.split_once(':')?;
        let kind = StoreKind::from_dir_name(kind)?;
        is_store_name(name).then(|| Self {
            kind,
            name: name.to_owned(),
        })
    }
}

impl fmt::Display for StoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.dir_name(), self.name)
    }
}

// === impl StoreKind ===

impl StoreKind {
    /// The type a directory under `truststore/x509/` holds, if it names one.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        [StoreKind::Ca, StoreKind::SigningAuthority, StoreKind::Tsa]
            .into_iter()
            .find(|kind| kind.dir_name() == name)
    }

    /// The directory under `truststore/x509/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            StoreKind::Ca => "ca",
            StoreKind::SigningAuthority => "signingAuthority",
            StoreKind::Tsa => "tsa",
        }
    }
}

// === impl DistinguishedName ===

impl DistinguishedName {
    /// Parses the RDN list of an `x509.subject:` identity (RFC 4514 syntax with the
    /// escapes the trust policy spec lists: `\,`, `\;`, `\\`, escaped leading/trailing
    /// spaces, and `\XX` hex pairs). Multi-valued RDNs (`+`) are not supported.
    ///
    /// # Errors
    ///
    /// A reason for the policy error message.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        // notation-go `pkix.ParseDistinguishedName` refuses any name holding "=#" (the
        // hex form of an attribute value) before parsing it.
        if text.contains("=#") {
            return Err("notation does not support identities containing \"=#\"");
        }
        let mut attributes: Vec<(String, String)> = Vec::new();
        for rdn in split_unescaped(text)? {
            let (kind, value) = rdn.split_once('=').ok_or("an RDN has no '='")?;
            let kind = kind.trim().to_ascii_uppercase();
            if !DN_ATTRIBUTES.contains(&kind.as_str()) {
                return Err("unknown attribute type (C, ST, L, O, OU, CN, SERIALNUMBER, STREET, POSTALCODE)");
            }
            let value = unescape(value)?;
            if value.is_empty() {
                return Err("an attribute value is empty");
            }
            if attributes.iter().any(|(k, _)| *k == kind) {
                return Err("an attribute type appears twice");
            }
            attributes.push((kind, value));
        }
        // Trust policy spec, "Trusted Identities Constraints": "Each identity in
        // identities list MUST contain country (C), state or province (ST), and
        // organization (O) RDNs."
        for required in ["C", "ST", "O"] {
            if !attributes.iter().any(|(k, _)| k == required) {
                return Err("an identity must contain C, ST and O");
            }
        }
        Ok(Self {
            raw: text.trim().to_owned(),
            attributes,
        })
    }

    /// Whether every attribute of `self` has the same value in `other`.
    fn is_subset_of(&self, other: &DistinguishedName) -> bool {
        self.attributes
            .iter()
            .all(|(k, v)| other.attributes.iter().any(|(ok, ov)| ok == k && ov == v))
    }

    /// Whether a certificate subject (short name, value pairs) matches: each attribute
    /// of this identity occurs exactly once in the subject with an equal value (trust
    /// policy spec, "Validate Authenticity": "matches with the value of corresponding
    /// attributes in the signing certificate's subject").
    pub fn matches(&self, subject: &[(&str, String)]) -> bool {
        self.attributes.iter().all(|(kind, value)| {
            let mut found = subject.iter().filter(|(k, _)| k == kind);
            matches!((found.next(), found.next()), (Some((_, v)), None) if v == value)
        })
    }
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The first attribute type a certificate subject (short name, value pairs) names more
/// than once among those Go's `pkix.Name` keeps as lists (C, ST, L, O, OU, STREET,
/// POSTALCODE). notation-go matches identities against the subject as
/// `pkix.Name.String` writes it, where such values share one multi-valued RDN, which its
/// `ParseDistinguishedName` refuses: a leaf with such a subject matches no identity.
pub fn repeated_list_attribute<'a>(subject: &[(&'a str, String)]) -> Option<&'a str> {
    const LISTS: [&str; 7] = ["C", "ST", "L", "O", "OU", "STREET", "POSTALCODE"];
    subject
        .iter()
        .enumerate()
        .find(|(i, (kind, _))| {
            LISTS.contains(kind) && subject.iter().skip(i + 1).any(|(k, _)| k == kind)
        })
        .map(|(_, (kind, _))| *kind)
}

/// Splits on commas that are not escaped; refuses unescaped `+` and `;`.
fn split_unescaped(text: &str) -> Result<Vec<&str>, &'static str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                parts.push(text.get(start..i).ok_or("invalid text")?);
                start = i + 1;
            }
            '+' => return Err("multi-valued RDNs are not supported"),
            ';' => return Err("';' must be escaped"),
            _ => {}
        }
    }
    if escaped {
        return Err("the identity ends in a lone '\\'");
    }
    parts.push(text.get(start..).ok_or("invalid text")?);
    Ok(parts)
}

/// Unescapes an attribute value and trims unescaped surrounding spaces.
fn unescape(value: &str) -> Result<String, &'static str> {
    let mut out = String::new();
    // Index in `out` up to which characters are escaped (and so never trimmed).
    let mut protected_len = 0;
    let mut chars = value.trim_start_matches(' ').chars().peekable();
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut bytes, &mut out)?;
            out.push(c);
            continue;
        }
        let next = chars.next().ok_or("an escape is incomplete")?;
        if next.is_ascii_hexdigit() {
            let low = chars
                .next()
                .filter(char::is_ascii_hexdigit)
                .ok_or("a hex escape is incomplete")?;
            let pair: String = [next, low].iter().collect();
            bytes.push(u8::from_str_radix(&pair, 16).map_err(|_| "a hex escape is invalid")?);
        } else {
            flush(&mut bytes, &mut out)?;
            out.push(next);
        }
        protected_len = out.len() + bytes.len();
    }
    flush(&mut bytes, &mut out)?;
    let trimmed_len = out
        .trim_end_matches(' ')
        .len()
        .max(protected_len.min(out.len()));
    out.truncate(trimmed_len);
    Ok(out)
}

fn flush(bytes: &mut Vec<u8>, out: &mut String) -> Result<(), &'static str> {
    if !bytes.is_empty() {
        out.push_str(std::str::from_utf8(bytes).map_err(|_| "a hex escape is not UTF-8")?);
        bytes.clear();
    }
    Ok(())
}

/// Whether two `registry/repository` names (or `*`) name the same repository: see
/// [`TrustPolicyDocument::select`].
fn same_repository(a: &str, b: &str) -> bool {
    a == b || (a != "*" && b != "*" && repository_key(a) == repository_key(b))
}

/// A repository's name in one spelling: the registry in lower case, without the HTTPS
/// port, Docker Hub as `docker.io` and its official images under `library/`.
fn repository_key(repository: &str) -> String {
    let (registry, path) = repository.split_once('/').unwrap_or(("", repository));
    let registry = registry.to_ascii_lowercase();
    let registry = registry.strip_suffix(":443").unwrap_or(&registry);
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" if !path.contains('/') => {
            format!("docker.io/library/{path}")
        }
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => format!("docker.io/{path}"),
        _ => format!("{registry}/{path}"),
    }
}

/// notation-go `validateRegistryScopeFormat`: `domain/repository` with the
/// distribution reference grammar for both parts.
fn is_repository_uri(scope: &str) -> bool {
    let Some((domain, repository)) = scope.split_once('/') else {
        return false;
    };
    is_domain(domain) && !repository.is_empty() && repository.split('/').all(is_path_component)
}

fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && bytes
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                }
                _ => false,
            }
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if alnum(first) && alnum(last) => {}
        _ => return false,
    }
    let mut run = String::new();
    for &b in bytes {
        if alnum(b) {
            if !(run.is_empty()
                || run == "."
                || run == "_"
                || run == "__"
                || run.bytes().all(|c| c == b'-'))
            {
                return false;
            }
            run.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            run.push(char::from(b));
        } else {
            return false;
        }
    }
    true
}

/// The document as JSON, before validation. Unknown fields are refused so that a
/// misspelt key (say `overide`) cannot silently weaken verification.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    version: Option<String>,
    #[serde(rename = "trustPolicies")]
    trust_policies: Option<Vec<RawPolicy>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    name: Option<String>,
    registry_scopes: Option<Vec<String>>,
    signature_verification: Option<RawVerification>,
    trust_stores: Option<Vec<String>>,
    trusted_identities: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawVerification {
    level: Option<String>,
    #[serde(rename = "override")]
    override_: Option<BTreeMap<String, String>>,
    verify_timestamp: Option<String>,
}

#[cfg(test)]
mod tests;
