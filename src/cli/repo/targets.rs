//! `repo init` and `repo add`: a new repository, and the target list made equal to a directory.

use std::path::PathBuf;

use super::{warn_root_expiry, KeyArgs};
use crate::repo::{self, display_name, Expiries, RepoError, Sharding};

pub(super) fn init(repo: PathBuf, common: KeyArgs) -> Result<(), RepoError> {
    let report = repo::init(&repo::InitOptions {
        repo,
        keydir: common.keys,
        expires: Expiries::from_specs(&common.expires)?,
    })?;
    for k in &report.generated_keys {
        eprintln!("generated key {}", display_name(k));
    }
    for f in &report.written {
        println!("wrote {}", display_name(f));
    }
    Ok(())
}

pub(super) fn add(
    repo: PathBuf,
    content_dir: PathBuf,
    common: KeyArgs,
    sha512: bool,
    role: Option<String>,
    sharding: Sharding,
    reread: bool,
) -> Result<(), RepoError> {
    let expires = match &role {
        Some(r) => Expiries::from_specs_for_role(&common.expires, r)?,
        None => Expiries::from_specs(&common.expires)?,
    };
    let report = repo::add(&repo::AddOptions {
        repo,
        keydir: common.keys,
        content_dir,
        sha512,
        expires,
        role,
        sharding,
        reread,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    })?;
    if let Some(k) = report.bins.as_ref().and_then(|b| b.generated_key.as_ref()) {
        eprintln!("generated key {}", display_name(k));
    }
    for w in &report.warnings {
        eprintln!("trustfs: warning: {w}");
    }
    for s in &report.skipped {
        eprintln!(
            "trustfs: warning: skipped {}: {}",
            display_name(&s.path),
            s.reason
        );
    }
    for (label, list) in [
        ("added", &report.added),
        ("changed", &report.changed),
        ("removed", &report.removed),
    ] {
        for t in list {
            // Names come from CONTENT_DIR: escaped, so none can forge a line.
            println!("{label} {}", display_name(t));
        }
    }
    if let Some(b) = &report.bins {
        let last = b.count - 1;
        let width = (b.bit_length as usize).div_ceil(4);
        let range = format!(
            "{p}-{0:0width$x} … {p}-{last:0width$x}",
            0,
            p = display_name(&b.name_prefix)
        );
        match b.previous_bit_length {
            Some(0) => println!("sharded targets into {} hash bins ({range})", b.count),
            Some(old) => println!(
                "re-sharded targets from {} into {} hash bins ({range})",
                1u64 << old,
                b.count
            ),
            None => {}
        }
    }
    let role_version = match &report.bins {
        Some(b) if !b.targets_resigned => format!("{} (unchanged)", report.role_version),
        _ => report.role_version.to_string(),
    };
    let bins = match &report.bins {
        Some(b) => format!(", {} hash bins ({} signed anew)", b.count, b.resigned),
        None => String::new(),
    };
    println!(
        "{} targets ({} added, {} changed, {} unchanged, {} removed); {} version {role_version}{bins}, snapshot version {}, timestamp version {}",
        report.added.len() + report.changed.len() + report.unchanged.len(),
        report.added.len(),
        report.changed.len(),
        report.unchanged.len(),
        report.removed.len(),
        report.role.as_deref().unwrap_or("targets"),
        report.versions.snapshot,
        report.versions.timestamp
    );
    if report.not_reread > 0 {
        println!(
            "{} files not read again (unchanged since the last add; --reread reads them)",
            report.not_reread
        );
    }
    if let Some(b) =
        (report.bins.as_ref()).filter(|b| b.previous_bit_length.is_none() && b.loaded < b.count)
    {
        println!(
            "{} of {} hash bins read (the others list no file that changed)",
            b.loaded, b.count
        );
    }
    if let Some(t) = report.root_expires {
        warn_root_expiry(t);
    }
    Ok(())
}
