//! The tar transport: the same minimal, content-stamped file set as the
//! FileSync transport, written as one deterministic tar stream.
//!
//! Determinism: entries in walk order (fsutil order: depth first, byte-wise,
//! parents first), owners normalised to 0:0 with no user or group names,
//! permissions from the file mode (setuid, setgid and sticky included),
//! modification times from the content clock (so a touch does not change a
//! byte of the archive), and, when compressed, gzip with a zero header
//! timestamp. Two archives of unchanged content are byte-identical, so
//! BuildKit's cache key for the upload (a digest of its bytes) is stable.
//!
//! A file's data is exactly the listed size, read from the listed inode
//! (opened as FileSync opens it, [`DiskFile::open`]) and checked against the
//! listed hash: a file that changes while it is archived fails the archive,
//! so appended bytes can never pass for entries of their own.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use super::cache::HashCache;
use super::clock::ContentClock;
use super::listing::{DiskFile, Opened};
use super::walk::{self, mode as gomode, Entry, Root, WalkOptions};

/// What went into an archive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Entries written.
    pub entries: u64,
    /// Regular-file bytes written.
    pub file_bytes: u64,
}

/// POSIX permission bits (with setuid/setgid/sticky) from Go mode bits.
fn unix_perm(go: u32) -> u32 {
    let mut m = go & 0o777;
    if go & gomode::SETUID != 0 {
        m |= 0o4000;
    }
    if go & gomode::SETGID != 0 {
        m |= 0o2000;
    }
    if go & gomode::STICKY != 0 {
        m |= 0o1000;
    }
    m
}

fn header(e: &Entry, mtime_ns: i64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(unix_perm(e.mode));
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime_ns.max(0) as u64 / 1_000_000_000);
    h.set_size(0);
    h
}

/// Walks `root` with `opts` and writes the archive to `out`, stamping
/// regular files with `clock` (hashes through `hashes`).
pub fn write_context_tar(
    root: &Path,
    opts: &WalkOptions,
    hashes: &HashCache,
    clock: &ContentClock,
    gzip: bool,
    out: impl Write,
) -> io::Result<TarStats> {
    let root = Arc::new(Root::open(root).map_err(io::Error::other)?);
    let entries = walk::walk_root(&root, opts).map_err(io::Error::other)?;
    let digests = hashes.hash_all(&entries).map_err(io::Error::other)?;
    if gzip {
        let enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(out, flate2::Compression::fast());
        let (stats, enc) = write_entries(&root, &entries, &digests, clock, enc)?;
        enc.finish()?;
        Ok(stats)
    } else {
        Ok(write_entries(&root, &entries, &digests, clock, out)?.0)
    }
}

/// Reads a listed file, counting and hashing what it yields.
struct Checked<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn write_entries<W: Write>(
    root: &Arc<Root>,
    entries: &[Entry],
    digests: &[Option<blake3::Hash>],
    clock: &ContentClock,
    out: W,
) -> io::Result<(TarStats, W)> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    let mut stats = TarStats::default();
    for (e, d) in entries.iter().zip(digests) {
        let mtime = match d {
            Some(h) => clock.stamp(&e.path, e.mtime_ns, e.mode, h),
            None => 0,
        };
        let mut h = header(e, mtime);
        if e.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, format!("{}/", e.path), io::empty())?;
        } else if e.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, &e.path, &e.linkname)?;
        } else if e.is_regular() && !e.linkname.is_empty() {
            h.set_entry_type(tar::EntryType::Link);
            b.append_link(&mut h, &e.path, &e.linkname)?;
        } else if e.is_regular() {
            h.set_entry_type(tar::EntryType::Regular);
            let file = DiskFile::new(root.clone(), e, *d);
            let changed = |why| io::Error::other(file.changed(why));
            let mut f = match file.open().map_err(io::Error::other)? {
                Opened::File(f) => f,
                // fsutil's view of a socket: an empty file.
                Opened::Empty => {
                    b.append_data(&mut h, &e.path, io::empty())?;
                    stats.entries += 1;
                    continue;
                }
            };
            h.set_size(e.size);
            // Exactly the listed size: bytes appended meanwhile must not
            // run on into the archive as entries of their own.
            let mut data = Checked {
                inner: (&mut f).take(e.size),
                hasher: blake3::Hasher::new(),
                count: 0,
            };
            b.append_data(&mut h, &e.path, &mut data)?;
            let (count, hash) = (data.count, data.hasher.finalize());
            if count != e.size {
                return Err(changed("it got shorter"));
            }
            if f.read(&mut [0u8; 1])? != 0 {
                return Err(changed("it grew"));
            }
            if d.is_some_and(|d| d != hash) {
                return Err(changed("its content differs from the listing"));
            }
            stats.file_bytes += e.size;
        } else {
            // Devices, pipes and sockets are not part of a build context
            // sent as an archive.
            continue;
        }
        stats.entries += 1;
    }
    let out = b.into_inner()?;
    Ok((stats, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(root: &Path, cache: &HashCache, clock: &ContentClock, gzip: bool) -> Vec<u8> {
        let mut v = Vec::new();
        write_context_tar(root, &WalkOptions::default(), cache, clock, gzip, &mut v).unwrap();
        v
    }

    #[test]
    fn archives_are_deterministic_and_touch_proof() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f.txt"), "hello").unwrap();
        std::fs::write(root.join("z"), "z").unwrap();
        std::os::unix::fs::symlink("z", root.join("link")).unwrap();
        let cache_dir = dir.path().join("cache");
        let clock = ContentClock::open(&cache_dir, "k", false);
        let one = archive(&root, &HashCache::in_memory(), &clock, true);
        clock.commit().unwrap();
        // Touch every file: the archive does not change.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(100);
        for f in ["a/b/f.txt", "z"] {
            std::fs::File::options()
                .write(true)
                .open(root.join(f))
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        let clock = ContentClock::open(&cache_dir, "k", false);
        let two = archive(&root, &HashCache::in_memory(), &clock, true);
        assert_eq!(one, two);
        // A content change changes it.
        std::fs::write(root.join("z"), "Z").unwrap();
        let three = archive(&root, &HashCache::in_memory(), &clock, true);
        assert_ne!(one, three);

        let plain = archive(&root, &HashCache::in_memory(), &clock, false);
        let mut ar = tar::Archive::new(&plain[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a/", "a/b/", "a/b/f.txt", "link", "z"]);
    }

    /// Runs `change` once the archive's first bytes (the header of the
    /// only file) are written, before its data is read.
    struct ChangeOnFirstWrite<F: FnMut()> {
        out: Vec<u8>,
        change: Option<F>,
    }

    impl<F: FnMut()> Write for ChangeOnFirstWrite<F> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(mut change) = self.change.take() {
                change();
            }
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A file that grows (by a tar entry of its own) or is rewritten while
    /// it is archived fails the archive: its extra bytes never become an
    /// entry, and the error names the file and what to do.
    #[test]
    fn a_file_changing_while_archived_fails_the_archive() {
        let mut injected = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        injected
            .append_data(&mut h, "injected.txt", &b"evil"[..])
            .unwrap();
        let injected = injected.into_inner().unwrap();
        let grow = |f: &Path| {
            let mut file = std::fs::OpenOptions::new().append(true).open(f).unwrap();
            // Pad the file to a 512-byte block first, as an attacker would.
            file.write_all(&[0u8; 507]).unwrap();
            file.write_all(&injected).unwrap();
        };
        let rewrite = |f: &Path| std::fs::write(f, "HELLO").unwrap();
        type Change<'a> = &'a dyn Fn(&Path);
        let cases: [(Change, &str); 2] = [(&grow, "it grew"), (&rewrite, "its content differs")];
        for (change, why) in cases {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("ctx");
            std::fs::create_dir_all(&root).unwrap();
            let file = root.join("a.txt");
            std::fs::write(&file, "hello").unwrap();
            let clock = ContentClock::in_memory("k");
            let mut out = ChangeOnFirstWrite {
                out: Vec::new(),
                change: Some(|| change(&file)),
            };
            let result = write_context_tar(
                &root,
                &WalkOptions::default(),
                &HashCache::in_memory(),
                &clock,
                false,
                &mut out,
            );
            let names: Vec<String> = tar::Archive::new(&out.out[..])
                .entries()
                .unwrap()
                .filter_map(|e| Some(e.ok()?.path().ok()?.to_string_lossy().into_owned()))
                .collect();
            assert!(!names.contains(&"injected.txt".to_string()), "{names:?}");
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("a.txt` changed while it was being sent")
                    && err.contains(why)
                    && err.contains("run the build again"),
                "{err}"
            );
        }
    }
}
