//! Helpers for tests on real FUSE mounts: unique temp dirs, a hand-built target index, and a guard
//! that always unmounts (lazily if it must) so a failing test never leaves a stale mount.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256, Sha512};
use trustfs::mount::{MountHandle, MountOptions, Unregistered};
use trustfs::{Hashes, IndexBuilder, TargetIndex, TargetInfo, TargetPath};

/// Fail (never skip) when the machine cannot run FUSE mounts.
pub fn require_fuse() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "mount tests need root (mount(2) without fusermount); run them as root"
    );
    assert!(
        Path::new("/dev/fuse").exists(),
        "mount tests need /dev/fuse (load the fuse module or pass the device into the container)"
    );
}

pub fn info_for(data: &[u8]) -> TargetInfo {
    let mut hashes = Hashes::new();
    hashes.insert("sha256", Sha256::digest(data).to_vec());
    hashes.insert("sha512", Sha512::digest(data).to_vec());
    TargetInfo {
        length: data.len() as u64,
        hashes,
        custom: None,
        chunk_root: None,
    }
}

/// A scratch directory with `backing/`, `mnt/`, `state/` and `outside/`, removed on drop.
pub struct Scratch {
    pub root: PathBuf,
    pub backing: PathBuf,
    pub mnt: PathBuf,
    pub state: PathBuf,
    pub outside: PathBuf,
    /// The targets registered so far (see [`Scratch::index`]).
    pub index: IndexBuilder,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        require_fuse();
        let root = super::fresh_dir("mount", tag);
        let s = Scratch {
            backing: root.join("backing"),
            mnt: root.join("mnt"),
            state: root.join("state"),
            outside: root.join("outside"),
            root,
            index: IndexBuilder::default(),
        };
        for d in [&s.backing, &s.mnt, &s.state, &s.outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        s
    }

    /// Write `data` to `backing/<path>` and register it with its hashes.
    pub fn add(&mut self, path: &str, data: &[u8]) {
        self.write(path, data);
        self.register(path, data);
    }

    /// Write `data` to `backing/<path>` and register it with its hashes and its signed chunk
    /// root, the outboard published in `chunks/` (as `repo add` does; [`Scratch::options`]
    /// points the mount there).
    pub fn add_with_root(&mut self, path: &str, data: &[u8]) {
        self.write(path, data);
        let tree = trustfs::chunks::tree_of(data);
        let dir = self.root.join("chunks");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(hex::encode(Sha256::digest(data))), tree.outboard()).unwrap();
        let mut info = info_for(data);
        info.chunk_root = Some(tree.root);
        self.index.insert(TargetPath::parse(path).unwrap(), info);
    }

    /// Register `path` as having content `data` (without touching the backing dir).
    pub fn register(&mut self, path: &str, data: &[u8]) {
        self.index
            .insert(TargetPath::parse(path).unwrap(), info_for(data));
    }

    /// The index of the targets registered so far.
    pub fn index(&self) -> TargetIndex {
        self.index.clone().build()
    }

    /// Write `backing/<path>` without registering it.
    pub fn write(&self, path: &str, data: &[u8]) {
        let p = self.backing.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    pub fn options(&self) -> MountOptions {
        let mut o = MountOptions::new(&self.mnt, &self.backing, &self.state);
        o.outboards = Some(self.root.join("chunks"));
        o.threads = 4;
        o
    }

    pub fn mount(&self) -> Mounted {
        self.mount_with(self.options())
    }

    pub fn mount_hidden(&self) -> Mounted {
        let mut o = self.options();
        o.unregistered = Unregistered::Hide;
        self.mount_with(o)
    }

    pub fn mount_with(&self, options: MountOptions) -> Mounted {
        let handle = trustfs::mount::spawn(options, self.index()).expect("mount failed");
        Mounted {
            handle: Some(handle),
            mnt: self.mnt.clone(),
        }
    }

    pub fn at(&self, path: &str) -> PathBuf {
        self.mnt.join(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        lazy_umount(&self.mnt);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A live mount; unmounts on drop, lazily if a normal unmount fails.
pub struct Mounted {
    pub handle: Option<MountHandle>,
    pub mnt: PathBuf,
}

impl Mounted {
    pub fn handle(&self) -> &MountHandle {
        self.handle.as_ref().unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if h.unmount().is_err() {
                lazy_umount(&self.mnt);
            }
        }
    }
}

pub fn lazy_umount(p: &Path) {
    if is_mounted(p) {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// `BIN mount` of the shipped example (`examples/repo` over `examples/content`) at `mnt` with
/// the state dir `state`.
pub fn example_mount(bin: &str, state: &Path, mnt: &Path) -> std::process::Command {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut c = std::process::Command::new(bin);
    c.arg("mount")
        .arg("--root")
        .arg(examples.join("repo/metadata/1.root.json"))
        .arg("--metadata")
        .arg(examples.join("repo/metadata"))
        .arg("--backing")
        .arg(examples.join("content"))
        .arg("--state-dir")
        .arg(state)
        .arg(mnt);
    c
}

/// Is `p` a mount point in /proc/self/mountinfo?
pub fn is_mounted(p: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = p.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

/// errno of an io::Error (panics if it has none).
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().expect("an OS error")
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Drop the kernel's cached pages of an open file, so the reads that follow reach the daemon.
pub fn drop_pages(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor; fadvise reads no memory of ours.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
}
