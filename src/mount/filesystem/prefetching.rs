//! A remote mount's prefetching: the first open that misses the cache in a directory queues the
//! directory's other small files (the queue and its rules: `mount/prefetch.rs`).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::generation::MetadataInForce;
use super::namespace::split_parent;
use super::{Content, MountState};
use crate::index::Child;
use crate::mount::download::{fetch_into_cache, FetchFailure};
use crate::mount::prefetch::{Item as PrefetchItem, Outcome as PrefetchOutcome};
use crate::mount::store::object_name;

/// Remote mount: prefetching a directory's small files (the queue and its rules: `mount/prefetch.rs`).
impl MountState {
    /// The first open in `path`'s directory (this metadata generation) missed the cache: queue
    /// the directory's other files, those after `path` in name order first.
    pub(super) fn prefetch_siblings(self: &Arc<MountState>, gen: &MetadataInForce, path: &OsStr) {
        if !matches!(self.content, Content::Remote(_)) {
            return;
        }
        let (dir, name) = split_parent(path);
        let (Some(d), Some(name)) = (dir.to_str(), name.to_str()) else {
            return;
        };
        if !self.prefetch.first_visit(gen.number, dir) {
            return;
        }
        // The directory's targets by name, with their positions: no search per file. Those after
        // the opened one first (a reader going through the directory in order).
        let children = gen.index.children(d);
        let at = children.partition_point(|c| c.name() <= name);
        let (before, after) = children.split_at(at);
        let items = after.iter().chain(before).filter_map(|c| match c {
            Child::File(n, pos) if *n != name => Some(PrefetchItem {
                path: gen.index.path_at(*pos).to_owned(),
                info: gen.index.info_at(*pos),
            }),
            _ => None,
        });
        let core = Arc::downgrade(self);
        self.prefetch
            .request(items, move |item| Some(core.upgrade()?.prefetch_one(item)));
    }

    /// Fetch one prefetch item into the cache, unless it is there, an open is fetching it, or
    /// the metadata in force no longer lists exactly this content. Never an open's answer: no
    /// denial or fault is counted, and the gate does not remember a failure.
    fn prefetch_one(&self, item: &PrefetchItem) -> PrefetchOutcome {
        let Content::Remote(mirrors) = &self.content else {
            return PrefetchOutcome::Skipped;
        };
        let name = object_name(&item.info);
        let gen = self.generation();
        if gen.target(OsStr::new(&item.path)).map(|t| object_name(&t)) != Some(name.clone()) {
            return PrefetchOutcome::Skipped;
        }
        // Only a free gate: never wait behind an open (or another prefetch).
        let Ok(_pass) = self.gates.enter(&name, Instant::now(), Duration::ZERO) else {
            return PrefetchOutcome::Skipped;
        };
        if self.store.acquire(&name, item.info.length) {
            self.store.release(&name);
            return PrefetchOutcome::Skipped;
        }
        match fetch_into_cache(mirrors, &self.store, &item.path, &item.info, &name, true) {
            Ok(()) => {
                self.store.release(&name);
                PrefetchOutcome::Fetched
            }
            Err(FetchFailure::Refused(why)) => PrefetchOutcome::Refused(why),
            Err(FetchFailure::Unavailable(why)) => PrefetchOutcome::Fault(why),
            Err(FetchFailure::Descriptors(why)) => {
                PrefetchOutcome::Fault(format!("out of file descriptors: {why}"))
            }
            Err(FetchFailure::Cache(e)) => {
                PrefetchOutcome::Fault(format!("cannot write the cache: {e}"))
            }
        }
    }
}
