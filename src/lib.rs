//! cbuild: builds Compose services through BuildKit with minimal,
//! content-addressed build contexts.
//!
//! Module map, from the command line down:
//! - [`cli`]: arguments, settings, one thin function per command, exit codes;
//! - [`ui`]: everything shown, written through one [`ui::Printer`];
//! - [`bench`](mod@bench): the `cbuild bench` harness (measures `orchestrate` builds);
//! - [`orchestrate`]: plans builds, decides what is stale, runs them;
//! - [`compose`]: the Compose model; [`context`]: what BuildKit sees of a
//!   directory; [`buildkit`]: the gRPC client and session; [`engine`]: the
//!   Docker Engine API; [`registry`]: image registries (the distribution API).

pub mod bench;
pub mod buildkit;
pub mod cli;
pub mod compose;
pub mod context;
pub mod engine;
pub mod orchestrate;
pub mod registry;
pub mod timeouts;
pub mod tls;
pub mod ui;
