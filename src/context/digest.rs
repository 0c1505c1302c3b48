//! The listing digest: one BLAKE3 hash for what a build was shown of a
//! directory, used to tell whether a build's inputs changed.
//!
//! Format, version 1. The hasher is fed `cbuild-listing-v1` and a zero
//! byte, then for each entry, in walk order (which is sorted):
//! - the relative path, `/`-separated, and a zero byte;
//! - one kind byte: `d` directory, `f` regular file, `h` hard link to an
//!   earlier path, `l` symbolic link, `o` anything else; then a zero byte;
//! - the permission and special bits (Go mode bits `0o777`, setuid, setgid,
//!   sticky) as a little-endian u32;
//! - for `f`: the size as a little-endian u64 and the 32-byte BLAKE3 hash
//!   of the content;
//! - for `h` and `l`: the link target and a zero byte.
//!
//! Not hashed: timestamps, owners, inode numbers, extended attributes. So
//! a touch or a fresh checkout keeps the digest; a content, mode, name or
//! link change alters it.

use super::walk::{mode, Entry};

const SPECIAL: u32 = mode::PERM | mode::SETUID | mode::SETGID | mode::STICKY;

/// Builds a listing digest entry by entry. It also keeps a short
/// fingerprint of each entry (the hash of that entry's part of the input),
/// so two listings can later be compared path by path, unless made
/// [`without_fingerprints`](Self::without_fingerprints).
pub struct ListingDigest {
    hasher: blake3::Hasher,
    fingerprints: Option<Vec<(String, String)>>,
    part: Vec<u8>,
}

impl Default for ListingDigest {
    fn default() -> Self {
        Self::new()
    }
}

impl ListingDigest {
    /// An empty listing.
    pub fn new() -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"cbuild-listing-v1\0");
        Self {
            hasher,
            fingerprints: Some(Vec::new()),
            part: Vec::new(),
        }
    }

    /// An empty listing that computes only the digest (cheaper: no hash
    /// and no string per entry).
    pub fn without_fingerprints() -> Self {
        Self {
            fingerprints: None,
            ..Self::new()
        }
    }

    /// Adds one entry; `content` is the hash of a regular file's bytes.
    pub fn add(
        &mut self,
        path: &str,
        go_mode: u32,
        size: u64,
        link: &str,
        content: Option<&blake3::Hash>,
    ) {
        let h = &mut self.part;
        h.clear();
        h.extend_from_slice(path.as_bytes());
        h.push(0);
        let kind = if go_mode & mode::DIR != 0 {
            b'd'
        } else if go_mode & mode::SYMLINK != 0 {
            b'l'
        } else if go_mode & mode::TYPE != 0 {
            b'o'
        } else if !link.is_empty() {
            b'h'
        } else {
            b'f'
        };
        h.extend_from_slice(&[kind, 0]);
        h.extend_from_slice(&(go_mode & SPECIAL).to_le_bytes());
        match kind {
            b'f' => {
                h.extend_from_slice(&size.to_le_bytes());
                h.extend_from_slice(content.map(|c| c.as_bytes()).unwrap_or(&[0u8; 32]));
            }
            b'h' | b'l' => {
                h.extend_from_slice(link.as_bytes());
                h.push(0);
            }
            _ => {}
        }
        self.hasher.update(&self.part);
        if let Some(fps) = &mut self.fingerprints {
            let fp = blake3::hash(&self.part).to_hex();
            fps.push((path.to_string(), fp[..16].to_string()));
        }
    }

    /// Each entry's path and fingerprint, in order (none when made
    /// without them).
    pub fn fingerprints(&self) -> &[(String, String)] {
        self.fingerprints.as_deref().unwrap_or(&[])
    }

    /// Adds a walked entry.
    pub fn add_entry(&mut self, e: &Entry, content: Option<&blake3::Hash>) {
        self.add(&e.path, e.mode, e.size, &e.linkname, content);
    }

    /// The digest, as `blake3:<hex>`.
    pub fn finish(&self) -> String {
        format!("blake3:{}", self.hasher.finalize().to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_follows_content_mode_and_links_not_time() {
        let h1 = blake3::hash(b"1");
        let h2 = blake3::hash(b"2");
        let one = |content: &blake3::Hash, m: u32, link: &str| {
            let mut d = ListingDigest::new();
            d.add("dir", mode::DIR | 0o755, 0, "", None);
            d.add("dir/f", m, 1, "", Some(content));
            d.add("dir/l", mode::SYMLINK | 0o777, 1, link, None);
            d.finish()
        };
        let base = one(&h1, 0o644, "f");
        assert_eq!(base, one(&h1, 0o644, "f"));
        assert_ne!(base, one(&h2, 0o644, "f"));
        assert_ne!(base, one(&h1, 0o755, "f"));
        assert_ne!(base, one(&h1, 0o644, "g"));
        assert!(base.starts_with("blake3:"));
    }

    #[test]
    fn the_digest_does_not_depend_on_keeping_fingerprints() {
        let h = blake3::hash(b"1");
        let fill = |d: &mut ListingDigest| {
            d.add("a", mode::DIR | 0o755, 0, "", None);
            d.add("a/b", 0o644, 1, "", Some(&h));
            d.add("a/c", 0o644, 1, "a/b", None);
        };
        let (mut with, mut without) = (ListingDigest::new(), ListingDigest::without_fingerprints());
        fill(&mut with);
        fill(&mut without);
        assert_eq!(with.finish(), without.finish());
        assert_eq!(with.fingerprints().len(), 3);
        assert!(without.fingerprints().is_empty());
    }
}
