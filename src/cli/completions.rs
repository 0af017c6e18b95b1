//! `trustfs completions` and `trustfs man`: generated from the same clap definitions as `--help`,
//! so packages ship documentation that cannot drift from the binary.

use std::io::Write;

use clap::{CommandFactory, Parser};

/// Print shell completions for SHELL to stdout.
#[derive(Parser, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// Print a man page (roff) to stdout: trustfs(1), or trustfs-SUBCOMMAND(1).
#[derive(Parser, Debug)]
pub struct ManArgs {
    /// Print the page of this subcommand (e.g. `mount`) instead of trustfs(1).
    pub subcommand: Option<String>,
}

pub fn completions(args: CompletionsArgs) -> i32 {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "trustfs", &mut std::io::stdout());
    super::EXIT_OK
}

pub fn man(args: ManArgs) -> i32 {
    let cmd = super::Cli::command();
    let page = match &args.subcommand {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => sub.clone().name(format!("trustfs-{name}")),
            None => {
                super::report_error("man", &format!("no subcommand {name:?}"));
                return super::EXIT_USAGE;
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
        super::report_error("man", &e);
        return super::EXIT_CONTENT;
    }
    match std::io::stdout().write_all(&out) {
        Ok(()) => super::EXIT_OK,
        Err(_) => super::EXIT_CONTENT,
    }
}
