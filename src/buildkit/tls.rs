//! TLS for builders reached over TCP: a remote buildkitd (`tcp://` with
//! `--tlscacert`, `--tlscert`, `--tlskey`, `--tlsservername` or `--tlsdir`,
//! as buildctl takes them) and a Docker engine (`DOCKER_TLS_VERIFY` with
//! `DOCKER_CERT_PATH`, as the Docker CLI takes them).
//!
//! The server is verified against the given CA (or the system's roots when
//! none is given); a client certificate is presented when one is given, as
//! buildkitd and a `--tlsverify` dockerd require. ALPN offers `h2` to a
//! buildkitd (gRPC servers refuse TLS connections without it) and
//! `http/1.1` to a Docker engine (its API is HTTP/1.1 until the upgrade).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConfig;

pub use crate::tls::TlsFiles;

/// Why a TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is missing or unreadable.
    #[error("cannot read the TLS {what} `{}`: {source}", path.display())]
    Read {
        /// Which file (`CA certificate`, `client certificate`, `client key`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM data.
    #[error("the TLS {what} `{}` holds no {expected} in PEM form", path.display())]
    Empty {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
    },
    /// Only one of certificate and key was given.
    #[error("a TLS client certificate needs its key and the key its certificate: give both (`--tlscert` and `--tlskey`, or cert.pem and key.pem)")]
    HalfPair,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The server name is not a DNS name or IP address.
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
}

impl TlsFiles {
    /// A client configuration offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                let certs = read_certs(ca, "CA certificate")?;
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| TlsError::Config(format!("`{}`: {e}", ca.display())))?;
                }
            }
            None => {
                // The system's roots, as Go's crypto/tls uses them.
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    let _ = roots.add(c);
                }
            }
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "client certificate")?;
                let key = read_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Config(e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsError::HalfPair),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The name to verify for `host_port` (`host:port`, `[v6]:port`).
    pub fn server_name(&self, host_port: &str) -> Result<ServerName<'static>, TlsError> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let host = match host_port.rsplit_once(':') {
                    Some((h, _)) => h,
                    None => host_port,
                };
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string()
            }
        };
        ServerName::try_from(name.clone()).map_err(|_| TlsError::ServerName(name))
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read(path, what)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut data.as_slice())
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "client key";
    let data = read(path, what)?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::Empty {
            what,
            path: path.to_path_buf(),
            expected: "private key",
        })
}

/// A loaded client configuration, compared and shown by its files.
#[derive(Clone)]
pub struct TlsClient {
    /// Where it came from.
    pub files: TlsFiles,
    /// The configuration.
    pub config: Arc<ClientConfig>,
}

impl TlsClient {
    /// Loads `files`, offering `alpn`.
    pub fn load(files: TlsFiles, alpn: &[&[u8]]) -> Result<Self, TlsError> {
        let config = files.client_config(alpn)?;
        Ok(Self { files, config })
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
    }
}

impl Eq for TlsClient {}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_and_file_errors() {
        let t = TlsFiles::default();
        assert_eq!(
            t.server_name("127.0.0.1:1234").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            t.server_name("[::1]:1234").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            t.server_name("buildkit.example:1234").unwrap(),
            ServerName::try_from("buildkit.example").unwrap()
        );
        let named = TlsFiles {
            server_name: Some("bk".into()),
            ..Default::default()
        };
        assert_eq!(
            named.server_name("10.0.0.1:1").unwrap(),
            ServerName::try_from("bk").unwrap()
        );

        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles {
            ca: Some(dir.path().join("nope.pem")),
            ..Default::default()
        };
        let e = missing.client_config(&[]).unwrap_err().to_string();
        assert!(
            e.contains("CA certificate") && e.contains("nope.pem"),
            "{e}"
        );
        std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
        let empty = TlsFiles::from_dir(dir.path());
        let e = empty.client_config(&[]).unwrap_err().to_string();
        assert!(e.contains("holds no certificate"), "{e}");
        let half = TlsFiles {
            cert: Some(dir.path().join("cert.pem")),
            ..Default::default()
        };
        assert!(matches!(half.client_config(&[]), Err(TlsError::HalfPair)));
    }
}
