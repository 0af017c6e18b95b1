//! Key management through the `trustfs` binary: rotation of every role followed by a live mount
//! and by python-tuf, recovery from a leaked key (its signatures refused by trustfs and
//! python-tuf after the rotation), a 2-of-3 root signed in three steps from separate key
//! directories, encrypted keys both ways with python's `cryptography`, ecdsa and rsa keys, and
//! the bad inputs (a threshold no key set can meet, a key neither root lists, a stale staged
//! root, a wrong passphrase) refused with the repository untouched. Needs root and /dev/fuse
//! (the live mount) and the python-tuf venv; fails, never skips.

use crate::harness::cli;
use crate::harness::http::HttpServer;
use crate::harness::python;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cli::{wait_for, World, BIN};
use python::{download_kept, python, run, Run};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn trustfs() -> Command {
    Command::new(BIN)
}

/// `trustfs ARGS...` run to its end.
fn tfs(args: &[&str]) -> Run {
    run(trustfs().args(args))
}

/// `trustfs repo SUB REPO --keys KEYDIR EXTRA...` of `w`'s repository.
fn repo(w: &World, sub: &str, extra: &[&str]) -> Run {
    run(trustfs()
        .args(["repo", sub])
        .arg(&w.repo)
        .arg("--keys")
        .arg(&w.keys)
        .args(extra))
}

/// The body digest of the staged root, as `repo status` shows it for review ("-" when nothing
/// is staged).
fn staged_digest(w: &World) -> String {
    let st = run(trustfs().args(["repo", "status"]).arg(&w.repo));
    st.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("body sha256 "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("-")
        .to_owned()
}

/// `trustfs repo sign REPO --key KEY --expect DIGEST` of `w`'s repository, confirming the staged
/// root as it is now.
fn sign(w: &World, key: &str) -> Run {
    let digest = staged_digest(w);
    run(trustfs()
        .args(["repo", "sign"])
        .arg(&w.repo)
        .args(["--key", key, "--expect", &digest]))
}

/// `trustfs verify` of `w`'s content as a client pinning `pinned`, keeping its versions in
/// `state` (a long-lived client).
fn verify_state(w: &World, pinned: &Path, state: &Path) -> Run {
    run(trustfs()
        .arg("verify")
        .arg("--root")
        .arg(pinned)
        .arg("--metadata")
        .arg(w.metadata())
        .arg("--state-dir")
        .arg(state)
        .arg(&w.content))
}

/// Every file under `dir` with its sha256: what "untouched" compares.
fn snapshot_of(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(p, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    out
}

fn repo_str(w: &World) -> String {
    w.repo.display().to_string()
}

#[test]
fn every_role_rotated_is_followed_by_a_live_mount_and_by_python_tuf() {
    let w = World::new("keys-rotate", &[("v0.txt", b"before any rotation\n")], &[]);
    let server = HttpServer::serve(w.repo.to_path_buf());
    let pinned = w.dir.join("pinned-root.json");
    std::fs::copy(w.metadata().join("1.root.json"), &pinned).unwrap();
    let py_cache = w.dir.join("python-tuf");
    let d = w.mount_local(&["--refresh-interval", "1s"]);
    download_kept(
        &server,
        &pinned,
        &w.dir.join("py-out"),
        &py_cache,
        &["v0.txt"],
    )
    .expect_code(0, "python-tuf before rotations");

    // Each rotation; then a new file published with the new keys must reach both clients.
    for (i, (role, key_type)) in [
        ("targets", "ecdsa"),
        ("snapshot", "ed25519"),
        ("timestamp", "rsa"),
        ("root", "ecdsa"),
    ]
    .iter()
    .enumerate()
    {
        let r = repo(&w, "rotate", &["--role", role, "--type", key_type]);
        r.expect_code(0, "trustfs repo rotate");
        assert!(r.stdout.contains("wrote root version"), "{}", r.describe());
        let name = format!("after-{role}.txt");
        let body = format!("published after rotating {role}\n");
        w.write(&name, body.as_bytes());
        w.publish();
        wait_for(
            &format!("the mount to serve {name} after the {role} rotation"),
            || d.log(),
            || std::fs::read(w.at(&name)).is_ok_and(|b| b == body.as_bytes()),
        );
        download_kept(
            &server,
            &pinned,
            &w.dir.join(format!("py-{i}")),
            &py_cache,
            &[&name],
        )
        .expect_code(0, &format!("python-tuf after rotating {role}"));
        // The retired key is out of KEYDIR's way.
        assert!(std::fs::read_dir(w.keys.join("retired")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{role}."))));
    }
    let log = d.stop();
    assert!(
        log.contains("root v4 -> v5"),
        "the mount followed four root versions:\n{log}"
    );

    // A delegated role too: delegated, published into, rotated, published into again.
    repo(&w, "delegate", &["--role", "docs", "--path", "docs/*"]).expect_code(0, "delegate");
    let docs = w.dir.join("docs-content");
    std::fs::create_dir_all(docs.join("docs")).unwrap();
    std::fs::write(docs.join("docs/a.md"), "first\n").unwrap();
    let add_docs = || {
        run(trustfs()
            .args(["repo", "add"])
            .arg(&w.repo)
            .arg(&docs)
            .arg("--keys")
            .arg(&w.keys)
            .args(["--role", "docs"]))
        .expect_code(0, "add --role docs");
    };
    add_docs();
    repo(&w, "rotate", &["--role", "docs"]).expect_code(0, "rotate docs");
    std::fs::write(docs.join("docs/b.md"), "second\n").unwrap();
    add_docs();
    download_kept(
        &server,
        &pinned,
        &w.dir.join("py-docs"),
        &py_cache,
        &["docs/b.md"],
    )
    .expect_code(0, "python-tuf after rotating the delegated role");
    let state = w.dir.join("verify-state");
    let v = verify_state(&w, &pinned, &state);
    // content/ holds the top-level files only; docs/ files are "missing" from it, not untrusted.
    assert_ne!(v.code, Some(2), "{}", v.describe());
}

/// Metadata in `w`'s repository: path of the newest `N.<role>.json`, its version and JSON.
fn newest(w: &World, role: &str) -> (PathBuf, u64, Value) {
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(w.metadata()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_suffix(&format!(".{role}.json"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            if best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, p));
            }
        }
    }
    let (n, p) = best.unwrap();
    let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    (p, n, v)
}

/// Sign `signed` with `key` (a PKCS#8 PEM file) under key id `keyid`: the metadata bytes.
fn sign_with(signed: &Value, key: &Path, keyid: &str) -> Vec<u8> {
    let k = trustfs::schema::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(key).unwrap())
        .unwrap();
    let msg = trustfs::schema::to_canonical(signed).unwrap();
    let doc = json!({"signed": signed, "signatures": [{"keyid": keyid, "sig": hex::encode(k.sign(&msg))}]});
    serde_json::to_vec_pretty(&doc).unwrap()
}

/// The one key file in `dir` whose name starts with `prefix`.
fn key_in(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(prefix) && !n.contains(".pub")
        })
        .unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

#[test]
fn a_leaked_targets_key_is_worthless_after_rotation_for_trustfs_and_python_tuf() {
    let w = World::new(
        "keys-compromise",
        &[("app.sh", b"#!/bin/sh\necho good\n")],
        &[],
    );
    let server = HttpServer::serve(w.repo.to_path_buf());
    let pinned = w.dir.join("pinned-root.json");
    std::fs::copy(w.metadata().join("1.root.json"), &pinned).unwrap();
    let state = w.dir.join("state");
    let py_cache = w.dir.join("python-tuf");
    let verify = || verify_state(&w, &pinned, &state);
    verify().expect_code(0, "verify before");
    download_kept(&server, &pinned, &w.dir.join("py0"), &py_cache, &["app.sh"])
        .expect_code(0, "python-tuf before");
    let leaked = w.dir.join("leaked-targets-key");
    std::fs::copy(w.keys.join("targets"), &leaked).unwrap();
    let leaked_id =
        trustfs::schema::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&leaked).unwrap())
            .unwrap()
            .public_key()
            .compute_keyid();

    repo(&w, "rotate", &["--role", "targets"]).expect_code(0, "rotate targets");
    verify().expect_code(0, "verify after the rotation");
    download_kept(&server, &pinned, &w.dir.join("py1"), &py_cache, &["app.sh"])
        .expect_code(0, "python-tuf after the rotation");

    // The attacker signs targets with the leaked key, listing a backdoor, and (holding the
    // mirror) serves snapshot and timestamp that point at it, properly signed.
    let evil = b"#!/bin/sh\nrm -rf /\n";
    let (_, n, mut targets) = newest(&w, "targets");
    let t = &mut targets["signed"];
    t["version"] = json!(n + 1);
    t["targets"]["app.sh"] =
        json!({"length": evil.len(), "hashes": {"sha256": hex::encode(Sha256::digest(evil))}});
    std::fs::write(
        w.metadata().join(format!("{}.targets.json", n + 1)),
        sign_with(&targets["signed"], &leaked, &leaked_id),
    )
    .unwrap();
    let (_, s, mut snapshot) = newest(&w, "snapshot");
    let sn = &mut snapshot["signed"];
    sn["version"] = json!(s + 1);
    sn["meta"]["targets.json"] = json!({"version": n + 1});
    let snap_key = key_in(&w.keys, "snapshot");
    let snap_id = snapshot["signatures"][0]["keyid"]
        .as_str()
        .unwrap()
        .to_owned();
    let snap_bytes = sign_with(&snapshot["signed"], &snap_key, &snap_id);
    std::fs::write(
        w.metadata().join(format!("{}.snapshot.json", s + 1)),
        &snap_bytes,
    )
    .unwrap();
    let ts_path = w.metadata().join("timestamp.json");
    let mut ts: Value = serde_json::from_slice(&std::fs::read(&ts_path).unwrap()).unwrap();
    let tv = ts["signed"]["version"].as_u64().unwrap();
    ts["signed"]["version"] = json!(tv + 1);
    ts["signed"]["meta"]["snapshot.json"] = json!({"version": s + 1, "length": snap_bytes.len(),
        "hashes": {"sha256": hex::encode(Sha256::digest(&snap_bytes))}});
    let ts_key = key_in(&w.keys, "timestamp");
    let ts_id = ts["signatures"][0]["keyid"].as_str().unwrap().to_owned();
    std::fs::write(&ts_path, sign_with(&ts["signed"], &ts_key, &ts_id)).unwrap();

    let v = verify();
    v.expect_code(2, "trustfs must refuse targets signed by the retired key");
    assert!(
        v.stderr.contains("targets") && v.stderr.contains("signature"),
        "{}",
        v.describe()
    );
    let p = download_kept(&server, &pinned, &w.dir.join("py2"), &py_cache, &["app.sh"]);
    assert_eq!(
        p.code,
        Some(1),
        "python-tuf must refuse too:\n{}",
        p.describe()
    );
    assert!(!w.dir.join("py2/app.sh").exists());
}

#[test]
fn a_2_of_3_root_signed_in_three_steps_from_separate_key_directories() {
    let w = World::new("keys-threshold", &[("a.txt", b"a\n")], &[]);
    let pinned = w.dir.join("pinned-root.json");
    std::fs::copy(w.metadata().join("1.root.json"), &pinned).unwrap();
    let holders: Vec<PathBuf> = ["alice", "bob", "carol"]
        .iter()
        .map(|h| w.dir.join(h))
        .collect();
    for h in &holders {
        std::fs::create_dir_all(h).unwrap();
        tfs(&["key", "generate", h.join("root").to_str().unwrap()]).expect_code(0, "key generate");
    }
    let pubs: Vec<String> = holders
        .iter()
        .map(|h| h.join("root.pub").display().to_string())
        .collect();
    let before = snapshot_of(&w.metadata());
    // Step 1 (the current root key, in the publisher's KEYDIR): stage root v2, 2-of-3.
    let r = repo(
        &w,
        "rotate",
        &[
            "--role",
            "root",
            "--key",
            &pubs[0],
            "--key",
            &pubs[1],
            "--key",
            &pubs[2],
            "--threshold",
            "2",
        ],
    );
    r.expect_code(0, "rotate root to 2-of-3");
    assert!(
        r.stdout.contains("staged root version 2"),
        "{}",
        r.describe()
    );
    assert_eq!(
        snapshot_of(&w.metadata()),
        before,
        "staging writes nothing published"
    );
    let st = tfs(&["repo", "status", &repo_str(&w)]);
    st.expect_code(1, "status while short of signatures");
    assert!(
        st.stdout.contains("new root's keys: 0 of 2"),
        "{}",
        st.describe()
    );
    // Publishing now is refused, the repository untouched.
    let p = repo(&w, "publish", &[]);
    p.expect_code(1, "publish short of signatures");
    assert!(p.stderr.contains("short of signatures"), "{}", p.describe());
    assert_eq!(snapshot_of(&w.metadata()), before);
    // A key neither root lists: refused, the staged file unchanged.
    let stranger = w.dir.join("stranger");
    tfs(&["key", "generate", stranger.to_str().unwrap()]).expect_code(0, "key generate");
    let staged_file = w.repo.join("staged/2.root.json");
    let staged_before = std::fs::read(&staged_file).unwrap();
    let s = sign(&w, stranger.to_str().unwrap());
    s.expect_code(1, "sign with an unlisted key");
    assert!(
        s.stderr
            .contains("is neither a root key of the published root nor of the staged one"),
        "{}",
        s.describe()
    );
    assert_eq!(std::fs::read(&staged_file).unwrap(), staged_before);
    // Steps 2 and 3: two holders sign, each with their own key only.
    let s = sign(&w, holders[0].join("root").to_str().unwrap());
    s.expect_code(0, "alice signs");
    assert!(
        s.stdout.contains("new root's keys: 1 of 2"),
        "{}",
        s.describe()
    );
    // A hostile co-signer edits the staged body after review (its own key for targets): the
    // next holder, confirming the digest they reviewed, refuses to sign it.
    let reviewed = staged_digest(&w);
    let honest = std::fs::read(&staged_file).unwrap();
    let mut evil: Value = serde_json::from_slice(&honest).unwrap();
    let stranger_pub: Value =
        serde_json::from_slice(&std::fs::read(w.dir.join("stranger.pub")).unwrap()).unwrap();
    evil["signed"]["keys"]["feedface"] = stranger_pub;
    evil["signed"]["roles"]["targets"]["keyids"] = json!(["feedface"]);
    std::fs::write(&staged_file, serde_json::to_vec(&evil).unwrap()).unwrap();
    let s = run(trustfs().args(["repo", "sign"]).arg(&w.repo).args([
        "--key",
        holders[2].join("root").to_str().unwrap(),
        "--expect",
        &reviewed,
    ]));
    s.expect_code(1, "sign a body other than the one reviewed");
    assert!(
        s.stderr.contains("is not the root you expect") && s.stderr.contains("targets: keys"),
        "{}",
        s.describe()
    );
    // An expired root is refused even when its digest is confirmed.
    let mut expired: Value = serde_json::from_slice(&honest).unwrap();
    expired["signed"]["expires"] = json!("2020-01-01T00:00:00Z");
    std::fs::write(&staged_file, serde_json::to_vec(&expired).unwrap()).unwrap();
    let s = sign(&w, holders[2].join("root").to_str().unwrap());
    s.expect_code(1, "sign an expired root");
    assert!(s.stderr.contains("has expired"), "{}", s.describe());
    std::fs::write(&staged_file, &honest).unwrap();
    let s = sign(&w, holders[2].join("root").to_str().unwrap());
    s.expect_code(0, "carol signs");
    assert!(
        s.stdout.contains("both thresholds are met"),
        "{}",
        s.describe()
    );
    let kept_stale = w.dir.join("stale-2.root.json");
    std::fs::copy(&staged_file, &kept_stale).unwrap();
    repo(&w, "publish", &[]).expect_code(0, "publish");
    let state = w.dir.join("state");
    verify_state(&w, &pinned, &state).expect_code(0, "a client follows root v1 -> v2 (2-of-3)");
    tfs(&["repo", "status", &repo_str(&w)]).expect_code(0, "status after publishing");

    // A stale staged root (v2 again, while v2 is published) is refused by sign and publish.
    std::fs::create_dir_all(w.repo.join("staged")).unwrap();
    std::fs::copy(&kept_stale, &staged_file).unwrap();
    let before = snapshot_of(&w.metadata());
    let s = sign(&w, holders[1].join("root").to_str().unwrap());
    s.expect_code(1, "sign a stale staged root");
    assert!(s.stderr.contains("is stale"), "{}", s.describe());
    repo(&w, "publish", &[]).expect_code(1, "publish stale");
    assert_eq!(snapshot_of(&w.metadata()), before);
    std::fs::remove_file(&staged_file).unwrap();

    // The root key is no longer on the publishing machine: add and refresh still work.
    w.write("b.txt", b"b\n");
    w.publish();
    repo(&w, "refresh", &[]).expect_code(0, "refresh");
    // The next rotation (targets) needs 2 of the 3 holders: staged, then signed by bob and alice.
    let r = repo(&w, "rotate", &["--role", "targets"]);
    r.expect_code(0, "rotate targets under a 2-of-3 root");
    assert!(
        r.stdout.contains("staged root version 3"),
        "{}",
        r.describe()
    );
    for h in [&holders[1], &holders[0]] {
        sign(&w, h.join("root").to_str().unwrap()).expect_code(0, "holder signs");
    }
    repo(&w, "publish", &[]).expect_code(0, "publish v3");
    verify_state(&w, &pinned, &state)
        .expect_code(0, "the client follows to root v3 and the new targets key");
}

#[test]
fn bad_rotations_are_refused_and_the_repository_is_untouched() {
    let w = World::new("keys-bad", &[("a.txt", b"a\n")], &[]);
    let before = snapshot_of(&w.metadata());
    let keys_before = snapshot_of(&w.keys);
    let r = repo(&w, "rotate", &["--role", "snapshot", "--threshold", "2"]);
    r.expect_code(1, "threshold above the number of keys");
    assert!(
        r.stderr.contains("could never be signed"),
        "{}",
        r.describe()
    );
    let same = w.keys.join("targets.pub").display().to_string();
    let r = repo(&w, "rotate", &["--role", "targets", "--key", &same]);
    r.expect_code(1, "rotation to the same key");
    assert!(
        r.stderr.contains("already a key of the targets role"),
        "{}",
        r.describe()
    );
    // An RSA key clients cannot use well (1024 bits) is refused before anything is written.
    let small = w.dir.join("small.pem");
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
        ])
        .arg(&small))
    .expect_code(0, "openssl genpkey");
    let out = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&small));
    let small_pub = w.dir.join("small.pub");
    std::fs::write(
        &small_pub,
        serde_json::to_vec(&json!({"keytype": "rsa", "scheme": "rsassa-pss-sha256",
            "keyval": {"public": out.stdout}}))
        .unwrap(),
    )
    .unwrap();
    let r = repo(
        &w,
        "rotate",
        &["--role", "timestamp", "--key", small_pub.to_str().unwrap()],
    );
    r.expect_code(1, "a 1024-bit RSA key");
    assert!(
        r.stderr.contains("an RSA key of 1024 bits"),
        "{}",
        r.describe()
    );
    let r = repo(&w, "rotate", &["--role", "nosuchrole"]);
    assert_ne!(r.code, Some(0), "{}", r.describe());
    let r = sign(&w, w.keys.join("root").to_str().unwrap());
    r.expect_code(1, "sign with nothing staged");
    assert!(r.stderr.contains("nothing is staged"), "{}", r.describe());
    assert_eq!(snapshot_of(&w.metadata()), before);
    assert_eq!(snapshot_of(&w.keys), keys_before);
}

#[test]
fn encrypted_keys_round_trip_with_python_cryptography_and_a_wrong_passphrase_writes_nothing() {
    let dir = std::env::temp_dir().join(format!("trustfs-keys-enc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // trustfs encrypts (ecdsa and rsa, passphrase from the environment); python reads and signs.
    for (name, kind) in [("t-ecdsa", "ecdsa"), ("t-rsa", "rsa"), ("t-ed", "ed25519")] {
        let path = dir.join(name);
        run(trustfs()
            .args(["key", "generate", "--type", kind, "--encrypt"])
            .arg(&path)
            .env("TRUSTFS_KEY_PASSPHRASE", "correct horse"))
        .expect_code(0, "key generate --encrypt");
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{pem}"
        );
        let py = run(Command::new(python()).arg("-c").arg(format!(
            "from cryptography.hazmat.primitives import serialization\n\
             k = serialization.load_pem_private_key(open({:?}, 'rb').read(), password=b'correct horse')\n\
             print(type(k).__name__)",
            path.display().to_string()
        )));
        py.expect_code(0, "python reads trustfs's encrypted key");
    }
    // python encrypts (BestAvailableEncryption); trustfs reads it through --passphrase-fd.
    let keydir = dir.join("keys");
    std::fs::create_dir_all(&keydir).unwrap();
    run(Command::new(python()).arg("-c").arg(format!(
        "from cryptography.hazmat.primitives import serialization\n\
         from cryptography.hazmat.primitives.asymmetric import ed25519\n\
         k = ed25519.Ed25519PrivateKey.generate()\n\
         open({:?}, 'wb').write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b'from python')))",
        keydir.join("root").display().to_string()
    )))
    .expect_code(0, "python writes an encrypted key");
    std::fs::write(dir.join("pass"), "wrong passphrase\n").unwrap();
    let repo = dir.join("repo");
    let wrong = run(Command::new("sh").arg("-c").arg(format!(
        "exec {BIN} repo init {} --keys {} --passphrase-fd 3 3<{}",
        repo.display(),
        keydir.display(),
        dir.join("pass").display()
    )));
    wrong.expect_code(1, "a wrong passphrase");
    assert!(
        wrong.stderr.contains("wrong passphrase"),
        "{}",
        wrong.describe()
    );
    assert!(!repo.exists(), "nothing of the repository is written");
    assert_eq!(
        std::fs::read_dir(&keydir).unwrap().count(),
        1,
        "no other key generated"
    );
    std::fs::write(dir.join("pass"), "from python\n").unwrap();
    let ok = run(Command::new("sh").arg("-c").arg(format!(
        "exec {BIN} repo init {} --keys {} --passphrase-fd 3 3<{}",
        repo.display(),
        keydir.display(),
        dir.join("pass").display()
    )));
    ok.expect_code(0, "the right passphrase");
    // An unencrypted root key in use is warned about; the python-encrypted one is not.
    assert!(!ok.stderr.contains("is not encrypted"), "{}", ok.describe());
    let plain = run(trustfs()
        .args(["repo", "init"])
        .arg(dir.join("repo-plain"))
        .arg("--keys")
        .arg(dir.join("keys-plain")));
    plain.expect_code(0, "init with a generated (unencrypted) root key");
    assert!(
        plain.stderr.contains("the root key") && plain.stderr.contains("is not encrypted"),
        "{}",
        plain.describe()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Copy `from` to `to` (a plain recursive copy of a repository).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn prune_keeps_what_a_client_at_the_previous_version_needs_and_undelegate_and_refresh_housekeep() {
    let w = World::new("keys-prune", &[("app.txt", b"version 1\n")], &[]);
    let pinned = w.dir.join("pinned-root.json");
    std::fs::copy(w.metadata().join("1.root.json"), &pinned).unwrap();
    // A delegated role that expires soon: refresh re-signs it (its keys are in KEYDIR).
    repo(
        &w,
        "delegate",
        &["--role", "docs", "--path", "docs/*", "--expires", "docs=1d"],
    )
    .expect_code(0, "delegate");
    // Without its keys: a warning names it.
    let docs_key = w.keys.join("docs");
    std::fs::rename(&docs_key, w.dir.join("docs-key-away")).unwrap();
    let r = repo(&w, "refresh", &[]);
    r.expect_code(0, "refresh without the docs key");
    assert!(
        r.stderr.contains("delegated role docs expires at"),
        "{}",
        r.describe()
    );
    std::fs::rename(w.dir.join("docs-key-away"), &docs_key).unwrap();
    let r = repo(&w, "refresh", &[]);
    r.expect_code(0, "refresh");
    assert!(r.stdout.contains("re-signed docs"), "{}", r.describe());
    repo(&w, "undelegate", &["--role", "docs"]).expect_code(0, "undelegate");
    let targets: Value =
        serde_json::from_slice(&std::fs::read(newest(&w, "targets").0).unwrap()).unwrap();
    assert_eq!(
        targets["signed"]["delegations"]["roles"],
        json!([]),
        "{targets}"
    );

    // A client starts an update at the previous version (it has read that timestamp); then
    // the publisher publishes a new version and prunes.
    let previous = w.dir.join("previous-timestamp.json");
    std::fs::copy(w.metadata().join("timestamp.json"), &previous).unwrap();
    let old_content = w.dir.join("old-content");
    copy_tree(&w.content, &old_content);
    w.write("app.txt", b"version 2\n");
    w.publish();
    w.write("app.txt", b"version 3\n");
    w.publish();
    let view_at_previous = |tag: &str| {
        // The repository as that client sees it: today's files, yesterday's timestamp.
        let view = w.dir.join(tag);
        let _ = std::fs::remove_dir_all(&view);
        copy_tree(&w.repo, &view);
        std::fs::copy(&previous, view.join("metadata/timestamp.json")).unwrap();
        view
    };
    let verify_view = |view: &Path, content: &Path| {
        tfs(&[
            "verify",
            "--root",
            pinned.to_str().unwrap(),
            "--metadata",
            view.join("metadata").to_str().unwrap(),
            content.to_str().unwrap(),
        ])
    };
    let r = tfs(&["repo", "prune", &repo_str(&w), "--keep", "2"]);
    r.expect_code(0, "prune --keep 2");
    assert!(r.stdout.contains("removed"), "{}", r.describe());
    verify_view(&w.repo, &w.content).expect_code(0, "the current version after prune");
    verify_view(&view_at_previous("view-keep"), &old_content)
        .expect_code(0, "a client two versions behind still finds everything");
    // python-tuf at that older version, over HTTP, downloads its target too.
    let view = view_at_previous("view-http");
    let server = HttpServer::serve(view.to_path_buf());
    let out = w.dir.join("py-old");
    download_kept(
        &server,
        &pinned,
        &out,
        &w.dir.join("py-cache"),
        &["app.txt"],
    )
    .expect_code(0, "python-tuf at the previous version");
    assert_eq!(std::fs::read(out.join("app.txt")).unwrap(), b"version 1\n");
    drop(server);
    // With nothing kept, that client is stranded: the check above can fail.
    tfs(&["repo", "prune", &repo_str(&w), "--keep", "0"]).expect_code(0, "prune --keep 0");
    verify_view(&w.repo, &w.content).expect_code(0, "the current version after prune --keep 0");
    assert_ne!(
        verify_view(&view_at_previous("view-none"), &old_content).code,
        Some(0),
        "prune --keep 0 must have removed the previous version"
    );
    // Roots are never pruned.
    assert!(w.metadata().join("1.root.json").exists());
}
