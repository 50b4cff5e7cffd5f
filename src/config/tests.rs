use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, Error> {
    Config::parse(text, Path::new("/etc/crigate/config.toml"))
}

#[test]
fn issue_example_parses_with_defaults_for_the_rest() {
    let config = parse(
        r#"
[cri]
listen = "/run/crigate/crigate.sock"
upstream = "/run/containerd/containerd.sock"
"#,
    )
    .unwrap();
    assert_eq!(config.cri.listen, Path::new("/run/crigate/crigate.sock"));
    assert_eq!(
        config.cri.upstream,
        Path::new("/run/containerd/containerd.sock")
    );
    assert_eq!(config.cri.unknown_methods, MethodPolicy::Forward);
    assert_eq!(config.cri.other_services, MethodPolicy::Deny);
    assert_eq!(config.cri.socket_mode, 0o660);
    assert_eq!(config.cri.drain_timeout, Duration::from_secs(10));
    assert_eq!(config.cri.max_message_bytes, 16 * 1024 * 1024);
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = parse("[cri]\nlisten = \"/run/a.sock\"\nlistn = \"/run/b.sock\"\n").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Parse { .. }), "{text}");
    assert!(text.contains("listn"), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn unknown_section_is_an_error() {
    let err = parse("[crii]\nlisten = \"/run/a.sock\"\n").unwrap_err();
    assert!(err.to_string().contains("crii"), "{err}");
}

#[test]
fn unknown_methods_takes_forward_or_deny_only() {
    let deny = parse("[cri]\nunknown_methods = \"deny\"\n").unwrap();
    assert_eq!(deny.cri.unknown_methods, MethodPolicy::Deny);
    let err = parse("[cri]\nunknown_methods = \"drop\"\n").unwrap_err();
    assert!(err.to_string().contains("drop"), "{err}");
}

#[test]
fn durations_are_human_readable() {
    let config = parse("[cri]\nconnect_timeout = \"250ms\"\ndrain_timeout = \"1m\"\n").unwrap();
    assert_eq!(config.cri.connect_timeout, Duration::from_millis(250));
    assert_eq!(config.cri.drain_timeout, Duration::from_secs(60));
}

#[test]
fn world_accessible_socket_is_refused() {
    let err = parse("[cri]\nsocket_mode = \"0666\"\n").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                key: "cri.socket_mode",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn socket_mode_must_be_octal() {
    let err = parse("[cri]\nsocket_mode = \"rw-rw----\"\n").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                key: "cri.socket_mode",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn relative_paths_are_refused() {
    let err = parse("[cri]\nlisten = \"crigate.sock\"\n").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                key: "cri.listen",
                ..
            }
        ),
        "{err}"
    );
    let err = parse("[cri]\nupstream = \"containerd.sock\"\n").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                key: "cri.upstream",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn proxying_to_itself_is_refused() {
    let err = parse("[cri]\nlisten = \"/run/a.sock\"\nupstream = \"/run/a.sock\"\n").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                key: "cri.listen",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn message_limit_has_a_floor() {
    let err = parse("[cri]\nmax_message_bytes = 10\n").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                key: "cri.max_message_bytes",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn oversized_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(MAX_CONFIG_BYTES + 1).unwrap();
    assert!(matches!(Config::load(&path), Err(Error::TooLarge { .. })));
}

#[test]
fn missing_file_names_the_path() {
    let err = Config::load(Path::new("/nonexistent/crigate.toml")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/crigate.toml"),
        "{err}"
    );
}

#[test]
fn verifiers_registry_cache_and_verify_sections_parse() {
    let config = parse(
        r#"
[registry]
plain_http = ["127.0.0.1:5000"]
request_timeout = "3s"

[cache]
positive_ttl = "2h"
negative_ttl = "1m"
max_entries = 500
path = "/var/lib/crigate/v.jsonl"

[verify]
timeout = "10s"

[verifiers.release]
kind = "cosign"
keys = ["/etc/crigate/keys/release.pub"]
require_tlog = false
signature_digest = "sha384"

[verifiers.ci]
kind = "cosign"
identities = [{ subject_regexp = ".*@example\\.com", issuer = "https://token.actions.githubusercontent.com" }]
trusted_root = "/etc/crigate/sigstore/trusted_root.json"

[verifiers.notary]
kind = "notation"
dir = "/etc/crigate/notation"
"#,
    )
    .unwrap();
    assert_eq!(config.registry.plain_http, ["127.0.0.1:5000"]);
    assert_eq!(config.registry.request_timeout, Duration::from_secs(3));
    assert_eq!(config.cache.positive_ttl, Duration::from_secs(7200));
    assert_eq!(config.cache.max_entries, 500);
    assert_eq!(config.verify.timeout, Duration::from_secs(10));
    assert_eq!(config.verifiers.len(), 3);
    match &config.verifiers["release"] {
        VerifierConfig::Cosign {
            keys,
            require_tlog,
            require_sct,
            docker_reference,
            signature_digest,
            ..
        } => {
            assert_eq!(*signature_digest, Some(SignatureDigestName::Sha384));
            assert_eq!(keys.len(), 1);
            assert!(!require_tlog);
            assert!(require_sct, "cosign's default");
            assert_eq!(*docker_reference, DockerReference::MatchRepository);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            config.verifiers["notary"],
            VerifierConfig::Notation {
                online_revocation: true,
                ..
            }
        ),
        "CRLs are fetched unless turned off, as the notation CLI fetches them"
    );
    assert!(
        matches!(
            config.verifiers["notary"],
            VerifierConfig::Notation {
                timestamp_revocation: true,
                ..
            }
        ),
        "TSA chains are checked unless turned off, as notation-go checks them"
    );
    let offline = parse(
        "[verifiers.notary]\nkind = \"notation\"\ndir = \"/etc/notation\"\nonline_revocation = false\n\
         timestamp_revocation = false\n",
    )
    .unwrap();
    assert!(matches!(
        offline.verifiers["notary"],
        VerifierConfig::Notation {
            online_revocation: false,
            timestamp_revocation: false,
            ..
        }
    ));
}

#[test]
fn defaults_without_verification_sections() {
    let config = parse("").unwrap();
    assert!(config.verifiers.is_empty());
    assert_eq!(config.cache.max_entries, 100_000);
    assert_eq!(config.cache.negative_ttl, Duration::from_secs(300));
    assert_eq!(config.verify.timeout, Duration::from_secs(30));
}

#[test]
fn verifier_mistakes_are_named() {
    for (text, needle) in [
        ("[verifiers.x]\nkind = \"gpg\"\n", "gpg"),
        ("[verifiers.x]\nkind = \"cosign\"\n", "trusts nothing"),
        ("[verifiers.x]\nkind = \"cosign\"\nkeys = [\"/k\"]\nkee = 1\n", "kee"),
        (
            "[verifiers.x]\nkind = \"cosign\"\nidentities = [{ issuer = \"https://i\" }]\n",
            "exactly one of subject",
        ),
        (
            "[verifiers.x]\nkind = \"cosign\"\nidentities = [{ subject = \"a\", subject_regexp = \"b\" }]\n",
            "exactly one of subject",
        ),
        (
            "[verifiers.x]\nkind = \"cosign\"\nidentities = [{ subject = \"a@example.com\" }]\n",
            "exactly one of issuer or issuer_regexp",
        ),
        (
            "[verifiers.x]\nkind = \"cosign\"\nidentities = [{ subject = \"a\", issuer = \"https://i\", \
             issuer_regexp = \".*\" }]\n",
            "exactly one of issuer or issuer_regexp",
        ),
        ("[verifiers.\"bad name\"]\nkind = \"notation\"\ndir = \"/d\"\n", "bad name"),
        ("[verifiers.n]\nkind = \"notation\"\n", "dir"),
        ("[cache]\nmax_entries = 0\n", "cache.max_entries"),
        ("[registry]\nplain_htp = []\n", "plain_htp"),
        (
            "[verifiers.x]\nkind = \"cosign\"\nkeys = [\"/k\"]\nsignature_digest = \"md5\"\n",
            "md5",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(needle), "{text:?}: {err}");
    }
}

#[test]
fn shipped_default_config_parses() {
    let text = include_str!("../../packaging/config.toml");
    let config = Config::parse(text, Path::new("packaging/config.toml")).unwrap();
    assert_eq!(config.cri.listen, Path::new("/run/crigate/crigate.sock"));
    assert_eq!(config.cri.other_services, MethodPolicy::Deny);
    assert_eq!(config.cache.positive_ttl, Duration::from_secs(3600));
}

#[test]
fn the_shipped_config_suggests_no_path_the_unit_keeps_from_it() {
    // The unit's ProtectHome=read-only makes /root, /home and /run/user read-only to the
    // daemon (and its dropped CAP_DAC_OVERRIDE keeps it out of what users there own): a
    // path suggested there, uncommented, could stop it at its next start.
    let unit = include_str!("../../systemd/crigate.service");
    assert!(unit.lines().any(|l| l == "ProtectHome=read-only"), "{unit}");
    for (name, text) in [
        (
            "packaging/config.toml",
            include_str!("../../packaging/config.toml"),
        ),
        (
            "packaging/kubernetes/20-configmap.yaml",
            include_str!("../../packaging/kubernetes/20-configmap.yaml"),
        ),
    ] {
        for hidden in ["\"/root/", "\"/home/", "\"/run/user/"] {
            assert!(
                !text.contains(hidden),
                "{name} suggests a path under {hidden}"
            );
        }
    }
}

#[test]
fn policies_are_read_and_checked_against_the_verifiers() {
    let base = "[verifiers.release]\nkind = \"cosign\"\nkeys = [\"/k.pub\"]\n";
    let config = parse(&format!(
        "{base}\n[[policies]]\nname = \"prod\"\nnamespaces = [\"prod\", \"prod-*\"]\nverifiers = [\"release\"]\n\
         allowlist = [{{ pattern = \"registry*.*.aliyuncs.com/acs/*\" }}]\n\n\
         [[policies]]\nname = \"default\"\nnamespaces = [\"*\"]\nmode = \"audit\"\nverifiers = [\"release\"]\non_error = \"allow\"\n"
    ))
    .unwrap();
    assert_eq!(config.policies.len(), 2);
    let err = parse(&format!(
        "{base}\n[[policies]]\nname = \"prod\"\nnamespaces = [\"prod\"]\nverifiers = [\"relase\"]\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("relase") && err.contains("prod"), "{err}");
    let err = parse("[[policies]]\nname = \"p\"\nnamespaces = [\"x\"]\nmode = \"block\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("block"), "{err}");
}

#[test]
fn an_aggregator_needs_its_tls_files_and_a_valid_url() {
    let origin = Path::new("c.toml");
    let with = |audit: &str| Config::parse(&format!("[audit]\n{audit}\n"), origin);
    let config = with(
        "aggregator = \"https://agg.example:7443\"\nca_file = \"/ca.pem\"\ncert_file = \"/n.pem\"\nkey_file = \"/n.key\"",
    )
    .unwrap();
    assert_eq!(config.audit.aggregator.unwrap().port(), 7443);
    assert_eq!(config.audit.spool_max_bytes, 256 * 1024 * 1024);
    assert!(matches!(
        with("aggregator = \"https://agg.example:7443\"\nca_file = \"/ca.pem\""),
        Err(Error::Invalid {
            key: "audit.cert_file",
            ..
        })
    ));
    assert!(matches!(
        with("aggregator = \"http://agg.example:7443\""),
        Err(Error::Parse { .. })
    ));
}

#[test]
fn an_unrecorded_call_is_allowed_unless_the_operator_says_deny() {
    let origin = Path::new("c.toml");
    let with = |value: &str| {
        Config::parse(&format!("[audit]\non_record_failure = {value}\n"), origin)
            .map(|c| c.audit.on_record_failure)
    };
    assert_eq!(
        parse("").unwrap().audit.on_record_failure,
        RecordFailure::Allow
    );
    assert_eq!(with("\"allow\"").unwrap(), RecordFailure::Allow);
    assert_eq!(with("\"deny\"").unwrap(), RecordFailure::Deny);
    assert!(matches!(with("\"block\""), Err(Error::Parse { .. })));
}

#[test]
fn spool_bound_edges() {
    let origin = Path::new("c.toml");
    let with = |n: u64| Config::parse(&format!("[audit]\nspool_max_bytes = {n}\n"), origin);
    assert!(with(MIN_SPOOL_BYTES - 1).is_err());
    assert!(with(MIN_SPOOL_BYTES).is_ok());
    assert!(with(MIN_SPOOL_BYTES + 1).is_ok());
}

#[test]
fn metrics_are_off_unless_an_address_is_given() {
    assert_eq!(parse("").unwrap().metrics.listen, None);
    let shipped = include_str!("../../packaging/config.toml");
    let config = Config::parse(shipped, Path::new("packaging/config.toml")).unwrap();
    assert_eq!(
        config.metrics.listen, None,
        "the shipped config opens a port"
    );
    let config = parse("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let config = parse("[metrics]\nlisten = \"[::1]:9464\"\n").unwrap();
    assert_eq!(config.metrics.listen, Some("[::1]:9464".parse().unwrap()));
}

#[test]
fn metrics_keys_are_checked() {
    // An unknown key in [metrics] is named with its line.
    let err =
        parse("[metrics]\nlisten = \"127.0.0.1:9464\"\nlistn = \"127.0.0.1:1\"\n").unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Parse { .. }), "{text}");
    assert!(text.contains("listn") && text.contains("line 3"), "{text}");
    // A host name or a missing port is not an address.
    for bad in ["localhost:9464", "127.0.0.1", "9464"] {
        let err = parse(&format!("[metrics]\nlisten = \"{bad}\"\n")).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }), "{bad}: {err}");
    }
    assert!(matches!(
        parse("[metrics]\nlisten = 9464\n"),
        Err(Error::Parse { .. })
    ));
}

#[test]
fn zero_timeouts_and_unbounded_sizes_are_refused() {
    for (text, key) in [
        ("[cri]\nconnect_timeout = \"0s\"\n", "cri.connect_timeout"),
        (
            "[registry]\nconnect_timeout = \"0s\"\n",
            "registry.connect_timeout",
        ),
        (
            "[registry]\nrequest_timeout = \"0s\"\n",
            "registry.request_timeout",
        ),
        (
            "[registry]\nbody_timeout = \"0s\"\n",
            "registry.body_timeout",
        ),
        (
            "[cri]\nmax_message_bytes = 4294967296\n",
            "cri.max_message_bytes",
        ),
        ("[cri]\nsocket_group = \"\"\n", "cri.socket_group"),
        ("[cache]\npath = \"\"\n", "cache.path"),
        ("[cache]\npath = \"verdicts.jsonl\"\n", "cache.path"),
    ] {
        let err = parse(text).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { key: found, .. } if *found == key),
            "{text:?}: {err}"
        );
    }
    parse("[cri]\nmax_message_bytes = 268435456\n").unwrap();
}

#[test]
fn an_unknown_key_of_a_verifier_is_named_with_its_line() {
    let err = parse("[cri]\n\n[verifiers.x]\nkind = \"cosign\"\nkeys = [\"/k\"]\nkee = 1\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("kee"), "{err}");
    assert!(err.contains("line 6"), "{err}");
    // A key of the other kind of verifier is named too.
    let err = parse("[verifiers.x]\nkind = \"cosign\"\nkeys = [\"/k\"]\ndir = \"/d\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`dir` is not a key of a cosign verifier"),
        "{err}"
    );
}

/// A deadline is the time now plus a timeout; a timeout past what the clock holds
/// (`"500000000000years"` parses) made every verification, and every connection's
/// preface wait, panic. Such timeouts are refused by name; a day is still taken.
#[test]
fn timeouts_past_a_day_are_refused() {
    for key in [
        "cri.connect_timeout",
        "cri.drain_timeout",
        "registry.connect_timeout",
        "registry.request_timeout",
        "registry.body_timeout",
        "verify.timeout",
    ] {
        let (table, name) = key.split_once('.').unwrap();
        for value in ["500000000000years", "25h"] {
            let text = format!("[{table}]\n{name} = \"{value}\"\n");
            let err = parse(&text).unwrap_err();
            assert!(
                matches!(&err, Error::Invalid { key: found, reason, .. }
                    if *found == key && reason.contains("24h")),
                "{text:?}: {err}"
            );
        }
        parse(&format!("[{table}]\n{name} = \"24h\"\n")).unwrap();
    }
}
