//! `cbuild why [SERVICE...]`: which steps the next build re-runs and why (`--last`: what the
//! last build ran; `--advise`: where the Dockerfile wastes the cache; `--history`: the last
//! builds, with their times and triggers).

use crate::cli::args::{GlobalArgs, StatusFormat, WhyArgs};
use crate::cli::{report_error, settings, ExitStatus};
use crate::engine::Engine;
use crate::orchestrate::{why, BuildOptions};
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, args: &WhyArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let opts = BuildOptions {
        services: args.services.clone(),
        build_args: settings::parse_build_args(&args.build_args),
        environment: env.clone(),
        cache_dir: Some(crate::context::cache::default_cache_dir()),
        ..Default::default()
    };
    let json = args.format == StatusFormat::Json;
    let printed = if args.history {
        why::history(&project, &opts).map(|r| {
            for h in &r {
                if let Some(why) = &h.unreadable {
                    printer.warning(&format!(
                        "{why}; it is ignored, and the next build of `{}` starts a new one",
                        h.service
                    ));
                }
            }
            ui::why::print_history(printer, &r, json)
        })
    } else if args.last {
        why::last(&project, &opts).map(|r| ui::why::print_last(printer, &r, json))
    } else if args.advise {
        let result = tokio::task::spawn_blocking(move || why::advise(&project, &opts)).await;
        match result {
            Ok(r) => r.map(|r| ui::why::print_advice(printer, &r, json)),
            Err(e) => {
                report_error(printer, &anyhow::anyhow!("the advice panicked: {e}"), None);
                return ExitStatus::Error;
            }
        }
    } else {
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
                    Some("`cbuild why` reads the Docker engine's images (`--advise` and `--last` do not)"),
                );
                return ExitStatus::Failure;
            }
        };
        why::why(&project, &opts, &engine)
            .await
            .map(|r| ui::why::print(printer, &r, json))
    };
    match printed {
        Ok(Ok(())) => ExitStatus::Success,
        Ok(Err(e)) => {
            report_error(printer, &e.into(), None);
            ExitStatus::Error
        }
        Err(e) => {
            report_error(printer, &e.into(), None);
            ExitStatus::Error
        }
    }
}
