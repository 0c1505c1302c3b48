//! cbuild against the reference tools and older engines.

use std::process::Command;

use crate::common::*;

const APP: &str =
    "services:\n  app:\n    build:\n      context: .\n      args:\n        MSG: hello\n";
const DOCKERFILE: &str = "FROM cbuild-base AS base\nARG MSG\nRUN mkdir -p /opt/app && echo \"$MSG\" > /opt/app/msg && chmod 0750 /opt/app\n\
FROM base\nCOPY src/ /opt/app/src/\nCOPY --chmod=755 run.sh /usr/local/bin/run.sh\nRUN ln -s /opt/app/msg /msg-link\n";

fn app_project(tag: &str) -> Project {
    let p = Project::new(tag);
    p.file("compose.yaml", APP)
        .file("Dockerfile", DOCKERFILE)
        .file("src/main.txt", "main\n")
        .file("src/nested/deep/file.txt", "deep\n")
        .file("run.sh", "#!/bin/sh\necho run\n");
    std::fs::create_dir_all(p.path().join("src/empty-dir")).unwrap();
    p
}

#[test]
fn image_holds_the_same_files_as_docker_compose_build() {
    let p = app_project("vscompose");
    p.build_ok(&["build"]);
    let ours = image_files(&p.image("app"));

    let compose_project = format!("{}-ref", p.name);
    let out = Command::new("docker")
        .current_dir(p.path())
        .env("DOCKER_HOST", docker_host())
        .args(["compose", "-p", &compose_project, "build"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker compose build failed: {}",
        stderr(&out)
    );
    let theirs_image = format!("{compose_project}-app");
    let theirs = image_files(&theirs_image);
    let _ = docker(&["rmi", "-f", &theirs_image]);

    assert!(ours.contains_key("opt/app/src/nested/deep/file.txt"));
    assert!(ours.contains_key("opt/app/src/empty-dir"));
    let only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "only cbuild: {only_ours:?}\nonly compose: {only_theirs:?}"
    );
    for (path, e) in &ours {
        assert_eq!(Some(e), theirs.get(path), "{path} differs");
    }
}

#[test]
fn doctor_reports_engine_and_buildkit() {
    let out = Command::new(env!("CARGO_BIN_EXE_cbuild"))
        .env("DOCKER_HOST", docker_host())
        .env_remove("BUILDKIT_HOST")
        .arg("doctor")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("engine:    Docker"), "{text}");
    assert!(text.contains("buildkit:  v0."), "{text}");
    assert!(text.contains("linux/"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_cbuild"))
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .env_remove("BUILDKIT_HOST")
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unix:///nonexistent.sock"));
}

/// Debian's stable engine (20.10, BuildKit 0.8): no `Info` RPC, only the old
/// exporter fields. `scripts/engine up --stable` starts it beside the main one.
#[test]
fn builds_on_debian_stable_engine_20_10() {
    let host = std::env::var("CBUILD_STABLE_DOCKER_HOST").unwrap_or_else(|_| {
        panic!("CBUILD_STABLE_DOCKER_HOST is not set: the README's test command starts it with `scripts/engine up --stable`")
    });
    let p = app_project("stable");
    let out = p.cbuild_env(&["build"], &[("DOCKER_HOST", &host)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = Command::new("docker")
        .env("DOCKER_HOST", &host)
        .args([
            "run",
            "--rm",
            &p.image("app"),
            "cat",
            "/msg-link",
            "/opt/app/src/main.txt",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&run), "hello\nmain\n", "{}", stderr(&run));
    let doctor = Command::new(env!("CARGO_BIN_EXE_cbuild"))
        .env("DOCKER_HOST", &host)
        .env_remove("BUILDKIT_HOST")
        .arg("doctor")
        .output()
        .unwrap();
    assert!(
        stdout(&doctor).contains("Docker 20.10"),
        "{}",
        stdout(&doctor)
    );
    let _ = Command::new("docker")
        .env("DOCKER_HOST", &host)
        .args(["rmi", "-f", &p.image("app")])
        .output();
}

/// A same-size Dockerfile edit with its mtime put back reaches the image on
/// both engines. BuildKit 0.8 (Docker 20.10) keeps the Dockerfile's
/// directory from the last build and skips a file whose size and mtime it
/// already holds: served with its real mtime, it built the old Dockerfile,
/// and then called that image up to date.
#[test]
fn a_same_size_dockerfile_edit_reaches_the_image_on_both_engines() {
    let stable = std::env::var("CBUILD_STABLE_DOCKER_HOST").unwrap_or_else(|_| {
        panic!("CBUILD_STABLE_DOCKER_HOST is not set: the README's test command starts it with `scripts/engine up --stable`")
    });
    for (engine, host) in [("stable", stable), ("main", docker_host())] {
        let p = Project::new(&format!("dfedit{engine}"));
        p.file("compose.yaml", "services:\n  app:\n    build: .\n");
        let df = p.path().join("Dockerfile");
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for v in ["AAAA", "BBBB", "CCCC"] {
            p.file(
                "Dockerfile",
                &format!("FROM cbuild-base\nRUN echo {v} > /v\n"),
            );
            set_mtime(&df, old);
            for _ in 0..2 {
                let out = p.cbuild_env(&["build"], &[("DOCKER_HOST", &host)]);
                assert!(out.status.success(), "{engine}: {}", stderr(&out));
            }
            let run = Command::new("docker")
                .env("DOCKER_HOST", &host)
                .args(["run", "--rm", &p.image("app"), "cat", "/v"])
                .output()
                .unwrap();
            assert_eq!(stdout(&run), format!("{v}\n"), "{engine}: {}", stderr(&run));
        }
        let _ = Command::new("docker")
            .env("DOCKER_HOST", &host)
            .args(["rmi", "-f", &p.image("app")])
            .output();
    }
}

/// The session carried inside `Control.Session` (the path a standalone
/// buildkitd uses), exercised against the engine's own BuildKit.
#[test]
fn session_inside_control_session_works() {
    let p = app_project("ctlsession");
    let out = p.cbuild_env(&["build"], &[("CBUILD_SESSION_TRANSPORT", "grpc")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_in(
            &p.image("app"),
            "cat /msg-link /opt/app/src/nested/deep/file.txt"
        ),
        "hello\ndeep\n"
    );
}
