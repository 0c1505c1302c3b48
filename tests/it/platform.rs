//! Platforms and attestations (`platforms:`, `--platform`, `provenance`,
//! `sbom`) on the engines where each makes sense: the graph driver refuses
//! an image index as compose does, the containerd image store keeps one,
//! and a builder that is not an engine loads one as an OCI tarball into a
//! containerd-store engine. Every case names its engines, so it runs the
//! same whichever engine the suite runs on.

use std::path::PathBuf;

use crate::common::{compose_240, docker_at, engine, stderr, stdout, Project};
use crate::tls::proxy_to_engine;

/// A Dockerfile whose image says which platform each variant was built for.
const DOCKERFILE: &str =
    "FROM cbuild-base\nARG TARGETPLATFORM\nRUN echo \"$TARGETPLATFORM\" > /platform\n";

/// A project with one service `app` (image `IMAGE`) whose `build:` section
/// has the extra lines `build` (indented under `build:`).
fn project(tag: &str, build: &str) -> (Project, String) {
    let p = Project::new(tag);
    let image = format!("{}-app", p.name);
    p.file(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {image}\n    build:\n      context: .\n{build}"),
    )
    .file("Dockerfile", DOCKERFILE);
    (p, image)
}

/// Removes `image` from the engine at `host` when dropped (projects only
/// clean the engine of DOCKER_HOST).
struct Cleanup(String, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker_at(&self.0, &["rmi", "-f", &self.1]);
    }
}

fn present_on(host: &str, image: &str) -> bool {
    docker_at(host, &["image", "inspect", image])
        .status
        .success()
}

/// `cat /platform` in the `platform` variant of `image`, on `host`.
fn platform_of(host: &str, image: &str, platform: &str) -> String {
    let out = docker_at(
        host,
        &[
            "run",
            "--rm",
            "--platform",
            platform,
            image,
            "cat",
            "/platform",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// Whether the JSON progress of a build says it was skipped.
fn skipped(out: &std::process::Output) -> bool {
    assert!(out.status.success(), "{}", stderr(out));
    stdout(out).contains("\"up_to_date\":true")
}

/// The manifests the engine at `host` holds for `image` (API 1.48+:
/// `manifests=1`), as `(kind, platform)`: kind `image` or `attestation`.
fn manifests(host: &str, image: &str) -> Vec<(String, String)> {
    use std::io::{Read, Write};
    let socket = host.strip_prefix("unix://").expect("a unix socket");
    let mut conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        conn,
        "GET /v1.48/images/{image}/json?manifests=1 HTTP/1.0\r\nHost: docker\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {raw}"));
    v["Manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no Manifests in {raw}"))
        .iter()
        .map(|m| {
            let p = &m["ImageData"]["Platform"];
            let platform = [&p["os"], &p["architecture"], &p["variant"]]
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("/");
            (m["Kind"].as_str().unwrap_or("").to_string(), platform)
        })
        .collect()
}

/// The graph driver keeps one platform per image and no attestations:
/// refused before any build, exit 1 (the builder cannot; the same file
/// builds on another), as compose 2.40 refuses it on the same engine.
#[test]
fn an_image_index_on_a_graph_driver_is_refused_before_any_build() {
    let (p, image) = project("plat-graph", "      platforms: [linux/amd64, linux/386]\n");
    for name in ["d28", "d26", "stable"] {
        let host = engine(name);
        let out = p.cbuild_env(&["build"], &[("DOCKER_HOST", &host)]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains("service `app`: asks for 2 platforms (linux/amd64, linux/386 in `services.app.build.platforms`)")
                && err.contains("graph driver")
                && err.contains(&host),
            "{name}: {err}"
        );
        assert!(
            err.contains("hint: turn on the containerd image store"),
            "{err}"
        );
        assert!(!err.contains("building"), "{name}: a build started: {err}");
        assert!(!present_on(&host, &image), "{name}");
    }
    // compose 2.40 on the same engine refuses it too.
    let out = std::process::Command::new(compose_240())
        .current_dir(p.path())
        .env("DOCKER_HOST", engine("d28"))
        .args(["-p", &p.name, "build"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Multi-platform build is not supported for the docker driver"),
        "{}",
        stderr(&out)
    );

    // One platform builds; an attestation is refused the same way.
    let host = engine("d28");
    let _c = Cleanup(host.clone(), image.clone());
    let out = p.cbuild_env(
        &["build", "--platform", "linux/amd64"],
        &[("DOCKER_HOST", &host)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(platform_of(&host, &image, "linux/amd64"), "linux/amd64");
    let out = p.cbuild_env(
        &[
            "build",
            "--platform",
            "linux/amd64",
            "--provenance",
            "mode=max",
        ],
        &[("DOCKER_HOST", &host)],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("attestations: provenance (`--provenance`)"),
        "{err}"
    );
}

/// A platform none of the builder's workers has: one error naming the
/// builder and what it has, before any build (compose builds it and labels
/// amd64 content as 386).
#[test]
fn a_platform_the_builder_lacks_is_refused_naming_what_it_has() {
    let host = engine("d28-containerd");
    let (p, image) = project(
        "plat-missing",
        "      platforms: [linux/amd64, linux/386]\n",
    );
    let out = p.cbuild_env(&["build"], &[("DOCKER_HOST", &host)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("the builder at `{host}` cannot build for linux/386 (`services.app.build.platforms`): its workers build for linux/amd64")),
        "{err}"
    );
    assert!(!err.contains("building"), "a build started: {err}");
    assert!(!present_on(&host, &image));
    // DOCKER_DEFAULT_PLATFORM outside `platforms:` is bad input, as in compose.
    let out = p.cbuild_env(
        &["build"],
        &[
            ("DOCKER_HOST", &host),
            ("DOCKER_DEFAULT_PLATFORM", "linux/arm64"),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`services.app.build.platforms`: does not include `linux/arm64`"),
        "{err}"
    );
}

/// On the containerd image store: one index holding every platform, each
/// variant built for its platform; an unchanged build is skipped; a changed
/// platform set or provenance setting rebuilds.
#[test]
fn the_containerd_store_keeps_one_index_and_skips_it_when_unchanged() {
    let host = engine("d28-containerd");
    let (p, image) = project(
        "plat-index",
        "      platforms: [linux/amd64, linux/amd64/v2]\n",
    );
    let _c = Cleanup(host.clone(), image.clone());
    let env = [("DOCKER_HOST", host.as_str())];
    let build = |args: &[&str]| {
        let mut all = vec!["--progress", "json", "build"];
        all.extend_from_slice(args);
        p.cbuild_env(&all, &env)
    };
    assert!(!skipped(&build(&[])));
    let images: Vec<String> = manifests(&host, &image)
        .into_iter()
        .filter(|(k, _)| k == "image")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(images, ["linux/amd64", "linux/amd64/v2"]);
    assert_eq!(
        platform_of(&host, &image, "linux/amd64/v2"),
        "linux/amd64/v2"
    );
    assert!(skipped(&build(&[])), "an unchanged index was rebuilt");

    // Another platform set is another image.
    p.file(
        "compose.yaml",
        &format!("services:\n  app:\n    image: {image}\n    build:\n      context: .\n      platforms: [linux/amd64]\n"),
    );
    assert!(!skipped(&build(&[])));
    assert!(skipped(&build(&[])));

    // Provenance is an input, and lands as an attestation manifest.
    assert!(!skipped(&build(&["--provenance", "mode=max"])));
    let kinds: Vec<String> = manifests(&host, &image)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(kinds.contains(&"attestation".to_string()), "{kinds:?}");
    assert!(skipped(&build(&["--provenance", "mode=max"])));
    assert!(!skipped(&build(&["--provenance", "false"])));
}

/// SBOM needs BuildKit's scanner image, which cannot be pulled here: the
/// error names the setting and the generator image.
#[test]
fn an_sbom_without_its_generator_image_is_a_clear_error() {
    let host = engine("d28-containerd");
    let (p, image) = project("plat-sbom", "      sbom: true\n");
    let out = p.cbuild_env(&["build"], &[("DOCKER_HOST", &host)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`services.app.build.sbom`: the builder cannot get the SBOM generator image `docker/buildkit-syft-scanner`"),
        "{err}"
    );
    assert!(err.contains("--sbom=false"), "{err}");
    assert!(!present_on(&host, &image));
    // A bad value is bad input, naming the key.
    let (p, _) = project("plat-sbom-bad", "      sbom: max\n");
    let out = p.cbuild_env(&["build"], &[("DOCKER_HOST", &host)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`services.app.build.sbom`: `max` is not `key=value`"),
        "{err}"
    );
}

/// A builder that is not an engine (the containerd-store engine's BuildKit
/// in "buildkitd mode", the path CI has): its index comes back as an OCI
/// tarball into a containerd-store engine, is skipped when unchanged; into
/// a graph-driver engine it is refused as buildx refuses it.
#[test]
fn a_standalone_builder_loads_an_index_as_an_oci_tarball() {
    let host = engine("d28-containerd");
    let socket = PathBuf::from(host.strip_prefix("unix://").unwrap());
    let bk = proxy_to_engine(socket, None, true);
    let builder = format!("tcp://{}", bk.addr);
    let (p, image) = project(
        "plat-oci",
        "      platforms: [linux/amd64, linux/amd64/v2]\n",
    );
    let _c = Cleanup(host.clone(), image.clone());
    let build = |target: &str| {
        p.cbuild_env(
            &["--builder", &builder, "--progress", "json", "build"],
            &[("DOCKER_HOST", target)],
        )
    };
    assert!(!skipped(&build(&host)));
    assert_eq!(platform_of(&host, &image, "linux/amd64"), "linux/amd64");
    assert_eq!(
        platform_of(&host, &image, "linux/amd64/v2"),
        "linux/amd64/v2"
    );
    assert!(skipped(&build(&host)));

    let graph = engine("d28");
    let out = build(&graph);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is not a Docker engine, so the image is loaded into the Docker engine of DOCKER_HOST, whose image store (a graph driver)"),
        "{err}"
    );
    assert!(!present_on(&graph, &image));
}

/// The real standalone buildkitd (this session only; CI has none, and the
/// case skips there): linux/amd64 and linux/386 in one index, loaded into
/// the containerd store, each variant run on its platform.
#[test]
fn a_real_buildkitd_builds_amd64_and_386_into_one_index() {
    let Ok(builder) = std::env::var("CBUILD_BUILDKITD_HOST") else {
        // CI cannot build one; the buildkitd-mode case above covers the wire
        // path with one platform's worker.
        return;
    };
    let host = engine("d28-containerd");
    let (p, image) = project("plat-bk", "      platforms: [linux/amd64, linux/386]\n");
    // A standalone buildkitd has no engine store to take `cbuild-base` from.
    let base = crate::common::registry_base_in(&host);
    p.file(
        "Dockerfile",
        &DOCKERFILE.replace("FROM cbuild-base", &format!("FROM {base}")),
    );
    let _c = Cleanup(host.clone(), image.clone());
    let build = || {
        p.cbuild_env(
            &["--builder", &builder, "--progress", "json", "build"],
            &[("DOCKER_HOST", &host)],
        )
    };
    assert!(!skipped(&build()));
    assert_eq!(platform_of(&host, &image, "linux/amd64"), "linux/amd64");
    assert_eq!(platform_of(&host, &image, "linux/386"), "linux/386");
    assert!(skipped(&build()));
}
