//! File events from the kernel (inotify through `notify`), debounced into
//! batches of changed paths.
//!
//! inotify watches directories one by one, and each costs one of the
//! user's watches (`fs.inotify.max_user_watches`). So the tree under a
//! watched path is walked here, not by notify's recursive mode (which
//! walks everything, `.git` and ignored `node_modules` included): every
//! directory the caller wants is watched on its own, without recursion,
//! and a directory nothing under which can matter (`.git`, a directory the
//! `.dockerignore` or the trigger's `ignore:` leaves out with no `!`
//! exception) costs no watch. A directory that appears (created, moved in,
//! deleted and created again) is walked and watched when its event comes,
//! before its batch is handed on, so the caller's look at it sees files
//! written meanwhile. The nearest existing parent of a watched path is
//! watched without recursion, so a watched path deleted and created again
//! is watched again; a watched path that is a file or does not exist yet
//! is watched through it. What changed is never decided here: the caller
//! hashes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the tree must stay quiet before a batch is handed on while a
/// file in it may still be being written (its last event a creation or a
/// write, not yet the close). Measured here with inotify: an atomic save
/// (`sed -i`, or write a temporary file and rename it over) produces all
/// its events within 3 ms; `cp` of a 50 MB file spreads its 4–5 events
/// over 90–230 ms. 50 ms keeps a save one batch and adds little to
/// edit-to-container time (compose waits 500 ms); a long copy may be sent
/// twice, the second time whole, since its last event (close after write)
/// comes after its last byte.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// The quiet that is enough once every path of the batch has had its last
/// word: a close after writing, a rename, a deletion, a new directory, a
/// change of times or mode. An editor's save, a `cp` or a `git checkout`
/// writes its next file within a millisecond of closing the last one here,
/// so this keeps them one batch and takes 35 ms off an edit's cycle. A
/// pause longer than this only splits the batch: the next one is handled
/// after it (a sync sends it, a rebuild queues one more build).
pub const SETTLED: Duration = Duration::from_millis(15);

/// A batch never waits longer than this for quiet, so a file written
/// without pause is still picked up.
const MAX_BATCH_WAIT: Duration = Duration::from_millis(1000);

/// Why watching could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The kernel's limit of inotify watches was reached.
    #[error(
        "cannot watch `{}`: the limit of inotify watches ({}) is reached; the watched paths have {} director{} to watch, {} of them watched when the kernel refused",
        path.display(),
        limit.describe(),
        directories,
        if *directories == 1 { "y" } else { "ies" },
        watched
    )]
    Limit {
        /// Where.
        path: PathBuf,
        /// The limits in effect.
        limit: Limits,
        /// Directories that need a watch under all watched paths.
        directories: usize,
        /// Watches cbuild held when it was refused.
        watched: usize,
    },
    /// Another failure to watch.
    #[error("cannot watch `{}`", path.display())]
    Other {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
}

impl WatchError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            WatchError::Limit {
                limit, directories, ..
            } => {
                // Room for the tree, other programs' watches and growth.
                let want = (directories * 2).max(524_288);
                Some(match limit.namespace {
                    Some(ns) if limit.system.is_none_or(|s| ns < s) => format!(
                        "this user namespace allows {ns}: raise it (`sysctl user.max_inotify_watches={want}` as the namespace's root), or watch fewer directories (narrow `path:`, or leave directories out with `ignore:` or the `.dockerignore`)"
                    ),
                    _ => format!(
                        "raise it (`sudo sysctl fs.inotify.max_user_watches={want}`; watches other programs of this user hold count too), or watch fewer directories (narrow `path:`, or leave directories out with `ignore:` or the `.dockerignore`)"
                    ),
                })
            }
            WatchError::Other { .. } => None,
        }
    }
}

/// The limits on inotify watches that apply to this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// `fs.inotify.max_user_watches`: per user, for the whole system.
    pub system: Option<u64>,
    /// `user.max_inotify_watches` of this process's user namespace, when
    /// that is not the initial one (the kernel applies both).
    pub namespace: Option<u64>,
}

impl Limits {
    /// Reads them from `/proc`.
    pub fn read() -> Limits {
        let read = |p: &str| -> Option<u64> {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| t.trim().parse().ok())
        };
        let system = read("/proc/sys/fs/inotify/max_user_watches");
        // In the initial namespace both files show the same number.
        let namespace = read("/proc/sys/user/max_inotify_watches").filter(|n| Some(*n) != system);
        Limits { system, namespace }
    }

    fn describe(&self) -> String {
        let system = match self.system {
            Some(s) => format!("fs.inotify.max_user_watches = {s}"),
            None => "fs.inotify.max_user_watches".into(),
        };
        match self.namespace {
            Some(ns) if self.system.is_none_or(|s| ns < s) => {
                format!("user.max_inotify_watches = {ns} in this user namespace, {system}")
            }
            _ => system,
        }
    }
}

/// Decides whether a directory under a watched path needs a watch: false
/// when nothing under it can matter to any trigger.
pub type Wanted = Box<dyn Fn(&Path) -> bool + Send + Sync>;

/// What the watcher reports.
#[derive(Debug)]
pub enum Batch {
    /// These paths changed (files or directories, existing or not).
    Paths(BTreeSet<PathBuf>),
    /// Events were lost (the kernel's queue overflowed): every root is to
    /// be compared again.
    Rescan,
}

enum Raw {
    /// Paths of one event, and whether the event may leave a file half
    /// written (a creation or a write without its close yet).
    Paths(Vec<PathBuf>, bool),
    Rescan,
    Limit(PathBuf),
}

/// Watches a set of roots.
pub struct FileEvents {
    watcher: RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<Raw>,
    roots: Vec<PathBuf>,
    wanted: Wanted,
    /// Directories under the roots watched now (each without recursion).
    dirs: BTreeSet<PathBuf>,
    /// Parents of roots watched without recursion.
    shallow: BTreeSet<PathBuf>,
}

impl FileEvents {
    /// Starts watching `roots` (absolute paths) and the directories under
    /// them that `wanted` takes.
    pub fn new(roots: Vec<PathBuf>, wanted: Wanted) -> Result<FileEvents, WatchError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let raw = match res {
                Ok(e) if e.need_rescan() => Raw::Rescan,
                // Reads are no change, and cbuild's own reads (hashing,
                // walking) must not wake it again; the close after a
                // write is kept, it ends a write.
                Ok(e) if is_read(&e.kind) => return,
                Ok(e) => {
                    let open = leaves_open(&e.kind);
                    Raw::Paths(e.paths, open)
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    Raw::Limit(e.paths.first().cloned().unwrap_or_default())
                }
                Err(_) => Raw::Rescan,
            };
            let _ = tx.send(raw);
        })
        .map_err(|source| WatchError::Other {
            path: PathBuf::new(),
            source,
        })?;
        let mut w = FileEvents {
            watcher,
            rx,
            roots,
            wanted,
            dirs: BTreeSet::new(),
            shallow: BTreeSet::new(),
        };
        for root in w.roots.clone() {
            w.arm(&root)?;
        }
        tracing::debug!(directories = w.dirs.len(), "watch: inotify watches set");
        Ok(w)
    }

    /// How many directories under the roots are watched.
    pub fn watched(&self) -> usize {
        self.dirs.len()
    }

    /// Watches the tree under `root` if it is a directory, and its nearest
    /// existing ancestor without recursion.
    fn arm(&mut self, root: &Path) -> Result<(), WatchError> {
        if root.is_dir() {
            self.watch_tree(root, true)?;
        }
        let mut dir = root.parent();
        while let Some(d) = dir {
            if d.is_dir() {
                if !self.shallow.contains(d) {
                    self.watch(d)?;
                    self.shallow.insert(d.to_path_buf());
                }
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Watches `top` and every directory under it that is wanted, without
    /// following symlinks. A directory already watched is watched again:
    /// the path may name a new inode (deleted and created again, or moved
    /// in), and for the same inode the kernel hands back the same watch.
    fn watch_tree(&mut self, top: &Path, is_root: bool) -> Result<(), WatchError> {
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let needed = (is_root && dir == top) || (self.wanted)(&dir);
            if !needed {
                continue;
            }
            match self.watch(&dir) {
                Ok(()) => {}
                // Gone meanwhile: its deletion is an event of its own.
                Err(WatchError::Other { source, .. })
                    if matches!(source.kind, notify::ErrorKind::PathNotFound) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
            self.dirs.insert(dir.clone());
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        Ok(())
    }

    fn watch(&mut self, path: &Path) -> Result<(), WatchError> {
        self.watcher
            .watch(path, RecursiveMode::NonRecursive)
            .map_err(|source| {
                if matches!(source.kind, notify::ErrorKind::MaxFilesWatch) {
                    self.limit_error(path)
                } else {
                    WatchError::Other {
                        path: path.to_path_buf(),
                        source,
                    }
                }
            })
    }

    /// The limit error, with the number of directories the roots need.
    fn limit_error(&self, path: &Path) -> WatchError {
        let mut directories = 0;
        for root in &self.roots {
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                if dir != *root && !(self.wanted)(&dir) {
                    continue;
                }
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                directories += 1;
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
        WatchError::Limit {
            path: path.to_path_buf(),
            limit: Limits::read(),
            directories,
            watched: self.dirs.len() + self.shallow.len(),
        }
    }

    /// The next batch: waits for an event, then for quiet: [`SETTLED`]
    /// when every path of the batch had its last word, else [`DEBOUNCE`].
    /// `None` when the watcher stopped.
    pub async fn next(&mut self) -> Option<Result<Batch, WatchError>> {
        let first = self.rx.recv().await?;
        let mut paths = BTreeSet::new();
        // Paths whose last event may have left them half written.
        let mut open = BTreeSet::new();
        let mut rescan = false;
        let started = tokio::time::Instant::now();
        let mut limit = None;
        let mut take =
            |raw: Raw, paths: &mut BTreeSet<PathBuf>, open: &mut BTreeSet<PathBuf>| match raw {
                Raw::Paths(p, leaves_open) => {
                    for p in p {
                        if leaves_open {
                            open.insert(p.clone());
                        } else {
                            open.remove(&p);
                        }
                        paths.insert(p);
                    }
                }
                Raw::Rescan => rescan = true,
                Raw::Limit(p) => limit = Some(p),
            };
        take(first, &mut paths, &mut open);
        loop {
            let left = MAX_BATCH_WAIT.saturating_sub(started.elapsed());
            let quiet = if open.is_empty() { SETTLED } else { DEBOUNCE };
            match tokio::time::timeout(quiet.min(left), self.rx.recv()).await {
                Ok(Some(raw)) => take(raw, &mut paths, &mut open),
                Ok(None) | Err(_) => break,
            }
            if left.is_zero() {
                break;
            }
        }
        if let Some(p) = limit {
            return Some(Err(self.limit_error(&p)));
        }
        // Directories gone: the kernel dropped their watches (a deleted
        // directory's event names it; its subdirectories sort right after).
        for p in &paths {
            if self.dirs.contains(p) && !p.is_dir() {
                let gone: Vec<PathBuf> = self
                    .dirs
                    .range(p.clone()..)
                    .take_while(|d| d.starts_with(p))
                    .cloned()
                    .collect();
                for d in gone {
                    self.dirs.remove(&d);
                }
            }
        }
        // A root (or a directory above it) created again: watch it anew,
        // and let the caller compare everything under it.
        let roots = self.roots.clone();
        for root in &roots {
            // After lost events, every root is walked again.
            if rescan || paths.iter().any(|p| root.starts_with(p)) {
                if let Err(e) = self.arm(root) {
                    return Some(Err(e));
                }
                paths.insert(root.clone());
            }
        }
        // New directories under a root (created, or moved in): watched
        // before the caller walks them, so no file written in them is
        // missed.
        let new_dirs: Vec<PathBuf> = paths
            .iter()
            .filter(|p| !roots.contains(p) && roots.iter().any(|r| p.starts_with(r)))
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
            .cloned()
            .collect();
        for d in new_dirs {
            if let Err(e) = self.watch_tree(&d, false) {
                return Some(Err(e));
            }
        }
        tracing::debug!(
            paths = paths.len(),
            ms = started.elapsed().as_millis() as u64,
            "watch: batch after its first event"
        );
        Some(Ok(if rescan {
            Batch::Rescan
        } else {
            Batch::Paths(paths)
        }))
    }
}

/// Whether an event may leave its file half written: it was created (the
/// write follows) or written, and its close has not come yet. A symlink or
/// a hard link made, which has no close, waits the longer quiet.
fn leaves_open(kind: &notify::EventKind) -> bool {
    use notify::event::{CreateKind, ModifyKind};
    use notify::EventKind;
    matches!(
        kind,
        EventKind::Create(CreateKind::File | CreateKind::Any | CreateKind::Other)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other)
            | EventKind::Any
            | EventKind::Other
    )
}

fn is_read(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, notify::EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, MetadataKind, ModifyKind, RemoveKind,
        RenameMode,
    };
    use notify::EventKind;

    #[test]
    fn a_write_waits_for_its_close() {
        let open = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Any,
        ];
        let settled = [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Create(CreateKind::Folder),
        ];
        for k in open {
            assert!(leaves_open(&k), "{k:?}");
        }
        for k in settled {
            assert!(!leaves_open(&k), "{k:?}");
        }
    }
}
