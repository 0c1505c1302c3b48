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
