use proptest::prelude::*;

use super::*;

const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn digest() -> Digest {
    format!("sha256:{HEX}").parse().unwrap()
}

#[test]
fn normalisation_table() {
    let d = format!("sha256:{HEX}");
    // (input, registry, api host, repository, tag, has digest, display)
    type Case<'a> = (
        String,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        bool,
        String,
    );
    let cases: Vec<Case> = vec![
        (
            "nginx".into(),
            "docker.io",
            "registry-1.docker.io",
            "library/nginx",
            Some("latest"),
            false,
            "docker.io/library/nginx:latest".into(),
        ),
        (
            "nginx:1.25".into(),
            "docker.io",
            "registry-1.docker.io",
            "library/nginx",
            Some("1.25"),
            false,
            "docker.io/library/nginx:1.25".into(),
        ),
        (
            "bitnami/redis".into(),
            "docker.io",
            "registry-1.docker.io",
            "bitnami/redis",
            Some("latest"),
            false,
            "docker.io/bitnami/redis:latest".into(),
        ),
        (
            "index.docker.io/nginx".into(),
            "docker.io",
            "registry-1.docker.io",
            "library/nginx",
            Some("latest"),
            false,
            "docker.io/library/nginx:latest".into(),
        ),
        (
            "docker.io/library/nginx".into(),
            "docker.io",
            "registry-1.docker.io",
            "library/nginx",
            Some("latest"),
            false,
            "docker.io/library/nginx:latest".into(),
        ),
        (
            "ghcr.io/org/app".into(),
            "ghcr.io",
            "ghcr.io",
            "org/app",
            Some("latest"),
            false,
            "ghcr.io/org/app:latest".into(),
        ),
        (
            "localhost/app".into(),
            "localhost",
            "localhost",
            "app",
            Some("latest"),
            false,
            "localhost/app:latest".into(),
        ),
        (
            "localhost:5000/a/b/c:v1".into(),
            "localhost:5000",
            "localhost:5000",
            "a/b/c",
            Some("v1"),
            false,
            "localhost:5000/a/b/c:v1".into(),
        ),
        (
            "127.0.0.1:5000/app@".to_owned() + &d,
            "127.0.0.1:5000",
            "127.0.0.1:5000",
            "app",
            None,
            true,
            format!("127.0.0.1:5000/app@{d}"),
        ),
        (
            "[::1]:5000/app:tag@".to_owned() + &d,
            "[::1]:5000",
            "[::1]:5000",
            "app",
            Some("tag"),
            true,
            format!("[::1]:5000/app:tag@{d}"),
        ),
        (
            "[fe80::1]/app".into(),
            "[fe80::1]",
            "[fe80::1]",
            "app",
            Some("latest"),
            false,
            "[fe80::1]/app:latest".into(),
        ),
        (
            "Registry.Example.com/app".into(),
            "Registry.Example.com",
            "Registry.Example.com",
            "app",
            Some("latest"),
            false,
            "Registry.Example.com/app:latest".into(),
        ),
        (
            "example.com/a_b/c__d/e-f/g--h/i.j:Tag_1.-x".into(),
            "example.com",
            "example.com",
            "a_b/c__d/e-f/g--h/i.j",
            Some("Tag_1.-x"),
            false,
            "example.com/a_b/c__d/e-f/g--h/i.j:Tag_1.-x".into(),
        ),
        // Docker's rule: "localhost:5000" alone is repository "localhost", tag "5000".
        (
            "localhost:5000".into(),
            "docker.io",
            "registry-1.docker.io",
            "library/localhost",
            Some("5000"),
            false,
            "docker.io/library/localhost:5000".into(),
        ),
    ];
    for (input, registry, api_host, repository, tag, has_digest, display) in cases {
        let image: ImageRef = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(image.registry(), registry, "{input}");
        assert_eq!(image.api_host(), api_host, "{input}");
        assert_eq!(image.repository(), repository, "{input}");
        assert_eq!(image.tag(), tag, "{input}");
        assert_eq!(image.digest().is_some(), has_digest, "{input}");
        assert_eq!(image.to_string(), display, "{input}");
        assert_eq!(
            image.to_string().parse::<ImageRef>().unwrap(),
            image,
            "{input}"
        );
    }
}

#[test]
fn invalid_references_are_refused_with_their_reason() {
    let long_tag = "t".repeat(129);
    type Expect = fn(&ReferenceError) -> bool;
    let cases: Vec<(String, Expect)> = vec![
        ("".into(), |e| matches!(e, ReferenceError::Empty)),
        (":tag".into(), |e| matches!(e, ReferenceError::Empty)),
        ("example.com/App".into(), |e| {
            matches!(e, ReferenceError::UppercaseRepository(_))
        }),
        ("example.com//app".into(), |e| {
            matches!(e, ReferenceError::EmptyComponent(_))
        }),
        ("example.com/app/".into(), |e| {
            matches!(e, ReferenceError::EmptyComponent(_))
        }),
        ("example.com/".into(), |e| {
            matches!(e, ReferenceError::EmptyComponent(_))
        }),
        ("example.com/-app".into(), |e| {
            matches!(e, ReferenceError::InvalidComponent(_))
        }),
        ("example.com/app-".into(), |e| {
            matches!(e, ReferenceError::InvalidComponent(_))
        }),
        ("example.com/a___b".into(), |e| {
            matches!(e, ReferenceError::InvalidComponent(_))
        }),
        ("example.com/a..b".into(), |e| {
            matches!(e, ReferenceError::InvalidComponent(_))
        }),
        ("example.com/a b".into(), |e| {
            matches!(e, ReferenceError::InvalidComponent(_))
        }),
        ("app:".into(), |e| {
            matches!(e, ReferenceError::InvalidTag(_))
        }),
        ("app:.x".into(), |e| {
            matches!(e, ReferenceError::InvalidTag(_))
        }),
        ("app:-x".into(), |e| {
            matches!(e, ReferenceError::InvalidTag(_))
        }),
        // A ':' before the last '/' makes the first component a domain, with a bad port.
        ("app:a/b".into(), |e| {
            matches!(e, ReferenceError::InvalidDomain(_))
        }),
        (format!("app:{long_tag}"), |e| {
            matches!(e, ReferenceError::InvalidTag(_))
        }),
        ("app@sha256:abc".into(), |e| {
            matches!(e, ReferenceError::InvalidDigest(_))
        }),
        ("app@md5:abc".into(), |e| {
            matches!(e, ReferenceError::InvalidDigest(_))
        }),
        (format!("app@sha256:{HEX}@sha256:{HEX}"), |e| {
            matches!(e, ReferenceError::InvalidDigest(_))
        }),
        ("exa_mple.com/app".into(), |e| {
            matches!(e, ReferenceError::InvalidDomain(_))
        }),
        ("-example.com/app".into(), |e| {
            matches!(e, ReferenceError::InvalidDomain(_))
        }),
        ("example.com:/app".into(), |e| {
            matches!(e, ReferenceError::InvalidDomain(_))
        }),
        ("example.com:http/app".into(), |e| {
            matches!(e, ReferenceError::InvalidDomain(_))
        }),
        ("example.com:65536/app".into(), |e| {
            matches!(e, ReferenceError::InvalidDomain(_))
        }),
        ("[::1/app".into(), |e| {
            matches!(e, ReferenceError::InvalidDomain(_))
        }),
        ("[zz::1]:5000/app".into(), |e| {
            matches!(e, ReferenceError::InvalidDomain(_))
        }),
        ("[::1]x/app".into(), |e| {
            matches!(e, ReferenceError::InvalidDomain(_))
        }),
    ];
    for (input, expected) in cases {
        match input.parse::<ImageRef>() {
            Ok(image) => panic!("{input:?} parsed as {image}"),
            Err(error) => assert!(expected(&error), "{input:?}: unexpected {error:?}"),
        }
    }
}

#[test]
fn name_length_is_limited_at_255_after_normalisation() {
    // "example.com/" is 12 characters; the path fills the rest.
    let name = |len: usize| format!("example.com/{}", "a".repeat(len - 12));
    assert!(name(MAX_NAME_LEN - 1).parse::<ImageRef>().is_ok());
    assert!(name(MAX_NAME_LEN).parse::<ImageRef>().is_ok());
    assert!(matches!(
        name(MAX_NAME_LEN + 1).parse::<ImageRef>(),
        Err(ReferenceError::NameTooLong { len: 256, .. })
    ));
    // Normalisation adds "docker.io/library/" (18 characters) and counts.
    assert!("a".repeat(MAX_NAME_LEN - 18).parse::<ImageRef>().is_ok());
    assert!(matches!(
        "a".repeat(MAX_NAME_LEN - 17).parse::<ImageRef>(),
        Err(ReferenceError::NameTooLong { .. })
    ));
}

#[test]
fn tag_length_is_limited_at_128() {
    for (len, ok) in [
        (MAX_TAG_LEN - 1, true),
        (MAX_TAG_LEN, true),
        (MAX_TAG_LEN + 1, false),
    ] {
        let input = format!("app:{}", "t".repeat(len));
        assert_eq!(input.parse::<ImageRef>().is_ok(), ok, "tag of {len}");
    }
}

#[test]
fn with_digest_pins_and_drops_the_tag() {
    let image: ImageRef = "ghcr.io/org/app:v1".parse().unwrap();
    let pinned = image.with_digest(digest());
    assert_eq!(pinned.tag(), None);
    assert_eq!(pinned.digest(), Some(&digest()));
    assert_eq!(pinned.to_string(), format!("ghcr.io/org/app@sha256:{HEX}"));
    assert_eq!(pinned.manifest_reference(), format!("sha256:{HEX}"));
    assert_eq!(image.manifest_reference(), "v1");
    assert_eq!(pinned.repo(), image.repo());
}

#[test]
fn serde_goes_through_the_parser() {
    let image: ImageRef = serde_json::from_str("\"nginx\"").unwrap();
    assert_eq!(
        serde_json::to_string(&image).unwrap(),
        "\"docker.io/library/nginx:latest\""
    );
    assert!(serde_json::from_str::<ImageRef>("\"Example.com/App\"").is_err());
}

#[test]
fn repository_parses_without_tag() {
    let repo: Repository = "nginx".parse().unwrap();
    assert_eq!(repo.to_string(), "docker.io/library/nginx");
    assert_eq!(repo.api_host(), "registry-1.docker.io");
    assert!("Nginx/X".parse::<Repository>().is_err());
}

#[test]
fn fuzz_entry_survives_odd_input() {
    for input in [
        &b""[..],
        b"\xff\xfe",
        b"@",
        b":",
        b"/",
        b"[",
        b"[]:/a",
        b"a@sha256:",
        b"a:b:c",
        b"a/b:c/d",
    ] {
        fuzz_parse(input);
    }
}

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,4}(([._]|__|-{1,2})[a-z0-9]{1,4}){0,2}"
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("docker.io".to_owned()),
        Just("localhost".to_owned()),
        "[a-z0-9]{1,6}(\\.[a-zA-Z0-9]{1,6}){1,2}",
        ("[a-z0-9]{1,6}\\.[a-z]{2,3}", 1u16..).prop_map(|(h, p)| format!("{h}:{p}")),
        (0u8..=255, 0u8..=255, 1u16..).prop_map(|(a, b, p)| format!("10.{a}.{b}.1:{p}")),
        Just("[::1]:5000".to_owned()),
    ]
}

proptest! {
    #[test]
    fn normalised_references_print_as_parsed(
        domain in domain(),
        first in component(),
        rest in proptest::collection::vec(component(), 0..3),
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        pin in any::<bool>(),
        hex in "[0-9a-f]{64}",
    ) {
        let mut path = first;
        for c in rest { path = format!("{path}/{c}"); }
        if domain == "docker.io" && !path.contains('/') {
            path = format!("library/{path}");
        }
        let mut text = format!("{domain}/{path}");
        let tag = match (tag, pin) { (None, false) => Some("latest".to_owned()), (t, _) => t };
        if let Some(tag) = &tag { text = format!("{text}:{tag}"); }
        if pin { text = format!("{text}@sha256:{hex}"); }
        let image: ImageRef = text.parse().unwrap();
        prop_assert_eq!(image.to_string(), text);
        prop_assert_eq!(image.registry(), domain.as_str());
        prop_assert_eq!(image.repository(), path.as_str());
        prop_assert_eq!(image.tag(), tag.as_deref());
    }

    #[test]
    fn any_parsed_reference_round_trips(text in "[a-zA-Z0-9:/@._\\[\\]-]{0,40}") {
        if let Ok(image) = text.parse::<ImageRef>() {
            prop_assert_eq!(image.to_string().parse::<ImageRef>(), Ok(image));
        }
    }
}
