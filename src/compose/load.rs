//! Finding, reading and resolving Compose files the way `docker compose`
//! does: file discovery, `.env`, interpolation, merging of several `-f`
//! files, the project name, and the `build:` section of every service.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::error::ComposeError;
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
    /// `--profile` values.
    pub profiles: Vec<String>,
    /// The directory cbuild runs in.
    pub cwd: PathBuf,
    /// The process environment.
    pub environment: HashMap<String, String>,
}

/// Loads the project described by `opts`.
pub fn load(opts: &LoadOptions) -> Result<Project, ComposeError> {
    let files = discover(opts)?;
    let working_dir = match &opts.project_directory {
        Some(d) => absolute(&opts.cwd, d),
        None => files
            .iter()
            .find(|f| f.as_os_str() != "-")
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| opts.cwd.clone()),
    };
    let env = environment(opts, &working_dir)?;
    let lookup = |name: &str| env.get(name).cloned();

    let mut merged = Value::Mapping(Mapping::new());
    for file in &files {
        let (text, shown) = read_file(file)?;
        let mut value: Value = serde_yaml::from_str(&text).map_err(|e| ComposeError::Yaml {
            path: shown.clone(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
        if value.is_null() {
            value = Value::Mapping(Mapping::new());
        }
        if !value.is_mapping() {
            return Err(ComposeError::Invalid {
                path: shown,
                key: "(top level)".into(),
                message: "a Compose file must be a mapping".into(),
            });
        }
        value.apply_merge().map_err(|e| ComposeError::Yaml {
            path: shown.clone(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
        interpolate::interpolate_value(&mut value, &lookup, &mut Vec::new()).map_err(|e| {
            ComposeError::Interpolate {
                path: shown.clone(),
                message: e.to_string(),
            }
        })?;
        merge(&mut merged, value);
    }

    let top = merged.as_mapping().cloned().unwrap_or_default();
    let shown = files.first().cloned().unwrap_or_default();
    let name = project_name(opts, &env, &top, &working_dir);
    let mut project = Project {
        name,
        working_dir: working_dir.clone(),
        files: files.clone(),
        services: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    if let Some(secrets) = top.get("secrets") {
        let secrets = secrets
            .as_mapping()
            .ok_or_else(|| invalid(&shown, "secrets", "must be a mapping"))?;
        for (k, v) in secrets {
            let name = scalar(&shown, "secrets", k)?;
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
    if let Some(services) = top.get("services") {
        let services = services
            .as_mapping()
            .ok_or_else(|| invalid(&shown, "services", "must be a mapping"))?;
        for (k, v) in services {
            let name = k
                .as_str()
                .ok_or_else(|| invalid(&shown, "services", "service names must be strings"))?
                .to_string();
            let svc = service(&shown, &name, v, &working_dir, &env)?;
            project.services.insert(name, svc);
        }
    }
    Ok(project)
}

fn invalid(path: &Path, key: &str, message: &str) -> ComposeError {
    ComposeError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.to_string(),
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
fn discover(opts: &LoadOptions) -> Result<Vec<PathBuf>, ComposeError> {
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
    if let Some(list) = opts
        .environment
        .get("COMPOSE_FILE")
        .filter(|s| !s.is_empty())
    {
        let sep = opts
            .environment
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
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| ComposeError::Read {
                path: "(standard input)".into(),
                source,
            })?;
        return Ok((s, PathBuf::from("(standard input)")));
    }
    let text = std::fs::read_to_string(file).map_err(|source| ComposeError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    Ok((text, file.to_path_buf()))
}

/// The variables interpolation sees: the env files (`--env-file`, else the
/// project's `.env`), overridden by the process environment.
fn environment(
    opts: &LoadOptions,
    working_dir: &Path,
) -> Result<HashMap<String, String>, ComposeError> {
    let mut env: HashMap<String, String> = HashMap::new();
    let files: Vec<PathBuf> = if opts.env_files.is_empty() {
        let default = working_dir.join(".env");
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
        let text = std::fs::read_to_string(&f).map_err(|source| ComposeError::Read {
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

fn project_name(
    opts: &LoadOptions,
    env: &HashMap<String, String>,
    top: &Mapping,
    working_dir: &Path,
) -> String {
    let raw = opts
        .project_name
        .clone()
        .or_else(|| {
            env.get("COMPOSE_PROJECT_NAME")
                .cloned()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| top.get("name").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            working_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    normalize_project_name(&raw)
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

/// Merges `over` into `base`: mappings key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_mapping() && v.is_mapping() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
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
    Ok(svc)
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
    if let Some(d) = get("dockerfile") {
        spec.dockerfile = Some(scalar(file, &sub("dockerfile"), d)?);
    }
    if let Some(d) = get("dockerfile_inline") {
        spec.dockerfile_inline = Some(scalar(file, &sub("dockerfile_inline"), d)?);
    }
    if let Some(a) = get("args") {
        for (k, val) in dict(file, &sub("args"), a)? {
            // `KEY` alone takes the value from the environment, or is left
            // out when the variable is not set (as Compose does).
            let val = val.or_else(|| env.get(&k).cloned());
            spec.args.insert(k, val);
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
        spec.shm_size = Some(parse_bytes(&s).ok_or_else(|| {
            invalid(
                file,
                &sub("shm_size"),
                "must be a size such as `256m` or `1gb`",
            )
        })?);
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
            "name: My_App\nservices:\n  a:\n    build: ./a\n  b:\n    image: reg/b:1\n    build:\n      context: b\n      dockerfile: Dockerfile.dev\n      args: [X=1, Y]\n      labels: {l: v}\n      target: prod\n      shm_size: 1gb\n",
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
    fn project_names_are_normalised() {
        assert_eq!(normalize_project_name("My App!"), "myapp");
        assert_eq!(normalize_project_name("_x-Y"), "x-y");
    }
}
