//! The command-line layer: parses arguments, resolves settings from flags
//! and the environment, runs a command, and maps the outcome to an exit
//! code. The only layer that knows clap and anyhow. Everything it prints
//! goes through one [`Printer`].

pub mod args;
mod builders;
mod commands;
mod settings;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::ui::Printer;

/// How cbuild exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for was done.
    Success,
    /// A build failed, or the builder could not be reached.
    Failure,
    /// Bad input (Compose file, flags) or an internal error.
    Error,
    /// Interrupted by Ctrl-C.
    Cancelled,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(match s {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
            ExitStatus::Cancelled => 130,
        })
    }
}

/// Runs cbuild with these arguments.
pub fn main(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    let argv = args::with_default_command(argv.into_iter().collect());
    let cli = match args::Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitStatus::Error.into()
            } else {
                ExitStatus::Success.into()
            };
        }
    };
    let printer = Printer::new(settings::mode(&cli));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CBUILD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            report_error(
                &printer,
                &anyhow::Error::from(e).context("cannot start the async runtime"),
                None,
            );
            return ExitStatus::Error.into();
        }
    };
    let mut status = runtime.block_on(commands::dispatch(cli, &printer));
    // Don't wait for lingering tasks (an abandoned session) on the way out.
    runtime.shutdown_background();
    // A closed pipe is a normal end (the printer dropped the rest); any
    // other failure to write the data asked for is an error.
    if let Some(e) = printer.take_stdout_error() {
        report_error(
            &printer,
            &anyhow::Error::from(e).context("cannot write to standard output"),
            None,
        );
        status = ExitStatus::Error;
    }
    status.into()
}

/// Prints warnings found while loading the project.
pub(crate) fn report_warnings(printer: &Printer, warnings: &[String]) {
    for w in warnings {
        printer.warning(w);
    }
}

/// Prints an error with its causes and an optional hint, the way cbuild
/// reports every failure.
pub(crate) fn report_error(printer: &Printer, err: &anyhow::Error, hint: Option<&str>) {
    printer.error(err.as_ref(), hint);
}
