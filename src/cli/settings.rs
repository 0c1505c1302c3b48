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

/// The builder from `--builder`, `BUILDX_BUILDER`, `BUILDKIT_HOST` and
/// the Docker configuration (see [`super::builders`]), with TLS from
/// `--tls*` (buildkitd) and the environment (Docker).
pub fn builder(
    g: &GlobalArgs,
    env: &HashMap<String, String>,
) -> anyhow::Result<super::builders::Resolved> {
    let tls = TlsChoice {
        buildkit: buildkit_tls(g),
        docker: super::builders::env_docker_tls(env),
    };
    Ok(super::builders::resolve(
        g.builder.first().map(String::as_str),
        env,
        &tls,
    )?)
}

/// The builders of a pool: `values` (from `origin`), else the one
/// [`builder`] finds (several for a buildx builder of several nodes).
pub fn builders(
    g: &GlobalArgs,
    values: &[String],
    origin: &str,
    env: &HashMap<String, String>,
) -> anyhow::Result<Vec<super::builders::Resolved>> {
    let tls = TlsChoice {
        buildkit: buildkit_tls(g),
        docker: super::builders::env_docker_tls(env),
    };
    Ok(super::builders::resolve_pool(values, origin, env, &tls)?)
}

/// The builder's address (see [`builder`]).
pub fn address(g: &GlobalArgs, env: &HashMap<String, String>) -> anyhow::Result<Address> {
    Ok(builder(g, env)?.address)
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

/// The Docker engine the Docker CLI would use: `DOCKER_HOST`, else the
/// current Docker context, else the default socket. A broken context
/// configuration falls back to the environment here; resolving the
/// builder reports it.
fn docker_endpoint(env: &HashMap<String, String>) -> super::builders::DockerEndpoint {
    let config = super::builders::DockerConfig::from_env(env);
    super::builders::docker_endpoint(env, &config).unwrap_or_else(|_| {
        super::builders::DockerEndpoint {
            host: env
                .get("DOCKER_HOST")
                .filter(|h| !h.is_empty())
                .cloned()
                .unwrap_or_else(|| {
                    format!(
                        "unix://{}",
                        crate::buildkit::transport::DEFAULT_DOCKER_SOCKET
                    )
                }),
            tls: super::builders::env_docker_tls(env),
            source: String::new(),
        }
    })
}

/// TLS files for the Docker engine (see [`docker_host`]).
pub fn docker_tls(env: &HashMap<String, String>) -> Option<TlsFiles> {
    docker_endpoint(env).tls
}

/// The Docker Engine API address (for image look-ups and `doctor`).
pub fn docker_host(env: &HashMap<String, String>) -> String {
    docker_endpoint(env).host
}

/// The engine whose image store a build lands in: the builder's own
/// engine when it is a Docker engine, else the Docker CLI's.
pub fn engine_for(address: &Address, env: &HashMap<String, String>) -> (String, Option<TlsFiles>) {
    super::builders::engine_of(address).unwrap_or_else(|| {
        let ep = docker_endpoint(env);
        (ep.host, ep.tls)
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
