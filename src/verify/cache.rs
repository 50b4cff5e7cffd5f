//! The verdict cache: one verdict per (image digest, policy fingerprint), bounded,
//! single-flight, and persisted so that a restarted node whose registry is down still
//! starts the images it verified before.
//!
//! - **Keys** bind a verdict to the exact content and the exact policy that produced it:
//!   a policy change (a new fingerprint) never reuses an old verdict.
//! - **TTLs**: trusted verdicts live `positive_ttl`, rejections `negative_ttl` (shorter,
//!   so a newly signed image is picked up soon). Errors (registry down) are never cached,
//!   nor rejections that are not lasting (a revocation status no source could settle):
//!   those are shared with the callers waiting for them, and verified anew after.
//! - **Single flight**: concurrent requests for one key wait for one verification. The
//!   verification runs as a task of its own, so a caller that gives up (kubelet's
//!   deadline) does not cancel it for the others, and its result still lands here.
//! - **Bounded**: at most `max_entries` verdicts; past that, expired entries go first,
//!   then the oldest (a thirty-second of the bound at once, so that a full cache scans
//!   its entries once per that many new verdicts, not on every one).
//! - **Compact**: 100,000 verdicts must fit in 64 MiB (README, "Performance"). A settled
//!   verdict is kept inline in the map: the digest as bytes, not hex; no eviction queue
//!   (a sequence number orders entries); the issuer and trust-material name, which most
//!   verdicts of one policy share, stored once. The single-flight cell exists only while
//!   a verification is in flight.
//! - **Persisted**: each new verdict is appended to a JSON-lines file, which is read back
//!   at start (entries already expired are dropped) and compacted when it grows. A reload
//!   opens the cache anew: the cache it replaces appends to the file the new one wrote
//!   until it is dropped, its verdicts put in the new one's memory too, and only the
//!   newest compacts (`CacheFile`). What the old one verifies while the new one reads the
//!   file is kept in neither's file, and verified again after a restart. The file
//!   is trusted state: whoever can write it can make crigate allow an image, so it lives
//!   in a root-only directory (`StateDirectory=crigate`, mode 0700).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::{Rejection, Signer, Verdict, VerifierKind};
use crate::oci::{Digest, DigestAlgorithm};

/// The largest cache file read back at start. 100,000 verdicts are ~40 MiB of JSON; a
/// larger file is not one crigate wrote.
const MAX_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// The hash of a policy's effective content, recorded with every decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint([u8; 32]);

/// What the cache is keyed by: a digest, and the fingerprint of everything else the
/// verdict depends on. Build it with [`CacheKey::new`], which takes the repository into
/// account: the same bytes can be trusted in one repository and not in another (a Notation
/// trust policy is selected by repository; a cosign signature names its repository).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CacheKey {
    pub digest: Digest,
    pub fingerprint: Fingerprint,
}

/// Cache settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
    pub max_entries: usize,
    /// The persistence file; `None` keeps verdicts in memory only.
    pub path: Option<PathBuf>,
}

/// Where a verdict came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Found in the cache, unexpired.
    Cache,
    /// Verified for this call (possibly shared with concurrent callers).
    Verified,
}

/// Lookups of [`VerdictCache::get_or_verify`] answered from the cache (hits) and sent to
/// verification (misses, including callers that waited for a verification already in
/// flight). Shared across the caches a daemon builds on each reload.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Why the persistence file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the verdict cache {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A verification that failed to decide, as the cache reports it to its caller.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError<E> {
    #[error(transparent)]
    Verify(E),
    #[error("the verification task ended without a result")]
    Aborted,
}

/// The verdict cache. Cheap to share behind an `Arc`.
pub struct VerdictCache {
    /// Which cache of this process it is, for [`CacheFile::owner`].
    id: u64,
    config: CacheConfig,
    stats: Arc<CacheStats>,
    /// Shared with the verification tasks, which settle their slot when done.
    state: Arc<Mutex<State>>,
    file: Option<Arc<CacheFile>>,
}

struct State {
    slots: HashMap<SlotKey, Slot>,
    /// The sequence number of the next slot: insertion order, for eviction.
    next_seq: u64,
    /// Issuers and trust-material names of stored verdicts, each kept once.
    shared: HashSet<Arc<str>>,
}

/// A [`CacheKey`] as the map holds it: the digest as bytes.
#[derive(Clone, PartialEq, Eq)]
struct SlotKey {
    digest: RawDigest,
    fingerprint: Fingerprint,
}

/// A digest's hash bytes. sha512 digests are rare in registries; boxing them keeps every
/// key at the size of a sha256 one.
#[derive(Clone, PartialEq, Eq)]
enum RawDigest {
    Sha256([u8; 32]),
    Sha512(Box<[u8; 64]>),
}

struct Slot {
    /// Insertion order: lower is older.
    seq: u64,
    state: SlotState,
}

enum SlotState {
    /// A verification in flight (or one whose callers all left before it settled);
    /// concurrent callers wait on the cell.
    Pending(Arc<OnceCell<Entry>>),
    /// A verdict, settled.
    Ready(Stored),
}

/// An [`Entry`] as the map holds it.
struct Stored {
    expires: u64,
    verdict: StoredVerdict,
}

enum StoredVerdict {
    Trusted(StoredSigner),
    /// Rejections are few next to trusted verdicts; boxed, they do not widen every slot.
    Rejected(Box<Rejection>),
}

/// A [`Signer`] as the map holds it.
struct StoredSigner {
    verifier: VerifierKind,
    identity: Box<str>,
    issuer: Option<Arc<str>>,
    matched: Arc<str>,
    /// `None` when it is the key's digest, as it is unless an index was signed.
    signed_digest: Option<Box<Digest>>,
}

/// The persistence file, appended to by the one task that made each verdict. A cache's
/// file is shared by every cache of the process opened on its path: the one a
/// reload replaced goes on appending what it verifies until it is dropped, to the file
/// the new one wrote, and only the newest rewrites it.
struct CacheFile {
    path: PathBuf,
    file: Mutex<Open>,
    /// The cache that last opened the path, the only one that compacts. Replaced under
    /// `file`'s lock, and locked after it.
    owner: Mutex<Owner>,
}

/// A [`CacheFile`] as open for appending.
struct Open {
    file: File,
    /// How many lines it holds.
    lines: usize,
    /// While a compaction is under way: the text of the lines appended since it began,
    /// and how many they are, for the file that takes this one's place.
    since: Option<(Vec<u8>, usize)>,
    /// Counts the times the file was written anew for a new owner: a compaction begun
    /// before that is of a file no longer there.
    generation: u64,
}

/// The newest cache of a [`CacheFile`]: the verdicts a cache it replaced appends are put
/// in its memory too, so that its own compaction keeps them.
struct Owner {
    id: u64,
    state: Weak<Mutex<State>>,
    config: CacheConfig,
}

/// The id of the next cache opened.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(0);

/// The file of each path a live cache has open.
static OPEN_FILES: Mutex<Vec<Weak<CacheFile>>> = Mutex::new(Vec::new());

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    verdict: Verdict,
    /// Seconds since the Unix epoch; wall-clock, so it survives a restart.
    expires: u64,
}

#[derive(Serialize, Deserialize)]
struct Line {
    /// Named `verdict_for`, not `key` as builds before [`Header`] name it: those builds
    /// cannot parse a line of a later one, and skip it.
    #[serde(rename = "verdict_for")]
    key: CacheKey,
    #[serde(flatten)]
    entry: Entry,
}

/// The first line of a cache file: the build of crigate that wrote it. Verdicts outlive
/// a restart of that build only: a build that judges signatures otherwise (a fix to a
/// check, a new one) must not take the verdicts of the one before it, which may be
/// trusted for up to `positive_ttl`. A build before this header reads it, and every
/// verdict line after it ([`Line`]), as lines it cannot parse, and skips them: a
/// downgrade to such a build starts with no verdicts too.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    crigate_build: String,
}

// === impl CacheKey ===

impl CacheKey {
    /// The key of a verdict on `digest` in `repository` (`registry/path`, as the image is
    /// pulled by) under the requirement whose fingerprint is `requirement`.
    pub fn new(repository: &str, digest: Digest, requirement: Fingerprint) -> Self {
        Self {
            digest,
            fingerprint: requirement.scoped(repository.as_bytes()),
        }
    }
}

// === impl CacheStats ===

impl CacheStats {
    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that went to verification.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

// === impl VerdictCache ===

impl VerdictCache {
    /// A cache, loading unexpired verdicts from `config.path` if set.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or written. Lines that do not parse are skipped with a
    /// warning (a torn last line after a crash is expected); a file too large to read, or
    /// written by another build, gives no verdicts.
    pub fn open(config: CacheConfig) -> Result<Self, Error> {
        let id = NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed);
        let mut state = State {
            slots: HashMap::new(),
            next_seq: 0,
            shared: HashSet::new(),
        };
        let mut file = None;
        if let Some(path) = &config.path {
            let loaded = load(path, crate::VERSION)?;
            let now = now_secs();
            for line in loaded.into_iter().filter(|l| l.entry.expires > now) {
                state.adopt(&line.key, line.entry, &config, now);
            }
        }
        let state = Arc::new(Mutex::new(state));
        if let Some(path) = &config.path {
            file = Some(CacheFile::take_over(path, &state, id, &config)?);
        }
        Ok(Self {
            id,
            config,
            stats: Arc::default(),
            state,
            file,
        })
    }

    /// The cache counting its hits and misses into `stats`.
    #[must_use]
    pub fn with_stats(mut self, stats: Arc<CacheStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The unexpired verdict for `key`, if any. Never waits for a verification.
    pub fn get(&self, key: &CacheKey) -> Option<Verdict> {
        let slot_key = SlotKey::new(key);
        let now = now_secs();
        let state = self.lock();
        match &state.slots.get(&slot_key)?.state {
            SlotState::Ready(stored) => {
                (stored.expires > now).then(|| stored.verdict.to_verdict(&key.digest))
            }
            SlotState::Pending(cell) => {
                let entry = cell.get()?;
                (entry.expires > now).then(|| entry.verdict.clone())
            }
        }
    }

    /// As [`VerdictCache::get`], counted as a hit when it finds one: the lookup
    /// [`VerdictCache::get_or_verify`] would make, without preparing a verification.
    pub fn hit(&self, key: &CacheKey) -> Option<Verdict> {
        let verdict = self.get(key)?;
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(verdict)
    }

    /// The verdict for `key`: from the cache, or from `verify`, run once however many
    /// callers ask concurrently. A verification error is not cached: it is returned to
    /// the caller whose `verify` ran, and a caller that was waiting for that verification
    /// runs its own (each bounded by its caller's deadline).
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future does not cancel the verification: it runs as its own
    /// task and its verdict is cached for the next caller.
    ///
    /// # Errors
    ///
    /// `verify` failed to decide, or its task panicked.
    pub async fn get_or_verify<F, Fut, E>(
        &self,
        key: CacheKey,
        verify: F,
    ) -> Result<(Verdict, Source), VerifyError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Verdict, E>> + Send + 'static,
        E: Send + 'static,
    {
        let slot_key = SlotKey::new(&key);
        let now = now_secs();
        let cell = {
            let mut state = self.lock();
            let pending = match state.slots.get(&slot_key).map(|slot| &slot.state) {
                Some(SlotState::Ready(stored)) if stored.expires > now => {
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((stored.verdict.to_verdict(&key.digest), Source::Cache));
                }
                Some(SlotState::Pending(cell)) => match cell.get() {
                    Some(entry) if entry.expires > now => {
                        self.stats.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok((entry.verdict.clone(), Source::Cache));
                    }
                    // Another caller is verifying, or one failed: wait for it, or
                    // take over, below.
                    None => Some(cell.clone()),
                    Some(_) => None,
                },
                // Expired, or absent.
                _ => None,
            };
            match pending {
                Some(cell) => cell,
                None => {
                    let cell = Arc::new(OnceCell::new());
                    state.insert(
                        slot_key.clone(),
                        SlotState::Pending(cell.clone()),
                        self.config.max_entries,
                    );
                    cell
                }
            }
        };
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let (positive, negative) = (self.config.positive_ttl, self.config.negative_ttl);
        let (file, id) = (self.file.clone(), self.id);
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            let made_here = std::sync::atomic::AtomicBool::new(false);
            let entry = cell
                .get_or_try_init(|| async {
                    let verdict = verify().await?;
                    let now = now_secs();
                    let until = now.saturating_add(ttl(&verdict, positive, negative).as_secs());
                    let expires = match &verdict {
                        // A trusted verdict ends where the signature's trust ends, if
                        // that comes before the TTL: an expired signature is not
                        // admitted from the cache.
                        Verdict::Trusted(signer) => signer
                            .valid_until
                            .map_or(until, |valid| until.min(unix_secs(valid))),
                        // One not lasting is shared with the callers waiting now, and
                        // with nobody after.
                        Verdict::Rejected(_) => until,
                    };
                    made_here.store(true, Ordering::Relaxed);
                    Ok(Entry { verdict, expires })
                })
                .await?
                .clone();
            // Once per verification, by the task that made it, once it is in the cell:
            // where a compaction reading the cache finds it, or else appended after the
            // compaction began, and so held for the file it writes.
            if let (Some(file), true) = (&file, made_here.load(Ordering::Relaxed)) {
                if entry.expires > now_secs() {
                    file.append(&key, &entry, id);
                }
            }
            // Every waiter tries; the first replaces the cell with the stored verdict,
            // unless the slot was evicted or replaced meanwhile.
            lock(&state).settle(&slot_key, &key.digest, &cell);
            Ok(entry)
        });
        let entry = match task.await {
            Ok(Ok(entry)) => entry,
            Ok(Err(error)) => return Err(VerifyError::Verify(error)),
            Err(_) => return Err(VerifyError::Aborted),
        };
        self.compact_if_needed();
        Ok((entry.verdict, Source::Verified))
    }

    /// How many verdicts the cache holds (pending verifications included).
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rewrites the file with the live entries once it holds more than twice as many
    /// lines, on tokio's blocking pool: writing out a full cache (100,000 verdicts, tens
    /// of MiB) and its fsync take long enough to hold up the thread that relays CRI
    /// calls. Best effort: a failure is logged and the file keeps growing until the next
    /// attempt.
    fn compact_if_needed(&self) {
        let Some(file) = &self.file else { return };
        let live = self.lock().slots.len();
        let generation = {
            let mut open = file.lock();
            // One compaction at a time; and a cache a reload replaced would write its
            // own verdicts over the new one's.
            if open.lines <= 2 * live.max(1024)
                || open.since.is_some()
                || file.owner().id != self.id
            {
                return;
            }
            open.since = Some((Vec::new(), 0));
            open.generation
        };
        let compaction = Compaction {
            file: file.clone(),
            generation,
            done: false,
        };
        let compact = {
            let state = self.state.clone();
            move || compaction.run(&state)
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(compact)),
            Err(_) => compact(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // What the cache guards (its map and set, a file and its line count, the record of
    // its owner) stays usable after a panic mid-update.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long `verdict` is kept from when it is made: `positive` when trusted, `negative`
/// when rejected, and not at all when the rejection is not lasting.
fn ttl(verdict: &Verdict, positive: Duration, negative: Duration) -> Duration {
    match verdict {
        Verdict::Trusted(_) => positive,
        Verdict::Rejected(rejection) if !rejection.is_lasting() => Duration::ZERO,
        Verdict::Rejected(_) => negative,
    }
}

// === impl CacheFile ===

impl CacheFile {
    /// Writes `state` as the file at `path` for the cache `id`, which compacts it from
    /// now on. A cache still holding the path (the one a reload replaces) appends to the
    /// new file from here, its new verdicts also put in `state`, and no longer compacts.
    fn take_over(
        path: &Path,
        state: &Arc<Mutex<State>>,
        id: u64,
        config: &CacheConfig,
    ) -> Result<Arc<Self>, Error> {
        let owner = Owner {
            id,
            state: Arc::downgrade(state),
            config: config.clone(),
        };
        let mut files = lock(&OPEN_FILES);
        files.retain(|file| file.strong_count() > 0);
        let open = files
            .iter()
            .filter_map(Weak::upgrade)
            .find(|file| file.path == path);
        // Written and flushed beside the file first: a cache still appending waits only
        // for the rename.
        let (text, lines) = file_text(lock(state).lines());
        let staged = stage(path, &path.with_extension(format!("tmp.{id}")), &text)?;
        if let Some(file) = open {
            // Under the lock a compaction installs under: one begun before is dropped.
            let mut held = file.lock();
            held.file = install(&staged, path)?;
            held.lines = lines;
            held.since = None;
            held.generation += 1;
            *file.owner() = owner;
            drop(held);
            return Ok(file);
        }
        let file = Arc::new(Self {
            path: path.to_owned(),
            file: Mutex::new(Open {
                file: install(&staged, path)?,
                lines,
                since: None,
                generation: 0,
            }),
            owner: Mutex::new(owner),
        });
        files.push(Arc::downgrade(&file));
        Ok(file)
    }

    /// Appends one verdict, made by the cache `id`. Best effort: a failure is logged and
    /// the verdict stays cached in memory. A line is a few hundred bytes written without
    /// fsync, once per new verdict; a torn line after a crash is skipped at load.
    fn append(&self, key: &CacheKey, entry: &Entry, id: u64) {
        let line = Line {
            key: key.clone(),
            entry: entry.clone(),
        };
        let result = serde_json::to_string(&line)
            .map_err(std::io::Error::other)
            .and_then(|mut text| {
                text.push('\n');
                let mut open = self.lock();
                open.file.write_all(text.as_bytes())?;
                open.lines += 1;
                if let Some((since, count)) = &mut open.since {
                    since.extend_from_slice(text.as_bytes());
                    *count += 1;
                }
                // Made by a cache a reload replaced: the newest holds it too, so that the
                // file keeps it when that one compacts.
                let owner = self.owner();
                if owner.id != id {
                    if let Some(state) = owner.state.upgrade() {
                        lock(&state).adopt(key, entry.clone(), &owner.config, now_secs());
                    }
                }
                Ok(())
            });
        if let Err(error) = result {
            tracing::warn!(path = %self.path.display(), %error, "cannot persist a verdict");
        }
    }

    /// Writes the verdicts `state` holds as the file anew, with what was appended
    /// meanwhile, unless the file was written anew for another cache since `generation`
    /// ([`VerdictCache::compact_if_needed`]). `state` is read a part at a time, so that
    /// its lock, which every lookup takes, is never held for long.
    fn compact(&self, state: &Mutex<State>, generation: u64) {
        // A name of its own: a compaction begun before a reload may still be writing.
        let tmp = self
            .path
            .with_extension(format!("tmp.compaction.{generation}"));
        let (text, lines) = file_text(State::lines_in_parts(state));
        let staged = stage(&self.path, &tmp, &text);
        drop(text);
        let mut open = self.lock();
        // Taken over meanwhile: the appends held are the new owner's compaction's.
        if open.generation != generation {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let (since, count) = open.since.take().unwrap_or_default();
        let installed = staged.and_then(|staged| {
            let appended = OpenOptions::new()
                .append(true)
                .open(&staged)
                .and_then(|mut file| file.write_all(&since));
            if let Err(source) = appended {
                let _ = std::fs::remove_file(&staged);
                return Err(Error::Open {
                    path: self.path.clone(),
                    source,
                });
            }
            install(&staged, &self.path)
        });
        match installed {
            Ok(file) => {
                open.file = file;
                open.lines = lines + count;
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot compact the verdict cache")
            }
        }
    }

    fn owner(&self) -> std::sync::MutexGuard<'_, Owner> {
        lock(&self.owner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        lock(&self.file)
    }
}

// === impl Compaction ===

/// One compaction of a [`CacheFile`], begun at `generation`: if it never ends (its task
/// dropped as the runtime shuts down), the appends held for it are let go, so that the
/// next can begin.
struct Compaction {
    file: Arc<CacheFile>,
    generation: u64,
    done: bool,
}

impl Compaction {
    fn run(mut self, state: &Mutex<State>) {
        self.file.compact(state, self.generation);
        self.done = true;
    }
}

impl Drop for Compaction {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut open = self.file.lock();
        if open.generation == self.generation {
            open.since = None;
        }
    }
}

// === impl State ===

impl State {
    /// Takes in `entry` for `key`, made by another cache (read from the file, or made by
    /// the cache a reload replaced), under `config`. A verdict made under a longer TTL
    /// than the one configured now lives no longer than that TTL from `now`: lowering it
    /// (a signer found untrustworthy where no file changed, say) bounds what was cached
    /// before. A verification in flight for `key` is left to finish.
    fn adopt(&mut self, key: &CacheKey, mut entry: Entry, config: &CacheConfig, now: u64) {
        let ttl = ttl(&entry.verdict, config.positive_ttl, config.negative_ttl);
        entry.expires = entry.expires.min(now.saturating_add(ttl.as_secs()));
        let slot_key = SlotKey::new(key);
        let pending = self
            .slots
            .get(&slot_key)
            .is_some_and(|slot| matches!(slot.state, SlotState::Pending(_)));
        if entry.expires <= now || pending {
            return;
        }
        let stored = self.store(&key.digest, entry);
        self.insert(slot_key, SlotState::Ready(stored), config.max_entries);
    }

    fn insert(&mut self, key: SlotKey, state: SlotState, max: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.insert(key, Slot { seq, state });
        if self.slots.len() > max {
            self.evict(max);
        }
    }

    /// Brings the cache back under `max`: expired entries first, then the oldest, down
    /// to `max - max / 32` so that the next inserts do not scan again.
    fn evict(&mut self, max: usize) {
        let now = now_secs();
        self.slots.retain(|_, slot| !slot.is_expired(now));
        if self.slots.len() > max {
            let excess = self.slots.len() - (max - max / 32);
            let mut seqs: Vec<u64> = self.slots.values().map(|slot| slot.seq).collect();
            // Sequence numbers are unique: exactly `excess` slots are at or below this.
            let (_, &mut newest_out, _) = seqs.select_nth_unstable(excess.saturating_sub(1));
            self.slots.retain(|_, slot| slot.seq > newest_out);
        }
        self.shared.retain(|s| Arc::strong_count(s) > 1);
    }

    /// Replaces the pending `cell` of `key` with its verdict, if the slot still holds it.
    fn settle(&mut self, key: &SlotKey, digest: &Digest, cell: &Arc<OnceCell<Entry>>) {
        let Some(entry) = cell.get() else { return };
        let current = self.slots.get(key).map(|slot| &slot.state);
        if !matches!(current, Some(SlotState::Pending(c)) if Arc::ptr_eq(c, cell)) {
            return;
        }
        let stored = self.store(digest, entry.clone());
        if let Some(slot) = self.slots.get_mut(key) {
            slot.state = SlotState::Ready(stored);
        }
    }

    /// `entry` as the map keeps it, for the key whose digest is `digest`.
    fn store(&mut self, digest: &Digest, entry: Entry) -> Stored {
        let verdict = match entry.verdict {
            Verdict::Trusted(signer) => StoredVerdict::Trusted(StoredSigner {
                verifier: signer.verifier,
                identity: signer.identity.into_boxed_str(),
                issuer: signer.issuer.map(|issuer| self.share(issuer)),
                matched: self.share(signer.matched),
                signed_digest: (signer.signed_digest != *digest)
                    .then(|| Box::new(signer.signed_digest)),
            }),
            Verdict::Rejected(rejection) => StoredVerdict::Rejected(Box::new(rejection)),
        };
        // Unused shared strings go at eviction; a cache that never fills drops them here.
        if self.shared.len() > 2 * self.slots.len() + 64 {
            self.shared.retain(|s| Arc::strong_count(s) > 1);
        }
        Stored {
            expires: entry.expires,
            verdict,
        }
    }

    /// The one shared copy of `text`.
    fn share(&mut self, text: String) -> Arc<str> {
        if let Some(shared) = self.shared.get(text.as_str()) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.shared.insert(shared.clone());
        shared
    }

    /// Each settled verdict with its key, for the persistence file.
    /// In the order they were made, so that a cache read back from the file evicts the
    /// oldest first, as this one would.
    fn lines(&self) -> impl Iterator<Item = Line> + '_ {
        let mut slots: Vec<_> = self.slots.iter().collect();
        slots.sort_unstable_by_key(|(_, slot)| slot.seq);
        slots
            .into_iter()
            .filter_map(|(key, slot)| Self::line(key, slot))
    }

    /// As [`State::lines`], from `state` locked for a part of them at a time: what is
    /// settled or evicted meanwhile is seen or not, as it falls.
    fn lines_in_parts(state: &Mutex<State>) -> impl Iterator<Item = Line> + '_ {
        const PART: usize = 1024;
        let mut keys: Vec<(u64, SlotKey)> = lock(state)
            .slots
            .iter()
            .map(|(key, slot)| (slot.seq, key.clone()))
            .collect();
        keys.sort_unstable_by_key(|(seq, _)| *seq);
        let mut next = 0;
        std::iter::from_fn(move || {
            let part = keys.get(next..keys.len().min(next + PART))?;
            next += PART;
            let state = lock(state);
            let lines: Vec<Line> = part
                .iter()
                .filter_map(|(_, key)| Self::line(key, state.slots.get(key)?))
                .collect();
            (!part.is_empty()).then_some(lines)
        })
        .flatten()
    }

    /// The file's line for `slot`, unless its verification is still in flight.
    fn line(key: &SlotKey, slot: &Slot) -> Option<Line> {
        let digest = key.digest.to_digest()?;
        let entry = match &slot.state {
            SlotState::Ready(stored) => Entry {
                verdict: stored.verdict.to_verdict(&digest),
                expires: stored.expires,
            },
            SlotState::Pending(cell) => cell.get()?.clone(),
        };
        Some(Line {
            key: CacheKey {
                digest,
                fingerprint: key.fingerprint,
            },
            entry,
        })
    }
}

// === impl Slot ===

impl Slot {
    /// Whether this slot holds a verdict past its TTL; pending slots have none yet.
    fn is_expired(&self, now: u64) -> bool {
        match &self.state {
            SlotState::Ready(stored) => stored.expires <= now,
            SlotState::Pending(cell) => cell.get().is_some_and(|e| e.expires <= now),
        }
    }
}

// === impl SlotKey ===

impl std::hash::Hash for SlotKey {
    /// The bytes alone, in one write each: the derived impl adds a discriminant and
    /// length prefixes to hash, which a lookup pays for on every call. Equal keys still
    /// hash equally; the input lengths (64 or 96 bytes) keep the two kinds apart.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match &self.digest {
            RawDigest::Sha256(bytes) => state.write(bytes),
            RawDigest::Sha512(bytes) => state.write(bytes.as_slice()),
        }
        state.write(&self.fingerprint.0);
    }
}

impl SlotKey {
    fn new(key: &CacheKey) -> Self {
        let encoded = key.digest.encoded().as_bytes();
        let digest = match key.digest.algorithm() {
            DigestAlgorithm::Sha256 => RawDigest::Sha256(decode_hex(encoded)),
            DigestAlgorithm::Sha512 => RawDigest::Sha512(Box::new(decode_hex(encoded))),
        };
        Self {
            digest,
            fingerprint: key.fingerprint,
        }
    }
}

/// The bytes of the lowercase hex in `encoded`. `Digest` guarantees its encoded part is
/// lowercase hex of its algorithm's length (OCI image spec, "Digests"), so nothing is
/// left over or short; this only decodes, it does not check. It runs on every lookup.
fn decode_hex<const N: usize>(encoded: &[u8]) -> [u8; N] {
    // '0'..='9' are 0x30..=0x39 (bit 6 clear), 'a'..='f' are 0x61..=0x66 (bit 6 set):
    // the low four bits, plus 9 for a letter.
    fn nibble(c: u8) -> u8 {
        (c & 0x0f) + 9 * (c >> 6)
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(encoded.chunks_exact(2)) {
        if let [high, low] = pair {
            *byte = (nibble(*high) << 4) | nibble(*low);
        }
    }
    out
}

// === impl RawDigest ===

impl RawDigest {
    /// The digest these bytes came from; `None` cannot happen for bytes of a `Digest`.
    fn to_digest(&self) -> Option<Digest> {
        let text = match self {
            RawDigest::Sha256(bytes) => format!("sha256:{}", hex::encode(bytes)),
            RawDigest::Sha512(bytes) => format!("sha512:{}", hex::encode(bytes.as_slice())),
        };
        text.parse().ok()
    }
}

// === impl StoredVerdict ===

impl StoredVerdict {
    /// The verdict, for a key whose digest is `digest`.
    fn to_verdict(&self, digest: &Digest) -> Verdict {
        match self {
            StoredVerdict::Trusted(signer) => Verdict::Trusted(Signer {
                verifier: signer.verifier,
                identity: String::from(&*signer.identity),
                issuer: signer.issuer.as_deref().map(String::from),
                matched: String::from(&*signer.matched),
                signed_digest: match &signer.signed_digest {
                    Some(signed) => Digest::clone(signed),
                    None => digest.clone(),
                },
                // The entry's own expiry already ends where the signature's trust ends.
                valid_until: None,
            }),
            StoredVerdict::Rejected(rejection) => Verdict::Rejected(Rejection::clone(rejection)),
        }
    }
}

/// Reads the cache file, bounded; lines that do not parse are skipped. A file written
/// by another build than `build` ([`Header`]), or larger than [`MAX_FILE_BYTES`], gives
/// no verdicts: the cache is only a saving, and the file is written anew once opened.
fn load(path: &Path, build: &str) -> Result<Vec<Line>, Error> {
    let open = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(open(error)),
    };
    let size = file.metadata().map_err(open)?.len();
    if size > MAX_FILE_BYTES {
        tracing::error!(
            path = %path.display(),
            size,
            limit = MAX_FILE_BYTES,
            "the verdict cache file is larger than crigate reads; starting with no cached verdicts"
        );
        return Ok(Vec::new());
    }
    let mut reader = BufReader::new(file.take(MAX_FILE_BYTES)).lines();
    let written_by = reader
        .next()
        .and_then(Result::ok)
        .and_then(|first| serde_json::from_str::<Header>(&first).ok())
        .map(|header| header.crigate_build);
    if written_by.as_deref() != Some(build) {
        tracing::info!(
            path = %path.display(),
            written_by = written_by.as_deref().unwrap_or("a build before the header"),
            "the verdict cache file was written by another build of crigate; its verdicts are not used"
        );
        return Ok(Vec::new());
    }
    let mut lines = Vec::new();
    let mut skipped = 0usize;
    for line in reader {
        let Ok(line) = line else {
            skipped += 1;
            continue;
        };
        match serde_json::from_str::<Line>(&line) {
            Ok(parsed) => lines.push(parsed),
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::warn!(path = %path.display(), skipped, "skipped unreadable lines in the verdict cache");
    }
    Ok(lines)
}

/// The text of a cache file holding `lines`, and how many it holds.
fn file_text(lines: impl Iterator<Item = Line>) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let header = Header {
        crigate_build: crate::VERSION.to_owned(),
    };
    if let Ok(text) = serde_json::to_string(&header) {
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    }
    let mut count = 0;
    for line in lines {
        if let Ok(text) = serde_json::to_string(&line) {
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
            count += 1;
        }
    }
    (out, count)
}

/// Writes `text` to `tmp`, flushed, to take `path`'s place.
fn stage(path: &Path, tmp: &Path, text: &[u8]) -> Result<PathBuf, Error> {
    let open = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(tmp).map_err(open)?;
    if let Err(error) = file.write_all(text).and_then(|()| file.sync_all()) {
        // A full disk: not left to fill it further.
        let _ = std::fs::remove_file(tmp);
        return Err(open(error));
    }
    Ok(tmp.to_owned())
}

/// Renames the staged `tmp` over `path` and opens it for appending.
fn install(tmp: &Path, path: &Path) -> Result<File, Error> {
    let open = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    if let Err(error) = std::fs::rename(tmp, path) {
        // Not left behind: each reload stages under a name of its own.
        let _ = std::fs::remove_file(tmp);
        return Err(open(error));
    }
    OpenOptions::new().append(true).open(path).map_err(open)
}

fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

/// Whole seconds since the Unix epoch, rounded down (0 before it).
fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

// === impl Fingerprint ===

impl Fingerprint {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The hash's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The SHA-256 of `content`.
    pub fn of(content: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(content).into())
    }

    /// This fingerprint narrowed to `scope`: the SHA-256 of its bytes followed by
    /// `scope`'s. Distinct scopes give distinct fingerprints; the same scope, the same one.
    pub fn scoped(&self, scope: &[u8]) -> Self {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.0);
        hasher.update(scope);
        Self(hasher.finalize().into())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl From<Fingerprint> for String {
    fn from(fingerprint: Fingerprint) -> Self {
        fingerprint.to_string()
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&value, &mut bytes)
            .map_err(|e| format!("invalid fingerprint {value:?}: {e}"))?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests;
