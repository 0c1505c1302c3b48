pub mod buildkit;
pub mod context;
