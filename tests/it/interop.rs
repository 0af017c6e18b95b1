//! Interoperability with python-tuf, the reference implementation, through the real `trustfs`
//! binary. Each test is named after what it protects against:
//!
//! - repositories made by python-tuf verify with `trustfs verify`, and tampering with their
//!   content (altered, unregistered, missing files) or signatures is caught with the right
//!   exit code (0 ok, 1 content, 2 metadata) and a readable reason;
//! - repositories made by `trustfs repo` are accepted by python-tuf's `ngclient.Updater`, which
//!   downloads every target, in subdirectories too, over HTTP on 127.0.0.1;
//! - succinct hash bins (TAP 15) both ways: python-tuf's `SuccinctRoles` layout verifies and
//!   mounts (a bin listing another bin's path is refused), and python-tuf follows a trustfs
//!   repository from one targets file into bins.
//!
//! The Python side is `tests/interop/*.py` in the venv that `bash .ci/run` creates from
//! `tests/interop/requirements.txt` (see `harness/python.rs` for how it is found). Without it these
//! tests fail with instructions rather than skip.

use crate::harness::http::HttpServer;
use crate::harness::mount as mount_support;
use crate::harness::python;

use python::{python_script, run, Run};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXIT_OK: i32 = 0;
const EXIT_CONTENT: i32 = 1;
const EXIT_METADATA: i32 = 2;

/// What `make_repo.py` puts in `content/` (keep in step with CONTENT there).
const PY_REPO_TARGETS: [&str; 3] = ["empty.txt", "hello.txt", "sub/dir/data.bin"];

// ---------------------------------------------------------------------------------------------
// Fixtures

use crate::harness::TempDir;

/// A repository written by python-tuf (`make_repo.py`).
struct PyRepo {
    _dir: TempDir,
    root: PathBuf,
    metadata: PathBuf,
    content: PathBuf,
}

fn python_tuf_repo(name: &str) -> PyRepo {
    python_tuf_repo_with_keys(name, "ed25519")
}

fn python_tuf_repo_with_keys(name: &str, key_type: &str) -> PyRepo {
    let dir = TempDir::new(name);
    let out = dir.join("repo");
    run(python_script("make_repo.py")
        .arg(&out)
        .args(["--key-type", key_type]))
    .expect_code(EXIT_OK, "make_repo.py (python-tuf) failed");
    PyRepo {
        root: out.join("metadata/1.root.json"),
        metadata: out.join("metadata"),
        content: out.join("content"),
        _dir: dir,
    }
}

fn trustfs() -> Command {
    Command::new(crate::harness::BIN)
}

/// `trustfs verify --root … --metadata … CONTENT [--json]`.
fn verify(repo: &PyRepo, json: bool) -> Run {
    let mut cmd = trustfs();
    cmd.arg("verify")
        .arg("--root")
        .arg(&repo.root)
        .arg("--metadata")
        .arg(&repo.metadata)
        .arg(&repo.content);
    if json {
        cmd.arg("--json");
    }
    run(&mut cmd)
}

/// `files[]` of a `verify --json` report, as path → (status, reason).
fn file_statuses(report: &Value, run: &Run) -> BTreeMap<String, (String, String)> {
    let files = report["files"]
        .as_array()
        .unwrap_or_else(|| panic!("report has no \"files\" array\n{}", run.describe()));
    files
        .iter()
        .map(|f| {
            let path = f["path"]
                .as_str()
                .unwrap_or_else(|| panic!("file entry without \"path\": {f}\n{}", run.describe()));
            let status = f["status"].as_str().unwrap_or_else(|| {
                panic!("file entry without \"status\": {f}\n{}", run.describe())
            });
            let reason = f["reason"].as_str().unwrap_or("");
            (path.to_string(), (status.to_string(), reason.to_string()))
        })
        .collect()
}

/// Check `counts` of a `verify --json` report: [ok, unregistered, altered, missing].
#[track_caller]
fn assert_counts(report: &Value, run: &Run, expected: [u64; 4]) {
    let names = ["ok", "unregistered", "altered", "missing"];
    let got: Vec<Option<u64>> = names.iter().map(|n| report["counts"][n].as_u64()).collect();
    let want: Vec<Option<u64>> = expected.iter().map(|&n| Some(n)).collect();
    assert_eq!(got, want, "counts {names:?} differ\n{}", run.describe());
}

#[track_caller]
fn assert_status(
    statuses: &BTreeMap<String, (String, String)>,
    run: &Run,
    path: &str,
    status: &str,
) -> String {
    match statuses.get(path) {
        Some((s, reason)) if s == status => reason.clone(),
        other => panic!(
            "{path}: expected status {status:?}, got {other:?}\n{}",
            run.describe()
        ),
    }
}

fn contains_any(haystack: &str, needles: &[&str]) -> bool {
    let h = haystack.to_lowercase();
    needles.iter().any(|n| h.contains(n))
}

/// Relative paths of every regular file under `dir`, sorted.
fn regular_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("read_dir entry");
            let ty = entry.file_type().expect("file type");
            let path = entry.path();
            if ty.is_dir() {
                walk(base, &path, out);
            } else if ty.is_file() {
                let rel = path.strip_prefix(base).expect("under base");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// python-tuf repository → trustfs verify

#[test]
fn python_tuf_repo_verifies() {
    let repo = python_tuf_repo("verifies");

    let json = verify(&repo, true);
    json.expect_code(EXIT_OK, "a python-tuf repository must verify");
    let report = json.json();
    assert_eq!(report["ok"], Value::Bool(true), "{}", json.describe());
    assert_counts(&report, &json, [PY_REPO_TARGETS.len() as u64, 0, 0, 0]);
    let statuses = file_statuses(&report, &json);
    for target in PY_REPO_TARGETS {
        assert_status(&statuses, &json, target, "ok");
    }

    let human = verify(&repo, false);
    human.expect_code(EXIT_OK, "human-readable verify of a python-tuf repository");
    assert!(
        human.last_stdout_line().starts_with('✔'),
        "the summary line must start with ✔\n{}",
        human.describe()
    );
}

/// Real repositories (sigstore's, tuf-on-ci's) sign with ecdsa-sha2-nistp256; others with RSA-PSS.
/// python-tuf's signers for each must verify, and a corrupted signature of each must not.
#[test]
fn python_tuf_repo_with_ecdsa_rsa_and_mixed_keys_verifies() {
    for key_type in ["ecdsa", "rsa", "mixed"] {
        let repo = python_tuf_repo_with_keys(&format!("keys-{key_type}"), key_type);
        let json = verify(&repo, true);
        json.expect_code(EXIT_OK, &format!("{key_type} keys must verify"));
        assert_counts(&json.json(), &json, [PY_REPO_TARGETS.len() as u64, 0, 0, 0]);
        // Flip one hex digit of the targets signature: the threshold is no longer met.
        let path = repo.metadata.join("1.targets.json");
        let mut md = read_json(&path);
        let sig = md["signatures"][0]["sig"].as_str().unwrap().to_owned();
        let flipped = format!(
            "{}{}",
            if sig.starts_with('0') { '1' } else { '0' },
            &sig[1..]
        );
        md["signatures"][0]["sig"] = Value::String(flipped);
        std::fs::write(&path, serde_json::to_vec_pretty(&md).unwrap()).unwrap();
        verify(&repo, false).expect_code(
            2,
            &format!("{key_type}: a corrupted signature must be refused"),
        );
    }
}

#[test]
fn python_tuf_repo_tampered_byte_is_altered() {
    let repo = python_tuf_repo("tampered");
    // Same length, one bit different: only the hash can tell.
    let victim = repo.content.join("sub/dir/data.bin");
    let mut bytes = std::fs::read(&victim).expect("read data.bin");
    bytes[100] ^= 0x01;
    std::fs::write(&victim, &bytes).expect("write data.bin");

    let json = verify(&repo, true);
    json.expect_code(
        EXIT_CONTENT,
        "a file with one flipped byte must fail verification",
    );
    let report = json.json();
    assert_eq!(report["ok"], Value::Bool(false), "{}", json.describe());
    assert_counts(&report, &json, [2, 0, 1, 0]);
    let statuses = file_statuses(&report, &json);
    let reason = assert_status(&statuses, &json, "sub/dir/data.bin", "altered");
    assert!(
        contains_any(&reason, &["hash", "sha256", "digest"]),
        "the reason for an altered file must name the hash mismatch, got {reason:?}\n{}",
        json.describe()
    );
    assert_status(&statuses, &json, "hello.txt", "ok");

    let human = verify(&repo, false);
    human.expect_code(EXIT_CONTENT, "human-readable verify of a tampered file");
    assert!(
        human.last_stdout_line().starts_with('✘'),
        "the summary line must start with ✘\n{}",
        human.describe()
    );
}

#[test]
fn python_tuf_repo_unregistered_file() {
    let repo = python_tuf_repo("unregistered");
    std::fs::write(
        repo.content.join("sub/smuggled.sh"),
        b"#!/bin/sh\necho pwned\n",
    )
    .expect("write extra file");

    let json = verify(&repo, true);
    json.expect_code(
        EXIT_CONTENT,
        "a file not in targets metadata must fail verification",
    );
    let report = json.json();
    assert_eq!(report["ok"], Value::Bool(false), "{}", json.describe());
    assert_counts(&report, &json, [PY_REPO_TARGETS.len() as u64, 1, 0, 0]);
    let statuses = file_statuses(&report, &json);
    assert_status(&statuses, &json, "sub/smuggled.sh", "unregistered");
}

#[test]
fn python_tuf_repo_missing_file() {
    let repo = python_tuf_repo("missing");
    std::fs::remove_file(repo.content.join("hello.txt")).expect("remove hello.txt");

    let json = verify(&repo, true);
    json.expect_code(
        EXIT_CONTENT,
        "a signed target absent from the content dir must fail",
    );
    let report = json.json();
    assert_counts(&report, &json, [2, 0, 0, 1]);
    let statuses = file_statuses(&report, &json);
    assert_status(&statuses, &json, "hello.txt", "missing");
}

/// Words one of which a signature failure's reason must contain. python-tuf itself says
/// "targets was signed by 0/1 keys".
const SIGNATURE_WORDS: &[&str] = &["signature", "threshold", "signed by"];

#[test]
fn python_tuf_repo_corrupted_signature() {
    for (role, file) in [
        ("targets", "1.targets.json"),
        ("snapshot", "1.snapshot.json"),
        ("timestamp", "timestamp.json"),
    ] {
        let repo = python_tuf_repo(&format!("badsig-{role}"));
        run(python_script("corrupt_signature.py").arg(repo.metadata.join(file)))
            .expect_code(EXIT_OK, "corrupt_signature.py failed");

        let json = verify(&repo, true);
        json.expect_code(
            EXIT_METADATA,
            &format!("{role} metadata with a corrupted signature must not be trusted"),
        );
        let report = json.json();
        assert_eq!(report["ok"], Value::Bool(false), "{}", json.describe());
        let error = report["error"].as_str().unwrap_or_else(|| {
            panic!(
                "metadata failure report needs an \"error\" string\n{}",
                json.describe()
            )
        });
        assert!(
            contains_any(error, SIGNATURE_WORDS) && error.contains(role),
            "the error must say that the {role} signature/threshold failed, got {error:?}\n{}",
            json.describe()
        );

        let human = verify(&repo, false);
        human.expect_code(
            EXIT_METADATA,
            &format!("human-readable verify, bad {role} signature"),
        );
        assert!(
            contains_any(&human.stderr, SIGNATURE_WORDS),
            "stderr must give the reason (signature/threshold)\n{}",
            human.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// trustfs repository → python-tuf ngclient

/// Checks the harness, not trustfs: python-tuf's client downloads a python-tuf repository through
/// `HttpServer`. When this fails, the other tests' failures say nothing about trustfs.
#[test]
fn interop_harness_python_tuf_round_trip() {
    let repo = python_tuf_repo("harness");
    let served = repo.metadata.parent().expect("repo dir").to_path_buf();
    let server = HttpServer::serve(served.to_path_buf());
    let out = served.with_file_name("downloaded");
    let download = download_all(&server, &repo.root, &out);
    assert_eq!(
        download.code,
        Some(EXIT_OK),
        "python-tuf could not download from its own repository\n{}\n{}",
        download.describe(),
        server.log()
    );
    assert_eq!(
        regular_files(&out),
        PY_REPO_TARGETS,
        "{}",
        download.describe()
    );
    for target in PY_REPO_TARGETS {
        let got = std::fs::read(out.join(target)).expect("read downloaded target");
        let want = std::fs::read(repo.content.join(target)).expect("read content");
        assert!(got == want, "{target}: downloaded bytes differ");
    }
}

/// `download.py --all` from `server`, trusting `root`, into `out`.
fn download_all(server: &HttpServer, root: &Path, out: &Path) -> Run {
    run(python::download_command(server, root, out).arg("--all"))
}

#[test]
fn trustfs_repo_downloads_with_python_tuf() {
    let dir = TempDir::new("download");
    let keys = dir.join("keys");
    let repo = dir.join("repo");
    let content = dir.join("content");

    // One key made explicitly; `repo init` must use it and generate the missing ones.
    std::fs::create_dir_all(&keys).expect("mkdir keys");
    let root_key = keys.join("root");
    run(trustfs().args(["key", "generate"]).arg(&root_key))
        .expect_code(EXIT_OK, "trustfs key generate");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&root_key)
            .expect("private key")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "private key mode must be 0600, is {:o}",
            mode & 0o777
        );
    }
    let pem = std::fs::read_to_string(&root_key).expect("read private key");
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "private key must be PKCS#8 PEM, starts {:?}",
        pem.lines().next()
    );
    let pub_key = read_json(&keys.join("root.pub"));
    assert_eq!(pub_key["keytype"], "ed25519", "root.pub: {pub_key}");
    let public_hex = pub_key["keyval"]["public"]
        .as_str()
        .unwrap_or_else(|| panic!("root.pub has no keyval.public: {pub_key}"))
        .to_string();

    run(trustfs()
        .args(["repo", "init"])
        .arg(&repo)
        .arg("--keys")
        .arg(&keys))
    .expect_code(EXIT_OK, "trustfs repo init");
    for f in [
        "1.root.json",
        "1.targets.json",
        "1.snapshot.json",
        "timestamp.json",
    ] {
        assert!(
            repo.join("metadata").join(f).is_file(),
            "repo init did not write metadata/{f}"
        );
    }
    for role in ["targets", "snapshot", "timestamp"] {
        assert!(
            keys.join(role).is_file(),
            "repo init did not generate the {role} key"
        );
    }
    let root = read_json(&repo.join("metadata/1.root.json"));
    assert_eq!(
        root["signed"]["consistent_snapshot"], true,
        "1.root.json: {root}"
    );
    let root_keyids = root["signed"]["roles"]["root"]["keyids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        root_keyids.iter().any(
            |id| root["signed"]["keys"][id.as_str().unwrap_or("")]["keyval"]["public"]
                == public_hex.as_str()
        ),
        "the root role must use the pre-generated key {public_hex}: {root}"
    );

    // Content with a subdirectory, binary bytes and an empty file.
    let files: [(&str, Vec<u8>); 4] = [
        ("hello.txt", b"hello from trustfs\n".to_vec()),
        (
            "sub/dir/data.bin",
            (0..=255u8).cycle().take(10_000).collect(),
        ),
        ("sub/notes.md", b"# notes\n".to_vec()),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in &files {
        let path = content.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir content");
        std::fs::write(&path, bytes).expect("write content");
    }
    run(trustfs()
        .args(["repo", "add"])
        .arg(&repo)
        .arg("--keys")
        .arg(&keys)
        .arg(&content))
    .expect_code(EXIT_OK, "trustfs repo add");
    for (name, bytes) in &files {
        let hash = hex::encode(Sha256::digest(bytes));
        let served = match name.rsplit_once('/') {
            Some((dir, base)) => format!("{dir}/{hash}.{base}"),
            None => format!("{hash}.{name}"),
        };
        assert!(
            repo.join("targets").join(&served).is_file(),
            "repo add must publish {name} as targets/{served}; targets/ holds {:?}",
            regular_files(&repo.join("targets"))
        );
    }
    let timestamp = read_json(&repo.join("metadata/timestamp.json"));
    assert!(
        timestamp["signed"]["version"].as_u64().unwrap_or(0) > 1,
        "repo add must bump the timestamp version: {timestamp}"
    );
    // Every target carries its signed chunk root in `custom` (the `hashes` dict stays sha256
    // only): what python-tuf downloads below is a repository with the custom fields.
    let targets = read_json(&repo.join("metadata/2.targets.json"));
    for (name, _) in &files {
        let t = &targets["signed"]["targets"][name];
        assert_eq!(
            t["custom"]["trustfs"]["chunks"]["alg"], "blake3",
            "{name}: {t}"
        );
        assert_eq!(
            t["hashes"].as_object().map(|h| h.len()),
            Some(1),
            "{name}: {t}"
        );
    }

    // python-tuf downloads everything over HTTP, starting from the pinned 1.root.json.
    let server = HttpServer::serve(repo.to_path_buf());
    let out = dir.join("downloaded");
    let download = download_all(&server, &repo.join("metadata/1.root.json"), &out);
    assert_eq!(
        download.code,
        Some(EXIT_OK),
        "python-tuf must accept the trustfs repository and download every target\n{}\n{}",
        download.describe(),
        server.log()
    );

    let mut expected: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
    expected.sort();
    assert_eq!(
        regular_files(&out),
        expected,
        "python-tuf downloaded a different set of targets\n{}",
        download.describe()
    );
    for (name, bytes) in &files {
        let got = std::fs::read(out.join(name)).expect("read downloaded target");
        assert!(
            got == *bytes,
            "{name}: downloaded bytes differ from the content"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Succinct hash bins (TAP 15) both ways

/// `make_repo.py --succinct-bins BITS [--misbin]`; returns the repository and the target paths
/// the script printed.
fn python_tuf_binned_repo(name: &str, bits: u32, misbin: bool) -> (PyRepo, Vec<String>) {
    let dir = TempDir::new(name);
    let out = dir.join("repo");
    let mut cmd = python_script("make_repo.py");
    cmd.arg(&out).args(["--succinct-bins", &bits.to_string()]);
    if misbin {
        cmd.arg("--misbin");
    }
    let made = run(&mut cmd);
    made.expect_code(EXIT_OK, "make_repo.py --succinct-bins (python-tuf) failed");
    let names = made.stdout.lines().map(str::to_owned).collect();
    let repo = PyRepo {
        root: out.join("metadata/1.root.json"),
        metadata: out.join("metadata"),
        content: out.join("content"),
        _dir: dir,
    };
    (repo, names)
}

/// `trustfs mount` of a python-tuf repository's metadata over its content directory at `mnt`;
/// returns the daemon once the mount is up.
fn mount_py_repo(repo: &PyRepo, mnt: &Path, state: &Path) -> std::process::Child {
    mount_support::require_fuse();
    std::fs::create_dir_all(mnt).unwrap();
    let mut child = trustfs()
        .arg("mount")
        .arg("--root")
        .arg(&repo.root)
        .arg("--metadata")
        .arg(&repo.metadata)
        .arg("--backing")
        .arg(&repo.content)
        .arg("--state-dir")
        .arg(state)
        .arg(mnt)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn trustfs mount");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !mount_support::is_mounted(mnt) {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "trustfs mount exited with {st} before mounting: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mount did not come up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// SIGTERM the daemon and return its log (stderr).
fn stop_mount(mut child: std::process::Child, mnt: &Path) -> String {
    // SAFETY: kill with our own child's pid and a valid signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    mount_support::lazy_umount(mnt);
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut log);
    }
    log
}

#[test]
fn python_tuf_succinct_bins_repo_verifies_and_mounts() {
    let (repo, names) = python_tuf_binned_repo("bins-verify", 4, false);
    assert_eq!(names.len(), PY_REPO_TARGETS.len() + 40);
    let targets = read_json(&repo.metadata.join("1.targets.json"));
    assert_eq!(
        targets["signed"]["delegations"]["succinct_roles"]["bit_length"], 4,
        "python-tuf wrote succinct_roles: {targets}"
    );
    let json = verify(&repo, true);
    json.expect_code(EXIT_OK, "a python-tuf binned repository must verify");
    assert_counts(&json.json(), &json, [names.len() as u64, 0, 0, 0]);

    let mnt = repo.content.with_file_name("mnt");
    let state = repo.content.with_file_name("state");
    let daemon = mount_py_repo(&repo, &mnt, &state);
    let read = |p: &str| std::fs::read(mnt.join(p));
    assert_eq!(read("hello.txt").unwrap(), b"hello from python-tuf\n");
    assert_eq!(read("many/file-07.txt").unwrap(), b"file 7\n");
    std::fs::write(repo.content.join("many/smuggled.txt"), b"x").unwrap();
    let denied = read("many/smuggled.txt").unwrap_err();
    assert_eq!(denied.raw_os_error(), Some(libc::EACCES), "{denied}");
    let log = stop_mount(daemon, &mnt);
    assert!(
        log.contains(&format!("serving {} targets", names.len())),
        "{log}"
    );
    // No chunk roots in a python-tuf repository: the one-pass mode (signed hashes checked while
    // the tree is built), the tree kept in the state dir.
    assert!(
        log.lines()
            .any(|l| l.contains("verified \"hello.txt\": 22 bytes")
                && l.contains("chunk tree from one pass over the content")),
        "{log}"
    );
    assert!(state.join("trees").read_dir().unwrap().count() >= 2);
    // Bins read from a local metadata directory are not copied into the state dir; the index
    // built from them is saved for the next start.
    assert!(!state.join("delegated_bin-0.json").exists());
    assert!(state.join("targets-index.bin").is_file());
}

#[test]
fn python_tuf_bin_vouching_outside_its_range_is_refused_by_verify_and_never_served() {
    let (repo, _) = python_tuf_binned_repo("bins-misbin", 4, true);
    let json = verify(&repo, true);
    json.expect_code(
        EXIT_METADATA,
        "a bin listing a path of another bin makes the metadata untrusted",
    );
    let report = json.json();
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("\"sub/dir/data.bin\"")
            && error.contains("may only vouch for its own range"),
        "{}",
        json.describe()
    );
    // The mount leaves the foreign listing out (and says so); the path's own bin decides.
    let mnt = repo.content.with_file_name("mnt");
    let state = repo.content.with_file_name("state");
    let daemon = mount_py_repo(&repo, &mnt, &state);
    let served = std::fs::read(mnt.join("sub/dir/data.bin")).unwrap();
    assert_eq!(
        served,
        std::fs::read(repo.content.join("sub/dir/data.bin")).unwrap()
    );
    std::fs::write(
        repo.content.join("sub/dir/data.bin"),
        b"not the signed data",
    )
    .unwrap();
    let denied = std::fs::read(mnt.join("sub/dir/data.bin")).unwrap_err();
    assert_eq!(denied.raw_os_error(), Some(libc::EACCES), "{denied}");
    let log = stop_mount(daemon, &mnt);
    assert!(
        log.contains("left out of the mount: hash bin") && log.contains("sub/dir/data.bin"),
        "{log}"
    );
}

/// `download.py` of `names` with a kept metadata directory (a long-lived python-tuf client).
fn download_names(
    server: &HttpServer,
    root: &Path,
    out: &Path,
    cache: &Path,
    names: &[String],
) -> Run {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    python::download_kept(server, root, out, cache, &names)
}

#[test]
fn python_tuf_follows_a_trustfs_repository_into_hash_bins() {
    let dir = TempDir::new("bins-download");
    let keys = dir.join("keys");
    let repo = dir.join("repo");
    let content = dir.join("content");
    let cache = dir.join("python-tuf-metadata");
    let names: Vec<String> = (0..30).map(|i| format!("d{}/f{i}.txt", i % 4)).collect();
    let write_all = |tag: &str| {
        for n in &names {
            let p = content.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("{tag} {n}\n")).unwrap();
        }
    };
    let add = |extra: &[&str]| {
        run(trustfs()
            .args(["repo", "add"])
            .arg(&repo)
            .arg(&content)
            .arg("--keys")
            .arg(&keys)
            .args(extra))
        .expect_code(EXIT_OK, "trustfs repo add");
    };
    run(trustfs()
        .args(["repo", "init"])
        .arg(&repo)
        .arg("--keys")
        .arg(&keys))
    .expect_code(EXIT_OK, "trustfs repo init");
    let server = HttpServer::serve(repo.to_path_buf());
    let root = repo.join("metadata/1.root.json");
    let check = |step: &str, tag: &str| {
        let out = dir.join(format!("downloaded-{step}"));
        let d = download_names(&server, &root, &out, &cache, &names);
        assert_eq!(
            d.code,
            Some(EXIT_OK),
            "{step}: python-tuf must download every target\n{}\n{}",
            d.describe(),
            server.log()
        );
        for n in &names {
            let got = std::fs::read_to_string(out.join(n)).unwrap();
            assert_eq!(got, format!("{tag} {n}\n"), "{step}: {n}");
        }
    };
    // One targets file, trusted and cached by the python-tuf client ...
    write_all("v1");
    add(&[]);
    check("single", "v1");
    // ... which then follows the repository into 8 bins (and new content),
    write_all("v2");
    add(&["--bins", "8"]);
    let targets = read_json(&repo.join("metadata/3.targets.json"));
    assert_eq!(
        targets["signed"]["delegations"]["succinct_roles"]["bit_length"], 3,
        "{targets}"
    );
    check("sharded", "v2");
    // ... and through an update that re-signs only the bins whose list changed.
    let changed = &names[4];
    std::fs::write(content.join(changed), format!("v3 {changed}\n")).unwrap();
    add(&[]);
    let out = dir.join("downloaded-update");
    let d = download_names(&server, &root, &out, &cache, std::slice::from_ref(changed));
    d.expect_code(EXIT_OK, "python-tuf after a one-bin update");
    assert_eq!(
        std::fs::read_to_string(out.join(changed)).unwrap(),
        format!("v3 {changed}\n")
    );
}
