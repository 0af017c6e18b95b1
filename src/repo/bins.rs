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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::schema::{verify_threshold, Metadata, SuccinctRoles, Targets, UtcTime, SPEC_VERSION};

use super::chain::{publish_chain, RoleWrite, Versions};
use super::error::{display_name, RepoError};
use super::expiries::Expiries;
use super::keys;
use super::signing::{find_role_keys, keyfile, set_field, Signers};
use super::state::{read_referenced, RepoState};
use super::targetlist::{materialize, NewList};

/// Targets the top-level role may list in its own file before `add` shards it.
pub const SHARD_THRESHOLD: usize = 2_000;
/// Targets a bin holds on average right after (re-)sharding.
pub const TARGETS_PER_BIN: usize = 500;
/// Most bits of a bin number trustfs uses: 2^15 bins. Snapshot lists every bin, and trustfs's
/// client indexes at most 2^15 (`Limits::max_bins`).
pub const MAX_BIT_LENGTH: u32 = 15;
/// The `name_prefix` of the bins trustfs creates, and so the name of their key in KEYDIR.
pub const NAME_PREFIX: &str = "bins";

/// How `add` lays out the top-level targets role's own files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharding {
    /// One file up to `threshold` targets; hash bins, their count chosen by the number of
    /// targets, beyond (and then for good, unless `Off` says otherwise).
    Auto { threshold: usize },
    /// Exactly `2^bit_length` hash bins (`--bins N`), whatever the number of targets.
    Bins { bit_length: u32 },
    /// One targets file however many targets (`--bins off`), for clients without TAP 15; a
    /// sharded repository goes back to one file.
    Off,
}

impl Default for Sharding {
    fn default() -> Self {
        Sharding::Auto {
            threshold: SHARD_THRESHOLD,
        }
    }
}

impl Sharding {
    /// `--bins N`: a power of two from 2 to 2^15.
    pub fn from_bin_count(n: u64) -> Result<Sharding, String> {
        if !n.is_power_of_two() || !(2..=1 << MAX_BIT_LENGTH).contains(&n) {
            return Err(format!(
                "{n} is not a power of two from 2 to {} (bins are numbered by the first bits of \
                 sha256(path))",
                1u64 << MAX_BIT_LENGTH
            ));
        }
        Ok(Sharding::Bins {
            bit_length: n.trailing_zeros(),
        })
    }
}

/// The bit length that gives `targets` targets about [`TARGETS_PER_BIN`] a bin (at least 1).
pub fn bit_length_for(targets: usize) -> u32 {
    let bins = targets.div_ceil(TARGETS_PER_BIN).max(1);
    // ceil(log2(bins)): bins - 1 has that many significant bits.
    let bits = usize::BITS - (bins - 1).leading_zeros();
    bits.clamp(1, MAX_BIT_LENGTH)
}

/// Whether `current` bits still suit `targets` targets: bins hold at most twice
/// [`TARGETS_PER_BIN`] on average. Fewer targets never shrink the bin count by themselves (a
/// count chosen with `--bins` stays; `--bins` changes it).
fn keeps(current: u32, targets: usize) -> bool {
    current <= MAX_BIT_LENGTH && current + 1 >= bit_length_for(targets)
}

/// Whether an `add` with `sharding` of `targets` targets keeps the current `bit_length`.
pub(crate) fn keeps_layout(sharding: Sharding, bit_length: u32, targets: usize) -> bool {
    match sharding {
        Sharding::Auto { .. } => keeps(bit_length, targets),
        Sharding::Bins { bit_length: b } => b == bit_length,
        Sharding::Off => false,
    }
}

/// What `add` did with hash bins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinsReport {
    pub name_prefix: String,
    pub bit_length: u32,
    /// `2^bit_length`.
    pub count: u64,
    /// Bins signed anew (their list changed, they neared expiry, or the layout is new).
    pub resigned: usize,
    /// The layout before: `None` the same bins; `Some(0)` one targets file; `Some(b)` `2^b` bins.
    pub previous_bit_length: Option<u32>,
    /// The bins' key, when this command generated it.
    pub generated_key: Option<PathBuf>,
    /// Whether the top-level targets metadata was signed anew.
    pub targets_resigned: bool,
    /// The earliest expiry among the bins this add loaded or wrote (`None`: none).
    pub earliest_expiry: Option<UtcTime>,
    /// Bins of the current layout read and checked (the others list no file that changed since
    /// the last `add`, which wrote them; they stay as they are).
    pub loaded: u64,
}

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
            let name = name.as_str();
            let file = format!("{name}.json");
            let meta =
                state
                    .snapshot
                    .signed
                    .meta
                    .get(&file)
                    .ok_or_else(|| RepoError::Malformed {
                        file: state.snapshot_path.clone(),
                        reason: format!(
                            "meta lists no {file}, though targets delegates to it (a hash bin)"
                        ),
                    })?;
            let path = state.metadata_dir.join(state.meta_name(name, meta.version));
            let md: Metadata<Targets> = read_referenced(&path, meta, &state.snapshot_path)?;
            verify_threshold(name, &md, &s.keyids, s.threshold, keys).map_err(|source| {
                RepoError::Untrusted {
                    file: path.clone(),
                    source,
                }
            })?;
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

/// Whether metadata expiring at `expires` has less than half of `valid_for` left at `now`.
pub(crate) fn expiring(expires: UtcTime, valid_for: Duration, now: UtcTime) -> bool {
    expires.0.saturating_sub(now.0) < secs(valid_for) / 2
}

/// `d` in whole seconds, as a time difference.
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn fresh_role_value() -> Value {
    json!({
        "_type": "targets",
        "spec_version": SPEC_VERSION,
        "version": 1,
        "expires": "",
        "targets": {},
    })
}

/// The version a role is written at next: one above what snapshot lists (a bin of an earlier
/// layout may already be listed, and versions never go back), or 1.
fn next_version(state: &RepoState, role: &str) -> Result<u64, RepoError> {
    match state.snapshot.signed.meta.get(&format!("{role}.json")) {
        Some(m) => m
            .version
            .checked_add(1)
            .ok_or_else(|| RepoError::Malformed {
                file: state.snapshot_path.clone(),
                reason: format!("the version of {role}.json cannot be incremented"),
            }),
        None => Ok(1),
    }
}

/// The inputs of [`publish_top_level`].
pub(crate) struct TopLevel<'a> {
    pub(crate) state: &'a RepoState,
    pub(crate) current: &'a Current,
    pub(crate) keydir: &'a Path,
    pub(crate) sharding: Sharding,
    pub(crate) expires: &'a Expiries,
    /// Signs snapshot and timestamp, and targets when it holds the targets key.
    pub(crate) signers: &'a Signers,
}

/// Write the top-level targets role's new list `targets`: in one file, or sharded into hash bins
/// as [`Sharding`] and the current layout say, then snapshot and timestamp. Returns the versions,
/// the version of targets, and what happened to bins (`None`: one file). `warnings` gets a line
/// when the list should be sharded but cannot be.
pub(crate) fn publish_top_level(
    top: &TopLevel,
    targets: NewList<'_>,
    warnings: &mut Vec<String>,
) -> Result<(Versions, u64, Option<BinsReport>), RepoError> {
    let state = top.state;
    let n = targets.len();
    let bits = match (top.current, top.sharding) {
        (_, Sharding::Off) => None,
        (Current::Paths, Sharding::Bins { .. }) => {
            return Err(RepoError::InvalidArgument(
                "--bins: targets delegates paths to named roles, and a TUF delegations object \
                 holds either named roles or hash bins, not both; targets stays one file"
                    .into(),
            ))
        }
        (Current::Paths, Sharding::Auto { threshold }) => {
            if n > threshold {
                warnings.push(format!(
                    "targets lists {n} targets but is not sharded into hash bins: it delegates \
                     paths to named roles, and a TUF delegations object holds either named roles \
                     or hash bins (consider moving files into delegated roles)"
                ));
            }
            None
        }
        (Current::Single, Sharding::Auto { threshold }) => {
            (n > threshold).then(|| bit_length_for(n))
        }
        (Current::Binned(b), Sharding::Auto { .. }) => Some(if keeps(b.succinct.bit_length, n) {
            b.succinct.bit_length
        } else {
            bit_length_for(n)
        }),
        (_, Sharding::Bins { bit_length }) => Some(bit_length),
    };
    let Some(bits) = bits else {
        let mut value = state.targets.signed_value.clone();
        set_field(&mut value, "targets", Value::Object(materialize(targets)))?;
        // `--bins off` of a sharded repository: targets lists every file again and delegates
        // nothing; the bins stay listed in snapshot (clients refuse a snapshot that drops a
        // role), unused.
        let loaded;
        let signers = match top.current {
            Current::Binned(_) => {
                if let Some(o) = value.as_object_mut() {
                    o.remove("delegations");
                }
                loaded = Signers::load(state, top.keydir, &["targets"])?;
                &loaded
            }
            _ => top.signers,
        };
        let write = RoleWrite::top_level(state, signers, value, top.expires)?;
        let version = write.version;
        let versions = publish_chain(state, top.signers, vec![write], top.expires)?;
        return Ok((versions, version, None));
    };

    // The delegation: the current one with the new bit length, or a new one to KEYDIR/bins.
    let mut generated_key = None;
    let (delegations, previous) = match top.current {
        Current::Binned(b) => {
            let mut d = b.delegations.clone();
            let s = d
                .get_mut("succinct_roles")
                .ok_or_else(|| RepoError::Internal("succinct delegation vanished".into()))?;
            set_field(s, "bit_length", json!(bits))?;
            let previous = (b.succinct.bit_length != bits).then_some(b.succinct.bit_length);
            (d, previous)
        }
        Current::Single | Current::Paths => {
            let path = keyfile(top.keydir, NAME_PREFIX);
            let (key, generated) = keys::load_or_generate(&path)?;
            if generated {
                generated_key = Some(path);
            }
            let public = key.public_key();
            let keyid = public.compute_keyid();
            // Keep what an empty delegations object had (its unknown fields, unused keys).
            let mut d = match state.targets.signed_value.get("delegations") {
                Some(Value::Object(o)) => Value::Object(o.clone()),
                _ => json!({}),
            };
            let o = d
                .as_object_mut()
                .ok_or_else(|| RepoError::Internal("delegations is not an object".into()))?;
            o.remove("roles");
            let keys = o.entry("keys").or_insert_with(|| json!({}));
            set_field(keys, &keyid, public.to_value())?;
            o.insert(
                "succinct_roles".into(),
                json!({"keyids": [keyid], "threshold": 1, "bit_length": bits,
                       "name_prefix": NAME_PREFIX}),
            );
            (d, Some(0))
        }
    };
    let parsed: crate::schema::Delegations = serde_json::from_value(delegations.clone())
        .map_err(|e| RepoError::Internal(format!("the new delegations do not parse: {e}")))?;
    let succinct = parsed
        .succinct_roles
        .clone()
        .ok_or_else(|| RepoError::Internal("no succinct_roles in the new delegations".into()))?;
    succinct.check().map_err(RepoError::Internal)?;

    // Each target into the bin its path hashes to.
    let count = succinct.bin_count();
    let mut parts: Vec<NewList> = (0..count).map(|_| NewList::new()).collect();
    for (path, entry) in targets {
        // bin_of is below 2^bit_length = count by construction.
        parts[succinct.bin_of(&path) as usize].insert(path, entry);
    }
    let old_bins = match top.current {
        Current::Binned(b) if previous.is_none() => Some(&b.bins),
        _ => None,
    };
    let now = UtcTime::now();
    let bins_valid_for = top.expires.bins();
    let mut bin_writes: Vec<(String, Value, u64)> = Vec::new();
    let mut earliest: Option<UtcTime> = None;
    for (i, part) in parts.into_iter().enumerate() {
        let old = match old_bins.map(|b| b.get(i)) {
            // Not loaded: none of its files changed (`add` loads every bin whose files did).
            Some(Some(None)) => continue,
            Some(Some(Some(o))) => Some(o),
            _ => None,
        };
        let same = old.is_some_and(|o| {
            let listed = o.value.get("targets").and_then(Value::as_object);
            listed.is_some_and(|l| {
                l.len() == part.len() && part.iter().all(|(k, v)| l.get(k) == Some(v.value()))
            }) && !expiring(o.expires, bins_valid_for, now)
        });
        // Kept, or signed below with an expiry at least this late.
        let expires = match old {
            Some(o) if same => o.expires,
            _ => UtcTime(now.0.saturating_add(secs(bins_valid_for))),
        };
        earliest = Some(earliest.map_or(expires, |e| e.min(expires)));
        if same {
            continue;
        }
        let name = succinct.bin_name(i as u64);
        let mut value = old.map_or_else(fresh_role_value, |o| o.value.clone());
        set_field(&mut value, "targets", Value::Object(materialize(part)))?;
        // A bin of the current layout was loaded at the version snapshot lists.
        let version = next_version(state, &name)?;
        bin_writes.push((name, value, version));
    }

    let mut targets_value = state.targets.signed_value.clone();
    set_field(&mut targets_value, "targets", json!({}))?;
    set_field(&mut targets_value, "delegations", delegations)?;
    let resign_targets = targets_value != state.targets.signed_value
        || expiring(state.targets.expires(), top.expires.targets, now);

    let bin_keys = if bin_writes.is_empty() {
        Vec::new()
    } else {
        find_role_keys(
            top.keydir,
            &succinct.name_prefix,
            &succinct.keyids,
            succinct.threshold,
            &parsed.keys,
            " (the hash bins)",
        )?
    };
    // The targets key only when targets is signed anew (with bins it can otherwise stay offline).
    let targets_signer = match resign_targets {
        true if top.signers.has("targets") => None,
        true => Some(Signers::load(state, top.keydir, &["targets"])?),
        false => None,
    };
    let resigned = bin_writes.len();
    let mut writes: Vec<RoleWrite> = bin_writes
        .into_iter()
        .map(|(name, value, version)| RoleWrite {
            name,
            value,
            version,
            valid_for: bins_valid_for,
            keys: bin_keys.iter().map(|(k, id)| (k, id.clone())).collect(),
        })
        .collect();
    let mut targets_version = state.targets.version();
    if resign_targets {
        let signer = targets_signer.as_ref().unwrap_or(top.signers);
        let write = RoleWrite::top_level(state, signer, targets_value, top.expires)?;
        targets_version = write.version;
        // After the bins: a delegator is written after the roles it delegates to.
        writes.push(write);
    }
    let versions = publish_chain(state, top.signers, writes, top.expires)?;
    let report = BinsReport {
        name_prefix: succinct.name_prefix.clone(),
        bit_length: bits,
        count,
        resigned,
        previous_bit_length: previous,
        generated_key,
        targets_resigned: resign_targets,
        earliest_expiry: earliest,
        loaded: match top.current {
            Current::Binned(b) => b.bins.iter().filter(|b| b.is_some()).count() as u64,
            _ => 0,
        },
    };
    Ok((versions, targets_version, Some(report)))
}

/// `refresh --role targets` of a sharded repository: every bin signed anew (same lists, new
/// versions and expiry), before targets.
pub(crate) fn resign_all<'k>(
    state: &RepoState,
    bins: &LoadedBins,
    keys: &'k [(crate::schema::SigningKey, String)],
    expires: &Expiries,
) -> Result<Vec<RoleWrite<'k>>, RepoError> {
    let s = &bins.succinct;
    let mut writes = Vec::with_capacity(bins.bins.len());
    for (i, bin) in bins.bins.iter().enumerate() {
        let bin = bin
            .as_ref()
            .ok_or_else(|| RepoError::Internal("a hash bin to sign anew is not loaded".into()))?;
        let name = s.bin_name(i as u64);
        let version = next_version(state, &name)?;
        writes.push(RoleWrite {
            name,
            value: bin.value.clone(),
            version,
            valid_for: expires.bins(),
            keys: keys.iter().map(|(k, id)| (k, id.clone())).collect(),
        });
    }
    Ok(writes)
}

/// The signing keys of the bins in KEYDIR (`KEYDIR/<name_prefix>`, `@2`, ...).
pub(crate) fn signing_keys(
    keydir: &Path,
    bins: &LoadedBins,
) -> Result<Vec<(crate::schema::SigningKey, String)>, RepoError> {
    let s = &bins.succinct;
    find_role_keys(
        keydir,
        &s.name_prefix,
        &s.keyids,
        s.threshold,
        &bins.keys,
        " (the hash bins)",
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_gives_about_500_targets_a_bin() {
        for (n, bits) in [
            (0, 1),
            (1, 1),
            (1000, 1),
            (1001, 2),
            (2001, 3),
            (100_000, 8),
            (128_000, 8),
            (128_001, 9),
            (1_000_000, 11),
            (usize::MAX / 2, MAX_BIT_LENGTH),
        ] {
            assert_eq!(bit_length_for(n), bits, "{n}");
        }
    }

    #[test]
    fn bit_length_is_kept_until_bins_hold_twice_500() {
        // 256 bins: kept up to 256,000 targets (1000 a bin), and however few there are.
        assert!(keeps(8, 100_000));
        assert!(keeps(8, 256_000));
        assert!(!keeps(8, 256_001));
        assert!(keeps(8, 10));
        assert!(keeps(15, 0));
        assert!(!keeps(16, 10));
    }

    #[test]
    fn bin_counts_are_powers_of_two_up_to_2_15() {
        assert_eq!(
            Sharding::from_bin_count(256),
            Ok(Sharding::Bins { bit_length: 8 })
        );
        assert_eq!(
            Sharding::from_bin_count(2),
            Ok(Sharding::Bins { bit_length: 1 })
        );
        assert_eq!(
            Sharding::from_bin_count(32768),
            Ok(Sharding::Bins { bit_length: 15 })
        );
        for bad in [0, 1, 3, 100, 65536] {
            assert!(Sharding::from_bin_count(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiring_means_less_than_half_left() {
        let now = UtcTime(1_000_000);
        let day = Duration::from_secs(86400);
        assert!(!expiring(UtcTime(now.0 + 50 * 86400), 90 * day, now));
        assert!(expiring(UtcTime(now.0 + 40 * 86400), 90 * day, now));
        assert!(expiring(UtcTime(now.0 - 1), 90 * day, now));
    }
}
