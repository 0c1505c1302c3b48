//! `cbuild context [SERVICE...]`: what each build would send to BuildKit, computed locally.
//!
//! The report goes to stdout (text, or one JSON document with `--format json`: an object with
//! a `services` array of [`crate::orchestrate::ContextReport`]); `hint:` lines go to stderr.

use crate::cli::args::{ContextArgs, ContextFormat, GlobalArgs};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::{self, InspectOptions};
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, args: &ContextArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let opts = InspectOptions {
        services: args.services.clone(),
        build_args: settings::parse_build_args(&args.build_args),
        environment: env,
        cache_dir: Some(crate::context::cache::default_cache_dir()),
        explain: args.explain.clone(),
        top_dirs: 10,
    };
    // Walking and hashing are blocking work.
    let result = tokio::task::spawn_blocking(move || orchestrate::inspect(&project, &opts)).await;
    let reports = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            report_error(printer, &e.into(), None);
            return ExitStatus::Error;
        }
        Err(e) => {
            report_error(
                printer,
                &anyhow::anyhow!("the context inspection panicked: {e}"),
                None,
            );
            return ExitStatus::Error;
        }
    };
    let json = args.format == ContextFormat::Json;
    match ui::context::print(printer, &reports, json) {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            report_error(printer, &e.into(), None);
            ExitStatus::Error
        }
    }
}
