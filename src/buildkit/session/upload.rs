//! The Upload service: the daemon fetches `http://buildkit-session/<id>`
//! URLs through the session (moby/buildkit `session/upload`), which is how
//! a build context can travel as one tar stream instead of FileSync.
//!
//! Each upload is produced on demand by a closure writing into the stream,
//! on a blocking thread, and can be pulled once (as upstream's uploads).

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::TransferStats;
use crate::buildkit::proto::moby::upload::v1::{upload_server, BytesMessage};

/// Writes an upload's bytes.
pub type UploadFn = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// One single-use upload.
#[derive(Clone)]
pub struct Upload(Arc<Mutex<Option<UploadFn>>>);

impl Upload {
    /// An upload whose bytes `f` writes when the daemon pulls it.
    pub fn new(f: impl FnOnce(&mut dyn Write) -> io::Result<()> + Send + 'static) -> Self {
        Upload(Arc::new(Mutex::new(Some(Box::new(f)))))
    }

    fn take(&self) -> Option<UploadFn> {
        self.0.lock().ok()?.take()
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upload")
    }
}

/// The URL under which the daemon fetches upload `id`.
pub fn url(id: &str) -> String {
    format!("http://buildkit-session/{id}")
}

/// Serves the session's uploads.
pub struct UploadService {
    uploads: HashMap<String, Upload>,
    stats: Arc<TransferStats>,
}

impl UploadService {
    /// A service for these uploads (by id), counting bytes into `stats`.
    pub fn new(uploads: HashMap<String, Upload>, stats: Arc<TransferStats>) -> Self {
        Self { uploads, stats }
    }
}

/// Largest message sent (upstream uses 3 MiB).
const CHUNK: usize = 1 << 20;

struct ChannelWriter {
    tx: mpsc::Sender<Result<BytesMessage, Status>>,
    buf: Vec<u8>,
    stats: Arc<TransferStats>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let n = data.len() as u64;
        self.tx
            .blocking_send(Ok(BytesMessage { data }))
            .map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the builder stopped reading")
            })?;
        self.stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
        self.stats
            .context_bytes_sent
            .fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[tonic::async_trait]
impl upload_server::Upload for UploadService {
    type PullStream = ReceiverStream<Result<BytesMessage, Status>>;

    async fn pull(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let path = request
            .metadata()
            .get("urlpath")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let id = path.rsplit('/').next().unwrap_or_default().to_string();
        let f = self
            .uploads
            .get(&id)
            .and_then(Upload::take)
            .ok_or_else(|| Status::not_found(format!("no http response from session for {id}")))?;
        let (tx, rx) = mpsc::channel(4);
        let stats = self.stats.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
                stats,
            };
            let result = f(&mut w).and_then(|()| w.flush());
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(Status::internal(format!(
                    "cannot send the build context: {e}"
                ))));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
