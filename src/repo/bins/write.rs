//! Writing the top-level targets list: in one file, or sharded into hash bins signed by
//! `KEYDIR/bins` (only the bins whose list changed or that near expiry), then snapshot and
//! timestamp; every bin signed anew for `refresh`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::schema::UtcTime;

use super::layout::{bit_length_for, keeps, Sharding, NAME_PREFIX};
use super::loaded::{Current, LoadedBins};
use crate::repo::chain::{fresh_role_value, publish_chain, RoleWrite, Versions};
use crate::repo::error::RepoError;
use crate::repo::expiries::Expiries;
use crate::repo::keys;
use crate::repo::signing::{find_role_keys, keyfile, set_field, Signers};
use crate::repo::state::RepoState;
use crate::repo::targetlist::{materialize, NewList};

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

/// Whether metadata expiring at `expires` has less than half of `valid_for` left at `now`.
pub(crate) fn expiring(expires: UtcTime, valid_for: Duration, now: UtcTime) -> bool {
    expires.0.saturating_sub(now.0) < secs(valid_for) / 2
}

/// `d` in whole seconds, as a time difference.
fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiring_means_less_than_half_left() {
        let now = UtcTime(1_000_000);
        let day = Duration::from_secs(86400);
        assert!(!expiring(UtcTime(now.0 + 50 * 86400), 90 * day, now));
        assert!(expiring(UtcTime(now.0 + 40 * 86400), 90 * day, now));
        assert!(expiring(UtcTime(now.0 - 1), 90 * day, now));
    }
}
