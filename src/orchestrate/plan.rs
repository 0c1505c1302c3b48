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
use crate::context::dockerfile::{self, ContextUse, DockerfileError, ErrorKind};
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
    /// `--platform` entries (comma-separated lists allowed): the platforms
    /// of every service built, replacing `platforms:`.
    pub platforms: Vec<String>,
    /// `--provenance`, replacing each service's `provenance` key.
    pub provenance: Option<String>,
    /// `--sbom`, replacing each service's `sbom` key.
    pub sbom: Option<String>,
    /// `--push`: push the images of services with an `image:`.
    pub push: bool,
    /// `--remote-records`: look up the build records of services with an
    /// `image:` in the registry and pull a recorded image instead of
    /// building it (see `super::records`).
    pub remote_records: bool,
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
    /// The platforms it targets (also in the `platform` attribute).
    pub platforms: super::platform::PlatformSet,
    /// The attestations it asks for or turns off (also in the `attest:`
    /// attributes). None by default: buildx adds a provenance with the
    /// build's start and end times where the store keeps attestations, so
    /// every solve, however cached, gives a new image ID there (compose
    /// 2.40 on the containerd store: two cached rebuilds, two IDs); cbuild
    /// keeps an unchanged build's image as it was. `provenance: mode=min`
    /// asks for buildx's default.
    pub attests: Vec<super::platform::Attest>,
    /// Push the image (`--push`; only a service with an `image:` is
    /// pushed, as compose does).
    pub push: bool,
    /// Look up its build record in the registry of its `image:` and, on a
    /// hit, pull that image instead of building (`--remote-records`; only
    /// a service with an `image:`).
    pub remote_records: bool,
}

impl ServiceBuild {
    /// Records the outcome in the hash caches and content clocks: after a
    /// success BuildKit holds what was reported; after a failure the clocks
    /// keep their last state (their stamps stay true for BuildKit's copy,
    /// see [`crate::context::clock`]).
    pub fn finish(&self, success: bool) -> HashCounts {
        let counts = self.hash_counts();
        for t in &self.tracked {
            if let Err(e) = t.hashes.save() {
                tracing::warn!("cannot save the hash cache: {e}");
            }
            if !success {
                continue;
            }
            if let Err(e) = t.clock.commit() {
                // The next build then transfers more than it needs to,
                // never less.
                tracing::warn!("cannot save the content clock: {e}");
            }
        }
        counts
    }
}

impl ServiceBuild {
    /// Every name the build tags (`image` and `tags:`), as the exporters
    /// are asked to name the image.
    pub fn tagged_names(&self) -> Vec<String> {
        self.solve
            .exporters
            .iter()
            .filter_map(|e| e.attrs.get("name"))
            .flat_map(|n| n.split(',').map(str::to_string))
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// How much hashing this build's directories needed so far.
    pub fn hash_counts(&self) -> HashCounts {
        use std::sync::atomic::Ordering::Relaxed;
        let mut counts = HashCounts::default();
        // The counts describe the build context; the Dockerfile's directory
        // is tracked too (for its clock), but it is not context.
        let dockerfile = match self.session.locals.get("dockerfile") {
            Some(LocalDir::Tracked(d)) => Some(&d.clock),
            _ => None,
        };
        for t in &self.tracked {
            if dockerfile.is_some_and(|c| Arc::ptr_eq(c, &t.clock)) {
                continue;
            }
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
    /// The Dockerfile is over a limit (BuildKit's line length, or cbuild's
    /// bounds on variable expansion).
    #[error("service `{service}`: cannot use the Dockerfile `{}`", path.display())]
    Dockerfile {
        /// The service.
        service: String,
        /// The Dockerfile (or `services.NAME.build.dockerfile_inline`).
        path: PathBuf,
        /// What is wrong, with the line.
        #[source]
        source: DockerfileError,
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
    /// A `cache_from`/`cache_to` entry cbuild cannot use.
    #[error("`{key}`: {message}")]
    Cache {
        /// `services.NAME.build.cache_to[I]`.
        key: String,
        /// What is wrong, and what to write instead.
        message: String,
    },
    /// A setting with a value cbuild (or compose) cannot read.
    #[error("`{key}`: {message}")]
    BadValue {
        /// The Compose key, flag or variable.
        key: String,
        /// What is wrong, and what to write.
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
        let dockerfile = read_dockerfile(svc, opts)?;
        let mut b = plan_service(project, svc, opts, &dockerfile)?;
        b.deps = build_deps(project, svc, &dockerfile);
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
        match &dockerfile {
            DockerfileInfo::Read(u) => {
                // The frontend image runs the build, so it is an input like a base; a
                // named context of the same name replaces an image, never the frontend.
                b.bases = u.syntax.iter().cloned().collect();
                b.bases.extend(
                    u.images
                        .iter()
                        .filter(|i| !named.contains(&i.to_ascii_lowercase()))
                        .cloned(),
                );
                // Inputs BuildKit fetches itself and cbuild cannot see change: such
                // builds always run.
                if !u.remote_sources.is_empty() {
                    b.record = None;
                }
            }
            DockerfileInfo::Unreadable(why) => {
                // Its inputs are unknown, so it is never skipped; BuildKit reports the
                // problem if it has one.
                tracing::debug!(service = %svc.name, "cbuild cannot read the Dockerfile: {why}");
                b.record = None;
            }
            DockerfileInfo::Remote => {}
        }
        let remote_named = svc.build.as_ref().is_some_and(|x| {
            x.additional_contexts
                .values()
                .any(|v| v.contains("://") && !v.starts_with("docker-image://"))
        });
        if remote_named {
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
    for dep in build_deps(project, svc, &read_dockerfile(svc, opts)?) {
        visit(project, &dep, opts, order, visiting)?;
    }
    visiting.pop();
    order.push(name.to_string());
    Ok(())
}

/// The services whose images `svc`'s build uses: `additional_contexts`
/// entries `service:NAME`, and images the Dockerfile reads (`FROM`,
/// `COPY --from=`, `RUN --mount=from=`) that are another service's image.
fn build_deps(project: &Project, svc: &Service, dockerfile: &DockerfileInfo) -> Vec<String> {
    let Some(build) = &svc.build else {
        return Vec::new();
    };
    let mut deps: Vec<String> = build
        .additional_contexts
        .values()
        .filter_map(|v| v.strip_prefix("service:"))
        .map(str::to_string)
        .collect();
    if let DockerfileInfo::Read(u) = dockerfile {
        for image in &u.images {
            let image = normalize_image(image);
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

/// What planning knows of a service's Dockerfile.
enum DockerfileInfo {
    /// It is in a remote context: BuildKit reads it, cbuild does not (such
    /// builds are never recorded).
    Remote,
    /// cbuild cannot read it (why): the build is never skipped.
    Unreadable(String),
    /// What the build reads, from [`crate::context::dockerfile`].
    Read(ContextUse),
}

/// Reads the service's Dockerfile (inline or from disk) for its target and
/// build arguments. A Dockerfile over BuildKit's or cbuild's limits is bad
/// input; anything else cbuild cannot read is left to BuildKit to judge.
fn read_dockerfile(svc: &Service, opts: &BuildOptions) -> Result<DockerfileInfo, PlanError> {
    let Some(build) = svc.build.as_ref() else {
        return Ok(DockerfileInfo::Remote);
    };
    let (text, path) = match &build.dockerfile_inline {
        Some(t) => (
            t.clone(),
            PathBuf::from(format!("services.{}.build.dockerfile_inline", svc.name)),
        ),
        None if build.is_remote_context() => return Ok(DockerfileInfo::Remote),
        None => {
            let path = resolve_dockerfile(Path::new(&build.context), &build.dockerfile_path());
            match std::fs::read(&path) {
                // BuildKit reads bytes; a stray non-UTF-8 byte must not hide the rest.
                Ok(bytes) => (String::from_utf8_lossy(&bytes).into_owned(), path),
                Err(e) => return Ok(DockerfileInfo::Unreadable(e.to_string())),
            }
        }
    };
    let args: HashMap<String, String> = build_args(build, opts).into_iter().collect();
    match dockerfile::analyze(&text, build.target.as_deref(), &args) {
        Ok(u) => Ok(DockerfileInfo::Read(u)),
        Err(e) if e.kind == ErrorKind::TooLarge => Err(PlanError::Dockerfile {
            service: svc.name.clone(),
            path,
            source: e,
        }),
        Err(e) => Ok(DockerfileInfo::Unreadable(e.to_string())),
    }
}

/// `name` → `docker.io/library/name:latest`, for comparing references.
pub(crate) fn normalize_image(image: &str) -> String {
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
    dockerfile: &DockerfileInfo,
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
        // Served by content like the context: BuildKit before 0.10 keeps
        // the Dockerfile's directory from the last build and skips a file
        // whose size and mtime it already holds, so a same-size edit with
        // the mtime kept would build the old Dockerfile.
        let key = shared_key(&project.name, &format!("{}\0dockerfile", svc.name), &dir);
        let (hashes, clock) = open_tracking(&dir, &key, opts);
        let t = TrackedDir {
            root: dir,
            hashes: Arc::new(hashes),
            clock: Arc::new(clock.keyed_elsewhere()),
        };
        locals.insert("dockerfile".to_string(), LocalDir::Tracked(t.clone()));
        tracked.push(t);
        attrs.insert("filename".into(), name);
    }

    let entitlements = option_attrs(project, svc, build, opts, &mut attrs)?;
    let platforms = super::platform::resolve(project, svc, opts)?;
    if !platforms.platforms.is_empty() {
        attrs.insert("platform".into(), platforms.platforms.join(","));
    }
    let attests = super::platform::attests(svc, opts)?;
    for a in &attests {
        if let Some(v) = &a.value {
            attrs.insert(format!("attest:{}", a.kind), v.clone());
        }
    }
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
            let follow = match dockerfile {
                DockerfileInfo::Read(u) => u.follow_paths.clone(),
                _ => None,
            };
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
            cache_imports: cache_entries(&svc.name, "cache_from", &build.cache_from, opts)?,
            cache_exports: cache_entries(&svc.name, "cache_to", &build.cache_to, opts)?,
        },
        session: SessionSpec {
            shared_key,
            locals,
            secrets,
            ssh,
            over_control: opts.session_over_control,
            uploads,
            file_send: None,
            content: Default::default(),
        },
        tracked,
        deps: Vec::new(),
        same_as: None,
        bases: Vec::new(),
        force: false,
        platforms,
        attests,
        push: opts.push && svc.image.is_some(),
        remote_records: opts.remote_records && svc.image.is_some(),
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
    let dockerfile = match (dockerfile_local, attrs.get("filename")) {
        (Some(LocalDir::Tracked(t)), Some(name)) => Some(t.root.join(name)),
        _ => None,
    };
    let ignore = crate::context::ignorefile::read(context, dockerfile.as_deref()).map_err(|e| {
        let mut message = String::new();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&c.to_string());
            cause = c.source();
        }
        PlanError::IgnoreFile {
            path: e.path().to_path_buf(),
            message,
        }
    })?;
    Ok(ignore.map(|i| i.patterns()).unwrap_or_default())
}

/// A directory served by content, with its hash cache and content clock.
fn track(dir: &Path, key: &str, opts: &BuildOptions) -> TrackedDir {
    let (hashes, clock) = open_tracking(dir, key, opts);
    TrackedDir {
        root: dir.to_path_buf(),
        hashes: Arc::new(hashes),
        clock: Arc::new(clock),
    }
}

/// The hash cache of `dir` and the content clock `key`.
fn open_tracking(dir: &Path, key: &str, opts: &BuildOptions) -> (HashCache, ContentClock) {
    match &opts.cache_dir {
        Some(c) => (
            HashCache::open(c, dir),
            ContentClock::open(c, key, opts.no_cache),
        ),
        None => (HashCache::in_memory(), ContentClock::in_memory(key)),
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
/// args, labels, cache and pull policy, hosts, shm size, ulimits, network),
/// and the entitlements they need.
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

/// The cache backends BuildKit knows (moby/buildkit `cmd/buildkitd`):
/// anything else is a typo, refused before any build starts.
const CACHE_TYPES: &[&str] = &["registry", "local", "inline", "gha", "s3", "azblob"];

/// A service's `cache_from` or `cache_to` list as BuildKit cache entries,
/// read as buildx reads them (`util/buildflags/cache.go`), which is what
/// compose does with these keys.
fn cache_entries(
    service: &str,
    key: &str,
    specs: &[String],
    opts: &BuildOptions,
) -> Result<Vec<ExporterSpec>, PlanError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let bad = |message: String| PlanError::Cache {
                key: format!("services.{service}.build.{key}[{i}]"),
                message,
            };
            let mut e = cache_entry(spec).map_err(bad)?;
            match (e.kind.as_str(), key) {
                ("registry", _) if e.attrs.get("ref").is_none_or(|r| r.is_empty()) => {
                    return Err(bad("`type=registry` needs `ref=IMAGE`".into()));
                }
                // The client serves the directory through the session
                // (`orchestrate::localcache`); what it needs is checked now.
                ("local", _) => local_cache_entry(&mut e, key).map_err(bad)?,
                ("inline", "cache_from") => {
                    return Err(bad(
                        "`type=inline` only exports; to import an inline cache, name the image (`cache_from: [IMAGE]`)".into(),
                    ));
                }
                // As buildx: credentials from the environment unless given
                // (a GitHub Actions runner's token and cache URL; AWS keys).
                ("gha", _) => fill_from_env(
                    &mut e,
                    &[("token", "ACTIONS_RUNTIME_TOKEN"), ("url", "ACTIONS_CACHE_URL")],
                    opts,
                ),
                ("s3", _) => fill_from_env(
                    &mut e,
                    &[
                        ("access_key_id", "AWS_ACCESS_KEY_ID"),
                        ("secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                        ("session_token", "AWS_SESSION_TOKEN"),
                    ],
                    opts,
                ),
                _ => {}
            }
            Ok(e)
        })
        .collect()
}

/// Checks a `type=local` entry and makes its directory absolute (relative
/// to the working directory, as buildx and compose read it): the path is
/// also the store id the daemon asks the session for.
fn local_cache_entry(e: &mut ExporterSpec, key: &str) -> Result<(), String> {
    let attr = if key == "cache_to" { "dest" } else { "src" };
    let dir = e.attrs.get(attr).map(String::as_str).unwrap_or_default();
    if dir.is_empty() {
        return Err(format!("`type=local` needs `{attr}=DIR`"));
    }
    let abs = std::path::absolute(dir)
        .map_err(|err| format!("cannot resolve the cache directory `{dir}`: {err}"))?;
    let abs = abs
        .to_str()
        .ok_or_else(|| format!("the cache directory `{dir}` is not valid UTF-8"))?
        .to_string();
    e.attrs.insert(attr.into(), abs);
    if e.attrs.get("tag").is_some_and(String::is_empty) {
        return Err("`tag=` is empty; name a tag or leave it out (`latest`)".into());
    }
    if let Some(d) = e.attrs.get("digest") {
        if key == "cache_to" {
            return Err("`digest=` only applies to `cache_from`".into());
        }
        crate::buildkit::session::content::layout::Digest::parse(d)
            .map_err(|err| format!("{err}; give `digest=sha256:<64 hex digits>`"))?;
    }
    if let Some(v) = e.attrs.get("reset") {
        if !matches!(v.as_str(), "false" | "0" | "False" | "FALSE" | "f" | "F") {
            return Err(
                "`reset=` is not supported: cbuild never deletes blobs from a cache directory"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Sets each attribute the entry lacks from its environment variable, if set.
fn fill_from_env(e: &mut ExporterSpec, pairs: &[(&str, &str)], opts: &BuildOptions) {
    for (attr, var) in pairs {
        if let Some(v) = opts.environment.get(*var).filter(|v| !v.is_empty()) {
            e.attrs.entry(attr.to_string()).or_insert_with(|| v.clone());
        }
    }
}

/// One `cache_from`/`cache_to` entry: CSV `key=value` fields
/// (`type=registry,ref=reg/app:cache,mode=max`), or a bare image reference,
/// which means `type=registry,ref=…`.
fn cache_entry(spec: &str) -> Result<ExporterSpec, String> {
    let fields = csv_fields(spec)?;
    if let [only] = fields.as_slice() {
        if !only.contains('=') {
            if only.trim().is_empty() {
                return Err("empty cache entry; give `type=…` or an image reference".into());
            }
            return Ok(ExporterSpec {
                kind: "registry".into(),
                attrs: [("ref".to_string(), only.clone())].into(),
            });
        }
    }
    let mut kind = None;
    let mut attrs = BTreeMap::new();
    for field in fields {
        let Some((k, v)) = field.split_once('=') else {
            return Err(format!("`{field}` is not `key=value` (in `{spec}`)"));
        };
        let k = k.trim().to_ascii_lowercase();
        if k == "type" {
            kind = Some(v.to_string());
        } else {
            attrs.insert(k, v.to_string());
        }
    }
    let kind = kind.ok_or_else(|| format!("`type=` is missing (in `{spec}`)"))?;
    if !CACHE_TYPES.contains(&kind.as_str()) {
        return Err(format!(
            "unknown cache type `{kind}`; BuildKit knows {}",
            CACHE_TYPES
                .iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(ExporterSpec { kind, attrs })
}

/// The fields of one CSV record as Go's `encoding/csv` reads them, which is
/// what buildx uses: `"…"` quotes a field (with `""` for a quote), so a value
/// may hold a comma. Hand-written because it is one line with Go's rules, not
/// a file.
pub(crate) fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(format!("unterminated quote in `{line}`")),
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(format!("text after a closing quote in `{line}`"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err(format!("a quote inside an unquoted field in `{line}`"));
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_normalise() {
        assert_eq!(normalize_image("app"), "docker.io/library/app:latest");
        assert_eq!(
            normalize_image("docker.io/library/app:latest"),
            "docker.io/library/app:latest"
        );
        assert_eq!(normalize_image("me/app:1"), "docker.io/me/app:1");
        assert_eq!(normalize_image("reg:5000/app"), "reg:5000/app:latest");
    }

    /// Plans the project made of `files` (a `compose.yaml` among them),
    /// written to a temporary directory, with `--build-arg`s `args`.
    fn plan_files(
        files: &[(&str, &str)],
        args: &[(&str, &str)],
    ) -> Result<Vec<ServiceBuild>, String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let project = crate::compose::load(&crate::compose::LoadOptions {
            cwd: dir.path().to_path_buf(),
            project_name: Some("p".into()),
            ..Default::default()
        })
        .unwrap();
        let opts = BuildOptions {
            cache_dir: Some(dir.path().join("cache")),
            build_args: args
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
            ..Default::default()
        };
        plan(&project, &opts).map_err(|e| format!("{:#}", anyhow::Error::new(e)))
    }

    /// Plans the one service of a project whose Dockerfile is `dockerfile`.
    fn plan_dockerfile(dockerfile: &str, args: &[(&str, &str)]) -> Result<ServiceBuild, String> {
        let compose = "services:\n  app:\n    build: .\n";
        plan_files(
            &[("compose.yaml", compose), ("Dockerfile", dockerfile)],
            args,
        )
        .map(|mut b| b.remove(0))
    }

    /// A Dockerfile cbuild cannot read has inputs cbuild does not know: it
    /// is never skipped (BuildKit judges it).
    #[test]
    fn an_unreadable_dockerfile_is_never_recorded() {
        let b = plan_dockerfile("FROM cbuild-base\nCOPY ${X^y} /x\n", &[]).unwrap();
        assert!(b.record.is_none());
    }

    /// `COPY --from=` another service's image builds that service first.
    #[test]
    fn an_image_copied_from_is_a_dependency() {
        let builds = plan_files(
            &[
                (
                    "compose.yaml",
                    "services:\n  app:\n    build: app\n  tool:\n    build: tool\n",
                ),
                (
                    "app/Dockerfile",
                    "FROM cbuild-base\nCOPY --from=p-tool / /t\n",
                ),
                ("tool/Dockerfile", "FROM cbuild-base\n"),
            ],
            &[],
        )
        .unwrap();
        let order: Vec<&str> = builds.iter().map(|b| b.service.as_str()).collect();
        assert_eq!(order, ["tool", "app"]);
        assert_eq!(builds[1].deps, ["tool"]);
        assert_eq!(builds[1].bases, ["cbuild-base", "p-tool"]);
    }

    /// A named Dockerfile and its build arguments.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    /// A build with an `ADD` BuildKit fetches itself is never recorded, so never skipped.
    #[test]
    fn remote_add_in_any_form_is_never_recorded() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("plain", "FROM cbuild-base\nADD https://h/f /x\n", &[]),
            ("json", "FROM cbuild-base\nADD [\"https://h/f\", \"/x\"]\n", &[]),
            ("continuation", "FROM cbuild-base\nADD \\\n  https://h/f \\\n  /x\n", &[]),
            ("arg default", "FROM cbuild-base\nARG URL=https://h/f\nADD ${URL} /x\n", &[]),
            ("build arg", "FROM cbuild-base\nARG URL=f\nADD $URL /x\n", &[("URL", "http://h/f")]),
            ("git scp", "FROM cbuild-base\nADD git@github.com:o/r.git /x\n", &[]),
            ("git ssh", "FROM cbuild-base\nADD ssh://git@h/o/r.git /x\n", &[]),
            ("git other user", "FROM cbuild-base\nADD me@h.example:o/r /x\n", &[]),
        ];
        for (name, df, args) in cases {
            let b = plan_dockerfile(df, args).unwrap();
            assert!(
                b.record.is_none(),
                "case {name}: the build would be recorded"
            );
        }
        let local = plan_dockerfile("FROM cbuild-base\nADD f /x\n", &[]).unwrap();
        assert!(local.record.is_some());
        let local = plan_dockerfile("FROM cbuild-base\nARG URL=f\nADD $URL /x\n", &[]).unwrap();
        assert!(local.record.is_some());
    }

    /// Dockerfiles the line-based reader mis-read: each names exactly its real base.
    #[test]
    fn bases_of_continued_escaped_and_heredoc_dockerfiles() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("continued", "FROM \\\n  cbuild-base AS b\nRUN true\n"),
            ("escape", "# escape=`\nFROM `\n  cbuild-base\nRUN echo `\n  hi\n"),
            ("heredoc", "FROM cbuild-base\nRUN <<EOF\nFROM not-an-image\nEOF\n"),
            ("heredoc copy", "FROM cbuild-base\nCOPY <<EOF /x\nFROM not-an-image\nCOPY --from=nope / /\nEOF\n"),
        ];
        for (name, df) in cases {
            let b = plan_dockerfile(df, &[]).unwrap();
            assert_eq!(b.bases, ["cbuild-base"], "case {name}");
            assert!(b.record.is_some(), "case {name}");
        }
    }

    /// The `# syntax=` frontend image (or `BUILDKIT_SYNTAX`) is an input like a base.
    #[test]
    fn the_syntax_frontend_is_an_input() {
        let df = "# syntax=example/frontend:1\nFROM cbuild-base\n";
        let b = plan_dockerfile(df, &[]).unwrap();
        assert_eq!(b.bases, ["example/frontend:1", "cbuild-base"]);
        let b = plan_dockerfile(df, &[("BUILDKIT_SYNTAX", "other/fe:2")]).unwrap();
        assert_eq!(b.bases, ["other/fe:2", "cbuild-base"]);
    }

    /// Hostile Dockerfiles stop the plan with an error naming the file and the line.
    #[test]
    fn oversized_dockerfiles_are_bad_input() {
        let nested = |n: usize| format!("{}x{}", "${A:-".repeat(n), "}".repeat(n));
        let cases = [
            format!("ARG A\nFROM {}\n", nested(2_000)),
            format!("ARG A\nARG B={}\nFROM cbuild-base\n", nested(2_000)),
            format!("FROM cbuild-base\nRUN echo {}\n", "x".repeat(2 << 20)),
        ];
        for df in cases {
            let e = plan_dockerfile(&df, &[]).expect_err("an error");
            assert!(e.contains("Dockerfile"), "{e}");
            assert!(e.contains("line 2"), "{e}");
        }
    }

    #[test]
    fn cache_entries_read_like_buildx() {
        let e = cache_entry("reg/app:cache").unwrap();
        assert_eq!(e.kind, "registry");
        assert_eq!(e.attrs["ref"], "reg/app:cache");
        let e = cache_entry("type=registry,ref=reg/app:c,mode=max").unwrap();
        assert_eq!(e.kind, "registry");
        assert_eq!(e.attrs["ref"], "reg/app:c");
        assert_eq!(e.attrs["mode"], "max");
        let e = cache_entry("type=local,src=/tmp/c").unwrap();
        assert_eq!(e.kind, "local");
        assert_eq!(e.attrs["src"], "/tmp/c");
        // Keys are case-insensitive; a quoted value may hold a comma.
        let e = cache_entry(r#"Type=s3,"name=a,b",region=x"#).unwrap();
        assert_eq!(e.kind, "s3");
        assert_eq!(e.attrs["name"], "a,b");
        assert_eq!(e.attrs["region"], "x");
        let e = cache_entry("type=inline").unwrap();
        assert_eq!(e.kind, "inline");
        assert!(e.attrs.is_empty());
    }

    #[test]
    fn bad_cache_entries_are_refused() {
        for (spec, says) in [
            ("type=regsitry,ref=x", "unknown cache type `regsitry`"),
            ("ref=x,mode=max", "`type=` is missing"),
            ("type=registry,x", "`x` is not `key=value`"),
            (r#"type=registry,"ref=x"#, "unterminated quote"),
            ("", "empty cache entry"),
        ] {
            let e = cache_entry(spec).expect_err(spec);
            assert!(e.contains(says), "{spec}: {e}");
        }
        let opts = BuildOptions::default();
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = cache_entries(
            "web",
            "cache_to",
            &list(&["type=inline", "type=foo"]),
            &opts,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("`services.web.build.cache_to[1]`: unknown cache type `foo`"),
            "{e}"
        );
        let e = cache_entries(
            "web",
            "cache_from",
            &list(&["type=registry,mode=max"]),
            &opts,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cache_from[0]") && e.contains("needs `ref=IMAGE`"),
            "{e}"
        );
        let env = BuildOptions {
            environment: [
                ("ACTIONS_RUNTIME_TOKEN".to_string(), "tok".to_string()),
                ("AWS_ACCESS_KEY_ID".to_string(), "AK".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        let e = cache_entries(
            "web",
            "cache_to",
            &list(&["type=gha", "type=s3,access_key_id=mine"]),
            &env,
        )
        .unwrap();
        assert_eq!(e[0].attrs["token"], "tok");
        assert!(!e[0].attrs.contains_key("url"));
        assert_eq!(e[1].attrs["access_key_id"], "mine", "a given value wins");
    }

    #[test]
    fn local_cache_entries_name_an_absolute_directory() {
        let opts = BuildOptions::default();
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = cache_entries(
            "web",
            "cache_from",
            &list(&["type=local,src=/c", "type=local,src=rel/c,tag=v1"]),
            &opts,
        )
        .unwrap();
        assert_eq!(e[0].attrs["src"], "/c");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(Path::new(&e[1].attrs["src"]), cwd.join("rel/c"));
        assert_eq!(e[1].attrs["tag"], "v1");
        let e = cache_entries(
            "web",
            "cache_to",
            &list(&["type=local,dest=/d,mode=max"]),
            &opts,
        )
        .unwrap();
        assert_eq!(e[0].attrs["dest"], "/d");
        assert_eq!(e[0].attrs["mode"], "max");
        for (key, spec, says) in [
            ("cache_from", "type=local", "needs `src=DIR`"),
            ("cache_from", "type=local,dest=/x", "needs `src=DIR`"),
            ("cache_to", "type=local,src=/x", "needs `dest=DIR`"),
            ("cache_to", "type=local,dest=/x,tag=", "`tag=` is empty"),
            (
                "cache_from",
                "type=local,src=/x,digest=sha256:../../x",
                "not a sha256 digest",
            ),
            (
                "cache_to",
                "type=local,dest=/x,digest=sha256:00",
                "only applies to `cache_from`",
            ),
            ("cache_to", "type=local,dest=/x,reset=true", "never deletes"),
        ] {
            let e = cache_entries("web", key, &list(&[spec]), &opts)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("`services.web.build.{key}[0]`: ")) && e.contains(says),
                "{spec}: {e}"
            );
        }
    }

    #[test]
    fn shared_keys_differ_per_service() {
        let a = shared_key("p", "a", Path::new("/x"));
        let b = shared_key("p", "b", Path::new("/x"));
        assert_ne!(a, b);
        assert!(!a.contains(':'));
    }
}
