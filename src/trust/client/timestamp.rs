//! §5.4, the timestamp role: fetched every refresh, signed by the root's timestamp keys, never
//! older than the trusted one nor naming an older snapshot, unexpired.

use super::{err, malformed, Client};
use crate::schema::{Metadata, Timestamp};
use crate::trust::error::{TrustError, TrustErrorKind};

impl Client {
    /// §5.4: the timestamp role.
    pub(super) fn update_timestamp(&mut self) -> Result<(), TrustError> {
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
}
