//! The publisher side: signing keys on disk, and creating, filling and refreshing a TUF 1.0
//! repository that python-tuf, go-tuf and trustfs clients read.
//!
//! A repository is a directory with `metadata/` (`N.root.json`, `N.targets.json`,
//! `N.snapshot.json`, `timestamp.json`: consistent snapshots) and `targets/` (content under
//! `dir/<sha256>.<basename>`, python-tuf's convention), servable over HTTP as it is. Every file is
//! replaced atomically and written in the order a concurrent client can rely on: content, targets,
//! snapshot, timestamp last. Commands on one repository are serialised by a lock file
//! (`REPO/.trustfs.lock`).
//!
//! Every role is signed with every key of it that the key directory holds (`KEYDIR/<role>`,
//! `KEYDIR/<role>@2`, ...: ed25519, ecdsa-p256 or rsa-pss, plain or passphrase-encrypted; see
//! `keys.rs`), and refused when those are fewer than the role's threshold. Past 2,000 targets,
//! `add` shards the top-level targets role's own files into succinct hash bins (TAP 15) signed by
//! `KEYDIR/bins` (see `bins.rs`). `rotate.rs` replaces the keys of any role and lets several
//! people sign a root (staged, signed, published); `housekeeping.rs` removes delegations and
//! prunes what no client can still need.

mod addcache;
mod atomic;
mod bins;
mod content;
mod delegate;
mod error;
mod housekeeping;
pub mod keys;
mod publish;
mod rotate;

// The public API.
pub use bins::{
    bit_length_for, BinsReport, Sharding, MAX_BIT_LENGTH, NAME_PREFIX, SHARD_THRESHOLD,
    TARGETS_PER_BIN,
};
pub use content::Skipped;
pub use delegate::{delegate, validate_role_name, DelegateOptions, DelegateReport, DelegatedPaths};
pub use error::{display_name, DisplayName, RepoError};
pub use housekeeping::{prune, undelegate, PruneOptions, PruneReport, UndelegateOptions};
pub use publish::{
    add, init, metadata_dir, refresh, targets_dir, AddOptions, AddReport, Expiries, InitOptions,
    InitReport, RefreshOptions, RefreshReport, Versions, TOP_LEVEL_ROLES,
};
pub use rotate::{
    publish_staged, rotate, sign_staged, staged, staged_dir, status, RoleStatus, RotateOptions,
    RotateReport, StagedStatus,
};
