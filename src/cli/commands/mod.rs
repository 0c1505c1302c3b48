//! One file per command; each is a thin wrapper around `orchestrate`,
//! `compose` or `buildkit`.

mod build;
mod config;
mod doctor;

use super::args::{Cli, Command};
use super::ExitStatus;

/// Runs the command `cli` names (`build` when none).
pub async fn dispatch(cli: Cli) -> ExitStatus {
    match cli.command {
        None => build::run(&cli.global, &cli.build).await,
        Some(Command::Build(b)) => build::run(&cli.global, &b).await,
        Some(Command::Config(c)) => config::run(&cli.global, &c),
        Some(Command::Doctor) => doctor::run(&cli.global).await,
    }
}
