//! The `fuser::Filesystem` impl: each request dispatched to the file of its concept; what would
//! change the filesystem answered `EROFS`.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, Generation as FuseGeneration, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
};

use super::namespace::join;
use super::TrustFs;
use crate::log_event;
use crate::mount::lock;
use crate::source::is_plain_component;

/// Trait methods that would change the filesystem, written once: each `fn name(args) Reply;`
/// becomes `fn name(&self, args, reply: Reply)`, which answers `EROFS` and looks at nothing else.
macro_rules! read_only {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) $reply:ty;)+) => {
        $(
            fn $name(&self, $($arg: $ty,)* reply: $reply) {
                reply.error(Errno::EROFS);
            }
        )+
    };
}

/// Background requests (RELEASE, async reads) the kernel keeps in flight; see `init`.
const MAX_BACKGROUND: u16 = 256;

impl Filesystem for TrustFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if self.want_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
        }
        // Largest readahead the kernel offers; max_write (and so max_pages) already defaults to
        // fuser's maximum, so userspace reads come in requests as large as the kernel allows.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        // RELEASE is a background request, and the kernel keeps at most `max_background` of
        // those in flight (fuser's default is 16). Many threads opening and closing files
        // outran 16 by ~35,000 handles a second, so the handle table grew to a million entries
        // (bench/latency.sh); with 256 it stays at about the number of open files.
        let _ = config.set_max_background(MAX_BACKGROUND);
        match self.chunks.as_ref().map(|c| c.mode) {
            Some(mode) => log_event!(
                "mounted; reads checked chunk by chunk against each file's signed chunk tree, {mode}"
            ),
            None => log_event!(
                "mounted; reads of verified copies via {}",
                if self.passthrough.load(Ordering::Relaxed) {
                    "FUSE passthrough"
                } else {
                    "userspace"
                }
            ),
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if !is_plain_component(name) {
            reply.error(Errno::EINVAL);
            return;
        }
        let Some(parent) = self.node(parent) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let path = join(parent.path(), name);
        let gen = self.generation();
        match self.resolve(&gen, &path, true) {
            Ok((attr, ttl)) => {
                // Metadata switched while this lookup ran: its answer may already be stale, so
                // the kernel must not keep it (the switch's invalidations may come first).
                let ttl = if self.generation().number == gen.number {
                    ttl
                } else {
                    Duration::ZERO
                };
                reply.entry(&ttl, &attr, FuseGeneration(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let gen = self.generation();
        match self.node_attr(&gen, ino.0, &node) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let gone = self
            .inodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .forget(ino.0, nlookup);
        if gone {
            // The kernel dropped the inode, and its cached listing with it.
            lock(&self.kernel_listings).remove(&ino.0);
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.answer_open(req, ino, flags, reply);
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.answer_read(req, fh, offset, size, reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.answer_release(fh, reply);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.answer_opendir(req, ino, reply);
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.answer_readdir(req, ino, fh, offset, reply);
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.dirs).remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.generation().index.len() as u64;
        reply.statfs(0, 0, 0, files, 0, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::EROFS);
        } else {
            reply.ok();
        }
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        // Symlinks are never exposed as symlinks.
        reply.error(Errno::EINVAL);
    }

    // ---- everything that would change the filesystem: EROFS ----

    read_only! {
        fn setattr(
            _req: &Request, _ino: INodeNo, _mode: Option<u32>, _uid: Option<u32>, _gid: Option<u32>,
            _size: Option<u64>, _atime: Option<fuser::TimeOrNow>, _mtime: Option<fuser::TimeOrNow>,
            _ctime: Option<SystemTime>, _fh: Option<FileHandle>, _crtime: Option<SystemTime>,
            _chgtime: Option<SystemTime>, _bkuptime: Option<SystemTime>,
            _flags: Option<fuser::BsdFileFlags>
        ) ReplyAttr;
        fn mknod(
            _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, _rdev: u32
        ) ReplyEntry;
        fn mkdir(
            _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32
        ) ReplyEntry;
        fn unlink(_req: &Request, _parent: INodeNo, _name: &OsStr) ReplyEmpty;
        fn rmdir(_req: &Request, _parent: INodeNo, _name: &OsStr) ReplyEmpty;
        fn symlink(
            _req: &Request, _parent: INodeNo, _link_name: &OsStr, _target: &std::path::Path
        ) ReplyEntry;
        fn rename(
            _req: &Request, _parent: INodeNo, _name: &OsStr, _newparent: INodeNo, _newname: &OsStr,
            _flags: fuser::RenameFlags
        ) ReplyEmpty;
        fn link(_req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr) ReplyEntry;
        fn write(
            _req: &Request, _ino: INodeNo, _fh: FileHandle, _offset: u64, _data: &[u8],
            _write_flags: fuser::WriteFlags, _flags: OpenFlags, _lock_owner: Option<LockOwner>
        ) ReplyWrite;
        fn create(
            _req: &Request, _parent: INodeNo, _name: &OsStr, _mode: u32, _umask: u32, _flags: i32
        ) fuser::ReplyCreate;
        fn setxattr(
            _req: &Request, _ino: INodeNo, _name: &OsStr, _value: &[u8], _flags: i32, _position: u32
        ) ReplyEmpty;
        fn removexattr(_req: &Request, _ino: INodeNo, _name: &OsStr) ReplyEmpty;
        fn fallocate(
            _req: &Request, _ino: INodeNo, _fh: FileHandle, _offset: u64, _length: u64, _mode: i32
        ) ReplyEmpty;
        fn copy_file_range(
            _req: &Request, _ino_in: INodeNo, _fh_in: FileHandle, _offset_in: u64,
            _ino_out: INodeNo, _fh_out: FileHandle, _offset_out: u64, _len: u64,
            _flags: fuser::CopyFileRangeFlags
        ) ReplyWrite;
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.answer_getxattr(req, ino, name, size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.answer_listxattr(ino, size, reply);
    }
}
