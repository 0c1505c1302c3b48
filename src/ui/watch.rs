//! `cbuild watch`'s output: one line per service on a terminal
//! (`watching`, `syncing 3 files`, `rebuilding`, `✔ running a1b2c3
//! (verified)`, or the error), `[service] …` lines in plain mode, and one
//! JSON object per state change with `--progress json`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::printer::stderr_line;
use super::{Mode, Printer};
use crate::orchestrate::event::NoReporter;
use crate::orchestrate::watch::{WatchReporter, WatchState};
use crate::orchestrate::Reporter;

/// The watch reporter for the printer's mode, and the reporter rebuilds
/// draw with (on a terminal, a rebuild is the service's `rebuilding` line).
pub fn reporters(printer: &Printer) -> (Arc<dyn WatchReporter>, Arc<dyn Reporter>) {
    match printer.mode() {
        Mode::Tty => (Arc::new(TtyWatch::new()), Arc::new(NoReporter)),
        Mode::Json => (
            Arc::new(JsonWatch {
                printer: printer.clone(),
            }),
            printer.reporter(),
        ),
        Mode::Plain => (Arc::new(PlainWatch { quiet: false }), printer.reporter()),
        Mode::Quiet => (Arc::new(PlainWatch { quiet: true }), printer.reporter()),
    }
}

/// The words of a state, as every text output shows them.
pub fn text(state: &WatchState) -> String {
    match state {
        WatchState::Watching { paths } => {
            format!(
                "watching ({paths} path{})",
                if *paths == 1 { "" } else { "s" }
            )
        }
        WatchState::Syncing { files, deleted, .. } => {
            let mut t = format!("syncing {files} file{}", if *files == 1 { "" } else { "s" });
            if *deleted > 0 {
                t.push_str(&format!(", deleting {deleted}"));
            }
            t
        }
        WatchState::Unchanged { .. } => "no content changed".into(),
        WatchState::Rebuilding => "rebuilding".into(),
        WatchState::Restarting => "restarting".into(),
        WatchState::Executing => "running exec.command".into(),
        WatchState::Running {
            container,
            up_to_date,
            ..
        } => {
            let short: String = container.chars().take(6).collect();
            if *up_to_date {
                format!("✔ running {short} (verified, image up to date)")
            } else {
                format!("✔ running {short} (verified)")
            }
        }
        WatchState::Failed { error, hint } => match hint {
            Some(h) => format!("✘ {error} (hint: {h})"),
            None => format!("✘ {error}"),
        },
    }
}

struct TtyWatch {
    multi: MultiProgress,
    lines: Mutex<BTreeMap<String, ProgressBar>>,
}

impl TtyWatch {
    fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            lines: Mutex::new(BTreeMap::new()),
        }
    }
}

impl WatchReporter for TtyWatch {
    fn report(&self, service: &str, state: WatchState) {
        // The line keeps saying what was last done.
        if matches!(state, WatchState::Unchanged { .. }) {
            return;
        }
        let Ok(mut lines) = self.lines.lock() else {
            return;
        };
        let bar = lines.entry(service.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{prefix:.bold} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(format!("{service:<16}"));
            bar
        });
        bar.set_message(text(&state));
        // Redraw at once: a state is news, not a tick.
        bar.tick();
    }
}

struct PlainWatch {
    quiet: bool,
}

impl WatchReporter for PlainWatch {
    fn report(&self, service: &str, state: WatchState) {
        let unchanged = matches!(state, WatchState::Unchanged { .. });
        if unchanged || (self.quiet && !matches!(state, WatchState::Failed { .. })) {
            return;
        }
        stderr_line(&format!("[{service}] {}", text(&state)));
    }
}

struct JsonWatch {
    printer: Printer,
}

impl WatchReporter for JsonWatch {
    fn report(&self, service: &str, state: WatchState) {
        let mut v = serde_json::to_value(&state).unwrap_or_else(|_| json!({}));
        if let Some(m) = v.as_object_mut() {
            m.insert("event".into(), "watch".into());
            m.insert("service".into(), service.into());
        }
        self.printer.data_line(&v.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_the_issue_shows_them() {
        assert_eq!(
            text(&WatchState::Syncing {
                files: 3,
                deleted: 0,
                paths: Vec::new(),
            }),
            "syncing 3 files"
        );
        assert_eq!(
            text(&WatchState::Running {
                container: "a1b2c3d4e5f6".into(),
                image: "x".into(),
                verified_files: 1,
                up_to_date: false
            }),
            "✔ running a1b2c3 (verified)"
        );
    }
}
