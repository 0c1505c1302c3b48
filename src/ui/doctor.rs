//! `cbuild doctor`: the checkup as lines on stdout, its failures as errors
//! (with their hints) on stderr.

use super::Printer;
use crate::orchestrate::doctor::Checkup;

/// Prints the checkup.
pub fn print(printer: &Printer, c: &Checkup) {
    printer.data_line(&format!("cbuild {}", env!("CARGO_PKG_VERSION")));
    printer.data_line(&format!("builder:   {}", c.builder));
    printer.data_line(&format!("from:      {}", c.source));
    match &c.engine {
        Some(Ok(v)) => printer.data_line(&format!(
            "engine:    Docker {} (API {}), storage driver {}{}",
            v.version,
            v.api_version,
            v.storage_driver,
            if v.containerd_store {
                " (containerd image store)"
            } else {
                ""
            }
        )),
        Some(Err(e)) => printer.error(
            e,
            Some("builds still run, but none can be skipped as up to date"),
        ),
        None => {}
    }
    match &c.export {
        Some(Ok(choice)) => {
            printer.data_line(&format!("exporter:  {}", choice.exporter.kind()));
            printer.data_line(&format!("images:    {}", choice.store));
        }
        Some(Err(e)) => printer.error(e, Some(&e.hint())),
        None => {}
    }
    match &c.buildkit {
        Ok(b) => {
            printer.data_line(&format!(
                "buildkit:  {}",
                b.version
                    .as_deref()
                    .unwrap_or("unknown (older than v0.11, which added the Info call)")
            ));
            for (id, platforms) in &b.workers {
                printer.data_line(&format!("worker:    {id} [{}]", platforms.join(", ")));
            }
            if b.workers.is_empty() {
                printer.data_line("problem:   the builder has no workers");
            }
        }
        Err(e) => printer.error(e, e.hint().as_deref()),
    }
}
