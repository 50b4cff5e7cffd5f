//! The harness itself, proven against the real processes with no proxy in between: the registry
//! serves what we push, containerd pulls it and runs pods from it, survives a restart, and two
//! envs run side by side.

use std::time::{Duration, Instant};

use k8s_cri::v1::{
    ContainerState, ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest,
};
use sha2::{Digest as _, Sha256};

use crate::harness::{self, container_config, Env, TestImage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_serves_pushed_manifest_by_tag_with_its_digest() {
    let registry = harness::Registry::start().await.expect("registry starts");
    let image = TestImage::builder()
        .label("test=registry_serves")
        .build()
        .expect("image builds");
    let digest = registry
        .push("demo/app", "v1", &image)
        .await
        .expect("push succeeds");
    assert_eq!(digest, image.manifest_digest());

    let url = format!("{}/v2/demo/app/manifests/v1", registry.url());
    let response = registry
        .http()
        .get(&url)
        .header("accept", image.manifest_media_type())
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some(image.manifest_media_type())
    );
    let body = response.bytes().await.expect("manifest body");
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&body))),
        digest
    );

    // Blobs are served too, and a deleted manifest is gone.
    let layer_url = format!(
        "{}/v2/demo/app/blobs/{}",
        registry.url(),
        image.layer_digest()
    );
    let layer = registry
        .http()
        .get(&layer_url)
        .send()
        .await
        .expect("GET blob");
    assert_eq!(layer.status(), 200);
    assert_eq!(
        layer.bytes().await.expect("blob body").as_ref(),
        image.layer()
    );
    registry
        .delete_manifest("demo/app", &digest)
        .await
        .expect("delete manifest");
    assert!(registry.manifest("demo/app", "v1").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_app_image_and_reports_the_pushed_digest() {
    let env = Env::start().await.expect("env starts");
    eprintln!("Env::start took {:?}", env.startup);
    let mut cri = env.containerd_cri().await.expect("CRI connects");

    assert!(cri
        .image_status(&env.app_ref())
        .await
        .expect("ImageStatus before pull")
        .is_none());
    let image_ref = cri.pull_image(&env.app_ref()).await.expect("PullImage");
    assert_eq!(image_ref, env.app_image.config_digest());

    let image = cri
        .image_status(&env.app_ref())
        .await
        .expect("ImageStatus")
        .expect("image is present after the pull");
    let expected = format!("{}/app@{}", env.registry.host(), env.app_digest);
    assert_eq!(image.repo_digests, vec![expected]);
    assert_eq!(image.repo_tags, vec![env.app_ref()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_runs_a_container_through_its_whole_lifecycle() {
    let env = Env::start().await.expect("env starts");
    let mut cri = env.containerd_cri().await.expect("CRI connects");
    cri.pull_image(&env.app_ref()).await.expect("PullImage");

    let pod_config = env.pod_config("lifecycle", "default").expect("pod config");
    let pod_id = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;

    let container_id = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(container_config("app", &env.app_ref(), &["/pause"])),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(StartContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .expect("StartContainer");

    let status = cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: container_id.clone(),
            verbose: false,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .status
        .expect("status is set");
    assert_eq!(status.state(), ContainerState::ContainerRunning);

    let exec = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: container_id.clone(),
            cmd: vec!["/bin/tool".into(), "echo".into(), "hello".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "hello\n");
    assert_eq!(exec.exit_code, 0);
    let failing = cri
        .exec_sync(&container_id, &["/bin/tool", "exit", "3"])
        .await
        .expect("ExecSync exit 3");
    assert_eq!(failing.exit_code, 3);

    cri.runtime
        .stop_container(StopContainerRequest {
            container_id: container_id.clone(),
            timeout: 5,
        })
        .await
        .expect("StopContainer");
    let stopped = cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: container_id.clone(),
            verbose: false,
        })
        .await
        .expect("ContainerStatus after stop")
        .into_inner()
        .status
        .expect("status is set");
    assert_eq!(stopped.state(), ContainerState::ContainerExited);
    // The binary exits 0 on SIGTERM: it is PID-1 safe.
    assert_eq!(stopped.exit_code, 0);

    cri.runtime
        .remove_container(RemoveContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .expect("RemoveContainer");
    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("StopPodSandbox");
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .expect("RemovePodSandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_restarts_on_the_same_state_with_pods_alive() {
    let mut env = Env::start().await.expect("env starts");
    let mut cri = env.containerd_cri().await.expect("CRI connects");
    cri.pull_image(&env.app_ref()).await.expect("PullImage");
    let pod_config = env.pod_config("restart", "default").expect("pod config");
    let pod_id = cri.run_pod(&pod_config).await.expect("RunPodSandbox");
    let container_id = cri
        .create_and_start(
            &pod_id,
            &pod_config,
            &container_config("app", &env.app_ref(), &[]),
        )
        .await
        .expect("container starts");

    env.containerd.stop().await.expect("containerd stops");
    assert!(!env.containerd.is_running());
    assert!(cri.version().await.is_err(), "CRI answers while stopped");

    let restarted = Instant::now();
    env.containerd
        .start()
        .await
        .expect("containerd starts again");
    eprintln!("containerd restart took {:?}", restarted.elapsed());
    let mut cri = env.containerd_cri().await.expect("CRI connects again");
    let version = cri.version().await.expect("Version after restart");
    assert_eq!(version.runtime_name, "containerd");

    // Same state: the image and the running container are still there.
    assert!(cri
        .image_status(&env.app_ref())
        .await
        .expect("ImageStatus")
        .is_some());
    let exec = cri
        .exec_sync(&container_id, &["/bin/tool", "echo", "still", "here"])
        .await
        .expect("ExecSync after restart");
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "still here\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_envs_run_side_by_side_independently() {
    let (a, b) = tokio::try_join!(Env::start(), Env::start()).expect("both envs start");
    assert_ne!(a.registry.host(), b.registry.host());
    assert_ne!(a.containerd.socket(), b.containerd.socket());

    // Same app image bytes in both registries; each containerd pulls from its own registry only.
    let mut cri_a = a.containerd_cri().await.expect("CRI a");
    let mut cri_b = b.containerd_cri().await.expect("CRI b");
    cri_a.pull_image(&a.app_ref()).await.expect("pull in a");
    assert!(cri_b
        .image_status(&a.app_ref())
        .await
        .expect("ImageStatus in b")
        .is_none());

    let pod_a = a.pod_config("side-a", "default").expect("pod config a");
    cri_a.run_pod(&pod_a).await.expect("pod in a");
    let pods_b = cri_b
        .runtime
        .list_pod_sandbox(k8s_cri::v1::ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox in b")
        .into_inner()
        .items;
    assert!(pods_b.is_empty(), "b sees a's pod: {pods_b:?}");

    // Tearing a down leaves b working.
    let a_dir = a.containerd.dir().to_path_buf();
    drop(cri_a);
    drop(a);
    assert!(!a_dir.exists(), "a's containerd dir survived its drop");
    assert!(harness::process::mounts_under(&a_dir).is_empty());
    cri_b.version().await.expect("b still answers");
    cri_b.pull_image(&b.app_ref()).await.expect("pull in b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_env_kills_its_containers_and_unmounts_everything() {
    let env = Env::start().await.expect("env starts");
    let mut cri = env.containerd_cri().await.expect("CRI connects");
    cri.pull_image(&env.app_ref()).await.expect("PullImage");
    let pod_config = env.pod_config("teardown", "default").expect("pod config");
    let pod_id = cri.run_pod(&pod_config).await.expect("RunPodSandbox");
    let container_id = cri
        .create_and_start(
            &pod_id,
            &pod_config,
            &container_config("app", &env.app_ref(), &[]),
        )
        .await
        .expect("container starts");
    let verbose = cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id,
            verbose: true,
        })
        .await
        .expect("ContainerStatus verbose")
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(verbose.info.get("info").expect("verbose info")).expect("info JSON");
    let container_pid = info["pid"].as_i64().expect("container pid");
    let alive = |pid: i64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    };
    assert!(alive(container_pid));
    let dir = env.containerd.dir().to_path_buf();
    assert!(
        !harness::process::mounts_under(&dir).is_empty(),
        "a running pod mounts its rootfs under the containerd dir"
    );
    // containerd names its config, the shims name containerd's socket: both are under `dir`.
    let needle = format!("{}/", dir.display());
    let mentions_dir = || {
        std::fs::read_dir("/proc")
            .expect("read /proc")
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .filter(|c| String::from_utf8_lossy(c).contains(&needle))
            .count()
    };
    assert!(mentions_dir() >= 2, "containerd and its shims are running");

    drop(cri);
    let dropped = Instant::now();
    drop(env);
    eprintln!("Env drop took {:?}", dropped.elapsed());
    assert!(dropped.elapsed() < Duration::from_secs(10));
    assert_eq!(mentions_dir(), 0, "a containerd or shim outlived the env");
    assert!(
        !alive(container_pid),
        "the container process outlived the env"
    );
    assert!(harness::process::mounts_under(&dir).is_empty());
    assert!(!dir.exists());
}

#[test]
fn test_images_are_reproducible_and_labels_change_the_digest() {
    let a = TestImage::builder().label("x=1").build().expect("image a");
    let again = TestImage::builder()
        .label("x=1")
        .build()
        .expect("image a again");
    let b = TestImage::builder().label("x=2").build().expect("image b");
    assert_eq!(a.manifest_digest(), again.manifest_digest());
    assert_ne!(a.manifest_digest(), b.manifest_digest());
    assert_eq!(
        a.layer_digest(),
        b.layer_digest(),
        "labels live in the config only"
    );

    let config: serde_json::Value = serde_json::from_slice(a.config()).expect("config JSON");
    assert_eq!(config["config"]["Labels"]["x"], "1");
    assert_eq!(config["config"]["Entrypoint"][0], "/pause");
    assert_eq!(config["os"], "linux");
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(a.layer()), &mut tar)
        .expect("layer gunzips");
    assert_eq!(config["rootfs"]["diff_ids"][0], a.diff_id());
    assert_eq!(
        a.diff_id(),
        format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
    );

    let mut paths: Vec<String> = tar::Archive::new(tar.as_slice())
        .entries()
        .expect("tar entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    paths.sort();
    assert_eq!(paths, ["bin/", "bin/tool", "pause"]);
}

#[test]
fn missing_tools_fail_loudly_with_the_fix() {
    let error = harness::process::require(&["crigate-no-such-tool"], false)
        .expect_err("a missing tool is an error, never a skip");
    let message = format!("{error:#}");
    assert!(message.contains("crigate-no-such-tool"), "{message}");
    assert!(message.contains(".ci/run"), "{message}");
}

#[test]
fn upload_location_accepts_relative_and_absolute_urls_with_queries() {
    use harness::registry::upload_location;

    let base = "http://127.0.0.1:5000";
    let mut relative = upload_location(base, "/v2/app/blobs/uploads/u1?_state=abc").unwrap();
    relative
        .query_pairs_mut()
        .append_pair("digest", "sha256:00");
    assert_eq!(
        relative.as_str(),
        "http://127.0.0.1:5000/v2/app/blobs/uploads/u1?_state=abc&digest=sha256%3A00"
    );
    let mut absolute =
        upload_location(base, "http://127.0.0.1:5000/v2/app/blobs/uploads/u2").unwrap();
    absolute
        .query_pairs_mut()
        .append_pair("digest", "sha256:00");
    assert_eq!(
        absolute.as_str(),
        "http://127.0.0.1:5000/v2/app/blobs/uploads/u2?digest=sha256%3A00"
    );
}

#[test]
fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut ports = Vec::new();
    for _ in 0..200 {
        let port = harness::process::free_port().unwrap();
        assert!(
            port < ephemeral_low,
            "{port} is in the range the kernel gives outgoing connections"
        );
        // Nothing holds it: the process it is meant for can bind it, as it does at once
        // (a port is free only until some process on the machine takes it). Another
        // test's `free_port` may be probing the same number for an instant: a bind that
        // fails is tried again, and a port still held after that is an error.
        let bound = (0..5).any(|attempt| {
            if attempt > 0 {
                harness::process::pause(std::time::Duration::from_millis(20));
            }
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        assert!(bound, "{port} was handed out but cannot be bound");
        ports.push(port);
    }
    let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
}
