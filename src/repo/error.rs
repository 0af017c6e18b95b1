//! Errors of the publisher commands, one variant per step that can fail, each naming the file.

use std::ffi::OsStr;
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
    /// A file or directory under CONTENT_DIR changed between the walk and its copy (replaced,
    /// moved, swapped for a symlink, a mount point): what the walk listed is no longer what that
    /// path leads to beneath CONTENT_DIR. Nothing was signed.
    ContentChanged { path: PathBuf, reason: String },
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
    /// Signed metadata would be larger than clients download (snapshot does not pin its length):
    /// nothing from this role on was written.
    TooLarge {
        file: PathBuf,
        role: String,
        size: u64,
        limit: u64,
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

    /// Whether the existing metadata cannot be trusted or is malformed (the command line maps
    /// this to its own exit code); otherwise an operational failure.
    pub fn is_about_metadata(&self) -> bool {
        matches!(
            self,
            RepoError::Malformed { .. } | RepoError::Untrusted { .. }
        )
    }
}

impl fmt::Display for RepoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoError::Io {
                path,
                action,
                source,
            } => write!(f, "{}: cannot {action}: {source}", display_name(path)),
            RepoError::KeyExists { path } => write!(
                f,
                "{}: a key already exists; refusing to overwrite it (use --force to replace it)",
                display_name(path)
            ),
            RepoError::KeyMissing { path } => write!(
                f,
                "{}: no such key file (create it with `trustfs key generate`)",
                display_name(path)
            ),
            RepoError::KeyFile { path, reason } => write!(f, "{}: {reason}", display_name(path)),
            RepoError::WrongKey { role, path, keyid } => write!(
                f,
                "{}: this key (key id {keyid}) is not a {role} key of the repository's current root; \
                 refusing to sign {role} metadata with it",
                display_name(path)
            ),
            RepoError::AlreadyInitialised { path } => write!(
                f,
                "{}: already holds a repository; refusing to overwrite it",
                display_name(path)
            ),
            RepoError::NotARepository { path } => write!(
                f,
                "{}: no N.root.json here; not a repository (create one with `trustfs repo init`)",
                display_name(path)
            ),
            RepoError::Malformed { file, reason } => {
                write!(f, "{}: malformed metadata: {reason}", display_name(file))
            }
            RepoError::Untrusted { file, source } => write!(f, "{}: {source}", display_name(file)),
            RepoError::ContentName { path, reason } => {
                write!(f, "{}: cannot be a target: {reason}", display_name(path))
            }
            RepoError::ContentChanged { path, reason } => write!(
                f,
                "{}: changed while publishing ({reason}); nothing was published, run add again",
                display_name(path)
            ),
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
                display_name(path)
            ),
            RepoError::TooLarge {
                file,
                role,
                size,
                limit,
            } => write!(
                f,
                "{}: the {role} metadata would be {size} bytes, more than the {limit} bytes TUF \
                 clients (python-tuf, trustfs) download for a role snapshot lists by version; \
                 not written, and snapshot and timestamp still name the previous version{}",
                display_name(file),
                if role == "targets" {
                    " (targets that delegates paths to named roles is never sharded into hash \
                     bins: move files into delegated roles)"
                } else {
                    " (publish part of its files through a role it delegates to)"
                }
            ),
            RepoError::InvalidArgument(msg) => f.write_str(msg),
            RepoError::Internal(msg) => write!(f, "internal error (a bug): {msg}"),
        }
    }
}

/// A file name or path as it may be printed on one line: as it is when that is unambiguous, else
/// quoted and escaped like a Rust string literal: `"a\nb"`, `"\u{1b}[2K"`, `"x\xE9"` for bytes
/// that are not UTF-8. Names come from whoever writes CONTENT_DIR; printed raw, a newline or a
/// terminal escape in one could forge a line of output or drive the reader's terminal. A name
/// containing `"` or `\` is quoted too, so a quoted name is never mistaken for a plain one.
pub fn display_name<S: AsRef<OsStr> + ?Sized>(name: &S) -> DisplayName<'_> {
    DisplayName(name.as_ref())
}

/// See [`display_name`].
pub struct DisplayName<'a>(&'a OsStr);

impl fmt::Display for DisplayName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.to_str() {
            Some(s) => {
                let quoted = format!("{s:?}");
                if quoted.len() == s.len() + 2 {
                    // Debug added only the quotes: nothing in `s` needs escaping.
                    f.write_str(s)
                } else {
                    f.write_str(&quoted)
                }
            }
            None => write!(f, "{:?}", self.0),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn display_name_escapes_what_could_forge_or_hide_output() {
        let show = |s: &str| display_name(s).to_string();
        for plain in ["a.txt", "sub/dir/f", "/tmp/x y", "café", "don't", "日本"] {
            assert_eq!(show(plain), plain);
        }
        assert_eq!(show("a\nadded evil"), r#""a\nadded evil""#);
        assert_eq!(show("t\x1b[2K\r"), r#""t\u{1b}[2K\r""#);
        assert_eq!(show("c1\u{9b}31m"), r#""c1\u{9b}31m""#);
        // Right-to-left override: reorders what a terminal shows.
        assert_eq!(show("x\u{202e}txt.exe"), r#""x\u{202e}txt.exe""#);
        // Quoted too, so a plain name never looks like an escaped one.
        assert_eq!(show(r#"a"b"#), r#""a\"b""#);
        assert_eq!(show(r"a\nb"), r#""a\\nb""#);
        let latin1 = OsStr::from_bytes(b"x\xe9\n");
        assert_eq!(display_name(latin1).to_string(), r#""x\xE9\n""#);
    }
}
