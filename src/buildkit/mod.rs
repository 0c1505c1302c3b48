//! A BuildKit client: connection, daemon information, and solves with a
//! session serving the build's files. Knows nothing about Compose.

pub mod error;
pub mod proto;
pub mod session;
pub mod solve;
pub mod status;
pub mod tls;
pub mod transport;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::transport::Channel;

pub use error::BuildkitError;
pub use session::{LocalDir, SessionSpec, TransferSnapshot, VirtualFile};
pub use solve::{ExporterSpec, SolveOptions, SolveOutcome, DOCKERFILE_FRONTEND};
pub use status::StatusUpdate;
pub use transport::{Address, TlsChoice};

use proto::moby::buildkit::v1 as pb;
use proto::moby::buildkit::v1::control_client::ControlClient;

/// Largest message cbuild accepts from the Control API (status logs can be
/// large; tonic's default is 4 MiB, the daemon's own limit 16 MiB).
const MAX_MESSAGE: usize = 64 << 20;

/// How long a build whose session ended waits for the Solve call's own
/// answer before reporting the session's end instead.
const SESSION_GRACE: Duration = Duration::from_secs(3);
/// How long the last progress updates may take to arrive after the solve.
const STATUS_GRACE: Duration = Duration::from_secs(5);
/// The same when the daemon sent no progress at all before failing.
const STATUS_GRACE_NO_JOB: Duration = Duration::from_millis(300);

/// A connection to one BuildKit daemon.
#[derive(Clone)]
pub struct Client {
    address: Address,
    control: ControlClient<Channel>,
    /// The workers the daemon listed when cbuild connected.
    workers: Vec<WorkerInfo>,
}

/// What a daemon says about itself.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DaemonInfo {
    /// BuildKit's version, when the daemon tells (v0.11+ through `Info`,
    /// else from the worker record where present).
    pub buildkit_version: Option<String>,
    /// The daemon's workers.
    pub workers: Vec<WorkerInfo>,
}

/// One worker of a daemon.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WorkerInfo {
    /// Worker id.
    pub id: String,
    /// Platforms it builds for, as `os/arch[/variant]`.
    pub platforms: Vec<String>,
    /// Its labels (executor, snapshotter, hostname…).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The result of a build: the exporter's answer and what was transferred.
#[derive(Clone, Debug, Default)]
pub struct BuildResult {
    /// What the solve returned.
    pub outcome: SolveOutcome,
    /// What the daemon pulled through the session.
    pub transfer: TransferSnapshot,
}

impl Client {
    /// Connects to the daemon at `address` and waits for its first answer.
    ///
    /// HTTP/2 lets a client send before the server has said anything, so a
    /// peer that accepts and then stays silent would only show up as a call
    /// that never returns (a Solve may rightly run for hours). One cheap
    /// call under the connect deadline tells a silent peer from a builder.
    pub async fn connect(address: Address) -> Result<Self, BuildkitError> {
        let channel = address.connect().await?;
        let control = ControlClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let after = crate::timeouts::answer_deadline();
        let mut probe = control.clone();
        let answered =
            tokio::time::timeout(after, probe.list_workers(pb::ListWorkersRequest::default()))
                .await;
        match answered {
            Err(_) => Err(BuildkitError::Timeout {
                address: address.to_string(),
                waiting_for: "its first gRPC call (ListWorkers)".into(),
                after,
            }),
            Ok(Err(status)) => Err(connection_lost(&status, &address).unwrap_or(
                BuildkitError::Rpc {
                    call: "ListWorkers",
                    status: Box::new(status),
                },
            )),
            Ok(Ok(list)) => Ok(Self {
                address,
                control,
                workers: list
                    .into_inner()
                    .record
                    .into_iter()
                    .map(worker_info)
                    .collect(),
            }),
        }
    }

    /// The daemon's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The workers the daemon listed when cbuild connected (their labels
    /// say which executor and snapshotter build).
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.workers.clone()
    }

    /// Asks the daemon for its version and workers.
    pub async fn info(&self) -> Result<DaemonInfo, BuildkitError> {
        let mut control = self.control.clone();
        let version = match control.info(pb::InfoRequest {}).await {
            Ok(r) => r
                .into_inner()
                .buildkit_version
                .map(|v| v.version)
                .filter(|v| !v.is_empty()),
            // BuildKit < v0.11 (Docker <= 23) has no Info.
            Err(s) if s.code() == tonic::Code::Unimplemented => None,
            Err(status) => {
                return Err(BuildkitError::Rpc {
                    call: "Info",
                    status: Box::new(status),
                })
            }
        };
        let workers = control
            .list_workers(pb::ListWorkersRequest::default())
            .await
            .map_err(|status| BuildkitError::Rpc {
                call: "ListWorkers",
                status: Box::new(status),
            })?
            .into_inner()
            .record;
        let worker_version = workers
            .iter()
            .filter_map(|w| w.buildkit_version.as_ref())
            .map(|v| v.version.clone())
            .find(|v| !v.is_empty());
        Ok(DaemonInfo {
            buildkit_version: version.or(worker_version),
            workers: workers.into_iter().map(worker_info).collect(),
        })
    }

    /// Runs one build: opens a session serving `spec`, solves `opts`, and
    /// forwards the daemon's progress to `progress` until the build ends.
    ///
    /// Dropping the returned future cancels the build: the Solve call is
    /// cancelled, which makes the daemon stop it, and the session closes.
    pub async fn build(
        &self,
        opts: &SolveOptions,
        spec: &SessionSpec,
        progress: mpsc::UnboundedSender<StatusUpdate>,
    ) -> Result<BuildResult, BuildkitError> {
        let mut session = session::tunnel::start(&self.address, &self.control, spec).await?;
        let reference = session::new_id();
        let request = opts.to_request(&reference, &session.id);

        let mut status_client = self.control.clone();
        let status_ref = reference.clone();
        let heard = Arc::new(AtomicBool::new(false));
        let heard_in_task = heard.clone();
        let mut status_task = AbortOnDrop(tokio::spawn(async move {
            let stream = status_client
                .status(pb::StatusRequest { r#ref: status_ref })
                .await;
            let Ok(stream) = stream else { return };
            let mut stream = stream.into_inner();
            while let Ok(Some(msg)) = stream.message().await {
                heard_in_task.store(true, Ordering::Relaxed);
                if progress.send(StatusUpdate::from(msg)).is_err() {
                    return;
                }
            }
        }));

        let mut control = self.control.clone();
        let solve = control.solve(request);
        tokio::pin!(solve);
        let solved = tokio::select! {
            r = &mut solve => r,
            e = session.closed() => {
                // A session rarely ends alone: when the builder dies or the
                // connection breaks, the Solve call fails a moment later
                // and says more. Either way, name the builder.
                match tokio::time::timeout(SESSION_GRACE, &mut solve).await {
                    Ok(r) => r,
                    Err(_) => return Err(e.at(&self.address)),
                }
            }
        };
        // The status stream ends with the job; give it a moment to deliver
        // the last updates (the failing step's logs come last). A solve the
        // daemon refused before it made a job has no stream that will end:
        // waiting the whole grace period then only delays the error.
        let grace = if solved.is_err() && !heard.load(Ordering::Relaxed) {
            STATUS_GRACE_NO_JOB
        } else {
            STATUS_GRACE
        };
        let _ = tokio::time::timeout(grace, &mut status_task.0).await;
        let transfer = session.stats.snapshot();
        drop(session);
        match solved {
            Ok(resp) => Ok(BuildResult {
                outcome: SolveOutcome {
                    exporter_response: resp.into_inner().exporter_response,
                    loaded_id: None,
                },
                transfer,
            }),
            Err(status) => Err(solve_error(status, &self.address)),
        }
    }
}

fn worker_info(w: proto::moby::buildkit::v1::types::WorkerRecord) -> WorkerInfo {
    WorkerInfo {
        id: w.id,
        platforms: w
            .platforms
            .iter()
            .map(|p| {
                let mut s = format!("{}/{}", p.os, p.architecture);
                if !p.variant.is_empty() {
                    s.push('/');
                    s.push_str(&p.variant);
                }
                s
            })
            .collect(),
        labels: w.labels.into_iter().collect(),
    }
}

/// Aborts a task when dropped (a cancelled build stops following its
/// status stream).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A status with a source was made on this side: the connection failed (a
/// TLS alert, a reset), not the call. Says where, and why; `None` for a
/// status the daemon sent.
pub(crate) fn connection_lost(status: &tonic::Status, address: &Address) -> Option<BuildkitError> {
    let cause = std::error::Error::source(status)?;
    let mut why = error::status_text(status);
    let mut cur = Some(cause);
    while let Some(c) = cur {
        let text = c.to_string();
        if !why.contains(&text) {
            why.push_str(": ");
            why.push_str(&text);
        }
        cur = c.source();
    }
    if address.tls_without_client_cert() {
        why.push_str(
            " (if the builder requires a client certificate, give `--tlscert` and `--tlskey`)",
        );
    }
    Some(BuildkitError::Solve {
        message: format!("lost the connection to the builder at `{address}`: {why}"),
    })
}

/// Turns a failed Solve into an error a person can read.
fn solve_error(status: tonic::Status, address: &Address) -> BuildkitError {
    if let Some(lost) = connection_lost(&status, address) {
        return lost;
    }
    match status.code() {
        tonic::Code::Unavailable => BuildkitError::Rpc {
            call: "the build",
            status: Box::new(status),
        },
        tonic::Code::Cancelled => BuildkitError::Cancelled,
        _ => BuildkitError::Solve {
            message: error::status_text(&status),
        },
    }
}
