//! The `trustfs` command line. Each subcommand lives in its own module (`mount/` and `repo/` are
//! directories; `completions.rs` has `completions` and `man`) with an `Args` struct whose doc
//! comments are the `--help` text, and a `run()` returning the process exit code.
//!
//! Exit codes: 0 success; 1 content failed verification (or the command failed for an operational
//! reason); 2 the metadata cannot be trusted or is malformed; 64 the command line is wrong.

use clap::{Parser, Subcommand};

pub mod completions;
pub mod key;
pub mod mount;
pub mod repo;
pub mod status;
pub mod verify;

/// Exit code: everything verified / the command succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code: content failed verification, or the command failed for an operational reason.
pub const EXIT_CONTENT: i32 = 1;
/// Exit code: the metadata itself cannot be trusted (signature, threshold, expiry, rollback, malformed).
pub const EXIT_METADATA: i32 = 2;
/// Exit code: the command line itself is wrong (sysexits' EX_USAGE), kept apart from 2 so a
/// script can tell a typo from untrusted metadata.
pub const EXIT_USAGE: i32 = 64;

/// trustfs: expose only content that signed TUF targets metadata vouches for.
#[derive(Parser, Debug)]
#[command(name = "trustfs", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Read the passphrase of encrypted keys from this file descriptor (its first line), e.g.
    /// `--passphrase-fd 3 3<secret`. Default: TRUSTFS_KEY_PASSPHRASE, else a prompt on the
    /// terminal.
    #[arg(long, value_name = "N", global = true)]
    pub passphrase_fd: Option<i32>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create signing keys.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Publisher commands: create and sign a TUF repository.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Check a directory against signed metadata, offline.
    Verify(verify::Args),
    /// Mount a verified, read-only view of a backing directory or a remote repository.
    Mount(Box<mount::Args>),
    /// Show whether mounts are verified (✔) or not (✘).
    Status(status::Args),
    /// Print shell completions.
    Completions(completions::CompletionsArgs),
    /// Print the man page.
    Man(completions::ManArgs),
}

/// Parse the command line and run it; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            // Printing help or a usage error to a closed pipe is not worth a panic.
            let _ = e.print();
            return code;
        }
    };
    if !matches!(cli.command, Command::Mount(_)) {
        quiet_on_closed_pipe();
    }
    if let Some(fd) = cli.passphrase_fd {
        crate::repo::keys::set_passphrase_source(crate::repo::keys::PassphraseSource::Fd(fd));
    }
    match cli.command {
        Command::Key(cmd) => key::run(cmd),
        Command::Repo(cmd) => repo::run(cmd),
        Command::Verify(args) => verify::run(args),
        Command::Mount(args) => mount::run(*args),
        Command::Status(args) => status::run(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    }
}

/// Output commands (`trustfs verify | head`, `trustfs man | less` quit early) end quietly when
/// their reader closes the pipe, as `cat` and `ls` do: SIGPIPE back to its default action, so the
/// next write ends the process instead of failing and panicking inside `println!`. Not for the
/// mount daemon, which must never die of a closed socket or pipe.
fn quiet_on_closed_pipe() {
    crate::sys::default_sigpipe();
}

/// Print an error in the one format all subcommands use.
pub fn report_error(context: &str, err: &dyn std::fmt::Display) {
    eprintln!("trustfs: {context}: {err}");
}

/// The exit code of a publisher error: [`EXIT_METADATA`] when the existing metadata cannot be
/// trusted or is malformed, [`EXIT_CONTENT`] for every operational failure.
pub fn repo_exit_code(e: &crate::repo::RepoError) -> i32 {
    match e.is_about_metadata() {
        true => EXIT_METADATA,
        false => EXIT_CONTENT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap checks the definition only with debug assertions on: `.ci/run` runs this test in a
    /// debug build; in a release build it is ignored (and says so), never passed without checking.
    #[test]
    #[cfg_attr(
        not(debug_assertions),
        ignore = "clap's checks need debug assertions: .ci/run runs this in a debug build"
    )]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
