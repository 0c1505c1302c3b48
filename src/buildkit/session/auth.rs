//! The Auth service: registry credentials for pulls the daemon makes on the
//! user's behalf (`FROM`, cache imports), read from the Docker CLI's
//! `config.json` (`$DOCKER_CONFIG` or `~/.docker`): `auths` entries and
//! credential helpers (`credsStore`, `credHelpers`).
//!
//! Only `Credentials` is implemented. `GetTokenAuthority` answers
//! `Unimplemented`, which makes the daemon fall back to `Credentials` and
//! fetch tokens itself (moby/buildkit `session/auth/auth.go`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
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

/// How long a credential helper may take. Generous, because a helper may
/// wait for the user (a keychain to unlock, a GPG pinentry); bounded,
/// because the daemon's pull waits on the answer.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves registry credentials from the Docker CLI configuration.
#[derive(Debug)]
pub struct AuthService {
    config: Option<PathBuf>,
    /// Where helpers are looked up instead of `PATH` (tests).
    helper_path: Option<OsString>,
    helper_timeout: Duration,
}

impl Default for AuthService {
    fn default() -> Self {
        Self {
            config: None,
            helper_path: None,
            helper_timeout: HELPER_TIMEOUT,
        }
    }
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
            ..Self::default()
        }
    }

    /// The user and secret for registry `host` (`host[:port]`, Docker Hub
    /// as `registry-1.docker.io`), as the daemon gets them: both empty when
    /// the configuration has none. The one reader of the Docker CLI's
    /// credentials, also for pushes and registry checks cbuild makes itself.
    pub async fn lookup(&self, host: &str) -> Result<(String, String), String> {
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
            if let Some(found) = self.run_helper(helper, key).await? {
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

impl AuthService {
    /// Asks `docker-credential-<helper> get` for `server`'s credentials, as
    /// a child process the runtime waits on (a gRPC handler must not block
    /// its thread), within the helper deadline.
    async fn run_helper(
        &self,
        helper: &str,
        server: &str,
    ) -> Result<Option<(String, String)>, String> {
        let prog = format!("docker-credential-{helper}");
        let mut cmd = Command::new(&prog);
        cmd.arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // A helper that overstays its deadline is not left running.
            .kill_on_drop(true);
        if let Some(path) = &self.helper_path {
            cmd.env("PATH", path);
        }
        let Ok(mut child) = cmd.spawn() else {
            // A configured helper that is not installed: behave like the CLI
            // and go on anonymously.
            return Ok(None);
        };
        let stdin = child.stdin.take();
        let ask = async move {
            if let Some(mut stdin) = stdin {
                // A helper that exits without reading is judged by its answer.
                let _ = stdin.write_all(server.as_bytes()).await;
            }
            child.wait_with_output().await
        };
        let out = match tokio::time::timeout(self.helper_timeout, ask).await {
            Ok(out) => out.map_err(|e| format!("`{prog} get` failed: {e}"))?,
            Err(_) => {
                return Err(format!(
                    "the credential helper `{prog} get` did not answer within {} for `{server}`; \
                     check that it works (`echo {server} | {prog} get`) or remove it from the \
                     Docker config",
                    crate::timeouts::words(self.helper_timeout)
                ))
            }
        };
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
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let (username, secret) = self.lookup(&host).await.map_err(Status::internal)?;
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
        let service = AuthService {
            config: Some(path),
            ..Default::default()
        };
        (dir, service)
    }

    #[tokio::test]
    async fn reads_auths_and_maps_docker_hub() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let (_d, s) = service_with(&format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"reg.example:5000":{{"identitytoken":"tok"}}}}}}"#
        ));
        assert_eq!(
            s.lookup(HUB_HOST).await.unwrap(),
            ("alice".to_string(), "s3cret".to_string())
        );
        assert_eq!(
            s.lookup("reg.example:5000").await.unwrap(),
            (String::new(), "tok".to_string())
        );
        assert_eq!(s.lookup("other").await.unwrap(), Default::default());
    }

    #[tokio::test]
    async fn bad_config_is_an_error_naming_the_file() {
        let (_d, s) = service_with("{not json");
        let err = s.lookup("x").await.unwrap_err();
        assert!(err.contains("config.json"), "{err}");
    }

    /// A config using helper `fake` for `reg.example`, with
    /// `docker-credential-fake` running `script` (our own fixture, found
    /// through the service's helper path).
    fn service_with_helper(script: &str, timeout: Duration) -> (tempfile::TempDir, AuthService) {
        use std::os::unix::fs::PermissionsExt;
        let (dir, mut s) = service_with(r#"{"credHelpers":{"reg.example":"fake"}}"#);
        let bin = dir.path().join("docker-credential-fake");
        std::fs::write(&bin, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        s.helper_path = Some(
            std::env::join_paths(std::iter::once(dir.path().to_path_buf()).chain(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
            ))
            .unwrap(),
        );
        s.helper_timeout = timeout;
        (dir, s)
    }

    const ANSWER: &str = r#"read server; echo "{\"ServerURL\":\"$server\",\"Username\":\"bob\",\"Secret\":\"pw-for-$server\"}""#;

    #[tokio::test]
    async fn a_helper_answers_for_its_registry() {
        let (_d, s) = service_with_helper(ANSWER, HELPER_TIMEOUT);
        assert_eq!(
            s.lookup("reg.example").await.unwrap(),
            ("bob".to_string(), "pw-for-reg.example".to_string())
        );
    }

    /// While a helper runs, the runtime's only thread keeps serving other
    /// tasks (on a blocking call, the helper's answer would come first).
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_helper_does_not_block_the_runtime() {
        let (_d, s) = service_with_helper(&format!("sleep 3\n{ANSWER}"), HELPER_TIMEOUT);
        let lookup = s.lookup("reg.example");
        tokio::pin!(lookup);
        tokio::select! {
            biased;
            _ = &mut lookup => panic!("the helper's answer came before a 100 ms timer"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        assert_eq!(lookup.await.unwrap().0, "bob");
    }

    #[tokio::test]
    async fn a_helper_that_never_answers_is_an_error_naming_it() {
        let (_d, s) = service_with_helper("exec sleep 600", Duration::from_millis(500));
        let err = s.lookup("reg.example").await.unwrap_err();
        assert!(err.contains("docker-credential-fake get"), "{err}");
        assert!(err.contains("did not answer within 0.5s"), "{err}");
        assert!(err.contains("reg.example"), "{err}");
    }
}
