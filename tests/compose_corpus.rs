//! Differential test of cbuild's Compose loader against `docker compose
//! config` (v2.40.3; `scripts/corpus-expect` regenerates the expected
//! files), over the corpus in `tests/corpus/compose`.
//!
//! Every case runs `cbuild <compose_args> config --format json` with the
//! case's environment, in a copy of its folder (so nothing is written into
//! the corpus and the folder keeps its name, which is the project name).
//! A case passes when the whole printed model equals `expected.json` as
//! data — or, for a case with `expected.err`, when cbuild refuses it too
//! (exit 2, an `error:` line). No Docker is needed.
//!
//! [`KNOWN_FAILURES`] lists the cases where cbuild deliberately differs and
//! why; the test fails if one of them starts passing, so the table stays
//! honest.

// The per-case report is the point of this test.
#![allow(clippy::print_stderr)]

use std::io::Read;

use cbuild::compose::yaml;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/compose");

/// Cases where cbuild deliberately differs from compose, with the reason.
const KNOWN_FAILURES: &[(&str, &str)] = &[
    (
        "compose-e2e__build-ssh",
        "compose (2.26.1 and 2.40.3) cannot marshal `build.ssh` `id=path` to JSON (exit 1, README \
         surprise 1); cbuild prints the valid model instead of copying the bug",
    ),
    (
        "compose-go__build-ssh-map",
        "same JSON marshal bug of compose for `build.ssh` in map form",
    ),
    (
        "compose-go__build-ssh-list",
        "same JSON marshal bug of compose for `build.ssh` `id=path` list entries",
    ),
];

struct Case {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// Splits shell words: blanks separate, single and double quotes group.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

fn cases() -> Vec<Case> {
    let tsv = std::fs::read_to_string(Path::new(CORPUS).join("CASES.tsv"))
        .expect("the corpus is at tests/corpus/compose");
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_case, c_args, c_env) = (col("case"), col("compose_args"), col("env"));
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or_default();
            Case {
                name: get(c_case).to_string(),
                args: shell_words(get(c_args)),
                env: shell_words(get(c_env))
                    .into_iter()
                    .filter_map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                    })
                    .collect(),
            }
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Runs `cbuild <args> config --format <format>` for a case in `dir`:
/// its exit status, stdout and stderr.
fn config(
    case: &Case,
    dir: &Path,
    format: &str,
) -> Result<(std::process::ExitStatus, Vec<u8>, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cbuild"))
        .args(&case.args)
        .args(["config", "--format", format])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/home/cbuild-corpus")
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the pipes while waiting, so a large output cannot block cbuild.
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    // A loader bug must fail this case, not hang the whole test.
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err("cbuild did not finish within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().unwrap();
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    Ok((
        status,
        stdout,
        String::from_utf8_lossy(&stderr).into_owned(),
    ))
}

/// Runs one case: `Ok` when cbuild's whole `config --format json` model,
/// and its `--format yaml` one, equal compose's as data (or cbuild fails
/// where compose does), else what differs: the name, the services, `image`
/// and `build` first, as the parts a build depends on, then every other
/// path that differs.
fn run(case: &Case) -> Result<(), String> {
    let src = Path::new(CORPUS).join(&case.name);
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join(&case.name);
    copy_dir(&src, &dir);
    let (status, stdout, stderr) = config(case, &dir, "json")?;
    if src.join("expected.err").exists() {
        // Bad input is exit 2 with an `error:` line, never a panic.
        return match status.code() {
            Some(0) => Err("compose fails but cbuild succeeded".into()),
            Some(2) if stderr.starts_with("error: ") => Ok(()),
            _ => Err(format!(
                "compose fails; cbuild failed with {status} instead of exit 2 and an error: {}",
                stderr.trim()
            )),
        };
    }
    if !status.success() {
        return Err(format!("cbuild failed: {}", stderr.trim()));
    }
    let expected = std::fs::read_to_string(src.join("expected.json"))
        .unwrap()
        .replace("${CASE_DIR}", &dir.to_string_lossy());
    let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
    let actual: serde_json::Value =
        serde_json::from_slice(&stdout).map_err(|e| format!("cbuild printed no JSON: {e}"))?;
    if expected["name"] != actual["name"] {
        return Err(format!(
            "name: expected {}, got {}",
            expected["name"], actual["name"]
        ));
    }
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["services"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    if names(&expected) != names(&actual) {
        return Err(format!(
            "services: expected {:?}, got {:?}",
            names(&expected),
            names(&actual)
        ));
    }
    for name in names(&expected) {
        for key in ["image", "build"] {
            let e = &expected["services"][&name][key];
            let a = &actual["services"][&name][key];
            if e != a {
                return Err(format!("services.{name}.{key}: expected {e}, got {a}"));
            }
        }
    }
    let mut rest = Vec::new();
    diff_paths("", &expected, &actual, &mut rest);
    if !rest.is_empty() {
        return Err(format!("model differs at {}", rest.join("; ")));
    }
    // compose's YAML (its default format) is a model of its own: extensions
    // kept, empty values left out.
    let expected = std::fs::read_to_string(src.join("expected.yaml"))
        .unwrap()
        .replace("${CASE_DIR}", &dir.to_string_lossy());
    let (status, stdout, stderr) = config(case, &dir, "yaml")?;
    if !status.success() {
        return Err(format!("cbuild failed on --format yaml: {}", stderr.trim()));
    }
    let data = |text: &str| -> Result<serde_json::Value, String> {
        let v: yaml::Value = yaml::from_str(text).map_err(|e| e.to_string())?;
        serde_json::to_value(v).map_err(|e| e.to_string())
    };
    let expected = data(&expected).unwrap();
    let actual = data(&String::from_utf8_lossy(&stdout))
        .map_err(|e| format!("cbuild printed no YAML: {e}"))?;
    let mut rest = Vec::new();
    diff_paths("", &expected, &actual, &mut rest);
    if !rest.is_empty() {
        return Err(format!("YAML model differs at {}", rest.join("; ")));
    }
    Ok(())
}

/// The JSON paths where `a` and `b` differ, for the per-case report.
fn diff_paths(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                let (va, vb) = (x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null));
                diff_paths(&format!("{at}.{k}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_paths(&format!("{at}[{i}]"), va, vb, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{at}: expected {a}, got {b}")),
    }
}

#[test]
fn corpus_matches_docker_compose() {
    let cases = cases();
    assert!(cases.len() >= 100, "only {} cases found", cases.len());
    let mut unexpected = Vec::new();
    let mut passed = 0;
    for case in &cases {
        let result = run(case);
        let known = KNOWN_FAILURES.iter().find(|(n, _)| *n == case.name);
        match (&result, known) {
            (Ok(()), None) => passed += 1,
            (Ok(_), Some(_)) => unexpected.push(format!(
                "{}: passes now; remove it from KNOWN_FAILURES",
                case.name
            )),
            (Err(e), None) => unexpected.push(format!("{}: {e}", case.name)),
            (Err(_), Some((_, why))) => eprintln!("known failure {}: {why}", case.name),
        }
    }
    for (name, _) in KNOWN_FAILURES {
        assert!(
            cases.iter().any(|c| c.name == *name),
            "KNOWN_FAILURES names `{name}`, which is not in the corpus"
        );
    }
    eprintln!(
        "{passed} of {} corpus cases agree with compose 2.40.3 (whole model), {} deliberate divergences",
        cases.len(),
        KNOWN_FAILURES.len()
    );
    assert!(
        unexpected.is_empty(),
        "{} cases disagree with compose:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
