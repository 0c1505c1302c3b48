//! `cbuild build [SERVICE...]`.

use std::sync::Arc;

use crate::buildkit::Client;
use crate::cli::args::{BuildArgs, GlobalArgs, Progress};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::{self, BuildOptions, Reporter};
use crate::ui::{self, json::JsonReporter, plain::PlainReporter};

pub async fn run(global: &GlobalArgs, args: &BuildArgs) -> ExitStatus {
    let env = settings::environment();
    // Services named on the command line enable their profiles, as in compose.
    let load = settings::load_options(global, &env).and_then(|mut o| {
        o.services = args.services.clone();
        Ok(crate::compose::load(&o)?)
    });
    let project = match load {
        Ok(p) => {
            crate::cli::report_warnings(&p.warnings);
            p
        }
        Err(e) => {
            report_error(&e, None);
            return ExitStatus::Error;
        }
    };
    let opts = BuildOptions {
        services: args.services.clone(),
        no_cache: args.no_cache,
        pull: args.pull,
        build_args: settings::build_args(args),
        environment: env.clone(),
        parallel: args.parallel.unwrap_or(0),
    };
    let builds = match orchestrate::plan(&project, &opts) {
        Ok(b) => b,
        Err(e) => {
            report_error(&e.into(), None);
            return ExitStatus::Error;
        }
    };
    if builds.is_empty() {
        eprintln!(
            "no service of project `{}` has a `build:` section; nothing to build",
            project.name
        );
        return ExitStatus::Success;
    }
    let address = match settings::address(global, &env) {
        Ok(a) => a,
        Err(e) => {
            report_error(&e, None);
            return ExitStatus::Error;
        }
    };
    let client = match Client::connect(address).await {
        Ok(c) => c,
        Err(e) => {
            let hint = e.hint();
            report_error(&e.into(), hint.as_deref());
            return ExitStatus::Failure;
        }
    };
    let progress = settings::progress(global, args);
    let reporter: Arc<dyn Reporter> = match progress {
        Progress::Json => Arc::new(JsonReporter),
        Progress::Quiet => Arc::new(PlainReporter::new(true)),
        _ => Arc::new(PlainReporter::new(false)),
    };
    let results = tokio::select! {
        r = orchestrate::run(&client, builds, opts.parallel, reporter) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("cancelled: every running build was stopped");
            return ExitStatus::Cancelled;
        }
    };
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, o)| o.error.is_some())
        .map(|(s, _)| s.as_str())
        .collect();
    if progress != Progress::Json && progress != Progress::Quiet {
        eprintln!();
        for (service, o) in &results {
            match &o.image_id {
                Some(id) => eprintln!(
                    " {service:<20} built    {}  {:<12}  {:>8}  context {} sent",
                    o.image,
                    ui::plain::short_id(id),
                    ui::duration(o.elapsed),
                    ui::bytes(o.transfer.bytes_sent)
                ),
                None => eprintln!(
                    " {service:<20} FAILED   {}  {:>8}",
                    o.image,
                    ui::duration(o.elapsed)
                ),
            }
        }
    }
    if failed.is_empty() {
        ExitStatus::Success
    } else {
        eprintln!(
            "error: {} of {} services failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        );
        ExitStatus::Failure
    }
}
