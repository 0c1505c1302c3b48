//! `cbuild watch [SERVICE...]` and the watching half of `cbuild up --watch`.

use crate::cli::args::{BuildArgs, GlobalArgs, WatchArgs};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::{self, watch};
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, args: &WatchArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let watched = match watch::prepare(&project, &args.services) {
        Ok(w) => w,
        Err(e) => {
            let hint = matches!(e, watch::PrepareError::NothingToWatch(_))
                .then_some("add `develop.watch` entries to the service (see compose's file-watch documentation)");
            report_error(printer, &e.into(), hint);
            return ExitStatus::Error;
        }
    };
    let names: Vec<String> = watched.iter().map(|s| s.name.clone()).collect();
    if !args.no_up {
        let status = up(global, &project, &names, &args.build_args, printer).await;
        if status != ExitStatus::Success {
            return status;
        }
    }
    watch_services(global, project, watched, &args.build_args, printer).await
}

/// Builds `services` (and what they depend on) and starts them detached,
/// as `docker compose watch` does before watching.
pub(super) async fn up(
    global: &GlobalArgs,
    project: &crate::compose::Project,
    services: &[String],
    build_args: &[String],
    printer: &Printer,
) -> ExitStatus {
    let build = BuildArgs {
        services: services.to_vec(),
        build_args: build_args.to_vec(),
        ..Default::default()
    };
    let buildable = services
        .iter()
        .any(|s| project.services.get(s).is_some_and(|s| s.build.is_some()));
    if buildable {
        let status = super::build::run(global, &build, printer).await;
        if status != ExitStatus::Success {
            return status;
        }
    }
    let mut up_args = vec!["-d".to_string()];
    up_args.extend(services.iter().cloned());
    match orchestrate::up::compose_up(project, &global.env_files, &global.profiles, &up_args).await
    {
        Ok(orchestrate::up::UpOutcome::Success) => ExitStatus::Success,
        Ok(orchestrate::up::UpOutcome::Interrupted) => ExitStatus::Cancelled,
        Ok(orchestrate::up::UpOutcome::Failed) => ExitStatus::Failure,
        Err(e) => {
            let hint = e.hint();
            report_error(printer, &e.into(), hint);
            ExitStatus::Failure
        }
    }
}

/// Watches until Ctrl-C (exit 130; the containers keep running).
pub(super) async fn watch_services(
    global: &GlobalArgs,
    project: crate::compose::Project,
    watched: Vec<watch::ServiceWatch>,
    build_args: &[String],
    printer: &Printer,
) -> ExitStatus {
    let env = settings::environment();
    let client = match super::connect(global, &env, printer).await {
        Ok(c) => c,
        Err(status) => return status,
    };
    let (host, tls) = settings::engine_for(client.address(), &env);
    let target = match orchestrate::export::connect_target(&client, &host, tls.as_ref()).await {
        Ok(t) => t,
        Err(e) => {
            let hint = e.hint();
            report_error(printer, &e.into(), Some(&hint));
            return ExitStatus::Failure;
        }
    };
    let Some(engine) = target.engine else {
        report_error(
            printer,
            &anyhow::anyhow!("`cbuild watch` needs the Docker engine the containers run in, and none answered at `{host}`"),
            Some("set DOCKER_HOST to the engine that runs the project's containers"),
        );
        return ExitStatus::Failure;
    };
    let build = BuildArgs {
        build_args: build_args.to_vec(),
        ..Default::default()
    };
    let (reporter, build_reporter) = ui::watch::reporters(printer);
    let w = watch::Watch {
        engine,
        client,
        build: super::build::options(&build, &env),
        exporter: target.choice.exporter,
        env_files: global.env_files.clone(),
        profiles: global.profiles.clone(),
        reporter,
        build_reporter,
        project,
    };
    let (trigger, shutdown) = orchestrate::Shutdown::new();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            trigger.request();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let result = watch::run(w, watched, shutdown.clone()).await;
    ctrl_c.abort();
    match result {
        Err(e) => {
            let hint = e.hint();
            report_error(printer, &e.into(), hint.as_deref());
            ExitStatus::Failure
        }
        Ok(()) if shutdown.is_requested() => {
            printer.note("stopped watching; the containers keep running");
            ExitStatus::Cancelled
        }
        Ok(()) => ExitStatus::Success,
    }
}
