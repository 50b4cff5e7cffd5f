use super::*;
use std::time::{Duration, Instant};

/// A hosts directory with `files` (relative path, contents) written into it.
fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    dir
}

fn load(roots: &[&tempfile::TempDir]) -> Result<HostsConfig, HostsError> {
    let joined: Vec<String> = roots
        .iter()
        .map(|root| root.path().display().to_string())
        .collect();
    HostsConfig::load(&joined.join(":"))
}

fn prefixes(config: &HostsConfig, repo: &str) -> Vec<String> {
    let repo: Repository = repo.parse().unwrap();
    config
        .hosts(&repo, Scheme::Https)
        .into_iter()
        .map(|host| host.prefix)
        .collect()
}

#[test]
fn mirrors_come_in_file_order_then_the_registry_itself() {
    let dir = root(&[(
        "docker.io/hosts.toml",
        r#"
[host."https://zeta.mirror"]
  capabilities = ["pull", "resolve"]

[host."http://10.0.0.1:5000/cache"]
  capabilities = ["pull"]
  [host."http://10.0.0.1:5000/cache".header]
    x-team = ["a", "b"]
"#,
    )]);
    let config = load(&[&dir]).unwrap();
    let repo: Repository = "nginx".parse().unwrap();
    let hosts = config.hosts(&repo, Scheme::Https);
    let order: Vec<_> = hosts.iter().map(|h| h.prefix.as_str()).collect();
    // Not sorted by name: "zeta" was written first. Without `server`, Docker Hub's API
    // host comes last.
    assert_eq!(
        order,
        [
            "https://zeta.mirror/v2",
            "http://10.0.0.1:5000/cache/v2",
            "https://registry-1.docker.io/v2",
        ]
    );
    let [zeta, cache, hub] = hosts.as_slice() else {
        panic!("three hosts")
    };
    assert!(zeta.can(Capability::Resolve) && zeta.can(Capability::Pull));
    assert!(!cache.can(Capability::Resolve) && cache.can(Capability::Pull));
    assert!(hub.can(Capability::Resolve));
    // A mirror is told whose content is asked for, and has credentials of its own.
    assert_eq!(zeta.namespace.as_deref(), Some("docker.io"));
    assert_eq!(zeta.credentials_key, "zeta.mirror");
    assert_eq!(hub.namespace, None);
    assert_eq!(hub.credentials_key, "docker.io");
    let values: Vec<_> = cache.headers.get_all("x-team").iter().collect();
    assert_eq!(values, ["a", "b"]);
    assert!(config.allows_plain_http("10.0.0.1:5000"));
    assert!(!config.allows_plain_http("zeta.mirror"));
    // Another registry is reached directly.
    assert_eq!(
        prefixes(&config, "quay.io/app"),
        ["https://quay.io/v2".to_owned()]
    );
}

#[test]
fn host_urls_are_formed_as_containerd_forms_them() {
    for (text, override_path, expected) in [
        ("mirror.example", false, "https://mirror.example/v2"),
        (
            "https://mirror.example/",
            false,
            "https://mirror.example/v2",
        ),
        (
            "https://mirror.example/sub",
            false,
            "https://mirror.example/sub/v2",
        ),
        (
            "https://mirror.example/sub/v2",
            false,
            "https://mirror.example/sub/v2",
        ),
        (
            "https://mirror.example/a/./b/../c",
            false,
            "https://mirror.example/a/c/v2",
        ),
        // containerd appends /v2 to a path that holds it elsewhere.
        (
            "https://mirror.example/v2/ns",
            false,
            "https://mirror.example/v2/ns/v2",
        ),
        (
            "https://mirror.example/v2/ns",
            true,
            "https://mirror.example/v2/ns",
        ),
        ("http://127.0.0.1:5000", false, "http://127.0.0.1:5000/v2"),
        ("http://[::1]:5000", false, "http://[::1]:5000/v2"),
    ] {
        let url = host_url(text, override_path).unwrap();
        assert_eq!(url.as_str().trim_end_matches('/'), expected, "{text}");
    }
    for bad in [
        "ftp://mirror.example",
        "https://",
        "https://u:p@mirror",
        "https://m/?q=1",
    ] {
        assert!(host_url(bad, false).is_err(), "{bad}");
    }
}

#[test]
fn a_port_directory_is_found_in_either_form_and_default_last() {
    let first = root(&[
        (
            "127.0.0.1_5000_/hosts.toml",
            "[host.\"http://10.0.0.1:1\"]\n",
        ),
        ("_default/hosts.toml", "[host.\"http://10.0.0.3:1\"]\n"),
    ]);
    let second = root(&[
        (
            "127.0.0.1:6000/hosts.toml",
            "[host.\"http://10.0.0.2:1\"]\n",
        ),
        ("quay.io/hosts.toml", "[host.\"http://10.0.0.4:1\"]\n"),
    ]);
    let config = load(&[&first, &second]).unwrap();
    assert_eq!(
        prefixes(&config, "127.0.0.1:5000/app")[0],
        "http://10.0.0.1:1/v2"
    );
    // The first root with any match wins, `_default` included: quay.io's own directory
    // in the second root is not reached, as in containerd's `hostDirFromRoots`.
    assert_eq!(prefixes(&config, "quay.io/app")[0], "http://10.0.0.3:1/v2");
    assert_eq!(
        prefixes(&config, "127.0.0.1:6000/app")[0],
        "http://10.0.0.3:1/v2"
    );
    let alone = load(&[&second]).unwrap();
    // The loopback registry itself, which its file gives no `server`, over either scheme.
    assert_eq!(
        prefixes(&alone, "127.0.0.1:6000/app"),
        [
            "http://10.0.0.2:1/v2",
            "http://127.0.0.1:6000/v2",
            "https://127.0.0.1:6000/v2"
        ]
    );
    // `_default` stands in for every registry, each reached itself last.
    assert_eq!(
        prefixes(&config, "ghcr.io/app"),
        ["http://10.0.0.3:1/v2", "https://ghcr.io/v2"]
    );
}

#[test]
fn an_explicit_server_is_used_as_written_with_its_capabilities() {
    let dir = root(&[(
        "docker.io/hosts.toml",
        "server = \"https://docker.io\"\ncapabilities = [\"pull\"]\n\
         [host.\"https://mirror.example\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
    )]);
    let config = load(&[&dir]).unwrap();
    let repo: Repository = "nginx".parse().unwrap();
    let hosts = config.hosts(&repo, Scheme::Https);
    assert_eq!(hosts[1].prefix, "https://docker.io/v2");
    assert!(!hosts[1].can(Capability::Resolve));
    // docker.io is Docker Hub's own name, not a mirror of it.
    assert_eq!(hosts[1].namespace, None);
    // A resolve-only host resolves nothing: containerd resolves on hosts that pull.
    let dir = root(&[(
        "quay.io/hosts.toml",
        "[host.\"https://m.example\"]\n  capabilities = [\"resolve\"]\n",
    )]);
    let config = load(&[&dir]).unwrap();
    let repo: Repository = "quay.io/app".parse().unwrap();
    let first = &config.hosts(&repo, Scheme::Https)[0];
    assert!(!first.can(Capability::Resolve) && !first.can(Capability::Pull));
}

/// Capability names as containerd's `parseHostConfig` reads them: in any case, an empty
/// list meaning all, and `referrers` (newer containerd) known.
#[test]
fn capabilities_are_read_as_containerd_reads_them() {
    for (capabilities, pull, resolve) in [
        ("[\"Pull\", \"RESOLVE\"]", true, true),
        ("[\"PULL\"]", true, false),
        ("[]", true, true),
        ("[\"pull\", \"resolve\", \"referrers\"]", true, true),
        ("[\"pull\", \"Referrers\", \"push\"]", true, false),
        ("[\"push\"]", false, false),
    ] {
        let dir = root(&[(
            "quay.io/hosts.toml",
            &format!("[host.\"https://m.example\"]\n  capabilities = {capabilities}\n"),
        )]);
        let config = load(&[&dir]).unwrap();
        let repo: Repository = "quay.io/app".parse().unwrap();
        let mirror = &config.hosts(&repo, Scheme::Https)[0];
        assert_eq!(mirror.prefix, "https://m.example/v2");
        assert_eq!(
            (
                mirror.can(Capability::Pull),
                mirror.can(Capability::Resolve)
            ),
            (pull, resolve),
            "{capabilities}"
        );
    }
}

#[test]
fn the_registry_alone_gets_the_scheme_it_is_given() {
    let config = HostsConfig::default();
    let repo: Repository = "127.0.0.1:5000/app".parse().unwrap();
    let hosts = config.hosts(&repo, Scheme::Http);
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].prefix, "http://127.0.0.1:5000/v2");
}

/// The TLS files of each host of `repo`, in the order the hosts are asked.
fn tls_files(config: &HostsConfig, repo: &str) -> Vec<Option<HostTls>> {
    let repo: Repository = repo.parse().unwrap();
    config
        .hosts(&repo, Scheme::Https)
        .into_iter()
        .map(|host| host.tls.map(|index| config.tls[index].clone()))
        .collect()
}

#[test]
fn each_host_gets_the_ca_and_client_files_its_table_names() {
    let dir = root(&[
        (
            "m.example/hosts.toml",
            "ca = \"own-ca.pem\"\n\
             client = \"/etc/own-client.pem\"\n\
             [host.\"https://mirror.example\"]\n  ca = \"mirror-ca.pem\"\n\
             [host.\"https://other.example\"]\n  ca = [\"/abs/a.pem\", \"b.pem\"]\n\
               client = [\"both.pem\", [\"c.pem\", \"/abs/k.pem\"]]\n\
             [host.\"https://plain.example\"]\n\
             [host.\"https://same.example\"]\n  ca = \"mirror-ca.pem\"\n",
        ),
        (
            "n.example/hosts.toml",
            "[host.\"https://mirror.example\"]\n",
        ),
    ]);
    let config = load(&[&dir]).unwrap();
    let m = dir.path().join("m.example");
    let mirror = HostTls {
        ca: vec![m.join("mirror-ca.pem")],
        client: vec![],
        skip_verify: false,
    };
    assert_eq!(
        tls_files(&config, "m.example/app"),
        [
            Some(mirror.clone()),
            Some(HostTls {
                ca: vec![PathBuf::from("/abs/a.pem"), m.join("b.pem")],
                client: vec![
                    (m.join("both.pem"), None),
                    (m.join("c.pem"), Some(PathBuf::from("/abs/k.pem"))),
                ],
                skip_verify: false,
            }),
            None,
            Some(mirror),
            // The top-level keys are the registry's own.
            Some(HostTls {
                ca: vec![m.join("own-ca.pem")],
                client: vec![(PathBuf::from("/etc/own-client.pem"), None)],
                skip_verify: false,
            }),
        ]
    );
    // Hosts with the same files share one entry (and so one connection pool).
    assert_eq!(config.tls.len(), 3);
    // Another registry's hosts, the same mirror included, trust none of them.
    assert_eq!(tls_files(&config, "n.example/app"), [None, None]);
    assert_eq!(tls_files(&config, "quay.io/app"), [None]);
}

#[test]
fn a_directory_without_hosts_toml_names_the_registry_and_its_certificate_files() {
    let dir = root(&[
        ("registry.example/ca.crt", "not read here"),
        ("registry.example/client.cert", ""),
        ("registry.example/client.key", ""),
        ("registry.example/solo.cert", ""),
        ("registry.example/notes.txt", ""),
        ("blank.example/hosts.toml", "\n  \n"),
        ("blank.example/extra.crt", ""),
        ("bare.example/notes.txt", ""),
    ]);
    let config = load(&[&dir]).unwrap();
    assert_eq!(
        prefixes(&config, "registry.example/app"),
        ["https://registry.example/v2"]
    );
    let r = dir.path().join("registry.example");
    assert_eq!(
        tls_files(&config, "registry.example/app"),
        [Some(HostTls {
            ca: vec![r.join("ca.crt")],
            client: vec![
                (r.join("client.cert"), Some(r.join("client.key"))),
                (r.join("solo.cert"), None),
            ],
            skip_verify: false,
        })]
    );
    // An empty hosts.toml is read as no hosts.toml, as containerd reads it.
    assert_eq!(
        tls_files(&config, "blank.example/app"),
        [Some(HostTls {
            ca: vec![dir.path().join("blank.example/extra.crt")],
            client: vec![],
            skip_verify: false,
        })]
    );
    assert_eq!(tls_files(&config, "bare.example/app"), [None]);
}

#[test]
fn a_missing_root_holds_nothing() {
    let config = HostsConfig::load("/nonexistent/crigate/certs.d").unwrap();
    assert_eq!(prefixes(&config, "quay.io/a"), ["https://quay.io/v2"]);
}

#[test]
fn bad_files_are_refused_naming_the_file_and_what_is_wrong() {
    for (contents, needle) in [
        (
            "[host.\"https://m\"]\n  capabilities = [\"pull\", \"fetch\"]\n",
            "\"fetch\"",
        ),
        ("[host.\"https://m\"\n", "hosts.toml"),
        ("[host.\"ftp://m\"]\n", "neither http nor https"),
        (
            "[host.\"https://m\"]\n  header = { \"bad header\" = \"x\" }\n",
            "bad header",
        ),
        (
            "[host.\"https://m\"]\n  header = { \"x-a\" = \"line\\nbreak\" }\n",
            "x-a",
        ),
        ("server = \"https://\"\n", "server"),
        (
            "[host.\"https://m\"]\n  override_path = \"yes\"\n",
            "hosts.toml",
        ),
        ("client = 5\n", "client must be a file"),
        (
            "[host.\"https://m\"]\n  client = [[\"c.pem\"]]\n",
            "[\"c.pem\"]",
        ),
        (
            "[host.\"https://m\"]\n  client = [[\"c.pem\", \"k.pem\", \"x.pem\"]]\n",
            "host \"https://m\": client must be",
        ),
    ] {
        let dir = root(&[("quay.io/hosts.toml", contents)]);
        let error = load(&[&dir]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("quay.io/hosts.toml"), "{text}");
        assert!(text.contains(needle), "{contents:?}: {text}");
    }
}

#[test]
fn keys_crigate_does_not_apply_are_accepted_and_skip_verify_is_recorded() {
    let dir = root(&[(
        "quay.io/hosts.toml",
        "[host.\"https://m.example\"]\n  skip_verify = true\n  dial_timeout = \"3s\"\n",
    )]);
    let config = load(&[&dir]).unwrap();
    assert_eq!(
        prefixes(&config, "quay.io/a"),
        ["https://m.example/v2", "https://quay.io/v2"]
    );
    // `skip_verify` belongs to the mirror alone, and is named for the client to log.
    assert_eq!(
        tls_files(&config, "quay.io/a"),
        [
            Some(HostTls {
                skip_verify: true,
                ..HostTls::default()
            }),
            None
        ]
    );
    let file = dir.path().join("quay.io/hosts.toml");
    assert_eq!(
        config.skip_verify,
        [format!("{}: https://m.example/v2", file.display())]
    );
}

#[test]
fn the_stamp_changes_when_a_host_directory_or_file_does() {
    let dir = root(&[("quay.io/hosts.toml", "[host.\"https://a.example\"]\n")]);
    let path = dir.path().display().to_string();
    let first = stamp(&path);
    assert_eq!(first, stamp(&path));
    // Another size: a changed modification time alone may fall in the same tick.
    std::fs::write(
        dir.path().join("quay.io/hosts.toml"),
        "[host.\"https://bb.example\"]\n",
    )
    .unwrap();
    let edited = stamp(&path);
    assert_ne!(first, edited);
    std::fs::write(dir.path().join("quay.io/ca.crt"), "").unwrap();
    let added = stamp(&path);
    assert_ne!(edited, added);
    std::fs::create_dir(dir.path().join("ghcr.io")).unwrap();
    assert_ne!(added, stamp(&path));
    // A root that does not exist yet is stamped as absent, and noticed when it appears.
    let missing = dir.path().join("later");
    let absent = stamp(&missing.display().to_string());
    std::fs::create_dir(&missing).unwrap();
    assert_ne!(absent, stamp(&missing.display().to_string()));
}

/// The hosts of a containerd config file with `text`.
fn from_containerd(text: &str) -> Result<HostsConfig, HostsError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let registry = super::super::containerd::ContainerdRegistry::load(&path)?;
    HostsConfig::from_containerd(&path, &registry)
}

#[test]
fn containerd_mirrors_are_asked_as_its_cri_plugin_asks_them() {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\".registry";
    let config = from_containerd(&format!(
        "version = 2\n\
         [{cri}.mirrors.\"docker.io\"]\n  \
           endpoint = [\"https://mirror.example\", \"mirror2.example:5000/path\", \"localhost:5000\"]\n\
         [{cri}.mirrors.\"*\"]\n  endpoint = [\"https://all.example\"]\n\
         [{cri}.mirrors.\"self.example\"]\n  \
           endpoint = [\"https://other.example\", \"https://self.example/v2\"]\n\
         [{cri}.configs.\"mirror.example\".tls]\n  ca_file = \"/ca.pem\"\n\
         [{cri}.configs.\"other.example\".tls]\n  insecure_skip_verify = true\n"
    ))
    .unwrap();
    // Endpoints in order, a scheme by the host when none is written (HTTP for loopback),
    // `/v2` for an empty path only, then the registry itself.
    assert_eq!(
        prefixes(&config, "docker.io/library/app"),
        [
            "https://mirror.example/v2",
            "https://mirror2.example:5000/path",
            "http://localhost:5000/v2",
            "https://registry-1.docker.io/v2",
        ]
    );
    let repo: Repository = "docker.io/library/app".parse().unwrap();
    let hosts = config.hosts(&repo, Scheme::Https);
    let namespaces: Vec<_> = hosts.iter().map(|h| h.namespace.as_deref()).collect();
    assert_eq!(
        namespaces,
        [
            Some("docker.io"),
            Some("docker.io"),
            Some("docker.io"),
            None
        ]
    );
    assert_eq!(
        tls_files(&config, "docker.io/library/app"),
        [
            Some(HostTls {
                ca: vec![PathBuf::from("/ca.pem")],
                client: vec![],
                skip_verify: false,
            }),
            None,
            None,
            None,
        ]
    );
    // `*` for a registry without endpoints of its own.
    assert_eq!(
        prefixes(&config, "quay.io/a"),
        ["https://all.example/v2", "https://quay.io/v2"]
    );
    assert_eq!(
        prefixes(&config, "127.0.0.1:5000/a"),
        ["https://all.example/v2", "http://127.0.0.1:5000/v2"]
    );
    // A registry among its own endpoints is not asked twice, Docker Hub by its API host
    // included.
    let hub = from_containerd(&format!(
        "version = 2\n[{cri}.mirrors.\"docker.io\"]\n  endpoint = [\"https://registry-1.docker.io\"]\n"
    ))
    .unwrap();
    assert_eq!(
        prefixes(&hub, "docker.io/library/app"),
        ["https://registry-1.docker.io/v2"]
    );
    assert_eq!(
        prefixes(&config, "self.example/a"),
        ["https://other.example/v2", "https://self.example/v2"]
    );
    // `insecure_skip_verify` goes with the TLS of the host it names.
    assert_eq!(
        tls_files(&config, "self.example/a"),
        [
            Some(HostTls {
                skip_verify: true,
                ..HostTls::default()
            }),
            None
        ]
    );
    assert_eq!(config.skip_verify.len(), 1);
    assert!(config.skip_verify[0]
        .ends_with("config.toml: configs.\"other.example\".tls.insecure_skip_verify"));
    // Plain HTTP where an endpoint says so, and for loopback registries.
    assert!(config.allows_plain_http("localhost:5000"));
    assert!(config.allows_plain_http("127.0.0.1:5000"));
    assert!(config.allows_plain_http("[::1]:5000"));
    assert!(!config.allows_plain_http("quay.io"));
    assert!(!config.allows_plain_http("mirror.example"));
}

#[test]
fn a_containerd_config_path_is_read_instead_of_its_mirrors() {
    let dir = root(&[(
        "quay.io/hosts.toml",
        "[host.\"https://from-hosts.example\"]\n",
    )]);
    let cri = "plugins.\"io.containerd.grpc.v1.cri\".registry";
    let config = from_containerd(&format!(
        "version = 2\n[{cri}]\n  config_path = \"{}\"\n\
         [{cri}.mirrors.\"quay.io\"]\n  endpoint = [\"https://ignored.example\"]\n",
        dir.path().display()
    ))
    .unwrap();
    assert_eq!(
        prefixes(&config, "quay.io/a"),
        ["https://from-hosts.example/v2", "https://quay.io/v2"]
    );
    assert!(!config.allows_plain_http("127.0.0.1:5000"));
    // Without a registry table: every registry reached directly.
    let config = from_containerd("version = 2\n").unwrap();
    assert_eq!(prefixes(&config, "quay.io/a"), ["https://quay.io/v2"]);
}

#[test]
fn bad_containerd_registry_settings_are_refused_naming_them() {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\".registry";
    for (text, needle) in [
        (
            format!("version = 2\n[{cri}.mirrors.\"a.example\"]\n  endpoint = [\"ftp://m\"]\n"),
            "mirrors.\"a.example\": endpoint \"ftp://m\"",
        ),
        (
            format!("version = 2\n[{cri}.configs.\"m\".tls]\n  cert_file = \"/c.pem\"\n"),
            "without a key_file",
        ),
    ] {
        let error = from_containerd(&text).unwrap_err().to_string();
        assert!(
            error.contains("config.toml") && error.contains(needle),
            "{error}"
        );
    }
}

/// A `hosts.toml` within its size bound may name tens of thousands of hosts, each with
/// its own files; interning each host's files must not compare them with every other
/// host's (it took over a minute, quadratic in the hosts). Hosts naming the same files
/// still share them.
#[test]
fn a_hosts_file_of_many_hosts_within_its_bound_is_read_in_time() {
    let mut text = String::new();
    let mut hosts = 0;
    while text.len() < MAX_HOSTS_FILE_BYTES as usize - 200 {
        text.push_str(&format!(
            "[host.\"https://m{hosts}.example\"]\nca = \"c{hosts}.crt\"\n"
        ));
        hosts += 1;
    }
    text.push_str("[host.\"https://again.example\"]\nca = \"c7.crt\"\n");
    assert!(hosts > 20_000, "{hosts} hosts");
    let dir = Path::new("/etc/containerd/certs.d/registry.example");
    let mut config = HostsConfig::default();
    let started = Instant::now();
    let directory = config
        .parse_directory(dir, &dir.join(HOSTS_FILE), &text)
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "{hosts} hosts read in {took:?}"
    );
    assert_eq!(directory.mirrors.len(), hosts + 1);
    assert_eq!(config.tls.len(), hosts);
    let shared = directory
        .mirrors
        .iter()
        .filter(|m| m.tls == Some(7))
        .count();
    assert_eq!(shared, 2);
}
