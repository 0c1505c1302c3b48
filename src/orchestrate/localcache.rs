//! `type=local` caches: what BuildKit's Go client does around a solve for
//! them (moby/buildkit `client/solve.go`), with the Compose key in every
//! message.
//!
//! Before the solve, each directory becomes a content store the session
//! serves: a `cache_to` directory is created if missing and must be
//! writable, and its `index.json`, when there is one, must be valid (cbuild
//! will write it); a `cache_from` entry gets the digest its tag has in
//! `index.json`. A `cache_from` directory without a usable cache is a
//! warning and the build goes on without it, as with buildx. After the
//! solve the daemon's `cache.manifest` is tagged in each `cache_to`
//! directory's `index.json`.
//!
//! The resolved digest is not part of the build's inputs (the plan keeps
//! the entries as written): a cache makes a build faster, it does not
//! change what the build produces.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::buildkit::session::content::layout::{Layout, LayoutError};
use crate::buildkit::{BuildResult, BuildkitError, Client, StatusUpdate};
use crate::engine::Engine;

use super::plan::ServiceBuild;

/// The cache kind served through the session.
const LOCAL: &str = "local";

/// Runs the build of `b` (see [`super::export::build`]) with its local
/// cache directories served and, once it succeeded, tagged.
pub(crate) async fn build(
    client: &Client,
    engine: Option<&Engine>,
    b: &ServiceBuild,
    progress: mpsc::UnboundedSender<StatusUpdate>,
) -> Result<BuildResult, BuildkitError> {
    let local = |e: &crate::buildkit::ExporterSpec| e.kind == LOCAL;
    if !b.solve.cache_imports.iter().any(local) && !b.solve.cache_exports.iter().any(local) {
        return super::export::build(client, engine, b, progress).await;
    }
    let original = b.clone();
    let (served, exports) = tokio::task::spawn_blocking(move || prepare(&original))
        .await
        .map_err(|e| failed(format!("preparing the cache directories stopped: {e}")))??;
    let result = super::export::build(client, engine, &served, progress).await;
    report_damage(b, &served);
    let result = result.map_err(|e| name_entry(b, e))?;
    let manifest = result
        .outcome
        .exporter_response
        .get("cache.manifest")
        .cloned();
    let service = b.service.clone();
    tokio::task::spawn_blocking(move || finish(&service, manifest.as_deref(), &exports))
        .await
        .map_err(|e| failed(format!("updating the cache index stopped: {e}")))??;
    Ok(result)
}

fn failed(message: String) -> BuildkitError {
    BuildkitError::Solve { message }
}

/// A `cache_to` directory to tag after the build: its layout, the tag, the
/// entry's index.
type Export = (Arc<Layout>, String, usize);

/// `b` as the session will serve it (stores added, imports resolved or
/// dropped), and the exports to tag afterwards.
fn prepare(b: &ServiceBuild) -> Result<(ServiceBuild, Vec<Export>), BuildkitError> {
    let mut served = b.clone();
    let key = |list: &str, i: usize| format!("`services.{}.build.{list}[{i}]`", b.service);
    let mut exports = Vec::new();
    for (i, e) in b.solve.cache_exports.iter().enumerate() {
        if e.kind != LOCAL {
            continue;
        }
        let dir = e.attrs.get("dest").cloned().unwrap_or_default();
        let err = |e: LayoutError| {
            failed(format!(
                "{}: cannot export the cache to `{dir}`: {e}",
                key("cache_to", i)
            ))
        };
        let layout = Arc::new(Layout::create(dir.as_ref()).map_err(err)?);
        // Written after the build: a file cbuild cannot read is left as
        // it is, and the build does not start.
        layout.read_index().map_err(|e| {
            failed(format!(
                "{}: {e}; cbuild does not write over it: repair or move `index.json`, or export to another directory",
                key("cache_to", i)
            ))
        })?;
        let tag = e
            .attrs
            .get("tag")
            .cloned()
            .unwrap_or_else(|| "latest".into());
        served.session.content.insert(&dir, layout.clone());
        exports.push((layout, tag, i));
    }
    let mut imports = Vec::new();
    for (i, e) in b.solve.cache_imports.iter().enumerate() {
        if e.kind != LOCAL {
            imports.push(e.clone());
            continue;
        }
        let dir = e.attrs.get("src").cloned().unwrap_or_default();
        let skip = |why: String| {
            tracing::warn!(
                "{}: {why}; building without this cache",
                key("cache_from", i)
            );
        };
        let layout = match served.session.content.get(&dir) {
            Some(l) => l.clone(),
            None => match Layout::open(dir.as_ref()) {
                Ok(l) => Arc::new(l),
                Err(LayoutError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    skip(format!("the cache directory `{dir}` does not exist"));
                    continue;
                }
                Err(e) => {
                    skip(format!("cannot use the cache directory: {e}"));
                    continue;
                }
            },
        };
        let digest = match e.attrs.get("digest") {
            Some(d) => match crate::buildkit::session::content::layout::Digest::parse(d) {
                Ok(d) => d,
                Err(e) => {
                    skip(e.to_string());
                    continue;
                }
            },
            None => {
                let tag = e.attrs.get("tag").map(String::as_str).unwrap_or("latest");
                match layout.find_tag(tag) {
                    Ok(Some(d)) => d,
                    Ok(None) => {
                        skip(format!("no cache tagged `{tag}` in `{dir}/index.json`"));
                        continue;
                    }
                    Err(e) => {
                        skip(e.to_string());
                        continue;
                    }
                }
            }
        };
        match layout.has(&digest) {
            Ok(true) => {}
            Ok(false) => {
                skip(format!(
                    "the cache manifest {digest} is missing from `{dir}`"
                ));
                continue;
            }
            // Damaged content is not a cache that is absent: say so.
            Err(e) => {
                return Err(failed(format!(
                    "{}: {e}; export the cache again to a new directory",
                    key("cache_from", i)
                )))
            }
        }
        let mut e = e.clone();
        e.attrs.insert("digest".into(), digest.to_string());
        served.session.content.insert(&dir, layout);
        imports.push(e);
    }
    served.solve.cache_imports = imports;
    Ok((served, exports))
}

/// Tags the cache manifest the daemon reported in each export directory.
fn finish(service: &str, manifest: Option<&str>, exports: &[Export]) -> Result<(), BuildkitError> {
    let Some(manifest) = manifest else {
        if let Some((layout, _, i)) = exports.first() {
            tracing::warn!(
                "`services.{service}.build.cache_to[{i}]`: the builder reported no cache manifest; `{}/index.json` is unchanged",
                layout.root().display()
            );
        }
        return Ok(());
    };
    for (layout, tag, i) in exports {
        let err = |why: String| {
            failed(format!(
                "`services.{service}.build.cache_to[{i}]`: the cache was written to `{}` but could not be tagged `{tag}`: {why}",
                layout.root().display()
            ))
        };
        let desc: serde_json::Value = serde_json::from_str(manifest)
            .map_err(|e| err(format!("the builder's cache manifest is not JSON: {e}")))?;
        layout.tag(&desc, tag).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// Says which blobs of the `cache_from` directories were found damaged.
/// BuildKit takes such a read error as a cache miss and runs the step
/// instead, so the build itself is right; the directory is not.
fn report_damage(b: &ServiceBuild, served: &ServiceBuild) {
    for (i, e) in b.solve.cache_imports.iter().enumerate() {
        let Some(layout) = e
            .attrs
            .get("src")
            .filter(|_| e.kind == LOCAL)
            .and_then(|dir| served.session.content.get(dir))
        else {
            continue;
        };
        for damage in layout.damaged() {
            tracing::warn!(
                "`services.{}.build.cache_from[{i}]`: {damage} (the steps it held were run again)",
                b.service
            );
        }
    }
}

/// A failed build whose error names one of `b`'s local cache directories
/// (the session's store put it in the status it answered the daemon with)
/// is said with that entry's key.
fn name_entry(b: &ServiceBuild, e: BuildkitError) -> BuildkitError {
    let BuildkitError::Solve { message } = &e else {
        return e;
    };
    let dirs = |list: &'static str, entries: &[crate::buildkit::ExporterSpec], attr: &str| {
        entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == LOCAL)
            .filter_map(|(i, e)| Some((list, i, e.attrs.get(attr)?.clone())))
            .collect::<Vec<_>>()
    };
    let exports = dirs("cache_to", &b.solve.cache_exports, "dest");
    let imports = dirs("cache_from", &b.solve.cache_imports, "src");
    let writing = exports
        .iter()
        .find(|(_, _, d)| message.contains(&format!("cannot write to the cache directory `{d}`")));
    let named = writing.or_else(|| {
        imports
            .iter()
            .chain(&exports)
            .find(|(_, _, d)| message.contains(&format!("`{d}`")))
    });
    match named {
        Some((list, i, _)) => failed(format!(
            "`services.{}.build.{list}[{i}]`: {message}",
            b.service
        )),
        None => e,
    }
}
