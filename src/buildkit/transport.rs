//! How cbuild reaches a BuildKit daemon.
//!
//! Three kinds of address:
//! - the BuildKit embedded in a Docker engine, reached through the engine's
//!   API socket: `POST /grpc` upgraded to h2c carries the Control API, and
//!   `POST /session` upgraded to h2c carries a session (the engine then speaks
//!   HTTP/2 as the *client*; see moby `daemon/server/router/grpc` and
//!   `router/session`);
//! - a standalone buildkitd on a unix socket;
//! - a standalone buildkitd over TCP, plain or with TLS (see [`super::tls`]);
//!   a Docker engine's API may be on TCP with TLS too.
//!
//! The HTTP/1.1 upgrade is written by hand because it is one request whose
//! answer must keep every byte read past the header: the peer's HTTP/2
//! preface or SETTINGS frame may arrive in the same read as `101`.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tonic::transport::{Channel, Endpoint, Uri};

use super::error::BuildkitError;
use super::tls::{TlsClient, TlsFiles};

/// TLS files for TCP addresses: `buildkit` for a buildkitd (`--tlscacert`
/// and friends), `docker` for a Docker engine (`DOCKER_TLS_VERIFY`).
#[derive(Clone, Debug, Default)]
pub struct TlsChoice {
    /// For a buildkitd over TCP.
    pub buildkit: Option<TlsFiles>,
    /// For a Docker engine over TCP.
    pub docker: Option<TlsFiles>,
}

/// ALPN for a buildkitd: gRPC over HTTP/2.
const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN for a Docker engine: its API is HTTP/1.1 until the upgrade.
const ALPN_DOCKER: &[&[u8]] = &[b"http/1.1"];

/// Where the BuildKit daemon is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// A Docker engine's API on a unix socket.
    DockerUnix(PathBuf),
    /// A Docker engine's API over TCP (`host:port`), with TLS if set.
    DockerTcp(String, Option<TlsClient>),
    /// A standalone buildkitd on a unix socket.
    BuildkitUnix(PathBuf),
    /// A standalone buildkitd over TCP (`host:port`), with TLS if set.
    BuildkitTcp(String, Option<TlsClient>),
}

/// The Docker engine socket used when nothing else is configured.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

impl Address {
    /// Parses a buildkitd address: `unix:///path`, `tcp://host:port`, or
    /// `docker+unix:///path` (`docker+tcp://…`) for a Docker engine named
    /// explicitly.
    pub fn parse_buildkit(s: &str, tls: &TlsChoice) -> Result<Self, BuildkitError> {
        if let Some(rest) = s.strip_prefix("docker+") {
            return Self::parse_docker(rest, tls.buildkit.as_ref().or(tls.docker.as_ref()));
        }
        if let Some(p) = s.strip_prefix("unix://") {
            return Ok(Address::BuildkitUnix(PathBuf::from(p)));
        }
        if let Some(h) = s.strip_prefix("tcp://") {
            let tls = load_tls(s, tls.buildkit.as_ref(), ALPN_GRPC)?;
            return Ok(Address::BuildkitTcp(host_port(h, s)?, tls));
        }
        Err(BuildkitError::BadAddress {
            address: s.to_string(),
            reason: "expected `unix:///path/to/buildkitd.sock` or `tcp://host:port`".into(),
        })
    }

    /// Parses a `DOCKER_HOST` value.
    pub fn parse_docker(s: &str, tls: Option<&TlsFiles>) -> Result<Self, BuildkitError> {
        if let Some(p) = s.strip_prefix("unix://") {
            return Ok(Address::DockerUnix(PathBuf::from(p)));
        }
        if let Some(h) = s.strip_prefix("tcp://") {
            let tls = load_tls(s, tls, ALPN_DOCKER)?;
            return Ok(Address::DockerTcp(host_port(h, s)?, tls));
        }
        Err(BuildkitError::BadAddress {
            address: s.to_string(),
            reason: "expected `unix:///var/run/docker.sock` or `tcp://host:port`".into(),
        })
    }

    /// Whether this is the BuildKit inside a Docker engine.
    pub fn is_docker(&self) -> bool {
        matches!(self, Address::DockerUnix(_) | Address::DockerTcp(..))
    }

    /// Whether this is a TLS address that presents no client certificate
    /// (which most TLS builders require).
    pub fn tls_without_client_cert(&self) -> bool {
        match self {
            Address::DockerTcp(_, Some(t)) | Address::BuildkitTcp(_, Some(t)) => {
                t.files.cert.is_none()
            }
            _ => false,
        }
    }

    /// Runs `step` under the connect deadline, saying what was awaited
    /// when it passes.
    async fn within<T>(
        &self,
        waiting_for: &str,
        step: impl std::future::Future<Output = Result<T, BuildkitError>>,
    ) -> Result<T, BuildkitError> {
        let after = crate::timeouts::answer_deadline();
        tokio::time::timeout(after, step).await.unwrap_or_else(|_| {
            Err(BuildkitError::Timeout {
                address: self.to_string(),
                waiting_for: waiting_for.to_string(),
                after,
            })
        })
    }

    /// Connects (with TLS where set), within the connect deadline.
    async fn dial(&self) -> Result<BoxIo, BuildkitError> {
        let tls = matches!(
            self,
            Address::DockerTcp(_, Some(_)) | Address::BuildkitTcp(_, Some(_))
        );
        let what = if tls {
            "the connection and TLS handshake"
        } else {
            "the connection"
        };
        self.within(what, async {
            self.dial_now().await.map_err(|e| self.connect_error(e))
        })
        .await
    }

    async fn dial_now(&self) -> io::Result<BoxIo> {
        match self {
            Address::DockerUnix(p) | Address::BuildkitUnix(p) => {
                Ok(Box::new(tokio::net::UnixStream::connect(p).await?))
            }
            Address::DockerTcp(h, tls) | Address::BuildkitTcp(h, tls) => {
                let s = tokio::net::TcpStream::connect(h).await?;
                s.set_nodelay(true)?;
                let Some(tls) = tls else {
                    return Ok(Box::new(s));
                };
                let name = tls
                    .files
                    .server_name(h)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                let stream = connector.connect(name, s).await.map_err(|e| {
                    let mut msg = format!("TLS handshake failed: {e}");
                    if msg.contains("CaUsedAsEndEntity") {
                        // Go's TLS accepts a self-signed CA certificate as the
                        // server's own; rustls does not.
                        msg.push_str(
                            " (the server presents a CA certificate as its own: give it a \
                             certificate issued by that CA, with the server's name or IP)",
                        );
                    }
                    io::Error::new(e.kind(), msg)
                })?;
                Ok(Box::new(stream))
            }
        }
    }

    /// Opens a new gRPC channel to the daemon's Control API.
    pub async fn connect(&self) -> Result<Channel, BuildkitError> {
        let endpoint = Endpoint::from_static("http://localhost");
        let addr = self.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let addr = addr.clone();
            async move {
                let io: BoxIo = if addr.is_docker() {
                    Box::new(addr.upgrade("/grpc", &[]).await?)
                } else {
                    addr.dial().await?
                };
                Ok::<_, BuildkitError>(TokioIo::new(io))
            }
        });
        endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| self.unwrap_connect_error(e))
    }

    /// `POST path` with `Upgrade: h2c` on the Docker API, returning the raw
    /// stream after `101 Switching Protocols` (bytes read past the header
    /// included).
    pub async fn upgrade(
        &self,
        path: &str,
        headers: &[(String, String)],
    ) -> Result<Prefixed<BoxIo>, BuildkitError> {
        let mut io = self.dial().await?;
        // A peer that accepts and never answers must not hang cbuild; once
        // upgraded, the stream carries builds of any length.
        let waiting_for = format!("`POST {path}` (upgrade to h2c)");
        let (buf, header_end) = self
            .within(&waiting_for, self.read_upgrade(&mut io, path, headers))
            .await?;
        let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
        let status_line = head.lines().next().unwrap_or_default().to_string();
        if status_line.split_whitespace().nth(1) != Some("101") {
            // Keep the start of the body: the engine explains itself there.
            let body = String::from_utf8_lossy(&buf[header_end..]);
            let body = body.trim();
            return Err(BuildkitError::Upgrade {
                address: self.to_string(),
                path: path.to_string(),
                answer: if body.is_empty() {
                    status_line
                } else {
                    format!("{status_line}: {}", truncate(body, 300))
                },
            });
        }
        Ok(Prefixed {
            prefix: Bytes::copy_from_slice(&buf[header_end..]),
            inner: io,
        })
    }

    /// Sends the upgrade request and reads the answer's header: the bytes
    /// read and where the header ends.
    async fn read_upgrade(
        &self,
        io: &mut BoxIo,
        path: &str,
        headers: &[(String, String)],
    ) -> Result<(Vec<u8>, usize), BuildkitError> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: cbuild/{}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n",
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        io.write_all(req.as_bytes())
            .await
            .map_err(|e| self.connect_error(e))?;
        let mut buf = Vec::with_capacity(1024);
        let header_end = loop {
            let mut chunk = [0u8; 4096];
            let n = io
                .read(&mut chunk)
                .await
                .map_err(|e| self.connect_error(e))?;
            if n == 0 {
                return Err(BuildkitError::Upgrade {
                    address: self.to_string(),
                    path: path.to_string(),
                    answer: "the connection closed before an answer".into(),
                });
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(pos) = find_subslice(&buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if buf.len() > 64 * 1024 {
                return Err(BuildkitError::Upgrade {
                    address: self.to_string(),
                    path: path.to_string(),
                    answer: "an HTTP header larger than 64 KiB".into(),
                });
            }
        };
        Ok((buf, header_end))
    }

    fn connect_error(&self, cause: io::Error) -> BuildkitError {
        BuildkitError::Connect {
            address: self.to_string(),
            cause,
        }
    }

    fn unwrap_connect_error(&self, e: tonic::transport::Error) -> BuildkitError {
        // Surface our own error (with the address and a hint) when the
        // connector failed, instead of tonic's generic "transport error".
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cur {
            if let Some(b) = err.downcast_ref::<BuildkitError>() {
                return b.clone_shallow();
            }
            cur = err.source();
        }
        BuildkitError::Transport {
            address: self.to_string(),
            source: e,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::DockerUnix(p) => write!(f, "unix://{}", p.display()),
            Address::DockerTcp(h, None) => write!(f, "tcp://{h}"),
            Address::DockerTcp(h, Some(_)) => write!(f, "tcp://{h} (TLS)"),
            Address::BuildkitUnix(p) => write!(f, "unix://{} (buildkitd)", p.display()),
            Address::BuildkitTcp(h, None) => write!(f, "tcp://{h} (buildkitd)"),
            Address::BuildkitTcp(h, Some(_)) => write!(f, "tcp://{h} (buildkitd, TLS)"),
        }
    }
}

/// The TLS client for address `whole`, if `files` asks for TLS.
fn load_tls(
    whole: &str,
    files: Option<&TlsFiles>,
    alpn: &[&[u8]],
) -> Result<Option<TlsClient>, BuildkitError> {
    let Some(files) = files else { return Ok(None) };
    TlsClient::load(files.clone(), alpn)
        .map(Some)
        .map_err(|e| BuildkitError::BadAddress {
            address: whole.to_string(),
            reason: e.to_string(),
        })
}

fn host_port(h: &str, whole: &str) -> Result<String, BuildkitError> {
    let h = h.trim_end_matches('/');
    if h.is_empty() || !h.contains(':') {
        return Err(BuildkitError::BadAddress {
            address: whole.to_string(),
            reason: "a TCP address needs a host and a port, as in `tcp://127.0.0.1:1234`".into(),
        });
    }
    Ok(h.to_string())
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Any byte stream a daemon connection can run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed daemon connection.
pub type BoxIo = Box<dyn Io>;

/// A stream that first yields bytes already read from it (past an HTTP
/// upgrade answer), then reads on from the inner stream.
pub struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        // Which address wins is decided in `cli::builders`; here, parsing.
        let no = &TlsChoice::default();
        let a = Address::parse_buildkit("unix:///run/b.sock", no).unwrap();
        assert_eq!(a, Address::BuildkitUnix("/run/b.sock".into()));
        let a = Address::parse_docker("unix:///d.sock", None).unwrap();
        assert_eq!(a, Address::DockerUnix("/d.sock".into()));
        let a = Address::parse_buildkit("tcp://127.0.0.1:1234", no).unwrap();
        assert_eq!(a, Address::BuildkitTcp("127.0.0.1:1234".into(), None));
        let a = Address::parse_buildkit("docker+unix:///d", no).unwrap();
        assert_eq!(a, Address::DockerUnix("/d".into()));
        assert!(Address::parse_buildkit("ssh://x", no).is_err());
        assert!(Address::parse_buildkit("tcp://nohost", no).is_err());
        // TLS files that cannot be read are an address error naming the file.
        let tls = TlsChoice {
            buildkit: Some(TlsFiles {
                ca: Some("/nonexistent/ca.pem".into()),
                ..Default::default()
            }),
            docker: None,
        };
        let e = Address::parse_buildkit("tcp://127.0.0.1:1234", &tls)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[tokio::test]
    async fn prefixed_reads_prefix_first() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut p = Prefixed {
            prefix: Bytes::from_static(b"abc"),
            inner: a,
        };
        b.write_all(b"def").await.unwrap();
        drop(b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "abcdef");
    }
}
