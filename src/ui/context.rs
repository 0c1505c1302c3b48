//! `cbuild context`: the report of what each build would send, as text or
//! one JSON document on stdout, and the `hint:` lines on stderr.

use std::fmt::Write;

use super::{bytes, Printer};
use crate::orchestrate::ContextReport;

/// Prints the reports: the data to stdout, the hints to stderr.
pub fn print(
    printer: &Printer,
    reports: &[ContextReport],
    json: bool,
) -> Result<(), serde_json::Error> {
    if json {
        let doc = serde_json::json!({ "services": reports });
        printer.data_line(&serde_json::to_string_pretty(&doc)?);
    } else {
        let text: String = reports.iter().map(text).collect();
        printer.data(&text);
    }
    for r in reports {
        for d in &r.heavy_dirs {
            printer.hint(&format!(
                "add `{}` to a `.dockerignore` in `{}`: it would keep {} ({}) out of the context of `{}`",
                d.path,
                r.context,
                bytes(d.bytes),
                files(d.files),
                r.service
            ));
        }
    }
    Ok(())
}

/// `1 file`, `2 files`.
pub fn files(n: u64) -> String {
    if n == 1 {
        "1 file".to_string()
    } else {
        format!("{n} files")
    }
}

/// One service's report as text lines.
fn text(r: &ContextReport) -> String {
    let mut out = String::new();
    let scope = match &r.followpaths {
        None => "the whole context".to_string(),
        Some(p) if p.is_empty() => "the Dockerfile does not use the context".to_string(),
        Some(p) => format!(
            "followpaths {}",
            p.iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{}: {}, {} to send ({scope})",
        r.service,
        files(r.files),
        bytes(r.bytes)
    );
    let _ = writeln!(out, "  context      {}", r.context);
    let _ = writeln!(out, "  dockerfile   {}", r.dockerfile);
    if let Some(t) = &r.target {
        let _ = writeln!(out, "  target       {t}");
    }
    let _ = writeln!(
        out,
        "  ignore file  {}",
        r.ignore_file.as_deref().unwrap_or("none")
    );
    let _ = writeln!(out, "  digest       {}", r.digest);
    let _ = writeln!(
        out,
        "  excluded     {} entries, {}",
        r.excluded.entries,
        bytes(r.excluded.bytes)
    );
    for rule in &r.excluded.rules {
        let _ = writeln!(
            out,
            "    {:>10}  {} entries  line {}: `{}`",
            bytes(rule.bytes),
            rule.entries,
            rule.line,
            rule.pattern
        );
    }
    let _ = writeln!(
        out,
        "  hash cache   {} read ({}), {} cached",
        files(r.cache.files_read),
        bytes(r.cache.bytes_read),
        r.cache.files_cached
    );
    if !r.largest_dirs.is_empty() {
        let _ = writeln!(out, "  largest directories:");
        for d in &r.largest_dirs {
            let _ = writeln!(
                out,
                "    {:>10}  {} ({})",
                bytes(d.bytes),
                d.path,
                files(d.files)
            );
        }
    }
    if let Some(x) = &r.explain {
        let used = x
            .used_by
            .as_ref()
            .map(|u| {
                format!(
                    "; used by `{}` on Dockerfile line {}",
                    u.instruction, u.line
                )
            })
            .unwrap_or_default();
        let rule = |verb: &str| {
            format!(
                "{verb} by `{}` line {}: `{}`",
                x.ignore_file.as_deref().unwrap_or(".dockerignore"),
                x.line.unwrap_or(0),
                x.pattern.as_deref().unwrap_or("")
            )
        };
        let why = match x.status {
            "sent" => format!("sent{used}"),
            "reincluded" => format!("sent: {}{used}", rule("re-included")),
            "excluded" => format!("not sent: {}{used}", rule("excluded")),
            "not-used" => "not sent: not used by the Dockerfile".to_string(),
            _ => "not sent: no such path in the context".to_string(),
        };
        let _ = writeln!(out, "  explain      `{}`: {why}", x.path);
    }
    out
}
