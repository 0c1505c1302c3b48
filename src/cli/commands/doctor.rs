//! `cbuild doctor`: which engine and builder cbuild would use, their
//! versions and platforms, and what is wrong when something is.

use crate::buildkit::Client;
use crate::cli::args::GlobalArgs;
use crate::cli::{report_error, settings, ExitStatus};

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
    match Client::connect(address).await {
        Ok(client) => {
            let host = settings::docker_host(&env);
            let target = crate::orchestrate::export::connect_target(
                &client,
                &host,
                settings::docker_tls(&env).as_ref(),
            )
            .await;
            let mut engine_version = None;
            match target {
                Ok(t) => {
                    if let Some(v) = &t.engine_version {
                        engine_version = Some(v.version.clone());
                        println!(
                            "engine:    Docker {} (API {}) at {host}, storage driver {}{}",
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
                    if let Some(e) = t.engine_problem {
                        ok = false;
                        report_error(
                            &e.into(),
                            Some("builds still run, but none can be skipped as up to date"),
                        );
                    }
                    println!("exporter:  {}", t.choice.exporter.kind());
                    println!("images:    {}", t.choice.store);
                }
                Err(e) => {
                    ok = false;
                    let hint = e.hint();
                    report_error(&e.into(), Some(&hint));
                }
            }
            match client.info().await {
                Ok(info) => {
                    println!(
                        "buildkit:  {}",
                        crate::orchestrate::export::version_text(
                            info.buildkit_version.as_deref(),
                            engine_version
                                .as_deref()
                                .filter(|_| client.address().is_docker()),
                        )
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
            }
        }
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
