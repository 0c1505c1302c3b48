//! `cbuild bench [SERVICE...]`: measurements per service, as a table or
//! JSON on stdout (see [`crate::bench`]).

use crate::bench::{bench, BenchOptions};
use crate::cli::args::{BenchArgs, GlobalArgs, StatusFormat};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::BuildOptions;
use crate::ui::{self, Printer};

pub async fn run(global: &GlobalArgs, args: &BenchArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let client = match super::connect(global, &env, printer).await {
        Ok(c) => c,
        Err(status) => return status,
    };
    let opts = BenchOptions {
        services: args.services.clone(),
        runs: args.runs,
        build: BuildOptions {
            build_args: settings::parse_build_args(&args.build_args),
            environment: env.clone(),
            session_over_control: env.get("CBUILD_SESSION_TRANSPORT").map(String::as_str)
                == Some("grpc"),
            ..Default::default()
        },
        docker: (!args.no_docker && client.address().is_docker())
            .then(|| settings::docker_cli(&env))
            .flatten(),
    };
    let note = |s: &str| printer.note(&format!("bench: {s}"));
    let report = tokio::select! {
        r = bench(&client, &project, &opts, &note) => r,
        _ = tokio::signal::ctrl_c() => {
            printer.always("cancelled");
            return ExitStatus::Cancelled;
        }
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            report_error(printer, &e.into(), None);
            return ExitStatus::Failure;
        }
    };
    match ui::bench::print(printer, &report, args.format == StatusFormat::Json) {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            report_error(printer, &e.into(), None);
            ExitStatus::Error
        }
    }
}
