//! The build session: a gRPC server that cbuild runs and the daemon calls
//! back into, for the build context (FileSync), registry credentials (Auth),
//! build secrets and its own health checks.
//!
//! The daemon is the HTTP/2 *client* on the session's byte stream, cbuild the
//! server (moby/buildkit `session/session.go`, `session/manager.go`). The
//! stream is either a Docker engine's `/session` upgrade or BuildKit's
//! `Control.Session` bidirectional stream (see [`tunnel`]).
//!
//! [`REGISTERED`] names every service [`routes`] registers (by the generated
//! server's `SERVICE_NAME`) with the methods cbuild implements; the
//! `X-Docker-Expose-Session-Grpc-Method` headers are derived from it
//! ([`methods`]), and a unit test calls every advertised method through the
//! router, so what is advertised and what is served cannot drift apart.

pub mod auth;
pub mod content;
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

use super::proto::containerd::services::content::v1::content_server::{self, ContentServer};
use super::proto::moby::buildkit::secrets::v1::secrets_server::{self, SecretsServer};
use super::proto::moby::filesync::v1::auth_server::{self, AuthServer};
use super::proto::moby::filesync::v1::file_send_server::{self, FileSendServer};
use super::proto::moby::filesync::v1::file_sync_server::{self, FileSyncServer};
use super::proto::moby::sshforward::v1::ssh_server::{self, SshServer};
use super::proto::moby::upload::v1::upload_server::{self, UploadServer};

/// A service the session registers in [`routes`]: its gRPC name and the
/// methods it implements.
#[derive(Debug)]
pub struct Registered {
    /// The generated server's `SERVICE_NAME` (`package.Service`).
    pub service: &'static str,
    /// The methods advertised (a method that only answers `Unimplemented`
    /// because it is never used, as FileSync's `TarStream`, is left out).
    pub methods: &'static [&'static str],
    /// Registered only for a session that serves a local cache directory.
    pub only_with_stores: bool,
}

impl Registered {
    /// Whether a session serving `spec` registers this service.
    pub fn serves(&self, spec: &SessionSpec) -> bool {
        !self.only_with_stores || !spec.content.is_empty()
    }
}

/// Every service [`routes`] registers, with its methods.
///
/// The daemon consults the advertised list before calling FileSync (and
/// FileSend); the other services are called blindly and fall back on
/// `Unimplemented` (which Auth's token methods answer on purpose: the
/// daemon then uses `Credentials`).
pub const REGISTERED: &[Registered] = &[
    Registered {
        service: tonic_health::pb::health_server::SERVICE_NAME,
        methods: &["Check", "Watch"],
        only_with_stores: false,
    },
    Registered {
        service: file_sync_server::SERVICE_NAME,
        methods: &["DiffCopy"],
        only_with_stores: false,
    },
    Registered {
        service: file_send_server::SERVICE_NAME,
        methods: &["DiffCopy"],
        only_with_stores: false,
    },
    Registered {
        service: auth_server::SERVICE_NAME,
        methods: &[
            "Credentials",
            "FetchToken",
            "GetTokenAuthority",
            "VerifyTokenAuthority",
        ],
        only_with_stores: false,
    },
    Registered {
        service: secrets_server::SERVICE_NAME,
        methods: &["GetSecret"],
        only_with_stores: false,
    },
    Registered {
        service: upload_server::SERVICE_NAME,
        methods: &["Pull"],
        only_with_stores: false,
    },
    Registered {
        service: ssh_server::SERVICE_NAME,
        methods: &["CheckAgent", "ForwardAgent"],
        only_with_stores: false,
    },
    // The daemon calls it without looking at the list; it is advertised
    // for completeness. Delete (refused), List, ListStatuses and Update
    // are left out.
    Registered {
        service: content_server::SERVICE_NAME,
        methods: &["Info", "Read", "Status", "Write", "Abort"],
        only_with_stores: true,
    },
];

/// Every gRPC method a session serving `spec` serves, as advertised to the
/// daemon (`/package.Service/Method`).
pub fn methods(spec: &SessionSpec) -> impl Iterator<Item = String> + '_ {
    REGISTERED
        .iter()
        .filter(|r| r.serves(spec))
        .flat_map(|r| r.methods.iter().map(move |m| format!("/{}/{m}", r.service)))
}

// What a session serves of a directory is defined by `context`, which owns
// what BuildKit sees; the session only speaks the protocol over it.
pub use crate::context::listing::{LocalDir, Served, TrackedDir, VirtualFile};

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
    /// The local cache directories (`type=local`) the daemon may read and
    /// write, by store id.
    pub content: content::Stores,
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

/// The session headers (HTTP form) that announce a session serving `spec`
/// to the daemon.
pub fn headers(id: &str, spec: &SessionSpec) -> Vec<(String, String)> {
    let shared_key = spec.shared_key.as_str();
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
    for m in methods(spec) {
        h.push(("X-Docker-Expose-Session-Grpc-Method".to_string(), m));
    }
    h
}

/// The tonic router serving every service in [`REGISTERED`].
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
    let routes = Routes::new(health)
        .add_service(filesync)
        .add_service(auth)
        .add_service(secrets)
        .add_service(uploads)
        .add_service(SshServer::new(ssh::SshService::new(spec.ssh.clone())))
        .add_service(
            FileSendServer::new(filesend::FileSendService::new(spec.file_send.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        );
    if spec.content.is_empty() {
        return routes;
    }
    routes.add_service(
        ContentServer::new(content::ContentService::new(spec.content.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tower::ServiceExt;

    /// A request body of one gRPC message (an empty one: every field at its
    /// default).
    struct OneMessage(Option<Bytes>);

    impl hyper::body::Body for OneMessage {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.take().map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }

    /// The status a call of `path` through the session's router answers
    /// with in its headers (`None` when the call is accepted and streams),
    /// and its message.
    async fn call(spec: &SessionSpec, path: &str) -> (Option<String>, Option<String>) {
        let routes = routes(spec, Arc::default());
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://session{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::boxed(OneMessage(Some(Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ])))))
            .unwrap();
        let resp = routes.oneshot(req).await.unwrap();
        let header = |k: &str| {
            resp.headers()
                .get(k)
                .map(|v| v.to_str().unwrap().to_string())
        };
        (header("grpc-status"), header("grpc-message"))
    }

    /// Every advertised method reaches an implementation: the router's own
    /// answer for a method it does not route is a bare `Unimplemented`.
    #[tokio::test]
    async fn every_advertised_method_is_routed() {
        let unimplemented = Some((tonic::Code::Unimplemented as i32).to_string());
        let plain = SessionSpec::default();
        let (status, message) = call(&plain, "/moby.filesync.v1.FileSync/NoSuchMethod").await;
        assert_eq!((&status, &message), (&unimplemented, &None));
        let (status, message) = call(&plain, "/no.such.Service/Method").await;
        assert_eq!((&status, &message), (&unimplemented, &None));

        let dir = tempfile::tempdir().unwrap();
        let mut with_cache = SessionSpec::default();
        with_cache.content.insert(
            "/c",
            Arc::new(content::layout::Layout::create(dir.path()).unwrap()),
        );
        let content_info = "/containerd.services.content.v1.Content/Info";
        for (spec, serves_content) in [(&plain, false), (&with_cache, true)] {
            let advertised: Vec<String> = methods(spec).collect();
            assert!(advertised.contains(&"/moby.filesync.v1.FileSync/DiffCopy".to_string()));
            assert!(!advertised.iter().any(|m| m.ends_with("/TarStream")));
            assert_eq!(advertised.iter().any(|m| m == content_info), serves_content);
            for m in &advertised {
                let (status, message) = call(spec, m).await;
                assert!(
                    status != unimplemented || message.is_some(),
                    "{m} is advertised but not routed"
                );
            }
            let h = headers("id", spec);
            let listed: Vec<&String> = h
                .iter()
                .filter(|(k, _)| k == "X-Docker-Expose-Session-Grpc-Method")
                .map(|(_, v)| v)
                .collect();
            assert_eq!(listed.len(), advertised.len());
        }
        // Without a cache directory the daemon finds no content store.
        let (status, message) = call(&plain, content_info).await;
        assert_eq!((&status, &message), (&unimplemented, &None));
    }
}
