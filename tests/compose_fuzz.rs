//! Property tests (fuzzing) of the Compose loader: whatever the bytes, it
//! returns a model or an error that names the file, and never panics or
//! hangs. Two generators: Compose-shaped documents built from the keys
//! compose knows (plus junk, tags, anchors, merge keys and variables), and
//! random edits of the real files in `tests/corpus/compose`.
//!
//! `PROPTEST_CASES` sets the number of cases of each property (256 by
//! default, which keeps `cargo test` short; a fuzzing session sets more).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cbuild::compose::{load, render, yaml, LoadOptions};
use proptest::prelude::*;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/compose");

/// Loads `text` as the only Compose file of a fresh folder and checks the
/// outcome: a model renders as JSON and YAML; an error names the file.
fn check(text: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, text).unwrap();
    let opts = LoadOptions {
        cwd: dir.path().to_path_buf(),
        files: vec![file.clone()],
        environment: HashMap::from([("SET".to_string(), "value".to_string())]),
        ..Default::default()
    };
    match load(&opts) {
        Ok(project) => {
            let json = render::project_json(&project);
            prop_assert!(json.get("services").is_some());
            yaml::to_string(&render::project_yaml(&project))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        Err(e) => {
            let shown = format!("{e:#}");
            prop_assert!(!shown.is_empty());
            prop_assert!(
                shown.contains("compose.yaml") || shown.contains(&dir.path().display().to_string()),
                "error does not name the file: {shown}"
            );
        }
    }
    Ok(())
}

const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "labels",
    "ports",
    "volumes",
    "depends_on",
    "networks",
    "profiles",
    "extends",
    "healthcheck",
    "deploy",
    "secrets",
    "configs",
    "restart",
    "user",
    "shm_size",
    "extra_hosts",
    "develop",
    "post_start",
    "models",
    "<<",
    "x-ext",
    "bogus",
];
const BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "args",
    "target",
    "secrets",
    "ssh",
    "additional_contexts",
    "shm_size",
    "cache_from",
    "tags",
    "platforms",
    "labels",
    "provenance",
    "bogus",
];

/// A YAML scalar, in the forms Compose files use and misuse.
fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./:_-]{0,12}",
        Just("${SET}".to_string()),
        Just("${UNSET:-d}".to_string()),
        Just("${UNSET:?gone}".to_string()),
        Just("${".to_string()),
        Just("$$".to_string()),
        Just("~".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("0440".to_string()),
        Just("'80:80'".to_string()),
        Just("!reset".to_string()),
        Just("!override x".to_string()),
        Just("*a".to_string()),
        (0i64..100000).prop_map(|n| n.to_string()),
    ]
}

/// A YAML value in flow style: a scalar, a list or a mapping.
fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z_]{1,6}|<<|1|null", inner), 0..4).prop_map(|kv| {
                let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
}

/// A value for a known key, sometimes of the right kind.
fn keyed(keys: &'static [&'static str]) -> impl Strategy<Value = (String, String)> {
    (prop::sample::select(keys), value()).prop_map(|(k, v)| (k.to_string(), v))
}

/// A Compose-shaped document in block style.
fn document() -> impl Strategy<Value = String> {
    let service = (
        prop::collection::vec(keyed(SERVICE_KEYS), 0..6),
        prop::option::of(prop::collection::vec(keyed(BUILD_KEYS), 0..4)),
    );
    (
        prop::option::of("[a-zA-Z_ -]{0,8}"),
        prop::collection::vec(("[a-z]{1,4}", service), 0..4),
        prop::collection::vec(
            (
                prop::sample::select(
                    &[
                        "networks", "volumes", "secrets", "configs", "include", "x-a", "models",
                    ][..],
                ),
                value(),
            ),
            0..3,
        ),
    )
        .prop_map(|(name, services, top)| {
            let mut y = String::from("x-anchor: &a {image: busybox}\n");
            if let Some(n) = name {
                y += &format!("name: '{n}'\n");
            }
            for (k, v) in top {
                y += &format!("{k}: {v}\n");
            }
            y += "services:\n";
            for (name, (keys, build)) in services {
                y += &format!("  {name}:\n");
                for (k, v) in keys {
                    y += &format!("    {k}: {v}\n");
                }
                if let Some(b) = build {
                    y += "    build:\n";
                    for (k, v) in b {
                        y += &format!("      {k}: {v}\n");
                    }
                }
            }
            y
        })
}

fn corpus_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(CORPUS).unwrap() {
        let p = e.unwrap().path().join("compose.yaml");
        if p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// One edit of a file's bytes.
#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, &'static [u8]),
    Delete(usize, usize),
    Truncate(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let token: &'static [&'static [u8]] = &[
        b":",
        b"- ",
        b"\n",
        b"\n  ",
        b"\t",
        b"&a ",
        b"*a",
        b"<<: *a\n",
        b"!reset ",
        b"!override ",
        b"${",
        b"}",
        b"[",
        b"{",
        b"'",
        b"\"",
        b"\xff",
        b"\xef\xbb\xbf",
        b"---\n",
        b"? ",
        b"~",
        b"services:\n",
        b"  x:\n",
        b"1: 2\n",
        b"#",
    ];
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), prop::sample::select(token)).prop_map(|(i, t)| Edit::Insert(i, t)),
            (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
            any::<usize>().prop_map(Edit::Truncate),
        ],
        1..6,
    )
}

fn apply(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = b.len().max(1);
        match e {
            Edit::Insert(i, t) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, t.iter().copied());
            }
            Edit::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(b.len());
                if at < end {
                    b.drain(at..end);
                }
            }
            Edit::Truncate(i) => b.truncate(i % len),
        }
    }
    b
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

proptest! {
    #[test]
    fn loader_survives_compose_shaped_documents(doc in document()) {
        check(doc.as_bytes())?;
    }

    #[test]
    fn loader_survives_edited_corpus_files(
        index in any::<prop::sample::Index>(),
        edits in edits(),
    ) {
        let files = corpus_files();
        let file = index.get(&files);
        check(&apply(read(file), &edits))?;
    }

    #[test]
    fn loader_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }
}
