//! `cache_from` / `cache_to`, `tags` and `labels`, against the real engines
//! and the local registry of `scripts/engine`.
//!
//! A cache only matches across engines when the base image is the same
//! bytes everywhere, so these builds start from the registry's
//! `cbuild-base`, pulled (the graph driver keys a base it finds tagged
//! locally by its local ID, not by the registry's digest). Every build runs
//! a command with a token no engine has seen, so a cached step can only come
//! from the imported cache, never from the importing engine's own.

use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;

/// A token no earlier run used (the project name alone repeats a PID).
fn token(p: &Project) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", p.name)
}

/// `cbuild --progress json build` on the engine at `host`: its output and
/// JSON events.
fn build_on(p: &Project, host: &str) -> (Output, Vec<serde_json::Value>) {
    let out = p.cbuild_env(&["--progress", "json", "build"], &[("DOCKER_HOST", host)]);
    let events = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out, events)
}

/// The RUN steps a build reported, and those it reported cached.
fn run_steps(events: &[serde_json::Value]) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut cached = Vec::new();
    for e in events.iter().filter(|e| e["event"] == "step") {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        if !name.contains("] RUN ") {
            continue;
        }
        if e["cached"] == true && !cached.contains(&name) {
            cached.push(name.clone());
        }
        if !all.contains(&name) {
            all.push(name);
        }
    }
    all.sort();
    cached.sort();
    (all, cached)
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        stderr(out),
        stdout(out)
    );
}

/// Two RUN steps, the first carrying `token`.
fn dockerfile(token: &str) -> String {
    format!(
        "FROM {}/cbuild-base\nRUN echo {token} > /x\nRUN cat /x /x > /y\n",
        registry()
    )
}

fn remove_images(host: &str, names: &[&str]) {
    let mut args = vec!["rmi", "-f"];
    args.extend_from_slice(names);
    let _ = docker_at(host, &args);
}

#[test]
fn registry_cache_exported_by_one_engine_is_imported_by_others() {
    let p = Project::new("cache-reg");
    let token = token(&p);
    let cache_ref = format!("{}/cache/{}:app", registry(), p.name);
    let image = p.image("app");
    p.file("Dockerfile", &dockerfile(&token));
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {image}\n    build:\n      context: .\n      pull: true\n      cache_to: [\"type=registry,ref={cache_ref},mode=max\"]\n"
        ),
    );
    // The containerd image store's BuildKit can export to a registry.
    let exporter = engine("d28-containerd");
    let (out, events) = build_on(&p, &exporter);
    assert_ok(&out, "the export build");
    let (all, cached) = run_steps(&events);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(cached.is_empty(), "nothing to reuse yet: {cached:?}");

    p.file(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {image}\n    build:\n      context: .\n      pull: true\n      cache_from: [\"{cache_ref}\"]\n"
        ),
    );
    // Two other engines that never ran these steps: the graph drivers of
    // 28.5 (the primary engine) and 26.1.
    for name in ["d28", "d26"] {
        let host = engine(name);
        let (out, events) = build_on(&p, &host);
        assert_ok(&out, &format!("the import build on {name}"));
        let (all, cached) = run_steps(&events);
        assert_eq!(all.len(), 2, "{name}: {all:?}");
        assert_eq!(cached, all, "{name}: every RUN step comes from the cache");
        let y = docker_at(&host, &["run", "--rm", &image, "cat", "/y"]);
        assert_eq!(stdout(&y), format!("{token}\n{token}\n"), "{name}");
    }
    remove_images(&exporter, &[&image]);
    remove_images(&engine("d26"), &[&image]);
}

#[test]
fn inline_cache_travels_with_the_pushed_image() {
    let p = Project::new("cache-inline");
    let token = token(&p);
    let pushed = format!("{}/cache/{}-inline:1", registry(), p.name);
    let image = p.image("app");
    p.file("Dockerfile", &dockerfile(&token));
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {pushed}\n    build:\n      context: .\n      pull: true\n      cache_to: [type=inline]\n"
        ),
    );
    let exporter = engine("d28-containerd");
    let (out, _) = build_on(&p, &exporter);
    assert_ok(&out, "the export build");
    let push = docker_at(&exporter, &["push", &pushed]);
    assert_ok(&push, "docker push");

    p.file(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {image}\n    build:\n      context: .\n      pull: true\n      cache_from: [\"{pushed}\"]\n"
        ),
    );
    let importer = engine("d28");
    let (out, events) = build_on(&p, &importer);
    assert_ok(&out, "the import build");
    let (all, cached) = run_steps(&events);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(cached, all, "every RUN step comes from the image's cache");
    // Asked of the engine that built it, whichever engine DOCKER_HOST is.
    let ran = docker_at(&importer, &["run", "--rm", &image, "sh", "-c", "cat /y"]);
    assert_ok(&ran, "docker run");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        format!("{token}\n{token}\n"),
        "the image is the one built"
    );
    remove_images(&exporter, &[&pushed]);
}

#[test]
fn a_builder_without_the_cache_backend_is_named_with_the_key() {
    // The graph driver's BuildKit exports only inline cache.
    let p = Project::new("cache-refused");
    let image = p.image("app");
    p.file("Dockerfile", &dockerfile(&token(&p)));
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {image}\n    build:\n      context: .\n      cache_to:\n        - type=inline\n        - type=registry,ref={}/cache/{}:x\n",
            registry(),
            p.name
        ),
    );
    let host = engine("d28");
    let out = p.cbuild_env(&["build"], &[("DOCKER_HOST", &host)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for part in [
        "`app`",
        "`services.app.build.cache_to[1]`",
        "`type=registry`",
        host.as_str(),
        "hint:",
    ] {
        assert!(err.contains(part), "`{part}` missing in:\n{err}");
    }
    let inspect = docker_at(&host, &["image", "inspect", &image]);
    assert!(!inspect.status.success(), "nothing is tagged");
}

#[test]
fn unknown_or_unusable_cache_types_are_bad_input() {
    let p = Project::new("cache-bad");
    p.file("Dockerfile", "FROM cbuild-base\n");
    for (list, key, says) in [
        (
            "cache_to: [\"type=registry,ref=r/x\", \"type=regsitry,ref=r/x\"]",
            "services.app.build.cache_to[1]",
            "unknown cache type `regsitry`",
        ),
        (
            "cache_from: [\"ref=r/x,mode=max\"]",
            "services.app.build.cache_from[0]",
            "`type=` is missing",
        ),
        (
            "cache_from: [\"type=local,src=/tmp/c\"]",
            "services.app.build.cache_from[0]",
            "not supported",
        ),
    ] {
        p.file(
            "compose.yaml",
            &format!(
                "services:\n  app:\n    image: {}\n    build:\n      context: .\n      {list}\n",
                p.image("app")
            ),
        );
        let out = p.cbuild(&["build"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{list}: {err}");
        assert!(err.contains(key) && err.contains(says), "{list}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn tags_name_the_same_image_and_labels_reach_it() {
    let p = Project::new("cache-tags");
    let image = p.image("app");
    let (t1, t2) = (format!("{}-extra:v1", p.name), format!("{}-app:v2", p.name));
    p.file("Dockerfile", "FROM cbuild-base\nRUN echo tagged > /t\n");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {image}\n    build:\n      context: .\n      tags: [\"{t1}\", \"{t2}\"]\n      labels:\n        org.example.team: cache\n        org.example.empty: \"\"\n"
        ),
    );
    p.build_ok(&["build"]);
    let id = image_id(&image);
    assert_eq!(image_id(&t1), id);
    assert_eq!(image_id(&t2), id);
    let l = labels(&image);
    assert_eq!(l.get("org.example.team").map(String::as_str), Some("cache"));
    assert_eq!(l.get("org.example.empty").map(String::as_str), Some(""));
    assert_eq!(
        l.get("com.docker.compose.service").map(String::as_str),
        Some("app")
    );
}
