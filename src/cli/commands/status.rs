//! `cbuild status`: whether images are up to date with the source and
//! containers run them.

use crate::cli::args::{GlobalArgs, StatusArgs, StatusFormat};
use crate::cli::{report_error, settings, ExitStatus};
use crate::engine::Engine;
use crate::orchestrate::{status::status, BuildOptions};

pub async fn run(global: &GlobalArgs, args: &StatusArgs) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env) {
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
            report_error(&e.into(), None);
            return ExitStatus::Error;
        }
    };
    match args.format {
        StatusFormat::Json => match serde_json::to_string_pretty(&list) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                report_error(&e.into(), None);
                return ExitStatus::Error;
            }
        },
        StatusFormat::Text => {
            for s in &list {
                let mut line = format!("{:<20} {:<10} {}", s.service, s.state, s.image);
                if let Some(r) = &s.reason {
                    line.push_str(&format!("  ({r})"));
                }
                println!("{line}");
                for c in &s.containers {
                    println!(
                        "  container {} {}: {}",
                        c.name,
                        c.state,
                        if c.current_image {
                            "runs the current image"
                        } else {
                            "runs an OLDER image"
                        }
                    );
                }
            }
        }
    }
    if args.check && list.iter().any(|s| s.needs_attention()) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}
