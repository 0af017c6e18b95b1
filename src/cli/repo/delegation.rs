//! `repo delegate` and `repo undelegate`: a delegated role added, changed or removed.

use std::path::PathBuf;

use super::{DelegateArgs, KeyArgs};
use crate::repo::{self, display_name, DelegatedPaths, Expiries, RepoError};

pub(super) fn delegate(args: DelegateArgs) -> Result<(), RepoError> {
    let paths = if args.hash_prefixes.is_empty() {
        DelegatedPaths::Paths(args.paths)
    } else if args.paths.is_empty() {
        DelegatedPaths::HashPrefixes(args.hash_prefixes)
    } else {
        // The "scope" group already makes clap refuse both; kept so the library is never asked.
        return Err(RepoError::InvalidArgument(
            "give --path or --hash-prefix, not both".into(),
        ));
    };
    let report = repo::delegate(&repo::DelegateOptions {
        expires: Expiries::from_specs_for_role(&args.common.expires, &args.role)?,
        repo: args.repo,
        keydir: args.common.keys,
        role: args.role.clone(),
        delegator: args.delegator.clone(),
        paths,
        threshold: args.threshold,
        terminating: args.terminating,
        public_keys: args.public_keys,
    })?;
    for k in &report.generated_keys {
        eprintln!("generated key {}", display_name(k));
    }
    println!(
        "{} role {} (keys {}; threshold {}); {} version {}, {} version {}, snapshot version {}, timestamp version {}",
        if report.created { "created" } else { "updated" },
        args.role,
        report.keyids.join(", "),
        args.threshold,
        args.role,
        report.role_version,
        args.delegator,
        report.delegator_version,
        report.versions.snapshot,
        report.versions.timestamp
    );
    Ok(())
}

pub(super) fn undelegate(repo: PathBuf, common: KeyArgs, role: String) -> Result<(), RepoError> {
    let (delegator, v) = repo::undelegate(&repo::UndelegateOptions {
        repo,
        keydir: common.keys,
        expires: Expiries::from_specs(&common.expires)?,
        role: role.clone(),
    })?;
    println!(
        "removed the delegation of {role} from {delegator}; targets version {}, snapshot version {}, timestamp version {}",
        v.targets, v.snapshot, v.timestamp
    );
    Ok(())
}
