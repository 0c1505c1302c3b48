pub mod bench;
pub mod buildkit;
pub mod cli;
pub mod compose;
pub mod context;
pub mod engine;
pub mod orchestrate;
pub mod ui;
