//! The content clock: the modification times cbuild reports to BuildKit,
//! chosen so that content decides what BuildKit sees as changed.
//!
//! BuildKit keeps the previous upload of a context under a shared key and,
//! on the next build, re-requests a regular file only when its size or
//! modification time (or mode, owner, link target) differ from that copy
//! (fsutil's `DiffMetadata`). A same-size rewrite with the mtime restored
//! is therefore never transferred, and the image keeps the old bytes; a
//! `touch` alone, on the other hand, re-sends the file.
//!
//! cbuild reports, per file, a *stamp* instead of the real mtime:
//! - a file whose content hash and mode are what this clock last reported
//!   keeps the stamp reported then, whatever its timestamps say now — a
//!   touch or a fresh checkout sends nothing;
//! - a file whose content changed is reported with its real mtime, moved
//!   by one nanosecond if that equals the previous stamp — so it always
//!   differs from what BuildKit holds and is always re-sent;
//! - a file the clock has never seen gets its real mtime.
//!
//! The clock is only sound while it knows exactly what BuildKit's copy is.
//! So its state is keyed by a *generation*, which is part of the BuildKit
//! shared key: a new generation (no state on disk, state deleted after a
//! failed build, `--no-cache`) means a shared key BuildKit has never seen,
//! hence a full, fresh transfer. The state is saved only after a build
//! succeeded, i.e. once BuildKit holds what was reported.
//!
//! State file: `<cache dir>/clock/<shared key base>.bin` (see
//! [`super::binfile`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::binfile::{Reader, Writer};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    hash: [u8; 32],
    mode: u32,
    sent: i64,
}

#[derive(Clone, Debug, Default)]
struct State {
    generation: String,
    files: HashMap<String, Stamp>,
}

/// File kind and format version.
const MAGIC: &[u8; 8] = b"CBCLOCK2";

impl State {
    fn read(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        let mut r = Reader::open(&bytes, MAGIC)?;
        let generation = r.str()?.to_string();
        // Path length, then the fixed fields.
        let n = r.count(4 + 32 + 4 + 8)?;
        let mut files = HashMap::with_capacity(n);
        for _ in 0..n {
            let path = r.str()?.to_string();
            let stamp = Stamp {
                hash: r.hash()?,
                mode: r.u32()?,
                sent: r.i64()?,
            };
            files.insert(path, stamp);
        }
        r.at_end().then_some(Self { generation, files })
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC);
        w.str(&self.generation);
        w.u32(self.files.len() as u32);
        for (path, s) in &self.files {
            w.str(path);
            w.hash(&s.hash);
            w.u32(s.mode);
            w.i64(s.sent);
        }
        w.finish()
    }
}

/// The modification times reported for one (project, service, context).
pub struct ContentClock {
    file: Option<PathBuf>,
    base: String,
    previous: State,
    next: Mutex<State>,
}

fn new_generation() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

impl ContentClock {
    /// Opens the clock for shared-key base `base` (no `:` in it). With
    /// `fresh`, or when no usable state exists, a new generation starts.
    pub fn open(cache_dir: &Path, base: &str, fresh: bool) -> Self {
        let file = cache_dir.join("clock").join(format!("{base}.bin"));
        let previous: Option<State> = if fresh { None } else { State::read(&file) };
        let previous = previous.unwrap_or_else(|| State {
            generation: new_generation(),
            files: HashMap::new(),
        });
        let next = State {
            generation: previous.generation.clone(),
            files: HashMap::new(),
        };
        Self {
            file: Some(file),
            base: base.to_string(),
            previous,
            next: Mutex::new(next),
        }
    }

    /// A clock that is never saved (every build starts a new generation).
    pub fn in_memory(base: &str) -> Self {
        let previous = State {
            generation: new_generation(),
            files: HashMap::new(),
        };
        Self {
            file: None,
            base: base.to_string(),
            next: Mutex::new(State {
                generation: previous.generation.clone(),
                files: HashMap::new(),
            }),
            previous,
        }
    }

    /// The BuildKit shared key for this clock's generation.
    pub fn shared_key(&self) -> String {
        format!("{}-{}", self.base, self.previous.generation)
    }

    /// The modification time to report for the regular file `path`, whose
    /// real mtime is `real_ns`, Go file mode `mode` and content `hash`.
    pub fn stamp(&self, path: &str, real_ns: i64, mode: u32, hash: &blake3::Hash) -> i64 {
        let hash = *hash.as_bytes();
        let sent = match self.previous.files.get(path) {
            Some(p) if p.hash == hash && p.mode == mode => p.sent,
            Some(p) if p.sent == real_ns => real_ns.wrapping_add(1),
            _ => real_ns,
        };
        if let Ok(mut next) = self.next.lock() {
            // Several DiffCopy calls of one build may report the same path;
            // they report the same stamp since `previous` does not change.
            next.files
                .insert(path.to_string(), Stamp { hash, mode, sent });
        }
        sent
    }

    /// Whether the clock has a stamp for `path`: only then does its stamp
    /// depend on the content (an unknown file gets its real mtime, so its
    /// hash can wait until it is sent; see [`record`](Self::record)).
    pub fn knows(&self, path: &str) -> bool {
        self.previous.files.contains_key(path)
    }

    /// Records that the unknown file `path` was reported with its real
    /// mtime `sent` and has content `hash`.
    pub fn record(&self, path: &str, mode: u32, sent: i64, hash: &blake3::Hash) {
        if let Ok(mut next) = self.next.lock() {
            next.files.insert(
                path.to_string(),
                Stamp {
                    hash: *hash.as_bytes(),
                    mode,
                    sent,
                },
            );
        }
    }

    /// Records that BuildKit now holds what was reported (call after a
    /// successful build). Stamps of files not reported this time are kept.
    pub fn commit(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut state = self.previous.clone();
        if let Ok(next) = self.next.lock() {
            state.files.extend(next.files.clone());
        }
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{}.{}.tmp", self.base, std::process::id()));
        std::fs::write(&tmp, state.encode())?;
        std::fs::rename(&tmp, file)
    }

    /// Forgets the state (call after a failed build: what BuildKit holds is
    /// unknown), so the next build starts a new generation.
    pub fn invalidate(&self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let h1 = blake3::hash(b"one");
        let h2 = blake3::hash(b"two");
        let c = ContentClock::open(dir.path(), "k", false);
        let key = c.shared_key();
        assert_eq!(c.stamp("a", 100, 0o644, &h1), 100);
        c.commit().unwrap();

        // Touched: same content, new mtime -> the old stamp.
        let c = ContentClock::open(dir.path(), "k", false);
        assert_eq!(c.shared_key(), key);
        assert_eq!(c.stamp("a", 999, 0o644, &h1), 100);
        // Same-size rewrite with the mtime restored -> a different stamp.
        assert_eq!(c.stamp("a", 100, 0o644, &h2), 101);
        // Content changed with a new mtime -> the real mtime.
        assert_eq!(c.stamp("a", 555, 0o644, &h2), 555);
        // Mode changed -> not the old stamp... but mode is compared by
        // BuildKit anyway; the real mtime is fine.
        assert_eq!(c.stamp("a", 100, 0o755, &h1), 101);
    }

    #[test]
    fn new_generations_when_fresh_or_invalidated() {
        let dir = tempfile::tempdir().unwrap();
        let h = blake3::hash(b"x");
        let c = ContentClock::open(dir.path(), "k", false);
        c.stamp("a", 1, 0o644, &h);
        c.commit().unwrap();
        let key = c.shared_key();
        assert_eq!(ContentClock::open(dir.path(), "k", false).shared_key(), key);
        assert_ne!(ContentClock::open(dir.path(), "k", true).shared_key(), key);
        let c = ContentClock::open(dir.path(), "k", false);
        c.invalidate();
        assert_ne!(ContentClock::open(dir.path(), "k", false).shared_key(), key);
    }
}
