//! Where a built image goes: the one place that picks the exporter from
//! what the builder is, and that carries a tarball export into the Docker
//! engine.
//!
//! The choice follows buildx's drivers. A Docker engine's own BuildKit
//! (buildx's `docker` driver) gets the `moby` exporter, which writes into
//! the engine's image store: on the graph driver store that is moby's image
//! store exporter, on the containerd image store moby registers its
//! containerd-backed image exporter under the same name (moby
//! `builder/builder-next/exporter`), so the image lands in containerd with
//! the engine's own names. Any other BuildKit (buildx's `docker-container`
//! and `remote` drivers, a hosted buildkitd) has no engine behind it: it gets
//! the `docker` exporter, whose tarball comes back through the session's
//! FileSend service and is loaded into the engine of `DOCKER_HOST`, as
//! `buildx --load` does: as an OCI layout when that engine uses the
//! containerd image store, which loads image indexes (several platforms,
//! attestations), else as a `docker save` tarball, which holds one image
//! (buildx `build/opt.go`, its "OCI importer" feature).
//!
//! It is also where a build that asks for what the builder cannot store
//! (several platforms, attestations, a platform no worker has) is refused,
//! before anything runs.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::buildkit::session::filesend::{Chunk, FileSendTarget};
use crate::buildkit::{BuildResult, BuildkitError, Client, StatusUpdate, WorkerInfo};
use crate::engine::{Engine, EngineError, EngineVersion};

use super::plan::ServiceBuild;

/// How images leave the builder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Exporter {
    /// Into the image store of the Docker engine the builder is part of.
    #[default]
    Moby,
    /// As a `docker save` tarball through the session, loaded into the
    /// Docker engine of `DOCKER_HOST`.
    DockerLoad,
    /// As an OCI layout tarball through the session, loaded into the
    /// Docker engine of `DOCKER_HOST`, whose containerd image store keeps
    /// image indexes.
    OciLoad,
    /// Straight to the registry (`image` with `push=true`), nowhere else:
    /// what a builder without an engine does with `--push`.
    ImagePush,
}

impl Exporter {
    /// BuildKit's name for it.
    pub fn kind(self) -> &'static str {
        match self {
            Exporter::Moby => "moby",
            Exporter::DockerLoad => "docker",
            Exporter::OciLoad => "oci",
            Exporter::ImagePush => "image",
        }
    }

    /// Whether images leave as a tarball to load.
    pub fn loads(self) -> bool {
        self != Exporter::Moby
    }
}

/// The exporter as an input of the image: each of [`Exporter`]'s kinds
/// makes the same image, wherever it puts it.
pub fn store_kind(kind: &str) -> &str {
    if kind == Exporter::DockerLoad.kind()
        || kind == Exporter::OciLoad.kind()
        || kind == Exporter::ImagePush.kind()
    {
        Exporter::Moby.kind()
    } else {
        kind
    }
}

/// The exporter chosen for a builder, and where the images end up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The exporter.
    pub exporter: Exporter,
    /// The image store the images go to, in words.
    pub store: String,
    /// Whether that store keeps image indexes: several platforms in one
    /// image, attestations. `None`: cbuild cannot tell (the engine did not
    /// say), BuildKit judges.
    pub keeps_indexes: Option<bool>,
    /// Whether the exporter pushes (`push=true`) with `--push`; else the
    /// Docker engine pushes after the build.
    pub exporter_pushes: bool,
}

/// Picks the exporter. `engine` is what the Docker engine said of itself
/// when the builder is that engine's BuildKit (`None` when it is not, or
/// did not say); `workers` are the builder's workers; `load_target` what
/// the engine of `DOCKER_HOST` said when the builder is not an engine.
pub fn decide(
    builder_is_engine: bool,
    engine: Option<&EngineVersion>,
    workers: &[WorkerInfo],
    load_target: Option<&EngineVersion>,
) -> Choice {
    if builder_is_engine {
        let store = match engine {
            Some(v) if v.containerd_store => format!(
                "the engine's containerd image store (snapshotter {})",
                v.storage_driver
            ),
            Some(v) => format!(
                "the engine's image store (graph driver {})",
                v.storage_driver
            ),
            None => "the engine's image store".to_string(),
        };
        // moby's containerd-backed exporter pushes itself (buildx's docker
        // driver calls that "direct push"); the graph-driver one cannot,
        // so the engine pushes what it stored, as buildx's `pushWithMoby`.
        return Choice {
            exporter: Exporter::Moby,
            store,
            keeps_indexes: engine.map(|v| v.containerd_store),
            exporter_pushes: engine.is_some_and(|v| v.containerd_store),
        };
    }
    // The BuildKit of a graph-driver Docker engine reached directly (its
    // `/grpc` endpoint): its moby worker carries no executor label, unlike
    // every buildkitd worker and the containerd-store engine's, and it
    // registers no exporter but `moby` (measured on Docker 26.1 and 28.5:
    // `exporter "docker" could not be found`).
    if !workers.is_empty() && workers.iter().all(is_graph_driver_worker) {
        return Choice {
            exporter: Exporter::Moby,
            store: "the image store of the Docker engine this BuildKit belongs to (a graph-driver engine: it has no other exporter)".into(),
            keeps_indexes: Some(false),
            exporter_pushes: false,
        };
    }
    let snapshotter = workers
        .iter()
        .find_map(|w| w.labels.get("org.mobyproject.buildkit.worker.snapshotter"));
    let oci = load_target.is_some_and(|v| v.containerd_store);
    let (exporter, format) = if oci {
        (Exporter::OciLoad, "an OCI tarball loaded into the containerd image store of the Docker engine of DOCKER_HOST")
    } else {
        (
            Exporter::DockerLoad,
            "a tarball loaded into the Docker engine of DOCKER_HOST",
        )
    };
    Choice {
        exporter,
        store: match snapshotter {
            Some(s) => format!("{format} (builder snapshotter {s})"),
            None => format.to_string(),
        },
        keeps_indexes: Some(oci),
        exporter_pushes: true,
    }
}

fn is_graph_driver_worker(w: &WorkerInfo) -> bool {
    let moby = w.id == "moby"
        || w.labels
            .keys()
            .any(|k| k.starts_with("org.mobyproject.buildkit.worker.moby."));
    moby && !w
        .labels
        .contains_key("org.mobyproject.buildkit.worker.executor")
}

/// The builder's exporter, with the engine that holds the images (for
/// freshness checks, and for loading tarballs).
pub struct Target {
    /// What was chosen.
    pub choice: Choice,
    /// The engine, where one answered.
    pub engine: Option<Engine>,
    /// What the engine said of itself.
    pub engine_version: Option<EngineVersion>,
    /// Why the engine could not be used, when it could not (a Docker
    /// engine's builder still builds).
    pub engine_problem: Option<EngineError>,
}

/// No Docker engine to load images into.
#[derive(Debug, thiserror::Error)]
#[error(
    "the builder at `{builder}` is not a Docker engine, so cbuild loads each image it builds into the Docker engine of DOCKER_HOST (`{docker_host}`), which cannot be reached"
)]
pub struct NoEngine {
    /// The builder's address.
    pub builder: String,
    /// Where the engine was looked for.
    pub docker_host: String,
    /// Why it could not be used.
    #[source]
    pub source: EngineError,
}

impl NoEngine {
    /// What to do.
    pub fn hint(&self) -> String {
        "set DOCKER_HOST to a running Docker engine (the images are loaded there); or send them to a registry only with `--push` (every service built then needs an `image:`)".into()
    }
}

/// A builder that cannot push the images it builds.
#[derive(Debug, thiserror::Error)]
#[error(
    "the builder at `{builder}` cannot push: it is the BuildKit of a Docker engine with the graph-driver image store, whose only exporter (`moby`) stores images in that engine and cannot push them, and cbuild cannot tell which engine that is"
)]
pub struct CannotPush {
    /// The builder's address.
    pub builder: String,
}

impl CannotPush {
    /// What to do.
    pub fn hint(&self) -> String {
        "build with that Docker engine itself as the builder (`--builder default` with DOCKER_HOST pointing at it): cbuild then pushes through the engine; or use a standalone buildkitd or an engine with the containerd image store".into()
    }
}

/// Whether the builder can push what it builds: a Docker engine pushes
/// through its API; a graph-driver engine's BuildKit reached directly
/// stores images in an engine cbuild does not know.
pub fn can_push(builder_is_engine: bool, choice: &Choice, builder: &str) -> Result<(), CannotPush> {
    if builder_is_engine || choice.exporter_pushes {
        Ok(())
    } else {
        Err(CannotPush {
            builder: builder.to_string(),
        })
    }
}

/// Connects to the engine the images go to and picks the exporter. A
/// Docker engine's builder works without the engine API (nothing can then
/// be skipped); any other builder needs the engine of `docker_host`.
pub async fn connect_target(
    client: &Client,
    docker_host: &str,
    tls: Option<&crate::tls::TlsFiles>,
) -> Result<Target, NoEngine> {
    let is_engine = client.address().is_docker();
    let connected = match Engine::connect(docker_host, tls).await {
        Ok(e) => match e.version().await {
            Ok(v) => Ok((e, v)),
            Err(err) => Err(err),
        },
        Err(err) => Err(err),
    };
    let (engine, version, problem) = match connected {
        Ok((e, v)) => (Some(e), Some(v), None),
        Err(err) => (None, None, Some(err)),
    };
    let workers = client.workers();
    let choice = decide(
        is_engine,
        version.as_ref().filter(|_| is_engine),
        &workers,
        version.as_ref().filter(|_| !is_engine),
    );
    let problem = match problem {
        Some(source) if choice.exporter.loads() => {
            return Err(NoEngine {
                builder: client.address().to_string(),
                docker_host: docker_host.to_string(),
                source,
            })
        }
        p => p,
    };
    Ok(Target {
        choice,
        engine,
        engine_version: version,
        engine_problem: problem,
    })
}

/// Points every planned build at `exporter` (the plan asks for `moby`
/// before the builder is known).
pub fn retarget(builds: &mut [ServiceBuild], exporter: Exporter) {
    for b in builds {
        for e in &mut b.solve.exporters {
            if e.kind == Exporter::Moby.kind() {
                e.kind = exporter.kind().to_string();
            }
        }
    }
}

/// A build the builder cannot do, found before anything runs.
#[derive(Debug, thiserror::Error)]
#[error("service `{service}`: {message}")]
pub struct Unable {
    /// The service.
    pub service: String,
    /// What it asks for that the builder cannot do.
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// Refuses, before any solve, a build whose platforms the builder's
/// workers do not build, or whose image index (several platforms,
/// attestations) the image store cannot keep. compose 2.40 (through
/// buildx) refuses the latter with "Multi-platform build is not supported
/// for the docker driver" or "Attestation is not supported for the docker
/// driver", and "docker exporter does not currently support exporting
/// manifest lists" for a builder whose images are loaded into a
/// graph-driver engine; it does not check the workers' platforms at all,
/// and then labels an image with a platform its content is not built for.
pub fn check(
    builds: &[ServiceBuild],
    choice: &Choice,
    builder: &str,
    workers: &[WorkerInfo],
) -> Result<(), Unable> {
    let available: Vec<&str> = workers
        .iter()
        .flat_map(|w| w.platforms.iter().map(String::as_str))
        .collect();
    for b in builds {
        let unable = |message: String, hint: String| Unable {
            service: b.service.clone(),
            message,
            hint,
        };
        let set = &b.platforms;
        if !available.is_empty() {
            let missing: Vec<&str> = set
                .platforms
                .iter()
                .filter(|p| !available.iter().any(|a| super::platform::builds_for(a, p)))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(unable(
                    format!(
                        "the builder at `{builder}` cannot build for {} (`{}`): its workers build for {}",
                        missing.join(", "),
                        set.key,
                        available.join(", ")
                    ),
                    "leave those platforms out, or use a builder that has them (`--builder`; a buildkitd with QEMU emulators installed lists more platforms)".into(),
                ));
            }
        }
        let asked: Vec<String> = b
            .attests
            .iter()
            .filter(|a| a.value.is_some())
            .map(|a| format!("{} (`{}`)", a.kind, a.key))
            .collect();
        let index = if set.is_multi() {
            Some(format!(
                "{} platforms ({} in `{}`)",
                set.platforms.len(),
                set.platforms.join(", "),
                set.key
            ))
        } else if !asked.is_empty() {
            Some(format!("attestations: {}", asked.join(", ")))
        } else {
            None
        };
        let Some(what) = index else { continue };
        // A registry keeps indexes: a build that only pushes needs no store.
        if choice.keeps_indexes != Some(false) || !stores_locally(b) {
            continue;
        }
        let (message, hint) = match choice.exporter {
            Exporter::DockerLoad => (
                format!(
                    "asks for {what}, which make an image index; the builder at `{builder}` is not a Docker engine, so the image is loaded into the Docker engine of DOCKER_HOST, whose image store (a graph driver) keeps one platform per image and no attestations"
                ),
                "turn on the containerd image store in that engine (`\"features\": {\"containerd-snapshotter\": true}` in daemon.json), or build one platform (`--platform linux/amd64`) without attestations".to_string(),
            ),
            _ => (
                format!(
                    "asks for {what}, which make an image index; the builder at `{builder}` stores images in a Docker engine with a graph driver, which keeps one platform per image and no attestations"
                ),
                "turn on the containerd image store (`\"features\": {\"containerd-snapshotter\": true}` in daemon.json), use a standalone buildkitd (`--builder`), or build one platform (`--platform linux/amd64`) without attestations".to_string(),
            ),
        };
        return Err(unable(message, hint));
    }
    Ok(())
}

/// Asks the exporters of the builds that push (`--push`, a service with
/// `image:`) to push, where the builder's exporter can: the engine's
/// containerd-backed `moby` gets `push=true`; a builder without an engine
/// gets the `image` exporter with `push=true` instead of the tarball, so
/// the images go to the registry only (as buildx's `--push` without
/// `--load`). Elsewhere the exporter stays as it is and the engine pushes
/// after the build ([`push_by_engine`]).
pub fn retarget_push(builds: &mut [ServiceBuild], choice: &Choice) {
    if !choice.exporter_pushes {
        return;
    }
    for b in builds.iter_mut().filter(|b| b.push) {
        for e in &mut b.solve.exporters {
            // A registry keeps indexes: a multi-platform push needs no
            // containerd store in DOCKER_HOST.
            if e.kind == Exporter::DockerLoad.kind() || e.kind == Exporter::OciLoad.kind() {
                e.kind = Exporter::ImagePush.kind().to_string();
            }
            if e.kind == Exporter::Moby.kind() || e.kind == Exporter::ImagePush.kind() {
                e.attrs.insert("push".into(), "true".into());
            }
        }
    }
}

/// Whether `b` pushes through the Docker engine after it is built (its
/// exporter does not push).
pub fn push_by_engine(b: &ServiceBuild) -> bool {
    b.push
        && !b
            .solve
            .exporters
            .iter()
            .any(|e| e.attrs.get("push").map(String::as_str) == Some("true"))
}

/// Whether `b` leaves its image in a Docker engine (every exporter but the
/// registry-only `image`).
pub fn stores_locally(b: &ServiceBuild) -> bool {
    b.solve
        .exporters
        .iter()
        .any(|e| e.kind != Exporter::ImagePush.kind())
}

/// The words for a builder's BuildKit version. A Docker engine's BuildKit
/// built by a distribution, like a buildkitd built from source, reports
/// `v0.0.0+unknown`: that is no release, but says nothing about its age.
pub fn version_text(reported: Option<&str>, engine_version: Option<&str>) -> String {
    let embedded = engine_version
        .and_then(crate::engine::embedded_buildkit)
        .map(|v| format!("{v} (embedded in this Docker release)"));
    match reported {
        Some(v) if !v.starts_with("v0.0.0") => v.to_string(),
        Some(v) => embedded.unwrap_or_else(|| format!("{v} (built from source, no release tag)")),
        None => embedded
            .unwrap_or_else(|| "unknown (older than v0.11, which added the Info call)".into()),
    }
}

/// Runs one build, loading the image into `engine` when the exporter is a
/// tarball. The image is loaded only whole and only after the solve
/// succeeded; the outcome then names the image as the engine does.
pub(crate) async fn build(
    client: &Client,
    engine: Option<&Engine>,
    b: &ServiceBuild,
    progress: mpsc::UnboundedSender<StatusUpdate>,
) -> Result<BuildResult, BuildkitError> {
    let tarball = b
        .solve
        .exporters
        .iter()
        .any(|e| e.kind == Exporter::DockerLoad.kind() || e.kind == Exporter::OciLoad.kind());
    if !tarball {
        return client.build(&b.solve, &b.session, progress).await;
    }
    let Some(engine) = engine else {
        return Err(BuildkitError::Solve {
            message: "no Docker engine to load the image into (set DOCKER_HOST)".into(),
        });
    };
    let (target, rx) = FileSendTarget::channel();
    let mut session = b.session.clone();
    session.file_send = Some(target.clone());
    let loader = engine.clone();
    // Dropped with this future: a cancelled or failed build aborts the
    // load request, so the engine keeps nothing of a cut-off tarball.
    let mut load = AbortOnDrop(tokio::spawn(async move {
        let mut body = Body {
            rx,
            first: None,
            done: false,
        };
        match body.rx.recv().await {
            Some(Chunk::Data(b)) => body.first = Some(b),
            _ => return Ok(None),
        }
        loader.load(body).await.map(Some)
    }));
    let mut result = client.build(&b.solve, &session, progress).await?;
    drop(session);
    if !target.is_complete() {
        return Err(BuildkitError::Solve {
            message: "the builder finished but sent no complete image tarball".into(),
        });
    }
    let loaded = match (&mut load.0).await {
        Ok(Ok(Some(loaded))) => loaded,
        Ok(Ok(None)) => {
            return Err(BuildkitError::Solve {
                message: "the builder sent an empty image tarball".into(),
            })
        }
        Ok(Err(e)) => return Err(load_error(&e)),
        Err(e) => {
            return Err(BuildkitError::Solve {
                message: format!("loading the image stopped: {e}"),
            })
        }
    };
    let names = b.tagged_names();
    // The tarball names its images; an engine that loads it untagged
    // reports the ID instead, which then gets the names.
    let id = loaded.iter().find(|l| l.starts_with("sha256:"));
    for name in &names {
        let present = engine.image(name).await.map_err(|e| load_error(&e))?;
        if present.is_none() {
            let Some(id) = id else {
                return Err(BuildkitError::Solve {
                    message: format!(
                        "the Docker engine at `{}` loaded the image but not under `{name}`",
                        engine.address()
                    ),
                });
            };
            engine.tag(id, name).await.map_err(|e| load_error(&e))?;
        }
    }
    if let Some(first) = names.first() {
        if let Ok(Some(img)) = engine.image(first).await {
            result.outcome.loaded_id = Some(img.id);
        }
    }
    Ok(result)
}

fn load_error(e: &EngineError) -> BuildkitError {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    BuildkitError::Solve { message }
}

/// The tarball as the engine reads it: the chunks until the daemon's
/// [`Chunk::End`]. A channel that closes without it never ends the body
/// (ending it would pass a cut-off tarball as whole); the build's failure
/// then drops the load.
struct Body {
    rx: mpsc::Receiver<Chunk>,
    first: Option<Bytes>,
    done: bool,
}

impl tokio_stream::Stream for Body {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(b));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Chunk::Data(b))) => Poll::Ready(Some(b)),
            Poll::Ready(Some(Chunk::End)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(containerd: bool, driver: &str) -> EngineVersion {
        EngineVersion {
            version: "28.5.2".into(),
            api_version: "1.51".into(),
            storage_driver: driver.into(),
            containerd_store: containerd,
        }
    }

    /// A buildkitd worker, as its OCI worker labels it.
    fn worker(snapshotter: &str) -> WorkerInfo {
        WorkerInfo {
            id: "w".into(),
            platforms: vec!["linux/amd64".into()],
            labels: [
                (
                    "org.mobyproject.buildkit.worker.snapshotter".to_string(),
                    snapshotter.to_string(),
                ),
                (
                    "org.mobyproject.buildkit.worker.executor".to_string(),
                    "oci".to_string(),
                ),
            ]
            .into(),
        }
    }

    #[test]
    fn graph_driver_engine_gets_moby() {
        let c = decide(true, Some(&engine(false, "overlay2")), &[], None);
        assert_eq!(c.exporter, Exporter::Moby);
        assert!(c.store.contains("graph driver overlay2"), "{}", c.store);
    }

    #[test]
    fn containerd_store_engine_gets_its_containerd_backed_moby() {
        let c = decide(
            true,
            Some(&engine(true, "io.containerd.snapshotter.v1.overlayfs")),
            &[worker("overlayfs")],
            None,
        );
        assert_eq!(c.exporter, Exporter::Moby);
        assert!(c.store.contains("containerd image store"), "{}", c.store);
    }

    #[test]
    fn engine_that_did_not_say_keeps_moby() {
        assert_eq!(decide(true, None, &[], None).exporter, Exporter::Moby);
    }

    #[test]
    fn any_other_builder_gets_the_docker_tarball() {
        // Even when it is an engine's BuildKit reached directly: cbuild
        // cannot know the engine behind it is the one of DOCKER_HOST.
        let c = decide(false, None, &[worker("overlayfs")], None);
        assert_eq!(c.exporter, Exporter::DockerLoad);
        assert_eq!(c.exporter.kind(), "docker");
        assert!(c.store.contains("snapshotter overlayfs"), "{}", c.store);
        assert_eq!(
            decide(false, None, &[], None).exporter,
            Exporter::DockerLoad
        );
    }

    /// buildx's "OCI importer": an engine with the containerd store loads
    /// an OCI layout, which may hold an image index.
    #[test]
    fn a_containerd_store_target_gets_the_oci_tarball() {
        let target = engine(true, "overlayfs");
        let c = decide(false, None, &[worker("overlayfs")], Some(&target));
        assert_eq!(c.exporter, Exporter::OciLoad);
        assert_eq!(c.keeps_indexes, Some(true));
        assert_eq!(store_kind(c.exporter.kind()), "moby");
        let graph = engine(false, "overlay2");
        let c = decide(false, None, &[worker("overlayfs")], Some(&graph));
        assert_eq!(c.exporter, Exporter::DockerLoad);
        assert_eq!(c.keeps_indexes, Some(false));
        // The builder's own engine decides for an engine's BuildKit.
        let c = decide(true, Some(&graph), &[], Some(&target));
        assert_eq!((c.exporter, c.keeps_indexes), (Exporter::Moby, Some(false)));
    }

    /// Plans `compose` (one service `app` with a Dockerfile), with `flags`.
    fn planned(compose: &str, opts: super::super::BuildOptions) -> Vec<ServiceBuild> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM cbuild-base\n").unwrap();
        let project = crate::compose::load(&crate::compose::LoadOptions {
            cwd: dir.path().to_path_buf(),
            project_name: Some("p".into()),
            ..Default::default()
        })
        .unwrap();
        super::super::plan(&project, &opts).unwrap()
    }

    fn workers(platforms: &[&str]) -> Vec<WorkerInfo> {
        vec![WorkerInfo {
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            ..worker("overlayfs")
        }]
    }

    #[test]
    fn builds_the_builder_cannot_do_are_refused_naming_what_it_has() {
        let two = "services:\n  app:\n    build:\n      context: .\n      platforms: [linux/amd64, linux/386]\n";
        let b = planned(two, Default::default());
        let amd = workers(&["linux/amd64", "linux/amd64/v2"]);
        let graph = decide(true, Some(&engine(false, "overlay2")), &amd, None);
        let cd = decide(true, Some(&engine(true, "overlayfs")), &amd, None);
        let both = workers(&["linux/amd64", "linux/386"]);
        let e = check(&b, &cd, "unix:///d.sock", &amd).unwrap_err();
        assert!(
            e.message.contains("cannot build for linux/386")
                && e.message.contains("`services.app.build.platforms`")
                && e.message.contains("linux/amd64, linux/amd64/v2")
                && e.message.contains("unix:///d.sock"),
            "{e}"
        );
        assert!(check(&b, &cd, "x", &both).is_ok());
        let e = check(&b, &graph, "x", &both).unwrap_err();
        assert!(
            e.message.contains("2 platforms") && e.message.contains("graph driver"),
            "{e}"
        );
        assert!(e.hint.contains("containerd image store"), "{}", e.hint);
        let graph_load = decide(false, None, &both, Some(&engine(false, "overlay2")));
        let e = check(&b, &graph_load, "x", &both).unwrap_err();
        assert!(e.message.contains("DOCKER_HOST"), "{e}");
        let oci = decide(false, None, &both, Some(&engine(true, "overlayfs")));
        assert!(check(&b, &oci, "x", &both).is_ok());
        // One platform is fine on the graph driver; an attestation is not.
        let one = planned(
            "services:\n  app:\n    build:\n      context: .\n      platforms: [linux/amd64]\n      provenance: mode=max\n",
            Default::default(),
        );
        let e = check(&one, &graph, "x", &both).unwrap_err();
        assert!(
            e.message
                .contains("provenance (`services.app.build.provenance`)"),
            "{e}"
        );
        let off = planned(
            "services:\n  app:\n    build:\n      context: .\n      provenance: false\n",
            Default::default(),
        );
        assert!(check(&off, &graph, "x", &both).is_ok());
    }

    #[test]
    fn a_graph_driver_engines_buildkit_reached_directly_keeps_moby() {
        // Docker 28.5 on overlay2, as ListWorkers reports it.
        let w = WorkerInfo {
            id: "71235283-c9b6-46ba-b28d-9af0f386ab45".into(),
            platforms: vec!["linux/amd64".into()],
            labels: [(
                "org.mobyproject.buildkit.worker.moby.host-gateway-ip".to_string(),
                "172.17.0.1".to_string(),
            )]
            .into(),
        };
        assert_eq!(decide(false, None, &[w], None).exporter, Exporter::Moby);
        // Docker 20.10: a worker named `moby`, no labels.
        let old = WorkerInfo {
            id: "moby".into(),
            ..Default::default()
        };
        assert_eq!(decide(false, None, &[old], None).exporter, Exporter::Moby);
        // The containerd-store engine's worker has an executor: it has the
        // docker exporter.
        let mut cd = worker("overlayfs");
        cd.labels.insert(
            "org.mobyproject.buildkit.worker.executor".into(),
            "containerd".into(),
        );
        cd.labels.insert(
            "org.mobyproject.buildkit.worker.moby.host-gateway-ip".into(),
            "172.17.0.1".into(),
        );
        assert_eq!(
            decide(false, None, &[cd], None).exporter,
            Exporter::DockerLoad
        );
    }

    fn pushing_build(exporter: &str) -> ServiceBuild {
        ServiceBuild {
            service: "app".into(),
            image: "reg:5000/app:v1".into(),
            solve: crate::buildkit::SolveOptions {
                exporters: vec![crate::buildkit::ExporterSpec {
                    kind: exporter.into(),
                    attrs: [("name".to_string(), "reg:5000/app:v1".to_string())].into(),
                }],
                ..Default::default()
            },
            session: Default::default(),
            tracked: Vec::new(),
            deps: Vec::new(),
            same_as: None,
            bases: Vec::new(),
            force: false,
            record: None,
            push: true,
            remote_records: false,
            platforms: Default::default(),
            attests: Vec::new(),
        }
    }

    #[test]
    fn who_pushes_follows_the_builder() {
        // Graph driver: the exporter stays, the engine pushes after.
        let graph = decide(true, Some(&engine(false, "overlay2")), &[], None);
        assert!(!graph.exporter_pushes);
        let mut b = [pushing_build("moby")];
        retarget_push(&mut b, &graph);
        assert!(push_by_engine(&b[0]) && stores_locally(&b[0]));
        assert_eq!(b[0].solve.exporters[0].attrs.get("push"), None);
        // containerd store: moby pushes itself.
        let cd = decide(true, Some(&engine(true, "overlayfs")), &[], None);
        let mut b = [pushing_build("moby")];
        retarget_push(&mut b, &cd);
        assert_eq!(b[0].solve.exporters[0].kind, "moby");
        assert_eq!(b[0].solve.exporters[0].attrs["push"], "true");
        assert!(!push_by_engine(&b[0]) && stores_locally(&b[0]));
        // Another builder: the registry only, instead of the tarball.
        let other = decide(false, None, &[worker("overlayfs")], None);
        let mut b = [pushing_build("docker")];
        retarget_push(&mut b, &other);
        assert_eq!(b[0].solve.exporters[0].kind, "image");
        assert_eq!(b[0].solve.exporters[0].attrs["push"], "true");
        assert!(!push_by_engine(&b[0]) && !stores_locally(&b[0]));
        // A build that does not push is left alone.
        let mut b = [pushing_build("docker")];
        b[0].push = false;
        retarget_push(&mut b, &other);
        assert_eq!(b[0].solve.exporters[0].kind, "docker");
        assert!(!push_by_engine(&b[0]));
        // A graph-driver engine's BuildKit reached directly cannot push.
        let direct = decide(
            false,
            None,
            &[WorkerInfo {
                id: "moby".into(),
                ..Default::default()
            }],
            None,
        );
        assert!(can_push(false, &direct, "tcp://b:1").is_err());
        assert!(can_push(true, &graph, "unix:///d.sock").is_ok());
        assert!(can_push(false, &other, "tcp://b:1").is_ok());
    }

    #[test]
    fn versions_from_source_are_not_called_old() {
        assert_eq!(version_text(Some("v0.25.1"), None), "v0.25.1");
        let src = version_text(Some("v0.0.0+unknown"), None);
        assert!(
            src.contains("v0.0.0+unknown") && !src.contains("older"),
            "{src}"
        );
        assert!(version_text(Some("v0.0.0+unknown"), Some("28.5.2")).starts_with("v0.25.0"));
        assert!(version_text(None, None).contains("older than v0.11"));
        assert!(version_text(None, Some("26.1.5")).starts_with("v0.13.1"));
    }

    #[tokio::test]
    async fn body_ends_only_at_the_daemons_end() {
        use tokio_stream::{Stream, StreamExt};
        let (tx, rx) = mpsc::channel(4);
        tx.send(Chunk::Data(Bytes::from_static(b"b")))
            .await
            .unwrap();
        tx.send(Chunk::End).await.unwrap();
        let body = Body {
            rx,
            first: Some(Bytes::from_static(b"a")),
            done: false,
        };
        let all: Vec<Bytes> = body.collect().await;
        assert_eq!(all, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);

        let (tx, rx) = mpsc::channel(4);
        tx.send(Chunk::Data(Bytes::from_static(b"a")))
            .await
            .unwrap();
        drop(tx);
        let mut body = Body {
            rx,
            first: None,
            done: false,
        };
        assert_eq!(body.next().await, Some(Bytes::from_static(b"a")));
        // Cut off: the body neither ends nor yields.
        let pending =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_next(cx).is_pending()))
                .await;
        assert!(pending);
    }
}
