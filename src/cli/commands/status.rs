//! `cbuild status`: whether images are up to date with the source and
//! containers run them.
//!
//! It looks where `build` puts the images: the builder's own engine when
//! one builder (`--builder`, else `x-cbuild: builders`) is a Docker
//! engine, else the Docker CLI's. The builder is no input of a build (any
//! builder makes the same image from the same inputs, see
//! `orchestrate::fresh`), so it changes nothing else.

use std::collections::HashMap;

use crate::cli::args::{GlobalArgs, StatusArgs, StatusFormat};
use crate::cli::{report_error, settings, ExitStatus};
use crate::engine::Engine;
use crate::orchestrate::{status::status, BuildOptions};
use crate::tls::TlsFiles;
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, args: &StatusArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let (host, tls) = match images_engine(global, &project, &env) {
        Ok(e) => e,
        Err(e) => {
            report_error(printer, &e, None);
            return ExitStatus::Error;
        }
    };
    let engine = match Engine::connect(&host, tls.as_ref()).await {
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
    // The options that are inputs of a build, as `build` takes them: a
    // status judges the build those options would run.
    let opts = BuildOptions {
        services: args.services.clone(),
        platforms: args.platforms.clone(),
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

/// The engine whose image store `build` would tag the images in. A pool
/// of several builders keeps its images in the Docker CLI's engine.
fn images_engine(
    global: &GlobalArgs,
    project: &crate::compose::Project,
    env: &HashMap<String, String>,
) -> anyhow::Result<(String, Option<TlsFiles>)> {
    let (values, origin) = if global.builder.is_empty() {
        (
            super::build::x_cbuild_builders(project)?,
            "`x-cbuild: builders` in the Compose file",
        )
    } else {
        (global.builder.clone(), "--builder")
    };
    let pool = settings::builders(global, &values, origin, env)?;
    Ok(match pool.as_slice() {
        [one] => settings::engine_for(&one.address, env),
        _ => (settings::docker_host(env), settings::docker_tls(env)),
    })
}
