//! Benchmarks of the context pipeline on trees generated in a temp dir:
//! `.dockerignore` matching, the walk, BLAKE3 hashing (large and small
//! files), the hash cache's warm path, and tar stream generation.
//!
//! `cargo bench --bench context`; sizes are kept small (see
//! `common::quick`) so the whole run takes a minute or two.

mod common;

use std::hint::black_box;

use cbuild::context::cache::HashCache;
use cbuild::context::clock::ContentClock;
use cbuild::context::dockerignore::PatternMatcher;
use cbuild::context::hash::hash_file;
use cbuild::context::tar::write_context_tar;
use cbuild::context::walk::{walk, WalkOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SMALL_FILES: usize = 2000;

fn exclude() -> WalkOptions {
    WalkOptions {
        exclude_patterns: vec!["node_modules".into(), "**/*.log".into(), ".git".into()],
        ..Default::default()
    }
}

fn dockerignore(c: &mut Criterion) {
    let patterns = [
        "node_modules",
        "**/*.log",
        ".git",
        "docs/**",
        "!docs/keep.md",
        "**/__pycache__",
        "*.tmp",
        "build/*/out",
    ];
    let m = PatternMatcher::new(&patterns).unwrap();
    let paths: Vec<String> = (0..1000)
        .map(|i| match i % 4 {
            0 => format!("src/pkg{}/d{}/f{i}.js", i / 200, i % 10),
            1 => format!("node_modules/pkg{}/index.js", i),
            2 => format!("docs/section{}/page{i}.md", i % 7),
            _ => format!("build/target{}/out/app{i}.log", i % 3),
        })
        .collect();
    let mut g = c.benchmark_group("dockerignore");
    g.throughput(Throughput::Elements(paths.len() as u64));
    g.bench_function("matches_1000_paths_8_patterns", |b| {
        b.iter(|| {
            paths
                .iter()
                .filter(|p| m.matches(p).unwrap_or(false))
                .count()
        })
    });
    g.finish();
}

fn walk_and_hash(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let t = common::tree(dir.path(), SMALL_FILES);
    let opts = exclude();

    let mut g = c.benchmark_group("walk");
    g.throughput(Throughput::Elements(t.files as u64));
    g.bench_function("2000_files_node_modules_excluded", |b| {
        b.iter(|| black_box(walk(dir.path(), &opts).unwrap().len()))
    });
    g.finish();

    let entries = walk(dir.path(), &opts).unwrap();
    let mut g = c.benchmark_group("hash_small_files");
    g.throughput(Throughput::Elements(t.files as u64));
    g.bench_function("cold_2000_files", |b| {
        b.iter(|| black_box(HashCache::in_memory().hash_all(&entries).unwrap().len()))
    });
    // The warm path: every stat matches the saved cache, no file is read.
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = HashCache::open(cache_dir.path(), dir.path());
    cache.hash_all(&entries).unwrap();
    cache.save().unwrap();
    g.bench_function("warm_cache_lookup_2000_files", |b| {
        let warm = HashCache::open(cache_dir.path(), dir.path());
        b.iter(|| black_box(warm.hash_all(&entries).unwrap().len()));
        assert_eq!(
            warm.stats
                .files_hashed
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "the warm pass read file contents"
        );
    });
    g.finish();

    let mut g = c.benchmark_group("tar");
    g.throughput(Throughput::Bytes(t.bytes));
    g.bench_function("stream_2000_files_to_sink", |b| {
        let hashes = HashCache::in_memory();
        hashes.hash_all(&entries).unwrap();
        let clock = ContentClock::in_memory("bench");
        b.iter(|| {
            write_context_tar(dir.path(), &opts, &hashes, &clock, false, std::io::sink()).unwrap()
        })
    });
    g.finish();
}

fn hash_large(c: &mut Criterion) {
    const LEN: usize = 64 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.bin");
    let bytes = common::data(LEN, 7);
    std::fs::write(&path, &bytes).unwrap();
    let mut g = c.benchmark_group("blake3_large");
    g.throughput(Throughput::Bytes(LEN as u64));
    // One core, data in memory: the per-core rate.
    g.bench_function("one_core_in_memory_64MiB", |b| {
        b.iter(|| black_box(blake3::Hasher::new().update(&bytes).finalize()))
    });
    // What cbuild does for a large file (page-cached): mmap + rayon.
    g.bench_function("hash_file_mmap_rayon_64MiB", |b| {
        b.iter(|| black_box(hash_file(&path).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = dockerignore, walk_and_hash, hash_large
}
criterion_main!(benches);
