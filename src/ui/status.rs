//! `cbuild status`: one line per service and one per container, or JSON,
//! on stdout.

use std::fmt::Write;

use super::Printer;
use crate::orchestrate::status::ServiceStatus;

/// Prints the services' states.
pub fn print(
    printer: &Printer,
    list: &[ServiceStatus],
    json: bool,
) -> Result<(), serde_json::Error> {
    if json {
        printer.data_line(&serde_json::to_string_pretty(list)?);
        return Ok(());
    }
    printer.data(&text(list));
    Ok(())
}

fn text(list: &[ServiceStatus]) -> String {
    let mut out = String::new();
    for s in list {
        // Writing to a String cannot fail.
        let _ = write!(out, "{:<20} {:<10} {}", s.service, s.state, s.image);
        if let Some(r) = &s.reason {
            let _ = write!(out, "  ({r})");
        }
        out.push('\n');
        for c in &s.containers {
            let _ = writeln!(
                out,
                "  container {} {}: {}",
                c.name,
                c.state,
                if c.current_image {
                    "runs the current image"
                } else {
                    "runs an OLDER image"
                }
            );
        }
    }
    out
}
