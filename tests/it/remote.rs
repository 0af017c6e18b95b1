//! The remote mount (`trustfs mount --metadata-url … --targets-url … --cache …`) against a real
//! nginx on 127.0.0.1, on repositories made by `trustfs repo init` / `repo add`. Needs root,
//! /dev/fuse and /usr/sbin/nginx; fails, never skips, without them. Each test is named after the
//! threat or failure it stages. No test passes or fails on wall-clock time; waits are bounded
//! waits for a condition.

use crate::harness::cli::{errno_of, run_ok, wait_for, World, BIN};
use crate::harness::http;
use crate::harness::mount as common;
use crate::harness::nginx;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{is_mounted, lazy_umount, pattern};
use nginx::{free_port, Nginx};
use sha2::{Digest, Sha256};

fn sha256_of(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().to_vec());
        }
        h.update(&buf[..n]);
    }
}

#[test]
fn whole_tree_is_shown_from_metadata_before_any_fetch_and_reads_are_verified() {
    let big = pattern(700_000, 1);
    let w = World::new(
        "tree",
        &[
            ("a.txt", b"hello remote\n"),
            ("dir/sub/big.bin", &big),
            ("dir/c.txt", b"c"),
        ],
        &[],
    );
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    // The tree, sizes and modes come from the metadata; no target was requested yet.
    let mut names: Vec<String> = std::fs::read_dir(w.at("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["c.txt", "sub"]);
    let meta = std::fs::metadata(w.at("dir/sub/big.bin")).unwrap();
    assert_eq!(meta.len(), big.len() as u64);
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    let dmeta = std::fs::metadata(w.at("dir/sub")).unwrap();
    assert!(dmeta.is_dir());
    assert_eq!(dmeta.permissions().mode() & 0o777, 0o555);
    assert_eq!(server.gets(".big.bin"), 0);
    assert!(w.objects().is_empty());
    assert_eq!(
        errno_of(std::fs::read(w.at("nope"))),
        libc::ENOENT,
        "unlisted names do not exist"
    );

    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), b"hello remote\n");
    assert_eq!(std::fs::read(w.at("dir/sub/big.bin")).unwrap(), big);
    assert_eq!(server.gets(".big.bin"), 1);
    // Later opens come from the cache without a request.
    assert_eq!(std::fs::read(w.at("dir/sub/big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), b"hello remote\n");
    assert_eq!(server.gets(".big.bin"), 1);
    assert_eq!(server.gets(".a.txt"), 1);
    // The cache: root-only directory, read-only objects, nothing temporary left.
    let cmode = std::fs::metadata(w.cache()).unwrap().permissions().mode() & 0o777;
    assert_eq!(cmode, 0o700);
    assert_eq!(w.objects().len(), 2);
    for (name, _) in w.objects() {
        let m = std::fs::metadata(w.cache().join(name)).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o400);
    }
    assert!(w.temps().is_empty());
    assert_eq!(
        errno_of(
            std::fs::OpenOptions::new()
                .write(true)
                .open(w.at("a.txt"))
                .map(|_| ())
        ),
        libc::EROFS
    );
    let log = d.stop();
    assert!(log.contains("fetched \"dir/sub/big.bin\""), "{log}");

    // Persistent across restarts: a new daemon serves the cached file without a request.
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("dir/sub/big.bin")).unwrap(), big);
    assert_eq!(server.gets(".big.bin"), 1);
    d.stop();
}

#[test]
fn tampered_target_on_the_server_is_refused_and_never_cached() {
    let data = pattern(400_000, 2);
    let w = World::new("tampered", &[("app/tool.bin", &data)], &[]);
    let mut evil = data.clone();
    evil[1000] ^= 0xff;
    std::fs::write(w.server_file("app/tool.bin", &data), &evil).unwrap();
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    for _ in 0..2 {
        assert_eq!(errno_of(std::fs::read(w.at("app/tool.bin"))), libc::EACCES);
    }
    assert!(w.objects().is_empty(), "{:?}", w.cache_entries());
    assert!(w.temps().is_empty(), "{:?}", w.cache_entries());
    // Not cached as a refusal either: each open asks again.
    assert_eq!(server.gets(".tool.bin"), 2);
    let log = d.stop();
    assert!(
        log.contains("DENY open \"app/tool.bin\"")
            && log.contains("chunk root (blake3, trustfs-chunks/1) mismatch"),
        "{log}"
    );
}

#[test]
fn server_sending_more_than_the_signed_length_is_cut_off_and_refused() {
    let data = pattern(100_000, 3);
    let w = World::new("endless", &[("f.bin", &data)], &[]);
    // nginx: the server's file is the signed content followed by 64 MiB more.
    let server_path = w.server_file("f.bin", &data);
    let mut longer = data.clone();
    longer.extend(std::iter::repeat_n(b'x', 64 << 20));
    std::fs::write(&server_path, &longer).unwrap();
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(errno_of(std::fs::read(w.at("f.bin"))), libc::EACCES);
    assert!(w.objects().is_empty() && w.temps().is_empty());
    let log = d.stop();
    assert!(log.contains("DENY open \"f.bin\""), "{log}");
    // Cut off: nginx logs the bytes it managed to send before the client hung up.
    wait_for("nginx to log the request", String::new, || {
        server.gets(".f.bin") == 1
    });
    let line = server
        .access_log()
        .into_iter()
        .find(|l| l.contains(".f.bin"))
        .unwrap();
    let sent: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(sent < longer.len() as u64, "whole body was sent: {line}");

    // A server with no Content-Length that never stops: read up to the signed length + 1, cut.
    let endless = http::HttpServer::serve(w.repo.clone());
    let name = w
        .server_file("f.bin", &data)
        .strip_prefix(&w.repo)
        .unwrap()
        .display()
        .to_string();
    endless.set(&name, http::Behaviour::Endless);
    let d = w
        .mount_remote(&endless.url("metadata"), &[endless.url("targets")], &[])
        .unwrap();
    assert_eq!(errno_of(std::fs::read(w.at("f.bin"))), libc::EACCES);
    assert!(w.objects().is_empty() && w.temps().is_empty());
    let log = d.stop();
    assert!(log.contains("content is longer"), "{log}");
}

#[test]
fn older_timestamp_from_the_server_is_refused_at_mount_and_state_is_unchanged() {
    let w = World::new("rollback", &[("a.txt", b"v1")], &[]);
    let old_timestamp = std::fs::read(w.repo.join("metadata/timestamp.json")).unwrap();
    std::fs::write(w.content.join("a.txt"), b"v2").unwrap();
    w.publish_expiring(&[]);
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), b"v2");
    d.stop();
    let before = w.state_files();
    assert!(before.contains_key("timestamp.json"), "{:?}", before.keys());
    std::fs::write(w.repo.join("metadata/timestamp.json"), &old_timestamp).unwrap();
    let (code, log) = w
        .mount_nginx(&server, &[])
        .err()
        .expect("mounted with an old timestamp");
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("refusing to mount"), "{log}");
    assert!(!is_mounted(&w.mnt));
    assert_eq!(w.state_files(), before, "state files changed");
}

#[test]
fn expired_metadata_from_the_server_is_refused_at_mount() {
    let w = World::new("expired", &[("a.txt", b"x")], &["timestamp=1s"]);
    let until = SystemTime::now() + Duration::from_secs(2);
    wait_for("the timestamp to expire", String::new, || {
        SystemTime::now() >= until
    });
    let server = Nginx::start(&w.repo);
    let (code, log) = w
        .mount_nginx(&server, &[])
        .err()
        .expect("mounted expired metadata");
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("expired"), "{log}");
    assert!(!is_mounted(&w.mnt));
}

#[test]
fn server_down_cached_files_readable_uncached_eio_and_back_without_remount() {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a.bin", pattern(500_000, 4)),
        ("b.bin", pattern(600_000, 5)),
        ("c.txt", b"small c".to_vec()),
    ];
    let w = World::new_owned("offline", &files, &[]);
    let mut server = Nginx::start(&w.repo);
    // No prefetch: c.txt must stay uncached for the offline start below.
    let d = w.mount_nginx(&server, &["--prefetch", "0"]).unwrap();
    assert_eq!(std::fs::read(w.at("a.bin")).unwrap(), files[0].1);
    server.stop();
    assert_eq!(std::fs::read(w.at("a.bin")).unwrap(), files[0].1);
    assert_eq!(errno_of(std::fs::read(w.at("b.bin"))), libc::EIO);
    server.start_again();
    assert_eq!(std::fs::read(w.at("b.bin")).unwrap(), files[1].1);
    let log = d.stop();
    assert!(
        log.contains("ERROR open \"b.bin\": no mirror could deliver it")
            && log.contains("network: EIO"),
        "{log}"
    );
    assert!(!log.contains("DENY"), "{log}");

    // Start with the repository unreachable: offline from the trusted state, same rules.
    server.stop();
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("a.bin")).unwrap(), files[0].1);
    assert_eq!(std::fs::read(w.at("b.bin")).unwrap(), files[1].1);
    assert_eq!(errno_of(std::fs::read(w.at("c.txt"))), libc::EIO);
    server.start_again();
    assert_eq!(std::fs::read(w.at("c.txt")).unwrap(), b"small c");
    let log = d.stop();
    assert!(log.contains("OFFLINE"), "{log}");
}

#[test]
fn broken_first_mirror_falls_over_to_the_next() {
    let data = pattern(300_000, 6);
    let w = World::new("mirrors", &[("m/f.bin", &data), ("g.txt", b"g")], &[]);
    let good = Nginx::start(&w.repo);
    // A copy of the repository whose target bytes are wrong.
    let bad_root = w.dir.join("bad-repo");
    run_ok(Command::new("cp").arg("-a").arg(&w.repo).arg(&bad_root));
    let bad_file = bad_root.join(
        w.server_file("m/f.bin", &data)
            .strip_prefix(&w.repo)
            .unwrap(),
    );
    let mut evil = data.clone();
    evil[0] ^= 1;
    std::fs::write(&bad_file, &evil).unwrap();
    let bad = Nginx::start(&bad_root);
    let dead = format!("http://127.0.0.1:{}/targets", free_port());

    // 1. Nothing listening on the first base.
    let d = w
        .mount_remote(
            &good.url("metadata"),
            &[dead.clone(), good.url("targets")],
            &[],
        )
        .unwrap();
    assert_eq!(std::fs::read(w.at("m/f.bin")).unwrap(), data);
    assert_eq!(std::fs::read(w.at("g.txt")).unwrap(), b"g");
    let log = d.stop();
    assert!(log.contains("trying the next mirror"), "{log}");
    std::fs::remove_dir_all(w.cache()).unwrap();

    // 2. The first base serves wrong bytes: refused, not cached, the next one is used.
    let d = w
        .mount_remote(
            &good.url("metadata"),
            &[bad.url("targets"), dead.clone(), good.url("targets")],
            &[],
        )
        .unwrap();
    assert_eq!(std::fs::read(w.at("m/f.bin")).unwrap(), data);
    assert_eq!(
        sha256_of(&w.at("m/f.bin")).unwrap(),
        Sha256::digest(&data).to_vec()
    );
    assert_eq!(bad.gets(".f.bin"), 1);
    let log = d.stop();
    assert!(log.contains("content refused"), "{log}");
    std::fs::remove_dir_all(w.cache()).unwrap();

    // 3. Only wrong bytes anywhere: EACCES (a verification failure, not EIO).
    let d = w
        .mount_remote(&good.url("metadata"), &[dead, bad.url("targets")], &[])
        .unwrap();
    assert_eq!(errno_of(std::fs::read(w.at("m/f.bin"))), libc::EACCES);
    assert!(w.objects().is_empty());
    d.stop();
}

#[test]
fn kill9_mid_download_leaves_no_partial_object_and_restart_reads_correctly() {
    let data = pattern(32 << 20, 7);
    let w = World::new("kill9", &[("big.bin", &data)], &[]);
    // 8 MB/s per connection: the download takes about 4 s, long enough to kill it midway.
    let server = Nginx::start_with(&w.repo, "location /targets/ { limit_rate 8m; }");
    let d = w.mount_nginx(&server, &[]).unwrap();
    let path = w.at("big.bin");
    let reader = std::thread::spawn(move || std::fs::read(path));
    wait_for("a partial download in the cache", String::new, || {
        w.temps().iter().any(|(_, size)| *size > 1 << 20)
    });
    let log = d.kill9();
    lazy_umount(&w.mnt);
    assert!(reader.join().unwrap().is_err(), "read survived the daemon");
    assert!(w.objects().is_empty(), "{:?} / {log}", w.cache_entries());
    assert_eq!(w.temps().len(), 1, "{:?}", w.cache_entries());

    let d = w.mount_nginx(&server, &[]).unwrap();
    assert!(
        w.temps().is_empty(),
        "stale temp kept: {:?}",
        w.cache_entries()
    );
    assert_eq!(std::fs::read(w.at("big.bin")).unwrap(), data);
    assert_eq!(w.objects().len(), 1);
    assert_eq!(w.objects()[0].1, data.len() as u64);
    let log = d.stop();
    assert!(log.contains("removed 1 partial download"), "{log}");
    assert!(
        log.contains("fetching \"big.bin\""),
        "no progress line: {log}"
    );
}

#[test]
fn after_a_system_crash_objects_stored_since_the_last_sync_are_fetched_again_not_trusted() {
    // Objects get their names at once and reach the disk in batched syncs; a power loss can
    // leave a name with zeros of the right length. Staged: the cache's sync record names another
    // boot, and an object stored after the recorded sync holds zeros.
    let data = pattern(300_000, 11);
    let w = World::new("reboot", &[("r.bin", &data)], &[]);
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("r.bin")).unwrap(), data);
    d.stop();
    let record = w.cache().join(".trustfs-synced");
    let text = std::fs::read_to_string(&record).unwrap();
    let synced: i64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(w.objects().len(), 1, "{text}");
    let object = w.cache().join(&w.objects()[0].0);
    std::fs::write(&object, vec![0u8; data.len()]).unwrap();
    std::fs::write(&record, format!("another-boot {}\n", synced - 1)).unwrap();

    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("r.bin")).unwrap(), data, "{}", d.log());
    let log = d.stop();
    assert!(
        log.contains("the system restarted since the cache was last synced; removed 1"),
        "{log}"
    );
    assert!(log.contains("fetched \"r.bin\""), "{log}");
    // The record names this boot again.
    let now = std::fs::read_to_string(&record).unwrap();
    assert!(!now.starts_with("another-boot"), "{now}");
}

#[test]
fn a_torn_or_missing_sync_record_vouches_for_no_object() {
    // The record itself can be lost in a crash (or come from an older version): then nothing
    // says which objects reached the disk, and none may be served without a new download.
    // Staged as above, with the record empty, zero-filled or gone. (Attack review of 89a5f8a:
    // each of these served 300,000 zero bytes.)
    for variant in ["empty", "zeros", "missing"] {
        let data = pattern(300_000, 11);
        let w = World::new(&format!("torn-{variant}"), &[("r.bin", &data)], &[]);
        let server = Nginx::start(&w.repo);
        let d = w.mount_nginx(&server, &[]).unwrap();
        assert_eq!(std::fs::read(w.at("r.bin")).unwrap(), data);
        d.stop();
        let record = w.cache().join(".trustfs-synced");
        let object = w.cache().join(&w.objects()[0].0);
        std::fs::write(&object, vec![0u8; data.len()]).unwrap();
        match variant {
            "empty" => std::fs::write(&record, b"").unwrap(),
            "zeros" => std::fs::write(&record, vec![0u8; 48]).unwrap(),
            _ => std::fs::remove_file(&record).unwrap(),
        }
        let d = w.mount_nginx(&server, &[]).unwrap();
        let got = std::fs::read(w.at("r.bin")).unwrap();
        assert!(
            got == data,
            "{variant}: the zero-filled object was served\n{}",
            d.log()
        );
        let log = d.stop();
        assert!(
            log.contains("the cache has no readable sync record; removed 1"),
            "{variant}: {log}"
        );
        assert!(log.contains("fetched \"r.bin\""), "{variant}: {log}");
        // A sound record again, flushed before it was renamed into place.
        let now = std::fs::read_to_string(&record).unwrap();
        assert_eq!(now.split_whitespace().count(), 2, "{variant}: {now:?}");
    }
}

#[test]
fn cache_size_bound_holds_under_a_larger_workload_and_open_files_stay() {
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("f{i:02}.bin"), pattern(1 << 20, 100 + i)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let w = World::new_owned("bound", &refs, &[]);
    let server = Nginx::start(&w.repo);
    let limit: u64 = 3 << 20;
    let d = w.mount_nginx(&server, &["--cache-max-size", "3M"]).unwrap();
    let total = |w: &World| w.objects().iter().map(|o| o.1).sum::<u64>();
    for round in 0..2 {
        for (name, data) in &files {
            assert_eq!(&std::fs::read(w.at(name)).unwrap(), data, "round {round}");
            assert!(total(&w) <= limit, "{:?}", w.objects());
        }
    }
    // An open file is never evicted, even with the cache over its bound because of it.
    let mut held = File::open(w.at("f00.bin")).unwrap();
    for (name, data) in &files[1..] {
        assert_eq!(&std::fs::read(w.at(name)).unwrap(), data);
        assert!(total(&w) <= limit + (1 << 20), "{:?}", w.objects());
    }
    // Still in the cache under its name (a descriptor would read an evicted file too).
    let kept = w
        .objects()
        .iter()
        .any(|(name, _)| std::fs::read(w.cache().join(name)).is_ok_and(|b| b == files[0].1));
    assert!(
        kept,
        "the open file's object was evicted: {:?}",
        w.objects()
    );
    let mut got = Vec::new();
    held.read_to_end(&mut got).unwrap();
    assert_eq!(got, files[0].1);
    drop(held);
    assert_eq!(std::fs::read(w.at("f00.bin")).unwrap(), files[0].1);
    assert!(total(&w) <= limit);
    let log = d.stop();
    assert!(log.contains("evicted"), "{log}");
}

#[test]
fn parallel_readers_of_one_uncached_file_cause_exactly_one_download() {
    let data = pattern(100 << 20, 8);
    let want = Sha256::digest(&data).to_vec();
    let w = World::new("parallel", &[("huge.bin", &data)], &[]);
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let p = w.at("huge.bin");
            std::thread::spawn(move || sha256_of(&p))
        })
        .collect();
    for r in readers {
        assert_eq!(r.join().unwrap().unwrap(), want);
    }
    assert_eq!(server.gets(".huge.bin"), 1, "{:?}", server.access_log());
    d.stop();
}

#[test]
fn full_cache_disk_fails_the_open_with_enospc_not_a_denial_and_leaves_no_temp() {
    let big = pattern(3 << 20, 9);
    let w = World::new("enospc", &[("big.bin", &big), ("s.txt", b"small")], &[]);
    std::fs::create_dir_all(w.cache()).unwrap();
    struct Tmpfs(PathBuf);
    impl Drop for Tmpfs {
        fn drop(&mut self) {
            lazy_umount(&self.0);
        }
    }
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(w.cache())
        .status()
        .unwrap();
    assert!(st.success(), "cannot mount a small tmpfs for the cache");
    let _tmpfs = Tmpfs(w.cache());
    let server = Nginx::start(&w.repo);
    // No prefetch: the cache must hold nothing but what the opens below store.
    let d = w.mount_nginx(&server, &["--prefetch", "0"]).unwrap();
    // A fault (the daemon could not judge the file), never a denial: ENOSPC, not EACCES.
    assert_eq!(errno_of(std::fs::read(w.at("big.bin"))), libc::ENOSPC);
    assert!(
        w.temps().is_empty() && w.objects().is_empty(),
        "{:?}",
        w.cache_entries()
    );
    assert_eq!(std::fs::read(w.at("s.txt")).unwrap(), b"small");
    let log = d.stop();
    assert!(log.contains("cannot write the cache"), "{log}");
    assert!(
        log.contains("ERROR open \"big.bin\"") && log.contains("no_space: ENOSPC"),
        "{log}"
    );
    assert!(!log.contains("DENY"), "{log}");
}

#[test]
fn remote_and_local_options_are_exclusive_and_documented() {
    let out = Command::new(BIN)
        .args(["mount", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for s in [
        "--metadata-url",
        "--targets-url",
        "--mirror",
        "--cache",
        "--cache-max-size",
        "EACCES",
        "EIO",
    ] {
        assert!(help.contains(s), "{s} missing from help:\n{help}");
    }
    for bad in [
        &[
            "--metadata",
            "m",
            "--backing",
            "b",
            "--metadata-url",
            "http://x/",
            "--targets-url",
            "http://x/",
            "--cache",
            "c",
        ][..],
        &["--metadata-url", "http://x/", "--cache", "c"][..],
        &["--backing", "b", "--metadata", "m", "--cache", "c"][..],
        &[
            "--metadata-url",
            "http://x/",
            "--targets-url",
            "http://x/",
            "--cache",
            "c",
            "--hide-unregistered",
        ][..],
    ] {
        let out = Command::new(BIN)
            .args(["mount", "--root", "r.json"])
            .args(bad)
            .arg("/nonexistent-mnt")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn two_mounts_share_one_cache_and_never_evict_each_others_open_files() {
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("f{i}.bin"), pattern(1 << 20, 200 + i)))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let w = World::new_owned("shared", &refs, &[]);
    let server = Nginx::start(&w.repo);
    let (targets, meta) = (vec![server.url("targets")], server.url("metadata"));
    let a = w
        .mount_remote(&meta, &targets, &["--cache-max-size", "2M"])
        .unwrap();
    let mnt2 = w.dir.join("mnt2");
    let b = w
        .mount_remote_at(
            &meta,
            &targets,
            &["--cache-max-size", "2M"],
            &mnt2,
            &w.dir.join("state2"),
        )
        .unwrap();
    // A downloads f0 and keeps it open; B finds it in the cache without a request.
    let mut held = File::open(w.at("f0.bin")).unwrap();
    assert_eq!(std::fs::read(mnt2.join("f0.bin")).unwrap(), files[0].1);
    assert_eq!(server.gets(".f0.bin"), 1);
    // B's workload is three times the bound: it evicts, but never A's open object.
    let f0_object = w.objects()[0].0.clone();
    for (name, data) in &files[1..] {
        assert_eq!(&std::fs::read(mnt2.join(name)).unwrap(), data);
        assert!(
            w.objects().iter().any(|(n, _)| *n == f0_object),
            "evicted while open in the other mount: {:?}",
            w.objects()
        );
    }
    let mut got = Vec::new();
    held.read_to_end(&mut got).unwrap();
    assert_eq!(got, files[0].1);
    drop(held);
    let log_b = b.stop();
    assert!(log_b.contains("evicted"), "{log_b}");
    a.stop();
}

#[test]
fn cached_files_are_refused_once_the_trusted_metadata_expires() {
    let w = World::new("expiring", &[("a.txt", b"soon stale")], &["timestamp=12s"]);
    // Long enough for nginx, the mount and the first read on a loaded machine.
    let expires = SystemTime::now() + Duration::from_secs(12);
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), b"soon stale");
    wait_for("the timestamp to expire", String::new, || {
        SystemTime::now() >= expires + Duration::from_secs(1)
    });
    assert_eq!(errno_of(std::fs::read(w.at("a.txt"))), libc::EACCES);
    let log = d.stop();
    assert!(log.contains("the trusted metadata expired"), "{log}");
}

#[test]
fn delegated_targets_are_shown_fetched_and_verified_like_top_level_ones() {
    let top = pattern(10_000, 7);
    let w = World::new("delegated", &[("top.txt", &top)], &[]);
    // A role "docs" for docs/*, published with `repo delegate` + `repo add --role`.
    let dcontent = w.dir.join("docs-content");
    let guide = pattern(300_000, 8);
    let notes = b"release notes\n".to_vec();
    std::fs::create_dir_all(dcontent.join("docs")).unwrap();
    std::fs::write(dcontent.join("docs/guide.bin"), &guide).unwrap();
    std::fs::write(dcontent.join("docs/notes.txt"), &notes).unwrap();
    run_ok(
        Command::new(BIN)
            .args(["repo", "delegate"])
            .arg(&w.repo)
            .arg("--keys")
            .arg(&w.keys)
            .args(["--role", "docs", "--path", "docs/*"]),
    );
    run_ok(
        Command::new(BIN)
            .args(["repo", "add"])
            .arg(&w.repo)
            .arg("--keys")
            .arg(&w.keys)
            .args(["--role", "docs"])
            .arg(&dcontent),
    );
    // The server's copy of one delegated target is tampered with.
    std::fs::write(w.server_file("docs/notes.txt", &notes), b"release n0tes\n").unwrap();
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    // The tree comes from the metadata, delegated targets included, before any content request.
    assert_eq!(
        std::fs::metadata(w.at("docs/guide.bin")).unwrap().len(),
        guide.len() as u64
    );
    assert_eq!(server.gets(".guide.bin"), 0);
    assert_eq!(std::fs::read(w.at("docs/guide.bin")).unwrap(), guide);
    assert_eq!(std::fs::read(w.at("top.txt")).unwrap(), top);
    assert_eq!(
        errno_of(std::fs::read(w.at("docs/notes.txt"))),
        libc::EACCES
    );
    let log = d.stop();
    assert!(log.contains("DENY open \"docs/notes.txt\""), "{log}");
}

/// chown(2) without following symlinks.
fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

#[test]
fn cache_dir_owned_by_another_uid_is_refused_at_mount() {
    let w = World::new("cacheowner", &[("a.txt", b"hello\n")], &[]);
    let server = Nginx::start(&w.repo);
    // Someone else made the --cache path first (e.g. under /var/tmp) and could plant objects.
    std::fs::create_dir_all(w.cache()).unwrap();
    chown(&w.cache(), 65534);
    let (code, log) = w
        .mount_nginx(&server, &[])
        .err()
        .expect("mounted over a foreign cache");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("owned by uid 65534") && log.contains("refusing"),
        "{log}"
    );
    // Ours, but writable by others: refused as well.
    chown(&w.cache(), 0);
    std::fs::set_permissions(w.cache(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, log) = w
        .mount_nginx(&server, &[])
        .err()
        .expect("mounted over an open cache");
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("writable by group or others"), "{log}");
    // Fixed by its owner: accepted (and kept 0700).
    std::fs::set_permissions(w.cache(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), b"hello\n");
    let cmode = std::fs::metadata(w.cache()).unwrap().permissions().mode() & 0o777;
    assert_eq!(cmode, 0o700);
    d.stop();
}

#[test]
fn planted_cache_object_with_foreign_owner_or_open_mode_is_not_served() {
    let data = b"the signed content\n".to_vec();
    let w = World::new("plant", &[("a.txt", &data)], &[]);
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), data);
    d.stop();
    assert_eq!(server.gets(".a.txt"), 1);
    let objects = w.objects();
    assert_eq!(objects.len(), 1);
    let object = w.cache().join(&objects[0].0);
    let evil = b"planted evil bytes\n".to_vec();
    assert_eq!(evil.len(), data.len(), "same size as the signed length");

    // 1. Owned by another uid (name and size right).
    std::fs::remove_file(&object).unwrap();
    std::fs::write(&object, &evil).unwrap();
    chown(&object, 65534);
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o400)).unwrap();
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), data);
    assert_eq!(server.gets(".a.txt"), 2, "not downloaded again");
    let log = d.stop();
    assert!(log.contains("is owned by uid 65534"), "{log}");
    assert!(log.contains("downloaded again"), "{log}");
    let m = std::fs::symlink_metadata(&object).unwrap();
    assert_eq!(
        (std::os::unix::fs::MetadataExt::uid(&m), m.len()),
        (0, data.len() as u64)
    );

    // 2. Ours, but writable by others.
    std::fs::remove_file(&object).unwrap();
    std::fs::write(&object, &evil).unwrap();
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o666)).unwrap();
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), data);
    assert_eq!(server.gets(".a.txt"), 3, "not downloaded again");
    let log = d.stop();
    assert!(log.contains("writable by group or others"), "{log}");

    // 3. A symlink under the object's name.
    std::fs::remove_file(&object).unwrap();
    let elsewhere = w.dir.join("elsewhere");
    std::fs::write(&elsewhere, &evil).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &object).unwrap();
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), data);
    assert_eq!(server.gets(".a.txt"), 4, "not downloaded again");
    let log = d.stop();
    assert!(log.contains("symbolic link"), "{log}");
}

/// The mount's live counters (the root's `user.trustfs.status` attribute).
fn counters(mnt: &Path) -> serde_json::Value {
    let p = std::ffi::CString::new(mnt.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new("user.trustfs.status").unwrap();
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: valid NUL-terminated strings and a writable buffer of the given length.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        r > 0,
        "getxattr user.trustfs.status: {}",
        std::io::Error::last_os_error()
    );
    let status: serde_json::Value = serde_json::from_slice(&buf[..r as usize]).unwrap();
    status["counters"].clone()
}

#[test]
fn prefetched_siblings_are_verified_and_a_tampered_one_is_refused_only_by_its_own_open() {
    let small: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("d/f{i}"), pattern(4096, i)))
        .collect();
    let mut files: Vec<(&str, Vec<u8>)> =
        small.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    files.push(("d/big.bin", pattern(300 << 10, 40)));
    files.push(("other/x", pattern(4096, 41)));
    let w = World::new_owned("prefetch", &files, &[]);
    // The server holds other bytes (same length) for d/f5.
    std::fs::write(w.server_file("d/f5", &files[5].1), pattern(4096, 99)).unwrap();
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();

    // The first open in d/ (not cached) queues d's other small files in the background.
    assert_eq!(std::fs::read(w.at("d/f2")).unwrap(), files[2].1);
    wait_for("the prefetch burst to end", String::new, || {
        d.log().contains("prefetched 6 file(s)")
    });
    let log = d.log();
    assert!(
        log.contains("prefetch \"d/f5\": no mirror delivered content matching"),
        "{log}"
    );
    assert!(log.contains("1 failed"), "{log}");
    // Nothing over the size bound, nothing from another directory, nothing refused was kept.
    assert_eq!(server.gets(".big.bin"), 0);
    assert_eq!(server.gets(".x"), 0);
    assert_eq!(w.objects().len(), 7, "{:?}", w.cache_entries());
    let c = counters(&w.mnt);
    assert_eq!(
        (
            &c["prefetch_fetches"],
            &c["prefetch_failures"],
            &c["prefetch_bytes"]
        ),
        (&6.into(), &1.into(), &(6 * 4096).into()),
        "{c}"
    );
    // A prefetch refusal is nobody's denial.
    assert_eq!(nonzero_entries(&c["denied"]), 0, "{c}");

    // The prefetched files open from the cache: right bytes, no further request.
    for (i, (path, data)) in files.iter().enumerate().take(8) {
        if i != 5 {
            assert_eq!(&std::fs::read(w.at(path)).unwrap(), data, "{path}");
            assert_eq!(server.gets(&format!(".f{i}")), 1, "{path}");
        }
    }
    // The tampered one is downloaded and judged again by its own open: EACCES, a denial.
    assert_eq!(errno_of(std::fs::read(w.at("d/f5"))), libc::EACCES);
    assert_eq!(server.gets(".f5"), 2);
    let log = d.stop();
    assert!(log.contains("DENY") && log.contains("\"d/f5\""), "{log}");
    assert_eq!(log.matches("DENY").count(), 1, "{log}");
}

#[test]
fn a_prefetch_that_fails_is_not_remembered_and_the_open_fetches_for_itself() {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("d/a", pattern(4096, 1)),
        ("d/b", pattern(4096, 2)),
        ("d/c", pattern(4096, 3)),
    ];
    let w = World::new_owned("prefetch-fault", &files, &[]);
    // d/b is missing on the server while the prefetch runs (a fault: 404).
    let b = w.server_file("d/b", &files[1].1);
    let hidden = w.dir.join("b-hidden");
    std::fs::rename(&b, &hidden).unwrap();
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("d/a")).unwrap(), files[0].1);
    wait_for("the prefetch of d/b to fail", String::new, || {
        d.log().contains("prefetch \"d/b\"")
    });
    wait_for("the prefetch to settle", String::new, || {
        let c = counters(&w.mnt);
        c["prefetch_fetches"].as_u64().unwrap()
            + c["prefetch_failures"].as_u64().unwrap()
            + c["prefetch_dropped"].as_u64().unwrap()
            == 2
    });
    assert!(d.log().contains("stopped prefetching"), "{}", d.log());
    std::fs::rename(&hidden, &b).unwrap();
    // The open does not inherit the prefetch's failure: it fetches d/b itself.
    assert_eq!(std::fs::read(w.at("d/b")).unwrap(), files[1].1);
    assert_eq!(std::fs::read(w.at("d/c")).unwrap(), files[2].1);
    assert_eq!(server.gets(".b"), 2);
    let c = counters(&w.mnt);
    assert_eq!(c["prefetch_failures"], 1, "{c}");
    assert_eq!(nonzero_entries(&c["faults"]), 0, "{c}");
    let log = d.stop();
    assert!(!log.contains("DENY") && !log.contains("ERROR"), "{log}");

    // --prefetch 0: an open fetches its own file and nothing else.
    std::fs::remove_dir_all(w.cache()).unwrap();
    let before = server.access_log().len();
    let d = w.mount_nginx(&server, &["--prefetch", "0"]).unwrap();
    assert_eq!(std::fs::read(w.at("d/a")).unwrap(), files[0].1);
    let c = counters(&w.mnt);
    assert_eq!(c["prefetch_fetches"], 0, "{c}");
    let targets: Vec<String> = server.access_log()[before..]
        .iter()
        .filter(|l| l.contains("/targets/"))
        .cloned()
        .collect();
    assert_eq!(targets.len(), 1, "{targets:?}");
    d.stop();
}

/// Metadata requests in nginx's access log from line `from` on: (hash bins, everything else but
/// timestamp.json, snapshot and the probe for the next root).
fn metadata_gets(server: &Nginx, from: usize) -> (Vec<String>, Vec<String>) {
    let uris: Vec<String> = server.access_log()[from..]
        .iter()
        .filter_map(|l| {
            let mut f = l.split(' ');
            (f.next() == Some("GET")).then(|| f.next().unwrap_or("").to_owned())
        })
        .filter(|u| u.starts_with("/metadata/"))
        .collect();
    let (bins, rest): (Vec<String>, Vec<String>) =
        uris.into_iter().partition(|u| u.contains(".bins-"));
    let rest = rest
        .into_iter()
        .filter(|u: &String| {
            !(u.ends_with("/timestamp.json")
                || u.ends_with(".snapshot.json")
                || u.ends_with(".root.json"))
        })
        .collect();
    (bins, rest)
}

#[test]
fn hash_bins_come_once_a_restart_fetches_none_and_a_refresh_only_the_changed_one() {
    let files = crate::harness::numbered_files(64, 4, "");
    let w = World::new_owned("bins", &files, &[]);
    // Sixteen small hash bins instead of one targets file.
    w.publish_args(&["--bins", "16"]);
    let server = Nginx::start(&w.repo);

    // First mount, empty state dir: every bin exactly once (fetched in parallel), verified.
    let d = w
        .mount_nginx(&server, &["--refresh-interval", "1s"])
        .unwrap();
    let (bins, _) = metadata_gets(&server, 0);
    let distinct: BTreeSet<&String> = bins.iter().collect();
    assert_eq!((bins.len(), distinct.len()), (16, 16), "{bins:?}");
    for (path, data) in &files {
        assert_eq!(&std::fs::read(w.at(path)).unwrap(), data, "{path}");
    }

    // One changed file: the refresh downloads its bin and nothing else but timestamp and
    // snapshot (the other bins' versions did not change; their verified copies are in the state
    // dir).
    std::fs::write(w.content.join("d1/f5"), b"changed\n").unwrap();
    // `repo add` re-reads files whose times changed more than 2 s ago only; wait for that.
    std::thread::sleep(Duration::from_millis(2100));
    let before = server.access_log().len();
    w.publish_expiring(&[]);
    wait_for("the refresh", String::new, || {
        d.log().contains("metadata updated")
    });
    let (bins, rest) = metadata_gets(&server, before);
    assert!(bins.len() <= 2 && !bins.is_empty(), "{bins:?}");
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(std::fs::read(w.at("d1/f5")).unwrap(), b"changed\n");
    d.stop();

    // A restart: every bin comes from the state dir, none from the server.
    let before = server.access_log().len();
    let d = w.mount_nginx(&server, &[]).unwrap();
    assert_eq!(std::fs::read(w.at("d1/f5")).unwrap(), b"changed\n");
    assert_eq!(std::fs::read(w.at("d2/f6")).unwrap(), b"file 6\n");
    let (bins, rest) = metadata_gets(&server, before);
    assert!(bins.is_empty() && rest.is_empty(), "{bins:?} {rest:?}");
    d.stop();
}

/// How many entries of a counters object (by reason or kind) are not zero.
fn nonzero_entries(v: &serde_json::Value) -> usize {
    v.as_object().unwrap().values().filter(|v| **v != 0).count()
}
