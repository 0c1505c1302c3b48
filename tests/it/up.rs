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

/// `status` judges what `build` with the same options would do: with
/// `--builder` naming another Docker engine it looks at that engine's
/// images, where the build put them, and `--platform` is an input as it is
/// for `build`.
#[test]
fn status_follows_the_builder_and_platform_of_build() {
    let p = Project::new("status-opts");
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY app.txt /app.txt\n")
        .file("app.txt", &format!("{}\n", p.name));
    // Another engine than DOCKER_HOST's (the suite also runs on 26.1).
    let other = match engine("d26") {
        d26 if d26 == docker_host() => engine("d28"),
        d26 => d26,
    };
    let builder = format!("docker+{other}");
    let image = p.image("app");
    let run = |args: &[&str]| {
        let out = p.cbuild(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    // `cbuild [--builder B] status --format json [--platform P]`: the state.
    let state = |builder: Option<&str>, platform: Option<&str>| {
        let mut args = Vec::new();
        args.extend(builder.iter().flat_map(|b| ["--builder", b]));
        args.extend(["status", "--format", "json"]);
        args.extend(platform.iter().flat_map(|p| ["--platform", p]));
        let v: serde_json::Value = serde_json::from_str(&stdout(&run(&args))).unwrap();
        v[0]["state"].as_str().unwrap().to_string()
    };
    run(&["--builder", &builder, "build", "--platform", "linux/amd64"]);
    let present = |host: &str| {
        docker_at(host, &["image", "inspect", &image])
            .status
            .success()
    };
    assert!(present(&other) && !present(&docker_host()));

    assert_eq!(state(Some(&builder), Some("linux/amd64")), "fresh");
    assert_eq!(
        state(Some(&builder), None),
        "stale",
        "a build without --platform is another build"
    );
    assert_ne!(
        state(None, Some("linux/amd64")),
        "fresh",
        "DOCKER_HOST's engine does not hold the image"
    );
    let _ = docker_at(&other, &["rmi", "-f", &image]);
}
