//! `cbuild up`: build what is stale, then `docker compose up --no-build`
//! with the same project and the remaining arguments.

use crate::cli::args::{BuildArgs, GlobalArgs, UpArgs};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::up::{self, UpError, UpOutcome};
use crate::ui::Printer;

pub async fn run(global: &GlobalArgs, args: &UpArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let failed = |e: UpError, status| {
        let hint = e.hint();
        report_error(printer, &e.into(), hint);
        status
    };
    if let Err(e) = up::check(&project) {
        return failed(e, ExitStatus::Error);
    }
    if let Some(services) = up::services_to_build(&project, &args.rest) {
        let build = BuildArgs {
            services,
            build_args: args.build.build_args.clone(),
            no_cache: args.build.no_cache,
            ..Default::default()
        };
        let status = super::build::run(global, &build, printer).await;
        if status != ExitStatus::Success {
            return status;
        }
    }
    match up::compose_up(&project, &global.env_files, &global.profiles, &args.rest).await {
        Ok(UpOutcome::Success) => ExitStatus::Success,
        Ok(UpOutcome::Interrupted) => ExitStatus::Cancelled,
        Ok(UpOutcome::Failed) => ExitStatus::Failure,
        Err(e) => failed(e, ExitStatus::Failure),
    }
}
