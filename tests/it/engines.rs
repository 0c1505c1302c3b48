//! The test matrix itself: each engine `scripts/engine` exports is the Docker
//! and store its variable names, the local registries serve and guard what
//! later tests rely on, and cbuild builds on every engine from a base image
//! that BuildKit must pull from the local registry.

use crate::common::*;

/// `docker info` of one engine: server version, storage driver, and its
/// driver status pairs.
fn info(host: &str) -> (String, String, String) {
    let out = docker_at(
        host,
        &[
            "info",
            "--format",
            "{{.ServerVersion}}|{{.Driver}}|{{json .DriverStatus}}",
        ],
    );
    assert!(
        out.status.success(),
        "docker info on {host}: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    let mut parts = text.trim().splitn(3, '|').map(str::to_string);
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

#[test]
fn each_engine_is_the_docker_and_store_its_variable_names() {
    let (v, driver, _) = info(&engine("d28"));
    assert!(v.starts_with("28."), "d28 runs Docker {v}");
    assert_eq!(
        driver, "overlay2",
        "d28 should use the overlay2 graph driver"
    );

    let (v, driver, status) = info(&engine("d28-containerd"));
    assert!(v.starts_with("28."), "d28-containerd runs Docker {v}");
    assert!(
        status.contains("io.containerd.snapshotter"),
        "d28-containerd should use the containerd image store, has {driver} {status}"
    );

    let (v, _, _) = info(&engine("d26"));
    assert!(v.starts_with("26."), "d26 runs Docker {v}");
    let (v, _, _) = info(&engine("stable"));
    assert!(v.starts_with("20.10"), "stable runs Docker {v}");
}

#[test]
fn registries_hold_the_base_image_and_check_the_password() {
    let digest = registry_digest(&registry(), "cbuild-base", "latest", None);
    assert!(
        digest.as_deref().is_some_and(|d| d.starts_with("sha256:")),
        "{}/cbuild-base:latest should be there, got {digest:?}",
        registry()
    );
    assert_eq!(
        registry_digest(&registry(), "cbuild-base", "no-such-tag", None),
        None
    );

    let auth = auth_registry();
    let anonymous = registry_request(&auth.host, "GET", "/v2/", None);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let wrong = registry_request(&auth.host, "GET", "/v2/", Some((&auth.user, "wrong")));
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let right = registry_request(
        &auth.host,
        "GET",
        "/v2/",
        Some((&auth.user, &auth.password)),
    );
    assert_eq!(right.status, 200, "{right:?}");
}

/// Every engine reaches the registry under the same `127.0.0.1:PORT` name
/// (each runs in its own network namespace), so a build that must pull its
/// base image works on each, and the result runs.
#[test]
fn builds_from_the_local_registry_on_every_engine() {
    let p = Project::new("matrix");
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file(
            "Dockerfile",
            &format!(
                "FROM {}/cbuild-base:latest\nCOPY msg /msg\nRUN cat /msg > /copy\n",
                registry()
            ),
        )
        .file("msg", "from the registry\n");
    for name in ["d28", "d28-containerd", "d26", "stable"] {
        let host = engine(name);
        let out = p.cbuild_env(&["build", "--no-cache"], &[("DOCKER_HOST", &host)]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let run = docker_at(&host, &["run", "--rm", &p.image("app"), "cat", "/copy"]);
        assert_eq!(
            stdout(&run),
            "from the registry\n",
            "{name}: {}",
            stderr(&run)
        );
        let _ = docker_at(&host, &["rmi", "-f", &p.image("app")]);
    }
}
