//! Failures a user meets: clear messages, non-zero exits, never a panic.

use crate::common::*;

fn assert_no_panic(text: &str) {
    assert!(!text.contains("panicked"), "{text}");
    assert!(!text.contains("RUST_BACKTRACE"), "{text}");
}

#[test]
fn unknown_instruction_names_the_line() {
    let p = Project::new("badinstr");
    p.file("compose.yaml", "services:\n  bad:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nFOO bar\n");
    let out = p.cbuild(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service `bad` failed"), "{err}");
    assert!(err.to_lowercase().contains("unknown instruction"), "{err}");
    assert!(err.contains("line 2") || err.contains(":2"), "{err}");
    assert_no_panic(&err);
}

#[test]
fn failing_run_shows_the_step_and_its_output() {
    let p = Project::new("badrun");
    p.file(
        "compose.yaml",
        "services:\n  broken:\n    build: .\n  fine:\n    build: fine\n",
    )
    .file(
        "Dockerfile",
        "FROM cbuild-base\nRUN echo about-to-fail && echo on-stderr >&2 && exit 3\n",
    )
    .file("fine/Dockerfile", "FROM cbuild-base\nRUN echo ok > /ok\n");
    let out = p.cbuild(&["--progress", "quiet", "build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service `broken` failed"), "{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(
        err.contains("failing step: [2/2] RUN echo about-to-fail"),
        "{err}"
    );
    assert!(err.contains("about-to-fail"), "{err}");
    assert!(err.contains("on-stderr"), "{err}");
    // The other service still built.
    assert_eq!(run_in(&p.image("fine"), "cat /ok"), "ok\n");
    assert_no_panic(&err);
}

#[test]
fn unreachable_engine_says_where_and_what_to_do() {
    let p = Project::new("noengine");
    p.file("compose.yaml", "services:\n  a:\n    build: .\n")
        .file("Dockerfile", "FROM scratch\n");
    let out = p.cbuild_env(
        &["build"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(
            "error: cannot connect to the builder at `unix:///nonexistent/docker.sock`"
        ),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert_no_panic(&err);

    let out = p.cbuild_env(&["build", "--builder", "tcp://127.0.0.1:9"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tcp://127.0.0.1:9"), "{err}");
    assert_no_panic(&err);
}

#[test]
fn bad_input_is_reported_with_file_and_key() {
    let p = Project::new("badinput");
    p.file(
        "compose.yaml",
        "services:\n  a:\n    build:\n      context: .\n      dockerfil: x\n",
    );
    let out = p.cbuild(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("compose.yaml"), "{err}");
    assert!(err.contains("services.a.build.dockerfil"), "{err}");

    let p = Project::new("nodockerfile");
    p.file("compose.yaml", "services:\n  a:\n    build: .\n");
    let out = p.cbuild(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Dockerfile") && err.contains("not found"),
        "{err}"
    );

    let out = p.cbuild(&["build", "nosuch"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no such service: `nosuch`"), "{err}");
    assert_no_panic(&err);
}

#[test]
fn an_invalid_dockerignore_names_the_file_and_line() {
    let p = Project::new("badignore");
    p.file("compose.yaml", "services:\n  a:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY . /x\n")
        .file(".dockerignore", "# fine\nnode_modules\n!\n");
    let out = p.cbuild(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(".dockerignore`: line 3: illegal exclusion pattern"),
        "{err}"
    );
    assert_no_panic(&err);
}
