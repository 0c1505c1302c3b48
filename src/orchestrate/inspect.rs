//! What each service would send to BuildKit, without contacting Docker: the `cbuild context`
//! operation.
//!
//! For each service this resolves what `plan` resolves for a build (context directory,
//! Dockerfile or `dockerfile_inline`, target, build arguments), finds the ignore file the way
//! the Dockerfile frontend does (`<Dockerfile>.dockerignore` next to the Dockerfile, else
//! `.dockerignore` in the context root; `frontend/dockerui/config.go`), predicts the
//! `followpaths` ([`crate::context::dockerfile`]) and builds the
//! [`Manifest`](crate::context::manifest::Manifest) through the same hash cache `build` uses.
//! The result is plain data ([`ContextReport`]) for the command to print.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::compose::{Project, Service};
use crate::context::cache::HashCache;
use crate::context::dockerfile::{self, ContextUse, DockerfileError};
use crate::context::dockerignore::{self, PatternMatcher};
use crate::context::ignorefile::{self, IgnoreError};
use crate::context::manifest::{
    CacheCounters, DirSize, Explanation, Manifest, ManifestError, ManifestOptions,
};

use super::plan::PlanError;

/// Options of `cbuild context`.
#[derive(Clone, Debug, Default)]
pub struct InspectOptions {
    /// Services to inspect; empty means every service with a `build:` section.
    pub services: Vec<String>,
    /// `--build-arg KEY[=VALUE]`, overriding the Compose file.
    pub build_args: Vec<(String, Option<String>)>,
    /// The environment (`--build-arg KEY` without a value reads it).
    pub environment: HashMap<String, String>,
    /// cbuild's cache directory; `None` keeps hashes in memory only.
    pub cache_dir: Option<PathBuf>,
    /// A path (relative to each context, or absolute) to explain.
    pub explain: Option<String>,
    /// How many of the largest directories to report.
    pub top_dirs: usize,
}

/// Why a service's context cannot be inspected. Each variant names the file to fix.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The service selection or its `build:` section is wrong.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The Dockerfile cannot be read.
    #[error("cannot read the Dockerfile `{}`", path.display())]
    ReadDockerfile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Dockerfile has an error.
    #[error("invalid Dockerfile `{}`", path.display())]
    Dockerfile {
        /// The file (`dockerfile_inline` of the service when inline).
        path: PathBuf,
        /// The error, with its line.
        #[source]
        source: DockerfileError,
    },
    /// The ignore file cannot be read or is invalid.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    /// Walking or hashing the context failed.
    #[error("service `{service}`: cannot read the build context")]
    Manifest {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: Box<ManifestError>,
    },
    /// `--explain` could not look at the path.
    #[error("cannot look at `{}`", path.display())]
    Explain {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Entries and bytes one ignore-file line keeps out of the context.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExcludedRule {
    /// The ignore file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The pattern.
    pub pattern: String,
    /// Entries it kept out.
    pub entries: u64,
    /// Bytes of regular files it kept out.
    pub bytes: u64,
}

/// Everything the ignore file kept out.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Excluded {
    /// Entries kept out.
    pub entries: u64,
    /// Bytes of regular files kept out.
    pub bytes: u64,
    /// Per deciding line, in line order.
    pub rules: Vec<ExcludedRule>,
}

/// Why `--explain PATH` is or is not sent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExplainReport {
    /// The path, relative to the context.
    pub path: String,
    /// Whether BuildKit would receive it.
    pub sent: bool,
    /// `sent`, `reincluded`, `excluded`, `not-used` or `missing`.
    pub status: &'static str,
    /// The ignore file whose line decided, if one did.
    pub ignore_file: Option<String>,
    /// That line.
    pub line: Option<usize>,
    /// The pattern on it.
    pub pattern: Option<String>,
    /// The first Dockerfile instruction that uses the path, if any.
    pub used_by: Option<UsedBy>,
}

/// A Dockerfile instruction that uses a context path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UsedBy {
    /// 1-based Dockerfile line.
    pub line: usize,
    /// `COPY`, `ADD` or `RUN`.
    pub instruction: String,
}

/// The context of one service.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ContextReport {
    /// The service.
    pub service: String,
    /// The context directory.
    pub context: String,
    /// The Dockerfile, or `dockerfile_inline`.
    pub dockerfile: String,
    /// The target stage, if set.
    pub target: Option<String>,
    /// The ignore file in effect, if any.
    pub ignore_file: Option<String>,
    /// The followpaths; `None` (JSON `null`) when the whole context is used, empty when the
    /// build never asks for the context.
    pub followpaths: Option<Vec<String>>,
    /// Entries sent (files, directories, links).
    pub entries: u64,
    /// Regular files sent.
    pub files: u64,
    /// Bytes of the regular files sent.
    pub bytes: u64,
    /// The context digest (`blake3:<hex>`).
    pub digest: String,
    /// The largest sent directories.
    pub largest_dirs: Vec<DirSize>,
    /// What the ignore file kept out.
    pub excluded: Excluded,
    /// Heavy directories sent although an ignore entry could keep them out (only when there is
    /// no ignore file).
    pub heavy_dirs: Vec<DirSize>,
    /// The hash cache's work.
    pub cache: CacheCounters,
    /// `--explain`, if asked.
    pub explain: Option<ExplainReport>,
}

/// Inspects the contexts `opts` selects (every service with a `build:` section, in name
/// order, when none is named). Synchronous; reads files.
pub fn inspect(
    project: &Project,
    opts: &InspectOptions,
) -> Result<Vec<ContextReport>, InspectError> {
    let selected = super::plan::selected_services(project, &opts.services)?;
    selected
        .into_iter()
        .map(|svc| inspect_service(svc, opts))
        .collect()
}

use super::plan::resolve_dockerfile;

fn inspect_service(svc: &Service, opts: &InspectOptions) -> Result<ContextReport, InspectError> {
    let Some(build) = svc.build.as_ref() else {
        return Err(PlanError::NoBuild(svc.name.clone()).into());
    };
    if build.is_remote_context() {
        return Err(PlanError::Unsupported {
            service: svc.name.clone(),
            what: format!("the remote build context `{}`", build.context),
        }
        .into());
    }
    let context = PathBuf::from(&build.context);
    if !context.is_dir() {
        return Err(PlanError::MissingContext {
            service: svc.name.clone(),
            context: build.context.clone(),
        }
        .into());
    }

    // The Dockerfile and the ignore file the frontend would pick.
    let (dockerfile_name, text, dockerfile_path) = match &build.dockerfile_inline {
        Some(inline) => ("dockerfile_inline".to_string(), inline.clone(), None),
        None => {
            let path = resolve_dockerfile(&context, &build.dockerfile_path());
            if !path.is_file() {
                return Err(PlanError::MissingDockerfile {
                    service: svc.name.clone(),
                    path,
                }
                .into());
            }
            let text =
                std::fs::read_to_string(&path).map_err(|source| InspectError::ReadDockerfile {
                    path: path.clone(),
                    source,
                })?;
            (path.display().to_string(), text, Some(path))
        }
    };
    let ignore = ignorefile::read(&context, dockerfile_path.as_deref())?;
    let ignore_path = ignore.as_ref().map(|i| i.path.clone());

    let mut args: HashMap<String, String> = build
        .args
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
        .collect();
    for (k, v) in &opts.build_args {
        if let Some(v) = v.clone().or_else(|| opts.environment.get(k).cloned()) {
            args.insert(k.clone(), v);
        }
    }
    let uses = dockerfile::analyze(&text, build.target.as_deref(), &args).map_err(|source| {
        InspectError::Dockerfile {
            path: dockerfile_path.clone().unwrap_or_else(|| {
                PathBuf::from(format!("services.{}.build.dockerfile_inline", svc.name))
            }),
            source,
        }
    })?;

    let cache = match &opts.cache_dir {
        Some(dir) => HashCache::open(dir, &context),
        None => HashCache::in_memory(),
    };
    let manifest = Manifest::build(
        &context,
        &ManifestOptions {
            ignore,
            follow_paths: uses.follow_paths.clone(),
        },
        &cache,
    )
    .map_err(|source| InspectError::Manifest {
        service: svc.name.clone(),
        source: Box::new(source),
    })?;
    if let Err(e) = cache.save() {
        tracing::warn!("cannot save the hash cache: {e}");
    }

    let ignore_name = ignore_path.as_ref().map(|p| p.display().to_string());
    let (entries_out, bytes_out) = manifest.excluded_totals();
    let excluded = Excluded {
        entries: entries_out,
        bytes: bytes_out,
        rules: manifest
            .excluded_by_rule()
            .into_iter()
            .map(|r| ExcludedRule {
                file: ignore_name.clone().unwrap_or_default(),
                line: r.line,
                pattern: r.pattern,
                entries: r.entries,
                bytes: r.bytes,
            })
            .collect(),
    };
    let explain = match &opts.explain {
        None => None,
        Some(p) => Some(explain(&manifest, &uses, ignore_name.as_deref(), p)?),
    };
    Ok(ContextReport {
        service: svc.name.clone(),
        context: manifest.root.display().to_string(),
        dockerfile: dockerfile_name,
        target: build.target.clone(),
        ignore_file: ignore_name,
        followpaths: uses.follow_paths.clone(),
        entries: manifest.entries.len() as u64,
        files: manifest.files(),
        bytes: manifest.bytes(),
        digest: manifest.digest_string(),
        largest_dirs: manifest.largest_dirs(opts.top_dirs),
        excluded,
        heavy_dirs: if ignore_path.is_none() {
            manifest.heavy_dirs()
        } else {
            Vec::new()
        },
        cache: manifest.cache,
        explain,
    })
}

/// `--explain`: an absolute path is taken relative to the context root, anything else is
/// relative to the context already.
fn explain(
    manifest: &Manifest,
    uses: &ContextUse,
    ignore: Option<&str>,
    raw: &str,
) -> Result<ExplainReport, InspectError> {
    let rel = match Path::new(raw).strip_prefix(&manifest.root) {
        Ok(r) => r.to_string_lossy().into_owned(),
        Err(_) => raw.to_string(),
    };
    let rel = dockerignore::clean(&rel)
        .trim_start_matches('/')
        .to_string();
    let how = manifest
        .explain(&rel)
        .map_err(|source| InspectError::Explain {
            path: manifest.root.join(&rel),
            source,
        })?;
    let used_by = uses
        .uses
        .iter()
        .find(|u| {
            u.path == "."
                || PatternMatcher::new(&[u.path.as_str()])
                    .and_then(|m| m.matches_or_parent_matches(&rel))
                    .unwrap_or(false)
        })
        .map(|u| UsedBy {
            line: u.line,
            instruction: u.instruction.to_string(),
        });
    let mut r = ExplainReport {
        path: rel,
        sent: false,
        status: "missing",
        ignore_file: None,
        line: None,
        pattern: None,
        used_by,
    };
    match how {
        Explanation::Sent { reincluded } => {
            r.sent = true;
            r.status = "sent";
            if let Some((line, pattern)) = reincluded {
                r.status = "reincluded";
                r.ignore_file = ignore.map(str::to_string);
                r.line = Some(line);
                r.pattern = Some(pattern);
            }
        }
        Explanation::Excluded { line, pattern } => {
            r.status = "excluded";
            r.ignore_file = ignore.map(str::to_string);
            r.line = Some(line);
            r.pattern = Some(pattern);
        }
        Explanation::NotUsed => r.status = "not-used",
        Explanation::Missing => {}
    }
    Ok(r)
}
