//! File content hashes: BLAKE3 over a file's bytes, nothing else.
//!
//! A file's identity for cbuild is `blake3(contents)`. Names, modes and
//! timestamps are not part of it; they are compared separately where they
//! matter (see [`super::clock`]).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Files at least this large are hashed with memory mapping and several
/// threads (BLAKE3's tree mode).
const MMAP_THRESHOLD: u64 = 4 << 20;

/// The BLAKE3 hash of the file at `path`, and how many bytes were read.
pub fn hash_file(path: &Path) -> io::Result<(blake3::Hash, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        // fsutil sends a unix socket as an empty regular file (it cannot be
        // opened for reading): hash it as one.
        Err(e) if is_socket(path) => {
            let _ = e;
            return Ok((blake3::hash(b""), 0));
        }
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut hasher = blake3::Hasher::new();
    if len >= MMAP_THRESHOLD {
        hasher.update_mmap_rayon(path)?;
        return Ok((hasher.finalize(), len));
    }
    let mut buf = [0u8; 64 * 1024];
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
}
