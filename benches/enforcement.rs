//! What a decision adds to the two gated calls, measured against the real containerd in
//! one run: PullImage and CreateContainer made directly on containerd's socket and
//! through `crigate serve` enforcing a policy, in rounds that start with a
//! different path each time, so all see the same machine.
//!
//! Through crigate each call pays the whole decision path: decoding, policy selection,
//! the verdict (cached after the first call, as on a node that runs one image many
//! times), for CreateContainer the resolution of the image id PullImage returned to the
//! digest that pull was pinned to, the audit record sent to a real journald and
//! appended to the spool (the runtime is called once the record is written; the caller
//! is answered once it is also fsynced, the fsync overlapping the runtime's work), and
//! the proxy hop. The target: the added p50 under 5% of a direct CreateContainer's p50.
//! For scale it also times, directly on containerd, the ImageStatus that resolving an
//! image id no pull through crigate answered with takes, and a Version call; and the
//! same calls through `socat`, a byte-level relay, for what an extra hop alone costs
//! them on this machine.
//!
//! CreateContainer is measured twice: with a minimal request (host network, one command),
//! and with one shaped as kubelet sends it for a pod under the `restricted` Pod Security
//! Standard (service-link variables, the service-account, hosts and termination-log
//! mounts, limits, a security context with the runtime's seccomp profile), which costs
//! the runtime more to turn into a container.
//!
//! The spool is on because an aggregator is configured; none listens at that address, so
//! the shipper only retries with backoff while every record waits in the spool, which is
//! the node's behaviour when its aggregator is away and costs the decision path the same.
//!
//! Run: `cargo bench --bench enforcement` (root; `integration/setup` installs what it
//! needs). `CRIGATE_BENCH_CALLS` sets the calls per path (default 200).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

#[path = "../integration/daemon.rs"]
mod daemon;
#[path = "../integration/harness/mod.rs"]
mod harness;
#[path = "../integration/signer.rs"]
mod signer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;

use crigate::audit::journald::Journald as JournaldSink;
use crigate::audit::spool::{Spool, SpoolConfig};
use crigate::audit::{new_id, AuditRecord, Auditor, DecisionKind, Sink};
use daemon::{Crigate, Options};
use harness::cri::{create_pause, kubelet_create, pull_request};
use harness::journald::Journald;
use harness::process::{cpu_time, Relay};
use harness::{cri_channel, Env};
use signer::KeySigner;

fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[(samples.len() * 99 / 100).min(samples.len() - 1)]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(call: &str, direct: &mut [Duration], through: &mut [Duration], target: Option<f64>) {
    let (d50, c50) = (p50(direct), p50(through));
    let added = us(c50) - us(d50);
    let ratio = added / us(d50);
    let verdict = match target {
        Some(t) if ratio <= t => format!("target <= {:.0}%: met", t * 100.0),
        Some(t) => format!("target <= {:.0}%: MISSED", t * 100.0),
        None => "reported".to_owned(),
    };
    println!(
        "{call:<16} direct p50 {:>8.0} µs p99 {:>8.0} | through p50 {:>8.0} µs p99 {:>8.0} | added p50 {:>6.0} µs = {:>5.1}% of direct ({verdict})",
        us(d50),
        us(p99(direct)),
        us(c50),
        us(p99(through)),
        added,
        ratio * 100.0
    );
}

/// p50 and p99 of one audit record written through `sinks` (as the decision path writes
/// it: every sink concurrently, returning when all have it), over `count` records.
async fn record_cost(sinks: Vec<Arc<dyn Sink>>, count: usize) -> [Duration; 3] {
    let auditor = Auditor::new("bench", sinks);
    let (mut written_after, mut durable_after) =
        (Vec::with_capacity(count), Vec::with_capacity(count));
    for n in 0..count {
        let mut record = AuditRecord {
            id: new_id(),
            time_unix_nanos: crigate::audit::now_unix_nanos(),
            node: "bench".to_owned(),
            namespace: "prod".to_owned(),
            image: format!("registry.example/app:v{n}"),
            subject: format!("registry.example/app@sha256:{n:064x}"),
            reason: "signed by the release key".to_owned(),
            ..Default::default()
        };
        record.set_decision(DecisionKind::Allow);
        let started = Instant::now();
        let written = auditor.record(record).await;
        written_after.push(started.elapsed());
        assert!(written.failed.is_empty(), "a sink failed");
        written.durable.wait().await;
        durable_after.push(started.elapsed());
    }
    assert_eq!(auditor.failures(), 0, "a sink failed");
    [
        p50(&mut written_after),
        p99(&mut written_after),
        p50(&mut durable_after),
    ]
}

/// The CPU time each of `pids` used while `work` ran.
async fn cpu_during<T>(
    pids: &[u32],
    work: impl std::future::Future<Output = T>,
) -> (T, Vec<Duration>) {
    let before: Vec<Duration> = pids.iter().map(|&pid| cpu_time(pid)).collect();
    let out = work.await;
    let used = pids
        .iter()
        .zip(before)
        .map(|(&pid, before)| cpu_time(pid).saturating_sub(before))
        .collect();
    (out, used)
}

/// `calls` CreateContainers on each path, each removed again, in rounds that start with a
/// different path each time; `request(i, path)` is the `i`th call's on `path`.
async fn create_each(
    runtimes: &mut [RuntimeServiceClient<tonic::transport::Channel>; 4],
    calls: usize,
    request: impl Fn(usize, usize) -> CreateContainerRequest,
) -> [Vec<Duration>; 4] {
    let mut creates: [Vec<Duration>; 4] = Default::default();
    for i in 0..calls {
        for path in (0..4).map(|n| (n + i) % 4) {
            let client = &mut runtimes[path];
            let request = request(i, path);
            let started = Instant::now();
            let id = client
                .create_container(request)
                .await
                .unwrap()
                .into_inner()
                .container_id;
            creates[path].push(started.elapsed());
            client
                .remove_container(RemoveContainerRequest { container_id: id })
                .await
                .unwrap();
        }
    }
    creates
}

/// Reports `creates[path]` against the direct calls, `creates[0]`, with the target.
fn report_creates(creates: &mut [Vec<Duration>; 4], path: usize) {
    let mut direct = creates[0].clone();
    report(
        "CreateContainer",
        &mut direct,
        &mut creates[path],
        Some(0.05),
    );
}

fn pull(image: &str) -> PullImageRequest {
    pull_request(image, "bench", "prod")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and only builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let calls: usize = std::env::var("CRIGATE_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let env = Env::start().await.expect("harness");
    let journald = Journald::start().expect("journald");
    let signer = KeySigner::generate();
    signer
        .sign_legacy(&env.registry, "app", &env.app_digest)
        .await;
    let key = env.dir().join("release.pub");
    std::fs::write(&key, signer.public_pem()).unwrap();
    // The node's client certificate, self-issued: nothing verifies it, as no aggregator
    // answers; the shipper only needs material it can load.
    let node_cert = rcgen::generate_simple_self_signed(vec!["bench".to_owned()]).unwrap();
    let (cert, node_key) = (env.dir().join("node.pem"), env.dir().join("node.key"));
    std::fs::write(&cert, node_cert.cert.pem()).unwrap();
    std::fs::write(&node_key, node_cert.signing_key.serialize_pem()).unwrap();
    let unused_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spool_keys = format!(
        "aggregator = \"https://127.0.0.1:{unused_port}\"\nca_file = \"{cert}\"\n\
         cert_file = \"{cert}\"\nkey_file = \"{node_key}\"\nspool_dir = \"{spool}\"\n",
        cert = cert.display(),
        node_key = node_key.display(),
        spool = env.dir().join("spool").display(),
    );
    let config = |dir: &std::path::Path, spool: &str| {
        format!(
            r#"
[registry]
plain_http = ["{host}"]

[cache]
path = "{cache}"

[audit]
node = "bench"
journal_socket = "{journal}"
{spool}
[verifiers.release]
kind = "cosign"
keys = ["{key}"]
require_tlog = false

[[policies]]
name = "prod"
namespaces = ["prod"]
verifiers = ["release"]
"#,
            host = env.registry.host(),
            cache = dir.join("verdicts.jsonl").display(),
            journal = journald.socket().display(),
            key = key.display(),
        )
    };
    let start = |dir: &std::path::Path, spool: &str| {
        std::fs::create_dir_all(dir).unwrap();
        let mut options = Options::new(dir, env.containerd.socket(), &config(dir, spool));
        // The daemon as shipped writes diagnostics to the journal that holds its records,
        // and so no per-decision diagnostic (`crigate::decision`); here they go to a file,
        // where that event would be written: `warn` leaves it out, as shipped.
        options.env.push(("RUST_LOG".into(), "warn".into()));
        Crigate::start(dir, options).unwrap()
    };
    // The node as shipped with an aggregator (journald and spool), and without one.
    let spooling = start(&env.dir().join("spooling"), &spool_keys);
    let journal_only = start(&env.dir().join("journal-only"), "");

    let direct_channel = cri_channel(env.containerd.socket()).await.unwrap();
    let spooling_channel = cri_channel(&spooling.socket).await.unwrap();
    let journal_channel = cri_channel(&journal_only.socket).await.unwrap();
    // A byte relay in front of containerd: what any extra hop costs these calls here.
    let relay = Relay::start(env.dir(), env.containerd.socket()).expect("relay");
    let relay_channel = cri_channel(&relay.socket).await.unwrap();
    let mut images = [
        ImageServiceClient::new(direct_channel.clone()),
        ImageServiceClient::new(spooling_channel.clone()),
        ImageServiceClient::new(journal_channel.clone()),
        ImageServiceClient::new(relay_channel.clone()),
    ];
    let mut runtimes = [
        RuntimeServiceClient::new(direct_channel),
        RuntimeServiceClient::new(spooling_channel),
        RuntimeServiceClient::new(journal_channel),
        RuntimeServiceClient::new(relay_channel),
    ];
    let image = env.app_ref();
    // A first pull through each crigate verifies and caches the verdict.
    let image_id = images[1]
        .pull_image(pull(&image))
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    images[2].pull_image(pull(&image)).await.unwrap();

    // Each round calls every path once, starting with a different one each time: a
    // call's place in the round (after another path's call, or after its removal)
    // falls on every path alike.
    let mut pulls: [Vec<Duration>; 4] = Default::default();
    for round in 0..calls {
        for path in (0..4).map(|n| (n + round) % 4) {
            let started = Instant::now();
            images[path].pull_image(pull(&image)).await.unwrap();
            pulls[path].push(started.elapsed());
        }
    }

    let sandbox = env.pod_config("bench", "prod").unwrap();
    let pod = env
        .containerd_cri()
        .await
        .unwrap()
        .run_pod(&sandbox)
        .await
        .unwrap();
    // kubelet names the image by the id PullImage returned.
    let minimal =
        |i: usize, path: usize| create_pause(&pod, &sandbox, &format!("c{i}-{path}"), &image_id);
    // Whose CPU a create costs: the two crigates (each serves only its own path's calls),
    // journald (a record from each) and containerd (every path's calls).
    let pids = [
        spooling.pid().as_raw() as u32,
        journal_only.pid().as_raw() as u32,
        journald.pid(),
        env.containerd.pid().unwrap(),
    ];
    let (mut creates, cpu) = cpu_during(&pids, create_each(&mut runtimes, calls, minimal)).await;
    let pod_dir = env.dir().join("kubelet-pod");
    let kubelet_shaped = |i: usize, path: usize| {
        kubelet_create(
            &pod,
            &sandbox,
            &format!("k{i}-{path}"),
            &image_id,
            &image,
            &pod_dir,
        )
        .unwrap()
    };
    let mut kubelet_creates = create_each(&mut runtimes, calls, kubelet_shaped).await;
    // The pieces, directly on containerd: the lookup resolution makes, and one hop.
    let (mut statuses, mut versions) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    for _ in 0..calls {
        let started = Instant::now();
        images[0]
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image_id.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap();
        statuses.push(started.elapsed());
        let started = Instant::now();
        runtimes[0]
            .version(VersionRequest::default())
            .await
            .unwrap();
        versions.push(started.elapsed());
    }
    let spooled: u64 = std::fs::read_dir(env.dir().join("spool"))
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    let recorded = journald
        .wait_for(
            &["SYSLOG_IDENTIFIER=crigate", "CRIGATE_NODE=bench"],
            2 * (3 * calls + 1),
        )
        .unwrap_or_default();
    // The time each decision took before its record was written, as the record says.
    let mut decide_us: Vec<u64> = recorded
        .iter()
        .filter(|r| r["CRIGATE_PHASE"] == "create")
        .filter_map(|r| r["CRIGATE_LATENCY_US"].as_str()?.parse().ok())
        .collect();
    decide_us.sort_unstable();
    let recorded = recorded.len();

    println!("enforcement cost, {calls} calls per path, cached verdict");
    let [direct_pull, spooling_pull, journal_pull, relay_pull] = &mut pulls;
    println!("records to journald and the spool (a node with an aggregator):");
    report("PullImage", &mut direct_pull.clone(), spooling_pull, None);
    report_creates(&mut creates, 1);
    println!("records to journald only (no aggregator configured):");
    report("PullImage", &mut direct_pull.clone(), journal_pull, None);
    report_creates(&mut creates, 2);
    println!("through a byte relay (socat), no crigate: the cost of the hop alone:");
    report("PullImage", direct_pull, relay_pull, None);
    report(
        "CreateContainer",
        &mut creates[0].clone(),
        &mut creates[3],
        None,
    );
    println!("CreateContainer as kubelet sends it (restricted pod: env, mounts, limits, seccomp):");
    for (path, what) in [(1, "journald + spool"), (2, "journald only")] {
        println!("  records to {what}:");
        report_creates(&mut kubelet_creates, path);
    }
    println!("  through a byte relay (socat):");
    report(
        "CreateContainer",
        &mut kubelet_creates[0].clone(),
        &mut kubelet_creates[3],
        None,
    );
    let per = |used: Duration, calls: usize| us(used) / calls as f64;
    println!(
        "CPU per minimal CreateContainer and its removal: crigate with spool {:.0} µs, \
         crigate journald only {:.0} µs, containerd {:.0} µs; journald per record {:.0} µs",
        per(cpu[0], calls),
        per(cpu[1], calls),
        per(cpu[3], 4 * calls),
        per(cpu[2], 2 * calls),
    );
    println!(
        "CreateContainer decision before its record (CRIGATE_LATENCY_US) p50 {} µs",
        decide_us
            .get(decide_us.len() / 2)
            .copied()
            .unwrap_or_default()
    );
    println!(
        "direct ImageStatus by id p50 {:>6.0} µs, direct Version p50 {:>6.0} µs",
        us(p50(&mut statuses)),
        us(p50(&mut versions))
    );
    // The node-side cost of one audit record alone, in this process, on the same journald
    // and disk: what the decision path waits for after deciding.
    let records = calls * 2;
    let journal_sink = || -> Arc<dyn Sink> { Arc::new(JournaldSink::new(journald.socket())) };
    let spool_sink = |name: &str| -> Arc<dyn Sink> {
        let config = SpoolConfig::new(env.dir().join(name), 64 << 20);
        Arc::new(Spool::open(config).unwrap())
    };
    for (what, sinks) in [
        ("journald", vec![journal_sink()]),
        ("spool", vec![spool_sink("spool-alone")]),
        (
            "journald + spool",
            vec![journal_sink(), spool_sink("spool-both")],
        ),
    ] {
        let [p50, p99, durable] = record_cost(sinks, records).await;
        println!(
            "one audit record, {what:<16} written p50 {:>5.0} µs p99 {:>5.0} µs, durable p50 {:>5.0} µs ({records} records)",
            us(p50),
            us(p99),
            us(durable)
        );
    }
    println!(
        "audit records in journald: {recorded} (expected {}); spool: {spooled} bytes",
        2 * (3 * calls + 1)
    );
}
