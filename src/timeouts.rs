//! How long cbuild waits for a builder or a Docker engine to answer before
//! it gives up and says so. Below both `buildkit` and `engine`.
//!
//! The deadline covers reaching the peer (connect, TLS, the HTTP upgrade)
//! and its first answer, never a running build: BuildKit may take hours to
//! answer a Solve, and that is not a fault.

use std::time::Duration;

/// Overrides [`DEFAULT`] (seconds, fractions allowed), for slow links and
/// for tests that want a hanging peer to fail fast.
pub const ENV: &str = "CBUILD_CONNECT_TIMEOUT";

/// Long enough for a loaded engine or a remote builder over a slow link;
/// short enough that a peer which accepted and froze is reported while the
/// user still waits.
pub const DEFAULT: Duration = Duration::from_secs(30);

/// The deadline for reaching a peer and for its first answer: [`ENV`] when
/// it holds a positive number of seconds, else [`DEFAULT`].
pub fn answer_deadline() -> Duration {
    std::env::var(ENV)
        .ok()
        .and_then(|v| parse(&v))
        .unwrap_or(DEFAULT)
}

fn parse(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// `2s`, `1.5s`: how a deadline is worded in messages.
pub fn words(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positive_seconds_only() {
        assert_eq!(parse("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse("0"), None);
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("inf"), None);
        assert_eq!(words(Duration::from_millis(1500)), "1.5s");
    }
}
