//! Errors of the publisher commands, one variant per step that can fail, each naming the file.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::schema::SchemaError;

/// Why a publisher operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RepoError {
    /// Reading, writing or renaming a file failed.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// A key file exists and `--force` was not given.
    KeyExists { path: PathBuf },
    /// A key file is missing (and the command does not create keys).
    KeyMissing { path: PathBuf },
    /// A key file cannot be parsed, or the private key and its `.pub` disagree.
    KeyFile { path: PathBuf, reason: String },
    /// The key in KEYDIR is not a key of the role in the current root.
    WrongKey {
        role: String,
        path: PathBuf,
        keyid: String,
    },
    /// The role needs more signatures than the one key trustfs signs with.
    ThresholdTooHigh { role: String, threshold: u64 },
    /// `repo init` on a directory that already holds a repository.
    AlreadyInitialised { path: PathBuf },
    /// No `N.root.json` in the metadata directory.
    NotARepository { path: PathBuf },
    /// Existing metadata is malformed or inconsistent (a snapshot/timestamp entry that does not
    /// match the file it names, a version gap).
    Malformed { file: PathBuf, reason: String },
    /// Existing metadata does not carry the signatures root requires.
    Untrusted { file: PathBuf, source: SchemaError },
    /// A file under CONTENT_DIR cannot become a target (name not UTF-8 or not a safe target path).
    ContentName { path: PathBuf, reason: String },
    /// A delegated role name that cannot be used (a top-level name, empty, or unfit for the file
    /// name `N.<NAME>.json`).
    InvalidRoleName { name: String, reason: String },
    /// No delegation names this role (`--role`, `--delegator`).
    UnknownRole { role: String },
    /// KEYDIR holds fewer of a delegated role's keys than its threshold.
    NotEnoughKeys {
        role: String,
        threshold: u64,
        held: usize,
        /// The key files looked at (`KEYDIR/<NAME>`, `KEYDIR/<NAME>@2`, ...).
        looked_at: String,
    },
    /// `add --role`: a file lies outside the paths or hash prefixes the role is delegated.
    OutsideDelegation {
        path: PathBuf,
        target: String,
        role: String,
        delegator: String,
        patterns: String,
    },
    /// A command-line value is invalid (`--expires`).
    InvalidArgument(String),
    /// An internal invariant failed; a bug, reported instead of a panic.
    Internal(String),
}

impl RepoError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> RepoError {
        RepoError::Io {
            path: path.to_owned(),
            action,
            source,
        }
    }

    /// The process exit code for this error: 2 when the existing metadata cannot be trusted or is
    /// malformed, 1 for every operational failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            RepoError::Malformed { .. } | RepoError::Untrusted { .. } => crate::cli::EXIT_METADATA,
            _ => crate::cli::EXIT_CONTENT,
        }
    }
}

impl fmt::Display for RepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoError::Io {
                path,
                action,
                source,
            } => write!(f, "{}: cannot {action}: {source}", path.display()),
            RepoError::KeyExists { path } => write!(
                f,
                "{}: a key already exists; refusing to overwrite it (use --force to replace it)",
                path.display()
            ),
            RepoError::KeyMissing { path } => write!(
                f,
                "{}: no such key file (create it with `trustfs key generate`)",
                path.display()
            ),
            RepoError::KeyFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            RepoError::WrongKey { role, path, keyid } => write!(
                f,
                "{}: this key (key id {keyid}) is not a {role} key of the repository's current root; \
                 refusing to sign {role} metadata with it",
                path.display()
            ),
            RepoError::ThresholdTooHigh { role, threshold } => write!(
                f,
                "the {role} role has threshold {threshold}, but trustfs signs with one key per role"
            ),
            RepoError::AlreadyInitialised { path } => write!(
                f,
                "{}: already holds a repository; refusing to overwrite it",
                path.display()
            ),
            RepoError::NotARepository { path } => write!(
                f,
                "{}: no N.root.json here; not a repository (create one with `trustfs repo init`)",
                path.display()
            ),
            RepoError::Malformed { file, reason } => {
                write!(f, "{}: malformed metadata: {reason}", file.display())
            }
            RepoError::Untrusted { file, source } => write!(f, "{}: {source}", file.display()),
            RepoError::ContentName { path, reason } => {
                write!(f, "{}: cannot be a target: {reason}", path.display())
            }
            RepoError::InvalidRoleName { name, reason } => {
                write!(f, "cannot use {name:?} as a delegated role name: {reason}")
            }
            RepoError::UnknownRole { role } => write!(
                f,
                "no delegated role {role:?} in this repository (create it with `trustfs repo delegate`)"
            ),
            RepoError::NotEnoughKeys {
                role,
                threshold,
                held,
                looked_at,
            } => write!(
                f,
                "the {role} role has threshold {threshold}, but the key directory holds {held} of its keys \
                 (looked at {looked_at}); refusing to sign it short"
            ),
            RepoError::OutsideDelegation {
                path,
                target,
                role,
                delegator,
                patterns,
            } => write!(
                f,
                "{}: target {target:?} is outside the role {role:?}, which {delegator} delegates only \
                 {patterns}; nothing was written",
                path.display()
            ),
            RepoError::InvalidArgument(msg) => f.write_str(msg),
            RepoError::Internal(msg) => write!(f, "internal error (a bug): {msg}"),
        }
    }
}

impl std::error::Error for RepoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RepoError::Io { source, .. } => Some(source),
            RepoError::Untrusted { source, .. } => Some(source),
            _ => None,
        }
    }
}
