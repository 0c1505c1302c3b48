//! Skipping builds that cannot change the result.
//!
//! After a successful build cbuild records, per service: the image ID it
//! produced, an *inputs digest* (every solve option — frontend attributes
//! with build args, labels, target and platform, exporters, entitlements,
//! cache settings — plus the IDs of the images the build starts from), and
//! every DiffCopy request the daemon made with the listing digest of what
//! it was shown (see [`crate::context::digest`]).
//!
//! Before the next build, cbuild replays those requests against the files
//! as they are now. If every listing digest, the inputs digest and the
//! image the engine holds under the name all match, BuildKit could only
//! produce the same image again: the build is reported "up to date" and no
//! solve runs. The replay covers the Dockerfile and ignore files too, since
//! the daemon pulls them through the same requests; and because the
//! requests are the daemon's own, a file the Dockerfile does not use never
//! makes a service stale. `--no-cache`, `--pull` and `pull: true` never skip.

use std::collections::BTreeMap;
use std::path::Path;

use crate::context::binfile::write_private;
use crate::context::listing::{listing_digest, listing_files, Served};
use crate::engine::{Engine, ImageInfo};

use super::plan::ServiceBuild;

const VERSION: u32 = 1;

/// What the last successful build of a service was made of.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Record {
    version: u32,
    /// The image name.
    pub image: String,
    /// The image ID the build produced (its config digest).
    pub image_id: String,
    /// Every digest the engine may name that image by (config digest,
    /// manifest or index digest): which one it uses depends on its image
    /// store. Empty in records of older cbuild versions.
    #[serde(default)]
    pub image_digests: Vec<String>,
    /// The inputs digest.
    pub inputs: String,
    /// The requests the daemon made, with what it was shown.
    pub served: Vec<Served>,
    /// The manifest digest pushed under each name (`--push`), for as long
    /// as this build is the current one.
    #[serde(default)]
    pub pushed: BTreeMap<String, String>,
}

impl Record {
    /// Whether the engine's `image` is the one this build produced. The
    /// classic image store names an image by its config digest, the
    /// containerd store by its manifest (or index) digest, which may also
    /// show among its repo digests.
    fn is_image(&self, image: &ImageInfo) -> bool {
        let ours = |d: &String| *d == self.image_id || self.image_digests.contains(d);
        ours(&image.id) || image.repo_digests.iter().any(ours)
    }
}

/// Whether a service needs building.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// The engine holds an image built from exactly these inputs.
    UpToDate {
        /// Its ID.
        image_id: String,
    },
    /// Something changed (what, in words).
    Stale(String),
    /// cbuild has no record of building it.
    NotBuilt,
}

/// The IDs of the images a build starts from (`missing` for absent ones).
pub async fn base_ids(engine: &Engine, bases: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for b in bases {
        let id = match engine.image(b).await {
            Ok(Some(img)) => img.id,
            _ => "missing".to_string(),
        };
        out.insert(b.clone(), id);
    }
    out
}

/// The inputs digest of a planned build given its base image IDs.
pub fn inputs_digest(b: &ServiceBuild, bases: &BTreeMap<String, String>) -> String {
    let mut text = inputs_value(b, bases).to_string();
    if let Some(ctx) = b.solve.frontend_attrs.get("context") {
        if ctx.starts_with("http://buildkit-session/") {
            text = text.replace(ctx.as_str(), "upload");
        }
    }
    format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex())
}

/// Everything but the files that a build's result depends on: the one
/// list of what is an input, for the local record (hashed as it is) and
/// the registry's (`super::records`, which drops what only names places
/// on this machine).
pub fn inputs_value(b: &ServiceBuild, bases: &BTreeMap<String, String>) -> serde_json::Value {
    let s = &b.solve;
    // How the last build was forced does not change what a normal build
    // would produce now: the image it made is the current one.
    let mut attrs = s.frontend_attrs.clone();
    attrs.remove("no-cache");
    if attrs.get("image-resolve-mode").map(String::as_str) == Some("pull") {
        attrs.remove("image-resolve-mode");
    }
    // Attributes that name a one-off upload differ every build: the
    // callers replace them.
    serde_json::json!({
        "v": VERSION,
        "frontend": s.frontend,
        "attrs": attrs,
        // Loading a tarball into the engine stores the same image as the
        // engine's own exporter: which one the builder called for is no
        // input (and `status`, which knows no builder, agrees with `build`).
        // Nor is pushing: a pushed image is the one stored locally.
        "exporters": s.exporters.iter().map(|e| {
            let mut attrs = e.attrs.clone();
            attrs.remove("push");
            (super::export::store_kind(&e.kind), attrs)
        }).collect::<Vec<_>>(),
        "entitlements": s.entitlements,
        "cache_imports": s.cache_imports.iter().map(|e| (&e.kind, &e.attrs)).collect::<Vec<_>>(),
        "cache_exports": s.cache_exports.iter().map(|e| (&e.kind, &e.attrs)).collect::<Vec<_>>(),
        "bases": bases,
    })
}

fn load(path: &Path) -> Option<Record> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<Record>(&bytes)
        .ok()
        .filter(|r| r.version == VERSION)
}

/// Whether `b` needs building, without asking BuildKit anything.
pub async fn check(b: &ServiceBuild, engine: &Engine) -> Freshness {
    check_with(b, engine, &BTreeMap::new()).await
}

/// [`check`], with the IDs of some of the images the build starts from
/// already known (`known`, by the name in `b.bases`): a dependency's image
/// built into another engine than `engine` (a pool, `super::pool`) is
/// identified where it is, not by whatever `engine` holds under its name.
pub async fn check_with(
    b: &ServiceBuild,
    engine: &Engine,
    known: &BTreeMap<String, String>,
) -> Freshness {
    let Some(path) = &b.record else {
        return Freshness::NotBuilt;
    };
    let Some(record) = load(path) else {
        return Freshness::NotBuilt;
    };
    if b.force {
        return Freshness::Stale("a fresh build was asked for (--no-cache or --pull)".into());
    }
    let mut bases = base_ids(engine, &b.bases).await;
    bases.extend(known.clone());
    if let Some((name, _)) = bases.iter().find(|(_, id)| *id == "missing") {
        return Freshness::Stale(format!(
            "the image `{name}` (a base, `--from` or `# syntax=` frontend image) is not in the engine"
        ));
    }
    if inputs_digest(b, &bases) != record.inputs {
        return Freshness::Stale("build options or base images changed".into());
    }
    for served in &record.served {
        let Some(local) = b.session.locals.get(&served.local).cloned() else {
            return Freshness::Stale(format!("`{}` is no longer part of the build", served.local));
        };
        let opts = served.opts.clone();
        let started = std::time::Instant::now();
        let digest = tokio::task::spawn_blocking(move || listing_digest(&local, &opts)).await;
        tracing::debug!(
            service = %b.service,
            local = %served.local,
            elapsed = ?started.elapsed(),
            "replayed a DiffCopy request"
        );
        match digest {
            Ok(Ok(d)) if d == served.digest => {}
            _ => {
                let what = match served.local.as_str() {
                    "context" => "files in the build context changed".to_string(),
                    "dockerfile" => "the Dockerfile changed".to_string(),
                    other => format!("files in the named context `{other}` changed"),
                };
                return Freshness::Stale(what);
            }
        }
    }
    // Every name the build tags (`image` and `tags:`) must still point at
    // the image it produced (an image exported only to a registry is
    // checked there, see `super::push`).
    let names = if super::export::stores_locally(b) {
        b.tagged_names()
    } else {
        Vec::new()
    };
    for name in names {
        match engine.image(&name).await {
            Ok(Some(img)) if record.is_image(&img) => {}
            Ok(Some(_)) => {
                return Freshness::Stale(format!("the engine's `{name}` is another image"))
            }
            _ => return Freshness::Stale(format!("the engine has no image `{name}`")),
        }
    }
    Freshness::UpToDate {
        image_id: record.image_id,
    }
}

/// What the record of the current build says was pushed under each name
/// (empty without a record).
pub fn pushed(b: &ServiceBuild) -> BTreeMap<String, String> {
    b.record
        .as_deref()
        .and_then(load)
        .map(|r| r.pushed)
        .unwrap_or_default()
}

/// The requests the daemon made in the current build, with what it was
/// shown (empty without a record).
pub fn served(b: &ServiceBuild) -> Vec<Served> {
    b.record
        .as_deref()
        .and_then(load)
        .map(|r| r.served)
        .unwrap_or_default()
}

/// Adds `pushed` to the record of the current build (a push of an image
/// that was up to date).
pub fn add_pushed(b: &ServiceBuild, pushed: BTreeMap<String, String>) -> std::io::Result<()> {
    let Some(path) = &b.record else { return Ok(()) };
    let Some(mut record) = load(path) else {
        return Ok(());
    };
    record.pushed.extend(pushed);
    write_private(path, &serde_json::to_vec(&record)?)
}

/// Records a successful build, and what it pushed.
pub fn save(
    b: &ServiceBuild,
    inputs: String,
    image_id: &str,
    image_digests: Vec<String>,
    served: Vec<Served>,
    pushed: BTreeMap<String, String>,
) -> std::io::Result<()> {
    let Some(path) = &b.record else { return Ok(()) };
    let record = Record {
        version: VERSION,
        image: b.image.clone(),
        image_id: image_id.to_string(),
        image_digests,
        inputs,
        served,
        pushed,
    };
    // Private, as every file under the cache directory: it names the
    // user's files and their hashes.
    let files: Vec<&Vec<(String, String)>> = record.served.iter().map(|s| &s.files).collect();
    write_private(&files_path(path), &serde_json::to_vec(&files)?)?;
    write_private(path, &serde_json::to_vec(&record)?)
}

fn files_path(record: &Path) -> std::path::PathBuf {
    record.with_extension("files.json")
}

/// One file that differs from what the last build was shown.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileChange {
    /// `changed`, `added` or `removed`.
    pub kind: &'static str,
    /// The path, relative to the directory served.
    pub path: String,
}

/// Which files differ from what the last build was shown, per request the daemon made (its
/// local directory name: `context`, `dockerfile`, `_ctx_NAME`), replaying each request's
/// filters. `None` when cbuild cannot tell (no record, or a directory it cannot read).
pub async fn changes(b: &ServiceBuild) -> Option<Vec<(String, Vec<FileChange>)>> {
    let path = b.record.as_ref()?;
    let record = load(path)?;
    let before: Vec<Vec<(String, String)>> =
        serde_json::from_slice(&std::fs::read(files_path(path)).ok()?).ok()?;
    let mut out = Vec::new();
    for (served, old) in record.served.iter().zip(before) {
        let local = b.session.locals.get(&served.local)?.clone();
        let opts = served.opts.clone();
        let now = tokio::task::spawn_blocking(move || listing_files(&local, &opts))
            .await
            .ok()?
            .ok()?;
        let old: BTreeMap<String, String> = old.into_iter().collect();
        let new: BTreeMap<String, String> = now.into_iter().collect();
        let mut list = Vec::new();
        for (p, f) in &new {
            match old.get(p) {
                Some(o) if o != f => list.push(FileChange {
                    kind: "changed",
                    path: p.clone(),
                }),
                Some(_) => {}
                None => list.push(FileChange {
                    kind: "added",
                    path: p.clone(),
                }),
            }
        }
        for p in old.keys().filter(|p| !new.contains_key(*p)) {
            list.push(FileChange {
                kind: "removed",
                path: p.clone(),
            });
        }
        out.push((served.local.clone(), list));
    }
    Some(out)
}

/// Which files changed since the last build, in words (`changed `a`;
/// added `b``), for the first request whose listing differs. `None` when
/// cbuild cannot tell (no record, or the listings agree).
pub async fn what_changed(b: &ServiceBuild) -> Option<String> {
    for (_, list) in changes(b).await? {
        let mut parts = Vec::new();
        for what in ["changed", "added", "removed"] {
            let names: Vec<&String> = list
                .iter()
                .filter(|c| c.kind == what)
                .map(|c| &c.path)
                .collect();
            if names.is_empty() {
                continue;
            }
            let mut shown: Vec<String> = names.iter().take(5).map(|p| format!("`{p}`")).collect();
            if names.len() > 5 {
                shown.push(format!("and {} more", names.len() - 5));
            }
            parts.push(format!("{what} {}", shown.join(", ")));
        }
        if !parts.is_empty() {
            return Some(parts.join("; "));
        }
    }
    None
}

/// Forgets the record (after a failed build).
pub fn forget(b: &ServiceBuild) {
    if let Some(p) = &b.record {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(image_id: &str, digests: &[&str]) -> Record {
        Record {
            version: VERSION,
            image: "app".into(),
            image_id: image_id.into(),
            image_digests: digests.iter().map(|d| d.to_string()).collect(),
            inputs: String::new(),
            served: Vec::new(),
            pushed: BTreeMap::new(),
        }
    }

    fn engine_image(id: &str, repo_digests: &[&str]) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            repo_digests: repo_digests.iter().map(|d| d.to_string()).collect(),
            ..Default::default()
        }
    }

    /// A build recorded config `sha256:c` and manifest `sha256:m`.
    #[test]
    fn the_image_is_recognised_on_either_image_store() {
        let r = record("sha256:c", &["sha256:c", "sha256:m"]);
        // Classic store: the ID is the config digest.
        assert!(r.is_image(&engine_image("sha256:c", &[])));
        // containerd store: the ID is the manifest digest.
        assert!(r.is_image(&engine_image("sha256:m", &[])));
        // containerd store naming an index, with the manifest among the
        // repo digests.
        assert!(r.is_image(&engine_image("sha256:i", &["sha256:m"])));
        // Another image, on either store.
        assert!(!r.is_image(&engine_image("sha256:x", &[])));
        assert!(!r.is_image(&engine_image("sha256:x", &["sha256:y"])));
    }

    /// A record written before the digests were kept still matches the
    /// classic store, and nothing else.
    #[test]
    fn an_old_record_matches_by_config_digest_only() {
        let old: Record = serde_json::from_str(
            r#"{"version":1,"image":"app","image_id":"sha256:c","inputs":"","served":[]}"#,
        )
        .unwrap();
        assert!(old.is_image(&engine_image("sha256:c", &[])));
        assert!(!old.is_image(&engine_image("sha256:m", &[])));
    }
}
