//! The Docker Engine's REST API, through bollard: version, storage driver,
//! and image look-ups. A leaf module: it knows nothing of Compose or BuildKit
//! (it uses only the shared TLS file names and deadline below it).

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::Docker;

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
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            containerd_store: driver.starts_with("io.containerd.snapshotter"),
            storage_driver: driver,
        })
    }

    /// The image stored under `name`, if any.
    pub async fn image(&self, name: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.docker.inspect_image(name).await {
            Ok(img) => Ok(Some(ImageInfo {
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
