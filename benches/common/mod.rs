//! Trees the benchmarks generate for themselves in a temp dir: a small
//! monorepo-like service context (sources, assets, an ignored
//! `node_modules/`), deterministic so runs compare.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use criterion::Criterion;

/// Criterion settings that keep `cargo bench` to a few minutes on 2 cores.
pub fn quick() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

/// Bytes of a pseudo-random (xorshift) file: incompressible, like assets.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What [`tree`] made.
pub struct Tree {
    /// Files outside `node_modules/`.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// `files` source files of 200..4000 bytes under `src/`, spread over
/// directories of 20, plus `node_modules/` with as many files again and a
/// `.dockerignore` excluding it.
pub fn tree(root: &Path, files: usize) -> Tree {
    let mut bytes = 0;
    for i in 0..files {
        for top in ["src", "node_modules"] {
            let dir = root.join(format!("{top}/pkg{:03}/d{}", i / 200, (i / 20) % 10));
            std::fs::create_dir_all(&dir).unwrap();
            let len = 200 + (i * 37) % 3800;
            std::fs::write(dir.join(format!("f{i}.js")), data(len, i as u64)).unwrap();
            if top == "src" {
                bytes += len as u64;
            }
        }
    }
    std::fs::write(root.join(".dockerignore"), "node_modules\n**/*.log\n.git\n").unwrap();
    Tree { files, bytes }
}
