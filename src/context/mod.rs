pub mod dockerignore;
pub mod walk;
