//! The TUF client workflow (spec §5): from a pinned root and a metadata source to a [`TargetIndex`].
//!
//! One implementation serves `trustfs verify`, the mounts and the conformance client.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::index::TargetIndex;

/// Where metadata comes from.
#[derive(Clone, Debug)]
pub enum MetadataSource {
    /// A local directory with `N.root.json`, `timestamp.json`, `N.snapshot.json`, ... files.
    Dir(PathBuf),
}

/// What the caller pins and chooses.
#[derive(Clone, Debug)]
pub struct TrustOptions {
    /// Path of the trusted root metadata the operator pinned.
    pub trusted_root: PathBuf,
    pub source: MetadataSource,
    /// Where versions seen are persisted for rollback protection across restarts (None: not kept).
    pub state_dir: Option<PathBuf>,
    /// The one start time all expiry checks use.
    pub now: SystemTime,
}

/// Versions and expiry of the metadata that was trusted (for logs and status).
#[derive(Clone, Debug, Default)]
pub struct TrustSummary {
    pub root_version: u64,
    pub timestamp_version: u64,
    pub snapshot_version: u64,
    pub targets_version: u64,
}

/// The outcome of a successful client workflow.
#[derive(Clone, Debug)]
pub struct Trusted {
    pub index: TargetIndex,
    pub summary: TrustSummary,
}

/// Why the metadata cannot be trusted. `Display` gives a reason a person can read.
#[derive(Debug)]
pub struct TrustError(pub String);

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TrustError {}

/// Run the client workflow and return the verified target index.
pub fn load(_opts: &TrustOptions) -> Result<Trusted, TrustError> {
    Err(TrustError("the TUF client is not implemented yet".into()))
}
