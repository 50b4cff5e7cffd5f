//! The aggregator's TLS: mutual TLS on the ingest port, server TLS on the query port,
//! and the node identity a client certificate carries.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::audit::tls::{self, Error};

/// The mutual-TLS configuration of the ingest port: client certificates must chain to
/// `client_ca_file` (RFC 5280 path validation by webpki); connections without one fail
/// the handshake.
///
/// # Errors
///
/// A file cannot be used.
pub fn ingest_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: &Path,
) -> Result<Arc<ServerConfig>, Error> {
    let provider = tls::provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(tls::roots(client_ca_file)?),
        Arc::clone(&provider),
    )
    .build()
    .map_err(Error::Verifier)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls::certificates(cert_file)?, tls::private_key(key_file)?)
        .map_err(Error::Config)?;
    config.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The server TLS configuration of the query port (HTTP/1.1; clients authenticate with
/// the bearer token).
///
/// # Errors
///
/// A file cannot be used.
pub fn query_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, Error> {
    let mut config = ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?
        .with_no_client_auth()
        .with_single_cert(tls::certificates(cert_file)?, tls::private_key(key_file)?)
        .map_err(Error::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The node a verified client certificate names: its first DNS subject alternative
/// name, or, with no DNS SAN, its subject common name.
pub fn node_name(cert: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let dns = san.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        });
        if dns.is_some() {
            return dns;
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .filter(|cn| !cn.is_empty());
    cn
}

/// Who is on the other end of an ingest connection.
#[derive(Clone, Debug)]
pub struct Peer {
    /// From the client certificate (see [`node_name`]).
    pub node: String,
    pub addr: SocketAddr,
}

/// An accepted, authenticated ingest connection.
pub struct PeerStream {
    inner: TlsStream<TcpStream>,
    peer: Peer,
}

// === impl PeerStream ===

impl PeerStream {
    /// Wraps a finished handshake; `None` when the certificate names no node.
    pub fn new(inner: TlsStream<TcpStream>, addr: SocketAddr) -> Option<Self> {
        let (_, session) = inner.get_ref();
        let cert = session.peer_certificates()?.first()?;
        let node = node_name(cert)?;
        Some(Self {
            inner,
            peer: Peer { node, addr },
        })
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl Connected for PeerStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
