//! trustfs: a FUSE filesystem that only exposes content vouched for by signed TUF metadata.
//!
//! Layers, from the bottom up:
//! - [`schema`]: TUF 1.0 metadata types, canonical JSON, keys and signature thresholds.
//! - [`trust`]: the client workflow (spec §5) that turns a pinned root and a metadata source into a
//!   [`TargetIndex`], with rollback protection persisted across restarts.
//! - [`repo`]: the publisher side (keys, init, add, refresh).
//! - [`verify`]: hashing content against [`TargetInfo`]; [`chunks`]: the chunk roots
//!   (`trustfs-chunks/1`) that let a reader verify any byte range (published by `repo add`).
//! - [`source`] and [`fs`]: where bytes come from and the read-only FUSE filesystem over them.
//! - [`ops`]: what a mount reports about itself (status record, status page, audit, metrics).
//! - [`cli`]: the `trustfs` command line, one file per subcommand.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod chunks;
pub mod cli;
pub mod fs;
pub mod index;
pub mod ops;
pub mod repo;
pub mod schema;
pub mod source;
pub mod trust;
pub mod verify;

pub use index::{
    Child, Hashes, IndexBuilder, TargetIndex, TargetInfo, TargetPath, TargetPathError,
};
