//! Outbound HTTP connections (registries, OCSP responders, CRL distribution points):
//! direct, or through the proxy `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` name (or their
//! lowercase forms), read as Go's `httpproxy` package reads them, and so as containerd
//! does: `ALL_PROXY` is not read; `NO_PROXY` is `*`, or a comma-separated list of IP
//! addresses, CIDR ranges and host names, a name matching itself and its subdomains
//! (`.corp.example` and `*.corp.example` its subdomains only), and an entry with a port
//! matching that port only; `localhost` and loopback addresses are never sent to a proxy
//! named by the environment.
//!
//! An `https` destination behind a proxy is reached through a `CONNECT` tunnel (RFC 9110
//! 9.3.6), credentials in the proxy URL sent as `Proxy-Authorization: Basic`; TLS then
//! runs end to end through the tunnel, so the proxy sees only the host and port. A plain
//! `http` destination is asked of the proxy itself, with the request line in absolute
//! form (RFC 9112 3.2.2), as HTTP clients do, with the proxy URL's credentials as
//! `Proxy-Authorization` ([`Connector::proxy_authorization`], which the request's sender
//! adds, as Go's transport does).
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
    /// Destinations reached directly, whatever `proxies` says (the environment's
    /// `NO_PROXY`).
    no_proxy: Arc<NoProxy>,
}

/// `NO_PROXY` as Go's `httpproxy` reads it (`Config.useProxy`).
#[derive(Debug, Default)]
struct NoProxy {
    /// `*`: no destination goes through a proxy.
    all: bool,
    ips: Vec<(std::net::IpAddr, Option<u16>)>,
    cidrs: Vec<(std::net::IpAddr, u8)>,
    /// A name with a leading `.`, its port, and whether the name itself (without the
    /// dot) matches too.
    domains: Vec<(String, Option<u16>, bool)>,
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
            no_proxy: Arc::default(),
        }
    }

    /// Connects with `direct`, through the proxies the environment names, and to
    /// loopback destinations and those `NO_PROXY` names directly.
    pub fn from_env(direct: HttpConnector) -> Self {
        let var = |names: [&str; 2]| {
            names
                .into_iter()
                .filter_map(|name| std::env::var(name).ok())
                .find(|value| !value.is_empty())
                .unwrap_or_default()
        };
        let proxies = Matcher::builder()
            .http(var(["HTTP_PROXY", "http_proxy"]))
            .https(var(["HTTPS_PROXY", "https_proxy"]))
            .build();
        Self {
            loopback_direct: true,
            no_proxy: Arc::new(NoProxy::parse(&var(["NO_PROXY", "no_proxy"]))),
            ..Self::new(direct, proxies)
        }
    }
}

impl Connector {
    /// The proxy intercepting `dst`, if one does; `None` for destinations reached directly.
    fn proxy_for(&self, dst: &Uri) -> Option<hyper_util::client::proxy::matcher::Intercept> {
        if (self.loopback_direct && is_loopback(dst.host())) || self.no_proxy.matches(dst) {
            None
        } else {
            self.proxies.intercept(dst)
        }
    }

    /// The `Proxy-Authorization` a request to `dst` carries: for a plain `http`
    /// destination asked of a proxy whose URL holds credentials (RFC 9110 11.7.2); `None`
    /// otherwise (an `https` destination's go in its tunnel's `CONNECT`).
    pub fn proxy_authorization(&self, dst: &Uri) -> Option<http::HeaderValue> {
        if dst.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        let proxy = self.proxy_for(dst)?;
        if proxy.uri().scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        let mut value = proxy.basic_auth()?.clone();
        value.set_sensitive(true);
        Some(value)
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
        let proxy = self.proxy_for(&dst);
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

// === impl NoProxy ===

impl NoProxy {
    /// Reads a `NO_PROXY` value; entries that are none of the kinds are ignored, as Go
    /// ignores them.
    fn parse(value: &str) -> Self {
        let mut no_proxy = Self::default();
        for entry in value.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no_proxy.all = true;
                continue;
            }
            if let Some((ip, bits)) = entry.split_once('/') {
                if let (Ok(ip), Ok(bits)) = (ip.parse(), bits.parse::<u8>()) {
                    no_proxy.cidrs.push((ip, bits));
                }
                continue;
            }
            if let Ok(ip) = entry.parse() {
                no_proxy.ips.push((ip, None));
                continue;
            }
            // host:port, [ipv6]:port, or a bare name.
            let (host, port) = match entry.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() => match port.parse::<u16>() {
                    Ok(port) => (
                        host.trim_start_matches('[').trim_end_matches(']'),
                        Some(port),
                    ),
                    Err(_) => continue,
                },
                _ => (entry.as_str(), None),
            };
            if let Ok(ip) = host.parse() {
                no_proxy.ips.push((ip, port));
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            let (name, itself) = match host.strip_prefix('.') {
                Some(_) => (host.to_owned(), false),
                None => (format!(".{host}"), true),
            };
            if name.len() > 1 {
                no_proxy.domains.push((name, port, itself));
            }
        }
        no_proxy
    }

    /// Whether `dst` is reached directly.
    fn matches(&self, dst: &Uri) -> bool {
        if self.all {
            return true;
        }
        let Some(host) = dst.host() else {
            return false;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = dst.port_u16().or(match dst.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        let port_ok = |wanted: &Option<u16>| wanted.is_none() || *wanted == port;
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return self.ips.iter().any(|(known, p)| *known == ip && port_ok(p))
                || self
                    .cidrs
                    .iter()
                    .any(|(net, bits)| in_cidr(ip, *net, *bits));
        }
        self.domains.iter().any(|(name, p, itself)| {
            (host.ends_with(name.as_str()) || (*itself && host == name[1..])) && port_ok(p)
        })
    }
}

/// Whether `ip` is in `net`/`bits`.
fn in_cidr(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
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

    #[test]
    fn no_proxy_is_read_as_go_reads_it() {
        let no = |value: &str, url: &str| NoProxy::parse(value).matches(&url.parse().unwrap());
        // `*` covers names and addresses alike.
        assert!(no("*", "https://10.0.0.5:5000/"));
        assert!(no("a.example, *", "https://registry.example/"));
        // A name: itself and its subdomains; `.name` and `*.name`: subdomains only.
        assert!(no("corp.example", "https://corp.example/"));
        assert!(no("corp.example", "https://r.corp.example/"));
        assert!(!no("corp.example", "https://notcorp.example/"));
        for entry in [".corp.example", "*.corp.example"] {
            assert!(no(entry, "https://r.corp.example/"), "{entry}");
            assert!(!no(entry, "https://corp.example/"), "{entry}");
        }
        // With a port, that port only (a URL without one has its scheme's).
        assert!(no(
            "registry.internal:5000",
            "https://registry.internal:5000/"
        ));
        assert!(!no("registry.internal:5000", "https://registry.internal/"));
        assert!(no("registry.internal:443", "https://registry.internal/"));
        // Addresses, with or without a port, and ranges.
        assert!(no("10.0.0.5", "https://10.0.0.5:5000/"));
        assert!(no("10.0.0.5:5000", "https://10.0.0.5:5000/"));
        assert!(!no("10.0.0.5:5001", "https://10.0.0.5:5000/"));
        assert!(no("10.0.0.0/8", "https://10.200.0.5/"));
        assert!(!no("10.0.0.0/8", "https://11.0.0.5/"));
        assert!(no("fd00::/8", "https://[fd00::2]:5000/"));
        assert!(no("[fd00::2]:5000", "https://[fd00::2]:5000/"));
        // Case, spaces and empty entries.
        assert!(no(" , CORP.example ,", "https://R.Corp.Example/"));
        assert!(!no("", "https://registry.example/"));
        // A name is not an address's: `corp.example` says nothing of 10.0.0.5.
        assert!(!no("corp.example", "https://10.0.0.5/"));
    }

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
