//! The publisher commands (`trustfs key generate`, `trustfs repo init/add/refresh`): what they
//! write, that it verifies against its own root, and what they refuse. Some tests drive the binary
//! (exit codes, messages, file modes), others the library API other test suites use to build
//! repositories in-process.

use crate::harness::python as python_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};

use trustfs::repo::{self, AddOptions, Expiries, InitOptions, RefreshOptions, RepoError};
use trustfs::schema::{
    verify_threshold, Key, Metadata, Root, Signature, Signed, Snapshot, Targets, Timestamp, UtcTime,
};

use crate::harness::publish::Repo;
use crate::harness::{TempDir, BIN};

/// A fresh scratch directory per test (no tempfile crate in the dependency list).
fn scratch(name: &str) -> TempDir {
    TempDir::new(&format!("publisher-{name}"))
}

fn trustfs(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    finish(spawn_trustfs(args))
}

fn spawn_trustfs(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Child {
    let mut cmd = Command::new(BIN);
    for a in args {
        cmd.arg(a);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a spawned trustfs. A hung command (a FIFO opened for reading) must fail the test, not
/// hang it.
fn finish(mut child: std::process::Child) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("trustfs did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn load<T: Signed>(path: &Path) -> Metadata<T> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Metadata::from_slice(&path.display().to_string(), &bytes).unwrap()
}

fn verify_role<T: Signed>(root: &Metadata<Root>, role: &str, md: &Metadata<T>) {
    let r = &root.signed.roles[role];
    verify_threshold(role, md, &r.keyids, r.threshold, &root.signed.keys)
        .unwrap_or_else(|e| panic!("{role}: {e}"));
}

impl Repo {
    fn meta(&self, name: &str) -> PathBuf {
        self.dir.join("metadata").join(name)
    }

    fn root(&self) -> Metadata<Root> {
        load(&self.meta("1.root.json"))
    }

    fn add_hashes(&self, content: &Path, sha512: bool) -> Result<repo::AddReport, RepoError> {
        self.add_hashes_with(content, sha512, false)
    }

    fn add_hashes_with(
        &self,
        content: &Path,
        sha512: bool,
        reread: bool,
    ) -> Result<repo::AddReport, RepoError> {
        repo::add(&AddOptions {
            repo: self.dir.clone(),
            keydir: self.keys.clone(),
            content_dir: content.to_owned(),
            sha512,
            expires: Expiries::default(),
            role: None,
            sharding: Default::default(),
            reread,
            progress: false,
        })
    }

    /// Load timestamp → snapshot → targets the way a client would, checking every signature,
    /// version and the timestamp's length and hash of the snapshot.
    fn current(&self) -> (Metadata<Timestamp>, Metadata<Snapshot>, Metadata<Targets>) {
        let root = self.root();
        let ts: Metadata<Timestamp> = load(&self.meta("timestamp.json"));
        verify_role(&root, "timestamp", &ts);
        let snap_meta = &ts.signed.meta["snapshot.json"];
        let snap_path = self.meta(&format!("{}.snapshot.json", snap_meta.version));
        let snap_bytes = fs::read(&snap_path).unwrap();
        assert_eq!(Some(snap_bytes.len() as u64), snap_meta.length);
        assert_eq!(
            snap_meta.hashes.as_ref().unwrap()["sha256"],
            hex::encode(Sha256::digest(&snap_bytes))
        );
        let snap: Metadata<Snapshot> = load(&snap_path);
        assert_eq!(snap.version(), snap_meta.version);
        verify_role(&root, "snapshot", &snap);
        let tv = snap.signed.meta["targets.json"].version;
        let targets: Metadata<Targets> = load(&self.meta(&format!("{tv}.targets.json")));
        assert_eq!(targets.version(), tv);
        verify_role(&root, "targets", &targets);
        (ts, snap, targets)
    }

    fn versions(&self) -> (u64, u64, u64) {
        let (ts, snap, targets) = self.current();
        (targets.version(), snap.version(), ts.version())
    }
}

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// The consistent-snapshot copy of `target` for `hash` (`dir/<hash>.<basename>`).
fn cs_copy(repo: &Repo, target: &str, hash: &str) -> PathBuf {
    let (dir, base) = target.rsplit_once('/').unwrap_or(("", target));
    repo.dir
        .join("targets")
        .join(dir)
        .join(format!("{hash}.{base}"))
}

// ---------------------------------------------------------------------------------------------
// key generate

#[test]
fn key_generate_writes_private_pem_0600_and_tuf_public_key() {
    let base = scratch("keygen");
    let key = base.join("k");
    let o = trustfs(&[&"key", &"generate", &key]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.trim_end().ends_with("-----END PRIVATE KEY-----"));
    let pub_json: Value = serde_json::from_slice(&fs::read(base.join("k.pub")).unwrap()).unwrap();
    let public = Key::from_value(&pub_json).unwrap();
    assert_eq!(public.keytype, "ed25519");
    assert_eq!(public.scheme, "ed25519");
    assert_eq!(public.public.len(), 64);
    assert_eq!(
        pub_json,
        json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public.public}})
    );
    // The printed key id is the securesystemslib one.
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        public.compute_keyid()
    );
    // The private key signs for the public key.
    let sk = repo::keys::load(&key).unwrap();
    assert_eq!(public.verify(b"m", &sk.sign(b"m")), Ok(true));
    // No temporary files left behind.
    let names: BTreeSet<String> = fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["k".into(), "k.pub".into()]));
}

#[test]
fn key_generate_refuses_to_overwrite_without_force() {
    let base = scratch("keyexists");
    let key = base.join("k");
    fs::write(&key, "precious").unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let o = trustfs(&[&"key", &"generate", &key]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("refusing to overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read_to_string(&key).unwrap(), "precious");
    assert!(!base.join("k.pub").exists());
    // An existing .pub alone also blocks.
    let key2 = base.join("k2");
    fs::write(base.join("k2.pub"), "{}").unwrap();
    assert_eq!(
        trustfs(&[&"key", &"generate", &key2]).status.code(),
        Some(1)
    );
    assert!(!key2.exists());
    // --force replaces it with a fresh 0600 file (a new inode, never the old 0644 one).
    let o = trustfs(&[&"key", &"generate", &"--force", &key]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    repo::keys::load(&key).unwrap();
}

/// A key written by python `cryptography` (`private_bytes(PEM, PKCS8, NoEncryption())`), the
/// format securesystemslib's CryptoSigner stores, loads and signs for its public key.
#[test]
fn key_written_by_python_cryptography_loads() {
    let base = scratch("pykey");
    let key = base.join("py");
    fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\n\
         MC4CAQAwBQYDK2VwBCIEIO9VMsZf70AiBzS8280Wobcs/Td6GD8WNXvBOU2AlOBg\n\
         -----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let sk = repo::keys::load(&key).unwrap();
    assert_eq!(
        sk.public_key().public,
        "3d24e45c10930cd1b9ce884b81e989a1ab93c959449b62654e26922b48e912d0"
    );
    // And ours are the same PKCS#8 v1 form (OpenSSL and cryptography refuse the v2 form).
    let ours = base.join("ours");
    repo::keys::generate(&ours, false).unwrap();
    assert!(fs::read_to_string(&ours)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"));
}

#[test]
fn mismatched_key_pair_is_refused() {
    let base = scratch("mismatch");
    repo::keys::generate(&base.join("a"), false).unwrap();
    repo::keys::generate(&base.join("b"), false).unwrap();
    fs::copy(base.join("b.pub"), base.join("a.pub")).unwrap();
    assert!(matches!(
        repo::keys::load(&base.join("a")),
        Err(RepoError::KeyFile { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// repo init

#[test]
fn init_writes_four_files_signed_by_roots_keys() {
    let base = scratch("init");
    let repo_dir = base.join("repo");
    let keys = base.join("keys");
    let o = trustfs(&[
        &"repo",
        &"init",
        &repo_dir,
        &"--keys",
        &keys,
        &"--expires",
        &"timestamp=2h",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut names: Vec<String> = fs::read_dir(repo_dir.join("metadata"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "1.root.json",
            "1.snapshot.json",
            "1.targets.json",
            "timestamp.json"
        ]
    );
    for role in ["root", "targets", "snapshot", "timestamp"] {
        assert_eq!(
            fs::metadata(keys.join(role)).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let r = Repo {
        dir: repo_dir,
        keys: keys.clone(),
    };
    let root = r.root();
    verify_role(&root, "root", &root);
    assert_eq!(root.version(), 1);
    assert_eq!(root.signed.consistent_snapshot, Some(true));
    for role in ["root", "targets", "snapshot", "timestamp"] {
        let pk = repo::keys::load(&keys.join(role)).unwrap().public_key();
        assert_eq!(root.signed.roles[role].keyids, [pk.compute_keyid()]);
        assert_eq!(root.signed.roles[role].threshold, 1);
    }
    let (ts, snap, targets) = r.current();
    assert_eq!(r.versions(), (1, 1, 1));
    assert!(targets.signed.targets.is_empty());
    assert_eq!(
        snap.signed.meta.keys().collect::<Vec<_>>(),
        ["targets.json"]
    );
    // Default and overridden expiry.
    let now = UtcTime::now().0;
    let days = |md_expires: UtcTime| (md_expires.0 - now) as f64 / 86400.0;
    assert!((days(root.expires()) - 365.0).abs() < 0.1);
    assert!((days(targets.expires()) - 90.0).abs() < 0.1);
    assert!((days(snap.expires()) - 7.0).abs() < 0.1);
    assert!((ts.expires().0 - now - 7200).abs() < 120);
}

#[test]
fn init_refuses_an_existing_repository() {
    let base = scratch("reinit");
    let r = Repo::init(&base);
    let before = fs::read(r.meta("1.root.json")).unwrap();
    let o = trustfs(&[&"repo", &"init", &r.dir, &"--keys", &r.keys]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("already holds a repository"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(r.meta("1.root.json")).unwrap(), before);
}

#[test]
fn init_uses_existing_keys() {
    let base = scratch("initkeys");
    let keys = base.join("keys");
    fs::create_dir_all(&keys).unwrap();
    let pk = repo::keys::generate(&keys.join("targets"), false).unwrap();
    let r = Repo::init(&base);
    assert_eq!(
        r.root().signed.roles["targets"].keyids,
        [pk.compute_keyid()]
    );
}

// ---------------------------------------------------------------------------------------------
// repo add

#[test]
fn add_publishes_exactly_the_content_dir() {
    let base = scratch("add");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("a.txt"), b"hello\n");
    write(&content.join("sub/deeper/b.bin"), &[0u8, 1, 2, 255]);
    write(&content.join("empty"), b"");
    let o = trustfs(&[&"repo", &"add", &r.dir, &content, &"--keys", &r.keys]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(r.versions(), (2, 2, 2));
    let (_, _, targets) = r.current();
    let names: Vec<&str> = targets.signed.targets.keys().map(String::as_str).collect();
    assert_eq!(names, ["a.txt", "empty", "sub/deeper/b.bin"]);
    for (name, data) in [
        ("a.txt", &b"hello\n"[..]),
        ("empty", b""),
        ("sub/deeper/b.bin", &[0u8, 1, 2, 255]),
    ] {
        let t = &targets.signed.targets[name];
        let sha256 = hex::encode(Sha256::digest(data));
        assert_eq!(t.length, data.len() as u64);
        assert_eq!(
            t.hashes,
            BTreeMap::from([("sha256".into(), sha256.clone())])
        );
        assert_eq!(fs::read(cs_copy(&r, name, &sha256)).unwrap(), data);
    }
    // Served as is: nothing but hash-named files (no temporaries) under targets/.
    assert!(!r.dir.join("targets/a.txt").exists());
    let listing: Vec<_> = fs::read_dir(r.dir.join("targets/sub/deeper"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listing.len(), 1, "{listing:?}");
}

#[test]
fn add_with_sha512_lists_and_publishes_both_hashes() {
    let base = scratch("sha512");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("d/f"), b"data");
    r.add_hashes(&content, true).unwrap();
    let (_, _, targets) = r.current();
    let t = &targets.signed.targets["d/f"];
    let sha512 = hex::encode(Sha512::digest(b"data"));
    assert_eq!(t.hashes["sha512"], sha512);
    assert_eq!(fs::read(cs_copy(&r, "d/f", &sha512)).unwrap(), b"data");
    assert_eq!(
        fs::read(cs_copy(&r, "d/f", &t.hashes["sha256"])).unwrap(),
        b"data"
    );
    // A later add without --sha512 keeps listing sha512 for that file (and its copy).
    write(&content.join("d/g"), b"new");
    r.add_hashes(&content, false).unwrap();
    let (_, _, targets) = r.current();
    assert!(targets.signed.targets["d/f"].hashes.contains_key("sha512"));
    assert!(!targets.signed.targets["d/g"].hashes.contains_key("sha512"));
}

#[test]
fn add_again_removes_vanished_files_and_keeps_unchanged_ones() {
    let base = scratch("readd");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("keep"), b"same");
    write(&content.join("change"), b"v1");
    write(&content.join("gone"), b"bye");
    r.add_hashes(&content, false).unwrap();
    fs::remove_file(content.join("gone")).unwrap();
    write(&content.join("change"), b"v2");
    write(&content.join("new"), b"hi");
    let report = r.add_hashes(&content, false).unwrap();
    assert_eq!(report.added, ["new"]);
    assert_eq!(report.changed, ["change"]);
    assert_eq!(report.unchanged, ["keep"]);
    assert_eq!(report.removed, ["gone"]);
    assert_eq!(r.versions(), (3, 3, 3));
    let (_, _, targets) = r.current();
    let names: Vec<&str> = targets.signed.targets.keys().map(String::as_str).collect();
    assert_eq!(names, ["change", "keep", "new"]);
    assert_eq!(
        targets.signed.targets["change"].hashes["sha256"],
        hex::encode(Sha256::digest(b"v2"))
    );
    // Re-adding with no change still publishes new versions (documented in --help and
    // docs/publishing.md), with the same target list.
    let report = r.add_hashes(&content, false).unwrap();
    assert_eq!(report.unchanged.len(), 3);
    assert_eq!(r.versions(), (4, 4, 4));
    let (_, _, again) = r.current();
    assert_eq!(again.signed.targets, targets.signed.targets);
    // Older versions stay in place for clients mid-update.
    assert!(r.meta("2.targets.json").exists());
}

/// Sign a `signed` value with a key from the repository's key directory (what an external tool,
/// python-tuf say, would do to the same repository).
fn resign<T: Signed>(r: &Repo, role: &str, signed_value: Value, path: &Path) {
    let sk = repo::keys::load(&r.keys.join(role)).unwrap();
    let mut md = Metadata::<T> {
        signed: serde_json::from_value(signed_value.clone()).unwrap(),
        signed_value,
        signatures: vec![],
    };
    let sig = sk.sign(&md.canonical_signed().unwrap());
    md.signatures.push(Signature {
        keyid: sk.public_key().compute_keyid(),
        sig: hex::encode(sig),
    });
    fs::write(path, md.to_bytes()).unwrap();
}

#[test]
fn add_keeps_custom_unknown_fields_and_delegations() {
    let base = scratch("custom");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("same"), b"same");
    write(&content.join("edited"), b"v1");
    r.add_hashes(&content, false).unwrap();
    // Another tool adds custom metadata, an unknown field and a delegation to targets v2 (the
    // snapshot lists targets by version only, so rewriting 2.targets.json in place is valid).
    let path = r.meta("2.targets.json");
    let mut v = load::<Targets>(&path).signed_value;
    v["targets"]["same"]["custom"] = json!({"owner": "ops", "note": "line1\nline2"});
    v["targets"]["edited"]["custom"] = json!({"owner": "stale"});
    v["targets"]["same"]["x-entry-field"] = json!(7);
    v["x-vendor"] = json!({"kept": true});
    let dkey = repo::keys::generate(&base.join("delegate"), false).unwrap();
    let dkeyid = dkey.compute_keyid();
    v["delegations"] = json!({
        "keys": {dkeyid.clone(): dkey.to_value()},
        "roles": [{"name": "team", "keyids": [dkeyid], "threshold": 1, "terminating": true,
                   "paths": ["team/*"], "x-role-field": "r"}],
    });
    resign::<Targets>(&r, "targets", v.clone(), &path);
    r.current(); // still verifies

    write(&content.join("edited"), b"v2");
    r.add_hashes(&content, false).unwrap();
    let (_, snap, targets) = r.current();
    let after = &targets.signed_value;
    assert_eq!(after["targets"]["same"], v["targets"]["same"]);
    // Changed content: a new entry (the stale custom goes), with trustfs's chunk root.
    let edited = &after["targets"]["edited"];
    assert_eq!(edited["custom"].get("owner"), None, "{edited}");
    assert_eq!(
        edited["custom"]["trustfs"]["chunks"]["alg"], "blake3",
        "{edited}"
    );
    assert_eq!(after["x-vendor"], v["x-vendor"]);
    assert_eq!(after["delegations"], v["delegations"]);
    // The snapshot's other entries (here: none) and its own fields are carried over.
    assert_eq!(snap.signed.meta["targets.json"].version, 3);
}

#[test]
fn hostile_entries_in_content_dir_are_skipped_not_followed() {
    let base = scratch("hostile");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("ok"), b"ok");
    std::os::unix::fs::symlink("/etc/passwd", content.join("passwd")).unwrap();
    std::os::unix::fs::symlink("/etc", content.join("etc")).unwrap();
    let fifo = content.join("fifo");
    let cpath = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: cpath is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o644) }, 0);
    let o = trustfs(&[&"repo", &"add", &r.dir, &content, &"--keys", &r.keys]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("passwd: symbolic link"), "{err}");
    assert!(err.contains("fifo: FIFO"), "{err}");
    let (_, _, targets) = r.current();
    let names: Vec<&str> = targets.signed.targets.keys().map(String::as_str).collect();
    assert_eq!(names, ["ok"]);
}

#[test]
fn names_that_cannot_be_targets_stop_the_command_before_writing() {
    use std::os::unix::ffi::OsStrExt;
    let base = scratch("badname");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("ok"), b"ok");
    let bad = content.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9"));
    fs::write(&bad, b"x").unwrap();
    let before = fs::read(r.meta("timestamp.json")).unwrap();
    let o = trustfs(&[&"repo", &"add", &r.dir, &content, &"--keys", &r.keys]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not valid UTF-8"), "{}", stderr(&o));
    assert_eq!(fs::read(r.meta("timestamp.json")).unwrap(), before);
    assert!(!r.meta("2.targets.json").exists());
}

#[test]
fn repository_inside_content_dir_is_not_published() {
    let base = scratch("nested");
    let content = base.join("content");
    write(&content.join("f"), b"f");
    let r = Repo::create(content.join("repo"), base.join("keys"));
    let report = r.add_hashes(&content, false).unwrap();
    assert_eq!(report.added, ["f"]);
}

#[test]
fn wrong_key_in_keydir_is_refused() {
    let base = scratch("wrongkey");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("f"), b"f");
    repo::keys::generate(&r.keys.join("targets"), true).unwrap();
    let before = fs::read(r.meta("timestamp.json")).unwrap();
    let o = trustfs(&[&"repo", &"add", &r.dir, &content, &"--keys", &r.keys]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("targets") && err.contains("is not a targets key"),
        "{err}"
    );
    assert_eq!(fs::read(r.meta("timestamp.json")).unwrap(), before);
    assert!(matches!(
        r.add_hashes(&content, false),
        Err(RepoError::WrongKey { role, .. }) if role == "targets"
    ));
    // A wrong timestamp key stops refresh too.
    repo::keys::generate(&r.keys.join("timestamp"), true).unwrap();
    let o = trustfs(&[&"repo", &"refresh", &r.dir, &"--keys", &r.keys]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a timestamp key"), "{}", stderr(&o));
}

#[test]
fn tampered_or_malformed_metadata_exits_2() {
    let base = scratch("tamper");
    let r = Repo::init(&base);
    // A changed byte in signed content: the signature no longer verifies.
    let ts = r.meta("timestamp.json");
    let good = fs::read_to_string(&ts).unwrap();
    fs::write(&ts, good.replace("\"version\": 1\n", "\"version\": 9\n")).unwrap();
    let o = trustfs(&[&"repo", &"refresh", &r.dir, &"--keys", &r.keys]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("timestamp.json"), "{}", stderr(&o));
    // Not JSON at all.
    fs::write(&ts, "{not json").unwrap();
    let o = trustfs(&[&"repo", &"refresh", &r.dir, &"--keys", &r.keys]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("malformed"), "{}", stderr(&o));
    // A snapshot that is not the one timestamp names (length/hash mismatch).
    fs::write(&ts, good).unwrap();
    let snap = r.meta("1.snapshot.json");
    let mut s = fs::read(&snap).unwrap();
    s.push(b'\n');
    fs::write(&snap, s).unwrap();
    let o = trustfs(&[&"repo", &"refresh", &r.dir, &"--keys", &r.keys]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("1.snapshot.json"), "{}", stderr(&o));
}

#[test]
fn not_a_repository_is_an_operational_error() {
    let base = scratch("norepo");
    let o = trustfs(&[
        &"repo",
        &"refresh",
        &base.path(),
        &"--keys",
        &base.join("keys"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a repository"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------------------------
// repo add against a content directory whose owner is hostile

/// Every file under `dir`, temporaries and hard links included.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Nothing in the latest targets metadata or in `REPO/targets` is the file `secret`: no target
/// lists its sha256, no copy of it (by name or by content) is under `REPO/targets`.
fn assert_not_published(r: &Repo, secret: &[u8]) {
    let secret_sha = hex::encode(Sha256::digest(secret));
    let (_, _, targets) = r.current();
    for (name, t) in &targets.signed.targets {
        assert_ne!(
            t.hashes.get("sha256"),
            Some(&secret_sha),
            "target {name:?} is the file outside CONTENT_DIR"
        );
    }
    for f in all_files(&r.dir.join("targets")) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains(&secret_sha), "{} is a copy", f.display());
        let meta = fs::symlink_metadata(&f).unwrap();
        if meta.len() == secret.len() as u64 {
            assert_ne!(fs::read(&f).unwrap(), secret, "{} is a copy", f.display());
        }
    }
}

/// A user who owns a directory inside CONTENT_DIR swaps it for a symlink to a directory outside
/// (holding a file of the same name) while `add` is copying a large file. `add` must never list
/// or copy the outside file: it either refuses, naming the file, or publishes content-dir files
/// only. (It used to open each file again by its full path after the walk, with O_NOFOLLOW on
/// the last component only: targets.json then listed zz/secret with the outside file's hash and
/// a 0644 copy of it landed in REPO/targets.)
#[test]
fn directory_swapped_for_symlink_during_add_never_publishes_outside_files() {
    let base = scratch("swaprace");
    let r = Repo::init(&base);
    let content = base.join("content");
    let placeholder = b"a file the owner may publish\n";
    write(&content.join("zz/secret"), placeholder);
    // "big" sorts before "zz/secret", so it is copied first; sparse, so cheap to create.
    let big = fs::File::create(content.join("big")).unwrap();
    big.set_len(200 << 20).unwrap();
    drop(big);
    let outside = base.join("outside");
    let secret = b"root:$6$not-for-publishing$:19000:0:99999:7:::\n";
    write(&outside.join("secret"), secret);

    let child = spawn_trustfs(&[&"repo", &"add", &r.dir, &content, &"--keys", &r.keys]);
    // Once big's temporary exists in REPO/targets, the walk is over and the copy under way.
    let tdir = r.dir.join("targets");
    let copying = || {
        fs::read_dir(&tdir).unwrap().any(|e| {
            let name = e.unwrap().file_name();
            name.to_string_lossy().starts_with(".big.tmp-")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut child = child;
    let mut swapped = false;
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        if copying() {
            fs::rename(content.join("zz"), base.join("zz-moved-away")).unwrap();
            std::os::unix::fs::symlink(&outside, content.join("zz")).unwrap();
            swapped = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let o = finish(child);
    assert!(
        swapped,
        "the copy of big was never seen in progress; the race was not staged\n{}",
        stderr(&o)
    );

    assert_not_published(&r, secret);
    if o.status.success() {
        // Allowed only if every target is a content-dir file.
        let zeros = hex::encode(Sha256::digest(vec![0u8; 200 << 20]));
        let (_, _, targets) = r.current();
        for (name, t) in &targets.signed.targets {
            let h = &t.hashes["sha256"];
            assert!(
                *h == zeros || *h == hex::encode(Sha256::digest(placeholder)),
                "{name}"
            );
        }
    } else {
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("zz/secret: changed while publishing")
                && err.contains("nothing was published, run add again"),
            "{err}"
        );
        assert_eq!(r.versions(), (1, 1, 1), "nothing was signed");
    }
    // 200 MB copied into REPO/targets: not left behind.
    fs::remove_dir_all(&base).unwrap();
}

/// A mount point inside CONTENT_DIR (a tmpfs, or a file bind-mounted from elsewhere) is another
/// filesystem: `add` does not cross it, and says so. Needs root (mount(2)).
#[test]
fn mount_points_inside_content_dir_are_not_crossed() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test mounts a tmpfs and a bind mount; run it as root"
    );
    struct Unmount(Vec<PathBuf>);
    impl Drop for Unmount {
        fn drop(&mut self) {
            for p in self.0.iter().rev() {
                let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: c is a valid NUL-terminated path for the call.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
    let mount = |src: &Path, dst: &Path, fstype: &str, flags: libc::c_ulong| {
        let c = |p: &std::ffi::OsStr| std::ffi::CString::new(p.as_encoded_bytes()).unwrap();
        let (s, d, t) = (c(src.as_os_str()), c(dst.as_os_str()), c(fstype.as_ref()));
        // SAFETY: valid NUL-terminated strings for the call; no data argument.
        let rc =
            unsafe { libc::mount(s.as_ptr(), d.as_ptr(), t.as_ptr(), flags, std::ptr::null()) };
        assert_eq!(
            rc,
            0,
            "mount {}: {}",
            dst.display(),
            std::io::Error::last_os_error()
        );
    };
    let base = scratch("mountpoints");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("ok"), b"ok");
    let secret = b"bind-mounted from outside CONTENT_DIR\n";
    write(&base.join("outside/secret"), secret);
    fs::create_dir_all(content.join("tmp")).unwrap();
    write(&content.join("file"), b"covered by the bind mount");
    let mut guard = Unmount(Vec::new());
    mount(Path::new("tmpfs"), &content.join("tmp"), "tmpfs", 0);
    guard.0.push(content.join("tmp"));
    mount(
        &base.join("outside/secret"),
        &content.join("file"),
        "",
        libc::MS_BIND,
    );
    guard.0.push(content.join("file"));
    write(&content.join("tmp/on-tmpfs"), b"t");

    let o = trustfs(&[&"repo", &"add", &r.dir, &content, &"--keys", &r.keys]);
    drop(guard);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("tmp: another filesystem (not crossed)"),
        "{err}"
    );
    assert!(
        err.contains("file: another filesystem (not crossed)"),
        "{err}"
    );
    let (_, _, targets) = r.current();
    let names: Vec<&str> = targets.signed.targets.keys().map(String::as_str).collect();
    assert_eq!(names, ["ok"]);
    assert_not_published(&r, secret);
}

/// File names are chosen by whoever writes CONTENT_DIR. A newline or a terminal escape in one
/// must not forge a line of `add`'s output (an "added" line, a warning) or drive the terminal:
/// such names are printed escaped, and listed in the metadata as they are.
#[test]
fn control_characters_in_file_names_cannot_forge_output_lines() {
    use std::os::unix::ffi::OsStrExt;
    let base = scratch("ctrlnames");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("ok"), b"ok");
    write(&content.join("a\nadded evil"), b"x");
    write(&content.join("esc\x1b]0;title\x07\x1b[2K"), b"y");
    std::os::unix::fs::symlink("ok", content.join("l\ntrustfs: warning: forged")).unwrap();
    let o = trustfs(&[&"repo", &"add", &r.dir, &content, &"--keys", &r.keys]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (out, err) = (String::from_utf8(o.stdout.clone()).unwrap(), stderr(&o));
    assert!(
        !o.stdout.contains(&0x1b) && !o.stderr.contains(&0x1b),
        "{out}{err}"
    );
    assert!(
        !o.stdout.contains(&0x07) && !o.stderr.contains(&0x07),
        "{out}{err}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "three added lines and the summary: {out}");
    assert!(lines.contains(&r#"added "a\nadded evil""#), "{out}");
    assert!(
        lines.contains(&r#"added "esc\u{1b}]0;title\u{7}\u{1b}[2K""#),
        "{out}"
    );
    assert!(
        lines.contains(&"added ok"),
        "plain names stay as they are: {out}"
    );
    assert!(!lines.contains(&"added evil"), "{out}");
    assert_eq!(err.lines().count(), 1, "one warning: {err}");
    assert!(
        err.contains(r#"l\ntrustfs: warning: forged": symbolic link"#),
        "{err}"
    );
    // The metadata lists the names as they are.
    let (_, _, targets) = r.current();
    assert!(targets.signed.targets.contains_key("a\nadded evil"));

    // An error naming such a file is one line too.
    let content2 = base.join("content2");
    write(&content2.join("ok"), b"ok");
    fs::write(
        content2.join(std::ffi::OsStr::from_bytes(b"x\xe9\ntrustfs: forged error")),
        b"z",
    )
    .unwrap();
    let o = trustfs(&[&"repo", &"add", &r.dir, &content2, &"--keys", &r.keys]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(r#"x\xE9\ntrustfs: forged error""#), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// repo refresh

#[test]
fn refresh_bumps_snapshot_and_timestamp_and_extends_expiry() {
    let base = scratch("refresh");
    let r = Repo {
        dir: base.join("repo"),
        keys: base.join("keys"),
    };
    repo::init(&InitOptions {
        repo: r.dir.clone(),
        keydir: r.keys.clone(),
        expires: Expiries::from_specs(&["snapshot=1h", "timestamp=1m"]).unwrap(),
    })
    .unwrap();
    let (ts1, snap1, _) = r.current();
    // Only the snapshot and timestamp keys are needed: refresh works without the others.
    for role in ["root", "targets"] {
        fs::remove_file(r.keys.join(role)).unwrap();
    }
    let o = trustfs(&[&"repo", &"refresh", &r.dir, &"--keys", &r.keys]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(r.versions(), (1, 2, 2));
    let (ts2, snap2, _) = r.current();
    assert!(ts2.expires().0 > ts1.expires().0 + 3600);
    assert!(snap2.expires().0 > snap1.expires().0 + 86400);
    assert_eq!(snap2.signed.meta, snap1.signed.meta);
}

#[test]
fn refresh_role_targets_also_resigns_targets() {
    let base = scratch("refreshtargets");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("f"), b"f");
    r.add_hashes(&content, false).unwrap();
    let (_, _, before) = r.current();
    let report = repo::refresh(&RefreshOptions {
        repo: r.dir.clone(),
        keydir: r.keys.clone(),
        expires: Expiries::from_specs(&["targets=10d"]).unwrap(),
        resign_targets: true,
    })
    .unwrap();
    assert_eq!(report.versions.targets, 3);
    assert_eq!(r.versions(), (3, 3, 3));
    let (_, _, after) = r.current();
    assert_eq!(after.signed.targets, before.signed.targets);
    let days = (after.expires().0 - UtcTime::now().0) as f64 / 86400.0;
    assert!((days - 10.0).abs() < 0.1, "{days}");
    // Anything else than targets is refused by the command line.
    let o = trustfs(&[
        &"repo", &"refresh", &r.dir, &"--keys", &r.keys, &"--role", &"root",
    ]);
    assert_eq!(o.status.code(), Some(trustfs::cli::EXIT_USAGE));
}

#[test]
fn bad_expires_argument_is_refused() {
    let base = scratch("badexpires");
    let o = trustfs(&[
        &"repo",
        &"init",
        &base.join("repo"),
        &"--keys",
        &base.join("keys"),
        &"--expires",
        &"mirror=1d",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown role"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------------------------
// interop

/// python-tuf's ngclient, reading the repository from disk through a fetcher that maps URLs to
/// files (404 for missing ones, which ends its root-rotation probe).
const NGCLIENT_SCRIPT: &str = r#"
import os, sys
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

repo, work = sys.argv[1], sys.argv[2]
names = sys.argv[3:]

class FileFetcher(FetcherInterface):
    def _fetch(self, url):
        path = os.path.join(repo, url.removeprefix("file:///"))
        if not os.path.isfile(path):
            raise DownloadHTTPError(f"{path} not found", 404)
        with open(path, "rb") as f:
            yield f.read()

os.makedirs(os.path.join(work, "meta"), exist_ok=True)
os.makedirs(os.path.join(work, "dl"), exist_ok=True)
boot = open(os.path.join(repo, "metadata", "1.root.json"), "rb").read()
u = Updater(os.path.join(work, "meta"), "file:///metadata/", os.path.join(work, "dl"),
            "file:///targets/", fetcher=FileFetcher(), bootstrap=boot)
u.refresh()
for name in names:
    info = u.get_targetinfo(name)
    assert info is not None, name
    path = u.download_target(info, os.path.join(work, "dl", name.replace("/", "_")))
    sys.stdout.write(name + "=" + open(path).read() + ";")
assert u.get_targetinfo("not-published") is None
"#;

/// python-tuf 7 (ngclient) reads what trustfs publishes: consistent-snapshot metadata and target
/// names, both hash names with --sha512, signatures over canonical JSON. Needs the pinned venv
/// (`bash .ci/run`); without it the test fails with instructions.
#[test]
fn python_tuf_ngclient_reads_the_repository() {
    let python = python_support::python();
    let base = scratch("ngclient");
    let r = Repo::init(&base);
    let content = base.join("content");
    write(&content.join("a.txt"), b"alpha");
    write(&content.join("sub/b.txt"), b"beta");
    r.add_hashes(&content, true).unwrap();
    repo::refresh(&RefreshOptions {
        repo: r.dir.clone(),
        keydir: r.keys.clone(),
        expires: Expiries::default(),
        resign_targets: true,
    })
    .unwrap();
    let out = Command::new(python)
        .arg("-c")
        .arg(NGCLIENT_SCRIPT)
        .arg(&r.dir)
        .arg(base.join("client"))
        .args(["a.txt", "sub/b.txt"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a.txt=alpha;sub/b.txt=beta;"
    );
}

/// The sha256 a target is listed with in the current targets metadata.
fn listed_sha256(r: &Repo, target: &str) -> String {
    let (_, _, targets) = r.current();
    let t = &targets.signed.targets[target];
    t.hashes["sha256"].clone()
}

/// Set a file's mtime (and atime) to `secs` after the epoch, as `touch -d` does; its ctime
/// becomes now (only the kernel sets ctime).
fn set_mtime(path: &Path, secs: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    // SAFETY: a valid NUL-terminated path and two valid timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

#[test]
fn add_reads_only_files_that_changed_since_the_last_add() {
    let base = scratch("addcache");
    let r = Repo::init(&base);
    let content = base.join("content");
    fs::create_dir_all(content.join("d")).unwrap();
    for i in 0..20 {
        fs::write(content.join(format!("d/f{i}")), format!("file {i}\n")).unwrap();
    }
    // Files changed within two seconds of being read are read again next time (racy clean):
    // first an add right away, which must remember nothing.
    let first = r.add_hashes(&content, false).unwrap();
    assert_eq!(first.added.len(), 20);
    assert_eq!(first.not_reread, 0);
    let again = r.add_hashes(&content, false).unwrap();
    assert_eq!(again.not_reread, 0, "files changed 0 s ago were remembered");
    std::thread::sleep(Duration::from_millis(2100));
    let settled = r.add_hashes(&content, false).unwrap();
    assert_eq!(settled.unchanged.len(), 20);
    assert_eq!(
        settled.not_reread, 0,
        "this add is the first to see settled files"
    );
    let cached = r.add_hashes(&content, false).unwrap();
    assert_eq!(cached.unchanged.len(), 20);
    assert_eq!(cached.not_reread, 20, "unchanged files were read again");

    // Same size, content changed, mtime put back: ctime gives it away.
    let f3 = content.join("d/f3");
    let old_mtime = fs::metadata(&f3).unwrap().modified().unwrap();
    let secs = old_mtime
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    fs::write(&f3, "FILE 3\n").unwrap();
    set_mtime(&f3, secs);
    let after_edit = r.add_hashes(&content, false).unwrap();
    assert_eq!(after_edit.changed, vec!["d/f3".to_string()]);
    assert_eq!(after_edit.not_reread, 19);
    assert_eq!(
        listed_sha256(&r, "d/f3"),
        hex::encode(Sha256::digest(b"FILE 3\n"))
    );

    // A published copy that went missing is made again from the content file.
    let f5_sha = listed_sha256(&r, "d/f5");
    let copy = r.dir.join("targets/d").join(format!("{f5_sha}.f5"));
    fs::remove_file(&copy).unwrap();
    let repaired = r.add_hashes(&content, false).unwrap();
    assert!(copy.is_file(), "the missing copy was not made again");
    assert_eq!(fs::read(&copy).unwrap(), b"file 5\n");
    assert!(repaired.not_reread <= 19, "{}", repaired.not_reread);

    // A file replaced by another (new inode) is read again.
    let f7 = content.join("d/f7");
    fs::write(content.join("d/.f7.new"), "seven\n").unwrap();
    fs::rename(content.join("d/.f7.new"), &f7).unwrap();
    let replaced = r.add_hashes(&content, false).unwrap();
    assert_eq!(replaced.changed, vec!["d/f7".to_string()]);
    assert_eq!(
        listed_sha256(&r, "d/f7"),
        hex::encode(Sha256::digest(b"seven\n"))
    );

    // --reread reads everything; asking for sha512 reads every file that lacks one.
    let reread = r.add_hashes_with(&content, false, true).unwrap();
    assert_eq!(reread.not_reread, 0);
    let with_sha512 = r.add_hashes(&content, true).unwrap();
    assert_eq!(
        with_sha512.not_reread, 0,
        "files without sha512 were not read"
    );
    let (_, _, targets) = r.current();
    assert!(targets
        .signed
        .targets
        .values()
        .all(|t| t.hashes.contains_key("sha512")));

    // A malformed cache is ignored: everything is read, nothing fails.
    fs::write(r.dir.join(".trustfs-add-cache"), b"{not json").unwrap();
    let garbage = r.add_hashes(&content, false).unwrap();
    assert_eq!(garbage.not_reread, 0);
    assert!(garbage.warnings.is_empty(), "{:?}", garbage.warnings);
    let _ = fs::remove_dir_all(&base);
}

/// A btrfs filesystem in a file, loop-mounted for one test (root, `mkfs.btrfs` from Debian's
/// `btrfs-progs`, which `.ci/run` installs); unmounted and removed on drop.
struct Btrfs {
    image: PathBuf,
    mnt: PathBuf,
}

impl Btrfs {
    fn new(name: &str) -> Btrfs {
        let base = scratch(name);
        let image = base.join("btrfs.img");
        let mnt = base.join("mnt");
        fs::create_dir_all(&mnt).unwrap();
        fs::File::create(&image)
            .unwrap()
            .set_len(200 << 20)
            .unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install btrfs-progs; .ci/run does)"));
            assert!(out.status.success(), "{cmd:?}: {out:?}");
        };
        run(Command::new("mkfs.btrfs").arg("-q").arg(&image));
        run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&image)
            .arg(&mnt));
        Btrfs { image, mnt }
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = fs::remove_file(&self.image);
    }
}

/// Whether every extent of `file` is shared with another file (`filefrag -v` flags).
fn all_extents_shared(file: &Path) -> bool {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let extents: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(':'))
        .collect();
    !extents.is_empty() && extents.iter().all(|l| l.contains("shared"))
}

#[test]
fn repo_add_reflinks_copies_where_the_filesystem_can() {
    let fs_ = Btrfs::new("reflink");
    let content = fs_.mnt.join("content");
    let repo_dir = fs_.mnt.join("repo");
    let keys = fs_.mnt.join("keys");
    fs::create_dir_all(&content).unwrap();
    let big: Vec<u8> = (0..8_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(content.join("big.bin"), &big).unwrap();
    fs::write(content.join("small.txt"), b"small").unwrap();
    let out = trustfs(&[&"repo", &"init", &repo_dir, &"--keys", &keys]);
    assert!(out.status.success(), "{out:?}");
    let out = trustfs(&[&"repo", &"add", &repo_dir, &content, &"--keys", &keys]);
    assert!(out.status.success(), "{out:?}");
    let digest = hex::encode(Sha256::digest(&big));
    let copy = repo_dir.join("targets").join(format!("{digest}.big.bin"));
    // The copy holds exactly the signed bytes, and shares the source's extents: no data written.
    assert_eq!(fs::read(&copy).unwrap(), big);
    assert!(all_extents_shared(&copy), "{copy:?} is not a reflink copy");
    let listed = fs::read_to_string(repo_dir.join("metadata/2.targets.json")).unwrap();
    assert!(listed.contains(&digest), "{listed}");
    // Changing the source later never changes the published copy.
    fs::write(content.join("big.bin"), b"replaced").unwrap();
    assert_eq!(fs::read(&copy).unwrap(), big);
}

/// `repo add` lists each new file's chunk root in `custom.trustfs.chunks` and publishes its
/// outboard as `REPO/chunks/<sha256>`: the outboard checks against the signed root and every
/// chunk of the content against its leaf; prune removes the outboard with its content.
#[test]
fn add_lists_chunk_roots_and_publishes_outboards_that_verify() {
    let base = scratch("chunks");
    let r = Repo::init(&base);
    let content = base.join("content");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
    write(&content.join("dir/big.bin"), &big);
    write(&content.join("small.txt"), b"small\n");
    r.add_hashes(&content, false).unwrap();
    let (_, _, targets) = r.current();
    for (name, data) in [("dir/big.bin", &big[..]), ("small.txt", b"small\n")] {
        let entry = &targets.signed_value["targets"][name];
        let chunks = &entry["custom"]["trustfs"]["chunks"];
        assert_eq!(chunks["v"], 1, "{entry}");
        assert_eq!(chunks["alg"], "blake3");
        assert_eq!(chunks["size"], trustfs::chunks::CHUNK_SIZE);
        // The hashes dict stays as python-tuf and go-tuf require it.
        assert_eq!(entry["hashes"].as_object().unwrap().len(), 1, "{entry}");
        let root: [u8; 32] = hex::decode(chunks["root"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let sha = hex::encode(Sha256::digest(data));
        let outboard = fs::read(r.dir.join("chunks").join(&sha)).unwrap();
        let tree =
            trustfs::chunks::ChunkTree::from_outboard(data.len() as u64, &outboard, &root).unwrap();
        for (i, chunk) in data
            .chunks(trustfs::chunks::CHUNK_SIZE as usize)
            .enumerate()
        {
            assert!(tree.chunk_matches(i, chunk), "{name} chunk {i}");
        }
        assert_eq!(tree, trustfs::chunks::tree_of(data));
    }
    // New content, then prune: the old outboard goes with the old content.
    let old_sha = hex::encode(Sha256::digest(&big));
    write(&content.join("dir/big.bin"), b"replaced\n");
    r.add_hashes(&content, false).unwrap();
    r.add_hashes(&content, false).unwrap();
    r.add_hashes(&content, false).unwrap();
    repo::prune(&repo::PruneOptions {
        repo: r.dir.clone(),
        keep: 0,
        dry_run: false,
    })
    .unwrap();
    assert!(!r.dir.join("chunks").join(&old_sha).exists());
    let new_sha = hex::encode(Sha256::digest(b"replaced\n"));
    assert!(r.dir.join("chunks").join(new_sha).exists());
}
