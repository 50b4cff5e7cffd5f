//! A stand-in for the runtime's CRI socket, for what the real containerd cannot show.
//!
//! containerd 1.6 answers GetContainerEvents with UNIMPLEMENTED, and it cannot be made to
//! answer slowly, send a 16 MiB message, or send custom trailers on request. This small
//! HTTP/2 server can: each behaviour is chosen by the method name, and every request it
//! receives is recorded, so tests can check what crigate forwarded byte for byte. Tests
//! that use it say so; transparency against the real runtime is tested with containerd.
#![allow(dead_code)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::net::UnixListener;

pub const ECHO: &str = "/runtime.v1.RuntimeService/StandinEcho";
pub const BIG: &str = "/runtime.v1.RuntimeService/StandinBig";
pub const SLOW: &str = "/runtime.v1.RuntimeService/StandinSlow";
pub const ERROR: &str = "/runtime.v1.RuntimeService/StandinError";
pub const EVENTS: &str = "/runtime.v1.RuntimeService/GetContainerEvents";

/// One request as the stand-in received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub authority: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The client cancelled the request before its body was complete.
    pub cancelled: bool,
}

/// A running stand-in runtime.
pub struct StandIn {
    pub socket: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Tells every open connection to shut down gracefully (GOAWAY), as a runtime that
    /// is stopping does.
    going_away: Arc<tokio::sync::Notify>,
}

impl StandIn {
    /// Starts serving on `socket`.
    pub fn start(socket: &Path) -> Self {
        let listener = UnixListener::bind(socket).expect("bind stand-in");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let tasks = connections.clone();
        let going_away = Arc::new(tokio::sync::Notify::new());
        let notified = going_away.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let recorded = recorded.clone();
                let notified = notified.clone();
                let connection = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(request, recorded.clone())
                    });
                    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .auto_date_header(false)
                        .max_concurrent_streams(None)
                        // As grpc-go, which allows 16 MiB of headers.
                        .max_header_list_size(16 << 20)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => return,
                        () = notified.notified() => connection.as_mut().graceful_shutdown(),
                    }
                    let _ = connection.await;
                });
                tasks.lock().unwrap().push(connection);
            }
        });
        Self {
            socket: socket.to_owned(),
            seen,
            task,
            connections,
            going_away,
        }
    }

    /// Sends GOAWAY on every open connection; calls in flight finish, and new
    /// connections are still accepted.
    pub fn go_away(&self) {
        self.going_away.notify_waiters();
    }

    /// Every request received whole so far.
    pub fn seen(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| !s.cancelled).cloned().collect()
    }

    /// The requests whose head arrived but which the client cancelled before their body
    /// was complete.
    pub fn cancelled(&self) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.cancelled).cloned().collect()
    }

    /// Requests received for `path`.
    pub fn seen_on(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    /// Waits (up to 10 s) until a call on `path` has reached the stand-in, its request
    /// read whole: a call on `SLOW` is then in flight for its delay.
    pub async fn reached(&self, path: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.seen_on(path).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no call on {path} reached the stand-in within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        // Gone as a crashed runtime is: no listener, no connections.
        self.task.abort();
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(
    request: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let collected = body.collect().await.map(|c| c.to_bytes()).ok();
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        authority: parts.uri.authority().map(|a| a.to_string()),
        headers: parts.headers.clone(),
        body: collected.clone().unwrap_or_default(),
        cancelled: collected.is_none(),
    });
    // A request whose body never came whole was never a call a runtime could act on: a
    // gRPC server decodes the request message before it runs any method.
    let Some(body) = collected else {
        return Ok(Response::new(Full::new(Bytes::new()).boxed()));
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let response = match path.as_str() {
        ECHO => echo(&parts.headers, body),
        SLOW => {
            let delay = header("x-delay-ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            echo(&parts.headers, body)
        }
        BIG => {
            let size: usize = header("x-size")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1024);
            let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            unary(grpc_frame(&payload), ok_trailers())
        }
        ERROR => {
            let mut response = Response::new(Full::new(Bytes::new()).boxed());
            let h = response.headers_mut();
            h.insert("content-type", HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from_static("5"));
            h.insert(
                "grpc-message",
                HeaderValue::from_static("thing%20not%20found"),
            );
            h.insert(
                "grpc-status-details-bin",
                HeaderValue::from_static("CAUSBnRoaW5n"),
            );
            response
        }
        EVENTS => events(header("x-count").and_then(|v| v.parse().ok()).unwrap_or(5)),
        p if p.ends_with("/PullImage") => unary(
            grpc_frame(
                &k8s_cri::v1::PullImageResponse {
                    image_ref: "sha256:standin".into(),
                }
                .encode_to_vec(),
            ),
            ok_trailers(),
        ),
        p if p.ends_with("/CreateContainer") => unary(
            grpc_frame(
                &k8s_cri::v1::CreateContainerResponse {
                    container_id: "standin".into(),
                }
                .encode_to_vec(),
            ),
            ok_trailers(),
        ),
        _ => {
            let mut response = Response::new(Full::new(Bytes::new()).boxed());
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            response
                .headers_mut()
                .insert("grpc-status", HeaderValue::from_static("12"));
            response
        }
    };
    Ok(response)
}

/// Echoes the body, reflects the request's metadata, and sends a custom trailer.
fn echo(request: &HeaderMap, body: Bytes) -> Response<Body> {
    let mut trailers = ok_trailers();
    trailers.insert("x-trailer", HeaderValue::from_static("kept"));
    let mut response = unary(body, trailers);
    let headers = response.headers_mut();
    headers.insert("x-standin", HeaderValue::from_static("yes"));
    if let Some(meta) = request.get("x-meta") {
        headers.insert("x-meta-echo", meta.clone());
    }
    if let Some(timeout) = request.get("grpc-timeout") {
        headers.insert("x-saw-grpc-timeout", timeout.clone());
    }
    response
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers
}

fn unary(body: Bytes, trailers: HeaderMap) -> Response<Body> {
    let frames = futures_util::stream::iter([Ok(Frame::data(body)), Ok(Frame::trailers(trailers))]);
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// `count` ContainerEventResponse messages, 100 ms apart, then OK.
fn events(count: usize) -> Response<Body> {
    let stream = futures_util::stream::iter(0..count)
        .then(|i| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let event = k8s_cri::v1::ContainerEventResponse {
                container_id: format!("c{i}"),
                ..Default::default()
            };
            Ok(Frame::data(grpc_frame(&event.encode_to_vec())))
        })
        .chain(futures_util::stream::iter([Ok(Frame::trailers(
            ok_trailers(),
        ))]));
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// One uncompressed gRPC length-prefixed message.
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}
