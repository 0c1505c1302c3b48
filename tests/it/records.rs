//! Build records in the registry (`cbuild build --push`): a record pushed
//! from one clone lets another clone, in another directory with an empty
//! cache directory, skip the build without sending a byte of context (with
//! `--remote-records` and no `--push`, pulling the image into the engine);
//! and a record that is absent, corrupt, forged or names a missing image,
//! a registry that is down, or a pull that fails, is never trusted.

use std::path::Path;
use std::process::Output;

use cbuild::orchestrate::records::{RemoteRecord, TAG_PREFIX};
use cbuild::registry::{Credentials, Reference, Registry};

use crate::common::{
    auth_registry, docker, docker_at, engine, finished, registry, registry_digest,
    registry_request, stderr, Project,
};

/// Two services, each with its own context, pushed to `registry`; `app`
/// has a second name from `tags:`.
fn project(tag: &str, registry: &str) -> Project {
    let p = Project::new(tag);
    let n = &p.name;
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {registry}/{n}-app:v1\n    build:\n      context: app\n      tags: [\"{registry}/{n}-app:extra\"]\n  other:\n    image: {registry}/{n}-other:v1\n    build: other\n"
        ),
    )
    .file("app/Dockerfile", "FROM cbuild-base\nCOPY hello.txt /hello.txt\n")
    .file("app/hello.txt", "app\n")
    .file("app/unused.txt", "not in the image\n")
    .file("other/Dockerfile", "FROM cbuild-base\nCOPY . /src\n")
    .file("other/main.txt", "other\n");
    p
}

/// A fresh clone of `p`: the same files (new mtimes, as a checkout gives)
/// in another directory, an empty cache directory, the same project name.
fn clone(p: &Project) -> Project {
    let mut c = Project::new("clone");
    copy(p.path(), c.path());
    c.name = p.name.clone();
    c
}

fn copy(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy(&e.path(), &target);
        } else {
            std::fs::write(&target, std::fs::read(e.path()).unwrap()).unwrap();
        }
    }
}

fn push(p: &Project) -> Output {
    p.cbuild(&["--progress", "json", "build", "--push"])
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(out),
        String::from_utf8_lossy(&out.stdout)
    );
}

fn started(out: &Output, service: &str) -> bool {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|e| e["event"] == "started" && e["service"] == service)
}

/// Whether `service` was skipped through the registry, having started no
/// build (no solve) and sent no context.
fn from_registry(out: &Output, service: &str) -> bool {
    let f = &finished(out)[service];
    if f["up_to_date_registry"] == true {
        assert!(!started(out, service), "{service} started a build");
        assert_eq!(f["context_bytes_sent"], 0, "{f}");
        assert_eq!(f["dockerfile_bytes_sent"], 0, "{f}");
        assert_eq!(f["steps_run"], 0, "{f}");
        return true;
    }
    false
}

/// Whether `service` was built (a solve ran; its steps may come from the
/// builder's cache).
fn built(out: &Output, service: &str) -> bool {
    let f = &finished(out)[service];
    started(out, service) && f["up_to_date"] == false && f["error"].is_null()
}

/// The lines of stderr that speak of build records.
fn record_warnings(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.contains("build record"))
        .map(str::to_string)
        .collect()
}

fn record_tags(reg: &str, repo: &str) -> Vec<String> {
    let r = registry_request(reg, "GET", &format!("/v2/{repo}/tags/list"), None);
    if r.status == 404 {
        return Vec::new();
    }
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .filter(|t| t.starts_with(TAG_PREFIX))
        .map(str::to_string)
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Replaces the record under `repo:tag` by `edit` of its JSON blob.
fn rewrite_record(reg: &str, repo: &str, tag: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let client = Registry::new(Vec::new());
    let creds = Credentials::default();
    let at = Reference::parse(&format!("{reg}/{repo}:{tag}")).unwrap();
    runtime().block_on(async {
        let m = client.manifest(&at, &creds).await.unwrap().unwrap();
        let mut manifest: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        let digest = manifest["config"]["digest"].as_str().unwrap().to_string();
        let blob = client
            .blob(reg, repo, &digest, &creds)
            .await
            .unwrap()
            .unwrap();
        let new = bytes::Bytes::from(edit(blob.to_vec()));
        manifest["config"]["size"] = new.len().into();
        manifest["config"]["digest"] = client
            .put_blob(reg, repo, new, &creds)
            .await
            .unwrap()
            .into();
        client
            .put_manifest(
                &at,
                "application/vnd.oci.image.manifest.v1+json",
                manifest.to_string().into(),
                &creds,
            )
            .await
            .unwrap();
    });
}

/// The whole round trip: a push from one clone, then two fresh clones
/// with empty cache directories skip every service through the registry
/// (re-pointing a name someone replaced), and one changed service is the
/// only one built.
#[test]
fn a_record_in_the_registry_skips_the_build_in_a_fresh_clone() {
    let reg = registry();
    let a = project("records", &reg);
    let app = format!("{}-app", a.name);
    let out = push(&a);
    ok(&out);
    assert!(built(&out, "app") && built(&out, "other"));
    assert_eq!(record_warnings(&out), Vec::<String>::new());
    assert_eq!(record_tags(&reg, &app).len(), 1);
    let v1 = registry_digest(&reg, &app, "v1", None).unwrap();

    // Someone pushes another image under `:extra`.
    let extra = format!("{reg}/{app}:extra");
    assert!(docker(&["tag", "cbuild-base:latest", &extra])
        .status
        .success());
    assert!(docker(&["push", "-q", &extra]).status.success());
    let _ = docker(&["rmi", &extra]);
    let other = format!("{}-other", a.name);
    let base = registry_digest(&reg, &other, "v1", None).unwrap();
    assert_ne!(registry_digest(&reg, &app, "extra", None), Some(v1.clone()));

    let b = clone(&a);
    let out = push(&b);
    ok(&out);
    assert!(from_registry(&out, "app"), "{}", stderr(&out));
    assert!(from_registry(&out, "other"), "{}", stderr(&out));
    assert_eq!(record_warnings(&out), Vec::<String>::new());
    // Every name points at the recorded image again.
    assert_eq!(registry_digest(&reg, &app, "extra", None), Some(v1.clone()));
    assert_eq!(registry_digest(&reg, &app, "v1", None), Some(v1.clone()));
    // Said so in the text output.
    let said = b.build_ok(&["build", "--push", "app"]);
    assert!(said.contains("up to date (registry)"), "{said}");

    // A file no request covers changes nothing; one that is sent does.
    let c = clone(&a);
    c.file("app/unused.txt", "still not in the image\n");
    c.file("other/main.txt", "changed\n");
    let out = push(&c);
    ok(&out);
    assert!(from_registry(&out, "app"), "{}", stderr(&out));
    assert!(built(&out, "other"), "{}", stderr(&out));
    assert_ne!(registry_digest(&reg, &other, "v1", None), Some(base));
}

/// An image built earlier without `--push` and pushed now gets its record
/// too.
#[test]
fn pushing_an_image_built_earlier_stores_its_record() {
    let reg = registry();
    let a = project("records-later", &reg);
    let app = format!("{}-app", a.name);
    ok(&a.cbuild(&["--progress", "json", "build", "app"]));
    assert_eq!(record_tags(&reg, &app), Vec::<String>::new());
    let out = a.cbuild(&["--progress", "json", "build", "--push", "app"]);
    ok(&out);
    assert_eq!(record_tags(&reg, &app).len(), 1, "{}", stderr(&out));
    let b = clone(&a);
    let out = b.cbuild(&["--progress", "json", "build", "--push", "app"]);
    ok(&out);
    assert!(from_registry(&out, "app"), "{}", stderr(&out));
    // A fresh build asked for is a build.
    let out = b.cbuild(&["--progress", "json", "build", "--push", "--no-cache", "app"]);
    ok(&out);
    assert!(built(&out, "app"), "{}", stderr(&out));
}

/// A Docker configuration logged in to `reg`.
fn login(reg: &str, user: &str, password: &str) -> tempfile::TempDir {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let text = format!("{{\"auths\":{{\"{reg}\":{{\"auth\":\"{auth}\"}}}}}}");
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    dir
}

/// Records are stored and read with the login of DOCKER_CONFIG.
#[test]
fn records_in_a_registry_with_a_login() {
    let reg = auth_registry();
    let config = login(&reg.host, &reg.user, &reg.password);
    let env = [("DOCKER_CONFIG", config.path().to_str().unwrap())];
    let a = project("records-auth", &reg.host);
    let out = a.cbuild_env(&["--progress", "json", "build", "--push", "app"], &env);
    ok(&out);
    assert_eq!(record_warnings(&out), Vec::<String>::new());
    let b = clone(&a);
    let out = b.cbuild_env(&["--progress", "json", "build", "--push", "app"], &env);
    ok(&out);
    assert!(from_registry(&out, "app"), "{}", stderr(&out));
}

/// A change to a record's blob.
type Edit = Box<dyn Fn(Vec<u8>) -> Vec<u8>>;

/// A record that does not check out, or whose image is gone, is never
/// trusted: one warning line, and a normal build.
#[test]
fn corrupt_forged_and_dangling_records_are_not_trusted() {
    let reg = registry();
    let a = project("forged", &reg);
    let app = format!("{}-app", a.name);
    ok(&push(&a));
    let tag = record_tags(&reg, &app).pop().expect("a record was stored");

    let cases: Vec<(&str, Edit)> = vec![
        ("unreadable", Box::new(|_| b"{not json".to_vec())),
        (
            "seal does not match",
            Box::new(|blob| {
                // Forged: another image under the same inputs.
                let mut v: serde_json::Value = serde_json::from_slice(&blob).unwrap();
                for d in v["pushed"].as_object_mut().unwrap().values_mut() {
                    *d = format!("sha256:{}", "0".repeat(64)).into();
                }
                serde_json::to_vec(&v).unwrap()
            }),
        ),
        (
            "does not hold",
            Box::new(|blob| {
                // Well formed and sealed, but its image is not there.
                let r: RemoteRecord = serde_json::from_slice(&blob).unwrap();
                let pushed = r
                    .pushed
                    .keys()
                    .map(|k| (k.clone(), format!("sha256:{}", "1".repeat(64))))
                    .collect();
                let r = RemoteRecord::new(&r.service, r.options, r.served, pushed);
                serde_json::to_vec(&r).unwrap()
            }),
        ),
    ];
    for (what, edit) in cases {
        rewrite_record(&reg, &app, &tag, edit);
        let c = clone(&a);
        let out = push(&c);
        ok(&out);
        assert!(built(&out, "app"), "{what}: {}", stderr(&out));
        let warnings = record_warnings(&out);
        assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
        assert!(warnings[0].contains(what), "{what}: {warnings:?}");
        // The build stored a good record again.
        let d = clone(&a);
        let out = push(&d);
        ok(&out);
        assert!(from_registry(&out, "app"), "{what}: {}", stderr(&out));
    }
}

/// A registry that does not answer: the lookup says so in one line, and
/// the build runs (its push then fails, as it must).
#[test]
fn a_registry_that_is_down_is_one_warning_and_a_build() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let reg = closed.local_addr().unwrap().to_string();
    drop(closed);
    let p = project("regdown", &reg);
    let out = p.cbuild(&["--progress", "json", "build", "--push", "app"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let warnings = record_warnings(&out);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("cannot reach"), "{warnings:?}");
    assert!(started(&out, "app"));
    let f = &finished(&out)["app"];
    assert!(
        f["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot push"),
        "{f}"
    );
}

/// `build --remote-records` of `p`, with `env`.
fn pull(p: &Project, env: &[(&str, &str)], more: &[&str]) -> Output {
    let mut args = vec!["--progress", "json", "build", "--remote-records"];
    args.extend_from_slice(more);
    p.cbuild_env(&args, env)
}

/// Whether `service` was made up to date by pulling the recorded image,
/// which the engine at `host` now holds under `name` with the ID reported.
fn pulled(out: &Output, service: &str, host: &str, name: &str) -> bool {
    if !from_registry(out, service) {
        return false;
    }
    let f = &finished(out)[service];
    assert_eq!(f["pulled"], true, "{f}");
    let id = docker_at(host, &["image", "inspect", "--format", "{{.Id}}", name]);
    assert!(id.status.success(), "{name}: {}", stderr(&id));
    assert_eq!(
        f["image_id"].as_str(),
        Some(String::from_utf8_lossy(&id.stdout).trim()),
        "{f}"
    );
    true
}

/// Removes `names` from the engine at `host` (the image goes with them).
fn remove(host: &str, names: &[&str]) {
    let mut args = vec!["rmi"];
    args.extend_from_slice(names);
    let out = docker_at(host, &args);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn cat(host: &str, image: &str, path: &str) -> String {
    let out = docker_at(host, &["run", "--rm", image, "cat", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Without `--push`, `--remote-records` pulls the recorded image into an
/// engine that lacks it, by digest (a name replaced in the registry since
/// is not what is pulled, nor rewritten: the registry is only read), tags
/// it with every name, and records it: the next run is up to date without
/// the registry. A changed service is built.
#[test]
fn remote_records_pull_the_recorded_image_into_the_engine() {
    let reg = registry();
    let host = crate::common::docker_host();
    let a = project("records-pull", &reg);
    let app = format!("{}-app", a.name);
    let (v1, extra) = (format!("{reg}/{app}:v1"), format!("{reg}/{app}:extra"));
    let other = format!("{reg}/{}-other:v1", a.name);
    ok(&push(&a));
    // Someone pushes another image under `:extra`.
    assert!(docker(&["tag", "cbuild-base:latest", &extra])
        .status
        .success());
    assert!(docker(&["push", "-q", &extra]).status.success());
    let replaced = registry_digest(&reg, &app, "extra", None);
    remove(&host, &[&v1, &extra, &other]);

    let b = clone(&a);
    let out = pull(&b, &[], &[]);
    ok(&out);
    assert!(pulled(&out, "app", &host, &v1), "{}", stderr(&out));
    assert!(pulled(&out, "other", &host, &other), "{}", stderr(&out));
    assert_eq!(record_warnings(&out), Vec::<String>::new());
    assert_eq!(cat(&host, &v1, "/hello.txt"), "app\n");
    assert_eq!(cat(&host, &extra, "/hello.txt"), "app\n");
    assert_eq!(cat(&host, &other, "/src/main.txt"), "other\n");
    assert_eq!(registry_digest(&reg, &app, "extra", None), replaced);
    // Up to date here now, without the flag: no registry call is needed.
    let out = b.cbuild(&["--progress", "json", "build"]);
    ok(&out);
    for s in ["app", "other"] {
        let f = &finished(&out)[s];
        assert!(!started(&out, s), "{s}: {}", stderr(&out));
        assert_eq!(f["up_to_date"], true, "{f}");
        assert_eq!(f["up_to_date_registry"], false, "{f}");
    }

    // One service changed, the flag from the environment: only it is built.
    remove(&host, &[&v1, &extra, &other]);
    let c = clone(&a);
    c.file("other/main.txt", "changed\n");
    let out = c.cbuild_env(
        &["--progress", "json", "build"],
        &[("CBUILD_REMOTE_RECORDS", "1")],
    );
    ok(&out);
    assert!(pulled(&out, "app", &host, &v1), "{}", stderr(&out));
    assert!(built(&out, "other"), "{}", stderr(&out));
    assert_eq!(cat(&host, &other, "/src/main.txt"), "changed\n");
    // Said so in the text output.
    remove(&host, &[&v1, &extra]);
    let said = clone(&a).build_ok(&["--progress", "plain", "build", "--remote-records", "app"]);
    assert!(said.contains("up to date (registry)"), "{said}");
    assert!(said.contains("pulled"), "{said}");
    // A fresh build asked for is a build.
    let d = clone(&a);
    let out = pull(&d, &[], &["--no-cache", "app"]);
    ok(&out);
    assert!(built(&out, "app"), "{}", stderr(&out));
}

/// The same on the containerd image store, where the engine names the
/// pulled image by its manifest digest: the record written after the pull
/// agrees with what `docker image inspect` gives.
#[test]
fn remote_records_pull_on_the_containerd_store() {
    let reg = registry();
    let host = engine("d28-containerd");
    let env = [("DOCKER_HOST", host.as_str())];
    let a = project("records-pull-ctr", &reg);
    let app = format!("{}-app", a.name);
    let (v1, extra) = (format!("{reg}/{app}:v1"), format!("{reg}/{app}:extra"));
    ok(&a.cbuild_env(&["--progress", "json", "build", "--push", "app"], &env));
    remove(&host, &[&v1, &extra]);
    let b = clone(&a);
    let out = pull(&b, &env, &["app"]);
    ok(&out);
    assert!(pulled(&out, "app", &host, &v1), "{}", stderr(&out));
    assert_eq!(cat(&host, &extra, "/hello.txt"), "app\n");
    let out = b.cbuild_env(&["--progress", "json", "build", "app"], &env);
    ok(&out);
    let f = &finished(&out)["app"];
    assert!(!started(&out, "app"), "{}", stderr(&out));
    assert_eq!(f["up_to_date"], true, "{f}");
    assert_eq!(f["up_to_date_registry"], false, "{f}");
    remove(&host, &[&v1, &extra]);

    // An index of several platforms: a pull would bring one, so it is built.
    let m = Project::new("records-pull-multi");
    let n = &m.name;
    m.file(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {reg}/{n}-app:v1\n    build:\n      context: app\n      platforms: [linux/amd64, linux/amd64/v2]\n"
        ),
    )
    .file("app/Dockerfile", "FROM cbuild-base\nCOPY hello.txt /hello.txt\n");
    m.file("app/hello.txt", "app\n");
    ok(&m.cbuild_env(&["--progress", "json", "build", "--push"], &env));
    let multi = format!("{reg}/{n}-app:v1");
    remove(&host, &[&multi]);
    let out = pull(&clone(&m), &env, &[]);
    ok(&out);
    assert!(built(&out, "app"), "{}", stderr(&out));
    assert_eq!(record_warnings(&out), Vec::<String>::new());
    remove(&host, &[&multi]);
}

/// A standalone buildkitd has no image store: on a hit its service is
/// pulled into the engine of DOCKER_HOST, where its build would have been
/// loaded, and is up to date there afterwards. Needs the real buildkitd
/// this session may run (CI has none: skipped).
#[test]
fn remote_records_with_a_standalone_buildkitd_pull_into_docker_host() {
    let builder = match std::env::var("CBUILD_BUILDKITD_HOST") {
        Ok(b) if !b.is_empty() => b,
        _ => return,
    };
    let reg = registry();
    let host = crate::common::docker_host();
    let a = project("records-pull-bk", &reg);
    let (v1, extra) = (
        format!("{reg}/{}-app:v1", a.name),
        format!("{reg}/{}-app:extra", a.name),
    );
    ok(&a.cbuild(&["--progress", "json", "build", "--push", "app"]));
    remove(&host, &[&v1, &extra]);
    let b = clone(&a);
    let out = pull(&b, &[], &["--builder", &builder, "app"]);
    ok(&out);
    assert!(pulled(&out, "app", &host, &v1), "{}", stderr(&out));
    assert_eq!(cat(&host, &v1, "/hello.txt"), "app\n");
    let out = b.cbuild(&["--progress", "json", "--builder", &builder, "build", "app"]);
    ok(&out);
    assert!(!started(&out, "app"), "{}", stderr(&out));
    assert_eq!(finished(&out)["app"]["up_to_date"], true);
}

/// A proxy to the plain registry that, while `refuse` is set, answers
/// every connection the Docker engine opens with 503 (cbuild's own
/// requests, told by their user agent, go through): the registry going
/// away between cbuild's lookup and the engine's pull.
struct EngineRefusingProxy {
    addr: String,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn engine_refusing_proxy(upstream: String) -> EngineRefusingProxy {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let refuse = Arc::new(AtomicBool::new(false));
    let flag = refuse.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let flag = flag.clone();
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                // The head of the first request says who is asking. What
                // is no HTTP (the engine tries TLS first) goes through as
                // it is, for the registry to refuse.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                    if !head[0].is_ascii_uppercase() {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if flag.load(Ordering::SeqCst) && !text.contains("user-agent: cbuild/") {
                    let _ = client.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return;
                }
                let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                    return;
                };
                if up.write_all(&head).is_err() {
                    return;
                }
                let (mut client_w, mut up_r) =
                    (client.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut client_w);
                    let _ = client_w.shutdown(std::net::Shutdown::Both);
                });
                let _ = std::io::copy(&mut client, &mut up);
                let _ = up.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    EngineRefusingProxy { addr, refuse }
}

/// A pull that fails (the registry refuses the engine after cbuild's
/// lookup) is one warning line and a normal build; so is a registry that
/// cannot be reached at all.
#[test]
fn a_failed_pull_is_one_warning_and_a_build() {
    let host = crate::common::docker_host();
    let proxy = engine_refusing_proxy(registry());
    let a = project("records-pull-fail", &proxy.addr);
    let v1 = format!("{}/{}-app:v1", proxy.addr, a.name);
    let extra = format!("{}/{}-app:extra", proxy.addr, a.name);
    ok(&a.cbuild(&["--progress", "json", "build", "--push", "app"]));
    remove(&host, &[&v1, &extra]);
    proxy
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let b = clone(&a);
    let out = pull(&b, &[], &["app"]);
    ok(&out);
    let warnings = record_warnings(&out);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("cannot pull"), "{warnings:?}");
    assert!(built(&out, "app"), "{}", stderr(&out));
    assert_eq!(cat(&host, &v1, "/hello.txt"), "app\n");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let reg = closed.local_addr().unwrap().to_string();
    drop(closed);
    let p = project("regdown-pull", &reg);
    let out = pull(&p, &[], &["app"]);
    ok(&out);
    let warnings = record_warnings(&out);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("cannot reach"), "{warnings:?}");
    assert!(built(&out, "app"), "{}", stderr(&out));
}
