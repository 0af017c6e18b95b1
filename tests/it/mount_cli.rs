//! `trustfs mount` as a process, on repositories made by `trustfs repo init` / `trustfs repo add`:
//! clean shutdown on SIGTERM, and no mount at all for metadata that cannot be trusted (needs root
//! and /dev/fuse; fails, never skips, without them).

use crate::harness::mount as common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{is_mounted, lazy_umount, require_fuse};

use crate::harness::BIN;

struct Setup {
    dir: PathBuf,
    repo: PathBuf,
    content: PathBuf,
    mnt: PathBuf,
    state: PathBuf,
}

impl Setup {
    fn new(tag: &str, expires: &[&str]) -> Setup {
        require_fuse();
        let dir = crate::harness::fresh_dir("cli", tag);
        let s = Setup {
            repo: dir.join("repo"),
            content: dir.join("content"),
            mnt: dir.join("mnt"),
            state: dir.join("state"),
            dir,
        };
        std::fs::create_dir_all(s.content.join("sub")).unwrap();
        std::fs::create_dir_all(&s.mnt).unwrap();
        std::fs::write(s.content.join("hello.txt"), b"hello, verified world\n").unwrap();
        std::fs::write(s.content.join("sub/data.bin"), vec![7u8; 300_000]).unwrap();
        let keys = s.dir.join("keys");
        let mut exp = Vec::new();
        for e in expires {
            exp.push("--expires".to_owned());
            exp.push((*e).to_owned());
        }
        run_ok(
            Command::new(BIN)
                .args(["repo", "init"])
                .arg(&s.repo)
                .arg("--keys")
                .arg(&keys)
                .args(&exp),
        );
        run_ok(
            Command::new(BIN)
                .args(["repo", "add"])
                .arg(&s.repo)
                .arg(&s.content)
                .arg("--keys")
                .arg(&keys)
                .args(&exp),
        );
        s
    }

    fn metadata(&self) -> PathBuf {
        self.repo.join("metadata")
    }

    fn mount(&self) -> Child {
        Command::new(BIN)
            .arg("mount")
            .arg("--root")
            .arg(self.metadata().join("1.root.json"))
            .arg("--metadata")
            .arg(self.metadata())
            .arg("--backing")
            .arg(&self.content)
            .arg("--state-dir")
            .arg(&self.state)
            .arg(&self.mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn trustfs mount")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        lazy_umount(&self.mnt);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run trustfs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Wait until `mnt` is mounted, or the child has exited (returns its exit code then).
fn wait_mounted(child: &mut Child, mnt: &Path) -> Option<i32> {
    loop {
        if is_mounted(mnt) {
            return None;
        }
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: Child) -> String {
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sigterm_unmounts_cleanly_and_exits_zero() {
    let s = Setup::new("sigterm", &[]);
    let mut child = s.mount();
    assert_eq!(
        wait_mounted(&mut child, &s.mnt),
        None,
        "mount did not come up"
    );
    assert_eq!(
        std::fs::read(s.mnt.join("hello.txt")).unwrap(),
        b"hello, verified world\n"
    );
    assert_eq!(
        std::fs::read(s.mnt.join("sub/data.bin")).unwrap(),
        vec![7u8; 300_000]
    );
    // SAFETY: kill with a valid pid of our own child and a valid signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!is_mounted(&s.mnt), "stale mount after SIGTERM");
}

#[test]
fn external_umount_stops_the_daemon() {
    let s = Setup::new("extumount", &[]);
    let mut child = s.mount();
    assert_eq!(
        wait_mounted(&mut child, &s.mnt),
        None,
        "mount did not come up"
    );
    let st = Command::new("umount").arg(&s.mnt).status().unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn badly_signed_metadata_is_refused_and_nothing_is_mounted() {
    let s = Setup::new("badsig", &[]);
    let ts = s.metadata().join("timestamp.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&ts).unwrap()).unwrap();
    let sig = v["signatures"][0]["sig"].as_str().unwrap().to_owned();
    let flipped: String = sig
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '0' {
                    '1'
                } else {
                    '0'
                }
            } else {
                c
            }
        })
        .collect();
    v["signatures"][0]["sig"] = serde_json::Value::String(flipped);
    std::fs::write(&ts, serde_json::to_vec(&v).unwrap()).unwrap();
    let mut child = s.mount();
    let code = wait_mounted(&mut child, &s.mnt);
    let err = stderr_of(child);
    assert_eq!(code, Some(2), "stderr: {err}");
    assert!(err.contains("refusing to mount"), "stderr: {err}");
    assert!(!is_mounted(&s.mnt));
}

#[test]
fn expired_metadata_is_refused_and_nothing_is_mounted() {
    let s = Setup::new("expired", &["timestamp=1s"]);
    // Wait until the timestamp role has certainly expired (expiry has one-second resolution).
    let until = SystemTime::now() + Duration::from_secs(2);
    while SystemTime::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut child = s.mount();
    let code = wait_mounted(&mut child, &s.mnt);
    let err = stderr_of(child);
    assert_eq!(code, Some(2), "stderr: {err}");
    assert!(err.contains("expired"), "stderr: {err}");
    assert!(!is_mounted(&s.mnt));
}

#[test]
fn mount_help_is_helpful() {
    let out = Command::new(BIN)
        .args(["mount", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--root",
        "--metadata",
        "--backing",
        "--state-dir",
        "--allow-other",
        "--hide-unregistered",
        "--copy-cache-max",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
}

/// The README's first command: the shipped example mounts, its published files read, and the two
/// planted ones (altered after signing, never registered) are refused with EACCES.
#[test]
fn shipped_example_mount_reads_verified_and_refuses_tampered() {
    require_fuse();
    let dir = std::env::temp_dir().join(format!("trustfs-cli-example-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mnt = dir.join("mnt"); // does not exist yet: the mount creates it
    struct Cleanup(PathBuf, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            lazy_umount(&self.1);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone(), mnt.clone());
    let mut child = common::example_mount(BIN, &dir.join("state"), &mnt)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn trustfs mount");
    assert_eq!(
        wait_mounted(&mut child, &mnt),
        None,
        "example mount did not come up"
    );
    assert_eq!(
        std::fs::read_to_string(mnt.join("hello.txt")).unwrap(),
        "Hello from a verified volume.\n"
    );
    assert!(std::fs::read_to_string(mnt.join("docs/guide.md"))
        .unwrap()
        .starts_with("# Guide"));
    for refused in ["config.txt", "bin/backdoor.sh"] {
        let err = std::fs::read(mnt.join(refused)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{refused}: {err}");
    }
    // SAFETY: kill with a valid pid of our own child and a valid signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let err = stderr_of(child);
    assert!(
        err.contains("DENY open \"config.txt\": sha256 mismatch"),
        "{err}"
    );
    assert!(
        err.contains("DENY open \"bin/backdoor.sh\": not listed"),
        "{err}"
    );
    assert!(!is_mounted(&mnt));
}

/// The demo trustfs exists for (`examples/mitm/run.sh`, as the README tells it): a man in the
/// middle injects a destructive command into a script in transit; the plain download runs it,
/// the trustfs mount (bind-mounted into a mount namespace) refuses it with EACCES and serves the
/// untouched files; the demo cleans up after itself.
#[test]
fn mitm_demo_plain_download_runs_the_injected_code_trustfs_refuses_it() {
    require_fuse();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mitm/run.sh");
    let mut child = Command::new("bash")
        .arg(&script)
        .env("TRUSTFS", BIN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not finish in 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!(
        "{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    let lines: Vec<&str> = stdout.lines().collect();
    let n = lines.len();
    assert!(n >= 2, "{all}");
    assert!(
        lines[n - 2].starts_with("plain download: injected code ran (")
            && lines[n - 2].ends_with("/victim/precious.txt deleted)"),
        "{all}"
    );
    assert_eq!(
        lines[n - 1],
        "trustfs: injected code refused (EACCES); untouched files served (service/index.html, service/config.json)",
        "{all}"
    );
    for want in [
        "mitm: INJECTED a destructive command into /files/service/start.sh",
        "cannot open /mnt/app/service/start.sh: Permission denied",
        "Hello from a verified service",
        "DENY open \"service/start.sh\"",
        "chunk root (blake3, trustfs-chunks/1) mismatch",
        "\"reason\": \"altered\"",
        "  verified",
        "status.json: verified=true",
    ] {
        assert!(stdout.contains(want), "{want:?} missing:\n{all}");
    }
    // Cleaned up: no scratch directory, no mount left behind.
    let scratch = stdout
        .lines()
        .next()
        .and_then(|l| l.split("(scratch dir ").nth(1))
        .map(|s| s.trim_end_matches(')').to_owned())
        .unwrap_or_else(|| panic!("no scratch dir named:\n{all}"));
    assert!(!Path::new(&scratch).exists(), "{scratch} left behind");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&scratch), "a mount left behind:\n{mounts}");
}
