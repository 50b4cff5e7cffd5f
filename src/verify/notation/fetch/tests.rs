//! The fetcher against a real HTTP server on loopback; its handler plays the
//! distribution point, including the faults a CA's server can have (missing file, slow
//! answer, oversized or malformed body, redirects).
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::*;

type Handler = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>> + Send + Sync,
>;

/// An HTTP/1.1 server on 127.0.0.1 answering with `handler(path)`, keeping each request.
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A request the server received.
struct Seen {
    method: http::Method,
    path: String,
    content_type: Option<String>,
    body: Bytes,
}

impl Server {
    async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |path| Box::pin(handler(path)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let (handler, log) = (handler.clone(), log.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let path = parts.uri.path().to_owned();
                            log.lock().unwrap().push(Seen {
                                method: parts.method,
                                path: path.clone(),
                                content_type: parts
                                    .headers
                                    .get("content-type")
                                    .map(|v| v.to_str().unwrap().to_owned()),
                                body,
                            });
                            Ok::<_, Infallible>(handler(path).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { base, seen, task }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(body.into()))
        .unwrap()
}

/// A DER CRL from a fresh CA, listing nothing, next updated on 2099-01-01.
fn crl_der() -> Vec<u8> {
    crl_der_listing(0)
}

/// A DER CRL from a fresh CA, listing `revoked` serial numbers, next updated on
/// 2099-01-01.
fn crl_der_listing(revoked: u64) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
    rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2025, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: (1..=revoked)
            .map(|serial| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(serial),
                revocation_time: rcgen::date_time_ymd(2025, 3, 1),
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca)
    .unwrap()
    .der()
    .to_vec()
}

fn crl(url: &str) -> [Wanted; 1] {
    [Wanted::Crl(url.to_owned())]
}

/// A server answering every path with one current CRL.
async fn crl_server() -> Server {
    let der = Bytes::from(crl_der());
    Server::start(move |_| {
        let der = der.clone();
        async move { respond(StatusCode::OK, der) }
    })
    .await
}

fn year(year: u64) -> SystemTime {
    // Close enough to 1 January of `year` for these tests.
    UNIX_EPOCH + Duration::from_secs((year - 1970) * 365 * 86_400 + (year - 1969) / 4 * 86_400)
}

#[tokio::test]
async fn a_crl_is_fetched_once_and_fetched_again_after_its_next_update() {
    let server = crl_server().await;
    let stats = Arc::new(RevocationStats::default());
    let fetcher = RevocationFetcher::default().with_stats(stats.clone());
    let url = server.url("/ca.crl");
    for _ in 0..3 {
        let fetched = fetcher.fetch(&crl(&url), year(2030)).await;
        assert!(fetched.failures.is_empty(), "{:?}", fetched.failures);
        assert!(!fetched.crls.is_empty());
    }
    assert_eq!(server.requests(), 1, "a current CRL is taken from memory");
    let fetched = fetcher.fetch(&crl(&url), year(2100)).await;
    assert!(!fetched.crls.is_empty());
    assert_eq!(
        server.requests(),
        2,
        "a CRL past its nextUpdate is fetched again"
    );
    let counts = stats.counts();
    for (source, result, count) in [
        ("crl", "cached", 2),
        ("crl", "fetched", 2),
        ("crl", "error", 0),
        ("ocsp", "fetched", 0),
    ] {
        assert!(
            counts.contains(&(source, result, count)),
            "{source} {result} {count}: {counts:?}"
        );
    }
}

/// A CRL of many entries is parsed off the thread that relays CRI calls: a task on
/// that thread keeps running while it is read.
#[tokio::test(flavor = "current_thread")]
async fn a_large_crl_is_read_off_the_relaying_thread() {
    let der = Bytes::from(crl_der_listing(100_000));
    let server = Server::start(move |_| {
        let der = der.clone();
        async move { respond(StatusCode::OK, der) }
    })
    .await;
    let fetcher = RevocationFetcher::default();
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let ticker = tokio::spawn({
        let longest = longest.clone();
        async move {
            loop {
                let started = std::time::Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let waited = started.elapsed();
                let mut longest = longest.lock().unwrap();
                *longest = (*longest).max(waited);
            }
        }
    });
    let fetched = fetcher
        .fetch(&crl(&server.url("/ca.crl")), year(2030))
        .await;
    // The ticker's turn, to count a wait that ended with the fetch.
    tokio::time::sleep(Duration::from_millis(20)).await;
    ticker.abort();
    assert!(fetched.failures.is_empty(), "{:?}", fetched.failures);
    assert!(!fetched.crls.is_empty());
    let longest = *longest.lock().unwrap();
    assert!(
        longest < Duration::from_millis(300),
        "the thread was held for {longest:?}"
    );
}

#[tokio::test]
async fn verifications_wanting_a_source_at_once_share_one_fetch_and_its_failure() {
    // A slow distribution point: every verification asks while the first fetch is on.
    let der = Bytes::from(crl_der());
    let server = Server::start(move |path| {
        let der = der.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if path == "/ca.crl" {
                respond(StatusCode::OK, der)
            } else {
                respond(StatusCode::NOT_FOUND, "")
            }
        }
    })
    .await;
    let fetcher = RevocationFetcher::default();
    let (good, missing) = (server.url("/ca.crl"), server.url("/gone.crl"));
    let wanted: Vec<[Wanted; 1]> = (0..8)
        .map(|i| crl(if i % 2 == 0 { &good } else { &missing }))
        .collect();
    let asks = wanted.iter().map(|w| fetcher.fetch(w, year(2030)));
    let answers = futures_util::future::join_all(asks).await;
    for (i, fetched) in answers.iter().enumerate() {
        if i % 2 == 0 {
            assert!(!fetched.crls.is_empty() && fetched.failures.is_empty());
        } else {
            assert!(fetched.crls.is_empty());
            assert!(
                fetched.failures[0].1.contains("404"),
                "{:?}",
                fetched.failures
            );
        }
    }
    assert_eq!(server.requests(), 2, "one request per source");
    // A failure is not kept: the next verification asks again.
    let fetched = fetcher.fetch(&crl(&missing), year(2030)).await;
    assert_eq!(fetched.failures.len(), 1);
    assert_eq!(server.requests(), 3);
    // And a fetch abandoned by its verification (a timeout) is taken over by the next.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(50),
        fetcher.fetch(&crl(&missing), year(2030)),
    )
    .await;
    assert!(abandoned.is_err());
    let fetched = fetcher.fetch(&crl(&missing), year(2030)).await;
    assert_eq!(fetched.failures.len(), 1, "{:?}", fetched.failures);
}

#[tokio::test]
async fn a_redirect_to_an_http_url_is_followed() {
    let der = Bytes::from(crl_der());
    let server = Server::start(move |path| {
        let der = der.clone();
        async move {
            match path.as_str() {
                "/old.crl" => Response::builder()
                    .status(StatusCode::MOVED_PERMANENTLY)
                    .header("location", "/new.crl")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
                "/tls.crl" => Response::builder()
                    .status(StatusCode::FOUND)
                    .header("location", "https://crl.example.com/ca.crl")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
                _ => respond(StatusCode::OK, der),
            }
        }
    })
    .await;
    let fetcher = RevocationFetcher::default();
    let fetched = fetcher
        .fetch(&crl(&server.url("/old.crl")), year(2030))
        .await;
    assert!(fetched.failures.is_empty(), "{:?}", fetched.failures);
    assert!(!fetched.crls.is_empty());
    let fetched = fetcher
        .fetch(&crl(&server.url("/tls.crl")), year(2030))
        .await;
    assert!(fetched.crls.is_empty());
    assert!(
        fetched.failures[0].1.contains("not an http URL"),
        "{:?}",
        fetched.failures
    );
}

#[tokio::test]
async fn each_failing_distribution_point_is_named_with_its_reason() {
    let server = Server::start(|path| async move {
        match path.as_str() {
            "/missing.crl" => respond(StatusCode::NOT_FOUND, "no such file"),
            "/empty.crl" => respond(StatusCode::NO_CONTENT, ""),
            "/garbage.crl" => respond(StatusCode::OK, "<html>maintenance</html>"),
            "/huge.crl" => respond(StatusCode::OK, vec![0x30; 4096]),
            _ => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                respond(StatusCode::OK, "late")
            }
        }
    })
    .await;
    let stats = Arc::new(RevocationStats::default());
    let mut fetcher =
        RevocationFetcher::new(Duration::from_millis(300), OCSP_TIMEOUT).with_stats(stats.clone());
    fetcher.max_bytes = 1024;
    // Nothing listens on this port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}/ca.crl", closed.local_addr().unwrap());
    drop(closed);
    let urls = [
        server.url("/missing.crl"),
        server.url("/empty.crl"),
        server.url("/garbage.crl"),
        server.url("/huge.crl"),
        server.url("/slow.crl"),
        "https://crl.example.com/ca.crl".to_owned(),
        "http://[not a host/ca.crl".to_owned(),
        refused.clone(),
    ];
    let started = std::time::Instant::now();
    let wanted: Vec<Wanted> = urls.iter().cloned().map(Wanted::Crl).collect();
    let fetched = fetcher.fetch(&wanted, year(2030)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the slow distribution point is given up after the timeout, in parallel with the rest"
    );
    assert!(fetched.crls.is_empty());
    let reasons: Vec<(&str, &str)> = fetched
        .failures
        .iter()
        .map(|(source, reason)| (source.url(), reason.as_str()))
        .collect();
    let expect = [
        (urls[0].as_str(), "answered 404 Not Found, not 200 OK"),
        (urls[1].as_str(), "answered 204 No Content, not 200 OK"),
        (urls[2].as_str(), "not a DER or PEM X.509 CRL"),
        (urls[3].as_str(), "over the size limit (1024 bytes)"),
        (urls[4].as_str(), "no answer within 300ms"),
        (urls[5].as_str(), "not an http URL"),
        (urls[6].as_str(), "not a valid URL"),
        (refused.as_str(), "onnect"),
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:?}");
    for ((url, reason), (expected_url, expected)) in reasons.iter().zip(expect) {
        assert_eq!(*url, expected_url);
        assert!(
            reason.contains(expected),
            "{url}: {reason} (expected {expected})"
        );
    }
    // Nothing was kept: the next verification tries again.
    let again = fetcher.fetch(&wanted[..1], year(2030)).await;
    assert_eq!(again.failures.len(), 1);
    assert!(
        stats.counts().contains(&("crl", "error", 9)),
        "{:?}",
        stats.counts()
    );
}

#[tokio::test]
async fn at_most_sixteen_distribution_points_are_fetched_for_one_verification() {
    let server = crl_server().await;
    let wanted: Vec<Wanted> = (0..40)
        .map(|n| Wanted::Crl(server.url(&format!("/{n}.crl"))))
        .collect();
    let fetched = RevocationFetcher::default()
        .fetch(&wanted, year(2030))
        .await;
    assert!(fetched.failures.is_empty());
    assert_eq!(server.requests(), MAX_FETCHES);
}

#[tokio::test]
async fn an_ocsp_request_goes_by_get_when_short_and_by_post_otherwise() {
    let server = Server::start(|_| async { respond(StatusCode::OK, "answer") }).await;
    let base = server.url("/ocsp");
    let fetcher = RevocationFetcher::default();
    let short = Wanted::Ocsp {
        url: base.clone(),
        request: vec![0x30, 0xfb, 0xff],
    };
    let long = Wanted::Ocsp {
        url: base.clone(),
        request: vec![0x30; 200],
    };
    let fetched = fetcher.fetch(&[short], year(2030)).await;
    assert_eq!(fetched.ocsp[0].1, "answer");
    let fetched = fetcher.fetch(std::slice::from_ref(&long), year(2030)).await;
    assert_eq!(fetched.ocsp[0].1, "answer");
    // An answer without a readable nextUpdate is not kept: asked again.
    fetcher.fetch(&[long], year(2030)).await;
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    // base64 "MPv/" with '+', '/' and '=' escaped, as Go's url.QueryEscape does.
    assert_eq!(seen[0].method, http::Method::GET);
    assert_eq!(seen[0].path, "/ocsp/MPv%2F");
    assert_eq!(seen[1].method, http::Method::POST);
    assert_eq!(seen[1].path, "/ocsp");
    assert_eq!(
        seen[1].content_type.as_deref(),
        Some("application/ocsp-request")
    );
    assert_eq!(seen[1].body, vec![0x30; 200]);
}
