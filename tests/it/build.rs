//! Real builds: images are built with `cbuild build`, run with `docker run`,
//! and their files and labels checked.

use crate::common::*;

#[test]
fn builds_every_service_and_the_images_hold_the_files_and_labels() {
    let p = Project::new("basic");
    p.file(
        "compose.yaml",
        "services:\n  backend:\n    build:\n      context: backend\n      labels:\n        org.example.role: api\n  frontend:\n    build: ./frontend\n  db:\n    image: postgres-not-built\n",
    )
    .file("backend/Dockerfile", "FROM cbuild-base\nRUN mkdir -p /srv && echo built-by-run > /srv/run.txt\nCOPY app/ /srv/app/\nCMD [\"cat\", \"/srv/app/main.txt\"]\n")
    .file("backend/app/main.txt", "backend main\n")
    .file("backend/app/lib/util.txt", "util\n")
    .file("frontend/Dockerfile", "FROM cbuild-base\nCOPY index.html /www/index.html\n")
    .file("frontend/index.html", "<h1>hi</h1>\n");
    let log = p.build_ok(&["build"]);
    assert!(log.contains("[backend]"), "{log}");
    assert!(log.contains("[frontend]"), "{log}");

    let backend = p.image("backend");
    assert_eq!(run_in(&backend, "cat /srv/run.txt"), "built-by-run\n");
    assert_eq!(
        run_in(&backend, "cat /srv/app/main.txt /srv/app/lib/util.txt"),
        "backend main\nutil\n"
    );
    assert_eq!(docker_ok(&["run", "--rm", &backend]), "backend main\n");
    assert_eq!(
        run_in(&p.image("frontend"), "cat /www/index.html"),
        "<h1>hi</h1>\n"
    );

    let l = labels(&backend);
    assert_eq!(l["org.example.role"], "api");
    assert_eq!(l["com.docker.compose.project"], p.name);
    assert_eq!(l["com.docker.compose.service"], "backend");
    assert!(l.contains_key("com.docker.compose.version"));
    // A service without build: is not built.
    assert!(!docker(&["image", "inspect", "postgres-not-built"])
        .status
        .success());
}

#[test]
fn plain_build_with_service_names_builds_only_those() {
    let p = Project::new("select");
    p.file(
        "compose.yaml",
        "services:\n  a:\n    build: a\n  b:\n    build: b\n",
    )
    .file("a/Dockerfile", "FROM cbuild-base\nRUN echo a > /a\n")
    .file("b/Dockerfile", "FROM cbuild-base\nRUN echo b > /b\n");
    // `cbuild SERVICE` is `cbuild build SERVICE`.
    p.build_ok(&["a"]);
    assert_eq!(run_in(&p.image("a"), "cat /a"), "a\n");
    assert!(!docker(&["image", "inspect", &p.image("b")])
        .status
        .success());
}

#[test]
fn multi_stage_target_and_build_args() {
    let p = Project::new("stages");
    p.file(
        "compose.yaml",
        "services:\n  app:\n    image: ${IMG}\n    build:\n      context: .\n      dockerfile: docker/app.Dockerfile\n      target: release\n      args:\n        VERSION: \"1.0\"\n        FLAVOR: compose\n",
    )
    .file(
        "docker/app.Dockerfile",
        "FROM cbuild-base AS builder\nARG VERSION\nARG FLAVOR\nRUN mkdir /out && echo \"v=$VERSION f=$FLAVOR\" > /out/version\n\
         FROM cbuild-base AS release\nCOPY --from=builder /out/version /version\nCOPY src/ /src/\n\
         FROM release AS debug\nRUN echo debug > /debug\n",
    )
    .file("src/a.txt", "a\n");
    let img = format!("{}-custom:1", p.name);
    let out = p.cbuild_env(&["build", "--build-arg", "FLAVOR=cli"], &[("IMG", &img)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_in(&img, "cat /version /src/a.txt"), "v=1.0 f=cli\na\n");
    // The target stops before the debug stage.
    assert_eq!(
        run_in(&img, "test -e /debug && echo yes || echo no"),
        "no\n"
    );
    let _ = docker(&["rmi", "-f", &img]);
}

#[test]
fn dockerfile_inline_builds() {
    let p = Project::new("inline");
    p.file(
        "compose.yaml",
        "services:\n  tool:\n    build:\n      context: .\n      dockerfile_inline: |\n        FROM cbuild-base\n        COPY data.txt /data.txt\n        RUN echo inline >> /data.txt\n",
    )
    .file("data.txt", "from context\n");
    p.build_ok(&[]);
    assert_eq!(
        run_in(&p.image("tool"), "cat /data.txt"),
        "from context\ninline\n"
    );
}

#[test]
fn json_progress_is_one_object_per_line() {
    let p = Project::new("json");
    p.file("compose.yaml", "services:\n  j:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nRUN echo json\n");
    let out = p.cbuild(&["--progress", "json", "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(lines.first().unwrap()["event"], "started");
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert!(last["image_id"].as_str().unwrap().starts_with("sha256:"));
    assert!(lines.iter().any(|l| l["event"] == "step"));
}

#[test]
fn the_example_project_builds_and_runs() {
    let dir = examples().join("webapp");
    let name = format!("it-example-{}", std::process::id());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cbuild"))
        .current_dir(&dir)
        .env("DOCKER_HOST", docker_host())
        .args(["-p", &name, "build"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let backend = format!("{name}-backend");
    let frontend = format!("{name}-frontend");
    assert!(docker_ok(&["run", "--rm", &backend, "cat", "/app/greeting"]).contains("backend"));
    assert!(run_in(&frontend, "cat /srv/www/index.html").contains("frontend"));
    let _ = docker(&["rmi", "-f", &backend, &frontend]);
}

#[test]
fn metadata_file_and_dry_run() {
    let p = Project::new("meta");
    p.file("compose.yaml", "services:\n  m:\n    build: .\n  n:\n    build:\n      context: .\n      additional_contexts:\n        up: service:m\n")
        .file("Dockerfile", "FROM cbuild-base\nRUN echo m > /m\n");
    let out = p.cbuild(&["build", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("would build `m` as `{}`", p.image("m"))),
        "{text}"
    );
    assert!(
        text.contains("would build `n`") && text.contains("after m"),
        "{text}"
    );
    assert!(
        !docker(&["image", "inspect", &p.image("m")])
            .status
            .success(),
        "dry run built something"
    );

    let meta = p.path().join("meta.json");
    p.build_ok(&["build", "--metadata-file", meta.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    // The engine names the image by its config digest (graph driver) or its
    // manifest digest (containerd store); the metadata has both, as buildx's.
    let id = image_id(&p.image("m"));
    let m = &v["m"];
    assert!(
        m["containerimage.config.digest"].as_str() == Some(id.as_str())
            || m["containerimage.digest"].as_str() == Some(id.as_str()),
        "{id} in {m}"
    );
    assert!(
        v["n"]["image.name"]
            .as_str()
            .unwrap()
            .contains(&p.image("n")),
        "{v}"
    );
}

#[test]
fn build_options_reach_buildkit() {
    let p = Project::new("opts");
    let extra_tag = format!("{}-extra:7", p.name);
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  opts:\n    build:\n      context: .\n      tags: [\"{extra_tag}\"]\n      extra_hosts:\n        - \"myhost:10.1.2.3\"\n      shm_size: 96m\n      ulimits:\n        nofile:\n          soft: 1111\n          hard: 2222\n      labels:\n        - org.example.list=form\n"
        ),
    )
    .file(
        "Dockerfile",
        "FROM cbuild-base\nRUN grep myhost /etc/hosts | tr -s ' \\t' ' ' > /hosts && /bin/busybox df -k /dev/shm | tail -1 | tr -s ' ' | cut -d' ' -f2 > /shm && ulimit -n > /nofile\n",
    );
    p.build_ok(&["build"]);
    let img = p.image("opts");
    assert_eq!(run_in(&img, "cat /hosts"), "10.1.2.3 myhost\n");
    assert_eq!(run_in(&img, "cat /shm"), format!("{}\n", 96 * 1024));
    assert_eq!(run_in(&img, "cat /nofile"), "1111\n");
    assert_eq!(labels(&img)["org.example.list"], "form");
    assert_eq!(image_id(&extra_tag), image_id(&img));
    let _ = docker(&["rmi", "-f", &extra_tag]);
}
