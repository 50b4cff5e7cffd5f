//! Trust material named in the configuration (`[verifiers.<name>]`), read from its files
//! into the forms the verifiers take, and the fingerprint of what was read.
//!
//! Reading happens at start-up and on reload (blocking file I/O), never on the decision
//! path. The fingerprint covers the configuration of each verifier and the bytes of every
//! file it names, so changing a key file or a trust policy invalidates cached verdicts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::config::{DockerReference, IdentityConfig, SignatureDigestName, VerifierConfig};
use crate::verify::cache::Fingerprint;
use crate::verify::cosign::{
    CosignPolicy, DockerReferenceCheck, KeylessIdentity, Matcher, PolicyError, SignatureDigest,
    TrustedKey, TrustedRoot,
};
use crate::verify::engine::Requirement;
use crate::verify::notation::{self, NotationConfig};

/// The largest key, certificate or trusted-root file read.
const MAX_TRUST_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a verifier's trust material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("verifier {verifier:?}: cannot read {path}")]
    Read {
        verifier: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("verifier {verifier:?}: {path} is larger than {MAX_TRUST_FILE_BYTES} bytes")]
    TooLarge { verifier: String, path: PathBuf },
    #[error("verifier {verifier:?}: {path}")]
    Cosign {
        verifier: String,
        path: PathBuf,
        #[source]
        source: Box<PolicyError>,
    },
    #[error("verifier {verifier:?}: invalid identity regular expression")]
    Regex {
        verifier: String,
        #[source]
        source: Box<PolicyError>,
    },
    #[error("verifier {verifier:?}: keyless identities need Fulcio roots: set trusted_root")]
    NoFulcioRoots { verifier: String },
    #[error(
        "verifier {verifier:?}: require_tlog needs transparency log keys, and none is \
         configured, so every signature would be denied: set trusted_root (crigate \
         verify --trusted-root) to a trusted_root.json that lists tlogs, or set \
         require_tlog = false (--insecure-ignore-tlog, as cosign names it)"
    )]
    NoRekorKeys { verifier: String },
    #[error(
        "verifier {verifier:?}: keyless identities with require_sct need certificate \
         transparency log keys, and none is configured, so every keyless signature would \
         be denied: set trusted_root (crigate verify --trusted-root) to a \
         trusted_root.json that lists ctlogs, or set require_sct = false \
         (--insecure-ignore-sct, as cosign names it)"
    )]
    NoCtLogKeys { verifier: String },
    #[error("verifier {verifier:?}: Notation configuration {dir}")]
    Notation {
        verifier: String,
        dir: PathBuf,
        #[source]
        source: Box<notation::Error>,
    },
    #[error("no verifier named {0:?} in the configuration")]
    Unknown(String),
    #[error("verifiers {0} are of one kind and cannot be read as one: read each on its own")]
    Merged(String),
}

/// Reads the verifiers named in `names` (all of them when `names` is empty) into one
/// requirement: any of them may establish trust. At most one of each kind: two cosign
/// verifiers' keys, identities and roots, or two Notation directories, do not merge into
/// one without one vouching under the other's rules, so each is a requirement of its own.
///
/// # Errors
///
/// A file cannot be read or does not hold what it should; a name is not configured; two
/// verifiers of one kind are named.
pub fn requirement(
    verifiers: &std::collections::BTreeMap<String, VerifierConfig>,
    names: &[String],
) -> Result<Requirement, Error> {
    let selected: Vec<(&String, &VerifierConfig)> = if names.is_empty() {
        verifiers.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                verifiers
                    .get_key_value(n)
                    .ok_or_else(|| Error::Unknown(n.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    let mut hasher = Sha256::new();
    let mut cosign: Option<CosignPolicy> = None;
    let mut notation: Option<NotationConfig> = None;
    let kinds = |cosign: bool| {
        selected
            .iter()
            .filter(|(_, v)| matches!(v, VerifierConfig::Cosign { .. }) == cosign)
            .count()
    };
    if kinds(true) > 1 || kinds(false) > 1 {
        let names: Vec<&str> = selected.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::Merged(names.join(", ")));
    }
    for (name, verifier) in selected {
        hasher.update(name.as_bytes());
        hasher.update(format!("{verifier:?}").as_bytes());
        match verifier {
            VerifierConfig::Cosign {
                keys,
                identities,
                trusted_root,
                require_tlog,
                require_sct,
                docker_reference,
                signature_digest,
            } => {
                let policy = cosign.get_or_insert_with(CosignPolicy::default);
                policy.require_tlog = *require_tlog;
                policy.require_sct = *require_sct;
                policy.docker_reference = match docker_reference {
                    DockerReference::MatchRepository => DockerReferenceCheck::MatchRepository,
                    DockerReference::NotChecked => DockerReferenceCheck::NotChecked,
                };
                for path in keys {
                    let pem = read(name, path, &mut hasher)?;
                    let key = TrustedKey::from_pem(path.display().to_string(), &pem).map_err(
                        |source| Error::Cosign {
                            verifier: name.clone(),
                            path: path.clone(),
                            source: Box::new(source),
                        },
                    )?;
                    let key = match signature_digest {
                        Some(name) => key.with_digest(signature_digest_of(*name)),
                        None => key,
                    };
                    policy.keys.push(key);
                }
                for identity in identities {
                    policy.identities.push(keyless(name, identity)?);
                }
                if let Some(path) = trusted_root {
                    let json = read(name, path, &mut hasher)?;
                    let root = TrustedRoot::from_json(&json).map_err(|source| Error::Cosign {
                        verifier: name.clone(),
                        path: path.clone(),
                        source: Box::new(source),
                    })?;
                    policy.add_trusted_root(root);
                }
                if !identities.is_empty() && policy.fulcio_roots.is_empty() {
                    return Err(Error::NoFulcioRoots {
                        verifier: name.clone(),
                    });
                }
                // Material the settings ask for and nothing supplies would deny every
                // signature at run time ("not a configured transparency log"): refuse it
                // here, saying what to add. crigate fetches no trust material, so a
                // trusted_root.json is where Rekor and CT log keys come from.
                if *require_tlog && policy.rekor_keys.is_empty() {
                    return Err(Error::NoRekorKeys {
                        verifier: name.clone(),
                    });
                }
                if !identities.is_empty() && *require_sct && policy.ct_log_keys.is_empty() {
                    return Err(Error::NoCtLogKeys {
                        verifier: name.clone(),
                    });
                }
            }
            VerifierConfig::Notation {
                dir,
                online_revocation,
                timestamp_revocation,
            } => {
                let config = NotationConfig::load(dir)
                    .map_err(|source| Error::Notation {
                        verifier: name.clone(),
                        dir: dir.clone(),
                        source: Box::new(source),
                    })?
                    .with_online_revocation(*online_revocation)
                    .with_timestamp_revocation(*timestamp_revocation);
                // The effective content of a Notation verifier: its trust policy, the
                // certificates and the CRLs it loaded.
                config.digest_content(&mut hasher);
                notation = Some(config);
            }
        }
    }
    Ok(Requirement {
        cosign: cosign.map(Arc::new),
        notation: notation.map(Arc::new),
        fingerprint: Fingerprint::new(hasher.finalize().into()),
    })
}

fn keyless(verifier: &str, identity: &IdentityConfig) -> Result<KeylessIdentity, Error> {
    let regex = |pattern: &str| {
        Matcher::regex(pattern).map_err(|source| Error::Regex {
            verifier: verifier.to_owned(),
            source: Box::new(source),
        })
    };
    // Config validation guarantees exactly one of subject and subject_regexp.
    let subject = match (&identity.subject, &identity.subject_regexp) {
        (Some(exact), _) => Matcher::Exact(exact.clone()),
        (None, Some(pattern)) => regex(pattern)?,
        (None, None) => Matcher::Exact(String::new()),
    };
    let issuer = match (&identity.issuer, &identity.issuer_regexp) {
        (Some(exact), _) => Some(Matcher::Exact(exact.clone())),
        (None, Some(pattern)) => Some(regex(pattern)?),
        (None, None) => None,
    };
    Ok(KeylessIdentity { subject, issuer })
}

/// Reads a trust file, bounded, and adds its bytes to the fingerprint.
fn read(verifier: &str, path: &Path, hasher: &mut Sha256) -> Result<Vec<u8>, Error> {
    let error = |source| Error::Read {
        verifier: verifier.to_owned(),
        path: path.to_owned(),
        source,
    };
    let len = std::fs::metadata(path).map_err(error)?.len();
    if len > MAX_TRUST_FILE_BYTES {
        return Err(Error::TooLarge {
            verifier: verifier.to_owned(),
            path: path.to_owned(),
        });
    }
    let bytes = std::fs::read(path).map_err(error)?;
    hasher.update(path.as_os_str().as_encoded_bytes());
    hasher.update(&bytes);
    Ok(bytes)
}

/// The hash a cosign verifier's `signature_digest` names.
fn signature_digest_of(name: SignatureDigestName) -> SignatureDigest {
    match name {
        SignatureDigestName::Sha256 => SignatureDigest::Sha256,
        SignatureDigestName::Sha384 => SignatureDigest::Sha384,
        SignatureDigestName::Sha512 => SignatureDigest::Sha512,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::DockerReference;

    /// A cosign verifier trusting a key of the shared vectors, with these settings.
    fn cosign_verifier(
        docker_reference: DockerReference,
        signature_digest: Option<SignatureDigestName>,
    ) -> VerifierConfig {
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/vectors/cosign/key/hello-world/ecdsa-p256.pub"
        );
        VerifierConfig::Cosign {
            keys: vec![PathBuf::from(key)],
            identities: Vec::new(),
            trusted_root: None,
            require_tlog: false,
            require_sct: true,
            docker_reference,
            signature_digest,
        }
    }

    #[test]
    fn verifiers_of_one_kind_are_not_read_as_one() {
        let cosign = |docker_reference| cosign_verifier(docker_reference, None);
        let verifiers: BTreeMap<String, VerifierConfig> = [
            ("a".to_owned(), cosign(DockerReference::MatchRepository)),
            ("b".to_owned(), cosign(DockerReference::NotChecked)),
        ]
        .into();
        let error = requirement(&verifiers, &[]).err().unwrap();
        assert!(
            matches!(&error, Error::Merged(names) if names == "a, b"),
            "{error}"
        );
        // One at a time, each keeps its own settings.
        let a = requirement(&verifiers, &["a".to_owned()]).unwrap();
        let b = requirement(&verifiers, &["b".to_owned()]).unwrap();
        let check = |r: &Requirement| r.cosign.as_ref().unwrap().docker_reference.clone();
        assert_eq!(check(&a), DockerReferenceCheck::MatchRepository);
        assert_eq!(check(&b), DockerReferenceCheck::NotChecked);
        assert_ne!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn a_fixed_signature_digest_reaches_each_key() {
        use crate::verify::cosign::AcceptedDigests;
        let cosign =
            |signature_digest| cosign_verifier(DockerReference::MatchRepository, signature_digest);
        let digests = |config: VerifierConfig| {
            let verifiers = BTreeMap::from([("v".to_owned(), config)]);
            let requirement = requirement(&verifiers, &[]).unwrap();
            let policy = requirement.cosign.unwrap();
            (policy.keys[0].digests, requirement.fingerprint)
        };
        let (unset, unset_fingerprint) = digests(cosign(None));
        assert_eq!(unset, AcceptedDigests::CosignDefaults);
        let (fixed, fixed_fingerprint) = digests(cosign(Some(SignatureDigestName::Sha384)));
        assert_eq!(fixed, AcceptedDigests::Only(SignatureDigest::Sha384));
        assert_ne!(unset_fingerprint, fixed_fingerprint);
    }

    #[test]
    fn a_notation_verifier_is_fingerprinted_by_what_it_loaded() {
        let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/notation");
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(vectors.join("truststore"), dir.path().join("truststore"))
            .unwrap();
        std::fs::copy(
            vectors.join("trustpolicy/alpine-2000.json"),
            dir.path().join("trustpolicy.json"),
        )
        .unwrap();
        // CRLs kept elsewhere, the directory linked in as a CRL updater may swap it.
        let crls = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(crls.path(), dir.path().join("crl")).unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap(),
            rcgen::KeyPair::generate().unwrap(),
        )
        .unwrap();
        let write_crl = |revoked: &[u64]| {
            let params = rcgen::CertificateRevocationListParams {
                this_update: rcgen::date_time_ymd(2025, 1, 1),
                next_update: rcgen::date_time_ymd(2027, 1, 1),
                crl_number: rcgen::SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: revoked
                    .iter()
                    .map(|serial| rcgen::RevokedCertParams {
                        serial_number: rcgen::SerialNumber::from(*serial),
                        revocation_time: rcgen::date_time_ymd(2025, 3, 1),
                        reason_code: None,
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: rcgen::KeyIdMethod::Sha256,
            };
            let crl = params.signed_by(&ca).unwrap();
            std::fs::write(crls.path().join("ca.crl"), crl.der()).unwrap();
        };
        let fingerprint = || {
            load(VerifierConfig::Notation {
                dir: dir.path().to_owned(),
                online_revocation: false,
                timestamp_revocation: false,
            })
            .unwrap()
            .fingerprint
        };
        write_crl(&[]);
        let before = fingerprint();
        assert_eq!(fingerprint(), before, "the same content");
        // A revocation is a new trust decision: no verdict made before it may answer.
        write_crl(&[7]);
        assert_ne!(fingerprint(), before);
    }

    const TRUSTED_ROOT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/cosign/trust/trusted_root.json"
    );

    fn load(config: VerifierConfig) -> Result<Requirement, Error> {
        requirement(&BTreeMap::from([("release".to_owned(), config)]), &[])
    }

    #[test]
    fn a_verifier_requiring_the_log_without_log_keys_is_refused_at_load() {
        let keys_only = |require_tlog, trusted_root: Option<&str>| {
            let mut config = cosign_verifier(DockerReference::MatchRepository, None);
            if let VerifierConfig::Cosign {
                require_tlog: tlog,
                trusted_root: root,
                ..
            } = &mut config
            {
                *tlog = require_tlog;
                *root = trusted_root.map(PathBuf::from);
            }
            config
        };
        // Every signature would be denied as "not a configured transparency log".
        let error = load(keys_only(true, None)).err().unwrap();
        assert!(
            matches!(&error, Error::NoRekorKeys { verifier } if verifier == "release"),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.contains("trusted_root") && text.contains("require_tlog = false"),
            "{text}"
        );
        assert!(load(keys_only(false, None)).is_ok());
        assert!(load(keys_only(true, Some(TRUSTED_ROOT))).is_ok());
    }

    #[test]
    fn keyless_identities_requiring_scts_without_ct_log_keys_are_refused_at_load() {
        let mut root: serde_json::Value =
            serde_json::from_slice(&std::fs::read(TRUSTED_ROOT).unwrap()).unwrap();
        root["ctlogs"] = serde_json::json!([]);
        let dir = tempfile::tempdir().unwrap();
        let no_ctlogs = dir.path().join("trusted_root.json");
        std::fs::write(&no_ctlogs, serde_json::to_vec(&root).unwrap()).unwrap();
        let keyless = |trusted_root: &Path, require_sct| VerifierConfig::Cosign {
            keys: Vec::new(),
            identities: vec![IdentityConfig {
                subject: Some("release@example.com".to_owned()),
                subject_regexp: None,
                issuer: Some("https://issuer.example.com".to_owned()),
                issuer_regexp: None,
            }],
            trusted_root: Some(trusted_root.to_owned()),
            require_tlog: true,
            require_sct,
            docker_reference: DockerReference::MatchRepository,
            signature_digest: None,
        };
        let error = load(keyless(&no_ctlogs, true)).err().unwrap();
        assert!(
            matches!(&error, Error::NoCtLogKeys { verifier } if verifier == "release"),
            "{error}"
        );
        assert!(error.to_string().contains("require_sct = false"), "{error}");
        assert!(load(keyless(&no_ctlogs, false)).is_ok());
        assert!(load(keyless(Path::new(TRUSTED_ROOT), true)).is_ok());
    }
}
