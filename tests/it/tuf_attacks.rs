//! The attacks of the TUF specification (§1.5.2) and the delegation rules of §5.6.7, staged
//! against trustfs's client (the one `verify`, the mounts and the conformance client share), over a
//! real HTTP server on 127.0.0.1 where the network matters. Each test is named after its attack.

use crate::harness as support;

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::http::{Behaviour, HttpServer};
use support::tufrepo::{sign, Deleg, TestRepo};
use support::TempDir;
use trustfs::schema::{Metadata, SigningKey, UtcTime};
use trustfs::trust::{Client, DirFetcher, HttpFetcher, Limits, TrustErrorKind};

fn client(repo: &TestRepo, state: Option<&std::path::Path>) -> Client {
    repo.client(state, Limits::default()).unwrap()
}

fn http_client(server: &HttpServer, repo: &TestRepo, state: Option<&std::path::Path>) -> Client {
    let fetcher = HttpFetcher::new(&server.url("")).unwrap();
    repo.client_over(Box::new(fetcher), state, Limits::default())
        .unwrap()
}

fn found_role(c: &mut Client, path: &str) -> Option<String> {
    c.find_target(path).unwrap().map(|f| f.role)
}

#[test]
fn arbitrary_installation_content_not_matching_metadata_is_refused() {
    // The attacker swaps the served bytes of a target; the hash listed in signed metadata differs.
    let tmp = TempDir::new("arbitrary");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("app.bin", b"good build");
    repo.publish();
    let mut c = client(&repo, None);
    let found = c.find_target("app.bin").unwrap().unwrap();
    assert!(trustfs::hashing::check_reader(&b"evil build"[..], &found.info).is_err());
    assert!(trustfs::hashing::check_reader(&b"good build"[..], &found.info).is_ok());
    // And a target no role lists cannot be installed at all.
    assert!(c.find_target("backdoor.bin").unwrap().is_none());
}

#[test]
fn endless_data_is_cut_off_at_the_limit() {
    let tmp = TempDir::new("endless");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("a", b"a");
    repo.publish();
    let server = HttpServer::serve(repo.metadata_dir());
    server.set("timestamp.json", Behaviour::Endless);
    let mut c = http_client(&server, &repo, None);
    let start = Instant::now();
    let err = c.refresh().unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Fetch, "{err}");
    assert!(
        err.message.contains("larger than the limit of 16384 bytes"),
        "{err}"
    );
    // Bounded: the client stops reading at the limit rather than waiting for the stream to end.
    assert!(start.elapsed() < Duration::from_secs(30));
    // The same for a role whose size snapshot does not pin (targets).
    server.overrides.lock().unwrap().clear();
    server.set("1.targets.json", Behaviour::Endless);
    let err = http_client(&server, &repo, None).refresh().unwrap_err();
    assert!(
        err.message
            .contains("larger than the limit of 5000000 bytes"),
        "{err}"
    );
}

#[test]
fn endless_data_on_root_rotation_is_cut_off() {
    let tmp = TempDir::new("endless-root");
    let mut repo = TestRepo::new(tmp.path());
    repo.publish();
    let server = HttpServer::serve(repo.metadata_dir());
    server.set("2.root.json", Behaviour::Endless);
    let err = http_client(&server, &repo, None).refresh().unwrap_err();
    assert!(
        err.message
            .contains("larger than the limit of 512000 bytes"),
        "{err}"
    );
}

#[test]
fn server_errors_are_fetch_failures_not_trust_decisions() {
    let tmp = TempDir::new("http-500");
    let mut repo = TestRepo::new(tmp.path());
    repo.publish();
    let server = HttpServer::serve(repo.metadata_dir());
    server.set("timestamp.json", Behaviour::Status(503));
    let err = http_client(&server, &repo, None).refresh().unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Fetch, "{err}");
    assert!(err.message.contains("503"), "{err}");
}

#[test]
fn refresh_over_http_requests_only_what_the_workflow_needs() {
    let tmp = TempDir::new("http-ok");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("a", b"a");
    repo.publish();
    let server = HttpServer::serve(repo.metadata_dir());
    let mut c = http_client(&server, &repo, None);
    c.refresh().unwrap();
    let counts = server.counts();
    let expected: Vec<&str> = vec![
        "1.snapshot.json",
        "1.targets.json",
        "2.root.json",
        "timestamp.json",
    ];
    assert_eq!(
        counts.keys().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[test]
fn fast_forward_recovery_after_timestamp_key_rotation() {
    let tmp = TempDir::new("ff");
    let state = TempDir::new("ff-state");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("a", b"a");
    repo.publish();
    client(&repo, Some(state.path())).refresh().unwrap();
    // An attacker with the timestamp key pushed timestamp version 1000, which the client trusted.
    let good_ts_version = repo.timestamp_version;
    repo.timestamp_version = 1000;
    repo.publish();
    client(&repo, Some(state.path())).refresh().unwrap();
    // The owners rotate the timestamp key (root v2) and start over at timestamp version 2.
    repo.keys
        .insert("timestamp".into(), vec![SigningKey::generate()]);
    repo.root_version = 2;
    repo.write_root(&["root"]);
    repo.timestamp_version = good_ts_version + 1;
    repo.publish();
    let mut c = client(&repo, Some(state.path()));
    c.refresh()
        .expect("fast-forward recovery: new timestamp key voids the trusted version 1000");
    assert_eq!(c.timestamp().unwrap().version(), good_ts_version + 1);
    // Without the key rotation the same rollback is refused.
    let tmp2 = TempDir::new("ff-norotate");
    let state2 = TempDir::new("ff-norotate-state");
    let mut repo2 = TestRepo::new(tmp2.path());
    repo2.publish();
    repo2.timestamp_version = 1000;
    repo2.publish();
    client(&repo2, Some(state2.path())).refresh().unwrap();
    repo2.timestamp_version = 2;
    repo2.publish();
    assert_eq!(
        client(&repo2, Some(state2.path()))
            .refresh()
            .unwrap_err()
            .kind,
        TrustErrorKind::Rollback
    );
}

#[test]
fn indefinite_freeze_expired_timestamp_is_refused() {
    // A mirror keeps serving the last timestamp it saw long after it expired.
    let tmp = TempDir::new("freeze");
    let mut repo = TestRepo::new(tmp.path());
    repo.expires
        .insert("timestamp".into(), UtcTime(UtcTime::now().0 - 1));
    repo.publish();
    let err = client(&repo, None).refresh().unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Expired);
    assert!(err.message.contains("timestamp metadata"), "{err}");
}

#[test]
fn mix_and_match_targets_version_other_than_snapshot_names_is_refused() {
    let tmp = TempDir::new("mixmatch");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("a", b"old");
    repo.publish();
    let old_targets = repo.read("1.targets.json");
    repo.add_file("a", b"new");
    repo.bump_and_publish();
    // The attacker serves the old (validly signed) targets under the new name.
    repo.write("2.targets.json", &old_targets);
    let err = client(&repo, None).refresh().unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Rollback, "{err}");
    assert!(err.message.contains("snapshot names version 2"), "{err}");
}

#[test]
fn rollback_of_timestamp_snapshot_and_targets_is_refused() {
    let tmp = TempDir::new("rollback");
    let state = TempDir::new("rollback-state");
    let mut repo = TestRepo::new(tmp.path());
    repo.publish();
    let v1_ts = repo.read("timestamp.json");
    repo.bump_and_publish();
    client(&repo, Some(state.path())).refresh().unwrap();
    repo.write("timestamp.json", &v1_ts);
    let err = client(&repo, Some(state.path())).refresh().unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Rollback, "{err}");
}

#[test]
fn key_compromise_below_threshold_is_not_enough() {
    // Targets needs 2 of 3 keys; the attacker holds one and signs a malicious targets file.
    let tmp = TempDir::new("compromise");
    let mut repo = TestRepo::new(tmp.path());
    repo.keys
        .get_mut("targets")
        .unwrap()
        .extend([SigningKey::generate(), SigningKey::generate()]);
    repo.threshold.insert("targets".into(), 2);
    repo.write_root(&["root"]);
    repo.add_file("app", b"good");
    repo.publish();
    client(&repo, None).refresh().unwrap();
    repo.add_file("app", b"evil");
    repo.bump_and_publish();
    let mut evil = Metadata::new(repo.targets()).unwrap();
    sign(&mut evil, &[&repo.keys["targets"][1]]);
    repo.write_targets_md(&evil);
    let err = client(&repo, None).refresh().unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Signature);
    assert!(err.message.contains("1 of 2"), "{err}");
}

#[test]
fn wrong_target_from_delegation_outside_its_paths_is_not_trusted() {
    let tmp = TempDir::new("wrongdeleg");
    let mut repo = TestRepo::new(tmp.path());
    repo.delegations
        .push(Deleg::new("targets", "docs", &["docs/*"]));
    repo.add_delegated_file(0, "docs/readme.txt", b"fine");
    // The docs role also lists a binary outside its delegated paths.
    repo.add_delegated_file(0, "bin/tool", b"evil");
    repo.publish();
    let mut c = client(&repo, None);
    assert_eq!(
        found_role(&mut c, "docs/readme.txt").as_deref(),
        Some("docs")
    );
    assert!(c.find_target("bin/tool").unwrap().is_none());
    let (index, _) = c.target_index().unwrap();
    assert!(index.get("docs/readme.txt").is_some());
    assert!(
        index.get("bin/tool").is_none(),
        "a role may not vouch outside its paths"
    );
}

#[test]
fn delegated_role_signed_by_wrong_key_is_refused() {
    let tmp = TempDir::new("deleg-sig");
    let mut repo = TestRepo::new(tmp.path());
    let mut d = Deleg::new("targets", "docs", &["docs/*"]);
    d.signers = Some(vec![SigningKey::generate()]);
    repo.delegations.push(d);
    repo.add_delegated_file(0, "docs/x", b"x");
    repo.publish();
    let err = client(&repo, None).find_target("docs/x").unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Signature, "{err}");
}

#[test]
fn delegation_cycles_terminate() {
    let tmp = TempDir::new("cycle");
    let mut repo = TestRepo::new(tmp.path());
    repo.delegations.push(Deleg::new("targets", "a", &["*"]));
    repo.delegations.push(Deleg::new("a", "b", &["*"]));
    // b delegates back to a, with a's own key: a cycle of valid metadata.
    let mut back = Deleg::new("b", "a", &["*"]);
    back.keys =
        vec![
            SigningKey::from_pkcs8_pem(&repo.delegations[0].keys[0].to_pkcs8_pem().unwrap())
                .unwrap(),
        ];
    repo.delegations.push(back);
    repo.publish();
    let mut c = client(&repo, None);
    assert!(c.find_target("nothing-here").unwrap().is_none());
    let (index, _) = c.target_index().unwrap();
    assert!(index.is_empty());
}

#[test]
fn deep_delegation_chain_hits_the_cap() {
    let tmp = TempDir::new("deep");
    let mut repo = TestRepo::new(tmp.path());
    let mut parent = "targets".to_owned();
    for i in 0..40 {
        let name = format!("r{i}");
        repo.delegations.push(Deleg::new(&parent, &name, &["*"]));
        parent = name;
    }
    let last = repo.delegations.len() - 1;
    repo.add_delegated_file(last, "deep", b"deep");
    repo.publish();
    let err = client(&repo, None).find_target("deep").unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Delegation, "{err}");
    assert!(err.message.contains("more than 32 roles"), "{err}");
}

#[test]
fn huge_role_counts_are_bounded() {
    let tmp = TempDir::new("many");
    let mut repo = TestRepo::new(tmp.path());
    for i in 0..200 {
        repo.delegations
            .push(Deleg::new("targets", &format!("r{i}"), &["*"]));
    }
    repo.publish();
    let root = std::fs::read(repo.root_path()).unwrap();
    let limits = Limits {
        max_roles: 50,
        ..Limits::default()
    };
    let mut c = Client::new(
        &root,
        "root",
        Box::new(DirFetcher::new(repo.metadata_dir())),
        None,
        UtcTime::now(),
        limits,
    )
    .unwrap();
    let err = c.target_index().unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Delegation);
    assert!(err.message.contains("more than 50 roles"), "{err}");
    // A search visits at most max_delegations roles however many are listed.
    let err = client(&repo, None).find_target("absent").unwrap_err();
    assert!(err.message.contains("more than 32 roles"), "{err}");
}

#[test]
fn terminating_delegation_stops_the_search() {
    for terminating in [true, false] {
        let tmp = TempDir::new("terminating");
        let mut repo = TestRepo::new(tmp.path());
        let mut a = Deleg::new("targets", "a", &["pkg/*"]);
        a.terminating = terminating;
        repo.delegations.push(a);
        repo.delegations
            .push(Deleg::new("targets", "b", &["pkg/*"]));
        repo.add_delegated_file(1, "pkg/x", b"from b");
        repo.publish();
        let mut c = client(&repo, None);
        let found = found_role(&mut c, "pkg/x");
        if terminating {
            assert_eq!(
                found, None,
                "a terminating role that does not list the target ends the search"
            );
        } else {
            assert_eq!(found.as_deref(), Some("b"));
        }
    }
}

#[test]
fn first_listed_delegation_wins() {
    let tmp = TempDir::new("order");
    let mut repo = TestRepo::new(tmp.path());
    repo.delegations.push(Deleg::new("targets", "a", &["*"]));
    repo.delegations.push(Deleg::new("targets", "b", &["*"]));
    repo.add_delegated_file(0, "f", b"from a");
    repo.delegations[1]
        .files
        .insert("f".into(), b"from b".to_vec());
    repo.publish();
    let mut c = client(&repo, None);
    let found = c.find_target("f").unwrap().unwrap();
    assert_eq!(found.role, "a");
    assert_eq!(found.info.length, 6);
    let (index, _) = c.target_index().unwrap();
    assert_eq!(
        index.get("f").unwrap().sha256().unwrap(),
        &Sha256::digest(b"from a")[..]
    );
}

#[test]
fn hashed_bins_route_targets_by_path_hash() {
    let tmp = TempDir::new("bins");
    let mut repo = TestRepo::new(tmp.path());
    // Two bins: hex digits 0-7 and 8-f of the first nibble of sha256(path).
    let mut low = Deleg::new("targets", "bin-0-7", &[]);
    low.paths = None;
    low.prefixes = Some((0..8).map(|n| format!("{n:x}")).collect());
    let mut high = Deleg::new("targets", "bin-8-f", &[]);
    high.paths = None;
    high.prefixes = Some((8..16).map(|n| format!("{n:x}")).collect());
    repo.delegations.push(low);
    repo.delegations.push(high);
    let names: Vec<String> = (0..16).map(|i| format!("file-{i}")).collect();
    for n in &names {
        let first = hex::encode(Sha256::digest(n.as_bytes()))
            .chars()
            .next()
            .unwrap();
        let bin = if first.to_digit(16).unwrap() < 8 {
            0
        } else {
            1
        };
        repo.add_delegated_file(bin, n, n.as_bytes());
    }
    // A file placed in the wrong bin.
    let wrong = names
        .iter()
        .find(|n| hex::encode(Sha256::digest(n.as_bytes())).as_bytes()[0] < b'8')
        .unwrap();
    repo.delegations[1]
        .files
        .insert(format!("{wrong}-copy-in-wrong-bin"), b"x".to_vec());
    repo.publish();
    let mut c = client(&repo, None);
    for n in &names {
        let role = found_role(&mut c, n).unwrap_or_else(|| panic!("{n} not found"));
        let first = hex::encode(Sha256::digest(n.as_bytes())).as_bytes()[0];
        assert_eq!(role, if first < b'8' { "bin-0-7" } else { "bin-8-f" });
    }
    let (index, problems) = c.target_index().unwrap();
    assert!(problems.is_empty());
    assert_eq!(
        index.len(),
        16 + usize::from(
            hex::encode(Sha256::digest(
                format!("{wrong}-copy-in-wrong-bin").as_bytes()
            ))
            .as_bytes()[0]
                >= b'8'
        )
    );
}

#[test]
fn delegated_role_missing_from_snapshot_is_refused() {
    let tmp = TempDir::new("deleg-nosnap");
    let mut repo = TestRepo::new(tmp.path());
    repo.delegations
        .push(Deleg::new("targets", "docs", &["docs/*"]));
    repo.add_delegated_file(0, "docs/x", b"x");
    repo.snapshot_omit.push("docs".into());
    repo.publish();
    let err = client(&repo, None).find_target("docs/x").unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Missing, "{err}");
    assert!(
        err.message.contains("snapshot does not list docs.json"),
        "{err}"
    );
}

#[test]
fn offline_start_uses_trusted_state_only_while_unexpired() {
    let tmp = TempDir::new("offline");
    let state = TempDir::new("offline-state");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("a", b"a");
    repo.publish();
    let server = HttpServer::serve(repo.metadata_dir());
    let opts = trustfs::trust::TrustOptions {
        trusted_root: repo.root_path(),
        source: trustfs::trust::MetadataSource::Url(server.url("")),
        state_dir: Some(state.path().to_owned()),
        now: std::time::SystemTime::now(),
        http: Default::default(),
    };
    let (online, offline) = trustfs::trust::load_or_offline(&opts).unwrap();
    assert!(offline.is_none());
    assert_eq!(online.index.len(), 1);
    // Repository unreachable: the state directory stands in.
    drop(server);
    let (t, offline) = trustfs::trust::load_or_offline(&opts).unwrap();
    assert!(offline.is_some());
    assert!(t.index.get("a").is_some());
    // ... but not after the trusted metadata expired.
    let later = trustfs::trust::TrustOptions {
        now: std::time::SystemTime::now() + Duration::from_secs(2 * 365 * 86400),
        ..opts.clone()
    };
    let err = trustfs::trust::load_or_offline(&later).unwrap_err();
    assert!(
        err.message.contains("cannot stand in") && err.message.contains("expired"),
        "{err}"
    );
    // A trust failure (not a fetch failure) never falls back to the state directory.
    let server = HttpServer::serve(repo.metadata_dir());
    server.set("timestamp.json", Behaviour::Status(200));
    let opts = trustfs::trust::TrustOptions {
        source: trustfs::trust::MetadataSource::Url(server.url("")),
        ..opts
    };
    let err = trustfs::trust::load_or_offline(&opts).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Malformed, "{err}");
}

#[test]
fn earliest_expiry_includes_delegated_roles() {
    let tmp = TempDir::new("expiry-deleg");
    let mut repo = TestRepo::new(tmp.path());
    repo.delegations
        .push(Deleg::new("targets", "docs", &["docs/*"]));
    repo.add_delegated_file(0, "docs/x", b"x");
    let soon = UtcTime(UtcTime::now().0 + 3600);
    repo.expires.insert("docs".into(), soon);
    repo.publish();
    let t = trustfs::trust::load(&trustfs::trust::TrustOptions {
        trusted_root: repo.root_path(),
        source: trustfs::trust::MetadataSource::Dir(repo.metadata_dir()),
        state_dir: None,
        now: std::time::SystemTime::now(),
        http: Default::default(),
    })
    .unwrap();
    assert_eq!(t.summary.expires_role, "docs");
    assert_eq!(t.summary.expires, soon.to_string());
}

#[test]
fn index_records_which_role_listed_each_target() {
    let tmp = TempDir::new("signed-by");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("top", b"t");
    repo.delegations
        .push(Deleg::new("targets", "docs", &["docs/*"]));
    repo.add_delegated_file(0, "docs/x", b"x");
    repo.publish();
    let (index, _) = client(&repo, None).target_index().unwrap();
    assert_eq!(index.listed_by("top"), Some("targets"));
    assert_eq!(index.listed_by("docs/x"), Some("docs"));
}
