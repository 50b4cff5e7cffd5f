//! A private containerd 1.6 with its CRI plugin, everything it owns under one temp dir: root,
//! state, sockets, runc state, CNI dirs, its log. Configured as `/work/shared/ENVIRONMENT.md`
//! says this VM needs (no cgroups, no AppArmor, the `native` snapshotter, the local registry as
//! an http mirror).
//!
//! # Teardown
//!
//! Dropping a [`Containerd`] (also while a test panics) SIGKILLs containerd, every shim and
//! container it started (found by their command lines naming the temp dir, their descent from
//! those, and runc's state), removes the shims' sockets from `/run/containerd/s`, lazily unmounts
//! whatever is mounted under the temp dir, and only then removes the dir. If a process or a mount
//! survives, the dir is kept (never delete through a live mount) and the drop says so on stderr.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::cri::CriClient;
use super::process::{self, LOG_TAIL_LINES};

/// How many log lines a drop during a panic prints (the test output shows them).
const PANIC_TAIL_LINES: usize = 20;
/// How long containerd may take to answer CRI `Version` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Prefix of containerd temp dirs (in the system temp dir).
const DIR_PREFIX: &str = "crigate-ctrd-";
/// Set to keep the temp dirs of finished tests (processes and mounts are still cleaned up).
pub const KEEP_DIRS_ENV: &str = "CRIGATE_KEEP_TEST_DIRS";

/// Plugins that would touch host-global state or probe the host for nothing: the snapshotters
/// other than `native` (overlayfs mounts a probe, the rest want devices or special filesystems).
/// The v1 runtime (`io.containerd.runtime.v1.linux`) must stay: the tasks service, and with it
/// the CRI plugin, fail to load without it.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.overlayfs",
    "io.containerd.snapshotter.v1.zfs",
];

/// A containerd started for one test. See the module docs for teardown.
pub struct Containerd {
    child: Option<Child>,
    registry_host: String,
    config: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    path: PathBuf,
    // Last; an Option so Drop can keep it when something could not be cleaned up.
    dir: Option<TempDir>,
}

// === impl Containerd ===

impl Containerd {
    /// Writes the config and directories for a containerd that pulls through `registry_host`
    /// (`127.0.0.1:PORT`, whose `pause:3.6` is the sandbox image). Starts nothing.
    ///
    /// # Errors
    ///
    /// When not root, containerd or runc is missing, or the temp dir cannot be written.
    pub fn new(registry_host: &str) -> Result<Self> {
        process::require(
            &["containerd", "containerd-shim-runc-v2", "runc", "umount"],
            true,
        )?;
        process::sweep_abandoned(DIR_PREFIX);
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .context("creating the containerd temp dir")?;
        process::claim_dir(dir.path())?;
        let path = dir.path().to_path_buf();
        for sub in [
            "root",
            "state",
            "tmp",
            "opt",
            "runc",
            "cni/bin",
            "cni/net.d",
            "pods",
        ] {
            std::fs::create_dir_all(path.join(sub))
                .with_context(|| format!("creating {}", path.join(sub).display()))?;
        }
        let config = path.join("containerd.toml");
        let socket = path.join("containerd.sock");
        std::fs::write(
            &config,
            config_toml(&path, &socket, registry_host, Hosts::Mirrors(&[])),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        Ok(Self {
            child: None,
            registry_host: registry_host.to_string(),
            config,
            socket,
            log: path.join("containerd.log"),
            path,
            dir: Some(dir),
        })
    }

    /// [`Containerd::new`] then [`Containerd::start`].
    ///
    /// # Errors
    ///
    /// As those two.
    pub async fn launch(registry_host: &str) -> Result<Self> {
        let mut containerd = Self::new(registry_host)?;
        containerd.start().await?;
        Ok(containerd)
    }

    /// Has the CRI plugin read its registry hosts from `hosts_dir` (its
    /// `registry.config_path`, `<host>/hosts.toml`) rather than from the mirror entry that
    /// makes the local registry plain HTTP, which containerd refuses beside `config_path`.
    /// `hosts_dir` must then name the local registry's plain-HTTP host itself. Takes
    /// effect at the next [`Containerd::start`].
    ///
    /// # Errors
    ///
    /// When the config cannot be written.
    pub fn use_hosts_dir(&mut self, hosts_dir: &Path) -> Result<()> {
        let config = config_toml(
            &self.path,
            &self.socket,
            &self.registry_host,
            Hosts::Dir(hosts_dir),
        );
        std::fs::write(&self.config, config)
            .with_context(|| format!("writing {}", self.config.display()))
    }

    /// Has the CRI plugin reach each `(registry, endpoint)` registry through that endpoint
    /// too (its older `registry.mirrors` table), besides the local registry's own plain-HTTP
    /// entry. Takes effect at the next [`Containerd::start`].
    ///
    /// # Errors
    ///
    /// When the config cannot be written.
    pub fn use_mirrors(&mut self, mirrors: &[(&str, &str)]) -> Result<()> {
        let config = config_toml(
            &self.path,
            &self.socket,
            &self.registry_host,
            Hosts::Mirrors(mirrors),
        );
        std::fs::write(&self.config, config)
            .with_context(|| format!("writing {}", self.config.display()))
    }

    /// Starts containerd (again, after [`Containerd::stop`]: same root and state, so it finds its
    /// pods, images and live shims) and waits until its CRI answers `Version`.
    ///
    /// # Errors
    ///
    /// When it is already running, exits, or does not answer within 20 s; the error quotes its log.
    pub async fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("containerd {} is already running", self.socket.display());
        }
        let log_offset = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&self.config);
        let child = process::spawn_logged(&mut command, &self.log)?;
        self.child = Some(child);
        let ready = self.wait_ready(log_offset).await;
        if ready.is_err() {
            if let Some(mut child) = self.child.take() {
                process::kill_child(&mut child);
            }
        }
        ready
    }

    /// Stops containerd: SIGTERM, then SIGKILL after 5 s. Shims and containers keep running, as
    /// they do when a node's containerd restarts; [`Containerd::start`] picks them up again.
    ///
    /// # Errors
    ///
    /// When the process cannot be signalled or waited for.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_none() {
            let pid = Pid::from_raw(i32::try_from(child.id()).context("containerd pid")?);
            kill(pid, Signal::SIGTERM).context("sending SIGTERM to containerd")?;
            let deadline = Instant::now() + STOP_GRACE;
            while child.try_wait()?.is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        process::kill_child(&mut child);
        Ok(())
    }

    /// Whether the containerd process is alive.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The containerd process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The CRI (and containerd API) unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temp dir holding everything of this containerd.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Where tests may put pod log directories (`<dir>/pods`).
    pub fn pod_log_root(&self) -> PathBuf {
        self.path.join("pods")
    }

    /// The `registry_host` this containerd was configured with.
    pub fn registry_host(&self) -> &str {
        &self.registry_host
    }

    /// containerd's config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// containerd's log (stdout and stderr, all starts appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        process::log_tail(&self.log, LOG_TAIL_LINES)
    }

    /// A CRI client connected directly to this containerd.
    ///
    /// # Errors
    ///
    /// When the socket does not accept a connection.
    pub async fn cri(&self) -> Result<CriClient> {
        CriClient::connect(&self.socket).await
    }

    async fn wait_ready(&mut self, log_offset: u64) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error = String::from("socket not created yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("checking containerd")? {
                    bail!(
                        "containerd exited during start-up ({status}); {}",
                        self.log_tail()
                    );
                }
            }
            // Without its CRI plugin containerd still serves its own API: fail now, not in 20 s.
            let log = std::fs::read(&self.log).unwrap_or_default();
            let this_start = usize::try_from(log_offset)
                .ok()
                .and_then(|offset| log.get(offset..))
                .unwrap_or_default();
            if String::from_utf8_lossy(this_start)
                .contains("failed to load plugin io.containerd.grpc.v1.cri")
            {
                bail!(
                    "containerd started without its CRI plugin (see \"failed to load plugin\"); {}",
                    self.log_tail()
                );
            }
            if self.socket.exists() {
                let probe = async {
                    let mut cri = CriClient::connect(&self.socket).await?;
                    cri.version().await
                };
                match tokio::time::timeout(Duration::from_secs(2), probe).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(error)) => last_error = format!("{error:#}"),
                    Err(_) => last_error = "CRI Version timed out".to_string(),
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd's CRI did not answer Version on {} within {READY_TIMEOUT:?} \
                     (last error: {last_error}); {}",
                    self.socket.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "containerd {} torn down after a panic; {}",
                self.path.display(),
                process::log_tail(&self.log, PANIC_TAIL_LINES)
            );
        }
        if let Some(mut child) = self.child.take() {
            process::kill_child(&mut child);
        }
        let (survivors, mounts) = process::tear_down_dir(&self.path);
        let Some(dir) = self.dir.take() else { return };
        if !survivors.is_empty() || !mounts.is_empty() {
            let kept = dir.keep();
            eprintln!(
                "containerd teardown left processes {survivors:?} and mounts {mounts:?}; \
                 keeping {} rather than deleting through them",
                kept.display()
            );
        } else if std::env::var_os(KEEP_DIRS_ENV).is_some() {
            let kept = dir.keep();
            // Without its owner marker, the next run's sweep leaves the dir alone.
            let _ = std::fs::remove_file(kept.join(process::OWNER_FILE));
            eprintln!("{KEEP_DIRS_ENV} is set: keeping {}", kept.display());
        }
    }
}

/// A TOML basic string holding `value`.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where the CRI plugin finds its registry hosts.
enum Hosts<'a> {
    /// Its `registry.mirrors` table: the local registry as plain HTTP, and these
    /// `(registry, endpoint)` mirrors.
    Mirrors(&'a [(&'a str, &'a str)]),
    /// A hosts directory (`registry.config_path`).
    Dir(&'a Path),
}

fn config_toml(dir: &Path, socket: &Path, registry_host: &str, hosts: Hosts<'_>) -> String {
    let at = |sub: &str| toml_string(&dir.join(sub).display().to_string());
    let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| toml_string(p)).collect();
    let socket_path = socket.display().to_string();
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    format!(
        r#"# Written by the crigate integration harness.
version = 2
root = {root}
state = {state}
temp = {tmp}
disabled_plugins = [{disabled}]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[{cri}]
  sandbox_image = {sandbox_image}
  disable_apparmor = true
  disable_cgroup = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [{cri}.cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}

  [{cri}.containerd]
    snapshotter = "native"
    default_runtime_name = "runc"

    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [{cri}.containerd.runtimes.runc.options]
        Root = {runc_root}

{registry}"#,
        root = at("root"),
        state = at("state"),
        tmp = at("tmp"),
        disabled = disabled.join(", "),
        socket = toml_string(&socket_path),
        ttrpc = toml_string(&format!("{socket_path}.ttrpc")),
        opt = at("opt"),
        sandbox_image = toml_string(&format!("{registry_host}/pause:3.6")),
        cni_bin = at("cni/bin"),
        cni_conf = at("cni/net.d"),
        runc_root = at("runc"),
        registry = match hosts {
            Hosts::Dir(hosts_dir) => format!(
                "  [{cri}.registry]\n    config_path = {}\n",
                toml_string(&hosts_dir.display().to_string())
            ),
            Hosts::Mirrors(mirrors) =>
                std::iter::once((registry_host, format!("http://{registry_host}")))
                    .chain(
                        mirrors
                            .iter()
                            .map(|(registry, endpoint)| (*registry, (*endpoint).to_owned()))
                    )
                    .map(|(registry, endpoint)| {
                        format!(
                            "  [{cri}.registry.mirrors.{}]\n    endpoint = [{}]\n",
                            toml_string(registry),
                            toml_string(&endpoint)
                        )
                    })
                    .collect::<String>(),
        },
    )
}
