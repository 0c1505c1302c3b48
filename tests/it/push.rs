//! `cbuild build --push` and `cbuild push` against the local registries,
//! on every kind of builder: the graph-driver engine (the engine pushes
//! after the build), the containerd-store engine (its `moby` exporter
//! pushes), a builder reached in "buildkitd mode" and, when this machine
//! runs one, a real standalone buildkitd (the `image` exporter pushes).
//! What was pushed is read back from the registry and pulled into another
//! engine.

use std::process::Output;

use crate::common::{
    auth_registry, docker_at, docker_host, engine, finished, registry, registry_base_in,
    registry_digest, stderr, Project,
};
use crate::tls::{proxy_to_engine, Endpoint};

/// A one-service project whose image lives in `registry`, with a second
/// name from `tags:`.
fn project(tag: &str, registry: &str) -> (Project, String, String) {
    project_from(tag, registry, "cbuild-base")
}

/// The same, built `FROM base`.
fn project_from(tag: &str, registry: &str, base: &str) -> (Project, String, String) {
    let p = Project::new(tag);
    let repo = format!("{}-app", p.name);
    let image = format!("{registry}/{repo}:v1");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  app:\n    image: {image}\n    build:\n      context: .\n      tags: [\"{registry}/{repo}:extra\"]\n"
        ),
    )
    .file(
        "Dockerfile",
        &format!("FROM {base}\nCOPY hello.txt /hello.txt\n"),
    )
    .file("hello.txt", "pushed\n");
    (p, repo, image)
}

/// `cbuild [--builder B] --progress json build --push` with DOCKER_HOST at
/// `host` and the extra environment.
fn push(p: &Project, builder: Option<&str>, host: &str, env: &[(&str, &str)]) -> Output {
    let mut args = Vec::new();
    if let Some(b) = builder {
        args.extend(["--builder", b]);
    }
    args.extend(["--progress", "json", "build", "--push"]);
    let mut all = vec![("DOCKER_HOST", host)];
    all.extend_from_slice(env);
    p.cbuild_env(&args, &all)
}

/// What a `--progress json` run said: stderr, and the service's error and
/// hint from its `finished` event.
fn said(out: &Output) -> String {
    let mut s = stderr(out);
    if let Some(e) = finished(out).get("app") {
        for key in ["error", "hint"] {
            if let Some(t) = e[key].as_str() {
                s.push('\n');
                s.push_str(t);
            }
        }
    }
    s
}

fn up_to_date(out: &Output) -> bool {
    assert!(out.status.success(), "{}", said(out));
    finished(out)["app"]["up_to_date"] == true
}

/// Another engine than `host`, to pull into.
fn other_engine(host: &str) -> String {
    if host == engine("d26") {
        engine("d28")
    } else {
        engine("d26")
    }
}

/// Pulls `image@digest` into `host` and reads /hello.txt from it.
fn pull_and_read(host: &str, image: &str, digest: &str) -> String {
    let repo = image.rsplit_once(':').unwrap().0;
    let by_digest = format!("{repo}@{digest}");
    let out = docker_at(host, &["pull", "-q", &by_digest]);
    assert!(out.status.success(), "pull {by_digest}: {}", stderr(&out));
    let out = docker_at(host, &["run", "--rm", &by_digest, "cat", "/hello.txt"]);
    assert!(out.status.success(), "{}", said(&out));
    let _ = docker_at(host, &["rmi", "-f", &by_digest]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Puts another image under `image` in the registry, from another engine.
fn overwrite(from: &str, image: &str) {
    let out = docker_at(from, &["tag", "cbuild-base:latest", image]);
    assert!(out.status.success(), "{}", said(&out));
    let out = docker_at(from, &["push", "-q", image]);
    assert!(out.status.success(), "{}", said(&out));
    let _ = docker_at(from, &["rmi", image]);
}

/// The whole round on one builder: push, read back, pull elsewhere, a
/// no-op run that asks BuildKit nothing, a tag replaced in the registry
/// that makes the next run push again, and a content change.
fn round(tag: &str, builder: Option<&str>, host: &str) {
    round_from(tag, builder, host, "cbuild-base")
}

fn round_from(tag: &str, builder: Option<&str>, host: &str, base: &str) {
    let reg = registry();
    let (p, repo, image) = project_from(tag, &reg, base);
    let out = push(&p, builder, host, &[]);
    assert!(!up_to_date(&out));
    let digest = registry_digest(&reg, &repo, "v1", None).expect("v1 was pushed");
    assert_eq!(
        registry_digest(&reg, &repo, "extra", None).as_deref(),
        Some(digest.as_str()),
        "every name gets the same manifest"
    );
    let other = other_engine(host);
    assert_eq!(pull_and_read(&other, &image, &digest), "pushed\n");

    // Nothing changed, and the registry holds it: no solve.
    let out = push(&p, builder, host, &[]);
    assert!(up_to_date(&out), "{}", said(&out));

    // Someone pushes something else under one of the names.
    overwrite(&other, &format!("{reg}/{repo}:extra"));
    assert_ne!(
        registry_digest(&reg, &repo, "extra", None).as_deref(),
        Some(digest.as_str())
    );
    let out = push(&p, builder, host, &[]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        registry_digest(&reg, &repo, "extra", None).as_deref(),
        Some(digest.as_str()),
        "the next --push puts the build's image back"
    );
    let out = push(&p, builder, host, &[]);
    assert!(up_to_date(&out), "{}", said(&out));

    // A content change is built and pushed.
    p.file("hello.txt", "changed\n");
    let out = push(&p, builder, host, &[]);
    assert!(!up_to_date(&out));
    let changed = registry_digest(&reg, &repo, "v1", None).unwrap();
    assert_ne!(changed, digest);
    assert_eq!(pull_and_read(&other, &image, &changed), "changed\n");
}

#[test]
fn build_push_on_a_graph_driver_engine_pushes_through_the_engine() {
    let host = docker_host();
    round("push-engine", None, &host);
}

/// Debian's Docker 20.10 (BuildKit 0.8): the engine pushes, as on 28.5's
/// graph driver.
#[test]
fn build_push_on_docker_20_10_pushes_through_the_engine() {
    round("push-stable", None, &engine("stable"));
}

#[test]
fn build_push_on_the_containerd_store_is_pushed_by_the_exporter() {
    round("push-cd", None, &engine("d28-containerd"));
}

/// The containerd-store engine's BuildKit as a standalone builder would
/// answer: the `image` exporter pushes, nothing is loaded anywhere.
#[test]
fn build_push_on_a_standalone_builder_uses_the_image_exporter() {
    let socket = engine("d28-containerd");
    let bk: Endpoint = proxy_to_engine(socket.strip_prefix("unix://").unwrap().into(), None, true);
    let builder = format!("tcp://{}", bk.addr);
    // The engine of DOCKER_HOST must be another one than the builder's
    // (whose containerd keeps what its `image` exporter made).
    let host = if docker_host() == socket {
        engine("d28")
    } else {
        docker_host()
    };
    round("push-bk", Some(&builder), &host);
    // Pushed only: the engine of DOCKER_HOST did not get it.
    let reg = registry();
    let (p, _repo, image) = project("push-bk-only", &reg);
    let out = push(&p, Some(&builder), &host, &[]);
    assert!(out.status.success(), "{}", said(&out));
    let local = docker_at(&host, &["image", "inspect", &image]);
    assert!(
        !local.status.success(),
        "{image} was loaded into DOCKER_HOST"
    );
}

/// The real buildkitd this session may run (CI has none: skipped).
#[test]
fn build_push_on_a_real_buildkitd() {
    // Skipped without one (CI): nothing else runs this test's path.
    let builder = match std::env::var("CBUILD_BUILDKITD_HOST") {
        Ok(b) if !b.is_empty() => b,
        _ => return,
    };
    // It has no image store: the base comes from the registry.
    let base = registry_base_in(&docker_host());
    round_from("push-real-bk", Some(&builder), &docker_host(), &base);
}

/// A `config.json` with a login for `reg`, in a directory of its own.
fn docker_config(login: Option<(&str, &str, &str)>) -> tempfile::TempDir {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let text = match login {
        Some((reg, user, password)) => format!(
            "{{\"auths\":{{\"{reg}\":{{\"auth\":\"{}\"}}}}}}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
        None => "{}".into(),
    };
    std::fs::write(dir.path().join("config.json"), text).unwrap();
    dir
}

/// The htpasswd registry: refused without a login (exit 1, naming the
/// service, the registry and `docker login`, nothing recorded), pushed
/// with the login of DOCKER_CONFIG, then up to date.
fn auth_round(tag: &str, host: &str) {
    let reg = auth_registry();
    let (p, repo, _image) = project(tag, &reg.host);
    let anonymous = docker_config(None);
    let env = [("DOCKER_CONFIG", anonymous.path().to_str().unwrap())];
    let out = push(&p, None, host, &env);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let err = said(&out);
    assert!(
        err.contains("app") && err.contains(&reg.host) && err.contains("docker login"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let auth = Some((reg.user.as_str(), reg.password.as_str()));
    assert_eq!(registry_digest(&reg.host, &repo, "v1", auth), None);
    // Not recorded as pushed: the next run tries again.
    let out = push(&p, None, host, &env);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let login = docker_config(Some((&reg.host, &reg.user, &reg.password)));
    let env = [("DOCKER_CONFIG", login.path().to_str().unwrap())];
    let out = push(&p, None, host, &env);
    assert!(out.status.success(), "{}", said(&out));
    assert!(registry_digest(&reg.host, &repo, "v1", auth).is_some());
    // The registry check itself logs in.
    let out = push(&p, None, host, &env);
    assert!(up_to_date(&out), "{}", said(&out));
}

#[test]
fn pushing_to_a_registry_with_a_login_uses_docker_config() {
    auth_round("push-auth", &docker_host());
}

#[test]
fn the_containerd_store_pushes_with_the_login_of_docker_config() {
    auth_round("push-auth-cd", &engine("d28-containerd"));
}

/// A port nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

#[test]
fn a_registry_that_is_not_there_is_a_clear_error_every_time() {
    for (tag, host) in [
        ("push-refused", docker_host()),
        ("push-refused-cd", engine("d28-containerd")),
    ] {
        let reg = closed_port();
        let (p, _repo, _image) = project(tag, &reg);
        for _ in 0..2 {
            let out = push(&p, None, &host, &[]);
            let err = said(&out);
            assert_eq!(out.status.code(), Some(1), "{host}: {err}");
            assert!(
                err.contains("app") && err.contains(&reg) && err.contains("reachable"),
                "{host}: {err}"
            );
            assert!(!up_to_date_any(&out), "{host}: {err}");
        }
    }
}

fn up_to_date_any(out: &Output) -> bool {
    finished(out)
        .get("app")
        .is_some_and(|e| e["up_to_date"] == true)
}

/// `cbuild push` pushes what is up to date, refuses what is not.
#[test]
fn push_pushes_only_current_images() {
    let reg = registry();
    let (p, repo, image) = project("push-cmd", &reg);
    let host = docker_host();
    // Never built: refused, nothing pushed.
    let out = p.cbuild(&["push"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cbuild build --push app"),
        "{}",
        stderr(&out)
    );
    assert_eq!(registry_digest(&reg, &repo, "v1", None), None);

    let out = p.cbuild(&["build"]);
    assert!(out.status.success(), "{}", said(&out));
    let out = p.cbuild(&["push"]);
    assert!(out.status.success(), "{}", said(&out));
    let digest = registry_digest(&reg, &repo, "v1", None).expect("pushed");
    assert_eq!(
        pull_and_read(&other_engine(&host), &image, &digest),
        "pushed\n"
    );
    // What `push` recorded counts for `build --push`.
    let out = push(&p, None, &host, &[]);
    assert!(up_to_date(&out), "{}", said(&out));

    // A stale image is refused.
    p.file("hello.txt", "edited\n");
    let out = p.cbuild(&["push"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("files in the build context changed"),
        "{}",
        stderr(&out)
    );
    let out = p.cbuild(&["push", "--ignore-push-failures"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        registry_digest(&reg, &repo, "v1", None).as_deref(),
        Some(digest.as_str())
    );
}

/// A graph-driver engine's BuildKit reached directly has only the `moby`
/// exporter, which cannot push: one clear error before anything is built.
#[test]
fn a_builder_that_cannot_push_says_so_before_building() {
    let socket = engine("d28");
    let bk: Endpoint = proxy_to_engine(socket.strip_prefix("unix://").unwrap().into(), None, true);
    let builder = format!("tcp://{}", bk.addr);
    let reg = registry();
    let (p, repo, _image) = project("push-nopush", &reg);
    let out = push(&p, Some(&builder), &docker_host(), &[]);
    let err = said(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&builder) && err.contains("cannot push") && err.contains("--builder default"),
        "{err}"
    );
    assert!(finished(&out).is_empty(), "nothing was built: {err}");
    assert_eq!(registry_digest(&reg, &repo, "v1", None), None);
}

/// A TCP proxy to the plain registry that, while `cut` is set, drops every
/// connection once `limit` bytes went up through it in all: a registry
/// that goes away in the middle of a push.
struct BreakingProxy {
    addr: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn breaking_proxy(upstream: String, limit: usize) -> BreakingProxy {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cut = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicUsize::new(0));
    let flag = cut.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut client_w, mut up_r) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_r, &mut client_w);
                let _ = client_w.shutdown(std::net::Shutdown::Both);
            });
            let (cut, sent) = (flag.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if cut.load(Ordering::SeqCst) && sent.fetch_add(n, Ordering::SeqCst) + n > limit
                    {
                        break;
                    }
                    if up.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = up.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    BreakingProxy { addr, cut }
}

/// Bytes gzip cannot shrink, different for each `seed` (a layer the
/// registry does not have yet, which takes a while to upload).
fn noise(seed: &str, len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15
        ^ u64::from_le_bytes(
            blake3::hash(seed.as_bytes()).as_bytes()[..8]
                .try_into()
                .unwrap(),
        );
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect()
}

/// A push cut off halfway fails, naming the registry; the registry holds
/// no manifest under the name, and the next run pushes again. On the
/// containerd store, where BuildKit pushes: a graph-driver engine retries
/// each upload five times with growing pauses (a minute here) before it
/// fails the same way (measured once by hand).
#[test]
fn a_push_cut_off_halfway_is_retried_by_the_next_run() {
    let host = engine("d28-containerd");
    let proxy = breaking_proxy(registry(), 1 << 20);
    let (p, repo, _image) = project("push-cut", &proxy.addr);
    p.file("hello.txt", &noise(&p.name, 4 << 20));
    let out = push(&p, None, &host, &[]);
    let err = said(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("app") && err.contains(&proxy.addr) && err.contains("push again"),
        "{err}"
    );
    assert_eq!(
        registry_digest(&registry(), &repo, "v1", None),
        None,
        "nothing is tagged in the registry half-way"
    );

    proxy.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = push(&p, None, &host, &[]);
    assert!(!up_to_date(&out), "{}", said(&out));
    assert!(registry_digest(&registry(), &repo, "v1", None).is_some());
    let out = push(&p, None, &host, &[]);
    assert!(up_to_date(&out), "{}", said(&out));
}

/// What decides plain http for a push: every engine reports its insecure
/// registries with the CIDR ranges of its `insecure-registries` (here
/// Docker's loopback defaults, which the engines' own configuration cannot
/// be changed to show more of), and the registry client matches them.
#[test]
fn the_engines_insecure_ranges_reach_the_registry_client() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for name in ["d28", "d28-containerd", "d26", "stable"] {
        let host = engine(name);
        let insecure = rt.block_on(async {
            let e = cbuild::engine::Engine::connect(&host, None).await.unwrap();
            e.insecure_registries().await.unwrap()
        });
        assert!(
            insecure.iter().any(|i| i == "127.0.0.0/8"),
            "{name}: {insecure:?}"
        );
        let client = cbuild::registry::Registry::new(insecure);
        assert_eq!(rt.block_on(client.scheme(&registry())), "http", "{name}");
    }
}
