//! Turning a Compose service into what BuildKit needs: the frontend
//! attributes, the exporter, and the directories the session serves.
//! This is where Compose's vocabulary meets BuildKit's; the mapping follows
//! what `docker compose build` (through buildx) sends.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::buildkit::session::TrackedDir;
use crate::buildkit::{
    ExporterSpec, LocalDir, SessionSpec, SolveOptions, VirtualFile, DOCKERFILE_FRONTEND,
};
use crate::compose::{Project, Service};
use crate::context::{cache::HashCache, clock::ContentClock};

/// Options of a `build` that are not in the Compose file.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Services to build; empty means every service with a `build:`.
    pub services: Vec<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`.
    pub pull: bool,
    /// `--build-arg KEY[=VALUE]`, overriding the Compose file.
    pub build_args: Vec<(String, Option<String>)>,
    /// The environment (`--build-arg KEY` without a value reads it).
    pub environment: HashMap<String, String>,
    /// Builds run at once (0 = all).
    pub parallel: usize,
    /// cbuild's cache directory (hash caches, content clocks); `None`
    /// keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Run sessions inside `Control.Session` even on a Docker engine.
    pub session_over_control: bool,
    /// How build contexts travel.
    pub transport: Transport,
    /// `--ssh` entries (`default`, `id=/path/to/agent.sock`), added to every
    /// service's `build.ssh`.
    pub ssh: Vec<String>,
}

/// How a build context travels to BuildKit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// FileSync (DiffCopy): incremental, only what changed is sent.
    #[default]
    FileSync,
    /// One deterministic tar stream over the session's Upload service,
    /// optionally gzip-compressed (for builders at the far end of a
    /// network). Always sends the whole minimal context.
    Tar {
        /// Compress with gzip.
        gzip: bool,
    },
}

/// One service's build, ready to hand to BuildKit.
#[derive(Clone, Debug)]
pub struct ServiceBuild {
    /// The service name.
    pub service: String,
    /// The image name the result is tagged with.
    pub image: String,
    /// The solve.
    pub solve: SolveOptions,
    /// What the session serves.
    pub session: SessionSpec,
    /// The content-tracked directories, to commit or forget once the build
    /// has ended.
    pub tracked: Vec<TrackedDir>,
    /// Services whose images this build uses; they are built first.
    pub deps: Vec<String>,
    /// Another service that produces the same image; this one is not built
    /// again.
    pub same_as: Option<String>,
    /// The images the build starts from (base images, service images used
    /// as named contexts): their IDs are inputs of the build.
    pub bases: Vec<String>,
    /// Never skip this build (`--no-cache`, `--pull`).
    pub force: bool,
    /// Where the record of the last build is kept (for skipping builds
    /// whose inputs did not change).
    pub record: Option<PathBuf>,
}

impl ServiceBuild {
    /// Records the outcome in the hash caches and content clocks: after a
    /// success BuildKit holds what was reported; after a failure nobody
    /// knows, so the next build starts a fresh generation.
    pub fn finish(&self, success: bool) -> HashCounts {
        let counts = self.hash_counts();
        for t in &self.tracked {
            if let Err(e) = t.hashes.save() {
                tracing::warn!("cannot save the hash cache: {e}");
            }
            if success {
                if let Err(e) = t.clock.commit() {
                    tracing::warn!("cannot save the content clock: {e}");
                    t.clock.invalidate();
                }
            } else {
                t.clock.invalidate();
            }
        }
        counts
    }
}

impl ServiceBuild {
    /// How much hashing this build's directories needed so far.
    pub fn hash_counts(&self) -> HashCounts {
        use std::sync::atomic::Ordering::Relaxed;
        let mut counts = HashCounts::default();
        for t in &self.tracked {
            counts.files_hashed += t.hashes.stats.files_hashed.load(Relaxed);
            counts.bytes_hashed += t.hashes.stats.bytes_hashed.load(Relaxed);
            counts.cache_hits += t.hashes.stats.hits.load(Relaxed);
        }
        counts
    }

    /// Saves the hash caches (after a skipped build: the replay may have
    /// hashed changed-but-identical files).
    pub fn save_hashes(&self) {
        for t in &self.tracked {
            if let Err(e) = t.hashes.save() {
                tracing::warn!("cannot save the hash cache: {e}");
            }
        }
    }
}

/// How much content hashing a build needed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashCounts {
    /// Files read and hashed.
    pub files_hashed: u64,
    /// Bytes read to hash them.
    pub bytes_hashed: u64,
    /// Files whose cached hash was used.
    pub cache_hits: u64,
}

/// Why a service cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The service does not exist.
    #[error("no such service: `{0}`")]
    NoSuchService(String),
    /// The service has no `build:` section.
    #[error("service `{0}` has no `build:` section, so there is nothing to build")]
    NoBuild(String),
    /// The build context is not a directory.
    #[error("service `{service}`: build context `{context}` is not a directory")]
    MissingContext {
        /// The service.
        service: String,
        /// The context path.
        context: String,
    },
    /// The Dockerfile does not exist.
    #[error("service `{service}`: Dockerfile `{path}` not found")]
    MissingDockerfile {
        /// The service.
        service: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Services depend on each other's images in a circle.
    #[error("build dependency cycle: {0}")]
    Cycle(String),
    /// The ignore file is invalid.
    #[error("`{path}`: {message}")]
    IgnoreFile {
        /// The ignore file.
        path: PathBuf,
        /// What is wrong (with the line).
        message: String,
    },
    /// A build secret cannot be read.
    #[error("service `{service}`: build secret `{secret}`: {message}")]
    Secret {
        /// The service.
        service: String,
        /// The secret.
        secret: String,
        /// What is wrong.
        message: String,
    },
    /// A feature cbuild does not support yet.
    #[error("service `{service}`: {what} is not supported yet")]
    Unsupported {
        /// The service.
        service: String,
        /// What.
        what: String,
    },
}

/// The version cbuild reports in `com.docker.compose.version`.
pub const COMPOSE_VERSION_LABEL: &str = concat!("cbuild-", env!("CARGO_PKG_VERSION"));

/// Plans the builds `opts` asks for, in service-name order.
pub fn plan(project: &Project, opts: &BuildOptions) -> Result<Vec<ServiceBuild>, PlanError> {
    let wanted: Vec<String> = selected_services(project, &opts.services)?
        .into_iter()
        .map(|s| s.name.clone())
        .collect();
    // Dependencies are built too (and first): a build cannot be right
    // without the images it starts from.
    let mut order: Vec<String> = Vec::new();
    let mut visiting: Vec<String> = Vec::new();
    for name in &wanted {
        visit(project, name, opts, &mut order, &mut visiting)?;
    }
    let mut builds: Vec<ServiceBuild> = Vec::new();
    for name in order {
        let svc = &project.services[&name];
        let mut b = plan_service(project, svc, opts)?;
        b.deps = build_deps(project, svc, opts);
        // `FROM ${ARG}` names the image the arguments make of it.
        let args = svc
            .build
            .as_ref()
            .map(|x| build_args(x, opts))
            .unwrap_or_default();
        let text = dockerfile_text(svc).map(|t| expand_from_args(&t, &args));
        let named: Vec<String> = svc
            .build
            .as_ref()
            .map(|x| {
                x.additional_contexts
                    .keys()
                    .map(|k| k.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        b.bases = text
            .as_deref()
            .map(image_inputs)
            .unwrap_or_default()
            .into_iter()
            .filter(|i| !named.contains(&i.to_ascii_lowercase()))
            .collect();
        // Inputs BuildKit fetches itself and cbuild cannot see change: such
        // builds always run.
        let remote_add = text.as_deref().is_some_and(has_remote_add);
        let remote_named = svc.build.as_ref().is_some_and(|x| {
            x.additional_contexts
                .values()
                .any(|v| v.contains("://") && !v.starts_with("docker-image://"))
        });
        if remote_add || remote_named {
            b.record = None;
        }
        if let Some(x) = &svc.build {
            for v in x.additional_contexts.values() {
                if let Some(img) = v.strip_prefix("docker-image://") {
                    b.bases.push(img.to_string());
                }
            }
        }

        // Images of services used as named contexts are inputs too.
        if let Some(build) = &svc.build {
            for v in build.additional_contexts.values() {
                if let Some(dep) = v.strip_prefix("service:") {
                    if let Some(d) = project.services.get(dep) {
                        b.bases.push(d.image_name(&project.name));
                    }
                }
            }
        }
        b.force =
            opts.no_cache || opts.pull || svc.build.as_ref().is_some_and(|x| x.no_cache || x.pull);
        // Services that produce the same image are built once.
        if let Some(first) = builds.iter().find(|o| o.image == b.image) {
            b.same_as = Some(first.service.clone());
        }
        builds.push(b);
    }
    Ok(builds)
}

/// The services `names` selects (every service with a `build:` section when
/// empty), each of which must exist and have a `build:` section.
pub(crate) fn selected_services<'p>(
    project: &'p Project,
    names: &[String],
) -> Result<Vec<&'p Service>, PlanError> {
    if names.is_empty() {
        return Ok(project
            .services
            .values()
            .filter(|s| s.build.is_some())
            .collect());
    }
    names
        .iter()
        .map(|name| {
            let svc = project
                .services
                .get(name)
                .ok_or_else(|| PlanError::NoSuchService(name.clone()))?;
            if svc.build.is_none() {
                return Err(PlanError::NoBuild(name.clone()));
            }
            Ok(svc)
        })
        .collect()
}

/// Depth-first topological order of `name` and its build dependencies.
fn visit(
    project: &Project,
    name: &str,
    opts: &BuildOptions,
    order: &mut Vec<String>,
    visiting: &mut Vec<String>,
) -> Result<(), PlanError> {
    if order.iter().any(|o| o == name) {
        return Ok(());
    }
    if let Some(pos) = visiting.iter().position(|v| v == name) {
        let mut cycle = visiting[pos..].to_vec();
        cycle.push(name.to_string());
        return Err(PlanError::Cycle(cycle.join(" -> ")));
    }
    let svc = project
        .services
        .get(name)
        .ok_or_else(|| PlanError::NoSuchService(name.to_string()))?;
    visiting.push(name.to_string());
    for dep in build_deps(project, svc, opts) {
        visit(project, &dep, opts, order, visiting)?;
    }
    visiting.pop();
    order.push(name.to_string());
    Ok(())
}

/// The services whose images `svc`'s build uses: `additional_contexts`
/// entries `service:NAME`, and `FROM` lines naming another service's image.
fn build_deps(project: &Project, svc: &Service, opts: &BuildOptions) -> Vec<String> {
    let Some(build) = &svc.build else {
        return Vec::new();
    };
    let mut deps: Vec<String> = build
        .additional_contexts
        .values()
        .filter_map(|v| v.strip_prefix("service:"))
        .map(str::to_string)
        .collect();
    if let Some(text) = dockerfile_text(svc) {
        for image in base_images(&expand_from_args(&text, &build_args(build, opts))) {
            let image = normalize_image(&image);
            for other in project.services.values() {
                if other.name != svc.name
                    && other.build.is_some()
                    && normalize_image(&other.image_name(&project.name)) == image
                    && !deps.contains(&other.name)
                {
                    deps.push(other.name.clone());
                }
            }
        }
    }
    deps
}

/// Every image a Dockerfile reads: `FROM` bases, and the images named by
/// `COPY --from=` and `RUN --mount=…,from=` that are not stages.
fn image_inputs(dockerfile: &str) -> Vec<String> {
    let mut images = base_images(dockerfile);
    let stages: Vec<String> = from_lines(dockerfile)
        .into_iter()
        .filter_map(|(_, s)| s)
        .collect();
    for l in dockerfile.lines() {
        let words: Vec<&str> = l.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            continue;
        }
        for w in &words {
            for part in w.split(',') {
                let value = part
                    .strip_prefix("--from=")
                    .or_else(|| part.strip_prefix("from="));
                let Some(v) = value else { continue };
                let v = v.trim_matches('"');
                let is_stage = stages.contains(&v.to_ascii_lowercase())
                    || v.chars().all(|c| c.is_ascii_digit());
                if !v.is_empty() && !is_stage && !images.contains(&v.to_string()) {
                    images.push(v.to_string());
                }
            }
        }
    }
    images
}

/// Whether an `ADD` fetches from the network (BuildKit re-checks those
/// every build).
fn has_remote_add(dockerfile: &str) -> bool {
    dockerfile.lines().any(|l| {
        let mut words = l.split_whitespace();
        words.next().is_some_and(|w| w.eq_ignore_ascii_case("ADD"))
            && words.any(|w| {
                w.starts_with("http://")
                    || w.starts_with("https://")
                    || w.starts_with("git@")
                    || w.starts_with("git://")
            })
    })
}

/// The service's Dockerfile text (inline or read from disk), if readable.
fn dockerfile_text(svc: &Service) -> Option<String> {
    let build = svc.build.as_ref()?;
    match &build.dockerfile_inline {
        Some(t) => Some(t.clone()),
        None if !build.is_remote_context() => std::fs::read_to_string(resolve_dockerfile(
            Path::new(&build.context),
            &build.dockerfile_path(),
        ))
        .ok(),
        None => None,
    }
}

/// The Dockerfile with variables in its `FROM` lines expanded as BuildKit
/// does: from the `ARG`s declared before the first `FROM` (their defaults,
/// overridden by `build_args`). Other lines are left as they are.
fn expand_from_args(dockerfile: &str, build_args: &BTreeMap<String, String>) -> String {
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_from = false;
    let mut out = String::with_capacity(dockerfile.len());
    for line in dockerfile.lines() {
        let trimmed = line.trim_start();
        let mut words = trimmed.splitn(2, char::is_whitespace);
        let keyword = words.next().unwrap_or_default();
        let rest = words.next().unwrap_or_default().trim();
        if keyword.eq_ignore_ascii_case("ARG") && !seen_from {
            for decl in rest.split_whitespace() {
                let (name, default) = match decl.split_once('=') {
                    Some((n, d)) => (n, Some(expand_vars(d.trim_matches('"'), &meta))),
                    None => (decl, None),
                };
                let value = build_args.get(name).cloned().or(default);
                if let Some(v) = value {
                    meta.insert(name.to_string(), v);
                }
            }
        } else if keyword.eq_ignore_ascii_case("FROM") {
            seen_from = true;
            out.push_str("FROM ");
            out.push_str(&expand_vars(rest, &meta));
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Shell-style `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME-word}`,
/// `${NAME:+word}` and `${NAME+word}` from `vars` (unset: empty).
fn expand_vars(text: &str, vars: &BTreeMap<String, String>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && chars.get(i + 1) == Some(&'$') {
            out.push('$');
            i += 2;
            continue;
        }
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            // The matching `}` (defaults may hold `${…}` themselves).
            let mut depth = 0usize;
            let close = chars[i + 2..].iter().position(|&c| match c {
                '{' => {
                    depth += 1;
                    false
                }
                '}' if depth == 0 => true,
                '}' => {
                    depth -= 1;
                    false
                }
                _ => false,
            });
            let Some(close) = close else {
                out.extend(&chars[i..]);
                break;
            };
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            i += close + 3;
            let name_len = inner.chars().take_while(|&c| is_name(c)).count();
            let (name, op) = inner.split_at(name_len);
            let value = vars.get(name);
            let set_nonempty = value.is_some_and(|v| !v.is_empty());
            let expanded = if let Some(word) = op.strip_prefix(":-") {
                if set_nonempty {
                    value.cloned().unwrap_or_default()
                } else {
                    expand_vars(word, vars)
                }
            } else if let Some(word) = op.strip_prefix('-') {
                match value {
                    Some(v) => v.clone(),
                    None => expand_vars(word, vars),
                }
            } else if let Some(word) = op.strip_prefix(":+") {
                if set_nonempty {
                    expand_vars(word, vars)
                } else {
                    String::new()
                }
            } else if let Some(word) = op.strip_prefix('+') {
                if value.is_some() {
                    expand_vars(word, vars)
                } else {
                    String::new()
                }
            } else {
                value.cloned().unwrap_or_default()
            };
            out.push_str(&expanded);
            continue;
        }
        let name: String = chars[i + 1..].iter().take_while(|&&c| is_name(c)).collect();
        if name.is_empty() {
            out.push('$');
            i += 1;
            continue;
        }
        i += 1 + name.chars().count();
        out.push_str(vars.get(&name).map(String::as_str).unwrap_or_default());
    }
    out
}

/// Each `FROM` line of a Dockerfile: the image or stage it names (flags
/// skipped), and the stage name it declares with `AS`, lower-cased.
fn from_lines(dockerfile: &str) -> Vec<(String, Option<String>)> {
    dockerfile
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            if !words.next()?.eq_ignore_ascii_case("FROM") {
                return None;
            }
            let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
            let image = rest.first()?.to_string();
            let stage = (rest.len() >= 3 && rest[1].eq_ignore_ascii_case("AS"))
                .then(|| rest[2].to_ascii_lowercase());
            Some((image, stage))
        })
        .collect()
}

/// The images a Dockerfile starts from: `FROM` references that are not
/// earlier stage names and not `scratch`.
fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut bases = Vec::new();
    for (image, stage) in from_lines(dockerfile) {
        let lower = image.to_ascii_lowercase();
        if lower != "scratch" && !stages.contains(&lower) && !bases.contains(&image) {
            bases.push(image);
        }
        stages.extend(stage);
    }
    bases
}

/// `name` → `docker.io/library/name:latest`, for comparing references.
fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let mut full = if !name.contains('/') {
        format!("docker.io/library/{name}")
    } else {
        let first = name.split('/').next().unwrap_or_default();
        if first.contains('.') || first.contains(':') || first == "localhost" {
            name.to_string()
        } else {
            format!("docker.io/{name}")
        }
    };
    if !last.contains(':') && digest.is_none() {
        full.push_str(":latest");
    }
    if let Some(d) = digest {
        full.push('@');
        full.push_str(d);
    }
    full
}

fn plan_service(
    project: &Project,
    svc: &Service,
    opts: &BuildOptions,
) -> Result<ServiceBuild, PlanError> {
    let Some(build) = svc.build.as_ref() else {
        return Err(PlanError::NoBuild(svc.name.clone()));
    };
    let image = svc.image_name(&project.name);
    // A remote context (git repository, tarball URL) is fetched by BuildKit
    // itself; a local one is served by cbuild.
    let remote = build.is_remote_context();
    let context = PathBuf::from(&build.context);
    if !remote && !context.is_dir() {
        return Err(PlanError::MissingContext {
            service: svc.name.clone(),
            context: build.context.clone(),
        });
    }

    let mut locals = HashMap::new();
    let mut tracked = Vec::new();
    let base_key = shared_key(&project.name, &svc.name, &context);
    let main = (!remote).then(|| track(&context, &base_key, opts));
    tracked.extend(main.clone());
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    if let Some(inline) = &build.dockerfile_inline {
        locals.insert(
            "dockerfile".to_string(),
            LocalDir::Virtual(vec![VirtualFile {
                name: "Dockerfile".into(),
                data: Bytes::from(inline.clone().into_bytes()),
            }]),
        );
        attrs.insert("filename".into(), "Dockerfile".into());
        if remote {
            attrs.insert("dockerfilekey".into(), "dockerfile".into());
        }
    } else if remote {
        // The Dockerfile is read from the remote context.
        attrs.insert("filename".into(), build.dockerfile_path());
    } else {
        let path = resolve_dockerfile(&context, &build.dockerfile_path());
        if !path.is_file() {
            return Err(PlanError::MissingDockerfile {
                service: svc.name.clone(),
                path,
            });
        }
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into());
        locals.insert("dockerfile".to_string(), LocalDir::Disk(dir));
        attrs.insert("filename".into(), name);
    }

    let entitlements = option_attrs(project, svc, build, opts, &mut attrs)?;
    for (name, value) in &build.additional_contexts {
        if let Some(dep) = value.strip_prefix("service:") {
            // The dependency is built first and tagged in the engine; the
            // frontend then takes it from the local image store.
            let dep_svc = project
                .services
                .get(dep)
                .ok_or_else(|| PlanError::NoSuchService(dep.to_string()))?;
            attrs.insert(
                format!("context:{name}"),
                format!("docker-image://{}", dep_svc.image_name(&project.name)),
            );
            continue;
        }
        if value.contains("://") {
            attrs.insert(format!("context:{name}"), value.clone());
        } else {
            let base = if remote {
                &project.working_dir
            } else {
                &context
            };
            let dir = if Path::new(value).is_absolute() {
                PathBuf::from(value)
            } else {
                base.join(value)
            };
            // Local names `context` and `dockerfile` are taken; buildx
            // prefixes other names the same way.
            let local = format!("_ctx_{name}");
            attrs.insert(format!("context:{name}"), format!("local:{local}"));
            let t = track(
                &dir,
                &shared_key(&project.name, &format!("{}/{name}", svc.name), &dir),
                opts,
            );
            // BuildKit keys a named context's previous upload on this hint
            // (plus the session's key): give it the context's own clock.
            attrs.insert(format!("sharedkey:localdir:{name}"), t.clock.shared_key());
            locals.insert(local, LocalDir::Tracked(t.clone()));
            tracked.push(t);
        }
    }

    let secrets = build_secrets(project, svc, build, opts)?;
    let ssh = ssh_agents(svc, build, opts)?;
    let mut uploads = HashMap::new();
    match (main, opts.transport) {
        (None, _) => {
            attrs.insert("context".into(), build.context.clone());
        }
        (Some(main), Transport::FileSync) => {
            // BuildKit reads the ignore file itself; checking it here gives
            // errors that name the file and line.
            ignore_patterns(&context, locals.get("dockerfile"), &attrs)?;
            locals.insert("context".to_string(), LocalDir::Tracked(main));
        }
        (Some(main), Transport::Tar { gzip }) => {
            // The archive carries the context; the Dockerfile still comes
            // through FileSync (`dockerfilekey`). BuildKit applies no
            // .dockerignore to an archive, so cbuild applies it here.
            let exclude = ignore_patterns(&context, locals.get("dockerfile"), &attrs)?;
            // Only what the Dockerfile uses, as BuildKit would ask for it.
            let follow = dockerfile_text(svc).and_then(|text| {
                let args: HashMap<String, String> = attrs
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.strip_prefix("build-arg:")?.to_string(), v.clone()))
                    })
                    .collect();
                crate::context::dockerfile::analyze(&text, build.target.as_deref(), &args)
                    .ok()
                    .and_then(|u| u.follow_paths)
            });
            let id = crate::buildkit::session::new_id();
            attrs.insert("context".into(), crate::buildkit::session::upload::url(&id));
            attrs.insert("dockerfilekey".into(), "dockerfile".into());
            let t = main;
            uploads.insert(
                id,
                crate::buildkit::session::upload::Upload::new(move |w| {
                    let opts = match follow {
                        // The build uses no context file at all.
                        Some(f) if f.is_empty() => crate::context::walk::WalkOptions {
                            include_patterns: vec![String::new()],
                            exclude_patterns: exclude,
                            ..Default::default()
                        },
                        Some(f) => crate::context::walk::WalkOptions {
                            exclude_patterns: exclude,
                            follow_paths: f,
                            ..Default::default()
                        },
                        None => crate::context::walk::WalkOptions {
                            exclude_patterns: exclude,
                            ..Default::default()
                        },
                    };
                    crate::context::tar::write_context_tar(
                        &t.root, &opts, &t.hashes, &t.clock, gzip, w,
                    )
                    .map(|_| ())
                }),
            );
        }
    }

    let mut names = vec![image.clone()];
    names.extend(build.tags.iter().cloned());
    // The builder is not known yet: see `export::retarget`.
    let exporter = ExporterSpec {
        kind: super::export::Exporter::Moby.kind().into(),
        attrs: [("name".to_string(), names.join(","))].into(),
    };
    let shared_key = tracked
        .first()
        .map(|t| t.clock.shared_key())
        .unwrap_or_else(|| base_key.clone());
    Ok(ServiceBuild {
        service: svc.name.clone(),
        image,
        solve: SolveOptions {
            frontend: DOCKERFILE_FRONTEND.into(),
            frontend_attrs: attrs,
            exporters: vec![exporter],
            entitlements,
            cache_imports: build
                .cache_from
                .iter()
                .filter_map(|c| cache_entry(c))
                .collect(),
            cache_exports: build
                .cache_to
                .iter()
                .filter_map(|c| cache_entry(c))
                .collect(),
        },
        session: SessionSpec {
            shared_key,
            locals,
            secrets,
            ssh,
            over_control: opts.session_over_control,
            uploads,
            file_send: None,
        },
        tracked,
        deps: Vec::new(),
        same_as: None,
        bases: Vec::new(),
        force: false,
        // A tar context is not a replayable request, and a remote one can
        // change without cbuild seeing it: those are never skipped.
        record: match opts.transport {
            Transport::FileSync if !remote => opts
                .cache_dir
                .as_ref()
                .map(|c| c.join("builds").join(format!("{base_key}.json"))),
            _ => None,
        },
    })
}

/// The exclude patterns BuildKit would derive for this build: the
/// Dockerfile's own `<Dockerfile>.dockerignore` if present (next to the
/// Dockerfile), else the context's `.dockerignore`.
fn ignore_patterns(
    context: &Path,
    dockerfile_local: Option<&LocalDir>,
    attrs: &BTreeMap<String, String>,
) -> Result<Vec<String>, PlanError> {
    let mut candidates = Vec::new();
    if let (Some(LocalDir::Disk(dir)), Some(name)) = (dockerfile_local, attrs.get("filename")) {
        candidates.push(dir.join(format!("{name}.dockerignore")));
    }
    candidates.push(context.join(".dockerignore"));
    for path in candidates {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(PlanError::IgnoreFile {
                    path,
                    message: e.to_string(),
                })
            }
        };
        let lines = crate::context::dockerignore::parse_ignore_file(&text).map_err(|e| {
            PlanError::IgnoreFile {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        // Compile the patterns here, so a mistake is reported with its
        // file and line before any build starts (BuildKit would only say
        // "invalid exclude patterns" once the transfer began).
        let bad = |e: crate::context::dockerignore::PatternError| PlanError::IgnoreFile {
            path: path.clone(),
            message: e.to_string(),
        };
        let matcher =
            crate::context::dockerignore::PatternMatcher::from_ignore_lines(&lines).map_err(bad)?;
        for pattern in matcher.patterns() {
            pattern.matches("x").map_err(bad)?;
        }
        return Ok(lines.into_iter().map(|l| l.pattern).collect());
    }
    Ok(Vec::new())
}

/// A directory served by content, with its hash cache and content clock.
fn track(dir: &Path, key: &str, opts: &BuildOptions) -> TrackedDir {
    let fresh = opts.no_cache;
    let (hashes, clock) = match &opts.cache_dir {
        Some(c) => (HashCache::open(c, dir), ContentClock::open(c, key, fresh)),
        None => (HashCache::in_memory(), ContentClock::in_memory(key)),
    };
    TrackedDir {
        root: dir.to_path_buf(),
        hashes: Arc::new(hashes),
        clock: Arc::new(clock),
    }
}

/// The build arguments a build gets: the service's `args`, overridden by
/// `--build-arg` (a bare `KEY` takes the environment's value); unset ones
/// are left out.
fn build_args(build: &crate::compose::BuildSpec, opts: &BuildOptions) -> BTreeMap<String, String> {
    let mut args = build.args.clone();
    for (k, v) in &opts.build_args {
        let v = v.clone().or_else(|| opts.environment.get(k).cloned());
        args.insert(k.clone(), v);
    }
    args.into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
}

/// The frontend attributes from the service's build options (target, build
/// args, labels, cache and pull policy, hosts, shm size, ulimits, network,
/// platforms), and the entitlements they need.
fn option_attrs(
    project: &Project,
    svc: &Service,
    build: &crate::compose::BuildSpec,
    opts: &BuildOptions,
    attrs: &mut BTreeMap<String, String>,
) -> Result<Vec<String>, PlanError> {
    if let Some(t) = &build.target {
        attrs.insert("target".into(), t.clone());
    }
    for (k, v) in build_args(build, opts) {
        attrs.insert(format!("build-arg:{k}"), v);
    }
    for (k, v) in &build.labels {
        attrs.insert(format!("label:{k}"), v.clone());
    }
    // The labels `docker compose build` adds to every image it builds.
    attrs.insert(
        "label:com.docker.compose.project".into(),
        project.name.clone(),
    );
    attrs.insert("label:com.docker.compose.service".into(), svc.name.clone());
    attrs.insert(
        "label:com.docker.compose.version".into(),
        COMPOSE_VERSION_LABEL.into(),
    );

    if opts.no_cache || build.no_cache {
        attrs.insert("no-cache".into(), String::new());
    }
    if opts.pull || build.pull {
        attrs.insert("image-resolve-mode".into(), "pull".into());
    }
    if !build.extra_hosts.is_empty() {
        let hosts: Vec<String> = build
            .extra_hosts
            .iter()
            .map(|h| match h.split_once('=') {
                Some(_) => h.clone(),
                None => h.replacen(':', "=", 1),
            })
            .collect();
        attrs.insert("add-hosts".into(), hosts.join(","));
    }
    if let Some(shm) = build.shm_size {
        attrs.insert("shm-size".into(), shm.to_string());
    }
    if !build.ulimits.is_empty() {
        let u: Vec<String> = build
            .ulimits
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        attrs.insert("ulimit".into(), u.join(","));
    }
    let mut entitlements = Vec::new();
    match build.network.as_deref() {
        None | Some("default") | Some("") => {}
        Some("host") => {
            attrs.insert("force-network-mode".into(), "host".into());
            entitlements.push("network.host".to_string());
        }
        Some("none") => {
            attrs.insert("force-network-mode".into(), "none".into());
        }
        Some(other) => {
            return Err(PlanError::Unsupported {
                service: svc.name.clone(),
                what: format!(
                    "`build.network: {other}` (BuildKit supports `default`, `host` and `none`)"
                ),
            })
        }
    }
    if build.privileged {
        entitlements.push("security.insecure".to_string());
    }
    if !build.platforms.is_empty() {
        attrs.insert("platform".into(), build.platforms.join(","));
    }
    Ok(entitlements)
}

/// The values of the service's build secrets, by the id they mount as.
fn build_secrets(
    project: &Project,
    svc: &Service,
    build: &crate::compose::BuildSpec,
    opts: &BuildOptions,
) -> Result<HashMap<String, Bytes>, PlanError> {
    let mut secrets = HashMap::new();
    for sec in &build.secrets {
        let secret_err = |message: String| PlanError::Secret {
            service: svc.name.clone(),
            secret: sec.source.clone(),
            message,
        };
        let def = project
            .secrets
            .get(&sec.source)
            .ok_or_else(|| secret_err("not defined in the top-level `secrets:`".into()))?;
        let value = if let Some(file) = &def.file {
            std::fs::read(file)
                .map_err(|e| secret_err(format!("cannot read `{}`: {e}", file.display())))?
        } else if let Some(var) = &def.environment {
            opts.environment
                .get(var)
                .ok_or_else(|| secret_err(format!("the environment variable `{var}` is not set")))?
                .clone()
                .into_bytes()
        } else {
            return Err(secret_err("needs `file` or `environment`".into()));
        };
        let id = sec.target.clone().unwrap_or_else(|| sec.source.clone());
        secrets.insert(id, Bytes::from(value));
    }
    Ok(secrets)
}

/// The SSH agent sockets the build may use, by id (`build.ssh` + `--ssh`).
fn ssh_agents(
    svc: &Service,
    build: &crate::compose::BuildSpec,
    opts: &BuildOptions,
) -> Result<HashMap<String, PathBuf>, PlanError> {
    let mut ssh = HashMap::new();
    for entry in build.ssh.iter().chain(&opts.ssh) {
        let (id, path) = match entry.split_once('=') {
            Some((id, p)) => (id.to_string(), Some(PathBuf::from(p))),
            None => (entry.clone(), None),
        };
        let path = match path {
            Some(p) => p,
            None => match opts.environment.get("SSH_AUTH_SOCK") {
                Some(s) => PathBuf::from(s),
                None => {
                    return Err(PlanError::Unsupported {
                        service: svc.name.clone(),
                        what: format!(
                        "SSH forwarding of `{id}` without an agent (`SSH_AUTH_SOCK` is not set)"
                    ),
                    })
                }
            },
        };
        {
            use std::os::unix::fs::FileTypeExt;
            let is_socket = std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_socket());
            if !is_socket {
                return Err(PlanError::Unsupported {
                    service: svc.name.clone(),
                    what: format!(
                        "SSH forwarding of `{id}` from `{}` (cbuild forwards SSH agent sockets; load keys into an agent with `ssh-add`)",
                        path.display()
                    ),
                });
            }
        }
        ssh.insert(id, path);
    }
    Ok(ssh)
}

/// The Dockerfile's path: `dockerfile` relative to the context unless it is
/// absolute.
pub(crate) fn resolve_dockerfile(context: &Path, dockerfile: &str) -> PathBuf {
    let p = Path::new(dockerfile);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        context.join(p)
    }
}

/// BuildKit keeps the last upload of a local directory under this key and
/// sends only the differences next time. One key per (project, service,
/// context) keeps services from reusing each other's snapshot.
fn shared_key(project: &str, service: &str, context: &Path) -> String {
    let mut h = blake3::Hasher::new();
    for part in [
        project.as_bytes(),
        service.as_bytes(),
        context.as_os_str().as_encoded_bytes(),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    format!("cbuild-{}", &h.finalize().to_hex()[..32])
}

/// `type=registry,ref=x` (or a bare image reference) as a cache entry.
fn cache_entry(spec: &str) -> Option<ExporterSpec> {
    let mut kind = String::from("registry");
    let mut attrs = BTreeMap::new();
    if !spec.contains('=') {
        attrs.insert("ref".to_string(), spec.to_string());
        return Some(ExporterSpec { kind, attrs });
    }
    for part in spec.split(',') {
        let (k, v) = part.split_once('=')?;
        if k == "type" {
            kind = v.to_string();
        } else {
            attrs.insert(k.to_string(), v.to_string());
        }
    }
    Some(ExporterSpec { kind, attrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_lines_expand_meta_args() {
        let df = "ARG BASE=cbuild-base\nARG TAG\nARG FULL=${BASE}:${TAG:-latest}\n\
                  FROM $BASE AS one\nARG LATE=x\nFROM ${FULL}\nFROM ${NOPE:-scratch}\n\
                  FROM ${TAG:+tagged}base\nRUN echo $BASE\n";
        let none = BTreeMap::new();
        assert_eq!(
            base_images(&expand_from_args(df, &none)),
            ["cbuild-base", "cbuild-base:latest", "base"]
        );
        let args: BTreeMap<String, String> = [
            ("BASE".to_string(), "other".to_string()),
            ("TAG".to_string(), "1".to_string()),
        ]
        .into();
        let expanded = expand_from_args(df, &args);
        assert_eq!(base_images(&expanded), ["other", "other:1", "taggedbase"]);
        // Lines other than FROM are kept as written.
        assert!(expanded.contains("RUN echo $BASE"));
        // Defaults may nest.
        let vars: BTreeMap<String, String> = [("B".to_string(), "bee".to_string())].into();
        assert_eq!(expand_vars("${A:-${B}}/${A:-x${C:-c}y}", &vars), "bee/xcy");
        // An ARG after the first FROM is not a meta argument.
        assert_eq!(
            base_images(&expand_from_args("FROM a\nARG X=b\nFROM $X\n", &none)),
            ["a"]
        );
    }

    #[test]
    fn image_references_normalise() {
        assert_eq!(normalize_image("app"), "docker.io/library/app:latest");
        assert_eq!(
            normalize_image("docker.io/library/app:latest"),
            "docker.io/library/app:latest"
        );
        assert_eq!(normalize_image("me/app:1"), "docker.io/me/app:1");
        assert_eq!(normalize_image("reg:5000/app"), "reg:5000/app:latest");
        assert_eq!(
            from_lines("# c\nFROM --platform=$X base AS b\nfrom other\nRUN x\n")
                .into_iter()
                .map(|(image, _)| image)
                .collect::<Vec<_>>(),
            ["base", "other"]
        );
    }

    #[test]
    fn cache_entries() {
        let e = cache_entry("reg/app:cache").unwrap();
        assert_eq!(e.kind, "registry");
        assert_eq!(e.attrs["ref"], "reg/app:cache");
        let e = cache_entry("type=local,src=/tmp/c").unwrap();
        assert_eq!(e.kind, "local");
        assert_eq!(e.attrs["src"], "/tmp/c");
    }

    #[test]
    fn shared_keys_differ_per_service() {
        let a = shared_key("p", "a", Path::new("/x"));
        let b = shared_key("p", "b", Path::new("/x"));
        assert_ne!(a, b);
        assert!(!a.contains(':'));
    }
}
