use super::*;

fn verifiers() -> BTreeMap<String, Fingerprint> {
    ["release", "notary"]
        .into_iter()
        .map(|n| (n.to_owned(), Fingerprint::of(n.as_bytes())))
        .collect()
}

fn policy(name: &str, namespaces: &[&str]) -> PolicyConfig {
    PolicyConfig {
        name: name.into(),
        namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
        mode: Mode::Enforce,
        verifiers: vec!["release".into()],
        require: Require::Any,
        on_error: OnError::Deny,
        allowlist: vec![],
    }
}

fn select<'a>(policies: &'a Policies, namespace: &str) -> Option<&'a str> {
    policies.select(namespace).map(|p| p.name.as_str())
}

#[test]
fn exact_beats_glob_beats_default() {
    let policies = Policies::new(
        &[
            policy("default", &["*"]),
            policy("prod", &["prod-*"]),
            policy("prod-eu", &["prod-eu-*"]),
            policy("payments", &["prod-eu-payments"]),
        ],
        &verifiers(),
    )
    .unwrap();
    assert_eq!(select(&policies, "prod-eu-payments"), Some("payments"));
    assert_eq!(select(&policies, "prod-eu-orders"), Some("prod-eu"));
    assert_eq!(select(&policies, "prod-us"), Some("prod"));
    assert_eq!(select(&policies, "dev"), Some("default"));
}

#[test]
fn without_a_default_an_unmatched_namespace_has_no_policy() {
    let policies = Policies::new(&[policy("prod", &["prod", "prod-*"])], &verifiers()).unwrap();
    assert_eq!(select(&policies, "prod"), Some("prod"));
    assert_eq!(
        select(&policies, "production"),
        None,
        "'prod' is exact, 'prod-*' needs the dash"
    );
    assert_eq!(select(&policies, "kube-system"), None);
}

#[test]
fn namespace_globs_stay_within_a_name() {
    let policies = Policies::new(&[policy("teams", &["team-*-prod"])], &verifiers()).unwrap();
    assert_eq!(select(&policies, "team-a-prod"), Some("teams"));
    assert_eq!(select(&policies, "team--prod"), Some("teams"));
    assert_eq!(select(&policies, "team-a-staging"), None);
}

#[test]
fn order_in_the_file_does_not_matter() {
    let a = Policies::new(
        &[policy("default", &["*"]), policy("prod", &["prod"])],
        &verifiers(),
    )
    .unwrap();
    let b = Policies::new(
        &[policy("prod", &["prod"]), policy("default", &["*"])],
        &verifiers(),
    )
    .unwrap();
    assert_eq!(select(&a, "prod"), select(&b, "prod"));
    assert_eq!(select(&a, "x"), select(&b, "x"));
}

#[test]
fn each_mistake_names_the_policy_and_field() {
    let v = verifiers();
    let check = |configs: &[PolicyConfig], expected: fn(&Error) -> bool| {
        let err = Policies::new(configs, &v).unwrap_err();
        assert!(expected(&err), "{err}");
    };
    check(&[policy("a b", &["x"])], |e| {
        matches!(e, Error::BadName { .. })
    });
    check(&[policy("a", &["x"]), policy("a", &["y"])], |e| {
        matches!(e, Error::DuplicateName(_))
    });
    check(&[policy("a", &[])], |e| {
        matches!(e, Error::NoNamespaces { .. })
    });
    check(&[policy("a", &["Prod"])], |e| {
        matches!(e, Error::BadNamespace { .. })
    });
    check(&[policy("a", &["prod"]), policy("b", &["prod"])], |e| {
        matches!(e, Error::Overlap { .. })
    });
    check(&[policy("a", &["*"]), policy("b", &["*"])], |e| {
        matches!(e, Error::Overlap { .. })
    });
    // Equally specific globs that share a namespace: the file's order would choose.
    for (a, b) in [
        ("prod-*", "*-dev1"),
        ("prod-*", "prod-**"),
        ("*", "**"),
        ("a*b", "ab*"),
        ("*-*", "*x*"),
    ] {
        let err = Policies::new(&[policy("a", &[a]), policy("b", &[b])], &v).unwrap_err();
        let Error::Tie { example, .. } = &err else {
            panic!("{a} {b}: {err}");
        };
        assert!(
            example.starts_with(|c: char| c.is_ascii_alphanumeric())
                && example.ends_with(|c: char| c.is_ascii_alphanumeric()),
            "{a} {b}: {err}"
        );
        assert!(glob_matches(a.as_bytes(), example.as_bytes()), "{a}: {err}");
        assert!(glob_matches(b.as_bytes(), example.as_bytes()), "{b}: {err}");
    }
    // Equally specific globs that share none, one more specific than another, and two in
    // one policy are all fine.
    for (a, b) in [
        ("prod-*", "dev-*"),
        ("a*", "*b-c"),
        ("*-eu", "*-us"),
        ("prod-*", "*"),
        // Names that start or end with '-', which no namespace has.
        ("-*", "*-"),
        ("x*", "*-"),
    ] {
        Policies::new(&[policy("a", &[a]), policy("b", &[b])], &v).unwrap();
    }
    Policies::new(&[policy("a", &["prod-*", "*-dev1"])], &v).unwrap();
    let mut unknown = policy("a", &["x"]);
    unknown.verifiers = vec!["nope".into()];
    check(
        &[unknown],
        |e| matches!(e, Error::UnknownVerifier { verifier, .. } if verifier == "nope"),
    );
    let mut none = policy("a", &["x"]);
    none.verifiers.clear();
    check(&[none.clone()], |e| {
        matches!(
            e,
            Error::NoVerifier {
                mode: "enforce",
                ..
            }
        )
    });
    none.mode = Mode::Off;
    assert!(
        Policies::new(&[none], &v).is_ok(),
        "an off policy needs no verifier"
    );
    let mut bad = policy("a", &["x"]);
    bad.allowlist = vec![AllowlistEntryConfig {
        pattern: String::new(),
        namespace: None,
    }];
    check(&[bad], |e| matches!(e, Error::Pattern { index: 0, .. }));
}

#[test]
fn fingerprint_follows_effective_content() {
    let v = verifiers();
    let base = Policies::new(&[policy("p", &["x"])], &v).unwrap();
    let same = Policies::new(&[policy("p", &["x"])], &v).unwrap();
    let fp = |p: &Policies| p.select("x").unwrap().fingerprint;
    assert_eq!(fp(&base), fp(&same));

    let mut audit = policy("p", &["x"]);
    audit.mode = Mode::Audit;
    assert_ne!(fp(&Policies::new(&[audit], &v).unwrap()), fp(&base));

    let mut allow = policy("p", &["x"]);
    allow.allowlist = vec![AllowlistEntryConfig {
        pattern: "nginx*".into(),
        namespace: None,
    }];
    assert_ne!(fp(&Policies::new(&[allow], &v).unwrap()), fp(&base));

    let mut rotated = v.clone();
    rotated.insert("release".into(), Fingerprint::of(b"a new key"));
    assert_ne!(
        fp(&Policies::new(&[policy("p", &["x"])], &rotated).unwrap()),
        fp(&base),
        "a key change is a policy change"
    );
}

#[test]
fn allowlist_entries_are_carried() {
    let mut p = policy("p", &["x"]);
    p.allowlist = vec![AllowlistEntryConfig {
        pattern: "registry*.*.aliyuncs.com/acs/*".into(),
        namespace: Some("kube-system".into()),
    }];
    let policies = Policies::new(&[p], &verifiers()).unwrap();
    let image = "registry-vpc.cn-beijing.aliyuncs.com/acs/pause:3.2"
        .parse()
        .unwrap();
    let allowlist = &policies.select("x").unwrap().allowlist;
    assert!(allowlist.find(&image, None, Some("kube-system")).is_some());
    assert!(allowlist.find(&image, None, Some("x")).is_none());
}
