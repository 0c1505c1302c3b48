//! `doctor`: which engine and builder cbuild would use, their versions and
//! platforms, and what is wrong when something is. `ui::doctor` draws it.

use crate::buildkit::tls::TlsFiles;
use crate::buildkit::{Address, BuildkitError, Client};
use crate::engine::{Engine, EngineError, EngineVersion};

/// What `doctor` found.
#[derive(Debug)]
pub struct Checkup {
    /// The builder address cbuild uses.
    pub builder: Address,
    /// Which setting (and file) named it.
    pub source: String,
    /// The Docker engine behind the builder, when the builder is one.
    pub engine: Option<Result<EngineVersion, EngineError>>,
    /// What the builder says about itself.
    pub buildkit: Result<BuilderInfo, BuildkitError>,
}

/// The builder's version and workers.
#[derive(Debug)]
pub struct BuilderInfo {
    /// BuildKit's version: reported by the daemon, else the one embedded
    /// in the engine's Docker release (marked so), else `None`.
    pub version: Option<String>,
    /// Each worker's id and platforms.
    pub workers: Vec<(String, Vec<String>)>,
}

impl Checkup {
    /// Whether everything answered and the builder can build.
    pub fn ok(&self) -> bool {
        !matches!(self.engine, Some(Err(_)))
            && matches!(&self.buildkit, Ok(b) if !b.workers.is_empty())
    }
}

/// Asks the engine (when the builder is a Docker engine at `docker_host`)
/// and the builder at `builder` (named by `source`) about themselves.
pub async fn checkup(
    builder: Address,
    source: String,
    docker_host: &str,
    docker_tls: Option<&TlsFiles>,
) -> Checkup {
    let engine = if builder.is_docker() {
        Some(match Engine::connect(docker_host, docker_tls).await {
            Ok(engine) => engine.version().await,
            Err(e) => Err(e),
        })
    } else {
        None
    };
    let engine_version = match &engine {
        Some(Ok(v)) => Some(v.version.clone()),
        _ => None,
    };
    let buildkit = match Client::connect(builder.clone()).await {
        Ok(client) => client.info().await.map(|info| {
            // Docker reports `v0.0.0+unknown` for its embedded BuildKit.
            let reported = info
                .buildkit_version
                .clone()
                .filter(|v| !v.starts_with("v0.0.0"));
            let embedded = engine_version
                .as_deref()
                .and_then(crate::engine::embedded_buildkit)
                .map(|v| format!("{v} (embedded in this Docker release)"));
            BuilderInfo {
                version: reported.or(embedded),
                workers: info
                    .workers
                    .into_iter()
                    .map(|w| (w.id, w.platforms))
                    .collect(),
            }
        }),
        Err(e) => Err(e),
    };
    Checkup {
        builder,
        source,
        engine,
        buildkit,
    }
}
