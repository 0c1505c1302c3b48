//! `cbuild watch`: real file edits reach the running containers, checked
//! in the container itself. The watcher runs with `--progress json`; the
//! tests wait on its state lines, never on time.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::*;

/// A guard against a hang, not a measurement: every awaited state comes
/// within seconds when things work.
const HANG: Duration = Duration::from_secs(180);

/// A `cbuild watch` running on a project.
struct Watching<'a> {
    p: &'a Project,
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// The builds' step events, as they came.
    steps: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl<'a> Watching<'a> {
    fn start(p: &'a Project, args: &[&str]) -> Self {
        let mut all = vec!["--progress", "json", "watch"];
        all.extend_from_slice(args);
        Self::spawn(p, p.command(&all))
    }

    fn spawn(p: &'a Project, mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let steps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep_steps = steps.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["event"] == "step" {
                        keep_steps.lock().unwrap().push(v);
                    } else if v["event"] == "watch" && tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Watching {
            p,
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
            steps,
        }
    }

    /// Ctrl-C, as a user stops it: `cbuild watch` must end with exit 130.
    fn interrupt(&mut self) {
        let ok = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{}", self.log());
    }

    /// How many steps named `name` have started so far.
    fn started(&self, name: &str) -> usize {
        self.steps
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["name"] == name && v["completed_ms"].is_null())
            .count()
    }

    fn log(&self) -> String {
        let states: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        format!(
            "states:\n{}\nstderr:\n{}",
            states.join("\n"),
            self.stderr.lock().unwrap()
        )
    }

    /// The next state of `service`.
    fn next(&mut self, service: &str) -> Value {
        loop {
            let v = match self.lines.recv_timeout(HANG) {
                Ok(v) => v,
                Err(_) => panic!("no watch state came\n{}", self.log()),
            };
            self.seen.push(v.clone());
            if v["service"] == service {
                return v;
            }
        }
    }

    /// Skips `service`'s states until one of `states`; a failure on the
    /// way is an error unless `failed` is among them.
    fn until(&mut self, service: &str, states: &[&str]) -> Value {
        loop {
            let v = self.next(service);
            let state = v["state"].as_str().unwrap_or_default();
            if states.contains(&state) {
                return v;
            }
            assert_ne!(state, "failed", "unexpected failure\n{}", self.log());
        }
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("docker")
            .current_dir(self.p.path())
            .env("DOCKER_HOST", docker_host())
            .args(["compose", "-p", &self.p.name, "down", "-t", "0"])
            .output();
    }
}

fn container(p: &Project, service: &str) -> String {
    format!("{}-{service}-1", p.name)
}

/// `docker inspect -f FORMAT` of the service's container.
fn inspect(p: &Project, service: &str, format: &str) -> String {
    docker_ok(&["inspect", "-f", format, &container(p, service)])
}

/// `sh -c SCRIPT` in the running container → stdout.
fn exec(p: &Project, service: &str, script: &str) -> String {
    docker_ok(&["exec", &container(p, service), "sh", "-c", script])
}

/// A command that stops at once on SIGTERM (so restarts are quick).
const SERVE: &str = "[\"sh\", \"-c\", \"trap 'exit 0' TERM; while :; do sleep 1; done\"]";

/// Writes `path` with `contents` and gives it mtime `t`.
fn write_with_mtime(path: &std::path::Path, contents: &str, t: SystemTime) {
    std::fs::write(path, contents).unwrap();
    set_mtime(path, t);
}

#[test]
fn sync_brings_every_kind_of_edit_in_verified_and_a_touch_does_nothing() {
    let p = Project::new("watch-sync");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: .\n    command: {SERVE}\n    develop:\n      watch:\n        - path: ./src\n          action: sync\n          target: /app/src\n          ignore: [\"*.log\"]\n"
        ),
    )
    .file(
        "Dockerfile",
        "FROM cbuild-base\nRUN echo 'app:x:1234:1234::/:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group\nCOPY src /app/src\nUSER app\n",
    )
    .file(".dockerignore", "src/secret.txt\n")
    .file("src/a.txt", "aaaa\n")
    .file("src/b.txt", "bbbb\n");
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&p.path().join("src/a.txt"), old);
    let mut w = Watching::start(&p, &[]);
    w.until("web", &["watching"]);

    // An edit: in the container, owned by the image's USER.
    p.file("src/b.txt", "bbbb 2\n");
    let s = w.until("web", &["syncing"]);
    assert_eq!(
        s["paths"],
        serde_json::json!(["/app/src/b.txt"]),
        "{}",
        w.log()
    );
    let r = w.until("web", &["running"]);
    assert_eq!(r["verified_files"], 1, "{}", w.log());
    assert_eq!(exec(&p, "web", "cat /app/src/b.txt"), "bbbb 2\n");
    assert_eq!(exec(&p, "web", "stat -c %u /app/src/b.txt"), "1234\n");

    // A touch does nothing, nor does an ignored file, nor one the
    // .dockerignore leaves out: their events are seen, no sync follows.
    let a = p.path().join("src/a.txt");
    std::fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
    let u = w.until("web", &["unchanged", "syncing"]);
    assert_eq!(u["state"], "unchanged", "{}", w.log());
    p.file("src/debug.log", "noise\n");
    p.file("src/secret.txt", "secret\n");
    let u = w.until("web", &["unchanged", "syncing"]);
    assert_eq!(u["state"], "unchanged", "{}", w.log());
    // A same-size edit that keeps the old mtime is synced.
    write_with_mtime(&a, "AAAA\n", old);
    let s = w.until("web", &["syncing"]);
    assert_eq!(
        s["paths"],
        serde_json::json!(["/app/src/a.txt"]),
        "{}",
        w.log()
    );
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/src/a.txt"), "AAAA\n");
    assert_eq!(
        exec(&p, "web", "ls /app/src"),
        "a.txt\nb.txt\n",
        "{}",
        w.log()
    );

    // An editor's atomic save: write a temporary file, rename it over.
    p.file("src/.b.txt.swp", "bbbb 3\n");
    std::fs::rename(p.path().join("src/.b.txt.swp"), p.path().join("src/b.txt")).unwrap();
    let s = w.until("web", &["syncing"]);
    assert_eq!(
        s["paths"],
        serde_json::json!(["/app/src/b.txt"]),
        "{}",
        w.log()
    );
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/src/b.txt"), "bbbb 3\n");

    // A new directory with a file, then a deletion.
    p.file("src/new/deep/c.txt", "cccc\n");
    let s = w.until("web", &["syncing"]);
    assert!(
        s["paths"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/app/src/new/deep/c.txt")),
        "{}",
        w.log()
    );
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/src/new/deep/c.txt"), "cccc\n");
    assert_eq!(exec(&p, "web", "stat -c %u /app/src/new/deep"), "1234\n");

    std::fs::remove_file(p.path().join("src/b.txt")).unwrap();
    let s = w.until("web", &["syncing"]);
    assert_eq!(s["deleted"], 1, "{}", w.log());
    w.until("web", &["running"]);
    assert_eq!(
        exec(
            &p,
            "web",
            "test -e /app/src/b.txt && echo there || echo gone"
        ),
        "gone\n"
    );

    // The watched directory deleted and created again is still watched.
    std::fs::remove_dir_all(p.path().join("src")).unwrap();
    w.until("web", &["running"]);
    p.file("src/back.txt", "back\n");
    let s = w.until("web", &["syncing"]);
    assert!(
        s["paths"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/app/src/back.txt")),
        "{}",
        w.log()
    );
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/src/back.txt"), "back\n");
    // Edits inside the new directory are seen too.
    p.file("src/back.txt", "back 2\n");
    let s = w.until("web", &["syncing"]);
    assert_eq!(
        s["paths"],
        serde_json::json!(["/app/src/back.txt"]),
        "{}",
        w.log()
    );
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/src/back.txt"), "back 2\n");
}

#[test]
fn rebuild_recreates_only_that_service_with_the_new_image() {
    let p = Project::new("watch-rebuild");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  db:\n    image: cbuild-base\n    command: {SERVE}\n  web:\n    build: .\n    command: {SERVE}\n    depends_on: [db]\n    networks: [default, back]\n    develop:\n      watch:\n        - path: .\n          action: rebuild\n          ignore: [notes.md]\nnetworks:\n  back: {{}}\n"
        ),
    )
    .file("Dockerfile", "FROM cbuild-base\nCOPY app.txt /app.txt\n")
    .file("app.txt", "v1\n")
    .file("unused.txt", "not read by the build\n");
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&p.path().join("app.txt"), old);
    let mut w = Watching::start(&p, &["web"]);
    w.until("web", &["watching"]);
    let db_before = inspect(&p, "db", "{{.Id}}");

    // A same-size edit that keeps its mtime: rebuilt, and the recreated
    // container runs the new image with the new bytes.
    write_with_mtime(&p.path().join("app.txt"), "v2\n", old);
    w.until("web", &["rebuilding"]);
    let r = w.until("web", &["running"]);
    assert_eq!(r["up_to_date"], false, "{}", w.log());
    assert_eq!(exec(&p, "web", "cat /app.txt"), "v2\n");
    let running = inspect(&p, "web", "{{.Image}}");
    assert_eq!(running.trim(), image_id(&p.image("web")).trim());
    let db_after = inspect(&p, "db", "{{.Id}}");
    assert_eq!(db_before, db_after, "the dependency was recreated");

    // Compose takes the recreated container as the service's, the same
    // one: `ps` lists it, and `up` finds nothing to recreate (its image
    // label, config hash and networks are what compose expects).
    let web_id = inspect(&p, "web", "{{.Id}}");
    let compose = |args: &[&str]| {
        let dir = p.path().display().to_string();
        let mut all = vec!["compose", "--project-directory", &dir, "-p", &p.name];
        all.extend_from_slice(args);
        docker_ok(&all)
    };
    let ps = compose(&["ps", "--format", "{{.Service}} {{.ID}} {{.Name}}"]);
    assert!(
        ps.lines()
            .any(|l| l == format!("web {} {}", &web_id.trim()[..12], container(&p, "web"))),
        "{ps}"
    );
    compose(&["up", "-d", "--no-build"]);
    let web_then = inspect(&p, "web", "{{.Id}}");
    assert_eq!(web_id, web_then, "`docker compose up` recreated it again");
    assert_eq!(exec(&p, "web", "cat /app.txt"), "v2\n");

    // A file the build does not read: the build is skipped, the
    // container kept.
    let web_before = inspect(&p, "web", "{{.Id}}");
    p.file("unused.txt", "changed\n");
    w.until("web", &["rebuilding"]);
    let r = w.until("web", &["running"]);
    assert_eq!(r["up_to_date"], true, "{}", w.log());
    let web_after = inspect(&p, "web", "{{.Id}}");
    assert_eq!(web_before, web_after);

    // A touch and an ignored file do nothing: no rebuild follows.
    let app = p.path().join("app.txt");
    std::fs::File::options()
        .write(true)
        .open(&app)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();
    let u = w.until("web", &["unchanged", "rebuilding"]);
    assert_eq!(u["state"], "unchanged", "{}", w.log());
    p.file("notes.md", "ignored\n");
    let u = w.until("web", &["unchanged", "rebuilding"]);
    assert_eq!(u["state"], "unchanged", "{}", w.log());
    p.file("app.txt", "v3\n");
    w.until("web", &["rebuilding"]);
    let r = w.until("web", &["running"]);
    assert_eq!(r["up_to_date"], false, "{}", w.log());
    assert_eq!(exec(&p, "web", "cat /app.txt"), "v3\n");
    // Nothing else happened in between: one rebuild per edit.
    let rebuilds = w.seen.iter().filter(|v| v["state"] == "rebuilding").count();
    assert_eq!(rebuilds, 3, "{}", w.log());
}

#[test]
fn sync_restart_restart_and_sync_exec() {
    let p = Project::new("watch-actions");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: .\n    command: {SERVE}\n    develop:\n      watch:\n        - path: cfg\n          action: sync+restart\n          target: /cfg\n        - path: restart.txt\n          action: restart\n        - path: hook\n          action: sync+exec\n          target: /hook\n          exec:\n            command: sh -c 'cp /hook/x /hook/x.done'\n"
        ),
    )
    .file("Dockerfile", "FROM cbuild-base\nCOPY . /src\n")
    .file("cfg/app.conf", "one\n")
    .file("restart.txt", "1\n")
    .file("hook/x", "x1\n");
    let mut w = Watching::start(&p, &[]);
    w.until("web", &["watching"]);
    let started = |p: &Project| inspect(p, "web", "{{.State.StartedAt}}");

    let t0 = started(&p);
    p.file("cfg/app.conf", "two\n");
    w.until("web", &["syncing"]);
    w.until("web", &["restarting"]);
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /cfg/app.conf"), "two\n");
    let t1 = started(&p);
    assert_ne!(t0, t1, "not restarted");

    p.file("restart.txt", "2\n");
    w.until("web", &["restarting"]);
    w.until("web", &["running"]);
    assert_ne!(t1, started(&p), "not restarted");

    p.file("hook/x", "x2\n");
    w.until("web", &["syncing"]);
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /hook/x.done"), "x2\n");
}

#[test]
fn a_died_container_is_shown_and_the_next_edit_goes_in() {
    let p = Project::new("watch-died");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: .\n    command: {SERVE}\n    develop:\n      watch:\n        - path: src\n          action: sync\n          target: /app\n"
        ),
    )
    .file("Dockerfile", "FROM cbuild-base\nCOPY src /app\n")
    .file("src/a.txt", "1\n");
    let mut w = Watching::start(&p, &[]);
    w.until("web", &["watching"]);
    docker_ok(&["kill", &container(&p, "web")]);
    p.file("src/a.txt", "2\n");
    let f = w.until("web", &["failed"]);
    assert!(
        f["error"].as_str().unwrap().contains("exited"),
        "{}",
        w.log()
    );
    docker_ok(&["start", &container(&p, "web")]);
    // The failed change is tried again with the next one.
    p.file("src/b.txt", "b\n");
    let mut synced = Vec::new();
    while !synced.contains(&Value::from("/app/b.txt")) {
        let s = w.until("web", &["syncing", "failed"]);
        if s["state"] == "syncing" {
            synced.extend(s["paths"].as_array().unwrap().iter().cloned());
            w.until("web", &["running"]);
        }
    }
    assert!(synced.contains(&Value::from("/app/a.txt")), "{}", w.log());
    assert_eq!(exec(&p, "web", "cat /app/a.txt /app/b.txt"), "2\nb\n");
}

#[test]
fn ctrl_c_stops_watching_leaves_the_containers_running_and_exits_130() {
    let p = Project::new("watch-ctrlc");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: .\n    command: {SERVE}\n    develop:\n      watch:\n        - path: src\n          action: sync\n          target: /app\n"
        ),
    )
    .file("Dockerfile", "FROM cbuild-base\n")
    .file("src/a.txt", "1\n");
    let mut w = Watching::start(&p, &[]);
    w.until("web", &["watching"]);
    w.interrupt();
    assert!(
        w.stderr.lock().unwrap().contains("stopped watching"),
        "{}",
        w.log()
    );
    let state = inspect(&p, "web", "{{.State.Status}}");
    assert_eq!(state.trim(), "running");
}

#[test]
fn a_failed_build_or_ctrl_c_during_the_export_leaves_the_old_container_running() {
    // The old container serves until the new image is there: a build that
    // fails, or is cancelled while it exports, leaves it running. (Stopping
    // it during the export, to take the stop off the edit's path, was tried:
    // on 2 cores the stop and the export slowed each other as much.)
    let p = Project::new("watch-export");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: .\n    command: {SERVE}\n    develop:\n      watch:\n        - path: src\n          action: rebuild\n"
        ),
    )
    // A big layer, so that the export takes a while.
    .file(
        "Dockerfile",
        "FROM cbuild-base\nCOPY src /src\nRUN test \"$(cat /src/a.txt)\" != fail && dd if=/dev/zero of=/big bs=1M count=200 2>/dev/null\n",
    )
    .file("src/a.txt", "v1\n");
    let mut w = Watching::start(&p, &[]);
    w.until("web", &["watching"]);
    let id = |p: &Project| {
        inspect(p, "web", "{{.Id}} {{.State.Status}}")
            .trim()
            .to_string()
    };
    let before = id(&p);
    assert!(before.ends_with(" running"), "{before}");

    p.file("src/a.txt", "fail\n");
    w.until("web", &["rebuilding"]);
    let f = w.until("web", &["failed"]);
    assert!(
        f["error"].as_str().unwrap_or_default().contains("failed"),
        "{}",
        w.log()
    );
    assert_eq!(id(&p), before, "{}", w.log());

    let exports = w.started("exporting to image");
    p.file("src/a.txt", "v2\n");
    let deadline = std::time::Instant::now() + HANG;
    while w.started("exporting to image") == exports {
        assert!(std::time::Instant::now() < deadline, "{}", w.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    w.interrupt();
    let after = id(&p);
    assert!(after.ends_with(" running"), "{after}\n{}", w.log());
}

#[test]
fn the_example_project_serves_each_edit() {
    // The README's quick start: `cbuild watch` in examples/webapp.
    let p = Project::new("watch-example");
    p.example("webapp");
    let mut w = Watching::start(&p, &[]);
    w.until("backend", &["watching"]);
    // The frontend reaches the backend's server by its service name.
    let get = |path: &str| {
        exec(
            &p,
            "frontend",
            &format!("wget -qO- http://backend:8080/{path}"),
        )
    };
    assert!(get("greeting").contains("hello from the backend"));

    p.file("frontend/index.html", "<h1>edited</h1>\n");
    let r = w.until("frontend", &["running"]);
    assert_eq!(r["verified_files"], 1, "{}", w.log());
    assert_eq!(
        exec(&p, "frontend", "wget -qO- http://localhost/index.html"),
        "<h1>edited</h1>\n"
    );

    p.file("backend/src/a.txt", "backend data, edited\n");
    w.until("backend", &["rebuilding"]);
    w.until("backend", &["running"]);
    assert_eq!(
        get("data.txt"),
        "backend data, edited\nbackend data line 2\n",
        "{}",
        w.log()
    );
}

#[test]
fn bad_watch_entries_are_exit_2_with_the_key() {
    let p = Project::new("watch-bad");
    for (watch, key) in [
        (
            "{path: src, action: copy, target: /x}",
            "services.web.develop.watch[0].action",
        ),
        (
            "{path: ../outside, action: rebuild}",
            "services.web.develop.watch[0].path",
        ),
    ] {
        p.file(
            "compose.yaml",
            &format!("services:\n  web:\n    image: cbuild-base\n    develop:\n      watch:\n        - {watch}\n"),
        );
        let out = p.cbuild(&["watch"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(key), "{}", stderr(&out));
    }
    p.file(
        "compose.yaml",
        "services:\n  web:\n    image: cbuild-base\n",
    );
    let out = p.cbuild(&["watch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("develop.watch"), "{}", stderr(&out));
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed by scripts/test");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_terminal_shows_one_line_per_service() {
    let p = Project::new("watch-tty");
    let service = |dir: &str| {
        format!(
            "  {dir}:\n    build: {dir}\n    command: {SERVE}\n    develop:\n      watch:\n        - path: {dir}/src\n          action: sync\n          target: /app\n"
        )
    };
    p.file(
        "compose.yaml",
        &format!("services:\n{}{}", service("alpha"), service("beta")),
    )
    .file("alpha/Dockerfile", "FROM cbuild-base\nCOPY src /app\n")
    .file("alpha/src/a.txt", "a\n")
    .file("beta/Dockerfile", "FROM cbuild-base\nCOPY src /app\n")
    .file("beta/src/b.txt", "b\n");
    let session = format!("cbuild-{}", p.name);
    let cmd = format!(
        "cd '{}' && DOCKER_HOST='{}' CBUILD_CACHE_DIR='{}' '{}' -p {} watch; echo EXIT=$?; sleep 60",
        p.path().display(),
        docker_host(),
        p.cache.path().display(),
        env!("CARGO_BIN_EXE_cbuild"),
        p.name
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "40",
        &cmd,
    ]);
    let screen = || tmux(&["capture-pane", "-p", "-t", &session]);
    let down = || {
        tmux(&["kill-session", "-t", &session]);
        let _ = Command::new("docker")
            .current_dir(p.path())
            .env("DOCKER_HOST", docker_host())
            .args(["compose", "-p", &p.name, "down", "-t", "0"])
            .output();
    };
    let wait = |what: &dyn Fn(&str) -> bool| {
        let start = std::time::Instant::now();
        let mut s = screen();
        while !what(&s) && start.elapsed() < HANG {
            std::thread::sleep(Duration::from_millis(200));
            s = screen();
        }
        s
    };
    let line = |s: &str, svc: &str| -> Vec<String> {
        s.lines()
            // The build's summary above names the services too.
            .filter(|l| l.trim_start().starts_with(&format!("{svc} ")) && !l.contains(" built "))
            .map(str::to_string)
            .collect()
    };
    let s = wait(&|s| {
        line(s, "alpha").iter().any(|l| l.contains("watching"))
            && line(s, "beta").iter().any(|l| l.contains("watching"))
    });
    let watching = line(&s, "alpha").len() == 1 && line(&s, "beta").len() == 1;
    if !watching {
        down();
        panic!("{s}");
    }
    p.file("alpha/src/a.txt", "a2\n");
    let s = wait(&|s| line(s, "alpha").iter().any(|l| l.contains("(verified)")));
    let ok = line(&s, "alpha").len() == 1
        && line(&s, "alpha")[0].contains("✔ running")
        && line(&s, "beta").len() == 1
        && line(&s, "beta")[0].contains("watching");
    if !ok {
        down();
        panic!("{s}");
    }
    tmux(&["send-keys", "-t", &session, "C-c"]);
    let s = wait(&|s| s.contains("EXIT="));
    down();
    assert!(s.contains("EXIT=130"), "{s}");
}

/// A proxy to the engine that the test can take away and bring back.
struct Proxy {
    socket: std::path::PathBuf,
    child: Option<Child>,
}

impl Proxy {
    fn start(socket: &std::path::Path) -> Proxy {
        let mut p = Proxy {
            socket: socket.to_path_buf(),
            child: None,
        };
        p.up();
        p
    }

    fn up(&mut self) {
        let engine = docker_host();
        let engine = engine
            .strip_prefix("unix://")
            .expect("a unix engine socket");
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", self.socket.display()))
            .arg(format!("UNIX-CONNECT:{engine}"))
            .process_group(0)
            .spawn()
            .expect("socat is installed by scripts/engine");
        while !self.socket.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Stops the proxy and every connection it carries.
    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

#[test]
fn the_engine_going_away_is_said_and_watching_resumes_when_it_is_back() {
    let p = Project::new("watch-engine");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: .\n    command: {SERVE}\n    develop:\n      watch:\n        - path: src\n          action: sync\n          target: /app\n"
        ),
    )
    .file("Dockerfile", "FROM cbuild-base\nCOPY src /app\n")
    .file("src/a.txt", "1\n");
    p.build_ok(&[]);
    let up = Command::new("docker")
        .current_dir(p.path())
        .env("DOCKER_HOST", docker_host())
        .args(["compose", "-p", &p.name, "up", "-d", "--no-build"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let socket = p.cache.path().join("engine.sock");
    let mut proxy = Proxy::start(&socket);
    let host = format!("unix://{}", socket.display());
    let mut cmd = p.command(&["--progress", "json", "watch", "--no-up"]);
    cmd.env("DOCKER_HOST", &host);
    let mut w = Watching::spawn(&p, cmd);
    w.until("web", &["watching"]);

    proxy.down();
    p.file("src/a.txt", "2\n");
    let f = w.until("web", &["failed"]);
    assert!(
        f["hint"]
            .as_str()
            .unwrap_or_default()
            .contains("engine answers again"),
        "{}",
        w.log()
    );
    // Back: the change goes in without another edit.
    proxy.up();
    w.until("web", &["syncing"]);
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/a.txt"), "2\n");
}

#[test]
fn a_service_without_develop_watch_rebuilds_only_for_files_its_build_reads() {
    let p = Project::new("watch-implicit");
    p.file(
        "compose.yaml",
        &format!("services:\n  web:\n    build: .\n    command: {SERVE}\n"),
    )
    .file("Dockerfile", "FROM cbuild-base\nCOPY used.txt /used.txt\n")
    .file("used.txt", "u1\n")
    .file("unused.txt", "n1\n");
    let mut w = Watching::start(&p, &[]);
    w.until("web", &["watching"]);
    let before = inspect(&p, "web", "{{.Id}}");

    // Not read by the build: nothing happens.
    p.file("unused.txt", "n2\n");
    let u = w.until("web", &["unchanged", "rebuilding"]);
    assert_eq!(u["state"], "unchanged", "{}", w.log());
    let after = inspect(&p, "web", "{{.Id}}");
    assert_eq!(before, after);

    // Read by the build: rebuilt and recreated.
    p.file("used.txt", "u2\n");
    let u = w.until("web", &["unchanged", "rebuilding"]);
    assert_eq!(u["state"], "rebuilding", "{}", w.log());
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /used.txt"), "u2\n");
    let running = inspect(&p, "web", "{{.Image}}");
    assert_eq!(running.trim(), image_id(&p.image("web")).trim());
}

#[test]
fn up_watch_starts_the_services_then_watches() {
    let p = Project::new("watch-up");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: .\n    command: {SERVE}\n    develop:\n      watch:\n        - path: src\n          action: sync\n          target: /app\n"
        ),
    )
    .file("Dockerfile", "FROM cbuild-base\nCOPY src /app\n")
    .file("src/a.txt", "1\n");
    let mut w = Watching::spawn(&p, p.command(&["--progress", "json", "up", "--watch"]));
    w.until("web", &["watching"]);
    assert_eq!(exec(&p, "web", "cat /app/a.txt"), "1\n");
    p.file("src/a.txt", "2\n");
    w.until("web", &["syncing"]);
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/a.txt"), "2\n");
}

/// `cbuild ARGS` (with the project's settings) in a new user namespace
/// whose limit of inotify watches is `limit`: since Linux 5.11 that limit
/// is per user namespace (`/proc/sys/user/max_inotify_watches`, writable by
/// the namespace's root), so the host's own sysctls are not touched. `None`,
/// with the reason printed, where no such namespace can be made.
// The skip says why on the test's output, as the task asks of a skip.
#[allow(clippy::print_stderr)]
fn in_user_namespace(p: &Project, limit: u32, args: &[&str]) -> Option<Command> {
    const SET: &str = "echo \"$0\" > /proc/sys/user/max_inotify_watches && exec \"$@\"";
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", SET, "7", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "skipped: cannot lower the inotify limit in a new user namespace: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return None;
        }
        Err(e) => {
            eprintln!("skipped: cannot run `unshare`: {e}");
            return None;
        }
    }
    let inner = p.command(args);
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "sh", "-c", SET])
        .arg(limit.to_string())
        .arg(inner.get_program())
        .args(inner.get_args());
    if let Some(dir) = inner.get_current_dir() {
        cmd.current_dir(dir);
    }
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    Some(cmd)
}

#[test]
fn hitting_the_inotify_limit_is_exit_1_naming_the_limit_and_the_directories() {
    let p = Project::new("watch-inotify-limit");
    p.file(
        "compose.yaml",
        "services:\n  web:\n    build: .\n    develop:\n      watch:\n        - path: ./src\n          action: sync\n          target: /app\n",
    )
    .file("Dockerfile", "FROM cbuild-base\nCOPY src /app\n");
    for i in 0..30 {
        p.file(&format!("src/d{i}/f.txt"), "f\n");
    }
    let Some(mut cmd) = in_user_namespace(&p, 10, &["watch", "--no-up"]) else {
        return;
    };
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // What was refused, the limit in effect and the sysctl behind it, and
    // how many directories the watch needs (src and its 30).
    assert!(err.contains("limit of inotify watches"), "{err}");
    assert!(err.contains("user.max_inotify_watches = 10"), "{err}");
    assert!(err.contains("fs.inotify.max_user_watches"), "{err}");
    assert!(err.contains("31 directories to watch"), "{err}");
    assert!(err.contains("sysctl user.max_inotify_watches="), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn ignored_directories_cost_no_inotify_watch() {
    let p = Project::new("watch-inotify-ignored");
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: .\n    command: {SERVE}\n    develop:\n      watch:\n        - path: ./src\n          action: sync\n          target: /app\n          ignore: [\"tmp/\"]\n"
        ),
    )
    .file("Dockerfile", "FROM cbuild-base\nCOPY src /app\n")
    .file(".dockerignore", "src/node_modules\n")
    .file("src/a.txt", "a1\n");
    // 120 directories nothing in which can matter: .git (always left
    // out), node_modules (the .dockerignore), tmp (`ignore:`).
    for top in [".git", "node_modules", "tmp"] {
        for i in 0..40 {
            p.file(&format!("src/{top}/d{i}/f.txt"), "f\n");
        }
    }
    let up = p.cbuild(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    // src, its parent, and the two directories made below: 4 watches.
    let Some(cmd) = in_user_namespace(&p, 8, &["--progress", "json", "watch", "--no-up"]) else {
        let _ = docker(&["rm", "-f", &container(&p, "web")]);
        return;
    };
    let mut w = Watching::spawn(&p, cmd);
    w.until("web", &["watching"]);
    p.file("src/a.txt", "a2\n");
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/a.txt"), "a2\n");
    // A directory made while watching is watched, with what is inside.
    p.file("src/new/deeper/b.txt", "b1\n");
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/new/deeper/b.txt"), "b1\n");
    p.file("src/new/deeper/b.txt", "b2\n");
    w.until("web", &["running"]);
    assert_eq!(exec(&p, "web", "cat /app/new/deeper/b.txt"), "b2\n");
}
