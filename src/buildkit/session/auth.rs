//! The Auth service: registry credentials for pulls the daemon makes on the
//! user's behalf (`FROM`, cache imports), read from the Docker CLI's
//! `config.json` (`$DOCKER_CONFIG` or `~/.docker`): `auths` entries and
//! credential helpers (`credsStore`, `credHelpers`).
//!
//! Only `Credentials` is implemented. `GetTokenAuthority` answers
//! `Unimplemented`, which makes the daemon fall back to `Credentials` and
//! fetch tokens itself (moby/buildkit `session/auth/auth.go`).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use tonic::{Request, Response, Status};

use crate::buildkit::proto::moby::filesync::v1::{
    auth_server::Auth, CredentialsRequest, CredentialsResponse, FetchTokenRequest,
    FetchTokenResponse, GetTokenAuthorityRequest, GetTokenAuthorityResponse,
    VerifyTokenAuthorityRequest, VerifyTokenAuthorityResponse,
};

/// Docker Hub's registry host as the daemon names it, and the key the Docker
/// CLI stores its credentials under.
const HUB_HOST: &str = "registry-1.docker.io";
const HUB_KEY: &str = "https://index.docker.io/v1/";

/// Serves registry credentials from the Docker CLI configuration.
#[derive(Debug, Default)]
pub struct AuthService {
    config: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

impl AuthService {
    /// Uses `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        Self {
            config: dir.map(|d| d.join("config.json")),
        }
    }

    fn lookup(&self, host: &str) -> Result<(String, String), String> {
        let Some(path) = &self.config else {
            return Ok(Default::default());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(_) => return Ok(Default::default()),
        };
        let cfg: ConfigFile = serde_json::from_str(&text)
            .map_err(|e| format!("cannot parse `{}`: {e}", path.display()))?;
        let key = if host == HUB_HOST { HUB_KEY } else { host };
        if let Some(helper) = cfg
            .cred_helpers
            .get(key)
            .or(cfg.cred_helpers.get(host))
            .or(cfg.creds_store.as_ref())
        {
            if let Some(found) = run_helper(helper, key)? {
                return Ok(found);
            }
        }
        let entry = cfg
            .auths
            .iter()
            .find(|(k, _)| normalize(k) == normalize(key))
            .map(|(_, v)| v);
        let Some(entry) = entry else {
            return Ok(Default::default());
        };
        if let Some(token) = entry.identity_token.as_deref().filter(|t| !t.is_empty()) {
            return Ok((String::new(), token.to_string()));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("bad `auth` for `{key}` in `{}`: {e}", path.display()))?;
            let raw = String::from_utf8_lossy(&raw).to_string();
            let (u, p) = raw.split_once(':').unwrap_or((raw.as_str(), ""));
            return Ok((u.to_string(), p.to_string()));
        }
        Ok((
            entry.username.clone().unwrap_or_default(),
            entry.password.clone().unwrap_or_default(),
        ))
    }
}

/// `https://host/v1/` → `host`, as the Docker CLI compares registry keys.
fn normalize(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn run_helper(helper: &str, server: &str) -> Result<Option<(String, String)>, String> {
    let prog = format!("docker-credential-{helper}");
    let child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        // A configured helper that is not installed: behave like the CLI and
        // go on anonymously.
        return Ok(None);
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("`{prog} get` failed: {e}"))?;
    if !out.status.success() {
        return Ok(None);
    }
    let ans: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("`{prog} get` answered something unexpected: {e}"))?;
    if ans.username == "<token>" {
        return Ok(Some((String::new(), ans.secret)));
    }
    Ok(Some((ans.username, ans.secret)))
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let (username, secret) = self.lookup(&host).map_err(Status::internal)?;
        Ok(Response::new(CredentialsResponse { username, secret }))
    }

    async fn fetch_token(
        &self,
        _: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented(
            "cbuild does not fetch registry tokens",
        ))
    }

    async fn get_token_authority(
        &self,
        _: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_with(config: &str) -> (tempfile::TempDir, AuthService) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, config).unwrap();
        (dir, AuthService { config: Some(path) })
    }

    #[test]
    fn reads_auths_and_maps_docker_hub() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let (_d, s) = service_with(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"reg.example:5000":{{"identitytoken":"tok"}}}}}}"#
        ));
        assert_eq!(
            s.lookup(HUB_HOST).unwrap(),
            ("alice".to_string(), "s3cret".to_string())
        );
        assert_eq!(
            s.lookup("reg.example:5000").unwrap(),
            (String::new(), "tok".to_string())
        );
        assert_eq!(s.lookup("other").unwrap(), Default::default());
    }

    #[test]
    fn bad_config_is_an_error_naming_the_file() {
        let (_d, s) = service_with("{not json");
        let err = s.lookup("x").unwrap_err();
        assert!(err.contains("config.json"), "{err}");
    }
}
