//! `.env` and `--env-file` / `env_file:` parsing, as compose-go's `dotenv` package does it
//! (compose-go v2.0.2, shipped with docker compose v2.26).
//!
//! # Format
//!
//! A file is a sequence of statements separated by whitespace and `#` comment lines:
//!
//! | statement | meaning |
//! |---|---|
//! | `KEY=value`, `KEY: value` | set `KEY`; spaces around `=` / `:` are ignored |
//! | `export KEY=value` | the same (`export` needs a following space, tab or newline) |
//! | `KEY` alone on its line | take `KEY` from the lookup when it is set there, else skip it |
//!
//! Keys are made of letters, digits, `_`, `.`, `-`, `[` and `]` (`a[1]`, `VAR.WITH.DOTS` and
//! `árvíztűrő-TÜKÖRFÚRÓGÉP` are all fine). Values come in three forms:
//!
//! - **unquoted**: the rest of the line, cut at the first ` #` (space, hash), trailing
//!   whitespace (and so a `\r`) removed, then interpolated (`${VAR:-x}`, `$$` …);
//! - **single-quoted** `'…'`: literal, may span lines; `\'` stands for `'`, every other
//!   backslash is kept;
//! - **double-quoted** `"…"`: may span lines; `\"` stands for `"`, then the escapes `\a \b \f
//!   \n \r \t \v \\` and octal `\0NNN` are expanded, `\$` becomes a literal `$`, any other
//!   backslash is kept (`\x07` stays as is); then the value is interpolated.
//!
//! Interpolation looks a name up in the caller's lookup **first**, then among the keys set
//! earlier in the same file (compose-go's order). A bare `KEY` line asks the lookup only.
//!
//! # Faithful oddities
//!
//! These follow compose-go, so a file means the same to cbuild as to docker compose:
//!
//! - A key may repeat; the last value wins and the key keeps its first position.
//! - `="value"` sets the empty key `""`.
//! - A bare `KEY` on the **last** line with no newline after it is not an inherited key: it
//!   sets the empty key `""` to the text `KEY`.
//! - After a closing quote the rest of the line is read as further statements:
//!   `A="x" B=y` sets both, `A="x" B` inherits `B`.
//! - A tab inside a key (`A\tB=1`) is accepted, only a space is an error.
//! - Keys starting with a digit (`456=ABC`) are returned; compose-go drops them only in its
//!   `Read` helper, which docker compose does not use for `.env` or `env_file`.
//!
//! Error line numbers are those of the statement (or of the opening quote for an unterminated
//! value). compose-go v2.0.2 miscounts after inherited keys and reports the last line of the
//! file for an unterminated quote; we don't copy that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::interpolate::{go_quote, interpolate_with_warnings, InterpolateError};

/// An env file that could not be parsed: which file, which line, and why (the `source`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse env file `{}` at line {line}", file.display())]
pub struct DotenvError {
    /// The file as given to [`parse_env_file`].
    pub file: PathBuf,
    /// 1-based line number of the offending statement.
    pub line: usize,
    /// What is wrong there.
    #[source]
    pub kind: DotenvErrorKind,
}

/// Why a line of an env file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DotenvErrorKind {
    /// A key contains a character outside letters, digits and `_ . - [ ]`.
    #[error("unexpected character {} in variable name {}", quote(&.character.to_string()), quote(.line_text))]
    UnexpectedCharacter {
        /// The offending character.
        character: char,
        /// The statement's line, from the key to the end of the line.
        line_text: String,
    },
    /// A key contains a space, e.g. `INVALID LINE` or `MY KEY=1`.
    #[error("key cannot contain a space: {}", quote(.key))]
    KeyContainsSpace {
        /// The key as read.
        key: String,
    },
    /// A quoted value has no closing quote.
    #[error("unterminated quoted value {line_text}")]
    UnterminatedQuote {
        /// The value's first line, from its opening quote.
        line_text: String,
    },
    /// `export` followed only by spaces at the very end of the file.
    #[error("missing variable name after `export`")]
    EmptyExport,
    /// Interpolating the value failed (`${VAR?}` with `VAR` unset, a bad `${`).
    #[error(transparent)]
    Interpolation(#[from] InterpolateError),
}

/// Parses the env file `text` (read from `file`, which is only used in errors) into its
/// variables, in order of first appearance.
///
/// `lookup` supplies the environment the file is read in (`None` = unset): it answers bare
/// `KEY` lines and, before the file's own earlier keys, `${VAR}` references in values. docker
/// compose passes the process environment for `.env` / `--env-file` (chained with the values
/// of earlier `--env-file`s), and for a service's `env_file:` the values of the service's
/// earlier env files and then the project environment.
///
/// A leading UTF-8 byte order mark is skipped.
pub fn parse_env_file(
    text: &str,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    parse_env_file_with_warnings(text, file, lookup, &mut |_| {})
}

/// Like [`parse_env_file`], and calls `on_unset(name)` for each plain `$NAME` / `${NAME}`
/// reference to a variable that neither the lookup nor the file sets, where compose warns
/// `The "NAME" variable is not set. Defaulting to a blank string.`
pub fn parse_env_file_with_warnings(
    text: &str,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    on_unset: &mut dyn FnMut(&str),
) -> Result<Vec<(String, String)>, DotenvError> {
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut parser = Parser {
        text,
        lookup,
        on_unset,
        vars: Vars::default(),
    };
    parser.run().map_err(|(offset, kind)| DotenvError {
        file: file.to_path_buf(),
        line: line_at(text, offset),
        kind,
    })?;
    Ok(parser.vars.entries)
}

/// The variables read so far, in order of first appearance.
#[derive(Default)]
struct Vars {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Vars {
    fn set(&mut self, key: &str, value: String) {
        match self.index.get(key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.to_owned(), self.entries.len());
                self.entries.push((key.to_owned(), value));
            }
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).map(|&i| self.entries[i].1.as_str())
    }
}

/// An error at a byte offset of the text; the offset becomes a line number.
type Failure = (usize, DotenvErrorKind);

struct Parser<'a, 'f> {
    text: &'a str,
    lookup: &'f dyn Fn(&str) -> Option<String>,
    on_unset: &'f mut dyn FnMut(&str),
    vars: Vars,
}

impl Parser<'_, '_> {
    fn run(&mut self) -> Result<(), Failure> {
        let mut pos = 0;
        while let Some(start) = next_statement(self.text, pos) {
            pos = self.statement(start)?;
        }
        Ok(())
    }

    /// Reads the statement at byte `start`; returns where the next one may begin.
    fn statement(&mut self, start: usize) -> Result<usize, Failure> {
        let text = self.text;
        let key_at = start + export_prefix_len(&text[start..]);
        let src = &text[key_at..];
        if src.is_empty() {
            return Err((start, DotenvErrorKind::EmptyExport));
        }

        let mut terminator = None;
        for (i, c) in src.char_indices() {
            match c {
                c if is_inline_space(c) => {}
                '=' | ':' | '\n' => {
                    terminator = Some((i, c));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                // Go's unicode.IsLetter / IsNumber; `is_alphabetic` also admits a few combining
                // marks (Other_Alphabetic) that Go would reject.
                c if c.is_alphabetic() || c.is_numeric() => {}
                other => {
                    let line_text = src.split('\n').next().unwrap_or("").to_owned();
                    return Err((
                        start,
                        DotenvErrorKind::UnexpectedCharacter {
                            character: other,
                            line_text,
                        },
                    ));
                }
            }
        }
        // Without `=`, `:` or a newline before the end of the text, compose-go reads the key
        // as empty and the whole rest as its value.
        let (raw_key, after_key, inherited) = match terminator {
            Some((i, c)) => (&src[..i], key_at + i + c.len_utf8(), c == '\n'),
            None => ("", key_at, false),
        };
        let key = raw_key.trim_end();
        if key.contains(' ') {
            let key = key.to_owned();
            return Err((start, DotenvErrorKind::KeyContainsSpace { key }));
        }
        let value_at = after_key + leading_inline_space(&text[after_key..]);

        if inherited {
            if let Some(value) = (self.lookup)(key) {
                self.vars.set(key, value);
            }
            return Ok(value_at);
        }
        let (value, next) = self.value(value_at, start)?;
        self.vars.set(key, value);
        Ok(next)
    }

    /// Reads the value at byte `at`; returns it and where the next statement may begin.
    fn value(&mut self, at: usize, statement: usize) -> Result<(String, usize), Failure> {
        let src = &self.text[at..];
        let quote = match src.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                let (line, next) = match src.find('\n') {
                    Some(i) => (&src[..i], at + i + 1),
                    None => (src, self.text.len()),
                };
                let line = line.find(" #").map_or(line, |i| &line[..i]).trim_end();
                let value = self.expand(line).map_err(|e| (statement, e.into()))?;
                return Ok((value, next));
            }
        };

        let mut raw = String::new();
        let mut escaped = false;
        for (i, c) in src.char_indices().skip(1) {
            if c == quote && !escaped {
                let value = if quote == '"' {
                    self.expand(&expand_escapes(&raw))
                        .map_err(|e| (statement, e.into()))?
                } else {
                    raw
                };
                return Ok((value, at + i + c.len_utf8()));
            }
            if escaped {
                escaped = false;
                // `\` + quote is the quote; any other escape is kept for later.
                if c != quote {
                    raw.push('\\');
                }
                raw.push(c);
            } else if c == '\\' {
                escaped = true;
            } else {
                raw.push(c);
            }
        }
        let line_text = src.split('\n').next().unwrap_or("").to_owned();
        Err((at, DotenvErrorKind::UnterminatedQuote { line_text }))
    }

    /// Interpolates a value: the lookup first, then this file's earlier keys.
    fn expand(&mut self, value: &str) -> Result<String, InterpolateError> {
        let lookup = self.lookup;
        let vars = &self.vars;
        let resolve = |name: &str| lookup(name).or_else(|| vars.get(name).map(str::to_owned));
        interpolate_with_warnings(value, &resolve, self.on_unset)
    }
}

/// Skips whitespace and `#` comment lines from byte `pos`; `None` at the end of the text.
fn next_statement(text: &str, mut pos: usize) -> Option<usize> {
    loop {
        let rest = &text[pos..];
        pos += rest.find(|c: char| !c.is_whitespace())?;
        if !text[pos..].starts_with('#') {
            return Some(pos);
        }
        pos += text[pos..].find('\n')?;
    }
}

/// Length of a leading `export` keyword with the spaces after it, or 0. The keyword needs one
/// of Go's `\s` (`\t \n \f \r` or space) after it; the spaces skipped stop at a newline.
fn export_prefix_len(s: &str) -> usize {
    match s.strip_prefix("export") {
        Some(rest) if rest.starts_with(['\t', '\n', '\x0C', '\r', ' ']) => {
            "export".len() + leading_inline_space(rest)
        }
        _ => 0,
    }
}

/// Whitespace that does not end a line (compose-go's `isSpace`).
fn is_inline_space(c: char) -> bool {
    matches!(c, '\t' | '\x0B' | '\x0C' | '\r' | ' ' | '\u{85}' | '\u{A0}')
}

fn leading_inline_space(s: &str) -> usize {
    s.find(|c: char| !is_inline_space(c)).unwrap_or(s.len())
}

fn line_at(text: &str, offset: usize) -> usize {
    1 + text
        .as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
}

/// Expands the backslash escapes of a double-quoted value. `\$` becomes `$$`, which the
/// interpolation that follows turns into a literal `$`.
fn expand_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let mut consumed = 1;
        match after.as_bytes().first() {
            Some(b'a') => out.push('\x07'),
            Some(b'b') => out.push('\x08'),
            Some(b'f') => out.push('\x0C'),
            Some(b'n') => out.push('\n'),
            Some(b'r') => out.push('\r'),
            Some(b't') => out.push('\t'),
            Some(b'v') => out.push('\x0B'),
            Some(b'\\') => out.push('\\'),
            Some(b'"') => out.push('"'),
            Some(b'$') => out.push_str("$$"),
            Some(b'0') => {
                // `\0` and up to three digits; only `\0ooo` with three octal digits worth at
                // most 0o377 is a character, anything else loses its `0` and is kept.
                let digits = after[1..]
                    .bytes()
                    .take(3)
                    .take_while(u8::is_ascii_digit)
                    .count();
                let digits_text = &after[1..1 + digits];
                match octal_char(digits_text) {
                    Some(c) => out.push(c),
                    None => {
                        out.push('\\');
                        out.push_str(digits_text);
                    }
                }
                consumed = 1 + digits;
            }
            _ => {
                out.push('\\');
                consumed = 0;
            }
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

fn octal_char(digits: &str) -> Option<char> {
    if digits.len() != 3 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let value = u32::from_str_radix(digits, 8).ok()?;
    if value > 0o377 {
        return None;
    }
    char::from_u32(value)
}

/// Quotes text the way Go's `%q` does for the error messages compose-go prints.
fn quote(s: &str) -> String {
    go_quote(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Vec<(String, String)>, DotenvError> {
        parse_env_file(text, Path::new(".env"), &no_env)
    }

    fn parse_with(
        text: &str,
        env: &'static [(&'static str, &'static str)],
    ) -> Result<Vec<(String, String)>, DotenvError> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        parse_env_file(text, Path::new(".env"), &lookup)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn err_kind(text: &str) -> (usize, DotenvErrorKind) {
        let err = parse(text).expect_err(text);
        (err.line, err.kind)
    }

    /// One statement per row: input, key, value (compose-go `TestParsing` and friends).
    #[test]
    fn single_statements() {
        let cases: &[(&str, &str, &str)] = &[
            ("FOO=bar", "FOO", "bar"),
            ("FOO =bar", "FOO", "bar"),
            ("FOO= bar", "FOO", "bar"),
            ("FOO=\"bar\"", "FOO", "bar"),
            ("FOO='bar'", "FOO", "bar"),
            (r#"FOO="escaped\"bar""#, "FOO", "escaped\"bar"),
            (r#"FOO="\"quoted\"""#, "FOO", "\"quoted\""),
            (r#"FOO="'d'""#, "FOO", "'d'"),
            ("OPTION_A: 1", "OPTION_A", "1"),
            ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
            ("OPTION_A=1:B", "OPTION_A", "1:B"),
            ("export OPTION_A=2", "OPTION_A", "2"),
            (r"export OPTION_B='\n'", "OPTION_B", r"\n"),
            ("export exportFoo=2", "exportFoo", "2"),
            ("exportFOO=2", "exportFOO", "2"),
            ("export_FOO =2", "export_FOO", "2"),
            ("export.FOO= 2", "export.FOO", "2"),
            ("export\tOPTION_A=2", "OPTION_A", "2"),
            ("  export OPTION_A=2", "OPTION_A", "2"),
            ("\texport OPTION_A=2", "OPTION_A", "2"),
            (r#"export OPTION_A="export A""#, "OPTION_A", "export A"),
            (r#"FOO="bar\nbaz""#, "FOO", "bar\nbaz"),
            (r"FOO=a\tb", "FOO", r"a\tb"),
            (r#"FOO="a\tb""#, "FOO", "a\tb"),
            (
                r#"KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z""#,
                "KEY",
                "Z\x07Z\x08Z\x0CZ\nZ\rZ\tZ\x0BZ\\ZSZ",
            ),
            ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
            ("FOO=foobar=", "FOO", "foobar="),
            ("FOO=bar ", "FOO", "bar"),
            ("FOO=bar # this is foo", "FOO", "bar"),
            ("FOO=bar #this is foo", "FOO", "bar"),
            ("FOO=bar #", "FOO", "bar"),
            (
                "FOO=123#not-an-inline-comment",
                "FOO",
                "123#not-an-inline-comment",
            ),
            (
                "FOO=bar\t#tab-is-not-a-comment-start",
                "FOO",
                "bar\t#tab-is-not-a-comment-start",
            ),
            (r#"FOO="bar#baz""#, "FOO", "bar#baz"),
            (r##"FOO="bar#baz"#"##, "FOO", "bar#baz"),
            (r#"FOO="bar#baz" # comment"#, "FOO", "bar#baz"),
            ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
            (r#"FOO="bar#baz#bang" # comment"#, "FOO", "bar#baz#bang"),
            (r#"FOO="ba#r""#, "FOO", "ba#r"),
            ("FOO='ba#r'", "FOO", "ba#r"),
            (r#"FOO="bar\n\ b\az""#, "FOO", "bar\n\\ b\x07z"),
            (r#"FOO="bar\\\n\ b\az""#, "FOO", "bar\\\n\\ b\x07z"),
            (r#"FOO="bar\\r\ b\az""#, "FOO", "bar\\r\\ b\x07z"),
            (r#"FOO="bar\nbaz\\""#, "FOO", "bar\nbaz\\"),
            (r#"="value""#, "", "value"),
            (" KEY =value", "KEY", "value"),
            ("   KEY=value", "KEY", "value"),
            ("\tKEY=value", "KEY", "value"),
            (r#"KEY="\0123""#, "KEY", "S"),
            (r#"KEY="\0""#, "KEY", "\\"),
            (r#"KEY="\012""#, "KEY", r"\12"),
            (r#"KEY="\0777""#, "KEY", r"\777"),
            (r#"KEY="\0310""#, "KEY", "\u{C8}"),
            (r#"KEY="\c""#, "KEY", r"\c"),
            (r#"KEY="\x07""#, "KEY", r"\x07"),
            (r#"KEY="\u12e4""#, "KEY", r"\u12e4"),
            (r#"KEY="\U00101234""#, "KEY", r"\U00101234"),
            (r"KEY='a\\b\'c'", "KEY", r"a\\b'c"),
            (r#"KEY='a"b'"#, "KEY", "a\"b"),
            ("KEY=\"it's\"", "KEY", "it's"),
            (r#"KEY="\'""#, "KEY", r"\'"),
            ("KEY=\"a\r\nb\"", "KEY", "a\r\nb"),
            ("KEY=value\r\n", "KEY", "value"),
            ("KEY=\n", "KEY", ""),
            ("KEY=", "KEY", ""),
            ("KEY = ", "KEY", ""),
            ("KEY:value", "KEY", "value"),
            ("a[1]=c", "a[1]", "c"),
            ("VAR-WITH-DASHES=dashes", "VAR-WITH-DASHES", "dashes"),
            (
                "árvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép",
                "árvíztűrő-TÜKÖRFÚRÓGÉP",
                "ÁRVÍZTŰRŐ-tükörfúrógép",
            ),
            ("456 = ABC", "456", "ABC"),
            ("\u{FEFF}BOM=1", "BOM", "1"),
        ];
        for (input, key, value) in cases {
            match parse(input) {
                Ok(vars) => assert_eq!(vars, pairs(&[(key, value)]), "{input:?}"),
                Err(err) => panic!("{input:?}: {err}: {}", err.kind),
            }
        }
    }

    /// compose-go `TestLinesToIgnore`.
    #[test]
    fn blank_and_comment_lines() {
        for input in [
            "",
            "\n",
            "\r\n",
            "\t\t ",
            "# Comment",
            "\t # comment",
            "#a\n\n  # b\r\n",
        ] {
            assert_eq!(parse(input), Ok(Vec::new()), "{input:?}");
        }
    }

    /// compose-go's `fixtures/plain.env`, `quoted.env`, `unquoted.env` and `exported.env`.
    #[test]
    fn fixture_like_files() {
        let plain = "OPTION_A=1\nOPTION_B=2\nOPTION_C= 3\nOPTION_D =4\nOPTION_E = 5\n456 = ABC\nOPTION_F = \nOPTION_G=\nOPTION_H = my string # Inline comment\n";
        let want = [
            ("OPTION_A", "1"),
            ("OPTION_B", "2"),
            ("OPTION_C", "3"),
            ("OPTION_D", "4"),
            ("OPTION_E", "5"),
            ("456", "ABC"),
            ("OPTION_F", ""),
            ("OPTION_G", ""),
            ("OPTION_H", "my string"),
        ];
        assert_eq!(parse(plain), Ok(pairs(&want)));

        let quoted = "OPTION_A='1'\nOPTION_B='2'\nOPTION_C=''\nOPTION_D='\\n'\nOPTION_E=\"1\"\nOPTION_F=\"2\"\nOPTION_G=\"\"\nOPTION_H=\"\\n\"\nOPTION_I = \"echo 'asd'\" # Inline comment\nOPTION_J = 'first line\nsecond line\nthird line\nand so on'\nOPTION_K='Let\\'s go!'\nOPTION_Z = \"last value\"\n";
        let want = [
            ("OPTION_A", "1"),
            ("OPTION_B", "2"),
            ("OPTION_C", ""),
            ("OPTION_D", "\\n"),
            ("OPTION_E", "1"),
            ("OPTION_F", "2"),
            ("OPTION_G", ""),
            ("OPTION_H", "\n"),
            ("OPTION_I", "echo 'asd'"),
            ("OPTION_J", "first line\nsecond line\nthird line\nand so on"),
            ("OPTION_K", "Let's go!"),
            ("OPTION_Z", "last value"),
        ];
        assert_eq!(parse(quoted), Ok(pairs(&want)));

        let unquoted = "OPTION_A = \"some quoted phrase\"\nOPTION_B=first one with an unquoted phrase\nOPTION_C = then another one with an unquoted phrase\nOPTION_D = then another one with an unquoted phrase special è char\nOPTION_E = \"then another one quoted phrase\"\n";
        let want = [
            ("OPTION_A", "some quoted phrase"),
            ("OPTION_B", "first one with an unquoted phrase"),
            ("OPTION_C", "then another one with an unquoted phrase"),
            (
                "OPTION_D",
                "then another one with an unquoted phrase special è char",
            ),
            ("OPTION_E", "then another one quoted phrase"),
        ];
        assert_eq!(parse(unquoted), Ok(pairs(&want)));

        let exported = "export OPTION_A=2\nexport OPTION_B='\\n'\n";
        assert_eq!(
            parse(exported),
            Ok(pairs(&[("OPTION_A", "2"), ("OPTION_B", "\\n")]))
        );

        let equals = "export OPTION_A='postgres://localhost:5432/database?sslmode=disable'\n\n";
        assert_eq!(
            parse(equals),
            Ok(pairs(&[(
                "OPTION_A",
                "postgres://localhost:5432/database?sslmode=disable"
            )]))
        );

        let multi = "TEST_URLS=\"stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443\"";
        assert_eq!(
            parse(multi),
            Ok(pairs(&[(
                "TEST_URLS",
                "stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443"
            )]))
        );
    }

    /// compose-go `TestInheritedEnvVariable*`: a bare key takes the lookup's value or is skipped.
    #[test]
    fn inherited_keys() {
        let env = &[("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE")];
        assert_eq!(
            parse_with("foo=bar\nVAR_TO_BE_LOADED_FROM_OS_ENV\nbar=baz\n", env),
            Ok(pairs(&[
                ("foo", "bar"),
                ("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE"),
                ("bar", "baz"),
            ]))
        );
        assert_eq!(parse("VARIABLE_NOT_FOUND\n"), Ok(Vec::new()));
        assert_eq!(
            parse_with("export VAR_TO_BE_LOADED_FROM_OS_ENV\r\n", env),
            Ok(pairs(&[(
                "VAR_TO_BE_LOADED_FROM_OS_ENV",
                "SOME_RANDOM_VALUE"
            )]))
        );
        // The lookup only: an earlier key of the file is not consulted, nor cleared.
        assert_eq!(
            parse("A=1\nA\nB=$A\n"),
            Ok(pairs(&[("A", "1"), ("B", "1")]))
        );
        // Last line without a newline: compose-go reads an empty key.
        assert_eq!(
            parse_with("A=1\nVAR_TO_BE_LOADED_FROM_OS_ENV", env),
            Ok(pairs(&[("A", "1"), ("", "VAR_TO_BE_LOADED_FROM_OS_ENV")]))
        );
        // Asked for, the lookup is called with the key.
        let asked = RefCell::new(Vec::new());
        let lookup = |name: &str| {
            asked.borrow_mut().push(name.to_owned());
            None
        };
        let vars = parse_env_file("NOT_FOUND\n", Path::new("x"), &lookup);
        assert_eq!(vars, Ok(Vec::new()));
        assert_eq!(*asked.borrow(), ["NOT_FOUND"]);
    }

    /// compose-go `TestExpanding`, `TestSubstitutions*` and `godotenv_var_expansion_test.go`.
    #[test]
    fn interpolation_in_values() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("FOO=test\nBAR=$FOO", &[("FOO", "test"), ("BAR", "test")]),
            ("FOO=test\nBAR=${FOO}bar", &[("FOO", "test"), ("BAR", "testbar")]),
            ("BAR=$FOO", &[("BAR", "")]),
            ("FOO=test\nBAR=\"quote $FOO\"", &[("FOO", "test"), ("BAR", "quote test")]),
            ("BAR='quote $FOO'", &[("BAR", "quote $FOO")]),
            (r#"FOO="foo\$BAR""#, &[("FOO", "foo$BAR")]),
            (r#"FOO="foo\${BAR}""#, &[("FOO", "foo${BAR}")]),
            (
                "FOO=test\nBAR=\"foo\\${FOO} ${FOO}\"",
                &[("FOO", "test"), ("BAR", "foo${FOO} test")],
            ),
            ("FOO=$$BAR", &[("FOO", "$BAR")]),
            (
                "EMPTY_VAR=\nTEST_VAR=Test Value\nR1=${UNSET_VAR:-Default Value}\nR2=${EMPTY_VAR:-Default Value}\nR3=${TEST_VAR:-Default Value}\nR4=${UNSET_VAR-Default Value}\nR5=${EMPTY_VAR-Default Value}\nR6=${TEST_VAR-Default Value}\nR7=${EMPTY_VAR?x}\nR8=${TEST_VAR:?x}",
                &[
                    ("EMPTY_VAR", ""),
                    ("TEST_VAR", "Test Value"),
                    ("R1", "Default Value"),
                    ("R2", "Default Value"),
                    ("R3", "Test Value"),
                    ("R4", "Default Value"),
                    ("R5", ""),
                    ("R6", "Test Value"),
                    ("R7", ""),
                    ("R8", "Test Value"),
                ],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Ok(pairs(want)), "{input:?}");
        }

        let substitutions = "OPTION_A=1\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\nOPTION_D=${OPTION_A}_${OPTION_B}\nOPTION_E=${OPTION_NOT_DEFINED}\n";
        let ones = [
            ("OPTION_A", "1"),
            ("OPTION_B", "1"),
            ("OPTION_C", "1"),
            ("OPTION_D", "1_1"),
            ("OPTION_E", ""),
        ];
        assert_eq!(parse(substitutions), Ok(pairs(&ones)));
        // The lookup wins over the file's own earlier keys.
        let with_env = [
            ("OPTION_A", "1"),
            ("OPTION_B", "5"),
            ("OPTION_C", "5"),
            ("OPTION_D", "5_5"),
            ("OPTION_E", ""),
        ];
        assert_eq!(
            parse_with(substitutions, &[("OPTION_A", "5")]),
            Ok(pairs(&with_env))
        );

        let defaults = substitutions.replace("OPTION_A=1", "OPTION_A=${OPTION_A:-1}");
        assert_eq!(parse(&defaults), Ok(pairs(&ones)));
        let fives = [
            ("OPTION_A", "5"),
            ("OPTION_B", "5"),
            ("OPTION_C", "5"),
            ("OPTION_D", "5_5"),
            ("OPTION_E", ""),
        ];
        assert_eq!(
            parse_with(&defaults, &[("OPTION_A", "5")]),
            Ok(pairs(&fives))
        );

        assert_eq!(
            parse_with("TEST=$ME", &[("ME", "YES")]),
            Ok(pairs(&[("TEST", "YES")]))
        );

        let unset = RefCell::new(Vec::new());
        let vars = parse_env_file_with_warnings(
            "A=$X ${Y:-d} $A\n",
            Path::new(".env"),
            &no_env,
            &mut |name| unset.borrow_mut().push(name.to_owned()),
        );
        assert_eq!(vars, Ok(pairs(&[("A", " d ")])));
        assert_eq!(*unset.borrow(), ["X", "A"]);
    }

    #[test]
    fn interpolation_errors() {
        let (line, kind) = err_kind("EMPTY_VAR=\nA=1\nRESULT=${EMPTY_VAR:?Test error}\n");
        assert_eq!(line, 3);
        assert_eq!(
            kind,
            DotenvErrorKind::Interpolation(InterpolateError::MissingRequired {
                variable: "EMPTY_VAR".to_owned(),
                message: "Test error".to_owned(),
                path: None,
            })
        );
        let (line, kind) = err_kind("A=\"multi\nline\"\nMYVAR=${VAR?}");
        assert_eq!(line, 3);
        assert_eq!(kind.to_string(), "required variable VAR is missing a value");
        let (line, kind) = err_kind("A='${'\nB=\"${\"");
        assert_eq!(line, 2);
        assert!(matches!(
            kind,
            DotenvErrorKind::Interpolation(InterpolateError::InvalidTemplate { .. })
        ));
    }

    #[test]
    fn syntax_errors() {
        let (line, kind) = err_kind("lol$wut");
        assert_eq!(line, 1);
        assert_eq!(
            kind.to_string(),
            "unexpected character \"$\" in variable name \"lol$wut\""
        );
        let (_, kind) = err_kind("%!(EXTRA string)=foo");
        assert_eq!(
            kind.to_string(),
            "unexpected character \"%\" in variable name \"%!(EXTRA string)=foo\""
        );

        // compose-go `fixtures/invalid1.env`.
        let invalid = "# some comments\nfoo=\"\n  a\n  multine\n  value\n\"\nINVALID LINE\nzot=qix";
        let err =
            parse_env_file(invalid, Path::new("/p/invalid1.env"), &no_env).expect_err("space");
        assert_eq!(err.line, 7);
        assert_eq!(
            err.kind,
            DotenvErrorKind::KeyContainsSpace {
                key: "INVALID LINE".to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            "failed to parse env file `/p/invalid1.env` at line 7"
        );
        assert_eq!(
            std::error::Error::source(&err).map(ToString::to_string),
            Some("key cannot contain a space: \"INVALID LINE\"".to_owned())
        );
        assert_eq!(err_kind("A=1\nMY KEY=1").0, 2);

        for input in [
            r#"KEY=""#,
            r#"KEY="value"#,
            r#"KEY="value\""#,
            r#"KEY="value'"#,
            "KEY='",
            "KEY='value",
            r"KEY='value\'",
            r#"KEY='value""#,
        ] {
            let (line, kind) = err_kind(input);
            assert_eq!(line, 1, "{input:?}");
            assert!(
                kind.to_string().starts_with("unterminated quoted value "),
                "{input:?}: {kind}"
            );
        }
        assert_eq!(err_kind("A=1\n\nB='x\ny\nz").0, 3);
        assert_eq!(err_kind("A=1\nexport ").1, DotenvErrorKind::EmptyExport);
    }

    #[test]
    fn odd_but_faithful() {
        // The rest of a line after a closing quote is more statements.
        assert_eq!(
            parse("A=\"x\" B=y\nC='z' D\n"),
            Ok(pairs(&[("A", "x"), ("B", "y"), ("C", "z")]))
        );
        // Repeated keys: last value, first position.
        assert_eq!(
            parse("A=1\nB=2\nA=3\n"),
            Ok(pairs(&[("A", "3"), ("B", "2")]))
        );
        // A tab inside a key is not a space.
        assert_eq!(parse("A\tB=1\n"), Ok(pairs(&[("A\tB", "1")])));
        // `export` then a newline: the next line is read as an (empty) inherited key.
        assert_eq!(parse("export\nA=1\n"), Ok(pairs(&[("A", "1")])));
        // `export` without a space after it is part of a key.
        assert_eq!(parse("export=1\n"), Ok(pairs(&[("export", "1")])));
        // Unicode whitespace around keys and values.
        assert_eq!(
            parse("\u{A0}A\u{A0}=\u{A0}1\u{A0}\n"),
            Ok(pairs(&[("A", "1")]))
        );
    }
}
