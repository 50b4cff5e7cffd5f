//! The registry settings of containerd's own config file (`/etc/containerd/config.toml`),
//! for nodes whose CRI plugin is configured there rather than (only) in a hosts
//! directory: `config_path` (the hosts directory), the older `mirrors` (endpoints per
//! registry, `*` for every other), and `configs` (TLS files and credentials per host).
//!
//! The registry table is where each config version puts it: version 3 (containerd 2.x)
//! under `plugins."io.containerd.cri.v1.images".registry`, version 2 under
//! `plugins."io.containerd.grpc.v1.cri".registry`, version 1 (or none) under
//! `plugins.cri.registry`. Every other key of the file is left to containerd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::auth::{Credentials, CriAuth};
use super::hosts::{HostTls, HostsError};

/// The largest containerd config file read.
pub const MAX_CONTAINERD_CONFIG_BYTES: u64 = 1024 * 1024;

/// What the CRI plugin's `registry` table says.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ContainerdRegistry {
    /// The hosts directory; when set, containerd ignores `mirrors` and the `tls` of
    /// `configs` (their `auth` still applies).
    #[serde(default)]
    pub(super) config_path: String,
    #[serde(default)]
    pub(super) mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub(super) configs: BTreeMap<String, HostSettings>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Mirror {
    #[serde(default)]
    pub(super) endpoint: Vec<String>,
}

/// `configs."<host>"`: settings for requests to that host (an endpoint's `host[:port]`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct HostSettings {
    pub(super) tls: Option<TlsSettings>,
    auth: Option<AuthSettings>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct TlsSettings {
    #[serde(default)]
    pub(super) ca_file: String,
    #[serde(default)]
    pub(super) cert_file: String,
    #[serde(default)]
    pub(super) key_file: String,
    #[serde(default)]
    pub(super) insecure_skip_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
struct AuthSettings {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    identitytoken: String,
}

// === impl ContainerdRegistry ===

impl ContainerdRegistry {
    /// Reads the registry table of the containerd config at `path`; an empty one when the
    /// file has none.
    ///
    /// # Errors
    ///
    /// [`HostsError`] when the file cannot be read, is larger than
    /// [`MAX_CONTAINERD_CONFIG_BYTES`], or is not TOML of containerd's shape.
    pub(super) fn load(path: &Path) -> Result<Self, HostsError> {
        let bytes = match crate::files::read_bounded(path, MAX_CONTAINERD_CONFIG_BYTES) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(HostsError::TooLarge {
                    path: path.to_owned(),
                })
            }
            Err(source) => {
                return Err(HostsError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let invalid = |reason: String| HostsError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8".to_owned()))?;
        Self::parse(&text).map_err(invalid)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let file: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let version = match file.get("version") {
            None => 1,
            Some(toml::Value::Integer(version)) => *version,
            Some(other) => return Err(format!("version must be a number, not {other}")),
        };
        let (plugin, name) = match version {
            1 => ("cri", "plugins.cri.registry"),
            2 => (
                "io.containerd.grpc.v1.cri",
                "plugins.\"io.containerd.grpc.v1.cri\".registry",
            ),
            3 => (
                "io.containerd.cri.v1.images",
                "plugins.\"io.containerd.cri.v1.images\".registry",
            ),
            other => return Err(format!("config version {other} is not known")),
        };
        let Some(table) = file
            .get("plugins")
            .and_then(|plugins| plugins.get(plugin))
            .and_then(|plugin| plugin.get("registry"))
        else {
            return Ok(Self::default());
        };
        table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| format!("{name}: {}", e.message()))
    }

    /// The credentials `configs` gives each host, keyed as written, read as containerd's
    /// `ParseAuth` reads them: `username` and `password`, else `identitytoken`, else
    /// `auth` (base64 `user:password`).
    ///
    /// # Errors
    ///
    /// A host whose `auth` is not base64 of `user:password`.
    pub(super) fn credentials(&self) -> Result<Vec<(&str, Credentials)>, String> {
        let mut found = Vec::new();
        for (host, settings) in &self.configs {
            let Some(auth) = &settings.auth else { continue };
            let credentials = Credentials::from_cri(CriAuth {
                username: &auth.username,
                password: &auth.password,
                auth: &auth.auth,
                identity_token: &auth.identitytoken,
                ..CriAuth::default()
            })
            .map_err(|e| format!("configs.{host:?}.auth: {e}"))?;
            found.push((host.as_str(), credentials));
        }
        Ok(found)
    }
}

// === impl TlsSettings ===

impl TlsSettings {
    /// The CA files and client pair these settings name (containerd `getTLSConfig`): a
    /// certificate without its key, or a key without its certificate, is an error.
    pub(super) fn files(&self, host: &str) -> Result<HostTls, String> {
        let ca = (!self.ca_file.is_empty())
            .then(|| PathBuf::from(&self.ca_file))
            .into_iter()
            .collect();
        let client = match (self.cert_file.as_str(), self.key_file.as_str()) {
            ("", "") => Vec::new(),
            (cert, "") => {
                return Err(format!(
                    "configs.{host:?}.tls: cert_file {cert:?} without a key_file"
                ))
            }
            ("", key) => {
                return Err(format!(
                    "configs.{host:?}.tls: key_file {key:?} without a cert_file"
                ))
            }
            (cert, key) => vec![(PathBuf::from(cert), Some(PathBuf::from(key)))],
        };
        Ok(HostTls {
            ca,
            client,
            skip_verify: self.insecure_skip_verify,
        })
    }
}

#[cfg(test)]
mod tests;
