//! The read-only verified FUSE filesystem.
