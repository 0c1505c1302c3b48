//! `up`: which services to build before starting, and the hand-off to
//! `docker compose up --no-build` with the same project.

use std::path::PathBuf;

use crate::compose::Project;

/// The services to build before `docker compose up ARGS`: `None` when
/// nothing needs building; `Some(empty)` means every service with a
/// `build:` section (no service named).
pub fn services_to_build(project: &Project, args: &[String]) -> Option<Vec<String>> {
    // The words of ARGS that name services (the rest are compose's flags).
    let named: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with('-') && project.services.contains_key(a.as_str()))
        .collect();
    let buildable: Vec<String> = named
        .iter()
        .filter(|s| project.services[s.as_str()].build.is_some())
        .map(|s| s.to_string())
        .collect();
    let any_build = project.services.values().any(|s| s.build.is_some());
    ((named.is_empty() && any_build) || !buildable.is_empty()).then_some(buildable)
}

/// Why `docker compose up` could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// A Compose file came from standard input, which cannot be handed on.
    #[error("`cbuild up` cannot hand a Compose file read from standard input to `docker compose`")]
    Stdin,
    /// `docker compose version` failed.
    #[error("`docker compose` is not available, and `cbuild up` runs `docker compose up` to start the containers")]
    NoCompose,
    /// The command could not be started.
    #[error("cannot run `docker compose up`")]
    Spawn(#[source] std::io::Error),
}

impl UpError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            UpError::Stdin => Some("write it to a file and pass it with `-f`"),
            UpError::NoCompose => Some("install the Docker Compose plugin (Debian: `docker-compose` 2.x), or run `cbuild build` and start the containers yourself"),
            UpError::Spawn(_) => None,
        }
    }
}

/// Checks that `docker compose up` can be handed this project; done before
/// building, so a missing plugin is said at once.
pub fn check(project: &Project) -> Result<(), UpError> {
    if project.files.iter().any(|f| f.as_os_str() == "-") {
        return Err(UpError::Stdin);
    }
    Ok(())
}

/// How `docker compose up` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpOutcome {
    /// It exited 0.
    Success,
    /// It was interrupted (exit 130).
    Interrupted,
    /// It failed.
    Failed,
}

/// Runs `docker compose up --no-build ARGS` for the project (its files,
/// name, directory, env files and profiles) and waits for it.
pub async fn compose_up(
    project: &Project,
    env_files: &[PathBuf],
    profiles: &[String],
    args: &[String],
) -> Result<UpOutcome, UpError> {
    let compose_ok = tokio::process::Command::new("docker")
        .args(["compose", "version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    if !compose_ok {
        return Err(UpError::NoCompose);
    }
    let mut cmd = compose_command(project, env_files, profiles);
    cmd.arg("up").arg("--no-build").args(args);
    let mut child = cmd.spawn().map_err(UpError::Spawn)?;
    // Ctrl-C reaches `docker compose` too (same process group); let it
    // stop its containers and wait for it.
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            _ = tokio::signal::ctrl_c() => continue,
        }
    };
    Ok(match status {
        Ok(s) if s.success() => UpOutcome::Success,
        Ok(s) if s.code() == Some(130) => UpOutcome::Interrupted,
        _ => UpOutcome::Failed,
    })
}

/// `docker compose` with the project's files, name, directory, env files
/// and profiles, as `cbuild` was given them.
fn compose_command(
    project: &Project,
    env_files: &[PathBuf],
    profiles: &[String],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.arg("compose");
    for f in &project.files {
        cmd.arg("-f").arg(f);
    }
    cmd.arg("-p").arg(&project.name);
    cmd.arg("--project-directory").arg(&project.working_dir);
    for e in env_files {
        cmd.arg("--env-file").arg(e);
    }
    for p in profiles {
        cmd.arg("--profile").arg(p);
    }
    cmd
}

/// Runs `docker compose up --no-build ARGS` with its output kept (for
/// `cbuild watch`, whose lines own the terminal); on failure, the error
/// is compose's last line of output.
pub async fn compose_up_captured(
    project: &Project,
    env_files: &[PathBuf],
    profiles: &[String],
    args: &[String],
) -> Result<(), String> {
    let mut cmd = compose_command(project, env_files, profiles);
    cmd.arg("--progress").arg("quiet");
    cmd.arg("up").arg("--no-build").args(args);
    cmd.stdin(std::process::Stdio::null());
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run `docker compose up`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(format!("`docker compose up` failed: {}", last.trim()))
}
