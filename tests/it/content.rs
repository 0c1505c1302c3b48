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
    let fin = build_json(&p, &[]);
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
