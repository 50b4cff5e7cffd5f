//! Diagnostics through `tracing`: to journald when its socket exists, else to stderr.
//!
//! These are diagnostics for operators, not audit records: audit records are written by
//! a writer whose failures crigate sees, never through a subscriber that may drop them.
//! The filter comes from `RUST_LOG` (default `info`).
//!
//! No diagnostic waits on its destination. `crigate serve` relays every CRI call on one
//! thread, and journald, which receives diagnostics both ways under systemd (its native
//! socket; the stream behind stderr), can stall: while it is stopped or restarted, or
//! behind a slow disk, its queue fills (`net.unix.max_dgram_qlen` datagrams, 10 by
//! default) and a blocking send would hold that thread, and with it kubelet's calls,
//! until journald reads again. A diagnostic that finds no room is dropped instead, as
//! journald drops what passes its own rate limit. Audit records never take this path.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// An error with its causes, `a: b: c`: libraries such as hyper put the reason (a
/// refused connection, a TLS failure) in a cause, not in the outermost message.
pub struct ErrorChain<'a>(pub &'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Where the journal's native protocol socket lives.
const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";

/// How long crigate waits at start for journald to have room on its socket before it
/// writes diagnostics to stderr instead.
const JOURNALD_START_WAIT_MS: u16 = 2000;

/// Whether the diagnostics [`init`] set up reach the journal: sent to journald, or
/// written to a stderr that is the journal's stream. Unset until [`init`] has run.
static IN_JOURNAL: OnceLock<bool> = OnceLock::new();

/// The journal socket of the journal diagnostics reach, if they reach one: journald's
/// own socket, whether diagnostics are sent there or written to a stderr systemd
/// connected to journald (`StandardError=journal`, the default for a service).
pub fn journal_socket() -> Option<&'static Path> {
    (IN_JOURNAL.get() == Some(&true)).then(|| Path::new(JOURNALD_SOCKET))
}

/// How diagnostics are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// Structured entries sent to journald.
    Journald,
}

/// Most lines held for stderr while it cannot take them; past that, lines are dropped.
const STDERR_BUFFERED_LINES: usize = 4096;

/// Keeps the thread that writes diagnostics to stderr; dropping it writes out what is
/// held, so keep it until the process has nothing more to log.
#[must_use = "diagnostics held for stderr are written out when this is dropped"]
pub struct Guard {
    _writer: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global subscriber. With no format, journald if its socket exists, else
/// text on stderr. journald, asked for or chosen, whose socket has no room within
/// [`JOURNALD_START_WAIT_MS`] (journald stalled) gives way to text on stderr, with a
/// warning.
///
/// # Errors
///
/// journald was asked for and cannot be reached, or a subscriber is already installed.
pub fn init(format: Option<LogFormat>) -> anyhow::Result<Guard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let mut format = format.unwrap_or(if Path::new(JOURNALD_SOCKET).exists() {
        LogFormat::Journald
    } else {
        LogFormat::Text
    });
    let stalled = format == LogFormat::Journald
        && !has_room(Path::new(JOURNALD_SOCKET), JOURNALD_START_WAIT_MS);
    if stalled {
        format = LogFormat::Text;
    }
    let registry = tracing_subscriber::registry().with(filter);
    let writer = match format {
        LogFormat::Text => {
            let (stderr, writer) = stderr_writer();
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(std::io::stderr().is_terminal())
                        .with_writer(stderr),
                )
                .try_init()?;
            writer
        }
        LogFormat::Json => {
            let (stderr, writer) = stderr_writer();
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .flatten_event(true)
                        .with_current_span(true)
                        .with_writer(stderr),
                )
                .try_init()?;
            writer
        }
        LogFormat::Journald => {
            registry
                .with(journald_layer()?.with_syslog_identifier("crigate".to_owned()))
                .try_init()?;
            None
        }
    };
    let _ = IN_JOURNAL.set(format == LogFormat::Journald || stderr_is_journal_stream());
    if stalled {
        tracing::warn!(
            socket = JOURNALD_SOCKET,
            waited_ms = JOURNALD_START_WAIT_MS,
            "journald is not reading its socket: diagnostics go to stderr until crigate restarts"
        );
    }
    Ok(Guard { _writer: writer })
}

/// Whether journald's native socket, `socket`, has room for a datagram, waiting up to `wait_ms`
/// for it: a stalled journald (stopped, or behind a slow disk) whose queue is full would
/// hold tracing-journald's first send, which is blocking, and with it the start. A
/// connected Unix datagram socket polls writable only while its peer's queue has room
/// (Linux `unix_dgram_poll`). `true` too when the socket cannot be reached at all, so
/// that making the layer reports why. A queue that fills between this check and the
/// layer's first send would still hold that send until journald reads.
fn has_room(socket: &Path, wait_ms: u16) -> bool {
    use nix::poll::{poll, PollFd, PollFlags};
    use std::os::fd::AsFd;

    let Ok(probe) = std::os::unix::net::UnixDatagram::unbound() else {
        return true;
    };
    if probe.connect(socket).is_err() {
        return true;
    }
    let mut fds = [PollFd::new(probe.as_fd(), PollFlags::POLLOUT)];
    // Writable, or an error the layer will meet and report; only a wait that timed out
    // means a queue with no room.
    !matches!(poll(&mut fds, wait_ms), Ok(0))
}

/// Whether stderr is the stream systemd connected to the journal. systemd names that
/// stream's device and inode in `$JOURNAL_STREAM` ("device:inode", in decimal), and a
/// process is to compare them with its stderr's own, which a redirection since may
/// have changed (systemd.exec(5), "Environment Variables in Spawned Processes").
fn stderr_is_journal_stream() -> bool {
    use std::os::fd::AsFd;
    std::env::var("JOURNAL_STREAM")
        .is_ok_and(|named| names_stream(&named, std::io::stderr().as_fd()))
}

/// Whether `named`, a `$JOURNAL_STREAM` value, names the file `fd` is open on.
fn names_stream(named: &str, fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::libc::{dev_t, ino_t};
    let Some((device, inode)) = named.split_once(':') else {
        return false;
    };
    let (Ok(device), Ok(inode)) = (device.parse::<dev_t>(), inode.parse::<ino_t>()) else {
        return false;
    };
    nix::sys::stat::fstat(fd).is_ok_and(|stat| stat.st_dev == device && stat.st_ino == inode)
}

/// Where text and JSON diagnostics are written: stderr itself where a write to it waits
/// for nobody (a file, a terminal), or else (a pipe, a socket: the stream to journald
/// under systemd, a container runtime's log pipe) a writer thread that holds up to
/// [`STDERR_BUFFERED_LINES`] lines while the reader does not read, then drops them.
fn stderr_writer() -> (
    tracing_subscriber::fmt::writer::BoxMakeWriter,
    Option<tracing_appender::non_blocking::WorkerGuard>,
) {
    use nix::sys::stat::{fstat, SFlag};
    use tracing_subscriber::fmt::writer::BoxMakeWriter;

    let read_by_another = fstat(std::io::stderr()).is_ok_and(|stat| {
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK
    });
    if !read_by_another {
        return (BoxMakeWriter::new(std::io::stderr), None);
    }
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(STDERR_BUFFERED_LINES)
        .thread_name("crigate-log")
        .finish(std::io::stderr());
    (BoxMakeWriter::new(writer), Some(guard))
}

/// tracing-journald's layer, with its socket made non-blocking.
///
/// The layer sends each event from the thread that emits it, through a socket of its own
/// that it offers no way to configure, and it discards send errors. Made here before any
/// other thread runs, that socket is the one socket descriptor the process gains while
/// the layer is made; it is checked to be a Unix datagram socket and set `O_NONBLOCK`, so
/// a send journald has no room for fails at once (and the layer drops the event) instead
/// of waiting. The one send that may wait is the layer's first, an empty datagram that
/// checks journald is there, at start, before crigate serves anything; [`init`] makes the
/// layer only once [`has_room`] found room for it.
///
/// # Errors
///
/// journald cannot be reached, or the layer's socket is not found as described (a
/// tracing-journald that opens its socket otherwise): crigate does not start with
/// diagnostics that could stall it.
fn journald_layer() -> anyhow::Result<tracing_journald::Layer> {
    let before = open_sockets()?;
    let layer = tracing_journald::layer()?;
    let opened: Vec<_> = open_sockets()?.difference(&before).copied().collect();
    let [(fd, _)] = opened[..] else {
        anyhow::bail!(
            "cannot find tracing-journald's socket to make it non-blocking: {} sockets were opened with it",
            opened.len()
        );
    };
    // SAFETY: `fd` was listed open just now and belongs to `layer`, which is alive
    // and owns it until the end of this function at least; no other thread exists yet
    // that could close it. It is borrowed only for the calls below.
    #[allow(unsafe_code)]
    let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    make_nonblocking_datagram(socket)?;
    Ok(layer)
}

/// Sets `O_NONBLOCK` on `socket`, which must be a Unix datagram socket.
fn make_nonblocking_datagram(socket: std::os::fd::BorrowedFd<'_>) -> anyhow::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::sys::socket::{getsockopt, sockopt, SockType, UnixAddr};
    use std::os::fd::AsRawFd;

    let kind = getsockopt(&socket, sockopt::SockType)?;
    let address = nix::sys::socket::getsockname::<UnixAddr>(socket.as_raw_fd());
    if kind != SockType::Datagram || address.is_err() {
        anyhow::bail!("tracing-journald's socket is not a Unix datagram socket");
    }
    let flags = OFlag::from_bits_retain(fcntl(socket, FcntlArg::F_GETFL)?);
    fcntl(socket, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The process's open socket descriptors, each with the socket's inode (so a number
/// closed and reused for another socket counts as new).
fn open_sockets() -> std::io::Result<HashSet<(RawFd, u64)>> {
    let mut sockets = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A descriptor closed since it was listed has no link.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let inode = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok());
        if let Some(inode) = inode {
            sockets.insert((fd, inode));
        }
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::{has_room, names_stream};

    #[test]
    fn a_datagram_socket_whose_queue_is_full_has_no_room_until_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let journald = UnixDatagram::bind(&path).unwrap();
        assert!(has_room(&path, 0), "an empty queue");
        // A datagram counts against its sender's buffer until it is read, so senders are
        // added until a new one has no room at once (the queue holds
        // `net.unix.max_dgram_qlen`, 10 to 512 as hosts set it).
        let mut senders = Vec::new();
        let mut queued = 0;
        loop {
            let sender = UnixDatagram::unbound().unwrap();
            sender.set_nonblocking(true).unwrap();
            let before = queued;
            while sender.send_to(b"MESSAGE=x\n", &path).is_ok() {
                queued += 1;
            }
            if queued == before || senders.len() > 10_000 {
                break;
            }
            senders.push(sender);
        }
        assert!(queued > 0);
        assert!(!has_room(&path, 50), "{queued} datagrams queued");
        let mut buf = [0; 64];
        journald.recv(&mut buf).unwrap();
        assert!(has_room(&path, 50), "one datagram read");
    }

    #[test]
    fn a_socket_that_cannot_be_reached_is_left_to_the_layer_to_report() {
        let dir = tempfile::tempdir().unwrap();
        assert!(has_room(&dir.path().join("missing"), 50));
    }

    #[test]
    fn journal_stream_names_the_one_stream_with_its_device_and_inode() {
        use std::os::fd::AsFd;
        // The stream systemd hands a service is one end of a Unix stream socket.
        let (stream, other) = std::os::unix::net::UnixStream::pair().unwrap();
        let stat = nix::sys::stat::fstat(stream.as_fd()).unwrap();
        let named = format!("{}:{}", stat.st_dev, stat.st_ino);
        assert!(names_stream(&named, stream.as_fd()));
        assert!(
            !names_stream(&named, other.as_fd()),
            "the socket's other end"
        );
        let file = tempfile::tempfile().unwrap();
        assert!(
            !names_stream(&named, file.as_fd()),
            "a stderr redirected to a file"
        );
        for malformed in [
            "",
            ":",
            &stat.st_ino.to_string(),
            &format!("{}:", stat.st_dev),
            &format!(":{}", stat.st_ino),
            &format!("{}:{}:0", stat.st_dev, stat.st_ino),
            &format!("{} :{}", stat.st_dev, stat.st_ino),
            &format!("-{}:{}", stat.st_dev, stat.st_ino),
        ] {
            assert!(!names_stream(malformed, stream.as_fd()), "{malformed:?}");
        }
    }
}
