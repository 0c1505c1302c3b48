//! The served view of a directory: what BuildKit is shown of it and may
//! read from it.
//!
//! A [`Listing`] is one walk of a [`LocalDir`] with the content hash of each
//! regular file and the modification time each entry is announced with (for
//! a [`TrackedDir`], the content clock's stamp). Everything that has to agree
//! with what the daemon saw is computed here, from the same code path:
//! - `buildkit::session::filesync` turns a listing into STAT packets and
//!   answers the daemon's REQs with [`Source::open`];
//! - [`listing_digest`] and [`listing_files`] replay a recorded request
//!   ([`Served`]) to tell whether a build's inputs changed
//!   (`orchestrate::fresh`);
//! - [`hashed_walk`] is the walk `cbuild context` reports on
//!   ([`super::manifest`]).
//!
//! Serving is race-safe: a file is opened relative to the root's open
//! handle, never through a symlink, and only if it is still the inode, with
//! the size, that was listed (see [`Source::open`]). A path swapped for a
//! symlink after the walk therefore cannot make bytes from outside the
//! context leave.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rustix::fs::{self as rfs, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::cache::{HashCache, HashError};
use super::clock::ContentClock;
use super::digest::ListingDigest;
use super::walk::{self, Entry, Root, WalkOptions};

/// One directory the daemon may pull from a build session, by local name
/// (`context`, `dockerfile`, or a named context).
#[derive(Clone, Debug)]
pub enum LocalDir {
    /// A directory on disk.
    Disk(PathBuf),
    /// A directory on disk whose files are reported by content: hashed
    /// (through a persistent cache) and stamped by a content clock, so a
    /// content change always reaches BuildKit and a touch never does.
    Tracked(TrackedDir),
    /// A directory that exists only in memory (an inline Dockerfile).
    Virtual(Vec<VirtualFile>),
}

/// A directory served by content (see [`LocalDir::Tracked`]).
#[derive(Clone)]
pub struct TrackedDir {
    /// The directory.
    pub root: PathBuf,
    /// Its hash cache.
    pub hashes: Arc<HashCache>,
    /// The clock that stamps its files.
    pub clock: Arc<ContentClock>,
}

impl std::fmt::Debug for TrackedDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedDir")
            .field("root", &self.root)
            .finish()
    }
}

/// One regular file of a [`LocalDir::Virtual`] directory.
#[derive(Clone, Debug)]
pub struct VirtualFile {
    /// File name (no slashes).
    pub name: String,
    /// Contents.
    pub data: Bytes,
}

/// One request the daemon made for a directory: which local, with which
/// filters, and the listing digest of what it was shown. Replaying these
/// requests later ([`listing_digest`]) tells whether a build's inputs
/// changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    /// The local name (`context`, `dockerfile`…).
    pub local: String,
    /// The filters the daemon sent.
    pub opts: WalkOptions,
    /// The listing digest.
    pub digest: String,
    /// Each entry's path and fingerprint (see
    /// [`ListingDigest::fingerprints`]); kept apart from the record, to say
    /// which files changed.
    #[serde(skip)]
    pub files: Vec<(String, String)>,
}

/// What a listing is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Serving a request: stamps, sources, digest and per-entry
    /// fingerprints.
    Serve,
    /// Only the digest (a replay before a build).
    Digest,
    /// The digest and the per-entry fingerprints.
    Files,
}

/// One entry of a listing.
#[derive(Clone, Debug)]
pub enum Item {
    /// A walked entry.
    Entry(Entry),
    /// A file of a [`LocalDir::Virtual`] directory.
    Virtual {
        /// Its name.
        name: String,
        /// Its size.
        size: u64,
    },
}

/// An entry as it is announced.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The entry.
    pub item: Item,
    /// The content hash of a regular file; `None` for other entries, and
    /// for a file of a tracked directory that its clock has never reported
    /// while serving (its stamp is its real mtime whatever its content, so
    /// it is hashed while it is sent, and [`Listing::finish`] fills it in).
    pub hash: Option<blake3::Hash>,
    /// The modification time it is announced with (ns since the epoch).
    pub stamp: i64,
}

/// What a REQ for one listed file reads.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file on disk.
    Disk(DiskFile),
    /// The bytes of a virtual file.
    Memory(Bytes),
}

/// A regular file as it was listed: what [`DiskFile::open`] checks before
/// any byte of it is read.
#[derive(Clone, Debug)]
pub struct DiskFile {
    root: Arc<Root>,
    /// Path relative to the root.
    pub path: String,
    /// Absolute path (for messages only: it is never opened).
    pub abs: PathBuf,
    dev: u64,
    ino: u64,
    /// The listed size.
    pub size: u64,
    /// The listed content hash, when known.
    pub hash: Option<blake3::Hash>,
}

/// An opened listed file.
#[derive(Debug)]
pub enum Opened {
    /// The file, checked to be the listed inode with the listed size.
    File(File),
    /// A socket: fsutil announces it as an empty regular file.
    Empty,
}

/// Why a listed file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The path is no longer the file that was listed.
    #[error("`{}` changed while it was being sent ({why}); run the build again", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// What differs.
        why: &'static str,
    },
    /// It cannot be opened or read.
    #[error("cannot read `{}`", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl DiskFile {
    /// The regular file `e` of a walk of `root`, listed with `hash`.
    pub fn new(root: Arc<Root>, e: &Entry, hash: Option<blake3::Hash>) -> Self {
        DiskFile {
            root,
            path: e.path.clone(),
            abs: e.abs.clone(),
            dev: e.dev,
            ino: e.ino,
            size: e.size,
            hash,
        }
    }

    /// The error for bytes that are not the listed content.
    pub fn changed(&self, why: &'static str) -> ServeError {
        ServeError::Changed {
            path: self.abs.clone(),
            why,
        }
    }

    /// Opens the file for sending: relative to the root's handle, never
    /// through a symlink (a path component swapped for one is an error, not
    /// followed), and only if it is still the listed inode with the listed
    /// size. The caller reads exactly [`DiskFile::size`] bytes and checks the
    /// hash when one is known.
    pub fn open(&self) -> Result<Opened, ServeError> {
        let io_err = |e: io::Error| ServeError::Io {
            path: self.abs.clone(),
            source: e,
        };
        // O_NONBLOCK: a path swapped for a FIFO must not block the open.
        let fd = match open_beneath(
            self.root.fd(),
            &self.path,
            OFlags::RDONLY | OFlags::NONBLOCK,
        ) {
            Ok(fd) => fd,
            Err(e) if e == Errno::NXIO => {
                // A socket cannot be opened for reading; fsutil sends it as
                // an empty file. Check it is the listed one.
                let fd = open_beneath(self.root.fd(), &self.path, OFlags::PATH)
                    .map_err(|e| self.open_error(e))?;
                let st = rfs::fstat(&fd).map_err(|e| io_err(e.into()))?;
                return if is_type(&st, rfs::FileType::Socket) && self.same_inode(&st) {
                    Ok(Opened::Empty)
                } else {
                    Err(self.changed("it was replaced"))
                };
            }
            Err(e) => return Err(self.open_error(e)),
        };
        let st = rfs::fstat(&fd).map_err(|e| io_err(e.into()))?;
        if !is_type(&st, rfs::FileType::RegularFile) || !self.same_inode(&st) {
            return Err(self.changed("it was replaced"));
        }
        #[allow(clippy::unnecessary_cast)]
        if st.st_size as u64 != self.size {
            return Err(self.changed("its size changed"));
        }
        Ok(Opened::File(File::from(fd)))
    }

    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn same_inode(&self, st: &rfs::Stat) -> bool {
        st.st_dev as u64 == self.dev && st.st_ino as u64 == self.ino
    }

    fn open_error(&self, e: Errno) -> ServeError {
        if e == Errno::LOOP || e == Errno::NOTDIR || e == Errno::XDEV {
            self.changed("a symbolic link now stands on its path")
        } else if e == Errno::NOENT {
            self.changed("it was removed")
        } else {
            ServeError::Io {
                path: self.abs.clone(),
                source: e.into(),
            }
        }
    }
}

fn is_type(st: &rfs::Stat, t: rfs::FileType) -> bool {
    rfs::FileType::from_raw_mode(st.st_mode as _) == t
}

/// Whether `openat2` is known to be missing (Linux < 5.6, or a seccomp
/// filter that refuses it): then the path is opened one component at a time.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens the relative path `rel` below the directory `root` without
/// following any symlink and without leaving `root`.
fn open_beneath(root: BorrowedFd<'_>, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::BENEATH;
        // EAGAIN: a concurrent rename elsewhere; the kernel asks to retry.
        for _ in 0..4 {
            match rfs::openat2(root, rel, flags, rfs::Mode::empty(), resolve) {
                Err(e) if e == Errno::AGAIN => continue,
                Err(e) if e == Errno::NOSYS || e == Errno::PERM => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    break;
                }
                r => return r,
            }
        }
    }
    open_by_components(root, rel, flags)
}

/// [`open_beneath`] without `openat2`: one component at a time, each
/// relative to the last and none followed.
fn open_by_components(root: BorrowedFd<'_>, rel: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut parts = rel.split('/').filter(|p| !p.is_empty());
    let last = parts.next_back().ok_or(Errno::INVAL)?;
    let mut dir: Option<OwnedFd> = None;
    for part in parts {
        if part == "." || part == ".." {
            return Err(Errno::INVAL);
        }
        let at = dir.as_ref().map_or(root, |d| d.as_fd());
        dir = Some(rfs::openat(
            at,
            part,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rfs::Mode::empty(),
        )?);
    }
    if last == "." || last == ".." {
        return Err(Errno::INVAL);
    }
    let at = dir.as_ref().map_or(root, |d| d.as_fd());
    rfs::openat(at, last, flags, rfs::Mode::empty())
}

/// One walk of a [`LocalDir`] with its hashes and stamps.
pub struct Listing {
    /// The entries in STAT order (a file's REQ id is its index here).
    pub items: Vec<Listed>,
    sources: HashMap<u32, Source>,
    tracked: Option<TrackedDir>,
}

impl Listing {
    /// Walks `local` as a DiffCopy call with `opts` would be served.
    ///
    /// Serving a tracked directory hashes only the files its clock has
    /// reported before (their stamp depends on their content); the others
    /// are hashed while they are sent, so a cold transfer reads each file
    /// once and the first STAT leaves at once.
    pub fn new(local: &LocalDir, opts: &WalkOptions, purpose: Purpose) -> Result<Listing, String> {
        let serve = purpose == Purpose::Serve;
        let mut items = Vec::new();
        let mut sources = HashMap::new();
        let mut tracked = None;
        let (root, entries, hashes) = match local {
            LocalDir::Disk(dir) => {
                let root = Root::open(dir).map_err(walk_error)?;
                let entries = walk::walk_root(&root, opts).map_err(walk_error)?;
                let hashes = HashCache::in_memory()
                    .hash_all(&entries)
                    .map_err(hash_error)?;
                (root, entries, hashes)
            }
            LocalDir::Tracked(t) => {
                let root = Root::open(&t.root).map_err(walk_error)?;
                let entries = walk::walk_root(&root, opts).map_err(walk_error)?;
                let hashes = if serve {
                    t.hashes.hash_needed(&entries, |e| t.clock.knows(&e.path))
                } else {
                    t.hashes.hash_all(&entries)
                }
                .map_err(hash_error)?;
                tracked = Some(t.clone());
                (root, entries, hashes)
            }
            LocalDir::Virtual(files) => {
                let mut files = files.clone();
                files.sort_by(|a, b| a.name.cmp(&b.name));
                for (i, f) in files.into_iter().enumerate() {
                    items.push(Listed {
                        item: Item::Virtual {
                            name: f.name,
                            size: f.data.len() as u64,
                        },
                        hash: Some(blake3::hash(&f.data)),
                        stamp: 0,
                    });
                    if serve {
                        sources.insert(i as u32, Source::Memory(f.data));
                    }
                }
                return Ok(Listing {
                    items,
                    sources,
                    tracked,
                });
            }
        };
        let root = Arc::new(root);
        for (i, (e, h)) in entries.into_iter().zip(hashes).enumerate() {
            let mut stamp = e.mtime_ns;
            if serve {
                if let (Some(t), Some(h)) = (&tracked, &h) {
                    stamp = t.clock.stamp(&e.path, e.mtime_ns, e.mode, h);
                }
                // A hard-link repeat is linked by the receiver, never asked for.
                if e.is_regular() && e.linkname.is_empty() {
                    sources.insert(i as u32, Source::Disk(DiskFile::new(root.clone(), &e, h)));
                }
            }
            items.push(Listed {
                item: Item::Entry(e),
                hash: h,
                stamp,
            });
        }
        Ok(Listing {
            items,
            sources,
            tracked,
        })
    }

    /// The files REQs may ask for, by id (taken once, for serving).
    pub fn take_sources(&mut self) -> HashMap<u32, Source> {
        std::mem::take(&mut self.sources)
    }

    /// Completes the hashes (`sent`: those computed while sending, by REQ
    /// id), records them in the tracked directory's cache and clock, and
    /// returns the listing digest and the per-entry fingerprints.
    pub fn finish(
        mut self,
        purpose: Purpose,
        sent: &HashMap<u32, blake3::Hash>,
    ) -> Result<(String, Vec<(String, String)>), String> {
        if let Some(t) = &self.tracked {
            let mut unsent = Vec::new();
            for (i, listed) in self.items.iter_mut().enumerate() {
                let Item::Entry(e) = &listed.item else {
                    continue;
                };
                // A hard-link repeat is never asked for, and its content is
                // not part of the digest (kind `h`): nothing to read.
                if listed.hash.is_some() || !e.is_regular() || !e.linkname.is_empty() {
                    continue;
                }
                match sent.get(&(i as u32)) {
                    Some(got) => {
                        t.hashes.record(e, got);
                        t.clock.record(&e.path, e.mode, e.mtime_ns, got);
                        listed.hash = Some(*got);
                    }
                    None => unsent.push(i),
                }
            }
            // Files the daemon did not ask for (rare: a fresh generation
            // means it holds none of them).
            if !unsent.is_empty() {
                let entries: Vec<Entry> = unsent
                    .iter()
                    .filter_map(|&i| match &self.items[i].item {
                        Item::Entry(e) => Some(e.clone()),
                        Item::Virtual { .. } => None,
                    })
                    .collect();
                let hashes = t.hashes.hash_all(&entries).map_err(hash_error)?;
                for ((&i, e), h) in unsent.iter().zip(&entries).zip(hashes) {
                    if let Some(h) = h {
                        t.clock.record(&e.path, e.mode, e.mtime_ns, &h);
                        self.items[i].hash = Some(h);
                    }
                }
            }
        }
        let mut digest = if purpose == Purpose::Digest {
            ListingDigest::without_fingerprints()
        } else {
            ListingDigest::new()
        };
        for listed in &self.items {
            match &listed.item {
                Item::Entry(e) => digest.add_entry(e, listed.hash.as_ref()),
                Item::Virtual { name, size } => {
                    digest.add(name, 0o644, *size, "", listed.hash.as_ref())
                }
            }
        }
        Ok((digest.finish(), digest.fingerprints().to_vec()))
    }
}

/// A walk error with its causes, on one line.
fn walk_error(e: walk::WalkError) -> String {
    let mut msg = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(c) = cur {
        msg.push_str(&format!(": {c}"));
        cur = c.source();
    }
    msg
}

fn hash_error(e: HashError) -> String {
    let mut msg = e.to_string();
    if let Some(src) = std::error::Error::source(&e) {
        msg.push_str(&format!(": {src}"));
    }
    msg
}

/// The listing digest of what a DiffCopy call with `opts` would serve from
/// `local` right now (the same code path as serving it).
pub fn listing_digest(local: &LocalDir, opts: &WalkOptions) -> Result<String, String> {
    Ok(Listing::new(local, opts, Purpose::Digest)?
        .finish(Purpose::Digest, &HashMap::new())?
        .0)
}

/// Each entry's path and fingerprint for what a DiffCopy call with `opts`
/// would serve from `local` now.
pub fn listing_files(
    local: &LocalDir,
    opts: &WalkOptions,
) -> Result<Vec<(String, String)>, String> {
    Ok(Listing::new(local, opts, Purpose::Files)?
        .finish(Purpose::Files, &HashMap::new())?
        .1)
}

/// The entries a walk of `root` with `opts` sends, each with the content
/// hash of a regular file, hashed through `cache`: the listing of a plain
/// directory, for reports (`cbuild context`).
pub fn hashed_walk(
    root: &Root,
    opts: &WalkOptions,
    cache: &HashCache,
) -> Result<Vec<(Entry, Option<blake3::Hash>)>, ListingError> {
    let entries = walk::walk_root(root, opts)?;
    let hashes = cache.hash_all(&entries)?;
    Ok(entries.into_iter().zip(hashes).collect())
}

/// Why [`hashed_walk`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// The walk failed.
    #[error(transparent)]
    Walk(#[from] walk::WalkError),
    /// A file could not be hashed.
    #[error(transparent)]
    Hash(#[from] HashError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of opening a listed path refuse a symlink anywhere on it.
    #[test]
    fn opening_beneath_the_root_never_follows_a_symlink() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("ctx");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), "in").unwrap();
        std::fs::write(top.path().join("secret"), "out").unwrap();
        std::os::unix::fs::symlink(top.path().join("secret"), root.join("d/link")).unwrap();
        std::os::unix::fs::symlink(top.path(), root.join("up")).unwrap();
        let r = Root::open(&root).unwrap();
        type Open = fn(BorrowedFd<'_>, &str, OFlags) -> Result<OwnedFd, Errno>;
        for open in [open_beneath as Open, open_by_components as Open] {
            let f = open(r.fd(), "d/f", OFlags::RDONLY).unwrap();
            assert_eq!(std::io::read_to_string(File::from(f)).unwrap(), "in");
            for bad in ["d/link", "up/secret", "../secret", "d/../../secret"] {
                let err = open(r.fd(), bad, OFlags::RDONLY).unwrap_err();
                assert!(
                    [Errno::LOOP, Errno::XDEV, Errno::INVAL, Errno::NOTDIR].contains(&err),
                    "{bad}: {err:?}"
                );
            }
        }
    }
}
