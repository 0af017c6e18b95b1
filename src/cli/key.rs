//! `trustfs key`: key generation.
use std::path::PathBuf;

use clap::Subcommand;

use crate::repo::keys;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate an ed25519 key: PATH (unencrypted PKCS#8 PEM, mode 0600, the form python-tuf's
    /// CryptoSigner reads) and PATH.pub (TUF key JSON). Prints the key id.
    Generate {
        /// Where to write the private key; the public key goes to PATH.pub.
        path: PathBuf,
        /// Replace existing key files at PATH and PATH.pub.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cmd: KeyCommand) -> i32 {
    match cmd {
        KeyCommand::Generate { path, force } => match keys::generate(&path, force) {
            Ok(key) => {
                println!("{}", key.compute_keyid());
                super::EXIT_OK
            }
            Err(e) => {
                super::report_error("key generate", &e);
                e.exit_code()
            }
        },
    }
}
