//! Ctrl-C cancels every running build cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn sleeping_processes(marker: &str) -> usize {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn ctrl_c_stops_the_builds_and_exits_130() {
    let p = Project::new("cancel");
    // Unusual sleep durations so the processes can be found on the host.
    p.file(
        "compose.yaml",
        "services:\n  one:\n    build: one\n  two:\n    build: two\n",
    )
    .file(
        "one/Dockerfile",
        "FROM cbuild-base\nCOPY data.txt /\nRUN sleep 41.25\n",
    )
    .file("one/data.txt", "first\n")
    .file("two/Dockerfile", "FROM cbuild-base\nRUN sleep 42.25\n");
    // Old enough that the hash cache can vouch for it (a file written in
    // the same clock tick as its hashing is re-checked instead of kept).
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&p.path().join("one/data.txt"), old);
    let mut child = Command::new(env!("CARGO_BIN_EXE_cbuild"))
        .current_dir(p.path())
        .env("DOCKER_HOST", docker_host())
        .env("CBUILD_CACHE_DIR", p.cache.path())
        .args(["-p", &p.name, "--progress", "plain", "--no-cache"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let Some(Ok(line)) = lines.next() else { break };
        seen.push_str(&line);
        seen.push('\n');
        if seen.contains("RUN sleep 41.25") && seen.contains("RUN sleep 42.25") {
            break;
        }
    }
    // Let the RUN steps actually start in the daemon.
    let start = Instant::now();
    while sleeping_processes("sleep 4[12].25") < 2 && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sleeping_processes("sleep 4[12].25"), 2, "{seen}");

    unsafe_sigint(child.id());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cbuild did not exit after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(status.code(), Some(130), "{seen}{}", rest.join("\n"));
    assert!(rest.join("\n").contains("cancelled"), "{}", rest.join("\n"));
    assert!(!rest.join("\n").contains("panicked"), "{}", rest.join("\n"));

    // The daemon stopped the steps: no RUN process survives.
    let start = Instant::now();
    while sleeping_processes("sleep 4[12].25") > 0 && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        sleeping_processes("sleep 4[12].25"),
        0,
        "build steps still running after cancel"
    );
    // Nothing was tagged.
    assert!(!docker(&["image", "inspect", &p.image("one")])
        .status
        .success());
    assert!(!docker(&["image", "inspect", &p.image("two")])
        .status
        .success());

    // The hashing done before the cancel was kept: `one`'s hash cache
    // holds the file the daemon pulled.
    let caches: Vec<Vec<u8>> = std::fs::read_dir(p.cache.path().join("hashes"))
        .expect("the hash caches were saved on Ctrl-C")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(
        caches
            .iter()
            .any(|c| c.windows(8).any(|w| w == b"data.txt")),
        "no saved hash cache holds `data.txt`"
    );

    // The next run builds from what is on disk now.
    p.file("one/Dockerfile", "FROM cbuild-base\nCOPY data.txt /\n")
        .file("one/data.txt", "second\n")
        .file("two/Dockerfile", "FROM cbuild-base\nRUN echo two > /two\n");
    set_mtime(&p.path().join("one/data.txt"), old);
    p.build_ok(&["build"]);
    assert_eq!(run_in(&p.image("one"), "cat /data.txt"), "second\n");
    assert_eq!(run_in(&p.image("two"), "cat /two"), "two\n");
}

fn unsafe_sigint(pid: u32) {
    let ok = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Ctrl-C on a cbuild that waits for another cbuild building the same
/// service stops it at once, not when the other build ends (that one may
/// take minutes); the other build goes on undisturbed. The first run's RUN
/// step waits for this test over loopback, so it holds the clock's lock for
/// exactly as long as the test needs.
#[test]
fn ctrl_c_while_waiting_for_another_cbuild_stops_at_once() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = Project::new("cancelwait");
    p.file(
        "compose.yaml",
        "services:\n  app:\n    build:\n      context: .\n      network: host\n",
    )
    .file(
        "Dockerfile",
        &format!(
            "FROM cbuild-base\nCOPY data.txt /\nRUN busybox wget -q -O- http://127.0.0.1:{port}/ > /gate\n"
        ),
    )
    .file("data.txt", &p.name);
    let cbuild = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cbuild"));
        cmd.current_dir(p.path())
            .env("DOCKER_HOST", docker_host())
            .env("CBUILD_CACHE_DIR", p.cache.path())
            .env_remove("BUILDKIT_HOST")
            .args(["-p", &p.name, "--progress", "plain", "build"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    let first = cbuild().spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(listener.accept().map(|(s, _)| s));
    });
    let mut gate = rx
        .recv_timeout(Duration::from_secs(600))
        .expect("the first run's RUN step never called")
        .unwrap();

    // The second run waits for the first one's lock.
    let mut second = cbuild().spawn().unwrap();
    let mut lines = BufReader::new(second.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("waiting for another cbuild") {
            break;
        }
    }
    assert!(seen.contains("waiting for another cbuild"), "{seen}");

    unsafe_sigint(second.id());
    // The first run is still held at the gate: without the fix the second
    // one would wait for it forever. The deadline only keeps a failing test
    // from hanging.
    let start = Instant::now();
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "cbuild did not exit after Ctrl-C while waiting for another cbuild:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let rest = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("cancelled"), "{rest}");
    assert!(!rest.contains("panicked"), "{rest}");

    // The first run was not disturbed.
    let mut request = [0u8; 1024];
    let _ = gate.read(&mut request).unwrap();
    gate.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        .unwrap();
    drop(gate);
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(run_in(&p.image("app"), "cat /gate"), "ok\n");
}
