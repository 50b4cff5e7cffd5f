//! Audit records to journald over its native protocol.
//!
//! The protocol (systemd, "Native Journal Protocol"): one datagram per entry, sent to
//! the unix socket `/run/systemd/journal/socket`; each field is `NAME=value\n`, or, when
//! the value contains a newline, `NAME\n`, the value's length as a little-endian u64,
//! the value and `\n`. Field names are uppercase letters, digits and `_`, not starting
//! with `_` (those are journald's own, trusted fields).
//!
//! A failed send is an error the [`super::Auditor`] sees and counts; `tracing-journald`
//! drops them, which is why diagnostics go there and audit records come here.

use std::os::unix::net::UnixDatagram as UnixDatagramStd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UnixDatagram;

use super::{bounded, AuditRecord, DecisionKind, Durability, Error, Sink};
use crate::decision::BoxFuture;

/// Where journald listens for native-protocol entries.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";

/// The `SYSLOG_IDENTIFIER` of every audit record, so `journalctl -t crigate` finds them.
pub const SYSLOG_IDENTIFIER: &str = "crigate";

/// How long a send may wait for room in journald's socket buffer before the record
/// counts as not written: journald stalled must not stall the CRI socket.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends audit records to journald.
#[derive(Clone, Debug)]
pub struct Journald {
    socket: Arc<Path>,
    /// One non-blocking datagram socket connected to journald's, for every send: the
    /// socket's path is looked up once, not per record. Made on first use, and again
    /// when journald's socket was replaced (a journald restarted without socket
    /// activation binds a new one at the same path).
    sender: Arc<Mutex<Option<UnixDatagramStd>>>,
}

// === impl Journald ===

impl Journald {
    /// A writer to the journal socket at `socket`. Nothing is opened until a write.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: Arc::from(socket.into().into_boxed_path()),
            sender: Arc::default(),
        }
    }

    /// The socket written to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one entry.
    ///
    /// # Errors
    ///
    /// journald's socket is missing or refuses the datagram, or stays full past
    /// [`SEND_TIMEOUT`].
    pub async fn send(&self, entry: &[u8]) -> Result<(), Error> {
        let io = |source| Error::Journald {
            socket: Box::from(&*self.socket),
            source,
        };
        // Mostly journald's buffer has room and the datagram goes at once; a full
        // buffer is waited for (bounded) below.
        match self.send_now(entry) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(io(error)),
        }
        // A socket connected to journald's is writable only once journald's queue has
        // room (the kernel wakes it then); an unconnected one is writable at once, full
        // queue or not, and waiting on it would spin.
        let socket = UnixDatagram::unbound().map_err(io)?;
        socket.connect(&*self.socket).map_err(io)?;
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(entry)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(io(error)),
            Err(_) => Err(Error::JournaldTimeout {
                socket: Box::from(&*self.socket),
                timeout: SEND_TIMEOUT,
            }),
        }
    }

    /// Sends one entry through the shared connected socket without waiting:
    /// `WouldBlock` when journald's buffer is full.
    fn send_now(&self, entry: &[u8]) -> std::io::Result<()> {
        let mut sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        let sent = match &*sender {
            Some(connected) => connected.send(entry),
            None => sender.insert(connect(&self.socket)?).send(entry),
        };
        match sent {
            // The socket it was connected to is gone: journald was restarted and bound
            // a new one. Connect to that, and send once more.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotConnected
                ) =>
            {
                *sender = None;
                sender.insert(connect(&self.socket)?).send(entry).map(drop)
            }
            other => other.map(drop),
        }
    }
}

/// A non-blocking datagram socket connected to `socket`.
fn connect(socket: &Path) -> std::io::Result<UnixDatagramStd> {
    let sender = UnixDatagramStd::unbound()?;
    sender.connect(socket)?;
    sender.set_nonblocking(true)?;
    Ok(sender)
}

/// Sends one entry from a thread that is not an async worker (the spool's writer),
/// waiting at most [`SEND_TIMEOUT`] for room in journald's socket buffer.
///
/// # Errors
///
/// journald's socket is missing, refuses the datagram or stays full.
pub fn send_blocking(socket: &Path, entry: &[u8]) -> std::io::Result<()> {
    let sender = std::os::unix::net::UnixDatagram::unbound()?;
    sender.set_write_timeout(Some(SEND_TIMEOUT))?;
    sender.send_to(entry, socket).map(|_| ())
}

impl Sink for Journald {
    fn name(&self) -> &'static str {
        "journald"
    }

    fn write_now(&self, record: &Arc<AuditRecord>) -> Option<Result<Option<Durability>, Error>> {
        match self.send_now(&entry(record)) {
            // journald owns the record once it has the datagram.
            Ok(()) => Some(Ok(None)),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(source) => Some(Err(Error::Journald {
                socket: Box::from(&*self.socket),
                source,
            })),
        }
    }

    fn write(&self, record: Arc<AuditRecord>) -> BoxFuture<'static, Result<Durability, Error>> {
        let this = self.clone();
        Box::pin(async move {
            this.send(&entry(&record)).await?;
            // journald owns the record once it has the datagram.
            Ok(Box::pin(std::future::ready(Ok(()))) as Durability)
        })
    }
}

/// The native-protocol entry for `record`: `MESSAGE`, `MESSAGE_ID`, `PRIORITY`,
/// `SYSLOG_IDENTIFIER` and one `CRIGATE_*` field per non-empty record field. The field
/// names are a public interface (README.md, "For incident responders"): they are added
/// to, never renamed.
pub fn entry(record: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let decision = record.decision();
    field(
        &mut out,
        "MESSAGE",
        &format!("crigate {}", record.summary()),
    );
    field(&mut out, "MESSAGE_ID", decision.message_id());
    field(&mut out, "PRIORITY", priority(decision));
    field(&mut out, "SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER);
    let text_fields: [(&str, &str); 23] = [
        ("CRIGATE_ID", &record.id),
        ("CRIGATE_NODE", &record.node),
        ("CRIGATE_PHASE", record.phase().code()),
        ("CRIGATE_DECISION", decision.code()),
        ("CRIGATE_ACTION", record.action().code()),
        ("CRIGATE_API", &record.api_version),
        ("CRIGATE_NAMESPACE", &record.namespace),
        ("CRIGATE_POD", &record.pod_name),
        ("CRIGATE_POD_UID", &record.pod_uid),
        ("CRIGATE_CONTAINER", &record.container_name),
        ("CRIGATE_VOLUME_PATH", &record.volume_path),
        ("CRIGATE_IMAGE", &record.image),
        ("CRIGATE_USER_IMAGE", &record.user_specified_image),
        ("CRIGATE_SUBJECT", &record.subject),
        ("CRIGATE_DIGEST", &record.digest),
        ("CRIGATE_PINNED", &record.pinned),
        ("CRIGATE_VERIFIER", &record.verifier),
        ("CRIGATE_SIGNER", &record.signer),
        ("CRIGATE_ALLOWLISTED_BY", &record.allowlisted_by),
        ("CRIGATE_POLICY", &record.policy),
        ("CRIGATE_MODE", &record.mode),
        ("CRIGATE_FINGERPRINT", &record.fingerprint),
        ("CRIGATE_REASON_CODE", &record.reason_code),
    ];
    for (name, value) in text_fields {
        if !value.is_empty() {
            field(&mut out, name, value);
        }
    }
    if !record.reason.is_empty() {
        field(&mut out, "CRIGATE_REASON", &record.reason);
    }
    field(
        &mut out,
        "CRIGATE_CACHED",
        if record.cached { "true" } else { "false" },
    );
    field(
        &mut out,
        "CRIGATE_LATENCY_US",
        &record.latency_micros.to_string(),
    );
    field(
        &mut out,
        "CRIGATE_CALLER_PID",
        &record.caller_pid.to_string(),
    );
    field(
        &mut out,
        "CRIGATE_CALLER_UID",
        &record.caller_uid.to_string(),
    );
    field(
        &mut out,
        "CRIGATE_TIME_UNIX_NS",
        &record.time_unix_nanos.to_string(),
    );
    out
}

/// syslog priority: a refusal is `notice` (5), so `journalctl -p notice` shows denials
/// and errors without the stream of allows (`info`, 6).
fn priority(decision: DecisionKind) -> &'static str {
    match decision {
        DecisionKind::Allow => "6",
        DecisionKind::Deny | DecisionKind::AuditDeny | DecisionKind::Error => "5",
        DecisionKind::Unspecified => "4",
    }
}

/// Appends one field in the native protocol's encoding, cutting a value longer than
/// [`super::MAX_FIELD_BYTES`] at a character boundary and marking the cut.
fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    let value = bounded(value);
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    } else {
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, Phase, MAX_FIELD_BYTES};

    #[tokio::test]
    async fn a_full_journal_socket_is_waited_on_until_it_has_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let receiver = UnixDatagramStd::bind(&path).unwrap();
        // journald's queue full: datagrams sent until the kernel says "again".
        let filler = connect(&path).unwrap();
        let mut queued = 0;
        while filler.send(b"MESSAGE=filler\n").is_ok() {
            queued += 1;
        }
        assert!(queued > 0);
        // journald reads one, 300 ms on (a thread of its own, not an async worker).
        #[allow(clippy::disallowed_methods)]
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut buf = [0u8; 64];
            receiver.recv(&mut buf).unwrap();
            receiver
        });
        // The CPU time of this thread, which the runtime of this test polls on.
        let cpu = || {
            let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
        };
        let journald = Journald::new(&path);
        let (started, cpu_before) = (std::time::Instant::now(), cpu());
        journald.send(b"MESSAGE=record\n").await.unwrap();
        let (waited, used) = (started.elapsed(), cpu() - cpu_before);
        assert!(waited < SEND_TIMEOUT / 2, "{waited:?}");
        // Waited for, not spun on.
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(
            used < Duration::from_millis(100),
            "{used:?} of CPU in {waited:?}"
        );
        drop(reader.join().unwrap());
    }

    /// Parses native-protocol entries as journald does (journald-native.c): text fields
    /// up to `=`, binary fields with their length.
    fn parse(mut entry: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut fields = Vec::new();
        while !entry.is_empty() {
            let line_end = entry.iter().position(|b| *b == b'\n').unwrap();
            let line = &entry[..line_end];
            if let Some(eq) = line.iter().position(|b| *b == b'=') {
                fields.push((
                    String::from_utf8(line[..eq].to_vec()).unwrap(),
                    line[eq + 1..].to_vec(),
                ));
                entry = &entry[line_end + 1..];
            } else {
                let name = String::from_utf8(line.to_vec()).unwrap();
                let rest = &entry[line_end + 1..];
                let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
                fields.push((name, rest[8..8 + len].to_vec()));
                assert_eq!(rest[8 + len], b'\n');
                entry = &rest[8 + len + 1..];
            }
        }
        fields
    }

    fn record() -> AuditRecord {
        let mut record = AuditRecord {
            id: "0192d6a0-0000-7000-8000-000000000001".to_owned(),
            node: "node-1".to_owned(),
            namespace: "prod".to_owned(),
            image: "127.0.0.1:5000/app:v1".to_owned(),
            subject: "127.0.0.1:5000/app@sha256:ab".to_owned(),
            reason: "no signature found".to_owned(),
            reason_code: "no_signature".to_owned(),
            caller_pid: 42,
            ..Default::default()
        };
        record.set_decision(DecisionKind::Deny);
        record.set_action(Action::Refuse);
        record.set_phase(Phase::Pull);
        record
    }

    #[test]
    fn deny_record_carries_its_message_id_and_fields() {
        let fields = parse(&entry(&record()));
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(
            get("MESSAGE_ID").as_deref(),
            Some(super::super::MESSAGE_ID_DENY)
        );
        assert_eq!(get("CRIGATE_DECISION").as_deref(), Some("deny"));
        assert_eq!(get("CRIGATE_ACTION").as_deref(), Some("refuse"));
        assert_eq!(get("CRIGATE_NAMESPACE").as_deref(), Some("prod"));
        assert_eq!(get("CRIGATE_PHASE").as_deref(), Some("pull"));
        assert_eq!(get("CRIGATE_CALLER_PID").as_deref(), Some("42"));
        assert_eq!(get("SYSLOG_IDENTIFIER").as_deref(), Some("crigate"));
        assert_eq!(get("PRIORITY").as_deref(), Some("5"));
        // Empty fields are left out rather than sent empty.
        assert_eq!(get("CRIGATE_POD"), None);
        for (name, _) in &fields {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                    && !name.starts_with('_'),
                "{name} is not a valid journal field name"
            );
        }
    }

    #[test]
    fn values_with_newlines_use_the_binary_encoding() {
        let mut record = record();
        record.pod_name = "evil\nCRIGATE_DECISION=allow".to_owned();
        let fields = parse(&entry(&record));
        let decisions: Vec<_> = fields
            .iter()
            .filter(|(n, _)| n == "CRIGATE_DECISION")
            .collect();
        assert_eq!(decisions.len(), 1, "a newline in a value forged a field");
        assert!(fields
            .iter()
            .any(|(n, v)| n == "CRIGATE_POD" && v == b"evil\nCRIGATE_DECISION=allow"));
    }

    #[test]
    fn long_values_are_cut_at_the_field_limit() {
        let mut record = record();
        record.image = "é".repeat(MAX_FIELD_BYTES);
        let fields = parse(&entry(&record));
        let image = &fields.iter().find(|(n, _)| n == "CRIGATE_IMAGE").unwrap().1;
        assert!(image.len() <= MAX_FIELD_BYTES);
        assert!(std::str::from_utf8(image).unwrap().ends_with("..."));
        let exact = "a".repeat(MAX_FIELD_BYTES);
        assert_eq!(bounded(&exact), exact.as_str());
        assert!(bounded(&format!("{exact}a")).ends_with("..."));
    }

    #[tokio::test]
    async fn a_missing_journal_socket_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let journald = Journald::new(dir.path().join("socket"));
        let error = journald.send(b"MESSAGE=x\n").await.unwrap_err();
        assert!(matches!(error, Error::Journald { .. }));
        assert!(error.to_string().contains("socket"));
    }

    #[tokio::test]
    async fn entry_reaches_a_datagram_socket_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let journald = Journald::new(&path);
        let sent = entry(&record());
        journald.send(&sent).await.unwrap();
        let mut buf = vec![0; 65536];
        let n = receiver.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &sent[..]);
    }

    #[tokio::test]
    async fn records_reach_a_journal_socket_bound_again_at_the_same_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let journald = Journald::new(&path);
        let mut buf = vec![0; 65536];
        for restart in 0..3u8 {
            // journald restarted outside socket activation: a new socket at the old path.
            let _ = std::fs::remove_file(&path);
            let receiver = UnixDatagram::bind(&path).unwrap();
            for record in 0..2u8 {
                let sent = [
                    b"CRIGATE_TEST=".as_slice(),
                    &[b'a' + restart, b'0' + record],
                ]
                .concat();
                let write = journald.write_now(&Arc::new(record_with_id(&sent)));
                match write {
                    Some(Ok(None)) => {}
                    Some(Err(error)) => panic!("restart {restart}: {error}"),
                    _ => panic!("restart {restart}: not written at once"),
                }
                let n = receiver.recv(&mut buf).await.unwrap();
                assert_eq!(
                    parse(&buf[..n])
                        .into_iter()
                        .find(|(name, _)| name == "CRIGATE_ID")
                        .unwrap()
                        .1,
                    sent,
                    "restart {restart}, record {record}"
                );
            }
            drop(receiver);
        }
        // And with no socket at all, the write is an error naming it.
        std::fs::remove_file(&path).unwrap();
        match journald.write_now(&Arc::new(record())) {
            Some(Err(error)) => assert!(
                error.to_string().contains(&*path.to_string_lossy()),
                "{error}"
            ),
            _ => panic!("a write to a missing socket was not an error"),
        }
    }

    fn record_with_id(id: &[u8]) -> AuditRecord {
        AuditRecord {
            id: String::from_utf8(id.to_vec()).unwrap(),
            ..record()
        }
    }
}
