//! The SSH service: forwards `RUN --mount=type=ssh` to the user's SSH
//! agents (moby/buildkit `session/sshforward`). Each id (`default`, or the
//! one in `--ssh id=…`) maps to an agent socket; the daemon checks an id
//! with `CheckAgent`, then opens one `ForwardAgent` stream per connection
//! inside the build, which cbuild joins to a new connection to the agent.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::buildkit::proto::moby::sshforward::v1::{
    ssh_server::Ssh, BytesMessage, CheckAgentRequest, CheckAgentResponse,
};

/// Serves the session's SSH agents.
#[derive(Debug, Default)]
pub struct SshService {
    agents: HashMap<String, PathBuf>,
}

impl SshService {
    /// A service forwarding these agent sockets, by id.
    pub fn new(agents: HashMap<String, PathBuf>) -> Self {
        Self { agents }
    }

    // tonic's Status is the error type of every service method here.
    #[allow(clippy::result_large_err)]
    fn agent(&self, id: &str) -> Result<&PathBuf, Status> {
        let id = if id.is_empty() { "default" } else { id };
        self.agents.get(id).ok_or_else(|| {
            Status::not_found(format!(
                "no SSH agent forwarded as `{id}`; pass `--ssh {id}` or add it to `build.ssh`"
            ))
        })
    }
}

#[tonic::async_trait]
impl Ssh for SshService {
    async fn check_agent(
        &self,
        request: Request<CheckAgentRequest>,
    ) -> Result<Response<CheckAgentResponse>, Status> {
        let path = self.agent(&request.into_inner().id)?;
        tokio::net::UnixStream::connect(path).await.map_err(|e| {
            Status::unavailable(format!(
                "cannot reach the SSH agent at `{}`: {e}",
                path.display()
            ))
        })?;
        Ok(Response::new(CheckAgentResponse {}))
    }

    type ForwardAgentStream = ReceiverStream<Result<BytesMessage, Status>>;

    async fn forward_agent(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::ForwardAgentStream>, Status> {
        let id = request
            .metadata()
            .get("buildkit.ssh.id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("default")
            .to_string();
        let path = self.agent(&id)?.clone();
        let conn = tokio::net::UnixStream::connect(&path).await.map_err(|e| {
            Status::unavailable(format!(
                "cannot reach the SSH agent at `{}`: {e}",
                path.display()
            ))
        })?;
        let (rd, mut wr) = conn.into_split();
        let mut incoming = request.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = incoming.message().await {
                if wr.write_all(&msg.data).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let (tx, rx) = mpsc::channel(16);
        // The stream's item type is tonic's; its error variant is large.
        #[allow(clippy::result_large_err)]
        let wrap = |data| Ok(BytesMessage { data });
        tokio::spawn(super::pump_chunks(rd, tx, wrap));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
