//! `trustfs repo`: publisher commands.
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Create a new repository.
    Init { repo: std::path::PathBuf },
}

pub fn run(_cmd: RepoCommand) -> i32 {
    super::report_error("repo", &"not implemented yet");
    super::EXIT_CONTENT
}
