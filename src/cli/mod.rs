//! The `crigate` command line. One module per command; each returns the process's exit
//! code.
//!
//! Exit codes: 0 success; 1 denied (for commands that decide); 2 error, including bad
//! usage; 78 (EX_CONFIG) `serve` or `aggregator` started with an invalid configuration.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

pub mod aggregator;
pub mod audit;
pub mod import;
pub mod policy;
pub mod serve;
pub mod verify;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Denied: the image is not trusted (`verify`).
pub const EXIT_DENIED: u8 = 1;
/// An error: bad usage, I/O, an unreachable dependency.
pub const EXIT_ERROR: u8 = 2;
/// The configuration is invalid (sysexits.h EX_CONFIG), so restarting will not help.
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "crigate",
    version = crate::VERSION,
    about = "Container image signature enforcement at the node's CRI socket",
    long_about = "crigate sits between kubelet and containerd on the CRI socket. It forwards every \
call and gates PullImage and CreateContainer, so that what runs on the node is what policy allows, \
whatever admission saw.",
    after_help = "Exit codes: 0 success, 1 denied, 2 error or bad usage, 78 invalid configuration."
)]
pub struct Cli {
    /// Where diagnostics go: journald when its socket exists, else text on stderr.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve CRI on a unix socket in front of the runtime (the node daemon).
    Serve(serve::Args),
    /// Verify one image's signatures, as the daemon would.
    Verify(Box<verify::Args>),
    /// Check the configuration's policies, or explain a decision.
    Policy(Box<policy::Args>),
    /// Turn Ratify or kritis resources into crigate configuration and trust files.
    Import(import::Args),
    /// Run the cluster audit aggregator: receive every node's audit records over mutual
    /// TLS, store them, answer queries.
    Aggregator(aggregator::Args),
    /// Search the cluster aggregator's audit records.
    Audit(audit::Args),
}

/// Runs the parsed command.
///
/// # Errors
///
/// Whatever the command could not do; printed with its causes by `main`.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(*args),
        Command::Policy(args) => policy::run(*args),
        Command::Import(args) => import::run(args),
        Command::Aggregator(args) => aggregator::run(args),
        Command::Audit(args) => audit::run(args),
    }
}
