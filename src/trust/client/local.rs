//! The rollback state: trusted top-level metadata the state directory holds (persisted by an
//! earlier run), read back with the current root's keys. A refresh starts from it (the versions a
//! new timestamp and snapshot must not go below, §5.4.3, §5.5.5); an offline start trusts exactly
//! it ([`Client::load_trusted_state`]).

use super::{check_meta_file, err, malformed, Client};
use crate::schema::{Metadata, Signed, Snapshot, Timestamp};
use crate::trust::error::{TrustError, TrustErrorKind};

impl Client {
    /// Local (persisted) metadata of `role`, if it parses as `T` and verifies with the current
    /// root's keys. Its expiry is not checked: an expired local copy still guards against rollback.
    pub(super) fn local_top_level<T: Signed>(
        &self,
        role: &str,
        limit: u64,
    ) -> Option<(Metadata<T>, Vec<u8>)> {
        let bytes = self.state.as_ref()?.load(role, limit).ok()??;
        let md = Metadata::<T>::from_slice(&format!("{role}.json"), &bytes).ok()?;
        self.verify_top_level(role, &md).ok()?;
        Some((md, bytes))
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
}
