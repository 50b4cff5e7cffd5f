//! The frame relay's own duties, against the stand-in runtime (standin.rs says why a
//! stand-in: a runtime that answers slowly, sends 4 MiB on request or vanishes mid-call).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

use crate::client::{call, connect, grpc_request, next_frame, send, RawResponse, PREFACE};
use crate::daemon::{Crigate, Options};
use crate::proxy::{pull_body, setup};
use crate::standin::{self, StandIn};

const OK: i32 = 0;
const UNAVAILABLE: i32 = 14;

fn request(path: &str, headers: &[(&str, &str)], body: Bytes) -> Request<Full<Bytes>> {
    grpc_request("localhost", path, headers, body).unwrap()
}

/// A call of the stand-in's echo method on `sender`'s connection.
async fn echo(sender: &mut SendRequest<Full<Bytes>>) -> RawResponse {
    send(sender, request(standin::ECHO, &[], Bytes::new()))
        .await
        .unwrap()
}

/// Sends `request` on a task of its own, on the same connection as `sender`.
fn spawn_send(
    sender: &SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> JoinHandle<anyhow::Result<RawResponse>> {
    let mut sender = sender.clone();
    tokio::spawn(async move { send(&mut sender, request).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_crigate_frames_itself_share_the_client_window_with_relayed_data() {
    let s = setup("");
    let (mut sender, connection) = connect(&s.crigate.socket, 65_535).await;
    let size = 4 * 1024 * 1024;
    sender.ready().await.unwrap();
    let big = sender
        .send_request(request(
            standin::BIG,
            &[("x-size", &size.to_string())],
            Bytes::new(),
        ))
        .await
        .unwrap();
    // The body is not read yet: the runtime fills the client's connection window, which
    // the gated calls' answers (framed by crigate, not the runtime) need as well.
    let pulls: Vec<_> = (0..20)
        .map(|i| {
            let body = pull_body(&format!("reg/app:{i}"), "ns");
            spawn_send(
                &sender,
                request("/runtime.v1.ImageService/PullImage", &[], body),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let collected = tokio::time::timeout(Duration::from_secs(20), big.into_body().collect())
        .await
        .expect("relayed body stalled")
        .expect("relayed body broke");
    let trailers = collected.trailers().cloned();
    let body = collected.to_bytes();
    assert_eq!(body.len(), size + 5);
    let expected: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    assert_eq!(Sha256::digest(&body[5..]), Sha256::digest(&expected));
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    for pull in pulls {
        let response = tokio::time::timeout(Duration::from_secs(10), pull)
            .await
            .expect("gated call stalled")
            .unwrap()
            .unwrap();
        assert_eq!(response.grpc_status(), Some(OK));
        let answer = k8s_cri::v1::PullImageResponse::decode(&response.body[5..]).unwrap();
        assert_eq!(answer.image_ref, "sha256:standin");
    }
    // Neither peer saw a flow-control error: the connection is still up and usable.
    assert!(!connection.is_finished());
    let response = echo(&mut sender).await;
    assert_eq!(response.grpc_status(), Some(OK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_lost_mid_call_fails_it_unavailable_and_the_connection_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let socket = standin.socket.display().to_string();
    let crigate =
        Crigate::start(dir.path(), Options::new(dir.path(), &standin.socket, "")).unwrap();
    let (mut sender, _connection) = connect(&crigate.socket, 1 << 20).await;
    let slow = spawn_send(
        &sender,
        request(standin::SLOW, &[("x-delay-ms", "5000")], Bytes::new()),
    );
    standin.reached(standin::SLOW).await;
    drop(standin);
    let response = tokio::time::timeout(Duration::from_secs(3), slow)
        .await
        .expect("call not ended when the runtime went")
        .unwrap()
        .unwrap();
    assert_eq!(response.grpc_status(), Some(UNAVAILABLE));
    assert!(
        response.grpc_message().contains(&socket),
        "{}",
        response.grpc_message()
    );
    // The same connection answers the next call itself.
    let response = echo(&mut sender).await;
    assert_eq!(response.grpc_status(), Some(UNAVAILABLE));
    assert!(
        response.grpc_message().contains(&socket),
        "{}",
        response.grpc_message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_moved_to_a_relayed_connection_once_the_runtime_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = dir.path().join("late.sock");
    let crigate = Crigate::start(dir.path(), Options::new(dir.path(), &upstream, "")).unwrap();
    let (mut sender, connection) = connect(&crigate.socket, 1 << 20).await;
    let response = echo(&mut sender).await;
    assert_eq!(response.grpc_status(), Some(UNAVAILABLE));
    let standin = StandIn::start(&upstream);
    // crigate sends GOAWAY once the runtime accepts connections; the client closes.
    tokio::time::timeout(Duration::from_secs(3), connection)
        .await
        .expect("connection not moved")
        .unwrap()
        .unwrap();
    let response = call(&crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(OK));
    assert_eq!(standin.seen_on(standin::ECHO).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_goaway_lets_calls_finish_and_moves_the_client() {
    let s = setup("");
    let (mut sender, connection) = connect(&s.crigate.socket, 1 << 20).await;
    let response = echo(&mut sender).await;
    assert_eq!(response.grpc_status(), Some(OK));
    let slow = spawn_send(
        &sender,
        request(standin::SLOW, &[("x-delay-ms", "700")], Bytes::new()),
    );
    s.standin.reached(standin::SLOW).await;
    s.standin.go_away();
    // The call the runtime had taken finishes; then crigate closes the client's
    // connection, and a new one is relayed to the runtime's new connection.
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.grpc_status(), Some(OK));
    tokio::time::timeout(Duration::from_secs(3), connection)
        .await
        .expect("client connection not closed")
        .unwrap()
        .unwrap();
    let response = call(&s.crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(OK));
    assert_eq!(s.standin.seen_on(standin::ECHO).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_stream_limit_is_what_clients_are_told() {
    let s = setup("max_concurrent_streams = 2");
    let (mut sender, _connection) = connect(&s.crigate.socket, 1 << 20).await;
    // One call first, so the client has read the server's SETTINGS (a client may open
    // streams before it has; those over the limit are refused, REFUSED_STREAM).
    let response = echo(&mut sender).await;
    assert_eq!(response.grpc_status(), Some(OK));
    let started = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            spawn_send(
                &sender,
                request(standin::SLOW, &[("x-delay-ms", "500")], Bytes::new()),
            )
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().grpc_status(), Some(OK));
    }
    // Two at a time: the third waited for one of the first two.
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_over_several_frames_reaches_the_runtime_whole() {
    let s = setup("");
    let (mut sender, _connection) = connect(&s.crigate.socket, 1 << 20).await;
    let value: String = (0..40_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    for _ in 0..2 {
        // Twice on one connection: the second block refers to the client's HPACK table.
        let response = send(
            &mut sender,
            request(
                standin::ECHO,
                &[("x-big", &value), ("x-small", "1")],
                Bytes::new(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(response.grpc_status(), Some(OK));
    }
    let seen = s.standin.seen_on(standin::ECHO);
    assert_eq!(seen.len(), 2);
    for request in seen {
        assert_eq!(request.headers["x-big"], value.as_str());
        assert_eq!(request.headers["x-small"], "1");
    }
}

/// Reads frames from `stream` until it closes, returning (type, payload) of each; fails
/// if it is not closed within 3 s.
async fn frames_until_closed(stream: &mut UnixStream) -> Vec<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut bytes))
        .await
        .expect("connection not closed")
        .unwrap();
    std::iter::from_fn(|| next_frame(&mut bytes))
        .map(|(kind, _, _, payload)| (kind, payload))
        .collect()
}

/// The error code of the GOAWAY among `frames`.
fn goaway_error(frames: &[(u8, Vec<u8>)]) -> u32 {
    let (_, payload) = frames
        .iter()
        .find(|(kind, _)| *kind == 7)
        .expect("no GOAWAY");
    u32::from_be_bytes(payload[4..8].try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_header_block_ends_that_connection_only() {
    use tokio::io::AsyncWriteExt;
    let s = setup("");
    let mut stream = UnixStream::connect(&s.crigate.socket).await.unwrap();
    let mut bytes = PREFACE.to_vec();
    // An empty SETTINGS.
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    // HEADERS, END_HEADERS, stream 1: an indexed field with index 0, which HPACK forbids.
    bytes.extend_from_slice(&[0, 0, 1, 1, 4, 0, 0, 0, 1, 0x80]);
    stream.write_all(&bytes).await.unwrap();
    let frames = frames_until_closed(&mut stream).await;
    // COMPRESSION_ERROR (RFC 9113 §4.3).
    assert_eq!(goaway_error(&frames), 9);
    assert!(s.standin.seen().is_empty());

    // Not HTTP/2 at all: closed with GOAWAY, PROTOCOL_ERROR, and no answer.
    let mut stream = UnixStream::connect(&s.crigate.socket).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let frames = frames_until_closed(&mut stream).await;
    assert!(frames.iter().all(|(kind, _)| *kind != 1), "{frames:?}");
    assert_eq!(goaway_error(&frames), 1);
    assert!(s.standin.seen().is_empty());

    // Everyone else is served as before.
    let response = call(&s.crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(OK));
}
