//! CONTENT_DIR → targets: walking the content directory and copying each file into the
//! repository under its consistent-snapshot names while hashing exactly the bytes copied.
//!
//! CONTENT_DIR may be writable by people who must not be able to publish anything else: they can
//! rename, replace or symlink any entry at any moment while `add` runs. So nothing is ever looked
//! up by a path from `/`. CONTENT_DIR is opened once ([`ContentRoot::open`], `O_NOFOLLOW`), and
//! every later open is `openat2(2)` relative to that descriptor or to a directory descriptor
//! reached from it, with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV`: no `..` out, no symlink in any component, no `/proc` magic link, no mount
//! point crossed.
//!
//! - [`ContentRoot::walk`] descends from directory descriptor to directory descriptor, lists each
//!   with `readdir` on the descriptor, and looks at each entry through an `O_PATH | O_NOFOLLOW`
//!   descriptor (never opening a FIFO or following a link). It records each regular file's
//!   (device, inode).
//! - [`publish_file`] opens the file again beneath the root and copies it only if it
//!   is still a regular file with the (device, inode) the walk recorded. A directory swapped for a
//!   symlink, a file or directory moved in from elsewhere, a new mount point: the open fails or
//!   lands on another inode, and `add` stops with
//!   [`RepoError::ContentChanged`](super::RepoError::ContentChanged) before anything is signed.
//!
//! `walk.rs` holds the walk and the opens beneath the root; `copy.rs` copies and hashes a
//! walked file into `REPO/targets` (or keeps what an earlier add copied).

mod copy;
mod walk;

pub(crate) use copy::{chunks_dir, publish_file, Known, Outcome, Published};
pub use walk::Skipped;
pub(crate) use walk::{ContentFile, ContentRoot};

#[cfg(test)]
mod tests;
