//! §5.3, the root chain: a newer root is trusted only as the exact successor of the trusted
//! one, signed by the threshold of the old root's keys and of its own. The chain is followed on
//! the repository (`N+1.root.json` while it exists) and, at start, through the persisted history
//! from the operator's pin to the root an earlier run stored.

use super::{err, malformed, Client, Limits};
use crate::schema::{verify_threshold, Metadata, Root};
use crate::trust::error::{TrustError, TrustErrorKind};
use crate::trust::state::StateDir;

impl Client {
    /// §5.3: follow `N+1.root.json` while it exists.
    pub(super) fn update_root(&mut self) -> Result<(), TrustError> {
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
pub(super) fn chain_from(
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

pub(super) fn load_self_signed_root(
    name: &str,
    bytes: &[u8],
) -> Result<Metadata<Root>, TrustError> {
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
