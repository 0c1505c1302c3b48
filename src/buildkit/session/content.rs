//! The Content service: containerd's content store API, which a BuildKit
//! client serves in its session so the daemon can export a cache to, or
//! import one from, a directory on the client's side (`type=local`;
//! moby/buildkit `session/content`, `cache/remotecache/local`).
//!
//! The daemon names the store in the `buildkit-attachable-store-id`
//! metadata of each call: `local:` and the `dest`/`src` attribute of the
//! cache entry, exactly as the solve request carries it. Each store is an
//! OCI image layout directory ([`layout`]).
//!
//! The daemon's side is containerd's proxy store (`core/content/proxy`):
//! a write opens with a STAT naming the ref, the size and the digest
//! expected (answered `AlreadyExists` when the blob is there, which the
//! daemon takes as done), sends WRITEs and ends with a COMMIT; every
//! request gets one answer. Reads go through `Info` and `Read`.
//!
//! Only what such a store needs is served: `Delete` is refused (cbuild
//! never deletes from a cache directory), and listing and labels are not
//! implemented.

// The helpers here produce the `tonic::Status` a handler answers with;
// boxing it only to unbox it one call later buys nothing.
#![allow(clippy::result_large_err)]

pub mod layout;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::buildkit::proto::containerd::services::content::v1::{
    content_server, AbortRequest, DeleteContentRequest, Info, InfoRequest, InfoResponse,
    ListContentRequest, ListContentResponse, ListStatusesRequest, ListStatusesResponse,
    ReadContentRequest, ReadContentResponse, StatusRequest, StatusResponse, UpdateRequest,
    UpdateResponse, WriteAction, WriteContentRequest, WriteContentResponse,
};
use layout::{Digest, Layout, LayoutError};

/// The metadata key naming the store of a call (moby/buildkit
/// `session/content/attachable.go`).
pub const STORE_ID_KEY: &str = "buildkit-attachable-store-id";

/// The stores a session serves, by store id.
#[derive(Clone, Debug, Default)]
pub struct Stores(BTreeMap<String, Arc<Layout>>);

impl Stores {
    /// The store id the daemon uses for the cache directory `dir`, given
    /// as the entry's `dest` or `src` attribute.
    pub fn id(dir: &str) -> String {
        format!("local:{dir}")
    }

    /// Serves `layout` for the directory named `dir` in the solve request.
    pub fn insert(&mut self, dir: &str, layout: Arc<Layout>) {
        self.0.insert(Self::id(dir), layout);
    }

    /// The store serving `dir`, if any.
    pub fn get(&self, dir: &str) -> Option<&Arc<Layout>> {
        self.0.get(&Self::id(dir))
    }

    /// Whether the session serves no store (and so no Content service).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Serves [`Stores`].
pub struct ContentService {
    stores: Stores,
}

impl ContentService {
    /// A service for `stores`.
    pub fn new(stores: Stores) -> Self {
        Self { stores }
    }

    fn choose(&self, call: &str, md: &tonic::metadata::MetadataMap) -> Result<Arc<Layout>, Status> {
        let id = md
            .get(STORE_ID_KEY)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!("request lacks metadata {STORE_ID_KEY:?}"))
            })?;
        tracing::debug!("content store {id}: {call}");
        self.stores
            .0
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("unknown store {id}")))
    }
}

/// The daemon's view of an error in `layout`: the gRPC code it acts on
/// (NotFound, AlreadyExists and Unavailable steer its writer), and a
/// message naming the directory, which it passes on in the build's error.
pub fn status(layout: &Layout, e: LayoutError) -> Status {
    let dir = layout.root().display();
    let writing = match &e {
        LayoutError::Io { what, .. } => !matches!(*what, "read" | "open"),
        LayoutError::Mismatch(_) => true,
        _ => false,
    };
    let message = if writing {
        format!("cannot write to the cache directory `{dir}`: {e}")
    } else {
        format!("cache directory `{dir}`: {e}")
    };
    match e {
        LayoutError::BadDigest(_) => Status::invalid_argument(message),
        LayoutError::NotFound(_) | LayoutError::NoWrite(_) => Status::not_found(message),
        LayoutError::Exists(_) => Status::already_exists(message),
        LayoutError::Locked(_) => Status::unavailable(message),
        LayoutError::Damaged { .. } => Status::data_loss(message),
        LayoutError::Mismatch(_) => Status::failed_precondition(message),
        LayoutError::OutOfRange(_) => Status::out_of_range(message),
        LayoutError::BadIndex { .. } | LayoutError::Io { .. } => Status::internal(message),
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// Runs `f` on a blocking thread (file system work, hashing).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("cache store task failed: {e}")))?
}

/// Largest chunk of a blob sent in one `Read` message.
const READ_CHUNK: usize = 1 << 20;

#[tonic::async_trait]
impl content_server::Content for ContentService {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let layout = self.choose("Info", request.metadata())?;
        let req = request.into_inner();
        blocking(move || {
            let d = Digest::parse(&req.digest).map_err(|e| status(&layout, e))?;
            let (size, modified) = layout.size(&d).map_err(|e| status(&layout, e))?;
            Ok(Response::new(InfoResponse {
                info: Some(Info {
                    digest: d.to_string(),
                    size: size as i64,
                    created_at: Some(timestamp(modified)),
                    updated_at: Some(timestamp(modified)),
                    labels: Default::default(),
                }),
            }))
        })
        .await
    }

    async fn update(
        &self,
        _request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        // As containerd's local store without a label store.
        Err(Status::failed_precondition(
            "update not supported on immutable content store",
        ))
    }

    type ListStream = tokio_stream::Empty<Result<ListContentResponse, Status>>;

    async fn list(
        &self,
        _request: Request<ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        Err(Status::unimplemented(
            "cbuild's cache store does not list its blobs",
        ))
    }

    async fn delete(
        &self,
        _request: Request<DeleteContentRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::permission_denied(
            "cbuild never deletes blobs from a cache directory",
        ))
    }

    type ReadStream = ReceiverStream<Result<ReadContentResponse, Status>>;

    async fn read(
        &self,
        request: Request<ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let layout = self.choose("Read", request.metadata())?;
        let req = request.into_inner();
        // Checked (the whole blob hashed) before the first byte goes out.
        let (file, offset, size) = blocking({
            let layout = layout.clone();
            move || {
                let d = Digest::parse(&req.digest).map_err(|e| status(&layout, e))?;
                let (file, len) = layout.open_blob(&d).map_err(|e| status(&layout, e))?;
                let offset = req.offset.max(0) as u64;
                if offset > len {
                    return Err(status(
                        &layout,
                        LayoutError::OutOfRange(format!("read past object length {len} bytes")),
                    ));
                }
                let size = if req.size <= 0 || offset + req.size as u64 > len {
                    len - offset
                } else {
                    req.size as u64
                };
                Ok((file, offset, size))
            }
        })
        .await?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            use std::io::{Seek, SeekFrom};
            let mut file = file;
            let path = layout.root().to_path_buf();
            if let Err(e) = file.seek(SeekFrom::Start(offset)) {
                let _ = tx.blocking_send(Err(Status::internal(format!(
                    "cannot read the cache directory `{}`: {e}",
                    path.display()
                ))));
                return;
            }
            let mut left = size;
            let mut at = offset as i64;
            let mut reader = file.take(size);
            while left > 0 {
                let mut buf = vec![0u8; READ_CHUNK.min(left as usize)];
                match reader.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(Err(Status::data_loss(format!(
                            "cache directory `{}`: a blob became shorter while it was read",
                            path.display()
                        ))));
                        return;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        let msg = ReadContentResponse {
                            offset: at,
                            data: buf,
                        };
                        if tx.blocking_send(Ok(msg)).is_err() {
                            return;
                        }
                        at += n as i64;
                        left -= n as u64;
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::internal(format!(
                            "cannot read the cache directory `{}`: {e}",
                            path.display()
                        ))));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let layout = self.choose("Status", request.metadata())?;
        let r = request.into_inner().r#ref;
        blocking(move || {
            let s = layout.status(&r).map_err(|e| status(&layout, e))?;
            Ok(Response::new(StatusResponse {
                status: Some(
                    crate::buildkit::proto::containerd::services::content::v1::Status {
                        started_at: Some(timestamp(s.started)),
                        updated_at: Some(timestamp(s.updated)),
                        r#ref: s.r#ref,
                        offset: s.offset as i64,
                        total: s.total,
                        expected: String::new(),
                    },
                ),
            }))
        })
        .await
    }

    async fn list_statuses(
        &self,
        _request: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        Err(Status::unimplemented(
            "cbuild's cache store does not list its writes",
        ))
    }

    type WriteStream = ReceiverStream<Result<WriteContentResponse, Status>>;

    async fn write(
        &self,
        request: Request<Streaming<WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let layout = self.choose("Write", request.metadata())?;
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let first = match incoming.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let writing = WriteCall::start(layout.clone(), first).await;
            let (mut call, mut req) = match writing {
                Ok(pair) => pair,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            loop {
                let commit = req.action == WriteAction::Commit as i32;
                let (back, answer) = call.apply(req).await;
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed || commit {
                    return;
                }
                let Some(c) = back else { return };
                call = c;
                req = match incoming.message().await {
                    Ok(Some(m)) => m,
                    // The daemon closed its side: the write stays for a
                    // resume or an abort.
                    Ok(None) => return,
                    Err(_) => return,
                };
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn abort(&self, request: Request<AbortRequest>) -> Result<Response<()>, Status> {
        let layout = self.choose("Abort", request.metadata())?;
        let r = request.into_inner().r#ref;
        blocking(move || {
            layout.abort(&r).map_err(|e| status(&layout, e))?;
            Ok(Response::new(()))
        })
        .await
    }
}

/// One `Write` call and the write it holds.
struct WriteCall {
    layout: Arc<Layout>,
    /// `None` once committed.
    ingest: Option<layout::Ingest>,
    expected: Option<Digest>,
}

impl WriteCall {
    /// Opens the write the first request names; returns it with that
    /// request, which is then applied like any other.
    async fn start(
        layout: Arc<Layout>,
        first: WriteContentRequest,
    ) -> Result<(Self, WriteContentRequest), Status> {
        if first.r#ref.is_empty() {
            return Err(Status::invalid_argument(
                "first message must have a reference",
            ));
        }
        blocking(move || {
            let expected = parse_expected(&layout, &first.expected)?;
            // A blob that is there (and intact) needs no write: the daemon
            // takes AlreadyExists as done.
            if let Some(d) = &expected {
                if layout.has(d).map_err(|e| status(&layout, e))? {
                    return Err(status(&layout, LayoutError::Exists(d.clone())));
                }
            }
            let ingest = layout
                .writer(&first.r#ref, first.total)
                .map_err(|e| status(&layout, e))?;
            Ok((
                WriteCall {
                    layout,
                    ingest: Some(ingest),
                    expected,
                },
                first,
            ))
        })
        .await
    }

    /// Applies one request; gives the call back unless it ended.
    async fn apply(
        mut self,
        req: WriteContentRequest,
    ) -> (Option<Self>, Result<WriteContentResponse, Status>) {
        let answer = tokio::task::spawn_blocking(move || {
            let r = self.apply_blocking(req);
            (self, r)
        })
        .await;
        match answer {
            Ok((call, Ok((resp, done)))) => ((!done).then_some(call), Ok(resp)),
            Ok((_, Err(e))) => (None, Err(e)),
            Err(e) => (
                None,
                Err(Status::internal(format!("cache store task failed: {e}"))),
            ),
        }
    }

    fn apply_blocking(
        &mut self,
        req: WriteContentRequest,
    ) -> Result<(WriteContentResponse, bool), Status> {
        let layout = self.layout.clone();
        let st = |e| status(&layout, e);
        if !req.expected.is_empty() {
            let d = parse_expected(&layout, &req.expected)?.expect("non-empty");
            if self.expected.as_ref() != Some(&d) && layout.has(&d).map_err(st)? {
                return Err(st(LayoutError::Exists(d)));
            }
            self.expected = Some(d);
        }
        let ingest = self.ingest.as_mut().expect("open until commit");
        if req.total > 0 {
            ingest.set_total(req.total);
        }
        let action = WriteAction::try_from(req.action).map_err(|_| {
            Status::invalid_argument(format!("unknown write action {}", req.action))
        })?;
        let mut resp = WriteContentResponse {
            action: req.action,
            ..Default::default()
        };
        match action {
            WriteAction::Stat => {
                let s = ingest.status().map_err(st)?;
                resp.offset = s.offset as i64;
                resp.total = s.total;
                resp.digest = ingest.digest().to_string();
                resp.started_at = Some(timestamp(s.started));
                resp.updated_at = Some(timestamp(s.updated));
                Ok((resp, false))
            }
            WriteAction::Write | WriteAction::Commit => {
                if req.offset < 0 {
                    return Err(st(LayoutError::OutOfRange(format!(
                        "negative write offset {}",
                        req.offset
                    ))));
                }
                // Offset 0 with data already written starts over (also
                // without data: the writer truncated); any other offset
                // must be where the write stands (containerd's rule).
                ingest.write_at(req.offset as u64, &req.data).map_err(st)?;
                resp.offset = ingest.offset() as i64;
                if action == WriteAction::Commit {
                    let total = ingest.total();
                    let ingest = self.ingest.take().expect("open until commit");
                    let d = ingest.commit(total, self.expected.as_ref()).map_err(st)?;
                    resp.digest = d.to_string();
                    let now = timestamp(SystemTime::now());
                    resp.started_at = Some(now);
                    resp.updated_at = Some(now);
                    resp.total = total;
                    return Ok((resp, true));
                }
                resp.digest = ingest.digest().to_string();
                Ok((resp, false))
            }
        }
    }
}

fn parse_expected(layout: &Layout, s: &str) -> Result<Option<Digest>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    Digest::parse(s).map(Some).map_err(|e| status(layout, e))
}

/// The service over an in-memory HTTP/2 connection, with a client playing
/// the daemon's part (containerd's proxy store).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildkit::proto::containerd::services::content::v1::content_client::ContentClient;
    use crate::buildkit::session::{routes, SessionSpec, TransferStats};

    const DIR: &str = "/the/cache";

    async fn client(layout: Arc<Layout>) -> ContentClient<tonic::transport::Channel> {
        let mut spec = SessionSpec::default();
        spec.content.insert(DIR, layout);
        let routes = routes(&spec, Arc::new(TransferStats::default()));
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(crate::buildkit::session::tunnel::serve(server_io, routes));
        ContentClient::new(crate::buildkit::session::test_channel(client_io).await)
    }

    fn req<T>(msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert(STORE_ID_KEY, Stores::id(DIR).parse().unwrap());
        r
    }

    fn sha(bytes: &[u8]) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, bytes);
        let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// One write as the daemon makes it: STAT (ref, size, digest), WRITEs,
    /// COMMIT; the answers, or the status that ended the call.
    async fn write(
        c: &mut ContentClient<tonic::transport::Channel>,
        r: &str,
        chunks: &[&[u8]],
        expected: &str,
    ) -> Result<Vec<WriteContentResponse>, Status> {
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let mut msgs = vec![WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: r.into(),
            total: total as i64,
            expected: expected.into(),
            ..Default::default()
        }];
        let mut offset = 0;
        for chunk in chunks {
            msgs.push(WriteContentRequest {
                action: WriteAction::Write as i32,
                offset,
                data: chunk.to_vec(),
                ..Default::default()
            });
            offset += chunk.len() as i64;
        }
        msgs.push(WriteContentRequest {
            action: WriteAction::Commit as i32,
            offset,
            total: total as i64,
            expected: expected.into(),
            ..Default::default()
        });
        let mut answers = c.write(req(tokio_stream::iter(msgs))).await?.into_inner();
        let mut out = Vec::new();
        while let Some(a) = answers.message().await? {
            out.push(a);
        }
        Ok(out)
    }

    async fn read(
        c: &mut ContentClient<tonic::transport::Channel>,
        digest: &str,
        offset: i64,
        size: i64,
    ) -> Result<Vec<u8>, Status> {
        let mut s = c
            .read(req(ReadContentRequest {
                digest: digest.into(),
                offset,
                size,
            }))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = s.message().await? {
            assert_eq!(m.offset, offset + out.len() as i64);
            out.extend_from_slice(&m.data);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_blob_written_like_the_daemon_does_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Arc::new(Layout::create(dir.path()).unwrap());
        let mut c = client(layout).await;
        let d = sha(b"cache layer bytes");
        let answers = write(&mut c, "layer-1", &[b"cache ", b"layer ", b"bytes"], &d)
            .await
            .unwrap();
        assert_eq!(answers.len(), 5, "one answer per request");
        assert_eq!(answers[0].offset, 0);
        let last = answers.last().unwrap();
        assert_eq!(last.action, WriteAction::Commit as i32);
        assert_eq!((last.offset, last.digest.as_str()), (17, d.as_str()));

        let info = c
            .info(req(InfoRequest { digest: d.clone() }))
            .await
            .unwrap();
        assert_eq!(info.into_inner().info.unwrap().size, 17);
        assert_eq!(read(&mut c, &d, 0, 0).await.unwrap(), b"cache layer bytes");
        assert_eq!(read(&mut c, &d, 6, 5).await.unwrap(), b"layer");
        assert_eq!(read(&mut c, &d, 12, 100).await.unwrap(), b"bytes");
        let past = read(&mut c, &d, 18, 0).await.unwrap_err();
        assert_eq!(past.code(), tonic::Code::OutOfRange);

        // A blob that is there is not written again.
        let again = write(&mut c, "layer-2", &[b"cache layer bytes"], &d)
            .await
            .unwrap_err();
        assert_eq!(again.code(), tonic::Code::AlreadyExists, "{again}");
        let st = c
            .status(req(StatusRequest {
                r#ref: "layer-2".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(st.code(), tonic::Code::NotFound, "no ingest was left");
    }

    #[tokio::test]
    async fn wrong_bytes_bad_digests_and_unknown_stores_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Arc::new(Layout::create(dir.path()).unwrap());
        let mut c = client(layout.clone()).await;
        let err = write(&mut c, "r", &[b"other bytes"], &sha(b"announced"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
        assert!(err.message().contains("unexpected commit digest"), "{err}");
        assert!(err.message().contains(&dir.path().display().to_string()));
        assert!(
            !dir.path().join("blobs/sha256").exists()
                || std::fs::read_dir(dir.path().join("blobs/sha256"))
                    .unwrap()
                    .next()
                    .is_none()
        );
        // The bytes stay for a retry or an abort.
        c.abort(req(AbortRequest { r#ref: "r".into() }))
            .await
            .unwrap();

        for bad in ["sha256:../../../etc/passwd", "md5:abc"] {
            let e = c
                .info(req(InfoRequest { digest: bad.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            let e = write(&mut c, "x", &[b"x"], bad).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        let missing = c
            .info(req(InfoRequest {
                digest: sha(b"none"),
            }))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);

        let mut r = Request::new(InfoRequest { digest: sha(b"x") });
        r.metadata_mut()
            .insert(STORE_ID_KEY, "local:/elsewhere".parse().unwrap());
        assert_eq!(c.info(r).await.unwrap_err().code(), tonic::Code::NotFound);
        let e = c
            .info(Request::new(InfoRequest { digest: sha(b"x") }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let e = c
            .delete(req(DeleteContentRequest { digest: sha(b"x") }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }

    #[tokio::test]
    async fn a_damaged_blob_is_refused_and_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Arc::new(Layout::create(dir.path()).unwrap());
        let d = sha(b"the real bytes");
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(&d[7..]), b"the fake bytes").unwrap();
        let mut c = client(layout.clone()).await;
        let e = read(&mut c, &d, 0, 0).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::DataLoss, "{e}");
        assert!(e.message().contains("does not match its digest"), "{e}");
        // Nor is it taken as present when the daemon wants to write it.
        let e = write(&mut c, "r", &[b"the real bytes"], &d)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::DataLoss, "{e}");
        assert_eq!(layout.damaged().len(), 1);
        assert_eq!(
            std::fs::read(blobs.join(&d[7..])).unwrap(),
            b"the fake bytes"
        );
    }
}
