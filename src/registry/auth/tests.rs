use super::*;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn bearer_challenges_parse() {
    let cases = [
        (
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/ubuntu:pull".into()),
            },
        ),
        (
            r#"bearer  realm = "https://r.example/t" , service=reg"#,
            Challenge::Bearer {
                realm: "https://r.example/t".into(),
                service: Some("reg".into()),
                scope: None,
            },
        ),
        (
            r#"Bearer realm="https://r.example/t?a=\"b\"",scope="repository:a:pull,push""#,
            Challenge::Bearer {
                realm: "https://r.example/t?a=\"b\"".into(),
                service: None,
                scope: Some("repository:a:pull,push".into()),
            },
        ),
        (r#"Basic realm="Registry Realm""#, Challenge::Basic),
        // Two challenges in one header (RFC 7235 section 4.1): the first is taken.
        (
            r#"Bearer realm="https://a.example/t",service="r", Basic realm="x""#,
            Challenge::Bearer {
                realm: "https://a.example/t".into(),
                service: Some("r".into()),
                scope: None,
            },
        ),
        (
            r#"Basic realm="x", Bearer realm="https://a.example/t""#,
            Challenge::Basic,
        ),
    ];
    for (header, expected) in cases {
        assert_eq!(Challenge::parse(header).unwrap(), expected, "{header}");
    }
}

#[test]
fn bad_challenges_are_specific_errors() {
    assert!(matches!(
        Challenge::parse("Negotiate abc"),
        Err(Error::UnsupportedAuth { .. })
    ));
    for header in [
        "Bearer service=x",
        "Bearer realm",
        r#"Bearer realm="unterminated"#,
        "Bearer =x",
    ] {
        assert!(
            matches!(Challenge::parse(header), Err(Error::Malformed { .. })),
            "{header}"
        );
    }
}

#[test]
fn cri_auth_follows_containerd_precedence() {
    let basic = Credentials::from_cri(CriAuth {
        username: "u",
        password: "p",
        auth: &b64("other:x"),
        identity_token: "id",
        ..CriAuth::default()
    })
    .unwrap();
    assert_eq!(
        basic.basic_header().unwrap().expose(),
        format!("Basic {}", b64("u:p"))
    );

    let identity = Credentials::from_cri(CriAuth {
        identity_token: "refresh",
        auth: &b64("other:x"),
        ..CriAuth::default()
    })
    .unwrap();
    assert!(matches!(identity, Credentials::IdentityToken(ref t) if t.expose() == "refresh"));

    let decoded = Credentials::from_cri(CriAuth {
        auth: &b64("user:pa:ss"),
        ..CriAuth::default()
    })
    .unwrap();
    assert!(
        matches!(decoded, Credentials::Basic { ref username, ref password }
        if username == "user" && password.expose() == "pa:ss")
    );

    let token = Credentials::from_cri(CriAuth {
        registry_token: "tok",
        ..CriAuth::default()
    })
    .unwrap();
    assert!(matches!(token, Credentials::RegistryToken(_)));
    assert!(Credentials::from_cri(CriAuth::default())
        .unwrap()
        .is_anonymous());

    for bad in ["!!!", &b64("no-colon")] {
        assert!(matches!(
            Credentials::from_cri(CriAuth {
                auth: bad,
                ..CriAuth::default()
            }),
            Err(Error::InvalidCredentials { .. })
        ));
    }
}

#[test]
fn debug_never_prints_secrets() {
    let credentials = Credentials::Basic {
        username: "alice".into(),
        password: Secret::new("hunter2"),
    };
    let printed = format!(
        "{credentials:?} {:?} {:?}",
        Credentials::RegistryToken(Secret::new("tok-123")),
        Secret::new("s3cret")
    );
    assert!(printed.contains("alice"));
    for secret in ["hunter2", "tok-123", "s3cret"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(printed.contains("[redacted]"));
}

#[test]
fn fingerprints_tell_credentials_apart() {
    let a = Credentials::Basic {
        username: "a".into(),
        password: Secret::new("b:c"),
    };
    let b = Credentials::Basic {
        username: "a:b".into(),
        password: Secret::new("c"),
    };
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_ne!(Credentials::Anonymous.fingerprint(), a.fingerprint());
}

#[test]
fn token_responses_accept_either_field() {
    let (token, lifetime) = TokenResponse::parse(br#"{"token":"t1","expires_in":300}"#).unwrap();
    assert_eq!((token.expose(), lifetime), ("t1", Duration::from_secs(300)));
    let (token, lifetime) = TokenResponse::parse(br#"{"access_token":"t2"}"#).unwrap();
    assert_eq!((token.expose(), lifetime), ("t2", DEFAULT_TOKEN_LIFETIME));
    let (token, _) = TokenResponse::parse(br#"{"token":"","access_token":"t3"}"#).unwrap();
    assert_eq!(token.expose(), "t3");
    let (token, _) = TokenResponse::parse(br#"{"access_token":"t4","token":""}"#).unwrap();
    assert_eq!(token.expose(), "t4");
    for bad in [
        &b"{}"[..],
        b"not json",
        br#"{"token":""}"#,
        br#"{"expires_in":-1,"token":"x"}"#,
    ] {
        assert!(matches!(
            TokenResponse::parse(bad),
            Err(Error::Malformed { .. })
        ));
    }
}

/// With both fields, `access_token` is used, as containerd and go-containerregistry
/// use it (a registry may answer an old-style `token` beside the OAuth2 one).
#[test]
fn a_token_response_with_both_fields_uses_access_token() {
    let (token, _) =
        TokenResponse::parse(br#"{"token":"legacy","access_token":"oauth2"}"#).unwrap();
    assert_eq!(token.expose(), "oauth2");
    let (token, _) =
        TokenResponse::parse(br#"{"access_token":"oauth2","token":"legacy"}"#).unwrap();
    assert_eq!(token.expose(), "oauth2");
}

#[test]
fn token_cache_expires_and_survives_huge_lifetimes() {
    let cache = TokenCache::default();
    let key = |scope: &str| TokenKey {
        registry: "r".into(),
        scope: scope.into(),
        credentials: Credentials::Anonymous.fingerprint(),
    };
    cache.insert(key("a"), Secret::new("t"), Duration::from_secs(u64::MAX));
    assert_eq!(cache.get(&key("a")).unwrap().expose(), "t");
    // Shorter than the margin: not worth caching.
    cache.insert(key("b"), Secret::new("t"), TOKEN_EXPIRY_MARGIN);
    assert!(cache.get(&key("b")).is_none());
    cache.remove(&key("a"));
    assert!(cache.get(&key("a")).is_none());
    for i in 0..(MAX_CACHED_TOKENS + 10) {
        cache.insert(
            key(&i.to_string()),
            Secret::new("t"),
            Duration::from_secs(60),
        );
    }
    assert!(cache.tokens.lock().unwrap().len() <= MAX_CACHED_TOKENS);
}

#[test]
fn docker_config_auths_are_read_per_registry() {
    let file = format!(
        r#"{{"auths": {{
            "https://index.docker.io/v1/": {{"auth": "{}"}},
            "ghcr.io": {{"username": "u", "password": "p"}},
            "quay.io": {{"auth": "{}", "identitytoken": "refresh"}},
            "127.0.0.1:5000": {{}}
        }}, "credsStore": "desktop"}}"#,
        b64("hub:pw"),
        b64("q:x"),
    );
    let auths = DockerAuths::parse(file.as_bytes()).unwrap();
    assert!(
        matches!(auths.credentials("docker.io", "library/alpine"), Some(Credentials::Basic { username, .. }) if username == "hub")
    );
    assert!(
        matches!(auths.credentials("ghcr.io", "org/app"), Some(Credentials::Basic { username, .. }) if username == "u")
    );
    assert!(matches!(
        auths.credentials("quay.io", "org/app"),
        Some(Credentials::IdentityToken(_))
    ));
    // An entry with nothing in it (a credential store holds the secret) is no
    // credentials: it hides none configured elsewhere for that host.
    assert!(auths.credentials("127.0.0.1:5000", "app").is_none());
    let mut merged = auths.clone();
    merged.add_missing("127.0.0.1:5000", basic("containerd"));
    assert!(
        matches!(merged.credentials("127.0.0.1:5000", "app"), Some(Credentials::Basic { username, .. }) if username == "containerd")
    );
    assert!(auths.credentials("example.com", "app").is_none());
    assert!(DockerAuths::parse(b"42").is_err());
}

/// An `auth` wrapped over lines, as Go's base64 decoder (containerd's, kubelet's) reads
/// it: line breaks are skipped, and the padding may be left out.
#[test]
fn a_docker_config_auth_wrapped_over_lines_is_read() {
    let encoded = b64("wrapped:secret-password");
    let (head, tail) = encoded.split_at(8);
    for auth in [
        format!("{head}\\n{tail}"),
        format!("{head}\\r\\n{tail}\\n"),
        encoded.trim_end_matches('=').to_owned(),
    ] {
        let file = format!(r#"{{"auths": {{"registry.example": {{"auth": "{auth}"}}}}}}"#);
        let auths = DockerAuths::parse(file.as_bytes()).unwrap_or_else(|e| panic!("{auth}: {e}"));
        assert!(
            matches!(
                auths.credentials("registry.example", "app"),
                Some(Credentials::Basic { username, password })
                    if username == "wrapped" && password.expose() == "secret-password"
            ),
            "{auth}"
        );
    }
    // Go's decoder skips no other whitespace: such an entry is not read.
    let file = format!(r#"{{"auths": {{"registry.example": {{"auth": " {head}\t{tail}"}}}}}}"#);
    let auths = DockerAuths::parse(file.as_bytes()).unwrap();
    assert!(auths.credentials("registry.example", "app").is_none());
    // The CRI `auth` field is decoded alike.
    let cri = Credentials::from_cri(CriAuth {
        auth: &format!("{head}\r\n{tail}"),
        ..CriAuth::default()
    });
    assert!(matches!(cri, Ok(Credentials::Basic { username, .. }) if username == "wrapped"));
}

/// Entry fields are matched without regard to case, as Go's `encoding/json` (kubelet's
/// and docker's reader) matches them.
#[test]
fn docker_config_fields_are_matched_without_regard_to_case() {
    let file = format!(
        r#"{{"auths": {{
            "a.example": {{"Auth": "{}"}},
            "b.example": {{"Username": "bee", "PASSWORD": "pw", "Email": "b@example"}},
            "c.example": {{"IdentityToken": "refresh"}},
            "d.example": {{"RegistryToken": "tok"}},
            "e.example": {{"username": "first", "UserName": "last", "password": "pw", "auth": null}}
        }}}}"#,
        b64("ay:pw"),
    );
    let auths = DockerAuths::parse(file.as_bytes()).unwrap();
    assert_eq!(user(auths.credentials("a.example", "app")), Some("ay"));
    assert_eq!(user(auths.credentials("b.example", "app")), Some("bee"));
    assert!(matches!(
        auths.credentials("c.example", "app"),
        Some(Credentials::IdentityToken(token)) if token.expose() == "refresh"
    ));
    assert!(matches!(
        auths.credentials("d.example", "app"),
        Some(Credentials::RegistryToken(_))
    ));
    assert_eq!(user(auths.credentials("e.example", "app")), Some("last"));
}

/// One entry that cannot be read is ignored with a warning; the others are kept and
/// the daemon starts.
#[test]
fn a_docker_config_entry_that_cannot_be_read_is_ignored() {
    let file = format!(
        r#"{{"auths": {{
            "bad.example": {{"auth": "%%%"}},
            "nocolon.example": {{"auth": "{}"}},
            "good.example": {{"auth": "{}"}}
        }}}}"#,
        b64("no-colon"),
        b64("good:pw"),
    );
    let auths = DockerAuths::parse(file.as_bytes()).unwrap();
    assert!(auths.credentials("bad.example", "app").is_none());
    assert!(auths.credentials("nocolon.example", "app").is_none());
    assert_eq!(user(auths.credentials("good.example", "app")), Some("good"));
}

fn basic(username: &str) -> Credentials {
    Credentials::Basic {
        username: username.to_owned(),
        password: Secret::new("p"),
    }
}

fn user(credentials: Option<&Credentials>) -> Option<&str> {
    match credentials {
        Some(Credentials::Basic { username, .. }) => Some(username),
        _ => None,
    }
}

/// kubelet's keyring rules, as a pull secret in `/var/lib/kubelet/config.json` is read:
/// path prefixes, the most specific key first, globs per host label, ports.
#[test]
fn docker_config_keys_match_as_kubelet_matches_them() {
    let file = format!(
        r#"{{"auths": {{
            "registry.example": {{"auth": "{}"}},
            "registry.example/team-a": {{"auth": "{}"}},
            "https://registry.example/team-a/deep/": {{"auth": "{}"}},
            "*.azurecr.io": {{"auth": "{}"}},
            "registry.example:5000": {{"auth": "{}"}},
            "docker.io/library": {{"auth": "{}"}},
            "https://index.docker.io/v1/": {{"auth": "{}"}},
            "https://other.example/v2/": {{"auth": "{}"}},
            "https://other.example/v2/team-c": {{"auth": "{}"}}
        }}}}"#,
        b64("any:p"),
        b64("team-a:p"),
        b64("deep:p"),
        b64("acr:p"),
        b64("port:p"),
        b64("official:p"),
        b64("hub:p"),
        b64("other:p"),
        b64("team-c:p"),
    );
    let auths = DockerAuths::parse(file.as_bytes()).unwrap();
    let who = |registry: &str, path: &str| user(auths.credentials(registry, path));
    assert_eq!(who("registry.example", "team-b/app"), Some("any"));
    assert_eq!(who("registry.example", "team-a/app"), Some("team-a"));
    assert_eq!(who("registry.example", "team-a/deep/app"), Some("deep"));
    assert_eq!(who("REGISTRY.example", "team-a/app"), Some("team-a"));
    assert_eq!(who("registry.example:5000", "team-a/app"), Some("port"));
    assert_eq!(who("registry.example:5001", "app"), None);
    assert_eq!(who("myreg.azurecr.io", "app"), Some("acr"));
    // A glob stands for one label, not several.
    assert_eq!(who("a.b.azurecr.io", "app"), None);
    assert_eq!(who("docker.io", "library/alpine"), Some("official"));
    assert_eq!(who("docker.io", "someone/app"), Some("hub"));
    // An API version path names the host.
    assert_eq!(who("other.example", "app"), Some("other"));
    assert_eq!(who("other.example", "team-c/app"), Some("team-c"));
    // The most specific key answers, in whatever order the keys were added.
    let keys = ["registry.example", "registry.example/team-a", "*.example"];
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let mut auths = DockerAuths::default();
        for i in order {
            auths.add_missing(keys[i], basic(keys[i]));
        }
        assert_eq!(
            user(auths.credentials("registry.example", "team-a/app")),
            Some("registry.example/team-a"),
            "{order:?}"
        );
        assert_eq!(
            user(auths.credentials("registry.example", "team-b/app")),
            Some("registry.example"),
            "{order:?}"
        );
        assert_eq!(
            user(auths.credentials("cdn.example", "app")),
            Some("*.example"),
            "{order:?}"
        );
    }
}

#[test]
fn host_label_globs() {
    for (glob, text, matches) in [
        ("*", "anything", true),
        ("*", "", true),
        ("a*c", "abbbc", true),
        ("a*c", "abbbd", false),
        ("a?c", "abc", true),
        ("a?c", "ac", false),
        ("*io", "azurecr-io", true),
        ("exact", "exact", true),
        ("exact", "exacts", false),
        ("**", "x", true),
    ] {
        assert_eq!(glob_matches(glob, text), matches, "{glob} {text}");
    }
}

#[test]
fn docker_config_file_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let body = br#"{"auths":{}}"#;
    for (len, ok) in [
        (MAX_DOCKER_CONFIG_BYTES - 1, true),
        (MAX_DOCKER_CONFIG_BYTES, true),
        (MAX_DOCKER_CONFIG_BYTES + 1, false),
    ] {
        let mut bytes = body.to_vec();
        bytes.resize(len as usize, b' ');
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(DockerAuths::load(&path).is_ok(), ok, "{len} bytes");
    }
    assert!(matches!(
        DockerAuths::load(&dir.path().join("missing.json")),
        Err(Error::DockerConfig { .. })
    ));
}

/// A `config.json` within its size bound may hold tens of thousands of keys; adding each
/// must not walk those already read (it took half a minute, quadratic in the keys).
#[test]
fn a_docker_config_of_many_keys_within_its_bound_is_read_in_time() {
    let mut text = String::from(r#"{"auths":{"#);
    let mut keys = 0;
    while text.len() < MAX_DOCKER_CONFIG_BYTES as usize - 100 {
        text.push_str(&format!(r#""r{keys:06}.io":{{"auth":"{}"}},"#, b64("u:p")));
        keys += 1;
    }
    text.push_str(&format!(
        r#""r000007.io/team":{{"auth":"{}"}}}}}}"#,
        b64("team:p")
    ));
    assert!(keys > 25_000, "{keys} keys");
    let started = Instant::now();
    let auths = DockerAuths::parse(text.as_bytes()).unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{keys} keys read in {took:?}"
    );
    assert_eq!(
        user(auths.credentials("r000007.io", "team/app")),
        Some("team")
    );
    assert_eq!(
        user(auths.credentials("r000007.io", "other/app")),
        Some("u")
    );
    assert_eq!(user(auths.credentials("r999999.io", "app")), None);
}
