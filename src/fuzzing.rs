//! Entry points for the fuzz targets in `fuzz/`. Each takes arbitrary bytes and must
//! return, never panic.

use crate::decision::{ApiVersion, Caller, Phase, VolumePin};
use crate::proxy::{intercept, methods};

/// Decodes `data` as the body of each intercepted method, and pins what decodes: its
/// image, and for a create each of its image volumes.
pub fn intercepted_request(data: &[u8]) {
    let caller = Caller {
        pid: None,
        uid: 0,
        gid: 0,
    };
    for api in [ApiVersion::V1, ApiVersion::V1Alpha2] {
        for phase in [Phase::Pull, Phase::Create] {
            let method = methods::Intercepted { api, phase };
            if intercept::decode(method, data, caller).is_ok() {
                let pinned = intercept::pin(method, data, "example.com/app@sha256:00");
                // Pinning a body that decoded must yield one that decodes to the pin.
                let context = intercept::decode(method, &pinned, caller);
                assert!(matches!(context, Ok(ref c) if c.image == "example.com/app@sha256:00"));
                let Ok(context) = intercept::decode(method, data, caller) else {
                    continue;
                };
                let pins: Vec<VolumePin> = context
                    .image_volumes
                    .iter()
                    .map(|volume| VolumePin {
                        mount: volume.mount,
                        image: "sha256:01".to_owned(),
                    })
                    .collect();
                if pins.is_empty() {
                    continue;
                }
                // Every volume pinned: the same mounts, each now naming the pin.
                let repinned = intercept::pin_volumes(data, &pins)
                    .and_then(|body| intercept::decode(method, &body, caller));
                assert!(matches!(repinned, Ok(ref c)
                    if c.image == context.image
                        && c.image_volumes.len() == pins.len()
                        && c.image_volumes.iter().all(|v| v.image == "sha256:01")));
            }
        }
    }
}

/// Parses `data` as an image reference; what parses must print and parse back to itself.
pub fn image_reference(data: &[u8]) {
    crate::oci::reference::fuzz_parse(data);
}

/// Parses `data` as a manifest or index, under every content type crigate accepts.
pub fn manifest(data: &[u8]) {
    crate::oci::manifest::fuzz_parse(data);
}

/// Parses `data` as every part of a cosign signature (payload, Rekor bundle,
/// certificates, key, SCT list, checkpoint, Sigstore bundle) and verifies what parses.
pub fn cosign_signature(data: &[u8]) {
    crate::verify::cosign::fuzz_signature(data);
}

/// Parses `data` as a Notation JWS and COSE envelope, and as an RFC 3161 TimeStampResp.
pub fn notation_envelope(data: &[u8]) {
    crate::verify::notation::fuzz_envelope(data);
}

/// Reads `data` as revocation material from the network: an OCSP answer, a CRL, a
/// certificate's revocation locations.
pub fn revocation(data: &[u8]) {
    crate::verify::notation::fuzz_revocation(data);
}

/// Parses `data` as a Notation trust policy document.
pub fn trust_policy(data: &[u8]) {
    crate::verify::notation::fuzz_trust_policy(data);
}

/// Parses `data` as a spool segment; every record that parses must frame and parse back
/// to itself, and the parser must never claim more bytes than it was given.
pub fn spool_segment(data: &[u8]) {
    use crate::audit::spool::frame;
    let parsed = frame::parse(data, usize::MAX, usize::MAX);
    assert!(parsed.consumed <= data.len());
    assert_eq!(frame::valid_prefix(data), parsed.consumed);
    for record in &parsed.records {
        if let Ok(bytes) = frame::encode(record) {
            let again = frame::parse(&bytes, usize::MAX, usize::MAX);
            assert_eq!(again.records.as_slice(), std::slice::from_ref(record));
        }
    }
}

/// Decodes `data` as a client's HPACK header blocks and checks each as a request.
pub fn header_blocks(data: &[u8]) {
    crate::proxy::relay::fuzz_header_blocks(data);
}

/// Drives one relayed connection with the frames and turns `data` describes
/// ([`crate::proxy::relay::fuzz`]).
pub fn relay(data: &[u8]) {
    crate::proxy::relay::fuzz::run(data);
}

/// Reads `data` as a registry's `WWW-Authenticate` challenges, one a line.
pub fn registry_challenge(data: &[u8]) {
    crate::registry::fuzz_challenge(data);
}

/// Reads `data` as a registry token endpoint's JSON answer.
pub fn token_response(data: &[u8]) {
    crate::registry::fuzz_token_response(data);
}

/// Reads `data` as a referrers API page: its `Link` and `OCI-Filters-Applied` headers and
/// its body ([`crate::registry::fuzz_referrers_page`]).
pub fn referrers_page(data: &[u8]) {
    crate::registry::fuzz_referrers_page(data);
}

/// Reads `data` as a Docker `config.json` and as the base64 `auth` of a CRI request.
pub fn docker_config(data: &[u8]) {
    crate::registry::fuzz_docker_config(data);
}

/// Reads `data` as a containerd `hosts.toml` and lists the hosts it names.
pub fn hosts_toml(data: &[u8]) {
    crate::registry::fuzz_hosts_toml(data);
}

/// Decodes `data` as a node's audit batch (`ShipRequest`) as the aggregator's ingest
/// service decodes and checks it.
pub fn audit_batch(data: &[u8]) {
    crate::aggregator::ingest::fuzz_batch(data);
}

/// Reads `data` as a Sigstore `trusted_root.json`.
pub fn trusted_root(data: &[u8]) {
    crate::verify::cosign::fuzz_trusted_root(data);
}

/// Parses `data` as crigate's own TOML configuration, the node daemon's and the
/// aggregator's.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let origin = std::path::Path::new("/etc/crigate/config.toml");
        let _ = crate::config::Config::parse(text, origin);
        let _ = crate::aggregator::AggregatorConfig::parse(text, origin);
    }
}

/// Routes `data` as a request path.
pub fn route(data: &[u8]) {
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = methods::route(path);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// A fuzz target: its corpus directory and its entry point.
    type Target = (&'static str, fn(&[u8]));

    /// Every target with its corpus directory.
    const TARGETS: &[Target] = &[
        ("intercepted_request", super::intercepted_request),
        ("image_reference", super::image_reference),
        ("manifest", super::manifest),
        ("cosign_signature", super::cosign_signature),
        ("notation_envelope", super::notation_envelope),
        ("trust_policy", super::trust_policy),
        ("spool_segment", super::spool_segment),
        ("header_blocks", super::header_blocks),
        ("revocation", super::revocation),
        ("relay", super::relay),
        ("registry_challenge", super::registry_challenge),
        ("token_response", super::token_response),
        ("referrers_page", super::referrers_page),
        ("docker_config", super::docker_config),
        ("hosts_toml", super::hosts_toml),
        ("audit_batch", super::audit_batch),
        ("trusted_root", super::trusted_root),
        ("config", super::config),
    ];

    /// Replays the checked-in corpora, so every target runs on stable in every test run.
    #[test]
    fn corpus_replays_without_panic() {
        for (target, run) in TARGETS {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus")
                .join(target);
            let mut count = 0;
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                run(&std::fs::read(&path).unwrap());
                count += 1;
            }
            assert!(count >= 4, "corpus at {} has {count} inputs", dir.display());
        }
    }

    /// A bounded, deterministic mutation run over the corpora: byte flips, truncations
    /// and insertions. Not a fuzzer, but it runs everywhere the tests run.
    #[test]
    fn mutated_corpus_never_panics() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (target, run) in TARGETS {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus")
                .join(target);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let seed = std::fs::read(entry.unwrap().path()).unwrap();
                for _ in 0..500 {
                    let mut input = seed.clone();
                    for _ in 0..(next() % 4 + 1) {
                        let at = if input.is_empty() {
                            0
                        } else {
                            (next() as usize) % input.len()
                        };
                        match next() % 3 {
                            0 if !input.is_empty() => input[at] ^= 1 << (next() % 8),
                            1 => input.truncate(at),
                            _ => input.insert(at, next() as u8),
                        }
                    }
                    run(&input);
                    super::route(&input);
                }
            }
        }
    }
}
