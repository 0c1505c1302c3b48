//! `cbuild push [SERVICE...]`.

use crate::cli::args::{GlobalArgs, PushArgs};
use crate::cli::{report_error, settings, ExitStatus};
use crate::engine::Engine;
use crate::orchestrate::push::{push_services, Pushed, Pusher};
use crate::orchestrate::{self, BuildOptions};
use crate::ui::Printer;

pub async fn run(global: &GlobalArgs, args: &PushArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let opts = BuildOptions {
        services: args.services.clone(),
        environment: env.clone(),
        cache_dir: Some(crate::context::cache::default_cache_dir()),
        push: true,
        ..Default::default()
    };
    let builds = match orchestrate::plan(&project, &opts) {
        Ok(b) => b,
        Err(e) => {
            report_error(printer, &e.into(), None);
            return ExitStatus::Error;
        }
    };
    let engine = match Engine::connect(
        &settings::docker_host(&env),
        settings::docker_tls(&env).as_ref(),
    )
    .await
    {
        Ok(e) => e,
        Err(e) => {
            report_error(
                printer,
                &e.into(),
                Some("`cbuild push` pushes the images the Docker engine of DOCKER_HOST holds"),
            );
            return ExitStatus::Failure;
        }
    };
    let results = push_services(&builds, &engine, &Pusher::for_engine(Some(&engine)).await).await;
    let mut failed = false;
    for (service, r) in &results {
        match r {
            Pushed::Now(m) => {
                for (name, digest) in m {
                    if !args.quiet {
                        printer.always(&format!("{service}: pushed {name} ({digest})"));
                    }
                }
            }
            Pushed::AlreadyThere => {
                if !args.quiet {
                    printer.always(&format!("{service}: up to date in the registry"));
                }
            }
            Pushed::Skipped(why) => printer.note(&format!("{service}: skipped, {why}")),
            Pushed::Failed(e) => {
                failed = true;
                printer.always(&format!("error: {}", e.message));
                printer.hint(&e.hint);
            }
        }
    }
    if failed && !args.ignore_push_failures {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}
