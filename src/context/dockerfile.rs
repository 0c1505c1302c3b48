//! Reading a Dockerfile the way BuildKit's Dockerfile frontend does: the one reader of
//! Dockerfiles in cbuild.
//!
//! [`analyze`] takes the Dockerfile text, the target and the build arguments and yields what
//! the build will read:
//!
//! * the **stages**, each with its expanded base and whether the target depends on it;
//! * the **images** the build reads ([`ContextUse::images`]): `FROM` bases that are not stages,
//!   and images named by `COPY --from=` and `RUN --mount=…,from=`;
//! * the **remote sources** ([`ContextUse::remote_sources`]): `ADD` sources BuildKit fetches
//!   itself, in every form the frontend accepts (plain or JSON arguments, continuation lines,
//!   values given through `ARG`s and build arguments);
//! * the **frontend image** of a `# syntax=` directive or the `BUILDKIT_SYNTAX` build argument;
//! * the **context paths** it asks for, as sent in the `followpaths` of the main context's
//!   `FileSync.DiffCopy` call (`frontend/dockerfile/dockerfile2llb/convert.go`: `ctxPaths`,
//!   `filterPaths`, `normalizeContextPaths`; see PROTOCOL.md §3.9), with each use and its line.
//!
//! How it reads:
//!
//! * **Reading.** Parser directives at the top (`# escape=` picks `\` or `` ` ``, `# syntax=`
//!   names a frontend image; others are ignored), line continuations (the escape character at
//!   the end of a line; comment and blank lines inside a continued instruction are skipped), and
//!   heredocs (`<<EOF`, `<<-EOF`, quoted words) after `RUN`, `COPY` and `ADD`, whose bodies are
//!   skipped. Leading `--flag` words are flags; `COPY`/`ADD` arguments are a JSON array or
//!   whitespace-separated words.
//! * **Stages.** `FROM [--platform=…] image [AS name]`; the image is expanded with the global
//!   `ARG`s (those before the first `FROM`, overridden by build arguments), and when it names
//!   an earlier stage (case-insensitively) that stage is the base. Stage names are lower-cased
//!   and never expanded, as upstream.
//! * **Reachability.** From the target (by name, or the last stage when unset) through the base
//!   stage, `COPY --from=` (a stage name or a numeric index) and `RUN --mount=…,from=` (a stage
//!   name). Only reachable stages contribute paths (`isReachable` in convert.go).
//! * **Used paths.** Every source of `ADD` that is not an `http(s)://` or git URL, every source
//!   of `COPY` without `--from` (heredoc sources excepted), and the `source` of every
//!   `RUN --mount` without `from` whose type is not `cache` (which upstream gives an empty
//!   image), `secret` or `ssh`; a mount without `source` (a `tmpfs` one included, as upstream)
//!   uses the whole context. Sources are
//!   expanded like upstream's `ProcessWord` with the stage's `ARG`s and `ENV`s (ENV wins).
//! * **Normalisation.** Each path is `path.Join("/", p)`; if any is `/` the build uses the
//!   whole context ([`ContextUse::follow_paths`] is `None`), otherwise each becomes
//!   `path.Join(".", p)`, sorted and deduplicated. Wildcards are kept: fsutil expands them.
//!   When no reachable instruction uses the context, upstream passes no filter, but no
//!   operation depends on the main context either, so BuildKit never asks for it: that is
//!   `Some` of an empty list here (nothing is sent).
//! * **Limits.** A line longer than BuildKit's 65535 bytes, `${…}` substitutions nested more
//!   than [`MAX_NESTING`] deep, or expansions that add up to more than
//!   [`MAX_EXPANSION_BYTES`] are [`ErrorKind::TooLarge`] errors: BuildKit rejects the first,
//!   and the others are how a hostile file would make cbuild use unbounded memory and time.
//!
//! Known gaps, all of which can only make cbuild predict *more* paths than BuildKit asks for
//! or none of which matter to a plain `docker compose build`: `ENV`s of base images are not
//! known (a `$VAR` set only there expands to nothing), `ONBUILD` triggers of base images are
//! not run, a `# syntax=` frontend other than the standard one is assumed to behave the same,
//! named contexts (`additional_contexts`, which upstream lets replace an image or stage of the
//! same name) are not consulted, and special parameters (`$1`, `${@}`) are reported as
//! errors (the service is then never skipped).

use std::collections::{BTreeSet, HashMap};

use super::dockerignore::clean;

/// The longest line BuildKit's Dockerfile parser reads (a `bufio.Scanner` token, without the
/// newline); longer ones fail the build with "dockerfile line greater than max allowed size".
pub const MAX_LINE_BYTES: usize = 65535;

/// How deep `${A:-${B:-…}}` substitutions may nest. Real Dockerfiles nest two or three deep;
/// the bound keeps a hostile file from driving the recursive expansion without limit.
pub const MAX_NESTING: usize = 64;

/// How much text variable expansion may produce for one Dockerfile, over all its words.
/// `ARG B=$A$A` doubles a value per line, so without a bound a few dozen lines ask for
/// terabytes; BuildKit itself would run out of memory on them.
pub const MAX_EXPANSION_BYTES: usize = 16 << 20;

/// What kind of problem a [`DockerfileError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Something cbuild cannot read (BuildKit may or may not; it reports its own error).
    Invalid,
    /// Over one of the limits above: BuildKit cannot build it either, or cbuild refuses to
    /// spend unbounded memory on it. The build is stopped before anything is sent.
    TooLarge,
}

/// A Dockerfile cbuild cannot read, with the line to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DockerfileError {
    /// 1-based line of the instruction (its first line).
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// Whether it is over a limit.
    pub kind: ErrorKind,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, DockerfileError> {
    Err(DockerfileError {
        line,
        message: message.into(),
        kind: ErrorKind::Invalid,
    })
}

fn too_large<T>(line: usize, message: impl Into<String>) -> Result<T, DockerfileError> {
    Err(DockerfileError {
        line,
        message: message.into(),
        kind: ErrorKind::TooLarge,
    })
}

/// One stage of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `AS` name, lower-cased.
    pub name: Option<String>,
    /// The expanded `FROM` image (or stage name).
    pub base: String,
    /// Line of the `FROM`.
    pub line: usize,
    /// Whether the target depends on this stage.
    pub reachable: bool,
    /// The stage as BuildKit names it in step names (`[build 2/5] RUN …`): its name,
    /// `stage-N` when it has none, empty when the Dockerfile has one stage.
    pub label: String,
    /// How many numbered steps BuildKit counts in it (the `5` of `2/5`).
    pub numbered: usize,
}

/// What one instruction reads besides the state its stage has reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepRead {
    /// A path of the main context as normalised for `followpaths` (`.` is the whole
    /// context); `COPY`/`ADD` sources may be `filepath.Match` patterns (see [`reads_path`]).
    Context(String),
    /// The result of an earlier stage (`COPY --from=`, `RUN --mount=…,from=`, `FROM stage`
    /// is the stage's base, not a read).
    Stage(usize),
    /// An image, or a named context (`additional_contexts`) of that name.
    Named(String),
    /// A source BuildKit fetches itself.
    Remote(String),
}

/// One instruction of a stage, as the cache sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Index of the stage.
    pub stage: usize,
    /// First line of the instruction.
    pub line: usize,
    /// Upper-cased keyword.
    pub keyword: String,
    /// The instruction as written (continuation lines joined), without heredoc bodies.
    pub text: String,
    /// What decides its cache key in the Dockerfile: the text and any heredoc bodies.
    pub key: String,
    /// BuildKit's number for the vertex it makes (`2` of `[build 2/5]`); `None` for
    /// instructions that make none (`ENV`, `ARG`, `LABEL`, `CMD`…, `WORKDIR /`).
    pub number: Option<usize>,
    /// What it reads besides the stage's state.
    pub reads: Vec<StepRead>,
    /// For `RUN`: the `ARG`s declared in its stage before it (their values are in its
    /// environment, so a changed value re-runs it).
    pub args: Vec<String>,
}

impl Step {
    /// Whether the instruction only sets image configuration: it makes no vertex and no
    /// later step sees it, so changing it re-runs nothing.
    pub fn config_only(&self) -> bool {
        matches!(
            self.keyword.as_str(),
            "LABEL"
                | "CMD"
                | "ENTRYPOINT"
                | "EXPOSE"
                | "VOLUME"
                | "STOPSIGNAL"
                | "HEALTHCHECK"
                | "MAINTAINER"
                | "ONBUILD"
        )
    }

    /// Whether BuildKit knows the instruction.
    pub fn known(&self) -> bool {
        self.config_only()
            || matches!(
                self.keyword.as_str(),
                "FROM" | "RUN" | "COPY" | "ADD" | "ENV" | "ARG" | "USER" | "WORKDIR" | "SHELL"
            )
    }
}

/// Whether a `COPY`/`ADD` source or bind-mount source (`pattern`, normalised as in
/// [`StepRead::Context`]) reads the context file `path`. A source names a file or a directory
/// whose whole tree is read; with wildcards it is Go's `path.Match` against each path of the
/// tree, a matched directory again read whole (BuildKit `cache/contenthash` `Checksum` with
/// `Wildcard`). That is not `.dockerignore` semantics: `*` never crosses `/` and `**` is no
/// different from `*`, so [`glob_match`](super::dockerignore::glob_match) is used, not the
/// pattern matcher.
pub fn reads_path(pattern: &str, path: &str) -> bool {
    if pattern == "." || pattern == path {
        return true;
    }
    if path
        .strip_prefix(pattern)
        .is_some_and(|r| r.starts_with('/'))
    {
        return true;
    }
    if !pattern.contains(['*', '?', '[', '\\']) {
        return false;
    }
    let mut prefix_end = path.len();
    loop {
        let prefix = &path[..prefix_end];
        if super::dockerignore::glob_match(pattern, prefix).unwrap_or(false) {
            return true;
        }
        match prefix.rfind('/') {
            Some(i) => prefix_end = i,
            None => return false,
        }
    }
}

/// One instruction's use of the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathUse {
    /// The path as normalised by BuildKit (`path.Join(".", p)`; `.` for the whole context).
    pub path: String,
    /// Line of the instruction.
    pub line: usize,
    /// The instruction keyword (`COPY`, `ADD`, `RUN`).
    pub instruction: &'static str,
    /// Index of the stage.
    pub stage: usize,
}

/// An `ADD` source BuildKit fetches itself (a URL or a git repository): cbuild cannot see it
/// change, so a build that has one is never skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSource {
    /// The source as expanded.
    pub url: String,
    /// Line of the `ADD`.
    pub line: usize,
    /// Index of the stage.
    pub stage: usize,
}

/// What a Dockerfile build reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextUse {
    /// The `followpaths` BuildKit sends: `None` when the whole context is used (some path was
    /// the root); an empty list when the build never asks for the context at all.
    pub follow_paths: Option<Vec<String>>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// Index of the target stage.
    pub target: usize,
    /// Every use of a context path by a reachable stage, in Dockerfile order.
    pub uses: Vec<PathUse>,
    /// The images the build reads, in Dockerfile order and each once: `FROM` bases that are
    /// neither stages nor `scratch`, and images named by `COPY --from=` and
    /// `RUN --mount=…,from=`. Every stage counts, reachable or not, so nothing the build
    /// might read is left out.
    pub images: Vec<String>,
    /// `ADD` sources BuildKit fetches itself, of every stage.
    pub remote_sources: Vec<RemoteSource>,
    /// The frontend image the build runs instead of the built-in Dockerfile frontend: the
    /// `BUILDKIT_SYNTAX` build argument, else the `# syntax=` directive (its first word).
    pub syntax: Option<String>,
    /// Every instruction after the first `FROM` (each `FROM` included), in order, with what
    /// it reads: the model `cbuild why` predicts cache hits with.
    pub steps: Vec<Step>,
}

/// Reads `text` as BuildKit's Dockerfile frontend would for `target` (the last stage when
/// `None`) and `build_args`, and returns what the build reads.
pub fn analyze(
    text: &str,
    target: Option<&str>,
    build_args: &HashMap<String, String>,
) -> Result<ContextUse, DockerfileError> {
    let instructions = read_instructions(text)?;
    let x = Expander::new(instructions.escape);
    // Global (meta) `ARG`s: `None` for one declared without a value and not given.
    let mut global: HashMap<String, Option<String>> = HashMap::new();
    let mut stages: Vec<StageState> = Vec::new();
    // Stage names (lower-cased) to the first stage of that name: looked up per `FROM` and
    // `--from`, so a map keeps a file of many stages linear.
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut images: Vec<(usize, String)> = Vec::new();
    let mut remote_sources = Vec::new();
    for ins in &instructions.list {
        let line = ins.line;
        if ins.keyword == "FROM" {
            let s = parse_from(ins, &x, &Scope::Global(&global), &stages, &names)?;
            if let Some(n) = &s.name {
                names.entry(n.clone()).or_insert(stages.len());
            }
            let mut s = s;
            let mut reads = Vec::new();
            if s.base_stage.is_none() && !s.base.eq_ignore_ascii_case("scratch") {
                images.push((line, s.base.clone()));
                reads.push(StepRead::Named(s.base.clone()));
            }
            s.steps.push(step(stages.len(), ins, reads, Vec::new()));
            stages.push(s);
            continue;
        }
        let stage_index = stages.len().wrapping_sub(1);
        let Some(stage) = stages.last_mut() else {
            if ins.keyword == "ARG" {
                for (k, default) in parse_arg(ins, x.escape)? {
                    let default = match default {
                        Some(d) => Some(x.expand(&d, &Scope::Global(&global), line)?),
                        None => None,
                    };
                    let value = build_args.get(&k).cloned().or(default);
                    global.insert(k, value);
                }
                continue;
            }
            return err(
                line,
                format!("`{}` before the first `FROM`", ins.keyword.to_lowercase()),
            );
        };
        let mut reads = Vec::new();
        let args_before = stage.arg_order.clone();
        match ins.keyword.as_str() {
            "ARG" => {
                for (k, default) in parse_arg(ins, x.escape)? {
                    let default = match default {
                        Some(d) => Some(x.expand(&d, &Scope::Stage(stage), line)?),
                        None => None,
                    };
                    let value = build_args.get(&k).cloned().or(default).or_else(|| {
                        global
                            .get(&k)
                            .cloned()
                            .flatten()
                            .or_else(|| platform_arg(&k))
                    });
                    if !stage.arg_order.contains(&k) {
                        stage.arg_order.push(k.clone());
                    }
                    stage.args.insert(k, value);
                }
            }
            "ENV" => {
                for (k, v) in parse_env(ins, x.escape)? {
                    let v = x.expand(&v, &Scope::Stage(stage), line)?;
                    stage.env.insert(k, v);
                }
            }
            "COPY" | "ADD" => {
                let is_add = ins.keyword == "ADD";
                let (flags, rest) = split_flags(&ins.rest, line)?;
                let mut from = None;
                for (name, value) in &flags {
                    if name == "from" && !is_add {
                        let v = value.clone().unwrap_or_default();
                        from = Some(x.expand(&v, &Scope::Stage(stage), line)?);
                    }
                }
                let words = copy_words(&rest);
                if words.len() < 2 {
                    return err(
                        line,
                        format!(
                            "`{}` requires at least two arguments, but only one was provided; destination could not be determined",
                            ins.keyword.to_lowercase()
                        ),
                    );
                }
                let mut sources = Vec::new();
                for w in &words[..words.len() - 1] {
                    if heredoc_word(w).is_some() {
                        continue;
                    }
                    sources.push(x.expand(w, &Scope::Stage(stage), line)?);
                }
                match from {
                    Some(f) if !f.is_empty() => {
                        reads.push(StepRead::Named(f.clone()));
                        stage.deps.push(Dep::CopyFrom(f, line));
                    }
                    _ => {
                        for s in sources {
                            if is_add {
                                let kind = source_kind(&s);
                                if kind != SourceKind::Local {
                                    reads.push(StepRead::Remote(s.clone()));
                                    remote_sources.push(RemoteSource {
                                        url: s.clone(),
                                        line,
                                        stage: stage_index,
                                    });
                                }
                                if kind == SourceKind::Remote {
                                    continue;
                                }
                            }
                            reads.push(StepRead::Context(normalize_use(&s)));
                            stage
                                .uses
                                .push((s, line, if is_add { "ADD" } else { "COPY" }));
                        }
                    }
                }
            }
            "RUN" => {
                let (flags, _) = split_flags(&ins.rest, line)?;
                for (name, value) in &flags {
                    if name != "mount" {
                        continue;
                    }
                    let v = value.clone().unwrap_or_default();
                    let v = x.expand(&v, &Scope::Stage(stage), line)?;
                    let mount = parse_mount(&v).or_else(|m| err(line, m))?;
                    match mount.kind.as_str() {
                        "cache" | "secret" | "ssh" if mount.from.is_empty() => {}
                        _ if !mount.from.is_empty() => {
                            reads.push(StepRead::Named(mount.from.clone()));
                            stage.deps.push(Dep::MountFrom(mount.from, line));
                        }
                        kind => {
                            // A tmpfs mount is not part of the cache key.
                            if kind != "tmpfs" {
                                reads.push(StepRead::Context(normalize_use(&mount.source)));
                            }
                            stage.uses.push((mount.source, line, "RUN"));
                        }
                    }
                }
            }
            _ => {}
        }
        let args = if ins.keyword == "RUN" {
            args_before
        } else {
            Vec::new()
        };
        stage.steps.push(step(stage_index, ins, reads, args));
    }
    if stages.is_empty() {
        return err(
            instructions.list.last().map_or(1, |i| i.line),
            "the Dockerfile has no `FROM` instruction",
        );
    }

    let target = match target.filter(|t| !t.is_empty()) {
        None => stages.len() - 1,
        Some(t) => {
            let t = t.to_lowercase();
            match stages.iter().position(|s| s.name.as_deref() == Some(&t)) {
                Some(i) => i,
                None => {
                    return err(
                        stages[stages.len() - 1].line,
                        format!("target stage `{t}` could not be found"),
                    )
                }
            }
        }
    };

    // Resolve the edges, then walk them from the target. A `--from` that names no stage
    // names an image.
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
    // BuildKit adds a state for every image or named context read by `--from`, so a
    // one-stage Dockerfile that reads one no longer names its steps without a stage.
    let mut foreign_from = false;
    for (i, s) in stages.iter().enumerate() {
        if let Some(b) = s.base_stage {
            edges[i].push(b);
        }
        for dep in &s.deps {
            match dep {
                Dep::CopyFrom(name, line) => {
                    if let Ok(index) = name.parse::<i64>() {
                        if index < 0 || index as usize >= stages.len() {
                            return err(*line, format!("invalid stage index {index}"));
                        }
                        edges[i].push(index as usize);
                    } else if let Some(j) = find_stage(&names, name) {
                        edges[i].push(j);
                    } else {
                        foreign_from = true;
                        images.push((*line, name.clone()));
                    }
                }
                Dep::MountFrom(name, line) => {
                    if let Some(j) = find_stage(&names, name) {
                        edges[i].push(j);
                    } else {
                        foreign_from = true;
                        images.push((*line, name.clone()));
                    }
                }
            }
        }
    }
    let mut reachable = vec![false; stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut reachable[i], true) {
            continue;
        }
        todo.extend(edges[i].iter().copied());
    }

    let mut uses = Vec::new();
    let mut whole = false;
    let mut set = BTreeSet::new();
    for (i, s) in stages.iter().enumerate() {
        if !reachable[i] {
            continue;
        }
        for (p, line, instruction) in &s.uses {
            let rooted = clean(&format!("/{p}"));
            let path = if rooted == "/" {
                whole = true;
                ".".to_string()
            } else {
                rooted[1..].to_string()
            };
            set.insert(path.clone());
            uses.push(PathUse {
                path,
                line: *line,
                instruction,
                stage: i,
            });
        }
    }
    uses.sort_by_key(|u| u.line);
    let follow_paths = if whole {
        None
    } else {
        Some(set.into_iter().collect())
    };
    images.sort_by_key(|(line, _)| *line);
    let mut seen = BTreeSet::new();
    let images = images
        .into_iter()
        .map(|(_, i)| i)
        .filter(|i| seen.insert(i.clone()))
        .collect();
    let syntax = match build_args.get("BUILDKIT_SYNTAX") {
        Some(arg) => first_word(arg),
        None => syntax_directive(text),
    };
    let single = stages.len() == 1 && !foreign_from;
    let mut steps = Vec::new();
    let mut numbered = Vec::new();
    for (i, s) in stages.iter_mut().enumerate() {
        numbered.push(number_steps(s));
        for mut st in std::mem::take(&mut s.steps) {
            for r in &mut st.reads {
                if let StepRead::Named(n) = r {
                    let stage = match n.parse::<usize>() {
                        Ok(index) => Some(index),
                        Err(_) => find_stage(&names, n),
                    };
                    if let Some(j) = stage.filter(|j| *j < i) {
                        *r = StepRead::Stage(j);
                    }
                }
            }
            steps.push(st);
        }
    }
    Ok(ContextUse {
        follow_paths,
        stages: stages
            .iter()
            .zip(&reachable)
            .zip(numbered)
            .enumerate()
            .map(|(i, ((s, r), n))| Stage {
                name: s.name.clone(),
                base: s.base.clone(),
                line: s.line,
                reachable: *r,
                label: match (&s.name, single) {
                    (_, true) => String::new(),
                    (Some(n), false) => n.clone(),
                    (None, false) => format!("stage-{i}"),
                },
                numbered: n,
            })
            .collect(),
        target,
        uses,
        images,
        remote_sources,
        syntax,
        steps,
    })
}

/// A step of `stage` for `ins`, not numbered yet.
fn step(stage: usize, ins: &Instruction, reads: Vec<StepRead>, args: Vec<String>) -> Step {
    let text = if ins.rest.is_empty() {
        ins.keyword.clone()
    } else {
        format!("{} {}", ins.keyword, ins.rest)
    };
    Step {
        stage,
        line: ins.line,
        keyword: ins.keyword.clone(),
        key: format!("{text}\n{}", ins.heredocs),
        text,
        number: None,
        reads,
        args,
    }
}

/// `path.Join("/", p)` made relative, `.` for the root: the form of [`PathUse::path`].
fn normalize_use(p: &str) -> String {
    let rooted = clean(&format!("/{p}"));
    if rooted == "/" {
        ".".to_string()
    } else {
        rooted[1..].to_string()
    }
}

/// Numbers a stage's steps as BuildKit's `prefixCommand` does (`dockerfile2llb/convert.go`):
/// the `FROM` of an image counts when the base is neither a stage nor `scratch`, then every
/// `ADD`, `COPY`, `RUN` and `WORKDIR` counts towards the total, but a `WORKDIR` that stays at
/// `/` makes no vertex and takes no number. Returns the total.
fn number_steps(s: &mut StageState) -> usize {
    let mut total = 0;
    let mut index = 0;
    let mut wd = "/".to_string();
    for st in &mut s.steps {
        match st.keyword.as_str() {
            "FROM" if s.base_stage.is_none() && !s.base.eq_ignore_ascii_case("scratch") => {
                total += 1;
                index += 1;
                st.number = Some(index);
            }
            "ADD" | "COPY" | "RUN" => {
                total += 1;
                index += 1;
                st.number = Some(index);
            }
            "WORKDIR" => {
                total += 1;
                let arg = st.text["WORKDIR".len()..].trim();
                wd = if arg.starts_with('/') {
                    clean(arg)
                } else {
                    clean(&format!("{wd}/{arg}"))
                };
                if wd != "/" {
                    index += 1;
                    st.number = Some(index);
                }
            }
            _ => {}
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// The frontend image
// ---------------------------------------------------------------------------------------------

fn first_word(s: &str) -> Option<String> {
    s.split_whitespace().next().map(str::to_string)
}

/// The `syntax` parser directive, found as upstream's `parser.DetectSyntax` does: after a
/// byte-order mark and a `#!` line, in a JSON object's `"syntax"` key, else in the leading
/// `//key=value` lines, else in the leading `#key=value` lines.
fn syntax_directive(text: &str) -> Option<String> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let text = match text.strip_prefix("#!") {
        Some(rest) => rest.split_once('\n').map_or("", |(_, r)| r),
        None => text,
    };
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(text) {
        if let Some(serde_json::Value::String(v)) = m.get("syntax") {
            return first_word(v);
        }
    }
    for comment in ["//", "#"] {
        for (key, value) in directives(text, comment) {
            if key.eq_ignore_ascii_case("syntax") {
                return first_word(&value);
            }
        }
    }
    None
}

/// The leading `<comment> key = value` lines of `text` (upstream's directive pattern
/// `^<comment>\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`), up to the first line that is not
/// one.
fn directives(text: &str, comment: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for l in text.split('\n') {
        let l = l.strip_suffix('\r').unwrap_or(l);
        let Some(d) = l.strip_prefix(comment) else {
            break;
        };
        let Some((k, v)) = d.split_once('=') else {
            break;
        };
        let k = k.trim();
        let v = v.trim();
        let key_ok = k.starts_with(|c: char| c.is_ascii_alphabetic())
            && k.chars().all(|c| c.is_ascii_alphanumeric());
        if !key_ok || v.is_empty() {
            break;
        }
        out.push((k.to_string(), v.to_string()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Stages
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum Dep {
    CopyFrom(String, usize),
    MountFrom(String, usize),
}

#[derive(Debug)]
struct StageState {
    name: Option<String>,
    base: String,
    line: usize,
    base_stage: Option<usize>,
    /// `ARG`s in scope: `None` for one without a value.
    args: HashMap<String, Option<String>>,
    env: HashMap<String, String>,
    deps: Vec<Dep>,
    uses: Vec<(String, usize, &'static str)>,
    /// The `ARG` names declared so far, in order.
    arg_order: Vec<String>,
    steps: Vec<Step>,
}

/// The variables a word is expanded with. Kept as maps that grow with each `ARG` and `ENV`
/// rather than rebuilt per instruction, so a long Dockerfile costs linear time.
enum Scope<'a> {
    /// Before the first `FROM`: the global `ARG`s over the automatic platform ones.
    Global(&'a HashMap<String, Option<String>>),
    /// In a stage: its `ENV`s over its `ARG`s.
    Stage(&'a StageState),
}

impl Scope<'_> {
    fn get(&self, name: &str) -> Option<String> {
        match self {
            Scope::Global(g) => match g.get(name) {
                Some(v) => v.clone(),
                None if name.ends_with("VARIANT") => None,
                None => platform_arg(name),
            },
            Scope::Stage(s) => match s.env.get(name) {
                Some(v) => Some(v.clone()),
                None => s.args.get(name).cloned().flatten(),
            },
        }
    }
}

fn find_stage(names: &HashMap<String, usize>, name: &str) -> Option<usize> {
    names.get(&name.to_lowercase()).copied()
}

/// The automatic platform `ARG`s, for the platform cbuild runs on.
fn platform_arg(name: &str) -> Option<String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Some(match name {
        "BUILDPLATFORM" | "TARGETPLATFORM" => format!("linux/{arch}"),
        "BUILDOS" | "TARGETOS" => "linux".into(),
        "BUILDARCH" | "TARGETARCH" => arch.into(),
        "BUILDVARIANT" | "TARGETVARIANT" => String::new(),
        _ => return None,
    })
}

fn parse_from(
    ins: &Instruction,
    x: &Expander,
    scope: &Scope,
    stages: &[StageState],
    names: &HashMap<String, usize>,
) -> Result<StageState, DockerfileError> {
    let line = ins.line;
    let (_flags, rest) = split_flags(&ins.rest, line)?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let name = match words.as_slice() {
        [_] => None,
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let name = name.to_lowercase();
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return err(
                    line,
                    format!("invalid name for build stage: `{name}`, name can't start with a number or contain symbols"),
                );
            }
            Some(name)
        }
        _ => return err(line, "`from` requires either one or three arguments"),
    };
    let base = x.expand(words[0], scope, line)?;
    if base.is_empty() {
        return err(
            line,
            format!("base name (`{}`) should not be blank", words[0]),
        );
    }
    let base_stage = find_stage(names, &base);
    // A stage built on another inherits its environment (not its ARGs). The copy counts
    // against the expansion budget: a chain of stages would otherwise multiply it.
    let env = match base_stage {
        Some(b) => {
            let env = stages[b].env.clone();
            x.charge(env.values().map(String::len).sum(), line)?;
            env
        }
        None => HashMap::new(),
    };
    Ok(StageState {
        name,
        base,
        line,
        base_stage,
        args: HashMap::new(),
        env,
        deps: Vec::new(),
        uses: Vec::new(),
        arg_order: Vec::new(),
        steps: Vec::new(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    /// A path in the context.
    Local,
    /// Fetched by BuildKit: an `http(s)://` URL or a git reference.
    Remote,
    /// `host:path`: a context path to the Dockerfile frontend of Docker 26 (whose scp-style
    /// git pattern needs `user@`), but newer BuildKit sources make the user optional, so a
    /// `# syntax=` frontend may fetch it. Treated as both: the path is sent and the build is
    /// never skipped.
    Ambiguous,
}

/// How BuildKit reads an `ADD` source (upstream `isHTTPSource` and `gitutil.ParseGitRef`):
/// `http://` and `https://` URLs, URLs of the protocols git speaks (`git://`, `ssh://`,
/// any case), and scp-style `user@host:path` references are fetched by BuildKit.
fn source_kind(s: &str) -> SourceKind {
    if s.starts_with("http://") || s.starts_with("https://") {
        return SourceKind::Remote;
    }
    if let Some((scheme, _)) = s.split_once("://") {
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            let git =
                ["http", "https", "git", "ssh"].contains(&scheme.to_ascii_lowercase().as_str());
            return if git {
                SourceKind::Remote
            } else {
                SourceKind::Local
            };
        }
    }
    let host_ok = |h: &str| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    if let Some((before, _path)) = s.split_once(':') {
        match before.split_once('@') {
            Some((user, host))
                if !user.is_empty()
                    && user
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    && host_ok(host) =>
            {
                return SourceKind::Remote
            }
            None if host_ok(before) => return SourceKind::Ambiguous,
            _ => {}
        }
    }
    SourceKind::Local
}

// ---------------------------------------------------------------------------------------------
// Arguments of single instructions
// ---------------------------------------------------------------------------------------------

/// `ARG NAME[=default] ...`: names and unexpanded defaults.
fn parse_arg(
    ins: &Instruction,
    escape: char,
) -> Result<Vec<(String, Option<String>)>, DockerfileError> {
    let words = split_shell_words(&ins.rest, escape);
    if words.is_empty() {
        return err(ins.line, "`arg` requires at least one argument");
    }
    Ok(words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        })
        .collect())
}

/// `ENV K=V ...` or the legacy `ENV K V`: keys and unexpanded values.
fn parse_env(ins: &Instruction, escape: char) -> Result<Vec<(String, String)>, DockerfileError> {
    let rest = ins.rest.trim();
    let first = rest.split_whitespace().next().unwrap_or("");
    if first.is_empty() {
        return err(ins.line, "`env` requires at least one argument");
    }
    if !first.contains('=') {
        let value = rest[first.len()..].trim().to_string();
        return Ok(vec![(first.to_string(), value)]);
    }
    let mut out = Vec::new();
    for w in split_shell_words(rest, escape) {
        match w.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => {
                return err(
                    ins.line,
                    format!("`env` names can not be blank and must be `KEY=VALUE`: `{w}`"),
                )
            }
        }
    }
    Ok(out)
}

/// Flag names (lower-cased) and values.
type Flags = Vec<(String, Option<String>)>;

/// Leading `--name[=value]` flags, and what follows them.
fn split_flags(rest: &str, line: usize) -> Result<(Flags, String), DockerfileError> {
    let mut flags = Vec::new();
    let mut s = rest.trim_start();
    while let Some(after) = s.strip_prefix("--") {
        // A flag ends at unquoted whitespace.
        let mut end = after.len();
        let mut quote = None;
        for (i, c) in after.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_whitespace() => {
                    end = i;
                    break;
                }
                None => {}
            }
        }
        if quote.is_some() {
            return err(line, format!("unterminated quote in flag `--{after}`"));
        }
        let word = &after[..end];
        if word.is_empty() {
            break;
        }
        match word.split_once('=') {
            Some((k, v)) => flags.push((k.to_lowercase(), Some(unquote(v)))),
            None => flags.push((word.to_lowercase(), None)),
        }
        s = after[end..].trim_start();
    }
    Ok((flags, s.to_string()))
}

/// Removes one level of matching quotes around a flag value.
fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// `COPY`/`ADD` arguments: a JSON array of strings, or whitespace-separated words.
fn copy_words(rest: &str) -> Vec<String> {
    let t = rest.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return v;
        }
    }
    split_words(t)
}

fn split_words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Splits on unquoted whitespace, keeping quotes (expansion removes them later).
fn split_shell_words(s: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) => cur.push(c),
            None if c == escape => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Mount {
    kind: String,
    source: String,
    from: String,
}

/// A `--mount` value: comma-separated `key=value` fields (`type` defaults to `bind`).
fn parse_mount(v: &str) -> Result<Mount, String> {
    let mut m = Mount {
        kind: "bind".into(),
        source: String::new(),
        from: String::new(),
    };
    for field in v.split(',') {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let (k, val) = field.split_once('=').unwrap_or((field, ""));
        match k.to_lowercase().as_str() {
            "type" => {
                let t = val.to_lowercase();
                if !["bind", "cache", "tmpfs", "secret", "ssh"].contains(&t.as_str()) {
                    return Err(format!("unsupported mount type `{val}`"));
                }
                m.kind = t;
            }
            "source" | "src" => m.source = val.to_string(),
            "from" => m.from = val.to_string(),
            _ => {}
        }
    }
    Ok(m)
}

// ---------------------------------------------------------------------------------------------
// Word expansion (upstream `shell.Lex.ProcessWord`)
// ---------------------------------------------------------------------------------------------

/// Expands words, within the bounds above.
struct Expander {
    escape: char,
    /// Bytes of expanded text produced so far, for [`MAX_EXPANSION_BYTES`].
    used: std::cell::Cell<usize>,
    /// Pattern-matching work done so far, for [`MAX_MATCH_WORK`].
    work: std::cell::Cell<usize>,
}

/// How much `${VAR#…}`/`${VAR%…}`/`${VAR/…}` matching one Dockerfile may ask for, counted as
/// pattern length times value length per substitution (what a regex search costs at worst).
/// Real files spend a few thousand; a hostile one could otherwise ask for hours.
const MAX_MATCH_WORK: usize = 1 << 28;

/// Why a word could not be expanded (the line is added by the caller).
enum Fail {
    Invalid(String),
    TooLarge(String),
}

impl From<String> for Fail {
    fn from(m: String) -> Self {
        Fail::Invalid(m)
    }
}

impl From<&str> for Fail {
    fn from(m: &str) -> Self {
        Fail::Invalid(m.to_string())
    }
}

fn over_budget() -> String {
    format!(
        "expanding variables makes more than {} MiB of text (ARG or ENV values built from \
         each other?); cbuild stops here rather than use unbounded memory",
        MAX_EXPANSION_BYTES >> 20
    )
}

impl Expander {
    fn new(escape: char) -> Self {
        Expander {
            escape,
            used: std::cell::Cell::new(0),
            work: std::cell::Cell::new(0),
        }
    }

    /// Counts `n` more bytes of expanded text.
    fn charge(&self, n: usize, line: usize) -> Result<(), DockerfileError> {
        let used = self.used.get().saturating_add(n);
        self.used.set(used);
        if used > MAX_EXPANSION_BYTES {
            return too_large(line, over_budget());
        }
        Ok(())
    }

    /// Expands `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`,
    /// `${VAR:?w}`, `${VAR?w}`, `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}` (also after a
    /// `:`, as upstream), `${VAR/p/r}` and `${VAR//p/r}`; removes quotes (nothing inside `'…'`
    /// is expanded) and escape characters.
    fn expand(&self, word: &str, scope: &Scope, line: usize) -> Result<String, DockerfileError> {
        let chars: Vec<char> = word.chars().collect();
        let mut pos = 0;
        let out = self
            .until(&chars, &mut pos, scope, None, 0, 0, false)
            .map_err(|f| match f {
                Fail::Invalid(message) => DockerfileError {
                    line,
                    message,
                    kind: ErrorKind::Invalid,
                },
                Fail::TooLarge(message) => DockerfileError {
                    line,
                    message,
                    kind: ErrorKind::TooLarge,
                },
            })?;
        self.charge(out.len(), line)?;
        Ok(out)
    }

    /// Counts the work of matching `pattern` against `value`, for [`MAX_MATCH_WORK`].
    fn charge_match(&self, pattern: &str, value: &str) -> Result<(), Fail> {
        let cost = (pattern.len() + 1).saturating_mul(value.len() + 1);
        let work = self.work.get().saturating_add(cost);
        self.work.set(work);
        if work > MAX_MATCH_WORK {
            return Err(Fail::TooLarge(
                "`${VAR#…}`, `${VAR%…}` and `${VAR/…}` substitutions here match too much text; \
                 cbuild stops rather than spend unbounded time"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Expands up to `stop` (or the end). `depth` counts the enclosing `${…}`s; `held` the
    /// bytes their partial results already hold, so the bound covers the whole word. `raw`
    /// keeps escape characters in the result, as upstream does for patterns (where `\*` is
    /// a literal star) and replacements.
    #[allow(clippy::too_many_arguments)]
    fn until(
        &self,
        chars: &[char],
        pos: &mut usize,
        scope: &Scope,
        stop: Option<char>,
        depth: usize,
        held: usize,
        raw: bool,
    ) -> Result<String, Fail> {
        let escape = self.escape;
        let mut out = String::new();
        while *pos < chars.len() {
            if held.saturating_add(out.len()) > MAX_EXPANSION_BYTES {
                return Err(Fail::TooLarge(over_budget()));
            }
            let c = chars[*pos];
            if Some(c) == stop {
                return Ok(out);
            }
            *pos += 1;
            if c == escape && raw {
                // Upstream keeps the escape and takes the next character whatever it is, so
                // an escaped stop character does not end the word.
                out.push(c);
                if let Some(&n) = chars.get(*pos) {
                    out.push(n);
                    *pos += 1;
                }
            } else if c == escape {
                match chars.get(*pos) {
                    Some(&n) => {
                        out.push(n);
                        *pos += 1;
                    }
                    None => out.push(c),
                }
            } else if c == '\'' {
                loop {
                    match chars.get(*pos) {
                        None => return Err(
                            "unexpected end of statement while looking for matching single-quote"
                                .into(),
                        ),
                        Some('\'') => {
                            *pos += 1;
                            break;
                        }
                        Some(&n) => {
                            out.push(n);
                            *pos += 1;
                        }
                    }
                }
            } else if c == '"' {
                loop {
                    match chars.get(*pos) {
                        None => return Err(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        ),
                        Some('"') => {
                            *pos += 1;
                            break;
                        }
                        Some(&n) if n == escape => {
                            // In raw mode upstream writes the escape and then either the
                            // escaped character or, for any other, the escape a second time.
                            if raw {
                                out.push(n);
                            }
                            match chars.get(*pos + 1) {
                                Some(&m) if m == '"' || m == '$' || m == escape => {
                                    out.push(m);
                                    *pos += 2;
                                }
                                Some(_) => {
                                    out.push(n);
                                    *pos += 1;
                                }
                                None => *pos += 1,
                            }
                        }
                        Some('$') => {
                            *pos += 1;
                            let v = self.dollar(chars, pos, scope, depth, held + out.len())?;
                            out.push_str(&v);
                            if held.saturating_add(out.len()) > MAX_EXPANSION_BYTES {
                                return Err(Fail::TooLarge(over_budget()));
                            }
                        }
                        Some(&n) => {
                            out.push(n);
                            *pos += 1;
                        }
                    }
                }
            } else if c == '$' {
                let v = self.dollar(chars, pos, scope, depth, held + out.len())?;
                out.push_str(&v);
            } else {
                out.push(c);
            }
        }
        if held.saturating_add(out.len()) > MAX_EXPANSION_BYTES {
            return Err(Fail::TooLarge(over_budget()));
        }
        if let Some(s) = stop {
            return Err(format!("missing `{s}` in substitution").into());
        }
        Ok(out)
    }

    /// After a `$`: a variable, a `${…}` substitution, or a literal `$`.
    fn dollar(
        &self,
        chars: &[char],
        pos: &mut usize,
        scope: &Scope,
        depth: usize,
        held: usize,
    ) -> Result<String, Fail> {
        match chars.get(*pos) {
            Some('{') => {
                *pos += 1;
                let name = read_name(chars, pos);
                if name.is_empty() {
                    return Err("bad substitution: `${` must be followed by a variable name".into());
                }
                let value = scope.get(&name);
                let mut op = chars.get(*pos).copied();
                if op == Some('}') {
                    *pos += 1;
                    return Ok(value.unwrap_or_default());
                }
                let colon = op == Some(':');
                if colon {
                    *pos += 1;
                    op = chars.get(*pos).copied();
                }
                let Some(op) = op else {
                    return Err(format!("missing `}}` in substitution of `{name}`").into());
                };
                if !matches!(op, '-' | '+' | '?' | '#' | '%' | '/') || (colon && op == '/') {
                    let shown = if colon {
                        format!(":{op}")
                    } else {
                        op.to_string()
                    };
                    return Err(format!(
                        "unsupported modifier `{shown}` in substitution of `{name}` (BuildKit rejects it too)"
                    )
                    .into());
                }
                *pos += 1;
                if depth + 1 > MAX_NESTING {
                    return Err(Fail::TooLarge(format!(
                        "`${{…}}` substitutions nested more than {MAX_NESTING} deep; cbuild stops \
                         there (declare the defaults as separate ARGs)"
                    )));
                }
                if op == '/' {
                    // `${VAR//p/r}` replaces every match; upstream needs both slashes.
                    let all = chars.get(*pos) == Some(&'/');
                    if all {
                        *pos += 1;
                    }
                    let pattern =
                        self.until(chars, pos, scope, Some('/'), depth + 1, held, true)?;
                    *pos += 1;
                    let held = held.saturating_add(pattern.len());
                    let with = self.until(chars, pos, scope, Some('}'), depth + 1, held, true)?;
                    *pos += 1;
                    let value = value.unwrap_or_default();
                    self.charge_match(&pattern, &value)?;
                    return replace(
                        &value,
                        &pattern,
                        &with,
                        all,
                        held.saturating_add(with.len()),
                    );
                }
                let raw = op == '#' || op == '%';
                let word = self.until(chars, pos, scope, Some('}'), depth + 1, held, raw)?;
                *pos += 1;
                let set = match &value {
                    Some(v) => !colon || !v.is_empty(),
                    None => false,
                };
                match op {
                    '-' => Ok(if set { value.unwrap_or_default() } else { word }),
                    '+' => Ok(if set { word } else { String::new() }),
                    '#' | '%' => {
                        // A doubled operator asks for the longest match; upstream looks at the
                        // pattern after expansion, so `${V#$P}` with `P=#x` is greedy too.
                        let (longest, pattern) = match word.strip_prefix(op) {
                            Some(p) => (true, p),
                            None => (false, word.as_str()),
                        };
                        let value = value.unwrap_or_default();
                        self.charge_match(pattern, &value)?;
                        if op == '#' {
                            trim_prefix(&value, pattern, longest)
                        } else {
                            trim_suffix(&value, pattern, longest)
                        }
                    }
                    _ => {
                        if set {
                            Ok(value.unwrap_or_default())
                        } else if word.is_empty() {
                            Err(format!("`{name}`: is not allowed to be unset").into())
                        } else {
                            Err(format!("`{name}`: {word}").into())
                        }
                    }
                }
            }
            Some(&c) if is_name_char(c) || is_special_param(c) => {
                let name = read_name(chars, pos);
                Ok(scope.get(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }
}

// Pattern substitutions. Upstream (`convertShellPatternToRegex` in shell/lex.go) turns the
// pattern into a Go regular expression and lets RE2 pick the match; the `regex` crate has the
// same leftmost-first semantics (and `.` skips `\n` in both), so building the same expression
// gives the same answers, quirks included: no `[…]` classes (brackets are literal), `*` is lazy
// for `#`/`%` and greedy for `##`/`%%`/`/`, and `%` reverses pattern and value to search
// from the start.

/// The regular expression upstream builds from a shell pattern. Escapes are always `\`
/// (whatever the Dockerfile's escape character), and only `\*`, `\?`, `\\`, `\}`, `\/` are
/// valid.
fn shell_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<regex::Regex, Fail> {
    let mut re = String::with_capacity(pattern.len() + 4);
    if anchored {
        re.push('^');
    }
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '*' => re.push_str(if greedy { ".*" } else { ".*?" }),
            '?' => re.push('.'),
            '\\' => {
                // `\}` and `\/` only keep the `${…}` open; the character itself is literal.
                if matches!(it.peek(), Some('}') | Some('/')) {
                    continue;
                }
                match it.next() {
                    Some(n @ ('*' | '?' | '\\')) => {
                        re.push('\\');
                        re.push(n);
                    }
                    other => {
                        let shown = other.map(String::from).unwrap_or_default();
                        return Err(format!(
                            "invalid pattern `{pattern}` in substitution: invalid escape `\\{shown}`"
                        )
                        .into());
                    }
                }
            }
            _ => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    regex::Regex::new(&re).map_err(|e| {
        Fail::Invalid(format!(
            "pattern `{pattern}` in substitution is too complex for cbuild to predict ({e})"
        ))
    })
}

/// `${VAR#pattern}` (`longest`: `##`): `value` without its shortest (longest) prefix the
/// pattern matches, or unchanged when none does.
fn trim_prefix(value: &str, pattern: &str, longest: bool) -> Result<String, Fail> {
    let re = shell_regex(pattern, longest, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// `${VAR%pattern}` (`longest`: `%%`), as upstream: the prefix trim of the reversed value by
/// the reversed pattern, reversed back.
fn trim_suffix(value: &str, pattern: &str, longest: bool) -> Result<String, Fail> {
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reversed, &reverse_pattern(pattern), longest)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern but keeps each `\x` pair in order (`a\*c` → `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let n = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        units.push(&chars[i..i + n]);
        i += n;
    }
    units.iter().rev().flat_map(|u| u.iter()).collect()
}

/// `${VAR/pattern/with}` (`all`: `//`). The first match is replaced by `with` as written;
/// every match is replaced by `with` read as a Go `Regexp.Expand` template, as upstream's
/// `ReplaceAllString` does. `held` is what the enclosing words already hold.
fn replace(value: &str, pattern: &str, with: &str, all: bool, held: usize) -> Result<String, Fail> {
    let re = shell_regex(pattern, true, false)?;
    let mut out = String::new();
    let mut last = 0;
    for m in re.find_iter(value) {
        out.push_str(&value[last..m.start()]);
        if all {
            go_expand(&mut out, with, m.as_str());
        } else {
            out.push_str(with);
        }
        last = m.end();
        if held.saturating_add(out.len()) > MAX_EXPANSION_BYTES {
            return Err(Fail::TooLarge(over_budget()));
        }
        if !all {
            break;
        }
    }
    out.push_str(&value[last..]);
    if held.saturating_add(out.len()) > MAX_EXPANSION_BYTES {
        return Err(Fail::TooLarge(over_budget()));
    }
    Ok(out)
}

/// Go's `Regexp.Expand` for an expression without groups: `$$` is `$`, `$0`/`${0}` the
/// match, any other `$name`/`${name}` nothing, and a `$` not starting a name stays.
fn go_expand(out: &mut String, template: &str, matched: &str) {
    // Go's names are Unicode letters, digits and `_`; `is_alphanumeric` is close enough here.
    let name_char = |c: char| c.is_alphanumeric() || c == '_';
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let len = body.find(|c: char| !name_char(c)).unwrap_or(body.len());
        let name = &body[..len];
        if name.is_empty() || (braced && !body[len..].starts_with('}')) {
            out.push('$');
            continue;
        }
        // Group 0 only: leading zeros make a name, not a number, in Go.
        if name == "0" {
            out.push_str(matched);
        }
        rest = &body[len + usize::from(braced)..];
    }
    out.push_str(rest);
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The shell's special parameters, which BuildKit reads as one-character
/// names (and which no ARG or ENV can set, so they expand to nothing).
fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// A variable name after `$` or `${`, read as BuildKit's lexer reads it
/// (`processName` in shell/lex.go): a name that starts with a digit is the
/// digits alone (`$1abc` is `$1` then `abc`), a special parameter is one
/// character, anything else runs over letters, digits and `_`.
fn read_name(chars: &[char], pos: &mut usize) -> String {
    let start = *pos;
    match chars.get(*pos) {
        Some(c) if c.is_ascii_digit() => {
            while chars.get(*pos).is_some_and(|c| c.is_ascii_digit()) {
                *pos += 1;
            }
        }
        Some(&c) if is_special_param(c) => *pos += 1,
        _ => {
            while chars.get(*pos).is_some_and(|&c| is_name_char(c)) {
                *pos += 1;
            }
        }
    }
    chars[start..*pos].iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Lines → instructions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
struct Instruction {
    /// Upper-cased keyword.
    keyword: String,
    /// The rest of the logical line, continuations joined.
    rest: String,
    /// First line.
    line: usize,
    /// The heredoc bodies that follow it, as written.
    heredocs: String,
}

struct Instructions {
    escape: char,
    list: Vec<Instruction>,
}

/// A heredoc marker word (`<<EOF`, `<<-"EOF"`, `3<<EOF`): its end word and whether leading
/// tabs are stripped.
fn heredoc_word(w: &str) -> Option<(String, bool)> {
    let w = w.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = w.strip_prefix("<<")?;
    let (rest, strip_tabs) = match rest.strip_prefix('-') {
        Some(r) => (r, true),
        None => (rest, false),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let word: String = rest.chars().filter(|&c| c != '"' && c != '\'').collect();
    if word.is_empty() {
        return None;
    }
    Some((word, strip_tabs))
}

fn read_instructions(text: &str) -> Result<Instructions, DockerfileError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    // BuildKit's parser reads lines with a bounded scanner; over the bound it stops with
    // "dockerfile line greater than max allowed size of 65535". Say so before anything is
    // sent, and before a huge line costs memory here.
    for (i, l) in text.split('\n').enumerate() {
        if l.len() > MAX_LINE_BYTES {
            return too_large(
                i + 1,
                format!(
                    "the line is {} bytes long, more than the {MAX_LINE_BYTES} BuildKit reads in \
                     one Dockerfile line; split it over several lines with line continuations",
                    l.len()
                ),
            );
        }
    }
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top.
    while i < lines.len() {
        let Some(d) = lines[i].trim().strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = d.split_once('=') else {
            break;
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
            break;
        }
        if k.eq_ignore_ascii_case("escape") {
            escape = match v.trim() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return err(
                        i + 1,
                        format!("invalid escape token `{other}`: it must be ` or \\"),
                    )
                }
            };
        }
        i += 1;
    }
    let mut list = Vec::new();
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        let mut logical = String::new();
        loop {
            let l = lines[i].trim_end();
            i += 1;
            match l.strip_suffix(escape) {
                Some(body) => {
                    logical.push_str(body);
                    // Comment and blank lines inside a continued instruction are skipped.
                    while i < lines.len() {
                        let t = lines[i].trim();
                        if t.is_empty() || t.starts_with('#') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i >= lines.len() {
                        break;
                    }
                }
                None => {
                    logical.push_str(l);
                    break;
                }
            }
        }
        let logical = logical.trim();
        let (keyword, rest) = match logical.find(char::is_whitespace) {
            Some(p) => (&logical[..p], logical[p..].trim_start()),
            None => (logical, ""),
        };
        let keyword = keyword.to_uppercase();
        if !keyword.chars().all(|c| c.is_ascii_alphabetic()) {
            return err(start + 1, format!("unknown instruction: `{keyword}`"));
        }
        // Heredoc bodies follow the instruction line, one per marker, in order.
        let mut heredocs = String::new();
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") && !rest.starts_with('[') {
            for (word, strip_tabs) in rest.split_whitespace().filter_map(heredoc_word) {
                loop {
                    if i >= lines.len() {
                        return err(start + 1, format!("unterminated heredoc: no line `{word}`"));
                    }
                    let l = lines[i];
                    i += 1;
                    let l = if strip_tabs {
                        l.trim_start_matches('\t')
                    } else {
                        l
                    };
                    if l == word {
                        break;
                    }
                    heredocs.push_str(l);
                    heredocs.push('\n');
                }
            }
        }
        list.push(Instruction {
            keyword,
            rest: rest.to_string(),
            line: start + 1,
            heredocs,
        });
    }
    Ok(Instructions { escape, list })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(df: &str, target: Option<&str>, args: &[(&str, &str)]) -> Option<Vec<String>> {
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        analyze(df, target, &args)
            .unwrap_or_else(|e| panic!("{df}: {e}"))
            .follow_paths
    }

    #[test]
    fn follow_paths_table() {
        #[rustfmt::skip]
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(&'a str, &'a str)], Option<&'a [&'a str]>);
        let cases: &[Case] = &[
            ("copy src", "FROM alpine\nCOPY src/ /app/\n", None, &[], Some(&["src"])),
            ("copy root", "FROM alpine\nCOPY . /app\n", None, &[], None),
            ("copy ./", "FROM alpine\nCOPY ./ /app\n", None, &[], None),
            ("nothing used", "FROM alpine\nRUN true\n", None, &[], Some(&[])),
            ("only unreachable use", "FROM a AS x\nCOPY . /\nFROM b\nRUN true\n", None, &[], Some(&[])),
            ("sorted dedup", "FROM a\nCOPY b a ./b /x/\nADD ./c/../a /y\n", None, &[], Some(&["a", "b"])),
            ("absolute and dot", "FROM a\nCOPY /etc/x ./y/./z /d\n", None, &[], Some(&["etc/x", "y/z"])),
            ("wildcards kept", "FROM a\nCOPY *.json src/**/*.ts /d/\n", None, &[], Some(&["*.json", "src/**/*.ts"])),
            ("json form", "FROM a\nCOPY [\"my dir/f\", \"g\", \"/d/\"]\n", None, &[], Some(&["g", "my dir/f"])),
            ("flags", "FROM a\nCOPY --chown=1:1 --chmod=644 --link --parents a/./b /d/\n", None, &[], Some(&["a/b"])),
            ("add urls skipped", "FROM a\nADD https://x/y.tgz http://z git@github.com:a/b.git git://h/r ssh://h/r local /d\n", None, &[], Some(&["local"])),
            ("copy --from stage", "FROM a AS b\nCOPY x /x\nFROM c\nCOPY --from=b /x /y\n", None, &[], Some(&["x"])),
            ("copy --from image", "FROM c\nCOPY --from=nginx:latest /etc /etc\nCOPY y /\n", None, &[], Some(&["y"])),
            ("copy --from index", "FROM a\nCOPY x /\nFROM b\nCOPY z /\nFROM c\nCOPY --from=1 / /\n", None, &[], Some(&["z"])),
            ("unreachable stage", "FROM a AS dev\nCOPY . /\nFROM a AS prod\nCOPY src /src\n", None, &[], Some(&["src"])),
            ("target picks stage", "FROM a AS dev\nCOPY . /\nFROM a AS prod\nCOPY src /src\n", Some("dev"), &[], None),
            ("target case", "FROM a AS Dev\nCOPY d /\nFROM a\nCOPY p /\n", Some("DEV"), &[], Some(&["d"])),
            ("base stage", "FROM a AS base\nCOPY lib /lib\nFROM base\nCOPY app /app\n", None, &[], Some(&["app", "lib"])),
            ("base via arg", "ARG BASE=base\nFROM a AS base\nCOPY lib /lib\nFROM ${BASE}\nCOPY app /\n", None, &[], Some(&["app", "lib"])),
            ("base via build arg", "ARG BASE=alpine\nFROM a AS base\nCOPY lib /lib\nFROM $BASE\nCOPY app /\n", None, &[("BASE", "base")], Some(&["app", "lib"])),
            ("quoted arg", "FROM a\nARG D=\"my dir\" E='x'\nCOPY [\"$D\", \"$E\", \"/d/\"]\n", None, &[], Some(&["my dir", "x"])),
            ("arg in source", "FROM a\nARG DIR=src\nCOPY ${DIR}/ /x\n", None, &[], Some(&["src"])),
            ("build arg overrides", "FROM a\nARG DIR=src\nCOPY $DIR /x\n", None, &[("DIR", "lib")], Some(&["lib"])),
            ("global arg needs redeclare", "ARG DIR=g\nFROM a\nCOPY x$DIR /x\nARG DIR\nCOPY y$DIR /y\n", None, &[], Some(&["x", "yg"])),
            ("env wins over arg", "FROM a\nARG D=arg\nENV D=env\nCOPY $D /\n", None, &[("D", "cli")], Some(&["env"])),
            ("env inherited", "FROM a AS b\nENV D=x\nFROM b\nCOPY $D /\n", None, &[], Some(&["x"])),
            ("legacy env", "FROM a\nENV D some thing\nCOPY \"$D\" /\n", None, &[], Some(&["some thing"])),
            ("default modifiers", "FROM a\nCOPY ${U:-dflt} ${U:+no}x ${S-set} /\n", None, &[], Some(&["dflt", "set", "x"])),
            ("single quotes", "FROM a\nARG X=1\nCOPY '$X' /\n", None, &[], Some(&["$X"])),
            ("escaped dollar", "FROM a\nARG X=1\nCOPY \\$X /\n", None, &[], Some(&["$X"])),
            ("continuation", "FROM a\nCOPY \\\n  # a comment\n\n  src \\\n  /d\n", None, &[], Some(&["src"])),
            ("backtick escape", "# escape=`\nFROM a\nCOPY c:\\x `\n  /d\n", None, &[], Some(&["c:\\x"])),
            ("heredoc run skipped", "FROM a\nRUN <<EOF\nCOPY . /\nEOF\nCOPY s /\n", None, &[], Some(&["s"])),
            ("heredoc copy source", "FROM a\nCOPY <<-\"EOT\" f /d/\n\tCOPY . /\n\tEOT\n", None, &[], Some(&["f"])),
            ("two heredocs", "FROM a\nRUN <<A cat <<B\nx\nA\nCOPY . /\nB\nCOPY k /\n", None, &[], Some(&["k"])),
            ("mount bind", "FROM a\nRUN --mount=type=bind,source=go.sum,target=/x true\n", None, &[], Some(&["go.sum"])),
            ("mount default type", "FROM a\nRUN --mount=src=pkg,dst=/p true\n", None, &[], Some(&["pkg"])),
            ("mount no source", "FROM a\nRUN --mount=target=/ctx true\nCOPY s /\n", None, &[], None),
            ("mount tmpfs uses all", "FROM a\nRUN --mount=type=tmpfs,target=/t true\nCOPY s /\n", None, &[], None),
            ("mount cache", "FROM a\nRUN --mount=type=cache,target=/c --mount=type=secret,id=x true\nCOPY s /\n", None, &[], Some(&["s"])),
            ("mount from stage", "FROM a AS b\nCOPY q /\nFROM c AS d\nCOPY r /\nFROM e\nRUN --mount=from=b,target=/b true\n", None, &[], Some(&["q"])),
            ("lowercase keywords", "from a\ncopy x /\n", None, &[], Some(&["x"])),
            ("onbuild ignored", "FROM a\nONBUILD COPY . /\nCOPY s /\n", None, &[], Some(&["s"])),
        ];
        for (name, df, target, args, want) in cases {
            let got = paths(df, *target, args);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("FROM a\n\nCOPY onlyone\n", 3, "at least two arguments"),
            ("COPY a b\nFROM x\n", 1, "before the first `FROM`"),
            ("FROM a AS 1bad\n", 1, "invalid name"),
            ("FROM a\nCOPY ${X^y} /\n", 2, "unsupported modifier"),
            ("FROM a\nRUN <<EOF\nno end\n", 2, "unterminated heredoc"),
            (
                "FROM a\nCOPY \\\n x \\\n y\nCOPY --from=7 / /\n",
                5,
                "invalid stage index 7",
            ),
            ("FROM a AS b\n", 1, "target stage `c` could not be found"),
            (
                "FROM a\nRUN --mount=type=nfs true\n",
                2,
                "unsupported mount type",
            ),
            ("", 1, "no `FROM`"),
            ("FROM a\nARG X=b\nFROM $X\n", 3, "should not be blank"),
        ];
        for (df, line, msg) in cases {
            let target = msg.contains("target").then_some("c");
            let e = analyze(df, target, &HashMap::new()).unwrap_err();
            assert_eq!(e.line, *line, "{df:?}: {e}");
            assert!(e.to_string().contains(msg), "{df:?}: {e}");
        }
    }

    #[test]
    fn stages_and_uses() {
        let df =
            "FROM a AS base\nCOPY lib /lib\nFROM a AS unused\nCOPY x /\nFROM base\nCOPY app /\n";
        let u = analyze(df, None, &HashMap::new()).unwrap();
        assert_eq!(u.target, 2);
        let reach: Vec<bool> = u.stages.iter().map(|s| s.reachable).collect();
        assert_eq!(reach, [true, false, true]);
        let lines: Vec<(String, usize)> = u.uses.iter().map(|p| (p.path.clone(), p.line)).collect();
        assert_eq!(lines, [("lib".to_string(), 2), ("app".to_string(), 6)]);
    }
    /// A named Dockerfile, its build arguments and what it should give.
    type Case<'a, W> = (&'a str, &'a str, &'a [(&'a str, &'a str)], W);

    fn read(df: &str, args: &[(&str, &str)]) -> ContextUse {
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        analyze(df, None, &args).unwrap_or_else(|e| panic!("{df}: {e}"))
    }

    fn remote(df: &str, args: &[(&str, &str)]) -> Vec<String> {
        read(df, args)
            .remote_sources
            .into_iter()
            .map(|r| r.url)
            .collect()
    }

    /// Every form in which `ADD` names something BuildKit fetches itself.
    #[test]
    fn remote_sources_in_every_form() {
        #[rustfmt::skip]
        let cases: &[Case<&[&str]>] = &[
            ("plain", "FROM a\nADD https://h/f /x\n", &[], &["https://h/f"]),
            ("json", "FROM a\nADD [\"https://h/f\", \"/x\"]\n", &[], &["https://h/f"]),
            ("json with flags", "FROM a\nADD --chmod=644 [\"http://h/f\", \"/x\"]\n", &[], &["http://h/f"]),
            ("continuation", "FROM a\nADD \\\n  https://h/f \\\n  /x\n", &[], &["https://h/f"]),
            ("continuation after comment", "FROM a\nADD local \\\n# c\n  http://h/f /x\n", &[], &["http://h/f"]),
            ("arg default", "FROM a\nARG URL=https://h/f\nADD ${URL} /x\n", &[], &["https://h/f"]),
            ("build arg", "FROM a\nARG URL=local\nADD $URL /x\n", &[("URL", "https://h/g")], &["https://h/g"]),
            ("global arg redeclared", "ARG URL=https://h/f\nFROM a\nARG URL\nADD $URL /x\n", &[], &["https://h/f"]),
            ("env", "FROM a\nENV U=http://h/e\nADD $U /x\n", &[], &["http://h/e"]),
            ("git scp", "FROM a\nADD git@github.com:o/r.git /x\n", &[], &["git@github.com:o/r.git"]),
            ("git scp other user", "FROM a\nADD me_1@git.example.org:o/r /x\n", &[], &["me_1@git.example.org:o/r"]),
            ("git url", "FROM a\nADD git://h/r.git#main /x\n", &[], &["git://h/r.git#main"]),
            ("ssh url", "FROM a\nADD ssh://git@h/r.git /x\n", &[], &["ssh://git@h/r.git"]),
            ("https git", "FROM a\nADD https://github.com/o/r.git#v1 /x\n", &[], &["https://github.com/o/r.git#v1"]),
            ("scheme case", "FROM a\nADD Git://h/r /x\n", &[], &["Git://h/r"]),
            ("host:path", "FROM a\nADD example.org:o/r /x\n", &[], &["example.org:o/r"]),
            ("unreachable stage counts", "FROM a AS x\nADD http://h/f /x\nFROM b\n", &[], &["http://h/f"]),
            ("local", "FROM a\nADD f /x\nADD ftp://h/f /y\nADD ./a@b:c /z\n", &[], &[]),
            ("copy is never remote", "FROM a\nCOPY f /x\n", &[], &[]),
            ("heredoc", "FROM a\nADD <<EOF /x\nhttp://h/f\nEOF\n", &[], &[]),
            ("heredoc body line", "FROM a\nRUN <<EOF\nADD http://h/f /x\nEOF\n", &[], &[]),
        ];
        for (name, df, args, want) in cases {
            assert_eq!(remote(df, args), *want, "case {name}");
        }
        // An ambiguous `host:path` is also sent as a context path; a sure remote is not.
        assert_eq!(
            paths("FROM a\nADD example.org:o/r https://h/f /x/\n", None, &[]),
            Some(vec!["example.org:o/r".to_string()])
        );
    }

    #[test]
    fn images_the_build_reads() {
        #[rustfmt::skip]
        let cases: &[Case<&[&str]>] = &[
            ("continued from", "FROM \\\n  base:1 AS b\nRUN x\n", &[], &["base:1"]),
            ("escape directive", "# escape=`\nFROM `\n  base:1\nRUN echo `\n  hi\n", &[], &["base:1"]),
            ("heredoc body", "FROM base\nRUN <<EOF\nFROM evil\nEOF\nCOPY <<EOF /x\nFROM evil2\nEOF\n", &[], &["base"]),
            ("stages and scratch", "FROM a AS one\nFROM one\nFROM scratch\nFROM ONE\n", &[], &["a"]),
            ("meta args", "ARG B=base\nARG T\nARG F=${B}:${T:-latest}\nFROM $B AS one\nFROM ${F}\nFROM ${NOPE:-x}\n", &[], &["base", "base:latest", "x"]),
            ("meta args from build args", "ARG B=base\nARG T\nFROM ${B}:${T:-latest}\n", &[("B", "o"), ("T", "1")], &["o:1"]),
            ("stage arg is not meta", "FROM a\nARG X=b\nFROM ${X:-c}\n", &[], &["a", "c"]),
            ("copy from image", "FROM a AS s\nFROM b\nCOPY --from=s / /\nCOPY --from=tool:1 /t /t\nCOPY --from=0 / /\n", &[], &["a", "b", "tool:1"]),
            ("mount from image", "FROM a\nRUN --mount=type=bind,from=cache:2,target=/c true\n", &[], &["a", "cache:2"]),
            ("copy from arg", "FROM a\nARG T=tool\nCOPY --from=$T / /\n", &[("T", "t2")], &["a", "t2"]),
            ("dedup in order", "FROM b\nCOPY --from=a / /\nFROM a\nCOPY --from=b / /\n", &[], &["b", "a"]),
            ("platform flag", "FROM --platform=$BUILDPLATFORM a\n", &[], &["a"]),
        ];
        for (name, df, args, want) in cases {
            assert_eq!(read(df, args).images, *want, "case {name}");
        }
    }

    #[test]
    fn syntax_frontend() {
        #[rustfmt::skip]
        let cases: &[Case<Option<&str>>] = &[
            ("none", "FROM a\n", &[], None),
            ("directive", "# syntax=docker/dockerfile:1.7\nFROM a\n", &[], Some("docker/dockerfile:1.7")),
            ("spaces and case", "#  SYNTAX = fe:1 --opt\nFROM a\n", &[], Some("fe:1")),
            ("after escape", "# escape=`\n# syntax=fe:2\nFROM a\n", &[], Some("fe:2")),
            ("after shebang", "#!/usr/bin/env buildctl\n# syntax=fe:3\nFROM a\n", &[], Some("fe:3")),
            ("not at the top", "FROM a\n# syntax=fe:5\n", &[], None),
            ("after a comment", "# hello\n# syntax=fe:6\nFROM a\n", &[], None),
            ("build arg wins", "# syntax=fe:1\nFROM a\n", &[("BUILDKIT_SYNTAX", "other/fe:2 x")], Some("other/fe:2")),
            ("build arg alone", "FROM a\n", &[("BUILDKIT_SYNTAX", "fe:7")], Some("fe:7")),
        ];
        for (name, df, args, want) in cases {
            assert_eq!(read(df, args).syntax.as_deref(), *want, "case {name}");
        }
        // Forms for other frontends' languages, which the Dockerfile parser cannot read.
        assert_eq!(
            syntax_directive("//syntax=fe:4\n{}").as_deref(),
            Some("fe:4")
        );
        assert_eq!(
            syntax_directive("{\"syntax\": \"fe:5\"}").as_deref(),
            Some("fe:5")
        );
    }

    fn too_large_at(df: &str, line: usize, msg: &str) {
        let e = analyze(df, None, &HashMap::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
        assert_eq!(e.line, line, "{e}");
        assert!(e.to_string().contains(msg), "{e}");
    }

    #[test]
    fn hostile_input_is_bounded() {
        // 50,000 nested defaults, in `FROM` and in `ARG`: refused, not expanded.
        let nested = |n: usize| format!("{}x{}", "${A:-".repeat(n), "}".repeat(n));
        too_large_at(&format!("FROM {}\n", nested(50_000)), 1, "line is");
        too_large_at(
            &format!("ARG X\nFROM {}\n", nested(10_000)),
            2,
            "nested more than 64",
        );
        too_large_at(
            &format!("FROM a\nARG B={}\n", nested(65)),
            2,
            "nested more than 64",
        );
        // Split over continuation lines, each short enough for BuildKit.
        let split: String = nested(50_000)
            .as_bytes()
            .chunks(1000)
            .map(|c| format!("{}\\\n", String::from_utf8_lossy(c)))
            .collect();
        too_large_at(
            &format!("FROM a\nARG B={split}\n"),
            2,
            "nested more than 64",
        );
        assert_eq!(read(&format!("FROM {}\n", nested(64)), &[]).images, ["x"]);
        // Values built from each other double per line.
        let mut df = String::from("ARG A0=0123456789abcdef\n");
        for i in 1..40 {
            df.push_str(&format!("ARG A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
        }
        df.push_str("FROM a\n");
        too_large_at(&df, 21, "more than 16 MiB");
        // So do environments inherited along a chain of stages.
        let mut df = format!("FROM a AS s0\nENV E={}\n", "e".repeat(60_000));
        for i in 1..400 {
            df.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
        }
        let e = analyze(&df, None, &HashMap::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
        // A line BuildKit cannot read.
        let long = format!("FROM a\nRUN echo {}\n", "x".repeat(MAX_LINE_BYTES));
        too_large_at(&long, 2, "65535");
        let ok = format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE_BYTES - 4));
        analyze(&ok, None, &HashMap::new()).unwrap();
        // Even in a heredoc body.
        let body = format!("FROM a\nRUN <<EOF\n{}\nEOF\n", "x".repeat(70_000));
        too_large_at(&body, 3, "65535");
    }

    #[test]
    fn other_errors_are_not_limits() {
        let e = analyze("FROM a\nCOPY ${X^y} /\n", None, &HashMap::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
    }

    fn ex(word: &str, vars: &[(&str, &str)]) -> Result<String, String> {
        let g: HashMap<String, Option<String>> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect();
        Expander::new('\\')
            .expand(word, &Scope::Global(&g), 1)
            .map_err(|e| e.message)
    }

    /// Cases worked out from upstream's lexer (shell/lex.go): pattern → regex, RE2 match.
    #[test]
    fn pattern_substitutions_as_upstream() {
        let v = [
            ("V", "prefix-app.tar.gz"),
            ("E", ""),
            ("W", "a[b]c"),
            ("S", "a*b*c"),
            ("B", "x}y"),
            ("P", "a/b/c"),
            ("H", "#*."),
            ("R", "<$0>"),
            ("D", "$$x$1${0}${0$"),
            ("N", "a\nb"),
            ("M", "héllo"),
        ];
        let cases: &[(&str, &str)] = &[
            // Shortest and longest prefix and suffix.
            ("${V#*.}", "tar.gz"),
            ("${V##*.}", "gz"),
            ("${V%.*}", "prefix-app.tar"),
            ("${V%%.*}", "prefix-app"),
            ("${V#prefix-}", "app.tar.gz"),
            ("${V#?}", "refix-app.tar.gz"),
            ("${V%??}", "prefix-app.tar."),
            ("${V#p*x}", "-app.tar.gz"),
            // Nothing matches, empty pattern, empty or unset variable.
            ("${V#nomatch}", "prefix-app.tar.gz"),
            ("${V%nomatch}", "prefix-app.tar.gz"),
            ("${V#}", "prefix-app.tar.gz"),
            ("${V%%}", "prefix-app.tar.gz"),
            ("${E#*}", ""),
            ("${U%%x}", ""),
            // Upstream also takes them after a colon.
            ("${V:#prefix-}", "app.tar.gz"),
            ("${V:%%.*}", "prefix-app"),
            // Brackets are literal: no character classes.
            ("${W#a[b]}", "c"),
            ("${V#[p]}", "prefix-app.tar.gz"),
            // Escaped wildcards are literal, and `%` keeps `\*` pairs when it reverses.
            ("${S#*\\*}", "b*c"),
            ("${S##*\\*}", "c"),
            ("${S%\\**}", "a*b"),
            ("${S%%\\**}", "a"),
            ("${B#x\\}}", "y"),
            // Quotes do not protect wildcards (upstream removes them first).
            ("${V#'*.'}", "tar.gz"),
            // The doubled operator is seen after expansion.
            ("${V#$H}", "gz"),
            ("${V#${X:-prefix}-}", "app.tar.gz"),
            // `.` does not match a newline in RE2, so neither does `*`.
            ("${N##*}", "\nb"),
            ("${M#h?}", "llo"),
            // Replacement: first match, every match, greedy, with nothing.
            ("${V/a/A}", "prefix-App.tar.gz"),
            ("${V//a/A}", "prefix-App.tAr.gz"),
            ("${V/.*/}", "prefix-app"),
            ("${B//x}/-}", "-y"),
            ("${V/nomatch/y}", "prefix-app.tar.gz"),
            ("${V//*/x}", "x"),
            ("${E/*/x}", "x"),
            ("${E//*/x}", "x"),
            ("${U//a/b}", ""),
            ("${P//\\//-}", "a-b-c"),
            ("${V/#p/q}", "prefix-app.tar.gz"),
            // Only the replace-all form reads `$` in the replacement as Go's template.
            ("${V/a/$R}", "prefix-<$0>pp.tar.gz"),
            ("${V//a/$R}", "prefix-<a>pp.t<a>r.gz"),
            ("${V//prefix-app/$D}", "$xprefix-app${0$.tar.gz"),
        ];
        for (word, want) in cases {
            assert_eq!(ex(word, &v).as_deref(), Ok(*want), "{word}");
        }
        // Upstream rejects these too.
        for (word, msg) in [
            ("${V#\\a}", "invalid escape"),
            ("${V%x\\}", "missing `}`"),
            ("${V:/a/b}", "unsupported modifier `:/`"),
            ("${V/a}", "missing `/`"),
            ("${V//a/b", "missing `}`"),
        ] {
            let e = ex(word, &v).unwrap_err();
            assert!(e.contains(msg), "{word}: {e}");
        }
    }

    #[test]
    fn names_are_read_as_buildkit_reads_them() {
        let v = [("1", "one"), ("12", "twelve"), ("abc", "ABC"), ("é", "e")];
        for (word, want) in [
            // A name that starts with a digit is the digits alone.
            ("src$1abc", "srconeabc"),
            ("$12x", "twelvex"),
            ("${1}", "one"),
            // Special parameters are one character, and never set.
            ("a$@b", "ab"),
            ("a$$b", "ab"),
            ("${@}x", "x"),
            ("$#", ""),
            ("$abc.$é", "ABC.e"),
            ("a$", "a$"),
            ("a$/b", "a$/b"),
        ] {
            assert_eq!(ex(word, &v).as_deref(), Ok(want), "{word}");
        }
    }

    #[test]
    fn pattern_substitutions_are_bounded() {
        // Each substitution matches a long pattern against a long value.
        let mut df = format!(
            "ARG A={}\nARG P={}\n",
            "a".repeat(60_000),
            "*a".repeat(2_000)
        );
        for _ in 0..200 {
            df.push_str("ARG B=${A#$P}\n");
        }
        df.push_str("FROM a\n");
        let e = analyze(&df, None, &HashMap::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge, "{e}");
        assert!(e.message.contains("unbounded time"), "{e}");
        // Replacing every character by a long text.
        let df = format!(
            "FROM a\nARG A={}\nARG R={}\nCOPY ${{A//?/$R}} /\n",
            "a".repeat(60_000),
            "r".repeat(60_000)
        );
        too_large_at(&df, 4, "more than 16 MiB");
    }

    /// Steps are numbered as BuildKit names them: `FROM` of an image counts, `FROM` of a
    /// stage or `scratch` does not, `WORKDIR /` counts in the total but takes no number, and
    /// `ENV`/`LABEL` make no step.
    #[test]
    fn steps_are_numbered_as_buildkit_names_them() {
        let df = "FROM a AS one\nWORKDIR /\nENV X=1\nCOPY x /x\nWORKDIR /app\nRUN r\nLABEL l=1\n\
                  FROM one\nRUN s\nFROM scratch AS three\nCOPY --from=one /x /x\n";
        let u = analyze(df, None, &HashMap::new()).unwrap();
        let labels: Vec<(&str, usize)> = u
            .stages
            .iter()
            .map(|s| (s.label.as_str(), s.numbered))
            .collect();
        assert_eq!(labels, [("one", 5), ("stage-1", 1), ("three", 1)]);
        let numbers: Vec<(usize, Option<usize>)> =
            u.steps.iter().map(|s| (s.line, s.number)).collect();
        assert_eq!(
            numbers,
            [
                (1, Some(1)),
                (2, None),
                (3, None),
                (4, Some(2)),
                (5, Some(3)),
                (6, Some(4)),
                (7, None),
                (8, None),
                (9, Some(1)),
                (10, None),
                (11, Some(1)),
            ]
        );
        assert_eq!(u.steps[10].reads, [StepRead::Stage(0)]);
        // One stage: no label, unless it reads an image or named context, which BuildKit
        // counts as a stage of its own.
        let u = analyze("FROM a\nRUN x\n", None, &HashMap::new()).unwrap();
        assert_eq!(u.stages[0].label, "");
        let u = analyze("FROM a\nCOPY --from=img /x /x\n", None, &HashMap::new()).unwrap();
        assert_eq!(u.stages[0].label, "stage-0");
        assert_eq!(u.steps[1].reads, [StepRead::Named("img".into())]);
    }

    #[test]
    fn steps_record_what_they_read_and_their_heredocs() {
        let df = "FROM a\nARG V\nCOPY src/ *.json /app/\nRUN --mount=type=bind,source=tools,target=/t --mount=type=tmpfs,target=/tmp <<EOF\necho $V\nEOF\nADD https://example.com/f /f\n";
        let u = analyze(df, None, &HashMap::new()).unwrap();
        assert_eq!(
            u.steps[2].reads,
            [
                StepRead::Context("src".into()),
                StepRead::Context("*.json".into())
            ]
        );
        assert_eq!(u.steps[3].reads, [StepRead::Context("tools".into())]);
        assert_eq!(u.steps[3].args, ["V"]);
        assert!(u.steps[3].key.contains("echo $V"), "{}", u.steps[3].key);
        assert_eq!(
            u.steps[4].reads,
            [StepRead::Remote("https://example.com/f".into())]
        );
    }
}
