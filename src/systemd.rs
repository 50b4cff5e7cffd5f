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
    notify(&[sd_notify::NotifyState::Ready]);
}

/// Tells systemd the configuration is being reloaded, then that it is ready again.
pub fn notify_reloaded() {
    notify(&[sd_notify::NotifyState::Reloading]);
    notify(&[sd_notify::NotifyState::Ready]);
}

/// Tells systemd the service is stopping (`STOPPING=1`).
pub fn notify_stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(state) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}
