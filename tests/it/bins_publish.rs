//! `trustfs repo add` sharding the top-level targets into succinct hash bins (TAP 15): a
//! repository that grows past the threshold stays readable by clients that trusted the single
//! file; only what changed is signed anew; versions never go back when the bin count changes;
//! path delegations and bins, which one delegations object cannot hold together, refuse each
//! other with a reason. Issue: "A million targets" (one 16.9 MB targets.json refused by every
//! client at 100,000 files).

use crate::harness::cli;
use crate::harness::python as python_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use python_support::Run;
use trustfs::repo::{self, AddOptions, AddReport, Expiries, RepoError, Sharding};
use trustfs::schema::{Metadata, Signature, SuccinctRoles, Targets};

use crate::harness::publish::Repo;
use crate::harness::python::run_trustfs as trustfs;
use crate::harness::TempDir as Scratch;
use crate::harness::{os, read_json};

/// `n` small files `d<i % 7>/f<i>.txt` under `dir` (replacing what was there).
fn content(dir: &Path, n: usize) -> Vec<String> {
    let _ = fs::remove_dir_all(dir);
    crate::harness::numbered_files(n, 7, ".txt")
        .into_iter()
        .map(|(name, data)| {
            let p = dir.join(&name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, data).unwrap();
            name
        })
        .collect()
}

impl Repo {
    fn add_lib(
        &self,
        content: &Path,
        sharding: Sharding,
        expires: Expiries,
    ) -> Result<AddReport, RepoError> {
        repo::add(&AddOptions {
            repo: self.dir.clone(),
            keydir: self.keys.clone(),
            content_dir: content.to_owned(),
            sha512: false,
            expires,
            role: None,
            sharding,
            reread: false,
            progress: false,
        })
    }

    fn timestamp_version(&self) -> u64 {
        read_json(&self.metadata().join("timestamp.json"))["signed"]["version"]
            .as_u64()
            .unwrap()
    }

    /// The bins targets delegates to now.
    fn succinct(&self) -> SuccinctRoles {
        self.role("targets")
            .signed
            .delegations
            .and_then(|d| d.succinct_roles)
            .expect("targets delegates to hash bins")
    }
}

/// Every target of every bin is in the bin its path hashes to; returns the union.
#[track_caller]
fn assert_binned(r: &Repo) -> BTreeSet<String> {
    let s = r.succinct();
    let targets = r.role("targets");
    assert!(
        targets.signed.targets.is_empty(),
        "targets lists no files itself"
    );
    let mut all = BTreeSet::new();
    for (i, name) in s.bin_names().enumerate() {
        let bin = r.role(&name);
        for path in bin.signed.targets.keys() {
            assert_eq!(s.bin_of(path), i as u64, "{path} is in {name}");
            all.insert(path.clone());
        }
    }
    all
}

#[track_caller]
fn assert_all_ok(run: &Run, ok: usize) {
    run.expect_code(0, "trustfs verify");
    let report = run.json();
    assert_eq!(report["counts"]["ok"], ok as u64, "{}", run.describe());
    assert_eq!(report["ok"], true, "{}", run.describe());
}

#[test]
fn growing_past_the_threshold_shards_targets_and_clients_follow() {
    let s = Scratch::new("grow");
    let r = Repo::init(&s);
    let state = s.join("state");
    let dir = s.join("content");
    let auto = Sharding::Auto { threshold: 40 };

    // At the threshold: one targets file, as before.
    content(&dir, 40);
    let report = r.add_lib(&dir, auto, Expiries::default()).unwrap();
    assert_eq!(report.bins, None);
    assert_eq!(r.role("targets").signed.targets.len(), 40);
    assert_all_ok(&r.verify(&dir, Some(&state)), 40);
    let single_version = r.version_of("targets");

    // Past it: targets delegates to bins, and a client that trusted the single file follows.
    let names = content(&dir, 100);
    let report = r.add_lib(&dir, auto, Expiries::default()).unwrap();
    let bins = report.bins.clone().expect("sharded");
    assert_eq!(
        (bins.bit_length, bins.count, bins.previous_bit_length),
        (1, 2, Some(0))
    );
    assert!(bins.targets_resigned && bins.resigned == 2);
    assert_eq!(report.added.len(), 60);
    assert_eq!(report.unchanged.len(), 40);
    assert_eq!(
        bins.generated_key.as_deref(),
        Some(r.keys.join("bins").as_path())
    );
    let targets_version = r.version_of("targets");
    assert_eq!(targets_version, single_version + 1);
    assert_eq!(report.versions.targets, targets_version);
    let s_roles = r.succinct();
    assert_eq!(
        (s_roles.name_prefix.as_str(), s_roles.threshold),
        ("bins", 1)
    );
    let key = repo::keys::load(&r.keys.join("bins")).unwrap();
    assert_eq!(s_roles.keyids, vec![key.public_key().compute_keyid()]);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(r.keys.join("bins"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(r.keys.join("bins.pub").is_file());
    }
    let listed = assert_binned(&r);
    assert_eq!(listed, names.iter().cloned().collect::<BTreeSet<_>>());
    assert_all_ok(&r.verify(&dir, Some(&state)), 100);
    // Bins are not copied into the state dir from a local metadata directory.
    assert!(!state.join("bins-0.json").exists() && !state.join("bins-1.json").exists());

    // The index records the bin that vouched for each file.
    let t = trustfs::trust::load(&trustfs::trust::TrustOptions {
        trusted_root: r.metadata().join("1.root.json"),
        source: trustfs::trust::MetadataSource::Dir(r.metadata()),
        state_dir: None,
        now: std::time::SystemTime::now(),
        http: Default::default(),
    })
    .unwrap();
    assert_eq!(t.index.len(), 100);
    assert_eq!(
        t.index.listed_by(&names[3]),
        Some(s_roles.role_for(&names[3]).as_str())
    );

    // Shrinking below the threshold keeps the bins (clients never see a role vanish).
    content(&dir, 10);
    let report = r.add_lib(&dir, auto, Expiries::default()).unwrap();
    assert_eq!(report.bins.unwrap().count, 2);
    assert_eq!(assert_binned(&r).len(), 10);
    assert_all_ok(&r.verify(&dir, Some(&state)), 10);
}

#[test]
fn only_bins_whose_list_changed_are_signed_anew() {
    let s = Scratch::new("unchanged");
    let r = Repo::init(&s);
    let dir = s.join("content");
    let names = content(&dir, 64);
    let out = r.add(&dir, &["--bins", "16"]);
    out.expect_code(0, "repo add --bins 16");
    assert!(
        out.stdout
            .contains("sharded targets into 16 hash bins (bins-0 … bins-f)"),
        "{}",
        out.describe()
    );
    let succinct = r.succinct();
    let before: BTreeMap<String, Vec<u8>> = succinct
        .bin_names()
        .map(|b| (b.clone(), fs::read(r.role_path(&b)).unwrap()))
        .collect();
    let targets_before = r.version_of("targets");
    let ts_before = r.timestamp_version();

    // One file changes; the targets key is offline: only its bin, snapshot and timestamp are
    // signed (with the bins, snapshot and timestamp keys).
    fs::write(dir.join(&names[5]), b"changed\n").unwrap();
    fs::rename(r.keys.join("targets"), s.join("targets-offline")).unwrap();
    let out = r.add(&dir, &[]);
    out.expect_code(0, "repo add without KEYDIR/targets");
    assert!(
        out.stdout.contains(&format!(
            "targets version {targets_before} (unchanged), 16 hash bins (1 signed anew)"
        )),
        "{}",
        out.describe()
    );
    assert!(out.stdout.contains(&format!("changed {}", names[5])));
    let changed = succinct.role_for(&names[5]);
    for (bin, bytes) in &before {
        if *bin == changed {
            assert_eq!(r.version_of(bin), 2);
            assert_ne!(&fs::read(r.role_path(bin)).unwrap(), bytes);
        } else {
            assert_eq!(r.version_of(bin), 1, "{bin} was signed anew");
            assert_eq!(&fs::read(r.role_path(bin)).unwrap(), bytes);
        }
    }
    assert_eq!(r.version_of("targets"), targets_before);
    assert_eq!(r.timestamp_version(), ts_before + 1);
    assert_all_ok(&r.verify(&dir, None), 64);

    // Nothing changed: no bin is signed, snapshot and timestamp still are (once).
    let out = r.add(&dir, &[]);
    out.expect_code(0, "repo add, nothing changed");
    assert!(
        out.stdout.contains("16 hash bins (0 signed anew)"),
        "{}",
        out.describe()
    );
    assert_eq!(r.timestamp_version(), ts_before + 2);
}

/// After an `add` that wrote the bins, the next one (nothing else signed since) reads only the
/// bins a changed, added or removed file hashes to, and the result is what reading every bin
/// gives.
#[test]
fn an_add_reads_only_the_bins_whose_files_changed() {
    let s = Scratch::new("lazy");
    let r = Repo::init(&s);
    let dir = s.join("content");
    let mut names = content(&dir, 64);
    let add = || {
        r.add_lib(&dir, Sharding::default(), Expiries::default())
            .unwrap()
    };
    let first = r
        .add_lib(&dir, Sharding::Bins { bit_length: 4 }, Expiries::default())
        .unwrap();
    assert_eq!(first.bins.unwrap().count, 16);
    // Files written just now are read again by the next add (not yet known by identity), so
    // every bin they hash to is read.
    std::thread::sleep(Duration::from_millis(2200));
    let again = add();
    assert_eq!(again.not_reread, 0);
    let b = again.bins.unwrap();
    assert_eq!((b.loaded, b.resigned), (16, 0));
    // Nothing changed: no bin is read or signed.
    let same = add();
    assert_eq!(same.not_reread, 64);
    assert_eq!(same.unchanged.len(), 64);
    let b = same.bins.unwrap();
    assert_eq!((b.loaded, b.resigned), (0, 0));

    // One file changed, one removed, one added.
    let succinct = r.succinct();
    fs::write(dir.join(&names[5]), b"changed\n").unwrap();
    fs::remove_file(dir.join(&names[9])).unwrap();
    fs::write(dir.join("d0/new.txt"), b"new\n").unwrap();
    let touched: BTreeSet<u64> = [names[5].as_str(), names[9].as_str(), "d0/new.txt"]
        .iter()
        .map(|p| succinct.bin_of(p))
        .collect();
    let out = r.add(&dir, &[]);
    out.expect_code(0, "repo add");
    assert!(
        out.stdout.contains(&format!(
            "{} of 16 hash bins read (the others list no file that changed)",
            touched.len()
        )),
        "{}",
        out.describe()
    );
    assert!(out.stdout.contains(&format!("changed {}", names[5])));
    assert!(out.stdout.contains(&format!("removed {}", names[9])));
    assert!(out.stdout.contains("added d0/new.txt"));
    assert!(
        out.stdout
            .contains(&format!("16 hash bins ({} signed anew)", touched.len())),
        "{}",
        out.describe()
    );
    names.remove(9);
    names.push("d0/new.txt".into());
    let listed = assert_binned(&r);
    assert_eq!(listed, names.iter().cloned().collect::<BTreeSet<_>>());
    assert_all_ok(&r.verify(&dir, None), 64);

    // A file written just now (not known by its identity), then removed before the next add:
    // gone from its bin too.
    std::thread::sleep(Duration::from_millis(2200));
    add();
    fs::write(dir.join(&names[0]), b"racy\n").unwrap();
    let racy = add();
    assert_eq!(racy.changed, [names[0].clone()]);
    assert_eq!(racy.bins.unwrap().loaded, 1);
    fs::remove_file(dir.join(&names[0])).unwrap();
    let removed = add();
    assert_eq!(removed.removed, [names[0].clone()]);
    assert_eq!(removed.bins.unwrap().loaded, 1);
    let bin = succinct.role_for(&names[0]);
    assert!(!r.role(&bin).signed.targets.contains_key(&names[0]));
    names.remove(0);
    assert_eq!(
        assert_binned(&r),
        names.iter().cloned().collect::<BTreeSet<_>>()
    );

    // Anything else signed since (here `repo refresh`): every bin is read once again.
    trustfs(["repo", "refresh", os(&r.dir), "--keys", os(&r.keys)]).expect_code(0, "repo refresh");
    assert_eq!(add().bins.unwrap().loaded, 16);
    assert_eq!(add().bins.unwrap().loaded, 0);
    // So is a cache that does not hold what the bins list (here: none at all).
    fs::remove_file(r.dir.join(".trustfs-add-cache")).unwrap();
    let fresh = add();
    assert_eq!((fresh.not_reread, fresh.bins.unwrap().loaded), (0, 16));
    assert_all_ok(&r.verify(&dir, None), 63);

    // A cache damaged after its head (which still reads): every bin is read, so the removal of
    // every file of a bin (which no file still there hashes to) is still seen.
    assert_eq!(add().bins.unwrap().loaded, 0);
    let cache = r.dir.join(".trustfs-add-cache");
    let mut bytes = fs::read(&cache).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(&cache, bytes).unwrap();
    let (gone, kept): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|n| succinct.bin_of(n) == 0);
    let mut gone = gone;
    gone.sort();
    assert!(!gone.is_empty());
    for n in &gone {
        fs::remove_file(dir.join(n)).unwrap();
    }
    let damaged = add();
    assert_eq!(damaged.removed, gone);
    assert_eq!(damaged.bins.unwrap().loaded, 16);
    names = kept;
    assert_eq!(
        assert_binned(&r),
        names.iter().cloned().collect::<BTreeSet<_>>()
    );
    std::thread::sleep(Duration::from_millis(2200));
    add();
    assert_eq!(add().bins.unwrap().loaded, 0);

    // A bin file changed on disk since (here: replaced by garbage): every bin is read, and the
    // damage is an error, not a snapshot signed over it.
    let bin = succinct.bin_name(3);
    let path = r.role_path(&bin);
    fs::write(&path, b"garbage").unwrap();
    let err = r
        .add_lib(&dir, Sharding::default(), Expiries::default())
        .unwrap_err();
    assert!(err.to_string().contains(&bin), "{err}");
}

#[test]
fn bins_with_less_than_half_their_validity_left_are_signed_anew() {
    let s = Scratch::new("expiry");
    let r = Repo::init(&s);
    let dir = s.join("content");
    content(&dir, 20);
    r.add_lib(&dir, Sharding::Bins { bit_length: 2 }, Expiries::default())
        .unwrap();
    // The same content, but bins now valid for 10 years: the 90 days left are less than half.
    let long = Expiries {
        bins: Some(Duration::from_secs(3650 * 86400)),
        ..Expiries::default()
    };
    let report = r.add_lib(&dir, Sharding::default(), long).unwrap();
    let bins = report.bins.unwrap();
    assert_eq!((bins.resigned, bins.targets_resigned), (4, false));
    for b in r.succinct().bin_names() {
        assert_eq!(r.version_of(&b), 2);
        let expires = r.role(&b).expires();
        assert!(expires.0 > trustfs::schema::UtcTime::now().0 + 3000 * 86400);
    }
    // And targets likewise, by its own validity.
    let long = Expiries {
        targets: Duration::from_secs(3650 * 86400),
        ..Expiries::default()
    };
    let report = r.add_lib(&dir, Sharding::default(), long).unwrap();
    assert!(report.bins.unwrap().targets_resigned);
}

#[test]
fn changing_the_bin_count_never_moves_a_version_back() {
    // 4 bins (bins-0..3), then 8 (bins-0..7: the same names, other contents), then 4 again:
    // every bin written has a version above any snapshot listed before, the bins no longer used
    // stay listed, and a client keeping state accepts each step.
    let s = Scratch::new("recount");
    let r = Repo::init(&s);
    let state = s.join("state");
    let dir = s.join("content");
    content(&dir, 50);
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (count, previous) in [(4, Some(0)), (8, Some(2)), (4, Some(3)), (4, None)] {
        let out = r.add(&dir, &["--bins", &count.to_string()]);
        out.expect_code(0, "repo add --bins");
        let meta = r.snapshot_meta();
        for (file, entry) in meta.as_object().unwrap() {
            let v = entry["version"].as_u64().unwrap();
            if let Some(old) = seen.insert(file.clone(), v) {
                assert!(v >= old, "{file} went back from {old} to {v}");
            }
        }
        assert_eq!(r.succinct().bin_count(), count);
        assert_eq!(assert_binned(&r).len(), 50);
        if previous == Some(3) {
            assert!(out
                .stdout
                .contains("re-sharded targets from 8 into 4 hash bins"));
            // bins-4..7 of the 8-bin layout are still listed, unused.
            assert!(meta.get("bins-7.json").is_some());
        }
        if previous.is_none() {
            assert!(
                out.stdout.contains("4 hash bins (0 signed anew)"),
                "{}",
                out.describe()
            );
        }
        assert_all_ok(&r.verify(&dir, Some(&state)), 50);
    }
}

#[test]
fn unchanged_entries_keep_their_custom_fields_across_sharding() {
    let s = Scratch::new("custom");
    let r = Repo::init(&s);
    let dir = s.join("content");
    let names = content(&dir, 10);
    r.add_lib(&dir, Sharding::default(), Expiries::default())
        .unwrap();
    // Another tool adds custom metadata to one entry (snapshot lists targets by version only, so
    // rewriting the file in place is valid).
    let path = r.role_path("targets");
    let mut v = r.role("targets").signed_value;
    v["targets"][&names[2]]["custom"] = json!({"owner": "ops"});
    let sk = repo::keys::load(&r.keys.join("targets")).unwrap();
    let mut md = Metadata::<Targets> {
        signed: serde_json::from_value(v.clone()).unwrap(),
        signed_value: v,
        signatures: vec![],
    };
    md.signatures.push(Signature {
        keyid: sk.public_key().compute_keyid(),
        sig: hex::encode(sk.sign(&md.canonical_signed().unwrap())),
    });
    fs::write(&path, md.to_bytes()).unwrap();
    r.add_lib(&dir, Sharding::Bins { bit_length: 3 }, Expiries::default())
        .unwrap();
    let bin = r.role(&r.succinct().role_for(&names[2]));
    assert_eq!(
        bin.signed.targets[&names[2]].custom,
        Some(json!({"owner": "ops"}))
    );
}

#[test]
fn path_delegations_and_bins_exclude_each_other() {
    // One TUF delegations object holds named roles or succinct bins, never both.
    let s = Scratch::new("exclusive");
    let r = Repo::init(&s);
    let dir = s.join("content");
    content(&dir, 12);
    r.add(&dir, &[]).expect_code(0, "repo add");
    let delegate = |r: &Repo| r.delegate("team", &["--path", "team/*"]);
    delegate(&r).expect_code(0, "repo delegate");
    let out = r.add(&dir, &["--bins", "4"]);
    out.expect_code(1, "--bins on a targets role with path delegations");
    assert!(
        out.stderr
            .contains("holds either named roles or hash bins, not both; targets stays one file"),
        "{}",
        out.describe()
    );
    // Automatic sharding does not happen; the publisher is told.
    let report = r
        .add_lib(&dir, Sharding::Auto { threshold: 5 }, Expiries::default())
        .unwrap();
    assert_eq!(report.bins, None);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("targets lists 12 targets but is not sharded into hash bins")),
        "{:?}",
        report.warnings
    );

    // A sharded targets cannot also delegate paths, and a bin is not a role to add --role to.
    let s2 = Scratch::new("exclusive-binned");
    let r = Repo::init(&s2);
    r.add(&dir, &["--bins", "4"])
        .expect_code(0, "repo add --bins 4");
    let before = r.snapshot_meta();
    let out = delegate(&r);
    out.expect_code(1, "delegate from a sharded targets");
    assert!(
        out.stderr.contains(
            "targets delegates every path to 4 hash bins (bins-…), and a TUF delegations object \
             holds either hash bins or named roles, not both"
        ),
        "{}",
        out.describe()
    );
    assert_eq!(r.snapshot_meta(), before, "nothing was written");
    let out = r.add(&dir, &["--role", "bins-2"]);
    out.expect_code(1, "add --role <a bin>");
    assert!(
        out.stderr.contains("\"bins-2\" is hash bin 2 of 4"),
        "{}",
        out.describe()
    );
}

#[test]
fn refresh_role_targets_resigns_every_bin() {
    let s = Scratch::new("refresh");
    let r = Repo::init(&s);
    let dir = s.join("content");
    content(&dir, 20);
    r.add(&dir, &["--bins", "4"]).expect_code(0, "repo add");
    let refresh = |r: &Repo| r.command("refresh", &["--role", "targets"]);
    refresh(&r).expect_code(0, "repo refresh --role targets");
    for b in r.succinct().bin_names() {
        assert_eq!(r.version_of(&b), 2, "{b}");
    }
    assert_all_ok(&r.verify(&dir, None), 20);
    // Without the bins' key it refuses rather than leaving the bins behind.
    fs::remove_file(r.keys.join("bins")).unwrap();
    let out = refresh(&r);
    out.expect_code(1, "refresh without KEYDIR/bins");
    assert!(out.stderr.contains("the hash bins"), "{}", out.describe());
}

#[test]
fn bad_bin_counts_are_usage_errors() {
    let s = Scratch::new("usage");
    let r = Repo::init(&s);
    let dir = s.join("content");
    content(&dir, 3);
    for bad in ["0", "1", "3", "65536", "x", ""] {
        let out = r.add(&dir, &["--bins", bad]);
        out.expect_code(64, &format!("--bins {bad}"));
    }
    r.add(&dir, &["--bins", "4", "--role", "team"])
        .expect_code(64, "--bins with --role");
}

#[test]
fn bins_off_keeps_or_brings_back_one_targets_file() {
    // For fleets whose clients predate succinct hash bins: no sharding, however many targets.
    let s = Scratch::new("off");
    let r = Repo::init(&s);
    let dir = s.join("content");
    content(&dir, 30);
    let report = r.add_lib(&dir, Sharding::Off, Expiries::default()).unwrap();
    assert_eq!(report.bins, None);
    assert_eq!(r.role("targets").signed.targets.len(), 30);
    r.add(&dir, &["--bins", "auto"])
        .expect_code(0, "--bins auto");
    assert_eq!(
        r.role("targets").signed.targets.len(),
        30,
        "30 is below 2,000"
    );
    let state = s.join("state");
    assert_all_ok(&r.verify(&dir, Some(&state)), 30);
    r.add(&dir, &["--bins", "2"]).expect_code(0, "--bins 2");
    assert_all_ok(&r.verify(&dir, Some(&state)), 30);
    // Back to one file: targets lists every file and delegates nothing; the bins stay listed in
    // snapshot (a client that saw them would refuse a snapshot without them), and clients follow.
    r.add(&dir, &["--bins", "off"])
        .expect_code(0, "--bins off once sharded");
    let targets = r.role("targets");
    assert_eq!(targets.signed.targets.len(), 30);
    assert!(targets.signed.delegations.is_none());
    assert!(r.snapshot_meta().get("bins-1.json").is_some());
    assert_all_ok(&r.verify(&dir, Some(&state)), 30);
    // And auto mode leaves it so below the threshold.
    r.add(&dir, &[]).expect_code(0, "repo add");
    assert_eq!(r.role("targets").signed.targets.len(), 30);
}

/// The value of xattr `name` of `path`, or the errno.
fn xattr(path: &Path, name: &str) -> Result<String, i32> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings; `buf` has the length passed.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(r as usize);
    Ok(String::from_utf8(buf).unwrap())
}

#[test]
fn a_live_mount_follows_the_repository_into_bins() {
    // A mount that trusted the single targets file switches to the sharded layout on its next
    // refresh, serves every file from its bin, and keeps following one-bin updates.
    let files = crate::harness::numbered_files(20, 3, ".txt");
    let w = cli::World::new_owned("bins-live", &files, &[]);
    let d = w.mount_local(&["--refresh-interval", "1s"]);
    assert_eq!(
        xattr(&w.at("d0/f0.txt"), "user.trustfs.role").unwrap(),
        "targets"
    );
    let updates = || d.log().matches("metadata updated").count();

    w.publish_args(&["--bins", "8"]);
    cli::wait_for("the switch to hash bins", || d.log(), || updates() >= 1);
    let r = Repo {
        dir: w.repo.clone(),
        keys: w.keys.clone(),
    };
    let succinct = r.succinct();
    for (path, data) in &files {
        assert_eq!(&fs::read(w.at(path)).unwrap(), data, "{path}");
        assert_eq!(
            xattr(&w.at(path), "user.trustfs.role").unwrap(),
            succinct.role_for(path),
            "{path}"
        );
    }
    // A new file is refused until published, then served from its bin.
    w.write("d1/new.txt", b"new");
    assert_eq!(cli::errno_of(fs::read(w.at("d1/new.txt"))), libc::EACCES);
    w.publish();
    cli::wait_for("the one-bin update", || d.log(), || updates() >= 2);
    assert_eq!(fs::read(w.at("d1/new.txt")).unwrap(), b"new");
    let log = d.stop();
    assert!(!log.contains("left out of the mount"), "{log}");
}
