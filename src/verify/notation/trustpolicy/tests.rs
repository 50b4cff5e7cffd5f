//! One test per rule of the trust policy spec that makes a document invalid, plus
//! selection, levels and DN matching.

use super::*;

/// A valid one-statement document with `statement` fields replaced.
fn doc(statement: &str) -> String {
    format!(r#"{{"version":"1.0","trustPolicies":[{statement}]}}"#)
}

const GOOD: &str = r#"{"name":"p","registryScopes":["*"],"signatureVerification":{"level":"strict"},
    "trustStores":["ca:acme"],"trustedIdentities":["*"]}"#;

fn statement(
    name: &str,
    scopes: &str,
    verification: &str,
    stores: &str,
    identities: &str,
) -> String {
    let mut fields = vec![];
    if !name.is_empty() {
        fields.push(format!(r#""name":{name}"#));
    }
    if !scopes.is_empty() {
        fields.push(format!(r#""registryScopes":{scopes}"#));
    }
    if !verification.is_empty() {
        fields.push(format!(r#""signatureVerification":{verification}"#));
    }
    if !stores.is_empty() {
        fields.push(format!(r#""trustStores":{stores}"#));
    }
    if !identities.is_empty() {
        fields.push(format!(r#""trustedIdentities":{identities}"#));
    }
    format!("{{{}}}", fields.join(","))
}

fn parse(json: &str) -> Result<TrustPolicyDocument, PolicyError> {
    TrustPolicyDocument::parse(json.as_bytes())
}

fn invalid_field(json: &str) -> &'static str {
    match parse(json) {
        Err(PolicyError::InvalidValue { field, .. }) => field,
        Err(PolicyError::MissingField { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?} for {json}"),
    }
}

#[test]
fn the_vector_and_upstream_documents_parse() {
    assert!(parse(&doc(GOOD)).is_ok());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors/notation/trustpolicy");
    for sub in [dir.clone(), dir.join("upstream")] {
        for entry in std::fs::read_dir(&sub).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    TrustPolicyDocument::parse(&bytes).is_ok(),
                    "{}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn document_level_rules() {
    assert!(matches!(
        parse(r#"{"trustPolicies":[]}"#),
        Err(PolicyError::MissingDocumentField { field: "version" })
    ));
    assert!(matches!(
        parse(r#"{"version":"2.0","trustPolicies":[]}"#),
        Err(PolicyError::UnsupportedVersion(_))
    ));
    assert!(matches!(
        parse(r#"{"version":"1.0"}"#),
        Err(PolicyError::MissingDocumentField {
            field: "trustPolicies"
        })
    ));
    assert!(matches!(
        parse(r#"{"version":"1.0","trustPolicies":[]}"#),
        Err(PolicyError::NoPolicies)
    ));
    assert!(matches!(
        parse(r#"{"version":"1.0","trustPolicies":[],"extra":1}"#),
        Err(PolicyError::Json(_))
    ));
    assert!(matches!(parse("not json"), Err(PolicyError::Json(_))));
    // A misspelt key inside a statement is refused, not ignored.
    let typo = GOOD.replace(
        "\"level\":\"strict\"",
        "\"level\":\"strict\",\"overide\":{}",
    );
    assert!(matches!(parse(&doc(&typo)), Err(PolicyError::Json(_))));
}

#[test]
fn document_size_limit_holds_at_its_edge() {
    let base = doc(GOOD);
    let pad = |total: usize| {
        let mut text = base.clone();
        text.push_str(&" ".repeat(total - base.len()));
        text
    };
    assert!(parse(&pad(MAX_TRUST_POLICY_BYTES - 1)).is_ok());
    assert!(parse(&pad(MAX_TRUST_POLICY_BYTES)).is_ok());
    assert!(matches!(
        parse(&pad(MAX_TRUST_POLICY_BYTES + 1)),
        Err(PolicyError::TooLarge(_))
    ));
}

#[test]
fn statement_count_limit_holds_at_its_edge() {
    let many = |n: usize| {
        let statements: Vec<String> = (0..n)
            .map(|i| {
                statement(
                    &format!(r#""p{i}""#),
                    &format!(r#"["registry.example.com/r{i}"]"#),
                    r#"{"level":"strict"}"#,
                    r#"["ca:acme"]"#,
                    r#"["*"]"#,
                )
            })
            .collect();
        format!(
            r#"{{"version":"1.0","trustPolicies":[{}]}}"#,
            statements.join(",")
        )
    };
    assert!(parse(&many(MAX_TRUST_POLICIES - 1)).is_ok());
    assert!(parse(&many(MAX_TRUST_POLICIES)).is_ok());
    assert!(matches!(
        parse(&many(MAX_TRUST_POLICIES + 1)),
        Err(PolicyError::TooManyPolicies(_))
    ));
}

#[test]
fn names_are_required_and_unique() {
    let unnamed = statement(
        "",
        r#"["*"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    assert!(matches!(
        parse(&doc(&unnamed)),
        Err(PolicyError::MissingName { index: 0 })
    ));
    let empty = statement(
        r#""""#,
        r#"["*"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    assert!(matches!(
        parse(&doc(&empty)),
        Err(PolicyError::MissingName { .. })
    ));
    let a = statement(
        r#""same""#,
        r#"["r.example.com/a"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    let b = statement(
        r#""same""#,
        r#"["r.example.com/b"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    assert!(matches!(
        parse(&doc(&format!("{a},{b}"))),
        Err(PolicyError::DuplicateName(_))
    ));
}

#[test]
fn registry_scope_rules() {
    let with_scopes = |scopes: &str| {
        statement(
            r#""p""#,
            scopes,
            r#"{"level":"strict"}"#,
            r#"["ca:a"]"#,
            r#"["*"]"#,
        )
    };
    assert_eq!(invalid_field(&doc(&with_scopes(""))), "registryScopes");
    assert_eq!(invalid_field(&doc(&with_scopes("[]"))), "registryScopes");
    // "*" must stand alone, and no scope may contain "*".
    assert_eq!(
        invalid_field(&doc(&with_scopes(r#"["*","r.example.com/a"]"#))),
        "registryScopes"
    );
    assert_eq!(
        invalid_field(&doc(&with_scopes(r#"["r.example.com/*"]"#))),
        "registryScopes"
    );
    // Fully qualified registry/repository only.
    for bad in [
        "registry",
        "r.example.com/",
        "/repo",
        "r.example.com/Repo",
        "r.example.com/a//b",
        "r_x.com/a",
        "r.example.com:/a",
    ] {
        assert_eq!(
            invalid_field(&doc(&with_scopes(&format!(r#"["{bad}"]"#)))),
            "registryScopes",
            "{bad}"
        );
    }
    for good in [
        "r.example.com/a",
        "localhost:5000/a/b-c",
        "r.example.com/a__b/c.d",
        "r.example.com/a---b",
    ] {
        assert!(
            parse(&doc(&with_scopes(&format!(r#"["{good}"]"#)))).is_ok(),
            "{good}"
        );
    }
    // A scope belongs to one statement; there is one global statement.
    let a = statement(
        r#""a""#,
        r#"["r.example.com/x"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    let b = statement(
        r#""b""#,
        r#"["r.example.com/x"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    assert!(matches!(
        parse(&doc(&format!("{a},{b}"))),
        Err(PolicyError::ScopeInMultiplePolicies(_))
    ));
    let g1 = statement(
        r#""g1""#,
        r#"["*"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    let g2 = statement(
        r#""g2""#,
        r#"["*"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    assert!(matches!(
        parse(&doc(&format!("{g1},{g2}"))),
        Err(PolicyError::ScopeInMultiplePolicies(_))
    ));
    // Nor twice in one statement (notation-go: "contains duplicate registry scope").
    let twice = statement(
        r#""twice""#,
        r#"["r.example.com/x", "r.example.com/x"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    assert!(matches!(
        parse(&doc(&twice)),
        Err(PolicyError::ScopeInMultiplePolicies(scope)) if scope == "r.example.com/x"
    ));
    // Two spellings of one repository are one scope.
    let spelled = statement(
        r#""spelled""#,
        r#"["R.Example.com:443/x"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    assert!(matches!(
        parse(&doc(&format!("{a},{spelled}"))),
        Err(PolicyError::ScopeInMultiplePolicies(_))
    ));
}

#[test]
fn verification_level_rules() {
    let with = |v: &str| {
        statement(
            r#""p""#,
            r#"["r.example.com/a"]"#,
            v,
            r#"["ca:a"]"#,
            r#"["*"]"#,
        )
    };
    assert_eq!(invalid_field(&doc(&with(""))), "signatureVerification");
    assert_eq!(
        invalid_field(&doc(&with("{}"))),
        "signatureVerification.level"
    );
    assert_eq!(
        invalid_field(&doc(&with(r#"{"level":"lenient"}"#))),
        "signatureVerification.level"
    );
    let field = "signatureVerification.override";
    assert_eq!(
        invalid_field(&doc(&with(
            r#"{"level":"strict","override":{"integrity":"log"}}"#
        ))),
        field
    );
    assert_eq!(
        invalid_field(&doc(&with(
            r#"{"level":"strict","override":{"expiry":"skip"}}"#
        ))),
        field
    );
    assert_eq!(
        invalid_field(&doc(&with(
            r#"{"level":"strict","override":{"expiry":"ignore"}}"#
        ))),
        field
    );
    assert_eq!(
        invalid_field(&doc(&with(
            r#"{"level":"strict","override":{"signature":"log"}}"#
        ))),
        field
    );
    assert_eq!(
        invalid_field(&doc(&with(
            r#"{"level":"strict","verifyTimestamp":"sometimes"}"#
        ))),
        "signatureVerification.verifyTimestamp"
    );
    let skip_custom = statement(
        r#""p""#,
        r#"["r.example.com/a"]"#,
        r#"{"level":"skip","override":{"revocation":"skip"}}"#,
        "",
        "",
    );
    assert_eq!(invalid_field(&doc(&skip_custom)), field);
    let ok = parse(&doc(&with(
        r#"{"level":"permissive","override":{"revocation":"skip","expiry":"enforce"}}"#,
    )))
    .unwrap();
    let level = ok.policies()[0].level;
    assert_eq!(level.revocation, Action::Skip);
    assert_eq!(level.expiry, Action::Enforce);
    assert_eq!(level.authentic_timestamp, Action::Log);
}

#[test]
fn level_table_matches_the_spec() {
    use Action::{Enforce, Log, Skip};
    let row = |name| {
        let l = VerificationLevel::named(name).unwrap();
        [
            l.action(Check::Integrity),
            l.action(Check::Authenticity),
            l.action(Check::AuthenticTimestamp),
            l.action(Check::Expiry),
            l.action(Check::Revocation),
        ]
    };
    assert_eq!(row("strict"), [Enforce, Enforce, Enforce, Enforce, Enforce]);
    assert_eq!(row("permissive"), [Enforce, Enforce, Log, Log, Log]);
    assert_eq!(row("audit"), [Enforce, Log, Log, Log, Log]);
    assert_eq!(row("skip"), [Skip, Skip, Skip, Skip, Skip]);
}

#[test]
fn skip_rules() {
    let skip = |scopes: &str, stores: &str, identities: &str| {
        doc(&statement(
            r#""p""#,
            scopes,
            r#"{"level":"skip"}"#,
            stores,
            identities,
        ))
    };
    assert!(parse(&skip(r#"["r.example.com/a"]"#, "", "")).is_ok());
    assert_eq!(
        invalid_field(&skip(r#"["r.example.com/a"]"#, r#"["ca:a"]"#, "")),
        "trustStores"
    );
    assert_eq!(
        invalid_field(&skip(r#"["r.example.com/a"]"#, "", r#"["*"]"#)),
        "trustStores"
    );
    // "skip cannot be used with a global scope (*)".
    assert_eq!(invalid_field(&skip(r#"["*"]"#, "", "")), "registryScopes");
}

#[test]
fn trust_store_rules() {
    let with = |stores: &str| {
        doc(&statement(
            r#""p""#,
            r#"["*"]"#,
            r#"{"level":"strict"}"#,
            stores,
            r#"["*"]"#,
        ))
    };
    assert_eq!(invalid_field(&with("")), "trustStores");
    assert_eq!(invalid_field(&with("[]")), "trustStores");
    for bad in [
        "acme",
        "x509:acme",
        "ca:",
        "ca:../etc",
        "ca:a/b",
        "ca:a b",
        "tsa:only",
    ] {
        assert_eq!(
            invalid_field(&with(&format!(r#"["{bad}"]"#))),
            "trustStores",
            "{bad}"
        );
    }
    let ok = parse(&with(r#"["ca:a","signingAuthority:b.c","tsa:t_1","ca:a"]"#)).unwrap();
    assert_eq!(ok.policies()[0].trust_stores.len(), 3);
}

#[test]
fn trusted_identity_rules() {
    let with = |ids: &str| {
        doc(&statement(
            r#""p""#,
            r#"["*"]"#,
            r#"{"level":"strict"}"#,
            r#"["ca:a"]"#,
            ids,
        ))
    };
    assert_eq!(invalid_field(&with("")), "trustedIdentities");
    assert_eq!(invalid_field(&with("[]")), "trustedIdentities");
    assert_eq!(
        invalid_field(&with(r#"["*","x509.subject: C=US, ST=WA, O=Acme"]"#)),
        "trustedIdentities"
    );
    assert_eq!(invalid_field(&with(r#"[""]"#)), "trustedIdentities");
    assert_eq!(
        invalid_field(&with(r#"["C=US, ST=WA, O=Acme"]"#)),
        "trustedIdentities"
    );
    assert_eq!(
        invalid_field(&with(r#"["x509.subject:"]"#)),
        "trustedIdentities"
    );
    // C, ST and O are required.
    assert_eq!(
        invalid_field(&with(r#"["x509.subject: C=US, O=Acme"]"#)),
        "trustedIdentities"
    );
    // Unknown attribute types, multi-valued RDNs, repeated types.
    assert_eq!(
        invalid_field(&with(r#"["x509.subject: C=US, ST=WA, O=Acme, X=1"]"#)),
        "trustedIdentities"
    );
    assert_eq!(
        invalid_field(&with(r#"["x509.subject: C=US, ST=WA, O=Acme+OU=x"]"#)),
        "trustedIdentities"
    );
    assert_eq!(
        invalid_field(&with(r#"["x509.subject: C=US, ST=WA, O=Acme, O=Other"]"#)),
        "trustedIdentities"
    );
    // Overlapping identities (the spec's own example).
    assert_eq!(
        invalid_field(&with(
            r#"["x509.subject: C=US, ST=WA, O=wabbit-network.io, OU=org1","x509.subject:  C=US, ST=WA, O=wabbit-network.io"]"#
        )),
        "trustedIdentities"
    );
    assert!(parse(&with(
        r#"["x509.subject: C=US, ST=WA, O=wabbit-network.io, OU=org1","x509.subject: C=US, ST=WA, O=wabbit-network.io, OU=org2"]"#
    ))
    .is_ok());
}

#[test]
fn dn_parsing_handles_the_spec_escapes() {
    let dn = DistinguishedName::parse(
        r"C=US, ST=WA, O=Acme\, Inc., OU=a\;b, CN=\ padded\ , L=back\\slash",
    )
    .unwrap();
    assert_eq!(
        dn.attributes,
        vec![
            ("C".to_owned(), "US".to_owned()),
            ("ST".to_owned(), "WA".to_owned()),
            ("O".to_owned(), "Acme, Inc.".to_owned()),
            ("OU".to_owned(), "a;b".to_owned()),
            ("CN".to_owned(), " padded ".to_owned()),
            ("L".to_owned(), r"back\slash".to_owned()),
        ]
    );
    let hex = DistinguishedName::parse(r"C=US, ST=WA, O=Caf\C3\A9").unwrap();
    assert_eq!(hex.attributes[2].1, "Café");
    assert!(DistinguishedName::parse(r"C=US, ST=WA, O=a;b").is_err());
    assert!(DistinguishedName::parse(r"C=US, ST=WA, O=a\").is_err());
    assert!(DistinguishedName::parse(r"C=US, ST=WA, O=a\C3").is_err());
    // notation-go `pkix.ParseDistinguishedName` refuses "=#" anywhere.
    assert!(DistinguishedName::parse("C=US, ST=WA, O=#4142").is_err());
    assert!(DistinguishedName::parse("C=US, ST=WA, O=Notary, CN=a=#b").is_err());
    assert!(DistinguishedName::parse(r"c=US, st=WA, o=lower").is_ok());
}

#[test]
fn dn_matching_is_an_attribute_subset() {
    let subject = vec![
        ("C", "US".to_owned()),
        ("ST", "WA".to_owned()),
        ("L", "Seattle".to_owned()),
        ("O", "Notary".to_owned()),
        ("CN", "e2e".to_owned()),
    ];
    let matches = |dn: &str| DistinguishedName::parse(dn).unwrap().matches(&subject);
    assert!(matches("CN=e2e,O=Notary,L=Seattle,ST=WA,C=US"));
    assert!(matches("C=US, ST=WA, O=Notary"));
    assert!(!matches("CN=e2e,O=Notary,L=Seattle,ST=WA,C=USB"));
    assert!(!matches("C=US, ST=WA, O=Notary, OU=Missing"));
    assert!(
        !matches("C=us, ST=WA, O=Notary"),
        "values are compared exactly"
    );
    // An attribute the subject repeats cannot be matched unambiguously.
    let mut twice = subject.clone();
    twice.push(("O", "Other".to_owned()));
    assert!(!DistinguishedName::parse("C=US, ST=WA, O=Notary")
        .unwrap()
        .matches(&twice));
    // An OU the identity does not name, twice: notation-go matches no identity then,
    // since Go writes the two values as one multi-valued RDN. A repeated CN is one value
    // to Go, and not a list.
    assert_eq!(repeated_list_attribute(&subject), None);
    let mut units = subject.clone();
    units.push(("OU", "a".to_owned()));
    assert_eq!(repeated_list_attribute(&units), None);
    units.push(("OU", "b".to_owned()));
    assert_eq!(repeated_list_attribute(&units), Some("OU"));
    let mut names = subject.clone();
    names.push(("CN", "again".to_owned()));
    assert_eq!(repeated_list_attribute(&names), None);
}

#[test]
fn selection_prefers_an_exact_scope() {
    let exact = statement(
        r#""exact""#,
        r#"["r.example.com/app"]"#,
        r#"{"level":"strict"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    let global = statement(
        r#""global""#,
        r#"["*"]"#,
        r#"{"level":"audit"}"#,
        r#"["ca:a"]"#,
        r#"["*"]"#,
    );
    let document = parse(&doc(&format!("{global},{exact}"))).unwrap();
    for reference in [
        "r.example.com/app",
        "r.example.com/app:1.0",
        "r.example.com/app@sha256:abc",
    ] {
        assert_eq!(
            document.select(reference).unwrap().name,
            "exact",
            "{reference}"
        );
    }
    assert_eq!(
        document.select("r.example.com/other").unwrap().name,
        "global"
    );
    assert_eq!(
        document.select("localhost:5000/app").unwrap().name,
        "global"
    );
    let only_exact = parse(&doc(&exact)).unwrap();
    assert!(only_exact.select("r.example.com/other").is_none());
}

/// A pod's author chooses how an image is spelled; every spelling that fetches the
/// repository's content selects the repository's own statement, never the global one.
#[test]
fn selection_follows_the_repository_not_its_spelling() {
    let scoped = |name: &str, scopes: &str| {
        statement(
            &format!("{name:?}"),
            scopes,
            r#"{"level":"strict"}"#,
            r#"["ca:a"]"#,
            r#"["*"]"#,
        )
    };
    let document = parse(&doc(&format!(
        "{},{},{},{}",
        scoped("global", r#"["*"]"#),
        scoped("app", r#"["registry.example.com/prod/app"]"#),
        scoped("nginx", r#"["docker.io/library/nginx"]"#),
        scoped("tools", r#"["Index.Docker.io/team/tools"]"#),
    )))
    .unwrap();
    for (reference, statement) in [
        ("REGISTRY.EXAMPLE.COM/prod/app@sha256:abc", "app"),
        ("Registry.Example.Com:443/prod/app:v1", "app"),
        ("registry.example.com:443/prod/app", "app"),
        ("registry-1.docker.io/library/nginx:1.27", "nginx"),
        ("index.docker.io/nginx", "nginx"),
        ("docker.io/team/tools", "tools"),
        ("registry-1.docker.io/team/tools@sha256:abc", "tools"),
        // Other repositories, ports and paths stay apart.
        ("registry.example.com:5000/prod/app", "global"),
        ("registry.example.com/prod/app2", "global"),
        ("registry.example.com/PROD/app", "global"),
        ("docker.io/library/nginx2", "global"),
        ("quay.io/library/nginx", "global"),
    ] {
        assert_eq!(
            document.select(reference).unwrap().name,
            statement,
            "{reference}"
        );
    }
}

#[test]
fn repository_of_strips_tags_but_not_ports() {
    assert_eq!(repository_of("localhost:5000/app"), "localhost:5000/app");
    assert_eq!(
        repository_of("localhost:5000/app:tag"),
        "localhost:5000/app"
    );
    assert_eq!(
        repository_of("r.example.com/a/b@sha256:00"),
        "r.example.com/a/b"
    );
}
