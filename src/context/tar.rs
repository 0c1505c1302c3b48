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

use std::io::{self, Write};
use std::path::Path;

use super::cache::HashCache;
use super::clock::ContentClock;
use super::walk::{self, mode as gomode, Entry, WalkOptions};

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
    let entries = walk::walk(root, opts).map_err(io::Error::other)?;
    let digests = hashes.hash_all(&entries).map_err(io::Error::other)?;
    if gzip {
        let enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(out, flate2::Compression::fast());
        let (stats, enc) = write_entries(&entries, &digests, clock, enc)?;
        enc.finish()?;
        Ok(stats)
    } else {
        Ok(write_entries(&entries, &digests, clock, out)?.0)
    }
}

fn write_entries<W: Write>(
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
            let f = std::fs::File::open(&e.abs)?;
            let len = f.metadata()?.len();
            if len != e.size {
                return Err(io::Error::other(format!(
                    "`{}` changed while the context was being sent",
                    e.abs.display()
                )));
            }
            h.set_size(len);
            b.append_data(&mut h, &e.path, f)?;
            stats.file_bytes += len;
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
}
