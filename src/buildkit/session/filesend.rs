//! The FileSend service: where an exporter that writes a file (`docker`,
//! `oci`, `tar`) sends its bytes when the build names no destination on the
//! daemon's side (moby/buildkit `session/filesync`: the daemon checks the
//! session advertises `FileSend/DiffCopy`, streams `BytesMessage`s, closes
//! its side and waits for the client to end the call).
//!
//! cbuild hands the bytes on as they arrive, through a channel, to whoever
//! consumes them (the image load into a Docker engine): nothing is buffered
//! whole, so an image of any size streams through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::buildkit::proto::moby::filesync::v1::{file_send_server, BytesMessage};

/// What the consumer of an export receives.
#[derive(Debug)]
pub enum Chunk {
    /// The next bytes.
    Data(Bytes),
    /// The daemon sent everything: the bytes so far are the whole file.
    End,
}

/// The one place an export's bytes go; taken by the first FileSend call
/// (a solve with one file exporter makes exactly one).
#[derive(Clone)]
pub struct FileSendTarget {
    tx: Arc<Mutex<Option<mpsc::Sender<Chunk>>>>,
    complete: Arc<AtomicBool>,
}

impl std::fmt::Debug for FileSendTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileSendTarget")
    }
}

impl FileSendTarget {
    /// A target and the receiving end of its bytes. The receiver sees
    /// [`Chunk::End`] only after the daemon ended its stream cleanly; a
    /// channel that closes without it carries a cut-off file.
    pub fn channel() -> (Self, mpsc::Receiver<Chunk>) {
        // A few chunks in flight: the daemon waits while the consumer is
        // slow, rather than cbuild holding the image in memory.
        let (tx, rx) = mpsc::channel(8);
        (
            Self {
                tx: Arc::new(Mutex::new(Some(tx))),
                complete: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    /// Whether the daemon sent a whole file.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    fn take(&self) -> Option<mpsc::Sender<Chunk>> {
        self.tx.lock().ok()?.take()
    }
}

/// Serves FileSend for one session.
pub struct FileSendService {
    target: Option<FileSendTarget>,
}

impl FileSendService {
    /// A service sending into `target` (`None`: the session takes no file,
    /// and a daemon that asks is told so).
    pub fn new(target: Option<FileSendTarget>) -> Self {
        Self { target }
    }
}

type Empty = tokio_stream::Empty<Result<BytesMessage, Status>>;

#[tonic::async_trait]
impl file_send_server::FileSend for FileSendService {
    type DiffCopyStream = Empty;

    async fn diff_copy(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let Some(target) = &self.target else {
            return Err(Status::unimplemented(
                "this build takes no exported file through the session",
            ));
        };
        let Some(tx) = target.take() else {
            return Err(Status::failed_precondition(
                "the session takes one exported file per build",
            ));
        };
        let mut incoming = request.into_inner();
        loop {
            match incoming.message().await {
                Ok(Some(m)) if m.data.is_empty() => {}
                Ok(Some(m)) => {
                    if tx.send(Chunk::Data(Bytes::from(m.data))).await.is_err() {
                        return Err(Status::aborted("cbuild stopped taking the exported image"));
                    }
                }
                Ok(None) => break,
                // The sender is dropped without `End`: the consumer learns
                // the file is cut off.
                Err(status) => return Err(status),
            }
        }
        if tx.send(Chunk::End).await.is_err() {
            return Err(Status::aborted("cbuild stopped taking the exported image"));
        }
        target.complete.store(true, Ordering::Release);
        // Ending the call tells the daemon its file is taken.
        Ok(Response::new(tokio_stream::empty()))
    }
}

/// The FileSend exchange over an in-memory HTTP/2 connection, with a test
/// client playing the daemon's part.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildkit::proto::moby::filesync::v1::file_send_client::FileSendClient;
    use crate::buildkit::session::{routes, SessionSpec, TransferStats};
    use tokio_stream::wrappers::ReceiverStream;

    async fn client(spec: SessionSpec) -> FileSendClient<tonic::transport::Channel> {
        let routes = routes(&spec, Arc::new(TransferStats::default()));
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(crate::buildkit::session::tunnel::serve(server_io, routes));
        FileSendClient::new(crate::buildkit::session::test_channel(client_io).await)
    }

    #[tokio::test]
    async fn bytes_arrive_in_order_then_end() {
        let (target, mut rx) = FileSendTarget::channel();
        let mut c = client(SessionSpec {
            file_send: Some(target.clone()),
            ..Default::default()
        })
        .await;
        let (tx, mrx) = mpsc::channel(4);
        let call = tokio::spawn(async move { c.diff_copy(ReceiverStream::new(mrx)).await });
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut ended = false;
            while let Some(c) = rx.recv().await {
                match c {
                    Chunk::Data(b) => got.extend_from_slice(&b),
                    Chunk::End => ended = true,
                }
            }
            (got, ended)
        });
        for part in [&b"abc"[..], b"", b"defg"] {
            tx.send(BytesMessage {
                data: part.to_vec(),
            })
            .await
            .unwrap();
        }
        drop(tx);
        let mut answer = call.await.unwrap().unwrap().into_inner();
        assert!(answer.message().await.unwrap().is_none());
        assert!(target.is_complete());
        drop(target);
        let (got, ended) = consumer.await.unwrap();
        assert_eq!(got, b"abcdefg");
        assert!(ended);
    }

    #[tokio::test]
    async fn a_session_without_target_refuses() {
        let mut c = client(SessionSpec::default()).await;
        let (_tx, mrx) = mpsc::channel::<BytesMessage>(1);
        let err = c.diff_copy(ReceiverStream::new(mrx)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
    }
}
