//! `cbuild up`: build what is stale, then `docker compose up --no-build`
//! with the same project and the remaining arguments.

use crate::cli::args::{BuildArgs, GlobalArgs, UpArgs};
use crate::cli::{report_error, settings, ExitStatus};
use crate::ui::Printer;

pub async fn run(global: &GlobalArgs, args: &UpArgs, printer: &Printer) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env, printer) {
        Ok(p) => p,
        Err(status) => return status,
    };
    if project.files.iter().any(|f| f.as_os_str() == "-") {
        report_error(
            printer,
            &anyhow::anyhow!("`cbuild up` cannot hand a Compose file read from standard input to `docker compose`"),
            Some("write it to a file and pass it with `-f`"),
        );
        return ExitStatus::Error;
    }
    // Which services: the words after `up` that name services.
    let named: Vec<&String> = args
        .rest
        .iter()
        .filter(|a| !a.starts_with('-') && project.services.contains_key(a.as_str()))
        .collect();
    let buildable: Vec<String> = named
        .iter()
        .filter(|s| project.services[s.as_str()].build.is_some())
        .map(|s| s.to_string())
        .collect();
    let any_build = project.services.values().any(|s| s.build.is_some());
    if (named.is_empty() && any_build) || !buildable.is_empty() {
        let build = BuildArgs {
            services: buildable,
            build_args: args.build.build_args.clone(),
            no_cache: args.build.no_cache,
            ..Default::default()
        };
        let status = super::build::run(global, &build, printer).await;
        if status != ExitStatus::Success {
            return status;
        }
    }

    let compose_ok = tokio::process::Command::new("docker")
        .args(["compose", "version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if !compose_ok {
        report_error(
            printer,
            &anyhow::anyhow!("`docker compose` is not available, and `cbuild up` runs `docker compose up` to start the containers"),
            Some("install the Docker Compose plugin (Debian: `docker-compose` 2.x), or run `cbuild build` and start the containers yourself"),
        );
        return ExitStatus::Failure;
    }
    let mut cmd = tokio::process::Command::new("docker");
    cmd.arg("compose");
    for f in &project.files {
        cmd.arg("-f").arg(f);
    }
    cmd.arg("-p").arg(&project.name);
    cmd.arg("--project-directory").arg(&project.working_dir);
    for e in &global.env_files {
        cmd.arg("--env-file").arg(e);
    }
    for p in &global.profiles {
        cmd.arg("--profile").arg(p);
    }
    cmd.arg("up").arg("--no-build").args(&args.rest);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            report_error(
                printer,
                &anyhow::Error::from(e).context("cannot run `docker compose up`"),
                None,
            );
            return ExitStatus::Failure;
        }
    };
    // Ctrl-C reaches `docker compose` too (same process group); let it
    // stop its containers and wait for it.
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            _ = tokio::signal::ctrl_c() => continue,
        }
    };
    match status {
        Ok(s) if s.success() => ExitStatus::Success,
        Ok(s) if s.code() == Some(130) => ExitStatus::Cancelled,
        _ => ExitStatus::Failure,
    }
}
