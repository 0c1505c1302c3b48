//! What one build asks of BuildKit, without any Compose vocabulary.

use std::collections::{BTreeMap, HashMap};

use crate::buildkit::proto::moby::buildkit::v1 as pb;

/// The built-in Dockerfile frontend.
pub const DOCKERFILE_FRONTEND: &str = "dockerfile.v0";

/// Options of one solve.
#[derive(Clone, Debug, Default)]
pub struct SolveOptions {
    /// Frontend name, normally [`DOCKERFILE_FRONTEND`].
    pub frontend: String,
    /// Frontend attributes (`filename`, `target`, `build-arg:*`, `label:*`…).
    pub frontend_attrs: BTreeMap<String, String>,
    /// Where the result goes.
    pub exporters: Vec<ExporterSpec>,
    /// Privileges the build needs (`network.host`, `security.insecure`).
    pub entitlements: Vec<String>,
    /// Cache sources (`type=registry,ref=…`).
    pub cache_imports: Vec<ExporterSpec>,
    /// Cache destinations.
    pub cache_exports: Vec<ExporterSpec>,
}

/// An exporter (or a cache import/export entry): a type and its attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExporterSpec {
    /// `moby`, `image`, `docker`, `registry`, `local`…
    pub kind: String,
    /// Its attributes (`name`, `push`, `ref`…).
    pub attrs: BTreeMap<String, String>,
}

/// What a finished solve reports.
#[derive(Clone, Debug, Default)]
pub struct SolveOutcome {
    /// The exporter's response (`containerimage.digest`, `image.name`…).
    pub exporter_response: HashMap<String, String>,
    /// The ID the Docker engine gave the image when cbuild loaded the
    /// exporter's tarball into it: the ID later look-ups compare with.
    pub loaded_id: Option<String>,
}

impl SolveOutcome {
    /// The image ID (config digest) where the exporter reported one.
    pub fn image_id(&self) -> Option<&str> {
        self.loaded_id
            .as_ref()
            .or_else(|| self.exporter_response.get("containerimage.config.digest"))
            .or_else(|| self.exporter_response.get("containerimage.digest"))
            .map(String::as_str)
    }

    /// Every digest the engine may use as the ID of the exported image: the
    /// config digest (Docker's classic image store) and the manifest or
    /// index digest (the containerd image store), and the ID the engine
    /// gave a loaded tarball, without repeats.
    pub fn image_digests(&self) -> Vec<String> {
        let mut out: Vec<String> = self.loaded_id.iter().cloned().collect();
        for key in ["containerimage.config.digest", "containerimage.digest"] {
            if let Some(d) = self.exporter_response.get(key) {
                if !d.is_empty() && !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }
}

impl SolveOptions {
    /// The request for the daemon. The first exporter is also written to the
    /// pre-v0.13 fields, which daemons without the exporter list (Docker 25
    /// and older) read instead (moby/buildkit `control/control.go`).
    pub(crate) fn to_request(&self, reference: &str, session: &str) -> pb::SolveRequest {
        let to_map = |m: &BTreeMap<String, String>| -> HashMap<String, String> {
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let cache_entry = |e: &ExporterSpec| pb::CacheOptionsEntry {
            r#type: e.kind.clone(),
            attrs: to_map(&e.attrs),
        };
        let mut frontend_attrs = to_map(&self.frontend_attrs);
        if !self.cache_imports.is_empty() {
            // The Go client also hands imports to the frontend this way
            // (moby/buildkit `client/solve.go`), which is what the Dockerfile
            // frontend reads.
            let json: Vec<serde_json::Value> = self
                .cache_imports
                .iter()
                .map(|e| serde_json::json!({"Type": e.kind, "Attrs": e.attrs}))
                .collect();
            frontend_attrs.insert(
                "cache-imports".into(),
                serde_json::Value::Array(json).to_string(),
            );
        }
        let first = self.exporters.first();
        pb::SolveRequest {
            r#ref: reference.to_string(),
            definition: None,
            exporter_deprecated: first.map(|e| e.kind.clone()).unwrap_or_default(),
            exporter_attrs_deprecated: first.map(|e| to_map(&e.attrs)).unwrap_or_default(),
            session: session.to_string(),
            frontend: self.frontend.clone(),
            frontend_attrs,
            cache: Some(pb::CacheOptions {
                exports: self.cache_exports.iter().map(cache_entry).collect(),
                imports: self.cache_imports.iter().map(cache_entry).collect(),
            }),
            entitlements: self.entitlements.clone(),
            frontend_inputs: HashMap::new(),
            internal: false,
            exporters: self
                .exporters
                .iter()
                .map(|e| pb::Exporter {
                    r#type: e.kind.clone(),
                    attrs: to_map(&e.attrs),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_digests_are_the_config_and_the_manifest_digest() {
        let outcome = |pairs: &[(&str, &str)]| SolveOutcome {
            exporter_response: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            loaded_id: None,
        };
        let both = outcome(&[
            ("containerimage.config.digest", "sha256:c"),
            ("containerimage.digest", "sha256:m"),
        ]);
        assert_eq!(both.image_digests(), ["sha256:c", "sha256:m"]);
        assert_eq!(both.image_id(), Some("sha256:c"));
        let same = outcome(&[
            ("containerimage.config.digest", "sha256:c"),
            ("containerimage.digest", "sha256:c"),
        ]);
        assert_eq!(same.image_digests(), ["sha256:c"]);
        assert!(outcome(&[]).image_digests().is_empty());
        let loaded = SolveOutcome {
            loaded_id: Some("sha256:e".into()),
            ..both
        };
        assert_eq!(loaded.image_id(), Some("sha256:e"));
        assert_eq!(loaded.image_digests(), ["sha256:e", "sha256:c", "sha256:m"]);
    }

    #[test]
    fn request_fills_old_and_new_exporter_fields() {
        let opts = SolveOptions {
            frontend: DOCKERFILE_FRONTEND.into(),
            exporters: vec![ExporterSpec {
                kind: "moby".into(),
                attrs: [("name".to_string(), "app-web".to_string())].into(),
            }],
            ..Default::default()
        };
        let req = opts.to_request("ref1", "sess1");
        assert_eq!(req.exporter_deprecated, "moby");
        assert_eq!(req.exporter_attrs_deprecated["name"], "app-web");
        assert_eq!(req.exporters.len(), 1);
        assert_eq!(req.exporters[0].r#type, "moby");
        assert_eq!(req.session, "sess1");
        assert_eq!(req.r#ref, "ref1");
    }
}
