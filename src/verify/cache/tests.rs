use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::verify::{Rejection, Signer, VerifierKind};

fn key(n: u8) -> CacheKey {
    CacheKey {
        digest: Digest::sha256(&[n]),
        fingerprint: Fingerprint::of(b"policy-a"),
    }
}

fn trusted(key: &CacheKey) -> Verdict {
    Verdict::Trusted(Signer {
        verifier: VerifierKind::Cosign,
        identity: "ci@example.com".into(),
        issuer: Some("https://token.actions.githubusercontent.com".into()),
        matched: "keyless".into(),
        signed_digest: key.digest.clone(),
        valid_until: None,
    })
}

fn config(path: Option<PathBuf>) -> CacheConfig {
    CacheConfig {
        positive_ttl: Duration::from_secs(3600),
        negative_ttl: Duration::from_secs(300),
        max_entries: 1000,
        path,
    }
}

/// A verification that counts its runs and returns `verdict` after `delay`.
fn counted(
    runs: &Arc<AtomicUsize>,
    verdict: Verdict,
    delay: Duration,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<Verdict, String>> + Send>>
       + Send
       + 'static {
    let runs = runs.clone();
    move || {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(verdict)
        })
    }
}

#[tokio::test]
async fn trusted_verdict_is_served_from_cache() {
    let cache = VerdictCache::open(config(None)).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let k = key(1);
    let (v, source) = cache
        .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((v.clone(), source), (trusted(&k), Source::Verified));
    let (again, source) = cache
        .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((again, source), (v, Source::Cache));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(cache.get(&k).is_some());
}

#[tokio::test]
async fn rejection_is_cached_for_the_negative_ttl_only() {
    let mut short = config(None);
    short.negative_ttl = Duration::ZERO;
    let cache = VerdictCache::open(short).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let k = key(2);
    let rejected = Verdict::Rejected(Rejection::NoSignature(k.digest.clone()));
    for _ in 0..2 {
        let (v, source) = cache
            .get_or_verify(k.clone(), counted(&runs, rejected.clone(), Duration::ZERO))
            .await
            .unwrap();
        assert_eq!((v, source), (rejected.clone(), Source::Verified));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "an expired rejection was served"
    );

    let cache = VerdictCache::open(config(None)).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        cache
            .get_or_verify(k.clone(), counted(&runs, rejected.clone(), Duration::ZERO))
            .await
            .unwrap();
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "a fresh rejection was not cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_that_may_not_last_is_shared_with_its_waiters_and_kept_by_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    let stats = Arc::new(CacheStats::default());
    let cache = Arc::new(
        VerdictCache::open(config(Some(path.clone())))
            .unwrap()
            .with_stats(stats.clone()),
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let k = key(9);
    let unknown = Verdict::Rejected(Rejection::RevocationUnknown(
        "revocation status of CN=leaf cannot be determined: OCSP: connection refused".into(),
    ));
    // Callers that arrive while it is verified share the one verification, which ends
    // only once all ten have asked.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (cache, runs, k, unknown, stats) = (
            cache.clone(),
            runs.clone(),
            k.clone(),
            unknown.clone(),
            stats.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let verify = move || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                while stats.misses() < 10 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok::<_, String>(unknown)
            };
            cache.get_or_verify(k, verify).await.unwrap().0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), unknown);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The next caller verifies again (the responder may be back), and nothing of it is
    // written to the file a restart reads.
    assert_eq!(cache.get(&k), None);
    let (verdict, source) = cache
        .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
        .await
        .unwrap();
    assert_eq!((verdict, source), (trusted(&k), Source::Verified));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains("revocation_unknown"), "{written}");
    // The header, and the one verdict.
    assert_eq!(written.lines().count(), 2, "{written}");
}

#[tokio::test]
async fn a_trusted_verdict_is_kept_no_longer_than_its_signature_holds() {
    // A signature that expired (or whose chain ran out) is judged again, however long
    // the TTL; one that holds past the TTL is kept for the TTL.
    let cache = VerdictCache::open(config(None)).unwrap();
    let k = key(9);
    let ended = |at: SystemTime| match trusted(&k) {
        Verdict::Trusted(signer) => Verdict::Trusted(Signer {
            valid_until: Some(at),
            ..signer
        }),
        rejected => rejected,
    };
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let past = ended(SystemTime::now() - Duration::from_secs(1));
        let (_, source) = cache
            .get_or_verify(k.clone(), counted(&runs, past, Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(source, Source::Verified);
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "an ended verdict was served"
    );

    let k = key(10);
    let runs = Arc::new(AtomicUsize::new(0));
    let later = ended(SystemTime::now() + Duration::from_secs(7 * 24 * 3600));
    for _ in 0..2 {
        cache
            .get_or_verify(k.clone(), counted(&runs, later.clone(), Duration::ZERO))
            .await
            .unwrap();
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "a verdict holding past the TTL was not kept"
    );
}

#[tokio::test]
async fn errors_are_not_cached() {
    let cache = VerdictCache::open(config(None)).unwrap();
    let k = key(3);
    let failed = cache
        .get_or_verify(k.clone(), || async {
            Err::<Verdict, _>("registry unreachable".to_owned())
        })
        .await;
    assert!(matches!(failed, Err(VerifyError::Verify(ref e)) if e == "registry unreachable"));
    assert!(cache.get(&k).is_none());
    let runs = Arc::new(AtomicUsize::new(0));
    let (_, source) = cache
        .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(source, Source::Verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_one_digest_verify_once() {
    let cache = Arc::new(VerdictCache::open(config(None)).unwrap());
    let runs = Arc::new(AtomicUsize::new(0));
    let k = key(4);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (cache, runs, k) = (cache.clone(), runs.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            let verify = counted(&runs, trusted(&k), Duration::from_millis(50));
            cache.get_or_verify(k, verify).await.unwrap().0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), trusted(&k));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_cancel_the_verification() {
    let cache = Arc::new(VerdictCache::open(config(None)).unwrap());
    let runs = Arc::new(AtomicUsize::new(0));
    let k = key(5);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(10),
        cache.get_or_verify(
            k.clone(),
            counted(&runs, trusted(&k), Duration::from_millis(100)),
        ),
    )
    .await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        cache.get(&k),
        Some(trusted(&k)),
        "the verification did not finish on its own"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn policy_change_is_a_different_key() {
    let cache = VerdictCache::open(config(None)).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let a = key(6);
    let b = CacheKey {
        digest: a.digest.clone(),
        fingerprint: Fingerprint::of(b"policy-b"),
    };
    cache
        .get_or_verify(a.clone(), counted(&runs, trusted(&a), Duration::ZERO))
        .await
        .unwrap();
    let (_, source) = cache
        .get_or_verify(b.clone(), counted(&runs, trusted(&b), Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(source, Source::Verified);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn size_is_bounded_oldest_out_first() {
    let mut small = config(None);
    small.max_entries = 10;
    let cache = VerdictCache::open(small).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    for n in 0..25 {
        let k = key(n);
        cache
            .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
            .await
            .unwrap();
    }
    assert_eq!(cache.len(), 10);
    assert!(cache.get(&key(0)).is_none());
    assert!(cache.get(&key(24)).is_some());
}

#[tokio::test]
async fn a_lowered_ttl_bounds_the_verdicts_cached_under_a_longer_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    let runs = Arc::new(AtomicUsize::new(0));
    {
        let cache = VerdictCache::open(config(Some(path.clone()))).unwrap();
        let k = key(1);
        cache
            .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
            .await
            .unwrap();
    }
    // Opened again, as a reload or a restart does, with the TTL lowered to nothing.
    let lowered = CacheConfig {
        positive_ttl: Duration::ZERO,
        ..config(Some(path.clone()))
    };
    let cache = VerdictCache::open(lowered).unwrap();
    assert_eq!(cache.get(&key(1)), None, "outlived the TTL now configured");
    // Nor does it come back when the TTL is raised again.
    let cache = VerdictCache::open(config(Some(path))).unwrap();
    assert_eq!(cache.get(&key(1)), None);
}

#[tokio::test]
async fn the_oldest_verdict_is_evicted_first_after_a_restart_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    let bounded = || CacheConfig {
        max_entries: 8,
        ..config(Some(path.clone()))
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let run = |n: u8| {
        let k = key(n);
        (k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
    };
    {
        let cache = VerdictCache::open(bounded()).unwrap();
        for n in 0..8 {
            let (k, verify) = run(n);
            cache.get_or_verify(k, verify).await.unwrap();
        }
    }
    // Opening writes the file anew from what it read, and the next opening reads that.
    drop(VerdictCache::open(bounded()).unwrap());
    let cache = VerdictCache::open(bounded()).unwrap();
    let (k, verify) = run(8);
    cache.get_or_verify(k, verify).await.unwrap();
    assert_eq!(
        cache.get(&key(0)),
        None,
        "the oldest verdict is still there"
    );
    for n in 1..=8 {
        assert!(cache.get(&key(n)).is_some(), "verdict {n} was evicted");
    }
}

#[tokio::test]
async fn verdicts_survive_a_restart_within_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    let runs = Arc::new(AtomicUsize::new(0));
    {
        let cache = VerdictCache::open(config(Some(path.clone()))).unwrap();
        for n in 0..3 {
            let k = key(n);
            cache
                .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
                .await
                .unwrap();
        }
        let k = key(9);
        let rejected = Verdict::Rejected(Rejection::NoSignature(k.digest.clone()));
        cache
            .get_or_verify(k, counted(&runs, rejected, Duration::ZERO))
            .await
            .unwrap();
    }
    // An expired line and a torn last line, as a crash might leave.
    let expired = Line {
        key: key(7),
        entry: Entry {
            verdict: trusted(&key(7)),
            expires: now_secs() - 1,
        },
    };
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    writeln!(file, "{}", serde_json::to_string(&expired).unwrap()).unwrap();
    write!(file, "{{\"key\":{{\"digest\":\"sha256:").unwrap();
    drop(file);

    let cache = VerdictCache::open(config(Some(path.clone()))).unwrap();
    for n in 0..3 {
        assert_eq!(
            cache.get(&key(n)),
            Some(trusted(&key(n))),
            "verdict {n} lost"
        );
    }
    assert!(matches!(
        cache.get(&key(9)),
        Some(Verdict::Rejected(Rejection::NoSignature(_)))
    ));
    assert!(
        cache.get(&key(7)).is_none(),
        "an expired verdict was loaded"
    );
    let (_, source) = cache
        .get_or_verify(key(1), || async {
            Err::<Verdict, _>("registry down".to_owned())
        })
        .await
        .unwrap();
    assert_eq!(
        source,
        Source::Cache,
        "a restarted node must not need the registry"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    let mode = std::fs::metadata(&path).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

#[tokio::test]
async fn file_is_compacted_when_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    let mut small = config(Some(path.clone()));
    small.max_entries = 100;
    let cache = VerdictCache::open(small).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    // 2,560 verdicts: compacted past 2,048 lines.
    for round in 0..10u8 {
        for n in 0..=255u8 {
            let k = CacheKey {
                digest: Digest::sha256(&[round, n]),
                fingerprint: Fingerprint::of(b"p"),
            };
            cache
                .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
                .await
                .unwrap();
        }
    }
    compacted(&cache).await;
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert!(lines <= 2 * 1024, "{lines} lines for 100 live entries");
}

/// Waits until no compaction of `cache`'s file is under way.
async fn compacted(cache: &VerdictCache) {
    let file = cache.file.as_ref().unwrap();
    for _ in 0..6000 {
        if file.lock().since.is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the compaction did not end within 60 s");
}

/// Compacting the file of a full cache (100,000 verdicts, tens of MiB to write and
/// fsync) leaves the thread that relays CRI calls free: a task on that thread, looking
/// verdicts up as each gated call does, is never held for long. A verdict made while the
/// compaction runs is in the file it leaves.
#[tokio::test(flavor = "current_thread")]
async fn compacting_a_full_file_leaves_the_relaying_thread_free() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    let mut full = config(Some(path.clone()));
    // Room for the two verdicts made beside them: none is evicted.
    full.max_entries = 100_002;
    let cache = Arc::new(VerdictCache::open(full.clone()).unwrap());
    let numbered = |n: u32| CacheKey {
        digest: Digest::sha256(&n.to_be_bytes()),
        fingerprint: Fingerprint::of(b"policy-a"),
    };
    {
        let now = now_secs();
        let mut state = cache.lock();
        for n in 0..100_000 {
            let k = numbered(n);
            let entry = Entry {
                verdict: trusted(&k),
                expires: now + 3600,
            };
            state.adopt(&k, entry, &full, now);
        }
    }
    // As if the file had grown to many times that.
    cache.file.as_ref().unwrap().lock().lines = 1_000_000;
    let longest = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let ticker = tokio::spawn({
        let (cache, longest) = (cache.clone(), longest.clone());
        async move {
            loop {
                let started = std::time::Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                assert!(cache.get(&numbered(7)).is_some());
                let waited = started.elapsed();
                let mut longest = longest.lock().unwrap();
                *longest = (*longest).max(waited);
            }
        }
    });
    let runs = Arc::new(AtomicUsize::new(0));
    let verify = |k: CacheKey| counted(&runs, trusted(&k), Duration::ZERO);
    let (first, during) = (key(1), key(2));
    cache
        .get_or_verify(first.clone(), verify(first.clone()))
        .await
        .unwrap();
    cache
        .get_or_verify(during.clone(), verify(during.clone()))
        .await
        .unwrap();
    let appended_during = cache
        .file
        .as_ref()
        .unwrap()
        .lock()
        .since
        .as_ref()
        .map(|s| s.1);
    compacted(&cache).await;
    // The ticker's turn, to count a wait that ended with the compaction.
    tokio::time::sleep(Duration::from_millis(20)).await;
    ticker.abort();
    let longest = *longest.lock().unwrap();
    assert!(
        longest < Duration::from_secs(1),
        "the thread was held for {longest:?}"
    );
    assert_eq!(
        appended_during,
        Some(1),
        "the compaction ended before the second verdict"
    );
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    // The header and a line per verdict; the one made during the compaction may be
    // there twice (appended, and read from the cache), which reads back as one.
    assert!(
        (1 + 100_002..=1 + 100_003).contains(&lines),
        "{lines} lines for 100,002 verdicts"
    );
    let restarted = VerdictCache::open(full).unwrap();
    for k in [first, during, numbered(0), numbered(99_999)] {
        assert!(restarted.get(&k).is_some(), "{k:?} lost");
    }
}

#[tokio::test]
async fn a_cache_a_reload_replaced_appends_to_the_new_file_and_never_rewrites_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    async fn verify(cache: &VerdictCache, k: CacheKey) {
        let runs = Arc::new(AtomicUsize::new(0));
        let verify = counted(&runs, trusted(&k), Duration::ZERO);
        cache.get_or_verify(k, verify).await.unwrap();
    }
    // The running cache holds few verdicts, so that many new ones make it compact.
    let mut small = config(Some(path.clone()));
    small.max_entries = 100;
    let old = VerdictCache::open(small).unwrap();
    verify(&old, key(1)).await;
    // A reload opens the cache anew; the old one decides calls until the swap.
    let mut large = config(Some(path.clone()));
    large.max_entries = 10_000;
    let new = VerdictCache::open(large.clone()).unwrap();
    verify(&new, key(2)).await;
    let late = CacheKey {
        digest: Digest::sha256(b"verified by the old cache after the reload"),
        fingerprint: Fingerprint::of(b"policy-a"),
    };
    verify(&old, late.clone()).await;
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains(late.digest.encoded()), "{written}");
    // The new cache holds it too: its own compaction keeps it.
    assert!(new.get(&late).is_some());
    // Enough for the old cache to compact, were it still the file's.
    for n in 0..2100u32 {
        let k = CacheKey {
            digest: Digest::sha256(&n.to_be_bytes()),
            fingerprint: Fingerprint::of(b"policy-old"),
        };
        verify(&old, k).await;
    }
    drop(old);
    verify(&new, key(3)).await;
    // A restart reads the new cache's verdicts, and what the old one made after the
    // reload.
    let restarted = VerdictCache::open(large).unwrap();
    for k in [key(1), key(2), key(3), late] {
        assert!(restarted.get(&k).is_some(), "{k:?} lost");
    }
}

/// The file is only a saving: one too large to read stops nothing, and is written anew.
#[test]
fn an_oversized_file_gives_no_verdicts_and_is_written_anew() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    File::create(&path)
        .unwrap()
        .set_len(MAX_FILE_BYTES + 1)
        .unwrap();
    let cache = VerdictCache::open(config(Some(path.clone()))).unwrap();
    assert!(cache.get(&key(1)).is_none());
    assert!(std::fs::metadata(&path).unwrap().len() < 1024);
}

/// Verdicts are kept across restarts of one build, and a file another build wrote, or
/// one written before files named their build, gives none.
#[tokio::test]
async fn verdicts_outlive_a_restart_of_their_own_build_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    {
        let cache = VerdictCache::open(config(Some(path.clone()))).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        cache
            .get_or_verify(key(1), counted(&runs, trusted(&key(1)), Duration::ZERO))
            .await
            .unwrap();
    }
    assert_eq!(load(&path, crate::VERSION).unwrap().len(), 1);
    assert!(VerdictCache::open(config(Some(path.clone())))
        .unwrap()
        .get(&key(1))
        .is_some());
    assert!(load(&path, "0.0.1 (another commit)").unwrap().is_empty());
    // The same verdict line with no header, as a build before headers wrote it.
    let text = std::fs::read_to_string(&path).unwrap();
    let (header, verdicts) = text.split_once('\n').unwrap();
    assert!(header.contains(crate::VERSION), "{header}");
    // A build before headers reads no verdict of this one's either: its lines named
    // their key `key`.
    #[derive(serde::Deserialize, serde::Serialize)]
    struct EarlierLine {
        key: CacheKey,
        #[serde(flatten)]
        entry: Entry,
    }
    assert!(serde_json::from_str::<EarlierLine>(verdicts.trim_end()).is_err());
    // A file as such a build wrote it: no header, and the key named `key`.
    let line: Line = serde_json::from_str(verdicts.trim_end()).unwrap();
    let earlier = EarlierLine {
        key: line.key,
        entry: line.entry,
    };
    let verdicts = format!("{}\n", serde_json::to_string(&earlier).unwrap());
    std::fs::write(&path, verdicts).unwrap();
    assert!(load(&path, crate::VERSION).unwrap().is_empty());
    assert!(VerdictCache::open(config(Some(path)))
        .unwrap()
        .get(&key(1))
        .is_none());
}

#[test]
fn fingerprint_round_trips_as_hex() {
    let f = Fingerprint::of(b"x");
    let text: String = f.into();
    assert_eq!(Fingerprint::try_from(text).unwrap(), f);
    assert!(Fingerprint::try_from("zz".to_owned()).is_err());
}

#[tokio::test]
async fn stored_verdicts_keep_every_field_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    // A platform manifest trusted through its index (signed digest differs from the key),
    // a sha512 key, and a rejection: each kept in its compact form, then read back.
    let platform = key(1);
    let index = Digest::sha256(b"index");
    let mut through_index = trusted(&platform);
    if let Verdict::Trusted(signer) = &mut through_index {
        signer.signed_digest = index.clone();
    }
    let long = CacheKey {
        digest: Digest::compute(crate::oci::DigestAlgorithm::Sha512, b"long"),
        fingerprint: Fingerprint::of(b"policy-a"),
    };
    let rejected = CacheKey {
        digest: Digest::sha256(b"rejected"),
        fingerprint: Fingerprint::of(b"policy-a"),
    };
    let mismatch = Verdict::Rejected(Rejection::DigestMismatch {
        signed: index.to_string(),
        image: rejected.digest.clone(),
    });
    let cases = [
        (platform, through_index),
        (long.clone(), trusted(&long)),
        (rejected, mismatch),
    ];
    let runs = Arc::new(AtomicUsize::new(0));
    {
        let cache = VerdictCache::open(config(Some(path.clone()))).unwrap();
        for (k, verdict) in &cases {
            cache
                .get_or_verify(k.clone(), counted(&runs, verdict.clone(), Duration::ZERO))
                .await
                .unwrap();
            assert_eq!(cache.get(k).as_ref(), Some(verdict));
        }
    }
    let cache = VerdictCache::open(config(Some(path))).unwrap();
    for (k, verdict) in &cases {
        assert_eq!(cache.get(k).as_ref(), Some(verdict), "{k:?} changed");
    }
    assert!(cache.get(&key(2)).is_none());
}

#[tokio::test]
async fn a_full_cache_evicts_expired_entries_before_the_oldest() {
    let mut small = config(None);
    small.max_entries = 64;
    small.negative_ttl = Duration::ZERO;
    let cache = VerdictCache::open(small).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let rejected = |k: &CacheKey| Verdict::Rejected(Rejection::NoSignature(k.digest.clone()));
    // The oldest entry is trusted, then 63 rejections that expire at once.
    for n in 0..64 {
        let k = key(n);
        let verdict = if n == 0 { trusted(&k) } else { rejected(&k) };
        cache
            .get_or_verify(k.clone(), counted(&runs, verdict, Duration::ZERO))
            .await
            .unwrap();
    }
    let k = key(64);
    cache
        .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
        .await
        .unwrap();
    assert!(
        cache.get(&key(0)).is_some(),
        "the oldest went before expired ones"
    );
    assert!(cache.get(&k).is_some());
    assert!(cache.len() <= 64);
}

#[test]
fn digest_bytes_decode_every_hex_digit() {
    let bytes: Vec<u8> = (0..=255u8).collect();
    for chunk in bytes.chunks(32) {
        let encoded = hex::encode(chunk);
        assert_eq!(decode_hex::<32>(encoded.as_bytes()).as_slice(), chunk);
    }
    let digest = Digest::compute(crate::oci::DigestAlgorithm::Sha512, b"x");
    let key = SlotKey::new(&CacheKey {
        digest: digest.clone(),
        fingerprint: Fingerprint::of(b"p"),
    });
    assert_eq!(key.digest.to_digest(), Some(digest));
}

#[tokio::test]
async fn hits_and_misses_are_counted_across_caches() {
    let stats = Arc::new(CacheStats::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let k = key(1);
    // A reload builds a new cache; the counters carry on.
    for _ in 0..2 {
        let cache = VerdictCache::open(config(None))
            .unwrap()
            .with_stats(Arc::clone(&stats));
        for _ in 0..3 {
            cache
                .get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
                .await
                .unwrap();
        }
        // A failed verification is a miss too.
        let failed = cache
            .get_or_verify(key(2), || async { Err::<Verdict, _>("registry down") })
            .await;
        assert!(failed.is_err());
    }
    assert_eq!((stats.hits(), stats.misses()), (4, 4));
}

#[test]
fn a_key_names_the_repository_and_the_requirement() {
    let digest = Digest::sha256(b"image");
    let policy = Fingerprint::of(b"policy");
    let release = policy.scoped(Fingerprint::of(b"release").as_bytes());
    let other = policy.scoped(Fingerprint::of(b"other").as_bytes());
    let key =
        |repository: &str, requirement| CacheKey::new(repository, digest.clone(), requirement);
    // The same inputs, the same key: a verdict is found again.
    assert_eq!(key("r.example/app", release), key("r.example/app", release));
    // Another verifier of the same policy, another repository holding the same bytes: other
    // keys, so neither verdict answers for the other.
    assert_ne!(key("r.example/app", release), key("r.example/app", other));
    assert_ne!(
        key("r.example/app", release),
        key("r.example/copy", release)
    );
    assert_ne!(release, policy);
    assert_eq!(key("r.example/app", release).digest, digest);
}

/// A compaction a reload overtook (the file written anew for the new cache, whose own
/// compaction is under way) neither takes the appends held for the new one's nor
/// installs the old cache's verdicts over the new file.
#[tokio::test]
async fn a_compaction_begun_before_a_reload_leaves_the_new_owners_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verdicts.jsonl");
    let old = VerdictCache::open(config(Some(path.clone()))).unwrap();
    let file = old.file.clone().unwrap();
    let begun = file.lock().generation;
    let new = VerdictCache::open(config(Some(path.clone()))).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let k = key(9);
    new.get_or_verify(k.clone(), counted(&runs, trusted(&k), Duration::ZERO))
        .await
        .unwrap();
    // The new cache's compaction under way, holding an append.
    file.lock().since = Some((b"held\n".to_vec(), 1));
    file.compact(&old.state, begun);
    assert_eq!(
        file.lock()
            .since
            .as_ref()
            .map(|(text, count)| (text.clone(), *count)),
        Some((b"held\n".to_vec(), 1))
    );
    file.lock().since = None;
    let restarted = VerdictCache::open(config(Some(path))).unwrap();
    assert!(
        restarted.get(&k).is_some(),
        "the new cache's verdict was lost"
    );
}

/// A compaction whose task never ran (dropped as the runtime shut down) lets the appends
/// held for it go, so that they do not pile up and the next compaction can begin.
#[test]
fn a_compaction_that_never_ran_lets_the_next_begin() {
    let dir = tempfile::tempdir().unwrap();
    let cache = VerdictCache::open(config(Some(dir.path().join("verdicts.jsonl")))).unwrap();
    let file = cache.file.clone().unwrap();
    let generation = file.lock().generation;
    file.lock().since = Some((Vec::new(), 0));
    drop(Compaction {
        file: file.clone(),
        generation,
        done: false,
    });
    assert!(file.lock().since.is_none());
}
