//! The `cbuild` binary: everything happens in [`cbuild::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    cbuild::cli::main(std::env::args_os())
}
