//! Errors in Compose input. Each names the file, and the key path or line,
//! so the user can go straight to what needs fixing.

use std::path::PathBuf;

/// Something is wrong with the Compose input.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// No Compose file was found where one was looked for.
    #[error("no Compose file found in `{dir}` (looked for compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml)")]
    NotFound {
        /// Where cbuild looked.
        dir: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not parse.
    #[error("`{path}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when known.
        line: Option<usize>,
        /// What the parser said.
        message: String,
    },
    /// A key holds a value of the wrong kind, or an unknown key.
    #[error("`{}{}`: `{key}`: {message}", path.display(), at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key path, e.g. `services.web.build.args`.
        key: String,
        /// What is wrong.
        message: String,
        /// The 1-based line and column of the value, when the file has it.
        at: Option<(usize, usize)>,
    },
    /// Variable interpolation failed.
    #[error("`{}{}`: {message}", path.display(), at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Interpolate {
        /// The file.
        path: PathBuf,
        /// What failed, with the key path.
        message: String,
        /// The 1-based line and column of the value, when known.
        at: Option<(usize, usize)>,
    },
    /// An env file could not be parsed.
    #[error(transparent)]
    Dotenv(#[from] super::dotenv::DotenvError),
    /// A service named on the command line does not exist.
    #[error("no such service: `{0}`")]
    NoSuchService(String),
}
