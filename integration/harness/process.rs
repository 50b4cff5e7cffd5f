//! Child processes, ports, leftover processes and mounts: the host-level chores the other
//! harness modules share.
//!
//! Everything here works on a directory: a harness component owns a temp dir, and every process
//! or mount that belongs to it names that directory (on its command line, as a descendant of such
//! a process, or as a mount point under it). Teardown finds them by that and nothing else, so
//! parallel tests never touch each other's processes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Directory of the runtime v2 shims' sockets, fixed in containerd 1.6 whatever the config says.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s/";

/// The marker file [`claim_dir`] writes.
pub const OWNER_FILE: &str = "owner";

/// How many lines of a log an error message quotes.
pub const LOG_TAIL_LINES: usize = 40;

/// Tools the harness runs, with the Debian package that provides each.
const TOOLS: &[(&str, &str)] = &[
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("runc", "runc"),
    ("docker-registry", "docker-registry"),
    ("cc", "gcc"),
    ("umount", "mount"),
];

/// Fails unless `tools` are on `PATH` (and, with `root`, unless we are root), saying how to fix it.
///
/// The harness never skips a test whose environment is missing: a skipped test looks like a
/// passing one.
///
/// # Errors
///
/// Names every missing tool and the package that provides it.
pub fn require(tools: &[&str], root: bool) -> Result<()> {
    let mut problems = Vec::new();
    if root && !nix::unistd::geteuid().is_root() {
        problems.push(
            "these tests start containerd and runc containers and must run as root".to_string(),
        );
    }
    for tool in tools {
        if find_in_path(tool).is_none() {
            let package = TOOLS
                .iter()
                .find(|(name, _)| name == tool)
                .map_or(*tool, |(_, package)| *package);
            problems.push(format!(
                "`{tool}` is not on PATH (Debian package `{package}`)"
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "integration harness cannot run: {}. Run the tests through `.ci/run`, or install the \
         packages: apt-get install -y containerd runc docker-registry gcc libc6-dev",
        problems.join("; ")
    )
}

/// The first executable file called `name` on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them (empty if it cannot
/// be read): benchmarks print them beside their figures.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out
/// before (so two tests of one process never race for the same port).
///
/// The port is drawn below the kernel's ephemeral range (`ip_local_port_range`), from which
/// the kernel takes the local port of every outgoing connection and of every bind to port 0:
/// a port drawn from that range could be taken by any connection on the machine between this
/// call and the bind of the process it is meant for.
///
/// # Errors
///
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    static HANDED_OUT: OnceLock<Mutex<BTreeSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let below = (ephemeral_low > FIRST_TEST_PORT + 1000).then_some(FIRST_TEST_PORT..ephemeral_low);
    for _ in 0..256 {
        let candidate = below.clone().map_or(0, fastrand::u16);
        let Ok(listener) = TcpListener::bind(("127.0.0.1", candidate)) else {
            continue;
        };
        let port = listener.local_addr()?.port();
        let mut seen = handed_out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.insert(port) {
            return Ok(port);
        }
    }
    bail!("found no free TCP port on 127.0.0.1 not already handed out by this process")
}

/// The lowest port [`free_port`] hands out, above the well-known and most registered
/// service ports.
const FIRST_TEST_PORT: u16 = 20_000;

/// The last `lines` lines of a log file, or a note saying why it could not be read.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let tail = all.get(start..).unwrap_or_default().join("\n");
            if tail.is_empty() {
                format!("({} is empty)", path.display())
            } else {
                format!("last lines of {}:\n{tail}", path.display())
            }
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// Opens `path` for appending (a restarted process keeps writing the same log).
///
/// # Errors
///
/// When the file cannot be opened.
pub fn append_log(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log file {}", path.display()))
}

/// Spawns `command` with stdout and stderr appended to `log`. The child stays in our process
/// group, so a Ctrl-C that kills the test run (and skips every `Drop`) stops it too; what it
/// started in turn is swept by [`sweep_abandoned`] on the next run.
///
/// # Errors
///
/// When the log cannot be opened or the program cannot be started.
pub fn spawn_logged(command: &mut Command, log: &Path) -> Result<Child> {
    let out = append_log(log)?;
    let err = out.try_clone().context("duplicating log file handle")?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    command
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))
}

/// Marks `dir` as owned by this process (pid and start time in `<dir>/owner`), so a later run
/// can tell a dir abandoned by a killed test run from one a parallel run is using.
///
/// # Errors
///
/// When the marker cannot be written.
pub fn claim_dir(dir: &Path) -> Result<()> {
    let own = std::process::id();
    let start = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| start_time_of(&stat))
        .unwrap_or(0);
    fs::write(dir.join(OWNER_FILE), format!("{own} {start}\n"))
        .with_context(|| format!("writing {}", dir.join(OWNER_FILE).display()))
}

/// Cleans up after test runs that died without running their `Drop`s (Ctrl-C, SIGKILL, a
/// timeout): for every `<temp dir>/<prefix>*` whose owner process is gone, kills its processes,
/// unmounts what is mounted under it and removes it. Dirs without an owner marker are left
/// alone (they may be being created). Runs once per process and prefix.
pub fn sweep_abandoned(prefix: &'static str) {
    static SWEPT: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let swept = SWEPT.get_or_init(Default::default);
    if !swept
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(prefix)
    {
        return;
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let named = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(prefix));
        if !named || !dir.is_dir() || owner_alive(&dir) != Some(false) {
            continue;
        }
        let (survivors, mounts) = tear_down_dir(&dir);
        if survivors.is_empty() && mounts.is_empty() {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// A byte-level unix-socket relay (`socat`) in front of another socket: the cheapest
/// possible hop, and so the floor for any proxy on the same cores. Killed when dropped.
pub struct Relay {
    child: Child,
    pub socket: PathBuf,
}

impl Relay {
    /// A relay listening on `relay.sock` in `dir` and forwarding each connection to
    /// `upstream`.
    pub fn start(dir: &Path, upstream: &Path) -> Result<Self> {
        let socket = dir.join("relay.sock");
        let child = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork,reuseaddr", socket.display()))
            .arg(format!("UNIX-CONNECT:{}", upstream.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("socat (run integration/setup)")?;
        let mut relay = Self { child, socket };
        let deadline = Instant::now() + Duration::from_secs(5);
        // Listening, not only bound: socat creates the file at bind(2), and a connection
        // made before its listen(2) is refused.
        while std::os::unix::net::UnixStream::connect(&relay.socket).is_err() {
            if Instant::now() > deadline {
                kill_child(&mut relay.child);
                bail!("socat did not listen on {}", relay.socket.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(relay)
    }

    /// The CPU time, user and system, that socat has spent: its listener's and that of
    /// each process it forked for a connection still open (one per connection).
    pub fn cpu_time(&self) -> std::time::Duration {
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .filter_map(|child| child.parse().ok())
            .chain([pid])
            .map(cpu_time)
            .sum()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// Sends SIGKILL to our child and reaps it. Never fails: used on teardown.
pub fn kill_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Kills, with SIGKILL, every process that belongs to `dir`, and waits (up to 5 s) until none is
/// left.
///
/// A process belongs to `dir` when its command line names a path under `dir` (containerd, its
/// shims through `-address`, runc through `--root`), when it descends from such a process
/// (containers, re-parented to their shim), or when runc's state under `dir` names it as a
/// container's init process (a container whose shim already died). The whole set is collected
/// before the first signal, so killing a shim cannot orphan a container out of sight.
///
/// Returns the pids that were still alive at the deadline (empty on success).
pub fn kill_processes_of(dir: &Path, runc_root: Option<&Path>) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut signalled: BTreeSet<i32> = BTreeSet::new();
    loop {
        let table = process_table();
        let mut targets = processes_naming(dir, &table);
        if let Some(root) = runc_root {
            targets.extend(runc_init_pids(root, &table));
        }
        let targets = with_descendants(targets, &table);
        let alive: Vec<i32> = targets
            .into_iter()
            .filter(|pid| {
                table.get(pid).is_some_and(|p| {
                    // Once SIGKILLed, a process that released its memory (empty cmdline) runs no
                    // more user code and has dropped its namespaces and mounts; it may still wait
                    // in the kernel (a PID-namespace init waits until the host's init reaps the
                    // namespace's zombies, which this VM's init does lazily, taking seconds).
                    let exiting = signalled.contains(pid) && p.cmdline.is_empty();
                    p.state != 'Z' && p.state != 'X' && !exiting
                })
            })
            .collect();
        if alive.is_empty() {
            return Vec::new();
        }
        if Instant::now() > deadline {
            return alive;
        }
        for pid in &alive {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            signalled.insert(*pid);
        }
        pause(Duration::from_millis(10));
    }
}

/// Tears down what a containerd in `dir` left running: kills its processes
/// ([`kill_processes_of`], with runc state in `<dir>/runc`), removes its shims' sockets from
/// `/run/containerd/s` and detaches every mount under `dir` ([`unmount_all_under`]).
///
/// Returns the processes and mounts that survived (both empty on success): the caller must not
/// delete `dir` through a live mount.
pub fn tear_down_dir(dir: &Path) -> (Vec<i32>, Vec<PathBuf>) {
    let sockets = shim_sockets(&dir.join("state"));
    let survivors = kill_processes_of(dir, Some(&dir.join("runc")));
    for socket in sockets {
        let _ = fs::remove_file(socket);
    }
    (survivors, unmount_all_under(dir))
}

/// Mount points under `dir` (deepest first), from /proc/self/mountinfo.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(unescape_mountinfo(escaped)))
        .filter(|mount_point| mount_point.starts_with(dir) && mount_point != dir)
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Detaches (`umount -l`) every mount under `dir`, deepest first, until none is left.
///
/// Returns the mount points still there afterwards (empty on success).
pub fn unmount_all_under(dir: &Path) -> Vec<PathBuf> {
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return mounts;
        }
        for mount_point in &mounts {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(mount_point)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    mounts_under(dir)
}

/// Blocks the calling thread for `duration`.
///
/// Only for `Drop`, which cannot await; async code uses `tokio::time::sleep`.
#[allow(clippy::disallowed_methods)] // teardown in Drop cannot await
pub fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

// === process table ===

struct ProcessInfo {
    ppid: i32,
    state: char,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22).
    start_time: u64,
    cmdline: String,
}

fn process_table() -> BTreeMap<i32, ProcessInfo> {
    let own = std::process::id();
    let mut table = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid).is_ok_and(|pid| pid == own) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name in parentheses may hold spaces and ')': fields start after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields.first().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let start_time = start_time_of(&stat).unwrap_or(0);
        let cmdline = fs::read(entry.path().join("cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .unwrap_or_default();
        table.insert(
            pid,
            ProcessInfo {
                ppid,
                state,
                start_time,
                cmdline,
            },
        );
    }
    table
}

/// The shim sockets containerd recorded under `state` (runtime v2 bundles' `address` files).
fn shim_sockets(state: &Path) -> Vec<PathBuf> {
    let tasks = state.join("io.containerd.runtime.v2.task");
    let mut sockets = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(tasks) else {
        return sockets;
    };
    for namespace in namespaces.flatten() {
        let Ok(bundles) = std::fs::read_dir(namespace.path()) else {
            continue;
        };
        for bundle in bundles.flatten() {
            let Ok(address) = std::fs::read_to_string(bundle.path().join("address")) else {
                continue;
            };
            let path = address.trim().trim_start_matches("unix://");
            if path.starts_with(SHIM_SOCKET_DIR) {
                sockets.push(PathBuf::from(path));
            }
        }
    }
    sockets
}

/// Field 22 (start time) of a /proc/PID/stat line.
fn start_time_of(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that claimed `dir` still runs; `None` without a readable marker.
fn owner_alive(dir: &Path) -> Option<bool> {
    let marker = fs::read_to_string(dir.join(OWNER_FILE)).ok()?;
    let mut fields = marker.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let start: u64 = fields.next()?.parse().ok()?;
    let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| start_time_of(&stat))
        .is_some_and(|now| now == start);
    Some(alive)
}

fn processes_naming(dir: &Path, table: &BTreeMap<i32, ProcessInfo>) -> BTreeSet<i32> {
    let needle = format!("{}/", dir.display());
    table
        .iter()
        .filter(|(_, info)| info.cmdline.contains(&needle))
        .map(|(pid, _)| *pid)
        .collect()
}

/// Container init pids recorded by runc under `root` (`<root>/<namespace>/<id>/state.json`),
/// when the recorded start time still matches (so a reused pid is never killed).
fn runc_init_pids(root: &Path, table: &BTreeMap<i32, ProcessInfo>) -> BTreeSet<i32> {
    let mut pids = BTreeSet::new();
    let Ok(namespaces) = fs::read_dir(root) else {
        return pids;
    };
    for namespace in namespaces.flatten() {
        let Ok(containers) = fs::read_dir(namespace.path()) else {
            continue;
        };
        for container in containers.flatten() {
            let Ok(raw) = fs::read(container.path().join("state.json")) else {
                continue;
            };
            let Ok(state) = serde_json::from_slice::<serde_json::Value>(&raw) else {
                continue;
            };
            let pid = state
                .get("init_process_pid")
                .and_then(serde_json::Value::as_i64)
                .and_then(|pid| i32::try_from(pid).ok());
            let start = state
                .get("init_process_start")
                .and_then(serde_json::Value::as_u64);
            if let (Some(pid), Some(start)) = (pid, start) {
                if table.get(&pid).is_some_and(|p| p.start_time == start) {
                    pids.insert(pid);
                }
            }
        }
    }
    pids
}

fn with_descendants(roots: BTreeSet<i32>, table: &BTreeMap<i32, ProcessInfo>) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (pid, info) in table {
        children.entry(info.ppid).or_default().push(*pid);
    }
    let mut all = roots.clone();
    let mut queue: Vec<i32> = roots.into_iter().collect();
    while let Some(pid) = queue.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if all.insert(*child) {
                queue.push(*child);
            }
        }
    }
    all
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo paths.
fn unescape_mountinfo(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes.get(i) == Some(&b'\\'))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.extend(bytes.get(i).copied());
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// CPU time a process has run so far, all its threads (from each one's
/// `/proc/PID/task/TID/schedstat`, in nanoseconds; a thread that ended is not counted,
/// nor a process).
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return std::time::Duration::ZERO;
    };
    let nanos: u64 = tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum();
    std::time::Duration::from_nanos(nanos)
}
