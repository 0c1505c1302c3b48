//! The minimal context of one build as BuildKit receives it, and its digest.
//!
//! A report view over [`super::listing`], for `cbuild context`: [`Manifest::build`] takes the
//! listing FileSync would serve of the main context ([`super::listing::hashed_walk`]) with
//! `exclude-patterns` from the ignore file ([`super::ignorefile`]) and `followpaths` from the
//! Dockerfile ([`super::dockerfile`]), and adds what a report needs: what the ignore file kept
//! out and why, sizes per directory. Every regular file that would be sent is hashed through the
//! [`HashCache`], so an unchanged file is never read twice, and a file that is not sent is never
//! read at all.
//!
//! # Context digest
//!
//! The context digest is the *listing digest* ([`super::digest`], format version 1) of the
//! entries BuildKit would receive, so it equals the digest `cbuild build` records for the
//! main-context DiffCopy request and can be compared with it. In short, BLAKE3 is fed
//! `cbuild-listing-v1\0` and then, for each entry in walk order: the relative path and a zero
//! byte; a kind byte (`d` directory, `f` regular file, `h` hard link to an earlier entry, `l`
//! symlink, `o` anything else) and a zero byte; the permission bits with setuid, setgid and
//! sticky as a little-endian u32; then for `f` the size (little-endian u64) and the 32-byte
//! BLAKE3 of the content, for `h` and `l` the link target and a zero byte. Paths cannot hold a
//! zero byte, so the encoding is unambiguous. Its text form is `blake3:<hex>`.
//!
//! Walk order is fsutil's: depth-first, the names in each directory sorted byte-wise, so the
//! paths are in byte order with `/` sorting before every other byte. It is a total order, so a
//! list of entries has exactly one digest.
//!
//! Hashed: the set of paths, each entry's type, permission and special bits, symlink target,
//! hard-link target, and a regular file's size and content. **Not** hashed: modification and
//! change times, owner uid/gid, inode and device numbers, extended attributes, and anything
//! outside the walk (excluded or unused paths, the context directory's own name and
//! metadata). So `touch` leaves the digest alone, while a content change, `chmod` or a symlink
//! retarget changes it.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::cache::{HashCache, HashError};
use super::digest::ListingDigest;
use super::dockerignore::PatternMatcher;
use super::listing::{self, ListingError};
use super::walk::{self, Entry, Root, WalkError, WalkOptions};

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with content.
    File,
    /// A regular file already sent under another path (a hard link).
    Hardlink,
    /// A symbolic link.
    Symlink,
    /// A device, FIFO or other special file.
    Other,
}

/// One entry of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to the context root.
    pub path: String,
    /// Type.
    pub kind: Kind,
    /// Go `os.FileMode` bits.
    pub mode: u32,
    /// Size in bytes (regular files and hard links; 0 otherwise).
    pub size: u64,
    /// BLAKE3 of the content (regular files and hard links).
    pub hash: Option<blake3::Hash>,
    /// Symlink target, or the earlier path of a hard link; empty otherwise.
    pub link: String,
    /// Device major and minor numbers ([`Kind::Other`]).
    pub dev: (u64, u64),
}

impl ManifestEntry {
    fn from_walk(e: &Entry, hash: Option<blake3::Hash>) -> Self {
        let kind = if e.is_dir() {
            Kind::Dir
        } else if e.is_symlink() {
            Kind::Symlink
        } else if e.is_regular() && !e.linkname.is_empty() {
            Kind::Hardlink
        } else if e.is_regular() {
            Kind::File
        } else {
            Kind::Other
        };
        let size = match kind {
            Kind::File | Kind::Hardlink => e.size,
            _ => 0,
        };
        ManifestEntry {
            path: e.path.clone(),
            kind,
            mode: e.mode,
            size,
            hash,
            link: e.linkname.clone(),
            dev: (e.devmajor, e.devminor),
        }
    }
}

/// The context digest of `entries`, in the given order, as `blake3:<hex>` (see the module
/// documentation).
pub fn digest(entries: &[ManifestEntry]) -> String {
    let mut d = ListingDigest::new();
    for e in entries {
        d.add(&e.path, e.mode, e.size, &e.link, e.hash.as_ref());
    }
    d.finish()
}

impl From<ListingError> for ManifestError {
    fn from(e: ListingError) -> Self {
        match e {
            ListingError::Walk(e) => ManifestError::Walk(e),
            ListingError::Hash(e) => ManifestError::Hash(e),
        }
    }
}

/// Why a manifest could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The walk failed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// A file could not be hashed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The ignore file has an invalid pattern.
    #[error("invalid pattern in `{}`", path.display())]
    Ignore {
        /// The ignore file.
        path: PathBuf,
        /// The pattern error (names the line).
        #[source]
        source: super::dockerignore::PatternError,
    },
}

pub use super::ignorefile::IgnoreFile;

/// What to walk.
#[derive(Debug, Clone, Default)]
pub struct ManifestOptions {
    /// The ignore file (`<Dockerfile>.dockerignore` or `.dockerignore`), if any.
    pub ignore: Option<IgnoreFile>,
    /// The followpaths; `None` sends the whole context, an empty list nothing (the build never
    /// asks for the context).
    pub follow_paths: Option<Vec<String>>,
}

/// Paths excluded by one ignore rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExcludedBy {
    /// 1-based line in the ignore file.
    pub line: usize,
    /// The pattern on that line.
    pub pattern: String,
    /// Entries (files, directories, links) it kept out.
    pub entries: u64,
    /// Bytes of regular files it kept out.
    pub bytes: u64,
}

/// The bytes and files below one directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirSize {
    /// The directory, relative to the root.
    pub path: String,
    /// Bytes of the regular files below it.
    pub bytes: u64,
    /// Regular files below it.
    pub files: u64,
}

/// What the hash cache did for one manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheCounters {
    /// Files whose content was read and hashed.
    pub files_read: u64,
    /// Bytes read to hash them.
    pub bytes_read: u64,
    /// Files whose cached hash was reused without reading them.
    pub files_cached: u64,
}

/// The minimal context of one build.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The canonical context root.
    pub root: PathBuf,
    /// The entries BuildKit would receive, in walk order.
    pub entries: Vec<ManifestEntry>,
    /// [`digest`] of `entries` (`blake3:<hex>`).
    pub digest: String,
    /// Entries the ignore file kept out, with the index of the deciding pattern.
    excluded: Vec<(String, u64, Option<usize>)>,
    matcher: Option<PatternMatcher>,
    /// The options it was built with.
    pub options: ManifestOptions,
    /// What the hash cache did.
    pub cache: CacheCounters,
}

/// Where a path stands, for `cbuild context --explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Explanation {
    /// Sent. `reincluded` is the `!` line of the ignore file that let it through, if one did.
    Sent {
        /// 1-based ignore-file line and pattern of a deciding `!` exception.
        reincluded: Option<(usize, String)>,
    },
    /// Kept out by an ignore-file line.
    Excluded {
        /// 1-based line.
        line: usize,
        /// The pattern.
        pattern: String,
    },
    /// Exists, but no followpath reaches it.
    NotUsed,
    /// Does not exist in the context.
    Missing,
}

impl Manifest {
    /// Walks `root` as BuildKit's FileSync would with `opts`, hashing every sent regular file
    /// through `cache`.
    pub fn build(
        root: &Path,
        opts: &ManifestOptions,
        cache: &HashCache,
    ) -> Result<Manifest, ManifestError> {
        let root = Root::open(root)?;
        let exclude: Vec<String> = opts
            .ignore
            .as_ref()
            .map(|i| i.lines.iter().map(|l| l.pattern.clone()).collect())
            .unwrap_or_default();
        if opts.follow_paths.as_ref().is_some_and(|f| f.is_empty()) {
            return Ok(Manifest {
                root: root.path().to_path_buf(),
                entries: Vec::new(),
                digest: digest(&[]),
                excluded: Vec::new(),
                matcher: None,
                options: opts.clone(),
                cache: CacheCounters::default(),
            });
        }
        let follow_paths = opts.follow_paths.clone().unwrap_or_default();
        let before = (
            cache.stats.files_hashed.load(Ordering::Relaxed),
            cache.stats.bytes_hashed.load(Ordering::Relaxed),
            cache.stats.hits.load(Ordering::Relaxed),
        );
        // What FileSync serves of a plain directory with these filters.
        let sent = listing::hashed_walk(
            &root,
            &WalkOptions {
                include_patterns: Vec::new(),
                exclude_patterns: exclude.clone(),
                follow_paths: follow_paths.clone(),
            },
            cache,
        )?;
        let counters = CacheCounters {
            files_read: cache.stats.files_hashed.load(Ordering::Relaxed) - before.0,
            bytes_read: cache.stats.bytes_hashed.load(Ordering::Relaxed) - before.1,
            files_cached: cache.stats.hits.load(Ordering::Relaxed) - before.2,
        };
        let entries: Vec<ManifestEntry> = sent
            .iter()
            .map(|(e, h)| ManifestEntry::from_walk(e, *h))
            .collect();

        // What the ignore file kept out: the same walk without it, minus what is sent. Only
        // stat data is read.
        let mut excluded = Vec::new();
        let mut matcher = None;
        if let Some(ignore) = &opts.ignore {
            let m = PatternMatcher::from_ignore_lines(&ignore.lines).map_err(|source| {
                ManifestError::Ignore {
                    path: ignore.path.clone(),
                    source,
                }
            })?;
            let sent_paths: std::collections::HashSet<&str> =
                entries.iter().map(|e| e.path.as_str()).collect();
            walk::walk_root_each(
                &root,
                &WalkOptions {
                    include_patterns: Vec::new(),
                    exclude_patterns: Vec::new(),
                    follow_paths,
                },
                |e| {
                    if !sent_paths.contains(e.path.as_str()) {
                        let size = if e.is_regular() { e.size } else { 0 };
                        excluded.push((e.path.clone(), size, m.last_match(&e.path)));
                    }
                    std::ops::ControlFlow::Continue(())
                },
            )?;
            matcher = Some(m);
        }
        let digest = digest(&entries);
        Ok(Manifest {
            root: root.path().to_path_buf(),
            entries,
            digest,
            excluded,
            matcher,
            options: opts.clone(),
            cache: counters,
        })
    }

    /// Regular files sent (hard links included).
    pub fn files(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, Kind::File | Kind::Hardlink))
            .count() as u64
    }

    /// Bytes of the regular files sent.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The digest as text: `blake3:<hex>`.
    pub fn digest_string(&self) -> String {
        self.digest.clone()
    }

    /// Entries and file bytes kept out by the ignore file.
    pub fn excluded_totals(&self) -> (u64, u64) {
        (
            self.excluded.len() as u64,
            self.excluded.iter().map(|e| e.1).sum(),
        )
    }

    /// The excluded entries grouped by the ignore-file line that excluded them, in line order.
    pub fn excluded_by_rule(&self) -> Vec<ExcludedBy> {
        let Some(m) = &self.matcher else {
            return Vec::new();
        };
        let mut by: BTreeMap<usize, ExcludedBy> = BTreeMap::new();
        for (_, size, rule) in &self.excluded {
            let Some(i) = rule else { continue };
            let p = &m.patterns()[*i];
            let line = p.line().unwrap_or(0);
            let slot = by.entry(line).or_insert_with(|| ExcludedBy {
                line,
                pattern: p.to_string(),
                entries: 0,
                bytes: 0,
            });
            slot.entries += 1;
            slot.bytes += size;
        }
        by.into_values().collect()
    }

    /// Every directory with the bytes and files below it (`du`), largest first, at most `n`.
    pub fn largest_dirs(&self, n: usize) -> Vec<DirSize> {
        let mut sizes: HashMap<&str, (u64, u64)> = HashMap::new();
        for e in &self.entries {
            if !matches!(e.kind, Kind::File | Kind::Hardlink) {
                continue;
            }
            let mut p = e.path.as_str();
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                let s = sizes.entry(p).or_default();
                s.0 += e.size;
                s.1 += 1;
            }
        }
        let mut v: Vec<DirSize> = sizes
            .into_iter()
            .map(|(path, (bytes, files))| DirSize {
                path: path.to_string(),
                bytes,
                files,
            })
            .collect();
        v.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
        v.truncate(n);
        v
    }

    /// Sent directories whose name marks them as build output, caches or dependencies that
    /// rarely belong in a build context (outermost only), largest first.
    pub fn heavy_dirs(&self) -> Vec<DirSize> {
        let all = self.largest_dirs(usize::MAX);
        let mut heavy: Vec<DirSize> = all
            .into_iter()
            .filter(|d| {
                let segs: Vec<&str> = d.path.split('/').collect();
                let last = segs.len() - 1;
                HEAVY_DIRS.contains(&segs[last])
                    && !segs[..last].iter().any(|s| HEAVY_DIRS.contains(s))
            })
            .collect();
        heavy.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
        heavy
    }

    /// Whether `path` (relative to the root) is sent, and why.
    pub fn explain(&self, path: &str) -> io::Result<Explanation> {
        let path = super::dockerignore::clean(path);
        let path = path.trim_start_matches('/');
        let reason = |i: usize| {
            let p = &self
                .matcher
                .as_ref()
                .expect("a rule implies a matcher")
                .patterns()[i];
            (p.line().unwrap_or(0), p.to_string(), p.is_exclusion())
        };
        if self.entries.iter().any(|e| e.path == path) {
            let reincluded = self
                .matcher
                .as_ref()
                .and_then(|m| m.last_match(path))
                .map(reason)
                .filter(|r| r.2)
                .map(|r| (r.0, r.1));
            return Ok(Explanation::Sent { reincluded });
        }
        if let Some((_, _, Some(i))) = self.excluded.iter().find(|e| e.0 == path) {
            let (line, pattern, _) = reason(*i);
            return Ok(Explanation::Excluded { line, pattern });
        }
        match std::fs::symlink_metadata(self.root.join(path)) {
            Ok(_) => Ok(Explanation::NotUsed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Explanation::Missing),
            Err(e) => Err(e),
        }
    }
}

/// Directory names that usually hold dependencies, build output, caches or history.
pub const HEAVY_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "bower_components",
    "target",
    "dist",
    "build",
    "out",
    "logs",
    "log",
    "tmp",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
    ".gradle",
    ".next",
    ".nuxt",
    ".cache",
    "vendor",
    "coverage",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::walk::mode;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "src/a.rs", b"fn a() {}");
        write(d.path(), "src/b/c.txt", b"hello");
        write(d.path(), "node_modules/x/index.js", &[7u8; 4096]);
        write(d.path(), "README", b"readme");
        symlink("src/a.rs", d.path().join("link")).unwrap();
        for p in ["src/a.rs", "src/b/c.txt", "README"] {
            std::fs::set_permissions(d.path().join(p), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        for p in ["src", "src/b"] {
            std::fs::set_permissions(d.path().join(p), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        d
    }

    fn build(root: &Path, follow: Option<&[&str]>, ignore: Option<&str>) -> Manifest {
        let opts = ManifestOptions {
            ignore: ignore.map(|text| IgnoreFile {
                path: root.join(".dockerignore"),
                lines: super::super::dockerignore::parse_ignore_file(text).unwrap(),
            }),
            follow_paths: follow.map(|f| f.iter().map(|s| s.to_string()).collect()),
        };
        Manifest::build(root, &opts, &HashCache::in_memory()).unwrap()
    }

    /// The digest from the walk equals the digest of an entry list written out by hand.
    #[test]
    fn walk_and_replay_agree() {
        let d = tree();
        let m = build(d.path(), Some(&["src"]), None);
        let file = |path: &str, data: &[u8]| ManifestEntry {
            path: path.into(),
            kind: Kind::File,
            mode: 0o644,
            size: data.len() as u64,
            hash: Some(blake3::hash(data)),
            link: String::new(),
            dev: (0, 0),
        };
        let dir = |path: &str| ManifestEntry {
            path: path.into(),
            kind: Kind::Dir,
            mode: mode::DIR | 0o755,
            size: 0,
            hash: None,
            link: String::new(),
            dev: (0, 0),
        };
        let replay = vec![
            dir("src"),
            file("src/a.rs", b"fn a() {}"),
            dir("src/b"),
            file("src/b/c.txt", b"hello"),
        ];
        assert_eq!(m.entries, replay);
        assert_eq!(m.digest, digest(&replay));
        // A third path: the listing digest of a plain walk, as the FileSync server takes it.
        let walked = walk::walk(
            d.path(),
            &WalkOptions {
                follow_paths: vec!["src".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let mut listing = ListingDigest::new();
        for e in &walked {
            let h = e
                .is_regular()
                .then(|| crate::context::hash::hash_file(&e.abs).unwrap().0);
            listing.add_entry(e, h.as_ref());
        }
        assert_eq!(m.digest, listing.finish());
        assert_eq!((m.files(), m.bytes()), (2, 14));
    }

    #[test]
    fn digest_tracks_content_mode_and_links_not_times() {
        let d = tree();
        let base = build(d.path(), None, None).digest;

        // Touching a file (new mtime, same content) keeps the digest.
        let f = std::fs::File::options()
            .write(true)
            .open(d.path().join("src/a.rs"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1))
            .unwrap();
        drop(f);
        assert_eq!(build(d.path(), None, None).digest, base);

        write(d.path(), "src/a.rs", b"fn a() { 1 }");
        let changed = build(d.path(), None, None).digest;
        assert_ne!(changed, base);
        write(d.path(), "src/a.rs", b"fn a() {}");
        assert_eq!(build(d.path(), None, None).digest, base);

        std::fs::set_permissions(
            d.path().join("src/a.rs"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(build(d.path(), None, None).digest, base);
        std::fs::set_permissions(
            d.path().join("src/a.rs"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(build(d.path(), None, None).digest, base);

        std::fs::remove_file(d.path().join("link")).unwrap();
        symlink("src/b/c.txt", d.path().join("link")).unwrap();
        assert_ne!(build(d.path(), None, None).digest, base);
    }

    #[test]
    fn excluded_entries_name_their_rule() {
        let d = tree();
        let m = build(
            d.path(),
            None,
            Some("# deps\nnode_modules\nsrc/b\n!src/b/c.txt\n"),
        );
        assert!(m
            .entries
            .iter()
            .all(|e| !e.path.starts_with("node_modules")));
        assert_eq!(m.excluded_totals(), (3, 4096));
        assert_eq!(
            m.excluded_by_rule(),
            [ExcludedBy {
                line: 2,
                pattern: "node_modules".into(),
                entries: 3,
                bytes: 4096
            }]
        );
        assert_eq!(
            m.explain("node_modules/x/index.js").unwrap(),
            Explanation::Excluded {
                line: 2,
                pattern: "node_modules".into()
            }
        );
        assert_eq!(
            m.explain("./src/b/c.txt").unwrap(),
            Explanation::Sent {
                reincluded: Some((4, "!src/b/c.txt".into()))
            }
        );
        assert_eq!(
            m.explain("README").unwrap(),
            Explanation::Sent { reincluded: None }
        );
        assert_eq!(m.explain("nope").unwrap(), Explanation::Missing);
        let m = build(d.path(), Some(&["src"]), None);
        assert_eq!(m.explain("README").unwrap(), Explanation::NotUsed);
    }

    #[test]
    fn an_unused_context_sends_nothing() {
        let d = tree();
        let m = build(d.path(), Some(&[]), Some("node_modules\n"));
        assert!(m.entries.is_empty());
        assert_eq!(m.digest, digest(&[]));
        assert_eq!(m.excluded_totals(), (0, 0));
        assert_eq!(m.explain("README").unwrap(), Explanation::NotUsed);
    }

    #[test]
    fn largest_and_heavy_dirs() {
        let d = tree();
        let m = build(d.path(), None, None);
        let top = m.largest_dirs(2);
        assert_eq!(top[0].path, "node_modules");
        assert_eq!(top[0].bytes, 4096);
        assert_eq!(top[1].path, "node_modules/x");
        let heavy = m.heavy_dirs();
        assert_eq!(heavy.len(), 1);
        assert_eq!(
            (heavy[0].path.as_str(), heavy[0].files),
            ("node_modules", 1)
        );
    }

    #[test]
    fn the_cache_spares_unchanged_and_unsent_files() {
        let d = tree();
        let cache = HashCache::in_memory();
        let opts = ManifestOptions {
            ignore: None,
            follow_paths: Some(vec!["src".into()]),
        };
        let m = Manifest::build(d.path(), &opts, &cache).unwrap();
        assert_eq!(m.cache.files_read, 2);
        assert_eq!(m.cache.bytes_read, 14);
    }
}
