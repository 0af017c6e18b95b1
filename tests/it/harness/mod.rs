//! The one harness of the integration tests: temporary directories, running the `trustfs` binary,
//! and one module per kind of helper:
//! - `cli`: a repository made by `trustfs repo init/add` and a `trustfs mount` daemon with its log
//!   and status record ([`cli::World`], [`cli::Daemon`]), bounded waits;
//! - `mount`: hand-built indexes mounted in-process through the library ([`mount::Scratch`]),
//!   an unmount guard, FUSE preconditions;
//! - `disk`: a one-file FUSE filesystem whose reads fail or whose bytes change under the reader;
//! - `http`: an HTTP/1.1 server on 127.0.0.1 that serves a directory and can misbehave on purpose;
//! - `nginx`: a real nginx on 127.0.0.1;
//! - `publish`: a repository made through the library (`repo::init`), for publisher tests;
//! - `python`: the pinned python-tuf venv and commands with time limits;
//! - `tufrepo`: a TUF repository builder that can sign wrongly on purpose.

pub mod cli;
pub mod disk;
pub mod http;
pub mod mount;
pub mod nginx;
pub mod publish;
pub mod python;
pub mod tufrepo;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The `trustfs` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_trustfs");

/// A fresh, empty directory path for one test: `trustfs-<kind>-<tag>-<pid>-<n>` under
/// `TRUSTFS_TEST_TMP` (default: the system temp dir), anything left there by an earlier run
/// removed. Not created: callers make what they need inside (or use [`TempDir`]).
pub fn fresh_dir(kind: &str, tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let base = std::env::var_os("TRUSTFS_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "trustfs-{kind}-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A directory for one test ([`fresh_dir`], created); removed on drop, kept (and its path
/// printed) when the test fails, as evidence.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = fresh_dir("test", tag);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create temp dir {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept test directory {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Run the trustfs binary with `args`.
pub fn trustfs(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run trustfs")
}

/// Format an output for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A path as `&str` (test paths are UTF-8), for argument lists.
pub fn os(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A JSON file, parsed; panics naming the file if it is missing or not JSON.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `n` small files `d<i % dirs>/f<i><suffix>`, each holding `file <i>\n`.
pub fn numbered_files(n: usize, dirs: usize, suffix: &str) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let name = format!("d{}/f{i}{suffix}", i % dirs);
            (name, format!("file {i}\n").into_bytes())
        })
        .collect()
}
