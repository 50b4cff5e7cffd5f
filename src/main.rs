//! The `crigate` binary: parse the command line, start diagnostics, run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = crigate::cli::Cli::parse();
    if let Err(error) = crigate::telemetry::init(cli.log_format) {
        eprintln!("error: cannot start logging: {error:#}");
        return ExitCode::from(crigate::cli::EXIT_ERROR);
    }
    match crigate::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(crigate::cli::EXIT_ERROR)
        }
    }
}
