//! Compiles cbuild's own `.proto` files (in `proto/`) into Rust with
//! tonic/prost. protox parses them in-process, so no system `protoc` is needed.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "moby/buildkit/v1/control.proto",
    "moby/buildkit/v1/types/worker.proto",
    "pb/ops.proto",
    "fsutil/types/stat.proto",
    "fsutil/types/wire.proto",
    "moby/filesync/v1/filesync.proto",
    "moby/filesync/v1/auth.proto",
    "moby/upload/v1/upload.proto",
    "moby/buildkit/secrets/v1/secrets.proto",
    "moby/sshforward/v1/ssh.proto",
    "containerd/services/content/v1/content.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("proto");
    println!("cargo:rerun-if-changed=proto");
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    let descriptors = protox::compile(&files, [&root])?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
