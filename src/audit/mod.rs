//! Audit records: one per decision the node daemon makes, written where it cannot be lost
//! silently.
//!
//! A record ([`AuditRecord`], the protobuf message of `proto/crigate/audit/v1/audit.proto`)
//! is built once per decision and handed to an [`Auditor`], which writes it to every
//! configured [`Sink`]: journald through the native protocol ([`journald`]), whose send
//! errors crigate sees (unlike a `tracing` subscriber, which drops them), and the node's
//! spool for the aggregator. The same record is also the `crigate::decision` diagnostic
//! event.
//!
//! This module owns the record's shape, its journald field names (`CRIGATE_*`) and the
//! `MESSAGE_ID` of each decision kind (`systemd/crigate.catalog` documents them). It
//! leaves deciding to `policy` and transport to the sinks.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::decision::{BoxFuture, Durable};

pub mod journald;
pub mod metrics;
pub mod shipper;
pub mod spool;
pub mod tls;

/// The generated protobuf types of `crigate.audit.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("crigate.audit.v1");
}

pub use proto::{Action, AuditRecord, DecisionKind, Phase};

/// `MESSAGE_ID` of an allow record (systemd.journal-fields(7): 128 bits, lowercase hex).
pub const MESSAGE_ID_ALLOW: &str = "3fb621940c274b8eb30ef145ef968802";
/// `MESSAGE_ID` of a deny record.
pub const MESSAGE_ID_DENY: &str = "7a2ebb9fe19c45a383ed8d0fb600298f";
/// `MESSAGE_ID` of an audit-deny record (audit mode: enforce would have denied).
pub const MESSAGE_ID_AUDIT_DENY: &str = "60fa4af0d481443ba79b74f2926d11a1";
/// `MESSAGE_ID` of an error record (trust could not be decided).
pub const MESSAGE_ID_ERROR: &str = "b54ce20cf7584ba785218f34c2f1fb46";

/// Why a record could not be written to one sink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot send the audit record to journald at {socket}: {source}")]
    Journald {
        socket: Box<std::path::Path>,
        #[source]
        source: std::io::Error,
    },
    #[error("journald at {socket} did not take the audit record within {timeout:?}")]
    JournaldTimeout {
        socket: Box<std::path::Path>,
        timeout: Duration,
    },
    #[error("cannot append the audit record to the spool: {0}")]
    Spool(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the {sink} writer stopped before it finished with the audit record")]
    Lost { sink: &'static str },
    #[error(
        "the {sink} did not make the audit record durable within {after:?}: the call was \
         answered, and the record, written, is still being made durable"
    )]
    NotDurableInTime { sink: &'static str, after: Duration },
}

/// How long the answer to a call waits for its record to be durable (the spool's fsync).
/// A disk that stalls without failing would otherwise hold every answer on kubelet's
/// connection, and the node would turn NotReady. The record has been written by then (a
/// crash of crigate does not lose it); past this wait the call is answered, the late
/// flush counted as the sink's failure, and the flush goes on.
pub const DURABLE_WAIT: Duration = Duration::from_secs(2);

/// `durability`, waited for at most [`DURABLE_WAIT`].
async fn durable_in_time(sink: &'static str, durability: Durability) -> Result<(), Error> {
    tokio::time::timeout(DURABLE_WAIT, durability)
        .await
        .unwrap_or(Err(Error::NotDurableInTime {
            sink,
            after: DURABLE_WAIT,
        }))
}

/// The wait, after a sink has taken a record, until the record is durable.
pub type Durability = BoxFuture<'static, Result<(), Error>>;

/// A destination for audit records.
///
/// `write` returns once the record is written, that is handed to the kernel (sent to
/// journald; written to the spool's file), so that no crash of crigate can lose it, with
/// the wait until it is as durable as the sink makes it (at once for journald, which
/// syncs its journal files on its own schedule, `SyncIntervalSec=`; fsynced for the
/// spool). The future may be dropped by a caller that went away; an [`Auditor`]
/// runs each write as a task of its own so a record is never half-written for that reason.
pub trait Sink: Send + Sync + 'static {
    /// A short name for diagnostics and metrics (`journald`, `spool`).
    fn name(&self) -> &'static str;
    fn write(&self, record: Arc<AuditRecord>) -> BoxFuture<'static, Result<Durability, Error>>;

    /// Writes `record` from the calling thread if that needs no wait (journald's socket
    /// has room; the spool's segment needs no rotation and no other write is under way),
    /// as `write` would; `None`, having written nothing, when it would have to wait.
    /// `Some(Ok(None))`: the record is as durable as this sink makes it already.
    fn write_now(&self, record: &Arc<AuditRecord>) -> Option<Result<Option<Durability>, Error>> {
        let _ = record;
        None
    }
}

/// Writes each record to every sink, and counts what could not be written.
///
/// Cheap to clone; one is made at start-up and shared by every decider the daemon
/// builds, across reloads.
#[derive(Clone)]
pub struct Auditor {
    inner: Arc<Inner>,
}

struct Inner {
    node: Box<str>,
    sinks: Vec<Arc<dyn Sink>>,
    /// Whether each record is also the `crigate::decision` diagnostic event.
    decision_events: bool,
    failures: AtomicU64,
    metrics: Arc<metrics::NodeMetrics>,
}

/// How writing a record went.
#[derive(Debug, Default)]
pub struct Written {
    /// The sinks that could not take the record, with their errors; every other sink has
    /// it written.
    pub failed: Vec<(&'static str, Error)>,
    /// Completes once every sink that took the record has made it durable (a failure
    /// at that stage is logged and counted like any other).
    pub durable: Durable,
}

// === impl Auditor ===

impl Auditor {
    /// An auditor for `node` writing to `sinks`.
    pub fn new(node: impl Into<Box<str>>, sinks: Vec<Arc<dyn Sink>>) -> Self {
        Self::build(node.into(), sinks, true)
    }

    /// An auditor for `node` writing to `sinks` that emits no `crigate::decision`
    /// diagnostic event: for a daemon whose diagnostics go to the journal that one of
    /// `sinks` already writes each record to, where the event would be the same
    /// decision a second time (for whoever reads the journal, and for journald, whose
    /// work per entry is about what the whole decision costs crigate).
    pub fn without_decision_events(node: impl Into<Box<str>>, sinks: Vec<Arc<dyn Sink>>) -> Self {
        Self::build(node.into(), sinks, false)
    }

    fn build(node: Box<str>, sinks: Vec<Arc<dyn Sink>>, decision_events: bool) -> Self {
        let names: Vec<&'static str> = sinks.iter().map(|sink| sink.name()).collect();
        Self {
            inner: Arc::new(Inner {
                node,
                sinks,
                decision_events,
                failures: AtomicU64::new(0),
                metrics: Arc::new(metrics::NodeMetrics::new(&names)),
            }),
        }
    }

    /// An auditor that writes nowhere but the diagnostic event (commands other than
    /// `serve`, and tests).
    pub fn discard() -> Self {
        Self::new(node_name(), Vec::new())
    }

    /// The node name records carry.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The counters of every decision recorded through this auditor.
    pub fn metrics(&self) -> &Arc<metrics::NodeMetrics> {
        &self.inner.metrics
    }

    /// How many sink writes have failed since start.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Writes `record` to every sink, concurrently, and emits the `crigate::decision`
    /// event (unless built [without](Auditor::without_decision_events)). Returns once
    /// every sink has written the record, with the wait until each has made it durable.
    /// A sink's failure is logged at `error` and counted, and does not change the
    /// decision: journald restarting must not stop every pod on the node, and the other
    /// sinks still hold the record.
    ///
    /// # Cancel safety
    ///
    /// A sink that can take the record at once ([`Sink::write_now`]) does so before this
    /// future first returns; every other sink write runs as a spawned task, and a wait
    /// for durability goes on by itself once dropped ([`Durable`]): dropping this
    /// future, or the wait for durability, does not stop a write that has begun, nor the
    /// counting of its failure.
    pub async fn record(&self, mut record: AuditRecord) -> Written {
        record.bound_fields();
        if self.inner.decision_events {
            decision_event(&record);
        }
        self.inner.metrics.decided(&record);
        let record = Arc::new(record);
        let mut written = Written::default();
        let mut pending = Vec::new();
        let mut stages = Vec::new();
        for (index, sink) in self.inner.sinks.iter().enumerate() {
            match sink.write_now(&record) {
                Some(Ok(None)) => {}
                Some(Ok(Some(durability))) => pending.push((index, sink.name(), durability)),
                Some(Err(error)) => {
                    self.inner.failed(index, &record.id, &error);
                    written.failed.push((sink.name(), error));
                }
                None => {
                    let (taken, was_taken) = oneshot::channel();
                    let task = tokio::spawn(write_to(
                        Arc::clone(&self.inner),
                        index,
                        Arc::clone(&record),
                        taken,
                    ));
                    stages.push((index, sink.name(), was_taken, task));
                }
            }
        }
        // The waits of the sinks written at once, counted as they complete: a `Durable`
        // goes on by itself if dropped (this future dropped below, say), and wakes
        // nobody before it is polled.
        let at_once = (!pending.is_empty()).then(|| {
            let inner = Arc::clone(&self.inner);
            let id = record.id.clone();
            Durable::after(async move {
                for (index, name, durability) in pending {
                    if let Err(error) = durable_in_time(name, durability).await {
                        inner.failed(index, &id, &error);
                    }
                }
            })
        });
        let mut tasks = Vec::with_capacity(stages.len());
        for (index, name, taken, task) in stages {
            match taken.await {
                Ok(Ok(())) => tasks.push((index, name, task)),
                Ok(Err(error)) => written.failed.push((name, error)),
                // The task ended without a word: it panicked before writing.
                Err(_) => {
                    let error = Error::Lost { sink: name };
                    self.inner.failed(index, &record.id, &error);
                    written.failed.push((name, error));
                }
            }
        }
        written.durable = match (at_once, tasks.is_empty()) {
            (None, true) => Durable::now(),
            (Some(at_once), true) => at_once,
            (at_once, false) => {
                let inner = Arc::clone(&self.inner);
                let id = record.id.clone();
                Durable::after(async move {
                    if let Some(at_once) = at_once {
                        at_once.await;
                    }
                    for (index, name, task) in tasks {
                        if task.await.is_err() {
                            inner.failed(index, &id, &Error::Lost { sink: name });
                        }
                    }
                })
            }
        };
        written
    }
}

/// One sink's write of `record`: says on `taken` when the record is written (or why it
/// is not), then waits until it is durable. Every failure is logged and counted here.
async fn write_to(
    inner: Arc<Inner>,
    index: usize,
    record: Arc<AuditRecord>,
    taken: oneshot::Sender<Result<(), Error>>,
) {
    let Some(sink) = inner.sinks.get(index).cloned() else {
        return;
    };
    match sink.write(Arc::clone(&record)).await {
        Ok(durability) => {
            let _ = taken.send(Ok(()));
            if let Err(error) = durable_in_time(sink.name(), durability).await {
                inner.failed(index, &record.id, &error);
            }
        }
        Err(error) => {
            inner.failed(index, &record.id, &error);
            let _ = taken.send(Err(error));
        }
    }
}

// === impl Inner ===

impl Inner {
    fn failed(&self, index: usize, id: &str, error: &Error) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.metrics.sink_failed(index);
        let sink = self.sinks.get(index).map_or("unknown", |sink| sink.name());
        tracing::error!(sink, id, error = %error, "audit record not written");
    }
}

impl fmt::Debug for Auditor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auditor")
            .field("node", &self.inner.node)
            .field(
                "sinks",
                &self
                    .inner
                    .sinks
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A new record id: a UUIDv7 (RFC 9562), unique and ordered by time, so an index on it
/// stays append-mostly.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// This machine's host name, the default node name.
pub fn node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-node".to_owned())
}

// === impl DecisionKind ===

impl DecisionKind {
    /// The stable value of `CRIGATE_DECISION` and of the JSON and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            DecisionKind::Unspecified => "unspecified",
            DecisionKind::Allow => "allow",
            DecisionKind::Deny => "deny",
            DecisionKind::AuditDeny => "audit-deny",
            DecisionKind::Error => "error",
        }
    }

    /// The journald `MESSAGE_ID` of records of this kind.
    pub fn message_id(self) -> &'static str {
        match self {
            DecisionKind::Allow => MESSAGE_ID_ALLOW,
            DecisionKind::Deny => MESSAGE_ID_DENY,
            DecisionKind::AuditDeny => MESSAGE_ID_AUDIT_DENY,
            DecisionKind::Error | DecisionKind::Unspecified => MESSAGE_ID_ERROR,
        }
    }

    /// The parse of [`DecisionKind::code`].
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            // What an aggregator files a decision kind it does not know under.
            "unspecified" => DecisionKind::Unspecified,
            "allow" => DecisionKind::Allow,
            "deny" => DecisionKind::Deny,
            "audit-deny" => DecisionKind::AuditDeny,
            "error" => DecisionKind::Error,
            _ => return None,
        })
    }
}

// === impl Action ===

impl Action {
    /// The stable value of `CRIGATE_ACTION`.
    pub fn code(self) -> &'static str {
        match self {
            Action::Unspecified => "unspecified",
            Action::Forward => "forward",
            Action::Refuse => "refuse",
        }
    }
}

// === impl Phase ===

impl Phase {
    /// The stable value of `CRIGATE_PHASE`.
    pub fn code(self) -> &'static str {
        match self {
            Phase::Unspecified => "unspecified",
            Phase::Pull => "pull",
            Phase::Create => "create",
        }
    }
}

impl From<crate::decision::Phase> for Phase {
    fn from(phase: crate::decision::Phase) -> Self {
        match phase {
            crate::decision::Phase::Pull => Phase::Pull,
            crate::decision::Phase::Create => Phase::Create,
        }
    }
}

// === impl AuditRecord ===

impl AuditRecord {
    /// One line for people: what was decided on what, and why. The strings a caller
    /// chose are [`printable`]: they cannot break the line or rewrite a terminal.
    pub fn summary(&self) -> String {
        let subject = if self.subject.is_empty() {
            &self.image
        } else {
            &self.subject
        };
        let volume = if self.volume_path.is_empty() {
            String::new()
        } else {
            format!(" (image volume at {})", printable(&self.volume_path))
        };
        format!(
            "{} {} {}{volume} in namespace {}: {}",
            self.decision().code(),
            self.phase().code(),
            printable(subject),
            printable(&self.namespace),
            printable(&self.reason)
        )
    }

    /// Cuts each string field longer than [`MAX_FIELD_BYTES`] at a character boundary,
    /// marking the cut with `...`. Several fields are the caller's to fill (a pod name,
    /// an image name), and every sink gets the record as cut: journald and the spool
    /// (whose frames hold at most [`spool::MAX_RECORD_BYTES`]) take it whole, and the
    /// two copies say the same.
    pub fn bound_fields(&mut self) {
        for field in [
            &mut self.id,
            &mut self.node,
            &mut self.api_version,
            &mut self.namespace,
            &mut self.pod_name,
            &mut self.pod_uid,
            &mut self.container_name,
            &mut self.image,
            &mut self.user_specified_image,
            &mut self.subject,
            &mut self.digest,
            &mut self.pinned,
            &mut self.verifier,
            &mut self.signer,
            &mut self.allowlisted_by,
            &mut self.policy,
            &mut self.mode,
            &mut self.fingerprint,
            &mut self.reason_code,
            &mut self.reason,
            &mut self.volume_path,
        ] {
            if let std::borrow::Cow::Owned(cut) = bounded(field) {
                *field = cut;
            }
        }
    }
}

/// `value`, or, if longer than [`MAX_FIELD_BYTES`], its start cut at a character
/// boundary and marked with `...`, [`MAX_FIELD_BYTES`] in all.
pub(crate) fn bounded(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_FIELD_BYTES {
        return value.into();
    }
    let mut end = MAX_FIELD_BYTES - CUT_MARK.len();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_MARK}", value.get(..end).unwrap_or_default()).into()
}

/// The most bytes of one string field of a record ([`AuditRecord::bound_fields`]). A
/// record is a few hundred bytes; the bound keeps a caller-supplied string from growing
/// it past what its sinks take: a journald entry past the socket's datagram limit
/// (`net.core.wmem_default`, about 208 KiB) would never reach journald.
pub const MAX_FIELD_BYTES: usize = 4096;

/// What ends a field [`AuditRecord::bound_fields`] cut.
const CUT_MARK: &str = "...";

/// `text` with its control characters and the invisible characters that reorder or hide
/// text (bidirectional controls, zero-width characters) escaped as `\u{..}`, so that a
/// string a CRI caller chose cannot break a log line, move a terminal's cursor, recolour
/// it, or show another name than the one recorded.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(hidden) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Whether `c` is a control character, a line or paragraph separator (which some log
/// viewers break lines at), or a format character that changes how the text around it
/// shows without showing itself (Unicode general category Cf: the bidirectional
/// controls of UAX #9, zero-width characters, the soft hyphen, the byte order mark, the
/// tag characters).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0001}'
                | '\u{E0020}'..='\u{E007F}'
        )
}

/// The one `info` event per decision, target `crigate::decision`, from the record.
fn decision_event(record: &AuditRecord) {
    tracing::info!(
        target: "crigate::decision",
        id = %record.id,
        phase = %record.phase().code(),
        api = %record.api_version,
        decision = record.decision().code(),
        action = record.action().code(),
        namespace = record.namespace.as_str(),
        pod = record.pod_name.as_str(),
        container = record.container_name.as_str(),
        volume_path = record.volume_path.as_str(),
        image = %record.image,
        subject = %record.subject,
        verifier = record.verifier.as_str(),
        signer = record.signer.as_str(),
        policy = record.policy.as_str(),
        fingerprint = %record.fingerprint,
        reason_code = record.reason_code.as_str(),
        reason = record.reason.as_str(),
        cached = record.cached,
        latency_us = record.latency_micros,
        caller_pid = record.caller_pid,
        caller_uid = record.caller_uid,
        "decision"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_codes_round_trip_and_have_distinct_message_ids() {
        assert_eq!(
            DecisionKind::from_code(DecisionKind::Unspecified.code()),
            Some(DecisionKind::Unspecified)
        );
        let kinds = [
            DecisionKind::Allow,
            DecisionKind::Deny,
            DecisionKind::AuditDeny,
            DecisionKind::Error,
        ];
        let mut ids = std::collections::BTreeSet::new();
        for kind in kinds {
            assert_eq!(DecisionKind::from_code(kind.code()), Some(kind));
            let id = kind.message_id();
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            ids.insert(id);
        }
        assert_eq!(ids.len(), kinds.len());
    }

    #[test]
    fn message_ids_are_those_of_the_shipped_catalog() {
        let catalog = include_str!("../../systemd/crigate.catalog");
        for id in [
            MESSAGE_ID_ALLOW,
            MESSAGE_ID_DENY,
            MESSAGE_ID_AUDIT_DENY,
            MESSAGE_ID_ERROR,
        ] {
            assert!(
                catalog.contains(&format!("-- {id}\n")),
                "{id} not in catalog"
            );
        }
    }

    /// journalctl puts a field's name where the field is missing from the entry (or
    /// longer than 256 bytes): the catalog's texts for decisions name only fields that
    /// every record's entry has, whatever else the record leaves empty, and whose values
    /// are short.
    #[test]
    fn the_catalog_names_only_fields_every_record_has() {
        let mut bare = AuditRecord {
            id: new_id(),
            reason_code: "no_policy".to_owned(),
            ..Default::default()
        };
        bare.set_decision(DecisionKind::Deny);
        let entry = journald::entry(&bare);
        let catalog = include_str!("../../systemd/crigate.catalog");
        let mut named = 0;
        for id in [
            MESSAGE_ID_ALLOW,
            MESSAGE_ID_DENY,
            MESSAGE_ID_AUDIT_DENY,
            MESSAGE_ID_ERROR,
        ] {
            let start = catalog.find(&format!("-- {id}\n")).unwrap();
            let text = &catalog[start..];
            let text = &text[..text[3..].find("\n-- ").map_or(text.len(), |end| end + 3)];
            for field in text.split('@').skip(1).step_by(2) {
                named += 1;
                assert!(
                    entry
                        .split(|b| *b == b'\n')
                        .any(|line| line.starts_with(format!("{field}=").as_bytes())),
                    "the catalog entry {id} names {field}, which a record may lack"
                );
                assert!(
                    !matches!(
                        field,
                        "CRIGATE_REASON" | "CRIGATE_IMAGE" | "CRIGATE_SUBJECT"
                    ),
                    "the catalog entry {id} names {field}, which may be too long to show"
                );
            }
        }
        assert!(named > 8, "{named}");
    }

    #[test]
    fn record_ids_are_unique_and_ordered_by_time() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert_eq!(sorted, ids);
    }

    /// A sink that takes each record at once and makes it durable when told to: a
    /// stand-in for a disk whose flush is slow or fails, which a test cannot time.
    struct GatedSink {
        release: Arc<tokio::sync::Notify>,
        fail: bool,
    }

    impl Sink for GatedSink {
        fn name(&self) -> &'static str {
            "gated"
        }

        fn write(&self, _: Arc<AuditRecord>) -> BoxFuture<'static, Result<Durability, Error>> {
            let release = Arc::clone(&self.release);
            let fail = self.fail;
            Box::pin(async move {
                Ok(Box::pin(async move {
                    release.notified().await;
                    if fail {
                        Err(Error::Lost { sink: "gated" })
                    } else {
                        Ok(())
                    }
                }) as Durability)
            })
        }
    }

    fn record() -> AuditRecord {
        AuditRecord {
            id: new_id(),
            ..Default::default()
        }
    }

    /// An auditor writing to one [`GatedSink`], and the sink's release.
    fn gated(fail: bool) -> (Auditor, Arc<tokio::sync::Notify>) {
        let release = Arc::new(tokio::sync::Notify::new());
        let sink = GatedSink {
            release: Arc::clone(&release),
            fail,
        };
        (Auditor::new("node", vec![Arc::new(sink)]), release)
    }

    #[tokio::test]
    async fn a_record_is_returned_written_and_its_durability_awaited_apart() {
        let (auditor, release) = gated(false);
        let written = auditor.record(record()).await;
        assert!(written.failed.is_empty());
        let mut durable = tokio::spawn(written.durable.wait());
        // Not durable until the sink says so.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut durable)
                .await
                .is_err()
        );
        release.notify_one();
        tokio::time::timeout(Duration::from_secs(5), durable)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(auditor.failures(), 0);
    }

    /// A sink that never makes the record durable (a disk that stalls without failing)
    /// holds the answer for [`DURABLE_WAIT`], no longer, and is counted as failing.
    #[tokio::test(start_paused = true)]
    async fn a_flush_that_does_not_end_holds_the_answer_no_longer_than_the_durable_wait() {
        let (auditor, _release) = gated(false);
        let written = auditor.record(record()).await;
        assert!(written.failed.is_empty());
        let started = tokio::time::Instant::now();
        tokio::time::timeout(10 * DURABLE_WAIT, written.durable.wait())
            .await
            .expect("the answer is held for ever");
        assert_eq!(started.elapsed(), DURABLE_WAIT);
        assert_eq!(auditor.failures(), 1);
    }

    /// A record whose caller-chosen strings exceed what the spool's frames hold is
    /// written to the spool all the same, each such string cut at the field bound, and
    /// the record read back is the one the other sinks got.
    #[tokio::test]
    async fn a_record_with_oversized_strings_reaches_the_spool_cut() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Arc::new(
            spool::Spool::open(spool::SpoolConfig::new(dir.path().join("spool"), 64 << 20))
                .unwrap(),
        );
        let start = spool.cursor();
        let auditor = Auditor::new("node", vec![spool.clone() as Arc<dyn Sink>]);
        let mut sent = record();
        sent.pod_name = "p".repeat(300 * 1024);
        sent.image = format!("registry.example/{}", "é".repeat(3000));
        sent.namespace = "prod".to_owned();
        let written = auditor.record(sent.clone()).await;
        assert!(written.failed.is_empty(), "{:?}", written.failed);
        written.durable.wait().await;
        assert_eq!(auditor.failures(), 0);
        let read = spool.read(start, 10, 1 << 20).unwrap();
        assert_eq!(read.records.len(), 1);
        let kept = &read.records[0];
        assert_eq!(kept.pod_name.len(), MAX_FIELD_BYTES);
        assert!(kept.pod_name.ends_with("..."));
        assert!(kept.image.len() <= MAX_FIELD_BYTES);
        assert!(kept.image.starts_with("registry.example/é"));
        assert!(kept.image.ends_with("..."));
        assert_eq!(kept.namespace, "prod");
        assert_eq!(kept.id, sent.id);
    }

    #[test]
    fn a_summary_shows_what_hides_or_breaks_text_escaped() {
        let mut record = record();
        record.namespace = "prod\n\u{1b}[2Jdev".to_owned();
        record.image = "registry.example/\u{202e}gpj.exe:v1\u{200b}".to_owned();
        record.reason = "no signature\r\u{7f}".to_owned();
        let summary = record.summary();
        assert_eq!(
            summary,
            "unspecified unspecified registry.example/\\u{202e}gpj.exe:v1\\u{200b} in \
             namespace prod\\u{a}\\u{1b}[2Jdev: no signature\\u{d}\\u{7f}"
        );
        assert_eq!(printable("plain: é ü 名前"), "plain: é ü 名前");
        assert_eq!(printable("a\u{2028}b\u{e0041}c"), "a\\u{2028}b\\u{e0041}c");
    }

    /// What a diagnostics subscriber writes, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The `crigate::decision` events `auditor` emits while recording one record.
    async fn decision_events(auditor: &Auditor) -> usize {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let _ = auditor.record(record()).await;
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter(|line| line.contains("crigate::decision"))
            .count()
    }

    #[tokio::test]
    async fn each_record_is_a_diagnostic_event_unless_the_auditor_is_built_without() {
        assert_eq!(decision_events(&Auditor::new("node", Vec::new())).await, 1);
        let quiet = Auditor::without_decision_events("node", Vec::new());
        assert_eq!(decision_events(&quiet).await, 0);
    }

    #[tokio::test]
    async fn a_failure_to_make_a_record_durable_is_counted_even_if_nobody_waits() {
        let (auditor, release) = gated(true);
        let written = auditor.record(record()).await;
        assert!(written.failed.is_empty(), "the record was written");
        drop(written);
        release.notify_one();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while auditor.failures() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(auditor.failures(), 1);
    }
}
