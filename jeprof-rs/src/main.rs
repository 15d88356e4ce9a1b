//! `jeprof-rs`: parse the command line, run the command, print errors as one line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = jeprof_rs::cli::Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match jeprof_rs::cli::execute(cli, &mut out) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("jeprof-rs: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
