//! Errors from talking to BuildKit, worded for the person running cbuild.

use std::io;

/// Something went wrong between cbuild and the BuildKit daemon.
#[derive(Debug, thiserror::Error)]
pub enum BuildkitError {
    /// The address could not be understood.
    #[error("invalid builder address `{address}`: {reason}")]
    BadAddress {
        /// What was given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing answered at the address. (The cause is part of the message,
    /// so the user reads one line.)
    #[error("cannot connect to the builder at `{address}`: {cause}")]
    Connect {
        /// Where cbuild tried.
        address: String,
        /// Why it failed.
        cause: io::Error,
    },
    /// The builder accepted the connection (or not even that) but did not
    /// answer in time.
    #[error("the builder at `{address}` did not answer {waiting_for} within {}", crate::timeouts::words(*.after))]
    Timeout {
        /// Where cbuild waited.
        address: String,
        /// What it waited for (`the connection`, `POST /grpc`…).
        waiting_for: String,
        /// The deadline that passed.
        after: std::time::Duration,
    },
    /// The Docker engine refused the HTTP upgrade to its BuildKit endpoints.
    #[error("the Docker engine at `{address}` refused `POST {path}` (upgrade to h2c): {answer}")]
    Upgrade {
        /// The engine address.
        address: String,
        /// `/grpc` or `/session`.
        path: String,
        /// What the engine answered.
        answer: String,
    },
    /// The gRPC connection itself failed.
    #[error("gRPC connection to `{address}` failed")]
    Transport {
        /// The daemon address.
        address: String,
        /// tonic's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A Control API call failed.
    #[error("{call} failed: {}", status_text(.status))]
    Rpc {
        /// Which call.
        call: &'static str,
        /// The daemon's status (boxed: it is large).
        status: Box<tonic::Status>,
    },
    /// The build itself failed (a Dockerfile error, a failing step…).
    #[error("{message}")]
    Solve {
        /// The daemon's message, cleaned of gRPC noise.
        message: String,
    },
    /// The session (file transfer channel) ended before the build did.
    #[error("the builder closed the build session: {0}")]
    Session(String),
    /// The session with a known builder ended before the build did.
    #[error("the builder at `{address}` closed the build session: {cause}")]
    SessionClosed {
        /// The builder's address.
        address: String,
        /// What ended it.
        cause: String,
    },
    /// The build was cancelled (Ctrl-C).
    #[error("build cancelled")]
    Cancelled,
}

impl BuildkitError {
    /// A copy that keeps the message and kind of an I/O cause (used to lift
    /// our connector's error out of tonic's wrapper).
    pub(crate) fn clone_shallow(&self) -> Self {
        match self {
            BuildkitError::BadAddress { address, reason } => BuildkitError::BadAddress {
                address: address.clone(),
                reason: reason.clone(),
            },
            BuildkitError::Connect { address, cause } => BuildkitError::Connect {
                address: address.clone(),
                cause: io::Error::new(cause.kind(), cause.to_string()),
            },
            BuildkitError::Upgrade {
                address,
                path,
                answer,
            } => BuildkitError::Upgrade {
                address: address.clone(),
                path: path.clone(),
                answer: answer.clone(),
            },
            BuildkitError::Timeout {
                address,
                waiting_for,
                after,
            } => BuildkitError::Timeout {
                address: address.clone(),
                waiting_for: waiting_for.clone(),
                after: *after,
            },
            other => BuildkitError::Session(other.to_string()),
        }
    }

    /// A one-line suggestion for the user, where cbuild knows one.
    pub fn hint(&self) -> Option<String> {
        match self {
            BuildkitError::Connect { address, .. } => Some(format!(
                "is the Docker engine (or buildkitd) running? cbuild tried `{address}`; set `DOCKER_HOST`, `BUILDKIT_HOST` or `--builder` to point elsewhere"
            )),
            BuildkitError::Timeout { .. } => Some(format!(
                "something accepts connections there but does not answer like a Docker engine or buildkitd; check the address, or give a slow builder more time with `{}=SECONDS`",
                crate::timeouts::ENV
            )),
            BuildkitError::Upgrade { .. } => Some(
                "cbuild needs a Docker engine with BuildKit (19.03 or newer), or a standalone buildkitd via `--builder`".into(),
            ),
            BuildkitError::Session(_) | BuildkitError::SessionClosed { .. } => Some(
                "the builder may have stopped or restarted in the middle of the build; `cbuild doctor` checks it".into(),
            ),
            BuildkitError::Rpc { status, .. } if status.code() == tonic::Code::Unavailable => {
                Some("the builder went away; check that the Docker engine is still running".into())
            }
            _ => None,
        }
    }

    /// This error, naming the builder at `address` where it does not yet.
    pub(crate) fn at(self, address: &super::Address) -> Self {
        match self {
            BuildkitError::Session(cause) => BuildkitError::SessionClosed {
                address: address.to_string(),
                cause,
            },
            other => other,
        }
    }

    /// Whether this error means the daemon could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            BuildkitError::Connect { .. }
                | BuildkitError::Transport { .. }
                | BuildkitError::Timeout { .. }
        ) || matches!(self, BuildkitError::Rpc { status, .. } if status.code() == tonic::Code::Unavailable)
    }
}

/// The message of a gRPC status without tonic's `status: …, details: …` dump.
pub fn status_text(status: &tonic::Status) -> String {
    let msg = status.message().trim();
    if msg.is_empty() {
        format!("{:?}", status.code())
    } else {
        msg.to_string()
    }
}
