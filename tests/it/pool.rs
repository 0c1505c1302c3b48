//! Builder pools: services spread over two real BuildKit builders whose
//! images come home to the engine of DOCKER_HOST: that engine's own
//! BuildKit (`default`, the `moby` exporter) and the BuildKit of Docker
//! 28.5 with the containerd store reached as a standalone buildkitd
//! ("buildkitd mode", see `tls::proxy_to_engine`; its images are loaded
//! as tarballs).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::Stdio;

use crate::common::*;
use crate::tls::{proxy_to_engine, Endpoint};

/// A standalone-buildkitd endpoint in front of the engine `name`.
fn node(name: &str) -> Endpoint {
    let host = engine(name);
    let socket = PathBuf::from(host.strip_prefix("unix://").expect("a unix socket"));
    proxy_to_engine(socket, None, true)
}

fn addr(e: &Endpoint) -> String {
    format!("tcp://{}", e.addr)
}

/// The JSON events of a `--progress json` run.
fn events(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Per service, the nodes its `started` events name, in order.
fn started_on(events: &[serde_json::Value]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["event"] == "started") {
        m.entry(e["service"].as_str().unwrap().to_string())
            .or_default()
            .push(e["node"].as_str().unwrap_or_default().to_string());
    }
    m
}

/// Four services: `a`, `c` and `e` share the context directory `a` (three,
/// so that spreading alone could not put them on one node of two), `b` has
/// its own.
fn three(tag: &str) -> Project {
    let p = Project::new(tag);
    p.file(
        "compose.yaml",
        "services:\n  a:\n    build: a\n  b:\n    build: b\n  c:\n    build:\n      context: a\n      dockerfile: Dockerfile.c\n  e:\n    build:\n      context: a\n      dockerfile: Dockerfile.e\n",
    )
    .file("a/Dockerfile", "FROM cbuild-base\nCOPY a.txt /a.txt\nRUN echo a > /built\n")
    .file("a/Dockerfile.c", "FROM cbuild-base\nCOPY a.txt /c.txt\nRUN echo c > /built\n")
    .file("a/Dockerfile.e", "FROM cbuild-base\nCOPY a.txt /e.txt\nRUN echo e > /built\n")
    .file("a/a.txt", "shared context\n")
    .file("b/Dockerfile", "FROM cbuild-base\nCOPY b.txt /b.txt\nRUN echo b > /built\n")
    .file("b/b.txt", "own context\n");
    p
}

#[test]
fn pool_of_two_builders_spreads_services_and_keeps_a_shared_context_on_one_node() {
    let n1 = node("d28-containerd");
    let p = three("pool-two");
    let pool = ["--builder", &addr(&n1), "--builder", "default"];
    let out = p.cbuild(&[&["--progress", "json"], &pool[..], &["build"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let on = started_on(&events(&out));
    let node_of = |s: &str| on[s].last().unwrap().clone();
    // The two context directories went to the two nodes; `c` followed `a`.
    assert_eq!(node_of("a"), node_of("c"), "{on:?}");
    assert_eq!(node_of("a"), node_of("e"), "{on:?}");
    assert_ne!(node_of("a"), node_of("b"), "{on:?}");
    let both: std::collections::BTreeSet<String> = [addr(&n1), docker_host()].into();
    assert_eq!(
        [node_of("a"), node_of("b")]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>(),
        both
    );
    // Every image came home into DOCKER_HOST's engine, as built.
    assert_eq!(
        run_in(&p.image("a"), "cat /a.txt /built"),
        "shared context\na\n"
    );
    assert_eq!(
        run_in(&p.image("b"), "cat /b.txt /built"),
        "own context\nb\n"
    );
    assert_eq!(
        run_in(&p.image("c"), "cat /c.txt /built"),
        "shared context\nc\n"
    );
    // Nothing changed: up to date, whichever node would have built them.
    let again = p.cbuild(&[&["--progress", "json"], &pool[..], &["build"]].concat());
    assert!(again.status.success(), "{}", stderr(&again));
    for (s, f) in finished(&again) {
        assert_eq!(f["up_to_date"], true, "{s}: {f}");
    }
}

#[test]
fn unreachable_builder_at_start_is_left_out_with_a_warning() {
    let n = node("d28-containerd");
    // A port nothing listens on: a closed listener's.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let p = Project::new("pool-dead");
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY f /f\n")
        .file("f", "one node left\n");
    // Docker 26.1's BuildKit reached directly would keep its images in
    // that engine: left out too.
    let graph = node("d26");
    let out = p.cbuild(&[
        "--progress",
        "json",
        "--builder",
        &dead,
        "--builder",
        &addr(&graph),
        "--builder",
        &addr(&n),
        "build",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("warning: the builder `{dead}` "))
            && err.contains("cannot be reached"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "warning: the builder `{}` is left out of the pool",
            addr(&graph)
        )),
        "{err}"
    );
    assert_eq!(started_on(&events(&out))["app"], vec![addr(&n)]);
    assert_eq!(run_in(&p.image("app"), "cat /f"), "one node left\n");
    // No node left: the builder is unreachable, exit 1.
    let dead2 = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let out = p.cbuild(&["--builder", &dead, "--builder", &dead2, "build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no builder of the pool is usable"),
        "{}",
        stderr(&out)
    );
}

/// The pool named in the Compose file; one node dies while it builds:
/// the service is built once more on the other, nothing else is touched.
/// The two nodes are two endpoints of one BuildKit (the containerd-store
/// engine's): cutting one is a real loss of the connection cbuild builds
/// over, which is what cbuild sees of a node that dies.
#[test]
fn node_lost_mid_build_retries_that_service_on_the_other_node() {
    let mut nodes = vec![node("d28-containerd"), node("d28-containerd")];
    let p = Project::new("pool-loss");
    p.file(
        "compose.yaml",
        &format!(
            "x-cbuild:\n  builders: [\"{}\", \"{}\"]\nservices:\n  slow:\n    build: .\n",
            addr(&nodes[0]),
            addr(&nodes[1])
        ),
    )
    // The sleep only keeps the step running while the test cuts the node.
    .file(
        "Dockerfile",
        "FROM cbuild-base\nCOPY f /f\nRUN sleep 5 && echo done > /done\n",
    )
    .file("f", "survives\n");
    let mut child = p
        .command(&["--progress", "json", "build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut first_node = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if e["event"] == "started" {
            first_node = e["node"].as_str().map(str::to_string);
        }
        let running_sleep = e["event"] == "step"
            && e["name"].as_str().unwrap_or_default().contains("sleep 5")
            && !e["started_ms"].is_null()
            && e["completed_ms"].is_null();
        seen.push(e);
        if running_sleep {
            break;
        }
    }
    let first = first_node.expect("a started event before the step");
    // Cut that node: its proxy's runtime, listener and connections go.
    let i = nodes.iter().position(|n| addr(n) == first).unwrap();
    drop(nodes.remove(i));
    for line in lines {
        if let Ok(e) = serde_json::from_str::<serde_json::Value>(&line.unwrap()) {
            seen.push(e);
        }
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let starts: Vec<&serde_json::Value> = seen.iter().filter(|e| e["event"] == "started").collect();
    assert_eq!(starts.len(), 2, "{seen:?}");
    assert_eq!(starts[1]["node"], addr(&nodes[0]).as_str());
    let why = starts[1]["retry"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("the builder `{first}` was lost")),
        "{why}"
    );
    assert_eq!(run_in(&p.image("slow"), "cat /f /done"), "survives\ndone\n");
}

#[test]
fn x_cbuild_builders_must_be_a_list_of_names() {
    let p = Project::new("pool-badx");
    p.file(
        "compose.yaml",
        "x-cbuild:\n  builders: [1]\nservices:\n  app:\n    build: .\n",
    )
    .file("Dockerfile", "FROM cbuild-base\n");
    let out = p.cbuild(&["build"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("compose.yaml`: `x-cbuild.builders[0]` must be"),
        "{}",
        stderr(&out)
    );
}

/// Two Docker engines as nodes: the other engine's images would stay in
/// it, so without `--push` it is left out; with `--push` both build and
/// every image reaches the registry.
#[test]
fn another_engine_takes_part_only_when_everything_is_pushed() {
    // An engine other than DOCKER_HOST's (the suite also runs on d26).
    let other_host = if docker_host() == engine("d26") {
        engine("d28")
    } else {
        engine("d26")
    };
    let other = format!("docker+{other_host}");
    let reg = registry();
    let p = Project::new("pool-push");
    let repo = |s: &str| format!("{}-{s}", p.name);
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  a:\n    build: a\n    image: {reg}/{}:t\n  b:\n    build: b\n    image: {reg}/{}:t\n",
            repo("a"),
            repo("b")
        ),
    )
    .file("a/Dockerfile", "FROM cbuild-base\nCOPY f /f\n")
    .file("a/f", "a\n")
    .file("b/Dockerfile", "FROM cbuild-base\nCOPY f /f\n")
    .file("b/f", "b\n");
    let pool = ["--builder", "default", "--builder", &other];
    // Without --push: one node left, with a warning.
    let out = p.cbuild(&[&["--progress", "json"], &pool[..], &["build"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "the builder `{}` is the BuildKit of another Docker engine",
            other_host
        )),
        "{}",
        stderr(&out)
    );
    let on = started_on(&events(&out));
    assert!(on.values().flatten().all(|n| *n == docker_host()), "{on:?}");
    // With --push: both nodes build, the registry holds both images.
    let out = p.cbuild(
        &[
            &["--progress", "json"],
            &pool[..],
            &["build", "--push", "--no-cache"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let on = started_on(&events(&out));
    let nodes: std::collections::BTreeSet<&String> = on.values().flatten().collect();
    assert_eq!(nodes.len(), 2, "{on:?}");
    for s in ["a", "b"] {
        assert!(
            registry_digest(&reg, &repo(s), "t", None).is_some(),
            "{s} not pushed"
        );
        // Not ours to keep, in either engine.
        for host in [other_host.clone(), docker_host()] {
            docker_at(
                &host,
                &["image", "rm", "-f", &format!("{reg}/{}:t", repo(s))],
            );
        }
    }
}

/// The real buildkitd this session may run (CI has none: skipped) beside
/// DOCKER_HOST's engine.
#[test]
fn pool_with_the_real_buildkitd() {
    let bk = match std::env::var("CBUILD_BUILDKITD_HOST") {
        Ok(b) if !b.is_empty() => b,
        _ => return,
    };
    let reg = registry();
    let p = Project::new("pool-real");
    p.file(
        "compose.yaml",
        "services:\n  a:\n    build: a\n  b:\n    build: b\n",
    );
    for s in ["a", "b"] {
        p.file(
            &format!("{s}/Dockerfile"),
            &format!("FROM {reg}/cbuild-base\nCOPY f /f\nRUN cat /f > /copy\n"),
        )
        .file(&format!("{s}/f"), &format!("{s}\n"));
    }
    let out = p.cbuild(&[
        "--progress",
        "json",
        "--builder",
        "default",
        "--builder",
        &bk,
        "build",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let on = started_on(&events(&out));
    let nodes: std::collections::BTreeSet<&String> = on.values().flatten().collect();
    assert_eq!(nodes.len(), 2, "{on:?}");
    for s in ["a", "b"] {
        assert_eq!(run_in(&p.image(s), "cat /copy"), format!("{s}\n"));
    }
}

/// A build that fails on its own is no lost node: not built again.
#[test]
fn a_failing_build_in_a_pool_is_not_retried() {
    let (n1, n2) = (node("d28-containerd"), node("d28-containerd"));
    let p = Project::new("pool-fail");
    p.file("compose.yaml", "services:\n  bad:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nRUN false\n");
    let out = p.cbuild(&[
        "--progress",
        "json",
        "--builder",
        &addr(&n1),
        "--builder",
        &addr(&n2),
        "build",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(started_on(&events(&out))["bad"].len(), 1);
}

/// The `handoffs` of each service's last `started` event.
fn handoffs_of(events: &[serde_json::Value]) -> BTreeMap<String, Vec<serde_json::Value>> {
    let mut m = BTreeMap::new();
    for e in events.iter().filter(|e| e["event"] == "started") {
        let list = e["handoffs"].as_array().cloned().unwrap_or_default();
        m.insert(e["service"].as_str().unwrap().to_string(), list);
    }
    m
}

/// A dependency `base` and a dependent `app` that reads its image
/// (`dependent` is app's Dockerfile), on a pool of DOCKER_HOST's engine
/// (`default`, first: it gets `base`, which starts alone) and `other`, a
/// builder that resolves image names in registries only, so `app` (placed
/// on the node given less work) must get `base`'s image through the pool
/// registry. Checks the hand-off, what `app` holds, that a second run is
/// up to date without a hand-off, and that a change of `base` rebuilds
/// `app` from the new image.
fn hands_off(p: &Project, other: &str, app_build: &str, base_from: &str) {
    let reg = registry();
    let prefix = "cbuild-it-handoff";
    p.file(
        "compose.yaml",
        &format!(
            "x-cbuild:\n  pool_registry: \"{reg}/{prefix}\"\nservices:\n  base:\n    build: base\n  app:\n    build:\n{app_build}"
        ),
    )
    .file(
        "base/Dockerfile",
        &format!("FROM {base_from}\nCOPY d.txt /d.txt\n"),
    )
    .file("base/d.txt", "from the dependency\n")
    .file("app/f", "own file\n");
    let pool = ["--builder", "default", "--builder", other];
    let out = p.cbuild(&[&["--progress", "json"], &pool[..], &["build"]].concat());
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    let ev = events(&out);
    let on = started_on(&ev);
    assert_eq!(on["base"], vec![docker_host()], "{on:?}");
    assert_eq!(on["app"], vec![other.to_string()], "{on:?}");
    let h = &handoffs_of(&ev)["app"];
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["dependency"], "base");
    assert_eq!(h[0]["registry"], reg.as_str());
    let reference = h[0]["reference"].as_str().unwrap().to_string();
    let repo = format!("{prefix}/{}", p.image("base"));
    let digest = reference
        .strip_prefix(&format!("{reg}/{repo}@"))
        .unwrap_or_else(|| panic!("{reference}"));
    assert!(registry_digest(&reg, &repo, digest, None).is_some());
    // The hand-off name was given for the push only.
    let names = docker_ok(&[
        "images",
        "--format",
        "{{.Repository}}",
        &format!("{reg}/{repo}"),
    ]);
    assert_eq!(names.trim(), "", "{names}");
    assert_eq!(
        run_in(&p.image("app"), "cat /d.txt /f"),
        "from the dependency\nown file\n"
    );
    // Nothing changed: up to date, and nothing handed off.
    let again = p.cbuild(&[&["--progress", "json"], &pool[..], &["build"]].concat());
    assert!(again.status.success(), "{}", stderr(&again));
    for (s, f) in finished(&again) {
        assert_eq!(f["up_to_date"], true, "{s}: {f}");
    }
    assert!(handoffs_of(&events(&again)).is_empty());
    // The dependency changed: both build again, `app` from the new image,
    // and the progress says so.
    p.file("base/d.txt", "changed dependency\n");
    let out = p.cbuild(&[&["--progress", "plain"], &pool[..], &["build"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "handing off image of `base` to `app` on `{other}` via `{reg}` (`{reg}/{repo}@sha256:"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        run_in(&p.image("app"), "cat /d.txt /f"),
        "changed dependency\nown file\n"
    );
}

#[test]
fn pool_registry_hands_a_service_context_to_another_node() {
    let n = node("d28-containerd");
    let p = Project::new("pool-hand-ctx");
    p.file(
        "app/Dockerfile",
        "FROM cbuild-base\nCOPY --from=dep /d.txt /d.txt\nCOPY f /f\n",
    );
    hands_off(
        &p,
        &addr(&n),
        "      context: app\n      additional_contexts:\n        dep: service:base\n",
        "cbuild-base",
    );
}

#[test]
fn pool_registry_hands_a_from_image_to_another_node() {
    let n = node("d28-containerd");
    let p = Project::new("pool-hand-from");
    p.file(
        "app/Dockerfile",
        &format!("FROM {}\nCOPY f /f\n", p.image("base")),
    );
    hands_off(&p, &addr(&n), "      context: app\n", "cbuild-base");
}

/// The same with the real buildkitd this session may run (CI has none:
/// skipped), which resolves every name in a registry.
#[test]
fn pool_registry_hands_off_to_the_real_buildkitd() {
    let bk = match std::env::var("CBUILD_BUILDKITD_HOST") {
        Ok(b) if !b.is_empty() => b,
        _ => return,
    };
    let p = Project::new("pool-hand-real");
    p.file(
        "app/Dockerfile",
        &format!("FROM {}\nCOPY f /f\n", p.image("base")),
    );
    let base = registry_base_in(&docker_host());
    hands_off(&p, &bk, "      context: app\n", &base);
}

/// A pool registry nothing answers on: the dependent fails, naming the
/// dependency, the registry and what to do; the dependency is built.
/// (Only these two: a third service could keep the other node busy, and
/// `app` would then share `base`'s node, needing no hand-off.)
#[test]
fn unreachable_pool_registry_fails_only_the_dependent() {
    let n = node("d28-containerd");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let p = Project::new("pool-hand-dead");
    p.file(
        "compose.yaml",
        "services:\n  base:\n    build: base\n  app:\n    build: app\n",
    )
    .file("base/Dockerfile", "FROM cbuild-base\nCOPY d.txt /d.txt\n")
    .file("base/d.txt", "d\n")
    .file(
        "app/Dockerfile",
        &format!("FROM {}\nRUN cat /d.txt\n", p.image("base")),
    );
    let out = p.cbuild(&[
        "--progress",
        "json",
        "--builder",
        "default",
        "--builder",
        &addr(&n),
        "build",
        "--pool-registry",
        &dead,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let f = finished(&out);
    assert!(f["base"]["error"].is_null(), "{}", f["base"]);
    let error = f["app"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot hand the image of `base`")
            && error.contains(&format!("pool registry `{dead}`")),
        "{error}"
    );
    let hint = f["app"]["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains("reachable") && hint.contains("--pool-registry"),
        "{hint}"
    );
    assert_eq!(run_in(&p.image("base"), "cat /d.txt"), "d\n");
}

#[test]
fn bad_pool_registry_is_bad_input() {
    let p = Project::new("pool-hand-bad");
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\n");
    let out = p.cbuild(&["build", "--pool-registry", "http://127.0.0.1:5000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`--pool-registry`: `http://127.0.0.1:5000` has a scheme"),
        "{}",
        stderr(&out)
    );
    p.file(
        "compose.yaml",
        "x-cbuild:\n  pool_registry: \"127.0.0.1:5000/Upper\"\nservices:\n  app:\n    build: .\n",
    );
    let out = p.cbuild(&["build"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("compose.yaml`: `x-cbuild.pool_registry`: `127.0.0.1:5000/Upper`"),
        "{}",
        stderr(&out)
    );
}

/// Two engines with `--push`: `app`, on the other engine, gets `base`
/// (built into DOCKER_HOST's engine and pushed) by the digest `base`
/// pushed, not by whatever image of that name the other engine holds; its
/// freshness follows `base` where it was built.
#[test]
fn pool_registry_hands_off_between_engines_by_the_dependency_push() {
    let other_host = if docker_host() == engine("d26") {
        engine("d28")
    } else {
        engine("d26")
    };
    let other = format!("docker+{other_host}");
    let reg = registry();
    let p = Project::new("pool-hand-push");
    let img = |s: &str| format!("{reg}/{}-{s}:t", p.name);
    p.file(
        "compose.yaml",
        &format!(
            "x-cbuild:\n  pool_registry: {reg}\nservices:\n  base:\n    build: base\n    image: {}\n  app:\n    build: app\n    image: {}\n",
            img("base"),
            img("app")
        ),
    )
    .file("base/Dockerfile", "FROM cbuild-base\nCOPY d.txt /d.txt\n")
    .file("base/d.txt", "pushed dependency\n")
    .file(
        "app/Dockerfile",
        &format!("FROM {}\nRUN cat /d.txt > /copy\n", img("base")),
    );
    // An older image under `base`'s name in the other engine, which a
    // build there would otherwise take from its own store.
    docker_at(&other_host, &["tag", "cbuild-base", &img("base")]);
    let pool = ["--builder", "default", "--builder", &other];
    let out = p.cbuild(&[&["--progress", "json"], &pool[..], &["build", "--push"]].concat());
    assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
    let ev = events(&out);
    let on = started_on(&ev);
    assert_eq!(on["base"], vec![docker_host()], "{on:?}");
    assert_ne!(on["app"], on["base"], "{on:?}");
    let h = &handoffs_of(&ev)["app"];
    assert_eq!(h.len(), 1, "{h:?}");
    let reference = h[0]["reference"].as_str().unwrap();
    let pushed = registry_digest(&reg, &format!("{}-base", p.name), "t", None).unwrap();
    assert_eq!(reference, format!("{reg}/{}-base@{pushed}", p.name));
    let copy = docker_at(&other_host, &["run", "--rm", &img("app"), "cat", "/copy"]);
    assert_eq!(String::from_utf8_lossy(&copy.stdout), "pushed dependency\n");
    let again = p.cbuild(&[&["--progress", "json"], &pool[..], &["build", "--push"]].concat());
    assert!(again.status.success(), "{}", stderr(&again));
    for (s, f) in finished(&again) {
        assert_eq!(f["up_to_date"], true, "{s}: {f}");
    }
    // `base` changed: `app` is stale, though the other engine's image of
    // `base`'s name did not change.
    p.file("base/d.txt", "changed and pushed\n");
    let out = p.cbuild(&[&["--progress", "json"], &pool[..], &["build", "--push"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(finished(&out)["app"]["up_to_date"], false);
    let copy = docker_at(&other_host, &["run", "--rm", &img("app"), "cat", "/copy"]);
    assert_eq!(
        String::from_utf8_lossy(&copy.stdout),
        "changed and pushed\n"
    );
    for s in ["base", "app"] {
        for host in [other_host.clone(), docker_host()] {
            docker_at(&host, &["image", "rm", "-f", &img(s)]);
        }
    }
}
