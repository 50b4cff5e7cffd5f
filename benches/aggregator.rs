//! The cluster audit aggregator end to end, against a real `crigate aggregator` process:
//!
//! - ingest: records/s from 1 and from 50 simulated nodes at once, each a gRPC client
//!   on its own mutual-TLS connection with a certificate naming its node, streaming
//!   batches of 500 with one batch in flight and waiting for each acknowledgement, as
//!   the shipper does. Beside each, the raw rate of the same database in the same run:
//!   the store's own `insert`, batches of the same size, one after another. Reported in
//!   the targets' terms: end to end / raw (target at least 0.70) and absolute (targets
//!   30,000/s on SQLite, 50,000/s on PostgreSQL). Every measurement starts from an
//!   empty database.
//! - query: the database filled with `CRIGATE_BENCH_RECORDS` records (default 10
//!   million; 50 namespaces, 50 nodes, ten days up to now, time-ordered ids) through the
//!   fastest bulk path (the real schema, its secondary indexes dropped during a load of
//!   big transactions or binary COPY, and built again after), then `GET /v1/records`
//!   with the bearer token as `crigate audit query` sends it (pages of 1000): one
//!   namespace and a time window, p50/p99 of 200 queries (target < 100 ms; of 200, the
//!   p99 is the second slowest, where of the 50 measured before it was the slowest).
//!
//! Run: `cargo bench --bench aggregator` as root (PostgreSQL from `integration/setup`;
//! without the `postgres` user only SQLite is measured). `CRIGATE_BENCH_INGEST` scales
//! the records per ingest measurement (default 200,000), `CRIGATE_BENCH_RECORDS` the
//! records the queries run over, `CRIGATE_BENCH_BACKENDS` picks `sqlite`, `postgres` or
//! both (default), and `CRIGATE_BENCH_ONLY` picks `ingest` or `query` (default both).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

#[path = "../integration/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio_stream::wrappers::ReceiverStream;

use crigate::aggregator::storage::{self, Storage};
use crigate::audit::proto::audit_ingest_client::AuditIngestClient;
use crigate::audit::proto::ShipRequest;
use crigate::audit::{AuditRecord, DecisionKind};
use harness::postgres::Postgres;

const NODES: usize = 50;
const NAMESPACES: usize = 50;
const BATCH: usize = crigate::audit::shipper::BATCH_RECORDS;
const TOKEN: &str = "bench-query-token-0123456789";
/// Queries per case: enough that the p99 is not simply the slowest one.
const QUERIES: usize = 200;
/// The page size `crigate audit query` asks for.
const QUERY_PAGE: usize = 1000;
const HISTORY: Duration = Duration::from_secs(10 * 24 * 3600);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A record as a node makes it: time-ordered id, a few hundred bytes.
fn record(node: &str, n: usize) -> AuditRecord {
    let mut record = AuditRecord {
        id: crigate::audit::new_id(),
        time_unix_nanos: crigate::audit::now_unix_nanos(),
        node: node.to_owned(),
        namespace: format!("ns-{}", n % NAMESPACES),
        pod_name: format!("app-{}-7d9f8b6c5-x2x4q", n % 200),
        container_name: "app".to_owned(),
        image: format!("registry.example/team-{}/app:v{n}", n % 20),
        subject: format!("registry.example/team-{}/app@sha256:{:064x}", n % 20, n),
        reason: "signed by the release key".to_owned(),
        policy: "production".to_owned(),
        verifier: "cosign-release".to_owned(),
        ..Default::default()
    };
    record.set_decision(if n.is_multiple_of(10) {
        DecisionKind::Deny
    } else {
        DecisionKind::Allow
    });
    record
}

fn node_name(i: usize) -> String {
    format!("node-{i:02}")
}

// === PKI ===

/// A cluster CA, the aggregator's server certificate and one client certificate per
/// node, whose DNS SAN is the node name.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path, nodes: usize) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "crigate bench cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        let ca = Issuer::new(params, key);
        let leaf = |name: &str, sans: &[&str]| {
            let key = KeyPair::generate().unwrap();
            let mut params =
                CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        leaf("server", &["localhost", "127.0.0.1"]);
        for i in 0..nodes {
            let name = node_name(i);
            leaf(&name, &[&name]);
        }
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
        Self {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

// === databases ===

/// A fresh, empty database `name` on `postgres`; its connection string.
async fn create_database(postgres: &Postgres, name: &str) -> String {
    let client = pg_connect(&postgres.url()).await;
    // Each its own statement: neither may run in a transaction block.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&sql).await.unwrap();
    }
    postgres.url_for(name)
}

async fn drop_database(postgres: &Postgres, name: &str) {
    let client = pg_connect(&postgres.url()).await;
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
}

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Where one measurement stores: a SQLite file or a PostgreSQL database.
#[derive(Clone)]
enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    async fn open(&self) -> Storage {
        match self {
            Database::Sqlite(path) => Storage::Sqlite(storage::Store::open(path).unwrap()),
            Database::Postgres(url) => Storage::Postgres(
                storage::postgres::Store::connect(&crigate::registry::Secret::new(url), None)
                    .await
                    .unwrap(),
            ),
        }
    }
}

// === the aggregator process ===

/// A running `crigate aggregator`, stopped (SIGTERM) on drop.
struct Aggregator {
    child: Child,
    ingest_port: u16,
    query_port: u16,
}

impl Aggregator {
    fn start(dir: &Path, pki: &Pki, database: &Database) -> Self {
        let ingest_port = harness::process::free_port().unwrap();
        let query_port = harness::process::free_port().unwrap();
        let config = dir.join("aggregator.toml");
        let store = match database {
            Database::Sqlite(path) => format!("database = \"{}\"\n", path.display()),
            Database::Postgres(url) => format!("postgres = \"{url}\"\n"),
        };
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{ingest_port}\"\nquery_listen = \"127.0.0.1:{query_port}\"\n\
                 cert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\n\
                 token_file = \"{}\"\ndrain_timeout = \"2s\"\n{store}",
                pki.path("server.pem").display(),
                pki.path("server.key").display(),
                pki.path("ca.pem").display(),
                pki.path("token").display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("aggregator.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_crigate"))
            .args(["--log-format", "text", "aggregator", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", query_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aggregator did not start: {}",
                std::fs::read_to_string(dir.join("aggregator.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            ingest_port,
            query_port,
        }
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

// === ingest ===

/// The raw rate: the store's `insert`, `records` in batches of [`BATCH`], in sequence.
async fn raw_rate(database: &Database, records: usize) -> f64 {
    let store = database.open().await;
    let batches: Vec<Arc<Vec<AuditRecord>>> = (0..records / BATCH)
        .map(|b| {
            Arc::new(
                (0..BATCH)
                    .map(|n| record("node-00", b * BATCH + n))
                    .collect(),
            )
        })
        .collect();
    let started = Instant::now();
    for batch in batches {
        store.insert(batch).await.unwrap();
    }
    (records / BATCH * BATCH) as f64 / started.elapsed().as_secs_f64()
}

/// One simulated node's connection: mutual TLS with its own certificate, HTTP/2.
async fn connect(pki: &Pki, port: u16, node: &str) -> AuditIngestClient<tonic::transport::Channel> {
    let config = crigate::audit::tls::client_config(
        &pki.path("ca.pem"),
        Some((
            &pki.path(&format!("{node}.pem")),
            &pki.path(&format!("{node}.key")),
        )),
        &[crigate::audit::tls::ALPN_H2],
    )
    .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connector = tower::service_fn(move |_: http::Uri| {
        let tls = tls.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let stream = tls.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://crigate-aggregator")
        .connect_with_connector(connector)
        .await
        .unwrap();
    AuditIngestClient::new(channel)
}

/// End to end: `nodes` nodes, `records` in all, each node streaming batches of
/// [`BATCH`] with one in flight. Connections are made and records built before the
/// clock starts.
async fn e2e_rate(aggregator: &Aggregator, pki: &Pki, nodes: usize, records: usize) -> f64 {
    // Whole batches, at least one per node, as a shipper sends them.
    let per_node = (records / nodes / BATCH).max(1) * BATCH;
    let mut ready = Vec::new();
    for i in 0..nodes {
        let node = node_name(i);
        let client = connect(pki, aggregator.ingest_port, &node).await;
        let batches: Vec<ShipRequest> = (0..per_node / BATCH)
            .map(|b| ShipRequest {
                batch: b as u64 + 1,
                records: (0..BATCH).map(|n| record(&node, b * BATCH + n)).collect(),
                spool_dropped_records: 0,
                spool_depth_bytes: 0,
            })
            .collect();
        ready.push((client, batches));
    }
    let start = Arc::new(tokio::sync::Barrier::new(nodes + 1));
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(mut client, batches)| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                let (requests, outbound) = tokio::sync::mpsc::channel(1);
                let mut answers = client
                    .ship(ReceiverStream::new(outbound))
                    .await
                    .unwrap()
                    .into_inner();
                start.wait().await;
                for batch in batches {
                    let (number, count) = (batch.batch, batch.records.len());
                    requests.send(batch).await.unwrap();
                    let answer = answers.message().await.unwrap().unwrap();
                    assert_eq!((answer.batch, answer.ids.len()), (number, count));
                }
            })
        })
        .collect();
    start.wait().await;
    let started = Instant::now();
    for task in tasks {
        task.await.unwrap();
    }
    (per_node * nodes) as f64 / started.elapsed().as_secs_f64()
}

async fn ingest(backend: &str, dir: &Path, pki: &Pki, postgres: Option<&Postgres>, records: usize) {
    let mut n = 0;
    let mut fresh = async || {
        n += 1;
        match postgres {
            Some(pg) => Database::Postgres(create_database(pg, &format!("ingest{n}")).await),
            None => Database::Sqlite(dir.join(format!("ingest{n}/audit.db"))),
        }
    };
    let target = if postgres.is_some() {
        50_000.0
    } else {
        30_000.0
    };
    for nodes in [1, NODES] {
        let raw = raw_rate(&fresh().await, records).await;
        let database = fresh().await;
        let aggregator = Aggregator::start(dir, pki, &database);
        let e2e = e2e_rate(&aggregator, pki, nodes, records).await;
        drop(aggregator);
        let ratio = e2e / raw;
        println!(
            "| {backend} | {nodes} | {raw:.0} | {e2e:.0} | {ratio:.2} ({}) | {} | {} |",
            verdict(ratio >= 0.70),
            verdict(e2e >= target),
            harness::process::load_average()
        );
    }
    if let Some(pg) = postgres {
        for i in 1..=n {
            drop_database(pg, &format!("ingest{i}")).await;
        }
    } else {
        for i in 1..=n {
            let _ = std::fs::remove_dir_all(dir.join(format!("ingest{i}")));
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

// === query ===

/// The records of the query database: `total` spread evenly over [`HISTORY`] up to
/// `end`, ids UUIDv7 of their own time.
fn history_record(n: usize, total: usize, end: i64) -> AuditRecord {
    let step = HISTORY.as_nanos() as i64 / total as i64;
    let time = end - HISTORY.as_nanos() as i64 + n as i64 * step;
    let mut record = record(&node_name(n % NODES), n);
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        (time / 1_000_000_000) as u64,
        (time % 1_000_000_000) as u32,
    );
    record.id = uuid::Uuid::new_v7(ts).to_string();
    record.time_unix_nanos = time;
    record
}

const FILL_TRANSACTION: usize = 200_000;

/// Fills a SQLite database through its real schema: secondary indexes dropped, rows in
/// big transactions, indexes built again.
fn fill_sqlite(path: &Path, total: usize, end: i64) {
    drop(storage::Store::open(path).unwrap());
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    conn.pragma_update(None, "cache_size", -1_000_000).unwrap();
    let indexes: Vec<(String, String)> = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (name, _) in &indexes {
        conn.execute_batch(&format!("DROP INDEX {name}")).unwrap();
    }
    let received = now_nanos();
    let mut n = 0;
    while n < total {
        let tx = conn.transaction().unwrap();
        {
            let mut statement = tx
                .prepare(
                    "INSERT INTO records (id, time_unix_nanos, received_unix_nanos, node, \
                     decision, namespace, image, subject, record) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .unwrap();
            for m in n..total.min(n + FILL_TRANSACTION) {
                let r = history_record(m, total, end);
                statement
                    .execute(rusqlite::params![
                        r.id,
                        r.time_unix_nanos,
                        received,
                        r.node,
                        r.decision().code(),
                        r.namespace,
                        r.image,
                        r.subject,
                        r.encode_to_vec(),
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        n += FILL_TRANSACTION;
    }
    for (_, sql) in &indexes {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
}

/// Fills a PostgreSQL database through its real schema, by binary COPY, secondary
/// indexes dropped and built again.
async fn fill_postgres(url: &str, total: usize, end: i64) {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    drop(
        storage::postgres::Store::connect(&crigate::registry::Secret::new(url), None)
            .await
            .unwrap(),
    );
    let client = pg_connect(url).await;
    let indexes: Vec<(String, String)> = client
        .query(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'records' \
             AND indexname <> 'records_pkey'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for (name, _) in &indexes {
        client
            .batch_execute(&format!("DROP INDEX {name}"))
            .await
            .unwrap();
    }
    client
        .batch_execute("SET synchronous_commit = off; SET maintenance_work_mem = '1GB'")
        .await
        .unwrap();
    let received = now_nanos();
    let types = [
        Type::TEXT,
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::BYTEA,
    ];
    let mut n = 0;
    while n < total {
        let sink = client
            .copy_in(
                "COPY records (id, time_unix_nanos, received_unix_nanos, node, decision, \
                 namespace, image, subject, record) FROM STDIN BINARY",
            )
            .await
            .unwrap();
        let writer = BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        for m in n..total.min(n + 10 * FILL_TRANSACTION) {
            let r = history_record(m, total, end);
            writer
                .as_mut()
                .write(&[
                    &r.id,
                    &r.time_unix_nanos,
                    &received,
                    &r.node,
                    &r.decision().code(),
                    &r.namespace,
                    &r.image,
                    &r.subject,
                    &r.encode_to_vec(),
                ])
                .await
                .unwrap();
        }
        writer.finish().await.unwrap();
        n += 10 * FILL_TRANSACTION;
    }
    for (_, sql) in &indexes {
        client.batch_execute(sql).await.unwrap();
    }
    client.batch_execute("ANALYZE records").await.unwrap();
}

struct Latencies {
    p50: Duration,
    p99: Duration,
    records: usize,
}

/// `QUERIES` queries through the HTTP endpoint, each one namespace and the window
/// starting `window` before `start(i)`, following every page as `crigate audit query`
/// does.
async fn query_latencies(
    client: &reqwest::Client,
    base: &str,
    window: &dyn Fn(usize) -> (i64, Option<i64>),
    pages: usize,
) -> Latencies {
    let mut samples = Vec::new();
    let mut records = 0;
    for i in 0..QUERIES {
        let namespace = format!("ns-{}", (i * 7) % NAMESPACES);
        let (since, until) = window(i);
        let started = Instant::now();
        let mut page_token: Option<String> = None;
        for _ in 0..pages {
            let mut params = vec![
                ("namespace", namespace.clone()),
                ("since", since.to_string()),
                ("limit", QUERY_PAGE.to_string()),
            ];
            if let Some(until) = until {
                params.push(("until", until.to_string()));
            }
            if let Some(token) = &page_token {
                params.push(("page_token", token.clone()));
            }
            let body = client
                .get(format!("{base}/v1/records"))
                .bearer_auth(TOKEN)
                .query(&params)
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let page: crigate::aggregator::query::RecordsPage =
                serde_json::from_slice(&body).unwrap();
            records += page.records.len();
            assert!(page.records.iter().all(|r| r.namespace == namespace
                && r.time_unix_nanos >= since
                && until.is_none_or(|until| r.time_unix_nanos < until)));
            page_token = page.next_page_token;
            if page_token.is_none() {
                break;
            }
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    Latencies {
        p50: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
        records: records / QUERIES,
    }
}

async fn query(backend: &str, dir: &Path, pki: &Pki, postgres: Option<&Postgres>, total: usize) {
    let end = now_nanos();
    let started = Instant::now();
    let database = match postgres {
        Some(pg) => {
            let url = create_database(pg, "query").await;
            fill_postgres(&url, total, end).await;
            Database::Postgres(url)
        }
        None => {
            let path = dir.join("query/audit.db");
            let fill_path = path.clone();
            tokio::task::spawn_blocking(move || fill_sqlite(&fill_path, total, end))
                .await
                .unwrap();
            Database::Sqlite(path)
        }
    };
    let fill = started.elapsed();
    println!(
        "  {backend}: {total} records filled in {:.0} s ({:.0}/s)",
        fill.as_secs_f64(),
        total as f64 / fill.as_secs_f64()
    );
    let aggregator = Aggregator::start(dir, pki, &database);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.path("ca.pem")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", aggregator.query_port);
    println!("\n| database | records | namespace and window | records returned | p50 ms | p99 ms | p99 < 100 ms | load average |");
    println!("|---|---|---|---|---|---|---|---|");
    let hour = 3_600_000_000_000i64;
    let span = HISTORY.as_nanos() as i64;
    // The 50 past windows are spread evenly over the history.
    let past = move |i: usize| end - span + (i as i64 * 4 + 1) * span / (4 * QUERIES as i64 + 2);
    type Window = Box<dyn Fn(usize) -> (i64, Option<i64>)>;
    let cases: [(&str, Window, usize); 4] = [
        (
            "last hour, every page",
            Box::new(move |_| (end - hour, None)),
            usize::MAX,
        ),
        (
            "a past hour, every page",
            Box::new(move |i| (past(i), Some(past(i) + hour))),
            usize::MAX,
        ),
        (
            "last 24 hours, first page",
            Box::new(move |_| (end - 24 * hour, None)),
            1,
        ),
        (
            "since a past time (no end), first page",
            Box::new(move |i| (past(i), None)),
            1,
        ),
    ];
    for (name, window, pages) in cases {
        let l = query_latencies(&client, &base, &*window, pages).await;
        println!(
            "| {backend} | {total} | {name} | {} | {:.1} | {:.1} | {} | {} |",
            l.records,
            l.p50.as_secs_f64() * 1e3,
            l.p99.as_secs_f64() * 1e3,
            verdict(l.p99 < Duration::from_millis(100)),
            harness::process::load_average()
        );
    }
    drop(aggregator);
    match postgres {
        Some(pg) => drop_database(pg, "query").await,
        None => {
            let _ = std::fs::remove_dir_all(dir.join("query"));
        }
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let ingest_records = env_usize("CRIGATE_BENCH_INGEST", 200_000);
    let query_records = env_usize("CRIGATE_BENCH_RECORDS", 10_000_000);
    let backends = std::env::var("CRIGATE_BENCH_BACKENDS").unwrap_or_default();
    let only = std::env::var("CRIGATE_BENCH_ONLY").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("crigate-bench-aggregator-")
        .tempdir()
        .unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), NODES);
    let mut selected = Vec::new();
    if backends.is_empty() || backends.contains("sqlite") {
        selected.push("sqlite");
    }
    if backends.is_empty() || backends.contains("postgres") {
        if Postgres::available() {
            selected.push("postgresql");
        } else {
            println!("PostgreSQL 15 or the postgres user missing, or not root: SQLite only");
        }
    }
    println!(
        "load average at start: {}",
        harness::process::load_average()
    );
    let postgres = selected
        .contains(&"postgresql")
        .then(|| Postgres::start_with(tmp.path(), "-c max_wal_size=4GB").unwrap());
    if only.is_empty() || only == "ingest" {
        println!("\nIngest, {ingest_records} records per measurement, batches of {BATCH}:\n");
        println!("| database | nodes | raw records/s | end to end records/s | e2e / raw (target >= 0.70) | absolute target | load average |");
        println!("|---|---|---|---|---|---|---|");
        for backend in &selected {
            let pg = (*backend == "postgresql").then(|| postgres.as_ref().unwrap());
            runtime.block_on(ingest(backend, tmp.path(), &pki, pg, ingest_records));
        }
    }
    if only.is_empty() || only == "query" {
        println!("\nQueries, {QUERIES} per case, one namespace of {NAMESPACES} and a window:\n");
        for backend in &selected {
            let pg = (*backend == "postgresql").then(|| postgres.as_ref().unwrap());
            runtime.block_on(query(backend, tmp.path(), &pki, pg, query_records));
        }
    }
}
