//! FileSync: the daemon pulls a local directory from cbuild with fsutil's
//! DiffCopy protocol, cbuild being the sender (tonistiigi/fsutil `send.go`).
//!
//! The exchange, all on one bidirectional stream of `Packet`s:
//! 1. cbuild sends one STAT per entry, in the order of
//!    [`crate::context::walk`], then a STAT with no `stat` to end the walk.
//!    An entry's id is its index in that STAT sequence.
//! 2. The daemon sends REQ `id` for each regular file it wants (it diffs the
//!    listing against its previous copy), possibly while STATs still flow.
//! 3. cbuild answers each REQ with DATA packets and an empty DATA for EOF.
//! 4. The daemon sends FIN once every file is written; cbuild answers FIN and
//!    ends the stream.
//!
//! What to send is chosen by the call's metadata: `dir-name` (the local),
//! `include-patterns`, `exclude-patterns` and `followpaths` (each value
//! URL-query-escaped when `<key>-encoded` is `1`, BuildKit v0.12+).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::{LocalDir, Served, TrackedDir, TransferStats};
use crate::buildkit::proto::fsutil::types::{packet::PacketType, Packet, Stat};
use crate::buildkit::proto::moby::filesync::v1::file_sync_server::FileSync;
use crate::context::cache::HashCache;
use crate::context::digest::ListingDigest;
use crate::context::walk::{self, Entry, WalkOptions};

/// Size of one DATA packet (fsutil uses 32 KiB; the daemon accepts 16 MiB).
const CHUNK: usize = 128 * 1024;
/// Files read and sent at once per DiffCopy call.
const PARALLEL_FILES: usize = 16;

/// Serves the session's local directories.
#[derive(Debug)]
pub struct FileSyncService {
    locals: Arc<HashMap<String, LocalDir>>,
    stats: Arc<TransferStats>,
}

impl FileSyncService {
    /// A service for these locals, counting what it sends into `stats`.
    pub fn new(locals: Arc<HashMap<String, LocalDir>>, stats: Arc<TransferStats>) -> Self {
        Self { locals, stats }
    }
}

type PacketStream = ReceiverStream<Result<Packet, Status>>;

#[tonic::async_trait]
impl FileSync for FileSyncService {
    type DiffCopyStream = PacketStream;
    type TarStreamStream = PacketStream;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let md = request.metadata();
        let dir_name = values(md, "dir-name")
            .into_iter()
            .next()
            .ok_or_else(|| Status::invalid_argument("DiffCopy without dir-name"))?;
        let local =
            self.locals.get(&dir_name).cloned().ok_or_else(|| {
                Status::not_found(format!("no access allowed to dir {dir_name:?}"))
            })?;
        let opts = WalkOptions {
            include_patterns: values(md, "include-patterns"),
            exclude_patterns: values(md, "exclude-patterns"),
            follow_paths: values(md, "followpaths"),
        };
        tracing::debug!(dir = %dir_name, ?opts, "DiffCopy");
        let (tx, rx) = mpsc::channel(64);
        let incoming = request.into_inner();
        let is_context = dir_name != "dockerfile";
        tokio::spawn(send(
            dir_name,
            local,
            opts,
            incoming,
            tx,
            self.stats.clone(),
            is_context,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn tar_stream(
        &self,
        _: Request<Streaming<Packet>>,
    ) -> Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented("TarStream is not used by BuildKit"))
    }
}

/// Every value of a metadata key, decoded when `<key>-encoded: 1` says the
/// values are URL-query-escaped.
fn values(md: &MetadataMap, key: &str) -> Vec<String> {
    let encoded = md
        .get(format!("{key}-encoded").as_str())
        .and_then(|v| v.to_str().ok())
        == Some("1");
    md.get_all(key)
        .iter()
        .map(|v| {
            let raw = String::from_utf8_lossy(v.as_encoded_bytes()).to_string();
            if encoded {
                query_unescape(&raw)
            } else {
                raw
            }
        })
        .collect()
}

/// Go's `url.QueryUnescape`: `%XX` and `+` for space. Malformed escapes are
/// kept as they are.
fn query_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// What a REQ id refers to.
#[derive(Clone)]
enum Source {
    /// A file, with the content hash it was listed with.
    Disk(PathBuf, Option<blake3::Hash>),
    Memory(Bytes),
}

/// The STAT packet announcing a walked entry (its real mtime).
pub fn stat_packet(e: &Entry) -> Packet {
    Packet {
        r#type: PacketType::PacketStat as i32,
        stat: Some(Stat {
            path: e.path.clone(),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: e.size as i64,
            mod_time: e.mtime_ns,
            linkname: e.linkname.clone(),
            devmajor: e.devmajor as i64,
            devminor: e.devminor as i64,
            xattrs: HashMap::new(),
        }),
        id: 0,
        data: Vec::new(),
    }
}

/// What one DiffCopy call serves: the STAT packets, the files REQs may
/// ask for, and what the listing digest (see [`crate::context::digest`])
/// is made of.
struct Listing {
    packets: Vec<Packet>,
    sources: HashMap<u32, Source>,
    /// The entries in STAT order (a file's REQ id is its index here), with
    /// their content hashes. A hash is `None` only for a file of a tracked
    /// directory that its clock has never reported: its stamp is its real
    /// mtime whatever its content, so it is hashed while it is sent (a cold
    /// transfer then reads each file once, and the first STAT leaves at
    /// once), and [`Listing::finish`] fills it in.
    items: Vec<(Item, Option<blake3::Hash>)>,
    tracked: Option<TrackedDir>,
}

/// One entry of a listing.
enum Item {
    Entry(Entry),
    Virtual { name: String, size: u64 },
}

impl Listing {
    /// Completes the hashes (`sent`: those computed while sending, by REQ
    /// id), records them in the tracked directory's cache and clock, and
    /// returns the listing digest and the per-entry fingerprints.
    fn finish(
        mut self,
        purpose: Purpose,
        sent: &HashMap<u32, blake3::Hash>,
    ) -> Result<(String, Vec<(String, String)>), String> {
        if let Some(t) = &self.tracked {
            let mut unsent = Vec::new();
            for (i, (item, h)) in self.items.iter_mut().enumerate() {
                let Item::Entry(e) = item else { continue };
                // A hard-link repeat is never asked for, and its content is
                // not part of the digest (kind `h`): nothing to read.
                if h.is_some() || !e.is_regular() || !e.linkname.is_empty() {
                    continue;
                }
                match sent.get(&(i as u32)) {
                    Some(got) => {
                        t.hashes.record(e, got);
                        t.clock.record(&e.path, e.mode, e.mtime_ns, got);
                        *h = Some(*got);
                    }
                    None => unsent.push(i),
                }
            }
            // Files the daemon did not ask for (rare: a fresh generation
            // means it holds none of them).
            if !unsent.is_empty() {
                let entries: Vec<Entry> = unsent
                    .iter()
                    .filter_map(|&i| match &self.items[i].0 {
                        Item::Entry(e) => Some(e.clone()),
                        Item::Virtual { .. } => None,
                    })
                    .collect();
                let hashes = t.hashes.hash_all(&entries).map_err(hash_error)?;
                for ((&i, e), h) in unsent.iter().zip(&entries).zip(hashes) {
                    if let Some(h) = h {
                        t.clock.record(&e.path, e.mode, e.mtime_ns, &h);
                        self.items[i].1 = Some(h);
                    }
                }
            }
        }
        let mut digest = if purpose == Purpose::Digest {
            ListingDigest::without_fingerprints()
        } else {
            ListingDigest::new()
        };
        for (item, h) in &self.items {
            match item {
                Item::Entry(e) => digest.add_entry(e, h.as_ref()),
                Item::Virtual { name, size } => digest.add(name, 0o644, *size, "", h.as_ref()),
            }
        }
        Ok((digest.finish(), digest.fingerprints().to_vec()))
    }
}

/// A walk error with its causes, for the one-line PACKET_ERR message.
fn walk_error(e: walk::WalkError) -> String {
    let mut msg = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(c) = cur {
        msg.push_str(&format!(": {c}"));
        cur = c.source();
    }
    msg
}

fn hash_error(e: crate::context::cache::HashError) -> String {
    let mut msg = e.to_string();
    if let Some(src) = std::error::Error::source(&e) {
        msg.push_str(&format!(": {src}"));
    }
    msg
}

/// What a listing is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Serving a DiffCopy call: STAT packets with stamps, sources, digest
    /// and per-entry fingerprints.
    Serve,
    /// Only the digest (a replay before a build).
    Digest,
    /// The digest and the per-entry fingerprints.
    Files,
}

fn list(local: &LocalDir, opts: &WalkOptions, purpose: Purpose) -> Result<Listing, String> {
    let serve = purpose == Purpose::Serve;
    let mut packets = Vec::new();
    let mut sources = HashMap::new();
    let mut items = Vec::new();
    let mut tracked = None;
    match local {
        LocalDir::Disk(root) => {
            let entries = walk::walk(root, opts).map_err(walk_error)?;
            let hashes = HashCache::in_memory()
                .hash_all(&entries)
                .map_err(hash_error)?;
            for (i, (e, h)) in entries.into_iter().zip(hashes).enumerate() {
                if serve {
                    if e.is_regular() && e.linkname.is_empty() {
                        sources.insert(i as u32, Source::Disk(e.abs.clone(), h));
                    }
                    packets.push(stat_packet(&e));
                }
                items.push((Item::Entry(e), h));
            }
        }
        LocalDir::Tracked(t) => {
            let entries = walk::walk(&t.root, opts).map_err(walk_error)?;
            let hashes = if serve {
                t.hashes
                    .hash_needed(&entries, |e| t.clock.knows(&e.path))
                    .map_err(hash_error)?
            } else {
                t.hashes.hash_all(&entries).map_err(hash_error)?
            };
            for (i, (e, h)) in entries.into_iter().zip(hashes).enumerate() {
                if serve {
                    let mut packet = stat_packet(&e);
                    if let (Some(h), Some(st)) = (&h, packet.stat.as_mut()) {
                        st.mod_time = t.clock.stamp(&e.path, e.mtime_ns, e.mode, h);
                    }
                    if e.is_regular() && e.linkname.is_empty() {
                        sources.insert(i as u32, Source::Disk(e.abs.clone(), h));
                    }
                    packets.push(packet);
                }
                items.push((Item::Entry(e), h));
            }
            tracked = Some(t.clone());
        }
        LocalDir::Virtual(files) => {
            let mut files = files.clone();
            files.sort_by(|a, b| a.name.cmp(&b.name));
            for (i, f) in files.iter().enumerate() {
                items.push((
                    Item::Virtual {
                        name: f.name.clone(),
                        size: f.data.len() as u64,
                    },
                    Some(blake3::hash(&f.data)),
                ));
                packets.push(Packet {
                    r#type: PacketType::PacketStat as i32,
                    stat: Some(Stat {
                        path: f.name.clone(),
                        mode: 0o644,
                        size: f.data.len() as i64,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                sources.insert(i as u32, Source::Memory(f.data.clone()));
            }
        }
    }
    Ok(Listing {
        packets,
        sources,
        items,
        tracked,
    })
}

/// The listing digest of what a DiffCopy call with `opts` would serve from
/// `local` right now (the same code path as serving it).
pub fn listing_digest(local: &LocalDir, opts: &WalkOptions) -> Result<String, String> {
    Ok(list(local, opts, Purpose::Digest)?
        .finish(Purpose::Digest, &HashMap::new())?
        .0)
}

/// Each entry's path and fingerprint for what a DiffCopy call with `opts`
/// would serve from `local` now.
pub fn listing_files(
    local: &LocalDir,
    opts: &WalkOptions,
) -> Result<Vec<(String, String)>, String> {
    Ok(list(local, opts, Purpose::Files)?
        .finish(Purpose::Files, &HashMap::new())?
        .1)
}

fn is_socket(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn read_error(path: &std::path::Path, e: std::io::Error) -> Packet {
    err_packet(format!("cannot read `{}`: {e}", path.display()))
}

fn err_packet(msg: impl Into<String>) -> Packet {
    Packet {
        r#type: PacketType::PacketErr as i32,
        data: msg.into().into_bytes(),
        ..Default::default()
    }
}

async fn send(
    dir_name: String,
    local: LocalDir,
    opts: WalkOptions,
    mut incoming: Streaming<Packet>,
    tx: mpsc::Sender<Result<Packet, Status>>,
    stats: Arc<TransferStats>,
    is_context: bool,
) {
    let opts_copy = opts.clone();
    let started = std::time::Instant::now();
    let listed = tokio::task::spawn_blocking(move || list(&local, &opts, Purpose::Serve)).await;
    tracing::debug!(dir = %dir_name, elapsed = ?started.elapsed(), "listed");
    let (stats_packets, sources, listing) = match listed {
        Ok(Ok(mut l)) => {
            let packets = std::mem::take(&mut l.packets);
            let sources = std::mem::take(&mut l.sources);
            (packets, sources, l)
        }
        Ok(Err(msg)) => {
            let _ = tx.send(Ok(err_packet(msg))).await;
            return;
        }
        Err(e) => {
            let _ = tx.send(Ok(err_packet(format!("walk failed: {e}")))).await;
            return;
        }
    };
    stats
        .entries_listed
        .fetch_add(stats_packets.len() as u64, Ordering::Relaxed);

    // Answer REQs while the listing is still being sent: the daemon diffs as
    // the STATs arrive, and HTTP/2 flow control could otherwise deadlock.
    let reader_tx = tx.clone();
    let name = dir_name.clone();
    let reader = tokio::spawn(async move {
        let sources = Arc::new(sources);
        let hashed: Arc<std::sync::Mutex<HashMap<u32, blake3::Hash>>> = Arc::default();
        let limit = Arc::new(Semaphore::new(PARALLEL_FILES));
        let mut served = std::collections::HashSet::new();
        // REQs are read as fast as they arrive and queued here: leaving them
        // unread in the HTTP/2 connection exhausts h2's budget for small
        // DATA frames (a context of 20,000 files sends 20,000 tiny REQs),
        // and h2 then closes the connection.
        let (queue_tx, mut queue_rx) = mpsc::unbounded_channel::<(u32, Source)>();
        let dispatcher = {
            let limit = limit.clone();
            let tx = reader_tx.clone();
            let stats = stats.clone();
            let hashed = hashed.clone();
            tokio::spawn(async move {
                while let Some((id, src)) = queue_rx.recv().await {
                    let permit = limit.clone().acquire_owned().await;
                    let tx = tx.clone();
                    let stats = stats.clone();
                    let hashed = hashed.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Some(h) = send_file(id, src, &tx, &stats, is_context).await {
                            if let Ok(mut m) = hashed.lock() {
                                m.insert(id, h);
                            }
                        }
                    });
                }
            })
        };
        let mut queue_tx = Some(queue_tx);
        let mut dispatcher = Some(dispatcher);
        loop {
            let packet = match incoming.message().await {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(%status, "DiffCopy stream ended");
                    return;
                }
            };
            match PacketType::try_from(packet.r#type) {
                Ok(PacketType::PacketReq) => {
                    let id = packet.id;
                    let Some(src) = sources.get(&id).cloned() else {
                        let _ = reader_tx
                            .send(Ok(err_packet(format!("invalid file id {id}"))))
                            .await;
                        return;
                    };
                    if !served.insert(id) {
                        let _ = reader_tx
                            .send(Ok(err_packet(format!("file id {id} requested twice"))))
                            .await;
                        return;
                    }
                    if let Some(q) = &queue_tx {
                        let _ = q.send((id, src));
                    }
                }
                Ok(PacketType::PacketFin) => {
                    // Every requested file has been written on the other
                    // side; let the queue drain and our file tasks end, then
                    // answer FIN.
                    queue_tx.take();
                    if let Some(d) = dispatcher.take() {
                        let _ = d.await;
                    }
                    let _ = limit.acquire_many(PARALLEL_FILES as u32).await;
                    // Complete the listing's hashes and record what the
                    // daemon was shown before it hears the transfer is
                    // over: the build's record must hold this request.
                    let sent = hashed.lock().map(|m| m.clone()).unwrap_or_default();
                    let finished =
                        tokio::task::spawn_blocking(move || listing.finish(Purpose::Serve, &sent))
                            .await;
                    match finished {
                        Ok(Ok((digest, files))) => {
                            if let Ok(mut served) = stats.served.lock() {
                                served.push(Served {
                                    local: dir_name.clone(),
                                    opts: opts_copy.clone(),
                                    digest,
                                    files,
                                });
                            }
                        }
                        Ok(Err(msg)) => {
                            let _ = reader_tx.send(Ok(err_packet(msg))).await;
                            return;
                        }
                        Err(e) => {
                            let _ = reader_tx
                                .send(Ok(err_packet(format!("hashing failed: {e}"))))
                                .await;
                            return;
                        }
                    }
                    let _ = reader_tx
                        .send(Ok(Packet {
                            r#type: PacketType::PacketFin as i32,
                            ..Default::default()
                        }))
                        .await;
                    return;
                }
                Ok(PacketType::PacketErr) => {
                    tracing::warn!(
                        "the builder aborted the transfer: {}",
                        String::from_utf8_lossy(&packet.data)
                    );
                    return;
                }
                _ => {}
            }
        }
    });

    for p in stats_packets {
        if tx.send(Ok(p)).await.is_err() {
            return;
        }
    }
    // End of the listing: a STAT packet with no stat.
    let _ = tx.send(Ok(Packet::default())).await;
    tracing::debug!(dir = %name, elapsed = ?started.elapsed(), "listing sent");
    drop(tx);
    let _ = reader.await;
    tracing::debug!(dir = %name, elapsed = ?started.elapsed(), "DiffCopy done");
}

async fn send_file(
    id: u32,
    src: Source,
    tx: &mpsc::Sender<Result<Packet, Status>>,
    stats: &TransferStats,
    is_context: bool,
) -> Option<blake3::Hash> {
    let count = |n: u64| {
        stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
        if is_context {
            stats.context_bytes_sent.fetch_add(n, Ordering::Relaxed);
        }
    };
    let data_packet = |data: Vec<u8>| Packet {
        r#type: PacketType::PacketData as i32,
        id,
        data,
        ..Default::default()
    };
    let hash = match src {
        Source::Memory(bytes) => {
            for chunk in bytes.chunks(CHUNK) {
                if tx.send(Ok(data_packet(chunk.to_vec()))).await.is_err() {
                    return None;
                }
            }
            count(bytes.len() as u64);
            None
        }
        Source::Disk(path, listed) => {
            // One blocking task reads, hashes and sends the whole file: a
            // hop to the blocking pool per read, and a zeroed 128 KiB buffer
            // per read of a 5 KB file, made many small files slow.
            let reader_tx = tx.clone();
            let sent = match tokio::task::spawn_blocking(move || {
                read_and_send(id, &path, listed, &reader_tx)
            })
            .await
            {
                Ok(sent) => sent,
                Err(e) => {
                    // The daemon waits for this file: tell it the transfer
                    // failed rather than leave it waiting.
                    let _ = tx
                        .send(Ok(err_packet(format!("reading a file failed: {e}"))))
                        .await;
                    Sent::Closed
                }
            };
            match sent {
                Sent::All(n, h) => {
                    count(n);
                    Some(h)
                }
                Sent::Closed => return None,
            }
        }
    };
    stats.files_sent.fetch_add(1, Ordering::Relaxed);
    if is_context {
        stats.context_files_sent.fetch_add(1, Ordering::Relaxed);
    }
    let _ = tx.send(Ok(data_packet(Vec::new()))).await;
    hash
}

/// How sending one file ended.
enum Sent {
    /// Every byte (this many, with this hash), end of file not yet sent.
    All(u64, blake3::Hash),
    /// The stream is gone or an error packet was sent instead.
    Closed,
}

/// Reads `path`, sends it as DATA packets of file `id` and checks it still
/// has the content it was listed with. Runs on a blocking thread.
fn read_and_send(
    id: u32,
    path: &std::path::Path,
    listed: Option<blake3::Hash>,
    tx: &mpsc::Sender<Result<Packet, Status>>,
) -> Sent {
    use std::io::Read;
    let send = |p: Packet| tx.blocking_send(Ok(p)).is_ok();
    let data_packet = |data: Vec<u8>| Packet {
        r#type: PacketType::PacketData as i32,
        id,
        data,
        ..Default::default()
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) if is_socket(path) => {
            // fsutil reports sockets as (empty) regular files: the daemon
            // asks for them and gets just the end of file.
            return Sent::All(0, blake3::hash(b""));
        }
        Err(e) => {
            send(read_error(path, e));
            return Sent::Closed;
        }
    };
    let mut left = file.metadata().map_or(CHUNK as u64, |m| m.len());
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        // The size the file has now, plus one byte to see it ended there.
        let want = (left as usize).clamp(1, CHUNK) + usize::from(left < CHUNK as u64);
        let mut buf = vec![0u8; want.min(CHUNK)];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    send(read_error(path, e));
                    return Sent::Closed;
                }
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        hasher.update(&buf);
        total += filled as u64;
        left = left.saturating_sub(filled as u64);
        let short = filled < buf.len();
        if !send(data_packet(buf)) {
            return Sent::Closed;
        }
        if short {
            // The reads stopped before filling the buffer: end of file.
            break;
        }
    }
    // The listing promised this content (its stamp was chosen for it):
    // bytes that changed in between must not be filed under it.
    let hash = hasher.finalize();
    if listed.is_some_and(|h| h != hash) {
        let msg = format!(
            "`{}` changed while it was being sent; run the build again",
            path.display()
        );
        send(err_packet(msg));
        return Sent::Closed;
    }
    Sent::All(total, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_like_go() {
        assert_eq!(query_unescape("a%20b+c"), "a b c");
        assert_eq!(query_unescape("%C3%A9t%C3%A9"), "été");
        assert_eq!(query_unescape("100%"), "100%");
        assert_eq!(query_unescape("%zz"), "%zz");
    }
}

/// The DiffCopy exchange over an in-memory HTTP/2 connection, with a test
/// client playing the daemon's part. (A unit test of the packet protocol;
/// the integration tests use the real daemon.)
#[cfg(test)]
mod protocol_tests {
    use super::*;
    use crate::buildkit::proto::moby::filesync::v1::file_sync_client::FileSyncClient;
    use crate::buildkit::session::{routes, SessionSpec};

    async fn client_for(
        spec: SessionSpec,
    ) -> (
        FileSyncClient<tonic::transport::Channel>,
        Arc<TransferStats>,
    ) {
        let stats = Arc::new(TransferStats::default());
        let routes = routes(&spec, stats.clone());
        let (server_io, client_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(crate::buildkit::session::tunnel::serve(server_io, routes));
        let channel = crate::buildkit::session::test_channel(client_io).await;
        (FileSyncClient::new(channel), stats)
    }

    /// Sends FIN and expects FIN back.
    async fn fin(tx: &mpsc::Sender<Packet>, resp: &mut Streaming<Packet>) {
        tx.send(Packet {
            r#type: PacketType::PacketFin as i32,
            ..Default::default()
        })
        .await
        .unwrap();
        let answer = resp.message().await.unwrap().unwrap();
        assert_eq!(answer.r#type, PacketType::PacketFin as i32);
    }

    /// Opens a DiffCopy call for `dir`: the sender of our packets and the
    /// stream of the session's.
    async fn diff_copy(
        client: &mut FileSyncClient<tonic::transport::Channel>,
        dir: &str,
    ) -> (mpsc::Sender<Packet>, Streaming<Packet>) {
        let (tx, rx) = mpsc::channel::<Packet>(16);
        let mut req = Request::new(ReceiverStream::new(rx));
        req.metadata_mut().insert("dir-name", dir.parse().unwrap());
        (tx, client.diff_copy(req).await.unwrap().into_inner())
    }

    #[tokio::test]
    async fn stats_then_data_then_fin() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/b"), "bee").unwrap();
        std::fs::write(root.join("a-b"), "").unwrap();
        std::fs::write(root.join("a.txt"), vec![7u8; 300_000]).unwrap();
        let spec = SessionSpec {
            locals: [("context".to_string(), LocalDir::Disk(root.to_path_buf()))].into(),
            ..Default::default()
        };
        let (mut client, stats) = client_for(spec).await;
        let (tx, mut resp) = diff_copy(&mut client, "context").await;

        let mut paths = Vec::new();
        let mut files = Vec::new();
        loop {
            let p = resp.message().await.unwrap().unwrap();
            assert_eq!(p.r#type, PacketType::PacketStat as i32);
            let Some(st) = p.stat else { break };
            if st.mode & 0x8000_0000 == 0 {
                files.push((paths.len() as u32, st.path.clone(), st.size));
            }
            paths.push(st.path);
        }
        assert_eq!(paths, ["a", "a/b", "a-b", "a.txt"]);
        for (id, _, _) in &files {
            tx.send(Packet {
                r#type: PacketType::PacketReq as i32,
                id: *id,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut eofs = 0;
        while eofs < files.len() {
            let p = resp.message().await.unwrap().unwrap();
            assert_eq!(p.r#type, PacketType::PacketData as i32, "{p:?}");
            if p.data.is_empty() {
                eofs += 1;
            } else {
                got.entry(p.id).or_default().extend_from_slice(&p.data);
            }
        }
        for (id, _, size) in &files {
            assert_eq!(got.get(id).map(Vec::len).unwrap_or(0) as i64, *size);
        }
        fin(&tx, &mut resp).await;
        assert!(
            resp.message().await.unwrap().is_none(),
            "stream ends after FIN"
        );
        let s = stats.snapshot();
        assert_eq!(s.files_sent, 3);
        assert_eq!(s.bytes_sent, 300_003);
    }

    /// A cold transfer of a tracked directory hashes each file once (while
    /// sending it, or at the end if it was not asked for), and records the
    /// digest a replay of the same files computes.
    #[tokio::test]
    async fn a_cold_tracked_transfer_reads_each_file_once() {
        use crate::context::{cache::HashCache, clock::ContentClock};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/b"), "bee").unwrap();
        std::fs::write(root.join("a.txt"), vec![7u8; 300_000]).unwrap();
        let tracked = TrackedDir {
            root: root.to_path_buf(),
            hashes: Arc::new(HashCache::in_memory()),
            clock: Arc::new(ContentClock::in_memory("k")),
        };
        let local = LocalDir::Tracked(tracked.clone());
        let spec = SessionSpec {
            locals: [("context".to_string(), local.clone())].into(),
            ..Default::default()
        };
        let (mut client, stats) = client_for(spec).await;
        let (tx, mut resp) = diff_copy(&mut client, "context").await;
        let mut ids = HashMap::new();
        let mut n = 0u32;
        while let Some(st) = resp.message().await.unwrap().unwrap().stat {
            ids.insert(st.path, n);
            n += 1;
        }
        // Only `a/b` is asked for.
        tx.send(Packet {
            r#type: PacketType::PacketReq as i32,
            id: ids["a/b"],
            ..Default::default()
        })
        .await
        .unwrap();
        loop {
            let p = resp.message().await.unwrap().unwrap();
            if p.data.is_empty() {
                break;
            }
        }
        fin(&tx, &mut resp).await;
        let hashed = |t: &TrackedDir| t.hashes.stats.files_hashed.load(Ordering::Relaxed);
        assert_eq!(hashed(&tracked), 2, "each file hashed once");
        let served = stats.served.lock().unwrap().clone();
        assert_eq!(served.len(), 1);
        let replay = listing_digest(&local, &WalkOptions::default()).unwrap();
        assert_eq!(served[0].digest, replay);
    }

    #[tokio::test]
    async fn unknown_local_and_bad_ids_are_errors() {
        let (mut client, _) = client_for(SessionSpec::default()).await;
        let (_tx, rx) = mpsc::channel::<Packet>(1);
        let mut req = Request::new(ReceiverStream::new(rx));
        req.metadata_mut()
            .insert("dir-name", "nope".parse().unwrap());
        let err = client.diff_copy(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
}
