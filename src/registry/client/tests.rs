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
        // A loopback port not listed, asked from a host that is no probe.
        ("http://127.0.0.1:5001/v2/", false),
        ("http://192.0.2.1:5000/v2/", false),
        ("https://127.0.0.1:5001/v2/", true),
        ("http://[::1]:5000/v2/", true),
        ("ftp://127.0.0.1:5000/v2/", false),
    ] {
        let url = Url::parse(url).unwrap();
        let (host, _) = client.hosts(&repo, Capability::Pull).unwrap();
        assert_eq!(client.check_scheme(&url, &host).is_ok(), ok, "{url}");
    }
}

/// The URLs of the hosts `repo` is read from, in the order they are asked.
fn host_prefixes(client: &Client, repo: &str) -> Vec<String> {
    let repo: Repository = repo.parse().unwrap();
    let (first, rest) = client.hosts(&repo, Capability::Pull).unwrap();
    std::iter::once(first)
        .chain(rest)
        .map(|h| h.prefix)
        .collect()
}

#[test]
fn a_loopback_registry_no_file_names_is_asked_over_plain_http_then_https() {
    let client = Client::new(RegistryConfig::default()).unwrap();
    for (repo, prefixes) in [
        (
            "127.0.0.1:5001/app",
            &["http://127.0.0.1:5001/v2", "https://127.0.0.1:5001/v2"][..],
        ),
        (
            "localhost:5000/app",
            &["http://localhost:5000/v2", "https://localhost:5000/v2"],
        ),
        (
            "[::1]:5000/app",
            &["http://[::1]:5000/v2", "https://[::1]:5000/v2"],
        ),
        // The HTTPS port, no port, and hosts off the node: HTTPS only.
        ("localhost:443/app", &["https://localhost:443/v2"]),
        ("localhost/app", &["https://localhost/v2"]),
        ("192.0.2.1:5000/app", &["https://192.0.2.1:5000/v2"]),
        (
            "registry.example:5000/app",
            &["https://registry.example:5000/v2"],
        ),
    ] {
        assert_eq!(host_prefixes(&client, repo), prefixes, "{repo}");
    }
    // Listed in `plain_http`: plain HTTP only.
    let listed = Client::new(RegistryConfig {
        plain_http: vec!["127.0.0.1:5001".into()],
        ..RegistryConfig::default()
    })
    .unwrap();
    assert_eq!(
        host_prefixes(&listed, "127.0.0.1:5001/app"),
        ["http://127.0.0.1:5001/v2"]
    );
    // A name is compared as a URL holds it, however the config or the image writes it.
    let spelled = Client::new(RegistryConfig {
        plain_http: vec![
            "MyReg.Example:5000".into(),
            "[0:0::1]:5002".into(),
            "plain.example:80".into(),
        ],
        ..RegistryConfig::default()
    })
    .unwrap();
    for repo in [
        "myreg.example:5000/app",
        "MyReg.Example:5000/app",
        "[::1]:5002/app",
        "plain.example:80/app",
    ] {
        let prefixes = host_prefixes(&spelled, repo);
        assert!(
            prefixes.len() == 1 && prefixes[0].starts_with("http://"),
            "{repo}: {prefixes:?}"
        );
        // Requests go to the URL the prefix makes, which the scheme check accepts.
        let (host, _) = spelled
            .hosts(&repo.parse().unwrap(), Capability::Pull)
            .unwrap();
        let url = Url::parse(&format!("{}/", prefixes[0])).unwrap();
        assert!(spelled.check_scheme(&url, &host).is_ok(), "{repo}: {url}");
    }
    // A port written is part of the name: `plain.example:80` is not `plain.example`,
    // which the runtime asks over HTTPS.
    for repo in ["myreg.example:5001/app", "plain.example/app"] {
        let prefixes = host_prefixes(&spelled, repo);
        assert!(
            prefixes.len() == 1 && prefixes[0].starts_with("https://"),
            "{repo}: {prefixes:?}"
        );
    }
    // Asking that probe, plain HTTP reaches loopback hosts only (its token realm, its
    // redirects); asking any other host, only the listed ones.
    let repo: Repository = "127.0.0.1:5001/app".parse().unwrap();
    let (probe, rest) = client.hosts(&repo, Capability::Pull).unwrap();
    let https = &rest[0];
    for (url, ok) in [
        ("http://127.0.0.1:5001/v2/", true),
        ("http://localhost:8080/token", true),
        ("http://localhost:443/v2/", false),
        ("http://192.0.2.1:5000/v2/", false),
    ] {
        let url = Url::parse(url).unwrap();
        assert_eq!(client.check_scheme(&url, &probe).is_ok(), ok, "{url}");
        assert!(client.check_scheme(&url, https).is_err(), "{url}");
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
        .map(|host| client.credentials_for(&host, &repo))
        .collect()
}

/// What `client` sends each host of `repo` with a request's credentials for the server
/// `address` (user `request`, password `p`).
fn credentials_sent_for(client: &Client, address: &str, repo: &str) -> Vec<Credentials> {
    let credentials = CriCredentials::from_cri(super::super::CriAuth {
        username: "request",
        password: "p",
        server_address: address,
        ..super::super::CriAuth::default()
    })
    .unwrap();
    credentials_sent(&client.with_credentials(credentials), repo)
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
    let scoped = |address: &str| credentials_sent_for(&client, address, "ghcr.io/app");
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

/// A request's credentials for a server address reach the registry however the image
/// reference spells its name (host names compare without regard to case); a port must
/// be the same.
#[test]
fn request_credentials_reach_a_registry_named_in_another_letter_case() {
    let client = Client::new(RegistryConfig::default()).unwrap();
    let sent = |address: &str, repo: &str| credentials_sent_for(&client, address, repo);
    for (address, repo, expected) in [
        (
            "https://MyReg.Example:5000",
            "MyReg.Example:5000/app",
            basic("request"),
        ),
        (
            "https://myreg.example:5000",
            "MYREG.example:5000/app",
            basic("request"),
        ),
        (
            "https://MyReg.Example",
            "myreg.EXAMPLE/app",
            basic("request"),
        ),
        (
            "https://myreg.example:5001",
            "MyReg.Example:5000/app",
            Credentials::Anonymous,
        ),
        (
            "https://other.example:5000",
            "MyReg.Example:5000/app",
            Credentials::Anonymous,
        ),
    ] {
        assert_eq!(sent(address, repo), [expected], "{address} {repo}");
    }
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

/// A client certificate issued by a CA named `ca`, with a key of `algorithm`: the
/// certificate and key files in `dir`, and the CA's subject as DER.
fn issued_by(
    dir: &Path,
    ca: &str,
    algorithm: &'static rcgen::SignatureAlgorithm,
) -> (PathBuf, PathBuf, Vec<u8>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca);
    let ca_cert =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .signed_by(&key, &ca_cert)
        .unwrap();
    let (cert_path, key_path) = (dir.join(format!("{ca}.pem")), dir.join(format!("{ca}.key")));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(ca_cert.der()).unwrap();
    (cert_path, key_path, parsed.subject().as_raw().to_vec())
}

#[test]
fn of_several_client_certificates_the_one_the_server_can_accept_is_offered() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key, a_subject) = issued_by(dir.path(), "ca-a", &rcgen::PKCS_ECDSA_P256_SHA256);
    let (b_cert, b_key, b_subject) = issued_by(dir.path(), "ca-b", &rcgen::PKCS_ED25519);
    let provider = crate::audit::tls::provider();
    let keys = [(&a_cert, &a_key), (&b_cert, &b_key)]
        .into_iter()
        .map(|(cert, key)| certified_key(cert, Some(key), &provider).unwrap())
        .collect();
    let certificates = ClientCertificates(keys);
    let offered = |hints: &[&[u8]], schemes: &[SignatureScheme]| {
        let chosen = certificates.resolve(hints, schemes)?;
        Some(if Arc::ptr_eq(&chosen, &certificates.0[0]) {
            "a"
        } else {
            "b"
        })
    };
    let both = [
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ED25519,
    ];
    // No CA named: the first.
    assert_eq!(offered(&[], &both), Some("a"));
    // The CA the server names, as a whole Name or without its SEQUENCE header.
    assert_eq!(offered(&[&b_subject], &both), Some("b"));
    assert_eq!(offered(&[&b_subject[2..]], &both), Some("b"));
    assert_eq!(offered(&[&a_subject, &b_subject], &both), Some("a"));
    // A CA nobody's issuer: the first that can sign.
    assert_eq!(offered(&[b"unknown"], &both), Some("a"));
    // Only a scheme the second key signs in.
    assert_eq!(
        offered(&[&a_subject], &[SignatureScheme::ED25519]),
        Some("b")
    );
    // No scheme either key signs in: nothing is offered.
    assert_eq!(offered(&[], &[SignatureScheme::RSA_PSS_SHA256]), None);
    assert!(certificates.has_certs());
}

#[test]
fn containerds_registry_credentials_come_after_the_docker_configs() {
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("config.json");
    std::fs::write(
        &docker,
        r#"{"auths":{"ghcr.io":{"username":"file","password":"p"}}}"#,
    )
    .unwrap();
    let containerd = dir.path().join("config.toml");
    let configs = "plugins.\"io.containerd.grpc.v1.cri\".registry.configs";
    std::fs::write(
        &containerd,
        format!(
            "version = 2\n[{configs}.\"ghcr.io\".auth]\n  username = \"runtime\"\n  password = \"p\"\n\
             [{configs}.\"registry-1.docker.io\".auth]\n  username = \"hub\"\n  password = \"p\"\n"
        ),
    )
    .unwrap();
    let client = Client::new(RegistryConfig {
        docker_config: Some(docker),
        containerd_config: Some(containerd.clone()),
        ..RegistryConfig::default()
    })
    .unwrap();
    assert_eq!(credentials_sent(&client, "ghcr.io/app"), [basic("file")]);
    // containerd keys Docker Hub by its API host; the registry is docker.io.
    assert_eq!(
        credentials_sent(&client, "docker.io/library/app"),
        [basic("hub")]
    );
    assert_eq!(
        credentials_sent(&client, "quay.io/app"),
        [Credentials::Anonymous]
    );
    // Not beside a hosts directory: one of them names the hosts.
    let both = Client::new(RegistryConfig {
        containerd_config: Some(containerd),
        hosts_dir: Some(dir.path().display().to_string()),
        ..RegistryConfig::default()
    });
    let error = both.err().unwrap();
    let error = std::error::Error::source(&error).unwrap().to_string();
    assert!(error.contains("hosts_dir and containerd_config"), "{error}");
}

#[test]
fn registry_names_compare_as_urls_hold_them_keeping_a_written_port() {
    for (written, name, endpoint) in [
        ("Reg.Example:80", "reg.example:80", "reg.example"),
        ("reg.example", "reg.example", "reg.example"),
        ("[0:0::1]:5002", "[::1]:5002", "[::1]:5002"),
        ("[0:0::1]", "[::1]", "[::1]"),
        ("reg.example:080", "reg.example:80", "reg.example"),
        // Not a bare authority: compared as written.
        ("reg.example?x", "reg.example?x", "reg.example?x"),
        ("user@reg.example", "user@reg.example", "user@reg.example"),
    ] {
        assert_eq!(http_authority(written, false), name, "{written}");
        assert_eq!(http_authority(written, true), endpoint, "{written}");
    }
}
