//! `cbuild watch`: every change under a service's `develop.watch` paths
//! reaches its running containers, and cbuild checks that it did.
//!
//! Events come from the kernel ([`events`]); what changed is decided by
//! content: each file's BLAKE3 hash is compared with the last one seen, so
//! a `touch` does nothing and a same-size edit that kept its mtime is
//! caught. Each service has one task that runs one cycle at a time; events
//! arriving meanwhile are merged into the next cycle (a running build is
//! never cancelled by an edit). A cycle syncs (a tar to the Engine API,
//! read back to compare hashes), restarts, runs `exec.command`, or
//! rebuilds through the normal build path (skipped when nothing the build
//! reads changed) and recreates the service's containers through the
//! Engine API as compose does (`docker compose up --no-deps --no-build`
//! when that is not exact), then checks they run the new image.

pub mod events;
pub mod spec;
pub mod sync;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::buildkit::Client;
use crate::compose::{ComposeError, Project};
use crate::context::dockerignore::PatternMatcher;
use crate::engine::{Engine, ServiceContainer};
use crate::orchestrate::{export, fresh, plan, BuildOptions, Reporter, Shutdown};
use events::{Batch, FileEvents, WatchError};
use spec::{Action, Trigger};

/// What a service's watch is doing, for its line on the terminal.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WatchState {
    /// Waiting for changes under these paths.
    Watching {
        /// How many paths.
        paths: usize,
    },
    /// Files changed on disk but not in content (a `touch`), or only
    /// files no trigger takes: nothing to do. Shown only in JSON.
    Unchanged {
        /// Paths the events named.
        paths: usize,
    },
    /// Copying files into the containers.
    Syncing {
        /// Files copied.
        files: usize,
        /// Paths deleted.
        deleted: usize,
        /// The container paths copied or deleted.
        paths: Vec<String>,
    },
    /// Building the image.
    Rebuilding,
    /// Recreating or restarting the containers.
    Restarting,
    /// Running `exec.command`.
    Executing,
    /// Done: the containers hold what the source holds.
    Running {
        /// The first container's short ID.
        container: String,
        /// The image it runs (short).
        image: String,
        /// Files checked in the container.
        verified_files: usize,
        /// The build found nothing changed that it reads.
        up_to_date: bool,
    },
    /// The cycle failed; watching goes on, the next change tries again.
    Failed {
        /// What went wrong.
        error: String,
        /// What to do about it.
        hint: Option<String>,
    },
}

/// Receives watch states. Implementations must not block for long.
pub trait WatchReporter: Send + Sync {
    /// `service` is now in `state`.
    fn report(&self, service: &str, state: WatchState);
}

/// What `cbuild watch` needs besides the triggers.
pub struct Watch {
    /// The project.
    pub project: Project,
    /// The engine the containers run in.
    pub engine: Engine,
    /// The builder.
    pub client: Client,
    /// Options for rebuilds.
    pub build: BuildOptions,
    /// Where built images go.
    pub exporter: export::Exporter,
    /// `--env-file` and `--profile`, handed to `docker compose up`.
    pub env_files: Vec<PathBuf>,
    /// Profiles.
    pub profiles: Vec<String>,
    /// Draws the states.
    pub reporter: Arc<dyn WatchReporter>,
    /// Draws rebuilds.
    pub build_reporter: Arc<dyn Reporter>,
}

/// One watched service.
#[derive(Clone, Debug)]
pub struct ServiceWatch {
    /// Its name.
    pub name: String,
    /// Its `develop.watch` entries.
    pub triggers: Vec<Trigger>,
    /// The local build context and its `.dockerignore`, which applies to
    /// the triggers as in compose.
    pub ignore: Option<(PathBuf, PatternMatcher)>,
    /// No `develop.watch`: the build context is watched, and only a change
    /// to what the last build read (its recorded DiffCopy requests,
    /// replayed by `fresh::check`) rebuilds.
    pub implicit: bool,
}

impl ServiceWatch {
    /// The triggers that take `path`, after the build's `.dockerignore`.
    pub fn triggers_of<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = &'a Trigger> + 'a {
        let ignored = self.ignore.as_ref().is_some_and(|(ctx, m)| {
            path.strip_prefix(ctx).ok().is_some_and(|rel| {
                let rel = rel.to_string_lossy();
                !rel.is_empty() && m.matches_or_parent_matches(&rel).unwrap_or(false)
            })
        });
        self.triggers
            .iter()
            .filter(move |t| !ignored && t.matches(path))
    }

    /// Whether a change under directory `dir` can concern a trigger: false
    /// when every trigger over it leaves it out (`.git`, `ignore:`), or the
    /// build's `.dockerignore` does, with no `!` exception that could take
    /// something under it back. Such a directory is neither watched nor
    /// walked.
    pub fn wants_dir(&self, dir: &Path) -> bool {
        let ignored = self.ignore.as_ref().is_some_and(|(ctx, m)| {
            !m.exclusions()
                && dir.strip_prefix(ctx).ok().is_some_and(|rel| {
                    let rel = rel.to_string_lossy();
                    !rel.is_empty() && m.matches_or_parent_matches(&rel).unwrap_or(false)
                })
        });
        !ignored && self.triggers.iter().any(|t| t.may_take_under(dir))
    }
}

/// Why watching cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A `develop.watch` entry or an ignore file is wrong (exit 2).
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// The build's ignore file is wrong (exit 2).
    #[error(transparent)]
    Ignore(#[from] crate::context::ignorefile::IgnoreError),
    /// No selected service has `develop.watch` or a local build context.
    #[error("none of the selected services ({}) has a `develop.watch` section or a local `build:` context", .0.join(", "))]
    NothingToWatch(Vec<String>),
}

/// The watched services among `selected` (all when empty): their triggers
/// checked, so bad input stops before anything is built.
pub fn prepare(project: &Project, selected: &[String]) -> Result<Vec<ServiceWatch>, PrepareError> {
    let mut out = Vec::new();
    for (name, service) in &project.services {
        if !selected.is_empty() && !selected.contains(name) {
            continue;
        }
        let mut triggers = spec::triggers(project, service)?;
        let local_context = service
            .build
            .as_ref()
            .filter(|b| !b.is_remote_context())
            .map(|b| PathBuf::from(&b.context));
        let implicit = triggers.is_empty();
        match (&local_context, implicit) {
            (_, false) => {}
            (Some(context), true) => triggers.push(Trigger {
                key: format!("services.{name}.build.context"),
                path: context.clone(),
                action: Action::Rebuild,
                target: None,
                ignore: None,
                include: None,
                initial_sync: false,
                exec: None,
                exec_user: None,
                exec_workdir: None,
                exec_env: Vec::new(),
            }),
            (None, true) => continue,
        }
        let ignore = match &service.build {
            Some(b) if !b.is_remote_context() => {
                let context = PathBuf::from(&b.context);
                let dockerfile = b.dockerfile.as_ref().map(|d| context.join(d));
                match crate::context::ignorefile::read(&context, dockerfile.as_deref())? {
                    Some(f) => PatternMatcher::from_ignore_lines(&f.lines)
                        .ok()
                        .map(|m| (context, m)),
                    None => None,
                }
            }
            _ => None,
        };
        out.push(ServiceWatch {
            name: name.clone(),
            triggers,
            ignore,
            implicit,
        });
    }
    if out.is_empty() {
        let names = if selected.is_empty() {
            project.services.keys().cloned().collect()
        } else {
            selected.to_vec()
        };
        return Err(PrepareError::NothingToWatch(names));
    }
    Ok(out)
}

/// Watches until `shutdown` is requested. Containers are left running.
pub async fn run(
    w: Watch,
    services: Vec<ServiceWatch>,
    shutdown: Shutdown,
) -> Result<(), WatchError> {
    let roots: Vec<PathBuf> = services
        .iter()
        .flat_map(|s| s.triggers.iter().map(|t| t.path.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let wanted: Vec<ServiceWatch> = services.clone();
    let mut files = FileEvents::new(
        roots.clone(),
        Box::new(move |dir: &Path| wanted.iter().any(|s| s.wants_dir(dir))),
    )?;
    let shared = Arc::new(w);
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for s in services {
        let (tx, rx) = mpsc::unbounded_channel::<BTreeSet<PathBuf>>();
        let roots: Vec<PathBuf> = s.triggers.iter().map(|t| t.path.clone()).collect();
        senders.push((roots, tx));
        let task = ServiceTask::new(shared.clone(), s);
        tasks.push(tokio::spawn(task.run(rx, shutdown.clone())));
    }
    let mut stop = shutdown.clone();
    let result = loop {
        let batch = tokio::select! {
            () = stop.requested() => break Ok(()),
            b = files.next() => b,
        };
        let paths = match batch {
            None => break Ok(()),
            Some(Err(e)) => break Err(e),
            Some(Ok(Batch::Paths(p))) => p,
            Some(Ok(Batch::Rescan)) => roots.iter().cloned().collect(),
        };
        for (roots, tx) in &senders {
            let mine: BTreeSet<PathBuf> = paths
                .iter()
                .filter(|p| roots.iter().any(|r| p.starts_with(r) || r.starts_with(p)))
                .cloned()
                .collect();
            if !mine.is_empty() {
                let _ = tx.send(mine);
            }
        }
    };
    drop(senders);
    for t in tasks {
        let _ = t.await;
    }
    result
}

/// How a cycle ended.
enum Cycle {
    /// Nothing to do, or done.
    Done,
    /// Failed; the paths are tried again with the next change (or when the
    /// engine answers again).
    Failed { engine_gone: bool },
}

struct ServiceTask {
    w: Arc<Watch>,
    s: Arc<ServiceWatch>,
    /// The content last seen (and brought to the containers) per file.
    known: HashMap<PathBuf, blake3::Hash>,
    /// Directories seen, so a new one is sent as a directory of its own.
    known_dirs: BTreeSet<PathBuf>,
    /// Paths of failed cycles, tried again with the next.
    retry: BTreeSet<PathBuf>,
    /// Container owners, by container ID.
    owners: HashMap<String, (u64, u64)>,
}

impl ServiceTask {
    fn new(w: Arc<Watch>, s: ServiceWatch) -> Self {
        let mut t = ServiceTask {
            w,
            s: Arc::new(s),
            known: HashMap::new(),
            known_dirs: BTreeSet::new(),
            retry: BTreeSet::new(),
            owners: HashMap::new(),
        };
        let roots: Vec<PathBuf> = t.s.triggers.iter().map(|t| t.path.clone()).collect();
        for root in roots {
            let mut files = Vec::new();
            walk(&root, &t.s, &mut files, &mut t.known_dirs);
            for f in files {
                // Only what a trigger takes is ever compared.
                if !t.relevant(&f) {
                    continue;
                }
                if let Some(h) = content(&f) {
                    t.known.insert(f, h);
                }
            }
        }
        t
    }

    fn report(&self, state: WatchState) {
        self.w.reporter.report(&self.s.name, state);
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<BTreeSet<PathBuf>>, shutdown: Shutdown) {
        self.report(WatchState::Watching {
            paths: self.s.triggers.len(),
        });
        let initial: BTreeSet<PathBuf> = self
            .s
            .triggers
            .iter()
            .filter(|t| t.initial_sync && t.action.syncs())
            .map(|t| t.path.clone())
            .collect();
        let mut engine_gone = false;
        if !initial.is_empty() {
            engine_gone = self.cycle(initial, true, &shutdown).await;
        }
        let mut stop = shutdown.clone();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let batch = tokio::select! {
                () = stop.requested() => break,
                b = rx.recv() => match b {
                    Some(b) => b,
                    None => break,
                },
                _ = tick.tick(), if engine_gone => {
                    if self.w.engine.ping().await.is_err() {
                        continue;
                    }
                    BTreeSet::new()
                }
            };
            let mut batch = batch;
            // Coalesce: everything that arrived meanwhile goes in one cycle.
            while let Ok(more) = rx.try_recv() {
                batch.extend(more);
            }
            engine_gone = self.cycle(batch, false, &shutdown).await;
        }
    }

    /// Runs one cycle; true when it failed because the engine is gone.
    async fn cycle(&mut self, paths: BTreeSet<PathBuf>, force: bool, shutdown: &Shutdown) -> bool {
        let mut paths = paths;
        paths.extend(std::mem::take(&mut self.retry));
        let hashing = std::time::Instant::now();
        let changed = self.changes(&paths, force);
        tracing::debug!(
            service = %self.s.name,
            paths = paths.len(),
            changed = changed.len(),
            ms = hashing.elapsed().as_millis() as u64,
            "watch: compared contents"
        );
        if changed.is_empty() {
            if !paths.is_empty() {
                self.report(WatchState::Unchanged { paths: paths.len() });
            }
            return false;
        }
        let end = self.act(&changed, shutdown).await;
        match end {
            Cycle::Done => {
                for (p, h) in &changed {
                    match h {
                        Some(h) => {
                            self.known.insert(p.clone(), *h);
                        }
                        None => {
                            self.known.remove(p);
                        }
                    }
                }
                false
            }
            Cycle::Failed { engine_gone } => {
                self.retry.extend(changed.into_iter().map(|(p, _)| p));
                engine_gone
            }
        }
    }

    /// The files under `paths` whose content differs from what was last
    /// seen (`None`: deleted), in path order; directories new since then
    /// come as `(dir, None)` entries before their files only through
    /// [`ServiceTask::act`]'s walk. With `force`, every file counts.
    fn changes(
        &mut self,
        paths: &BTreeSet<PathBuf>,
        force: bool,
    ) -> Vec<(PathBuf, Option<blake3::Hash>)> {
        let mut files = BTreeSet::new();
        for p in paths {
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => {
                    let mut found = Vec::new();
                    let mut dirs = BTreeSet::new();
                    walk(p, &self.s, &mut found, &mut dirs);
                    files.extend(found);
                    // Files that were there and are not any more.
                    files.extend(self.known.keys().filter(|k| k.starts_with(p)).cloned());
                }
                Ok(_) => {
                    files.insert(p.clone());
                }
                Err(_) => {
                    files.insert(p.clone());
                    files.extend(self.known.keys().filter(|k| k.starts_with(p)).cloned());
                }
            }
        }
        files
            .into_iter()
            .filter(|f| self.relevant(f))
            .filter_map(|f| {
                let now = content(&f);
                let before = self.known.get(&f).copied();
                (force || now != before).then_some((f, now))
            })
            .collect()
    }

    /// Whether any trigger takes `path`, after the build's `.dockerignore`.
    fn relevant(&self, path: &Path) -> bool {
        self.triggers_of(path).next().is_some()
    }

    fn triggers_of<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = &'a Trigger> + 'a {
        self.s.triggers_of(path)
    }

    async fn act(
        &mut self,
        changed: &[(PathBuf, Option<blake3::Hash>)],
        shutdown: &Shutdown,
    ) -> Cycle {
        let s = self.s.clone();
        let rebuild = changed
            .iter()
            .any(|(p, _)| s.triggers_of(p).any(|t| t.action == Action::Rebuild));
        if rebuild {
            return self.rebuild(shutdown).await;
        }
        let mut copies = Vec::new();
        let mut deletes = Vec::new();
        let mut restart = false;
        let mut execs: Vec<&Trigger> = Vec::new();
        for (p, h) in changed {
            // The first trigger that syncs the path decides where it goes.
            let triggers: Vec<&Trigger> = s.triggers_of(p).collect();
            if let Some(t) = triggers.iter().find(|t| t.action.syncs()) {
                if let Some(target) = t.container_path(p) {
                    if h.is_some() {
                        // Directories new since the last look come first,
                        // owned like the files.
                        let mut dir = p.parent();
                        let mut new_dirs = Vec::new();
                        while let Some(d) = dir {
                            if !d.starts_with(&t.path) || self.known_dirs.contains(d) {
                                break;
                            }
                            new_dirs.push(d.to_path_buf());
                            dir = d.parent();
                        }
                        for d in new_dirs.into_iter().rev() {
                            if let Some(c) = t.container_path(&d) {
                                copies.push(sync::Copy {
                                    host: d.clone(),
                                    container: c,
                                });
                            }
                            self.known_dirs.insert(d);
                        }
                        copies.push(sync::Copy {
                            host: p.clone(),
                            container: target,
                        });
                    } else {
                        deletes.push(target);
                    }
                }
            }
            for t in triggers {
                match t.action {
                    Action::SyncRestart | Action::Restart => restart = true,
                    Action::SyncExec if !execs.iter().any(|e| e.key == t.key) => execs.push(t),
                    _ => {}
                }
            }
        }
        // A deleted directory goes as a whole (as compose's `rm -rf`).
        let gone_dirs: Vec<PathBuf> = self
            .known_dirs
            .iter()
            .filter(|d| !d.exists() && changed.iter().any(|(p, _)| p.starts_with(d)))
            .cloned()
            .collect();
        for d in gone_dirs {
            self.known_dirs.remove(&d);
            if let Some(t) = s.triggers_of(&d).find(|t| t.action.syncs()) {
                if let Some(c) = t.container_path(&d) {
                    if d != t.path {
                        deletes.push(c);
                    }
                }
            }
        }
        let containers = match self.running().await {
            Ok(c) => c,
            Err(end) => return end,
        };
        let files = copies.iter().filter(|c| c.host.is_file()).count();
        let mut verified = 0;
        if !copies.is_empty() || !deletes.is_empty() {
            self.report(WatchState::Syncing {
                files,
                deleted: deletes.len(),
                paths: copies
                    .iter()
                    .map(|c| c.container.clone())
                    .chain(deletes.iter().cloned())
                    .collect(),
            });
            for c in &containers {
                match self.sync_one(c, &copies, &deletes).await {
                    Ok(n) => verified = n,
                    Err(end) => return end,
                }
            }
        }
        for t in &execs {
            self.report(WatchState::Executing);
            let cmd = t.exec.clone().unwrap_or_default();
            for c in &containers {
                match self
                    .w
                    .engine
                    .exec(
                        &c.id,
                        &cmd,
                        t.exec_user.as_deref(),
                        t.exec_workdir.as_deref(),
                        &t.exec_env,
                    )
                    .await
                {
                    Ok(out) if out.exit_code == 0 => {}
                    Ok(out) => {
                        return self.failed(
                            format!(
                                "`{}` exited with {} in `{}`: {}",
                                cmd.join(" "),
                                out.exit_code,
                                c.name,
                                last_line(&out.output)
                            ),
                            Some(format!(
                                "`{}.exec.command` failed; fix it or the files it reads",
                                t.key
                            )),
                        )
                    }
                    Err(e) => return self.engine_failed(e).await,
                }
            }
        }
        if restart {
            self.report(WatchState::Restarting);
            for c in &containers {
                if let Err(e) = self.w.engine.restart(&c.id).await {
                    return self.engine_failed(e).await;
                }
            }
        }
        let after = match self.running().await {
            Ok(c) => c,
            Err(end) => return end,
        };
        self.done(&after, verified, false);
        Cycle::Done
    }

    /// Copies into one container, deletes, and reads back; the number of
    /// files verified.
    async fn sync_one(
        &mut self,
        c: &ServiceContainer,
        copies: &[sync::Copy],
        deletes: &[String],
    ) -> Result<usize, Cycle> {
        let engine = self.w.engine.clone();
        let owner = match self.owners.get(&c.id) {
            Some(o) => *o,
            None => {
                let user = match engine.container_user(&c.id).await {
                    Ok(u) => u,
                    Err(e) => return Err(self.engine_failed(e).await),
                };
                match sync::owner(&engine, &c.id, &user).await {
                    Ok(o) => {
                        self.owners.insert(c.id.clone(), o);
                        o
                    }
                    Err(e) => return Err(self.failed(e, None)),
                }
            }
        };
        if !deletes.is_empty() {
            // `rm -rf` in the container, as compose 2.40 does, but as root:
            // the copies are written by the engine whatever the user may
            // write, and a deletion must reach as far.
            let mut cmd = vec!["rm".to_string(), "-rf".to_string(), "--".to_string()];
            cmd.extend(deletes.iter().cloned());
            match engine.exec(&c.id, &cmd, Some("0"), None, &[]).await {
                Ok(out) if out.exit_code == 0 => {}
                Ok(out) => {
                    let missing = out.exit_code == 126 || out.exit_code == 127;
                    return Err(self.failed(
                        format!("cannot delete in `{}`: {}", c.name, last_line(&out.output)),
                        missing.then(|| "deletions run `rm -rf` in the container (as compose does); the image needs `rm`".into()),
                    ));
                }
                Err(e) => return Err(self.engine_failed(e).await),
            }
        }
        let copies = copies.to_vec();
        let built = tokio::task::spawn_blocking(move || sync::archive(&copies, owner)).await;
        let (tar, sent) = match built {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                return Err(self.failed(format!("cannot read the changed files: {e}"), None))
            }
            Err(e) => return Err(self.failed(format!("cannot read the changed files: {e}"), None)),
        };
        if !sent.is_empty() || !tar.is_empty() {
            if let Err(e) = engine.put_archive(&c.id, tar).await {
                return Err(self.engine_failed(e).await);
            }
        }
        let mut check: Vec<String> = sent.keys().cloned().collect();
        check.extend(deletes.iter().cloned());
        let found = match sync::read_back(&engine, &c.id, &check).await {
            Ok(f) => f,
            Err(e) => return Err(self.engine_failed(e).await),
        };
        for (path, want) in &sent {
            if found.get(path).copied().flatten() != Some(*want) {
                return Err(self.failed(
                    format!(
                        "`{path}` in `{}` does not hold the bytes that were sent",
                        c.name
                    ),
                    Some(
                        "something in the container changes it (a bind mount over the target?)"
                            .into(),
                    ),
                ));
            }
        }
        for path in deletes {
            if found.get(path).copied().flatten().is_some() {
                return Err(self.failed(
                    format!("`{path}` is still in `{}` after its deletion", c.name),
                    None,
                ));
            }
        }
        Ok(sent.len() + deletes.len())
    }

    async fn rebuild(&mut self, shutdown: &Shutdown) -> Cycle {
        let mut phases = Phases::start(&self.s.name);
        let mut opts = self.w.build.clone();
        opts.services = vec![self.s.name.clone()];
        let mut builds = match plan(&self.w.project, &opts) {
            Ok(b) => b,
            Err(e) => return self.failed(error_chain(&e), None),
        };
        export::retarget(&mut builds, self.w.exporter);
        let image = builds
            .iter()
            .find(|b| b.service == self.s.name)
            .map(|b| b.image.clone());
        if self.s.implicit {
            // Watched through its build inputs: a file the last build did
            // not read changes nothing, and says nothing on the line.
            if let Some(b) = builds.iter().find(|b| b.service == self.s.name) {
                if let fresh::Freshness::UpToDate { .. } = fresh::check(b, &self.w.engine).await {
                    b.save_hashes();
                    // The engine's own ID for the image, which is what its
                    // containers report (on the containerd store it is not
                    // the ID the build recorded).
                    let id = match self.w.engine.image(&b.image).await {
                        Ok(i) => i.map(|i| i.id),
                        Err(e) => return self.engine_failed(e).await,
                    };
                    let current = match self.containers().await {
                        Ok(c) => c,
                        Err(end) => return end,
                    };
                    if id.is_some()
                        && !current.is_empty()
                        && current
                            .iter()
                            .all(|c| c.state == "running" && Some(&c.image_id) == id.as_ref())
                    {
                        self.report(WatchState::Unchanged { paths: 0 });
                        return Cycle::Done;
                    }
                }
            }
        }
        phases.mark("plan");
        self.report(WatchState::Rebuilding);
        let results = crate::orchestrate::run(
            &self.w.client,
            Some(self.w.engine.clone()),
            builds,
            self.w.build.parallel,
            self.w.build_reporter.clone(),
            shutdown.clone(),
        )
        .await;
        phases.mark("build");
        if shutdown.is_requested() {
            return Cycle::Done;
        }
        if let Some((service, o)) = results.iter().find(|(_, o)| o.error.is_some()) {
            return self.failed(
                format!(
                    "the build of `{service}` failed: {}",
                    o.error.clone().unwrap_or_default()
                ),
                o.hint.clone(),
            );
        }
        let up_to_date = results
            .iter()
            .find(|(s, _)| s == &self.s.name)
            .is_some_and(|(_, o)| o.up_to_date);
        // The ID the engine gives the image now, which is what a
        // container created from it reports.
        let id = match &image {
            Some(name) => match self.w.engine.image(name).await {
                Ok(Some(i)) => i.id,
                Ok(None) => {
                    return self.failed(
                        format!("the image `{name}` is not in the engine after its build"),
                        None,
                    )
                }
                Err(e) => return self.engine_failed(e).await,
            },
            None => {
                return self.failed(
                    format!("`{}` has no `build:` section to rebuild", self.s.name),
                    None,
                )
            }
        };
        let current = match self.containers().await {
            Ok(c) => c,
            Err(end) => return end,
        };
        phases.mark("inspect");
        let fine = |cs: &[ServiceContainer]| {
            !cs.is_empty() && cs.iter().all(|c| c.state == "running" && c.image_id == id)
        };
        if !fine(&current) {
            self.report(WatchState::Restarting);
            if let Err(end) = self.recreate(&current, &id).await {
                return end;
            }
            phases.mark("recreate");
        }
        let after = match self.containers().await {
            Ok(c) => c,
            Err(end) => return end,
        };
        phases.mark("verify");
        if !fine(&after) {
            let c = after.first();
            return self.failed(
                match c {
                    Some(c) if c.state != "running" => format!(
                        "the container `{}` is {} after its recreation",
                        c.name, c.state
                    ),
                    Some(c) => format!(
                        "the container `{}` runs {}, not the new image {}",
                        c.name,
                        short(&c.image_id),
                        short(&id)
                    ),
                    None => "no container after `docker compose up`".into(),
                },
                None,
            );
        }
        self.done(&after, 0, up_to_date);
        Cycle::Done
    }

    /// Recreates the service's containers with image `id`: through the
    /// Engine API as compose does (one process less: `docker compose up`
    /// was most of a rebuild cycle), or with `docker compose up -d
    /// --no-deps --no-build` when there are none yet or a container has
    /// something that path does not carry over.
    async fn recreate(&mut self, current: &[ServiceContainer], id: &str) -> Result<(), Cycle> {
        let mut fallback = current.is_empty();
        for c in current
            .iter()
            .filter(|c| c.image_id != id || c.state != "running")
        {
            if fallback {
                break;
            }
            if c.image_id == id {
                // Already the new image, only stopped: compose starts it.
                fallback = true;
                break;
            }
            match self.w.engine.recreate(&c.id, id).await {
                Ok(crate::engine::Recreated::Done(_)) => {}
                Ok(crate::engine::Recreated::NotUnderstood(why)) => {
                    tracing::debug!(container = %c.name, %why, "recreating through docker compose");
                    fallback = true;
                }
                Err(e) => {
                    tracing::debug!(container = %c.name, error = %e, "recreating through docker compose");
                    fallback = true;
                }
            }
        }
        if fallback {
            let args = vec![
                "-d".to_string(),
                "--no-deps".to_string(),
                self.s.name.clone(),
            ];
            if let Err(e) = crate::orchestrate::up::compose_up_captured(
                &self.w.project,
                &self.w.env_files,
                &self.w.profiles,
                &args,
            )
            .await
            {
                return Err(self.failed(e, Some("`docker compose up -d --no-deps --no-build` recreates the containers; run it to see more".into())));
            }
        }
        Ok(())
    }

    fn done(&self, containers: &[ServiceContainer], verified: usize, up_to_date: bool) {
        let c = containers.first().cloned().unwrap_or_default();
        self.report(WatchState::Running {
            container: c.id.chars().take(12).collect(),
            image: short(&c.image_id),
            verified_files: verified,
            up_to_date,
        });
    }

    async fn containers(&mut self) -> Result<Vec<ServiceContainer>, Cycle> {
        match self
            .w
            .engine
            .service_containers(&self.w.project.name, &self.s.name)
            .await
        {
            Ok(c) => Ok(c),
            Err(e) => Err(self.engine_failed(e).await),
        }
    }

    /// The service's running containers; an error when one is not running
    /// (it died: shown, and the next change tries again).
    async fn running(&mut self) -> Result<Vec<ServiceContainer>, Cycle> {
        let all = self.containers().await?;
        if let Some(c) = all.iter().find(|c| c.state != "running") {
            return Err(self.failed(
                format!("the container `{}` is {}", c.name, c.state),
                Some(format!(
                    "start it (`docker compose start {}`); the next change is synced then",
                    self.s.name
                )),
            ));
        }
        if all.is_empty() {
            return Err(self.failed(
                format!("`{}` has no container", self.s.name),
                Some(format!("start it (`docker compose up -d {}`)", self.s.name)),
            ));
        }
        Ok(all)
    }

    fn failed(&self, error: String, hint: Option<String>) -> Cycle {
        self.report(WatchState::Failed { error, hint });
        Cycle::Failed { engine_gone: false }
    }

    async fn engine_failed(&self, e: crate::engine::EngineError) -> Cycle {
        let gone = self.w.engine.ping().await.is_err();
        let hint = gone.then(|| {
            "watching goes on; the changes are brought in once the engine answers again".to_string()
        });
        self.report(WatchState::Failed {
            error: error_chain(&e),
            hint,
        });
        Cycle::Failed { engine_gone: gone }
    }
}

/// Where a cycle's time goes, for `CBUILD_LOG=cbuild::orchestrate::watch=debug`
/// (the phase table of `scripts/bench-watch` comes from it).
struct Phases {
    service: String,
    start: std::time::Instant,
    last: std::time::Instant,
    marks: Vec<(&'static str, u128)>,
}

impl Phases {
    fn start(service: &str) -> Self {
        let now = std::time::Instant::now();
        Phases {
            service: service.to_string(),
            start: now,
            last: now,
            marks: Vec::new(),
        }
    }

    fn mark(&mut self, phase: &'static str) {
        let now = std::time::Instant::now();
        self.marks.push((phase, (now - self.last).as_millis()));
        self.last = now;
    }
}

impl Drop for Phases {
    fn drop(&mut self) {
        let marks: Vec<String> = self
            .marks
            .iter()
            .map(|(p, ms)| format!("{p} {ms}"))
            .collect();
        tracing::debug!(
            service = %self.service,
            total_ms = self.start.elapsed().as_millis() as u64,
            phases_ms = %marks.join(", "),
            "watch cycle"
        );
    }
}

/// An error and its causes on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `sha256:abcdef…` → `abcdef123456`.
pub fn short(id: &str) -> String {
    id.rsplit(':')
        .next()
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

/// The content of a file as watch compares it: the hash of a regular
/// file's bytes, or of a symlink's target; `None` when absent.
fn content(path: &Path) -> Option<blake3::Hash> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if m.file_type().is_symlink() {
        let t = std::fs::read_link(path).ok()?;
        let mut h = blake3::Hasher::new();
        h.update(b"symlink\0");
        h.update(t.as_os_str().as_encoded_bytes());
        return Some(h.finalize());
    }
    if !m.is_file() {
        return None;
    }
    crate::context::hash::hash_file(path).ok().map(|(h, _)| h)
}

/// Every file and symlink under `root` (or `root` itself), without
/// following symlinks; directories nothing under which can concern `s`
/// (`.git` as compose, what its ignore patterns leave out) are not entered.
fn walk(root: &Path, s: &ServiceWatch, files: &mut Vec<PathBuf>, dirs: &mut BTreeSet<PathBuf>) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !m.is_dir() {
            files.push(path);
            continue;
        }
        if path != root && !s.wants_dir(&path) {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(&path) else {
            dirs.insert(path);
            continue;
        };
        stack.extend(rd.flatten().map(|e| e.path()));
        dirs.insert(path);
    }
}
