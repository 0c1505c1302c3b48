//! `cbuild status`: whether images are up to date with the source and
//! containers run them.

use crate::cli::args::{GlobalArgs, StatusArgs, StatusFormat};
use crate::cli::{report_error, settings, ExitStatus};
use crate::engine::Engine;
use crate::orchestrate::{status::status, BuildOptions};
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, args: &StatusArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
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
                Some("`cbuild status` reads the Docker engine's images and containers"),
            );
            return ExitStatus::Failure;
        }
    };
    let opts = BuildOptions {
        services: args.services.clone(),
        environment: env.clone(),
        cache_dir: Some(crate::context::cache::default_cache_dir()),
        ..Default::default()
    };
    let list = match status(&project, &opts, &engine).await {
        Ok(l) => l,
        Err(e) => {
            report_error(printer, &e.into(), None);
            return ExitStatus::Error;
        }
    };
    if let Err(e) = ui::status::print(printer, &list, args.format == StatusFormat::Json) {
        report_error(printer, &e.into(), None);
        return ExitStatus::Error;
    }
    if args.check && list.iter().any(|s| s.needs_attention()) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}
