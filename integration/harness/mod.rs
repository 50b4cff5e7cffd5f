//! The real-process harness: a registry, containerd and (later) crigate, each in its own temp
//! dir, torn down on drop, safe to use from tests running in parallel threads.
//!
//! - [`image`]: [`TestImage`], small OCI images built in memory around a static test binary.
//! - [`registry`]: [`Registry`], `docker-registry` on a free loopback port, with a push client.
//! - [`containerd`]: [`Containerd`], a private containerd 1.6 with its CRI plugin.
//! - [`cri`]: [`CriClient`] over a unix socket, and pod and container config builders.
//! - [`process`]: free ports, logs, and the teardown of processes and mounts.
//! - [`postgres`]: [`postgres::Postgres`], a private PostgreSQL 15 server.
//!
//! [`Env::start`] wires them together. Nothing here depends on the test crate: benches and demos
//! include this module with `#[path = "../integration/harness/mod.rs"] mod harness;`.
//!
//! The harness needs root and the Debian packages containerd, runc, docker-registry, gcc and
//! libc6-dev; without them it fails, saying so (a skipped test would look like a passing one).
#![allow(dead_code)]

pub mod containerd;
pub mod cri;
pub mod image;
pub mod journald;
pub mod postgres;
pub mod process;
pub mod registry;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use k8s_cri::v1::PodSandboxConfig;
use tempfile::TempDir;

// Re-exports for callers' convenience; not every user of the harness uses each one.
#[allow(unused_imports)]
pub use self::containerd::Containerd;
#[allow(unused_imports)]
pub use self::cri::{container_config, cri_channel, pod_sandbox_config, CriClient};
#[allow(unused_imports)]
pub use self::image::{sha256_digest, TestImage};
#[allow(unused_imports)]
pub use self::registry::{Registry, RegistryTls};

/// Repository and tag of the sandbox (pause) image containerd is configured with.
pub const PAUSE_REPO: &str = "pause";
pub const PAUSE_TAG: &str = "3.6";
/// Repository and tag of the application image every [`Env`] starts with.
pub const APP_REPO: &str = "app";
pub const APP_TAG: &str = "v1";

/// Prefix of [`Env`] temp dirs (in the system temp dir).
const ENV_DIR_PREFIX: &str = "crigate-env-";

/// A registry holding `pause:3.6` and `app:v1`, and a containerd that pulls from it.
///
/// Teardown on drop, in order: any process still naming this env's dir (a crigate or socat a
/// test left running), then containerd (with its shims, containers and mounts), then the
/// registry, then the env's temp dir.
pub struct Env {
    pub containerd: Containerd,
    pub registry: Registry,
    /// The sandbox image, pushed as `pause:3.6`.
    pub pause_image: TestImage,
    /// `sha256:<hex>` of the pause image's manifest.
    pub pause_digest: String,
    /// The application image, pushed as `app:v1`.
    pub app_image: TestImage,
    /// `sha256:<hex>` of the app image's manifest.
    pub app_digest: String,
    /// How long [`Env::start`] took.
    pub startup: Duration,
    // Last: room for what tests add (crigate's socket and config, pod logs).
    dir: TempDir,
}

// === impl Env ===

impl Env {
    /// Starts a registry, pushes the pause and app images, and starts containerd (concurrently
    /// with the pushes), returning once containerd's CRI answers.
    ///
    /// # Errors
    ///
    /// When a precondition is missing (not root, packages not installed) or a process fails to
    /// start; the error names it and quotes its log.
    pub async fn start() -> Result<Self> {
        let began = Instant::now();
        process::require(
            &[
                "containerd",
                "containerd-shim-runc-v2",
                "runc",
                "docker-registry",
                "cc",
                "umount",
            ],
            true,
        )?;
        process::sweep_abandoned(ENV_DIR_PREFIX);
        let dir = tempfile::Builder::new()
            .prefix(ENV_DIR_PREFIX)
            .tempdir()
            .context("creating the test env temp dir")?;
        process::claim_dir(dir.path())?;
        let pause_image = TestImage::builder()
            .label("io.crigate.test.image=pause")
            .build()?;
        let app_image = TestImage::builder()
            .label("io.crigate.test.image=app")
            .build()?;

        let registry = Registry::start().await?;
        let host = registry.host();
        let (pause_digest, app_digest, containerd) = tokio::try_join!(
            registry.push(PAUSE_REPO, PAUSE_TAG, &pause_image),
            registry.push(APP_REPO, APP_TAG, &app_image),
            Containerd::launch(&host),
        )?;

        Ok(Self {
            containerd,
            registry,
            pause_image,
            pause_digest,
            app_image,
            app_digest,
            startup: began.elapsed(),
            dir,
        })
    }

    /// A temp dir of this env, for what tests add (sockets, configs, pod logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<registry>/app:v1`
    pub fn app_ref(&self) -> String {
        format!("{}/{APP_REPO}:{APP_TAG}", self.registry.host())
    }

    /// `<registry>/app@sha256:...`
    pub fn app_digest_ref(&self) -> String {
        format!("{}/{APP_REPO}@{}", self.registry.host(), self.app_digest)
    }

    /// `<registry>/pause:3.6`
    pub fn pause_ref(&self) -> String {
        format!("{}/{PAUSE_REPO}:{PAUSE_TAG}", self.registry.host())
    }

    /// A CRI client talking to containerd directly (no proxy).
    ///
    /// # Errors
    ///
    /// When containerd's socket does not accept a connection.
    pub async fn containerd_cri(&self) -> Result<CriClient> {
        self.containerd.cri().await
    }

    /// A host-network pod config named `name` in Kubernetes namespace `namespace`, with its log
    /// directory created under this env's temp dir.
    ///
    /// # Errors
    ///
    /// When the log directory cannot be created.
    pub fn pod_config(&self, name: &str, namespace: &str) -> Result<PodSandboxConfig> {
        let config = pod_sandbox_config(name, namespace, Path::new(""));
        let uid = config
            .metadata
            .as_ref()
            .map(|m| m.uid.clone())
            .unwrap_or_default();
        let log_dir: PathBuf = self
            .dir
            .path()
            .join("pods")
            .join(format!("{namespace}_{name}_{uid}"));
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating pod log dir {}", log_dir.display()))?;
        Ok(PodSandboxConfig {
            log_directory: log_dir.display().to_string(),
            ..config
        })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A safety net for what tests start in this env's dir (crigate, socat) and did not stop:
        // the proxy goes before containerd, the registry and the dir do (fields drop after this).
        let _ = process::kill_processes_of(self.dir.path(), None);
        let _ = process::unmount_all_under(self.dir.path());
    }
}
