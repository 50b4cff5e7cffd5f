//! The one body type crigate sends in both directions.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

pin_project_lite::pin_project! {
    /// A body relayed frame by frame from the other side, or one crigate holds whole.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        /// Frames (data and trailers) passed on as they arrive; HTTP/2 flow control of
        /// both connections bounds what is buffered in between.
        Relay { #[pin] body: Incoming },
        /// A body crigate has in memory: an intercepted request, a response it read
        /// whole (with the runtime's trailers), or nothing.
        Full { data: Option<Bytes>, trailers: Option<HeaderMap> },
    }
}

// === impl ProxyBody ===

impl ProxyBody {
    pub fn relay(body: Incoming) -> Self {
        ProxyBody::Relay { body }
    }

    pub fn full(data: Bytes) -> Self {
        ProxyBody::Full {
            data: (!data.is_empty()).then_some(data),
            trailers: None,
        }
    }

    /// A body read whole, sent again as its data and then its trailers.
    pub fn with_trailers(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        ProxyBody::Full {
            data: (!data.is_empty()).then_some(data),
            trailers,
        }
    }

    pub fn empty() -> Self {
        ProxyBody::Full {
            data: None,
            trailers: None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ProxyBodyProj::Relay { body } => body.poll_frame(cx),
            ProxyBodyProj::Full { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Relay { body } => body.is_end_stream(),
            ProxyBody::Full { data, trailers } => data.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Relay { body } => body.size_hint(),
            ProxyBody::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
