//! The cost of one policy decision, the registry and runtime aside: parse the image
//! reference, select the namespace's policy among 100, look the image up in an
//! allowlist of 10, 1,000 and 10,000 entries (a miss, the worst case: every index probe
//! runs), and read the cached verdict (its key derived from the policy, the verifier and
//! the image's repository). Target: under 5 µs at 10,000 entries, and a cost
//! that grows no faster than logarithmically with the number of entries.
//!
//! Run: `cargo bench --bench decision`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use crigate::oci::{Digest, ImageRef};
use crigate::policy::model::{
    AllowlistEntryConfig, Mode, OnError, Policies, PolicyConfig, Require,
};
use crigate::verify::cache::{CacheConfig, CacheKey, Fingerprint, VerdictCache};
use crigate::verify::{Signer, Verdict, VerifierKind};

fn policies(allowlist: usize) -> Policies {
    let entries: Vec<AllowlistEntryConfig> = (0..allowlist)
        .map(|i| AllowlistEntryConfig {
            // Half wildcard patterns, half exact references, on many registries.
            pattern: if i % 2 == 0 {
                format!("registry-{i}.*.example.com/acs/*")
            } else {
                format!("registry{}.example.com/team-{i}/app:v{i}", i % 97)
            },
            namespace: (i % 5 == 0).then(|| format!("ns-{}", i % 100)),
        })
        .collect();
    let configs: Vec<PolicyConfig> = (0..100)
        .map(|i| PolicyConfig {
            name: format!("p{i}"),
            namespaces: vec![format!("ns-{i}"), format!("team-{i}-*")],
            mode: Mode::Enforce,
            verifiers: vec!["release".into()],
            require: Require::Any,
            on_error: OnError::Deny,
            allowlist: if i == 42 { entries.clone() } else { Vec::new() },
        })
        .collect();
    let verifiers: BTreeMap<String, Fingerprint> =
        [("release".to_owned(), Fingerprint::of(b"release"))].into();
    Policies::new(&configs, &verifiers).unwrap()
}

/// Median nanoseconds per decision over `rounds` rounds of `iterations`.
fn measure(allowlist: usize) -> f64 {
    let policies = policies(allowlist);
    let cache = VerdictCache::open(CacheConfig {
        positive_ttl: Duration::from_secs(3600),
        negative_ttl: Duration::from_secs(300),
        max_entries: 1000,
        path: None,
    })
    .unwrap();
    let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
    // The key as the decider builds it: the policy's fingerprint scoped to the verifier's,
    // then to the image's repository.
    let requirement = Fingerprint::of(b"release");
    let requested = "registry.example.com/payments/api:v1.2.3";
    let key_of = |image: &ImageRef| {
        let policy = policies.select("ns-42").unwrap().fingerprint;
        CacheKey::new(
            &image.repo().to_string(),
            digest.clone(),
            policy.scoped(requirement.as_bytes()),
        )
    };
    let key = key_of(&requested.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let signed = digest.clone();
    runtime
        .block_on(cache.get_or_verify(key, move || async move {
            Ok::<_, ()>(Verdict::Trusted(Signer {
                verifier: VerifierKind::Cosign,
                identity: "release".into(),
                issuer: None,
                matched: "release".into(),
                signed_digest: signed,
                valid_until: None,
            }))
        }))
        .unwrap();

    let decide = || {
        let image: ImageRef = black_box(requested).parse().unwrap();
        let policy = policies.select(black_box("ns-42")).unwrap();
        let exempt = policy
            .allowlist
            .find(&image, Some(requested), Some("ns-42"));
        assert!(exempt.is_none());
        black_box(cache.get(&key_of(&image))).is_some()
    };
    let iterations = 20_000;
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                assert!(decide());
            }
            started.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    rounds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rounds[rounds.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!("| allowlist entries | policies | µs per decision |");
    println!("|---|---|---|");
    let mut results = Vec::new();
    for entries in [10, 1_000, 10_000] {
        let ns = measure(entries);
        println!("| {entries} | 100 | {:.2} |", ns / 1000.0);
        results.push(ns);
    }
    println!(
        "\n10,000 entries: {:.2} µs (target < 5); 10,000 / 10 entries: {:.2}x (logarithmic growth allows up to 4x)",
        results[2] / 1000.0,
        results[2] / results[0]
    );
}
