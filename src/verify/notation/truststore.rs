//! Notation trust stores on disk: `truststore/x509/{ca,signingAuthority,tsa}/<name>/`
//! holding `.pem`, `.crt` or `.cer` files, each one or more PEM certificates or one DER
//! certificate (trust store and trust policy spec, "Trust Store").
//!
//! Reading happens once, when the configuration loads; verification never touches the
//! file system.
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::chain::{Cert, ChainError};
use super::trustpolicy::{StoreKind, StoreRef};

/// Largest certificate file read; a PEM bundle of a few dozen certificates is < 100 KiB.
pub const MAX_CERT_FILE_BYTES: u64 = 1024 * 1024;
/// Most certificates in one named store.
pub const MAX_CERTS_PER_STORE: usize = 256;
/// Most directory entries examined in one named store.
pub const MAX_ENTRIES_PER_STORE: usize = 1024;

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// The certificates of the named stores a trust policy uses.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    stores: BTreeMap<StoreRef, Vec<Cert>>,
}

/// Why a trust store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "trust store {store} ({path}) does not exist: create it or remove it from the trust policy"
    )]
    Missing { store: String, path: PathBuf },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a symlink; the trust store spec does not allow symlinks")]
    Symlink { path: PathBuf },
    #[error("trust store {store} ({path}) holds no certificates")]
    Empty { store: String, path: PathBuf },
    #[error("{path} is {size} bytes, over the limit of {MAX_CERT_FILE_BYTES}")]
    FileTooLarge { path: PathBuf, size: u64 },
    #[error("trust store {store} has more than {MAX_CERTS_PER_STORE} certificates or {MAX_ENTRIES_PER_STORE} entries")]
    TooManyCertificates { store: String },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: &'static str },
    #[error("{path}: not a certificate")]
    Certificate {
        path: PathBuf,
        #[source]
        source: ChainError,
    },
    #[error("{path}: {subject} is neither a CA certificate nor self-signed; a trust store holds the certificates signatures chain up to")]
    NotAnAnchor { path: PathBuf, subject: String },
    #[error("{path}: {subject} is not a self-signed root CA certificate, which is all a tsa trust store may hold")]
    NotARoot { path: PathBuf, subject: String },
}

// === impl TrustStore ===

impl TrustStore {
    /// Reads the named stores `refs` under `root` (the directory holding `x509/`).
    ///
    /// # Errors
    ///
    /// A store is missing, empty, a symlink, or holds a file that is not certificates.
    pub fn load<'a>(
        root: &Path,
        refs: impl IntoIterator<Item = &'a StoreRef>,
    ) -> Result<Self, StoreError> {
        let mut stores = BTreeMap::new();
        for store in refs {
            if stores.contains_key(store) {
                continue;
            }
            let dir = root
                .join("x509")
                .join(store.kind.dir_name())
                .join(&store.name);
            let certs = load_named_store(store, &dir)?;
            stores.insert(store.clone(), certs);
        }
        Ok(Self { stores })
    }

    /// Feeds each store's name and its certificates, in order, to `digest`.
    pub(crate) fn digest_content(&self, digest: &mut impl sha2::Digest) {
        for (store, certs) in &self.stores {
            let name = store.to_string();
            digest.update((name.len() as u64).to_be_bytes());
            digest.update(name.as_bytes());
            digest.update((certs.len() as u64).to_be_bytes());
            for cert in certs {
                digest.update((cert.der().len() as u64).to_be_bytes());
                digest.update(cert.der());
            }
        }
    }

    /// The certificates of one named store (empty if it was not loaded).
    pub(crate) fn certs(&self, store: &StoreRef) -> &[Cert] {
        self.stores.get(store).map_or(&[], Vec::as_slice)
    }
}

fn load_named_store(store: &StoreRef, dir: &Path) -> Result<Vec<Cert>, StoreError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { path, source }
    };
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Missing {
                store: store.to_string(),
                path: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(io(dir)(e)),
    };
    // Trust store spec: "Symlinks are not supported for the named store directories or
    // certificate files. Implementation MUST validate that the named store directory or
    // certificate files are not symlinks, and fail if it does not meet this condition."
    if meta.file_type().is_symlink() {
        return Err(StoreError::Symlink {
            path: dir.to_path_buf(),
        });
    }
    let mut paths = Vec::new();
    for (count, entry) in fs::read_dir(dir).map_err(io(dir))?.enumerate() {
        if count >= MAX_ENTRIES_PER_STORE {
            return Err(StoreError::TooManyCertificates {
                store: store.to_string(),
            });
        }
        paths.push(entry.map_err(io(dir))?.path());
    }
    paths.sort();
    let mut certs = Vec::new();
    for path in paths {
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.file_type().is_symlink() {
            return Err(StoreError::Symlink { path });
        }
        if meta.is_dir() {
            // "Any additional sub directories under names stores and certificates in it
            // are ignored. NOTE: Implementation SHOULD warn".
            tracing::warn!(path = %path.display(), "sub directory of a trust store is ignored");
            continue;
        }
        // "Files with extension .pem, .crt and .cer", in any case (a certificate
        // exported on Windows is often `.CER`). notation-go reads every file of a store;
        // one the spec's extensions leave out is named in a warning, so a certificate
        // that is not trusted here for its file name is found.
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !matches!(extension.as_str(), "pem" | "crt" | "cer") {
            tracing::warn!(path = %path.display(), "file in a Notation trust store is not read: only .pem, .crt and .cer files hold its certificates");
            continue;
        }
        if meta.len() > MAX_CERT_FILE_BYTES {
            return Err(StoreError::FileTooLarge {
                path,
                size: meta.len(),
            });
        }
        // The file may have grown since its size was read; reading stops one byte over.
        let Some(bytes) =
            crate::files::read_bounded(&path, MAX_CERT_FILE_BYTES).map_err(io(&path))?
        else {
            return Err(StoreError::FileTooLarge {
                path,
                size: MAX_CERT_FILE_BYTES + 1,
            });
        };
        for der in certificates_in_file(&path, &bytes)? {
            let cert = Cert::from_der(&der).map_err(|source| StoreError::Certificate {
                path: path.clone(),
                source,
            })?;
            check_anchor(store.kind, &cert, &path)?;
            certs.push(cert);
            if certs.len() > MAX_CERTS_PER_STORE {
                return Err(StoreError::TooManyCertificates {
                    store: store.to_string(),
                });
            }
        }
    }
    if certs.is_empty() {
        return Err(StoreError::Empty {
            store: store.to_string(),
            path: dir.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Why a certificate cannot anchor a trust store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotAnAnchor {
    /// Neither a CA certificate nor self-signed (any store).
    Neither,
    /// Not a self-signed root CA (a `tsa` store).
    NotARoot,
}

/// What notation-go admits to a trust store (`truststore.go`): in every store a CA
/// certificate or a self-signed one (`ValidateCertificates`), and in a `tsa` store only
/// self-signed root CAs (`isRootCACertificate`); `None` when `cert` is admitted to a
/// store of `kind`.
pub(crate) fn anchor_refusal(kind: StoreKind, cert: &Cert) -> Option<NotAnAnchor> {
    match kind {
        StoreKind::Tsa if !cert.is_self_signed_ca() => Some(NotAnAnchor::NotARoot),
        _ if !cert.is_ca() && !cert.is_self_signed() => Some(NotAnAnchor::Neither),
        _ => None,
    }
}

/// [`anchor_refusal`] as a load error: a certificate that is not admitted makes the store
/// fail to load, as it fails notation's verification, rather than anchor a chain.
fn check_anchor(kind: StoreKind, cert: &Cert, path: &Path) -> Result<(), StoreError> {
    let (path, subject) = (path.to_path_buf(), cert.subject());
    match anchor_refusal(kind, cert) {
        Some(NotAnAnchor::NotARoot) => Err(StoreError::NotARoot { path, subject }),
        Some(NotAnAnchor::Neither) => Err(StoreError::NotAnAnchor { path, subject }),
        None => Ok(()),
    }
}

/// The DER certificates in a file: every PEM `CERTIFICATE` block, or the file itself
/// when it is not PEM ("certificate(s) in DER (binary) format or PEM format").
pub(crate) fn certificates_in_file(path: &Path, bytes: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let pem = |reason| StoreError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(vec![bytes.to_vec()]);
    };
    if !text.contains("-----BEGIN") {
        return Ok(vec![bytes.to_vec()]);
    }
    let mut certs = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(PEM_BEGIN) {
        let after_begin = rest
            .get(start + PEM_BEGIN.len()..)
            .ok_or_else(|| pem("truncated PEM block"))?;
        let end = after_begin
            .find(PEM_END)
            .ok_or_else(|| pem("PEM block has no END line"))?;
        let body = after_begin
            .get(..end)
            .ok_or_else(|| pem("truncated PEM block"))?;
        let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        certs.push(
            STANDARD
                .decode(base64)
                .map_err(|_| pem("PEM body is not base64"))?,
        );
        rest = after_begin.get(end + PEM_END.len()..).unwrap_or_default();
    }
    if certs.is_empty() {
        return Err(pem("PEM file has no CERTIFICATE block"));
    }
    Ok(certs)
}
