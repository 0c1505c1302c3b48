//! `cbuild why`: the predicted steps, the last build's steps and the cache advice, as text or
//! JSON on stdout.

use std::fmt::Write;

use super::Printer;
use crate::orchestrate::why::{AdviceReport, HistoryReport, LastReport, Verdict, WhyReport};

/// Prints the predictions.
pub fn print(printer: &Printer, list: &[WhyReport], json: bool) -> Result<(), serde_json::Error> {
    emit(printer, list, json, prediction)
}

/// Every report of `list`: as one JSON array, or as the text `each` writes
/// for each report (writing to a String cannot fail, hence the `let _`s).
fn emit<T: serde::Serialize>(
    printer: &Printer,
    list: &[T],
    json: bool,
    each: fn(&mut String, &T),
) -> Result<(), serde_json::Error> {
    if json {
        printer.data_line(&serde_json::to_string_pretty(list)?);
    } else {
        let mut out = String::new();
        for r in list {
            each(&mut out, r);
        }
        printer.data(&out);
    }
    Ok(())
}

fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Runs => "runs",
        Verdict::Cached => "cached",
        Verdict::CannotTell => "cannot tell",
        Verdict::NotReached => "not built",
    }
}

fn prediction(out: &mut String, r: &WhyReport) {
    let _ = write!(out, "{}: {}", r.service, r.state);
    if let Some(reason) = &r.reason {
        let _ = write!(out, " ({reason})");
    }
    out.push('\n');
    let p = &r.prediction;
    if !p.changes.is_empty() {
        out.push_str("  changed files, by the instruction that first reads them:\n");
        for g in &p.changes {
            match (&g.line, &g.instruction) {
                (Some(line), Some(ins)) => {
                    let _ = writeln!(out, "    line {line} `{ins}`:");
                }
                _ => {
                    let _ = writeln!(out, "    read by no step ({}):", g.source);
                }
            }
            for f in g.files.iter().take(10) {
                let _ = writeln!(out, "      {} {}", f.kind, f.path);
            }
            if g.files.len() > 10 {
                let _ = writeln!(out, "      and {} more", g.files.len() - 10);
            }
        }
    }
    let first = p.steps.iter().find(|s| s.verdict == Verdict::Runs);
    if let Some(f) = first {
        let _ = writeln!(
            out,
            "  first step to re-run: [{}] line {} `{}`",
            f.step, f.line, f.instruction
        );
    }
    if !p.steps.is_empty() && r.state != "fresh" {
        out.push_str("  steps:\n");
        for s in p.steps.iter().filter(|s| s.verdict != Verdict::NotReached) {
            let _ = write!(
                out,
                "    {:<14} {:<11} {}",
                s.prefix(),
                verdict(s.verdict),
                s.instruction
            );
            if let Some(why) = &s.reason {
                let _ = write!(out, "  ({why})");
            }
            out.push('\n');
        }
        let mut unreached: Vec<&str> = p
            .steps
            .iter()
            .filter(|s| s.verdict == Verdict::NotReached)
            .map(|s| s.stage.as_str())
            .collect();
        unreached.dedup();
        for st in unreached {
            let _ = writeln!(out, "    stage `{st}` is not built for this target");
        }
    }
    for n in &p.notes {
        let _ = writeln!(out, "  note: {n}");
    }
}

/// Prints the last builds' steps.
pub fn print_last(
    printer: &Printer,
    list: &[LastReport],
    json: bool,
) -> Result<(), serde_json::Error> {
    emit(printer, list, json, last)
}

fn last(out: &mut String, r: &LastReport) {
    let Some(last) = &r.last else {
        let _ = writeln!(out, "{}: no build recorded", r.service);
        return;
    };
    let ran = last
        .steps
        .iter()
        .filter(|s| !s.cached && s.name.starts_with('[') && !s.name.starts_with("[internal]"))
        .count();
    let cached = last.steps.iter().filter(|s| s.cached).count();
    let _ = writeln!(
        out,
        "{}: {} ({ran} ran, {cached} cached)",
        r.service,
        if last.ok { "built" } else { "failed" },
    );
    for s in &last.steps {
        let what = if s.failed {
            "failed".to_string()
        } else if s.cached {
            "cached".to_string()
        } else {
            match s.seconds {
                Some(t) => format!(
                    "ran {}",
                    super::duration(std::time::Duration::from_secs_f64(t))
                ),
                None => "ran".to_string(),
            }
        };
        let _ = writeln!(out, "  {what:<10} {}", s.name);
    }
}

/// Prints the build history, oldest first.
pub fn print_history(
    printer: &Printer,
    list: &[HistoryReport],
    json: bool,
) -> Result<(), serde_json::Error> {
    emit(printer, list, json, history)
}

fn history(out: &mut String, r: &HistoryReport) {
    if r.builds.is_empty() {
        let _ = writeln!(out, "{}: no build recorded", r.service);
        return;
    }
    let _ = writeln!(out, "{}: {} build(s)", r.service, r.builds.len());
    for b in &r.builds {
        let when = jiff::Timestamp::from_second(b.finished as i64)
            .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|_| "?".into());
        let took = b.seconds.map_or("–".to_string(), |s| {
            super::duration(std::time::Duration::from_secs_f64(s))
        });
        let sent = match (b.context_files_sent, b.context_bytes_sent) {
            (Some(f), Some(n)) => format!("sent {f} files, {}", super::bytes(n)),
            _ => "sent –".to_string(),
        };
        let trigger = if b.trigger.is_empty() {
            String::new()
        } else if b.triggers > b.trigger.len() {
            format!(
                "  ({}, and {} more)",
                b.trigger.join(", "),
                b.triggers - b.trigger.len()
            )
        } else {
            format!("  ({})", b.trigger.join(", "))
        };
        let _ = writeln!(
            out,
            "  {when}  {:<6} {took:>7}  {} ran, {} cached  {sent}{trigger}",
            if b.ok { "built" } else { "failed" },
            b.steps_run,
            b.steps_cached,
        );
    }
}

/// Prints the advice.
pub fn print_advice(
    printer: &Printer,
    list: &[AdviceReport],
    json: bool,
) -> Result<(), serde_json::Error> {
    emit(printer, list, json, advice)
}

fn advice(out: &mut String, r: &AdviceReport) {
    if r.advice.is_empty() {
        let _ = writeln!(out, "{}: no advice", r.service);
    } else {
        let _ = writeln!(out, "{}:", r.service);
    }
    for a in &r.advice {
        let _ = write!(out, "  {}:{}: {}", r.dockerfile, a.line, a.message);
        if let Some(s) = a.seconds {
            let _ = write!(
                out,
                " (took {} in the last build)",
                super::duration(std::time::Duration::from_secs_f64(s))
            );
        }
        let _ = writeln!(out, " [{}]", a.rule);
    }
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
}
