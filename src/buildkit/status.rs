//! Build progress as cbuild sees it, converted from BuildKit's `Status`
//! stream at the edge of this module so no other module sees prost types.
//!
//! The daemon repeats a vertex every time its state changes; consumers keep
//! the latest state per digest (moby/buildkit `client/graph.go`).

use std::time::SystemTime;

use crate::buildkit::proto::moby::buildkit::v1 as pb;

/// One message of the status stream.
#[derive(Clone, Debug, Default)]
pub struct StatusUpdate {
    /// Steps whose state changed.
    pub vertexes: Vec<VertexUpdate>,
    /// Progress of sub-tasks (context transfer, layer export…).
    pub progress: Vec<ProgressUpdate>,
    /// Output of running steps.
    pub logs: Vec<LogLine>,
    /// Warnings (Dockerfile lint and the like).
    pub warnings: Vec<Warning>,
}

/// The state of one build step.
#[derive(Clone, Debug, Default)]
pub struct VertexUpdate {
    /// The step's id.
    pub digest: String,
    /// What it shows, e.g. `[2/4] RUN make`.
    pub name: String,
    /// Taken from the cache.
    pub cached: bool,
    /// When it started, if it has.
    pub started: Option<SystemTime>,
    /// When it ended, if it has.
    pub completed: Option<SystemTime>,
    /// Why it failed (empty when it did not).
    pub error: String,
}

/// Progress of one sub-task of a step.
#[derive(Clone, Debug, Default)]
pub struct ProgressUpdate {
    /// The step it belongs to.
    pub vertex: String,
    /// The sub-task's id.
    pub id: String,
    /// Its display name (e.g. `transferring context:`).
    pub name: String,
    /// Units done (often bytes).
    pub current: i64,
    /// Units in all, 0 when unknown.
    pub total: i64,
    /// Whether it is finished.
    pub completed: bool,
}

/// Output a step wrote.
#[derive(Clone, Debug, Default)]
pub struct LogLine {
    /// The step.
    pub vertex: String,
    /// 1 for stdout, 2 for stderr.
    pub stream: i64,
    /// The raw bytes.
    pub data: Vec<u8>,
}

/// A warning attached to a step.
#[derive(Clone, Debug, Default)]
pub struct Warning {
    /// The step.
    pub vertex: String,
    /// One-line description.
    pub short: String,
    /// More lines.
    pub detail: Vec<String>,
}

fn time(t: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(t).ok())
}

impl From<pb::StatusResponse> for StatusUpdate {
    fn from(r: pb::StatusResponse) -> Self {
        StatusUpdate {
            vertexes: r
                .vertexes
                .into_iter()
                .map(|v| VertexUpdate {
                    digest: v.digest,
                    name: v.name,
                    cached: v.cached,
                    started: time(v.started),
                    completed: time(v.completed),
                    error: v.error,
                })
                .collect(),
            progress: r
                .statuses
                .into_iter()
                .map(|s| ProgressUpdate {
                    vertex: s.vertex,
                    id: s.id,
                    name: s.name,
                    current: s.current,
                    total: s.total,
                    completed: s.completed.is_some(),
                })
                .collect(),
            logs: r
                .logs
                .into_iter()
                .map(|l| LogLine {
                    vertex: l.vertex,
                    stream: l.stream,
                    data: l.msg,
                })
                .collect(),
            warnings: r
                .warnings
                .into_iter()
                .map(|w| Warning {
                    vertex: w.vertex,
                    short: String::from_utf8_lossy(&w.short).into_owned(),
                    detail: w
                        .detail
                        .iter()
                        .map(|d| String::from_utf8_lossy(d).into_owned())
                        .collect(),
                })
                .collect(),
        }
    }
}
