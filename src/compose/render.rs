//! The resolved project in the shape `docker compose config --format json`
//! prints (compose v2.40.3, against which the corpus is checked): field names and value kinds of compose-go's
//! `types` package, `build` normalised (absolute context, `Dockerfile` by
//! default, `args` resolved from the environment), env files merged into
//! `environment`, and every `$` written back as `$$`.

use std::collections::HashMap;

use super::yaml::{Mapping, Value};
use serde_json::{json, Map, Value as Json};

use super::load::parse_bytes;
use super::merge::{key_text, scalar_text};
use super::Project;

/// The whole project as `docker compose config` (YAML, its default)
/// prints it, as data. compose's two forms differ: its YAML keeps the
/// extensions its JSON drops (a service's `x-*` keys, the top-level
/// `models`) and leaves out what Go's YAML encoder finds empty (a null
/// `command` or `entrypoint`, an empty `ipam`, deploy `placement` or
/// `resources`, a watch rule's empty `exec`), which its JSON prints.
pub fn project_yaml(p: &Project) -> Json {
    let mut out = project_model(p);
    let Json::Object(top) = &mut out else {
        return out;
    };
    if let Some(Json::Object(networks)) = top.get_mut("networks") {
        for n in networks.values_mut().filter_map(Json::as_object_mut) {
            if n.get("ipam") == Some(&json!({})) {
                n.remove("ipam");
            }
        }
    }
    if let Some(Json::Object(services)) = top.get_mut("services") {
        for (name, s) in services.iter_mut() {
            let Json::Object(s) = s else { continue };
            for k in ["command", "entrypoint"] {
                if s.get(k) == Some(&Json::Null) {
                    s.remove(k);
                }
            }
            if let Some(Json::Object(d)) = s.get_mut("deploy") {
                d.retain(|k, v| {
                    !(matches!(k.as_str(), "placement" | "resources") && *v == json!({}))
                });
            }
            if let Some(Json::Array(watch)) = s.get_mut("develop").and_then(|d| d.get_mut("watch"))
            {
                for w in watch.iter_mut().filter_map(Json::as_object_mut) {
                    if w.get("exec") == Some(&json!({"command": null})) {
                        w.remove("exec");
                    }
                }
            }
            if let Some(svc) = p.services.get(name) {
                let mut x = Json::Object(svc.extensions.clone());
                escape_dollars(&mut x);
                if let Json::Object(x) = x {
                    s.extend(x);
                }
            }
        }
    }
    if let Some(models) = p.config.get("models") {
        let mut models = models.clone();
        escape_dollars(&mut models);
        top.insert("models".into(), models);
    }
    out
}

/// The whole project as `docker compose config --format json` prints it.
pub fn project_json(p: &Project) -> Json {
    let mut out = project_model(p);
    if let Some(Json::Object(services)) = out.get_mut("services") {
        for ports in services.values_mut().filter_map(|s| s.get_mut("ports")) {
            if let Json::Array(ports) = ports {
                for port in ports.iter_mut().filter_map(Json::as_object_mut) {
                    port.retain(|k, _| !k.starts_with("x-"));
                }
            }
        }
    }
    out
}

/// What compose's JSON and YAML models share.
fn project_model(p: &Project) -> Json {
    let mut top = Map::new();
    top.insert("name".into(), Json::String(p.name.clone()));
    let services: Map<String, Json> = p
        .services
        .iter()
        .map(|(k, s)| (k.clone(), Json::Object(s.config.clone())))
        .collect();
    let used = used_resources(&services);
    let uses_default = used.networks.contains("default");
    for (key, used) in [
        ("networks", &used.networks),
        ("volumes", &used.volumes),
        ("secrets", &used.secrets),
        ("configs", &used.configs),
    ] {
        let mut defined = match p.config.get(key) {
            Some(Json::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        if key == "networks" && uses_default && !defined.contains_key("default") {
            defined.insert("default".into(), json!({}));
        }
        let resources = top_level_resources(key, &defined, used, &p.name);
        if !resources.is_empty() {
            top.insert(key.into(), Json::Object(resources));
        }
    }
    top.insert("services".into(), Json::Object(services));
    for (k, v) in &p.config {
        if k.starts_with("x-") {
            top.insert(k.clone(), v.clone());
        }
    }
    let mut out = Json::Object(top);
    escape_dollars(&mut out);
    out
}

/// The top-level resources the services refer to.
#[derive(Default)]
struct Used {
    networks: std::collections::BTreeSet<String>,
    volumes: std::collections::BTreeSet<String>,
    secrets: std::collections::BTreeSet<String>,
    configs: std::collections::BTreeSet<String>,
}

/// Which networks, named volumes, secrets and configs the (rendered)
/// services use; compose 2.40 prints only those.
fn used_resources(services: &Map<String, Json>) -> Used {
    let mut used = Used::default();
    let source = |e: &Json| match e {
        Json::String(s) => Some(s.clone()),
        Json::Object(m) => m.get("source").and_then(Json::as_str).map(String::from),
        _ => None,
    };
    for s in services.values() {
        if let Some(Json::Object(n)) = s.get("networks") {
            used.networks.extend(n.keys().cloned());
        }
        if let Some(Json::Array(vols)) = s.get("volumes") {
            for v in vols {
                if v.get("type").and_then(Json::as_str) == Some("volume") {
                    used.volumes.extend(source(v));
                }
            }
        }
        for (key, set) in [
            ("secrets", &mut used.secrets),
            ("configs", &mut used.configs),
        ] {
            if let Some(Json::Array(list)) = s.get(key) {
                set.extend(list.iter().filter_map(source));
            }
        }
        if let Some(Json::Array(list)) = s.get("build").and_then(|b| b.get("secrets")) {
            used.secrets.extend(list.iter().filter_map(source));
        }
    }
    used
}

/// A top-level `networks`/`volumes`/`secrets`/`configs` section as compose
/// 2.40 prints it: only the entries some service uses, each with its
/// `name` (`<project>_<key>`, or the key itself for an external one),
/// `external` a boolean and left out when false, and networks with an
/// (empty) `ipam`.
fn top_level_resources(
    kind: &str,
    defined: &Map<String, Json>,
    used: &std::collections::BTreeSet<String>,
    project: &str,
) -> Map<String, Json> {
    let mut out = Map::new();
    for (key, v) in defined.iter().filter(|(k, _)| used.contains(*k)) {
        let mut m = match v {
            Json::Object(m) => m.clone(),
            _ => Map::new(),
        };
        // The legacy `external: {name: x}` means `name: x, external: true`.
        if let Some(Json::Object(ext)) = m.get("external") {
            if let Some(name) = ext.get("name").cloned() {
                m.insert("name".into(), name);
            }
            m.insert("external".into(), Json::Bool(true));
        }
        cast_bool(&mut m, "external");
        if m.get("external") == Some(&Json::Bool(false)) {
            m.remove("external");
        }
        let external = m.get("external") == Some(&Json::Bool(true));
        if !m.contains_key("name") {
            let name = if external {
                key.clone()
            } else {
                format!("{project}_{key}")
            };
            m.insert("name".into(), Json::String(name));
        }
        for k in ["driver_opts", "labels"] {
            if let Some(v) = m.get_mut(k) {
                *v = json_string_map(v);
            }
        }
        if kind == "networks" {
            m.entry("ipam").or_insert(json!({}));
        }
        out.insert(key.clone(), Json::Object(m));
    }
    out
}

/// Writes `$` as `$$` in every string, as `docker compose config` does so
/// that its output reads back unchanged.
fn escape_dollars(v: &mut Json) {
    match v {
        Json::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        Json::Array(a) => a.iter_mut().for_each(escape_dollars),
        Json::Object(m) => m.values_mut().for_each(escape_dollars),
        _ => {}
    }
}

/// A YAML value as JSON (keys as text; tags dropped).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64().unwrap_or_default())
            }
        }
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(s) => Json::Array(s.iter().map(to_json).collect()),
        Value::Mapping(m) => Json::Object(
            m.iter()
                .filter(|(k, _)| !key_text(k).starts_with("x-"))
                .map(|(k, v)| (key_text(k), to_json(v)))
                .collect(),
        ),
        Value::Tagged(t) => to_json(&t.value),
    }
}

/// A YAML value as JSON, extension keys included (for the top-level
/// `x-*` values, which compose prints whole).
pub fn to_json_all(v: &Value) -> Json {
    match v {
        Value::Sequence(s) => Json::Array(s.iter().map(to_json_all).collect()),
        Value::Mapping(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (key_text(k), to_json_all(v)))
                .collect(),
        ),
        Value::Tagged(t) => to_json_all(&t.value),
        other => to_json(other),
    }
}

/// `KEY=VALUE` list or mapping → `(key, value)` pairs; a bare `KEY` or a
/// null value gives `None`.
/// The `KEY=value` / `KEY` entries of an `environment`-like list or map.
pub(crate) fn pairs(v: &Value) -> Vec<(String, Option<String>)> {
    match v {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| (key_text(k), scalar_text(v)))
            .collect(),
        Value::Sequence(s) => s
            .iter()
            .filter_map(scalar_text)
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (e, None),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn strings(v: &Value) -> Json {
    match v {
        Value::Sequence(s) => {
            Json::Array(s.iter().filter_map(scalar_text).map(Json::String).collect())
        }
        other => scalar_text(other).map(|s| json!([s])).unwrap_or(Json::Null),
    }
}

/// One service (its canonical mapping) as compose prints it.
pub(crate) fn service_json(
    m: &Mapping,
    from_env_files: &[(String, String)],
    env: &HashMap<String, String>,
) -> Map<String, Json> {
    let mut out = Map::new();
    for (k, v) in m {
        let k = key_text(k);
        match k.as_str() {
            "build" | "env_file" | "extends" | "environment" => {}
            _ if k.starts_with("x-") => {}
            // A long-form port keeps its extensions, which compose's YAML
            // prints (`project_json` drops them).
            "ports" => {
                out.insert(k, to_json_all(v));
            }
            _ => {
                out.insert(k, to_json(v));
            }
        }
    }
    if let Some(Value::Mapping(b)) = m.get("build") {
        out.insert("build".into(), build_json(b, env));
    }
    let mut environment: Map<String, Json> = from_env_files
        .iter()
        .map(|(k, v)| (k.clone(), Json::String(v.clone())))
        .collect();
    if let Some(e) = m.get("environment") {
        for (k, v) in pairs(e) {
            let v = v.or_else(|| env.get(&k).cloned());
            environment.insert(k, v.map(Json::String).unwrap_or(Json::Null));
        }
    }
    if !environment.is_empty() {
        out.insert("environment".into(), Json::Object(environment));
    }
    // compose 2.40 prints its model: a command string is split into words
    // as compose-go's shellwords does, a healthcheck string runs with
    // CMD-SHELL, and exposed ports are strings.
    for k in ["command", "entrypoint"] {
        if let Some(c) = out.get_mut(k) {
            split_command(c);
        }
    }
    for hook in ["post_start", "pre_stop"] {
        if let Some(Json::Array(hooks)) = out.get_mut(hook) {
            hooks.iter_mut().for_each(hook_json);
        }
    }
    if let Some(Json::Array(models)) = out.get("models") {
        // compose-go reads a list of model names as a map to null options.
        let models: Map<String, Json> = models
            .iter()
            .filter_map(Json::as_str)
            .map(|m| (m.to_string(), Json::Null))
            .collect();
        out.insert("models".into(), Json::Object(models));
    }
    if let Some(Json::Array(watch)) = out.get_mut("develop").and_then(|d| d.get_mut("watch")) {
        for w in watch.iter_mut().filter_map(Json::as_object_mut) {
            // `exec` is a struct in compose-go's Trigger, which JSON's
            // omitempty keeps: an absent one prints as `{"command": null}`.
            let exec = w.entry("exec").or_insert_with(|| json!({}));
            hook_json(exec);
            for k in ["include", "ignore"] {
                if let Some(Json::String(s)) = w.get(k) {
                    let list = json!([s]);
                    w.insert(k.into(), list);
                }
            }
        }
    }
    if let Some(Json::Object(h)) = out.get_mut("healthcheck") {
        if let Some(Json::String(t)) = h.get("test") {
            let t = json!(["CMD-SHELL", t]);
            h.insert("test".into(), t);
        }
    }
    if let Some(Json::Array(ports)) = out.get_mut("expose") {
        for p in ports.iter_mut() {
            if let Json::Number(n) = p {
                *p = Json::String(n.to_string());
            }
        }
    }
    if let Some(Json::Array(ports)) = out.get("ports") {
        let ports = ports.iter().flat_map(port_entries).collect();
        out.insert("ports".into(), Json::Array(ports));
    }
    implicit_depends_on(&mut out);
    if let Some(Json::Object(deps)) = out.get_mut("depends_on") {
        depends_on_required(deps);
    }
    if let Some(Json::Array(vols)) = out.get("volumes") {
        let vols = vols.iter().map(volume_entry).collect();
        out.insert("volumes".into(), Json::Array(vols));
    }
    for (key, dir) in [("secrets", Some("/run/secrets/")), ("configs", None)] {
        if let Some(Json::Array(list)) = out.get(key) {
            let list = list.iter().map(|e| file_reference(e, dir)).collect();
            out.insert(key.into(), Json::Array(list));
        }
    }
    for k in ["labels", "annotations", "sysctls"] {
        if let Some(v) = m.get(k) {
            out.insert(k.into(), Json::Object(string_map(v)));
        }
    }
    if let Some(h) = m.get("extra_hosts") {
        out.insert("extra_hosts".into(), extra_hosts(h));
    }
    if let Some(Json::Array(devices)) = out.get("devices") {
        let devices = devices.iter().map(device_entry).collect();
        out.insert("devices".into(), Json::Array(devices));
    }
    cast_scalars(&mut out);
    normalize_durations(&mut out);
    out.entry("command").or_insert(Json::Null);
    out.entry("entrypoint").or_insert(Json::Null);
    if !out.contains_key("networks") && !out.contains_key("network_mode") {
        out.insert("networks".into(), json!({"default": null}));
    }
    out
}

/// One service `volumes:` entry in compose-go's long form (the loader has
/// made host paths absolute already). Short form `source:target:options`:
/// a source that is a path is a bind (compose creates a missing host path),
/// a name a volume, none an anonymous volume; the options `ro`, `z`/`Z`,
/// `nocopy` and a propagation mode land where compose-go puts them.
fn volume_entry(v: &Json) -> Json {
    let spec = match v {
        Json::Object(m) => return long_volume(m),
        Json::String(s) => s,
        other => return other.clone(),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        _ => return v.clone(),
    };
    let bind = source.starts_with(['.', '/', '~']);
    let mut m = Map::new();
    let mut sub = Map::new();
    let kind = if bind { "bind" } else { "volume" };
    m.insert("type".into(), json!(kind));
    if !source.is_empty() {
        m.insert("source".into(), json!(source));
    }
    m.insert("target".into(), json!(clean_target(target)));
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => {
                m.insert("read_only".into(), json!(true));
            }
            "z" | "Z" if bind => {
                sub.insert("selinux".into(), json!(o));
            }
            "nocopy" if !bind => {
                sub.insert("nocopy".into(), json!(true));
            }
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" if bind => {
                sub.insert("propagation".into(), json!(o));
            }
            _ => {}
        }
    }
    if bind {
        sub.insert("create_host_path".into(), json!(true));
    }
    m.insert(kind.into(), Json::Object(sub));
    Json::Object(m)
}

/// A long-form volume entry with the values compose-go types cast (a
/// boolean or size given as text) and the target cleaned.
fn long_volume(m: &Map<String, Json>) -> Json {
    let mut m = m.clone();
    if let Some(Json::String(t)) = m.get("target") {
        let t = clean_target(t);
        m.insert("target".into(), json!(t));
    }
    cast_bool(&mut m, "read_only");
    for (k, flag) in [("bind", "create_host_path"), ("volume", "nocopy")] {
        if let Some(Json::Object(sub)) = m.get_mut(k) {
            cast_bool(sub, flag);
        }
    }
    if let Some(Json::Object(t)) = m.get_mut("tmpfs") {
        let size = match t.get("size") {
            Some(Json::Number(n)) => Some(n.to_string()),
            Some(Json::String(s)) => parse_bytes(s).map(|n| n.to_string()),
            _ => None,
        };
        if let Some(size) = size {
            t.insert("size".into(), json!(size));
        }
    }
    Json::Object(m)
}

/// `"true"`/`"false"` (say from a variable) as the boolean compose-go reads.
fn cast_bool(m: &mut Map<String, Json>, key: &str) {
    if let Some(Json::String(s)) = m.get(key) {
        if let Ok(b) = s.parse::<bool>() {
            m.insert(key.into(), json!(b));
        }
    }
}

/// A container path as Go's `path.Clean` leaves it: no trailing slash, no
/// `.` or `..` steps.
fn clean_target(t: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in t.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    if t.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// A service's `secrets`/`configs` entry in long form: a bare name is the
/// `source`; a secret without `target` is mounted at `/run/secrets/<source>`
/// (`dir`); a `mode` is printed as an octal string (a YAML number is the
/// mode itself, a string, say from a variable, is read as octal).
fn file_reference(e: &Json, dir: Option<&str>) -> Json {
    let mut m = match e {
        Json::String(s) => {
            let mut m = Map::new();
            m.insert("source".into(), json!(s));
            m
        }
        Json::Object(m) => m.clone(),
        other => return other.clone(),
    };
    if let (Some(dir), Some(src)) = (dir, m.get("source").and_then(Json::as_str)) {
        let target = format!("{dir}{src}");
        m.entry("target").or_insert(Json::String(target));
    }
    let mode = match m.get("mode") {
        Some(Json::Number(n)) => n.as_u64(),
        Some(Json::String(t)) => u64::from_str_radix(t.strip_prefix("0o").unwrap_or(t), 8).ok(),
        _ => None,
    };
    if let Some(n) = mode {
        m.insert("mode".into(), Json::String(format!("0{n:o}")));
    }
    Json::Object(m)
}

/// A `KEY=VALUE` list or mapping (`labels`, `annotations`, `sysctls`) as
/// the string map compose-go keeps: a bare key or null value is `""`, a
/// number or boolean its text.
fn string_map(v: &Value) -> Map<String, Json> {
    pairs(v)
        .into_iter()
        .map(|(k, v)| (k, Json::String(v.unwrap_or_default())))
        .collect()
}

/// A `command`-like string split into words as compose-go does.
fn split_command(c: &mut Json) {
    if let Json::String(s) = c {
        if let Some(words) = super::shellwords::split(s) {
            *c = json!(words);
        }
    }
}

/// A lifecycle hook (or a watch rule's `exec`) as compose-go's
/// `ServiceHook` prints: `command` always there and split into words,
/// `environment` a map (a bare key maps to null).
fn hook_json(h: &mut Json) {
    let Json::Object(h) = h else { return };
    let command = h.entry("command").or_insert(Json::Null);
    split_command(command);
    let env = match h.get("environment") {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(Json::as_str)
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), Json::String(v.to_string())),
                None => (e.to_string(), Json::Null),
            })
            .collect(),
        Some(Json::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Json::Null | Json::String(_) => v.clone(),
                    other => Json::String(other.to_string()),
                };
                (k.clone(), v)
            })
            .collect(),
        _ => return,
    };
    h.insert("environment".into(), Json::Object(env));
}

/// `extra_hosts` (list or mapping, `host:ip` or `host=ip`) as compose-go
/// prints it: `host=ip`, sorted, without duplicates. The first `:` splits,
/// so an IPv6 address stays whole.
fn extra_hosts(h: &Value) -> Json {
    let mut hosts: Vec<String> = pairs(h)
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => match k.split_once(':') {
                Some((h, ip)) => format!("{h}={ip}"),
                None => k,
            },
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    Json::Array(hosts.into_iter().map(Json::String).collect())
}

/// Gives the service's typed scalars the JSON kind compose-go's types print
/// (a value from a variable is text until cast): booleans (`false` left
/// out, as Go's `omitempty` does), integers, floats, and byte sizes as a
/// string count of bytes (`1g` → `"1073741824"`). `deploy` always has
/// `resources` and `placement`, and its labels are a string map.
/// What a typed scalar of a service is cast to.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Float,
    Bytes,
}
use Kind::*;

/// The typed scalars compose-go casts (its interpolation `TypeCastMapping`).
const PATHS: &[(&[&str], Kind)] = &[
    (&["tty"], Bool),
    (&["stdin_open"], Bool),
    (&["privileged"], Bool),
    (&["read_only"], Bool),
    (&["init"], Bool),
    (&["oom_kill_disable"], Bool),
    (&["healthcheck", "disable"], Bool),
    (&["healthcheck", "retries"], Int),
    (&["cpu_shares"], Int),
    (&["pids_limit"], Int),
    (&["oom_score_adj"], Int),
    (&["cpus"], Float),
    (&["mem_limit"], Bytes),
    (&["memswap_limit"], Bytes),
    (&["mem_reservation"], Bytes),
    (&["shm_size"], Bytes),
    (&["deploy", "replicas"], Int),
    (&["deploy", "restart_policy", "max_attempts"], Int),
    (&["deploy", "update_config", "parallelism"], Int),
    (&["deploy", "update_config", "max_failure_ratio"], Float),
    (&["deploy", "rollback_config", "parallelism"], Int),
    (&["deploy", "rollback_config", "max_failure_ratio"], Float),
    (&["deploy", "placement", "max_replicas_per_node"], Int),
    (&["deploy", "resources", "limits", "cpus"], Float),
    (&["deploy", "resources", "limits", "memory"], Bytes),
    (&["deploy", "resources", "limits", "pids"], Int),
    (&["deploy", "resources", "reservations", "cpus"], Float),
    (&["deploy", "resources", "reservations", "memory"], Bytes),
];

/// The first typed scalar (see [`cast_scalars`]) that could not be cast
/// (`deploy.replicas: x`), as a key path below the service, with what it
/// must be; compose fails on those ("failed to cast to expected type").
pub(crate) fn uncast_scalar(svc: &Map<String, Json>) -> Option<(String, &'static str)> {
    for (path, kind) in PATHS {
        let mut at = Some(svc);
        let (last, parents) = path.split_last()?;
        for p in parents {
            at = at.and_then(|m| m.get(*p)).and_then(Json::as_object);
        }
        let Some(Json::String(s)) = at.and_then(|m| m.get(*last)) else {
            continue;
        };
        let what = match kind {
            Bool => "must be a boolean (true or false)",
            Int => "must be an integer",
            Float => "must be a number",
            Bytes if s.parse::<i64>().is_err() => "must be a byte size such as 512m or 2g",
            Bytes => continue,
        };
        return Some((path.join("."), what));
    }
    None
}

fn cast_scalars(svc: &mut Map<String, Json>) {
    if let Some(Json::Object(d)) = svc.get_mut("deploy") {
        d.entry("resources").or_insert(json!({}));
        d.entry("placement").or_insert(json!({}));
        if let Some(l) = d.get_mut("labels") {
            *l = json_string_map(l);
        }
    }
    if let Some(Json::Object(u)) = svc.get_mut("ulimits") {
        for v in u.values_mut() {
            match v {
                Json::Object(l) => {
                    for k in ["soft", "hard"] {
                        cast_at(l, k, as_int);
                    }
                }
                other => {
                    if let Some(n) = as_int(other) {
                        *other = n;
                    }
                }
            }
        }
    }
    for (path, kind) in PATHS {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let mut at = Some(&mut *svc);
        for p in parents {
            at = at.and_then(|m| m.get_mut(*p)).and_then(Json::as_object_mut);
        }
        let Some(m) = at else { continue };
        match kind {
            Bool => {
                cast_bool(m, last);
                if m.get(*last) == Some(&Json::Bool(false)) {
                    m.remove(*last);
                }
            }
            Int => cast_at(m, last, as_int),
            Float => cast_at(m, last, |j| match j {
                Json::String(s) => s.parse::<f64>().ok().map(|f| json!(f)),
                _ => None,
            }),
            Bytes => cast_at(m, last, |j| match j {
                Json::Number(n) => Some(Json::String(n.to_string())),
                Json::String(s) => parse_bytes(s).map(|n| Json::String(n.to_string())),
                _ => None,
            }),
        }
    }
}

/// Replaces `m[key]` by `f` of it when `f` gives a value.
fn cast_at(m: &mut Map<String, Json>, key: &str, f: impl Fn(&Json) -> Option<Json>) {
    if let Some(new) = m.get(key).and_then(&f) {
        m.insert(key.into(), new);
    }
}

/// An integer written as text, as a JSON number.
fn as_int(j: &Json) -> Option<Json> {
    match j {
        Json::String(s) => s.parse::<i64>().ok().map(|n| json!(n)),
        _ => None,
    }
}

/// A `KEY=VALUE` list or mapping already in JSON as a string map.
fn json_string_map(v: &Json) -> Json {
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    };
    match v {
        Json::Object(m) => {
            Json::Object(m.iter().map(|(k, v)| (k.clone(), json!(text(v)))).collect())
        }
        Json::Array(a) => Json::Object(
            a.iter()
                .map(|e| {
                    let e = text(e);
                    match e.split_once('=') {
                        Some((k, v)) => (k.to_string(), json!(v)),
                        None => (e, json!("")),
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A `devices` entry in long form: `host[:container[:permissions]]`, the
/// container path defaulting to the host's and permissions to `rwm`.
fn device_entry(d: &Json) -> Json {
    let Json::String(spec) = d else {
        return d.clone();
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, perms) = match parts.as_slice() {
        [s] => (*s, *s, "rwm"),
        [s, t] => (*s, *t, "rwm"),
        [s, t, p] => (*s, *t, *p),
        _ => return d.clone(),
    };
    json!({"source": source, "target": target, "permissions": perms})
}

/// Rewrites every duration of a service in the form Go's
/// `time.Duration.String` prints (`90s` → `1m30s`), as compose-go keeps
/// durations as `time.Duration`. A value that does not parse is left as
/// written.
fn normalize_durations(svc: &mut Map<String, Json>) {
    const PATHS: &[&[&str]] = &[
        &["stop_grace_period"],
        &["healthcheck", "interval"],
        &["healthcheck", "timeout"],
        &["healthcheck", "start_period"],
        &["healthcheck", "start_interval"],
        &["deploy", "update_config", "delay"],
        &["deploy", "update_config", "monitor"],
        &["deploy", "rollback_config", "delay"],
        &["deploy", "rollback_config", "monitor"],
        &["deploy", "restart_policy", "delay"],
        &["deploy", "restart_policy", "window"],
    ];
    for path in PATHS {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let mut at = Some(&mut *svc);
        for p in parents {
            at = at.and_then(|m| m.get_mut(*p)).and_then(Json::as_object_mut);
        }
        if let Some(m) = at {
            if let Some(Json::String(d)) = m.get(*last) {
                if let Some(ns) = parse_go_duration(d) {
                    m.insert((*last).into(), Json::String(go_duration(ns)));
                }
            }
        }
    }
}

/// Go's `time.ParseDuration` for non-negative values: a sequence of
/// decimal numbers each with a unit (`1h30m`, `1.5s`, `500ms`), or `0`.
/// Our own code: the exact Go grammar decides what compose accepts.
fn parse_go_duration(s: &str) -> Option<u128> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        total += whole * scale;
        let mut div: u128 = 1;
        let mut f: u128 = 0;
        for c in frac.chars().take(20) {
            f = f * 10 + u128::from(c.to_digit(10)?);
            div *= 10;
        }
        total += f * scale / div;
        rest = tail;
    }
    Some(total)
}

/// Go's `time.Duration.String` for a non-negative number of nanoseconds.
fn go_duration(ns: u128) -> String {
    // `v` with `prec` decimals, trailing zeros (and a bare point) dropped.
    let frac = |v: u128, prec: u32| {
        let p = 10u128.pow(prec);
        let digits = format!("{:0w$}", v % p, w = prec as usize);
        let digits = digits.trim_end_matches('0');
        if digits.is_empty() {
            format!("{}", v / p)
        } else {
            format!("{}.{digits}", v / p)
        }
    };
    match ns {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", frac(n, 3)),
        n if n < 1_000_000_000 => format!("{}ms", frac(n, 6)),
        n => {
            let secs = n / 1_000_000_000;
            let s = frac(n % 60_000_000_000, 9);
            let (mins, hours) = ((secs / 60) % 60, secs / 3600);
            if hours > 0 {
                format!("{hours}h{mins}m{s}s")
            } else if secs >= 60 {
                format!("{mins}m{s}s")
            } else {
                format!("{s}s")
            }
        }
    }
}

/// The dependencies compose-go adds when a service names another in
/// `links`, `volumes_from` or `network_mode: service:` (an explicit
/// `depends_on` entry wins): started, and restarted with it except for
/// `volumes_from`.
fn implicit_depends_on(svc: &mut Map<String, Json>) {
    let mut implied: Vec<(String, bool)> = Vec::new();
    let first = |e: &Json| {
        e.as_str()
            .and_then(|s| s.split(':').next())
            .map(String::from)
    };
    if let Some(Json::Array(links)) = svc.get("links") {
        implied.extend(links.iter().filter_map(first).map(|n| (n, true)));
    }
    if let Some(Json::Array(from)) = svc.get("volumes_from") {
        let services = from
            .iter()
            .filter(|e| !e.as_str().is_some_and(|s| s.starts_with("container:")))
            .filter_map(first);
        implied.extend(services.map(|n| (n, false)));
    }
    if let Some(n) = svc
        .get("network_mode")
        .and_then(Json::as_str)
        .and_then(|m| m.strip_prefix("service:"))
    {
        implied.push((n.to_string(), true));
    }
    if implied.is_empty() {
        return;
    }
    let deps = svc.entry("depends_on").or_insert(json!({}));
    if let Json::Object(deps) = deps {
        for (name, restart) in implied {
            let mut d = json!({"condition": "service_started", "required": true});
            if restart {
                d["restart"] = json!(true);
            }
            deps.entry(name).or_insert(d);
        }
    }
}

/// compose-go defaults `required` to true in every `depends_on` entry, the
/// long form included.
fn depends_on_required(deps: &mut Map<String, Json>) {
    for d in deps.values_mut() {
        if let Json::Object(d) = d {
            d.entry("required").or_insert(Json::Bool(true));
        }
    }
}

/// One `ports:` entry in compose-go's long form: `mode` and `protocol`
/// defaulted, `published` a string, and a short-form range (`9000-9001:90-91`)
/// split into one entry per port, as docker/go-connections' `ParsePortSpec`
/// does. An entry that does not parse is kept as written (the loader's
/// validation is not this printer's job).
fn port_entries(p: &Json) -> Vec<Json> {
    let spec = match p {
        Json::Object(m) => {
            let mut m = m.clone();
            m.entry("mode").or_insert(json!("ingress"));
            m.entry("protocol").or_insert(json!("tcp"));
            if let Some(Json::Number(n)) = m.get("published") {
                let s = n.to_string();
                m.insert("published".into(), Json::String(s));
            }
            if let Some(t) = m.get("target").and_then(Json::as_str) {
                if let Ok(n) = t.parse::<u64>() {
                    m.insert("target".into(), json!(n));
                }
            }
            return vec![Json::Object(m)];
        }
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.clone(),
        other => return vec![other.clone()],
    };
    parse_port_spec(&spec).unwrap_or_else(|| vec![p.clone()])
}

/// `[ip:][published:]target[/protocol]`, `ip` possibly in brackets, ports
/// possibly ranges.
fn parse_port_spec(spec: &str) -> Option<Vec<Json>> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p),
        None => (spec, "tcp"),
    };
    let (ip, published, target) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, r) = r.split_once(']')?;
        let r = r.strip_prefix(':')?;
        let (published, target) = r.split_once(':')?;
        (ip, published, target)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [t] => ("", "", *t),
            [p, t] => ("", *p, *t),
            [ip, p, t] => (*ip, *p, *t),
            _ => {
                let (r, t) = rest.rsplit_once(':')?;
                let (ip, p) = r.rsplit_once(':')?;
                (ip, p, t)
            }
        }
    };
    let range = |s: &str| -> Option<(u64, u64)> {
        match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => {
                let n = s.parse().ok()?;
                Some((n, n))
            }
        }
    };
    let (t0, t1) = range(target)?;
    let host = if published.is_empty() {
        None
    } else {
        Some(range(published)?)
    };
    if t1 < t0 {
        return None;
    }
    let mut out = Vec::new();
    for (i, t) in (t0..=t1).enumerate() {
        let mut m = Map::new();
        m.insert("mode".into(), json!("ingress"));
        if !ip.is_empty() {
            m.insert("host_ip".into(), json!(ip));
        }
        m.insert("target".into(), json!(t));
        match host {
            // A published range for one target port stays a range.
            Some((h0, h1)) if t0 == t1 && h0 != h1 => {
                m.insert("published".into(), json!(format!("{h0}-{h1}")));
            }
            Some((h0, h1)) if h1 - h0 == t1 - t0 => {
                m.insert("published".into(), json!((h0 + i as u64).to_string()));
            }
            Some(_) => return None,
            None => {}
        }
        m.insert("protocol".into(), json!(proto));
        out.push(Json::Object(m));
    }
    Some(out)
}

/// A `build:` mapping (canonical, context already absolute) as compose
/// prints it.
fn build_json(b: &Mapping, env: &HashMap<String, String>) -> Json {
    let mut out = Map::new();
    let text = |k: &str| b.get(k).and_then(scalar_text).filter(|s| !s.is_empty());
    if let Some(c) = text("context") {
        out.insert("context".into(), Json::String(c));
    }
    match b.get("dockerfile") {
        Some(_) => {
            if let Some(d) = text("dockerfile") {
                out.insert("dockerfile".into(), Json::String(d));
            }
        }
        None if b.get("dockerfile_inline").is_none() => {
            out.insert("dockerfile".into(), json!("Dockerfile"));
        }
        None => {}
    }
    for k in ["dockerfile_inline", "target", "network", "isolation"] {
        if let Some(v) = text(k) {
            out.insert(k.into(), Json::String(v));
        }
    }
    if let Some(a) = b.get("args") {
        let args: Map<String, Json> = pairs(a)
            .into_iter()
            .filter_map(|(k, v)| {
                let v = v.or_else(|| env.get(&k).cloned())?;
                Some((k, Json::String(v)))
            })
            .collect();
        if !args.is_empty() {
            out.insert("args".into(), Json::Object(args));
        }
    }
    for k in ["labels", "additional_contexts"] {
        if let Some(v) = b.get(k) {
            let m: Map<String, Json> = pairs(v)
                .into_iter()
                .map(|(k, v)| (k, Json::String(v.unwrap_or_default())))
                .collect();
            if !m.is_empty() {
                out.insert(k.into(), Json::Object(m));
            }
        }
    }
    for k in [
        "cache_from",
        "cache_to",
        "tags",
        "platforms",
        "entitlements",
    ] {
        if let Some(v) = b.get(k) {
            let s = strings(v);
            if s.as_array().is_some_and(|a| !a.is_empty()) {
                out.insert(k.into(), s);
            }
        }
    }
    if let Some(Value::Mapping(ssh)) = b.get("ssh") {
        let keys: Vec<Json> = ssh
            .iter()
            .map(|(k, v)| match scalar_text(v) {
                Some(p) => Json::String(format!("{}={p}", key_text(k))),
                None => Json::String(key_text(k)),
            })
            .collect();
        out.insert("ssh".into(), Json::Array(keys));
    }
    if let Some(h) = b.get("extra_hosts") {
        out.insert("extra_hosts".into(), extra_hosts(h));
    }
    for k in ["no_cache", "pull", "privileged"] {
        if matches!(b.get(k), Some(Value::Bool(true)))
            || matches!(b.get(k), Some(Value::String(s)) if s == "true")
        {
            out.insert(k.into(), Json::Bool(true));
        }
    }
    for k in ["provenance", "sbom"] {
        if let Some(v) = text(k) {
            out.insert(k.into(), Json::String(v));
        }
    }
    if let Some(s) = text("shm_size") {
        let v = parse_bytes(&s).map(|n| n.to_string()).unwrap_or(s);
        out.insert("shm_size".into(), Json::String(v));
    }
    if let Some(Value::Sequence(secrets)) = b.get("secrets") {
        let list = secrets
            .iter()
            .map(|s| {
                let mut m = Map::new();
                for k in ["source", "target", "uid", "gid"] {
                    if let Some(v) = s.get(k).and_then(scalar_text) {
                        m.insert(k.into(), Json::String(v));
                    }
                }
                // compose 2.40 prints a file mode as an octal string
                // (`0440`); a YAML number is the mode itself, a string (say
                // from a variable) is read as octal.
                let mode = match s.get("mode") {
                    Some(Value::Number(n)) => n.as_u64(),
                    Some(Value::String(t)) => {
                        let oct = t.strip_prefix("0o").unwrap_or(t);
                        u64::from_str_radix(oct, 8).ok()
                    }
                    _ => None,
                };
                if let Some(n) = mode {
                    m.insert("mode".into(), Json::String(format!("0{n:o}")));
                }
                Json::Object(m)
            })
            .collect();
        out.insert("secrets".into(), Json::Array(list));
    }
    if let Some(Value::Mapping(u)) = b.get("ulimits") {
        let m: Map<String, Json> = u
            .iter()
            .map(|(k, v)| {
                let num = |x: Option<&Value>| {
                    x.and_then(scalar_text)
                        .and_then(|s| s.parse::<i64>().ok())
                        .map(|n| json!(n))
                        .unwrap_or(Json::Null)
                };
                let v = match v {
                    Value::Mapping(l) => {
                        json!({"soft": num(l.get("soft")), "hard": num(l.get("hard"))})
                    }
                    other => num(Some(other)),
                };
                (key_text(k), v)
            })
            .collect();
        out.insert("ulimits".into(), Json::Object(m));
    }
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(v: Json) -> Json {
        Json::Array(
            v.as_array()
                .unwrap()
                .iter()
                .flat_map(port_entries)
                .collect(),
        )
    }

    #[test]
    fn volumes_take_compose_long_form() {
        let got: Vec<Json> = [
            json!("/p/src:/code/src:ro"),
            json!("/code/node_modules"),
            json!("data:/data:rw,nocopy"),
            json!("/etc/x/:/etc/x/"),
            json!("/p:/src:z"),
            json!("/c:/d:rprivate"),
            json!({"type": "bind", "source": "/p/long", "target": "/long/", "read_only": "true"}),
            json!({"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 1000}}),
        ]
        .iter()
        .map(volume_entry)
        .collect();
        let want = vec![
            json!({"type": "bind", "source": "/p/src", "target": "/code/src", "read_only": true, "bind": {"create_host_path": true}}),
            json!({"type": "volume", "target": "/code/node_modules", "volume": {}}),
            json!({"type": "volume", "source": "data", "target": "/data", "volume": {"nocopy": true}}),
            json!({"type": "bind", "source": "/etc/x/", "target": "/etc/x", "bind": {"create_host_path": true}}),
            json!({"type": "bind", "source": "/p", "target": "/src", "bind": {"selinux": "z", "create_host_path": true}}),
            json!({"type": "bind", "source": "/c", "target": "/d", "bind": {"propagation": "rprivate", "create_host_path": true}}),
            json!({"type": "bind", "source": "/p/long", "target": "/long", "read_only": true}),
            json!({"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": "1000"}}),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn top_level_resources_are_named_and_unused_ones_dropped() {
        let defined = json!({
            "n1": {"external": false, "driver_opts": {"mtu": 1500}},
            "n2": {"driver": "bridge", "name": "custom"},
            "ext": {"external": "true"},
            "legacy": {"external": {"name": "real"}},
            "unused": {}
        });
        let used = ["n1", "n2", "ext", "legacy"]
            .map(String::from)
            .into_iter()
            .collect();
        let got = top_level_resources("networks", defined.as_object().unwrap(), &used, "p");
        let want = json!({
            "n1": {"name": "p_n1", "ipam": {}, "driver_opts": {"mtu": "1500"}},
            "n2": {"name": "custom", "driver": "bridge", "ipam": {}},
            "ext": {"name": "ext", "external": true, "ipam": {}},
            "legacy": {"name": "real", "external": true, "ipam": {}}
        });
        assert_eq!(Json::Object(got), want);
    }

    #[test]
    fn secrets_and_configs_take_long_form() {
        let secret = |e| file_reference(&e, Some("/run/secrets/"));
        assert_eq!(
            secret(json!("db")),
            json!({"source": "db", "target": "/run/secrets/db"})
        );
        assert_eq!(
            secret(json!({"source": "s", "target": "rel", "mode": "440", "uid": "1000"})),
            json!({"source": "s", "target": "rel", "mode": "0440", "uid": "1000"})
        );
        assert_eq!(
            secret(json!({"source": "s", "mode": 0o440})),
            json!({"source": "s", "target": "/run/secrets/s", "mode": "0440"})
        );
        assert_eq!(file_reference(&json!("c"), None), json!({"source": "c"}));
    }

    #[test]
    fn labels_are_string_maps_and_extra_hosts_host_eq_ip() {
        let list: Value = crate::compose::yaml::from_str("[a=b, c, 'n=1']").unwrap();
        let map: Value = crate::compose::yaml::from_str("{n: 42, e: null, t: true}").unwrap();
        assert_eq!(
            Json::Object(string_map(&list)),
            json!({"a": "b", "c": "", "n": "1"})
        );
        assert_eq!(
            Json::Object(string_map(&map)),
            json!({"n": "42", "e": "", "t": "true"})
        );
        let hosts: Value =
            crate::compose::yaml::from_str("['h:1.2.3.4', 'g=::1', 'k:::1', 'h:1.2.3.4']").unwrap();
        assert_eq!(extra_hosts(&hosts), json!(["g=::1", "h=1.2.3.4", "k=::1"]));
    }

    #[test]
    fn typed_scalars_are_cast() {
        let mut svc = json!({
            "tty": "true", "init": "false", "cpus": "1.5", "pids_limit": "5",
            "mem_limit": "1g", "shm_size": 1024,
            "ulimits": {"nproc": "5", "nofile": {"soft": "1", "hard": 2}},
            "healthcheck": {"retries": "3", "disable": "false"},
            "deploy": {"replicas": "2", "labels": ["a=1"],
                       "resources": {"limits": {"memory": "10M", "cpus": "0.5"}}}
        });
        cast_scalars(svc.as_object_mut().unwrap());
        let want = json!({
            "tty": true, "cpus": 1.5, "pids_limit": 5,
            "mem_limit": "1073741824", "shm_size": "1024",
            "ulimits": {"nproc": 5, "nofile": {"soft": 1, "hard": 2}},
            "healthcheck": {"retries": 3},
            "deploy": {"replicas": 2, "labels": {"a": "1"}, "placement": {},
                       "resources": {"limits": {"memory": "10485760", "cpus": 0.5}}}
        });
        assert_eq!(svc, want);
    }

    #[test]
    fn devices_take_long_form() {
        assert_eq!(
            device_entry(&json!("/dev/a:/dev/b")),
            json!({"source": "/dev/a", "target": "/dev/b", "permissions": "rwm"})
        );
        assert_eq!(
            device_entry(&json!("/dev/a")),
            json!({"source": "/dev/a", "target": "/dev/a", "permissions": "rwm"})
        );
        assert_eq!(
            device_entry(&json!("/dev/a:/dev/b:r")),
            json!({"source": "/dev/a", "target": "/dev/b", "permissions": "r"})
        );
    }

    #[test]
    fn durations_print_as_go_does() {
        let go = |s: &str| parse_go_duration(s).map(go_duration);
        for (given, want) in [
            ("90s", "1m30s"),
            ("60s", "1m0s"),
            ("1h30m", "1h30m0s"),
            ("1.5s", "1.5s"),
            ("500ms", "500ms"),
            ("1500us", "1.5ms"),
            ("0", "0s"),
            ("2h", "2h0m0s"),
            ("3661.25s", "1h1m1.25s"),
        ] {
            assert_eq!(go(given).as_deref(), Some(want), "{given}");
        }
        assert_eq!(go("10"), None);
        assert_eq!(go("1x"), None);
        let mut svc = json!({"stop_grace_period": "90s", "healthcheck": {"interval": "2m"}});
        normalize_durations(svc.as_object_mut().unwrap());
        assert_eq!(
            svc,
            json!({"stop_grace_period": "1m30s", "healthcheck": {"interval": "2m0s"}})
        );
    }

    #[test]
    fn links_volumes_from_and_network_mode_imply_depends_on() {
        let mut svc = json!({
            "links": ["b", "c:alias"],
            "volumes_from": ["d", "container:foo", "e:ro"],
            "network_mode": "service:f",
            "depends_on": {"b": {"condition": "service_healthy", "required": true}}
        });
        implicit_depends_on(svc.as_object_mut().unwrap());
        let started = |restart: bool| {
            let mut d = json!({"condition": "service_started", "required": true});
            if restart {
                d["restart"] = json!(true);
            }
            d
        };
        let want = json!({
            "b": {"condition": "service_healthy", "required": true},
            "c": started(true),
            "d": started(false),
            "e": started(false),
            "f": started(true)
        });
        assert_eq!(svc["depends_on"], want);
    }

    #[test]
    fn depends_on_entries_are_required_unless_said() {
        let mut deps = json!({
            "c": {"condition": "service_healthy", "restart": true},
            "d": {"condition": "service_started", "required": false}
        });
        depends_on_required(deps.as_object_mut().unwrap());
        let want = json!({
            "c": {"condition": "service_healthy", "restart": true, "required": true},
            "d": {"condition": "service_started", "required": false}
        });
        assert_eq!(deps, want);
    }

    #[test]
    fn ports_take_compose_long_form() {
        let got = ports(json!([
            "8080:80",
            "127.0.0.1:9000-9001:90-91/udp",
            3000,
            "[::1]:5000:5000",
            "8000-8002:80",
            {"target": 70, "published": 7000}
        ]));
        let want = json!([
            {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"},
            {"mode": "ingress", "host_ip": "127.0.0.1", "target": 90, "published": "9000", "protocol": "udp"},
            {"mode": "ingress", "host_ip": "127.0.0.1", "target": 91, "published": "9001", "protocol": "udp"},
            {"mode": "ingress", "target": 3000, "protocol": "tcp"},
            {"mode": "ingress", "host_ip": "::1", "target": 5000, "published": "5000", "protocol": "tcp"},
            {"mode": "ingress", "target": 80, "published": "8000-8002", "protocol": "tcp"},
            {"mode": "ingress", "target": 70, "published": "7000", "protocol": "tcp"}
        ]);
        assert_eq!(got, want);
    }
}
