//! Threats to the metadata and content that `trustfs verify` (and so every mount, which uses the
//! same client) must catch. Each test is named after the attack it stages.

use crate::harness as support;

use serde_json::{json, Value};
use support::tufrepo::{sign, tamper_json, TestRepo};
use support::{show, trustfs, TempDir};
use trustfs::schema::{Metadata, SigningKey, UtcTime};
use trustfs::trust::{self, MetadataSource, TrustErrorKind, TrustOptions};

fn repo_with_files(tmp: &TempDir) -> TestRepo {
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("hello.txt", b"hello world\n");
    repo.add_file("sub/dir/data.bin", &[7u8; 10_000]);
    repo.publish();
    repo
}

fn verify(repo: &TestRepo, extra: &[&str]) -> (i32, Value, String) {
    let out = repo.trustfs_verify(&[&["--json"], extra].concat());
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&out)));
    (out.status.code().unwrap_or(-1), v, show(&out))
}

/// The root version a load with `state` ends at.
fn root_version(repo: &TestRepo, state: &TempDir) -> u64 {
    load(repo, Some(state.path())).unwrap().summary.root_version
}

fn load(
    repo: &TestRepo,
    state: Option<&std::path::Path>,
) -> Result<trust::Trusted, trust::TrustError> {
    trust::load(&TrustOptions {
        trusted_root: repo.root_path(),
        source: MetadataSource::Dir(repo.metadata_dir()),
        state_dir: state.map(|p| p.to_owned()),
        now: std::time::SystemTime::now(),
        http: Default::default(),
    })
}

fn file_status<'a>(v: &'a Value, path: &str) -> &'a str {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .map(|f| f["status"].as_str().unwrap())
        .unwrap_or("absent")
}

#[test]
fn intact_repository_verifies() {
    let tmp = TempDir::new("intact");
    let repo = repo_with_files(&tmp);
    let (code, v, out) = verify(&repo, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["counts"]["ok"], 2);
    let human = repo.trustfs_verify(&[]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("✔ 2 files verified"),
        "{text}"
    );
}

#[test]
fn tampered_content_is_altered() {
    let tmp = TempDir::new("tamper");
    let repo = repo_with_files(&tmp);
    std::fs::write(repo.content_dir().join("hello.txt"), b"hello World\n").unwrap();
    let (code, v, out) = verify(&repo, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(file_status(&v, "hello.txt"), "altered");
    assert!(out.contains("sha256 mismatch"), "{out}");
    std::fs::write(
        repo.content_dir().join("hello.txt"),
        b"hello world\n and more",
    )
    .unwrap();
    let (code, _, out) = verify(&repo, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("length mismatch"), "{out}");
}

#[test]
fn unregistered_file_is_reported() {
    let tmp = TempDir::new("unreg");
    let repo = repo_with_files(&tmp);
    std::fs::write(
        repo.content_dir().join("sub/injected.sh"),
        b"#!/bin/sh\nrm -rf /\n",
    )
    .unwrap();
    let (code, v, out) = verify(&repo, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(file_status(&v, "sub/injected.sh"), "unregistered");
    assert_eq!(v["counts"]["unregistered"], 1);
    assert_eq!(v["counts"]["ok"], 2);
}

#[test]
fn missing_file_is_reported() {
    let tmp = TempDir::new("missing");
    let repo = repo_with_files(&tmp);
    std::fs::remove_file(repo.content_dir().join("sub/dir/data.bin")).unwrap();
    let (code, v, out) = verify(&repo, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(file_status(&v, "sub/dir/data.bin"), "missing");
}

#[test]
fn symlink_in_place_of_target_is_not_followed() {
    let tmp = TempDir::new("symlink");
    let repo = repo_with_files(&tmp);
    let p = repo.content_dir().join("hello.txt");
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &p).unwrap();
    let (code, v, out) = verify(&repo, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(file_status(&v, "hello.txt"), "altered");
    assert!(out.contains("symbolic link"), "{out}");
}

#[test]
fn bad_signature_on_targets_is_refused() {
    let tmp = TempDir::new("badsig");
    let repo = repo_with_files(&tmp);
    // Change a signed field after signing: the signature no longer covers the content.
    tamper_json(&repo.metadata_dir().join("1.targets.json"), |v| {
        v["signed"]["targets"]["hello.txt"]["length"] = json!(13);
    });
    let (code, v, out) = verify(&repo, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("signature threshold not met"),
        "{out}"
    );
    assert_eq!(
        load(&repo, None).unwrap_err().kind,
        TrustErrorKind::Signature
    );
}

#[test]
fn signature_by_unlisted_key_does_not_count() {
    let tmp = TempDir::new("wrongkey");
    let mut repo = repo_with_files(&tmp);
    let mut t = Metadata::new(repo.targets()).unwrap();
    let attacker = SigningKey::generate();
    sign(&mut t, &[&attacker]);
    repo.write_targets_md(&t);
    assert_eq!(
        load(&repo, None).unwrap_err().kind,
        TrustErrorKind::Signature
    );
}

#[test]
fn threshold_not_met_with_one_of_two_keys() {
    let tmp = TempDir::new("threshold");
    let mut repo = TestRepo::new(tmp.path());
    repo.keys
        .get_mut("targets")
        .unwrap()
        .push(SigningKey::generate());
    repo.threshold.insert("targets".into(), 2);
    repo.write_root(&["root"]);
    repo.add_file("a", b"a");
    // Sign with only the first targets key.
    let mut t = Metadata::new(repo.targets()).unwrap();
    sign(&mut t, &[&repo.keys["targets"][0]]);
    repo.write_targets_md(&t);
    let err = load(&repo, None).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Signature);
    assert!(err.message.contains("1 of 2"), "{err}");
    // Both keys: accepted.
    repo.publish();
    load(&repo, None).unwrap();
}

#[test]
fn threshold_not_met_by_repeating_one_keys_signature() {
    let tmp = TempDir::new("repeat");
    let mut repo = TestRepo::new(tmp.path());
    repo.keys
        .get_mut("targets")
        .unwrap()
        .push(SigningKey::generate());
    repo.threshold.insert("targets".into(), 2);
    repo.write_root(&["root"]);
    repo.add_file("a", b"a");
    let mut t = Metadata::new(repo.targets()).unwrap();
    let k0 = &repo.keys["targets"][0];
    sign(&mut t, &[k0, k0]);
    repo.write_targets_md(&t);
    let (code, v, out) = verify(&repo, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("two signatures from key id"),
        "{out}"
    );
}

#[test]
fn same_key_under_two_key_ids_counts_once() {
    let tmp = TempDir::new("twoids");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("a", b"a");
    repo.threshold.insert("targets".into(), 2);
    // Root lists the one targets key under a second key id too.
    let k = &repo.keys["targets"][0];
    let alias = "aa".repeat(32);
    let mut root = repo.root();
    // The alias spells the same key in upper-case hex: still one signer.
    let mut aliased = k.public_key().to_value();
    let upper = aliased["keyval"]["public"].as_str().unwrap().to_uppercase();
    aliased["keyval"]["public"] = serde_json::Value::String(upper);
    root.keys.insert(alias.clone(), aliased);
    root.roles
        .get_mut("targets")
        .unwrap()
        .keyids
        .push(alias.clone());
    let mut md = Metadata::new(root).unwrap();
    sign(&mut md, &[&repo.keys["root"][0]]);
    repo.write("1.root.json", &md.to_bytes());
    let mut t = Metadata::new(repo.targets()).unwrap();
    sign(&mut t, &[k]);
    let msg = t.canonical_signed().unwrap();
    t.signatures.push(trustfs::schema::Signature {
        keyid: alias,
        sig: hex::encode(k.sign(&msg)),
    });
    repo.write_targets_md(&t);
    let err = load(&repo, None).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Signature, "{err}");
}

#[test]
fn expired_role_is_refused() {
    for role in ["timestamp", "snapshot", "targets", "root"] {
        let tmp = TempDir::new("expired");
        let mut repo = TestRepo::new(tmp.path());
        repo.expires
            .insert(role.into(), UtcTime(UtcTime::now().0 - 60));
        repo.write_root(&["root"]);
        repo.add_file("a", b"a");
        repo.publish();
        let (code, v, out) = verify(&repo, &[]);
        assert_eq!(code, 2, "{role}: {out}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains(&format!("{role} metadata")) && e.contains("expired"),
            "{role}: {e}"
        );
    }
}

#[test]
fn rolled_back_timestamp_is_refused_after_restart() {
    let tmp = TempDir::new("rollback");
    let state = TempDir::new("rollback-state");
    let mut repo = repo_with_files(&tmp);
    let old_ts = repo.read("timestamp.json");
    repo.bump_and_publish();
    let t = load(&repo, Some(state.path())).unwrap();
    assert_eq!(t.summary.timestamp_version, 2);
    // An attacker (or a stale mirror) serves the old timestamp.
    repo.write("timestamp.json", &old_ts);
    let err = load(&repo, Some(state.path())).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Rollback, "{err}");
    assert!(err.message.contains("from 2 to 1"), "{err}");
    // The CLI keeps the same protection through --state-dir.
    let (code, _, out) = verify(&repo, &["--state-dir", state.path().to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn rolled_back_targets_version_in_snapshot_is_refused() {
    let tmp = TempDir::new("rollback-targets");
    let state = TempDir::new("rollback-targets-state");
    let mut repo = repo_with_files(&tmp);
    repo.bump_and_publish(); // targets v2
    load(&repo, Some(state.path())).unwrap();
    // New snapshot (v3) and timestamp (v3) that point back at targets v1.
    repo.targets_version = 1;
    repo.snapshot_version = 3;
    repo.timestamp_version = 3;
    repo.publish();
    let err = load(&repo, Some(state.path())).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Rollback, "{err}");
}

#[test]
fn snapshot_version_must_match_timestamp() {
    let tmp = TempDir::new("mixmatch");
    let mut repo = repo_with_files(&tmp);
    // Timestamp names snapshot v2, but 2.snapshot.json is really v1's content.
    let old = repo.read("1.snapshot.json");
    repo.bump_and_publish();
    repo.write("2.snapshot.json", &old);
    let err = load(&repo, None).unwrap_err();
    // The timestamp lists length and hash of the snapshot, so the swap fails there first.
    assert_eq!(err.kind, TrustErrorKind::Mismatch, "{err}");
}

#[test]
fn root_rotation_to_new_keys() {
    let tmp = TempDir::new("rotation");
    let mut repo = repo_with_files(&tmp);
    let old_root_key = repo.keys["root"][0].to_pkcs8_pem().unwrap();
    // Root v2 with a new root key and a new targets key, signed by old and new root keys.
    repo.root_version = 2;
    let new_root = SigningKey::generate();
    repo.keys.insert("root".into(), vec![new_root]);
    repo.keys
        .insert("targets".into(), vec![SigningKey::generate()]);
    let mut md = Metadata::new(repo.root()).unwrap();
    let old = SigningKey::from_pkcs8_pem(&old_root_key).unwrap();
    sign(&mut md, &[&old, &repo.keys["root"][0]]);
    repo.write("2.root.json", &md.to_bytes());
    repo.bump_and_publish();
    let t = load(&repo, None).unwrap();
    assert_eq!(t.summary.root_version, 2);
    assert_eq!(t.summary.targets_version, 2);
}

#[test]
fn root_rotation_without_old_threshold_is_refused() {
    let tmp = TempDir::new("rotation-noold");
    let mut repo = repo_with_files(&tmp);
    repo.root_version = 2;
    repo.keys
        .insert("root".into(), vec![SigningKey::generate()]);
    repo.write_root(&["root"]); // signed only by the new key
    let err = load(&repo, None).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Signature);
    assert!(err.message.contains("previous root"), "{err}");
}

#[test]
fn root_rotation_without_new_threshold_is_refused() {
    let tmp = TempDir::new("rotation-nonew");
    let mut repo = repo_with_files(&tmp);
    let old = SigningKey::from_pkcs8_pem(&repo.keys["root"][0].to_pkcs8_pem().unwrap()).unwrap();
    repo.root_version = 2;
    repo.keys.insert(
        "root".into(),
        vec![SigningKey::generate(), SigningKey::generate()],
    );
    repo.threshold.insert("root".into(), 2);
    let mut md = Metadata::new(repo.root()).unwrap();
    sign(&mut md, &[&old, &repo.keys["root"][0]]); // only 1 of the 2 new keys
    repo.write("2.root.json", &md.to_bytes());
    let err = load(&repo, None).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Signature);
    assert!(err.message.contains("its own keys"), "{err}");
}

#[test]
fn root_rotation_skipping_a_version_is_refused() {
    let tmp = TempDir::new("rotation-skip");
    let mut repo = repo_with_files(&tmp);
    repo.root_version = 3;
    let mut md = Metadata::new(repo.root()).unwrap();
    sign(&mut md, &[&repo.keys["root"][0]]);
    repo.write("2.root.json", &md.to_bytes()); // file 2 holds version 3
    let err = load(&repo, None).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Rollback, "{err}");
}

#[test]
fn hostile_target_names_are_malformed_metadata() {
    for name in [
        "../../etc/passwd",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a\u{0}b",
        "",
    ] {
        let tmp = TempDir::new("hostile");
        let mut repo = TestRepo::new(tmp.path());
        repo.files.insert(name.to_owned(), b"x".to_vec());
        repo.publish();
        let (code, v, out) = verify(&repo, &[]);
        assert_eq!(code, 2, "{name:?}: {out}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("1.targets.json") && e.contains("target path"),
            "{name:?}: {e}"
        );
    }
}

#[test]
fn malformed_metadata_files_get_clear_errors() {
    type Tamper = Box<dyn Fn(&TestRepo)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "invalid json",
            Box::new(|r: &TestRepo| r.write("timestamp.json", b"{not json")),
            "not valid JSON",
        ),
        (
            "wrong type",
            Box::new(|r: &TestRepo| {
                tamper_json(&r.metadata_dir().join("1.targets.json"), |v| {
                    v["signed"]["version"] = json!("one")
                })
            }),
            "invalid type",
        ),
        (
            "negative length",
            Box::new(|r: &TestRepo| {
                tamper_json(&r.metadata_dir().join("1.targets.json"), |v| {
                    v["signed"]["targets"]["a"]["length"] = json!(-1)
                })
            }),
            "invalid value",
        ),
        (
            "wrong role",
            Box::new(|r: &TestRepo| r.write("timestamp.json", &r.read("1.snapshot.json"))),
            "expected a timestamp role",
        ),
        (
            "oversize",
            Box::new(|r: &TestRepo| r.write("timestamp.json", &vec![b' '; 100_000])),
            "larger than the limit",
        ),
        (
            "float",
            Box::new(|r: &TestRepo| {
                tamper_json(&r.metadata_dir().join("1.targets.json"), |v| {
                    v["signed"]["x-float"] = json!(1.5)
                })
            }),
            "canonical",
        ),
        (
            "bad spec version",
            Box::new(|r: &TestRepo| {
                tamper_json(&r.metadata_dir().join("1.targets.json"), |v| {
                    v["signed"]["spec_version"] = json!("2.0.0")
                })
            }),
            "spec_version",
        ),
    ];
    for (what, f, expect) in cases {
        let tmp = TempDir::new("malformed");
        let mut repo = TestRepo::new(tmp.path());
        repo.add_file("a", b"a");
        repo.publish();
        f(&repo);
        let (code, v, out) = verify(&repo, &[]);
        assert_eq!(code, 2, "{what}: {out}");
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.contains(expect), "{what}: expected {expect:?} in {e:?}");
    }
}

#[test]
fn unknown_fields_are_kept_and_covered_by_signature() {
    let tmp = TempDir::new("unknown");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("a", b"a");
    repo.targets_extra.insert(
        "x-vendor".into(),
        json!({"note": "line1\nline2 \"quoted\" é"}),
    );
    repo.publish();
    load(&repo, None).expect("unknown fields verify");
    tamper_json(&repo.metadata_dir().join("1.targets.json"), |v| {
        v["signed"]["x-vendor"]["note"] = json!("changed")
    });
    assert_eq!(
        load(&repo, None).unwrap_err().kind,
        TrustErrorKind::Signature
    );
}

#[test]
fn root_from_metadata_dir_is_not_trusted_without_chain() {
    // An attacker who controls the metadata dir writes their own 1.root.json; the pinned root
    // (a copy kept elsewhere) still rules.
    let tmp = TempDir::new("pin");
    let pin = TempDir::new("pin-copy");
    let repo = repo_with_files(&tmp);
    let pinned = pin.path().join("root.json");
    std::fs::copy(repo.root_path(), &pinned).unwrap();
    let attacker = TempDir::new("pin-attacker");
    let mut evil = TestRepo::new(attacker.path());
    evil.add_file("hello.txt", b"evil\n");
    evil.publish();
    for f in std::fs::read_dir(evil.metadata_dir()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), repo.metadata_dir().join(f.file_name())).unwrap();
    }
    let out = trustfs(&[
        "verify",
        "--json",
        "--root",
        pinned.to_str().unwrap(),
        "--metadata",
        repo.metadata_dir().to_str().unwrap(),
        repo.content_dir().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

#[test]
fn state_dir_of_another_repository_cannot_replace_the_pinned_root() {
    // Repository A rotated to root v2; its state dir is then (mis)used for repository B.
    let a_dir = TempDir::new("state-other-a");
    let b_dir = TempDir::new("state-other-b");
    let state = TempDir::new("state-other-state");
    let mut a = repo_with_files(&a_dir);
    a.root_version = 2;
    a.write_root(&["root"]);
    assert_eq!(root_version(&a, &state), 2);
    let b = repo_with_files(&b_dir);
    // Pinned to B's root, reading A's metadata: A's root v2 in the state dir must not be used.
    let out = trustfs(&[
        "verify",
        "--json",
        "--root",
        b.root_path().to_str().unwrap(),
        "--metadata",
        a.metadata_dir().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
        a.content_dir().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    // And B, pinned to its own root, still verifies with that state dir.
    let t = load(&b, Some(state.path())).unwrap();
    assert_eq!(t.summary.root_version, 1);
}

#[test]
fn persisted_root_rotation_is_reverified_from_the_pin() {
    let tmp = TempDir::new("state-chain");
    let state = TempDir::new("state-chain-state");
    let mut repo = repo_with_files(&tmp);
    repo.root_version = 2;
    repo.write_root(&["root"]);
    assert_eq!(root_version(&repo, &state), 2);
    // The repository no longer serves 2.root.json: the chain comes from the state's history.
    std::fs::remove_file(repo.metadata_dir().join("2.root.json")).unwrap();
    assert_eq!(root_version(&repo, &state), 2);
    // With the history gone, the stored root v2 cannot be chained to the pin and is not used.
    std::fs::remove_dir_all(state.path().join("root-history")).unwrap();
    assert_eq!(root_version(&repo, &state), 1);
}

#[test]
fn state_dir_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("state-perm");
    let state = TempDir::new("state-perm-state");
    let repo = repo_with_files(&tmp);
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = load(&repo, Some(state.path())).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::State);
    assert!(
        err.message.contains("not be writable by group or others"),
        "{err}"
    );
}
