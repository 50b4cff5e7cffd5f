//! The cluster-in-a-box demo: a registry, containerd and crigate on this machine, and a
//! pod run through crigate the way kubelet would run it. Started by `integration/demo`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

#[path = "daemon.rs"]
mod daemon;
#[path = "harness/mod.rs"]
mod harness;

use anyhow::Context;
use k8s_cri::v1::*;

use daemon::{Crigate, Options};
use harness::{container_config, cri_channel, Env};

fn step(text: &str) {
    println!("\n==> {text}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    step("starting a registry and containerd (private, in a temp dir)");
    let env = Env::start()
        .await
        .context("starting the registry and containerd")?;
    println!("    registry   http://{}", env.registry.host());
    println!("    containerd {}", env.containerd.socket().display());
    println!("    image      {} = {}", env.app_ref(), env.app_digest);

    step("starting crigate in front of containerd");
    let crigate = Crigate::start(
        env.dir(),
        Options::new(env.dir(), env.containerd.socket(), ""),
    )?;
    println!(
        "    crigate    {} (ready in {:?})",
        crigate.socket.display(),
        crigate.ready_after
    );
    println!(
        "    kubelet would use: containerRuntimeEndpoint: unix://{}",
        crigate.socket.display()
    );

    let channel = cri_channel(&crigate.socket).await?;
    let mut runtime = runtime_service_client::RuntimeServiceClient::new(channel.clone());
    let mut images = image_service_client::ImageServiceClient::new(channel);

    let version = runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await?
        .into_inner();
    println!(
        "    runtime    {} {} via crigate",
        version.runtime_name, version.runtime_version
    );

    let sandbox = env.pod_config("demo", "default")?;
    step(&format!("PullImage {} through crigate", env.app_ref()));
    let pulled = images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: env.app_ref(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: Some(sandbox.clone()),
        })
        .await?
        .into_inner();
    println!("    image_ref  {}", pulled.image_ref);

    step("RunPodSandbox, CreateContainer, StartContainer through crigate");
    let pod = runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: String::new(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let container = runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("app", &env.app_ref(), &["/pause"])),
            sandbox_config: Some(sandbox),
        })
        .await?
        .into_inner()
        .container_id;
    runtime
        .start_container(StartContainerRequest {
            container_id: container.clone(),
        })
        .await?;
    let exec = runtime
        .exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "/bin/tool".into(),
                "echo".into(),
                "hello from a container started through crigate".into(),
            ],
            timeout: 10,
        })
        .await?
        .into_inner();
    print!("    exec       {}", String::from_utf8_lossy(&exec.stdout));

    step("crigate's decisions (PullImage and CreateContainer are gated)");
    for line in crigate
        .logs()
        .lines()
        .filter(|l| l.contains("crigate::decision"))
    {
        println!("    {line}");
    }
    println!(
        "\n    Signature verification is not built yet: every gated call is allowed and recorded.\n    \
         See README.md, \"What is built\"."
    );

    step("cleaning up");
    runtime
        .stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 5,
        })
        .await?;
    runtime
        .remove_container(RemoveContainerRequest {
            container_id: container,
        })
        .await?;
    runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    drop(crigate);
    drop(env);
    println!("    done");
    Ok(())
}
