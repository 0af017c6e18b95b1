//! `trustfs key`: key generation.
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate an ed25519 key: PATH (PKCS#8 PEM, mode 0600) and PATH.pub (TUF key JSON).
    Generate {
        /// Where to write the private key.
        path: std::path::PathBuf,
    },
}

pub fn run(_cmd: KeyCommand) -> i32 {
    super::report_error("key", &"not implemented yet");
    super::EXIT_CONTENT
}
