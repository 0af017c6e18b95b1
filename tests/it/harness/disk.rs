//! A backing "disk" the test controls: a FUSE filesystem (in this process, through fuser) with one
//! file, whose reads fail (a disk gone bad) or whose bytes change under the reader at a chosen
//! offset (a content-dir owner rewriting a file while the daemon reads it). Attributes never
//! change, so the daemon cannot notice the change from size, times or inode: only the bytes tell.
//! Direct I/O: every read of the daemon reaches [`Disk::read`], none is served from a page cache.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, ReplyOpen, Request,
};

use super::mount::lazy_umount;

/// What the one file holds.
pub enum Content {
    /// This many bytes, every read of which fails with EIO.
    Failing(u64),
    /// `before` until the first read that starts at or past `at`; from that read on, `after`
    /// (same length). Reads are sequential in the daemon, so the bytes before `at` it has read by
    /// then are `before`'s.
    ChangesAt {
        before: Vec<u8>,
        after: Vec<u8>,
        at: u64,
    },
}

struct Disk {
    name: String,
    content: Content,
    changed: AtomicBool,
}

impl Disk {
    fn size(&self) -> u64 {
        match &self.content {
            Content::Failing(size) => *size,
            Content::ChangesAt { before, .. } => before.len() as u64,
        }
    }
}

fn attr(ino: u64, kind: FileType, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm: if kind == FileType::Directory {
            0o755
        } else {
            0o644
        },
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

const TTL: Duration = Duration::from_secs(1);

impl Filesystem for Disk {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == 1 && name == OsStr::new(&self.name) {
            reply.entry(
                &TTL,
                &attr(2, FileType::RegularFile, self.size()),
                Generation(0),
            );
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            1 => reply.attr(&TTL, &attr(1, FileType::Directory, 0)),
            2 => reply.attr(&TTL, &attr(2, FileType::RegularFile, self.size())),
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match &self.content {
            Content::Failing(_) => reply.error(Errno::EIO),
            Content::ChangesAt { before, after, at } => {
                if offset >= *at {
                    self.changed.store(true, Ordering::SeqCst);
                }
                let bytes = if self.changed.load(Ordering::SeqCst) {
                    after
                } else {
                    before
                };
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(size as usize).min(bytes.len());
                reply.data(&bytes[start..end]);
            }
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino.0 == 1 && offset == 0 {
            let _ = reply.add(INodeNo(2), 1, FileType::RegularFile, &self.name);
        }
        reply.ok();
    }
}

/// The mounted disk; unmounted on drop.
pub struct Mounted(Option<fuser::BackgroundSession>, PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.umount_and_join();
        }
        lazy_umount(&self.1);
    }
}

/// Mount a disk at `dir` whose one file is `name` with `content`.
pub fn mount(dir: &Path, name: &str, content: Content) -> Mounted {
    if let Content::ChangesAt { before, after, .. } = &content {
        assert_eq!(before.len(), after.len(), "the change keeps the length");
    }
    std::fs::create_dir_all(dir).unwrap();
    let fs = Disk {
        name: name.to_owned(),
        content,
        changed: AtomicBool::new(false),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![fuser::MountOption::FSName("trustfs-test-disk".into())];
    let s = fuser::spawn_mount(fs, dir, &config).expect("mount the test disk");
    Mounted(Some(s), dir.to_owned())
}
