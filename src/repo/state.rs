//! A repository's current, verified state ([`RepoState`]): the newest root, timestamp, and the
//! snapshot and targets they name, each checked against root's keys and against what the
//! referring file lists; where metadata and content live in a repository.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::schema::{
    verify_threshold, MetaFile, Metadata, Root, SchemaError, Signed, Snapshot, Targets, Timestamp,
};

use super::error::{display_name, RepoError};

/// The repository's metadata directory.
pub fn metadata_dir(repo: &Path) -> PathBuf {
    repo.join("metadata")
}

/// The repository's target content directory.
pub fn targets_dir(repo: &Path) -> PathBuf {
    repo.join("targets")
}

/// The current, verified state of a repository.
pub(crate) struct RepoState {
    pub(crate) metadata_dir: PathBuf,
    pub(crate) root: Metadata<Root>,
    pub(crate) consistent: bool,
    pub(crate) timestamp: Metadata<Timestamp>,
    pub(crate) timestamp_path: PathBuf,
    pub(crate) snapshot: Metadata<Snapshot>,
    pub(crate) snapshot_path: PathBuf,
    pub(crate) targets: Metadata<Targets>,
    pub(crate) targets_path: PathBuf,
}

impl RepoState {
    /// Load the newest `N.root.json`, `timestamp.json`, and the snapshot and targets they name;
    /// check each against root's keys and thresholds and against the length, hashes and version
    /// the referring file lists.
    pub(crate) fn load(repo: &Path) -> Result<RepoState, RepoError> {
        let mdir = metadata_dir(repo);
        let (n, root_path) =
            latest_root(&mdir)?.ok_or_else(|| RepoError::NotARepository { path: mdir.clone() })?;
        let root_bytes = read(&root_path)?;
        let root: Metadata<Root> = parse(&root_path, &root_bytes)?;
        if root.version() != n {
            return Err(RepoError::Malformed {
                file: root_path,
                reason: format!(
                    "file name says version {n}, content says {}",
                    root.version()
                ),
            });
        }
        check_signed(&root_path, &root, &root.signed, "root")?;
        let consistent = root.signed.consistent_snapshot == Some(true);

        let timestamp_path = mdir.join("timestamp.json");
        let ts_bytes = read(&timestamp_path)?;
        let timestamp: Metadata<Timestamp> = parse(&timestamp_path, &ts_bytes)?;
        check_signed(&timestamp_path, &timestamp, &root.signed, "timestamp")?;

        let (snapshot, snapshot_path) = load_listed::<Snapshot>(
            &mdir,
            consistent,
            &root.signed,
            "snapshot",
            &timestamp.signed.meta,
            &timestamp_path,
        )?;
        let (targets, targets_path) = load_listed::<Targets>(
            &mdir,
            consistent,
            &root.signed,
            "targets",
            &snapshot.signed.meta,
            &snapshot_path,
        )?;

        Ok(RepoState {
            metadata_dir: mdir,
            root,
            consistent,
            timestamp,
            timestamp_path,
            snapshot,
            snapshot_path,
            targets,
            targets_path,
        })
    }

    pub(crate) fn meta_name(&self, role: &str, version: u64) -> String {
        meta_name(self.consistent, role, version)
    }

    /// The delegated role (or hash bin) `name` at the version snapshot lists, checked against the
    /// length and hashes snapshot lists and against the key ids, threshold and keys its delegator
    /// gives it. `delegated` ends the message when snapshot lists no `<name>.json` ("meta lists no
    /// NAME.json, though ...").
    pub(crate) fn load_delegated(
        &self,
        name: &str,
        keyids: &[String],
        threshold: u64,
        keys: &BTreeMap<String, Value>,
        delegated: fmt::Arguments<'_>,
    ) -> Result<(Metadata<Targets>, PathBuf), RepoError> {
        let file = format!("{name}.json");
        let meta = self
            .snapshot
            .signed
            .meta
            .get(&file)
            .ok_or_else(|| RepoError::Malformed {
                file: self.snapshot_path.clone(),
                reason: format!("meta lists no {file}, though {delegated}"),
            })?;
        let path = self.metadata_dir.join(self.meta_name(name, meta.version));
        let md: Metadata<Targets> = read_referenced(&path, meta, &self.snapshot_path)?;
        verify_threshold(name, &md, keyids, threshold, keys).map_err(|source| {
            RepoError::Untrusted {
                file: path.clone(),
                source,
            }
        })?;
        Ok((md, path))
    }
}

/// The top-level role `role` at the version `meta` (that of the file `referrer`) lists, checked
/// against the length, hashes and version listed there and against `root`'s keys and threshold.
fn load_listed<T: Signed>(
    mdir: &Path,
    consistent: bool,
    root: &Root,
    role: &str,
    meta: &BTreeMap<String, MetaFile>,
    referrer: &Path,
) -> Result<(Metadata<T>, PathBuf), RepoError> {
    let file = format!("{role}.json");
    let listed = meta.get(&file).ok_or_else(|| RepoError::Malformed {
        file: referrer.to_owned(),
        reason: format!("meta lists no {file}"),
    })?;
    let path = mdir.join(meta_name(consistent, role, listed.version));
    let md: Metadata<T> = read_referenced(&path, listed, referrer)?;
    check_signed(&path, &md, root, role)?;
    Ok((md, path))
}

fn meta_name(consistent: bool, role: &str, version: u64) -> String {
    if consistent {
        format!("{version}.{role}.json")
    } else {
        format!("{role}.json")
    }
}

fn read(path: &Path) -> Result<Vec<u8>, RepoError> {
    fs::read(path).map_err(|e| RepoError::io("read", path, e))
}

fn parse<T: Signed>(path: &Path, bytes: &[u8]) -> Result<Metadata<T>, RepoError> {
    Metadata::<T>::from_slice(&display_name(path).to_string(), bytes).map_err(|e| match e {
        SchemaError::Malformed { rule, .. } => RepoError::Malformed {
            file: path.to_owned(),
            reason: rule,
        },
        other => RepoError::Untrusted {
            file: path.to_owned(),
            source: other,
        },
    })
}

/// Read a file another file's `meta` names and check its length, hashes and version.
pub(crate) fn read_referenced<T: Signed>(
    path: &Path,
    expected: &MetaFile,
    referrer: &Path,
) -> Result<Metadata<T>, RepoError> {
    let bytes = read(path)?;
    let mismatch = |what: String| RepoError::Malformed {
        file: path.to_owned(),
        reason: format!(
            "{what} does not match what {} lists",
            display_name(referrer)
        ),
    };
    if let Some(len) = expected.length {
        if bytes.len() as u64 != len {
            return Err(mismatch(format!("length {}", bytes.len())));
        }
    }
    for (alg, digest) in expected.hashes.iter().flatten() {
        let actual = match alg.as_str() {
            "sha256" => hex::encode(Sha256::digest(&bytes)),
            "sha512" => hex::encode(Sha512::digest(&bytes)),
            _ => continue,
        };
        if !actual.eq_ignore_ascii_case(digest) {
            return Err(mismatch(format!("{alg} {actual}")));
        }
    }
    let md: Metadata<T> = parse(path, &bytes)?;
    if md.version() != expected.version {
        return Err(mismatch(format!("version {}", md.version())));
    }
    Ok(md)
}

fn check_signed<T: Signed>(
    path: &Path,
    md: &Metadata<T>,
    root: &Root,
    role: &str,
) -> Result<(), RepoError> {
    let role_keys = root
        .roles
        .get(role)
        .ok_or_else(|| RepoError::Internal(format!("root lists no {role} role")))?;
    verify_threshold(role, md, &role_keys.keyids, role_keys.threshold, &root.keys).map_err(
        |source| RepoError::Untrusted {
            file: path.to_owned(),
            source,
        },
    )
}

/// The highest `N.root.json` in `mdir`, if any.
pub(super) fn latest_root(mdir: &Path) -> Result<Option<(u64, PathBuf)>, RepoError> {
    let entries = match fs::read_dir(mdir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RepoError::io("list", mdir, e)),
    };
    let mut best: Option<u64> = None;
    for entry in entries {
        let entry = entry.map_err(|e| RepoError::io("list", mdir, e))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_suffix(".root.json"))
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        best = best.max(Some(n));
    }
    Ok(best.map(|n| (n, mdir.join(format!("{n}.root.json")))))
}

pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<(), RepoError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| RepoError::io("create directory", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_names_follow_consistent_snapshot() {
        assert_eq!(meta_name(true, "snapshot", 3), "3.snapshot.json");
        assert_eq!(meta_name(false, "snapshot", 3), "snapshot.json");
    }
}
