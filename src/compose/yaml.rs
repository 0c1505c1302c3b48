//! The one place cbuild reads and writes YAML: every other module names
//! `compose::yaml`, never a YAML crate, so the parser can change here alone.
//!
//! The parser is `serde_norway`, a maintained fork of the deprecated
//! `serde_yaml` 0.9 with the same API and the same libyaml-based parser
//! (see the README's design section for the comparison with
//! `serde_yaml_ng`, `serde_yml` and the saphyr family). Like go-yaml,
//! which compose uses, it reports syntax errors, duplicate keys and
//! alias-expansion limits with a line and column, and it keeps the `!reset`
//! and `!override` tags compose relies on.

pub use serde_norway::{from_str, to_string, Deserializer, Error, Mapping, Value};

/// Where the node a key path names starts in `text`: `(line, column)`,
/// both from 1, of its value in the first document that has it.
///
/// `path` is written as cbuild's messages write key paths:
/// `services.app.ports[0]`. A mapping key may itself hold dots
/// (`labels.com.example.x`); every key that fits is tried. `None` when no
/// document has the node as written, e.g. a value that came in through a
/// merge key, `extends` or another file.
///
/// The Value type keeps no positions, so this replays the document through
/// serde_norway's deserializer, following only the path, and stops at the
/// node with an error: serde_norway stamps an error raised inside a node
/// with that node's start mark.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    use serde::de::DeserializeSeed;
    for doc in Deserializer::from_str(text) {
        match (Find { rest: path }).deserialize(doc) {
            Ok(()) => {}
            Err(e) if e.to_string().contains(FOUND) => {
                return e.location().map(|l| (l.line(), l.column()));
            }
            // A document that does not parse has no positions to give.
            Err(_) => return None,
        }
    }
    None
}

/// The message [`Find`] stops with at its target.
const FOUND: &str = "cbuild-locate: found";

/// Follows the rest of a key path down one document (see [`locate`]).
struct Find<'p> {
    rest: &'p str,
}

impl<'de> serde::de::DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Find<'_> {
    fn here<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.rest.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> serde::de::Visitor<'de> for Find<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<(), E> {
        self.here()
    }
    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.here()
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        // `[3].build` -> index 3, then `build`.
        let target = self.rest.strip_prefix('[').and_then(|r| {
            let (n, after) = r.split_once(']')?;
            Some((
                n.parse::<usize>().ok()?,
                after.strip_prefix('.').unwrap_or(after),
            ))
        });
        let mut i = 0;
        loop {
            let more = match target {
                Some((n, after)) if n == i => seq.next_element_seed(Find { rest: after })?,
                _ => seq.next_element::<serde::de::IgnoredAny>()?.map(|_| ()),
            };
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        while let Some(key) = map.next_key::<Value>()? {
            let key = match key {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => String::new(),
            };
            let after = self.rest.strip_prefix(key.as_str()).and_then(|a| {
                if a.is_empty() || a.starts_with('[') {
                    Some(a)
                } else {
                    a.strip_prefix('.')
                }
            });
            match after {
                Some(after) if !key.is_empty() => map.next_value_seed(Find { rest: after })?,
                _ => map.next_value::<serde::de::IgnoredAny>().map(|_| ())?,
            }
        }
        Ok(())
    }

    /// A tagged node (`!reset`, `!override`): the path goes through the tag.
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess;
        let (_, variant) = data.variant::<serde::de::IgnoredAny>()?;
        variant.newtype_variant_seed(self)
    }
}

/// How deep flow collections (`[…]`, `{…}`) may nest. libyaml's cost grows
/// with the square of that depth (100,000 levels took 90 s), while real
/// Compose files nest a handful of levels: deeper input is refused before
/// it reaches the parser.
pub const MAX_FLOW_DEPTH: usize = 1000;

/// Where flow collections first nest deeper than [`MAX_FLOW_DEPTH`]:
/// `(line, column)`, both from 1.
///
/// This is a scan, not a parse: it follows YAML closely enough to skip
/// comments and quoted scalars (a quote opens one only where a node starts,
/// as in YAML, so `it's` in a plain scalar is no quote), and it forgets an
/// open quote at a line's end so that no misread quote can hide what
/// follows. Brackets inside block scalars count as if they were flow, which
/// can only matter for a thousand unmatched ones.
pub fn flow_too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut quote: Option<char> = None;
        // Whether a node may start here (a quote then opens a scalar).
        let mut node_start = true;
        let mut prev = ' ';
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied().unwrap_or(' ');
            if let Some(q) = quote {
                match c {
                    '\\' if q == '"' => i += 1,
                    '\'' if q == '\'' && next == '\'' => i += 1,
                    _ if c == q => {
                        quote = None;
                        node_start = false;
                    }
                    _ => {}
                }
                i += 1;
                prev = c;
                continue;
            }
            match c {
                '#' if prev.is_whitespace() => break,
                '\'' | '"' if node_start => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some((n + 1, i + 1));
                    }
                    node_start = true;
                }
                ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    node_start = false;
                }
                ',' => node_start = true,
                ':' | '-' | '?' if next.is_whitespace() => node_start = true,
                // An anchor or a tag before a node: the node starts after it.
                '&' | '!' if node_start => {
                    while i + 1 < chars.len() && !chars[i + 1].is_whitespace() {
                        i += 1;
                    }
                }
                c if c.is_whitespace() => {}
                _ => node_start = false,
            }
            prev = chars[i];
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_are_located_in_the_text() {
        let text = "services:\n  app:\n    image: x\n    ports:\n      - 80\n      - [1]\n    labels:\n      com.example.a: 1\n    command: !reset null\n---\nname: second\n";
        assert_eq!(locate(text, "services.app.ports[1]"), Some((6, 9)));
        assert_eq!(locate(text, "services.app.ports"), Some((5, 7)));
        assert_eq!(
            locate(text, "services.app.labels.com.example.a"),
            Some((8, 22))
        );
        assert_eq!(locate(text, "services.app.command"), Some((9, 14)));
        assert_eq!(locate(text, "name"), Some((11, 7)));
        assert_eq!(locate(text, "services.app.ports[2]"), None);
        assert_eq!(locate(text, "services.other"), None);
        assert_eq!(locate(text, "(top level)"), None);
        assert_eq!(locate("a: [", "b"), None);
    }

    #[test]
    fn flow_nesting_is_bounded_and_real_files_pass() {
        let deep = format!("services: {}", "[".repeat(100_000));
        assert_eq!(flow_too_deep(&deep), Some((1, 11 + MAX_FLOW_DEPTH)));
        let deep = format!("a: {}\n", "{x: ".repeat(MAX_FLOW_DEPTH + 1));
        assert!(flow_too_deep(&deep).is_some());
        // A quote that is not a quote in YAML hides nothing.
        let sneaky = format!("a: [ it 'b {}\n", "[".repeat(MAX_FLOW_DEPTH + 1));
        assert!(flow_too_deep(&sneaky).is_some());
        let sneaky = format!("a: it's\n{}\n", "[".repeat(MAX_FLOW_DEPTH + 1));
        assert!(flow_too_deep(&sneaky).is_some());

        // Brackets in quotes and comments, balanced ones, and many lines of
        // ordinary brackets are fine.
        let many = "x: [a, [b, {c: d}]]\n".repeat(10_000);
        assert_eq!(flow_too_deep(&many), None);
        let quoted = format!(
            "a: '{0}'\nb: \"{0}\"\n# {0}\nc: &x ['{0}']\n",
            "[".repeat(5 * MAX_FLOW_DEPTH)
        );
        assert_eq!(flow_too_deep(&quoted), None);
        let tagged = format!("a: !!str '{}'\n", "{".repeat(5 * MAX_FLOW_DEPTH));
        assert_eq!(flow_too_deep(&tagged), None);
    }
}
