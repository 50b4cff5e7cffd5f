//! Outbound HTTP connections (registries, OCSP responders, CRL distribution points):
//! direct, or through the proxy `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` name, read as
//! curl and Go read them (hyper-util's `Matcher`). As Go's `httpproxy` (and so
//! containerd) does, `localhost` and loopback addresses are never sent to a proxy named
//! by the environment.
//!
//! An `https` destination behind a proxy is reached through a `CONNECT` tunnel (RFC 9110
//! 9.3.6), credentials in the proxy URL sent as `Proxy-Authorization: Basic`; TLS then
//! runs end to end through the tunnel, so the proxy sees only the host and port. A plain
//! `http` destination is asked of the proxy itself, with the request line in absolute
//! form (RFC 9112 3.2.2), as HTTP clients do; such requests carry no proxy credentials.
//!
//! Proxies are spoken to in plain HTTP: a proxy named `https://` (TLS to the proxy
//! itself) is refused, request by request, before anything is sent, rather than given its
//! credentials and `CONNECT` in the clear.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Scheme;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::ServiceExt as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connector that goes through the configured proxy where one applies.
#[derive(Clone)]
pub struct Connector {
    direct: HttpConnector,
    proxies: Arc<Matcher>,
    /// Connect to `localhost` and loopback addresses directly, whatever `proxies` says.
    loopback_direct: bool,
}

/// A connection made by [`Connector`].
pub struct Stream {
    io: TokioIo<TcpStream>,
    /// Connected to an HTTP proxy for an `http` destination: requests go in absolute form.
    absolute_form: bool,
}

// === impl Connector ===

impl Connector {
    /// Connects with `direct`, through the proxies `proxies` names.
    pub fn new(direct: HttpConnector, proxies: Matcher) -> Self {
        Self {
            direct,
            proxies: Arc::new(proxies),
            loopback_direct: false,
        }
    }

    /// Connects with `direct`, through the proxies the environment names, and to
    /// loopback destinations directly.
    pub fn from_env(direct: HttpConnector) -> Self {
        Self {
            loopback_direct: true,
            ..Self::new(direct, Matcher::from_env())
        }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let direct = self.direct.clone();
        let proxy = if self.loopback_direct && is_loopback(dst.host()) {
            None
        } else {
            self.proxies.intercept(&dst)
        };
        Box::pin(async move {
            let Some(proxy) = proxy else {
                let io = direct.oneshot(dst).await?;
                return Ok(Stream {
                    io,
                    absolute_form: false,
                });
            };
            if proxy.uri().scheme() != Some(&Scheme::HTTP) {
                return Err(format!(
                    "the proxy {} is not an http:// proxy; crigate speaks to proxies in plain \
                     HTTP only (TLS to the proxy itself is not built)",
                    redacted(proxy.uri())
                )
                .into());
            }
            if dst.scheme() == Some(&Scheme::HTTPS) {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), direct);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                let io = tunnel.oneshot(dst).await.map_err(|error| {
                    format!("through the proxy {}: {error:?}", redacted(proxy.uri()))
                })?;
                return Ok(Stream {
                    io,
                    absolute_form: false,
                });
            }
            let io = direct
                .oneshot(proxy.uri().clone())
                .await
                .map_err(|error| format!("to the proxy {}: {error}", redacted(proxy.uri())))?;
            Ok(Stream {
                io,
                absolute_form: true,
            })
        })
    }
}

/// Whether `host` is `localhost` or a loopback address (Go's `httpproxy.useProxy`).
fn is_loopback(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A proxy URL without the credentials it may carry, for messages.
fn redacted(uri: &Uri) -> String {
    let host = uri.host().unwrap_or_default();
    match uri.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

// === impl Stream ===

impl Connection for Stream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.absolute_form)
    }
}

impl Read for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_https_proxy_is_refused_before_anything_is_sent_to_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut direct = HttpConnector::new();
        direct.enforce_http(false);
        let proxies = Matcher::builder()
            .https(format!("https://node:s3cret@127.0.0.1:{port}"))
            .build();
        let mut connector = Connector::new(direct, proxies);
        let error = match tower::Service::call(
            &mut connector,
            "https://registry.example/".parse().unwrap(),
        )
        .await
        {
            Ok(_) => panic!("connected through an https:// proxy"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("not an http:// proxy"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        // Nothing reached the proxy: no connection is waiting to be accepted.
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the proxy was connected to");
    }

    #[test]
    fn loopback_destinations_are_recognised_as_go_recognises_them() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.9.8.7",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(Some(host)), "{host}");
        }
        for host in [
            "registry.example",
            "10.0.0.1",
            "[fd00::2]",
            "localhost.example",
            "",
        ] {
            assert!(!is_loopback(Some(host)), "{host}");
        }
        assert!(!is_loopback(None));
    }
}
