//! The target index: what the verified metadata vouches for, keyed by target path.
//!
//! This is the seam between the TUF client (`crate::trust`), which builds an index from signed
//! metadata (top-level targets plus delegations, resolved the way the specification orders them),
//! and its consumers (`trustfs verify`, the mounts), which only ever ask "what does the metadata
//! say about this path?". Nothing here is trusted by construction: an index is only as good as the
//! client that filled it.
//!
//! Files: [`TargetInfo`] (here) is one target's entry; `hashes.rs` its digests; `table.rs` the
//! index itself (the flat table and lookups by path and position); `dirs.rs` the directories its
//! paths imply; `builder.rs` how an index is filled; `encode.rs` its byte form in the state
//! directory.

mod builder;
mod dirs;
mod encode;
mod hashes;
mod table;
#[cfg(test)]
mod tests;

pub use builder::IndexBuilder;
pub use dirs::Child;
pub use hashes::Hashes;
pub use table::TargetIndex;

pub use crate::schema::{TargetPath, TargetPathError};

/// What signed metadata says about one target file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    /// Exact length in bytes.
    pub length: u64,
    /// Hash algorithm name (as spelled in the metadata, e.g. `sha256`) to raw digest bytes.
    pub hashes: Hashes,
    /// The target's `custom` object, if any, without the trustfs chunk root (kept for display;
    /// never used for decisions).
    pub custom: Option<Box<serde_json::Value>>,
    /// The signed chunk root (`custom.trustfs.chunks`, see [`crate::chunks`]), if the target
    /// lists a well-formed one: what chunk-verified reads check the content against.
    pub chunk_root: Option<[u8; 32]>,
}

impl TargetInfo {
    /// The sha256 digest, if the metadata lists one.
    pub fn sha256(&self) -> Option<&[u8]> {
        self.hashes.get("sha256")
    }
}
