//! A builder address where something accepts connections and never
//! answers: cbuild gives up after its connect deadline with a message naming
//! the address, instead of hanging until killed.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Accepts every connection and keeps it open without a byte in answer.
fn silent_unix(dir: &std::path::Path) -> String {
    let path = dir.join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    format!("unix://{}", path.display())
}

fn silent_tcp() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    format!("tcp://{addr}")
}

/// Runs cbuild with a 2-second connect deadline; a run that outlives a
/// generous guard is killed and fails the test as the hang it is.
fn run(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cbuild"));
    cmd.current_dir(p.path())
        .env("DOCKER_HOST", docker_host())
        .env("CBUILD_CACHE_DIR", p.cache.path())
        .env("CBUILD_CONNECT_TIMEOUT", "2")
        .env_remove("BUILDKIT_HOST")
        .args(["-p", &p.name])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("cbuild {args:?} {env:?} hung on a silent builder:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn assert_gave_up(out: &Output, address: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(address),
        "the message names `{address}`:\n{err}"
    );
    assert!(err.contains("did not answer"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn silent_endpoints_are_reported_not_waited_for() {
    let p = Project::new("silent");
    p.file("compose.yaml", "services:\n  a:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\n");
    let unix = silent_unix(p.cache.path());
    let tcp = silent_tcp();
    for addr in [&unix, &tcp] {
        // As the Docker engine.
        let docker = [("DOCKER_HOST", addr.as_str())];
        assert_gave_up(&run(&p, &["build"], &docker), addr);
        assert_gave_up(&run(&p, &["doctor"], &docker), addr);
        assert_gave_up(&run(&p, &["status"], &docker), addr);
        // As a buildkitd, through BUILDKIT_HOST and --builder.
        let buildkit = [("BUILDKIT_HOST", addr.as_str())];
        assert_gave_up(&run(&p, &["build"], &buildkit), addr);
        assert_gave_up(&run(&p, &["doctor"], &buildkit), addr);
        assert_gave_up(&run(&p, &["--builder", addr, "build"], &[]), addr);
    }
}
