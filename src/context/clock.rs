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
//!   keeps the stamp reported then, whatever its timestamps say now: a
//!   touch or a fresh checkout sends nothing;
//! - any other file gets a *content-derived* stamp: the whole seconds of
//!   its real mtime, and nanoseconds taken from its content hash;
//! - only a file reported for the first time in a *fresh* generation (see
//!   below) gets its real mtime, so its hash can wait until it is sent (a
//!   cold transfer reads each file once).
//!
//! Why this is sound whatever the saved state says. The state is keyed by
//! a *generation*, part of the BuildKit shared key; a new generation (no
//! usable state, `--no-cache`, a cache directory cbuild cannot write) is a
//! key BuildKit has never seen, so it holds nothing under it and any stamp
//! is right for a first report. After that, each stamp cbuild reports under
//! a key stands for one content: a content-derived stamp by construction,
//! a kept stamp because it is kept only for the content it was reported
//! with, and a real mtime because it is used once per path and generation
//! and recorded with the bytes actually sent. Two different contents of
//! one path get equal stamps only if they have the same size, the same
//! mtime second and the same 30 bits of BLAKE3. So when BuildKit skips a
//! file because size and stamp match its copy, its copy has the content
//! being reported: the image cannot keep old bytes. That holds even when
//! the saved state is not what BuildKit holds: a state restored from an
//! older backup, left behind by a failed or interrupted build, or
//! overwritten by another cbuild that built the same service at the same
//! time. Such a state costs extra transfers (stamps BuildKit does not
//! hold), never a stale file. The same goes for a failed transfer: fsutil
//! gives the file its stamp before the data arrives, then rewrites the
//! data (which moves the mtime) and sets the stamp again only once all of
//! it was written, so a copy that did not complete never matches.
//!
//! cbuild therefore saves the state only after a build succeeded (BuildKit
//! then holds what was reported) and does not need to forget it after a
//! failure. Two cbuild processes building one service take turns through
//! an advisory lock ([`lock`](ContentClock::lock)), held from the start of
//! the build to its end, and the second one reloads the state the first
//! one saved, so they do not undo each other's work.
//!
//! A clock whose directory cannot be written (a `sudo cbuild` left it to
//! root, a read-only mount) could not remember what it reported: it starts
//! a fresh generation on every build instead, and says so once.
//!
//! State file: `<cache dir>/clock/<shared key base>.bin` (see
//! [`super::binfile`]), next to its lock file `<base>.lock`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::binfile::{open_private, private_dir, write_private, Reader, Writer};

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

/// File kind and format version. Version 3: stamps are content-derived;
/// a version-2 state may vouch for stamps BuildKit holds other bytes under.
const MAGIC: &[u8; 8] = b"CBCLOCK3";

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
    /// The state file; `None` for a clock that is never saved.
    file: Option<PathBuf>,
    base: String,
    generation: String,
    /// A generation BuildKit has never seen: it holds no file under its
    /// shared key.
    fresh: bool,
    /// What the last successful build reported (reloaded once the lock is
    /// held, since another cbuild may have built meanwhile).
    previous: Mutex<State>,
    /// What this build reported.
    next: Mutex<State>,
    /// Paths reported so far with their real mtime (fresh generation).
    first_reports: Mutex<HashSet<String>>,
    lock: Mutex<Option<std::fs::File>>,
}

fn new_generation() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().gen::<u64>())
}

/// Bits of the content hash in a content-derived stamp.
const HASH_BITS: u32 = 30;

/// The stamp that stands for content `hash` of a file whose real mtime is
/// `real_ns`: its whole seconds, and nanoseconds from the hash.
fn derived(real_ns: i64, hash: &[u8; 32]) -> i64 {
    let bits = u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]]) >> (32 - HASH_BITS);
    real_ns.div_euclid(1_000_000_000) * 1_000_000_000 + i64::from(bits % 1_000_000_000)
}

/// Whether the "cannot write the cache directory" warning was given.
static WARNED_UNWRITABLE: AtomicBool = AtomicBool::new(false);

/// Checks that files can be created in and removed from `dir`, as saving
/// the state needs (root ignores mode bits, but not an immutable directory
/// or a read-only mount, so this tries rather than reading modes).
fn check_writable(dir: &Path, base: &str) -> std::io::Result<()> {
    private_dir(dir)?;
    let probe = dir.join(format!(".{base}.{}.probe", std::process::id()));
    open_private(&probe)?;
    std::fs::remove_file(&probe)
}

impl ContentClock {
    /// Opens the clock for shared-key base `base` (no `:` in it). With
    /// `fresh`, or when no usable state exists, or when the state could not
    /// be saved, a new generation starts.
    pub fn open(cache_dir: &Path, base: &str, fresh: bool) -> Self {
        let dir = cache_dir.join("clock");
        if let Err(e) = check_writable(&dir, base) {
            if !WARNED_UNWRITABLE.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "cannot write cbuild's cache directory `{}` ({e}): every build sends its \
                     whole context until it can; if a `sudo cbuild` made it root's, run \
                     `sudo chown -R $USER {}`",
                    dir.display(),
                    cache_dir.display()
                );
            }
            return Self::in_memory(base);
        }
        let file = dir.join(format!("{base}.bin"));
        let loaded = if fresh { None } else { State::read(&file) };
        let fresh = loaded.is_none();
        let previous = loaded.unwrap_or_else(|| State {
            generation: new_generation(),
            files: HashMap::new(),
        });
        Self::new(Some(file), base, previous, fresh)
    }

    /// A clock that is never saved (every build starts a new generation).
    pub fn in_memory(base: &str) -> Self {
        let previous = State {
            generation: new_generation(),
            files: HashMap::new(),
        };
        Self::new(None, base, previous, true)
    }

    fn new(file: Option<PathBuf>, base: &str, previous: State, fresh: bool) -> Self {
        Self {
            file,
            base: base.to_string(),
            generation: previous.generation.clone(),
            fresh,
            next: Mutex::new(State {
                generation: previous.generation.clone(),
                files: HashMap::new(),
            }),
            previous: Mutex::new(previous),
            first_reports: Mutex::default(),
            lock: Mutex::new(None),
        }
    }

    /// For a directory whose upload BuildKit keeps under a key this clock
    /// does not choose: the Dockerfile's directory, which the Dockerfile
    /// frontend keys by the session's shared key and its local name, and
    /// which frontends before BuildKit 0.10 (Docker 20.10) diff by size and
    /// mtime like any context. A new generation here is then no new key
    /// there, so no file may be reported with its real mtime: every stamp
    /// is content-derived or kept (the files are small; hashing them first
    /// costs nothing).
    pub fn keyed_elsewhere(mut self) -> Self {
        self.fresh = false;
        self
    }

    /// The BuildKit shared key for this clock's generation.
    pub fn shared_key(&self) -> String {
        format!("{}-{}", self.base, self.generation)
    }

    /// The lock file that makes builds of this clock take turns (`None`
    /// for a clock that is never saved).
    pub fn lock_path(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|f| f.with_extension("lock"))
    }

    /// Waits until no other cbuild builds with this clock (calling
    /// `waiting` first if one does), then reloads the state that build may
    /// have saved. Blocks: call it from a blocking thread. The lock is held
    /// until [`release`](Self::release) (or until the clock is dropped).
    pub fn lock(&self, waiting: impl FnOnce(&Path)) -> std::io::Result<()> {
        let (Some(path), Some(file)) = (self.lock_path(), &self.file) else {
            return Ok(());
        };
        // A lock file another user's cbuild created may only be readable;
        // an advisory lock needs no more.
        let f = open_private(&path).or_else(|_| std::fs::File::open(&path))?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting(&path);
                f.lock()?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        if let Ok(mut held) = self.lock.lock() {
            *held = Some(f);
        }
        // The state saved meanwhile under this generation is newer than
        // what was loaded; another generation's is not ours to use.
        if let Some(state) = State::read(file).filter(|s| s.generation == self.generation) {
            if let Ok(mut previous) = self.previous.lock() {
                *previous = state;
            }
        }
        Ok(())
    }

    /// Lets other cbuild processes build with this clock again.
    pub fn release(&self) {
        if let Ok(mut held) = self.lock.lock() {
            held.take();
        }
    }

    /// The modification time to report for the regular file `path`, whose
    /// real mtime is `real_ns`, Go file mode `mode` and content `hash`.
    pub fn stamp(&self, path: &str, real_ns: i64, mode: u32, hash: &blake3::Hash) -> i64 {
        let hash = *hash.as_bytes();
        let same = |s: &Stamp| (s.hash == hash && s.mode == mode).then_some(s.sent);
        // What this build already reported (several DiffCopy calls may
        // list one path), else what the last build did.
        let kept = self
            .next
            .lock()
            .ok()
            .and_then(|n| n.files.get(path).and_then(same))
            .or_else(|| {
                self.previous
                    .lock()
                    .ok()
                    .and_then(|p| p.files.get(path).and_then(same))
            });
        let sent = kept.unwrap_or_else(|| derived(real_ns, &hash));
        if let Ok(mut next) = self.next.lock() {
            next.files
                .insert(path.to_string(), Stamp { hash, mode, sent });
        }
        sent
    }

    /// Whether BuildKit may already hold `path` under this generation, so
    /// that its stamp must depend on its content: hash it before its STAT
    /// and report [`stamp`](Self::stamp). Only a path not yet reported in a
    /// fresh generation may be reported with its real mtime and hashed
    /// while it is sent (see [`record`](Self::record)); this call counts as
    /// that first report.
    pub fn knows(&self, path: &str) -> bool {
        if !self.fresh {
            return true;
        }
        match self.first_reports.lock() {
            Ok(mut first) => !first.insert(path.to_string()),
            Err(_) => true,
        }
    }

    /// Records that the file `path`, of which [`knows`](Self::knows) said
    /// it was new, was reported with its real mtime `sent` and has content
    /// `hash`.
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
        let poisoned = || std::io::Error::other("content clock lock poisoned");
        let mut state = self.previous.lock().map_err(|_| poisoned())?.clone();
        state
            .files
            .extend(self.next.lock().map_err(|_| poisoned())?.files.clone());
        write_private(file, &state.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn content_decides_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let h1 = blake3::hash(b"one");
        let h2 = blake3::hash(b"two");
        let c = ContentClock::open(dir.path(), "k", false);
        let key = c.shared_key();
        let first = c.stamp("a", 100 * S, 0o644, &h1);
        c.commit().unwrap();

        // Touched: same content, new mtime -> the old stamp.
        let c = ContentClock::open(dir.path(), "k", false);
        assert_eq!(c.shared_key(), key);
        assert_eq!(c.stamp("a", 999 * S, 0o644, &h1), first);
        // Same-size rewrite with the mtime restored -> a different stamp,
        // in the same second.
        let second = c.stamp("a", 100 * S, 0o644, &h2);
        assert_ne!(second, first);
        assert_eq!(second.div_euclid(S), 100);
        // The stamp of a content does not depend on what the clock knows.
        let other = ContentClock::in_memory("k");
        assert_eq!(other.stamp("a", 100 * S + 5, 0o644, &h2), second);
        assert_eq!(other.stamp("a", 100 * S + 5, 0o644, &h1), first);
    }

    #[test]
    fn a_rolled_back_or_overwritten_state_never_repeats_a_stamp_for_other_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            blake3::hash(b"AAAA"),
            blake3::hash(b"BBBB"),
            blake3::hash(b"CCCC"),
        );
        let mtime = 100 * S + 123;
        // Build 1: BuildKit holds A.
        let clock = ContentClock::open(dir.path(), "k", false);
        let s_a = clock.stamp("f", mtime, 0o644, &a);
        clock.commit().unwrap();
        let saved = std::fs::read(dir.path().join("clock/k.bin")).unwrap();
        // Build 2: B, same size and mtime; BuildKit now holds B.
        let clock = ContentClock::open(dir.path(), "k", false);
        let s_b = clock.stamp("f", mtime, 0o644, &b);
        assert_ne!(s_b, s_a);
        clock.commit().unwrap();
        // The cache directory is restored from a backup taken after build 1.
        std::fs::write(dir.path().join("clock/k.bin"), &saved).unwrap();
        // Build 3: C, same size and mtime: its stamp is neither A's nor B's,
        // so BuildKit asks for it.
        let clock = ContentClock::open(dir.path(), "k", false);
        let s_c = clock.stamp("f", mtime, 0o644, &c);
        assert_ne!(s_c, s_b);
        assert_ne!(s_c, s_a);
        // And B again (BuildKit may hold B under s_b): s_b, which stands
        // for B only.
        assert_eq!(clock.stamp("f", mtime, 0o644, &b), s_b);
    }

    #[test]
    fn only_a_first_report_in_a_fresh_generation_can_skip_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let h = blake3::hash(b"x");
        let c = ContentClock::open(dir.path(), "k", false);
        // Fresh: BuildKit holds nothing, the real mtime will do...
        assert!(!c.knows("a"));
        // ...but only once: a second listing in the same build must not
        // reuse it for other bytes.
        assert!(c.knows("a"));
        c.record("a", 0o644, 7, &h);
        c.commit().unwrap();
        // Not fresh: BuildKit may hold any path, even one the state lacks
        // (a state another cbuild overwrote, or an older one restored).
        let c = ContentClock::open(dir.path(), "k", false);
        assert!(c.knows("a"));
        assert!(c.knows("never-seen"));
        assert_eq!(c.stamp("a", 99 * S, 0o644, &h), 7);
    }

    #[test]
    fn new_generations_when_fresh_or_unsaved() {
        let dir = tempfile::tempdir().unwrap();
        let h = blake3::hash(b"x");
        let c = ContentClock::open(dir.path(), "k", false);
        c.stamp("a", 1, 0o644, &h);
        c.commit().unwrap();
        let key = c.shared_key();
        assert_eq!(ContentClock::open(dir.path(), "k", false).shared_key(), key);
        assert_ne!(ContentClock::open(dir.path(), "k", true).shared_key(), key);
        // A build that did not commit leaves the state as it was.
        let c = ContentClock::open(dir.path(), "k", false);
        c.stamp("a", 1, 0o644, &blake3::hash(b"y"));
        c.release();
        assert_eq!(ContentClock::open(dir.path(), "k", false).shared_key(), key);
    }

    #[test]
    fn a_clock_that_cannot_be_saved_starts_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let h = blake3::hash(b"x");
        let c = ContentClock::open(dir.path(), "k", false);
        c.stamp("a", 1, 0o644, &h);
        c.commit().unwrap();
        let key = c.shared_key();
        // A file where the clock directory should be: nothing can be
        // created in it (as for root with an immutable directory).
        let blocked = tempfile::tempdir().unwrap();
        std::fs::write(blocked.path().join("clock"), "").unwrap();
        let c = ContentClock::open(blocked.path(), "k", false);
        assert!(c.lock_path().is_none());
        assert!(!c.knows("a"));
        c.commit().unwrap();
        // Here: the state is readable but its directory is not writable.
        let clock_dir = dir.path().join("clock");
        if chattr(&clock_dir, "+i") {
            let c = ContentClock::open(dir.path(), "k", false);
            chattr(&clock_dir, "-i");
            assert_ne!(c.shared_key(), key);
            assert!(c.lock_path().is_none());
        }
    }

    /// Sets or clears a file attribute (needs root); whether it worked.
    fn chattr(path: &Path, flag: &str) -> bool {
        std::process::Command::new("chattr")
            .arg(flag)
            .arg(path)
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    fn a_second_cbuild_waits_and_then_sees_the_first_ones_state() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (blake3::hash(b"AAAA"), blake3::hash(b"BBBB"));
        let c = ContentClock::open(dir.path(), "k", false);
        c.stamp("f", S, 0o644, &a);
        c.commit().unwrap();
        // Both plan with the same state.
        let one = ContentClock::open(dir.path(), "k", false);
        let two = ContentClock::open(dir.path(), "k", false);
        one.lock(|_| panic!("nobody holds the lock")).unwrap();
        let s_b = one.stamp("f", S, 0o644, &b);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| {
                two.lock(|_| tx.send(()).unwrap()).unwrap();
            });
            // `two` says it waits; `one` finishes its build.
            rx.recv().unwrap();
            one.commit().unwrap();
            one.release();
            waiter.join().unwrap();
        });
        // `two` reloaded what `one` saved: B keeps its stamp, A does not
        // get it back.
        assert_eq!(two.stamp("f", 50 * S, 0o644, &b), s_b);
        two.commit().unwrap();
    }
}
