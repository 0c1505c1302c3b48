//! Compose variable interpolation (`$VAR`, `${VAR:-default}`, …) with the semantics of
//! compose-go's `template` and `interpolation` packages.
//!
//! # Syntax
//!
//! | form | result |
//! |---|---|
//! | `$$` | a literal `$` |
//! | `$NAME`, `${NAME}` | the value of `NAME`, or empty when unset (reported to the unset hook) |
//! | `${NAME:-word}` / `${NAME-word}` | `word` when `NAME` is unset or empty / unset |
//! | `${NAME:+word}` / `${NAME+word}` | `word` when `NAME` is set and non-empty / set, else the value (empty) |
//! | `${NAME:?msg}` / `${NAME?msg}` | error "required variable NAME is missing a value: msg" when unset or empty / unset |
//! | `$` followed by anything else | kept as is (`a $ string`, `^REGEX$`, `$}`) |
//! | `${` not followed by a valid expression | error: invalid template |
//!
//! A name is `[_A-Za-z][_A-Za-z0-9]*`, matched case-insensitively by Go's regexp, which also
//! lets the Unicode case-folds `ſ` (U+017F) and `K` (U+212A, Kelvin sign) through; we do the
//! same. `word` and `msg` are templates themselves, interpolated only when their branch is
//! taken (compose-go ≥ v2.10.1; v2.0.x evaluated them eagerly, see below).
//!
//! # How an operator expression ends
//!
//! Upstream finds expressions with a regular expression whose operator branch ends at the
//! **last** `}` on the same line, then cuts that match at the first `}` that balances the
//! opening `{`. A `{` in that count swallows the character after it, so `${A:-{}}` keeps its
//! `}}` together. Whatever follows the cut is interpolated separately, as its own template.
//! This module reproduces both steps (`first_brace_closing`), because they decide how
//! `${missing:-{"json":1}}` or `${A:-x} ${B}` parse. The operator is the one right after the
//! name; compose-go picks "the first of `:?` `?` `:-` `-` `:+` `+` in the text", which is the
//! same thing.
//!
//! # Errors
//!
//! Only the first error (left to right) is reported. [`InterpolateError::InvalidTemplate`]
//! carries the innermost template being interpolated when the bad `${` was met: the whole
//! string, or a default value, or the text after an expression. With a key path (from
//! [`interpolate_value`]) the texts are exactly compose's:
//!
//! ```text
//! error while interpolating services.web.image: required variable TAG is missing a value: set it
//! invalid interpolation format for services.web.image.
//! You may need to escape any $ with another $.
//! ${TAG
//! ```
//!
//! # Versions
//!
//! The behaviour is that of compose-go `template/template.go` as of v2.10.1 and later (checked
//! against the corpus in `tests/corpus/compose-interpolation`, taken at e70e961). docker
//! compose v2.26 ships compose-go v2.0.2, which differs only in that it evaluated the default,
//! the `+` replacement and the `?` message even when the branch was not taken: it warned about
//! unset variables there and failed on errors there (e.g. `${SET:-${}}`).

use std::collections::BTreeMap;

/// An error from interpolating a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// A `${` that does not start a valid expression (`${`, `${}`, `${ foo}`, `${foo!}`, …).
    #[error("{}", describe_invalid(.template, .path.as_deref()))]
    InvalidTemplate {
        /// The template that contained the bad `${`: the innermost one being interpolated.
        template: String,
        /// Dotted key path of the value, e.g. `services.web.image` (list items are `[]`).
        path: Option<String>,
    },
    /// A `${NAME?msg}` or `${NAME:?msg}` whose variable is unset (or empty for `:?`).
    #[error("{}", describe_missing(.variable, .message, .path.as_deref()))]
    MissingRequired {
        /// Name of the required variable.
        variable: String,
        /// The interpolated message after `?` / `:?`; may be empty.
        message: String,
        /// Dotted key path of the value, e.g. `services.web.image` (list items are `[]`).
        path: Option<String>,
    },
}

impl InterpolateError {
    /// The dotted key path where the error happened, when known.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::InvalidTemplate { path, .. } | Self::MissingRequired { path, .. } => {
                path.as_deref()
            }
        }
    }

    /// Returns the error with its key path set to `at` (e.g. `services.web.image`).
    pub fn with_path(mut self, at: impl Into<String>) -> Self {
        match &mut self {
            Self::InvalidTemplate { path, .. } | Self::MissingRequired { path, .. } => {
                *path = Some(at.into());
            }
        }
        self
    }
}

fn describe_invalid(template: &str, path: Option<&str>) -> String {
    match path {
        Some(path) => format!(
            "invalid interpolation format for {path}.\nYou may need to escape any $ with another $.\n{template}"
        ),
        None => format!("Invalid template: {}", go_quote(template)),
    }
}

fn describe_missing(variable: &str, message: &str, path: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(path) = path {
        text.push_str("error while interpolating ");
        text.push_str(path);
        text.push_str(": ");
    }
    text.push_str("required variable ");
    text.push_str(variable);
    text.push_str(" is missing a value");
    if !message.is_empty() {
        text.push_str(": ");
        text.push_str(message);
    }
    text
}

/// Quotes a string as Go's `%q` / `%#v` do, so messages read as compose's. Go escapes
/// everything that is not "printable"; we approximate that set with control characters,
/// whitespace other than the space, and the common invisible format characters.
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || (c.is_whitespace() && c != ' ') || is_format_char(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Common Unicode format characters (category Cf), which Go does not print as is.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// Interpolates `template`, looking variables up with `lookup` (`None` = unset).
///
/// Unset variables in plain `$NAME` / `${NAME}` references become empty strings; use
/// [`interpolate_with_warnings`] to hear about them as compose warns about them.
/// For example, with `TAG=1.2` set, `app:${TAG:-latest} $$HOME` becomes `app:1.2 $HOME`.
pub fn interpolate(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    interpolate_with_warnings(template, lookup, &mut |_| {})
}

/// Like [`interpolate`], and calls `on_unset(name)` for each plain reference (`$NAME`,
/// `${NAME}`) to an unset variable that was evaluated — where compose logs
/// `The "NAME" variable is not set. Defaulting to a blank string.`
pub fn interpolate_with_warnings(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    on_unset: &mut dyn FnMut(&str),
) -> Result<String, InterpolateError> {
    Engine { lookup, on_unset }.substitute(template)
}

/// Interpolates every string scalar in `value` in place (mapping keys are left alone; numbers,
/// booleans and nulls are not touched; tagged values are interpolated inside their tag).
///
/// `path` holds the key path of `value` itself (empty for a document root); it is extended
/// while walking, with `[]` for sequence items as compose-go does, and is restored before
/// returning. The first error is returned with its path set, e.g.
/// `error while interpolating services.web.build.args.FOO: required variable X is missing a value`.
/// On error `value` is left partly interpolated.
pub fn interpolate_value(
    value: &mut crate::compose::yaml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
) -> Result<(), InterpolateError> {
    interpolate_value_with_warnings(value, lookup, path, &mut |_| {})
}

/// Like [`interpolate_value`], reporting unset variables as [`interpolate_with_warnings`] does.
pub fn interpolate_value_with_warnings(
    value: &mut crate::compose::yaml::Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
    on_unset: &mut dyn FnMut(&str),
) -> Result<(), InterpolateError> {
    let mut engine = Engine { lookup, on_unset };
    engine.walk(value, path)
}

/// A variable found by [`extract_variables`], as `docker compose config --variables` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variable {
    /// The variable name.
    pub name: String,
    /// The raw (not interpolated) text after `:-` or `-`; empty when none.
    pub default_value: String,
    /// The raw text after `:+` or `+`; empty when none.
    pub presence_value: String,
    /// Whether the reference uses `:?` or `?`.
    pub required: bool,
}

/// Lists the variables `template` references, in compose-go's order: for an operator
/// expression followed by more text, the variables of that text come first, then the
/// expression's own variable, then those inside its default or replacement value.
/// `$$` escapes are skipped. A name may repeat.
///
/// Faithful oddities: an invalid `${` yields a variable with an empty name, and the name is
/// cut at the first character outside ASCII `[A-Za-z0-9_]`.
pub fn extract_variables(template: &str) -> Vec<Variable> {
    let mut found = Vec::new();
    collect_variables(template, &mut found);
    found
}

/// Collects the variables used anywhere in the string scalars of `value` (not in keys), keyed
/// by name. When a name occurs several times, the occurrence met last (in document order, and
/// in [`extract_variables`] order within a string) wins, as compose-go's map merge does.
pub fn extract_variables_from_value(
    value: &crate::compose::yaml::Value,
) -> BTreeMap<String, Variable> {
    let mut out = BTreeMap::new();
    collect_from_value(value, &mut out);
    out
}

fn collect_from_value(value: &crate::compose::yaml::Value, out: &mut BTreeMap<String, Variable>) {
    match value {
        crate::compose::yaml::Value::String(s) => {
            for variable in extract_variables(s) {
                out.insert(variable.name.clone(), variable);
            }
        }
        crate::compose::yaml::Value::Sequence(items) => {
            for item in items {
                collect_from_value(item, out);
            }
        }
        crate::compose::yaml::Value::Mapping(map) => {
            for item in map.values() {
                collect_from_value(item, out);
            }
        }
        crate::compose::yaml::Value::Tagged(tagged) => collect_from_value(&tagged.value, out),
        crate::compose::yaml::Value::Null
        | crate::compose::yaml::Value::Bool(_)
        | crate::compose::yaml::Value::Number(_) => {}
    }
}

fn collect_variables(template: &str, found: &mut Vec<Variable>) {
    let mut pos = 0;
    while let Some(m) = find_match(template, pos) {
        pos = m.end;
        let body = match m.kind {
            MatchKind::Escaped => continue,
            MatchKind::Named(name) | MatchKind::Braced(name) => name,
            MatchKind::Invalid => "",
            MatchKind::Operator { whole, .. } => match first_brace_closing(whole) {
                Some(close) => {
                    collect_variables(whole.get(close + 1..).unwrap_or(""), found);
                    whole.get(2..close).unwrap_or("")
                }
                None => whole.get(2..whole.len() - 1).unwrap_or(""),
            },
        };
        let mut variable = Variable {
            name: body.to_owned(),
            ..Variable::default()
        };
        let cut = body
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(|(i, _)| i);
        if let Some(cut) = cut.filter(|&cut| cut > 0) {
            variable.name = body[..cut].to_owned();
            let rest = &body[cut..];
            if rest.starts_with(":?") || rest.starts_with('?') {
                variable.required = true;
            } else if let Some(default) = rest.strip_prefix(":-").or(rest.strip_prefix('-')) {
                variable.default_value = default.to_owned();
            } else if let Some(presence) = rest.strip_prefix(":+").or(rest.strip_prefix('+')) {
                variable.presence_value = presence.to_owned();
            }
        }
        let default = variable.default_value.clone();
        let presence = variable.presence_value.clone();
        found.push(variable);
        if !default.is_empty() {
            collect_variables(&default, found);
        }
        if !presence.is_empty() {
            collect_variables(&presence, found);
        }
    }
}

/// The six operators of a braced expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    /// `:-`: default when unset or empty.
    DefaultUnsetOrEmpty,
    /// `-`: default when unset.
    DefaultUnset,
    /// `:+`: replacement when set and non-empty.
    ReplaceNonEmpty,
    /// `+`: replacement when set.
    ReplaceSet,
    /// `:?`: error when unset or empty.
    RequiredNonEmpty,
    /// `?`: error when unset.
    Required,
}

impl Operator {
    /// Reads the operator at the start of `s`, with its length in bytes.
    fn parse(s: &str) -> Option<(Self, usize)> {
        let bytes = s.as_bytes();
        let (colon, at) = match bytes.first() {
            Some(b':') => (true, 1),
            _ => (false, 0),
        };
        let op = match (colon, bytes.get(at)) {
            (true, Some(b'-')) => Self::DefaultUnsetOrEmpty,
            (false, Some(b'-')) => Self::DefaultUnset,
            (true, Some(b'+')) => Self::ReplaceNonEmpty,
            (false, Some(b'+')) => Self::ReplaceSet,
            (true, Some(b'?')) => Self::RequiredNonEmpty,
            (false, Some(b'?')) => Self::Required,
            _ => return None,
        };
        Some((op, at + 1))
    }

    #[cfg(test)]
    fn symbol(self) -> &'static str {
        match self {
            Self::DefaultUnsetOrEmpty => ":-",
            Self::DefaultUnset => "-",
            Self::ReplaceNonEmpty => ":+",
            Self::ReplaceSet => "+",
            Self::RequiredNonEmpty => ":?",
            Self::Required => "?",
        }
    }
}

/// One `$…` occurrence found in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Match<'t> {
    /// Byte offset of the `$`.
    start: usize,
    /// Byte offset just past the match.
    end: usize,
    kind: MatchKind<'t>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchKind<'t> {
    /// `$$`.
    Escaped,
    /// `$NAME`.
    Named(&'t str),
    /// `${NAME}`.
    Braced(&'t str),
    /// `${NAME<op>…}` up to the last `}` on the line; `whole` is the full matched text.
    Operator {
        whole: &'t str,
        name: &'t str,
        op: Operator,
        /// Bytes of `${`, the name and the operator: where the operand starts in `whole`.
        operand_at: usize,
    },
    /// `${` that starts no valid expression; the match is those two bytes.
    Invalid,
}

fn is_name_start(c: char) -> bool {
    // Go's `(?i)[_a-z]` also matches the case-folds of `s` and `k` outside ASCII.
    c == '_' || c.is_ascii_alphabetic() || c == '\u{17F}' || c == '\u{212A}'
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit()
}

/// Byte length of the variable name at the start of `s` (0 when there is none).
fn name_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if is_name_start(c) => {}
        _ => return 0,
    }
    chars
        .find(|&(_, c)| !is_name_char(c))
        .map_or(s.len(), |(i, _)| i)
}

/// Finds the next `$` expression at or after byte `from`, as compose-go's pattern
/// (`\$(?i:(\$)|([_a-z][_a-z0-9]*)|{(?:([_a-z][_a-z0-9]*(?::?[-+?](.*))?)}|()))`) does.
/// A `$` that starts none of them is plain text.
fn find_match(s: &str, from: usize) -> Option<Match<'_>> {
    let mut at = from;
    while let Some(offset) = s.get(at..)?.find('$') {
        let start = at + offset;
        let after = &s[start + 1..];
        match after.chars().next() {
            Some('$') => {
                return Some(Match {
                    start,
                    end: start + 2,
                    kind: MatchKind::Escaped,
                })
            }
            Some('{') => return Some(match_braced(s, start)),
            Some(c) if is_name_start(c) => {
                let len = name_len(after);
                return Some(Match {
                    start,
                    end: start + 1 + len,
                    kind: MatchKind::Named(&after[..len]),
                });
            }
            _ => at = start + 1,
        }
    }
    None
}

/// Matches `${…}` starting at the `$` at byte `start`.
fn match_braced(s: &str, start: usize) -> Match<'_> {
    let invalid = Match {
        start,
        end: start + 2,
        kind: MatchKind::Invalid,
    };
    let body = &s[start + 2..];
    let len = name_len(body);
    if len == 0 {
        return invalid;
    }
    let name = &body[..len];
    let tail = &body[len..];
    if tail.starts_with('}') {
        return Match {
            start,
            end: start + 2 + len + 1,
            kind: MatchKind::Braced(name),
        };
    }
    let Some((op, op_len)) = Operator::parse(tail) else {
        return invalid;
    };
    // The operand is `.*` followed by `}`: greedy, and `.` stops at a newline, so the match
    // runs to the last `}` before the end of the line.
    let operand_start = start + 2 + len + op_len;
    let operand_line = s[operand_start..].split('\n').next().unwrap_or("");
    match operand_line.rfind('}') {
        Some(close) => {
            let end = operand_start + close + 1;
            Match {
                start,
                end,
                kind: MatchKind::Operator {
                    whole: &s[start..end],
                    name,
                    op,
                    operand_at: 2 + len + op_len,
                },
            }
        }
        None => invalid,
    }
}

/// Index of the `}` that closes the `${` at the start of `s`, counted as compose-go counts:
/// each `{` opens a level and hides the byte after it from the count.
fn first_brace_closing(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth: i64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'{' => {
                depth += 1;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits an operator match into the expression proper (ending in its `}`) and the text after
/// it, which is interpolated as a template of its own.
fn split_expression(whole: &str) -> (&str, &str) {
    match first_brace_closing(whole) {
        Some(close) => whole.split_at(close + 1),
        None => (whole, ""),
    }
}

struct Engine<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    on_unset: &'a mut dyn FnMut(&str),
}

impl Engine<'_> {
    fn substitute(&mut self, template: &str) -> Result<String, InterpolateError> {
        let mut out = String::with_capacity(template.len());
        let mut pos = 0;
        while let Some(m) = find_match(template, pos) {
            out.push_str(&template[pos..m.start]);
            match m.kind {
                MatchKind::Escaped => out.push('$'),
                MatchKind::Named(name) | MatchKind::Braced(name) => {
                    out.push_str(&self.plain(name));
                }
                MatchKind::Invalid => {
                    return Err(InterpolateError::InvalidTemplate {
                        template: template.to_owned(),
                        path: None,
                    })
                }
                MatchKind::Operator {
                    whole,
                    name,
                    op,
                    operand_at,
                } => {
                    let (expression, rest) = split_expression(whole);
                    let operand = expression
                        .get(operand_at..expression.len() - 1)
                        .unwrap_or("");
                    out.push_str(&self.apply(op, name, operand)?);
                    out.push_str(&self.substitute(rest)?);
                }
            }
            pos = m.end;
        }
        out.push_str(&template[pos..]);
        Ok(out)
    }

    fn plain(&mut self, name: &str) -> String {
        match (self.lookup)(name) {
            Some(value) => value,
            None => {
                (self.on_unset)(name);
                String::new()
            }
        }
    }

    /// Evaluates `${name<op>operand}`; the operand is interpolated only when it is used.
    fn apply(
        &mut self,
        op: Operator,
        name: &str,
        operand: &str,
    ) -> Result<String, InterpolateError> {
        let value = (self.lookup)(name);
        let set_non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        match op {
            Operator::DefaultUnsetOrEmpty if !set_non_empty => self.substitute(operand),
            Operator::DefaultUnset if value.is_none() => self.substitute(operand),
            Operator::ReplaceNonEmpty if set_non_empty => self.substitute(operand),
            Operator::ReplaceSet if value.is_some() => self.substitute(operand),
            Operator::RequiredNonEmpty if !set_non_empty => self.missing(name, operand),
            Operator::Required if value.is_none() => self.missing(name, operand),
            _ => Ok(value.unwrap_or_default()),
        }
    }

    /// Fails for a missing required variable; an error in the message itself wins.
    fn missing(&mut self, name: &str, message: &str) -> Result<String, InterpolateError> {
        let message = self.substitute(message)?;
        Err(InterpolateError::MissingRequired {
            variable: name.to_owned(),
            message,
            path: None,
        })
    }

    fn walk(
        &mut self,
        value: &mut crate::compose::yaml::Value,
        path: &mut Vec<String>,
    ) -> Result<(), InterpolateError> {
        match value {
            crate::compose::yaml::Value::String(s) => match self.substitute(s) {
                Ok(new) => {
                    *s = new;
                    Ok(())
                }
                Err(err) if path.is_empty() => Err(err),
                Err(err) => Err(err.with_path(path.join("."))),
            },
            crate::compose::yaml::Value::Sequence(items) => {
                for item in items {
                    path.push("[]".to_owned());
                    let result = self.walk(item, path);
                    path.pop();
                    result?;
                }
                Ok(())
            }
            crate::compose::yaml::Value::Mapping(map) => {
                for (key, item) in map.iter_mut() {
                    path.push(key_segment(key));
                    let result = self.walk(item, path);
                    path.pop();
                    result?;
                }
                Ok(())
            }
            crate::compose::yaml::Value::Tagged(tagged) => self.walk(&mut tagged.value, path),
            crate::compose::yaml::Value::Null
            | crate::compose::yaml::Value::Bool(_)
            | crate::compose::yaml::Value::Number(_) => Ok(()),
        }
    }
}

/// Renders a mapping key as a path segment.
fn key_segment(key: &crate::compose::yaml::Value) -> String {
    match key {
        crate::compose::yaml::Value::String(s) => s.clone(),
        crate::compose::yaml::Value::Bool(b) => b.to_string(),
        crate::compose::yaml::Value::Number(n) => n.to_string(),
        crate::compose::yaml::Value::Null => "null".to_owned(),
        crate::compose::yaml::Value::Tagged(tagged) => key_segment(&tagged.value),
        crate::compose::yaml::Value::Sequence(_) | crate::compose::yaml::Value::Mapping(_) => {
            "?".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    const CORPUS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/compose-interpolation"
    );

    /// Reads a corpus TSV file: header names and rows, fields verbatim (no quoting, trailing
    /// spaces kept).
    #[allow(clippy::disallowed_methods)] // a test reading shared test data; std::fs is fine here
    fn read_tsv(name: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let path = format!("{CORPUS}/{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut lines = text.split('\n');
        let header: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split('\t')
            .map(str::to_owned)
            .collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let row: Vec<String> = line.split('\t').map(str::to_owned).collect();
            assert_eq!(row.len(), header.len(), "{name} row {}: field count", i + 2);
            rows.push(row);
        }
        (header, rows)
    }

    fn column(header: &[String], name: &str) -> usize {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    /// A lookup over a JSON object: strings are set, `null` and absent names are unset.
    fn env_from_json(json: &str) -> BTreeMap<String, Option<String>> {
        let value: serde_json::Value = serde_json::from_str(json).expect("env JSON");
        let object = value.as_object().expect("env is an object");
        object
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned)))
            .collect()
    }

    /// Nests `template` in mappings along the dotted `path`.
    fn tree_at(path: &str, template: &str) -> crate::compose::yaml::Value {
        let mut value = crate::compose::yaml::Value::String(template.to_owned());
        for key in path.rsplit('.') {
            let mut map = crate::compose::yaml::Mapping::new();
            map.insert(crate::compose::yaml::Value::String(key.to_owned()), value);
            value = crate::compose::yaml::Value::Mapping(map);
        }
        value
    }

    /// Rows of cases.tsv that cannot pass, with the reason. Kept empty on purpose.
    const KNOWN_FAILURES: &[(&str, &str)] = &[];

    #[test]
    fn corpus_cases() {
        let (header, rows) = read_tsv("cases.tsv");
        let (t, e, x, src, msg, notes) = (
            column(&header, "template"),
            column(&header, "env"),
            column(&header, "expected"),
            column(&header, "source"),
            column(&header, "error_message"),
            column(&header, "notes"),
        );
        assert_eq!(rows.len(), 119, "cases.tsv row count");
        let mut failures = Vec::new();
        let mut full_texts = 0;
        let mut warning_checks = 0;
        for (i, row) in rows.iter().enumerate() {
            let line = i + 2;
            let template = &row[t];
            if KNOWN_FAILURES.iter().any(|(k, _)| k == template) {
                continue;
            }
            let env = env_from_json(&row[e]);
            let lookup = |name: &str| env.get(name).cloned().flatten();
            let unset = RefCell::new(Vec::<String>::new());
            let result = interpolate_with_warnings(template, &lookup, &mut |name| {
                unset.borrow_mut().push(name.to_owned());
            });
            let expected = &row[x];
            let context = format!("cases.tsv line {line} ({}): {template:?}", row[src]);
            match (expected.as_str(), &result) {
                (
                    "error: invalid-template",
                    Err(err @ InterpolateError::InvalidTemplate { .. }),
                )
                | (
                    "error: missing-required",
                    Err(err @ InterpolateError::MissingRequired { .. }),
                ) => {
                    if !err.to_string().contains(row[msg].as_str()) {
                        failures.push(format!("{context}: message {err:?} lacks {:?}", row[msg]));
                    }
                }
                (want, Ok(got)) if want == got => {}
                _ => failures.push(format!("{context}: expected {expected:?}, got {result:?}")),
            }

            // Warning counts asserted by the upstream tests.
            let warnings = unset.borrow().len();
            if row[notes].contains("expects exactly one") {
                warning_checks += 1;
                if warnings != 1 {
                    failures.push(format!("{context}: {warnings} unset warnings, want 1"));
                }
            } else if row[notes].starts_with("expects no") || row[notes].contains("; expects no") {
                warning_checks += 1;
                if warnings != 0 {
                    failures.push(format!("{context}: {warnings} unset warnings, want 0"));
                }
            }

            // The same template through the tree walker, at the path the notes give.
            let at = row[notes]
                .split("via Interpolate at ")
                .nth(1)
                .and_then(|s| s.split(';').next())
                .unwrap_or("services.svc.value");
            let mut tree = tree_at(at, template);
            let walked = interpolate_value(&mut tree, &lookup, &mut Vec::new());
            match (&result, &walked) {
                (Ok(got), Ok(())) => {
                    if tree != tree_at(at, got) {
                        failures.push(format!("{context}: tree walk gave {tree:?}"));
                    }
                }
                (Err(_), Err(err)) => {
                    if err.path() != Some(at) {
                        failures.push(format!("{context}: error path {:?}", err.path()));
                    }
                    if let Some(full) = row[notes].split("full error text: ").nth(1) {
                        full_texts += 1;
                        let full = full
                            .trim_end_matches(" (\\n = newline)")
                            .replace("\\n", "\n");
                        if err.to_string() != full {
                            failures.push(format!("{context}: full text {err} != {full}"));
                        }
                    }
                }
                _ => failures.push(format!("{context}: tree walk {walked:?} vs {result:?}")),
            }
        }
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert_eq!(full_texts, 7, "rows with a full error text");
        assert_eq!(warning_checks, 3, "rows with a warning count");
    }

    #[test]
    fn corpus_operator_choice() {
        let (header, rows) = read_tsv("operator_choice.tsv");
        let (content, operator) = (
            column(&header, "braced_content"),
            column(&header, "operator"),
        );
        assert_eq!(rows.len(), 12, "operator_choice.tsv row count");
        for row in &rows {
            let template = format!("${{{}}}", row[content]);
            let m = find_match(&template, 0).expect("a match");
            match m.kind {
                MatchKind::Operator { op, .. } => {
                    assert_eq!(op.symbol(), row[operator], "{template}");
                }
                other => panic!("{template}: {other:?}"),
            }
            // The rest after the operator is the operand, whatever other operators it holds.
            let name_end = "VARNAME".len() + row[operator].len();
            let operand = &row[content][name_end..];
            let lookup = |_: &str| None;
            let result = interpolate(&template, &lookup);
            match row[operator].as_str() {
                ":-" | "-" => assert_eq!(result.as_deref(), Ok(operand), "{template}"),
                ":+" | "+" => assert_eq!(result.as_deref(), Ok(""), "{template}"),
                _ => assert!(
                    matches!(&result, Err(InterpolateError::MissingRequired { message, .. }) if message == operand),
                    "{template}: {result:?}"
                ),
            }
        }
    }

    #[test]
    fn corpus_variables() {
        let (header, rows) = read_tsv("variables.tsv");
        let (name, input, expected) = (
            column(&header, "name"),
            column(&header, "input_json"),
            column(&header, "expected_json"),
        );
        assert_eq!(rows.len(), 18, "variables.tsv row count");
        for row in &rows {
            let doc: crate::compose::yaml::Value =
                serde_json::from_str(&row[input]).expect("input JSON");
            let want: serde_json::Value = serde_json::from_str(&row[expected]).expect("expected");
            let want: BTreeMap<String, Variable> = want
                .as_object()
                .expect("object")
                .iter()
                .map(|(k, v)| {
                    let text = |field: &str| v[field].as_str().expect(field).to_owned();
                    let variable = Variable {
                        name: k.clone(),
                        default_value: text("default"),
                        presence_value: text("presence"),
                        required: v["required"].as_bool().expect("required"),
                    };
                    (k.clone(), variable)
                })
                .collect();
            assert_eq!(extract_variables_from_value(&doc), want, "{}", row[name]);
        }
    }

    fn lookup_from(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn expression_end_follows_compose_go() {
        let lookup = lookup_from(&[("SET", "v"), ("EMPTY", "")]);
        let cases: &[(&str, Result<&str, &str>)] = &[
            // The operand may contain balanced braces…
            ("${U:-{}}", Ok("{}")),
            ("${U:-{a}b}c", Ok("{a}bc")),
            // …but a `{` hides the next byte from the count, so here the expression runs to the
            // last `}` of the line and the default is `{}} ${SET`, which is itself invalid.
            ("${U:-{}} ${SET}", Err("{}} ${SET")),
            // Text after the expression is a template of its own.
            ("${U-a} $$ ${SET} $SET}", Ok("a $ v v}")),
            ("${U-a}\n${SET}", Ok("a\nv")),
            // No `}` on the line: invalid.
            ("${U-a\n}", Err("${U-a\n}")),
            ("${SET:}", Err("${SET:}")),
            // A bad `${` after an expression reports the text after that expression.
            ("x ${U-a} ${ }", Err(" ${ }")),
            // …and one inside a default reports the default.
            ("${U:-${}}", Err("${}")),
        ];
        for (template, want) in cases {
            let got = interpolate(template, &lookup);
            match (want, &got) {
                (Ok(want), Ok(got)) => assert_eq!(got, want, "{template:?}"),
                (Err(want), Err(InterpolateError::InvalidTemplate { template: t, .. })) => {
                    assert_eq!(t, want, "{template:?}");
                }
                _ => panic!("{template:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn names_and_lone_dollars() {
        let lookup = lookup_from(&[("a_1", "x"), ("ſ", "long s"), ("K", "kelvin")]);
        assert_eq!(interpolate("$a_1-$a_1b", &lookup).as_deref(), Ok("x-"));
        assert_eq!(
            interpolate("$ſ ${K}", &lookup).as_deref(),
            Ok("long s kelvin")
        );
        assert_eq!(
            interpolate("$1 $- $ $", &lookup).as_deref(),
            Ok("$1 $- $ $")
        );
        assert_eq!(interpolate("$$$", &lookup).as_deref(), Ok("$$"));
        assert_eq!(interpolate("€$a_1€", &lookup).as_deref(), Ok("€x€"));
    }

    #[test]
    fn branches_are_lazy() {
        let lookup = lookup_from(&[("SET", "v"), ("EMPTY", "")]);
        // An error in a branch that is not taken does not count (compose-go ≥ v2.10.1).
        assert_eq!(interpolate("${SET:-${}}", &lookup).as_deref(), Ok("v"));
        assert_eq!(interpolate("${U:+${X:?no}}", &lookup).as_deref(), Ok(""));
        assert_eq!(interpolate("${EMPTY+${X-d}}", &lookup).as_deref(), Ok("d"));
        assert_eq!(interpolate("${EMPTY:+x}", &lookup).as_deref(), Ok(""));
        // The error message is interpolated, and its own error wins.
        assert_eq!(
            interpolate("${U:?need ${SET}}", &lookup).map_err(|e| e.to_string()),
            Err("required variable U is missing a value: need v".to_owned())
        );
        assert!(matches!(
            interpolate("${U?${X:?inner}}", &lookup),
            Err(InterpolateError::MissingRequired { variable, .. }) if variable == "X"
        ));
    }

    #[test]
    fn error_texts() {
        let lookup = |_: &str| None;
        let err = interpolate("a ${", &lookup).expect_err("invalid");
        assert_eq!(err.to_string(), "Invalid template: \"a ${\"");
        assert_eq!(err.path(), None);
        let err = err.with_path("services.web.image");
        assert_eq!(
            err.to_string(),
            "invalid interpolation format for services.web.image.\nYou may need to escape any $ with another $.\na ${"
        );
        let err = interpolate("${X:?}", &lookup).expect_err("missing");
        assert_eq!(err.to_string(), "required variable X is missing a value");
    }

    #[test]
    fn walks_yaml_values_and_reports_paths() {
        let yaml = "services:\n  web:\n    image: app:${TAG}\n    replicas: 3\n    ports: ['${P}:80']\n    labels: {'${NOT}': $$x}\n    build: !custom {args: [a, '${X?x needed}']}\n";
        let mut doc: crate::compose::yaml::Value =
            crate::compose::yaml::from_str(yaml).expect("yaml");
        let lookup = lookup_from(&[("TAG", "1"), ("P", "8080")]);
        let mut path = Vec::new();
        let err = interpolate_value(&mut doc, &lookup, &mut path).expect_err("X is required");
        assert!(path.is_empty(), "path restored");
        assert_eq!(
            err.to_string(),
            "error while interpolating services.web.build.args.[]: required variable X is missing a value: x needed"
        );
        let lookup = lookup_from(&[("TAG", "1"), ("P", "8080"), ("X", "y")]);
        let mut doc: crate::compose::yaml::Value =
            crate::compose::yaml::from_str(yaml).expect("yaml");
        let unset = RefCell::new(Vec::new());
        let mut path = vec!["root".to_owned()];
        interpolate_value_with_warnings(&mut doc, &lookup, &mut path, &mut |n| {
            unset.borrow_mut().push(n.to_owned());
        })
        .expect("interpolates");
        assert_eq!(path, ["root"]);
        assert!(unset.borrow().is_empty(), "keys are not interpolated");
        let want = "services:\n  web:\n    image: app:1\n    replicas: 3\n    ports: ['8080:80']\n    labels: {'${NOT}': $x}\n    build: !custom {args: [a, y]}\n";
        let want: crate::compose::yaml::Value = crate::compose::yaml::from_str(want).expect("yaml");
        assert_eq!(doc, want);
    }

    #[test]
    fn extraction_order_and_quirks() {
        let names = |t: &str| {
            extract_variables(t)
                .into_iter()
                .map(|v| v.name)
                .collect::<Vec<_>>()
        };
        // Variables after an operator expression come first, then the expression's own, then
        // those in its default.
        assert_eq!(names("${A:-$B} ${C}"), ["C", "A", "B"]);
        assert_eq!(names("$$A ${B} $C"), ["B", "C"]);
        assert_eq!(names("${"), [""]);
        let vars = extract_variables("${A:+x${B?}}");
        assert_eq!(vars[0].presence_value, "x${B?}");
        assert!(vars[1].required && vars[1].name == "B");
        // Later occurrences win in the merged map.
        let doc: crate::compose::yaml::Value =
            crate::compose::yaml::from_str("a: ${V:-1}\nb: ['${V:-2}']").expect("yaml");
        assert_eq!(extract_variables_from_value(&doc)["V"].default_value, "2");
    }
}
