//! The value kinds compose 2.40's schema allows for each key of a service
//! and of its `build:` section, checked on every document after
//! interpolation, as compose-go validates before it loads the model.
//!
//! compose validates against the JSON schema of the Compose Specification;
//! this table holds only the kind of each key (string, list, mapping, ...),
//! which is what users get wrong (`user: 1000`, `environment: 5`,
//! `profiles: x`). A table of our own rather than a JSON-schema crate: the
//! kinds are few, and an error must name the key path and say what to write.
//! Mapping keys must be strings everywhere (compose: "non-string key").

use super::yaml::{Mapping, Value};

/// What a key may hold.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A string.
    Str,
    /// A string or null.
    StrOrNull,
    /// A boolean, or a string (read later as a boolean).
    BoolOrStr,
    /// A boolean only.
    Bool,
    /// A number, or a string (a size, a count).
    NumOrStr,
    /// A list of anything (its entries are checked when they are read).
    List,
    /// A list of strings.
    Strings,
    /// A list of numbers, strings or mappings (`ports`).
    PortItems,
    /// A list of strings or mappings (short and long forms: `volumes`,
    /// `secrets`, `configs`, `devices`).
    StrOrMapItems,
    /// A list of numbers or strings (`expose`).
    ScalarItems,
    /// A list of mappings (`post_start`, `pre_stop`).
    MapItems,
    /// A string or a list of strings.
    StrOrStrings,
    /// A mapping of scalars (or null), or a list of strings.
    ListOrDict,
    /// A mapping.
    Map,
    /// A mapping or null.
    MapOrNull,
    /// Null, a string, or a list of strings (`command`, `entrypoint`).
    Command,
    /// A list of strings or a mapping (`depends_on`, `networks`, `models`).
    StringsOrMap,
    /// A string or a mapping (`build`, `extends`).
    StrOrMap,
    /// A mapping of string or list-of-string values, or a list of strings.
    ExtraHosts,
    /// A string or a list of strings or of mappings (`env_file`,
    /// `label_file`).
    Files,
}

use Kind::*;

const SERVICE: &[(&str, Kind)] = &[
    ("annotations", ListOrDict),
    ("attach", BoolOrStr),
    ("blkio_config", Map),
    ("build", StrOrMap),
    ("cap_add", Strings),
    ("cap_drop", Strings),
    ("cgroup", Str),
    ("cgroup_parent", Str),
    ("command", Command),
    ("configs", StrOrMapItems),
    ("container_name", Str),
    ("cpu_count", NumOrStr),
    ("cpu_percent", NumOrStr),
    ("cpu_period", NumOrStr),
    ("cpu_quota", NumOrStr),
    ("cpu_rt_period", NumOrStr),
    ("cpu_rt_runtime", NumOrStr),
    ("cpu_shares", NumOrStr),
    ("cpus", NumOrStr),
    ("cpuset", Str),
    ("credential_spec", Map),
    ("depends_on", StringsOrMap),
    ("deploy", MapOrNull),
    ("develop", MapOrNull),
    ("device_cgroup_rules", Strings),
    ("devices", StrOrMapItems),
    ("dns", StrOrStrings),
    ("dns_opt", Strings),
    ("dns_search", StrOrStrings),
    ("domainname", Str),
    ("entrypoint", Command),
    ("env_file", Files),
    ("environment", ListOrDict),
    ("expose", ScalarItems),
    ("extends", StrOrMap),
    ("external_links", Strings),
    ("extra_hosts", ExtraHosts),
    ("group_add", List),
    ("healthcheck", Map),
    ("hostname", Str),
    ("image", Str),
    ("init", BoolOrStr),
    ("ipc", Str),
    ("isolation", Str),
    ("label_file", Files),
    ("labels", ListOrDict),
    ("links", Strings),
    ("logging", Map),
    ("mac_address", Str),
    ("mem_limit", NumOrStr),
    ("mem_reservation", NumOrStr),
    ("mem_swappiness", NumOrStr),
    ("memswap_limit", NumOrStr),
    ("models", StringsOrMap),
    ("network_mode", Str),
    ("networks", StringsOrMap),
    ("oom_kill_disable", BoolOrStr),
    ("oom_score_adj", NumOrStr),
    ("pid", StrOrNull),
    ("pids_limit", NumOrStr),
    ("platform", Str),
    ("ports", PortItems),
    ("post_start", MapItems),
    ("pre_stop", MapItems),
    ("privileged", BoolOrStr),
    ("profiles", Strings),
    ("provider", Map),
    ("pull_policy", Str),
    ("pull_refresh_after", Str),
    ("read_only", BoolOrStr),
    ("restart", Str),
    ("runtime", Str),
    ("scale", NumOrStr),
    ("secrets", StrOrMapItems),
    ("security_opt", Strings),
    ("shm_size", NumOrStr),
    ("stdin_open", BoolOrStr),
    ("stop_grace_period", Str),
    ("stop_signal", Str),
    ("storage_opt", Map),
    ("sysctls", ListOrDict),
    ("tmpfs", StrOrStrings),
    ("tty", BoolOrStr),
    ("ulimits", Map),
    ("use_api_socket", Bool),
    ("user", Str),
    ("userns_mode", Str),
    ("uts", Str),
    ("volumes", StrOrMapItems),
    ("volumes_from", Strings),
    ("working_dir", Str),
];

const BUILD: &[(&str, Kind)] = &[
    ("additional_contexts", ListOrDict),
    ("args", ListOrDict),
    ("cache_from", List),
    ("cache_to", List),
    ("context", Str),
    ("dockerfile", Str),
    ("dockerfile_inline", Str),
    ("entitlements", List),
    ("extra_hosts", ExtraHosts),
    ("isolation", Str),
    ("labels", ListOrDict),
    ("network", Str),
    ("no_cache", BoolOrStr),
    ("platforms", List),
    ("privileged", BoolOrStr),
    ("provenance", BoolOrStr),
    ("pull", BoolOrStr),
    ("sbom", BoolOrStr),
    ("secrets", StrOrMapItems),
    ("shm_size", NumOrStr),
    ("ssh", ListOrDict),
    ("tags", List),
    ("target", Str),
    ("ulimits", Map),
];

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn all_strings(s: &[Value]) -> Result<(), (usize, &'static str)> {
    match s.iter().position(|v| !matches!(v, Value::String(_))) {
        Some(i) => Err((i, "must be a string")),
        None => Ok(()),
    }
}

/// Checks `v` against `kind`; the error is the sub-key (if any) and what the
/// value must be.
fn check(kind: Kind, v: &Value) -> Result<(), (Option<String>, &'static str)> {
    let whole = |m: &'static str| Err((None, m));
    let item =
        |r: Result<(), (usize, &'static str)>| r.map_err(|(i, m)| (Some(format!("[{i}]")), m));
    match (kind, v) {
        (Str, Value::String(_)) => Ok(()),
        (Str, _) => whole("must be a string"),
        (StrOrNull, Value::String(_) | Value::Null) => Ok(()),
        (StrOrNull, _) => whole("must be a string or null"),
        (BoolOrStr, Value::Bool(_) | Value::String(_)) => Ok(()),
        (BoolOrStr, _) => whole("must be a boolean or a string"),
        (Bool, Value::Bool(_)) => Ok(()),
        (Bool, _) => whole("must be a boolean (true or false)"),
        (NumOrStr, Value::Number(_) | Value::String(_)) => Ok(()),
        (NumOrStr, _) => whole("must be a number or a string"),
        (List, Value::Sequence(_)) => Ok(()),
        (List, _) => whole("must be a list"),
        (Strings, Value::Sequence(s)) => item(all_strings(s)),
        (Strings, _) => whole("must be a list of strings"),
        (PortItems | StrOrMapItems | ScalarItems | MapItems, Value::Sequence(s)) => {
            let (ok, what): (fn(&Value) -> bool, _) = match kind {
                PortItems => (
                    |e| matches!(e, Value::Number(_) | Value::String(_) | Value::Mapping(_)),
                    "must be a number, a string or a mapping",
                ),
                StrOrMapItems => (
                    |e| matches!(e, Value::String(_) | Value::Mapping(_)),
                    "must be a string (the short form) or a mapping",
                ),
                ScalarItems => (
                    |e| matches!(e, Value::Number(_) | Value::String(_)),
                    "must be a number or a string",
                ),
                _ => (|e| e.is_mapping(), "must be a mapping"),
            };
            item(
                s.iter()
                    .position(|e| !ok(e))
                    .map_or(Ok(()), |i| Err((i, what))),
            )
        }
        (PortItems | StrOrMapItems | ScalarItems | MapItems, _) => whole("must be a list"),
        (StrOrStrings, Value::String(_)) => Ok(()),
        (StrOrStrings, Value::Sequence(s)) => item(all_strings(s)),
        (StrOrStrings, _) => whole("must be a string or a list of strings"),
        (ListOrDict, Value::Sequence(s)) => item(all_strings(s)),
        (ListOrDict, Value::Mapping(m)) => {
            match m.iter().find(|(_, e)| !(is_scalar(e) || e.is_null())) {
                Some((k, _)) => Err((
                    Some(format!(".{}", super::merge::key_text(k))),
                    "must be a boolean, null, number or string",
                )),
                None => Ok(()),
            }
        }
        (ListOrDict, _) => whole("must be a mapping or a list of KEY=VALUE strings"),
        (Map, Value::Mapping(_)) => Ok(()),
        (Map, _) => whole("must be a mapping"),
        (MapOrNull, Value::Mapping(_) | Value::Null) => Ok(()),
        (MapOrNull, _) => whole("must be a mapping"),
        (Command, Value::Null | Value::String(_)) => Ok(()),
        (Command, Value::Sequence(s)) => item(all_strings(s)),
        (Command, _) => whole("must be a string or a list of strings"),
        (StringsOrMap, Value::Mapping(_)) => Ok(()),
        (StringsOrMap, Value::Sequence(s)) => item(all_strings(s)),
        (StringsOrMap, _) => whole("must be a list of names or a mapping"),
        (StrOrMap, Value::String(_) | Value::Mapping(_)) => Ok(()),
        (StrOrMap, _) => whole("must be a string or a mapping"),
        (ExtraHosts, Value::Sequence(s)) => item(all_strings(s)),
        (ExtraHosts, Value::Mapping(m)) => {
            let bad = m.iter().find(|(_, e)| match e {
                Value::String(_) => false,
                Value::Sequence(s) => all_strings(s).is_err(),
                _ => true,
            });
            match bad {
                Some((k, _)) => Err((
                    Some(format!(".{}", super::merge::key_text(k))),
                    "must be an address or a list of addresses",
                )),
                None => Ok(()),
            }
        }
        (ExtraHosts, _) => whole("must be a mapping of host: address, or a list of host=address"),
        (Files, Value::String(_)) => Ok(()),
        (Files, Value::Sequence(s)) => {
            match s
                .iter()
                .position(|e| !matches!(e, Value::String(_) | Value::Mapping(_)))
            {
                Some(i) => Err((
                    Some(format!("[{i}]")),
                    "must be a path or a mapping with `path`",
                )),
                None => Ok(()),
            }
        }
        (Files, _) => whole("must be a path or a list of paths"),
    }
}

/// The first mapping key in `v` that is not a string, as `(key path, key)`.
pub fn non_string_key(v: &Value, path: &mut Vec<String>) -> Option<(String, String)> {
    match v {
        Value::Mapping(m) => {
            for (k, e) in m {
                if !matches!(k, Value::String(_)) {
                    let shown = match k {
                        Value::Null => "null".to_string(),
                        Value::Number(_) | Value::Bool(_) => super::merge::key_text(k),
                        _ => "(a list or mapping)".to_string(),
                    };
                    return Some((path.join("."), shown));
                }
                path.push(super::merge::key_text(k));
                let r = non_string_key(e, path);
                path.pop();
                if r.is_some() {
                    return r;
                }
            }
            None
        }
        Value::Sequence(s) => {
            for (i, e) in s.iter().enumerate() {
                path.push(format!("[{i}]"));
                let r = non_string_key(e, path);
                path.pop();
                if r.is_some() {
                    return r;
                }
            }
            None
        }
        Value::Tagged(t) => non_string_key(&t.value, path),
        _ => None,
    }
}

fn check_table(
    table: &[(&str, Kind)],
    m: &Mapping,
    key: &str,
) -> Result<(), (String, &'static str)> {
    for (k, v) in m {
        let Value::String(k) = k else { continue };
        let Some((_, kind)) = table.iter().find(|(n, _)| n == k) else {
            continue;
        };
        check(*kind, v)
            .map_err(|(sub, msg)| (format!("{key}.{k}{}", sub.unwrap_or_default()), msg))?;
    }
    Ok(())
}

/// Checks the kinds of the keys of one service (a mapping) and of its
/// `build:` mapping; the error is the key path and what it must be.
pub fn check_service(m: &Mapping, key: &str) -> Result<(), (String, &'static str)> {
    check_table(SERVICE, m, key)?;
    if let Some(Value::Mapping(b)) = m.get("build") {
        check_table(BUILD, b, &format!("{key}.build"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(y: &str) -> Result<(), (String, &'static str)> {
        let v: Value = crate::compose::yaml::from_str(y).unwrap();
        check_service(v.as_mapping().unwrap(), "services.a")
    }

    #[test]
    fn kinds_follow_compose_240() {
        // Each rejected here is rejected by docker compose 2.40.3 too.
        let bad = [
            ("environment: 5", "services.a.environment"),
            ("environment: [5]", "services.a.environment[0]"),
            ("environment: {C: [1]}", "services.a.environment.C"),
            ("depends_on: 5", "services.a.depends_on"),
            ("profiles: x", "services.a.profiles"),
            ("profiles: [1]", "services.a.profiles[0]"),
            ("user: 1000", "services.a.user"),
            ("restart: ~", "services.a.restart"),
            ("command: [sleep, 10]", "services.a.command[1]"),
            ("ports: 80", "services.a.ports"),
            ("privileged: ~", "services.a.privileged"),
            ("build: {context: ., args: ~}", "services.a.build.args"),
            (
                "build: {context: ., additional_contexts: [1, 2]}",
                "services.a.build.additional_contexts[0]",
            ),
        ];
        for (y, key) in bad {
            let got = svc(y).expect_err(y);
            assert_eq!(got.0, key, "{y}");
        }
        let good = [
            "labels: {a: 1}",
            "cpus: 0.5",
            "mem_limit: 5",
            "expose: [80]",
            "command: ~",
            "environment: {A: 5, B: ~, C: true}",
            "shm_size: -1",
            "post_start: [{command: echo hi}]",
            "build: {context: ., provenance: true, sbom: 'generator=x'}",
            "env_file: [{path: a.env, format: raw}]",
        ];
        for y in good {
            assert!(svc(y).is_ok(), "{y}");
        }
    }

    #[test]
    fn non_string_keys_are_found() {
        for (y, at) in [
            ("services: {a: {labels: {1: x}}}", "services.a.labels"),
            ("services: {a: {labels: {true: x}}}", "services.a.labels"),
            ("services: {a: {labels: {~: x}}}", "services.a.labels"),
            ("services: {1: {image: x}}", "services"),
        ] {
            let v: Value = crate::compose::yaml::from_str(y).unwrap();
            assert_eq!(
                non_string_key(&v, &mut Vec::new()).map(|x| x.0).as_deref(),
                Some(at),
                "{y}"
            );
        }
    }
}
