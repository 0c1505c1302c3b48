//! `cbuild up` and `cbuild status`.

use std::process::Command;

use crate::common::*;

fn status_json(p: &Project) -> serde_json::Value {
    let out = p.cbuild(&["status", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

fn compose_down(p: &Project) {
    let _ = Command::new("docker")
        .current_dir(p.path())
        .env("DOCKER_HOST", docker_host())
        .args(["compose", "-p", &p.name, "down", "-t", "0"])
        .output();
}

#[test]
fn up_starts_fresh_containers_and_status_follows_edits() {
    let p = Project::new("up");
    p.file(
        "compose.yaml",
        "services:\n  api:\n    build: .\n    command: [\"sleep\", \"300\"]\n",
    )
    .file("Dockerfile", "FROM cbuild-base\nCOPY app.txt /app.txt\n")
    .file("app.txt", "v1\n");
    let out = p.cbuild(&["up", "-d"]);
    if !out.status.success() {
        compose_down(&p);
        panic!("cbuild up -d failed: {}", stderr(&out));
    }
    let running = docker_ok(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={}", p.name),
        "--format",
        "{{.Names}}",
    ]);
    assert!(running.contains("api"), "{running}");

    let s = status_json(&p);
    assert_eq!(s[0]["service"], "api");
    assert_eq!(s[0]["state"], "fresh", "{s}");
    assert_eq!(s[0]["containers"][0]["current_image"], true, "{s}");
    assert!(p.cbuild(&["status", "--check"]).status.success());

    // Edit: the image is stale.
    p.file("app.txt", "v2\n");
    let s = status_json(&p);
    assert_eq!(s[0]["state"], "stale", "{s}");
    assert!(
        s[0]["reason"].as_str().unwrap().contains("build context"),
        "{s}"
    );
    assert_eq!(p.cbuild(&["status", "--check"]).status.code(), Some(1));
    let text = stdout(&p.cbuild(&["status"]));
    assert!(text.contains("stale"), "{text}");

    // Rebuilt but not restarted: the container runs an older image.
    p.build_ok(&["build"]);
    let s = status_json(&p);
    assert_eq!(s[0]["state"], "fresh", "{s}");
    assert_eq!(s[0]["containers"][0]["current_image"], false, "{s}");
    assert_eq!(p.cbuild(&["status", "--check"]).status.code(), Some(1));

    // `cbuild up -d` again: nothing to build, the container is recreated.
    let out = p.cbuild(&["up", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("up to date"), "{}", stderr(&out));
    let s = status_json(&p);
    assert_eq!(s[0]["containers"][0]["current_image"], true, "{s}");
    compose_down(&p);
}
