//! Services that build on each other's images: a DAG, not a sequence.

use crate::common::*;

fn events(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn position(ev: &[serde_json::Value], kind: &str, service: &str) -> usize {
    ev.iter()
        .position(|e| e["event"] == kind && e["service"] == service)
        .unwrap_or_else(|| panic!("no {kind} event for {service}"))
}

#[test]
fn dependencies_build_first_and_the_rest_in_parallel() {
    let p = Project::new("dag");
    let base_image = format!("{}-base", p.name);
    p.file(
        "compose.yaml",
        "services:\n  base:\n    build: base\n  api:\n    build:\n      context: api\n      additional_contexts:\n        shared: service:base\n  worker:\n    build: worker\n  web:\n    build: web\n",
    )
    .file("base/Dockerfile", "FROM cbuild-base\nRUN sleep 1 && mkdir /base && echo from-base > /base/marker\n")
    .file("api/Dockerfile", "FROM cbuild-base\nCOPY --from=shared /base/marker /api-marker\n")
    .file("worker/Dockerfile", &format!("FROM {base_image}\nRUN cat /base/marker > /worker-marker\n"))
    .file("web/Dockerfile", "FROM cbuild-base\nRUN echo web > /web\n");
    let out = p.cbuild(&["--progress", "json", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ev = events(&out);
    let base_done = position(&ev, "finished", "base");
    assert!(position(&ev, "started", "api") > base_done);
    assert!(position(&ev, "started", "worker") > base_done);
    // web does not wait for anything.
    assert!(position(&ev, "started", "web") < base_done);
    assert_eq!(run_in(&p.image("api"), "cat /api-marker"), "from-base\n");
    assert_eq!(
        run_in(&p.image("worker"), "cat /worker-marker"),
        "from-base\n"
    );

    // Building only `api` builds `base` too.
    let out = p.cbuild(&["--progress", "json", "build", "--no-cache", "api"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ev = events(&out);
    assert!(position(&ev, "finished", "base") < position(&ev, "started", "api"));
    assert!(!ev.iter().any(|e| e["service"] == "web"));
}

#[test]
fn a_failed_dependency_skips_its_dependents_only() {
    let p = Project::new("dagfail");
    p.file(
        "compose.yaml",
        "services:\n  base:\n    build: base\n  api:\n    build:\n      context: api\n      additional_contexts:\n        shared: service:base\n  web:\n    build: web\n",
    )
    .file("base/Dockerfile", "FROM cbuild-base\nRUN exit 7\n")
    .file("api/Dockerfile", "FROM cbuild-base\nCOPY --from=shared / /x\n")
    .file("web/Dockerfile", "FROM cbuild-base\nRUN echo web > /web\n");
    let out = p.cbuild(&["--progress", "plain", "build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`base`, whose image it needs, failed"),
        "{err}"
    );
    assert!(err.contains("2 of 3 services failed: base, api"), "{err}");
    assert_eq!(run_in(&p.image("web"), "cat /web"), "web\n");
}

#[test]
fn dependency_cycles_are_reported() {
    let p = Project::new("dagcycle");
    p.file(
        "compose.yaml",
        "services:\n  a:\n    build:\n      context: a\n      additional_contexts:\n        x: service:b\n  b:\n    build:\n      context: b\n      additional_contexts:\n        y: service:a\n",
    )
    .file("a/Dockerfile", "FROM cbuild-base\n")
    .file("b/Dockerfile", "FROM cbuild-base\n");
    let out = p.cbuild(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("build dependency cycle: a -> b -> a"), "{err}");
}

#[test]
fn services_sharing_an_image_build_it_once() {
    let p = Project::new("sameimg");
    let img = format!("{}-shared:1", p.name);
    p.file(
        "compose.yaml",
        &format!("services:\n  one:\n    image: {img}\n    build: .\n  two:\n    image: {img}\n    build: .\n"),
    )
    .file("Dockerfile", "FROM cbuild-base\nRUN echo once > /once\n");
    let out = p.cbuild(&["--progress", "json", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ev = events(&out);
    let started: Vec<_> = ev.iter().filter(|e| e["event"] == "started").collect();
    assert_eq!(started.len(), 1, "{ev:?}");
    let finished: Vec<_> = ev.iter().filter(|e| e["event"] == "finished").collect();
    assert_eq!(finished.len(), 2);
    assert_eq!(finished[0]["image_id"], finished[1]["image_id"]);
    let _ = docker(&["rmi", "-f", &img]);
}
