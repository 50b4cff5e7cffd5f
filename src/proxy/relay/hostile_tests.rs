//! What a client (any process that can open the CRI socket) or a runtime can do to a
//! relayed connection with frames the other peer would not send: none of it may grow
//! crigate's memory without bound, stall it, or make it break HTTP/2 towards the other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::tests::{block, calling, detached_relay, detached_relay_with, hello, written};
use super::*;

const CREATE: &str = "/runtime.v1.RuntimeService/CreateContainer";
const PULL: &str = "/runtime.v1.ImageService/PullImage";
const VERSION: &str = "/runtime.v1.RuntimeService/Version";

/// The frames crigate sent the runtime, after the client's preface.
fn sent_upstream(relay: &mut Relay) -> Vec<(Head, Bytes)> {
    let mut bytes = std::mem::take(&mut relay.to_upstream);
    if bytes.starts_with(frame::PREFACE) {
        drop(bytes.split_to(frame::PREFACE.len()));
    }
    std::iter::from_fn(|| frame::next(&mut bytes)).collect()
}

/// A relay linked to a runtime that has sent its SETTINGS, with the client's preface read.
fn linked_relay() -> Relay {
    let mut relay = detached_relay();
    relay.linked = true;
    relay.on_client_bytes(&mut hello()).unwrap();
    let mut up = BytesMut::new();
    frame::put_settings(&mut up, &[]);
    relay.on_upstream_bytes(&mut up);
    relay.to_client.clear();
    relay.to_upstream.clear();
    relay
}

/// Puts a request header block calling `path` on `stream`, without END_STREAM.
fn request(buf: &mut BytesMut, stream: u32, path: &'static str) {
    frame::put(
        buf,
        kind::HEADERS,
        flag::END_HEADERS,
        stream,
        &block(&calling(path)),
    );
}

/// The frames of `frame_kind` written to the client so far: each one's stream, and the
/// first 31-bit number of its payload (a reset's code, a window's increment).
fn written_of(relay: &mut Relay, frame_kind: u8) -> Vec<(u32, Option<u32>)> {
    written(relay)
        .into_iter()
        .filter(|(head, _)| head.kind == frame_kind)
        .map(|(head, bytes)| (head.stream, frame::u31(&bytes[frame::HEAD_LEN..])))
        .collect()
}

/// Connection window given back to the client so far: written to it, or owed and paid
/// with the next increments once due ([`Relay::owe_window`]).
fn connection_window_given_back(relay: &mut Relay) -> i64 {
    let written: i64 = written_of(relay, kind::WINDOW_UPDATE)
        .into_iter()
        .filter(|(stream, _)| *stream == 0)
        .map(|(_, increment)| i64::from(increment.unwrap_or(0)))
        .sum();
    written + relay.window_owed
}

/// A client connection relayed by a running [`serve`] to a runtime the test plays: the
/// client's end, the runtime's, and the directory of the runtime's socket.
struct Wired {
    client: UnixStream,
    runtime: UnixStream,
    _dir: tempfile::TempDir,
}

/// Starts [`serve`] for a new client connection, with `cri` lines added to its
/// configuration, and accepts its runtime connection once `first` (from the client)
/// is sent.
async fn wired(cri: &str, first: &[u8]) -> Wired {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("runtime.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (mut client, _) = serving(&socket, cri, CancellationToken::new());
    client.write_all(first).await.unwrap();
    let (runtime, _) = listener.accept().await.unwrap();
    Wired {
        client,
        runtime,
        _dir: dir,
    }
}

/// A client connection [`serve`]d towards the runtime socket `upstream`, with `cri`
/// lines added to the configuration: the client's end, and the relay's task.
fn serving(
    upstream: &Path,
    cri: &str,
    shutdown: CancellationToken,
) -> (UnixStream, tokio::task::JoinHandle<()>) {
    let text = format!(
        "[cri]\nlisten = \"/nonexistent/crigate.sock\"\nupstream = \"{}\"\n{cri}",
        upstream.display()
    );
    let config = crate::config::Config::parse(&text, Path::new("test.toml")).unwrap();
    let proxy = Arc::new(Proxy::new(config.cri, Arc::new(crate::decision::AllowAll)));
    let (client, relayed) = UnixStream::pair().unwrap();
    let caller = Caller {
        pid: None,
        uid: 0,
        gid: 0,
    };
    (
        client,
        tokio::spawn(serve(relayed, caller, proxy, shutdown)),
    )
}

/// Reads `from` to its end, counting the bytes.
fn count_reads(mut from: impl AsyncReadExt + Unpin + Send + 'static) -> Arc<AtomicUsize> {
    let received = Arc::new(AtomicUsize::new(0));
    let counted = received.clone();
    tokio::spawn(async move {
        let mut sink = vec![0; 1 << 16];
        while let Ok(n @ 1..) = from.read(&mut sink).await {
            counted.fetch_add(n, Ordering::Relaxed);
        }
    });
    received
}

/// Writes `bytes` to `to` on a task of its own, which ends once all are written.
fn write_behind<W>(mut to: W, bytes: BytesMut) -> tokio::task::JoinHandle<W>
where
    W: AsyncWriteExt + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        to.write_all(&bytes).await.unwrap();
        to
    })
}

/// Waits until `received` has counted `bytes`.
async fn received_at_least(received: &AtomicUsize, bytes: usize, what: &str) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while received.load(Ordering::Relaxed) < bytes {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect(what);
}

/// Empty DATA frames cost no window, so only a count stops a gated call from holding
/// them without end; and each frame held is a copy, not a share of the read buffer.
#[test]
fn empty_data_frames_cannot_keep_a_gate_holding_frames() {
    let mut relay = linked_relay();
    let mut buf = BytesMut::new();
    request(&mut buf, 1, CREATE);
    frame::put(&mut buf, kind::DATA, 0, 1, &[0, 0, 0, 0, 3]);
    let read = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.capacity();
    relay.on_client_bytes(&mut buf).unwrap();
    let held = relay.gates[&1].frames[0].as_ptr() as usize;
    assert!(!read.contains(&held), "a held frame shares the read buffer");

    let mut buf = BytesMut::new();
    for _ in 0..10_000 {
        frame::put(&mut buf, kind::DATA, 0, 1, &[]);
    }
    relay.on_client_bytes(&mut buf).unwrap();
    assert!(
        !relay.gates.contains_key(&1),
        "{} frames held",
        relay.gates[&1].frames.len()
    );
    assert!(
        relay.local.contains_key(&1),
        "taken back and answered by crigate"
    );
    // The runtime is told to forget the call.
    let up = sent_upstream(&mut relay);
    assert!(up
        .iter()
        .any(|(head, _)| head.kind == kind::RST_STREAM && head.stream == 1));
}

/// DATA a client sends on a held CreateContainer after its END_STREAM is not part of the
/// request and never reaches the runtime: its bytes go back to the client's connection
/// window, which would otherwise shrink for good.
#[test]
fn data_after_a_held_creates_end_is_given_back_to_the_connection_window() {
    let mut relay = linked_relay();
    let mut buf = BytesMut::new();
    request(&mut buf, 1, CREATE);
    frame::put(&mut buf, kind::DATA, flag::END_STREAM, 1, &[0, 0, 0, 0, 0]);
    relay.on_client_bytes(&mut buf).unwrap();
    assert!(relay.gates[&1].complete);
    sent_upstream(&mut relay);
    written(&mut relay);

    let mut buf = BytesMut::new();
    frame::put(&mut buf, kind::DATA, 0, 1, &[7; 100]);
    relay.on_client_bytes(&mut buf).unwrap();
    assert_eq!(connection_window_given_back(&mut relay), 100);
    assert!(sent_upstream(&mut relay).is_empty());
    assert_eq!(relay.gates[&1].held, 5, "held as the request only");
}

/// Frames the runtime would take as connection errors, ending every call on the
/// connection, end the client's connection at crigate instead.
#[test]
fn frames_that_would_end_the_runtimes_connection_end_the_clients() {
    // Kind, flags, stream, payload; the error code and reason crigate ends it with.
    type Case = (u8, u8, u32, &'static [u8], u32, &'static str);
    let cases: [Case; 11] = [
        (
            kind::RST_STREAM,
            0,
            0,
            &[0, 0, 0, 8],
            code::PROTOCOL_ERROR,
            "RST_STREAM on stream 0",
        ),
        (
            kind::RST_STREAM,
            0,
            1,
            &[0, 0, 8],
            code::FRAME_SIZE_ERROR,
            "RST_STREAM of the wrong size",
        ),
        (
            kind::PRIORITY,
            0,
            0,
            &[0, 0, 0, 1, 16],
            code::PROTOCOL_ERROR,
            "PRIORITY on stream 0",
        ),
        (
            kind::PRIORITY,
            0,
            1,
            &[0, 0, 0, 3],
            code::FRAME_SIZE_ERROR,
            "PRIORITY of the wrong size",
        ),
        // Padding as long as the payload (RFC 9113 §6.1), on a relayed call.
        (
            kind::DATA,
            flag::PADDED,
            1,
            &[6, 0, 0, 0, 0, 0],
            code::PROTOCOL_ERROR,
            "malformed DATA frame",
        ),
        (
            kind::SETTINGS,
            flag::ACK,
            0,
            &[0, 4, 0, 0, 0, 0],
            code::FRAME_SIZE_ERROR,
            "SETTINGS acknowledgement with a payload",
        ),
        (
            kind::GOAWAY,
            0,
            1,
            &[0, 0, 0, 0, 0, 0, 0, 0],
            code::PROTOCOL_ERROR,
            "GOAWAY on a stream",
        ),
        (
            kind::GOAWAY,
            0,
            0,
            &[0, 0, 0, 0, 0, 0, 0],
            code::FRAME_SIZE_ERROR,
            "GOAWAY too short",
        ),
        (
            kind::PING,
            0,
            1,
            &[0; 8],
            code::PROTOCOL_ERROR,
            "PING on a stream",
        ),
        (
            kind::WINDOW_UPDATE,
            0,
            0,
            &[0, 0, 0, 0],
            code::PROTOCOL_ERROR,
            "connection WINDOW_UPDATE of 0",
        ),
        // Stream 3 is idle: the client opened 1 only (RFC 9113 §5.1).
        (
            kind::DATA,
            0,
            3,
            &[0, 0, 0, 0, 0],
            code::PROTOCOL_ERROR,
            "DATA on an idle stream",
        ),
    ];
    for (frame_kind, flags, stream, payload, error, reason) in cases {
        let mut relay = linked_relay();
        let mut buf = BytesMut::new();
        request(&mut buf, 1, VERSION);
        frame::put(&mut buf, frame_kind, flags, stream, payload);
        let refused = relay.on_client_bytes(&mut buf).err().unwrap();
        assert_eq!((refused.code, refused.reason), (error, reason));
        let up = sent_upstream(&mut relay);
        assert!(
            up.iter().all(|(head, _)| head.kind != frame_kind),
            "{reason}: forwarded"
        );
    }
}

/// RST_STREAM and WINDOW_UPDATE on a stream the client never opened are passed over, as
/// grpc-go's server passes them over: a grpc-go client may reset a call whose HEADERS it
/// dropped unsent, and its connection carries on.
#[test]
fn a_reset_or_window_update_on_an_idle_stream_is_passed_over() {
    for (frame_kind, payload) in [
        (kind::RST_STREAM, [0u8, 0, 0, 8]),
        (kind::WINDOW_UPDATE, [0, 0, 1, 0]),
    ] {
        let mut relay = linked_relay();
        let mut buf = BytesMut::new();
        request(&mut buf, 1, VERSION);
        frame::put(&mut buf, frame_kind, 0, 3, &payload);
        relay.on_client_bytes(&mut buf).unwrap();
        let up = sent_upstream(&mut relay);
        assert!(
            up.iter().all(|(head, _)| head.stream != 3),
            "{frame_kind}: forwarded"
        );
    }
}

/// A runtime that ends its connection with an error code (here grpc-go's for a client
/// that pings too often) has crigate's final GOAWAY carry that code, not NO_ERROR.
#[test]
fn the_runtimes_goaway_error_code_reaches_the_client_in_the_final_goaway() {
    let mut relay = linked_relay();
    let mut buf = BytesMut::new();
    request(&mut buf, 1, VERSION);
    relay.on_client_bytes(&mut buf).unwrap();
    let mut up = BytesMut::new();
    frame::put_goaway(&mut up, 1, code::ENHANCE_YOUR_CALM);
    relay.on_upstream_bytes(&mut up);
    let mut buf = BytesMut::new();
    frame::put(&mut buf, kind::PING, flag::ACK, 0, &GOAWAY_PING);
    relay.on_client_bytes(&mut buf).unwrap();
    let goaways: Vec<_> = written(&mut relay)
        .into_iter()
        .filter(|(head, _)| head.kind == kind::GOAWAY)
        .map(|(_, bytes)| {
            let payload = &bytes[frame::HEAD_LEN..];
            (frame::u31(payload), frame::goaway_error(payload))
        })
        .collect();
    assert_eq!(
        goaways,
        [
            (Some((1 << 31) - 1), Some(code::NO_ERROR)),
            (Some(1), Some(code::ENHANCE_YOUR_CALM))
        ]
    );
}

/// Frames on streams the runtime never opened (an even id, an odd id the client skipped)
/// or has ended stop at crigate; DATA on them is given back to the client's window.
#[test]
fn frames_on_streams_the_runtime_does_not_have_open_stop_at_crigate() {
    let mut relay = linked_relay();
    let mut buf = BytesMut::new();
    request(&mut buf, 5, VERSION);
    relay.on_client_bytes(&mut buf).unwrap();
    sent_upstream(&mut relay);
    // The runtime ends stream 5.
    let mut up = BytesMut::new();
    let trailers = block(&[(":status", "200"), ("grpc-status", "0")]);
    frame::put(
        &mut up,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        5,
        &trailers,
    );
    relay.on_upstream_bytes(&mut up);
    relay.to_client.clear();

    let mut buf = BytesMut::new();
    let trailers = block(&[("grpc-status", "0")]);
    for stream in [2, 3, 5] {
        let end = flag::END_HEADERS | flag::END_STREAM;
        frame::put(&mut buf, kind::HEADERS, end, stream, &trailers);
        frame::put(&mut buf, kind::WINDOW_UPDATE, 0, stream, &[0, 0, 1, 0]);
        frame::put(&mut buf, kind::PRIORITY, 0, stream, &[0, 0, 0, 0, 16]);
        frame::put(&mut buf, kind::RST_STREAM, 0, stream, &[0, 0, 0, 8]);
    }
    frame::put(&mut buf, kind::DATA, 0, 3, &[7; 100]);
    relay.on_client_bytes(&mut buf).unwrap();
    let up = sent_upstream(&mut relay);
    assert!(up.is_empty(), "forwarded: {up:?}");
    assert_eq!(connection_window_given_back(&mut relay), 100);
}

/// A GOAWAY's last stream id never grows (RFC 9113 §6.8): a connection error after the
/// final GOAWAY names the same stream as it did.
#[test]
fn an_error_after_the_final_goaway_names_no_later_stream() {
    let mut relay = detached_relay();
    relay.inject_settings();
    let mut buf = hello();
    request(&mut buf, 1, VERSION);
    relay.on_client_bytes(&mut buf).unwrap();
    relay.go_away();
    let mut buf = BytesMut::new();
    frame::put(&mut buf, kind::PING, flag::ACK, 0, &GOAWAY_PING);
    relay.on_client_bytes(&mut buf).unwrap();
    assert_eq!(relay.goaway, GoAway::Final(1));

    // A stream opened after the final GOAWAY is ignored; then the client breaks the protocol.
    let mut buf = BytesMut::new();
    let end = flag::END_HEADERS | flag::END_STREAM;
    frame::put(&mut buf, kind::HEADERS, end, 3, &block(&calling(VERSION)));
    frame::put(&mut buf, kind::PUSH_PROMISE, 0, 3, &[0, 0, 0, 2]);
    let error = relay.on_client_bytes(&mut buf).err().unwrap();
    relay.fail(&error);
    let goaways: Vec<_> = written(&mut relay)
        .into_iter()
        .filter(|(head, _)| head.kind == kind::GOAWAY)
        .map(|(_, bytes)| {
            let payload = &bytes[frame::HEAD_LEN..];
            (frame::u31(payload), frame::u31(&payload[4..]))
        })
        .collect();
    assert_eq!(
        goaways[1..],
        [
            (Some(1), Some(code::NO_ERROR)),
            (Some(1), Some(code::PROTOCOL_ERROR))
        ]
    );
}

/// Requests crigate answers are read whole, their bytes given back as they come: what the
/// unfinished ones hold together is bounded, and a request that would pass the bound is
/// reset, while those within it go on.
#[test]
fn unfinished_requests_crigate_answers_are_bounded_together() {
    let mut relay = detached_relay_with("max_message_bytes = 20000\n");
    relay.inject_settings();
    let mut buf = hello();
    for stream in [1, 3] {
        request(&mut buf, stream, PULL);
        frame::put(&mut buf, kind::DATA, 0, stream, &[0; 16_000]);
        frame::put(&mut buf, kind::DATA, 0, stream, &[0; 4_000]);
    }
    request(&mut buf, 5, PULL);
    frame::put(&mut buf, kind::DATA, 0, 5, &[0; 100]);
    relay.on_client_bytes(&mut buf).unwrap();

    assert!(relay.local.contains_key(&1) && relay.local.contains_key(&3));
    assert!(!relay.local.contains_key(&5));
    let resets: Vec<_> = written_of(&mut relay, kind::RST_STREAM);
    assert_eq!(resets, [(5, Some(code::ENHANCE_YOUR_CALM))]);
}

/// A stream the client breaks (trailers with a pseudo-header) while the runtime's answer
/// on it waits for the client's window: the client sees that answer, then the reset.
#[test]
fn a_reset_of_a_stream_follows_what_the_runtime_sent_on_it() {
    let mut relay = linked_relay();
    let mut buf = BytesMut::new();
    request(&mut buf, 1, VERSION);
    relay.on_client_bytes(&mut buf).unwrap();
    let mut up = BytesMut::new();
    let head = block(&[(":status", "200"), ("content-type", "application/grpc")]);
    frame::put(&mut up, kind::HEADERS, flag::END_HEADERS, 1, &head);
    for _ in 0..5 {
        frame::put(&mut up, kind::DATA, 0, 1, &[1; 16_384]);
    }
    relay.on_upstream_bytes(&mut up);
    assert!(!relay.held.is_empty(), "the client's window is spent");
    written(&mut relay);

    let mut buf = BytesMut::new();
    let bad = block(&[(":path", "/x")]);
    frame::put(
        &mut buf,
        kind::HEADERS,
        flag::END_HEADERS | flag::END_STREAM,
        1,
        &bad,
    );
    relay.on_client_bytes(&mut buf).unwrap();
    assert!(
        written(&mut relay)
            .iter()
            .all(|(head, _)| head.kind != kind::RST_STREAM),
        "reset ahead of the runtime's held DATA"
    );
    let up = sent_upstream(&mut relay);
    assert!(up
        .iter()
        .any(|(head, _)| head.kind == kind::RST_STREAM && head.stream == 1));

    let mut buf = BytesMut::new();
    frame::put_window_update(&mut buf, 0, 1 << 20);
    relay.on_client_bytes(&mut buf).unwrap();
    let kinds: Vec<_> = written(&mut relay)
        .into_iter()
        .filter(|(head, _)| head.stream == 1)
        .map(|(head, _)| head.kind)
        .collect();
    assert_eq!(kinds, [kind::DATA, kind::DATA, kind::RST_STREAM]);
    assert_eq!(relay.held_bytes, 0);
}

/// A runtime whose frames wait for a client that reads but gives no window back (here
/// frames of a type the client may not know, queued behind held DATA to keep their
/// order) is not read past a bound, so crigate's memory does not take what the client
/// does not; once the client gives window back, everything passes.
#[tokio::test]
async fn the_runtime_is_not_read_while_too_much_waits_for_the_client() {
    let mut hello = hello();
    request(&mut hello, 1, VERSION);
    let wired = wired("", &hello).await;
    let (runtime_reads, runtime) = wired.runtime.into_split();
    count_reads(runtime_reads);
    let (client_reads, mut client_writes) = wired.client.into_split();
    let received = count_reads(client_reads);

    // Five full DATA frames spend the client's connection window (65,535 bytes); the
    // fourth waits for it, and 8 MiB of unknown frames wait behind it.
    let mut answer = BytesMut::new();
    frame::put_settings(&mut answer, &[]);
    let head = block(&[(":status", "200"), ("content-type", "application/grpc")]);
    frame::put(&mut answer, kind::HEADERS, flag::END_HEADERS, 1, &head);
    for _ in 0..5 {
        frame::put(&mut answer, kind::DATA, 0, 1, &[1; 16_384]);
    }
    for _ in 0..512 {
        frame::put(&mut answer, 0xfa, 0, 0, &[2; 16_384]);
    }
    let total = answer.len();
    let writer = write_behind(runtime, answer);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !writer.is_finished(),
        "crigate read 8 MiB the client cannot take"
    );

    let mut update = BytesMut::new();
    frame::put_window_update(&mut update, 0, 1 << 30);
    client_writes.write_all(&update).await.unwrap();
    let _runtime = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("the runtime is read again once the client takes what waited")
        .unwrap();
    // The runtime's SETTINGS reach the client rewritten: a few bytes more or less.
    received_at_least(
        &received,
        total - 64,
        "everything the runtime sent reaches the client",
    )
    .await;
}

/// An answer crigate gives itself comes over its one shared runtime connection, where
/// what a client leaves untaken holds back everyone's answers: a client that takes
/// nothing of it for [`LOCAL_ANSWER_STALL`] has the stream reset, and the rest of the
/// answer is let go.
#[tokio::test(start_paused = true)]
async fn an_answer_the_client_takes_nothing_of_is_reset_in_time() {
    let pieces = [Bytes::from_static(b"one"), Bytes::from_static(b"two")];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(
        pieces.map(|piece| Ok::<_, std::convert::Infallible>(http_body::Frame::data(piece))),
    ));
    let (events, mut inbox) = mpsc::channel(8);
    let started = tokio::time::Instant::now();
    let answering = tokio::spawn(async move {
        answer(7, http::Response::new(body), &events).await;
    });
    let mut kept = Vec::new();
    let mut seen = Vec::new();
    while let Some((stream, event)) = inbox.recv().await {
        assert_eq!(stream, 7);
        match event {
            Event::Head(..) => seen.push("head"),
            // Never framed: the client's window stays shut.
            Event::Data(data, sent) => {
                seen.push("data");
                assert_eq!(data, "one");
                kept.push(sent);
            }
            Event::Reset(error) => {
                assert_eq!(error, code::CANCEL);
                seen.push("reset");
            }
            Event::Trailers(_) | Event::End | Event::Gated(_) | Event::Durable => {
                seen.push("other");
            }
        }
    }
    answering.await.unwrap();
    assert_eq!(seen, ["head", "data", "reset"]);
    assert_eq!(started.elapsed(), LOCAL_ANSWER_STALL);
}

/// A client that never answers the PING sent with the first GOAWAY still gets the final
/// one in [`GOAWAY_ACK_WAIT`], and with no stream open the connection then ends: it cannot
/// keep a connection taking new streams by staying silent.
#[tokio::test(start_paused = true)]
async fn a_client_silent_after_the_first_goaway_gets_the_final_one_in_time() {
    let shutdown = CancellationToken::new();
    let (mut client, relay) = serving(Path::new("/nonexistent/runtime.sock"), "", shutdown.clone());
    client.write_all(&hello()).await.unwrap();
    let started = tokio::time::Instant::now();
    shutdown.cancel();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), client.read_to_end(&mut received))
        .await
        .expect("the connection ends")
        .unwrap();
    relay.await.unwrap();
    let mut received = BytesMut::from(&received[..]);
    let goaways: Vec<_> = std::iter::from_fn(|| frame::next(&mut received))
        .filter(|(head, _)| head.kind == kind::GOAWAY)
        .map(|(_, bytes)| frame::u31(&bytes[frame::HEAD_LEN..]))
        .collect();
    assert_eq!(goaways, [Some((1 << 31) - 1), Some(0)]);
    assert!(
        started.elapsed() >= GOAWAY_ACK_WAIT,
        "{:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < GOAWAY_ACK_WAIT + Duration::from_secs(1));
}

/// A client that floods PINGs while crigate's answers must wait for the runtime's
/// SETTINGS (a runtime that accepted the connection but has not spoken) is not read past
/// a bound; once the runtime is given up, the answers go out and reading goes on.
#[tokio::test]
async fn the_client_is_not_read_while_too_much_of_crigates_own_waits() {
    // Accepted, read, never answered.
    let wired = wired("connect_timeout = \"2s\"\n", &hello()).await;
    let (runtime_reads, _runtime_writes) = wired.runtime.into_split();
    count_reads(runtime_reads);
    let (client_reads, client_writes) = wired.client.into_split();
    let received = count_reads(client_reads);

    let mut flood = BytesMut::new();
    let pings = 200_000;
    for i in 0..pings {
        frame::put_ping(&mut flood, false, u64::to_be_bytes(i));
    }
    let writer = write_behind(client_writes, flood);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !writer.is_finished(),
        "crigate read {pings} PINGs it could not answer yet"
    );
    let _client_writes = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("the client is read again once the runtime is given up")
        .unwrap();
    received_at_least(&received, pings as usize * 17, "every PING is answered").await;
}

/// A reset of a call crigate answers (its answer stalled, or broken off by the runtime)
/// reaches the client at once, though the piece before it still waits for the client's
/// window, and the call is then gone from the connection.
#[test]
fn a_reset_answer_leaves_at_once_whatever_waits_before_it() {
    let mut relay = detached_relay();
    relay.inject_settings();
    let mut buf = hello();
    frame::put_settings(&mut buf, &[(frame::setting::INITIAL_WINDOW_SIZE, 0)]);
    request(&mut buf, 1, PULL);
    relay.on_client_bytes(&mut buf).unwrap();
    let (sent, _framed) = oneshot::channel();
    let parts = http::Response::new(()).into_parts().0;
    relay.on_event(1, Event::Head(parts, false));
    relay.on_event(1, Event::Data(Bytes::from_static(&[0; 64]), sent));
    relay.flush_local();
    let kinds: Vec<_> = written(&mut relay).iter().map(|(h, _)| h.kind).collect();
    assert!(
        !kinds.contains(&kind::DATA),
        "the client's window is shut: {kinds:?}"
    );

    relay.on_event(1, Event::Reset(code::CANCEL));
    relay.flush_local();
    assert_eq!(
        written_of(&mut relay, kind::RST_STREAM),
        [(1, Some(code::CANCEL))]
    );
    assert!(!relay.local.contains_key(&1));
}

/// Nothing of crigate's own reaches the runtime before the client's connection preface
/// and its SETTINGS (RFC 9113 §3.4): the answer to a PING the runtime sends first waits
/// for them. Found by the `relay` fuzz target.
#[test]
fn an_answer_to_the_runtimes_first_ping_follows_the_clients_preface() {
    let mut relay = detached_relay();
    relay.linked = true;
    let mut up = BytesMut::new();
    frame::put_settings(&mut up, &[]);
    frame::put_ping(&mut up, false, *b"runtime1");
    relay.on_upstream_bytes(&mut up);
    assert!(relay.to_upstream.is_empty(), "{:?}", relay.to_upstream);

    relay.on_client_bytes(&mut hello()).unwrap();
    assert!(relay.to_upstream.starts_with(frame::PREFACE));
    let sent: Vec<_> = sent_upstream(&mut relay)
        .into_iter()
        .map(|(head, bytes)| (head.kind, head.flags, bytes.slice(frame::HEAD_LEN..)))
        .collect();
    assert_eq!(
        sent,
        [
            (kind::SETTINGS, 0, Bytes::new()),
            (kind::PING, flag::ACK, Bytes::from_static(b"runtime1")),
        ]
    );
}

/// The runtime's connection WINDOW_UPDATEs (grpc-go sends one after nearly every request
/// body) reach the client together, a few for a hundred calls, not one per call. The
/// client's window never falls below half the initial one for want of what it is owed,
/// nor exceeds what the runtime granted; a client that has used its whole window is paid
/// the runtime's next increment at once.
#[test]
fn the_runtimes_connection_window_updates_reach_the_client_together_and_in_time() {
    let mut relay = linked_relay();
    let trailers = block(&[(":status", "200"), ("grpc-status", "0")]);
    let mut paid = Vec::new();
    for call in 0..100 {
        let stream = 2 * call + 1;
        let mut buf = BytesMut::new();
        request(&mut buf, stream, VERSION);
        frame::put(&mut buf, kind::DATA, flag::END_STREAM, stream, &[0; 1000]);
        relay.on_client_bytes(&mut buf).unwrap();
        // The runtime takes the body, grants as much back, and answers.
        let mut up = BytesMut::new();
        frame::put_window_update(&mut up, 0, 1000);
        frame::put(
            &mut up,
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            stream,
            &trailers,
        );
        relay.on_upstream_bytes(&mut up);
        paid.extend(written_of(&mut relay, kind::WINDOW_UPDATE));
        assert!(
            relay.client_send_window >= frame::DEFAULT_WINDOW / 2,
            "call {call}: the client's window is {}",
            relay.client_send_window
        );
        // The runtime's own count of the client's window: 65,535, as every byte it
        // received it granted back.
        assert_eq!(
            relay.client_send_window + relay.window_owed,
            frame::DEFAULT_WINDOW,
            "call {call}"
        );
    }
    assert!(
        (2..=4).contains(&paid.len()) && paid.iter().all(|(stream, _)| *stream == 0),
        "{paid:?}"
    );

    // A client that used its whole window (what it was owed paid on the way) is paid the
    // runtime's next increment as it comes.
    let mut buf = BytesMut::new();
    request(&mut buf, 201, VERSION);
    relay.on_client_bytes(&mut buf).unwrap();
    while relay.client_send_window > 0 {
        let len = relay.client_send_window.min(16_384) as usize;
        let mut buf = BytesMut::new();
        frame::put(&mut buf, kind::DATA, 0, 201, &vec![0; len]);
        relay.on_client_bytes(&mut buf).unwrap();
    }
    assert_eq!(relay.window_owed, 0);
    written(&mut relay);
    let mut up = BytesMut::new();
    frame::put_window_update(&mut up, 0, 10);
    relay.on_upstream_bytes(&mut up);
    assert_eq!(written_of(&mut relay, kind::WINDOW_UPDATE), [(0, Some(10))]);
    assert_eq!(relay.client_send_window, 10);
}
