//! The `AuditIngest` gRPC service: batches from authenticated nodes, stored, then
//! acknowledged by id.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::metrics::{Metrics, Refusal, SpoolReport};
use super::storage::Storage;
use super::tls::Peer;
use crate::audit::proto::audit_ingest_server::AuditIngest;
use crate::audit::proto::{ShipRequest, ShipResponse};

/// Most records in one batch. The shipper sends up to 500; a larger batch is refused
/// rather than held in memory and in one transaction.
pub const MAX_BATCH_RECORDS: usize = 1000;

/// Largest ShipRequest decoded: a full batch of records at the spool's record limit
/// would be larger, but real records are a few hundred bytes; the shipper bounds its
/// batches to [`crate::audit::shipper::BATCH_BYTES`] and one record, well under this.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;

/// Answers queued per stream before the service stops reading the node's batches.
const RESPONSE_QUEUE: usize = 4;

/// A node's open stream, as [`Ingest`] keeps it.
#[derive(Debug)]
struct NodeStream {
    number: u64,
    ends: CancellationToken,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// The ingest service.
#[derive(Clone, Debug)]
pub struct Ingest {
    store: Storage,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    /// Each node's one open stream: its number, the token that ends it, and the node's
    /// turn, held by the stream that reads the node's batches.
    streams: Arc<Mutex<HashMap<String, NodeStream>>>,
    opened: Arc<std::sync::atomic::AtomicU64>,
}

// === impl Ingest ===

impl Ingest {
    /// Streams are tasks on `tracker`; on `cancel` each ends with UNAVAILABLE once its
    /// current batch is stored, so that the node reconnects to the next aggregator.
    pub fn new(
        store: Storage,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            store,
            metrics,
            tracker,
            cancel,
            streams: Arc::default(),
            opened: Arc::default(),
        }
    }

    /// Makes a new stream the node's one open stream, ending the one it had: a node
    /// ships one batch at a time on one stream, and opens another only when it has given
    /// the last up (a connection it lost, a reply it waited too long for). So what a node
    /// holds here (a stream, a batch of up to [`MAX_MESSAGE_BYTES`]) is bounded, whatever
    /// a node that is not well sends: the new stream reads nothing until the older has
    /// ended (a batch it was storing stored), by taking the node's turn. Returns the
    /// stream's number, the token that ends it and the node's turn.
    fn open_stream(&self, node: &str) -> (u64, CancellationToken, Arc<tokio::sync::Mutex<()>>) {
        let number = self
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ends = CancellationToken::new();
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let turn = streams
            .get(node)
            .map_or_else(Arc::default, |previous| Arc::clone(&previous.turn));
        let stream = NodeStream {
            number,
            ends: ends.clone(),
            turn: Arc::clone(&turn),
        };
        if let Some(previous) = streams.insert(node.to_owned(), stream) {
            previous.ends.cancel();
        }
        (number, ends, turn)
    }

    /// Forgets the node's stream `number`, unless a newer one has taken its place.
    fn close_stream(streams: &Mutex<HashMap<String, NodeStream>>, node: &str, number: u64) {
        let mut streams = streams.lock().unwrap_or_else(PoisonError::into_inner);
        if streams.get(node).is_some_and(|open| open.number == number) {
            streams.remove(node);
        }
    }
}

#[tonic::async_trait]
impl AuditIngest for Ingest {
    type ShipStream = ReceiverStream<Result<ShipResponse, Status>>;

    #[tracing::instrument(skip_all, fields(node))]
    async fn ship(
        &self,
        request: Request<Streaming<ShipRequest>>,
    ) -> Result<Response<Self::ShipStream>, Status> {
        let Some(peer) = request.extensions().get::<Peer>().cloned() else {
            return Err(Status::unauthenticated("no client certificate"));
        };
        tracing::Span::current().record("node", peer.node.as_str());
        tracing::debug!(addr = %peer.addr, "ingest stream opened");
        let mut inbound = request.into_inner();
        let (answers, stream) = mpsc::channel(RESPONSE_QUEUE);
        let store = self.store.clone();
        let metrics = Arc::clone(&self.metrics);
        let cancel = self.cancel.clone();
        let (number, replaced, turn) = self.open_stream(&peer.node);
        let streams = Arc::clone(&self.streams);
        self.tracker.spawn(async move {
            let _turn = tokio::select! {
                biased;
                () = cancel.cancelled() => None,
                () = replaced.cancelled() => None,
                turn = turn.lock_owned() => Some(turn),
            };
            loop {
                let next = tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        let _ = answers
                            .send(Err(Status::unavailable("the aggregator is shutting down")))
                            .await;
                        break;
                    }
                    () = replaced.cancelled() => {
                        tracing::debug!(node = %peer.node, "ingest stream replaced by a newer one from the node");
                        let _ = answers
                            .send(Err(Status::aborted("a newer stream from this node replaced this one")))
                            .await;
                        break;
                    }
                    next = inbound.message() => next,
                };
                let batch = match next {
                    Ok(Some(batch)) => batch,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(node = %peer.node, %status, "ingest stream ended");
                        break;
                    }
                };
                let answer = accept(&store, &metrics, &peer, batch).await;
                let refused = answer.is_err();
                // A node that takes no answers must not keep its stream, and its turn,
                // once a newer stream or a shutdown wants them.
                let sent = tokio::select! {
                    biased;
                    () = cancel.cancelled() => false,
                    () = replaced.cancelled() => false,
                    sent = answers.send(answer) => sent.is_ok(),
                };
                if !sent || refused {
                    break;
                }
            }
            Self::close_stream(&streams, &peer.node, number);
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

/// Checks and stores one batch.
async fn accept(
    store: &Storage,
    metrics: &Metrics,
    peer: &Peer,
    batch: ShipRequest,
) -> Result<ShipResponse, Status> {
    if let Err((refusal, status)) = check(peer, &batch) {
        metrics.refused(refusal);
        return Err(status);
    }
    let count = batch.records.len();
    let spool = SpoolReport {
        dropped_records: batch.spool_dropped_records,
        depth_bytes: batch.spool_depth_bytes,
    };
    let records = Arc::new(batch.records);
    match store.insert(Arc::clone(&records)).await {
        Ok(new) => {
            tracing::debug!(node = %peer.node, batch = batch.batch, count, "batch stored");
            metrics.batch_stored(&peer.node, &records, &new, spool);
            Ok(ShipResponse {
                batch: batch.batch,
                ids: records.iter().map(|r| r.id.clone()).collect(),
            })
        }
        Err(error) => {
            tracing::error!(node = %peer.node, %error, "cannot store audit records");
            metrics.refused(Refusal::Storage);
            Err(Status::unavailable(
                "the aggregator cannot store records now",
            ))
        }
    }
}

/// Whether `batch` may be stored as `peer`'s: a bounded count of records, each the
/// node's own, within a spool's record limit, with an id in its one canonical form.
fn check(peer: &Peer, batch: &ShipRequest) -> Result<(), (Refusal, Status)> {
    if batch.records.len() > MAX_BATCH_RECORDS {
        return Err((
            Refusal::Invalid,
            Status::invalid_argument(format!(
                "batch of {} records; at most {MAX_BATCH_RECORDS}",
                batch.records.len()
            )),
        ));
    }
    for record in &batch.records {
        // The certificate is the node's identity; a node may only report its own
        // decisions.
        if record.node != peer.node {
            tracing::warn!(
                node = %peer.node,
                record_node = truncated(&record.node),
                id = truncated(&record.id),
                addr = %peer.addr,
                "refused a record naming another node"
            );
            return Err((
                Refusal::NodeMismatch,
                Status::permission_denied(format!(
                    "record {} names node {:?}, but the client certificate is for {:?}",
                    truncated(&record.id),
                    truncated(&record.node),
                    peer.node
                )),
            ));
        }
        // A node's spool holds no record larger than this; a larger one is not a
        // decision record, and would make every query page that holds it huge.
        let size = prost::Message::encoded_len(record);
        if size > crate::audit::spool::MAX_RECORD_BYTES {
            return Err((
                Refusal::Invalid,
                Status::invalid_argument(format!(
                    "record {} is {size} bytes, more than the {}-byte limit of a node's spool",
                    truncated(&record.id),
                    crate::audit::spool::MAX_RECORD_BYTES
                )),
            ));
        }
        // Ids order records in time (UUIDv7), so they are taken only in the one form a
        // node writes them: lowercase and hyphenated. Another spelling of a UUID would
        // sort out of time order, and could store one record twice.
        let canonical = uuid::Uuid::parse_str(&record.id)
            .is_ok_and(|id| id.hyphenated().to_string() == record.id);
        if !canonical {
            return Err((
                Refusal::Invalid,
                Status::invalid_argument(format!(
                    "record id {:?} is not a UUID in lowercase hyphenated form",
                    truncated(&record.id)
                )),
            ));
        }
    }
    Ok(())
}

/// Fuzz entry point: decodes `data` as a node's `ShipRequest`, as the ingest service
/// decodes it, checks it as a batch from node `node-a`, and counts and renders what
/// passes as the metrics of a stored batch. Must return for any input, never panic.
pub fn fuzz_batch(data: &[u8]) {
    if data.len() > MAX_MESSAGE_BYTES {
        return;
    }
    let Ok(batch) = <ShipRequest as prost::Message>::decode(data) else {
        return;
    };
    let peer = Peer {
        node: "node-a".to_owned(),
        addr: std::net::SocketAddr::from(([192, 0, 2, 1], 40000)),
    };
    if check(&peer, &batch).is_err() {
        return;
    }
    let metrics = Metrics::default();
    let new: Vec<bool> = (0..batch.records.len()).map(|n| n % 2 == 0).collect();
    let spool = SpoolReport {
        dropped_records: batch.spool_dropped_records,
        depth_bytes: batch.spool_depth_bytes,
    };
    metrics.batch_stored(&peer.node, &batch.records, &new, spool);
    let _ = metrics.render();
}

/// A string a node chose, cut to what a log line or an error needs.
fn truncated(value: &str) -> &str {
    const SHOWN: usize = 80;
    match value.char_indices().nth(SHOWN) {
        Some((end, _)) => value.get(..end).unwrap_or(value),
        None => value,
    }
}
