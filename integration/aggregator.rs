//! The cluster audit pipeline with real processes: `crigate serve` spooling and shipping
//! to `crigate aggregator` over mutual TLS, and `crigate audit query` reading it back.
//!
//! Decisions are made without containerd: with no `[[policies]]`, crigate allows and
//! records every PullImage, then forwards it to a runtime socket that does not exist, so
//! each call returns quickly (UNAVAILABLE) after its record is fsynced in the spool.
//! Every record id the node produced is read from crigate's decision log
//! (`crigate::decision` events) and compared with the ids the aggregator stored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use k8s_cri::v1::PullImageRequest;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_stream::wrappers::ReceiverStream;

use crigate::audit::proto::audit_ingest_client::AuditIngestClient;
use crigate::audit::proto::{AuditRecord, ShipRequest};

use crate::daemon::{crigate_binary, Crigate, Options};
use crate::harness::postgres::Postgres;
use crate::harness::process::free_port;
use crate::harness::{cri::image_spec, cri_channel};

/// Decisions per scenario.
const DECISIONS: usize = 10_000;
/// Concurrent CRI calls while producing decisions.
const CONCURRENCY: usize = 32;
/// Time for the aggregator to hold every record once production is over.
const CONVERGE: Duration = Duration::from_secs(120);
const NODE: &str = "node-1";
const TOKEN: &str = "query-token-0123456789";

/// Certificates for one test: a cluster CA, the aggregator's server certificate, node
/// client certificates, and a second CA nobody trusts.
struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    other_ca: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, ca_pem) = Self::ca("crigate test cluster CA");
        std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
        let (other_ca, _) = Self::ca("some other CA");
        let pki = Self {
            dir: dir.to_owned(),
            ca,
            other_ca,
        };
        pki.leaf("server", &["localhost", "127.0.0.1"], "aggregator", false);
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
        pki
    }

    fn ca(cn: &str) -> (Issuer<'static, KeyPair>, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        (Issuer::new(params, key), cert.pem())
    }

    /// Writes `<name>.pem` and `<name>.key`, signed by the cluster CA (or the other one).
    fn leaf(&self, name: &str, sans: &[&str], cn: &str, other_ca: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let issuer = if other_ca { &self.other_ca } else { &self.ca };
        let cert = params.signed_by(&key, issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A running `crigate aggregator`.
struct Aggregator {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    ingest_port: u16,
    query_port: u16,
    database: PathBuf,
    /// The PostgreSQL connection string, when the aggregator stores there.
    postgres: Option<String>,
}

impl Aggregator {
    fn configure(dir: &Path, pki: &Pki) -> Self {
        Self::configure_with(dir, pki, None)
    }

    fn configure_with(dir: &Path, pki: &Pki, postgres: Option<String>) -> Self {
        let ingest_port = free_port().unwrap();
        let query_port = free_port().unwrap();
        let database = dir.join("db/audit.db");
        let config = dir.join("aggregator.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{ingest_port}\"\nquery_listen = \"127.0.0.1:{query_port}\"\n\
                 cert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n\
                 token_file = \"{}\"\ndatabase = \"{}\"\ndrain_timeout = \"2s\"\n{}",
                pki.path("server.pem").display(),
                pki.path("server.key").display(),
                pki.path("ca.pem").display(),
                pki.path("token").display(),
                database.display(),
                postgres
                    .as_ref()
                    .map(|p| format!("postgres = \"{p}\"\n"))
                    .unwrap_or_default()
            ),
        )
        .unwrap();
        Self {
            child: None,
            config,
            log: dir.join("aggregator.log"),
            ingest_port,
            query_port,
            database,
            postgres,
        }
    }

    fn start(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Starts the process without waiting for it to listen.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(crigate_binary())
            .args(["--log-format", "text", "aggregator", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "crigate=debug,info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the query port accepts connections (storage is open by then).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.query_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aggregator did not start:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "aggregator exited with {status}");
    }

    /// SIGKILL: no drain, in-flight batches and transactions cut off.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The ids stored, read from the database (the aggregator keeps running).
    fn stored_ids(&self) -> Vec<String> {
        if let Some(url) = &self.postgres {
            return pg_ids(url);
        }
        let Ok(conn) = rusqlite::Connection::open(&self.database) else {
            return Vec::new();
        };
        let Ok(mut statement) = conn.prepare("SELECT id FROM records ORDER BY id") else {
            return Vec::new();
        };
        statement
            .query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn count(&self) -> usize {
        if let Some(url) = &self.postgres {
            return pg_ids(url).len();
        }
        let Ok(conn) = rusqlite::Connection::open(&self.database) else {
            return 0;
        };
        conn.query_row("SELECT COUNT(*) FROM records", [], |row| {
            row.get::<_, i64>(0)
        })
        .map(|n| n as usize)
        .unwrap_or(0)
    }

    /// Waits until `count` records are stored.
    fn wait_count(&self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let stored = self.count();
            if stored >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{stored} of {count} records stored after {timeout:?}:\n{}",
                    tail(&self.logs())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn query_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.query_port)
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A `crigate serve` in `dir` shipping to `aggregator`, spooling in `spool`.
fn start_node(dir: &Path, pki: &Pki, aggregator: &Aggregator, spool: &Path) -> Crigate {
    start_node_as(dir, pki, NODE, aggregator.ingest_port, spool)
}

/// A `crigate serve` in `dir` named `node` (with the certificate `<node>.pem`), shipping
/// to the aggregator address `127.0.0.1:port`, spooling in `spool`.
fn start_node_as(dir: &Path, pki: &Pki, node: &str, port: u16, spool: &Path) -> Crigate {
    start_node_with(dir, pki, node, port, spool, "")
}

/// [`start_node_as`] with `more` appended to the config.
fn start_node_with(
    dir: &Path,
    pki: &Pki,
    node: &str,
    port: u16,
    spool: &Path,
    more: &str,
) -> Crigate {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (
        pki.path(&format!("{node}.pem")),
        pki.path(&format!("{node}.key")),
    );
    let extra = format!(
        "[audit]\nnode = \"{node}\"\njournald = false\n\
         aggregator = \"https://127.0.0.1:{port}\"\nserver_name = \"localhost\"\n\
         ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nspool_dir = \"{}\"\n{more}",
        pki.path("ca.pem").display(),
        cert.display(),
        key.display(),
        spool.display()
    );
    // No runtime listens here: each gated call is decided, recorded, then fails fast.
    let options = Options::new(dir, &dir.join("no-runtime.sock"), &extra);
    Crigate::start(dir, options).unwrap()
}

/// Makes `count` PullImage calls through crigate, `CONCURRENCY` at a time, and returns
/// once each has been answered (so its record is in the spool).
async fn decide(socket: &Path, tag: &str, count: usize) {
    let channel = cri_channel(socket).await.unwrap();
    let client = k8s_cri::v1::image_service_client::ImageServiceClient::new(channel);
    futures_util::stream::iter(0..count)
        .map(|n| {
            let mut client = client.clone();
            let image = format!("127.0.0.1:5000/{tag}:{n}");
            async move {
                let request = PullImageRequest {
                    image: Some(image_spec(&image)),
                    ..Default::default()
                };
                // The runtime is absent: an error, after the decision was recorded.
                let status = client.pull_image(request).await.unwrap_err();
                assert_ne!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<()>()
        .await;
}

/// The record ids in crigate's decision log.
fn logged_ids(logs: &str) -> Vec<String> {
    logs.lines()
        .filter(|line| line.contains("crigate::decision"))
        .filter_map(|line| {
            let at = line.find(" id=")? + 4;
            line[at..].split_whitespace().next().map(str::to_owned)
        })
        .collect()
}

/// The node's own metrics, from its `[metrics] listen` port.
async fn node_metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every id the node produced is stored, once, and nothing else is.
fn assert_exactly_once(produced: &[String], aggregator: &Aggregator) {
    let produced_set: BTreeSet<&String> = produced.iter().collect();
    assert_eq!(produced_set.len(), produced.len(), "ids repeat in the log");
    let stored = aggregator.stored_ids();
    let stored_set: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(stored_set.len(), stored.len(), "an id is stored twice");
    let missing: Vec<_> = produced_set.difference(&stored_set).take(5).collect();
    let extra: Vec<_> = stored_set.difference(&produced_set).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
}

/// `crigate audit query` with `args`; its exit code, stdout and stderr.
fn query(aggregator: &Aggregator, pki: &Pki, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(crigate_binary())
        .args(["audit", "query", "--aggregator"])
        .arg(aggregator.query_url())
        .arg("--ca-file")
        .arg(pki.path("ca.pem"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("crigate-agg-{name}-"))
        .tempdir()
        .unwrap()
}

/// A spool that cannot be opened at start (its directory unusable, as on a read-only or
/// full `/var`) stops no calls: the daemon serves, each record fails the spool, and
/// `on_record_failure` decides, as for a spool that fails later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_that_cannot_be_opened_stops_no_calls_unless_records_must_be_written() {
    let tmp = temp_dir("unopened");
    let pki = Pki::new(&tmp.path().join("pki"));
    // A file where the spool's directory should be.
    let spool = tmp.path().join("spool");
    std::fs::write(&spool, b"not a directory").unwrap();
    let port = free_port().unwrap();
    let pull = |socket: PathBuf| async move {
        let channel = cri_channel(&socket).await.unwrap();
        let mut client = k8s_cri::v1::image_service_client::ImageServiceClient::new(channel);
        client
            .pull_image(PullImageRequest {
                image: Some(image_spec("127.0.0.1:5000/app:v1")),
                ..Default::default()
            })
            .await
            .unwrap_err()
    };
    // A policy that allows the image without asking a registry (a call naming no
    // namespace is the `*` policy's): without `[[policies]]`, on_record_failure does
    // not apply.
    let key = tmp.path().join("release.pub");
    std::fs::write(&key, crate::signer::KeySigner::generate().public_pem()).unwrap();
    let policy = format!(
        "\n[verifiers.release]\nkind = \"cosign\"\nkeys = [\"{}\"]\nrequire_tlog = false\n\n\
         [[policies]]\nname = \"all\"\nnamespaces = [\"*\"]\nverifiers = [\"release\"]\n\
         allowlist = [{{ pattern = \"127.0.0.1:5000/app*\" }}]\n",
        key.display()
    );
    for (name, record_failure, refused) in [("allowing", "allow", false), ("denying", "deny", true)]
    {
        let more = format!("on_record_failure = \"{record_failure}\"\n{policy}");
        let node = start_node_with(&tmp.path().join(name), &pki, NODE, port, &spool, &more);
        node.wait_log("cannot open the audit spool", Duration::from_secs(5))
            .unwrap();
        let status = pull(node.socket.clone()).await;
        if refused {
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
            assert!(
                status.message().contains("could not be written")
                    && status.message().contains("could not be opened at start"),
                "{status:?}"
            );
        } else {
            // Decided and sent on: the runtime, absent here, is what fails it.
            assert_ne!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_restart_mid_stream_stores_every_record_once() {
    let tmp = temp_dir("restart");
    let pki = Pki::new(&tmp.path().join("pki"));
    pki.leaf("node-1", &[NODE], NODE, false);
    let aggregator = Aggregator::configure(tmp.path(), &pki);
    restart_mid_stream(tmp.path(), &pki, aggregator, DECISIONS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_on_postgresql_stores_every_record_once() {
    let tmp = temp_dir("postgres");
    let pki = Pki::new(&tmp.path().join("pki"));
    pki.leaf("node-1", &[NODE], NODE, false);
    let postgres = Postgres::start(tmp.path()).unwrap();
    let aggregator = Aggregator::configure_with(tmp.path(), &pki, Some(postgres.url()));
    restart_mid_stream(tmp.path(), &pki, aggregator, DECISIONS).await;
}

/// Makes `decisions` decisions while the aggregator is stopped and restarted, and
/// checks that each is stored once and listed once by `crigate audit query`.
async fn restart_mid_stream(tmp: &Path, pki: &Pki, mut aggregator: Aggregator, decisions: usize) {
    let began = Instant::now();
    aggregator.start();
    let spool = tmp.join("spool");
    let node = start_node(&tmp.join("node"), pki, &aggregator, &spool);

    let socket = node.socket.clone();
    let producing = tokio::spawn(async move { decide(&socket, "restart", decisions).await });
    // Stop the aggregator once shipping is under way, keep it down while decisions
    // pile up in the spool, then start it again on the same database.
    tokio::task::block_in_place(|| aggregator.wait_count(decisions / 5, CONVERGE)).unwrap();
    aggregator.stop();
    let at_stop = aggregator.count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    aggregator.start();
    producing.await.unwrap();
    let produced_in = began.elapsed();
    tokio::task::block_in_place(|| aggregator.wait_count(decisions, CONVERGE)).unwrap();
    assert!(
        at_stop < decisions,
        "the aggregator stopped after the stream ended"
    );

    let produced = logged_ids(&node.logs());
    assert_eq!(produced.len(), decisions);
    assert_exactly_once(&produced, &aggregator);

    // `crigate audit query` follows every page and returns each record once.
    let token = pki.path("token");
    let (code, stdout, stderr) = tokio::task::block_in_place(|| {
        query(
            &aggregator,
            pki,
            &[
                "--token-file",
                token.to_str().unwrap(),
                "--node",
                NODE,
                "--output",
                "json",
            ],
        )
    });
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["version"], 1);
    let listed: Vec<String> = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = produced.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    // One record found by the id a denial names, shown in the table with that id.
    let wanted = &produced[decisions / 2];
    let (code, stdout, stderr) = tokio::task::block_in_place(|| {
        query(
            &aggregator,
            pki,
            &["--token-file", token.to_str().unwrap(), "--id", wanted],
        )
    });
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows[0].ends_with(" ID"), "{stdout}");
    assert!(rows[1].ends_with(wanted.as_str()), "{stdout}");
    eprintln!(
        "{decisions} decisions in {produced_in:?}; all stored after {:?}; {at_stop} stored when the aggregator stopped",
        began.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_stream_resumes_from_its_spool() {
    let tmp = temp_dir("kill");
    let pki = Pki::new(&tmp.path().join("pki"));
    pki.leaf("node-1", &[NODE], NODE, false);
    let aggregator = Aggregator::configure(tmp.path(), &pki);
    node_killed_mid_stream(tmp.path(), &pki, aggregator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_mid_stream_on_postgresql_resumes_from_its_spool() {
    let tmp = temp_dir("kill-postgres");
    let pki = Pki::new(&tmp.path().join("pki"));
    pki.leaf("node-1", &[NODE], NODE, false);
    let postgres = Postgres::start(tmp.path()).unwrap();
    let aggregator = Aggregator::configure_with(tmp.path(), &pki, Some(postgres.url()));
    node_killed_mid_stream(tmp.path(), &pki, aggregator).await;
}

/// A node renamed with records still in its spool: the records that name its old name,
/// which the aggregator would refuse for good, are passed over and counted as dropped,
/// and those made under its new name are shipped; nothing holds shipping back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_a_renamed_node_spooled_under_its_old_name_hold_nothing_back() {
    const RENAMED: &str = "node-renamed";
    const EACH: usize = 50;
    let tmp = temp_dir("renamed");
    let pki = Pki::new(&tmp.path().join("pki"));
    pki.leaf(NODE, &[NODE], NODE, false);
    pki.leaf(RENAMED, &[RENAMED], RENAMED, false);
    let mut aggregator = Aggregator::configure(tmp.path(), &pki);
    let spool = tmp.path().join("spool");
    // A backlog under the old name: the aggregator is not up yet.
    let mut before = start_node(&tmp.path().join("node-a"), &pki, &aggregator, &spool);
    decide(&before.socket, "old-name", EACH).await;
    before.signal(Signal::SIGTERM);
    before.wait_exit(Duration::from_secs(10)).unwrap();

    let metrics_port = free_port().unwrap();
    let after = start_node_with(
        &tmp.path().join("node-b"),
        &pki,
        RENAMED,
        aggregator.ingest_port,
        &spool,
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
    );
    decide(&after.socket, "new-name", EACH).await;
    aggregator.start();
    tokio::task::block_in_place(|| aggregator.wait_count(EACH, CONVERGE)).unwrap();
    let produced = logged_ids(&after.logs());
    assert_eq!(produced.len(), EACH);
    assert_exactly_once(&produced, &aggregator);
    // The records dropped are counted once the cursor is past them, which is when the
    // node hears that the aggregator stored what follows them: a moment after it did.
    let dropped = format!("crigate_spool_dropped_records_total {EACH}");
    let deadline = Instant::now() + CONVERGE;
    loop {
        let metrics = node_metrics(metrics_port).await;
        if metrics.lines().any(|line| line == dropped) {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        after.logs().contains("name another node than this one"),
        "{}",
        after.logs()
    );
}

/// Decides half of the decisions while the aggregator is down, SIGKILLs the node while
/// it ships that backlog, decides the other half on a restarted node sharing the spool,
/// and checks that each decision is stored once.
async fn node_killed_mid_stream(tmp: &Path, pki: &Pki, mut aggregator: Aggregator) {
    let began = Instant::now();
    aggregator.start();
    let spool = tmp.join("spool");
    let half = DECISIONS / 2;

    // A backlog: the aggregator is down while the first half is decided.
    aggregator.stop();
    let metrics_port = free_port().unwrap();
    let mut first = start_node_with(
        &tmp.join("node-a"),
        pki,
        NODE,
        aggregator.ingest_port,
        &spool,
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
    );
    decide(&first.socket, "kill-a", half).await;
    // The node's own metrics show the backlog waiting in its spool.
    let metrics = node_metrics(metrics_port).await;
    let value = |series: &str| {
        metrics.lines().find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .parse::<u64>()
                .ok()
        })
    };
    assert!(
        value("crigate_spool_depth_bytes").is_some_and(|depth| depth > 0),
        "{metrics}"
    );
    assert_eq!(
        value("crigate_spool_dropped_records_total"),
        Some(0),
        "{metrics}"
    );
    assert_eq!(
        value("crigate_decisions_total{decision=\"allow\",namespace=\"\"}"),
        Some(half as u64),
        "{metrics}"
    );
    aggregator.start();
    // SIGKILL the node while the backlog is being shipped.
    let at_kill = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let stored = aggregator.count();
            if stored > 0 {
                return stored;
            }
            assert!(Instant::now() < deadline, "nothing shipped");
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(
        at_kill < half,
        "the stream was over before the kill ({at_kill})"
    );

    let second = start_node(&tmp.join("node-b"), pki, &aggregator, &spool);
    decide(&second.socket, "kill-b", half).await;
    tokio::task::block_in_place(|| aggregator.wait_count(DECISIONS, CONVERGE)).unwrap();
    let mut produced = logged_ids(&first.logs());
    produced.extend(logged_ids(&second.logs()));
    assert_eq!(produced.len(), DECISIONS);
    assert_exactly_once(&produced, &aggregator);
    eprintln!(
        "{DECISIONS} decisions, node killed with {at_kill} of {half} stored; all stored once after {:?}",
        began.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_killed_mid_stream_on_postgresql_stores_every_record_once() {
    let began = Instant::now();
    let tmp = temp_dir("replicas");
    let pki = Pki::new(&tmp.path().join("pki"));
    let nodes = [NODE, "node-2"];
    for node in nodes {
        pki.leaf(node, &[node], node, false);
    }
    let postgres = Postgres::start(tmp.path()).unwrap();
    let mut replicas = [tmp.path().join("replica-a"), tmp.path().join("replica-b")].map(|dir| {
        std::fs::create_dir_all(&dir).unwrap();
        Aggregator::configure_with(&dir, &pki, Some(postgres.url()))
    });
    // Both replicas start together on the empty database, as a Deployment's do: one
    // creates the schema, the other waits for it.
    for replica in &mut replicas {
        replica.spawn();
    }
    for replica in &replicas {
        replica.wait_ready();
    }
    let service = Service::start(replicas.each_ref().map(|r| r.ingest_port)).await;

    // Two nodes behind the one address; the Service spreads their streams over both
    // replicas, which insert into the same tables concurrently.
    let per_node = DECISIONS / nodes.len();
    let mut producing = Vec::new();
    let mut daemons = Vec::new();
    for node in nodes {
        let dir = tmp.path().join(node);
        let daemon = start_node_as(&dir, &pki, node, service.port, &dir.join("spool"));
        let socket = daemon.socket.clone();
        producing.push(tokio::spawn(async move {
            decide(&socket, node, per_node).await;
        }));
        daemons.push(daemon);
    }

    // Once shipping is under way, SIGKILL the replica carrying the most streams.
    tokio::task::block_in_place(|| replicas[0].wait_count(DECISIONS / 5, CONVERGE)).unwrap();
    let open = service.open();
    let victim = usize::from(open[1] > open[0]);
    let survivor = 1 - victim;
    assert!(open[victim] > 0, "no stream through the Service: {open:?}");
    let relayed_before = service.relayed()[survivor];
    replicas[victim].kill();
    let at_kill = replicas[survivor].count();
    let still_deciding = producing.iter().any(|task| !task.is_finished());
    assert!(
        at_kill < DECISIONS,
        "the stream was over before the kill ({at_kill})"
    );

    for task in producing {
        task.await.unwrap();
    }
    tokio::task::block_in_place(|| replicas[survivor].wait_count(DECISIONS, CONVERGE)).unwrap();
    // The streams cut off by the kill came back through the Service, to the survivor.
    assert!(
        service.relayed()[survivor] > relayed_before,
        "no stream failed over: {:?}",
        service.relayed()
    );
    let mut produced = Vec::new();
    for daemon in &daemons {
        let ids = logged_ids(&daemon.logs());
        assert_eq!(ids.len(), per_node);
        produced.extend(ids);
    }
    assert_exactly_once(&produced, &replicas[survivor]);
    eprintln!(
        "{DECISIONS} decisions from {} nodes; replica {victim} killed with {at_kill} stored \
         (nodes still deciding: {still_deciding}, streams open {open:?}); \
         all stored once after {:?}",
        nodes.len(),
        began.elapsed()
    );
}

/// Stands in for the Kubernetes Service in front of the aggregator replicas: a TCP relay
/// that sends each new connection to the next replica in turn, skipping one that refuses
/// connections (as a Service stops routing to an endpoint that is gone). Bytes are
/// relayed untouched: TLS runs end to end between node and replica.
struct Service {
    port: u16,
    /// Per replica: connections relayed so far, and those open now.
    relayed: Arc<[AtomicUsize; 2]>,
    open: Arc<[AtomicUsize; 2]>,
    accept: tokio::task::JoinHandle<()>,
}

impl Service {
    async fn start(replicas: [u16; 2]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relayed: Arc<[AtomicUsize; 2]> = Arc::default();
        let open: Arc<[AtomicUsize; 2]> = Arc::default();
        let (relayed_, open_) = (Arc::clone(&relayed), Arc::clone(&open));
        let accept = tokio::spawn(async move {
            let mut next = 0;
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let first = next;
                next = (next + 1) % replicas.len();
                let (relayed, open) = (Arc::clone(&relayed_), Arc::clone(&open_));
                tokio::spawn(async move {
                    for n in (0..replicas.len()).map(|i| (first + i) % replicas.len()) {
                        let Ok(mut upstream) =
                            tokio::net::TcpStream::connect(("127.0.0.1", replicas[n])).await
                        else {
                            continue;
                        };
                        relayed[n].fetch_add(1, Ordering::SeqCst);
                        open[n].fetch_add(1, Ordering::SeqCst);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        open[n].fetch_sub(1, Ordering::SeqCst);
                        return;
                    }
                });
            }
        });
        Self {
            port,
            relayed,
            open,
            accept,
        }
    }

    fn relayed(&self) -> [usize; 2] {
        self.relayed.each_ref().map(|n| n.load(Ordering::SeqCst))
    }

    fn open(&self) -> [usize; 2] {
        self.open.each_ref().map(|n| n.load(Ordering::SeqCst))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Opens an ingest stream as a client with `identity` (certificate and key), sends
/// `records`, and returns the first answer's error, if any.
async fn ship_as(
    aggregator: &Aggregator,
    pki: &Pki,
    identity: Option<(&Path, &Path)>,
    records: Vec<AuditRecord>,
) -> anyhow::Result<()> {
    let mut client = ingest_client(aggregator, pki, identity).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(ShipRequest {
        batch: 1,
        records,
        spool_dropped_records: 3,
        spool_depth_bytes: 1024,
    })
    .await?;
    let mut answers = client.ship(ReceiverStream::new(rx)).await?.into_inner();
    match answers.message().await? {
        Some(answer) if answer.batch == 1 => Ok(()),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// A client of the aggregator's ingest port, with `identity` as its certificate.
async fn ingest_client(
    aggregator: &Aggregator,
    pki: &Pki,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<AuditIngestClient<tonic::transport::Channel>> {
    let config = crigate::audit::tls::client_config(&pki.path("ca.pem"), identity, &[b"h2"])?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let port = aggregator.ingest_port;
    let connector = tower::service_fn(move |_: http::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .context("connect")?;
    Ok(AuditIngestClient::new(channel))
}

/// The PostgreSQL store sends a batch as one statement: a record repeated within the
/// batch, or a batch delivered again, is stored once and reported new once; a
/// namespace's time window reads back exactly its records; and retention deletes by
/// the time records arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_postgresql_store_reports_each_record_new_once() {
    use crigate::aggregator::storage::{postgres, Query};
    let tmp = temp_dir("postgres-store");
    let server = Postgres::start(tmp.path()).unwrap();
    let store = postgres::Store::connect(&crigate::registry::Secret::new(server.url()), None)
        .await
        .unwrap();
    let records: Vec<AuditRecord> = (0..10)
        .map(|n| AuditRecord {
            time_unix_nanos: 1000 + n,
            ..record(NODE)
        })
        .collect();
    let (a, b) = (records[0].clone(), records[1].clone());
    let batch = std::sync::Arc::new(vec![a.clone(), b.clone(), a.clone()]);
    assert_eq!(
        store.insert(batch.clone()).await.unwrap(),
        vec![true, true, false]
    );
    assert_eq!(store.insert(batch).await.unwrap(), vec![false; 3]);
    let all = std::sync::Arc::new(records.clone());
    let new = store.insert(all).await.unwrap();
    assert_eq!(new, [vec![false; 2], vec![true; 8]].concat());
    let mut ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    assert_eq!(pg_ids(&server.url()), ids);

    let window = store
        .query(Query {
            namespace: Some("prod".to_owned()),
            since_unix_nanos: Some(1003),
            until_unix_nanos: Some(1006),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let times: Vec<i64> = window.records.iter().map(|r| r.time_unix_nanos).collect();
    assert_eq!(times, vec![1003, 1004, 1005]);

    // Another node's record under `a`'s id is that node's own: stored, and met once in
    // pages of one.
    let taken = AuditRecord {
        node: "node-2".to_owned(),
        ..a.clone()
    };
    assert_eq!(
        store
            .insert(std::sync::Arc::new(vec![taken]))
            .await
            .unwrap(),
        [true]
    );
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .query(Query {
                limit: 1,
                after_id: after.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        seen.extend(page.records.iter().map(|r| (r.id.clone(), r.node.clone())));
        match page.next_after_id {
            Some(token) => after = Some(token),
            None => break,
        }
    }
    assert_eq!(seen.len(), 11, "{seen:?}");
    assert!(seen.contains(&(a.id.clone(), NODE.to_owned())), "{seen:?}");
    assert!(
        seen.contains(&(a.id.clone(), "node-2".to_owned())),
        "{seen:?}"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    // Retention follows when the records arrived, not the node's clock (here 1970).
    let now = crigate::audit::now_unix_nanos();
    let hour = 3_600_000_000_000;
    assert_eq!(store.delete_before(now - hour).await.unwrap(), 0);
    assert_eq!(pg_ids(&server.url()).len(), 11);
    assert_eq!(store.delete_before(now + hour).await.unwrap(), 11);
    assert!(pg_ids(&server.url()).is_empty());
}

/// A node has one ingest stream at a time: a newer one ends the older (ABORTED), so a
/// node that opens streams without end holds one, and the newer one ships as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_newer_ingest_stream_ends_its_older_one() {
    let tmp = temp_dir("streams");
    let pki = Pki::new(&tmp.path().join("pki"));
    let (cert, key) = pki.leaf("node-1", &[NODE], "ignored-cn", false);
    let mut aggregator = Aggregator::configure(tmp.path(), &pki);
    aggregator.start();
    let mut older = ingest_client(&aggregator, &pki, Some((&cert, &key)))
        .await
        .unwrap();
    let (_older_batches, rx) = tokio::sync::mpsc::channel::<ShipRequest>(1);
    let mut older_answers = older
        .ship(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    ship_as(&aggregator, &pki, Some((&cert, &key)), vec![record(NODE)])
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), older_answers.message())
        .await
        .expect("the older stream is ended")
        .unwrap_err();
    assert_eq!(ended.code(), tonic::Code::Aborted, "{ended:?}");
    assert_eq!(aggregator.count(), 1);
}

fn record(node: &str) -> AuditRecord {
    AuditRecord {
        id: crigate::audit::new_id(),
        node: node.to_owned(),
        namespace: "prod".to_owned(),
        image: "registry.example/app:v1".to_owned(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_refuses_unauthenticated_nodes_and_queries() {
    let tmp = temp_dir("refuse");
    let pki = Pki::new(&tmp.path().join("pki"));
    let good = pki.leaf("node-1", &[NODE], "ignored-cn", false);
    let cn_only = pki.leaf("cn-node", &[], "node-cn", false);
    let foreign = pki.leaf("foreign", &[NODE], NODE, true);
    let mut aggregator = Aggregator::configure(tmp.path(), &pki);
    aggregator.start();
    let as_path = |(c, k): &(PathBuf, PathBuf)| (c.clone(), k.clone());
    let (good_cert, good_key) = as_path(&good);

    // The node's own records are stored.
    ship_as(
        &aggregator,
        &pki,
        Some((&good_cert, &good_key)),
        vec![record(NODE)],
    )
    .await
    .unwrap();
    // With no DNS SAN, the CN names the node.
    ship_as(
        &aggregator,
        &pki,
        Some((&cn_only.0, &cn_only.1)),
        vec![record("node-cn")],
    )
    .await
    .unwrap();
    assert_eq!(aggregator.count(), 2);

    // No client certificate: the handshake fails.
    let error = ship_as(&aggregator, &pki, None, vec![record(NODE)])
        .await
        .unwrap_err();
    eprintln!("no client certificate: {error:#}");
    // A certificate from a CA the aggregator does not trust.
    let error = ship_as(
        &aggregator,
        &pki,
        Some((&foreign.0, &foreign.1)),
        vec![record(NODE)],
    )
    .await
    .unwrap_err();
    eprintln!("foreign CA: {error:#}");
    // A record naming another node than the certificate: PERMISSION_DENIED.
    let error = ship_as(
        &aggregator,
        &pki,
        Some((&good_cert, &good_key)),
        vec![record(NODE), record("node-2")],
    )
    .await
    .unwrap_err();
    let status = error
        .downcast_ref::<tonic::Status>()
        .expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(aggregator.count(), 2, "a refused batch was stored");
    // A record larger than a node's spool holds: INVALID_ARGUMENT, nothing stored.
    let mut oversized = record(NODE);
    oversized.image = "x".repeat(crigate::audit::spool::MAX_RECORD_BYTES);
    let error = ship_as(
        &aggregator,
        &pki,
        Some((&good_cert, &good_key)),
        vec![record(NODE), oversized],
    )
    .await
    .unwrap_err();
    let status = error
        .downcast_ref::<tonic::Status>()
        .expect("a gRPC status");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("limit of a node's spool"),
        "{status:?}"
    );
    assert_eq!(aggregator.count(), 2, "a refused batch was stored");
    // An id in another spelling than a node writes (uppercase, braces, no hyphens) would
    // sort out of time order, and store one record twice: INVALID_ARGUMENT.
    let canonical = record(NODE);
    let spellings = [
        canonical.id.to_uppercase(),
        format!("{{{}}}", canonical.id),
        canonical.id.replace('-', ""),
    ];
    for id in spellings {
        let error = ship_as(
            &aggregator,
            &pki,
            Some((&good_cert, &good_key)),
            vec![AuditRecord {
                id: id.clone(),
                ..canonical.clone()
            }],
        )
        .await
        .unwrap_err();
        let status = error
            .downcast_ref::<tonic::Status>()
            .expect("a gRPC status");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{id}: {status:?}"
        );
    }
    assert_eq!(aggregator.count(), 2, "a refused batch was stored");
    let logs = aggregator.logs();
    assert!(
        logs.contains("refused a record naming another node"),
        "{logs}"
    );
    assert!(
        logs.matches("TLS handshake failed").count() >= 2,
        "{}",
        tail(&logs)
    );

    // Queries: no token, a wrong token, the right one.
    let (code, _, stderr) = tokio::task::block_in_place(|| query(&aggregator, &pki, &[]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--token-file"), "{stderr}");
    let wrong = tmp.path().join("wrong-token");
    std::fs::write(&wrong, "query-token-0123456788").unwrap();
    let (code, _, stderr) = tokio::task::block_in_place(|| {
        query(
            &aggregator,
            &pki,
            &["--token-file", wrong.to_str().unwrap()],
        )
    });
    assert_eq!(code, 2, "{stderr}");
    let token = pki.path("token");
    let (code, stdout, stderr) = tokio::task::block_in_place(|| {
        query(
            &aggregator,
            &pki,
            &["--token-file", token.to_str().unwrap(), "--node", NODE],
        )
    });
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}"); // header and one record

    // Metrics count what was stored and refused, behind the same token.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("{}/metrics", aggregator.query_url());
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let metrics = http
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "crigate_aggregator_records_total{result=\"stored\"} 2",
        "crigate_aggregator_batches_refused_total{reason=\"node_mismatch\"} 1",
        "crigate_aggregator_node_last_seen_timestamp_seconds{node=\"node-cn\"}",
        "crigate_spool_dropped_records_total{node=\"node-cn\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
}

#[test]
fn aggregator_with_an_invalid_config_exits_78() {
    let tmp = temp_dir("config");
    let config = tmp.path().join("aggregator.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\nlisen = 1\n").unwrap();
    let status = Command::new(crigate_binary())
        .args(["aggregator", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(78));
    // Files the config names that cannot be used are configuration errors too.
    std::fs::write(
        &config,
        "cert_file = \"/nonexistent.pem\"\nkey_file = \"/nonexistent.key\"\n\
         client_ca_file = \"/nonexistent-ca.pem\"\ntoken_file = \"/nonexistent\"\n\
         listen = \"127.0.0.1:0\"\nquery_listen = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let status = Command::new(crigate_binary())
        .args(["aggregator", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(78));
}

/// The ids stored in PostgreSQL, read on a thread of its own (callers block).
/// A CRI caller can put a NUL in the strings a record carries (a namespace, an image).
/// Both stores keep such a record, byte for byte, and find it by those strings: a batch
/// refused for it would be sent again and again, and hold back every record after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_callers_strings_is_stored_and_found_by_either_store() {
    use crigate::aggregator::storage::{postgres, sqlite, Query, Storage};
    let tmp = temp_dir("nul-strings");
    let server = Postgres::start(tmp.path()).unwrap();
    let stores = [
        Storage::Sqlite(sqlite::Store::open(&tmp.path().join("records.db")).unwrap()),
        Storage::Postgres(
            postgres::Store::connect(&crigate::registry::Secret::new(server.url()), None)
                .await
                .unwrap(),
        ),
    ];
    for store in stores {
        let odd = AuditRecord {
            namespace: "prod\0x".to_owned(),
            image: "registry.example/app\0:v1".to_owned(),
            subject: "registry.example/app\0@sha256:00".to_owned(),
            ..record(NODE)
        };
        let plain = record(NODE);
        let batch = std::sync::Arc::new(vec![odd.clone(), plain.clone()]);
        assert_eq!(store.insert(batch).await.unwrap(), vec![true, true]);
        let found = store
            .query(Query {
                namespace: Some(odd.namespace.clone()),
                image: Some("app\0".to_owned()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(found.records, vec![odd.clone()]);
        let plain_found = store
            .query(Query {
                namespace: Some("prod".to_owned()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(plain_found.records, vec![plain]);
    }
}

fn pg_ids(url: &str) -> Vec<String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let Ok((client, connection)) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            else {
                return Vec::new();
            };
            tokio::spawn(connection);
            client
                .query("SELECT id FROM records ORDER BY id", &[])
                .await
                .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
                .unwrap_or_default()
        })
    })
    .join()
    .unwrap()
}

/// Stores one new record through `store`, checking it is new; the record.
async fn stores_a_record(store: &crigate::aggregator::storage::postgres::Store) -> AuditRecord {
    let stored = record(NODE);
    assert_eq!(
        store
            .insert(std::sync::Arc::new(vec![stored.clone()]))
            .await
            .unwrap(),
        vec![true]
    );
    stored
}

/// A temporary directory named after `name`, certificates in it, and the path of
/// their CA bundle as a connection string names it.
fn tls_test_dir(name: &str) -> (tempfile::TempDir, Pki, String) {
    let tmp = temp_dir(name);
    let pki = Pki::new(&tmp.path().join("pki"));
    let ca = pki.path("ca.pem").display().to_string();
    (tmp, pki, ca)
}

/// A PostgreSQL server in `dir` taking TCP clients over TLS only, with a certificate
/// from `pki`'s CA for `db.example`: not the name of the loopback address it is reached at.
fn start_elsewhere(dir: &Path, pki: &Pki) -> Postgres {
    pki.leaf("elsewhere", &["db.example"], "db.example", false);
    Postgres::start_tls(
        &dir.join("elsewhere"),
        &pki.path("elsewhere.pem"),
        &pki.path("elsewhere.key"),
    )
    .unwrap()
}

/// With `sslmode=require` the store's connections are TLS, and the server must prove
/// the name connected to with a certificate from the configured CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_over_tls_verifies_the_server() {
    use crigate::aggregator::storage::postgres::Store;
    use crigate::aggregator::storage::Error as StorageError;
    use crigate::registry::Secret;
    let tmp = temp_dir("postgres-tls");
    let pki = Pki::new(&tmp.path().join("pki"));
    let server = Postgres::start_tls(
        &tmp.path().join("trusted"),
        &pki.path("server.pem"),
        &pki.path("server.key"),
    )
    .unwrap();
    let url = Secret::new(server.tls_url_for("postgres"));
    let ca = pki.path("ca.pem");
    // Why the store cannot connect with `url` and `ca_file`.
    async fn refused(url: &str, ca_file: Option<&Path>) -> StorageError {
        Store::connect(&Secret::new(url.to_owned()), ca_file)
            .await
            .err()
            .unwrap()
    }
    // The server refuses TCP connections without TLS, so a store that connects at all
    // connected over TLS.
    let plain = refused(
        &url.expose().replace("sslmode=require", "sslmode=disable"),
        None,
    )
    .await;
    assert!(format!("{plain:?}").contains("no encryption"), "{plain:?}");

    let store = Store::connect(&url, Some(&ca)).await.unwrap();
    let stored = stores_a_record(&store).await;
    assert_eq!(pg_ids(&server.url()), vec![stored.id]);

    // A server certificate from a CA that is not the configured one, or not in the
    // system's roots when none is configured: refused.
    let another_ca = Pki::new(&tmp.path().join("another-pki")).path("ca.pem");
    for ca_file in [Some(another_ca.as_path()), None] {
        let untrusted = refused(url.expose(), ca_file).await;
        assert!(
            format!("{untrusted:?}").contains("InvalidCertificate"),
            "{ca_file:?}: {untrusted:?}"
        );
    }

    // A certificate from the right CA for another name.
    let elsewhere = start_elsewhere(tmp.path(), &pki);
    let wrong_name = refused(&elsewhere.tls_url_for("postgres"), Some(&ca)).await;
    assert!(
        format!("{wrong_name:?}").contains("NotValidForName"),
        "{wrong_name:?}"
    );

    // A server that offers no TLS.
    let plain_server =
        Postgres::start_with(&tmp.path().join("plain"), "-c listen_addresses=127.0.0.1").unwrap();
    let no_tls = refused(&plain_server.tls_url_for("postgres"), Some(&ca)).await;
    assert!(
        format!("{no_tls:?}").contains("server does not support TLS"),
        "{no_tls:?}"
    );

    // A CA file without sslmode=require would not be used: a configuration error.
    let unused = refused(&server.url(), Some(&ca)).await;
    assert!(unused.to_string().contains("sslmode=require"), "{unused}");
}

/// libpq's own TLS keys, as operators copy connection strings from `psql`: `verify-full`
/// and `verify-ca` with the CA bundle in `sslrootcert`, in the keyword form and the URI
/// form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_connection_strings_take_libpqs_tls_keys() {
    use crigate::aggregator::storage::postgres::Store;
    use crigate::aggregator::storage::Error as StorageError;
    use crigate::registry::Secret;
    let (tmp, pki, ca) = tls_test_dir("postgres-libpq-tls");
    let server = Postgres::start_tls(
        &tmp.path().join("trusted"),
        &pki.path("server.pem"),
        &pki.path("server.key"),
    )
    .unwrap();
    // A certificate from the right CA, for a name that is not the host connected to.
    let elsewhere = start_elsewhere(tmp.path(), &pki);
    let another_ca = Pki::new(&tmp.path().join("another-pki"))
        .path("ca.pem")
        .display()
        .to_string();
    async fn connect(url: String, ca_file: Option<&Path>) -> Result<Store, StorageError> {
        Store::connect(&Secret::new(url), ca_file).await
    }
    // Why the store cannot connect with `url` and `ca_file`.
    async fn refused(url: String, ca_file: Option<&Path>) -> String {
        format!("{:?}", connect(url, ca_file).await.err().unwrap())
    }
    // Both servers accept TCP clients over TLS only: a store that connects is on TLS.
    let with = |server: &Postgres, tls: &str| {
        server
            .tls_url_for("postgres")
            .replace("sslmode=require", tls)
    };

    connect(
        with(&server, &format!("sslmode=verify-full sslrootcert='{ca}'")),
        None,
    )
    .await
    .unwrap();
    let port = with(&server, "")
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="))
        .unwrap()
        .to_owned();
    let uri = format!(
        "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.replace('/', "%2F")
    );
    connect(uri, None).await.unwrap();

    // verify-ca takes the right CA's certificate for another name; verify-full does not.
    let verify_ca = |root: &str| with(&elsewhere, &format!("sslmode=verify-ca sslrootcert={root}"));
    connect(verify_ca(&ca), None).await.unwrap();
    let wrong_name = refused(
        with(&elsewhere, &format!("sslmode=verify-full sslrootcert={ca}")),
        None,
    )
    .await;
    assert!(wrong_name.contains("NotValidForName"), "{wrong_name}");
    // verify-ca still checks the chain: another CA's bundle, or the system's roots.
    for root in [another_ca.as_str(), "system"] {
        let untrusted = refused(verify_ca(root), None).await;
        assert!(
            untrusted.contains("InvalidCertificate"),
            "{root}: {untrusted}"
        );
    }

    // One CA bundle, named once, and used.
    let twice = refused(
        with(&server, &format!("sslmode=verify-full sslrootcert={ca}")),
        Some(Path::new(&ca)),
    )
    .await;
    assert!(twice.contains("given twice"), "{twice}");
    let unused = refused(
        with(&server, &format!("sslmode=prefer sslrootcert={ca}")),
        None,
    )
    .await;
    assert!(unused.contains("would not use it"), "{unused}");
}

/// A server that authenticates clients by certificate takes the one the connection
/// string's `sslcert` and `sslkey` name, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_client_certificates_come_from_sslcert_and_sslkey() {
    use crigate::aggregator::storage::postgres::Store;
    use crigate::registry::Secret;
    let (tmp, pki, ca) = tls_test_dir("postgres-client-cert");
    let server = Postgres::start_tls_client_certs(
        tmp.path(),
        &pki.path("server.pem"),
        &pki.path("server.key"),
        &pki.path("ca.pem"),
    )
    .unwrap();
    // Certificates for the user the connection logs in as, from the CA the server
    // trusts and from another one; and one from the right CA for another user.
    let (cert, key) = pki.leaf("pg-client", &[], "postgres", false);
    let (stranger, stranger_key) = pki.leaf("pg-stranger", &[], "postgres", true);
    let (other_user, other_user_key) = pki.leaf("pg-other-user", &[], "someone", false);
    let with = |identity: &str| {
        format!(
            "{} sslrootcert={ca} {identity}",
            server
                .tls_url_for("postgres")
                .replace("sslmode=require", "sslmode=verify-full")
        )
    };
    let connect = |url: String| async move { Store::connect(&Secret::new(url), None).await };

    let store = connect(with(&format!(
        "sslcert={} sslkey={}",
        cert.display(),
        key.display()
    )))
    .await
    .unwrap();
    stores_a_record(&store).await;
    // No certificate, another CA's, another user's: each refused by the server.
    for (identity, why) in [
        (String::new(), "requires a valid client certificate"),
        (
            format!(
                "sslcert={} sslkey={}",
                stranger.display(),
                stranger_key.display()
            ),
            "UnknownCA",
        ),
        (
            format!(
                "sslcert={} sslkey={}",
                other_user.display(),
                other_user_key.display()
            ),
            "certificate authentication failed",
        ),
    ] {
        let refused = connect(with(&identity)).await.err().unwrap();
        let refused = format!("{refused:?}");
        assert!(refused.contains(why), "{identity}: {refused}");
    }
    // A certificate without its key is a configuration error, before any connection.
    let half = connect(with(&format!("sslcert={}", cert.display())))
        .await
        .err()
        .unwrap();
    assert!(half.to_string().contains("go together"), "{half}");
}

/// The aggregator stores over TLS to PostgreSQL when its config says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_stores_in_postgresql_over_tls() {
    let tmp = temp_dir("postgres-tls-aggregator");
    let pki = Pki::new(&tmp.path().join("pki"));
    pki.leaf("node-1", &[NODE], NODE, false);
    let server =
        Postgres::start_tls(tmp.path(), &pki.path("server.pem"), &pki.path("server.key")).unwrap();
    let mut aggregator =
        Aggregator::configure_with(tmp.path(), &pki, Some(server.tls_url_for("postgres")));
    let mut config = std::fs::read_to_string(&aggregator.config).unwrap();
    config.push_str(&format!(
        "postgres_ca_file = \"{}\"\n",
        pki.path("ca.pem").display()
    ));
    std::fs::write(&aggregator.config, config).unwrap();
    // The test reads the table over the server's unix socket.
    aggregator.postgres = Some(server.url());
    aggregator.start();
    let node = start_node(
        &tmp.path().join("node"),
        &pki,
        &aggregator,
        &tmp.path().join("spool"),
    );
    decide(&node.socket, "tls", 20).await;
    tokio::task::block_in_place(|| aggregator.wait_count(20, CONVERGE)).unwrap();
    let produced = logged_ids(&node.logs());
    assert_exactly_once(&produced, &aggregator);
}

/// A restart of PostgreSQL closes every connection of the store; the store opens them
/// again as they are used, and goes on storing without the aggregator restarting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_store_connects_again_after_the_server_restarts() {
    use crigate::aggregator::storage::postgres::Store;
    let tmp = temp_dir("postgres-restart");
    let server = Postgres::start(tmp.path()).unwrap();
    let store = Store::connect(&crigate::registry::Secret::new(server.url()), None)
        .await
        .unwrap();
    let before = record(NODE);
    let one = |record: &AuditRecord| std::sync::Arc::new(vec![record.clone()]);
    assert_eq!(store.insert(one(&before)).await.unwrap(), vec![true]);

    tokio::task::block_in_place(|| server.restart()).unwrap();
    // A batch sent on a connection before the store sees it closed fails, unacknowledged
    // (its node sends it again); the store does not stay broken.
    let after = record(NODE);
    let mut stored = None;
    for _ in 0..50 {
        match store.insert(one(&after)).await {
            Ok(new) => {
                stored = Some(new);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(stored, Some(vec![true]), "the store did not recover");
    // Every connection is usable again: as many batches at once as there are
    // connections, each on its own.
    let batches: Vec<AuditRecord> = (0..8).map(|_| record(NODE)).collect();
    let results =
        futures_util::future::join_all(batches.iter().map(|r| store.insert(one(r)))).await;
    for result in results {
        assert_eq!(result.unwrap(), vec![true]);
    }
    assert_eq!(pg_ids(&server.url()).len(), 10);
}

/// Unmounts a scratch file system when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full disk that cuts a record's write short leaves no partial frame in the spool: the
/// records appended before and after it are read, and survive reopening. The disk is a
/// real one, a 64 KiB tmpfs, filled up.
#[tokio::test]
async fn a_spool_write_the_disk_cut_short_leaves_the_records_around_it_readable() {
    use std::io::Write as _;

    use crigate::audit::spool::{Spool, SpoolConfig};
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs (needs root)");
    let _mounted = Mounted(mount.clone());
    let config = SpoolConfig {
        dir: mount.join("spool"),
        max_bytes: 1 << 20,
        segment_bytes: 1 << 20,
        journal_socket: None,
    };
    let record = |image: String| AuditRecord {
        id: crigate::audit::new_id(),
        node: "node-1".to_owned(),
        image,
        ..Default::default()
    };
    let before = record("127.0.0.1:5000/before:v1".to_owned());
    let spool = Spool::open(config.clone()).unwrap();
    spool.append(&before).await.unwrap();

    // Every page of the file system taken, but for the room left in the last page of
    // the spool's segment: a record larger than that room is written in part, then the
    // disk refuses the rest.
    let filler = mount.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    for chunk in [4096, 1] {
        while file.write(&vec![0; chunk]).is_ok_and(|n| n > 0) {}
    }
    drop(file);
    let cut_short = record(format!("127.0.0.1:5000/{}:v1", "x".repeat(6000)));
    assert!(spool.append(&cut_short).await.is_err());
    std::fs::remove_file(&filler).unwrap();

    let after: Vec<AuditRecord> = (0..2)
        .map(|n| record(format!("127.0.0.1:5000/after-{n}:v1")))
        .collect();
    for record in &after {
        spool.append(record).await.unwrap();
    }
    let expected: Vec<String> = [&before]
        .into_iter()
        .chain(&after)
        .map(|r| r.id.clone())
        .collect();
    let ids = |spool: &Spool| -> Vec<String> {
        spool
            .read(spool.cursor(), usize::MAX, usize::MAX)
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids(&spool), expected);
    assert_eq!(spool.dropped_records(), 0);
    drop(spool);
    let reopened = Spool::open(config).unwrap();
    assert_eq!(ids(&reopened), expected);
}

/// A query client that finishes the TLS handshake and then sends nothing is closed by the
/// aggregator, as is one that keeps a connection open after its answer: connections do
/// not pile up until the process runs out of descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_connection_that_sends_nothing_is_closed() {
    use rustls_pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let tmp = temp_dir("idle-query");
    let pki = Pki::new(&tmp.path().join("pki"));
    let mut aggregator = Aggregator::configure(tmp.path(), &pki);
    aggregator.start();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(pki.path("ca.pem")).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", aggregator.query_port))
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    };
    let closed_within = |limit: Duration| {
        move |mut stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>| async move {
            let started = Instant::now();
            let mut rest = Vec::new();
            let read = tokio::time::timeout(limit, stream.read_to_end(&mut rest)).await;
            assert!(read.is_ok(), "still open after {limit:?}");
            started.elapsed()
        }
    };
    // Silent from the start.
    let silent = connect().await;
    let waited = closed_within(Duration::from_secs(30))(silent).await;
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    // One request answered, then silence on the kept-alive connection.
    let mut kept = connect().await;
    kept.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let waited = closed_within(Duration::from_secs(30))(kept).await;
    assert!(waited < Duration::from_secs(20), "{waited:?}");
}
