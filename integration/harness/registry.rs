//! A real OCI registry (CNCF distribution 2.8, Debian `docker-registry`) on 127.0.0.1, with its
//! storage in a temp dir, and a small push client (OCI distribution spec, "Push": monolithic
//! blob upload by POST then PUT, manifests by PUT).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};
use tempfile::TempDir;

use super::image::{sha256_digest, TestImage, OCI_INDEX, OCI_MANIFEST};
use super::process::{self, LOG_TAIL_LINES};

/// How many log lines a drop during a panic prints (the test output shows them).
const PANIC_TAIL_LINES: usize = 10;
/// How long the registry may take to answer `GET /v2/` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Prefix of registry temp dirs (in the system temp dir).
const DIR_PREFIX: &str = "crigate-registry-";
/// Per-request timeout of the push client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts to start on a fresh port when the one we picked was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// Manifest media types sent in `Accept` when fetching.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// The TLS files of a registry served over HTTPS (distribution's `http.tls`).
pub struct RegistryTls {
    /// Its certificate chain (PEM).
    pub certificate: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA whose certificates it asks clients for (`clientcas`); `None`: it asks none.
    pub client_ca: Option<PathBuf>,
}

/// A running `docker-registry serve`, killed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
    http: reqwest::Client,
    // Last: removed after the process is gone.
    dir: TempDir,
}

// === impl Registry ===

impl Registry {
    /// Starts a registry on a free port with empty filesystem storage and deletes enabled, and
    /// waits until `GET /v2/` answers.
    ///
    /// # Errors
    ///
    /// When `docker-registry` is missing or does not answer within 10 s; the error quotes its log.
    pub async fn start() -> Result<Self> {
        Self::spawn(None, None).await
    }

    /// Another `docker-registry serve` over this registry's storage, serving it over TLS
    /// (`http.tls`): the same repositories, reached through HTTPS and, when `tls` names a
    /// client CA, only by clients presenting a certificate it issued. Its `url` and
    /// `http` are plain HTTP and do not reach it: read it through the client under test.
    ///
    /// # Errors
    ///
    /// As [`Registry::start`]; readiness is a TCP connection, as a TLS handshake would
    /// need the client certificate.
    pub async fn serve_tls(&self, tls: &RegistryTls) -> Result<Self> {
        Self::spawn(Some(&self.dir.path().join("storage")), Some(tls)).await
    }

    async fn spawn(storage: Option<&Path>, tls: Option<&RegistryTls>) -> Result<Self> {
        process::require(&["docker-registry"], false)?;
        process::sweep_abandoned(DIR_PREFIX);
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .context("creating the registry temp dir")?;
        process::claim_dir(dir.path())?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the registry HTTP client")?;
        let log = dir.path().join("registry.log");
        let storage = storage.map_or_else(|| dir.path().join("storage"), Path::to_owned);

        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = process::free_port()?;
            let config = dir.path().join("config.yml");
            std::fs::write(&config, config_yaml(&storage, port, tls))
                .context("writing the registry config")?;
            let mut child = process::spawn_logged(
                Command::new("docker-registry").arg("serve").arg(&config),
                &log,
            )?;
            let probe = tls.is_none().then_some(&http);
            match wait_ready(probe, port, &mut child, &log).await {
                Ok(()) => {
                    return Ok(Self {
                        child,
                        port,
                        log,
                        http,
                        dir,
                    })
                }
                Err(error) => {
                    process::kill_child(&mut child);
                    let port_taken = std::fs::read_to_string(&log)
                        .is_ok_and(|text| text.contains("address already in use"));
                    if !port_taken {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
            .context("registry: every port tried was taken")
    }

    /// `127.0.0.1:PORT`: the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's temp dir (config, storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's log file (stdout and stderr, including its access log).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        process::log_tail(&self.log, LOG_TAIL_LINES)
    }

    /// The HTTP client the harness uses (no redirects followed, 30 s timeout).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Pushes `image` (config, layer, then manifest by `tag`) to `repo`; returns the manifest
    /// digest, `sha256:<hex>`.
    ///
    /// # Errors
    ///
    /// When any request fails or the registry reports another digest than ours.
    pub async fn push(&self, repo: &str, tag: &str, image: &TestImage) -> Result<String> {
        self.push_blob(repo, image.config()).await?;
        self.push_blob(repo, image.layer()).await?;
        self.push_manifest(repo, tag, image.manifest_media_type(), image.manifest())
            .await
    }

    /// Uploads `bytes` as a blob of `repo` (skipped when the registry has it); returns its digest.
    ///
    /// # Errors
    ///
    /// When a request fails or answers an unexpected status.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        let blob_url = format!("{}/v2/{repo}/blobs/{digest}", self.url());
        let head = self
            .http
            .head(&blob_url)
            .send()
            .await
            .with_context(|| format!("registry: HEAD {blob_url}"))?;
        if head.status() == StatusCode::OK {
            return Ok(digest);
        }

        // OCI distribution spec, "POST then PUT": open an upload session, then PUT the whole blob
        // to the session's Location with `?digest=`.
        let start_url = format!("{}/v2/{repo}/blobs/uploads/", self.url());
        let started = self
            .http
            .post(&start_url)
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .send()
            .await
            .with_context(|| format!("registry: POST {start_url}"))?;
        if started.status() != StatusCode::ACCEPTED {
            bail!(
                "registry: POST {start_url} answered {} (expected 202): {}",
                started.status(),
                started.text().await.unwrap_or_default()
            );
        }
        let location = started
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("registry: POST {start_url} gave no Location header"))?;
        let mut upload_url = upload_location(&self.url(), location)?;
        upload_url.query_pairs_mut().append_pair("digest", &digest);

        let put = self
            .http
            .put(upload_url.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .with_context(|| format!("registry: PUT {upload_url}"))?;
        if put.status() != StatusCode::CREATED {
            bail!(
                "registry: PUT {upload_url} answered {} (expected 201): {}",
                put.status(),
                put.text().await.unwrap_or_default()
            );
        }
        Ok(digest)
    }

    /// PUTs `bytes` as a manifest of `repo` under `reference` (a tag or a digest) with
    /// `media_type`; returns its digest. Works for indexes and signature manifests too.
    ///
    /// # Errors
    ///
    /// When the request fails, the status is not 201, or the registry's digest is not ours.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String> {
        let digest = sha256_digest(bytes);
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.url());
        let response = self
            .http
            .put(&url)
            .header(CONTENT_TYPE, media_type)
            .body(bytes.to_vec())
            .send()
            .await
            .with_context(|| format!("registry: PUT {url}"))?;
        if response.status() != StatusCode::CREATED {
            bail!(
                "registry: PUT {url} ({media_type}) answered {} (expected 201): {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let reported = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok());
        if let Some(reported) = reported {
            if reported != digest {
                bail!("registry: PUT {url} stored digest {reported}, we sent {digest}");
            }
        }
        Ok(digest)
    }

    /// Pushes an OCI image index listing the manifests of `manifests` (pushed to `repo`
    /// already) under `reference`; returns its digest.
    ///
    /// # Errors
    ///
    /// As [`Registry::push_manifest`].
    pub async fn push_index(
        &self,
        repo: &str,
        reference: &str,
        manifests: &[&TestImage],
    ) -> Result<String> {
        let descriptors: Vec<serde_json::Value> = manifests
            .iter()
            .map(|image| {
                serde_json::json!({
                    "mediaType": image.manifest_media_type(),
                    "digest": image.manifest_digest(),
                    "size": image.manifest_size(),
                })
            })
            .collect();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": descriptors,
        }))?;
        self.push_manifest(repo, reference, OCI_INDEX, &index).await
    }

    /// Points `tag` of `repo` at the manifest `from` (a tag or digest) by fetching and re-putting
    /// it; returns the manifest digest.
    ///
    /// # Errors
    ///
    /// When the fetch or the push fails.
    pub async fn tag(&self, repo: &str, from: &str, tag: &str) -> Result<String> {
        let (media_type, bytes) = self.manifest(repo, from).await?;
        self.push_manifest(repo, tag, &media_type, &bytes).await
    }

    /// Fetches a manifest by tag or digest; returns its media type and bytes.
    ///
    /// # Errors
    ///
    /// When the request fails or the status is not 200.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<(String, Vec<u8>)> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.url());
        let response = self
            .http
            .get(&url)
            .header(ACCEPT, MANIFEST_ACCEPT)
            .send()
            .await
            .with_context(|| format!("registry: GET {url}"))?;
        if response.status() != StatusCode::OK {
            bail!(
                "registry: GET {url} answered {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(OCI_MANIFEST)
            .to_string();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("registry: reading GET {url}"))?;
        Ok((media_type, bytes.to_vec()))
    }

    /// Deletes the manifest `digest` from `repo` (tags pointing at it go with it).
    ///
    /// # Errors
    ///
    /// When the request fails or the status is not 202.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<()> {
        self.delete(&format!("{repo}/manifests/{digest}")).await
    }

    /// Deletes the blob `digest` from `repo`, as a registry that lost it would answer.
    ///
    /// # Errors
    ///
    /// When the request fails or the status is not 202.
    pub async fn delete_blob(&self, repo: &str, digest: &str) -> Result<()> {
        self.delete(&format!("{repo}/blobs/{digest}")).await
    }

    /// `DELETE /v2/<path>`, which must answer 202.
    async fn delete(&self, path: &str) -> Result<()> {
        let url = format!("{}/v2/{path}", self.url());
        let response = self
            .http
            .delete(&url)
            .send()
            .await
            .with_context(|| format!("registry: DELETE {url}"))?;
        if response.status() != StatusCode::ACCEPTED {
            bail!(
                "registry: DELETE {url} answered {} (expected 202): {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "registry {} torn down after a panic; {}",
                self.host(),
                process::log_tail(&self.log, PANIC_TAIL_LINES)
            );
        }
        process::kill_child(&mut self.child);
    }
}

/// The upload URL named by a `Location` header, which may be absolute or relative to `base`
/// and may already carry a query (the registry's `_state`).
///
/// # Errors
///
/// When `base` or `location` is not a URL.
pub fn upload_location(base: &str, location: &str) -> Result<Url> {
    let base = Url::parse(base).with_context(|| format!("registry: bad base URL {base}"))?;
    base.join(location)
        .with_context(|| format!("registry: bad upload Location {location:?}"))
}

fn config_yaml(storage: &Path, port: u16, tls: Option<&RegistryTls>) -> String {
    let mut yaml = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: crigate-integration\n  \
         headers:\n    X-Content-Type-Options: [nosniff]\n",
        storage = storage.display(),
    );
    if let Some(tls) = tls {
        yaml += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            tls.certificate.display(),
            tls.key.display()
        );
        if let Some(ca) = &tls.client_ca {
            yaml += &format!("    clientcas:\n      - {}\n", ca.display());
        }
    }
    yaml
}

/// Waits until the registry answers `GET /v2/` with `http`, or, without a client (a TLS
/// registry that may want a client certificate), accepts TCP connections on `port`.
async fn wait_ready(
    http: Option<&reqwest::Client>,
    port: u16,
    child: &mut Child,
    log: &Path,
) -> Result<()> {
    let url = format!("http://127.0.0.1:{port}/v2/");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("checking the registry process")? {
            bail!(
                "docker-registry exited during start-up ({status}); {}",
                process::log_tail(log, LOG_TAIL_LINES)
            );
        }
        let ready = match http {
            Some(http) => {
                let answer = http.get(&url).timeout(Duration::from_secs(1)).send().await;
                answer.is_ok_and(|r| r.status() == StatusCode::OK)
            }
            None => tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok(),
        };
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "docker-registry was not ready on 127.0.0.1:{port} within {READY_TIMEOUT:?}; {}",
                process::log_tail(log, LOG_TAIL_LINES)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
