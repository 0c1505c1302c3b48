//! The Docker Engine's REST API, through bollard: version, storage driver,
//! and image look-ups. A leaf module: it knows nothing of Compose or BuildKit
//! (it uses only the shared TLS file names and deadline below it).

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::Docker;

mod container;
pub use container::{ExecOutput, Recreated, ServiceContainer};

/// Something went wrong talking to the Docker Engine API.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The address is not one cbuild can use.
    #[error("unsupported DOCKER_HOST `{0}` (use unix:///path or tcp://host:port)")]
    BadAddress(String),
    /// The engine accepted the connection but did not answer in time.
    #[error("the Docker engine at `{address}` did not answer within {}", crate::timeouts::words(*.after))]
    Timeout {
        /// Where.
        address: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The engine refused an image it was sent.
    #[error("the Docker engine at `{address}` could not load the image")]
    Load {
        /// Where.
        address: String,
        /// Why.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine could not push an image.
    #[error("the Docker engine at `{address}` could not push `{name}`: {message}")]
    Push {
        /// Where.
        address: String,
        /// The image name.
        name: String,
        /// What the engine said.
        message: String,
    },
    /// The engine could not pull an image.
    #[error("the Docker engine at `{address}` could not pull `{name}`: {message}")]
    Pull {
        /// Where.
        address: String,
        /// The image reference (`repo@digest`).
        name: String,
        /// What the engine said.
        message: String,
    },
    /// The engine did not answer or refused.
    #[error("the Docker engine at `{address}` did not answer")]
    Api {
        /// Where.
        address: String,
        /// Why.
        #[source]
        source: bollard::errors::Error,
    },
}

/// A Docker engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    address: String,
    deadline: Duration,
}

/// What the engine says about itself.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EngineVersion {
    /// Engine version, e.g. `26.1.5`.
    pub version: String,
    /// API version.
    pub api_version: String,
    /// Storage driver (`overlay2`…).
    pub storage_driver: String,
    /// Whether the containerd image store is in use.
    pub containerd_store: bool,
}

/// An image in the engine's store.
#[derive(Clone, Debug, Default)]
pub struct ImageInfo {
    /// Image ID (`sha256:…`): the config digest on Docker's classic image
    /// store, the manifest or index digest on the containerd image store.
    pub id: String,
    /// The digests of its `RepoDigests` (`name@sha256:…`), without names.
    pub repo_digests: Vec<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its layers (`RootFS.Layers`, diff IDs): what a build's `FROM` caches on.
    pub layers: Vec<String>,
    /// The configuration a `RUN` on it sees (environment, user, working directory, shell),
    /// as one text: a change re-runs `RUN` steps even when the layers are the same.
    pub run_config: String,
}

impl Engine {
    /// Connects to `docker_host` (`unix://…` or `tcp://…`), negotiating
    /// the API version so old engines (20.10) work too.
    /// With `tls` (a `tcp://` host and `DOCKER_TLS_VERIFY`), over TLS.
    /// Every request, connecting included, must be answered within
    /// [`crate::timeouts::answer_deadline`]: the engine's API calls cbuild
    /// makes are all short.
    pub async fn connect(
        docker_host: &str,
        tls: Option<&crate::tls::TlsFiles>,
    ) -> Result<Self, EngineError> {
        let deadline = crate::timeouts::answer_deadline();
        let api = |source| api_error(docker_host, deadline, source);
        let docker = if let Some(path) = docker_host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 600, bollard::API_DEFAULT_VERSION).map_err(api)?
        } else if let (true, Some(tls)) = (docker_host.starts_with("tcp://"), tls) {
            let missing = || {
                EngineError::BadAddress(format!(
                    "{docker_host} (TLS needs ca.pem, cert.pem and key.pem)"
                ))
            };
            let (Some(ca), Some(cert), Some(key)) = (&tls.ca, &tls.cert, &tls.key) else {
                return Err(missing());
            };
            let https = docker_host.replacen("tcp://", "https://", 1);
            Docker::connect_with_ssl(&https, key, cert, ca, 600, bollard::API_DEFAULT_VERSION)
                .map_err(api)?
        } else if docker_host.starts_with("tcp://") {
            let http = docker_host.replacen("tcp://", "http://", 1);
            Docker::connect_with_http(&http, 600, bollard::API_DEFAULT_VERSION).map_err(api)?
        } else {
            return Err(EngineError::BadAddress(docker_host.to_string()));
        };
        // bollard counts its timeout in whole seconds.
        let docker = docker.with_timeout(Duration::from_secs(deadline.as_secs_f64().ceil() as u64));
        let docker = docker.negotiate_version().await.map_err(api)?;
        Ok(Self {
            docker,
            address: docker_host.to_string(),
            deadline,
        })
    }

    fn api(&self, source: bollard::errors::Error) -> EngineError {
        api_error(&self.address, self.deadline, source)
    }

    /// Engine version and storage.
    pub async fn version(&self) -> Result<EngineVersion, EngineError> {
        let v = self.docker.version().await.map_err(|e| self.api(e))?;
        let info = self.docker.info().await.map_err(|e| self.api(e))?;
        let driver = info.driver.unwrap_or_default();
        let status = info.driver_status.unwrap_or_default();
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            containerd_store: is_containerd_store(&driver, &status),
            storage_driver: driver,
        })
    }

    /// The image stored under `name`, if any.
    pub async fn image(&self, name: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.docker.inspect_image(name).await {
            Ok(img) => Ok(Some(ImageInfo {
                layers: img
                    .root_fs
                    .as_ref()
                    .and_then(|r| r.layers.clone())
                    .unwrap_or_default(),
                run_config: img
                    .config
                    .as_ref()
                    .map(|c| serde_json::json!([c.env, c.user, c.working_dir, c.shell]).to_string())
                    .unwrap_or_default(),
                id: img.id.unwrap_or_default(),
                repo_digests: img
                    .repo_digests
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|r| r.rsplit_once('@').map(|(_, d)| d.to_string()))
                    .collect(),
                labels: img
                    .config
                    .and_then(|c| c.labels)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.api(e)),
        }
    }
}

/// How long an image load may take: it carries a whole image, so the
/// short answer deadline of the other calls does not apply.
const LOAD_DEADLINE: Duration = Duration::from_secs(3600);

impl Engine {
    /// The engine's address (`unix://…`, `tcp://…`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Loads an image archive (`docker save` format, as BuildKit's `docker`
    /// exporter writes it) streamed from `tar`, as `docker load` does
    /// (`POST /images/load`). Returns what the engine says it loaded: image
    /// names (`name:tag`) and, for untagged images, IDs (`sha256:…`).
    ///
    /// A stream that never ends is never taken as whole: the caller drops
    /// this future to abandon a cut-off archive, which aborts the request,
    /// so the engine loads nothing from it.
    pub async fn load(
        &self,
        tar: impl tokio_stream::Stream<Item = bytes::Bytes> + Send + 'static,
    ) -> Result<Vec<String>, EngineError> {
        use tokio_stream::StreamExt;
        let docker = self.docker.clone().with_timeout(LOAD_DEADLINE);
        let mut answers = docker.import_image_stream(
            bollard::image::ImportImageOptions { quiet: true },
            tar,
            None,
        );
        let mut loaded = Vec::new();
        while let Some(answer) = answers.next().await {
            let info = answer.map_err(|source| EngineError::Load {
                address: self.address.clone(),
                source,
            })?;
            loaded.extend(info.stream.as_deref().and_then(loaded_name));
        }
        Ok(loaded)
    }

    /// Gives image `id` the name `name` (`repo[:tag]`, tag `latest` when
    /// absent).
    pub async fn tag(&self, id: &str, name: &str) -> Result<(), EngineError> {
        let (repo, tag) = split_tag(name);
        self.docker
            .tag_image(id, Some(bollard::image::TagImageOptions { repo, tag }))
            .await
            .map_err(|e| self.api(e))
    }

    /// Removes the name `name` only (as `docker rmi --no-prune` does for
    /// one of several names: the image and its other names stay).
    pub async fn untag(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .remove_image(
                name,
                Some(bollard::image::RemoveImageOptions {
                    force: false,
                    noprune: true,
                }),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| self.api(e))
    }
}

/// Credentials the engine passes to a registry (`X-Registry-Auth`).
#[derive(Clone, Debug, Default)]
pub struct RegistryAuth {
    /// The user name (empty with an identity token).
    pub username: String,
    /// The password, or the identity token when `username` is empty.
    pub password: String,
    /// The registry (`host[:port]`).
    pub server: String,
}

impl RegistryAuth {
    /// As `X-Registry-Auth` carries them.
    fn credentials(&self) -> bollard::auth::DockerCredentials {
        if self.username.is_empty() && !self.password.is_empty() {
            bollard::auth::DockerCredentials {
                identitytoken: Some(self.password.clone()),
                serveraddress: Some(self.server.clone()),
                ..Default::default()
            }
        } else {
            bollard::auth::DockerCredentials {
                username: Some(self.username.clone()).filter(|u| !u.is_empty()),
                password: Some(self.password.clone()).filter(|p| !p.is_empty()),
                serveraddress: Some(self.server.clone()),
                ..Default::default()
            }
        }
    }
}

/// How long a push or pull may take: it carries a whole image.
const PUSH_DEADLINE: Duration = Duration::from_secs(3600);

impl Engine {
    /// Pulls `repo@digest` as `docker pull` does (`POST
    /// /images/create?fromImage=REPO&tag=DIGEST`): by digest, so the engine
    /// stores exactly that image whatever the tags now point at. Any error
    /// line of the engine's answer fails the pull.
    pub async fn pull(
        &self,
        repo: &str,
        digest: &str,
        auth: &RegistryAuth,
    ) -> Result<(), EngineError> {
        use tokio_stream::StreamExt;
        let docker = self.docker.clone().with_timeout(PUSH_DEADLINE);
        let failed = |message: String| EngineError::Pull {
            address: self.address.clone(),
            name: format!("{repo}@{digest}"),
            message,
        };
        let mut answers = docker.create_image(
            Some(bollard::image::CreateImageOptions {
                from_image: repo,
                tag: digest,
                ..Default::default()
            }),
            None,
            Some(auth.credentials()),
        );
        while let Some(answer) = answers.next().await {
            answer.map_err(|e| match e {
                bollard::errors::Error::DockerStreamError { error } => failed(error),
                bollard::errors::Error::DockerResponseServerError { message, .. } => {
                    failed(message)
                }
                e => failed(e.to_string()),
            })?;
        }
        Ok(())
    }
}

impl Engine {
    /// Pushes `name` (`repo[:tag]`) as `docker push` does (`POST
    /// /images/{name}/push`), and returns the digest of the manifest the
    /// registry now holds under it (the engine's `digest: sha256:…` line).
    /// Any error line of the engine's answer fails the push.
    pub async fn push(&self, name: &str, auth: &RegistryAuth) -> Result<String, EngineError> {
        use tokio_stream::StreamExt;
        let (repo, tag) = split_tag(name);
        let docker = self.docker.clone().with_timeout(PUSH_DEADLINE);
        let credentials = auth.credentials();
        let failed = |message: String| EngineError::Push {
            address: self.address.clone(),
            name: name.to_string(),
            message,
        };
        let mut answers = docker.push_image(
            repo,
            Some(bollard::image::PushImageOptions { tag }),
            Some(credentials),
        );
        let mut digest = None;
        while let Some(answer) = answers.next().await {
            let info = answer.map_err(|e| match e {
                bollard::errors::Error::DockerStreamError { error } => failed(error),
                bollard::errors::Error::DockerResponseServerError { message, .. } => {
                    failed(message)
                }
                e => failed(e.to_string()),
            })?;
            if let Some(d) = info.status.as_deref().and_then(pushed_digest) {
                digest = Some(d);
            }
        }
        digest.ok_or_else(|| failed("the engine did not say which digest it pushed".into()))
    }
}

impl Engine {
    /// The registries the engine was told to reach without TLS, as its
    /// `insecure-registries` takes them: `host[:port]` names and CIDR
    /// ranges (which include Docker's loopback defaults).
    pub async fn insecure_registries(&self) -> Result<Vec<String>, EngineError> {
        let info = self.docker.info().await.map_err(|e| self.api(e))?;
        let config = info.registry_config.unwrap_or_default();
        let mut out: Vec<String> = config
            .index_configs
            .unwrap_or_default()
            .into_values()
            .filter(|i| i.secure == Some(false))
            .filter_map(|i| i.name)
            .collect();
        out.sort();
        out.extend(config.insecure_registry_cidrs.unwrap_or_default());
        Ok(out)
    }
}

/// The digest in the push's last status line, `TAG: digest: sha256:… size: N`.
fn pushed_digest(status: &str) -> Option<String> {
    let (_, rest) = status.split_once("digest: ")?;
    let d = rest.split_whitespace().next()?;
    d.starts_with("sha256:").then(|| d.to_string())
}

/// Whether `/info`'s storage fields describe the containerd image store.
/// Docker 24–27 name the snapshotter as the driver
/// (`io.containerd.snapshotter.v1`); Docker 28 names the snapshotter
/// (`overlayfs`) and says `driver-type` in the driver status.
fn is_containerd_store(driver: &str, status: &[Vec<String>]) -> bool {
    driver.starts_with("io.containerd.snapshotter")
        || status.iter().any(|kv| {
            kv.first().map(String::as_str) == Some("driver-type")
                && kv
                    .get(1)
                    .is_some_and(|v| v.starts_with("io.containerd.snapshotter"))
        })
}

/// The name or ID in one line of `docker load`'s answer.
fn loaded_name(line: &str) -> Option<String> {
    let line = line.trim();
    let name = line
        .strip_prefix("Loaded image: ")
        .or_else(|| line.strip_prefix("Loaded image ID: "))?;
    Some(name.trim().to_string())
}

/// `repo[:tag]` as repository and tag; a `:` inside a registry's
/// `host:port` is not a tag.
fn split_tag(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    }
}

fn api_error(address: &str, deadline: Duration, source: bollard::errors::Error) -> EngineError {
    match source {
        bollard::errors::Error::RequestTimeoutError => EngineError::Timeout {
            address: address.to_string(),
            after: deadline,
        },
        source => EngineError::Api {
            address: address.to_string(),
            source,
        },
    }
}

/// The BuildKit version a Docker engine release embeds (from moby's
/// `vendor.mod` at each tag), for engines that do not report it themselves:
/// BuildKit's `Info` RPC arrived in v0.11 (Docker 24), and distribution
/// builds may report `v0.0.0+unknown`.
pub fn embedded_buildkit(docker_version: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("20.10.", "v0.8"),
        ("23.0.", "v0.10.6"),
        ("24.0.", "v0.11.6"),
        ("25.0.", "v0.12.5"),
        ("26.0.", "v0.13.1"),
        ("26.1.", "v0.13.1"),
        ("27.0.", "v0.14.1"),
        ("27.1.", "v0.15.1"),
        ("27.2.", "v0.15.2"),
        ("27.3.", "v0.16.0"),
        ("27.4.", "v0.17.3"),
        ("27.5.", "v0.18.2"),
        ("28.0.", "v0.20.0"),
        ("28.1.", "v0.21.0"),
        ("28.2.", "v0.22.0"),
        ("28.3.", "v0.23.1"),
        ("28.4.", "v0.24.0"),
        ("28.5.", "v0.25.0"),
        ("29.0.", "v0.25.2"),
        ("29.1.", "v0.26.2"),
        ("29.2.", "v0.27.0"),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| docker_version.starts_with(prefix))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_answers_name_images_or_ids() {
        assert_eq!(
            loaded_name("Loaded image: app:latest\n").as_deref(),
            Some("app:latest")
        );
        assert_eq!(
            loaded_name("Loaded image ID: sha256:abc").as_deref(),
            Some("sha256:abc")
        );
        assert_eq!(loaded_name("Loading layer 1/2"), None);
    }

    #[test]
    fn containerd_store_as_docker_24_and_28_report_it() {
        let kv = |k: &str, v: &str| vec![k.to_string(), v.to_string()];
        assert!(is_containerd_store("io.containerd.snapshotter.v1", &[]));
        assert!(is_containerd_store(
            "overlayfs",
            &[kv("driver-type", "io.containerd.snapshotter.v1")]
        ));
        assert!(!is_containerd_store(
            "overlay2",
            &[kv("Backing Filesystem", "extfs")]
        ));
    }

    #[test]
    fn the_pushed_digest_is_read_from_the_status_line() {
        assert_eq!(
            pushed_digest("v1: digest: sha256:ab12 size: 528").as_deref(),
            Some("sha256:ab12")
        );
        assert_eq!(pushed_digest("Pushed"), None);
        assert_eq!(pushed_digest("digest: md5:x"), None);
    }

    #[test]
    fn tags_split_after_the_registry_port() {
        assert_eq!(split_tag("app"), ("app", "latest"));
        assert_eq!(split_tag("app:v1"), ("app", "v1"));
        assert_eq!(
            split_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/app:v2"),
            ("127.0.0.1:5000/app", "v2")
        );
    }
}

/// A container of a Compose project.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ContainerInfo {
    /// Container name.
    pub name: String,
    /// The Compose service it runs.
    pub service: String,
    /// The ID of the image it runs.
    pub image_id: String,
    /// `running`, `exited`…
    pub state: String,
}

impl Engine {
    /// The containers (running or not) of Compose project `project`.
    pub async fn project_containers(
        &self,
        project: &str,
    ) -> Result<Vec<ContainerInfo>, EngineError> {
        let mut filters = std::collections::HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![format!("com.docker.compose.project={project}")],
        );
        let list = self
            .docker
            .list_containers(Some(bollard::container::ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.api(e))?;
        Ok(list
            .into_iter()
            .map(|c| ContainerInfo {
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                service: c
                    .labels
                    .and_then(|l| l.get("com.docker.compose.service").cloned())
                    .unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                state: c.state.unwrap_or_default(),
            })
            .collect())
    }
}
