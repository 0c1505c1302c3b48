//! Finding, reading and resolving Compose files the way `docker compose`
//! does: file discovery, `.env`, interpolation, merging of several `-f`
//! files, the project name, and the `build:` section of every service.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::yaml::{Mapping, Value};
use serde::Deserialize;

use super::error::ComposeError;
use super::merge::{self, apply_resets, key_text, resolve_tags, scalar_text};
use super::{dotenv, interpolate, BuildSecret, BuildSpec, Project, Service};

/// The file names `docker compose` looks for, in order of preference.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// How to find and resolve a project (the global `docker compose` options).
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `-f` files, in order (`-` is standard input).
    pub files: Vec<PathBuf>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `--env-file` files.
    pub env_files: Vec<PathBuf>,
    /// `--profile` values; when empty, `COMPOSE_PROFILES` (from the
    /// environment or `.env`) applies.
    pub profiles: Vec<String>,
    /// Services named on the command line: their profiles count as active.
    pub services: Vec<String>,
    /// The directory cbuild runs in.
    pub cwd: PathBuf,
    /// The process environment.
    pub environment: HashMap<String, String>,
}

/// Loads the project described by `opts`.
pub fn load(opts: &LoadOptions) -> Result<Project, ComposeError> {
    let mut loader = Loader::default();
    // A value error is placed at its line and column once the texts are read.
    load_with(opts, &mut loader).map_err(|e| loader.place(e))
}

fn load_with(opts: &LoadOptions, loader: &mut Loader) -> Result<Project, ComposeError> {
    // compose reads `.env` before it knows the files (COMPOSE_FILE may come
    // from there): from the project directory, else the first `-f` file's
    // folder, else the current directory.
    let env_dir = match &opts.project_directory {
        Some(d) => absolute(&opts.cwd, d),
        None => opts
            .files
            .iter()
            .find(|f| f.as_os_str() != "-")
            .and_then(|f| absolute(&opts.cwd, f).parent().map(Path::to_path_buf))
            .unwrap_or_else(|| opts.cwd.clone()),
    };
    let mut env = environment(opts, &env_dir)?;
    // compose 2.40 fills in `PWD` from the working directory when the
    // environment has none (a shell that did not export it, `env -i`).
    env.entry("PWD".to_string())
        .or_insert_with(|| opts.cwd.to_string_lossy().into_owned());
    let files = discover(opts, &env)?;
    let working_dir = match &opts.project_directory {
        Some(d) => absolute(&opts.cwd, d),
        None => files
            .iter()
            .find(|f| f.as_os_str() != "-")
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| opts.cwd.clone()),
    };
    if opts.env_files.is_empty() && working_dir != env_dir {
        // The project's own `.env` fills in what the first one left unset
        // (COMPOSE_FILE pointing into another folder).
        let extra = working_dir.join(".env");
        if extra.is_file() {
            let text = fs_err::read_to_string(&extra).map_err(|source| ComposeError::Read {
                path: extra.clone(),
                source,
            })?;
            let lookup = |k: &str| env.get(k).cloned();
            for (k, v) in dotenv::parse_env_file(&text, &extra, &lookup)? {
                env.entry(k).or_insert(v);
            }
        }
    }
    let shown = files.first().cloned().unwrap_or_default();
    loader.home = env.get("HOME").cloned();
    let name = loader.project_name(opts, &env, &files, &working_dir, &shown)?;
    // Files may refer to the name being loaded, as compose allows.
    env.insert("COMPOSE_PROJECT_NAME".to_string(), name.clone());
    let included = files.first().cloned().into_iter().collect::<Vec<_>>();
    let dict = loader.load_model(&files, &env, &working_dir, &working_dir, false, &included)?;
    let mut top = match dict {
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    };
    for key in ["networks", "volumes", "secrets", "configs"] {
        // compose drops names that look like extensions (README surprise 2).
        if let Some(Value::Mapping(m)) = top.get_mut(key) {
            m.retain(|k, _| !key_text(k).starts_with("x-"));
        }
    }
    let active = active_profiles(opts, &env);
    let mut services = match top.remove("services") {
        Some(Value::Mapping(m)) => m,
        Some(Value::Null) | None => Mapping::new(),
        Some(_) => return Err(invalid(&shown, "services", "must be a mapping")),
    };
    let all: Vec<String> = services.keys().map(key_text).collect();
    services.retain(|k, v| {
        let name = key_text(k);
        let profiles = match v.get("profiles") {
            Some(Value::Sequence(s)) => s.iter().filter_map(scalar_text).collect(),
            _ => Vec::new(),
        };
        profiles.is_empty()
            || opts.services.contains(&name)
            || active.iter().any(|a| a == "*" || profiles.contains(a))
    });
    check_services(&shown, &top, &services, &all)?;

    let mut project = Project {
        name,
        working_dir: working_dir.clone(),
        files: files.clone(),
        services: BTreeMap::new(),
        secrets: BTreeMap::new(),
        config: serde_json::Map::new(),
        warnings: std::mem::take(&mut loader.warnings),
        environment: env.clone(),
    };
    for (k, v) in &services {
        let name = key_text(k);
        let svc = service(&shown, &name, v, &working_dir, &env)?;
        project.services.insert(name, svc);
    }
    check_consistency(&shown, &top, &project.services)?;
    for key in ["networks", "volumes", "secrets", "configs", "models"] {
        if let Some(v) = top.get(key) {
            project
                .config
                .insert(key.to_string(), super::render::to_json(v));
        }
    }
    // compose 2.40 prints the top-level extensions (`x-*`) as loaded.
    for (k, v) in &top {
        let k = key_text(k);
        if k.starts_with("x-") {
            project.config.insert(k, super::render::to_json_all(v));
        }
    }
    if let Some(secrets) = top.get("secrets") {
        let secrets = secrets
            .as_mapping()
            .ok_or_else(|| invalid(&shown, "secrets", "must be a mapping"))?;
        for (k, v) in secrets {
            let name = key_text(k);
            let key = format!("secrets.{name}");
            let m = v.as_mapping().ok_or_else(|| {
                invalid(
                    &shown,
                    &key,
                    "must be a mapping with `file` or `environment`",
                )
            })?;
            let mut def = super::SecretDef::default();
            if let Some(f) = m.get("file") {
                def.file = Some(absolute(
                    &working_dir,
                    Path::new(&scalar(&shown, &format!("{key}.file"), f)?),
                ));
            }
            if let Some(e) = m.get("environment") {
                def.environment = Some(scalar(&shown, &format!("{key}.environment"), e)?);
            }
            project.secrets.insert(name, def);
        }
    }
    Ok(project)
}

/// The profiles in force: `--profile`, else `COMPOSE_PROFILES` (which may
/// come from `.env`).
fn active_profiles(opts: &LoadOptions, env: &HashMap<String, String>) -> Vec<String> {
    if !opts.profiles.is_empty() {
        return opts.profiles.clone();
    }
    env.get("COMPOSE_PROFILES")
        .map(|p| {
            p.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// compose's consistency checks on the enabled services: networks and
/// dependencies that exist, no dependency cycle, `network_mode` without
/// `networks`, and a service `platform` listed in `build.platforms`.
fn check_services(
    file: &Path,
    top: &Mapping,
    services: &Mapping,
    all: &[String],
) -> Result<(), ComposeError> {
    let networks: Vec<String> = match top.get("networks") {
        Some(Value::Mapping(m)) => m.keys().map(key_text).collect(),
        _ => Vec::new(),
    };
    let names: Vec<String> = services.keys().map(key_text).collect();
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in services {
        let name = key_text(k);
        let key = format!("services.{name}");
        if let Some(Value::Mapping(nets)) = v.get("networks") {
            for n in nets.keys().map(key_text) {
                if n != "default" && !networks.contains(&n) {
                    return Err(invalid(
                        file,
                        &format!("{key}.networks"),
                        &format!("refers to undefined network `{n}`"),
                    ));
                }
            }
            if v.get("network_mode").is_some() {
                return Err(invalid(
                    file,
                    &key,
                    "`network_mode` and `networks` cannot be used together",
                ));
            }
        }
        if let Some(Value::Mapping(d)) = v.get("depends_on") {
            for (dep, spec) in d {
                let dep = key_text(dep);
                let required = spec
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if !names.contains(&dep) {
                    if !required {
                        continue;
                    }
                    let why = if all.contains(&dep) {
                        format!("depends on service `{dep}`, which is disabled by its profiles")
                    } else {
                        format!("depends on undefined service `{dep}`")
                    };
                    return Err(invalid(file, &format!("{key}.depends_on"), &why));
                }
                deps.entry(name.clone()).or_default().push(dep);
            }
        }
        if v.get("image").is_none() && v.get("build").is_none() && v.get("provider").is_none() {
            return Err(invalid(
                file,
                &key,
                "has neither an `image` nor a `build` context; add one of them",
            ));
        }
        if let Some(Value::Sequence(secrets)) = v.get("build").and_then(|b| b.get("secrets")) {
            let defined = top.get("secrets").and_then(Value::as_mapping);
            for s in secrets {
                let src = s.get("source").unwrap_or(s);
                let src = scalar_text(src).unwrap_or_default();
                if !defined.is_some_and(|d| d.contains_key(src.as_str())) {
                    return Err(invalid(
                        file,
                        &format!("{key}.build.secrets"),
                        &format!("refers to undefined build secret `{src}`; define it under the top-level `secrets:`"),
                    ));
                }
            }
        }
        if let Some(Value::Sequence(watch)) = v.get("develop").and_then(|d| d.get("watch")) {
            for (i, w) in watch.iter().enumerate() {
                let action = w.get("action").and_then(scalar_text).unwrap_or_default();
                let rebuild = matches!(action.as_str(), "rebuild" | "restart");
                if !rebuild && w.get("target").is_none() {
                    return Err(invalid(
                        file,
                        &format!("{key}.develop.watch[{i}]"),
                        &format!("`target` is required for the `{action}` action"),
                    ));
                }
            }
        }
        if let (Some(p), Some(Value::Sequence(plats))) = (
            v.get("platform").and_then(scalar_text),
            v.get("build").and_then(|b| b.get("platforms")),
        ) {
            if !plats.is_empty() && !plats.iter().any(|x| scalar_text(x).as_deref() == Some(&p)) {
                return Err(invalid(
                    file,
                    &format!("{key}.build.platforms"),
                    &format!("must include the service platform `{p}`"),
                ));
            }
        }
    }
    // Depth-first search for a dependency cycle.
    fn visit(
        n: &str,
        deps: &BTreeMap<String, Vec<String>>,
        stack: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if done.iter().any(|d| d == n) {
            return None;
        }
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        stack.push(n.to_string());
        for d in deps.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, deps, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.push(n.to_string());
        None
    }
    let mut done = Vec::new();
    for n in &names {
        if let Some(cycle) = visit(n, &deps, &mut Vec::new(), &mut done) {
            return Err(invalid(
                file,
                &format!("services.{n}.depends_on"),
                &format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
    }
    Ok(())
}

/// compose-go's `checkConsistency` on the resolved services (what
/// [`check_services`] cannot see before the short forms are read): every
/// resource a service names is defined, typed values were cast, and values
/// given twice (`mem_limit` and `deploy.resources.limits.memory`) agree.
fn check_consistency(
    file: &Path,
    top: &Mapping,
    services: &BTreeMap<String, Service>,
) -> Result<(), ComposeError> {
    use serde_json::Value as Json;
    let defined = |kind: &str, name: &str| {
        top.get(kind)
            .and_then(Value::as_mapping)
            .is_some_and(|m| m.contains_key(name))
    };
    let number = |j: Option<&Json>| match j {
        Some(Json::Number(n)) => n.as_f64(),
        Some(Json::String(s)) => s.parse::<f64>().ok(),
        _ => None,
    };
    for (name, svc) in services {
        let key = format!("services.{name}");
        let c = &svc.config;
        if let Some((at, what)) = super::render::uncast_scalar(c) {
            return Err(invalid(file, &format!("{key}.{at}"), what));
        }
        if let Some(b) = c.get("build") {
            let set = |k: &str| {
                b.get(k)
                    .and_then(Json::as_str)
                    .is_some_and(|s| !s.is_empty())
            };
            if set("dockerfile") && set("dockerfile_inline") {
                return Err(invalid(
                    file,
                    &format!("{key}.build.dockerfile_inline"),
                    "`dockerfile` and `dockerfile_inline` cannot be used together; keep one",
                ));
            }
            if let Some(Json::Object(ac)) = b.get("additional_contexts") {
                for (ctx, target) in ac {
                    let Some(other) = target.as_str().and_then(|t| t.strip_prefix("service:"))
                    else {
                        continue;
                    };
                    let why = match services.get(other) {
                        None => format!("names the unknown service `{other}`"),
                        Some(o) if o.build.is_none() => {
                            format!("names the service `{other}`, which has no `build`")
                        }
                        Some(_) => continue,
                    };
                    return Err(invalid(
                        file,
                        &format!("{key}.build.additional_contexts.{ctx}"),
                        &why,
                    ));
                }
            }
        }
        if let Some(Json::String(first)) = c
            .get("healthcheck")
            .and_then(|h| h.get("test"))
            .and_then(|t| t.get(0))
        {
            if !matches!(first.as_str(), "CMD" | "CMD-SHELL" | "NONE") {
                return Err(invalid(
                    file,
                    &format!("{key}.healthcheck.test"),
                    "must start with CMD, CMD-SHELL or NONE",
                ));
            }
        }
        if let Some(Json::Object(deps)) = c.get("depends_on") {
            for (dep, spec) in deps {
                let required = spec.get("required").and_then(Json::as_bool).unwrap_or(true);
                if required && !services.contains_key(dep) {
                    return Err(invalid(
                        file,
                        &key,
                        &format!(
                            "depends on undefined service `{dep}` (through `links`, `volumes_from` or `network_mode`)"
                        ),
                    ));
                }
            }
        }
        let sources = |k: &str| -> Vec<(usize, String)> {
            match c.get(k) {
                Some(Json::Array(a)) => a
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| {
                        k != "volumes" || e.get("type").and_then(Json::as_str) == Some("volume")
                    })
                    .filter_map(|(i, e)| Some((i, e.get("source")?.as_str()?.to_string())))
                    .filter(|(_, s)| !s.is_empty())
                    .collect(),
                _ => Vec::new(),
            }
        };
        for (kind, what) in [
            ("volumes", "volume"),
            ("secrets", "secret"),
            ("configs", "config"),
        ] {
            for (i, src) in sources(kind) {
                if !defined(kind, &src) {
                    return Err(invalid(
                        file,
                        &format!("{key}.{kind}[{i}]"),
                        &format!("refers to undefined {what} `{src}`; define it under the top-level `{kind}:`"),
                    ));
                }
            }
        }
        if let Some(Json::Object(models)) = c.get("models") {
            if let Some(m) = models.keys().find(|m| !defined("models", m)) {
                return Err(invalid(
                    file,
                    &format!("{key}.models"),
                    &format!(
                        "refers to undefined model `{m}`; define it under the top-level `models:`"
                    ),
                ));
            }
        }
        let deploy = c.get("deploy");
        let at = |p: &[&str]| p.iter().try_fold(deploy?, |j, k| j.get(*k));
        let scale = number(c.get("scale"));
        let replicas = number(at(&["replicas"]));
        for (k, v) in [("scale", scale), ("deploy.replicas", replicas)] {
            if v.is_some_and(|v| v < 0.0) {
                return Err(invalid(file, &format!("{key}.{k}"), "must be 0 or more"));
            }
        }
        let twice = [
            ("scale", scale, "deploy.replicas", replicas),
            (
                "cpus",
                number(c.get("cpus")),
                "deploy.resources.limits.cpus",
                number(at(&["resources", "limits", "cpus"])),
            ),
            (
                "mem_limit",
                number(c.get("mem_limit")),
                "deploy.resources.limits.memory",
                number(at(&["resources", "limits", "memory"])),
            ),
            (
                "mem_reservation",
                number(c.get("mem_reservation")),
                "deploy.resources.reservations.memory",
                number(at(&["resources", "reservations", "memory"])),
            ),
            (
                "pids_limit",
                number(c.get("pids_limit")),
                "deploy.resources.limits.pids",
                number(at(&["resources", "limits", "pids"])),
            ),
        ];
        for (a, x, b, y) in twice {
            if let (Some(x), Some(y)) = (x, y) {
                if x != 0.0 && x != y {
                    return Err(invalid(
                        file,
                        &format!("{key}.{a}"),
                        &format!("differs from `{b}`; give the value once, or the same in both"),
                    ));
                }
            }
        }
        if let Some(Json::String(n)) = c.get("container_name") {
            // compose's schema pattern `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, which
            // JSON Schema matches anywhere in the value (`-xy` passes, `c`
            // does not).
            let chars: Vec<char> = n.chars().collect();
            let ok = chars.windows(2).any(|w| {
                w[0].is_ascii_alphanumeric()
                    && (w[1].is_ascii_alphanumeric() || matches!(w[1], '_' | '.' | '-'))
            });
            if !ok {
                return Err(invalid(
                    file,
                    &format!("{key}.container_name"),
                    "must hold a letter or digit followed by a letter, digit, `_`, `.` or `-` (compose's pattern `[a-zA-Z0-9][a-zA-Z0-9_.-]+`)",
                ));
            }
        }
        if c.get("container_name").is_some() && scale.or(replicas).is_some_and(|n| n > 1.0) {
            return Err(invalid(
                file,
                &format!("{key}.container_name"),
                "cannot be used with more than one replica (`scale` or `deploy.replicas`): container names are unique",
            ));
        }
    }
    Ok(())
}

/// State shared while files, includes and extends are read.
#[derive(Default)]
struct Loader {
    /// `HOME`, for `~` in paths.
    home: Option<String>,
    /// Files read so far: text and the name shown in messages.
    texts: HashMap<PathBuf, (String, PathBuf)>,
    /// The keys of `texts` in the order read.
    read_order: Vec<PathBuf>,
    /// Warnings so far, each once.
    warnings: Vec<String>,
    /// The `!reset` / `!override` key paths of each file read, so the file
    /// in the middle of an `extends` chain applies its own (compose 2.40).
    resets: HashMap<PathBuf, Vec<Vec<String>>>,
}

const TOP_KEYS: &[&str] = &[
    "version", "name", "include", "services", "networks", "volumes", "secrets", "configs", "models",
];

const SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "pull_refresh_after",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];

fn known(keys: &[&str], k: &str) -> bool {
    keys.contains(&k) || k.starts_with("x-")
}

/// The schema checks compose makes on each document: known keys at the top,
/// in services and in `build:`, and the right kinds of values there.
///
/// A file read only as the base of an `extends` may hold null services, which
/// compose accepts there.
fn validate_document(v: &Value, file: &Path, nested: bool) -> Result<(), ComposeError> {
    let Value::Mapping(top) = v else {
        return Ok(());
    };
    if let Some((at, k)) = super::schema::non_string_key(v, &mut Vec::new()) {
        let at = if at.is_empty() {
            "(top level)".to_string()
        } else {
            at
        };
        return Err(invalid(
            file,
            &at,
            &format!("non-string key `{k}`: quote it to make it a string"),
        ));
    }
    for k in top.keys().map(key_text) {
        if !known(TOP_KEYS, &k) {
            return Err(invalid(file, &k, "unknown top-level key"));
        }
    }
    let services = match top.get("services") {
        None => return Ok(()),
        Some(Value::Mapping(m)) => m,
        Some(_) => return Err(invalid(file, "services", "must be a mapping")),
    };
    for (name, svc) in services {
        let name = key_text(name);
        let key = format!("services.{name}");
        let m = match svc {
            Value::Mapping(m) => m,
            Value::Null if nested => continue,
            _ => return Err(invalid(file, &key, "a service must be a mapping")),
        };
        super::schema::check_service(m, &key).map_err(|(k, msg)| invalid(file, &k, msg))?;
        for k in m.keys().map(key_text) {
            if !known(SERVICE_KEYS, &k) {
                return Err(invalid(
                    file,
                    &format!("{key}.{k}"),
                    "unknown key; see https://docs.docker.com/reference/compose-file/services/",
                ));
            }
        }
        match m.get("build") {
            None | Some(Value::String(_)) => {}
            Some(Value::Mapping(b)) => {
                for k in b.keys().map(key_text) {
                    if !known(BUILD_KEYS, &k) {
                        return Err(invalid(
                            file,
                            &format!("{key}.build.{k}"),
                            "unknown key; see https://docs.docker.com/reference/compose-file/build/",
                        ));
                    }
                }
                if let Some(Value::Null) = b.get("ssh") {
                    return Err(invalid(
                        file,
                        &format!("{key}.build.ssh"),
                        "must be a list or a mapping",
                    ));
                }
            }
            Some(_) => {
                return Err(invalid(
                    file,
                    &format!("{key}.build"),
                    "must be a string (the context) or a mapping",
                ))
            }
        }
        if let Some(e) = m.get("extends") {
            let ok = match e {
                Value::String(_) => true,
                Value::Mapping(x) => matches!(x.get("service"), Some(Value::String(_))),
                _ => false,
            };
            if !ok {
                return Err(invalid(
                    file,
                    &format!("{key}.extends"),
                    "must be a service name or a mapping with `service` (and `file`)",
                ));
            }
        }
    }
    Ok(())
}

fn yaml_error(path: &Path, e: &crate::compose::yaml::Error) -> ComposeError {
    ComposeError::Yaml {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    }
}

impl Loader {
    /// Reads `files` (every YAML document of each) into one merged, canonical
    /// mapping, as compose-go's `loadYamlModel` does.
    ///
    /// `loader_dir` is where `include` and same-project `extends.file` paths
    /// resolve; relative paths in the result are made absolute against
    /// `base`. `nested` marks the base file of an `extends`, which is read
    /// without its own includes and extends (they are followed lazily).
    fn load_model(
        &mut self,
        files: &[PathBuf],
        env: &HashMap<String, String>,
        loader_dir: &Path,
        base: &Path,
        nested: bool,
        included: &[PathBuf],
    ) -> Result<Value, ComposeError> {
        let lookup = |name: &str| env.get(name).cloned();
        let mut dict = Value::Mapping(Mapping::new());
        for file in files {
            let (text, shown) = self.read(file)?;
            let blank = text
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
            if blank {
                return Err(invalid(
                    &shown,
                    "(top level)",
                    "empty compose file: define at least `services:`",
                ));
            }
            for doc in crate::compose::yaml::Deserializer::from_str(&text) {
                let raw = Value::deserialize(doc).map_err(|e| yaml_error(&shown, &e))?;
                if raw.is_null() {
                    return Err(invalid(
                        &shown,
                        "(top level)",
                        "top-level object must be a mapping",
                    ));
                }
                let mut resets = Vec::new();
                let mut value =
                    resolve_tags(raw, &mut Vec::new(), &mut resets).unwrap_or(Value::Null);
                self.resets
                    .entry(file.clone())
                    .or_default()
                    .extend(resets.iter().cloned());
                merge::apply_merge_keys(&mut value, &mut Vec::new())
                    .map_err(|(key, m)| invalid(&shown, &key, &m))?;
                if value.is_null() {
                    value = Value::Mapping(Mapping::new());
                }
                if !value.is_mapping() {
                    return Err(invalid(
                        &shown,
                        "(top level)",
                        "a Compose file must be a mapping",
                    ));
                }
                let mut unset = Vec::new();
                interpolate::interpolate_value_with_warnings(
                    &mut value,
                    &lookup,
                    &mut Vec::new(),
                    &mut |name| unset.push(name.to_string()),
                )
                .map_err(|e| ComposeError::Interpolate {
                    path: shown.clone(),
                    at: e
                        .path()
                        .and_then(|k| crate::compose::yaml::locate(&text, k)),
                    message: e.to_string(),
                })?;
                for name in unset {
                    self.warn(format!(
                        "the `{name}` variable is not set; defaulting to a blank string"
                    ));
                }
                if value.get("version").is_some() {
                    self.warn(format!(
                        "`{}`: the attribute `version` is obsolete and ignored",
                        shown.display()
                    ));
                }
                validate_document(&value, &shown, nested)?;
                if !nested {
                    self.apply_extends(&mut value, &shown, env, loader_dir, &resets)?;
                }
                apply_resets(&mut dict, &resets);
                if !nested {
                    self.apply_include(&mut value, &shown, env, loader_dir, included)?;
                }
                dict = merge::merge(dict, value, &mut Vec::new())
                    .map_err(|m| invalid(&shown, "(merge)", &m))?;
                merge::enforce_unicity(&mut dict, &mut Vec::new());
                if let Value::Mapping(m) = &mut dict {
                    m.remove("version");
                }
            }
        }
        canonical(
            &mut dict,
            files.first().map(PathBuf::as_path).unwrap_or(base),
        )?;
        merge::enforce_unicity(&mut dict, &mut Vec::new());
        if let Some(Value::Mapping(services)) = dict.get_mut("services") {
            for (_, s) in services.iter_mut() {
                if let Some(Value::Mapping(b)) = s.get_mut("build") {
                    if !nested && !b.contains_key("context") {
                        b.insert("context".into(), ".".into());
                    }
                }
            }
        }
        self.resolve_paths(&mut dict, base);
        if !nested {
            resolve_bare_environment(&mut dict, env);
        }
        Ok(dict)
    }

    fn warn(&mut self, w: String) {
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
        }
    }

    fn expand_user(&self, p: &str) -> String {
        match (p.strip_prefix('~'), &self.home) {
            (Some(rest), Some(home)) => format!("{home}/{}", rest.trim_start_matches('/')),
            _ => p.to_string(),
        }
    }

    fn abs(&self, base: &Path, p: &str) -> String {
        let p = self.expand_user(p);
        if p.is_empty() {
            return p;
        }
        absolute(base, Path::new(&p)).to_string_lossy().into_owned()
    }

    /// A service volume's host path made absolute against `base`, in short
    /// form (`./src:/code`) or long (`type: bind`). compose-go reads a short
    /// source as a path when it starts with `.`, `/` or `~`, else as a volume
    /// name; an absolute path is kept as written (trailing slash included).
    fn resolve_volume_source(&self, v: &mut Value, base: &Path) {
        let resolve = |src: &str| -> String {
            if Path::new(src).is_absolute() {
                src.to_string()
            } else {
                self.abs(base, src)
            }
        };
        match v {
            Value::String(spec) => {
                let Some((src, rest)) = spec.split_once(':') else {
                    return;
                };
                if src.starts_with(['.', '/', '~']) {
                    *spec = format!("{}:{rest}", resolve(src));
                }
            }
            Value::Mapping(m) => {
                let bind = matches!(m.get("type"), Some(Value::String(t)) if t == "bind");
                if let (true, Some(Value::String(src))) = (bind, m.get_mut("source")) {
                    *src = resolve(src);
                }
            }
            _ => {}
        }
    }

    /// Makes the paths compose resolves absolute against `base` (compose-go
    /// `paths.ResolveRelativePaths`).
    fn resolve_paths(&self, dict: &mut Value, base: &Path) {
        let remote = |s: &str| s.contains("://") || super::is_remote(s);
        if let Some(Value::Mapping(services)) = dict.get_mut("services") {
            for (_, s) in services.iter_mut() {
                let Value::Mapping(s) = s else { continue };
                if let Some(Value::Mapping(b)) = s.get_mut("build") {
                    if let Some(Value::String(c)) = b.get_mut("context") {
                        if !remote(c) {
                            *c = self.abs(base, c);
                        }
                    }
                    if let Some(Value::Mapping(ssh)) = b.get_mut("ssh") {
                        for (_, p) in ssh.iter_mut() {
                            if let Value::String(p) = p {
                                *p = self.abs(base, p);
                            }
                        }
                    }
                    if let Some(Value::Mapping(ac)) = b.get_mut("additional_contexts") {
                        for (_, c) in ac.iter_mut() {
                            if let Value::String(c) = c {
                                if !remote(c) && !c.starts_with("service:") {
                                    *c = self.abs(base, c);
                                }
                            }
                        }
                    }
                }
                if let Some(Value::Sequence(vols)) = s.get_mut("volumes") {
                    for v in vols.iter_mut() {
                        self.resolve_volume_source(v, base);
                    }
                }
                if let Some(Value::Sequence(files)) = s.get_mut("env_file") {
                    for f in files {
                        if let Some(Value::String(p)) = f.get_mut("path") {
                            *p = self.abs(base, p);
                        }
                    }
                }
                if let Some(Value::Sequence(watch)) =
                    s.get_mut("develop").and_then(|d| d.get_mut("watch"))
                {
                    for w in watch {
                        if let Some(Value::String(p)) = w.get_mut("path") {
                            *p = self.abs(base, p);
                            // compose-go's `absSymbolicLink`: a link is
                            // watched as the path it points to.
                            if std::fs::symlink_metadata(&*p).is_ok_and(|m| m.is_symlink()) {
                                if let Ok(real) = std::fs::canonicalize(&*p) {
                                    *p = real.to_string_lossy().into_owned();
                                }
                            }
                        }
                    }
                }
                if let Some(Value::Mapping(e)) = s.get_mut("extends") {
                    if let Some(Value::String(f)) = e.get_mut("file") {
                        *f = self.abs(base, f);
                    }
                }
            }
        }
        for key in ["configs", "secrets"] {
            if let Some(Value::Mapping(m)) = dict.get_mut(key) {
                for (_, d) in m.iter_mut() {
                    if let Some(Value::String(f)) = d.get_mut("file") {
                        *f = self.abs(base, f);
                    }
                }
            }
        }
    }

    /// Replaces every service that `extends` another with the merge of the
    /// two (compose-go `ApplyExtends`).
    fn apply_extends(
        &mut self,
        dict: &mut Value,
        file: &Path,
        env: &HashMap<String, String>,
        loader_dir: &Path,
        resets: &[Vec<String>],
    ) -> Result<(), ComposeError> {
        let Some(Value::Mapping(services)) = dict.get_mut("services") else {
            return Ok(());
        };
        let names: Vec<String> = services.keys().map(key_text).collect();
        for name in names {
            let mut chain = Vec::new();
            let merged =
                self.extend_service(&name, services, file, env, loader_dir, resets, &mut chain)?;
            services.insert(Value::String(name), merged);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn extend_service(
        &mut self,
        name: &str,
        services: &mut Mapping,
        file: &Path,
        env: &HashMap<String, String>,
        loader_dir: &Path,
        resets: &[Vec<String>],
        chain: &mut Vec<(PathBuf, String)>,
    ) -> Result<Value, ComposeError> {
        let key = format!("services.{name}");
        let Some(svc) = services.get(name).cloned() else {
            return Ok(Value::Null);
        };
        let mut svc = match svc {
            Value::Mapping(m) => m,
            Value::Null => return Ok(Value::Null),
            _ => return Err(invalid(file, &key, "a service must be a mapping")),
        };
        let Some(ext) = svc.get("extends").cloned() else {
            return Ok(Value::Mapping(svc));
        };
        let (reference, other) = match &ext {
            Value::String(s) => (s.clone(), None),
            Value::Mapping(m) => (
                m.get("service").and_then(scalar_text).unwrap_or_default(),
                m.get("file").and_then(scalar_text),
            ),
            _ => (String::new(), None),
        };
        let base_file = match &other {
            Some(f) => PathBuf::from(self.abs(loader_dir, f)),
            None => file.to_path_buf(),
        };
        let link = (base_file.clone(), reference.clone());
        if chain.contains(&link) {
            let mut shown: Vec<String> = chain
                .iter()
                .map(|(f, s)| format!("`{s}` ({})", f.display()))
                .collect();
            shown.push(format!("`{reference}`"));
            return Err(invalid(
                file,
                &format!("{key}.extends"),
                &format!("circular reference: {}", shown.join(" extends ")),
            ));
        }
        chain.push(link);
        let base = match &other {
            Some(_) => {
                let dir = base_file
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                let loaded =
                    self.load_model(std::slice::from_ref(&base_file), env, &dir, &dir, true, &[])?;
                let mut others = match loaded.get("services") {
                    Some(Value::Mapping(m)) => m.clone(),
                    _ => Mapping::new(),
                };
                if !others.contains_key(reference.as_str()) {
                    return Err(invalid(
                        file,
                        &format!("{key}.extends"),
                        &format!(
                            "cannot extend service `{reference}`: no such service in `{}`",
                            base_file.display()
                        ),
                    ));
                }
                let resets = self.resets.get(&base_file).cloned().unwrap_or_default();
                self.extend_service(
                    &reference,
                    &mut others,
                    &base_file,
                    env,
                    &dir,
                    &resets,
                    chain,
                )?
            }
            None => {
                if !services.contains_key(reference.as_str()) {
                    return Err(invalid(
                        file,
                        &format!("{key}.extends"),
                        &format!("cannot extend service `{reference}`: no such service"),
                    ));
                }
                self.extend_service(&reference, services, file, env, loader_dir, resets, chain)?
            }
        };
        chain.pop();
        svc.remove("extends");
        if base.is_null() {
            return Ok(Value::Mapping(svc));
        }
        let mut wrapped = Mapping::new();
        let mut inner = Mapping::new();
        inner.insert(Value::String(name.to_string()), base);
        wrapped.insert("services".into(), Value::Mapping(inner));
        let mut wrapped = Value::Mapping(wrapped);
        apply_resets(&mut wrapped, resets);
        let base = wrapped
            .get("services")
            .and_then(|s| s.get(name))
            .cloned()
            .unwrap_or(Value::Null);
        let mut merged = merge::merge(
            base,
            Value::Mapping(svc),
            &mut vec!["services".to_string(), "x".to_string()],
        )
        .map_err(|m| invalid(file, &key, &m))?;
        if let Value::Mapping(m) = &mut merged {
            m.remove("extends");
        }
        services.insert(Value::String(name.to_string()), merged.clone());
        Ok(merged)
    }

    /// Loads each `include:` entry as a project of its own and adds its
    /// resources (compose-go `ApplyInclude`); a resource defined differently
    /// on both sides is an error.
    fn apply_include(
        &mut self,
        dict: &mut Value,
        file: &Path,
        env: &HashMap<String, String>,
        loader_dir: &Path,
        included: &[PathBuf],
    ) -> Result<(), ComposeError> {
        let Value::Mapping(top) = dict else {
            return Ok(());
        };
        let Some(inc) = top.remove("include") else {
            return Ok(());
        };
        let items = match inc {
            Value::Sequence(s) => s,
            Value::Null => Vec::new(),
            _ => return Err(invalid(file, "include", "must be a list")),
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("include[{i}]");
            let (paths, project_dir, env_files) = match item {
                Value::String(s) => (vec![s.clone()], None, Vec::new()),
                Value::Mapping(m) => (
                    string_list(
                        file,
                        &format!("{key}.path"),
                        m.get("path").unwrap_or(&Value::Null),
                    )?,
                    m.get("project_directory").and_then(scalar_text),
                    string_list(
                        file,
                        &format!("{key}.env_file"),
                        m.get("env_file").unwrap_or(&Value::Null),
                    )?,
                ),
                _ => return Err(invalid(file, &key, "must be a path or a mapping")),
            };
            let paths: Vec<PathBuf> = paths
                .iter()
                .map(|p| PathBuf::from(self.abs(loader_dir, p)))
                .collect();
            let Some(first) = paths.first().cloned() else {
                return Err(invalid(file, &format!("{key}.path"), "must name a file"));
            };
            let first_dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
            let project_dir = project_dir
                .map(|d| PathBuf::from(self.abs(loader_dir, &d)))
                .unwrap_or_else(|| first_dir.clone());
            if included.contains(&first) {
                let mut chain: Vec<String> = included
                    .iter()
                    .map(|f| format!("`{}`", f.display()))
                    .collect();
                chain.push(format!("`{}`", first.display()));
                return Err(invalid(
                    file,
                    &key,
                    &format!("include cycle: {}", chain.join(" includes ")),
                ));
            }
            let env_files: Vec<PathBuf> = if env_files.is_empty() {
                let f = project_dir.join(".env");
                if f.is_file() {
                    vec![f]
                } else {
                    Vec::new()
                }
            } else {
                env_files
                    .iter()
                    .map(|f| PathBuf::from(self.abs(loader_dir, f)))
                    .collect()
            };
            let mut from_files: HashMap<String, String> = HashMap::new();
            for f in &env_files {
                let text = fs_err::read_to_string(f).map_err(|source| ComposeError::Read {
                    path: f.clone(),
                    source,
                })?;
                let lookup = |k: &str| env.get(k).cloned().or_else(|| from_files.get(k).cloned());
                let pairs = dotenv::parse_env_file(&text, f, &lookup)?;
                from_files.extend(pairs);
            }
            let mut inc_env = env.clone();
            for (k, v) in from_files {
                inc_env.entry(k).or_insert(v);
            }
            let mut chain = included.to_vec();
            chain.push(first.clone());
            // Relative paths in the included files resolve against its
            // project directory (`project_directory`, else the first file's
            // folder), as compose-go's `ApplyInclude` loads it.
            let imported =
                self.load_model(&paths, &inc_env, &project_dir, &project_dir, false, &chain)?;
            for res in ["services", "volumes", "networks", "secrets", "configs"] {
                let Some(Value::Mapping(from)) = imported.get(res) else {
                    continue;
                };
                let to = top
                    .entry(res.into())
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                if to.is_null() {
                    *to = Value::Mapping(Mapping::new());
                }
                let Value::Mapping(to) = to else {
                    return Err(invalid(file, res, "must be a mapping"));
                };
                for (k, v) in from {
                    match to.get(k) {
                        Some(existing) if existing == v => {}
                        Some(_) => {
                            return Err(invalid(
                                file,
                                &format!("{res}.{}", key_text(k)),
                                &format!(
                                    "conflicts with the one imported from `{}`",
                                    first.display()
                                ),
                            ))
                        }
                        None => {
                            to.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Gives each bare `KEY` of a service's `environment` list the value `env`
/// has for it (compose-go's `ResolveEnvironment`, run at the end of every
/// `loadYamlModel`): an included file's services so take theirs from the
/// include's environment, not from the including project's. A map-form
/// `KEY:` is left for the project environment, as compose-go leaves it.
fn resolve_bare_environment(dict: &mut Value, env: &HashMap<String, String>) {
    let Some(Value::Mapping(services)) = dict.get_mut("services") else {
        return;
    };
    for (_, s) in services.iter_mut() {
        let Some(Value::Sequence(entries)) = s.get_mut("environment") else {
            continue;
        };
        for e in entries.iter_mut() {
            if let Value::String(k) = e {
                if let (false, Some(v)) = (k.contains('='), env.get(k.as_str())) {
                    *k = format!("{k}={v}");
                }
            }
        }
    }
}

/// compose-go's `transform.Canonical`: the short forms that matter for the
/// model, rewritten to their long forms.
fn canonical(dict: &mut Value, file: &Path) -> Result<(), ComposeError> {
    let Some(Value::Mapping(services)) = dict.get_mut("services") else {
        return Ok(());
    };
    for (name, s) in services.iter_mut() {
        let key = format!("services.{}", key_text(name));
        let Value::Mapping(s) = s else { continue };
        if let Some(b) = s.get_mut("build") {
            if let Value::String(c) = b {
                let mut m = Mapping::new();
                m.insert("context".into(), Value::String(c.clone()));
                *b = Value::Mapping(m);
            }
            if let Value::Mapping(b) = b {
                if let Some(ssh) = b.get_mut("ssh") {
                    match ssh {
                        Value::Mapping(_) => {}
                        Value::Sequence(items) => {
                            let mut m = Mapping::new();
                            for it in items.iter() {
                                let s = scalar_text(it).unwrap_or_default();
                                match s.split_once('=') {
                                    Some((id, p)) => m.insert(id.into(), p.into()),
                                    None if s == "default" => m.insert(s.into(), Value::Null),
                                    None => {
                                        return Err(invalid(
                                            file,
                                            &format!("{key}.build.ssh"),
                                            &format!("invalid ssh key `{s}`"),
                                        ))
                                    }
                                };
                            }
                            *ssh = Value::Mapping(m);
                        }
                        _ => {
                            return Err(invalid(
                                file,
                                &format!("{key}.build.ssh"),
                                "must be a list or a mapping",
                            ))
                        }
                    }
                }
                if let Some(Value::Sequence(items)) = b.get("additional_contexts").cloned() {
                    let mut m = Mapping::new();
                    for it in items {
                        let s = scalar_text(&it).unwrap_or_default();
                        let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                        m.insert(k.into(), v.into());
                    }
                    b.insert("additional_contexts".into(), Value::Mapping(m));
                }
                if let Some(Value::Sequence(items)) = b.get_mut("secrets") {
                    for it in items.iter_mut() {
                        if let Value::String(src) = it {
                            let mut m = Mapping::new();
                            m.insert("source".into(), Value::String(src.clone()));
                            *it = Value::Mapping(m);
                        }
                    }
                }
            }
        }
        if let Some(e) = s.get_mut("extends") {
            if let Value::String(svc) = e {
                let mut m = Mapping::new();
                m.insert("service".into(), Value::String(svc.clone()));
                *e = Value::Mapping(m);
            }
        }
        if let Some(ef) = s.get_mut("env_file") {
            let items = match ef.clone() {
                Value::String(p) => vec![Value::String(p)],
                Value::Sequence(s) => s,
                _ => Vec::new(),
            };
            let items = items
                .into_iter()
                .map(|it| match it {
                    Value::String(p) => {
                        let mut m = Mapping::new();
                        m.insert("path".into(), Value::String(p));
                        m.insert("required".into(), true.into());
                        Value::Mapping(m)
                    }
                    other => other,
                })
                .collect();
            *ef = Value::Sequence(items);
        }
        for k in ["networks", "depends_on"] {
            if let Some(v) = s.get_mut(k) {
                if let Value::Sequence(_) = v {
                    let dflt = if k == "networks" {
                        Value::Null
                    } else {
                        let mut m = Mapping::new();
                        m.insert("condition".into(), "service_started".into());
                        m.insert("required".into(), true.into());
                        Value::Mapping(m)
                    };
                    *v = Value::Mapping(merge::to_mapping(v.clone(), &dflt));
                }
            }
        }
    }
    Ok(())
}

fn invalid(path: &Path, key: &str, message: &str) -> ComposeError {
    ComposeError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.to_string(),
        at: None,
    }
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    clean(&joined)
}

/// Lexical cleaning of `.` and `..` (the path need not exist).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The Compose files to read: `-f`, else `COMPOSE_FILE`, else the default
/// names in the working directory or its nearest parent that has one, plus
/// the matching `.override` file.
fn discover(
    opts: &LoadOptions,
    env: &HashMap<String, String>,
) -> Result<Vec<PathBuf>, ComposeError> {
    if !opts.files.is_empty() {
        return Ok(opts
            .files
            .iter()
            .map(|f| {
                if f.as_os_str() == "-" {
                    f.clone()
                } else {
                    absolute(&opts.cwd, f)
                }
            })
            .collect());
    }
    if let Some(list) = env.get("COMPOSE_FILE").filter(|s| !s.is_empty()) {
        let sep = env
            .get("COMPOSE_PATH_SEPARATOR")
            .and_then(|s| s.chars().next())
            .unwrap_or(':');
        return Ok(list
            .split(sep)
            .filter(|s| !s.is_empty())
            .map(|f| absolute(&opts.cwd, Path::new(f)))
            .collect());
    }
    let start = opts
        .project_directory
        .as_ref()
        .map(|d| absolute(&opts.cwd, d))
        .unwrap_or_else(|| opts.cwd.clone());
    let mut dir = Some(start.as_path());
    while let Some(d) = dir {
        for name in DEFAULT_FILES {
            let f = d.join(name);
            if f.is_file() {
                let mut files = vec![f];
                let (stem, ext) = name.rsplit_once('.').unwrap_or((name, "yml"));
                let over = d.join(format!("{stem}.override.{ext}"));
                if over.is_file() {
                    files.push(over);
                }
                return Ok(files);
            }
        }
        dir = d.parent();
    }
    Err(ComposeError::NotFound { dir: start })
}

fn read_file(file: &Path) -> Result<(String, PathBuf), ComposeError> {
    if file.as_os_str() == "-" {
        let mut b = Vec::new();
        let shown = PathBuf::from("(standard input)");
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|source| ComposeError::Read {
                path: shown.clone(),
                source,
            })?;
        let text = decode_text(&b, &shown)?;
        check_depth(&text, &shown)?;
        return Ok((text, shown));
    }
    let b = fs_err::read(file).map_err(|source| ComposeError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let text = decode_text(&b, file)?;
    check_depth(&text, file)?;
    Ok((text, file.to_path_buf()))
}

/// Refuses flow collections nested deeper than the parser handles in
/// reasonable time (see [`crate::compose::yaml::MAX_FLOW_DEPTH`]).
fn check_depth(text: &str, path: &Path) -> Result<(), ComposeError> {
    match crate::compose::yaml::flow_too_deep(text) {
        None => Ok(()),
        Some((line, column)) => Err(ComposeError::Yaml {
            path: path.to_path_buf(),
            line: Some(line),
            message: format!(
                "flow collections (`[`, `{{`) nested deeper than {} levels at line {line} column {column}",
                crate::compose::yaml::MAX_FLOW_DEPTH
            ),
        }),
    }
}

/// A Compose file's text. Like go-yaml, this reads UTF-8 (a byte-order
/// mark is dropped) and UTF-16 with a byte-order mark; invalid UTF-8 is an
/// error naming the line.
fn decode_text(b: &[u8], path: &Path) -> Result<String, ComposeError> {
    let utf16 = |f: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = b[2..]
            .chunks(2)
            .map(|c| f([c[0], *c.get(1).unwrap_or(&0)]))
            .collect();
        String::from_utf16(&units).map_err(|_| ComposeError::Yaml {
            path: path.to_path_buf(),
            line: None,
            message: "invalid UTF-16 text".to_string(),
        })
    };
    if b.starts_with(&[0xff, 0xfe]) {
        return utf16(u16::from_le_bytes);
    }
    if b.starts_with(&[0xfe, 0xff]) {
        return utf16(u16::from_be_bytes);
    }
    let b = b.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(b);
    match std::str::from_utf8(b) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            let before = &b[..e.valid_up_to()];
            let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
            let column = before.len()
                - before
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            Err(ComposeError::Yaml {
                path: path.to_path_buf(),
                line: Some(line),
                message: format!(
                    "invalid UTF-8 at line {line}, column {column}: save the file as UTF-8"
                ),
            })
        }
    }
}

/// The variables interpolation sees: the env files (`--env-file`, else the
/// project's `.env`), overridden by the process environment.
fn environment(
    opts: &LoadOptions,
    env_dir: &Path,
) -> Result<HashMap<String, String>, ComposeError> {
    let mut env: HashMap<String, String> = HashMap::new();
    let files: Vec<PathBuf> = if opts.env_files.is_empty() {
        let default = env_dir.join(".env");
        if default.is_file() {
            vec![default]
        } else {
            vec![]
        }
    } else {
        opts.env_files
            .iter()
            .map(|f| absolute(&opts.cwd, f))
            .collect()
    };
    for f in files {
        let text = fs_err::read_to_string(&f).map_err(|source| ComposeError::Read {
            path: f.clone(),
            source,
        })?;
        let lookup = |k: &str| {
            opts.environment
                .get(k)
                .cloned()
                .or_else(|| env.get(k).cloned())
        };
        let pairs = dotenv::parse_env_file(&text, &f, &lookup)?;
        env.extend(pairs);
    }
    for (k, v) in &opts.environment {
        env.insert(k.clone(), v.clone());
    }
    Ok(env)
}

impl Loader {
    /// The project name: `-p`, else `COMPOSE_PROJECT_NAME`, else the last
    /// `name:` of the files (interpolated), each of which must already be a
    /// valid name; else the project directory's name, normalised.
    fn project_name(
        &mut self,
        opts: &LoadOptions,
        env: &HashMap<String, String>,
        files: &[PathBuf],
        working_dir: &Path,
        file: &Path,
    ) -> Result<String, ComposeError> {
        // (name, where it came from): the key an error names.
        let mut given = opts
            .project_name
            .clone()
            .filter(|s| !s.is_empty())
            .map(|n| (n, "-p"))
            .or_else(|| {
                env.get("COMPOSE_PROJECT_NAME")
                    .cloned()
                    .filter(|s| !s.is_empty())
                    .map(|n| (n, "COMPOSE_PROJECT_NAME"))
            });
        let mut from = file.to_path_buf();
        if given.is_none() {
            let lookup = |name: &str| env.get(name).cloned();
            for f in files {
                let (text, shown) = self.read(f)?;
                for doc in crate::compose::yaml::Deserializer::from_str(&text) {
                    // Syntax errors are reported when the file is loaded; a
                    // failed document also ends the stream.
                    let m = match Value::deserialize(doc) {
                        Ok(Value::Mapping(m)) => m,
                        Ok(_) => continue,
                        Err(_) => break,
                    };
                    if let Some(n) = m.get("name").and_then(scalar_text) {
                        let n = interpolate::interpolate(&n, &lookup).map_err(|e| {
                            ComposeError::Interpolate {
                                path: shown.clone(),
                                at: crate::compose::yaml::locate(&text, "name"),
                                message: e.with_path("name").to_string(),
                            }
                        })?;
                        // compose 2.40 normalises a `name:` from a file (lower
                        // case, invalid characters dropped); only `-p` and
                        // COMPOSE_PROJECT_NAME must already be valid.
                        let n = normalize_project_name(&n);
                        if !n.is_empty() {
                            given = Some((n, "name"));
                            from = shown.clone();
                        }
                    }
                }
            }
        }
        let (name, key) = match given {
            Some(g) => g,
            None => (
                normalize_project_name(
                    &working_dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                "(project directory name)",
            ),
        };
        if name.is_empty() {
            return Err(invalid(&from, key, "the project name must not be empty"));
        }
        if normalize_project_name(&name) != name {
            return Err(invalid(
                &from,
                key,
                &format!("invalid project name `{name}`: use only lowercase letters, digits, `-` and `_`, starting with a letter or digit"),
            ));
        }
        Ok(name)
    }

    /// A file's text (read once, so standard input can be read twice) and
    /// the name to show for it.
    fn read(&mut self, file: &Path) -> Result<(String, PathBuf), ComposeError> {
        if let Some(t) = self.texts.get(file) {
            return Ok(t.clone());
        }
        let t = read_file(file)?;
        self.texts.insert(file.to_path_buf(), t.clone());
        self.read_order.push(file.to_path_buf());
        Ok(t)
    }

    /// Gives a value error the line and column of the node it names, in
    /// the last file read that has that node, which it then names: a value
    /// merged in from an override file is checked under the first file's
    /// name, and the error stops loading, so no file read after the bad one
    /// can hide it. Left as it is when no file has the node as written.
    fn place(&self, e: ComposeError) -> ComposeError {
        let ComposeError::Invalid {
            path,
            key,
            message,
            at: None,
        } = e
        else {
            return e;
        };
        let found = self
            .read_order
            .iter()
            .rev()
            .filter_map(|f| self.texts.get(f))
            .find_map(|(text, shown)| Some((shown, crate::compose::yaml::locate(text, &key)?)));
        match found {
            Some((shown, at)) => ComposeError::Invalid {
                path: shown.clone(),
                key,
                message,
                at: Some(at),
            },
            None => ComposeError::Invalid {
                path,
                key,
                message,
                at: None,
            },
        }
    }
}

/// Compose's project-name normalisation: lower case, only `a-z0-9_-`, and
/// starting with a letter or digit.
pub fn normalize_project_name(raw: &str) -> String {
    let lower: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    lower
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn service(
    file: &Path,
    name: &str,
    v: &Value,
    working_dir: &Path,
    env: &HashMap<String, String>,
) -> Result<Service, ComposeError> {
    let key = format!("services.{name}");
    let m = match v {
        Value::Mapping(m) => m.clone(),
        Value::Null => Mapping::new(),
        _ => return Err(invalid(file, &key, "a service must be a mapping")),
    };
    let mut svc = Service {
        name: name.to_string(),
        ..Default::default()
    };
    if let Some(image) = m.get("image") {
        svc.image = Some(scalar(file, &format!("{key}.image"), image)?);
    }
    if let Some(p) = m.get("pull_policy") {
        svc.pull_policy = Some(scalar(file, &format!("{key}.pull_policy"), p)?);
    }
    if let Some(p) = m.get("profiles") {
        svc.profiles = string_list(file, &format!("{key}.profiles"), p)?;
    }
    if let Some(b) = m.get("build") {
        svc.build = Some(build(file, &format!("{key}.build"), b, working_dir, env)?);
    }
    // compose-go's `WithServicesEnvironmentResolved`: an env file's
    // `${VAR}` is looked up in the project environment, then in the
    // service's own `environment` (its bare keys resolved from the project
    // environment), then among the keys the env files set before it.
    let own: HashMap<String, String> = m
        .get("environment")
        .map(super::render::pairs)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| Some((k.clone(), v.or_else(|| env.get(&k).cloned())?)))
        .collect();
    let from_files = env_files(file, &key, m.get("env_file"), env, &own)?;
    let mut commands: Vec<(String, &Value)> = ["command", "entrypoint"]
        .iter()
        .filter_map(|k| Some((format!("{key}.{k}"), m.get(*k)?)))
        .collect();
    for hook in ["post_start", "pre_stop"] {
        if let Some(Value::Sequence(hooks)) = m.get(hook) {
            for (i, h) in hooks.iter().enumerate() {
                if let Some(c) = h.get("command") {
                    commands.push((format!("{key}.{hook}[{i}].command"), c));
                }
            }
        }
    }
    for (at, c) in commands {
        if let Value::String(c) = c {
            if super::shellwords::split(c).is_none() {
                return Err(invalid(
                    file,
                    &at,
                    "invalid command line string: close every quote, end with no lone `\\`, \
                     and write a `(` only as `$(`, or give the command as a list",
                ));
            }
        }
    }
    svc.config = super::render::service_json(&m, &from_files, env);
    svc.extensions = m
        .iter()
        .filter(|(k, _)| key_text(k).starts_with("x-"))
        .map(|(k, v)| (key_text(k), super::render::to_json_all(v)))
        .collect();
    Ok(svc)
}

/// Reads a service's `env_file:` entries (canonical form: `path` and
/// `required`), later files overriding earlier ones. A missing file is an
/// error unless `required: false`.
fn env_files(
    file: &Path,
    key: &str,
    v: Option<&Value>,
    env: &HashMap<String, String>,
    own: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, ComposeError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let Some(Value::Sequence(items)) = v else {
        return Ok(out);
    };
    for (i, it) in items.iter().enumerate() {
        let at = format!("{key}.env_file[{i}]");
        let path = it
            .get("path")
            .and_then(scalar_text)
            .ok_or_else(|| invalid(file, &at, "needs a `path`"))?;
        let required = match it.get("required") {
            None => true,
            Some(r) => boolean(file, &format!("{at}.required"), r)?,
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            if required {
                return Err(invalid(
                    file,
                    &at,
                    &format!("env file `{}` not found", path.display()),
                ));
            }
            continue;
        }
        let text = fs_err::read_to_string(&path).map_err(|source| ComposeError::Read {
            path: path.clone(),
            source,
        })?;
        let lookup = |k: &str| {
            env.get(k).or_else(|| own.get(k)).cloned().or_else(|| {
                out.iter()
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            })
        };
        let format = it.get("format").and_then(scalar_text);
        let pairs = match format.as_deref() {
            None | Some("") => dotenv::parse_env_file(&text, &path, &lookup)?,
            Some("raw") => raw_env_file(&text, &path)?,
            Some(other) => {
                return Err(invalid(
                    file,
                    &format!("{at}.format"),
                    &format!("unsupported env_file format `{other}`; use `raw` or leave it out"),
                ))
            }
        };
        out.extend(pairs);
    }
    Ok(out)
}

/// compose 2.40's `format: raw` env file: `KEY=VALUE` lines taken verbatim
/// (no quotes removed, no interpolation, no comments after values); blank
/// lines, `#` lines and lines without `=` are skipped.
fn raw_env_file(text: &str, path: &Path) -> Result<Vec<(String, String)>, ComposeError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(invalid(
                path,
                &format!("line {}", i + 1),
                &format!("variable `{k}` contains whitespace"),
            ));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn scalar(file: &Path, key: &str, v: &Value) -> Result<String, ComposeError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(invalid(file, key, "must be a string")),
    }
}

fn boolean(file: &Path, key: &str, v: &Value) -> Result<bool, ComposeError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if matches!(s.as_str(), "true" | "True" | "TRUE" | "yes" | "on") => {
            Ok(true)
        }
        Value::String(s) if matches!(s.as_str(), "false" | "False" | "FALSE" | "no" | "off") => {
            Ok(false)
        }
        _ => Err(invalid(file, key, "must be a boolean")),
    }
}

fn string_list(file: &Path, key: &str, v: &Value) -> Result<Vec<String>, ComposeError> {
    match v {
        Value::Sequence(s) => s
            .iter()
            .enumerate()
            .map(|(i, x)| scalar(file, &format!("{key}[{i}]"), x))
            .collect(),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Null => Ok(vec![]),
        _ => Err(invalid(file, key, "must be a list of strings")),
    }
}

/// A mapping, or a list of `KEY=VALUE` / `KEY` entries (Compose's two forms
/// for `args`, `labels` and the like). `KEY` alone maps to `None`.
fn dict(
    file: &Path,
    key: &str,
    v: &Value,
) -> Result<BTreeMap<String, Option<String>>, ComposeError> {
    let mut out = BTreeMap::new();
    match v {
        Value::Mapping(m) => {
            for (k, val) in m {
                let k = scalar(file, key, k)?;
                let val = match val {
                    Value::Null => None,
                    other => Some(scalar(file, &format!("{key}.{k}"), other)?),
                };
                out.insert(k, val);
            }
        }
        Value::Sequence(s) => {
            for (i, item) in s.iter().enumerate() {
                let item = scalar(file, &format!("{key}[{i}]"), item)?;
                match item.split_once('=') {
                    Some((k, val)) => out.insert(k.to_string(), Some(val.to_string())),
                    None => out.insert(item, None),
                };
            }
        }
        Value::Null => {}
        _ => {
            return Err(invalid(
                file,
                key,
                "must be a mapping or a list of KEY=VALUE",
            ))
        }
    }
    Ok(out)
}

const BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "dockerfile_inline",
    "args",
    "ssh",
    "cache_from",
    "cache_to",
    "additional_contexts",
    "extra_hosts",
    "isolation",
    "labels",
    "network",
    "no_cache",
    "pull",
    "shm_size",
    "target",
    "secrets",
    "tags",
    "ulimits",
    "platforms",
    "privileged",
    "entitlements",
    "provenance",
    "sbom",
];

fn build(
    file: &Path,
    key: &str,
    v: &Value,
    working_dir: &Path,
    env: &HashMap<String, String>,
) -> Result<BuildSpec, ComposeError> {
    let mut spec = BuildSpec::default();
    let m = match v {
        Value::String(s) => {
            let mut m = Mapping::new();
            m.insert("context".into(), Value::String(s.clone()));
            m
        }
        Value::Mapping(m) => m.clone(),
        _ => {
            return Err(invalid(
                file,
                key,
                "must be a string (the context) or a mapping",
            ))
        }
    };
    for (k, _) in &m {
        let k = k.as_str().unwrap_or_default();
        if !BUILD_KEYS.contains(&k) && !k.starts_with("x-") {
            return Err(invalid(
                file,
                &format!("{key}.{k}"),
                "unknown key; see https://docs.docker.com/reference/compose-file/build/",
            ));
        }
    }
    let get = |name: &str| m.get(name);
    let sub = |name: &str| format!("{key}.{name}");
    let context = match get("context") {
        Some(c) => scalar(file, &sub("context"), c)?,
        None => ".".to_string(),
    };
    spec.context = if super::is_remote(&context) {
        context
    } else {
        absolute(working_dir, Path::new(&context))
            .to_string_lossy()
            .into_owned()
    };
    match get("dockerfile") {
        // An empty value (say an unset variable) leaves no Dockerfile at
        // all, as compose 2.26 prints it (README surprise 5).
        Some(d) => {
            spec.dockerfile = Some(scalar(file, &sub("dockerfile"), d)?).filter(|d| !d.is_empty())
        }
        None if get("dockerfile_inline").is_none() => {
            spec.dockerfile = Some("Dockerfile".to_string())
        }
        None => {}
    }
    if let Some(d) = get("dockerfile_inline") {
        spec.dockerfile_inline = Some(scalar(file, &sub("dockerfile_inline"), d)?);
    }
    if let Some(a) = get("args") {
        for (k, val) in dict(file, &sub("args"), a)? {
            // `KEY` alone takes the value from the environment, or is left
            // out when the variable is not set (as Compose does).
            if let Some(val) = val.or_else(|| env.get(&k).cloned()) {
                spec.args.insert(k, Some(val));
            }
        }
    }
    if let Some(l) = get("labels") {
        spec.labels = dict(file, &sub("labels"), l)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
    }
    if let Some(t) = get("target") {
        spec.target = Some(scalar(file, &sub("target"), t)?);
    }
    if let Some(x) = get("ssh") {
        spec.ssh = match x {
            Value::Mapping(_) => dict(file, &sub("ssh"), x)?
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k,
                })
                .collect(),
            _ => string_list(file, &sub("ssh"), x)?,
        };
    }
    if let Some(x) = get("cache_from") {
        spec.cache_from = string_list(file, &sub("cache_from"), x)?;
    }
    if let Some(x) = get("cache_to") {
        spec.cache_to = string_list(file, &sub("cache_to"), x)?;
    }
    if let Some(x) = get("additional_contexts") {
        spec.additional_contexts = dict(file, &sub("additional_contexts"), x)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
    }
    if let Some(x) = get("extra_hosts") {
        spec.extra_hosts = match x {
            Value::Mapping(_) => dict(file, &sub("extra_hosts"), x)?
                .into_iter()
                .map(|(k, v)| format!("{k}={}", v.unwrap_or_default()))
                .collect(),
            _ => string_list(file, &sub("extra_hosts"), x)?,
        };
    }
    if let Some(x) = get("isolation") {
        spec.isolation = Some(scalar(file, &sub("isolation"), x)?);
    }
    if let Some(x) = get("network") {
        spec.network = Some(scalar(file, &sub("network"), x)?);
    }
    if let Some(x) = get("no_cache") {
        spec.no_cache = boolean(file, &sub("no_cache"), x)?;
    }
    if let Some(x) = get("pull") {
        spec.pull = boolean(file, &sub("pull"), x)?;
    }
    if let Some(x) = get("privileged") {
        spec.privileged = boolean(file, &sub("privileged"), x)?;
    }
    if let Some(x) = get("shm_size") {
        let s = scalar(file, &sub("shm_size"), x)?;
        // compose accepts a negative size and BuildKit ignores it: no limit.
        let s = s.trim();
        if !s.starts_with('-') {
            spec.shm_size = Some(parse_bytes(s).ok_or_else(|| {
                invalid(
                    file,
                    &sub("shm_size"),
                    "must be a size such as `256m` or `1gb`",
                )
            })?);
        }
    }
    if let Some(x) = get("tags") {
        spec.tags = string_list(file, &sub("tags"), x)?;
    }
    if let Some(x) = get("platforms") {
        spec.platforms = string_list(file, &sub("platforms"), x)?;
    }
    if let Some(x) = get("secrets") {
        let Value::Sequence(items) = x else {
            return Err(invalid(file, &sub("secrets"), "must be a list"));
        };
        for (i, item) in items.iter().enumerate() {
            let k = format!("{}[{i}]", sub("secrets"));
            spec.secrets.push(match item {
                Value::Mapping(m) => BuildSecret {
                    source: m
                        .get("source")
                        .map(|s| scalar(file, &format!("{k}.source"), s))
                        .transpose()?
                        .ok_or_else(|| invalid(file, &k, "needs a `source`"))?,
                    target: m
                        .get("target")
                        .map(|s| scalar(file, &format!("{k}.target"), s))
                        .transpose()?,
                },
                other => BuildSecret {
                    source: scalar(file, &k, other)?,
                    target: None,
                },
            });
        }
    }
    if let Some(x) = get("ulimits") {
        let Value::Mapping(m) = x else {
            return Err(invalid(file, &sub("ulimits"), "must be a mapping"));
        };
        for (name, val) in m {
            let name = scalar(file, &sub("ulimits"), name)?;
            let k = format!("{}.{name}", sub("ulimits"));
            let v = match val {
                Value::Mapping(lim) => {
                    let soft = lim.get("soft").map(|s| scalar(file, &k, s)).transpose()?;
                    let hard = lim.get("hard").map(|s| scalar(file, &k, s)).transpose()?;
                    match (soft, hard) {
                        (Some(s), Some(h)) => format!("{s}:{h}"),
                        (Some(s), None) | (None, Some(s)) => s,
                        (None, None) => return Err(invalid(file, &k, "needs `soft` and `hard`")),
                    }
                }
                other => scalar(file, &k, other)?,
            };
            spec.ulimits.insert(name, v);
        }
    }
    Ok(spec)
}

/// Docker's size notation (`512`, `64k`, `256m`, `1gb`; binary units).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    Some((num * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::render;

    fn load_str(yaml: &str, env: &[(&str, &str)]) -> Result<Project, ComposeError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("compose.yaml");
        std::fs::write(&f, yaml).unwrap();
        let opts = LoadOptions {
            cwd: dir.path().to_path_buf(),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let p = load(&opts);
        drop(dir);
        p
    }

    #[test]
    fn short_and_long_build_forms() {
        let p = load_str(
            "name: my_app\nservices:\n  a:\n    build: ./a\n  b:\n    image: reg/b:1\n    build:\n      context: b\n      dockerfile: Dockerfile.dev\n      args: [X=1, Y]\n      labels: {l: v}\n      target: prod\n      shm_size: 1gb\n",
            &[("Y", "from-env")],
        )
        .unwrap();
        assert_eq!(p.name, "my_app");
        let a = p.services["a"].build.as_ref().unwrap();
        assert!(a.context.ends_with("/a"), "{}", a.context);
        assert_eq!(p.services["a"].image_name(&p.name), "my_app-a");
        let b = p.services["b"].build.as_ref().unwrap();
        assert_eq!(b.dockerfile.as_deref(), Some("Dockerfile.dev"));
        assert_eq!(b.args["X"].as_deref(), Some("1"));
        assert_eq!(b.args["Y"].as_deref(), Some("from-env"));
        assert_eq!(b.labels["l"], "v");
        assert_eq!(b.target.as_deref(), Some("prod"));
        assert_eq!(b.shm_size, Some(1 << 30));
        assert_eq!(p.services["b"].image_name(&p.name), "reg/b:1");
    }

    #[test]
    fn unknown_build_key_names_the_key() {
        let err = load_str("services:\n  a:\n    build:\n      contxt: .\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("services.a.build.contxt"), "{err}");
        assert!(err.contains("compose.yaml"), "{err}");
    }

    #[test]
    fn yaml_errors_name_file_and_line() {
        let err = load_str("services:\n  a:\n    build: [\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("compose.yaml"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn value_errors_name_file_line_and_column() {
        // Issue 14: a wrong kind under a key names where the value is.
        let at = |files: &[(&str, &str)], args: &[&str]| match load_dir(files, args, &[]).1 {
            Err(ComposeError::Invalid { path, key, at, .. }) => (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                key,
                at,
            ),
            other => panic!("expected a value error, got {other:?}"),
        };
        let base = "services:\n  app:\n    image: x\n    command: ok\n";
        assert_eq!(
            at(
                &[(
                    "compose.yaml",
                    "services:\n  app:\n    image: x\n    ports:\n      - 80\n      - [1]\n"
                )],
                &[]
            ),
            (
                "compose.yaml".into(),
                "services.app.ports[1]".into(),
                Some((6, 9))
            )
        );
        assert_eq!(
            at(
                &[(
                    "compose.yaml",
                    "services:\n  app:\n    image: x\n    ports: 5\n"
                )],
                &[]
            ),
            (
                "compose.yaml".into(),
                "services.app.ports".into(),
                Some((4, 12))
            )
        );
        assert_eq!(
            at(&[("compose.yaml", "x-a: &a\n  args: [1]\nservices:\n  app:\n    image: x\n    build:\n      context: .\n      args: [1]\n")], &[]),
            ("compose.yaml".into(), "services.app.build.args[0]".into(), Some((8, 14)))
        );
        // A bad value merged in from an override file is found there.
        assert_eq!(
            at(
                &[
                    ("compose.yaml", base),
                    ("o.yaml", "services:\n  app:\n    command: \"a (b\"\n")
                ],
                &["compose.yaml", "o.yaml"]
            ),
            (
                "o.yaml".into(),
                "services.app.command".into(),
                Some((3, 14))
            )
        );
        // In an included file, the included file is named.
        assert_eq!(
            at(
                &[
                    (
                        "compose.yaml",
                        "include: [lib/lib.yaml]\nservices:\n  main:\n    image: x\n"
                    ),
                    (
                        "lib/lib.yaml",
                        "services:\n  lib:\n    image: x\n    user: [1]\n"
                    )
                ],
                &[]
            ),
            ("lib.yaml".into(), "services.lib.user".into(), Some((4, 11)))
        );
        let err = load_str("services:\n  app:\n    image: [x]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("compose.yaml:3:12`: `services.app.image`"),
            "{err}"
        );
        let err = load_str(
            "services:\n  app:\n    image: x\n    environment:\n      A: ${NOPE:?set it}\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "compose.yaml:5:10`: error while interpolating services.app.environment.A"
            ),
            "{err}"
        );
        // compose's container name pattern matches anywhere in the value.
        for (name, ok) in [
            ("c", false),
            ("-x", false),
            ("a b", false),
            ("-xy", true),
            ("ab cd", true),
        ] {
            let r = load_str(
                &format!("services:\n  app:\n    image: x\n    container_name: \"{name}\"\n"),
                &[],
            );
            assert_eq!(r.is_ok(), ok, "{name}: {r:?}");
        }
    }

    /// Writes `files` (name, text) into a fresh folder and loads it with
    /// `-f` for each name in `args` (none: discovery), plus `profiles`.
    fn load_dir(
        files: &[(&str, &str)],
        args: &[&str],
        profiles: &[&str],
    ) -> (tempfile::TempDir, Result<Project, ComposeError>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = dir.path().join(name);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(&p, text).unwrap();
        }
        let opts = LoadOptions {
            cwd: dir.path().to_path_buf(),
            files: args.iter().map(PathBuf::from).collect(),
            profiles: profiles.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let p = load(&opts);
        (dir, p)
    }

    fn build_json(p: &Project, svc: &str) -> serde_json::Value {
        p.services[svc].config["build"].clone()
    }

    #[test]
    fn merge_rules_across_files() {
        let (_d, p) = load_dir(
            &[
                (
                    "a.yaml",
                    "services:\n  s:\n    image: one\n    command: [a, b]\n    environment: {A: 1, B: 2}\n    build:\n      context: .\n      args: [X=1, Y=1]\n      tags: [t1]\n",
                ),
                (
                    "b.yaml",
                    "services:\n  s:\n    image: two\n    command: [c]\n    environment: [B=3]\n    build:\n      args: {Y: 2}\n      tags: [t2, t1]\n",
                ),
            ],
            &["a.yaml", "b.yaml"],
            &[],
        );
        let p = p.unwrap();
        let s = &p.services["s"];
        assert_eq!(s.image.as_deref(), Some("two"));
        assert_eq!(s.config["command"], serde_json::json!(["c"]));
        assert_eq!(
            s.config["environment"],
            serde_json::json!({"A": "1", "B": "3"})
        );
        let b = s.build.as_ref().unwrap();
        assert_eq!(b.args["X"].as_deref(), Some("1"));
        assert_eq!(b.args["Y"].as_deref(), Some("2"));
        assert_eq!(b.tags, ["t1", "t2"]);
    }

    #[test]
    fn reset_and_override_tags() {
        let (_d, p) = load_dir(
            &[
                (
                    "a.yaml",
                    "services:\n  s:\n    image: x\n    ports: ['80:80']\n    labels: {a: b}\n",
                ),
                (
                    "b.yaml",
                    "services:\n  s:\n    ports: !reset []\n    labels: !override {c: d}\n",
                ),
            ],
            &["a.yaml", "b.yaml"],
            &[],
        );
        let p = p.unwrap();
        let c = &p.services["s"].config;
        assert!(!c.contains_key("ports"), "{c:?}");
        assert_eq!(c["labels"], serde_json::json!({"c": "d"}));
    }

    #[test]
    fn extends_resolves_paths_against_the_extended_file() {
        let (d, p) = load_dir(
            &[
                (
                    "compose.yaml",
                    "services:\n  web:\n    extends:\n      file: sub/base.yaml\n      service: base\n    image: web\n  local:\n    extends: web\n",
                ),
                (
                    "sub/base.yaml",
                    "services:\n  base:\n    build:\n      context: ctx\n      target: prod\n",
                ),
            ],
            &[],
            &[],
        );
        let p = p.unwrap();
        let ctx = d.path().join("sub/ctx");
        for s in ["web", "local"] {
            let b = p.services[s].build.as_ref().unwrap();
            assert_eq!(Path::new(&b.context), ctx, "{s}");
            assert_eq!(b.target.as_deref(), Some("prod"));
        }
        assert_eq!(p.services["local"].image.as_deref(), Some("web"));
    }

    #[test]
    fn extends_cycle_is_an_error() {
        let (_d, p) = load_dir(
            &[(
                "compose.yaml",
                "services:\n  a:\n    extends: b\n  b:\n    extends: a\n",
            )],
            &[],
            &[],
        );
        let err = p.unwrap_err().to_string();
        assert!(err.contains("circular reference"), "{err}");
        assert!(err.contains("compose.yaml"), "{err}");
    }

    #[test]
    fn include_imports_services_with_their_own_env_and_paths() {
        let (d, p) = load_dir(
            &[
                (
                    "compose.yaml",
                    "include:\n  - path: lib/compose.yaml\n    env_file: lib.env\nservices:\n  app:\n    image: app\n",
                ),
                ("lib.env", "TAG=7\n"),
                (
                    "lib/compose.yaml",
                    "services:\n  lib:\n    image: lib:${TAG}\n    build: .\n",
                ),
            ],
            &[],
            &[],
        );
        let p = p.unwrap();
        assert_eq!(p.services["lib"].image.as_deref(), Some("lib:7"));
        let ctx = &p.services["lib"].build.as_ref().unwrap().context;
        assert_eq!(Path::new(ctx), d.path().join("lib"));
        assert!(p.services.contains_key("app"));
    }

    #[test]
    fn include_cycle_is_an_error() {
        let (_d, p) = load_dir(
            &[
                ("compose.yaml", "include: [b.yaml]\nservices: {}\n"),
                ("b.yaml", "include: [compose.yaml]\n"),
            ],
            &[],
            &[],
        );
        let err = p.unwrap_err().to_string();
        assert!(err.contains("include cycle"), "{err}");
    }

    #[test]
    fn profiles_disable_services_unless_active() {
        let files = [(
            "compose.yaml",
            "services:\n  a:\n    image: a\n  dbg:\n    image: d\n    profiles: [debug]\n",
        )];
        let (_d, p) = load_dir(&files, &[], &[]);
        assert_eq!(p.unwrap().services.keys().collect::<Vec<_>>(), ["a"]);
        let (_d, p) = load_dir(&files, &[], &["debug"]);
        assert_eq!(p.unwrap().services.keys().collect::<Vec<_>>(), ["a", "dbg"]);
    }

    #[test]
    fn dependency_on_a_disabled_service_is_an_error() {
        let (_d, p) = load_dir(
            &[(
                "compose.yaml",
                "services:\n  a:\n    image: a\n    depends_on: [b]\n  b:\n    image: b\n    profiles: [x]\n",
            )],
            &[],
            &[],
        );
        let err = p.unwrap_err().to_string();
        assert!(err.contains("services.a.depends_on"), "{err}");
    }

    #[test]
    fn build_is_printed_as_compose_prints_it() {
        let (d, p) = load_dir(
            &[(
                "compose.yaml",
                "services:\n  s:\n    build:\n      args: [A, B=$$x]\n      shm_size: 128m\n  i:\n    build:\n      dockerfile_inline: FROM x\n",
            )],
            &[],
            &[],
        );
        let p = p.unwrap();
        let ctx = d.path().to_string_lossy().into_owned();
        assert_eq!(
            build_json(&p, "s"),
            serde_json::json!({"context": ctx, "dockerfile": "Dockerfile", "args": {"B": "$x"}, "shm_size": "134217728"})
        );
        assert_eq!(
            build_json(&p, "i"),
            serde_json::json!({"context": ctx, "dockerfile_inline": "FROM x"})
        );
        let out = crate::compose::render::project_json(&p);
        assert_eq!(out["services"]["s"]["build"]["args"]["B"], "$$x");
    }

    #[test]
    fn unknown_keys_and_missing_variables_are_errors() {
        let err = load_str("services:\n  a:\n    imagee: x\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("services.a.imagee"), "{err}");
        let err = load_str("variables: {}\nservices: {}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`variables`"), "{err}");
        let err = load_str("services:\n  a:\n    image: ${X:?set X}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("services.a.image") && err.contains("set X"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        let (_d, p) = load_dir(&[], &["nope.yaml"], &[]);
        let err = p.unwrap_err().to_string();
        assert!(err.contains("nope.yaml"), "{err}");
    }

    #[test]
    fn invalid_project_name_is_an_error() {
        // compose 2.40 checks a name given by -p or COMPOSE_PROJECT_NAME ...
        let err = load_str("services: {}\n", &[("COMPOSE_PROJECT_NAME", "My_App")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid project name"), "{err}");
    }

    #[test]
    fn name_from_a_file_is_normalised() {
        // ... and lower-cases a `name:` from a file (issue 14, item 6).
        let p = load_str("name: myProject\nservices: {}\n", &[]).unwrap();
        assert_eq!(p.name, "myproject");
    }

    fn svc_json(p: &Project, svc: &str) -> serde_json::Value {
        serde_json::Value::Object(p.services[svc].config.clone())
    }

    #[test]
    fn nested_merge_keys_expand() {
        // Issue 14, item 1: a merged mapping with a merge key of its own.
        let p = load_str(
            "x-r: &r {restart: unless-stopped}\nx-d: &d {<<: *r, image: busybox}\nservices: {app: {<<: *d}}\n",
            &[],
        )
        .unwrap();
        let c = svc_json(&p, "app");
        assert_eq!(c["image"], "busybox");
        assert_eq!(c["restart"], "unless-stopped");
        // A list of merges: the earlier mapping wins, keys present win.
        let p = load_str(
            "x-a: &a {image: a, restart: always}\nx-b: &b {image: b, user: u}\nservices: {s: {<<: [*a, *b], user: me}}\n",
            &[],
        )
        .unwrap();
        let c = svc_json(&p, "s");
        assert_eq!(
            (&c["image"], &c["restart"], &c["user"]),
            (&"a".into(), &"always".into(), &"me".into())
        );
        let err = load_str("services: {s: {<<: 5, image: x}}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("services.s.<<"), "{err}");
    }

    #[test]
    fn include_resolves_against_its_project_directory() {
        // Issue 14, item 2: `env_file` and the build context of an included
        // file resolve against `project_directory` (as compose 2.40 does).
        let (d, p) = load_dir(
            &[
                (
                    "compose.yaml",
                    "include:\n  - path: inc/compose.yaml\n    project_directory: sub\n",
                ),
                (
                    "inc/compose.yaml",
                    "services:\n  a:\n    build: ctx\n    env_file: app.env\n",
                ),
                ("sub/app.env", "A=1\n"),
            ],
            &[],
            &[],
        );
        let p = p.unwrap();
        assert_eq!(svc_json(&p, "a")["environment"]["A"], "1");
        assert_eq!(
            p.services["a"].build.as_ref().unwrap().context,
            d.path().join("sub/ctx").to_string_lossy()
        );
    }

    #[test]
    fn lifecycle_hooks_and_240_keys_load() {
        // Issue 14, items 3 and 8.
        let p = load_str(
            "models:\n  m: {model: ai/smollm2}\nservices:\n  a:\n    image: x\n    models: [m]\n    post_start: [{command: echo hi, user: root}]\n    pre_stop: [{command: [echo, bye]}]\n    develop:\n      watch: [{path: ., action: rebuild, include: ['*.go']}]\n    build:\n      context: .\n      provenance: mode=max\n      sbom: true\n",
            &[],
        )
        .unwrap();
        let c = svc_json(&p, "a");
        assert_eq!(c["post_start"][0]["user"], "root");
        assert_eq!(c["build"]["provenance"], "mode=max");
        assert_eq!(c["build"]["sbom"], "true");
    }

    #[test]
    fn raw_env_files_keep_quotes() {
        // Issue 14, item 8: `format: raw` takes values verbatim.
        let (_d, p) = load_dir(
            &[
                ("compose.yaml", "services:\n  a:\n    image: x\n    env_file:\n      - path: r.env\n        format: raw\n"),
                ("r.env", "A=\"quoted\"\nB=x # c\nC=${A}\n# comment\nG\nH=a=b\n"),
            ],
            &[],
            &[],
        );
        let p = p.unwrap();
        let env = &svc_json(&p, "a")["environment"];
        assert_eq!(env["A"], "\"quoted\"");
        assert_eq!(env["B"], "x # c");
        assert_eq!(env["C"], "${A}");
        assert_eq!(env["H"], "a=b");
        assert!(env.get("G").is_none(), "{env}");
    }

    #[test]
    fn reset_and_override_through_extends() {
        // Issue 14, item 4: `!reset` in a service that extends another.
        let p = load_str(
            "services:\n  init: {image: busybox, command: echo hi}\n  base:\n    extends: {service: init}\n    command: !reset\n",
            &[],
        )
        .unwrap();
        assert_eq!(svc_json(&p, "base")["command"], serde_json::Value::Null);
        // Item 5: the middle file of an `extends` chain applies its own
        // `!override` and `!reset`.
        let (_d, p) = load_dir(
            &[
                ("base.yaml", "services:\n  a:\n    image: busybox\n    dns: [1.1.1.1]\n    command: echo base\n"),
                ("mid.yaml", "services:\n  b:\n    extends: {file: base.yaml, service: a}\n    dns: !override [2.2.2.2]\n    command: !reset\n"),
                ("compose.yaml", "services:\n  c:\n    extends: {file: mid.yaml, service: b}\n    dns: [3.3.3.3]\n"),
            ],
            &[],
            &[],
        );
        let c = svc_json(&p.unwrap(), "c");
        assert_eq!(c["dns"], serde_json::json!(["2.2.2.2", "3.3.3.3"]));
        assert_eq!(c["command"], serde_json::Value::Null);
    }

    #[test]
    fn files_compose_rejects_are_rejected() {
        // Issue 14, item 7: each is rejected by compose 2.40.3; the error
        // names the key.
        let cases: &[(&str, &str)] = &[
            ("", "empty compose file"),
            ("# only a comment\n", "empty compose file"),
            ("---\n", "top-level object must be a mapping"),
            ("services:\n", "`services`"),
            ("services:\n  a:\n", "`services.a`"),
            ("services:\n  a:\n    restart: always\n", "neither an `image` nor a `build`"),
            ("services:\n  a:\n    image: x\n    build: {context: ., args: }\n", "services.a.build.args"),
            ("services:\n  a:\n    image: x\n    environment:\n", "services.a.environment"),
            ("services:\n  a:\n    image: x\n    environment: 5\n", "services.a.environment"),
            ("services:\n  a:\n    image: x\n    depends_on: 5\n", "services.a.depends_on"),
            ("services:\n  a:\n    image: x\n    profiles: x\n", "services.a.profiles"),
            ("services:\n  a:\n    image: x\n    labels: {1: a}\n", "non-string key `1`"),
            ("services:\n  a:\n    image: x\n    labels: {true: a}\n", "non-string key `true`"),
            ("services:\n  a:\n    image: x\n    labels: {~: a}\n", "non-string key `null`"),
            ("services:\n  a:\n    image: x\n    labels:\n      ? [a]\n      : a\n", "non-string key"),
            ("services:\n  a:\n    image: x\n    build: {context: ., additional_contexts: [1, 2]}\n", "additional_contexts[0]"),
            ("services:\n  a:\n    image: x\n    build: {context: ., secrets: [nope]}\n", "undefined build secret `nope`"),
            ("services:\n  a:\n    image: x\n    develop: {watch: [{path: ., action: sync}]}\n", "`target` is required"),
        ];
        for (yaml, want) in cases {
            let err = match load_str(yaml, &[]) {
                Ok(_) => panic!("accepted: {yaml:?}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(want), "{yaml:?}: {err}");
            assert!(err.contains("compose.yaml"), "{yaml:?}: {err}");
        }
    }

    #[test]
    fn files_compose_accepts_are_accepted() {
        // Issue 14, item 7, the other way.
        load_str("\u{feff}services:\n  a:\n    image: x\n", &[]).unwrap();
        let p = load_str(
            "services:\n  a:\n    image: x\n    shm_size: -1\n    build: {context: ., shm_size: -1}\n",
            &[],
        )
        .unwrap();
        assert_eq!(p.services["a"].build.as_ref().unwrap().shm_size, None);
        for bom_and_text in [
            [
                &[0xff_u8, 0xfe][..],
                &utf16("services:\n  a:\n    image: x\n", u16::to_le_bytes),
            ]
            .concat(),
            [
                &[0xfe_u8, 0xff][..],
                &utf16("services:\n  a:\n    image: x\n", u16::to_be_bytes),
            ]
            .concat(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("compose.yaml"), bom_and_text).unwrap();
            let p = load(&LoadOptions {
                cwd: dir.path().to_path_buf(),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(p.services["a"].image.as_deref(), Some("x"));
        }
    }

    fn utf16(s: &str, f: fn(u16) -> [u8; 2]) -> Vec<u8> {
        s.encode_utf16().flat_map(f).collect()
    }

    #[test]
    fn bad_yaml_is_an_error_naming_file_and_line() {
        // Issue 14 "bad input": each fails fast with the file and a line or
        // key, never a hang or a huge allocation.
        let laughs = {
            let mut y = String::from("x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
            for i in 1..10 {
                let p = (b'a' + i - 1) as char;
                let c = (b'a' + i) as char;
                y += &format!(
                    "x-{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                );
            }
            y + "services: {s: {image: x, labels: *j}}\n"
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"services:\n  a:\n    image: x\n  image: [\n".to_vec(),
                "line",
            ),
            (
                b"services:\n  a:\n    image: x\n    image: y\n".to_vec(),
                "duplicate",
            ),
            (
                b"services:\n  a:\n    image: \xff\n".to_vec(),
                "line 3, column 12",
            ),
            (laughs.into_bytes(), "compose.yaml"),
            (b"services:\n\tbad: tab\n".to_vec(), "line"),
        ];
        for (bytes, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("compose.yaml"), &bytes).unwrap();
            let err = load(&LoadOptions {
                cwd: dir.path().to_path_buf(),
                ..Default::default()
            })
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    ComposeError::Yaml { .. } | ComposeError::Invalid { .. }
                ),
                "{err:?}"
            );
            let err = err.to_string();
            assert!(err.contains("compose.yaml") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn config_prints_commands_healthchecks_expose_and_extensions_as_compose_240() {
        // Issue 14, item 9 (part): outputs of docker compose 2.40.3.
        let p = load_str(
            "x-e: &e {a: 1, x-n: 2}\nservices:\n  a:\n    image: x\n    command: echo \"a b\" c\\ d 'e f'\n    entrypoint: /bin/sh -c\n    expose: [80, '90']\n    healthcheck: {test: curl -f http://x || exit 1}\n  b:\n    image: x\n    command: ''\n    healthcheck: {test: [CMD, 'true']}\n",
            &[],
        )
        .unwrap();
        let json = render::project_json(&p);
        let a = &json["services"]["a"];
        assert_eq!(
            a["command"],
            serde_json::json!(["echo", "a b", "c d", "e f"])
        );
        assert_eq!(a["entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
        assert_eq!(a["expose"], serde_json::json!(["80", "90"]));
        assert_eq!(
            a["healthcheck"]["test"],
            serde_json::json!(["CMD-SHELL", "curl -f http://x || exit 1"])
        );
        let b = &json["services"]["b"];
        assert_eq!(b["command"], serde_json::json!([]));
        assert_eq!(b["healthcheck"]["test"], serde_json::json!(["CMD", "true"]));
        assert_eq!(json["x-e"], serde_json::json!({"a": 1, "x-n": 2}));
    }

    #[test]
    fn pwd_defaults_to_the_working_directory() {
        // Issue 14, item 10.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "services:\n  a:\n    image: x\n    working_dir: $PWD\n",
        )
        .unwrap();
        let p = load(&LoadOptions {
            cwd: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            p.services["a"].config["working_dir"],
            dir.path().to_string_lossy().as_ref()
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn unset_variables_and_version_are_warned_about() {
        let p = load_str("version: '3'\nservices:\n  a:\n    image: x:${TAG}\n", &[]).unwrap();
        assert_eq!(p.services["a"].image.as_deref(), Some("x:"));
        assert!(
            p.warnings.iter().any(|w| w.contains("`TAG`")),
            "{:?}",
            p.warnings
        );
        assert!(
            p.warnings.iter().any(|w| w.contains("obsolete")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn project_names_are_normalised() {
        assert_eq!(normalize_project_name("My App!"), "myapp");
        assert_eq!(normalize_project_name("_x-Y"), "x-y");
    }
}
