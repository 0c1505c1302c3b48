//! `cbuild why`: which Dockerfile steps the next build re-runs and why, without a solve; what
//! the last build ran (`--last`); and where a Dockerfile wastes the cache (`--advise`).
//!
//! The prediction follows BuildKit's cache keys. A step's key is made of its instruction,
//! the key of the step before it and, for what it reads, the *content* of the selected
//! paths: `COPY`/`ADD` sources (`cache/contenthash`, wildcards as Go's `path.Match`) and
//! read-only or whole-directory `RUN --mount` sources (`solver/llbsolver/ops/exec.go`,
//! content-based mount selectors). So a step re-runs when
//!
//! * a file it reads changed (the files come from replaying the last build's DiffCopy
//!   requests, [`fresh::changes`]; named contexts are read the same way),
//! * its instruction changed, or an `ENV`/`ARG`/`USER`/`SHELL` before it that a `RUN` sees
//!   (compared with the Dockerfile the last build read, recorded next to the build record),
//! * a build argument declared before a `RUN` changed value (it is in the `RUN`'s env),
//! * the image it starts from or copies from has another ID (on a graph-driver engine, whose
//!   BuildKit caches a `FROM` on the image's layers, only other layers count, and other
//!   environment, user, working directory or shell re-run only the `RUN`s),
//! * the step before it re-runs, or the stage it copies from re-runs.
//!
//! Where that cannot be known, the step is "cannot tell": sources BuildKit fetches itself,
//! a `# syntax=` frontend other than the standard one, an instruction cbuild does not know,
//! or a changed Dockerfile whose last version was not recorded. A stage the target does not
//! reach is not built. A `COPY --from` of a stage that re-runs is predicted to re-run; BuildKit
//! takes it from the cache only if what it copies comes out byte-identical.
//!
//! The prediction is against the last build. BuildKit may still hold results of earlier
//! ones: a step whose inputs an older build already had (an edit undone) is then taken from
//! the cache although predicted to run. It never runs a step predicted cached.
//!
//! At the end of every build the step list BuildKit reported (name, cached, duration) is
//! recorded with the Dockerfile text, build arguments and base image IDs the build used
//! ([`LastBuild`]): `--last` prints it, and `--advise` takes its costs from it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::buildkit::status::{StatusUpdate, VertexUpdate};
use crate::compose::Project;
use crate::context::binfile::write_private;
use crate::context::dockerfile::{self, reads_path, ContextUse, Step, StepRead};
use crate::context::listing::LocalDir;
use crate::engine::Engine;

use super::fresh::{self, FileChange, Freshness};
use super::plan::{plan, BuildOptions, PlanError, ServiceBuild};

const LAST_VERSION: u32 = 1;

// ---------------------------------------------------------------------------------------------
// The record of the last build
// ---------------------------------------------------------------------------------------------

/// One step BuildKit reported.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    /// Its name (`[build 2/5] RUN make`, `[internal] load build context`).
    pub name: String,
    /// Taken from the cache.
    pub cached: bool,
    /// How long it ran, when it started and completed.
    pub seconds: Option<f64>,
    /// It failed.
    #[serde(default)]
    pub failed: bool,
}

/// What the last build of a service used and did.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LastBuild {
    version: u32,
    /// When it ended (Unix seconds).
    pub finished: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// The Dockerfile it read, when cbuild could read it.
    pub dockerfile: Option<String>,
    /// Its build arguments.
    pub args: BTreeMap<String, String>,
    /// Its target stage, if one was named.
    #[serde(default)]
    pub target: Option<String>,
    /// The IDs of the images it started from.
    pub bases: BTreeMap<String, String>,
    /// What BuildKit's cache keys see of those images.
    #[serde(default)]
    pub base_images: BTreeMap<String, BaseImage>,
    /// The steps, in the order BuildKit first reported them.
    pub steps: Vec<StepRecord>,
}

/// What BuildKit's cache sees of an image a build starts from: a `FROM` is cached on the
/// image's layers (`source/containerimage`: the chain of its diff IDs, not its config
/// digest), while its environment, user, working directory and shell go into the `RUN`
/// steps on it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseImage {
    /// Diff IDs.
    pub layers: Vec<String>,
    /// What a `RUN` sees of its configuration.
    pub run_config: String,
}

async fn base_images(engine: &Engine, names: &[String]) -> BTreeMap<String, BaseImage> {
    let mut out = BTreeMap::new();
    for n in names {
        if let Ok(Some(img)) = engine.image(n).await {
            out.insert(
                n.clone(),
                BaseImage {
                    layers: img.layers,
                    run_config: img.run_config,
                },
            );
        }
    }
    out
}

/// The inputs of a build as it starts, for [`LastBuild`].
#[derive(Clone, Debug, Default)]
pub struct StartedBuild {
    dockerfile: Option<String>,
    args: BTreeMap<String, String>,
    target: Option<String>,
    bases: BTreeMap<String, String>,
    base_images: BTreeMap<String, BaseImage>,
    at: Option<std::time::Instant>,
    trigger: Vec<String>,
    triggers: usize,
}

/// Notes the Dockerfile text, arguments and base images a build starts with; `bases` are
/// the IDs the freshness check computed.
pub async fn started(
    b: &ServiceBuild,
    engine: Option<&Engine>,
    bases: BTreeMap<String, String>,
) -> StartedBuild {
    let base_images = match engine.filter(|_| b.record.is_some()) {
        Some(e) => base_images(e, &b.bases).await,
        None => BTreeMap::new(),
    };
    // The files that made this build necessary, for the history: what
    // differs from the last build's listing (none without a record).
    let changed: Vec<String> = fresh::changes(b)
        .await
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(local, list)| {
            list.into_iter().map(move |c| match local.as_str() {
                "context" => format!("{} {}", c.kind, c.path),
                other => format!("{} {other}:{}", c.kind, c.path),
            })
        })
        .collect();
    StartedBuild {
        dockerfile: dockerfile_text(b),
        args: build_args(b),
        target: b.solve.frontend_attrs.get("target").cloned(),
        bases,
        base_images,
        at: Some(std::time::Instant::now()),
        triggers: changed.len(),
        trigger: changed.into_iter().take(HISTORY_TRIGGERS).collect(),
    }
}

/// Keeps the latest state of every vertex of a running build, in first-seen order
/// (BuildKit repeats a vertex each time its state changes).
#[derive(Default)]
pub struct ProgressLog {
    order: Vec<String>,
    latest: HashMap<String, VertexUpdate>,
}

impl ProgressLog {
    /// Takes in one status message.
    pub fn update(&mut self, u: &StatusUpdate) {
        for v in &u.vertexes {
            match self.latest.get_mut(&v.digest) {
                Some(old) => {
                    let started = old.started.or(v.started);
                    *old = v.clone();
                    old.started = v.started.or(started);
                }
                None => {
                    self.order.push(v.digest.clone());
                    self.latest.insert(v.digest.clone(), v.clone());
                }
            }
        }
    }

    /// The steps seen.
    pub fn steps(&self) -> Vec<StepRecord> {
        self.order
            .iter()
            .filter_map(|d| self.latest.get(d))
            .map(|v| StepRecord {
                name: v.name.clone(),
                cached: v.cached,
                seconds: match (v.started, v.completed) {
                    (Some(s), Some(c)) => c.duration_since(s).ok().map(|d| d.as_secs_f64()),
                    _ => None,
                },
                failed: !v.error.is_empty(),
            })
            .collect()
    }
}

fn last_path(record: &Path) -> PathBuf {
    record.with_extension("why.json")
}

/// Records the end of a build (a failed one too: `--last` shows what ran),
/// and adds it to the service's history.
pub fn save_last(
    b: &ServiceBuild,
    started: StartedBuild,
    log: &ProgressLog,
    ok: bool,
    transfer: Option<&crate::buildkit::session::TransferSnapshot>,
) {
    let Some(record) = &b.record else { return };
    let steps = log.steps();
    let (ran, cached) = step_counts(&steps);
    let entry = HistoryEntry {
        finished: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        ok,
        seconds: started.at.map(|t| t.elapsed().as_secs_f64()),
        steps_run: ran,
        steps_cached: cached,
        context_bytes_sent: transfer.map(|t| t.context_bytes_sent),
        context_files_sent: transfer.map(|t| t.context_files_sent),
        trigger: started.trigger.clone(),
        triggers: started.triggers,
    };
    if let Err(e) = append_history(record, entry) {
        tracing::warn!("cannot add to the build history of `{}`: {e}", b.service);
    }
    let last = LastBuild {
        version: LAST_VERSION,
        finished: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        ok,
        dockerfile: started.dockerfile,
        args: started.args,
        target: started.target,
        bases: started.bases,
        base_images: started.base_images,
        steps,
    };
    let written = serde_json::to_vec(&last)
        .map_err(std::io::Error::from)
        .and_then(|bytes| write_private(&last_path(record), &bytes));
    if let Err(e) = written {
        tracing::warn!("cannot record the steps of `{}`: {e}", b.service);
    }
}

/// The last build's record; a missing one is `None`, an unreadable one too, with a warning.
pub fn load_last(b: &ServiceBuild) -> Option<LastBuild> {
    let path = last_path(b.record.as_ref()?);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<LastBuild>(&bytes) {
        Ok(l) if l.version == LAST_VERSION => Some(l),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(
                "ignoring the unreadable step record `{}` ({e}); the next build writes a new one",
                path.display()
            );
            None
        }
    }
}

/// How many builds the history of a service keeps.
pub const HISTORY_LEN: usize = 50;

/// How many trigger files one history entry names.
const HISTORY_TRIGGERS: usize = 20;

/// One build in a service's history (`cbuild why --history`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    /// When it ended (Unix seconds).
    pub finished: u64,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long the build took, from its start to its end (not the wait
    /// for a slot or for the services it starts from).
    pub seconds: Option<f64>,
    /// Dockerfile steps BuildKit ran.
    pub steps_run: usize,
    /// Dockerfile steps BuildKit took from its cache.
    pub steps_cached: usize,
    /// Bytes of build context files sent.
    pub context_bytes_sent: Option<u64>,
    /// Build context files sent.
    pub context_files_sent: Option<u64>,
    /// The files that made it necessary (`changed src/a.txt`; at most 20),
    /// as they differed from the build before it; empty for a first build
    /// or one made stale by something else (a base image, an argument).
    pub trigger: Vec<String>,
    /// How many files differed in all.
    pub triggers: usize,
}

/// The numbered Dockerfile steps that ran and that were cached. `[internal]`
/// steps are not counted, nor `FROM`: BuildKit reports the base image's
/// resolution as a step that is rarely "cached", whatever the build did.
fn step_counts(steps: &[StepRecord]) -> (usize, usize) {
    let numbered = steps.iter().filter(|s| {
        step_of(&s.name).is_some()
            && !s
                .name
                .split_once(']')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with("FROM "))
    });
    let (cached, ran): (Vec<&StepRecord>, Vec<&StepRecord>) = numbered.partition(|s| s.cached);
    (ran.len(), cached.len())
}

fn history_path(record: &Path) -> PathBuf {
    record.with_extension("history.jsonl")
}

/// Reads a history file: the entries, oldest first, or why it was set
/// aside. A missing file is an empty history.
fn read_history(path: &Path) -> Result<Vec<HistoryEntry>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str::<HistoryEntry>(l).map_err(|e| format!("line {}: {e}", i + 1))
        })
        .collect()
}

/// Adds one build to the history, keeping the last [`HISTORY_LEN`]. An
/// unreadable history is started anew (with a warning).
fn append_history(record: &Path, entry: HistoryEntry) -> std::io::Result<()> {
    let path = history_path(record);
    let mut list = read_history(&path).unwrap_or_else(|why| {
        tracing::warn!(
            "the build history `{}` is unreadable ({why}); starting a new one",
            path.display()
        );
        Vec::new()
    });
    list.push(entry);
    let skip = list.len().saturating_sub(HISTORY_LEN);
    let mut out = Vec::new();
    for e in &list[skip..] {
        serde_json::to_writer(&mut out, e)?;
        out.push(b'\n');
    }
    write_private(&path, &out)
}

/// The history of one service, newest last.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HistoryReport {
    /// The service.
    pub service: String,
    /// Its builds.
    pub builds: Vec<HistoryEntry>,
    /// Why the history file was set aside, if it was unreadable (the next
    /// build starts a new one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

/// The build history of each selected service.
pub fn history(project: &Project, opts: &BuildOptions) -> Result<Vec<HistoryReport>, WhyError> {
    let builds = plan(project, opts)?;
    Ok(selected(&builds, opts)
        .into_iter()
        .map(|b| {
            let (builds, unreadable) = match b.record.as_deref().map(history_path) {
                None => (Vec::new(), None),
                Some(path) => match read_history(&path) {
                    Ok(list) => (list, None),
                    Err(why) => (
                        Vec::new(),
                        Some(format!(
                            "the build history `{}` is unreadable ({why})",
                            path.display()
                        )),
                    ),
                },
            };
            HistoryReport {
                service: b.service.clone(),
                builds,
                unreadable,
            }
        })
        .collect())
}

/// The Dockerfile text a planned build reads, if cbuild serves it.
fn dockerfile_text(b: &ServiceBuild) -> Option<String> {
    let name = b.solve.frontend_attrs.get("filename")?;
    match b.session.locals.get("dockerfile")? {
        LocalDir::Virtual(files) => files
            .first()
            .map(|f| String::from_utf8_lossy(&f.data).into_owned()),
        LocalDir::Tracked(t) => std::fs::read(t.root.join(name))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
        LocalDir::Disk(d) => std::fs::read(d.join(name))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
    }
}

fn build_args(b: &ServiceBuild) -> BTreeMap<String, String> {
    b.solve
        .frontend_attrs
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("build-arg:")?.to_string(), v.clone())))
        .collect()
}

fn read_dockerfile(
    text: &str,
    b: &ServiceBuild,
    args: &BTreeMap<String, String>,
) -> Option<ContextUse> {
    let target = b.solve.frontend_attrs.get("target").map(String::as_str);
    read_for(text, target, args)
}

fn read_for(
    text: &str,
    target: Option<&str>,
    args: &BTreeMap<String, String>,
) -> Option<ContextUse> {
    let args: HashMap<String, String> = args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    dockerfile::analyze(text, target, &args).ok()
}

// ---------------------------------------------------------------------------------------------
// The prediction
// ---------------------------------------------------------------------------------------------

/// What happens to a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// BuildKit runs it.
    Runs,
    /// BuildKit takes it from the cache.
    Cached,
    /// cbuild cannot know.
    CannotTell,
    /// Its stage is not built for the target.
    NotReached,
}

/// One step of the build and what happens to it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepVerdict {
    /// The stage as BuildKit names it (empty for a one-stage Dockerfile).
    pub stage: String,
    /// BuildKit's step name prefix without the brackets (`build 2/5`).
    pub step: String,
    /// Dockerfile line.
    pub line: usize,
    /// The instruction.
    pub instruction: String,
    /// What happens.
    pub verdict: Verdict,
    /// Why, when it is not taken from the cache.
    pub reason: Option<String>,
    /// Whether this step is a cause (something it reads or is changed), not only after one.
    pub cause: bool,
}

impl StepVerdict {
    /// The name BuildKit shows for the step, without the instruction (`[build 2/5]`).
    pub fn prefix(&self) -> String {
        format!("[{}]", self.step)
    }
}

/// Changed files, grouped by the instruction that first reads them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChangeGroup {
    /// Where the files are: `context` or `context NAME` (a named context).
    pub source: String,
    /// Dockerfile line of the instruction; `None` for files no step reads.
    pub line: Option<usize>,
    /// The instruction.
    pub instruction: Option<String>,
    /// The sources of the instruction that read them.
    pub reads: Vec<String>,
    /// The files.
    pub files: Vec<FileChange>,
}

/// What else changed, besides files.
#[derive(Clone, Debug, Default)]
pub struct OtherChanges {
    /// The Dockerfile the last build read, analysed with its arguments.
    pub before: Option<ContextUse>,
    /// Whether the Dockerfile text changed but the last one is unknown.
    pub dockerfile_unknown: bool,
    /// Build arguments whose value changed.
    pub args: Vec<String>,
    /// Images whose layers changed (or are unknown): every step on them re-runs.
    pub images: Vec<String>,
    /// Images with the same layers but another environment, user, working directory or
    /// shell: the `RUN` steps on them re-run.
    pub image_configs: Vec<String>,
    /// Stages the last build's target did not reach: BuildKit may hold them from an older
    /// build or not.
    pub newly_reached: Vec<usize>,
}

/// A prediction for one build.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Prediction {
    /// Changed files by the instruction that first reads them.
    pub changes: Vec<ChangeGroup>,
    /// Every step of the stages, in Dockerfile order.
    pub steps: Vec<StepVerdict>,
    /// What cbuild cannot tell, and why.
    pub notes: Vec<String>,
}

impl Prediction {
    /// The steps predicted to run.
    pub fn running(&self) -> impl Iterator<Item = &StepVerdict> {
        self.steps.iter().filter(|s| s.verdict == Verdict::Runs)
    }
}

/// Whether a `# syntax=` image is the standard Dockerfile frontend (any version of it), whose
/// cache keys cbuild models.
fn standard_frontend(image: &str) -> bool {
    let name = image.split(['@', ':']).next().unwrap_or(image);
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    name == "docker/dockerfile" || name == "docker/dockerfile-upstream"
}

/// A state and its reason, as it flows along a stage.
#[derive(Clone, Debug)]
enum Flow {
    Clean,
    Runs(String),
    Unknown(String),
}

fn describe(step: &Step) -> String {
    format!("line {} `{}`", step.line, short(&step.text))
}

fn short(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

fn files_phrase(files: &[&FileChange]) -> String {
    let mut names: Vec<String> = files
        .iter()
        .take(3)
        .map(|c| format!("{} `{}`", c.kind, c.path))
        .collect();
    if files.len() > 3 {
        names.push(format!("{} more", files.len() - 3));
    }
    names.join(", ")
}

/// Predicts which steps of `now` re-run, given the files that changed per served directory
/// (`context`, `dockerfile`, `_ctx_NAME`) and the other changes. Pure: no I/O.
pub fn predict(
    now: &ContextUse,
    changes: &[(String, Vec<FileChange>)],
    other: &OtherChanges,
) -> Prediction {
    let steps = &now.steps;
    let mut causes: HashMap<usize, String> = HashMap::new();
    let mut unknown: HashMap<usize, String> = HashMap::new();
    let mut notes = Vec::new();
    let reachable = |s: &Step| now.stages[s.stage].reachable;
    let mut cause = |i: usize, why: String| {
        causes.entry(i).or_insert(why);
    };

    // Files, by the first instruction that reads them.
    let mut groups: Vec<ChangeGroup> = Vec::new();
    for (local, list) in changes {
        let named = local.strip_prefix("_ctx_");
        if local != "context" && named.is_none() {
            continue;
        }
        let source = match named {
            Some(n) => format!("context {n}"),
            None => "context".to_string(),
        };
        let mut by_step: BTreeMap<Option<usize>, Vec<&FileChange>> = BTreeMap::new();
        let mut readers: BTreeMap<usize, Vec<&FileChange>> = BTreeMap::new();
        for change in list {
            let mut first = None;
            for (i, s) in steps.iter().enumerate().filter(|(_, s)| reachable(s)) {
                let reads = s.reads.iter().any(|r| match (r, named) {
                    (StepRead::Context(p), None) => reads_path(p, &change.path),
                    (StepRead::Named(n), Some(want)) => n.eq_ignore_ascii_case(want),
                    _ => false,
                });
                if reads {
                    first.get_or_insert(i);
                    readers.entry(i).or_default().push(change);
                }
            }
            by_step.entry(first).or_default().push(change);
        }
        for (i, files) in readers {
            cause(i, format!("reads {}", files_phrase(&files)));
        }
        for (i, files) in by_step {
            let s = i.map(|i| &steps[i]);
            groups.push(ChangeGroup {
                source: source.clone(),
                line: s.map(|s| s.line),
                instruction: s.map(|s| s.text.clone()),
                reads: s
                    .map(|s| {
                        s.reads
                            .iter()
                            .filter_map(|r| match r {
                                StepRead::Context(p) if named.is_none() => Some(p.clone()),
                                StepRead::Named(n) if named.is_some() => Some(n.clone()),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                files: files.into_iter().cloned().collect(),
            });
        }
    }
    groups.sort_by_key(|g| g.line.unwrap_or(usize::MAX));

    // The Dockerfile's own changes, stage by stage against the last one read.
    if let Some(before) = &other.before {
        for (si, stage) in now.stages.iter().enumerate() {
            let new: Vec<(usize, &Step)> = steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.stage == si && !s.config_only())
                .collect();
            let old: Vec<&Step> = before
                .steps
                .iter()
                .filter(|s| s.stage == si && !s.config_only())
                .collect();
            // A base that expands differently (a global `ARG`) changes the `FROM` too.
            let base_changed = before.stages.get(si).map(|b| &b.base) != Some(&stage.base);
            let first = if base_changed {
                Some(0)
            } else {
                (0..new.len()).find(|&k| old.get(k).is_none_or(|o| o.key != new[k].1.key))
            };
            let Some(k) = first.filter(|&k| k < new.len()) else {
                continue;
            };
            let (i, s) = new[k];
            let why = if old.get(k).is_none() {
                format!("{} is new", describe(s))
            } else {
                format!("{} changed", describe(s))
            };
            if matches!(s.keyword.as_str(), "ENV" | "ARG" | "USER" | "SHELL") {
                // Only a `RUN` sees these.
                if let Some((j, _)) = new[k..].iter().find(|(_, s)| s.keyword == "RUN") {
                    cause(*j, why);
                }
            } else {
                cause(i, why);
            }
        }
    } else if other.dockerfile_unknown {
        notes.push(
            "the Dockerfile changed and the last build's copy was not recorded: cannot tell which steps re-run"
                .to_string(),
        );
        for (i, s) in steps.iter().enumerate() {
            if s.keyword == "FROM" {
                unknown.insert(i, "the Dockerfile changed".into());
            }
        }
    }

    // Build arguments a `RUN` sees in its environment.
    for (i, s) in steps.iter().enumerate() {
        if let Some(a) = s.args.iter().find(|a| other.args.contains(a)) {
            cause(i, format!("build argument `{a}` changed"));
        }
    }
    // Images with a new ID.
    for (i, s) in steps.iter().enumerate() {
        for r in &s.reads {
            if let StepRead::Named(n) = r {
                if other.images.contains(n) {
                    cause(i, format!("image `{n}` changed"));
                }
            }
        }
    }
    for (si, _) in now.stages.iter().enumerate() {
        let mut root = si;
        while let Some(b) = stage_base(now, root) {
            root = b;
        }
        if !other.image_configs.contains(&now.stages[root].base) {
            continue;
        }
        if let Some((i, _)) = steps
            .iter()
            .enumerate()
            .find(|(_, s)| s.stage == si && s.keyword == "RUN")
        {
            cause(
                i,
                format!(
                    "image `{}` has another environment, user, working directory or shell",
                    now.stages[root].base
                ),
            );
        }
    }
    // What cbuild cannot see.
    for (i, s) in steps.iter().enumerate() {
        if s.keyword == "FROM" && other.newly_reached.contains(&s.stage) {
            unknown.insert(i, "the last build's target did not build this stage".into());
        }
    }
    if let Some(syntax) = now.syntax.as_deref().filter(|s| !standard_frontend(s)) {
        notes.push(format!(
            "the Dockerfile is built by the frontend `{syntax}` (`# syntax=`), whose cache keys cbuild does not know: cannot tell"
        ));
        for (i, s) in steps.iter().enumerate() {
            if s.keyword == "FROM" {
                unknown.insert(i, format!("frontend `{syntax}`"));
            }
        }
    }
    for (i, s) in steps.iter().enumerate() {
        if !s.known() {
            notes.push(format!(
                "line {}: `{}` is not an instruction cbuild knows: cannot tell from there on",
                s.line, s.keyword
            ));
            unknown.insert(i, format!("unknown instruction at line {}", s.line));
        }
        for r in &s.reads {
            if let StepRead::Remote(u) = r {
                unknown.insert(i, format!("BuildKit fetches `{u}` itself"));
            }
        }
    }

    // Along each stage, and from stage to stage.
    let mut last: Vec<Flow> = vec![Flow::Clean; now.stages.len()];
    let mut out = Vec::new();
    for (si, stage) in now.stages.iter().enumerate() {
        let mut flow = stage_base(now, si)
            .map(|b| match &last[b] {
                Flow::Clean => Flow::Clean,
                Flow::Runs(_) => Flow::Runs(format!("its base stage `{}` re-runs", label(now, b))),
                Flow::Unknown(w) => Flow::Unknown(w.clone()),
            })
            .unwrap_or(Flow::Clean);
        for (i, s) in steps.iter().enumerate().filter(|(_, s)| s.stage == si) {
            let from_stage = s.reads.iter().find_map(|r| match r {
                StepRead::Stage(j) => match &last[*j] {
                    Flow::Clean => None,
                    f => Some((*j, f.clone())),
                },
                _ => None,
            });
            let mut is_cause = false;
            flow = if let Some(why) = causes.get(&i) {
                is_cause = true;
                Flow::Runs(why.clone())
            } else if let Flow::Runs(_) = flow {
                flow
            } else if let Some((j, Flow::Runs(_))) = &from_stage {
                is_cause = true;
                Flow::Runs(format!(
                    "copies from stage `{}`, which re-runs",
                    label(now, *j)
                ))
            } else if let Some(why) = unknown.get(&i) {
                Flow::Unknown(why.clone())
            } else if let Some((_, Flow::Unknown(w))) = from_stage {
                Flow::Unknown(w)
            } else {
                flow
            };
            let Some(n) = s.number else { continue };
            let (verdict, reason) = if !stage.reachable {
                (Verdict::NotReached, None)
            } else {
                match &flow {
                    Flow::Clean => (Verdict::Cached, None),
                    Flow::Runs(w) => (Verdict::Runs, Some(w.clone())),
                    Flow::Unknown(w) => (Verdict::CannotTell, Some(w.clone())),
                }
            };
            let prefix = match stage.label.as_str() {
                "" => format!("{n}/{}", stage.numbered),
                l => format!("{l} {n}/{}", stage.numbered),
            };
            out.push(StepVerdict {
                stage: stage.label.clone(),
                step: prefix,
                line: s.line,
                instruction: s.text.clone(),
                verdict,
                reason,
                cause: is_cause && verdict == Verdict::Runs,
            });
            // Later steps of the stage follow this one.
            if let Flow::Runs(_) = flow {
                if is_cause {
                    flow = Flow::Runs(format!("follows {}, which re-runs", describe(s)));
                }
            }
        }
        last[si] = flow;
    }
    Prediction {
        changes: groups,
        steps: out,
        notes,
    }
}

/// The stage a stage is built on, if it is one.
fn stage_base(u: &ContextUse, si: usize) -> Option<usize> {
    let base = u.stages[si].base.to_lowercase();
    (0..si).find(|&j| u.stages[j].name.as_deref() == Some(base.as_str()))
}

fn label(u: &ContextUse, si: usize) -> String {
    match &u.stages[si].name {
        Some(n) => n.clone(),
        None => format!("stage-{si}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The operations
// ---------------------------------------------------------------------------------------------

/// Why a service's next build does what it does.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WhyReport {
    /// The service.
    pub service: String,
    /// `fresh`, `stale`, `not built` or `unknown` (as `cbuild status`).
    pub state: String,
    /// What made it stale.
    pub reason: Option<String>,
    /// The prediction (empty for a fresh service).
    #[serde(flatten)]
    pub prediction: Prediction,
}

/// Errors of `cbuild why`.
#[derive(Debug, thiserror::Error)]
pub enum WhyError {
    /// The selection or a `build:` section is wrong.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

fn selected<'a>(builds: &'a [ServiceBuild], opts: &BuildOptions) -> Vec<&'a ServiceBuild> {
    builds
        .iter()
        .filter(|b| opts.services.is_empty() || opts.services.contains(&b.service))
        .collect()
}

/// Predicts, for each selected service, what its next build re-runs. No solve.
pub async fn why(
    project: &Project,
    opts: &BuildOptions,
    engine: &Engine,
) -> Result<Vec<WhyReport>, WhyError> {
    let builds = plan(project, opts)?;
    let mut out = Vec::new();
    for b in selected(&builds, opts) {
        out.push(why_one(b, engine).await);
        b.save_hashes();
    }
    Ok(out)
}

async fn why_one(b: &ServiceBuild, engine: &Engine) -> WhyReport {
    let args = build_args(b);
    let text = dockerfile_text(b);
    let now = text.as_deref().and_then(|t| read_dockerfile(t, b, &args));
    let report = |state: &str, reason: Option<String>, prediction| WhyReport {
        service: b.service.clone(),
        state: state.to_string(),
        reason,
        prediction,
    };
    let Some(now) = now else {
        return report(
            "unknown",
            Some("cbuild cannot read the Dockerfile: cannot tell".into()),
            Prediction::default(),
        );
    };
    let all = |verdict, reason: Option<String>| Prediction {
        steps: predict(&now, &[], &OtherChanges::default())
            .steps
            .into_iter()
            .map(|mut s| {
                if s.verdict != Verdict::NotReached {
                    s.verdict = verdict;
                    s.reason = reason.clone();
                }
                s
            })
            .collect(),
        ..Default::default()
    };
    match fresh::check(b, engine).await {
        Freshness::UpToDate { .. } => report("fresh", None, all(Verdict::Cached, None)),
        Freshness::NotBuilt => {
            let why = if b.record.is_none() {
                "cbuild never skips this build (remote sources, a tar transport or an unreadable Dockerfile): cannot tell"
            } else {
                "no build recorded: cannot tell what BuildKit still has cached"
            };
            report(
                "not built",
                Some(why.to_string()),
                all(Verdict::CannotTell, Some(why.to_string())),
            )
        }
        Freshness::Stale(reason) if b.force => report(
            "stale",
            Some(reason.clone()),
            all(Verdict::Runs, Some(reason)),
        ),
        Freshness::Stale(reason) => {
            let last = load_last(b);
            let changes = fresh::changes(b).await.unwrap_or_default();
            let mut other = OtherChanges::default();
            let dockerfile_changed = changes
                .iter()
                .any(|(l, c)| l == "dockerfile" && !c.is_empty());
            match &last {
                Some(l) => {
                    if l.dockerfile.as_deref() != text.as_deref() {
                        other.before = l
                            .dockerfile
                            .as_deref()
                            .and_then(|t| read_dockerfile(t, b, &l.args));
                        other.dockerfile_unknown = other.before.is_none();
                    }
                    let keys: std::collections::BTreeSet<&String> =
                        l.args.keys().chain(args.keys()).collect();
                    other.args = keys
                        .into_iter()
                        .filter(|k| l.args.get(*k) != args.get(*k))
                        .cloned()
                        .collect();
                    let bases = fresh::base_ids(engine, &b.bases).await;
                    let now_images = base_images(engine, &b.bases).await;
                    // Measured: the graph driver's BuildKit caches a `FROM` on the layers,
                    // so a config-only change re-runs only `RUN`s; on the containerd image
                    // store every step on an image with a new ID re-runs.
                    let by_layers = match engine.version().await {
                        Ok(v) => !v.containerd_store,
                        Err(_) => false,
                    };
                    for (name, id) in &bases {
                        if l.bases.get(name).is_none_or(|old| old == id) {
                            continue;
                        }
                        match (l.base_images.get(name), now_images.get(name)) {
                            (Some(old), Some(new))
                                if by_layers
                                    && !old.layers.is_empty()
                                    && old.layers == new.layers =>
                            {
                                if old.run_config != new.run_config {
                                    other.image_configs.push(name.clone());
                                }
                            }
                            _ => other.images.push(name.clone()),
                        }
                    }
                }
                None => other.dockerfile_unknown = dockerfile_changed,
            }
            let target = b.solve.frontend_attrs.get("target");
            if let Some(l) = last.as_ref().filter(|l| l.target.as_ref() != target) {
                let text = l
                    .dockerfile
                    .as_deref()
                    .or(text.as_deref())
                    .unwrap_or_default();
                match read_for(text, l.target.as_deref(), &l.args) {
                    Some(old) => {
                        other.newly_reached = (0..now.stages.len())
                            .filter(|&i| {
                                now.stages[i].reachable
                                    && old.stages.get(i).is_none_or(|s| !s.reachable)
                            })
                            .collect();
                    }
                    None => other.newly_reached = (0..now.stages.len()).collect(),
                }
            }
            let mut p = predict(&now, &changes, &other);
            if last.is_none() && reason.contains("build options or base images") {
                p.notes.push(
                    "build options or base images changed, and the last build's were not recorded: cannot tell which steps re-run"
                        .into(),
                );
            }
            if p.running().next().is_none()
                && !p.steps.iter().any(|s| s.verdict == Verdict::CannotTell)
            {
                p.notes.push(format!(
                    "{reason}, but no step reads what changed: BuildKit takes every step from the cache and only the image is written again"
                ));
            }
            report("stale", Some(reason), p)
        }
    }
}

/// What the last build of a service did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LastReport {
    /// The service.
    pub service: String,
    /// The record, when there is one.
    pub last: Option<LastBuild>,
}

/// The last build's steps of each selected service.
pub fn last(project: &Project, opts: &BuildOptions) -> Result<Vec<LastReport>, WhyError> {
    let builds = plan(project, opts)?;
    Ok(selected(&builds, opts)
        .into_iter()
        .map(|b| LastReport {
            service: b.service.clone(),
            last: load_last(b),
        })
        .collect())
}

/// Splits a BuildKit step name into its stage label and number (`[build 2/5] RUN x` gives
/// `("build", 2)`), skipping a platform; `None` for names without a step number
/// (`[internal] …`).
pub fn step_of(name: &str) -> Option<(String, usize)> {
    let inner = name.strip_prefix('[')?.split(']').next()?;
    let words: Vec<&str> = inner.split_whitespace().collect();
    let (number, _) = words.last()?.split_once('/')?;
    let number = number.parse().ok()?;
    let stage = match words.len() {
        0 | 1 => String::new(),
        n if words[n - 2].contains('/') => String::new(),
        n => words[n - 2].to_string(),
    };
    Some((stage, number))
}

// ---------------------------------------------------------------------------------------------
// Advice
// ---------------------------------------------------------------------------------------------

/// One piece of cache advice. cbuild never changes the Dockerfile itself.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Advice {
    /// Which rule: `deps-after-source`, `cache-bust-arg`, `heavy-context`, `cache-mount`.
    pub rule: &'static str,
    /// The Dockerfile line it is about.
    pub line: usize,
    /// What to do, and why.
    pub message: String,
    /// What it cost in the last build, in seconds, when recorded.
    pub seconds: Option<f64>,
}

/// Dependency manifests that let an install step be cached apart from the sources.
const MANIFESTS: &[&str] = &[
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "requirements.txt",
    "pyproject.toml",
    "poetry.lock",
    "Pipfile",
    "Pipfile.lock",
    "Cargo.toml",
    "Cargo.lock",
    "go.mod",
    "go.sum",
    "Gemfile",
    "Gemfile.lock",
    "composer.json",
    "composer.lock",
];

/// Package managers whose install steps re-run with the sources, and the cache directory a
/// `RUN --mount=type=cache` would keep for them (`None`: no well-known one).
const INSTALLERS: &[(&str, Option<&str>)] = &[
    (r"\bnpm\s+(ci|install|i)\b", Some("/root/.npm")),
    (
        r"\byarn(\s+install)?(\s|$|&|;)",
        Some("/usr/local/share/.cache/yarn"),
    ),
    (
        r"\bpnpm\s+(i|install)\b",
        Some("/root/.local/share/pnpm/store"),
    ),
    (r"\bpip3?\s+install\b", Some("/root/.cache/pip")),
    (r"\bpoetry\s+install\b", Some("/root/.cache/pypoetry")),
    (
        r"\bcargo\s+(build|fetch|install)\b",
        Some("/usr/local/cargo/registry"),
    ),
    (
        r"\bgo\s+(mod\s+download|build)\b",
        Some("/root/.cache/go-build"),
    ),
    (r"\bbundle\s+install\b", None),
    (r"\bcomposer\s+install\b", None),
    (r"\bapt-get\s+install\b", Some("/var/cache/apt")),
];

fn installer(run: &str) -> Option<(&'static str, Option<&'static str>)> {
    INSTALLERS.iter().find_map(|(re, cache)| {
        let matched = regex::Regex::new(re).ok()?.find(run)?;
        Some((re_name(matched.as_str()), *cache))
    })
}

fn re_name(m: &str) -> &'static str {
    let first = m.split_whitespace().next().unwrap_or(m);
    match first {
        "npm" => "npm",
        "yarn" => "yarn",
        "pnpm" => "pnpm",
        "pip" | "pip3" => "pip",
        "poetry" => "poetry",
        "cargo" => "cargo",
        "go" => "go",
        "bundle" => "bundle",
        "composer" => "composer",
        _ => "apt-get",
    }
}

/// Names that mark a build argument meant to defeat the cache.
fn cache_bust_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace(['_', '-'], "");
    [
        "cachebust",
        "bustcache",
        "builddate",
        "buildtime",
        "buildtimestamp",
        "timestamp",
        "nocache",
    ]
    .iter()
    .any(|k| n.contains(k))
        || n == "date"
        || n == "now"
}

fn uses_var(text: &str, name: &str) -> bool {
    text.contains(&format!("${name}")) || text.contains(&format!("${{{name}"))
}

/// The seconds a step took in `last`, and whether it ran.
fn measured(u: &ContextUse, s: &Step, last: Option<&LastBuild>) -> Option<f64> {
    let label = &u.stages[s.stage].label;
    let n = s.number?;
    last?
        .steps
        .iter()
        .find(|r| step_of(&r.name).is_some_and(|(l, k)| &l == label && k == n))
        .and_then(|r| r.seconds)
}

/// Seconds the non-cached steps of a stage from step `from_number` on took in `last`.
fn measured_from(
    u: &ContextUse,
    stage: usize,
    from_number: usize,
    last: Option<&LastBuild>,
) -> Option<f64> {
    let label = &u.stages[stage].label;
    let last = last?;
    let mut total = None;
    for r in &last.steps {
        if let Some((l, k)) = step_of(&r.name) {
            if &l == label && k >= from_number && !r.cached {
                *total.get_or_insert(0.0) += r.seconds.unwrap_or(0.0);
            }
        }
    }
    total
}

/// What the context holds that the advice names.
#[derive(Clone, Debug, Default)]
pub struct ContextFacts {
    /// Dependency manifests at the context root.
    pub manifests: Vec<String>,
    /// Heavy directories sent with no ignore file (path, bytes).
    pub heavy: Vec<(String, u64)>,
}

/// Cache advice for a Dockerfile. Pure: `facts` and `last` carry what was read.
pub fn advise_dockerfile(
    u: &ContextUse,
    facts: &ContextFacts,
    last: Option<&LastBuild>,
    changed_args: &[String],
) -> Vec<Advice> {
    let mut out = Vec::new();
    let reachable: Vec<&Step> = u
        .steps
        .iter()
        .filter(|s| u.stages[s.stage].reachable)
        .collect();
    for (k, s) in reachable.iter().enumerate() {
        if s.keyword != "RUN" {
            continue;
        }
        let Some((tool, cache)) = installer(&s.text) else {
            continue;
        };
        // A whole-context COPY before it in its stage.
        let whole = reachable[..k]
            .iter()
            .rev()
            .take_while(|p| p.stage == s.stage)
            .find(|p| {
                matches!(p.keyword.as_str(), "COPY" | "ADD")
                    && p.reads.iter().any(|r| r == &StepRead::Context(".".into()))
            });
        if let Some(copy) = whole {
            let manifests = if facts.manifests.is_empty() {
                "the dependency manifests".to_string()
            } else {
                facts
                    .manifests
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(Advice {
                rule: "deps-after-source",
                line: s.line,
                message: format!(
                    "`{}` ({tool}) comes after `{}` (line {}), so any source change re-runs it: COPY {manifests} first, run the install, then copy the rest",
                    short(&s.text),
                    short(&copy.text),
                    copy.line
                ),
                seconds: measured(u, s, last),
            });
        }
        if let Some(dir) = cache.filter(|_| !s.text.contains("type=cache")) {
            out.push(Advice {
                rule: "cache-mount",
                line: s.line,
                message: format!(
                    "`{}` downloads again whenever it re-runs: `RUN --mount=type=cache,target={dir} …` keeps {tool}'s cache between builds",
                    short(&s.text)
                ),
                seconds: measured(u, s, last),
            });
        }
    }
    for (k, s) in reachable.iter().enumerate() {
        if s.keyword != "ARG" {
            continue;
        }
        for word in s.text["ARG".len()..].split_whitespace() {
            let name = word.split('=').next().unwrap_or(word);
            let later_run = reachable[k + 1..]
                .iter()
                .take_while(|p| p.stage == s.stage)
                .find(|p| {
                    p.keyword == "RUN"
                        && (uses_var(&p.text, name) || changed_args.iter().any(|a| a == name))
                });
            let Some(run) = later_run else { continue };
            let busting = cache_bust_name(name) && uses_var(&run.text, name);
            let changed = changed_args.iter().any(|a| a == name);
            if !busting && !changed {
                continue;
            }
            let why = if changed {
                format!("`{name}` changed since the last build")
            } else {
                format!("`{name}` looks like a cache-bust argument")
            };
            out.push(Advice {
                rule: "cache-bust-arg",
                line: s.line,
                message: format!(
                    "{why}: every change re-runs line {} `{}` and all after it. cbuild already rebuilds exactly when content changes, so a cache-bust value is not needed; drop it, or pass a value that changes only when the result should",
                    run.line,
                    short(&run.text)
                ),
                seconds: run.number.and_then(|n| measured_from(u, run.stage, n, last)),
            });
        }
    }
    if !facts.heavy.is_empty() {
        if let Some(copy) = reachable.iter().find(|s| {
            matches!(s.keyword.as_str(), "COPY" | "ADD")
                && s.reads.iter().any(|r| r == &StepRead::Context(".".into()))
        }) {
            let dirs: Vec<String> = facts
                .heavy
                .iter()
                .take(5)
                .map(|(p, b)| format!("`{p}` ({})", human_bytes(*b)))
                .collect();
            out.push(Advice {
                rule: "heavy-context",
                line: copy.line,
                message: format!(
                    "`{}` sends {} with every build and re-runs on any change in them; list them in a `.dockerignore` (`cbuild context` shows what is sent)",
                    short(&copy.text),
                    dirs.join(", ")
                ),
                seconds: None,
            });
        }
    }
    out.sort_by_key(|a| a.line);
    out
}

fn human_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= MIB {
        format!("{:.1} MiB", n as f64 / MIB)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// Advice for one service.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdviceReport {
    /// The service.
    pub service: String,
    /// The Dockerfile (`dockerfile_inline` for an inline one).
    pub dockerfile: String,
    /// The advice, by line.
    pub advice: Vec<Advice>,
    /// What limits it.
    pub notes: Vec<String>,
}

/// Cache advice for each selected service, from its Dockerfile, its context and its last
/// build. Reads files; changes none.
pub fn advise(project: &Project, opts: &BuildOptions) -> Result<Vec<AdviceReport>, WhyError> {
    let builds = plan(project, opts)?;
    let mut out = Vec::new();
    for b in selected(&builds, opts) {
        out.push(advise_one(project, b, opts));
    }
    Ok(out)
}

fn advise_one(project: &Project, b: &ServiceBuild, opts: &BuildOptions) -> AdviceReport {
    let args = build_args(b);
    let name = dockerfile_name(b);
    let mut report = AdviceReport {
        service: b.service.clone(),
        dockerfile: name,
        advice: Vec::new(),
        notes: Vec::new(),
    };
    let Some(u) = dockerfile_text(b).and_then(|t| read_dockerfile(&t, b, &args)) else {
        report
            .notes
            .push("cbuild cannot read the Dockerfile: no advice".into());
        return report;
    };
    if let Some(syntax) = u.syntax.as_deref().filter(|s| !standard_frontend(s)) {
        report.notes.push(format!(
            "built by the frontend `{syntax}`: advice assumes it reads the Dockerfile as the standard one does"
        ));
    }
    for s in u.steps.iter().filter(|s| !s.known()) {
        report.notes.push(format!(
            "line {}: `{}` is not an instruction cbuild knows; advice covers the rest",
            s.line, s.keyword
        ));
    }
    let last = load_last(b);
    let changed: Vec<String> = match &last {
        Some(l) => l
            .args
            .keys()
            .chain(args.keys())
            .filter(|k| l.args.get(*k) != args.get(*k))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let mut facts = ContextFacts {
        manifests: manifests(b),
        ..Default::default()
    };
    let inspect = super::inspect::inspect(
        project,
        &super::inspect::InspectOptions {
            services: vec![b.service.clone()],
            build_args: opts.build_args.clone(),
            environment: opts.environment.clone(),
            cache_dir: opts.cache_dir.clone(),
            explain: None,
            top_dirs: 0,
        },
    );
    match inspect {
        Ok(reports) => {
            for r in reports {
                facts
                    .heavy
                    .extend(r.heavy_dirs.into_iter().map(|d| (d.path, d.bytes)));
            }
        }
        Err(e) => report.notes.push(format!(
            "cannot look at the context ({e}): heavy paths not checked"
        )),
    }
    report.advice = advise_dockerfile(&u, &facts, last.as_ref(), &changed);
    report
}

/// The dependency manifests at the root of a service's context.
fn manifests(b: &ServiceBuild) -> Vec<String> {
    match b.session.locals.get("context") {
        Some(LocalDir::Tracked(t)) => MANIFESTS
            .iter()
            .filter(|m| t.root.join(m).is_file())
            .map(|m| m.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// How much advice a service's Dockerfile has, from what is cheap to read (no context walk,
/// so heavy paths are left out): for the hint after a build.
pub fn advice_count(b: &ServiceBuild) -> usize {
    let args = build_args(b);
    let Some(u) = dockerfile_text(b).and_then(|t| read_dockerfile(&t, b, &args)) else {
        return 0;
    };
    let facts = ContextFacts {
        manifests: manifests(b),
        ..Default::default()
    };
    advise_dockerfile(&u, &facts, None, &[]).len()
}

fn dockerfile_name(b: &ServiceBuild) -> String {
    let name = b
        .solve
        .frontend_attrs
        .get("filename")
        .cloned()
        .unwrap_or_else(|| "Dockerfile".into());
    match b.session.locals.get("dockerfile") {
        Some(LocalDir::Tracked(t)) => t.root.join(&name).display().to_string(),
        Some(LocalDir::Disk(d)) => d.join(&name).display().to_string(),
        Some(LocalDir::Virtual(_)) => format!("services.{}.build.dockerfile_inline", b.service),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(finished: u64) -> HistoryEntry {
        HistoryEntry {
            finished,
            ok: true,
            seconds: Some(1.5),
            steps_run: 1,
            steps_cached: 2,
            context_bytes_sent: Some(10),
            context_files_sent: Some(1),
            trigger: vec!["changed a".into()],
            triggers: 1,
        }
    }

    #[test]
    fn history_keeps_the_last_builds_and_starts_anew_when_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("svc.json");
        for i in 0..(HISTORY_LEN as u64 + 3) {
            append_history(&record, entry(i)).unwrap();
        }
        let list = read_history(&history_path(&record)).unwrap();
        assert_eq!(list.len(), HISTORY_LEN);
        assert_eq!(list.first().unwrap().finished, 3, "the oldest go first");
        assert_eq!(list.last().unwrap().finished, HISTORY_LEN as u64 + 2);

        std::fs::write(history_path(&record), "{\"finished\": 1}\n").unwrap();
        let why = read_history(&history_path(&record)).unwrap_err();
        assert!(why.starts_with("line 1:"), "{why}");
        append_history(&record, entry(99)).unwrap();
        assert_eq!(
            read_history(&history_path(&record)).unwrap(),
            vec![entry(99)]
        );
    }

    #[test]
    fn only_numbered_steps_count() {
        let step = |name: &str, cached: bool| StepRecord {
            name: name.into(),
            cached,
            seconds: None,
            failed: false,
        };
        let steps = [
            step("[internal] load build definition from Dockerfile", false),
            step("[1/3] FROM docker.io/library/cbuild-base", true),
            step("[2/3] COPY a /a", true),
            step("[3/3] RUN x", false),
            step("exporting to image", false),
        ];
        assert_eq!(step_counts(&steps), (1, 1));
    }

    fn analyze(df: &str) -> ContextUse {
        dockerfile::analyze(df, None, &HashMap::new()).unwrap()
    }

    fn changed(paths: &[&str]) -> Vec<(String, Vec<FileChange>)> {
        vec![(
            "context".into(),
            paths
                .iter()
                .map(|p| FileChange {
                    kind: "changed",
                    path: p.to_string(),
                })
                .collect(),
        )]
    }

    fn runs(p: &Prediction) -> Vec<String> {
        p.running().map(|s| s.step.clone()).collect()
    }

    #[test]
    fn a_changed_source_reruns_its_copy_and_what_follows() {
        let u = analyze("FROM a\nCOPY package.json /\nRUN npm ci\nCOPY src /src\nRUN build\n");
        let p = predict(&u, &changed(&["src/main.js"]), &OtherChanges::default());
        assert_eq!(runs(&p), ["4/5", "5/5"]);
        assert!(p.steps[3].cause && !p.steps[4].cause);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].line, Some(4));
        let p = predict(&u, &changed(&["package.json"]), &OtherChanges::default());
        assert_eq!(runs(&p), ["2/5", "3/5", "4/5", "5/5"]);
        let p = predict(&u, &changed(&["README.md"]), &OtherChanges::default());
        assert!(runs(&p).is_empty());
        assert_eq!(p.changes[0].line, None);
    }

    #[test]
    fn stages_propagate_only_where_they_are_read() {
        let df = "FROM a AS deps\nCOPY lock /\nRUN install\n\
                  FROM a AS build\nCOPY src /src\nRUN make\n\
                  FROM a AS unused\nCOPY src /src\n\
                  FROM deps\nCOPY --from=build /out /out\nCOPY conf /conf\n";
        let u = analyze(df);
        let p = predict(&u, &changed(&["src/a.c"]), &OtherChanges::default());
        assert_eq!(
            runs(&p),
            ["build 2/3", "build 3/3", "stage-3 1/2", "stage-3 2/2"]
        );
        let unused: Vec<Verdict> = p
            .steps
            .iter()
            .filter(|s| s.stage == "unused")
            .map(|s| s.verdict)
            .collect();
        assert_eq!(unused, [Verdict::NotReached; 2]);
        // The base stage re-running re-runs the stage built on it.
        let p = predict(&u, &changed(&["lock"]), &OtherChanges::default());
        assert_eq!(
            runs(&p),
            ["deps 2/3", "deps 3/3", "stage-3 1/2", "stage-3 2/2"]
        );
    }

    #[test]
    fn copy_patterns_are_path_match_not_dockerignore() {
        assert!(reads_path(".", "a/b"));
        assert!(reads_path("src", "src/a/b.rs"));
        assert!(!reads_path("src", "srcx/a"));
        assert!(reads_path("*.json", "package.json"));
        assert!(!reads_path("*.json", "sub/package.json"));
        assert!(reads_path("src/*", "src/a/b.rs"));
        // `**` is `*` twice: it does not cross `/`.
        assert!(!reads_path("**/*.json", "a/b/c.json"));
        assert!(reads_path("**/*.json", "a/c.json"));
        assert!(reads_path("ap[pq]", "app/x"));
    }

    #[test]
    fn dockerfile_edits_rerun_from_the_edit() {
        let old = analyze("FROM a\nCOPY x /x\nENV A=1\nCOPY y /y\nRUN one\nLABEL a=b\n");
        let now = analyze("FROM a\nCOPY x /x\nENV A=2\nCOPY y /y\nRUN one\nLABEL a=c\n");
        let other = OtherChanges {
            before: Some(old.clone()),
            ..Default::default()
        };
        // The ENV reaches only the RUN.
        assert_eq!(runs(&predict(&now, &[], &other)), ["4/4"]);
        // A label re-runs nothing.
        let now = analyze("FROM a\nCOPY x /x\nENV A=1\nCOPY y /y\nRUN one\nLABEL a=c\n");
        let other = OtherChanges {
            before: Some(old),
            ..Default::default()
        };
        assert!(runs(&predict(&now, &[], &other)).is_empty());
    }

    #[test]
    fn args_images_and_unknowns() {
        let u = analyze("FROM base\nARG V\nCOPY a /a\nRUN echo $V\n");
        let p = predict(
            &u,
            &[],
            &OtherChanges {
                args: vec!["V".into()],
                ..Default::default()
            },
        );
        assert_eq!(runs(&p), ["3/3"]);
        let p = predict(
            &u,
            &[],
            &OtherChanges {
                images: vec!["base".into()],
                ..Default::default()
            },
        );
        assert_eq!(runs(&p), ["1/3", "2/3", "3/3"]);
        let u = analyze("FROM base\nADD https://example.com/x /x\nRUN a\n");
        let p = predict(&u, &[], &OtherChanges::default());
        let v: Vec<Verdict> = p.steps.iter().map(|s| s.verdict).collect();
        assert_eq!(
            v,
            [Verdict::Cached, Verdict::CannotTell, Verdict::CannotTell]
        );
        let u = analyze("# syntax=example/frontend\nFROM base\nRUN a\n");
        let p = predict(&u, &[], &OtherChanges::default());
        assert!(p.steps.iter().all(|s| s.verdict == Verdict::CannotTell));
        assert_eq!(p.notes.len(), 1);
        let u = analyze("# syntax=docker/dockerfile:1.7\nFROM base\nRUN a\n");
        assert!(predict(&u, &[], &OtherChanges::default()).notes.is_empty());
    }

    #[test]
    fn named_contexts_and_bind_mounts() {
        let u = analyze(
            "FROM a\nRUN --mount=type=bind,source=tools,target=/t run\nCOPY --from=assets / /srv\n",
        );
        let p = predict(&u, &changed(&["tools/x"]), &OtherChanges::default());
        // The named context is a state of its own to BuildKit: the one stage gets a name.
        assert_eq!(runs(&p), ["stage-0 2/3", "stage-0 3/3"]);
        let named = vec![(
            "_ctx_assets".to_string(),
            vec![FileChange {
                kind: "added",
                path: "logo.png".into(),
            }],
        )];
        let p = predict(&u, &named, &OtherChanges::default());
        assert_eq!(runs(&p), ["stage-0 3/3"]);
        assert_eq!(p.changes[0].source, "context assets");
    }

    #[test]
    fn step_names() {
        assert_eq!(step_of("[build 2/5] RUN x"), Some(("build".into(), 2)));
        assert_eq!(step_of("[ 3/12] COPY a b"), Some((String::new(), 3)));
        assert_eq!(
            step_of("[linux/amd64 stage-1 1/2] FROM x"),
            Some(("stage-1".into(), 1))
        );
        assert_eq!(
            step_of("[linux/amd64 1/2] FROM x"),
            Some((String::new(), 1))
        );
        assert_eq!(step_of("[internal] load build context"), None);
    }

    fn rules(df: &str, facts: &ContextFacts, changed: &[&str]) -> Vec<(&'static str, usize)> {
        let changed: Vec<String> = changed.iter().map(|s| s.to_string()).collect();
        advise_dockerfile(&analyze(df), facts, None, &changed)
            .into_iter()
            .map(|a| (a.rule, a.line))
            .collect()
    }

    #[test]
    fn install_after_whole_source_copy() {
        let facts = ContextFacts {
            manifests: vec!["package.json".into()],
            ..Default::default()
        };
        let bad = "FROM node\nCOPY . .\nRUN --mount=type=cache,target=/root/.npm npm ci\n";
        assert_eq!(rules(bad, &facts, &[]), [("deps-after-source", 3)]);
        let a = advise_dockerfile(&analyze(bad), &facts, None, &[]);
        assert!(a[0].message.contains("`package.json`"), "{}", a[0].message);
        let good = "FROM node\nCOPY package.json .\nRUN --mount=type=cache,target=/root/.npm npm ci\nCOPY . .\n";
        assert!(rules(good, &facts, &[]).is_empty());
        // Another stage's COPY does not count.
        let other = "FROM node AS a\nCOPY . .\nFROM node\nRUN --mount=type=cache,target=/x pip install -r r.txt\nCOPY --from=a /x /x\n";
        assert!(rules(other, &facts, &[]).is_empty());
    }

    #[test]
    fn cache_mounts_for_package_managers() {
        let f = ContextFacts::default();
        assert_eq!(
            rules("FROM a\nRUN apt-get install -y curl\n", &f, &[]),
            [("cache-mount", 2)]
        );
        assert_eq!(
            rules("FROM a\nRUN pip install flask\n", &f, &[]),
            [("cache-mount", 2)]
        );
        assert!(rules(
            "FROM a\nRUN --mount=type=cache,target=/root/.cache/pip pip install flask\n",
            &f,
            &[]
        )
        .is_empty());
        assert!(rules("FROM a\nRUN echo npm is great\n", &f, &[]).is_empty());
    }

    #[test]
    fn cache_bust_args() {
        let f = ContextFacts::default();
        let df = "FROM a\nARG CACHE_BUST=1\nRUN echo $CACHE_BUST && make\n";
        assert_eq!(rules(df, &f, &[]), [("cache-bust-arg", 2)]);
        // Declared but never used by a RUN.
        assert!(rules("FROM a\nARG CACHE_BUST=1\nRUN make\n", &f, &[]).is_empty());
        // An ordinary name, unchanged.
        assert!(rules("FROM a\nARG VERSION=1\nRUN echo $VERSION\n", &f, &[]).is_empty());
        // Any argument that changed since the last build and reaches a RUN.
        assert_eq!(
            rules("FROM a\nARG VERSION=1\nRUN make\n", &f, &["VERSION"]),
            [("cache-bust-arg", 2)]
        );
    }

    #[test]
    fn heavy_paths_sent_by_a_whole_copy() {
        let f = ContextFacts {
            heavy: vec![("node_modules".into(), 50 << 20)],
            ..Default::default()
        };
        assert_eq!(
            rules("FROM a\nCOPY . /app\n", &f, &[]),
            [("heavy-context", 2)]
        );
        assert!(rules("FROM a\nCOPY src /app\n", &f, &[]).is_empty());
        assert!(rules("FROM a\nCOPY . /app\n", &ContextFacts::default(), &[]).is_empty());
    }

    #[test]
    fn costs_come_from_the_last_build() {
        let u = analyze("FROM a\nCOPY . .\nRUN npm ci\n");
        let last = LastBuild {
            steps: vec![
                StepRecord {
                    name: "[1/3] FROM a".into(),
                    cached: true,
                    seconds: None,
                    failed: false,
                },
                StepRecord {
                    name: "[3/3] RUN npm ci".into(),
                    cached: false,
                    seconds: Some(12.5),
                    failed: false,
                },
            ],
            ..Default::default()
        };
        let a = advise_dockerfile(&u, &ContextFacts::default(), Some(&last), &[]);
        assert!(a.iter().all(|a| a.seconds == Some(12.5)), "{a:?}");
    }

    #[test]
    fn an_unknown_instruction_limits_the_prediction() {
        let u = analyze("FROM a\nCOPY x /x\nFROBNICATE y\nRUN z\n");
        let p = predict(&u, &changed(&[]), &OtherChanges::default());
        let v: Vec<Verdict> = p.steps.iter().map(|s| s.verdict).collect();
        assert_eq!(v, [Verdict::Cached, Verdict::Cached, Verdict::CannotTell]);
        assert!(p.notes[0].contains("line 3"), "{:?}", p.notes);
        // A change before it is still certain.
        let p = predict(&u, &changed(&["x"]), &OtherChanges::default());
        assert_eq!(runs(&p), ["2/3", "3/3"]);
    }

    #[test]
    fn stages_a_new_target_reaches_are_cannot_tell() {
        let u = analyze("FROM a AS one\nRUN x\nFROM a AS two\nRUN y\n");
        let other = OtherChanges {
            newly_reached: vec![1],
            ..Default::default()
        };
        let p = predict(&u, &[], &other);
        let v: Vec<(&str, Verdict)> = p
            .steps
            .iter()
            .map(|s| (s.step.as_str(), s.verdict))
            .collect();
        assert_eq!(
            v,
            [
                ("one 1/2", Verdict::NotReached),
                ("one 2/2", Verdict::NotReached),
                ("two 1/2", Verdict::CannotTell),
                ("two 2/2", Verdict::CannotTell)
            ]
        );
    }
}
