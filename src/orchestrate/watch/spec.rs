//! `develop.watch` as compose 2.40 reads it (compose-go `types.Trigger`):
//! which host paths a service watches, and what each change does.

use std::path::{Path, PathBuf};

use crate::compose::{ComposeError, Project, Service};
use crate::context::dockerignore::PatternMatcher;

/// What a change under a trigger's path does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    /// Copy the changed files into the running containers.
    Sync,
    /// Rebuild the image, then recreate the service's containers.
    Rebuild,
    /// Copy, then restart the containers.
    SyncRestart,
    /// Restart the containers.
    Restart,
    /// Copy, then run `exec.command` in each container.
    SyncExec,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "sync" => Action::Sync,
            "rebuild" => Action::Rebuild,
            "sync+restart" => Action::SyncRestart,
            "restart" => Action::Restart,
            "sync+exec" => Action::SyncExec,
            _ => return None,
        })
    }

    /// Whether the action copies files into the container.
    pub fn syncs(self) -> bool {
        matches!(self, Action::Sync | Action::SyncRestart | Action::SyncExec)
    }
}

/// One `develop.watch` entry, resolved.
#[derive(Clone, Debug)]
pub struct Trigger {
    /// Where it sits in the Compose model, for messages
    /// (`services.web.develop.watch[0]`).
    pub key: String,
    /// The watched host path, absolute.
    pub path: PathBuf,
    /// The action.
    pub action: Action,
    /// Where a synced path lands in the container (absolute).
    pub target: Option<String>,
    /// `ignore:`, relative to `path` (`.dockerignore` syntax).
    pub ignore: Option<PatternMatcher>,
    /// `include:`, relative to `path`: when set, only matching files count.
    pub include: Option<PatternMatcher>,
    /// `initial_sync:`: copy the whole path when watching starts.
    pub initial_sync: bool,
    /// `exec.command` for `sync+exec`.
    pub exec: Option<Vec<String>>,
    /// `exec.user`, `exec.workdir` and `exec.environment` (`K=V`).
    pub exec_user: Option<String>,
    /// `exec.working_dir`.
    pub exec_workdir: Option<String>,
    /// `exec.environment`.
    pub exec_env: Vec<String>,
}

impl Trigger {
    /// The container path of `host` (a path under [`Trigger::path`]).
    pub fn container_path(&self, host: &Path) -> Option<String> {
        let target = self.target.as_deref()?;
        let rel = host.strip_prefix(&self.path).ok()?;
        let rel = rel.to_string_lossy();
        Some(if rel.is_empty() {
            target.to_string()
        } else {
            format!("{}/{rel}", target.trim_end_matches('/'))
        })
    }

    /// Whether a change of `host` concerns this trigger: under its path,
    /// not ignored, and included when `include` is set. Directories are
    /// matched as their files would be, so a new directory is not dropped
    /// before its files are seen.
    pub fn matches(&self, host: &Path) -> bool {
        let Ok(rel) = host.strip_prefix(&self.path) else {
            return false;
        };
        let rel = rel.to_string_lossy();
        if rel.is_empty() {
            return true;
        }
        if default_ignored(&rel) {
            return false;
        }
        if let Some(ig) = &self.ignore {
            if ig.matches_or_parent_matches(&rel).unwrap_or(false) {
                return false;
            }
        }
        if let Some(inc) = &self.include {
            if !host.is_dir() && !inc.matches_or_parent_matches(&rel).unwrap_or(false) {
                return false;
            }
        }
        true
    }
}

impl Trigger {
    /// Whether a change under directory `dir` (under `path`) can concern
    /// this trigger: false when `dir` is left out by default (`.git`) or
    /// by `ignore:` with no `!` exception that could take something back.
    pub fn may_take_under(&self, dir: &Path) -> bool {
        let Ok(rel) = dir.strip_prefix(&self.path) else {
            return false;
        };
        let rel = rel.to_string_lossy();
        if rel.is_empty() {
            return true;
        }
        if default_ignored(&rel) {
            return false;
        }
        !self.ignore.as_ref().is_some_and(|ig| {
            !ig.exclusions() && ig.matches_or_parent_matches(&rel).unwrap_or(false)
        })
    }
}

/// What compose always leaves out of a watch: `.git` and editors'
/// temporary files (compose's `pkg/watch/ephemeral.go`, in short).
pub fn default_ignored(rel: &str) -> bool {
    rel.split('/').any(|part| {
        part == ".git"
            || part.ends_with('~')
            || part.ends_with(".swp")
            || part.ends_with(".swx")
            || part.ends_with(".swpx")
            || part == "4913"
            || (part.starts_with(".#"))
            || (part.starts_with('#') && part.ends_with('#'))
            || part.ends_with(".tmp") && part.starts_with(".goutputstream")
    })
}

/// The triggers of `service`, or an error naming the Compose file and key
/// (exit 2): an unknown action, a sync without `target`, a path outside
/// the project directory, a pattern that does not compile.
pub fn triggers(project: &Project, service: &Service) -> Result<Vec<Trigger>, ComposeError> {
    let file = project.files.first().cloned().unwrap_or_default();
    let base = format!("services.{}.develop.watch", service.name);
    let invalid = |key: String, message: String| ComposeError::Invalid {
        path: file.clone(),
        key,
        message,
        at: None,
    };
    let Some(list) = service
        .config
        .get("develop")
        .and_then(|d| d.get("watch"))
        .and_then(|w| w.as_array())
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, w) in list.iter().enumerate() {
        let key = format!("{base}[{i}]");
        let text = |k: &str| w.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let action_text = text("action").unwrap_or_default();
        let action = Action::parse(&action_text).ok_or_else(|| {
            invalid(
                format!("{key}.action"),
                format!("unknown action `{action_text}`; use one of sync, rebuild, sync+restart, restart, sync+exec"),
            )
        })?;
        let path = text("path")
            .ok_or_else(|| invalid(format!("{key}.path"), "`path` is required".into()))?;
        let path = lexical_absolute(&project.working_dir, Path::new(&path));
        if !path.starts_with(lexical_absolute(&project.working_dir, Path::new(""))) {
            return Err(invalid(
                format!("{key}.path"),
                format!(
                    "`{}` is outside the project directory `{}`; watch a path inside it",
                    path.display(),
                    project.working_dir.display()
                ),
            ));
        }
        let target = text("target");
        if action.syncs() && target.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                format!("{key}.target"),
                format!("`target` is required for the `{action_text}` action"),
            ));
        }
        if let Some(t) = &target {
            if !t.starts_with('/') {
                return Err(invalid(
                    format!("{key}.target"),
                    format!("`{t}` must be an absolute path in the container"),
                ));
            }
        }
        let patterns = |k: &str| -> Result<Option<PatternMatcher>, ComposeError> {
            let Some(list) = w.get(k).and_then(|v| v.as_array()) else {
                return Ok(None);
            };
            let pats: Vec<String> = list
                .iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect();
            PatternMatcher::new(&pats)
                .map(Some)
                .map_err(|e| invalid(format!("{key}.{k}"), e.to_string()))
        };
        let exec = w.get("exec");
        let exec_command = exec.and_then(|e| e.get("command")).map(|c| match c {
            serde_json::Value::String(s) => {
                crate::compose::shellwords::split(s).unwrap_or_else(|| vec![s.clone()])
            }
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect(),
            _ => Vec::new(),
        });
        if action == Action::SyncExec && exec_command.as_ref().is_none_or(Vec::is_empty) {
            return Err(invalid(
                format!("{key}.exec.command"),
                "the `sync+exec` action needs `exec.command`".into(),
            ));
        }
        let exec_env = match exec.and_then(|e| e.get("environment")) {
            Some(serde_json::Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    serde_json::Value::Null => k.clone(),
                    v => format!("{k}={v}"),
                })
                .collect(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        out.push(Trigger {
            path,
            action,
            target,
            ignore: patterns("ignore")?,
            include: patterns("include")?,
            initial_sync: w
                .get("initial_sync")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            exec: exec_command,
            exec_user: exec
                .and_then(|e| e.get("user"))
                .and_then(|v| v.as_str())
                .map(str::to_string),
            exec_workdir: exec
                .and_then(|e| e.get("working_dir"))
                .and_then(|v| v.as_str())
                .map(str::to_string),
            exec_env,
            key,
        });
    }
    Ok(out)
}

/// `base/p` with `.` and `..` resolved without touching the filesystem
/// (a watched path may not exist yet).
fn lexical_absolute(base: &Path, p: &Path) -> PathBuf {
    use std::path::Component;
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml_watch: serde_json::Value) -> (Project, Service) {
        let mut config = serde_json::Map::new();
        config.insert("develop".into(), serde_json::json!({ "watch": yaml_watch }));
        let service = Service {
            name: "web".into(),
            config,
            ..Default::default()
        };
        let project = Project {
            name: "p".into(),
            working_dir: "/proj".into(),
            files: vec!["/proj/compose.yaml".into()],
            ..Default::default()
        };
        (project, service)
    }

    #[test]
    fn entries_resolve_against_the_project() {
        let (p, s) = project(serde_json::json!([
            {"path": "./src", "action": "sync", "target": "/app/src", "ignore": ["*.log"]},
            {"path": "Dockerfile", "action": "rebuild"},
            {"path": "cfg", "action": "sync+exec", "target": "/cfg", "exec": {"command": "kill -HUP 1"}},
        ]));
        let t = triggers(&p, &s).unwrap();
        assert_eq!(t[0].path, Path::new("/proj/src"));
        assert_eq!(
            t[0].container_path(Path::new("/proj/src/a/b.js"))
                .as_deref(),
            Some("/app/src/a/b.js")
        );
        assert!(t[0].matches(Path::new("/proj/src/a/b.js")));
        assert!(!t[0].matches(Path::new("/proj/src/b.log")));
        // `.dockerignore` syntax: `*` does not cross `/` (compose's matcher).
        assert!(t[0].matches(Path::new("/proj/src/a/b.log")));
        assert!(!t[0].matches(Path::new("/proj/src/.git/HEAD")));
        assert!(!t[0].matches(Path::new("/proj/srcx/a")));
        assert_eq!(t[1].action, Action::Rebuild);
        assert_eq!(t[2].exec.as_deref().unwrap(), ["kill", "-HUP", "1"]);
    }

    #[test]
    fn bad_entries_name_their_key() {
        let check = |w: serde_json::Value, key: &str| {
            let (p, s) = project(w);
            let e = triggers(&p, &s).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        check(
            serde_json::json!([{"path": ".", "action": "copy"}]),
            "services.web.develop.watch[0].action",
        );
        check(
            serde_json::json!([{"path": ".", "action": "sync"}]),
            "services.web.develop.watch[0].target",
        );
        check(
            serde_json::json!([{"path": "../elsewhere", "action": "rebuild"}]),
            "services.web.develop.watch[0].path",
        );
        check(
            serde_json::json!([{"path": ".", "action": "sync+exec", "target": "/a"}]),
            "services.web.develop.watch[0].exec.command",
        );
    }
}
