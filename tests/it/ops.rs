//! Operating a mount: `trustfs status` (the green check mark) for live, killed, expired and
//! non-trustfs mounts, restart on the mountpoint of a killed daemon, the JSON audit log, the
//! Prometheus `/metrics` endpoint (checked by a strict text-format parser below) and the
//! `user.trustfs.*` xattrs. Runs the `trustfs` binary on real FUSE mounts; needs root and
//! /dev/fuse; fails, never skips. Every wait is a bounded wait for a condition.

use crate::harness::cli;
use crate::harness::nginx::free_port;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cli::{errno_of, wait_for, World};
use sha2::{Digest, Sha256};

/// `trustfs status ARGS` with the world's runtime dir: (exit code, stdout).
fn status(w: &World, args: &[&str]) -> (i32, String) {
    let out = w.cmd().arg("status").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// errno of `statfs(path)` (None on success). statfs always reaches the daemon.
fn statfs_errno(path: &Path) -> Option<i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain data, filled by the kernel.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and a writable statfs.
    let r = unsafe { libc::statfs(p.as_ptr(), &mut buf) };
    (r != 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap())
}

fn world(tag: &str, expires: &[&str]) -> World {
    World::new(
        tag,
        &[
            ("hello.txt", b"hello, verified world\n"),
            ("sub/data.bin", &[7u8; 1000]),
        ],
        expires,
    )
}

#[test]
fn status_is_green_for_a_live_mount_red_after_sigkill_and_a_restart_on_the_dead_mountpoint_works() {
    let w = world("status", &[]);
    let mnt = w.mnt.to_str().unwrap().to_owned();
    let d = w.mount_local(&[]);
    assert_eq!(
        std::fs::read(w.at("hello.txt")).unwrap(),
        b"hello, verified world\n"
    );
    // Counts in the record are at most `WRITE_INTERVAL_SECS` old: wait for the next write.
    wait_for(
        "the record to count the open",
        || d.log(),
        || status(&w, &[&mnt]).1.contains("1 opens served"),
    );
    let (code, out) = status(&w, &[&mnt]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with(&format!("✔ {mnt}  verified")), "{out}");
    for want in [
        "timestamp   v2",
        "targets     v2",
        "keys        root: 1 of 1",
        "2 targets; 1 opens served, 0 denied",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let (code, out) = status(&w, &[&mnt, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["verified"], true, "{v}");
    assert_eq!(v[0]["status"]["pid"], d.pid());
    assert_eq!(v[0]["status"]["metadata"]["timestamp_version"], 2);
    assert_eq!(v[0]["status"]["metadata"]["targets_version"], 2);
    assert_eq!(v[0]["status"]["metadata"]["root_version"], 1);
    assert_eq!(v[0]["status"]["targets"], 2);
    assert_eq!(v[0]["status"]["counters"]["served"], 1);

    // SIGKILL: the mount stays behind, dead (ENOTCONN); status says so.
    let pid = d.pid();
    d.kill9();
    assert_eq!(
        statfs_errno(&w.mnt),
        Some(libc::ENOTCONN),
        "a dead FUSE mount"
    );
    let (code, out) = status(&w, &[&mnt]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with(&format!("✘ {mnt}  NOT verified")), "{out}");
    assert!(
        out.contains(&format!("daemon pid {pid} is not running (stale mount)")),
        "{out}"
    );
    let (_, out) = status(&w, &[&mnt, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["verified"], false);

    // A restart on the same mountpoint detaches the dead mount and serves again.
    let d = w.mount_local(&[]);
    assert!(d.log().contains("was a dead FUSE mount"), "{}", d.log());
    assert_eq!(
        std::fs::read(w.at("sub/data.bin")).unwrap(),
        vec![7u8; 1000]
    );
    let (code, out) = status(&w, &[&mnt]);
    assert_eq!(code, 0, "{out}");

    // A clean stop removes the record; the path is then no trustfs mount.
    d.stop();
    assert!(w.status_record().is_none());
    let (code, out) = status(&w, &[&mnt]);
    assert_eq!(code, 1);
    assert!(out.contains("is not a trustfs mount"), "{out}");
}

#[test]
fn status_is_red_for_expired_metadata_and_for_a_plain_directory() {
    let w = world("status-expired", &["timestamp=12s"]);
    let mnt = w.mnt.to_str().unwrap().to_owned();
    let d = w.mount_local(&[]);
    wait_for(
        "status to report the expiry",
        || d.log(),
        || {
            let (code, out) = status(&w, &[&mnt]);
            code == 1 && out.contains("timestamp metadata expired at")
        },
    );
    let (_, out) = status(&w, &[&mnt, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["verified"], false);
    assert_eq!(errno_of(std::fs::read(w.at("hello.txt"))), libc::EACCES);
    d.stop();

    let plain = w.dir.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let (code, out) = status(&w, &[plain.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.starts_with("✘"), "{out}");
    assert!(out.contains("is not a trustfs mount"), "{out}");
}

#[test]
fn audit_log_has_one_json_line_per_denial_and_metadata_change() {
    let w = world("audit", &[]);
    let d = w.mount_local(&["--audit-log", w.audit.to_str().unwrap()]);
    w.write("rogue.sh", b"#!/bin/sh\necho never signed\n");
    w.write("hello.txt", b"hello, ALTERED world\n");
    assert_eq!(errno_of(std::fs::read(w.at("rogue.sh"))), libc::EACCES);
    assert_eq!(errno_of(std::fs::read(w.at("hello.txt"))), libc::EACCES);
    d.stop();
    let lines = w.audit_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let start = &lines[0];
    assert_eq!(start["event"], "metadata");
    assert!(start["previous"].is_null());
    assert_eq!(start["targets"], 2);
    assert_eq!(start["metadata"]["timestamp"], 2);
    // FUSE reports the thread that asked (its tid); `read` ran on this test's thread.
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    for (line, path, reason, detail) in [
        (&lines[1], "rogue.sh", "unregistered", "not listed"),
        (&lines[2], "hello.txt", "altered", "mismatch"),
    ] {
        assert_eq!(line["event"], "deny", "{line}");
        assert_eq!(line["path"], path);
        assert_eq!(line["reason"], reason);
        assert!(line["detail"].as_str().unwrap().contains(detail), "{line}");
        assert_eq!(line["pid"], me);
        assert_eq!(line["uid"], 0);
        assert_eq!(line["metadata"]["targets"], 2);
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
    }
}

fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// One parsed sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict parser of the Prometheus text exposition format 0.0.4, as far as trustfs uses it:
/// `# HELP name text` and `# TYPE name kind` before a family's samples, each family declared
/// once, samples `name{label="value",...} value` whose name is the family's (or, for
/// histograms, `_bucket` with an `le` label, `_sum`, `_count`), a family's samples contiguous,
/// histogram buckets cumulative and ending with `le="+Inf"` equal to `_count`. Panics on any
/// violation; returns the samples.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    assert!(
        text.ends_with('\n'),
        "the exposition must end with a newline"
    );
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP without text");
            assert!(valid_name(name), "bad name in {line:?}");
            assert!(!help.is_empty());
            assert!(helps.insert(name.to_owned()), "second HELP for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE without kind");
            assert!(valid_name(name), "bad name in {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad kind in {line:?}"
            );
            assert!(
                kinds.insert(name.to_owned(), kind.to_owned()).is_none(),
                "second TYPE for {name}"
            );
            if let Some(prev) = current.replace(name.to_owned()) {
                finished.insert(prev);
            }
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line {line:?}");
        assert!(!line.is_empty(), "empty line");
        // name{labels} value
        let (series, value) = line.rsplit_once(' ').expect("sample without value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("unclosed label set");
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert!(
                        valid_name(&key) && !key.contains(':'),
                        "bad label name in {line:?}"
                    );
                    assert_eq!(
                        chars.next(),
                        Some('"'),
                        "label value not quoted in {line:?}"
                    );
                    let mut val = String::new();
                    loop {
                        match chars.next().expect("unterminated label value") {
                            '\\' => match chars.next() {
                                Some('n') => val.push('\n'),
                                Some(c @ ('\\' | '"')) => val.push(c),
                                other => panic!("bad escape {other:?} in {line:?}"),
                            },
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    assert!(
                        labels.insert(key, val).is_none(),
                        "repeated label in {line:?}"
                    );
                    match chars.next() {
                        None => break,
                        Some(',') => {}
                        Some(c) => panic!("unexpected {c:?} in {line:?}"),
                    }
                }
                (n, labels)
            }
            None => (series, BTreeMap::new()),
        };
        assert!(valid_name(name), "bad metric name in {line:?}");
        let family = current.clone().expect("sample before any TYPE");
        let ok = if kinds[&family] == "histogram" {
            let suffix = name.strip_prefix(family.as_str());
            match suffix {
                Some("_bucket") => labels.contains_key("le"),
                Some("_sum") | Some("_count") => true,
                _ => false,
            }
        } else {
            name == family
        };
        assert!(
            ok,
            "sample {line:?} does not belong to the family {family} declared before it"
        );
        assert!(helps.contains(&family), "family {family} has no HELP");
        assert!(!finished.contains(&family));
        samples.push((name.to_owned(), labels, value));
    }
    // Histograms: cumulative buckets, +Inf last and equal to _count.
    for (family, kind) in &kinds {
        if kind != "histogram" {
            continue;
        }
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.0 == format!("{family}_bucket"))
            .collect();
        assert!(!buckets.is_empty());
        assert!(
            buckets.windows(2).all(|w| w[0].2 <= w[1].2),
            "{family} not cumulative"
        );
        let last = buckets.last().unwrap();
        assert_eq!(last.1["le"], "+Inf");
        let count = samples
            .iter()
            .find(|s| s.0 == format!("{family}_count"))
            .expect("histogram without _count");
        assert_eq!(last.2, count.2);
    }
    samples
}

fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
        .2
}

#[test]
fn metrics_endpoint_serves_valid_prometheus_text_with_the_mounts_counts() {
    let w = world("metrics", &[]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = w.mount_local(&["--metrics-addr", &addr]);
    w.write("rogue.sh", b"unsigned");
    assert_eq!(
        std::fs::read(w.at("hello.txt")).unwrap(),
        b"hello, verified world\n"
    );
    assert_eq!(
        std::fs::read(w.at("hello.txt")).unwrap(),
        b"hello, verified world\n"
    );
    assert_eq!(errno_of(std::fs::read(w.at("rogue.sh"))), libc::EACCES);
    let (head, body) = http_get(port, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let s = parse_prometheus(&body);
    assert_eq!(sample(&s, "trustfs_up", &[]), 1.0);
    assert_eq!(sample(&s, "trustfs_served_total", &[]), 2.0);
    assert_eq!(sample(&s, "trustfs_opens_total", &[]), 3.0);
    assert_eq!(
        sample(&s, "trustfs_denials_total", &[("reason", "unregistered")]),
        1.0
    );
    assert_eq!(
        sample(&s, "trustfs_denials_total", &[("reason", "altered")]),
        0.0
    );
    assert_eq!(sample(&s, "trustfs_cache_misses_total", &[]), 1.0);
    assert_eq!(sample(&s, "trustfs_cache_hits_total", &[]), 1.0);
    assert_eq!(sample(&s, "trustfs_verify_seconds_count", &[]), 1.0);
    assert_eq!(sample(&s, "trustfs_opened_bytes_total", &[]), 44.0);
    assert_eq!(sample(&s, "trustfs_targets", &[]), 2.0);
    assert_eq!(
        sample(&s, "trustfs_metadata_version", &[("role", "timestamp")]),
        2.0
    );
    assert!(
        sample(
            &s,
            "trustfs_metadata_expires_in_seconds",
            &[("role", "timestamp")]
        ) > 0.0
    );
    let (head, _) = http_get(port, "/other");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    d.stop();
}

#[test]
fn strict_prometheus_parser_rejects_undeclared_families() {
    let bad = "# HELP a_total x\n# TYPE a_total counter\na_total 1\nb_total 2\n";
    assert!(std::panic::catch_unwind(|| parse_prometheus(bad)).is_err());
    let bad_label = "# HELP a x\n# TYPE a gauge\na{l=unquoted} 1\n";
    assert!(std::panic::catch_unwind(|| parse_prometheus(bad_label)).is_err());
    let good = "# HELP a x\n# TYPE a gauge\na{l=\"q\\\"\"} 1\n";
    assert_eq!(parse_prometheus(good).len(), 1);
}

/// `getxattr(path, name)` with a buffer of `size` bytes: Ok(value, or for size 0 a value of the
/// announced length filled with zeros) or Err(errno).
fn getxattr(path: &Path, name: &str, size: usize) -> Result<Vec<u8>, i32> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; size];
    let ptr = if size == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: valid NUL-terminated strings; `ptr` is null with size 0 or points to `size` bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), ptr, size) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.resize(r as usize, 0);
    Ok(buf)
}

/// The value of xattr `name`, by the size-probe protocol (ask for the size, then the value).
fn xattr(path: &Path, name: &str) -> Result<String, i32> {
    let len = getxattr(path, name, 0)?.len();
    let v = getxattr(path, name, len)?;
    assert_eq!(v.len(), len);
    Ok(String::from_utf8(v).unwrap())
}

fn listxattr(path: &Path) -> Vec<String> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path; a null buffer with size 0 asks for the size.
    let len = unsafe { libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
    assert!(len >= 0);
    let mut buf = vec![0u8; len as usize];
    // SAFETY: `buf` has `len` bytes.
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(r, len);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

#[test]
fn xattrs_report_the_signed_hash_length_verification_and_the_mount_status() {
    let w = world("xattr", &[]);
    let d = w.mount_local(&[]);
    let f = w.at("hello.txt");
    let data = b"hello, verified world\n";
    assert_eq!(
        xattr(&f, "user.trustfs.sha256").unwrap(),
        hex::encode(Sha256::digest(data))
    );
    assert_eq!(xattr(&f, "user.trustfs.length").unwrap(), "22");
    assert_eq!(xattr(&f, "user.trustfs.verified").unwrap(), "no");
    assert_eq!(std::fs::read(&f).unwrap(), data);
    assert_eq!(xattr(&f, "user.trustfs.verified").unwrap(), "yes");
    // The role whose signed metadata listed the file (top-level targets here).
    assert_eq!(xattr(&f, "user.trustfs.role").unwrap(), "targets");
    assert_eq!(
        listxattr(&f),
        [
            "user.trustfs.sha256",
            "user.trustfs.length",
            "user.trustfs.verified",
            "user.trustfs.role"
        ]
    );
    // Too small a buffer: ERANGE; unknown names: ENODATA.
    assert_eq!(getxattr(&f, "user.trustfs.sha256", 10), Err(libc::ERANGE));
    assert_eq!(getxattr(&f, "user.other", 100), Err(libc::ENODATA));
    assert_eq!(
        getxattr(&w.at("sub"), "user.trustfs.sha256", 100),
        Err(libc::ENODATA)
    );
    // The backing file changes: no longer the verified version.
    w.write("hello.txt", b"hello, ALTERED world\n");
    assert_eq!(xattr(&f, "user.trustfs.verified").unwrap(), "no");

    // The mount root: the status record as JSON.
    let s: serde_json::Value =
        serde_json::from_str(&xattr(&w.mnt, "user.trustfs.status").unwrap()).unwrap();
    assert_eq!(s["verified"], true);
    assert_eq!(s["pid"], d.pid());
    assert_eq!(s["metadata"]["targets_version"], 2);
    assert_eq!(listxattr(&w.mnt), ["user.trustfs.status"]);

    // Read-only: setxattr and removexattr are EROFS.
    let p = CString::new(f.as_os_str().as_bytes()).unwrap();
    let n = CString::new("user.trustfs.sha256").unwrap();
    // SAFETY: valid NUL-terminated strings and a 1-byte value.
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), b"x".as_ptr().cast(), 1, 0) };
    assert_eq!(r, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EROFS)
    );
    // SAFETY: valid NUL-terminated strings.
    let r = unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) };
    assert_eq!(r, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EROFS)
    );
    d.stop();
}

#[test]
fn mount_help_documents_the_operations_flags() {
    let out = std::process::Command::new(cli::BIN)
        .args(["mount", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--refresh-interval <DURATION>",
        "--audit-log <FILE>",
        "--metrics-addr <HOST:PORT>",
        "user.trustfs.sha256",
        "trustfs status",
        "dead trustfs mount",
    ] {
        assert!(help.contains(want), "{want} missing from help:\n{help}");
    }
    let bad = std::process::Command::new(cli::BIN)
        .args(["mount", "--root", "r", "--metadata", "m", "--backing", "b"])
        .args(["--refresh-interval", "0s", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
}

/// The headless browser the status page is checked with: Debian's `chromium` (installed by
/// `.ci/run`). Panics with the install command when there is none: never skips.
fn browser() -> &'static str {
    for b in ["chromium", "chromium-browser", "google-chrome"] {
        let found = std::process::Command::new(b)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return b;
        }
    }
    panic!("no headless browser: apt-get install chromium (bash .ci/run installs it)");
}

/// Run the headless browser on `url` with `args` (bounded: killed after 120 s); its stdout.
fn headless(dir: &Path, url: &str, args: &[&str]) -> String {
    let mut child = std::process::Command::new(browser())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1000,1300",
        ])
        .arg(format!("--user-data-dir={}", dir.join("browser").display()))
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not finish with {url} in 120 s", browser());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// Pixels of `png` within a small distance of `rgb`.
fn pixels_like(png: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf[..info.buffer_size()]
        .chunks_exact(step)
        .filter(|p| (0..3).all(|i| p[i].abs_diff(rgb[i]) <= 6))
        .count()
}

const PAGE_GREEN: [u8; 3] = [0x1a, 0x7f, 0x37];
const PAGE_RED: [u8; 3] = [0xcf, 0x22, 0x2e];

/// Where the screenshots go (kept after the test, for people and CI artifacts).
fn screenshot_dir() -> std::path::PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Load the page of the mount served on `port` in the browser: its DOM after parsing, and a
/// screenshot saved as `name`.png in [`screenshot_dir`].
fn load_page(w: &World, port: u16, name: &str) -> (String, std::path::PathBuf) {
    let url = format!("http://127.0.0.1:{port}/");
    let dom = headless(&w.dir, &url, &["--dump-dom"]);
    let shot = screenshot_dir().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    headless(&w.dir, &url, &[&format!("--screenshot={}", shot.display())]);
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    eprintln!("status page screenshot: {}", shot.display());
    (dom, shot)
}

/// `GET path` on the status server: the body, after checking for a 200.
fn get_ok(port: u16, path: &str) -> String {
    let (head, body) = http_get(port, path);
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    body
}

#[test]
fn status_page_in_a_real_browser_is_green_for_a_healthy_mount_and_escapes_hostile_names() {
    let w = world("page", &[]);
    let mnt = w.mnt.to_str().unwrap().to_owned();
    let port = free_port();
    let d = w.mount_local(&["--metrics-addr", &format!("127.0.0.1:{port}")]);
    // Unregistered files whose names are markup: the page must show them as text.
    let hostile = ["<b id=\"pwned\">bold<b>.sh", "<script>document.title=1.sh"];
    for name in hostile {
        w.write(name, b"#!/bin/sh\necho never signed\n");
        assert_eq!(errno_of(std::fs::read(w.at(name))), libc::EACCES);
    }
    assert_eq!(
        std::fs::read(w.at("hello.txt")).unwrap(),
        b"hello, verified world\n"
    );
    wait_for(
        "the record to list both denials",
        || d.log(),
        || {
            let v: serde_json::Value = serde_json::from_str(&get_ok(port, "/status.json")).unwrap();
            v["status"]["counters"]["recent_denials"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
                && v["status"]["counters"]["served"] == 1
        },
    );
    // The page, the JSON and `trustfs status` judge the same record.
    let (code, out) = status(&w, &[&mnt, "--json"]);
    assert_eq!(code, 0, "{out}");
    let cli: serde_json::Value = serde_json::from_str(&out).unwrap();
    let json: serde_json::Value = serde_json::from_str(&get_ok(port, "/status.json")).unwrap();
    assert_eq!(json["verified"], true, "{json}");
    assert_eq!(json["verified"], cli[0]["verified"]);
    assert_eq!(json["problems"], cli[0]["problems"]);
    assert_eq!(json["status"]["pid"], cli[0]["status"]["pid"]);
    let badge = get_ok(port, "/badge.svg");
    assert!(badge.contains("✔ verified"), "{badge}");

    let (dom, shot) = load_page(&w, port, "verified");
    assert!(
        dom.contains("id=\"trustfs-status\" data-state=\"verified\""),
        "{dom}"
    );
    assert!(dom.contains("<h1>Verified</h1>"), "{dom}");
    assert!(dom.contains(&mnt));
    assert!(dom.contains("timestamp"));
    assert!(
        dom.contains("1 served (verified), 2 denied, 0 faults"),
        "{dom}"
    );
    // The names arrived as text: escaped in the DOM, no element or script made of them.
    assert!(
        dom.contains("&lt;b id=\\\"pwned\\\"&gt;bold&lt;b&gt;.sh"),
        "{dom}"
    );
    assert!(dom.contains("&lt;script&gt;document.title=1.sh"), "{dom}");
    assert!(!dom.contains("id=\"pwned\">"), "{dom}");
    assert!(!dom.to_lowercase().contains("<script"), "{dom}");
    assert!(dom.contains("<title>✔ trustfs"), "{dom}");
    // The browser drew a green shield header and nothing red.
    let (green, red) = (pixels_like(&shot, PAGE_GREEN), pixels_like(&shot, PAGE_RED));
    assert!(green > 20_000 && red < 2_000, "green {green}, red {red}");

    // The world-readable record names no denied path; the details are in a file only the
    // daemon's user (root) reads, and `trustfs status` as root shows them.
    let public = w.status_record().unwrap();
    assert!(public["counters"]["last_denial"].is_null(), "{public}");
    assert_eq!(public["counters"]["recent_denials"], serde_json::json!([]));
    assert!(!public.to_string().contains("pwned"));
    let private = w.runtime.join(format!(
        "{}.private.json",
        trustfs::telemetry::status::instance_name(&w.mnt)
    ));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&private).unwrap().contains("pwned"));
    assert!(status(&w, &[&mnt]).1.contains("last denial"));

    // Another filesystem mounted over the trustfs mount: readers see that one, so the page
    // and `trustfs status` are red.
    let over = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "cover", &mnt])
        .status()
        .unwrap();
    assert!(over.success());
    let json: serde_json::Value = serde_json::from_str(&get_ok(port, "/status.json")).unwrap();
    let umount = std::process::Command::new("umount")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(umount.success());
    assert_eq!(json["verified"], false, "{json}");
    assert!(
        json["problems"][0]
            .as_str()
            .unwrap()
            .contains("covered by another mount (tmpfs)"),
        "{json}"
    );
    d.stop();
}

#[test]
fn status_page_in_a_real_browser_is_red_with_the_reason_for_an_expired_mount() {
    let w = world("page-expired", &["timestamp=10s"]);
    let mnt = w.mnt.to_str().unwrap().to_owned();
    let port = free_port();
    let d = w.mount_local(&["--metrics-addr", &format!("127.0.0.1:{port}")]);
    wait_for(
        "the page to report the expiry",
        || d.log(),
        || get_ok(port, "/status.json").contains("timestamp metadata expired at"),
    );
    let (code, out) = status(&w, &[&mnt]);
    assert_eq!(code, 1, "{out}");
    let badge = get_ok(port, "/badge.svg");
    assert!(badge.contains("✘ expired"), "{badge}");
    let (dom, shot) = load_page(&w, port, "expired");
    assert!(
        dom.contains("id=\"trustfs-status\" data-state=\"not-verified\""),
        "{dom}"
    );
    assert!(dom.contains("<h1>NOT verified</h1>"), "{dom}");
    assert!(dom.contains("timestamp metadata expired at"), "{dom}");
    assert!(dom.contains("<title>✘ trustfs"), "{dom}");
    let (green, red) = (pixels_like(&shot, PAGE_GREEN), pixels_like(&shot, PAGE_RED));
    assert!(red > 20_000 && green < 2_000, "green {green}, red {red}");
    d.stop();
}

/// Hostile HTTP clients against a live daemon: other methods, unknown paths, oversized and
/// never-finished requests each get a plain 4xx, and the mount and its page keep answering.
#[test]
fn status_server_answers_bad_requests_with_4xx_and_keeps_serving() {
    let w = world("page-bad", &[]);
    let port = free_port();
    let d = w.mount_local(&["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let raw = |request: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(request);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    for (request, want) in [
        (
            &b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"[..],
            "HTTP/1.1 405",
        ),
        (b"DELETE /status.json HTTP/1.1\r\n\r\n", "HTTP/1.1 405"),
        (b"GET /../../etc/passwd HTTP/1.1\r\n\r\n", "HTTP/1.1 404"),
        (b"GET /status.json/x HTTP/1.1\r\n\r\n", "HTTP/1.1 404"),
        (b"BREW\r\n\r\n", "HTTP/1.1 400"),
    ] {
        let answer = raw(request);
        assert!(answer.starts_with(want), "{request:?}: {answer}");
    }
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.extend(vec![b'a'; 100_000]);
    assert!(raw(&huge).starts_with("HTTP/1.1 431"));
    // Slow clients hold connections open without finishing a request; the page still loads,
    // and each of them is answered 408 in the end.
    // (At most 8 connections from one address are served at once; 4 leave room for ours and
    // for the threads of the requests above that may still be finishing.)
    let mut slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    assert!(get_ok(port, "/").contains("data-state=\"verified\""));
    assert_eq!(
        std::fs::read(w.at("hello.txt")).unwrap(),
        b"hello, verified world\n"
    );
    for s in &mut slow {
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let (head, _) = http_get(port, "/badge.svg");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    d.stop();
}
