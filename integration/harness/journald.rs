//! A real `systemd-journald` for tests, in a private mount namespace.
//!
//! journald wants `/run/systemd/journal` and `/run/log`; the namespace gets its own tmpfs
//! on both, so the machine's (and other tests') journals are untouched. Its native socket
//! is reached from outside through `/proc/<pid>/root/...`, and `journalctl` runs inside
//! the namespace through `nsenter`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const JOURNALD: &str = "/lib/systemd/systemd-journald";

/// A running journald, stopped on drop.
pub struct Journald {
    child: Child,
}

impl Journald {
    /// Starts journald and waits for its native socket.
    pub fn start() -> Result<Self> {
        if !Path::new(JOURNALD).exists() {
            bail!("{JOURNALD} is missing: install the Debian package systemd (integration/setup does)");
        }
        for dir in ["/run/systemd", "/run/log"] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
        }
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs tmpfs /run/systemd && mount -t tmpfs tmpfs /run/log && exec {JOURNALD}"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting systemd-journald under unshare")?;
        let journald = Self { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !journald.socket().exists() {
            if Instant::now() > deadline {
                bail!("journald's socket did not appear within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(journald)
    }

    /// journald's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The native-protocol socket, as a path usable outside the namespace.
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/run/systemd/journal/socket",
            self.child.id()
        ))
    }

    /// Runs `journalctl -o json` with `matches` in journald's namespace and returns the
    /// entries, each a JSON object.
    pub fn query(&self, matches: &[&str]) -> Result<Vec<serde_json::Value>> {
        let output = Command::new("nsenter")
            .args(["-t", &self.child.id().to_string(), "-m", "journalctl"])
            .args(["--no-pager", "-o", "json"])
            .args(matches)
            .output()
            .context("running journalctl")?;
        if !output.status.success() {
            bail!(
                "journalctl failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).context("journalctl printed invalid JSON"))
            .collect()
    }

    /// Waits until `matches` finds at least `count` entries. A `journalctl` that fails
    /// (it reads files journald is writing) is run again until the deadline, and its
    /// error is the one reported if it is the last.
    pub fn wait_for(&self, matches: &[&str], count: usize) -> Result<Vec<serde_json::Value>> {
        self.wait_until(matches, |entries| entries.len() >= count)
            .with_context(|| format!("expected {count} entries"))
    }

    /// The entries `matches` finds, asking `journalctl` again if it fails.
    pub fn entries(&self, matches: &[&str]) -> Result<Vec<serde_json::Value>> {
        self.wait_until(matches, |_| true)
    }

    fn wait_until(
        &self,
        matches: &[&str],
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Result<Vec<serde_json::Value>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let last = match self.query(matches) {
                Ok(entries) if done(&entries) => return Ok(entries),
                Ok(entries) => format!("journald holds {} entries", entries.len()),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{matches:?} within 20 s: {last}; journald is {}",
                    self.state()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// journald's process state, as `/proc/<pid>/status` gives it, for failure messages.
    pub fn state(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("State:").map(|s| s.trim().to_owned()))
            })
            .unwrap_or_else(|| "gone".to_owned())
    }

    /// Stops journald's process (SIGSTOP) without ending it, as a stalled journald is:
    /// its socket's queue fills and nothing more is read until [`Journald::resume`].
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused journald run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        if let Err(error) = nix::sys::signal::kill(pid, signal) {
            panic!("cannot send {signal} to journald: {error}");
        }
    }

    /// Stops journald (a test of what happens when it is gone).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        self.stop();
    }
}

/// When journald received `entry`, in microseconds since the epoch; 0 if it does not say.
pub fn received(entry: &serde_json::Value) -> u64 {
    entry["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}
