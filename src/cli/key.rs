//! `trustfs key`: generating and encrypting signing keys.
use std::path::PathBuf;

use clap::Subcommand;

use crate::repo::keys;
use crate::schema::KeyType;

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Generate a key: PATH (PKCS#8 PEM, mode 0600, the form python-tuf's CryptoSigner and
    /// python's cryptography read) and PATH.pub (TUF key JSON). Prints the key id.
    ///
    /// With --encrypt the private key is passphrase-encrypted (PBES2: PBKDF2-SHA256 and
    /// AES-256-CBC): the passphrase comes from TRUSTFS_KEY_PASSPHRASE, --passphrase-fd N, or is
    /// asked twice on the terminal. Encrypt at least root keys, and keep them offline.
    Generate {
        /// Where to write the private key; the public key goes to PATH.pub.
        path: PathBuf,
        /// Replace existing key files at PATH and PATH.pub.
        #[arg(long)]
        force: bool,
        /// The key type: ed25519 (default), ecdsa (NIST P-256, ecdsa-sha2-nistp256) or rsa
        /// (3072 bits, rsassa-pss-sha256).
        #[arg(long = "type", value_name = "TYPE", default_value = "ed25519", value_parser = KeyType::parse)]
        kind: KeyType,
        /// Encrypt the private key with a passphrase.
        #[arg(long)]
        encrypt: bool,
    },
    /// Encrypt the unencrypted private key at PATH in place with a passphrase (from
    /// TRUSTFS_KEY_PASSPHRASE, --passphrase-fd N, or asked twice on the terminal).
    Encrypt {
        /// The private key file.
        path: PathBuf,
    },
}

pub fn run(cmd: KeyCommand) -> i32 {
    let (what, result) = match cmd {
        KeyCommand::Generate {
            path,
            force,
            kind,
            encrypt,
        } => (
            "key generate",
            keys::generate_with(&path, force, kind, encrypt),
        ),
        KeyCommand::Encrypt { path } => ("key encrypt", keys::encrypt(&path)),
    };
    match result {
        Ok(key) => {
            println!("{}", key.compute_keyid());
            super::EXIT_OK
        }
        Err(e) => {
            super::report_error(what, &e);
            super::repo_exit_code(&e)
        }
    }
}
