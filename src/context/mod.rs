//! What a build may see of the user's files: the fsutil-compatible walk,
//! `.dockerignore` semantics, content hashes with a persistent cache, and
//! the content clock that makes content, not timestamps, decide what
//! BuildKit re-transfers. Synchronous code: callers use `spawn_blocking`.

pub mod binfile;
pub mod cache;
pub mod clock;
pub mod digest;
pub mod dockerfile;
pub mod dockerignore;
pub mod hash;
pub mod ignorefile;
pub mod listing;
pub mod manifest;
pub mod tar;
pub mod walk;
