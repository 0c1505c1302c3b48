//! Build records in the registry: "up to date" that travels with the image.
//!
//! After a successful `--push`, cbuild stores the service's build record
//! as a small OCI artifact in the image's own repository, under the tag
//! `cbuild-<first 32 hex of the options digest>`. A tag, not a referrer of
//! the image manifest: the lookup must start from what a fresh clone can
//! compute before anything is built (the image digest is what it looks
//! for), and distribution 2.8 registries have no referrers API. The tag
//! holds the latest push for those options; a build of other files under
//! the same options replaces it.
//!
//! The record says what the build was made of, in content only: the
//! options (every solve option from [`super::fresh::inputs_value`], with
//! image names and machine paths dropped) and the base image IDs, hashed
//! into the *options digest*; every DiffCopy request BuildKit made (the
//! local name and its filters) with the listing digest of what it was
//! shown ([`crate::context::digest`]: names, modes, sizes, content hashes;
//! no mtimes, inodes, owners, cache generations or directories); the
//! *input digest* over both; and the manifest digest pushed under each
//! name. A clone elsewhere, with no cache, computes the same digests.
//!
//! Before a `--push` build (or one with `--remote-records`) the record for
//! the current options is read and checked: the blob's and manifest's
//! digests against their bytes, the record's own input digest and seal
//! against its content, the options digest against this build's; then its
//! requests are replayed against the files here (only the files they cover
//! are hashed). If all agree and the registry still holds the recorded
//! image, no solve runs and the service is "up to date (registry)":
//! - with `--push`, every name the service tags is pointed at that
//!   manifest (a manifest PUT within the repository; nothing is pulled, the
//!   engine does not need the image for a push);
//! - without, the build would have loaded the image into the engine, so
//!   the engine pulls it, by digest (whatever the tags point at by now),
//!   and tags it with every name the service tags; the local build record
//!   is written as a build would have, so the next run is up to date here
//!   without asking the registry. The registry is not written to.
//!
//! A record that is absent means: build. One that cannot be read, does
//! not check out or names a missing image, a registry that cannot be asked,
//! or a pull that fails, is never trusted: one warning line, and the build
//! runs as if there were none.
//!
//! The seal is no signature: whoever may push to the repository may write
//! a record, as they may push the image itself. It catches corruption and
//! an edited record whose digests were not recomputed.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::context::listing::{Listing, Purpose, Served};
use crate::engine::{Engine, RegistryAuth};
use crate::registry::{Credentials, Reference, Registry};

use super::plan::ServiceBuild;

const VERSION: u32 = 1;
/// The tag prefix of records.
pub const TAG_PREFIX: &str = "cbuild-";
/// The media type of a record (the artifact's config blob).
pub const RECORD_TYPE: &str = "application/vnd.cbuild.record.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A build record as stored in the registry.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RemoteRecord {
    /// The format version.
    pub version: u32,
    /// The service it was built for (for people reading it).
    pub service: String,
    /// The options digest (`blake3:` of `options`).
    pub key: String,
    /// The input digest: options and every listing digest.
    pub inputs: String,
    /// The solve options and base image IDs, as hashed into `key`.
    pub options: serde_json::Value,
    /// The requests BuildKit made, with the listing digest of each.
    pub served: Vec<Served>,
    /// The manifest digest pushed under each name.
    pub pushed: BTreeMap<String, String>,
    /// `blake3:` of the record with this field empty.
    pub seal: String,
}

/// The content-only options of a build, or `None` when its result cannot
/// be vouched for by content here: a remote or uploaded context, or a base
/// image the engine does not hold (its ID is what says which base it is).
pub fn remote_options(
    b: &ServiceBuild,
    bases: &BTreeMap<String, String>,
) -> Option<serde_json::Value> {
    if b.solve.frontend_attrs.contains_key("context") || b.session.locals.is_empty() {
        return None;
    }
    if bases.values().any(|id| id == "missing") {
        return None;
    }
    let mut v = super::fresh::inputs_value(b, bases);
    // Names say where an image goes, not what it is; `src`/`dest` of local
    // caches and exporters are places on this machine.
    let drop = |entry: &mut serde_json::Value, keys: &[&str]| {
        if let Some(attrs) = entry.get_mut(1).and_then(|a| a.as_object_mut()) {
            for k in keys {
                attrs.remove(*k);
            }
        }
    };
    for (list, keys) in [
        ("exporters", &["name", "dest"][..]),
        ("cache_imports", &["src", "dest"][..]),
        ("cache_exports", &["src", "dest"][..]),
    ] {
        if let Some(entries) = v.get_mut(list).and_then(|l| l.as_array_mut()) {
            entries.iter_mut().for_each(|e| drop(e, keys));
        }
    }
    Some(v)
}

fn digest_of(text: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(text).to_hex())
}

/// The options digest.
pub fn key(options: &serde_json::Value) -> String {
    digest_of(options.to_string().as_bytes())
}

/// The input digest of `key` and the listings `served`.
pub fn input_digest(key: &str, served: &[Served]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"cbuild-remote-inputs-v1\0");
    h.update(key.as_bytes());
    h.update(b"\0");
    for s in served {
        let opts = serde_json::to_string(&s.opts).unwrap_or_default();
        for part in [&s.local, &opts, &s.digest] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
    }
    format!("blake3:{}", h.finalize().to_hex())
}

/// The tag the record of options digest `key` lives under.
pub fn tag(key: &str) -> String {
    let hex = key.split_once(':').map(|(_, h)| h).unwrap_or(key);
    format!("{TAG_PREFIX}{}", &hex[..hex.len().min(32)])
}

impl RemoteRecord {
    /// A sealed record.
    pub fn new(
        service: &str,
        options: serde_json::Value,
        served: Vec<Served>,
        pushed: BTreeMap<String, String>,
    ) -> Self {
        let key = key(&options);
        let mut r = RemoteRecord {
            version: VERSION,
            service: service.to_string(),
            inputs: input_digest(&key, &served),
            key,
            options,
            served,
            pushed,
            seal: String::new(),
        };
        r.seal = r.compute_seal();
        r
    }

    fn compute_seal(&self) -> String {
        let mut bare = self.clone();
        bare.seal.clear();
        digest_of(&serde_json::to_vec(&bare).unwrap_or_default())
    }

    /// Why the record does not check out against itself, if it does not.
    pub fn verify(&self) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!("it has format version {}", self.version));
        }
        if self.seal != self.compute_seal() {
            return Err("its seal does not match its content".into());
        }
        if self.key != key(&self.options) {
            return Err("its options digest does not match its options".into());
        }
        if self.inputs != input_digest(&self.key, &self.served) {
            return Err("its input digest does not match its content".into());
        }
        Ok(())
    }

    /// The artifact manifest and the record blob.
    fn artifact(&self) -> (Bytes, Bytes) {
        let blob = Bytes::from(serde_json::to_vec(self).unwrap_or_default());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": RECORD_TYPE,
            "config": {
                "mediaType": RECORD_TYPE,
                "digest": crate::registry::sha256(&blob),
                "size": blob.len(),
            },
            "layers": [],
            "annotations": {"dev.cbuild.service": self.service},
        });
        (Bytes::from(manifest.to_string()), blob)
    }
}

/// What the registry says about a build's inputs.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// The registry holds an image built from exactly these inputs (now
    /// under every name the service tags, when asked to point them).
    Found(Found),
    /// No record for these options, or one for other files: build.
    Absent(String),
    /// A record or registry that cannot be trusted: build, after one
    /// warning line saying this.
    Untrusted(String),
}

/// A build of exactly the current inputs, held by the registry.
#[derive(Debug, PartialEq)]
pub struct Found {
    /// Its manifest digest, in the record's repository.
    pub manifest: String,
    /// The record's requests as replayed here, with each file's
    /// fingerprint (for the local record, which says what changed later).
    pub served: Vec<Served>,
}

/// The registry and repository records of `b` live in: those of its first
/// name.
fn home(b: &ServiceBuild) -> Option<Reference> {
    Reference::parse(b.tagged_names().first()?).ok()
}

/// An error with its causes, in one line.
fn said(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// Stores the record of a pushed build of `b`; the tag it went under.
pub async fn publish(
    registry: &Registry,
    creds: &Credentials,
    b: &ServiceBuild,
    options: serde_json::Value,
    served: Vec<Served>,
    pushed: BTreeMap<String, String>,
) -> Result<String, String> {
    let home = home(b).ok_or("the service has no name to push to")?;
    let record = RemoteRecord::new(&b.service, options, served, pushed);
    let (manifest, blob) = record.artifact();
    registry
        .put_blob(&home.registry, &home.repository, blob, creds)
        .await
        .map_err(|e| said(&e))?;
    let at = Reference {
        reference: tag(&record.key),
        ..home
    };
    registry
        .put_manifest(&at, MANIFEST_TYPE, manifest, creds)
        .await
        .map_err(|e| said(&e))?;
    Ok(format!(
        "{}/{}:{}",
        at.registry, at.repository, at.reference
    ))
}

/// Reads and checks the record for `options`, without replaying it.
async fn fetch(
    registry: &Registry,
    creds: &Credentials,
    home: &Reference,
    options: &serde_json::Value,
) -> Result<Option<RemoteRecord>, String> {
    let k = key(options);
    let at = Reference {
        reference: tag(&k),
        ..home.clone()
    };
    let name = format!("{}/{}:{}", at.registry, at.repository, at.reference);
    let Some(manifest) = registry
        .manifest(&at, creds)
        .await
        .map_err(|e| format!("cannot read the build record `{name}`: {}", said(&e)))?
    else {
        return Ok(None);
    };
    let bad = |why: &str| format!("the build record `{name}` is not trusted: {why}");
    #[derive(serde::Deserialize)]
    struct Descriptor {
        #[serde(rename = "mediaType")]
        media_type: String,
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct Artifact {
        config: Descriptor,
    }
    let artifact: Artifact = serde_json::from_slice(&manifest.body)
        .map_err(|e| bad(&format!("its manifest is unreadable ({e})")))?;
    if artifact.config.media_type != RECORD_TYPE {
        return Err(bad(&format!(
            "it is a `{}`, not a cbuild record",
            artifact.config.media_type
        )));
    }
    let blob = registry
        .blob(&at.registry, &at.repository, &artifact.config.digest, creds)
        .await
        .map_err(|e| bad(&said(&e)))?
        .ok_or_else(|| bad("the registry has no record blob"))?;
    let record: RemoteRecord =
        serde_json::from_slice(&blob).map_err(|e| bad(&format!("it is unreadable ({e})")))?;
    record.verify().map_err(|why| bad(&why))?;
    if record.key != k {
        return Err(bad("it was stored for other options"));
    }
    Ok(Some(record))
}

/// Whether the registry holds an image of `b` built from exactly its
/// current inputs, and if so, with `point`, points every name `b` tags at
/// it (without, the registry is only read).
pub async fn lookup(
    registry: &Registry,
    creds: &Credentials,
    b: &ServiceBuild,
    options: &serde_json::Value,
    point: bool,
) -> Lookup {
    let Some(home) = home(b) else {
        return Lookup::Absent("the service has no name to push to".into());
    };
    let record = match fetch(registry, creds, &home, options).await {
        Ok(Some(r)) => r,
        Ok(None) => return Lookup::Absent("the registry has no record of these options".into()),
        Err(why) => return Lookup::Untrusted(why),
    };
    let mut replayed = Vec::new();
    for served in &record.served {
        let Some(local) = b.session.locals.get(&served.local).cloned() else {
            return Lookup::Absent(format!("`{}` is no longer part of the build", served.local));
        };
        let opts = served.opts.clone();
        let listing = tokio::task::spawn_blocking(move || {
            Listing::new(&local, &opts, Purpose::Files)?.finish(Purpose::Files, &Default::default())
        })
        .await;
        match listing {
            Ok(Ok((d, files))) if d == served.digest => replayed.push(Served {
                files,
                ..served.clone()
            }),
            Ok(Ok(_)) => {
                return Lookup::Absent(format!(
                    "the registry's record is of other files in `{}`",
                    served.local
                ))
            }
            Ok(Err(e)) => return Lookup::Absent(format!("cannot list `{}`: {e}", served.local)),
            Err(e) => return Lookup::Absent(format!("cannot list `{}`: {e}", served.local)),
        }
    }
    // The image pushed to the record's own repository; every name was
    // pushed with the same manifest.
    let image = record.pushed.iter().find_map(|(name, digest)| {
        let r = Reference::parse(name).ok()?;
        (r.registry == home.registry && r.repository == home.repository).then(|| digest.clone())
    });
    let Some(image) = image else {
        return Lookup::Untrusted(format!(
            "the build record of `{}` names no image in `{}/{}`",
            b.service, home.registry, home.repository
        ));
    };
    let by_digest = Reference {
        reference: image.clone(),
        ..home.clone()
    };
    let manifest = match registry.manifest(&by_digest, creds).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Lookup::Untrusted(format!(
            "the build record of `{}` refers to `{}/{}@{image}`, which the registry does not hold",
            b.service, home.registry, home.repository
        ))
        }
        Err(e) => {
            return Lookup::Untrusted(format!(
                "cannot read the image the build record of `{}` names: {}",
                b.service,
                said(&e)
            ))
        }
    };
    let found = Found {
        manifest: image.clone(),
        served: replayed,
    };
    if !point {
        return Lookup::Found(found);
    }
    for name in b.tagged_names() {
        let Ok(r) = Reference::parse(&name) else {
            return Lookup::Absent(format!("`{name}` is no image reference"));
        };
        match registry.manifest_digest(&r, creds).await {
            Ok(Some(d)) if d == image => continue,
            Ok(_) => {}
            Err(e) => return Lookup::Untrusted(format!("cannot check `{name}`: {}", said(&e))),
        }
        if r.registry != home.registry || r.repository != home.repository {
            // Another repository would need its blobs mounted first.
            return Lookup::Absent(format!("`{name}` is in another repository than the record"));
        }
        if let Err(e) = registry
            .put_manifest(&r, &manifest.media_type, manifest.body.clone(), creds)
            .await
        {
            return Lookup::Untrusted(format!("cannot tag `{name}` in the registry: {}", said(&e)));
        }
    }
    Lookup::Found(found)
}

/// A service made up to date from the registry.
#[derive(Debug, PartialEq)]
pub struct Hit {
    /// The image: its manifest digest (pushed), or the ID the engine
    /// gives the image it pulled.
    pub image_id: String,
    /// Whether the engine pulled it.
    pub pulled: bool,
}

/// Whether the registry holds an image of `b` built from exactly its
/// current inputs. With `--push` every name `b` tags then points at it in
/// the registry; without, `engine` (where the build would have loaded the
/// image) pulls it and tags it, and the local record is written. Anything
/// that cannot be trusted or fails is said in one warning line (`None`: build).
pub async fn check(b: &ServiceBuild, engine: &Engine, pusher: &super::push::Pusher) -> Option<Hit> {
    let pull = !b.push;
    // An image that would not be stored in the engine (an `outputs:` to
    // files) is not what a pull gives.
    if pull && !super::export::stores_locally(b) {
        return None;
    }
    // An engine pulls one platform of an index; the build stores them all.
    if pull && b.platforms.is_multi() {
        tracing::info!(service = %b.service, "building: a pull would bring one of its platforms");
        return None;
    }
    let bases = super::fresh::base_ids(engine, &b.bases).await;
    let options = remote_options(b, &bases)?;
    let home = home(b)?;
    let creds = match pusher.credentials(&home.registry).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "cannot look up the build record of `{}`: {e}; building it",
                b.service
            );
            return None;
        }
    };
    match lookup(pusher.registry(), &creds, b, &options, !pull).await {
        Lookup::Found(found) if !pull => Some(Hit {
            image_id: found.manifest,
            pulled: false,
        }),
        Lookup::Found(found) => match pull_into(engine, &creds, &home, b, &bases, found).await {
            Ok(image_id) => Some(Hit {
                image_id,
                pulled: true,
            }),
            Err(why) => {
                tracing::warn!("{why}; building `{}`", b.service);
                None
            }
        },
        Lookup::Absent(why) => {
            tracing::info!(service = %b.service, "building: {why}");
            None
        }
        Lookup::Untrusted(why) => {
            tracing::warn!("{why}; building `{}`", b.service);
            None
        }
    }
}

/// Pulls the image `found` names into `engine` by digest, gives it every
/// name `b` tags, and records it as the current build of `b` here; the ID
/// the engine gives it.
async fn pull_into(
    engine: &Engine,
    creds: &Credentials,
    home: &Reference,
    b: &ServiceBuild,
    bases: &BTreeMap<String, String>,
    found: Found,
) -> Result<String, String> {
    // The repository as the service names it (`name` without its tag), so
    // the engine resolves it, and finds its credentials, as for a push.
    let first = b.tagged_names().into_iter().next().unwrap_or_default();
    let repo = untagged(&first);
    let auth = RegistryAuth {
        username: creds.username.clone(),
        password: creds.password.clone(),
        server: home.registry.clone(),
    };
    let failed = |e: &dyn std::error::Error| {
        format!(
            "cannot pull the image the build record of `{}` names: {}",
            b.service,
            said(e)
        )
    };
    engine
        .pull(repo, &found.manifest, &auth)
        .await
        .map_err(|e| failed(&e))?;
    let pulled = format!("{repo}@{}", found.manifest);
    let image = match engine.image(&pulled).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Err(format!(
                "the engine does not show `{pulled}` after pulling it (the build record of `{}` names it)",
                b.service
            ))
        }
        Err(e) => return Err(failed(&e)),
    };
    for name in b.tagged_names() {
        engine.tag(&pulled, &name).await.map_err(|e| {
            let mut m = failed(&e);
            m.push_str(&format!(" (tagging it `{name}`)"));
            m
        })?;
    }
    // The engine names the image by its config digest (graph driver) or
    // its manifest digest (containerd store): the record knows both, as
    // after a build.
    let mut digests = vec![image.id.clone()];
    if found.manifest != image.id {
        digests.push(found.manifest.clone());
    }
    let inputs = super::fresh::inputs_digest(b, bases);
    if let Err(e) = super::fresh::save(b, inputs, &image.id, digests, found.served, BTreeMap::new())
    {
        tracing::warn!("cannot record the pull of `{}`: {e}", b.service);
    }
    Ok(image.id)
}

/// `name` without its tag or digest (`host:port/repo:tag` → `host:port/repo`).
fn untagged(name: &str) -> &str {
    let name = name.split_once('@').map(|(n, _)| n).unwrap_or(name);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

/// Stores the record of a pushed build of `b`; a failure is one warning
/// line (the push itself succeeded).
pub async fn store(
    pusher: &super::push::Pusher,
    b: &ServiceBuild,
    options: serde_json::Value,
    served: Vec<Served>,
    pushed: BTreeMap<String, String>,
) {
    let Some(home) = home(b) else { return };
    let result = match pusher.credentials(&home.registry).await {
        Ok(creds) => publish(pusher.registry(), &creds, b, options, served, pushed).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(at) => tracing::info!(service = %b.service, "stored the build record `{at}`"),
        Err(e) => tracing::warn!(
            "cannot store the build record of `{}` in the registry: {e}",
            b.service
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::walk::WalkOptions;

    fn record() -> RemoteRecord {
        RemoteRecord::new(
            "app",
            serde_json::json!({"attrs": {"filename": "Dockerfile"}}),
            vec![Served {
                local: "context".into(),
                opts: WalkOptions {
                    include_patterns: vec!["src".into()],
                    ..Default::default()
                },
                digest: "blake3:aa".into(),
                files: Vec::new(),
            }],
            [("reg/app:v1".to_string(), "sha256:m".to_string())].into(),
        )
    }

    #[test]
    fn a_sealed_record_checks_out_and_survives_the_round_trip() {
        let r = record();
        r.verify().unwrap();
        let back: RemoteRecord = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        back.verify().unwrap();
        assert_eq!(back, r);
        assert_eq!(tag(&r.key).len(), TAG_PREFIX.len() + 32);
    }

    #[test]
    fn the_repository_to_pull_is_the_name_without_its_tag() {
        assert_eq!(untagged("127.0.0.1:5000/a/app:v1"), "127.0.0.1:5000/a/app");
        assert_eq!(untagged("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
        assert_eq!(untagged("app@sha256:ab"), "app");
        assert_eq!(untagged("app:v1@sha256:ab"), "app");
        assert_eq!(untagged("app"), "app");
    }

    #[test]
    fn an_edited_record_is_refused() {
        let mut r = record();
        r.pushed.insert("reg/app:v1".into(), "sha256:evil".into());
        assert!(r.verify().unwrap_err().contains("seal"));
        // Resealed, but the listing changed without its input digest.
        let mut r = record();
        r.served[0].digest = "blake3:bb".into();
        r.seal = r.compute_seal();
        assert!(r.verify().unwrap_err().contains("input digest"));
        let mut r = record();
        r.options = serde_json::json!({});
        r.seal = r.compute_seal();
        assert!(r.verify().unwrap_err().contains("options digest"));
    }
}
