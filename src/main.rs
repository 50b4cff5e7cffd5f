//! The `crigate` binary: parse the command line, start diagnostics, run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = crigate::cli::Cli::parse();
    let logging = match crigate::telemetry::init(cli.log_format) {
        Ok(logging) => logging,
        Err(error) => {
            eprintln!("error: cannot start logging: {error:#}");
            return ExitCode::from(crigate::cli::EXIT_ERROR);
        }
    };
    let result = crigate::cli::run(cli);
    // What is logged is written out before the closing error, as it happened before it.
    drop(logging);
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(crigate::cli::EXIT_ERROR)
        }
    }
}
