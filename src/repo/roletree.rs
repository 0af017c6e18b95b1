//! The delegated roles a repository holds, as publishing commands see them: every role reachable
//! from the top-level targets, each verified against its delegator's keys ([`RoleTree`]), the
//! chain of delegations above a role, the keys in KEYDIR that sign it; how a delegation limits
//! paths, for messages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::schema::{DelegatedRole, Metadata, SigningKey, Targets};

use super::error::RepoError;
use super::signing::find_role_keys;
use super::state::RepoState;

/// The most delegated roles a repository may have before trustfs refuses to walk them.
const MAX_ROLES: usize = 10_000;

/// The delegator `name`'s current `signed` value, file and version (`targets` or a delegated
/// role).
pub(crate) fn delegator_file<'a>(
    state: &'a RepoState,
    tree: &'a RoleTree,
    name: &str,
) -> Result<(&'a Value, &'a PathBuf, u64), RepoError> {
    if name == "targets" {
        return Ok((
            &state.targets.signed_value,
            &state.targets_path,
            state.targets.version(),
        ));
    }
    let d = tree.get(name)?;
    Ok((&d.md.signed_value, &d.path, d.md.version()))
}

/// The key ids some entry of a delegations `roles` list still uses.
pub(crate) fn keyids_in_use(roles: &[Value]) -> BTreeSet<String> {
    roles
        .iter()
        .filter_map(|r| r.get("keyids").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// How a delegation limits paths, for messages: `paths ["a/*"]` or `path hash prefixes ["0"]`.
pub(crate) fn describe_patterns(role: &DelegatedRole) -> String {
    match (&role.paths, &role.path_hash_prefixes) {
        (Some(p), _) => format!("the paths {p:?}"),
        (None, Some(h)) => format!("the sha256 path hash prefixes {h:?}"),
        (None, None) => "no paths at all".into(),
    }
}

/// One delegated role of the repository, verified against its delegator's keys.
pub(crate) struct LoadedRole {
    pub(crate) name: String,
    pub(crate) delegator: String,
    /// How the delegator lists it.
    pub(crate) entry: DelegatedRole,
    /// The delegator's `delegations.keys`.
    pub(crate) keys: BTreeMap<String, Value>,
    pub(crate) md: Metadata<Targets>,
    pub(crate) path: PathBuf,
}

/// Every delegated role reachable from the top-level targets, each loaded at the version snapshot
/// lists and checked against the length, hashes, keys and threshold its delegator gives.
pub(crate) struct RoleTree {
    pub(super) roles: BTreeMap<String, LoadedRole>,
}

impl RoleTree {
    pub(crate) fn load(state: &RepoState) -> Result<RoleTree, RepoError> {
        let mut roles: BTreeMap<String, LoadedRole> = BTreeMap::new();
        let mut queue: Vec<(String, Metadata<Targets>, PathBuf)> = vec![(
            "targets".into(),
            state.targets.clone(),
            state.targets_path.clone(),
        )];
        while let Some((delegator, md, md_path)) = queue.pop() {
            let Some(d) = &md.signed.delegations else {
                continue;
            };
            for entry in d.roles() {
                // A role listed by two delegators is one file; the first listing is used here.
                if roles.contains_key(&entry.name) || entry.name == "targets" {
                    continue;
                }
                if roles.len() >= MAX_ROLES {
                    return Err(RepoError::Malformed {
                        file: md_path.clone(),
                        reason: format!("more than {MAX_ROLES} delegated roles"),
                    });
                }
                let name = &entry.name;
                if name.contains('/') || name.starts_with('.') || name.contains('\0') {
                    return Err(RepoError::Malformed {
                        file: md_path.clone(),
                        reason: format!("delegated role name {name:?} cannot be a file name"),
                    });
                }
                let (role_md, path) = state.load_delegated(
                    name,
                    &entry.keyids,
                    entry.threshold,
                    &d.keys,
                    format_args!("{delegator} delegates to {name:?}"),
                )?;
                queue.push((name.clone(), role_md.clone(), path.clone()));
                roles.insert(
                    name.clone(),
                    LoadedRole {
                        name: name.clone(),
                        delegator: delegator.clone(),
                        entry: entry.clone(),
                        keys: d.keys.clone(),
                        md: role_md,
                        path,
                    },
                );
            }
        }
        Ok(RoleTree { roles })
    }

    /// The names of every delegated role loaded.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.roles.keys().map(String::as_str).collect()
    }

    pub(crate) fn get(&self, name: &str) -> Result<&LoadedRole, RepoError> {
        self.roles.get(name).ok_or_else(|| RepoError::UnknownRole {
            role: name.to_owned(),
        })
    }

    /// The role and the delegations above it, nearest first: a target must match each of their
    /// entries for a client's search to reach the role.
    pub(crate) fn chain(&self, name: &str) -> Result<Vec<&LoadedRole>, RepoError> {
        let mut out = vec![self.get(name)?];
        while let Some(last) = out.last() {
            if last.delegator == "targets" {
                break;
            }
            if out.len() > self.roles.len() {
                return Err(RepoError::Internal(format!(
                    "delegation chain of {name:?} loops"
                )));
            }
            out.push(self.get(&last.delegator)?);
        }
        Ok(out)
    }

    /// The keys in KEYDIR that sign role `name`, as its delegator lists them.
    pub(crate) fn signing_keys(
        &self,
        keydir: &Path,
        name: &str,
    ) -> Result<Vec<(SigningKey, String)>, RepoError> {
        let r = self.get(name)?;
        find_role_keys(
            keydir,
            name,
            &r.entry.keyids,
            r.entry.threshold,
            &r.keys,
            &format!(" (as {} delegates it)", r.delegator),
        )
    }
}
