//! A project builder (files + compose.yaml in a temp dir), helpers to run
//! cbuild and docker, and to read what ended up in an image.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The engine every test talks to.
pub fn docker_host() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h,
        _ => panic!(
            "DOCKER_HOST is not set: run the tests through the README's test command \
             (scripts/test), which starts the engine with scripts/engine"
        ),
    }
}

/// A variable `scripts/engine up` exports. A missing one fails loudly, naming
/// the command that sets it, rather than skipping the test.
fn engine_env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: run the tests through the README's test command (scripts/test), \
             which starts the engines and registries with `scripts/engine up --stable`"
        ),
    }
}

/// The Docker host of one of the engines `scripts/engine` runs: `d28` (Docker
/// 28.5, graph driver), `d28-containerd` (28.5, containerd image store), `d26`
/// (26.1) or `stable` (Debian's 20.10).
pub fn engine(name: &str) -> String {
    let var = match name {
        "d28" => "CBUILD_D28_DOCKER_HOST",
        "d28-containerd" => "CBUILD_D28_CONTAINERD_DOCKER_HOST",
        "d26" => "CBUILD_D26_DOCKER_HOST",
        "stable" => "CBUILD_STABLE_DOCKER_HOST",
        _ => panic!("no engine called {name:?} (d28, d28-containerd, d26, stable)"),
    };
    engine_env(var)
}

/// The local plain-http registry, `127.0.0.1:PORT`. It holds
/// `cbuild-base:latest`, so `{registry()}/cbuild-base:latest` can be pulled.
pub fn registry() -> String {
    engine_env("CBUILD_REGISTRY")
}

/// `{registry()}/cbuild-base:latest`, pulled into the engine at `host`, for
/// a build whose builder (a standalone buildkitd) pulls the base from the
/// registry: cbuild identifies base images in the engine, so the engine
/// must hold it, or the first build's record says "missing" and a later
/// pull (another test's) rightly makes the next build stale.
pub fn registry_base_in(host: &str) -> String {
    let base = format!("{}/cbuild-base:latest", registry());
    let out = docker_at(host, &["pull", "-q", &base]);
    assert!(out.status.success(), "{}", stderr(&out));
    base
}

/// The local registry that wants a user and password (htpasswd).
pub struct AuthRegistry {
    /// `127.0.0.1:PORT`
    pub host: String,
    pub user: String,
    pub password: String,
}

pub fn auth_registry() -> AuthRegistry {
    AuthRegistry {
        host: engine_env("CBUILD_AUTH_REGISTRY"),
        user: engine_env("CBUILD_AUTH_REGISTRY_USER"),
        password: engine_env("CBUILD_AUTH_REGISTRY_PASSWORD"),
    }
}

/// The docker-compose 2.40 binary (runs standalone or as a CLI plugin).
pub fn compose_240() -> PathBuf {
    PathBuf::from(engine_env("CBUILD_COMPOSE_240"))
}

/// The docker-buildx 0.29 binary.
pub fn buildx_029() -> PathBuf {
    PathBuf::from(engine_env("CBUILD_BUILDX_029"))
}

/// A registry's answer to one request.
#[derive(Debug)]
pub struct RegistryReply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// `METHOD http://REGISTRY/PATH` with the manifest types a registry must not
/// refuse in `Accept`, and basic auth when given. Plain HTTP/1.0 over a TCP
/// stream: the registry is on loopback, and this keeps an HTTP client out of
/// the test dependencies.
pub fn registry_request(
    registry: &str,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> RegistryReply {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(registry)
        .unwrap_or_else(|e| panic!("cannot connect to the registry at {registry}: {e}"));
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {registry}\r\nAccept: \
         application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
         application/vnd.docker.distribution.manifest.list.v2+json, \
         application/vnd.docker.distribution.manifest.v2+json\r\n"
    );
    if let Some((user, password)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply from {registry}: {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RegistryReply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The digest the registry holds for `repo:reference`, or `None` when it
/// holds no such manifest.
pub fn registry_digest(
    registry: &str,
    repo: &str,
    reference: &str,
    auth: Option<(&str, &str)>,
) -> Option<String> {
    let r = registry_request(
        registry,
        "HEAD",
        &format!("/v2/{repo}/manifests/{reference}"),
        auth,
    );
    match r.status {
        200 => Some(
            r.headers
                .get("docker-content-digest")
                .cloned()
                .expect("a Docker-Content-Digest header"),
        ),
        404 => None,
        s => panic!("HEAD /v2/{repo}/manifests/{reference} on {registry}: HTTP {s}"),
    }
}

/// A scratch project directory.
pub struct Project {
    pub dir: tempfile::TempDir,
    /// cbuild's cache directory for this project (outside the context).
    pub cache: tempfile::TempDir,
    /// A prefix unique to this project, for image names.
    pub name: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Project {
    /// A new empty project; `tag` names it in image names.
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("it-{tag}-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .unwrap();
        let cache = tempfile::Builder::new()
            .prefix("it-cache-")
            .tempdir()
            .unwrap();
        Project { dir, cache, name }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating parent directories).
    pub fn file(&self, rel: &str, contents: &str) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
        self
    }

    /// A copy of every file of `examples/NAME` (the committed example,
    /// as a user has it), so a test may edit them.
    pub fn example(&self, name: &str) -> &Self {
        let root = examples().join(name);
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
                let path = e.path();
                if e.file_type().unwrap().is_dir() {
                    dirs.push(path);
                } else {
                    let rel = path.strip_prefix(&root).unwrap().to_str().unwrap();
                    self.file(rel, &std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        self
    }

    /// Runs `cbuild ARGS` in the project directory with `-p <name>`.
    pub fn cbuild(&self, args: &[&str]) -> Output {
        self.cbuild_env(args, &[])
    }

    pub fn cbuild_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// `cbuild ARGS` with the project's settings (directory, `-p`, engine,
    /// cache directory, no builder or Compose variables from the test's own
    /// environment), not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cbuild"));
        cmd.current_dir(self.path())
            .env("DOCKER_HOST", docker_host())
            .env("CBUILD_CACHE_DIR", self.cache.path())
            .env_remove("BUILDKIT_HOST")
            .env_remove("BUILDX_BUILDER")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .arg("-p")
            .arg(&self.name)
            .args(args);
        cmd
    }

    /// Like [`cbuild`](Self::cbuild) but asserts success and returns stderr.
    pub fn build_ok(&self, args: &[&str]) -> String {
        let out = self.cbuild(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "cbuild {args:?} failed:\n{err}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        err
    }

    /// The image name compose gives `service` in this project.
    pub fn image(&self, service: &str) -> String {
        format!("{}-{service}", self.name)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        // Remove the images this project named (best effort), by name, not
        // ID: a test may tag `cbuild-base` itself under the project's name,
        // and removing that ID would take `cbuild-base:latest` with it (as it
        // does on the containerd image store).
        let out = docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            &format!("reference={}-*", self.name),
        ]);
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.contains("<none>"))
            .map(str::to_string)
            .collect();
        if !names.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(names.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}

/// Runs the docker CLI against the test engine.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", docker_host())
        .args(args)
        .output()
        .expect("the docker CLI is needed by the tests")
}

/// Runs the docker CLI against the engine at `host` (see [`engine`]).
pub fn docker_at(host: &str, args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(args)
        .output()
        .expect("the docker CLI is needed by the tests")
}

/// Runs `docker ARGS`, asserting success, and returns stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker run --rm IMAGE sh -c SCRIPT` → stdout.
pub fn run_in(image: &str, script: &str) -> String {
    docker_ok(&["run", "--rm", image, "sh", "-c", script])
}

/// The image's labels.
pub fn labels(image: &str) -> BTreeMap<String, String> {
    let out = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        image,
    ]);
    serde_json::from_str::<Option<BTreeMap<String, String>>>(out.trim())
        .unwrap()
        .unwrap_or_default()
}

/// The image ID.
pub fn image_id(image: &str) -> String {
    docker_ok(&["image", "inspect", "--format", "{{.Id}}", image])
        .trim()
        .to_string()
}

/// One entry of an image's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEntry {
    pub kind: char,
    pub mode: u32,
    pub size: u64,
    pub digest: String,
    pub link: String,
}

/// Every file of an image's filesystem (from `docker export` of a created,
/// never started container), keyed by path, with what Docker itself adds
/// to a container (`/etc/hosts`, `/.dockerenv`…) left out.
pub fn image_files(image: &str) -> BTreeMap<String, FsEntry> {
    let id = docker_ok(&["create", image, "true"]).trim().to_string();
    let out = docker(&["export", &id]);
    let _ = docker(&["rm", "-f", &id]);
    assert!(out.status.success(), "docker export failed");
    let mut ar = tar::Archive::new(&out.stdout[..]);
    let mut files = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        if path.is_empty()
            || matches!(
                path.as_str(),
                ".dockerenv" | "etc/hosts" | "etc/hostname" | "etc/resolv.conf" | "etc/mtab"
            )
            || path.starts_with("proc")
            || path.starts_with("sys")
            || path.starts_with("dev")
        {
            continue;
        }
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            _ => 'f',
        };
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        files.insert(
            path,
            FsEntry {
                kind,
                mode: h.mode().unwrap() & 0o7777,
                size: data.len() as u64,
                digest: blake3::hash(&data).to_hex().to_string(),
                link: h
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
        );
    }
    files
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The examples/ directory of the repository.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The `finished` event of a `--progress json` build of one service.
pub fn build_json(p: &Project, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["--progress", "json", "build"];
    full.extend_from_slice(args);
    let out = p.cbuild(&full);
    assert!(
        out.status.success(),
        "cbuild {full:?} failed:\n{}",
        stderr(&out)
    );
    events(&out)
        .into_iter()
        .rfind(|v| v["event"] == "finished")
        .expect("a finished event")
}

/// Sets a file's modification time (nanoseconds since the epoch).
pub fn set_mtime(path: &Path, t: std::time::SystemTime) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

pub fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// The `finished` event of each service in a `--progress json` run, by
/// service name.
pub fn finished(out: &Output) -> BTreeMap<String, serde_json::Value> {
    events(out)
        .into_iter()
        .filter(|e| e["event"] == "finished")
        .map(|e| (e["service"].as_str().unwrap().to_string(), e))
        .collect()
}

/// The events of a `--progress json` run, in order: one JSON object a
/// line on stdout (other lines are passed over).
pub fn events(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(serde_json::Value::is_object)
        .collect()
}

/// Each step of a `--progress json` run in its last state (a step is
/// reported as it starts, logs and ends), by its id.
pub fn last_steps(out: &Output) -> BTreeMap<String, serde_json::Value> {
    events(out)
        .into_iter()
        .filter(|e| e["event"] == "step")
        .map(|e| (e["id"].as_str().unwrap().to_string(), e))
        .collect()
}
