use super::*;

#[test]
fn the_registry_table_is_found_where_each_config_version_puts_it() {
    for (text, expected) in [
        (
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  \
             endpoint = [\"https://mirror.example\"]\n",
            "docker.io",
        ),
        (
            "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry.mirrors.\"quay.io\"]\n  \
             endpoint = [\"https://mirror.example\"]\n",
            "quay.io",
        ),
        (
            "[plugins.cri.registry.mirrors.\"gcr.io\"]\n  endpoint = [\"https://mirror.example\"]\n",
            "gcr.io",
        ),
    ] {
        let registry = ContainerdRegistry::parse(text).unwrap();
        let names: Vec<_> = registry.mirrors.keys().map(String::as_str).collect();
        assert_eq!(names, [expected], "{text}");
        assert_eq!(registry.mirrors[expected].endpoint, ["https://mirror.example"]);
    }
    // A version 2 file with a version 3 table: not where containerd reads it.
    let misplaced = ContainerdRegistry::parse(
        "version = 2\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/x\"\n",
    )
    .unwrap();
    assert_eq!(misplaced.config_path, "");
    // The harness's and most nodes' files: other plugins' keys are left alone.
    let registry = ContainerdRegistry::parse(
        "version = 2\nroot = \"/var/lib/containerd\"\n[grpc]\n  address = \"/run/c.sock\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n",
    )
    .unwrap();
    assert_eq!(registry.config_path, "/etc/containerd/certs.d");
    assert!(ContainerdRegistry::parse("version = 2\n")
        .unwrap()
        .mirrors
        .is_empty());
}

#[test]
fn bad_files_are_refused_with_what_is_wrong() {
    for (text, needle) in [
        ("version = 2\n[plugins\n", "line 2"),
        ("version = \"2\"\n", "version must be a number"),
        ("version = 9\n", "version 9"),
        (
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"a\"]\n  endpoint = \"x\"\n",
            "registry",
        ),
    ] {
        let error = ContainerdRegistry::parse(text).unwrap_err();
        assert!(error.contains(needle), "{text:?}: {error}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "version = 9\n").unwrap();
    let error = ContainerdRegistry::load(&path).unwrap_err().to_string();
    assert!(
        error.contains("config.toml") && error.contains("version 9"),
        "{error}"
    );
}

#[test]
fn credentials_are_read_as_containerd_parses_them() {
    let registry = ContainerdRegistry::parse(
        "version = 2\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"a.example\".auth]\n  \
           username = \"u\"\n  password = \"p\"\n  identitytoken = \"ignored\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"b.example\".auth]\n  \
           auth = \"dTI6cDI=\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"c.example\".auth]\n  \
           identitytoken = \"refresh\"\n  auth = \"dTI6cDI=\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"d.example\".tls]\n  \
           ca_file = \"/ca.pem\"\n",
    )
    .unwrap();
    let found = registry.credentials().unwrap();
    let basic = |user: &str, password: &str| Credentials::Basic {
        username: user.to_owned(),
        password: crate::registry::Secret::new(password),
    };
    assert_eq!(
        found,
        [
            ("a.example", basic("u", "p")),
            ("b.example", basic("u2", "p2")),
            (
                "c.example",
                Credentials::IdentityToken(crate::registry::Secret::new("refresh"))
            ),
        ]
    );
    let bad = ContainerdRegistry::parse(
        "[plugins.cri.registry.configs.\"a\".auth]\n  auth = \"not base64\"\n",
    )
    .unwrap();
    assert!(bad
        .credentials()
        .unwrap_err()
        .contains("configs.\"a\".auth"));
}

#[test]
fn tls_files_need_both_halves_of_a_client_pair() {
    let tls = |ca: &str, cert: &str, key: &str| TlsSettings {
        ca_file: ca.to_owned(),
        cert_file: cert.to_owned(),
        key_file: key.to_owned(),
        insecure_skip_verify: false,
    };
    assert_eq!(
        tls("/ca.pem", "/c.pem", "/k.pem").files("h").unwrap(),
        HostTls {
            ca: vec![PathBuf::from("/ca.pem")],
            client: vec![(PathBuf::from("/c.pem"), Some(PathBuf::from("/k.pem")))],
            skip_verify: false,
        }
    );
    assert_eq!(tls("", "", "").files("h").unwrap(), HostTls::default());
    assert!(tls("", "/c.pem", "")
        .files("h")
        .unwrap_err()
        .contains("without a key_file"));
    assert!(tls("", "", "/k.pem")
        .files("h")
        .unwrap_err()
        .contains("without a cert_file"));
}
