//! Live metadata updates (`trustfs mount --refresh-interval`): publishing with `trustfs repo add`
//! while mounted, over a local metadata directory and over HTTP (nginx). Named after what each
//! test stages. Needs root, /dev/fuse, /usr/sbin/nginx; fails, never skips. No test passes or
//! fails on wall-clock time: every wait is a bounded wait for a condition.

use crate::harness::cli;
use crate::harness::mount as common;
use crate::harness::nginx;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cli::{errno_of, wait_for, World};
use common::pattern;
use nginx::Nginx;

/// The whole content of an open file, read at offset 0 through its fd.
fn read_fd(f: &File, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len + 16];
    let mut filled = 0;
    loop {
        let n = f.read_at(&mut buf[filled..], filled as u64).unwrap();
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    buf
}

fn reads(path: &Path, want: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|d| d == want)
}

/// The names in directory `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Publish into a copy of the repository (so the daemon never sees a half-done change), let
/// `tamper` change the copy's metadata, then move the copy's metadata in, `timestamp.json` last
/// (each file by rename, as a publisher's sync would).
fn publish_staged(w: &World, tamper: impl FnOnce(&Path)) {
    let staging = w.dir.join("staging");
    let _ = std::fs::remove_dir_all(&staging);
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&w.repo)
        .arg(&staging)
        .status()
        .unwrap();
    assert!(st.success());
    w.publish_to(&staging);
    let smeta = staging.join("metadata");
    tamper(&smeta);
    install_metadata(&smeta, &w.metadata());
}

/// Copy every metadata file of `from` into `to` by rename, `timestamp.json` last.
fn install_metadata(from: &Path, to: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(from)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "timestamp.json")
        .collect();
    names.sort();
    names.push("timestamp.json".into());
    for n in names {
        let tmp = to.join(format!(".{n}.tmp"));
        std::fs::copy(from.join(&n), &tmp).unwrap();
        std::fs::rename(&tmp, to.join(&n)).unwrap();
    }
}

/// Flip the first character of the first signature of `file`.
fn corrupt_signature(file: &Path) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let sig = v["signatures"][0]["sig"].as_str().unwrap().to_owned();
    let first = if sig.starts_with('0') { "1" } else { "0" };
    v["signatures"][0]["sig"] = serde_json::Value::String(format!("{first}{}", &sig[1..]));
    std::fs::write(file, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// Added, removed and changed targets, small (userspace reads, kernel page cache kept across
/// opens) and large (passthrough), in one publish. An fd opened before keeps reading the bytes
/// verified for it (`old_fds_keep_bytes`; private copies and remote mounts) or, chunk-verified
/// reads of a backing file that changed under it, gets EIO: never the new bytes.
fn check_publish_while_mounted(
    w: &World,
    d: &cli::Daemon,
    old_fds_keep_bytes: bool,
    republish: impl FnOnce(),
) {
    // Listed twice: the second listing comes from the kernel's cache of the first.
    let before = ["big.bin", "change.txt", "gone.txt", "keep.txt"];
    assert_eq!(names(&w.mnt), before);
    assert_eq!(names(&w.mnt), before);
    let big_old = pattern(600_000, 1);
    let big_new = pattern(600_000, 2);
    assert!(reads(&w.at("keep.txt"), b"kept"));
    assert!(reads(&w.at("gone.txt"), b"soon removed"));
    assert!(reads(&w.at("change.txt"), b"old content"));
    assert!(reads(&w.at("big.bin"), &big_old));
    assert_eq!(errno_of(std::fs::read(w.at("new.txt"))), libc::ENOENT);
    let small_fd = File::open(w.at("change.txt")).unwrap();
    let big_fd = File::open(w.at("big.bin")).unwrap();
    assert_eq!(read_fd(&small_fd, 11), b"old content");

    w.write("new.txt", b"appeared");
    w.remove("gone.txt");
    w.write("change.txt", b"new content, longer");
    w.write("big.bin", &big_new);
    republish();

    let log = || d.log();
    wait_for("the new file to appear", log, || {
        reads(&w.at("new.txt"), b"appeared")
    });
    wait_for("the removed file to disappear", log, || {
        std::fs::metadata(w.at("gone.txt"))
            .err()
            .and_then(|e| e.raw_os_error())
            == Some(libc::ENOENT)
    });
    // The kernel's cached listing was made under the old metadata: it is not used any more.
    let after = ["big.bin", "change.txt", "keep.txt", "new.txt"];
    assert_eq!(names(&w.mnt), after);
    assert_eq!(names(&w.mnt), after);
    assert!(reads(&w.at("change.txt"), b"new content, longer"));
    assert_eq!(
        std::fs::metadata(w.at("change.txt")).unwrap().len(),
        19,
        "the new signed length"
    );
    assert!(reads(&w.at("big.bin"), &big_new));
    assert!(reads(&w.at("keep.txt"), b"kept"));
    // Opened before the switch: still the content verified at that open, or EIO.
    if old_fds_keep_bytes {
        assert_eq!(read_fd(&small_fd, 19), b"old content");
        assert_eq!(read_fd(&big_fd, big_old.len()), big_old);
    } else {
        for (fd, old) in [(&small_fd, &b"old content"[..]), (&big_fd, &big_old[..])] {
            let mut buf = vec![0u8; old.len() + 16];
            // Rewritten in place: the old content is gone, so EIO (never the new bytes).
            match fd.read_at(&mut buf, 0) {
                Ok(n) => assert_eq!(&buf[..n], old, "new bytes through an old fd"),
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO)),
            }
        }
    }
    drop(small_fd);
    drop(big_fd);
    // A fresh open after the old handles are gone: the new content, also from the page cache.
    assert!(reads(&w.at("change.txt"), b"new content, longer"));
    // Logged once the switch has sent its invalidations (just after new opens see it).
    wait_for("the switch to be logged", log, || {
        d.log().contains("metadata updated")
    });
}

fn initial_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("keep.txt", b"kept".to_vec()),
        ("gone.txt", b"soon removed".to_vec()),
        ("change.txt", b"old content".to_vec()),
        ("big.bin", pattern(600_000, 1)),
    ]
}

fn world(tag: &str, expires: &[&str]) -> World {
    World::new_owned(tag, &initial_files(), expires)
}

/// Wait (bounded) until opening `keep.txt` is refused (`EACCES`): the metadata expired.
fn wait_until_refused_after_expiry(w: &World, d: &cli::Daemon) {
    wait_for(
        "opens to be refused after expiry",
        || d.log(),
        || {
            std::fs::read(w.at("keep.txt"))
                .err()
                .and_then(|e| e.raw_os_error())
                == Some(libc::EACCES)
        },
    );
}

/// The local mount with a 1 s refresh interval and the world's audit log, plus `extra`.
fn mount_refreshing(w: &World, extra: &[&str]) -> cli::Daemon {
    let mut args = extra.to_vec();
    args.extend([
        "--refresh-interval",
        "1s",
        "--audit-log",
        w.audit.to_str().unwrap(),
    ]);
    w.mount_local(&args)
}

#[test]
fn local_publish_while_mounted_adds_removes_and_changes_files_and_open_fds_keep_their_bytes() {
    let w = world("local", &[]);
    // Open fds keep their bytes across changes of the backing file only with private copies
    // (chunk-verified reads answer EIO then: `…_in_chunk_mode_old_fds_never_get_new_bytes`).
    let d = mount_refreshing(&w, &["--private-copy"]);
    check_publish_while_mounted(&w, &d, true, || w.publish());
    let log = d.stop();
    assert!(log.contains("3 added") || log.contains("1 added"), "{log}");
    let audit = w.audit_lines();
    let changes: Vec<_> = audit.iter().filter(|l| l["event"] == "metadata").collect();
    assert_eq!(changes.len(), 2, "start and one switch: {audit:?}");
    assert!(changes[0]["previous"].is_null());
    assert_eq!(
        changes[1]["previous"]["targets"].as_u64().unwrap() + 1,
        changes[1]["metadata"]["targets"].as_u64().unwrap()
    );
}

#[test]
fn local_publish_while_mounted_in_chunk_mode_old_fds_never_get_new_bytes() {
    let w = world("localchunks", &[]);
    let d = w.mount_local(&["--refresh-interval", "1s"]);
    check_publish_while_mounted(&w, &d, false, || w.publish());
    let log = d.stop();
    assert!(log.contains("published outboard"), "{log}");
}

/// A local mount with unregistered files hidden and refreshed every second: `sub/a.txt` signed,
/// `sub/later.txt` only in the backing directory (hidden until a publish registers it).
fn hidden_later_world(tag: &str) -> (World, cli::Daemon, PathBuf) {
    let w = world(tag, &[]);
    std::fs::create_dir_all(w.content.join("sub")).unwrap();
    w.write("sub/a.txt", b"a");
    w.publish();
    w.write("sub/later.txt", b"later");
    let d = w.mount_local(&["--hide-unregistered", "--refresh-interval", "1s"]);
    let sub = w.at("sub");
    (w, d, sub)
}

/// With unregistered files hidden, a listing changes when the metadata does even though the
/// backing directory does not: the kernel's cached listing must not outlive the switch.
#[test]
fn hidden_file_that_becomes_registered_appears_in_a_cached_listing() {
    let (w, d, sub) = hidden_later_world("hidden");
    for _ in 0..3 {
        assert_eq!(names(&sub), ["a.txt"]);
    }
    // Registered now; the backing directory is as it was.
    let st = std::fs::metadata(w.content.join("sub")).unwrap();
    w.publish();
    let st2 = std::fs::metadata(w.content.join("sub")).unwrap();
    assert_eq!(st.modified().unwrap(), st2.modified().unwrap());
    wait_for(
        "the listing to show the newly registered file",
        || d.log(),
        || names(&sub) == ["a.txt", "later.txt"],
    );
    assert!(reads(&sub.join("later.txt"), b"later"));
    // And it stays (the cached listing now is the new one).
    assert_eq!(names(&sub), ["a.txt", "later.txt"]);
    d.stop();
}

/// A local mount lists unregistered files (opens are refused): one added to or removed from the
/// backing directory shows in the next listing, though the kernel caches listings.
#[test]
fn backing_directory_changes_show_in_the_next_listing() {
    let w = world("backing-change", &[]);
    let d = w.mount_local(&[]);
    let before = ["big.bin", "change.txt", "gone.txt", "keep.txt"];
    assert_eq!(names(&w.mnt), before);
    assert_eq!(names(&w.mnt), before);
    w.write("stray.txt", b"not signed");
    assert_eq!(
        names(&w.mnt),
        ["big.bin", "change.txt", "gone.txt", "keep.txt", "stray.txt"]
    );
    assert_eq!(errno_of(std::fs::read(w.at("stray.txt"))), libc::EACCES);
    w.remove("gone.txt");
    assert_eq!(
        names(&w.mnt),
        ["big.bin", "change.txt", "keep.txt", "stray.txt"]
    );
    d.stop();
}

/// A directory stream (`opendir(3)`), for reading a handle again from the start.
struct RawDir(*mut libc::DIR);

impl RawDir {
    fn open(path: &Path) -> RawDir {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        let dir = unsafe { libc::opendir(c.as_ptr()) };
        assert!(!dir.is_null(), "opendir {}", path.display());
        RawDir(dir)
    }

    /// Every name from the start (rewinddir), sorted, without `.` and `..`.
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        // SAFETY: `self.0` is an open DIR* used by this thread only; each dirent is copied out
        // before the next readdir.
        unsafe {
            libc::rewinddir(self.0);
            loop {
                let e = libc::readdir(self.0);
                if e.is_null() {
                    break;
                }
                let name = std::ffi::CStr::from_ptr((*e).d_name.as_ptr());
                let name = name.to_string_lossy().into_owned();
                if name != "." && name != ".." {
                    out.push(name);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for RawDir {
    fn drop(&mut self) {
        // SAFETY: closed exactly once.
        unsafe { libc::closedir(self.0) };
    }
}

/// A handle opened before a switch and read again from the start after it answers with its own
/// (old) listing; that must not become the listing the kernel keeps for later opens.
#[test]
fn a_handle_from_before_a_switch_does_not_leave_its_listing_for_later_opens() {
    let (w, d, sub) = hidden_later_world("old-handle");
    let old = RawDir::open(&sub);
    assert_eq!(old.names(), ["a.txt"]);
    w.publish();
    wait_for(
        "the switch",
        || d.log(),
        || d.log().contains("metadata updated"),
    );
    // The first open after the switch makes a new listing and has the kernel drop its cached
    // one; before it is read, the old handle reads from the start, through the daemon, which
    // answers with the old listing (what that handle opened with). What the fresh handle then
    // reads is up to the kernel; later opens must list anew.
    let fresh = RawDir::open(&sub);
    let _ = old.names();
    let _ = fresh.names();
    drop((old, fresh));
    for _ in 0..3 {
        assert_eq!(names(&sub), ["a.txt", "later.txt"]);
    }
    d.stop();
}

#[test]
fn remote_publish_while_mounted_adds_removes_and_changes_files_and_open_fds_keep_their_bytes() {
    let w = world("remote", &[]);
    let mut server = Nginx::start(&w.repo);
    let args: Vec<String> = [
        "--metadata-url",
        &server.url("metadata"),
        "--targets-url",
        &server.url("targets"),
        "--cache",
        w.dir.join("cache").to_str().unwrap(),
        "--refresh-interval",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let d = w.mount_with(&args).unwrap();
    check_publish_while_mounted(&w, &d, true, || w.publish());
    // The server goes away: refreshes fail, the metadata in force and cached files stay.
    server.stop();
    wait_for(
        "a failed refresh (server down)",
        || d.log(),
        || d.log().contains("metadata refresh FAILED"),
    );
    assert!(reads(&w.at("new.txt"), b"appeared"));
    assert!(reads(&w.at("change.txt"), b"new content, longer"));
    assert_eq!(errno_of(std::fs::read(w.at("gone.txt"))), libc::ENOENT);
    d.stop();
}

#[test]
fn bad_signature_and_rolled_back_timestamp_keep_the_last_good_metadata() {
    let w = world("bad", &[]);
    let d = mount_refreshing(&w, &[]);
    let log = || d.log();
    let old_timestamp = std::fs::read(w.metadata().join("timestamp.json")).unwrap();

    // 1. A new timestamp whose signature does not verify: refused, the old state stays.
    w.write("extra.txt", b"published with a bad signature");
    publish_staged(&w, |m| corrupt_signature(&m.join("timestamp.json")));
    wait_for("a failed refresh (bad signature)", log, || {
        d.log().contains("metadata refresh FAILED")
    });
    assert_eq!(
        errno_of(std::fs::read(w.at("extra.txt"))),
        libc::EACCES,
        "not registered by trusted metadata"
    );
    assert!(reads(&w.at("keep.txt"), b"kept"));
    assert!(reads(&w.at("change.txt"), b"old content"));

    // 2. A good publish (on top of the last good metadata) is switched in.
    std::fs::write(w.dir.join("good-ts"), &old_timestamp).unwrap();
    std::fs::rename(w.dir.join("good-ts"), w.metadata().join("timestamp.json")).unwrap();
    publish_staged(&w, |_| {});
    wait_for("the good update", log, || {
        reads(&w.at("extra.txt"), b"published with a bad signature")
    });

    // 3. The old timestamp again (a rollback / freeze attack): refused, the new state stays.
    let failures_before = d.log().matches("metadata refresh FAILED").count();
    let ts = w.metadata().join("timestamp.json");
    std::fs::write(w.dir.join("old-ts"), &old_timestamp).unwrap();
    std::fs::rename(w.dir.join("old-ts"), &ts).unwrap();
    wait_for("a failed refresh (rollback)", log, || {
        d.log().matches("metadata refresh FAILED").count() > failures_before
    });
    assert!(reads(&w.at("extra.txt"), b"published with a bad signature"));
    assert!(reads(&w.at("keep.txt"), b"kept"));
    let log = d.stop();
    let failed: Vec<_> = w
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "refresh_failed")
        .collect();
    assert!(failed.len() >= 2, "{failed:?}\n{log}");
    assert!(failed.iter().all(|l| l["reason"].as_str().is_some()));
}

#[test]
fn expired_metadata_fails_closed_naming_the_role_when_no_refresh_succeeds() {
    // The repository is never re-signed: every refresh after expiry fails.
    let w = world("expiry", &["timestamp=12s"]);
    let d = mount_refreshing(&w, &[]);
    // Possibly already expired on a slow machine; the rule below holds either way.
    let _ = std::fs::read(w.at("keep.txt"));
    wait_until_refused_after_expiry(&w, &d);
    assert_eq!(errno_of(std::fs::read(w.at("big.bin"))), libc::EACCES);
    wait_for(
        "the expiry to be announced",
        || d.log(),
        || d.log().contains("every open is refused (EACCES)"),
    );
    let log = d.stop();
    assert!(
        log.contains("DENY open \"keep.txt\": the trusted metadata expired at")
            && log.contains("(the timestamp role)"),
        "{log}"
    );
    let expired: Vec<_> = w
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "deny" && l["reason"] == "expired")
        .collect();
    assert!(!expired.is_empty());
}

#[test]
fn expired_metadata_recovers_when_fresh_metadata_is_published() {
    // Short-lived timestamps: once expired, opens fail closed; a re-signed timestamp brings the
    // mount back without a remount, and the expiry in force moves forward.
    let w = world("resign", &["timestamp=12s"]);
    let d = w.mount_local(&["--refresh-interval", "1s"]);
    let first = w.status_record().unwrap()["metadata"]["expires"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until_refused_after_expiry(&w, &d);
    w.write("later.txt", b"later");
    // Longer-lived this time, so the check below cannot race a second expiry.
    w.publish_expiring(&["timestamp=1h"]);
    wait_for(
        "the re-signed metadata",
        || d.log(),
        || reads(&w.at("later.txt"), b"later"),
    );
    assert!(reads(&w.at("keep.txt"), b"kept"));
    wait_for(
        "the status record to show the new expiry",
        || d.log(),
        || {
            w.status_record().is_some_and(|r| {
                r["metadata"]["expires"].as_str() != Some(first.as_str()) && r["verified"] == true
            })
        },
    );
    d.stop();
}

/// The switch itself, through the library: right after `LiveMount::switch` returns, the kernel
/// shows the new metadata (entry and attribute TTLs are 3600 s, so this only holds because the
/// switch invalidated the cached entries, attributes and pages), in both read modes.
#[test]
fn switch_invalidates_the_kernels_cached_entries_attributes_and_pages_at_once() {
    use trustfs::trust::TrustSummary;
    for (passthrough, private_copy) in [(true, true), (false, true), (false, false)] {
        let mut s = common::Scratch::new("switch");
        s.add("same.txt", b"unchanged");
        s.add("small.txt", b"small v1");
        s.add("big.bin", &pattern(400_000, 7));
        s.add("dir/removed.txt", b"removed soon");
        let mut o = s.options();
        o.passthrough = passthrough;
        o.private_copy = private_copy;
        let m = s.mount_with(o);
        let live = m.handle().live();
        // Prime the kernel caches: entries, attributes, pages.
        for (p, len) in [
            ("small.txt", 8),
            ("big.bin", 400_000),
            ("dir/removed.txt", 12),
        ] {
            assert_eq!(std::fs::metadata(s.at(p)).unwrap().len(), len);
            assert_eq!(std::fs::read(s.at(p)).unwrap().len(), len as usize);
        }
        assert_eq!(
            std::fs::metadata(s.at("new.txt"))
                .err()
                .unwrap()
                .raw_os_error(),
            Some(libc::ENOENT)
        );
        let old_small = File::open(s.at("small.txt")).unwrap();
        let old_ino = std::os::unix::fs::MetadataExt::ino(&old_small.metadata().unwrap());

        // New metadata: small.txt and big.bin changed, dir/removed.txt removed (its backing
        // file too), new.txt added.
        s.index = trustfs::IndexBuilder::default();
        s.add("same.txt", b"unchanged");
        s.add("small.txt", b"small v2, longer");
        s.add("big.bin", &pattern(400_001, 8));
        s.add("new.txt", b"new");
        std::fs::remove_file(s.backing.join("dir/removed.txt")).unwrap();
        // A summary without a valid expiry would fail closed (every open EACCES); give it one.
        let summary = TrustSummary {
            targets_version: 3,
            expires: "2099-01-01T00:00:00Z".into(),
            expires_role: "timestamp".into(),
            ..Default::default()
        };
        let report = live.switch(s.index(), summary);
        assert_eq!(report.added, ["new.txt"]);
        assert_eq!(report.removed, ["dir/removed.txt"]);
        assert_eq!(report.changed, ["big.bin", "small.txt"]);
        assert!(report.invalidations > 0);
        assert_eq!(live.summary().unwrap().targets_version, 3);

        // At once, no waiting.
        assert_eq!(std::fs::metadata(s.at("small.txt")).unwrap().len(), 16);
        assert_eq!(
            std::fs::read(s.at("small.txt")).unwrap(),
            b"small v2, longer"
        );
        assert_eq!(std::fs::metadata(s.at("big.bin")).unwrap().len(), 400_001);
        assert_eq!(std::fs::read(s.at("big.bin")).unwrap(), pattern(400_001, 8));
        assert_eq!(std::fs::read(s.at("new.txt")).unwrap(), b"new");
        assert_eq!(std::fs::read(s.at("same.txt")).unwrap(), b"unchanged");
        assert_eq!(
            errno_of(std::fs::metadata(s.at("dir/removed.txt"))),
            libc::ENOENT
        );
        // A changed target is a new inode; the fd opened before reads its verified bytes.
        let new_ino =
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(s.at("small.txt")).unwrap());
        assert_ne!(old_ino, new_ino);
        if private_copy {
            assert_eq!(read_fd(&old_small, 8), b"small v1");
        } else {
            // Chunk-verified: the backing file has other bytes now; never those.
            let mut buf = [0u8; 64];
            let got = old_small.read_at(&mut buf, 0);
            assert_eq!(got.map_err(|e| e.raw_os_error()), Err(Some(libc::EIO)));
        }
        drop(old_small);
        assert_eq!(
            std::fs::read(s.at("small.txt")).unwrap(),
            b"small v2, longer"
        );
        drop(m);
    }
}

/// Metadata whose expiry cannot be read fails closed: every open is refused.
#[test]
fn switch_to_metadata_without_a_valid_expiry_fails_closed() {
    let mut s = common::Scratch::new("noexpiry");
    s.add("a.txt", b"a");
    let m = s.mount();
    let live = m.handle().live();
    assert_eq!(std::fs::read(s.at("a.txt")).unwrap(), b"a");
    let summary = trustfs::trust::TrustSummary {
        targets_version: 2,
        ..Default::default()
    };
    live.switch(s.index(), summary);
    let err = std::fs::read(s.at("a.txt")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
}
