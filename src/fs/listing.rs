//! Directory listings, shared: every handle open on a directory whose content has not changed
//! holds the same listing, so a thousand handles on a directory of 100,000 entries cost one
//! listing, not a thousand copies.
//!
//! A listing is keyed by the directory's inode, the metadata generation it was made under, and
//! (local mount) the backing directory's `fstat` identity, which changes with every entry added,
//! removed or renamed (mtime/ctime). A handle keeps the listing it opened with (a snapshot, as
//! POSIX allows); the map keeps only weak references, so a listing lives as long as a handle
//! uses it.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{Arc, Mutex, Weak};

use fuser::FileType;

use super::lock;
use crate::source::FileKey;

/// One listed directory entry: (inode, type, name).
pub(super) type DirEntry = (u64, FileType, OsString);

/// A listed directory, `.` and `..` first.
#[derive(Debug)]
pub(super) struct Listing {
    pub(super) entries: Vec<DirEntry>,
}

/// What a listing was made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ListingKey {
    pub(super) dir: u64,
    pub(super) generation: u64,
    pub(super) backing: Option<FileKey>,
}

#[derive(Debug, Default)]
pub(super) struct Listings {
    map: Mutex<HashMap<ListingKey, Weak<Listing>>>,
    /// Prune dead entries when the map grows past this.
    prune_at: Mutex<usize>,
}

impl Listings {
    /// The current listing for `key`, made with `build` if no handle holds one.
    pub(super) fn get_or_build<E>(
        &self,
        key: ListingKey,
        build: impl FnOnce() -> Result<Vec<DirEntry>, E>,
    ) -> Result<Arc<Listing>, E> {
        if let Some(l) = lock(&self.map).get(&key).and_then(Weak::upgrade) {
            return Ok(l);
        }
        // Built outside the lock: a large directory must not stall every other opendir. Two
        // racing builds of the same key make two equal listings; the later one is kept.
        let listing = Arc::new(Listing { entries: build()? });
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
}
