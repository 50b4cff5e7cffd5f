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

/// The credentials `client` sends to each host `repo` is fetched from, in order.
fn credentials_sent(client: &Client, repo: &str) -> Vec<Credentials> {
    let repo: Repository = repo.parse().unwrap();
    let (first, rest) = client.hosts(&repo, Capability::Pull).unwrap();
    std::iter::once(first)
        .chain(rest)
        .map(|host| client.credentials_for(&host))
        .collect()
}

fn basic(username: &str) -> Credentials {
    Credentials::Basic {
        username: username.to_owned(),
        password: Secret::new("p"),
    }
}

#[test]
fn credentials_come_from_the_request_before_the_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"auths":{"ghcr.io":{"username":"file","password":"p"},
                     "mirror.example":{"username":"mirror","password":"p"}}}"#,
    )
    .unwrap();
    let hosts = dir.path().join("certs.d");
    std::fs::create_dir_all(hosts.join("ghcr.io")).unwrap();
    std::fs::write(
        hosts.join("ghcr.io/hosts.toml"),
        "[host.\"https://mirror.example\"]\n",
    )
    .unwrap();
    let client = Client::new(RegistryConfig {
        docker_config: Some(path),
        hosts_dir: Some(hosts.display().to_string()),
        ..RegistryConfig::default()
    })
    .unwrap();
    // The Docker config's credentials go by the name of the host asked: a mirror's own.
    assert_eq!(
        credentials_sent(&client, "ghcr.io/app"),
        [basic("mirror"), basic("file")]
    );
    assert_eq!(
        credentials_sent(&client, "quay.io/app"),
        [Credentials::Anonymous]
    );
    // A request's credentials without a server address go to every host, as containerd
    // sends them.
    let request = client.with_credentials(basic("request"));
    assert_eq!(
        credentials_sent(&request, "ghcr.io/app"),
        [basic("request"), basic("request")]
    );
    // With one, only to that host (containerd `ParseAuth`), never the Docker config's
    // in their place.
    let scoped = |address: &str| {
        let credentials = CriCredentials::from_cri(super::super::CriAuth {
            username: "request",
            password: "p",
            server_address: address,
            ..super::super::CriAuth::default()
        })
        .unwrap();
        credentials_sent(&client.with_credentials(credentials), "ghcr.io/app")
    };
    assert_eq!(
        scoped("https://ghcr.io"),
        [Credentials::Anonymous, basic("request")]
    );
    assert_eq!(
        scoped("https://mirror.example/v2/"),
        [basic("request"), Credentials::Anonymous]
    );
    // An address without a scheme names no host: containerd sends the credentials
    // nowhere.
    assert_eq!(
        scoped("ghcr.io"),
        [Credentials::Anonymous, Credentials::Anonymous]
    );
    let bad = CriCredentials::from_cri(super::super::CriAuth {
        username: "request",
        server_address: "https://[bad",
        ..super::super::CriAuth::default()
    });
    assert!(
        matches!(bad, Err(Error::InvalidCredentials { .. })),
        "{bad:?}"
    );
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
