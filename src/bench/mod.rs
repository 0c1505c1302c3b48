//! `cbuild bench`: what building each service costs on this machine and
//! builder, measured with the same planning and build code as `cbuild
//! build` ([`crate::orchestrate::plan()`], [`crate::orchestrate::run`]).
//! This module is the harness; `ui::bench` draws its report.
//!
//! Per service and run, in a scratch directory that is removed afterwards:
//! 1. a build of the user's tree with a fresh cache directory, hence a new
//!    content-clock generation and a shared key BuildKit has never seen: the
//!    *first transfer* sends the whole minimal context;
//! 2. the same build again: nothing changed, so this is the *no-op solve*
//!    overhead (nothing is skipped: bench never consults build records);
//! 3. the walk and hashing of exactly what the daemon asked for in (1), with
//!    a new hash cache (*cold*) and again with that cache saved (*warm*);
//! 4. a copy of the minimal context in the scratch directory, built once,
//!    then one file of the copy edited and the copy built again: the
//!    *incremental transfer*. The user's files are only ever read;
//! 5. where the Docker CLI is present, `docker buildx build --output
//!    type=cacheonly` of the same copy before the edit, after it, and once
//!    more unchanged: how `docker build` sends the same context.
//!
//! Builds export nothing (like `--output type=cacheonly`): no image of the
//! user's is retagged. Before each timed build, dirty pages are flushed
//! (`sync`), so the writeback of earlier work is not timed with it. Every
//! number reported is the median over the runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;

use crate::compose::Project;
use crate::context::cache::HashCache;
use crate::context::walk::{self, WalkOptions};

use crate::buildkit::Client;
use crate::orchestrate::event::{BuildEvent, Reporter, ServiceOutcome};
use crate::orchestrate::plan::{plan, BuildOptions, PlanError, ServiceBuild, Transport};

/// What to measure.
#[derive(Clone, Debug, Default)]
pub struct BenchOptions {
    /// Services to measure (default: every service with a `build:`).
    pub services: Vec<String>,
    /// Runs per measurement; the median is reported.
    pub runs: usize,
    /// Build options (build args, environment, session transport); the
    /// cache directory and transport are bench's own.
    pub build: BuildOptions,
    /// The `docker` CLI to compare with, if any.
    pub docker: Option<PathBuf>,
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The service cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A build failed.
    #[error("service `{service}`: the {what} build failed: {message}")]
    Build {
        /// The service.
        service: String,
        /// Which build.
        what: &'static str,
        /// The build's error.
        message: String,
    },
    /// A file operation on the scratch copy failed.
    #[error("`{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The walk or hashing of the context failed.
    #[error("service `{service}`: {message}")]
    Context {
        /// The service.
        service: String,
        /// What failed.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every service's measurements.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// Runs per measurement (medians are reported).
    pub runs: usize,
    /// One entry per service, in plan order.
    pub services: Vec<ServiceBench>,
}

/// One service's measurements (medians over the runs).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServiceBench {
    /// The service.
    pub service: String,
    /// Regular files in the minimal context (what the daemon asked for).
    pub context_files: u64,
    /// Their bytes.
    pub context_bytes: u64,
    /// Walk and hash of the minimal context with an empty hash cache.
    pub walk_hash_cold_ms: f64,
    /// The same with the cache from the cold pass.
    pub walk_hash_warm_ms: f64,
    /// Files whose contents the warm pass read (0 when the cache works).
    pub warm_files_hashed: u64,
    /// The first transfer (fresh content-clock generation).
    pub first_transfer: Transfer,
    /// The transfer after a one-file edit (of a scratch copy).
    pub incremental_transfer: Option<Transfer>,
    /// The file edited for `incremental_transfer`, relative to the context.
    pub edited_file: Option<String>,
    /// A build with nothing changed: the solve overhead.
    pub noop_build_ms: f64,
    /// Context bytes the no-op build sent (0 expected).
    pub noop_bytes_sent: u64,
    /// `docker buildx build` of the same context, when the CLI is present.
    pub docker: Option<DockerBench>,
}

/// One context transfer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Transfer {
    /// The whole build (wall clock).
    pub build_ms: f64,
    /// The daemon's `load build context` step, start to end.
    pub transfer_ms: f64,
    /// Files sent (not known for `docker buildx build`).
    pub files: Option<u64>,
    /// Bytes sent.
    pub bytes: u64,
    /// `bytes / transfer_ms`, in MiB/s.
    pub mib_per_s: f64,
}

/// `docker buildx build` of the service's context copy.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DockerBench {
    /// The first build of the copy.
    pub first_transfer: Option<Transfer>,
    /// After the same one-file edit.
    pub incremental_transfer: Option<Transfer>,
    /// Nothing changed.
    pub noop_build_ms: Option<f64>,
    /// Why docker could not build it, if it could not.
    pub error: Option<String>,
}

/// Measures the services `opts` names. `note` hears what is being done.
pub async fn bench(
    client: &Client,
    project: &Project,
    opts: &BenchOptions,
    note: &(dyn Fn(&str) + Send + Sync),
) -> Result<BenchReport, BenchError> {
    let mut base = opts.build.clone();
    base.services = opts.services.clone();
    base.transport = Transport::FileSync;
    base.no_cache = false;
    base.pull = false;
    base.cache_dir = None;
    // Which services: the plan's own selection (and its errors).
    let services: Vec<String> = plan(project, &base)?
        .into_iter()
        .filter(|b| b.same_as.is_none())
        .map(|b| b.service)
        .collect();
    let runs = opts.runs.max(1);
    let mut out = Vec::new();
    for service in services {
        let mut samples = Vec::new();
        for run in 0..runs {
            note(&format!("`{service}`: run {} of {runs}", run + 1));
            samples.push(bench_once(client, project, &base, &service, opts, note).await?);
        }
        out.push(median_of(samples));
    }
    Ok(BenchReport {
        runs,
        services: out,
    })
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, BenchError> {
        use rand::Rng;
        let dir = std::env::temp_dir().join(format!(
            "cbuild-bench-{}-{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        ));
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // Canonical, so context paths compare as the walk sees them.
        let dir = dir.canonicalize().map_err(io_err(&dir))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A step's name, start and end.
type Step = (String, Option<SystemTime>, Option<SystemTime>);

/// Records when the daemon's context-loading step ran.
#[derive(Default)]
struct StepClock {
    steps: Mutex<HashMap<String, Step>>,
}

impl Reporter for StepClock {
    fn report(&self, event: BuildEvent) {
        if let BuildEvent::Status { update, .. } = event {
            if let Ok(mut steps) = self.steps.lock() {
                for v in update.vertexes {
                    let e = steps.entry(v.digest).or_default();
                    e.0 = v.name;
                    e.1 = v.started.or(e.1);
                    e.2 = v.completed.or(e.2);
                }
            }
        }
    }
}

impl StepClock {
    /// Time of the steps loading the build context (`[internal] load
    /// build context` and named contexts).
    fn context_time(&self) -> Duration {
        let steps = self.steps.lock().map(|s| s.clone()).unwrap_or_default();
        steps
            .values()
            .filter(|(name, _, _)| is_context_step(name))
            .filter_map(|(_, s, c)| c.as_ref()?.duration_since((*s)?).ok())
            .sum()
    }
}

fn is_context_step(name: &str) -> bool {
    name.starts_with("[internal] load build context")
        || (name.starts_with("[context ") && name.contains("load from client"))
}

/// One build as bench runs it: exports nothing, never skipped.
struct Measured {
    elapsed: Duration,
    transfer: Duration,
    outcome: ServiceOutcome,
}

async fn build_measured(
    client: &Client,
    project: &Project,
    base: &BuildOptions,
    service: &str,
    cache_dir: &Path,
    what: &'static str,
) -> Result<Measured, BenchError> {
    let mut opts = base.clone();
    opts.services = vec![service.to_string()];
    opts.cache_dir = Some(cache_dir.to_path_buf());
    let mut b: ServiceBuild = plan(project, &opts)?
        .into_iter()
        .find(|b| b.service == service)
        .ok_or_else(|| PlanError::NoSuchService(service.to_string()))?;
    // Only this service; its dependencies' images are taken as they are.
    b.deps.clear();
    b.same_as = None;
    b.record = None;
    b.force = true;
    b.solve.exporters.clear();
    // Write back what earlier builds left dirty (layers, the scratch copy)
    // now, not during the build being timed.
    settle().await;
    let clock = Arc::new(StepClock::default());
    let started = Instant::now();
    let mut results = crate::orchestrate::run(
        client,
        None,
        vec![b],
        1,
        clock.clone(),
        crate::orchestrate::Shutdown::never(),
    )
    .await;
    let elapsed = started.elapsed();
    let (_, outcome) = results.pop().ok_or_else(|| BenchError::Build {
        service: service.to_string(),
        what,
        message: "no outcome".into(),
    })?;
    if let Some(message) = &outcome.error {
        return Err(BenchError::Build {
            service: service.to_string(),
            what,
            message: message.clone(),
        });
    }
    Ok(Measured {
        elapsed,
        transfer: clock.context_time(),
        outcome,
    })
}

/// `sync(2)`: flushes dirty pages to disk before a timed build, so the
/// writeback of earlier work is not measured with it.
async fn settle() {
    let _ = tokio::task::spawn_blocking(rustix::fs::sync).await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn transfer_of(m: &Measured) -> Transfer {
    let bytes = m.outcome.transfer.context_bytes_sent;
    Transfer {
        build_ms: ms(m.elapsed),
        transfer_ms: ms(m.transfer),
        files: Some(m.outcome.transfer.context_files_sent),
        bytes,
        mib_per_s: throughput(bytes, m.transfer),
    }
}

fn throughput(bytes: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
    }
}

/// The walk options of every request the daemon made for the main context.
fn context_requests(m: &Measured) -> Vec<WalkOptions> {
    m.outcome
        .transfer
        .served
        .iter()
        .filter(|s| s.local == "context")
        .map(|s| s.opts.clone())
        .collect()
}

async fn bench_once(
    client: &Client,
    project: &Project,
    base: &BuildOptions,
    service: &str,
    opts: &BenchOptions,
    note: &(dyn Fn(&str) + Send + Sync),
) -> Result<ServiceBench, BenchError> {
    let scratch = Scratch::new()?;
    let svc = &project.services[service];
    let build = svc
        .build
        .as_ref()
        .ok_or_else(|| PlanError::NoBuild(service.to_string()))?;
    let root = PathBuf::from(&build.context);

    note(&format!("`{service}`: first transfer (fresh generation)"));
    let cache = scratch.0.join("cache");
    let first = build_measured(client, project, base, service, &cache, "first").await?;
    note(&format!("`{service}`: no-op build"));
    let noop = build_measured(client, project, base, service, &cache, "no-op").await?;

    note(&format!("`{service}`: walk and hash"));
    let requests = context_requests(&first);
    let hash_dir = scratch.0.join("hashes");
    let (cold, warm, warm_files_hashed, entries) = {
        let root = root.clone();
        let requests = requests.clone();
        let service = service.to_string();
        tokio::task::spawn_blocking(move || walk_and_hash(&root, &requests, &hash_dir))
            .await
            .map_err(|e| BenchError::Context {
                service: service.clone(),
                message: e.to_string(),
            })?
            .map_err(|message| BenchError::Context { service, message })?
    };
    let context_files = entries.values().filter(|e| e.regular).count() as u64;
    let context_bytes = entries.values().filter(|e| e.regular).map(|e| e.size).sum();

    note(&format!("`{service}`: incremental transfer on a copy"));
    let copy = scratch.0.join("copy");
    let (copy_project, dockerfile) = copy_context(project, service, &root, &entries, &copy)?;
    let copy_cache = scratch.0.join("copy-cache");
    build_measured(client, &copy_project, base, service, &copy_cache, "copy").await?;
    let mut docker = None;
    let docker_cmd = opts
        .docker
        .as_ref()
        .map(|d| DockerCmd::new(d, &copy_project, service, &copy, &dockerfile));
    if let Some(cmd) = &docker_cmd {
        note(&format!("`{service}`: docker buildx build (first)"));
        let mut d = DockerBench::default();
        match cmd.as_ref().map_err(Clone::clone) {
            Ok(cmd) => match cmd.run().await {
                Ok(t) => d.first_transfer = Some(t),
                Err(e) => d.error = Some(e),
            },
            Err(e) => d.error = Some(e),
        }
        docker = Some(d);
    }
    let edited = pick_file(&entries, &dockerfile);
    let mut incremental = None;
    if let Some(rel) = &edited {
        let path = copy.join(rel);
        edit(&path)?;
        let m = build_measured(client, &copy_project, base, service, &copy_cache, "edited").await?;
        incremental = Some(transfer_of(&m));
        if let (Some(Ok(cmd)), Some(d)) = (&docker_cmd, docker.as_mut()) {
            if d.error.is_none() {
                note(&format!("`{service}`: docker buildx build (edited, no-op)"));
                match cmd.run().await {
                    Ok(t) => d.incremental_transfer = Some(t),
                    Err(e) => d.error = Some(e),
                }
                match cmd.run().await {
                    Ok(t) => d.noop_build_ms = Some(t.build_ms),
                    Err(e) => d.error = Some(e),
                }
            }
        }
    }
    drop(scratch);
    Ok(ServiceBench {
        service: service.to_string(),
        context_files,
        context_bytes,
        walk_hash_cold_ms: ms(cold),
        walk_hash_warm_ms: ms(warm),
        warm_files_hashed,
        first_transfer: transfer_of(&first),
        incremental_transfer: incremental,
        edited_file: edited,
        noop_build_ms: ms(noop.elapsed),
        noop_bytes_sent: noop.outcome.transfer.context_bytes_sent,
        docker,
    })
}

/// An entry of the minimal context.
#[derive(Clone, Debug)]
struct Item {
    regular: bool,
    dir: bool,
    link: Option<String>,
    size: u64,
}

type WalkHash = (Duration, Duration, u64, BTreeMap<String, Item>);

/// Walks and hashes what each request selects, cold then warm; returns
/// the times, the files the warm pass read, and the union of the entries.
fn walk_and_hash(
    root: &Path,
    requests: &[WalkOptions],
    cache_dir: &Path,
) -> Result<WalkHash, String> {
    let pass = |cache: &HashCache| -> Result<BTreeMap<String, Item>, String> {
        let mut items = BTreeMap::new();
        for opts in requests {
            let entries = walk::walk(root, opts).map_err(|e| e.to_string())?;
            cache.hash_all(&entries).map_err(|e| {
                let mut m = e.to_string();
                if let Some(s) = std::error::Error::source(&e) {
                    m.push_str(&format!(": {s}"));
                }
                m
            })?;
            for e in entries {
                let link = e.is_symlink().then(|| e.linkname.clone());
                items.insert(
                    e.path.clone(),
                    Item {
                        regular: e.is_regular() && !e.is_symlink(),
                        dir: e.is_dir(),
                        link,
                        size: e.size,
                    },
                );
            }
        }
        Ok(items)
    };
    let started = Instant::now();
    let cold = HashCache::open(cache_dir, root);
    let items = pass(&cold)?;
    let cold_time = started.elapsed();
    cold.save()
        .map_err(|e| format!("cannot save the hash cache: {e}"))?;
    let started = Instant::now();
    let warm = HashCache::open(cache_dir, root);
    pass(&warm)?;
    let warm_time = started.elapsed();
    let read = warm
        .stats
        .files_hashed
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok((cold_time, warm_time, read, items))
}

/// Copies the minimal context (and the Dockerfile) of `service` to `copy`,
/// and returns the project with the service's context pointing there and
/// the Dockerfile's path in the copy (or outside it).
fn copy_context(
    project: &Project,
    service: &str,
    root: &Path,
    entries: &BTreeMap<String, Item>,
    copy: &Path,
) -> Result<(Project, PathBuf), BenchError> {
    std::fs::create_dir_all(copy).map_err(io_err(copy))?;
    for (rel, item) in entries {
        let to = copy.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        if item.dir {
            std::fs::create_dir_all(&to).map_err(io_err(&to))?;
        } else if let Some(target) = &item.link {
            std::os::unix::fs::symlink(target, &to).map_err(io_err(&to))?;
        } else if item.regular {
            std::fs::copy(root.join(rel), &to).map_err(io_err(&to))?;
        }
    }
    let mut project = project.clone();
    let svc = project
        .services
        .get_mut(service)
        .ok_or_else(|| PlanError::NoSuchService(service.to_string()))?;
    let build = svc
        .build
        .as_mut()
        .ok_or_else(|| PlanError::NoBuild(service.to_string()))?;
    let dockerfile = {
        let p = Path::new(&build.dockerfile_path()).to_path_buf();
        if p.is_absolute() {
            p
        } else {
            root.join(p)
        }
    };
    let dockerfile = match dockerfile.strip_prefix(root) {
        Ok(rel) if build.dockerfile_inline.is_none() => {
            let to = copy.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            std::fs::copy(&dockerfile, &to).map_err(io_err(&dockerfile))?;
            let own_ignore = crate::context::ignorefile::beside(&dockerfile);
            if own_ignore.is_file() {
                let to = crate::context::ignorefile::beside(&to);
                std::fs::copy(&own_ignore, &to).map_err(io_err(&own_ignore))?;
            }
            to
        }
        _ => {
            build.dockerfile = Some(dockerfile.display().to_string());
            dockerfile
        }
    };
    // Named contexts stay where they are (they are only read).
    for v in build.additional_contexts.values_mut() {
        if !v.contains(':') && Path::new(v.as_str()).is_relative() {
            *v = root.join(&*v).display().to_string();
        }
    }
    build.context = copy.display().to_string();
    Ok((project, dockerfile))
}

/// The file to edit: the median-sized regular file of the context that is
/// neither the Dockerfile nor an ignore file.
fn pick_file(entries: &BTreeMap<String, Item>, dockerfile: &Path) -> Option<String> {
    let name = dockerfile.file_name()?.to_string_lossy().into_owned();
    let mut files: Vec<(&String, u64)> = entries
        .iter()
        .filter(|(p, i)| {
            i.regular
                && !p.ends_with(".dockerignore")
                && walk_base(p) != name
                && walk_base(p) != "Dockerfile"
        })
        .map(|(p, i)| (p, i.size))
        .collect();
    files.sort_by_key(|(p, s)| (*s, (*p).clone()));
    files.get(files.len() / 2).map(|(p, _)| (*p).clone())
}

fn walk_base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Appends one line to `path` (a copy in the scratch directory).
fn edit(path: &Path) -> Result<(), BenchError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(b"\n# cbuild bench edit\n")
        .map_err(io_err(path))
}

/// A `docker buildx build` of the copy, as the Docker CLI sends it.
struct DockerCmd {
    program: PathBuf,
    args: Vec<String>,
}

impl DockerCmd {
    fn new(
        program: &Path,
        project: &Project,
        service: &str,
        context: &Path,
        dockerfile: &Path,
    ) -> Result<Self, String> {
        let build = project.services[service]
            .build
            .as_ref()
            .ok_or("no build section")?;
        if build.dockerfile_inline.is_some() || !build.secrets.is_empty() || !build.ssh.is_empty() {
            return Err("not compared: inline Dockerfile, secrets or ssh".into());
        }
        let mut args: Vec<String> = [
            "buildx",
            "build",
            "--progress",
            "rawjson",
            "--output",
            "type=cacheonly",
            "--file",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(dockerfile.display().to_string());
        if let Some(t) = &build.target {
            args.extend(["--target".into(), t.clone()]);
        }
        for (k, v) in &build.args {
            if let Some(v) = v {
                args.extend(["--build-arg".into(), format!("{k}={v}")]);
            }
        }
        for (name, v) in &build.additional_contexts {
            let v = match v.strip_prefix("service:") {
                Some(dep) => format!(
                    "docker-image://{}",
                    project.services[dep].image_name(&project.name)
                ),
                None => v.clone(),
            };
            args.extend(["--build-context".into(), format!("{name}={v}")]);
        }
        args.push(context.display().to_string());
        Ok(Self {
            program: program.to_path_buf(),
            args,
        })
    }

    async fn run(&self) -> Result<Transfer, String> {
        settle().await;
        let started = Instant::now();
        let out = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run `{}`: {e}", self.program.display()))?;
        let elapsed = started.elapsed();
        let text = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            let last = text.lines().last().unwrap_or_default();
            return Err(format!("docker buildx build failed: {last}"));
        }
        let (transfer, bytes) = parse_rawjson(&text);
        Ok(Transfer {
            build_ms: ms(elapsed),
            transfer_ms: ms(transfer),
            files: None,
            bytes,
            mib_per_s: throughput(bytes, transfer),
        })
    }
}

/// From `--progress rawjson` output: the time of the context-loading steps
/// and the bytes of their `transferring …` statuses.
fn parse_rawjson(text: &str) -> (Duration, u64) {
    let mut steps: HashMap<String, (String, Option<Timestamp>, Option<Timestamp>)> = HashMap::new();
    let mut transferred: HashMap<(String, String), u64> = HashMap::new();
    // Pretty-printed objects one after the other; anything else ends it.
    let values = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    for v in values.map_while(Result::ok) {
        for x in v["vertexes"].as_array().into_iter().flatten() {
            let digest = x["digest"].as_str().unwrap_or_default().to_string();
            let e = steps.entry(digest).or_default();
            if let Some(n) = x["name"].as_str() {
                e.0 = n.to_string();
            }
            e.1 = x["started"].as_str().and_then(timestamp).or(e.1);
            e.2 = x["completed"].as_str().and_then(timestamp).or(e.2);
        }
        for s in v["statuses"].as_array().into_iter().flatten() {
            let id = s["id"].as_str().unwrap_or_default();
            if id.starts_with("transferring") {
                let vertex = s["vertex"].as_str().unwrap_or_default().to_string();
                let cur = s["current"].as_u64().unwrap_or(0);
                let e = transferred.entry((vertex, id.to_string())).or_default();
                *e = (*e).max(cur);
            }
        }
    }
    let context: Vec<&String> = steps
        .iter()
        .filter(|(_, (n, _, _))| is_context_step(n))
        .map(|(d, _)| d)
        .collect();
    let time = steps
        .iter()
        .filter(|(d, _)| context.contains(d))
        // A step that ends before it starts (clock steps) counts as none.
        .filter_map(|(_, (_, s, c))| {
            Duration::try_from(c.as_ref()?.duration_since(*s.as_ref()?)).ok()
        })
        .sum();
    let bytes = transferred
        .iter()
        .filter(|((v, _), _)| context.contains(&v))
        .map(|(_, n)| n)
        .sum();
    (time, bytes)
}

/// An RFC 3339 timestamp as BuildKit writes it
/// (`2024-05-01T12:00:00.123456789Z`, or with an offset).
fn timestamp(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_u(v: Vec<u64>) -> u64 {
    median(v.into_iter().map(|x| x as f64).collect()).round() as u64
}

fn median_transfer(v: Vec<&Transfer>) -> Option<Transfer> {
    if v.is_empty() {
        return None;
    }
    Some(Transfer {
        build_ms: median(v.iter().map(|t| t.build_ms).collect()),
        transfer_ms: median(v.iter().map(|t| t.transfer_ms).collect()),
        files: v
            .iter()
            .map(|t| t.files)
            .collect::<Option<Vec<u64>>>()
            .map(median_u),
        bytes: median_u(v.iter().map(|t| t.bytes).collect()),
        mib_per_s: median(v.iter().map(|t| t.mib_per_s).collect()),
    })
}

/// The field-wise median of several runs of one service.
fn median_of(samples: Vec<ServiceBench>) -> ServiceBench {
    let f = |g: &dyn Fn(&ServiceBench) -> f64| median(samples.iter().map(g).collect());
    let u = |g: &dyn Fn(&ServiceBench) -> u64| median_u(samples.iter().map(g).collect());
    let docker = if samples.iter().any(|s| s.docker.is_some()) {
        let ds: Vec<&DockerBench> = samples.iter().filter_map(|s| s.docker.as_ref()).collect();
        Some(DockerBench {
            first_transfer: median_transfer(
                ds.iter()
                    .filter_map(|d| d.first_transfer.as_ref())
                    .collect(),
            ),
            incremental_transfer: median_transfer(
                ds.iter()
                    .filter_map(|d| d.incremental_transfer.as_ref())
                    .collect(),
            ),
            noop_build_ms: {
                let v: Vec<f64> = ds.iter().filter_map(|d| d.noop_build_ms).collect();
                (!v.is_empty()).then(|| median(v))
            },
            error: ds.iter().find_map(|d| d.error.clone()),
        })
    } else {
        None
    };
    ServiceBench {
        service: samples[0].service.clone(),
        context_files: u(&|s| s.context_files),
        context_bytes: u(&|s| s.context_bytes),
        walk_hash_cold_ms: f(&|s| s.walk_hash_cold_ms),
        walk_hash_warm_ms: f(&|s| s.walk_hash_warm_ms),
        warm_files_hashed: u(&|s| s.warm_files_hashed),
        first_transfer: median_transfer(samples.iter().map(|s| &s.first_transfer).collect())
            .unwrap_or_default(),
        incremental_transfer: median_transfer(
            samples
                .iter()
                .filter_map(|s| s.incremental_transfer.as_ref())
                .collect(),
        ),
        edited_file: samples[0].edited_file.clone(),
        noop_build_ms: f(&|s| s.noop_build_ms),
        noop_bytes_sent: u(&|s| s.noop_bytes_sent),
        docker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median_u(vec![5, 1, 9]), 5);
    }

    #[test]
    fn rfc3339() {
        let secs = |s: &str| timestamp(s).map(|t| t.as_nanosecond());
        assert_eq!(secs("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            secs("2000-03-01T00:00:01.5Z"),
            Some(951_868_801_500_000_000)
        );
        assert_eq!(
            secs("2000-03-01T01:00:01.5+01:00"),
            Some(951_868_801_500_000_000)
        );
        assert_eq!(secs("2000-03-01"), None);
    }

    #[test]
    fn rawjson_context_step() {
        let text = r#"{"vertexes":[{"digest":"a","name":"[internal] load build context","started":"2024-01-01T00:00:01Z"}]}
{"vertexes":[{"digest":"a","name":"[internal] load build context","started":"2024-01-01T00:00:01Z","completed":"2024-01-01T00:00:01.25Z"}],"statuses":[{"id":"transferring context:","vertex":"a","current":2048}]}
{
  "vertexes": [{"digest":"b","name":"[1/2] FROM base","started":"2024-01-01T00:00:00Z","completed":"2024-01-01T00:00:09Z"}]
}
not json"#;
        let (t, b) = parse_rawjson(text);
        assert_eq!(t, Duration::from_millis(250));
        assert_eq!(b, 2048);
    }

    #[test]
    fn the_median_file_is_edited_never_the_dockerfile() {
        let item = |size| Item {
            regular: true,
            dir: false,
            link: None,
            size,
        };
        let entries: BTreeMap<String, Item> = [
            ("Dockerfile".to_string(), item(50)),
            (".dockerignore".to_string(), item(10)),
            ("a".to_string(), item(1)),
            ("b".to_string(), item(2)),
            ("c".to_string(), item(3)),
        ]
        .into();
        assert_eq!(
            pick_file(&entries, Path::new("/x/Dockerfile")).as_deref(),
            Some("b")
        );
    }
}
