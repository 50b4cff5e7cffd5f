//! The step every TCP accept loop shares: the aggregator's ingest and query ports and the
//! node's metrics port. (The CRI socket is a unix socket; `proxy::server` has its own.)

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Pause after a failed accept (out of file descriptors, say), so a run of failures does
/// not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The next connection on `listener`, or `None` once `cancel` fires. A failed accept is
/// logged at `warn` with `endpoint` and retried after a pause.
///
/// # Cancel safety
///
/// Cancel safe: a connection is only taken off the listener when it is returned.
pub async fn accept(
    listener: &TcpListener,
    cancel: &CancellationToken,
    endpoint: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => return Some(accepted),
                Err(error) => {
                    tracing::warn!(endpoint, %error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
}
