//! The client workflow of tuf-spec §5.
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

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::rc::Rc;

use sha2::{Digest, Sha256, Sha512};

use super::error::{TrustError, TrustErrorKind};
use super::fetch::Fetcher;
use super::state::{quote, StateDir};
use crate::index::{Hashes, TargetIndex, TargetInfo, TargetPath};
use crate::schema::{
    verify_threshold, DelegatedRole, MetaFile, Metadata, Root, Signed, Snapshot, SuccinctRoles,
    TargetFile, Targets, Timestamp, UtcTime,
};

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

    /// Local (persisted) metadata of `role`, if it parses as `T` and verifies with the current
    /// root's keys. Its expiry is not checked: an expired local copy still guards against rollback.
    fn local_top_level<T: Signed>(&self, role: &str, limit: u64) -> Option<(Metadata<T>, Vec<u8>)> {
        let bytes = self.state.as_ref()?.load(role, limit).ok()??;
        let md = Metadata::<T>::from_slice(&format!("{role}.json"), &bytes).ok()?;
        self.verify_top_level(role, &md).ok()?;
        Some((md, bytes))
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

    /// Offline start: trust exactly what the state directory holds, without any request. Root,
    /// timestamp, snapshot and top-level targets must all be there, verify against the trusted
    /// root, agree with each other (versions, lengths, hashes) and be unexpired at the start time.
    /// For a mount whose repository is unreachable: cached content stays readable while the
    /// metadata last trusted has not expired.
    pub fn load_trusted_state(&mut self) -> Result<(), TrustError> {
        if self.state.is_none() {
            return Err(err(
                TrustErrorKind::State,
                "no state directory to start offline from",
            ));
        }
        self.check_expiry("root", &self.root.clone())?;
        let missing = |role: &str| {
            err(
                TrustErrorKind::Missing,
                format!("no trusted {role} metadata in the state directory"),
            )
        };
        let (ts, _) = self
            .local_top_level::<Timestamp>("timestamp", self.limits.timestamp_max_bytes)
            .ok_or_else(|| missing("timestamp"))?;
        self.check_expiry("timestamp", &ts)?;
        let (snap, snap_bytes) = self
            .local_top_level::<Snapshot>("snapshot", self.limits.snapshot_max_bytes)
            .ok_or_else(|| missing("snapshot"))?;
        let meta = ts.signed.snapshot().map_err(malformed)?;
        check_meta_file("snapshot.json", meta, &snap_bytes)?;
        if snap.version() != meta.version {
            return Err(err(
                TrustErrorKind::Rollback,
                format!(
                    "stored snapshot is version {}, but the stored timestamp names {}",
                    snap.version(),
                    meta.version
                ),
            ));
        }
        self.check_expiry("snapshot", &snap)?;
        self.timestamp = Some(ts);
        self.snapshot = Some(snap);
        // Reads the persisted copy first; with the repository unreachable that is the only way.
        self.load_targets_role("targets", "root")?;
        self.refreshed = true;
        Ok(())
    }

    /// §5.3: follow `N+1.root.json` while it exists.
    fn update_root(&mut self) -> Result<(), TrustError> {
        for _ in 0..self.limits.max_root_rotations {
            // A root at the largest version has no successor (and must not overflow).
            let Some(next) = self.root.version().checked_add(1) else {
                break;
            };
            let name = format!("{next}.root.json");
            let Some(bytes) = self.fetcher.fetch(&name, self.limits.root_max_bytes)? else {
                break;
            };
            let new = next_root(&self.root, &name, &bytes)?;
            self.root = new;
            self.persist("root", &bytes)?;
            // Every rotation is kept, so a later start can re-verify the chain from its pin.
            if let Some(state) = &self.state {
                state.store_history(next, &bytes)?;
            }
        }
        self.check_expiry("root", &self.root.clone())?;
        Ok(())
    }

    /// §5.4: the timestamp role.
    fn update_timestamp(&mut self) -> Result<(), TrustError> {
        let name = "timestamp.json";
        let bytes = self
            .fetcher
            .fetch(name, self.limits.timestamp_max_bytes)?
            .ok_or_else(|| {
                err(
                    TrustErrorKind::Missing,
                    format!("{name} not found at {}", self.fetcher.describe()),
                )
            })?;
        let new = Metadata::<Timestamp>::from_slice(name, &bytes)?;
        self.verify_top_level("timestamp", &new)?;
        if let Some(old) = &self.timestamp {
            if new.version() < old.version() {
                return Err(err(
                    TrustErrorKind::Rollback,
                    format!(
                        "timestamp version went back from {} to {} (rollback attack or stale mirror)",
                        old.version(),
                        new.version()
                    ),
                ));
            }
            let old_snap = old.signed.snapshot().map_err(malformed)?.version;
            let new_snap = new.signed.snapshot().map_err(malformed)?.version;
            if new_snap < old_snap {
                return Err(err(
                    TrustErrorKind::Rollback,
                    format!("timestamp names snapshot version {new_snap}, older than the trusted {old_snap}"),
                ));
            }
            if new.version() == old.version() {
                // Same version: keep what we have (it verified), but it must not have expired.
                self.check_expiry("timestamp", &new)?;
                return Ok(());
            }
        }
        self.check_expiry("timestamp", &new)?;
        self.persist("timestamp", &bytes)?;
        self.timestamp = Some(new);
        Ok(())
    }

    /// §5.5: the snapshot role.
    fn update_snapshot(&mut self) -> Result<(), TrustError> {
        let ts = self
            .timestamp
            .as_ref()
            .ok_or_else(|| err(TrustErrorKind::Missing, "no trusted timestamp"))?;
        let meta = ts.signed.snapshot().map_err(malformed)?.clone();
        let name = if self.consistent_snapshot() {
            format!("{}.snapshot.json", meta.version)
        } else {
            "snapshot.json".to_owned()
        };
        // The persisted snapshot is used as is when it is exactly the version the new timestamp
        // names, matches the length and hashes it lists, and has not expired; otherwise it only
        // serves the rollback checks below.
        if let Some(local) = &self.snapshot {
            let stored = self.state.as_ref().and_then(|st| {
                st.load("snapshot", self.limits.snapshot_max_bytes)
                    .ok()
                    .flatten()
            });
            if local.version() == meta.version
                && stored.is_some_and(|b| check_meta_file("snapshot.json", &meta, &b).is_ok())
                && self.check_expiry("snapshot", local).is_ok()
            {
                return Ok(());
            }
        }
        let limit = meta.length.unwrap_or(self.limits.snapshot_max_bytes);
        let bytes = self.fetcher.fetch(&name, limit)?.ok_or_else(|| {
            err(
                TrustErrorKind::Missing,
                format!("{name} not found at {}", self.fetcher.describe()),
            )
        })?;
        check_meta_file(&name, &meta, &bytes)?;
        let new = Metadata::<Snapshot>::from_slice(&name, &bytes)?;
        self.verify_top_level("snapshot", &new)?;
        if new.version() != meta.version {
            return Err(err(
                TrustErrorKind::Rollback,
                format!(
                    "{name} has version {}, but timestamp names version {}",
                    new.version(),
                    meta.version
                ),
            ));
        }
        if let Some(old) = &self.snapshot {
            for (file, old_meta) in &old.signed.meta {
                match new.signed.meta.get(file) {
                    None => {
                        return Err(err(
                            TrustErrorKind::Rollback,
                            format!(
                                "{name} no longer lists {file}, which the trusted snapshot lists"
                            ),
                        ))
                    }
                    Some(m) if m.version < old_meta.version => {
                        return Err(err(
                            TrustErrorKind::Rollback,
                            format!(
                                "{name} names {file} version {}, older than the trusted {}",
                                m.version, old_meta.version
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        self.check_expiry("snapshot", &new)?;
        self.persist("snapshot", &bytes)?;
        self.snapshot = Some(new);
        Ok(())
    }

    /// Load and verify targets role `role` as delegated by `delegator` ("root" for top-level
    /// targets): §5.6 for the top-level role, §5.6.7.2 for delegated ones.
    fn load_targets_role(&mut self, role: &str, delegator: &str) -> Result<(), TrustError> {
        let key = (role.to_owned(), delegator.to_owned());
        if self.roles.contains_key(&key) {
            return Ok(());
        }
        if let Some(e) = self.failed_roles.get(&key) {
            return Err(e.clone());
        }
        let result = self.fetch_targets_role(role, delegator);
        match result {
            Ok(md) => {
                self.roles.insert(key, md);
                Ok(())
            }
            Err(e) => {
                self.failed_roles.insert(key, e.clone());
                Err(e)
            }
        }
    }

    /// Load the delegated roles `names` of `delegator` in parallel (hash bins: thousands of
    /// independent files, each fetched, parsed and signature-checked on its own), as
    /// [`Self::load_targets_role`] would one by one. Failures are recorded the same way.
    fn preload_roles(&mut self, names: &[String], delegator: &str) {
        let todo: Vec<&String> = names
            .iter()
            .filter(|n| {
                let key = ((*n).clone(), delegator.to_owned());
                !self.roles.contains_key(&key) && !self.failed_roles.contains_key(&key)
            })
            .collect();
        if todo.len() < 2 {
            return;
        }
        // CPU-bound for a local metadata directory, latency-bound over HTTP: a few more
        // workers than cores, and never more than there is work.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = (cores + 2).min(8).min(todo.len());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let this = &*self;
        let loaded: Vec<(String, Result<Metadata<Targets>, TrustError>)> =
            std::thread::scope(|scope| {
                // A worker the system cannot start is no error: its roles load one by one
                // later.
                let handles: Vec<_> = (0..workers)
                    .filter_map(|_| {
                        std::thread::Builder::new()
                            .spawn_scoped(scope, || {
                                let mut out = Vec::new();
                                loop {
                                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    let Some(name) = todo.get(i) else {
                                        break out;
                                    };
                                    out.push((
                                        (*name).clone(),
                                        this.fetch_targets_role(name, delegator),
                                    ));
                                }
                            })
                            .ok()
                    })
                    .collect();
                handles
                    .into_iter()
                    // A worker that panicked loses only its part: those roles load one by
                    // one later (and fail there, with an error, if they must).
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
        for (name, result) in loaded {
            let key = (name, delegator.to_owned());
            match result {
                Ok(md) => {
                    self.roles.insert(key, md);
                }
                Err(e) => {
                    self.failed_roles.insert(key, e);
                }
            }
        }
    }

    fn fetch_targets_role(
        &self,
        role: &str,
        delegator: &str,
    ) -> Result<Metadata<Targets>, TrustError> {
        let snapshot = self
            .snapshot
            .as_ref()
            .ok_or_else(|| err(TrustErrorKind::Missing, "no trusted snapshot"))?;
        let meta_name = format!("{role}.json");
        let meta = snapshot
            .signed
            .meta
            .get(&meta_name)
            .cloned()
            .ok_or_else(|| {
                err(
                    TrustErrorKind::Missing,
                    format!(
                        "snapshot does not list {meta_name}, so role {role:?} cannot be trusted"
                    ),
                )
            })?;
        // Keys and threshold come from the delegator.
        let (keyids, threshold, keys) = if delegator == "root" {
            let r = self
                .root
                .signed
                .roles
                .get("targets")
                .ok_or_else(|| err(TrustErrorKind::Malformed, "root lists no targets role"))?;
            (r.keyids.clone(), r.threshold, self.root.signed.keys.clone())
        } else {
            // The usual delegator (and the one of every hash bin) first, without a scan.
            let parent = self
                .role(delegator, "root")
                .filter(|_| delegator == "targets")
                .or_else(|| {
                    self.roles
                        .iter()
                        .find(|((name, _), _)| name == delegator)
                        .map(|(_, md)| md)
                })
                .ok_or_else(|| {
                    err(
                        TrustErrorKind::Delegation,
                        format!("delegator {delegator:?} is not loaded"),
                    )
                })?;
            let d = parent.signed.delegations.as_ref().ok_or_else(|| {
                err(
                    TrustErrorKind::Delegation,
                    format!("{delegator:?} has no delegations"),
                )
            })?;
            let (keyids, threshold) = if let Some(r) = d.roles().iter().find(|r| r.name == role) {
                (r.keyids.clone(), r.threshold)
            } else if let Some(s) = d
                .succinct_roles
                .as_ref()
                .filter(|s| s.bin_number(role).is_some())
            {
                (s.keyids.clone(), s.threshold)
            } else {
                return Err(err(
                    TrustErrorKind::Delegation,
                    format!("{delegator:?} does not delegate to {role:?}"),
                ));
            };
            (keyids, threshold, d.keys.clone())
        };
        let verify = |name: &str, bytes: &[u8]| -> Result<Metadata<Targets>, TrustError> {
            check_meta_file(name, &meta, bytes)?;
            let mut md = Metadata::<Targets>::from_slice(name, bytes)?;
            verify_threshold(role, &md, &keyids, threshold, &keys)?;
            if md.version() != meta.version {
                return Err(err(
                    TrustErrorKind::Rollback,
                    format!(
                        "{name} has version {}, but snapshot names version {}",
                        md.version(),
                        meta.version
                    ),
                ));
            }
            self.check_expiry(role, &md)?;
            if delegator != "root" {
                // Checked: nothing reads a delegated role's raw form again, and hash bins of a
                // million targets hold gigabytes of it.
                md.signed_value = serde_json::Value::Null;
            }
            Ok(md)
        };
        // A locally persisted copy of exactly the named version is used if it verifies against the
        // current delegator; otherwise fetch.
        let limit = meta.length.unwrap_or(self.limits.targets_max_bytes);
        if let Some(state) = &self.state {
            if let Ok(Some(bytes)) = state.load(role, limit) {
                if let Ok(md) = verify(&format!("{role}.json"), &bytes) {
                    return Ok(md);
                }
            }
        }
        // Role names are percent-encoded in requests, as python-tuf does (a role named
        // "../x" must not become a path).
        let name = if self.consistent_snapshot() {
            format!("{}.{}.json", meta.version, quote(role))
        } else {
            format!("{}.json", quote(role))
        };
        let bytes = self.fetcher.fetch(&name, limit)?.ok_or_else(|| {
            err(
                TrustErrorKind::Missing,
                format!("{name} not found at {}", self.fetcher.describe()),
            )
        })?;
        let md = verify(&name, &bytes)?;
        match &self.state {
            // The top-level targets role durably; a delegated role is a cache (verified against
            // snapshot at every load, fetched again if lost), not worth an fsync per bin, and
            // not worth a copy when the repository is a local directory.
            Some(_) if delegator != "root" && self.fetcher.is_local() => {}
            Some(s) if delegator != "root" => s.store_cached(role, &bytes)?,
            _ => self.persist(role, &bytes)?,
        }
        Ok(md)
    }

    fn role(&self, role: &str, delegator: &str) -> Option<&Metadata<Targets>> {
        self.roles.get(&(role.to_owned(), delegator.to_owned()))
    }

    /// §5.6.7: pre-order depth-first search for `path` through the delegation graph, in listed
    /// order, honouring terminating delegations, with a visited set and a cap on roles visited.
    pub fn find_target(&mut self, path: &str) -> Result<Option<FoundTarget>, TrustError> {
        self.refresh()?;
        let mut stack: Vec<(String, String)> = vec![("targets".to_owned(), "root".to_owned())];
        let mut visited = BTreeSet::new();
        let mut count = 0usize;
        while let Some((role, delegator)) = stack.pop() {
            if !visited.insert(role.clone()) {
                continue;
            }
            count += 1;
            if count > self.limits.max_delegations {
                return Err(err(
                    TrustErrorKind::Delegation,
                    format!(
                        "searching for {path:?} visited more than {} roles",
                        self.limits.max_delegations
                    ),
                ));
            }
            self.load_targets_role(&role, &delegator)?;
            let md = self
                .role(&role, &delegator)
                .ok_or_else(|| err(TrustErrorKind::Delegation, "role vanished"))?;
            if let Some(file) = md.signed.targets.get(path) {
                let info = target_info(&role, path, file)?;
                return Ok(Some(FoundTarget {
                    info,
                    file: file.clone(),
                    role,
                }));
            }
            if let Some(s) = md
                .signed
                .delegations
                .as_ref()
                .and_then(|d| d.succinct_roles.as_ref())
            {
                // TAP 15: exactly one bin covers each path, and every bin is terminating.
                let bin = s.role_for(path);
                stack.clear();
                stack.push((bin, role));
                continue;
            }
            if let Some(d) = &md.signed.delegations {
                let mut children = Vec::new();
                let mut terminate = false;
                for child in d.roles() {
                    if role_matches(child, path) {
                        children.push((child.name.clone(), role.clone()));
                        if child.terminating {
                            terminate = true;
                            break;
                        }
                    }
                }
                if terminate {
                    stack.clear();
                }
                stack.extend(children.into_iter().rev());
            }
        }
        Ok(None)
    }

    /// Resolve every target that any reachable role lists, each by the same search as
    /// [`Client::find_target`] (so an index answer always equals a search answer). Roles that fail
    /// to load are reported in the returned list of problems; their targets are left out unless
    /// the search finds them elsewhere first.
    pub fn target_index(&mut self) -> Result<(TargetIndex, Vec<TrustError>), TrustError> {
        self.refresh()?;
        // Walk every reachable role to collect candidate paths.
        let mut candidates = BTreeSet::new();
        let mut problems = Vec::new();
        // (role, delegator, its bin number and delegation when the role is a succinct hash bin)
        // (and whether that delegation is the top-level targets role's own)
        type Pending = (String, String, Option<(u64, Rc<SuccinctRoles>, bool)>);
        let mut queue: Vec<Pending> = vec![("targets".to_owned(), "root".to_owned(), None)];
        let mut index = TargetIndex::builder();
        let mut seen = BTreeSet::new();
        let (mut named, mut bins) = (0usize, 0u64);
        while let Some((role, delegator, bin)) = queue.pop() {
            if !seen.insert((role.clone(), delegator.clone())) {
                continue;
            }
            if bin.is_none() {
                named += 1;
            }
            if named > self.limits.max_roles {
                return Err(err(
                    TrustErrorKind::Delegation,
                    format!(
                        "the delegation graph has more than {} roles",
                        self.limits.max_roles
                    ),
                ));
            }
            if let Err(e) = self.load_targets_role(&role, &delegator) {
                problems.push(e);
                continue;
            }
            let Some(md) = self.role(&role, &delegator) else {
                continue;
            };
            // Bins delegated by the top-level targets role: the search for a path in its own
            // bin ends there (TAP 15: one bin per path, terminating) unless targets lists the
            // path itself, which it checks first. So these are indexed from here directly, without
            // a search per path (a million searches took most of a mount's start).
            let top = bin
                .as_ref()
                .filter(|(_, _, from_top)| *from_top)
                .and_then(|_| self.role("targets", "root"));
            match &bin {
                None => candidates.extend(md.signed.targets.keys().cloned()),
                Some((number, succinct, _)) => {
                    for (path, file) in &md.signed.targets {
                        // Never indexed from here: the search for `path` only visits its own bin.
                        if succinct.bin_of(path) != *number {
                            problems.push(err(
                                TrustErrorKind::Delegation,
                                format!(
                                    "hash bin {role:?} lists {path:?}, whose path hashes to bin \
                                     {:?}: a bin's key may only vouch for its own range, so this \
                                     listing is ignored",
                                    succinct.role_for(path)
                                ),
                            ));
                        } else if top.is_some_and(|t| !t.signed.targets.contains_key(path)) {
                            match target_info(&role, path, file) {
                                Ok(info) => {
                                    let tp = TargetPath::parse(path).map_err(|e| {
                                        err(
                                            TrustErrorKind::Malformed,
                                            format!("{role}: target {path:?}: {e}"),
                                        )
                                    })?;
                                    index.insert_signed_by(tp, info, &role);
                                }
                                Err(e) => {
                                    problems.push(err(e.kind, format!("target {path:?}: {e}")))
                                }
                            }
                        } else {
                            candidates.insert(path.clone());
                        }
                    }
                }
            }
            let Some(d) = &md.signed.delegations else {
                continue;
            };
            if let Some(s) = &d.succinct_roles {
                bins = bins.saturating_add(s.bin_count());
                if bins > self.limits.max_bins {
                    return Err(err(
                        TrustErrorKind::Delegation,
                        format!(
                            "{role:?} delegates to {} hash bins (bit_length {}); a full index \
                             loads at most {} bins",
                            s.bin_count(),
                            s.bit_length,
                            self.limits.max_bins
                        ),
                    ));
                }
                let s = Rc::new(s.clone());
                let names: Vec<String> = s.bin_names().collect();
                self.preload_roles(&names, &role);
                let from_top = role == "targets" && delegator == "root";
                for i in (0..s.bin_count()).rev() {
                    queue.push((s.bin_name(i), role.clone(), Some((i, s.clone(), from_top))));
                }
            } else {
                for child in d.roles() {
                    queue.push((child.name.clone(), role.clone(), None));
                }
            }
        }
        for path in candidates {
            match self.find_target(&path) {
                Ok(Some(found)) => {
                    let tp = TargetPath::parse(&path).map_err(|e| {
                        err(
                            TrustErrorKind::Malformed,
                            format!("{}: target {path:?}: {e}", found.role),
                        )
                    })?;
                    index.insert_signed_by(tp, found.info, &found.role);
                }
                Ok(None) => {}
                Err(e) => problems.push(err(e.kind, format!("target {path:?}: {e}"))),
            }
        }
        Ok((index.build(), problems))
    }
}

/// Verify root `name` (bytes) as the successor of `current` (§5.3.4–5.3.6): signed by the
/// threshold of the current root's root keys and of its own, and numbered exactly one more.
fn next_root(
    current: &Metadata<Root>,
    name: &str,
    bytes: &[u8],
) -> Result<Metadata<Root>, TrustError> {
    let next = current.version().checked_add(1).ok_or_else(|| {
        err(
            TrustErrorKind::Rollback,
            format!("{name}: the current root has the largest version; it has no successor"),
        )
    })?;
    let new = Metadata::<Root>::from_slice(name, bytes)?;
    let old_keys = current.signed.role("root").map_err(malformed)?;
    verify_threshold(
        "root",
        &new,
        &old_keys.keyids,
        old_keys.threshold,
        &current.signed.keys,
    )
    .map_err(|e| {
        err(
            TrustErrorKind::Signature,
            format!("{name}: not signed by the previous root's keys: {e}"),
        )
    })?;
    let new_keys = new.signed.role("root").map_err(malformed)?;
    verify_threshold(
        "root",
        &new,
        &new_keys.keyids,
        new_keys.threshold,
        &new.signed.keys,
    )
    .map_err(|e| {
        err(
            TrustErrorKind::Signature,
            format!("{name}: not signed by its own keys: {e}"),
        )
    })?;
    if new.version() != next {
        return Err(err(
            TrustErrorKind::Rollback,
            format!(
                "{name} has version {}, expected exactly {next}",
                new.version()
            ),
        ));
    }
    Ok(new)
}

/// Walk the persisted root history from `pinned` up to `stored`'s version; the end of the walk
/// must be byte-for-byte the same root as `stored`. None if any link is missing or fails.
fn chain_from(
    pinned: &Metadata<Root>,
    stored: &Metadata<Root>,
    state: &StateDir,
    limits: &Limits,
) -> Option<Metadata<Root>> {
    let mut current = pinned.clone();
    while current.version() < stored.version() {
        let v = current.version().checked_add(1)?;
        let bytes = state.load_history(v, limits.root_max_bytes).ok()??;
        current = next_root(&current, &format!("{v}.root.json (state)"), &bytes).ok()?;
    }
    (current.signed_value == stored.signed_value).then_some(current)
}

/// A file that breaks the format (e.g. an entry validation should have required is missing).
fn malformed(e: String) -> TrustError {
    err(TrustErrorKind::Malformed, e)
}

fn load_self_signed_root(name: &str, bytes: &[u8]) -> Result<Metadata<Root>, TrustError> {
    let root = Metadata::<Root>::from_slice(name, bytes)?;
    let keys = root.signed.role("root").map_err(malformed)?;
    verify_threshold(
        "root",
        &root,
        &keys.keyids,
        keys.threshold,
        &root.signed.keys,
    )
    .map_err(|e| err(TrustErrorKind::Signature, format!("{name}: {e}")))?;
    Ok(root)
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

/// Convert a listed target to the index form (hex digests decoded).
pub fn target_info(role: &str, path: &str, file: &TargetFile) -> Result<TargetInfo, TrustError> {
    let mut hashes = Hashes::new();
    for (alg, h) in &file.hashes {
        let bytes = crate::schema::decode_hex(h).ok_or_else(|| {
            err(
                TrustErrorKind::Malformed,
                format!("{role}: target {path:?}: {alg} hash is not hex"),
            )
        })?;
        hashes.insert(alg.clone(), bytes);
    }
    let (chunk_root, custom) = crate::chunks::split_custom(file.custom.clone());
    Ok(TargetInfo {
        length: file.length,
        hashes,
        custom: custom.map(Box::new),
        chunk_root,
    })
}

/// Does delegation `role` cover `path`? `paths` patterns match component by component with `*`
/// and `?` never crossing `/`; `path_hash_prefixes` match the hex sha256 of the path.
pub fn role_matches(role: &DelegatedRole, path: &str) -> bool {
    if let Some(patterns) = &role.paths {
        return patterns.iter().any(|p| glob_path(p, path));
    }
    if let Some(prefixes) = &role.path_hash_prefixes {
        let digest = hex::encode(Sha256::digest(path.as_bytes()));
        return prefixes
            .iter()
            .any(|p| digest.starts_with(&p.to_ascii_lowercase()));
    }
    false
}

fn glob_path(pattern: &str, path: &str) -> bool {
    let pc: Vec<&str> = pattern.split('/').collect();
    let tc: Vec<&str> = path.split('/').collect();
    pc.len() == tc.len()
        && pc
            .iter()
            .zip(&tc)
            .all(|(p, t)| fnmatch(p.as_bytes(), t.as_bytes()))
}

/// fnmatch for one path component: `*`, `?`, `[seq]`, `[!seq]`; iterative, linear backtracking.
fn fnmatch(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = match_class(&p[pi..], t[ti]) {
                        if matched {
                            pi += next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == b'[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Match `c` against a `[...]` class at the start of `p`; returns (matched, class length), or
/// None when the `[` does not open a well-formed class (then it is a literal).
fn match_class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&b'!');
    if negate {
        i += 1;
    }
    let start = i;
    let mut matched = false;
    while i < p.len() {
        if p[i] == b']' && i > start {
            return Some((matched != negate, i + 1));
        }
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_do_not_cross_slashes() {
        assert!(glob_path("*.txt", "a.txt"));
        assert!(!glob_path("*.txt", "dir/a.txt"));
        assert!(glob_path("dir/*", "dir/a.txt"));
        assert!(!glob_path("dir/*", "dir/sub/a.txt"));
        assert!(glob_path("dir/*/a.tx?", "dir/sub/a.txt"));
        assert!(!glob_path("a?c", "a/c"));
        assert!(glob_path("file[0-9].bin", "file7.bin"));
        assert!(!glob_path("file[!0-9].bin", "file7.bin"));
        assert!(glob_path("*", "anything"));
        assert!(glob_path("**", "x"));
        assert!(glob_path("*", "")); // as fnmatch; target paths are never empty anyway
        assert!(glob_path("a*b*c", "aXXbYYc"));
        assert!(!glob_path("a*b*c", "aXXbYY"));
    }

    #[test]
    fn hash_prefixes() {
        let role = DelegatedRole {
            name: "bin".into(),
            keyids: vec![],
            threshold: 1,
            terminating: false,
            paths: None,
            path_hash_prefixes: Some(vec![
                hex::encode(Sha256::digest(b"file.txt"))[..2].to_owned()
            ]),
            extra: Default::default(),
        };
        assert!(role_matches(&role, "file.txt"));
    }
}
