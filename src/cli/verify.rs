//! `trustfs verify`: offline check of a directory against signed metadata.
use clap::Parser;

/// Check every file of CONTENT_DIR against signed targets metadata.
#[derive(Parser, Debug)]
pub struct Args {
    /// The trusted root metadata (pinned by you; never taken from METADATA_DIR on first use).
    #[arg(long)]
    pub root: std::path::PathBuf,
    /// Directory holding the repository's metadata.
    #[arg(long)]
    pub metadata: std::path::PathBuf,
    /// The content to check.
    pub content_dir: std::path::PathBuf,
    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args) -> i32 {
    super::report_error("verify", &"not implemented yet");
    super::EXIT_METADATA
}
