//! A table of tricky `.dockerignore` files and trees: for each, the files
//! inside the image cbuild builds equal those `docker buildx build` puts
//! there, compared by path, type, mode and content.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::common::*;

struct Case {
    name: &'static str,
    /// `.dockerignore` contents, if any.
    ignore: Option<&'static str>,
    /// `app.Dockerfile.dockerignore` contents: the case then builds with
    /// `dockerfile: app.Dockerfile`.
    dockerfile_ignore: Option<&'static str>,
    /// The COPY lines (the Dockerfile is `FROM cbuild-base` + these).
    copy: &'static str,
    /// Extra setup beyond the common tree.
    setup: fn(&Path),
}

fn w(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn chmod(root: &Path, rel: &str, mode: u32) {
    std::fs::set_permissions(root.join(rel), std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The tree every case starts from.
fn common_tree(root: &Path) {
    w(root, "src/main.rs", "fn main() {}\n");
    w(root, "src/lib/util.rs", "pub fn u() {}\n");
    w(root, "src/lib/util.tmp", "tmp\n");
    w(root, "README.md", "# readme\n");
    w(root, "app.log", "log line\n");
    w(root, "logs/today.log", "today\n");
    w(root, "docs/guide.md", "guide\n");
    w(root, "docs/api/ref.md", "ref\n");
    w(root, "docs/api/ref.html", "<p>ref</p>\n");
    w(root, "build/out.bin", "binary\n");
    w(root, "build/keep.txt", "keep me\n");
    w(
        root,
        "node_modules/left-pad/index.js",
        "module.exports = 1;\n",
    );
    w(root, "node_modules/left-pad/package.json", "{}\n");
    w(root, ".git/HEAD", "ref: refs/heads/main\n");
    w(root, "config/app.local", "local\n");
    w(root, "config/app.yaml", "yaml\n");
    w(root, "a.txt", "a\n");
    w(root, "b.txt", "b\n");
    w(root, "ax.txt", "ax\n");
    w(root, "bx.txt", "bx\n");
    w(root, "secret.txt", "s3cret\n");
    w(root, "sub/secret.txt", "not so secret\n");
    w(root, "package.json", "{\"name\":\"x\"}\n");
    w(root, "tsconfig.json", "{}\n");
}

fn none(_: &Path) {}

const CASES: &[Case] = &[
    Case {
        name: "no-ignore-file",
        ignore: None,
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "extension",
        ignore: Some("*.log\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "directory",
        ignore: Some("node_modules\n.git\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "double-star-nested",
        ignore: Some("**/*.tmp\n**/*.log\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "exception-inside-excluded-dir",
        ignore: Some("build\n!build/keep.txt\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "exclude-all-reinclude-src",
        ignore: Some("*\n!src\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "docs-keep-markdown",
        ignore: Some("docs/**\n!docs/**/*.md\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "comments-and-blanks",
        ignore: Some("# a comment\n\n   \n*.md\n# !README.md\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "leading-slash",
        ignore: Some("/secret.txt\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "dot-slash",
        ignore: Some("./config/*.local\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "question-mark",
        ignore: Some("?.txt\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "character-class",
        ignore: Some("[ab].txt\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "negated-class",
        ignore: Some("[^a]x.txt\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "escaped-star",
        ignore: Some("\\*star\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: |r| {
            w(r, "*star", "literal star\n");
            w(r, "xstar", "x\n");
        },
    },
    Case {
        name: "trailing-slash-and-spaces",
        ignore: Some("logs/   \ndocs/api/  \n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "everything-but",
        ignore: Some("**\n!Dockerfile\n!src/**\n!package.json\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "deep-exception",
        ignore: Some("deep/a/b\n!deep/a/b/c/d.txt\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: |r| {
            w(r, "deep/a/b/c/d.txt", "d\n");
            w(r, "deep/a/b/c/e.txt", "e\n");
            w(r, "deep/a/f.txt", "f\n");
        },
    },
    Case {
        name: "dockerfile-specific-wins",
        ignore: Some("src\n"),
        dockerfile_ignore: Some("docs\n*.log\n"),
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "odd-file-names",
        ignore: Some("with space/skip me.txt\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: |r| {
            w(r, "with space/keep me.txt", "k\n");
            w(r, "with space/skip me.txt", "s\n");
            w(r, "unicodé/été.txt", "été\n");
            w(r, "-dash.txt", "dash\n");
            w(r, "#hash.txt", "hash\n");
            w(r, "semi;colon.txt", "semi\n");
        },
    },
    Case {
        name: "unicode-patterns",
        ignore: Some("unicodé/été.txt\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: |r| {
            w(r, "unicodé/été.txt", "été\n");
            w(r, "unicodé/hiver.txt", "hiver\n");
        },
    },
    Case {
        name: "symlinks",
        ignore: None,
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: |r| {
            symlink("src/main.rs", r.join("link-to-file")).unwrap();
            symlink("src", r.join("link-to-dir")).unwrap();
            symlink("does-not-exist", r.join("dangling")).unwrap();
            symlink("/etc/passwd", r.join("absolute")).unwrap();
        },
    },
    Case {
        name: "empty-directories",
        ignore: Some("empty-ignored\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: |r| {
            std::fs::create_dir_all(r.join("empty/inner")).unwrap();
            std::fs::create_dir_all(r.join("empty-ignored")).unwrap();
        },
    },
    Case {
        name: "modes",
        ignore: None,
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: |r| {
            w(r, "bin/tool", "#!/bin/sh\n");
            chmod(r, "bin/tool", 0o755);
            w(r, "private.key", "k\n");
            chmod(r, "private.key", 0o600);
            chmod(r, "docs", 0o700);
            w(r, "suid", "x\n");
            chmod(r, "suid", 0o4755);
        },
    },
    Case {
        name: "hard-links",
        ignore: None,
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: |r| {
            w(r, "hl/one", "same inode\n");
            std::fs::hard_link(r.join("hl/one"), r.join("hl/two")).unwrap();
        },
    },
    Case {
        name: "ignore-ignores-itself-and-dockerfile",
        ignore: Some(".dockerignore\nDockerfile\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: none,
    },
    Case {
        name: "cache-exception-any-depth",
        ignore: Some("**/cache\n!**/cache/keep\n"),
        dockerfile_ignore: None,
        copy: "COPY . /ctx/",
        setup: |r| {
            w(r, "cache/x", "x\n");
            w(r, "cache/keep", "k1\n");
            w(r, "p/q/cache/y", "y\n");
            w(r, "p/q/cache/keep", "k2\n");
        },
    },
    Case {
        name: "copy-subdir-only",
        ignore: None,
        dockerfile_ignore: None,
        copy: "COPY src/ /ctx/src/",
        setup: none,
    },
    Case {
        name: "copy-wildcard",
        ignore: Some("tsconfig.json\n"),
        dockerfile_ignore: None,
        copy: "COPY *.json /ctx/",
        setup: none,
    },
    Case {
        name: "copy-several-with-ignore",
        ignore: Some("**/*.tmp\n"),
        dockerfile_ignore: None,
        copy: "COPY src /ctx/src\nCOPY docs/api /ctx/api\nCOPY README.md /ctx/",
        setup: none,
    },
];

fn docker_buildx(dir: &Path, dockerfile: &str, tag: &str) {
    let out = Command::new("docker")
        .current_dir(dir)
        .env("DOCKER_HOST", docker_host())
        .args(["buildx", "build", "-q", "-f", dockerfile, "-t", tag, "."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker buildx build failed: {}",
        stderr(&out)
    );
}

fn ctx_files(image: &str) -> std::collections::BTreeMap<String, FsEntry> {
    image_files(image)
        .into_iter()
        .filter(|(k, _)| k == "ctx" || k.starts_with("ctx/"))
        .collect()
}

#[test]
fn image_contents_match_docker_buildx_for_tricky_ignore_files() {
    assert!(CASES.len() >= 25);
    let mut failures = Vec::new();
    for case in CASES {
        let p = Project::new(&format!("ign-{}", case.name));
        let root = p.path();
        common_tree(root);
        (case.setup)(root);
        let dockerfile_text = format!("FROM cbuild-base\n{}\n", case.copy);
        let dockerfile = if let Some(di) = case.dockerfile_ignore {
            w(root, "app.Dockerfile", &dockerfile_text);
            w(root, "app.Dockerfile.dockerignore", di);
            "app.Dockerfile"
        } else {
            w(root, "Dockerfile", &dockerfile_text);
            "Dockerfile"
        };
        if let Some(i) = case.ignore {
            w(root, ".dockerignore", i);
        }
        w(
            root,
            "compose.yaml",
            &format!(
                "services:\n  app:\n    build:\n      context: .\n      dockerfile: {dockerfile}\n"
            ),
        );
        let out = p.cbuild(&["build"]);
        if !out.status.success() {
            failures.push(format!("{}: cbuild failed: {}", case.name, stderr(&out)));
            continue;
        }
        let theirs_tag = format!("{}-buildx", p.name);
        docker_buildx(root, dockerfile, &theirs_tag);
        let ours = ctx_files(&p.image("app"));
        let theirs = ctx_files(&theirs_tag);
        let _ = docker(&["rmi", "-f", &theirs_tag]);
        if ours.len() < 2 {
            failures.push(format!(
                "{}: the image holds almost nothing under /ctx: {ours:?}",
                case.name
            ));
        }
        if ours != theirs {
            let only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
            let only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
            let differ: Vec<_> = ours
                .iter()
                .filter(|(k, v)| theirs.get(*k).is_some_and(|t| t != *v))
                .map(|(k, v)| format!("{k}: {v:?} vs {:?}", theirs[k]))
                .collect();
            failures.push(format!(
                "{}: only cbuild {only_ours:?}; only buildx {only_theirs:?}; differ {differ:?}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
