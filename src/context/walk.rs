//! The sender side of BuildKit's FileSync walk: which entries of a local directory are sent, in
//! which order, with which metadata.
//!
//! When BuildKit asks for a local directory (`FileSync.DiffCopy`), the Go client walks it with
//! `tonistiigi/fsutil` (`fs.go` `Walk`, `filter.go` `NewFilterFS`/`Walk`, `followlinks.go`,
//! `stat.go`/`stat_unix.go` `mkstat`, `hardlinks.go`) and streams one STAT packet per entry. The
//! receiver validates the order (`validator.go`), so [`walk`] reproduces that walk exactly:
//!
//! * **Order.** Depth-first pre-order, the entries of each directory sorted byte-wise by name
//!   (Go `filepath.WalkDir`). On full paths this is byte order with `/` below every other byte:
//!   `a`, `a/b`, `a-b`, `a.txt`. The root itself is never an entry. Symlinks are never followed.
//! * **Filters** ([`WalkOptions`], the `include-patterns`, `exclude-patterns` and `followpaths`
//!   metadata of the DiffCopy call). Matching is [`PatternMatcher::matches_using_parent_results`]
//!   with the parent directory's result carried down, so nothing is re-matched from scratch.
//!   * An entry is kept when it (or a parent) matches an include pattern, if there are any, and
//!     does not match the exclude patterns (last match wins, `!` re-includes).
//!   * A directory that is not kept is still descended into, unless fsutil can prove nothing
//!     below it can be kept: it is skipped when it is excluded and either there are no `!`
//!     exceptions or every exception is a literal path (ignoring a trailing `/*` or `/**`) that
//!     does not lie below it; likewise for includes when every include pattern is such a
//!     literal path. A single wildcard (`*`, `?`, `[`, `]`, `^`, `\`) in any exception (or
//!     include) makes fsutil descend into every excluded (or non-included) directory.
//!   * A directory that is not kept itself is sent lazily, just before its first kept
//!     descendant; one with no kept descendant is not sent at all.
//! * **followpaths** are resolved like fsutil `FollowLinks` (see [`follow_links`]) and appended
//!   to the include patterns. If one of them resolves to `.` they add nothing.
//! * **Metadata** ([`Entry`]) is `lstat` data in fsutil's conventions: Go `os.FileMode` bits
//!   ([`mode`]), with the socket bit cleared; size 0 for directories, the target length for
//!   symlinks; `linkname` is the target of a symlink, or for a file whose inode was already sent
//!   in this walk, the path it was first sent under (a hard link).
//!
//! Deliberate differences from fsutil, none of which changes a walk of a stable tree:
//! hard links are keyed by (device, inode) where fsutil uses the inode alone (which can link
//! unrelated files on two file systems); an entry that vanishes during the walk is skipped
//! (fsutil skips the rest of its directory); an unreadable context root is an error (fsutil sends
//! an empty context); `followpaths` are never resolved outside the root; and file names that are
//! not UTF-8 are an error when such an entry would be sent (Go would fail to encode the STAT).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, Metadata};
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, OFlags};

use super::dockerignore::{self, MatchInfo, PatternError, PatternMatcher};

/// Go `io/fs.FileMode` bits, the `mode` of an fsutil STAT (not POSIX `st_mode`).
pub mod mode {
    /// `ModeDir`: a directory.
    pub const DIR: u32 = 1 << 31;
    /// `ModeAppend`: append-only (never set on unix stats).
    pub const APPEND: u32 = 1 << 30;
    /// `ModeExclusive`: exclusive use (never set on unix stats).
    pub const EXCLUSIVE: u32 = 1 << 29;
    /// `ModeTemporary`: temporary file (never set on unix stats).
    pub const TEMPORARY: u32 = 1 << 28;
    /// `ModeSymlink`: a symbolic link.
    pub const SYMLINK: u32 = 1 << 27;
    /// `ModeDevice`: a device (block devices; set together with [`CHAR_DEVICE`] for char devices).
    pub const DEVICE: u32 = 1 << 26;
    /// `ModeNamedPipe`: a FIFO.
    pub const NAMED_PIPE: u32 = 1 << 25;
    /// `ModeSocket`: a unix socket (cleared by fsutil's sender).
    pub const SOCKET: u32 = 1 << 24;
    /// `ModeSetuid`.
    pub const SETUID: u32 = 1 << 23;
    /// `ModeSetgid`.
    pub const SETGID: u32 = 1 << 22;
    /// `ModeCharDevice`: a character device (with [`DEVICE`]).
    pub const CHAR_DEVICE: u32 = 1 << 21;
    /// `ModeSticky`.
    pub const STICKY: u32 = 1 << 20;
    /// `ModeIrregular`: a non-regular file of unknown type.
    pub const IRREGULAR: u32 = 1 << 19;
    /// `ModeType`: the type bits. An entry carries file data iff `mode & TYPE == 0`.
    pub const TYPE: u32 = DIR | SYMLINK | NAMED_PIPE | SOCKET | DEVICE | CHAR_DEVICE | IRREGULAR;
    /// `ModePerm`: the permission bits.
    pub const PERM: u32 = 0o777;
}

// POSIX `st_mode` bits (the same values on every unix Go supports).
const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// Converts a POSIX `st_mode` to Go `os.FileMode` bits, as Go's `os.Lstat` does on unix.
///
/// `0o040755` (a 0755 directory) gives `0x800001ED`; `0o104755` (a setuid 0755 file) gives
/// `0x008001ED`. Unknown file types get no type bit.
pub fn go_mode_from_unix(st_mode: u32) -> u32 {
    let mut m = st_mode & mode::PERM;
    m |= match st_mode & S_IFMT {
        S_IFBLK => mode::DEVICE,
        S_IFCHR => mode::DEVICE | mode::CHAR_DEVICE,
        S_IFDIR => mode::DIR,
        S_IFIFO => mode::NAMED_PIPE,
        S_IFLNK => mode::SYMLINK,
        S_IFSOCK => mode::SOCKET,
        S_IFREG => 0,
        _ => 0,
    };
    if st_mode & S_ISGID != 0 {
        m |= mode::SETGID;
    }
    if st_mode & S_ISUID != 0 {
        m |= mode::SETUID;
    }
    if st_mode & S_ISVTX != 0 {
        m |= mode::STICKY;
    }
    m
}

/// fsutil's `major`/`minor` (the old Linux `dev_t` split, not glibc's).
fn go_major(dev: u64) -> u64 {
    (dev >> 8) & 0xfff
}

fn go_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & 0xfff00)
}

/// The filters of one FileSync request: the gRPC metadata BuildKit sends on `DiffCopy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WalkOptions {
    /// `include-patterns`: if not empty, only paths matching one of these (or below a match)
    /// are sent. `.dockerignore` syntax, `!` allowed.
    pub include_patterns: Vec<String>,
    /// `exclude-patterns`: paths matching these are not sent (normally the `.dockerignore`).
    pub exclude_patterns: Vec<String>,
    /// `followpaths`: paths (wildcards allowed) to send, with the symlinks on the way resolved.
    pub follow_paths: Vec<String>,
}

/// One entry to send as a STAT packet, in fsutil's conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root: `/`-separated, clean, no leading `/` or `./`.
    pub path: String,
    /// Absolute path on disk (under the canonical root), to read the content from.
    pub abs: PathBuf,
    /// Go `os.FileMode` bits ([`mode`]); the socket bit is always cleared, so a socket looks
    /// like an (unreadable) regular file, as with fsutil.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// `lstat` size: 0 for directories, the target length for symlinks. A hard link repeat
    /// keeps the file's size (fsutil zeroes it, then overwrites it with the real size).
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch (not sent; for caches).
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device id of the file system holding the entry.
    pub dev: u64,
    /// Symlink target; for a non-directory, non-symlink entry, the path of an earlier entry of
    /// this walk that is the same file (a hard link); otherwise empty.
    pub linkname: String,
    /// Device major number (block and char devices), with fsutil's `major()`.
    pub devmajor: u64,
    /// Device minor number (block and char devices), with fsutil's `minor()`.
    pub devminor: u64,
}

impl Entry {
    /// Whether the entry carries file data (`mode & ModeType == 0`, fsutil's
    /// `fileCanRequestData`): the receiver may request its content. A hard link repeat is
    /// "regular" too, but the receiver links it instead of requesting it.
    pub fn is_regular(&self) -> bool {
        self.mode & mode::TYPE == 0
    }

    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & mode::DIR != 0
    }

    /// Whether the entry is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & mode::SYMLINK != 0
    }
}

/// Which pattern list an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    /// `include-patterns` (with the resolved `followpaths`).
    Include,
    /// `exclude-patterns`.
    Exclude,
}

impl fmt::Display for PatternKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternKind::Include => "include",
            PatternKind::Exclude => "exclude",
        })
    }
}

/// Why a walk failed. Every variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The context root cannot be resolved.
    #[error("cannot resolve the context directory `{}`", path.display())]
    Root {
        /// The root as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The context root is not a directory.
    #[error("the context `{}` is not a directory", path.display())]
    NotADirectory {
        /// The resolved root.
        path: PathBuf,
    },
    /// A pattern list does not compile.
    #[error("invalid {kind} patterns for `{}`", path.display())]
    InvalidPatterns {
        /// The context root.
        path: PathBuf,
        /// Which list.
        kind: PatternKind,
        /// The pattern error (names the pattern).
        #[source]
        source: PatternError,
    },
    /// A pattern failed while matching an entry (its regular expression is invalid).
    #[error("failed to match {kind} patterns against `{path}`")]
    Match {
        /// The relative path being matched.
        path: String,
        /// Which list.
        kind: PatternKind,
        /// The pattern error (names the pattern).
        #[source]
        source: PatternError,
    },
    /// A `followpaths` value could not be resolved.
    #[error("cannot resolve followpath `{path}`")]
    FollowPath {
        /// The path being resolved (relative to the root).
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A directory could not be listed.
    #[error("cannot read directory `{}`", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// An entry could not be `lstat`ed.
    #[error("cannot stat `{}`", path.display())]
    Stat {
        /// The entry.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A symlink could not be read.
    #[error("cannot read symlink `{}`", path.display())]
    ReadLink {
        /// The symlink.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A directory was replaced (by a symlink or another directory) between
    /// being listed and being read.
    #[error("`{}` was replaced while the context was being read; run the build again", path.display())]
    Changed {
        /// The directory.
        path: PathBuf,
    },
    /// An entry to send has a name (or symlink target) that is not valid UTF-8, which a STAT
    /// cannot carry.
    #[error("path is not valid UTF-8 and cannot be sent: `{}`", path.display())]
    NonUtf8 {
        /// The entry.
        path: PathBuf,
    },
}

/// Whether an I/O error means "not there" the way fsutil's `isNotExist` does (ENOENT, ENOTDIR).
fn is_not_exist(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
        || err.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

// ---------------------------------------------------------------------------------------------
// followpaths (fsutil `followlinks.go`)
// ---------------------------------------------------------------------------------------------

/// fsutil's `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
fn contains_wildcards(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// fsutil's `dedupePaths` (meant for a sorted list): drops each path below the previously kept
/// one; `None` ("no filter") if any path is `.`. Note that with an empty `last`, a path that
/// starts with `/` is dropped.
fn dedupe_paths(paths: &[String]) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(paths.len());
    let mut last_slash = String::from("/");
    for p in paths {
        if p == "." {
            return None;
        }
        if p.starts_with(&last_slash) {
            continue;
        }
        out.push(p.clone());
        last_slash = format!("{p}/");
    }
    Some(out)
}

struct Resolver<'a> {
    root: &'a Path,
    resolved: HashSet<String>,
}

impl Resolver<'_> {
    /// `lstat` of a clean relative path; `None` when it does not exist, is the root, or would
    /// be outside the root.
    fn lstat(&self, rel: &str) -> Result<Option<Metadata>, WalkError> {
        if rel == "." || rel == "/" || rel == ".." || rel.starts_with("../") {
            return Ok(None);
        }
        match fs::symlink_metadata(self.root.join(rel)) {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if is_not_exist(&e) => Ok(None),
            Err(source) => Err(WalkError::FollowPath {
                path: rel.to_string(),
                source,
            }),
        }
    }

    /// Sorted names in a directory; `None` if it is missing or not a directory.
    fn read_dir(&self, rel: &str) -> Result<Option<Vec<String>>, WalkError> {
        let rel = dockerignore::clean(rel);
        let abs = if rel == "." || rel == "/" {
            self.root.to_path_buf()
        } else {
            match self.lstat(&rel)? {
                Some(meta) if meta.is_dir() => self.root.join(&rel),
                _ => return Ok(None),
            }
        };
        let entries = match fs::read_dir(&abs) {
            Ok(entries) => entries,
            Err(e) if is_not_exist(&e) => return Ok(Some(Vec::new())),
            Err(source) => return Err(WalkError::FollowPath { path: rel, source }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| WalkError::FollowPath {
                path: rel.clone(),
                source,
            })?;
            // A name that is not UTF-8 can never be sent; skip it here.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(Some(names))
    }

    /// fsutil's `readSymlink`: the resolved targets (as `/`-rooted paths inside the root) of the
    /// symlink at `p`, or of every symlink matching `p`'s wildcard last element. `None` when
    /// there is none.
    fn read_symlink(
        &self,
        p: &str,
        allow_wildcard: bool,
    ) -> Result<Option<Vec<String>>, WalkError> {
        let base = dockerignore::base(p);
        if allow_wildcard && contains_wildcards(base) {
            let parent = dockerignore::dir(p);
            let Some(names) = self.read_dir(&parent)? else {
                return Ok(None);
            };
            let mut out: Option<Vec<String>> = None;
            for name in names {
                if dockerignore::glob_match(base, &name).unwrap_or(false) {
                    let candidate = dockerignore::join(&[&parent, &name]);
                    if let Some(targets) = self.read_symlink(&candidate, false)? {
                        out.get_or_insert_with(Vec::new).extend(targets);
                    }
                }
            }
            return Ok(out);
        }
        let Some(meta) = self.lstat(p)? else {
            return Ok(None);
        };
        if !meta.file_type().is_symlink() {
            return Ok(None);
        }
        let abs = self.root.join(p);
        let target = fs::read_link(&abs).map_err(|source| WalkError::ReadLink {
            path: abs.clone(),
            source,
        })?;
        let target = target
            .to_str()
            .ok_or_else(|| WalkError::NonUtf8 { path: abs.clone() })?;
        let link = dockerignore::clean(target);
        if link.starts_with('/') {
            return Ok(Some(vec![link]));
        }
        let joined = dockerignore::join(&[&dockerignore::dir(p), &link]);
        Ok(Some(vec![dockerignore::join(&["/", &joined])]))
    }

    /// fsutil's `symlinkResolver.append`.
    fn append(&mut self, path: &str) -> Result<(), WalkError> {
        let mut rest = dockerignore::join(&[".", path]);
        let mut current = String::from(".");
        loop {
            let (first, remainder) = match rest.split_once('/') {
                Some((first, remainder)) => (first.to_string(), remainder.to_string()),
                None => (rest.clone(), String::new()),
            };
            current = dockerignore::join(&[&current, &first]);
            let targets = self.read_symlink(&current, true)?;
            rest = remainder;
            if (rest.is_empty() || targets.is_some()) && self.resolved.contains(&current) {
                return Ok(());
            }
            if let Some(targets) = targets {
                self.resolved.insert(current);
                for target in targets {
                    self.append(&dockerignore::join(&[&target, &rest]))?;
                }
                return Ok(());
            }
            if rest.is_empty() {
                self.resolved.insert(current);
                return Ok(());
            }
        }
    }
}

/// Resolves `followpaths` like fsutil's `FollowLinks`, against the directory `root`.
///
/// Each path is walked element by element from the root. An element that is a symlink is
/// recorded itself and its target is followed with the rest of the path (an absolute target
/// counts from the root; a relative one cannot climb above it). An element with wildcards is
/// matched (Go `filepath.Match`) against its directory's entries, and every matching symlink
/// is recorded and followed the same way; the wildcard path itself is recorded too when it
/// matched a symlink or is the last element. Each path ends recorded as it was resolved. The
/// result is sorted and de-duplicated (a path below another is dropped). `Ok(None)` means one
/// of the paths resolved to `.`, the root: no filter.
pub fn follow_links(root: &Path, paths: &[String]) -> Result<Option<Vec<String>>, WalkError> {
    let mut resolver = Resolver {
        root,
        resolved: HashSet::new(),
    };
    for p in paths {
        resolver.append(p)?;
    }
    let mut out: Vec<String> = resolver.resolved.into_iter().collect();
    out.sort();
    Ok(dedupe_paths(&out))
}

/// The include patterns fsutil ends up with: `include_patterns` plus the resolved
/// `follow_paths` (de-duplicated as fsutil does, which can also drop entries of
/// `include_patterns`). Empty means no include filter. `root` must be the canonical root.
fn effective_includes(root: &Path, opts: &WalkOptions) -> Result<Vec<String>, WalkError> {
    let mut include = opts.include_patterns.clone();
    // An empty list is how the metadata says "no followpaths" (a nil slice in Go).
    if !opts.follow_paths.is_empty() {
        if let Some(targets) = follow_links(root, &opts.follow_paths)? {
            include.extend(targets);
            include = dedupe_paths(&include).unwrap_or_default();
        }
    }
    Ok(include)
}

/// The include patterns a walk of `root` with `opts` applies (see [`follow_links`]): useful to
/// explain a walk. Empty means no include filter.
pub fn include_patterns(root: &Path, opts: &WalkOptions) -> Result<Vec<String>, WalkError> {
    effective_includes(&canonical_root(root)?, opts)
}

// ---------------------------------------------------------------------------------------------
// Filtering (fsutil `filter.go`)
// ---------------------------------------------------------------------------------------------

/// fsutil's `patternWithoutTrailingGlob`: the pattern without one trailing `/**`, then without
/// one trailing `/*`.
fn without_trailing_glob(pattern: &str) -> &str {
    let p = pattern.strip_suffix("/**").unwrap_or(pattern);
    p.strip_suffix("/*").unwrap_or(p)
}

/// Characters that make fsutil treat a pattern as more than a literal path.
fn has_pattern_chars(pattern: &str) -> bool {
    without_trailing_glob(pattern)
        .chars()
        .any(|c| matches!(c, '*' | '[' | ']' | '?' | '^' | '\\'))
}

/// Whether a pattern of the given polarity, as a literal path, is `dir` or lies below it
/// (fsutil: `HasPrefix(pattern+"/", dir+"/")`).
fn any_pattern_below(matcher: &PatternMatcher, exclusion: bool, dir: &str) -> bool {
    matcher
        .patterns()
        .iter()
        .filter(|p| p.is_exclusion() == exclusion)
        .any(|p| {
            let literal = without_trailing_glob(p.text());
            literal.starts_with(dir)
                && (literal.len() == dir.len() || literal.as_bytes()[dir.len()] == b'/')
        })
}

struct Filter {
    include: Option<PatternMatcher>,
    exclude: Option<PatternMatcher>,
    only_prefix_includes: bool,
    only_prefix_exclude_exceptions: bool,
}

impl Filter {
    fn new(root: &Path, opts: &WalkOptions) -> Result<Filter, WalkError> {
        let invalid = |kind| {
            move |source| WalkError::InvalidPatterns {
                path: root.to_path_buf(),
                kind,
                source,
            }
        };
        let includes = effective_includes(root, opts)?;
        let include = if includes.is_empty() {
            None
        } else {
            Some(PatternMatcher::new(&includes).map_err(invalid(PatternKind::Include))?)
        };
        let exclude = if opts.exclude_patterns.is_empty() {
            None
        } else {
            Some(
                PatternMatcher::new(&opts.exclude_patterns)
                    .map_err(invalid(PatternKind::Exclude))?,
            )
        };
        let only_literal = |m: &Option<PatternMatcher>, exclusion: bool| match m {
            None => true,
            Some(m) => !m
                .patterns()
                .iter()
                .any(|p| p.is_exclusion() == exclusion && has_pattern_chars(p.text())),
        };
        Ok(Filter {
            only_prefix_includes: only_literal(&include, false),
            only_prefix_exclude_exceptions: only_literal(&exclude, true),
            include,
            exclude,
        })
    }
}

/// What the filter decided for one entry.
enum Verdict {
    /// Skip it, and everything below it.
    Prune,
    /// Walk it; `keep` says whether to send it.
    Walk {
        keep: bool,
        include: MatchInfo,
        exclude: MatchInfo,
    },
}

impl Filter {
    fn judge(&self, path: &str, is_dir: bool, parent: &Frame) -> Result<Verdict, WalkError> {
        let mut keep = true;
        let mut include_info = MatchInfo::default();
        let mut exclude_info = MatchInfo::default();
        if let Some(include) = &self.include {
            let (matched, info) = include
                .matches_using_parent_results(path, &parent.include)
                .map_err(|source| WalkError::Match {
                    path: path.to_string(),
                    kind: PatternKind::Include,
                    source,
                })?;
            include_info = info;
            if !matched {
                if is_dir && self.only_prefix_includes && !any_pattern_below(include, false, path) {
                    return Ok(Verdict::Prune);
                }
                keep = false;
            }
        }
        if let Some(exclude) = &self.exclude {
            let (matched, info) = exclude
                .matches_using_parent_results(path, &parent.exclude)
                .map_err(|source| WalkError::Match {
                    path: path.to_string(),
                    kind: PatternKind::Exclude,
                    source,
                })?;
            exclude_info = info;
            if matched {
                if is_dir
                    && self.only_prefix_exclude_exceptions
                    && (!exclude.exclusions() || !any_pattern_below(exclude, true, path))
                {
                    return Ok(Verdict::Prune);
                }
                keep = false;
            }
        }
        Ok(Verdict::Walk {
            keep,
            include: include_info,
            exclude: exclude_info,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------------

struct Child {
    name: OsString,
    /// The name as text (lossy when it is not UTF-8).
    text: String,
    non_utf8: bool,
    is_dir: bool,
}

/// A directory being walked.
struct Frame {
    /// Relative path ("" for the root).
    rel: String,
    abs: PathBuf,
    /// The open directory: its children are listed, `lstat`ed and opened
    /// by name relative to it.
    dir: OwnedFd,
    /// Whether the path holds a name that is not UTF-8.
    non_utf8: bool,
    /// Whether its STAT was sent (always true for the root, which is never sent).
    emitted: bool,
    include: MatchInfo,
    exclude: MatchInfo,
    children: Vec<Child>,
    next: usize,
}

fn canonical_root(root: &Path) -> Result<PathBuf, WalkError> {
    let resolved = fs::canonicalize(root).map_err(|source| WalkError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    let meta = fs::metadata(&resolved).map_err(|source| WalkError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(WalkError::NotADirectory { path: resolved });
    }
    Ok(resolved)
}

/// A context root, open: the walk reads every directory relative to this
/// handle, and the files it lists are opened relative to it when served
/// ([`crate::context::listing`]), so a path component swapped for a symlink
/// afterwards is never followed out of the tree.
#[derive(Debug)]
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

impl Root {
    /// Resolves `root` (symlinks included, as fsutil does for the root itself)
    /// and opens it.
    pub fn open(root: &Path) -> Result<Root, WalkError> {
        let path = canonical_root(root)?;
        let fd = rfs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rfs::Mode::empty(),
        )
        .map_err(|e| WalkError::Root {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        Ok(Root { path, fd })
    }

    /// The canonical path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open directory.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens the directory `name` of `parent` without following a symlink.
fn open_dir_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rfs::Mode::empty(),
    )?)
}

/// Lists an open directory, sorted byte-wise by name.
fn read_children(dir: BorrowedFd<'_>) -> io::Result<Vec<Child>> {
    let entries = rfs::Dir::read_from(dir)?;
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let name = OsStr::from_bytes(bytes).to_os_string();
        let is_dir = match entry.file_type() {
            rfs::FileType::Directory => true,
            rfs::FileType::Unknown => match StatData::lstat_at(dir, &name) {
                Ok(meta) => meta.mode & S_IFMT == S_IFDIR,
                Err(e) if is_not_exist(&e) => continue,
                Err(e) => return Err(e),
            },
            _ => false,
        };
        let (text, non_utf8) = match name.to_str() {
            Some(s) => (s.to_string(), false),
            None => (name.to_string_lossy().into_owned(), true),
        };
        children.push(Child {
            name,
            text,
            non_utf8,
            is_dir,
        });
    }
    children.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(children)
}

/// What `lstat` says of an entry.
struct StatData {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
    rdev: u64,
    nlink: u64,
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl StatData {
    // The field types of `struct stat` differ between targets.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn of(st: &rfs::Stat) -> Self {
        Self {
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size as u64,
            mtime_ns: nanos(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: nanos(st.st_ctime as i64, st.st_ctime_nsec as i64),
            ino: st.st_ino as u64,
            dev: st.st_dev as u64,
            rdev: st.st_rdev as u64,
            nlink: st.st_nlink as u64,
        }
    }

    /// `lstat` of `name` in the open directory `dir`: the kernel resolves
    /// one path component, never a symlink.
    fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Self> {
        Ok(Self::of(&rfs::statat(
            dir,
            name,
            rfs::AtFlags::SYMLINK_NOFOLLOW,
        )?))
    }

    /// `fstat` of an open file or directory.
    fn of_fd(fd: BorrowedFd<'_>) -> io::Result<Self> {
        Ok(Self::of(&rfs::fstat(fd)?))
    }
}

struct Walker<'a, F> {
    filter: Filter,
    /// First path sent for each (device, inode) with more than one link.
    hardlinks: HashMap<(u64, u64), String>,
    emit: &'a mut F,
}

impl<F: FnMut(Entry) -> ControlFlow<()>> Walker<'_, F> {
    /// `lstat`s the entry `name` of the open directory `dir` and builds its
    /// STAT. `None` if it vanished.
    fn stat(
        &mut self,
        rel: &str,
        abs: &Path,
        non_utf8: bool,
        dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> Result<Option<Entry>, WalkError> {
        if non_utf8 {
            return Err(WalkError::NonUtf8 {
                path: abs.to_path_buf(),
            });
        }
        let meta = match StatData::lstat_at(dir, name) {
            Ok(meta) => meta,
            Err(e) if is_not_exist(&e) => return Ok(None),
            Err(source) => {
                return Err(WalkError::Stat {
                    path: abs.to_path_buf(),
                    source,
                })
            }
        };
        self.entry(rel, abs, meta, Some((dir, name))).map(Some)
    }

    /// The STAT of an entry from its stat data; `at` (its directory and
    /// name) reads a symlink's target.
    fn entry(
        &mut self,
        rel: &str,
        abs: &Path,
        meta: StatData,
        at: Option<(BorrowedFd<'_>, &OsStr)>,
    ) -> Result<Entry, WalkError> {
        let st_mode = meta.mode;
        let file_type = st_mode & S_IFMT;
        let is_dir = file_type == S_IFDIR;
        let mut entry = Entry {
            path: rel.to_string(),
            abs: abs.to_path_buf(),
            mode: go_mode_from_unix(st_mode) & !mode::SOCKET,
            uid: meta.uid,
            gid: meta.gid,
            size: 0,
            mtime_ns: meta.mtime_ns,
            ctime_ns: meta.ctime_ns,
            ino: meta.ino,
            dev: meta.dev,
            linkname: String::new(),
            devmajor: 0,
            devminor: 0,
        };
        if is_dir {
            return Ok(entry);
        }
        // fsutil tests the block and char bits separately, so symlinks and sockets (whose
        // type shares a bit with them) take `rdev` too; it is 0 for them.
        if st_mode & S_IFBLK != 0 {
            entry.devmajor = go_major(meta.rdev);
            entry.devminor = go_minor(meta.rdev);
        }
        entry.size = meta.size;
        if file_type == S_IFLNK {
            let read_link = |source: io::Error| WalkError::ReadLink {
                path: abs.to_path_buf(),
                source,
            };
            let (dir, name) = at.ok_or_else(|| read_link(io::ErrorKind::InvalidInput.into()))?;
            let target = rfs::readlinkat(dir, name, Vec::new()).map_err(|e| read_link(e.into()))?;
            entry.linkname = target.into_string().map_err(|_| WalkError::NonUtf8 {
                path: abs.to_path_buf(),
            })?;
        } else if meta.nlink > 1 {
            match self.hardlinks.get(&(entry.dev, entry.ino)) {
                Some(first) => entry.linkname = first.clone(),
                None => {
                    self.hardlinks
                        .insert((entry.dev, entry.ino), entry.path.clone());
                }
            }
        }
        Ok(entry)
    }

    /// Sends the directories on the stack that were walked but not sent yet,
    /// with the stat data of the directory actually read (its open handle).
    fn emit_parents(&mut self, stack: &mut [Frame]) -> Result<ControlFlow<()>, WalkError> {
        for frame in stack.iter_mut().filter(|f| !f.emitted) {
            if frame.non_utf8 {
                return Err(WalkError::NonUtf8 {
                    path: frame.abs.clone(),
                });
            }
            let meta = StatData::of_fd(frame.dir.as_fd()).map_err(|source| WalkError::Stat {
                path: frame.abs.clone(),
                source,
            })?;
            let entry = self.entry(&frame.rel, &frame.abs, meta, None)?;
            frame.emitted = true;
            if (self.emit)(entry).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn run(&mut self, root: &Root) -> Result<(), WalkError> {
        let read_root = |source| WalkError::ReadDir {
            path: root.path.clone(),
            source,
        };
        let dir = root.fd.try_clone().map_err(read_root)?;
        let children = read_children(dir.as_fd()).map_err(read_root)?;
        let mut stack = vec![Frame {
            rel: String::new(),
            abs: root.path.clone(),
            dir,
            non_utf8: false,
            emitted: true,
            include: MatchInfo::default(),
            exclude: MatchInfo::default(),
            children,
            next: 0,
        }];
        while let Some(top) = stack.last_mut() {
            let Some(child) = top.children.get_mut(top.next) else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let name = std::mem::take(&mut child.name);
            let is_dir = child.is_dir;
            let path = if top.rel.is_empty() {
                std::mem::take(&mut child.text)
            } else {
                format!("{}/{}", top.rel, child.text)
            };
            let non_utf8 = top.non_utf8 || child.non_utf8;
            let abs = top.abs.join(&name);

            let (keep, include, exclude) = match self.filter.judge(&path, is_dir, top)? {
                Verdict::Prune => continue,
                Verdict::Walk {
                    keep,
                    include,
                    exclude,
                } => (keep, include, exclude),
            };
            let mut emitted = None;
            if keep {
                if self.emit_parents(&mut stack)?.is_break() {
                    return Ok(());
                }
                let Some(parent) = stack.last() else {
                    continue;
                };
                match self.stat(&path, &abs, non_utf8, parent.dir.as_fd(), &name)? {
                    Some(entry) => {
                        let id = (entry.dev, entry.ino, entry.is_dir());
                        if (self.emit)(entry).is_break() {
                            return Ok(());
                        }
                        emitted = Some(id);
                    }
                    None => continue,
                }
            }
            if !is_dir {
                continue;
            }
            let Some(parent) = stack.last() else {
                continue;
            };
            // Descend by name from the open parent, never through a symlink:
            // a directory swapped for a link between `readdir` and here is
            // not followed out of the context.
            let swapped = || WalkError::Changed { path: abs.clone() };
            let dir = match open_dir_at(parent.dir.as_fd(), &name) {
                Ok(dir) => dir,
                // No longer a directory (a symlink gives ELOOP): if it was
                // sent as one, the listing would be false; otherwise it is as
                // if it had vanished.
                Err(e)
                    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
                        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
                {
                    if emitted.is_some() {
                        return Err(swapped());
                    }
                    continue;
                }
                Err(e) if is_not_exist(&e) => continue,
                // fsutil ignores an unreadable directory that is only walked for what may be
                // kept below it.
                Err(e) if !keep && e.kind() == io::ErrorKind::PermissionDenied => continue,
                Err(source) => return Err(WalkError::ReadDir { path: abs, source }),
            };
            if let Some((dev, ino, was_dir)) = emitted {
                // The STAT sent was of another inode (or not a directory): what
                // would be listed below it is not what was announced.
                let meta = StatData::of_fd(dir.as_fd()).map_err(|source| WalkError::Stat {
                    path: abs.clone(),
                    source,
                })?;
                if !was_dir || meta.dev != dev || meta.ino != ino {
                    return Err(swapped());
                }
            }
            let children = match read_children(dir.as_fd()) {
                Ok(children) => children,
                Err(e) if is_not_exist(&e) => continue,
                Err(e) if !keep && e.kind() == io::ErrorKind::PermissionDenied => continue,
                Err(source) => return Err(WalkError::ReadDir { path: abs, source }),
            };
            stack.push(Frame {
                rel: path,
                abs,
                dir,
                non_utf8,
                emitted: emitted.is_some(),
                include,
                exclude,
                children,
                next: 0,
            });
        }
        Ok(())
    }
}

/// Walks `root` as fsutil's sender does and calls `emit` with each entry, in STAT order. `emit`
/// may return [`ControlFlow::Break`] to stop the walk early (the walk then returns `Ok`).
pub fn walk_each<F>(root: &Path, opts: &WalkOptions, mut emit: F) -> Result<(), WalkError>
where
    F: FnMut(Entry) -> ControlFlow<()>,
{
    walk_root_each(&Root::open(root)?, opts, &mut emit)
}

/// [`walk_each`] of a root already open.
pub fn walk_root_each<F>(root: &Root, opts: &WalkOptions, mut emit: F) -> Result<(), WalkError>
where
    F: FnMut(Entry) -> ControlFlow<()>,
{
    let filter = Filter::new(&root.path, opts)?;
    let mut walker = Walker {
        filter,
        hardlinks: HashMap::new(),
        emit: &mut emit,
    };
    walker.run(root)
}

/// [`walk`] of a root already open.
pub fn walk_root(root: &Root, opts: &WalkOptions) -> Result<Vec<Entry>, WalkError> {
    let mut out = Vec::new();
    walk_root_each(root, opts, |entry| {
        out.push(entry);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Walks `root` as fsutil's sender does: the entries to send, in STAT order (see the module
/// documentation).
pub fn walk(root: &Path, opts: &WalkOptions) -> Result<Vec<Entry>, WalkError> {
    let mut out = Vec::new();
    walk_each(root, opts, |entry| {
        out.push(entry);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tree(spec: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for item in spec {
            let path = dir.path().join(item.trim_end_matches('/'));
            if item.ends_with('/') {
                fs::create_dir_all(&path).unwrap();
            } else {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, item.as_bytes()).unwrap();
            }
        }
        dir
    }

    fn opts(include: &[&str], exclude: &[&str], follow: &[&str]) -> WalkOptions {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
        WalkOptions {
            include_patterns: v(include),
            exclude_patterns: v(exclude),
            follow_paths: v(follow),
        }
    }

    fn paths(root: &Path, o: &WalkOptions) -> Vec<String> {
        walk(root, o)
            .unwrap_or_else(|e| panic!("walk failed: {e}"))
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn order_is_fsutil_order() {
        let t = tree(&["a/b", "a-b", "a.txt", "a/c/d", "B", "_x", "a0/"]);
        assert_eq!(
            paths(t.path(), &WalkOptions::default()),
            ["B", "_x", "a", "a/b", "a/c", "a/c/d", "a-b", "a.txt", "a0"]
        );
    }

    #[test]
    fn empty_dirs_and_lazy_parents() {
        let t = tree(&[
            "src/a.rs",
            "src/deep/x/y.rs",
            "empty/",
            "other/z",
            "src/deep/n/",
        ]);
        // No filter: empty directories are sent.
        assert_eq!(
            paths(t.path(), &WalkOptions::default()),
            [
                "empty",
                "other",
                "other/z",
                "src",
                "src/a.rs",
                "src/deep",
                "src/deep/n",
                "src/deep/x",
                "src/deep/x/y.rs"
            ]
        );
        // A wildcard include: non-matching directories are walked and sent only when
        // something below them is kept; empty ones are not sent.
        assert_eq!(
            paths(t.path(), &opts(&["**/*.rs"], &[], &[])),
            [
                "src",
                "src/a.rs",
                "src/deep",
                "src/deep/x",
                "src/deep/x/y.rs"
            ]
        );
        // A literal include: parents are sent lazily before the first kept entry.
        assert_eq!(
            paths(t.path(), &opts(&["src/deep/x"], &[], &[])),
            ["src", "src/deep", "src/deep/x", "src/deep/x/y.rs"]
        );
    }

    #[test]
    fn excludes_with_exceptions() {
        let t = tree(&[
            "docs/a.txt",
            "docs/keep/k.md",
            "docs/keep/k.txt",
            "docs/other/o.md",
            "main.go",
            "x.md",
        ]);
        // A literal exception below an excluded directory: fsutil descends only where the
        // exception can match, and sends the parents lazily.
        assert_eq!(
            paths(t.path(), &opts(&[], &["docs", "!docs/keep/k.md"], &[])),
            ["docs", "docs/keep", "docs/keep/k.md", "main.go", "x.md"]
        );
        // A wildcard exception: every excluded directory is walked.
        assert_eq!(
            paths(t.path(), &opts(&[], &["docs", "!**/*.md"], &[])),
            [
                "docs",
                "docs/keep",
                "docs/keep/k.md",
                "docs/other",
                "docs/other/o.md",
                "main.go",
                "x.md"
            ]
        );
        // No exception: the directory is pruned.
        assert_eq!(
            paths(t.path(), &opts(&[], &["docs", "*.md"], &[])),
            ["main.go"]
        );
        // An exception that re-includes the directory itself.
        assert_eq!(
            paths(t.path(), &opts(&[], &["*", "!docs/keep"], &[])),
            ["docs", "docs/keep", "docs/keep/k.md", "docs/keep/k.txt"]
        );
    }

    #[test]
    fn include_and_exclude_together() {
        let t = tree(&["src/a.rs", "src/gen/b.rs", "src/c.txt", "README"]);
        assert_eq!(
            paths(t.path(), &opts(&["src"], &["src/gen"], &[])),
            ["src", "src/a.rs", "src/c.txt"]
        );
        // An include list of one empty pattern compiles to nothing: nothing is sent.
        assert!(paths(t.path(), &opts(&[""], &[], &[])).is_empty());
    }

    #[test]
    fn followpaths() {
        let t = tree(&[
            "real/dir/file",
            "real/dir/other",
            "real/unrelated",
            "data/x.json",
            "data/z.txt",
            "other/o.json",
            "top",
        ]);
        let root = t.path();
        symlink("real/dir", root.join("link")).unwrap();
        symlink("../other/o.json", root.join("data/l.json")).unwrap();
        symlink("/real/dir/other", root.join("abs")).unwrap();

        // A symlink component: the link itself and the resolved target are sent.
        assert_eq!(
            follow_links(root, &["link/file".to_string()]).unwrap(),
            Some(vec!["link".to_string(), "real/dir/file".to_string()])
        );
        assert_eq!(
            paths(root, &opts(&[], &[], &["link/file"])),
            ["link", "real", "real/dir", "real/dir/file"]
        );
        // A wildcard: matching symlinks are followed, the glob itself becomes a pattern.
        assert_eq!(
            follow_links(root, &["data/*.json".to_string()]).unwrap(),
            Some(vec!["data/*.json".to_string(), "other/o.json".to_string()])
        );
        assert_eq!(
            paths(root, &opts(&[], &[], &["data/*.json"])),
            [
                "data",
                "data/l.json",
                "data/x.json",
                "other",
                "other/o.json"
            ]
        );
        // An absolute target counts from the root.
        assert_eq!(
            paths(root, &opts(&[], &[], &["abs"])),
            ["abs", "real", "real/dir", "real/dir/other"]
        );
        // Followpaths are added to the include patterns.
        assert_eq!(
            paths(root, &opts(&["top"], &[], &["link"])),
            [
                "link",
                "real",
                "real/dir",
                "real/dir/file",
                "real/dir/other",
                "top"
            ]
        );
        // `.` means no filter at all.
        assert_eq!(follow_links(root, &[".".to_string()]).unwrap(), None);
        assert_eq!(
            paths(root, &opts(&[], &[], &["top", "."])).len(),
            paths(root, &WalkOptions::default()).len()
        );
        // A missing path is still an include pattern.
        assert_eq!(
            follow_links(root, &["nope/x".to_string()]).unwrap(),
            Some(vec!["nope/x".to_string()])
        );
        // Symlink loops terminate.
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert_eq!(
            follow_links(root, &["loop1/x".to_string()]).unwrap(),
            Some(vec!["loop1".to_string(), "loop2".to_string()])
        );
    }

    /// A directory swapped for a symlink to a directory outside the context
    /// between its STAT and its descent is not followed: the walk fails, and
    /// nothing of the outside directory is listed.
    #[test]
    fn a_directory_swapped_for_a_symlink_is_not_followed() {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("ctx");
        let outside = top.path().join("outside");
        fs::create_dir_all(root.join("d")).unwrap();
        fs::write(root.join("d/inside"), "in").unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "out").unwrap();
        let mut seen = Vec::new();
        let result = walk_each(&root, &WalkOptions::default(), |e| {
            if e.path == "d" {
                fs::rename(root.join("d"), top.path().join("moved")).unwrap();
                symlink(&outside, root.join("d")).unwrap();
            }
            seen.push(e.path);
            ControlFlow::Continue(())
        });
        assert_eq!(seen, ["d"]);
        let err = result.unwrap_err();
        assert!(matches!(err, WalkError::Changed { .. }), "{err:?}");
        assert!(err.to_string().contains("run the build again"), "{err}");
    }

    #[test]
    fn symlinks_are_not_followed() {
        let t = tree(&["d/f"]);
        symlink("d", t.path().join("ld")).unwrap();
        symlink("does/not/exist", t.path().join("dangling")).unwrap();
        let entries = walk(t.path(), &WalkOptions::default()).unwrap();
        let got: Vec<_> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.linkname.as_str(), e.size, e.is_symlink()))
            .collect();
        assert_eq!(
            got,
            [
                ("d", "", 0, false),
                ("d/f", "", 3, false),
                ("dangling", "does/not/exist", 14, true),
                ("ld", "d", 1, true),
            ]
        );
        let link = &entries[3];
        assert_eq!(link.mode, mode::SYMLINK | 0o777);
        assert!(!link.is_regular() && !link.is_dir());
    }

    #[test]
    fn hard_links() {
        let t = tree(&["a/f1", "c/other"]);
        let root = t.path();
        fs::create_dir(root.join("b")).unwrap();
        fs::hard_link(root.join("a/f1"), root.join("b/f2")).unwrap();
        fs::hard_link(root.join("a/f1"), root.join("c/f3")).unwrap();
        let find = |entries: &[Entry], p: &str| entries.iter().find(|e| e.path == p).cloned();

        let all = walk(root, &WalkOptions::default()).unwrap();
        let f1 = find(&all, "a/f1").unwrap();
        let f2 = find(&all, "b/f2").unwrap();
        let f3 = find(&all, "c/f3").unwrap();
        assert_eq!(f1.linkname, "");
        assert_eq!((f2.linkname.as_str(), f2.size), ("a/f1", 4));
        assert_eq!(f3.linkname, "a/f1");
        assert!(f2.is_regular());

        // The first path is excluded: the first one sent takes its place.
        let some = walk(root, &opts(&[], &["a"], &[])).unwrap();
        assert_eq!(find(&some, "b/f2").unwrap().linkname, "");
        assert_eq!(find(&some, "c/f3").unwrap().linkname, "b/f2");
    }

    #[test]
    fn modes() {
        let t = tree(&["dir/", "suid", "plain", "sticky/"]);
        let root = t.path();
        let set = |p: &str, m: u32| {
            fs::set_permissions(root.join(p), fs::Permissions::from_mode(m)).unwrap()
        };
        set("dir", 0o755);
        set("suid", 0o4755);
        set("plain", 0o644);
        set("sticky", 0o1777);
        let entries = walk(root, &WalkOptions::default()).unwrap();
        let modes: Vec<_> = entries.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(
            modes,
            [
                ("dir", 0x8000_01ED),
                ("plain", 0x1A4),
                ("sticky", mode::DIR | mode::STICKY | 0o777),
                ("suid", 0x0080_01ED),
            ]
        );
        assert!(entries[0].is_dir() && !entries[0].is_regular());
        assert_eq!(entries[0].size, 0);
        assert!(entries[1].is_regular());
        assert!(entries[1].mtime_ns > 1_000_000_000 * 1_000_000_000);

        assert_eq!(
            go_mode_from_unix(0o020_620),
            mode::DEVICE | mode::CHAR_DEVICE | 0o620
        );
        assert_eq!(go_mode_from_unix(0o060_660), mode::DEVICE | 0o660);
        assert_eq!(go_mode_from_unix(0o010_644), mode::NAMED_PIPE | 0o644);
        assert_eq!(go_mode_from_unix(0o140_755), mode::SOCKET | 0o755);
        assert_eq!(go_mode_from_unix(0o102_755), mode::SETGID | 0o755);
        assert_eq!(go_major(0x0801), 8);
        assert_eq!(go_minor(0x0801), 1);
    }

    #[test]
    fn sockets_and_fifos() {
        let t = tree(&["f"]);
        let root = t.path();
        let _listener = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(root.join("pipe"))
            .status()
            .is_ok_and(|s| s.success());
        let entries = walk(root, &WalkOptions::default()).unwrap();
        let sock = entries.iter().find(|e| e.path == "sock").unwrap();
        assert_eq!(sock.mode & mode::SOCKET, 0, "fsutil clears the socket bit");
        assert!(sock.is_regular());
        if fifo {
            let pipe = entries.iter().find(|e| e.path == "pipe").unwrap();
            assert_eq!(pipe.mode & mode::TYPE, mode::NAMED_PIPE);
        }
    }

    #[test]
    fn non_utf8_names() {
        use std::os::unix::ffi::OsStrExt;
        let t = tree(&["ok"]);
        let bad = t.path().join(std::ffi::OsStr::from_bytes(b"bad\xff"));
        fs::write(&bad, b"x").unwrap();
        match walk(t.path(), &WalkOptions::default()) {
            Err(WalkError::NonUtf8 { path }) => assert_eq!(path.file_name(), bad.file_name()),
            other => panic!("expected a NonUtf8 error, got {other:?}"),
        }
        // Excluded, it is never sent, so it is no error.
        assert_eq!(paths(t.path(), &opts(&[], &["bad*"], &[])), ["ok"]);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let t = tree(&["a"]);
        let err = walk(t.path(), &opts(&[], &["ok", "["], &[])).unwrap_err();
        assert!(matches!(
            err,
            WalkError::InvalidPatterns {
                kind: PatternKind::Exclude,
                ..
            }
        ));
        let err = walk(t.path(), &opts(&[], &["[z-a]"], &[])).unwrap_err();
        assert!(
            matches!(&err, WalkError::Match { path, kind: PatternKind::Exclude, .. } if path == "a"),
            "{err:?}"
        );
        let err = walk(&t.path().join("a"), &WalkOptions::default()).unwrap_err();
        assert!(matches!(err, WalkError::NotADirectory { .. }));
        let err = walk(&t.path().join("missing"), &WalkOptions::default()).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn root_symlink_is_resolved_and_never_sent() {
        let t = tree(&["ctx/f"]);
        symlink("ctx", t.path().join("link")).unwrap();
        let entries = walk(&t.path().join("link"), &WalkOptions::default()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].path, "f");
        assert_eq!(
            entries[0].abs,
            fs::canonicalize(t.path()).unwrap().join("ctx/f")
        );
    }

    #[test]
    fn early_stop() {
        let t = tree(&["a", "b", "c"]);
        let mut seen = Vec::new();
        walk_each(t.path(), &WalkOptions::default(), |e| {
            seen.push(e.path);
            if seen.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(seen, ["a", "b"]);
    }

    #[test]
    fn dedupe_like_fsutil() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dedupe_paths(&v(&["a", "a/b", "ab", "b/c", "b/c/d"])),
            Some(v(&["a", "ab", "b/c"]))
        );
        assert_eq!(dedupe_paths(&v(&["a", "."])), None);
        assert_eq!(dedupe_paths(&v(&["/x", "y"])), Some(v(&["y"])));
        assert!(contains_wildcards("a*"));
        assert!(!contains_wildcards("a\\*"));
        assert_eq!(without_trailing_glob("a/b/**"), "a/b");
        assert_eq!(without_trailing_glob("a/*/**"), "a");
    }
}
