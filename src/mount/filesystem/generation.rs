//! The metadata in force ([`MetadataInForce`]): the index, its summary and its expiry, replaced
//! as a whole by a switch (`switch.rs`); [`MountState::generation`] hands out the current one.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::MountState;
use crate::index::{TargetIndex, TargetInfo};
use crate::schema::UtcTime;
use crate::trust::TrustSummary;

/// The metadata in force, and what is derived from it. Replaced as a whole by a switch.
pub(in crate::mount) struct MetadataInForce {
    /// 1 at mount, +1 per switch.
    pub(in crate::mount) number: u64,
    /// Shared with the inodes that name its targets by position.
    pub(in crate::mount) index: Arc<TargetIndex>,
    pub(in crate::mount) summary: Option<TrustSummary>,
    /// When the metadata expires, and the role that expires first.
    expires: Option<(SystemTime, String)>,
}

impl MetadataInForce {
    pub(super) fn new(
        number: u64,
        index: TargetIndex,
        summary: Option<TrustSummary>,
        fallback_expires: Option<SystemTime>,
    ) -> MetadataInForce {
        let expires = match &summary {
            Some(s) => {
                let role = if s.expires_role.is_empty() {
                    "trusted".to_owned()
                } else {
                    s.expires_role.clone()
                };
                // An expiry that does not parse fails closed: treated as long past.
                Some((
                    UtcTime::parse(&s.expires).map_or(SystemTime::UNIX_EPOCH, utc_to_system),
                    role,
                ))
            }
            None => fallback_expires.map(|t| (t, "trusted".to_owned())),
        };
        MetadataInForce {
            number,
            index: Arc::new(index),
            summary,
            expires,
        }
    }

    /// The position of the target at `path`.
    pub(super) fn target_pos(&self, path: &OsStr) -> Option<usize> {
        path.to_str().and_then(|p| self.index.position(p))
    }

    pub(super) fn target(&self, path: &OsStr) -> Option<TargetInfo> {
        self.target_pos(path).map(|pos| self.index.info_at(pos))
    }

    /// The expiry, if it has passed at `now`.
    pub(in crate::mount) fn expired_at(&self, now: SystemTime) -> Option<&(SystemTime, String)> {
        self.expires.as_ref().filter(|(t, _)| now >= *t)
    }

    /// Whether some target path continues below `path` (a remote mount's whole tree; with
    /// `Hide`, the only directories a local mount shows).
    pub(super) fn is_dir(&self, path: &OsStr) -> bool {
        path.to_str().is_some_and(|p| self.index.is_dir(p))
    }
}

fn utc_to_system(t: UtcTime) -> SystemTime {
    u64::try_from(t.0).map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s))
}

impl MountState {
    /// The metadata in force (a cheap `Arc` clone; a switch never changes it in place).
    pub(in crate::mount) fn generation(&self) -> Arc<MetadataInForce> {
        self.generation
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
