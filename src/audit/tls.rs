//! TLS material: the PEM files the shipper, the aggregator, `crigate audit query` and the
//! registry client (a host's CA and client certificate files) read, and the rustls
//! configurations built from them.
//!
//! Every file is read through a size limit; every configuration uses the aws-lc-rs
//! provider and rustls' safe default protocol versions (TLS 1.2 and 1.3).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Largest PEM file read: a certificate chain or CA bundle is a few kilobytes; the
/// system's whole CA bundle is about 200 KiB.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// ALPN protocol of the gRPC ingest stream (HTTP/2).
pub const ALPN_H2: &[u8] = b"h2";

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_PEM_BYTES} bytes; is it the right file?")]
    TooLarge { path: PathBuf },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path}: invalid PEM certificate")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path}: certificate not usable as a trust anchor")]
    Anchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the TLS configuration")]
    Config(#[source] rustls::Error),
    #[error("cannot build the client certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// The one crypto provider of the pipeline.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM file of at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    crate::files::read_bounded(path, MAX_PEM_BYTES)
        .map_err(io)?
        .ok_or_else(|| Error::TooLarge {
            path: path.to_owned(),
        })
}

/// The certificates of a PEM file, at least one.
///
/// # Errors
///
/// The file cannot be read, is too large, or holds no valid certificate.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file.
///
/// # Errors
///
/// The file cannot be read, is too large, or holds no private key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| Error::Key {
        path: path.to_owned(),
        source,
    })
}

/// The trust anchors of a PEM CA bundle.
///
/// # Errors
///
/// As [`certificates`], or a certificate cannot be a trust anchor.
pub fn roots(path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|source| Error::Anchor {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// The start of every client configuration: the pipeline's provider and rustls' safe
/// default protocol versions.
///
/// # Errors
///
/// The provider supports none of those versions.
pub fn client_builder(
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, Error> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)
}

/// Finishes a client configuration, presenting `identity` (certificate and key files)
/// when given.
///
/// # Errors
///
/// A file cannot be used.
pub fn with_identity(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, Error> {
    match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(Error::Config),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The trust anchors of the CA bundle `ca_file`, or else the system's.
///
/// # Errors
///
/// As [`roots`].
pub fn trust_anchors(ca_file: Option<&Path>) -> Result<RootCertStore, Error> {
    match ca_file {
        Some(ca_file) => roots(ca_file),
        None => Ok(system_roots()),
    }
}

/// A client configuration trusting `ca_file`, presenting `identity` (certificate and
/// key files) when given, offering `alpn`.
///
/// # Errors
///
/// A file cannot be used.
pub fn client_config(
    ca_file: &Path,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, Error> {
    let builder = client_builder()?.with_root_certificates(roots(ca_file)?);
    let mut config = with_identity(builder, identity)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration that verifies servers against `ca_file`, or against the
/// system's trust store when none is given; no client certificate, no ALPN.
///
/// # Errors
///
/// `ca_file` cannot be used.
pub fn server_client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, Error> {
    let builder = client_builder()?.with_root_certificates(trust_anchors(ca_file)?);
    with_identity(builder, None)
}

/// The system's trust anchors. A certificate that cannot be loaded or used is skipped,
/// as every TLS client does with the system store, and logged.
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "some system root certificates could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "system root certificates loaded");
    roots
}
