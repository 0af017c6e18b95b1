//! The hash bins as the repository holds them: each loaded at the version snapshot lists and
//! checked against the succinct keys and threshold (on every core), all or only those asked
//! for; the top-level delegation `add` finds; whether a role name is a bin.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::schema::{SuccinctRoles, UtcTime};

use super::layout::MAX_BIT_LENGTH;
use crate::repo::error::{display_name, RepoError};
use crate::repo::state::RepoState;

/// One bin as the repository holds it now, verified.
pub(crate) struct LoadedBin {
    pub(crate) value: Value,
    pub(crate) expires: UtcTime,
}

/// The hash bins the top-level targets delegates to, each loaded at the version snapshot lists,
/// checked against the length and hashes it lists and against the succinct keys and threshold.
pub(crate) struct LoadedBins {
    pub(crate) succinct: SuccinctRoles,
    /// Targets' `delegations`, as it is (unknown fields kept).
    pub(crate) delegations: Value,
    pub(crate) keys: BTreeMap<String, Value>,
    /// By bin number; `None`: not loaded, because none of its files changed since the `add`
    /// that last wrote the bins ([`LoadedBins::unloaded`], [`LoadedBins::load_these`]); such a
    /// bin stays as it is.
    pub(crate) bins: Vec<Option<LoadedBin>>,
}

impl LoadedBins {
    /// The bins of the repository's top-level targets, or `None` when it does not delegate to
    /// succinct hash bins.
    pub(crate) fn load(state: &RepoState) -> Result<Option<LoadedBins>, RepoError> {
        let Some(mut bins) = LoadedBins::unloaded(state)? else {
            return Ok(None);
        };
        let all = vec![true; bins.bins.len()];
        bins.load_these(state, &all)?;
        Ok(Some(bins))
    }

    /// The delegation to the bins, with no bin loaded yet.
    pub(crate) fn unloaded(state: &RepoState) -> Result<Option<LoadedBins>, RepoError> {
        let Some(d) = &state.targets.signed.delegations else {
            return Ok(None);
        };
        let Some(s) = &d.succinct_roles else {
            return Ok(None);
        };
        if s.bit_length > MAX_BIT_LENGTH {
            return Err(RepoError::Malformed {
                file: state.targets_path.clone(),
                reason: format!(
                    "succinct_roles has bit_length {} ({} bins); trustfs handles at most 2^{MAX_BIT_LENGTH} bins",
                    s.bit_length,
                    s.bin_count()
                ),
            });
        }
        let delegations = state
            .targets
            .signed_value
            .get("delegations")
            .cloned()
            .unwrap_or(Value::Null);
        Ok(Some(LoadedBins {
            succinct: s.clone(),
            delegations,
            keys: d.keys.clone(),
            bins: (0..s.bin_count()).map(|_| None).collect(),
        }))
    }

    /// Load the bins `which` marks (by bin number) that are not loaded yet.
    pub(crate) fn load_these(
        &mut self,
        state: &RepoState,
        which: &[bool],
    ) -> Result<(), RepoError> {
        let s = &self.succinct;
        let keys = &self.keys;
        // Thousands of independent files: read, parsed and checked on every core, reported in
        // bin order (the first bin that fails is the error, as one by one).
        let todo: Vec<(usize, String)> = (0..self.bins.len())
            .filter(|&i| which.get(i) == Some(&true) && self.bins[i].is_none())
            .map(|i| (i, s.bin_name(i as u64)))
            .collect();
        let load_one = |(_, name): &(usize, String)| -> Result<LoadedBin, RepoError> {
            let (md, _) = state.load_delegated(
                name,
                &s.keyids,
                s.threshold,
                keys,
                format_args!("targets delegates to it (a hash bin)"),
            )?;
            Ok(LoadedBin {
                expires: md.expires(),
                value: md.signed_value,
            })
        };
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let chunk = todo.len().div_ceil(workers).max(1);
        let loaded: Vec<Result<LoadedBin, RepoError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = todo
                .chunks(chunk)
                .map(|part| {
                    let load_one = &load_one;
                    // A worker that cannot start: its part loads here, after the others.
                    std::thread::Builder::new()
                        .spawn_scoped(scope, move || part.iter().map(load_one).collect::<Vec<_>>())
                        .map_err(|_| part)
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| match h {
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        vec![Err(RepoError::Internal(
                            "a thread loading hash bins panicked".into(),
                        ))]
                    }),
                    Err(part) => part.iter().map(load_one).collect(),
                })
                .collect()
        });
        for ((i, _), bin) in todo.iter().zip(loaded) {
            self.bins[*i] = Some(bin?);
        }
        Ok(())
    }

    /// Every target the bins list, each from the bin its path hashes to (a listing in another
    /// bin is one no client would use), borrowed.
    pub(crate) fn targets(&self) -> HashMap<&str, &Value> {
        let mut out = HashMap::new();
        for (i, bin) in self.bins.iter().enumerate() {
            let Some(bin) = bin else { continue };
            for (path, entry) in bin
                .value
                .get("targets")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if self.succinct.bin_of(path) == i as u64 {
                    out.insert(path.as_str(), entry);
                }
            }
        }
        out
    }
}

/// The top-level targets role's delegation, as `add` finds it.
pub(crate) enum Current {
    /// No delegations (or an empty list of named roles): one file, can be sharded.
    Single,
    /// Named delegated roles: one file, never sharded.
    Paths,
    /// Succinct hash bins.
    Binned(LoadedBins),
}

impl Current {
    pub(crate) fn of(state: &RepoState) -> Result<Current, RepoError> {
        if let Some(bins) = LoadedBins::load(state)? {
            return Ok(Current::Binned(bins));
        }
        let named = state
            .targets
            .signed
            .delegations
            .as_ref()
            .is_some_and(|d| !d.roles().is_empty());
        Ok(if named {
            Current::Paths
        } else {
            Current::Single
        })
    }
}

/// A message for a role name that is one of targets' hash bins.
pub(crate) fn is_bin_of(state: &RepoState, role: &str) -> Option<String> {
    let s = state
        .targets
        .signed
        .delegations
        .as_ref()?
        .succinct_roles
        .as_ref()?;
    s.bin_number(role).map(|i| {
        format!(
            "{role:?} is hash bin {i} of {} ({}-…); bins are filled by `trustfs repo add` without \
             --role, from the top-level targets' content",
            s.bin_count(),
            display_name(&s.name_prefix)
        )
    })
}
