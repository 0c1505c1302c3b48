//! `status`: for each service, whether its image is up to date with the
//! source, and whether its containers run that image.

use crate::compose::Project;
use crate::engine::Engine;

use super::fresh::{self, Freshness};
use super::plan::{plan, BuildOptions, PlanError};

/// The state of one service's image and containers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServiceStatus {
    /// The service.
    pub service: String,
    /// Its image name.
    pub image: String,
    /// `fresh`, `stale`, `unknown` (an image cbuild did not build) or
    /// `not built`.
    pub state: String,
    /// What changed, for `stale`.
    pub reason: Option<String>,
    /// The image the engine holds under the name.
    pub image_id: Option<String>,
    /// The service's containers.
    pub containers: Vec<ContainerStatus>,
}

/// One container of a service.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ContainerStatus {
    /// Container name.
    pub name: String,
    /// `running`, `exited`…
    pub state: String,
    /// Whether it runs the image the engine now holds under the name.
    pub current_image: bool,
}

impl ServiceStatus {
    /// Whether anything needs doing: a build, or a container restart.
    pub fn needs_attention(&self) -> bool {
        self.state != "fresh" || self.containers.iter().any(|c| !c.current_image)
    }
}

/// The status of the services `opts` selects.
pub async fn status(
    project: &Project,
    opts: &BuildOptions,
    engine: &Engine,
) -> Result<Vec<ServiceStatus>, PlanError> {
    let builds = plan(project, opts)?;
    let containers = engine
        .project_containers(&project.name)
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for b in &builds {
        let current = engine.image(&b.image).await.ok().flatten();
        let (state, reason) = match fresh::check(b, engine).await {
            Freshness::UpToDate { .. } => ("fresh", None),
            Freshness::Stale(why) => match fresh::what_changed(b).await {
                Some(files) => ("stale", Some(format!("{why}: {files}"))),
                None => ("stale", Some(why)),
            },
            Freshness::NotBuilt if current.is_some() => (
                "unknown",
                Some("not built by cbuild here, so its inputs are unknown".to_string()),
            ),
            Freshness::NotBuilt => ("not built", None),
        };
        b.save_hashes();
        let current_id = current.map(|i| i.id);
        out.push(ServiceStatus {
            service: b.service.clone(),
            image: b.image.clone(),
            state: state.to_string(),
            reason,
            containers: containers
                .iter()
                .filter(|c| c.service == b.service)
                .map(|c| ContainerStatus {
                    name: c.name.clone(),
                    state: c.state.clone(),
                    current_image: current_id.as_deref() == Some(c.image_id.as_str()),
                })
                .collect(),
            image_id: current_id,
        });
    }
    Ok(out)
}
