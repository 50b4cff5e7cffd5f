//! PINGs on a relayed connection, in process. The runtime here is an HTTP/2 server that
//! can send a PING and wait for its ACK, and the client reads raw frames, so that what
//! each side receives is seen exactly; containerd's own PINGs through a real crigate are
//! shown by `integration/transparency.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::gate_tests::relay_to;
use super::*;
use crate::decision::AllowAll;

/// Frames read from `stream` (kind, flags, payload) until `until` completes, each
/// SETTINGS acknowledged as a client does; PINGs are left unanswered.
async fn read_frames(
    stream: &mut tokio::net::UnixStream,
    until: impl std::future::Future<Output = ()>,
) -> Vec<(u8, u8, Vec<u8>)> {
    tokio::pin!(until);
    let mut frames = Vec::new();
    let mut buf = BytesMut::new();
    loop {
        tokio::select! {
            () = &mut until => return frames,
            read = stream.read_buf(&mut buf) => {
                assert_ne!(read.unwrap(), 0, "crigate closed the connection");
                while let Some((head, bytes)) = frame::next(&mut buf) {
                    if head.kind == kind::SETTINGS && !head.has(flag::ACK) {
                        let mut ack = BytesMut::new();
                        frame::put_settings_ack(&mut ack);
                        stream.write_all(&ack).await.unwrap();
                    }
                    frames.push((head.kind, head.flags, bytes[frame::HEAD_LEN..].to_vec()));
                }
            }
        }
    }
}

#[tokio::test]
async fn a_runtime_ping_is_answered_by_crigate_and_never_reaches_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("runtime.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    // The runtime: one connection, one PING, and whether its ACK came.
    let runtime = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(stream).await.unwrap();
        let mut ping_pong = connection.ping_pong().unwrap();
        let served = tokio::spawn(async move { while connection.accept().await.is_some() {} });
        let pong =
            tokio::time::timeout(Duration::from_secs(5), ping_pong.ping(h2::Ping::opaque())).await;
        served.abort();
        matches!(pong, Ok(Ok(_)))
    });

    let mut client = relay_to(dir.path(), &socket, Arc::new(AllowAll), "");
    // The client preface, with an empty SETTINGS.
    let mut hello = BytesMut::from(frame::PREFACE);
    frame::put_settings(&mut hello, &[]);
    client.write_all(&hello).await.unwrap();

    let mut acked = None;
    let frames = read_frames(&mut client, async {
        acked = Some(runtime.await.unwrap());
    })
    .await;
    assert_eq!(
        acked,
        Some(true),
        "the runtime's PING was never acknowledged"
    );
    assert!(
        frames.iter().all(|(kind, _, _)| *kind != kind::PING),
        "a PING reached the client: {frames:?}"
    );
    // The runtime's SETTINGS did reach the client: the connection was relayed.
    assert!(frames
        .iter()
        .any(|(kind, flags, _)| *kind == kind::SETTINGS && flags & flag::ACK == 0));
}
