//! A raw HTTP/2 gRPC client, to see exactly what a CRI client receives: every header,
//! body byte and trailer, not what a gRPC library makes of them.
#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

/// Everything a response carried.
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl RawResponse {
    /// Reads a response whole.
    pub async fn read(response: http::Response<hyper::body::Incoming>) -> anyhow::Result<Self> {
        let (parts, body) = response.into_parts();
        let collected = body.collect().await?;
        let trailers = collected.trailers().cloned();
        Ok(RawResponse {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        })
    }

    /// The gRPC status code: from the trailers, or from the headers of a Trailers-Only
    /// response.
    pub fn grpc_status(&self) -> Option<i32> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// The decoded grpc-message.
    pub fn grpc_message(&self) -> String {
        let map = self
            .trailers
            .as_ref()
            .filter(|t| t.contains_key("grpc-status"))
            .unwrap_or(&self.headers);
        tonic::Status::from_header_map(map)
            .map(|s| s.message().to_owned())
            .unwrap_or_default()
    }
}

/// Makes one call on `socket` with `authority`, extra headers and a raw body.
pub async fn call_with_authority(
    socket: &Path,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<RawResponse> {
    let stream = UnixStream::connect(socket).await?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = grpc_request(authority, path, headers, body)?;
    RawResponse::read(sender.send_request(request).await?).await
}

/// A gRPC request as CRI clients send it, with extra headers and a raw body.
pub fn grpc_request(
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut request = Request::post(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(body))?;
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    Ok(request)
}

/// Makes one call on `socket` as kubelet does (`:authority` localhost).
pub async fn call(
    socket: &Path,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<RawResponse> {
    call_with_authority(socket, "localhost", path, headers, body).await
}

/// One client connection whose windows are `window` bytes and stay so.
pub async fn connect(
    socket: &Path,
    window: u32,
) -> (
    SendRequest<Full<Bytes>>,
    JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = UnixStream::connect(socket).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        .adaptive_window(false)
        .max_header_list_size(16 << 20)
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    (sender, tokio::spawn(connection))
}

/// One call on `sender`'s connection, read whole.
pub async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<RawResponse> {
    sender.ready().await?;
    RawResponse::read(sender.send_request(request).await?).await
}
