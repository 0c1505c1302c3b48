//! File content hashes: BLAKE3 over a file's bytes, nothing else.
//!
//! A file's identity for cbuild is `blake3(contents)`. Names, modes and
//! timestamps are not part of it; they are compared separately where they
//! matter (see [`super::clock`]).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::walk::Entry;

/// Files at least this large are hashed with memory mapping and several
/// threads (BLAKE3's tree mode).
const MMAP_THRESHOLD: u64 = 4 << 20;

/// The BLAKE3 hash of the file at `path`, and how many bytes were read.
pub fn hash_file(path: &Path) -> io::Result<(blake3::Hash, u64)> {
    let file = match File::open(path) {
        Ok(f) => f,
        // fsutil sends a unix socket as an empty regular file (it cannot be
        // opened for reading): hash it as one.
        Err(e) if is_socket(path) => {
            let _ = e;
            return Ok((blake3::hash(b""), 0));
        }
        Err(e) => return Err(e),
    };
    hash_open(file)
}

/// The hash of the walked regular file `e`, read only if it is still the
/// inode the walk listed: the last component is opened without following a
/// symlink, and a path whose directories were swapped for a symlink since
/// the walk leads to another inode, which is refused before a byte is read.
/// So a file outside the context is never read, even while the tree changes.
pub fn hash_entry(e: &Entry) -> io::Result<(blake3::Hash, u64)> {
    use rustix::fs::{self as rfs, Mode, OFlags};
    // O_NONBLOCK: a path swapped for a FIFO must not block the open.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rfs::open(&e.abs, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(err) if err == rustix::io::Errno::NXIO && is_socket(&e.abs) => {
            return Ok((blake3::hash(b""), 0));
        }
        Err(err) if err == rustix::io::Errno::LOOP => return Err(replaced(e)),
        Err(err) => return Err(err.into()),
    };
    let st = rfs::fstat(&fd)?;
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let same = st.st_dev as u64 == e.dev && st.st_ino as u64 == e.ino;
    if !same || rfs::FileType::from_raw_mode(st.st_mode as _) != rfs::FileType::RegularFile {
        return Err(replaced(e));
    }
    hash_open(File::from(fd))
}

fn replaced(e: &Entry) -> io::Error {
    io::Error::other(format!(
        "`{}` was replaced while the context was being read; run the build again",
        e.abs.display()
    ))
}

/// Hashes the opened `file`.
fn hash_open(mut file: File) -> io::Result<(blake3::Hash, u64)> {
    let len = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= MMAP_THRESHOLD {
        // Map the inode already opened, never the path again: the path may
        // lead elsewhere by now. /proc/self/fd/N reopens that same inode.
        use std::os::fd::AsRawFd;
        let own = std::path::PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if hasher.update_mmap_rayon(&own).is_ok() {
            return Ok((hasher.finalize(), len));
        }
        hasher.reset();
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finalize(), total))
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_files_hash_like_blake3() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("s");
        std::fs::write(&small, b"hello").unwrap();
        assert_eq!(hash_file(&small).unwrap(), (blake3::hash(b"hello"), 5));
        let big = dir.path().join("b");
        let data: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&big, &data).unwrap();
        assert_eq!(hash_file(&big).unwrap().0, blake3::hash(&data));
    }

    #[test]
    fn a_socket_hashes_as_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(hash_file(&sock).unwrap(), (blake3::hash(b""), 0));
    }

    #[test]
    fn a_walked_file_swapped_for_a_link_outside_is_never_read() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f"), b"secret").unwrap();
        std::fs::create_dir(outside.path().join("d")).unwrap();
        std::fs::write(outside.path().join("d/f"), b"secret").unwrap();
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("f"), b"public").unwrap();
        std::fs::create_dir(ctx.path().join("d")).unwrap();
        std::fs::write(ctx.path().join("d/f"), b"public").unwrap();
        let big: Vec<u8> = vec![7; (MMAP_THRESHOLD + 1) as usize];
        std::fs::write(ctx.path().join("big"), &big).unwrap();
        let entries = crate::context::walk::walk(ctx.path(), &Default::default()).unwrap();
        let entry = |p: &str| entries.iter().find(|e| e.path == p).unwrap().clone();
        let (f, df, bigf) = (entry("f"), entry("d/f"), entry("big"));
        assert_eq!(hash_entry(&f).unwrap().0, blake3::hash(b"public"));
        assert_eq!(hash_entry(&bigf).unwrap().0, blake3::hash(&big));

        // The file itself, then its directory, swapped for symlinks to the
        // outside after the walk.
        std::fs::remove_file(ctx.path().join("f")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), ctx.path().join("f")).unwrap();
        std::fs::remove_dir_all(ctx.path().join("d")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("d"), ctx.path().join("d")).unwrap();
        for e in [&f, &df] {
            let err = hash_entry(e).unwrap_err();
            assert!(err.to_string().contains("was replaced"), "{err}");
        }
        // A file renamed over the listed one (an editor's save) is another
        // inode: written beside it first, so its inode cannot be a reuse of
        // the listed one's.
        std::fs::write(ctx.path().join("big.new"), b"x").unwrap();
        std::fs::rename(ctx.path().join("big.new"), ctx.path().join("big")).unwrap();
        assert!(hash_entry(&bigf).is_err());
    }
}
