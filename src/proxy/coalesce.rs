//! Fewer, larger writes on the proxy's HTTP/2 connections.
//!
//! A relayed unary call is a handful of small frames in each direction: HEADERS and DATA
//! for the request, HEADERS, DATA and trailing HEADERS for the response. They reach the
//! proxy together, but the HTTP/2 codec flushes whatever it holds each time it runs, and
//! the frames of one call become ready in separate runs (the headers when the call is
//! routed, the body when the task relaying it runs next). Each flush is a `write` and
//! wakes the peer; on a small machine those wake-ups cost more than the codec's work.
//!
//! [`Coalesce`] holds written bytes until a flush, and lets the first flush of a batch
//! wait for one pass of the scheduler, so that frames which become ready in that pass go
//! out in the same `write`. The wait is one yield, never a timer: nothing is delayed once
//! the runtime has no other ready work, and a streaming response's frames still leave as
//! they come.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Held bytes beyond which a write first drains them to the socket, so a peer that does
/// not read bounds this buffer as it bounds the socket's.
const MAX_PENDING: usize = 64 * 1024;

/// A stream whose writes are gathered until a flush, the first flush deferred by one yield.
#[derive(Debug)]
pub struct Coalesce<S> {
    inner: S,
    /// Bytes accepted and not yet written; `pending[written..]` remains.
    pending: Vec<u8>,
    written: usize,
    /// Whether the current batch's flush already yielded once.
    yielded: bool,
}

// === impl Coalesce ===

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
            yielded: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes every held byte to the stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for more bytes: drains first once the held bytes reach the bound.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.len() - self.written >= MAX_PENDING {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        this.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        let mut n = 0;
        for buf in bufs {
            this.pending.extend_from_slice(buf);
            n += buf.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.written < this.pending.len() {
            if !this.yielded {
                // Let the tasks made ready by this batch run, then flush what they added.
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_reach_the_peer_only_at_a_flush_and_in_one_piece() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut io = Coalesce::new(near);
        io.write_all(b"HEADERS").await.unwrap();
        io.write_all(b"DATA").await.unwrap();
        let mut buf = [0u8; 64];
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), far.read(&mut buf));
        assert!(early.await.is_err(), "bytes left before the flush");
        io.flush().await.unwrap();
        let n = far.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"HEADERSDATA");
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_bounds_the_held_bytes() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut io = Coalesce::new(near);
        let chunk = vec![7u8; 8 * 1024];
        let mut accepted = 0;
        // Without a reader, writes stop once the bound and the pipe's capacity are full.
        loop {
            let write =
                tokio::time::timeout(std::time::Duration::from_millis(20), io.write(&chunk));
            match write.await {
                Ok(n) => accepted += n.unwrap(),
                Err(_) => break,
            }
        }
        assert!(
            accepted <= MAX_PENDING + chunk.len(),
            "held {accepted} bytes"
        );
        let mut drained = vec![0u8; accepted];
        let (read, flushed) = tokio::join!(far.read_exact(&mut drained), io.flush());
        read.unwrap();
        flushed.unwrap();
        assert!(drained.iter().all(|b| *b == 7));
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_held() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut io = Coalesce::new(near);
        io.write_all(b"GOAWAY").await.unwrap();
        io.shutdown().await.unwrap();
        let mut all = Vec::new();
        far.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GOAWAY");
    }
}
