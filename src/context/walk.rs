//! TEMPORARY stand-in (replaced by the real fsutil-compatible walk).
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone)]
pub struct WalkOptions {
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    pub follow_paths: Vec<String>,
}
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub abs: PathBuf,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
    pub linkname: String,
    pub devmajor: u64,
    pub devminor: u64,
}
impl Entry {
    pub fn is_regular(&self) -> bool {
        self.mode & 0xFFF8_0000 == 0
    }
}
#[derive(Debug, thiserror::Error)]
#[error("walk error at {path}: {msg}")]
pub struct WalkError {
    path: String,
    msg: String,
}
pub fn walk(root: &Path, _opts: &WalkOptions) -> Result<Vec<Entry>, WalkError> {
    let mut out = Vec::new();
    rec(root, "", &mut out)?;
    Ok(out)
}
fn rec(dir: &Path, rel: &str, out: &mut Vec<Entry>) -> Result<(), WalkError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| WalkError {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for n in names {
        let abs = dir.join(&n);
        let md = std::fs::symlink_metadata(&abs).map_err(|e| WalkError {
            path: abs.display().to_string(),
            msg: e.to_string(),
        })?;
        let p = if rel.is_empty() {
            n.clone()
        } else {
            format!("{rel}/{n}")
        };
        let ft = md.file_type();
        let mut mode = md.mode() & 0o777;
        let mut linkname = String::new();
        if ft.is_dir() {
            mode |= 1 << 31
        } else if ft.is_symlink() {
            mode |= 1 << 27;
            linkname = std::fs::read_link(&abs)
                .unwrap()
                .to_string_lossy()
                .to_string();
        }
        out.push(Entry {
            path: p.clone(),
            abs: abs.clone(),
            mode,
            uid: md.uid(),
            gid: md.gid(),
            size: if ft.is_dir() { 0 } else { md.size() },
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime_ns: 0,
            ino: md.ino(),
            dev: md.dev(),
            linkname,
            devmajor: 0,
            devminor: 0,
        });
        if ft.is_dir() {
            rec(&abs, &p, out)?;
        }
    }
    Ok(())
}
