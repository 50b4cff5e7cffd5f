//! The verdict cache: one verdict per (image digest, policy fingerprint), bounded,
//! single-flight, and persisted so that a restarted node whose registry is down still
//! starts the images it verified before.
//!
//! - **Keys** bind a verdict to the exact content and the exact policy that produced it:
//!   a policy change (a new fingerprint) never reuses an old verdict.
//! - **TTLs**: trusted verdicts live `positive_ttl`, rejections `negative_ttl` (shorter,
//!   so a newly signed image is picked up soon). Errors (registry down) are never cached.
//! - **Single flight**: concurrent requests for one key wait for one verification. The
//!   verification runs as a task of its own, so a caller that gives up (kubelet's
//!   deadline) does not cancel it for the others, and its result still lands here.
//! - **Bounded**: at most `max_entries` verdicts; past that, expired entries go first,
//!   then the oldest.
//! - **Persisted**: each new verdict is appended to a JSON-lines file, which is read back
//!   at start (entries already expired are dropped) and compacted when it grows. The file
//!   is trusted state: whoever can write it can make crigate allow an image, so it lives
//!   in a root-only directory (`StateDirectory=crigate`, mode 0700).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::Verdict;
use crate::oci::Digest;

/// The largest cache file read back at start. 100,000 verdicts are ~40 MiB of JSON; a
/// larger file is not one crigate wrote.
const MAX_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// The hash of a policy's effective content, recorded with every decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint([u8; 32]);

/// What the cache is keyed by.
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

/// Why the persistence file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the verdict cache {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("verdict cache {path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
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
    config: CacheConfig,
    state: Mutex<State>,
    file: Option<Arc<CacheFile>>,
}

struct State {
    slots: HashMap<CacheKey, Arc<OnceCell<Entry>>>,
    /// Keys in insertion order, for eviction; may hold keys already removed.
    order: VecDeque<CacheKey>,
}

/// The persistence file, appended to by the one task that made each verdict.
struct CacheFile {
    path: PathBuf,
    /// The open file and how many lines it holds.
    file: Mutex<(File, usize)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    verdict: Verdict,
    /// Seconds since the Unix epoch; wall-clock, so it survives a restart.
    expires: u64,
}

#[derive(Serialize, Deserialize)]
struct Line {
    key: CacheKey,
    #[serde(flatten)]
    entry: Entry,
}

// === impl VerdictCache ===

impl VerdictCache {
    /// A cache, loading unexpired verdicts from `config.path` if set.
    ///
    /// # Errors
    ///
    /// The file cannot be opened or created, or is too large. Lines that do not parse
    /// are skipped with a warning: a torn last line after a crash is expected.
    pub fn open(config: CacheConfig) -> Result<Self, Error> {
        let mut state = State {
            slots: HashMap::new(),
            order: VecDeque::new(),
        };
        let mut file = None;
        if let Some(path) = &config.path {
            let loaded = load(path)?;
            let now = now_secs();
            for line in loaded.into_iter().filter(|l| l.entry.expires > now) {
                state.insert(line.key, line.entry, config.max_entries);
            }
            file = Some(Arc::new(CacheFile {
                path: path.clone(),
                file: Mutex::new((rewrite(path, &state)?, state.slots.len())),
            }));
        }
        Ok(Self {
            config,
            state: Mutex::new(state),
            file,
        })
    }

    /// The unexpired verdict for `key`, if any. Never waits for a verification.
    pub fn get(&self, key: &CacheKey) -> Option<Verdict> {
        let slot = self.lock().slots.get(key).cloned()?;
        let entry = slot.get()?;
        (entry.expires > now_secs()).then(|| entry.verdict.clone())
    }

    /// The verdict for `key`: from the cache, or from `verify`, run once however many
    /// callers ask concurrently. A verification error is returned to every waiting
    /// caller and not cached; the next call tries again.
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
        let slot = {
            let mut state = self.lock();
            let now = now_secs();
            match state.slots.get(&key) {
                Some(slot) if slot.get().is_some_and(|e| e.expires > now) => {
                    if let Some(entry) = slot.get() {
                        return Ok((entry.verdict.clone(), Source::Cache));
                    }
                    slot.clone()
                }
                // Pending (another caller is verifying): wait for it below.
                Some(slot) if slot.get().is_none() => slot.clone(),
                // Expired, or absent: a new slot.
                _ => {
                    let slot = Arc::new(OnceCell::new());
                    state.insert_slot(key.clone(), slot.clone(), self.config.max_entries);
                    slot
                }
            }
        };
        let (positive, negative) = (self.config.positive_ttl, self.config.negative_ttl);
        let file = self.file.clone();
        let task = tokio::spawn(async move {
            slot.get_or_try_init(|| async move {
                let verdict = verify().await?;
                let ttl = match verdict {
                    Verdict::Trusted(_) => positive,
                    Verdict::Rejected(_) => negative,
                };
                let entry = Entry {
                    verdict,
                    expires: now_secs().saturating_add(ttl.as_secs()),
                };
                // Runs once per verification, whoever waits for it.
                if let Some(file) = &file {
                    file.append(&key, &entry);
                }
                Ok(entry)
            })
            .await
            .cloned()
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
    /// lines. Best effort: a failure is logged and the file keeps growing until the next
    /// attempt.
    fn compact_if_needed(&self) {
        let Some(file) = &self.file else { return };
        let live = self.lock().slots.len();
        let mut open = file.lock();
        if open.1 <= 2 * live.max(1024) {
            return;
        }
        let state = self.lock();
        match rewrite(&file.path, &state) {
            Ok(rewritten) => *open = (rewritten, state.slots.len()),
            Err(error) => {
                tracing::warn!(path = %file.path.display(), %error, "cannot compact the verdict cache")
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a map and a queue; a panic mid-update leaves both usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// === impl CacheFile ===

impl CacheFile {
    /// Appends one verdict. Best effort: a failure is logged and the verdict stays cached
    /// in memory. A line is a few hundred bytes written without fsync, once per new
    /// verdict; a torn line after a crash is skipped at load.
    fn append(&self, key: &CacheKey, entry: &Entry) {
        let line = Line {
            key: key.clone(),
            entry: entry.clone(),
        };
        let result = serde_json::to_string(&line)
            .map_err(std::io::Error::other)
            .and_then(|mut text| {
                text.push('\n');
                let mut open = self.lock();
                open.0.write_all(text.as_bytes())?;
                open.1 += 1;
                Ok(())
            });
        if let Err(error) = result {
            tracing::warn!(path = %self.path.display(), %error, "cannot persist a verdict");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (File, usize)> {
        self.file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// === impl State ===

impl State {
    fn insert(&mut self, key: CacheKey, entry: Entry, max: usize) {
        let slot = Arc::new(OnceCell::new_with(Some(entry)));
        self.insert_slot(key, slot, max);
    }

    fn insert_slot(&mut self, key: CacheKey, slot: Arc<OnceCell<Entry>>, max: usize) {
        if self.slots.insert(key.clone(), slot).is_none() {
            self.order.push_back(key);
        }
        if self.slots.len() > max {
            self.evict(max);
        }
        // Keys of replaced or evicted slots linger in `order`; keep it from growing
        // without bound.
        if self.order.len() > 2 * max.max(16) {
            let slots = &self.slots;
            self.order.retain(|k| slots.contains_key(k));
        }
    }

    /// Brings the cache back under `max`: expired entries first, then the oldest.
    fn evict(&mut self, max: usize) {
        let now = now_secs();
        self.slots
            .retain(|_, slot| slot.get().is_none_or(|e| e.expires > now));
        while self.slots.len() > max {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.slots.remove(&oldest);
        }
    }
}

/// Reads the cache file, bounded; lines that do not parse are skipped.
fn load(path: &Path) -> Result<Vec<Line>, Error> {
    let open = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(open(error)),
    };
    if file.metadata().map_err(open)?.len() > MAX_FILE_BYTES {
        return Err(Error::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut lines = Vec::new();
    let mut skipped = 0usize;
    for line in BufReader::new(file.take(MAX_FILE_BYTES)).lines() {
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

/// Writes the live entries to a new file, renames it over `path`, and returns it open
/// for appending.
fn rewrite(path: &Path, state: &State) -> Result<File, Error> {
    let open = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut out = Vec::new();
    for (key, slot) in &state.slots {
        if let Some(entry) = slot.get() {
            let line = Line {
                key: key.clone(),
                entry: entry.clone(),
            };
            if let Ok(text) = serde_json::to_string(&line) {
                out.extend_from_slice(text.as_bytes());
                out.push(b'\n');
            }
        }
    }
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(open)?;
    file.write_all(&out).map_err(open)?;
    file.sync_all().map_err(open)?;
    std::fs::rename(&tmp, path).map_err(open)?;
    OpenOptions::new().append(true).open(path).map_err(open)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// === impl Fingerprint ===

impl Fingerprint {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The SHA-256 of `content`.
    pub fn of(content: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(content).into())
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
