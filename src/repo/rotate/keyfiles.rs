//! The key files of a role in KEYDIR during a rotation: the keys root lists for it, those KEYDIR
//! holds, the name of a new one, and moving retired ones to `KEYDIR/retired/`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::schema::{Key, Root, SigningKey};

use crate::repo::error::RepoError;
use crate::repo::keys;
use crate::repo::signing::{find_role_keys, keyfile, warn_unencrypted_root};
use crate::repo::state::create_dir;

/// The keys root lists for `role`.
pub(super) fn role_keys(root: &Root, role: &str) -> Vec<Key> {
    role_ids(root, role)
        .iter()
        .filter_map(|id| root.keys.get(id).and_then(|v| Key::from_value(v).ok()))
        .collect()
}

pub(super) fn role_ids(root: &Root, role: &str) -> Vec<String> {
    root.roles
        .get(role)
        .map(|r| r.keyids.clone())
        .unwrap_or_default()
}

/// The key files in KEYDIR for `role` whose keys `root` lists for it (any number, even none).
pub(super) fn available_keys(
    keydir: &Path,
    role: &str,
    root: &Root,
) -> Result<Vec<(SigningKey, String)>, RepoError> {
    let listed = root
        .roles
        .get(role)
        .map(|r| r.keyids.clone())
        .unwrap_or_default();
    match find_role_keys(keydir, role, &listed, 0, &root.keys, "") {
        Ok(found) => {
            if role == "root" {
                warn_unencrypted_root(keydir)?;
            }
            Ok(found)
        }
        Err(RepoError::NotEnoughKeys { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// `KEYDIR/<role>` if free, else the first free `KEYDIR/<role>@N`.
pub(super) fn next_key_path(keydir: &Path, role: &str) -> PathBuf {
    let free = |p: &Path| {
        fs::symlink_metadata(p).is_err() && fs::symlink_metadata(keys::pub_path(p)).is_err()
    };
    let base = keyfile(keydir, role);
    if free(&base) {
        return base;
    }
    (2u32..)
        .map(|n| keyfile(keydir, &format!("{role}@{n}")))
        .find(|p| free(p))
        .unwrap_or(base)
}

/// Move KEYDIR's key files of `role` whose keys are not among `keep` (the keys the role has
/// now, compared by key material: key ids are labels) to `KEYDIR/retired/` (with their `.pub`),
/// so nothing signs with them again by accident.
pub(super) fn retire_files(
    keydir: &Path,
    role: &str,
    keep: &[Key],
) -> Result<Vec<PathBuf>, RepoError> {
    let keep_keys: BTreeSet<Vec<u8>> = keep.iter().map(Key::identity).collect();
    let mut moved = Vec::new();
    let Ok(entries) = fs::read_dir(keydir) else {
        return Ok(moved);
    };
    let retired = keydir.join("retired");
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let numbered = name
            .strip_prefix(role)
            .and_then(|r| r.strip_prefix('@'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if name != role && !numbered {
            continue;
        }
        let public = keys::pub_path(&e.path());
        let (id, identity) = match keys::load_public(&public) {
            Ok(k) => (k.compute_keyid(), k.identity()),
            // Without a .pub the private key would have to be decrypted to tell: left alone.
            Err(_) => continue,
        };
        if keep_keys.contains(&identity) {
            continue;
        }
        create_dir(&retired, 0o700)?;
        let stamp = id.get(..12).unwrap_or(&id).to_owned();
        for from in [e.path(), public] {
            let file = from
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            let to = retired.join(format!("{file}.{stamp}"));
            fs::rename(&from, &to).map_err(|err| RepoError::io("retire", &from, err))?;
            moved.push(to);
        }
    }
    Ok(moved)
}
