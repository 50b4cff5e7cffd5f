//! Throughput of the audit pipeline's two durable steps, on this machine's disk:
//!
//! - the node's spool: records appended per second with 1, 16 and 64 concurrent writers
//!   (every append returns after its fsync; concurrent ones share one by group commit);
//! - the aggregator's SQLite store: records stored per second in batches of the
//!   shipper's size (500), each batch one durable transaction.
//!
//! Run: `cargo bench --bench ingest`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use crigate::aggregator::storage::Store;
use crigate::audit::spool::{Spool, SpoolConfig};
use crigate::audit::{new_id, AuditRecord, DecisionKind};

fn record(n: usize) -> AuditRecord {
    let mut record = AuditRecord {
        id: new_id(),
        time_unix_nanos: crigate::audit::now_unix_nanos(),
        node: "node-1".to_owned(),
        namespace: format!("ns-{}", n % 50),
        image: format!("registry.example/team-{}/app:v{n}", n % 20),
        subject: format!("registry.example/team-{}/app@sha256:{:064x}", n % 20, n),
        reason: "signed by the release key".to_owned(),
        ..Default::default()
    };
    record.set_decision(DecisionKind::Allow);
    record
}

async fn spool_rate(writers: usize, records: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(SpoolConfig::new(dir.path(), 1 << 30)).unwrap();
    let started = Instant::now();
    let per_writer = records / writers;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let spool = spool.clone();
            tokio::spawn(async move {
                for n in 0..per_writer {
                    spool.append(&record(w * per_writer + n)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (per_writer * writers) as f64 / started.elapsed().as_secs_f64()
}

async fn store_rate(batches: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("audit.db")).unwrap();
    let batch_size = crigate::audit::shipper::BATCH_RECORDS;
    let all: Vec<Arc<Vec<AuditRecord>>> = (0..batches)
        .map(|b| {
            Arc::new(
                (0..batch_size)
                    .map(|n| record(b * batch_size + n))
                    .collect(),
            )
        })
        .collect();
    let started = Instant::now();
    for batch in all {
        store.insert(batch).await.unwrap();
    }
    (batches * batch_size) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| step | concurrency | records/s |");
    println!("|---|---|---|");
    for writers in [1, 16, 64] {
        let rate = runtime.block_on(spool_rate(writers, 4096.max(writers * 64)));
        println!("| spool append (fsynced) | {writers} | {rate:.0} |");
    }
    let rate = runtime.block_on(store_rate(20));
    println!("| aggregator store, batches of 500 | 1 | {rate:.0} |");
}
