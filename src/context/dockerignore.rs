//! Docker's `.dockerignore` semantics, reimplemented to match the Go code that BuildKit runs.
//!
//! BuildKit filters a local build context with `moby/patternmatcher` (v0.6.1, vendored by
//! BuildKit v0.32 and required by buildx, compose and `tonistiigi/fsutil`), and the Dockerfile
//! frontend reads `.dockerignore` with `patternmatcher/ignorefile.ReadAll`. Anything that decides
//! which files cbuild sends, or explains that decision, must agree with that code bit for bit,
//! quirks included. This module is our own implementation of the same behaviour:
//!
//! * [`parse_ignore_file`] reads an ignore file like `ReadAll` (UTF-8 BOM, `#` comments, trimming,
//!   `!` exceptions, `filepath.Clean`, leading `/` stripped) but keeps 1-based line numbers so
//!   errors can point at the line.
//! * [`PatternMatcher`] compiles a pattern list like `patternmatcher.New` and offers its matching
//!   entry points: [`PatternMatcher::matches`] (the deprecated one-parent check),
//!   [`PatternMatcher::matches_or_parent_matches`] and the incremental
//!   [`PatternMatcher::matches_using_parent_results`] that fsutil's walk uses.
//! * [`glob_match`] is Go's `filepath.Match`, which `New` uses as a syntax check and fsutil's
//!   `FollowLinks` uses to expand wildcards.
//!
//! How a pattern matches (see [`Pattern`]):
//!
//! * The pattern is trimmed and `filepath.Clean`ed, *then* a leading `!` marks an exception
//!   (so `!a/../b` cleans to `b` and is not an exception, and `!./a` keeps the `./`).
//! * Patterns without wildcards compare the whole path as a string. A pattern that ends in `**`
//!   and has no other special character is a string prefix test (`dir/**` matches `dir/x`,
//!   `ab**` matches `abc/d`). A pattern that starts with `**` and has no other special character
//!   is a string suffix test (`**foo` matches `barfoo`, `**/foo` matches `foo` and `x/foo`).
//! * Everything else becomes a regular expression: `*` is `[^/]*`, `?` is `[^/]`, `**` is any
//!   number of whole segments, `.+()$` are literal, `\x` passes `\x` through and `[`, `]`, `^`,
//!   `|`, `{`, `}` are passed through (upstream means to escape `|{}` too, but its escape table
//!   loses every byte >= 64). The result is interpreted with Go RE2 syntax, which has
//!   consequences that `filepath.Match` does not share: `*.log|tmp` is the alternation
//!   `^[^/]*\.log` or `tmp$` (it matches `src/x.tmp`, and `x*|` matches every path), `a{2}*`
//!   repeats the `a`, `[!a]` is a class of `!` and `a` (only `^` negates), `[*]` becomes
//!   `[[^/]*]` (a class of `[`, `^`, `/` repeated, then a literal `]`), `\d` is a digit class,
//!   `[[:alpha:]]` is a POSIX class, and a reversed range such as `[z-a]` or an unknown escape
//!   such as `\q` fails only when the pattern is matched. We translate that RE2 syntax to the
//!   `regex` crate ourselves, so these cases behave as in Go.
//! * The last matching pattern wins; a path matches in the `..._parent_matches` family when it
//!   or one of its parent directories matches.
//!
//! Invalid patterns are reported in two stages, as upstream: `New` rejects a lone `!` and
//! anything `filepath.Match` calls malformed (unclosed `[`, `[]`, `[a-]`, a trailing `\`), while
//! a pattern whose regular expression does not compile is accepted and fails each time it is
//! matched (and only if the matcher reaches it).

use std::fmt;

/// `text/scanner` (which upstream uses to read a pattern) skips a byte order mark at the start.
const BOM: char = '\u{FEFF}';

/// `bufio.Scanner`'s default `MaxScanTokenSize`: `ReadAll` fails on a line this long or longer.
const MAX_LINE_BYTES: usize = 64 * 1024;

fn line_prefix(line: Option<usize>) -> String {
    match line {
        Some(n) => format!("line {n}: "),
        None => String::new(),
    }
}

/// An invalid pattern, or a matcher used the wrong way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A pattern that is only `!` (after trimming and cleaning): an exception needs a path.
    #[error("{}illegal exclusion pattern `!`: an exception needs a path after the `!`", line_prefix(*.line))]
    IllegalExclusion {
        /// Line in the ignore file, when the pattern came from one.
        line: Option<usize>,
    },
    /// Go's `filepath.Match` rejects the pattern (upstream `filepath.ErrBadPattern` from `New`).
    #[error("{}syntax error in pattern `{pattern}`: {reason}", line_prefix(*.line))]
    Syntax {
        /// The pattern as written (after trimming and cleaning, `!` included).
        pattern: String,
        /// What is wrong with it.
        reason: String,
        /// Line in the ignore file, when the pattern came from one.
        line: Option<usize>,
    },
    /// The regular expression built from the pattern is invalid. Upstream reports this as
    /// `filepath.ErrBadPattern` each time the pattern is matched, not when it is compiled.
    #[error("{}syntax error in pattern `{pattern}`: {reason}", line_prefix(*.line))]
    Regex {
        /// The pattern as written (after trimming and cleaning, `!` included).
        pattern: String,
        /// What is wrong with the regular expression built from it.
        reason: String,
        /// Line in the ignore file, when the pattern came from one.
        line: Option<usize>,
    },
    /// A [`MatchInfo`] from a different matcher was passed in.
    #[error("wrong number of values in parent match info: got {got}, the matcher has {expected} patterns")]
    MatchInfoLength {
        /// Number of patterns in the matcher.
        expected: usize,
        /// Number of values in the `MatchInfo`.
        got: usize,
    },
}

/// An ignore file that `ignorefile.ReadAll` would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreFileError {
    /// A line of 64 KiB or more (Go's `bufio.Scanner` gives up with "token too long").
    #[error("line {line}: line is too long ({len} bytes; the limit is {max} bytes)", max = MAX_LINE_BYTES - 1)]
    LineTooLong {
        /// 1-based line number.
        line: usize,
        /// Length of the line in bytes, without its newline.
        len: usize,
    },
}

// ---------------------------------------------------------------------------------------------
// Go `path/filepath` helpers (unix flavour: `/` is the only separator)
// ---------------------------------------------------------------------------------------------

/// Go's `filepath.Clean` for `/`-separated paths: the shortest lexically equivalent path.
///
/// Repeated slashes collapse, `.` elements go, `..` removes the element before it (and is dropped
/// right after a leading `/`), a trailing slash goes, and an empty result is `.`.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ => {
                    if !rooted {
                        parts.push("..");
                    }
                }
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// Go's `filepath.Dir`: everything before the last `/`, cleaned (`.` when there is no `/`).
pub fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean(&path[..=i]),
        None => ".".to_string(),
    }
}

/// Go's `filepath.Base`: the last element, ignoring trailing slashes (`.` for "", `/` for "/").
pub fn base(path: &str) -> &str {
    if path.is_empty() {
        return ".";
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// Go's `filepath.Join`: the non-empty elements joined with `/` and cleaned ("" if all are empty).
pub fn join(elems: &[&str]) -> String {
    let parts: Vec<&str> = elems.iter().copied().filter(|e| !e.is_empty()).collect();
    if parts.is_empty() {
        return String::new();
    }
    clean(&parts.join("/"))
}

/// The parent directories `MatchesOrParentMatches` tries for `path`: `Dir(path)` split at each
/// `/`, as cumulative prefixes (`a/b/c` → `a`, `a/b`; `/x/y` → ``, `/x`). Empty when `Dir` is `.`.
fn parent_prefixes(path: &str) -> Vec<String> {
    let parent = dir(path);
    if parent == "." {
        return Vec::new();
    }
    let mut out: Vec<String> = parent
        .match_indices('/')
        .map(|(i, _)| parent[..i].to_string())
        .collect();
    out.push(parent);
    out
}

// ---------------------------------------------------------------------------------------------
// Go `filepath.Match`
// ---------------------------------------------------------------------------------------------

/// Go's `utf8.DecodeRune`: the code point at the start of `s` and its width; invalid or
/// truncated UTF-8 gives U+FFFD with width 1, and an empty slice gives U+FFFD with width 0.
fn decode_rune(s: &[u8]) -> (u32, usize) {
    let Some(&first) = s.first() else {
        return (0xFFFD, 0);
    };
    let width = match first {
        0x00..=0x7F => return (u32::from(first), 1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (0xFFFD, 1),
    };
    match s.get(..width).map(std::str::from_utf8) {
        Some(Ok(text)) => match text.chars().next() {
            Some(c) => (u32::from(c), width),
            None => (0xFFFD, 1),
        },
        _ => (0xFFFD, 1),
    }
}

/// Splits off the next chunk: leading stars, then everything up to the next `*` outside `[...]`.
fn scan_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut pattern = pattern;
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// One class element of a `filepath.Match` class, with `\` escapes.
fn class_char(chunk: &[u8]) -> Result<(u32, &[u8]), &'static str> {
    match chunk.first() {
        None => return Err("unterminated character class"),
        Some(b'-') => return Err("`-` must sit between two characters in a character class"),
        Some(b']') => return Err("empty character class or range"),
        _ => {}
    }
    let mut chunk = chunk;
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err("unterminated character class");
        }
    }
    let (r, n) = decode_rune(chunk);
    if r == 0xFFFD && n == 1 {
        return Err("invalid UTF-8 in character class");
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err("unterminated character class");
    }
    Ok((r, rest))
}

/// Matches one chunk (no `*`) at the start of `s`. `Ok(Some(rest))` on a match. The whole chunk
/// is always checked for syntax errors, even after the match has failed.
fn match_chunk<'a>(chunk: &[u8], s: &'a [u8]) -> Result<Option<&'a [u8]>, &'static str> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut r = 0u32;
                if !failed {
                    let (rune, n) = decode_rune(s);
                    r = rune;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.first() == Some(&b'^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&b']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (h, rest) = class_char(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err("trailing backslash");
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

fn glob_match_inner(pattern: &str, name: &str) -> Result<bool, &'static str> {
    let mut pattern = pattern.as_bytes();
    let mut name = name.as_bytes();
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest of the name unless it has a `/`.
            return Ok(!name.contains(&b'/'));
        }
        let first = match_chunk(chunk, name);
        if let Ok(Some(t)) = first {
            // The last chunk must consume the whole name (else the star may still help).
            if t.is_empty() || !pattern.is_empty() {
                name = t;
                continue;
            }
        }
        first?;
        if star {
            // Let the star eat 1, 2, ... bytes, never a `/`.
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    // The last chunk must consume the whole name.
                    if !pattern.is_empty() || t.is_empty() {
                        name = t;
                        continue 'chunks;
                    }
                }
                i += 1;
            }
        }
        // No match. Unlike Go's `path.Match`, `filepath.Match` does not go on to check the
        // chunks after this one, so `a*[` (or `x*[` against `y`) is no error.
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Go's `filepath.Match` on unix: shell-style matching of a whole name.
///
/// `*` matches any run of non-`/` bytes, `?` one non-`/` character, `[...]` a class (ranges,
/// `^` negation, `\` escapes), `\x` the character `x`. Malformed parts (`[`, `[]a]`, `[a-]`,
/// `[-a]`, a trailing `\`) are an error if matching reaches the chunk (the text between stars)
/// that holds them; a chunk after the point where matching failed is not checked. This is the
/// semantics of fsutil's wildcard expansion of `followpaths`, not of `.dockerignore` (see
/// [`Pattern`]).
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    glob_match_inner(pattern, name).map_err(|reason| PatternError::Syntax {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
        line: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Go RE2 syntax → `regex` crate syntax
// ---------------------------------------------------------------------------------------------

/// Translates a regular expression in Go `regexp` syntax (flags `Perl`: one-line, classes match
/// `\n`, Perl extensions, Unicode groups) to `regex` crate syntax with the same meaning, for the
/// subset of Go syntax that `compile` can produce. Every literal is written as `\x{..}`, and
/// Perl and POSIX classes are spelled out with Go's (ASCII) definitions.
mod re2 {
    use std::fmt::Write as _;

    /// An empty class: matches nothing (the `regex` crate accepts it).
    const NOTHING: &str = r"[^\x{0}-\x{10FFFF}]";

    struct Cursor<'a> {
        rest: &'a str,
    }

    impl Cursor<'_> {
        fn peek(&self) -> Option<char> {
            self.rest.chars().next()
        }
        fn peek2(&self) -> Option<char> {
            self.rest.chars().nth(1)
        }
        fn bump(&mut self) -> Option<char> {
            let c = self.rest.chars().next()?;
            self.rest = &self.rest[c.len_utf8()..];
            Some(c)
        }
    }

    fn lit(out: &mut String, c: char) {
        let _ = write!(out, r"\x{{{:X}}}", u32::from(c));
    }

    fn range(out: &mut String, lo: char, hi: char) {
        lit(out, lo);
        if hi != lo {
            out.push('-');
            lit(out, hi);
        }
    }

    /// Go's Perl classes (`\d`, `\s`, `\w`), as class contents.
    fn perl_class(c: char) -> Option<(&'static str, bool)> {
        Some(match c {
            'd' => (r"\x{30}-\x{39}", false),
            'D' => (r"\x{30}-\x{39}", true),
            's' => (r"\x{9}\x{A}\x{C}\x{D}\x{20}", false),
            'S' => (r"\x{9}\x{A}\x{C}\x{D}\x{20}", true),
            'w' => (r"\x{30}-\x{39}\x{41}-\x{5A}\x{5F}\x{61}-\x{7A}", false),
            'W' => (r"\x{30}-\x{39}\x{41}-\x{5A}\x{5F}\x{61}-\x{7A}", true),
            _ => return None,
        })
    }

    /// Go's POSIX classes (`[:alpha:]` …), as class contents.
    fn posix_class(name: &str) -> Option<&'static str> {
        Some(match name {
            "alnum" => r"\x{30}-\x{39}\x{41}-\x{5A}\x{61}-\x{7A}",
            "alpha" => r"\x{41}-\x{5A}\x{61}-\x{7A}",
            "ascii" => r"\x{0}-\x{7F}",
            "blank" => r"\x{9}\x{20}",
            "cntrl" => r"\x{0}-\x{1F}\x{7F}",
            "digit" => r"\x{30}-\x{39}",
            "graph" => r"\x{21}-\x{7E}",
            "lower" => r"\x{61}-\x{7A}",
            "print" => r"\x{20}-\x{7E}",
            "punct" => r"\x{21}-\x{2F}\x{3A}-\x{40}\x{5B}-\x{60}\x{7B}-\x{7E}",
            "space" => r"\x{9}-\x{D}\x{20}",
            "upper" => r"\x{41}-\x{5A}",
            "word" => r"\x{30}-\x{39}\x{41}-\x{5A}\x{5F}\x{61}-\x{7A}",
            "xdigit" => r"\x{30}-\x{39}\x{41}-\x{46}\x{61}-\x{66}",
            _ => return None,
        })
    }

    /// Go's Unicode tables reachable by `\pX` / `\p{Name}`, as class contents.
    fn unicode_class(name: &str) -> Option<String> {
        const CATEGORIES: &[&str] = &[
            "Cc", "Cf", "Co", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N", "Nd",
            "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
            "Z", "Zl", "Zp", "Zs",
        ];
        match name {
            "Any" => Some(r"\x{0}-\x{10FFFF}".to_string()),
            // Go's `C` is Cc|Cf|Co|Cs (no unassigned code points); surrogates never occur in text.
            "C" => Some(r"\p{Cc}\p{Cf}\p{Co}".to_string()),
            "Cs" => Some(NOTHING.to_string()),
            n if CATEGORIES.contains(&n) => Some(format!(r"\p{{{n}}}")),
            // Go also accepts script names; the `regex` crate knows the same scripts.
            n if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphabetic() || c == '_') => {
                let candidate = format!(r"\p{{sc={n}}}");
                regex::Regex::new(&candidate).ok().map(|_| candidate)
            }
            _ => None,
        }
    }

    /// Parses `\p..`/`\P..` at the cursor. Returns (contents, negated).
    fn parse_unicode(p: &mut Cursor<'_>) -> Result<(String, bool), String> {
        let start = p.rest;
        p.bump(); // backslash
        let mut negated = p.bump() == Some('P');
        let name: String = match p.bump() {
            None => return Err(format!("invalid character class range `{start}`")),
            Some('{') => {
                let Some(end) = p.rest.find('}') else {
                    return Err(format!("invalid character class range `{start}`"));
                };
                let name = p.rest[..end].to_string();
                p.rest = &p.rest[end + 1..];
                name
            }
            Some(c) => c.to_string(),
        };
        let name = match name.strip_prefix('^') {
            Some(n) => {
                negated = !negated;
                n.to_string()
            }
            None => name,
        };
        match unicode_class(&name) {
            Some(contents) => Ok((contents, negated)),
            None => Err(format!("invalid character class range `\\p{name}`")),
        }
    }

    /// Go's `parseEscape`, with the cursor after the backslash.
    fn parse_escape(p: &mut Cursor<'_>) -> Result<char, String> {
        let Some(c) = p.bump() else {
            return Err("trailing backslash at end of expression".to_string());
        };
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            return Ok(c);
        }
        let octal = |c: Option<char>| c.filter(|d| ('0'..='7').contains(d));
        match c {
            '0'..='7' => {
                if c != '0' && octal(p.peek()).is_none() {
                    return Err(format!("invalid escape sequence `\\{c}`"));
                }
                let mut r = u32::from(c) - u32::from('0');
                for _ in 1..3 {
                    match octal(p.peek()) {
                        Some(d) => {
                            p.bump();
                            r = r * 8 + (u32::from(d) - u32::from('0'));
                        }
                        None => break,
                    }
                }
                char::from_u32(r).ok_or_else(|| format!("invalid escape sequence `\\{c}`"))
            }
            'x' => {
                let bad = || "invalid escape sequence `\\x`".to_string();
                let first = p.bump().ok_or_else(bad)?;
                if first == '{' {
                    let mut r: u32 = 0;
                    let mut digits = 0;
                    loop {
                        let d = p.bump().ok_or_else(bad)?;
                        if d == '}' {
                            break;
                        }
                        r = r * 16 + d.to_digit(16).ok_or_else(bad)?;
                        if r > 0x10FFFF {
                            return Err(bad());
                        }
                        digits += 1;
                    }
                    if digits == 0 {
                        return Err(bad());
                    }
                    // Unreachable from patterns (`{` always arrives escaped); a surrogate is
                    // reported as invalid.
                    return char::from_u32(r).ok_or_else(bad);
                }
                let hi = first.to_digit(16);
                let lo = p.bump().and_then(|c| c.to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => char::from_u32(h * 16 + l).ok_or_else(bad),
                    _ => Err(bad()),
                }
            }
            'a' => Ok('\u{7}'),
            'f' => Ok('\u{C}'),
            'n' => Ok('\n'),
            'r' => Ok('\r'),
            't' => Ok('\t'),
            'v' => Ok('\u{B}'),
            _ => Err(format!("invalid escape sequence `\\{c}`")),
        }
    }

    fn nested(out: &mut String, contents: &str, negated: bool) {
        out.push('[');
        if negated {
            out.push('^');
        }
        out.push_str(contents);
        out.push(']');
    }

    /// Go's `parseClass`, with the cursor on `[`.
    fn parse_class(p: &mut Cursor<'_>) -> Result<String, String> {
        let whole = p.rest;
        p.bump();
        let mut out = String::from("[");
        if p.peek() == Some('^') {
            p.bump();
            out.push('^');
        }
        let missing = || format!("missing closing ]: `{whole}`");
        let mut first = true;
        loop {
            match p.peek() {
                None => return Err(missing()),
                Some(']') if !first => {
                    p.bump();
                    break;
                }
                _ => {}
            }
            first = false;
            // POSIX class `[:name:]` (the closing `:]` is searched for anywhere after `[:`).
            if p.rest.len() > 2 && p.rest.starts_with("[:") {
                if let Some(i) = p.rest[2..].find(":]") {
                    let full = &p.rest[..i + 4];
                    let inner = &full[2..full.len() - 2];
                    let (name, negated) = match inner.strip_prefix('^') {
                        Some(n) => (n, true),
                        None => (inner, false),
                    };
                    let Some(contents) = posix_class(name) else {
                        return Err(format!("invalid character class range `{full}`"));
                    };
                    p.rest = &p.rest[full.len()..];
                    nested(&mut out, contents, negated);
                    continue;
                }
            }
            if p.peek() == Some('\\') {
                match p.peek2() {
                    Some('p' | 'P') => {
                        let (contents, negated) = parse_unicode(p)?;
                        nested(&mut out, &contents, negated);
                        continue;
                    }
                    Some(c) => {
                        if let Some((contents, negated)) = perl_class(c) {
                            p.bump();
                            p.bump();
                            nested(&mut out, contents, negated);
                            continue;
                        }
                    }
                    None => {}
                }
            }
            let lo = class_char(p, &missing)?;
            let mut hi = lo;
            let mut ahead = p.rest.chars();
            if ahead.next() == Some('-') && ahead.next().is_some_and(|c| c != ']') {
                p.bump();
                hi = class_char(p, &missing)?;
                if hi < lo {
                    return Err(format!("invalid character class range `{lo}-{hi}`"));
                }
            }
            range(&mut out, lo, hi);
        }
        out.push(']');
        Ok(out)
    }

    fn class_char(p: &mut Cursor<'_>, missing: &dyn Fn() -> String) -> Result<char, String> {
        match p.bump() {
            None => Err(missing()),
            Some('\\') => parse_escape(p),
            Some(c) => Ok(c),
        }
    }

    /// Go's `parseInt` for repeat counts: decimal, no leading zeros; `None` for "too big".
    fn parse_int(s: &str) -> Option<(Option<u32>, &str)> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || (digits >= 2 && s.starts_with('0')) {
            return None;
        }
        let mut n: u32 = 0;
        let mut too_big = false;
        for b in s[..digits].bytes() {
            if n >= 100_000_000 {
                too_big = true;
                break;
            }
            n = n * 10 + u32::from(b - b'0');
        }
        Some(((!too_big).then_some(n), &s[digits..]))
    }

    /// Go's `parseRepeat` at a `{`: `(min, max, rest)` with `max == None` for `{n,}`; a count
    /// too big to parse is reported as 1001 so that the caller rejects it. `None` when the text
    /// is not a repetition (then the `{` is a literal).
    fn parse_repeat(s: &str) -> Option<(u32, Option<u32>, &str)> {
        let s = s.strip_prefix('{')?;
        let (min, s) = parse_int(s)?;
        let (max, s) = match s.strip_prefix(',') {
            None => (Some(min), s),
            Some(rest) if rest.starts_with('}') => (None, rest),
            Some(rest) => {
                let (max, rest) = parse_int(rest)?;
                (Some(max), rest)
            }
        };
        let rest = s.strip_prefix('}')?;
        let min = min.unwrap_or(1001);
        let max = max.map(|m| m.unwrap_or(1001));
        Some((min, max, rest))
    }

    /// Translation state: what a following repetition operator would apply to.
    struct Output {
        out: String,
        /// Start (in `out`) of the last operand, if there is one to repeat.
        operand: Option<usize>,
        /// Whether that operand already carries a repetition (then it needs a group).
        repeated: bool,
        /// Whether the previous token was a repetition (Go rejects `a**`, `a*{2}`).
        after_repeat: bool,
        /// Starts of the open groups.
        groups: Vec<usize>,
    }

    impl Output {
        fn operand(&mut self, text: &str) {
            self.operand = Some(self.out.len());
            self.out.push_str(text);
            self.repeated = false;
            self.after_repeat = false;
        }

        fn literal(&mut self, c: char) {
            self.operand = Some(self.out.len());
            lit(&mut self.out, c);
            self.repeated = false;
            self.after_repeat = false;
        }

        /// Applies a repetition operator (`*`, `+`, `?`, `{n,m}`, maybe followed by `?`).
        fn repeat(&mut self, op: &str, text: &str) -> Result<(), String> {
            if self.after_repeat {
                return Err(format!("invalid nested repetition operator `{text}`"));
            }
            let Some(start) = self.operand else {
                return Err(format!("missing argument to repetition operator `{text}`"));
            };
            if self.repeated {
                // Go allows `x*` + `\Q\E` + `{2}`: the star expression is repeated as a whole.
                self.out.insert_str(start, "(?:");
                self.out.push(')');
            }
            self.out.push_str(op);
            self.repeated = true;
            self.after_repeat = true;
            Ok(())
        }
    }

    /// Translates Go regexp syntax to `regex` crate syntax, or says why Go would reject it.
    pub(super) fn translate(go: &str) -> Result<String, String> {
        let mut p = Cursor { rest: go };
        let mut o = Output {
            out: String::new(),
            operand: None,
            repeated: false,
            after_repeat: false,
            groups: Vec::new(),
        };
        while let Some(c) = p.peek() {
            match c {
                '(' => {
                    p.bump();
                    if p.peek() == Some('?') {
                        return Err("Perl flag groups are not produced by patterns".to_string());
                    }
                    o.groups.push(o.out.len());
                    o.out.push_str("(?:");
                    o.operand = None;
                    o.after_repeat = false;
                }
                ')' => {
                    p.bump();
                    let Some(start) = o.groups.pop() else {
                        return Err("unexpected )".to_string());
                    };
                    o.out.push(')');
                    o.operand = Some(start);
                    o.repeated = false;
                    o.after_repeat = false;
                }
                '|' => {
                    p.bump();
                    o.out.push('|');
                    o.operand = None;
                    o.after_repeat = false;
                }
                '^' | '$' | '.' => {
                    p.bump();
                    o.operand(&c.to_string());
                }
                '[' => {
                    let class = parse_class(&mut p)?;
                    o.operand(&class);
                }
                '*' | '+' | '?' => {
                    p.bump();
                    let mut op = c.to_string();
                    if p.peek() == Some('?') {
                        p.bump();
                        op.push('?');
                    }
                    o.repeat(&op, &op)?;
                }
                '{' => {
                    let before = p.rest;
                    let Some((min, max, after)) = parse_repeat(p.rest) else {
                        // Not a valid `{n}`, `{n,}` or `{n,m}`: a literal `{`.
                        p.bump();
                        o.literal('{');
                        continue;
                    };
                    let text = &before[..before.len() - after.len()];
                    if min > 1000 || max.is_some_and(|m| m > 1000 || min > m) {
                        return Err(format!("invalid repeat count `{text}`"));
                    }
                    p.rest = after;
                    let mut op = match max {
                        Some(m) => format!("{{{min},{m}}}"),
                        None => format!("{{{min},}}"),
                    };
                    if p.peek() == Some('?') {
                        p.bump();
                        op.push('?');
                    }
                    o.repeat(&op, text)?;
                }
                '\\' => {
                    match p.peek2() {
                        Some('A') | Some('z') => {
                            p.bump();
                            let z = p.bump();
                            o.operand(if z == Some('A') { r"\A" } else { r"\z" });
                            continue;
                        }
                        Some('b') | Some('B') => {
                            p.bump();
                            let b = p.bump();
                            // Go's word boundaries are ASCII-only.
                            o.operand(if b == Some('b') {
                                r"(?-u:\b)"
                            } else {
                                r"(?-u:\B)"
                            });
                            continue;
                        }
                        Some('C') => return Err("invalid escape sequence `\\C`".to_string()),
                        Some('Q') => {
                            p.bump();
                            p.bump();
                            let (literal, rest) = match p.rest.find(r"\E") {
                                Some(i) => (&p.rest[..i], &p.rest[i + 2..]),
                                None => (p.rest, ""),
                            };
                            p.rest = rest;
                            for ch in literal.chars() {
                                o.literal(ch);
                            }
                            o.after_repeat = false;
                            continue;
                        }
                        Some('p') | Some('P') => {
                            let (contents, negated) = parse_unicode(&mut p)?;
                            let mut class = String::new();
                            nested(&mut class, &contents, negated);
                            o.operand(&class);
                            continue;
                        }
                        Some(k) => {
                            if let Some((contents, negated)) = perl_class(k) {
                                p.bump();
                                p.bump();
                                let mut class = String::new();
                                nested(&mut class, contents, negated);
                                o.operand(&class);
                                continue;
                            }
                        }
                        None => {}
                    }
                    p.bump();
                    let ch = parse_escape(&mut p)?;
                    o.literal(ch);
                }
                _ => {
                    p.bump();
                    o.literal(c);
                }
            }
        }
        if !o.groups.is_empty() {
            return Err("missing closing )".to_string());
        }
        Ok(o.out)
    }
}

// ---------------------------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------------------------

/// How a compiled [`Pattern`] tests a path (upstream's `matchType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// No special characters: the path must equal the pattern.
    Exact,
    /// `<literal>**`: the path must start with `<literal>`.
    Prefix,
    /// `**<literal>`: the path must end with `<literal>` (or equal it without its leading `/`).
    Suffix,
    /// Anything else: a regular expression.
    Regexp,
}

#[derive(Debug, Clone)]
enum Compiled {
    Exact,
    Prefix,
    Suffix,
    Regexp {
        /// The Go regexp upstream builds (kept for `--explain` and the compile tests).
        go: String,
        /// The translated regex, or why Go would fail to compile it.
        re: Result<regex::Regex, String>,
    },
}

/// Builds upstream's regexp text and match type for a cleaned pattern (without its `!`).
fn compile(pattern: &str) -> (MatchKind, String) {
    let mut reg = String::from("^");
    let mut kind = MatchKind::Exact;
    let mut chars = pattern.chars().peekable();
    if chars.peek() == Some(&BOM) {
        chars.next();
    }
    let mut first = true;
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is treated as `**`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    if kind == MatchKind::Exact {
                        kind = MatchKind::Prefix;
                    } else {
                        reg.push_str(".*");
                        kind = MatchKind::Regexp;
                    }
                } else {
                    reg.push_str("(.*/)?");
                    kind = MatchKind::Regexp;
                }
                if first {
                    kind = MatchKind::Suffix;
                }
            }
            '*' => {
                reg.push_str("[^/]*");
                kind = MatchKind::Regexp;
            }
            '?' => {
                reg.push_str("[^/]");
                kind = MatchKind::Regexp;
            }
            // Upstream means to escape `.+()|{}$`, but its escape bitmap drops every byte
            // >= 64, so `|`, `{` and `}` reach the regexp raw: `|` is an alternation (`a*|b`
            // matches every path) and `{n,m}` a counted repetition.
            '.' | '+' | '(' | ')' | '$' => {
                reg.push('\\');
                reg.push(ch);
            }
            '\\' => match chars.next() {
                Some(next) => {
                    reg.push('\\');
                    reg.push(next);
                    kind = MatchKind::Regexp;
                }
                None => reg.push('\\'),
            },
            '[' | ']' => {
                reg.push(ch);
                kind = MatchKind::Regexp;
            }
            _ => reg.push(ch),
        }
        first = false;
    }
    if kind == MatchKind::Regexp {
        reg.push('$');
    }
    (kind, reg)
}

/// One compiled `.dockerignore` pattern (upstream's `Pattern`).
///
/// `text` is the trimmed, `filepath.Clean`ed pattern without its leading `!`; `Display` shows
/// it with the `!` of an exception.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    exclusion: bool,
    /// Number of `/`-separated elements of `text` (for the deprecated `matches`).
    depth: usize,
    line: Option<usize>,
    compiled: Compiled,
}

impl Pattern {
    /// Compiles a cleaned pattern (no `!`). Never fails: a bad regexp fails when matched.
    fn build(text: String, exclusion: bool, line: Option<usize>) -> Pattern {
        let (kind, go) = compile(&text);
        let compiled = match kind {
            MatchKind::Exact => Compiled::Exact,
            MatchKind::Prefix => Compiled::Prefix,
            MatchKind::Suffix => Compiled::Suffix,
            MatchKind::Regexp => {
                let re = re2::translate(&go)
                    .and_then(|rust| regex::Regex::new(&rust).map_err(|e| e.to_string()));
                Compiled::Regexp { go, re }
            }
        };
        Pattern {
            depth: text.split('/').count(),
            text,
            exclusion,
            line,
            compiled,
        }
    }

    /// The cleaned pattern, without the `!` of an exception (upstream `Pattern.String()`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this is an exception (`!pattern`) that re-includes what earlier patterns matched.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// 1-based line in the ignore file, when the pattern came from [`parse_ignore_file`].
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// How the pattern is tested against a path.
    pub fn kind(&self) -> MatchKind {
        match self.compiled {
            Compiled::Exact => MatchKind::Exact,
            Compiled::Prefix => MatchKind::Prefix,
            Compiled::Suffix => MatchKind::Suffix,
            Compiled::Regexp { .. } => MatchKind::Regexp,
        }
    }

    /// The Go regular expression upstream builds for this pattern (`None` unless
    /// [`MatchKind::Regexp`]), e.g. `^(.*/)?[^/]*\.txt$` for `**/*.txt`.
    pub fn go_regexp(&self) -> Option<&str> {
        match &self.compiled {
            Compiled::Regexp { go, .. } => Some(go),
            _ => None,
        }
    }

    /// Tests this one pattern against a whole path (no parent directories, exception flag
    /// ignored). Fails if the pattern's regular expression is invalid.
    pub fn matches(&self, path: &str) -> Result<bool, PatternError> {
        let text = self.text.as_bytes();
        let path_bytes = path.as_bytes();
        match &self.compiled {
            Compiled::Exact => Ok(path == self.text),
            Compiled::Prefix => {
                let prefix = text.get(..text.len().saturating_sub(2)).unwrap_or_default();
                Ok(path_bytes.starts_with(prefix))
            }
            Compiled::Suffix => {
                let suffix = text.get(2..).unwrap_or_default();
                if path_bytes.ends_with(suffix) {
                    return Ok(true);
                }
                // `**/foo` matches `foo`.
                Ok(suffix.first() == Some(&b'/') && path_bytes == &suffix[1..])
            }
            Compiled::Regexp { re: Ok(re), .. } => Ok(re.is_match(path)),
            Compiled::Regexp {
                re: Err(reason), ..
            } => Err(PatternError::Regex {
                pattern: self.to_string(),
                reason: reason.clone(),
                line: self.line,
            }),
        }
    }

    /// Like [`Pattern::matches`], but an invalid pattern counts as no match (upstream ignores
    /// errors when it tests parent directories).
    fn matches_lenient(&self, path: &str) -> bool {
        self.matches(path).unwrap_or(false)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exclusion {
            f.write_str("!")?;
        }
        f.write_str(&self.text)
    }
}

/// Which patterns matched a directory or one of its parents, carried from a directory to its
/// children by [`PatternMatcher::matches_using_parent_results`] (upstream's `MatchInfo`).
///
/// The default value means "no information": the matcher then checks the parents itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// A compiled pattern list (upstream's `PatternMatcher`).
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Compiles patterns like upstream `New`: each is trimmed (empty ones are dropped),
    /// `filepath.Clean`ed, a leading `!` makes it an exception, and it must pass Go's
    /// `filepath.Match` syntax check.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        Self::build(patterns.iter().map(|p| (p.as_ref(), None)))
    }

    /// Compiles the lines of an ignore file, keeping their line numbers for errors and
    /// [`Pattern::line`].
    pub fn from_ignore_lines(lines: &[IgnoreLine]) -> Result<Self, PatternError> {
        Self::build(lines.iter().map(|l| (l.pattern.as_str(), Some(l.line))))
    }

    fn build<'a>(
        patterns: impl Iterator<Item = (&'a str, Option<usize>)>,
    ) -> Result<Self, PatternError> {
        let mut out = PatternMatcher::default();
        for (raw, line) in patterns {
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let cleaned = clean(trimmed);
            let (text, exclusion) = match cleaned.strip_prefix('!') {
                Some("") => return Err(PatternError::IllegalExclusion { line }),
                Some(rest) => (rest.to_string(), true),
                None => (cleaned.clone(), false),
            };
            if let Err(reason) = glob_match_inner(&text, ".") {
                return Err(PatternError::Syntax {
                    pattern: cleaned,
                    reason: reason.to_string(),
                    line,
                });
            }
            out.exclusions |= exclusion;
            out.patterns.push(Pattern::build(text, exclusion, line));
        }
        Ok(out)
    }

    /// Whether any pattern is an exception (`!…`).
    pub fn exclusions(&self) -> bool {
        self.exclusions
    }

    /// The compiled patterns, in order (empty input lines dropped).
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Upstream's deprecated `Matches`: the path matches if the last pattern that matches it
    /// is not an exception. Besides the path itself, each pattern is tried against just one
    /// parent directory: the one with as many elements as the pattern. The path is used as
    /// given; the package-level [`matches`] cleans it first.
    pub fn matches(&self, path: &str) -> Result<bool, PatternError> {
        let prefixes = parent_prefixes(path);
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change a match, an exception cannot change a non-match.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(path)?;
            if !hit && pattern.depth <= prefixes.len() {
                hit = pattern.matches_lenient(&prefixes[pattern.depth - 1]);
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Upstream `MatchesOrParentMatches`: the path matches if the last pattern that matches it,
    /// or one of its parent directories, is not an exception. The path is used as given.
    pub fn matches_or_parent_matches(&self, path: &str) -> Result<bool, PatternError> {
        let prefixes = parent_prefixes(path);
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches(path)?
                || prefixes
                    .iter()
                    .any(|parent| pattern.matches_lenient(parent));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Upstream's deprecated `MatchesUsingParentResult`: `parent_matched` seeds the result, and
    /// only the path itself is tested. Wrong in some cases (docker/buildx#850); kept for
    /// completeness.
    pub fn matches_using_parent_result(
        &self,
        path: &str,
        parent_matched: bool,
    ) -> Result<bool, PatternError> {
        let mut matched = parent_matched;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            if pattern.matches(path)? {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Upstream `MatchesUsingParentResults`, the incremental form a directory walk uses (fsutil
    /// `filter.go`): pass the [`MatchInfo`] returned for the parent directory, or the default
    /// value for a top-level entry. A pattern that matched the parent counts as matching without
    /// being tested again; the others are tested against the path alone. With a default
    /// `MatchInfo`, parents are tested as in [`PatternMatcher::matches_or_parent_matches`].
    ///
    /// Returns whether the path matches and the `MatchInfo` to pass to its children.
    pub fn matches_using_parent_results(
        &self,
        path: &str,
        parent: &MatchInfo,
    ) -> Result<(bool, MatchInfo), PatternError> {
        let parent_matched = &parent.parent_matched;
        if !parent_matched.is_empty() && parent_matched.len() != self.patterns.len() {
            return Err(PatternError::MatchInfoLength {
                expected: self.patterns.len(),
                got: parent_matched.len(),
            });
        }
        let mut prefixes: Option<Vec<String>> = None;
        let mut matched = false;
        let mut info = vec![false; self.patterns.len()];
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent_matched.get(i).copied().unwrap_or(false);
            if !hit {
                if pattern.exclusion != matched {
                    // Not evaluated, so recorded as "parent did not match" for the children.
                    continue;
                }
                hit = pattern.matches(path)?;
                if !hit && parent_matched.is_empty() {
                    let parents = prefixes.get_or_insert_with(|| parent_prefixes(path));
                    hit = parents.iter().any(|p| pattern.matches_lenient(p));
                }
            }
            info[i] = hit;
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok((
            matched,
            MatchInfo {
                parent_matched: info,
            },
        ))
    }

    /// Explains [`PatternMatcher::matches_or_parent_matches`]: the index (into
    /// [`PatternMatcher::patterns`]) of the pattern that decided the result, i.e. the last
    /// pattern that matched the path or a parent and was consulted. `None` when no pattern
    /// matched (the path is not matched). A pattern whose regexp is invalid counts as not
    /// matching here.
    pub fn last_match(&self, path: &str) -> Option<usize> {
        let prefixes = parent_prefixes(path);
        let mut matched = false;
        let mut decided = None;
        for (i, pattern) in self.patterns.iter().enumerate() {
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches_lenient(path)
                || prefixes
                    .iter()
                    .any(|parent| pattern.matches_lenient(parent));
            if hit {
                matched = !pattern.exclusion;
                decided = Some(i);
            }
        }
        decided
    }
}

/// Upstream's deprecated package-level `Matches(file, patterns)`: compiles the patterns, cleans
/// the path, returns `false` for a path that cleans to `.`, then [`PatternMatcher::matches`].
pub fn matches<S: AsRef<str>>(path: &str, patterns: &[S]) -> Result<bool, PatternError> {
    let matcher = PatternMatcher::new(patterns)?;
    let path = clean(path);
    if path == "." {
        return Ok(false);
    }
    matcher.matches(&path)
}

/// Upstream's package-level `MatchesOrParentMatches(file, patterns)`: like [`matches`] but with
/// [`PatternMatcher::matches_or_parent_matches`].
pub fn matches_or_parent_matches<S: AsRef<str>>(
    path: &str,
    patterns: &[S],
) -> Result<bool, PatternError> {
    let matcher = PatternMatcher::new(patterns)?;
    let path = clean(path);
    if path == "." {
        return Ok(false);
    }
    matcher.matches_or_parent_matches(&path)
}

// ---------------------------------------------------------------------------------------------
// Ignore files
// ---------------------------------------------------------------------------------------------

/// One pattern read from an ignore file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreLine {
    /// The pattern as `ignorefile.ReadAll` returns it (`!` kept, cleaned, no leading `/`).
    pub pattern: String,
    /// 1-based line number in the file.
    pub line: usize,
}

/// Reads a `.dockerignore` like upstream `ignorefile.ReadAll`, keeping line numbers.
///
/// Lines end at `\n` (a `\r` before it is dropped). A UTF-8 BOM at the start of the first line
/// is removed. A line whose first character is `#` is a comment (a `#` after leading spaces is
/// not). Each remaining line is trimmed and skipped if empty. A leading `!` is set aside and the
/// rest trimmed again; a non-empty rest is `filepath.Clean`ed and loses one leading `/` (unless
/// it is just `/`). A lone `!` is kept as `!`: [`PatternMatcher::new`] rejects it. A line of
/// 64 KiB or more is an error, as in Go.
pub fn parse_ignore_file(text: &str) -> Result<Vec<IgnoreLine>, IgnoreFileError> {
    let mut out = Vec::new();
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let line = index + 1;
        let content = raw.strip_suffix('\n').unwrap_or(raw);
        if content.len() >= MAX_LINE_BYTES {
            return Err(IgnoreFileError::LineTooLong {
                line,
                len: content.len(),
            });
        }
        let mut content = content.strip_suffix('\r').unwrap_or(content);
        if index == 0 {
            content = content.strip_prefix(BOM).unwrap_or(content);
        }
        if content.starts_with('#') {
            continue;
        }
        let mut pattern = content.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut pattern = pattern.to_string();
        if !pattern.is_empty() {
            pattern = clean(&pattern);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
        }
        if invert {
            pattern.insert(0, '!');
        }
        out.push(IgnoreLine { pattern, line });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/dockerignore");

    /// Reads a corpus TSV file (no quoting): header names and rows of fields.
    fn read_tsv(name: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let path = format!("{CORPUS}/{name}");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read corpus file {path}: {e}"));
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .expect("corpus file has a header")
            .split('\t')
            .map(str::to_string)
            .collect();
        let rows: Vec<Vec<String>> = lines
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), header.len(), "{name} row {}: field count", i + 2);
        }
        (header, rows)
    }

    fn column(header: &[String], name: &str) -> usize {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("missing column {name}"))
    }

    /// `matches.tsv` pattern lists: joined by the two characters `\n`; empty means no patterns.
    fn split_patterns(field: &str) -> Vec<String> {
        if field.is_empty() {
            Vec::new()
        } else {
            field.split("\\n").map(str::to_string).collect()
        }
    }

    /// Cumulative prefixes of `Dir(path)` split on `/`, as the upstream walk tests build them.
    fn walk_prefixes(path: &str) -> Vec<String> {
        let parent = dir(path);
        if parent == "." {
            return Vec::new();
        }
        let parts: Vec<&str> = parent.split('/').collect();
        (1..=parts.len()).map(|i| parts[..i].join("/")).collect()
    }

    fn run_matches_row(patterns: &[String], path: &str, function: &str) -> Result<bool, String> {
        let err = |e: PatternError| e.to_string();
        if function == "Matches" {
            return matches(path, patterns).map_err(err);
        }
        let pm = PatternMatcher::new(patterns).map_err(err)?;
        match function {
            "MatchesOrParentMatches" => pm.matches_or_parent_matches(path).map_err(err),
            "MatchesUsingParentResults" => {
                let mut info = MatchInfo::default();
                for prefix in walk_prefixes(path) {
                    info = pm
                        .matches_using_parent_results(&prefix, &info)
                        .map(|(_, i)| i)
                        .unwrap_or_default();
                }
                pm.matches_using_parent_results(path, &info)
                    .map(|(m, _)| m)
                    .map_err(err)
            }
            "MatchesUsingParentResultsNoContext" => pm
                .matches_using_parent_results(path, &MatchInfo::default())
                .map(|(m, _)| m)
                .map_err(err),
            "MatchesUsingParentResult" => {
                let mut parent = false;
                for prefix in walk_prefixes(path) {
                    parent = pm
                        .matches_using_parent_result(&prefix, parent)
                        .unwrap_or(false);
                }
                pm.matches_using_parent_result(path, parent).map_err(err)
            }
            other => panic!("unknown function {other}"),
        }
    }

    #[test]
    fn corpus_matches() {
        let (header, rows) = read_tsv("matches.tsv");
        let (c_pat, c_path, c_fn, c_exp, c_notes) = (
            column(&header, "patterns"),
            column(&header, "path"),
            column(&header, "function"),
            column(&header, "expected"),
            column(&header, "notes"),
        );
        let mut failures = Vec::new();
        let (mut run, mut skipped) = (0, 0);
        for (i, row) in rows.iter().enumerate() {
            if row[c_notes]
                .to_ascii_lowercase()
                .starts_with("windows-only")
            {
                skipped += 1;
                continue;
            }
            run += 1;
            let patterns = split_patterns(&row[c_pat]);
            let got = run_matches_row(&patterns, &row[c_path], &row[c_fn]);
            let ok = matches!(
                (row[c_exp].as_str(), &got),
                ("true", Ok(true)) | ("false", Ok(false)) | ("error", Err(_))
            );
            // Upstream asserts a repeated call fails the same way (no state, no panic).
            let repeat_ok = row[c_exp] != "error"
                || run_matches_row(&patterns, &row[c_path], &row[c_fn]) == got;
            if !ok || !repeat_ok {
                failures.push(format!(
                    "matches.tsv line {}: {} patterns={:?} path={:?}: expected {}, got {:?}",
                    i + 2,
                    row[c_fn],
                    patterns,
                    row[c_path],
                    row[c_exp],
                    got
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!((run, skipped), (350, 0), "rows run / skipped");
    }

    #[test]
    fn corpus_compile() {
        let (header, rows) = read_tsv("compile.tsv");
        let (c_pat, c_type, c_re) = (
            column(&header, "pattern"),
            column(&header, "match_type"),
            column(&header, "regexp_slash"),
        );
        let mut failures = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let pattern = Pattern::build(clean(&row[c_pat]), false, None);
            let kind = match pattern.kind() {
                MatchKind::Exact => "exactMatch",
                MatchKind::Prefix => "prefixMatch",
                MatchKind::Suffix => "suffixMatch",
                MatchKind::Regexp => "regexpMatch",
            };
            let regexp = pattern.go_regexp().unwrap_or("");
            if kind != row[c_type] || regexp != row[c_re] {
                failures.push(format!(
                    "compile.tsv line {}: {:?}: expected {} {:?}, got {} {:?}",
                    i + 2,
                    row[c_pat],
                    row[c_type],
                    row[c_re],
                    kind,
                    regexp
                ));
            }
            if let Compiled::Regexp { re: Err(e), .. } = &pattern.compiled {
                failures.push(format!("compile.tsv line {}: regexp failed: {e}", i + 2));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(rows.len(), 21);
    }

    #[test]
    fn corpus_new() {
        let (header, rows) = read_tsv("new.tsv");
        let (c_json, c_err, c_count, c_excl) = (
            column(&header, "patterns_json"),
            column(&header, "error"),
            column(&header, "pattern_count"),
            column(&header, "exclusions"),
        );
        let mut failures = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let patterns: Vec<String> =
                serde_json::from_str(&row[c_json]).expect("patterns_json is a JSON string array");
            let result = PatternMatcher::new(&patterns);
            let ok = match (&result, row[c_err].as_str()) {
                (Err(_), "true") => true,
                (Ok(pm), "false") => {
                    (row[c_count].is_empty()
                        || row[c_count].parse::<usize>().ok() == Some(pm.patterns().len()))
                        && (row[c_excl].is_empty() || (row[c_excl] == "true") == pm.exclusions())
                }
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "new.tsv line {}: {:?}: expected error={} count={:?} exclusions={:?}, got {:?}",
                    i + 2,
                    patterns,
                    row[c_err],
                    row[c_count],
                    row[c_excl],
                    result.map(|pm| (pm.patterns().len(), pm.exclusions()))
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(rows.len(), 7);
    }

    /// `ignorefile.tsv` input escapes: `\n`, `\t`, `\r`, `\\`.
    fn unescape(field: &str) -> String {
        let mut out = String::new();
        let mut chars = field.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        }
        out
    }

    #[test]
    fn corpus_ignorefile() {
        let (header, rows) = read_tsv("ignorefile.tsv");
        let (c_in, c_exp) = (column(&header, "input"), column(&header, "expected"));
        let mut failures = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let expected: Vec<String> =
                serde_json::from_str(&row[c_exp]).expect("expected is a JSON string array");
            let got: Vec<String> = parse_ignore_file(&unescape(&row[c_in]))
                .expect("corpus ignore files parse")
                .into_iter()
                .map(|l| l.pattern)
                .collect();
            if got != expected {
                failures.push(format!(
                    "ignorefile.tsv line {}: expected {expected:?}, got {got:?}",
                    i + 2
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn ignore_file_keeps_line_numbers() {
        let text = "\u{FEFF}# comment\r\nfoo\r\n\n  #not-a-comment\n! /abs/../x \n!\n/\n";
        let lines = parse_ignore_file(text).unwrap();
        let got: Vec<(&str, usize)> = lines.iter().map(|l| (l.pattern.as_str(), l.line)).collect();
        assert_eq!(
            got,
            [
                ("foo", 2),
                ("#not-a-comment", 4),
                ("!x", 5),
                ("!", 6),
                ("/", 7)
            ]
        );
        let err = PatternMatcher::from_ignore_lines(&lines).unwrap_err();
        assert_eq!(err, PatternError::IllegalExclusion { line: Some(6) });
        assert!(err
            .to_string()
            .starts_with("line 6: illegal exclusion pattern"));

        let long = format!("a\n{}\n", "x".repeat(MAX_LINE_BYTES));
        assert_eq!(
            parse_ignore_file(&long),
            Err(IgnoreFileError::LineTooLong {
                line: 2,
                len: MAX_LINE_BYTES
            })
        );
        let ok = format!("{}\n", "x".repeat(MAX_LINE_BYTES - 1));
        assert_eq!(parse_ignore_file(&ok).unwrap().len(), 1);
    }

    #[test]
    fn pattern_lines_and_errors() {
        let lines = parse_ignore_file("ok\nsub/[\n").unwrap();
        let err = PatternMatcher::from_ignore_lines(&lines).unwrap_err();
        assert!(
            matches!(&err, PatternError::Syntax { pattern, line: Some(2), .. } if pattern == "sub/["),
            "{err:?}"
        );
        let pm =
            PatternMatcher::from_ignore_lines(&parse_ignore_file("a\n\n!b\n").unwrap()).unwrap();
        let lines: Vec<_> = pm
            .patterns()
            .iter()
            .map(|p| (p.to_string(), p.line()))
            .collect();
        assert_eq!(lines, [("a".into(), Some(1)), ("!b".into(), Some(3))]);
    }

    #[test]
    fn go_path_helpers() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a//b/./c/", "a/b/c"),
            ("../../a", "../../a"),
            ("/../a", "/a"),
            ("a/../..", ".."),
            ("!docs/../x", "x"),
            ("!./a", "!./a"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
        assert_eq!(dir("a/b/"), "a/b");
        assert_eq!(dir("/"), "/");
        assert_eq!(dir("file"), ".");
        assert_eq!(base("a/b/"), "b");
        assert_eq!(base("///"), "/");
        assert_eq!(join(&[".", "/a"]), "a");
        assert_eq!(join(&["", ""]), "");
        assert_eq!(
            parent_prefixes("/any/path/there"),
            ["", "/any", "/any/path"]
        );
    }

    #[test]
    fn filepath_match_semantics() {
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("*.json", "a.json", Ok(true)),
            ("*.json", "a/b.json", Ok(false)),
            ("a*b*c", "axxbyyc", Ok(true)),
            ("[!a]", "!", Ok(true)),
            ("[!a]", "b", Ok(false)),
            ("[^a]", "b", Ok(true)),
            ("[a-c]x", "bx", Ok(true)),
            ("\\*", "*", Ok(true)),
            ("[]a]", "]", Err(())),
            ("a[", "x", Err(())),
            ("x*[", "x[", Err(())),
            // Go's `filepath.Match` stops at the first chunk that fails to match.
            ("x*[", "y", Ok(false)),
            ("[z-a]", "q", Ok(false)),
            ("é?", "éß", Ok(true)),
        ];
        for (pattern, name, want) in cases {
            let got = glob_match(pattern, name).map_err(|_| ());
            assert_eq!(&got, want, "glob_match({pattern:?}, {name:?})");
        }
    }

    /// Quirks that come from upstream building a Go regexp (or a string test) rather than
    /// using `filepath.Match`.
    #[test]
    fn regexp_quirks() {
        let check = |pattern: &str, path: &str| {
            PatternMatcher::new(&[pattern])
                .and_then(|pm| pm.matches_or_parent_matches(path))
                .map_err(|_| ())
        };
        // Only `^` negates a class; `!` is a member.
        assert_eq!(check("[!a]x", "!x"), Ok(true));
        assert_eq!(check("[!a]x", "bx"), Ok(false));
        assert_eq!(check("[^a]x", "bx"), Ok(true));
        // `[*]` becomes `[[^/]*]`: a class of `[`, `^`, `/` repeated, then `]`.
        assert_eq!(check("[*]", "*"), Ok(false));
        assert_eq!(check("[*]", "]"), Ok(true));
        assert_eq!(check("[*]", "^[]"), Ok(true));
        // `**foo` is a suffix test, `**/foo` matches `foo` itself.
        assert_eq!(check("**foo", "barfoo"), Ok(true));
        assert_eq!(check("**/foo", "foo"), Ok(true));
        assert_eq!(check("**/foo", "xfoo"), Ok(false));
        // `ab**` is a string prefix test.
        assert_eq!(check("ab**", "abc/d"), Ok(true));
        // Go regexp escapes and classes.
        assert_eq!(check("a\\d*", "a1"), Ok(true));
        assert_eq!(check("a\\d*", "ad"), Ok(false));
        assert_eq!(check("[[:digit:]]x", "7x"), Ok(true));
        assert_eq!(check("\\x41*", "AB"), Ok(true));
        assert_eq!(check("a\\q", "aq"), Err(()));
        assert_eq!(check("[z-a]", "q"), Err(()));
        // `^` outside a class is a start-of-text anchor in the regexp.
        assert_eq!(check("^a*", "ab"), Ok(true));
        assert_eq!(check("a^*", "a^"), Ok(false));
        // A literal `^` without wildcards is an exact string.
        assert_eq!(check("^a", "^a"), Ok(true));
        // `.` and friends are literal.
        assert_eq!(check("*.go", "xgo"), Ok(false));
        assert_eq!(check("a+b?", "a+bc"), Ok(true));
        // ... but `|`, `{` and `}` are not escaped: an alternation with an empty-ish branch
        // matches everything, and `{n}` repeats.
        assert_eq!(check("*.log|tmp", "src/x.tmp"), Ok(true), "`tmp$` branch");
        assert_eq!(check("*.log|tmp", "src/x.rs"), Ok(false));
        assert_eq!(
            check("x*|", "src/main.rs"),
            Ok(true),
            "`$` branch matches all"
        );
        assert_eq!(check("a|b", "src"), Ok(false), "exact match, no regexp");
        assert_eq!(check("a{2}*", "aa.txt"), Ok(true));
        assert_eq!(check("a{2}*", "a{2}x"), Ok(false));
        assert_eq!(check("a*{2}", "a"), Err(()), "nested repetition");
    }

    #[test]
    fn errors_only_when_reached() {
        // The invalid second pattern is never consulted once the first one matched.
        let pm = PatternMatcher::new(&["a", "[z-a]"]).unwrap();
        assert_eq!(pm.matches_or_parent_matches("a"), Ok(true));
        assert!(pm.matches_or_parent_matches("b").is_err());
        let err = pm.matches_or_parent_matches("b").unwrap_err();
        assert!(err.to_string().contains("`[z-a]`"), "{err}");
    }

    #[test]
    fn incremental_matching_and_explain() {
        let pm = PatternMatcher::new(&["docs", "!docs/keep/**", "*.tmp"]).unwrap();
        let (m1, i1) = pm
            .matches_using_parent_results("docs", &MatchInfo::default())
            .unwrap();
        assert!(m1);
        let (m2, i2) = pm.matches_using_parent_results("docs/keep", &i1).unwrap();
        assert!(m2, "docs/keep itself is not matched by docs/keep/**");
        let (m3, _) = pm.matches_using_parent_results("docs/keep/a", &i2).unwrap();
        assert!(!m3);
        assert_eq!(pm.last_match("docs/keep/a"), Some(1));
        assert_eq!(pm.last_match("docs/x"), Some(0));
        assert_eq!(pm.last_match("x.tmp"), Some(2));
        assert_eq!(pm.last_match("src/x"), None);
        let other = PatternMatcher::new(&["a"]).unwrap();
        let (_, info) = other
            .matches_using_parent_results("a", &MatchInfo::default())
            .unwrap();
        assert!(matches!(
            pm.matches_using_parent_results("a/b", &info),
            Err(PatternError::MatchInfoLength {
                expected: 3,
                got: 1
            })
        ));
    }
}
