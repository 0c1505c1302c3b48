//! Live progress on a terminal: one line per service (indicatif), showing
//! the step running, steps done and cached, context bytes sent and the
//! elapsed time. Failures are printed above the lines with the failing
//! step's last output.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::orchestrate::event::{BuildEvent, StatusUpdate};
use crate::orchestrate::Reporter;

const TAIL: usize = 12;

/// Draws one live line per service on stderr.
pub struct TtyReporter {
    multi: MultiProgress,
    state: Mutex<HashMap<String, Line>>,
}

struct Line {
    bar: ProgressBar,
    names: HashMap<String, String>,
    done: HashMap<String, bool>,
    running: Vec<String>,
    steps_total: usize,
    done_count: usize,
    cached: usize,
    context_bytes: i64,
    tail: HashMap<String, Vec<String>>,
    failed: Option<String>,
}

impl Default for TtyReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl TtyReporter {
    /// A reporter drawing on stderr.
    pub fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            state: Mutex::new(HashMap::new()),
        }
    }
}

/// `[2/4] RUN make` → `(2, 4)`.
fn step_numbers(name: &str) -> Option<(usize, usize)> {
    let inner = name.strip_prefix('[')?.split(']').next()?;
    let inner = inner.rsplit(' ').next()?;
    let (a, b) = inner.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Line {
    fn update(&mut self, u: StatusUpdate) {
        for v in u.vertexes {
            self.names.insert(v.digest.clone(), v.name.clone());
            if let Some((_, m)) = step_numbers(&v.name) {
                self.steps_total = self.steps_total.max(m);
            }
            let finished = v.completed.is_some() || v.cached;
            if finished {
                self.running.retain(|d| d != &v.digest);
                if !self.done.get(&v.digest).copied().unwrap_or(false) {
                    self.done.insert(v.digest.clone(), true);
                    if step_numbers(&v.name).is_some() {
                        self.done_count += 1;
                        if v.cached {
                            self.cached += 1;
                        }
                    }
                }
                if !v.error.is_empty() {
                    self.failed = Some(v.digest.clone());
                }
            } else if v.started.is_some() && !self.running.contains(&v.digest) {
                self.running.push(v.digest.clone());
            }
        }
        for p in u.progress {
            // The contexts' transfers, not the Dockerfile's (as in `summary::sent`).
            if p.id.starts_with("transferring") && !p.id.starts_with("transferring dockerfile") {
                self.context_bytes = self.context_bytes.max(p.current);
            }
        }
        for l in u.logs {
            let tail = self.tail.entry(l.vertex).or_default();
            for line in String::from_utf8_lossy(&l.data).lines() {
                tail.push(line.to_string());
                if tail.len() > TAIL {
                    tail.remove(0);
                }
            }
        }
        let current = self
            .running
            .last()
            .and_then(|d| self.names.get(d))
            .cloned()
            .unwrap_or_default();
        let mut msg = String::new();
        if self.steps_total > 0 {
            msg.push_str(&format!("{}/{} ", self.done_count, self.steps_total));
        }
        if self.cached > 0 {
            msg.push_str(&format!("({} cached) ", self.cached));
        }
        if self.context_bytes > 0 {
            msg.push_str(&format!(
                "context: {} ",
                super::bytes(self.context_bytes as u64)
            ));
        }
        msg.push_str(&current);
        self.bar.set_message(msg);
    }
}

impl Reporter for TtyReporter {
    fn report(&self, event: BuildEvent) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            BuildEvent::Started {
                service,
                node,
                retry,
                pooled,
                handoffs,
                ..
            } => {
                if let Some(why) = &retry {
                    let _ = self.multi.println(format!("{service}: {why}"));
                }
                for h in &handoffs {
                    let text = h.describe(&service, node.as_deref());
                    let _ = self.multi.println(format!("{service}: {text}"));
                }
                if let Some(old) = state.remove(&service) {
                    old.bar.finish_and_clear();
                }
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {prefix:<16.bold} {elapsed:>4} {wide_msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(service.clone());
                if let Some(n) = node.filter(|_| pooled) {
                    bar.set_message(format!("on {n}"));
                }
                bar.enable_steady_tick(Duration::from_millis(100));
                state.insert(
                    service,
                    Line {
                        bar,
                        names: HashMap::new(),
                        done: HashMap::new(),
                        running: Vec::new(),
                        steps_total: 0,
                        done_count: 0,
                        cached: 0,
                        context_bytes: 0,
                        tail: HashMap::new(),
                        failed: None,
                    },
                );
            }
            BuildEvent::Status { service, update } => {
                if let Some(line) = state.get_mut(&service) {
                    line.update(update);
                }
            }
            BuildEvent::Finished { service, outcome } => {
                let Some(line) = state.get_mut(&service) else {
                    return;
                };
                line.bar.set_style(
                    ProgressStyle::with_template("{prefix:<18.bold} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                line.bar.set_prefix(match outcome.error {
                    None => format!("✔ {service}"),
                    Some(_) => format!("✘ {service}"),
                });
                match &outcome.error {
                    None => line.bar.finish_with_message(format!(
                        "built {} in {} ({} steps, {} cached; {})",
                        outcome.image,
                        super::duration(outcome.elapsed),
                        line.done_count,
                        line.cached,
                        super::summary::sent(&outcome.transfer),
                    )),
                    Some(err) => {
                        line.bar.finish_with_message(format!(
                            "failed after {}",
                            super::duration(outcome.elapsed)
                        ));
                        let mut text = format!("error: service `{service}` failed to build: {err}");
                        if let Some(d) = &line.failed {
                            if let Some(name) = line.names.get(d) {
                                text.push_str(&format!("\n  failing step: {name}"));
                            }
                            if let Some(tail) = line.tail.get(d).filter(|t| !t.is_empty()) {
                                text.push_str("\n  its last output:");
                                for l in tail {
                                    text.push_str(&format!("\n    {l}"));
                                }
                            }
                        }
                        if let Some(h) = &outcome.hint {
                            text.push_str(&format!("\nhint: {h}"));
                        }
                        let _ = self.multi.println(text);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn step_numbers_from_vertex_names() {
        assert_eq!(super::step_numbers("[2/4] RUN make"), Some((2, 4)));
        assert_eq!(super::step_numbers("[build 3/5] COPY . ."), Some((3, 5)));
        assert_eq!(super::step_numbers("[internal] load .dockerignore"), None);
    }
}
