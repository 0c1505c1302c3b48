//! Flags plus environment → the typed options the lower layers take.

use std::collections::HashMap;
use std::io::IsTerminal;

use crate::buildkit::Address;
use crate::compose::LoadOptions;

use super::args::{BuildArgs, GlobalArgs, Progress};

/// The process environment as a map.
pub fn environment() -> HashMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// How to load the project.
pub fn load_options(g: &GlobalArgs, env: &HashMap<String, String>) -> anyhow::Result<LoadOptions> {
    // COMPOSE_PROFILES is read by the loader, which also sees `.env`.
    let profiles = g.profiles.clone();
    Ok(LoadOptions {
        files: g.files.clone(),
        project_name: g.project_name.clone(),
        project_directory: g.project_directory.clone(),
        env_files: g.env_files.clone(),
        profiles,
        services: Vec::new(),
        cwd: std::env::current_dir()?,
        environment: env.clone(),
    })
}

/// The builder address from `--builder`, `BUILDKIT_HOST` and `DOCKER_HOST`.
pub fn address(g: &GlobalArgs, env: &HashMap<String, String>) -> anyhow::Result<Address> {
    Ok(Address::resolve(
        g.builder.as_deref(),
        env.get("BUILDKIT_HOST").map(String::as_str),
        env.get("DOCKER_HOST").map(String::as_str),
    )?)
}

/// The Docker Engine API address (for image look-ups and `doctor`).
pub fn docker_host(env: &HashMap<String, String>) -> String {
    env.get("DOCKER_HOST")
        .filter(|h| !h.is_empty())
        .cloned()
        .unwrap_or_else(|| {
            format!(
                "unix://{}",
                crate::buildkit::transport::DEFAULT_DOCKER_SOCKET
            )
        })
}

/// `--build-arg KEY[=VALUE]` values.
pub fn build_args(b: &BuildArgs) -> Vec<(String, Option<String>)> {
    parse_build_args(&b.build_args)
}

/// `KEY[=VALUE]` words as pairs.
pub fn parse_build_args(words: &[String]) -> Vec<(String, Option<String>)> {
    words
        .iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        })
        .collect()
}

/// The progress mode actually used.
pub fn progress(g: &GlobalArgs, b: &BuildArgs) -> Progress {
    if b.quiet {
        return Progress::Quiet;
    }
    match g.progress {
        Progress::Auto if std::io::stderr().is_terminal() => Progress::Tty,
        Progress::Auto => Progress::Plain,
        p => p,
    }
}

/// Loads the project the global options describe.
pub fn load_project(
    g: &GlobalArgs,
    env: &HashMap<String, String>,
) -> anyhow::Result<crate::compose::Project> {
    let opts = load_options(g, env)?;
    Ok(crate::compose::load(&opts)?)
}

/// The `docker` CLI on `PATH`, if there is one.
pub fn docker_cli(env: &HashMap<String, String>) -> Option<std::path::PathBuf> {
    let path = env.get("PATH")?;
    std::env::split_paths(path)
        .map(|d| d.join("docker"))
        .find(|p| p.is_file())
}
