//! The certificate files of a TLS connection, as the user names them.
//!
//! Below both `buildkit` (which loads them into a rustls client) and
//! `engine` (which hands them to bollard), so the engine needs nothing of
//! the BuildKit client.

use std::path::{Path, PathBuf};

/// The certificate files for a TLS connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), with `cert`.
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of
    /// the address).
    pub server_name: Option<String>,
}

impl TlsFiles {
    /// The files of a directory laid out as buildctl's `--tlsdir` and
    /// Docker's `DOCKER_CERT_PATH`: `ca.pem`, `cert.pem` and `key.pem`
    /// (each only if present).
    pub fn from_dir(dir: &Path) -> Self {
        let file = |name: &str| Some(dir.join(name)).filter(|p| p.exists());
        Self {
            ca: file("ca.pem"),
            cert: file("cert.pem"),
            key: file("key.pem"),
            server_name: None,
        }
    }

    /// Whether any file or name is set.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some() || self.server_name.is_some()
    }
}
