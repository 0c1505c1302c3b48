//! The one place that writes to the terminal's streams (uv's `printer.rs`).
//!
//! stdout carries data only: what a command was asked to print (`cbuild
//! config`, `context`, `status`, `bench` tables, `--progress json` events).
//! Everything else (warnings, errors, hints, notes, progress) goes to
//! stderr, and the [`Mode`] decides how much of it is shown.
//!
//! A reader that stops reading (`cbuild config | head -c 10`) is a normal
//! end, as in ripgrep: the first broken-pipe write marks stdout closed, no
//! message is printed, later data is dropped, and the command finishes and
//! exits as it would have. Any other stdout error (a full disk) is kept and
//! reported once at exit ([`Printer::take_stdout_error`]). Writes to stderr
//! never fail a command: there is nowhere left to say so.

use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::orchestrate::Reporter;

/// How much cbuild says on stderr, and how it draws build progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Errors only; no progress, notes or hints.
    Quiet,
    /// Line-oriented progress (CI logs, `--progress plain`).
    Plain,
    /// Live lines on a terminal (indicatif).
    Tty,
    /// Progress as JSON lines on stdout; stderr carries warnings and errors.
    Json,
}

/// Decides what goes to stdout and stderr. Cheap to clone; clones share
/// the state of stdout.
#[derive(Clone, Debug)]
pub struct Printer {
    mode: Mode,
    stdout: Arc<StdoutState>,
}

#[derive(Debug, Default)]
struct StdoutState {
    /// The reader went away: data is dropped from now on.
    closed: AtomicBool,
    /// A write failed for another reason.
    error: Mutex<Option<std::io::Error>>,
}

impl Printer {
    /// A printer for this mode.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            stdout: Arc::default(),
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Writes data to stdout as it is (include the newlines).
    pub fn data(&self, text: &str) {
        if self.stdout.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut out = std::io::stdout().lock();
        let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                self.stdout.closed.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                self.stdout.closed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = self.stdout.error.lock() {
                    slot.get_or_insert(e);
                }
            }
        }
    }

    /// Writes one line of data to stdout.
    pub fn data_line(&self, line: &str) {
        self.data(&format!("{line}\n"));
    }

    /// A stdout write error other than a closed pipe, once.
    pub fn take_stdout_error(&self) -> Option<std::io::Error> {
        self.stdout.error.lock().ok()?.take()
    }

    /// A message for the user on stderr: hidden under `Quiet`.
    pub fn note(&self, line: &str) {
        if self.mode != Mode::Quiet {
            stderr_line(line);
        }
    }

    /// A message on stderr that is never hidden (a failure summary).
    pub fn always(&self, line: &str) {
        stderr_line(line);
    }

    /// `warning: …` on stderr.
    pub fn warning(&self, message: &str) {
        stderr_line(&format!("warning: {message}"));
    }

    /// `hint: …` on stderr: hidden under `Quiet`.
    pub fn hint(&self, message: &str) {
        self.note(&format!("hint: {message}"));
    }

    /// An error with its causes and an optional hint, the way cbuild
    /// reports every failure: `error:`, `  Caused by:` lines, `hint:`.
    pub fn error(&self, err: &(dyn std::error::Error + 'static), hint: Option<&str>) {
        stderr_line(&error_text(err, hint));
    }

    /// The build progress reporter this mode draws with.
    pub fn reporter(&self) -> Arc<dyn Reporter> {
        match self.mode {
            Mode::Json => Arc::new(super::json::JsonReporter::new(self.clone())),
            Mode::Quiet => Arc::new(super::plain::PlainReporter::new(true)),
            Mode::Plain => Arc::new(super::plain::PlainReporter::new(false)),
            Mode::Tty => Arc::new(super::tty::TtyReporter::new()),
        }
    }
}

/// The text [`Printer::error`] prints, without the final newline.
pub fn error_text(err: &(dyn std::error::Error + 'static), hint: Option<&str>) -> String {
    let mut text = format!("error: {err}");
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(&format!("\n  Caused by: {c}"));
        cause = c.source();
    }
    if let Some(h) = hint {
        text.push_str(&format!("\nhint: {h}"));
    }
    text
}

/// Writes a line to stderr, ignoring failures (a closed stderr has no
/// one left to tell).
pub(super) fn stderr_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Writes text to stderr as it is, ignoring failures.
pub(super) fn stderr_text(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read `compose.yaml`")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_is_printed_once_with_the_hint_last() {
        let e = Outer(std::io::Error::new(ErrorKind::NotFound, "no such file"));
        assert_eq!(
            error_text(&e, Some("pass `-f`")),
            "error: cannot read `compose.yaml`\n  Caused by: no such file\nhint: pass `-f`"
        );
    }
}
