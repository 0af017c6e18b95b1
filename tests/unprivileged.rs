//! Mounts by a normal user, as with sshfs: through the setuid `fusermount3` (Debian `fuse3`),
//! with per-user state and status directories, unmounted on SIGTERM. Issue: "Unprivileged
//! mounts". CI runs as root; the test creates a user (`trustfs-test`) and runs trustfs as that
//! user.
//!
//! `fusermount3` opens `/dev/fuse` with the user's own rights, so with `/dev/fuse` mode 0600 (as
//! on this project's CI machine) a normal user cannot mount at all: the test checks that trustfs
//! says so clearly, then gives `/dev/fuse` the usual distribution mode (0666) for the rest and
//! puts the original mode back.

#[path = "common/mount.rs"]
mod common;
#[path = "common/nginx.rs"]
mod nginx;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nginx::Nginx;

const BIN: &str = env!("CARGO_BIN_EXE_trustfs");
const USER: &str = "trustfs-test";

/// The test user: (uid, gid, home), created if missing.
struct User {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

fn id(flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(USER).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn test_user() -> User {
    if id("-u").is_none() {
        let st = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", USER])
            .status()
            .expect("useradd (the test needs root to create a user)");
        assert!(st.success(), "useradd {USER} failed");
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let home = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&USER)).then(|| PathBuf::from(f[5]))
        })
        .expect("the test user has a passwd entry");
    User {
        uid: id("-u").unwrap(),
        gid: id("-g").unwrap(),
        home,
    }
}

impl User {
    /// `program args` as this user, with a login-like environment (HOME, PATH; no XDG dirs).
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        // setpriv (util-linux) sets the user's groups too, not just uid and gid, and execs the
        // program (a signal to the child reaches it).
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--init-groups", "--"])
            .arg(program)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .current_dir(&self.home);
        c
    }

    fn run(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        self.cmd(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Give `path` (recursively) to this user.
    fn own(&self, path: &Path) {
        let st = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// `/dev/fuse` set to `mode`, its mode before put back on drop.
struct DevFuseMode(u32);

impl DevFuseMode {
    fn set(mode: u32) -> DevFuseMode {
        let before = std::fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o7777;
        std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(mode)).unwrap();
        DevFuseMode(before)
    }
}

impl Drop for DevFuseMode {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(self.0));
    }
}

fn mounted(mountpoint: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(mountpoint.to_str().unwrap()))
}

/// A daemon run by the test user, with its log; stopped with SIGTERM.
struct Daemon {
    child: Child,
    log: PathBuf,
    mountpoint: PathBuf,
}

impl Daemon {
    fn start(user: &User, args: &[&str], mountpoint: &Path, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).unwrap();
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
        let child = user
            .cmd(trustfs_bin(user))
            .arg("mount")
            .args(args)
            .arg(mountpoint)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            log,
            mountpoint: mountpoint.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !mounted(mountpoint) {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("the daemon exited ({st}) before mounting:\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "no mount after 30 s:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the exit code and the log.
    fn stop(mut self) -> (Option<i32>, String) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code(), self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if mounted(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

/// The trustfs binary where the test user can run it (the build tree may be private).
fn trustfs_bin(user: &User) -> PathBuf {
    let dir = user.home.join("bin");
    let bin = dir.join("trustfs");
    if !bin.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(BIN, &bin).unwrap();
        user.own(&dir);
    }
    bin
}

/// Log lines that occur more than once (timestamps stripped).
fn repeated_lines(log: &str) -> Vec<String> {
    let mut seen = std::collections::BTreeMap::new();
    for line in log.lines() {
        let text = line.split_once(" trustfs: ").map_or(line, |(_, t)| t);
        *seen.entry(text.to_owned()).or_insert(0) += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(l, n)| format!("{n}× {l}"))
        .collect()
}

#[test]
fn a_normal_user_mounts_reads_sees_status_and_unmounts_on_sigterm() {
    common::require_fuse();
    let user = test_user();
    let work = user
        .home
        .join(format!("unprivileged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let st = Command::new("cp")
        .arg("-r")
        .arg(examples.join("repo"))
        .arg(examples.join("content"))
        .arg(&work)
        .status()
        .unwrap();
    assert!(st.success());
    let mnt = work.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    user.own(&work);
    // nginx's workers (nobody) serve the repository from here.
    for dir in [&user.home, &work] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let local_args = [
        "--root",
        "repo/metadata/1.root.json",
        "--metadata",
        "repo/metadata",
        "--backing",
        "content",
    ];
    let local_args: Vec<String> = local_args
        .iter()
        .map(|a| match *a {
            "--root" | "--metadata" | "--backing" => a.to_string(),
            rel => work.join(rel).display().to_string(),
        })
        .collect();
    let local_args: Vec<&str> = local_args.iter().map(String::as_str).collect();

    // /dev/fuse as it is: if the user may not open it, the mount fails at once and says why.
    let mode = std::fs::metadata("/dev/fuse").unwrap().permissions().mode() & 0o7777;
    if mode & 0o006 != 0o006 {
        let mut args = vec!["mount"];
        args.extend(&local_args);
        args.push(mnt.to_str().unwrap());
        let out = user.run(trustfs_bin(&user), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains("/dev/fuse") && stderr.contains("administrator"),
            "{stderr}"
        );
        assert!(!mounted(&mnt));
    }

    // The usual distribution setting from here on.
    let _dev_fuse = DevFuseMode::set(0o666);
    let d = Daemon::start(&user, &local_args, &mnt, work.join("local.log"));
    let cat = |p: &str| user.run("cat", &[mnt.join(p).to_str().unwrap()]);
    let hello = cat("hello.txt");
    assert!(hello.status.success(), "{:?}\n{}", hello, d.log());
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout),
        std::fs::read_to_string(work.join("content/hello.txt")).unwrap()
    );
    let altered = cat("config.txt");
    assert!(!altered.status.success());
    assert!(
        String::from_utf8_lossy(&altered.stderr).contains("Permission denied"),
        "{altered:?}"
    );
    // `trustfs status` as the user finds the user's mount (records in the user's runtime dir).
    let status = user.run(trustfs_bin(&user), &["status", mnt.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{text}\n{}", d.log());
    assert!(text.contains(&format!("✔ {}", mnt.display())), "{text}");
    // Per-user state: under ~/.local/state/trustfs, the user's own.
    let state_base = user.home.join(".local/state/trustfs");
    let state = std::fs::read_dir(&state_base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("objects").is_dir())
        .expect("a state dir under ~/.local/state/trustfs");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&state).unwrap().uid(), user.uid);
    // A second of status writes: no line repeats.
    std::thread::sleep(Duration::from_millis(1500));
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!mounted(&mnt), "{log}");
    assert!(log.contains("reads are served in userspace"), "{log}");
    assert!(
        repeated_lines(&log).is_empty(),
        "{:?}\n{log}",
        repeated_lines(&log)
    );

    // Remote: the same repository from nginx on 127.0.0.1, mounted by the user.
    let server = Nginx::start(&work.join("repo"));
    let cache = work.join("cache");
    let (meta_url, targets_url) = (server.url("metadata"), server.url("targets"));
    let mut remote_args: Vec<&str> = vec![
        "--root",
        local_args[1],
        "--metadata-url",
        &meta_url,
        "--targets-url",
        &targets_url,
        "--cache",
        cache.to_str().unwrap(),
    ];
    let state_remote = work.join("state-remote");
    let state_remote_s = state_remote.display().to_string();
    remote_args.extend(["--state-dir", &state_remote_s]);
    let d = Daemon::start(&user, &remote_args, &mnt, work.join("remote.log"));
    let hello = cat("hello.txt");
    assert!(hello.status.success(), "{hello:?}\n{}", d.log());
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout),
        std::fs::read_to_string(work.join("content/hello.txt")).unwrap()
    );
    let (code, log) = d.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(!mounted(&mnt));
    assert!(
        repeated_lines(&log).is_empty(),
        "{:?}\n{log}",
        repeated_lines(&log)
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
}
