//! A `command:` / `entrypoint:` string split into words exactly as compose
//! 2.40 splits it: compose-go's `ShellCommand` hands the string to
//! mattn/go-shellwords v1.0.12 `Parse` (no environment, no backticks run).
//!
//! Our own code rather than a shell-words crate because that parser is not a
//! POSIX shell and the model must equal compose's: it stops at the first
//! unquoted `;`, `&`, `|`, `<` or `>` (`env | grep X` is `["env"]`; a
//! `2>` drops the `2` too), keeps backticks and `$( … )` as text, and
//! refuses a `(` that does not follow `$`, an unclosed quote or a trailing
//! backslash.

/// The words of `line`, or `None` where compose fails with "invalid command
/// line string".
pub fn split(line: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut buf = String::new();
    // Whether a word is under way (an empty `""` counts as one).
    let mut got = false;
    let (mut escaped, mut double, mut single, mut back, mut dollar) =
        (false, false, false, false, false);
    for c in line.chars() {
        if escaped {
            buf.push(c);
            escaped = false;
            got = true;
            continue;
        }
        if c == '\\' {
            if single {
                buf.push(c);
            } else {
                escaped = true;
            }
            continue;
        }
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            if single || double || back || dollar {
                buf.push(c);
            } else if got {
                args.push(std::mem::take(&mut buf));
                got = false;
            }
            continue;
        }
        match c {
            '`' if !single && !double && !dollar => back = !back,
            ')' if !single && !double && !back => dollar = !dollar,
            '(' if !single && !double && !back => {
                if !dollar && buf.ends_with('$') {
                    dollar = true;
                    buf.push(c);
                    continue;
                }
                return None;
            }
            '"' if !single && !dollar => {
                if double {
                    got = true;
                }
                double = !double;
                continue;
            }
            '\'' if !double && !dollar => {
                if single {
                    got = true;
                }
                single = !single;
                continue;
            }
            ';' | '&' | '|' | '<' | '>' if !(single || double || back || dollar) => {
                // `2>file`: the descriptor number is part of the redirection.
                if c == '>' && buf.starts_with(|d: char| d.is_ascii_digit()) {
                    got = false;
                }
                break;
            }
            _ => {}
        }
        got = true;
        buf.push(c);
    }
    if got {
        args.push(buf);
    }
    if escaped || single || double || back || dollar {
        return None;
    }
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::split;

    fn words(s: &str) -> Option<Vec<String>> {
        split(s)
    }

    fn v(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_as_compose_240_does() {
        // Each expectation was printed by compose 2.40.3 (`config --format json`).
        assert_eq!(words("env | grep MYVAR"), Some(v(&["env"])));
        assert_eq!(words("echo 2>&1 x"), Some(v(&["echo"])));
        assert_eq!(words("a;b"), Some(v(&["a"])));
        assert_eq!(
            words("a`b c` d $(x y) e"),
            Some(v(&["a`b c`", "d", "$(x y)", "e"]))
        );
        assert_eq!(words("a '' b \"\" c"), Some(v(&["a", "", "b", "", "c"])));
        assert_eq!(words(r"x\\ty"), Some(v(&[r"x\ty"])));
        assert_eq!(
            words(r#"sh -c "echo 'hi there' | cat""#),
            Some(v(&["sh", "-c", "echo 'hi there' | cat"]))
        );
        assert_eq!(words("  "), Some(v(&[])));
        for bad in ["echo (x", "echo \"a", "x\\", "echo $(a (b))", "'open"] {
            assert_eq!(words(bad), None, "{bad}");
        }
    }
}
