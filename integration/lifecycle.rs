//! Start-up, reload and shutdown of `crigate serve`, against the stand-in runtime.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::sys::signal::Signal;

use crate::client::call;
use crate::daemon::{crigate_binary, Crigate, Options};
use crate::harness::cri::pull_request;
use crate::harness::journald::{self, Journald};
use crate::proxy::RawCodec;
use crate::standin::{self, StandIn};

/// The socket is never seen with the mode the umask gives a new socket, nor without its
/// group: from the first instant its path exists, it is as configured, and nothing crigate
/// binds on the way there takes a connection. Watched through several starts, polling as
/// fast as the directory can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_appears_with_its_mode_and_group_already_set() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let group = nix::unistd::Group::from_name("daemon").unwrap().unwrap();
    for round in 0..5 {
        let run = dir.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&run).unwrap();
        let mut options = Options::new(&run, &standin.socket, "socket_group = \"daemon\"\n");
        options.wait_ready = false;
        let socket = options.socket.clone();
        let crigate = Crigate::start(&run, options).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let parent = socket.parent().unwrap().to_owned();
        let meta = loop {
            if let Ok(meta) = std::fs::symlink_metadata(&socket) {
                break meta;
            }
            // Whatever crigate binds takes no connection before the socket is in place
            // with its mode and group. (A connect that looked the name up just before
            // crigate unlinked it may still land once it listens: by then the socket is
            // in place, which is what is checked.)
            for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                let staged = entry.path();
                if staged == socket || std::os::unix::net::UnixStream::connect(&staged).is_err() {
                    continue;
                }
                let placed = std::fs::symlink_metadata(&socket)
                    .map(|meta| (meta.permissions().mode() & 0o777, meta.gid()));
                assert_eq!(
                    placed.ok(),
                    Some((0o660, group.gid.as_raw())),
                    "round {round}: {} took a connection before the socket was in place",
                    staged.display()
                );
            }
            assert!(Instant::now() < deadline, "no socket after 10 s");
        };
        assert_eq!(
            (meta.permissions().mode() & 0o777, meta.gid()),
            (0o660, group.gid.as_raw()),
            "round {round}: the socket as first seen"
        );
        // Once it serves, nothing is left beside it.
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "round {round}: not served after 10 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let beside: Vec<_> = std::fs::read_dir(socket.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name.to_string_lossy().starts_with('.'))
            .collect();
        assert!(beside.is_empty(), "round {round}: {beside:?}");
        drop(crigate);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_ready_fast_with_mode_0660_and_its_group_in_a_created_directory() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    // A group other than root's, to see it given the socket and its directory.
    let group = nix::unistd::Group::from_name("daemon").unwrap().unwrap();
    let mut options = Options::new(dir.path(), &standin.socket, "socket_group = \"daemon\"\n");
    let socket = dir.path().join("run/crigate/crigate.sock");
    options.config = options.config.replace(
        &options.socket.display().to_string(),
        &socket.display().to_string(),
    );
    options.socket = socket.clone();
    let crigate = Crigate::start(dir.path(), options).unwrap();
    assert!(
        crigate.ready_after < Duration::from_secs(1),
        "ready after {:?}",
        crigate.ready_after
    );
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().gid(),
        group.gid.as_raw()
    );
    // The directory crigate made: the group may pass through it to the socket.
    let parent = std::fs::metadata(socket.parent().unwrap()).unwrap();
    assert_eq!(parent.gid(), group.gid.as_raw());
    assert_eq!(parent.permissions().mode() & 0o777, 0o750);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_then_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let mut crigate =
        Crigate::start(dir.path(), Options::new(dir.path(), &standin.socket, "")).unwrap();
    let socket = crigate.socket.clone();
    let in_flight = tokio::spawn(async move {
        call(
            &socket,
            standin::SLOW,
            &[("x-delay-ms", "1000")],
            Bytes::new(),
        )
        .await
    });
    standin.reached(standin::SLOW).await;
    crigate.signal(Signal::SIGTERM);
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(
        response.grpc_status(),
        Some(0),
        "in-flight call was cut off"
    );
    let status = crigate.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "{status}");
    assert!(!crigate.socket.exists(), "socket left behind");
    assert!(
        crigate.logs().contains("all calls finished"),
        "{}",
        crigate.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_wait_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let mut crigate = Crigate::start(
        dir.path(),
        Options::new(dir.path(), &standin.socket, "drain_timeout = \"300ms\""),
    )
    .unwrap();
    let socket = crigate.socket.clone();
    let _stuck = tokio::spawn(async move {
        call(
            &socket,
            standin::SLOW,
            &[("x-delay-ms", "30000")],
            Bytes::new(),
        )
        .await
    });
    standin.reached(standin::SLOW).await;
    let sent = Instant::now();
    crigate.signal(Signal::SIGTERM);
    crigate.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "took {:?}",
        sent.elapsed()
    );
    assert!(
        crigate.logs().contains("drain timeout passed"),
        "{}",
        crigate.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_passed_by_systemd_is_used_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let path = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut options = Options::new(dir.path(), &standin.socket, "");
    options.inherit = Some(listener);
    options.socket = path.clone();
    let mut crigate = Crigate::start(dir.path(), options).unwrap();
    crigate
        .wait_log("using the socket passed by systemd", Duration::from_secs(5))
        .unwrap();
    let response = call(&path, standin::ECHO, &[], Bytes::new()).await.unwrap();
    assert_eq!(response.grpc_status(), Some(0));
    // The configured listen path was never bound.
    assert!(!dir.path().join("crigate.sock").exists());
    crigate.signal(Signal::SIGTERM);
    crigate.wait_exit(Duration::from_secs(5)).unwrap();
    assert!(path.exists(), "the inherited socket was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_config_and_keeps_the_running_one_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let options = Options::new(dir.path(), &standin.socket, "");
    let base = options.config.clone();
    let crigate = Crigate::start(dir.path(), options).unwrap();
    let echo = || call(&crigate.socket, standin::ECHO, &[], Bytes::new());
    assert_eq!(echo().await.unwrap().grpc_status(), Some(0));

    crigate.write_config(&format!("{base}unknown_methods = \"deny\"\n"));
    crigate.signal(Signal::SIGHUP);
    crigate
        .wait_log("configuration reloaded", Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        echo().await.unwrap().grpc_status(),
        Some(12),
        "reloaded policy not applied"
    );

    crigate.write_config(&format!(
        "{base}unknown_methods = \"deny\"\nlisten_typo = 1\n"
    ));
    crigate.signal(Signal::SIGHUP);
    crigate
        .wait_log("configuration reload refused", Duration::from_secs(5))
        .unwrap();
    assert!(
        crigate.logs().contains("listen_typo"),
        "the reason names the key:\n{}",
        crigate.logs()
    );
    assert_eq!(
        echo().await.unwrap().grpc_status(),
        Some(12),
        "running config was not kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_naming_another_runtime_socket_moves_open_client_connections_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = StandIn::start(&dir.path().join("first.sock"));
    let second = StandIn::start(&dir.path().join("second.sock"));
    let options = Options::new(dir.path(), &first.socket, "");
    let base = options.config.clone();
    let crigate = Crigate::start(dir.path(), options).unwrap();
    // One channel throughout, as kubelet keeps one connection for as long as it runs.
    let channel = crate::harness::cri_channel(&crigate.socket).await.unwrap();
    let client = tonic::client::Grpc::new(channel);
    let echo = || {
        let mut client = client.clone();
        async move {
            client.ready().await.unwrap();
            client
                .unary::<_, Bytes, _>(
                    tonic::Request::new(Bytes::from_static(b"ping")),
                    http::uri::PathAndQuery::from_static(standin::ECHO),
                    RawCodec,
                )
                .await
                .map(tonic::Response::into_inner)
        }
    };
    assert_eq!(echo().await.unwrap(), Bytes::from_static(b"ping"));
    assert_eq!(first.seen_on(standin::ECHO).len(), 1);

    let path = |standin: &StandIn| standin.socket.display().to_string();
    crigate.write_config(&base.replace(&path(&first), &path(&second)));
    crigate.signal(Signal::SIGHUP);
    crigate
        .wait_log("configuration reloaded", Duration::from_secs(5))
        .unwrap();
    // Every call on the channel is answered while it moves, and soon by the new runtime.
    let started = Instant::now();
    while second.seen_on(standin::ECHO).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the open connection still reaches {}",
            path(&first)
        );
        // tonic fails a call it had queued on the connection as that connection closes,
        // before sending any of it, where grpc-go (kubelet) retries such a call by
        // itself: retried here once, as grpc-go would.
        let answer = match echo().await {
            Err(status) if status.code() == tonic::Code::Cancelled => echo().await,
            answer => answer,
        };
        assert_eq!(answer.unwrap(), Bytes::from_static(b"ping"));
    }
    let on_first = first.seen_on(standin::ECHO).len();
    for _ in 0..3 {
        assert_eq!(echo().await.unwrap(), Bytes::from_static(b"ping"));
    }
    assert_eq!(first.seen_on(standin::ECHO).len(), on_first);
    assert_eq!(second.seen_on(standin::ECHO).len(), 4);
    // No call was cut off on either runtime while the connection moved.
    assert!(first.cancelled().is_empty(), "{:?}", first.cancelled());
    assert!(second.cancelled().is_empty(), "{:?}", second.cancelled());
    assert!(
        crigate.logs().contains("runtime socket changed"),
        "{}",
        crigate.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_notified_to_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let notify = dir.path().join("notify.sock");
    let receiver = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut options = Options::new(dir.path(), &standin.socket, "");
    options
        .env
        .push(("NOTIFY_SOCKET".into(), notify.display().to_string()));
    let crigate = Crigate::start(dir.path(), options).unwrap();
    let mut buf = [0u8; 256];
    let n = receiver.recv(&mut buf).unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");
    crigate.signal(Signal::SIGTERM);
    let n = receiver.recv(&mut buf).unwrap();
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "STOPPING=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_in_use_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let first = Crigate::start(dir.path(), Options::new(dir.path(), &standin.socket, "")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut options = Options::new(other.path(), &standin.socket, "");
    options.config = options.config.replace(
        &options.socket.display().to_string(),
        &first.socket.display().to_string(),
    );
    options.socket = first.socket.clone();
    options.wait_ready = false;
    let mut second = Crigate::start(other.path(), options).unwrap();
    let status = second.wait_exit(Duration::from_secs(5)).unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(
        second.logs().contains("another process is serving"),
        "{}",
        second.logs()
    );
    assert_eq!(
        call(&first.socket, standin::ECHO, &[], Bytes::new())
            .await
            .unwrap()
            .grpc_status(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_from_a_crash_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let options = Options::new(dir.path(), &standin.socket, "");
    drop(std::os::unix::net::UnixListener::bind(&options.socket).unwrap());
    assert!(options.socket.exists());
    let crigate = Crigate::start(dir.path(), options).unwrap();
    assert_eq!(
        call(&crigate.socket, standin::ECHO, &[], Bytes::new())
            .await
            .unwrap()
            .grpc_status(),
        Some(0)
    );
}

#[test]
fn invalid_config_exits_78_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[cri]\nlisten = \"/run/x.sock\"\nlistn = \"/run/y.sock\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(crigate_binary())
        .args(["--log-format", "text", "serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("listn") && stderr.contains("line 3"),
        "{stderr}"
    );
}

#[test]
fn help_and_version_work() {
    for args in [&["--help"][..], &["serve", "--help"], &["--version"]] {
        let output = std::process::Command::new(crigate_binary())
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("crigate") || stdout.contains("--config"),
            "{args:?}: {stdout}"
        );
    }
    let output = std::process::Command::new(crigate_binary())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        version.starts_with(&format!("crigate {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let usage = std::process::Command::new(crigate_binary())
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

/// The units in systemd/ pass `systemd-analyze verify` with no warning, and the service's
/// sandboxing keeps `systemd-analyze security` exposure at "OK" (under 3.0). The units
/// name /usr/bin/crigate; the check runs on copies pointing at the binary under test.
#[test]
fn systemd_units_verify_cleanly_stay_sandboxed_and_let_journald_keep_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    for unit in ["crigate.socket", "crigate.service"] {
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        let text = text.replace("/usr/bin/crigate", &crigate_binary().display().to_string());
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let output = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("crigate.socket"))
        .arg(dir.path().join("crigate.service"))
        .output()
        .expect("systemd-analyze (integration/setup installs systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "warnings count as failures:\n{stderr}"
    );

    let output = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(dir.path().join("crigate.service"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let exposure: f64 = stdout
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for crigate.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}"));
    assert!(exposure < 3.0, "exposure {exposure}:\n{stdout}");

    // journald's rate limit drops entries without telling their sender, so the unit
    // turns it off for the audit records; verify above checked that this systemd knows
    // the directive.
    let service = std::fs::read_to_string(units.join("crigate.service")).unwrap();
    let directives: Vec<&str> = service
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(
        directives.contains(&"LogRateLimitIntervalSec=0"),
        "journald may rate-limit the audit records:\n{service}"
    );
    // crigate refuses a create whose image string names a file containerd would restore
    // as a checkpoint archive, and must see the files containerd sees to tell: the unit
    // leaves /tmp, /home and /root the host's.
    for hiding in ["PrivateTmp=yes", "ProtectHome=yes", "ProtectHome=tmpfs"] {
        assert!(
            !directives.contains(&hiding),
            "{hiding} hides files containerd sees:\n{service}"
        );
    }
}

/// Diagnostics sent to journald never hold the thread that relays calls: with journald
/// stopped (SIGSTOP), so that its socket's queue fills after a few datagrams, every call
/// is relayed as before (each connection's end is a diagnostic at the level these tests
/// log), and once journald runs again it receives crigate's diagnostics again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_journald_holds_no_relayed_call() {
    let journald = Journald::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let crigate = logging_to(&journald, dir.path(), &standin);
    let ended = [
        "SYSLOG_IDENTIFIER=crigate",
        "MESSAGE=client connection closed",
    ];
    call(&crigate.socket, standin::ECHO, &[], Bytes::new())
        .await
        .unwrap();
    let before = journald.wait_for(&ended, 1).unwrap().len();

    journald.pause();
    // More than journald's socket can queue (`net.unix.max_dgram_qlen` datagrams: 10 by
    // the kernel's default, 512 where systemd set it at boot), so that some must be
    // dropped.
    let queue: usize = std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(512);
    let calls = 200.max(2 * queue + 100);
    each_call_is_relayed_in_time(&crigate.socket, calls, "with journald stopped").await;
    journald.resume();

    // What journald's socket held while it was stopped, read once it runs again: those
    // it had no room for were dropped, not held back without bound.
    let mut held = journald.entries(&ended).unwrap().len();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = journald.entries(&ended).unwrap().len();
        if now == held {
            break;
        }
        held = now;
    }
    assert!(
        held < before + calls,
        "{held} connection ends recorded: none was dropped"
    );
    // And it receives crigate's diagnostics again: a connection ended from now on is
    // recorded. A call is made every half second, in case journald is still reading
    // what it held when the first ends.
    let resumed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        call(&crigate.socket, standin::ECHO, &[], Bytes::new())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let entries = journald.entries(&ended).unwrap();
        if entries.iter().any(|e| journald::received(e) > resumed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection end recorded in 20 s after journald ran again \
             ({} recorded in all; journald is {})",
            entries.len(),
            journald.state()
        );
    }
}

/// A journald stalled when crigate starts does not hold the start: with journald stopped
/// and its socket's queue full, tracing-journald's first send (blocking, and made before
/// crigate serves) would wait until journald reads again. crigate finds no room on the
/// socket within its wait, serves, and writes its diagnostics to stderr instead, saying
/// so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journald_stalled_at_start_holds_no_start() {
    let journald = Journald::start().unwrap();
    journald.pause();
    // Fill the queue. A datagram counts against its sender's buffer until it is read, so
    // senders are added until a new one has no room at once.
    let mut senders = Vec::new();
    'fill: for _ in 0..10_000 {
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.set_nonblocking(true).unwrap();
        let mut sent = 0;
        loop {
            match sender.send_to(b"", journald.socket()) {
                Ok(_) => sent += 1,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) => panic!("filling journald's queue: {error}"),
            }
        }
        if sent == 0 {
            break 'fill;
        }
        senders.push(sender);
    }
    assert!(!senders.is_empty(), "journald's queue took nothing");

    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let crigate = logging_to(&journald, dir.path(), &standin);
    each_call_is_relayed_in_time(&crigate.socket, 3, "with journald stalled at start").await;
    assert!(
        crigate
            .logs()
            .contains("journald is not reading its socket: diagnostics go to stderr"),
        "{}",
        crigate.logs()
    );
    journald.resume();
}

/// Under systemd a service's stderr is the journal's stream (`StandardError=journal`, named
/// by `$JOURNAL_STREAM`), so text diagnostics there reach the journal that already holds
/// every audit record: a decision's `crigate::decision` line is left out, as it is when
/// diagnostics are sent to journald. A stderr that is anything else, whatever
/// `$JOURNAL_STREAM` names, still gets the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_not_repeated_on_a_stderr_that_is_the_journal_stream() {
    use prost::Message as _;
    use std::os::fd::AsFd as _;
    let journald = Journald::start().unwrap();
    let pull = pull_request("registry.example/app:v1", "app", "default").encode_to_vec();
    for (node, stderr_is_the_stream) in [("stderr-journal", true), ("stderr-file", false)] {
        let dir = tempfile::tempdir().unwrap();
        let standin = StandIn::start(&dir.path().join("upstream.sock"));
        let log = dir.path().join("stderr");
        let stderr = std::fs::File::create(&log).unwrap();
        let elsewhere = std::fs::File::create(dir.path().join("elsewhere")).unwrap();
        let named = if stderr_is_the_stream {
            stderr.as_fd()
        } else {
            elsewhere.as_fd()
        };
        let named = nix::sys::stat::fstat(named).unwrap();
        let mut options = Options::new(dir.path(), &standin.socket, "");
        options
            .config
            .push_str(&format!("[audit]\nnode = \"{node}\"\n"));
        options.env.push((
            "JOURNAL_STREAM".to_owned(),
            format!("{}:{}", named.st_dev, named.st_ino),
        ));
        // Where the audit records' default socket is journald's.
        options.run_under = in_namespace_of(&journald);
        options.stderr = Some(stderr.into());
        let crigate = Crigate::start(dir.path(), options).unwrap();
        let response = call(
            &crigate.socket,
            "/runtime.v1.ImageService/PullImage",
            &[],
            standin::grpc_frame(&pull),
        )
        .await
        .unwrap();
        assert_eq!(
            response.grpc_status(),
            Some(0),
            "{}",
            response.grpc_message()
        );
        journald
            .wait_for(
                &["SYSLOG_IDENTIFIER=crigate", &format!("CRIGATE_NODE={node}")],
                1,
            )
            .unwrap();
        drop(crigate);
        let logs = std::fs::read_to_string(&log).unwrap();
        assert!(logs.contains("serving CRI"), "{logs}");
        assert_eq!(
            logs.contains("crigate::decision"),
            !stderr_is_the_stream,
            "stderr is the journal's stream: {stderr_is_the_stream}\n{logs}"
        );
    }
}

/// Diagnostics written to stderr never hold the thread that relays calls: with stderr a
/// pipe nobody reads (as the stream to journald is while journald is stalled), every call
/// is relayed as before, though each connection's end is a line on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_holds_no_relayed_call() {
    let dir = tempfile::tempdir().unwrap();
    let standin = StandIn::start(&dir.path().join("upstream.sock"));
    let (unread, stderr) = nix::unistd::pipe().unwrap();
    // One page: full after a few dozen lines.
    nix::fcntl::fcntl(&stderr, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).unwrap();
    let mut options = Options::new(dir.path(), &standin.socket, "");
    options.stderr = Some(stderr.into());
    let crigate = Crigate::start(dir.path(), options).unwrap();
    each_call_is_relayed_in_time(&crigate.socket, 200, "with stderr full").await;
    drop(crigate);
    drop(unread);
}

/// crigate in `dir`, relaying to `standin`, with its diagnostics sent to `journald`: run
/// in journald's mount namespace, where journald's socket is at the path tracing-journald
/// sends to.
fn logging_to(journald: &Journald, dir: &std::path::Path, standin: &StandIn) -> Crigate {
    let mut options = Options::new(dir, &standin.socket, "");
    options.log_format = "journald";
    options.run_under = in_namespace_of(journald);
    Crigate::start(dir, options).unwrap()
}

/// The command that runs crigate in `journald`'s mount namespace, where journald's socket
/// is at its usual path.
fn in_namespace_of(journald: &Journald) -> Vec<String> {
    ["nsenter", "-t", &journald.pid().to_string(), "-m", "--"]
        .map(str::to_owned)
        .to_vec()
}

/// Makes `calls` calls to the stand-in through `socket`, one connection each, and checks
/// that each is answered OK within 5 s.
async fn each_call_is_relayed_in_time(socket: &std::path::Path, calls: usize, while_: &str) {
    for n in 0..calls {
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            call(socket, standin::ECHO, &[], Bytes::new()),
        )
        .await
        .unwrap_or_else(|_| panic!("call {n} {while_} held for 5 s"))
        .unwrap();
        assert_eq!(response.grpc_status(), Some(0), "call {n} {while_}");
    }
}

/// A verdict cache file crigate cannot use does not stop the daemon, which would leave
/// the node without a runtime: it starts, keeps its verdicts in memory, and says why at
/// `error`. Two ways the file fails: a directory that cannot be made (under a regular
/// file, as under a path the unit keeps read-only), and a file that cannot be written
/// (in `/proc`).
#[test]
fn a_cache_file_that_cannot_be_used_leaves_the_verdicts_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"").unwrap();
    let key = dir.path().join("release.pub");
    std::fs::write(&key, crate::signer::KeySigner::generate().public_pem()).unwrap();
    for (name, path) in [
        ("dir", blocker.join("cache/verdicts.jsonl")),
        ("proc", "/proc/crigate-verdicts.jsonl".into()),
    ] {
        let home = dir.path().join(name);
        std::fs::create_dir(&home).unwrap();
        let extra = format!(
            "[cache]\npath = \"{}\"\n\n[verifiers.release]\nkind = \"cosign\"\n\
             keys = [\"{}\"]\nrequire_tlog = false\n\n[[policies]]\nname = \"all\"\n\
             namespaces = [\"*\"]\nverifiers = [\"release\"]\n",
            path.display(),
            key.display()
        );
        let options = Options::new(&home, &home.join("containerd.sock"), &extra);
        let crigate = Crigate::start(&home, options)
            .unwrap_or_else(|error| panic!("{name}: the daemon did not start: {error:#}"));
        crigate
            .wait_log(
                "the verdict cache file cannot be used",
                Duration::from_secs(5),
            )
            .unwrap_or_else(|error| panic!("{name}: {error:#}\n{}", crigate.logs()));
    }
}
