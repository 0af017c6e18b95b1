//! trustfs's integration tests: one test binary, one module per threat or area, over one shared
//! harness (`harness/`: temp dirs, the `trustfs` binary as an operator runs it, a mount daemon with
//! its log, hand-built FUSE mounts, a one-file FUSE disk that fails or changes under the reader,
//! one HTTP server that can turn hostile, nginx, the pinned python-tuf venv, a library-made
//! repository, a TUF repository builder).
//!
//! Run all with `cargo test --release`; one area with `cargo test --release -- <module>::`
//! (e.g. `-- hardening::`). What each module covers: `tests/README.md`. FUSE tests need root and
//! `/dev/fuse`, the interop tests the venv `bash .ci/run` makes: missing, they fail with a message
//! that says what to do; nothing is skipped silently.

mod harness;

mod bins_publish;
mod delegation_publish;
mod fuzz_corpus;
mod hardening;
mod hash_bins;
mod hostile_metadata;
mod interop;
mod keys;
mod live_update;
mod mount;
mod mount_cli;
mod network;
mod ops;
mod packaging;
mod publisher;
mod remote;
mod tuf_attacks;
mod tuf_threats;
mod unprivileged;
