//! `cbuild why`: the steps it predicts to re-run are the steps BuildKit then runs, on the
//! example project and on Dockerfiles of several shapes; `--last` and `--advise`.

use std::collections::BTreeSet;

use crate::common::*;

/// The step prefix of a BuildKit step name (`build 2/5` of `[build 2/5] RUN x`), for
/// numbered steps other than `FROM` (BuildKit shares one `FROM` vertex between stages
/// with the same base, so only one of them is reported).
fn numbered(name: &str) -> Option<String> {
    let inner = name.strip_prefix('[')?;
    let (prefix, rest) = inner.split_once(']')?;
    if !prefix.contains('/') || rest.trim_start().starts_with("FROM ") {
        return None;
    }
    Some(prefix.trim().to_string())
}

/// `cbuild why --format json ARGS`, asserting success: the reports.
fn why_json(p: &Project, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["why", "--format", "json"];
    full.extend_from_slice(args);
    let out = p.cbuild(&full);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// `cbuild why --format json SERVICE`: the steps predicted to run; asserts nothing is
/// "cannot tell".
fn predicted(p: &Project, service: &str) -> (BTreeSet<String>, serde_json::Value) {
    predicted_with(p, service, &[])
}

/// [`predicted`] with more `why` arguments (`--build-arg`…).
fn predicted_with(
    p: &Project,
    service: &str,
    extra: &[&str],
) -> (BTreeSet<String>, serde_json::Value) {
    let mut args = extra.to_vec();
    args.push(service);
    let report = why_json(p, &args)[0].clone();
    let steps = report["steps"].as_array().unwrap();
    assert!(
        steps.iter().all(|s| s["verdict"] != "cannot-tell"),
        "{report:#}"
    );
    let runs = steps
        .iter()
        .filter(|s| {
            s["verdict"] == "runs" && !s["instruction"].as_str().unwrap().starts_with("FROM ")
        })
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    (runs, report)
}

/// Builds `service` and returns the numbered steps BuildKit ran (not cached).
fn ran(p: &Project, service: &str) -> BTreeSet<String> {
    ran_with(p, service, &[])
}

/// [`ran`] with more `build` arguments.
fn ran_with(p: &Project, service: &str, extra: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["--progress", "json", "build"];
    args.extend_from_slice(extra);
    args.push(service);
    let out = p.cbuild(&args);
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        stdout(&out)
            .lines()
            .filter(|l| l.contains("\"error\""))
            .collect::<Vec<_>>()
            .join("\n")
    );
    last_steps(&out)
        .values()
        .filter(|e| e["cached"] == false && e["completed_ms"].is_number())
        .filter_map(|e| numbered(e["name"].as_str().unwrap()))
        .collect()
}

/// Predicts, builds and compares; returns the prediction's report.
fn check(p: &Project, service: &str) -> serde_json::Value {
    let (want, report) = predicted(p, service);
    let got = ran(p, service);
    assert_eq!(
        want, got,
        "predicted (left) vs run by BuildKit (right):\n{report:#}"
    );
    report
}

/// File contents unique to the test run: BuildKit keeps results across runs, and a step
/// whose inputs an earlier run already built is taken from the cache.
fn u(p: &Project, text: &str) -> String {
    format!("{text}{}\n", p.name)
}

fn containerd_store() -> bool {
    docker_ok(&["info", "--format", "{{json .DriverStatus}}"]).contains("io.containerd.snapshotter")
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn single_stage_edits_rerun_from_the_copy_that_reads_them() {
    let p = Project::new("why-single");
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file(
            "Dockerfile",
            "FROM cbuild-base\nWORKDIR /app\nCOPY package.json ./\nRUN cat package.json > deps\nCOPY src/ ./src/\nRUN cat src/* > out\nLABEL a=b\n",
        )
        .file("package.json", &u(&p, "{}\n"))
        .file("src/a.txt", &u(&p, "a\n"))
        .file("notes.md", &u(&p, "not sent\n"));
    p.build_ok(&["build"]);

    p.file("src/a.txt", &u(&p, "a2\n"));
    let report = check(&p, "app");
    assert_eq!(report["state"], "stale");
    assert_eq!(report["changes"][0]["line"], 5, "{report:#}");
    assert_eq!(report["changes"][0]["files"][0]["path"], "src/a.txt");

    p.file("package.json", &u(&p, "{\"v\": 2}\n"));
    let (want, _) = predicted(&p, "app");
    assert_eq!(want, set(&["3/6", "4/6", "5/6", "6/6"]));
    assert_eq!(ran(&p, "app"), want);

    // A Dockerfile edit in the middle re-runs from the edited line; a label edit re-runs
    // nothing.
    p.file(
        "Dockerfile",
        "FROM cbuild-base\nWORKDIR /app\nCOPY package.json ./\nRUN cat package.json > deps\nCOPY src/ ./src/\nRUN cat src/* > out && echo 2\nLABEL a=c\n",
    );
    let report = check(&p, "app");
    assert_eq!(report["steps"][4]["verdict"], "cached", "{report:#}");
    assert_eq!(report["steps"][5]["verdict"], "runs", "{report:#}");
    p.file(
        "Dockerfile",
        "FROM cbuild-base\nWORKDIR /app\nCOPY package.json ./\nRUN cat package.json > deps\nCOPY src/ ./src/\nRUN cat src/* > out && echo 2\nLABEL a=d\n",
    );
    let (want, _) = predicted(&p, "app");
    assert!(want.is_empty(), "{want:?}");
    assert_eq!(ran(&p, "app"), want);
}

#[test]
fn multi_stage_copy_from_propagates_and_unreached_stages_do_not_run() {
    let p = Project::new("why-multi");
    p.file(
        "compose.yaml",
        "services:\n  app:\n    build:\n      context: .\n      target: final\n",
    )
    .file(
        "Dockerfile",
        "FROM cbuild-base AS deps\nCOPY lock.txt /deps/\nRUN cat /deps/lock.txt > /deps.out\n\
         FROM cbuild-base AS build\nWORKDIR /src\nCOPY src/ ./\nRUN cat *.txt > /out.txt\n\
         FROM cbuild-base AS docs\nCOPY src/ /docs/\nRUN ls /docs > /index\n\
         FROM deps AS final\nCOPY --from=build /out.txt /out.txt\nRUN cat /out.txt /deps.out > /final\n\
         FROM final AS extra\nRUN echo never\n",
    )
    .file("lock.txt", &u(&p, "v1\n"))
    .file("src/a.txt", &u(&p, "a\n"));
    p.build_ok(&["build"]);

    p.file("src/a.txt", &u(&p, "a2\n"));
    let report = check(&p, "app");
    let steps = report["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .filter(|s| s["stage"] == "docs" || s["stage"] == "extra")
            .all(|s| s["verdict"] == "not-reached"),
        "{report:#}"
    );

    // The base stage re-runs: the stage built on it does too.
    p.file("lock.txt", &u(&p, "v2\n"));
    let (want, _) = predicted(&p, "app");
    assert_eq!(
        want,
        set(&["deps 2/3", "deps 3/3", "final 1/2", "final 2/2"])
    );
    assert_eq!(ran(&p, "app"), want);
}

#[test]
fn bind_mounts_and_named_contexts_are_read_like_copies() {
    let p = Project::new("why-mounts");
    p.file(
        "compose.yaml",
        "services:\n  app:\n    build:\n      context: .\n      additional_contexts:\n        assets: ./assets-dir\n",
    )
    .file(
        "Dockerfile",
        "FROM cbuild-base\nRUN --mount=type=bind,source=tools,target=/t cat /t/tool.sh > /tool\nCOPY --from=assets logo.txt /logo\nCOPY app.txt /app\nRUN cat /app /logo > /all\n",
    )
    .file("tools/tool.sh", &u(&p, "echo 1\n"))
    .file("app.txt", &u(&p, "app\n"))
    .file("assets-dir/logo.txt", &u(&p, "logo\n"));
    p.build_ok(&["build"]);

    p.file("tools/tool.sh", &u(&p, "echo 2\n"));
    let (want, _) = predicted(&p, "app");
    assert_eq!(
        want,
        set(&["stage-0 2/5", "stage-0 3/5", "stage-0 4/5", "stage-0 5/5"])
    );
    assert_eq!(ran(&p, "app"), want);

    p.file("assets-dir/logo.txt", &u(&p, "logo 2\n"));
    let report = check(&p, "app");
    assert_eq!(
        report["changes"][0]["source"], "context assets",
        "{report:#}"
    );
    assert_eq!(report["changes"][0]["line"], 3, "{report:#}");

    p.file("app.txt", &u(&p, "app 2\n"));
    let (want, _) = predicted(&p, "app");
    assert_eq!(want, set(&["stage-0 4/5", "stage-0 5/5"]));
    assert_eq!(ran(&p, "app"), want);
}

#[test]
fn a_changed_base_image_reruns_its_stage_and_a_changed_arg_its_runs() {
    let p = Project::new("why-base");
    let base = format!("{}-base:latest", p.name);
    docker_ok(&["tag", "cbuild-base:latest", &base]);
    p.file(
        "compose.yaml",
        &format!("services:\n  app:\n    build:\n      context: .\n      args:\n        V: one\n    image: {}-app\n", p.name),
    )
    .file(
        "Dockerfile",
        &format!("FROM cbuild-base AS tools\nCOPY t.txt /t\nRUN cat /t > /tools\nFROM {base}\nCOPY --from=tools /tools /tools\nARG V\nCOPY app.txt /app\nRUN echo $V > /v\n"),
    )
    .file("t.txt", &u(&p, "t\n"))
    .file("app.txt", &u(&p, "app\n"));
    p.build_ok(&["build"]);

    // Another image under the base's name, with the same layers and another environment:
    // only the RUN on it re-runs.
    let commit = |run: &[&str], change: &str| {
        let c = format!("{}-c", p.name);
        let mut args = vec!["run", "--name", c.as_str(), "cbuild-base:latest"];
        args.extend_from_slice(run);
        docker_ok(&args);
        docker_ok(&["commit", "--change", change, &c, &base]);
        let _ = docker(&["rm", &c]);
    };
    // On the containerd image store BuildKit re-runs every step on an image with a new ID.
    commit(&["true"], "ENV WHY=1");
    let (want, _) = predicted(&p, "app");
    if containerd_store() {
        assert_eq!(want, set(&["stage-1 2/4", "stage-1 3/4", "stage-1 4/4"]));
    } else {
        assert_eq!(want, set(&["stage-1 4/4"]));
    }
    assert_eq!(ran(&p, "app"), want);

    // New layers: every step on it re-runs; the stage it copies from does not.
    commit(&["touch", "/why"], "ENV WHY=1");
    let report = check(&p, "app");
    let steps = report["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .filter(|s| s["stage"] == "stage-1")
            .all(|s| s["verdict"] == "runs"),
        "{report:#}"
    );
    assert!(
        steps
            .iter()
            .filter(|s| s["stage"] == "tools")
            .all(|s| s["verdict"] == "cached"),
        "{report:#}"
    );

    // A build argument reaches the RUNs after its ARG.
    let build_arg = ["--build-arg", "V=two"];
    let (want, _) = predicted_with(&p, "app", &build_arg);
    assert_eq!(want, set(&["stage-1 4/4"]));
    assert_eq!(ran_with(&p, "app", &build_arg), want);
}

#[test]
fn the_example_project_predicts_what_runs() {
    let p = Project::new("why-example");
    p.example("webapp");
    p.build_ok(&["build"]);
    p.file("backend/src/a.txt", &u(&p, "edited\n"));
    check(&p, "backend");
    p.file("frontend/index.html", &u(&p, "<p>edited</p>\n"));
    check(&p, "frontend");

    // Nothing changed: fresh, every step cached.
    let out = p.cbuild(&["why"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("backend: fresh"), "{}", stdout(&out));
}

/// A project that copies `a.txt` and `b.txt`, then runs on both, never built: `why
/// FLAG` says so.
fn two_copies(tag: &str, flag: &str) -> Project {
    let p = Project::new(tag);
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file(
            "Dockerfile",
            "FROM cbuild-base\nCOPY a.txt /a\nCOPY b.txt /b\nRUN cat /a /b > /c\n",
        )
        .file("a.txt", &u(&p, "a\n"))
        .file("b.txt", &u(&p, "b\n"));
    let out = p.cbuild(&["why", flag]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("app: no build recorded"),
        "{}",
        stdout(&out)
    );
    p
}

/// Writes over the record in cbuild's cache whose name ends in `suffix`; `why FLAG`
/// then warns with `warning` and knows no build.
fn corrupt_record(p: &Project, suffix: &str, flag: &str, warning: &str) {
    let record = std::fs::read_dir(p.cache.path().join("builds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} record"));
    std::fs::write(&record, "{ not json\n").unwrap();
    let out = p.cbuild(&["why", flag]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(warning), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no build recorded"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn last_shows_what_ran_and_what_was_cached() {
    let p = two_copies("why-last", "--last");
    let err = p.build_ok(&["build"]);
    assert!(!err.contains("why --advise"), "no advice applies: {err}");
    p.file("b.txt", &u(&p, "b2\n"));
    p.build_ok(&["build"]);
    let v = why_json(&p, &["--last"]);
    let steps = v[0]["last"]["steps"].as_array().unwrap();
    let state = |prefix: &str| {
        steps
            .iter()
            .find(|s| s["name"].as_str().unwrap().starts_with(prefix))
            .map(|s| (s["cached"].as_bool().unwrap(), s["seconds"].is_number()))
    };
    assert_eq!(state("[2/4]").map(|s| s.0), Some(true), "{v:#}");
    assert_eq!(state("[3/4]"), Some((false, true)), "{v:#}");
    assert_eq!(state("[4/4]"), Some((false, true)), "{v:#}");
    let text = stdout(&p.cbuild(&["why", "--last"]));
    assert!(text.contains("cached     [2/4] COPY a.txt /a"), "{text}");

    // A corrupt record is ignored with a warning.
    corrupt_record(&p, ".why.json", "--last", "unreadable step record");
}

#[test]
fn history_keeps_each_build_with_its_steps_bytes_and_trigger() {
    let p = two_copies("why-history", "--history");
    p.build_ok(&["build"]);
    // A skipped build is no build: it adds nothing.
    p.build_ok(&["build"]);
    p.file("b.txt", &u(&p, "b2\n"));
    p.build_ok(&["build"]);

    let v = why_json(&p, &["--history"]);
    let builds = v[0]["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 2, "{v:#}");
    let (first, second) = (&builds[0], &builds[1]);
    assert_eq!(first["ok"], true);
    assert_eq!(
        first["trigger"].as_array().unwrap().len(),
        0,
        "a first build has no trigger: {v:#}"
    );
    assert!(first["context_bytes_sent"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(
        second["trigger"],
        serde_json::json!(["changed b.txt"]),
        "{v:#}"
    );
    assert_eq!(second["steps_run"], 2, "{v:#}");
    assert_eq!(second["steps_cached"], 1, "{v:#}");
    assert_eq!(second["context_files_sent"], 1, "only b.txt travels: {v:#}");
    let text = stdout(&p.cbuild(&["why", "--history"]));
    assert!(text.contains("app: 2 build(s)"), "{text}");
    assert!(
        text.contains("2 ran, 1 cached") && text.contains("(changed b.txt)"),
        "{text}"
    );

    // A corrupt history is set aside with a warning, and the next build
    // starts a new one.
    corrupt_record(&p, ".history.jsonl", "--history", "is unreadable");
    p.file("a.txt", &u(&p, "a2\n"));
    p.build_ok(&["build"]);
    let v = why_json(&p, &["--history"]);
    assert_eq!(v[0]["builds"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(
        v[0]["builds"][0]["trigger"],
        serde_json::json!(["changed a.txt"]),
        "{v:#}"
    );
}

#[test]
fn advise_names_lines_and_changes_nothing() {
    let p = Project::new("why-advise");
    let df = "FROM cbuild-base\nARG CACHE_BUST=1\nCOPY . /app\nRUN echo $CACHE_BUST; cd /app && echo npm ci\nRUN cat /app/package.json\n";
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file("Dockerfile", df)
        .file("package.json", &u(&p, "{}\n"))
        .file("node_modules/x/index.js", &"x".repeat(64 * 1024));
    let err = p.build_ok(&["build"]);
    assert!(
        err.contains("hint: `cbuild why --advise app` shows how to keep more of the cache"),
        "{err}"
    );
    let v = why_json(&p, &["--advise"]);
    let rules: Vec<(String, u64)> = v[0]["advice"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap().to_string(),
                a["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(rules.contains(&("cache-bust-arg".into(), 2)), "{v:#}");
    assert!(rules.contains(&("deps-after-source".into(), 4)), "{v:#}");
    assert!(rules.contains(&("heavy-context".into(), 3)), "{v:#}");
    assert!(rules.contains(&("cache-mount".into(), 4)), "{v:#}");
    let bust = v[0]["advice"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "cache-bust-arg")
        .unwrap();
    assert!(bust["seconds"].is_number(), "{v:#}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("Dockerfile")).unwrap(),
        df
    );
    assert!(!p.path().join(".dockerignore").exists());
}
