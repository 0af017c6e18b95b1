//! Hash bins on the publisher side: `repo add` shards the top-level targets role's own files into
//! succinct hash bins (TAP 15, python-tuf's `SuccinctRoles`) once they pass a threshold, so no
//! metadata file grows past what clients download (python-tuf and trustfs: 5 MB for a targets
//! role snapshot lists by version only).
//!
//! The layout: `targets` lists no files itself and delegates every path to `2^B` bins named
//! `bins-{i:0Wx}` (`delegations.succinct_roles`), all signed by `KEYDIR/bins` (generated when the
//! repository is first sharded), all terminating; snapshot lists every bin. `B` is chosen so a bin
//! holds about [`TARGETS_PER_BIN`] targets, and kept until bins hold twice that on average (so a
//! repository hovering around a boundary is not re-sharded on every add); fewer targets never
//! shrink the bin count by themselves, `--bins N` sets it. A bin is
//! re-signed only when its target list changes or less than half its validity is left; targets
//! itself only when the delegation changes (sharding, a new bin count) or half its validity is
//! gone, so after sharding `KEYDIR/targets` can stay offline between those moments.
//!
//! A TUF delegations object holds either named roles or succinct bins, not both: a targets role
//! that already delegates paths to named roles is never sharded (add warns past the threshold),
//! and `repo delegate` refuses to add named roles to a sharded targets. Clients refuse a snapshot
//! that drops a role they saw, so bins are never removed from snapshot: a smaller bin count, or
//! going back to one file with `--bins off`, leaves the old bins listed, unused. Automatic
//! sharding never goes back by itself.
//!
//! `layout.rs` decides how many bins ([`Sharding`]); `loaded.rs` loads and checks the bins the
//! repository holds; `write.rs` writes the top-level list, in one file or into bins, and signs
//! bins anew.

mod layout;
mod loaded;
mod write;

pub use layout::{
    bit_length_for, Sharding, MAX_BIT_LENGTH, NAME_PREFIX, SHARD_THRESHOLD, TARGETS_PER_BIN,
};
pub use write::BinsReport;

pub(crate) use layout::keeps_layout;
pub(crate) use loaded::{is_bin_of, Current, LoadedBins};
pub(crate) use write::{expiring, publish_top_level, resign_all, signing_keys, TopLevel};
