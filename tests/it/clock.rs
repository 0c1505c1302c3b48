//! The content clock and the hash cache when the cache directory is not
//! what BuildKit holds (restored from an older copy, unwritable) and when
//! two cbuild processes build one service at once: never an image with
//! old bytes, never a wrong "fresh".

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

fn project(tag: &str) -> Project {
    let p = Project::new(tag);
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY src/ /src/\n")
        .file("src/data.txt", "AAAA\n")
        .file("src/other.txt", "unchanged\n");
    p
}

/// Rewrites `rel` with `data` (the same size) and puts its mtime back: the
/// edit BuildKit cannot see by itself.
fn rewrite_keeping_mtime(p: &Project, rel: &str, data: &str) {
    let f = p.path().join(rel);
    let before = mtime(&f);
    assert_eq!(std::fs::metadata(&f).unwrap().len(), data.len() as u64);
    std::fs::write(&f, data).unwrap();
    set_mtime(&f, before);
    assert_eq!(mtime(&f), before);
}

fn data_in_image(p: &Project) -> String {
    run_in(&p.image("app"), "cat /src/data.txt")
}

/// Whether `cbuild status --check` calls every service fresh.
fn status_says_fresh(p: &Project) -> bool {
    p.cbuild(&["status", "--check"]).status.success()
}

fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

#[test]
fn a_cache_directory_restored_from_an_older_copy_never_gives_old_bytes() {
    let p = project("rollback");
    build_json(&p, &[]);
    let backup = tempfile::tempdir().unwrap();
    copy_dir(p.cache.path(), backup.path());

    rewrite_keeping_mtime(&p, "src/data.txt", "BBBB\n");
    build_json(&p, &[]);
    assert_eq!(data_in_image(&p), "BBBB\n");

    // A backup restore, or a CI cache from an older run: BuildKit holds
    // BBBB, the clock remembers AAAA.
    for e in std::fs::read_dir(p.cache.path()).unwrap() {
        std::fs::remove_dir_all(e.unwrap().path()).unwrap();
    }
    copy_dir(backup.path(), p.cache.path());
    rewrite_keeping_mtime(&p, "src/data.txt", "CCCC\n");
    build_json(&p, &[]);
    assert_eq!(data_in_image(&p), "CCCC\n");
    assert!(status_says_fresh(&p));
}

/// Makes a directory immutable (which stops root too) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Self {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "chattr +i {} failed (the test needs root)",
            dir.display()
        );
        Immutable(dir.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_cache_directory_cbuild_cannot_write_gives_full_transfers_not_old_bytes() {
    let p = project("readonly");
    build_json(&p, &[]);
    // As after one `sudo cbuild`: the clock state stays readable but can
    // be neither replaced nor removed.
    let _frozen = Immutable::set(&p.cache.path().join("clock"));
    let mut warnings = Vec::new();
    for data in ["BBBB\n", "CCCC\n", "DDDD\n"] {
        rewrite_keeping_mtime(&p, "src/data.txt", data);
        let out = p.cbuild(&["build"]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert_eq!(data_in_image(&p), data, "{err}");
        warnings.push(err);
    }
    for err in warnings {
        // One warning per run, naming the directory and the fix.
        assert_eq!(
            err.matches("cannot write cbuild's cache directory").count(),
            1,
            "{err}"
        );
        assert!(err.contains("clock") && err.contains("chown"), "{err}");
    }
    assert!(status_says_fresh(&p));
}

#[test]
fn the_cache_directory_and_its_files_are_private() {
    let p = project("private");
    let cache = p.cache.path().join("new");
    let out = p.cbuild_env(&["build"], &[("CBUILD_CACHE_DIR", cache.to_str().unwrap())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut seen = 0;
    let mut todo = vec![cache.clone()];
    while let Some(dir) = todo.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path);
            } else {
                assert_eq!(
                    meta.permissions().mode() & 0o777,
                    0o600,
                    "{}",
                    path.display()
                );
                seen += 1;
            }
        }
    }
    // The hash cache, the clock state and the build record at least.
    assert!(seen >= 3, "{seen} files");
}

/// Two cbuild processes build one service, and a same-size edit lands
/// between their transfers: the second run planned (and loaded the clock)
/// before the first one transferred, and transfers after it. The second
/// run builds a `gate` service first, whose RUN step waits for this test
/// over loopback: that holds it between its plan and its transfer of `app`
/// for exactly as long as the test needs.
#[test]
fn overlapping_builds_of_one_service_end_with_the_last_bytes() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let p = project("overlap");
    p.file(
        "compose.gate.yaml",
        "services:\n  gate:\n    build:\n      context: gate\n      network: host\n  app:\n    build:\n      context: .\n      additional_contexts:\n        gate: service:gate\n",
    )
    .file(
        "gate/Dockerfile",
        &format!("FROM cbuild-base\nCOPY nonce /nonce\nRUN busybox wget -q -O- http://127.0.0.1:{port}/\n"),
    )
    .file("gate/nonce", &p.name);
    build_json(&p, &[]);
    assert_eq!(data_in_image(&p), "AAAA\n");

    rewrite_keeping_mtime(&p, "src/data.txt", "BBBB\n");
    let second = p
        .command(&[
            "-f",
            "compose.yaml",
            "-f",
            "compose.gate.yaml",
            "build",
            "app",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The gate step calls: the second run has planned `app`.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(listener.accept().map(|(s, _)| s));
    });
    let mut gate = rx
        .recv_timeout(std::time::Duration::from_secs(600))
        .expect("the gate step never called")
        .unwrap();

    // The first run builds `app` with BBBB from start to end.
    let first = p.command(&["build", "app"]).output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(data_in_image(&p), "BBBB\n");

    // Edit again, then let the second run go on to `app`.
    rewrite_keeping_mtime(&p, "src/data.txt", "CCCC\n");
    let mut request = [0u8; 1024];
    let _ = gate.read(&mut request).unwrap();
    gate.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        .unwrap();
    drop(gate);
    let second = second.wait_with_output().unwrap();
    assert!(second.status.success(), "{}", stderr(&second));

    assert_eq!(data_in_image(&p), "CCCC\n", "{}", stderr(&second));
    // Fresh as the second run built it (its inputs include the gate).
    let status = p.cbuild(&[
        "-f",
        "compose.yaml",
        "-f",
        "compose.gate.yaml",
        "status",
        "--check",
    ]);
    assert!(status.status.success(), "{}", stdout(&status));
    // And the clock both runs left behind is still right.
    rewrite_keeping_mtime(&p, "src/data.txt", "DDDD\n");
    build_json(&p, &["app"]);
    assert_eq!(data_in_image(&p), "DDDD\n");
    assert!(status_says_fresh(&p));
}
