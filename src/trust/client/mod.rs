//! The client workflow of tuf-spec §5: the [`Client`], what it holds and the checks every step
//! shares.
//!
//! [`Client::new`] loads the trusted root (the operator's pin, or the newer root persisted by an
//! earlier run) and whatever trusted metadata the state directory holds; [`Client::refresh`] runs
//! §5.3–§5.6 (root rotation, timestamp, snapshot, top-level targets) against one fixed start time;
//! [`Client::find_target`] runs the delegation search of §5.6.7 for one path, loading delegated
//! roles lazily; [`Client::target_index`] resolves every target any reachable role lists.
//!
//! Rules enforced here, each with a named error kind: threshold signatures from distinct keys;
//! root N+1 signed by the old and the new root's threshold and numbered exactly N+1; versions that
//! never go back (timestamp, snapshot, each targets role listed in snapshot); snapshot and targets
//! versions, lengths and hashes exactly as the referring role names them; expiry of every role
//! against the start time; byte limits on every fetch; a cap on root rotations and on delegated
//! roles visited.
//!
//! Succinct hash bins (TAP 15, `delegations.succinct_roles`) are delegated roles like any other
//! here: fetched at the version snapshot names, checked against the length and hashes it lists,
//! signed by the threshold of the succinct keys, unexpired, persisted. The search goes to the one
//! bin a path hashes to, and bins are terminating; a bin that lists a path hashing to another bin
//! is reported (its key may only vouch for its own range) and that listing is never used.
//!
//! The files, in the order of the spec's steps (each adds `impl Client` methods for its step):
//! - `mod.rs` (this file): [`Limits`], [`FoundTarget`], the [`Client`] and its start
//!   ([`Client::new`]), its accessors, [`Client::refresh`] (which runs the steps in order) and the
//!   checks every step uses (top-level signatures, expiry, a metadata file against the `meta`
//!   entry that names it, persisting).
//! - `root.rs`: §5.3, the root chain: `N+1.root.json` while it exists, each signed by the old and
//!   the new keys; the same chain walked through the persisted history at start.
//! - `local.rs`: the rollback state: top-level metadata the state directory holds, read back at
//!   refresh (the versions a new one must not go below) and for an offline start
//!   ([`Client::load_trusted_state`]).
//! - `timestamp.rs`: §5.4, the timestamp role.
//! - `snapshot.rs`: §5.5, the snapshot role.
//! - `targets.rs`: §5.6 and §5.6.7.2, loading one targets role (top-level or delegated, hash bins
//!   in parallel) and [`target_info`].
//! - `delegations.rs`: §5.6.7, the search for one path ([`Client::find_target`]) and the index of
//!   every target ([`Client::target_index`]).
//! - `paths.rs`: which paths a delegation covers ([`role_matches`]: globs and hash prefixes).
//!
//! `mod.rs` uses every step; `delegations.rs` uses `targets.rs` and `paths.rs`; `local.rs` uses
//! `targets.rs` (the top-level targets role); `root.rs`, `timestamp.rs`, `snapshot.rs` and
//! `targets.rs` use only `mod.rs`.

mod delegations;
mod local;
mod paths;
mod root;
mod snapshot;
mod targets;
mod timestamp;

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

use super::error::{TrustError, TrustErrorKind};
use super::fetch::Fetcher;
use super::state::StateDir;
use crate::index::TargetInfo;
use crate::schema::{
    verify_threshold, MetaFile, Metadata, Root, Signed, Snapshot, TargetFile, Targets, Timestamp,
    UtcTime,
};

pub use paths::role_matches;
pub use targets::target_info;

use root::{chain_from, load_self_signed_root};

/// Bounds on what a repository can make the client do.
#[derive(Clone, Debug)]
pub struct Limits {
    pub root_max_bytes: u64,
    pub timestamp_max_bytes: u64,
    pub snapshot_max_bytes: u64,
    pub targets_max_bytes: u64,
    /// Most `N.root.json` files fetched in one refresh.
    pub max_root_rotations: u64,
    /// Most delegated roles visited in one target search.
    pub max_delegations: usize,
    /// Most named delegated roles (and the top-level targets) loaded when indexing every target.
    pub max_roles: usize,
    /// Most succinct hash bins loaded when indexing every target, over all succinct delegations
    /// (a full index loads every bin; snapshot lists each, which bounds them near 2^15 anyway).
    pub max_bins: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // The byte limits are python-tuf's defaults, so repositories that work there work here.
        Limits {
            root_max_bytes: 512_000,
            timestamp_max_bytes: 16_384,
            snapshot_max_bytes: 2_000_000,
            targets_max_bytes: 5_000_000,
            max_root_rotations: 256,
            max_delegations: 32,
            max_roles: 10_000,
            max_bins: 1 << 15,
        }
    }
}

/// A target found by the delegation search.
#[derive(Clone, Debug)]
pub struct FoundTarget {
    pub info: TargetInfo,
    pub file: TargetFile,
    /// The role that listed it.
    pub role: String,
}

/// The TUF client: trusted metadata plus the source of new metadata.
pub struct Client {
    fetcher: Box<dyn Fetcher>,
    state: Option<StateDir>,
    now: UtcTime,
    limits: Limits,
    root: Metadata<Root>,
    timestamp: Option<Metadata<Timestamp>>,
    snapshot: Option<Metadata<Snapshot>>,
    /// Verified targets roles, keyed by (role name, delegator name): a role is verified against the
    /// delegator that led to it, so the same name reached from another delegator is checked anew.
    roles: HashMap<(String, String), Metadata<Targets>>,
    /// Roles that failed to load, with the reason (so a search does not retry them).
    failed_roles: HashMap<(String, String), TrustError>,
    refreshed: bool,
}

fn err(kind: TrustErrorKind, msg: impl Into<String>) -> TrustError {
    TrustError::new(kind, msg)
}

impl Client {
    /// Start from `pinned_root` (bytes of a root the operator trusts). With a state directory, a
    /// newer root persisted there by an earlier run is used instead, and the trusted timestamp,
    /// snapshot and targets persisted there provide rollback protection.
    pub fn new(
        pinned_root: &[u8],
        pinned_name: &str,
        fetcher: Box<dyn Fetcher>,
        state_dir: Option<&Path>,
        now: UtcTime,
        limits: Limits,
    ) -> Result<Client, TrustError> {
        let pinned = load_self_signed_root(pinned_name, pinned_root)?;
        let state = state_dir.map(StateDir::open).transpose()?;
        let mut root = pinned;
        if let Some(state) = &state {
            // A newer root persisted by an earlier run counts only if the rotation chain from
            // *this* pin to it verifies, link by link, from the persisted history: a state
            // directory that belonged to another repository, or a re-pinned root, can never
            // substitute its own root for the operator's pin.
            if let Some(bytes) = state.load("root", limits.root_max_bytes)? {
                let name = format!("{}/root.json", state.path().display());
                let stored = load_self_signed_root(&name, &bytes)?;
                if stored.version() > root.version() {
                    if let Some(chained) = chain_from(&root, &stored, state, &limits) {
                        root = chained;
                    }
                }
            }
        }
        Ok(Client {
            fetcher,
            state,
            now,
            limits,
            root,
            timestamp: None,
            snapshot: None,
            roles: HashMap::new(),
            failed_roles: HashMap::new(),
            refreshed: false,
        })
    }

    pub fn root(&self) -> &Metadata<Root> {
        &self.root
    }

    pub fn timestamp(&self) -> Option<&Metadata<Timestamp>> {
        self.timestamp.as_ref()
    }

    pub fn snapshot(&self) -> Option<&Metadata<Snapshot>> {
        self.snapshot.as_ref()
    }

    /// The verified top-level targets metadata (after [`Client::refresh`]).
    pub fn targets(&self) -> Option<&Metadata<Targets>> {
        self.roles.get(&("targets".to_owned(), "root".to_owned()))
    }

    /// The role whose trusted metadata expires first, and when: root, timestamp, snapshot and
    /// every targets role loaded so far (delegated ones included). After that moment nothing this
    /// client trusted may be relied on.
    pub fn earliest_expiry(&self) -> (String, UtcTime) {
        let mut earliest = ("root".to_owned(), self.root.expires());
        let mut consider = |role: &str, t: UtcTime| {
            if t < earliest.1 {
                earliest = (role.to_owned(), t);
            }
        };
        if let Some(t) = &self.timestamp {
            consider("timestamp", t.expires());
        }
        if let Some(s) = &self.snapshot {
            consider("snapshot", s.expires());
        }
        // Ties go to the role considered first: the top-level ones, then delegated roles by
        // name (so the answer never depends on map order, and equals the saved index's).
        if let Some(t) = self.targets() {
            consider("targets", t.expires());
        }
        if let Some((role, t)) = self.delegated_expiry() {
            consider(&role, t);
        }
        earliest
    }

    /// The delegated role whose trusted metadata expires first among those loaded, and when.
    pub fn delegated_expiry(&self) -> Option<(String, UtcTime)> {
        self.roles
            .iter()
            .filter(|((role, delegator), _)| !(role == "targets" && delegator == "root"))
            .map(|((role, _), md)| (role.clone(), md.expires()))
            .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))
    }

    /// The state directory, if the client persists what it trusts.
    pub fn state(&self) -> Option<&StateDir> {
        self.state.as_ref()
    }

    pub fn consistent_snapshot(&self) -> bool {
        self.root.signed.consistent_snapshot.unwrap_or(false)
    }

    pub fn fetcher(&self) -> &dyn Fetcher {
        self.fetcher.as_ref()
    }

    /// The start time all expiry checks use.
    pub fn now(&self) -> UtcTime {
        self.now
    }

    fn verify_top_level<T: Signed>(&self, role: &str, md: &Metadata<T>) -> Result<(), TrustError> {
        let keys = self.root.signed.roles.get(role).ok_or_else(|| {
            err(
                TrustErrorKind::Malformed,
                format!("root lists no {role} role"),
            )
        })?;
        verify_threshold(
            role,
            md,
            &keys.keyids,
            keys.threshold,
            &self.root.signed.keys,
        )?;
        Ok(())
    }

    fn check_expiry<T: Signed>(&self, role: &str, md: &Metadata<T>) -> Result<(), TrustError> {
        let expires = md.expires();
        if expires <= self.now {
            return Err(err(
                TrustErrorKind::Expired,
                format!(
                    "{role} metadata (version {}) expired at {expires} (now {})",
                    md.version(),
                    self.now
                ),
            ));
        }
        Ok(())
    }

    fn persist(&self, role: &str, bytes: &[u8]) -> Result<(), TrustError> {
        match &self.state {
            Some(s) => s.store(role, bytes),
            None => Ok(()),
        }
    }

    /// Run the whole update: root rotation, timestamp, snapshot, top-level targets.
    pub fn refresh(&mut self) -> Result<(), TrustError> {
        if self.refreshed {
            return Ok(());
        }
        self.update_root()?;
        // Persisted timestamp and snapshot are loaded only now, verified with the newest root:
        // if their keys were rotated they no longer verify and are dropped, which is the
        // fast-forward attack recovery of §5.3.11.
        self.timestamp = self
            .local_top_level("timestamp", self.limits.timestamp_max_bytes)
            .map(|(m, _)| m);
        self.snapshot = self
            .local_top_level("snapshot", self.limits.snapshot_max_bytes)
            .map(|(m, _)| m);
        self.update_timestamp()?;
        self.update_snapshot()?;
        self.load_targets_role("targets", "root")?;
        self.refreshed = true;
        Ok(())
    }
}

/// A file that breaks the format (e.g. an entry validation should have required is missing).
fn malformed(e: String) -> TrustError {
    err(TrustErrorKind::Malformed, e)
}

/// Check length and hashes of a metadata file against the referring role's `meta` entry.
fn check_meta_file(name: &str, meta: &MetaFile, bytes: &[u8]) -> Result<(), TrustError> {
    if let Some(len) = meta.length {
        if bytes.len() as u64 != len {
            return Err(err(
                TrustErrorKind::Mismatch,
                format!(
                    "{name} is {} bytes, but the referring role says {len}",
                    bytes.len()
                ),
            ));
        }
    }
    if let Some(hashes) = &meta.hashes {
        for (alg, expected) in hashes {
            let actual = match alg.as_str() {
                "sha256" => hex::encode(Sha256::digest(bytes)),
                "sha512" => hex::encode(Sha512::digest(bytes)),
                other => {
                    return Err(err(
                        TrustErrorKind::Mismatch,
                        format!("{name}: referring role uses hash algorithm {other:?}, which trustfs cannot check"),
                    ))
                }
            };
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(err(
                    TrustErrorKind::Mismatch,
                    format!("{name}: {alg} is {actual}, but the referring role says {expected}"),
                ));
            }
        }
    }
    Ok(())
}
