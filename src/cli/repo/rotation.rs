//! `repo rotate`, `repo sign`, `repo publish` and `repo status`: a role's keys replaced, the
//! staged root signed by each key holder and published, and where the signatures stand.

use std::path::PathBuf;

use super::{print_versions, KeyArgs};
use crate::repo::{self, display_name, Expiries, RepoError};

#[allow(clippy::too_many_arguments)]
pub(super) fn rotate(
    repo: PathBuf,
    common: KeyArgs,
    role: String,
    public_keys: Vec<PathBuf>,
    threshold: Option<u64>,
    key_type: crate::schema::KeyType,
    encrypt: bool,
) -> Result<(), RepoError> {
    let expires = match repo::TOP_LEVEL_ROLES.contains(&role.as_str()) {
        true => Expiries::from_specs(&common.expires)?,
        false => Expiries::from_specs_for_role(&common.expires, &role)?,
    };
    let r = repo::rotate(&repo::RotateOptions {
        repo: repo.clone(),
        keydir: common.keys,
        role,
        public_keys,
        threshold,
        key_type,
        encrypt,
        expires,
    })?;
    for k in &r.generated_keys {
        eprintln!("generated key {}", display_name(k));
    }
    println!(
        "{}: keys {} replace {}",
        r.role,
        short_ids(&r.new_keyids),
        short_ids(&r.retired_keyids)
    );
    if let Some(s) = &r.staged {
        println!(
            "staged root version {} in {}: it needs signatures from other key holders",
            s.version,
            display_name(&s.path)
        );
        print_staged(s);
        println!(
            "each holder reviews the changes and runs: trustfs repo sign {} --key THEIR_KEY --expect {}; then: trustfs repo publish {} --keys KEYDIR",
            display_name(&repo),
            s.digest,
            display_name(&repo)
        );
        return Ok(());
    }
    if let Some(v) = r.root_version {
        println!("wrote root version {v}");
    }
    if let Some(v) = r.versions {
        print_versions(&v);
    }
    for f in &r.retired_files {
        eprintln!("retired {}", display_name(f));
    }
    Ok(())
}

pub(super) fn sign(repo: PathBuf, key: PathBuf, expect: String) -> Result<(), RepoError> {
    let s = repo::sign_staged(&repo, &key, &expect)?;
    println!("signed {}", display_name(&s.path));
    print_staged(&s);
    if s.complete() {
        println!(
            "both thresholds are met: trustfs repo publish {} --keys KEYDIR",
            display_name(&repo)
        );
    }
    Ok(())
}

pub(super) fn publish(repo: PathBuf, common: KeyArgs) -> Result<(), RepoError> {
    let (root, v, retired) =
        repo::publish_staged(&repo, &common.keys, &Expiries::from_specs(&common.expires)?)?;
    println!("published root version {root}");
    print_versions(&v);
    for f in &retired {
        eprintln!("retired {}", display_name(f));
    }
    Ok(())
}

/// Print the roles and any staged root; `Ok(false)` while a staged root is short of signatures.
pub(super) fn status(repo: PathBuf) -> Result<bool, RepoError> {
    for r in repo::status(&repo)? {
        let short = r.listed_by.len() < r.threshold as usize;
        println!(
            "{} {:<9} v{:<5} expires {}  {} of {} signed [{}]{}",
            if short { "✘" } else { "✔" },
            r.role,
            r.version,
            r.expires,
            r.listed_by.len(),
            r.threshold,
            short_ids(&r.keyids),
            if short { "  SHORT OF SIGNATURES" } else { "" }
        );
    }
    match repo::staged(&repo)? {
        None => Ok(true),
        Some(s) => {
            println!(
                "staged: root version {} ({})",
                s.version,
                display_name(&s.path)
            );
            print_staged(&s);
            Ok(s.complete())
        }
    }
}

fn print_staged(s: &repo::StagedStatus) {
    println!(
        "  body sha256 {} (give it to `repo sign --expect`)",
        s.digest
    );
    for c in &s.changes {
        println!("  changes {c}");
    }
    for (label, (threshold, signed, missing)) in [
        ("published root's keys", &s.old),
        ("new root's keys", &s.new),
    ] {
        println!(
            "  {} {label}: {} of {} needed signed [{}]; missing [{}]",
            if signed.len() as u64 >= *threshold {
                "✔"
            } else {
                "✘"
            },
            signed.len(),
            threshold,
            short_ids(signed),
            short_ids(missing)
        );
    }
}

/// Key ids, 12 characters each.
fn short_ids(ids: &[String]) -> String {
    ids.iter()
        .map(|id| id.get(..12).unwrap_or(id))
        .collect::<Vec<_>>()
        .join(", ")
}
