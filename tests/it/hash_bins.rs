//! Succinct hash bins (TAP 15, `delegations.succinct_roles`) against trustfs's client: each test
//! stages one way a binned repository can lie (a bin vouching outside its range, a bin missing,
//! rolled back, expired or signed by the wrong key, hostile bin parameters) and asserts the exact
//! refusal, through the library and through `trustfs verify` (exit 2 for untrusted metadata).

use crate::harness as support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use support::tufrepo::{Bins, Deleg, TestRepo};
use support::{show, TempDir};
use trustfs::schema::{SigningKey, UtcTime};
use trustfs::trust::{Client, DirFetcher, FetchError, Fetcher, Limits, TrustErrorKind};

const EXIT_OK: i32 = 0;
const EXIT_METADATA: i32 = 2;

fn client_with(repo: &TestRepo, state: Option<&Path>, limits: Limits) -> Client {
    repo.client(state, limits).unwrap()
}

fn client(repo: &TestRepo) -> Client {
    client_with(repo, None, Limits::default())
}

/// A repository whose top-level targets delegates everything to `2^bits` hash bins, with `n`
/// files each in the bin its path hashes to.
fn binned_repo(dir: &Path, bits: u32, n: usize) -> (TestRepo, Vec<String>) {
    let mut repo = TestRepo::new(dir);
    repo.bins = Some(Bins::new("targets", bits));
    let names: Vec<String> = (0..n)
        .map(|i| format!("dir{}/file-{i}.txt", i % 3))
        .collect();
    for name in &names {
        repo.add_binned_file(name, name.as_bytes());
    }
    (repo, names)
}

fn bins(repo: &TestRepo) -> &Bins {
    repo.bins.as_ref().unwrap()
}

fn bins_mut(repo: &mut TestRepo) -> &mut Bins {
    repo.bins.as_mut().unwrap()
}

/// `trustfs verify` of the repository's content, with its output.
fn verify(repo: &TestRepo) -> std::process::Output {
    repo.trustfs_verify(&[])
}

#[track_caller]
fn assert_verify_refuses(repo: &TestRepo, words: &[&str]) {
    let out = verify(repo);
    assert_eq!(out.status.code(), Some(EXIT_METADATA), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for w in words {
        assert!(stderr.contains(w), "stderr must say {w:?}\n{}", show(&out));
    }
}

#[test]
fn every_target_is_served_from_the_bin_its_path_hashes_to() {
    let tmp = TempDir::new("bins-route");
    let (mut repo, names) = binned_repo(tmp.path(), 4, 60);
    repo.publish();
    let mut c = client(&repo);
    for name in &names {
        let found = c.find_target(name).unwrap().expect(name);
        assert_eq!(found.role, bins(&repo).bin_of(name), "{name}");
        assert_eq!(found.info.length, name.len() as u64);
    }
    assert!(c.find_target("not/listed").unwrap().is_none());
    let (index, problems) = c.target_index().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(index.len(), names.len());
    for name in &names {
        assert_eq!(
            index.listed_by(name),
            Some(bins(&repo).bin_of(name).as_str())
        );
    }
    let out = verify(&repo);
    assert_eq!(out.status.code(), Some(EXIT_OK), "{}", show(&out));
}

/// A fetcher that records every name asked for.
struct Recording {
    inner: DirFetcher,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Fetcher for Recording {
    fn fetch(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError> {
        self.asked.lock().unwrap().push(name.to_owned());
        self.inner.fetch(name, limit)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn one_lookup_fetches_only_the_one_bin_it_needs() {
    let tmp = TempDir::new("bins-one");
    let (mut repo, names) = binned_repo(tmp.path(), 8, 20);
    repo.publish();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let recording = Recording {
        inner: DirFetcher::new(repo.metadata_dir()),
        asked: asked.clone(),
    };
    let mut c = repo
        .client_over(Box::new(recording), None, Limits::default())
        .unwrap();
    let found = c.find_target(&names[7]).unwrap().unwrap();
    let bin = bins(&repo).bin_of(&names[7]);
    assert_eq!(found.role, bin);
    let bin_requests: Vec<String> = asked
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.contains("bins-"))
        .cloned()
        .collect();
    assert_eq!(bin_requests, vec![format!("1.{bin}.json")]);
}

#[test]
fn bin_key_vouching_outside_its_range_is_ignored_and_reported() {
    let tmp = TempDir::new("bins-range");
    let (mut repo, names) = binned_repo(tmp.path(), 4, 30);
    // The holder of the bins' key (one key signs every bin) signs a listing of a path into a bin
    // it does not hash to: a smuggled file, and another version of a real one.
    let victim = names[0].clone();
    let home = bins(&repo).bin_of(&victim);
    let other = bins(&repo)
        .succinct
        .bin_names()
        .find(|b| *b != home)
        .unwrap();
    let smuggled = (0..)
        .map(|i| format!("smuggled-{i}"))
        .find(|p| bins(&repo).bin_of(p) != other)
        .unwrap();
    repo.add_file_to_bin(&other, &smuggled, b"evil");
    bins_mut(&mut repo)
        .files
        .get_mut(&other)
        .unwrap()
        .insert(victim.clone(), b"evil version".to_vec());
    repo.publish();

    let mut c = client(&repo);
    assert!(
        c.find_target(&smuggled).unwrap().is_none(),
        "the search for a path only visits the bin it hashes to"
    );
    let found = c.find_target(&victim).unwrap().unwrap();
    assert_eq!(found.role, home);
    assert_eq!(found.info.length, victim.len() as u64, "the real entry");

    let (index, problems) = c.target_index().unwrap();
    assert!(index.get(&smuggled).is_none(), "never indexed");
    assert_eq!(index.listed_by(&victim), Some(home.as_str()));
    assert_eq!(index.len(), names.len());
    let messages: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 2, "{messages:?}");
    for (p, path) in problems.iter().zip([&smuggled, &victim]) {
        assert_eq!(p.kind, TrustErrorKind::Delegation, "{p}");
        let want = format!(
            "hash bin {other:?} lists {path:?}, whose path hashes to bin {:?}: a bin's key may only \
             vouch for its own range",
            bins(&repo).bin_of(path)
        );
        assert!(
            messages.iter().any(|m| m.starts_with(&want)),
            "{want}\n{messages:?}"
        );
    }
    // `trustfs verify` treats such a repository as untrusted and names the listing.
    assert_verify_refuses(
        &repo,
        &[&format!("{smuggled:?}"), "may only vouch for its own range"],
    );
}

#[test]
fn bin_missing_from_the_repository_is_refused() {
    let tmp = TempDir::new("bins-missing");
    let (mut repo, names) = binned_repo(tmp.path(), 3, 20);
    let gone = bins(&repo).bin_of(&names[0]);
    bins_mut(&mut repo).not_written.push(gone.clone());
    repo.publish();
    let mut c = client(&repo);
    let err = c.find_target(&names[0]).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Missing, "{err}");
    assert!(
        err.message.contains(&format!("1.{gone}.json not found")),
        "{err}"
    );
    // Paths in the other bins are still found.
    let elsewhere = names
        .iter()
        .find(|n| bins(&repo).bin_of(n) != gone)
        .unwrap();
    assert!(c.find_target(elsewhere).unwrap().is_some());
    let (index, problems) = c.target_index().unwrap();
    assert!(index.get(&names[0]).is_none());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, TrustErrorKind::Missing);
    assert_verify_refuses(&repo, &[&format!("1.{gone}.json not found")]);
}

#[test]
fn bin_missing_from_snapshot_is_refused() {
    let tmp = TempDir::new("bins-nosnap");
    let (mut repo, names) = binned_repo(tmp.path(), 3, 10);
    let gone = bins(&repo).bin_of(&names[0]);
    repo.snapshot_omit.push(gone.clone());
    repo.publish();
    let err = client(&repo).find_target(&names[0]).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Missing, "{err}");
    let want = format!("snapshot does not list {gone}.json");
    assert!(err.message.contains(&want), "{err}");
    assert_verify_refuses(&repo, &[&want]);
}

#[test]
fn bin_whose_version_disagrees_with_snapshot_is_refused() {
    let tmp = TempDir::new("bins-version");
    let (mut repo, names) = binned_repo(tmp.path(), 3, 10);
    let bin = bins(&repo).bin_of(&names[0]);
    // Snapshot names version 2; the file served as 2.bin.json is signed version 3.
    bins_mut(&mut repo).versions.insert(bin.clone(), 3);
    bins_mut(&mut repo).snapshot_versions.insert(bin.clone(), 2);
    repo.publish();
    std::fs::rename(
        repo.metadata_dir().join(format!("3.{bin}.json")),
        repo.metadata_dir().join(format!("2.{bin}.json")),
    )
    .unwrap();
    let err = client(&repo).find_target(&names[0]).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Rollback, "{err}");
    let want = format!("2.{bin}.json has version 3, but snapshot names version 2");
    assert!(err.message.contains(&want), "{err}");
    assert_verify_refuses(&repo, &[&want]);
}

#[test]
fn bin_substituted_behind_snapshots_length_and_hash_is_refused() {
    // Snapshot pins each bin's length and sha256; a mirror serves another validly signed file
    // under the name (here: the same bin and version, without the target added since). A longer
    // substitute is cut off at the pinned length instead (endless data).
    let tmp = TempDir::new("bins-substituted");
    let (mut repo, names) = binned_repo(tmp.path(), 2, 10);
    repo.publish();
    let bin = bins(&repo).bin_of(&names[0]);
    let substitute = repo.read(&format!("1.{bin}.json"));
    let extra = (0..)
        .map(|i| format!("extra-{i}"))
        .find(|p| bins(&repo).bin_of(p) == bin)
        .unwrap();
    repo.add_binned_file(&extra, b"extra");
    bins_mut(&mut repo).pin_in_snapshot = true;
    repo.publish();
    assert!(client(&repo).find_target(&extra).unwrap().is_some());
    repo.write(&format!("1.{bin}.json"), &substitute);
    let err = client(&repo).find_target(&names[0]).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Mismatch, "{err}");
    let want = format!(
        "1.{bin}.json is {} bytes, but the referring role says",
        substitute.len()
    );
    assert!(err.message.contains(&want), "{err}");
    assert_verify_refuses(&repo, &[&want]);
}

#[test]
fn bin_signed_by_a_key_the_delegation_does_not_list_is_refused() {
    let tmp = TempDir::new("bins-wrongkey");
    let (mut repo, names) = binned_repo(tmp.path(), 2, 10);
    let bin = bins(&repo).bin_of(&names[0]);
    bins_mut(&mut repo)
        .bin_signers
        .insert(bin.clone(), vec![SigningKey::generate()]);
    repo.publish();
    let err = client(&repo).find_target(&names[0]).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Signature, "{err}");
    assert!(err.message.contains(&bin), "{err}");
    assert_verify_refuses(&repo, &["signature threshold not met"]);
}

#[test]
fn bin_below_the_succinct_threshold_is_refused() {
    let tmp = TempDir::new("bins-threshold");
    let mut repo = TestRepo::new(tmp.path());
    let mut b = Bins::new("targets", 1);
    b.keys.push(SigningKey::generate());
    b.succinct.keyids = b.keys.iter().map(support::tufrepo::keyid).collect();
    b.succinct.threshold = 2;
    // Only the first of the two keys signs.
    let first = SigningKey::from_pkcs8_pem(&b.keys[0].to_pkcs8_pem().unwrap()).unwrap();
    b.signers = Some(vec![first]);
    repo.bins = Some(b);
    repo.add_binned_file("a", b"a");
    repo.publish();
    let err = client(&repo).find_target("a").unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Signature, "{err}");
    assert!(err.message.contains("1 of 2"), "{err}");
}

#[test]
fn expired_bin_is_refused() {
    let tmp = TempDir::new("bins-expired");
    let (mut repo, names) = binned_repo(tmp.path(), 2, 10);
    let bin = bins(&repo).bin_of(&names[0]);
    repo.expires
        .insert(bin.clone(), UtcTime(UtcTime::now().0 - 60));
    repo.publish();
    let err = client(&repo).find_target(&names[0]).unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Expired, "{err}");
    assert!(err.message.starts_with(&format!("{bin} metadata")), "{err}");
    assert_verify_refuses(&repo, &["expired"]);
}

#[test]
fn bin_rolled_back_after_a_restart_is_refused() {
    let tmp = TempDir::new("bins-rollback");
    let state = TempDir::new("bins-rollback-state");
    let (mut repo, names) = binned_repo(tmp.path(), 2, 10);
    let bin = bins(&repo).bin_of(&names[0]);
    bins_mut(&mut repo).versions.insert(bin.clone(), 2);
    repo.publish();
    let (index, problems) = client_with(&repo, Some(state.path()), Limits::default())
        .target_index()
        .unwrap();
    assert!(problems.is_empty() && index.len() == names.len());
    // Not copied into the state dir from a local metadata directory (the trusted snapshot is
    // what remembers its version).
    assert!(!state.path().join(format!("{bin}.json")).exists());
    // The repository (or a mirror) goes back to version 1 of that bin in a newer snapshot.
    bins_mut(&mut repo).versions.insert(bin.clone(), 1);
    repo.snapshot_version += 1;
    repo.timestamp_version += 1;
    repo.publish();
    let err = client_with(&repo, Some(state.path()), Limits::default())
        .refresh()
        .unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Rollback, "{err}");
    assert!(
        err.message.contains(&format!(
            "names {bin}.json version 1, older than the trusted 2"
        )),
        "{err}"
    );
}

#[test]
fn bins_are_terminating() {
    // targets delegates paths to `a` (which splits into bins) and then to `b`. A path `a`'s bin
    // does not list must not be looked up in `b`: the bin ends the search.
    let tmp = TempDir::new("bins-terminating");
    let mut repo = TestRepo::new(tmp.path());
    repo.delegations.push(Deleg::new("targets", "a", &["*"]));
    repo.delegations.push(Deleg::new("targets", "b", &["*"]));
    repo.bins = Some(Bins::new("a", 2));
    repo.add_delegated_file(1, "pkg", b"from b");
    repo.add_binned_file("other", b"in a bin");
    repo.publish();
    let mut c = client(&repo);
    assert!(c.find_target("pkg").unwrap().is_none());
    assert_eq!(
        c.find_target("other").unwrap().unwrap().role,
        bins(&repo).bin_of("other")
    );
    let (index, _) = c.target_index().unwrap();
    assert!(index.get("pkg").is_none() && index.get("other").is_some());
}

#[test]
fn hostile_bin_parameters_are_refused_with_a_reason() {
    for (bits, prefix, want) in [
        (0, "bins", "bit_length 0 is out of range (1 to 32)"),
        (33, "bins", "bit_length 33 is out of range (1 to 32)"),
        (4, "../../etc/x", "contains a path separator"),
        (4, "a/b", "contains a path separator"),
        (4, "..", "starts with '.'"),
        (4, "bin\0s", "control character"),
        (4, "", "it is empty"),
    ] {
        let tmp = TempDir::new("bins-hostile");
        let mut repo = TestRepo::new(tmp.path());
        let mut b = Bins::new("targets", 1);
        b.only_first = Some(0);
        b.succinct.bit_length = bits;
        b.succinct.name_prefix = prefix.into();
        repo.bins = Some(b);
        repo.publish();
        let err = client(&repo).refresh().unwrap_err();
        assert_eq!(err.kind, TrustErrorKind::Malformed, "{prefix:?}: {err}");
        assert!(err.message.contains(want), "{prefix:?}: {err}");
        assert_verify_refuses(&repo, &[want]);
    }
}

#[test]
fn a_full_index_loads_at_most_max_bins() {
    // 2^16 bins: more than a full index may load (and than snapshot's 2 MB could list). The
    // refusal comes before any bin is fetched.
    let tmp = TempDir::new("bins-cap");
    let mut repo = TestRepo::new(tmp.path());
    let mut b = Bins::new("targets", 16);
    b.only_first = Some(0);
    repo.bins = Some(b);
    repo.publish();
    let err = client(&repo).target_index().unwrap_err();
    assert_eq!(err.kind, TrustErrorKind::Delegation, "{err}");
    assert!(
        err.message.contains(
            "\"targets\" delegates to 65536 hash bins (bit_length 16); a full index loads at most 32768 bins"
        ),
        "{err}"
    );
    assert_verify_refuses(&repo, &["a full index loads at most 32768 bins"]);
    // And the cap is the caller's to set.
    let (mut small, _) = binned_repo(&tmp.path().join("small"), 4, 4);
    small.publish();
    let limits = Limits {
        max_bins: 8,
        ..Limits::default()
    };
    let err = client_with(&small, None, limits)
        .target_index()
        .unwrap_err();
    assert!(err.message.contains("at most 8 bins"), "{err}");
}

#[test]
fn a_full_index_of_2_to_the_15_bins_is_allowed() {
    // The largest bin count a publisher may use (snapshot lists every bin): the index loads all.
    let tmp = TempDir::new("bins-max");
    let mut repo = TestRepo::new(tmp.path());
    repo.bins = Some(Bins::new("targets", 15));
    let names: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    for n in &names {
        repo.add_binned_file(n, n.as_bytes());
    }
    repo.publish();
    let (index, problems) = client(&repo).target_index().unwrap();
    assert!(
        problems.is_empty(),
        "{:?}",
        &problems[..problems.len().min(3)]
    );
    assert_eq!(index.len(), names.len());
}

#[test]
fn a_path_targets_lists_itself_comes_from_targets_not_its_bin() {
    // The search checks targets' own list before its bins, and the index (which reads bins
    // directly, without a search per path) must agree.
    let tmp = TempDir::new("bins-own");
    let (mut repo, names) = binned_repo(tmp.path(), 4, 20);
    let both = names[3].clone();
    repo.add_file(&both, b"targets' own version");
    repo.publish();
    let mut c = client(&repo);
    let found = c.find_target(&both).unwrap().unwrap();
    assert_eq!(found.role, "targets");
    assert_eq!(found.info.length, b"targets' own version".len() as u64);
    let (index, problems) = c.target_index().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(index.listed_by(&both), Some("targets"));
    assert_eq!(index.get(&both).unwrap(), found.info);
    for name in names.iter().filter(|n| **n != both) {
        let found = c.find_target(name).unwrap().unwrap();
        assert_eq!(index.listed_by(name), Some(found.role.as_str()), "{name}");
        assert_eq!(index.get(name).unwrap(), found.info, "{name}");
    }
}

fn load_with_state(repo: &TestRepo, state: &Path) -> trustfs::trust::Trusted {
    trustfs::trust::load(&trustfs::trust::TrustOptions {
        trusted_root: repo.root_path(),
        source: trustfs::trust::MetadataSource::Dir(repo.metadata_dir()),
        state_dir: Some(state.to_owned()),
        now: std::time::SystemTime::now(),
        http: Default::default(),
    })
    .unwrap()
}

/// Delete every stored and published copy of the bins, so only a saved index can answer.
fn delete_bins(repo: &TestRepo, state: &Path) {
    for dir in [repo.metadata_dir(), state.to_owned()] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().contains("bins-") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
}

#[test]
fn a_saved_index_stands_in_for_the_bins_only_while_the_metadata_is_the_same() {
    let tmp = TempDir::new("bins-saved");
    let state = TempDir::new("bins-saved-state");
    let (mut repo, names) = binned_repo(tmp.path(), 3, 40);
    let soon = UtcTime(UtcTime::now().0 + 3600);
    let first_bin = bins(&repo).bin_of(&names[0]);
    repo.expires.insert(first_bin.clone(), soon);
    repo.publish();
    let built = load_with_state(&repo, state.path());
    assert_eq!(built.index.len(), names.len());
    assert!(state.path().join("targets-index.bin").is_file());
    // The bin expiring first is the mount's expiry, built or saved.
    assert_eq!(built.summary.expires_role, first_bin);

    // Same snapshot and targets: the saved index answers, without a single bin.
    delete_bins(&repo, state.path());
    let saved = load_with_state(&repo, state.path());
    assert_eq!(saved.index, built.index);
    assert_eq!(saved.summary, built.summary);
    assert!(saved.problems.is_empty());

    // A damaged saved index is never used: the bins are needed again (and are gone).
    let file = state.path().join("targets-index.bin");
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    let at = bad.len() - 100;
    bad[at] ^= 1;
    std::fs::write(&file, &bad).unwrap();
    let refused = load_with_state(&repo, state.path());
    assert!(refused.index.is_empty(), "nothing from a damaged file");
    assert!(!refused.problems.is_empty());
    std::fs::write(&file, &good).unwrap();

    // New metadata (one file changed, a new snapshot): rebuilt from the bins, never the old
    // index. Re-publishing writes every bin again.
    repo.add_binned_file(&names[1], b"changed content");
    let changed_bin = bins(&repo).bin_of(&names[1]);
    bins_mut(&mut repo).versions.insert(changed_bin, 2);
    repo.bump_and_publish();
    let rebuilt = load_with_state(&repo, state.path());
    assert!(rebuilt.problems.is_empty(), "{:?}", rebuilt.problems);
    assert_eq!(rebuilt.index.get(&names[1]).unwrap().length, 15);
    assert_ne!(rebuilt.index, built.index);
    assert_eq!(load_with_state(&repo, state.path()).index, rebuilt.index);
}

#[test]
fn tied_expiries_name_the_same_role_whether_the_index_is_built_or_saved() {
    let tmp = TempDir::new("bins-tied");
    let (mut repo, _) = binned_repo(tmp.path(), 3, 24);
    // Every bin and targets expire at the same second.
    let when = UtcTime(UtcTime::now().0 + 7200);
    repo.expires.insert("targets".into(), when);
    for name in bins(&repo).succinct.bin_names().collect::<Vec<_>>() {
        repo.expires.insert(name, when);
    }
    repo.publish();
    let mut roles = BTreeSet::new();
    for _ in 0..10 {
        let state = TempDir::new("bins-tied-state");
        roles.insert(load_with_state(&repo, state.path()).summary.expires_role);
        // The second load answers from the saved index.
        assert!(state.path().join("targets-index.bin").is_file());
        roles.insert(load_with_state(&repo, state.path()).summary.expires_role);
    }
    assert_eq!(roles.len(), 1, "{roles:?}");
}
