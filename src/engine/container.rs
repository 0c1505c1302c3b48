//! Containers of a Compose service, through the Engine API: find them,
//! copy files in and out (`/containers/{id}/archive`), run a command in
//! them, restart them, recreate them with a new image. Used by
//! `cbuild watch`.

use bollard::container::{
    DownloadFromContainerOptions, ListContainersOptions, RestartContainerOptions,
    UploadToContainerOptions,
};
use bollard::exec::{CreateExecOptions, StartExecResults};
use tokio_stream::StreamExt;

use super::{Engine, EngineError};

/// A container of one Compose service.
#[derive(Clone, Debug, Default)]
pub struct ServiceContainer {
    /// Its ID.
    pub id: String,
    /// Its name (without the leading `/`).
    pub name: String,
    /// `running`, `exited`…
    pub state: String,
    /// The ID of the image it runs.
    pub image_id: String,
}

/// What a command run in a container gave.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// Its exit code.
    pub exit_code: i64,
    /// Its stdout and stderr, interleaved.
    pub output: String,
}

impl Engine {
    /// Renames a container.
    async fn rename(&self, id: &str, name: &str) -> Result<(), bollard::errors::Error> {
        self.docker
            .rename_container(id, bollard::container::RenameContainerOptions { name })
            .await
    }

    /// The containers (running or not) of `service` in Compose project
    /// `project`, found by compose's labels.
    pub async fn service_containers(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Vec<ServiceContainer>, EngineError> {
        let mut filters = std::collections::HashMap::new();
        filters.insert(
            "label".to_string(),
            vec![
                format!("com.docker.compose.project={project}"),
                format!("com.docker.compose.service={service}"),
            ],
        );
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.api(e))?;
        Ok(list
            .into_iter()
            .map(|c| ServiceContainer {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                state: c.state.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
            })
            .collect())
    }

    /// The user the container runs as (`Config.User`: the service's
    /// `user:` or the image's `USER`; empty for root).
    pub async fn container_user(&self, id: &str) -> Result<String, EngineError> {
        let c = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| self.api(e))?;
        Ok(c.config.and_then(|c| c.user).unwrap_or_default())
    }

    /// Extracts the tar archive `tar` at `/` in the container
    /// (`PUT /containers/{id}/archive`). The archive's own owners and
    /// modes are kept.
    pub async fn put_archive(&self, id: &str, tar: bytes::Bytes) -> Result<(), EngineError> {
        self.docker
            .upload_to_container(
                id,
                Some(UploadToContainerOptions {
                    path: "/",
                    no_overwrite_dir_non_dir: "",
                }),
                tar,
            )
            .await
            .map_err(|e| self.api(e))
    }

    /// A tar archive of `path` in the container
    /// (`GET /containers/{id}/archive`); `None` when it does not exist.
    pub async fn get_archive(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let mut stream = self
            .docker
            .download_from_container(id, Some(DownloadFromContainerOptions { path }));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => out.extend_from_slice(&b),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(None),
                Err(e) => return Err(self.api(e)),
            }
        }
        Ok(Some(out))
    }

    /// Runs `cmd` in the container and waits for it.
    pub async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        user: Option<&str>,
        workdir: Option<&str>,
        env: &[String],
    ) -> Result<ExecOutput, EngineError> {
        let created = self
            .docker
            .create_exec(
                id,
                CreateExecOptions::<String> {
                    cmd: Some(cmd.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user: user.map(str::to_string),
                    working_dir: workdir.map(str::to_string),
                    env: (!env.is_empty()).then(|| env.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.api(e))?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut out, ..
        } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| self.api(e))?
        {
            while let Some(chunk) = out.next().await {
                let chunk = chunk.map_err(|e| self.api(e))?;
                output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        let inspect = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| self.api(e))?;
        Ok(ExecOutput {
            exit_code: inspect.exit_code.unwrap_or(-1),
            output,
        })
    }

    /// Restarts the container (stop timeout as compose's default, 10 s).
    pub async fn restart(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .restart_container(id, Some(RestartContainerOptions { t: 10 }))
            .await
            .map_err(|e| self.api(e))
    }

    /// Whether the engine answers.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| self.api(e))
    }
}

/// How a recreation through the Engine API went.
#[derive(Debug)]
pub enum Recreated {
    /// The replacement runs; its ID.
    Done(String),
    /// Nothing was changed: the old container has something this path does
    /// not carry over faithfully (the reason), so the caller should let
    /// compose recreate it.
    NotUnderstood(String),
}

/// Compose's labels, as `pkg/api/labels.go` names them.
const IMAGE_LABEL: &str = "com.docker.compose.image";
const REPLACE_LABEL: &str = "com.docker.compose.replace";

impl Engine {
    /// Replaces container `old` by one from the image now named as its own
    /// (`Config.Image`), whose engine ID is `image_id`, the way compose 2.40
    /// does it (`recreateContainer` in `pkg/compose/convergence.go`): create
    /// the replacement under the temporary name `<old ID[:12]>_<name>` with
    /// the old container's config, host config, networks and labels
    /// (`com.docker.compose.image` set to the new image ID, so a later
    /// `docker compose up` sees it as current, and `com.docker.compose.replace`
    /// naming the old one), stop the old one with its own stop signal and
    /// timeout (no `t`, as compose without `--timeout`), give the new one
    /// its name and start it, then remove the old one (compose removes it
    /// before; it is renamed out of the way instead, and both renames come
    /// before the stop).
    ///
    /// It only does so when copying is exact: the old and new images have
    /// the same run config (a container's config merges the image's `ENV`,
    /// `CMD`…, which a copy would freeze), and the old container has no
    /// anonymous volume (compose carries those over; a copy would leave them
    /// behind).
    pub async fn recreate(&self, old: &str, image_id: &str) -> Result<Recreated, EngineError> {
        let t = std::time::Instant::now();
        let ms = move || t.elapsed().as_millis() as u64;
        let c = self
            .docker
            .inspect_container(old, None)
            .await
            .map_err(|e| self.api(e))?;
        let old_id = c.id.clone().unwrap_or_default();
        let name = c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let (Some(config), Some(host), Some(old_image)) =
            (c.config.clone(), c.host_config.clone(), c.image.clone())
        else {
            return Ok(Recreated::NotUnderstood(
                "the engine's inspect of the container lacks its config".into(),
            ));
        };
        if old_id.len() < 12 || name.is_empty() {
            return Ok(Recreated::NotUnderstood("the container has no name".into()));
        }
        // The run config of both images: a copy is exact only when the
        // image did not change what it adds to a container's config.
        let run_config = |id: String| async move {
            match self.docker.inspect_image(&id).await {
                Ok(i) => Ok(i
                    .config
                    .map(|c| serde_json::to_value(c).unwrap_or_default())),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(None),
                Err(e) => Err(self.api(e)),
            }
        };
        let before = run_config(old_image.clone()).await?;
        let after = run_config(image_id.to_string()).await?;
        if before.is_none() || before != after {
            return Ok(Recreated::NotUnderstood(
                "the new image changes the run config (ENV, CMD, USER…) or the old image is gone"
                    .into(),
            ));
        }
        // Anonymous volumes: a mounted volume the host config does not name.
        let named: Vec<String> = host
            .mounts
            .iter()
            .flatten()
            .filter(|m| m.source.as_deref().is_some_and(|s| !s.is_empty()))
            .filter_map(|m| m.target.clone())
            .chain(host.binds.iter().flatten().filter_map(|b| {
                let mut parts = b.split(':');
                parts.next();
                parts.next().map(str::to_string)
            }))
            .collect();
        if c.mounts.iter().flatten().any(|m| {
            m.typ == Some(bollard::models::MountPointTypeEnum::VOLUME)
                && !m.destination.as_ref().is_some_and(|d| named.contains(d))
        }) {
            return Ok(Recreated::NotUnderstood(
                "the container has an anonymous volume, which compose carries over".into(),
            ));
        }

        tracing::debug!(
            ms = ms(),
            "recreate: inspected the container and both images"
        );
        let short = &old_id[..12];
        let mut new: bollard::container::Config<String> = config.into();
        // The engine names a container's host after its short ID unless the
        // service says `hostname:`; the copy would keep the old one's.
        if new.hostname.as_deref() == Some(short) {
            new.hostname = None;
        }
        let labels = new.labels.get_or_insert_with(Default::default);
        labels.insert(IMAGE_LABEL.into(), image_id.into());
        labels.insert(REPLACE_LABEL.into(), old_id.clone());
        // Networks: the one of the network mode at creation (the only one
        // engines before API 1.44 take), the others connected before start.
        // Only what the user configures is carried: aliases (less the old
        // short ID, which older engines list), IPAM config, links, driver
        // options; addresses are the engine's to give.
        let mut endpoints: Vec<(String, bollard::models::EndpointSettings)> = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .map(|(net, e)| {
                let aliases: Option<Vec<String>> = e
                    .aliases
                    .map(|a| a.into_iter().filter(|a| a != short).collect());
                (
                    net,
                    bollard::models::EndpointSettings {
                        ipam_config: e.ipam_config,
                        links: e.links,
                        aliases,
                        driver_opts: e.driver_opts,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let mode = host.network_mode.clone().unwrap_or_default();
        endpoints.sort_by_key(|(n, _)| n != &mode);
        let mut rest = endpoints.split_off(endpoints.len().min(1));
        new.networking_config = Some(bollard::container::NetworkingConfig {
            endpoints_config: endpoints.into_iter().collect(),
        });
        new.host_config = Some(host);
        let tmp = format!("{short}_{name}");
        let created = self
            .docker
            .create_container(
                Some(bollard::container::CreateContainerOptions {
                    name: tmp.as_str(),
                    platform: None,
                }),
                new,
            )
            .await
            .map_err(|e| self.api(e))?;
        tracing::debug!(ms = ms(), "recreate: created the replacement");
        // Compose stops the old container, removes it, renames the new one
        // and starts it. The removal (unmounting its filesystem) took
        // 100–250 ms here, so the old container is renamed out of the way
        // instead and removed once the new one runs: the same end state,
        // the new one sooner. (Removing it while the new one starts slowed
        // the start as much on 2 cores.) Both renames come before the stop,
        // while the old one still serves, so only stop → start is between
        // the old process and the new one.
        let retired = format!("{short}_{name}_replaced");
        let replace = async {
            for (net, endpoint) in rest.drain(..) {
                self.docker
                    .connect_network(
                        &net,
                        bollard::network::ConnectNetworkOptions {
                            container: created.id.clone(),
                            endpoint_config: endpoint,
                        },
                    )
                    .await?;
            }
            self.rename(&old_id, &retired).await?;
            if let Err(e) = self.rename(&created.id, &name).await {
                let _ = self.rename(&old_id, &name).await;
                return Err(e);
            }
            tracing::debug!(ms = ms(), "recreate: renamed both containers");
            if let Err(e) = self.docker.stop_container(&old_id, None).await {
                // The old one keeps serving under its name.
                let _ = self.rename(&created.id, &tmp).await;
                let _ = self.rename(&old_id, &name).await;
                return Err(e);
            }
            tracing::debug!(ms = ms(), "recreate: stopped the old container");
            Ok::<(), bollard::errors::Error>(())
        };
        if let Err(e) = replace.await {
            // Ours to remove: the old container is still there.
            let _ = self
                .docker
                .remove_container(
                    &created.id,
                    Some(bollard::container::RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
            return Err(self.api(e));
        }
        self.docker
            .start_container(
                &created.id,
                None::<bollard::container::StartContainerOptions<String>>,
            )
            .await
            .map_err(|e| self.api(e))?;
        tracing::debug!(ms = ms(), "recreate: started the new container");
        self.docker
            .remove_container(&old_id, None::<bollard::container::RemoveContainerOptions>)
            .await
            .map_err(|e| self.api(e))?;
        tracing::debug!(ms = ms(), "recreate: removed the old container");
        Ok(Recreated::Done(created.id))
    }
}
