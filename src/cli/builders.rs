//! Builders by name, as buildx and the Docker CLI keep them: which
//! BuildKit `--builder NAME`, `BUILDX_BUILDER` or the current Docker context
//! stands for, and where that answer came from (for `doctor`).
//!
//! Owned by `cli` because it is configuration, like the environment: it
//! reads the user's Docker configuration directory and yields an
//! [`Address`]; `buildkit` stays a client that is handed an address. The
//! file formats are Docker's, so they are read here by hand, field by field
//! as buildx and the Docker CLI write them (no crate reads them):
//! - buildx instances: `$BUILDX_CONFIG/instances/NAME` (default
//!   `$DOCKER_CONFIG/buildx`), JSON of buildx's `store.NodeGroup`: `Name`,
//!   `Driver`, `Nodes[]` with `Endpoint`, `Platforms` and `DriverOpts`; the
//!   file name is the lower-cased instance name;
//! - Docker contexts: `$DOCKER_CONFIG/contexts/meta/<sha256 of the
//!   name>/meta.json` with `Name` and `Endpoints.docker.{Host,
//!   SkipTLSVerify}`, TLS files in `contexts/tls/<same>/docker/{ca,cert,
//!   key}.pem`. cbuild lists the directories and matches `Name` (what
//!   `docker context ls` does) rather than hashing the name;
//! - the current context: `DOCKER_HOST` wins (context `default`), then
//!   `DOCKER_CONTEXT`, then `currentContext` of `config.json`.
//!
//! Which setting wins, as buildx and compose 2.40 have it: `--builder`,
//! then `BUILDX_BUILDER` (compose and buildx read it as `--builder`'s
//! default), then buildctl's `BUILDKIT_HOST` (which neither reads when
//! building; cbuild has honoured it and keeps it below the buildx names),
//! then the current Docker context's engine.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::buildkit::tls::TlsFiles;
use crate::buildkit::{Address, BuildkitError, TlsChoice};

/// The Docker engine socket used when nothing else is configured.
const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// A builder and where it was found.
#[derive(Debug)]
pub struct Resolved {
    /// Where to reach it.
    pub address: Address,
    /// How cbuild got there, in words: the setting and, for a name, the
    /// file that defines it.
    pub source: String,
}

/// A Docker engine endpoint (the API, not BuildKit) and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerEndpoint {
    /// `unix:///…` or `tcp://…`.
    pub host: String,
    /// TLS files, when the endpoint uses TLS.
    pub tls: Option<TlsFiles>,
    /// How it was chosen, in words.
    pub source: String,
}

/// Why a builder name or a Docker context cannot be used. All bad input.
#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    /// No instance and no context has this name.
    #[error("no builder named `{name}` (from {origin}): cbuild looked for the buildx instance `{}` and a Docker context of that name in `{}`; {found}", instance.display(), contexts.display())]
    Unknown {
        /// The name.
        name: String,
        /// The setting that named it.
        origin: String,
        /// The instance file looked for.
        instance: PathBuf,
        /// The contexts' directory.
        contexts: PathBuf,
        /// What exists instead, in words.
        found: String,
    },
    /// The Docker context named is not there.
    #[error("no Docker context named `{name}` (from {origin}) in `{}`; {found}", dir.display())]
    UnknownContext {
        /// The name.
        name: String,
        /// The setting that named it.
        origin: String,
        /// The contexts' directory.
        dir: PathBuf,
        /// What exists instead, in words.
        found: String,
    },
    /// A file cannot be read or parsed.
    #[error("cannot read `{}`: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The builder is of a kind cbuild cannot reach, or its definition is
    /// incomplete.
    #[error("builder `{name}` (`{}`): {reason}", file.display())]
    Unusable {
        /// The builder's name.
        name: String,
        /// Its definition.
        file: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The address inside a definition is not one cbuild understands.
    #[error("builder `{name}` (`{}`)", file.display())]
    Address {
        /// The builder's name.
        name: String,
        /// Its definition.
        file: PathBuf,
        /// The address error.
        #[source]
        source: BuildkitError,
    },
    /// An address given directly.
    #[error(transparent)]
    Direct(#[from] BuildkitError),
}

/// The user's Docker configuration directories.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// `$DOCKER_CONFIG`, else `~/.docker`.
    pub dir: PathBuf,
    /// `$BUILDX_CONFIG`, else `<dir>/buildx`.
    pub buildx: PathBuf,
}

impl DockerConfig {
    /// The directories as the Docker CLI and buildx find them.
    pub fn from_env(env: &HashMap<String, String>) -> Self {
        let non_empty = |k: &str| env.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = non_empty("DOCKER_CONFIG").unwrap_or_else(|| {
            non_empty("HOME")
                .unwrap_or_else(|| PathBuf::from("/"))
                .join(".docker")
        });
        let buildx = non_empty("BUILDX_CONFIG").unwrap_or_else(|| dir.join("buildx"));
        Self { dir, buildx }
    }

    fn instances(&self) -> PathBuf {
        self.buildx.join("instances")
    }

    fn contexts_meta(&self) -> PathBuf {
        self.dir.join("contexts").join("meta")
    }
}

/// buildx's `store.NodeGroup`, the fields cbuild uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    nodes: Option<Vec<Node>>,
}

/// buildx's `store.Node`, the fields cbuild uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default)]
    name: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    driver_opts: Option<BTreeMap<String, String>>,
}

/// The Docker CLI's context `meta.json`, the fields cbuild uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContextMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    endpoints: BTreeMap<String, serde_json::Value>,
}

/// Resolves the builder from `--builder` (`flag`), the environment and the
/// Docker configuration. `tls` carries the `--tls*` flags (for a buildkitd)
/// and the environment's Docker TLS.
pub fn resolve(
    flag: Option<&str>,
    env: &HashMap<String, String>,
    tls: &TlsChoice,
) -> Result<Resolved, BuilderError> {
    let config = DockerConfig::from_env(env);
    let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (value, origin) = match (flag, get("BUILDX_BUILDER")) {
        (Some(f), _) => (f, "--builder"),
        (None, Some(b)) => (b, "BUILDX_BUILDER"),
        (None, None) => {
            if let Some(h) = get("BUILDKIT_HOST") {
                return Ok(Resolved {
                    address: Address::parse_buildkit(h, tls)?,
                    source: "BUILDKIT_HOST".into(),
                });
            }
            return engine_builder(docker_endpoint(env, &config)?);
        }
    };
    if value.is_empty() {
        return engine_builder(docker_endpoint(env, &config)?);
    }
    if value.contains("://") || value.starts_with("docker+") {
        return Ok(Resolved {
            address: Address::parse_buildkit(value, tls)?,
            source: format!("{origin} (an address)"),
        });
    }
    by_name(value, origin, env, &config, tls)
}

/// The builders of a pool: each of `values` (`--builder` given several
/// times, or `x-cbuild: builders:`) resolved as [`resolve`] does, a buildx
/// builder of several nodes standing for all its nodes. No value: the one
/// builder [`resolve`] finds, or the nodes of `BUILDX_BUILDER`'s instance.
pub fn resolve_pool(
    values: &[String],
    origin: &str,
    env: &HashMap<String, String>,
    tls: &TlsChoice,
) -> Result<Vec<Resolved>, BuilderError> {
    let config = DockerConfig::from_env(env);
    let buildx = env
        .get("BUILDX_BUILDER")
        .filter(|v| !v.is_empty())
        .map(|v| (v.clone(), "BUILDX_BUILDER"));
    let named: Vec<(String, &str)> = if values.is_empty() {
        match buildx {
            Some(b) => vec![b],
            None => return Ok(vec![resolve(None, env, tls)?]),
        }
    } else {
        values.iter().map(|v| (v.clone(), origin)).collect()
    };
    let mut pool = Vec::new();
    for (value, origin) in named {
        let file = config.instances().join(value.to_ascii_lowercase());
        let nodes = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<NodeGroup>(&t).ok())
            .and_then(|g| g.nodes)
            .map_or(0, |n| n.len());
        if !value.contains("://") && value != "default" && nodes > 1 {
            for i in 0..nodes {
                pool.push(instance(&value, origin, &file, env, &config, tls, i)?);
            }
        } else {
            let mut r = resolve(Some(&value), env, tls)?;
            if origin != "--builder" {
                r.source = r.source.replacen("--builder", origin, 1);
            }
            pool.push(r);
        }
    }
    Ok(pool)
}

/// A Docker engine's embedded BuildKit.
fn engine_builder(ep: DockerEndpoint) -> Result<Resolved, BuilderError> {
    Ok(Resolved {
        address: Address::parse_docker(&ep.host, ep.tls.as_ref())?,
        source: ep.source,
    })
}

/// A buildx instance, else a Docker context, of this name.
fn by_name(
    name: &str,
    origin: &str,
    env: &HashMap<String, String>,
    config: &DockerConfig,
    tls: &TlsChoice,
) -> Result<Resolved, BuilderError> {
    if name == "default" {
        return engine_builder(context_endpoint("default", origin, env, config)?);
    }
    // buildx stores instances under their lower-cased name and refuses
    // names outside this pattern (store.ValidateName).
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    let file = config.instances().join(name.to_ascii_lowercase());
    if valid && file.is_file() {
        return instance(name, origin, &file, env, config, tls, 0);
    }
    if let Some(ctx) = find_context(config, name)? {
        let ep = ctx.endpoint(config)?;
        return engine_builder(DockerEndpoint {
            source: format!(
                "{origin}: the Docker context `{name}` ({})",
                ctx.path.display()
            ),
            ..ep
        });
    }
    if name == "docker" {
        // cbuild's own spelling of "the Docker engine", kept working.
        let ep = docker_endpoint(env, config)?;
        return engine_builder(DockerEndpoint {
            source: format!("{origin}: `docker`, the engine of {}", ep.source),
            ..ep
        });
    }
    Err(BuilderError::Unknown {
        name: name.to_string(),
        origin: origin.to_string(),
        instance: file,
        contexts: config.contexts_meta(),
        found: found_names(config),
    })
}

/// Reads a buildx instance file and turns its first node into an address.
fn instance(
    name: &str,
    origin: &str,
    file: &Path,
    env: &HashMap<String, String>,
    config: &DockerConfig,
    tls: &TlsChoice,
    index: usize,
) -> Result<Resolved, BuilderError> {
    let unusable = |reason: String| BuilderError::Unusable {
        name: name.to_string(),
        file: file.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| BuilderError::File {
        path: file.to_path_buf(),
        reason: e.to_string(),
    })?;
    let group: NodeGroup = serde_json::from_str(&text).map_err(|e| BuilderError::File {
        path: file.to_path_buf(),
        reason: format!("not a buildx instance (JSON of buildx's NodeGroup): {e}"),
    })?;
    let nodes = group.nodes.unwrap_or_default();
    if nodes.is_empty() {
        return Err(unusable(
            "it has no nodes; recreate it with `docker buildx create`".into(),
        ));
    }
    // A builder of several nodes is a pool for `build` (see
    // `resolve_pool`); other commands talk to the first node, and say so.
    let Some(node) = nodes.get(index) else {
        return Err(unusable(format!("it has no node number {}", index + 1)));
    };
    let which = if nodes.len() > 1 {
        format!("node `{}`, {} of {}", node.name, index + 1, nodes.len())
    } else {
        format!("node `{}`", node.name)
    };
    let label = if group.name.is_empty() {
        name
    } else {
        &group.name
    };
    let source = |driver: &str| {
        format!(
            "{origin}: buildx builder `{label}` ({driver} driver, {which}, {})",
            file.display()
        )
    };
    let bad_address = |source: BuildkitError| BuilderError::Address {
        name: name.to_string(),
        file: file.to_path_buf(),
        source,
    };
    match group.driver.as_str() {
        "remote" => {
            let ep = node.endpoint.as_str();
            if !(ep.starts_with("tcp://") || ep.starts_with("unix://")) {
                return Err(unusable(format!(
                    "its endpoint `{ep}` is not a `tcp://` or `unix://` buildkitd address, \
                     the only kinds cbuild can reach; point a remote builder at the \
                     buildkitd's own socket or TCP port"
                )));
            }
            let files = remote_tls(node.driver_opts.as_ref(), ep).map_err(unusable)?;
            // The `--tls*` flags, when given, refine the instance's files.
            let files = match (files, tls.buildkit.clone()) {
                (Some(mut f), Some(flags)) => {
                    f.ca = flags.ca.or(f.ca);
                    f.cert = flags.cert.or(f.cert);
                    f.key = flags.key.or(f.key);
                    f.server_name = flags.server_name.or(f.server_name);
                    Some(f)
                }
                (f, flags) => f.or(flags),
            };
            let choice = TlsChoice {
                buildkit: files,
                docker: tls.docker.clone(),
            };
            Ok(Resolved {
                address: Address::parse_buildkit(ep, &choice).map_err(bad_address)?,
                source: source("remote"),
            })
        }
        // An empty driver is what buildx records for a builder it made
        // for a Docker context: the engine's own BuildKit.
        "docker" | "" => {
            let ep = node.endpoint.as_str();
            let engine = if ep.contains("://") {
                DockerEndpoint {
                    host: ep.to_string(),
                    tls: env_docker_tls(env),
                    source: String::new(),
                }
            } else {
                let ctx = if ep.is_empty() { "default" } else { ep };
                context_endpoint(ctx, &format!("builder `{label}`"), env, config)?
            };
            Ok(Resolved {
                address: Address::parse_docker(&engine.host, engine.tls.as_ref())
                    .map_err(bad_address)?,
                source: source("docker"),
            })
        }
        "docker-container" | "kubernetes" => Err(unusable(format!(
            "cbuild cannot reach a builder of the `{}` driver yet (buildx reaches it \
             through {}); use the Docker engine's own BuildKit (`--builder default`), or \
             run buildkitd with a `tcp://` or `unix://` address and name that \
             (`--builder tcp://HOST:PORT`, or `docker buildx create --driver remote \
             tcp://HOST:PORT`)",
            group.driver,
            if group.driver == "kubernetes" {
                "the Kubernetes API"
            } else {
                "`docker exec … buildctl dial-stdio`"
            }
        ))),
        other => Err(unusable(format!(
            "unknown buildx driver `{other}`; cbuild reaches `remote` and `docker` builders"
        ))),
    }
}

/// TLS files from a remote node's driver options, checked as buildx's
/// remote driver checks them (absolute paths; a CA whenever TLS is on; a
/// certificate and its key together).
fn remote_tls(
    opts: Option<&BTreeMap<String, String>>,
    endpoint: &str,
) -> Result<Option<TlsFiles>, String> {
    let Some(opts) = opts.filter(|o| !o.is_empty()) else {
        return Ok(None);
    };
    let mut t = TlsFiles::default();
    for (k, v) in opts {
        let path = || {
            let p = PathBuf::from(v);
            if p.is_absolute() {
                Ok(p)
            } else {
                Err(format!(
                    "driver option `{k}` is `{v}`, not an absolute path (buildx requires one)"
                ))
            }
        };
        match k.as_str() {
            "servername" => t.server_name = Some(v.clone()),
            "cacert" => t.ca = Some(path()?),
            "cert" => t.cert = Some(path()?),
            "key" => t.key = Some(path()?),
            _ => return Err(format!("unknown driver option `{k}` for the remote driver")),
        }
    }
    let mut missing = Vec::new();
    if t.ca.is_none() {
        missing.push("cacert");
    }
    if t.cert.is_some() && t.key.is_none() {
        missing.push("key");
    }
    if t.key.is_some() && t.cert.is_none() {
        missing.push("cert");
    }
    if !missing.is_empty() {
        return Err(format!(
            "TLS is on for `{endpoint}`, but the driver options lack {}",
            missing.join(", ")
        ));
    }
    Ok(Some(t))
}

/// The Docker engine the Docker CLI would talk to: `DOCKER_HOST`, else the
/// current context (`DOCKER_CONTEXT`, else `currentContext` of
/// `config.json`), else the default socket.
pub fn docker_endpoint(
    env: &HashMap<String, String>,
    config: &DockerConfig,
) -> Result<DockerEndpoint, BuilderError> {
    let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
    if let Some(host) = get("DOCKER_HOST") {
        return Ok(DockerEndpoint {
            host: host.to_string(),
            tls: env_docker_tls(env),
            source: "DOCKER_HOST".into(),
        });
    }
    if let Some(name) = get("DOCKER_CONTEXT") {
        return context_endpoint(name, "DOCKER_CONTEXT", env, config);
    }
    let file = config.dir.join("config.json");
    if let Some(name) = current_context(&file)? {
        return context_endpoint(
            &name,
            &format!("`currentContext` of {}", file.display()),
            env,
            config,
        );
    }
    Ok(DockerEndpoint {
        host: DEFAULT_DOCKER_HOST.into(),
        tls: env_docker_tls(env),
        source: "the default socket".into(),
    })
}

/// The engine of the context `name`; `default` is the environment's.
fn context_endpoint(
    name: &str,
    origin: &str,
    env: &HashMap<String, String>,
    config: &DockerConfig,
) -> Result<DockerEndpoint, BuilderError> {
    if name == "default" {
        let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let (host, how) = match get("DOCKER_HOST") {
            Some(h) => (h.to_string(), "DOCKER_HOST"),
            None => (DEFAULT_DOCKER_HOST.to_string(), "the default socket"),
        };
        return Ok(DockerEndpoint {
            host,
            tls: env_docker_tls(env),
            source: if origin.is_empty() {
                how.to_string()
            } else {
                format!("{origin}: the Docker context `default`, {how}")
            },
        });
    }
    match find_context(config, name)? {
        Some(ctx) => {
            let ep = ctx.endpoint(config)?;
            Ok(DockerEndpoint {
                source: format!(
                    "{origin}: the Docker context `{name}` ({})",
                    ctx.path.display()
                ),
                ..ep
            })
        }
        None => Err(BuilderError::UnknownContext {
            name: name.to_string(),
            origin: origin.to_string(),
            dir: config.contexts_meta(),
            found: found_names(config),
        }),
    }
}

/// `currentContext` of the Docker CLI's `config.json`, if set.
fn current_context(file: &Path) -> Result<Option<String>, BuilderError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(BuilderError::File {
                path: file.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| BuilderError::File {
        path: file.to_path_buf(),
        reason: format!("not valid JSON: {e}"),
    })?;
    Ok(value
        .get("currentContext")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

/// A Docker context found on disk.
struct Context {
    /// Its `meta.json`.
    path: PathBuf,
    meta: ContextMeta,
}

impl Context {
    /// Its Docker endpoint, with the TLS files stored beside it.
    fn endpoint(&self, config: &DockerConfig) -> Result<DockerEndpoint, BuilderError> {
        let bad = |reason: String| BuilderError::File {
            path: self.path.clone(),
            reason,
        };
        let docker = self.meta.endpoints.get("docker").ok_or_else(|| {
            bad(format!(
                "the context `{}` has no `docker` endpoint",
                self.meta.name
            ))
        })?;
        let host = docker
            .get("Host")
            .and_then(|h| h.as_str())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("`Endpoints.docker.Host` is missing".into()))?;
        if docker.get("SkipTLSVerify").and_then(|v| v.as_bool()) == Some(true) {
            return Err(bad(format!(
                "the context `{}` skips TLS verification, which cbuild does not do; \
                 recreate it with the engine's CA (`docker context create --docker \
                 host=…,ca=…,cert=…,key=…`)",
                self.meta.name
            )));
        }
        // The TLS store mirrors the meta store: same directory name.
        let dir_name = self.path.parent().and_then(|d| d.file_name());
        let tls = dir_name
            .map(|d| {
                config
                    .dir
                    .join("contexts")
                    .join("tls")
                    .join(d)
                    .join("docker")
            })
            .map(|d| TlsFiles::from_dir(&d))
            .filter(TlsFiles::is_set);
        Ok(DockerEndpoint {
            host: host.to_string(),
            tls,
            source: String::new(),
        })
    }
}

/// The context named `name`, if one is stored.
fn find_context(config: &DockerConfig, name: &str) -> Result<Option<Context>, BuilderError> {
    for ctx in contexts(config) {
        let ctx = ctx?;
        if ctx.meta.name == name {
            return Ok(Some(ctx));
        }
    }
    Ok(None)
}

/// Every stored context (an unreadable one as its error).
fn contexts(config: &DockerConfig) -> impl Iterator<Item = Result<Context, BuilderError>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(config.contexts_meta())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("meta.json"))
        .filter(|p| p.is_file())
        .collect();
    dirs.sort();
    dirs.into_iter().map(|path| {
        let text = std::fs::read_to_string(&path).map_err(|e| BuilderError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let meta: ContextMeta = serde_json::from_str(&text).map_err(|e| BuilderError::File {
            path: path.clone(),
            reason: format!("not a Docker context's meta.json: {e}"),
        })?;
        Ok(Context { path, meta })
    })
}

/// The instances and contexts there are, in words, for an error.
fn found_names(config: &DockerConfig) -> String {
    let mut instances: Vec<String> = std::fs::read_dir(config.instances())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    instances.sort();
    let mut contexts: Vec<String> = vec!["default".into()];
    contexts.extend(contexts_names(config));
    let list = |v: &[String]| {
        v.iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let instances = if instances.is_empty() {
        "no buildx instances".to_string()
    } else {
        format!("buildx instances: {}", list(&instances))
    };
    format!(
        "found {instances}; Docker contexts: {}; or give an address (`unix:///…`, `tcp://…`)",
        list(&contexts)
    )
}

fn contexts_names(config: &DockerConfig) -> Vec<String> {
    contexts(config)
        .filter_map(Result::ok)
        .map(|c| c.meta.name)
        .collect()
}

/// TLS files for the Docker engine as the Docker CLI finds them in the
/// environment: with `DOCKER_TLS_VERIFY` set, `ca.pem`, `cert.pem` and
/// `key.pem` in `DOCKER_CERT_PATH` (default `~/.docker`).
pub fn env_docker_tls(env: &HashMap<String, String>) -> Option<TlsFiles> {
    env.get("DOCKER_TLS_VERIFY").filter(|v| !v.is_empty())?;
    let dir = env
        .get("DOCKER_CERT_PATH")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| Path::new(h).join(".docker")))
        .unwrap_or_default();
    let mut t = TlsFiles::from_dir(&dir);
    // The CA is required, as the Docker CLI requires it.
    t.ca = Some(dir.join("ca.pem"));
    Some(t)
}

/// The Docker engine API behind a Docker-engine builder address: where its
/// images land, so where to look them up.
pub fn engine_of(address: &Address) -> Option<(String, Option<TlsFiles>)> {
    match address {
        Address::DockerUnix(p) => Some((format!("unix://{}", p.display()), None)),
        Address::DockerTcp(h, tls) => {
            Some((format!("tcp://{h}"), tls.as_ref().map(|t| t.files.clone())))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! Fixtures in the formats buildx and the Docker CLI write: a buildx
    //! instance is `json.Marshal` of buildx's `store.NodeGroup`; a context's
    //! `meta.json` and its TLS directory are what `docker context create`
    //! wrote here (Docker CLI 28.2).

    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn config(&self) -> PathBuf {
            self.dir.path().join("docker")
        }

        fn env(&self, pairs: &[(&str, &str)]) -> HashMap<String, String> {
            let mut env: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            env.insert("DOCKER_CONFIG".into(), self.config().display().to_string());
            env
        }

        /// A buildx instance of one node.
        fn instance(&self, name: &str, driver: &str, endpoint: &str, opts: &str) -> PathBuf {
            let dir = self.config().join("buildx").join("instances");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name.to_ascii_lowercase());
            std::fs::write(
                &path,
                format!(
                    r#"{{"Name":"{name}","Driver":"{driver}","Nodes":[{{"Name":"{name}0","Endpoint":"{endpoint}","Platforms":[{{"architecture":"amd64","os":"linux"}}],"DriverOpts":{opts},"Flags":null,"Files":null}}],"Dynamic":false}}"#
                ),
            )
            .unwrap();
            path
        }

        /// A Docker context; `tls` writes its three TLS files.
        fn context(&self, name: &str, host: &str, tls: Option<&Pem>) -> PathBuf {
            // The Docker CLI names the directory by the name's SHA-256;
            // cbuild matches `Name`, so any unique name serves here.
            let id = format!(
                "{:x}",
                name.len() * 7919 + name.bytes().map(usize::from).sum::<usize>()
            );
            let meta = self.config().join("contexts").join("meta").join(&id);
            std::fs::create_dir_all(&meta).unwrap();
            std::fs::write(
                meta.join("meta.json"),
                format!(
                    r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
                ),
            )
            .unwrap();
            if let Some(pem) = tls {
                let d = self
                    .config()
                    .join("contexts")
                    .join("tls")
                    .join(&id)
                    .join("docker");
                pem.write(&d);
            }
            meta.join("meta.json")
        }
    }

    /// A CA and a client certificate in PEM.
    struct Pem {
        ca: String,
        cert: String,
        key: String,
    }

    impl Pem {
        fn new() -> Self {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
            let ca_key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = p.self_signed(&ca_key).unwrap();
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(Vec::<String>::new())
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
            Self {
                ca: ca.pem(),
                cert: cert.pem(),
                key: key.serialize_pem(),
            }
        }

        fn write(&self, dir: &Path) {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("ca.pem"), &self.ca).unwrap();
            std::fs::write(dir.join("cert.pem"), &self.cert).unwrap();
            std::fs::write(dir.join("key.pem"), &self.key).unwrap();
        }
    }

    fn resolve_in(
        flag: Option<&str>,
        env: &HashMap<String, String>,
    ) -> Result<Resolved, BuilderError> {
        resolve(flag, env, &TlsChoice::default())
    }

    #[test]
    fn a_remote_instance_gives_its_endpoint_and_tls_files() {
        let f = Fixture::new();
        let certs = f.dir.path().join("certs");
        Pem::new().write(&certs);
        let opts = format!(
            r#"{{"cacert":"{0}/ca.pem","cert":"{0}/cert.pem","key":"{0}/key.pem","servername":"buildkitd.example"}}"#,
            certs.display()
        );
        let file = f.instance("Remote-CI", "remote", "tcp://127.0.0.1:1234", &opts);
        // buildx names are case-insensitive: the file is lower-cased.
        let r = resolve_in(Some("Remote-CI"), &f.env(&[])).unwrap();
        match &r.address {
            Address::BuildkitTcp(h, Some(tls)) => {
                assert_eq!(h, "127.0.0.1:1234");
                assert_eq!(tls.files.ca, Some(certs.join("ca.pem")));
                assert_eq!(tls.files.cert, Some(certs.join("cert.pem")));
                assert_eq!(tls.files.key, Some(certs.join("key.pem")));
                assert_eq!(tls.files.server_name.as_deref(), Some("buildkitd.example"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            r.source
                .starts_with("--builder: buildx builder `Remote-CI` (remote driver"),
            "{}",
            r.source
        );
        assert!(
            r.source.contains(&file.display().to_string()),
            "{}",
            r.source
        );

        let plain = f.instance(
            "sock",
            "remote",
            "unix:///run/buildkit/buildkitd.sock",
            "null",
        );
        let r = resolve_in(None, &f.env(&[("BUILDX_BUILDER", "sock")])).unwrap();
        assert_eq!(
            r.address,
            Address::BuildkitUnix("/run/buildkit/buildkitd.sock".into())
        );
        assert!(r.source.starts_with("BUILDX_BUILDER: "), "{}", r.source);
        assert!(r.source.contains(&plain.display().to_string()));
    }

    #[test]
    fn remote_driver_options_are_checked_as_buildx_checks_them() {
        let f = Fixture::new();
        f.instance(
            "rel",
            "remote",
            "tcp://127.0.0.1:1234",
            r#"{"cacert":"certs/ca.pem"}"#,
        );
        let e = resolve_in(Some("rel"), &f.env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`cacert`") && e.contains("absolute"), "{e}");
        f.instance(
            "noca",
            "remote",
            "tcp://127.0.0.1:1234",
            r#"{"cert":"/c.pem","key":"/k.pem"}"#,
        );
        let e = resolve_in(Some("noca"), &f.env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lack cacert") && e.contains("noca"), "{e}");
        f.instance("odd", "remote", "tcp://127.0.0.1:1234", r#"{"image":"x"}"#);
        let e = resolve_in(Some("odd"), &f.env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown driver option `image`"), "{e}");
        f.instance("ssh", "remote", "ssh://me@host", "null");
        let e = resolve_in(Some("ssh"), &f.env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ssh://me@host") && e.contains("tcp://"), "{e}");
    }

    #[test]
    fn a_docker_instance_reaches_the_engine_of_its_context_or_host() {
        let f = Fixture::new();
        f.context("blue", "unix:///var/run/blue.sock", None);
        f.instance("eng", "docker", "blue", "null");
        let r = resolve_in(
            Some("eng"),
            &f.env(&[("DOCKER_HOST", "unix:///other.sock")]),
        )
        .unwrap();
        assert_eq!(r.address, Address::DockerUnix("/var/run/blue.sock".into()));
        assert!(r.source.contains("docker driver"), "{}", r.source);

        f.instance("host", "docker", "unix:///var/run/green.sock", "null");
        let r = resolve_in(Some("host"), &f.env(&[])).unwrap();
        assert_eq!(r.address, Address::DockerUnix("/var/run/green.sock".into()));

        // A context name as the builder: its engine, with its TLS files.
        let pem = Pem::new();
        let meta = f.context("tlsctx", "tcp://127.0.0.1:2376", Some(&pem));
        let r = resolve_in(Some("tlsctx"), &f.env(&[])).unwrap();
        match &r.address {
            Address::DockerTcp(h, Some(tls)) => {
                assert_eq!(h, "127.0.0.1:2376");
                let dir = meta.parent().unwrap().file_name().unwrap();
                let tls_dir = f.config().join("contexts/tls").join(dir).join("docker");
                assert_eq!(tls.files.ca, Some(tls_dir.join("ca.pem")));
                assert_eq!(tls.files.key, Some(tls_dir.join("key.pem")));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            r.source.contains("the Docker context `tlsctx`"),
            "{}",
            r.source
        );
    }

    #[test]
    fn settings_win_in_the_order_buildx_and_compose_use() {
        let f = Fixture::new();
        f.instance("one", "remote", "unix:///one.sock", "null");
        f.instance("two", "remote", "unix:///two.sock", "null");
        f.context("ctx", "unix:///ctx.sock", None);
        f.context("cur", "unix:///cur.sock", None);
        std::fs::write(
            f.config().join("config.json"),
            r#"{"auths":{},"currentContext":"cur"}"#,
        )
        .unwrap();
        let full = [
            ("BUILDX_BUILDER", "two"),
            ("BUILDKIT_HOST", "unix:///bk.sock"),
            ("DOCKER_HOST", "unix:///dh.sock"),
            ("DOCKER_CONTEXT", "ctx"),
        ];
        let addr =
            |flag: Option<&str>, n: usize| resolve_in(flag, &f.env(&full[n..])).unwrap().address;
        assert_eq!(
            addr(Some("one"), 0),
            Address::BuildkitUnix("/one.sock".into())
        );
        assert_eq!(addr(None, 0), Address::BuildkitUnix("/two.sock".into()));
        assert_eq!(addr(None, 1), Address::BuildkitUnix("/bk.sock".into()));
        assert_eq!(addr(None, 2), Address::DockerUnix("/dh.sock".into()));
        assert_eq!(addr(None, 3), Address::DockerUnix("/ctx.sock".into()));
        assert_eq!(addr(None, 4), Address::DockerUnix("/cur.sock".into()));
        // An address, `default` and `docker` keep their meaning.
        assert_eq!(
            addr(Some("tcp://127.0.0.1:9"), 0),
            Address::BuildkitTcp("127.0.0.1:9".into(), None)
        );
        assert_eq!(
            addr(Some("default"), 0),
            Address::DockerUnix("/dh.sock".into())
        );
        assert_eq!(
            addr(Some("default"), 3),
            Address::DockerUnix("/var/run/docker.sock".into())
        );
        assert_eq!(
            addr(Some("docker"), 4),
            Address::DockerUnix("/cur.sock".into())
        );
        let r = resolve_in(None, &f.env(&full[4..])).unwrap();
        assert!(
            r.source.contains("currentContext") && r.source.contains("`cur`"),
            "{}",
            r.source
        );
        let ep = docker_endpoint(&f.env(&full[3..]), &DockerConfig::from_env(&f.env(&[]))).unwrap();
        assert_eq!(ep.host, "unix:///ctx.sock");
    }

    #[test]
    fn an_unknown_name_says_where_cbuild_looked_and_what_it_found() {
        let f = Fixture::new();
        f.instance("ci", "remote", "unix:///ci.sock", "null");
        f.context("blue", "unix:///blue.sock", None);
        let e = resolve_in(Some("nope"), &f.env(&[]))
            .unwrap_err()
            .to_string();
        let instances = f.config().join("buildx/instances/nope");
        assert!(
            e.contains("no builder named `nope` (from --builder)"),
            "{e}"
        );
        assert!(e.contains(&instances.display().to_string()), "{e}");
        assert!(
            e.contains("buildx instances: `ci`") && e.contains("`default`, `blue`"),
            "{e}"
        );
        // A name buildx would refuse, and an unknown current context.
        let e = resolve_in(None, &f.env(&[("BUILDX_BUILDER", "no/such")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`no/such` (from BUILDX_BUILDER)"), "{e}");
        let e = resolve_in(None, &f.env(&[("DOCKER_CONTEXT", "gone")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no Docker context named `gone` (from DOCKER_CONTEXT)"),
            "{e}"
        );
    }

    #[test]
    fn drivers_cbuild_cannot_reach_and_broken_files_are_named() {
        let f = Fixture::new();
        let file = f.instance(
            "dc",
            "docker-container",
            "unix:///var/run/docker.sock",
            r#"{"image":"moby/buildkit"}"#,
        );
        let e = resolve_in(Some("dc"), &f.env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("`docker-container` driver") && e.contains("--builder tcp://"),
            "{e}"
        );
        assert!(e.contains(&file.display().to_string()), "{e}");
        f.instance(
            "k8s",
            "kubernetes",
            "kubernetes:///k8s?deployment=k8s0",
            "null",
        );
        let e = resolve_in(Some("k8s"), &f.env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`kubernetes` driver"), "{e}");

        let bad = f.config().join("buildx/instances/broken");
        std::fs::write(&bad, "{not json").unwrap();
        let e = resolve_in(Some("broken"), &f.env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&bad.display().to_string()) && e.contains("not a buildx instance"),
            "{e}"
        );
        std::fs::write(f.config().join("config.json"), "{").unwrap();
        let e = resolve_in(None, &f.env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("not valid JSON"),
            "{e}"
        );
    }

    #[test]
    fn a_buildx_builder_of_two_nodes_is_a_pool_of_both() {
        let f = Fixture::new();
        let dir = f.config().join("buildx").join("instances");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("farm"),
            r#"{"Name":"farm","Driver":"remote","Nodes":[{"Name":"farm0","Endpoint":"tcp://10.0.0.1:1234","Platforms":null,"DriverOpts":null,"Flags":null,"Files":null},{"Name":"farm1","Endpoint":"tcp://10.0.0.2:1234","Platforms":null,"DriverOpts":null,"Flags":null,"Files":null}],"Dynamic":false}"#,
        )
        .unwrap();
        let env = f.env(&[]);
        let tls = TlsChoice::default();
        let pool = resolve_pool(&["farm".into()], "--builder", &env, &tls).unwrap();
        let addrs: Vec<String> = pool.iter().map(|r| r.address.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "tcp://10.0.0.1:1234 (buildkitd)",
                "tcp://10.0.0.2:1234 (buildkitd)"
            ]
        );
        assert!(
            pool[1].source.contains("node `farm1`, 2 of 2"),
            "{}",
            pool[1].source
        );
        // BUILDX_BUILDER names the pool when no value does.
        let env = f.env(&[("BUILDX_BUILDER", "farm")]);
        assert_eq!(resolve_pool(&[], "--builder", &env, &tls).unwrap().len(), 2);
        // Other commands talk to the first node.
        let one = resolve(Some("farm"), &env, &tls).unwrap();
        assert_eq!(one.address.to_string(), "tcp://10.0.0.1:1234 (buildkitd)");
        // Addresses and names mix; an origin other than the flag is named.
        let mixed = resolve_pool(
            &["tcp://10.0.0.3:1234".into(), "farm".into()],
            "`x-cbuild: builders` in the Compose file",
            &f.env(&[]),
            &tls,
        )
        .unwrap();
        assert_eq!(mixed.len(), 3);
        assert!(
            mixed[0].source.starts_with("`x-cbuild: builders`"),
            "{}",
            mixed[0].source
        );
    }
}
