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

/// The client connection preface (RFC 9113 §3.4), for tests that write frames by hand.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The header block of a gRPC call of `path` as a client writes it, for tests that write
/// frames by hand: literal fields without indexing, new names, no Huffman coding (RFC
/// 7541 §6.2.2), so it leaves no HPACK state behind.
pub fn literal_request_block(path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// A frame as read off the wire: type, flags, stream id and payload.
pub type RawFrame = (u8, u8, u32, Vec<u8>);

/// A frame of type `kind` with `flags` on `stream`, carrying `payload`, as it goes on
/// the wire (RFC 9113 §4.1).
pub fn encode_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().to_be_bytes();
    let mut out = vec![len[5], len[6], len[7], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Takes the first whole frame off the front of `buf`; `None` while it holds none.
pub fn next_frame(buf: &mut Vec<u8>) -> Option<RawFrame> {
    let head = buf.get(..9)?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let (kind, flags) = (head[3], head[4]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let payload = buf.get(9..9 + len)?.to_vec();
    buf.drain(..9 + len);
    Some((kind, flags, stream, payload))
}
