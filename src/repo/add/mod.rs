//! `repo add`: make a role's target list equal to a content directory, publishing new and changed
//! files first, then signing that role (or, sharded, its hash bins), snapshot and timestamp.
//! `lazy.rs` decides which hash bins a sharded add must load; `parallel.rs` publishes the files
//! on all cores.

mod lazy;
mod parallel;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::schema::UtcTime;
use crate::trust::role_matches;

use super::addcache::{self, AddCache};
use super::atomic::{syncfs, RepoLock};
use super::bins::{self, BinsReport, Current, Sharding};
use super::chain::{bump, publish_chain, RoleWrite, Versions};
use super::content::{self, Known, Skipped};
use super::error::RepoError;
use super::expiries::Expiries;
use super::roletree::{describe_patterns, RoleTree};
use super::signing::{set_field, Signers};
use super::state::{create_dir, targets_dir, RepoState};
use super::targetlist::{
    hex_map, list_of, materialize, same_content, with_chunk_root, Listed, NewList,
};
use lazy::{bin_files_digest, bins_unchanged_since_last_add, changed_bins};
use parallel::{free_later, publish_all};

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
    // Everything below CONTENT_DIR is resolved beneath this one descriptor (see content/walk.rs).
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
