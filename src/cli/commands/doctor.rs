//! `cbuild doctor`: which engine and builder cbuild would use, their
//! versions and platforms, and what is wrong when something is.

use crate::buildkit::Client;
use crate::cli::args::GlobalArgs;
use crate::cli::{report_error, settings, ExitStatus};
use crate::engine::Engine;

pub async fn run(global: &GlobalArgs) -> ExitStatus {
    let env = settings::environment();
    println!("cbuild {}", env!("CARGO_PKG_VERSION"));
    let address = match settings::address(global, &env) {
        Ok(a) => a,
        Err(e) => {
            report_error(&e, None);
            return ExitStatus::Error;
        }
    };
    println!("builder:   {address}");
    let mut ok = true;
    let mut engine_version = None;
    if address.is_docker() {
        let host = settings::docker_host(&env);
        match Engine::connect(&host, settings::docker_tls(&env).as_ref()).await {
            Ok(engine) => match engine.version().await {
                Ok(v) => {
                    engine_version = Some(v.version.clone());
                    println!(
                        "engine:    Docker {} (API {}), storage driver {}{}",
                        v.version,
                        v.api_version,
                        v.storage_driver,
                        if v.containerd_store {
                            " (containerd image store)"
                        } else {
                            ""
                        }
                    );
                }
                Err(e) => {
                    ok = false;
                    report_error(&e.into(), None);
                }
            },
            Err(e) => {
                ok = false;
                report_error(&e.into(), None);
            }
        }
    }
    match Client::connect(address).await {
        Ok(client) => match client.info().await {
            Ok(info) => {
                let reported = info
                    .buildkit_version
                    .clone()
                    .filter(|v| !v.starts_with("v0.0.0"));
                let embedded = engine_version
                    .as_deref()
                    .and_then(crate::engine::embedded_buildkit)
                    .map(|v| format!("{v} (embedded in this Docker release)"));
                println!(
                    "buildkit:  {}",
                    reported.or(embedded).unwrap_or_else(|| {
                        "unknown (older than v0.11, which added the Info call)".into()
                    })
                );
                for w in &info.workers {
                    println!("worker:    {} [{}]", w.id, w.platforms.join(", "));
                }
                if info.workers.is_empty() {
                    ok = false;
                    println!("problem:   the builder has no workers");
                }
            }
            Err(e) => {
                ok = false;
                let hint = e.hint();
                report_error(&e.into(), hint.as_deref());
            }
        },
        Err(e) => {
            ok = false;
            let hint = e.hint();
            report_error(&e.into(), hint.as_deref());
        }
    }
    if ok {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    }
}
