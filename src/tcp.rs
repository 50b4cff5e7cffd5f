//! The step every TCP accept loop shares: the aggregator's ingest and query ports and the
//! node's metrics port. (The CRI socket is a unix socket; `proxy::server` has its own.)

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
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

/// As [`accept`], once one of `permits` is free: the connection holds it for as long as
/// it keeps the permit, and while none is free the listener is not read, so connections
/// wait in the kernel's backlog, not in crigate's memory.
///
/// # Cancel safety
///
/// Cancel safe, as [`accept`].
pub async fn accept_within(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    cancel: &CancellationToken,
    endpoint: &'static str,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = tokio::select! {
        () = cancel.cancelled() => return None,
        permit = Arc::clone(permits).acquire_owned() => permit.ok()?,
    };
    let (tcp, addr) = accept(listener, cancel, endpoint).await?;
    Some((permit, tcp, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every permit held, the listener is not read: the next connection is taken
    /// only once a permit is given back.
    #[tokio::test]
    async fn a_connection_is_taken_only_with_a_permit() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let permits = Arc::new(Semaphore::new(1));
        let cancel = CancellationToken::new();
        let _first_client = TcpStream::connect(addr).await.unwrap();
        let (first, _, _) = accept_within(&listener, &permits, &cancel, "test")
            .await
            .unwrap();
        let _second_client = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(
            Duration::from_millis(300),
            accept_within(&listener, &permits, &cancel, "test"),
        )
        .await;
        assert!(waiting.is_err(), "a connection was taken without a permit");
        drop(first);
        let (_second, _, _) = tokio::time::timeout(
            Duration::from_secs(5),
            accept_within(&listener, &permits, &cancel, "test"),
        )
        .await
        .expect("taken once a permit is free")
        .unwrap();
    }
}
