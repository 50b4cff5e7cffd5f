//! A CRI client crigate's own code has no part in: gRPC C-core, driven through Python's
//! `grpcio` (`integration/grpc_core_client.py`; `integration/setup` installs it). Its
//! HTTP/2 stack is not the one the other tests' clients share with crigate (hyper and
//! h2): it fills and reuses the HPACK header table its own way, Huffman-codes, sends
//! its own SETTINGS, window updates and pings. What it sees through crigate must be
//! what it sees from containerd, for forwarded and intercepted calls alike.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use prost::Message;
use serde_json::{json, Value};

/// One call for the client: a method, its request, and how to send it.
pub struct Call {
    method: String,
    request: Vec<u8>,
    timeout: Option<f64>,
    metadata: Vec<(String, String)>,
    copies: usize,
}

impl Call {
    pub fn new(method: &str, request: &impl Message) -> Self {
        Self::raw(method, request.encode_to_vec())
    }

    pub fn raw(method: &str, request: Vec<u8>) -> Self {
        Self {
            method: method.to_owned(),
            request,
            timeout: None,
            metadata: Vec::new(),
            copies: 1,
        }
    }

    pub fn timeout(mut self, seconds: f64) -> Self {
        self.timeout = Some(seconds);
        self
    }

    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sends the call `copies` times at once on the one connection.
    pub fn copies(mut self, copies: usize) -> Self {
        self.copies = copies;
        self
    }
}

/// What the client saw of one copy of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The status code's name, as gRPC spells it: `OK`, `PERMISSION_DENIED`, ...
    pub code: String,
    pub details: Option<String>,
    pub response: Option<Vec<u8>>,
    pub initial: Value,
    pub trailing: Value,
}

impl Outcome {
    pub fn decode<M: Message + Default>(&self) -> Result<M> {
        let bytes = self
            .response
            .as_deref()
            .with_context(|| format!("no response: {} {:?}", self.code, self.details))?;
        Ok(M::decode(bytes)?)
    }
}

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/venv/bin/python")
}

/// Runs `calls` in order on one channel to `socket`; for each call, the outcome of each
/// of its copies.
pub fn run(socket: &Path, calls: &[Call]) -> Result<Vec<Vec<Outcome>>> {
    run_as(socket, None, calls)
}

/// [`run`], with every call's `:authority` set to `authority`.
pub fn run_as(socket: &Path, authority: Option<&str>, calls: &[Call]) -> Result<Vec<Vec<Outcome>>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/grpc_core_client.py");
    let input = json!({
        "authority": authority,
        "calls": calls.iter().map(|call| json!({
            "method": call.method,
            "request": hex::encode(&call.request),
            "timeout": call.timeout,
            "metadata": call.metadata,
            "copies": call.copies,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new(python())
        .arg(&script)
        .arg(socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "cannot run {} (integration/setup installs grpcio in that virtualenv)",
                python().display()
            )
        })?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(input.to_string().as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "the gRPC C-core client failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let parsed: Vec<Vec<Value>> = serde_json::from_slice(&output.stdout)?;
    parsed
        .into_iter()
        .map(|copies| copies.into_iter().map(outcome).collect())
        .collect()
}

fn outcome(value: Value) -> Result<Outcome> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(Outcome {
        code: text("code").context("no code")?,
        details: text("details"),
        response: text("response").map(hex::decode).transpose()?,
        initial: value.get("initial").cloned().unwrap_or(Value::Null),
        trailing: value.get("trailing").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::image_service_client::ImageServiceClient;
    use k8s_cri::v1::*;

    use super::*;
    use crate::daemon::{Crigate, Options};
    use crate::harness::cri::pull_request;
    use crate::harness::{cri_channel, Env};

    const RUNTIME: &str = "/runtime.v1.RuntimeService/";
    const IMAGE: &str = "/runtime.v1.ImageService/";

    fn image_status(image: &str) -> ImageStatusRequest {
        ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_grpc_core_client_sees_what_containerd_answers() {
        let env = Env::start().await.unwrap();
        let crigate = Crigate::start(
            env.dir(),
            Options::new(env.dir(), env.containerd.socket(), ""),
        )
        .unwrap();
        // The image is pulled once through crigate first, so that both runs below find
        // the runtime holding the same images, whatever crigate's pull adds.
        let mut images = ImageServiceClient::new(cri_channel(&crigate.socket).await.unwrap());
        images
            .pull_image(pull_request(&env.app_ref(), "pod", "default"))
            .await
            .unwrap();

        let version = VersionRequest {
            version: "v1".into(),
        };
        let missing = format!("{}/nothing:here", env.registry.host());
        let calls = || {
            vec![
                Call::new(&format!("{RUNTIME}Version"), &version)
                    .timeout(10.0)
                    .metadata("x-request-id", "4bf92f3577b34da6"),
                Call::new("/runtime.v1alpha2.RuntimeService/Version", &version),
                Call::new(
                    &format!("{RUNTIME}Status"),
                    &StatusRequest { verbose: false },
                ),
                Call::new(
                    &format!("{IMAGE}ListImages"),
                    &ListImagesRequest { filter: None },
                ),
                Call::new(
                    &format!("{IMAGE}PullImage"),
                    &pull_request(&env.app_ref(), "pod", "default"),
                ),
                Call::new(
                    &format!("{IMAGE}PullImage"),
                    &pull_request(&env.app_digest_ref(), "pod", "default"),
                )
                .copies(4),
                Call::new(
                    &format!("{IMAGE}ImageStatus"),
                    &image_status(&env.app_ref()),
                ),
                Call::new(&format!("{IMAGE}ImageStatus"), &image_status(&missing)),
                Call::new(
                    &format!("{RUNTIME}RemovePodSandbox"),
                    &RemovePodSandboxRequest {
                        pod_sandbox_id: "0123456789abcdef-unknown".into(),
                    },
                ),
                Call::new(
                    &format!("{RUNTIME}ContainerStatus"),
                    &ContainerStatusRequest {
                        container_id: "no-such-container".into(),
                        verbose: false,
                    },
                ),
                Call::new(
                    &format!("{RUNTIME}CreateContainer"),
                    &CreateContainerRequest {
                        pod_sandbox_id: "no-such-sandbox".into(),
                        config: Some(ContainerConfig {
                            metadata: Some(ContainerMetadata {
                                name: "c".into(),
                                attempt: 0,
                            }),
                            image: Some(ImageSpec {
                                image: env.app_ref(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        sandbox_config: None,
                    },
                ),
                Call::raw(&format!("{RUNTIME}NoSuchMethod"), Vec::new()),
                Call::new(
                    &format!("{IMAGE}ListImages"),
                    &ListImagesRequest { filter: None },
                )
                .copies(24),
                Call::new(&format!("{RUNTIME}Version"), &version).copies(24),
            ]
        };
        let socket = env.containerd.socket().to_owned();
        let list = calls();
        let direct = tokio::task::spawn_blocking(move || run(&socket, &list));
        let direct = direct.await.unwrap().unwrap();
        let socket = crigate.socket.clone();
        let list = calls();
        let through = tokio::task::spawn_blocking(move || run(&socket, &list));
        let through = through.await.unwrap().unwrap();

        let names = [
            "Version",
            "v1alpha2 Version",
            "Status",
            "ListImages",
            "PullImage",
            "PullImage by digest",
            "ImageStatus",
            "ImageStatus (missing)",
            "RemovePodSandbox (unknown)",
            "ContainerStatus (unknown)",
            "CreateContainer (unknown sandbox)",
            "unknown method",
            "ListImages x24",
            "Version x24",
        ];
        assert_eq!(direct.len(), names.len());
        for ((name, d), t) in names.iter().zip(&direct).zip(&through) {
            assert_eq!(t, d, "{name}: crigate's answer differs from containerd's");
        }
        // The comparison means something only if the calls did what they should.
        let codes = |i: usize| {
            direct[i]
                .iter()
                .map(|o| o.code.as_str())
                .collect::<Vec<_>>()
        };
        // Removing an unknown sandbox succeeds: CRI removals are idempotent.
        for i in [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13] {
            assert!(
                codes(i).iter().all(|c| *c == "OK"),
                "{}: {:?}",
                names[i],
                codes(i)
            );
        }
        for i in [9, 10] {
            assert!(
                codes(i).iter().all(|c| *c != "OK"),
                "{}: {:?}",
                names[i],
                codes(i)
            );
        }
        assert_eq!(codes(11), ["UNIMPLEMENTED"]);
        let version: VersionResponse = through[0][0].decode().unwrap();
        assert_eq!(version.runtime_name, "containerd");
        let pulled: PullImageResponse = through[4][0].decode().unwrap();
        assert!(pulled.image_ref.starts_with("sha256:"), "{pulled:?}");
        let status: ImageStatusResponse = through[6][0].decode().unwrap();
        assert_eq!(status.image.map(|i| i.id), Some(pulled.image_ref));
        let listed: ListImagesResponse = through[12][23].decode().unwrap();
        assert!(!listed.images.is_empty());
    }
}
