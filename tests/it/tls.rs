//! Builders over TCP with TLS, against the real engine.
//!
//! The engine listens on a unix socket only, so each test puts a TLS
//! endpoint in front of it, as stunnel would: a listener on 127.0.0.1 that
//! requires a client certificate from the test's CA and forwards the
//! decrypted bytes to the engine's socket. In "buildkitd" mode it first
//! makes the engine's `POST /grpc` upgrade, so what answers on the TLS
//! side is BuildKit's gRPC API itself, as a remote buildkitd serves it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{docker_host, run_in, stderr, Project};

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in `dir` (`ca.pem`, `cert.pem`, `key.pem`: the client's, as
/// `DOCKER_CERT_PATH` and `--tlsdir` want them).
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivatePkcs8KeyDer<'static>,
    ca: CertificateDer<'static>,
}

pub(crate) fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cbuild test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    server_params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "cbuild test client");
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), client.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), client_key.serialize_pem()).unwrap();
    Pki {
        dir,
        server_chain: vec![server.der().clone()],
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        ca: ca.der().clone(),
    }
}

impl Pki {
    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// An endpoint in front of the engine; stops with the runtime.
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

pub(crate) fn endpoint(pki: &Pki, buildkitd: bool) -> Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            pki.server_chain.clone(),
            PrivateKeyDer::Pkcs8(pki.server_key.clone_key()),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let socket = PathBuf::from(
        docker_host()
            .strip_prefix("unix://")
            .expect("the test engine is on a unix socket"),
    );
    proxy_to_engine(socket, Some(acceptor), buildkitd)
}

/// A TCP endpoint on loopback in front of the engine at `socket`, over TLS
/// when `tls` is given. With `buildkitd`, each connection first makes the
/// engine's `POST /grpc` upgrade, so what answers is BuildKit's own gRPC API
/// as a standalone buildkitd serves it; without, the engine's API.
pub(crate) fn proxy_to_engine(
    socket: PathBuf,
    tls: Option<tokio_rustls::TlsAcceptor>,
    buildkitd: bool,
) -> Endpoint {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            let socket = socket.clone();
            tokio::spawn(async move {
                let connect = || async {
                    let mut engine = tokio::net::UnixStream::connect(&socket).await.ok()?;
                    if buildkitd && upgrade_to_grpc(&mut engine).await.is_err() {
                        return None;
                    }
                    Some(engine)
                };
                match tls {
                    Some(acceptor) => {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        if let Some(mut engine) = connect().await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                        }
                    }
                    None => {
                        if let Some(mut engine) = connect().await {
                            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut engine).await;
                        }
                    }
                }
            });
        }
    });
    Endpoint { addr, _rt: rt }
}

/// `POST /grpc` with `Upgrade: h2c`, reading the answer's header byte by
/// byte so nothing after it is taken: what follows is BuildKit's own gRPC
/// API, as a standalone buildkitd serves it ("buildkitd mode").
pub(crate) async fn upgrade_to_grpc(engine: &mut tokio::net::UnixStream) -> std::io::Result<()> {
    engine
        .write_all(
            b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        )
        .await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if engine.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&head).into_owned(),
        ));
    }
    Ok(())
}

fn project() -> Project {
    let p = Project::new("tls");
    p.file("compose.yaml", "services:\n  app:\n    build: .\n")
        .file(
            "Dockerfile",
            "FROM cbuild-base\nCOPY hello.txt /hello.txt\n",
        )
        .file("hello.txt", "over TLS\n");
    p
}

/// `cbuild --builder BUILDER` with a CA, a client certificate and its key.
fn build_with_client_cert(
    p: &Project,
    builder: &str,
    ca: &str,
    cert: &str,
    key: &str,
) -> std::process::Output {
    p.cbuild(&[
        "--builder",
        builder,
        "--tlscacert",
        ca,
        "--tlscert",
        cert,
        "--tlskey",
        key,
        "build",
    ])
}

fn cert_path(p: &Path) -> String {
    p.display().to_string()
}

/// `DOCKER_HOST=tcp://…` with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`,
/// as the Docker CLI takes them: the build, the image look-ups and the
/// "up to date" check all go over TLS.
#[test]
fn a_docker_engine_over_tls() {
    let pki = pki();
    let ep = endpoint(&pki, false);
    let p = project();
    let host = format!("tcp://{}", ep.addr);
    let certs = cert_path(pki.dir.path());
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs.as_str()),
    ];
    let out = p.cbuild_env(&["--progress", "json", "build"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_in(&p.image("app"), "cat /hello.txt"), "over TLS\n");
    // Skipping needs the engine's image store: reached over TLS too.
    let out = p.cbuild_env(&["--progress", "json", "build"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"up_to_date\":true"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `--builder tcp://…` with buildctl's TLS flags: gRPC over TLS (ALPN h2)
/// straight to BuildKit, the session carried inside `Control.Session`.
#[test]
fn a_buildkitd_over_tls() {
    let pki = pki();
    let ep = endpoint(&pki, true);
    let p = project();
    let builder = format!("tcp://{}", ep.addr);
    let (ca, cert, key) = (
        pki.path("ca.pem"),
        pki.path("cert.pem"),
        pki.path("key.pem"),
    );
    let out = build_with_client_cert(&p, &builder, &ca, &cert, &key);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_in(&p.image("app"), "cat /hello.txt"), "over TLS\n");
    // `--tlsdir` names the same three files.
    p.file("hello.txt", "again\n");
    let dir = cert_path(pki.dir.path());
    let out = p.cbuild(&["--builder", &builder, "--tlsdir", &dir, "build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(run_in(&p.image("app"), "cat /hello.txt"), "again\n");
}

/// A certificate from another CA, no client certificate, or a missing file:
/// each a one-line error that says what is wrong, and nothing is built.
#[test]
fn tls_failures_are_clear() {
    let pki = pki();
    let other = self::pki();
    let ep = endpoint(&pki, true);
    let p = project();
    let builder = format!("tcp://{}", ep.addr);

    let wrong_ca = other.path("ca.pem");
    let (cert, key) = (pki.path("cert.pem"), pki.path("key.pem"));
    let out = build_with_client_cert(&p, &builder, &wrong_ca, &cert, &key);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&builder) && err.contains("TLS handshake failed"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("Error {"),
        "{err}"
    );

    // No client certificate: the endpoint ends the connection after the
    // handshake (with an alert cbuild may or may not read first), and the
    // error says where and what to give.
    let ca = pki.path("ca.pem");
    let out = p.cbuild(&["--builder", &builder, "--tlscacert", &ca, "build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&builder) && err.contains("--tlscert"), "{err}");

    let missing = pki.dir.path().join("nope.pem").display().to_string();
    let out = build_with_client_cert(&p, &builder, &ca, &cert, &missing);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("client key") && err.contains("nope.pem"),
        "{err}"
    );

    let out = crate::common::docker(&["image", "inspect", &p.image("app")]);
    assert!(!out.status.success(), "nothing was built");
}
