//! `cbuild bench [SERVICE...]`: measurements per service, as a table or
//! JSON on stdout (see `orchestrate::bench`).

use crate::buildkit::Client;
use crate::cli::args::{BenchArgs, GlobalArgs, StatusFormat};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::bench::{bench, BenchOptions};
use crate::orchestrate::BuildOptions;

pub async fn run(global: &GlobalArgs, args: &BenchArgs) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let client = match settings::address(global, &env) {
        Ok(a) => match Client::connect(a).await {
            Ok(c) => c,
            Err(e) => {
                let hint = e.hint();
                report_error(&e.into(), hint.as_deref());
                return ExitStatus::Failure;
            }
        },
        Err(e) => {
            report_error(&e, None);
            return ExitStatus::Error;
        }
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
    let quiet = global.progress == crate::cli::args::Progress::Quiet;
    let note = move |s: &str| {
        if !quiet {
            eprintln!("bench: {s}");
        }
    };
    let report = tokio::select! {
        r = bench(&client, &project, &opts, &note) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("cancelled");
            return ExitStatus::Cancelled;
        }
    };
    match report {
        Ok(r) => {
            match args.format {
                StatusFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default())
                }
                StatusFormat::Text => print!("{}", r.table()),
            }
            ExitStatus::Success
        }
        Err(e) => {
            report_error(&e.into(), None);
            ExitStatus::Failure
        }
    }
}
