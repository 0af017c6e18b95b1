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
//! `KEYDIR/bins` (see `bins/`). `rotate/` replaces the keys of any role and lets several
//! people sign a root (staged, signed, published); `housekeeping.rs` removes delegations and
//! prunes what no client can still need.
//!
//! The files, and which uses which: imports inside `repo` point one way, down this list (a file
//! uses only files below it).
//! - The commands: `add/` (`repo add`; `lazy.rs`: which hash bins a sharded add loads,
//!   `parallel.rs`: content published on all cores), `init.rs` (`repo init`), `refresh.rs`
//!   (`repo refresh`), `rotate/` (key rotation, staged roots), `housekeeping.rs` (`undelegate`,
//!   `prune`).
//! - `delegate.rs`: `repo delegate`.
//! - `bins/`: hash bins (`layout.rs`: how many; `loaded.rs`: loading and checking them; `write.rs`:
//!   the top-level list written in one file or into bins, bins re-signed).
//! - `roletree.rs`: the verified tree of delegated roles (`RoleTree`).
//! - `targetlist.rs`: a role's target list as `add` rewrites it.
//! - `addcache.rs`: what the last add published, by file identity.
//! - `content/`: a content directory walked (`walk.rs`), and its files copied into `REPO/targets`
//!   (`copy.rs`).
//! - `chain.rs`: writing targets-type roles, then snapshot, then timestamp.
//! - `signing.rs`: the keys in KEYDIR that sign a role, and signing a `signed` value.
//! - `state.rs`: the repository's verified current metadata, and its directories.
//! - `expiries.rs`, `keys.rs`, `atomic.rs` (atomic writes, the lock), `error.rs`.

mod add;
mod addcache;
mod atomic;
mod bins;
mod chain;
mod content;
mod delegate;
mod error;
mod expiries;
mod housekeeping;
mod init;
pub mod keys;
mod refresh;
mod roletree;
mod rotate;
mod signing;
mod state;
mod targetlist;

// The public API.
pub use add::{add, AddOptions, AddReport};
pub use bins::{
    bit_length_for, BinsReport, Sharding, MAX_BIT_LENGTH, NAME_PREFIX, SHARD_THRESHOLD,
    TARGETS_PER_BIN,
};
pub use chain::Versions;
pub use content::Skipped;
pub use delegate::{delegate, validate_role_name, DelegateOptions, DelegateReport, DelegatedPaths};
pub use error::{display_name, DisplayName, RepoError};
pub use expiries::Expiries;
pub use housekeeping::{prune, undelegate, PruneOptions, PruneReport, UndelegateOptions};
pub use init::{init, InitOptions, InitReport};
pub use refresh::{refresh, RefreshOptions, RefreshReport};
pub use rotate::{
    publish_staged, rotate, sign_staged, staged, staged_dir, status, RoleStatus, RotateOptions,
    RotateReport, StagedStatus,
};
pub use signing::TOP_LEVEL_ROLES;
pub use state::{metadata_dir, targets_dir};
