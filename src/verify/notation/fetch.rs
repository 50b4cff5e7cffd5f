//! Revocation material fetched over HTTP: CRLs from the distribution points
//! certificates name, and OCSP answers from their responders, each kept until its
//! `nextUpdate`.
//!
//! Trust policy spec, "Certificate Revocation Evaluation": implementations "support only
//! HTTP CRL URLs"; a CRL download that does not finish "within the timeout threshold" (5
//! seconds by default), or an OCSP answer not within 2 seconds, leaves the status
//! "revocation unavailable". As notation-core-go does (`revocation/crl/fetcher.go`,
//! `revocation/internal/ocsp/ocsp.go`): a CRL is at most 32 MiB and only a `200 OK`
//! answer is one; every distribution point of a certificate is fetched; an OCSP request
//! goes by GET when its base64 form is under 255 bytes and by POST otherwise, and the
//! answer, any 2xx, is at most 20 KiB; a cached CRL, keyed by its URL, is used until its
//! `nextUpdate` and then fetched again. Redirects to `http` URLs are followed, as Go's
//! HTTP client follows them.
//!
//! Each source is asked once at a time: verifications that want it while it is being
//! fetched (a node starting many pods whose images one CA's certificates signed) wait
//! for that fetch and share its answer, or its failure, rather than sending their own.
//!
//! Nothing fetched is trusted here: [`super::revocation`] and [`super::ocsp`] check each
//! CRL and answer against the issuer when it is used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Method, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::ocsp::{self, MAX_OCSP_RESPONSE_BYTES};
use super::revocation::{is_http, CrlSet};
use super::time::Moment;
use super::{Fetched, Wanted};
use crate::egress;
use crate::telemetry::ErrorChain;

/// How long one CRL download may take, connection included (the spec's default).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one OCSP answer may take (the spec's default).
pub const OCSP_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest CRL downloaded (notation-core-go's `maxCRLSize`).
pub const MAX_FETCHED_CRL_BYTES: usize = 32 * 1024 * 1024;
/// Most bytes of CRLs kept in memory; past it, those that expire first are dropped.
pub const MAX_CACHED_CRL_BYTES: usize = 64 * 1024 * 1024;
/// Most sources asked for one verification (a chain holds at most ten certificates,
/// each usually naming one responder and one distribution point).
pub const MAX_FETCHES: usize = 16;
/// Most redirects followed for one distribution point.
const MAX_REDIRECTS: usize = 5;

/// Fetches CRLs and OCSP answers over HTTP and keeps them in memory, shared by every
/// verification.
pub struct RevocationFetcher {
    client: Client<egress::Connector, Full<Bytes>>,
    /// The connector `client` uses, asked for a proxy's credentials per request.
    egress: egress::Connector,
    timeout: Duration,
    ocsp_timeout: Duration,
    max_bytes: usize,
    cache: Mutex<Memory>,
    /// The fetch under way for each source, which later askers wait for.
    flights: Mutex<HashMap<Wanted, Arc<Flight>>>,
    stats: Arc<RevocationStats>,
}

/// One fetch of a source, and its outcome once settled.
type Flight = tokio::sync::OnceCell<Result<Cached, Arc<FetchError>>>;

/// What the fetcher keeps, and its size in bytes.
#[derive(Default)]
struct Memory {
    entries: HashMap<Wanted, Cached>,
    bytes: usize,
}

/// What the fetcher did, for the node's metrics: per source kind (`crl`, `ocsp`), the
/// answers taken from memory, fetched, and not obtained.
#[derive(Debug, Default)]
pub struct RevocationStats {
    counts: [[AtomicU64; 3]; 2],
}

/// The source kinds and results [`RevocationStats::counts`] reports, in its order.
pub const SOURCES: [&str; 2] = ["crl", "ocsp"];
pub const RESULTS: [&str; 3] = ["cached", "fetched", "error"];

#[derive(Clone)]
struct Cached {
    crls: CrlSet,
    /// An OCSP answer; empty for a CRL.
    answer: Bytes,
    next_update: Moment,
    bytes: usize,
}

/// Why a distribution point gave no CRL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not an http URL (Notation fetches CRLs over http only)")]
    NotHttp,
    #[error("not a valid URL")]
    BadUrl,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Http(String),
    #[error("answered {0}, not 200 OK")]
    Status(StatusCode),
    #[error("answered {0}")]
    OcspStatus(StatusCode),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("the answer is over the size limit ({0} bytes)")]
    TooLarge(usize),
    #[error("not a DER or PEM X.509 CRL: {0}")]
    Malformed(String),
    #[error("the CRL has no nextUpdate")]
    NoNextUpdate,
}

// === impl RevocationFetcher ===

impl Default for RevocationFetcher {
    fn default() -> Self {
        Self::new(FETCH_TIMEOUT, OCSP_TIMEOUT)
    }
}

impl RevocationFetcher {
    /// A fetcher whose CRL downloads each take at most `timeout`, and OCSP answers
    /// `ocsp_timeout`.
    pub fn new(timeout: Duration, ocsp_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        let egress = egress::Connector::from_env(connector);
        Self {
            client: Client::builder(TokioExecutor::new()).build(egress.clone()),
            egress,
            timeout,
            ocsp_timeout,
            max_bytes: MAX_FETCHED_CRL_BYTES,
            cache: Mutex::default(),
            flights: Mutex::default(),
            stats: Arc::default(),
        }
    }

    /// Counts what it does in `stats`.
    pub fn with_stats(mut self, stats: Arc<RevocationStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Asks the sources `wanted` (the first [`MAX_FETCHES`]), all at once, taking what
    /// memory holds while current; the sources that gave nothing, with the reason.
    pub async fn fetch(&self, wanted: &[Wanted], now: SystemTime) -> Fetched {
        let now = Moment::from_system_time(now);
        let wanted = &wanted[..wanted.len().min(MAX_FETCHES)];
        let results =
            futures_util::future::join_all(wanted.iter().map(|source| self.get(source, now))).await;
        let mut fetched = Fetched::default();
        for (source, result) in wanted.iter().zip(results) {
            let kind = usize::from(matches!(source, Wanted::Ocsp { .. }));
            let outcome = match &result {
                Ok((_, true)) => 0,
                Ok((_, false)) => 1,
                Err(_) => 2,
            };
            self.stats.add(kind, outcome);
            match (source, result) {
                (Wanted::Crl(_), Ok((cached, _))) => fetched.crls.extend(&cached.crls),
                (Wanted::Ocsp { .. }, Ok((cached, _))) => {
                    fetched.ocsp.push((source.clone(), cached.answer));
                }
                (_, Err(error)) => {
                    tracing::warn!(url = %source.url(), %error, "cannot fetch revocation information for a Notation signing certificate");
                    fetched.failures.push((source.clone(), error.to_string()));
                }
            }
        }
        fetched
    }

    /// What `source` gives, from memory while it is before its `nextUpdate`, or from a
    /// fetch another verification has under way (and then `true`).
    async fn get(&self, source: &Wanted, now: Moment) -> Result<(Cached, bool), Arc<FetchError>> {
        if let Some(cached) = self.cached(source, now) {
            return Ok((cached, true));
        }
        let Some(flight) = self
            .flights
            .lock()
            .ok()
            .map(|mut flights| Arc::clone(flights.entry(source.clone()).or_default()))
        else {
            return self
                .fetch_one(source, now)
                .await
                .map(|c| (c, false))
                .map_err(Arc::new);
        };
        // The asker whose fetch settles the flight (the first, or the next one if the
        // first went away before it was done) also ends it; those who waited share it.
        let mut fetched_here = false;
        let outcome = flight
            .get_or_init(|| {
                fetched_here = true;
                async { self.fetch_one(source, now).await.map_err(Arc::new) }
            })
            .await
            .clone();
        if fetched_here {
            if let Ok(mut flights) = self.flights.lock() {
                if flights.get(source).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                    flights.remove(source);
                }
            }
        }
        outcome.map(|cached| (cached, !fetched_here))
    }

    /// Fetches `source` and keeps what it gives.
    async fn fetch_one(&self, source: &Wanted, now: Moment) -> Result<Cached, FetchError> {
        let fetched = match source {
            Wanted::Crl(url) => {
                let bytes = tokio::time::timeout(
                    self.timeout,
                    self.send(Method::GET, url, Bytes::new(), Kind::Crl),
                )
                .await
                .map_err(|_elapsed| FetchError::Timeout(self.timeout))??;
                // A CRL may list hundreds of thousands of certificates, many MiB parsed:
                // off the thread that relays CRI calls.
                let size = bytes.len();
                let (crls, next_update) = tokio::task::spawn_blocking(move || {
                    let mut crls = CrlSet::default();
                    crls.add(&bytes).map(|()| {
                        let next_update = crls.next_update();
                        (crls, next_update)
                    })
                })
                .await
                .map_err(|error| {
                    FetchError::Malformed(format!("reading the CRL did not finish: {error}"))
                })?
                .map_err(|error| FetchError::Malformed(error.to_string()))?;
                let next_update = next_update.ok_or(FetchError::NoNextUpdate)?;
                tracing::debug!(url, bytes = size, %next_update, "fetched a CRL");
                Cached {
                    crls,
                    answer: Bytes::new(),
                    next_update,
                    bytes: size,
                }
            }
            Wanted::Ocsp { url, request } => {
                let answer = tokio::time::timeout(self.ocsp_timeout, self.ask(url, request))
                    .await
                    .map_err(|_elapsed| FetchError::Timeout(self.ocsp_timeout))??;
                // An answer without nextUpdate is used once and not kept.
                let next_update = ocsp::next_update(&answer).unwrap_or(now);
                Cached {
                    crls: CrlSet::default(),
                    bytes: answer.len(),
                    answer,
                    next_update,
                }
            }
        };
        self.keep(source, &fetched, now);
        Ok(fetched)
    }

    /// Sends the OCSP request `request` to `url` (RFC 6960 A.1): by GET, the request's
    /// base64 escaped into the path, when that is under 255 bytes; by POST otherwise.
    async fn ask(&self, url: &str, request: &[u8]) -> Result<Bytes, FetchError> {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(request);
        let escaped =
            percent_encoding::utf8_percent_encode(&encoded, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        if encoded.len() < 255 && escaped.len() < 255 {
            let get = format!("{}/{escaped}", url.trim_end_matches('/'));
            return self.send(Method::GET, &get, Bytes::new(), Kind::Ocsp).await;
        }
        self.send(
            Method::POST,
            url,
            Bytes::copy_from_slice(request),
            Kind::Ocsp,
        )
        .await
    }

    fn cached(&self, source: &Wanted, now: Moment) -> Option<Cached> {
        let cache = self.cache.lock().ok()?;
        cache
            .entries
            .get(source)
            .filter(|cached| now < cached.next_update)
            .cloned()
    }

    fn keep(&self, source: &Wanted, fetched: &Cached, now: Moment) {
        // Already at its nextUpdate (an OCSP answer without one, a stale CRL): it would
        // never be served from memory.
        if fetched.next_update <= now {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let mut replaced = Vec::new();
        if let Some(old) = cache.entries.insert(source.clone(), fetched.clone()) {
            cache.bytes = cache.bytes.saturating_sub(old.bytes);
            replaced.push(old);
        }
        cache.bytes = cache.bytes.saturating_add(fetched.bytes);
        // Over the bound, the CRLs that are due to be fetched again first go first.
        while cache.bytes > MAX_CACHED_CRL_BYTES {
            let Some(first) = cache
                .entries
                .iter()
                .min_by_key(|(_, cached)| cached.next_update)
                .map(|(source, _)| source.clone())
            else {
                break;
            };
            if let Some(removed) = cache.entries.remove(&first) {
                cache.bytes = cache.bytes.saturating_sub(removed.bytes);
                replaced.push(removed);
            }
        }
        drop(cache);
        // Freeing a large parsed CRL takes a while too.
        if !replaced.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::spawn_blocking(move || drop(replaced));
        }
    }

    /// Sends `body` to `url` with `method`, following redirects to `http` URLs, and
    /// reads the answer: a CRL, which must come with `200 OK`, or an OCSP responder's,
    /// which may be any 2xx; each within its size limit.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
        kind: Kind,
    ) -> Result<Bytes, FetchError> {
        let (ocsp, limit) = match kind {
            Kind::Crl => (false, self.max_bytes),
            Kind::Ocsp => (true, MAX_OCSP_RESPONSE_BYTES),
        };
        let mut uri: Uri = url.parse().map_err(|_| FetchError::BadUrl)?;
        for _ in 0..=MAX_REDIRECTS {
            if !is_http(&uri.to_string()) {
                return Err(FetchError::NotHttp);
            }
            let mut request = http::Request::builder()
                .method(method.clone())
                .uri(uri.clone());
            if method == Method::POST {
                request = request.header(header::CONTENT_TYPE, "application/ocsp-request");
            }
            if let Some(value) = self.egress.proxy_authorization(&uri) {
                request = request.header(header::PROXY_AUTHORIZATION, value);
            }
            let request = request
                .body(Full::new(body.clone()))
                .map_err(|_| FetchError::BadUrl)?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| FetchError::Http(ErrorChain(&error).to_string()))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or(FetchError::Status(status))?;
                uri = redirect(&uri, location).ok_or(FetchError::BadUrl)?;
                continue;
            }
            if ocsp && !status.is_success() {
                return Err(FetchError::OcspStatus(status));
            }
            if !ocsp && status != StatusCode::OK {
                return Err(FetchError::Status(status));
            }
            let declared = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if declared.is_some_and(|len| len > limit as u64) {
                return Err(FetchError::TooLarge(limit));
            }
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(limit)
                    } else {
                        FetchError::Http(error.to_string())
                    }
                })?;
            return Ok(body.to_bytes());
        }
        Err(FetchError::TooManyRedirects)
    }
}

// === impl RevocationStats ===

impl RevocationStats {
    fn add(&self, source: usize, result: usize) {
        if let Some(count) = self.counts.get(source).and_then(|row| row.get(result)) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(source, result, count)` for every pair of [`SOURCES`] and [`RESULTS`].
    pub fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        SOURCES
            .iter()
            .zip(&self.counts)
            .flat_map(|(source, row)| {
                RESULTS
                    .iter()
                    .zip(row)
                    .map(move |(result, count)| (*source, *result, count.load(Ordering::Relaxed)))
            })
            .collect()
    }
}

/// What is fetched.
#[derive(Clone, Copy)]
enum Kind {
    Crl,
    Ocsp,
}

/// The URL a redirect's `Location` names, absolute or relative to `base`.
fn redirect(base: &Uri, location: &str) -> Option<Uri> {
    let base = url::Url::parse(&base.to_string()).ok()?;
    base.join(location).ok()?.as_str().parse().ok()
}

#[cfg(test)]
mod tests;
