//! crigate against the real containerd: each CRI call made through crigate and directly,
//! compared. Whatever containerd answers, success or error, a client must see the same.

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;
use tonic::Code;

use crate::client::{encode_frame, literal_request_block, next_frame, RawFrame, PREFACE};
use crate::daemon::{Crigate, Options};
use crate::harness::{container_config, cri_channel, Env};

struct Clients {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
}

async fn clients(socket: &std::path::Path) -> Clients {
    let channel = cri_channel(socket).await.unwrap();
    Clients {
        runtime: RuntimeServiceClient::new(channel.clone()),
        image: ImageServiceClient::new(channel),
    }
}

async fn setup() -> (Env, Crigate) {
    let env = Env::start().await.unwrap();
    let crigate = Crigate::start(
        env.dir(),
        Options::new(env.dir(), env.containerd.socket(), ""),
    )
    .unwrap();
    (env, crigate)
}

/// Status code and message of a failed call, or the response of a successful one.
fn outcome<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<T, (Code, String)> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| (status.code(), status.message().to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_calls_and_error_statuses_match_containerd() {
    let (env, crigate) = setup().await;
    let mut direct = clients(env.containerd.socket()).await;
    let mut proxied = clients(&crigate.socket).await;

    macro_rules! same {
        ($client:ident . $service:ident . $method:ident ( $request:expr )) => {{
            let d = outcome(direct.$service.$method($request).await);
            let p = outcome(proxied.$service.$method($request).await);
            assert_eq!(
                p, d,
                concat!(stringify!($method), " differs through crigate")
            );
            p
        }};
    }

    let version = same!(c.runtime.version(VersionRequest {
        version: "v1".into()
    }))
    .unwrap();
    assert_eq!(version.runtime_name, "containerd");
    same!(c.runtime.status(StatusRequest { verbose: false })).unwrap();
    same!(c.image.list_images(ListImagesRequest { filter: None })).unwrap();
    same!(c
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None }))
    .unwrap();
    same!(c
        .runtime
        .list_containers(ListContainersRequest { filter: None }))
    .unwrap();

    // ImageFsInfo carries the time it was measured; compare everything else.
    let strip = |mut r: ImageFsInfoResponse| {
        for fs in r
            .image_filesystems
            .iter_mut()
            .chain(r.container_filesystems.iter_mut())
        {
            fs.timestamp = 0;
        }
        r
    };
    let d = strip(
        direct
            .image
            .image_fs_info(ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    let p = strip(
        proxied
            .image
            .image_fs_info(ImageFsInfoRequest {})
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(p, d);

    // Errors and empty answers, as containerd gives them.
    let missing = ImageStatusRequest {
        image: Some(ImageSpec {
            image: format!("{}/nothing:here", env.registry.host()),
            ..Default::default()
        }),
        verbose: false,
    };
    let status = same!(c.image.image_status(missing.clone())).unwrap();
    assert!(status.image.is_none());
    let unknown_sandbox = RemovePodSandboxRequest {
        pod_sandbox_id: "0123456789abcdef-unknown".into(),
    };
    same!(c.runtime.remove_pod_sandbox(unknown_sandbox.clone())).ok();
    let err = same!(c.runtime.pod_sandbox_status(PodSandboxStatusRequest {
        pod_sandbox_id: "no-such-sandbox".into(),
        verbose: false,
    }))
    .unwrap_err();
    assert_eq!(err.0, Code::NotFound, "{err:?}");
    let err = same!(c.runtime.container_status(ContainerStatusRequest {
        container_id: String::new(),
        verbose: false,
    }))
    .unwrap_err();
    assert_ne!(err.0, Code::Ok);
    let err = same!(c.runtime.start_container(StartContainerRequest {
        container_id: "missing".into(),
    }))
    .unwrap_err();
    assert_eq!(err.0, Code::NotFound, "{err:?}");
    // Mutating calls that fail in containerd fail the same way through crigate, gated
    // ones included (crigate decides, then relays containerd's own error).
    let err = same!(c.runtime.create_container(CreateContainerRequest {
        pod_sandbox_id: "no-such-sandbox".into(),
        config: Some(container_config("x", &env.app_ref(), &["/pause"])),
        sandbox_config: None,
    }))
    .unwrap_err();
    assert_ne!(err.0, Code::Ok);
    let err = same!(c.image.pull_image(PullImageRequest {
        image: Some(ImageSpec {
            image: format!("{}/missing:v0", env.registry.host()),
            ..Default::default()
        }),
        auth: None,
        sandbox_config: None,
    }))
    .unwrap_err();
    assert_ne!(err.0, Code::Ok);
    same!(c.runtime.run_pod_sandbox(RunPodSandboxRequest {
        config: None,
        runtime_handler: String::new(),
    }))
    .unwrap_err();
    same!(c.runtime.stop_container(StopContainerRequest {
        container_id: "missing".into(),
        timeout: 1,
    }))
    .unwrap_err();
    same!(c.runtime.remove_container(RemoveContainerRequest {
        container_id: "missing".into(),
    }))
    .ok();
    same!(c.runtime.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: "missing".into(),
    }))
    .ok();
    same!(c.runtime.exec_sync(ExecSyncRequest {
        container_id: "missing".into(),
        cmd: vec!["/bin/true".into()],
        timeout: 1,
    }))
    .unwrap_err();
    same!(c.image.remove_image(RemoveImageRequest {
        image: Some(ImageSpec {
            image: format!("{}/missing:v0", env.registry.host()),
            ..Default::default()
        }),
    }))
    .ok();

    // containerd 1.6 predates GetContainerEvents: crigate relays its UNIMPLEMENTED.
    let d = direct
        .runtime
        .get_container_events(GetEventsRequest {})
        .await
        .map(|_| ())
        .unwrap_err();
    let p = proxied
        .runtime
        .get_container_events(GetEventsRequest {})
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!((p.code(), p.message()), (d.code(), d.message()));
    assert_eq!(p.code(), Code::Unimplemented);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_through_crigate_matches_direct() {
    let (env, crigate) = setup().await;
    let mut direct = clients(env.containerd.socket()).await;
    let mut proxied = clients(&crigate.socket).await;

    // The pull through crigate yields the same image reference as one made directly.
    let pull = |image: String, sandbox: &PodSandboxConfig| PullImageRequest {
        image: Some(ImageSpec {
            image,
            ..Default::default()
        }),
        auth: None,
        sandbox_config: Some(sandbox.clone()),
    };
    let sandbox = env.pod_config("web", "prod").unwrap();
    let proxied_ref = proxied
        .image
        .pull_image(pull(env.app_ref(), &sandbox))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    let direct_ref = direct
        .image
        .pull_image(pull(env.app_ref(), &sandbox))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(proxied_ref, direct_ref);
    let spec = ImageStatusRequest {
        image: Some(ImageSpec {
            image: env.app_ref(),
            ..Default::default()
        }),
        verbose: false,
    };
    let d = direct
        .image
        .image_status(spec.clone())
        .await
        .unwrap()
        .into_inner();
    let p = proxied
        .image
        .image_status(spec.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p, d);
    let image = p.image.unwrap();
    assert!(
        image
            .repo_digests
            .iter()
            .any(|r| r.ends_with(&env.app_digest)),
        "{image:?}"
    );

    // A pod with one container, all through crigate.
    let pod_id = proxied
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let status_request = PodSandboxStatusRequest {
        pod_sandbox_id: pod_id.clone(),
        verbose: false,
    };
    let d = direct
        .runtime
        .pod_sandbox_status(status_request.clone())
        .await
        .unwrap()
        .into_inner();
    let p = proxied
        .runtime
        .pod_sandbox_status(status_request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p, d);
    assert_eq!(
        p.status.unwrap().state,
        PodSandboxState::SandboxReady as i32
    );

    let container_id = proxied
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(container_config("app", &env.app_ref(), &["/pause"])),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    proxied
        .runtime
        .start_container(StartContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .unwrap();

    let list = ListContainersRequest { filter: None };
    let d = direct
        .runtime
        .list_containers(list.clone())
        .await
        .unwrap()
        .into_inner();
    let p = proxied
        .runtime
        .list_containers(list)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p, d);
    assert!(p.containers.iter().any(|c| c.id == container_id));
    let status_request = ContainerStatusRequest {
        container_id: container_id.clone(),
        verbose: false,
    };
    let d = direct
        .runtime
        .container_status(status_request.clone())
        .await
        .unwrap()
        .into_inner();
    let p = proxied
        .runtime
        .container_status(status_request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p, d);
    assert_eq!(
        p.status.unwrap().state,
        ContainerState::ContainerRunning as i32
    );
    let d = direct
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let p = proxied
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p, d);

    let exec = ExecSyncRequest {
        container_id: container_id.clone(),
        cmd: vec![
            "/bin/tool".into(),
            "echo".into(),
            "through".into(),
            "crigate".into(),
        ],
        timeout: 10,
    };
    let d = direct
        .runtime
        .exec_sync(exec.clone())
        .await
        .unwrap()
        .into_inner();
    let p = proxied.runtime.exec_sync(exec).await.unwrap().into_inner();
    assert_eq!(p, d);
    assert_eq!(
        (p.stdout.as_slice(), p.exit_code),
        (&b"through crigate\n"[..], 0)
    );

    proxied
        .runtime
        .stop_container(StopContainerRequest {
            container_id: container_id.clone(),
            timeout: 5,
        })
        .await
        .unwrap();
    proxied
        .runtime
        .remove_container(RemoveContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .unwrap();
    proxied
        .runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .unwrap();
    proxied
        .runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .unwrap();
    let gone = direct
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod_id,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    proxied
        .image
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: env.app_ref(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let after = direct.image.image_status(spec).await.unwrap().into_inner();
    assert!(
        after.image.is_none(),
        "RemoveImage through crigate did not remove the image"
    );

    // The pull and the create were decided, with the pod's namespace.
    let logs = crigate.logs();
    let decisions: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("crigate::decision"))
        .collect();
    assert_eq!(decisions.len(), 2, "{logs}");
    assert!(decisions[0].contains("phase=pull") && decisions[0].contains("namespace=\"prod\""));
    assert!(decisions[1].contains("phase=create") && decisions[1].contains("container=\"app\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1alpha2_pull_reaches_the_seam_and_containerd() {
    use k8s_cri::v1alpha2 as alpha;
    let (env, crigate) = setup().await;
    let channel = cri_channel(&crigate.socket).await.unwrap();
    let mut image = alpha::image_service_client::ImageServiceClient::new(channel);
    let response = image
        .pull_image(alpha::PullImageRequest {
            image: Some(alpha::ImageSpec {
                image: env.app_ref(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!response.image_ref.is_empty());
    let logs = crigate.logs();
    assert!(
        logs.lines().any(|l| l.contains("crigate::decision")
            && l.contains("api=runtime.v1alpha2")
            && l.contains("phase=pull")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_restart_is_survived_without_restarting_crigate() {
    let (mut env, crigate) = setup().await;
    let mut proxied = clients(&crigate.socket).await;
    let version = || VersionRequest {
        version: "v1".into(),
    };
    proxied.runtime.version(version()).await.unwrap();
    let pid = crigate.pid();

    env.containerd.stop().await.unwrap();
    let down = proxied.runtime.version(version()).await.unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    let socket = env.containerd.socket().display().to_string();
    assert!(down.message().contains(&socket), "{}", down.message());

    env.containerd.start().await.unwrap();
    // The very first call after containerd is back succeeds: crigate reconnects on demand.
    let version = proxied
        .runtime
        .version(version())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(crigate.pid(), pid, "crigate was restarted");
}

/// Frames of one raw HTTP/2 connection.
type Frames = Vec<RawFrame>;

/// A CRI Version call on a new connection to `socket`, made frame by frame as a client
/// does (its SETTINGS and PINGs acknowledged), and every frame received until the
/// call's trailers.
async fn raw_version_call(socket: &std::path::Path) -> Frames {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let block = literal_request_block("/runtime.v1.RuntimeService/Version");
    let mut hello = PREFACE.to_vec();
    hello.extend(encode_frame(4, 0, 0, &[]));
    hello.extend(encode_frame(1, 0x4, 1, &block));
    // An empty VersionRequest in its gRPC frame, ending the stream.
    hello.extend(encode_frame(0, 0x1, 1, &[0, 0, 0, 0, 0]));
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    stream.write_all(&hello).await.unwrap();

    let mut frames = Frames::new();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            while let Some((kind, flags, id, payload)) = next_frame(&mut buf) {
                match (kind, flags & 0x1) {
                    (4, 0) => stream
                        .write_all(&encode_frame(4, 0x1, 0, &[]))
                        .await
                        .unwrap(),
                    (6, 0) => stream
                        .write_all(&encode_frame(6, 0x1, 0, &payload))
                        .await
                        .unwrap(),
                    _ => {}
                }
                let trailers = kind == 1 && id == 1 && flags & 0x1 != 0;
                frames.push((kind, flags, id, payload));
                if trailers {
                    return;
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert_ne!(n, 0, "the connection closed before the call's trailers");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("no trailers for the Version call");
    frames
}

/// A new connection to `socket` that sends `count` PINGs with nothing else after its
/// SETTINGS, and every frame received until a second after the last PING (or the
/// connection's end).
async fn raw_pings(socket: &std::path::Path, count: u8) -> Frames {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(encode_frame(4, 0, 0, &[]));
    stream.write_all(&hello).await.unwrap();
    let mut frames = Frames::new();
    let mut buf = Vec::new();
    for ping in 1..=count {
        stream
            .write_all(&encode_frame(6, 0, 0, &[ping; 8]))
            .await
            .unwrap();
        // Each PING after the answer to the one before, as a client's are spaced.
        while !frames.iter().any(|(kind, flags, _, payload)| {
            *kind == 6 && flags & 0x1 != 0 && payload[..] == [ping; 8]
        }) {
            let wait = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                read_frames(&mut stream, &mut buf, &mut frames),
            );
            if matches!(wait.await, Ok(0) | Err(_)) {
                return frames;
            }
        }
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while read_frames(&mut stream, &mut buf, &mut frames).await > 0 {}
    })
    .await;
    frames
}

/// Reads once from `stream` into `buf`, moving the whole frames in it to `frames`; the
/// bytes read, 0 at the connection's end.
async fn read_frames(
    stream: &mut tokio::net::UnixStream,
    buf: &mut Vec<u8>,
    frames: &mut Frames,
) -> usize {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.unwrap_or(0);
    buf.extend_from_slice(&chunk[..n]);
    while let Some(frame) = next_frame(buf) {
        frames.push(frame);
    }
    n
}

/// A GOAWAY among `frames`, and its error code.
fn goaway(frames: &Frames) -> Option<u32> {
    frames
        .iter()
        .find(|(kind, _, _, _)| *kind == 7)
        .and_then(|(_, _, _, payload)| payload.get(4..8))
        .map(|code| u32::from_be_bytes(code.try_into().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_pings_are_answered_by_crigate_and_never_reach_the_runtime() {
    let (env, crigate) = setup().await;
    // containerd's gRPC server ends a connection that PINGs it three times with no data
    // of its own in between (ENHANCE_YOUR_CALM, "too_many_pings").
    let direct = raw_pings(env.containerd.socket(), 4).await;
    assert_eq!(goaway(&direct), Some(0xb), "{direct:?}");
    // Through crigate every PING is answered, with its own data, and the connection
    // stays.
    let proxied = raw_pings(&crigate.socket, 4).await;
    for ping in 1..=4u8 {
        assert!(
            proxied.iter().any(|(kind, flags, _, payload)| *kind == 6
                && flags & 0x1 != 0
                && payload[..] == [ping; 8]),
            "PING {ping} unanswered: {proxied:?}"
        );
    }
    assert_eq!(goaway(&proxied), None, "{proxied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerds_pings_and_window_updates_stop_at_crigate_and_its_answers_pass() {
    let (env, crigate) = setup().await;
    let direct = raw_version_call(env.containerd.socket()).await;
    let proxied = raw_version_call(&crigate.socket).await;
    let pings = |frames: &Frames| {
        frames
            .iter()
            .filter(|(kind, flags, _, _)| *kind == 6 && flags & 0x1 == 0)
            .count()
    };
    // containerd's gRPC server follows a request body with a PING (its window sizing)
    // and a connection WINDOW_UPDATE: what this test is about.
    assert!(pings(&direct) > 0, "containerd sent no PING: {direct:?}");
    assert_eq!(pings(&proxied), 0, "a PING reached the client: {proxied:?}");
    let window_updates = |frames: &Frames| {
        frames
            .iter()
            .filter(|(kind, _, stream, _)| *kind == 8 && *stream == 0)
            .count()
    };
    // The increment is owed to the client, paid with others once it has used half its
    // window: one small call uses almost none of it.
    assert!(window_updates(&direct) > 0, "{direct:?}");
    assert_eq!(window_updates(&proxied), 0, "{proxied:?}");
    // The call itself: the same response message, ended by trailers.
    let message = |frames: &Frames| -> Vec<u8> {
        frames
            .iter()
            .filter(|(kind, _, stream, _)| *kind == 0 && *stream == 1)
            .flat_map(|(_, _, _, payload)| payload.clone())
            .collect()
    };
    assert!(!message(&direct).is_empty());
    assert_eq!(message(&proxied), message(&direct));
}

/// Request bodies past the client's connection window reach containerd through crigate,
/// which owes the client containerd's WINDOW_UPDATEs and pays them in time: four calls of
/// 1 MiB (16 connection windows each) and 500 small ones on one connection, each
/// answered as containerd answers it directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_connection_window_are_relayed_without_stalling() {
    let (env, crigate) = setup().await;
    let mut direct = clients(env.containerd.socket()).await;
    let mut proxied = clients(&crigate.socket).await;
    let request = |len: usize| ListContainersRequest {
        filter: Some(ContainerFilter {
            label_selector: [("crigate-test".to_owned(), "x".repeat(len))].into(),
            ..Default::default()
        }),
    };
    let sizes = std::iter::repeat_n(1 << 20, 4).chain(std::iter::repeat_n(2000, 500));
    for (n, len) in sizes.enumerate() {
        let expected = outcome(direct.runtime.list_containers(request(len)).await);
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            proxied.runtime.list_containers(request(len)),
        )
        .await
        .unwrap_or_else(|_| panic!("call {n} of {len} bytes stalled"));
        assert_eq!(outcome(answered), expected, "call {n} of {len} bytes");
    }
}
