//! Delegated targets roles on the publisher side: `repo delegate` (a role, its keys, its paths or
//! hash prefixes, threshold, terminating). The verified tree of delegated roles that
//! `repo add --role` signs into is `roletree.rs`.
//!
//! Role names become metadata file names (`N.<NAME>.json`) and URL components, so new names are
//! limited to characters that need no quoting anywhere: letters, digits, `-`, `_`, `.`, `~`
//! (python-tuf percent-encodes role names in requests and in its cache; with these characters the
//! encoded and the plain name are the same file). Keys of a delegated role live in KEYDIR as
//! `<NAME>` (the one `delegate` generates when no `--key` is given), then `<NAME>@2`,
//! `<NAME>@3`, ... for thresholds above 1; the publisher signs with every one of them that the
//! delegation lists.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::schema::{Key, SigningKey};

use super::atomic::RepoLock;
use super::chain::{bump, fresh_role_value, publish_chain, RoleWrite, Versions};
use super::error::{display_name, RepoError};
use super::expiries::Expiries;
use super::keys;
use super::roletree::{delegator_file, keyids_in_use, RoleTree};
use super::signing::{find_role_keys, keyfile, Signers, TOP_LEVEL_ROLES};
use super::state::{create_dir, RepoState};

/// Which target paths a delegated role may list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DelegatedPaths {
    /// `paths`: glob patterns, `*` and `?` never matching `/` (e.g. `team/*`, `team/*/*`).
    Paths(Vec<String>),
    /// `path_hash_prefixes`: hex prefixes of the sha256 of the target path (hashed bins).
    HashPrefixes(Vec<String>),
}

/// Options of [`delegate`].
#[derive(Clone, Debug)]
pub struct DelegateOptions {
    pub repo: PathBuf,
    pub keydir: PathBuf,
    /// The delegated role to create or update.
    pub role: String,
    /// The role whose delegations list it: `targets` or an existing delegated role.
    pub delegator: String,
    pub paths: DelegatedPaths,
    /// Signatures the role needs (at least 1, at most the number of keys).
    pub threshold: u64,
    /// Stop the client's search at this role for the paths it matches.
    pub terminating: bool,
    /// Public key files (TUF key JSON, `.pub`) of the role. Empty: `KEYDIR/<role>`, generated
    /// when missing.
    pub public_keys: Vec<PathBuf>,
    pub expires: Expiries,
}

/// What [`delegate`] did.
#[derive(Clone, Debug)]
pub struct DelegateReport {
    /// Key files that did not exist and were generated.
    pub generated_keys: Vec<PathBuf>,
    /// Whether the role is new (its `1.<role>.json` was written).
    pub created: bool,
    /// The key ids the delegation lists.
    pub keyids: Vec<String>,
    pub role_version: u64,
    pub delegator_version: u64,
    pub versions: Versions,
}

/// Check a new delegated role name: not a top-level role, not empty, and fit to be the file name
/// `N.<NAME>.json` and a URL component as it is.
pub fn validate_role_name(name: &str) -> Result<(), RepoError> {
    let bad = |reason: &str| {
        Err(RepoError::InvalidRoleName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if TOP_LEVEL_ROLES.contains(&name) {
        return bad("it is a top-level role");
    }
    if name.contains('/') {
        return bad("it contains '/' (the role's metadata file is N.<NAME>.json)");
    }
    if name.contains('\0') {
        return bad("it contains NUL");
    }
    if name.starts_with('.') {
        return bad("it starts with '.' (the role's metadata file is N.<NAME>.json)");
    }
    if name.ends_with(".pub") {
        return bad("it ends in .pub, which would clash with public key files in KEYDIR");
    }
    if name.len() > 200 {
        return bad("it is longer than 200 bytes (N.<NAME>.json must fit a file name)");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.~".contains(*c)))
    {
        return Err(RepoError::InvalidRoleName {
            name: name.to_owned(),
            reason: format!(
                "it contains {c:?}; role names are limited to letters, digits, '-', '_', '.' and \
                 '~' so that N.<NAME>.json is the same file on disk, in a URL and in a client's cache"
            ),
        });
    }
    Ok(())
}

/// Create or update the delegation of `opts.role` in `opts.delegator`'s targets metadata: its
/// keys, threshold, terminating flag and paths (or hash prefixes) are set to what the options
/// say (fields trustfs does not know are kept). A new role gets `1.<role>.json` with no targets;
/// an existing one is re-signed with a bumped version (so it carries signatures of its new keys).
/// The delegator is re-signed with a bumped version, snapshot lists the role, and snapshot and
/// timestamp are re-signed.
pub fn delegate(opts: &DelegateOptions) -> Result<DelegateReport, RepoError> {
    let role = opts.role.as_str();
    validate_role_name(role)?;
    let delegator = opts.delegator.as_str();
    if delegator != "targets" {
        validate_role_name(delegator)?;
    }
    if role == delegator {
        return Err(RepoError::InvalidArgument(format!(
            "role {role:?} cannot delegate to itself"
        )));
    }
    let paths_value = check_paths(&opts.paths)?;
    if opts.threshold < 1 {
        return Err(RepoError::InvalidArgument(
            "--threshold must be at least 1".into(),
        ));
    }
    // Before any key is generated: the default is one key.
    if opts.public_keys.is_empty() && opts.threshold > 1 {
        return Err(RepoError::InvalidArgument(format!(
            "--threshold {} needs that many keys; give them with --key (e.g. --key KEYDIR/{role}.pub \
             --key KEYDIR/{role}@2.pub after `trustfs key generate KEYDIR/{role}@2`)",
            opts.threshold
        )));
    }

    let _lock = RepoLock::acquire(&opts.repo)?;
    let state = RepoState::load(&opts.repo)?;
    let tree = RoleTree::load(&state)?;
    if let Some(why) = super::bins::is_bin_of(&state, delegator) {
        return Err(RepoError::InvalidArgument(why));
    }
    let top: &[&str] = if delegator == "targets" {
        &["targets", "snapshot", "timestamp"]
    } else {
        &["snapshot", "timestamp"]
    };
    let signers = Signers::load(&state, &opts.keydir, top)?;
    let (delegator_value, delegator_path, delegator_version) =
        delegator_file(&state, &tree, delegator)?;
    // A delegations object holds named roles or succinct hash bins, never both.
    let delegator_delegations: Option<&crate::schema::Delegations> = if delegator == "targets" {
        state.targets.signed.delegations.as_ref()
    } else {
        tree.get(delegator)?.md.signed.delegations.as_ref()
    };
    if let Some(s) = delegator_delegations.and_then(|d| d.succinct_roles.as_ref()) {
        return Err(RepoError::InvalidArgument(format!(
            "{delegator} delegates every path to {} hash bins ({}-…), and a TUF delegations \
             object holds either hash bins or named roles, not both; {role:?} cannot be delegated \
             from it",
            s.bin_count(),
            display_name(&s.name_prefix)
        )));
    }
    let existing = tree.roles.get(role);
    if let Some(e) = existing {
        if e.delegator != delegator {
            return Err(RepoError::InvalidArgument(format!(
                "role {role:?} is already delegated by {:?}; a role has one delegator here",
                e.delegator
            )));
        }
    }

    // The role's public keys.
    let mut generated_keys = Vec::new();
    let mut public: BTreeMap<String, Key> = BTreeMap::new();
    if opts.public_keys.is_empty() {
        create_dir(&opts.keydir, 0o700)?;
        let path = keyfile(&opts.keydir, role);
        let (key, generated) = keys::load_or_generate(&path)?;
        if generated {
            generated_keys.push(path);
        }
        let k = key.public_key();
        public.insert(k.compute_keyid(), k);
    } else {
        for p in &opts.public_keys {
            let k = keys::load_public(p)?;
            public.insert(k.compute_keyid(), k);
        }
    }
    if opts.threshold > public.len() as u64 {
        return Err(RepoError::InvalidArgument(format!(
            "--threshold {} is more than the {} distinct key(s) given for role {role:?}",
            opts.threshold,
            public.len()
        )));
    }
    let keyids: Vec<String> = public.keys().cloned().collect();

    // The delegator's new delegations: this role's entry set, its keys added, keys that only
    // its old entry used dropped.
    let mut new_delegator = delegator_value.clone();
    let obj = new_delegator
        .as_object_mut()
        .ok_or_else(|| RepoError::Internal("signed value is not an object".into()))?;
    let delegations = obj
        .entry("delegations")
        .or_insert_with(|| json!({"keys": {}, "roles": []}));
    let malformed = |reason: &str| RepoError::Malformed {
        file: delegator_path.clone(),
        reason: reason.to_owned(),
    };
    let roles = delegations
        .get_mut("roles")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("delegations without a roles list"))?;
    let pos = roles
        .iter()
        .position(|r| r.get("name").and_then(Value::as_str) == Some(role));
    let mut entry = match pos {
        Some(i) => roles[i].clone(),
        None => json!({"name": role}),
    };
    let old_keyids: Vec<String> = entry
        .get("keyids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    {
        let e = entry
            .as_object_mut()
            .ok_or_else(|| malformed("a delegated role entry is not an object"))?;
        e.insert("keyids".into(), json!(keyids));
        e.insert("threshold".into(), json!(opts.threshold));
        e.insert("terminating".into(), json!(opts.terminating));
        e.remove("paths");
        e.remove("path_hash_prefixes");
        let (field, list) = paths_value;
        e.insert(field.into(), list);
    }
    match pos {
        Some(i) => roles[i] = entry,
        None => roles.push(entry),
    }
    let still_used = keyids_in_use(roles);
    let key_map = delegations
        .get_mut("keys")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| malformed("delegations without a keys object"))?;
    for id in &old_keyids {
        if !still_used.contains(id) {
            key_map.remove(id);
        }
    }
    for (id, k) in &public {
        key_map.insert(id.clone(), k.to_value());
    }
    let key_values: BTreeMap<String, Value> = key_map
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    // The role itself, signed by the keys it is now delegated to.
    let role_keys = find_role_keys(&opts.keydir, role, &keyids, opts.threshold, &key_values, "")?;
    let (role_value, role_version) = match existing {
        Some(e) => (e.md.signed_value.clone(), bump(&e.path, e.md.version())?),
        None => (fresh_role_value(), 1),
    };
    let role_write = RoleWrite {
        name: role.to_owned(),
        value: role_value,
        version: role_version,
        valid_for: opts.expires.delegated(),
        keys: borrow(&role_keys),
    };
    let delegator_keys = if delegator == "targets" {
        Vec::new()
    } else {
        tree.signing_keys(&opts.keydir, delegator)?
    };
    let delegator_write = if delegator == "targets" {
        RoleWrite::top_level(&state, &signers, new_delegator, &opts.expires)?
    } else {
        RoleWrite {
            name: delegator.to_owned(),
            value: new_delegator,
            version: bump(delegator_path, delegator_version)?,
            valid_for: opts.expires.targets,
            keys: borrow(&delegator_keys),
        }
    };
    let delegator_version = delegator_write.version;
    let versions = publish_chain(
        &state,
        &signers,
        vec![role_write, delegator_write],
        &opts.expires,
    )?;
    Ok(DelegateReport {
        generated_keys,
        created: existing.is_none(),
        keyids,
        role_version,
        delegator_version,
        versions,
    })
}

fn borrow(keys: &[(SigningKey, String)]) -> Vec<(&SigningKey, String)> {
    keys.iter().map(|(k, id)| (k, id.clone())).collect()
}

/// Validate `--path`/`--hash-prefix` values; returns the field name and its JSON list.
fn check_paths(paths: &DelegatedPaths) -> Result<(&'static str, Value), RepoError> {
    let bad = |msg: String| Err(RepoError::InvalidArgument(msg));
    match paths {
        DelegatedPaths::Paths(p) => {
            if p.is_empty() {
                return bad("give at least one --path".into());
            }
            for g in p {
                if g.is_empty() || g.contains('\0') {
                    return bad(format!("--path {g:?}: empty or contains NUL"));
                }
                if g.starts_with('/') {
                    return bad(format!(
                        "--path {g:?}: target paths are relative; drop the leading '/'"
                    ));
                }
            }
            Ok(("paths", json!(p)))
        }
        DelegatedPaths::HashPrefixes(p) => {
            if p.is_empty() {
                return bad("give at least one --hash-prefix".into());
            }
            let mut out = Vec::new();
            for h in p {
                if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) || h.len() > 64 {
                    return bad(format!(
                        "--hash-prefix {h:?}: expected 1 to 64 hex digits of a sha256"
                    ));
                }
                out.push(h.to_ascii_lowercase());
            }
            Ok(("path_hash_prefixes", json!(out)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_fit_for_file_names_only() {
        for ok in ["team", "bin-0f", "a.b_c~d", "A1"] {
            assert!(validate_role_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "root",
            "targets",
            "snapshot",
            "timestamp",
            "a/b",
            "a\0b",
            ".hidden",
            "..",
            "x.pub",
            "with space",
            "caf\u{e9}",
            "a%2Fb",
        ] {
            assert!(
                matches!(
                    validate_role_name(bad),
                    Err(RepoError::InvalidRoleName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hash_prefixes_are_checked_and_lowercased() {
        let (field, v) = check_paths(&DelegatedPaths::HashPrefixes(vec!["0A".into()])).unwrap();
        assert_eq!(field, "path_hash_prefixes");
        assert_eq!(v, json!(["0a"]));
        for bad in ["", "xz", &"0".repeat(65)] {
            assert!(check_paths(&DelegatedPaths::HashPrefixes(vec![bad.into()])).is_err());
        }
        assert!(check_paths(&DelegatedPaths::Paths(vec![])).is_err());
        assert!(check_paths(&DelegatedPaths::Paths(vec!["/abs/*".into()])).is_err());
    }
}
