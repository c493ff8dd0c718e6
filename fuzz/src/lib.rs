//! Shared by the fuzz targets; the harness is also replayed by
//! `engine/tests/regressions.rs`.

pub mod harness;
pub use harness::*;

/// A per-process scratch file on tmpfs for targets that need a file.
pub fn scratch_file(name: &str) -> std::path::PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    dir.join(format!("tidewatch-fuzz-{}-{name}", std::process::id()))
}
