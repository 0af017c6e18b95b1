//! Publishing delegated targets roles (`trustfs repo delegate`, `trustfs repo add --role`): what
//! trustfs's own client, and python-tuf's, make of the result; what the publisher refuses
//! (files outside a role's paths or hash bins, unusable role names, too few keys for a
//! threshold); and the delegation search rules a publisher relies on (terminating delegations).

use crate::harness::http::HttpServer;
use crate::harness::python as python_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use python_support::{python_script, run, Run};
use trustfs::repo::{self, DelegateOptions, DelegatedPaths, Expiries, RepoError};
use trustfs::schema::{verify_threshold, Metadata, Targets};

use crate::harness::publish::Repo;
use crate::harness::python::run_trustfs as trustfs;
use crate::harness::TempDir as Scratch;
use crate::harness::{os, read_json};

/// Write `files` (path → content) under `dir`.
fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (name, data) in files {
        let p = dir.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
    }
}

/// Every file under `dir` with its content, for "nothing was written" checks.
fn snapshot_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

impl Repo {}

/// Assert a `verify --json` run verified exactly `ok` files and nothing failed.
#[track_caller]
fn assert_all_ok(run: &Run, ok: u64) {
    run.expect_code(0, "trustfs verify");
    let report = run.json();
    assert_eq!(report["ok"], true, "{}", run.describe());
    assert_eq!(report["counts"]["ok"], ok, "{}", run.describe());
    for field in ["unregistered", "altered", "missing"] {
        assert_eq!(report["counts"][field], 0, "{field}: {}", run.describe());
    }
}

/// The status `verify --json` gives `path`.
fn status_of(run: &Run, path: &str) -> String {
    run.json()["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in the report\n{}", run.describe()))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A repository with a top-level target `top.txt` and role `team` (paths `team/*`, `team/*/*`)
/// listing `team/a.txt` and `team/sub/b.txt`; returns it and the directory with all three files.
fn team_repo(s: &Scratch) -> (Repo, PathBuf) {
    let r = Repo::init(s);
    let top = s.join("top");
    let team = s.join("team");
    write_tree(&top, &[("top.txt", "top level\n")]);
    write_tree(
        &team,
        &[("team/a.txt", "from the team\n"), ("team/sub/b.txt", "b\n")],
    );
    r.add(&top, &[]).expect_code(0, "repo add");
    r.delegate("team", &["--path", "team/*", "--path", "team/*/*"])
        .expect_code(0, "repo delegate");
    r.add(&team, &["--role", "team"])
        .expect_code(0, "repo add --role team");
    let all = s.join("all");
    write_tree(
        &all,
        &[
            ("top.txt", "top level\n"),
            ("team/a.txt", "from the team\n"),
            ("team/sub/b.txt", "b\n"),
        ],
    );
    (r, all)
}

#[test]
fn delegated_targets_verify_with_trustfs() {
    let s = Scratch::new("verify");
    let (r, all) = team_repo(&s);
    assert_all_ok(&r.verify(&all, None), 3);

    // What was written: 1.team.json (empty, from delegate), 2.team.json (from add), listed by
    // snapshot, signed by KEYDIR/team as targets delegates it.
    assert!(r.metadata().join("1.team.json").is_file());
    let team = r.role("team");
    assert_eq!(team.version(), 2);
    let names: Vec<&String> = team.signed.targets.keys().collect();
    assert_eq!(names, ["team/a.txt", "team/sub/b.txt"]);
    let tv = r.snapshot_meta()["targets.json"]["version"]
        .as_u64()
        .unwrap();
    let targets: Metadata<Targets> = Metadata::from_slice(
        "targets",
        &fs::read(r.metadata().join(format!("{tv}.targets.json"))).unwrap(),
    )
    .unwrap();
    // The top-level list is untouched by `add --role`.
    assert_eq!(
        targets.signed.targets.keys().collect::<Vec<_>>(),
        ["top.txt"]
    );
    let d = targets.signed.delegations.as_ref().unwrap();
    let entry = &d.roles()[0];
    assert_eq!(entry.name, "team");
    assert_eq!(entry.threshold, 1);
    assert!(!entry.terminating);
    assert_eq!(
        entry.paths.as_deref(),
        Some(&["team/*".to_string(), "team/*/*".to_string()][..])
    );
    verify_threshold("team", &team, &entry.keyids, entry.threshold, &d.keys).unwrap();
    let team_pub = read_json(&r.keys.join("team.pub"));
    assert_eq!(d.keys[&entry.keyids[0]]["keyval"], team_pub["keyval"]);

    // Content went to targets/ under its consistent-snapshot name.
    let digest = hex::encode(Sha256::digest(b"from the team\n"));
    assert!(r.dir.join(format!("targets/team/{digest}.a.txt")).is_file());

    // A second add --role replaces the role's list (sync, not append).
    let team2 = s.join("team2");
    write_tree(&team2, &[("team/a.txt", "from the team\n")]);
    let out = r.add(&team2, &["--role", "team"]);
    out.expect_code(0, "second add --role");
    assert!(
        out.stdout.contains("removed team/sub/b.txt"),
        "{}",
        out.describe()
    );
    assert_eq!(r.role("team").signed.targets.len(), 1);
    fs::remove_file(all.join("team/sub/b.txt")).unwrap();
    assert_all_ok(&r.verify(&all, None), 2);
}

#[test]
fn file_outside_the_delegated_paths_is_refused_and_nothing_is_written() {
    let s = Scratch::new("outside");
    let (r, _) = team_repo(&s);
    let before = snapshot_tree(&r.dir);
    let content = s.join("bad");
    write_tree(
        &content,
        &[("team/ok.txt", "fine\n"), ("elsewhere/x.txt", "not team\n")],
    );
    let out = r.add(&content, &["--role", "team"]);
    out.expect_code(1, "add --role with a file outside team/*");
    assert!(
        out.stderr.contains("elsewhere/x.txt")
            && out.stderr.contains("\"team\"")
            && out.stderr.contains("team/*"),
        "the message must name the file, the role and its patterns\n{}",
        out.describe()
    );
    assert_eq!(
        before,
        snapshot_tree(&r.dir),
        "a refused add --role changed the repository"
    );

    // The library reports the same as a typed error.
    let err = repo::add(&repo::AddOptions {
        repo: r.dir.clone(),
        keydir: r.keys.clone(),
        content_dir: content.clone(),
        sha512: false,
        expires: Expiries::default(),
        role: Some("team".into()),
        sharding: Default::default(),
        reread: false,
        progress: false,
    })
    .unwrap_err();
    assert!(
        matches!(&err, RepoError::OutsideDelegation { target, role, .. }
            if target == "elsewhere/x.txt" && role == "team"),
        "{err}"
    );

    // A role nobody delegated is an error too, not a new role.
    r.add(&content, &["--role", "nobody"])
        .expect_code(1, "add --role for an unknown role");
    assert_eq!(before, snapshot_tree(&r.dir));
}

/// The first hex digit of sha256(path): what `path_hash_prefixes` match.
fn bin_of(path: &str) -> char {
    hex::encode(Sha256::digest(path.as_bytes()))
        .chars()
        .next()
        .unwrap()
}

#[test]
fn hashed_bins_route_each_file_to_its_bin() {
    let s = Scratch::new("bins");
    let r = Repo::init(&s);
    // Two paths whose sha256 starts with different hex digits.
    let p1 = "files/one.txt";
    let p2 = (0..)
        .map(|i| format!("files/two-{i}.txt"))
        .find(|p| bin_of(p) != bin_of(p1))
        .unwrap();
    let (b1, b2) = (bin_of(p1).to_string(), bin_of(&p2).to_string());
    r.delegate("bin-a", &["--hash-prefix", &b1])
        .expect_code(0, "delegate bin-a");
    r.delegate("bin-b", &["--hash-prefix", &b2])
        .expect_code(0, "delegate bin-b");

    let c1 = s.join("c1");
    let c2 = s.join("c2");
    write_tree(&c1, &[(p1, "one\n")]);
    write_tree(&c2, &[(&p2, "two\n")]);
    r.add(&c1, &["--role", "bin-a"])
        .expect_code(0, "add into bin-a");
    r.add(&c2, &["--role", "bin-b"])
        .expect_code(0, "add into bin-b");
    let all = s.join("all");
    write_tree(&all, &[(p1, "one\n"), (&p2, "two\n")]);
    assert_all_ok(&r.verify(&all, None), 2);
    assert_eq!(
        r.role("bin-a").signed.targets.keys().collect::<Vec<_>>(),
        [p1]
    );

    // p2 hashes outside bin-a's prefix.
    let before = snapshot_tree(&r.dir);
    let out = r.add(&c2, &["--role", "bin-a"]);
    out.expect_code(1, "a file added to the wrong bin");
    assert!(
        out.stderr.contains(&p2) && out.stderr.contains("hash prefixes"),
        "{}",
        out.describe()
    );
    assert_eq!(before, snapshot_tree(&r.dir));
}

#[test]
fn terminating_delegation_stops_the_search() {
    let s = Scratch::new("terminating");
    let r = Repo::init(&s);
    r.delegate("role-a", &["--path", "a/*", "--terminating"])
        .expect_code(0, "delegate A");
    r.delegate("role-b", &["--path", "a/*"])
        .expect_code(0, "delegate B");
    let ca = s.join("ca");
    let cb = s.join("cb");
    write_tree(&ca, &[("a/y", "y\n")]);
    write_tree(&cb, &[("a/x", "x\n")]);
    r.add(&ca, &["--role", "role-a"]).expect_code(0, "add A");
    r.add(&cb, &["--role", "role-b"]).expect_code(0, "add B");
    let all = s.join("all");
    write_tree(&all, &[("a/x", "x\n"), ("a/y", "y\n")]);

    // A is listed first and terminating: a search for a/x ends at A, which does not list it.
    let out = r.verify(&all, None);
    out.expect_code(1, "verify with a terminating A");
    assert_eq!(status_of(&out, "a/x"), "unregistered", "{}", out.describe());
    assert_eq!(status_of(&out, "a/y"), "ok");

    // Re-delegating A without --terminating (same position, keys and paths) lets the search
    // continue to B. A is re-signed with a new version.
    let a_version = r.role("role-a").version();
    r.delegate("role-a", &["--path", "a/*"])
        .expect_code(0, "update A");
    assert_eq!(r.role("role-a").version(), a_version + 1);
    let order = read_json(&r.metadata().join(format!(
        "{}.targets.json",
        r.snapshot_meta()["targets.json"]["version"]
    )));
    let names: Vec<&str> = order["signed"]["delegations"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["role-a", "role-b"], "an update keeps the order");
    assert_all_ok(&r.verify(&all, None), 2);
}

#[test]
fn python_tuf_downloads_a_delegated_target() {
    let s = Scratch::new("python");
    let (r, _) = team_repo(&s);
    let server = HttpServer::serve(r.dir.to_path_buf());
    let out_dir = s.join("downloaded");
    let out = run(python_script("download.py")
        .arg("--metadata-url")
        .arg(server.url("metadata/"))
        .arg("--targets-url")
        .arg(server.url("targets/"))
        .arg("--root")
        .arg(r.metadata().join("1.root.json"))
        .arg("--out")
        .arg(&out_dir)
        .arg("team/sub/b.txt")
        .arg("top.txt"));
    out.expect_code(0, &format!("python-tuf download\n{}", server.log()));
    assert_eq!(fs::read(out_dir.join("team/sub/b.txt")).unwrap(), b"b\n");
    assert_eq!(fs::read(out_dir.join("top.txt")).unwrap(), b"top level\n");
    assert!(
        server.log().contains("/metadata/2.team.json"),
        "python-tuf fetched the delegated role by its versioned name\n{}",
        server.log()
    );
}

#[test]
fn refresh_after_delegation_still_verifies() {
    let s = Scratch::new("refresh");
    let (r, all) = team_repo(&s);
    for extra in [&[][..], &["--role", "targets"][..]] {
        let mut args = vec!["repo", "refresh", os(&r.dir), "--keys", os(&r.keys)];
        args.extend_from_slice(extra);
        trustfs(args).expect_code(0, "repo refresh");
        assert_eq!(r.snapshot_meta()["team.json"]["version"], 2);
        assert_all_ok(&r.verify(&all, None), 3);
    }
    // Adding top-level content keeps the delegation and the role's snapshot entry.
    let top = s.join("top");
    r.add(&top, &[]).expect_code(0, "top-level add");
    assert_eq!(r.snapshot_meta()["team.json"]["version"], 2);
    assert_all_ok(&r.verify(&all, None), 3);
}

#[test]
fn nested_delegation_checks_every_level() {
    let s = Scratch::new("nested");
    let (r, all) = team_repo(&s);
    r.delegate(
        "team-sub",
        &[
            "--delegator",
            "team",
            "--path",
            "team/sub/*",
            "--path",
            "x/*",
        ],
    )
    .expect_code(0, "delegate from team");
    // team was re-signed (version 3) with the new delegation.
    assert_eq!(r.role("team").version(), 3);
    assert_eq!(r.role("team-sub").version(), 1);

    // x/y matches team-sub's own paths but not team's: no client would find it there.
    let bad = s.join("bad");
    write_tree(&bad, &[("x/y", "y\n")]);
    let out = r.add(&bad, &["--role", "team-sub"]);
    out.expect_code(1, "a file outside the delegator's paths");
    assert!(out.stderr.contains("x/y"), "{}", out.describe());

    let sub = s.join("sub");
    write_tree(&sub, &[("team/sub/c.txt", "c\n")]);
    r.add(&sub, &["--role", "team-sub"])
        .expect_code(0, "add --role team-sub");
    write_tree(&all, &[("team/sub/c.txt", "c\n")]);
    assert_all_ok(&r.verify(&all, None), 4);
}

#[test]
fn threshold_two_signs_with_both_keys_and_refuses_with_one() {
    let s = Scratch::new("threshold");
    let r = Repo::init(&s);
    let k1 = r.keys.join("team");
    let k2 = r.keys.join("team@2");
    for k in [&k1, &k2] {
        trustfs(["key", "generate", os(k)]).expect_code(0, "key generate");
    }
    let (p1, p2) = (format!("{}.pub", os(&k1)), format!("{}.pub", os(&k2)));

    // Threshold above the number of keys, or above the one default key: refused.
    r.delegate(
        "team",
        &[
            "--path",
            "team/*",
            "--threshold",
            "3",
            "--key",
            &p1,
            "--key",
            &p2,
        ],
    )
    .expect_code(1, "threshold 3 with two keys");
    r.delegate("team", &["--path", "team/*", "--threshold", "2"])
        .expect_code(1, "threshold 2 with the default key");

    r.delegate(
        "team",
        &[
            "--path",
            "team/*",
            "--threshold",
            "2",
            "--key",
            &p1,
            "--key",
            &p2,
        ],
    )
    .expect_code(0, "threshold 2 with two keys");
    let content = s.join("c");
    write_tree(&content, &[("team/f", "f\n")]);
    r.add(&content, &["--role", "team"])
        .expect_code(0, "add --role");
    assert_eq!(r.role("team").signatures.len(), 2);
    assert_all_ok(&r.verify(&content, None), 1);

    // With one of the two keys gone from KEYDIR the publisher refuses to sign short.
    let before = snapshot_tree(&r.dir);
    fs::rename(&k2, s.join("team@2.offline")).unwrap();
    let out = r.add(&content, &["--role", "team"]);
    out.expect_code(1, "add --role holding 1 of 2 keys");
    assert!(
        out.stderr.contains("threshold 2") && out.stderr.contains("holds 1"),
        "{}",
        out.describe()
    );
    assert_eq!(before, snapshot_tree(&r.dir));
}

#[test]
fn unusable_role_names_are_refused() {
    let s = Scratch::new("names");
    let r = Repo::init(&s);
    let before = snapshot_tree(&r.dir);
    for name in [
        "root",
        "targets",
        "snapshot",
        "timestamp",
        "",
        "a/b",
        ".hidden",
        "team.pub",
    ] {
        let out = r.delegate(name, &["--path", "x/*"]);
        out.expect_code(1, &format!("role name {name:?}"));
        assert!(
            out.stderr.contains("cannot use") && out.stderr.contains("as a delegated role name"),
            "{}",
            out.describe()
        );
    }
    // NUL cannot pass through argv; the library refuses it.
    let err = repo::delegate(&DelegateOptions {
        repo: r.dir.clone(),
        keydir: r.keys.clone(),
        role: "a\0b".into(),
        delegator: "targets".into(),
        paths: DelegatedPaths::Paths(vec!["x/*".into()]),
        threshold: 1,
        terminating: false,
        public_keys: Vec::new(),
        expires: Expiries::default(),
    })
    .unwrap_err();
    assert!(matches!(err, RepoError::InvalidRoleName { .. }), "{err}");
    assert_eq!(before, snapshot_tree(&r.dir));
    // Both --path and --hash-prefix: a usage error.
    r.delegate("team", &["--path", "x/*", "--hash-prefix", "0"])
        .expect_code(64, "--path with --hash-prefix");
}
