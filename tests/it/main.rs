//! Integration tests: the `cbuild` binary against a real Docker engine and
//! its BuildKit. The engine comes from `scripts/engine` (the README's test
//! command starts it and exports `DOCKER_HOST`); a missing engine fails
//! loudly rather than skipping.

mod bench;
mod build;
mod builders;
mod cache;
mod cancel;
mod clock;
mod common;
mod compat;
mod compose_features;
mod content;
mod context_cmd;
mod dockerfile;
mod engines;
mod errors;
mod export;
mod graph;
mod hang;
mod ignore_table;
mod output;
mod platform;
mod pool;
mod push;
mod records;
mod secrets;
mod skip;
mod tls;
mod tty;
mod up;
mod watch;
mod why;
