use super::*;

/// The URL `rest` of `repo` has on the first host that may pull it.
fn endpoint(client: &Client, repo: &Repository, rest: &str) -> Url {
    let (first, _) = client.hosts(repo, Capability::Pull).unwrap();
    client.endpoint(&first, repo, rest).unwrap()
}

#[test]
fn plain_http_is_allowed_only_for_listed_hosts() {
    let client = Client::new(RegistryConfig {
        plain_http: vec!["127.0.0.1:5000".into(), "[::1]:5000".into()],
        ..RegistryConfig::default()
    })
    .unwrap();
    let repo: Repository = "127.0.0.1:5000/app".parse().unwrap();
    assert_eq!(
        endpoint(&client, &repo, "manifests/v1").as_str(),
        "http://127.0.0.1:5000/v2/app/manifests/v1"
    );
    let hub: Repository = "nginx".parse().unwrap();
    assert_eq!(
        endpoint(&client, &hub, "manifests/latest").as_str(),
        "https://registry-1.docker.io/v2/library/nginx/manifests/latest"
    );
    let v6: Repository = "[::1]:5000/app".parse().unwrap();
    assert_eq!(endpoint(&client, &v6, "x").scheme(), "http");
    for (url, ok) in [
        ("http://127.0.0.1:5000/v2/", true),
        ("http://127.0.0.1:5001/v2/", false),
        ("https://127.0.0.1:5001/v2/", true),
        ("http://[::1]:5000/v2/", true),
        ("ftp://127.0.0.1:5000/v2/", false),
    ] {
        let url = Url::parse(url).unwrap();
        assert_eq!(client.check_scheme(&url).is_ok(), ok, "{url}");
    }
}

#[test]
fn a_ca_file_must_hold_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for path in [empty, missing] {
        let result = Client::new(RegistryConfig {
            ca_file: Some(path.clone()),
            ..RegistryConfig::default()
        });
        assert!(
            matches!(result, Err(Error::CaFile { .. })),
            "{}",
            path.display()
        );
    }
}

#[test]
fn a_ca_file_with_a_certificate_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["registry.test".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pem(cert.der())).unwrap();
    assert!(Client::new(RegistryConfig {
        ca_file: Some(path),
        ..RegistryConfig::default()
    })
    .is_ok());
}

#[test]
fn credentials_come_from_the_request_before_the_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"auths":{"ghcr.io":{"username":"file","password":"p"}}}"#,
    )
    .unwrap();
    let client = Client::new(RegistryConfig {
        docker_config: Some(path),
        ..RegistryConfig::default()
    })
    .unwrap();
    assert!(
        matches!(client.credentials_for("ghcr.io"), Credentials::Basic { ref username, .. } if username == "file")
    );
    assert!(client.credentials_for("quay.io").is_anonymous());
    let scoped = client.with_credentials(Credentials::RegistryToken(Secret::new("t")));
    assert!(matches!(
        scoped.credentials_for("ghcr.io"),
        Credentials::RegistryToken(_)
    ));
}

#[test]
fn challenges_prefer_bearer() {
    let mut headers = HeaderMap::new();
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"r\""),
    );
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"https://a/t\""),
    );
    assert!(matches!(
        challenge(&headers, "x"),
        Ok(Challenge::Bearer { .. })
    ));
    assert!(matches!(
        challenge(&HeaderMap::new(), "x"),
        Err(Error::Malformed { .. })
    ));
}

/// A certificate in PEM (rcgen's `pem` feature is not enabled).
fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}
