//! The HTTP/2 connection to the runtime's CRI socket.
//!
//! One connection is shared by all calls (HTTP/2 multiplexes them), as kubelet itself
//! does. It is made on first use and made again whenever the runtime closed it, so a
//! restarted containerd is picked up by the next call without restarting crigate.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::UnixStream;

use crate::proxy::body::ProxyBody;
use crate::proxy::status::ProxyError;
use crate::runtime::unix_channel;

/// One HTTP/2 connection; `generation` tells connections apart when one is dropped.
#[derive(Clone)]
struct Connection {
    generation: u64,
    sender: SendRequest<ProxyBody>,
}

/// The runtime's CRI endpoint.
pub struct Upstream {
    socket: PathBuf,
    connect_timeout: Duration,
    /// The live connection, if any, with its generation. Held only to clone or replace
    /// the handle.
    current: Mutex<Option<Connection>>,
    /// Source of connection generations.
    generations: AtomicU64,
    /// Serialises reconnection so that a burst of calls makes one connection, not many.
    connecting: tokio::sync::Mutex<()>,
    /// A gRPC client of the runtime's own (non-CRI) services on the same socket, made on
    /// first use and reconnecting by itself.
    native: std::sync::OnceLock<tonic::transport::Channel>,
}

// === impl Upstream ===

impl Upstream {
    pub fn new(socket: PathBuf, connect_timeout: Duration) -> Self {
        Self {
            socket,
            connect_timeout,
            current: Mutex::new(None),
            generations: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            native: std::sync::OnceLock::new(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A channel to the runtime's own gRPC services (containerd's images API), shared by
    /// every caller; it connects when first used.
    pub fn native(&self) -> tonic::transport::Channel {
        self.native
            .get_or_init(|| {
                let endpoint = tonic::transport::Endpoint::from_static("http://localhost")
                    .connect_timeout(self.connect_timeout);
                unix_channel(endpoint, self.socket.clone())
            })
            .clone()
    }

    /// Sends `request` to the runtime and returns its response head; the body streams.
    ///
    /// A request the runtime never received (the connection had closed under it) is
    /// retried once on a new connection.
    ///
    /// # Errors
    ///
    /// The runtime cannot be reached, or the connection failed with the request sent.
    pub async fn send(
        &self,
        request: http::Request<ProxyBody>,
    ) -> Result<http::Response<Incoming>, ProxyError> {
        let mut connection = self.connection().await?;
        match connection.sender.try_send_request(request).await {
            Ok(response) => Ok(response),
            Err(mut error) => match error.take_message() {
                Some(request) => {
                    tracing::debug!(error = %error.error(), "runtime connection closed before the request was sent; reconnecting");
                    self.forget(connection.generation);
                    let mut connection = self.connection().await?;
                    connection
                        .sender
                        .send_request(request)
                        .await
                        .map_err(|error| self.unavailable(&error))
                }
                None => Err(self.unavailable(error.error())),
            },
        }
    }

    /// A handle on a live connection, connecting if there is none.
    async fn connection(&self) -> Result<Connection, ProxyError> {
        if let Some(connection) = self.live() {
            return Ok(connection);
        }
        let _connecting = self.connecting.lock().await;
        // Another call may have connected while this one waited.
        if let Some(connection) = self.live() {
            return Ok(connection);
        }
        let sender = tokio::time::timeout(self.connect_timeout, self.connect())
            .await
            .map_err(|_| ProxyError::UpstreamConnectTimeout {
                socket: self.socket.clone().into_boxed_path(),
                timeout: self.connect_timeout,
            })??;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let connection = Connection { generation, sender };
        *self.lock() = Some(connection.clone());
        Ok(connection)
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, ProxyError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|error| self.unavailable(&error))?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            // grpc-go's server sends no limit; hyper's client would otherwise cap the
            // header block at 16 KiB, below what a large grpc-message trailer may need.
            .max_header_list_size(1024 * 1024)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| self.unavailable(&error))?;
        let socket = self.socket.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(upstream = %socket.display(), %error, "runtime connection ended");
            } else {
                tracing::debug!(upstream = %socket.display(), "runtime connection closed");
            }
        });
        tracing::debug!(upstream = %self.socket.display(), "connected to the runtime");
        Ok(sender)
    }

    /// The cached connection, unless it has closed.
    fn live(&self) -> Option<Connection> {
        self.lock()
            .as_ref()
            .filter(|c| !c.sender.is_closed())
            .cloned()
    }

    /// Marks connection `generation` as dead, unless it was already replaced.
    fn forget(&self, generation: u64) {
        let mut current = self.lock();
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            *current = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        // A panic while holding this lock cannot leave the Option inconsistent.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn unavailable(&self, error: &dyn std::fmt::Display) -> ProxyError {
        ProxyError::UpstreamUnavailable {
            socket: self.socket.clone().into_boxed_path(),
            reason: error.to_string(),
        }
    }
}
