//! A metadata switch: the new generation swapped in one step, the inodes carried over or detached,
//! superseded objects dropped, and the kernel's caches of what changed invalidated (twice: the
//! second round once no request works on the old generation).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::INodeNo;

use super::generation::MetadataInForce;
use super::namespace::split_parent;
use super::MountState;
use crate::index::TargetIndex;
use crate::log_event;
use crate::mount::store::object_name;
use crate::mount::{lock, SwitchReport};
use crate::trust::TrustSummary;

/// How long a switch waits for requests still working on the old generation before it repeats
/// its invalidations (an open waiting for a download can hold it longer; it gets ESTALE later).
const SWITCH_DRAIN: Duration = Duration::from_secs(2);

/// The invalidations a switch sends once more when no request works on the old generation any
/// more ([`MountState::second_round`]).
pub(in crate::mount) struct SecondRound {
    old: Arc<MetadataInForce>,
    entries: Vec<(u64, OsString)>,
    inodes: Vec<u64>,
}

impl MountState {
    /// Switch in new metadata: one atomic swap, then kernel cache invalidations for every target
    /// added, removed or changed and every directory that disappeared.
    pub(in crate::mount) fn switch(
        &self,
        index: TargetIndex,
        summary: TrustSummary,
    ) -> (SwitchReport, Option<SecondRound>) {
        let _one_at_a_time = lock(&self.switching);
        let old = self.generation();
        let new = Arc::new(MetadataInForce::new(
            old.number + 1,
            index,
            Some(summary),
            None,
        ));
        let mut report = SwitchReport::default();
        // Superseded contents: their object names and lengths (see `still_unlisted`).
        let mut superseded = Vec::new();
        let mut superseded_lengths = HashSet::new();
        // Both indexes are sorted: one merge walk finds what was added, removed and changed.
        let (o, n) = (&old.index, &new.index);
        let (mut i, mut j) = (0, 0);
        while i < o.len() || j < n.len() {
            let order = match (i < o.len(), j < n.len()) {
                (true, true) => o.path_at(i).cmp(n.path_at(j)),
                (true, false) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    let info = o.info_at(i);
                    report.removed.push(o.path_at(i).to_owned());
                    superseded.push(object_name(&info));
                    superseded_lengths.insert(info.length);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    report.added.push(n.path_at(j).to_owned());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let info = o.info_at(i);
                    if info != n.info_at(j) {
                        report.changed.push(o.path_at(i).to_owned());
                        superseded.push(object_name(&info));
                        superseded_lengths.insert(info.length);
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        // Directories that held only removed targets, and paths that became directories (a
        // target `x` the kernel holds as a file when `x/y` is added).
        let gone_dirs = ancestors_outside(&report.removed, &new.index);
        let new_dirs = ancestors_outside(&report.added, &old.index);
        // The swap, and the inodes carried over or detached with it, under both locks: no
        // lookup sees the new generation before its inodes point into it.
        let detached = {
            let mut current = self.generation.write().unwrap_or_else(|e| e.into_inner());
            let detached = self
                .inodes
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .switch(new.index.clone());
            *current = new.clone();
            detached
        };
        // Verified copies of content the metadata no longer lists are dropped now (unless a
        // handle still reads them), not when the byte bound is reached: under steady republishing
        // the store and the records stay the size of what is current.
        let superseded = still_unlisted(superseded, &superseded_lengths, &new.index);
        if self.store.drop_unused(&superseded) > 0 {
            lock(&self.records).prune(&|o| self.keeps(o));
        }

        // Collect inode numbers first, then notify without holding any lock: an invalidation
        // waits for the kernel's directory lock, which a request in that directory may hold
        // while it waits for a worker.
        let mut entries: Vec<(u64, OsString)> = Vec::new();
        let mut inodes_to_drop: Vec<u64> = Vec::new();
        {
            let inodes = self.inodes.read().unwrap_or_else(|e| e.into_inner());
            let mut entry = |path: &OsStr| {
                let (parent, name) = split_parent(path);
                if let Some(parent_ino) = inodes.find_path(parent) {
                    entries.push((parent_ino, name.to_owned()));
                }
            };
            for (ino, path) in &detached {
                entry(path);
                inodes_to_drop.push(*ino);
            }
            // Removed and changed paths the kernel held no inode for at the swap: a lookup that
            // read the old generation may still be installing one (see the second round below).
            for path in report.removed.iter().chain(&report.changed) {
                entry(OsStr::new(path));
            }
            // Cached as an unregistered file (local mount) or a directory until now.
            let paths = report.added.iter().map(String::as_str);
            for path in paths.chain(gone_dirs.iter().copied()) {
                let path = OsStr::new(path);
                entry(path);
                if let Some(ino) = inodes.find_path(path) {
                    inodes_to_drop.push(ino);
                }
            }
            // Cached as a file (a target, unchanged, or an unregistered file) until now.
            for dir in new_dirs {
                let path = OsStr::new(dir);
                entry(path);
                let pos = new.index.position(dir);
                let held = pos.and_then(|p| inodes.find_target(&new.index, p));
                inodes_to_drop.extend(held.into_iter().chain(inodes.find_path(path)));
            }
        }
        entries.sort();
        entries.dedup();
        inodes_to_drop.sort_unstable();
        inodes_to_drop.dedup();
        report.invalidations += self.invalidate(&entries, &inodes_to_drop, true);
        self.counters
            .metadata_switches
            .fetch_add(1, Ordering::Relaxed);
        let again = (!entries.is_empty() || !inodes_to_drop.is_empty()).then_some(SecondRound {
            old,
            entries,
            inodes: inodes_to_drop,
        });
        (report, again)
    }

    /// The end of a switch, off the caller's thread (it can take up to [`SWITCH_DRAIN`]). A
    /// request that read the old generation just before the swap (a lookup) may answer the
    /// kernel after the first invalidations and so re-install an old entry; one that answered
    /// just before may have its entry installed by the kernel only now. Requests hold the
    /// generation only while they run: wait (bounded) until none holds the old one, let the
    /// kernel finish installing what they answered, then invalidate again. (A lookup that
    /// notices the switch answers with no entry TTL, and an open that still reaches an old inode
    /// gets ESTALE.)
    pub(in crate::mount) fn second_round(&self, round: SecondRound) {
        let deadline = Instant::now() + SWITCH_DRAIN;
        while Arc::strong_count(&round.old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20));
        self.invalidate(&round.entries, &round.inodes, false);
    }

    /// Send the kernel invalidations for `entries` (parent, name) and `inodes`; returns how many
    /// were accepted. Errors are logged when `log` (the second round repeats the first).
    fn invalidate(&self, entries: &[(u64, OsString)], inodes: &[u64], log: bool) -> usize {
        let Some(n) = self.notifier.get() else {
            return 0;
        };
        let mut sent = 0;
        // ENOENT: the kernel no longer holds that entry or inode (it forgot it meanwhile), so
        // there is nothing to invalidate.
        let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOENT);
        for (parent, name) in entries {
            match n.inval_entry(INodeNo(*parent), name) {
                Ok(()) => sent += 1,
                Err(e) if log && !gone(&e) => {
                    log_event!("cannot invalidate the kernel entry {name:?}: {e}")
                }
                Err(_) => {}
            }
        }
        for ino in inodes {
            match n.inval_inode(INodeNo(*ino), 0, -1) {
                Ok(()) => sent += 1,
                Err(e) if log && !gone(&e) => {
                    log_event!("cannot invalidate the kernel inode {ino}: {e}")
                }
                Err(_) => {}
            }
        }
        sent
    }
}

/// The directories above `paths` that are not directories of `index`.
fn ancestors_outside<'p>(paths: &'p [String], index: &TargetIndex) -> HashSet<&'p str> {
    let mut out = HashSet::new();
    for path in paths {
        for (at, _) in path.match_indices('/') {
            let dir = &path[..at];
            if !index.is_dir(dir) {
                out.insert(dir);
            }
        }
    }
    out
}

/// The objects of `superseded` that no target of `index` maps to: a copy another path still
/// lists with the same content (length and hashes) stays. Only targets whose length is one of
/// the superseded objects' are hashed into object names.
fn still_unlisted(
    superseded: Vec<String>,
    lengths: &HashSet<u64>,
    index: &TargetIndex,
) -> Vec<String> {
    if superseded.is_empty() {
        return superseded;
    }
    let mut gone: HashSet<String> = superseded.into_iter().collect();
    for (_, info) in index.iter() {
        if gone.is_empty() {
            break;
        }
        if lengths.contains(&info.length) {
            gone.remove(&object_name(&info));
        }
    }
    gone.into_iter().collect()
}
