//! An OCI image layout directory (`type=local` cache) as a content store:
//! `blobs/sha256/<hex>` named by their SHA-256, `index.json` naming the
//! cache manifests by tag, `oci-layout`, and `ingest/` for unfinished writes
//! (the layout containerd's local store and BuildKit's Go client use, so a
//! directory written by buildx reads here and the other way round).
//!
//! What may happen in the directory is narrow on purpose: a blob is only
//! ever created, by renaming a fully written and checked ingest file to the
//! name its digest gives (never over an existing file); `index.json` is
//! rewritten whole through a rename after a valid one was read; ingest
//! directories are our own scratch. Nothing else is deleted or changed.
//! Paths come only from digests that parse as `sha256:<64 hex>`, so no
//! request can name a file outside the directory.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ring::digest::{Context, SHA256};

/// `index.json` annotation naming a tag (OCI image spec).
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// `index.json` annotation naming a full image name (containerd).
const IMAGE_NAME: &str = "io.containerd.image.name";

/// A content digest cbuild accepts: `sha256:` and 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Checks `s`: anything else than a SHA-256 digest is refused, since
    /// the digest becomes a file name.
    pub fn parse(s: &str) -> Result<Self, LayoutError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| LayoutError::BadDigest(s.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(LayoutError::BadDigest(s.to_string()));
        }
        Ok(Digest(s.to_string()))
    }

    fn of(ctx: Context) -> Self {
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in ctx.finish().as_ref() {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }

    fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What went wrong in a layout directory (each kind is one gRPC code for
/// the daemon, see `content::status`).
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Not `sha256:<64 hex>`.
    #[error("`{0}` is not a sha256 digest")]
    BadDigest(String),
    /// No blob with this digest.
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// No unfinished write with this ref.
    #[error("no write in progress for ref `{0}`")]
    NoWrite(String),
    /// The blob is there already.
    #[error("blob {0} already exists")]
    Exists(Digest),
    /// Another write holds this ref.
    #[error("ref `{0}` is being written by another call")]
    Locked(String),
    /// A blob whose bytes are not what its name says.
    #[error("blob `{}` does not match its digest (its content hashes to {actual}); the cache directory is damaged: move that file away, or use a new directory", path.display())]
    Damaged {
        /// The blob file.
        path: PathBuf,
        /// What its content hashes to.
        actual: Digest,
    },
    /// A commit whose bytes are not what the writer announced.
    #[error("{0}")]
    Mismatch(String),
    /// A read or write offset outside the data.
    #[error("{0}")]
    OutOfRange(String),
    /// `index.json` is there but is not an OCI index.
    #[error("`{}` is not a valid OCI index: {why}", path.display())]
    BadIndex {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file system call failed.
    #[error("cannot {what} `{}`: {source}", path.display())]
    Io {
        /// What cbuild was doing (`create`, `read`…).
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
}

impl LayoutError {
    fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| LayoutError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// One layout directory, as served to one session.
#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
    /// Refs with a write in progress in this process.
    writing: Mutex<HashSet<String>>,
    /// Blobs whose content was hashed and matched during this session.
    verified: Mutex<HashSet<Digest>>,
    /// Blobs found damaged during this session (the daemon, told so, may
    /// quietly rebuild instead of failing: cbuild says it afterwards).
    damaged: Mutex<Vec<String>>,
}

/// The state of an unfinished write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestStatus {
    /// The ref the writer chose.
    pub r#ref: String,
    /// Bytes written so far.
    pub offset: u64,
    /// The size announced (0: none).
    pub total: i64,
    /// When the write began.
    pub started: SystemTime,
    /// When it last changed.
    pub updated: SystemTime,
}

impl Layout {
    /// The layout at `root`, which must be a directory (nothing is created).
    pub fn open(root: &Path) -> Result<Self, LayoutError> {
        let meta = fs::metadata(root).map_err(LayoutError::io("open", root))?;
        if !meta.is_dir() {
            return Err(LayoutError::Io {
                what: "open",
                path: root.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Ok(Layout {
            root: root.to_path_buf(),
            writing: Mutex::default(),
            verified: Mutex::default(),
            damaged: Mutex::default(),
        })
    }

    /// The layout at `root`, created if missing, checked writable (by
    /// creating its `ingest` directory, as the first write would).
    pub fn create(root: &Path) -> Result<Self, LayoutError> {
        fs::create_dir_all(root).map_err(LayoutError::io("create", root))?;
        let ingest = root.join("ingest");
        fs::create_dir_all(&ingest).map_err(LayoutError::io("create", &ingest))?;
        Self::open(root)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(d.hex())
    }

    /// The size of blob `d` (from the file system: no content check).
    pub fn size(&self, d: &Digest) -> Result<(u64, SystemTime), LayoutError> {
        let path = self.blob_path(d);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok((m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH))),
            Ok(_) => Err(LayoutError::NotFound(d.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(LayoutError::NotFound(d.clone())),
            Err(e) => Err(LayoutError::Io {
                what: "read",
                path,
                source: e,
            }),
        }
    }

    /// Blob `d`, opened after its whole content was checked against `d`
    /// (once per session), and its size. A damaged blob never reaches the
    /// daemon: BuildKit does not check what a content store gives it.
    pub fn open_blob(&self, d: &Digest) -> Result<(File, u64), LayoutError> {
        let path = self.blob_path(d);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::NotFound(d.clone()))
            }
            Err(e) => return Err(LayoutError::io("read", &path)(e)),
        };
        let len = f.metadata().map_err(LayoutError::io("read", &path))?.len();
        let known = self.verified.lock().map(|v| v.contains(d)).unwrap_or(false);
        if !known {
            let mut ctx = Context::new(&SHA256);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).map_err(LayoutError::io("read", &path))?;
                if n == 0 {
                    break;
                }
                ctx.update(&buf[..n]);
            }
            let actual = Digest::of(ctx);
            if &actual != d {
                let e = LayoutError::Damaged { path, actual };
                if let Ok(mut list) = self.damaged.lock() {
                    let text = e.to_string();
                    if !list.contains(&text) {
                        list.push(text);
                    }
                }
                return Err(e);
            }
            if let Ok(mut v) = self.verified.lock() {
                v.insert(d.clone());
            }
            f.seek(SeekFrom::Start(0))
                .map_err(LayoutError::io("read", &path))?;
        }
        Ok((f, len))
    }

    /// What was found damaged in this session, one sentence per blob.
    pub fn damaged(&self) -> Vec<String> {
        self.damaged.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Whether blob `d` is present and intact; `Damaged` if present with
    /// other bytes.
    pub fn has(&self, d: &Digest) -> Result<bool, LayoutError> {
        match self.open_blob(d) {
            Ok(_) => Ok(true),
            Err(LayoutError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn ingest_dir(&self, r: &str) -> PathBuf {
        let hash = ring::digest::digest(&SHA256, r.as_bytes());
        let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        self.root.join("ingest").join(hex)
    }

    /// The unfinished write `r`.
    pub fn status(&self, r: &str) -> Result<IngestStatus, LayoutError> {
        let dir = self.ingest_dir(r);
        let data = dir.join("data");
        let meta = match fs::metadata(&data) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::NoWrite(r.to_string()))
            }
            Err(e) => return Err(LayoutError::io("read", &data)(e)),
        };
        let read = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
        let updated = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        Ok(IngestStatus {
            r#ref: r.to_string(),
            offset: meta.len(),
            total: read("total").trim().parse().unwrap_or(0),
            started: read("startedat")
                .trim()
                .parse::<u64>()
                .ok()
                .map(|ns| SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(ns))
                .unwrap_or(updated),
            updated,
        })
    }

    /// Drops the unfinished write `r` (its ingest directory, which only
    /// this store writes).
    pub fn abort(&self, r: &str) -> Result<(), LayoutError> {
        let dir = self.ingest_dir(r);
        if self.writing.lock().map(|w| w.contains(r)).unwrap_or(false) {
            return Err(LayoutError::Locked(r.to_string()));
        }
        if !dir.join("data").is_file() {
            return Err(LayoutError::NoWrite(r.to_string()));
        }
        fs::remove_dir_all(&dir).map_err(LayoutError::io("remove", &dir))
    }

    /// Starts write `r`, or resumes it where an earlier, broken call left
    /// it. `total` is the announced size (0: unknown).
    pub fn writer(self: &Arc<Self>, r: &str, total: i64) -> Result<Ingest, LayoutError> {
        {
            let mut w = self
                .writing
                .lock()
                .map_err(|_| LayoutError::Locked(r.to_string()))?;
            if !w.insert(r.to_string()) {
                return Err(LayoutError::Locked(r.to_string()));
            }
        }
        // Releases the ref if opening fails below.
        let mut ingest = Ingest {
            layout: self.clone(),
            r#ref: r.to_string(),
            dir: self.ingest_dir(r),
            file: None,
            ctx: Context::new(&SHA256),
            offset: 0,
            total,
        };
        ingest.open()?;
        Ok(ingest)
    }

    /// The `index.json` of the layout (`None` when there is none). A file
    /// that is there but does not parse as an OCI index is an error:
    /// cbuild then neither reads a digest from it nor writes over it.
    pub fn read_index(&self) -> Result<Option<serde_json::Value>, LayoutError> {
        let path = self.root.join("index.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LayoutError::io("read", &path)(e)),
        };
        let bad = |why: String| LayoutError::BadIndex {
            path: path.clone(),
            why,
        };
        let index: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let Some(obj) = index.as_object() else {
            return Err(bad("not a JSON object".into()));
        };
        match obj.get("manifests") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Array(list)) => {
                if list.iter().any(|m| !m.is_object()) {
                    return Err(bad(
                        "`manifests` holds something else than descriptors".into()
                    ));
                }
            }
            Some(_) => return Err(bad("`manifests` is not a list".into())),
        }
        Ok(Some(index))
    }

    /// The digest `index.json` gives `tag`: a manifest whose containerd
    /// image name is `tag`, else one whose OCI ref name is (the Go client's
    /// order). `Ok(None)` when there is no index or no such tag.
    pub fn find_tag(&self, tag: &str) -> Result<Option<Digest>, LayoutError> {
        let Some(index) = self.read_index()? else {
            return Ok(None);
        };
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let named = |key: &str| {
            manifests
                .iter()
                .find(|m| m["annotations"][key].as_str() == Some(tag))
        };
        let Some(m) = named(IMAGE_NAME).or_else(|| named(REF_NAME)) else {
            return Ok(None);
        };
        let path = self.root.join("index.json");
        let d = m["digest"].as_str().unwrap_or_default();
        Digest::parse(d)
            .map(Some)
            .map_err(|_| LayoutError::BadIndex {
                path,
                why: format!("the manifest tagged `{tag}` has no valid digest (`{d}`)"),
            })
    }

    /// Names `descriptor` (a cache manifest's descriptor, as the daemon
    /// reported it) `tag` in `index.json`, replacing the manifest that had
    /// that tag, as the Go client does (`client/ociindex`). Everything else
    /// in the file is kept. Writes `oci-layout` if there is none. Holds
    /// `index.json.lock` (the Go client's lock file) meanwhile.
    pub fn tag(&self, descriptor: &serde_json::Value, tag: &str) -> Result<(), LayoutError> {
        let digest = descriptor["digest"].as_str().unwrap_or_default();
        Digest::parse(digest)?;
        let lock_path = self.root.join("index.json.lock");
        let created = !lock_path.exists();
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(LayoutError::io("create", &lock_path))?;
        lock.lock().map_err(LayoutError::io("lock", &lock_path))?;
        let result = self.tag_locked(descriptor, tag);
        drop(lock);
        if created {
            let _ = fs::remove_file(&lock_path);
        }
        result
    }

    fn tag_locked(&self, descriptor: &serde_json::Value, tag: &str) -> Result<(), LayoutError> {
        let layout = self.root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let mut index = self.read_index()?.unwrap_or_else(|| serde_json::json!({}));
        let obj = index.as_object_mut().expect("read_index checked");
        obj.entry("schemaVersion").or_insert(2.into());
        obj.entry("mediaType")
            .or_insert("application/vnd.oci.image.index.v1+json".into());
        let mut desc = descriptor.clone();
        if !desc["annotations"].is_object() {
            desc["annotations"] = serde_json::json!({});
        }
        desc["annotations"][REF_NAME] = tag.into();
        let mut manifests: Vec<serde_json::Value> = obj
            .get("manifests")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        manifests.retain(|m| {
            let a = &m["annotations"];
            a[REF_NAME].as_str() != Some(tag)
                || a[IMAGE_NAME].as_str().is_some_and(|n| !n.is_empty())
        });
        manifests.push(desc);
        obj.insert("manifests".into(), manifests.into());
        let bytes = serde_json::to_vec(&index).expect("JSON values serialize");
        write_atomic(&self.root.join("index.json"), &bytes)
    }
}

/// Writes `path` whole or not at all: a temporary file beside it, renamed
/// over it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    tmp.1
        .write_all(bytes)
        .and_then(|()| tmp.1.sync_all())
        .map_err(LayoutError::io("write", &tmp.0))?;
    fs::rename(&tmp.0, path).map_err(|e| {
        let _ = fs::remove_file(&tmp.0);
        LayoutError::io("write", path)(e)
    })
}

/// A new file `.cbuild-<random>.tmp` in `dir`.
fn tempfile_in(dir: &Path) -> Result<(PathBuf, File), LayoutError> {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    let path = dir.join(format!(".cbuild-{n:016x}.tmp"));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    set_mode(&mut opts, 0o644);
    let f = opts.open(&path).map_err(LayoutError::io("create", &path))?;
    Ok((path, f))
}

#[cfg(unix)]
fn set_mode(opts: &mut OpenOptions, mode: u32) {
    use std::os::unix::fs::OpenOptionsExt;
    opts.mode(mode);
}

#[cfg(not(unix))]
fn set_mode(_: &mut OpenOptions, _: u32) {}

/// A write in progress: bytes go to `ingest/<sha256 of ref>/data`, hashed as
/// they arrive; [`commit`](Self::commit) checks them and makes them a blob.
/// Dropping it keeps the data, so a broken call can resume.
pub struct Ingest {
    layout: Arc<Layout>,
    r#ref: String,
    dir: PathBuf,
    file: Option<File>,
    ctx: Context,
    offset: u64,
    total: i64,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("ref", &self.r#ref)
            .field("offset", &self.offset)
            .finish()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if let Ok(mut w) = self.layout.writing.lock() {
            w.remove(&self.r#ref);
        }
    }
}

impl Ingest {
    fn open(&mut self) -> Result<(), LayoutError> {
        let data = self.dir.join("data");
        fs::create_dir_all(&self.dir).map_err(LayoutError::io("create", &self.dir))?;
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        set_mode(&mut opts, 0o644);
        let mut f = opts.open(&data).map_err(LayoutError::io("create", &data))?;
        // Another process writing the same ref: the caller retries later.
        if let Err(e) = f.try_lock() {
            return match e {
                fs::TryLockError::WouldBlock => Err(LayoutError::Locked(self.r#ref.clone())),
                fs::TryLockError::Error(e) => Err(LayoutError::io("lock", &data)(e)),
            };
        }
        let ref_file = self.dir.join("ref");
        if !ref_file.exists() {
            fs::write(&ref_file, &self.r#ref).map_err(LayoutError::io("write", &ref_file))?;
            let started = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let path = self.dir.join("startedat");
            fs::write(&path, started.to_string()).map_err(LayoutError::io("write", &path))?;
        }
        if self.total > 0 {
            let path = self.dir.join("total");
            fs::write(&path, self.total.to_string()).map_err(LayoutError::io("write", &path))?;
        }
        // Resuming: the digest covers the bytes already there.
        let mut buf = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(LayoutError::io("read", &data))?;
            if n == 0 {
                break;
            }
            self.ctx.update(&buf[..n]);
            offset += n as u64;
        }
        self.offset = offset;
        self.file = Some(f);
        Ok(())
    }

    /// Where the write stands.
    pub fn status(&self) -> Result<IngestStatus, LayoutError> {
        let mut s = self.layout.status(&self.r#ref)?;
        s.total = self.total;
        s.offset = self.offset;
        Ok(s)
    }

    /// The announced size (0: none).
    pub fn total(&self) -> i64 {
        self.total
    }

    /// Sets the announced size.
    pub fn set_total(&mut self, total: i64) {
        self.total = total;
    }

    /// Bytes written so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        Digest::of(self.ctx.clone())
    }

    fn data_path(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Appends `data` at `offset`, which must be where the write stands,
    /// or 0 to start over.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), LayoutError> {
        let path = self.data_path();
        let f = self.file.as_mut().expect("opened");
        if offset == 0 && self.offset > 0 {
            f.set_len(0).map_err(LayoutError::io("write", &path))?;
            f.seek(SeekFrom::Start(0))
                .map_err(LayoutError::io("write", &path))?;
            self.ctx = Context::new(&SHA256);
            self.offset = 0;
        } else if offset != self.offset {
            return Err(LayoutError::OutOfRange(format!(
                "write at {offset} must occur at the current offset {}",
                self.offset
            )));
        }
        if data.is_empty() {
            return Ok(());
        }
        f.write_all(data).map_err(LayoutError::io("write", &path))?;
        self.ctx.update(data);
        self.offset += data.len() as u64;
        Ok(())
    }

    /// Makes the bytes written blob `expected` (or blob of their own
    /// digest): checked against `total` (when > 0) and `expected`, synced,
    /// then renamed to their name under `blobs/sha256`. A blob already
    /// there is never replaced (`Exists`).
    pub fn commit(mut self, total: i64, expected: Option<&Digest>) -> Result<Digest, LayoutError> {
        if total > 0 && self.offset != total as u64 {
            return Err(LayoutError::Mismatch(format!(
                "unexpected commit size {}, expected {total}",
                self.offset
            )));
        }
        let actual = self.digest();
        if let Some(e) = expected {
            if e != &actual {
                return Err(LayoutError::Mismatch(format!(
                    "unexpected commit digest {actual}, expected {e}"
                )));
            }
        }
        let data = self.data_path();
        let f = self.file.take().expect("opened");
        f.sync_all().map_err(LayoutError::io("write", &data))?;
        drop(f);
        let target = self.layout.blob_path(&actual);
        let blobs = target.parent().expect("blob paths have a parent");
        fs::create_dir_all(blobs).map_err(LayoutError::io("create", blobs))?;
        if target.exists() {
            let _ = fs::remove_dir_all(&self.dir);
            return Err(LayoutError::Exists(actual));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&data, fs::Permissions::from_mode(0o444));
        }
        fs::rename(&data, &target).map_err(LayoutError::io("create", &target))?;
        let _ = fs::remove_dir_all(&self.dir);
        if let Ok(mut v) = self.layout.verified.lock() {
            v.insert(actual.clone());
        }
        Ok(actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> Digest {
        let mut c = Context::new(&SHA256);
        c.update(bytes);
        Digest::of(c)
    }

    #[test]
    fn only_sha256_digests_name_files() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(Digest::parse(&good).is_ok());
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}/", "a".repeat(63)),
            String::new(),
        ] {
            assert!(
                matches!(Digest::parse(&bad), Err(LayoutError::BadDigest(_))),
                "{bad}"
            );
        }
        assert_eq!(
            sha(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_write_is_checked_then_becomes_a_blob() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(Layout::create(&dir.path().join("c")).unwrap());
        let d = sha(b"hello world");
        let mut w = l.writer("r1", 11).unwrap();
        w.write_at(0, b"hello ").unwrap();
        w.write_at(6, b"world").unwrap();
        assert_eq!(w.digest(), d);
        assert_eq!(w.commit(11, Some(&d)).unwrap(), d);
        let (mut f, len) = l.open_blob(&d).unwrap();
        assert_eq!(len, 11);
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
        assert!(l.has(&d).unwrap());
        // The ingest is gone, and a second write of the same blob is told so.
        assert!(matches!(l.status("r1"), Err(LayoutError::NoWrite(_))));
        let mut w = l.writer("r2", 0).unwrap();
        w.write_at(0, b"hello world").unwrap();
        assert!(matches!(w.commit(0, Some(&d)), Err(LayoutError::Exists(_))));
    }

    #[test]
    fn a_wrong_size_or_digest_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(Layout::create(dir.path()).unwrap());
        let mut w = l.writer("r", 0).unwrap();
        w.write_at(0, b"abc").unwrap();
        let err = w.commit(4, None).unwrap_err();
        assert!(
            err.to_string().contains("unexpected commit size 3"),
            "{err}"
        );
        let w = l.writer("r", 0).unwrap();
        assert_eq!(w.offset(), 3, "the bytes stay for a retry");
        let wrong = sha(b"abd");
        let err = w.commit(3, Some(&wrong)).unwrap_err();
        assert!(
            err.to_string().contains("unexpected commit digest"),
            "{err}"
        );
        assert!(!dir.path().join("blobs/sha256").join(wrong.hex()).exists());
        assert!(!l.has(&sha(b"abc")).unwrap());
        // Out-of-order writes are refused.
        let mut w = l.writer("r", 0).unwrap();
        assert!(matches!(
            w.write_at(1, b"x"),
            Err(LayoutError::OutOfRange(_))
        ));
    }

    #[test]
    fn a_broken_write_resumes_or_restarts_and_can_be_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(Layout::create(dir.path()).unwrap());
        {
            let mut w = l.writer("r", 6).unwrap();
            w.write_at(0, b"abc").unwrap();
            // One writer per ref.
            assert!(matches!(l.writer("r", 6), Err(LayoutError::Locked(_))));
            assert!(matches!(l.abort("r"), Err(LayoutError::Locked(_))));
        }
        let s = l.status("r").unwrap();
        assert_eq!((s.offset, s.total), (3, 6));
        let mut w = l.writer("r", 6).unwrap();
        assert_eq!(w.offset(), 3);
        w.write_at(3, b"def").unwrap();
        assert_eq!(
            w.digest(),
            sha(b"abcdef"),
            "the digest covers resumed bytes"
        );
        drop(w);
        // Offset 0 starts over.
        let mut w = l.writer("r", 0).unwrap();
        w.write_at(0, b"xy").unwrap();
        assert_eq!(w.digest(), sha(b"xy"));
        drop(w);
        l.abort("r").unwrap();
        assert!(matches!(l.status("r"), Err(LayoutError::NoWrite(_))));
        assert!(matches!(l.abort("r"), Err(LayoutError::NoWrite(_))));
    }

    #[test]
    fn a_damaged_blob_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(Layout::create(dir.path()).unwrap());
        let d = sha(b"good");
        let blobs = dir.path().join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        fs::write(blobs.join(d.hex()), b"evil").unwrap();
        let err = l.open_blob(&d).unwrap_err();
        assert!(matches!(err, LayoutError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("does not match its digest"));
        assert!(l.has(&d).is_err());
        assert_eq!(l.damaged().len(), 1, "said once");
        assert_eq!(
            fs::read(blobs.join(d.hex())).unwrap(),
            b"evil",
            "left alone"
        );
        assert!(matches!(
            l.open_blob(&sha(b"none")),
            Err(LayoutError::NotFound(_))
        ));
    }

    #[test]
    fn the_index_names_the_cache_by_tag_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(Layout::create(dir.path()).unwrap());
        assert_eq!(l.find_tag("latest").unwrap(), None);
        let (a, b) = (sha(b"a"), sha(b"b"));
        let other = serde_json::json!({
            "schemaVersion": 2,
            "x-user": "kept",
            "manifests": [{"digest": sha(b"img").as_str(), "size": 1,
                "annotations": {IMAGE_NAME: "docker.io/x:latest", REF_NAME: "latest"}}]
        });
        fs::write(dir.path().join("index.json"), other.to_string()).unwrap();
        let desc = |d: &Digest| {
            serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": d.as_str(), "size": 10})
        };
        l.tag(&desc(&a), "latest").unwrap();
        l.tag(&desc(&b), "v2").unwrap();
        // The image named `docker.io/x:latest` is not the tag `latest`'s.
        assert_eq!(l.find_tag("v2").unwrap(), Some(b.clone()));
        l.tag(&desc(&b), "latest").unwrap();
        let index = l.read_index().unwrap().unwrap();
        assert_eq!(index["x-user"], "kept");
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let m = index["manifests"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{index}");
        let latest: Vec<_> = m
            .iter()
            .filter(|m| {
                m["annotations"][REF_NAME] == "latest" && m["annotations"][IMAGE_NAME].is_null()
            })
            .collect();
        assert_eq!(latest.len(), 1);
        assert_eq!(latest[0]["digest"], b.as_str());
        assert!(dir.path().join("oci-layout").is_file());
        assert!(!dir.path().join("index.json.lock").exists());
    }

    #[test]
    fn a_corrupt_index_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(Layout::create(dir.path()).unwrap());
        for text in ["{not json", "[]", r#"{"manifests": 3}"#] {
            fs::write(dir.path().join("index.json"), text).unwrap();
            let err = l.find_tag("latest").unwrap_err();
            assert!(matches!(err, LayoutError::BadIndex { .. }), "{text}: {err}");
            let d = serde_json::json!({"digest": sha(b"a").as_str(), "size": 1});
            assert!(l.tag(&d, "latest").is_err());
            assert_eq!(
                fs::read_to_string(dir.path().join("index.json")).unwrap(),
                text
            );
        }
        fs::write(
            dir.path().join("index.json"),
            r#"{"manifests": [{"digest": "sha256:../x", "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}"#,
        )
        .unwrap();
        assert!(matches!(
            l.find_tag("latest"),
            Err(LayoutError::BadIndex { .. })
        ));
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = Layout::create(&file).unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
        assert!(Layout::open(&file).is_err());
        assert_eq!(fs::read(&file).unwrap(), b"x");
    }
}
