//! The cluster-in-a-box demo: a registry, containerd and crigate on this machine, a
//! signed and an unsigned image, and pods run through crigate the way kubelet runs them.
//! Started by `integration/demo`.
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
#[path = "signer.rs"]
mod signer;

use anyhow::Context;
use k8s_cri::v1::*;

use daemon::{Crigate, Options};
use harness::{container_config, cri_channel, Env, TestImage};
use signer::KeySigner;

fn step(text: &str) {
    println!("\n==> {text}");
}

fn pull(image: &str, namespace: &str) -> PullImageRequest {
    harness::cri::pull_request(image, "demo", namespace)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    step("starting a registry and containerd (private, in a temp dir)");
    let env = Env::start()
        .await
        .context("starting the registry and containerd")?;
    let host = env.registry.host();
    println!("    registry   http://{host}");
    println!("    containerd {}", env.containerd.socket().display());

    step("pushing a signed and an unsigned image");
    let signer = KeySigner::generate();
    signer
        .sign_legacy(&env.registry, "app", &env.app_digest)
        .await;
    let unsigned = TestImage::builder().label("unsigned").build()?;
    let unsigned_digest = env.registry.push("unsigned", "v1", &unsigned).await?;
    let signed_ref = env.app_ref();
    let unsigned_ref = format!("{host}/unsigned:v1");
    println!(
        "    signed     {signed_ref} = {} (cosign, key-based)",
        env.app_digest
    );
    println!("    unsigned   {unsigned_ref} = {unsigned_digest}");
    let key = env.dir().join("release.pub");
    std::fs::write(&key, signer.public_pem())?;

    step("starting journald (private to this demo) for crigate's audit records");
    let journald = harness::journald::Journald::start()?;
    println!("    journald   {}", journald.socket().display());

    step("starting crigate in front of containerd, enforcing in namespace prod");
    let policy = format!(
        r#"
[audit]
node = "demo-node"
journal_socket = "{journal}"

[registry]
plain_http = ["{host}"]

[cache]
path = "{cache}"

[verifiers.release]
kind = "cosign"
keys = ["{key}"]
require_tlog = false

[[policies]]
name = "prod"
namespaces = ["prod"]
mode = "enforce"
verifiers = ["release"]
"#,
        cache = env.dir().join("verdicts.jsonl").display(),
        key = key.display(),
        journal = journald.socket().display(),
    );
    println!(
        "{}",
        policy
            .lines()
            .map(|l| format!("    | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let crigate = Crigate::start(
        env.dir(),
        Options::new(env.dir(), env.containerd.socket(), &policy),
    )?;
    println!(
        "    crigate    {} (ready in {:?})",
        crigate.socket.display(),
        crigate.ready_after
    );

    let channel = cri_channel(&crigate.socket).await?;
    let mut runtime = runtime_service_client::RuntimeServiceClient::new(channel.clone());
    let mut images = image_service_client::ImageServiceClient::new(channel);

    step("PullImage of the signed image in prod, through crigate");
    let pulled = images
        .pull_image(pull(&signed_ref, "prod"))
        .await?
        .into_inner();
    println!("    allowed: image_ref {}", pulled.image_ref);

    step("PullImage of the unsigned image in prod, through crigate");
    match images.pull_image(pull(&unsigned_ref, "prod")).await {
        Ok(_) => anyhow::bail!("the unsigned image was allowed"),
        Err(status) => println!("    denied: {:?}: {}", status.code(), status.message()),
    }

    step("running a pod from the signed image");
    let sandbox = env.pod_config("demo", "prod")?;
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
            config: Some(container_config("app", &pulled.image_ref, &["/pause"])),
            sandbox_config: Some(sandbox.clone()),
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
                "hello from a verified container".into(),
            ],
            timeout: 10,
        })
        .await?
        .into_inner();
    print!("    running: {}", String::from_utf8_lossy(&exec.stdout));

    step("the unsigned image pulled behind crigate's back, straight into containerd");
    let mut direct =
        image_service_client::ImageServiceClient::new(cri_channel(env.containerd.socket()).await?);
    let sneaked = direct
        .pull_image(pull(&unsigned_ref, "prod"))
        .await?
        .into_inner()
        .image_ref;
    println!("    containerd has it: {sneaked}");
    println!("    CreateContainer with it through crigate, as a static pod would:");
    match runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("sneaky", &sneaked, &["/pause"])),
            sandbox_config: Some(sandbox),
        })
        .await
    {
        Ok(_) => anyhow::bail!("the unsigned image was started"),
        Err(status) => println!("    denied: {:?}: {}", status.code(), status.message()),
    }

    step("the audit records in journald: journalctl SYSLOG_IDENTIFIER=crigate CRIGATE_NODE=demo-node");
    let records = journald.wait_for(&["SYSLOG_IDENTIFIER=crigate", "CRIGATE_NODE=demo-node"], 4)?;
    for record in &records {
        let field = |name: &str| record[name].as_str().unwrap_or("-").to_owned();
        println!(
            "    {:<10} {:<6} {:<6} {} ({}) id {}",
            field("CRIGATE_DECISION"),
            field("CRIGATE_PHASE"),
            field("CRIGATE_NAMESPACE"),
            field("CRIGATE_SUBJECT"),
            field("CRIGATE_REASON_CODE"),
            field("CRIGATE_ID"),
        );
    }
    let denials = journald.query(&[
        "CRIGATE_NODE=demo-node",
        "CRIGATE_DECISION=deny",
        "CRIGATE_NAMESPACE=prod",
    ])?;
    println!(
        "    journalctl CRIGATE_DECISION=deny CRIGATE_NAMESPACE=prod finds {} denials; one in full:",
        denials.len()
    );
    if let Some(denial) = denials.first().and_then(|d| d.as_object()) {
        for (name, value) in denial
            .iter()
            .filter(|(k, _)| k.starts_with("CRIGATE_") || k.as_str() == "MESSAGE_ID")
        {
            println!("      {name}={}", value.as_str().unwrap_or_default());
        }
    }

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
