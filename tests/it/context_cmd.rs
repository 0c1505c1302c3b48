//! `cbuild context`: computed locally, so these tests need no engine. `DOCKER_HOST` points at
//! a socket that does not exist, to prove the command never contacts Docker.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// A project directory and its own cbuild cache directory.
struct Tree {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Tree {
    fn new(dockerfile: &str) -> Self {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
        };
        t.file("compose.yaml", b"services:\n  app:\n    build: .\n");
        t.file("Dockerfile", dockerfile.as_bytes());
        t
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, rel: &str, data: &[u8]) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn cbuild(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_cbuild"))
            .current_dir(self.path())
            .env("CBUILD_CACHE_DIR", self.cache.path())
            .env("DOCKER_HOST", "unix:///nonexistent/cbuild-test/docker.sock")
            .env_remove("BUILDKIT_HOST")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .args(["-p", "ctx", "context"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cbuild context {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `cbuild context --format json`, the report of the only service.
    fn json(&self) -> Value {
        let out = self.cbuild(&["--format", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["services"][0].clone()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A Dockerfile that copies `src/` only: `node_modules/` (~100 MiB) is neither listed nor read.
#[test]
fn copies_only_src_and_never_reads_node_modules() {
    let t = Tree::new(
        "FROM alpine\nWORKDIR /app\nCOPY src/ ./src/\nCMD [\"node\", \"src/index.js\"]\n",
    );
    let mut src_bytes = 0u64;
    for i in 0..20 {
        let data = format!("export const v{i} = {i};\n");
        src_bytes += data.len() as u64;
        t.file(&format!("src/mod{i}.js"), data.as_bytes());
    }
    // Three sparse 30 MiB files and 2,000 small ones: ~98 MiB, written in well under a second.
    for i in 0..3 {
        let p = t.path().join(format!("node_modules/big/blob{i}.bin"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::File::create(&p)
            .unwrap()
            .set_len(30 << 20)
            .unwrap();
    }
    let small = vec![b'x'; 4096];
    for i in 0..2000 {
        t.file(&format!("node_modules/pkg{}/f{i}.js", i % 50), &small);
    }

    let r = t.json();
    assert_eq!(r["followpaths"], serde_json::json!(["src"]));
    assert_eq!(r["files"], 20);
    assert_eq!(r["bytes"], src_bytes);
    assert_eq!(r["cache"]["files_read"], 20);
    assert_eq!(r["cache"]["bytes_read"], src_bytes);
    assert_eq!(r["excluded"]["entries"], 0);
    for d in r["largest_dirs"].as_array().unwrap() {
        assert!(d["path"].as_str().unwrap().starts_with("src"), "{d}");
    }
    assert!(r["heavy_dirs"].as_array().unwrap().is_empty());

    let text = t.cbuild(&["--explain", "node_modules/big/blob0.bin"]);
    assert!(
        stdout(&text).contains("not used by the Dockerfile"),
        "{}",
        stdout(&text)
    );
    assert!(!stderr(&text).contains("hint:"), "{}", stderr(&text));
}

/// 30,000 files: the second run takes every hash from the cache.
#[test]
fn warm_run_rereads_nothing() {
    let t = Tree::new("FROM alpine\nCOPY . /app\n");
    for d in 0..300 {
        for f in 0..100 {
            t.file(
                &format!("d{d:03}/f{f:02}.txt"),
                format!("{d}/{f}\n").as_bytes(),
            );
        }
    }
    let total = 30_000 + 2; // plus Dockerfile and compose.yaml

    let cold = t.json();
    assert_eq!(cold["followpaths"], Value::Null);
    assert_eq!(cold["files"], total);
    assert_eq!(cold["cache"]["files_read"], total);
    assert_eq!(cold["cache"]["files_cached"], 0);

    let warm = t.json();
    assert_eq!(warm["files"], total);
    assert_eq!(warm["cache"]["files_read"], 0, "{}", warm["cache"]);
    assert_eq!(warm["cache"]["bytes_read"], 0);
    assert_eq!(warm["cache"]["files_cached"], total);
    assert_eq!(warm["digest"], cold["digest"]);

    // One changed file is the only one read again, and it changes the digest.
    t.file("d123/f45.txt", b"changed\n");
    let after = t.json();
    assert_eq!(after["cache"]["files_read"], 1);
    assert_ne!(after["digest"], cold["digest"]);
}

#[test]
fn explain_names_the_ignore_file_line() {
    let t = Tree::new("FROM alpine\nCOPY . /app\n");
    t.file(
        ".dockerignore",
        b"# logs stay home\n*.log\nnode_modules\n!keep.log\n",
    );
    t.file("debug.log", b"noise\n");
    t.file("keep.log", b"kept\n");
    t.file("node_modules/x/index.js", b"module.exports = 1;\n");
    t.file("src/main.js", b"console.log(1);\n");

    let out = stdout(&t.cbuild(&["--explain", "debug.log"]));
    assert!(
        out.contains("`debug.log`: not sent: excluded by `")
            && out.contains(".dockerignore` line 2: `*.log`"),
        "{out}"
    );
    let out = stdout(&t.cbuild(&["--explain", "node_modules/x/index.js"]));
    assert!(
        out.contains(".dockerignore` line 3: `node_modules`"),
        "{out}"
    );
    let out = stdout(&t.cbuild(&["--explain", "keep.log"]));
    assert!(
        out.contains("`keep.log`: sent: re-included by `") && out.contains("line 4: `!keep.log`"),
        "{out}"
    );

    let out = t.cbuild(&["--format", "json", "--explain", "debug.log"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let x = &v["services"][0]["explain"];
    assert_eq!(x["status"], "excluded");
    assert_eq!(x["sent"], false);
    assert_eq!(x["line"], 2);
    assert_eq!(x["pattern"], "*.log");
    assert!(x["ignore_file"]
        .as_str()
        .unwrap()
        .ends_with(".dockerignore"));
    let ex = &v["services"][0]["excluded"];
    assert_eq!(ex["entries"], 4); // debug.log, node_modules, node_modules/x, …/index.js
    let lines: Vec<u64> = ex["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3]);
}

#[test]
fn heavy_directory_hint_without_dockerignore() {
    let t = Tree::new("FROM alpine\nCOPY . /app\n");
    t.file("src/main.py", b"print(1)\n");
    t.file("node_modules/x/index.js", &vec![b'x'; 100_000]);
    t.file(".git/objects/ab/cdef", &vec![b'y'; 50_000]);

    let err = stderr(&t.cbuild(&[]));
    assert!(
        err.contains("hint: add `node_modules` to a `.dockerignore`") && err.contains("97.7 KiB"),
        "{err}"
    );
    assert!(
        err.contains("hint: add `.git` to a `.dockerignore`"),
        "{err}"
    );
    let r = t.json();
    let heavy: Vec<&str> = r["heavy_dirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(heavy, ["node_modules", ".git"]);

    t.file(".dockerignore", b".git\n");
    let err = stderr(&t.cbuild(&[]));
    assert!(!err.contains("hint:"), "{err}");
}

/// `<Dockerfile>.dockerignore` next to the Dockerfile wins over `.dockerignore`, and the
/// target decides which stages' paths count.
#[test]
fn dockerfile_specific_ignore_file_and_target() {
    let t = Tree::new("");
    t.file(
        "compose.yaml",
        b"services:\n  app:\n    build:\n      context: .\n      dockerfile: docker/app.Dockerfile\n      target: dev\n",
    );
    t.file(
        "docker/app.Dockerfile",
        b"FROM alpine AS dev\nCOPY tests/ /t/\nCOPY src/ /s/\nFROM alpine AS prod\nCOPY dist/ /d/\n",
    );
    t.file("docker/app.Dockerfile.dockerignore", b"src/generated\n");
    t.file(".dockerignore", b"tests\n");
    t.file("tests/a_test.py", b"assert True\n");
    t.file("src/app.py", b"print(1)\n");
    t.file("src/generated/big.py", b"x = 1\n");
    t.file("dist/app.whl", b"wheel\n");

    let r = t.json();
    assert_eq!(r["followpaths"], serde_json::json!(["src", "tests"]));
    assert!(r["ignore_file"]
        .as_str()
        .unwrap()
        .ends_with("docker/app.Dockerfile.dockerignore"));
    assert_eq!(r["target"], "dev");
    assert_eq!(r["files"], 2); // tests/a_test.py, src/app.py
    assert_eq!(r["excluded"]["rules"][0]["pattern"], "src/generated");
}

/// A Dockerfile error names the file and the line, and exits with 2.
#[test]
fn dockerfile_errors_name_the_line() {
    let t = Tree::new("FROM alpine\n\nCOPY only-one-argument\n");
    let out = Command::new(env!("CARGO_BIN_EXE_cbuild"))
        .current_dir(t.path())
        .env("CBUILD_CACHE_DIR", t.cache.path())
        .env_remove("COMPOSE_FILE")
        .args(["-p", "ctx", "context"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("Dockerfile`") && err.contains("line 3:"),
        "{err}"
    );
}

/// A Dockerfile that uses no context file makes BuildKit ask for nothing.
#[test]
fn unused_context_sends_nothing() {
    let t = Tree::new("FROM alpine AS unused\nCOPY . /\nFROM alpine\nRUN echo hi\n");
    t.file("node_modules/x.js", b"x\n");
    let r = t.json();
    assert_eq!(r["followpaths"], serde_json::json!([]));
    assert_eq!(
        (r["files"].as_u64(), r["entries"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(r["cache"]["files_read"], 0);
    let out = t.cbuild(&["--explain", "node_modules/x.js"]);
    assert!(
        stdout(&out).contains("does not use the context"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("not used by the Dockerfile"),
        "{}",
        stdout(&out)
    );
    assert!(!stderr(&out).contains("hint:"), "{}", stderr(&out));
}
