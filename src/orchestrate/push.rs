//! Pushing built images, and whether a registry already holds them.
//!
//! Who pushes is decided in [`super::export`]: the exporter (`push=true`)
//! where the builder can, else the Docker engine after the build, through
//! its API, as buildx does for the graph-driver image store
//! (`pushWithMoby`). Either way the manifest digest pushed under each name
//! is recorded with the build ([`super::fresh`]); a later `--push` skips the
//! service only if the local image is up to date *and* the registry still
//! holds exactly that digest under every name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::buildkit::session::auth::AuthService;
use crate::engine::{Engine, EngineError, RegistryAuth};
use crate::registry::{Credentials, Reference, Registry};

use super::plan::ServiceBuild;

/// Pushes and registry checks, with the Docker CLI's credentials.
#[derive(Clone)]
pub struct Pusher {
    registry: Registry,
    auth: Arc<AuthService>,
}

/// A push that did not happen, said for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushError {
    /// What failed, naming the image and the registry.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl Pusher {
    /// Credentials from `$DOCKER_CONFIG` (or `~/.docker`), as for the
    /// session's Auth service; plain http to the registries `engine` was
    /// told are insecure, as the engine does.
    pub async fn for_engine(engine: Option<&Engine>) -> Self {
        let insecure = match engine {
            Some(e) => e.insecure_registries().await.unwrap_or_default(),
            None => Vec::new(),
        };
        Self {
            registry: Registry::new(insecure),
            auth: Arc::new(AuthService::from_env()),
        }
    }

    /// The registry client.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Docker CLI's credentials for `registry`.
    pub async fn credentials(&self, registry: &str) -> Result<Credentials, String> {
        let (username, password) = self.auth.lookup(registry).await?;
        Ok(Credentials { username, password })
    }

    /// `Ok` when the registry holds `pushed[name]` under every name `b`
    /// tags; else why not, in words (a registry that cannot be asked
    /// counts as not holding it: the push then says what is wrong).
    pub async fn held(
        &self,
        b: &ServiceBuild,
        pushed: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        for name in b.tagged_names() {
            let Some(recorded) = pushed.get(&name) else {
                return Err(format!("`{name}` was not pushed since it was built"));
            };
            let r = Reference::parse(&name).map_err(|e| e.to_string())?;
            let creds = self.credentials(&r.registry).await?;
            match self.registry.manifest_digest(&r, &creds).await {
                Ok(Some(d)) if d == *recorded => {}
                Ok(Some(_)) => {
                    return Err(format!(
                        "the registry `{}` holds another image under `{name}`",
                        r.registry
                    ))
                }
                Ok(None) => return Err(format!("the registry `{}` has no `{name}`", r.registry)),
                Err(e) => return Err(format!("cannot check `{name}`: {}", chain(&e))),
            }
        }
        Ok(())
    }

    /// Pushes every name `b` tags through `engine`; the digest pushed
    /// under each. Stops at the first failure.
    pub async fn through_engine(
        &self,
        engine: &Engine,
        b: &ServiceBuild,
    ) -> Result<BTreeMap<String, String>, PushError> {
        let mut out = BTreeMap::new();
        for name in b.tagged_names() {
            let r = Reference::parse(&name).map_err(|e| PushError {
                message: e.to_string(),
                hint: "give the service an `image:` a registry accepts (`REGISTRY/REPO:TAG`)"
                    .into(),
            })?;
            let auth = self.engine_auth(&r.registry).await?;
            match engine.push(&name, &auth).await {
                Ok(d) => {
                    out.insert(name, d);
                }
                Err(e) => return Err(refusal(&name, &r.registry, &engine_message(&e))),
            }
        }
        Ok(out)
    }
}

impl Pusher {
    /// The credentials an engine push to `registry` sends, from the one
    /// reader of the Docker configuration.
    async fn engine_auth(&self, registry: &str) -> Result<RegistryAuth, PushError> {
        let (username, password) = self.auth.lookup(registry).await.map_err(|e| PushError {
            message: format!("cannot read the credentials for `{registry}`: {e}"),
            hint: "fix the Docker configuration (`$DOCKER_CONFIG/config.json`)".into(),
        })?;
        Ok(RegistryAuth {
            username,
            password,
            server: registry.to_string(),
        })
    }

    /// Pushes the image `image_id` that `engine` holds as `target` (a pool
    /// hand-off, see `super::pool`), and returns the manifest digest the
    /// registry now holds. The name is given for the push only: it is
    /// removed again, so the engine keeps the names it had.
    pub async fn hand_off(
        &self,
        engine: &Engine,
        image_id: &str,
        target: &str,
    ) -> Result<String, PushError> {
        let r = Reference::parse(target).map_err(|e| PushError {
            message: e.to_string(),
            hint: "give `--pool-registry` as `HOST[:PORT][/PREFIX]`".into(),
        })?;
        let auth = self.engine_auth(&r.registry).await?;
        if let Err(e) = engine.tag(image_id, target).await {
            return Err(PushError {
                message: format!(
                    "cannot name the image `{image_id}` `{target}` for the push: {}",
                    chain(&e)
                ),
                hint: "check the Docker engine at DOCKER_HOST (`cbuild doctor`)".into(),
            });
        }
        let pushed = engine.push(target, &auth).await;
        if let Err(e) = engine.untag(target).await {
            tracing::warn!("cannot remove the hand-off name `{target}` again: {e}");
        }
        pushed.map_err(|e| refusal(target, &r.registry, &engine_message(&e)))
    }
}

fn engine_message(e: &EngineError) -> String {
    match e {
        EngineError::Push {
            address, message, ..
        } => format!("{message} (pushed by the Docker engine at `{address}`)"),
        e => chain(e),
    }
}

/// A failed push of `name` to `registry`, with what to do, judged from
/// the message of whoever tried (the engine or BuildKit).
pub fn refusal(name: &str, registry: &str, message: &str) -> PushError {
    let m = message.to_ascii_lowercase();
    // A digest in the message (`blobs/sha256:…e403a…`) must not read as a
    // status code: codes are looked for as whole numbers only.
    let status = |code: &str| {
        m.match_indices(code).any(|(i, _)| {
            let before = m[..i].chars().next_back();
            let after = m[i + code.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    };
    // A connection that never happened says so plainly; it is judged first,
    // since such messages carry URLs and digests.
    let hint = if m.contains("connection refused")
        || m.contains("no such host")
        || m.contains("dial tcp")
        || m.contains("connection reset")
        || m.contains("eof")
        || m.contains("timeout")
        || m.contains("unreachable")
    {
        format!(
            "check that the registry `{registry}` is running and reachable from the builder, then run the push again; nothing was recorded as pushed"
        )
    } else if status("401")
        || m.contains("unauthorized")
        || m.contains("authentication required")
        || m.contains("no basic auth credentials")
        || status("403")
        || m.contains("denied")
    {
        format!(
            "log in to the registry (`docker login {registry}`): cbuild passes the credentials of the Docker configuration (`$DOCKER_CONFIG/config.json` and its credential helpers); then run the push again"
        )
    } else {
        "run the push again; nothing was recorded as pushed".to_string()
    };
    PushError {
        message: format!("cannot push `{name}` to the registry `{registry}`: {message}"),
        hint,
    }
}

/// The push error in a failed solve whose exporter pushed, if it is one:
/// BuildKit says `failed to push NAME: …`. A failure to pull from the same
/// registry (a base image) is no push error, so the registry alone does
/// not decide.
pub fn solve_refusal(b: &ServiceBuild, message: &str) -> Option<PushError> {
    if !message.contains("failed to push") {
        return None;
    }
    let names = b.tagged_names();
    let name = names
        .iter()
        .find(|n| message.contains(&format!("push {n}")))
        .or(names.first())?;
    let registry = Reference::parse(name).ok()?.registry;
    Some(refusal(name, &registry, message))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// What `cbuild push` did with one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Pushed: the digest under each name.
    Now(BTreeMap<String, String>),
    /// The registry already holds the current image under every name.
    AlreadyThere,
    /// Not pushed, and why (no `image:`, the same image as another service).
    Skipped(String),
    /// Refused or failed.
    Failed(PushError),
}

/// `cbuild push`: pushes the current images of `builds` (planned with
/// `push`) from `engine`, one service after another. Only an image cbuild
/// knows to be up to date with its source is pushed: compose pushes
/// whatever the engine holds, but a stale image in a registry is exactly
/// what content truth rules out, so such a service is refused with the
/// command that builds and pushes it.
pub async fn push_services(
    builds: &[ServiceBuild],
    engine: &Engine,
    pusher: &Pusher,
) -> Vec<(String, Pushed)> {
    let mut out = Vec::new();
    for b in builds {
        let result = if !b.push {
            Pushed::Skipped("it has no `image:` to push to".into())
        } else if let Some(first) = &b.same_as {
            Pushed::Skipped(format!("the same image as `{first}`"))
        } else {
            match super::fresh::check(b, engine).await {
                super::fresh::Freshness::UpToDate { .. } => {
                    match pusher.held(b, &super::fresh::pushed(b)).await {
                        Ok(()) => Pushed::AlreadyThere,
                        Err(why) => {
                            tracing::info!(service = %b.service, "to push: {why}");
                            match pusher.through_engine(engine, b).await {
                                Ok(m) => {
                                    if let Err(e) = super::fresh::add_pushed(b, m.clone()) {
                                        tracing::warn!(
                                            "cannot record the push of `{}`: {e}",
                                            b.service
                                        );
                                    }
                                    Pushed::Now(m)
                                }
                                Err(e) => Pushed::Failed(e),
                            }
                        }
                    }
                }
                super::fresh::Freshness::Stale(why) => Pushed::Failed(stale(b, &why)),
                super::fresh::Freshness::NotBuilt => Pushed::Failed(stale(
                    b,
                    "cbuild has no record of building it from its current source",
                )),
            }
        };
        out.push((b.service.clone(), result));
    }
    out
}

fn stale(b: &ServiceBuild, why: &str) -> PushError {
    PushError {
        message: format!(
            "not pushing `{}` of service `{}`: it may not match its source ({why})",
            b.image, b.service
        ),
        hint: format!(
            "build and push it in one step: `cbuild build --push {}`",
            b.service
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_not_a_status_code() {
        let m = "failed to do request: Head \"https://127.0.0.1:35409/v2/app/blobs/sha256:6c9501ada8cbda1e1b577f46a4def54e403ae7c12358afdec6b465230a03a8ed\": dial tcp 127.0.0.1:35409: connect: connection refused";
        assert!(refusal("r/app:v1", "127.0.0.1:35409", m)
            .hint
            .contains("reachable"));
        let m = "unexpected status from HEAD request to https://r/v2/app/manifests/sha256:401fe: 401 Unauthorized";
        assert!(refusal("r/app:v1", "r", m).hint.contains("docker login r"));
        let m = "server message: insufficient_scope: 403 forbidden";
        assert!(refusal("r/app:v1", "r", m).hint.contains("docker login r"));
        let m = "blob sha256:e403ae7c upload failed: 500 internal";
        assert!(!refusal("r/app:v1", "r", m).hint.contains("docker login"));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let e = refusal(
            "127.0.0.1:5001/app:v1",
            "127.0.0.1:5001",
            "failed to authorize: 401 Unauthorized",
        );
        assert!(
            e.message.contains("`127.0.0.1:5001/app:v1`"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("registry `127.0.0.1:5001`"),
            "{}",
            e.message
        );
        assert!(e.hint.contains("docker login 127.0.0.1:5001"), "{}", e.hint);
        let e = refusal(
            "127.0.0.1:9/app",
            "127.0.0.1:9",
            "dial tcp 127.0.0.1:9: connect: connection refused",
        );
        assert!(e.hint.contains("is running and reachable"), "{}", e.hint);
    }

    #[test]
    fn only_a_failed_push_is_a_push_error() {
        let mut b = ServiceBuild {
            service: "app".into(),
            image: "reg:5000/app:v1".into(),
            solve: Default::default(),
            session: Default::default(),
            tracked: Vec::new(),
            deps: Vec::new(),
            same_as: None,
            bases: Vec::new(),
            force: false,
            record: None,
            push: true,
            remote_records: false,
            platforms: Default::default(),
            attests: Vec::new(),
        };
        b.solve.exporters.push(crate::buildkit::ExporterSpec {
            kind: "image".into(),
            attrs: [(
                "name".to_string(),
                "reg:5000/app:v1,reg:5000/app:x".to_string(),
            )]
            .into(),
        });
        let e = solve_refusal(
            &b,
            "failed to push reg:5000/app:x: unexpected status: 401 Unauthorized",
        )
        .unwrap();
        assert!(e.message.contains("`reg:5000/app:x`"), "{}", e.message);
        assert!(e.hint.contains("docker login reg:5000"), "{}", e.hint);
        // A base image that cannot be pulled from the same registry.
        assert_eq!(
            solve_refusal(&b, "reg:5000/base: failed to resolve source metadata: 401"),
            None
        );
    }
}
