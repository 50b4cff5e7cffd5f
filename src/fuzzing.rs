//! Entry points for the fuzz targets in `fuzz/`. Each takes arbitrary bytes and must
//! return, never panic.

use crate::decision::{ApiVersion, Caller, Phase};
use crate::proxy::{intercept, methods};

/// Decodes `data` as the body of each intercepted method, and pins what decodes.
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
            }
        }
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

    /// Replays the checked-in corpus, so the target runs on stable in every test run.
    #[test]
    fn corpus_replays_without_panic() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/intercepted_request");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            super::intercepted_request(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count >= 5, "corpus at {} has {count} inputs", dir.display());
    }

    /// A bounded, deterministic mutation run over the corpus: byte flips, truncations and
    /// insertions. Not a fuzzer, but it runs everywhere the tests run.
    #[test]
    fn mutated_corpus_never_panics() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/intercepted_request");
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for entry in std::fs::read_dir(&dir).unwrap() {
            let seed = std::fs::read(entry.unwrap().path()).unwrap();
            for _ in 0..2000 {
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
                super::intercepted_request(&input);
                super::route(&input);
            }
        }
    }
}
