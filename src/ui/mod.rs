//! Everything cbuild shows: build progress (reporters for
//! [`crate::orchestrate::Reporter`]), the commands' reports and tables, and
//! the one [`Printer`] all of it is written through.

pub mod bench;
pub mod context;
pub mod doctor;
pub mod json;
pub mod plain;
pub mod printer;
pub mod status;
pub mod summary;
pub mod tty;
pub mod watch;
pub mod why;

pub use printer::{Mode, Printer};

use std::time::Duration;

/// `1.2s`, `350ms`, `2m03s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{}ms", d.as_millis())
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// Prints each line as data.
pub fn print_lines(printer: &Printer, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    printer.data(&text);
}

/// `12 B`, `3.4 KiB`, `120.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::bytes(10), "10 B");
        assert_eq!(super::bytes(2048), "2.0 KiB");
        assert_eq!(
            super::duration(std::time::Duration::from_millis(1500)),
            "1.5s"
        );
    }
}
