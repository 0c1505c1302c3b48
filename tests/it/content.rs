//! Content, not timestamps, decides what BuildKit sees as changed: the
//! reason cbuild exists.

use std::time::{Duration, SystemTime};

use crate::common::*;

fn project() -> Project {
    let p = Project::new("content");
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY src/ /src/\n")
        .file("src/data.txt", "AAAA\n")
        .file("src/other.txt", "unchanged\n")
        .file("src/sub/deep.txt", "deep\n");
    p
}

/// Removes cbuild's records of past builds (not the content clock), so
/// the next build runs a solve.
fn forget_builds(p: &Project) {
    let _ = std::fs::remove_dir_all(p.cache.path().join("builds"));
}

#[test]
fn same_size_edit_with_mtime_restored_reaches_the_image() {
    let p = project();
    build_json(&p, &[]);
    assert_eq!(run_in(&p.image("app"), "cat /src/data.txt"), "AAAA\n");

    let f = p.path().join("src/data.txt");
    let before = mtime(&f);
    std::fs::write(&f, "BBBB\n").unwrap();
    set_mtime(&f, before);
    assert_eq!(mtime(&f), before);
    let fin = build_json(&p, &[]);
    assert_eq!(run_in(&p.image("app"), "cat /src/data.txt"), "BBBB\n");
    // Only the changed file was transferred.
    assert_eq!(fin["context_files_sent"], 1, "{fin}");
    assert_eq!(fin["context_bytes_sent"], 5, "{fin}");
}

#[test]
fn touching_every_file_sends_nothing_and_keeps_the_image() {
    let p = project();
    build_json(&p, &[]);
    let id = image_id(&p.image("app"));
    let later = SystemTime::now() + Duration::from_secs(3600);
    for f in [
        "src/data.txt",
        "src/other.txt",
        "src/sub/deep.txt",
        "Dockerfile",
        "compose.yaml",
    ] {
        set_mtime(&p.path().join(f), later);
    }
    let fin = build_json(&p, &[]);
    assert_eq!(fin["context_files_sent"], 0, "{fin}");
    assert_eq!(fin["context_bytes_sent"], 0, "{fin}");
    assert_eq!(image_id(&p.image("app")), id);
}

#[test]
fn a_fresh_copy_of_the_tree_sends_nothing_and_keeps_the_image() {
    let p = project();
    build_json(&p, &[]);
    let id = image_id(&p.image("app"));
    // Recreate every file: new inodes, new timestamps, same content.
    for f in ["src/data.txt", "src/other.txt", "src/sub/deep.txt"] {
        let path = p.path().join(f);
        let data = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        std::fs::write(&path, data).unwrap();
    }
    forget_builds(&p);
    let fin = build_json(&p, &[]);
    assert_eq!(fin["up_to_date"], false, "{fin}");
    assert_eq!(fin["context_files_sent"], 0, "{fin}");
    assert_eq!(image_id(&p.image("app")), id);
}

#[test]
fn mode_rename_delete_add_and_symlink_changes_reach_the_image() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let p = project();
    symlink("data.txt", p.path().join("src/link")).unwrap();
    build_json(&p, &[]);
    let img = p.image("app");
    assert_eq!(run_in(&img, "readlink /src/link"), "data.txt\n");

    // Mode only.
    let f = p.path().join("src/other.txt");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    build_json(&p, &[]);
    assert_eq!(run_in(&img, "stat -c %a /src/other.txt"), "755\n");

    // Symlink retargeted.
    std::fs::remove_file(p.path().join("src/link")).unwrap();
    symlink("other.txt", p.path().join("src/link")).unwrap();
    // Renamed, deleted, added.
    std::fs::rename(
        p.path().join("src/sub/deep.txt"),
        p.path().join("src/sub/renamed.txt"),
    )
    .unwrap();
    std::fs::remove_file(p.path().join("src/data.txt")).unwrap();
    p.file("src/new.txt", "new\n");
    build_json(&p, &[]);
    assert_eq!(run_in(&img, "readlink /src/link"), "other.txt\n");
    assert_eq!(
        run_in(&img, "cd /src && find . | sort"),
        ".\n./link\n./new.txt\n./other.txt\n./sub\n./sub/renamed.txt\n"
    );
}

#[test]
fn an_edit_inside_a_reincluded_directory_reaches_the_image() {
    let p = Project::new("reincluded");
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY . /ctx/\n")
        .file(".dockerignore", "docs\n!docs/keep.md\n")
        .file("docs/keep.md", "version-1\n")
        .file("docs/drop.md", "dropped\n");
    build_json(&p, &[]);
    let img = p.image("app");
    assert_eq!(
        run_in(&img, "cat /ctx/docs/keep.md; ls /ctx/docs"),
        "version-1\nkeep.md\n"
    );
    let f = p.path().join("docs/keep.md");
    let before = mtime(&f);
    std::fs::write(&f, "version-2\n").unwrap();
    set_mtime(&f, before);
    build_json(&p, &[]);
    assert_eq!(run_in(&img, "cat /ctx/docs/keep.md"), "version-2\n");
}

#[test]
fn only_what_the_dockerfile_copies_is_read_and_sent() {
    let p = Project::new("nodemodules");
    p.file("compose.yaml", "services:\n  web:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY src/ /app/src/\n")
        .file("src/index.js", "console.log('hi');\n")
        .file("src/lib/util.js", "module.exports = {};\n");
    // About 100 MB of node_modules, in big and small files.
    let big = vec![b'x'; 4 << 20];
    for i in 0..24 {
        let d = p.path().join(format!("node_modules/pkg{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("bundle.js"), &big).unwrap();
        for j in 0..50 {
            std::fs::write(d.join(format!("f{j}.js")), "small\n").unwrap();
        }
    }
    let src_bytes = ("console.log('hi');\n".len() + "module.exports = {};\n".len()) as u64;
    let fin = build_json(&p, &[]);
    assert_eq!(fin["context_files_sent"], 2, "{fin}");
    assert_eq!(fin["context_bytes_sent"], src_bytes, "{fin}");
    assert_eq!(fin["files_hashed"], 2, "{fin}");
    assert_eq!(fin["bytes_hashed"], src_bytes, "{fin}");
    assert_eq!(
        run_in(&p.image("web"), "find /app | sort"),
        "/app\n/app/src\n/app/src/index.js\n/app/src/lib\n/app/src/lib/util.js\n"
    );
    // Unchanged: nothing read, nothing sent, no solve.
    let fin = build_json(&p, &[]);
    assert_eq!(fin["up_to_date"], true, "{fin}");
    assert_eq!(fin["context_files_sent"], 0, "{fin}");
    assert_eq!(fin["files_hashed"], 0, "{fin}");
    assert_eq!(fin["hash_cache_hits"], 2, "{fin}");
}

#[test]
fn tar_transport_gives_the_same_image_and_the_same_guarantees() {
    let p = project();
    p.file(".dockerignore", "**/*.log\n")
        .file("src/skip.log", "ignored\n");
    let fin = build_json(&p, &[]);
    let filesync_id = fin["image_id"].as_str().unwrap().to_string();
    for transport in ["tar", "tar.gz"] {
        let fin = build_json(&p, &["--transport", transport]);
        assert_eq!(fin["image_id"], filesync_id.as_str(), "{transport}: {fin}");
        assert!(fin["context_bytes_sent"].as_u64().unwrap() > 0, "{fin}");
    }
    assert_eq!(
        run_in(&p.image("app"), "ls /src"),
        "data.txt\nother.txt\nsub\n"
    );

    // Same-size edit, mtime restored: reaches the image through the archive.
    let f = p.path().join("src/data.txt");
    let before = mtime(&f);
    std::fs::write(&f, "CCCC\n").unwrap();
    set_mtime(&f, before);
    let edited = build_json(&p, &["--transport", "tar"]);
    assert_eq!(run_in(&p.image("app"), "cat /src/data.txt"), "CCCC\n");
    // A touch changes nothing: same archive bytes, same image.
    set_mtime(&f, SystemTime::now() + Duration::from_secs(60));
    let touched = build_json(&p, &["--transport", "tar"]);
    assert_eq!(touched["image_id"], edited["image_id"]);
}

#[test]
fn tar_transport_sends_only_what_the_dockerfile_uses() {
    let p = Project::new("tarminimal");
    p.file("compose.yaml", "services:\n  web:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY src/ /app/src/\n")
        .file("src/index.js", "console.log(1);\n");
    let big = vec![b'x'; 8 << 20];
    std::fs::create_dir_all(p.path().join("node_modules/pkg")).unwrap();
    std::fs::write(p.path().join("node_modules/pkg/bundle.js"), &big).unwrap();
    let fin = build_json(&p, &["--transport", "tar"]);
    let sent = fin["context_bytes_sent"].as_u64().unwrap();
    assert!(
        sent < 64 * 1024,
        "the archive carried node_modules: {sent} bytes"
    );
    assert_eq!(fin["files_hashed"], 1, "{fin}");
    assert_eq!(
        run_in(&p.image("web"), "find /app | sort"),
        "/app\n/app/src\n/app/src/index.js\n"
    );
}

/// 20,000 small files in one context: the daemon sends one tiny REQ per
/// file, and the session must read them as fast as they come (h2 closes a
/// connection that leaves too many small DATA frames unread).
#[test]
fn a_context_of_twenty_thousand_small_files_transfers() {
    let p = Project::new("manyfiles");
    p.file("compose.yaml", "services:\n  fe:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY . /app\n");
    for i in 0..400 {
        let d = p.path().join(format!("node_modules/pkg{i}/lib"));
        std::fs::create_dir_all(&d).unwrap();
        for j in 0..50 {
            std::fs::write(d.join(format!("f{j}.js")), "x".repeat(100 + j)).unwrap();
        }
    }
    let fin = build_json(&p, &[]);
    assert_eq!(fin["context_files_sent"], 20_002, "{fin}");
    assert_eq!(
        run_in(&p.image("fe"), "find /app -type f | wc -l"),
        "20002\n"
    );
}

/// A unix socket in the context (a dev server's, say) is sent as an empty
/// file, as `docker build` does, instead of failing the build.
#[test]
fn a_socket_in_the_context_does_not_fail_the_build() {
    let p = Project::new("socket");
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", "FROM cbuild-base\nCOPY . /ctx/\n")
        .file("tmp/keep.txt", "keep\n");
    let _l = std::os::unix::net::UnixListener::bind(p.path().join("tmp/dev.sock")).unwrap();
    let fin = build_json(&p, &[]);
    assert!(fin["image_id"].is_string(), "{fin}");
    assert_eq!(
        run_in(
            &p.image("app"),
            "cat /ctx/tmp/keep.txt; test -e /ctx/tmp/dev.sock && echo sock"
        ),
        "keep\nsock\n"
    );
    // And the no-op check copes with it too.
    assert_eq!(build_json(&p, &[])["up_to_date"], true);
}

/// After an interrupted build the clock starts a new generation: BuildKit's
/// copy may hold content cbuild never recorded.
#[test]
fn an_interrupted_build_forgets_the_clock_state() {
    let p = project();
    build_json(&p, &[]);
    let clock_dir = p.cache.path().join("clock");
    assert_eq!(std::fs::read_dir(&clock_dir).unwrap().count(), 1);
    p.file(
        "Dockerfile",
        "FROM cbuild-base\nCOPY src/ /src/\nRUN sleep 30\n",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cbuild"))
        .current_dir(p.path())
        .env("DOCKER_HOST", docker_host())
        .env("CBUILD_CACHE_DIR", p.cache.path())
        .args(["-p", &p.name, "--progress", "plain"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the daemon runs the step, i.e. after the transfer.
    let progress = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    for line in std::io::BufRead::lines(progress).map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("RUN sleep 30") {
            break;
        }
    }
    assert!(seen.contains("RUN sleep 30"), "{seen}");
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let left: Vec<_> = std::fs::read_dir(&clock_dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "the clock state survived an interrupted build: {left:?}"
    );
}
