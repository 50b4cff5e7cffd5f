//! TLS to PostgreSQL, on the pipeline's rustls provider.
//!
//! The connection string's `sslmode` decides whether TLS is used (PostgreSQL's
//! protocol, "SSL Session Encryption": the client asks with an SSLRequest and the
//! server agrees or not). When it is, the server's certificate is always verified
//! against the configured CA bundle or the system's roots, and, unless the string says
//! `sslmode=verify-ca`, its name against the `host` connected to (see
//! [`super::conninfo`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::path::Path;

use futures_util::future::BoxFuture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;

use super::conninfo::Verify;
use crate::audit::tls::{self as pipeline, Error};

/// The client configuration that checks the server as `verify` says, against the CA
/// bundle `ca_file` or else the system's trust store, and presents `identity` (a
/// certificate file and its key file) when given.
///
/// # Errors
///
/// A file cannot be used.
pub fn client_config(
    verify: Verify,
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, Error> {
    let roots = pipeline::trust_anchors(ca_file)?;
    let builder = match verify {
        Verify::Full => pipeline::client_builder()?.with_root_certificates(roots),
        Verify::Chain => {
            let chain =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), pipeline::provider())
                    .build()
                    .map_err(Error::Verifier)?;
            pipeline::client_builder()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
        }
    };
    pipeline::with_identity(builder, identity)
}

/// libpq's `verify-ca`: the certificate must chain to a trusted CA, be within its
/// validity and be signed as the handshake says; the name in it is not compared with
/// the host. rustls checks the chain first and the name last, so a name mismatch is
/// the only error this lets through, and only after every other check passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verified => verified,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Makes a verifying TLS connection for each PostgreSQL host.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, InvalidDnsNameError> {
        Ok(Connect {
            name: ServerName::try_from(host.to_owned())?,
            config: Arc::clone(&self.config),
        })
    }
}

/// The TLS handshake with one host.
pub struct Connect {
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<Stream<S>>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, stream).await.map(Stream) })
    }
}

/// A TLS connection to PostgreSQL.
pub struct Stream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM authenticates without channel binding; the server was authenticated by
        // its certificate already.
        ChannelBinding::none()
    }
}
