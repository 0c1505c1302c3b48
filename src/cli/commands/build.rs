//! `cbuild build [SERVICE...]`.

use crate::cli::args::{BuildArgs, GlobalArgs, TransportArg};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::{self, BuildOptions, Transport};
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, args: &BuildArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    // Services named on the command line enable their profiles, as in compose.
    let load = settings::load_options(global, &env).and_then(|mut o| {
        o.services = args.services.clone();
        Ok(crate::compose::load(&o)?)
    });
    let project = match load {
        Ok(p) => {
            crate::cli::report_warnings(printer, &p.warnings);
            p
        }
        Err(e) => {
            report_error(printer, &e, None);
            return ExitStatus::Error;
        }
    };
    let opts = options(args, &env);
    let builds = match orchestrate::plan(&project, &opts) {
        Ok(b) => b,
        Err(e) => {
            report_error(printer, &e.into(), None);
            return ExitStatus::Error;
        }
    };
    if builds.is_empty() {
        printer.note(&format!(
            "no service of project `{}` has a `build:` section; nothing to build",
            project.name
        ));
        return ExitStatus::Success;
    }
    if args.dry_run {
        ui::summary::dry_run(printer, &builds);
        return ExitStatus::Success;
    }
    let client = match super::connect(global, &env, printer).await {
        Ok(c) => c,
        Err(status) => return status,
    };
    // The engine whose image store receives the images and tells whether
    // a build can be skipped: the builder's own when it is a Docker engine
    // (a named builder may be another one than DOCKER_HOST's), else the
    // Docker CLI's, where tarball exports are loaded.
    let (host, tls) = settings::engine_for(client.address(), &env);
    let target = match orchestrate::export::connect_target(&client, &host, tls.as_ref()).await {
        Ok(t) => t,
        // Images that only go to a registry need no engine.
        Err(_) if args.push && builds.iter().all(|b| b.push) => orchestrate::export::Target {
            choice: orchestrate::export::decide(false, None, &client.workers(), None),
            engine: None,
            engine_version: None,
            engine_problem: None,
        },
        Err(e) => {
            let hint = e.hint();
            report_error(printer, &e.into(), Some(&hint));
            return ExitStatus::Failure;
        }
    };
    if builds.iter().any(|b| b.push) {
        let is_engine = client.address().is_docker();
        let builder = client.address().to_string();
        if let Err(e) = orchestrate::export::can_push(is_engine, &target.choice, &builder) {
            let hint = e.hint();
            report_error(printer, &e.into(), Some(&hint));
            return ExitStatus::Failure;
        }
    }
    let mut builds = builds;
    orchestrate::export::retarget(&mut builds, target.choice.exporter);
    orchestrate::export::retarget_push(&mut builds, &target.choice);
    let workers = client.workers();
    if let Err(e) = orchestrate::export::check(
        &builds,
        &target.choice,
        &client.address().to_string(),
        &workers,
    ) {
        let hint = e.hint.clone();
        report_error(printer, &e.into(), Some(&hint));
        return ExitStatus::Failure;
    }
    let engine = target.engine;
    let (trigger, shutdown) = orchestrate::Shutdown::new();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            trigger.request();
            // A second Ctrl-C does not wait for the builds to wind down.
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let results = orchestrate::run(
        &client,
        engine,
        builds,
        opts.parallel,
        printer.reporter(),
        shutdown.clone(),
    )
    .await;
    ctrl_c.abort();
    if shutdown.is_requested() {
        printer.always("cancelled: the running builds were stopped and tagged nothing");
        return ExitStatus::Cancelled;
    }
    if let Some(path) = &args.metadata_file {
        let text = serde_json::to_string_pretty(&orchestrate::event::metadata(&results))
            .unwrap_or_default();
        if let Err(e) = fs_err::write(path, text) {
            report_error(
                printer,
                &anyhow::Error::from(e).context("cannot write the metadata file"),
                None,
            );
            return ExitStatus::Error;
        }
    }
    ui::summary::print(printer, &results);
    if results.iter().any(|(_, o)| o.error.is_some()) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}

/// The build options `args` and the environment give.
pub(super) fn options(
    args: &BuildArgs,
    env: &std::collections::HashMap<String, String>,
) -> BuildOptions {
    BuildOptions {
        services: args.services.clone(),
        no_cache: args.no_cache,
        pull: args.pull,
        build_args: settings::build_args(args),
        environment: env.clone(),
        parallel: args.parallel.unwrap_or(0),
        cache_dir: Some(crate::context::cache::default_cache_dir()),
        transport: match args.transport {
            TransportArg::Filesync => Transport::FileSync,
            TransportArg::Tar => Transport::Tar { gzip: false },
            TransportArg::TarGz => Transport::Tar { gzip: true },
        },
        ssh: args.ssh.clone(),
        push: args.push,
        session_over_control: env.get("CBUILD_SESSION_TRANSPORT").map(String::as_str)
            == Some("grpc"),
        platforms: args.platforms.clone(),
        provenance: args.provenance.clone(),
        sbom: args.sbom.clone(),
    }
}
