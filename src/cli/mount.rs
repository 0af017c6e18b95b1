//! `trustfs mount`: the verified read-only mount.
use clap::Parser;

/// Mount a verified, read-only view of a backing directory.
#[derive(Parser, Debug)]
pub struct Args {
    /// Where to mount.
    pub mountpoint: std::path::PathBuf,
}

pub fn run(_args: Args) -> i32 {
    super::report_error("mount", &"not implemented yet");
    super::EXIT_CONTENT
}
