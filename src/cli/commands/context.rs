//! `cbuild context [SERVICE...]`: what each build would send to BuildKit, computed locally.
//!
//! The report goes to stdout (text, or one JSON document with `--format json`: an object with
//! a `services` array of [`crate::orchestrate::ContextReport`]); `hint:` lines go to stderr.

use crate::cli::args::{ContextArgs, ContextFormat, GlobalArgs};
use crate::cli::{report_error, settings, ExitStatus};
use crate::orchestrate::{self, ContextReport, InspectOptions};
use crate::ui::bytes;

pub async fn run(global: &GlobalArgs, args: &ContextArgs) -> ExitStatus {
    let env = settings::environment();
    let project = match super::load_project(global, &env) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let opts = InspectOptions {
        services: args.services.clone(),
        build_args: settings::parse_build_args(&args.build_args),
        environment: env,
        cache_dir: Some(crate::context::cache::default_cache_dir()),
        explain: args.explain.clone(),
        top_dirs: 10,
    };
    // Walking and hashing are blocking work.
    let result = tokio::task::spawn_blocking(move || orchestrate::inspect(&project, &opts)).await;
    let reports = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            report_error(&e.into(), None);
            return ExitStatus::Error;
        }
        Err(e) => {
            report_error(
                &anyhow::anyhow!("the context inspection panicked: {e}"),
                None,
            );
            return ExitStatus::Error;
        }
    };
    match args.format {
        ContextFormat::Json => {
            let doc = serde_json::json!({ "services": reports });
            match serde_json::to_string_pretty(&doc) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    report_error(&e.into(), None);
                    return ExitStatus::Error;
                }
            }
        }
        ContextFormat::Text => {
            for r in &reports {
                print_text(r);
            }
        }
    }
    for r in &reports {
        for d in &r.heavy_dirs {
            eprintln!(
                "hint: add `{}` to a `.dockerignore` in `{}`: it would keep {} ({}) out of the context of `{}`",
                d.path,
                r.context,
                bytes(d.bytes),
                files(d.files),
                r.service
            );
        }
    }
    ExitStatus::Success
}

/// `1 file`, `2 files`.
fn files(n: u64) -> String {
    if n == 1 {
        "1 file".to_string()
    } else {
        format!("{n} files")
    }
}

fn print_text(r: &ContextReport) {
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
    println!(
        "{}: {}, {} to send ({scope})",
        r.service,
        files(r.files),
        bytes(r.bytes)
    );
    println!("  context      {}", r.context);
    println!("  dockerfile   {}", r.dockerfile);
    if let Some(t) = &r.target {
        println!("  target       {t}");
    }
    println!(
        "  ignore file  {}",
        r.ignore_file.as_deref().unwrap_or("none")
    );
    println!("  digest       {}", r.digest);
    println!(
        "  excluded     {} entries, {}",
        r.excluded.entries,
        bytes(r.excluded.bytes)
    );
    for rule in &r.excluded.rules {
        println!(
            "    {:>10}  {} entries  line {}: `{}`",
            bytes(rule.bytes),
            rule.entries,
            rule.line,
            rule.pattern
        );
    }
    println!(
        "  hash cache   {} read ({}), {} cached",
        files(r.cache.files_read),
        bytes(r.cache.bytes_read),
        r.cache.files_cached
    );
    if !r.largest_dirs.is_empty() {
        println!("  largest directories:");
        for d in &r.largest_dirs {
            println!(
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
        println!("  explain      `{}`: {why}", x.path);
    }
}
