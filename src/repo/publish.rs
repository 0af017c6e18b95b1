//! `init`, `add` and `refresh`: reading the current repository state, editing the signed values,
//! signing and writing in the order clients can rely on.
//!
//! Edits are made on the parsed `signed` JSON value, not on re-serialized structs, so fields trustfs
//! does not know (python-tuf's `unrecognized_fields`, a target's `custom`, delegations) survive a
//! re-sign byte for byte in canonical form.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256, Sha512};

use crate::schema::{
    parse_duration, verify_threshold, MetaFile, Metadata, Root, SchemaError, Signature, Signed,
    SigningKey, Snapshot, Targets, Timestamp, UtcTime, SPEC_VERSION,
};

use crate::trust::role_matches;

use super::addcache::{self, AddCache};
use super::atomic::{syncfs, write_atomic, RepoLock};
use super::bins::{self, BinsReport, Current, Sharding};
use super::content::{self, Known, Outcome, Skipped};
use super::delegate::{describe_patterns, RoleTree};
use super::error::{display_name, RepoError};
use super::keys;

/// The top-level roles, in the order their key files are looked for in KEYDIR.
pub const TOP_LEVEL_ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

/// How long newly signed metadata of each role stays valid, counted from the time of signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiries {
    pub root: Duration,
    pub targets: Duration,
    pub snapshot: Duration,
    pub timestamp: Duration,
    /// The delegated role a command signs (`delegate`, `add --role`); `None`: as `targets`.
    pub delegated: Option<Duration>,
    /// Hash bins (`bins=DURATION`); `None`: as `targets`.
    pub bins: Option<Duration>,
}

impl Default for Expiries {
    /// root 365 days, targets 90 days, snapshot 7 days, timestamp 1 day; delegated roles as
    /// targets.
    fn default() -> Self {
        const DAY: u64 = 86400;
        Expiries {
            root: Duration::from_secs(365 * DAY),
            targets: Duration::from_secs(90 * DAY),
            snapshot: Duration::from_secs(7 * DAY),
            timestamp: Duration::from_secs(DAY),
            delegated: None,
            bins: None,
        }
    }
}

impl Expiries {
    /// The defaults, overridden by `ROLE=DURATION` specs such as `timestamp=2h`.
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<Expiries, RepoError> {
        let mut e = Expiries::default();
        for spec in specs {
            e.set(spec.as_ref())?;
        }
        Ok(e)
    }

    /// The defaults, overridden by specs, for a command that signs the delegated role `role`:
    /// besides `ROLE=DURATION` for the top-level roles, `NAME=DURATION` (with the delegated role's
    /// name) or a bare `DURATION` set how long that role's new metadata stays valid.
    pub fn from_specs_for_role<S: AsRef<str>>(
        specs: &[S],
        role: &str,
    ) -> Result<Expiries, RepoError> {
        let mut e = Expiries::default();
        for spec in specs {
            let spec = spec.as_ref();
            match spec.split_once('=') {
                Some((name, dur)) if name.trim() == role => {
                    e.delegated = Some(positive_duration(spec, dur)?)
                }
                None => e.delegated = Some(positive_duration(spec, spec)?),
                Some(_) => e.set(spec)?,
            }
        }
        Ok(e)
    }

    /// How long a delegated role's new metadata stays valid.
    pub(crate) fn delegated(&self) -> Duration {
        self.delegated.unwrap_or(self.targets)
    }

    /// How long a hash bin's new metadata stays valid.
    pub(crate) fn bins(&self) -> Duration {
        self.bins.unwrap_or(self.targets)
    }

    /// Apply one `ROLE=DURATION` spec.
    pub fn set(&mut self, spec: &str) -> Result<(), RepoError> {
        let bad = |why: String| RepoError::InvalidArgument(format!("--expires {spec:?}: {why}"));
        let (role, dur) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected ROLE=DURATION, e.g. timestamp=2h".into()))?;
        let d = positive_duration(spec, dur)?;
        match role.trim() {
            "root" => self.root = d,
            "targets" => self.targets = d,
            "snapshot" => self.snapshot = d,
            "timestamp" => self.timestamp = d,
            "bins" => self.bins = Some(d),
            other => {
                return Err(bad(format!(
                    "unknown role {other:?} (use root, targets, snapshot, timestamp or bins)"
                )))
            }
        }
        Ok(())
    }
}

fn positive_duration(spec: &str, dur: &str) -> Result<Duration, RepoError> {
    let bad = |why: String| RepoError::InvalidArgument(format!("--expires {spec:?}: {why}"));
    let d = parse_duration(dur.trim()).map_err(bad)?;
    if d.is_zero() {
        return Err(bad("the duration must be positive".into()));
    }
    Ok(d)
}

/// Options of [`init`].
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The repository directory; `metadata/` and `targets/` are created in it.
    pub repo: PathBuf,
    /// The role key directory: `root`, `targets`, `snapshot`, `timestamp` (generated if missing).
    pub keydir: PathBuf,
    pub expires: Expiries,
}

/// What [`init`] did.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// Key files that did not exist and were generated.
    pub generated_keys: Vec<PathBuf>,
    /// Metadata files written, in order.
    pub written: Vec<PathBuf>,
}

/// Options of [`add`].
#[derive(Clone, Debug)]
pub struct AddOptions {
    pub repo: PathBuf,
    pub keydir: PathBuf,
    /// The directory whose regular files become the complete target list.
    pub content_dir: PathBuf,
    /// Also list (and publish under) sha512 hashes.
    pub sha512: bool,
    pub expires: Expiries,
    /// The delegated role whose target list this is (signed with `KEYDIR/<role>`); `None` (or
    /// `targets`): the top-level targets role.
    pub role: Option<String>,
    /// When and how the top-level targets role's own files are sharded into hash bins (not used
    /// with `role`).
    pub sharding: Sharding,
    /// Read every file, even those whose identity says they did not change since the last add
    /// (see `addcache`).
    pub reread: bool,
    /// Show progress (files, bytes, rate) on stderr while files are published, from the first
    /// second on (the CLI sets it when stderr is a terminal).
    pub progress: bool,
}

/// What [`add`] did. Target names are sorted.
#[derive(Clone, Debug, Default)]
pub struct AddReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    /// Files under CONTENT_DIR that were not published (symlinks, FIFOs, ...), with the reason.
    pub skipped: Vec<Skipped>,
    /// The delegated role that was written, if any (`None`: top-level targets).
    pub role: Option<String>,
    /// The version written for the role whose list this is (top-level targets or `role`).
    pub role_version: u64,
    /// Versions of the top-level roles after the command (`targets` unchanged with `role`).
    pub versions: Versions,
    pub root_expires: Option<UtcTime>,
    /// The hash bins the top-level targets list is sharded into (`None`: one targets file).
    pub bins: Option<BinsReport>,
    /// Things the publisher should know that did not stop the command.
    pub warnings: Vec<String>,
    /// Files not read again: unchanged since the last add (same device, inode, size, mtime and
    /// ctime), their published copies kept.
    pub not_reread: usize,
}

/// Options of [`refresh`].
#[derive(Clone, Debug)]
pub struct RefreshOptions {
    pub repo: PathBuf,
    pub keydir: PathBuf,
    pub expires: Expiries,
    /// Also re-sign targets (new version and expiry, same targets).
    pub resign_targets: bool,
}

/// The versions a command wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Versions {
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

/// What [`refresh`] did.
#[derive(Clone, Debug)]
pub struct RefreshReport {
    pub versions: Versions,
    pub root_expires: UtcTime,
    /// Delegated roles signed anew (less than half their validity was left).
    pub resigned: Vec<String>,
    /// Delegated roles near expiry whose keys KEYDIR does not hold.
    pub warnings: Vec<String>,
}

/// The repository's metadata directory.
pub fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

/// The repository's target content directory.
pub fn targets_dir(repo: &Path) -> PathBuf {
    repo.join("targets")
}

pub(crate) fn keyfile(keydir: &Path, role: &str) -> PathBuf {
    keydir.join(role)
}

pub(crate) fn expiry(d: Duration) -> String {
    UtcTime::now().plus(d).to_string()
}

/// Create a new repository: role keys (generated where missing), `1.root.json`,
/// `1.targets.json` (no targets), `1.snapshot.json` and `timestamp.json`, consistent snapshots on.
/// Only versioned roots are written (no `root.json`): clients pin `1.root.json` out of band and
/// fetch `N.root.json` to rotate.
pub fn init(opts: &InitOptions) -> Result<InitReport, RepoError> {
    let mdir = metadata_dir(&opts.repo);
    let initialised = |mdir: &Path| -> Result<bool, RepoError> {
        Ok(latest_root(mdir)?.is_some() || mdir.join("timestamp.json").exists())
    };
    if initialised(&mdir)? {
        return Err(RepoError::AlreadyInitialised { path: mdir });
    }
    // Keys first: a key that cannot be loaded (a wrong passphrase) stops init before anything
    // of the repository is created.
    create_dir(&opts.keydir, 0o700)?;
    let mut generated_keys = Vec::new();
    let mut signers = BTreeMap::new();
    for role in TOP_LEVEL_ROLES {
        let path = keyfile(&opts.keydir, role);
        let (key, generated) = keys::load_or_generate(&path)?;
        if generated {
            generated_keys.push(path);
        }
        signers.insert(role, key);
    }
    warn_unencrypted_root(&opts.keydir)?;
    create_dir(&opts.repo, 0o755)?;
    let _lock = RepoLock::acquire(&opts.repo)?;
    create_dir(&mdir, 0o755)?;
    create_dir(&targets_dir(&opts.repo), 0o755)?;
    if initialised(&mdir)? {
        return Err(RepoError::AlreadyInitialised { path: mdir });
    }
    let mut key_objs = Map::new();
    let mut roles = Map::new();
    let mut keyids = BTreeMap::new();
    for (role, key) in &signers {
        let public = key.public_key();
        let keyid = public.compute_keyid();
        key_objs.insert(keyid.clone(), public.to_value());
        roles.insert(
            role.to_string(),
            json!({"keyids": [keyid.clone()], "threshold": 1}),
        );
        keyids.insert(*role, keyid);
    }
    let signer = |role: &str| -> Result<(&SigningKey, &str), RepoError> {
        match (signers.get(role), keyids.get(role)) {
            (Some(k), Some(id)) => Ok((k, id.as_str())),
            _ => Err(RepoError::Internal(format!("no {role} key loaded"))),
        }
    };

    let root = json!({
        "_type": "root",
        "spec_version": SPEC_VERSION,
        "version": 1,
        "expires": expiry(opts.expires.root),
        "consistent_snapshot": true,
        "keys": key_objs,
        "roles": roles,
    });
    let targets = json!({
        "_type": "targets",
        "spec_version": SPEC_VERSION,
        "version": 1,
        "expires": expiry(opts.expires.targets),
        "targets": {},
    });
    let (k, id) = signer("root")?;
    let (_, root_bytes) = sign::<Root>(root, k, id)?;
    let (k, id) = signer("targets")?;
    let (_, targets_bytes) = sign::<Targets>(targets, k, id)?;
    let snapshot = json!({
        "_type": "snapshot",
        "spec_version": SPEC_VERSION,
        "version": 1,
        "expires": expiry(opts.expires.snapshot),
        "meta": {"targets.json": {"version": 1}},
    });
    let (k, id) = signer("snapshot")?;
    let (_, snapshot_bytes) = sign::<Snapshot>(snapshot, k, id)?;
    let timestamp = timestamp_value(None, 1, 1, &snapshot_bytes, opts.expires.timestamp);
    let (k, id) = signer("timestamp")?;
    let (_, timestamp_bytes) = sign::<Timestamp>(timestamp, k, id)?;

    let mut written = Vec::new();
    for (name, bytes) in [
        ("1.root.json", &root_bytes),
        ("1.targets.json", &targets_bytes),
        ("1.snapshot.json", &snapshot_bytes),
        ("timestamp.json", &timestamp_bytes),
    ] {
        let path = mdir.join(name);
        write_atomic(&path, bytes, 0o644)?;
        written.push(path);
    }
    Ok(InitReport {
        generated_keys,
        written,
    })
}

/// Make the target list of the top-level targets role (or, with `role`, of that delegated role)
/// equal to the regular files under `content_dir`: new and changed files are copied into
/// `REPO/targets` under consistent-snapshot names and listed with length and sha256 (and sha512);
/// files no longer present leave the list; unchanged entries are kept as they were (`custom` and
/// unknown fields included). Then that role, snapshot and timestamp are re-signed with bumped
/// versions, even when nothing changed. Existing delegations are kept.
///
/// With `role`, every file must lie within the paths or hash prefixes the role is delegated (by
/// its delegator, and by every delegation above it); a file outside is refused before anything
/// is written ([`RepoError::OutsideDelegation`]).
pub fn add(opts: &AddOptions) -> Result<AddReport, RepoError> {
    let _lock = RepoLock::acquire(&opts.repo)?;
    let state = RepoState::load(&opts.repo)?;
    let role = opts.role.as_deref().filter(|r| *r != "targets");
    if let Some(why) = role.and_then(|r| bins::is_bin_of(&state, r)) {
        return Err(RepoError::InvalidArgument(why));
    }
    let repo_meta = fs::metadata(&opts.repo).map_err(|e| RepoError::io("stat", &opts.repo, e))?;
    let mut report = AddReport {
        role: role.map(str::to_owned),
        ..AddReport::default()
    };
    // Everything below CONTENT_DIR is resolved beneath this one descriptor (see content.rs).
    let content_root = content::ContentRoot::open(&opts.content_dir)?;
    // A sharded repository whose snapshot is still the one the last add wrote (nothing signed
    // anything since, see `addcache::BinsStamp`): only the bins whose files changed are loaded.
    let stamp_seen = match role {
        None if !opts.reread => bins_unchanged_since_last_add(&state, opts),
        _ => None,
    };
    // Three independent loads at once: the walk of CONTENT_DIR and the add cache (one thread
    // each, mostly system calls and parsing) while the current layout loads (hash bins are
    // loaded and verified here, on every core).
    let exclude = [(repo_meta.dev(), repo_meta.ino())];
    let (layout, walked, cache) = std::thread::scope(|s| {
        let walk = s.spawn(|| {
            let mut skipped = Vec::new();
            content_root
                .walk(&exclude, &mut skipped)
                .map(|files| (files, skipped))
        });
        let cache = s.spawn(|| {
            if opts.reread {
                AddCache::empty(&opts.repo)
            } else {
                AddCache::load(&opts.repo)
            }
        });
        let layout = match role {
            None if stamp_seen.is_some() => {
                bins::LoadedBins::unloaded(&state).map(|b| b.map(Current::Binned))
            }
            None => Current::of(&state).map(Some),
            Some(_) => Ok(None),
        };
        let lost = |what: &str| RepoError::Internal(format!("{what} failed unexpectedly"));
        let walked = walk.join().unwrap_or_else(|_| Err(lost("the walk")));
        let cache = cache.join().map_err(|_| lost("loading the add cache"));
        (layout, walked, cache)
    });
    let mut layout = layout?;
    let (files, skipped) = walked?;
    report.skipped = skipped;
    let mut cache = cache?;
    let mut lazy = stamp_seen.is_some() && matches!(layout, Some(Current::Binned(_)));
    if let Some(Current::Binned(b)) = &mut layout {
        // The cache as loaded must be the one whose head was read (a damaged one loads empty,
        // without its stamp), and the bin count must stay (else every bin is written anew
        // from the whole list). Otherwise every bin is read.
        if lazy
            && !(cache.stamp() == stamp_seen.as_ref()
                && bins::keeps_layout(opts.sharding, b.succinct.bit_length, files.len()))
        {
            let all = vec![true; b.bins.len()];
            b.load_these(&state, &all)?;
            lazy = false;
        }
    }
    let (signers, tree) = match (role, &layout) {
        // With hash bins, targets is signed only when its delegation changes or nears expiry.
        (None, Some(Current::Binned(_))) => (
            Signers::load(&state, &opts.keydir, &["snapshot", "timestamp"])?,
            None,
        ),
        (None, _) => (
            Signers::load(&state, &opts.keydir, &["targets", "snapshot", "timestamp"])?,
            None,
        ),
        (Some(_), _) => (
            Signers::load(&state, &opts.keydir, &["snapshot", "timestamp"])?,
            Some(RoleTree::load(&state)?),
        ),
    };
    // The role whose list is replaced, and what checks a path.
    let delegated = match (role, &tree) {
        (Some(name), Some(tree)) => Some((tree.get(name)?, tree.chain(name)?)),
        _ => None,
    };

    // Nothing is written unless every file may be listed by the role.
    if let Some((_, chain)) = &delegated {
        for f in &files {
            for entry in chain {
                if !role_matches(&entry.entry, f.target.as_str()) {
                    return Err(RepoError::OutsideDelegation {
                        path: f.path.clone(),
                        target: f.target.as_str().to_owned(),
                        role: entry.name.clone(),
                        delegator: entry.delegator.clone(),
                        patterns: describe_patterns(&entry.entry),
                    });
                }
            }
        }
    }

    let tdir = targets_dir(&opts.repo);
    create_dir(&tdir, 0o755)?;
    // The role's current list (of a sharded targets: of the bins loaded).
    fn old_list<'a>(
        delegated: Option<&'a Value>,
        layout: &'a Option<Current>,
        state: &'a RepoState,
    ) -> HashMap<&'a str, &'a Value> {
        match (delegated, layout) {
            (Some(role), _) => list_of(role),
            (_, Some(Current::Binned(b))) => {
                // Files targets lists itself (a repository sharded by another tool) count too.
                let mut all = b.targets();
                all.extend(list_of(&state.targets.signed_value));
                all
            }
            _ => list_of(&state.targets.signed_value),
        }
    }
    let delegated_value = delegated.as_ref().map(|(r, _)| &r.md.signed_value);
    // 1. Content first: by the time metadata names a file, it is in place and on disk. A file
    // keeps sha512 if it is listed with it.
    let lists_sha512 = |entry: Option<&&Value>| {
        entry
            .and_then(|o| o.get("hashes"))
            .and_then(Value::as_object)
            .is_some_and(|h| h.contains_key("sha512"))
    };
    let publish = |want_sha512: &(dyn Fn(&str) -> bool + Sync)| {
        publish_all(
            &content_root,
            &files,
            &tdir,
            state.consistent,
            &cache,
            want_sha512,
            opts.progress,
        )
    };
    let (outcomes, old_targets) = if lazy {
        // What the cache holds for a path is what the bins list (see `addcache::BinsStamp`).
        let outcomes = publish(&|name: &str| {
            opts.sha512
                || cache
                    .get(name)
                    .is_some_and(|k| k.published.hashes.contains_key("sha512"))
        })?;
        if let Some(Current::Binned(b)) = &mut layout {
            let changed = changed_bins(&b.succinct, &files, &outcomes, &cache);
            b.load_these(&state, &changed)?;
        }
        (outcomes, old_list(delegated_value, &layout, &state))
    } else {
        let old = old_list(delegated_value, &layout, &state);
        let outcomes = publish(&|name: &str| opts.sha512 || lists_sha512(old.get(name)))?;
        (outcomes, old)
    };
    // One flush of the filesystem for every copy and rename above (instead of two fsyncs a file).
    syncfs(&tdir)?;
    // Entries that stay as they are borrow the loaded metadata: at a million targets a copy of
    // each entry as a JSON value costs gigabytes.
    // Built from `files`, which the walk sorted by target (one bulk build, no search per entry).
    let mut new_list: Vec<(String, Listed)> = Vec::with_capacity(files.len());
    // Old entries listed again (when all are, none was removed: no search for removals).
    let mut relisted = 0;
    // Bins not loaded (lazy): none of their files changed, they stay as they are.
    let unloaded = |name: &str| match &layout {
        Some(Current::Binned(b)) if lazy => b
            .bins
            .get(b.succinct.bin_of(name) as usize)
            .is_some_and(Option::is_none),
        _ => false,
    };
    for (f, outcome) in files.iter().zip(outcomes) {
        let name = f.target.as_str();
        let published = &outcome.published;
        if outcome.reused {
            report.not_reread += 1;
            if unloaded(name) {
                report.unchanged.push(name.to_owned());
                continue;
            }
        }
        let old = old_targets.get(name);
        relisted += usize::from(old.is_some());
        let entry = match old {
            Some(old) if same_content(old, published) => {
                report.unchanged.push(name.to_owned());
                let listed = |alg: &str, digest: &[u8]| {
                    old.get("hashes")
                        .and_then(|h| h.get(alg))
                        .and_then(Value::as_str)
                        // Exactly as written now (lowercase), or the entry is rewritten.
                        .is_some_and(|d| {
                            crate::schema::hex_eq(d, digest)
                                && !d.bytes().any(|c| c.is_ascii_uppercase())
                        })
                };
                // Kept as it was, `custom` included: a chunk root is listed for new and
                // changed content (an entry without one is read in one pass by clients).
                if published.hashes.iter().all(|(a, d)| listed(a, d)) {
                    Listed::Kept(old)
                } else {
                    let mut kept = (*old).clone();
                    if let Some(h) = kept.get_mut("hashes").and_then(Value::as_object_mut) {
                        for (alg, digest) in published.hashes.iter() {
                            h.insert(alg.to_owned(), Value::String(hex::encode(digest)));
                        }
                    }
                    Listed::New(kept)
                }
            }
            Some(_) => {
                report.changed.push(name.to_owned());
                Listed::New(with_chunk_root(
                    json!({"length": published.length, "hashes": hex_map(&published.hashes)}),
                    published,
                ))
            }
            None => {
                report.added.push(name.to_owned());
                Listed::New(with_chunk_root(
                    json!({"length": published.length, "hashes": hex_map(&published.hashes)}),
                    published,
                ))
            }
        };
        new_list.push((name.to_owned(), entry));
        // A reused outcome is what the cache already holds. A file that changed too recently
        // to be known by its identity is remembered as listed, to be read again.
        if !outcome.reused {
            let known = Known {
                key: outcome.key.unwrap_or(addcache::UNSETTLED),
                published: outcome.published,
            };
            cache.set(name, Some(known));
        }
    }
    let new_targets: NewList = new_list.into_iter().collect();
    if relisted < old_targets.len() {
        report.removed = old_targets
            .keys()
            .filter(|k| !new_targets.contains_key(**k))
            .map(|k| (*k).to_owned())
            .collect();
        report.removed.sort();
    }

    report.root_expires = Some(state.root.expires());
    match (role, &tree, &delegated, &layout) {
        (Some(name), Some(tree), Some((r, _)), _) => {
            let mut value = r.md.signed_value.clone();
            set_field(
                &mut value,
                "targets",
                Value::Object(materialize(new_targets)),
            )?;
            let role_keys = tree.signing_keys(&opts.keydir, name)?;
            let write = RoleWrite {
                name: name.to_owned(),
                value,
                version: bump(&r.path, r.md.version())?,
                valid_for: opts.expires.delegated(),
                keys: role_keys.iter().map(|(k, id)| (k, id.clone())).collect(),
            };
            report.role_version = write.version;
            report.versions = publish_chain(&state, &signers, vec![write], &opts.expires)?;
        }
        (None, _, _, Some(current)) => {
            let top = bins::TopLevel {
                state: &state,
                current,
                keydir: &opts.keydir,
                sharding: opts.sharding,
                expires: &opts.expires,
                signers: &signers,
            };
            let (versions, targets_version, bins) =
                bins::publish_top_level(&top, new_targets, &mut report.warnings)?;
            report.versions = versions;
            report.role_version = targets_version;
            report.bins = bins;
        }
        _ => return Err(RepoError::Internal("add: no role to write".into())),
    }
    for name in &report.removed {
        cache.set(name, None);
    }
    // Paths the cache knew that are no longer in CONTENT_DIR (listed by the role or not).
    if cache.len() > files.len() {
        let gone: Vec<String> = cache
            .targets()
            .filter(|t| {
                files
                    .binary_search_by(|f| f.target.as_str().cmp(t))
                    .is_err()
            })
            .map(str::to_owned)
            .collect();
        for name in gone {
            cache.set(&name, None);
        }
    }
    // Every path the bins list is now in the cache, as they list it: stamp the cache with the
    // snapshot just written (a later add of an unchanged tree then loads no bin).
    let stamp = match (&report.bins, role) {
        (Some(b), None) => {
            // Bins not read keep the expiry the last stamp vouched for.
            let earlier = cache.stamp().filter(|_| lazy).map(|p| p.earliest_expiry);
            let this = b.earliest_expiry.map(|e| e.0);
            let earliest = match (this, earlier) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            earliest.and_then(|earliest| {
                let written = RepoState::load(&opts.repo).ok()?;
                Some(addcache::BinsStamp {
                    snapshot: addcache::snapshot_digest(&written.snapshot)?,
                    bin_files: bin_files_digest(&written)?,
                    earliest_expiry: earliest,
                })
            })
        }
        _ => None,
    };
    cache.set_stamp(stamp);
    if let Err(e) = cache.save() {
        report.warnings.push(format!(
            "{e}; the next add reads every file again (nothing else is affected)"
        ));
    }
    // What was loaded for a million targets takes most of a second to free: a thread does it
    // while the caller goes on (a `repo add` process exits without waiting for it).
    drop((old_targets, delegated));
    free_later((files, cache, layout, tree, state));
    Ok(report)
}

/// The cache's [`addcache::BinsStamp`] if it says the bins are as the last `add` wrote them:
/// the snapshot is the one it wrote, every bin file is the file it left, no bin nears expiry,
/// targets lists nothing itself, and `--bins` (if given) asks for the current count.
fn bins_unchanged_since_last_add(
    state: &RepoState,
    opts: &AddOptions,
) -> Option<addcache::BinsStamp> {
    let succinct = succinct_of(state)?;
    let sharding_keeps = match opts.sharding {
        bins::Sharding::Auto { .. } => true,
        bins::Sharding::Bins { bit_length } => bit_length == succinct.bit_length,
        bins::Sharding::Off => false,
    };
    let stamp = AddCache::peek_stamp(&opts.repo)?;
    (sharding_keeps
        && state.targets.signed.targets.is_empty()
        && addcache::snapshot_digest(&state.snapshot) == Some(stamp.snapshot)
        && bin_files_digest(state) == Some(stamp.bin_files)
        && !bins::expiring(
            crate::schema::UtcTime(stamp.earliest_expiry),
            opts.expires.bins(),
            crate::schema::UtcTime::now(),
        ))
    .then_some(stamp)
}

/// The hash bins the top-level targets of `state` delegates to, if any.
fn succinct_of(state: &RepoState) -> Option<&crate::schema::SuccinctRoles> {
    state
        .targets
        .signed
        .delegations
        .as_ref()
        .and_then(|d| d.succinct_roles.as_ref())
}

/// sha256 of the identities (inode, size, mtime, ctime) of the hash bin files the snapshot of
/// `state` names, in bin order; `None` if targets has no bins or one is missing.
fn bin_files_digest(state: &RepoState) -> Option<[u8; 32]> {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let succinct = succinct_of(state)?;
    let mut h = sha2::Sha256::new();
    for name in succinct.bin_names() {
        let version = state
            .snapshot
            .signed
            .meta
            .get(&format!("{name}.json"))?
            .version;
        let m =
            fs::symlink_metadata(state.metadata_dir.join(state.meta_name(&name, version))).ok()?;
        for n in [m.ino(), m.size()] {
            h.update(n.to_le_bytes());
        }
        for t in [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()] {
            h.update(t.to_le_bytes());
        }
    }
    Some(h.finalize().into())
}

/// The bins to load for a lazy add: those a file read again (new, changed, or not known by its
/// identity) hashes to, and those of paths the cache knows that are gone.
fn changed_bins(
    succinct: &crate::schema::SuccinctRoles,
    files: &[content::ContentFile],
    outcomes: &[content::Outcome],
    cache: &AddCache,
) -> Vec<bool> {
    let mut changed = vec![false; succinct.bin_count() as usize];
    let mut mark = |path: &str| {
        if let Some(c) = changed.get_mut(succinct.bin_of(path) as usize) {
            *c = true;
        }
    };
    // Walked paths the cache knows (a reused outcome came from the cache).
    let mut known = 0;
    for (f, o) in files.iter().zip(outcomes) {
        let name = f.target.as_str();
        if o.reused {
            known += 1;
        } else {
            known += usize::from(cache.get(name).is_some());
            mark(name);
        }
    }
    if known < cache.len() {
        // `files` is sorted by target.
        for t in cache.targets() {
            if files
                .binary_search_by(|f| f.target.as_str().cmp(t))
                .is_err()
            {
                mark(t);
            }
        }
    }
    changed
}

/// Drop `value` on a thread of its own (here if none can be started).
fn free_later<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("trustfs-free".into())
        .spawn(move || drop(value));
}

/// Publish every file of `files` ([`content::publish_file`]) on all cores: the outcomes in the
/// order of `files`, or the error of the first file (in that order) that failed. After a failure
/// no further file is started. With `progress`, a line on stderr shows files, bytes and rate.
fn publish_all(
    root: &content::ContentRoot,
    files: &[content::ContentFile],
    tdir: &Path,
    consistent: bool,
    cache: &AddCache,
    sha512: &(dyn Fn(&str) -> bool + Sync),
    progress: bool,
) -> Result<Vec<Outcome>, RepoError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<Outcome, RepoError>>>> =
        files.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        let reporter =
            progress.then(|| s.spawn(|| show_progress(&finished, &done, &bytes, files.len())));
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { break };
                        let name = f.target.as_str();
                        let r = content::publish_file(
                            root,
                            f,
                            tdir,
                            sha512(name),
                            consistent,
                            cache.get(name),
                        );
                        match &r {
                            Ok(o) if !o.reused => {
                                bytes.fetch_add(o.published.length, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(_) => failed.store(true, Ordering::Relaxed),
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    }
                })
            })
            .collect();
        for w in workers {
            // A worker that panicked leaves its file's slot empty (reported below).
            let _ = w.join();
        }
        finished.store(true, Ordering::Relaxed);
        if let Some(r) = reporter {
            let _ = r.join();
        }
    });
    // Files are claimed in order, so every file before a failed one has its outcome.
    let mut out = Vec::with_capacity(files.len());
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(o)) => out.push(o),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(RepoError::Internal(
                    "a content file was not published".into(),
                ))
            }
        }
    }
    Ok(out)
}

/// Until `finished`: from the first second on, about every 250 ms, rewrite one stderr line with
/// the files done, the bytes read and the read rate; end it with a newline if it was shown.
fn show_progress(finished: &AtomicBool, done: &AtomicUsize, bytes: &AtomicU64, total: usize) {
    use std::io::Write;
    let start = std::time::Instant::now();
    let line = |end: &str| {
        let secs = start.elapsed().as_secs_f64().max(0.001);
        let mib = bytes.load(Ordering::Relaxed) as f64 / 1048576.0;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Ktrustfs: {} of {total} files, {mib:.1} MiB read, {:.0} MiB/s{end}",
            done.load(Ordering::Relaxed),
            mib / secs,
        );
        let _ = err.flush();
    };
    let mut shown = false;
    let mut next = Duration::from_secs(1);
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if start.elapsed() >= next {
            line("");
            shown = true;
            next = start.elapsed() + Duration::from_millis(250);
        }
    }
    if shown {
        line("\n");
    }
}

/// The `targets` list of a targets-type role's signed value, borrowed (parsed as a map when the
/// file was loaded; an empty default could only drop entries that do not exist).
fn list_of(signed: &Value) -> HashMap<&str, &Value> {
    signed
        .get("targets")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

/// A target entry of the list `add` writes: an entry of the loaded metadata as it is, or a new
/// one.
#[derive(Debug)]
pub(crate) enum Listed<'a> {
    Kept(&'a Value),
    New(Value),
}

impl Listed<'_> {
    pub(crate) fn value(&self) -> &Value {
        match self {
            Listed::Kept(v) => v,
            Listed::New(v) => v,
        }
    }

    pub(crate) fn into_value(self) -> Value {
        match self {
            Listed::Kept(v) => v.clone(),
            Listed::New(v) => v,
        }
    }
}

/// The new target list of a role, by path.
pub(crate) type NewList<'a> = BTreeMap<String, Listed<'a>>;

/// `list` as the JSON object metadata holds.
pub(crate) fn materialize(list: NewList<'_>) -> Map<String, Value> {
    list.into_iter().map(|(k, v)| (k, v.into_value())).collect()
}

/// Re-sign snapshot and timestamp with bumped versions and fresh expiry (and targets too with
/// `resign_targets`, and then, in a sharded repository, every hash bin). For cron jobs and CI
/// that keep a repository fresh. Delegated roles with less than half the delegated validity left
/// are re-signed too when KEYDIR holds their keys (the others are named in warnings).
pub fn refresh(opts: &RefreshOptions) -> Result<RefreshReport, RepoError> {
    let _lock = RepoLock::acquire(&opts.repo)?;
    let state = RepoState::load(&opts.repo)?;
    let roles: &[&str] = if opts.resign_targets {
        &["targets", "snapshot", "timestamp"]
    } else {
        &["snapshot", "timestamp"]
    };
    let signers = Signers::load(&state, &opts.keydir, roles)?;
    // With hash bins, "targets" is targets and its bins: every bin is signed anew too.
    let bins = match opts.resign_targets {
        true => bins::LoadedBins::load(&state)?,
        false => None,
    };
    let bin_keys = match &bins {
        Some(b) => bins::signing_keys(&opts.keydir, b)?,
        None => Vec::new(),
    };
    let mut writes = match &bins {
        Some(b) => bins::resign_all(&state, b, &bin_keys, &opts.expires)?,
        None => Vec::new(),
    };
    if opts.resign_targets {
        writes.push(RoleWrite::top_level(
            &state,
            &signers,
            state.targets.signed_value.clone(),
            &opts.expires,
        )?);
    }
    // Delegated roles with less than half their validity left are signed anew when KEYDIR holds
    // their keys; the others are named in a warning before they expire.
    let tree = super::delegate::RoleTree::load(&state)?;
    let now = UtcTime::now();
    let valid_for = opts.expires.delegated();
    let half = now.plus(valid_for / 2);
    let mut warnings = Vec::new();
    let mut due = Vec::new();
    for role in tree.names() {
        let r = tree.get(role)?;
        if bins::is_bin_of(&state, role).is_some() || r.md.expires() > half {
            continue;
        }
        // Never a reason to fail: refresh keeps snapshot and timestamp alive (cron, no
        // terminal), whatever a delegated role's keys are.
        match tree.signing_keys(&opts.keydir, role) {
            Ok(keys) => due.push((r, keys)),
            Err(RepoError::NotEnoughKeys { .. }) => warnings.push(format!(
                "delegated role {role} expires at {}; KEYDIR does not hold its keys (re-sign it with `trustfs repo add --role {role}` where they are)",
                r.md.expires()
            )),
            Err(e) => warnings.push(format!(
                "delegated role {role} expires at {} and cannot be re-signed here: {e}",
                r.md.expires()
            )),
        }
    }
    let mut resigned = Vec::new();
    for (r, keys) in &due {
        resigned.push(r.name.clone());
        writes.push(RoleWrite {
            name: r.name.clone(),
            value: r.md.signed_value.clone(),
            version: bump(&r.path, r.md.version())?,
            valid_for,
            keys: keys.iter().map(|(k, id)| (k, id.clone())).collect(),
        });
    }
    let versions = publish_chain(&state, &signers, writes, &opts.expires)?;
    Ok(RefreshReport {
        versions,
        root_expires: state.root.expires(),
        resigned,
        warnings,
    })
}

/// A targets-type role (top-level or delegated) to sign and write: its new `signed` value
/// (`version` and `expires` are set from the fields here) and the keys to sign it with.
pub(crate) struct RoleWrite<'k> {
    pub(crate) name: String,
    pub(crate) value: Value,
    pub(crate) version: u64,
    pub(crate) valid_for: Duration,
    pub(crate) keys: Vec<(&'k SigningKey, String)>,
}

impl<'k> RoleWrite<'k> {
    /// The top-level targets role, one version up, signed with the targets key.
    pub(crate) fn top_level(
        state: &RepoState,
        signers: &'k Signers,
        value: Value,
        expires: &Expiries,
    ) -> Result<RoleWrite<'k>, RepoError> {
        let keys = signers
            .get("targets")?
            .into_iter()
            .map(|(k, id)| (k, id.to_owned()))
            .collect();
        Ok(RoleWrite {
            name: "targets".into(),
            value,
            version: bump(&state.targets_path, state.targets.version())?,
            valid_for: expires.targets,
            keys,
        })
    }
}

/// Sign and write the given targets roles (in order), then snapshot and timestamp. Snapshot's
/// `meta` gets an entry `<name>.json` per role written; every other entry is carried over.
pub(crate) fn publish_chain(
    state: &RepoState,
    signers: &Signers,
    roles: Vec<RoleWrite>,
    expires: &Expiries,
) -> Result<Versions, RepoError> {
    publish_chain_removing(state, signers, roles, &[], expires)
}

/// [`publish_chain`], and snapshot's `meta` loses the entries of the roles named in `removed`
/// (`<name>.json`: roles no delegation lists any more).
pub(crate) fn publish_chain_removing(
    state: &RepoState,
    signers: &Signers,
    roles: Vec<RoleWrite>,
    removed: &[String],
    expires: &Expiries,
) -> Result<Versions, RepoError> {
    let mdir = &state.metadata_dir;
    let mut targets_version = state.targets.version();
    let mut entries: Vec<(String, Value)> = Vec::new();
    for role in roles {
        let mut value = role.value;
        set_field(&mut value, "version", json!(role.version))?;
        set_field(&mut value, "expires", json!(expiry(role.valid_for)))?;
        let keys: Vec<(&SigningKey, &str)> =
            role.keys.iter().map(|(k, id)| (*k, id.as_str())).collect();
        let (_, bytes) = sign_all::<Targets>(value, &keys)?;
        let path = mdir.join(state.meta_name(&role.name, role.version));
        // Keep the form the snapshot already uses for this role (for a new role: the form of
        // targets.json): version only (python-tuf's default), or version, length and sha256 when
        // the existing entry lists length or hashes.
        let file = format!("{}.json", role.name);
        let meta = &state.snapshot.signed.meta;
        let old = meta.get(&file).or_else(|| meta.get("targets.json"));
        let pinned = old.is_some_and(|m| m.length.is_some() || m.hashes.is_some());
        // Without a length in snapshot, clients download at most their default limit: metadata
        // above it would be written only to be refused by every client.
        let limit = crate::trust::Limits::default().targets_max_bytes;
        if !pinned && bytes.len() as u64 > limit {
            return Err(RepoError::TooLarge {
                file: path,
                role: role.name,
                size: bytes.len() as u64,
                limit,
            });
        }
        write_atomic(&path, &bytes, 0o644)?;
        if role.name == "targets" {
            targets_version = role.version;
        }
        let entry = if pinned {
            json!({"version": role.version, "length": bytes.len(),
               "hashes": {"sha256": hex::encode(Sha256::digest(&bytes))}})
        } else {
            json!({"version": role.version})
        };
        entries.push((file, entry));
    }

    let snapshot_version = bump(&state.snapshot_path, state.snapshot.version())?;
    let mut snapshot = state.snapshot.signed_value.clone();
    if let Some(meta) = snapshot.get_mut("meta").and_then(Value::as_object_mut) {
        for name in removed {
            meta.remove(&format!("{name}.json"));
        }
    }
    if !entries.is_empty() {
        let meta = snapshot
            .get_mut("meta")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| RepoError::Internal("snapshot without meta".into()))?;
        for (file, entry) in entries {
            meta.insert(file, entry);
        }
    }
    set_field(&mut snapshot, "version", json!(snapshot_version))?;
    set_field(&mut snapshot, "expires", json!(expiry(expires.snapshot)))?;
    let (_, snapshot_bytes) = sign_all::<Snapshot>(snapshot, &signers.get("snapshot")?)?;
    write_atomic(
        &mdir.join(state.meta_name("snapshot", snapshot_version)),
        &snapshot_bytes,
        0o644,
    )?;

    let timestamp_version = bump(&state.timestamp_path, state.timestamp.version())?;
    let timestamp = timestamp_value(
        Some(&state.timestamp.signed_value),
        timestamp_version,
        snapshot_version,
        &snapshot_bytes,
        expires.timestamp,
    );
    let (_, timestamp_bytes) = sign_all::<Timestamp>(timestamp, &signers.get("timestamp")?)?;
    // Last: only now does any client see the new snapshot and targets.
    write_atomic(&mdir.join("timestamp.json"), &timestamp_bytes, 0o644)?;
    Ok(Versions {
        targets: targets_version,
        snapshot: snapshot_version,
        timestamp: timestamp_version,
    })
}

/// A timestamp `signed` value pointing at `snapshot_bytes` (version, length and sha256; the
/// length and hash are optional in TUF and make a substituted snapshot detectable before parsing).
/// Unknown fields of `old` are kept.
fn timestamp_value(
    old: Option<&Value>,
    version: u64,
    snapshot_version: u64,
    snapshot_bytes: &[u8],
    valid_for: Duration,
) -> Value {
    let meta = json!({"snapshot.json": {
        "version": snapshot_version,
        "length": snapshot_bytes.len(),
        "hashes": {"sha256": hex::encode(Sha256::digest(snapshot_bytes))},
    }});
    let mut v = match old {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        _ => json!({"_type": "timestamp", "spec_version": SPEC_VERSION}),
    };
    if let Value::Object(o) = &mut v {
        o.insert("version".into(), json!(version));
        o.insert("expires".into(), json!(expiry(valid_for)));
        o.insert("meta".into(), meta);
    }
    v
}

pub(crate) fn set_field(v: &mut Value, field: &str, value: Value) -> Result<(), RepoError> {
    v.as_object_mut()
        .ok_or_else(|| RepoError::Internal("signed value is not an object".into()))?
        .insert(field.to_owned(), value);
    Ok(())
}

pub(crate) fn bump(file: &Path, version: u64) -> Result<u64, RepoError> {
    version.checked_add(1).ok_or_else(|| RepoError::Malformed {
        file: file.to_owned(),
        reason: "version cannot be incremented".into(),
    })
}

/// Whether an existing target entry describes the content just published: same length and, for
/// every hash algorithm both list, the same digest (at least one in common).
fn same_content(old: &Value, published: &content::Published) -> bool {
    if old.get("length").and_then(Value::as_u64) != Some(published.length) {
        return false;
    }
    let Some(hashes) = old.get("hashes").and_then(Value::as_object) else {
        return false;
    };
    let mut common = 0;
    for (alg, digest) in published.hashes.iter() {
        if let Some(old_digest) = hashes.get(alg) {
            if !old_digest
                .as_str()
                .is_some_and(|d| crate::schema::hex_eq(d, digest))
            {
                return false;
            }
            common += 1;
        }
    }
    common > 0
}

/// A target entry with `custom.trustfs.chunks` set to the chunk root of `published` (other
/// `custom` fields kept), when this add computed one (see [`crate::chunks`]).
fn with_chunk_root(mut entry: Value, published: &content::Published) -> Value {
    let Some(root) = published.chunk_root else {
        return entry;
    };
    let chunks = json!({
        "v": 1,
        "alg": "blake3",
        "size": crate::chunks::CHUNK_SIZE,
        "root": hex::encode(root),
    });
    if let Some(obj) = entry.as_object_mut() {
        let custom = obj.entry("custom").or_insert_with(|| json!({}));
        if !custom.is_object() {
            // A `custom` that is not an object is the publisher's own business: left as it is.
            return entry;
        }
        let ours = custom
            .as_object_mut()
            .map(|c| c.entry("trustfs").or_insert_with(|| json!({})));
        if let Some(Value::Object(t)) = ours {
            t.insert("chunks".into(), chunks);
        }
    }
    entry
}

/// Digests as metadata lists them: algorithm → lowercase hex.
fn hex_map(hashes: &crate::index::Hashes) -> Map<String, Value> {
    hashes
        .iter()
        .map(|(alg, d)| (alg.to_owned(), Value::String(hex::encode(d))))
        .collect()
}

/// Sign a `signed` value with one key: returns the metadata and the bytes to write. The bytes are
/// parsed back before they are returned, so trustfs never writes metadata it would not read.
pub(crate) fn sign<T: Signed>(
    value: Value,
    key: &SigningKey,
    keyid: &str,
) -> Result<(Metadata<T>, Vec<u8>), RepoError> {
    sign_all(value, &[(key, keyid)])
}

/// Sign a `signed` value with every key given (one signature per key id).
pub(crate) fn sign_all<T: Signed>(
    value: Value,
    keys: &[(&SigningKey, &str)],
) -> Result<(Metadata<T>, Vec<u8>), RepoError> {
    let role = T::TYPE.as_str();
    let internal = |e: String| RepoError::Internal(format!("signing {role}: {e}"));
    if keys.is_empty() {
        return Err(internal("no signing key".into()));
    }
    let signed: T = serde_json::from_value(value.clone()).map_err(|e| internal(e.to_string()))?;
    let mut md = Metadata {
        signed,
        signed_value: value,
        signatures: Vec::new(),
    };
    let msg = md.canonical_signed().map_err(|e| internal(e.to_string()))?;
    for (key, keyid) in keys {
        let sig = key.sign(&msg);
        // A key trustfs can sign with but a client cannot verify (an RSA key of an odd size)
        // must stop the command before anything is written.
        if key.public_key().verify(&msg, &sig) != Ok(true) {
            return Err(internal(format!(
                "the signature by key {keyid} does not verify with its public key"
            )));
        }
        md.signatures.push(Signature {
            keyid: (*keyid).to_owned(),
            sig: hex::encode(sig),
        });
    }
    let bytes = md.to_bytes();
    Metadata::<T>::from_slice(role, &bytes).map_err(|e| internal(e.to_string()))?;
    Ok((md, bytes))
}

/// The signing keys of some top-level roles: for each, the keys in KEYDIR (`<role>`,
/// `<role>@2`, ...) that the current root lists for it, matched by key material, at least as
/// many as its threshold.
pub(crate) struct Signers {
    keys: BTreeMap<String, Vec<(SigningKey, String)>>,
}

impl Signers {
    pub(crate) fn load(
        state: &RepoState,
        keydir: &Path,
        roles: &[&str],
    ) -> Result<Signers, RepoError> {
        let root = &state.root.signed;
        let mut out = BTreeMap::new();
        for role in roles {
            let listed = root
                .roles
                .get(*role)
                .ok_or_else(|| RepoError::Internal(format!("root lists no {role} role")))?;
            let found = match super::delegate::find_role_keys(
                keydir,
                role,
                &listed.keyids,
                listed.threshold,
                &root.keys,
                " (as the current root lists it)",
            ) {
                Ok(found) => found,
                // One key file that root does not list: say so plainly (a key from another
                // repository, or one retired by a rotation).
                Err(RepoError::NotEnoughKeys { held: 0, .. })
                    if keydir.join(role).exists() && listed.threshold <= 1 =>
                {
                    let path = keyfile(keydir, role);
                    let key = keys::load(&path)?;
                    return Err(RepoError::WrongKey {
                        role: role.to_string(),
                        path,
                        keyid: key.public_key().compute_keyid(),
                    });
                }
                Err(e) => return Err(e),
            };
            if *role == "root" {
                warn_unencrypted_root(keydir)?;
            }
            out.insert(role.to_string(), found);
        }
        Ok(Signers { keys: out })
    }

    /// The keys of `role`, with the key ids root lists them under.
    pub(crate) fn get(&self, role: &str) -> Result<Vec<(&SigningKey, &str)>, RepoError> {
        self.keys
            .get(role)
            .map(|v| v.iter().map(|(k, id)| (k, id.as_str())).collect())
            .ok_or_else(|| RepoError::Internal(format!("no {role} key loaded")))
    }

    pub(crate) fn has(&self, role: &str) -> bool {
        self.keys.contains_key(role)
    }
}

/// Root keys belong offline and encrypted: say so once when an unencrypted one is used.
pub(crate) fn warn_unencrypted_root(keydir: &Path) -> Result<(), RepoError> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let path = keyfile(keydir, "root");
    if path.exists() && !keys::is_encrypted(&path)? && !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "trustfs: warning: the root key {} is not encrypted; encrypt it (trustfs key encrypt) and keep it offline",
            display_name(&path)
        );
    }
    Ok(())
}

/// The current, verified state of a repository.
pub(crate) struct RepoState {
    pub(crate) metadata_dir: PathBuf,
    pub(crate) root: Metadata<Root>,
    pub(crate) consistent: bool,
    pub(crate) timestamp: Metadata<Timestamp>,
    pub(crate) timestamp_path: PathBuf,
    pub(crate) snapshot: Metadata<Snapshot>,
    pub(crate) snapshot_path: PathBuf,
    pub(crate) targets: Metadata<Targets>,
    pub(crate) targets_path: PathBuf,
}

impl RepoState {
    /// Load the newest `N.root.json`, `timestamp.json`, and the snapshot and targets they name;
    /// check each against root's keys and thresholds and against the length, hashes and version
    /// the referring file lists.
    pub(crate) fn load(repo: &Path) -> Result<RepoState, RepoError> {
        let mdir = metadata_dir(repo);
        let (n, root_path) =
            latest_root(&mdir)?.ok_or_else(|| RepoError::NotARepository { path: mdir.clone() })?;
        let root_bytes = read(&root_path)?;
        let root: Metadata<Root> = parse(&root_path, &root_bytes)?;
        if root.version() != n {
            return Err(RepoError::Malformed {
                file: root_path,
                reason: format!(
                    "file name says version {n}, content says {}",
                    root.version()
                ),
            });
        }
        check_signed(&root_path, &root, &root.signed, "root")?;
        let consistent = root.signed.consistent_snapshot == Some(true);

        let timestamp_path = mdir.join("timestamp.json");
        let ts_bytes = read(&timestamp_path)?;
        let timestamp: Metadata<Timestamp> = parse(&timestamp_path, &ts_bytes)?;
        check_signed(&timestamp_path, &timestamp, &root.signed, "timestamp")?;

        let snap_meta =
            timestamp
                .signed
                .meta
                .get("snapshot.json")
                .ok_or_else(|| RepoError::Malformed {
                    file: timestamp_path.clone(),
                    reason: "meta lists no snapshot.json".into(),
                })?;
        let snapshot_path = mdir.join(meta_name(consistent, "snapshot", snap_meta.version));
        let snapshot: Metadata<Snapshot> =
            read_referenced(&snapshot_path, snap_meta, &timestamp_path)?;
        check_signed(&snapshot_path, &snapshot, &root.signed, "snapshot")?;

        let targets_meta =
            snapshot
                .signed
                .meta
                .get("targets.json")
                .ok_or_else(|| RepoError::Malformed {
                    file: snapshot_path.clone(),
                    reason: "meta lists no targets.json".into(),
                })?;
        let targets_path = mdir.join(meta_name(consistent, "targets", targets_meta.version));
        let targets: Metadata<Targets> =
            read_referenced(&targets_path, targets_meta, &snapshot_path)?;
        check_signed(&targets_path, &targets, &root.signed, "targets")?;

        Ok(RepoState {
            metadata_dir: mdir,
            root,
            consistent,
            timestamp,
            timestamp_path,
            snapshot,
            snapshot_path,
            targets,
            targets_path,
        })
    }

    pub(crate) fn meta_name(&self, role: &str, version: u64) -> String {
        meta_name(self.consistent, role, version)
    }
}

fn meta_name(consistent: bool, role: &str, version: u64) -> String {
    if consistent {
        format!("{version}.{role}.json")
    } else {
        format!("{role}.json")
    }
}

fn read(path: &Path) -> Result<Vec<u8>, RepoError> {
    fs::read(path).map_err(|e| RepoError::io("read", path, e))
}

fn parse<T: Signed>(path: &Path, bytes: &[u8]) -> Result<Metadata<T>, RepoError> {
    Metadata::<T>::from_slice(&display_name(path).to_string(), bytes).map_err(|e| match e {
        SchemaError::Malformed { rule, .. } => RepoError::Malformed {
            file: path.to_owned(),
            reason: rule,
        },
        other => RepoError::Untrusted {
            file: path.to_owned(),
            source: other,
        },
    })
}

/// Read a file another file's `meta` names and check its length, hashes and version.
pub(crate) fn read_referenced<T: Signed>(
    path: &Path,
    expected: &MetaFile,
    referrer: &Path,
) -> Result<Metadata<T>, RepoError> {
    let bytes = read(path)?;
    let mismatch = |what: String| RepoError::Malformed {
        file: path.to_owned(),
        reason: format!(
            "{what} does not match what {} lists",
            display_name(referrer)
        ),
    };
    if let Some(len) = expected.length {
        if bytes.len() as u64 != len {
            return Err(mismatch(format!("length {}", bytes.len())));
        }
    }
    for (alg, digest) in expected.hashes.iter().flatten() {
        let actual = match alg.as_str() {
            "sha256" => hex::encode(Sha256::digest(&bytes)),
            "sha512" => hex::encode(Sha512::digest(&bytes)),
            _ => continue,
        };
        if !actual.eq_ignore_ascii_case(digest) {
            return Err(mismatch(format!("{alg} {actual}")));
        }
    }
    let md: Metadata<T> = parse(path, &bytes)?;
    if md.version() != expected.version {
        return Err(mismatch(format!("version {}", md.version())));
    }
    Ok(md)
}

fn check_signed<T: Signed>(
    path: &Path,
    md: &Metadata<T>,
    root: &Root,
    role: &str,
) -> Result<(), RepoError> {
    let role_keys = root
        .roles
        .get(role)
        .ok_or_else(|| RepoError::Internal(format!("root lists no {role} role")))?;
    verify_threshold(role, md, &role_keys.keyids, role_keys.threshold, &root.keys).map_err(
        |source| RepoError::Untrusted {
            file: path.to_owned(),
            source,
        },
    )
}

/// The highest `N.root.json` in `mdir`, if any.
fn latest_root(mdir: &Path) -> Result<Option<(u64, PathBuf)>, RepoError> {
    let entries = match fs::read_dir(mdir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RepoError::io("list", mdir, e)),
    };
    let mut best: Option<u64> = None;
    for entry in entries {
        let entry = entry.map_err(|e| RepoError::io("list", mdir, e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_suffix(".root.json"))
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        best = best.max(Some(n));
    }
    Ok(best.map(|n| (n, mdir.join(format!("{n}.root.json")))))
}

pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<(), RepoError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| RepoError::io("create directory", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_parse_role_specs() {
        let e = Expiries::from_specs(&["timestamp=2h", "root=2y"]).unwrap();
        assert_eq!(e.timestamp, Duration::from_secs(7200));
        assert_eq!(e.root, Duration::from_secs(2 * 365 * 86400));
        assert_eq!(e.targets, Expiries::default().targets);
        for bad in ["timestamp", "mirror=1d", "timestamp=0s", "timestamp=1x"] {
            assert!(
                matches!(
                    Expiries::from_specs(&[bad]),
                    Err(RepoError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn expiries_for_a_delegated_role() {
        let e = Expiries::from_specs_for_role(&["team=2d", "timestamp=2h"], "team").unwrap();
        assert_eq!(e.delegated(), Duration::from_secs(2 * 86400));
        assert_eq!(e.timestamp, Duration::from_secs(7200));
        let e = Expiries::from_specs_for_role(&["3d"], "team").unwrap();
        assert_eq!(e.delegated(), Duration::from_secs(3 * 86400));
        let e = Expiries::from_specs_for_role(&["targets=5d"], "team").unwrap();
        assert_eq!(
            e.delegated(),
            Duration::from_secs(5 * 86400),
            "default: as targets"
        );
        for bad in ["other=1d", "0s", "team=1x"] {
            assert!(
                Expiries::from_specs_for_role(&[bad], "team").is_err(),
                "{bad}"
            );
        }
        // Without a role, a bare duration is still an error.
        assert!(Expiries::from_specs(&["3d"]).is_err());
    }

    #[test]
    fn meta_names_follow_consistent_snapshot() {
        assert_eq!(meta_name(true, "snapshot", 3), "3.snapshot.json");
        assert_eq!(meta_name(false, "snapshot", 3), "snapshot.json");
    }

    /// A targets file as python-tuf's JSONSerializer writes it (indent 1, sorted keys, non-ASCII
    /// escaped as `\uXXXX`), with fields trustfs does not know at every level.
    const PYTHON_TUF_TARGETS: &str = r#"{
 "signatures": [
  {
   "keyid": "aa",
   "sig": "00"
  }
 ],
 "signed": {
  "_type": "targets",
  "delegations": {
   "keys": {},
   "roles": [
    {
     "keyids": [],
     "name": "team",
     "paths": [
      "team/*"
     ],
     "terminating": false,
     "threshold": 1,
     "x-role": 1
    }
   ],
   "x-delegations": "d"
  },
  "expires": "2030-01-01T00:00:00Z",
  "spec_version": "1.0.31",
  "targets": {
   "caf\u00e9/a\"b.txt": {
    "custom": {
     "pem": "-----BEGIN-----\nAB\\C\n-----END-----\n"
    },
    "hashes": {
     "sha256": "ab"
    },
    "length": 3,
    "x-target": [
     true,
     null
    ]
   }
  },
  "version": 7,
  "x-unrecognized": {
   "nested": {
    "z": 1,
    "a": -2
   }
  }
 }
}"#;

    /// What securesystemslib's `encode_canonical` yields for the `signed` object above.
    const PYTHON_TUF_CANONICAL: &str = "{\"_type\":\"targets\",\"delegations\":{\"keys\":{},\"roles\":[{\"keyids\":[],\"name\":\"team\",\"paths\":[\"team/*\"],\"terminating\":false,\"threshold\":1,\"x-role\":1}],\"x-delegations\":\"d\"},\"expires\":\"2030-01-01T00:00:00Z\",\"spec_version\":\"1.0.31\",\"targets\":{\"caf\u{e9}/a\\\"b.txt\":{\"custom\":{\"pem\":\"-----BEGIN-----\nAB\\\\C\n-----END-----\n\"},\"hashes\":{\"sha256\":\"ab\"},\"length\":3,\"x-target\":[true,null]}},\"version\":7,\"x-unrecognized\":{\"nested\":{\"a\":-2,\"z\":1}}}";

    #[test]
    fn python_tuf_file_round_trips_through_re_signing() {
        let md = Metadata::<Targets>::from_slice("t", PYTHON_TUF_TARGETS.as_bytes()).unwrap();
        let canonical = md.canonical_signed().unwrap();
        assert_eq!(
            String::from_utf8(canonical.clone()).unwrap(),
            PYTHON_TUF_CANONICAL
        );

        let key = SigningKey::generate();
        let keyid = key.public_key().compute_keyid();
        let (signed, bytes) = sign::<Targets>(md.signed_value.clone(), &key, &keyid).unwrap();
        // Same signed bytes: every unknown field survived, and the signature covers them.
        assert_eq!(signed.canonical_signed().unwrap(), canonical);
        let reread = Metadata::<Targets>::from_slice("t", &bytes).unwrap();
        assert_eq!(reread.canonical_signed().unwrap(), canonical);
        let sig = hex::decode(&reread.signatures[0].sig).unwrap();
        assert_eq!(key.public_key().verify(&canonical, &sig), Ok(true));

        // An edit (what `add` and `refresh` do) changes only what it sets.
        let mut v = md.signed_value.clone();
        set_field(&mut v, "version", json!(8)).unwrap();
        let (edited, _) = sign::<Targets>(v, &key, &keyid).unwrap();
        let expected = PYTHON_TUF_CANONICAL.replace("\"version\":7", "\"version\":8");
        assert_eq!(
            String::from_utf8(edited.canonical_signed().unwrap()).unwrap(),
            expected
        );
    }
}
