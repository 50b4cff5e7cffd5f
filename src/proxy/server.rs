//! The listening socket, the accept loop, and the server's lifecycle: readiness,
//! configuration reload on SIGHUP, and draining on SIGTERM.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, CriConfig};
use crate::decision::{Caller, Decide};
use crate::proxy::relay;
use crate::proxy::service::{Proxy, State};
use crate::proxy::upstream::Upstream;
use crate::registry::RegistryConfig;
use crate::systemd;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the socket directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("another process is serving on {path}")]
    InUse { path: PathBuf },
    #[error("cannot bind {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set owner or mode of {path}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("group {0:?} (cri.socket_group) does not exist")]
    UnknownGroup(String),
    #[error(transparent)]
    Activation(#[from] systemd::ActivationError),
    #[error("cannot install signal handlers")]
    Signals(#[source] io::Error),
    #[error("cannot set up the decision policy")]
    Decide(#[source] BuildError),
}

/// Where the listening socket came from; decides whether crigate removes it at exit.
enum Origin {
    /// crigate bound it, and removes it when it stops.
    Bound(PathBuf),
    /// systemd passed it, and keeps it so kubelet's socket outlives restarts.
    Inherited,
}

/// A bound or inherited listener, ready to serve.
pub struct Listener {
    listener: UnixListener,
    origin: Origin,
}

// === impl Listener ===

impl Listener {
    /// Takes the socket systemd passed if there is one, else binds `cri.listen`.
    ///
    /// # Errors
    ///
    /// See [`Error`]; a socket another live process serves is never taken over.
    pub fn open(cri: &CriConfig) -> Result<Self, Error> {
        if let Some(listener) = systemd::inherited_listener()? {
            listener
                .set_nonblocking(true)
                .map_err(|source| Error::Bind {
                    path: cri.listen.clone(),
                    source,
                })?;
            let listener = UnixListener::from_std(listener).map_err(|source| Error::Bind {
                path: cri.listen.clone(),
                source,
            })?;
            tracing::info!(listen = ?listener.local_addr().ok(), "using the socket passed by systemd");
            return Ok(Self {
                listener,
                origin: Origin::Inherited,
            });
        }
        let listener = bind(cri)?;
        Ok(Self {
            listener,
            origin: Origin::Bound(cri.listen.clone()),
        })
    }
}

fn bind(cri: &CriConfig) -> Result<UnixListener, Error> {
    let path = &cri.listen;
    let created = path.parent().filter(|p| !p.exists());
    if let Some(parent) = created {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)
            .map_err(|source| Error::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::InUse { path: path.clone() });
            }
            // A socket nobody serves: left behind by a crashed crigate.
            std::fs::remove_file(path).map_err(|source| Error::Bind {
                path: path.clone(),
                source,
            })?;
        }
        Ok(_) => return Err(Error::NotASocket { path: path.clone() }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Bind {
                path: path.clone(),
                source,
            })
        }
    }
    // No client reaches the socket before it has its group and mode: it is bound, not
    // yet listening (a connect is refused), under a name of its own beside `path`, set
    // up there, linked to `path` (link(2) never replaces: a socket another crigate
    // placed meanwhile stays, and this one is refused as in use), and only then listens.
    let staging = path.with_file_name(format!(".{:x}", std::process::id()));
    let bind_error = |source| Error::Bind {
        path: staging.clone(),
        source,
    };
    // Left by a crigate of the same pid that died here (a restart in a new PID namespace).
    let _ = std::fs::remove_file(&staging);
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| bind_error(e.into()))?;
    let address = nix::sys::socket::UnixAddr::new(&staging).map_err(|e| bind_error(e.into()))?;
    nix::sys::socket::bind(socket.as_raw_fd(), &address).map_err(|e| bind_error(e.into()))?;
    let placed = set_up_socket(cri, &staging, created).and_then(|()| {
        std::fs::hard_link(&staging, path).map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => Error::InUse { path: path.clone() },
            _ => Error::Bind {
                path: path.clone(),
                source,
            },
        })
    });
    let _ = std::fs::remove_file(&staging);
    placed?;
    let listening =
        nix::sys::socket::listen(&socket, nix::sys::socket::Backlog::MAXCONN).map_err(|e| {
            Error::Bind {
                path: path.clone(),
                source: e.into(),
            }
        });
    if let Err(error) = listening {
        let _ = std::fs::remove_file(path);
        return Err(error);
    }
    UnixListener::from_std(std::os::unix::net::UnixListener::from(socket)).map_err(|source| {
        Error::Bind {
            path: path.clone(),
            source,
        }
    })
}

/// Gives the socket at `path` its configured group (and a directory crigate `created`
/// for it the same) and mode.
fn set_up_socket(cri: &CriConfig, path: &Path, created: Option<&Path>) -> Result<(), Error> {
    let permissions = |source| Error::Permissions {
        path: cri.listen.clone(),
        source,
    };
    if let Some(group) = &cri.socket_group {
        let gid = nix::unistd::Group::from_name(group)
            .map_err(|e| permissions(e.into()))?
            .ok_or_else(|| Error::UnknownGroup(group.clone()))?
            .gid;
        std::os::unix::fs::chown(path, None, Some(gid.as_raw())).map_err(permissions)?;
        // A directory crigate made for the socket lets the group through to it, as
        // crigate.socket's DirectoryMode does (the umask may have narrowed it).
        if let Some(parent) = created {
            let directory = |source| Error::Permissions {
                path: parent.to_owned(),
                source,
            };
            std::os::unix::fs::chown(parent, None, Some(gid.as_raw())).map_err(directory)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o750))
                .map_err(directory)?;
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(cri.socket_mode))
        .map_err(permissions)
}

/// How often the configuration file is checked for changes.
const CONFIG_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How many more polls a refused reload is tried again at, with no further change: a
/// file the configuration names (a key, a trust policy) may have been caught mid-write.
const RELOAD_RETRIES: u32 = 3;

/// What identifies a version of the configuration file (`None` while it cannot be read,
/// e.g. mid-replacement by an editor or ConfigMap): the file it is (device and inode, so
/// a file renamed over it counts), when its content and its inode last changed, and its
/// size. The inode's change time moves with every write, even one that puts back the
/// old modification time (`cp -p`, `rsync -t`, `tar`).
pub fn file_stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some([
        meta.dev(),
        meta.ino(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
        meta.ctime() as u64,
        meta.ctime_nsec() as u64,
        meta.len(),
    ])
}

/// What identifies a version of the configuration file; see [`file_stamp`].
pub type FileStamp = Option<[u64; 7]>;

/// Builds the decision seam from a configuration; called at start and on every reload.
pub type BuildDecide = dyn Fn(&Config) -> Result<Arc<dyn Decide>, BuildError> + Send + Sync;

/// Why the decision seam could not be built from a configuration.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// Reloads of the configuration file, for the node's metrics: a refused one is otherwise
/// only logged, and `systemctl reload` returns before it is read.
#[derive(Debug)]
pub struct ReloadStats {
    applied: AtomicU64,
    refused: AtomicU64,
    /// Whether the last reload was applied; true before any.
    last_successful: AtomicBool,
    /// When the running configuration was loaded (at start, or by the last reload
    /// applied), in seconds since the epoch.
    loaded_at: AtomicU64,
}

// === impl ReloadStats ===

impl Default for ReloadStats {
    fn default() -> Self {
        Self {
            applied: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_successful: AtomicBool::new(true),
            loaded_at: AtomicU64::new(now_secs()),
        }
    }
}

impl ReloadStats {
    fn applied(&self) {
        self.applied.fetch_add(1, Ordering::Relaxed);
        self.last_successful.store(true, Ordering::Relaxed);
        self.loaded_at.store(now_secs(), Ordering::Relaxed);
    }

    fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.last_successful.store(false, Ordering::Relaxed);
    }

    /// Reloads applied and refused so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.applied.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// Whether the last reload was applied (true before any).
    pub fn last_successful(&self) -> bool {
        self.last_successful.load(Ordering::Relaxed)
    }

    /// When the running configuration was loaded, in seconds since the epoch.
    pub fn loaded_at(&self) -> u64 {
        self.loaded_at.load(Ordering::Relaxed)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Serves CRI on `listener` until SIGTERM or SIGINT, then drains.
///
/// `config_path` is re-read on SIGHUP; a configuration that does not validate is
/// refused with a logged reason and the running one stays. Each reload is counted in
/// `reloads`.
///
/// # Errors
///
/// Signal handlers cannot be installed.
pub async fn serve(
    listener: Listener,
    config: Config,
    config_path: PathBuf,
    config_seen: FileStamp,
    build: Box<BuildDecide>,
    reloads: Arc<ReloadStats>,
) -> Result<(), Error> {
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(Error::Signals)?;

    let startup = config.cri.clone();
    let mut registry = config.registry.clone();
    // Stamped before the files are read, so that an edit while they are read is noticed.
    let mut hosts_seen = registry.hosts_stamp();
    let decide = match build(&config) {
        Ok(decide) => decide,
        Err(error) => {
            if let Origin::Bound(path) = &listener.origin {
                let _ = std::fs::remove_file(path);
            }
            return Err(Error::Decide(error));
        }
    };
    let proxy = Arc::new(Proxy::new(config.cri, decide));
    let build: Arc<BuildDecide> = Arc::from(build);
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    tracing::info!(
        listen = %startup.listen.display(),
        upstream = %startup.upstream.display(),
        version = crate::VERSION,
        "serving CRI"
    );
    systemd::notify_ready();

    // The configuration file is also watched, and the registry hosts directory it names
    // (containerd reads that at each pull): a change is applied like a SIGHUP.
    let mut watch = tokio::time::interval(CONFIG_POLL_INTERVAL);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The stamp the caller took before it read the file: an edit since is noticed.
    let mut seen = config_seen;
    let mut retries = 0;
    // A reload reads its files on the blocking pool while calls go on being accepted and
    // relayed; one asked for meanwhile follows it.
    let mut loading: Option<(Reload, tokio::task::JoinHandle<Loaded>)> = None;
    let mut next: Option<Reload> = None;
    loop {
        if loading.is_none() {
            if let Some(why) = next.take() {
                loading = Some((why, load(&config_path, &build)));
            }
        }
        tokio::select! {
            _ = watch.tick() => {
                let Some((now, hosts_now)) = stamps(&config_path, &registry).await else {
                    continue;
                };
                if now != seen || hosts_now != hosts_seen {
                    if now != seen {
                        tracing::info!(path = %config_path.display(), "configuration file changed");
                    } else {
                        tracing::info!(hosts_dir = ?registry.hosts_dir, containerd_config = ?registry.containerd_config, "registry hosts directory changed");
                    }
                    seen = now;
                    hosts_seen = hosts_now;
                    next = Some(Reload::Changed);
                } else if retries > 0 && loading.is_none() && next.is_none() {
                    retries -= 1;
                    tracing::info!(path = %config_path.display(), "trying the refused configuration again");
                    next = Some(Reload::Retry);
                }
            }
            loaded = async { (&mut loading.as_mut()?.1).await.ok() }, if loading.is_some() => {
                let why = loading.take().map(|(why, _)| why);
                let loaded = loaded.unwrap_or_else(|| Err("the reload task failed".to_owned()));
                let applied = apply(&proxy, &config_path, &startup, loaded, &mut registry, &mut hosts_seen);
                if applied {
                    reloads.applied();
                    retries = 0;
                } else {
                    reloads.refused();
                    if why == Some(Reload::Changed) {
                        retries = RELOAD_RETRIES;
                    }
                }
            }
            accepted = listener.listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Some(caller) = caller(&stream) else { continue };
                    tracker.spawn(relay::serve(stream, caller, proxy.clone(), shutdown.clone()));
                }
                Err(error) => {
                    // Out of descriptors or memory: pause rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = hangup.recv() => {
                if let Some(stamped) = stamps(&config_path, &registry).await {
                    (seen, hosts_seen) = stamped;
                }
                retries = 0;
                next = Some(Reload::Signal);
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }

    systemd::notify_stopping();
    let drain = proxy.state().cri.drain_timeout;
    tracing::info!(drain_timeout = ?drain, "stopping: draining in-flight calls");
    drop(listener.listener);
    if let Origin::Bound(path) = &listener.origin {
        // Remove the socket first, so nothing new connects while calls drain.
        if let Err(error) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), %error, "cannot remove the socket");
        }
    }
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_ok() {
        tracing::info!("stopped: all calls finished");
    } else {
        tracing::warn!(drain_timeout = ?drain, calls = tracker.len(), "stopped: drain timeout passed with calls still open");
    }
    Ok(())
}

/// The peer's credentials. A connection whose peer cannot be identified is closed: every
/// decision records who asked.
fn caller(stream: &UnixStream) -> Option<Caller> {
    match stream.peer_cred() {
        Ok(cred) => Some(Caller {
            pid: cred.pid(),
            uid: cred.uid(),
            gid: cred.gid(),
        }),
        Err(error) => {
            tracing::warn!(%error, "cannot read peer credentials; closing the connection");
            None
        }
    }
}

/// What a reload was started for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reload {
    /// The configuration file or the registry hosts files changed.
    Changed,
    /// A refused configuration tried again.
    Retry,
    /// SIGHUP.
    Signal,
}

/// A configuration read anew with its decision seam, or why it was refused.
/// The stamps of the configuration file at `path` and of the registry hosts files
/// `registry` names, taken on the blocking pool: a hosts directory of many registries
/// is many `stat`s, and containerd's config is parsed to find it, every poll. `None`
/// only when the runtime shuts down.
async fn stamps(
    path: &Path,
    registry: &RegistryConfig,
) -> Option<(FileStamp, Option<crate::registry::HostsStamp>)> {
    let (path, registry) = (path.to_owned(), registry.clone());
    tokio::task::spawn_blocking(move || (file_stamp(&path), registry.hosts_stamp()))
        .await
        .ok()
}

/// A configuration read anew, the stamp of the registry hosts files it names (taken
/// before they were read), and its seam.
type Loaded = Result<(Config, Option<crate::registry::HostsStamp>, Arc<dyn Decide>), String>;

/// Reads the configuration file, stamps the hosts files it names and builds its seam on
/// the blocking pool: the file and all it names (keys, trust stores, CRLs, the verdict
/// cache, a hosts directory of many registries) can take a while to read, and the
/// daemon's one thread goes on relaying calls meanwhile.
fn load(path: &Path, build: &Arc<BuildDecide>) -> tokio::task::JoinHandle<Loaded> {
    let (path, build) = (path.to_owned(), build.clone());
    tokio::task::spawn_blocking(move || {
        let config = Config::load(&path).map_err(|e| e.to_string())?;
        // Before the build reads them, so that an edit while it does is noticed.
        let hosts = config.registry.hosts_stamp();
        let decide = build(&config).map_err(|e| format!("{e:#}"))?;
        Ok((config, hosts, decide))
    })
}

/// Applies a configuration read anew, or keeps the running one if it did not validate
/// (`false`). `registry` becomes the registry settings applied; `hosts_seen` becomes the
/// stamp the load took when they moved the registry to other hosts files.
fn apply(
    proxy: &Proxy,
    path: &Path,
    startup: &CriConfig,
    loaded: Loaded,
    registry: &mut RegistryConfig,
    hosts_seen: &mut Option<crate::registry::HostsStamp>,
) -> bool {
    let (config, hosts, decide) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "configuration reload refused; keeping the running configuration");
            return false;
        }
    };
    if config.registry.hosts_dir != registry.hosts_dir
        || config.registry.containerd_config != registry.containerd_config
    {
        *hosts_seen = hosts;
    }
    *registry = config.registry;
    let cri = config.cri;
    for (key, changed) in [
        ("cri.listen", cri.listen != startup.listen),
        ("cri.socket_mode", cri.socket_mode != startup.socket_mode),
        ("cri.socket_group", cri.socket_group != startup.socket_group),
    ] {
        if changed {
            tracing::warn!(
                key,
                "changed in the configuration file; takes effect after a restart"
            );
        }
    }
    let running = proxy.state();
    let moved = cri.upstream != running.cri.upstream;
    let upstream = if !moved && cri.connect_timeout == running.cri.connect_timeout {
        running.upstream.clone()
    } else {
        Arc::new(Upstream::new(cri.upstream.clone(), cri.connect_timeout))
    };
    let runtime_moved = if moved {
        CancellationToken::new()
    } else {
        running.runtime_moved.clone()
    };
    let socket = cri.upstream.clone();
    proxy.replace(State {
        cri,
        upstream,
        decide,
        runtime_moved,
    });
    if moved {
        // Open client connections (kubelet keeps one for as long as it runs) are sent
        // GOAWAY: their calls in flight finish on the old socket, and the clients
        // reconnect to crigate, which relays them to the new one.
        tracing::info!(
            from = %running.cri.upstream.display(),
            to = %socket.display(),
            "runtime socket changed; moving open client connections to it"
        );
        running.runtime_moved.cancel();
    }
    // The state replaced (its verification engine: trust material, fetched CRLs, the
    // verdict cache, up to hundreds of MiB) is freed on the blocking pool, not on the
    // thread that relays calls. One a call still holds is freed where that call ends.
    drop(tokio::task::spawn_blocking(move || drop(running)));
    systemd::notify_reloaded();
    tracing::info!(path = %path.display(), "configuration reloaded");
    true
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    use k8s_cri::v1::VersionRequest;

    use super::*;
    use crate::decision::AllowAll;

    /// Writes the config of a crigate in `dir` (listening on `crigate.sock`, relaying to
    /// a runtime that never listens), `extra` after its `[cri]` table, and serves it
    /// with `build` on this runtime. The config's path and text, and the server.
    fn serve_in(
        dir: &Path,
        extra: &str,
        build: Box<BuildDecide>,
    ) -> (PathBuf, String, tokio::task::JoinHandle<Result<(), Error>>) {
        let path = dir.join("config.toml");
        let text = format!(
            "[cri]\nlisten = \"{}\"\nupstream = \"{}\"\n{extra}",
            dir.join("crigate.sock").display(),
            dir.join("runtime.sock").display()
        );
        std::fs::write(&path, &text).unwrap();
        let seen = file_stamp(&path);
        let config = Config::load(&path).unwrap();
        let listener = Listener::open(&config.cri).unwrap();
        let server = tokio::spawn(serve(
            listener,
            config,
            path.clone(),
            seen,
            build,
            Arc::default(),
        ));
        (path, text, server)
    }

    // The build stands in for a reload reading large files; a plain blocking sleep is
    // what it would cost the thread it runs on.
    #[allow(clippy::disallowed_methods)]
    #[tokio::test]
    async fn calls_are_answered_while_a_reload_reads_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("crigate.sock");
        let builds = Arc::new(AtomicUsize::new(0));
        let (reloading, reloaded) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let build: Box<BuildDecide> = Box::new({
            let (builds, reloading, reloaded) =
                (builds.clone(), reloading.clone(), reloaded.clone());
            move |_| {
                if builds.fetch_add(1, Ordering::SeqCst) > 0 {
                    reloading.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_secs(2));
                    reloaded.store(true, Ordering::SeqCst);
                }
                Ok(Arc::new(AllowAll) as Arc<dyn Decide>)
            }
        });
        let (path, text, server) = serve_in(dir.path(), "", build);
        std::fs::write(&path, format!("{text}# changed\n")).unwrap();
        let waited = std::time::Instant::now();
        while !reloading.load(Ordering::SeqCst) {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "no reload began"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // No runtime listens: crigate answers itself, reload or not.
        let channel = crate::runtime::unix_channel(
            tonic::transport::Endpoint::from_static("http://localhost"),
            socket,
        );
        let status = RuntimeServiceClient::new(channel)
            .version(VersionRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            !reloaded.load(Ordering::SeqCst),
            "answered only once the reload had read its files"
        );
        server.abort();
    }

    /// A seam that records the thread it is dropped on.
    struct DroppedOn(Arc<std::sync::Mutex<Option<std::thread::ThreadId>>>);

    impl Decide for DroppedOn {
        fn decide<'a>(
            &'a self,
            request: &'a crate::decision::RequestContext,
        ) -> crate::decision::BoxFuture<'a, crate::decision::Decided> {
            AllowAll.decide(request)
        }
    }

    impl Drop for DroppedOn {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(std::thread::current().id());
        }
    }

    /// The seam a reload replaces is freed off the thread that relays calls: a verifier
    /// holds trust material, CRLs and a verdict cache that take a while to free.
    #[tokio::test(flavor = "current_thread")]
    async fn the_replaced_seam_is_freed_off_the_relaying_thread() {
        let dir = tempfile::tempdir().unwrap();
        let dropped_on = Arc::new(std::sync::Mutex::new(None));
        let builds = Arc::new(AtomicUsize::new(0));
        let build: Box<BuildDecide> = Box::new({
            let (builds, dropped_on) = (builds.clone(), dropped_on.clone());
            move |_| {
                Ok(if builds.fetch_add(1, Ordering::SeqCst) == 0 {
                    Arc::new(DroppedOn(dropped_on.clone())) as Arc<dyn Decide>
                } else {
                    Arc::new(AllowAll) as Arc<dyn Decide>
                })
            }
        });
        let (path, text, server) = serve_in(dir.path(), "", build);
        std::fs::write(&path, format!("{text}# changed\n")).unwrap();
        let waited = std::time::Instant::now();
        let freed_on = loop {
            if let Some(thread) = *dropped_on.lock().unwrap() {
                break thread;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "the replaced seam was not freed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_ne!(freed_on, std::thread::current().id());
        server.abort();
    }

    /// A hosts directory of 20,000 registries in `dir`, and how long stamping it takes.
    fn many_registries(dir: &Path) -> (PathBuf, Duration) {
        let hosts = dir.join("certs.d");
        for n in 0..20_000 {
            let host = hosts.join(format!("registry-{n}.example:5000"));
            std::fs::create_dir_all(&host).unwrap();
            std::fs::write(host.join("hosts.toml"), "").unwrap();
        }
        let registry = RegistryConfig {
            hosts_dir: Some(hosts.display().to_string()),
            ..RegistryConfig::default()
        };
        let started = std::time::Instant::now();
        let _ = registry.hosts_stamp();
        (hosts, started.elapsed())
    }

    /// The configuration and registry hosts files are stamped off the thread that
    /// relays calls: a task on that thread is never held for long by the polls, even
    /// with a hosts directory of many registries to `stat`.
    #[tokio::test(flavor = "current_thread")]
    async fn polling_the_files_leaves_the_relaying_thread_free() {
        let dir = tempfile::tempdir().unwrap();
        let (hosts, one_stamp) = many_registries(dir.path());
        let build: Box<BuildDecide> = Box::new(|_| Ok(Arc::new(AllowAll) as Arc<dyn Decide>));
        let hosts_dir = format!("[registry]\nhosts_dir = \"{}\"\n", hosts.display());
        let (_, _, server) = serve_in(dir.path(), &hosts_dir, build);
        // Past the start (which stamps the files before it serves), two polls.
        tokio::time::sleep(one_stamp + Duration::from_millis(500)).await;
        let mut longest = Duration::ZERO;
        let until =
            std::time::Instant::now() + 2 * CONFIG_POLL_INTERVAL + Duration::from_millis(500);
        while std::time::Instant::now() < until {
            let started = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(1)).await;
            longest = longest.max(started.elapsed());
        }
        server.abort();
        assert!(
            longest < one_stamp / 2,
            "the thread was held for {longest:?}; one stamp takes {one_stamp:?}"
        );
    }

    #[tokio::test]
    async fn a_reload_to_another_hosts_directory_stamps_it_off_the_relaying_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (hosts, one_stamp) = many_registries(dir.path());
        let builds = Arc::new(AtomicUsize::new(0));
        let build: Box<BuildDecide> = Box::new({
            let builds = builds.clone();
            move |_| {
                builds.fetch_add(1, Ordering::SeqCst);
                Ok(Arc::new(AllowAll) as Arc<dyn Decide>)
            }
        });
        let (path, text, server) = serve_in(dir.path(), "", build);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The running configuration names no hosts directory; the new one names the large
        // one, which the loop then polls (off the thread) and the reload stamps.
        std::fs::write(
            &path,
            format!("{text}[registry]\nhosts_dir = \"{}\"\n", hosts.display()),
        )
        .unwrap();
        let mut longest = Duration::ZERO;
        let until = std::time::Instant::now()
            + 2 * CONFIG_POLL_INTERVAL
            + 3 * one_stamp
            + Duration::from_millis(500);
        while std::time::Instant::now() < until {
            let started = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(1)).await;
            longest = longest.max(started.elapsed());
        }
        server.abort();
        assert_eq!(builds.load(Ordering::SeqCst), 2, "the start and the reload");
        assert!(
            longest < one_stamp / 2,
            "the thread was held for {longest:?}; one stamp takes {one_stamp:?}"
        );
    }

    // A plain test thread, no runtime to block.
    #[allow(clippy::disallowed_methods)]
    #[test]
    fn a_rewrite_that_keeps_the_size_and_the_modification_time_is_a_new_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "keys = [\"/etc/crigate/a.pub\"]\n").unwrap();
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        let first = file_stamp(&path);
        assert!(first.is_some());
        assert_eq!(file_stamp(&path), first, "unchanged");
        // As `cp -p` or `rsync -t` write it: other bytes, the same length and mtime, past
        // the clock tick the kernel stamps inode changes with.
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(&path, "keys = [\"/etc/crigate/b.pub\"]\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(written)
            .unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            written
        );
        assert_ne!(file_stamp(&path), first);
        // Another file renamed over it.
        let stamp = file_stamp(&path);
        let other = dir.path().join("other");
        std::fs::copy(&path, &other).unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_ne!(file_stamp(&path), stamp);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file_stamp(&path), None);
    }
}
