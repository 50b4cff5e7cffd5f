//! The aggregator's configuration file: TOML, unknown keys rejected, every limit
//! defaulted to a documented value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Largest configuration file read; a config is a few hundred bytes.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A validated aggregator configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Address of the gRPC ingest stream (mutual TLS). Default `[::]:7443`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address of the HTTPS query endpoint (server TLS, bearer token). Default
    /// `127.0.0.1:7444`.
    #[serde(default = "default_query_listen")]
    pub query_listen: SocketAddr,
    /// The aggregator's certificate chain and key (PEM), for both ports.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA bundle (PEM) that node client certificates must chain to.
    pub client_ca_file: PathBuf,
    /// A file holding the query endpoint's bearer token (surrounding whitespace ignored).
    pub token_file: PathBuf,
    /// The SQLite database. Default `/var/lib/crigate-aggregator/audit.db`. Unused when
    /// `postgres` is set.
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// A PostgreSQL connection string (`host=/run/postgresql dbname=crigate
    /// user=crigate`, or a `postgresql://` URI) to store records there instead of
    /// SQLite. It may hold a password: it is never logged. With `sslmode=require` or
    /// `verify-full` the connection is TLS and the server's certificate and name are
    /// verified, with `verify-ca` its certificate only, and `sslcert`/`sslkey` name a
    /// client certificate; otherwise it is not encrypted (use a unix socket or loopback).
    #[serde(default, deserialize_with = "secret")]
    pub postgres: Option<crate::registry::Secret>,
    /// The CA bundle (PEM) that PostgreSQL's server certificate must chain to, with a
    /// TLS `sslmode`; or name it in the connection string as libpq's `sslrootcert`.
    /// Default: the system's trust store.
    #[serde(default)]
    pub postgres_ca_file: Option<PathBuf>,
    /// Records older than this are deleted. Default 30 days.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// How often the retention delete runs. Default 1 hour.
    #[serde(default = "default_retention_interval", with = "humantime_serde")]
    pub retention_interval: Duration,
    /// Time a TLS handshake may take before the connection is dropped. Default 10 s.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time in-flight streams and queries get after SIGTERM. Default 10 s.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_CONFIG_BYTES} bytes; is it the right file?")]
    TooLarge { path: PathBuf },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: &'static str,
    },
}

// === impl AggregatorConfig ===

impl AggregatorConfig {
    /// Reads and validates the file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not valid TOML, has an unknown or missing key, or a
    /// value out of range.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let read = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let text = crate::files::read_bounded_text(path, MAX_CONFIG_BYTES)
            .map_err(read)?
            .ok_or_else(|| Error::TooLarge {
                path: path.to_owned(),
            })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`AggregatorConfig::load`], without the I/O.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, Error> {
        let config: Self = toml::from_str(text).map_err(|source| Error::Parse {
            path: origin.to_owned(),
            source: Box::new(source),
        })?;
        let invalid = |key, reason| Error::Invalid {
            path: origin.to_owned(),
            key,
            reason,
        };
        if config.retention.is_zero() {
            return Err(invalid("retention", "must be more than zero"));
        }
        if config.retention_interval.is_zero() {
            return Err(invalid("retention_interval", "must be more than zero"));
        }
        if config.handshake_timeout.is_zero() {
            return Err(invalid("handshake_timeout", "must be more than zero"));
        }
        for (key, timeout) in [
            ("handshake_timeout", config.handshake_timeout),
            ("drain_timeout", config.drain_timeout),
        ] {
            crate::config::check_timeout(timeout).map_err(|reason| invalid(key, reason))?;
        }
        // Far past any use, and short of where adding one to the clock overflows.
        for (key, value) in [
            ("retention", config.retention),
            ("retention_interval", config.retention_interval),
        ] {
            if value > MAX_RETENTION {
                return Err(invalid(key, "must be at most 100y"));
            }
        }
        if config
            .postgres
            .as_ref()
            .is_some_and(|p| p.expose().trim().is_empty())
        {
            return Err(invalid(
                "postgres",
                "must not be empty; leave it out for SQLite",
            ));
        }
        if config.listen == config.query_listen {
            return Err(invalid("query_listen", "must differ from listen"));
        }
        Ok(config)
    }
}

fn secret<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::registry::Secret>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(crate::registry::Secret::new))
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0u16; 8], 7443))
}

fn default_query_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7444))
}

fn default_database() -> PathBuf {
    PathBuf::from("/var/lib/crigate-aggregator/audit.db")
}

/// The longest `retention` and `retention_interval`: `100y`, as the config's durations
/// count years (365.25 days).
const MAX_RETENTION: Duration = Duration::from_secs(100 * 31_557_600);

fn default_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_retention_interval() -> Duration {
    Duration::from_secs(3600)
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
cert_file = "/etc/crigate-aggregator/tls.crt"
key_file = "/etc/crigate-aggregator/tls.key"
client_ca_file = "/etc/crigate-aggregator/nodes-ca.crt"
token_file = "/etc/crigate-aggregator/token"
"#;

    #[test]
    fn minimal_config_takes_the_documented_defaults() {
        let config = AggregatorConfig::parse(MINIMAL, Path::new("a.toml")).unwrap();
        assert_eq!(config.retention, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(config.query_listen.to_string(), "127.0.0.1:7444");
        assert_eq!(config.listen.port(), 7443);
    }

    #[test]
    fn unknown_and_missing_keys_are_refused() {
        let typo = format!("{MINIMAL}\nretension = \"1d\"\n");
        assert!(matches!(
            AggregatorConfig::parse(&typo, Path::new("a.toml")),
            Err(Error::Parse { .. })
        ));
        assert!(matches!(
            AggregatorConfig::parse("listen = \"127.0.0.1:1\"\n", Path::new("a.toml")),
            Err(Error::Parse { .. })
        ));
    }

    /// A duration too long to add to the clock is refused as the key it is, not met as
    /// a panic when the aggregator first waits that long.
    #[test]
    fn durations_past_their_bound_are_refused() {
        for (key, bound, past) in [
            ("handshake_timeout", "24h", "25h"),
            ("drain_timeout", "24h", "1000y"),
            ("retention", "100y", "101y"),
            ("retention_interval", "100y", "290000000000y"),
        ] {
            let at = format!("{MINIMAL}\n{key} = \"{bound}\"\n");
            assert!(
                AggregatorConfig::parse(&at, Path::new("a.toml")).is_ok(),
                "{at}"
            );
            let over = format!("{MINIMAL}\n{key} = \"{past}\"\n");
            let refused = AggregatorConfig::parse(&over, Path::new("a.toml"));
            assert!(
                matches!(refused, Err(Error::Invalid { key: named, .. }) if named == key),
                "{over}: {refused:?}"
            );
        }
    }

    #[test]
    fn the_kubernetes_configmap_holds_a_valid_config() {
        let manifest: serde_yaml_ng::Value = serde_yaml_ng::from_str(include_str!(
            "../../packaging/kubernetes/aggregator/configmap.yaml"
        ))
        .unwrap();
        let text = manifest["data"]["aggregator.toml"].as_str().unwrap();
        let config = AggregatorConfig::parse(text, Path::new("configmap.yaml")).unwrap();
        assert_eq!(config.query_listen.port(), 7444);
    }

    #[test]
    fn the_kubernetes_postgresql_variant_holds_a_valid_config() {
        let text = include_str!("../../packaging/kubernetes/aggregator-postgres/aggregator.toml");
        let config = AggregatorConfig::parse(text, Path::new("aggregator.toml")).unwrap();
        assert!(config.postgres.is_some());
        // TLS to the server, with the CA the Deployment mounts.
        assert!(config
            .postgres
            .as_ref()
            .is_some_and(|url| url.expose().contains("sslmode=require")));
        let ca = config.postgres_ca_file.unwrap();
        let kustomization =
            include_str!("../../packaging/kubernetes/aggregator-postgres/kustomization.yaml");
        let deployment =
            include_str!("../../packaging/kubernetes/aggregator-postgres/deployment.yaml");
        assert!(kustomization.contains("name: crigate-aggregator-config"));
        assert!(deployment.contains("secretName: crigate-aggregator-config"));
        assert!(ca.starts_with("/etc/crigate/postgres-ca"));
        assert!(deployment.contains("mountPath: /etc/crigate/postgres-ca"));
        assert!(deployment.contains("name: crigate-aggregator-postgres-ca"));
    }

    #[test]
    fn a_postgres_connection_string_is_kept_secret() {
        let with = format!("{MINIMAL}\npostgres = \"host=/run/postgresql password=hunter2\"\n");
        let config = AggregatorConfig::parse(&with, Path::new("a.toml")).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        let empty = format!("{MINIMAL}\npostgres = \" \"\n");
        assert!(matches!(
            AggregatorConfig::parse(&empty, Path::new("a.toml")),
            Err(Error::Invalid {
                key: "postgres",
                ..
            })
        ));
    }

    #[test]
    fn zero_retention_is_refused() {
        let zero = format!("{MINIMAL}\nretention = \"0s\"\n");
        assert!(matches!(
            AggregatorConfig::parse(&zero, Path::new("a.toml")),
            Err(Error::Invalid {
                key: "retention",
                ..
            })
        ));
    }
}
