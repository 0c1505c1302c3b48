//! A persistent cache of file hashes, like git's index: a file is re-read
//! only when its stat data changed.
//!
//! One cache file per context directory, `<cache dir>/hashes/<id>.bin`
//! (see [`super::binfile`]), maps each relative path to the stat data it was hashed with (device,
//! inode, size, mtime and ctime in nanoseconds) and its BLAKE3 hash. A
//! cached hash is used only when all of those still match, so a same-size
//! rewrite that restores the mtime (`cp -p`, `rsync -t`) is still caught:
//! its ctime changed.
//!
//! Racy timestamps: a file changed within the same clock tick as it was
//! hashed could keep identical stat data. As git does, an entry whose
//! mtime or ctime is not strictly older than the moment the cache vouches
//! for is not trusted, and the file is hashed again. That moment must be
//! a timestamp the filesystem wrote, not the system clock: Linux stamps
//! files from a coarse clock that lags the system clock by up to a tick,
//! so a file rewritten just after its `stat` can carry a time *before* a
//! `SystemTime::now()` taken before that `stat`. When a cache is opened
//! (before any file it will hash is stat'ed), cbuild writes a byte to its
//! lock file and takes that file's new mtime: every later change to any
//! file has a timestamp at least as large. Entries whose timestamps are
//! whole seconds (a filesystem that keeps no more, such as FAT's two
//! seconds) are compared two seconds earlier.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::binfile::{open_private, private_dir, write_private, Reader, Writer};
use super::hash::hash_entry;
use super::walk::Entry;

/// Why a file could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read `{path}`")]
pub struct HashError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Cached {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    ctime: i64,
    hash: [u8; 32],
}

#[derive(Default)]
struct CacheFile {
    written_at_ns: i64,
    entries: HashMap<String, Cached>,
}

/// File kind and format version.
/// Version 3: `written_at_ns` is a filesystem timestamp (version 2 used
/// the system clock and may vouch for racy entries).
const MAGIC: &[u8; 8] = b"CBHASH03";

impl CacheFile {
    fn read(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        let mut r = Reader::open(&bytes, MAGIC)?;
        let written_at_ns = r.i64()?;
        // Path length, then the fixed fields.
        let n = r.count(4 + 5 * 8 + 32)?;
        let mut entries = HashMap::with_capacity(n);
        for _ in 0..n {
            let path = r.str()?.to_string();
            let c = Cached {
                dev: r.u64()?,
                ino: r.u64()?,
                size: r.u64()?,
                mtime: r.i64()?,
                ctime: r.i64()?,
                hash: r.hash()?,
            };
            entries.insert(path, c);
        }
        r.at_end().then_some(Self {
            written_at_ns,
            entries,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC);
        w.i64(self.written_at_ns);
        w.u32(self.entries.len() as u32);
        for (path, c) in &self.entries {
            w.str(path);
            w.u64(c.dev);
            w.u64(c.ino);
            w.u64(c.size);
            w.i64(c.mtime);
            w.i64(c.ctime);
            w.hash(&c.hash);
        }
        w.finish()
    }
}

/// What the cache did, for `cbuild context` and the tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Files whose cached hash was used.
    pub hits: AtomicU64,
    /// Files that were read and hashed.
    pub files_hashed: AtomicU64,
    /// Bytes read to hash them.
    pub bytes_hashed: AtomicU64,
}

/// The hash cache of one directory.
pub struct HashCache {
    file: Option<PathBuf>,
    written_at_ns: i64,
    /// A filesystem timestamp taken when this cache was opened: every file
    /// hashed since was stat'ed after it, so it is the time the saved cache
    /// vouches for (0, vouching for nothing, if it could not be taken).
    opened_at_ns: i64,
    /// Paths hashed (not taken from the cache) since it was opened.
    rehashed: Mutex<std::collections::HashSet<String>>,
    entries: Mutex<HashMap<String, Cached>>,
    /// What this cache did since it was opened.
    pub stats: CacheStats,
}

impl HashCache {
    /// Opens the cache of directory `root` kept under `cache_dir`. A missing
    /// or unreadable cache file starts an empty cache (it is only a cache).
    pub fn open(cache_dir: &Path, root: &Path) -> Self {
        let id = blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex();
        let file = cache_dir.join("hashes").join(format!("{}.bin", &id[..32]));
        let started = std::time::Instant::now();
        let opened_at_ns = filesystem_now(&file.with_extension("lock")).unwrap_or_else(|e| {
            tracing::debug!("cannot take a timestamp in the hash cache directory: {e}");
            0
        });
        let loaded = CacheFile::read(&file).unwrap_or_default();
        tracing::debug!(
            root = %root.display(),
            entries = loaded.entries.len(),
            elapsed = ?started.elapsed(),
            "hash cache loaded"
        );
        Self {
            file: Some(file),
            written_at_ns: loaded.written_at_ns,
            opened_at_ns,
            rehashed: Mutex::default(),
            entries: Mutex::new(loaded.entries),
            stats: CacheStats::default(),
        }
    }

    /// A cache that is never saved.
    pub fn in_memory() -> Self {
        Self {
            file: None,
            written_at_ns: 0,
            opened_at_ns: 0,
            rehashed: Mutex::default(),
            entries: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        }
    }

    fn lookup(&self, e: &Entry) -> Option<blake3::Hash> {
        let entries = self.entries.lock().ok()?;
        let c = entries.get(&e.path)?;
        let same = c.dev == e.dev
            && c.ino == e.ino
            && c.size == e.size
            && c.mtime == e.mtime_ns
            && c.ctime == e.ctime_ns;
        let racy = is_racy(c, self.written_at_ns);
        if same && !racy {
            Some(blake3::Hash::from_bytes(c.hash))
        } else {
            None
        }
    }

    /// The content hash of each entry (regular files only; `None` for
    /// anything else), reading only the files whose stat data changed, on
    /// every core.
    pub fn hash_all(&self, entries: &[Entry]) -> Result<Vec<Option<blake3::Hash>>, HashError> {
        self.hash_needed(entries, |_| true)
    }

    /// Like [`hash_all`](Self::hash_all), but a file the cache cannot
    /// vouch for is read only if `needed` says so; the others stay `None`
    /// (the caller hashes them while sending them, and hands the hash back
    /// with [`record`](Self::record)).
    pub fn hash_needed(
        &self,
        entries: &[Entry],
        needed: impl Fn(&Entry) -> bool,
    ) -> Result<Vec<Option<blake3::Hash>>, HashError> {
        let mut out: Vec<Option<blake3::Hash>> = vec![None; entries.len()];
        let mut todo = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if !e.is_regular() {
                continue;
            }
            match self.lookup(e) {
                Some(h) => {
                    out[i] = Some(h);
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                }
                None if needed(e) => todo.push(i),
                None => {}
            }
        }
        if todo.is_empty() {
            return Ok(out);
        }
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<(usize, Result<blake3::Hash, HashError>)>> = Mutex::new(Vec::new());
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(todo.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { return };
                    let e = &entries[i];
                    let r = hash_entry(e)
                        .map(|(h, n)| {
                            self.stats.files_hashed.fetch_add(1, Ordering::Relaxed);
                            self.stats.bytes_hashed.fetch_add(n, Ordering::Relaxed);
                            h
                        })
                        .map_err(|source| HashError {
                            path: e.abs.clone(),
                            source,
                        });
                    if let Ok(mut v) = results.lock() {
                        v.push((i, r));
                    }
                });
            }
        });
        let results = results.into_inner().unwrap_or_default();
        let mut entries_map = self.entries.lock().map_err(|_| HashError {
            path: PathBuf::new(),
            source: std::io::Error::other("hash cache lock poisoned"),
        })?;
        for (i, r) in results {
            let h = r?;
            let e = &entries[i];
            Self::insert(&mut entries_map, &self.rehashed, e, &h);
            out[i] = Some(h);
        }
        Ok(out)
    }

    /// Records the hash of `e`'s content, read by the caller after `e` was
    /// stat'ed (a file changed in between has other stat data now, so the
    /// entry is never used for it).
    pub fn record(&self, e: &Entry, h: &blake3::Hash) {
        self.stats.files_hashed.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_hashed.fetch_add(e.size, Ordering::Relaxed);
        if let Ok(mut map) = self.entries.lock() {
            Self::insert(&mut map, &self.rehashed, e, h);
        }
    }

    fn insert(
        map: &mut HashMap<String, Cached>,
        rehashed: &Mutex<std::collections::HashSet<String>>,
        e: &Entry,
        h: &blake3::Hash,
    ) {
        if let Ok(mut r) = rehashed.lock() {
            r.insert(e.path.clone());
        }
        map.insert(
            e.path.clone(),
            Cached {
                dev: e.dev,
                ino: e.ino,
                size: e.size,
                mtime: e.mtime_ns,
                ctime: e.ctime_ns,
                hash: *h.as_bytes(),
            },
        );
    }

    /// Writes the cache back: under an exclusive lock, merged with what
    /// other writers (services sharing this directory, built in parallel,
    /// or another cbuild) saved meanwhile, then atomically (a temporary file
    /// renamed over the old one). Entries for paths not seen this time are
    /// kept: another Dockerfile may use them.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.stats.files_hashed.load(Ordering::Relaxed) == 0 {
            // Nothing new was learnt: what is on disk is already right.
            return Ok(());
        }
        // What this cache knows: the files it hashed, and the loaded entries
        // that were trustworthy (not racy) in the file they came from.
        let rehashed = self
            .rehashed
            .lock()
            .map_err(|_| std::io::Error::other("hash cache lock poisoned"))?
            .clone();
        let ours: HashMap<String, Cached> = self
            .entries
            .lock()
            .map_err(|_| std::io::Error::other("hash cache lock poisoned"))?
            .iter()
            .filter(|(p, c)| rehashed.contains(*p) || !is_racy(c, self.written_at_ns))
            .map(|(p, c)| (p.clone(), c.clone()))
            .collect();
        let lock = open_private(&file.with_extension("lock"))?;
        lock.lock()?;
        let on_disk = CacheFile::read(file);
        let mut entries: HashMap<String, Cached> = match on_disk {
            Some(c) => c
                .entries
                .into_iter()
                .filter(|(_, e)| !is_racy(e, c.written_at_ns))
                .collect(),
            None => HashMap::new(),
        };
        entries.extend(ours);
        // The saved cache vouches only for changes made before this cache
        // was opened (a file rewritten within the same clock tick as its
        // hashing keeps its stat data): later ones are re-checked next time.
        let data = CacheFile {
            written_at_ns: self.opened_at_ns,
            entries,
        };
        // The lock is released when `lock` is closed.
        write_private(file, &data.encode())
    }
}

/// An entry changed at or after the moment its cache vouches for: its stat
/// data might not reflect a later rewrite in the same clock tick.
fn is_racy(c: &Cached, vouched_ns: i64) -> bool {
    const SECOND: i64 = 1_000_000_000;
    let whole_seconds = c.mtime % SECOND == 0 && c.ctime % SECOND == 0;
    let bound = if whole_seconds {
        vouched_ns.saturating_sub(2 * SECOND)
    } else {
        vouched_ns
    };
    c.mtime >= bound || c.ctime >= bound
}

/// The time the filesystem gives a change made now: the mtime of `marker`
/// (created 600 if missing) after writing a byte to it.
fn filesystem_now(marker: &Path) -> std::io::Result<i64> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    private_dir(marker.parent().unwrap_or(Path::new(".")))?;
    let f = open_private(marker)?;
    f.write_all_at(b"\n", 0)?;
    let m = f.metadata()?;
    Ok(m.mtime() * 1_000_000_000 + m.mtime_nsec())
}

/// cbuild's own cache directory: `$CBUILD_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/cbuild`, else `~/.cache/cbuild`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CBUILD_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("cbuild");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache").join("cbuild"))
        .unwrap_or_else(|| std::env::temp_dir().join("cbuild-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::walk::{walk, WalkOptions};

    #[test]
    fn parallel_savers_do_not_lose_each_others_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("a/1"), "one").unwrap();
        std::fs::write(root.join("b/2"), "two").unwrap();
        let cache_dir = dir.path().join("cache");
        let only = |p: &str| WalkOptions {
            follow_paths: vec![p.to_string()],
            ..Default::default()
        };
        // Trusted entries need timestamps older than the caches' opening.
        next_tick(&cache_dir);
        // Two caches of one directory, as two services sharing a context.
        let c1 = HashCache::open(&cache_dir, &root);
        let c2 = HashCache::open(&cache_dir, &root);
        c1.hash_all(&walk(&root, &only("a")).unwrap()).unwrap();
        c2.hash_all(&walk(&root, &only("b")).unwrap()).unwrap();
        c1.save().unwrap();
        c2.save().unwrap();
        let c3 = HashCache::open(&cache_dir, &root);
        let all = walk(&root, &WalkOptions::default()).unwrap();
        c3.hash_all(&all).unwrap();
        assert_eq!(c3.stats.files_hashed.load(Ordering::Relaxed), 0);
        assert_eq!(c3.stats.hits.load(Ordering::Relaxed), 2);
    }

    /// Waits until the filesystem stamps changes later than everything
    /// written so far in `dir`.
    fn next_tick(dir: &Path) {
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(dir).unwrap();
        let probe = dir.join("tick");
        let stamp = || {
            std::fs::write(&probe, "x").unwrap();
            let m = std::fs::metadata(&probe).unwrap();
            (m.mtime(), m.mtime_nsec())
        };
        let first = stamp();
        while stamp() == first {
            std::thread::yield_now();
        }
    }

    /// Racy tick: a file written just after the cache was opened, stat'ed
    /// and hashed, then rewritten with the same size within the same
    /// coarse clock tick (mtime kept), has the very stat data the cache
    /// saved. Kernels since 6.13 give such a rewrite a fine-grained ctime,
    /// older ones do not: the second walk reuses the first one's entries to
    /// stand for that identical stat data.
    #[test]
    fn racy_tick_a_rewrite_with_identical_stat_data_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        std::fs::create_dir_all(&root).unwrap();
        let cache_dir = dir.path().join("cache");
        for round in 0..3 {
            let f = root.join(format!("data{round}.txt"));
            let cache = HashCache::open(&cache_dir, &root);
            std::fs::write(&f, "AAAA").unwrap();
            let entries = walk(&root, &WalkOptions::default()).unwrap();
            let i = entries.iter().position(|e| e.abs == f).unwrap();
            let h = cache.hash_all(&entries).unwrap();
            assert_eq!(h[i], Some(blake3::hash(b"AAAA")));
            cache.save().unwrap();
            std::fs::write(&f, "BBBB").unwrap();
            let cache = HashCache::open(&cache_dir, &root);
            let h = cache.hash_all(&entries).unwrap();
            assert_eq!(h[i], Some(blake3::hash(b"BBBB")), "round {round}");
        }
    }

    #[test]
    fn cache_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("f"), "x").unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = HashCache::open(&cache_dir, &root);
        cache
            .hash_all(&walk(&root, &WalkOptions::default()).unwrap())
            .unwrap();
        cache.save().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache_dir), 0o700);
        let hashes = cache_dir.join("hashes");
        assert_eq!(mode(&hashes), 0o700);
        for e in std::fs::read_dir(&hashes).unwrap() {
            assert_eq!(mode(&e.unwrap().path()), 0o600);
        }
    }
}
