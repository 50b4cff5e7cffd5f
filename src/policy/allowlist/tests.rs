use proptest::prelude::*;

use super::*;

fn pattern(s: &str) -> NamePattern {
    s.parse().unwrap()
}

fn image(s: &str) -> ImageRef {
    s.parse().unwrap()
}

/// The slow reference: the documented rules as a regular expression.
fn reference(pattern: &str, name: &str) -> bool {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    for (i, c) in chars.iter().enumerate() {
        match c {
            '*' if i + 1 == chars.len() => re.push_str("[^/]*"),
            '*' => re.push_str("[A-Za-z0-9_-]*"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).unwrap().is_match(name)
}

#[test]
fn a_pattern_without_star_matches_exactly() {
    let p = pattern("nginx:v0.1.0");
    assert!(p.matches_str("nginx:v0.1.0"));
    assert!(!p.matches_str("nginx:v0.1.01"));
    assert!(!p.matches_str("xnginx:v0.1.0"));
    assert!(p.matches(&image("nginx:v0.1.0"), None));
    assert!(!p.matches(&image("nginx:v0.1.1"), None));
    assert!(!p.matches(&image("other/nginx:v0.1.0"), None));
}

#[test]
fn a_trailing_star_matches_anything_but_a_slash() {
    let p = pattern("a.com/nginx*");
    assert!(p.matches_str("a.com/nginx:v0.1.0"));
    assert!(p.matches_str("a.com/nginx"));
    assert!(!p.matches_str("a.com/nginx/test:v0.1.0"));
    assert!(p.matches(&image("a.com/nginx:v0.1.0"), None));
    assert!(!p.matches(&image("a.com/nginx/test:v0.1.0"), None));
}

#[test]
fn a_star_elsewhere_matches_letters_digits_dash_and_underscore() {
    let p = pattern("registry-vpc.cn-*.aliyuncs.com/acs/pause:3.2");
    assert!(p.matches(
        &image("registry-vpc.cn-hangzhou.aliyuncs.com/acs/pause:3.2"),
        None
    ));
    assert!(p.matches(
        &image("registry-vpc.cn-beijing.aliyuncs.com/acs/pause:3.2"),
        None
    ));
    assert!(
        !p.matches_str("registry-vpc.cn-hang.zhou.aliyuncs.com/acs/pause:3.2"),
        "a middle star does not match '.'"
    );
    assert!(
        !p.matches_str("registry-vpc.cn-a/b.aliyuncs.com/acs/pause:3.2"),
        "nor '/'"
    );
    assert!(!p.matches(
        &image("registry-vpc.cn-hangzhou.aliyuncs.com/acs/pause:3.3"),
        None
    ));
}

#[test]
fn documented_ack_entries_match_the_system_images() {
    let p = pattern("registry*.*.aliyuncs.com/acs/*");
    for name in [
        "registry.cn-hangzhou.aliyuncs.com/acs/pause:3.2",
        "registry-vpc.cn-beijing.aliyuncs.com/acs/coredns:1.9",
        "registry-intl.ap-southeast-1.aliyuncs.com/acs/csi-plugin:v1",
    ] {
        assert!(p.matches(&image(name), None), "{name}");
    }
    assert!(
        !p.matches(
            &image("registry.cn-hangzhou.aliyuncs.com/acs/sub/x:1"),
            None
        ),
        "trailing star stops at /"
    );
    assert!(!p.matches(&image("registry.cn-hangzhou.aliyuncs.com/other/x:1"), None));
    let p = pattern("registry-*.ack.aliyuncs.com/acs/*");
    assert!(p.matches(
        &image("registry-cn-hangzhou.ack.aliyuncs.com/acs/pause:3.9"),
        None
    ));
}

#[test]
fn every_pattern_in_the_kritis_fixture_parses() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/kritis-ack.yaml"
    ))
    .expect("shared/fixtures/kritis-ack.yaml beside the project");
    let patterns: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- namePattern:"))
        .map(|p| p.trim().trim_matches('\''))
        .collect();
    assert!(patterns.len() >= 8, "{patterns:?}");
    for p in patterns {
        let parsed: NamePattern = p.parse().unwrap();
        assert_eq!(parsed.as_str(), p);
    }
}

#[test]
fn namespace_limited_entries_apply_only_there() {
    let allowlist = Allowlist::new(vec![
        Entry {
            pattern: pattern("registry-vpc.cn-beijing.aliyuncs.com/arms-docker-repo/*"),
            namespace: Some("default".into()),
        },
        Entry {
            pattern: pattern("registry*.*.aliyuncs.com/acs/*"),
            namespace: None,
        },
    ]);
    let arms = image("registry-vpc.cn-beijing.aliyuncs.com/arms-docker-repo/agent:1");
    assert!(allowlist.find(&arms, None, Some("default")).is_some());
    assert!(allowlist.find(&arms, None, Some("prod")).is_none());
    assert!(allowlist.find(&arms, None, None).is_none());
    let acs = image("registry.cn-hangzhou.aliyuncs.com/acs/pause:3.2");
    assert!(allowlist.find(&acs, None, Some("prod")).is_some());
    assert!(allowlist
        .find(&image("docker.io/library/nginx:1"), None, Some("default"))
        .is_none());
}

#[test]
fn docker_hub_spellings_are_one_image() {
    for written in [
        "nginx:v0.1.0",
        "docker.io/nginx:v0.1.0",
        "docker.io/library/nginx:v0.1.0",
        "index.docker.io/library/nginx:v0.1.0",
    ] {
        let p = pattern(written);
        for requested in [
            "nginx:v0.1.0",
            "library/nginx:v0.1.0",
            "docker.io/library/nginx:v0.1.0",
        ] {
            assert!(
                p.matches(&image(requested), None),
                "{written} vs {requested}"
            );
        }
    }
    assert!(pattern("nginx*").matches(&image("docker.io/library/nginx:1.25"), None));
    assert!(pattern("org/app:*").matches(&image("docker.io/org/app:1"), None));
    // `library/` is dropped from a one-component path only (Docker's familiar name):
    // `docker.io/library/org/app` is not `org/app`, which is `docker.io/org/app`.
    let nested = image("docker.io/library/org/app:1");
    for other in ["org/app:1", "org/app:*", "org/*", "docker.io/org/app:1"] {
        assert!(!pattern(other).matches(&nested, None), "{other}");
    }
    assert!(pattern("docker.io/library/org/app:1").matches(&nested, None));
    assert!(pattern("library/org/app:1").matches(&nested, None));
}

#[test]
fn tag_and_digest_forms() {
    let digest = format!("sha256:{}", "a".repeat(64));
    let both = image(&format!("registry.example/app:v1@{digest}"));
    // The digest is what is fetched: a tag allowlisted does not admit any digest written
    // beside it, in any of its spellings.
    assert!(!pattern("registry.example/app:v1").matches(&both, None));
    let written = format!("registry.example/app:v1@{digest}");
    assert!(!pattern("registry.example/app:v1").matches(&both, Some(&written)));
    let hub = image(&format!("docker.io/library/nginx:1.25@{digest}"));
    assert!(!pattern("nginx:1.25").matches(&hub, None));
    assert!(pattern(&format!("nginx@{digest}")).matches(&hub, None));
    assert!(pattern(&format!("registry.example/app@{digest}")).matches(&both, None));
    assert!(pattern(&format!("registry.example/app:v1@{digest}")).matches(&both, None));
    assert!(pattern("registry.example/app*").matches(&both, None));
    // Nor does a wildcard within the tag: it would span the tag into the digest.
    for wildcard in [
        "registry.example/app:v*",
        "registry.example/app:*",
        "app:v1*",
    ] {
        assert!(
            !pattern(wildcard).matches(&both, Some(&written)),
            "{wildcard}"
        );
    }
    assert!(!pattern("nginx:1.*").matches(&hub, None));
    assert!(pattern("nginx@*").matches(&hub, None));
    assert!(pattern("registry.example/app@sha256:*").matches(&both, Some(&written)));
    let pinned = image(&format!("registry.example/app@{digest}"));
    assert!(!pattern("registry.example/app:v1").matches(&pinned, None));
    assert!(pattern("registry.example/app@*").matches(&pinned, None));
}

#[test]
fn bad_patterns_are_refused() {
    assert_eq!("".parse::<NamePattern>(), Err(PatternError::Empty));
    assert!(matches!(
        "a b".parse::<NamePattern>(),
        Err(PatternError::BadCharacter(_))
    ));
    assert!(matches!(
        "a\n".parse::<NamePattern>(),
        Err(PatternError::BadCharacter(_))
    ));
    let at = |n: usize| "a".repeat(n).parse::<NamePattern>();
    assert!(at(MAX_PATTERN_LEN - 1).is_ok());
    assert!(at(MAX_PATTERN_LEN).is_ok());
    assert_eq!(
        at(MAX_PATTERN_LEN + 1),
        Err(PatternError::TooLong(MAX_PATTERN_LEN + 1))
    );
}

#[test]
fn many_stars_stay_fast() {
    let p = pattern(&"*a".repeat(200));
    let name = "a".repeat(400) + "b";
    let started = std::time::Instant::now();
    assert!(!p.matches_str(&name));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

proptest! {
    #[test]
    fn matcher_agrees_with_the_reference(
        pattern in "[ab._/:*-]{0,12}",
        name in "[ab._/:-]{0,16}",
    ) {
        prop_assume!(!pattern.is_empty());
        let parsed: NamePattern = pattern.parse().unwrap();
        prop_assert_eq!(parsed.matches_str(&name), reference(&pattern, &name), "{} vs {}", pattern, name);
    }

    #[test]
    fn a_pattern_without_star_matches_itself(name in "[a-z0-9._/:-]{1,40}") {
        let parsed: NamePattern = name.parse().unwrap();
        prop_assert!(parsed.matches_str(&name));
    }
}

/// The index must find exactly what a scan of every entry in order finds.
#[test]
fn index_agrees_with_a_scan_in_order() {
    let patterns = [
        "registry*.*.aliyuncs.com/acs/*",
        "nginx:v0.1.0",
        "docker.io/library/nginx:v0.1.0",
        "a.com/nginx*",
        "*",
        "registry.example/tools/*",
        "registry.example/tools/x:1",
        "org/app:*",
    ];
    let entries: Vec<Entry> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| Entry {
            pattern: pattern(p),
            namespace: (i % 3 == 2).then(|| "ns".to_owned()),
        })
        .collect();
    let allowlist = Allowlist::new(entries.clone());
    for name in [
        "registry.cn-hangzhou.aliyuncs.com/acs/pause:3.2",
        "nginx:v0.1.0",
        "a.com/nginx:v1",
        "a.com/nginx/x:v1",
        "registry.example/tools/x:1",
        "docker.io/org/app:2",
        "unrelated.example/x:1",
    ] {
        for namespace in [Some("ns"), Some("other"), None] {
            let image = image(name);
            let scanned = entries.iter().find(|e| {
                let in_scope = match (&e.namespace, namespace) {
                    (None, _) => true,
                    (Some(l), Some(n)) => l == n,
                    (Some(_), None) => false,
                };
                in_scope && e.pattern.matches(&image, None)
            });
            assert_eq!(
                allowlist.find(&image, None, namespace),
                scanned,
                "{name} in {namespace:?}"
            );
        }
    }
}
