//! Carrying a session's HTTP/2 connection to the daemon.
//!
//! - Docker engine: `POST /session` upgraded to h2c on the engine socket; the
//!   raw socket then carries HTTP/2 with the engine as client.
//! - buildkitd (or any Control API): the `Control.Session` bidirectional
//!   stream, whose `BytesMessage`s carry the raw bytes of that same HTTP/2
//!   connection in both directions (moby/buildkit `session/grpchijack`).
//!
//! Either way cbuild serves the session's routes with hyper's HTTP/2 server
//! on the resulting byte stream.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::Channel;
use tower::ServiceExt;

use super::{headers, routes, SessionSpec, TransferStats};
use crate::buildkit::error::BuildkitError;
use crate::buildkit::proto::moby::buildkit::v1::{control_client::ControlClient, BytesMessage};
use crate::buildkit::transport::{Address, Io};

/// A running session: its id (for `SolveRequest.session`) and the task
/// serving it. Dropping it ends the session.
pub struct RunningSession {
    /// The session id.
    pub id: String,
    /// What the daemon pulled so far.
    pub stats: Arc<TransferStats>,
    task: JoinHandle<Result<(), BuildkitError>>,
}

impl RunningSession {
    /// Resolves when the session ends on its own (the daemon closed it or the
    /// connection broke). While a build runs that is an error.
    pub async fn closed(&mut self) -> BuildkitError {
        match (&mut self.task).await {
            Ok(Ok(())) => BuildkitError::Session("the connection was closed".into()),
            Ok(Err(e)) => e,
            Err(e) => BuildkitError::Session(e.to_string()),
        }
    }
}

impl Drop for RunningSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a session for `spec` on the daemon at `address` (through `control`
/// when the daemon is not a Docker engine).
pub async fn start(
    address: &Address,
    control: &ControlClient<Channel>,
    spec: &SessionSpec,
) -> Result<RunningSession, BuildkitError> {
    let id = super::new_id();
    let stats = Arc::new(TransferStats::default());
    let routes = routes(spec, stats.clone());
    let hdrs = headers(&id, spec);
    let task = if address.is_docker() && !spec.over_control {
        let io = address.upgrade("/session", &hdrs).await?;
        tokio::spawn(serve(io, routes))
    } else {
        let (io, refused) = over_control_session(control.clone(), &hdrs)?;
        let address = address.clone();
        tokio::spawn(async move {
            let served = serve(io, routes).await;
            // Why the call failed says more than the connection that
            // closed because of it: the daemon's reason, or the transport's.
            match refused.lock().ok().and_then(|mut r| r.take()) {
                Some(status) => Err(crate::buildkit::connection_lost(&status, &address)
                    .unwrap_or_else(|| {
                        BuildkitError::Session(format!(
                            "the builder refused the session: {}",
                            crate::buildkit::error::status_text(&status)
                        ))
                    })),
                None => served,
            }
        })
    };
    Ok(RunningSession { id, stats, task })
}

/// Serves the session routes as an HTTP/2 server on `io` until the
/// connection ends.
pub(crate) async fn serve<I: Io>(io: I, routes: Routes) -> Result<(), BuildkitError> {
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let routes = routes.clone();
        async move {
            routes
                .oneshot(req.map(tonic::body::boxed))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_frame_size(1 << 20)
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .serve_connection(TokioIo::new(io), svc)
        .await
        .map_err(|e| BuildkitError::Session(e.to_string()))
}

/// How a `Control.Session` call failed, once it has.
type Refusal = Arc<std::sync::Mutex<Option<tonic::Status>>>;

/// Bridges `Control.Session` to a byte stream: bytes written to the returned
/// end go out as `BytesMessage`s, messages from the daemon come back as bytes.
/// The second value is filled in (before the stream ends) if the daemon
/// refuses the call.
fn over_control_session(
    mut control: ControlClient<Channel>,
    hdrs: &[(String, String)],
) -> Result<(tokio::io::DuplexStream, Refusal), BuildkitError> {
    let refusal: Refusal = Arc::default();
    let refused = refusal.clone();
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (out_tx, out_rx) = mpsc::channel::<BytesMessage>(32);
    let mut request = tonic::Request::new(ReceiverStream::new(out_rx));
    for (k, v) in hdrs {
        let key = tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|e| BuildkitError::Session(e.to_string()))?;
        let val = tonic::metadata::MetadataValue::try_from(v.as_str())
            .map_err(|e| BuildkitError::Session(e.to_string()))?;
        request.metadata_mut().append(key, val);
    }
    let (rd, mut wr) = tokio::io::split(theirs);
    // Outgoing: whatever the HTTP/2 server writes becomes a message.
    tokio::spawn(super::pump_chunks(rd, out_tx, |data| BytesMessage { data }));
    // Incoming: the daemon's messages are fed to the HTTP/2 server.
    tokio::spawn(async move {
        let response = match control.session(request).await {
            Ok(r) => r,
            Err(status) => {
                tracing::debug!(%status, "Control.Session failed");
                if let Ok(mut r) = refused.lock() {
                    *r = Some(status);
                }
                // End the stream the HTTP/2 server reads, so the session
                // ends now (with this reason) instead of waiting for a
                // client that will never speak.
                let _ = wr.shutdown().await;
                return;
            }
        };
        let mut stream = response.into_inner();
        while let Ok(Some(msg)) = stream.message().await {
            if wr.write_all(&msg.data).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    Ok((ours, refusal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildkit::proto::moby::buildkit::v1::control_server::{Control, ControlServer};
    use crate::buildkit::proto::moby::buildkit::v1::{
        InfoRequest, InfoResponse, ListWorkersRequest, ListWorkersResponse, SolveRequest,
        SolveResponse, StatusRequest, StatusResponse,
    };
    use tonic::{Request, Response, Status, Streaming};

    /// A Control API that refuses sessions (and implements nothing else).
    struct RefusesSessions;

    #[tonic::async_trait]
    impl Control for RefusesSessions {
        async fn solve(&self, _: Request<SolveRequest>) -> Result<Response<SolveResponse>, Status> {
            Err(Status::unimplemented("solve"))
        }
        type StatusStream = ReceiverStream<Result<StatusResponse, Status>>;
        async fn status(
            &self,
            _: Request<StatusRequest>,
        ) -> Result<Response<Self::StatusStream>, Status> {
            Err(Status::unimplemented("status"))
        }
        type SessionStream = ReceiverStream<Result<BytesMessage, Status>>;
        async fn session(
            &self,
            _: Request<Streaming<BytesMessage>>,
        ) -> Result<Response<Self::SessionStream>, Status> {
            Err(Status::permission_denied("sessions are not allowed here"))
        }
        async fn list_workers(
            &self,
            _: Request<ListWorkersRequest>,
        ) -> Result<Response<ListWorkersResponse>, Status> {
            Err(Status::unimplemented("list_workers"))
        }
        async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
            Err(Status::unimplemented("info"))
        }
    }

    /// The daemon's reason for refusing `Control.Session` ends the session
    /// at once, and is what the build reports.
    #[tokio::test]
    async fn a_refused_session_ends_with_the_daemons_reason() {
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ControlServer::new(RefusesSessions))
                .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(server_io))),
        );
        let control = ControlClient::new(super::super::test_channel(client_io).await);
        let address = Address::BuildkitUnix("/nonexistent/buildkitd.sock".into());
        let mut session = start(&address, &control, &SessionSpec::default())
            .await
            .unwrap();
        let err = tokio::time::timeout(std::time::Duration::from_secs(10), session.closed())
            .await
            .expect("the session ends once the daemon refuses it");
        assert!(
            err.to_string().contains("sessions are not allowed here"),
            "{err}"
        );
    }
}
