//! Test support for python-tuf interop: finding the pinned Python venv, running commands with a
//! time limit and readable failure reports.
//!
//! The venv is made by `bash .ci/run` from `tests/interop/requirements.txt`. Tests find it through
//! `TRUSTFS_PYTHON`, else `<repo>/.venv/bin/python`. A missing or broken venv is a test failure
//! with instructions, never a silent skip: interop that is not run is interop that is not known.
//!
//! Mount-test helpers live elsewhere; this module only knows about processes and Python.

// Each integration test crate compiles this file separately and may use only part of it.
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The python-tuf series the interop scripts are written against (see requirements.txt).
const TUF_SERIES: &str = "7.0.";

/// How long any one command may run before the test kills it and fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The venv's Python interpreter, checked once per test binary to import python-tuf 7.0.x.
///
/// Panics with instructions when it is missing or unusable.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = PYTHON.get_or_init(|| {
        let (path, origin) = match std::env::var_os("TRUSTFS_PYTHON") {
            Some(p) if !p.is_empty() => (PathBuf::from(p), "TRUSTFS_PYTHON"),
            _ => (
                Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
                "the default <repo>/.venv/bin/python",
            ),
        };
        let advice = "run `bash .ci/run` once (as root) to create <repo>/.venv from \
                      tests/interop/requirements.txt, or set TRUSTFS_PYTHON to a Python \
                      that has those packages";
        if !path.exists() {
            return Err(format!(
                "python-tuf interop tests need Python, but {} ({origin}) does not exist; {advice}",
                path.display()
            ));
        }
        let mut probe = Command::new(&path);
        probe.args([
            "-c",
            "import tuf, tuf.ngclient, securesystemslib.signer; print(tuf.__version__)",
        ]);
        let run = run(&mut probe);
        let version = run.stdout.trim().to_string();
        if run.code != Some(0) {
            return Err(format!(
                "{} ({origin}) cannot import python-tuf; {advice}\n{}",
                path.display(),
                run.describe()
            ));
        }
        if !version.starts_with(TUF_SERIES) {
            return Err(format!(
                "{} ({origin}) has python-tuf {version}, the interop tests are pinned to \
                 {TUF_SERIES}x; {advice}",
                path.display()
            ));
        }
        Ok(path)
    });
    match found {
        Ok(path) => path,
        Err(msg) => panic!("{msg}"),
    }
}

/// `tests/interop/<name>`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// A command running one of the `tests/interop` scripts in the venv.
pub fn python_script(name: &str) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(script(name));
    cmd
}

/// What a finished (or killed) command did, kept for assertions and failure messages.
#[derive(Debug)]
pub struct Run {
    pub cmdline: String,
    /// Exit code; `None` when killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The command, its exit status, stdout and stderr, for a failure message.
    pub fn describe(&self) -> String {
        let status = match (self.code, self.timed_out) {
            (_, true) => format!("killed after {COMMAND_TIMEOUT:?} timeout"),
            (Some(c), _) => format!("exit {c}"),
            (None, _) => "killed by a signal".to_string(),
        };
        format!(
            "command: {}\nstatus: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.cmdline,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }

    /// Panic with the full report unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32, why: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{why}: expected exit {code}\n{}",
            self.describe()
        );
        self
    }

    /// stdout parsed as one JSON value, or a panic with the full report.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e})\n{}", self.describe()))
    }

    /// The last non-empty line of stdout.
    pub fn last_stdout_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
}

fn shell_words<'a>(parts: impl Iterator<Item = &'a OsStr>) -> String {
    parts
        .map(|p| {
            let s = p.to_string_lossy();
            if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                s.into_owned()
            } else {
                format!("'{}'", s.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd` to completion (stdin closed), capturing its output; kill it after
/// [`COMMAND_TIMEOUT`].
/// [`run`] the `trustfs` binary with `args`.
pub fn run_trustfs<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(super::BIN);
    cmd.args(args);
    run(&mut cmd)
}

pub fn run(cmd: &mut Command) -> Run {
    let cmdline = shell_words(std::iter::once(cmd.get_program()).chain(cmd.get_args()));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let (code, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status.code(), false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for `{cmdline}`: {e}"),
        }
    };
    Run {
        cmdline,
        code,
        timed_out,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// `download.py` of `names` from `server` trusting `root`, into `out`, with the trusted metadata
/// kept in `cache` between runs (a long-lived python-tuf client).
pub fn download_kept(
    server: &super::http::HttpServer,
    root: &Path,
    out: &Path,
    cache: &Path,
    names: &[&str],
) -> Run {
    run(download_command(server, root, out)
        .arg("--metadata-dir")
        .arg(cache)
        .args(names))
}

/// `download.py` from `server` trusting `root`, into `out` (add the targets or `--all`).
pub fn download_command(server: &super::http::HttpServer, root: &Path, out: &Path) -> Command {
    let mut cmd = python_script("download.py");
    cmd.arg("--metadata-url")
        .arg(server.url("metadata/"))
        .arg("--targets-url")
        .arg(server.url("targets/"))
        .arg("--root")
        .arg(root)
        .arg("--out")
        .arg(out);
    cmd
}
