//! `doctor`: which engine and builder cbuild would use, their versions and
//! platforms, and what is wrong when something is. `ui::doctor` draws it.

use crate::buildkit::tls::TlsFiles;
use crate::buildkit::{Address, BuildkitError, Client};
use crate::engine::{EngineError, EngineVersion};
use crate::orchestrate::export::{self, Choice, NoEngine};

/// What `doctor` found.
#[derive(Debug)]
pub struct Checkup {
    /// The builder address cbuild uses.
    pub builder: Address,
    /// Which setting (and file) named it.
    pub source: String,
    /// The Docker engine the images land in: the builder itself when it
    /// is a Docker engine, else the engine of `DOCKER_HOST` (`None` when the
    /// builder did not answer).
    pub engine: Option<Result<EngineVersion, EngineError>>,
    /// The exporter and image store the builder's images go through, or
    /// why no engine can take them.
    pub export: Option<Result<Choice, NoEngine>>,
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
            && !matches!(self.export, Some(Err(_)))
            && matches!(&self.buildkit, Ok(b) if !b.workers.is_empty())
    }
}

/// Asks the builder at `builder` (named by `source`) and the engine its
/// images go to (at `docker_host`) about themselves.
pub async fn checkup(
    builder: Address,
    source: String,
    docker_host: &str,
    docker_tls: Option<&TlsFiles>,
) -> Checkup {
    let client = match Client::connect(builder.clone()).await {
        Ok(c) => c,
        Err(e) => {
            return Checkup {
                builder,
                source,
                engine: None,
                export: None,
                buildkit: Err(e),
            }
        }
    };
    let (engine, export) = match export::connect_target(&client, docker_host, docker_tls).await {
        Ok(t) => {
            let engine = match (t.engine_version, t.engine_problem) {
                (Some(v), _) => Some(Ok(v)),
                (None, Some(e)) => Some(Err(e)),
                (None, None) => None,
            };
            (engine, Some(Ok(t.choice)))
        }
        Err(e) => (None, Some(Err(e))),
    };
    let engine_version = match &engine {
        Some(Ok(v)) if builder.is_docker() => Some(v.version.clone()),
        _ => None,
    };
    let buildkit = client.info().await.map(|info| BuilderInfo {
        version: Some(export::version_text(
            info.buildkit_version.as_deref(),
            engine_version.as_deref(),
        )),
        workers: info
            .workers
            .into_iter()
            .map(|w| (w.id, w.platforms))
            .collect(),
    });
    Checkup {
        builder,
        source,
        engine,
        export,
        buildkit,
    }
}
