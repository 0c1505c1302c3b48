//! What cbuild writes where: a reader that goes away is a normal end (as
//! in ripgrep), and the figures of what was sent are named and counted
//! the same way in every output.

use std::process::{Output, Stdio};

use crate::common::*;

/// A small project with one service that copies two files.
fn project(tag: &str) -> Project {
    let p = Project::new(tag);
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY src /src\n")
        .file("src/a.txt", "alpha\n")
        .file("src/b.txt", "bravo bravo\n");
    p
}

/// Runs `cbuild ARGS` with stdout on a pipe whose reader is already closed,
/// so the first write to stdout fails with a broken pipe (as `cbuild config
/// | head -c 10` does once `head` has its bytes, without the race).
fn with_closed_stdout(p: &Project, args: &[&str]) -> Output {
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    p.command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// The command ended as if the reader had read everything: exit 0, and
/// nothing on stderr about the pipe.
fn assert_quiet_end(out: &Output, what: &str) {
    let err = stderr(out);
    assert_ne!(out.status.code(), Some(101), "{what} panicked:\n{err}");
    assert!(!err.contains("panicked"), "{what}:\n{err}");
    assert!(
        !err.to_lowercase().contains("broken pipe"),
        "{what}:\n{err}"
    );
    assert_eq!(out.status.code(), Some(0), "{what}:\n{err}");
}

#[test]
fn config_with_a_closed_stdout_ends_quietly() {
    let p = project("pipe-config");
    for args in [
        &["config"][..],
        &["config", "--format", "json"],
        &["config", "--services"],
    ] {
        assert_quiet_end(&with_closed_stdout(&p, args), &format!("{args:?}"));
    }
}

#[test]
fn context_with_a_closed_stdout_ends_quietly() {
    let p = project("pipe-context");
    for args in [&["context"][..], &["context", "--format", "json"]] {
        assert_quiet_end(&with_closed_stdout(&p, args), &format!("{args:?}"));
    }
}

#[test]
fn status_and_doctor_with_a_closed_stdout_end_quietly() {
    let p = project("pipe-status");
    for args in [
        &["status"][..],
        &["status", "--format", "json"],
        &["doctor"],
    ] {
        assert_quiet_end(&with_closed_stdout(&p, args), &format!("{args:?}"));
    }
}

#[test]
fn build_with_a_closed_stdout_ends_quietly_and_still_builds() {
    let p = project("pipe-build");
    assert_quiet_end(
        &with_closed_stdout(&p, &["build", "--dry-run"]),
        "--dry-run",
    );
    // JSON events go to stdout: the build goes on without a reader.
    let out = with_closed_stdout(&p, &["--progress", "json", "build"]);
    assert_quiet_end(&out, "--progress json build");
    assert_eq!(run_in(&p.image("app"), "cat /src/a.txt"), "alpha\n");
}

#[test]
fn bench_with_a_closed_stdout_ends_quietly() {
    let p = project("pipe-bench");
    let out = with_closed_stdout(
        &p,
        &["--progress", "quiet", "bench", "--runs", "1", "--no-docker"],
    );
    assert_quiet_end(&out, "bench");
}

/// The `context: …` figure of a `--progress plain` build: the service's
/// `built` line and its summary row say the same, and it agrees with the
/// JSON event's `context_*` fields of an identical build.
#[test]
fn the_context_sent_is_one_figure_in_every_output() {
    let p = project("sent-plain");
    let out = p.cbuild(&["--progress", "plain", "build"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let figure = |line: &str| -> String {
        let at = line
            .find("context: ")
            .unwrap_or_else(|| panic!("no figure in: {line}"));
        line[at..].trim_end_matches(')').to_string()
    };
    let built = err
        .lines()
        .find(|l| l.starts_with("[app] built "))
        .unwrap_or_else(|| panic!("{err}"));
    let row = err
        .lines()
        .find(|l| l.trim_start().starts_with("app ") && l.contains(" built "))
        .unwrap_or_else(|| panic!("{err}"));
    // Two files of `src/`: 6 + 12 bytes; the Dockerfile is counted apart.
    assert!(
        figure(built).starts_with("context: 2 files, 18 B sent; dockerfile: "),
        "{err}"
    );
    assert_eq!(figure(built), figure(row), "{err}");

    let q = project("sent-json");
    let fin = build_json(&q, &[]);
    assert_eq!(fin["context_files_sent"], 2, "{fin}");
    assert_eq!(fin["context_bytes_sent"], 18, "{fin}");
    assert!(fin["dockerfile_files_sent"].as_u64().unwrap() >= 1, "{fin}");
    assert!(fin.get("files_sent").is_none(), "a third figure: {fin}");
    let dockerfile = format!(
        "dockerfile: {} file{}, {} B sent",
        fin["dockerfile_files_sent"],
        if fin["dockerfile_files_sent"] == 1 {
            ""
        } else {
            "s"
        },
        fin["dockerfile_bytes_sent"]
    );
    assert!(
        figure(built).ends_with(&dockerfile),
        "{} vs {fin}",
        figure(built)
    );
}
