//! Builds that cannot change the result are skipped; everything else runs.

use crate::common::*;

fn steps_run(out: &std::process::Output, service: &str) -> usize {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["event"] == "step"
                && e["service"] == service
                && e["name"].as_str().unwrap_or("").contains("] RUN")
        })
        .filter(|e| e["completed_ms"].is_number() && e["cached"] == false)
        .count()
}

fn four_services() -> Project {
    let p = Project::new("skip");
    p.file(
        "compose.yaml",
        "services:\n  base:\n    build: base\n  api:\n    build:\n      context: api\n      additional_contexts:\n        shared: service:base\n  web:\n    build: web\n  worker:\n    build: worker\n",
    )
    .file("base/Dockerfile", "FROM cbuild-base\nRUN mkdir /base && echo b > /base/b\n")
    .file("api/Dockerfile", "FROM cbuild-base\nCOPY --from=shared /base/b /b\nCOPY app.txt /app.txt\nRUN cat /app.txt > /copy\n")
    .file("api/app.txt", "api v1\n")
    .file("api/README.md", "not copied\n")
    .file("web/Dockerfile", "FROM cbuild-base\nCOPY index.html /index.html\nRUN echo web > /web\n")
    .file("web/index.html", "<p>v1</p>\n")
    .file("worker/Dockerfile", "FROM cbuild-base\nRUN echo worker > /worker\n");
    p
}

#[test]
fn a_no_op_build_skips_every_service_and_an_edit_rebuilds_only_its_service() {
    let p = four_services();
    let first = p.cbuild(&["--progress", "json", "build"]);
    assert!(first.status.success(), "{}", stderr(&first));

    // Nothing changed: every service is up to date and no solve runs.
    let second = p.cbuild(&["--progress", "json", "build"]);
    assert!(second.status.success(), "{}", stderr(&second));
    let f = finished(&second);
    assert_eq!(f.len(), 4);
    for (svc, e) in &f {
        assert_eq!(e["up_to_date"], true, "{svc}: {e}");
    }
    assert!(
        !stdout(&second).contains("\"event\":\"started\""),
        "a solve ran"
    );
    let plain = p.cbuild(&["build"]);
    assert!(stderr(&plain).contains("up to date"), "{}", stderr(&plain));

    // A file no Dockerfile uses: still up to date.
    p.file("api/README.md", "edited, but not copied\n");
    let f = finished(&p.cbuild(&["--progress", "json", "build"]));
    assert!(f.values().all(|e| e["up_to_date"] == true), "{f:?}");

    // One edit: only that service builds.
    p.file("web/index.html", "<p>v2</p>\n");
    let third = p.cbuild(&["--progress", "json", "build"]);
    let f = finished(&third);
    assert_eq!(f["web"]["up_to_date"], false);
    for svc in ["base", "api", "worker"] {
        assert_eq!(f[svc]["up_to_date"], true, "{svc}");
    }
    assert_eq!(run_in(&p.image("web"), "cat /index.html"), "<p>v2</p>\n");

    // A build arg given on the command line is an input too.
    let f = finished(&p.cbuild(&[
        "--progress",
        "json",
        "build",
        "--build-arg",
        "X=1",
        "worker",
    ]));
    assert_eq!(f["worker"]["up_to_date"], false);
}

#[test]
fn no_cache_reruns_only_the_named_service() {
    let p = four_services();
    let first = p.cbuild(&["--progress", "json", "build"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = p.cbuild(&["--progress", "json", "--no-cache", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let f = finished(&out);
    assert_eq!(f.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!(f["web"]["up_to_date"], false);
    assert_eq!(steps_run(&out, "web"), 1, "web's RUN step ran again");
    // The context is re-sent whole with --no-cache.
    assert_eq!(f["web"]["context_files_sent"], 1, "{}", f["web"]);
    // The others are untouched and still up to date.
    let f = finished(&p.cbuild(&["--progress", "json", "build"]));
    for svc in ["base", "api", "web", "worker"] {
        assert_eq!(f[svc]["up_to_date"], true, "{svc}");
    }
}

#[test]
fn a_changed_base_image_rebuilds() {
    let p = Project::new("skipbase");
    let base = format!("{}-mybase:1", p.name);
    docker_ok(&["tag", "cbuild-base:latest", &base]);
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", &format!("FROM {base}\nRUN echo hi > /hi\n"));
    let first = p.cbuild(&["--progress", "json", "build"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        finished(&p.cbuild(&["--progress", "json", "build"]))["app"]["up_to_date"],
        true
    );
    // Point the base tag at a different image.
    docker_ok(&["tag", &p.image("app"), &base]);
    let f = finished(&p.cbuild(&["--progress", "json", "build"]));
    assert_eq!(f["app"]["up_to_date"], false);
    let _ = docker(&["rmi", "-f", &base]);
}

/// `FROM ${BASE}`: the base is the image the build arguments name, so the
/// build is skipped when nothing changed and rebuilt when the argument
/// points elsewhere.
#[test]
fn a_base_named_by_a_build_arg_is_an_input() {
    let p = Project::new("skiparg");
    let other = format!("{}-other:1", p.name);
    docker_ok(&["tag", "cbuild-base:latest", &other]);
    p.file(
        "compose.yaml",
        "services:\n  app:\n    build:\n      context: .\n      args:\n        BASE: cbuild-base\n",
    )
    .file(
        "Dockerfile",
        "ARG BASE=nothing-by-this-name\nFROM ${BASE}\nRUN echo hi > /hi\n",
    );
    let first = p.cbuild(&["--progress", "json", "build"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        finished(&p.cbuild(&["--progress", "json", "build"]))["app"]["up_to_date"],
        true
    );
    let f = finished(&p.cbuild(&[
        "--progress",
        "json",
        "build",
        "--build-arg",
        &format!("BASE={other}"),
    ]));
    assert_eq!(f["app"]["up_to_date"], false);
    let _ = docker(&["rmi", "-f", &other]);
}

#[test]
fn an_image_used_by_copy_from_is_an_input() {
    let p = Project::new("skipfrom");
    let tool = format!("{}-tool:1", p.name);
    docker_ok(&["tag", "cbuild-base:latest", &tool]);
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file(
            "Dockerfile",
            &format!("FROM cbuild-base\nCOPY --from={tool} /bin/busybox /tool\n"),
        );
    p.build_ok(&["build"]);
    assert_eq!(
        finished(&p.cbuild(&["--progress", "json", "build"]))["app"]["up_to_date"],
        true
    );
    // The tool image changes: the build must run again.
    docker_ok(&["tag", &p.image("app"), &tool]);
    assert_eq!(
        finished(&p.cbuild(&["--progress", "json", "build"]))["app"]["up_to_date"],
        false
    );
    let _ = docker(&["rmi", "-f", &tool]);
}
