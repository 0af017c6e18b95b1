//! A lazy `add` of a sharded repository: whether the hash bins are as the last add left them
//! (the add cache's stamp), and then which bins must be loaded at all.

use std::fs;

use super::AddOptions;
use crate::repo::addcache::{self, AddCache};
use crate::repo::bins;
use crate::repo::content;
use crate::repo::state::RepoState;

/// The cache's [`addcache::BinsStamp`] if it says the bins are as the last `add` wrote them:
/// the snapshot is the one it wrote, every bin file is the file it left, no bin nears expiry,
/// targets lists nothing itself, and `--bins` (if given) asks for the current count.
pub(super) fn bins_unchanged_since_last_add(
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
pub(super) fn bin_files_digest(state: &RepoState) -> Option<[u8; 32]> {
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
pub(super) fn changed_bins(
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
