//! Containers of a Compose service, through the Engine API: find them,
//! copy files in and out (`/containers/{id}/archive`), run a command in
//! them, restart them. Used by `cbuild watch`.

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
