//! The binary layout of cbuild's own state files (hash cache, content
//! clock): read in a few milliseconds even for 30,000 entries, where JSON
//! took tens.
//!
//! Layout: an 8-byte magic naming the file kind and version, the body
//! (little-endian integers, strings as a u32 length and UTF-8 bytes,
//! hashes as 32 raw bytes), then the BLAKE3 hash of everything before it.
//! A file that is short, has another magic or a wrong checksum reads as
//! absent: these files are caches, and a damaged one must never vouch for
//! anything.

/// Builds a file.
pub struct Writer(Vec<u8>);

impl Writer {
    /// A file of kind `magic`.
    pub fn new(magic: &[u8; 8]) -> Self {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(magic);
        Self(buf)
    }

    /// Appends a u32.
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a u64.
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends an i64.
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a string.
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }

    /// Appends a 32-byte hash.
    pub fn hash(&mut self, h: &[u8; 32]) {
        self.0.extend_from_slice(h);
    }

    /// The file's bytes, checksum included.
    pub fn finish(mut self) -> Vec<u8> {
        let sum = blake3::hash(&self.0);
        self.0.extend_from_slice(sum.as_bytes());
        self.0
    }
}

/// Reads a file; every read is `None` past the end.
pub struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The body of `bytes` if it is an intact file of kind `magic`.
    pub fn open(bytes: &'a [u8], magic: &[u8; 8]) -> Option<Self> {
        if bytes.len() < 8 + 32 || &bytes[..8] != magic {
            return None;
        }
        let (content, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(content).as_bytes() != sum {
            return None;
        }
        Some(Self {
            body: content,
            pos: 8,
        })
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.body.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Reads a u32.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// Reads a u64.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// Reads an i64.
    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// Reads a count of records, each at least `min_record` bytes long: a
    /// count the rest of the file cannot hold reads as damage (so nothing
    /// allocates for it).
    pub fn count(&mut self, min_record: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        let left = self.body.len() - self.pos;
        (n.checked_mul(min_record.max(1))? <= left).then_some(n)
    }

    /// Reads a string.
    pub fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    /// Reads a 32-byte hash.
    pub fn hash(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }

    /// Whether every byte was read.
    pub fn at_end(&self) -> bool {
        self.pos == self.body.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut w = Writer::new(b"TEST0001");
        w.u32(7);
        w.str("dir/file");
        w.i64(-5);
        w.hash(&[9; 32]);
        let bytes = w.finish();
        let mut r = Reader::open(&bytes, b"TEST0001").unwrap();
        assert_eq!(r.u32(), Some(7));
        assert_eq!(r.str(), Some("dir/file"));
        assert_eq!(r.i64(), Some(-5));
        assert_eq!(r.hash(), Some([9; 32]));
        assert!(r.at_end());
        assert_eq!(r.u32(), None);
        // A record count larger than the file can hold is damage.
        let mut w = Writer::new(b"TEST0001");
        w.u32(1000);
        w.u64(1);
        let bytes = w.finish();
        let mut r = Reader::open(&bytes, b"TEST0001").unwrap();
        assert_eq!(r.count(8), None);
        let mut r = Reader::open(&bytes, b"TEST0001").unwrap();
        assert_eq!(r.u32(), Some(1000));
        // Another kind, a flipped byte, a truncated file: all absent.
        assert!(Reader::open(&bytes, b"TEST0002").is_none());
        let mut bad = bytes.clone();
        bad[12] ^= 1;
        assert!(Reader::open(&bad, b"TEST0001").is_none());
        assert!(Reader::open(&bytes[..bytes.len() - 1], b"TEST0001").is_none());
    }
}
