//! Passthrough and interception, against the stand-in runtime (see standin.rs for why a
//! stand-in: these are behaviours containerd 1.6 cannot be made to show).

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::client::{call, call_with_authority, connect, grpc_request, send};
use crate::daemon::{Crigate, Options};
use crate::standin::{self, grpc_frame, StandIn};

const OK: i32 = 0;
const CANCELLED_OR_DEADLINE: [i32; 2] = [1, 4];
const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNIMPLEMENTED: i32 = 12;
const UNAVAILABLE: i32 = 14;

pub struct Setup {
    _dir: tempfile::TempDir,
    pub standin: StandIn,
    pub crigate: Crigate,
}

pub fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let crigate =
        Crigate::start(dir.path(), Options::new(dir.path(), &standin.socket, extra)).unwrap();
    Setup {
        _dir: dir,
        standin,
        crigate,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_body_and_trailers_pass_unchanged() {
    let s = setup("");
    let body = grpc_frame(b"\x0a\x03abc\xff\xff\x01 arbitrary bytes");
    let headers = [("x-meta", "value-1"), ("grpc-timeout", "5S")];
    let direct = call(&s.standin.socket, standin::ECHO, &headers, body.clone())
        .await
        .unwrap();
    let proxied = call(&s.crigate.socket, standin::ECHO, &headers, body.clone())
        .await
        .unwrap();

    assert_eq!(proxied.status, direct.status);
    assert_eq!(proxied.headers, direct.headers, "response headers differ");
    assert!(
        proxied.headers.get("date").is_none(),
        "crigate added a date header"
    );
    assert_eq!(
        proxied.headers["x-meta-echo"], "value-1",
        "request metadata was not forwarded"
    );
    assert_eq!(
        proxied.headers["x-saw-grpc-timeout"], "5S",
        "deadline was not forwarded"
    );
    assert_eq!(proxied.body, body, "body changed on the way");
    assert_eq!(proxied.trailers, direct.trailers);
    assert_eq!(proxied.trailers.unwrap()["x-trailer"], "kept");

    let seen = s.standin.seen_on(standin::ECHO);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, seen[0].body);
    assert_eq!(
        seen[1].headers, seen[0].headers,
        "request headers changed on the way"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_reaches_the_runtime() {
    let s = setup("");
    call_with_authority(
        &s.crigate.socket,
        "crigate.test:1234",
        standin::ECHO,
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    call(&s.crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    let seen = s.standin.seen_on(standin::ECHO);
    assert_eq!(seen[0].authority.as_deref(), Some("crigate.test:1234"));
    assert_eq!(seen[1].authority.as_deref(), Some("localhost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_pass_unchanged() {
    let s = setup("");
    let direct = call(&s.standin.socket, standin::ERROR, &[], Bytes::new())
        .await
        .unwrap();
    let proxied = call(&s.crigate.socket, standin::ERROR, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(proxied.grpc_status(), Some(5));
    assert_eq!(proxied.grpc_message(), "thing not found");
    assert_eq!(proxied.headers, direct.headers);
    assert_eq!(proxied.headers["grpc-status-details-bin"], "CAUSBnRoaW5n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_is_relayed_as_it_arrives() {
    let s = setup("");
    let channel = crate::harness::cri_channel(&s.crigate.socket)
        .await
        .unwrap();
    let mut client = k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(channel);
    let started = Instant::now();
    let mut request = tonic::Request::new(k8s_cri::v1::GetEventsRequest {});
    request
        .metadata_mut()
        .insert("x-count", "5".parse().unwrap());
    let mut stream = client
        .get_container_events(request)
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    let mut first_at = None;
    while let Some(event) = stream.message().await.unwrap() {
        first_at.get_or_insert(started.elapsed());
        ids.push(event.container_id);
    }
    assert_eq!(ids, ["c0", "c1", "c2", "c3", "c4"]);
    // The stand-in sends one event every 100 ms: the first must arrive long before the
    // last is sent, or crigate buffered the stream.
    let first_at = first_at.unwrap();
    assert!(
        first_at < Duration::from_millis(400),
        "first event after {first_at:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_response_passes_with_bounded_memory() {
    let s = setup("");
    let size = 16 * 1024 * 1024 - 5;
    let rss_before = s.crigate.rss_bytes();
    let proxied = call(
        &s.crigate.socket,
        standin::BIG,
        &[("x-size", &size.to_string())],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(proxied.grpc_status(), Some(OK));
    assert_eq!(proxied.body.len(), size + 5);
    let expected: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        Sha256::digest(&proxied.body[5..]),
        Sha256::digest(&expected),
        "payload changed on the way"
    );
    let grown = s.crigate.rss_bytes().saturating_sub(rss_before);
    // Flow control windows bound what crigate holds; the message is never buffered whole.
    assert!(
        grown < 8 * 1024 * 1024,
        "crigate grew by {grown} bytes relaying a 16 MiB message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cri_method_is_forwarded_by_default() {
    let s = setup("");
    let response = call(&s.crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(OK));
    assert_eq!(s.standin.seen_on(standin::ECHO).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cri_method_is_refused_when_configured() {
    let s = setup("unknown_methods = \"deny\"");
    let response = call(&s.crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(UNIMPLEMENTED));
    assert!(
        response.grpc_message().contains("unknown_methods"),
        "{}",
        response.grpc_message()
    );
    assert!(
        s.standin.seen_on(standin::ECHO).is_empty(),
        "a refused call reached the runtime"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_native_api_is_refused_by_default() {
    let s = setup("");
    let path = "/containerd.services.tasks.v1.Tasks/Create";
    let response = call(&s.crigate.socket, path, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(UNIMPLEMENTED));
    assert!(
        response.grpc_message().contains("other_services"),
        "{}",
        response.grpc_message()
    );
    assert!(s.standin.seen_on(path).is_empty());

    let open = setup("other_services = \"forward\"");
    call(&open.crigate.socket, path, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(open.standin.seen_on(path).len(), 1);
}

/// A refused path is answered when its HEADERS arrive, as containerd's grpc-go answers a
/// method it does not serve, not when the request ends: a client that waits for an
/// answer before ending its request (a bidirectional stream, such as containerd's
/// transfer streams) is not left waiting. The rest of its request is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_path_is_answered_before_its_request_ends() {
    use crate::client::{encode_frame, literal_request_block, next_frame, PREFACE};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup("");
    let path = "/containerd.services.streaming.v1.Streaming/Stream";
    let block = literal_request_block(path);
    let mut stream = tokio::net::UnixStream::connect(&s.crigate.socket)
        .await
        .unwrap();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(encode_frame(4, 0, 0, &[]));
    // HEADERS with END_HEADERS, then one message without END_STREAM.
    bytes.extend(encode_frame(1, 4, 1, &block));
    bytes.extend(encode_frame(0, 0, 1, &grpc_frame(b"\x0a\x01x")));
    stream.write_all(&bytes).await.unwrap();
    let mut read = Vec::new();
    let mut frames = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            while let Some(frame) = next_frame(&mut read) {
                frames.push(frame);
            }
            let ended = |kind: u8| {
                frames.iter().any(|(k, flags, id, _)| {
                    *k == kind && *id == 1 && (kind == 3 || flags & 1 == 1)
                })
            };
            // Trailers-only (HEADERS with END_STREAM), then RST_STREAM(NO_ERROR).
            if ended(1) && ended(3) {
                return;
            }
            let mut buf = [0; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed: {frames:?}");
            read.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        answered.is_ok(),
        "no answer while the request is open: {frames:?}"
    );
    let (_, _, _, answer) = frames
        .iter()
        .find(|(kind, _, id, _)| *kind == 1 && *id == 1)
        .unwrap();
    // crigate's own header blocks: never-indexed literals, no Huffman coding.
    let status = b"\x0bgrpc-status\x0212";
    assert!(
        answer.windows(status.len()).any(|w| w == status),
        "{answer:?}"
    );
    let (_, _, _, reset) = frames
        .iter()
        .find(|(kind, _, id, _)| *kind == 3 && *id == 1)
        .unwrap();
    assert_eq!(reset.as_slice(), &[0, 0, 0, 0], "RST_STREAM(NO_ERROR)");
    // The rest of the request, then its end, are let go, and the connection serves on:
    // a PING after them is answered, with no GOAWAY before its ACK.
    let mut more = encode_frame(0, 0, 1, &grpc_frame(b"\x0a\x01y"));
    more.extend(encode_frame(0, 1, 1, &[]));
    more.extend(encode_frame(6, 0, 0, b"crigate!"));
    stream.write_all(&more).await.unwrap();
    frames.clear();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            while let Some(frame) = next_frame(&mut read) {
                assert_ne!(frame.0, 7, "GOAWAY: {frame:?}");
                if frame.0 == 6 && frame.1 & 1 == 1 {
                    assert_eq!(frame.3, b"crigate!");
                    return;
                }
            }
            let mut buf = [0; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed");
            read.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no PING ACK");
    assert!(s.standin.seen_on(path).is_empty());
}

/// A PullImageRequest as a newer kubelet might send it: with a field this build of the
/// CRI types does not know (field 99), which must reach the runtime.
pub fn pull_body(image: &str, namespace: &str) -> Bytes {
    let mut message = k8s_cri::v1::PullImageRequest {
        image: Some(k8s_cri::v1::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: Some(k8s_cri::v1::PodSandboxConfig {
            metadata: Some(k8s_cri::v1::PodSandboxMetadata {
                name: "web".into(),
                uid: "uid-7".into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    message.extend_from_slice(&[0x98, 0x06, 0x07]);
    grpc_frame(&message)
}

fn create_body(image: &str, namespace: &str) -> Bytes {
    let mut message = k8s_cri::v1::CreateContainerRequest {
        pod_sandbox_id: "sandbox-1".into(),
        config: Some(k8s_cri::v1::ContainerConfig {
            metadata: Some(k8s_cri::v1::ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            }),
            image: Some(k8s_cri::v1::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        sandbox_config: Some(k8s_cri::v1::PodSandboxConfig {
            metadata: Some(k8s_cri::v1::PodSandboxMetadata {
                name: "web".into(),
                uid: "uid-7".into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            ..Default::default()
        }),
    }
    .encode_to_vec();
    message.extend_from_slice(&[0x98, 0x06, 0x07]);
    grpc_frame(&message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_api_versions_reach_the_decision_seam_and_forward_original_bytes() {
    let s = setup("");
    let cases = [
        (
            "/runtime.v1.ImageService/PullImage",
            pull_body("reg/v1-pull:1", "ns-a"),
            "pull",
            "runtime.v1",
        ),
        (
            "/runtime.v1alpha2.ImageService/PullImage",
            pull_body("reg/v1alpha2-pull:1", "ns-b"),
            "pull",
            "runtime.v1alpha2",
        ),
        (
            "/runtime.v1.RuntimeService/CreateContainer",
            create_body("reg/v1-create:1", "ns-c"),
            "create",
            "runtime.v1",
        ),
        (
            "/runtime.v1alpha2.RuntimeService/CreateContainer",
            create_body("reg/v1alpha2-create:1", "ns-d"),
            "create",
            "runtime.v1alpha2",
        ),
    ];
    for (path, body, phase, api) in &cases {
        let response = call(&s.crigate.socket, path, &[], body.clone())
            .await
            .unwrap();
        assert_eq!(response.grpc_status(), Some(OK), "{path}");
        let seen = s.standin.seen_on(path);
        assert_eq!(seen.len(), 1, "{path}");
        assert_eq!(
            &seen[0].body, body,
            "{path}: forwarded bytes differ from the caller's"
        );
        let _ = (phase, api);
    }
    let logs = s.crigate.logs();
    let decisions: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("crigate::decision"))
        .collect();
    assert_eq!(
        decisions.len(),
        4,
        "one decision line per intercepted call:\n{logs}"
    );
    for ((_, _, phase, api), (line, (image, namespace))) in
        cases.iter().zip(decisions.iter().zip([
            ("reg/v1-pull:1", "ns-a"),
            ("reg/v1alpha2-pull:1", "ns-b"),
            ("reg/v1-create:1", "ns-c"),
            ("reg/v1alpha2-create:1", "ns-d"),
        ]))
    {
        for needle in [
            format!("phase={phase}"),
            format!("api={api}"),
            format!("image={image}"),
            format!("namespace=\"{namespace}\""),
            "pod=\"web\"".to_owned(),
        ] {
            assert!(line.contains(&needle), "{needle} missing from: {line}");
        }
    }
    assert!(
        decisions[2].contains("container=\"app\""),
        "{}",
        decisions[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_intercepted_request_is_invalid_argument() {
    let s = setup("");
    // One connection, as kubelet keeps: the runtime connection crigate opens for it
    // stays up, so the runtime takes every stream it was sent, cancelled ones too (a
    // server whose connection closes may drop streams it has not yet taken).
    let (mut sender, _connection) = connect(&s.crigate.socket, 65_535).await;
    for (body, why) in [
        (Bytes::from_static(b"\x00\x00\x00"), "truncated prefix"),
        (
            Bytes::from_static(b"\x00\x00\x00\x00\x09abc"),
            "length mismatch",
        ),
        (grpc_frame(b"\x0a\x64\x01\x02"), "invalid protobuf"),
        (grpc_frame(b""), "no image"),
        (Bytes::from_static(b"\x01\x00\x00\x00\x00"), "compressed"),
    ] {
        for path in [
            "/runtime.v1.ImageService/PullImage",
            "/runtime.v1alpha2.RuntimeService/CreateContainer",
        ] {
            let request = grpc_request("localhost", path, &[], body.clone()).unwrap();
            let response = send(&mut sender, request).await.unwrap();
            assert_eq!(
                response.grpc_status(),
                Some(INVALID_ARGUMENT),
                "{why} on {path}"
            );
            assert!(
                response.grpc_message().starts_with("crigate: invalid"),
                "{}",
                response.grpc_message()
            );
        }
    }
    assert!(
        s.standin.seen().is_empty(),
        "a malformed request reached the runtime"
    );
    // CreateContainer is decided on a stream open on the runtime: the runtime had each
    // request's head, never its message, and the stream was cancelled.
    let mut cancelled = s.standin.cancelled();
    for _ in 0..100 {
        if cancelled.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancelled = s.standin.cancelled();
    }
    assert_eq!(cancelled.len(), 5, "{cancelled:?}");
    assert!(cancelled.iter().all(
        |c| c.path == "/runtime.v1alpha2.RuntimeService/CreateContainer" && c.body.is_empty()
    ));
    // Still serving, on the same connection.
    let request = grpc_request("localhost", standin::ECHO, &[], Bytes::new()).unwrap();
    let response = send(&mut sender, request).await.unwrap();
    assert_eq!(response.grpc_status(), Some(OK));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercepted_request_size_limit_is_exact() {
    let s = setup("max_message_bytes = 4096");
    let path = "/runtime.v1.ImageService/PullImage";
    // A PullImageRequest of exactly `len` bytes: field 1 (ImageSpec) holding field 1
    // (image) of the right length.
    let body_of = |len: usize| {
        let image = "x".repeat(len - 6);
        let message = k8s_cri::v1::PullImageRequest {
            image: Some(k8s_cri::v1::ImageSpec {
                image,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(message.len(), len);
        grpc_frame(&message)
    };
    for (len, expected) in [(4095, OK), (4096, OK), (4097, RESOURCE_EXHAUSTED)] {
        let response = call(&s.crigate.socket, path, &[], body_of(len))
            .await
            .unwrap();
        assert_eq!(
            response.grpc_status(),
            Some(expected),
            "message of {len} bytes"
        );
    }
    assert_eq!(s.standin.seen_on(path).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_runtime_is_unavailable_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-runtime.sock");
    let crigate = Crigate::start(dir.path(), Options::new(dir.path(), &missing, "")).unwrap();
    let response = call(
        &crigate.socket,
        "/runtime.v1.RuntimeService/Version",
        &[],
        grpc_frame(b""),
    )
    .await
    .unwrap();
    assert_eq!(response.grpc_status(), Some(UNAVAILABLE));
    assert!(
        response
            .grpc_message()
            .contains(&missing.display().to_string()),
        "{}",
        response.grpc_message()
    );
    // Intercepted calls too: decided, then the runtime is missing.
    let response = call(
        &crigate.socket,
        "/runtime.v1.ImageService/PullImage",
        &[],
        pull_body("a:b", "x"),
    )
    .await
    .unwrap();
    assert_eq!(response.grpc_status(), Some(UNAVAILABLE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_that_appears_later_is_used_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("late.sock");
    let crigate = Crigate::start(dir.path(), Options::new(dir.path(), &socket, "")).unwrap();
    let response = call(&crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(UNAVAILABLE));
    let standin = StandIn::start(&socket);
    let response = call(&crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(OK));
    drop(standin);
    let response = call(&crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(UNAVAILABLE));
    let standin = StandIn::start(&socket);
    let response = call(&crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(response.grpc_status(), Some(OK));
    assert_eq!(standin.seen_on(standin::ECHO).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_deadline_ends_a_slow_call() {
    let s = setup("");
    let channel = crate::harness::cri_channel(&s.crigate.socket)
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(Bytes::new());
    request.set_timeout(Duration::from_millis(200));
    request
        .metadata_mut()
        .insert("x-delay-ms", "3000".parse().unwrap());
    let started = Instant::now();
    let result = client
        .unary::<_, Bytes, _>(
            request,
            http::uri::PathAndQuery::from_static(standin::SLOW),
            RawCodec,
        )
        .await;
    let status = result.unwrap_err();
    assert!(
        CANCELLED_OR_DEADLINE.contains(&(status.code() as i32)),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    s.standin.reached(standin::SLOW).await;
    let seen = s.standin.seen_on(standin::SLOW);
    assert!(
        seen[0].headers.contains_key("grpc-timeout"),
        "deadline not forwarded to the runtime"
    );
}

/// A codec that passes message bytes through, for methods the CRI types do not have.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
