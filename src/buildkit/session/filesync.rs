//! FileSync: the daemon pulls a local directory from cbuild with fsutil's
//! DiffCopy protocol, cbuild being the sender (tonistiigi/fsutil `send.go`).
//! This module is only the packet protocol: what is listed, with which
//! stamps, and how a listed file is opened safely is
//! [`crate::context::listing`]'s.
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
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::TransferStats;
use crate::buildkit::proto::fsutil::types::{packet::PacketType, Packet, Stat};
use crate::buildkit::proto::moby::filesync::v1::file_sync_server::FileSync;
use crate::context::listing::{
    DiskFile, Item, Listed, Listing, LocalDir, Opened, Purpose, ServeError, Served, Source,
};
use crate::context::walk::{Entry, WalkOptions};

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

/// The STAT packet announcing a walked entry with its real mtime.
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

/// The STAT packet announcing a listed entry, with the stamp it is listed
/// with.
fn listed_packet(l: &Listed) -> Packet {
    match &l.item {
        Item::Entry(e) => {
            let mut p = stat_packet(e);
            if let Some(st) = p.stat.as_mut() {
                st.mod_time = l.stamp;
            }
            p
        }
        Item::Virtual { name, size } => Packet {
            r#type: PacketType::PacketStat as i32,
            stat: Some(Stat {
                path: name.clone(),
                mode: 0o644,
                size: *size as i64,
                mod_time: l.stamp,
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// A serving error with its cause, for the one-line PACKET_ERR message.
fn serve_error(e: ServeError) -> Packet {
    let mut msg = e.to_string();
    if let Some(src) = std::error::Error::source(&e) {
        msg.push_str(&format!(": {src}"));
    }
    err_packet(msg)
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
    let listed =
        tokio::task::spawn_blocking(move || Listing::new(&local, &opts, Purpose::Serve)).await;
    tracing::debug!(dir = %dir_name, elapsed = ?started.elapsed(), "listed");
    let (stats_packets, sources, listing) = match listed {
        Ok(Ok(mut l)) => {
            let packets: Vec<Packet> = l.items.iter().map(listed_packet).collect();
            let sources = l.take_sources();
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
        Source::Disk(file) => {
            // One blocking task reads, hashes and sends the whole file: a
            // hop to the blocking pool per read, and a zeroed 128 KiB buffer
            // per read of a 5 KB file, made many small files slow.
            let reader_tx = tx.clone();
            let sent =
                match tokio::task::spawn_blocking(move || read_and_send(id, &file, &reader_tx))
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

/// Sends the listed file as DATA packets of file `id`. Runs on a blocking
/// thread.
///
/// Only bytes of the listed file leave: it is opened without following a
/// symlink and must still be the listed inode with the listed size
/// ([`DiskFile::open`]); exactly that many bytes are read, and the last
/// chunk is held back until the file is known to end there and, when the
/// listing knows its hash, to hash to it. A file of one chunk (most files)
/// is thus checked entirely before its first byte is sent; a larger one that
/// changed under us reaches the daemon truncated, with an error that fails
/// the transfer.
fn read_and_send(id: u32, file: &DiskFile, tx: &mpsc::Sender<Result<Packet, Status>>) -> Sent {
    use std::io::Read;
    let send = |p: Packet| tx.blocking_send(Ok(p)).is_ok();
    let fail = |e: ServeError| {
        send(serve_error(e));
        Sent::Closed
    };
    let data_packet = |data: Vec<u8>| Packet {
        r#type: PacketType::PacketData as i32,
        id,
        data,
        ..Default::default()
    };
    let mut f = match file.open() {
        Ok(Opened::File(f)) => f,
        Ok(Opened::Empty) => return Sent::All(0, blake3::hash(b"")),
        Err(e) => return fail(e),
    };
    let read_err = |source: std::io::Error| ServeError::Io {
        path: file.abs.clone(),
        source,
    };
    let mut hasher = blake3::Hasher::new();
    let mut left = file.size;
    loop {
        let want = left.min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        if let Err(e) = f.read_exact(&mut buf) {
            return fail(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                file.changed("it got shorter")
            } else {
                read_err(e)
            });
        }
        hasher.update(&buf);
        left -= want as u64;
        if left == 0 {
            // The last chunk: it leaves only if the file ends here and is
            // the content the listing promised (its stamp was chosen for it).
            let mut probe = [0u8; 1];
            match f.read(&mut probe) {
                Ok(0) => {}
                Ok(_) => return fail(file.changed("it grew")),
                Err(e) => return fail(read_err(e)),
            }
            let hash = hasher.finalize();
            if file.hash.is_some_and(|h| h != hash) {
                return fail(file.changed("its content differs from the listing"));
            }
            if !buf.is_empty() && !send(data_packet(buf)) {
                return Sent::Closed;
            }
            return Sent::All(file.size, hash);
        }
        if !send(data_packet(buf)) {
            return Sent::Closed;
        }
    }
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
    use crate::context::listing::{listing_digest, TrackedDir};

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

    /// Reads the listing: each path with its id.
    async fn read_listing(resp: &mut Streaming<Packet>) -> HashMap<String, u32> {
        let mut ids = HashMap::new();
        let mut n = 0u32;
        while let Some(st) = resp.message().await.unwrap().unwrap().stat {
            ids.insert(st.path, n);
            n += 1;
        }
        ids
    }

    async fn req(tx: &mpsc::Sender<Packet>, id: u32) {
        tx.send(Packet {
            r#type: PacketType::PacketReq as i32,
            id,
            ..Default::default()
        })
        .await
        .unwrap();
    }

    /// Every packet until the session ends the stream or sends an error.
    async fn until_end(resp: &mut Streaming<Packet>) -> Vec<Packet> {
        let mut out = Vec::new();
        while let Ok(Some(p)) = resp.message().await {
            let err = p.r#type == PacketType::PacketErr as i32;
            out.push(p);
            if err {
                break;
            }
        }
        out
    }

    fn error_text(packets: &[Packet]) -> String {
        packets
            .iter()
            .find(|p| p.r#type == PacketType::PacketErr as i32)
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
            .unwrap_or_default()
    }

    /// A served file (a small one, and one of several chunks) is swapped
    /// for a symlink to a file outside the context after the listing and
    /// before the daemon's REQ: none of the outside file's bytes leave, the
    /// transfer fails with an error naming the file. For a plain and a
    /// tracked directory (whose files new to the clock have no listed hash).
    #[tokio::test]
    async fn a_file_swapped_for_a_symlink_after_the_listing_is_not_sent() {
        use crate::context::{cache::HashCache, clock::ContentClock};
        for tracked in [false, true] {
            for (size, swap_dir) in [(5usize, false), (3 * CHUNK + 7, false), (5, true)] {
                let top = tempfile::tempdir().unwrap();
                let root = top.path().join("ctx");
                std::fs::create_dir_all(root.join("sub")).unwrap();
                std::fs::write(root.join("sub/f"), vec![b'i'; size]).unwrap();
                let outside = top.path().join("outside");
                std::fs::create_dir_all(&outside).unwrap();
                std::fs::write(outside.join("f"), vec![b'S'; size]).unwrap();
                let local = if tracked {
                    LocalDir::Tracked(TrackedDir {
                        root: root.clone(),
                        hashes: Arc::new(HashCache::in_memory()),
                        clock: Arc::new(ContentClock::in_memory("k")),
                    })
                } else {
                    LocalDir::Disk(root.clone())
                };
                let spec = SessionSpec {
                    locals: [("context".to_string(), local)].into(),
                    ..Default::default()
                };
                let (mut client, stats) = client_for(spec).await;
                let (tx, mut resp) = diff_copy(&mut client, "context").await;
                let ids = read_listing(&mut resp).await;
                // The file (or its directory) becomes a link to the outside.
                let (swap, link) = if swap_dir {
                    ("sub", outside.clone())
                } else {
                    ("sub/f", outside.join("f"))
                };
                std::fs::rename(root.join(swap), top.path().join("old")).unwrap();
                std::os::unix::fs::symlink(&link, root.join(swap)).unwrap();
                assert_eq!(std::fs::read(root.join("sub/f")).unwrap()[0], b'S');
                req(&tx, ids["sub/f"]).await;
                let got = until_end(&mut resp).await;
                let leaked = got
                    .iter()
                    .filter(|p| p.r#type == PacketType::PacketData as i32)
                    .any(|p| p.data.contains(&b'S'));
                assert!(
                    !leaked,
                    "outside bytes were sent (tracked: {tracked}, size {size}, dir: {swap_dir})"
                );
                let err = error_text(&got);
                assert!(
                    err.contains("sub/f") && err.contains("run the build again"),
                    "{err:?}"
                );
                assert_eq!(stats.snapshot().files_sent, 0);
            }
        }
    }

    /// A socket is listed as an empty regular file (as fsutil does) and
    /// served as one.
    #[tokio::test]
    async fn a_socket_is_served_empty() {
        let dir = tempfile::tempdir().unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let spec = SessionSpec {
            locals: [("context".to_string(), LocalDir::Disk(dir.path().into()))].into(),
            ..Default::default()
        };
        let (mut client, _) = client_for(spec).await;
        let (tx, mut resp) = diff_copy(&mut client, "context").await;
        let ids = read_listing(&mut resp).await;
        req(&tx, ids["s"]).await;
        let p = resp.message().await.unwrap().unwrap();
        assert_eq!(p.r#type, PacketType::PacketData as i32, "{p:?}");
        assert!(p.data.is_empty());
        fin(&tx, &mut resp).await;
    }

    /// A file that grows between the listing and the REQ is not sent with
    /// bytes the listing did not announce.
    #[tokio::test]
    async fn a_file_that_grew_after_the_listing_fails_the_transfer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "abc").unwrap();
        let spec = SessionSpec {
            locals: [("context".to_string(), LocalDir::Disk(dir.path().into()))].into(),
            ..Default::default()
        };
        let (mut client, _) = client_for(spec).await;
        let (tx, mut resp) = diff_copy(&mut client, "context").await;
        let ids = read_listing(&mut resp).await;
        std::fs::write(dir.path().join("f"), "abcINJECTED").unwrap();
        req(&tx, ids["f"]).await;
        let got = until_end(&mut resp).await;
        assert!(got
            .iter()
            .all(|p| p.r#type != PacketType::PacketData as i32 || p.data.is_empty()));
        assert!(error_text(&got).contains("changed while it was being sent"));
    }

    /// A REQ for an id that is not a file of the listing, or for a file
    /// already requested, ends the transfer with an error naming the id.
    #[tokio::test]
    async fn bad_and_repeated_ids_end_the_transfer() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let spec = SessionSpec {
            locals: [("context".to_string(), LocalDir::Disk(dir.path().into()))].into(),
            ..Default::default()
        };
        let (mut client, _) = client_for(spec).await;
        // Out of range, and a directory (listed, but not a file).
        for bad in [
            |_: &HashMap<String, u32>| 99,
            |ids: &HashMap<String, u32>| ids["d"],
        ] {
            let (tx, mut resp) = diff_copy(&mut client, "context").await;
            let ids = read_listing(&mut resp).await;
            let id = bad(&ids);
            req(&tx, id).await;
            let got = until_end(&mut resp).await;
            assert_eq!(error_text(&got), format!("invalid file id {id}"));
        }
        let (tx, mut resp) = diff_copy(&mut client, "context").await;
        let ids = read_listing(&mut resp).await;
        req(&tx, ids["f"]).await;
        req(&tx, ids["f"]).await;
        let got = until_end(&mut resp).await;
        assert_eq!(
            error_text(&got),
            format!("file id {} requested twice", ids["f"])
        );
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
