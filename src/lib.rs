//! trustfs: a FUSE filesystem that only exposes content vouched for by signed TUF metadata.
//!
//! Layers, from the bottom up; a module uses only modules below it (`layers_point_down`, a test,
//! fails on an import against this list):
//! - [`sys`]: the one module with `unsafe` code: safe wrappers of the system calls the standard
//!   library lacks (`#![deny(unsafe_code)]` everywhere else).
//! - [`schema`]: TUF 1.0 metadata types, canonical JSON, keys, signature thresholds, target paths.
//! - [`chunks`]: the chunk roots (`trustfs-chunks/1`) that let a reader verify any byte range.
//! - [`log`]: the event log (one timestamped line per event on stderr).
//! - [`index`]: what the verified metadata vouches for ([`TargetIndex`], [`TargetInfo`]).
//! - [`hashing`]: hashing content against [`TargetInfo`] (the sha256/sha512 hashes and the chunk
//!   root a target lists).
//! - [`trust`]: the client workflow (spec §5) that turns a pinned root and a metadata source into a
//!   [`TargetIndex`], with rollback protection persisted across restarts; HTTP fetching.
//! - [`source`]: where a mount's bytes come from (a backing directory, HTTP mirrors).
//! - [`telemetry`]: what a mount reports about itself (counters, status record, status page,
//!   audit, metrics); it never imports the filesystem.
//! - [`mount`]: the read-only FUSE filesystem (`trustfs mount`'s daemon; not `std::fs`).
//! - [`repo`]: the publisher side (keys, init, add, delegate, rotate).
//! - [`cli`]: the `trustfs` command line, one module per subcommand; the only place exit codes
//!   live.

#![deny(unsafe_op_in_unsafe_fn)]
// `unsafe` lives in `sys` alone (it allows it for itself).
#![deny(unsafe_code)]

pub mod chunks;
pub mod cli;
pub mod hashing;
pub mod index;
pub mod log;
pub mod mount;
pub mod repo;
pub mod schema;
pub mod source;
pub mod sys;
pub mod telemetry;
pub mod trust;

pub use index::{
    Child, Hashes, IndexBuilder, TargetIndex, TargetInfo, TargetPath, TargetPathError,
};

#[cfg(test)]
mod layers {
    /// The layers of the crate docs, bottom first.
    const LAYERS: [&str; 12] = [
        "sys",
        "schema",
        "chunks",
        "log",
        "index",
        "hashing",
        "trust",
        "source",
        "telemetry",
        "mount",
        "repo",
        "cli",
    ];

    fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every `crate::<module>` a module's code (not its comments) names must be below it.
    #[test]
    fn layers_point_down() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut wrong = Vec::new();
        for (level, module) in LAYERS.iter().enumerate() {
            let mut files = Vec::new();
            let dir = src.join(module);
            if dir.is_dir() {
                sources(&dir, &mut files);
            }
            let file = src.join(format!("{module}.rs"));
            if file.is_file() {
                files.push(file);
            }
            assert!(!files.is_empty(), "no source for the layer {module}");
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.split("//").next().unwrap_or("");
                    for (at, _) in code.match_indices("crate::") {
                        let rest = &code[at + "crate::".len()..];
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        let name = if name == "log_event" {
                            "log".to_owned()
                        } else {
                            name
                        };
                        let Some(used) = LAYERS.iter().position(|l| *l == name) else {
                            continue; // a crate-root item (a re-export or a macro)
                        };
                        if used > level {
                            wrong.push(format!(
                                "{}:{}: {module} uses {name}, a layer above it",
                                file.display(),
                                n + 1
                            ));
                        }
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports against the layers:\n{}",
            wrong.join("\n")
        );
        // Every top-level module is a layer.
        let declared: Vec<&str> = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
            .collect();
        let mut layers = LAYERS.to_vec();
        layers.sort_unstable();
        assert_eq!(declared, layers);
    }
}
