//! Directory listings, shared: every handle open on a directory whose content has not changed
//! holds the same listing, so a thousand handles on a directory of 100,000 entries cost one
//! listing, not a thousand copies.
//!
//! A listing is keyed by the directory's inode, the metadata generation it was made under, and
//! (local mount) the backing directory's `fstat` identity, which changes with every entry added,
//! removed or renamed (mtime/ctime). A handle keeps the listing it opened with (a snapshot, as
//! POSIX allows); the map keeps only weak references, so a listing lives as long as a handle
//! uses it.
//!
//! A directory that changes while handles stay open gets a new listing per change, so the entries
//! of all live listings together are bounded by [`MAX_ENTRIES`]: an `opendir` that would go beyond
//! is refused (`ENOMEM`, a fault) until handles are closed. One listing is always allowed, however
//! large the directory.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use fuser::FileType;

use super::lock;
use crate::source::FileKey;

/// One listed directory entry: (inode, type, name).
pub(super) type DirEntry = (u64, FileType, OsString);

/// Entries of all live listings together, at most (about 250 MB of names at 200 bytes each).
pub(super) const MAX_ENTRIES: usize = 1_000_000;

/// A listed directory, `.` and `..` first.
#[derive(Debug)]
pub(super) struct Listing {
    pub(super) entries: Vec<DirEntry>,
    /// The live-entry count this listing is part of (given back on drop).
    live: Arc<AtomicUsize>,
}

impl Drop for Listing {
    fn drop(&mut self) {
        self.live.fetch_sub(self.entries.len(), Ordering::AcqRel);
    }
}

/// An open directory handle.
#[derive(Clone, Debug)]
pub(super) enum DirHandle {
    /// Reads are answered from this listing, made under this key.
    Listed(ListingKey, Arc<Listing>),
    /// Opened on the kernel's cached listing (made under this key); a listing is made only if
    /// reads reach the daemon after all.
    Unlisted(ListingKey),
}

/// Why no listing was made.
#[derive(Debug)]
pub(super) enum ListingError<E> {
    /// Building it failed.
    Build(E),
    /// Live listings already hold this many entries; close directory handles first.
    OverBudget(usize),
}

/// What a listing was made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ListingKey {
    pub(super) dir: u64,
    pub(super) generation: u64,
    pub(super) backing: Option<FileKey>,
}

#[derive(Debug)]
pub(super) struct Listings {
    map: Mutex<HashMap<ListingKey, Weak<Listing>>>,
    /// Prune dead entries when the map grows past this.
    prune_at: Mutex<usize>,
    live: Arc<AtomicUsize>,
    max_entries: usize,
}

impl Default for Listings {
    fn default() -> Self {
        Listings::with_budget(MAX_ENTRIES)
    }
}

impl Listings {
    pub(super) fn with_budget(max_entries: usize) -> Listings {
        Listings {
            map: Mutex::default(),
            prune_at: Mutex::default(),
            live: Arc::default(),
            max_entries,
        }
    }

    /// The current listing for `key`, made with `build` if no handle holds one.
    pub(super) fn get_or_build<E>(
        &self,
        key: ListingKey,
        build: impl FnOnce() -> Result<Vec<DirEntry>, E>,
    ) -> Result<Arc<Listing>, ListingError<E>> {
        if let Some(l) = lock(&self.map).get(&key).and_then(Weak::upgrade) {
            return Ok(l);
        }
        let live = self.live.load(Ordering::Acquire);
        if live > 0 && live >= self.max_entries {
            return Err(ListingError::OverBudget(live));
        }
        // Built outside the lock: a large directory must not stall every other opendir. Two
        // racing builds of the same key make two equal listings; the later one is kept.
        let entries = build().map_err(ListingError::Build)?;
        let n = entries.len();
        let live = self.live.fetch_add(n, Ordering::AcqRel);
        let listing = Arc::new(Listing {
            entries,
            live: self.live.clone(),
        });
        if live > 0 && live + n > self.max_entries {
            // Dropping it gives the count back.
            return Err(ListingError::OverBudget(live));
        }
        let mut map = lock(&self.map);
        map.insert(key, Arc::downgrade(&listing));
        let mut prune_at = lock(&self.prune_at);
        if map.len() > *prune_at {
            map.retain(|_, w| w.strong_count() > 0);
            *prune_at = (map.len() * 2).max(64);
        }
        Ok(listing)
    }

    /// (Listings alive, entries in them.)
    pub(super) fn sizes(&self) -> (usize, usize) {
        let map = lock(&self.map);
        map.values()
            .filter_map(Weak::upgrade)
            .fold((0, 0), |(n, e), l| (n + 1, e + l.entries.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_on_an_unchanged_directory_share_one_listing() {
        let listings = Listings::default();
        let key = ListingKey {
            dir: 5,
            generation: 1,
            backing: None,
        };
        let mut builds = 0;
        let mut held = Vec::new();
        for _ in 0..1000 {
            let l = listings
                .get_or_build::<()>(key.clone(), || {
                    builds += 1;
                    Ok((0..10_000)
                        .map(|i| (i, FileType::RegularFile, OsString::from(i.to_string())))
                        .collect())
                })
                .unwrap();
            held.push(l);
        }
        assert_eq!(builds, 1);
        assert_eq!(listings.sizes(), (1, 10_000));
        // Another generation is another listing; dropped listings are gone.
        let other = ListingKey {
            generation: 2,
            ..key
        };
        let l2 = listings
            .get_or_build::<()>(other, || Ok(Vec::new()))
            .unwrap();
        assert_eq!(listings.sizes().0, 2);
        drop(held);
        drop(l2);
        assert_eq!(listings.sizes(), (0, 0));
    }

    #[test]
    fn a_directory_changing_under_open_handles_cannot_grow_listings_without_bound() {
        let listings = Listings::with_budget(25_000);
        let big = || -> Result<Vec<DirEntry>, ()> {
            Ok((0..10_000)
                .map(|i| (i, FileType::RegularFile, OsString::from(i.to_string())))
                .collect())
        };
        let key = |n| {
            ListingKey {
                dir: 5,
                generation: 1,
                backing: None,
            }
            .with_change(n)
        };
        let a = listings.get_or_build(key(1), big).unwrap();
        let b = listings.get_or_build(key(2), big).unwrap();
        // A third version would hold 30,000 entries: refused while the others are open.
        assert!(matches!(
            listings.get_or_build(key(3), big),
            Err(ListingError::OverBudget(20_000))
        ));
        drop(a);
        let c = listings.get_or_build(key(3), big).unwrap();
        drop((b, c));
        assert_eq!(listings.live.load(Ordering::Acquire), 0);
        // One listing is always allowed, however large.
        let small = Listings::with_budget(10);
        assert!(small.get_or_build(key(1), big).is_ok());
    }

    impl ListingKey {
        /// The same directory after its `n`-th change.
        fn with_change(mut self, n: u64) -> ListingKey {
            self.generation = n;
            self
        }
    }
}
