//! Deployment paths on real mounts: a bind mount into another mount namespace read by an
//! unprivileged uid (how containers see a trustfs volume), and the mount helper that makes
//! `mount -t fuse.trustfs` and /etc/fstab lines work. Needs root and /dev/fuse (fails otherwise).

use crate::harness::mount as common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{is_mounted, lazy_umount, require_fuse};

use crate::harness::BIN;

/// A repository with `hello.txt` signed and `tampered.txt` altered after signing.
struct Fixture {
    dir: PathBuf,
    content: PathBuf,
    metadata: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        require_fuse();
        let dir = std::env::temp_dir().join(format!("trustfs-pkg-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let content = dir.join("content");
        std::fs::create_dir_all(&content).unwrap();
        // Readable by everyone: the unprivileged reader only ever goes through the mount, but
        // the test's own paths must be traversable.
        for p in [&dir, &content] {
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        std::fs::write(content.join("hello.txt"), b"verified for containers\n").unwrap();
        std::fs::write(content.join("tampered.txt"), b"original\n").unwrap();
        let repo = dir.join("repo");
        let keys = dir.join("keys");
        ok(Command::new(BIN)
            .args(["repo", "init"])
            .arg(&repo)
            .arg("--keys")
            .arg(&keys));
        ok(Command::new(BIN)
            .args(["repo", "add"])
            .arg(&repo)
            .arg("--keys")
            .arg(&keys)
            .arg(&content));
        std::fs::write(content.join("tampered.txt"), b"evil!!!!\n").unwrap();
        Fixture {
            metadata: repo.join("metadata"),
            dir,
            content,
            mounts: Vec::new(),
        }
    }

    fn mount(&mut self, name: &str, extra: &[&str]) -> (PathBuf, Child) {
        let mnt = self.dir.join(name);
        std::fs::create_dir_all(&mnt).unwrap();
        let mut child = Command::new(BIN)
            .arg("mount")
            .arg("--root")
            .arg(self.metadata.join("1.root.json"))
            .arg("--metadata")
            .arg(&self.metadata)
            .arg("--backing")
            .arg(&self.content)
            .arg("--state-dir")
            .arg(self.dir.join(format!("state-{name}")))
            .args(extra)
            .arg(&mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(&mnt, Some(&mut child));
        self.mounts.push(mnt.clone());
        (mnt, child)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for m in &self.mounts {
            lazy_umount(m);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Wait (bounded) until `mnt` is mounted; panics if the daemon exits first or it never appears.
fn wait_for(mnt: &Path, mut child: Option<&mut Child>) {
    for _ in 0..1000 {
        if is_mounted(mnt) {
            return;
        }
        if let Some(c) = child.as_deref_mut() {
            if let Some(st) = c.try_wait().unwrap() {
                panic!(
                    "trustfs mount exited with {st} before mounting {}",
                    mnt.display()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} did not get mounted", mnt.display());
}

/// In a new mount namespace, bind-mount `mnt` at `<dir>/app` (as `docker -v mnt:/app:ro` does)
/// and run `cat <dir>/app/<file>` as uid/gid 65534.
fn cat_in_container(dir: &Path, mnt: &Path, file: &str) -> Output {
    let app = dir.join("app");
    let script = format!(
        "set -e; mkdir -p '{app}'; mount --bind -o ro '{mnt}' '{app}'; \
         exec setpriv --reuid 65534 --regid 65534 --clear-groups cat '{app}/{file}'",
        app = app.display(),
        mnt = mnt.display()
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap()
}

#[test]
fn bind_mount_in_another_namespace_is_readable_by_uid_65534_with_allow_other() {
    let mut f = Fixture::new("container");
    let (mnt, _child) = f.mount("mnt-shared", &["--allow-other"]);
    let out = cat_in_container(&f.dir, &mnt, "hello.txt");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"verified for containers\n");
    // The same uid is still refused content that does not verify.
    // (cat's own message: the namespace, the bind mount and setpriv worked; only the open failed.)
    let out = cat_in_container(&f.dir, &mnt, "tampered.txt");
    assert!(!out.status.success());
    let want = format!(
        "cat: {}: Permission denied",
        f.dir.join("app/tampered.txt").display()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&want),
        "{out:?}"
    );
    // The bind mount lived only in the other namespace.
    assert!(!is_mounted(&f.dir.join("app")));
}

#[test]
fn without_allow_other_other_uids_cannot_read() {
    let mut f = Fixture::new("noallow");
    let (mnt, _child) = f.mount("mnt-private", &[]);
    assert_eq!(
        std::fs::read(mnt.join("hello.txt")).unwrap(),
        b"verified for containers\n"
    );
    let out = cat_in_container(&f.dir, &mnt, "hello.txt");
    assert!(
        !out.status.success(),
        "uid 65534 read a mount without --allow-other"
    );
    // Refused by the mount (the kernel's FUSE access check), not by a failing setup step.
    let want = format!(
        "cat: {}: Permission denied",
        f.dir.join("app/hello.txt").display()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&want),
        "{out:?}"
    );
}

#[test]
fn mount_helper_mounts_from_an_fstab_line() {
    let f = Fixture::new("fstab");
    let mnt = f.dir.join("fstab-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let log = f.dir.join("trustfs.log");
    let line = format!(
        "{content} {mnt} fuse.trustfs root={root},metadata={md},state_dir={state},log={log},nofail,_netdev,x-systemd.automount 0 0",
        content = f.content.display(),
        mnt = mnt.display(),
        root = f.metadata.join("1.root.json").display(),
        md = f.metadata.display(),
        state = f.dir.join("state-fstab").display(),
        log = log.display(),
    );
    // What mount(8) does with that line: SOURCE MOUNTPOINT -o OPTIONS to /sbin/mount.fuse.trustfs.
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], "fuse.trustfs");
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/mount.fuse.trustfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            lazy_umount(&self.0);
        }
    }
    let _guard = Unmount(mnt.clone());
    let out = Command::new(&helper)
        .args([fields[0], fields[1], "-o", fields[3]])
        .env("TRUSTFS_BIN", BIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&mnt), "helper returned 0 but nothing is mounted");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(info
        .lines()
        .any(|l| l.contains(&format!(" {} ", mnt.display())) && l.contains(" - fuse trustfs ")));
    assert_eq!(
        std::fs::read(mnt.join("hello.txt")).unwrap(),
        b"verified for containers\n"
    );
    assert_eq!(
        std::fs::read(mnt.join("tampered.txt"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EACCES)
    );
    // umount(8) ends the daemon; its log explains the denial.
    assert!(Command::new("umount").arg(&mnt).status().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DENY open \"tampered.txt\""), "{text}");

    // Untrusted metadata: the helper fails with the daemon's exit status and reason.
    let bad = format!(
        "root={},metadata={},log={}",
        f.dir.join("nonexistent.json").display(),
        f.metadata.display(),
        log.display()
    );
    let out = Command::new(&helper)
        .args([fields[0], fields[1], "-o", &bad])
        .env("TRUSTFS_BIN", BIN)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to mount"));
    assert!(!is_mounted(&mnt));
}
