//! The CreateContainer gate on a relayed stream, in process. The runtime here is a small
//! HTTP/2 server on a unix socket and the decision seam is the test's own: what these
//! tests show is timing that only a seam the test controls can produce (a record whose
//! durability is held back) and what the runtime receives of a call crigate takes back.
//! The same gate against the real containerd is shown by `integration/enforce.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Mutex;

use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_cri::v1;
use prost::Message;
use tokio::net::UnixListener;
use tokio::sync::Notify;

use super::*;
use crate::config::Config;
use crate::decision::{BoxFuture, Decide, Decided, Decision, Durable, RequestContext};

const CREATE: &str = "/runtime.v1.RuntimeService/CreateContainer";
const IMAGE: &str =
    "registry.example/app@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const PINNED: &str =
    "registry.example/app@sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// A decision the test chooses, whose record becomes durable when the test says so.
struct Chosen {
    decision: Decision,
    durable: Mutex<Option<oneshot::Receiver<()>>>,
    /// How long deciding takes (a verification the cache does not answer).
    takes: Duration,
    /// How long the first poll keeps the thread busy (a decision made at once that costs
    /// CPU).
    blocks: Duration,
}

impl Chosen {
    /// `decision`, made in `takes`, its record durable once the returned sender fires.
    fn held(decision: Decision, takes: Duration) -> (Self, oneshot::Sender<()>) {
        let (durable, held) = oneshot::channel();
        let chosen = Self {
            decision,
            durable: Mutex::new(Some(held)),
            takes,
            blocks: Duration::ZERO,
        };
        (chosen, durable)
    }

    /// `decision`, made at once, its record durable at once.
    fn at_once(decision: Decision) -> Self {
        Self {
            decision,
            durable: Mutex::new(None),
            takes: Duration::ZERO,
            blocks: Duration::ZERO,
        }
    }

    /// `decision`, made at once in a first poll that keeps the thread busy for `blocks`.
    fn busy(decision: Decision, blocks: Duration) -> Self {
        Self {
            blocks,
            ..Self::at_once(decision)
        }
    }
}

impl Decide for Chosen {
    fn decide<'a>(&'a self, _: &'a RequestContext) -> BoxFuture<'a, Decided> {
        let held = self.durable.lock().unwrap().take();
        let (decision, takes, blocks) = (self.decision.clone(), self.takes, self.blocks);
        Box::pin(async move {
            // Blocking on purpose: the stand-in for a first poll that costs CPU.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(blocks);
            if !takes.is_zero() {
                tokio::time::sleep(takes).await;
            }
            Decided {
                decision,
                durable: match held {
                    Some(held) => Durable::after(async move {
                        let _ = held.await;
                    }),
                    None => Durable::now(),
                },
            }
        })
    }
}

/// One request as the runtime got it: its body, or `None` if it was cancelled first.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    body: Option<Bytes>,
    /// Its `grpc-timeout`, if it had one.
    timeout: Option<String>,
}

/// The runtime: answers every call with a CreateContainerResponse and records what came.
struct Runtime {
    socket: std::path::PathBuf,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    /// The accepting task and every connection's, so the runtime can be made to vanish.
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Runtime {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("runtime.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let (log, notify) = (received.clone(), arrived.clone());
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let connections = tasks.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, notify) = (log.clone(), notify.clone());
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (log, notify) = (log.clone(), notify.clone());
                        async move {
                            let path = request.uri().path().to_owned();
                            let timeout = request
                                .headers()
                                .get("grpc-timeout")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let body = request
                                .into_body()
                                .collect()
                                .await
                                .ok()
                                .map(|b| b.to_bytes());
                            log.lock().unwrap().push(Received {
                                path,
                                body,
                                timeout,
                            });
                            notify.notify_waiters();
                            let message = v1::CreateContainerResponse {
                                container_id: "c-1".to_owned(),
                            };
                            let mut trailers = HeaderMap::new();
                            trailers.insert("grpc-status", "0".parse().unwrap());
                            let mut response = Response::new(ProxyBody::with_trailers(
                                grpc(&message.encode_to_vec()),
                                Some(trailers),
                            ));
                            response
                                .headers_mut()
                                .insert("content-type", "application/grpc".parse().unwrap());
                            Ok::<_, Infallible>(response)
                        }
                    });
                let connection = tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        // grpc-go's windows, as containerd serves CRI with them.
                        .initial_stream_window_size(65_535)
                        .initial_connection_window_size(65_535)
                        .serve_connection(TokioIo::new(stream), service),
                );
                connections.lock().unwrap().push(connection.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accepting.abort_handle());
        Self {
            socket,
            received,
            arrived,
            tasks,
        }
    }

    /// Gone as a crashed runtime is: its socket file, its listener and its connections.
    fn stop(&self) {
        let _ = std::fs::remove_file(&self.socket);
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests have come, whole or cancelled.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let arrived = self.arrived.notified();
                let received = self.received();
                if received.len() >= n {
                    return received;
                }
                arrived.await;
            }
        })
        .await
        .expect("the runtime never got the requests")
    }
}

fn grpc(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::new();
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed.freeze()
}

fn create_request() -> Bytes {
    create_request_annotated(0)
}

/// A CreateContainerRequest whose pod carries `annotation` bytes of annotations (kubelet
/// passes the pod's annotations, which may be large, in the sandbox config).
fn create_request_annotated(annotation: usize) -> Bytes {
    let mut annotations = std::collections::HashMap::new();
    if annotation > 0 {
        annotations.insert("example.com/large".to_owned(), "x".repeat(annotation));
    }
    let request = v1::CreateContainerRequest {
        pod_sandbox_id: "sandbox-1".to_owned(),
        config: Some(v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: "app".to_owned(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: IMAGE.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        sandbox_config: Some(v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "web".to_owned(),
                uid: "uid-1".to_owned(),
                namespace: "prod".to_owned(),
                attempt: 0,
            }),
            annotations,
            ..Default::default()
        }),
    };
    grpc(&request.encode_to_vec())
}

/// crigate's relay serving one end of a socket pair in front of the runtime at
/// `upstream`, deciding with `decide`, with more keys of `[cri]`; the other end, for the
/// client.
pub(super) fn relay_to(
    dir: &Path,
    upstream: &Path,
    decide: Arc<dyn Decide>,
    cri: &str,
) -> UnixStream {
    let text = format!(
        "[cri]\nlisten = \"{}\"\nupstream = \"{}\"\n{cri}\n",
        dir.join("crigate.sock").display(),
        upstream.display()
    );
    let config = Config::parse(&text, Path::new("test.toml")).unwrap();
    let proxy = Arc::new(Proxy::new(config.cri, decide));
    let (client, served) = UnixStream::pair().unwrap();
    let caller = Caller {
        pid: None,
        uid: 0,
        gid: 0,
    };
    tokio::spawn(serve(served, caller, proxy, CancellationToken::new()));
    client
}

/// crigate's relay in front of `runtime`, deciding with `decide`, and a client
/// connection to it.
async fn connect(
    dir: &Path,
    runtime: &Runtime,
    decide: Chosen,
) -> hyper::client::conn::http2::SendRequest<ProxyBody> {
    connect_with(dir, runtime, decide, "").await
}

/// As [`connect`], with more keys of `[cri]`.
async fn connect_with(
    dir: &Path,
    runtime: &Runtime,
    decide: Chosen,
    cri: &str,
) -> hyper::client::conn::http2::SendRequest<ProxyBody> {
    client_to(dir, &runtime.socket, decide, cri).await
}

/// An HTTP/2 client of crigate's relay in front of the runtime at `upstream`.
async fn client_to(
    dir: &Path,
    upstream: &Path,
    decide: Chosen,
    cri: &str,
) -> hyper::client::conn::http2::SendRequest<ProxyBody> {
    let client = relay_to(dir, upstream, Arc::new(decide), cri);
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

fn create_call(body: Bytes) -> Request<ProxyBody> {
    Request::builder()
        .method("POST")
        .uri(format!("http://localhost{CREATE}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(ProxyBody::full(body))
        .unwrap()
}

/// The answer's body and its grpc-status and grpc-message, from headers or trailers.
async fn read_answer(response: Response<hyper::body::Incoming>) -> (Bytes, String, String) {
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (status, message) = (field("grpc-status"), field("grpc-message"));
    (collected.to_bytes(), status, message)
}

/// The answer to a create sent on `client`, which must come within five seconds
/// (`held` says what it means if it does not).
async fn answer_in_time(
    client: &mut hyper::client::conn::http2::SendRequest<ProxyBody>,
    held: &str,
) -> (Bytes, String, String) {
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        client.send_request(create_call(create_request())),
    )
    .await
    .expect(held)
    .unwrap();
    read_answer(response).await
}

type Call = tokio::task::JoinHandle<Result<Response<hyper::body::Incoming>, hyper::Error>>;

/// Checks that `call` has no answer yet, makes its record durable, and reads the answer.
async fn answered_once_durable(call: Call, durable: oneshot::Sender<()>) -> (Bytes, String) {
    assert!(
        !call.is_finished(),
        "answered before the record was durable"
    );
    durable.send(()).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let (body, status, _) = read_answer(response).await;
    (body, status)
}

#[tokio::test]
async fn an_allowed_create_reaches_the_runtime_at_once_and_its_answer_waits_for_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let (decide, durable) = Chosen::held(Decision::allow(), Duration::ZERO);
    let mut client = connect(dir.path(), &runtime, decide).await;
    let request = create_request();
    let call = tokio::spawn(client.send_request(create_call(request.clone())));

    // The runtime has the caller's bytes, unchanged, while the record is not durable.
    let received = runtime.wait_for(1).await;
    assert_eq!(received[0].path, CREATE);
    assert_eq!(received[0].body.as_ref(), Some(&request));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (body, status) = answered_once_durable(call, durable).await;
    assert_eq!(status, "0");
    let answer = v1::CreateContainerResponse::decode(&body[5..]).unwrap();
    assert_eq!(answer.container_id, "c-1");
}

#[tokio::test]
async fn an_answer_whose_record_is_already_durable_passes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let (decide, durable) = Chosen::held(Decision::allow(), Duration::ZERO);
    // The record is durable (its fsync done) before the runtime has even seen the call,
    // as it mostly is before a runtime answers: nothing waits for it, and the answer
    // is relayed as it comes.
    durable.send(()).unwrap();
    let mut client = connect(dir.path(), &runtime, decide).await;
    for _ in 0..3 {
        let (body, status, _) = answer_in_time(&mut client, "the answer was held").await;
        assert_eq!(status, "0");
        let answer = v1::CreateContainerResponse::decode(&body[5..]).unwrap();
        assert_eq!(answer.container_id, "c-1");
    }
}

#[tokio::test]
async fn a_denied_create_is_cancelled_on_the_runtime_before_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let decide = Chosen::at_once(Decision::Deny {
        message: "crigate denied it".to_owned(),
    });
    let mut client = connect(dir.path(), &runtime, decide).await;
    let response = client
        .send_request(create_call(create_request()))
        .await
        .unwrap();
    let (_, status, message) = read_answer(response).await;
    assert_eq!(status, "7", "PERMISSION_DENIED");
    assert!(message.contains("crigate%20denied%20it"), "{message}");
    let received = runtime.wait_for(1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, CREATE);
    assert!(received[0].body.is_none(), "the runtime got the body");
    // The connection goes on serving: the same call again is denied the same way.
    let response = client
        .send_request(create_call(create_request()))
        .await
        .unwrap();
    assert_eq!(read_answer(response).await.1, "7");
}

#[tokio::test]
async fn a_create_allowed_only_pinned_is_sent_anew_with_the_pinned_image() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let decide = Chosen::at_once(Decision::Allow {
        pin: Some(PINNED.to_owned()),
        volumes: Vec::new(),
    });
    let mut client = connect(dir.path(), &runtime, decide).await;
    let response = client
        .send_request(create_call(create_request()))
        .await
        .unwrap();
    let (body, status, _) = read_answer(response).await;
    assert_eq!(status, "0");
    assert_eq!(
        v1::CreateContainerResponse::decode(&body[5..])
            .unwrap()
            .container_id,
        "c-1"
    );
    let received = runtime.wait_for(2).await;
    let (cancelled, whole): (Vec<_>, Vec<_>) = received.iter().partition(|r| r.body.is_none());
    assert_eq!((cancelled.len(), whole.len()), (1, 1), "{received:?}");
    let sent = whole[0].body.as_ref().unwrap();
    let request = v1::CreateContainerRequest::decode(&sent[5..]).unwrap();
    let config = request.config.unwrap();
    assert_eq!(config.image.unwrap().image, PINNED);
    assert_eq!(config.metadata.unwrap().name, "app");
    assert_eq!(request.pod_sandbox_id, "sandbox-1");
}

/// A create sent anew, pinned, after a decision that took time carries the time left of
/// the caller's deadline, not the whole of it; past the deadline it is not sent at all.
#[tokio::test]
async fn a_create_sent_anew_carries_the_time_left_of_its_callers_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let pinned = Decision::Allow {
        pin: Some(PINNED.to_owned()),
        volumes: Vec::new(),
    };
    let decide = Chosen::held(pinned.clone(), Duration::from_millis(400)).0;
    let mut client = connect(dir.path(), &runtime, decide).await;
    let mut call = create_call(create_request());
    call.headers_mut()
        .insert("grpc-timeout", "10S".parse().unwrap());
    let response = client.send_request(call).await.unwrap();
    assert_eq!(read_answer(response).await.1, "0");
    let received = runtime.wait_for(2).await;
    let timeouts: Vec<Option<&str>> = received.iter().map(|r| r.timeout.as_deref()).collect();
    // The first, cancelled, went with the caller's head; the second was sent anew.
    assert_eq!(timeouts[0], Some("10S"), "{received:?}");
    let left = timeouts[1].expect("the pinned create has a deadline");
    let micros: u64 = left.strip_suffix('u').unwrap().parse().unwrap();
    assert!((9_000_000..=9_600_000).contains(&micros), "{left}");

    // A deadline that passes while the call is decided: answered DEADLINE_EXCEEDED, and
    // only the caller's own head, cancelled, ever reached the runtime.
    past_its_deadline(Chosen::held(pinned, Duration::from_millis(400)).0).await;

    // The same for a create allowed as sent: its held body never follows its head, and
    // the caller hears of it at its deadline, not once the decision is made.
    let decide = Chosen::held(Decision::allow(), Duration::from_millis(400)).0;
    let took = past_its_deadline(decide).await;
    assert!(took < Duration::from_millis(350), "{took:?}");

    // And for one whose decision, made in its first poll, took the thread past the
    // deadline (no timer could end it): allowed as sent, and still not passed on.
    past_its_deadline(Chosen::busy(Decision::allow(), Duration::from_millis(200))).await;
}

/// Sends a create with a 100 ms `grpc-timeout`, decided by `decide` past it, and checks
/// that it is answered DEADLINE_EXCEEDED and that no body of it reached the runtime;
/// returns how long the answer took.
async fn past_its_deadline(decide: Chosen) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let mut client = connect(dir.path(), &runtime, decide).await;
    let mut call = create_call(create_request());
    call.headers_mut()
        .insert("grpc-timeout", "100m".parse().unwrap());
    let started = std::time::Instant::now();
    let response = client.send_request(call).await.unwrap();
    assert_eq!(read_answer(response).await.1, "4");
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let received = runtime.received();
    assert!(received.iter().all(|r| r.body.is_none()), "{received:?}");
    took
}

#[tokio::test]
async fn a_create_whose_image_volume_is_pinned_reaches_the_runtime_with_that_mount_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let volume_id = format!("sha256:{}", "3".repeat(64));
    let decide = Chosen::at_once(Decision::Allow {
        pin: Some(PINNED.to_owned()),
        volumes: vec![crate::decision::VolumePin {
            mount: 1,
            image: volume_id.clone(),
        }],
    });
    let mut client = connect(dir.path(), &runtime, decide).await;
    let mut request = v1::CreateContainerRequest::decode(&create_request()[5..]).unwrap();
    let volume = |path: &str, image: &str| v1::Mount {
        container_path: path.to_owned(),
        readonly: true,
        image: Some(v1::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mounts = vec![
        volume("/models", "models:v1"),
        volume("/plugins", "plugins:v1"),
    ];
    request.config.as_mut().unwrap().mounts = mounts.clone();
    let response = client
        .send_request(create_call(grpc(&request.encode_to_vec())))
        .await
        .unwrap();
    assert_eq!(read_answer(response).await.1, "0");
    let received = runtime.wait_for(2).await;
    let sent = received
        .iter()
        .find_map(|r| r.body.as_ref())
        .expect("the runtime got the request");
    let sent = v1::CreateContainerRequest::decode(&sent[5..]).unwrap();
    let config = sent.config.unwrap();
    assert_eq!(config.image.unwrap().image, PINNED);
    // Only the pinned mount's image changed; the mounts are as many as were sent.
    assert_eq!(
        config.mounts,
        vec![mounts[0].clone(), volume("/plugins", &volume_id)]
    );
    assert_eq!(sent.pod_sandbox_id, "sandbox-1");
}

#[tokio::test]
async fn a_create_whose_decision_takes_time_is_held_until_it_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let (decide, durable) = Chosen::held(Decision::allow(), Duration::from_millis(300));
    let mut client = connect(dir.path(), &runtime, decide).await;
    let request = create_request();
    let call = tokio::spawn(client.send_request(create_call(request.clone())));
    // The head reaches the runtime at once; the body only once the call is allowed.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(runtime.received().is_empty(), "{:?}", runtime.received());
    let received = runtime.wait_for(1).await;
    assert_eq!(received[0].body.as_ref(), Some(&request));
    assert_eq!(answered_once_durable(call, durable).await.1, "0");
}

#[tokio::test]
async fn creates_larger_than_the_runtimes_windows_are_decided_and_pass_whole() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let decide = Chosen::at_once(Decision::allow());
    let mut client = connect(dir.path(), &runtime, decide).await;
    // Sizes around the runtime's 65,535-byte stream and connection windows, and several
    // calls at once, whose bodies together are more than the connection window.
    for size in [10_000, 60_000, 70_000, 300_000] {
        let request = create_request_annotated(size);
        let calls: Vec<_> = (0..8)
            .map(|_| tokio::spawn(client.send_request(create_call(request.clone()))))
            .collect();
        for call in calls {
            let response = tokio::time::timeout(Duration::from_secs(5), call)
                .await
                .unwrap_or_else(|_| panic!("a {size}-byte annotation stalled the call"))
                .unwrap()
                .unwrap();
            assert_eq!(read_answer(response).await.1, "0", "{size}");
        }
    }
    let whole: Vec<_> = runtime
        .received()
        .into_iter()
        .filter_map(|r| r.body)
        .collect();
    assert_eq!(whole.len(), 32);
    for size in [10_000, 60_000, 70_000, 300_000] {
        let expected = create_request_annotated(size);
        assert_eq!(
            whole.iter().filter(|b| **b == expected).count(),
            8,
            "{size}"
        );
    }
}

#[tokio::test]
async fn a_runtime_lost_while_a_create_is_decided_fails_it_unavailable_and_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    // The decision outlasts the runtime by far; its record never becomes durable.
    let (decide, _durable_never) = Chosen::held(Decision::allow(), Duration::from_secs(1));
    let mut client = connect(dir.path(), &runtime, decide).await;
    let call = tokio::spawn(client.send_request(create_call(create_request())));
    tokio::time::sleep(Duration::from_millis(100)).await;
    runtime.stop();
    let response = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call hung once the runtime was gone")
        .unwrap()
        .unwrap();
    let (_, status, message) = read_answer(response).await;
    assert_eq!(status, "14", "UNAVAILABLE: {message}");
    assert!(message.contains("runtime.sock"), "{message}");
    assert!(
        runtime.received().iter().all(|r| r.body.is_none()),
        "the runtime got the body"
    );
    // The connection is still served: crigate answers while the runtime is away.
    let (_, status, _) = answer_in_time(&mut client, "the connection stopped serving").await;
    assert_eq!(status, "14");
}

#[tokio::test]
async fn a_create_over_the_message_limit_is_refused_and_never_reaches_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::start(dir.path());
    let decide = Chosen::at_once(Decision::allow());
    let mut client = connect_with(dir.path(), &runtime, decide, "max_message_bytes = 4096").await;
    let small = create_request_annotated(1_000);
    let large = create_request_annotated(5_000);
    let response = client.send_request(create_call(large)).await.unwrap();
    let (_, status, message) = read_answer(response).await;
    assert_eq!(status, "8", "RESOURCE_EXHAUSTED: {message}");
    let response = client
        .send_request(create_call(small.clone()))
        .await
        .unwrap();
    assert_eq!(read_answer(response).await.1, "0");
    let whole: Vec<_> = runtime
        .received()
        .into_iter()
        .filter_map(|r| r.body)
        .collect();
    assert_eq!(whole, vec![small]);
}

#[tokio::test]
async fn a_create_decided_in_its_first_poll_reaches_the_runtime_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("runtime.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // The runtime, on a thread of its own so that it reads whenever bytes arrive: for
    // each frame of stream 1, the number of the read that completed it.
    let runtime = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut settings = BytesMut::new();
        frame::put_settings(&mut settings, &[]);
        stream.write_all(&settings).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (mut buf, mut chunk, mut seen) = (BytesMut::new(), vec![0; 65_536], Vec::new());
        for read in 0.. {
            let n = stream.read(&mut chunk).unwrap();
            assert_ne!(n, 0, "crigate closed the runtime connection");
            buf.extend_from_slice(&chunk[..n]);
            if buf.starts_with(frame::PREFACE) {
                let _ = buf.split_to(frame::PREFACE.len());
            }
            while let Some((head, _)) = frame::next(&mut buf) {
                if head.kind == kind::SETTINGS && !head.has(flag::ACK) {
                    let mut ack = BytesMut::new();
                    frame::put_settings_ack(&mut ack);
                    stream.write_all(&ack).unwrap();
                }
                if head.stream == 1 {
                    seen.push((read, head.kind));
                    if head.kind == kind::DATA && head.has(flag::END_STREAM) {
                        return seen;
                    }
                }
            }
        }
        unreachable!()
    });
    // Deciding keeps crigate's thread busy long enough for the runtime to read anything
    // written before the decision on its own.
    let decide = Chosen::busy(Decision::allow(), Duration::from_millis(100));
    let mut sender = client_to(dir.path(), &socket, decide, "").await;
    let call = tokio::spawn(sender.send_request(create_call(create_request())));
    let seen = tokio::task::spawn_blocking(move || runtime.join().unwrap())
        .await
        .unwrap();
    call.abort();
    let reads: BTreeSet<usize> = seen.iter().map(|(read, _)| *read).collect();
    assert_eq!(
        seen.first().map(|(_, kind)| *kind),
        Some(kind::HEADERS),
        "{seen:?}"
    );
    assert_eq!(
        reads.len(),
        1,
        "head and body came in separate writes: {seen:?}"
    );
}
