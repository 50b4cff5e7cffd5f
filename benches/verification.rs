//! Verification cost against issue 4's targets, measured in one run:
//!
//! 1. a cached verdict: `VerdictCache::get` and `get_or_verify` on a hit, 100,000 entries
//!    (target < 1 µs);
//! 2. the memory of 100,000 cached verdicts with realistic keyless `Signer` strings,
//!    counted by this binary's global allocator (target < 64 MiB);
//! 3. a cold `cosign::verify` with the material already fetched, for the vectors C01
//!    (key-based, ECDSA P-256) and K01 (keyless: Fulcio chain, Rekor SET, embedded SCT),
//!    against the sum of the signature checks it must make, measured with aws-lc-rs in
//!    the same run (target <= 1.5x), with a per-stage breakdown of K01;
//! 4. a cold `Engine::verify` against the real registry (`docker-registry`), signed by
//!    the project's own signer, as a ratio to 3a (the registry round trips' share);
//! 5. 100 concurrent `Engine::verify` calls for one uncached digest: elapsed time as a
//!    ratio to one cold verify, and the `.sig` manifest requests the registry logged
//!    (target: exactly one verification).
//!
//! Criterion measures 1, 3 and 4; the summary table after it is this binary's own
//! timing (`Instant` over many iterations, median of rounds, interleaved so that the
//! cold checks and their primitives see the same machine state).
//!
//! Run: `cargo bench --bench verification` (root: `integration/setup` installs
//! docker-registry). `cargo test --benches` runs the criterion routines once each on a
//! small cache and skips the registry and the summary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]
// The counting global allocator below is the only unsafe code.
#![allow(unsafe_code)]

#[path = "../integration/harness/mod.rs"]
mod harness;
#[path = "../integration/signer.rs"]
mod signer;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
use criterion::Criterion;
use futures_util::FutureExt as _;
use serde_json::Value;
use x509_cert::der::{Decode as _, Encode as _};

use crigate::oci::{Digest, ImageRef};
use crigate::registry::{Client, RegistryConfig};
use crigate::verify::cache::{CacheConfig, CacheKey, Fingerprint, VerdictCache};
use crigate::verify::cosign::{
    self, cert, layer, payload, rekor, sct, CosignPolicy, KeylessIdentity, Matcher,
    ParsedCertificate, PublicKey, SignatureLayer, TrustedKey, TrustedRoot,
};
use crigate::verify::engine::{Engine, Requirement};
use crigate::verify::{Signer, Verdict, VerifierKind};

use harness::{Registry, TestImage};
use signer::KeySigner;

// === Counting allocator ===

/// Bytes requested and not yet freed, and the same with glibc malloc's chunk rounding
/// (8 bytes of header, 16-byte granularity, 32-byte minimum): what the heap really holds.
/// Only blocks allocated while counting is on are counted; a block allocated before and
/// freed during counting would count negative, which filling a cache does not do.
static LIVE_REQUESTED: AtomicI64 = AtomicI64::new(0);
static LIVE_CHUNKS: AtomicI64 = AtomicI64::new(0);
static LIVE_ALLOCATIONS: AtomicI64 = AtomicI64::new(0);
/// Counting is on only while a cache fills, so that timed code pays no atomics.
static COUNTING: AtomicBool = AtomicBool::new(false);

struct Counting;

fn chunk(size: usize) -> i64 {
    (size.saturating_add(8 + 15) & !15).max(32) as i64
}

fn count(size: usize, sign: i64) {
    if !COUNTING.load(Relaxed) {
        return;
    }
    LIVE_REQUESTED.fetch_add(sign * size as i64, Relaxed);
    LIVE_CHUNKS.fetch_add(sign * chunk(size), Relaxed);
    LIVE_ALLOCATIONS.fetch_add(sign, Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Heap {
    requested: i64,
    chunks: i64,
    allocations: i64,
}

fn heap() -> Heap {
    Heap {
        requested: LIVE_REQUESTED.load(Relaxed),
        chunks: LIVE_CHUNKS.load(Relaxed),
        allocations: LIVE_ALLOCATIONS.load(Relaxed),
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

// === Timing ===

/// Mean time per call of `f` over `iterations` calls.
fn per_op(iterations: u32, mut f: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    started.elapsed() / iterations
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// === Vectors ===

fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    assert!(
        dir.join("cases.json").is_file(),
        "third-party vectors missing: expected {}",
        dir.join("cases.json").display()
    );
    dir
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    let path = dir.join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("vector file {} missing: {e}", path.display()))
}

fn read_string(dir: &Path, rel: &str) -> String {
    String::from_utf8(read(dir, rel)).unwrap()
}

fn case(dir: &Path, id: &str) -> Value {
    let index: Value = serde_json::from_slice(&read(dir, "cases.json")).unwrap();
    index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("case {id} not in cases.json"))
        .clone()
}

/// `2026-01-01T00:00:00Z` as an instant (cases.json's `verify_at`).
fn time(s: &str) -> SystemTime {
    let (date, clock) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<u16> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let c: Vec<u8> = clock.split(':').map(|x| x.parse().unwrap()).collect();
    x509_cert::der::DateTime::new(d[0], d[1] as u8, d[2] as u8, c[0], c[1], c[2])
        .unwrap()
        .to_system_time()
}

/// The repository a case is admitted under: the payload's own docker-reference (as
/// `src/verify/cosign/tests.rs` does).
fn repository_of_payload(payload: &[u8]) -> String {
    let v: Value = serde_json::from_slice(payload).unwrap();
    v["critical"]["identity"]["docker-reference"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One cold verification's inputs, as `src/verify/cosign/tests.rs` builds them.
struct Cold {
    layer: SignatureLayer,
    image: Digest,
    repository: String,
    policy: CosignPolicy,
    now: SystemTime,
}

impl Cold {
    fn run(&self) -> Verdict {
        cosign::verify(
            std::slice::from_ref(&self.layer),
            &[],
            &self.image,
            &self.repository,
            &self.policy,
            self.now,
        )
    }
}

/// C01a: ECDSA P-256 key-based signature over hello-world's payload.
fn c01_case(dir: &Path) -> Cold {
    let case = case(dir, "C01a");
    let payload = read(dir, case["payload"].as_str().unwrap());
    let key_path = case["public_key"].as_str().unwrap();
    let policy = CosignPolicy {
        keys: vec![TrustedKey::from_pem(key_path, &read(dir, key_path)).unwrap()],
        require_tlog: false,
        ..CosignPolicy::default()
    };
    Cold {
        layer: SignatureLayer {
            payload: payload.clone(),
            media_type: case["payload_media_type"].as_str().unwrap().to_owned(),
            signature_b64: read_string(dir, case["signature"].as_str().unwrap()),
            certificate_pem: None,
            chain_pem: None,
            rfc3161_timestamp_json: None,
            bundle_json: None,
        },
        image: case["image_digest"].as_str().unwrap().parse().unwrap(),
        repository: repository_of_payload(&payload),
        policy,
        now: time(case["verify_at"].as_str().unwrap()),
    }
}

/// How K01's trust material is configured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// `cosign/trust/trusted_root.json` (roots with their validFor windows, the 2022
    /// intermediate, Rekor and both CT log keys), as a node is configured.
    TrustedRoot,
    /// The two Fulcio root PEMs, rekor.pub and the CT keys, without validity windows,
    /// as `src/verify/cosign/tests.rs` configures K01a.
    Pem,
}

/// K01a: keyless wabbitnetworks-2023, SCT and tlog required, verified at `verify_at`
/// (the certificate is judged at the SET's integratedTime).
fn k01_case(dir: &Path, trust: Trust) -> Cold {
    let case = case(dir, "K01a");
    let payload = read(dir, case["payload"].as_str().unwrap());
    let mut policy = CosignPolicy {
        require_sct: case["require_sct"].as_bool().unwrap(),
        require_tlog: true,
        ..CosignPolicy::default()
    };
    match trust {
        Trust::TrustedRoot => {
            let json = read(dir, case["trusted_root"].as_str().unwrap());
            policy.add_trusted_root(TrustedRoot::from_json(&json).unwrap());
        }
        Trust::Pem => {
            for root in case["fulcio_roots"].as_array().unwrap() {
                policy
                    .add_fulcio_roots_pem(&read(dir, root.as_str().unwrap()))
                    .unwrap();
            }
            policy.rekor_keys.push(
                PublicKey::from_pem(&read(dir, case["rekor_public_key"].as_str().unwrap()))
                    .unwrap()
                    .into(),
            );
            for ct in case["ctlog_public_keys"].as_array().unwrap() {
                policy.ct_log_keys.push(
                    PublicKey::from_pem(&read(dir, ct.as_str().unwrap()))
                        .unwrap()
                        .into(),
                );
            }
        }
    }
    let identity = &case["identity"];
    policy.identities.push(KeylessIdentity {
        subject: Matcher::Exact(identity["subject"].as_str().unwrap().to_owned()),
        issuer: identity["issuer"]
            .as_str()
            .map(|s| Matcher::Exact(s.to_owned())),
    });
    let file = |field: &str| case[field].as_str().map(|p| read_string(dir, p));
    Cold {
        layer: SignatureLayer {
            payload: payload.clone(),
            media_type: layer::SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
            signature_b64: file("signature").unwrap(),
            certificate_pem: file("certificate"),
            chain_pem: file("chain"),
            rfc3161_timestamp_json: None,
            bundle_json: file("bundle"),
        },
        image: case["image_digest"].as_str().unwrap().parse().unwrap(),
        repository: repository_of_payload(&payload),
        policy,
        now: time(case["verify_at"].as_str().unwrap()),
    }
}

// === Primitive checks, with aws-lc-rs directly ===

/// One signature check as the cheapest possible code makes it: the key's point, the
/// signed bytes and the signature already extracted.
struct Primitive {
    name: &'static str,
    algorithm: &'static dyn VerificationAlgorithm,
    key: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Primitive {
    fn verify(&self) {
        UnparsedPublicKey::new(self.algorithm, &self.key)
            .verify(black_box(&self.message), black_box(&self.signature))
            .unwrap_or_else(|_| panic!("primitive {} does not verify", self.name));
    }
}

/// The uncompressed EC point of a PEM `PUBLIC KEY`.
fn pem_key_point(pem_bytes: &[u8]) -> Vec<u8> {
    let block = pem::parse(pem_bytes).unwrap();
    spki_point(block.contents())
}

fn spki_point(spki_der: &[u8]) -> Vec<u8> {
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(spki_der).unwrap();
    spki.subject_public_key.raw_bytes().to_vec()
}

fn certificates(pem_bytes: &[u8]) -> Vec<x509_cert::Certificate> {
    pem::parse_many(pem_bytes)
        .unwrap()
        .iter()
        .map(|b| x509_cert::Certificate::from_der(b.contents()).unwrap())
        .collect()
}

fn cert_point(cert: &x509_cert::Certificate) -> Vec<u8> {
    cert.tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec()
}

/// `child`'s signature by `issuer` (ecdsa-with-SHA384 by a P-384 key in Fulcio's chain).
fn chain_link(
    name: &'static str,
    child: &x509_cert::Certificate,
    issuer: &x509_cert::Certificate,
) -> Primitive {
    let curve_bits = cert_point(issuer).len();
    let oid = child.signature_algorithm().oid.to_string();
    let algorithm: &'static dyn VerificationAlgorithm = match (curve_bits, oid.as_str()) {
        (97, "1.2.840.10045.4.3.3") => &sig::ECDSA_P384_SHA384_ASN1,
        (65, "1.2.840.10045.4.3.2") => &sig::ECDSA_P256_SHA256_ASN1,
        (65, "1.2.840.10045.4.3.3") => &sig::ECDSA_P256_SHA384_ASN1,
        other => panic!("{name}: unexpected issuer key/algorithm {other:?}"),
    };
    Primitive {
        name,
        algorithm,
        key: cert_point(issuer),
        message: child.tbs_certificate().to_der().unwrap(),
        signature: child.signature().raw_bytes().to_vec(),
    }
}

/// C01: one ECDSA P-256 verify over the payload (aws-lc hashes it inside `verify`).
fn c01_primitives(cold: &Cold) -> Vec<Primitive> {
    let dir = vectors_dir();
    let case = case(&dir, "C01a");
    vec![Primitive {
        name: "payload ECDSA P-256/SHA-256",
        algorithm: &sig::ECDSA_P256_SHA256_ASN1,
        key: pem_key_point(&read(&dir, case["public_key"].as_str().unwrap())),
        message: cold.layer.payload.clone(),
        signature: cosign::decode_signature(&cold.layer.signature_b64).unwrap(),
    }]
}

/// K01: payload (leaf P-256), leaf <- intermediate (P-384), intermediate <- root 2021-10
/// (P-384), Rekor SET (P-256), embedded SCT by ctfe 2022 (P-256).
fn k01_primitives(cold: &Cold) -> Vec<Primitive> {
    let dir = vectors_dir();
    let leaf = certificates(cold.layer.certificate_pem.as_deref().unwrap().as_bytes()).remove(0);
    let chain = certificates(cold.layer.chain_pem.as_deref().unwrap().as_bytes());
    let (intermediate, root) = (&chain[0], &chain[1]);
    let trusted_root = certificates(&read(&dir, "cosign/trust/fulcio-root-2021-10.pem")).remove(0);
    assert_eq!(root.to_der().unwrap(), trusted_root.to_der().unwrap());

    let bundle =
        rekor::RekorBundle::parse(cold.layer.bundle_json.as_deref().unwrap().as_bytes()).unwrap();
    let set_message = serde_json_canonicalizer::to_vec(&bundle.payload).unwrap();

    let parsed_leaf = ParsedCertificate::from_der(&leaf.to_der().unwrap()).unwrap();
    let sct_oid = x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
    let extension = leaf
        .tbs_certificate()
        .extensions()
        .unwrap()
        .iter()
        .find(|e| e.extn_id == sct_oid)
        .unwrap();
    let list =
        x509_cert::der::asn1::OctetString::from_der(extension.extn_value.as_bytes()).unwrap();
    let scts = sct::parse_sct_list(list.as_bytes()).unwrap();
    let issuer_spki = intermediate
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap();
    let issuer_key_hash: [u8; 32] =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &issuer_spki)
            .as_ref()
            .try_into()
            .unwrap();
    let tbs = sct::precertificate_tbs(&parsed_leaf).unwrap();
    let sct_message = sct::signed_entry(&scts[0], &issuer_key_hash, &tbs).unwrap();

    vec![
        Primitive {
            name: "payload ECDSA P-256/SHA-256 (leaf key)",
            algorithm: &sig::ECDSA_P256_SHA256_ASN1,
            key: cert_point(&leaf),
            message: cold.layer.payload.clone(),
            signature: cosign::decode_signature(&cold.layer.signature_b64).unwrap(),
        },
        chain_link(
            "leaf <- intermediate ECDSA P-384/SHA-384",
            &leaf,
            intermediate,
        ),
        chain_link(
            "intermediate <- root ECDSA P-384/SHA-384",
            intermediate,
            root,
        ),
        Primitive {
            name: "Rekor SET ECDSA P-256/SHA-256",
            algorithm: &sig::ECDSA_P256_SHA256_ASN1,
            key: pem_key_point(&read(&dir, "cosign/trust/rekor.pub")),
            message: set_message,
            signature: bundle.signed_entry_timestamp.clone(),
        },
        Primitive {
            name: "SCT ECDSA P-256/SHA-256 (ctfe 2022)",
            algorithm: &sig::ECDSA_P256_SHA256_ASN1,
            key: pem_key_point(&read(&dir, "cosign/trust/ctfe-2022.pub")),
            message: sct_message,
            signature: scts[0].signature.clone(),
        },
    ]
}

/// The SHA-256 of the payload, counted once on top of the signature checks.
fn sha256_payload(payload: &[u8]) {
    black_box(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        black_box(payload),
    ));
}

// === Cached verdicts ===

fn fingerprint() -> Fingerprint {
    Fingerprint::of(b"bench policy")
}

fn keys(n: usize) -> Vec<CacheKey> {
    (0..n)
        .map(|i| CacheKey {
            digest: Digest::sha256(format!("image {i}").as_bytes()),
            fingerprint: fingerprint(),
        })
        .collect()
}

/// Which realistic `Signer` the cached verdicts carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SignerKind {
    /// Keyless, as GitHub Actions workflows sign: the SAN is the workflow URI, the issuer
    /// the Actions token issuer, `matched` the Fulcio root as `verify_keyless` names it.
    Keyless,
    /// Key-based: identity and `matched` are the key's name (its path in the policy).
    Key,
}

fn signer_for(kind: SignerKind, i: usize, digest: &Digest) -> Signer {
    match kind {
        SignerKind::Keyless => {
            // The SAN comes from the certificate as `to_string()` makes it: exact capacity.
            let mut identity = format!(
                "https://github.com/example-org/service-{i:05}/.github/workflows/release.yml@refs/tags/v1.{}.0",
                i % 97
            );
            identity.shrink_to_fit();
            Signer {
                verifier: VerifierKind::Cosign,
                identity,
                issuer: Some("https://token.actions.githubusercontent.com".to_owned()),
                // As `verify_keyless` builds it, `format!` capacity and all.
                matched: format!("fulcio root {}", "O=sigstore.dev,CN=sigstore"),
                signed_digest: digest.clone(),
                valid_until: None,
            }
        }
        SignerKind::Key => Signer {
            verifier: VerifierKind::Cosign,
            identity: "/etc/crigate/keys/release.pub".to_owned(),
            issuer: None,
            matched: "/etc/crigate/keys/release.pub".to_owned(),
            signed_digest: digest.clone(),
            valid_until: None,
        },
    }
}

/// Fills a cache with one trusted verdict per key, through `get_or_verify` (the only way
/// in), on a current-thread runtime like `crigate serve`'s.
fn fill(rt: &tokio::runtime::Runtime, cache: &VerdictCache, keys: &[CacheKey], kind: SignerKind) {
    rt.block_on(async {
        for (i, key) in keys.iter().enumerate() {
            let signer = signer_for(kind, i, &key.digest);
            let (verdict, _) = cache
                .get_or_verify(key.clone(), move || async move {
                    Ok::<_, ()>(Verdict::Trusted(signer))
                })
                .await
                .unwrap();
            assert!(matches!(verdict, Verdict::Trusted(_)));
        }
    });
}

fn cache(ttl: Duration, max_entries: usize) -> VerdictCache {
    VerdictCache::open(CacheConfig {
        positive_ttl: ttl,
        negative_ttl: ttl,
        max_entries,
        path: None,
    })
    .unwrap()
}

/// A permutation of 0..n (xorshift, fixed seed), so lookups do not walk memory in order.
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

fn get_or_verify_hit(cache: &VerdictCache, key: &CacheKey) -> Verdict {
    let (verdict, _) = cache
        .get_or_verify(key.clone(), || async { Err::<Verdict, ()>(()) })
        .now_or_never()
        .expect("a hit returns without waiting")
        .unwrap();
    verdict
}

struct Memory {
    heap: Heap,
    rss: i64,
    fill_time: Duration,
}

/// Fills `cache` with a verdict per key, counting the heap it keeps.
fn fill_counted(
    rt: &tokio::runtime::Runtime,
    cache: &VerdictCache,
    keys: &[CacheKey],
    kind: SignerKind,
) -> Memory {
    let rss_before = rss_bytes() as i64;
    let before = heap();
    COUNTING.store(true, Relaxed);
    let started = Instant::now();
    fill(rt, cache, keys, kind);
    let fill_time = started.elapsed();
    COUNTING.store(false, Relaxed);
    let after = heap();
    assert_eq!(cache.len(), keys.len());
    Memory {
        heap: Heap {
            requested: after.requested - before.requested,
            chunks: after.chunks - before.chunks,
            allocations: after.allocations - before.allocations,
        },
        rss: rss_bytes() as i64 - rss_before,
        fill_time,
    }
}

struct CacheResults {
    entries: usize,
    get: Duration,
    /// The same key over and over: everything in the CPU caches.
    get_hot: Duration,
    get_or_verify: Duration,
    /// What one hit is made of, each timed alone.
    parts: Vec<(&'static str, Duration)>,
}

/// Times hits on a filled cache, random keys, and the parts a hit is made of.
fn measure_cache(cache: &VerdictCache, keys: &[CacheKey]) -> CacheResults {
    // The keys to look up, in random order, each a fresh clone allocated in that order:
    // the caller's key is one it just built (hot), the cache's entries are wherever they
    // were put (cold, as for a kubelet pull minutes after the last one).
    let probes: Vec<CacheKey> = shuffled(keys.len())
        .into_iter()
        .map(|i| keys[i].clone())
        .collect();
    let lookups = 1_000_000u32;
    // The same map shape as the cache's slots, for the lookup alone.
    let map: std::collections::HashMap<CacheKey, Arc<u64>> =
        keys.iter().map(|k| (k.clone(), Arc::new(0))).collect();
    let mutex = std::sync::Mutex::new(());
    let verdict = cache.get(&keys[0]).unwrap();
    let mut gets = Vec::new();
    let mut hot = Vec::new();
    let mut hits = Vec::new();
    let mut parts: Vec<Vec<Duration>> = vec![Vec::new(); 5];
    for _ in 0..5 {
        let mut i = 0usize;
        gets.push(per_op(lookups, || {
            let key = &probes[i % probes.len()];
            i += 1;
            black_box(cache.get(black_box(key)).unwrap());
        }));
        hot.push(per_op(lookups, || {
            black_box(cache.get(black_box(&keys[0])).unwrap());
        }));
        let mut i = 0usize;
        hits.push(per_op(lookups, || {
            let key = &probes[i % probes.len()];
            i += 1;
            black_box(get_or_verify_hit(cache, black_box(key)));
        }));
        parts[0].push(per_op(lookups, || {
            drop(black_box(mutex.lock().unwrap()));
        }));
        let mut i = 0usize;
        parts[1].push(per_op(lookups, || {
            let key = &probes[i % probes.len()];
            i += 1;
            black_box(map.get(black_box(key)).cloned());
        }));
        parts[2].push(per_op(lookups, || {
            black_box(SystemTime::now());
        }));
        parts[3].push(per_op(lookups, || {
            black_box(black_box(&verdict).clone());
        }));
        let mut i = 0usize;
        parts[4].push(per_op(lookups, || {
            let key = &probes[i % probes.len()];
            i += 1;
            black_box(black_box(key).clone());
        }));
    }
    let names = [
        "uncontended `Mutex` lock + unlock",
        "`HashMap<CacheKey, Arc<_>>` lookup (SipHash) + Arc clone, same keys, same order",
        "`SystemTime::now()` (`now_secs`)",
        "`Verdict` clone + drop, one verdict over and over (keyless: 4 heap strings)",
        "`CacheKey` clone + drop (`get_or_verify` takes it by value)",
    ];
    CacheResults {
        entries: keys.len(),
        get: median(gets),
        get_hot: median(hot),
        get_or_verify: median(hits),
        parts: names
            .into_iter()
            .zip(parts.into_iter().map(median))
            .collect(),
    }
}

// === Cold verification: timing and breakdown ===

struct ColdResult {
    name: &'static str,
    cold: Duration,
    primitives: Vec<(&'static str, Duration)>,
    sha256: Duration,
}

impl ColdResult {
    fn sum(&self) -> Duration {
        self.primitives.iter().map(|(_, d)| *d).sum::<Duration>() + self.sha256
    }
}

/// Times `cold` and each of its primitives, interleaved over `rounds` rounds.
fn measure_cold(
    name: &'static str,
    cold: &Cold,
    primitives: &[Primitive],
    iterations: u32,
    rounds: usize,
) -> ColdResult {
    assert!(
        matches!(cold.run(), Verdict::Trusted(_)),
        "{name} must verify"
    );
    for p in primitives {
        p.verify();
    }
    let mut total = Vec::new();
    let mut each: Vec<Vec<Duration>> = vec![Vec::new(); primitives.len()];
    let mut sha = Vec::new();
    for _ in 0..rounds {
        total.push(per_op(iterations, || {
            black_box(cold.run());
        }));
        for (p, samples) in primitives.iter().zip(&mut each) {
            samples.push(per_op(iterations, || p.verify()));
        }
        sha.push(per_op(iterations * 10, || {
            sha256_payload(&cold.layer.payload)
        }));
    }
    ColdResult {
        name,
        cold: median(total),
        primitives: primitives
            .iter()
            .zip(each)
            .map(|(p, samples)| (p.name, median(samples)))
            .collect(),
        sha256: median(sha),
    }
}

/// K01 step by step, through the same public functions `verify_keyless` calls, in its
/// order: where the time beyond the signature checks goes.
fn k01_breakdown(cold: &Cold, iterations: u32, rounds: usize) -> Vec<(&'static str, Duration)> {
    let layer = &cold.layer;
    let policy = &cold.policy;
    let leaf_pem = layer.certificate_pem.as_deref().unwrap().as_bytes();
    let chain_pem = layer.chain_pem.as_deref().unwrap().as_bytes();
    let bundle_json = layer.bundle_json.as_deref().unwrap().as_bytes();
    let signature = cosign::decode_signature(&layer.signature_b64).unwrap();
    let leaf = ParsedCertificate::from_pem_many(leaf_pem)
        .unwrap()
        .remove(0);
    let chain = ParsedCertificate::from_pem_many(chain_pem).unwrap();
    let candidates: Vec<&ParsedCertificate> = chain
        .iter()
        .chain(policy.fulcio_intermediates.iter())
        .collect();
    let path = cert::build_chain(&leaf, &candidates, &policy.fulcio_roots).unwrap();
    let bundle = rekor::RekorBundle::parse(bundle_json).unwrap();
    let at = rekor::verify_set(&bundle, &policy.rekor_keys).unwrap();

    type Stage<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let stages: Vec<Stage<'_>> = vec![
        (
            "signature base64",
            Box::new(|| {
                black_box(cosign::decode_signature(&layer.signature_b64).unwrap());
            }),
        ),
        (
            "parse leaf (PEM, x509, TBS re-encode, key)",
            Box::new(|| {
                black_box(ParsedCertificate::from_pem_many(leaf_pem).unwrap());
            }),
        ),
        (
            "parse chain annotation (2 certs)",
            Box::new(|| {
                black_box(ParsedCertificate::from_pem_many(chain_pem).unwrap());
            }),
        ),
        (
            "build_chain",
            Box::new(|| {
                black_box(cert::build_chain(&leaf, &candidates, &policy.fulcio_roots).unwrap());
            }),
        ),
        (
            "Rekor bundle parse",
            Box::new(|| {
                black_box(rekor::RekorBundle::parse(bundle_json).unwrap());
            }),
        ),
        (
            "verify_set (JCS + P-256)",
            Box::new(|| {
                black_box(rekor::verify_set(&bundle, &policy.rekor_keys).unwrap());
            }),
        ),
        (
            "check_entry_body (b64, JSON, PEM, SHA-256)",
            Box::new(|| {
                rekor::check_entry_body(
                    &bundle.payload,
                    &layer.payload,
                    &signature,
                    rekor::LoggedSigner::CertificateDer(leaf.der()),
                )
                .unwrap();
            }),
        ),
        (
            "validity + code signing EKU",
            Box::new(|| {
                cert::check_validity(&path, at).unwrap();
                cert::check_code_signing(&leaf).unwrap();
            }),
        ),
        (
            "leaf signature over payload (P-256)",
            Box::new(|| {
                cosign::check_leaf_signature(&leaf, &layer.payload, &signature).unwrap();
            }),
        ),
        (
            "embedded SCT (precert TBS + P-256)",
            Box::new(|| {
                sct::verify_embedded_sct(&leaf, path[1], &policy.ct_log_keys).unwrap();
            }),
        ),
        (
            "identity (SAN, issuer ext, match)",
            Box::new(|| {
                let identity = cert::leaf_identity(&leaf).unwrap();
                cosign::check_identity(&identity, &policy.identities).unwrap();
            }),
        ),
        (
            "payload parse + digest + docker-reference",
            Box::new(|| {
                let signed = payload::parse_simple_signing(&layer.payload).unwrap();
                payload::check_manifest_digest(&signed, &cold.image).unwrap();
                payload::check_docker_reference(
                    &signed,
                    &cold.repository,
                    &policy.docker_reference,
                )
                .unwrap();
            }),
        ),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); stages.len()];
    for _ in 0..rounds {
        for ((_, stage), samples) in stages.iter().zip(&mut samples) {
            samples.push(per_op(iterations, stage));
        }
    }
    stages
        .iter()
        .zip(samples)
        .map(|((name, _), s)| (*name, median(s)))
        .collect()
}

// === End to end, against the registry ===

struct EndToEnd {
    registry: Registry,
    host: String,
    log: PathBuf,
    signer: KeySigner,
}

impl EndToEnd {
    async fn start() -> Self {
        let registry = Registry::start()
            .await
            .expect("registry (run integration/setup)");
        Self {
            host: registry.host(),
            log: registry.log_path().to_owned(),
            registry,
            signer: KeySigner::generate(),
        }
    }

    /// Pushes a fresh image as `repo:v1`, signs it (legacy `.sig`), returns its reference
    /// and digest.
    async fn signed_image(&self, repo: &str) -> (ImageRef, Digest) {
        let image = TestImage::builder()
            .label(&format!("bench={repo}"))
            .build()
            .unwrap();
        let digest = self.registry.push(repo, "v1", &image).await.unwrap();
        self.signer.sign_legacy(&self.registry, repo, &digest).await;
        (
            format!("{}/{repo}:v1", self.host).parse().unwrap(),
            digest.parse().unwrap(),
        )
    }

    fn engine(&self, ttl: Duration) -> Engine {
        let config = RegistryConfig {
            plain_http: vec![self.host.clone()],
            ..RegistryConfig::default()
        };
        Engine::new(
            Client::new(config).unwrap(),
            Arc::new(cache(ttl, 1024)),
            Duration::from_secs(10),
        )
    }

    fn requirement(&self) -> Requirement {
        let policy = CosignPolicy {
            keys: vec![
                TrustedKey::from_pem("cosign.pub", self.signer.public_pem().as_bytes()).unwrap(),
            ],
            ..CosignPolicy::default()
        };
        Requirement {
            cosign: Some(Arc::new(policy)),
            notation: None,
            fingerprint: fingerprint(),
        }
    }

    /// The registry's access-log lines (one per request: `... "GET /v2/... HTTP/1.1" 200
    /// ...`), as `METHOD path status`.
    fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once('"')?;
                let (request, rest) = rest.split_once('"')?;
                let request = request.strip_suffix(" HTTP/1.1")?;
                let status = rest.split_whitespace().next()?;
                Some(format!("{request} {status}"))
            })
            .collect()
    }

    /// The median time the registry itself logged for requests whose line contains
    /// `uri` (`http.response.duration=` of its "response completed" lines).
    fn registry_durations(&self, uri: &str) -> Option<Duration> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let durations: Vec<Duration> = log
            .lines()
            .filter(|l| l.contains("response completed") && l.contains(uri))
            .filter_map(|l| {
                let value = l
                    .split("http.response.duration=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?;
                let value = value.trim_matches('"');
                let (number, scale) = if let Some(v) = value.strip_suffix("ms") {
                    (v, 1e-3)
                } else if let Some(v) = value.strip_suffix("µs") {
                    (v, 1e-6)
                } else if let Some(v) = value.strip_suffix("ns") {
                    (v, 1e-9)
                } else {
                    (value.strip_suffix('s')?, 1.0)
                };
                Some(Duration::from_secs_f64(number.parse::<f64>().ok()? * scale))
            })
            .collect();
        (!durations.is_empty()).then(|| median(durations))
    }

    /// How many requests were logged since `before`, and how many of those contain
    /// `needle`. Waits a moment first: the registry logs a request after answering it.
    async fn requests_since(&self, before: usize, needle: &str) -> (usize, usize) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let requests = self.requests();
        let new = &requests[before.min(requests.len())..];
        (new.len(), new.iter().filter(|r| r.contains(needle)).count())
    }
}

async fn verify_trusted(engine: &Engine, image: &ImageRef, requirement: &Requirement) {
    let outcome = engine.verify(image, requirement, None).await.unwrap();
    assert!(
        matches!(outcome.verdict, Verdict::Trusted(_)),
        "{:?}",
        outcome.verdict
    );
}

/// One round of item 5: 100 concurrent calls for one image on a fresh engine whose
/// cache (positive TTL) is empty.
struct Concurrent {
    by: &'static str,
    elapsed: Duration,
    sig_fetches: usize,
    manifest_fetches: usize,
    requests: usize,
    cache_entries: usize,
}

struct EndToEndResults {
    cached_by_tag: Duration,
    cached_by_digest: Duration,
    registry_side_manifest: Option<Duration>,
    registry_side_any: Option<Duration>,
    cold_by_tag: Duration,
    cold_by_digest: Duration,
    one_verify: Vec<String>,
    requests_per_verify: f64,
    resolve_only: Duration,
    resolves_100_concurrent: Duration,
    concurrent: Vec<Concurrent>,
}

async fn time_cold(
    engine: &Engine,
    image: &ImageRef,
    requirement: &Requirement,
    runs: usize,
) -> Duration {
    for _ in 0..20 {
        verify_trusted(engine, image, requirement).await;
    }
    let mut samples = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        verify_trusted(engine, image, requirement).await;
        samples.push(t.elapsed());
    }
    median(samples)
}

async fn concurrent_round(
    e2e: &EndToEnd,
    requirement: &Requirement,
    repo: &str,
    by_digest: bool,
) -> Concurrent {
    let (image, digest) = e2e.signed_image(repo).await;
    let (image, manifest_path) = if by_digest {
        let path = format!("/v2/{repo}/manifests/{digest} ");
        (image.with_digest(digest.clone()), path)
    } else {
        (image, format!("/v2/{repo}/manifests/v1 "))
    };
    let sig_path = format!("/v2/{repo}/manifests/{}.sig ", digest.tag_form());
    let engine = Arc::new(e2e.engine(Duration::from_secs(3600)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = e2e.requests().len();
    let started = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (engine, image, requirement) = (engine.clone(), image.clone(), requirement.clone());
            tokio::spawn(async move { verify_trusted(&engine, &image, &requirement).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let (requests, sig_fetches) = e2e.requests_since(before, &sig_path).await;
    let (_, manifest_fetches) = e2e.requests_since(before, &manifest_path).await;
    Concurrent {
        by: if by_digest { "digest" } else { "tag" },
        elapsed,
        sig_fetches,
        manifest_fetches,
        requests,
        cache_entries: engine.cache().len(),
    }
}

async fn measure_end_to_end(e2e: &EndToEnd) -> EndToEndResults {
    // 4: cold, one call at a time (zero TTLs: every call verifies), by tag and by digest.
    let (image, digest) = e2e.signed_image("bench-cold").await;
    let by_digest = image.with_digest(digest);
    let requirement = e2e.requirement();
    let engine = e2e.engine(Duration::ZERO);
    let runs = 200;
    let cold_by_digest = time_cold(&engine, &by_digest, &requirement, runs).await;
    let cold_by_tag = time_cold(&engine, &image, &requirement, runs).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = e2e.requests().len();
    for _ in 0..runs {
        verify_trusted(&engine, &image, &requirement).await;
    }
    let (requests, _) = e2e.requests_since(before, "").await;
    // The engine's hit path: a verdict cached, the same call again.
    let warm = e2e.engine(Duration::from_secs(3600));
    let cached_by_tag = time_cold(&warm, &image, &requirement, runs).await;
    let cached_by_digest = time_cold(&warm, &by_digest, &requirement, runs).await;
    let registry_side_manifest =
        e2e.registry_durations("http.request.uri=/v2/bench-cold/manifests/v1 ");
    let registry_side_any = e2e.registry_durations("http.request.uri=/v2/bench-cold/");
    let one_verify = {
        let before = e2e.requests().len();
        verify_trusted(&engine, &image, &requirement).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        e2e.requests()[before..].to_vec()
    };

    // One manifest round trip: the resolve every call starts with, cached or not; and
    // 100 of them at once, the floor for 100 concurrent calls as the engine is built.
    let client = Client::new(RegistryConfig {
        plain_http: vec![e2e.host.clone()],
        ..RegistryConfig::default()
    })
    .unwrap();
    client.resolve(&image).await.unwrap();
    let mut resolves = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        client.resolve(&image).await.unwrap();
        resolves.push(t.elapsed());
    }
    let mut concurrent_resolves = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (client, image) = (client.clone(), image.clone());
                tokio::spawn(async move { client.resolve(&image).await.unwrap() })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        concurrent_resolves.push(t.elapsed());
    }

    // 5: 100 concurrent calls for one digest, each round on a freshly pushed and signed
    // image and a fresh engine, by tag and by digest reference.
    let mut concurrent = Vec::new();
    for round in 0..5 {
        for by_digest in [false, true] {
            let repo = format!(
                "bench-concurrent-{round}-{}",
                if by_digest { "d" } else { "t" }
            );
            concurrent.push(concurrent_round(e2e, &requirement, &repo, by_digest).await);
        }
    }
    EndToEndResults {
        cached_by_tag,
        cached_by_digest,
        registry_side_manifest,
        registry_side_any,
        cold_by_tag,
        cold_by_digest,
        one_verify,
        requests_per_verify: requests as f64 / runs as f64,
        resolve_only: median(resolves),
        resolves_100_concurrent: median(concurrent_resolves),
        concurrent,
    }
}

// === Criterion ===

fn criterion_benches(
    c: &mut Criterion,
    cache: &VerdictCache,
    keys: &[CacheKey],
    c01: &Cold,
    k01: &Cold,
    c01_primitives: &[Primitive],
    k01_primitives: &[Primitive],
) {
    let probes: Vec<CacheKey> = shuffled(keys.len())
        .into_iter()
        .map(|i| keys[i].clone())
        .collect();
    let mut group = c.benchmark_group(format!("cache_hit_{}_entries", keys.len()));
    let mut i = 0usize;
    group.bench_function("get", |b| {
        b.iter(|| {
            let key = &probes[i % probes.len()];
            i += 1;
            cache.get(black_box(key)).unwrap()
        })
    });
    let mut i = 0usize;
    group.bench_function("get_or_verify", |b| {
        b.iter(|| {
            let key = &probes[i % probes.len()];
            i += 1;
            get_or_verify_hit(cache, black_box(key))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("cold_verify");
    group.bench_function("C01_key_p256", |b| b.iter(|| c01.run()));
    group.bench_function("C01_primitives", |b| {
        b.iter(|| {
            c01_primitives.iter().for_each(Primitive::verify);
            sha256_payload(&c01.layer.payload);
        })
    });
    group.bench_function("K01_keyless_sct", |b| b.iter(|| k01.run()));
    group.bench_function("K01_primitives", |b| {
        b.iter(|| {
            k01_primitives.iter().for_each(Primitive::verify);
            sha256_payload(&k01.layer.payload);
        })
    });
    group.finish();
}

fn criterion_end_to_end(c: &mut Criterion, rt: &tokio::runtime::Runtime, e2e: &EndToEnd) {
    let (image, _) = rt.block_on(e2e.signed_image("bench-criterion"));
    let requirement = e2e.requirement();
    let engine = e2e.engine(Duration::ZERO);
    let mut group = c.benchmark_group("end_to_end");
    group.sample_size(30);
    group.bench_function("engine_verify_cold_key_based", |b| {
        b.iter(|| rt.block_on(verify_trusted(&engine, &image, &requirement)))
    });
    group.finish();
}

// === Summary ===

fn ratio_line(what: &str, value: f64, target: &str, ok: bool) {
    println!(
        "| {what} | {value:.2} | {target} | {} |",
        if ok { "met" } else { "MISSED" }
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: criterion then
    // runs each routine once, and the registry and the summary are skipped.
    let bench = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    // crigate serve runs one current-thread runtime; so does this bench.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let dir = vectors_dir();
    let c01 = c01_case(&dir);
    let k01 = k01_case(&dir, Trust::TrustedRoot);
    let k01_pem = k01_case(&dir, Trust::Pem);
    let c01_primitives = c01_primitives(&c01);
    let k01_primitives = k01_primitives(&k01);

    let entries = if bench { 100_000 } else { 1_000 };
    let keys = keys(entries);
    let verdicts = cache(Duration::from_secs(3600), entries);
    let keyless_memory = fill_counted(&rt, &verdicts, &keys, SignerKind::Keyless);
    let key_memory = if bench {
        let other = cache(Duration::from_secs(3600), entries);
        let memory = fill_counted(&rt, &other, &keys, SignerKind::Key);
        drop(other);
        Some(memory)
    } else {
        None
    };

    criterion_benches(
        &mut c,
        &verdicts,
        &keys,
        &c01,
        &k01,
        &c01_primitives,
        &k01_primitives,
    );
    let Some(key_memory) = key_memory else {
        c.final_summary();
        return;
    };
    let e2e = rt.block_on(EndToEnd::start());
    criterion_end_to_end(&mut c, &rt, &e2e);
    c.final_summary();

    // The summary: this binary's own timing, after criterion, in one run.
    let load_before = harness::process::load_average();
    let cache_results = measure_cache(&verdicts, &keys);
    let c01_result = measure_cold("C01 key-based P-256", &c01, &c01_primitives, 2000, 9);
    let k01_result = measure_cold(
        "K01 keyless + SCT, trusted_root.json",
        &k01,
        &k01_primitives,
        300,
        9,
    );
    let k01_pem_result = measure_cold(
        "K01 keyless + SCT, root PEMs",
        &k01_pem,
        &k01_primitives,
        300,
        9,
    );
    let breakdown = k01_breakdown(&k01, 300, 9);
    let breakdown_pem = k01_breakdown(&k01_pem, 300, 9);
    let e2e_results = rt.block_on(measure_end_to_end(&e2e));

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\n## crigate verification summary");
    println!(
        "machine: {cores} cores ({}), one current-thread tokio runtime as `crigate serve`; \
         load average before the summary {load_before}, after {}",
        std::env::consts::ARCH,
        harness::process::load_average()
    );

    println!("\n### 1. Cached verdict lookup ({} entries, random key order unless said, median of 5 x 1M)", cache_results.entries);
    println!("| measure | ns | target | |");
    println!("|---|---|---|---|");
    let under_1us = |d: Duration| {
        if d < Duration::from_micros(1) {
            "met"
        } else {
            "MISSED"
        }
    };
    println!(
        "| `VerdictCache::get`, hit | {:.0} | < 1000 | {} |",
        ns(cache_results.get),
        under_1us(cache_results.get)
    );
    println!(
        "| `VerdictCache::get`, hit, one key over and over (CPU caches hot) | {:.0} | < 1000 | {} |",
        ns(cache_results.get_hot),
        under_1us(cache_results.get_hot)
    );
    println!(
        "| `get_or_verify`, hit (polled once; key clone included) | {:.0} | < 1000 | {} |",
        ns(cache_results.get_or_verify),
        under_1us(cache_results.get_or_verify)
    );
    for (name, d) in &cache_results.parts {
        println!("| &nbsp;&nbsp;part: {name} | {:.0} | | |", ns(*d));
    }

    println!(
        "\n### 2. Memory of {} cached verdicts (counting global allocator)",
        entries
    );
    println!("| signer | requested bytes | with malloc chunk overhead | allocations/entry | RSS growth | target | |");
    println!("|---|---|---|---|---|---|---|");
    for (name, m) in [
        ("keyless (GitHub workflow SAN, ~100 B)", &keyless_memory),
        ("key-based (key path)", &key_memory),
    ] {
        let h = m.heap;
        println!(
            "| {name} | {:.1} MiB ({:.0} B/entry) | {:.1} MiB ({:.0} B/entry) | {:.1} | {:.1} MiB | < 64 MiB | {} |",
            mib(h.requested),
            h.requested as f64 / entries as f64,
            mib(h.chunks),
            h.chunks as f64 / entries as f64,
            h.allocations as f64 / entries as f64,
            mib(m.rss),
            if mib(h.chunks) < 64.0 { "met" } else { "MISSED" }
        );
    }
    println!(
        "(fill: {:.0} ms for {entries} `get_or_verify` misses, one task each)",
        keyless_memory.fill_time.as_secs_f64() * 1e3
    );

    println!(
        "\n### 3. Cold `cosign::verify`, material already fetched (median of 9 interleaved rounds)"
    );
    println!("| check | µs |");
    println!("|---|---|");
    for r in [&c01_result, &k01_result, &k01_pem_result] {
        println!(
            "| **{}: `cosign::verify`** | **{:.1}** |",
            r.name,
            us(r.cold)
        );
        for (name, d) in &r.primitives {
            println!("| &nbsp;&nbsp;aws-lc-rs: {name} | {:.1} |", us(*d));
        }
        println!(
            "| &nbsp;&nbsp;aws-lc-rs: SHA-256 of the payload | {:.2} |",
            us(r.sha256)
        );
        println!("| &nbsp;&nbsp;sum of primitives | {:.1} |", us(r.sum()));
    }
    println!(
        "\n#### K01 stage by stage (the public functions `verify_keyless` calls, in its order)"
    );
    println!("| stage | trusted_root.json µs | root PEMs µs |");
    println!("|---|---|---|");
    for ((name, d), (_, d_pem)) in breakdown.iter().zip(&breakdown_pem) {
        println!("| {name} | {:.1} | {:.1} |", us(*d), us(*d_pem));
    }
    let total: Duration = breakdown.iter().map(|(_, d)| *d).sum();
    let total_pem: Duration = breakdown_pem.iter().map(|(_, d)| *d).sum();
    println!(
        "| sum of stages | {:.1} | {:.1} |",
        us(total),
        us(total_pem)
    );

    println!(
        "\n### 4. End to end, cold, against docker-registry on loopback (key-based legacy `.sig`)"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| `Engine::verify` by tag, verdict cached (hit), median of 200 | {:.0} µs |",
        us(e2e_results.cached_by_tag)
    );
    println!(
        "| `Engine::verify` by digest, verdict cached (hit), median of 200 | {:.0} µs |",
        us(e2e_results.cached_by_digest)
    );
    if let (Some(manifest), Some(any)) = (
        e2e_results.registry_side_manifest,
        e2e_results.registry_side_any,
    ) {
        println!(
            "| registry's own logged time per request (`http.response.duration`), median: `GET manifests/v1` / any `bench-cold` request | {:.0} µs / {:.0} µs |",
            us(manifest),
            us(any)
        );
    }
    println!(
        "| `Engine::verify` by tag, zero TTL, median of 200 | {:.0} µs |",
        us(e2e_results.cold_by_tag)
    );
    println!(
        "| `Engine::verify` by digest, zero TTL, median of 200 | {:.0} µs |",
        us(e2e_results.cold_by_digest)
    );
    println!(
        "| registry requests per cold verify by tag (access log) | {:.1} |",
        e2e_results.requests_per_verify
    );
    for request in &e2e_results.one_verify {
        println!("| &nbsp;&nbsp;`{request}` | |");
    }
    println!(
        "| one manifest resolve by tag alone (`Client::resolve`), median of 200 | {:.0} µs |",
        us(e2e_results.resolve_only)
    );
    println!(
        "| 100 concurrent `Client::resolve` of one tag alone, median of 5 | {:.0} µs |",
        us(e2e_results.resolves_100_concurrent)
    );

    println!("\n### 5. 100 concurrent `Engine::verify` of one uncached image (positive TTL, fresh engine)");
    println!("| reference | elapsed µs | `.sig` GETs | manifest GETs of the image | all requests | cache entries |");
    println!("|---|---|---|---|---|---|");
    for c in &e2e_results.concurrent {
        println!(
            "| {} | {:.0} | {} | {} | {} | {} |",
            c.by,
            us(c.elapsed),
            c.sig_fetches,
            c.manifest_fetches,
            c.requests,
            c.cache_entries
        );
    }
    let concurrent_by = |by: &str| {
        median(
            e2e_results
                .concurrent
                .iter()
                .filter(|c| c.by == by)
                .map(|c| c.elapsed)
                .collect(),
        )
    };

    println!("\n### Ratios against issue 4's targets");
    println!("| ratio | value | target | |");
    println!("|---|---|---|---|");
    for r in [&c01_result, &k01_result, &k01_pem_result] {
        let ratio = r.cold.as_secs_f64() / r.sum().as_secs_f64();
        ratio_line(
            &format!("3. {}: cold / sum of primitives", r.name),
            ratio,
            "<= 1.5",
            ratio <= 1.5,
        );
    }
    let e2e_ratio = e2e_results.cold_by_tag.as_secs_f64() / c01_result.cold.as_secs_f64();
    println!(
        "| 4. end-to-end cold by tag / 3a (registry round trips are {:.1} % of it) | {e2e_ratio:.1} | (reported) | |",
        100.0 * (1.0 - 1.0 / e2e_ratio)
    );
    for (by, cold) in [
        ("tag", e2e_results.cold_by_tag),
        ("digest", e2e_results.cold_by_digest),
    ] {
        let ratio = concurrent_by(by).as_secs_f64() / cold.as_secs_f64();
        ratio_line(
            &format!("5a. 100 concurrent by {by} / one cold verify by {by} (median of 5 rounds)"),
            ratio,
            "near 1 (< 2)",
            ratio < 2.0,
        );
    }
    let one_each = e2e_results.concurrent.iter().all(|c| c.sig_fetches == 1);
    println!(
        "| 5b. `.sig` manifest fetches per 100 concurrent calls | {} | exactly 1 | {} |",
        e2e_results
            .concurrent
            .iter()
            .map(|c| c.sig_fetches.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if one_each { "met" } else { "MISSED" }
    );
}
