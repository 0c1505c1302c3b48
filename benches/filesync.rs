//! Benchmark of FileSync packet encoding: the prost encoding of the STAT
//! packets cbuild sends for every entry of a context, on a walk of a tree
//! generated in a temp dir.
//!
//! `cargo bench --bench filesync`.

mod common;

use std::hint::black_box;

use cbuild::buildkit::proto::fsutil::types::Packet;
use cbuild::buildkit::session::filesync::stat_packet;
use cbuild::context::walk::{walk, WalkOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prost::Message;

fn stat_packets(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    common::tree(dir.path(), 2000);
    let opts = WalkOptions {
        exclude_patterns: vec!["node_modules".into()],
        ..Default::default()
    };
    let entries = walk(dir.path(), &opts).unwrap();
    let packets: Vec<Packet> = entries.iter().map(stat_packet).collect();
    let mut g = c.benchmark_group("filesync");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.bench_function("encode_stat_packets", |b| {
        let mut buf = Vec::with_capacity(1 << 20);
        b.iter(|| {
            buf.clear();
            for p in &packets {
                p.encode(&mut buf).unwrap();
            }
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = stat_packets
}
criterion_main!(benches);
