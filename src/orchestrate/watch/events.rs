//! File events from the kernel (inotify through `notify`), debounced into
//! batches of changed paths.
//!
//! A watched directory is watched recursively (notify adds a watch for
//! each new directory), and its parent without recursion, so a directory
//! deleted and created again is watched again. A watched path that is a
//! file or does not exist yet is watched through its nearest existing
//! directory. What changed is never decided here: the caller hashes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long the tree must stay quiet before a batch is handed on.
/// Measured here with inotify: an atomic save (`sed -i`, or write a
/// temporary file and rename it over) produces all its events within 3 ms;
/// `cp` of a 50 MB file spreads its 4–5 events over 90–230 ms. 50 ms keeps
/// a save one batch and adds little to edit-to-container time (compose
/// waits 500 ms); a long copy may be sent twice, the second time whole,
/// since its last event (close after write) comes after its last byte.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// A batch never waits longer than this for quiet, so a file written
/// without pause is still picked up.
const MAX_BATCH_WAIT: Duration = Duration::from_millis(1000);

/// Why watching could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The kernel's limit of inotify watches was reached.
    #[error("cannot watch `{}`: the system's limit of inotify watches (fs.inotify.max_user_watches = {}) is reached", path.display(), limit.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Limit {
        /// Where.
        path: PathBuf,
        /// The limit, when it could be read.
        limit: Option<u64>,
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
            WatchError::Limit { .. } => Some(
                "raise the limit (`sudo sysctl fs.inotify.max_user_watches=524288`), or watch fewer paths (`ignore:` does not reduce watches; narrow `path:`)".into(),
            ),
            WatchError::Other { .. } => None,
        }
    }
}

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
    Paths(Vec<PathBuf>),
    Rescan,
    Limit(PathBuf),
}

/// Watches a set of roots.
pub struct FileEvents {
    watcher: RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<Raw>,
    roots: Vec<PathBuf>,
    /// Roots watched recursively now.
    armed: BTreeSet<PathBuf>,
    /// Directories watched without recursion.
    shallow: BTreeSet<PathBuf>,
}

impl FileEvents {
    /// Starts watching `roots` (absolute paths).
    pub fn new(roots: Vec<PathBuf>) -> Result<FileEvents, WatchError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let raw = match res {
                Ok(e) if e.need_rescan() => Raw::Rescan,
                // Reads are no change, and cbuild's own reads (hashing,
                // walking) must not wake it again; the close after a
                // write is kept, it ends a write.
                Ok(e) if is_read(&e.kind) => return,
                Ok(e) => Raw::Paths(e.paths),
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
            armed: BTreeSet::new(),
            shallow: BTreeSet::new(),
        };
        for root in w.roots.clone() {
            w.arm(&root)?;
        }
        Ok(w)
    }

    /// Watches `root` recursively if it is a directory, and its nearest
    /// existing ancestor without recursion.
    fn arm(&mut self, root: &Path) -> Result<(), WatchError> {
        if root.is_dir() && !self.armed.contains(root) {
            self.watch(root, RecursiveMode::Recursive)?;
            self.armed.insert(root.to_path_buf());
        }
        let mut dir = root.parent();
        while let Some(d) = dir {
            if d.is_dir() {
                if !self.shallow.contains(d) {
                    self.watch(d, RecursiveMode::NonRecursive)?;
                    self.shallow.insert(d.to_path_buf());
                }
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn watch(&mut self, path: &Path, mode: RecursiveMode) -> Result<(), WatchError> {
        self.watcher.watch(path, mode).map_err(|source| {
            if matches!(source.kind, notify::ErrorKind::MaxFilesWatch) {
                limit_error(path)
            } else {
                WatchError::Other {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
    }

    /// The next batch: waits for an event, then for [`DEBOUNCE`] of quiet.
    /// `None` when the watcher stopped.
    pub async fn next(&mut self) -> Option<Result<Batch, WatchError>> {
        let first = self.rx.recv().await?;
        let mut paths = BTreeSet::new();
        let mut rescan = false;
        let started = tokio::time::Instant::now();
        let mut take = |raw: Raw, paths: &mut BTreeSet<PathBuf>| -> Result<(), WatchError> {
            match raw {
                Raw::Paths(p) => paths.extend(p),
                Raw::Rescan => rescan = true,
                Raw::Limit(p) => return Err(limit_error(&p)),
            }
            Ok(())
        };
        if let Err(e) = take(first, &mut paths) {
            return Some(Err(e));
        }
        loop {
            let left = MAX_BATCH_WAIT.saturating_sub(started.elapsed());
            match tokio::time::timeout(DEBOUNCE.min(left), self.rx.recv()).await {
                Ok(Some(raw)) => {
                    if let Err(e) = take(raw, &mut paths) {
                        return Some(Err(e));
                    }
                }
                Ok(None) | Err(_) => break,
            }
            if left.is_zero() {
                break;
            }
        }
        // A root (or a directory above it) created again: watch it anew,
        // and let the caller compare everything under it.
        let roots = self.roots.clone();
        for root in &roots {
            let touched = paths.iter().any(|p| root.starts_with(p));
            if touched {
                // The inode behind the path may be new: notify dropped
                // the old one's watch when it was deleted.
                if self.armed.remove(root) {
                    let _ = self.watcher.unwatch(root);
                }
                if let Err(e) = self.arm(root) {
                    return Some(Err(e));
                }
                paths.insert(root.clone());
            }
        }
        Some(Ok(if rescan {
            Batch::Rescan
        } else {
            Batch::Paths(paths)
        }))
    }
}

fn is_read(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    matches!(kind, notify::EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write))
}

fn limit_error(path: &Path) -> WatchError {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    WatchError::Limit {
        path: path.to_path_buf(),
        limit,
    }
}
