//! Every answer crigate itself gives a CRI client, as a gRPC status, made in one place.
//!
//! A status crigate produces is a "Trailers-Only" response (gRPC over HTTP/2): HTTP 200,
//! `content-type: application/grpc`, `grpc-status` and `grpc-message` in the headers and
//! no body. Messages are prefixed `crigate:` so a person reading kubelet's events or
//! crictl's output can tell crigate's answers from the runtime's.

use std::path::Path;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::Response;
use tonic::{Code, Status};

use crate::proxy::body::ProxyBody;
use crate::proxy::intercept::DecodeError;

/// Why crigate answered a call itself instead of relaying the runtime's answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot reach the container runtime at {socket}: {reason}")]
    UpstreamUnavailable { socket: Box<Path>, reason: String },
    #[error("no connection to the container runtime at {socket} within {timeout:?}")]
    UpstreamConnectTimeout {
        socket: Box<Path>,
        timeout: Duration,
    },
    #[error("the container runtime at {socket} broke off its answer: {reason}")]
    UpstreamReset { socket: Box<Path>, reason: String },
    #[error("invalid {method} request: {source}")]
    InvalidRequest {
        method: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error("{method} request is larger than the {limit}-byte limit (cri.max_message_bytes)")]
    RequestTooLarge { method: &'static str, limit: usize },
    #[error("{method} request body could not be read: {reason}")]
    RequestAborted {
        method: &'static str,
        reason: String,
    },
    #[error(
        "method {path} is not a CRI method and is not forwarded (cri.other_services = \"deny\")"
    )]
    OtherServiceRefused { path: String },
    #[error("unknown CRI method {path} is not forwarded (cri.unknown_methods = \"deny\")")]
    UnknownMethodRefused { path: String },
    #[error("{0}")]
    Denied(String),
    #[error(
        "the caller's deadline (grpc-timeout) passed before its {method} was decided and passed on"
    )]
    DeadlineExceeded { method: &'static str },
}

// === impl ProxyError ===

impl ProxyError {
    /// The gRPC code a CRI client receives. Chosen for what clients do with it: kubelet
    /// and grpc-go retry UNAVAILABLE; INVALID_ARGUMENT and RESOURCE_EXHAUSTED are what
    /// the runtime itself answers for a malformed or oversized message; PERMISSION_DENIED
    /// marks a decision, which kubelet reports in pod events and retries with back-off.
    pub fn code(&self) -> Code {
        match self {
            ProxyError::UpstreamUnavailable { .. }
            | ProxyError::UpstreamConnectTimeout { .. }
            | ProxyError::UpstreamReset { .. } => Code::Unavailable,
            ProxyError::InvalidRequest { .. } => Code::InvalidArgument,
            ProxyError::RequestTooLarge { .. } => Code::ResourceExhausted,
            ProxyError::RequestAborted { .. } => Code::Cancelled,
            ProxyError::OtherServiceRefused { .. } | ProxyError::UnknownMethodRefused { .. } => {
                Code::Unimplemented
            }
            ProxyError::Denied(_) => Code::PermissionDenied,
            ProxyError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        }
    }

    /// The response sent to the client.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = Status::new(self.code(), format!("crigate: {self}"));
        trailers_only(&status)
    }
}

/// A Trailers-Only gRPC response carrying `status`.
pub fn trailers_only(status: &Status) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::empty());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    if status.add_header(headers).is_err() {
        // Only a message that cannot be percent-encoded into a header value fails here,
        // and tonic percent-encodes every byte that could; keep the code regardless.
        headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_names_the_socket() {
        let error = ProxyError::UpstreamUnavailable {
            socket: Path::new("/run/containerd/containerd.sock").into(),
            reason: "connection refused".into(),
        };
        assert_eq!(error.code(), Code::Unavailable);
        let response = error.into_response();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().contains("/run/containerd/containerd.sock"),
            "{}",
            status.message()
        );
        assert!(status.message().starts_with("crigate: "));
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert!(response.headers().get("date").is_none());
    }

    #[test]
    fn non_ascii_messages_survive_the_header() {
        let response = ProxyError::Denied("image «app» refusé\nnext line".into()).into_response();
        let status = Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "crigate: image «app» refusé\nnext line");
    }
}
