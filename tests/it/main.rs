//! Integration tests: the `cbuild` binary against a real Docker engine and
//! its BuildKit. The engine comes from `scripts/engine` (the README's test
//! command starts it and exports `DOCKER_HOST`); a missing engine fails
//! loudly rather than skipping.

mod bench;
mod build;
mod cancel;
mod common;
mod compat;
mod compose_features;
mod content;
mod context_cmd;
mod errors;
mod export;
mod graph;
mod hang;
mod ignore_table;
mod secrets;
mod skip;
mod tls;
mod tty;
mod up;
