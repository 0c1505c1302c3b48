//! The end of `cbuild build`: the plan of `--dry-run`, and the closing
//! table with one line per service and the count of failures.

use super::{duration, plain::short_id, Printer};
use crate::orchestrate::event::{ServiceOutcome, TransferSnapshot};
use crate::orchestrate::ServiceBuild;

/// What the daemon pulled from cbuild, said the same way in every output
/// (live line, plain log, summary table; the JSON fields carry the same
/// names): the build context(s), and apart from it the Dockerfile and its
/// ignore file, which BuildKit reads through a local of their own.
pub fn sent(t: &TransferSnapshot) -> String {
    let (files, bytes) = dockerfile_sent(t);
    let mut s = format!(
        "context: {}, {} sent",
        super::context::files(t.context_files_sent),
        super::bytes(t.context_bytes_sent)
    );
    if files > 0 {
        s.push_str(&format!(
            "; dockerfile: {}, {} sent",
            super::context::files(files),
            super::bytes(bytes)
        ));
    }
    s
}

/// Files and bytes of the `dockerfile` local: whatever was sent that was
/// not a build context.
pub fn dockerfile_sent(t: &TransferSnapshot) -> (u64, u64) {
    (
        t.files_sent.saturating_sub(t.context_files_sent),
        t.bytes_sent.saturating_sub(t.context_bytes_sent),
    )
}

/// `--dry-run`: what would be built, in order, on stdout.
pub fn dry_run(printer: &Printer, builds: &[ServiceBuild]) {
    for b in builds {
        let line = match &b.same_as {
            Some(other) => format!(
                "would reuse `{other}`'s build for `{}` (same image `{}`)",
                b.service, b.image
            ),
            None if b.deps.is_empty() => format!("would build `{}` as `{}`", b.service, b.image),
            None => format!(
                "would build `{}` as `{}` after {}",
                b.service,
                b.image,
                b.deps.join(", ")
            ),
        };
        printer.data_line(&line);
    }
}

/// The closing table (not under `quiet` or `json`), then the failures.
pub fn print(printer: &Printer, results: &[(String, ServiceOutcome)]) {
    use super::Mode;
    if !matches!(printer.mode(), Mode::Json | Mode::Quiet) {
        let mut text = String::from("\n");
        for (service, o) in results {
            text.push_str(&row(service, o));
            text.push('\n');
        }
        super::printer::stderr_text(&text);
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, o)| o.error.is_some())
        .map(|(s, _)| s.as_str())
        .collect();
    let advised: Vec<&str> = results
        .iter()
        .filter(|(_, o)| o.advice > 0 && o.error.is_none())
        .map(|(s, _)| s.as_str())
        .collect();
    if !advised.is_empty() && printer.mode() != Mode::Json {
        printer.hint(&format!(
            "`cbuild why --advise {}` shows how to keep more of the cache",
            advised.join(" ")
        ));
    }
    if !failed.is_empty() {
        printer.always(&format!(
            "error: {} of {} services failed: {}",
            failed.len(),
            results.len(),
            failed.join(", ")
        ));
    }
}

/// One service's line of the closing table.
fn row(service: &str, o: &ServiceOutcome) -> String {
    match &o.image_id {
        Some(id) if o.from_registry => format!(
            " {service:<20} up to date (registry)  {}  {:<12}",
            o.image,
            short_id(id)
        ),
        Some(id) if o.up_to_date => format!(
            " {service:<20} up to date  {}  {:<12}",
            o.image,
            short_id(id)
        ),
        Some(id) => format!(
            " {service:<20} built    {}  {:<12}  {:>8}  {} steps run, {} cached  {}",
            o.image,
            short_id(id),
            duration(o.elapsed),
            o.steps_run,
            o.steps_cached,
            sent(&o.transfer)
        ),
        None => format!(
            " {service:<20} FAILED   {}  {:>8}",
            o.image,
            duration(o.elapsed)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer() -> TransferSnapshot {
        // Three context files (40 B), and the Dockerfile with its
        // `.dockerignore` (361 B) through the `dockerfile` local.
        TransferSnapshot {
            files_sent: 5,
            bytes_sent: 401,
            context_files_sent: 3,
            context_bytes_sent: 40,
            ..Default::default()
        }
    }

    #[test]
    fn the_context_and_the_dockerfile_are_counted_apart() {
        assert_eq!(
            sent(&transfer()),
            "context: 3 files, 40 B sent; dockerfile: 2 files, 361 B sent"
        );
        let only_context = TransferSnapshot {
            files_sent: 1,
            bytes_sent: 5,
            context_files_sent: 1,
            context_bytes_sent: 5,
            ..Default::default()
        };
        assert_eq!(sent(&only_context), "context: 1 file, 5 B sent");
    }

    #[test]
    fn the_summary_row_says_it_as_the_live_lines_do() {
        let o = ServiceOutcome {
            image_id: Some("sha256:0123456789abcdef".into()),
            transfer: transfer(),
            ..ServiceOutcome::without_build("img".into(), std::time::Duration::from_secs(2))
        };
        let r = row("web", &o);
        assert!(
            r.ends_with("context: 3 files, 40 B sent; dockerfile: 2 files, 361 B sent"),
            "{r}"
        );
    }
}
