//! Copying changed files into a container and reading them back: the tar
//! that goes to `PUT /containers/{id}/archive`, the owner its files get,
//! and the check that the container holds the bytes that were sent.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::engine::{Engine, EngineError};

/// One path to copy.
#[derive(Clone, Debug)]
pub struct Copy {
    /// On the host.
    pub host: PathBuf,
    /// In the container (absolute).
    pub container: String,
}

/// What was put in an archive: each regular file's container path and the
/// hash of the bytes sent.
pub type Sent = BTreeMap<String, blake3::Hash>;

/// The archive of `copies` (in order; a directory is one entry, its files
/// are listed by the caller), every entry owned by `owner` (uid, gid), as
/// compose's sync leaves files owned by the container's user. A path that
/// vanished since it was listed is left out (the next event deletes it).
pub fn archive(copies: &[Copy], owner: (u64, u64)) -> std::io::Result<(bytes::Bytes, Sent)> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut sent = Sent::new();
    for c in copies {
        let Ok(meta) = std::fs::symlink_metadata(&c.host) else {
            continue;
        };
        let name = c.container.trim_start_matches('/');
        let mut h = tar::Header::new_gnu();
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mode(meta.mode() & 0o7777);
        h.set_mtime(meta.mtime().max(0) as u64);
        let ft = meta.file_type();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, name, std::io::empty())?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&c.host)?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            tar.append_link(&mut h, name, target)?;
        } else if ft.is_file() {
            // Read once: the bytes hashed are the bytes sent, even if the
            // file changes meanwhile (its next event sends it again).
            let data = match std::fs::read(&c.host) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, name, &data[..])?;
            sent.insert(c.container.clone(), blake3::hash(&data));
        }
    }
    Ok((tar.into_inner()?.into(), sent))
}

/// The uid and gid that `user` (a container's `Config.User`: `name`,
/// `uid`, `name:group`, `uid:gid`, or empty for root) stands for, read from
/// the container's own `/etc/passwd` and `/etc/group` as the engine does
/// for `docker cp -a`. A name that is not found is an error.
pub async fn owner(engine: &Engine, id: &str, user: &str) -> Result<(u64, u64), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_text(engine, id, "/etc/passwd").await?;
    // name:x:uid:gid:…
    let by_user = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && (f[0] == u || f[2] == u)).then(|| (f[2].parse().ok(), f[3].parse().ok()))
    });
    let uid = match (u.parse::<u64>(), &by_user) {
        (Ok(n), _) => n,
        (Err(_), Some((Some(n), _))) => *n,
        _ => return Err(format!("user `{u}` is not in the container's /etc/passwd")),
    };
    let gid = match g {
        None => by_user.and_then(|(_, g)| g).unwrap_or(0),
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                let group = read_text(engine, id, "/etc/group").await?;
                group
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() > 2 && f[0] == g).then(|| f[2].parse().ok())?
                    })
                    .ok_or_else(|| format!("group `{g}` is not in the container's /etc/group"))?
            }
        },
    };
    Ok((uid, gid))
}

async fn read_text(engine: &Engine, id: &str, path: &str) -> Result<String, String> {
    let tar = engine
        .get_archive(id, path)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let mut a = tar::Archive::new(&tar[..]);
    let mut text = String::new();
    if let Ok(mut entries) = a.entries() {
        if let Some(Ok(mut e)) = entries.next() {
            let _ = e.read_to_string(&mut text);
        }
    }
    Ok(text)
}

/// The content hashes the container holds at `paths` (`None`: absent or
/// not a regular file), read through `GET /containers/{id}/archive`, so no
/// tool in the image is needed. Paths under one directory are read in one
/// request.
pub async fn read_back(
    engine: &Engine,
    id: &str,
    paths: &[String],
) -> Result<BTreeMap<String, Option<blake3::Hash>>, EngineError> {
    let mut out: BTreeMap<String, Option<blake3::Hash>> =
        paths.iter().map(|p| (p.clone(), None)).collect();
    let groups: Vec<(String, Vec<String>)> = match common_dir(paths) {
        Some(dir) if paths.len() > 1 => vec![(dir, paths.to_vec())],
        _ => paths.iter().map(|p| (p.clone(), vec![p.clone()])).collect(),
    };
    for (root, _) in groups {
        let Some(tar) = engine.get_archive(id, &root).await? else {
            continue;
        };
        // Entries are named from the requested path's last element.
        let parent = match root.rsplit_once('/') {
            Some((p, _)) => p.to_string(),
            None => String::new(),
        };
        let mut a = tar::Archive::new(&tar[..]);
        let Ok(entries) = a.entries() else { continue };
        for e in entries.flatten() {
            let mut e = e;
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let Ok(name) = e.path().map(|p| p.to_string_lossy().into_owned()) else {
                continue;
            };
            let full = format!("{parent}/{}", name.trim_start_matches("./"));
            if let Some(slot) = out.get_mut(&full) {
                let mut data = Vec::new();
                if e.read_to_end(&mut data).is_ok() {
                    *slot = Some(blake3::hash(&data));
                }
            }
        }
    }
    Ok(out)
}

/// The deepest directory holding every path, when it is not `/`.
fn common_dir(paths: &[String]) -> Option<String> {
    let mut parts: Vec<&str> = paths.first()?.split('/').collect();
    parts.pop();
    for p in &paths[1..] {
        let other: Vec<&str> = p.split('/').collect();
        let same = parts
            .iter()
            .zip(&other[..other.len() - 1])
            .take_while(|(a, b)| a == b)
            .count();
        parts.truncate(same);
    }
    let dir = parts.join("/");
    (!dir.is_empty()).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_directory_of_container_paths() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            common_dir(&v(&["/app/src/a.js", "/app/src/b/c.js"])).as_deref(),
            Some("/app/src")
        );
        assert_eq!(common_dir(&v(&["/app/a", "/cfg/b"])), None);
        assert_eq!(common_dir(&v(&["/app/a"])).as_deref(), Some("/app"));
    }

    #[test]
    fn the_archive_carries_the_owner_and_the_hash_of_what_it_sent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
        let copies = vec![
            Copy {
                host: dir.path().join("a.txt"),
                container: "/app/a.txt".into(),
            },
            Copy {
                host: dir.path().join("gone.txt"),
                container: "/app/gone.txt".into(),
            },
        ];
        let (tar, sent) = archive(&copies, (1000, 1001)).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent["/app/a.txt"], blake3::hash(b"hello"));
        let mut a = tar::Archive::new(&tar[..]);
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_string_lossy(), "app/a.txt");
        assert_eq!(e.header().uid().unwrap(), 1000);
        assert_eq!(e.header().gid().unwrap(), 1001);
    }
}
