//! The build session: a gRPC server that cbuild runs and the daemon calls
//! back into, for the build context (FileSync), registry credentials (Auth),
//! build secrets and its own health checks.
//!
//! The daemon is the HTTP/2 *client* on the session's byte stream, cbuild the
//! server (moby/buildkit `session/session.go`, `session/manager.go`). The
//! stream is either a Docker engine's `/session` upgrade or BuildKit's
//! `Control.Session` bidirectional stream (see [`tunnel`]).
//!
//! [`SERVICES`] lists every method cbuild serves; it produces both the router
//! and the `X-Docker-Expose-Session-Grpc-Method` headers, so what is advertised
//! and what is served cannot drift apart.

pub mod auth;
pub mod filesend;
pub mod filesync;
pub mod secrets;
pub mod ssh;
pub mod tunnel;
pub mod upload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tonic::service::Routes;

use super::proto::moby::buildkit::secrets::v1::secrets_server::SecretsServer;
use super::proto::moby::filesync::v1::auth_server::AuthServer;
use super::proto::moby::filesync::v1::file_send_server::FileSendServer;
use super::proto::moby::filesync::v1::file_sync_server::FileSyncServer;
use super::proto::moby::sshforward::v1::ssh_server::SshServer;
use super::proto::moby::upload::v1::upload_server::UploadServer;

/// Every gRPC method the session serves, as advertised to the daemon.
///
/// The daemon consults this list before calling FileSync (and FileSend); the
/// other services are called blindly and fall back on `Unimplemented`.
pub const SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.FileSync/TarStream",
    "/moby.filesync.v1.FileSend/DiffCopy",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.filesync.v1.Auth/GetTokenAuthority",
    "/moby.filesync.v1.Auth/VerifyTokenAuthority",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
    "/moby.upload.v1.Upload/Pull",
    "/moby.sshforward.v1.SSH/CheckAgent",
    "/moby.sshforward.v1.SSH/ForwardAgent",
];

/// One directory the daemon may pull from the session, by local name
/// (`context`, `dockerfile`, or a named context).
#[derive(Clone, Debug)]
pub enum LocalDir {
    /// A directory on disk.
    Disk(PathBuf),
    /// A directory on disk whose files are reported by content: hashed
    /// (through a persistent cache) and stamped by a content clock, so a
    /// content change always reaches BuildKit and a touch never does.
    Tracked(TrackedDir),
    /// A directory that exists only in memory (an inline Dockerfile).
    Virtual(Vec<VirtualFile>),
}

/// A directory served by content (see [`LocalDir::Tracked`]).
#[derive(Clone)]
pub struct TrackedDir {
    /// The directory.
    pub root: PathBuf,
    /// Its hash cache.
    pub hashes: Arc<crate::context::cache::HashCache>,
    /// The clock that stamps its files.
    pub clock: Arc<crate::context::clock::ContentClock>,
}

impl std::fmt::Debug for TrackedDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedDir")
            .field("root", &self.root)
            .finish()
    }
}

/// One regular file of a [`LocalDir::Virtual`] directory.
#[derive(Clone, Debug)]
pub struct VirtualFile {
    /// File name (no slashes).
    pub name: String,
    /// Contents.
    pub data: Bytes,
}

/// What a session serves.
#[derive(Clone, Debug, Default)]
pub struct SessionSpec {
    /// The key BuildKit combines with the local name to find the previous
    /// upload of a directory and transfer only what changed.
    pub shared_key: String,
    /// The directories the daemon may pull, by local name.
    pub locals: HashMap<String, LocalDir>,
    /// Build secrets by id (`RUN --mount=type=secret,id=…`).
    pub secrets: HashMap<String, Bytes>,
    /// SSH agent sockets by id (`default`, …) for `RUN --mount=type=ssh`.
    pub ssh: HashMap<String, PathBuf>,
    /// Single-use uploads by id, fetched as `http://buildkit-session/<id>`.
    pub uploads: HashMap<String, upload::Upload>,
    /// Where a file exporter's bytes go (the `docker` exporter's tarball).
    pub file_send: Option<filesend::FileSendTarget>,
    /// Carry the session inside `Control.Session` even on a Docker engine
    /// (which otherwise gets the `/session` upgrade). This is the only path
    /// a standalone buildkitd has, so it can be exercised against Docker.
    pub over_control: bool,
}

/// Counters for what the daemon pulled through the session.
#[derive(Debug, Default)]
pub struct TransferStats {
    /// Regular files whose content was sent.
    pub files_sent: AtomicU64,
    /// Bytes of file content sent.
    pub bytes_sent: AtomicU64,
    /// Entries (files, directories, links) announced with a STAT packet.
    pub entries_listed: AtomicU64,
    /// Of `files_sent`, those of build contexts (not the Dockerfile).
    pub context_files_sent: AtomicU64,
    /// Of `bytes_sent`, those of build contexts (not the Dockerfile).
    pub context_bytes_sent: AtomicU64,
    /// Every DiffCopy call served, in order.
    pub served: std::sync::Mutex<Vec<Served>>,
}

/// One DiffCopy call: which local the daemon asked for, with which
/// filters, and the listing digest of what it was shown. Replaying these
/// requests later tells whether a build's inputs changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    /// The local name (`context`, `dockerfile`…).
    pub local: String,
    /// The filters the daemon sent.
    pub opts: crate::context::walk::WalkOptions,
    /// The listing digest.
    pub digest: String,
    /// Each entry's path and fingerprint (see
    /// [`crate::context::digest::ListingDigest::fingerprints`]); kept apart
    /// from the record, to say which files changed.
    #[serde(skip)]
    pub files: Vec<(String, String)>,
}

impl TransferStats {
    /// A plain copy of the counters.
    pub fn snapshot(&self) -> TransferSnapshot {
        TransferSnapshot {
            files_sent: self.files_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            entries_listed: self.entries_listed.load(Ordering::Relaxed),
            context_files_sent: self.context_files_sent.load(Ordering::Relaxed),
            context_bytes_sent: self.context_bytes_sent.load(Ordering::Relaxed),
            served: self.served.lock().map(|s| s.clone()).unwrap_or_default(),
        }
    }
}

/// Values of [`TransferStats`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransferSnapshot {
    /// Regular files whose content was sent.
    pub files_sent: u64,
    /// Bytes of file content sent.
    pub bytes_sent: u64,
    /// Entries announced.
    pub entries_listed: u64,
    /// Files of build contexts sent (the Dockerfile excluded).
    pub context_files_sent: u64,
    /// Bytes of build contexts sent (the Dockerfile excluded).
    pub context_bytes_sent: u64,
    /// The DiffCopy calls served.
    pub served: Vec<Served>,
}

/// A new random session id. It must not contain `:` (the daemon splits on it).
pub fn new_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..25)
        .map(|_| {
            let n = rng.gen_range(0..36u8);
            (if n < 10 { b'0' + n } else { b'a' + n - 10 }) as char
        })
        .collect()
}

/// The session headers (HTTP form) that announce a session to the daemon.
pub fn headers(id: &str, shared_key: &str) -> Vec<(String, String)> {
    let mut h = vec![
        ("X-Docker-Expose-Session-Uuid".to_string(), id.to_string()),
        (
            "X-Docker-Expose-Session-Name".to_string(),
            "cbuild".to_string(),
        ),
        (
            "X-Docker-Expose-Session-Sharedkey".to_string(),
            shared_key.to_string(),
        ),
    ];
    for m in SERVICES {
        h.push((
            "X-Docker-Expose-Session-Grpc-Method".to_string(),
            (*m).to_string(),
        ));
    }
    h
}

/// The tonic router serving every service in [`SERVICES`].
pub(crate) fn routes(spec: &SessionSpec, stats: Arc<TransferStats>) -> Routes {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let locals = Arc::new(spec.locals.clone());
    let filesync = FileSyncServer::new(filesync::FileSyncService::new(locals, stats.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let auth = AuthServer::new(auth::AuthService::from_env());
    let secrets = SecretsServer::new(secrets::SecretsService::new(spec.secrets.clone()));
    let uploads = UploadServer::new(upload::UploadService::new(
        spec.uploads.clone(),
        stats.clone(),
    ));
    Routes::new(health)
        .add_service(filesync)
        .add_service(auth)
        .add_service(secrets)
        .add_service(uploads)
        .add_service(SshServer::new(ssh::SshService::new(spec.ssh.clone())))
        .add_service(
            FileSendServer::new(filesend::FileSendService::new(spec.file_send.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
}

/// Largest gRPC message cbuild accepts or sends on the session (the daemon's
/// own limit is 16 MiB).
pub const MAX_MESSAGE: usize = 16 << 20;

/// Reads `rd` until it ends, sending each chunk read, wrapped by `wrap`, to
/// `tx`: how raw byte streams become gRPC message streams (the session
/// tunnel, SSH agent connections). Stops when either side is gone.
pub(crate) async fn pump_chunks<R, T>(
    mut rd: R,
    tx: tokio::sync::mpsc::Sender<T>,
    wrap: impl Fn(Vec<u8>) -> T,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(wrap(buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A gRPC channel over one end of an in-memory stream (for unit tests that
/// play the other side of a connection).
#[cfg(test)]
pub(crate) async fn test_channel(io: tokio::io::DuplexStream) -> tonic::transport::Channel {
    let mut io = Some(io);
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let io = io.take();
            async move {
                io.map(hyper_util::rt::TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("used"))
            }
        }))
        .await
        .unwrap()
}
