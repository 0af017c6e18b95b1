//! Mounts by a normal user, as with sshfs: through the setuid `fusermount3` (Debian `fuse3`),
//! with per-user state and status directories, unmounted on SIGTERM. Issue: "Unprivileged
//! mounts". CI runs as root; the test creates a user (`trustfs-test`) and runs trustfs as that
//! user.
//!
//! `fusermount3` opens `/dev/fuse` with the user's own rights, so with `/dev/fuse` mode 0600 (as
//! on this project's CI machine) a normal user cannot mount at all: the test checks that trustfs
//! says so clearly, then gives `/dev/fuse` the usual distribution mode (0666) for the rest and
//! puts the original mode back.

use crate::harness::mount as common;
use crate::harness::nginx;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nginx::Nginx;

use crate::harness::BIN;
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
        // Another test of this file may have created it meanwhile.
        assert!(st.success() || id("-u").is_some(), "useradd {USER} failed");
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

use common::is_mounted as mounted;

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
    fn stop(self) -> (Option<i32>, String) {
        // SAFETY: kill(2) with a pid we spawned and a valid signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait()
    }

    /// Wait (at most 30 s) for the daemon to exit; the exit code and the log.
    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within 30 s:\n{}",
                self.log()
            );
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
        common::lazy_umount(&self.mountpoint);
    }
}

/// The trustfs binary where the test user can run it (the build tree may be private): a copy
/// made once per test process.
fn trustfs_bin(_user: &User) -> PathBuf {
    static BIN_COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN_COPY
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("trustfs-bin-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let bin = dir.join("trustfs");
            std::fs::copy(BIN, &bin).unwrap();
            bin
        })
        .clone()
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
    // Chunk-verified reads need no passthrough (and no CAP_SYS_ADMIN): no line about it.
    assert!(log.contains("reads checked chunk by chunk"), "{log}");
    assert!(!log.contains("passthrough"), "{log}");
    assert!(
        repeated_lines(&log).is_empty(),
        "{:?}\n{log}",
        repeated_lines(&log)
    );

    // An external `fusermount3 -u` by the user ends the daemon as cleanly as SIGTERM.
    let d = Daemon::start(&user, &local_args, &mnt, work.join("external.log"));
    let out = user.run("fusermount3", &["-u", mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let (code, log) = d.wait();
    assert_eq!(code, Some(0), "{log}");
    assert!(!mounted(&mnt), "{log}");

    // --allow-other without `user_allow_other` in /etc/fuse.conf: refused, with the reason.
    let fuse_conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    if !fuse_conf
        .lines()
        .any(|l| l.trim_start().starts_with("user_allow_other"))
    {
        let mut args = vec!["mount", "--allow-other"];
        args.extend(&local_args);
        args.push(mnt.to_str().unwrap());
        let out = user.run(trustfs_bin(&user), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("user_allow_other"), "{stderr}");
        assert!(!mounted(&mnt));
    }

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
    // With live refresh, an audit log and the metrics endpoint, as for root.
    let audit = work.join("audit.jsonl");
    let audit_s = audit.display().to_string();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let metrics_addr = format!("127.0.0.1:{port}");
    remote_args.extend([
        "--state-dir",
        &state_remote_s,
        "--refresh-interval",
        "1s",
        "--audit-log",
        &audit_s,
        "--metrics-addr",
        &metrics_addr,
    ]);
    let d = Daemon::start(&user, &remote_args, &mnt, work.join("remote.log"));
    let hello = cat("hello.txt");
    assert!(hello.status.success(), "{hello:?}\n{}", d.log());
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout),
        std::fs::read_to_string(work.join("content/hello.txt")).unwrap()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("trustfs_opens_total"), "{metrics}");
    let audit_text = std::fs::read_to_string(&audit).unwrap_or_default();
    assert!(
        audit_text.contains("\"event\":\"metadata\""),
        "{audit_text}"
    );
    assert_eq!(std::fs::metadata(&audit).unwrap().uid(), user.uid);
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

/// `trustfs status` run by a user reads records from the user's own runtime directory too; a
/// record planted there must not vouch for a mount another uid (here root) made.
#[test]
fn a_users_own_status_records_cannot_vouch_for_roots_mount() {
    common::require_fuse();
    let user = test_user();
    let work = std::env::temp_dir().join(format!("trustfs-rootmount-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("mnt")).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mnt = work.join("mnt");
    let runtime = work.join("run");
    // Root's daemon, its records in a runtime dir of its own (not the host's /run/trustfs).
    let mut root = common::example_mount(BIN, &work.join("state"), &mnt)
        .env("TRUSTFS_RUNTIME_DIR", &runtime)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mounted(&mnt) {
        assert!(Instant::now() < deadline, "root's mount did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    let record = std::fs::read_dir(&runtime)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("root's status record");
    // Root's daemon dies: its mount is dead, its record stale.
    root.kill().unwrap();
    root.wait().unwrap();
    // The user plants a record claiming the mount is verified, from a live process of theirs.
    let mut sleeper = user.cmd("sleep").arg("60").spawn().unwrap();
    let mut forged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    forged["pid"] = sleeper.id().into();
    forged["verified"] = true.into();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    forged["updated_unix"] = now.into();
    let user_run = user.home.join(".local/state/trustfs/run");
    std::fs::create_dir_all(&user_run).unwrap();
    std::fs::write(
        user_run.join(record.file_name().unwrap()),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    user.own(&user.home.join(".local"));
    std::fs::set_permissions(&user_run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let status = user.run(trustfs_bin(&user), &["status", mnt.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    common::lazy_umount(&mnt);
    let _ = std::fs::remove_file(user_run.join(record.file_name().unwrap()));
    assert_ne!(status.status.code(), Some(0), "{text}");
    assert!(text.contains("✘"), "{text}");
    let _ = std::fs::remove_dir_all(&work);
}
