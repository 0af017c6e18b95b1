//! `trustfs mount`: verify the metadata, then serve a verified, read-only view of a backing
//! directory, or of a remote repository through a verified cache, in the foreground until
//! SIGINT/SIGTERM or an external `umount`.
//!
//! Exit codes: 0 clean unmount; 2 the metadata cannot be trusted (nothing is mounted); 1 the mount
//! itself failed (bad backing directory, cache, mountpoint, no /dev/fuse, ...); 64 the command
//! line is wrong (e.g. `--backing` together with `--metadata-url`).
//!
//! Files: `args.rs` what the user types (the `Args` whose doc comments are `--help`, and the
//! parsers of its values); `daemon.rs` the mount's life from the checks before mounting to the
//! unmount; `network.rs` the network settings of a remote mount; `refresh.rs` the live-update
//! thread; `system.rs` what the daemon asks of the system (signals, capabilities, memory, a
//! private directory).

mod args;
mod daemon;
mod network;
mod refresh;
mod system;
#[cfg(test)]
mod tests;

pub use args::{parse_size, Args};
pub use daemon::{run, state_name};

// The exit codes and the error format of `cli`, named `super::…` by the files of this directory.
use super::{report_error, EXIT_CONTENT, EXIT_METADATA, EXIT_OK, EXIT_USAGE};
