//! CRI (`runtime.v1`) clients over a unix socket, and request builders for the minimal pods and
//! containers the tests run: host network (no CNI), logs in a temp dir.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    security_profile, Capability, ContainerConfig, ContainerMetadata, CreateContainerRequest,
    ExecSyncRequest, ExecSyncResponse, Image, ImageSpec, ImageStatusRequest, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PullImageRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, SecurityProfile, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest, VersionRequest, VersionResponse,
};
use tonic::transport::{Channel, Endpoint};

/// How long connecting to a CRI socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A gRPC channel to the CRI server listening on the unix socket `socket`.
///
/// Connects eagerly, so a missing or dead socket fails here rather than on the first call. After
/// the server restarts, the channel reconnects on a later call; the call that saw the break fails.
///
/// # Errors
///
/// When the socket does not accept a connection.
pub async fn cri_channel(socket: &Path) -> Result<Channel> {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://localhost")?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .with_context(|| format!("connecting to CRI socket {}", socket.display()))
}

/// Both CRI services over one channel. The generated clients are public so a test can make any
/// call; the methods cover the common steps and turn statuses into errors that name the call.
#[derive(Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    socket: PathBuf,
}

/// A metadata-complete, host-network pod config named `name` in Kubernetes namespace
/// `namespace`, logging to `log_dir` (which the caller creates). The pod UID is unique per call.
pub fn pod_sandbox_config(name: &str, namespace: &str, log_dir: &Path) -> PodSandboxConfig {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let uid = format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid,
            namespace: namespace.to_string(),
            attempt: 0,
        }),
        log_directory: log_dir.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(host_network_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Node network, a PID namespace per container, the pod's IPC: kubelet's choice for a pod with
/// `hostNetwork: true` and no `shareProcessNamespace`.
pub fn host_network_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A container config named `name` running `image` with `command` (the image's entrypoint when
/// empty), logging to `<name>.log` in the pod's log directory. Namespaces as kubelet sets them
/// for a host-network pod: node network, its own PID namespace, the pod's IPC.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(host_network_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(image_spec(image)),
        command: command.iter().map(|s| (*s).to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// A `CreateContainerRequest` in pod `pod_id` (configured as `pod_config`) for a container
/// named `name` that runs `/pause` from `image`, as kubelet sends it.
pub fn create_pause(
    pod_id: &str,
    pod_config: &PodSandboxConfig,
    name: &str,
    image: &str,
) -> CreateContainerRequest {
    CreateContainerRequest {
        pod_sandbox_id: pod_id.to_string(),
        config: Some(container_config(name, image, &["/pause"])),
        sandbox_config: Some(pod_config.clone()),
    }
}

/// A `CreateContainerRequest` shaped like the one kubelet sends for a container of a
/// Deployment's pod under the `restricted` Pod Security Standard: the labels and
/// annotations kubelet sets, the service links of a namespace with three Services
/// (`enableServiceLinks` is on by default) and a few of the application's own variables,
/// the mounts of the service-account token, `/etc/hosts` and the termination log (their
/// host paths made under `host_dir`), CPU and memory limits, and a security context that
/// drops every capability, runs as a non-root user with `no_new_privs` and the runtime's
/// default seccomp profile, and names the paths kubelet masks and makes read-only for the
/// default `procMount`. As kubelet does, it names the image by `image_id` (the id
/// PullImage returned) and carries the pod spec's `image:` as `user_specified_image`.
/// What kubelet derives it from: `generateContainerConfig` and
/// `generateLinuxContainerConfig` in kubelet's `kuberuntime` package.
///
/// # Errors
///
/// When the mounts' host paths cannot be made.
pub fn kubelet_create(
    pod_id: &str,
    pod_config: &PodSandboxConfig,
    name: &str,
    image_id: &str,
    user_specified: &str,
    host_dir: &Path,
) -> Result<CreateContainerRequest> {
    let pod = pod_config.metadata.clone().unwrap_or_default();
    let token_dir = host_dir.join("volumes/kubernetes.io~projected/kube-api-access-7xk2p");
    let termination_log = host_dir.join(format!("containers/{name}/3f9c2a1b"));
    let etc_hosts = host_dir.join("etc-hosts");
    for dir in [&token_dir, &host_dir.join(format!("containers/{name}"))] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for (file, contents) in [
        (token_dir.join("token"), "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
        (token_dir.join("namespace"), pod.namespace.as_str()),
        (termination_log.clone(), ""),
        (etc_hosts.clone(), "127.0.0.1\tlocalhost\n"),
    ] {
        std::fs::write(&file, contents).with_context(|| format!("writing {}", file.display()))?;
    }
    let mount = |container_path: &str, host_path: &Path, readonly: bool| Mount {
        container_path: container_path.to_string(),
        host_path: host_path.display().to_string(),
        readonly,
        ..Default::default()
    };
    let mut envs: Vec<KeyValue> = [
        ("LOG_LEVEL", "info"),
        ("HTTP_PORT", "8080"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://otel-collector.observability:4317",
        ),
    ]
    .iter()
    .map(|(key, value)| KeyValue {
        key: (*key).to_string(),
        value: (*value).to_string(),
    })
    .collect();
    for (service, ip, port) in [
        ("KUBERNETES", "10.96.0.1", 443),
        ("FRONTEND", "10.96.14.7", 80),
        ("BACKEND", "10.96.201.33", 8080),
        ("REDIS", "10.96.97.180", 6379),
    ] {
        let url = format!("tcp://{ip}:{port}");
        let prefix = format!("{service}_PORT_{port}_TCP");
        for (key, value) in [
            (format!("{service}_SERVICE_HOST"), ip.to_string()),
            (format!("{service}_SERVICE_PORT"), port.to_string()),
            (format!("{service}_PORT"), url.clone()),
            (prefix.clone(), url),
            (format!("{prefix}_PROTO"), "tcp".to_string()),
            (format!("{prefix}_PORT"), port.to_string()),
            (format!("{prefix}_ADDR"), ip.to_string()),
        ] {
            envs.push(KeyValue { key, value });
        }
    }
    let strings = |pairs: &[(&str, &str)]| -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    };
    let labels = strings(&[
        ("io.kubernetes.container.name", name),
        ("io.kubernetes.pod.name", &pod.name),
        ("io.kubernetes.pod.namespace", &pod.namespace),
        ("io.kubernetes.pod.uid", &pod.uid),
    ]);
    let annotations = strings(&[
        ("io.kubernetes.container.hash", "6f1ce5ea"),
        (
            "io.kubernetes.container.ports",
            r#"[{"name":"http","containerPort":8080,"protocol":"TCP"}]"#,
        ),
        ("io.kubernetes.container.restartCount", "0"),
        (
            "io.kubernetes.container.terminationMessagePath",
            "/dev/termination-log",
        ),
        ("io.kubernetes.container.terminationMessagePolicy", "File"),
        ("io.kubernetes.pod.terminationGracePeriod", "30"),
    ]);
    let paths = |list: &[&str]| list.iter().map(|p| (*p).to_string()).collect();
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image_id.to_string(),
            user_specified_image: user_specified.to_string(),
            ..Default::default()
        }),
        command: vec!["/pause".to_string()],
        envs,
        mounts: vec![
            mount(
                "/var/run/secrets/kubernetes.io/serviceaccount",
                &token_dir,
                true,
            ),
            mount("/etc/hosts", &etc_hosts, false),
            mount("/dev/termination-log", &termination_log, false),
        ],
        labels,
        annotations,
        log_path: format!("{name}/0.log"),
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 102,
                memory_limit_in_bytes: 256 << 20,
                oom_score_adj: 968,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    drop_capabilities: vec!["ALL".to_string()],
                    ..Default::default()
                }),
                namespace_options: Some(host_network_namespaces()),
                run_as_user: Some(Int64Value { value: 65_532 }),
                no_new_privs: true,
                masked_paths: paths(&[
                    "/proc/asound",
                    "/proc/acpi",
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/latency_stats",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/proc/sched_debug",
                    "/proc/scsi",
                    "/sys/firmware",
                    "/sys/devices/virtual/powercap",
                ]),
                readonly_paths: paths(&[
                    "/proc/bus",
                    "/proc/fs",
                    "/proc/irq",
                    "/proc/sys",
                    "/proc/sysrq-trigger",
                ]),
                seccomp: Some(SecurityProfile {
                    profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    Ok(CreateContainerRequest {
        pod_sandbox_id: pod_id.to_string(),
        config: Some(config),
        sandbox_config: Some(pod_config.clone()),
    })
}

/// A `PullImageRequest` for `image` on behalf of pod `pod` in `namespace` (pod uid
/// `uid-<namespace>`), with no credentials, as kubelet sends it.
pub fn pull_request(image: &str, pod: &str, namespace: &str) -> PullImageRequest {
    PullImageRequest {
        image: Some(image_spec(image)),
        auth: None,
        sandbox_config: Some(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.to_string(),
                uid: format!("uid-{namespace}"),
                namespace: namespace.to_string(),
                attempt: 0,
            }),
            ..Default::default()
        }),
    }
}

/// An `ImageSpec` for `image`.
pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

// === impl CriClient ===

impl CriClient {
    /// Connects to the CRI server on `socket`.
    ///
    /// # Errors
    ///
    /// As [`cri_channel`].
    pub async fn connect(socket: &Path) -> Result<Self> {
        let channel = cri_channel(socket).await?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel),
            socket: socket.to_path_buf(),
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `RuntimeService/Version`.
    ///
    /// # Errors
    ///
    /// On any gRPC error.
    pub async fn version(&mut self) -> Result<VersionResponse> {
        Ok(self
            .runtime
            .version(VersionRequest {
                version: "v1".to_string(),
            })
            .await
            .context("CRI Version")?
            .into_inner())
    }

    /// `ImageService/PullImage` without a sandbox config; returns the image ref containerd gives.
    ///
    /// # Errors
    ///
    /// On any gRPC error.
    pub async fn pull_image(&mut self, image: &str) -> Result<String> {
        Ok(self
            .image
            .pull_image(PullImageRequest {
                image: Some(image_spec(image)),
                ..Default::default()
            })
            .await
            .with_context(|| format!("CRI PullImage {image}"))?
            .into_inner()
            .image_ref)
    }

    /// `ImageService/ImageStatus`: `None` when the runtime does not have the image.
    ///
    /// # Errors
    ///
    /// On any gRPC error.
    pub async fn image_status(&mut self, image: &str) -> Result<Option<Image>> {
        Ok(self
            .image
            .image_status(ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await
            .with_context(|| format!("CRI ImageStatus {image}"))?
            .into_inner()
            .image)
    }

    /// `RuntimeService/RunPodSandbox`; returns the pod sandbox id.
    ///
    /// # Errors
    ///
    /// On any gRPC error.
    pub async fn run_pod(&mut self, config: &PodSandboxConfig) -> Result<String> {
        Ok(self
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .context("CRI RunPodSandbox")?
            .into_inner()
            .pod_sandbox_id)
    }

    /// `CreateContainer` then `StartContainer` in pod `pod_id`; returns the container id.
    ///
    /// # Errors
    ///
    /// On any gRPC error.
    pub async fn create_and_start(
        &mut self,
        pod_id: &str,
        pod_config: &PodSandboxConfig,
        config: &ContainerConfig,
    ) -> Result<String> {
        let container_id = self
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.to_string(),
                config: Some(config.clone()),
                sandbox_config: Some(pod_config.clone()),
            })
            .await
            .context("CRI CreateContainer")?
            .into_inner()
            .container_id;
        self.runtime
            .start_container(StartContainerRequest {
                container_id: container_id.clone(),
            })
            .await
            .with_context(|| format!("CRI StartContainer {container_id}"))?;
        Ok(container_id)
    }

    /// `RuntimeService/ExecSync` of `cmd` in `container_id`, with a 10 s timeout.
    ///
    /// # Errors
    ///
    /// On any gRPC error (a non-zero exit is not one: see `exit_code`).
    pub async fn exec_sync(
        &mut self,
        container_id: &str,
        cmd: &[&str],
    ) -> Result<ExecSyncResponse> {
        Ok(self
            .runtime
            .exec_sync(ExecSyncRequest {
                container_id: container_id.to_string(),
                cmd: cmd.iter().map(|s| (*s).to_string()).collect(),
                timeout: 10,
            })
            .await
            .with_context(|| format!("CRI ExecSync {cmd:?} in {container_id}"))?
            .into_inner())
    }

    /// `StopContainer` (5 s grace) then `RemoveContainer`.
    ///
    /// # Errors
    ///
    /// On any gRPC error.
    pub async fn remove_container(&mut self, container_id: &str) -> Result<()> {
        self.runtime
            .stop_container(StopContainerRequest {
                container_id: container_id.to_string(),
                timeout: 5,
            })
            .await
            .with_context(|| format!("CRI StopContainer {container_id}"))?;
        self.runtime
            .remove_container(RemoveContainerRequest {
                container_id: container_id.to_string(),
            })
            .await
            .with_context(|| format!("CRI RemoveContainer {container_id}"))?;
        Ok(())
    }

    /// `StopPodSandbox` then `RemovePodSandbox` (which also removes the pod's containers).
    ///
    /// # Errors
    ///
    /// On any gRPC error.
    pub async fn remove_pod(&mut self, pod_id: &str) -> Result<()> {
        self.runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            })
            .await
            .with_context(|| format!("CRI StopPodSandbox {pod_id}"))?;
        self.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            })
            .await
            .with_context(|| format!("CRI RemovePodSandbox {pod_id}"))?;
        Ok(())
    }
}
