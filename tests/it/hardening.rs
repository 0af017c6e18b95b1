//! Regression tests of the hardening issue (#9, "Hardening: hostile mirrors, hostile content dirs,
//! resource exhaustion, fuzzing, faults and soak"). Each test stages one finding of that review,
//! as a hostile mirror, a hostile content-dir owner or a greedy reader would, against the real
//! binary on real FUSE mounts, a real nginx and a misbehaving HTTP server on 127.0.0.1. Each
//! failed (or did not compile) on the main of 2026-11-28 and must pass now. Needs root, /dev/fuse
//! and nginx; fails, never skips. Every wait is a bounded wait for a condition: a bound that runs
//! out means a hang, which is the bug these tests look for.

use crate::harness::cli;
use crate::harness::disk;
#[allow(dead_code)]
use crate::harness::http;
use crate::harness::mount as common;
use crate::harness::nginx;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli::{errno_of, wait_for, World, BIN};
use common::{lazy_umount, pattern};
use http::{Behaviour, HttpServer};
use nginx::Nginx;

/// `n` small distinct files `d/fNNNN.txt`.
fn many_files(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("d/f{i:04}.txt"), format!("file {i}\n").into_bytes()))
        .collect()
}

/// Run `f` on another thread; panic if it does not finish within `bound` (a hang).
fn bounded<T: Send + 'static>(
    what: &str,
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(bound)
        .unwrap_or_else(|_| panic!("{what} did not finish within {} s: hung", bound.as_secs()))
}

/// Read every file of `files` under `mnt` on its own thread, all at once; the results in order.
fn read_all_parallel(mnt: &Path, files: &[(String, Vec<u8>)]) -> Vec<std::io::Result<Vec<u8>>> {
    let handles: Vec<_> = files
        .iter()
        .map(|(p, _)| {
            let path = mnt.join(p);
            std::thread::spawn(move || std::fs::read(path))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn status_tables(w: &World) -> serde_json::Value {
    w.status_record()
        .map(|r| r["tables"].clone())
        .unwrap_or_default()
}

/// Resident memory of `pid` in bytes (VmRSS).
fn rss_of(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Drop the kernel's clean dentries and inodes, so it sends FORGET for what it held.
fn drop_caches() {
    std::fs::write("/proc/sys/vm/drop_caches", b"2").expect("write /proc/sys/vm/drop_caches");
}

/// Raise this process's soft descriptor limit to its hard limit.
fn raise_own_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit pointers for the calls.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

/// A small tmpfs mounted at `dir` (created), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "cannot mount a tmpfs at {}", dir.display());
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        lazy_umount(&self.0);
    }
}

fn assert_no_denial(log: &str) {
    assert!(
        !log.contains("DENY"),
        "a fault was reported as a denial:\n{log}"
    );
}

// ---- Finding 2: a mirror's redirect to file:// crashed FUSE workers and the refresh thread ----

#[test]
fn finding2_redirect_to_file_url_neither_kills_workers_nor_the_refresh_thread() {
    let files = many_files(24);
    let w = World::new_owned("redirect", &files, &[]);
    let good = Nginx::start(&w.repo);
    let hostile = HttpServer::serve(w.repo.clone());
    hostile.set_all(Behaviour::Redirect("file:///etc/passwd".into()));
    let meta = HttpServer::serve(w.repo.clone());
    let d = w
        .mount_remote(
            &meta.url("metadata"),
            &[hostile.url("targets"), good.url("targets")],
            &["--refresh-interval", "1s"],
        )
        .unwrap();
    // More opens than FUSE workers: on main each one killed a worker and the mount died.
    let results = read_all_parallel(&w.mnt, &files);
    for ((p, want), got) in files.iter().zip(results) {
        assert_eq!(
            &got.unwrap_or_else(|e| panic!("{p}: {e}\n{}", d.log())),
            want
        );
    }
    // The hostile mirror alone: a network fault (EIO) per open, and the daemon lives on.
    drop(d);
    std::fs::remove_dir_all(w.cache()).unwrap();
    let d = w
        .mount_remote(&meta.url("metadata"), &[hostile.url("targets")], &[])
        .unwrap();
    for (p, _) in files.iter().take(20) {
        assert_eq!(errno_of(std::fs::read(w.at(p))), libc::EIO, "{p}");
    }
    assert!(
        std::fs::read_dir(&w.mnt).is_ok(),
        "mount died:\n{}",
        d.log()
    );
    let log = d.stop();
    assert!(log.contains("leaves the mirror's origin"), "{log}");
    assert_no_denial(&log);

    // A redirected metadata response fails that refresh, visibly, and the next one works.
    let d = w
        .mount_remote(
            &meta.url("metadata"),
            &[good.url("targets")],
            &["--refresh-interval", "1s"],
        )
        .unwrap();
    meta.set_all(Behaviour::Redirect("file:///etc/passwd".into()));
    w.write("new.txt", b"published while the metadata URL redirects");
    w.publish();
    wait_for(
        "the failed refresh to show in the status record",
        || d.log(),
        || {
            w.status_record().is_some_and(|r| {
                r["problem"]
                    .as_str()
                    .is_some_and(|p| p.contains("leaves the mirror's origin"))
                    && r["counters"]["refresh_failures"].as_u64() > Some(0)
            })
        },
    );
    meta.clear();
    wait_for(
        "the refresh thread to switch in the new metadata",
        || d.log(),
        || std::fs::read(w.at("new.txt")).is_ok(),
    );
    // Logged once the switch has sent its invalidations (just after new opens see it).
    wait_for(
        "the switch to be logged",
        || d.log(),
        || d.log().contains("metadata updated"),
    );
    d.stop();
}

// ---- Finding 3: a mirror dripping its headers hung readers, workers and the start ----

#[test]
fn finding3_dripping_mirrors_fail_over_in_bounded_time_and_a_dripping_metadata_url_starts_offline()
{
    let files = many_files(20);
    let w = World::new_owned("drip", &files, &[]);
    let good = Nginx::start(&w.repo);
    let hostile = HttpServer::serve(w.repo.clone());
    hostile.set_all(Behaviour::DripHeaders(Duration::from_millis(500)));
    let meta = HttpServer::serve(w.repo.clone());
    // Default deadlines (30 s for the response head): a few opens while `ls` and `stat` go on.
    // On main these hung forever (the guard covered only the body).
    let d = w
        .mount_remote(
            &meta.url("metadata"),
            &[hostile.url("targets"), good.url("targets")],
            &[],
        )
        .unwrap();
    let (mnt, want) = (w.mnt.clone(), files[..4].to_vec());
    let reads = std::thread::spawn(move || read_all_parallel(&mnt, &want));
    assert_eq!(std::fs::read_dir(w.at("d")).unwrap().count(), files.len());
    assert!(std::fs::metadata(w.at(&files[5].0)).is_ok());
    let results = bounded(
        "4 opens through a dripping mirror",
        Duration::from_secs(120),
        move || reads.join().unwrap(),
    );
    for ((p, want), got) in files.iter().zip(results) {
        assert_eq!(
            &got.unwrap_or_else(|e| panic!("{p}: {e}\n{}", d.log())),
            want
        );
    }
    drop(d);
    let _ = std::fs::remove_dir_all(w.cache());
    let d = w
        .mount_remote(
            &meta.url("metadata"),
            &[hostile.url("targets"), good.url("targets")],
            &["--http-timeout", "2s"],
        )
        .unwrap();
    let mnt = w.mnt.clone();
    let want = files.clone();
    // 20 opens at once (more than... the workers an open may hold): all end, from the good mirror.
    let results = bounded(
        "20 opens through a dripping first mirror",
        Duration::from_secs(120),
        move || read_all_parallel(&mnt, &want),
    );
    for ((p, want), got) in files.iter().zip(results) {
        assert_eq!(
            &got.unwrap_or_else(|e| panic!("{p}: {e}\n{}", d.log())),
            want
        );
    }
    // A dripped body: cut off by the body deadline, then the next mirror. The daemon goes
    // first: its background downloads may still be writing into the cache.
    drop(d);
    std::fs::remove_dir_all(w.cache()).unwrap();
    std::fs::create_dir_all(w.cache()).unwrap();
    // One byte a second: 7 bytes take longer than the body deadline of a 7-byte file (3 s).
    hostile.set_all(Behaviour::DripBody(Duration::from_secs(1)));
    let d = w
        .mount_remote(
            &meta.url("metadata"),
            &[hostile.url("targets"), good.url("targets")],
            &["--http-timeout", "2s"],
        )
        .unwrap();
    let p = w.at(&files[0].0);
    let got = bounded(
        "an open through a dripped body",
        Duration::from_secs(120),
        move || std::fs::read(p),
    );
    assert_eq!(got.unwrap(), files[0].1, "{}", d.log());
    let log = d.stop();
    assert!(log.contains("timeout: receive body"), "{log}");
    assert_no_denial(&log);

    // The metadata URL drips: the mount starts offline from the state dir instead of hanging.
    meta.set_all(Behaviour::DripHeaders(Duration::from_millis(500)));
    let d = w
        .mount_remote(
            &meta.url("metadata"),
            &[good.url("targets")],
            &["--http-timeout", "2s"],
        )
        .unwrap_or_else(|(code, log)| panic!("mount exited {code}: {log}"));
    assert_eq!(std::fs::read(w.at(&files[1].0)).unwrap(), files[1].1);
    let log = d.stop();
    assert!(log.contains("OFFLINE"), "{log}");
}

// ---- Finding 4: fd exhaustion was reported as tampering ----

#[test]
fn finding4_a_reader_holding_a_thousand_files_open_does_not_run_the_daemon_out_of_descriptors() {
    raise_own_fd_limit();
    let files = many_files(1000);
    let w = World::new_owned("fds", &files, &[]);
    let args: Vec<String> = [
        "--metadata",
        &w.metadata().display().to_string(),
        "--backing",
        &w.content.display().to_string(),
        "--no-passthrough",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // 128 descriptors in all, soft and hard: the daemon cannot raise its way out.
    let d = w.mount_limited(&args, 128).unwrap();
    let mut held = Vec::new();
    for (p, want) in &files {
        let mut f = File::open(w.at(p)).unwrap_or_else(|e| panic!("open {p}: {e}\n{}", d.log()));
        let mut first = [0u8; 4];
        f.read_exact(&mut first)
            .unwrap_or_else(|e| panic!("read {p}: {e}\n{}", d.log()));
        assert_eq!(&first, &want[..4]);
        held.push(f);
    }
    // Everything still held open; every file still reads in full, over and over.
    for (p, want) in files.iter().step_by(7) {
        assert_eq!(&std::fs::read(w.at(p)).unwrap(), want);
    }
    let t = status_tables(&w);
    assert!(
        t["read_fds"].as_u64().unwrap() <= t["read_fd_capacity"].as_u64().unwrap(),
        "{t}"
    );
    drop(held);
    assert_no_denial(&d.stop());
}

#[test]
fn finding4_when_descriptors_do_run_out_the_answer_is_emfile_never_eacces() {
    raise_own_fd_limit();
    let files = many_files(120);
    let w = World::new_owned("emfile", &files, &[]);
    let good = Nginx::start(&w.repo);
    let args: Vec<String> = [
        "--metadata-url",
        &good.url("metadata"),
        "--targets-url",
        &good.url("targets"),
        "--cache",
        &w.cache().display().to_string(),
        "--audit-log",
        &w.audit.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A remote mount holds each open object locked (one descriptor per distinct open file).
    let d = w.mount_limited(&args, 64).unwrap();
    let mut held = Vec::new();
    let mut refused = None;
    for (p, want) in &files {
        match File::open(w.at(p)) {
            Ok(mut f) => {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf).unwrap();
                assert_eq!(&buf, want);
                held.push(f);
            }
            Err(e) => {
                refused = Some(e.raw_os_error());
                break;
            }
        }
    }
    assert_eq!(refused, Some(Some(libc::EMFILE)), "{}", d.log());
    drop(held);
    // Descriptors back: opens work again.
    assert_eq!(std::fs::read(w.at(&files[119].0)).unwrap(), files[119].1);
    let log = d.stop();
    assert!(log.contains("descriptors: EMFILE"), "{log}");
    assert_no_denial(&log);
    let faults: Vec<_> = w
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "fault")
        .collect();
    assert!(
        faults.iter().any(|l| l["kind"] == "descriptors"),
        "{faults:?}"
    );
    assert!(w.audit_lines().iter().all(|l| l["event"] != "deny"));
}

// ---- Finding 5: each directory handle copied the whole listing ----

#[test]
fn finding5_handles_on_a_huge_directory_share_one_listing() {
    let w = World::new_owned("dirs", &many_files(2), &[]);
    let big = w.content.join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..20_000 {
        File::create(big.join(format!("entry-with-a-longish-name-{i:06}"))).unwrap();
    }
    let d = w.mount_local(&[]);
    let before = rss_of(d.pid());
    let mut handles = Vec::new();
    for _ in 0..500 {
        let mut rd = std::fs::read_dir(w.at("big")).unwrap();
        assert!(rd.next().is_some());
        handles.push(rd);
    }
    let grown = rss_of(d.pid()).saturating_sub(before);
    // On main: 500 copies of 20,000 entries, about a gigabyte.
    assert!(grown < 100 << 20, "daemon RSS grew by {} MB", grown >> 20);
    wait_for(
        "the status record to count the directory handles",
        || format!("{}", status_tables(&w)),
        || status_tables(&w)["dir_handles"].as_u64() >= Some(500),
    );
    let t = status_tables(&w);
    assert!(t["listings"].as_u64().unwrap() <= 2, "{t}");
    assert!(t["listing_entries"].as_u64().unwrap() <= 2 * 20_002, "{t}");
    drop(handles);
    d.stop();
}

// ---- Finding 6: operational faults were reported as denials ----

#[test]
fn finding6_a_full_state_dir_is_enospc_and_a_fault_not_a_denial() {
    let big = pattern(3 << 20, 1);
    let files = vec![
        ("big.bin".to_owned(), big.clone()),
        ("small.txt".to_owned(), b"small".to_vec()),
    ];
    let w = World::new_owned("statefull", &files, &[]);
    let _tmpfs = Tmpfs::mount(&w.state, "1m");
    // The private copies need the space (chunk-verified reads need none: see
    // `chunked_reads_serve_from_a_full_state_dir_and_count_a_fault`).
    let d = w.mount_local(&[
        "--private-copy",
        "--audit-log",
        &w.audit.display().to_string(),
    ]);
    assert_eq!(errno_of(std::fs::read(w.at("big.bin"))), libc::ENOSPC);
    assert_eq!(std::fs::read(w.at("small.txt")).unwrap(), b"small");
    wait_for(
        "the status record to count the fault",
        || format!("{:?}", w.status_record()),
        || {
            w.status_record()
                .is_some_and(|r| r["counters"]["faults"]["no_space"].as_u64() == Some(1))
        },
    );
    let r = w.status_record().unwrap();
    let denied: u64 = r["counters"]["denied"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(denied, 0, "{r}");
    let log = d.stop();
    assert!(log.contains("ERROR open \"big.bin\""), "{log}");
    assert_no_denial(&log);
    let audit = w.audit_lines();
    assert!(
        audit
            .iter()
            .any(|l| l["event"] == "fault" && l["kind"] == "no_space" && l["path"] == "big.bin"),
        "{audit:?}"
    );
    assert!(audit.iter().all(|l| l["event"] != "deny"), "{audit:?}");
}

/// Chunk-verified reads need no room in the state dir for a repository with signed chunk roots
/// (the outboards are the repository's), and for one without (python-tuf made) a tree that
/// cannot be saved is a fault, logged and counted, while the verified file is served.
#[test]
fn chunked_reads_serve_from_a_full_state_dir_and_count_a_fault() {
    let big = pattern(3 << 20, 3);
    let w = World::new("statefullchunks", &[("big.bin", &big)], &[]);
    let _tmpfs = Tmpfs::mount(&w.state, "1m");
    let d = w.mount_local(&[]);
    // Fill what is left (the daemon has written its metadata state by now).
    let _ = std::fs::write(w.state.join("filler"), vec![0u8; 1 << 20]);
    assert_eq!(std::fs::read(w.at("big.bin")).unwrap(), big);
    let log = d.stop();
    assert!(log.contains("published outboard"), "{log}");
    assert_no_denial(&log);
    assert!(
        !log.contains("ERROR"),
        "nothing to save with a signed root:\n{log}"
    );
    drop(_tmpfs);

    // Without signed roots: the tree of the one pass cannot be saved.
    let mut s = common::Scratch::new("statefull-plain");
    s.add("big.bin", &big);
    let _tmpfs = Tmpfs::mount(&s.state, "1m");
    let m = s.mount();
    let _ = std::fs::write(s.state.join("filler"), vec![0u8; 1 << 20]);
    assert_eq!(std::fs::read(s.at("big.bin")).unwrap(), big);
    assert_eq!(m.handle().denied(), 0);
    assert_eq!(m.handle().live().counters().faults_total(), 1);
    // Served again from the tree in memory.
    assert_eq!(std::fs::read(s.at("big.bin")).unwrap(), big);
    drop(m);
}

/// `--verify lazy`: an altered file opens (only its size is checked), the altered chunk fails
/// with EIO when read while the others are served, and the log and the audit name the file and
/// the offset. The default (`--verify open`) refuses the same file at open.
#[test]
fn lazy_verification_refuses_an_altered_chunk_on_read_and_names_it() {
    let data = pattern(1 << 20, 4);
    let w = World::new("lazyaltered", &[("model.bin", &data)], &[]);
    let mut bad = data.clone();
    bad[300_000] ^= 0x01; // chunk 4 (262,144 .. 327,680)
    std::fs::write(w.content.join("model.bin"), &bad).unwrap();

    let d = w.mount_local(&["--audit-log", &w.audit.display().to_string()]);
    assert_eq!(
        errno_of(std::fs::File::open(w.at("model.bin"))),
        libc::EACCES
    );
    let log = d.stop();
    assert!(
        log.contains("DENY open \"model.bin\": at offset 262144"),
        "{log}"
    );

    let d = w.mount_local(&[
        "--verify",
        "lazy",
        "--audit-log",
        &w.audit.display().to_string(),
    ]);
    let f = std::fs::File::open(w.at("model.bin")).unwrap();
    let mut head = vec![0u8; 65536];
    f.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(head, data[..65536]);
    let mut buf = vec![0u8; 4096];
    assert_eq!(errno_of(f.read_exact_at(&mut buf, 299_000)), libc::EIO);
    f.read_exact_at(&mut buf, 400_000).unwrap();
    assert_eq!(buf, data[400_000..404_096]);
    assert_eq!(
        xattr_of(&w.at("model.bin"), "user.trustfs.verified").as_deref(),
        Some("no"),
        "lazy opens never claim the whole file was checked"
    );
    drop(f);
    let log = d.stop();
    assert!(
        log.contains("DENY read \"model.bin\": at offset 262144: chunk 4"),
        "{log}"
    );
    assert!(log.contains("never served"), "{log}");
    let audit = w.audit_lines();
    assert!(
        audit.iter().any(|l| l["event"] == "deny"
            && l["path"] == "model.bin"
            && l["reason"] == "altered"
            && l["detail"]
                .as_str()
                .is_some_and(|d| d.contains("offset 262144"))),
        "{audit:?}"
    );
}

/// A published outboard that does not match the signed chunk root (or is not a regular file) is
/// not used: the tree is computed from the content, which is served if it matches the root.
#[test]
fn a_bad_outboard_is_not_trusted_and_the_tree_is_computed_instead() {
    let data = pattern(500_000, 6);
    let w = World::new("badoutboard", &[("f.bin", &data)], &[]);
    let name = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
    let ob = w.repo.join("chunks").join(&name);
    let mut bytes = std::fs::read(&ob).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&ob, &bytes).unwrap();
    let d = w.mount_local(&[]);
    assert_eq!(std::fs::read(w.at("f.bin")).unwrap(), data);
    let log = d.stop();
    assert!(
        log.contains(
            "outboard of \"f.bin\" is unusable (the outboard does not match the signed chunk root)"
        ),
        "{log}"
    );
    assert!(log.contains("one pass over the content"), "{log}");
    // A FIFO in its place neither hangs the open nor is read.
    std::fs::remove_file(&ob).unwrap();
    let c = std::ffi::CString::new(ob.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let d = w.mount_local(&[]);
    let read = bounded("an open with a FIFO outboard", Duration::from_secs(30), {
        let p = w.at("f.bin");
        move || std::fs::read(p).unwrap()
    });
    assert_eq!(read, data);
    let log = d.stop();
    assert!(log.contains("not a regular file"), "{log}");
}

/// A backing file replaced by a directory, or removed, after it was opened: a reader whose open
/// checked the file keeps reading it (its descriptor is kept while open, as any filesystem would);
/// a reader whose open found a ready tree (nothing was opened) and whose first read finds the
/// directory or nothing gets a denied read (`DENY read`, answered EIO), never an I/O fault.
#[test]
fn a_backing_file_replaced_or_removed_after_the_open_is_a_denied_read() {
    let data = pattern(300_000, 8);
    let files = vec![
        ("dir.bin".to_owned(), data.clone()),
        ("gone.bin".to_owned(), data.clone()),
        ("kept.bin".to_owned(), data.clone()),
    ];
    let w = World::new_owned("replacedafter", &files, &[]);
    let d = w.mount_local(&["--verify", "lazy"]);
    // First opens (trees found, files opened and kept), closed again for two of them.
    let kept = std::fs::File::open(w.at("kept.bin")).unwrap();
    drop(std::fs::File::open(w.at("dir.bin")).unwrap());
    drop(std::fs::File::open(w.at("gone.bin")).unwrap());
    // Second opens: the tree is ready, nothing is opened until the first read.
    let a = std::fs::File::open(w.at("dir.bin")).unwrap();
    let b = std::fs::File::open(w.at("gone.bin")).unwrap();
    for f in ["dir.bin", "kept.bin"] {
        std::fs::remove_file(w.content.join(f)).unwrap();
        std::fs::create_dir(w.content.join(f)).unwrap();
    }
    std::fs::remove_file(w.content.join("gone.bin")).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(errno_of(a.read_exact_at(&mut buf, 0)), libc::EIO);
    assert_eq!(errno_of(b.read_exact_at(&mut buf, 0)), libc::EIO);
    kept.read_exact_at(&mut buf, 100_000).unwrap();
    assert_eq!(buf, data[100_000..104_096]);
    assert_eq!(
        errno_of(std::fs::File::open(w.at("kept.bin"))),
        libc::EACCES
    );
    drop((a, b, kept));
    let log = d.stop();
    assert!(
        log.contains("DENY read \"dir.bin\": backing entry is a directory"),
        "{log}"
    );
    assert!(
        log.contains("DENY read \"gone.bin\": the backing file was removed after it was opened"),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
}

/// A local mount of the world's repository over the test disk at `disk_dir` (its one file is the
/// backing file), with an audit log and `extra` arguments.
fn mount_over_disk(w: &World, disk_dir: &Path, extra: &[&str]) -> cli::Daemon {
    let mut args = vec![
        "--metadata".to_owned(),
        w.metadata().display().to_string(),
        "--backing".into(),
        disk_dir.display().to_string(),
        "--audit-log".into(),
        w.audit.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    w.mount_with(&args).unwrap()
}

/// A local mount of `bad.bin` (200,000 bytes) from a disk whose every read fails with EIO (a
/// FUSE mount that answers so, as a dying disk would), with `extra` arguments.
fn mount_over_failing_disk(tag: &str, extra: &[&str]) -> (World, cli::Daemon, disk::Mounted) {
    let data = pattern(200_000, 2);
    let w = World::new(tag, &[("bad.bin", &data)], &[]);
    let disk_dir = w.dir.join("disk");
    let disk = disk::mount(
        &disk_dir,
        "bad.bin",
        disk::Content::Failing(data.len() as u64),
    );
    let d = mount_over_disk(&w, &disk_dir, extra);
    (w, d, disk)
}

/// A content-dir owner rewrites a file while the first open's pass reads it (staged on a disk
/// whose bytes change when the pass reaches 4 MiB of 8; size, times and inode stay the same).
/// Changed *ahead* of the pass: the pass hashed the new bytes, so the open is refused (`EACCES`,
/// a DENY naming the file) in both modes that check at open. Changed *behind* it (bytes already
/// read and hashed): `--private-copy` serves exactly the bytes it copied and verified, also once
/// the kernel's pages are dropped; the chunk-verified mode serves the pages its pass checked and,
/// once they are dropped, reads the backing file again and refuses the changed chunk (`EIO`,
/// an ERROR naming the file and offset). Never a changed byte.
#[test]
fn a_backing_file_changed_during_the_first_open_pass_is_refused_or_served_as_verified() {
    let data = pattern(8 << 20, 41);
    let at = 4 << 20;
    let mut ahead = data.clone();
    ahead[6 << 20] ^= 1;
    let mut behind = data.clone();
    behind[100] ^= 1;
    for (mode, extra) in [("copy", &["--private-copy"][..]), ("chunks", &[][..])] {
        for (when, after) in [("ahead", &ahead), ("behind", &behind)] {
            let what = format!("changed {when} of the pass, {mode} mode");
            let w = World::new(&format!("change{when}{mode}"), &[("f.bin", &data)], &[]);
            let disk_dir = w.dir.join("disk");
            let content = disk::Content::ChangesAt {
                before: data.clone(),
                after: after.clone(),
                at,
            };
            let _disk = disk::mount(&disk_dir, "f.bin", content);
            let d = mount_over_disk(&w, &disk_dir, extra);
            let opened = File::open(w.at("f.bin"));
            if when == "ahead" {
                assert_eq!(errno_of(opened), libc::EACCES, "{what}");
                let log = d.stop();
                assert!(log.contains("DENY open \"f.bin\""), "{what}: {log}");
                continue;
            }
            let f = opened.unwrap_or_else(|e| panic!("{what}: open: {e}"));
            let mut first = vec![0u8; 1 << 20];
            f.read_exact_at(&mut first, 0).unwrap();
            assert!(first[..] == data[..1 << 20], "{what}: the first read");
            common::drop_pages(&f);
            let again = f.read_exact_at(&mut first, 0);
            if mode == "copy" {
                again.unwrap_or_else(|e| panic!("{what}: read after the pages were dropped: {e}"));
                assert!(first[..] == data[..1 << 20], "{what}: the copy's bytes");
            } else {
                assert_eq!(errno_of(again), libc::EIO, "{what}");
            }
            drop(f);
            let log = d.stop();
            if mode == "copy" {
                assert!(
                    !log.contains("DENY") && !log.contains("ERROR"),
                    "{what}: {log}"
                );
            } else {
                assert!(log.contains("\"f.bin\""), "{what}: {log}");
            }
        }
    }
}

/// `--verify lazy` over a failing disk: the open succeeds (only the size is checked), the read
/// fails with EIO as a fault (`ERROR read`), never a denial.
#[test]
fn lazy_reads_from_a_failing_disk_are_faults_not_denials() {
    let (w, d, _disk) = mount_over_failing_disk("eiolazy", &["--verify", "lazy"]);
    let f = std::fs::File::open(w.at("bad.bin")).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(errno_of(f.read_exact_at(&mut buf, 0)), libc::EIO);
    drop(f);
    let log = d.stop();
    assert!(
        log.contains("ERROR read \"bad.bin\": reading the backing file") && log.contains("io: EIO"),
        "{log}"
    );
    assert_no_denial(&log);
}

#[test]
fn finding6_an_io_error_of_the_backing_disk_is_eio_and_a_fault_not_a_denial() {
    let (w, d, _disk) = mount_over_failing_disk("eio", &[]);
    assert_eq!(errno_of(std::fs::read(w.at("bad.bin"))), libc::EIO);
    let log = d.stop();
    assert!(
        log.contains("ERROR open \"bad.bin\"") && log.contains("io: EIO"),
        "{log}"
    );
    assert_no_denial(&log);
    assert!(w
        .audit_lines()
        .iter()
        .any(|l| l["event"] == "fault" && l["kind"] == "io"));
}

#[test]
fn finding6_a_body_cut_short_is_a_network_fault_not_a_denial() {
    let data = pattern(300_000, 3);
    let w = World::new("truncated", &[("t.bin", &data)], &[]);
    let good = Nginx::start(&w.repo);
    let hostile = HttpServer::serve(w.repo.clone());
    hostile.set_all(Behaviour::Truncate(1000));
    let d = w
        .mount_remote(&good.url("metadata"), &[hostile.url("targets")], &[])
        .unwrap();
    assert_eq!(errno_of(std::fs::read(w.at("t.bin"))), libc::EIO);
    let log = d.stop();
    assert!(log.contains("network: EIO"), "{log}");
    assert_no_denial(&log);
}

// ---- Findings 7 and 8: memory grew with churn; the inode table never shrank ----

#[test]
fn finding8_inodes_of_deleted_files_are_forgotten() {
    let mut s = common::Scratch::new("forget");
    s.add("keep.txt", b"keep");
    let m = s.mount();
    std::fs::create_dir_all(s.backing.join("churn")).unwrap();
    for i in 0..20_000 {
        let p = s.backing.join(format!("churn/f{i}"));
        std::fs::write(&p, b"x").unwrap();
        std::fs::metadata(s.at(&format!("churn/f{i}"))).unwrap();
        std::fs::remove_file(&p).unwrap();
    }
    let live = m.handle().live();
    let peak = live.inode_count();
    drop_caches();
    let deadline = Instant::now() + Duration::from_secs(60);
    while live.inode_count() > 10 {
        assert!(
            Instant::now() < deadline,
            "inodes not forgotten: {} (peak {peak})",
            live.inode_count()
        );
        drop_caches();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read(s.at("keep.txt")).unwrap(), b"keep");
}

#[test]
fn finding7_churn_of_content_metadata_and_readers_leaves_the_tables_bounded() {
    let files = many_files(50);
    let w = World::new_owned("churn", &files, &[]);
    let d = w.mount_local(&["--refresh-interval", "1s"]);
    for round in 0..6 {
        // New signed content for some files, tampering with others, readers everywhere.
        for (i, (p, _)) in files.iter().enumerate().take(10) {
            w.write(p, format!("round {round} file {i}\n").as_bytes());
        }
        w.publish();
        w.write(&files[20].0, b"tampered");
        wait_for(
            "the refresh to switch in the new round",
            || d.log(),
            || {
                std::fs::read(w.at(&files[0].0))
                    .is_ok_and(|b| b == format!("round {round} file 0\n").as_bytes())
            },
        );
        for (p, _) in files.iter().skip(30) {
            std::fs::read(w.at(p)).unwrap();
        }
        assert_eq!(errno_of(std::fs::read(w.at(&files[20].0))), libc::EACCES);
        w.write(&files[20].0, &files[20].1);
    }
    drop_caches();
    wait_for(
        "the tables to settle",
        || format!("{}", status_tables(&w)),
        || {
            drop_caches();
            let t = status_tables(&w);
            t["gates"] == 0
                && t["handles"] == 0
                && t["dir_handles"] == 0
                && t["inodes"].as_u64().is_some_and(|n| n <= 10)
        },
    );
    let t = status_tables(&w);
    // Whatever the history (6 rounds of new content, tampering): one record per path and per
    // current object, and the store holds the current objects, not every version ever verified.
    assert!(t["records"].as_u64().unwrap() <= 2 * 50 + 10, "{t}");
    assert!(t["objects"].as_u64().unwrap() <= 50, "{t}");
    d.stop();
}

#[test]
fn finding8_a_mount_inside_the_backing_dir_is_never_entered() {
    let files = vec![
        ("sub/x.txt".to_owned(), b"x".to_vec()),
        ("top.txt".to_owned(), b"top".to_vec()),
    ];
    let w = World::new_owned("xdev", &files, &[]);
    let _inner = Tmpfs::mount(&w.content.join("sub"), "1m");
    std::fs::write(w.content.join("sub/x.txt"), b"x").unwrap();
    let d = w.mount_local(&[]);
    assert_eq!(std::fs::read(w.at("top.txt")).unwrap(), b"top");
    let e = std::fs::read(w.at("sub/x.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    d.stop();
}

#[test]
fn finding8_output_commands_end_quietly_when_their_reader_goes_away() {
    let w = World::new_owned("pipe", &many_files(300), &[]);
    for args in [
        vec![
            "verify".to_owned(),
            "--root".into(),
            w.metadata().join("1.root.json").display().to_string(),
            "--metadata".into(),
            w.metadata().display().to_string(),
            w.content.display().to_string(),
        ],
        vec!["man".to_owned()],
        vec!["completions".to_owned(), "bash".into()],
    ] {
        let mut fds = [0i32; 2];
        // SAFETY: a valid array of two ints for pipe(2).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: closing the read end we own: every write to the pipe now fails (EPIPE).
        unsafe { libc::close(fds[0]) };
        // SAFETY: fds[1] is an open descriptor we own; Stdio takes it over.
        let stdout = unsafe { <Stdio as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
        let out = Command::new(BIN)
            .args(&args)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

// ---- The fault list of the issue: every hostile mirror behaviour, and a garbage metadata server ----

#[test]
fn every_hostile_mirror_behaviour_is_skipped_and_classified() {
    let data = pattern(200_000, 5);
    let w = World::new("hostile", &[("h.bin", &data)], &[]);
    let good = Nginx::start(&w.repo);
    let hostile = HttpServer::serve(w.repo.clone());
    let len = data.len() as u64;
    let ms = Duration::from_millis(500);
    // (behaviour, errno when the hostile mirror is the only one): faults EIO, wrong content EACCES.
    let cases: Vec<(&str, Behaviour, i32)> = vec![
        ("reset", Behaviour::Reset, libc::EIO),
        ("500", Behaviour::Status(500), libc::EIO),
        ("404", Behaviour::Status(404), libc::EIO),
        ("truncated", Behaviour::Truncate(100), libc::EIO),
        (
            "redirect loop",
            Behaviour::Redirect("/targets/loop".into()),
            libc::EIO,
        ),
        (
            "redirect off origin",
            Behaviour::Redirect("http://192.0.2.1/x".into()),
            libc::EIO,
        ),
        ("dripped headers", Behaviour::DripHeaders(ms), libc::EIO),
        ("dripped body", Behaviour::DripBody(ms), libc::EIO),
        (
            "longer length announced",
            Behaviour::AnnounceLength(len + 5),
            libc::EACCES,
        ),
        ("endless body", Behaviour::Endless, libc::EACCES),
        (
            "other bytes",
            Behaviour::Body(pattern(data.len(), 99)),
            libc::EACCES,
        ),
    ];
    hostile.set("targets/loop", Behaviour::Redirect("/targets/loop".into()));
    for (name, behaviour, alone_errno) in cases {
        let _ = std::fs::remove_dir_all(w.cache());
        hostile.set_all(behaviour);
        let d = w
            .mount_remote(
                &good.url("metadata"),
                &[hostile.url("targets"), good.url("targets")],
                &["--http-timeout", "2s"],
            )
            .unwrap();
        let p = w.at("h.bin");
        let got = bounded(name, Duration::from_secs(120), move || std::fs::read(p));
        assert_eq!(
            got.unwrap_or_else(|e| panic!("{name}: {e}")),
            data,
            "{name}"
        );
        drop(d);
        let _ = std::fs::remove_dir_all(w.cache());
        let d = w
            .mount_remote(
                &good.url("metadata"),
                &[hostile.url("targets")],
                &["--http-timeout", "2s"],
            )
            .unwrap();
        let p = w.at("h.bin");
        let got = bounded(name, Duration::from_secs(120), move || std::fs::read(p));
        assert_eq!(errno_of(got), alone_errno, "{name}: {}", d.log());
        let log = d.stop();
        if alone_errno == libc::EIO {
            assert!(log.contains("ERROR open"), "{name}: {log}");
            assert_no_denial(&log);
        } else {
            assert!(log.contains("DENY open"), "{name}: {log}");
        }
    }
}

#[test]
fn a_metadata_server_that_goes_down_or_serves_garbage_keeps_the_last_good_state_and_says_so() {
    let files = many_files(3);
    let w = World::new_owned("garbage", &files, &[]);
    let good = Nginx::start(&w.repo);
    let meta = HttpServer::serve(w.repo.clone());
    let d = w
        .mount_remote(
            &meta.url("metadata"),
            &[good.url("targets")],
            &["--refresh-interval", "1s", "--stale-after", "3s"],
        )
        .unwrap();
    for behaviour in [
        Behaviour::Body(b"{ this is not json".to_vec()),
        Behaviour::Status(503),
        Behaviour::Reset,
    ] {
        meta.set_all(behaviour);
        wait_for(
            "the status to turn red (stale) with the reason",
            || format!("{:?}", w.status_record()),
            || {
                w.status_record().is_some_and(|r| {
                    r["verified"] == false
                        && r["stale"] == true
                        && r["problem"]
                            .as_str()
                            .is_some_and(|p| p.contains("refreshes failed"))
                })
            },
        );
        // The last good metadata still serves.
        for (p, want) in &files {
            assert_eq!(&std::fs::read(w.at(p)).unwrap(), want);
        }
        let (code, out) = status_cmd(&w);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("stale"), "{out}");
        meta.clear();
        wait_for(
            "the status to turn green again",
            || format!("{:?}", w.status_record()),
            || w.status_record().is_some_and(|r| r["verified"] == true),
        );
    }
    d.stop();
}

fn status_cmd(w: &World) -> (i32, String) {
    let out = w.cmd().arg("status").arg(&w.mnt).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn kill9_mid_verification_then_restart_serves_identical_bytes() {
    let data = pattern(400 << 20, 7);
    let w = World::new("kill9verify", &[("huge.bin", &data)], &[]);
    let d = w.mount_local(&["--no-passthrough", "--private-copy"]);
    let p = w.at("huge.bin");
    // Start the first open (a 400 MB copy and hash) and kill the daemon while it runs.
    let reader = std::thread::spawn(move || std::fs::read(p));
    let objects = w.state.join("objects");
    wait_for(
        "a verification to be in progress",
        || d.log(),
        || {
            std::fs::read_dir(&objects).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("tmp."))
            })
        },
    );
    d.kill9();
    assert!(reader.join().unwrap().is_err());
    lazy_umount(&w.mnt);
    let d = w.mount_local(&["--private-copy"]);
    let got = std::fs::read(w.at("huge.bin")).unwrap();
    assert!(got == data, "restart served other bytes");
    let leftovers: Vec<_> = std::fs::read_dir(&objects)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tmp.") || n.starts_with("new."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    d.stop();
}

// ---- The attack review of the hardening change (a hostile mirror, content owner and reader) ----

/// Take a write lease on `path` (held while the returned descriptor is open). SIGIO, which the
/// kernel sends to announce a lease break, is ignored by this test process.
fn hold_write_lease(path: &Path) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, OwnedFd};
    // SAFETY: ignoring a signal has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
    let f: OwnedFd = File::open(path).unwrap().into();
    // SAFETY: F_SETLEASE on a descriptor we own, with an integer argument.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) };
    assert_eq!(r, 0, "F_SETLEASE: {}", std::io::Error::last_os_error());
    f
}

#[test]
fn review_a_leased_backing_file_is_a_busy_fault_not_a_spinning_worker() {
    let files = many_files(3);
    let w = World::new_owned("lease", &files, &[]);
    let d = w.mount_local(&["--no-passthrough"]);
    let lease = hold_write_lease(&w.content.join(&files[0].0));
    // The open answers at once (EIO, busy) instead of spinning until the lease breaks (45 s),
    // and the mount keeps serving other files meanwhile.
    let p = w.at(&files[0].0);
    let got = bounded(
        "an open of a leased file",
        Duration::from_secs(30),
        move || std::fs::read(p),
    );
    assert_eq!(errno_of(got), libc::EIO, "{}", d.log());
    assert_eq!(std::fs::read(w.at(&files[1].0)).unwrap(), files[1].1);
    drop(lease);
    assert_eq!(std::fs::read(w.at(&files[0].0)).unwrap(), files[0].1);
    let log = d.stop();
    assert!(log.contains("holds a lease or lock"), "{log}");
    assert_no_denial(&log);
}

#[test]
fn review_touching_a_file_between_opens_keeps_one_record_per_file() {
    let files = many_files(2);
    let w = World::new_owned("touch", &files, &[]);
    let d = w.mount_local(&["--no-passthrough"]);
    let path = w.content.join(&files[0].0);
    for i in 0..3000u64 {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000 + i);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert_eq!(std::fs::read(w.at(&files[0].0)).unwrap(), files[0].1);
    }
    wait_for(
        "the status record",
        || format!("{}", status_tables(&w)),
        || status_tables(&w)["records"].as_u64().is_some_and(|n| n > 0),
    );
    let t = status_tables(&w);
    // One record per backing file (its latest version) and one verified object: not 3000.
    assert!(t["records"].as_u64().unwrap() <= 4, "{t}");
    d.stop();
}

#[test]
fn review_a_dripping_download_holds_no_fuse_worker_and_its_waiters_share_its_failure() {
    let big = pattern(300_000, 8);
    let files = vec![
        ("big.bin".to_owned(), big),
        ("cached.txt".to_owned(), b"cached".to_vec()),
    ];
    let w = World::new_owned("pinned", &files, &[]);
    let good = Nginx::start(&w.repo);
    let hostile = HttpServer::serve(w.repo.clone());
    let d = w
        .mount_remote(
            &good.url("metadata"),
            &[hostile.url("targets")],
            &["--http-timeout", "5s"],
        )
        .unwrap();
    assert_eq!(std::fs::read(w.at("cached.txt")).unwrap(), b"cached");
    hostile.set_all(Behaviour::DripBody(Duration::from_millis(200)));
    // 24 readers of the dripping file (more than the 16 FUSE workers).
    let readers: Vec<_> = (0..24)
        .map(|_| {
            let p = w.at("big.bin");
            std::thread::spawn(move || std::fs::read(p))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile everything else is served at once: on main every worker was held.
    let (mnt, p) = (w.mnt.clone(), w.at("cached.txt"));
    let other = bounded(
        "a cached open and ls during the drip",
        Duration::from_secs(4),
        move || (std::fs::read(p), std::fs::read_dir(mnt).map(|d| d.count())),
    );
    assert_eq!(other.0.unwrap(), b"cached");
    assert_eq!(other.1.unwrap(), 2);
    for r in readers {
        assert_eq!(errno_of(r.join().unwrap()), libc::EIO);
    }
    // The waiters took the failure of the attempt they waited for: not one download each.
    let gets = hostile
        .counts()
        .iter()
        .filter(|(path, _)| path.ends_with(".big.bin"))
        .map(|(_, n)| *n)
        .sum::<usize>();
    assert!(
        gets <= 3,
        "{gets} downloads of one dripping file\n{}",
        d.log()
    );
    // Every reader's open is counted as a network fault. (Which of the 24 gets the log line is
    // up to the throttle: the same path and reason is logged once per 10 s.)
    let faults = || {
        w.status_record()
            .and_then(|r| r["counters"]["faults"]["network"].as_u64())
            .unwrap_or(0)
    };
    wait_for(
        "24 network faults in the status record",
        || format!("{} faults\n{}", faults(), d.log()),
        || faults() >= 24,
    );
    assert_no_denial(&d.stop());
}

#[test]
fn review_a_reader_looping_on_a_refused_file_cannot_flood_the_log() {
    let w = World::new_owned("flood", &many_files(1), &[]);
    w.write("unregistered.txt", b"not signed");
    let d = w.mount_local(&["--audit-log", &w.audit.display().to_string()]);
    for _ in 0..2000 {
        assert_eq!(
            errno_of(std::fs::read(w.at("unregistered.txt"))),
            libc::EACCES
        );
    }
    wait_for(
        "the status record to count every denial",
        || format!("{:?}", w.status_record()),
        || {
            w.status_record()
                .is_some_and(|r| r["counters"]["denied"]["unregistered"].as_u64() == Some(2000))
        },
    );
    let log = d.stop();
    assert_eq!(
        log.matches("DENY open \"unregistered.txt\"").count(),
        1,
        "{log}"
    );
    let denies = w
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "deny")
        .count();
    assert_eq!(denies, 1);
}

#[test]
fn review_an_offline_start_is_not_a_green_check_mark_and_a_404_timestamp_starts_offline() {
    let files = many_files(2);
    let w = World::new_owned("offline404", &files, &[]);
    let good = Nginx::start(&w.repo);
    let meta = HttpServer::serve(w.repo.clone());
    // A first start fills the state dir.
    let d = w
        .mount_remote(&meta.url("metadata"), &[good.url("targets")], &[])
        .unwrap();
    d.stop();
    for behaviour in [
        Behaviour::Status(404),
        Behaviour::Status(403),
        Behaviour::Reset,
    ] {
        meta.set("metadata/timestamp.json", behaviour);
        let d = w
            .mount_remote(&meta.url("metadata"), &[good.url("targets")], &[])
            .unwrap_or_else(|(code, log)| panic!("exit {code}: {log}"));
        assert_eq!(std::fs::read(w.at(&files[0].0)).unwrap(), files[0].1);
        let r = w.status_record().unwrap();
        assert_eq!(r["verified"], false, "{r}");
        assert!(
            r["problem"]
                .as_str()
                .is_some_and(|p| p.contains("started offline")),
            "{r}"
        );
        let (code, out) = status_cmd(&w);
        assert_eq!(code, 1, "{out}");
        let log = d.stop();
        assert!(log.contains("OFFLINE"), "{log}");
    }
}

#[test]
fn review_content_length_beside_transfer_encoding_is_ignored() {
    let data = pattern(50_000, 9);
    let w = World::new("te", &[("c.bin", &data)], &[]);
    let good = Nginx::start(&w.repo);
    let hostile = HttpServer::serve(w.repo.clone());
    hostile.set_all(Behaviour::Chunked(Some(99)));
    let d = w
        .mount_remote(&good.url("metadata"), &[hostile.url("targets")], &[])
        .unwrap();
    assert_eq!(std::fs::read(w.at("c.bin")).unwrap(), data, "{}", d.log());
    d.stop();
}

/// The value of the extended attribute `name` of `path` (as text).
fn xattr_of(path: &Path, name: &str) -> Option<String> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a writable buffer of the given length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| String::from_utf8_lossy(&buf[..len as usize]).into_owned())
}

#[test]
fn review_a_verified_copy_another_path_still_lists_survives_a_republish() {
    // `a` and `dup` have the same content, so one verified copy serves both. When `a` changes,
    // the copy is superseded for `a` only: `dup` must keep it, not be hashed again. (Attack
    // review of 629ea59: the shared copy was dropped, `dup` went back to unverified.)
    let files = vec![
        ("a".to_owned(), b"same content\n".to_vec()),
        ("dup".to_owned(), b"same content\n".to_vec()),
    ];
    let w = World::new_owned("shared-copy", &files, &[]);
    let d = w.mount_local(&["--refresh-interval", "1s"]);
    for (p, data) in &files {
        assert_eq!(&std::fs::read(w.at(p)).unwrap(), data);
    }
    assert_eq!(
        xattr_of(&w.at("dup"), "user.trustfs.verified").as_deref(),
        Some("yes")
    );
    w.write("a", b"new content\n");
    w.publish();
    wait_for(
        "the refresh to switch in the new `a`",
        || d.log(),
        || std::fs::read(w.at("a")).is_ok_and(|b| b == b"new content\n"),
    );
    assert_eq!(
        xattr_of(&w.at("dup"), "user.trustfs.verified").as_deref(),
        Some("yes"),
        "the copy `dup` still lists was dropped\n{}",
        d.log()
    );
    assert_eq!(std::fs::read(w.at("dup")).unwrap(), b"same content\n");
    d.stop();
}

#[test]
fn an_idle_refresh_fetches_only_the_next_root_and_the_timestamp() {
    // Nothing published: each refresh asks for N+1.root.json and timestamp.json, finds them as
    // trusted, and stops there (no snapshot, no targets, no new index). Then a publish is
    // followed as before.
    let files = vec![("a.txt".to_owned(), b"one\n".to_vec())];
    let w = World::new_owned("quiet", &files, &[]);
    let server = HttpServer::serve(w.repo.clone());
    let d = w
        .mount_remote(
            &server.url("metadata"),
            &[server.url("targets")],
            &["--refresh-interval", "1s"],
        )
        .unwrap();
    assert_eq!(std::fs::read(w.at("a.txt")).unwrap(), b"one\n");
    let count = |suffix: &str| {
        server
            .counts()
            .iter()
            .filter(|(p, _)| p.ends_with(suffix))
            .map(|(_, n)| *n)
            .sum::<usize>()
    };
    let (snapshots, targets) = (count("snapshot.json"), count("targets.json"));
    let timestamps = count("timestamp.json");
    wait_for(
        "three refreshes",
        || format!("{:?}\n{}", server.counts(), d.log()),
        || count("timestamp.json") >= timestamps + 3,
    );
    assert_eq!(count("snapshot.json"), snapshots, "{:?}", server.counts());
    assert_eq!(count("targets.json"), targets, "{:?}", server.counts());
    assert!(count("2.root.json") >= 3, "{:?}", server.counts());
    // And stopped there: no full client workflow (which would also fetch nothing new here, but
    // re-verify everything and build a new index every second).
    let unchanged = || {
        w.status_record()
            .and_then(|r| r["counters"]["refresh_unchanged"].as_u64())
            .unwrap_or(0)
    };
    wait_for(
        "quiet refreshes in the status record",
        || d.log(),
        || unchanged() >= 2,
    );
    assert!(w.status_record().unwrap()["stale"] == false);

    w.write("a.txt", b"two\n");
    w.publish();
    wait_for(
        "the new version",
        || d.log(),
        || std::fs::read(w.at("a.txt")).is_ok_and(|b| b == b"two\n"),
    );
    assert!(count("snapshot.json") > snapshots, "{:?}", server.counts());
    // And quiet again after the switch.
    let snapshots = count("snapshot.json");
    let timestamps = count("timestamp.json");
    wait_for(
        "three more refreshes",
        || format!("{:?}", server.counts()),
        || count("timestamp.json") >= timestamps + 3,
    );
    assert_eq!(count("snapshot.json"), snapshots, "{:?}", server.counts());
    let log = d.stop();
    assert!(log.contains("metadata updated"), "{log}");
}

// ---- Issue 11, item 4: lazy remote reads (`--lazy-fetch`) ----

/// Bytes nginx sent, from its access log (`METHOD URI STATUS BYTES`), once it has settled.
fn bytes_sent(server: &Nginx) -> u64 {
    server.gets("");
    server
        .access_log()
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `w` mounted from `server` (metadata and targets), with `extra` options.
/// [`big_world`] and nginx serving its repository.
fn big_world_served(tag: &str) -> (World, Vec<u8>, Nginx) {
    let (w, data) = big_world(tag);
    let server = Nginx::start(&w.repo);
    (w, data, server)
}

fn big_world(tag: &str) -> (World, Vec<u8>) {
    let data = pattern(64 << 20, 11);
    let w = World::new(tag, &[("big.bin", &data)], &[]);
    (w, data)
}

/// A read of 1 MiB in the middle of a 64 MiB target fetches the outboard and one 4 MiB window,
/// not the file; the bytes are the signed ones; nothing is kept as a whole object.
#[test]
fn lazy_fetch_transfers_only_what_is_read() {
    let (w, data, server) = big_world_served("lazyread");
    let d = w.mount_nginx(&server, &["--lazy-fetch"]).unwrap();
    let before = bytes_sent(&server);
    let f = File::open(w.at("big.bin")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    f.read_exact_at(&mut buf, 32 << 20).unwrap();
    assert_eq!(buf, data[32 << 20..33 << 20]);
    let sent = bytes_sent(&server) - before;
    assert!(
        sent <= 8 << 20,
        "{sent} bytes sent for a 1 MiB read\n{}",
        d.log()
    );
    assert!(sent >= 1 << 20, "{sent}");
    // Out of order, as readahead sends READs: a window fetched from its middle is not fetched
    // again by the read of its start; only the chunks before the middle are.
    let mut small = vec![0u8; 4096];
    f.read_exact_at(&mut small, (40 << 20) + (128 << 10))
        .unwrap();
    assert_eq!(small, data[(40 << 20) + (128 << 10)..][..4096]);
    let before = bytes_sent(&server);
    f.read_exact_at(&mut small, 40 << 20).unwrap();
    assert_eq!(small, data[40 << 20..][..4096]);
    let again = bytes_sent(&server) - before;
    assert!(
        again <= 1 << 20,
        "{again} bytes sent for the start of a window whose rest was there\n{}",
        server.access_log().join("\n")
    );
    // A random read near a window's end (O_DIRECT: no kernel readahead) fetches to that end and
    // nothing more: no prefetch of the next window before a read continues there.
    let direct = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(w.at("big.bin"))
        .unwrap();
    let before = bytes_sent(&server);
    let mut mib = vec![0u8; 1 << 20];
    direct.read_exact_at(&mut mib, 51 << 20).unwrap();
    assert!(mib[..] == data[51 << 20..52 << 20]);
    let near_end = bytes_sent(&server) - before;
    assert!(
        near_end <= 2 << 20,
        "{near_end} bytes sent for 1 MiB read at the end of a window\n{}",
        server.access_log().join("\n")
    );
    drop(direct);
    drop(f);
    let log = d.stop();
    assert!(!log.contains("DENY") && !log.contains("ERROR"), "{log}");
    let whole: Vec<_> = std::fs::read_dir(w.cache())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("t-"))
        .collect();
    assert!(whole.is_empty(), "{whole:?}");
}

/// A mirror that serves other bytes in a range: that read fails with EIO (`DENY read`, the chunk
/// named), other ranges are served, and nothing it sent is kept: once the mirror is right again
/// the same range reads correctly.
#[test]
fn lazy_fetch_refuses_a_corrupted_range_and_keeps_nothing_of_it() {
    let (w, data) = big_world("lazycorrupt");
    let served = std::fs::read_dir(w.repo.join("targets"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".big.bin"))
        .unwrap();
    let mut bad = data.clone();
    bad[40 << 20] ^= 0xff;
    std::fs::write(&served, &bad).unwrap();
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &["--lazy-fetch"]).unwrap();
    let f = File::open(w.at("big.bin")).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(errno_of(f.read_exact_at(&mut buf, 40 << 20)), libc::EIO);
    f.read_exact_at(&mut buf, 10 << 20).unwrap();
    assert_eq!(buf, data[10 << 20..(10 << 20) + 4096]);
    std::fs::write(&served, &data).unwrap();
    f.read_exact_at(&mut buf, 40 << 20).unwrap();
    assert_eq!(buf, data[40 << 20..(40 << 20) + 4096]);
    drop(f);
    let log = d.stop();
    assert!(
        log.contains("DENY read \"big.bin\"") && log.contains("differs from the signed chunk root"),
        "{log}"
    );
}

/// Files whose length is not a multiple of 64 KiB: the short last chunk alone in its batch, or
/// after a whole one, and the file read whole. Each tail read gets the signed bytes from one range
/// request (it used to be fetched again and again, never counted as kept, the read hanging).
#[test]
fn lazy_fetch_serves_the_short_last_chunk_of_a_file() {
    let a = pattern((16 << 20) + 1000, 77);
    let b = pattern((16 << 20) + 100_000, 78);
    let c = pattern((16 << 20) + 100_000, 79);
    let w = World::new(
        "lazytail",
        &[("a.bin", &a), ("b.bin", &b), ("c.bin", &c)],
        &[],
    );
    let server = Nginx::start(&w.repo);
    let d = w.mount_nginx(&server, &["--verify", "lazy"]).unwrap();
    // A read that hangs fails the test instead of hanging it (no time is asserted otherwise).
    let bounded = |path: PathBuf, at: u64| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                .unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let got = f.read_at(&mut buf, at).map(|n| buf[..n].to_vec());
            let _ = tx.send(got);
        });
        rx.recv_timeout(Duration::from_secs(120))
            .expect("a read of the last chunk never returned")
            .unwrap()
    };
    let requests = |name: &str| server.gets(name);
    assert!(bounded(w.at("a.bin"), 16 << 20) == a[16 << 20..]);
    assert_eq!(requests(".a.bin"), 1);
    assert!(bounded(w.at("b.bin"), 257 * 65536) == b[257 * 65536..]);
    assert_eq!(requests(".b.bin"), 1);
    assert!(std::fs::read(w.at("c.bin")).unwrap() == c);
    assert_no_denial(&d.stop());
}

/// `--verify lazy-above=SIZE` on a remote mount: smaller targets are downloaded whole at open (an
/// object in the cache), larger ones fetched as they are read (a partial file); `--lazy-fetch`
/// is `--verify lazy`; `--chunks-url` without a lazy mode is a usage error.
#[test]
fn remote_lazy_above_a_size_downloads_small_targets_whole_and_fetches_large_ones_lazily() {
    let small = pattern(1 << 20, 31);
    let big = pattern(64 << 20, 32);
    let w = World::new(
        "lazyaboveremote",
        &[("small.bin", &small), ("big.bin", &big)],
        &[],
    );
    let server = Nginx::start(&w.repo);
    let targets = [server.url("targets")];
    let (code, log) = w
        .mount_remote(
            &server.url("metadata"),
            &targets,
            &["--chunks-url", "http://x/"],
        )
        .map(|d| d.stop())
        .expect_err("--chunks-url without a lazy mode mounted");
    assert_eq!(code, trustfs::cli::EXIT_USAGE, "{log}");
    let d = w
        .mount_remote(
            &server.url("metadata"),
            &targets,
            &["--verify", "lazy-above=8M"],
        )
        .unwrap();
    assert!(std::fs::read(w.at("small.bin")).unwrap() == small);
    let f = File::open(w.at("big.bin")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    f.read_exact_at(&mut buf, 30 << 20).unwrap();
    assert!(buf[..] == big[30 << 20..31 << 20]);
    drop(f);
    let names = |dir: PathBuf| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let whole: Vec<String> = names(w.cache())
        .into_iter()
        .filter(|n| n.starts_with("t-"))
        .collect();
    let partial: Vec<String> = names(w.cache().join("partial"))
        .into_iter()
        .filter(|n| n.ends_with(".data"))
        .collect();
    assert_eq!(
        whole.len(),
        1,
        "the small target downloaded whole: {whole:?}"
    );
    let size = std::fs::metadata(w.cache().join(&whole[0])).unwrap().len();
    assert_eq!(size, small.len() as u64, "{whole:?}");
    assert_eq!(
        partial.len(),
        1,
        "the big target fetched lazily: {partial:?}"
    );
    assert_no_denial(&d.stop());
}

/// A first mirror that sends one wrong chunk in the middle of a range hands over to the next one
/// at that chunk: the read gets the signed bytes, and the next mirror sends only the rest of the
/// window, not all of it.
#[test]
fn lazy_fetch_hands_a_range_over_to_the_next_mirror_at_a_wrong_chunk() {
    let (w, data) = big_world("lazyhandover");
    let bad_root = w.repo.with_file_name("badmirror");
    let name = std::fs::read_dir(w.repo.join("targets"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .find(|n| n.to_string_lossy().ends_with(".big.bin"))
        .unwrap();
    std::fs::create_dir_all(bad_root.join("targets")).unwrap();
    let mut bad = data.clone();
    bad[(42 << 20) + (1 << 19) + 100] ^= 0xff; // chunk 680, in the middle of a batch
    std::fs::write(bad_root.join("targets").join(&name), &bad).unwrap();
    let bad_server = Nginx::start(&bad_root);
    let server = Nginx::start(&w.repo);
    let d = w
        .mount_remote(
            &server.url("metadata"),
            &[bad_server.url("targets"), server.url("targets")],
            &["--lazy-fetch"],
        )
        .unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(w.at("big.bin"))
        .unwrap();
    let mut buf = vec![0u8; 4 << 20];
    f.read_exact_at(&mut buf, 40 << 20).unwrap();
    assert!(buf[..] == data[40 << 20..44 << 20], "other bytes served");
    drop(f);
    assert!(server.gets(".big.bin") >= 1); // and the access log has settled
    let sent: u64 = server
        .access_log()
        .iter()
        .filter(|l| l.contains(".big.bin "))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    // The window is 40..44 MiB; the wrong chunk starts at 42.5 MiB.
    assert_eq!(sent, 3 << 19, "{:?}", server.access_log());
    assert_no_denial(&d.stop());
}

/// A first mirror that ignores ranges (answers 200 with the whole file) is skipped for the next
/// one, which serves the range.
#[test]
fn lazy_fetch_skips_a_mirror_that_ignores_ranges() {
    let (w, data, server) = big_world_served("lazynorange");
    let plain = HttpServer::serve(w.repo.clone());
    let d = w
        .mount_remote(
            &server.url("metadata"),
            &[plain.url("targets"), server.url("targets")],
            &["--lazy-fetch"],
        )
        .unwrap();
    let f = File::open(w.at("big.bin")).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, 50 << 20).unwrap();
    assert_eq!(buf, data[50 << 20..(50 << 20) + 4096]);
    drop(f);
    let log = d.stop();
    assert!(!log.contains("DENY"), "{log}");
}

/// kill -9 while a file is half read, restart: the chunks fetched before are used (not fetched
/// again), the rest is fetched, and the whole file reads back identical.
#[test]
fn lazy_fetch_resumes_after_kill9_and_serves_identical_bytes() {
    let (w, data, server) = big_world_served("lazyresume");
    let args = ["--lazy-fetch"];
    let d = w.mount_nginx(&server, &args).unwrap();
    let f = File::open(w.at("big.bin")).unwrap();
    let mut head = vec![0u8; 32 << 20];
    f.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(head, data[..32 << 20]);
    drop(f);
    d.kill9();
    lazy_umount(&w.mnt);
    // The restart talks to a server of its own, so its access log counts only what the restart
    // fetched (a request the killed daemon had in flight may be logged late; it must not count).
    let again = Nginx::start(&w.repo);
    let d = w
        .mount_remote(&again.url("metadata"), &[again.url("targets")], &args)
        .unwrap();
    assert!(
        std::fs::read(w.at("big.bin")).unwrap() == data,
        "restart served other bytes"
    );
    let log = d.stop();
    let sent = bytes_sent(&again);
    drop(server);
    assert!(
        sent < 40 << 20,
        "{sent} bytes fetched again: the first half was not kept\n{}\n{log}",
        again.access_log().join("\n")
    );
}

/// The partial file cut to nothing and grown back (same inode, now holes) or removed under a
/// running daemon: what it had noted as there is checked again on the read, so the read fetches
/// again and serves the signed bytes, never the zeros of a hole.
#[test]
fn lazy_fetch_never_serves_a_partial_file_changed_under_it() {
    let (w, data, server) = big_world_served("lazycut");
    let d = w.mount_nginx(&server, &["--lazy-fetch"]).unwrap();
    // O_DIRECT: every read reaches the daemon (no page cache in between).
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(w.at("big.bin"))
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf[..] == data[..1 << 20]);
    let partial = std::fs::read_dir(w.cache().join("partial"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "data"))
        .expect("a partial data file");
    let p = std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap();
    p.set_len(0).unwrap();
    p.set_len(data.len() as u64).unwrap();
    drop(p);
    buf.fill(0xee);
    if let Err(e) = f.read_exact_at(&mut buf, 0) {
        panic!("{e}: {}", d.log());
    }
    assert!(buf[..] == data[..1 << 20], "zeros of a hole served");
    std::fs::remove_file(&partial).unwrap();
    buf.fill(0xee);
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf[..] == data[..1 << 20], "bytes of a removed file served");
    drop(f);
    assert_no_denial(&d.stop());
}

/// Partial files are bounded by `--cache-max-size`: a closed file's partial file is evicted when
/// another one's fetches pass the bound, an open one never is, and an evicted file reads again.
#[test]
fn lazy_fetch_partial_files_are_bounded_by_the_cache_size() {
    let a = pattern(16 << 20, 21);
    let b = pattern(16 << 20, 22);
    let w = World::new("lazyevict", &[("a.bin", &a), ("b.bin", &b)], &[]);
    let server = Nginx::start(&w.repo);
    let d = w
        .mount_nginx(&server, &["--lazy-fetch", "--cache-max-size", "20M"])
        .unwrap();
    let partial = w.cache().join("partial");
    let data_files = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&partial)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".data"))
            .collect();
        v.sort();
        v
    };
    assert!(std::fs::read(w.at("a.bin")).unwrap() == a);
    let after_a = data_files();
    assert_eq!(after_a.len(), 1, "{after_a:?}");
    // b read while open: together over the bound. b is held, so a goes (when b's fetches pass
    // the bound, or when a's close reaches the daemon, whichever comes last).
    let fb = File::open(w.at("b.bin")).unwrap();
    let mut got = Vec::new();
    (&fb).read_to_end(&mut got).unwrap();
    assert!(got == b);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut left = data_files();
    while left.len() != 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = data_files();
    }
    assert_eq!(left.len(), 1, "{left:?}\n{}", d.log());
    assert_ne!(
        left, after_a,
        "the open file's partial file was evicted, not the closed one"
    );
    drop(fb);
    assert!(std::fs::read(w.at("a.bin")).unwrap() == a);
    let log = d.stop();
    assert!(log.contains("cache: evicted the partial file"), "{log}");
    assert_no_denial(&log);
}

/// A mirror that stalls every range request: concurrent readers of the same chunks wait behind
/// one fetch, and when it fails they get its answer (EIO, a network fault) instead of each
/// repeating the stalled request after the other; readers of other windows fetch theirs at the
/// same time, each range asked once.
#[test]
fn lazy_fetch_readers_behind_a_stalled_mirror_share_its_failure() {
    let (w, _data, server) = big_world_served("lazystall");
    let hostile = HttpServer::serve(w.repo.clone());
    let target = std::fs::read_dir(w.repo.join("targets"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".big.bin"))
        .unwrap();
    let target = format!("targets/{target}");
    hostile.set(&target, Behaviour::DripHeaders(Duration::from_millis(500)));
    let d = w
        .mount_remote(
            &server.url("metadata"),
            &[hostile.url("targets")],
            &["--lazy-fetch", "--http-timeout", "2s"],
        )
        .unwrap();
    // O_DIRECT: one READ per pread, no readahead and no kernel retry of a failed page.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(w.at("big.bin"))
        .unwrap();
    let f = std::sync::Arc::new(f);
    let asked = || {
        hostile
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| **p == target)
            .count()
    };
    let read_all = |offsets: Vec<u64>| {
        let readers: Vec<_> = offsets
            .into_iter()
            .map(|at| {
                let f = f.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 4096];
                    errno_of(f.read_exact_at(&mut buf, at))
                })
            })
            .collect();
        for r in readers {
            assert_eq!(r.join().unwrap(), libc::EIO);
        }
    };
    // Six readers of one chunk.
    read_all((0..6u64).map(|i| (9 << 20) + i * 4096).collect());
    let same = asked();
    // Six readers of six windows.
    read_all((0..6u64).map(|i| (i * 8 + 1) << 20).collect());
    let apart = asked() - same;
    drop(f);
    let log = d.stop();
    assert!(
        same <= 2,
        "{same} range requests for 6 readers of one chunk:\n{log}"
    );
    assert!(
        apart <= 6,
        "{apart} range requests for 6 readers of 6 windows:\n{log}"
    );
    assert_no_denial(&log);
    assert!(log.contains("ERROR read \"big.bin\""), "{log}");
}
