//! Failures a user meets: clear messages, non-zero exits, never a panic.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::common::*;

fn assert_no_panic(text: &str) {
    assert!(!text.contains("panicked"), "{text}");
    assert!(!text.contains("RUST_BACKTRACE"), "{text}");
}

#[test]
fn unknown_instruction_names_the_line() {
    let p = Project::new("badinstr");
    p.file("compose.yaml", "services:\n  bad:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nFOO bar\n");
    let out = p.cbuild(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service `bad` failed"), "{err}");
    assert!(err.to_lowercase().contains("unknown instruction"), "{err}");
    assert!(err.contains("line 2") || err.contains(":2"), "{err}");
    assert_no_panic(&err);
}

#[test]
fn failing_run_shows_the_step_and_its_output() {
    let p = Project::new("badrun");
    p.file(
        "compose.yaml",
        "services:\n  broken:\n    build: .\n  fine:\n    build: fine\n",
    )
    .file(
        "Dockerfile",
        "FROM cbuild-base\nRUN echo about-to-fail && echo on-stderr >&2 && exit 3\n",
    )
    .file("fine/Dockerfile", "FROM cbuild-base\nRUN echo ok > /ok\n");
    let out = p.cbuild(&["--progress", "quiet", "build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("service `broken` failed"), "{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(
        err.contains("failing step: [2/2] RUN echo about-to-fail"),
        "{err}"
    );
    assert!(err.contains("about-to-fail"), "{err}");
    assert!(err.contains("on-stderr"), "{err}");
    // The other service still built.
    assert_eq!(run_in(&p.image("fine"), "cat /ok"), "ok\n");
    assert_no_panic(&err);
}

#[test]
fn unreachable_engine_says_where_and_what_to_do() {
    let p = Project::new("noengine");
    p.file("compose.yaml", "services:\n  a:\n    build: .\n")
        .file("Dockerfile", "FROM scratch\n");
    let out = p.cbuild_env(
        &["build"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(
            "error: cannot connect to the builder at `unix:///nonexistent/docker.sock`"
        ),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert_no_panic(&err);

    let out = p.cbuild_env(&["build", "--builder", "tcp://127.0.0.1:9"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tcp://127.0.0.1:9"), "{err}");
    assert_no_panic(&err);
}

#[test]
fn bad_input_is_reported_with_file_and_key() {
    let p = Project::new("badinput");
    p.file(
        "compose.yaml",
        "services:\n  a:\n    build:\n      context: .\n      dockerfil: x\n",
    );
    let out = p.cbuild(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("compose.yaml"), "{err}");
    assert!(err.contains("services.a.build.dockerfil"), "{err}");

    let p = Project::new("nodockerfile");
    p.file("compose.yaml", "services:\n  a:\n    build: .\n");
    let out = p.cbuild(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("Dockerfile") && err.contains("not found"),
        "{err}"
    );

    let out = p.cbuild(&["build", "nosuch"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no such service: `nosuch`"), "{err}");
    assert_no_panic(&err);
}

#[test]
fn deeply_nested_compose_flow_is_refused_with_file_and_line() {
    // libyaml needs minutes for 100,000 nested `[`; cbuild refuses it first.
    let p = Project::new("deepflow");
    p.file(
        "compose.yaml",
        &format!(
            "name: x
services: {}
",
            "[".repeat(100_000)
        ),
    );
    for cmd in [&["config"][..], &["build"]] {
        let out = p.cbuild(cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("compose.yaml"), "{err}");
        assert!(
            err.contains("nested deeper than 1000 levels at line 2"),
            "{err}"
        );
        assert_no_panic(&err);
    }
}

#[test]
fn an_invalid_dockerignore_names_the_file_and_line() {
    let p = Project::new("badignore");
    p.file("compose.yaml", "services:\n  a:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY . /x\n")
        .file(".dockerignore", "# fine\nnode_modules\n!\n");
    let out = p.cbuild(&["build"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(".dockerignore`: line 3: illegal exclusion pattern"),
        "{err}"
    );
    assert_no_panic(&err);
}

/// A unix-socket proxy to the engine that can cut its connections, as if
/// the engine died (without touching the engine the other tests use).
struct CuttingProxy {
    address: String,
    /// Each connection's two ends, and whether it carries the session
    /// (`POST /session`).
    conns: Arc<Mutex<Vec<(bool, UnixStream, UnixStream)>>>,
    _dir: tempfile::TempDir,
}

impl CuttingProxy {
    fn to_engine() -> Self {
        let upstream = docker_host()
            .strip_prefix("unix://")
            .expect("the test engine listens on a unix socket")
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let proxy = CuttingProxy {
            address: format!("unix://{}", path.display()),
            conns: Default::default(),
            _dir: dir,
        };
        let conns = proxy.conns.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = UnixStream::connect(&upstream) else {
                    continue;
                };
                let conns = conns.clone();
                std::thread::spawn(move || {
                    let (mut from, mut to) =
                        (client.try_clone().unwrap(), server.try_clone().unwrap());
                    // The request line tells a session from the other calls.
                    let mut first = [0u8; 4096];
                    let Ok(n) = from.read(&mut first) else { return };
                    let session = first[..n].starts_with(b"POST /session");
                    conns.lock().unwrap().push((
                        session,
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                    ));
                    if to.write_all(&first[..n]).is_err() {
                        return;
                    }
                    let (mut back_from, mut back_to) = (server, client);
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut back_from, &mut back_to);
                        let _ = back_to.shutdown(Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        });
        proxy
    }

    /// Cuts the connections `which` selects (by "is a session").
    fn cut(&self, which: impl Fn(bool) -> bool) {
        for (session, a, b) in self.conns.lock().unwrap().iter() {
            if which(*session) {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Builds a `RUN sleep` step through `proxy`, lets `cut` act once the step
/// has started, and returns the exit code and everything cbuild said.
fn build_and_cut(p: &Project, proxy: &CuttingProxy, cut: impl Fn()) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cbuild"))
        .current_dir(p.path())
        .env("DOCKER_HOST", &proxy.address)
        .env("CBUILD_CACHE_DIR", p.cache.path())
        .env_remove("BUILDKIT_HOST")
        .args(["-p", &p.name, "--progress", "plain", "build", "--no-cache"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    // The RUN step has started in the daemon once its progress shows.
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("RUN sleep 43.25") {
            break;
        }
    }
    assert!(seen.contains("RUN sleep 43.25"), "{seen}");
    cut();
    for line in lines.map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
    }
    (child.wait().unwrap().code(), seen)
}

#[test]
fn a_builder_lost_during_a_run_step_is_named() {
    let p = Project::new("lostrun");
    p.file("compose.yaml", "services:\n  a:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nRUN sleep 43.25\n");
    let named = |proxy: &CuttingProxy| format!("builder at `{}`", proxy.address);

    // The engine's connections all break at once, as when dockerd dies.
    let proxy = CuttingProxy::to_engine();
    let (code, err) = build_and_cut(&p, &proxy, || proxy.cut(|_| true));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&named(&proxy)), "{err}");
    assert_no_panic(&err);

    // Only the session breaks (the order in which a dying engine's
    // connections close is not fixed): still the builder is named.
    let proxy = CuttingProxy::to_engine();
    let (code, err) = build_and_cut(&p, &proxy, || proxy.cut(|session| session));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&named(&proxy)), "{err}");
    assert!(err.contains("closed the build session"), "{err}");
    assert_no_panic(&err);
}
