//! `cbuild bench`: the report as a table (one block of rows per service) or
//! JSON, on stdout.

use std::fmt::Write;

use super::Printer;
use crate::bench::{BenchReport, Transfer};

/// Prints the report.
pub fn print(printer: &Printer, report: &BenchReport, json: bool) -> Result<(), serde_json::Error> {
    if json {
        printer.data_line(&serde_json::to_string_pretty(report)?);
    } else {
        printer.data(&table(report));
    }
    Ok(())
}

/// A milliseconds figure: `3.2ms`, `412ms`, `12.5s`.
fn msf(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}s", v / 1000.0)
    } else if v < 10.0 {
        format!("{v:.1}ms")
    } else {
        format!("{v:.0}ms")
    }
}

fn transfer(t: &Transfer) -> String {
    format!(
        "{} in {} ({:.1} MiB/s), build {}",
        super::bytes(t.bytes),
        msf(t.transfer_ms),
        t.mib_per_s,
        msf(t.build_ms)
    )
}

/// The report as a table, one block of rows per service.
pub fn table(report: &BenchReport) -> String {
    let mut out = format!("cbuild bench: median of {} run(s)\n", report.runs);
    for s in &report.services {
        let mut rows: Vec<(&str, String)> = vec![
            (
                "minimal context",
                format!(
                    "{} files, {}",
                    s.context_files,
                    super::bytes(s.context_bytes)
                ),
            ),
            (
                "walk+hash cold / warm",
                format!(
                    "{} / {} ({} files read warm)",
                    msf(s.walk_hash_cold_ms),
                    msf(s.walk_hash_warm_ms),
                    s.warm_files_hashed
                ),
            ),
            ("first transfer", transfer(&s.first_transfer)),
            (
                "one-file edit",
                match (&s.incremental_transfer, &s.edited_file) {
                    (Some(x), Some(f)) => format!("{} (`{f}`)", transfer(x)),
                    _ => "no file to edit".into(),
                },
            ),
            (
                "no-op build",
                format!(
                    "{} ({} sent)",
                    msf(s.noop_build_ms),
                    super::bytes(s.noop_bytes_sent)
                ),
            ),
        ];
        if let Some(d) = &s.docker {
            if let Some(x) = &d.first_transfer {
                rows.push(("docker: first transfer", transfer(x)));
            }
            if let Some(x) = &d.incremental_transfer {
                rows.push(("docker: one-file edit", transfer(x)));
            }
            if let Some(x) = d.noop_build_ms {
                rows.push(("docker: no-op build", msf(x)));
            }
            if let Some(e) = &d.error {
                rows.push(("docker", e.clone()));
            }
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "\n{}\n", s.service);
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<24} {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::ServiceBench;

    #[test]
    fn a_block_per_service() {
        let report = BenchReport {
            runs: 1,
            services: vec![ServiceBench {
                service: "app".into(),
                context_files: 3,
                context_bytes: 2048,
                walk_hash_cold_ms: 12.0,
                walk_hash_warm_ms: 1.5,
                warm_files_hashed: 0,
                first_transfer: Transfer {
                    build_ms: 800.0,
                    transfer_ms: 20.0,
                    files: Some(3),
                    bytes: 2048,
                    mib_per_s: 0.1,
                },
                incremental_transfer: None,
                edited_file: None,
                noop_build_ms: 300.0,
                noop_bytes_sent: 0,
                docker: None,
            }],
        };
        let t = table(&report);
        assert!(
            t.starts_with("cbuild bench: median of 1 run(s)\n\napp\n"),
            "{t}"
        );
        assert!(
            t.contains("  minimal context          3 files, 2.0 KiB\n"),
            "{t}"
        );
        assert!(
            t.contains("  first transfer           2.0 KiB in 20ms (0.1 MiB/s), build 800ms\n"),
            "{t}"
        );
        assert!(
            t.contains("  one-file edit            no file to edit\n"),
            "{t}"
        );
    }
}
