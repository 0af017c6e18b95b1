//! The verified mount over a local backing directory, on real FUSE mounts (needs root and
//! /dev/fuse; the tests fail, never skip, without them). Each test is named after the threat.

use crate::harness::mount as common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use common::*;

const EACCES: i32 = libc::EACCES;
const ENOENT: i32 = libc::ENOENT;
const EROFS: i32 = libc::EROFS;

fn read(p: &std::path::Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(p)
}

#[test]
fn registered_file_reads_byte_identical() {
    let mut s = Scratch::new("identical");
    let big = pattern(3 << 20, 1);
    s.add("a.txt", b"hello\n");
    s.add("dir/sub/big.bin", &big);
    s.add("empty", b"");
    let m = s.mount();
    assert_eq!(read(&s.at("a.txt")).unwrap(), b"hello\n");
    assert_eq!(read(&s.at("dir/sub/big.bin")).unwrap(), big);
    assert_eq!(read(&s.at("empty")).unwrap(), b"");
    let meta = std::fs::metadata(s.at("dir/sub/big.bin")).unwrap();
    assert_eq!(meta.len(), big.len() as u64);
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert_eq!(
        std::fs::metadata(s.at("dir")).unwrap().permissions().mode() & 0o777,
        0o555
    );
    assert_eq!(m.handle().denied(), 0);
}

#[test]
fn userspace_reads_without_passthrough_are_byte_identical() {
    let mut s = Scratch::new("userspace");
    let big = pattern(5 << 20, 2);
    s.add("big.bin", &big);
    let mut o = s.options();
    o.passthrough = false;
    let m = s.mount_with(o);
    assert!(!m.handle().passthrough());
    assert_eq!(read(&s.at("big.bin")).unwrap(), big);
    let mut f = File::open(s.at("big.bin")).unwrap();
    f.seek(SeekFrom::Start(1_000_001)).unwrap();
    let mut buf = [0u8; 4096];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..], &big[1_000_001..1_000_001 + 4096]);
}

#[test]
fn unregistered_file_is_denied() {
    let mut s = Scratch::new("unregistered");
    s.add("ok", b"ok");
    s.write("stray", b"not in metadata");
    let m = s.mount();
    // Listed (default policy), but cannot be opened.
    let names: Vec<_> = std::fs::read_dir(&s.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.iter().any(|n| n == "stray"));
    assert_eq!(errno(&read(&s.at("stray")).unwrap_err()), EACCES);
    assert_eq!(m.handle().denied(), 1);
}

#[test]
fn altered_content_is_denied() {
    let mut s = Scratch::new("altered");
    s.register("f", b"original");
    s.write("f", b"0riginal");
    let _m = s.mount();
    assert_eq!(errno(&read(&s.at("f")).unwrap_err()), EACCES);
}

#[test]
fn altered_length_is_denied() {
    let mut s = Scratch::new("length");
    s.register("longer", b"abc");
    s.write("longer", b"abcd");
    s.register("shorter", b"abc");
    s.write("shorter", b"ab");
    let _m = s.mount();
    // The signed length is reported, the open is refused.
    assert_eq!(std::fs::metadata(s.at("longer")).unwrap().len(), 3);
    assert_eq!(errno(&read(&s.at("longer")).unwrap_err()), EACCES);
    assert_eq!(errno(&read(&s.at("shorter")).unwrap_err()), EACCES);
}

#[test]
fn registered_but_missing_is_enoent() {
    let mut s = Scratch::new("missing");
    s.register("gone", b"data");
    s.register("dir/gone", b"data");
    let _m = s.mount();
    assert_eq!(errno(&read(&s.at("gone")).unwrap_err()), ENOENT);
    assert_eq!(errno(&read(&s.at("dir/gone")).unwrap_err()), ENOENT);
}

#[test]
fn every_mutation_is_erofs() {
    let mut s = Scratch::new("erofs");
    s.add("f", b"data");
    s.add("d/g", b"data");
    let _m = s.mount();
    let e = |r: std::io::Result<()>| errno(&r.unwrap_err());
    assert_eq!(
        e(std::fs::OpenOptions::new()
            .write(true)
            .open(s.at("f"))
            .map(|_| ())),
        EROFS
    );
    assert_eq!(e(std::fs::write(s.at("new"), b"x")), EROFS);
    assert_eq!(e(std::fs::create_dir(s.at("newdir"))), EROFS);
    assert_eq!(e(std::fs::remove_file(s.at("f"))), EROFS);
    assert_eq!(e(std::fs::remove_dir(s.at("d"))), EROFS);
    assert_eq!(e(std::fs::rename(s.at("f"), s.at("f2"))), EROFS);
    assert_eq!(
        e(std::fs::set_permissions(
            s.at("f"),
            std::fs::Permissions::from_mode(0o777)
        )),
        EROFS
    );
    assert_eq!(e(std::os::unix::fs::symlink("f", s.at("l"))), EROFS);
    assert_eq!(e(std::fs::hard_link(s.at("f"), s.at("h"))), EROFS);
    let path = std::ffi::CString::new(s.at("f").to_str().unwrap()).unwrap();
    // SAFETY: valid C strings and a valid buffer for the call.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            c"user.x".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(r, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(EROFS));
    // Unchanged underneath.
    assert_eq!(std::fs::read(s.backing.join("f")).unwrap(), b"data");
}

#[test]
fn symlink_escape_is_refused() {
    let mut s = Scratch::new("symlink");
    let secret = b"outside the backing directory";
    std::fs::write(s.outside.join("secret"), secret).unwrap();
    std::os::unix::fs::symlink(s.outside.join("secret"), s.backing.join("link")).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.backing.join("dirlink")).unwrap();
    // Register the paths with the *outside* content, so following the link would pass the hash
    // check: only refusing to follow it can deny the open.
    s.register("link", secret);
    s.register("dirlink/secret", secret);
    s.add("good", b"good");
    let _m = s.mount();
    assert_eq!(errno(&read(&s.at("link")).unwrap_err()), EACCES);
    // The backing entry under the directory's name is a symlink: it is shown as what it is not
    // (an unreadable file, never a link to follow), so the path through it ends there.
    let dirlink = std::fs::symlink_metadata(s.at("dirlink")).unwrap();
    assert!(!dirlink.is_symlink() && !dirlink.is_dir(), "{dirlink:?}");
    assert_eq!(
        errno(&read(&s.at("dirlink/secret")).unwrap_err()),
        libc::ENOTDIR
    );
    assert_eq!(read(&s.at("good")).unwrap(), b"good");
}

#[test]
fn fifo_is_refused_without_hanging() {
    let mut s = Scratch::new("fifo");
    let fifo = std::ffi::CString::new(s.backing.join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    s.register("pipe", b"whatever");
    s.add("good", b"good");
    let _m = s.mount();
    assert_eq!(errno(&read(&s.at("pipe")).unwrap_err()), EACCES);
    // The daemon still serves (a hang above would never reach here).
    assert_eq!(read(&s.at("good")).unwrap(), b"good");
}

/// How a mount under test serves reads.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reads {
    /// Private verified copies, read through FUSE passthrough.
    CopyPassthrough,
    /// Private verified copies, read in userspace.
    CopyUserspace,
    /// Chunk-verified reads of the backing file, whole file checked at open (the default), the
    /// tree from one pass (no signed chunk root: a python-tuf repository).
    Chunked,
    /// The same with a signed chunk root and its published outboard.
    ChunkedRoot,
    /// Chunk-verified, only the size checked at open.
    Lazy,
}

const ALL_READS: [Reads; 5] = [
    Reads::CopyPassthrough,
    Reads::CopyUserspace,
    Reads::Chunked,
    Reads::ChunkedRoot,
    Reads::Lazy,
];

impl Reads {
    fn add(self, s: &mut Scratch, path: &str, data: &[u8]) {
        match self {
            Reads::ChunkedRoot | Reads::Lazy => s.add_with_root(path, data),
            _ => s.add(path, data),
        }
    }

    fn options(self, s: &Scratch) -> trustfs::mount::MountOptions {
        let mut o = s.options();
        o.private_copy = matches!(self, Reads::CopyPassthrough | Reads::CopyUserspace);
        o.passthrough = self == Reads::CopyPassthrough;
        if self == Reads::Lazy {
            o.verify = trustfs::mount::chunked::VerifyMode::Lazy;
        }
        o
    }

    fn chunked(self) -> bool {
        matches!(self, Reads::Chunked | Reads::ChunkedRoot | Reads::Lazy)
    }
}

/// After verification, the backing file is changed; the already-open fd and a new open must never
/// yield a changed byte. With chunk-verified reads (and the page cache dropped, so reads reach
/// the daemon) the fd's read of the changed range must fail with EIO: the check cannot pass by
/// serving stale pages.
fn change_after_open_in(tag: &str, reads: Reads, change: &dyn Fn(&Scratch, &[u8])) {
    let mut s = Scratch::new(tag);
    let data = pattern(2 << 20, 7);
    reads.add(&mut s, "f", &data);
    let _m = s.mount_with(reads.options(&s));
    let mut f = File::open(s.at("f")).unwrap();
    let mut head = vec![0u8; 4096];
    f.read_exact(&mut head).unwrap();
    assert_eq!(head, data[..4096]);

    change(&s, &data);
    drop_pages(&f);

    // Through the fd opened before the change: the verified bytes (or an error), never new ones.
    let mut rest = Vec::new();
    match f.read_to_end(&mut rest) {
        // The file itself was changed: with chunk-verified reads its changed range cannot be
        // served at all.
        Ok(_) if reads.chunked() && tag != "rename" => {
            panic!("{reads:?}: a changed range was served")
        }
        Ok(_) => assert_eq!(rest, data[4096..], "changed bytes served via open fd"),
        // Replaced (an atomic deploy): the reader keeps reading the file it opened, in every
        // mode (the verified descriptor is kept while the file is open).
        Err(e) if tag == "rename" => panic!("{reads:?}: the replaced file's reader got {e}"),
        Err(e) => assert_eq!(errno(&e), libc::EIO),
    }
    // An unchanged chunk still reads, checked (nothing is remembered as bad); every change here
    // leaves bytes 1 MiB + 64 KiB .. 1 MiB + 128 KiB alone, except a truncation.
    let mut again = vec![0u8; 4096];
    let at = (1 << 20) + (64 << 10);
    match std::os::unix::fs::FileExt::read_exact_at(&f, &mut again, at as u64) {
        Ok(()) => assert_eq!(again, data[at..at + 4096]),
        Err(e) => assert_eq!((errno(&e), tag), (libc::EIO, "truncate")),
    }
    // Through a new open: refused, or the verified bytes.
    match read(&s.at("f")) {
        Ok(bytes) => assert_eq!(bytes, data, "changed bytes served via new open"),
        // Lazy: the size is checked at open (EACCES), the content when read (EIO).
        Err(e) if reads == Reads::Lazy => assert!([EACCES, libc::EIO].contains(&errno(&e))),
        Err(e) => assert_eq!(errno(&e), EACCES),
    }
}

/// [`change_after_open_in`] in every read mode.
fn change_after_open(tag: &str, change: &dyn Fn(&Scratch, &[u8])) {
    for r in ALL_READS {
        change_after_open_in(tag, r, change);
    }
}

fn modify_in_place(s: &Scratch, data: &[u8]) {
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(s.backing.join("f"))
        .unwrap();
    w.seek(SeekFrom::Start(8192)).unwrap();
    w.write_all(&vec![!data[8192]; 1 << 20]).unwrap();
}

fn truncate(s: &Scratch, _data: &[u8]) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(s.backing.join("f"))
        .unwrap()
        .set_len(5000)
        .unwrap();
}

fn rename_over(s: &Scratch, data: &[u8]) {
    let mut evil = data.to_vec();
    evil[100_000] ^= 0xff;
    std::fs::write(s.backing.join("f.new"), &evil).unwrap();
    std::fs::rename(s.backing.join("f.new"), s.backing.join("f")).unwrap();
}

/// Bytes appended and the last signed byte changed: the signed length is still what is served,
/// and the changed last chunk is refused.
fn grow(s: &Scratch, data: &[u8]) {
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(s.backing.join("f"))
        .unwrap();
    w.seek(SeekFrom::Start(data.len() as u64 - 1)).unwrap();
    w.write_all(&[!data[data.len() - 1]; 70_000]).unwrap();
}

#[test]
fn modify_in_place_after_open_never_serves_new_bytes() {
    change_after_open("inplace", &modify_in_place);
}

#[test]
fn truncate_after_open_never_serves_new_bytes() {
    change_after_open("truncate", &truncate);
}

#[test]
fn rename_over_after_open_never_serves_new_bytes() {
    change_after_open("rename", &rename_over);
}

#[test]
fn growth_after_open_never_serves_new_bytes() {
    change_after_open("grow", &grow);
}

/// A memory map of a verified file, the backing file changed under it, the pages dropped: a
/// touch of a changed page gets the verified bytes or SIGBUS (the read behind it failed), never
/// the new bytes. In a child process, which SIGBUS may end.
#[test]
fn mmap_after_change_never_sees_new_bytes() {
    for r in ALL_READS {
        let mut s = Scratch::new("mmap");
        let data = pattern(1 << 20, 5);
        r.add(&mut s, "f", &data);
        let _m = s.mount_with(r.options(&s));
        assert_eq!(read(&s.at("f")).unwrap(), data);
        let script = r#"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
m = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
m.madvise(mmap.MADV_DONTNEED)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
sys.stdout.buffer.write(m[500000:500016]); sys.stdout.flush()
"#;
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(s.at("f"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut out = child.stdout.take().unwrap();
        let mut ready = [0u8; 6];
        out.read_exact(&mut ready).unwrap();
        assert_eq!(&ready, b"ready\n");
        let mut evil = data.clone();
        evil[500_000..500_016].fill(0xee);
        std::fs::write(s.backing.join("f"), &evil).unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut got = Vec::new();
        out.read_to_end(&mut got).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        if status.success() {
            assert!(!r.chunked(), "{r:?}: a changed page was mapped");
            assert_eq!(got, data[500_000..500_016], "{r:?}: new bytes through mmap");
        } else {
            assert!(r.chunked(), "{r:?}: {status:?}");
            assert_eq!(status.signal(), Some(libc::SIGBUS), "{r:?}");
            assert!(got.is_empty(), "{r:?}: {got:?}");
        }
    }
}

#[test]
fn reopen_of_unchanged_file_does_not_rehash_but_changed_file_is_rechecked() {
    let mut s = Scratch::new("rehash");
    let data = pattern(100_000, 3);
    s.add("f", &data);
    let m = s.mount();
    for _ in 0..3 {
        assert_eq!(read(&s.at("f")).unwrap(), data);
    }
    assert_eq!(m.handle().hash_passes(), 1);
    // Rewrite with identical bytes: the file changed (new times), so it is checked again, passes.
    std::fs::write(s.backing.join("f"), &data).unwrap();
    assert_eq!(read(&s.at("f")).unwrap(), data);
    assert_eq!(m.handle().hash_passes(), 2);
    // Now alter it: checked again, refused.
    let mut bad = data.clone();
    bad[0] ^= 1;
    std::fs::write(s.backing.join("f"), &bad).unwrap();
    assert_eq!(errno(&read(&s.at("f")).unwrap_err()), EACCES);
    assert_eq!(m.handle().hash_passes(), 3);
}

#[test]
fn parallel_readers_get_correct_bytes() {
    let mut s = Scratch::new("parallel");
    let big = pattern(64 << 20, 11);
    s.add("big.bin", &big);
    let small: Vec<Vec<u8>> = (0..64).map(|i| pattern(4096 + i * 37, i as u64)).collect();
    for (i, d) in small.iter().enumerate() {
        s.add(&format!("small/{i}"), d);
    }
    let _m = s.mount();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (s, big, small) = (&s, &big, &small);
            scope.spawn(move || {
                for round in 0..2 {
                    for i in 0..small.len() {
                        let i = (i + t * 7) % small.len();
                        assert_eq!(read(&s.at(&format!("small/{i}"))).unwrap(), small[i]);
                    }
                    let got = read(&s.at("big.bin")).unwrap();
                    assert!(got == *big, "thread {t} round {round}: big file differs");
                }
            });
        }
    });
}

#[test]
fn hide_unregistered_hides_listing_and_lookup() {
    let mut s = Scratch::new("hide");
    s.add("ok", b"ok");
    s.add("d/ok2", b"ok2");
    s.write("stray", b"x");
    s.write("d/stray", b"x");
    s.write("straydir/x", b"x");
    let _m = s.mount_hidden();
    let mut names: Vec<_> = std::fs::read_dir(&s.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["d", "ok"]);
    let names: Vec<_> = std::fs::read_dir(s.at("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ok2"]);
    for p in ["stray", "d/stray", "straydir", "straydir/x"] {
        assert_eq!(
            errno(&std::fs::metadata(s.at(p)).unwrap_err()),
            ENOENT,
            "{p}"
        );
    }
    assert_eq!(read(&s.at("d/ok2")).unwrap(), b"ok2");
}

#[test]
fn open_flags_that_write_are_erofs_and_nonblocking_read_works() {
    let mut s = Scratch::new("flags");
    s.add("f", b"data");
    let _m = s.mount();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(s.at("f"));
    assert!(f.is_ok());
    let r = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(s.at("f"));
    assert_eq!(errno(&r.unwrap_err()), EROFS);
}

#[test]
fn unmount_leaves_no_mount() {
    let mut s = Scratch::new("unmount");
    s.add("f", b"data");
    let mut m = s.mount();
    assert!(is_mounted(&s.mnt));
    // Busy: a file is open while unmounting; the mount is detached, the fd keeps working until
    // closed, and unmount() returns once it is.
    let f = File::open(s.at("f")).unwrap();
    let h = m.handle.take().unwrap();
    let t = std::thread::spawn(move || h.unmount());
    while is_mounted(&s.mnt) {
        std::thread::yield_now();
    }
    let mut buf = String::new();
    (&f).read_to_string(&mut buf).unwrap();
    assert_eq!(buf, "data");
    drop(f);
    t.join().unwrap().unwrap();
    assert!(!is_mounted(&s.mnt));
}

#[test]
fn lookups_of_missing_names_do_not_grow_the_inode_table() {
    let mut s = Scratch::new("missing-lookups");
    s.add("a.txt", b"hello\n");
    s.add("dir/b.txt", b"b\n");
    s.write("unregistered.txt", b"u\n");
    for hidden in [false, true] {
        let m = if hidden { s.mount_hidden() } else { s.mount() };
        let live = m.handle().live();
        // The existing entries once, so their inodes exist.
        assert_eq!(read(&s.at("a.txt")).unwrap(), b"hello\n");
        let _ = std::fs::metadata(s.at("dir/b.txt")).unwrap();
        let _ = std::fs::metadata(s.at("unregistered.txt"));
        let before = live.inode_count();
        // Any uid of an allow_other mount can do this, as often as it likes.
        for i in 0..20_000 {
            let name = format!("missing-{i}");
            let e = std::fs::metadata(s.at(&name)).unwrap_err();
            assert_eq!(errno(&e), ENOENT);
            let e = std::fs::metadata(s.at(&format!("dir/{name}"))).unwrap_err();
            assert_eq!(errno(&e), ENOENT);
        }
        if hidden {
            // Hidden unregistered entries are ENOENT as well and get no inode.
            for _ in 0..100 {
                let e = std::fs::metadata(s.at("unregistered.txt")).unwrap_err();
                assert_eq!(errno(&e), ENOENT);
            }
        }
        assert_eq!(live.inode_count(), before, "hidden: {hidden}");
        drop(m);
    }
}

/// A repository without signed chunk roots (as python-tuf makes them): the first open checks the
/// signed hashes and builds the tree in the same pass, and keeps the tree in the state dir
/// (about 0.05 % of the content); a later mount in lazy mode opens from it without reading the
/// content. A damaged saved tree is not used.
#[test]
fn without_chunk_roots_one_pass_checks_the_hashes_and_the_tree_is_kept() {
    let mut s = Scratch::new("onepass");
    let data = pattern(3 << 20, 9);
    s.add("f", &data);
    let trees = s.state.join("trees");
    {
        let m = s.mount();
        assert_eq!(read(&s.at("f")).unwrap(), data);
        assert_eq!(m.handle().hash_passes(), 1);
        assert_eq!(read(&s.at("f")).unwrap(), data);
        assert_eq!(
            m.handle().hash_passes(),
            1,
            "a re-open of an unchanged file"
        );
    }
    let saved: Vec<_> = std::fs::read_dir(&trees).unwrap().flatten().collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let len = saved[0].metadata().unwrap().len();
    assert_eq!(len, 15 + 32 + 48 * 32, "header, root, 48 leaves");
    let mode = std::os::unix::fs::PermissionsExt::mode(&saved[0].metadata().unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "private");

    let lazy = |s: &Scratch| {
        let mut o = s.options();
        o.verify = trustfs::mount::chunked::VerifyMode::Lazy;
        s.mount_with(o)
    };
    {
        let m = lazy(&s);
        assert_eq!(read(&s.at("f")).unwrap(), data);
        assert_eq!(m.handle().hash_passes(), 0, "the saved tree was used");
    }
    // Damaged: not used; the pass runs again and the file is still served.
    let path = saved[0].path();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    {
        let m = lazy(&s);
        assert_eq!(read(&s.at("f")).unwrap(), data);
        assert_eq!(m.handle().hash_passes(), 1);
    }
    // The altered content of a target without a root: refused at open in both modes (lazy has no
    // tree to check reads against until a pass over signed hashes made one).
    let mut bad = data.clone();
    bad[2_000_000] ^= 1;
    std::fs::remove_dir_all(&trees).unwrap();
    s.write("f", &bad);
    for verify in [
        trustfs::mount::chunked::VerifyMode::Open,
        trustfs::mount::chunked::VerifyMode::Lazy,
    ] {
        let mut o = s.options();
        o.verify = verify;
        let _m = s.mount_with(o);
        assert_eq!(errno(&read(&s.at("f")).unwrap_err()), EACCES, "{verify:?}");
    }
}

/// Opens in lazy mode with a signed root read nothing of the content: a huge file opens at once.
#[test]
fn lazy_opens_read_nothing_but_the_outboard() {
    let mut s = Scratch::new("lazyopen");
    let data = pattern(8 << 20, 2);
    s.add_with_root("f", &data);
    let mut o = s.options();
    o.verify = trustfs::mount::chunked::VerifyMode::Lazy;
    let m = s.mount_with(o);
    let f = File::open(s.at("f")).unwrap();
    assert_eq!(m.handle().hash_passes(), 0);
    let mut buf = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 5 << 20).unwrap();
    assert_eq!(buf, data[5 << 20..(5 << 20) + 4096]);
    assert_eq!(m.handle().hash_passes(), 0);
    let live = m.handle().live();
    let served = live
        .counters()
        .bytes_read
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(served >= 4096, "{served}");
}

/// The source files under `dir` (recursively), each as (path relative to the crate, text).
fn sources(dir: &std::path::Path) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Every byte of a read reply comes from a `VerifiedBytes`: the whole filesystem (`src/mount`, every
/// file however it is split) has one call that puts data into a `ReplyData`, and it takes that
/// type; only `src/mount/verified.rs` makes one.
#[test]
fn the_read_reply_takes_only_verified_bytes() {
    let fs = sources(std::path::Path::new("src/mount"));
    assert!(
        fs.len() > 10,
        "{:?}",
        fs.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let calls: Vec<String> = fs
        .iter()
        .flat_map(|(_, src)| src.lines().filter(|l| l.contains(".data(")))
        .map(|l| l.trim().to_owned())
        .collect();
    assert_eq!(
        calls,
        ["reply.data(data);", "reply.data(value);"],
        "{calls:?}"
    );
    let all: String = fs.iter().map(|(_, s)| s.as_str()).collect();
    assert!(all.contains(
        "fn reply_verified(reply: ReplyData, counters: &Counters, bytes: &VerifiedBytes) {\n    let data = bytes.as_slice();"
    ));
    assert!(all.contains("fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {"));
    let makers: Vec<(&str, usize)> = sources(std::path::Path::new("src"))
        .iter()
        .map(|(path, src)| {
            let n = src
                .lines()
                .filter(|l| l.contains("VerifiedBytes {"))
                .filter(|l| !["struct ", "impl ", "fn "].iter().any(|k| l.contains(k)))
                .count();
            (path.as_str(), n)
        })
        .filter(|(_, n)| *n > 0)
        .map(|(p, n)| {
            (
                if p == "src/mount/verified.rs" {
                    "src/mount/verified.rs"
                } else {
                    "elsewhere"
                },
                n,
            )
        })
        .collect();
    // `empty`, `check_block` (of `verify_whole`), `check_buffer` (which `read_chunks` uses),
    // `read_stored`, `CheckedChunks::serve` (bytes a lazy fetch checked with `check`); no other
    // module can make one (the fields are private).
    assert_eq!(
        makers,
        [("src/mount/verified.rs", 5)],
        "a new way to make VerifiedBytes needs review"
    );
}

/// `--verify lazy-above=SIZE`: smaller files are checked whole at open (an altered one is
/// `EACCES`), larger ones only by size (opens; the altered chunk is `EIO` when read).
#[test]
fn lazy_above_a_size_checks_small_files_whole_and_large_ones_when_read() {
    let mut s = Scratch::new("lazyabove");
    let small = pattern(100_000, 1);
    let big = pattern(3 << 20, 2);
    s.add_with_root("small", &small);
    s.add_with_root("big", &big);
    let mut bad_small = small.clone();
    bad_small[50_000] ^= 1;
    let mut bad_big = big.clone();
    bad_big[2 << 20] ^= 1;
    s.write("small", &bad_small);
    s.write("big", &bad_big);
    let mut o = s.options();
    o.verify = trustfs::mount::chunked::VerifyMode::LazyAbove(1 << 20);
    let m = s.mount_with(o);
    assert_eq!(errno(&File::open(s.at("small")).unwrap_err()), EACCES);
    let f = File::open(s.at("big")).unwrap();
    let mut buf = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 0).unwrap();
    assert_eq!(buf, big[..4096]);
    let e = std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 2 << 20).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    // One denied open, and at least one denied read (the kernel may retry a failed read).
    assert!(m.handle().denied() >= 2, "{}", m.handle().denied());
}

/// A metadata switch that changes only a target's chunk root (same length and hashes) gives the
/// path a new inode: the old one's cached pages were verified against the old root and must not
/// mix with reads checked against the new one.
#[test]
fn a_switch_of_the_chunk_root_alone_gives_a_new_inode() {
    use std::os::unix::fs::MetadataExt;
    let mut s = Scratch::new("rootswitch");
    let c1 = pattern(1 << 20, 1);
    s.add_with_root("f", &c1);
    let m = s.mount();
    assert_eq!(read(&s.at("f")).unwrap(), c1);
    let before = std::fs::metadata(s.at("f")).unwrap().ino();
    let mut index = trustfs::IndexBuilder::default();
    let mut info = info_for(&c1);
    info.chunk_root = Some(trustfs::chunks::tree_of(&pattern(1 << 20, 2)).root);
    index.insert(trustfs::TargetPath::parse("f").unwrap(), info);
    let summary = trustfs::trust::TrustSummary {
        targets_version: 2,
        expires: "2099-01-01T00:00:00Z".into(),
        expires_role: "timestamp".into(),
        ..Default::default()
    };
    let report = m.handle().live().switch(index.build(), summary);
    assert_eq!(report.changed, ["f"]);
    let after = std::fs::metadata(s.at("f")).unwrap().ino();
    assert_ne!(
        before, after,
        "same inode for content checked against another root"
    );
    // The root does not match the content (nor its hashes): refused, never served.
    assert_eq!(errno(&read(&s.at("f")).unwrap_err()), EACCES);
}

/// A target with a signed root whose outboard is missing: the tree is computed once, saved, and
/// at the next mount loaded (checked against the root) instead of computed again.
#[test]
fn a_rooted_target_without_its_outboard_is_computed_once_and_its_tree_kept() {
    let mut s = Scratch::new("rootnoob");
    let data = pattern(2 << 20, 4);
    s.add_with_root("f", &data);
    std::fs::remove_dir_all(s.root.join("chunks")).unwrap();
    let lazy = |s: &Scratch| {
        let mut o = s.options();
        o.verify = trustfs::mount::chunked::VerifyMode::Lazy;
        s.mount_with(o)
    };
    {
        let m = lazy(&s);
        assert_eq!(read(&s.at("f")).unwrap(), data);
        assert_eq!(m.handle().hash_passes(), 1);
    }
    {
        let m = lazy(&s);
        assert_eq!(read(&s.at("f")).unwrap(), data);
        assert_eq!(m.handle().hash_passes(), 0, "the saved tree was used");
    }
    // A saved tree that does not match the signed root is not used, whatever the state dir says.
    for e in std::fs::read_dir(s.state.join("trees")).unwrap().flatten() {
        let mut b = std::fs::read(e.path()).unwrap();
        let n = b.len();
        b[n - 1] ^= 1;
        // Re-seal the damaged leaves with a matching stored root, as a forger would.
        let leaves = b[15 + 32..].to_vec();
        let forged = trustfs::chunks::ChunkTree::from_leaves(
            data.len() as u64,
            leaves.chunks(32).map(|c| c.try_into().unwrap()).collect(),
        );
        b[15..15 + 32].copy_from_slice(&forged.root);
        std::fs::write(e.path(), &b).unwrap();
    }
    let m = lazy(&s);
    assert_eq!(read(&s.at("f")).unwrap(), data);
    assert_eq!(
        m.handle().hash_passes(),
        1,
        "a forged tree is computed again"
    );
}

/// `--private-copy --copy-cache-max`: verified copies of closed files are evicted past the bound
/// (least recently used first), the copy of a file held open never is, and an evicted file is
/// copied and verified again when it is opened next.
#[test]
fn private_copies_are_bounded_by_copy_cache_max_and_open_files_are_kept() {
    let mut s = Scratch::new("copybound");
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("f{i}.bin"), pattern(1 << 20, 60 + i)))
        .collect();
    for (name, data) in &files {
        s.add(name, data);
    }
    let mut o = s.options();
    o.private_copy = true;
    o.copy_cache_max = 2 << 20;
    let objects = o.state_dir.join("objects");
    let _m = s.mount_with(o);
    let copies = || -> Vec<Vec<u8>> {
        std::fs::read_dir(&objects)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter(|b| b.len() == 1 << 20)
            .collect()
    };
    let held = File::open(s.at("f0.bin")).unwrap();
    for (name, data) in &files[1..] {
        assert!(read(&s.at(name)).unwrap() == *data);
        // The bound for closed copies, plus the one held open.
        assert!(copies().len() <= 3, "{} copies kept", copies().len());
    }
    assert!(
        copies().iter().any(|c| *c == files[0].1),
        "the copy of the open file was evicted"
    );
    drop(held);
    // Evicted ones are copied again when opened.
    for (name, data) in &files {
        assert!(read(&s.at(name)).unwrap() == *data);
        assert!(copies().len() <= 3, "{} copies kept", copies().len());
    }
}
