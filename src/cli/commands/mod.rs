//! One file per command; each resolves its settings, makes one call into
//! `orchestrate` (or `bench`, `compose`), and hands the result to `ui`.

mod bench;
mod build;
mod config;
mod context;
mod doctor;
mod push;
mod status;
mod up;
mod watch;
mod why;

use super::args::{Cli, Command};
use super::ExitStatus;
use crate::ui::Printer;

/// Runs the command `cli` names (`build` when none).
pub async fn dispatch(cli: Cli, printer: &Printer) -> ExitStatus {
    match cli.command {
        Command::Bench(b) => bench::run(&cli.global, &b, printer).await,
        Command::Build(b) => build::run(&cli.global, &b, printer).await,
        Command::Config(c) => config::run(&cli.global, &c, printer),
        Command::Context(c) => context::run(&cli.global, &c, printer).await,
        Command::Push(p) => push::run(&cli.global, &p, printer).await,
        Command::Doctor => doctor::run(&cli.global, printer).await,
        Command::Up(u) => up::run(&cli.global, &u, printer).await,
        Command::Status(s) => status::run(&cli.global, &s, printer).await,
        Command::Why(w) => why::run(&cli.global, &w, printer).await,
        Command::Watch(w) => watch::run(&cli.global, &w, printer).await,
    }
}

/// Loads the project the global options describe, printing its warnings;
/// on failure prints the error and gives the exit status to return.
fn load_project(
    global: &super::args::GlobalArgs,
    env: &std::collections::HashMap<String, String>,
    printer: &Printer,
) -> Result<crate::compose::Project, ExitStatus> {
    match super::settings::load_project(global, env) {
        Ok(p) => {
            super::report_warnings(printer, &p.warnings);
            Ok(p)
        }
        Err(e) => {
            super::report_error(printer, &e, None);
            Err(ExitStatus::Error)
        }
    }
}

/// Connects to the builder the options name; on failure prints the error
/// (with its hint) and gives the exit status to return.
async fn connect(
    global: &super::args::GlobalArgs,
    env: &std::collections::HashMap<String, String>,
    printer: &Printer,
) -> Result<crate::buildkit::Client, ExitStatus> {
    let address = super::settings::address(global, env).map_err(|e| {
        super::report_error(printer, &e, None);
        ExitStatus::Error
    })?;
    crate::buildkit::Client::connect(address)
        .await
        .map_err(|e| {
            let hint = e.hint();
            super::report_error(printer, &e.into(), hint.as_deref());
            ExitStatus::Failure
        })
}
