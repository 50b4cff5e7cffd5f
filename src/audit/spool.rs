//! The node's on-disk spool: every audit record, durable before its decision returns,
//! until the aggregator has acknowledged it.
//!
//! Layout of `[audit] spool_dir`:
//!
//! ```text
//! 00000000000000000001.seg   append-only segments, named by a sequence number
//! 00000000000000000002.seg
//! ack                        the cursor: (segment, offset) of the first record not yet
//!                            acknowledged, replaced atomically (write, fsync, rename)
//! ```
//!
//! A segment is a run of frames (see [`frame`]): a little-endian `u32` payload length, a
//! little-endian `u32` CRC-32 (IEEE) of the payload, then the payload, an encoded
//! [`AuditRecord`]. A crash can leave a partial frame at the end of the last segment; it
//! is found and cut off when the spool opens (the record's decision never returned, so
//! nobody was told it was recorded).
//!
//! A record is written to the active segment by the task that appends it, when the
//! segment has room and no other write is under way: a write to the page cache, with no
//! hop to another thread on the decision's path. Only the fsync is left to the writer
//! thread, which takes every wait that is pending, fsyncs once, then completes each
//! (group commit): many concurrent decisions share one fsync. A record that needs the
//! segment rotated or old segments dropped first, or that finds another write under way,
//! goes to the writer thread through a bounded channel, and is written there.
//!
//! The spool is bounded by `spool_max_bytes`. When a record would not fit, the oldest
//! segment is deleted whole, acknowledged or not: the newest records are the ones an
//! incident responder is looking for, and the journal still holds the old ones. Every
//! unacknowledged record lost that way is counted ([`Spool::dropped_records`]), logged
//! at `warn` and reported to journald under [`MESSAGE_ID_SPOOL_DROPPED`].
//!
//! This module owns the file format and its durability. Shipping is [`super::shipper`].
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot, Notify};

use super::{AuditRecord, Durability, Error as SinkError, Sink};
use crate::decision::BoxFuture;

/// `MESSAGE_ID` of the journald record written when the spool dropped records to stay
/// within its bound.
pub const MESSAGE_ID_SPOOL_DROPPED: &str = "a836d4658d4a474aac0655ef8f6b7e5e";

/// Default `[audit] spool_max_bytes`: days of records on a busy node (a record is a few
/// hundred bytes), a small part of `/var`.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Largest segment file. Dropping to stay within the bound removes one segment, so a
/// segment is at most a quarter of the bound and at most this.
pub const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Largest encoded record the spool takes. A record is a few hundred bytes; each string
/// comes from a CRI request (16 MiB at most), and this bound keeps one hostile request
/// from filling the spool or the reader's memory.
pub const MAX_RECORD_BYTES: usize = 256 * 1024;

/// Records waiting for the writer thread. When full, decisions wait for the disk:
/// backpressure, not loss.
const WRITE_QUEUE: usize = 1024;

/// Most records written under one fsync.
const MAX_GROUP: usize = 512;

/// Bytes before each frame's payload: length and CRC-32.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Name of the cursor file, and of its temporary while it is replaced.
const ACK_FILE: &str = "ack";
/// The file whose lock (`flock`) a process holds while it has the spool open: two
/// processes appending to one directory would interleave their frames and cut each
/// other's segments.
const LOCK_FILE: &str = "lock";

const ACK_TMP: &str = "ack.tmp";
const SEGMENT_SUFFIX: &str = ".seg";
/// `ack` holds segment and offset (little-endian `u64` each) and a CRC-32 of both.
const ACK_BYTES: usize = 20;

/// Why the spool could not open, append or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("audit record is {size} bytes, more than the spool's limit of {MAX_RECORD_BYTES}")]
    RecordTooLarge { size: usize },
    #[error("audit record of {size} bytes cannot fit in a spool of {max} bytes")]
    SpoolTooSmall { size: u64, max: u64 },
    #[error("the spool's writer thread has stopped")]
    WriterGone,
    #[error("cannot start the spool's writer thread: {0}")]
    Thread(#[source] io::Error),
    #[error(
        "spool {path} is in use by another process (its lock file is held): each crigate \
         needs a spool_dir of its own"
    )]
    InUse { path: PathBuf },
}

/// Where the spool is and how large it may grow.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// Segment size; [`SpoolConfig::new`] derives it from `max_bytes`.
    pub segment_bytes: u64,
    /// journald's socket, for the record of a drop; `None` to only log it.
    pub journal_socket: Option<PathBuf>,
}

/// A place in the spool: the first byte of a frame (or the end of the written data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Records read from the spool, and where the next read starts.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<AuditRecord>,
    /// Acknowledging this position acknowledges every record of the batch.
    pub next: Position,
}

/// The spool: a [`Sink`] for the auditor and a reader for the shipper. Cheap to clone.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Message>,
    /// Held while the spool is open ([`LOCK_FILE`]); let go as the last clone is dropped,
    /// so that it opens again at once.
    _lock: Arc<nix::fcntl::Flock<File>>,
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    journal_socket: Option<PathBuf>,
    /// The active segment, appended to under this lock (taken before `state`).
    file: Mutex<File>,
    state: Mutex<State>,
    dropped: AtomicU64,
    /// Woken after each group commit, for the shipper.
    appended: Notify,
}

/// The wait until an appended record is fsynced.
pub type Fsynced = BoxFuture<'static, Result<(), Error>>;

/// What the writer and readers share.
#[derive(Debug)]
struct State {
    /// Segment number to length written (what counts against the bound).
    segments: BTreeMap<u64, u64>,
    /// The segment the writer appends to.
    active: u64,
    /// How much of the active segment is fsynced; every other segment is fsynced
    /// whole. A reader never sees a frame before its fsync.
    active_durable: u64,
    /// The first record not acknowledged.
    ack: Position,
    /// A failed write left bytes past the active segment's counted length that could
    /// not be cut off: the next frame goes into a new segment.
    torn: bool,
}

/// What the writer thread is asked to do.
enum Message {
    /// Write a frame, then fsync.
    Append {
        frame: Vec<u8>,
        /// Told once the frame is written to the segment (or why it is not).
        written: oneshot::Sender<Result<(), Error>>,
        /// Told once the segment is fsynced with the frame in it.
        durable: oneshot::Sender<Result<(), Error>>,
    },
    /// A frame was written in place: fsync, then tell this sender.
    Sync(oneshot::Sender<Result<(), Error>>),
}

// === impl SpoolConfig ===

impl SpoolConfig {
    /// A spool in `dir` bounded by `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        Self {
            dir: dir.into(),
            max_bytes,
            segment_bytes: (max_bytes / 4).clamp(1, MAX_SEGMENT_BYTES),
            journal_socket: None,
        }
    }
}

// === impl Spool ===

impl Spool {
    /// Opens (or creates, mode 0700) the spool in `config.dir`, cuts a torn tail off the
    /// last segment, reads the cursor, and starts the writer thread on a new segment.
    ///
    /// # Errors
    ///
    /// The directory or a segment cannot be read or written, or the thread cannot start.
    pub fn open(config: SpoolConfig) -> Result<Self, Error> {
        let dir = config.dir.clone();
        let io = |source| Error::Io {
            path: dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        let lock = lock_dir(&dir)?;
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(io)?.len();
            segments.insert(seq, len);
        }
        // Only the last segment can end in a torn frame: a segment is fsynced before the
        // writer moves to the next one.
        let file_ack = read_ack(&dir);
        let mut lost = 0;
        if let Some((&last, len)) = segments.iter_mut().next_back() {
            let shipped = file_ack
                .filter(|ack| ack.segment == last)
                .map_or(0, |ack| ack.offset);
            (*len, lost) = recover_tail(&segment_path(&dir, last), *len, shipped)?;
        }
        // Segment numbers only grow, across restarts too: the cursor may name a segment
        // already deleted, and everything before it is acknowledged.
        let last = segments.keys().next_back().copied().unwrap_or(0);
        let active = last.max(file_ack.map_or(0, |a| a.segment)) + 1;
        let mut ack = file_ack.unwrap_or_default();
        // Segments wholly before the cursor were acknowledged; a crash may have come
        // between writing the cursor and deleting them.
        let acked: Vec<u64> = segments.range(..ack.segment).map(|(s, _)| *s).collect();
        for seq in acked {
            segments.remove(&seq);
            remove_file(&segment_path(&dir, seq))?;
        }
        match segments.get(&ack.segment) {
            Some(len) => ack.offset = ack.offset.min(*len),
            None => {
                ack = Position {
                    segment: segments.keys().next().copied().unwrap_or(active),
                    offset: 0,
                }
            }
        }
        let file = create_segment(&dir, active)?;
        let sync_file = file.try_clone().map_err(|source| Error::Io {
            path: segment_path(&dir, active),
            source,
        })?;
        segments.insert(active, 0);
        let shared = Arc::new(Shared {
            dir,
            max_bytes: config.max_bytes,
            segment_bytes: config.segment_bytes.max(1),
            journal_socket: config.journal_socket,
            file: Mutex::new(file),
            state: Mutex::new(State {
                segments,
                active,
                active_durable: 0,
                ack,
                torn: false,
            }),
            dropped: AtomicU64::new(lost),
            appended: Notify::new(),
        });
        let (queue, receiver) = mpsc::channel(WRITE_QUEUE);
        let writer = Writer {
            shared: Arc::clone(&shared),
            sync_file,
        };
        std::thread::Builder::new()
            .name("crigate-spool".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(Error::Thread)?;
        Ok(Self {
            shared,
            queue,
            _lock: Arc::new(lock),
        })
    }

    /// Appends `record`, returning once it is fsynced.
    ///
    /// # Cancel safety
    ///
    /// Once queued, the record is written whether or not this future is polled again.
    ///
    /// # Errors
    ///
    /// The record is too large, or the disk refused it.
    pub async fn append(&self, record: &AuditRecord) -> Result<(), Error> {
        self.append_written(record).await?.await
    }

    /// Appends `record`, returning once it is written to the active segment (in the
    /// kernel's page cache: a crash of crigate no longer loses it) with the wait until
    /// it is fsynced.
    ///
    /// # Cancel safety
    ///
    /// As [`Spool::append`].
    ///
    /// # Errors
    ///
    /// The record is too large, or the disk refused it.
    pub async fn append_written(&self, record: &AuditRecord) -> Result<Fsynced, Error> {
        let frame = frame::encode(record)?;
        if let Some(written) = self.append_in_place(&frame) {
            return written;
        }
        let (durable, is_durable) = oneshot::channel();
        let (written, was_written) = oneshot::channel();
        self.queue
            .send(Message::Append {
                frame,
                written,
                durable,
            })
            .await
            .map_err(|_| Error::WriterGone)?;
        was_written.await.map_err(|_| Error::WriterGone)??;
        Ok(Box::pin(async move {
            is_durable.await.map_err(|_| Error::WriterGone)?
        }))
    }

    /// Appends `frame` from the calling thread, as [`Spool::append_written`] does, if
    /// that needs no wait ([`Spool::write_in_place`]); `None`, having written nothing,
    /// when it would.
    fn append_in_place(&self, frame: &[u8]) -> Option<Result<Fsynced, Error>> {
        if let Err(error) = self.write_in_place(frame)? {
            return Some(Err(error));
        }
        let (durable, is_durable) = oneshot::channel();
        // The fsync is asked for now, so that it happens whether or not anyone waits, and
        // however late the wait is first polled.
        let unsent = match self.queue.try_send(Message::Sync(durable)) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(message)) => {
                let queue = self.queue.clone();
                match tokio::runtime::Handle::try_current() {
                    // A send that fails finds the writer gone, which the wait reports.
                    Ok(runtime) => {
                        drop(runtime.spawn(async move { queue.send(message).await }));
                        None
                    }
                    Err(_) => Some((queue, message)),
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Some(Err(Error::WriterGone)),
        };
        Some(Ok(Box::pin(async move {
            if let Some((queue, message)) = unsent {
                queue.send(message).await.map_err(|_| Error::WriterGone)?;
            }
            is_durable.await.map_err(|_| Error::WriterGone)?
        })))
    }

    /// Writes `frame` to the active segment from the calling thread, if that needs no
    /// rotation, no dropping and no wait for another write (a write to the page cache);
    /// `None` when it does.
    fn write_in_place(&self, frame: &[u8]) -> Option<Result<(), Error>> {
        let mut file = self.shared.file.try_lock().ok()?;
        let size = frame.len() as u64;
        {
            let state = self.shared.lock();
            let total: u64 = state.segments.values().sum();
            if self.shared.rotation_due(&state, size) || total + size > self.shared.max_bytes {
                return None;
            }
        }
        Some(self.shared.append_to_active(&mut file, frame))
    }

    /// Unacknowledged records lost to the bound since the spool opened, or passed over
    /// by its reader ([`Spool::count_dropped`]).
    pub fn dropped_records(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Counts `records` the reader passed over as dropped: records it read, will never
    /// deliver, and acknowledges with the rest.
    pub fn count_dropped(&self, records: u64) {
        self.shared.dropped.fetch_add(records, Ordering::Relaxed);
    }

    /// Bytes of segments on disk.
    pub fn depth_bytes(&self) -> u64 {
        self.shared.lock().segments.values().sum()
    }

    /// The first record not yet acknowledged.
    pub fn cursor(&self) -> Position {
        self.shared.lock().ack
    }

    /// Completes after the next group commit. Create it (and `enable` it) before
    /// reading, so that a commit between the read and the wait is not missed.
    pub fn appended(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.appended.notified()
    }

    /// Reads up to `max_records` records (and about `max_bytes`) of durable data from
    /// `from`, moving to the next segment at the end of one. Blocking: call from
    /// `spawn_blocking`.
    ///
    /// A position in a segment that was dropped restarts at the oldest segment. A corrupt
    /// frame in a closed segment (the disk lost data) ends that segment: its remaining
    /// records are counted as dropped and the read goes on with the next one.
    ///
    /// # Errors
    ///
    /// A segment cannot be read.
    pub fn read(
        &self,
        from: Position,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Batch, Error> {
        let mut at = from;
        let mut batch = Batch {
            records: Vec::new(),
            next: at,
        };
        let mut bytes = 0usize;
        while batch.records.len() < max_records && bytes < max_bytes {
            let (durable, next_segment) = {
                let state = self.shared.lock();
                match state.segments.get(&at.segment) {
                    Some(len) => (
                        if at.segment == state.active {
                            state.active_durable.min(*len)
                        } else {
                            *len
                        },
                        state
                            .segments
                            .range(at.segment + 1..)
                            .next()
                            .map(|(s, _)| *s),
                    ),
                    // Dropped or acknowledged: go on with the oldest segment after it.
                    None => match state.segments.range(at.segment..).next() {
                        Some((&seq, _)) => {
                            at = Position {
                                segment: seq,
                                offset: 0,
                            };
                            batch.next = at;
                            continue;
                        }
                        None => break,
                    },
                }
            };
            if at.offset >= durable {
                match next_segment {
                    Some(seq) => {
                        at = Position {
                            segment: seq,
                            offset: 0,
                        };
                        batch.next = at;
                        continue;
                    }
                    None => break,
                }
            }
            // At least one whole frame of the largest size fits in the window.
            let window = usize::try_from(durable - at.offset)
                .unwrap_or(usize::MAX)
                .min((max_bytes - bytes).max(MAX_RECORD_BYTES + FRAME_HEADER_BYTES));
            let path = segment_path(&self.shared.dir, at.segment);
            let data = match read_range(&path, at.offset, window) {
                Ok(data) => data,
                Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    // Deleted since the state was read (acknowledged, or dropped to make
                    // room): the state says where to go on. Still in the state, it was
                    // deleted behind crigate's back: what it held is lost, and it is
                    // forgotten, or the read would meet it again for ever.
                    if !self.forget_missing(at.segment) {
                        break;
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            let window_end = at.offset + data.len() as u64;
            let parsed = frame::parse(&data, max_records - batch.records.len(), max_bytes - bytes);
            batch.records.extend(parsed.records);
            at.offset += parsed.consumed as u64;
            bytes += parsed.consumed;
            batch.next = at;
            match parsed.error {
                None => {}
                // The window ended inside a frame that is whole on disk.
                Some(frame::FrameError::Truncated { .. })
                    if window_end < durable && parsed.consumed > 0 => {}
                Some(error) => {
                    // Damage: read on from the next whole frame after it in this window;
                    // with none, from where a frame that ends past the window could
                    // start, or at the end of what is durable.
                    let rest = data.get(parsed.consumed..).unwrap_or_default();
                    let skip = match frame::next_valid(rest) {
                        Some(skip) => skip as u64,
                        None if window_end < durable => (window_end - at.offset)
                            .saturating_sub((FRAME_HEADER_BYTES + MAX_RECORD_BYTES) as u64)
                            .max(1),
                        None => durable - at.offset,
                    };
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        segment = at.segment,
                        offset = at.offset,
                        skipped_bytes = skip,
                        %error,
                        "corrupt spool frame: the record it held is lost; reading on after it"
                    );
                    at.offset += skip;
                    batch.next = at;
                }
            }
        }
        Ok(batch)
    }

    /// Forgets segment `seq`, found missing on disk while the state still lists it, as
    /// lost; `false` when it is the active segment, which the writer still holds open and
    /// which is left for it to rotate.
    fn forget_missing(&self, seq: u64) -> bool {
        let mut state = self.shared.lock();
        if seq == state.active {
            return false;
        }
        if state.segments.remove(&seq).is_some() {
            drop(state);
            let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                segment = seq,
                dropped_total = total,
                "a spool segment was deleted outside crigate: the records it held are lost"
            );
        }
        true
    }

    /// Records that every record before `position` is acknowledged: the cursor is
    /// replaced durably, then segments wholly before it are deleted. Blocking: call from
    /// `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// The cursor file cannot be written.
    pub fn acknowledge(&self, position: Position) -> Result<(), Error> {
        write_ack(&self.shared.dir, position)?;
        let done: Vec<u64> = {
            let mut state = self.shared.lock();
            if position > state.ack {
                state.ack = position;
            }
            let ack = state.ack.segment;
            let done: Vec<u64> = state
                .segments
                .range(..ack)
                .map(|(s, _)| *s)
                .filter(|s| *s != state.active)
                .collect();
            for seq in &done {
                state.segments.remove(seq);
            }
            done
        };
        for seq in done {
            remove_file(&segment_path(&self.shared.dir, seq))?;
        }
        Ok(())
    }
}

impl Sink for Spool {
    fn name(&self) -> &'static str {
        "spool"
    }

    fn write_now(
        &self,
        record: &Arc<AuditRecord>,
    ) -> Option<Result<Option<Durability>, SinkError>> {
        let failed = |error: Error| SinkError::Spool(Box::new(error));
        let frame = match frame::encode(record) {
            Ok(frame) => frame,
            Err(error) => return Some(Err(failed(error))),
        };
        Some(match self.append_in_place(&frame)? {
            Ok(fsynced) => Ok(Some(
                Box::pin(async move { fsynced.await.map_err(failed) }) as Durability
            )),
            Err(error) => Err(failed(error)),
        })
    }

    fn write(&self, record: Arc<AuditRecord>) -> BoxFuture<'static, Result<Durability, SinkError>> {
        let this = self.clone();
        let failed = |error: Error| SinkError::Spool(Box::new(error));
        Box::pin(async move {
            let durable = this.append_written(&record).await.map_err(failed)?;
            Ok(Box::pin(async move { durable.await.map_err(failed) }) as Durability)
        })
    }
}

/// The spool's place as a [`Sink`] when it could not be opened at start: every record
/// fails it, with the reason, as records fail a spool whose disk went away at run time.
/// The daemon keeps deciding; `[audit] on_record_failure` says whether a call whose
/// record only journald took goes ahead.
#[derive(Debug)]
pub struct Unopened {
    reason: Arc<str>,
}

impl Unopened {
    pub fn new(error: &Error) -> Self {
        Self {
            reason: Arc::from(format!("the spool could not be opened at start: {error}")),
        }
    }

    fn error(&self) -> SinkError {
        SinkError::Spool(self.reason.to_string().into())
    }
}

impl Sink for Unopened {
    fn name(&self) -> &'static str {
        "spool"
    }

    fn write_now(
        &self,
        _record: &Arc<AuditRecord>,
    ) -> Option<Result<Option<super::Durability>, SinkError>> {
        Some(Err(self.error()))
    }

    fn write(
        &self,
        _record: Arc<AuditRecord>,
    ) -> BoxFuture<'static, Result<Durability, SinkError>> {
        let error = self.error();
        Box::pin(async move { Err(error) })
    }
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.shared.dir)
            .field("max_bytes", &self.shared.max_bytes)
            .finish()
    }
}

// === impl Shared ===

impl Shared {
    /// Whether a frame of `size` bytes must go into a new segment: it would take the
    /// active one past `segment_bytes`, and the active one is not empty.
    fn rotation_due(&self, state: &State, size: u64) -> bool {
        let active_len = state.segments.get(&state.active).copied().unwrap_or(0);
        state.torn || (active_len > 0 && active_len + size > self.segment_bytes)
    }

    /// Appends `frame` to the active segment, `file`, and counts it. The caller holds
    /// `file` locked, so the active segment cannot change meanwhile (only the writer
    /// thread rotates, under that lock).
    ///
    /// A write that fails (a full disk) may have put part of the frame in the file; it
    /// is cut back to the length counted, so that the next frame starts where readers
    /// look for one. Should that fail too, the segment takes no more frames.
    fn append_to_active(&self, file: &mut File, frame: &[u8]) -> Result<(), Error> {
        let (active, counted) = {
            let state = self.lock();
            let counted = state.segments.get(&state.active).copied().unwrap_or(0);
            (state.active, counted)
        };
        if let Err(source) = file.write_all(frame) {
            if let Err(error) = file.set_len(counted) {
                tracing::error!(segment = active, %error,
                    "a failed spool write could not be cut off; the next record starts a new segment");
                self.lock().torn = true;
            }
            return Err(Error::Io {
                path: segment_path(&self.dir, active),
                source,
            });
        }
        if let Some(len) = self.lock().segments.get_mut(&active) {
            *len += frame.len() as u64;
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind, still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The writer thread: rotates and trims the spool, and fsyncs for every writer.
struct Writer {
    shared: Arc<Shared>,
    /// A duplicate descriptor of the active segment, fsynced without holding its lock.
    sync_file: File,
}

// === impl Writer ===

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Message>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            // Each caller hears as soon as its frame is in the file, and again once the
            // group's one fsync has made it durable.
            let mut waiting = Vec::with_capacity(group.len());
            for message in group {
                let (frame, written, durable) = match message {
                    Message::Sync(durable) => {
                        waiting.push(durable);
                        continue;
                    }
                    Message::Append {
                        frame,
                        written,
                        durable,
                    } => (frame, written, durable),
                };
                let shared = Arc::clone(&self.shared);
                let mut file = shared
                    .file
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match self.write_frame(&mut file, &frame) {
                    Ok(()) => {
                        let _ = written.send(Ok(()));
                        waiting.push(durable);
                    }
                    // The caller stops at `written`; `durable` is never awaited.
                    Err(error) => {
                        let _ = written.send(Err(error));
                    }
                }
            }
            if !waiting.is_empty() {
                let synced = self.sync();
                for durable in waiting {
                    // The caller may have gone away (kubelet's deadline); the record stays.
                    let _ = durable.send(synced.as_ref().map(|_| ()).map_err(|error| Error::Io {
                        path: self.shared.dir.clone(),
                        source: io::Error::new(error.kind(), error.to_string()),
                    }));
                }
            }
            self.shared.appended.notify_waiters();
        }
    }

    /// Appends one frame to the active segment, `file` (not yet fsynced), making room
    /// first.
    fn write_frame(&mut self, file: &mut File, frame: &[u8]) -> Result<(), Error> {
        let size = frame.len() as u64;
        if size > self.shared.max_bytes {
            return Err(Error::SpoolTooSmall {
                size,
                max: self.shared.max_bytes,
            });
        }
        let rotation_due = self.shared.rotation_due(&self.shared.lock(), size);
        if rotation_due {
            self.rotate(file)?;
        }
        self.make_room(file, size)?;
        self.shared.append_to_active(file, frame)
    }

    /// fsyncs the active segment and lets readers see what it held before the fsync.
    /// Only this thread rotates, so the segment cannot change under it; frames written
    /// in place meanwhile wait for the next fsync.
    fn sync(&mut self) -> io::Result<()> {
        let (active, len) = {
            let state = self.shared.lock();
            (
                state.active,
                state.segments.get(&state.active).copied().unwrap_or(0),
            )
        };
        self.sync_file.sync_data()?;
        let mut state = self.shared.lock();
        if state.active == active {
            state.active_durable = state.active_durable.max(len);
        }
        Ok(())
    }

    /// fsyncs the active segment, `file`, and starts the next one.
    fn rotate(&mut self, file: &mut File) -> Result<(), Error> {
        let active = self.shared.lock().active;
        file.sync_data().map_err(|source| Error::Io {
            path: segment_path(&self.shared.dir, active),
            source,
        })?;
        let next = active + 1;
        let created = create_segment(&self.shared.dir, next)?;
        self.sync_file = created.try_clone().map_err(|source| Error::Io {
            path: segment_path(&self.shared.dir, next),
            source,
        })?;
        *file = created;
        let mut state = self.shared.lock();
        state.active = next;
        state.active_durable = 0;
        state.torn = false;
        state.segments.insert(next, 0);
        Ok(())
    }

    /// Deletes the oldest segments until `size` more bytes fit in the bound, counting the
    /// unacknowledged records they held.
    fn make_room(&mut self, file: &mut File, size: u64) -> Result<(), Error> {
        let mut dropped = 0u64;
        loop {
            let (total, oldest, active, ack) = {
                let state = self.shared.lock();
                (
                    state.segments.values().sum::<u64>(),
                    state.segments.keys().next().copied(),
                    state.active,
                    state.ack,
                )
            };
            if total + size <= self.shared.max_bytes {
                break;
            }
            let Some(oldest) = oldest else { break };
            if oldest == active {
                // Only the active segment is left: close it so that it can go.
                self.rotate(file)?;
                continue;
            }
            let path = segment_path(&self.shared.dir, oldest);
            let from = if ack.segment == oldest { ack.offset } else { 0 };
            let lost = if ack.segment > oldest {
                0
            } else {
                let len = self
                    .shared
                    .lock()
                    .segments
                    .get(&oldest)
                    .copied()
                    .unwrap_or(0);
                match read_range(
                    &path,
                    from,
                    usize::try_from(len.saturating_sub(from)).unwrap_or(usize::MAX),
                ) {
                    Ok(data) => count_frames(&data),
                    // Acknowledged and deleted by the shipper meanwhile: nothing lost.
                    Err(_) if !self.shared.lock().segments.contains_key(&oldest) => continue,
                    // Deleted behind crigate's back, or unreadable: it goes all the same,
                    // or the spool could never make room again; how many records it held
                    // is not known.
                    Err(error) => {
                        tracing::warn!(
                            segment = oldest,
                            %error,
                            "cannot read the spool segment dropped to make room: the records it held are lost (counted as one)"
                        );
                        1
                    }
                }
            };
            let mut state = self.shared.lock();
            state.segments.remove(&oldest);
            if state.ack.segment <= oldest {
                let next = state
                    .segments
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(state.active);
                state.ack = Position {
                    segment: next,
                    offset: 0,
                };
            }
            drop(state);
            remove_file(&path)?;
            dropped += lost;
        }
        if dropped > 0 {
            let total = self.shared.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
            tracing::warn!(
                dropped,
                dropped_total = total,
                max_bytes = self.shared.max_bytes,
                "audit spool full: dropped the oldest unacknowledged records"
            );
            if let Some(socket) = &self.shared.journal_socket {
                let entry = dropped_entry(dropped, total, self.shared.max_bytes);
                if let Err(error) = super::journald::send_blocking(socket, &entry) {
                    tracing::warn!(%error, "cannot report the spool drop to journald");
                }
            }
        }
        Ok(())
    }
}

/// The journald entry reporting a drop.
fn dropped_entry(dropped: u64, total: u64, max_bytes: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let fields = [
        (
            "MESSAGE",
            format!("crigate audit spool full: dropped {dropped} unacknowledged records"),
        ),
        ("MESSAGE_ID", MESSAGE_ID_SPOOL_DROPPED.to_owned()),
        ("PRIORITY", "4".to_owned()),
        (
            "SYSLOG_IDENTIFIER",
            super::journald::SYSLOG_IDENTIFIER.to_owned(),
        ),
        ("CRIGATE_SPOOL_DROPPED", dropped.to_string()),
        ("CRIGATE_SPOOL_DROPPED_TOTAL", total.to_string()),
        ("CRIGATE_SPOOL_MAX_BYTES", max_bytes.to_string()),
    ];
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The frame format, as pure functions (fuzzed through [`crate::fuzzing::spool_segment`]).
pub mod frame {
    use prost::Message;

    use super::{AuditRecord, Error, FRAME_HEADER_BYTES, MAX_RECORD_BYTES};

    /// Why parsing stopped before the end of the data.
    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    pub enum FrameError {
        #[error("partial frame: {missing} bytes missing")]
        Truncated { missing: usize },
        #[error("frame declares {declared} bytes, more than the limit of {MAX_RECORD_BYTES}")]
        TooLarge { declared: usize },
        #[error("frame checksum mismatch")]
        Checksum,
        #[error("frame payload is not an audit record: {0}")]
        Decode(prost::DecodeError),
        /// A zero length with a zero checksum (the CRC-32 of nothing) is what a stretch of
        /// zeros reads as, as a file system leaves blocks never written; every record
        /// encodes to some bytes.
        #[error("frame holds no record")]
        Empty,
        #[error("frame holds a record without an id")]
        NoId,
    }

    /// Frames parsed from the front of a buffer.
    #[derive(Debug, Default)]
    pub struct Parsed {
        pub records: Vec<AuditRecord>,
        /// Bytes of whole, valid frames.
        pub consumed: usize,
        /// Why parsing stopped short of the end, if it did.
        pub error: Option<FrameError>,
    }

    /// One record as a frame.
    ///
    /// # Errors
    ///
    /// The record encodes to more than [`MAX_RECORD_BYTES`].
    pub fn encode(record: &AuditRecord) -> Result<Vec<u8>, Error> {
        let size = record.encoded_len();
        if size > MAX_RECORD_BYTES {
            return Err(Error::RecordTooLarge { size });
        }
        let mut payload = Vec::with_capacity(size);
        // Encoding into a Vec cannot run out of room.
        let _ = record.encode(&mut payload);
        let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + size);
        out.extend_from_slice(&u32::try_from(size).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// The length of the first valid frame of `data` and its payload, or why there is
    /// none.
    pub fn next(data: &[u8]) -> Result<(usize, &[u8]), FrameError> {
        let Some((header, rest)) = data.split_first_chunk::<FRAME_HEADER_BYTES>() else {
            return Err(FrameError::Truncated {
                missing: FRAME_HEADER_BYTES - data.len(),
            });
        };
        let (len, crc) = header.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(crc.try_into().unwrap_or_default());
        if len > MAX_RECORD_BYTES {
            return Err(FrameError::TooLarge { declared: len });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        let Some(payload) = rest.get(..len) else {
            return Err(FrameError::Truncated {
                missing: len - rest.len(),
            });
        };
        if crc32fast::hash(payload) != crc {
            return Err(FrameError::Checksum);
        }
        Ok((FRAME_HEADER_BYTES + len, payload))
    }

    /// Parses up to `max_records` frames from the front of `data`, stopping after the
    /// frame that reaches `max_bytes`.
    pub fn parse(data: &[u8], max_records: usize, max_bytes: usize) -> Parsed {
        let mut parsed = Parsed::default();
        let mut rest = data;
        while !rest.is_empty() && parsed.records.len() < max_records && parsed.consumed < max_bytes
        {
            let (len, payload) = match next(rest) {
                Ok(frame) => frame,
                Err(error) => {
                    parsed.error = Some(error);
                    break;
                }
            };
            match AuditRecord::decode(payload) {
                Ok(record) if record.id.is_empty() => {
                    parsed.error = Some(FrameError::NoId);
                    break;
                }
                Ok(record) => parsed.records.push(record),
                Err(error) => {
                    parsed.error = Some(FrameError::Decode(error));
                    break;
                }
            }
            parsed.consumed += len;
            rest = rest.get(len..).unwrap_or_default();
        }
        parsed
    }

    /// Length of the whole, valid frames at the front of `data`: where a torn or
    /// corrupt tail begins.
    pub fn valid_prefix(data: &[u8]) -> usize {
        parse(data, usize::MAX, usize::MAX).consumed
    }

    /// Where the next whole, valid frame starts in `data`, which starts with a damaged
    /// one: at each later offset a frame must have a length that fits, a matching
    /// checksum and a record with an id.
    pub fn next_valid(data: &[u8]) -> Option<usize> {
        (1..data.len()).find(|&at| {
            data.get(at..)
                .is_some_and(|rest| !parse(rest, 1, usize::MAX).records.is_empty())
        })
    }
}

/// Number of whole frames at the front of `data`, checksums not checked (for counting a
/// segment's records before it is dropped).
fn count_frames(data: &[u8]) -> u64 {
    let mut count = 0;
    let mut rest = data;
    while let Some((header, _)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*header) as usize;
        let Some(next) = rest.get(FRAME_HEADER_BYTES + len..) else {
            break;
        };
        count += 1;
        rest = next;
    }
    count
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SEGMENT_SUFFIX}"))
}

/// Takes the spool directory's lock, or says who has it.
fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<File>, Error> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => Error::InUse {
            path: dir.to_owned(),
        },
        errno => Error::Io {
            path,
            source: errno.into(),
        },
    })
}

fn create_segment(dir: &Path, seq: u64) -> Result<File, Error> {
    let path = segment_path(dir, seq);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    sync_dir(dir)?;
    Ok(file)
}

fn remove_file(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })
}

fn read_range(path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut data = Vec::new();
    file.take(len as u64).read_to_end(&mut data).map_err(io)?;
    Ok(data)
}

/// Cuts `path` after its last whole, valid frame, returning the new length and how many
/// unshipped records were lost (`shipped`: the cursor's offset in this segment).
///
/// A crash tears at most the last frame, which is cut off. Damage anywhere else (a frame
/// damaged on disk, or a stretch of zeros where blocks were never written) is left where
/// it is, with the whole frames after it: the shipper passes over it (counting what it
/// held) and reads on, and every offset, the cursor's too, keeps naming the same bytes.
/// Only what follows the last whole frame is cut.
fn recover_tail(path: &Path, len: u64, shipped: u64) -> Result<(u64, u64), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let data = read_range(path, 0, usize::try_from(len).unwrap_or(usize::MAX))?;
    let valid = frame::valid_prefix(&data);
    if valid as u64 >= len {
        return Ok((len, 0));
    }
    // The end of the last whole frame, past any damage.
    let (mut end, mut at) = (valid, valid);
    while let Some(rest) = data.get(at..).filter(|rest| !rest.is_empty()) {
        let whole = frame::valid_prefix(rest);
        if whole > 0 {
            at += whole;
            end = at;
            continue;
        }
        match frame::next_valid(rest) {
            Some(skip) => at += skip,
            None => break,
        }
    }
    let cut = data.get(end..).unwrap_or_default();
    let torn = matches!(frame::next(cut), Err(frame::FrameError::Truncated { .. }));
    // What is cut held a record unless it is a torn last frame; one already shipped
    // is no loss.
    let lost = u64::from(!torn && end as u64 >= shipped);
    if end > valid {
        tracing::error!(
            segment = %path.display(),
            damaged_at = valid,
            "spool segment is damaged; the records after the damage are kept and shipped"
        );
    }
    if (end as u64) < len {
        if torn {
            tracing::warn!(
                segment = %path.display(),
                cut_bytes = len - end as u64,
                "spool segment ends in a partial frame; cutting it off"
            );
        } else {
            tracing::error!(
                segment = %path.display(),
                cut_bytes = len - end as u64,
                lost,
                "spool segment ends in a damaged frame; cutting it off"
            );
        }
        let file = OpenOptions::new().write(true).open(path).map_err(io)?;
        file.set_len(end as u64)
            .and_then(|()| file.sync_all())
            .map_err(io)?;
    }
    Ok((end as u64, lost))
}

fn read_ack(dir: &Path) -> Option<Position> {
    let data = fs::read(dir.join(ACK_FILE)).ok()?;
    let bytes: &[u8; ACK_BYTES] = data.as_slice().try_into().ok()?;
    let (body, crc) = bytes.split_at(16);
    if crc32fast::hash(body).to_le_bytes() != crc {
        tracing::warn!(dir = %dir.display(), "spool cursor is corrupt; shipping again from the oldest record");
        return None;
    }
    let (segment, offset) = body.split_at(8);
    Some(Position {
        segment: u64::from_le_bytes(segment.try_into().ok()?),
        offset: u64::from_le_bytes(offset.try_into().ok()?),
    })
}

fn write_ack(dir: &Path, position: Position) -> Result<(), Error> {
    let mut body = Vec::with_capacity(ACK_BYTES);
    body.extend_from_slice(&position.segment.to_le_bytes());
    body.extend_from_slice(&position.offset.to_le_bytes());
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(ACK_TMP);
    let io = |source| Error::Io {
        path: tmp.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(&body).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, dir.join(ACK_FILE)).map_err(io)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests;
