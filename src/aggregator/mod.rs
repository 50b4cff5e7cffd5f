//! The cluster audit aggregator (`crigate aggregator`): receives every node's audit
//! records over mutual TLS, stores each once, and answers queries.
//!
//! ```text
//! node shipper ──gRPC AuditIngest.Ship, mTLS──▶ ingest ──▶ storage (SQLite, WAL)
//! crigate audit query ──HTTPS GET /v1/records, bearer token──▶ query ──┘
//! ```
//!
//! - [`config`]: the aggregator's own TOML file.
//! - [`tls`]: server TLS, and the node identity of a client certificate (first DNS SAN,
//!   else CN), which every record of its stream must carry.
//! - [`ingest`]: the gRPC service (`proto/crigate/audit/v1/ingest.proto`).
//! - [`storage`]: versioned schema, idempotent inserts keyed by node and record id, retention.
//! - [`query`]: the HTTP JSON endpoint, and `/metrics` ([`metrics`]).
//!
//! It leaves producing records to the node ([`crate::audit`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::proto::audit_ingest_server::AuditIngestServer;
use crate::registry::Secret;

pub mod config;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod storage;
pub mod tls;

pub use config::AggregatorConfig;

/// Largest token file read: a bearer token is tens of bytes.
const MAX_TOKEN_BYTES: u64 = 4096;

/// Authenticated connections waiting for the gRPC server to take them.
const ACCEPT_QUEUE: usize = 64;

/// Streams one node connection may have open. A node ships on one; a few let a node
/// open its next while the last ends. (Each node has one stream at a time anyway: see
/// [`ingest::Ingest`].)
const INGEST_STREAMS_PER_CONNECTION: u32 = 4;

/// How often an ingest connection is pinged, and how long its answer may take: a node
/// whose host vanished is found by its silence, and its stream ended.
const INGEST_KEEPALIVE: Duration = Duration::from_secs(30);

/// TLS handshakes on the ingest port in progress at once. Anyone on the network can
/// start one; past this, connections wait in the kernel's backlog until one ends.
const INGEST_HANDSHAKES: usize = 256;

/// Query connections open at once (an operator's `crigate audit query`, a Prometheus
/// scrape). Anyone on the network can open one; past this, connections wait in the
/// kernel's backlog.
const QUERY_CONNECTIONS: usize = 64;

/// The most bytes of a query request's head buffered: a query's URL is short.
const QUERY_HEAD_BYTES: usize = 64 * 1024;

/// Time a query client has to send a request's headers, the first or, on a kept-alive
/// connection, the next: a connection that sends nothing is closed, not kept forever.
const QUERY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the aggregator could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("TLS material")]
    Tls(#[from] crate::audit::tls::Error),
    #[error("cannot read the token file {path}")]
    Token {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the token file {path} is empty or larger than {MAX_TOKEN_BYTES} bytes")]
    TokenSize { path: std::path::PathBuf },
    #[error("storage")]
    Storage(#[from] storage::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the ingest server failed")]
    Serve(#[source] tonic::transport::Error),
}

// === impl Error ===

impl Error {
    /// The configuration is at fault (a file it names cannot be used): restarting will
    /// not help.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Error::Tls(_) | Error::Token { .. } | Error::TokenSize { .. }
        )
    }
}

/// An aggregator with its files read and its ports bound, ready to serve.
pub struct Aggregator {
    config: AggregatorConfig,
    ingest_tls: TlsAcceptor,
    query_tls: TlsAcceptor,
    store: storage::Storage,
    token: Secret,
    ingest_listener: TcpListener,
    query_listener: TcpListener,
}

// === impl Aggregator ===

impl Aggregator {
    /// Reads the TLS material and token, opens the database and binds both ports.
    ///
    /// # Errors
    ///
    /// A file cannot be used, the database cannot be opened, or a port is taken.
    pub async fn bind(config: AggregatorConfig) -> Result<Self, Error> {
        let ingest_tls = TlsAcceptor::from(tls::ingest_config(
            &config.cert_file,
            &config.key_file,
            &config.client_ca_file,
        )?);
        let query_tls = TlsAcceptor::from(tls::query_config(&config.cert_file, &config.key_file)?);
        let token = read_token(&config.token_file)?;
        let store = match &config.postgres {
            Some(url) => storage::Storage::Postgres(
                storage::postgres::Store::connect(url, config.postgres_ca_file.as_deref()).await?,
            ),
            None => {
                let path = config.database.clone();
                storage::Storage::Sqlite(
                    tokio::task::spawn_blocking(move || storage::Store::open(&path))
                        .await
                        .map_err(|e| Error::Storage(storage::Error::Task(e)))??,
                )
            }
        };
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })
        };
        let ingest_listener = bind(config.listen).await?;
        let query_listener = bind(config.query_listen).await?;
        Ok(Self {
            config,
            ingest_tls,
            query_tls,
            store,
            token,
            ingest_listener,
            query_listener,
        })
    }

    /// The bound ingest and query addresses.
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (
            self.ingest_listener.local_addr().ok(),
            self.query_listener.local_addr().ok(),
        )
    }

    /// Serves until `cancel`, then gives in-flight work `drain_timeout` to finish.
    ///
    /// # Errors
    ///
    /// The gRPC server failed.
    pub async fn serve(self, cancel: CancellationToken) -> Result<(), Error> {
        let tracker = TaskTracker::new();
        let (ingest_addr, query_addr) = self.local_addrs();
        let (conns, incoming) = mpsc::channel(ACCEPT_QUEUE);
        tracker.spawn(accept_ingest(
            self.ingest_listener,
            self.ingest_tls,
            self.config.handshake_timeout,
            conns,
            cancel.clone(),
            tracker.clone(),
        ));
        let metrics = Arc::new(metrics::Metrics::default());
        let service = QueryServiceHandle(query::QueryService::new(
            self.store.clone(),
            self.token,
            Arc::clone(&metrics),
        ));
        tracker.spawn(serve_query(
            self.query_listener,
            self.query_tls,
            self.config.handshake_timeout,
            service,
            cancel.clone(),
            tracker.clone(),
        ));
        tracker.spawn(retain(
            self.store.clone(),
            self.config.retention,
            self.config.retention_interval,
            cancel.clone(),
        ));
        let ingest =
            ingest::Ingest::new(self.store.clone(), metrics, tracker.clone(), cancel.clone());
        tracing::info!(
            ingest = ?ingest_addr,
            query = ?query_addr,
            database = if self.config.postgres.is_some() { "postgresql" } else { "sqlite" },
            "aggregator serving"
        );
        let served = tonic::transport::Server::builder()
            // A node ships on one stream; a few allow a reconnect while an old one ends.
            .max_concurrent_streams(Some(INGEST_STREAMS_PER_CONNECTION))
            // A node that vanished (its host powered off) is found by its silence, and
            // its stream ended, however idle the stream was meant to be.
            .http2_keepalive_interval(Some(INGEST_KEEPALIVE))
            .http2_keepalive_timeout(Some(INGEST_KEEPALIVE))
            .add_service(
                AuditIngestServer::new(ingest).max_decoding_message_size(ingest::MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(ReceiverStream::new(incoming), cancel.cancelled_owned())
            .await;
        tracker.close();
        let drained = tokio::time::timeout(self.config.drain_timeout, tracker.wait())
            .await
            .is_ok();
        tracing::info!(drained, "aggregator stopped");
        served.map_err(Error::Serve)
    }
}

#[derive(Clone)]
struct QueryServiceHandle(Arc<query::QueryService>);

/// Accepts TCP connections and runs each handshake as a task of its own, so a slow
/// client cannot hold up the others. A handshake that fails (no client certificate, one
/// from another CA) is logged and the connection dropped.
async fn accept_ingest(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    conns: mpsc::Sender<Result<tls::PeerStream, std::io::Error>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(INGEST_HANDSHAKES));
    loop {
        let Some((permit, tcp, addr)) =
            crate::tcp::accept_within(&listener, &handshakes, &cancel, "ingest").await
        else {
            break;
        };
        // Each answer is a small write that the node waits for before its next batch:
        // with Nagle's algorithm it would wait for the node's delayed ACK (40 ms on
        // Linux) on every batch.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%addr, %error, "cannot set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let conns = conns.clone();
        tracker.spawn(async move {
            let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
            drop(permit);
            match handshake {
                Ok(Ok(stream)) => match tls::PeerStream::new(stream, addr) {
                    Some(stream) => {
                        tracing::debug!(node = %stream.peer().node, %addr, "node connected");
                        let _ = conns.send(Ok(stream)).await;
                    }
                    None => {
                        tracing::warn!(%addr, "refused a client certificate that names no node");
                    }
                },
                Ok(Err(error)) => {
                    tracing::warn!(%addr, %error, "refused an ingest connection: TLS handshake failed");
                }
                Err(_) => {
                    tracing::warn!(%addr, timeout = ?handshake_timeout, "refused an ingest connection: TLS handshake timed out");
                }
            }
        });
    }
}

/// Serves the query endpoint: HTTP/1.1 over TLS, one task per connection.
async fn serve_query(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    service: QueryServiceHandle,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(QUERY_CONNECTIONS));
    loop {
        let Some((permit, tcp, addr)) =
            crate::tcp::accept_within(&listener, &connections, &cancel, "query").await
        else {
            break;
        };
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%addr, %error, "cannot set TCP_NODELAY");
        }
        let acceptor = acceptor.clone();
        let service = service.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%addr, %error, "query connection: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let handler =
                hyper::service::service_fn(move |request| Arc::clone(&service.0).handle(request));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(QUERY_HEADER_TIMEOUT)
                .max_buf_size(QUERY_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), handler);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%addr, %error, "query connection ended");
                    }
                }
                () = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Deletes records received longer than `retention` ago, every `interval`.
async fn retain(
    store: storage::Storage,
    retention: Duration,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let cutoff = crate::audit::now_unix_nanos()
            .saturating_sub(i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX));
        match store.delete_before(cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, ?retention, "deleted records past retention"),
            Err(error) => tracing::warn!(%error, "retention delete failed"),
        }
    }
}

/// Reads the query token: surrounding whitespace trimmed, not empty.
fn read_token(path: &std::path::Path) -> Result<Secret, Error> {
    use std::io::Read;
    let io = |source| Error::Token {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut raw = zeroize::Zeroizing::new(String::new());
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_string(&mut raw)
        .map_err(io)?;
    let token = raw.trim();
    if token.is_empty() || raw.len() as u64 > MAX_TOKEN_BYTES {
        return Err(Error::TokenSize {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(token))
}
