//! Flags plus environment → the typed options the lower layers take.

use std::collections::HashMap;
use std::io::IsTerminal;

use crate::buildkit::tls::TlsFiles;
use crate::buildkit::{Address, TlsChoice};
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

/// The builder address from `--builder`, `BUILDKIT_HOST` and `DOCKER_HOST`,
/// with TLS from `--tls*` (buildkitd) and `DOCKER_TLS_VERIFY` (Docker).
pub fn address(g: &GlobalArgs, env: &HashMap<String, String>) -> anyhow::Result<Address> {
    let tls = TlsChoice {
        buildkit: buildkit_tls(g),
        docker: docker_tls(env),
    };
    Ok(Address::resolve(
        g.builder.as_deref(),
        env.get("BUILDKIT_HOST").map(String::as_str),
        env.get("DOCKER_HOST").map(String::as_str),
        &tls,
    )?)
}

/// TLS files for a buildkitd from `--tlsdir` and the `--tls*` flags.
fn buildkit_tls(g: &GlobalArgs) -> Option<TlsFiles> {
    let mut t = g
        .tlsdir
        .as_deref()
        .map(TlsFiles::from_dir)
        .unwrap_or_default();
    if let Some(ca) = &g.tlscacert {
        t.ca = Some(ca.clone());
    }
    if let Some(cert) = &g.tlscert {
        t.cert = Some(cert.clone());
    }
    if let Some(key) = &g.tlskey {
        t.key = Some(key.clone());
    }
    if let Some(name) = &g.tlsservername {
        t.server_name = Some(name.clone());
    }
    (t.is_set() || g.tlsdir.is_some()).then_some(t)
}

/// TLS files for the Docker engine, as the Docker CLI finds them: with
/// `DOCKER_TLS_VERIFY` set, `ca.pem`, `cert.pem` and `key.pem` in
/// `DOCKER_CERT_PATH` (default `~/.docker`).
pub fn docker_tls(env: &HashMap<String, String>) -> Option<TlsFiles> {
    env.get("DOCKER_TLS_VERIFY").filter(|v| !v.is_empty())?;
    let dir = env
        .get("DOCKER_CERT_PATH")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            env.get("HOME")
                .map(|h| std::path::Path::new(h).join(".docker"))
        })
        .unwrap_or_default();
    let mut t = TlsFiles::from_dir(&dir);
    // The CA is required, as the Docker CLI requires it.
    t.ca = Some(dir.join("ca.pem"));
    Some(t)
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

/// How much to print and how to draw progress: `--progress`, and `-q`
/// of `build`.
pub fn mode(cli: &super::args::Cli) -> crate::ui::Mode {
    use crate::ui::Mode;
    let quiet = matches!(&cli.command, super::args::Command::Build(b) if b.quiet);
    if quiet {
        return Mode::Quiet;
    }
    match cli.global.progress {
        Progress::Auto if std::io::stderr().is_terminal() => Mode::Tty,
        Progress::Auto | Progress::Plain => Mode::Plain,
        Progress::Tty => Mode::Tty,
        Progress::Json => Mode::Json,
        Progress::Quiet => Mode::Quiet,
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
