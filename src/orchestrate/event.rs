//! What a running build reports, for whoever draws it (`ui`).

use std::time::Duration;

pub use crate::buildkit::status::{LogLine, ProgressUpdate, StatusUpdate, VertexUpdate, Warning};
pub use crate::buildkit::TransferSnapshot;

/// One thing that happened while building a project.
#[derive(Clone, Debug)]
pub enum BuildEvent {
    /// A service's build started.
    Started {
        /// The service.
        service: String,
        /// The image it will produce.
        image: String,
        /// The builder that builds it (its address, or the buildx node).
        node: Option<String>,
        /// Why it starts again on this node: the node it was building on
        /// was lost.
        retry: Option<String>,
        /// Whether several builders share the work (the node is then worth
        /// showing).
        pooled: bool,
        /// Images of dependencies built elsewhere, handed to this build
        /// through the registry.
        handoffs: Vec<HandOff>,
    },
    /// Progress from BuildKit for a service.
    Status {
        /// The service.
        service: String,
        /// What the daemon reported.
        update: StatusUpdate,
    },
    /// A service's build ended.
    Finished {
        /// The service.
        service: String,
        /// How it ended.
        outcome: ServiceOutcome,
    },
}

/// A dependency's image handed to a build on another node through a
/// registry (see `super::pool`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandOff {
    /// The service whose image it is.
    pub dependency: String,
    /// The registry it went through (`host[:port]`).
    pub registry: String,
    /// What the build reads: `name@sha256:…`.
    pub reference: String,
}

impl HandOff {
    /// The progress line, for `service` building on `node`.
    pub fn describe(&self, service: &str, node: Option<&str>) -> String {
        let on = node.map(|n| format!(" on `{n}`")).unwrap_or_default();
        format!(
            "handing off image of `{}` to `{service}`{on} via `{}` (`{}`)",
            self.dependency, self.registry, self.reference
        )
    }
}

/// How one service's build ended.
#[derive(Clone, Debug)]
pub struct ServiceOutcome {
    /// The image name.
    pub image: String,
    /// The image ID, when it was built.
    pub image_id: Option<String>,
    /// What failed, when it did.
    pub error: Option<String>,
    /// A suggestion for the user, when cbuild has one.
    pub hint: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
    /// What the daemon pulled from cbuild.
    pub transfer: TransferSnapshot,
    /// How much hashing it took.
    pub hashing: super::plan::HashCounts,
    /// Not built: the engine already holds an image built from the same
    /// inputs.
    pub up_to_date: bool,
    /// Up to date through a build record in the registry
    /// (`super::records`): the registry holds the image, the engine may not.
    pub from_registry: bool,
    /// Up to date through a build record, with the image pulled into the
    /// engine (a build that loads, `--remote-records` without `--push`).
    pub pulled: bool,
    /// What the exporter reported (`containerimage.digest`, `image.name`…).
    pub exporter_response: std::collections::BTreeMap<String, String>,
    /// Dockerfile steps that ran.
    pub steps_run: usize,
    /// Dockerfile steps taken from the cache.
    pub steps_cached: usize,
    /// How many pieces of `cbuild why --advise` cache advice its Dockerfile has (0 when it
    /// was not built).
    pub advice: usize,
}

impl ServiceOutcome {
    /// An outcome with no build behind it (skipped, or not attempted);
    /// callers set what applies with struct update syntax.
    pub fn without_build(image: String, elapsed: Duration) -> Self {
        ServiceOutcome {
            image,
            image_id: None,
            error: None,
            hint: None,
            elapsed,
            transfer: Default::default(),
            hashing: Default::default(),
            up_to_date: false,
            from_registry: false,
            pulled: false,
            exporter_response: Default::default(),
            steps_run: 0,
            steps_cached: 0,
            advice: 0,
        }
    }
}

/// Receives [`BuildEvent`]s. Implementations must not block for long.
pub trait Reporter: Send + Sync {
    /// Called for every event, from any task.
    fn report(&self, event: BuildEvent);
}

/// A reporter that drops everything.
pub struct NoReporter;

impl Reporter for NoReporter {
    fn report(&self, _: BuildEvent) {}
}

/// What `--metadata-file` holds (like `docker buildx build
/// --metadata-file`): per built service, the exporter's answer, with
/// `image.name`, `containerimage.config.digest` and `cbuild.up_to_date`.
/// Failed services are left out.
pub fn metadata(results: &[(String, ServiceOutcome)]) -> serde_json::Value {
    use serde_json::{Map, Value};
    let services: Map<String, Value> = results
        .iter()
        .filter(|(_, o)| o.error.is_none())
        .map(|(s, o)| {
            let mut m: Map<String, Value> = o
                .exporter_response
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            m.entry("image.name")
                .or_insert_with(|| o.image.clone().into());
            if let Some(id) = &o.image_id {
                m.entry("containerimage.config.digest")
                    .or_insert_with(|| id.clone().into());
            }
            m.insert("cbuild.up_to_date".into(), o.up_to_date.into());
            (s.clone(), Value::Object(m))
        })
        .collect();
    Value::Object(services)
}
