//! The two systemd protocols crigate speaks: readiness notification (`sd_notify(3)`) and
//! socket activation (`sd_listen_fds(3)`). Both are inert when systemd is not involved.

use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;

use nix::sys::socket::{getsockopt, sockopt, SockType};

/// Why an inherited socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("cannot read LISTEN_FDS/LISTEN_PID")]
    Environment(#[source] std::io::Error),
    #[error("systemd passed {0} sockets; crigate takes exactly one (one ListenStream= in crigate.socket)")]
    Count(usize),
    #[error("the socket systemd passed (fd {fd}) is not a listening unix stream socket")]
    NotAListener { fd: RawFd },
}

/// The listening socket systemd passed, if any.
///
/// # Errors
///
/// The activation environment is malformed, holds more than one socket, or the socket is
/// not a listening stream socket.
pub fn inherited_listener() -> Result<Option<UnixListener>, ActivationError> {
    let fds: Vec<RawFd> = sd_notify::listen_fds()
        .map_err(ActivationError::Environment)?
        .collect();
    let fd = match fds.as_slice() {
        [] => return Ok(None),
        [fd] => *fd,
        more => return Err(ActivationError::Count(more.len())),
    };
    // SAFETY: systemd hands this descriptor to this process, which owns it from here on;
    // nothing else in crigate knows the number, so wrapping it creates the only owner.
    #[allow(unsafe_code)]
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    let is_stream = getsockopt(&listener, sockopt::SockType).is_ok_and(|t| t == SockType::Stream);
    let is_listening = getsockopt(&listener, sockopt::AcceptConn).unwrap_or(false);
    if !is_stream || !is_listening || listener.local_addr().is_err() {
        return Err(ActivationError::NotAListener { fd });
    }
    Ok(Some(listener))
}

/// Tells systemd the service is ready (`READY=1`). Without `NOTIFY_SOCKET`, does nothing.
pub fn notify_ready() {
    notify("READY=1");
}

/// Tells systemd the configuration is being reloaded, then that it is ready again.
pub fn notify_reloaded() {
    notify("RELOADING=1");
    notify("READY=1");
}

/// Tells systemd the service is stopping (`STOPPING=1`).
pub fn notify_stopping() {
    notify("STOPPING=1");
}

fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(error) = notify_to(&socket, state) {
        tracing::warn!(%error, socket = ?socket, "cannot notify systemd");
    }
}

/// Sends `state` to the notification socket `socket`: a path, or, with a leading `@`, a
/// name in the abstract namespace (`sd_notify(3)`), which the service manager may use.
fn notify_to(socket: &std::ffi::OsStr, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let sender = UnixDatagram::unbound()?;
    let sent = match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            sender.send_to_addr(state.as_bytes(), &SocketAddr::from_abstract_name(name)?)?
        }
        None => sender.send_to(state.as_bytes(), socket)?,
    };
    if sent != state.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "the notification was cut short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    use super::*;

    #[test]
    fn notifications_reach_a_socket_by_path_or_in_the_abstract_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let by_path = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0; 64];
        let n = by_path.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("crigate-test-notify-{}", std::process::id());
        let abstract_socket =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        notify_to(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = abstract_socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
