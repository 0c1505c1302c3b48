//! Talking to image registries (the OCI distribution API): which manifest a
//! registry holds under a name. A leaf module like `engine`: it knows
//! nothing of Compose or BuildKit; the caller brings the credentials.
//!
//! Only what cbuild needs is here: `HEAD /v2/<repo>/manifests/<ref>` with
//! the manifest types a registry must not refuse in `Accept`, its
//! `Docker-Content-Digest`, and the two ways a registry asks for
//! credentials (`WWW-Authenticate: Basic`, and `Bearer` with a token from
//! the realm it names, as distribution's token spec describes). Plain http
//! is used where Docker uses it (see `insecure`): loopback registries, and
//! the ones the caller lists as insecure by name or address range; https
//! (rustls, system roots) everywhere else. One connection per request: a check makes a handful.
//! `upload` adds what a small artifact needs: reading a manifest or blob
//! (checked against its digest), a monolithic blob upload and a manifest
//! PUT (`orchestrate::records` stores build records with them).

mod insecure;
mod reference;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

pub use reference::Reference;
pub use upload::{sha256, Manifest};

/// The manifest types a push can leave under a tag: OCI and Docker, single
/// image and multi-platform index.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The most of a body cbuild reads (error texts, token answers).
const BODY_LIMIT: usize = 1 << 20;

/// A user and password (or token) for a registry; both empty is anonymous.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl Credentials {
    fn basic(&self) -> Option<String> {
        if self.username.is_empty() && self.password.is_empty() {
            return None;
        }
        let raw = format!("{}:{}", self.username, self.password);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
}

/// A registry could not answer the question.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The name is no image reference.
    #[error("`{name}` is not an image reference: {why}")]
    BadReference {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// Nothing answered at the registry's address.
    #[error("cannot reach the registry `{registry}`")]
    Unreachable {
        /// `host[:port]`.
        registry: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The registry did not answer within the deadline.
    #[error("the registry `{registry}` did not answer within {}", crate::timeouts::words(*.after))]
    Timeout {
        /// `host[:port]`.
        registry: String,
        /// The deadline.
        after: Duration,
    },
    /// The registry wants credentials it was not given, or refused them.
    #[error("the registry `{registry}` refused access to `{repository}` (HTTP {status})")]
    Denied {
        /// `host[:port]`.
        registry: String,
        /// The repository.
        repository: String,
        /// 401 or 403.
        status: u16,
    },
    /// Any other answer than the protocol allows.
    #[error("the registry `{registry}` answered {what}")]
    Protocol {
        /// `host[:port]`.
        registry: String,
        /// What it answered.
        what: String,
    },
}

/// A client for registries.
#[derive(Clone, Debug)]
pub struct Registry {
    insecure: insecure::Insecure,
    deadline: Duration,
    tls: Arc<rustls::ClientConfig>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Registry {
    /// A client that also speaks plain http to the `insecure` registries:
    /// `host[:port]` names and CIDR ranges, as the engine's
    /// `insecure-registries` lists them.
    pub fn new(insecure: Vec<String>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| {
                // The ring provider supports the default versions; this
                // stays unreachable, but must not panic.
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        Self {
            insecure: insecure::Insecure::new(&insecure),
            deadline: crate::timeouts::answer_deadline(),
            tls: Arc::new(tls),
        }
    }

    /// The digest of the manifest the registry holds under `r` (tag or
    /// digest), `None` when it holds none.
    pub async fn manifest_digest(
        &self,
        r: &Reference,
        creds: &Credentials,
    ) -> Result<Option<String>, RegistryError> {
        let path = format!("/v2/{}/manifests/{}", r.repository, r.reference);
        let reply = self
            .call(&r.registry, &r.repository, Method::HEAD, &path, None, creds)
            .await?;
        match reply.status {
            StatusCode::OK => {
                let digest = reply
                    .headers
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .filter(|d| d.starts_with("sha256:") || d.starts_with("sha512:"));
                match digest {
                    Some(d) => Ok(Some(d.to_string())),
                    None => Err(self.protocol(r, "a manifest without Docker-Content-Digest")),
                }
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.unexpected(&r.registry, &reply, &format!("HEAD {path}"))),
        }
    }

    /// One request to `repository` on `registry`, answering an
    /// authentication challenge once.
    async fn call(
        &self,
        registry: &str,
        repository: &str,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
        creds: &Credentials,
    ) -> Result<Reply, RegistryError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}://{}{}", self.scheme(registry).await, registry, path)
        };
        let r = Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            reference: String::new(),
        };
        let mut auth: Option<String> = None;
        loop {
            let reply = self
                .send_body(
                    registry,
                    method.clone(),
                    &url,
                    auth.as_deref(),
                    body.as_ref().map(|(k, b)| (*k, b.clone())),
                )
                .await?;
            match reply.status {
                StatusCode::UNAUTHORIZED if auth.is_none() => {
                    let challenge = reply
                        .headers
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    auth = Some(self.answer(&r, &challenge, creds).await?);
                }
                s if s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN => {
                    return Err(RegistryError::Denied {
                        registry: registry.to_string(),
                        repository: repository.to_string(),
                        status: s.as_u16(),
                    })
                }
                _ => return Ok(reply),
            }
        }
    }

    /// The `Authorization` value that answers `challenge`.
    async fn answer(
        &self,
        r: &Reference,
        challenge: &str,
        creds: &Credentials,
    ) -> Result<String, RegistryError> {
        let denied = || RegistryError::Denied {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            status: 401,
        };
        match Challenge::parse(challenge) {
            Some(Challenge::Basic) => creds.basic().ok_or_else(denied),
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", r.repository));
                let mut url = realm.clone();
                url.push(if realm.contains('?') { '&' } else { '?' });
                if let Some(s) = service {
                    url.push_str(&format!("service={}&", encode(&s)));
                }
                url.push_str(&format!("scope={}", encode(&scope)));
                let host = realm_host(&realm).unwrap_or_else(|| r.registry.clone());
                let reply = self
                    .send(&host, Method::GET, &url, creds.basic().as_deref())
                    .await?;
                if reply.status == StatusCode::UNAUTHORIZED || reply.status == StatusCode::FORBIDDEN
                {
                    return Err(denied());
                }
                if reply.status != StatusCode::OK {
                    return Err(self.protocol(
                        r,
                        &format!("HTTP {} from its token service `{realm}`", reply.status),
                    ));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    #[serde(default)]
                    token: String,
                    #[serde(default)]
                    access_token: String,
                }
                let t: Token = serde_json::from_slice(&reply.body)
                    .map_err(|e| self.protocol(r, &format!("a token that is no JSON: {e}")))?;
                let token = if t.token.is_empty() {
                    t.access_token
                } else {
                    t.token
                };
                if token.is_empty() {
                    return Err(self.protocol(r, "an empty token"));
                }
                Ok(format!("Bearer {token}"))
            }
            None => Err(self.protocol(
                r,
                &format!(
                    "HTTP 401 with an authentication challenge cbuild cannot answer: `{challenge}`"
                ),
            )),
        }
    }

    fn unexpected(&self, registry: &str, reply: &Reply, what: &str) -> RegistryError {
        RegistryError::Protocol {
            registry: registry.to_string(),
            what: format!("HTTP {} to {what}", reply.status),
        }
    }

    fn protocol(&self, r: &Reference, what: &str) -> RegistryError {
        RegistryError::Protocol {
            registry: r.registry.clone(),
            what: what.to_string(),
        }
    }

    /// `http` for the insecure registries (loopback ones among them), as
    /// the Docker engine decides; `https` otherwise.
    pub async fn scheme(&self, registry: &str) -> &'static str {
        if self.insecure.contains(registry, self.deadline).await {
            "http"
        } else {
            "https"
        }
    }

    async fn send(
        &self,
        registry: &str,
        method: Method,
        url: &str,
        auth: Option<&str>,
    ) -> Result<Reply, RegistryError> {
        self.send_body(registry, method, url, auth, None).await
    }

    async fn send_body(
        &self,
        registry: &str,
        method: Method,
        url: &str,
        auth: Option<&str>,
        body: Option<(&str, Bytes)>,
    ) -> Result<Reply, RegistryError> {
        let deadline = self.deadline;
        match tokio::time::timeout(deadline, self.send_now(registry, method, url, auth, body)).await
        {
            Ok(r) => r,
            Err(_) => Err(RegistryError::Timeout {
                registry: registry.to_string(),
                after: deadline,
            }),
        }
    }

    async fn send_now(
        &self,
        registry: &str,
        method: Method,
        url: &str,
        auth: Option<&str>,
        body: Option<(&str, Bytes)>,
    ) -> Result<Reply, RegistryError> {
        let bad = |what: String| RegistryError::Protocol {
            registry: registry.to_string(),
            what,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| bad(format!("an address cbuild cannot use, `{url}`: {e}")))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| bad(format!("an address without a host, `{url}`")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| host.clone());
        let unreachable = |source| RegistryError::Unreachable {
            registry: registry.to_string(),
            source,
        };
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(unreachable)?;
        let mut req = Request::builder()
            .method(method)
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(header::HOST, authority)
            .header(header::ACCEPT, ACCEPT)
            .header(
                header::USER_AGENT,
                concat!("cbuild/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let data = match body {
            Some((kind, data)) => {
                req = req.header(header::CONTENT_TYPE, kind);
                data
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(data))
            .map_err(|e| bad(format!("a request cbuild cannot make: {e}")))?;
        if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| bad(format!("a host name TLS cannot check, `{host}`: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(unreachable)?;
            exchange(TokioIo::new(tls), req, registry).await
        } else {
            exchange(TokioIo::new(tcp), req, registry).await
        }
    }
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn exchange<T>(
    io: T,
    req: Request<Full<Bytes>>,
    registry: &str,
) -> Result<Reply, RegistryError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| RegistryError::Unreachable {
        registry: registry.to_string(),
        source: std::io::Error::other(e),
    };
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(failed)?;
    let driver = tokio::spawn(conn);
    let resp = send.send_request(req).await.map_err(failed)?;
    let (parts, mut body) = resp.into_parts();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(failed)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > BODY_LIMIT {
                break;
            }
            out.extend_from_slice(&data);
        }
    }
    driver.abort();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: out.into(),
    })
}

/// What a `WWW-Authenticate` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    fn parse(header: &str) -> Option<Self> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = auth_params(rest);
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    }
}

/// `k="v", k2=v2` (RFC 7235 auth-params; quoted values may hold commas and
/// backslash escapes).
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// The `host[:port]` of a token realm URL.
fn realm_host(realm: &str) -> Option<String> {
    let uri: Uri = realm.parse().ok()?;
    uri.authority().map(|a| a.to_string())
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_and_the_insecure_registries_are_plain_http() {
        let r = Registry::new(vec!["reg.internal:5000".into(), "10.0.0.0/8".into()]);
        for (registry, scheme) in [
            ("127.0.0.1:5000", "http"),
            ("127.3.2.1", "http"),
            ("localhost:5001", "http"),
            ("[::1]:5000", "http"),
            ("reg.internal:5000", "http"),
            ("10.20.30.40:5000", "http"),
            ("reg.internal:5001", "https"),
            ("registry-1.docker.io", "https"),
            ("128.0.0.1:5000", "https"),
            ("11.0.0.1:5000", "https"),
        ] {
            assert_eq!(r.scheme(registry).await, scheme, "{registry}");
        }
    }

    #[test]
    fn challenges_are_read_as_distribution_writes_them() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse("bearer realm=https://r/t"),
            Some(Challenge::Bearer {
                realm: "https://r/t".into(),
                service: None,
                scope: None
            })
        );
        // A bearer challenge without a realm names nowhere to ask.
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(
            realm_host("https://auth.example:8443/token").as_deref(),
            Some("auth.example:8443")
        );
    }

    #[test]
    fn anonymous_credentials_send_no_header() {
        assert_eq!(Credentials::default().basic(), None);
        assert_eq!(user_and_password().basic().as_deref(), Some("Basic dTpw"));
    }

    /// A loopback HTTP server that takes `n` connections of one request
    /// each and answers each with what `reply` makes of the request (its
    /// head, lower-cased: header names are case-insensitive); the task
    /// yields the requests it saw. Its address is given to `reply` too,
    /// for answers that point back at it.
    async fn serve(
        n: usize,
        reply: impl Fn(&str, &str) -> String + Send + 'static,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let own = addr.clone();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (mut s, _) = listener.accept().await.unwrap();
                // The requests here have no body: the head ends the request.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let got = s.read(&mut buf).await.unwrap();
                    assert!(got > 0, "the client closed mid-request");
                    head.extend_from_slice(&buf[..got]);
                }
                let req = String::from_utf8_lossy(&head).to_lowercase();
                s.write_all(reply(&own, &req).as_bytes()).await.unwrap();
                seen.push(req);
            }
            seen
        });
        (addr, server)
    }

    fn user_and_password() -> Credentials {
        Credentials {
            username: "u".into(),
            password: "p".into(),
        }
    }

    /// The digest of `a/b:v1` on the registry at `addr`, asked with `u:p`.
    async fn digest_of_a_b(addr: &str) -> Option<String> {
        let r = Reference::parse(&format!("{addr}/a/b:v1")).unwrap();
        Registry::default()
            .manifest_digest(&r, &user_and_password())
            .await
            .unwrap()
    }

    /// A registry that answers HEAD with a challenge, then a digest: the
    /// Basic flow end to end (the real registries are exercised by the
    /// integration tests).
    #[tokio::test]
    async fn basic_challenge_is_answered_with_the_credentials() {
        let (addr, server) = serve(2, |_, req| {
            if req.contains("authorization: basic dtpw") {
                "HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:abc\r\nContent-Length: 0\r\n\r\n"
            } else {
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\n\r\n"
            }
            .to_string()
        })
        .await;
        assert_eq!(digest_of_a_b(&addr).await.as_deref(), Some("sha256:abc"));
        let seen = server.await.unwrap();
        assert!(
            seen[0].starts_with("head /v2/a/b/manifests/v1 "),
            "{}",
            seen[0]
        );
    }

    /// A registry that wants a bearer token from its realm, served by the
    /// same socket: the token is fetched with the credentials and the
    /// scope the challenge names, then sent as `Bearer`.
    #[tokio::test]
    async fn bearer_challenge_fetches_a_token_from_the_realm() {
        let (addr, server) = serve(3, |addr, req| {
            if req.starts_with("get /token?") {
                let body = r#"{"token":"tok"}"#;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            } else if req.contains("authorization: bearer tok") {
                "HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:def\r\nContent-Length: 0\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"reg\",scope=\"repository:a/b:pull\"\r\nContent-Length: 0\r\n\r\n")
            }
        })
        .await;
        assert_eq!(digest_of_a_b(&addr).await.as_deref(), Some("sha256:def"));
        let seen = server.await.unwrap();
        assert!(
            seen[1].starts_with("get /token?service=reg&scope=repository%3aa%2fb%3apull "),
            "{}",
            seen[1]
        );
        assert!(seen[1].contains("authorization: basic dtpw"), "{}", seen[1]);
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable_naming_the_registry() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let r = Reference::parse(&format!("{addr}/app")).unwrap();
        let e = Registry::default()
            .manifest_digest(&r, &Credentials::default())
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::Unreachable { .. }), "{e:?}");
        assert!(e.to_string().contains(&addr), "{e}");
    }
}
