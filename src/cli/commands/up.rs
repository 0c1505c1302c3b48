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
    if args.build.watch || args.rest.iter().any(|a| a == "--watch") {
        return up_watch(global, args, project, printer).await;
    }
    if let Some(services) = up::services_to_build(&project, &args.rest) {
        let build = BuildArgs {
            services,
            build_args: args.build.build_args.clone(),
            no_cache: args.build.no_cache,
            remote_records: args.build.remote_records,
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

/// `cbuild up --watch [SERVICE...]`: build and start detached the services
/// with `develop.watch` (among those named), then watch them.
async fn up_watch(
    global: &GlobalArgs,
    args: &UpArgs,
    project: crate::compose::Project,
    printer: &Printer,
) -> ExitStatus {
    let named: Vec<String> = args
        .rest
        .iter()
        .filter(|a| !a.starts_with('-') && project.services.contains_key(a.as_str()))
        .cloned()
        .collect();
    let watched = match crate::orchestrate::watch::prepare(&project, &named) {
        Ok(w) => w,
        Err(e) => {
            report_error(printer, &e.into(), None);
            return ExitStatus::Error;
        }
    };
    let names: Vec<String> = watched.iter().map(|s| s.name.clone()).collect();
    let status = super::watch::up(global, &project, &names, &args.build.build_args, printer).await;
    if status != ExitStatus::Success {
        return status;
    }
    super::watch::watch_services(global, project, watched, &args.build.build_args, printer).await
}
