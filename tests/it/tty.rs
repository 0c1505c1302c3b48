//! The live progress view, in a real terminal (tmux).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed by scripts/test");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn one_live_line_per_service_then_a_summary() {
    let p = Project::new("tty");
    p.file(
        "compose.yaml",
        "services:\n  alpha:\n    build: alpha\n  beta:\n    build: beta\n",
    )
    .file(
        "alpha/Dockerfile",
        "FROM cbuild-base\nRUN sleep 3 && echo a > /a\n",
    )
    .file(
        "beta/Dockerfile",
        "FROM cbuild-base\nRUN sleep 3 && echo b > /b\n",
    );
    let session = format!("cbuild-{}", p.name);
    let cmd = format!(
        "cd '{}' && DOCKER_HOST='{}' CBUILD_CACHE_DIR='{}' '{}' -p {} --no-cache; echo EXIT=$?; sleep 30",
        p.path().display(),
        docker_host(),
        p.cache.path().display(),
        env!("CARGO_BIN_EXE_cbuild"),
        p.name
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "30",
        &cmd,
    ]);
    let screen = || tmux(&["capture-pane", "-p", "-t", &session]);

    // While building: a line for each service, both at once.
    let start = Instant::now();
    let mut during = String::new();
    while start.elapsed() < Duration::from_secs(20) {
        during = screen();
        if during.contains("RUN sleep 3 && echo a") && during.contains("RUN sleep 3 && echo b") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines_with = |s: &str, pat: &str| s.lines().filter(|l| l.contains(pat)).count();
    assert_eq!(lines_with(&during, "alpha"), 1, "{during}");
    assert_eq!(lines_with(&during, "beta"), 1, "{during}");
    assert!(
        during.contains("RUN sleep 3 && echo a") && during.contains("RUN sleep 3 && echo b"),
        "{during}"
    );

    // After: a closing line per service and the summary.
    let mut after = String::new();
    while start.elapsed() < Duration::from_secs(60) {
        after = screen();
        if after.contains("EXIT=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux(&["kill-session", "-t", &session]);
    assert!(after.contains("EXIT=0"), "{after}");
    assert!(
        after.contains("✔ alpha") && after.contains("✔ beta"),
        "{after}"
    );
    assert!(
        after
            .lines()
            .any(|l| l.trim_start().starts_with("alpha") && l.contains("built")),
        "{after}"
    );
}
