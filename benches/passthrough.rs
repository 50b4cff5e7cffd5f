//! Passthrough cost, measured against the real containerd in one run:
//!
//! - direct: a CRI client on containerd's socket;
//! - relay: through `socat`, a byte-level unix-socket relay, the cheapest possible hop
//!   and so the floor for any proxy on the same cores;
//! - crigate: through `crigate serve`.
//!
//! Unary calls Version and ListContainers (50 containers) at 1 and 16 concurrent callers
//! sharing one HTTP/2 connection, as kubelet does. Reports p50/p99 latency, calls/s, and
//! the ratios the targets are written in: crigate's added p50 over the relay's added p50
//! (target <= 1.5), crigate's calls/s over the relay's at 16 callers (target >= 0.9), and
//! crigate's RSS idle and under load (targets < 20 MiB and < 40 MiB).
//!
//! Run: `cargo bench --bench passthrough` (root; `integration/setup` installs socat and
//! containerd). `CRIGATE_BENCH_CALLS` scales the number of calls per measurement. The
//! three paths take turns in rounds, so drift in the machine's speed hits them alike.
//! crigate's CPU per call is reported beside socat's, for the same calls, and
//! containerd's per call on each path (what each way of sending a call costs the
//! runtime: crigate re-encodes request headers, socat passes the client's bytes).
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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

use daemon::{Crigate, Options};
use harness::process::{cpu_time, Relay};
use harness::{container_config, cri_channel, Env};

const CONTAINERS: usize = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Version,
    ListContainers,
}

async fn one(client: &mut RuntimeServiceClient<Channel>, call: Call) {
    match call {
        Call::Version => {
            client
                .version(VersionRequest {
                    version: "v1".into(),
                })
                .await
                .unwrap();
        }
        Call::ListContainers => {
            let list = client
                .list_containers(ListContainersRequest { filter: None })
                .await
                .unwrap();
            assert_eq!(list.into_inner().containers.len(), CONTAINERS);
        }
    }
}

/// Calls made on one path in one round: every latency, and the wall time they took.
struct Round {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// A client on `socket`, its connection made and warmed up (with the runtime).
async fn connect(socket: &Path, call: Call) -> RuntimeServiceClient<Channel> {
    let channel = cri_channel(socket).await.unwrap();
    let mut client = RuntimeServiceClient::new(channel);
    for _ in 0..50 {
        one(&mut client, call).await;
    }
    client
}

async fn round(
    client: &RuntimeServiceClient<Channel>,
    call: Call,
    callers: usize,
    calls: usize,
) -> Round {
    let per_caller = (calls / callers).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_caller);
            for _ in 0..per_caller {
                let t = Instant::now();
                one(&mut client, call).await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    Round {
        latencies,
        elapsed: started.elapsed(),
    }
}

/// One path's rounds, summed.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Sample {
    fn add(&mut self, round: Round) {
        self.latencies.extend(round.latencies);
        self.elapsed += round.elapsed;
    }

    fn at(&mut self, q: f64) -> Duration {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        self.latencies[((n as f64 * q) as usize).min(n - 1)]
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// How many times more calls a measurement at 16 callers makes than one at a single
/// caller. 16 callers complete calls about ten times as fast, so at the same count a
/// round would last some 25 ms, in which the callers' start and finish and one stall of
/// the scheduler weigh as much as the path measured.
const CONCURRENT_SCALE: usize = 8;

/// Rounds per measurement: the paths take turns, in a rotating order, so that a machine
/// whose speed drifts during the run slows all three alike. The ratios compare
/// differences of tens of microseconds: with 8 rounds of a quarter of today's calls, six
/// measurements in one run gave 0.85 to 1.61 for Version at 16 callers; with 32 rounds
/// and four times the calls, 0.97 to 1.36.
const ROUNDS: usize = 32;

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and only builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let scale: usize = std::env::var("CRIGATE_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_000);
    let env = Env::start().await.expect("harness");
    let mut options = Options::new(env.dir(), env.containerd.socket(), "");
    options.env.push(("RUST_LOG".into(), "info".into()));
    let crigate = Crigate::start(env.dir(), options).unwrap();
    let relay = Relay::start(env.dir(), env.containerd.socket()).expect("relay");
    let relay_socket = relay.socket.clone();

    // 50 containers in one pod, created (not started): enough for ListContainers to carry
    // a realistic payload.
    let mut cri = env.containerd_cri().await.unwrap();
    let sandbox = env.pod_config("bench", "bench").unwrap();
    cri.pull_image(&env.app_ref()).await.unwrap();
    let pod = cri.run_pod(&sandbox).await.unwrap();
    for i in 0..CONTAINERS {
        cri.runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(container_config(
                    &format!("c{i}"),
                    &env.app_ref(),
                    &["/pause"],
                )),
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .unwrap();
    }

    let runtime_pid = env.containerd.pid().expect("containerd's pid");
    let rss_idle = crigate.rss_bytes();
    let paths: [(&str, PathBuf); 3] = [
        ("direct", env.containerd.socket().to_owned()),
        ("socat relay", relay_socket.clone()),
        ("crigate", crigate.socket.clone()),
    ];
    let rss_peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_idle));
    println!("machine: {} cores, {}", num_cpus(), std::env::consts::ARCH);
    println!("\n| call | callers | path | p50 µs | p99 µs | calls/s |");
    println!("|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    let mut cpu_per_call = Vec::new();
    for call in [Call::Version, Call::ListContainers] {
        let per_call = if call == Call::Version {
            scale
        } else {
            scale / 4
        };
        for callers in [1, 16] {
            let calls = if callers == 1 {
                per_call
            } else {
                per_call * CONCURRENT_SCALE
            };
            let mut clients = Vec::new();
            for (_, socket) in &paths {
                clients.push(connect(socket, call).await);
            }
            let mut samples: [Sample; 3] = Default::default();
            // containerd's CPU on each path's rounds.
            let mut runtime_cpu = [Duration::ZERO; 3];
            // crigate's CPU over all rounds: it idles while the other paths are measured.
            let cpu_before = cpu_time(crigate.pid().as_raw() as u32);
            let relay_cpu_before = relay.cpu_time();
            for r in 0..ROUNDS {
                for i in 0..paths.len() {
                    let path = (i + r) % paths.len();
                    let runtime_before = cpu_time(runtime_pid);
                    let measured = round(&clients[path], call, callers, calls / ROUNDS).await;
                    runtime_cpu[path] += cpu_time(runtime_pid).saturating_sub(runtime_before);
                    if paths[path].0 == "crigate" {
                        rss_peak
                            .fetch_max(crigate.rss_bytes(), std::sync::atomic::Ordering::Relaxed);
                    }
                    samples[path].add(measured);
                }
            }
            let mut p50 = [0.0; 3];
            for (i, (name, _)) in paths.iter().enumerate() {
                let sample = &mut samples[i];
                p50[i] = us(sample.at(0.50));
                println!(
                    "| {call:?} | {callers} | {name} | {:.0} | {:.0} | {:.0} |",
                    p50[i],
                    us(sample.at(0.99)),
                    sample.per_second()
                );
            }
            let cpu = cpu_time(crigate.pid().as_raw() as u32) - cpu_before;
            let relay_cpu = relay.cpu_time().saturating_sub(relay_cpu_before);
            let each = |cpu: Duration, sample: &Sample| {
                cpu.as_secs_f64() * 1e6 / sample.latencies.len() as f64
            };
            cpu_per_call.push((
                call,
                callers,
                each(cpu, &samples[2]),
                each(relay_cpu, &samples[1]),
                [0, 1, 2].map(|path| each(runtime_cpu[path], &samples[path])),
            ));
            let relay_added = p50[1] - p50[0];
            let crigate_added = p50[2] - p50[0];
            ratios.push((
                call,
                callers,
                crigate_added,
                relay_added,
                crigate_added / relay_added.max(1.0),
                samples[2].per_second() / samples[1].per_second(),
            ));
        }
    }
    println!("\n| call | callers | crigate added p50 µs | relay added p50 µs | crigate added / relay added (target <= 1.5) | crigate calls/s / relay calls/s (target >= 0.9 at 16) |");
    println!("|---|---|---|---|---|---|");
    for (call, callers, crigate_added, relay_added, latency, throughput) in &ratios {
        println!(
            "| {call:?} | {callers} | {crigate_added:.0} | {relay_added:.0} | {latency:.2} | {throughput:.2} |"
        );
    }
    println!("\n| call | callers | crigate CPU per call µs | socat CPU per call µs | containerd CPU per call µs: direct / through socat / through crigate |");
    println!("|---|---|---|---|---|");
    for (call, callers, crigate, relay, [direct, via_relay, via_crigate]) in &cpu_per_call {
        println!(
            "| {call:?} | {callers} | {crigate:.1} | {relay:.1} | {direct:.1} / {via_relay:.1} / {via_crigate:.1} |"
        );
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "\ncrigate RSS: idle {:.1} MiB (target < 20), peak under load {:.1} MiB (target < 40)",
        mib(rss_idle),
        mib(rss_peak.load(std::sync::atomic::Ordering::Relaxed))
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
