//! Builders by name against the real engine: a buildx `remote` instance
//! pointing at the engine's BuildKit in "buildkitd mode" over TLS (the
//! endpoint of `tls.rs`), a buildx `docker` instance and a Docker context
//! pointing at the engine, and the current context standing in for
//! `DOCKER_HOST`. Each test has its own `DOCKER_CONFIG`. Contexts are made
//! by the Docker CLI itself; instance files are written in the format
//! buildx writes (JSON of its `store.NodeGroup`), as no buildx is here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{docker_host, run_in, stderr, stdout, Project};
use crate::tls::{endpoint, pki};

fn project(tag: &str, text: &str) -> Project {
    let p = Project::new(tag);
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file(
            "Dockerfile",
            "FROM cbuild-base\nCOPY hello.txt /hello.txt\n",
        )
        .file("hello.txt", text);
    p
}

/// Writes the buildx instance `name` (one node) into `config`.
fn instance(config: &Path, name: &str, driver: &str, endpoint: &str, opts: &str) -> PathBuf {
    let dir = config.join("buildx").join("instances");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"{{"Name":"{name}","Driver":"{driver}","Nodes":[{{"Name":"{name}0","Endpoint":"{endpoint}","Platforms":null,"DriverOpts":{opts},"Flags":null,"Files":null}}],"Dynamic":false}}"#
        ),
    )
    .unwrap();
    path
}

/// A `remote` buildx instance `name` with driver options `opts`
/// (`k=v,…`): made by `docker buildx create` itself when scripts/engine
/// provides buildx 0.29 (`CBUILD_BUILDX_029`), which proves the format
/// cbuild reads; else written in that format.
fn remote_instance(config: &Path, name: &str, endpoint: &str, opts: &[(&str, String)]) -> PathBuf {
    if let Some(buildx) = std::env::var_os("CBUILD_BUILDX_029").filter(|b| !b.is_empty()) {
        let csv: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let out = Command::new(buildx)
            .env("DOCKER_CONFIG", config)
            .env("DOCKER_HOST", docker_host())
            .args(["create", "--name", name, "--driver", "remote"])
            .args(["--driver-opt", &csv.join(",")])
            .arg(endpoint)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        return config
            .join("buildx")
            .join("instances")
            .join(name.to_ascii_lowercase());
    }
    let json: Vec<String> = opts
        .iter()
        .map(|(k, v)| format!("\"{k}\":\"{v}\""))
        .collect();
    let file = instance(
        config,
        name,
        "remote",
        endpoint,
        &format!("{{{}}}", json.join(",")),
    );
    let lower = file.with_file_name(name.to_ascii_lowercase());
    std::fs::rename(&file, &lower).unwrap();
    lower
}

/// `docker context create NAME --docker host=HOST` into `config`.
fn context(config: &Path, name: &str, host: &str) {
    let out = Command::new("docker")
        .env("DOCKER_CONFIG", config)
        .args(["context", "create", name, "--docker"])
        .arg(format!("host={host}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// cbuild in `p` with `DOCKER_CONFIG=config`, no `DOCKER_HOST`, and `env`.
fn cbuild_without_docker_host(
    p: &Project,
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cbuild"));
    cmd.current_dir(p.path())
        .env("CBUILD_CACHE_DIR", p.cache.path())
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("BUILDKIT_HOST")
        .env_remove("BUILDX_BUILDER")
        .env_remove("COMPOSE_FILE")
        .env_remove("COMPOSE_PROJECT_NAME")
        .args(["-p", &p.name])
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A `remote` instance whose endpoint is a TLS buildkitd and whose driver
/// options carry the CA and client certificate: `--builder NAME` and
/// `BUILDX_BUILDER` build through it, and `doctor` says so.
#[test]
fn a_remote_buildx_instance_over_tls() {
    let pki = pki();
    let ep = endpoint(&pki, true);
    let config = tempfile::tempdir().unwrap();
    let opts = [
        ("cacert", pki.path("ca.pem")),
        ("cert", pki.path("cert.pem")),
        ("key", pki.path("key.pem")),
    ];
    // Mixed case: buildx stores the instance under its lower-cased name.
    let endpoint = format!("tcp://{}", ep.addr);
    let file = remote_instance(config.path(), "TlsRemote", &endpoint, &opts);
    let cfg = config.path().display().to_string();
    let p = project("bx-remote", "through a remote builder\n");

    let out = p.cbuild_env(
        &["--builder", "tlsremote", "build"],
        &[("DOCKER_CONFIG", &cfg)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_in(&p.image("app"), "cat /hello.txt"),
        "through a remote builder\n"
    );

    p.file("hello.txt", "named by BUILDX_BUILDER\n");
    let env = [
        ("DOCKER_CONFIG", cfg.as_str()),
        ("BUILDX_BUILDER", "tlsremote"),
    ];
    let out = p.cbuild_env(&["build"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_in(&p.image("app"), "cat /hello.txt"),
        "named by BUILDX_BUILDER\n"
    );

    let out = p.cbuild_env(&["doctor"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("builder:   tcp://{} (buildkitd, TLS)", ep.addr)),
        "{text}"
    );
    assert!(
        text.contains("from:      BUILDX_BUILDER: buildx builder `TlsRemote` (remote driver")
            && text.contains(&file.display().to_string()),
        "{text}"
    );
}

/// A `docker` instance whose endpoint is a Docker context made by the
/// Docker CLI: the build goes to that context's engine even with
/// `DOCKER_HOST` pointing nowhere, and its image look-ups too (the second
/// build is up to date).
#[test]
fn a_docker_buildx_instance_and_a_docker_context() {
    let config = tempfile::tempdir().unwrap();
    context(config.path(), "it-engine", &docker_host());
    instance(config.path(), "eng", "docker", "it-engine", "null");
    let cfg = config.path().display().to_string();
    let nowhere = config.path().join("no-engine.sock");
    let nowhere = format!("unix://{}", nowhere.display());
    let env = [
        ("DOCKER_CONFIG", cfg.as_str()),
        ("DOCKER_HOST", nowhere.as_str()),
    ];
    let p = project("bx-docker", "through a docker builder\n");

    let out = p.cbuild_env(&["--progress", "json", "--builder", "eng", "build"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_in(&p.image("app"), "cat /hello.txt"),
        "through a docker builder\n"
    );
    let out = p.cbuild_env(&["--progress", "json", "--builder", "eng", "build"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"up_to_date\":true"),
        "{}",
        stdout(&out)
    );

    // The context's name is a builder name too.
    p.file("hello.txt", "through the context\n");
    let out = p.cbuild_env(&["--builder", "it-engine", "build"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_in(&p.image("app"), "cat /hello.txt"),
        "through the context\n"
    );
}

/// Without `DOCKER_HOST`, the current context (`docker context use`, or
/// `DOCKER_CONTEXT`) names the engine, as for the Docker CLI.
#[test]
fn the_current_docker_context_names_the_engine() {
    let config = tempfile::tempdir().unwrap();
    context(config.path(), "it-current", &docker_host());
    let p = project("bx-current", "through the current context\n");

    let out = cbuild_without_docker_host(
        &p,
        config.path(),
        &["build"],
        &[("DOCKER_CONTEXT", "it-current")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run_in(&p.image("app"), "cat /hello.txt"),
        "through the current context\n"
    );

    let used = Command::new("docker")
        .env("DOCKER_CONFIG", config.path())
        .args(["context", "use", "it-current"])
        .output()
        .unwrap();
    assert!(used.status.success(), "{}", stderr(&used));
    let out = cbuild_without_docker_host(&p, config.path(), &["--progress", "json", "build"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"up_to_date\":true"),
        "{}",
        stdout(&out)
    );
    let out = cbuild_without_docker_host(&p, config.path(), &["doctor"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("currentContext") && stdout(&out).contains("`it-current`"),
        "{}",
        stdout(&out)
    );
}

/// An unknown name and a driver cbuild cannot reach: exit 2, saying where
/// cbuild looked and what to use; nothing is built.
#[test]
fn unknown_and_unreachable_builders_are_bad_input() {
    let config = tempfile::tempdir().unwrap();
    instance(
        config.path(),
        "ci",
        "remote",
        "unix:///run/buildkit/buildkitd.sock",
        "null",
    );
    instance(
        config.path(),
        "dc",
        "docker-container",
        "unix:///var/run/docker.sock",
        "null",
    );
    context(config.path(), "it-blue", &docker_host());
    let cfg = config.path().display().to_string();
    let env = [("DOCKER_CONFIG", cfg.as_str())];
    let p = project("bx-bad", "never built\n");

    let out = p.cbuild_env(&["--builder", "nope", "build"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let looked = config.path().join("buildx").join("instances").join("nope");
    assert!(
        err.contains("no builder named `nope`") && err.contains(&looked.display().to_string()),
        "{err}"
    );
    assert!(
        err.contains("`ci`, `dc`") && err.contains("`default`, `it-blue`"),
        "{err}"
    );

    let out = p.cbuild_env(
        &["build"],
        &[("DOCKER_CONFIG", &cfg), ("BUILDX_BUILDER", "dc")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("`docker-container` driver") && err.contains("--builder tcp://"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = p.cbuild_env(
        &["doctor"],
        &[("DOCKER_CONFIG", &cfg), ("BUILDX_BUILDER", "nope")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = crate::common::docker(&["image", "inspect", &p.image("app")]);
    assert!(!out.status.success(), "nothing was built");
}
