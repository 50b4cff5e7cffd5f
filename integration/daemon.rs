//! A `crigate serve` process for tests: started from the binary cargo built, with a
//! config in a temp dir, stopped on drop.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The crigate binary under test.
pub fn crigate_binary() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_crigate") {
        return PathBuf::from(path);
    }
    // Examples get no CARGO_BIN_EXE_*: the binary sits one directory up from them.
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("crigate"))
        .expect("target dir")
}

/// A running `crigate serve`.
pub struct Crigate {
    child: Option<Child>,
    pub socket: PathBuf,
    pub config_path: PathBuf,
    log_path: PathBuf,
    /// Time from spawn until the socket accepted a connection.
    pub ready_after: Duration,
}

/// How to start crigate.
pub struct Options {
    pub config: String,
    pub socket: PathBuf,
    /// Environment variables to add.
    pub env: Vec<(String, String)>,
    /// A listening socket to pass as systemd would (fd 3, LISTEN_FDS=1, LISTEN_PID).
    pub inherit: Option<std::os::unix::net::UnixListener>,
    /// Wait for the socket to accept connections before returning.
    pub wait_ready: bool,
    /// `--log-format`.
    pub log_format: &'static str,
    /// A command crigate runs under, such as `nsenter` into another mount namespace; it
    /// must exec crigate in its own process.
    pub run_under: Vec<String>,
    /// Where crigate's stderr goes instead of its log file.
    pub stderr: Option<Stdio>,
}

impl Options {
    /// Options for a crigate in `dir`, listening on `dir/crigate.sock`, forwarding to
    /// `upstream`, with `extra` lines appended to the `[cri]` section.
    pub fn new(dir: &Path, upstream: &Path, extra: &str) -> Self {
        let socket = dir.join("crigate.sock");
        let config = format!(
            "[cri]\nlisten = \"{}\"\nupstream = \"{}\"\n{extra}\n",
            socket.display(),
            upstream.display()
        );
        Self {
            config,
            socket,
            env: Vec::new(),
            inherit: None,
            wait_ready: true,
            log_format: "text",
            run_under: Vec::new(),
            stderr: None,
        }
    }
}

impl Crigate {
    /// Starts crigate with `options` in `dir`.
    pub fn start(dir: &Path, options: Options) -> anyhow::Result<Self> {
        let config_path = dir.join("crigate.toml");
        std::fs::write(&config_path, &options.config)?;
        let log_path = dir.join("crigate.log");
        let log = File::create(&log_path)?;
        // With a socket to pass, a shell sets LISTEN_PID to its own pid and execs crigate
        // in place, so the pid matches as sd_listen_fds(3) requires.
        let mut command = if options.inherit.is_some() {
            let mut c = Command::new("/bin/sh");
            c.arg("-c")
                .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
                .arg(crigate_binary());
            c
        } else if let [program, args @ ..] = &options.run_under[..] {
            let mut c = Command::new(program);
            c.args(args).arg(crigate_binary());
            c
        } else {
            Command::new(crigate_binary())
        };
        command
            .args(["--log-format", options.log_format, "serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "crigate=debug,info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(options.stderr.unwrap_or(log.into()));
        for (key, value) in &options.env {
            command.env(key, value);
        }
        if let Some(listener) = options.inherit {
            use std::os::fd::{AsRawFd, BorrowedFd};
            command.env("LISTEN_FDS", "1");
            let raw = listener.as_raw_fd();
            // SAFETY: runs in the forked child before exec and makes only
            // async-signal-safe calls (fcntl, dup2). `listener` outlives the spawn, so
            // `raw` is open; the new fd 3 is deliberately not closed (it is the point).
            #[allow(unsafe_code)]
            unsafe {
                command.pre_exec(move || {
                    let fd = BorrowedFd::borrow_raw(raw);
                    if raw == 3 {
                        nix::fcntl::fcntl(
                            fd,
                            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                        )?;
                    } else {
                        let three = nix::unistd::dup2_raw(fd, 3)?;
                        std::mem::forget(three);
                    }
                    Ok(())
                });
            }
            let started = Instant::now();
            let child = command.spawn().context("spawn crigate");
            drop(listener);
            return Self::finish_start(
                child?,
                started,
                options.socket,
                config_path,
                log_path,
                options.wait_ready,
            );
        }
        let started = Instant::now();
        let child = command.spawn().context("spawn crigate")?;
        Self::finish_start(
            child,
            started,
            options.socket,
            config_path,
            log_path,
            options.wait_ready,
        )
    }

    fn finish_start(
        child: Child,
        started: Instant,
        socket: PathBuf,
        config_path: PathBuf,
        log_path: PathBuf,
        wait_ready: bool,
    ) -> anyhow::Result<Self> {
        let mut crigate = Self {
            child: Some(child),
            socket,
            config_path,
            log_path,
            ready_after: Duration::ZERO,
        };
        if wait_ready {
            crigate.wait_ready(started)?;
        }
        Ok(crigate)
    }

    fn wait_ready(&mut self, started: Instant) -> anyhow::Result<()> {
        let deadline = started + Duration::from_secs(10);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                self.ready_after = started.elapsed();
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "crigate exited with {status} before serving:\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "crigate did not serve {} within 10 s:\n{}",
                    self.socket.display(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal crigate");
    }

    /// Rewrites the config file (then send SIGHUP to apply it).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write config");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().context("not running")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("crigate still running after {timeout:?}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything crigate logged so far.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let _ = file.seek(SeekFrom::Start(0));
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("log never contained {needle:?}:\n{}", self.logs())
    }

    /// Resident memory of the process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("VmRSS")
    }
}

impl Drop for Crigate {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
