//! Diagnostics through `tracing`: to journald when its socket exists, else to stderr.
//!
//! These are diagnostics for operators, not audit records: audit records are written by
//! a writer whose failures crigate sees, never through a subscriber that may drop them.
//! The filter comes from `RUST_LOG` (default `info`).

use std::io::IsTerminal;
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

/// How [`init`] chose to write diagnostics; unset until it has.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The journal socket diagnostics are sent to, if they go to journald.
pub fn journal_socket() -> Option<&'static Path> {
    (FORMAT.get() == Some(&LogFormat::Journald)).then(|| Path::new(JOURNALD_SOCKET))
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

/// Installs the global subscriber. With no format, journald if its socket exists, else
/// text on stderr.
///
/// # Errors
///
/// journald was asked for and cannot be reached, or a subscriber is already installed.
pub fn init(format: Option<LogFormat>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = format.unwrap_or(if Path::new(JOURNALD_SOCKET).exists() {
        LogFormat::Journald
    } else {
        LogFormat::Text
    });
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
        LogFormat::Journald => registry
            .with(tracing_journald::layer()?.with_syslog_identifier("crigate".to_owned()))
            .try_init()?,
    }
    let _ = FORMAT.set(format);
    Ok(())
}
