//! The ignore file in effect for a build: the one place that locates and
//! reads it.
//!
//! BuildKit's Dockerfile frontend (`frontend/dockerui/config.go`) first reads
//! `<Dockerfile>.dockerignore` from the Dockerfile's directory and, only if
//! that does not exist, `.dockerignore` at the context root. A candidate
//! that exists but cannot be read (a directory, no permission) is an error,
//! not skipped, as it is for BuildKit.

use std::io;
use std::path::{Path, PathBuf};

use super::dockerignore::{self, IgnoreFileError, IgnoreLine, PatternError, PatternMatcher};

/// The ignore file in effect for a build.
#[derive(Debug, Clone)]
pub struct IgnoreFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its patterns, with line numbers.
    pub lines: Vec<IgnoreLine>,
}

impl IgnoreFile {
    /// The patterns, as BuildKit sends them (`exclude-patterns`).
    pub fn patterns(&self) -> Vec<String> {
        self.lines.iter().map(|l| l.pattern.clone()).collect()
    }
}

/// Why the ignore file cannot be used. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// It exists but cannot be read.
    #[error("cannot read the ignore file `{}`", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line cannot be parsed.
    #[error("invalid ignore file `{}`", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The error, with its line.
        #[source]
        source: IgnoreFileError,
    },
    /// A pattern does not compile.
    #[error("invalid pattern in the ignore file `{}`", path.display())]
    Pattern {
        /// The file.
        path: PathBuf,
        /// The error, with its line.
        #[source]
        source: PatternError,
    },
}

impl IgnoreError {
    /// The ignore file concerned.
    pub fn path(&self) -> &Path {
        match self {
            IgnoreError::Read { path, .. }
            | IgnoreError::Parse { path, .. }
            | IgnoreError::Pattern { path, .. } => path,
        }
    }
}

/// `<Dockerfile>.dockerignore`: the ignore file that belongs to one
/// Dockerfile, beside it.
pub fn beside(dockerfile: &Path) -> PathBuf {
    let mut name = dockerfile.file_name().unwrap_or_default().to_os_string();
    name.push(".dockerignore");
    dockerfile.with_file_name(name)
}

/// Where the ignore file is looked for, first match wins: beside the
/// Dockerfile (when there is a file, not `dockerfile_inline`), then at the
/// context root.
pub fn candidates(context: &Path, dockerfile: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = dockerfile.map(beside).into_iter().collect();
    out.push(context.join(".dockerignore"));
    out
}

/// Reads the ignore file in effect for a build of `context` with
/// `dockerfile`, if there is one. Its patterns are compiled here, so a
/// mistake is reported with its file and line before any build starts
/// (BuildKit would only say "invalid exclude patterns" once the transfer
/// began).
pub fn read(context: &Path, dockerfile: Option<&Path>) -> Result<Option<IgnoreFile>, IgnoreError> {
    for path in candidates(context, dockerfile) {
        // Go reads the file as bytes: invalid UTF-8 is no error for BuildKit
        // (compose builds such a context), so it is none here either. Such
        // a sequence reads as U+FFFD, and the other lines keep their meaning.
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(IgnoreError::Read { path, source }),
        };
        let lines = match dockerignore::parse_ignore_file(&text) {
            Ok(lines) => lines,
            Err(source) => return Err(IgnoreError::Parse { path, source }),
        };
        let checked = PatternMatcher::from_ignore_lines(&lines).and_then(|m| {
            m.patterns()
                .iter()
                .try_for_each(|p| p.matches("x").map(|_| ()))
        });
        if let Err(source) = checked {
            return Err(IgnoreError::Pattern { path, source });
        }
        return Ok(Some(IgnoreFile { path, lines }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfiles_own_ignore_file_wins() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path();
        std::fs::create_dir_all(ctx.join("docker")).unwrap();
        let dockerfile = ctx.join("docker/app.Dockerfile");
        std::fs::write(&dockerfile, "FROM scratch\n").unwrap();
        assert!(read(ctx, Some(&dockerfile)).unwrap().is_none());

        std::fs::write(ctx.join(".dockerignore"), "a\n").unwrap();
        let got = read(ctx, Some(&dockerfile)).unwrap().unwrap();
        assert_eq!(got.path, ctx.join(".dockerignore"));
        assert_eq!(got.patterns(), ["a"]);

        std::fs::write(ctx.join("docker/app.Dockerfile.dockerignore"), "b\n").unwrap();
        let got = read(ctx, Some(&dockerfile)).unwrap().unwrap();
        assert_eq!(got.path, ctx.join("docker/app.Dockerfile.dockerignore"));
        assert_eq!(got.patterns(), ["b"]);
        // An inline Dockerfile has no file of its own.
        assert_eq!(read(ctx, None).unwrap().unwrap().patterns(), ["a"]);
    }

    #[test]
    fn errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(".dockerignore")).unwrap();
        let err = read(d.path(), None).unwrap_err();
        assert!(matches!(err, IgnoreError::Read { .. }), "{err:?}");
        assert_eq!(err.path(), d.path().join(".dockerignore"));

        std::fs::remove_dir(d.path().join(".dockerignore")).unwrap();
        std::fs::write(d.path().join(".dockerignore"), "ok\n[\n").unwrap();
        let err = read(d.path(), None).unwrap_err();
        assert!(matches!(err, IgnoreError::Pattern { .. }), "{err:?}");
        assert!(err.to_string().contains(".dockerignore"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_read_as_buildkit_does() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(".dockerignore"),
            b"node_modules\n\xff\xfe*.log\nlogs\n",
        )
        .unwrap();
        let got = read(d.path(), None).unwrap().unwrap();
        assert_eq!(got.patterns()[0], "node_modules");
        assert_eq!(got.patterns()[2], "logs");
    }
}
