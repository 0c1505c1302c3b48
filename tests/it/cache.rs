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
use crate::tls::proxy_to_engine;

/// A token no earlier run used (the project name alone repeats a PID).
fn token(p: &Project) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", p.name)
}

/// `cbuild --progress json ARGS build` on the engine at `host`, asserting
/// success (`what` names the build): the RUN steps it reported, and those
/// it reported cached.
fn build_on(p: &Project, host: &str, args: &[&str], what: &str) -> (Vec<String>, Vec<String>) {
    let mut full = vec!["--progress", "json"];
    full.extend_from_slice(args);
    full.push("build");
    let out = p.cbuild_env(&full, &[("DOCKER_HOST", host)]);
    assert_ok(&out, what);
    run_steps(&events(&out))
}

/// The export half: the first build of the steps, on the engine at `host`;
/// nothing can come from a cache yet.
fn export_on(p: &Project, host: &str) {
    let (all, cached) = build_on(p, host, &[], "the export build");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(cached.is_empty(), "nothing to reuse yet: {cached:?}");
}

/// The import half: a build on the engine at `host` (with `args` before
/// `build`) whose every RUN step comes from the cache.
fn import_on(p: &Project, host: &str, args: &[&str], what: &str) {
    let (all, cached) = build_on(p, host, args, what);
    assert_eq!(all.len(), 2, "{what}: {all:?}");
    assert_eq!(cached, all, "{what}: every RUN step comes from the cache");
}

/// [`import_on`] each of the engines `names`, which never ran these
/// steps; the image each makes holds what the steps wrote with `token`.
fn import_on_engines(p: &Project, names: &[&str], image: &str, token: &str) {
    for name in names {
        let host = engine(name);
        import_on(p, &host, &[], &format!("the import build on {name}"));
        let y = docker_at(&host, &["run", "--rm", image, "cat", "/y"]);
        assert_eq!(stdout(&y), format!("{token}\n{token}\n"), "{name}");
    }
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
        &cache_compose(
            &image,
            &format!("cache_to: [\"type=registry,ref={cache_ref},mode=max\"]"),
        ),
    );
    // The containerd image store's BuildKit can export to a registry.
    let exporter = engine("d28-containerd");
    export_on(&p, &exporter);

    p.file(
        "compose.yaml",
        &cache_compose(&image, &format!("cache_from: [\"{cache_ref}\"]")),
    );
    // Two other engines that never ran these steps: the graph drivers of
    // 28.5 (the primary engine) and 26.1.
    import_on_engines(&p, &["d28", "d26"], &image, &token);
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
        &cache_compose(&pushed, "cache_to: [type=inline]"),
    );
    let exporter = engine("d28-containerd");
    export_on(&p, &exporter);
    let push = docker_at(&exporter, &["push", &pushed]);
    assert_ok(&push, "docker push");

    p.file(
        "compose.yaml",
        &cache_compose(&image, &format!("cache_from: [\"{pushed}\"]")),
    );
    let importer = engine("d28");
    import_on(&p, &importer, &[], "the import of the image's cache");
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
            "cache_from: [\"type=local,dest=/tmp/c\"]",
            "services.app.build.cache_from[0]",
            "needs `src=DIR`",
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

/// A compose file for one service whose build has the `cache` lines
/// (already YAML: `cache_to: [...]`).
fn cache_compose(image: &str, cache: &str) -> String {
    format!(
        "services:\n  app:\n    image: {image}\n    build:\n      context: .\n      pull: true\n      {cache}\n"
    )
}

/// The digest `index.json` in `dir` gives the tag `latest`, after checking
/// the layout is whole: the tagged manifest's blob and every blob it names.
fn exported_manifest(dir: &std::path::Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .unwrap_or_else(|| panic!("no `latest` in {index}"))
        .clone();
    let digest = m["digest"].as_str().unwrap().to_string();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&digest)).unwrap()).unwrap();
    let mut named = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    for l in manifest["layers"].as_array().unwrap() {
        named.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in named {
        assert!(blob(&d).is_file(), "{d} is named but missing");
    }
    assert!(dir.join("oci-layout").is_file());
    assert!(!dir.join("index.json.lock").exists());
    digest
}

#[test]
fn local_cache_exported_by_one_engine_is_imported_by_others() {
    let p = Project::new("cache-local");
    let token = token(&p);
    let image = p.image("app");
    p.file("Dockerfile", &dockerfile(&token));
    // Relative to the working directory, as with buildx; not used by the
    // build, so not part of its context. A file of the user's in it stays.
    p.file("cache-dir/notes.txt", "mine\n");
    p.file(
        "compose.yaml",
        &cache_compose(&image, "cache_to: [\"type=local,dest=cache-dir,mode=max\"]"),
    );
    let exporter = engine("d28-containerd");
    export_on(&p, &exporter);
    let dir = p.path().join("cache-dir");
    exported_manifest(&dir);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine\n"
    );

    p.file(
        "compose.yaml",
        &cache_compose(&image, "cache_from: [\"type=local,src=cache-dir\"]"),
    );
    // Engines that never ran these steps: the graph drivers of 28.5 (the
    // primary engine) and 26.1, which import local caches but cannot
    // export them.
    import_on_engines(&p, &["d28", "d26"], &image, &token);
    // Docker 20.10 (BuildKit 0.8) reads the cache through the session too,
    // but its Dockerfile frontend keys the steps differently from 28.5's:
    // the build must work, hits are not expected.
    let stable = engine("stable");
    build_on(&p, &stable, &[], "the import build on 20.10");
    for host in [exporter, engine("d26"), stable] {
        remove_images(&host, &[&image]);
    }
}

#[test]
fn local_cache_through_a_standalone_builder() {
    // The same exchange when the session travels inside Control.Session:
    // Docker 28.5's containerd-store BuildKit in "buildkitd mode" exports
    // (the image goes to the primary engine as a tarball), 26.1 imports.
    let socket = engine("d28-containerd");
    let bk = proxy_to_engine(
        std::path::PathBuf::from(socket.strip_prefix("unix://").unwrap()),
        None,
        true,
    );
    let builder = format!("tcp://{}", bk.addr);
    let p = Project::new("cache-local-bk");
    let token = token(&p);
    let image = p.image("app");
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("nested/new");
    p.file("Dockerfile", &dockerfile(&token));
    p.file(
        "compose.yaml",
        &cache_compose(
            &image,
            &format!("cache_to: [\"type=local,dest={},tag=v1\"]", dir.display()),
        ),
    );
    let primary = engine("d28");
    let out = p.cbuild_env(
        &["--builder", &builder, "build"],
        &[("DOCKER_HOST", &primary)],
    );
    assert_ok(&out, "the export through buildkitd mode");
    let index = std::fs::read_to_string(dir.join("index.json")).unwrap();
    assert!(
        index.contains("\"org.opencontainers.image.ref.name\":\"v1\""),
        "{index}"
    );

    p.file(
        "compose.yaml",
        &cache_compose(
            &image,
            &format!("cache_from: [\"type=local,src={},tag=v1\"]", dir.display()),
        ),
    );
    let mut runs: Vec<(String, Vec<String>)> = vec![(engine("d26"), vec![])];
    // A real standalone buildkitd, where this session has one (CI has
    // none): it imports too, the image going to the primary engine.
    if let Some(real) = std::env::var("CBUILD_BUILDKITD_HOST")
        .ok()
        .filter(|h| !h.is_empty())
    {
        runs.push((primary.clone(), vec!["--builder".into(), real]));
    }
    for (host, args) in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        import_on(
            &p,
            &host,
            &args,
            &format!("the import with {args:?} on {host}"),
        );
    }
    remove_images(&engine("d26"), &[&image]);
    remove_images(&primary, &[&image]);
}

#[test]
fn local_cache_faults_name_the_key_and_change_nothing() {
    let p = Project::new("cache-local-bad");
    let image = p.image("app");
    p.file("Dockerfile", &dockerfile(&token(&p)));
    let host = engine("d28-containerd");
    let run = |cache: &str| {
        p.file("compose.yaml", &cache_compose(&image, cache));
        let out = p.cbuild_env(&["build"], &[("DOCKER_HOST", &host)]);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{err}");
        (out.status.code(), err)
    };
    let expect_fail = |cache: &str, key: &str, says: &[&str]| {
        let (code, err) = run(cache);
        assert_eq!(code, Some(1), "{cache}: {err}");
        for part in [key].iter().chain(says) {
            assert!(err.contains(part), "{cache}: `{part}` missing in:\n{err}");
        }
    };

    // A file where the directory should be.
    p.file("not-a-dir", "user data\n");
    expect_fail(
        "cache_to: [\"type=local,dest=not-a-dir\"]",
        "`services.app.build.cache_to[0]`",
        &["not-a-dir", "cannot create"],
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("not-a-dir")).unwrap(),
        "user data\n"
    );

    // A cache_from directory that is not there: a warning, as with buildx,
    // and nothing is created.
    let (code, err) = run("cache_from: [\"type=local,src=no-such-dir\"]");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("`services.app.build.cache_from[0]`") && err.contains("no-such-dir"),
        "{err}"
    );
    assert!(!p.path().join("no-such-dir").exists());

    // A good cache, then copies of it damaged three ways.
    let (code, err) = run("cache_to: [\"type=local,dest=good,mode=max\"]");
    assert_eq!(code, Some(0), "{err}");
    let good = p.path().join("good");
    let manifest = exported_manifest(&good);
    let copy = |name: &str| {
        let to = p.path().join(name);
        let out = std::process::Command::new("cp")
            .args(["-a"])
            .arg(&good)
            .arg(&to)
            .output()
            .unwrap();
        assert!(out.status.success());
        to
    };
    let flip = |path: &std::path::Path| {
        let mut perms = std::fs::metadata(path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(path, perms).unwrap();
        let mut b = std::fs::read(path).unwrap();
        let i = b.len() / 2;
        b[i] ^= 0xff;
        std::fs::write(path, &b).unwrap();
        b
    };

    // index.json is not an index: cbuild does not write over it.
    let bad_index = copy("bad-index");
    std::fs::write(bad_index.join("index.json"), "{\"manifests\": 7}").unwrap();
    expect_fail(
        "cache_to: [\"type=local,dest=bad-index\"]",
        "`services.app.build.cache_to[0]`",
        &["index.json", "not a valid OCI index"],
    );
    assert_eq!(
        std::fs::read_to_string(bad_index.join("index.json")).unwrap(),
        "{\"manifests\": 7}"
    );

    // The manifest a cache_from tag names does not match its digest.
    let bad_manifest = copy("bad-manifest");
    let path = bad_manifest
        .join("blobs/sha256")
        .join(manifest.strip_prefix("sha256:").unwrap());
    let damaged = flip(&path);
    expect_fail(
        "cache_from: [\"type=local,src=bad-manifest\"]",
        "`services.app.build.cache_from[0]`",
        &["does not match its digest", "bad-manifest"],
    );
    assert_eq!(std::fs::read(&path).unwrap(), damaged, "left as it was");

    // A layer the export would write is there with other bytes: the export
    // fails, the file and index.json stay as they were.
    let bad_layer = copy("bad-layer");
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bad_layer.join("blobs/sha256").join(&manifest[7..])).unwrap(),
    )
    .unwrap();
    let mut layers = Vec::new();
    for l in m["layers"].as_array().unwrap() {
        let path = bad_layer
            .join("blobs/sha256")
            .join(&l["digest"].as_str().unwrap()[7..]);
        let bytes = flip(&path);
        layers.push((path, bytes));
    }
    let index_before = std::fs::read(bad_layer.join("index.json")).unwrap();
    expect_fail(
        "cache_to: [\"type=local,dest=bad-layer,mode=max\"]",
        "`services.app.build.cache_to[0]`",
        &["does not match its digest", "bad-layer"],
    );
    for (path, bytes) in layers {
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
    }
    assert_eq!(
        std::fs::read(bad_layer.join("index.json")).unwrap(),
        index_before
    );
    remove_images(&host, &[&image]);
}
