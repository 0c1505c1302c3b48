//! How several Compose documents combine into one, following the rules of
//! compose-go's `override` package (v2.0.2, the version docker compose
//! v2.26 ships):
//!
//! - mappings merge key by key; an `x-` key is replaced, not merged;
//! - sequences append, except where a key has its own rule;
//! - `environment`, `labels`, `build.args` and the like turn both sides into
//!   `KEY=VALUE` lists and append them; duplicates are removed afterwards by
//!   [`enforce_unicity`], the later entry taking the earlier one's place;
//! - `command`, `entrypoint` and `healthcheck.test` are replaced whole;
//! - `build` as a string is read as `{context: …}` before merging;
//! - `depends_on` and service `networks` in list form become mappings first.
//!
//! It also resolves the `!reset` and `!override` YAML tags (see
//! [`resolve_tags`]). See `override/merge.go` and `override/uncity.go` in
//! compose-spec/compose-go for the tables this module mirrors.

use super::yaml::{Mapping, Value};

/// A mapping key as text (YAML keys that are numbers or booleans included).
pub fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        _ => String::new(),
    }
}

/// Whether the concrete key `path` matches `pattern` (dot-separated, `*`
/// matches any one key).
pub fn matches(path: &[String], pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('.').collect();
    parts.len() == path.len() && parts.iter().zip(path).all(|(p, k)| *p == "*" || p == k)
}

#[derive(Clone, Copy)]
enum Rule {
    ToSequence,
    Replace,
    Build,
    DependsOn,
    Networks,
    Logging,
}

const RULES: &[(&str, Rule)] = &[
    ("networks.*.labels", Rule::ToSequence),
    ("volumes.*.labels", Rule::ToSequence),
    ("services.*.annotations", Rule::ToSequence),
    ("services.*.build", Rule::Build),
    ("services.*.build.args", Rule::ToSequence),
    ("services.*.build.additional_contexts", Rule::ToSequence),
    ("services.*.build.extra_hosts", Rule::ToSequence),
    ("services.*.build.labels", Rule::ToSequence),
    ("services.*.command", Rule::Replace),
    ("services.*.depends_on", Rule::DependsOn),
    ("services.*.deploy.labels", Rule::ToSequence),
    ("services.*.dns", Rule::ToSequence),
    ("services.*.dns_opt", Rule::ToSequence),
    ("services.*.dns_search", Rule::ToSequence),
    ("services.*.entrypoint", Rule::Replace),
    ("services.*.env_file", Rule::ToSequence),
    ("services.*.environment", Rule::ToSequence),
    ("services.*.extra_hosts", Rule::ToSequence),
    ("services.*.healthcheck.test", Rule::Replace),
    ("services.*.labels", Rule::ToSequence),
    ("services.*.logging", Rule::Logging),
    ("services.*.networks", Rule::Networks),
    ("services.*.sysctls", Rule::ToSequence),
    ("services.*.tmpfs", Rule::ToSequence),
    ("services.*.ulimits.*", Rule::Replace),
];

/// Merges `over` onto `base`; `path` is the key path of both (restored on
/// return). The error names the key path where a mapping or sequence meets
/// a value of another kind.
pub fn merge(base: Value, over: Value, path: &mut Vec<String>) -> Result<Value, String> {
    if let Some((_, rule)) = RULES.iter().find(|(p, _)| matches(path, p)) {
        return Ok(match rule {
            Rule::ToSequence => {
                let mut seq = to_sequence(base);
                seq.extend(to_sequence(over));
                Value::Sequence(seq)
            }
            Rule::Replace => over,
            Rule::Build => Value::Mapping(merge_mappings(
                build_mapping(base),
                build_mapping(over),
                path,
            )?),
            Rule::DependsOn => {
                let dflt = depends_on_default();
                Value::Mapping(merge_mappings(
                    to_mapping(base, &dflt),
                    to_mapping(over, &dflt),
                    path,
                )?)
            }
            Rule::Networks => Value::Mapping(merge_mappings(
                to_mapping(base, &Value::Null),
                to_mapping(over, &Value::Null),
                path,
            )?),
            Rule::Logging => {
                let (Value::Mapping(b), Value::Mapping(o)) = (&base, &over) else {
                    return Ok(over);
                };
                let (bd, od) = (b.get("driver"), o.get("driver"));
                if bd == od || bd.is_none() || od.is_none() {
                    Value::Mapping(merge_mappings(b.clone(), o.clone(), path)?)
                } else {
                    over
                }
            }
        });
    }
    if over.is_null() {
        return Ok(base);
    }
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => Ok(Value::Mapping(merge_mappings(b, o, path)?)),
        (Value::Mapping(_), _) | (Value::Sequence(_), _) if path.is_empty() => {
            Err("cannot override the top level".to_string())
        }
        (Value::Sequence(mut b), Value::Sequence(o)) => {
            b.extend(o);
            Ok(Value::Sequence(b))
        }
        (Value::Mapping(_), _) | (Value::Sequence(_), _) => {
            Err(format!("cannot override {}", path.join(".")))
        }
        (_, o) => Ok(o),
    }
}

fn merge_mappings(
    mut base: Mapping,
    over: Mapping,
    path: &mut Vec<String>,
) -> Result<Mapping, String> {
    for (k, v) in over {
        let name = key_text(&k);
        match base.get(&k) {
            Some(existing) if !name.starts_with("x-") => {
                path.push(name);
                let merged = merge(existing.clone(), v, path);
                path.pop();
                base.insert(k, merged?);
            }
            _ => {
                base.insert(k, v);
            }
        }
    }
    Ok(base)
}

fn depends_on_default() -> Value {
    let mut m = Mapping::new();
    m.insert("condition".into(), "service_started".into());
    m.insert("required".into(), true.into());
    Value::Mapping(m)
}

fn build_mapping(v: Value) -> Mapping {
    match v {
        Value::String(s) => {
            let mut m = Mapping::new();
            m.insert("context".into(), Value::String(s));
            m
        }
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    }
}

/// A list of names becomes a mapping of each name to `dflt`.
pub fn to_mapping(v: Value, dflt: &Value) -> Mapping {
    match v {
        Value::Mapping(m) => m,
        Value::Sequence(s) => s.into_iter().map(|k| (k, dflt.clone())).collect(),
        _ => Mapping::new(),
    }
}

/// A scalar as Go's `%v` prints it.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A mapping becomes a sorted list of `KEY=VALUE` (or `KEY` for a null
/// value); a list stays as it is; a string is a list of one.
fn to_sequence(v: Value) -> Vec<Value> {
    match v {
        Value::Mapping(m) => {
            let mut out: Vec<String> = m
                .iter()
                .map(|(k, v)| match scalar_text(v) {
                    Some(v) => format!("{}={v}", key_text(k)),
                    None => key_text(k),
                })
                .collect();
            out.sort();
            out.into_iter().map(Value::String).collect()
        }
        Value::Sequence(s) => s,
        Value::String(s) => vec![Value::String(s)],
        _ => Vec::new(),
    }
}

#[derive(Clone, Copy)]
enum Index {
    KeyValue,
    Whole,
    Volume,
    Mount,
    EnvFile,
}

const UNIQUE: &[(&str, Index)] = &[
    ("networks.*.labels", Index::KeyValue),
    ("networks.*.ipam.options", Index::KeyValue),
    ("services.*.annotations", Index::KeyValue),
    ("services.*.build.args", Index::KeyValue),
    ("services.*.build.additional_contexts", Index::KeyValue),
    // compose 2.26.1 keeps every `build.extra_hosts` entry (README surprise 6).
    ("services.*.build.extra_hosts", Index::Whole),
    ("services.*.build.tags", Index::KeyValue),
    ("services.*.build.labels", Index::KeyValue),
    ("services.*.cap_add", Index::KeyValue),
    ("services.*.cap_drop", Index::KeyValue),
    ("services.*.configs", Index::Mount),
    ("services.*.deploy.labels", Index::KeyValue),
    ("services.*.dns", Index::KeyValue),
    ("services.*.dns_opt", Index::KeyValue),
    ("services.*.dns_search", Index::KeyValue),
    ("services.*.environment", Index::KeyValue),
    ("services.*.env_file", Index::EnvFile),
    ("services.*.expose", Index::Whole),
    ("services.*.extra_hosts", Index::KeyValue),
    ("services.*.labels", Index::KeyValue),
    ("services.*.links", Index::KeyValue),
    ("services.*.networks.*.aliases", Index::KeyValue),
    ("services.*.networks.*.link_local_ips", Index::KeyValue),
    ("services.*.ports", Index::Whole),
    ("services.*.profiles", Index::KeyValue),
    ("services.*.secrets", Index::Mount),
    ("services.*.sysctls", Index::KeyValue),
    ("services.*.tmpfs", Index::KeyValue),
    ("services.*.volumes", Index::Volume),
];

fn index_of(kind: Index, v: &Value) -> String {
    match (kind, v) {
        (Index::KeyValue, Value::String(s)) => s.split('=').next().unwrap_or_default().to_string(),
        (Index::Volume, Value::String(s)) => {
            // `source:target[:mode]`, or just `target` for an anonymous volume.
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                0 | 1 => s.clone(),
                _ => parts[1].to_string(),
            }
        }
        (Index::Volume, Value::Mapping(m)) => {
            m.get("target").and_then(scalar_text).unwrap_or_default()
        }
        (Index::Mount, Value::String(s)) => s.clone(),
        (Index::Mount, Value::Mapping(m)) => m
            .get("target")
            .or_else(|| m.get("source"))
            .and_then(scalar_text)
            .unwrap_or_default(),
        (Index::EnvFile, Value::Mapping(m)) => {
            m.get("path").and_then(scalar_text).unwrap_or_default()
        }
        (_, other) => crate::compose::yaml::to_string(other).unwrap_or_default(),
    }
}

/// Removes repeated entries from the sequences compose keeps unique
/// (`environment`, `volumes` by target, `build.args`, …); a later entry
/// replaces the earlier one in place.
pub fn enforce_unicity(v: &mut Value, path: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, e) in m.iter_mut() {
                path.push(key_text(k));
                enforce_unicity(e, path);
                path.pop();
            }
        }
        Value::Sequence(s) => {
            if let Some((_, kind)) = UNIQUE.iter().find(|(p, _)| matches(path, p)) {
                let mut out: Vec<Value> = Vec::with_capacity(s.len());
                let mut keys: Vec<String> = Vec::new();
                for e in s.drain(..) {
                    let key = index_of(*kind, &e);
                    match keys.iter().position(|k| *k == key) {
                        Some(i) => out[i] = e,
                        None => {
                            keys.push(key);
                            out.push(e);
                        }
                    }
                }
                *s = out;
            }
        }
        _ => {}
    }
}

/// Strips the `!reset` and `!override` tags from a parsed document and
/// returns it, adding the key path of each tagged node to `paths`. A
/// `!reset` node is removed; an `!override` node keeps its value. Before the
/// document is merged, [`apply_resets`] deletes those paths from what it is
/// merged onto, so `!reset` clears a value and `!override` replaces it
/// whole. Other tags are dropped and their values kept.
pub fn resolve_tags(
    v: Value,
    path: &mut Vec<String>,
    paths: &mut Vec<Vec<String>>,
) -> Option<Value> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            match tag.trim_start_matches('!') {
                "reset" => {
                    paths.push(path.clone());
                    None
                }
                "override" => {
                    paths.push(path.clone());
                    Some(t.value)
                }
                _ => resolve_tags(t.value, path, paths),
            }
        }
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, e) in m {
                path.push(key_text(&k));
                let r = resolve_tags(e, path, paths);
                path.pop();
                if let Some(r) = r {
                    out.insert(k, r);
                }
            }
            Some(Value::Mapping(out))
        }
        Value::Sequence(s) => {
            let mut out = Vec::new();
            for (i, e) in s.into_iter().enumerate() {
                path.push(i.to_string());
                let r = resolve_tags(e, path, paths);
                path.pop();
                out.extend(r);
            }
            Some(Value::Sequence(out))
        }
        other => Some(other),
    }
}

/// Expands YAML merge keys (`<<: *anchor`, `<<: [*a, *b]`) everywhere in
/// `v`, innermost first, so a merged mapping that has merge keys of its own
/// (`x-d: {<<: *r, image: i}` merged into a service) is expanded too, as
/// go-yaml does. Keys already present win over merged ones; in a list, an
/// earlier mapping wins over a later one. The error is the key path and
/// what is wrong.
pub fn apply_merge_keys(v: &mut Value, path: &mut Vec<String>) -> Result<(), (String, String)> {
    match v {
        Value::Mapping(m) => {
            for (k, e) in m.iter_mut() {
                path.push(key_text(k));
                let r = apply_merge_keys(e, path);
                path.pop();
                r?;
            }
            if let Some(merged) = m.remove("<<") {
                let sources = match merged {
                    Value::Mapping(src) => vec![src],
                    Value::Sequence(items) => items
                        .into_iter()
                        .map(|it| match it {
                            Value::Mapping(src) => Ok(src),
                            _ => Err(()),
                        })
                        .collect::<Result<Vec<_>, ()>>()
                        .map_err(|()| merge_error(path))?,
                    _ => return Err(merge_error(path)),
                };
                for src in sources {
                    for (k, e) in src {
                        if !m.contains_key(&k) {
                            m.insert(k, e);
                        }
                    }
                }
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for (i, e) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                let r = apply_merge_keys(e, path);
                path.pop();
                r?;
            }
            Ok(())
        }
        Value::Tagged(t) => apply_merge_keys(&mut t.value, path),
        _ => Ok(()),
    }
}

fn merge_error(path: &[String]) -> (String, String) {
    let mut key = path.to_vec();
    key.push("<<".to_string());
    (
        key.join("."),
        "a merge key must refer to a mapping or a list of mappings".to_string(),
    )
}

/// Deletes the mapping keys at `paths` (from [`resolve_tags`]) in `v`.
pub fn apply_resets(v: &mut Value, paths: &[Vec<String>]) {
    fn walk(v: &mut Value, path: &mut Vec<String>, paths: &[Vec<String>]) {
        if let Value::Mapping(m) = v {
            let keys: Vec<Value> = m.keys().cloned().collect();
            for k in keys {
                path.push(key_text(&k));
                if paths.iter().any(|p| p == path) {
                    m.remove(&k);
                } else if let Some(e) = m.get_mut(&k) {
                    walk(e, path, paths);
                }
                path.pop();
            }
        }
    }
    if !paths.is_empty() {
        walk(v, &mut Vec::new(), paths);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Value {
        crate::compose::yaml::from_str(s).unwrap()
    }

    fn merged(a: &str, b: &str) -> Value {
        let mut v = merge(y(a), y(b), &mut Vec::new()).unwrap();
        enforce_unicity(&mut v, &mut Vec::new());
        v
    }

    #[test]
    fn per_key_rules() {
        let cases = [
            // mappings merge, scalars replace
            ("services: {s: {image: a, user: u}}", "services: {s: {image: b}}", "services: {s: {image: b, user: u}}"),
            // sequences append; ports keep both
            ("services: {s: {ports: ['80:80']}}", "services: {s: {ports: ['81:81']}}", "services: {s: {ports: ['80:80', '81:81']}}"),
            // command replaces
            ("services: {s: {command: [a, b]}}", "services: {s: {command: [c]}}", "services: {s: {command: [c]}}"),
            // environment: map + list, later value wins in place
            ("services: {s: {environment: {A: '1', B: '2'}}}", "services: {s: {environment: [B=3, C]}}", "services: {s: {environment: [A=1, B=3, C]}}"),
            // volumes unique by target
            ("services: {s: {volumes: ['./a:/data']}}", "services: {s: {volumes: ['./b:/data']}}", "services: {s: {volumes: ['./b:/data']}}"),
            // build string + mapping
            ("services: {s: {build: ./x}}", "services: {s: {build: {target: t}}}", "services: {s: {build: {context: ./x, target: t}}}"),
            // depends_on list + mapping
            ("services: {s: {depends_on: [a]}}", "services: {s: {depends_on: {b: {condition: service_healthy}}}}",
             "services: {s: {depends_on: {a: {condition: service_started, required: true}, b: {condition: service_healthy}}}}"),
            // x- keys are replaced whole
            ("x-a: {p: 1}", "x-a: {q: 2}", "x-a: {q: 2}"),
        ];
        for (a, b, want) in cases {
            assert_eq!(merged(a, b), y(want), "{a} + {b}");
        }
    }

    #[test]
    fn mismatched_kinds_name_the_key() {
        let err = merge(
            y("services: {s: {ports: [a]}}"),
            y("services: {s: {ports: b}}"),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err, "cannot override services.s.ports");
    }

    #[test]
    fn reset_tags_remove_and_override_tags_replace() {
        let mut paths = Vec::new();
        let over = resolve_tags(
            y("services: {s: {ports: !reset [], labels: !override {c: d}}}"),
            &mut Vec::new(),
            &mut paths,
        )
        .unwrap();
        let mut base = y("services: {s: {ports: ['80:80'], labels: {a: b}, image: i}}");
        apply_resets(&mut base, &paths);
        let out = merge(base, over, &mut Vec::new()).unwrap();
        assert_eq!(out, y("services: {s: {labels: {c: d}, image: i}}"));
    }
}
