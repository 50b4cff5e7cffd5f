//! Enforcement through `crigate serve` with real containerd and the real registry:
//! policies by namespace, enforce and audit modes, allowlists, pinned pulls, and the
//! CreateContainer gate for images that never passed PullImage.

use containerd_client::services::v1::images_client::ImagesClient;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;
use tonic::Code;

use crate::daemon::{Crigate, Options};
use crate::harness::cri::{create_pause, kubelet_create, pull_request, CriClient};
use crate::harness::journald::Journald;
use crate::harness::{cri_channel, Env, TestImage};
use crate::signer::{push_legacy, KeySigner};

struct Node {
    env: Env,
    crigate: Crigate,
    /// The key `app:v1` is signed with, which the policies trust.
    signer: KeySigner,
    signed: String,
    unsigned: String,
}

/// containerd, a registry holding a signed `app:v1` and an unsigned `unsigned:v1`, and
/// crigate enforcing: `prod` enforces, `staging` audits, `tools` allowlists the unsigned
/// image, `secure` trusts only another key than the one `app:v1` is signed with; no other
/// namespace has a policy.
async fn node() -> Node {
    node_with("").await
}

/// [`node`], with `more` appended to crigate's config.
async fn node_with(more: &str) -> Node {
    node_configured(|_| String::new(), more).await
}

/// [`node_with`], with what `registry` gives for the env added to crigate's `[registry]`.
async fn node_configured(registry: impl FnOnce(&Env) -> String, more: &str) -> Node {
    let env = Env::start().await.unwrap();
    let registry = registry(&env);
    let signer = KeySigner::generate();
    signer
        .sign_legacy(&env.registry, "app", &env.app_digest)
        .await;
    let unsigned_image = TestImage::builder().label("unsigned").build().unwrap();
    env.registry
        .push("unsigned", "v1", &unsigned_image)
        .await
        .unwrap();
    let key = env.dir().join("release.pub");
    std::fs::write(&key, signer.public_pem()).unwrap();
    let other_key = env.dir().join("other.pub");
    std::fs::write(&other_key, KeySigner::generate().public_pem()).unwrap();
    let host = env.registry.host();
    let extra = format!(
        r#"
[registry]
plain_http = ["{host}"]
{registry}

[cache]
path = "{cache}"

[verifiers.release]
kind = "cosign"
keys = ["{key}"]
require_tlog = false

[[policies]]
name = "prod"
namespaces = ["prod"]
verifiers = ["release"]

[[policies]]
name = "staging"
namespaces = ["staging"]
mode = "audit"
verifiers = ["release"]

[[policies]]
name = "tools"
namespaces = ["tools"]
verifiers = ["release"]
allowlist = [{{ pattern = "{host}/unsigned*" }}]

[verifiers.other]
kind = "cosign"
keys = ["{other_key}"]
require_tlog = false

[[policies]]
name = "secure"
namespaces = ["secure"]
verifiers = ["other"]

{more}
"#,
        cache = env.dir().join("verdicts.jsonl").display(),
        key = key.display(),
        other_key = other_key.display(),
    );
    // The [cri] section comes first in Options::new; append the rest after it.
    let options = Options::new(env.dir(), env.containerd.socket(), &extra);
    let crigate = Crigate::start(env.dir(), options).unwrap();
    Node {
        signed: env.app_ref(),
        unsigned: format!("{host}/unsigned:v1"),
        env,
        crigate,
        signer,
    }
}

fn pull(image: &str, namespace: &str) -> PullImageRequest {
    pull_request(image, "web", namespace)
}

async fn images(socket: &std::path::Path) -> ImageServiceClient<Channel> {
    ImageServiceClient::new(cri_channel(socket).await.unwrap())
}

/// What containerd itself answers to ImageStatus of `image`.
async fn status(node: &Node, image: &str) -> Option<Image> {
    status_on(node.env.containerd.socket(), image).await
}

/// What ImageStatus of `image` answers on the CRI socket `socket`.
async fn status_on(socket: &std::path::Path, image: &str) -> Option<Image> {
    images(socket)
        .await
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
}

async fn present(node: &Node, image: &str) -> bool {
    status(node, image).await.is_some()
}

/// Asserts that `status` is crigate's refusal (`PERMISSION_DENIED`) and that its message
/// says each of `parts`.
fn assert_refused(status: &tonic::Status, parts: &[&str]) {
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let message = status.message();
    for part in parts {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
}

/// Pulls `image` for a pod in `prod` through the CRI socket `socket`; its image id.
async fn pulled_on(socket: &std::path::Path, image: &str) -> String {
    images(socket)
        .await
        .pull_image(pull(image, "prod"))
        .await
        .unwrap()
        .into_inner()
        .image_ref
}

/// Pulls `image` straight into containerd, bypassing crigate; returns its image id.
async fn pulled_directly(node: &Node, image: &str) -> String {
    pulled_on(node.env.containerd.socket(), image).await
}

/// containerd's own images API (not CRI), bypassing crigate.
async fn containerd_images(node: &Node) -> ImagesClient<Channel> {
    ImagesClient::new(cri_channel(node.env.containerd.socket()).await.unwrap())
}

/// `message` as a request in the CRI plugin's containerd namespace, `k8s.io`.
fn in_cri_namespace<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("containerd-namespace", "k8s.io".parse().unwrap());
    request
}

/// Gives the content the runtime's image `existing` names the further name `name`
/// through containerd's own images API (as an image import or `ctr images tag` would),
/// and waits for the CRI plugin, which learns of it from containerd's event, to list it
/// among the repository digests of the image `id`; those digests.
async fn also_named(node: &Node, existing: &str, name: &str, id: &str) -> Vec<String> {
    use containerd_client::services::v1::{CreateImageRequest, GetImageRequest, Image};
    let mut native = containerd_images(node).await;
    let target = native
        .get(in_cri_namespace(GetImageRequest {
            name: existing.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap()
        .target;
    native
        .create(in_cri_namespace(CreateImageRequest {
            image: Some(Image {
                name: name.to_owned(),
                labels: [("io.cri-containerd.image".into(), "managed".into())].into(),
                target,
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut listed = Vec::new();
    for _ in 0..50 {
        listed = status(node, id)
            .await
            .map(|image| image.repo_digests)
            .unwrap_or_default();
        if listed.iter().any(|listed| listed == name) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    listed
}

/// A pod run through crigate, with crigate's runtime service to create its containers.
struct Pod {
    runtime: RuntimeServiceClient<Channel>,
    sandbox: PodSandboxConfig,
    id: String,
}

impl Pod {
    async fn run(node: &Node, sandbox: PodSandboxConfig) -> Self {
        let mut cri = CriClient::connect(&node.crigate.socket).await.unwrap();
        let id = cri.run_pod(&sandbox).await.unwrap();
        Self {
            runtime: cri.runtime,
            sandbox,
            id,
        }
    }

    /// CreateContainer through crigate: a container `name` running `image`; its id.
    async fn create(&mut self, name: &str, image: &str) -> Result<String, tonic::Status> {
        self.runtime
            .create_container(create_pause(&self.id, &self.sandbox, name, image))
            .await
            .map(|response| response.into_inner().container_id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_allows_signed_pinned_and_denies_unsigned() {
    let node = node().await;
    let mut client = images(&node.crigate.socket).await;

    let pulled = client
        .pull_image(pull(&node.signed, "prod"))
        .await
        .unwrap()
        .into_inner();
    assert!(!pulled.image_ref.is_empty());
    // The pull was pinned to the verified digest.
    let pinned = format!("{}/app@{}", node.env.registry.host(), node.env.app_digest);
    assert!(
        present(&node, &pinned).await,
        "the runtime did not pull {pinned}"
    );

    let denied = client
        .pull_image(pull(&node.unsigned, "prod"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let message = denied.message();
    assert!(
        message.contains("namespace prod") && message.contains("no_signature"),
        "{message}"
    );
    assert!(
        message.contains("unsigned@sha256:"),
        "the denial names the digest: {message}"
    );
    assert!(
        !present(&node, &node.unsigned).await,
        "a denied image reached the runtime"
    );

    let logs = node.crigate.logs();
    assert!(logs.contains("decision=\"deny\""), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_allows_and_records_what_enforce_would_do() {
    let node = node().await;
    let mut client = images(&node.crigate.socket).await;
    client
        .pull_image(pull(&node.unsigned, "staging"))
        .await
        .unwrap();
    assert!(present(&node, &node.unsigned).await);
    let logs = node.crigate.logs();
    assert!(logs.contains("decision=\"audit-deny\""), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlisted_image_is_allowed_without_a_signature() {
    let node = node().await;
    let mut client = images(&node.crigate.socket).await;
    client
        .pull_image(pull(&node.unsigned, "tools"))
        .await
        .unwrap();
    assert!(
        node.crigate.logs().contains("allowlisted by"),
        "{}",
        node.crigate.logs()
    );
    // The same image in an enforcing namespace without that entry is still denied.
    let denied = client
        .pull_image(pull(&node.unsigned, "prod"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_without_a_policy_is_denied() {
    let node = node().await;
    let mut client = images(&node.crigate.socket).await;
    let denied = client
        .pull_image(pull(&node.signed, "elsewhere"))
        .await
        .unwrap_err();
    assert_refused(&denied, &["no policy covers namespace"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_container_gates_images_pulled_behind_crigates_back() {
    let node = node().await;
    // Both images pulled straight into containerd: no PullImage through crigate.
    let unsigned_id = pulled_directly(&node, &node.unsigned).await;
    let signed_id = pulled_directly(&node, &node.signed).await;
    let mut pod = Pod::run(&node, node.env.pod_config("static-web", "prod").unwrap()).await;
    // kubelet passes the image id PullImage returned; a static pod may name the image.
    for (name, image) in [("bad", &unsigned_id), ("bad2", &node.unsigned)] {
        let denied = pod.create(name, image).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    }
    pod.create("good", &signed_id).await.unwrap();
    pod.create("good2", &node.signed).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_outage_follows_each_on_error_choice() {
    let env = Env::start().await.unwrap();
    // A second registry, which the test can take down.
    let registry = crate::harness::Registry::start().await.unwrap();
    let image = TestImage::builder().label("outage").build().unwrap();
    registry.push("app", "v1", &image).await.unwrap();
    let key = env.dir().join("release.pub");
    std::fs::write(&key, KeySigner::generate().public_pem()).unwrap();
    let extra = format!(
        r#"
[registry]
plain_http = ["{host}"]
connect_timeout = "1s"
request_timeout = "2s"

[cache]
path = "{cache}"

[verifiers.release]
kind = "cosign"
keys = ["{key}"]
require_tlog = false

[[policies]]
name = "strict"
namespaces = ["strict"]
verifiers = ["release"]

[[policies]]
name = "lenient"
namespaces = ["lenient"]
verifiers = ["release"]
on_error = "allow"
"#,
        host = registry.host(),
        cache = env.dir().join("verdicts.jsonl").display(),
        key = key.display(),
    );
    let crigate = Crigate::start(
        env.dir(),
        Options::new(env.dir(), env.containerd.socket(), &extra),
    )
    .unwrap();
    let image = format!("{}/app:v1", registry.host());
    drop(registry);

    let mut client = images(&crigate.socket).await;
    let denied = client.pull_image(pull(&image, "strict")).await.unwrap_err();
    assert_refused(&denied, &["could not verify"]);
    // Fail open: crigate lets the call through (the runtime then fails on its own).
    let passed = client.pull_image(pull(&image, "lenient")).await;
    assert!(
        passed
            .as_ref()
            .err()
            .is_none_or(|s| s.code() != Code::PermissionDenied),
        "{passed:?}"
    );
    let logs = crigate.logs();
    // Recorded as an error decision whose call went ahead.
    assert!(
        logs.contains("decision=\"error\" action=\"forward\""),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_tightens_a_policy_while_calls_are_made() {
    let node = node().await;
    let mut client = images(&node.crigate.socket).await;
    // staging audits: the unsigned image is allowed.
    client
        .pull_image(pull(&node.unsigned, "staging"))
        .await
        .unwrap();

    // Calls keep coming while the policy is tightened; none may fail for any other
    // reason than the decision.
    let socket = node.crigate.socket.clone();
    let signed = node.signed.clone();
    let background = tokio::spawn(async move {
        let mut client = images(&socket).await;
        for _ in 0..40 {
            client.pull_image(pull(&signed, "prod")).await.unwrap();
        }
    });
    let config = std::fs::read_to_string(&node.crigate.config_path).unwrap();
    let tightened = config.replace("mode = \"audit\"", "mode = \"enforce\"");
    assert_ne!(config, tightened);
    node.crigate.write_config(&tightened);
    node.crigate.signal(nix::sys::signal::Signal::SIGHUP);
    node.crigate
        .wait_log("configuration reloaded", std::time::Duration::from_secs(10))
        .unwrap();
    background.await.unwrap();

    let denied = client
        .pull_image(pull(&node.unsigned, "staging"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // A policy that does not load is refused and the tightened one stays.
    node.crigate
        .write_config(&tightened.replace("verifiers = [\"release\"]", "verifiers = [\"missing\"]"));
    node.crigate.signal(nix::sys::signal::Signal::SIGHUP);
    node.crigate
        .wait_log(
            "configuration reload refused",
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    let denied = client
        .pull_image(pull(&node.unsigned, "staging"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

fn crigate_cli(args: &[&str], config: &std::path::Path) -> (i32, String) {
    let output = std::process::Command::new(crate::daemon::crigate_binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap(), format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_explain_traces_each_decision_without_pulling() {
    let node = node().await;
    let config = &node.crigate.config_path;
    let explain = |image: &str, namespace: &str| {
        let (code, out) = crigate_cli(
            &[
                "policy",
                "explain",
                image,
                "--namespace",
                namespace,
                "--output",
                "json",
            ],
            config,
        );
        let json: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
        (code, json)
    };
    let (code, json) = explain(&node.signed, "prod");
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["version"], 1);
    assert_eq!(json["policy"], "prod");
    assert_eq!(json["decision"], "allow");
    assert_eq!(json["checks"][0]["verifier"], "release");
    assert_eq!(json["checks"][0]["result"], "trusted");
    let pinned = format!("{}/app@{}", node.env.registry.host(), node.env.app_digest);
    assert_eq!(json["pinned"], pinned.as_str());
    assert!(
        !present(&node, &pinned).await,
        "explain pulled into the runtime"
    );

    let (code, json) = explain(&node.unsigned, "prod");
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["decision"], "deny");
    assert_eq!(json["checks"][0]["detail"], "no_signature");

    let (code, json) = explain(&node.unsigned, "staging");
    assert_eq!(
        (code, json["decision"].as_str()),
        (0, Some("audit-deny")),
        "{json}"
    );
    let (code, json) = explain(&node.unsigned, "tools");
    assert_eq!(code, 0, "{json}");
    assert!(
        json["allowlisted_by"]
            .as_str()
            .unwrap()
            .ends_with("/unsigned*"),
        "{json}"
    );
    let (code, json) = explain(&node.signed, "elsewhere");
    assert_eq!(
        (code, json["policy"].clone()),
        (1, serde_json::Value::Null),
        "{json}"
    );

    // An allowlisted image needs no registry: this tag does not exist there, so any
    // registry call would have failed the decision (on_error = "deny").
    let (code, out) = crigate_cli(
        &[
            "policy",
            "explain",
            &format!("{}/unsigned:v9", node.env.registry.host()),
            "--namespace",
            "tools",
        ],
        config,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("allowlist:"), "{out}");

    // With no [[policies]] the daemon allows every call: so does the explanation.
    let unpoliced = node.env.dir().join("no-policies.toml");
    std::fs::write(&unpoliced, "[cri]\n").unwrap();
    let (code, out) = crigate_cli(
        &[
            "policy",
            "explain",
            &node.unsigned,
            "--namespace",
            "prod",
            "--output",
            "json",
        ],
        &unpoliced,
    );
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(json["decision"], "allow", "{json}");
    assert_eq!(json["reason_code"], "no_policies", "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_check_reports_problems_with_their_location() {
    let node = node().await;
    let (code, out) = crigate_cli(&["policy", "check"], &node.crigate.config_path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nok: 2 verifier(s), 4 policy(ies)"), "{out}");
    // The namespaces a node cannot run without, which this config leaves out: warnings.
    for namespace in ["kube-system", "crigate-system"] {
        assert!(
            out.contains(&format!(
                "crigate.toml: no policy covers namespace {namespace}: its pods would be denied"
            )),
            "{out}"
        );
    }
    let text = std::fs::read_to_string(&node.crigate.config_path).unwrap();
    let covered = node.env.dir().join("covered.toml");
    std::fs::write(
        &covered,
        format!(
            "{text}\n[[policies]]\nname = \"system\"\n\
             namespaces = [\"kube-system\", \"crigate-*\"]\nmode = \"off\"\n"
        ),
    )
    .unwrap();
    let (code, out) = crigate_cli(&["policy", "check"], &covered);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\nok: 2 verifier(s), 5 policy(ies)"), "{out}");
    assert!(!out.contains("no policy covers namespace"), "{out}");
    // The verdict cache in a temporary directory, which the packaged unit would not let
    // crigate write: a warning, as a drop-in may.
    assert!(
        out.starts_with("warning: ")
            && out.contains("cache.path ")
            && out.contains("is outside what crigate.service lets crigate write"),
        "{out}"
    );

    let broken = node.env.dir().join("broken.toml");
    std::fs::write(&broken, text.replace("release.pub", "missing.pub")).unwrap();
    let (code, out) = crigate_cli(&["policy", "check"], &broken);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("missing.pub") && out.contains("release"),
        "{out}"
    );

    std::fs::write(
        &broken,
        text.replace("mode = \"audit\"", "mode = \"audti\""),
    )
    .unwrap();
    let (code, out) = crigate_cli(&["policy", "check"], &broken);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("audti") && out.contains("line"), "{out}");

    // A socket group the node does not have: a daemon binding its own socket would not
    // start, one given its socket by systemd would, so a warning.
    std::fs::write(
        &broken,
        text.replacen(
            "[cri]\n",
            "[cri]\nsocket_group = \"crigate-no-such-group\"\n",
            1,
        ),
    )
    .unwrap();
    let (code, out) = crigate_cli(&["policy", "check"], &broken);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("warning: ")
            && out.contains("group \"crigate-no-such-group\" (cri.socket_group) does not exist"),
        "{out}"
    );

    // The aggregator's TLS material unusable (a public key given as its CA): the daemon
    // would not start, so the check says so.
    let dir = node.env.dir().display().to_string();
    std::fs::write(
        &broken,
        format!(
            "{text}\n[audit]\naggregator = \"https://aggregator.example:7443\"\n\
             ca_file = \"{dir}/release.pub\"\ncert_file = \"{dir}/missing-node.pem\"\n\
             key_file = \"{dir}/missing-node.key\"\nspool_dir = \"{dir}/spool\"\n"
        ),
    )
    .unwrap();
    let (code, out) = crigate_cli(&["policy", "check"], &broken);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TLS material") && out.contains("release.pub holds no PEM certificate"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_config_file_is_applied_without_a_signal() {
    let node = node().await;
    let mut client = images(&node.crigate.socket).await;
    client
        .pull_image(pull(&node.unsigned, "staging"))
        .await
        .unwrap();
    let config = std::fs::read_to_string(&node.crigate.config_path).unwrap();
    node.crigate
        .write_config(&config.replace("mode = \"audit\"", "mode = \"enforce\""));
    node.crigate
        .wait_log(
            "configuration file changed",
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    node.crigate
        .wait_log("configuration reloaded", std::time::Duration::from_secs(10))
        .unwrap();
    let denied = client
        .pull_image(pull(&node.unsigned, "staging"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
}

/// A refused reload is tried again for a few polls: a file the new configuration names,
/// written just after it (a key, as an installer writes files one by one), is picked up
/// without another edit of the configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refused_for_a_file_not_yet_written_is_applied_once_it_is() {
    let node = node().await;
    let mut client = images(&node.crigate.socket).await;
    let key = node.env.dir().join("late.pub");
    let config = std::fs::read_to_string(&node.crigate.config_path).unwrap();
    node.crigate.write_config(&format!(
        "{}\n[verifiers.late]\nkind = \"cosign\"\nkeys = [\"{}\"]\nrequire_tlog = false\n",
        config.replace("mode = \"audit\"", "mode = \"enforce\""),
        key.display()
    ));
    node.crigate
        .wait_log(
            "configuration reload refused",
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    std::fs::write(&key, KeySigner::generate().public_pem()).unwrap();
    node.crigate
        .wait_log("configuration reloaded", std::time::Duration::from_secs(10))
        .unwrap();
    assert!(node
        .crigate
        .logs()
        .contains("trying the refused configuration again"));
    let denied = client
        .pull_image(pull(&node.unsigned, "staging"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_audit_records_in_journald() {
    let mut journald = Journald::start().unwrap();
    let node_name = format!("audit-node-{}", std::process::id());
    let node = node_with(&format!(
        "[audit]\nnode = \"{node_name}\"\njournal_socket = \"{}\"\n",
        journald.socket().display()
    ))
    .await;
    let mut client = images(&node.crigate.socket).await;
    client.pull_image(pull(&node.signed, "prod")).await.unwrap();
    let denied = client
        .pull_image(pull(&node.unsigned, "prod"))
        .await
        .unwrap_err();
    client
        .pull_image(pull(&node.unsigned, "staging"))
        .await
        .unwrap();
    client.pull_image(pull(&node.signed, "prod")).await.unwrap();

    // The denial kubelet shows names the audit record it can be found by.
    let message = denied.message();
    let id = message
        .rsplit_once("(audit id ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no audit id in {message:?}"));

    let ours = format!("CRIGATE_NODE={node_name}");
    journald
        .wait_for(&["SYSLOG_IDENTIFIER=crigate", &ours], 4)
        .unwrap();
    let field = |entry: &serde_json::Value, name: &str| entry[name].as_str().map(str::to_owned);

    // The incident responder's query.
    let denies = journald
        .query(&[&ours, "CRIGATE_DECISION=deny", "CRIGATE_NAMESPACE=prod"])
        .unwrap();
    assert_eq!(denies.len(), 1, "{denies:?}");
    let deny = &denies[0];
    assert_eq!(field(deny, "CRIGATE_ID").as_deref(), Some(id));
    assert_eq!(
        field(deny, "MESSAGE_ID").as_deref(),
        Some(crigate::audit::MESSAGE_ID_DENY)
    );
    assert_eq!(field(deny, "CRIGATE_ACTION").as_deref(), Some("refuse"));
    assert_eq!(field(deny, "CRIGATE_PHASE").as_deref(), Some("pull"));
    assert_eq!(
        field(deny, "CRIGATE_REASON_CODE").as_deref(),
        Some("no_signature")
    );
    assert_eq!(field(deny, "CRIGATE_POLICY").as_deref(), Some("prod"));
    assert_eq!(field(deny, "CRIGATE_POD").as_deref(), Some("web"));
    assert_eq!(field(deny, "CRIGATE_POD_UID").as_deref(), Some("uid-prod"));
    assert_eq!(field(deny, "CRIGATE_IMAGE"), Some(node.unsigned.clone()));
    assert!(field(deny, "CRIGATE_DIGEST")
        .unwrap()
        .starts_with("sha256:"));
    assert!(!field(deny, "CRIGATE_FINGERPRINT").unwrap().is_empty());
    // The caller is this test process, from the socket's peer credentials.
    assert_eq!(
        field(deny, "CRIGATE_CALLER_PID"),
        Some(std::process::id().to_string())
    );
    assert_eq!(field(deny, "CRIGATE_CALLER_UID").as_deref(), Some("0"));

    let allows = journald.query(&[&ours, "CRIGATE_DECISION=allow"]).unwrap();
    assert_eq!(allows.len(), 2, "{allows:?}");
    let pinned = format!("{}/app@{}", node.env.registry.host(), node.env.app_digest);
    for allow in &allows {
        assert_eq!(
            field(allow, "MESSAGE_ID").as_deref(),
            Some(crigate::audit::MESSAGE_ID_ALLOW)
        );
        assert_eq!(field(allow, "CRIGATE_VERIFIER").as_deref(), Some("release"));
        assert!(!field(allow, "CRIGATE_SIGNER").unwrap().is_empty());
        assert_eq!(field(allow, "CRIGATE_PINNED"), Some(pinned.clone()));
        assert_eq!(
            field(allow, "CRIGATE_DIGEST"),
            Some(node.env.app_digest.clone())
        );
    }
    // The second pull of the same image was decided from the verdict cache.
    let cached: Vec<_> = allows
        .iter()
        .map(|a| field(a, "CRIGATE_CACHED").unwrap())
        .collect();
    assert_eq!(cached, ["false", "true"]);

    let audit = journald
        .query(&[&ours, "CRIGATE_DECISION=audit-deny"])
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        field(&audit[0], "CRIGATE_ACTION").as_deref(),
        Some("forward")
    );
    assert_eq!(
        field(&audit[0], "MESSAGE_ID").as_deref(),
        Some(crigate::audit::MESSAGE_ID_AUDIT_DENY)
    );

    // journald gone: the decision stands, and the lost record is reported.
    journald.stop();
    let denied = client
        .pull_image(pull(&node.unsigned, "prod"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    node.crigate
        .wait_log(
            "audit record not written",
            std::time::Duration::from_secs(5),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_allowed_in_one_namespace_is_denied_in_another_whose_policy_rejects_it() {
    let node = node().await;
    // Pulled and allowed for prod, through crigate.
    let mut client = images(&node.crigate.socket).await;
    let image_id = client
        .pull_image(pull(&node.signed, "prod"))
        .await
        .unwrap()
        .into_inner()
        .image_ref;

    let mut cri = CriClient::connect(&node.crigate.socket).await.unwrap();
    let mut create_in = async |namespace: &str, name: &str| {
        let sandbox = node.env.pod_config(name, namespace).unwrap();
        let pod = cri.run_pod(&sandbox).await.unwrap();
        cri.runtime
            .create_container(create_pause(&pod, &sandbox, "c", &image_id))
            .await
    };
    create_in("prod", "web-prod").await.unwrap();
    // The image is on the node and was allowed for prod; secure's policy trusts another
    // key, so the same image id is refused there.
    let denied = create_in("secure", "web-secure").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let message = denied.message();
    assert!(
        message.contains("namespace secure") && message.contains("\"secure\""),
        "{message}"
    );
    assert!(
        message.contains("untrusted_root") || message.contains("not trusted"),
        "{message}"
    );
}

/// A CreateContainer is decided under the namespace of the sandbox the runtime creates it
/// in, whatever namespace the sandbox config the caller sends beside the id names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_decided_under_its_sandboxs_namespace_not_the_one_it_claims() {
    let journald = Journald::start().unwrap();
    let node_name = format!("sandbox-node-{}", std::process::id());
    let node = node_with(&format!(
        "[audit]\nnode = \"{node_name}\"\njournal_socket = \"{}\"\n",
        journald.socket().display()
    ))
    .await;
    let mut client = images(&node.crigate.socket).await;
    let image_id = client
        .pull_image(pull(&node.signed, "prod"))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    let mut cri = CriClient::connect(&node.crigate.socket).await.unwrap();
    let secure = node.env.pod_config("web-secure", "secure").unwrap();
    let secure_id = cri.run_pod(&secure).await.unwrap();
    let prod = node.env.pod_config("web-prod", "prod").unwrap();
    let prod_id = cri.run_pod(&prod).await.unwrap();

    // Into secure's sandbox, claiming prod (whose policy allows the image): refused under
    // secure's policy, and recorded in secure.
    let claimed = create_pause(&secure_id, &prod, "c", &image_id);
    let denied = cri.runtime.create_container(claimed).await.unwrap_err();
    assert_refused(&denied, &["namespace secure"]);
    // Into prod's sandbox, claiming secure: allowed, as prod's policy allows it.
    let claimed = create_pause(&prod_id, &secure, "c", &image_id);
    cri.runtime.create_container(claimed).await.unwrap();

    // The records name each sandbox's own pod, and the namespace the call claimed.
    let ours = format!("CRIGATE_NODE={node_name}");
    let creates = journald
        .wait_for(&[&ours, "CRIGATE_PHASE=create"], 2)
        .unwrap();
    let field =
        |entry: &serde_json::Value, name: &str| entry[name].as_str().unwrap_or_default().to_owned();
    let seen: Vec<[String; 3]> = creates
        .iter()
        .map(|r| {
            [
                field(r, "CRIGATE_DECISION"),
                field(r, "CRIGATE_NAMESPACE"),
                field(r, "CRIGATE_POD"),
            ]
        })
        .collect();
    assert_eq!(
        seen,
        [
            ["deny", "secure", "web-secure"].map(str::to_owned),
            ["allow", "prod", "web-prod"].map(str::to_owned)
        ]
    );
    let uid = |config: &k8s_cri::v1::PodSandboxConfig| {
        config
            .metadata
            .as_ref()
            .map(|m| m.uid.clone())
            .unwrap_or_default()
    };
    assert_eq!(field(&creates[0], "CRIGATE_POD_UID"), uid(&secure));
    assert_eq!(field(&creates[1], "CRIGATE_POD_UID"), uid(&prod));
    for (record, claimed, actual) in [
        (&creates[0], "prod", "secure"),
        (&creates[1], "secure", "prod"),
    ] {
        let reason = field(record, "CRIGATE_REASON");
        assert!(
            reason.ends_with(&format!(
                "; the call's sandbox config named namespace \"{claimed}\", its pod sandbox is in \"{actual}\""
            )),
            "{reason}"
        );
    }
}

/// containerd takes any unique prefix of a sandbox id for the sandbox: a prefix could lead
/// crigate's lookup to one sandbox and the runtime's to another, so a create naming its
/// sandbox by one is refused, whatever its claimed namespace allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_naming_its_sandbox_by_a_prefix_of_its_id_is_refused() {
    let node = node().await;
    let unsigned_id = pulled_directly(&node, &node.unsigned).await;
    // `tools` allowlists the unsigned image.
    let mut pod = Pod::run(&node, node.env.pod_config("prefixed", "tools").unwrap()).await;
    let prefix = pod.id[..12].to_owned();
    let request = create_pause(&prefix, &pod.sandbox, "short", &unsigned_id);
    let denied = pod.runtime.create_container(request).await.unwrap_err();
    assert_refused(&denied, &["invalid_sandbox_id", "not a whole sandbox id"]);
    // So is a prefix no sandbox has yet, which one created meanwhile could take.
    let unused = (0..16u8)
        .map(|digit| format!("{digit:x}"))
        .find(|digit| !pod.id.starts_with(digit.as_str()))
        .unwrap();
    let request = create_pause(&unused, &pod.sandbox, "none", &unsigned_id);
    let refused = pod.runtime.create_container(request).await.unwrap_err();
    assert!(
        refused.message().contains("invalid_sandbox_id"),
        "{refused:?}"
    );
    // By its whole id, as kubelet names it: allowed.
    pod.create("whole", &unsigned_id).await.unwrap();
    // A whole id of no sandbox is the runtime's to refuse, as it would without crigate.
    let request = create_pause(&"0".repeat(64), &pod.sandbox, "none", &unsigned_id);
    let refused = pod.runtime.create_container(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_verifier_and_each_repository_has_its_own_verdict() {
    let node = node_with(
        r#"
[[policies]]
name = "both"
namespaces = ["both"]
verifiers = ["release", "other"]
require = "all"

[[policies]]
name = "either"
namespaces = ["either"]
verifiers = ["other", "release"]
"#,
    )
    .await;
    let mut client = images(&node.crigate.socket).await;
    let registry = &node.env.registry;
    let host = registry.host();

    // `app:v1` is signed by the release key only. Under `require = "all"`, the release
    // key's trust does not answer for the other key: denied, and not pulled.
    let denied = client
        .pull_image(pull(&node.signed, "both"))
        .await
        .unwrap_err();
    assert_refused(&denied, &["\"both\""]);
    // Under `require = "any"`, the other key's rejection does not stand for the release
    // key's verdict: allowed.
    client
        .pull_image(pull(&node.signed, "either"))
        .await
        .unwrap();
    // And the first answer is still the same on a second asking, now from the cache.
    let again = client
        .pull_image(pull(&node.signed, "both"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::PermissionDenied, "{again:?}");

    // The same bytes in another repository, with the signature made for `app` copied
    // beside them: allowed in prod as `app`, but the signature names `app`, so as `copy`
    // they are refused, the verdict on `app` notwithstanding.
    registry
        .push("copy", "v1", &node.env.app_image)
        .await
        .unwrap();
    let signature = node.signer.legacy(KeySigner::payload(
        &format!("{host}/app"),
        &node.env.app_digest,
    ));
    push_legacy(registry, "copy", &node.env.app_digest, &[signature]).await;
    client.pull_image(pull(&node.signed, "prod")).await.unwrap();
    for copy in [
        format!("{host}/copy:v1"),
        format!("{host}/copy@{}", node.env.app_digest),
    ] {
        let refused = client.pull_image(pull(&copy, "prod")).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{copy}: {refused:?}"
        );
        assert!(
            refused.message().contains("copy@sha256:"),
            "{}",
            refused.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_requests_larger_than_the_runtimes_windows_are_gated_alike() {
    let node = node().await;
    for image in [&node.unsigned, &node.signed] {
        pulled_directly(&node, image).await;
    }
    // kubelet passes the pod's annotations in every CreateContainer; one as large as a
    // big pod's last-applied-configuration makes the request larger than the 64 KiB
    // windows containerd's gRPC server starts a connection and a stream with.
    let mut sandbox = node.env.pod_config("large", "prod").unwrap();
    sandbox.annotations.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        "x".repeat(200 * 1024),
    );
    let mut pod = Pod::run(&node, sandbox).await;
    let denied = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        pod.create("unsigned", &node.unsigned),
    )
    .await
    .expect("a large denied CreateContainer stalled")
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let created = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        pod.create("signed", &node.signed),
    )
    .await
    .expect("a large allowed CreateContainer stalled")
    .unwrap();
    assert!(!created.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_creation_without_any_pull_is_gated() {
    let node = node().await;
    // Images already on the node (baked into the node image, or loaded with ctr): the
    // runtime has them, and no PullImage ever reaches crigate.
    for image in [&node.unsigned, &node.signed] {
        pulled_directly(&node, image).await;
    }
    // kubelet starts a static pod from a manifest file: a sandbox annotated as such, then
    // CreateContainer naming the image as the manifest does.
    let mut sandbox = node.env.pod_config("static-etcd", "prod").unwrap();
    sandbox
        .annotations
        .insert("kubernetes.io/config.source".into(), "file".into());
    let mut pod = Pod::run(&node, sandbox).await;
    let denied = pod.create("unsigned", &node.unsigned).await.unwrap_err();
    assert_refused(&denied, &["no_signature"]);
    let created = pod.create("signed", &node.signed).await.unwrap();
    pod.runtime
        .start_container(StartContainerRequest {
            container_id: created,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_pull_is_found_by_the_requested_tag() {
    let node = node().await;
    let mut client = images(&node.crigate.socket).await;
    let image_ref = client
        .pull_image(pull(&node.signed, "prod"))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    // kubelet's IfNotPresent check, and the conformance suite's "pull, then create by
    // tag": ImageStatus of the requested name, asked the moment the pull is answered.
    let status = |image: String| ImageStatusRequest {
        image: Some(ImageSpec {
            image,
            ..Default::default()
        }),
        verbose: false,
    };
    let found = client
        .image_status(status(node.signed.clone()))
        .await
        .unwrap()
        .into_inner()
        .image;
    let found = found.unwrap_or_else(|| panic!("ImageStatus({}) found nothing", node.signed));
    // The same image PullImage returned, known by the tag and the verified digest.
    assert_eq!(found.id, image_ref);
    assert!(found.repo_tags.contains(&node.signed), "{found:?}");
    let pinned = format!("{}/app@{}", node.env.registry.host(), node.env.app_digest);
    assert!(found.repo_digests.contains(&pinned), "{found:?}");

    // Pulling the same tag again, as kubelet does with `imagePullPolicy: Always`, finds
    // the name already right and leaves containerd's record of it untouched.
    let named_at = || async {
        use containerd_client::services::v1::GetImageRequest;
        let image = containerd_images(&node)
            .await
            .get(in_cri_namespace(GetImageRequest {
                name: node.signed.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap();
        image.updated_at.unwrap()
    };
    let before = named_at().await;
    let again = client
        .pull_image(pull(&node.signed, "prod"))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(again, image_ref);
    assert_eq!(named_at().await, before, "a repeated pull rewrote the name");

    // Each new tag of the signed image is found the moment its pull is answered.
    for n in 0..12 {
        let tag = format!("v1-copy{n}");
        node.env
            .registry
            .tag("app", &node.env.app_digest.to_string(), &tag)
            .await
            .unwrap();
        let name = format!("{}/app:{tag}", node.env.registry.host());
        let pulled = client
            .pull_image(pull(&name, "prod"))
            .await
            .unwrap()
            .into_inner()
            .image_ref;
        assert_eq!(pulled, image_ref);
        let found = client
            .image_status(status(name.clone()))
            .await
            .unwrap()
            .into_inner()
            .image;
        let found = found.unwrap_or_else(|| panic!("ImageStatus({name}) found nothing"));
        assert!(found.repo_tags.contains(&name), "{found:?}");
    }
}

/// A TCP relay in front of a registry that holds back the first request asking for a
/// cosign `.sig` tag: it reports it on `paused`, and forwards it once `resume` fires.
/// It is how a test gets between crigate's tag resolution and the runtime's pull.
async fn sig_pausing_relay(
    upstream: String,
) -> (
    String,
    tokio::sync::mpsc::Receiver<()>,
    std::sync::Arc<tokio::sync::Notify>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (paused_tx, paused) = tokio::sync::mpsc::channel(1);
    let resume = std::sync::Arc::new(tokio::sync::Notify::new());
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let resume_all = resume.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let (paused_tx, resume, armed) = (paused_tx.clone(), resume_all.clone(), armed.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 65536];
                while let Ok(n) = client_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let chunk = &buf[..n];
                    if chunk.windows(4).any(|w| w == b".sig")
                        && armed.swap(false, std::sync::atomic::Ordering::SeqCst)
                    {
                        let notified = resume.notified();
                        paused_tx.send(()).await.unwrap();
                        notified.await;
                    }
                    if server_write.write_all(chunk).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
        }
    });
    (host, paused, resume)
}

/// Pulls `host/app:<APP_TAG>` through `crigate` for `prod` and, once the pull is held at
/// its first signature request (`sig_pausing_relay`), moves the tag to `other`: the name
/// pulled, the pull (held until the relay's `resume`), and the digest the tag names now.
async fn pull_moving_the_tag(
    env: &Env,
    crigate: &Crigate,
    host: &str,
    paused: &mut tokio::sync::mpsc::Receiver<()>,
    other: &TestImage,
) -> (
    String,
    tokio::task::JoinHandle<Result<tonic::Response<PullImageResponse>, tonic::Status>>,
    String,
) {
    let requested = format!("{host}/app:{}", crate::harness::APP_TAG);
    let mut client = images(&crigate.socket).await;
    let pulling = tokio::spawn({
        let requested = requested.clone();
        async move { client.pull_image(pull(&requested, "prod")).await }
    });
    paused.recv().await.unwrap();
    let moved = env
        .registry
        .push("app", crate::harness::APP_TAG, other)
        .await
        .unwrap();
    (requested, pulling, moved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_moved_after_verification_cannot_bring_other_bytes() {
    let env = Env::start().await.unwrap();
    let other = TestImage::builder().label("moved").build().unwrap();
    // Everyone, crigate and the runtime, reaches the registry through the relay, so the
    // image is named, and signed, by the relay's address.
    let (host, mut paused, resume) = sig_pausing_relay(env.registry.host()).await;
    let signer = KeySigner::generate();
    let signature = signer.legacy(KeySigner::payload(&format!("{host}/app"), &env.app_digest));
    crate::signer::push_legacy(&env.registry, "app", &env.app_digest, &[signature]).await;
    let containerd = crate::harness::Containerd::launch(&host).await.unwrap();
    let key = env.dir().join("release.pub");
    std::fs::write(&key, signer.public_pem()).unwrap();
    let extra = format!(
        r#"
[registry]
plain_http = ["{host}"]

[verifiers.release]
kind = "cosign"
keys = ["{key}"]
require_tlog = false

[[policies]]
name = "prod"
namespaces = ["prod"]
verifiers = ["release"]
"#,
        key = key.display(),
    );
    let crigate = Crigate::start(
        env.dir(),
        Options::new(env.dir(), containerd.socket(), &extra),
    )
    .unwrap();
    // crigate has resolved the tag and is fetching the signature: move the tag now.
    let (requested, pulling, moved) =
        pull_moving_the_tag(&env, &crigate, &host, &mut paused, &other).await;
    resume.notify_one();
    pulling.await.unwrap().unwrap();

    // The runtime holds what was verified, not what the tag names now.
    let mut direct = images(containerd.socket()).await;
    let status = |image: String| ImageStatusRequest {
        image: Some(ImageSpec {
            image,
            ..Default::default()
        }),
        verbose: false,
    };
    let verified = format!("{host}/app@{}", env.app_digest);
    let held = direct
        .image_status(status(verified.clone()))
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap_or_else(|| panic!("the runtime does not hold {verified}"));
    assert!(
        direct
            .image_status(status(format!("{host}/app@{moved}")))
            .await
            .unwrap()
            .into_inner()
            .image
            .is_none(),
        "the moved tag's bytes reached the runtime"
    );
    // The requested name points at the verified image.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let by_tag = direct
            .image_status(status(requested.clone()))
            .await
            .unwrap()
            .into_inner()
            .image;
        if let Some(by_tag) = by_tag {
            assert_eq!(by_tag.id, held.id);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{requested} never named"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The next pull of the tag resolves it again, to the unsigned image: denied.
    let mut client = images(&crigate.socket).await;
    let denied = client
        .pull_image(pull(&requested, "prod"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains(&moved), "{}", denied.message());
}

/// Under `require = "all"` every verifier judges the one digest the tag led to: a tag
/// moved between two verifiers' lookups must not let each trust a different image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verifier_of_require_all_judges_the_digest_the_tag_first_led_to() {
    let env = Env::start().await.unwrap();
    let other = TestImage::builder().label("moved").build().unwrap();
    let (host, mut paused, resume) = sig_pausing_relay(env.registry.host()).await;
    let (release, audit) = (KeySigner::generate(), KeySigner::generate());
    // The image is signed by the release key only.
    let signature = release.legacy(KeySigner::payload(&format!("{host}/app"), &env.app_digest));
    crate::signer::push_legacy(&env.registry, "app", &env.app_digest, &[signature]).await;
    let containerd = crate::harness::Containerd::launch(&host).await.unwrap();
    let (release_key, audit_key) = (env.dir().join("release.pub"), env.dir().join("audit.pub"));
    std::fs::write(&release_key, release.public_pem()).unwrap();
    std::fs::write(&audit_key, audit.public_pem()).unwrap();
    let extra = format!(
        r#"
[registry]
plain_http = ["{host}"]

[verifiers.release]
kind = "cosign"
keys = ["{release_key}"]
require_tlog = false

[verifiers.audit]
kind = "cosign"
keys = ["{audit_key}"]
require_tlog = false

[[policies]]
name = "prod"
namespaces = ["prod"]
verifiers = ["release", "audit"]
require = "all"
"#,
        release_key = release_key.display(),
        audit_key = audit_key.display(),
    );
    let crigate = Crigate::start(
        env.dir(),
        Options::new(env.dir(), containerd.socket(), &extra),
    )
    .unwrap();
    // The release verifier has resolved the tag: move it to an image the audit key
    // signed, before the audit verifier looks.
    let (_, pulling, moved) = pull_moving_the_tag(&env, &crigate, &host, &mut paused, &other).await;
    let signature = audit.legacy(KeySigner::payload(&format!("{host}/app"), &moved));
    crate::signer::push_legacy(&env.registry, "app", &moved, &[signature]).await;
    resume.notify_one();
    let denied = pulling.await.unwrap().unwrap_err();
    assert_refused(&denied, &[env.app_digest.as_str()]);
    let mut direct = images(containerd.socket()).await;
    for digest in [&env.app_digest, &moved] {
        let held = direct
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: format!("{host}/app@{digest}"),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image;
        assert!(held.is_none(), "the runtime pulled {digest}");
    }
}

/// The text of `GET url` over plain HTTP, and its status.
async fn scrape(url: &str) -> (reqwest::StatusCode, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// The value of the series `line` (name and labels exactly) in exposition `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_metrics_count_decisions_by_result_and_namespace() {
    // Port 0: the kernel picks a free port as crigate binds it, and crigate logs it. A
    // port found free beforehand can be taken meanwhile by any outgoing connection.
    let node = node_with("[metrics]\nlisten = \"127.0.0.1:0\"\n").await;
    node.crigate
        .wait_log("serving metrics", std::time::Duration::from_secs(10))
        .unwrap();
    let logs = node.crigate.logs();
    let addr = logs
        .lines()
        .find(|line| line.contains("serving metrics"))
        .and_then(|line| line.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{logs}"));
    let url = format!("http://{addr}/metrics");
    let (status, before) = scrape(&url).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert!(before.contains("crigate_build_info{version=\""), "{before}");
    let timed = |text: &str| {
        sample(
            text,
            "crigate_decision_duration_seconds_count{phase=\"pull\"}",
        )
    };
    assert_eq!(timed(&before), Some(0.0), "{before}");

    let mut client = images(&node.crigate.socket).await;
    // Allowed twice (the second from the verdict cache), denied once, audit-denied once.
    for _ in 0..2 {
        client.pull_image(pull(&node.signed, "prod")).await.unwrap();
    }
    let denied = client
        .pull_image(pull(&node.unsigned, "prod"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    client
        .pull_image(pull(&node.unsigned, "staging"))
        .await
        .unwrap();

    let (_, text) = scrape(&url).await;
    for (series, value) in [
        (
            "crigate_decisions_total{decision=\"allow\",namespace=\"prod\"}",
            2.0,
        ),
        (
            "crigate_decisions_total{decision=\"deny\",namespace=\"prod\"}",
            1.0,
        ),
        (
            "crigate_decisions_total{decision=\"audit-deny\",namespace=\"staging\"}",
            1.0,
        ),
        (
            "crigate_decision_duration_seconds_count{phase=\"pull\"}",
            4.0,
        ),
        (
            "crigate_decision_duration_seconds_bucket{phase=\"pull\",le=\"+Inf\"}",
            4.0,
        ),
        (
            "crigate_decision_duration_seconds_count{phase=\"create\"}",
            0.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(
        !text.contains("decision=\"deny\",namespace=\"staging\""),
        "{text}"
    );
    let hits = sample(
        &text,
        "crigate_verdict_cache_requests_total{result=\"hit\"}",
    )
    .unwrap();
    let misses = sample(
        &text,
        "crigate_verdict_cache_requests_total{result=\"miss\"}",
    )
    .unwrap();
    assert!(hits >= 1.0 && misses >= 2.0, "hits {hits}, misses {misses}");
    let sum = sample(
        &text,
        "crigate_decision_duration_seconds_sum{phase=\"pull\"}",
    )
    .unwrap();
    assert!(sum > 0.0, "{text}");
    assert!(
        text.contains("crigate_audit_write_failures_total{sink=\"journald\"}"),
        "{text}"
    );

    // Only GET /metrics is served.
    let (status, _) = scrape(&format!("http://{addr}/")).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);

    // Reloads: one refused shows until one is applied.
    let loaded = "crigate_config_last_reload_success_timestamp_seconds";
    let started = sample(&text, loaded).unwrap();
    assert_eq!(
        sample(&text, "crigate_config_last_reload_successful"),
        Some(1.0)
    );
    let config = std::fs::read_to_string(&node.crigate.config_path).unwrap();
    node.crigate
        .write_config(&config.replace("mode = \"audit\"", "mode = \"audti\""));
    node.crigate
        .wait_log(
            "configuration reload refused",
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    let (_, text) = scrape(&url).await;
    assert_eq!(
        sample(&text, "crigate_config_last_reload_successful"),
        Some(0.0),
        "{text}"
    );
    let refused = "crigate_config_reloads_total{result=\"refused\"}";
    assert!(sample(&text, refused) >= Some(1.0), "{text}");
    assert_eq!(sample(&text, loaded), Some(started), "{text}");
    node.crigate.write_config(&config);
    node.crigate
        .wait_log("configuration reloaded", std::time::Duration::from_secs(10))
        .unwrap();
    let (_, text) = scrape(&url).await;
    for (series, value) in [
        ("crigate_config_last_reload_successful", 1.0),
        ("crigate_config_reloads_total{result=\"applied\"}", 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert!(sample(&text, loaded) >= Some(started), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_allowed_by_a_trusted_name_when_another_cannot_be_checked() {
    let node = node().await;
    let signed_id = pulled_directly(&node, &node.signed).await;
    // The same content also named after a registry nothing answers at, a name the
    // runtime lists first (its names are sorted).
    let digest = node.env.app_digest_ref();
    let (_, digest) = digest.split_once('@').unwrap();
    let away = format!("127.0.0.1:1/app@{digest}");
    let listed = also_named(&node, &node.signed, &away, &signed_id).await;
    assert_eq!(listed.first(), Some(&away), "{listed:?}");

    // Allowed by the name whose signature is found, under a policy that denies on error.
    let mut pod = Pod::run(&node, node.env.pod_config("two-names", "prod").unwrap()).await;
    pod.create("good", &signed_id).await.unwrap();
    // Under a policy none of whose keys signed it, the name that could not be checked
    // is the outcome: it may have hidden a signature.
    let mut pod = Pod::run(&node, node.env.pod_config("two-names", "secure").unwrap()).await;
    let denied = pod.create("bad", &signed_id).await.unwrap_err();
    assert_refused(&denied, &["127.0.0.1:1/app"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_name_claiming_a_signed_digest_does_not_vouch_for_other_content() {
    let node = node().await;
    let unsigned_id = pulled_directly(&node, &node.unsigned).await;
    // Someone with the runtime's own API (an image import, `ctr images tag`) names the
    // unsigned content after the signed image's digest.
    let forged = node.env.app_digest_ref();
    let listed = also_named(&node, &node.unsigned, &forged, &unsigned_id).await;
    // The runtime now lists the signed digest among the unsigned image's own.
    assert!(listed.contains(&forged), "{listed:?}");

    let mut pod = Pod::run(&node, node.env.pod_config("forged", "prod").unwrap()).await;
    for image in [&unsigned_id, &forged] {
        let denied = pod.create("bad", image).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{image}: {denied:?}");
        assert!(
            denied.message().contains("no_signature"),
            "{}",
            denied.message()
        );
    }
    // The signed image itself is still allowed, resolved through the same store.
    pulled_directly(&node, &node.signed).await;
    pod.create("good", &node.signed).await.unwrap();
    let log = node.crigate.logs();
    assert!(
        log.contains("a runtime name claims a digest whose content is not this image"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_index_pulled_behind_crigates_back_is_allowed_by_its_platform_manifest() {
    let node = node().await;
    let image = TestImage::builder().label("multi").build().unwrap();
    node.env
        .registry
        .push("multi", "amd", &image)
        .await
        .unwrap();
    let index = node
        .env
        .registry
        .push_index("multi", "v1", &[&image])
        .await
        .unwrap();
    node.signer
        .sign_legacy(&node.env.registry, "multi", &index)
        .await;
    let reference = format!("{}/multi:v1", node.env.registry.host());
    let id = pulled_directly(&node, &reference).await;
    let mut pod = Pod::run(&node, node.env.pod_config("multi", "prod").unwrap()).await;
    // The runtime knows the image as `multi@<index>`: the index is in its content store
    // and lists the manifest whose config is the image id.
    pod.create("multi", &id).await.unwrap();
}

/// containerd 2.1+ restores a container from an image whose manifest carries a checkpoint
/// annotation, and pulls the image the checkpoint was taken from itself: a signed
/// checkpoint is pulled (its signature is what a pull decides on) but never created from,
/// whether it came through crigate or not. (containerd 1.6 runs it as a plain image; what
/// is shown is crigate's refusal.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_checkpoint_image_is_pulled_but_not_created_from() {
    let node = node().await;
    let image = TestImage::builder()
        .label("checkpoint")
        .annotation("org.criu.checkpoint.container.name=app")
        .build()
        .unwrap();
    node.env
        .registry
        .push("checkpoint", "v1", &image)
        .await
        .unwrap();
    node.signer
        .sign_legacy(&node.env.registry, "checkpoint", image.manifest_digest())
        .await;
    let reference = format!("{}/checkpoint:v1", node.env.registry.host());
    let through_crigate = pulled_through_crigate(&node, &reference).await;
    let mut pod = Pod::run(&node, node.env.pod_config("restore", "prod").unwrap()).await;
    let denied = pod.create("restored", &through_crigate).await.unwrap_err();
    assert_refused(&denied, &["checkpoint_image", "is a container checkpoint"]);
    // A signed image without the annotation runs.
    let signed_id = pulled_through_crigate(&node, &node.signed).await;
    pod.create("app", &signed_id).await.unwrap();
    // It may not mount the checkpoint as an image volume either.
    let request = create_with_volume(&node, &pod, "mounted", &through_crigate);
    let denied = pod.runtime.create_container(request).await.unwrap_err();
    assert!(denied.message().contains("checkpoint_image"), "{denied:?}");
}

/// A checkpoint index can list another image's manifest, and so share its image id: once
/// such a checkpoint is pulled, even in a namespace whose policy only audits, a create of
/// that id is a restore for containerd 2.1+, and what crigate remembered of the id from
/// the signed image's own pull no longer decides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_listing_a_signed_manifest_takes_its_id_out_of_the_create_shortcut() {
    use crate::harness::image::OCI_INDEX;
    let node = node().await;
    let registry = &node.env.registry;
    let image = TestImage::builder().label("victim").build().unwrap();
    registry.push("victim", "v1", &image).await.unwrap();
    node.signer
        .sign_legacy(registry, "victim", image.manifest_digest())
        .await;
    registry.push("ckpt", "base", &image).await.unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": image.manifest_media_type(),
            "digest": image.manifest_digest(),
            "size": image.manifest_size(),
        }],
        "annotations": { "org.criu.checkpoint.container.name": "app" },
    }))
    .unwrap();
    registry
        .push_manifest("ckpt", "v1", OCI_INDEX, &index)
        .await
        .unwrap();
    let host = registry.host();
    let id = pulled_through_crigate(&node, &format!("{host}/victim:v1")).await;
    let mut pod = Pod::run(&node, node.env.pod_config("victim", "prod").unwrap()).await;
    pod.create("before", &id).await.unwrap();
    // The unsigned checkpoint, pulled where the policy only audits.
    let checkpoint = images(&node.crigate.socket)
        .await
        .pull_image(pull(&format!("{host}/ckpt:v1"), "staging"))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(checkpoint, id);
    let denied = pod.create("after", &id).await.unwrap_err();
    assert_refused(&denied, &["checkpoint_image"]);
}

/// The image id a pinned pull was answered with is run, at create, only on trust that
/// covers what the runtime holds. Here the pull is pinned to an index trusted in `team`
/// alone, whose first entry for this platform is a nested index leading to an unsigned
/// manifest (the runtime descends it) and whose second is a manifest signed for `prod`
/// (the one a platform match on the index's own manifests finds). A create of the id in
/// `prod` is refused: the id is decided with the manifest the pinned index leads the
/// runtime to, which nothing `prod` trusts signed, as a create naming the index would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_pulled_through_a_nested_index_is_not_run_on_another_manifests_signature() {
    let (node, team, _key) = node_with_team_key(
        "[[policies]]\nname = \"team\"\nnamespaces = [\"team\"]\nverifiers = [\"team\"]\n",
    )
    .await;
    let (run, outer) = nested_index(&node).await;
    team.sign_legacy(&node.env.registry, "nested", &outer).await;

    let host = node.env.registry.host();
    let pulled = images(&node.crigate.socket)
        .await
        .pull_image(pull(&format!("{host}/nested:v1"), "team"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        pulled.image_ref,
        run.config_digest(),
        "the runtime descends the nested index to the unsigned manifest"
    );
    let mut pod = Pod::run(&node, node.env.pod_config("nested", "prod").unwrap()).await;
    let denied = pod.create("nested", &pulled.image_ref).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    // In `team`, whose key signed the index the runtime pulled, the same id runs.
    let mut pod = Pod::run(&node, node.env.pod_config("nested", "team").unwrap()).await;
    let created = pod.create("nested", &pulled.image_ref).await;
    assert!(created.is_ok(), "{created:?}");
}

/// Under `require = "all"`, every verifier's trust must cover the manifest the runtime
/// holds, not the first one's alone: an index signed by one key, whose platform match
/// found a manifest the other key signed, does not vouch for the manifest the runtime
/// descended to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_require_all_each_verifiers_trust_must_cover_the_manifest_the_runtime_holds() {
    let (node, team, _key) = node_with_team_key(
        "[[policies]]\nname = \"both\"\nnamespaces = [\"both\"]\n\
         verifiers = [\"team\", \"release\"]\nrequire = \"all\"\n",
    )
    .await;
    let (run, outer) = nested_index(&node).await;
    team.sign_legacy(&node.env.registry, "nested", &outer).await;
    let host = node.env.registry.host();
    let id = pulled_directly(&node, &format!("{host}/nested:v1")).await;
    assert_eq!(id, run.config_digest());

    let mut pod = Pod::run(&node, node.env.pod_config("nested", "both").unwrap()).await;
    let denied = pod.create("nested", &id).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied
            .message()
            .contains(&format!("nested@{}", run.manifest_digest())),
        "the denial names the manifest the runtime holds: {}",
        denied.message()
    );
}

/// [`node_with`] `policies`, and a verifier `team` of a key of its own: the node, the
/// key, and its public key's file, kept as long as the node runs.
async fn node_with_team_key(policies: &str) -> (Node, KeySigner, tempfile::NamedTempFile) {
    let team = KeySigner::generate();
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), team.public_pem()).unwrap();
    let node = node_with(&format!(
        "[verifiers.team]\nkind = \"cosign\"\nkeys = [\"{}\"]\nrequire_tlog = false\n\n{policies}",
        key.path().display()
    ))
    .await;
    (node, team, key)
}

/// Pushes to `nested` an index whose first entry for this platform is an index listing
/// an unsigned manifest (the one the runtime descends to, `run`), and whose second is a
/// manifest the release key signs (the one a platform match on the outer index's own
/// manifests takes), tagged `v1`: `run` and the outer index's digest.
async fn nested_index(node: &Node) -> (TestImage, String) {
    use crate::harness::image::{oci_arch, OCI_INDEX};
    let registry = &node.env.registry;
    let run = TestImage::builder().label("nested-run").build().unwrap();
    let shown = TestImage::builder().label("nested-shown").build().unwrap();
    registry.push("nested", "run", &run).await.unwrap();
    registry.push("nested", "shown", &shown).await.unwrap();
    node.signer
        .sign_legacy(registry, "nested", shown.manifest_digest())
        .await;
    let platform = serde_json::json!({"os": "linux", "architecture": oci_arch()});
    let entry = |image: &TestImage| {
        serde_json::json!({
            "mediaType": image.manifest_media_type(),
            "digest": image.manifest_digest(),
            "size": image.manifest_size(),
            "platform": platform,
        })
    };
    let inner = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(&run)],
    }))
    .unwrap();
    let inner_digest = registry
        .push_manifest("nested", "inner", OCI_INDEX, &inner)
        .await
        .unwrap();
    let outer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_INDEX, "digest": inner_digest, "size": inner.len(), "platform": platform},
            entry(&shown),
        ],
    }))
    .unwrap();
    let outer = registry
        .push_manifest("nested", "v1", OCI_INDEX, &outer)
        .await
        .unwrap();
    (run, outer)
}

/// An index that is not itself signed is trusted for a create only through the manifest in
/// it that the runtime holds for the container's image: a signed manifest for a platform
/// the runtime did not pick (here a variant no node has) vouches for nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_index_is_trusted_for_a_create_only_through_the_manifest_the_runtime_holds() {
    use crate::harness::image::{oci_arch, OCI_INDEX};
    let node = node().await;
    let registry = &node.env.registry;
    let host = registry.host();
    let signed = TestImage::builder()
        .label("signed-variant")
        .build()
        .unwrap();
    let unsigned = TestImage::builder()
        .label("unsigned-plain")
        .build()
        .unwrap();
    registry.push("mixed", "signed", &signed).await.unwrap();
    registry.push("mixed", "unsigned", &unsigned).await.unwrap();
    node.signer
        .sign_legacy(registry, "mixed", signed.manifest_digest())
        .await;
    // The same index in `repo`: `signed`'s manifest for a variant no node runs first, then
    // `unsigned`'s for this node's platform.
    let (signed_ref, unsigned_ref) = (&signed, &unsigned);
    let push_index = |repo: &'static str| async move {
        let entry = |image: &TestImage, platform: serde_json::Value| {
            serde_json::json!({
                "mediaType": image.manifest_media_type(),
                "digest": image.manifest_digest(),
                "size": image.manifest_size(),
                "platform": platform,
            })
        };
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                entry(signed_ref, serde_json::json!({"os": "linux", "architecture": oci_arch(), "variant": "v9"})),
                entry(unsigned_ref, serde_json::json!({"os": "linux", "architecture": oci_arch()})),
            ],
        }))
        .unwrap();
        registry
            .push_manifest(repo, "v1", OCI_INDEX, &index)
            .await
            .unwrap();
    };
    push_index("mixed").await;
    // Pulled behind crigate's back: the runtime skips the variant it does not run and
    // holds the unsigned manifest, known by the index's digest.
    let id = pulled_directly(&node, &format!("{host}/mixed:v1")).await;
    assert_eq!(id, unsigned.config_digest());

    let mut pod = Pod::run(&node, node.env.pod_config("mixed", "prod").unwrap()).await;
    let denied = pod.create("mixed", &id).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let message = denied.message();
    assert!(message.contains("no_signature"), "{message}");
    assert!(
        message.contains(&format!("mixed@{}", unsigned.manifest_digest())),
        "the denial names the manifest the runtime holds: {message}"
    );

    // The other way round: the manifest the runtime holds is signed, and the one listed
    // first for this architecture is not. Allowed, through the runtime's manifest.
    registry.push("held", "signed", &unsigned).await.unwrap();
    registry.push("held", "unsigned", &signed).await.unwrap();
    node.signer
        .sign_legacy(registry, "held", unsigned.manifest_digest())
        .await;
    push_index("held").await;
    let id = pulled_directly(&node, &format!("{host}/held:v1")).await;
    pod.create("held", &id).await.unwrap();
}

/// A manifest without `mediaType` (OCI has it as SHOULD), pulled behind crigate's back,
/// is read as the type the runtime's record gives it: a signed one is allowed at create,
/// an unsigned one refused for its signature, not for being unreadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_without_a_media_type_is_read_as_the_runtime_read_it() {
    use crate::harness::image::OCI_MANIFEST;
    let node = node().await;
    let registry = &node.env.registry;
    let host = registry.host();
    let untyped = |image: &TestImage| {
        let mut manifest: serde_json::Value = serde_json::from_slice(image.manifest()).unwrap();
        manifest.as_object_mut().unwrap().remove("mediaType");
        serde_json::to_vec(&manifest).unwrap()
    };
    let mut pod = Pod::run(&node, node.env.pod_config("untyped", "prod").unwrap()).await;
    for (repo, signed) in [("untyped-signed", true), ("untyped-unsigned", false)] {
        let image = TestImage::builder().label(repo).build().unwrap();
        registry.push(repo, "full", &image).await.unwrap();
        let bytes = untyped(&image);
        let digest = registry
            .push_manifest(repo, "v1", OCI_MANIFEST, &bytes)
            .await
            .unwrap();
        if signed {
            node.signer.sign_legacy(registry, repo, &digest).await;
        }
        let id = pulled_directly(&node, &format!("{host}/{repo}:v1")).await;
        let created = pod.create(repo, &id).await;
        if signed {
            created.unwrap();
        } else {
            let denied = created.unwrap_err();
            assert!(denied.message().contains("no_signature"), "{denied:?}");
        }
    }
}

/// `user_specified_image` is the caller's word: naming an allowlisted image there does
/// not exempt another image. The allowlist sees the names the runtime has for the image
/// a create runs, and the reference a pull fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowlisted_name_claimed_for_another_image_exempts_nothing() {
    let node = node().await;
    let other = TestImage::builder().label("other").build().unwrap();
    node.env.registry.push("other", "v1", &other).await.unwrap();
    let other_ref = format!("{}/other:v1", node.env.registry.host());
    let claiming = |image: &str| {
        let mut request = pull(image, "tools");
        if let Some(spec) = request.image.as_mut() {
            spec.user_specified_image = node.unsigned.clone();
        }
        request
    };
    // `tools` allowlists `<registry>/unsigned*`; `other` is unsigned and not allowlisted.
    let denied = images(&node.crigate.socket)
        .await
        .pull_image(claiming(&other_ref))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    let other_id = pulled_directly(&node, &other_ref).await;
    let unsigned_id = pulled_directly(&node, &node.unsigned).await;
    let mut pod = Pod::run(&node, node.env.pod_config("claims", "tools").unwrap()).await;
    let mut request = create_pause(&pod.id, &pod.sandbox, "other", &other_id);
    if let Some(spec) = request
        .config
        .as_mut()
        .and_then(|config| config.image.as_mut())
    {
        spec.user_specified_image = node.unsigned.clone();
    }
    let denied = pod.runtime.create_container(request).await.unwrap_err();
    assert_refused(&denied, &["no_signature"]);
    // The allowlisted image itself is exempt by the runtime's own name for it, with or
    // without the caller saying so (kubelet before 1.28 does not).
    pod.create("unsigned", &unsigned_id).await.unwrap();
}

/// An image the runtime knows only by a tag (imported, or its digest name deleted) has no
/// digest to verify: refused where it must be signed, allowed where its tag is
/// allowlisted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_known_only_by_a_tag_is_allowlisted_by_it_and_otherwise_refused() {
    use containerd_client::services::v1::DeleteImageRequest;
    let node = node().await;
    let id = pulled_directly(&node, &node.unsigned).await;
    let digest_name = status(&node, &id)
        .await
        .unwrap()
        .repo_digests
        .into_iter()
        .next()
        .unwrap();
    containerd_images(&node)
        .await
        .delete(in_cri_namespace(DeleteImageRequest {
            name: digest_name,
            sync: true,
            ..Default::default()
        }))
        .await
        .unwrap();
    for _ in 0..50 {
        if status(&node, &id).await.unwrap().repo_digests.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(status(&node, &id).await.unwrap().repo_digests.is_empty());

    let mut prod = Pod::run(&node, node.env.pod_config("tag-only", "prod").unwrap()).await;
    let denied = prod.create("app", &id).await.unwrap_err();
    assert_refused(&denied, &["no repository digest"]);
    // `tools` allowlists `<registry>/unsigned*`: the runtime's tag for the image matches.
    let mut tools = Pod::run(&node, node.env.pod_config("tag-only", "tools").unwrap()).await;
    tools.create("app", &id).await.unwrap();
}

/// Pulls `image` through crigate for a pod in `prod`, as kubelet does; its image id.
async fn pulled_through_crigate(node: &Node, image: &str) -> String {
    pulled_on(&node.crigate.socket, image).await
}

/// containerd's own runtime service, bypassing crigate.
async fn direct_runtime(node: &Node) -> RuntimeServiceClient<Channel> {
    RuntimeServiceClient::new(cri_channel(node.env.containerd.socket()).await.unwrap())
}

/// The runtime's own account of container `id`: the CRI config it was created from and
/// the OCI runtime spec made for it (containerd's verbose ContainerStatus), with `id`
/// itself, which the spec repeats, replaced by `<id>`.
async fn runtime_view(
    runtime: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> (serde_json::Value, serde_json::Value) {
    let status = runtime
        .container_status(ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info = status.info.get("info").expect("containerd's verbose info");
    let info: serde_json::Value = serde_json::from_str(&info.replace(id, "<id>")).unwrap();
    (info["config"].clone(), info["runtimeSpec"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_shaped_create_reaches_the_runtime_as_sent() {
    let node = node().await;
    let image_id = pulled_through_crigate(&node, &node.signed).await;
    let sandbox = node.env.pod_config("web", "prod").unwrap();
    let mut pod = Pod::run(&node, sandbox).await;
    let request = kubelet_create(
        &pod.id,
        &pod.sandbox,
        "app",
        &image_id,
        &node.signed,
        &node.env.dir().join("kubelet-pod"),
    )
    .unwrap();
    let mut direct = direct_runtime(&node).await;

    // The same request through crigate, then (that container removed, so the name is
    // free again) straight to containerd.
    let through = pod
        .runtime
        .create_container(request.clone())
        .await
        .unwrap()
        .into_inner()
        .container_id;
    let (through_config, through_spec) = runtime_view(&mut direct, &through).await;
    direct
        .remove_container(RemoveContainerRequest {
            container_id: through,
        })
        .await
        .unwrap();
    let made = direct
        .create_container(request.clone())
        .await
        .unwrap()
        .into_inner()
        .container_id;
    let (direct_config, direct_spec) = runtime_view(&mut direct, &made).await;

    // What the request asked for is in the runtime's view, so the comparison below is of
    // something: the variables, the mounts, the limits, the security context.
    let config = request.config.unwrap();
    assert_eq!(
        through_config["envs"].as_array().map(Vec::len),
        Some(config.envs.len()),
        "{through_config}"
    );
    let env = through_spec["process"]["env"].to_string();
    assert!(
        env.contains("REDIS_PORT_6379_TCP_ADDR=10.96.97.180"),
        "{env}"
    );
    let mounts = through_spec["mounts"].to_string();
    assert!(
        mounts.contains("/var/run/secrets/kubernetes.io/serviceaccount")
            && mounts.contains("/dev/termination-log"),
        "{mounts}"
    );
    // The limits are in the config (this VM's containerd runs without cgroups, so its
    // spec leaves them out); the masked paths and no_new_privs in the spec.
    assert_eq!(
        through_config["linux"]["resources"]["memory_limit_in_bytes"],
        serde_json::json!(256 << 20),
        "{through_config}"
    );
    let masked = through_spec["linux"]["maskedPaths"].to_string();
    assert!(masked.contains("/sys/devices/virtual/powercap"), "{masked}");
    assert_eq!(through_spec["process"]["noNewPrivileges"], true);
    assert!(
        through_spec["linux"]["seccomp"].is_object(),
        "{through_spec}"
    );
    assert_eq!(through_spec["process"]["user"]["uid"], 65_532);
    // And crigate changed nothing of it.
    assert_eq!(through_config, direct_config);
    assert_eq!(through_spec, direct_spec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_naming_its_image_is_pinned_to_the_image_decided_on() {
    let node = node().await;
    let image_id = pulled_through_crigate(&node, &node.signed).await;
    let short_id = image_id.trim_start_matches("sha256:")[..12].to_owned();
    let sandbox = node.env.pod_config("web", "prod").unwrap();
    let mut pod = Pod::run(&node, sandbox).await;
    let mut direct = direct_runtime(&node).await;
    // By tag and by a short id, names the runtime would look up again as it creates: the
    // runtime is given the image id they led to. By id, as kubelet names it, the request
    // goes on as sent.
    for (name, image) in [
        ("by-tag", node.signed.as_str()),
        ("by-short-id", short_id.as_str()),
        ("by-id", image_id.as_str()),
    ] {
        let id = pod.create(name, image).await.unwrap();
        let (config, _) = runtime_view(&mut direct, &id).await;
        assert_eq!(
            config["image"]["image"],
            image_id.as_str(),
            "{name}: {config}"
        );
        assert_eq!(config["metadata"]["name"], name, "{config}");
    }
    // An unsigned image named by its tag is still refused, not pinned.
    pulled_directly(&node, &node.unsigned).await;
    let denied = pod.create("unsigned", &node.unsigned).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
}

/// Removes a file on drop, so a test that planted it leaves no trace when it fails.
struct Planted(std::path::PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_pinned_to_an_image_id_that_names_a_checkpoint_archive_is_refused() {
    let node = node().await;
    // An image of this test's own, signed: no other test names its id.
    let image = TestImage::builder()
        .label("checkpoint-pin")
        .build()
        .unwrap();
    let digest = node
        .env
        .registry
        .push("pinned", "v1", &image)
        .await
        .unwrap();
    node.signer
        .sign_legacy(&node.env.registry, "pinned", &digest)
        .await;
    let tagged = format!("{}/pinned:v1", node.env.registry.host());
    let image_id = pulled_through_crigate(&node, &tagged).await;
    let sandbox = node.env.pod_config("web", "prod").unwrap();
    let mut pod = Pod::run(&node, sandbox).await;
    // containerd 2.x restores a checkpoint archive when the image string it is given
    // names a file from its working directory, `/`, as CheckpointContainer's `location`
    // can leave one. Named by its tag, the create would reach the runtime as the id.
    let archive = Planted(std::path::Path::new("/").join(&image_id));
    std::fs::write(&archive.0, b"not an image").unwrap();
    let refused = pod.create("by-tag", &tagged).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("checkpoint archive"),
        "{refused:?}"
    );
    drop(archive);
    pod.create("by-tag", &tagged).await.unwrap();
}

/// A node whose namespace `notary` is governed by a strict Notation trust policy over a
/// CA of its own, with the policy's `verifiers`, and the port its certificates name as
/// their OCSP responder (none listens until a test starts one).
struct OcspNode {
    node: Node,
    ca: crate::notation_signer::NotationCa,
    work: tempfile::TempDir,
    port: u16,
}

impl OcspNode {
    async fn start(ca_name: &str, verifiers: &str) -> Self {
        use crate::notation_e2e::{ca_store, strict};
        use crate::notation_signer::{write_notation_dir, NotationCa};
        let ca = NotationCa::generate(ca_name);
        let work = tempfile::tempdir().unwrap();
        let port = crate::harness::process::free_port().unwrap();
        let notation = work.path().join("notation");
        std::fs::create_dir(&notation).unwrap();
        write_notation_dir(&notation, &strict("ca:ops"), &[ca_store("ca", "ops", &ca)]);
        let node = node_with(&format!(
            "[verifiers.notary]\nkind = \"notation\"\ndir = \"{}\"\n\n\
             [[policies]]\nname = \"notary\"\nnamespaces = [\"notary\"]\nverifiers = {verifiers}\n",
            notation.display()
        ))
        .await;
        Self {
            node,
            ca,
            work,
            port,
        }
    }

    /// Pushes an image as `repo:v1`, signed (COSE) by a leaf with `serial` whose OCSP
    /// responder is the node's port, and returns its name.
    async fn push_signed(&self, repo: &str, serial: u64) -> String {
        use crate::notation_e2e::push_image;
        use crate::notation_signer::{push_signatures, Format, KeyKind, SignOptions};
        let registry = &self.node.env.registry;
        let responder = format!("http://127.0.0.1:{}", self.port);
        let leaf = self
            .ca
            .leaf_with_ocsp(KeyKind::P256, repo, serial, &responder, None);
        let target = push_image(registry, repo).await;
        let envelope = leaf.sign(&target, &SignOptions::new(Format::Cose));
        push_signatures(registry, repo, &target, &[envelope]).await;
        format!("{}/{repo}:v1", registry.host())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notation_signatures_are_checked_for_revocation_with_the_signers_ocsp_responder() {
    use crate::notation_e2e::OcspResponder;
    const GOOD: u64 = 5101;
    const REVOKED: u64 = 5102;
    let ocsp = OcspNode::start("crigate enforce OCSP CA", "[\"notary\"]").await;
    let _responder =
        OcspResponder::start(ocsp.work.path(), &ocsp.ca, ocsp.port, &[GOOD], &[REVOKED]);
    let node = &ocsp.node;
    let signed = [
        ocsp.push_signed("ocsp-good", GOOD).await,
        ocsp.push_signed("ocsp-revoked", REVOKED).await,
    ];
    let mut client = images(&node.crigate.socket).await;
    client
        .pull_image(pull(&signed[0], "notary"))
        .await
        .expect("a signature whose certificate the responder calls good");
    let denied = client
        .pull_image(pull(&signed[1], "notary"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("CN=ocsp-revoked was revoked"),
        "{}",
        denied.message()
    );
    assert!(
        !present(node, &signed[1]).await,
        "an image signed with a revoked certificate reached the runtime"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_status_no_responder_gave_is_asked_again_on_the_next_pull() {
    use crate::notation_e2e::OcspResponder;
    const SERIAL: u64 = 5201;
    // The policy also names a cosign verifier, which finds no signature of its own.
    let ocsp = OcspNode::start(
        "crigate enforce OCSP outage CA",
        "[\"notary\", \"release\"]",
    )
    .await;
    let (node, port) = (&ocsp.node, ocsp.port);
    let image = ocsp.push_signed("ocsp-outage", SERIAL).await;
    let mut client = images(&node.crigate.socket).await;

    // The responder is down: nothing settles the status, which strict enforces. The
    // denial names that, not the cosign verifier's finding no signature of its own.
    let denied = client.pull_image(pull(&image, "notary")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied
            .message()
            .contains("CN=ocsp-outage cannot be determined")
            && denied.message().contains("[revocation_unknown]")
            && denied
                .message()
                .contains(&format!("OCSP http://127.0.0.1:{port}")),
        "{}",
        denied.message()
    );
    assert!(!present(node, &image).await);
    // `crigate verify` reports it too, whichever verifier it asks last. (Its JSON is on
    // stdout, a warning about the responder after it.)
    let json_of = |out: &str| -> serde_json::Value {
        let end = out.find("\n}\n").map_or(out.len(), |at| at + 2);
        serde_json::from_str(&out[..end]).unwrap_or_else(|_| panic!("{out}"))
    };
    let (code, out) = crigate_cli(
        &[
            "verify",
            &image,
            "--verifier",
            "notary",
            "--verifier",
            "release",
            "--output",
            "json",
        ],
        &node.crigate.config_path,
    );
    assert_eq!(code, 1, "{out}");
    let json = json_of(&out);
    assert_eq!(json["reason"]["code"], "revocation_unknown", "{json}");
    let (_, out) = crigate_cli(
        &[
            "verify",
            &image,
            "--verifier",
            "release",
            "--verifier",
            "notary",
            "--output",
            "json",
        ],
        &node.crigate.config_path,
    );
    let json = json_of(&out);
    assert_eq!(json["reason"]["code"], "revocation_unknown", "{json}");

    // Back up: the next pull asks it, not a rejection kept from the outage.
    let _responder = OcspResponder::start(ocsp.work.path(), &ocsp.ca, port, &[SERIAL], &[]);
    client
        .pull_image(pull(&image, "notary"))
        .await
        .expect("the responder calls the certificate good");
    assert!(present(node, &image).await);
}

/// CreateContainer of a pause container running the signed image, with an image volume
/// of `image` at `/models`. containerd 1.6 predates `Mount.image` and ignores it, so the
/// mount also names a host directory for it to mount; what crigate decides on is the
/// image.
fn create_with_volume(node: &Node, pod: &Pod, name: &str, image: &str) -> CreateContainerRequest {
    let source = node.env.dir().join("volume-source");
    std::fs::create_dir_all(&source).unwrap();
    let mut request = create_pause(&pod.id, &pod.sandbox, name, &node.signed);
    request.config.as_mut().unwrap().mounts.push(Mount {
        container_path: "/models".to_owned(),
        host_path: source.display().to_string(),
        readonly: true,
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    });
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_are_gated_like_the_containers_own_image() {
    let journald = Journald::start().unwrap();
    let node_name = format!("volume-node-{}", std::process::id());
    let node = node_with(&format!(
        "[audit]\nnode = \"{node_name}\"\njournal_socket = \"{}\"\n",
        journald.socket().display()
    ))
    .await;
    // Both images straight into containerd, as an image volume's content may have come.
    let unsigned_id = pulled_directly(&node, &node.unsigned).await;
    let signed_id = pulled_directly(&node, &node.signed).await;
    let mut pod = Pod::run(&node, node.env.pod_config("web", "prod").unwrap()).await;

    // By id, as kubelet names a volume's image, and by name: the unsigned one refused.
    let mut denials = Vec::new();
    for (name, image) in [("bad", &unsigned_id), ("bad2", &node.unsigned)] {
        let request = create_with_volume(&node, &pod, name, image);
        let denied = pod.runtime.create_container(request).await.unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        let message = denied.message().to_owned();
        assert!(
            message.contains("unsigned@sha256:")
                && message.contains("(image volume at /models) in namespace prod"),
            "{message}"
        );
        denials.push(message);
    }
    // Signed, by id and by tag: created.
    for (name, image) in [("good", &signed_id), ("good2", &node.signed)] {
        let request = create_with_volume(&node, &pod, name, image);
        pod.runtime.create_container(request).await.unwrap();
    }
    // Under an auditing policy the unsigned volume goes ahead, recorded.
    let mut staging = Pod::run(&node, node.env.pod_config("web-s", "staging").unwrap()).await;
    let request = create_with_volume(&node, &staging, "audited", &unsigned_id);
    staging.runtime.create_container(request).await.unwrap();

    // Ten records: the container's image and its volume's, for each of the five creates.
    let ours = format!("CRIGATE_NODE={node_name}");
    journald
        .wait_for(&["SYSLOG_IDENTIFIER=crigate", &ours], 10)
        .unwrap();
    let field = |entry: &serde_json::Value, name: &str| entry[name].as_str().map(str::to_owned);
    let volume_records = journald
        .query(&[&ours, "CRIGATE_VOLUME_PATH=/models"])
        .unwrap();
    assert_eq!(volume_records.len(), 5, "{volume_records:?}");
    let by_container = |name: &str| {
        volume_records
            .iter()
            .find(|r| field(r, "CRIGATE_CONTAINER").as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no volume record for {name}: {volume_records:?}"))
    };
    for (name, denial) in ["bad", "bad2"].into_iter().zip(&denials) {
        let record = by_container(name);
        assert_eq!(field(record, "CRIGATE_DECISION").as_deref(), Some("deny"));
        assert_eq!(field(record, "CRIGATE_PHASE").as_deref(), Some("create"));
        assert_eq!(
            field(record, "CRIGATE_REASON_CODE").as_deref(),
            Some("no_signature")
        );
        let id = field(record, "CRIGATE_ID").unwrap();
        assert!(denial.ends_with(&format!("(audit id {id})")), "{denial}");
    }
    assert_eq!(
        field(by_container("bad"), "CRIGATE_IMAGE"),
        Some(unsigned_id.clone())
    );
    for name in ["good", "good2"] {
        let record = by_container(name);
        assert_eq!(field(record, "CRIGATE_DECISION").as_deref(), Some("allow"));
        assert_eq!(
            field(record, "CRIGATE_DIGEST"),
            Some(node.env.app_digest.clone())
        );
    }
    // The volume named by its tag was given to the runtime as the image id it led to.
    assert_eq!(
        field(by_container("good2"), "CRIGATE_PINNED"),
        Some(signed_id)
    );
    assert_eq!(field(by_container("good"), "CRIGATE_PINNED"), None);
    assert_eq!(
        field(by_container("audited"), "CRIGATE_DECISION").as_deref(),
        Some("audit-deny")
    );
    // The containers' own images were decided too, in records without a volume path.
    let all = journald.query(&[&ours]).unwrap();
    let own: Vec<_> = all
        .iter()
        .filter(|r| field(r, "CRIGATE_VOLUME_PATH").is_none())
        .collect();
    assert_eq!(own.len(), 5, "{all:?}");
    assert!(own
        .iter()
        .all(|r| field(r, "CRIGATE_DECISION").as_deref() == Some("allow")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_volume_sent_over_runtime_v1alpha2_is_gated_too() {
    use prost::Message as _;

    let node = node().await;
    let unsigned_id = pulled_directly(&node, &node.unsigned).await;
    let signed_id = pulled_directly(&node, &node.signed).await;
    let pod = Pod::run(&node, node.env.pod_config("old-api", "prod").unwrap()).await;
    // runtime.v1alpha2's Mount has no image field; the same bytes read as runtime.v1
    // mount one, so crigate decides it on either version.
    let call = |name: &str, image: &str| {
        let body = crate::standin::grpc_frame(
            &create_with_volume(&node, &pod, name, image).encode_to_vec(),
        );
        crate::client::call(
            &node.crigate.socket,
            "/runtime.v1alpha2.RuntimeService/CreateContainer",
            &[],
            body,
        )
    };
    let denied = call("unsigned-volume", &unsigned_id).await.unwrap();
    assert_eq!(denied.grpc_status(), Some(Code::PermissionDenied as i32));
    assert!(
        denied
            .grpc_message()
            .contains("(image volume at /models) in namespace prod"),
        "{}",
        denied.grpc_message()
    );
    let allowed = call("signed-volume", &signed_id).await.unwrap();
    assert_eq!(allowed.grpc_status(), Some(0), "{}", allowed.grpc_message());
}

/// containerd 2.1+ mounts an image volume from the image record named as the mount names
/// it, `sha256:<id>`; a record of that name pointed at other content (through the runtime's
/// images API, as `ctr images tag --force` does) must not mount that content under the
/// signed image's verdict. (containerd 1.6 does not mount image volumes; what is shown is
/// crigate's decision, made on the record the runtime would read.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_volume_whose_id_record_leads_elsewhere_is_refused() {
    use containerd_client::services::v1::{GetImageRequest, Image, UpdateImageRequest};
    let node = node().await;
    let unsigned_id = pulled_directly(&node, &node.unsigned).await;
    let signed_id = pulled_directly(&node, &node.signed).await;
    let mut pod = Pod::run(&node, node.env.pod_config("records", "prod").unwrap()).await;
    // As the runtime has them, the signed image's id record mounts: allowed.
    let request = create_with_volume(&node, &pod, "before", &signed_id);
    pod.runtime.create_container(request).await.unwrap();

    let mut native = containerd_images(&node).await;
    let record = |name: &str| GetImageRequest {
        name: name.to_owned(),
    };
    let unsigned_target = native
        .get(in_cri_namespace(record(&unsigned_id)))
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap()
        .target;
    let mut signed_record = native
        .get(in_cri_namespace(record(&signed_id)))
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    signed_record.target = unsigned_target;
    native
        .update(in_cri_namespace(UpdateImageRequest {
            image: Some(Image { ..signed_record }),
            ..Default::default()
        }))
        .await
        .unwrap();
    // The runtime's image store still answers for the signed image by its id.
    let listed = status(&node, &signed_id).await.unwrap();
    assert_eq!(listed.id, signed_id);

    let request = create_with_volume(&node, &pod, "after", &signed_id);
    let denied = pod.runtime.create_container(request).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("image_record_mismatch")
            && denied.message().contains("(image volume at /models)"),
        "{}",
        denied.message()
    );
    // The container's own image is the signed one by the same id: the runtime creates it
    // from its image store, not from that record, so it is still allowed.
    pod.create("own", &signed_id).await.unwrap();
}

/// A registry name no resolver answers (RFC 6761): reached only through its mirror.
const MIRRORED: &str = "registry.invalid";

/// Writes `<hosts>/<dir>/hosts.toml`: the local registry, plain HTTP, with `capabilities`.
/// Host tables rather than a bare `server`, which containerd 1.6 ignores in a file
/// without them.
fn write_hosts(hosts: &std::path::Path, dir: &str, local: &str, capabilities: &str) {
    std::fs::create_dir_all(hosts.join(dir)).unwrap();
    std::fs::write(
        hosts.join(dir).join("hosts.toml"),
        format!("[host.\"http://{local}\"]\n{capabilities}"),
    )
    .unwrap();
}

/// Waits until the daemon has noticed a change to its registry hosts and reloaded.
fn hosts_change_is_applied(node: &Node) {
    let noticed = std::time::Duration::from_secs(10);
    node.crigate
        .wait_log("registry hosts directory changed", noticed)
        .unwrap();
    node.crigate
        .wait_log("configuration reloaded", noticed)
        .unwrap();
}

/// After a registry hosts file was broken: `policy check` fails naming the file and what
/// is wrong (`named`), the daemon refuses the reload, and `signed` is still pulled through
/// the hosts it runs with.
async fn bad_hosts_are_named_and_the_running_ones_kept(
    node: &Node,
    client: &mut ImageServiceClient<Channel>,
    signed: &str,
    named: [&str; 2],
) {
    let (code, out) = crigate_cli(&["policy", "check"], &node.crigate.config_path);
    assert_eq!(code, 1, "{out}");
    assert!(named.iter().all(|name| out.contains(name)), "{out}");
    node.crigate
        .wait_log(
            "configuration reload refused",
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    client.pull_image(pull(signed, "prod")).await.unwrap();
}

/// Signs the local registry's `app` for [`MIRRORED`], then, through crigate, pulls and runs
/// `MIRRORED/app:v1` and is refused `MIRRORED/unsigned:v1`, pulled through crigate or behind
/// its back: what a node whose runtime reaches [`MIRRORED`] through the local registry
/// must see. Returns the image client and the signed reference.
async fn mirrored_images_are_enforced(node: &Node) -> (ImageServiceClient<Channel>, String) {
    // cosign signs the name the image is pulled by, which the verifier holds the
    // signature to (`docker_reference = "match-repository"`): the mirrored registry's,
    // never the mirror's.
    let payload = KeySigner::payload(&format!("{MIRRORED}/app"), &node.env.app_digest);
    let signature = node.signer.legacy(payload);
    push_legacy(
        &node.env.registry,
        "app",
        &node.env.app_digest,
        &[signature],
    )
    .await;
    let mut client = images(&node.crigate.socket).await;

    // The signed image, its signature on the mirror: verified, pinned, pulled by the
    // runtime from the mirror, run.
    let signed = format!("{MIRRORED}/app:v1");
    let pulled = client
        .pull_image(pull(&signed, "prod"))
        .await
        .unwrap()
        .into_inner();
    let pinned = format!("{MIRRORED}/app@{}", node.env.app_digest);
    assert!(
        present(node, &pinned).await,
        "the runtime did not pull {pinned}"
    );
    assert!(
        present(node, &signed).await,
        "the pull is named as requested"
    );
    let mut pod = Pod::run(node, node.env.pod_config("mirrored", "prod").unwrap()).await;
    pod.create("web", &pulled.image_ref).await.unwrap();

    // The unsigned image: refused for what it is (no signature), not for the registry
    // crigate cannot reach.
    let unsigned = format!("{MIRRORED}/unsigned:v1");
    let denied = client
        .pull_image(pull(&unsigned, "prod"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied.message().contains("no_signature"),
        "{}",
        denied.message()
    );
    assert!(!present(node, &unsigned).await);
    // Pulled through the mirror behind crigate's back: refused at CreateContainer.
    let unsigned_id = pulled_directly(node, &unsigned).await;
    let refused = pod.create("bad", &unsigned_id).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("no_signature"),
        "{}",
        refused.message()
    );

    (client, signed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_of_a_registry_mirrored_in_hosts_toml_are_verified_where_the_runtime_pulls_them() {
    // A hosts directory, as containerd's `config_path` reads it, that names the local
    // registry as plain HTTP; crigate and containerd read the same one.
    let mut node = node_configured(
        |env| {
            let hosts = env.dir().join("certs.d");
            write_hosts(&hosts, &env.registry.host(), &env.registry.host(), "");
            format!("hosts_dir = \"{}\"", hosts.display())
        },
        "",
    )
    .await;
    let hosts = node.env.dir().join("certs.d");
    node.env.containerd.stop().await.unwrap();
    node.env.containerd.use_hosts_dir(&hosts).unwrap();
    node.env.containerd.start().await.unwrap();
    // The local registry becomes the mirror of one crigate cannot reach. containerd reads
    // the directory at each pull; crigate notices the change without a signal.
    let local = node.env.registry.host();
    write_hosts(
        &hosts,
        MIRRORED,
        &local,
        "  capabilities = [\"pull\", \"resolve\"]\n",
    );
    hosts_change_is_applied(&node);
    let (mut client, signed) = mirrored_images_are_enforced(&node).await;

    // A hosts file crigate cannot read: `policy check` names it, and the daemon keeps
    // the hosts it runs with.
    let broken = hosts.join("broken.example");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("hosts.toml"),
        "[host.\"https://m.example\"]\n  capabilities = [\"fetch\"]\n",
    )
    .unwrap();
    bad_hosts_are_named_and_the_running_ones_kept(
        &node,
        &mut client,
        &signed,
        ["broken.example/hosts.toml", "\"fetch\""],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_of_a_registry_mirrored_in_containerds_own_config_are_verified_where_it_pulls_them()
{
    // crigate reads the runtime's own config file, whose older `registry.mirrors` table
    // names the local registry as plain HTTP.
    let mut node = node_configured(
        |env| {
            format!(
                "containerd_config = \"{}\"",
                env.containerd.config_path().display()
            )
        },
        "",
    )
    .await;
    // The local registry becomes the mirror of one crigate cannot reach. containerd reads
    // it at start; crigate notices the file changed without a signal.
    let local = node.env.registry.host();
    node.env.containerd.stop().await.unwrap();
    node.env
        .containerd
        .use_mirrors(&[(MIRRORED, &format!("http://{local}"))])
        .unwrap();
    node.env.containerd.start().await.unwrap();
    hosts_change_is_applied(&node);
    let (mut client, signed) = mirrored_images_are_enforced(&node).await;

    // A containerd config crigate cannot read: `policy check` names it, and the daemon
    // keeps the hosts it runs with.
    let config = node.env.containerd.config_path().to_owned();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(&format!("\"http://{local}\""), "\"ftp://nowhere\""),
    )
    .unwrap();
    let named = config.display().to_string();
    bad_hosts_are_named_and_the_running_ones_kept(
        &node,
        &mut client,
        &signed,
        [named.as_str(), "\"ftp://nowhere\""],
    )
    .await;
}

/// The decisions as a CRI client on gRPC C-core sees them (`grpc_core.rs` says why that
/// client): a denied pull and a denied create are PERMISSION_DENIED with crigate's
/// message, allowed ones answer as containerd does. Once with the authority C-core
/// sends for a unix socket (its path, percent-encoded), once with the one grpc-go sends
/// for a socket dialled by its bare path, as older kubelets and crictl do: the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_core_client_is_told_what_was_denied_and_why() {
    let node = node().await;
    let unsigned_id = pulled_directly(&node, &node.unsigned).await;
    for (i, authority) in [None, Some("/run/crigate/crigate.sock")]
        .into_iter()
        .enumerate()
    {
        told_what_was_denied(&node, &unsigned_id, i, authority).await;
    }
}

async fn told_what_was_denied(node: &Node, unsigned_id: &str, i: usize, authority: Option<&str>) {
    use crate::grpc_core::{self, Call};

    let pod = Pod::run(
        node,
        node.env.pod_config(&format!("web{i}"), "prod").unwrap(),
    )
    .await;
    let create = |name: &str, image: &str| {
        Call::new(
            "/runtime.v1.RuntimeService/CreateContainer",
            &create_pause(&pod.id, &pod.sandbox, name, image),
        )
    };
    let calls = vec![
        Call::new(
            "/runtime.v1.ImageService/PullImage",
            &pull(&node.unsigned, "prod"),
        ),
        Call::new(
            "/runtime.v1.ImageService/PullImage",
            &pull(&node.signed, "prod"),
        ),
        create("bad", unsigned_id),
        create("good", &node.signed),
        Call::new(
            "/runtime.v1.RuntimeService/Version",
            &VersionRequest {
                version: "v1".into(),
            },
        ),
    ];
    let socket = node.crigate.socket.clone();
    let authority = authority.map(str::to_owned);
    let outcomes = tokio::task::spawn_blocking(move || {
        grpc_core::run_as(&socket, authority.as_deref(), &calls)
    })
    .await
    .unwrap()
    .unwrap();

    for (what, denied) in [("pull", &outcomes[0][0]), ("create", &outcomes[2][0])] {
        assert_eq!(denied.code, "PERMISSION_DENIED", "{what}: {denied:?}");
        let message = denied.details.as_deref().unwrap_or_default();
        assert!(
            message.starts_with("crigate: denied ")
                && message.contains("unsigned@sha256:")
                && message.contains("namespace prod")
                && message.contains("audit id"),
            "{what}: {message}"
        );
    }
    let pulled: PullImageResponse = outcomes[1][0].decode().unwrap();
    assert!(pulled.image_ref.starts_with("sha256:"), "{pulled:?}");
    let created: CreateContainerResponse = outcomes[3][0].decode().unwrap();
    let mut runtime =
        RuntimeServiceClient::new(cri_channel(node.env.containerd.socket()).await.unwrap());
    let status = runtime
        .container_status(ContainerStatusRequest {
            container_id: created.container_id,
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status.unwrap().metadata.unwrap().name, "good");
    let version: VersionResponse = outcomes[4][0].decode().unwrap();
    assert_eq!(version.runtime_name, "containerd");
}

/// A pull by the digest of an index that is not signed itself, whose manifest for this
/// node's platform is: allowed, and handed to the runtime as asked, so that it holds the
/// image by the name asked for (kubelet looks that name up before every container, and
/// pulls again when it finds nothing). The create is decided on the manifest the runtime
/// picked from the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_by_an_index_digest_trusted_through_its_platform_manifest_keeps_that_name() {
    use crate::harness::image::{oci_arch, OCI_INDEX};
    let node = node().await;
    let registry = &node.env.registry;
    let image = TestImage::builder().label("per-platform").build().unwrap();
    registry
        .push("perplatform", "single", &image)
        .await
        .unwrap();
    node.signer
        .sign_legacy(registry, "perplatform", image.manifest_digest())
        .await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": image.manifest_media_type(),
            "digest": image.manifest_digest(),
            "size": image.manifest_size(),
            "platform": {"os": "linux", "architecture": oci_arch()},
        }],
    }))
    .unwrap();
    let index_digest = registry
        .push_manifest("perplatform", "v1", OCI_INDEX, &index)
        .await
        .unwrap();
    let by_digest = format!("{}/perplatform@{index_digest}", registry.host());

    let mut client = images(&node.crigate.socket).await;
    let pulled = client
        .pull_image(pull(&by_digest, "prod"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pulled.image_ref, image.config_digest());
    let found = status_on(&node.crigate.socket, &by_digest)
        .await
        .expect("ImageStatus of the digest pulled finds the image");
    assert_eq!(found.id, pulled.image_ref);
    assert!(
        found.repo_digests.contains(&by_digest),
        "{:?}",
        found.repo_digests
    );
    let logs = node.crigate.logs();
    assert!(
        logs.contains(&format!("perplatform@{}", image.manifest_digest())),
        "the decision names the signed manifest: {logs}"
    );
    // crigate read the index once (where pulls are counted, each manifest GET is one).
    let access = std::fs::read_to_string(registry.log_path()).unwrap();
    let index_gets = access
        .lines()
        .filter(|line| {
            line.contains(&format!("\"GET /v2/perplatform/manifests/{index_digest} "))
                && line.contains("\"crigate/")
        })
        .count();
    assert_eq!(index_gets, 1, "{access}");

    let mut pod = Pod::run(&node, node.env.pod_config("perplatform", "prod").unwrap()).await;
    pod.create("perplatform", &pulled.image_ref).await.unwrap();
}
