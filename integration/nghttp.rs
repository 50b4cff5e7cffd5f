//! nghttp, the client of nghttp2 (the reference HTTP/2 implementation), as a CRI client
//! through crigate and directly to containerd. It uses what kubelet's client does not:
//! PRIORITY frames, padded HEADERS and DATA, and a decoder header table it lowers to
//! nothing, which an encoder must acknowledge with a size update at the start of its next
//! header block (RFC 7541 §4.2). nghttp speaks HTTP/2 over TCP only; each socket gets a
//! loopback TCP bridge.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_cri::v1::VersionRequest;
use prost::Message;

use crate::daemon::{Crigate, Options};
use crate::harness::cri::pull_request;
use crate::harness::Env;

/// A loopback TCP port whose connections are relayed to the unix socket `socket`.
async fn bridge(socket: PathBuf) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    port
}

/// A gRPC request body: one uncompressed message.
fn grpc_body(message: &impl Message) -> Vec<u8> {
    let encoded = message.encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    body.extend_from_slice(&encoded);
    body
}

/// nghttp's verbose output for `calls` POSTs of `body` to `path` on one connection to
/// `port`, with padding and a decoder header table of size 0, and `headers` added.
async fn nghttp(port: u16, path: &str, body: &Path, calls: usize, headers: &[&str]) -> String {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut command = Command::new("nghttp");
    command.args([
        "-n",
        "-v",
        "--padding=17",
        "--header-table-size=0",
        "-m",
        &calls.to_string(),
        "-H",
        ":method: POST",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
    ]);
    for header in headers {
        command.args(["-H", header]);
    }
    command.arg("-d");
    command.arg(body).arg(url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("nghttp runs (integration/setup installs nghttp2-client)");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nghttp2s_client_is_answered_through_crigate_as_by_containerd() {
    let env = Env::start().await.unwrap();
    let crigate = Crigate::start(
        env.dir(),
        Options::new(env.dir(), env.containerd.socket(), ""),
    )
    .unwrap();
    let version = env.dir().join("version.bin");
    std::fs::write(
        &version,
        grpc_body(&VersionRequest {
            version: "v1".into(),
        }),
    )
    .unwrap();
    let pull = env.dir().join("pull.bin");
    std::fs::write(
        &pull,
        grpc_body(&pull_request(&env.app_ref(), "pod", "default")),
    )
    .unwrap();

    let direct = bridge(env.containerd.socket().to_owned()).await;
    let through = bridge(crigate.socket.clone()).await;
    for (path, body, calls) in [
        ("/runtime.v1.RuntimeService/Version", &version, 3),
        ("/runtime.v1.ImageService/PullImage", &pull, 2),
    ] {
        for port in [direct, through] {
            let seen = nghttp(port, path, body, calls, &[]).await;
            let answered = seen.matches("grpc-status: 0").count();
            assert_eq!(answered, calls, "{path} on port {port}:\n{seen}");
            assert!(
                !seen.contains("COMPRESSION_ERROR") && !seen.contains("PROTOCOL_ERROR"),
                "{path} on port {port}:\n{seen}"
            );
        }
    }
}

/// A gated call is bounded by the caller's own deadline, even for a client that does not
/// enforce it (nghttp knows nothing of gRPC): a PullImage whose registry never answers
/// is answered DEADLINE_EXCEEDED once its `grpc-timeout` has passed, not when crigate's
/// own registry and verification timeouts end, and is never passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_call_ends_at_its_callers_deadline() {
    let env = Env::start().await.unwrap();
    // A registry that takes connections and never answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let key = env.dir().join("release.pub");
    std::fs::write(&key, crate::signer::KeySigner::generate().public_pem()).unwrap();
    let config = format!(
        "[registry]\nplain_http = [\"{host}\"]\nrequest_timeout = \"20s\"\n\n\
         [verify]\ntimeout = \"20s\"\n\n\
         [verifiers.release]\nkind = \"cosign\"\nkeys = [\"{}\"]\nrequire_tlog = false\n\n\
         [[policies]]\nname = \"all\"\nnamespaces = [\"*\"]\nverifiers = [\"release\"]\n",
        key.display()
    );
    let crigate = Crigate::start(
        env.dir(),
        Options::new(env.dir(), env.containerd.socket(), &config),
    )
    .unwrap();
    let pull = env.dir().join("pull.bin");
    let image = format!("{host}/app:v1");
    std::fs::write(&pull, grpc_body(&pull_request(&image, "pod", "default"))).unwrap();
    let through = bridge(crigate.socket.clone()).await;
    let started = std::time::Instant::now();
    let seen = nghttp(
        through,
        "/runtime.v1.ImageService/PullImage",
        &pull,
        1,
        &["grpc-timeout: 700m"],
    )
    .await;
    let took = started.elapsed();
    assert!(seen.contains("grpc-status: 4"), "{seen}");
    assert!(seen.contains("deadline"), "{seen}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "{took:?}\n{seen}"
    );
    drop(silent);
}
