//! Line-oriented progress for CI logs and `--progress plain`: every line
//! starts with the service name, so parallel builds stay readable.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::orchestrate::event::{BuildEvent, StatusUpdate};
use crate::orchestrate::Reporter;

/// How many of a failing step's last output lines are shown.
const TAIL: usize = 20;

/// Prints progress lines to stderr (through [`super::printer`]).
pub struct PlainReporter {
    state: Mutex<HashMap<String, ServiceState>>,
    quiet: bool,
}

#[derive(Default)]
struct ServiceState {
    numbers: HashMap<String, usize>,
    names: HashMap<String, String>,
    announced: HashMap<String, bool>,
    finished: HashMap<String, bool>,
    tail: HashMap<String, Vec<String>>,
    failed_vertex: Option<String>,
}

impl PlainReporter {
    /// A reporter; `quiet` prints only errors.
    pub fn new(quiet: bool) -> Self {
        Self {
            state: Mutex::new(HashMap::new()),
            quiet,
        }
    }
}

fn line(out: &mut String, service: &str, text: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "[{service}] {text}");
}

impl ServiceState {
    fn number(&mut self, digest: &str) -> usize {
        let next = self.numbers.len() + 1;
        *self.numbers.entry(digest.to_string()).or_insert(next)
    }

    fn status(&mut self, service: &str, u: StatusUpdate, quiet: bool, out: &mut String) {
        for v in u.vertexes {
            if v.started.is_none() && !v.cached && v.error.is_empty() {
                // Not started yet: number it when it starts, so the numbers
                // follow the order the user sees.
                self.names.insert(v.digest.clone(), v.name.clone());
                continue;
            }
            let n = self.number(&v.digest);
            self.names.insert(v.digest.clone(), v.name.clone());
            let announced = self.announced.get(&v.digest).copied().unwrap_or(false);
            if !announced && (v.started.is_some() || v.cached) {
                self.announced.insert(v.digest.clone(), true);
                if !quiet {
                    line(out, service, &format!("#{n} {}", v.name));
                }
            }
            if v.completed.is_some() && !self.finished.get(&v.digest).copied().unwrap_or(false) {
                self.finished.insert(v.digest.clone(), true);
                if !v.error.is_empty() {
                    self.failed_vertex = Some(v.digest.clone());
                    if !quiet {
                        line(out, service, &format!("#{n} ERROR: {}", v.error));
                    }
                } else if !quiet {
                    if v.cached {
                        line(out, service, &format!("#{n} CACHED"));
                    } else {
                        let took = match (v.started, v.completed) {
                            (Some(s), Some(c)) => c.duration_since(s).unwrap_or_default(),
                            _ => Default::default(),
                        };
                        line(
                            out,
                            service,
                            &format!("#{n} DONE {}", super::duration(took)),
                        );
                    }
                }
            }
        }
        for l in u.logs {
            let n = self.number(&l.vertex);
            let text = String::from_utf8_lossy(&l.data);
            let tail = self.tail.entry(l.vertex.clone()).or_default();
            for part in text.lines() {
                tail.push(part.to_string());
                if tail.len() > TAIL {
                    tail.remove(0);
                }
                if !quiet {
                    line(out, service, &format!("#{n} {part}"));
                }
            }
        }
        for w in u.warnings {
            if !quiet {
                let n = self.number(&w.vertex);
                line(out, service, &format!("#{n} WARNING: {}", w.short));
            }
        }
    }
}

impl Reporter for PlainReporter {
    fn report(&self, event: BuildEvent) {
        let mut out = String::new();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            BuildEvent::Started {
                service,
                image,
                node,
                retry,
                pooled,
                handoffs,
            } => {
                state.entry(service.clone()).or_default();
                if let Some(why) = &retry {
                    // Said even with -q: the build took another path.
                    line(&mut out, &service, why);
                }
                if !self.quiet {
                    for h in &handoffs {
                        line(&mut out, &service, &h.describe(&service, node.as_deref()));
                    }
                }
                if !self.quiet {
                    let on = match node.filter(|_| pooled) {
                        Some(n) => format!(" on `{n}`"),
                        None => String::new(),
                    };
                    line(&mut out, &service, &format!("building image `{image}`{on}"));
                }
            }
            BuildEvent::Status { service, update } => {
                state
                    .entry(service.clone())
                    .or_default()
                    .status(&service, update, self.quiet, &mut out);
            }
            BuildEvent::Finished { service, outcome } => {
                let st = state.entry(service.clone()).or_default();
                match &outcome.error {
                    None if outcome.from_registry => {
                        if !self.quiet {
                            line(
                                &mut out,
                                &service,
                                &format!(
                                    "up to date (registry): `{}` {} ({}the registry holds a build of these inputs)",
                                    outcome.image,
                                    outcome.image_id.as_deref().map(short_id).unwrap_or("?"),
                                    if outcome.pulled { "pulled: " } else { "" }
                                ),
                            );
                        }
                    }
                    None if outcome.up_to_date => {
                        if !self.quiet {
                            line(
                                &mut out,
                                &service,
                                &format!(
                                    "up to date: `{}` {} (nothing changed since it was built)",
                                    outcome.image,
                                    outcome.image_id.as_deref().map(short_id).unwrap_or("?")
                                ),
                            );
                        }
                    }
                    None => {
                        if !self.quiet {
                            line(
                                &mut out,
                                &service,
                                &format!(
                                    "built `{}` {} in {} ({})",
                                    outcome.image,
                                    outcome.image_id.as_deref().map(short_id).unwrap_or("?"),
                                    super::duration(outcome.elapsed),
                                    super::summary::sent(&outcome.transfer),
                                ),
                            );
                        }
                    }
                    Some(err) => {
                        let _ = writeln!(out, "error: service `{service}` failed to build: {err}");
                        if let Some(d) = &st.failed_vertex {
                            if let Some(name) = st.names.get(d) {
                                let _ = writeln!(out, "  failing step: {name}");
                            }
                            if let Some(tail) = st.tail.get(d).filter(|t| !t.is_empty()) {
                                let _ = writeln!(out, "  its last output:");
                                for l in tail {
                                    let _ = writeln!(out, "    {l}");
                                }
                            }
                        }
                        if let Some(h) = &outcome.hint {
                            let _ = writeln!(out, "hint: {h}");
                        }
                    }
                }
            }
        }
        // Written while the state is locked, so lines keep their order.
        super::printer::stderr_text(&out);
    }
}

/// `sha256:0123456789ab…` → `0123456789ab`.
pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}
