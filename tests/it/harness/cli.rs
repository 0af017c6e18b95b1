//! Helpers for tests that run the `trustfs` binary as an operator would: a repository made with
//! `trustfs repo init` / `repo add`, a `trustfs mount` daemon with its log in a file, its own
//! runtime directory for status records (`TRUSTFS_RUNTIME_DIR`), bounded waits for conditions.
//! Needs root and /dev/fuse; fails, never skips, without them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::mount::{is_mounted, lazy_umount, require_fuse};
use super::nginx::Nginx;

pub use super::BIN;

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run trustfs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Wait (bounded, 60 s) for `cond`; panics with `what` and `context()` if it never holds.
pub fn wait_for(what: &str, context: impl Fn() -> String, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A repository made by the trustfs binary, a content dir (also the local mount's backing dir),
/// and the client side's directories; everything removed (and unmounted) on drop.
pub struct World {
    pub dir: PathBuf,
    pub repo: PathBuf,
    pub content: PathBuf,
    pub keys: PathBuf,
    pub mnt: PathBuf,
    pub state: PathBuf,
    pub runtime: PathBuf,
    pub audit: PathBuf,
    expires: Vec<String>,
    starts: AtomicU64,
}

impl World {
    /// A repository whose targets are `files` (path, bytes), roles expiring per `expires`
    /// (`timestamp=12s`, as `repo init --expires` takes them).
    pub fn new(tag: &str, files: &[(&str, &[u8])], expires: &[&str]) -> World {
        require_fuse();
        let dir = super::fresh_dir("world", tag);
        let w = World {
            repo: dir.join("repo"),
            content: dir.join("content"),
            keys: dir.join("keys"),
            mnt: dir.join("mnt"),
            state: dir.join("state"),
            runtime: dir.join("run"),
            audit: dir.join("audit.log"),
            expires: expires
                .iter()
                .flat_map(|e| ["--expires".to_owned(), (*e).to_owned()])
                .collect(),
            dir,
            starts: AtomicU64::new(0),
        };
        std::fs::create_dir_all(&w.content).unwrap();
        std::fs::create_dir_all(&w.mnt).unwrap();
        for (path, data) in files {
            w.write(path, data);
        }
        run_ok(
            Command::new(BIN)
                .args(["repo", "init"])
                .arg(&w.repo)
                .arg("--keys")
                .arg(&w.keys)
                .args(&w.expires),
        );
        w.publish();
        w
    }

    /// [`Self::new`] with owned file contents.
    pub fn new_owned<P: AsRef<str>>(tag: &str, files: &[(P, Vec<u8>)], expires: &[&str]) -> World {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, d)| (p.as_ref(), d.as_slice()))
            .collect();
        World::new(tag, &refs, expires)
    }

    pub fn metadata(&self) -> PathBuf {
        self.repo.join("metadata")
    }

    /// Write `content/<path>`.
    pub fn write(&self, path: &str, data: &[u8]) {
        let p = self.content.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.content.join(path)).unwrap();
    }

    /// `trustfs repo add` of the content directory into `repo` (a new targets, snapshot and
    /// timestamp version).
    pub fn publish_to(&self, repo: &Path) {
        run_ok(
            Command::new(BIN)
                .args(["repo", "add"])
                .arg(repo)
                .arg(&self.content)
                .arg("--keys")
                .arg(&self.keys)
                .args(&self.expires),
        );
    }

    pub fn publish(&self) {
        self.publish_to(&self.repo);
    }

    /// [`Self::publish`] with these `--expires` instead of the world's (none: the defaults).
    pub fn publish_expiring(&self, expires: &[&str]) {
        let args: Vec<&str> = expires.iter().flat_map(|e| ["--expires", e]).collect();
        self.publish_args(&args);
    }

    /// `trustfs repo add` of the content directory with `args` (and not the world's expiries).
    pub fn publish_args(&self, args: &[&str]) {
        run_ok(
            Command::new(BIN)
                .args(["repo", "add"])
                .arg(&self.repo)
                .arg(&self.content)
                .arg("--keys")
                .arg(&self.keys)
                .args(args),
        );
    }

    /// The file the server holds for target `path` with content `data` (its consistent-snapshot
    /// name, `targets/<dir>/<sha256>.<base>`).
    pub fn server_file(&self, path: &str, data: &[u8]) -> PathBuf {
        use sha2::{Digest, Sha256};
        let hash = hex::encode(Sha256::digest(data));
        let (dir, base) = path.rsplit_once('/').unwrap_or(("", path));
        let p = self
            .repo
            .join("targets")
            .join(dir)
            .join(format!("{hash}.{base}"));
        assert!(p.is_file(), "{} missing on the server", p.display());
        p
    }

    pub fn at(&self, path: &str) -> PathBuf {
        self.mnt.join(path)
    }

    /// A `trustfs` command with this world's runtime directory.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("TRUSTFS_RUNTIME_DIR", &self.runtime);
        c
    }

    /// `trustfs mount` of the local repository over the content directory, plus `extra`.
    pub fn mount_local(&self, extra: &[&str]) -> Daemon {
        let mut args: Vec<String> = vec![
            "--metadata".into(),
            self.metadata().display().to_string(),
            "--backing".into(),
            self.content.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.mount_with(&args).unwrap_or_else(|(code, log)| {
            panic!("mount exited with {code}: {log}");
        })
    }

    /// The remote mount's download cache.
    pub fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// `trustfs mount` of a remote repository: metadata from `metadata_url`, targets from
    /// `targets[0]` and the rest as `--mirror`s, the world's cache, plus `extra`.
    pub fn mount_remote(
        &self,
        metadata_url: &str,
        targets: &[String],
        extra: &[&str],
    ) -> Result<Daemon, (i32, String)> {
        let mut args = self.remote_args(metadata_url, targets);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.mount_with(&args)
    }

    fn remote_args(&self, metadata_url: &str, targets: &[String]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--metadata-url".into(),
            metadata_url.into(),
            "--targets-url".into(),
            targets[0].clone(),
            "--cache".into(),
            self.cache().display().to_string(),
        ];
        for m in &targets[1..] {
            args.push("--mirror".into());
            args.push(m.clone());
        }
        args
    }

    /// The remote mount's cache entries: (name, size), sorted by name; none if no cache yet.
    pub fn cache_entries(&self) -> Vec<(String, u64)> {
        let Ok(rd) = std::fs::read_dir(self.cache()) else {
            return Vec::new();
        };
        let mut v: Vec<_> = rd
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().map(|m| m.len()).unwrap_or(0),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// The verified objects in the cache (`t-…`).
    pub fn objects(&self) -> Vec<(String, u64)> {
        let mut v = self.cache_entries();
        v.retain(|(n, _)| n.starts_with("t-"));
        v
    }

    /// Downloads in progress in the cache (`tmp.…`).
    pub fn temps(&self) -> Vec<(String, u64)> {
        let mut v = self.cache_entries();
        v.retain(|(n, _)| n.starts_with("tmp."));
        v
    }

    /// The state dir's files (name → content).
    pub fn state_files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(&self.state)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    /// `trustfs mount` with `--root` and `--state-dir` of this world and `args`; Err(exit code,
    /// log) if the daemon exits before the mount appears.
    pub fn mount_with(&self, args: &[String]) -> Result<Daemon, (i32, String)> {
        self.spawn_mount(args, None, &[], &self.mnt, &self.state)
    }

    /// `trustfs mount` of the repository `server` serves (metadata and targets from its root,
    /// `repo/metadata` and `repo/targets`), plus `extra`.
    pub fn mount_nginx(&self, server: &Nginx, extra: &[&str]) -> Result<Daemon, (i32, String)> {
        self.mount_remote(&server.url("metadata"), &[server.url("targets")], extra)
    }

    /// As [`Self::mount_remote`], on another mountpoint and state dir (sharing the cache).
    pub fn mount_remote_at(
        &self,
        metadata_url: &str,
        targets: &[String],
        extra: &[&str],
        mnt: &Path,
        state: &Path,
    ) -> Result<Daemon, (i32, String)> {
        std::fs::create_dir_all(mnt).unwrap();
        let mut args = self.remote_args(metadata_url, targets);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn_mount(&args, None, &[], mnt, state)
    }

    /// As [`Self::mount_with`], the daemon's environment with `envs` set.
    pub fn mount_with_env(
        &self,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> Result<Daemon, (i32, String)> {
        self.spawn_mount(args, None, envs, &self.mnt, &self.state)
    }

    /// As [`Self::mount_with`], the daemon limited to `nofile` open descriptors (soft and hard
    /// `RLIMIT_NOFILE`, so it cannot raise them).
    pub fn mount_limited(&self, args: &[String], nofile: u64) -> Result<Daemon, (i32, String)> {
        self.spawn_mount(args, Some(nofile), &[], &self.mnt, &self.state)
    }

    fn spawn_mount(
        &self,
        args: &[String],
        nofile: Option<u64>,
        envs: &[(&str, &str)],
        mnt: &Path,
        state: &Path,
    ) -> Result<Daemon, (i32, String)> {
        use std::os::unix::process::CommandExt;
        let n = self.starts.fetch_add(1, Ordering::Relaxed);
        let log = self.dir.join(format!("daemon-{n}.log"));
        let mut cmd = self.cmd();
        cmd.envs(envs.iter().copied());
        if let Some(limit) = nofile {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd
            .arg("mount")
            .arg("--root")
            .arg(self.metadata().join("1.root.json"))
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .arg(mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn trustfs mount");
        let mut d = Daemon {
            child: Some(child),
            mnt: mnt.to_owned(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Mounted and answering (a dead mount from an earlier daemon is in mountinfo too).
            if is_mounted(mnt) && std::fs::metadata(mnt).is_ok() {
                // The daemon writes its first status record right after the mount comes up.
                if self
                    .status_record_of(mnt)
                    .is_some_and(|r| r["pid"] == d.pid())
                {
                    return Ok(d);
                }
            }
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                d.child = None;
                return Err((st.code().unwrap_or(-1), d.log()));
            }
            assert!(
                Instant::now() < deadline,
                "mount did not come up: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The mount's status record in the runtime directory, if there is one.
    pub fn status_record(&self) -> Option<serde_json::Value> {
        self.status_record_of(&self.mnt)
    }

    fn status_record_of(&self, mnt: &Path) -> Option<serde_json::Value> {
        let rec = trustfs::telemetry::status::instance_name(mnt);
        let bytes = std::fs::read(self.runtime.join(format!("{rec}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Audit log lines, each parsed as JSON.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        lazy_umount(&self.mnt);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `trustfs mount`; SIGTERM (then SIGKILL) and a lazy unmount on drop.
pub struct Daemon {
    child: Option<Child>,
    pub mnt: PathBuf,
    log: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGTERM and wait for a clean exit; returns the log.
    pub fn stop(mut self) -> String {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill with our own child's pid and a valid signal.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let st = c.wait().unwrap();
            if st.code() != Some(0) {
                // The status first and the log's end last: CI output keeps both ends of a long log.
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "daemon did not exit cleanly: {st:?}\n--- last lines of its log ---\n{}",
                    tail.join("\n")
                );
            }
        }
        self.log()
    }

    /// SIGKILL, as a crash would. The dead mount is left in place (ENOTCONN).
    pub fn kill9(mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill with our own child's pid and a valid signal.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            lazy_umount(&self.mnt);
        }
    }
}

/// errno of a failed operation (panics on success).
pub fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(v) => {
            let mut shown = format!("{v:?}");
            if shown.len() > 200 {
                shown.truncate(200);
                shown.push('…');
            }
            panic!("succeeded with {shown}, expected an error")
        }
        Err(e) => e.raw_os_error().expect("an OS error"),
    }
}
