//! One file per command; each is a thin wrapper around `orchestrate`,
//! `compose` or `buildkit`.

mod bench;
mod build;
mod config;
mod context;
mod doctor;
mod status;
mod up;

use super::args::{Cli, Command};
use super::ExitStatus;

/// Runs the command `cli` names (`build` when none).
pub async fn dispatch(cli: Cli) -> ExitStatus {
    match cli.command {
        Command::Bench(b) => bench::run(&cli.global, &b).await,
        Command::Build(b) => build::run(&cli.global, &b).await,
        Command::Config(c) => config::run(&cli.global, &c),
        Command::Context(c) => context::run(&cli.global, &c).await,
        Command::Doctor => doctor::run(&cli.global).await,
        Command::Up(u) => up::run(&cli.global, &u).await,
        Command::Status(s) => status::run(&cli.global, &s).await,
    }
}

/// Loads the project the global options describe, printing its warnings;
/// on failure prints the error and gives the exit status to return.
fn load_project(
    global: &super::args::GlobalArgs,
    env: &std::collections::HashMap<String, String>,
) -> Result<crate::compose::Project, ExitStatus> {
    match super::settings::load_project(global, env) {
        Ok(p) => {
            super::report_warnings(&p.warnings);
            Ok(p)
        }
        Err(e) => {
            super::report_error(&e, None);
            Err(ExitStatus::Error)
        }
    }
}
