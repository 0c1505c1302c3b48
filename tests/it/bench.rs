//! `cbuild bench`: the JSON report has every field with sane values, and
//! the project's files are exactly as they were (edits happen on a copy).
//! No timing thresholds: only that times were measured.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::*;

/// Every file under `root` (relative path) with its content hash, mode and
/// mtime: any write, touch or chmod of the user's tree changes it.
fn tree_state(root: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if m.is_dir() {
                stack.push(p.clone());
            }
            let content = if m.is_file() {
                blake3::hash(&std::fs::read(&p).unwrap())
                    .to_hex()
                    .to_string()
            } else {
                String::new()
            };
            out.insert(
                rel,
                format!(
                    "{content} {:o} {} {}",
                    m.mode(),
                    m.size(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000
                ),
            );
        }
    }
    out
}

#[test]
fn bench_reports_json_and_leaves_files_alone() {
    let p = Project::new("bench");
    p.file(
        "compose.yaml",
        "services:\n  app:\n    build: app\n  tool:\n    build: tool\n",
    )
    .file(
        "app/Dockerfile",
        "FROM cbuild-base\nCOPY src /src\nRUN cat /src/*.txt > /all\n",
    )
    .file("app/.dockerignore", "logs\n")
    .file("app/src/a.txt", "alpha\n")
    .file("app/src/b.txt", "bravo bravo\n")
    .file("app/src/c.txt", &"charlie ".repeat(1000))
    .file("app/logs/big.log", &"x".repeat(50_000))
    .file("app/notes.md", "not copied\n")
    .file(
        "tool/Dockerfile",
        "FROM cbuild-base\nRUN echo tool > /tool\n",
    );
    let before = tree_state(p.path());
    let out = p.cbuild(&[
        "--progress",
        "quiet",
        "bench",
        "--runs",
        "1",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = tree_state(p.path());
    assert_eq!(before, after, "cbuild bench changed the project's files");

    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["runs"], 1);
    let services = report["services"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app", "tool"]);

    let app = &services[0];
    // The minimal context: src/ (3 files) and .dockerignore; not logs/ nor notes.md.
    assert_eq!(app["context_files"], 4, "{app:#}");
    let src_bytes = 6 + 12 + 8000;
    let bytes = app["context_bytes"].as_u64().unwrap();
    assert!((src_bytes..src_bytes + 100).contains(&bytes), "{app:#}");
    for key in ["walk_hash_cold_ms", "walk_hash_warm_ms", "noop_build_ms"] {
        assert!(app[key].as_f64().unwrap() > 0.0, "{key}: {app:#}");
    }
    assert_eq!(
        app["warm_files_hashed"], 0,
        "the warm pass read files: {app:#}"
    );
    let first = &app["first_transfer"];
    assert!(first["bytes"].as_u64().unwrap() >= src_bytes, "{app:#}");
    assert!(first["files"].as_u64().unwrap() >= 3, "{app:#}");
    assert!(first["build_ms"].as_f64().unwrap() > 0.0, "{app:#}");
    // The daemon's context-loading step was found and timed (a duration
    // cannot be negative: `>= 0` could never fail).
    assert!(first["transfer_ms"].as_f64().unwrap() > 0.0, "{app:#}");
    assert!(first["mib_per_s"].as_f64().unwrap() > 0.0, "{app:#}");
    // Nothing but the `.dockerignore` (5 bytes), which the Dockerfile
    // frontend loads without diffing (`llb.DiffNone`) on every build.
    assert!(app["noop_bytes_sent"].as_u64().unwrap() <= 5, "{app:#}");
    // One file edited: only it is sent again.
    let edited = app["edited_file"].as_str().unwrap();
    assert!(edited.starts_with("src/"), "{app:#}");
    let inc = &app["incremental_transfer"];
    // The edited file, and the `.dockerignore` again.
    assert!(inc["files"].as_u64().unwrap() <= 2, "{app:#}");
    assert!(
        inc["bytes"].as_u64().unwrap() < first["bytes"].as_u64().unwrap(),
        "{app:#}"
    );
    // The Docker CLI is there (scripts/engine): the comparison ran.
    let docker = &app["docker"];
    assert!(docker["error"].is_null(), "{docker:#}");
    assert!(
        docker["first_transfer"]["build_ms"].as_f64().unwrap() > 0.0,
        "{docker:#}"
    );
    assert!(
        docker["noop_build_ms"].as_f64().unwrap() > 0.0,
        "{docker:#}"
    );

    // A service that copies nothing: an empty minimal context, no edit.
    let tool = &services[1];
    assert_eq!(tool["context_files"], 0, "{tool:#}");
    assert!(tool["incremental_transfer"].is_null(), "{tool:#}");
}
