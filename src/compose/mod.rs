//! The Compose model cbuild builds from: a project, its services, and every
//! key of a service's `build:` section. Knows nothing of BuildKit.
//!
//! [`load`] reads Compose files the way `docker compose` does; this module
//! holds the resolved result.

pub mod dotenv;
pub mod error;
pub mod interpolate;
pub mod load;
pub mod merge;
pub mod render;
pub mod schema;
pub mod shellwords;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

pub use error::ComposeError;
pub use load::{load, LoadOptions};

/// A loaded Compose project.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Project {
    /// The project name (`-p`, `COMPOSE_PROJECT_NAME`, `name:` or the
    /// directory), normalised as Compose does.
    pub name: String,
    /// The project directory, against which relative paths resolve.
    pub working_dir: PathBuf,
    /// The Compose files read, in order.
    pub files: Vec<PathBuf>,
    /// Services by name (those enabled by the active profiles).
    pub services: BTreeMap<String, Service>,
    /// Top-level `secrets:` by name.
    pub secrets: BTreeMap<String, SecretDef>,
    /// The top-level `networks`, `volumes`, `secrets` and `configs`, as
    /// `docker compose config` prints them.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// What compose would warn about while loading (unset variables, the
    /// obsolete `version`), for the caller to show.
    pub warnings: Vec<String>,
    /// The project environment, as compose-go keeps it: the env files
    /// (`--env-file`, else `.env`) overridden by the process environment.
    /// compose reads settings such as `DOCKER_DEFAULT_PLATFORM` from it.
    #[serde(skip)]
    pub environment: HashMap<String, String>,
}

/// A top-level secret: where its value comes from.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SecretDef {
    /// `file:`, resolved against the project directory.
    pub file: Option<PathBuf>,
    /// `environment:`, the variable holding the value.
    pub environment: Option<String>,
}

/// One service.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// `image:`, when set.
    pub image: Option<String>,
    /// `build:`, when set.
    pub build: Option<BuildSpec>,
    /// `profiles:`.
    pub profiles: Vec<String>,
    /// `pull_policy:`.
    pub pull_policy: Option<String>,
    /// The whole service, `build` included, as `docker compose config`
    /// prints it (see [`render`]).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The service's own `x-*` keys, which compose prints in YAML only.
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Service {
    /// The image name a build of this service produces: `image:` or
    /// `<project>-<service>`, as `docker compose build` names it.
    pub fn image_name(&self, project: &str) -> String {
        self.image
            .clone()
            .unwrap_or_else(|| format!("{project}-{}", self.name))
    }
}

/// Every key of a service's `build:` section, resolved.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BuildSpec {
    /// The build context: an absolute directory, or a remote URL.
    pub context: String,
    /// The Dockerfile path as written (relative to the context); `Dockerfile`
    /// when not given, and `None` with `dockerfile_inline` or an empty value.
    pub dockerfile: Option<String>,
    /// An inline Dockerfile.
    pub dockerfile_inline: Option<String>,
    /// Build arguments. A bare `KEY` takes its value from the environment
    /// and is left out when the variable is unset, as compose does; `None`
    /// is kept for callers that add arguments of their own.
    pub args: BTreeMap<String, Option<String>>,
    /// `ssh:` entries (`default`, `id=path`).
    pub ssh: Vec<String>,
    /// `cache_from:`.
    pub cache_from: Vec<String>,
    /// `cache_to:`.
    pub cache_to: Vec<String>,
    /// `additional_contexts:` by name.
    pub additional_contexts: BTreeMap<String, String>,
    /// `extra_hosts:` as `host=ip` (or `host:ip`) entries.
    pub extra_hosts: Vec<String>,
    /// `isolation:`.
    pub isolation: Option<String>,
    /// `labels:`.
    pub labels: BTreeMap<String, String>,
    /// `network:`.
    pub network: Option<String>,
    /// `no_cache:`.
    pub no_cache: bool,
    /// `pull:`.
    pub pull: bool,
    /// `shm_size:` in bytes.
    pub shm_size: Option<u64>,
    /// `target:`.
    pub target: Option<String>,
    /// `secrets:` (names of top-level secrets, with optional targets).
    pub secrets: Vec<BuildSecret>,
    /// `tags:`.
    pub tags: Vec<String>,
    /// `ulimits:` as `name=soft:hard`.
    pub ulimits: BTreeMap<String, String>,
    /// `platforms:`.
    pub platforms: Vec<String>,
    /// `privileged:`.
    pub privileged: bool,
}

/// A secret a build may mount.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BuildSecret {
    /// The top-level secret's name, which is the id `RUN --mount` uses
    /// unless `target` renames it.
    pub source: String,
    /// The id it is mounted as.
    pub target: Option<String>,
}

impl BuildSpec {
    /// The Dockerfile path as BuildKit is to read it, relative to the
    /// context (`Dockerfile` when unset).
    pub fn dockerfile_path(&self) -> String {
        self.dockerfile
            .clone()
            .unwrap_or_else(|| "Dockerfile".to_string())
    }

    /// Whether the context is a remote URL (git or HTTP) rather than a
    /// local directory.
    pub fn is_remote_context(&self) -> bool {
        is_remote(&self.context)
    }
}

/// `docker compose`'s test for a remote build context.
pub fn is_remote(context: &str) -> bool {
    context.starts_with("http://")
        || context.starts_with("https://")
        || context.starts_with("git://")
        || context.starts_with("git@")
        || context.starts_with("github.com/")
        || context.starts_with("ssh://")
}
