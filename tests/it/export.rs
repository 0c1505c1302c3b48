//! A builder that is not the Docker engine of DOCKER_HOST: cbuild asks it
//! for the `docker` exporter, takes the tarball through the session
//! (FileSend) and loads it into the engine of DOCKER_HOST.
//!
//! The builder is Docker 28.5's BuildKit on the containerd image store,
//! reached in "buildkitd mode": a plain TCP endpoint that makes the
//! engine's `POST /grpc` upgrade first, so what answers is BuildKit's own
//! gRPC API as a standalone buildkitd serves it (CI cannot run one). cbuild
//! cannot tell a Docker engine is behind it, and the images must end up in
//! the test engine of DOCKER_HOST, which is another engine.

use std::path::PathBuf;

use crate::common::{docker_at, docker_host, stderr, stdout, Project};
use crate::tls::{proxy_to_engine, Endpoint};

/// The engine whose BuildKit plays the standalone builder.
fn builder_engine_socket() -> PathBuf {
    let host = std::env::var("CBUILD_D28_CONTAINERD_DOCKER_HOST").unwrap_or_else(|_| {
        panic!(
            "CBUILD_D28_CONTAINERD_DOCKER_HOST is not set: run the tests through scripts/test \
             (`eval \"$(scripts/engine env)\"` exports it with the Docker 28.5 containerd-store engine)"
        )
    });
    PathBuf::from(
        host.strip_prefix("unix://")
            .expect("the containerd-store engine is on a unix socket"),
    )
}

/// A plain TCP endpoint in front of that engine's BuildKit.
fn buildkitd() -> Endpoint {
    proxy_to_engine(builder_engine_socket(), None, true)
}

fn project(tag: &str) -> Project {
    let p = Project::new(tag);
    p.file(
        "compose.yaml",
        "services:\n  app:\n    build: .\n    image: ${IMG}\n",
    )
    .file(
        "Dockerfile",
        "FROM cbuild-base\nCOPY hello.txt /hello.txt\nRUN echo built > /built.txt\n",
    )
    .file("hello.txt", "through the session\n");
    p
}

/// Whether `image` is in the engine at `host`.
fn present_on(host: &str, image: &str) -> bool {
    std::process::Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(["image", "inspect", image])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_standalone_builder_exports_a_tarball_loaded_into_docker_host() {
    let bk = buildkitd();
    let builder = format!("tcp://{}", bk.addr);
    let p = project("export");
    let image = format!("{}-app:v1", p.name);
    // The images go to the engine of DOCKER_HOST; when the suite runs on the
    // builder's own engine, another engine plays that part.
    let builder_host = format!("unix://{}", builder_engine_socket().display());
    let target = if docker_host() == builder_host {
        std::env::var("CBUILD_D28_DOCKER_HOST")
            .expect("CBUILD_D28_DOCKER_HOST is set by scripts/engine")
    } else {
        docker_host()
    };
    let env = [("IMG", image.as_str()), ("DOCKER_HOST", target.as_str())];
    let run_in = |image: &str, script: &str| {
        let out = docker_at(&target, &["run", "--rm", image, "sh", "-c", script]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A successful build through the builder, and whether it was skipped.
    let build = || {
        let out = p.cbuild_env(
            &["--builder", &builder, "--progress", "json", "build"],
            &env,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let events = stdout(&out);
        (events.contains("\"up_to_date\":true"), events)
    };
    build();
    // The image is in DOCKER_HOST's engine, loaded there, with its tag…
    assert_eq!(
        run_in(&image, "cat /hello.txt /built.txt"),
        "through the session\nbuilt\n"
    );
    // …and not in the store of the engine whose BuildKit built it.
    assert!(
        !present_on(&builder_host, &image),
        "{image} was exported into the builder's engine"
    );

    // The engine's ID after the load is what the next run compares with.
    let (skipped, events) = build();
    assert!(skipped, "{events}");

    // `status` knows no builder, and agrees.
    let out = p.cbuild_env(&["status"], &env);
    assert!(
        stdout(&out).contains("fresh"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    // A content change reaches the image through the same path.
    p.file("hello.txt", "changed\n");
    let (skipped, events) = build();
    assert!(!skipped, "{events}");
    assert_eq!(run_in(&image, "cat /hello.txt"), "changed\n");

    // A failed build loads nothing: the image stays the last good one.
    p.file(
        "Dockerfile",
        "FROM cbuild-base\nCOPY hello.txt /hello.txt\nRUN false\n",
    );
    p.file("hello.txt", "broken\n");
    let out = p.cbuild_env(&["--builder", &builder, "build"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(run_in(&image, "cat /hello.txt"), "changed\n");
    p.file(
        "Dockerfile",
        "FROM cbuild-base\nCOPY hello.txt /hello.txt\nRUN echo built > /built.txt\n",
    );
    p.file("hello.txt", "changed\n");

    // A removed image is built again, not reported up to date.
    let _ = docker_at(&target, &["rmi", "-f", &image]);
    let (skipped, events) = build();
    assert!(!skipped, "{events}");
    assert_eq!(run_in(&image, "cat /hello.txt"), "changed\n");
}

#[test]
fn a_standalone_builder_without_an_engine_is_a_clear_error() {
    let bk = buildkitd();
    let builder = format!("tcp://{}", bk.addr);
    let p = project("export-noengine");
    let image = format!("{}-app", p.name);
    let gone = tempfile::tempdir().unwrap();
    let host = format!("unix://{}", gone.path().join("docker.sock").display());
    let out = p.cbuild_env(
        &["--builder", &builder, "build"],
        &[("IMG", image.as_str()), ("DOCKER_HOST", host.as_str())],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&builder) && err.contains(&host), "{err}");
    assert!(err.contains("hint: set DOCKER_HOST"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!present_on(&docker_host(), &image));
}

#[test]
fn doctor_names_the_exporter_and_store() {
    let bk = buildkitd();
    let builder = format!("tcp://{}", bk.addr);
    let p = Project::new("export-doctor");
    let out = p.cbuild(&["--builder", &builder, "doctor"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    // An OCI layout when DOCKER_HOST's engine has the containerd store.
    let containerd = docker_host() == format!("unix://{}", builder_engine_socket().display());
    let kind = if containerd { "oci" } else { "docker" };
    assert!(text.contains(&format!("exporter:  {kind}\n")), "{text}");
    assert!(
        text.contains("loaded into the") && text.contains("Docker engine of DOCKER_HOST"),
        "{text}"
    );
    // Debian's Docker 28.5 reports `v0.0.0+unknown`; reached directly it
    // is a BuildKit built from source, not an old one.
    assert!(!text.contains("older than"), "{text}");

    let out = p.cbuild_env(
        &["doctor"],
        &[(
            "DOCKER_HOST",
            &std::env::var("CBUILD_D28_CONTAINERD_DOCKER_HOST").unwrap(),
        )],
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("exporter:  moby"), "{text}");
    assert!(text.contains("containerd image store"), "{text}");
    assert!(text.contains("buildkit:  v0.25.0 (embedded"), "{text}");
}
