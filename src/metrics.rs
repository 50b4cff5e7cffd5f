//! Prometheus metrics shared by the node daemon ([`crate::audit::metrics`]) and the
//! aggregator ([`crate::aggregator::metrics`]): the text exposition format 0.0.4, the
//! bounded `crigate_decisions_total{decision,namespace}` counters both serve, a
//! fixed-bucket histogram, and a plain HTTP endpoint for the node.
//!
//! Counting is cheap enough for the decision path: histograms are atomics, and the
//! decision counters take one short lock and allocate only for a namespace not seen
//! before. Rendering happens per scrape and may allocate freely.
//!
//! Label values that come from outside (namespaces, node names) are bounded: each
//! labelled family holds at most [`MAX_SERIES`] series of values of at most
//! [`MAX_LABEL_BYTES`], and values past either bound count under [`OVERFLOW`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::DecisionKind;

/// Most series per labelled family: far above a cluster's namespaces or nodes, low
/// enough that made-up namespaces cannot exhaust memory.
pub const MAX_SERIES: usize = 10_000;

/// The longest label value kept as its own series: a Kubernetes node name (a DNS
/// subdomain, 253), longer than any namespace (a DNS label, 63). Without it, a few
/// thousand made-up values of a record's size would hold gigabytes.
pub const MAX_LABEL_BYTES: usize = 253;

/// The label value that series past [`MAX_SERIES`], or values longer than
/// [`MAX_LABEL_BYTES`], are counted under.
pub const OVERFLOW: &str = "_other";

/// The path metrics are served at.
pub const METRICS_PATH: &str = "/metrics";

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Upper bounds, in microseconds, of the decision duration buckets: from a cached
/// verdict (well under a millisecond) to a verification near its 30 s default timeout.
pub const DURATION_BUCKETS_MICROS: [u64; 15] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Scrapes served at once; more connections wait in the listen queue. A scraper needs
/// one.
const MAX_CONNECTIONS: usize = 8;
/// Time a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection is served, however it is used: a scraper that stops reading
/// would otherwise hold its slot for good, and [`MAX_CONNECTIONS`] of them the endpoint.
/// Scrapers come back every 15 to 60 s, on a new connection if need be.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// What a metric family is, for its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Decisions counted by decision kind and namespace, at most [`MAX_SERIES`] series.
#[derive(Debug, Default)]
pub struct DecisionCounts {
    state: Mutex<DecisionState>,
}

#[derive(Debug, Default)]
struct DecisionState {
    /// Per namespace, a count per [`DecisionKind`], indexed by [`kind_index`].
    namespaces: HashMap<Box<str>, [u64; KINDS.len()]>,
    /// Non-zero counts, the series rendered.
    series: usize,
}

/// Every decision kind, in the order series are rendered (by code).
const KINDS: [DecisionKind; 5] = [
    DecisionKind::Allow,
    DecisionKind::AuditDeny,
    DecisionKind::Deny,
    DecisionKind::Error,
    DecisionKind::Unspecified,
];

/// A histogram with [`DURATION_BUCKETS_MICROS`], rendered in seconds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative), the last one above every bound (`+Inf`).
    buckets: [AtomicU64; DURATION_BUCKETS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

// === impl Kind ===

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

// === impl DecisionCounts ===

impl DecisionCounts {
    /// Counts one decision of `kind` in `namespace`.
    pub fn add(&self, kind: DecisionKind, namespace: &str) {
        self.add_n(kind, namespace, 1);
    }

    /// Counts `n` decisions of `kind` in `namespace`.
    pub fn add_n(&self, kind: DecisionKind, namespace: &str, n: u64) {
        let at = kind_index(kind);
        let namespace = if namespace.len() > MAX_LABEL_BYTES {
            OVERFLOW
        } else {
            namespace
        };
        let mut state = lock(&self.state);
        let DecisionState { namespaces, series } = &mut *state;
        // The common case, a series already counting: one lookup, no allocation.
        if let Some(count) = namespaces
            .get_mut(namespace)
            .map(|counts| &mut counts[at])
            .filter(|count| **count > 0)
        {
            *count = count.saturating_add(n);
            return;
        }
        // A new series, or one past the bound.
        let namespace = if *series < MAX_SERIES {
            namespace
        } else {
            OVERFLOW
        };
        if !namespaces.contains_key(namespace) {
            namespaces.insert(namespace.into(), [0; KINDS.len()]);
        }
        if let Some(counts) = namespaces.get_mut(namespace) {
            if counts[at] == 0 {
                *series += 1;
            }
            counts[at] = counts[at].saturating_add(n);
        }
    }

    /// How many series the family holds.
    pub fn series(&self) -> usize {
        lock(&self.state).series
    }

    /// The count of `kind` in `namespace` (for tests and checks).
    pub fn count(&self, kind: DecisionKind, namespace: &str) -> u64 {
        lock(&self.state)
            .namespaces
            .get(namespace)
            .map_or(0, |counts| counts[kind_index(kind)])
    }

    /// Appends `crigate_decisions_total` with `help`.
    pub fn render(&self, out: &mut String, help: &str) {
        family(out, "crigate_decisions_total", Kind::Counter, help);
        let state = lock(&self.state);
        let mut namespaces: Vec<_> = state.namespaces.iter().collect();
        namespaces.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (at, kind) in KINDS.iter().enumerate() {
            for (namespace, counts) in &namespaces {
                let count = counts[at];
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "crigate_decisions_total{{decision=\"{}\",namespace=\"{}\"}} {count}",
                        kind.code(),
                        escape(namespace)
                    );
                }
            }
        }
    }
}

/// The index of `kind` in [`KINDS`].
fn kind_index(kind: DecisionKind) -> usize {
    match kind {
        DecisionKind::Allow => 0,
        DecisionKind::AuditDeny => 1,
        DecisionKind::Deny => 2,
        DecisionKind::Error => 3,
        DecisionKind::Unspecified => 4,
    }
}

// === impl Histogram ===

impl Histogram {
    /// Counts one observation of `duration`.
    pub fn observe(&self, duration: Duration) {
        self.observe_micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    /// Counts one observation of `micros` microseconds.
    pub fn observe_micros(&self, micros: u64) {
        let at = DURATION_BUCKETS_MICROS.partition_point(|bound| *bound < micros);
        if let Some(bucket) = self.buckets.get(at) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Appends the series of `name` with `labels` (`key="value"` pairs, already escaped,
    /// possibly empty). The family header is the caller's.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (at, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match DURATION_BUCKETS_MICROS.get(at) {
                Some(bound) => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                        *bound as f64 / 1e6
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                    );
                }
            }
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Appends a family's `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: Kind, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.code());
}

/// Appends `crigate_build_info{version,git_sha} 1`.
pub fn build_info(out: &mut String) {
    family(
        out,
        "crigate_build_info",
        Kind::Gauge,
        "The crigate version serving.",
    );
    let _ = writeln!(
        out,
        "crigate_build_info{{version=\"{}\",git_sha=\"{}\"}} 1",
        escape(env!("CARGO_PKG_VERSION")),
        escape(env!("CRIGATE_GIT_SHA"))
    );
}

/// A label value escaped as the exposition format requires: `\\`, `\"` and `\n`.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` over plain HTTP/1.1 on `listener` until `cancel`, answering
/// with `render()`. Anything else is a 404 or 405. At most [`MAX_CONNECTIONS`]
/// connections are served at once, each for at most [`MAX_CONNECTION_AGE`].
///
/// # Cancel safety
///
/// Dropping the future stops accepting; connections in progress are tasks of their own
/// and end with `cancel`.
pub async fn serve<R>(listener: TcpListener, render: R, cancel: CancellationToken)
where
    R: Fn() -> String + Clone + Send + Sync + 'static,
{
    serve_for(listener, render, cancel, MAX_CONNECTION_AGE).await;
}

/// [`serve`], each connection closed once it is `max_age` old: asked to close after its
/// current answer, and dropped [`HEADER_TIMEOUT`] later if that answer is not taken.
async fn serve_for<R>(
    listener: TcpListener,
    render: R,
    cancel: CancellationToken,
    max_age: Duration,
) where
    R: Fn() -> String + Clone + Send + Sync + 'static,
{
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Some((permit, tcp, addr)) =
            crate::tcp::accept_within(&listener, &permits, &cancel, "metrics").await
        else {
            break;
        };
        let render = render.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let handler = hyper::service::service_fn(move |request: Request<_>| {
                let render = render.clone();
                async move { Ok::<_, Infallible>(answer(&request, &render)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), handler);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%addr, %error, "metrics connection ended");
                    }
                }
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(HEADER_TIMEOUT, conn).await;
                }
                () = tokio::time::sleep(max_age) => {
                    conn.as_mut().graceful_shutdown();
                    if tokio::time::timeout(HEADER_TIMEOUT.min(max_age), conn).await.is_err() {
                        tracing::debug!(%addr, "metrics connection closed: its answer was not read");
                    }
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// The answer to one request for the metrics endpoint.
fn answer<B>(request: &Request<B>, render: &impl Fn() -> String) -> Response<Full<Bytes>> {
    let (status, body, content_type) = if request.uri().path() != METRICS_PATH {
        (
            StatusCode::NOT_FOUND,
            "try GET /metrics\n".to_owned(),
            "text/plain",
        )
    } else if request.method() != Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET\n".to_owned(),
            "text/plain",
        )
    } else {
        (StatusCode::OK, render(), CONTENT_TYPE)
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay meaningful after a panic elsewhere.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use super::*;

    /// Scrapers that ask and never read an answer larger than their socket buffers:
    /// once their connections are old enough, the slots are free again.
    #[tokio::test]
    async fn scrapers_that_stop_reading_do_not_hold_the_endpoint() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let render = || "x".repeat(4 << 20);
        let age = Duration::from_secs(1);
        let server = tokio::spawn(serve_for(listener, render, cancel.clone(), age));
        let mut stalled = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            stalled.push(tcp);
        }
        // Every slot taken: a ninth scrape is answered only once the others are closed.
        let mut ninth = TcpStream::connect(addr).await.unwrap();
        ninth
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), ninth.read_to_end(&mut answer));
        read.await
            .expect("the ninth scrape was not answered")
            .unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
        assert!(answer.len() > 4 << 20);
        cancel.cancel();
        server.await.unwrap();
    }

    #[test]
    fn decision_series_are_bounded_and_escaped() {
        let counts = DecisionCounts::default();
        for n in 0..MAX_SERIES + 5 {
            counts.add(DecisionKind::Allow, &format!("ns-{n}"));
        }
        // A known series keeps counting under its own name.
        counts.add(DecisionKind::Allow, "ns-0");
        assert_eq!(counts.series(), MAX_SERIES + 1);
        assert_eq!(counts.count(DecisionKind::Allow, OVERFLOW), 5);
        assert_eq!(counts.count(DecisionKind::Allow, "ns-0"), 2);
        // A value longer than any namespace or node name is not a series of its own.
        let long = DecisionCounts::default();
        long.add(DecisionKind::Deny, &"a".repeat(MAX_LABEL_BYTES));
        long.add(DecisionKind::Deny, &"a".repeat(MAX_LABEL_BYTES + 1));
        long.add(DecisionKind::Deny, &"b".repeat(200_000));
        assert_eq!(long.series(), 2);
        assert_eq!(long.count(DecisionKind::Deny, OVERFLOW), 2);
        let other = DecisionCounts::default();
        other.add(DecisionKind::Deny, "evil\"\n");
        let mut text = String::new();
        other.render(&mut text, "Decisions.");
        assert!(
            text.contains("crigate_decisions_total{decision=\"deny\",namespace=\"evil\\\"\\n\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_at_their_bounds() {
        let histogram = Histogram::default();
        // At the bound, 1 above it, and above every bound.
        for micros in [500, 501, 40_000_000] {
            histogram.observe_micros(micros);
        }
        let mut text = String::new();
        histogram.render(&mut text, "d", "phase=\"pull\"");
        assert!(
            text.contains("d_bucket{phase=\"pull\",le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("d_bucket{phase=\"pull\",le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_bucket{phase=\"pull\",le=\"30\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_bucket{phase=\"pull\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("d_count{phase=\"pull\"} 3\n"), "{text}");
        assert!(text.contains("d_sum{phase=\"pull\"} 40.001001\n"), "{text}");
        assert_eq!(histogram.count(), 3);
    }

    #[test]
    fn only_get_metrics_is_answered() {
        let render = || "x 1\n".to_owned();
        let get = |method: Method, path: &str| {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap();
            answer(&request, &render).status()
        };
        assert_eq!(get(Method::GET, "/metrics"), StatusCode::OK);
        assert_eq!(
            get(Method::POST, "/metrics"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(get(Method::GET, "/"), StatusCode::NOT_FOUND);
    }
}
