//! §5.5, the snapshot role: exactly the version, length and hashes the timestamp names, signed
//! by the root's snapshot keys, never dropping or rolling back a targets role the trusted snapshot
//! lists, unexpired.

use super::{check_meta_file, err, malformed, Client};
use crate::schema::{Metadata, Snapshot};
use crate::trust::error::{TrustError, TrustErrorKind};

impl Client {
    /// §5.5: the snapshot role.
    pub(super) fn update_snapshot(&mut self) -> Result<(), TrustError> {
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
}
