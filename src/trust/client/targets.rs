//! §5.6 and §5.6.7.2: loading one targets role, top-level (keys from the root) or delegated (keys
//! from its delegator, hash bins included): exactly the version, length and hashes snapshot names,
//! signed by the threshold, unexpired; a persisted copy first, else fetched and persisted. Roles
//! are kept by (role, delegator), failures too, so a search never retries one. Also
//! [`target_info`], a listed target in the index's form.

use super::{check_meta_file, err, Client};
use crate::index::{Hashes, TargetInfo};
use crate::schema::{verify_threshold, Metadata, TargetFile, Targets};
use crate::trust::error::{TrustError, TrustErrorKind};
use crate::trust::state::quote;

impl Client {
    /// Load and verify targets role `role` as delegated by `delegator` ("root" for top-level
    /// targets): §5.6 for the top-level role, §5.6.7.2 for delegated ones.
    pub(super) fn load_targets_role(
        &mut self,
        role: &str,
        delegator: &str,
    ) -> Result<(), TrustError> {
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
    pub(super) fn preload_roles(&mut self, names: &[String], delegator: &str) {
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

    pub(super) fn role(&self, role: &str, delegator: &str) -> Option<&Metadata<Targets>> {
        self.roles.get(&(role.to_owned(), delegator.to_owned()))
    }
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
