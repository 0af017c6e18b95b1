//! A root staged in `REPO/staged/` until enough people have signed it: `repo sign` adds a
//! signature to the root the signer reviewed, `repo publish` writes it once both thresholds are
//! met; who signed and who is missing.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::schema::{verify_threshold, Key, Metadata, Root, Signature};

use super::newroot::{body_digest, check_new_root, describe_changes, publish_root};
use crate::repo::atomic::{write_atomic, RepoLock};
use crate::repo::chain::Versions;
use crate::repo::error::{display_name, RepoError};
use crate::repo::expiries::Expiries;
use crate::repo::keys;
use crate::repo::state::RepoState;

/// Where the signatures of a staged root stand.
#[derive(Clone, Debug)]
pub struct StagedStatus {
    pub path: PathBuf,
    pub version: u64,
    /// sha256 of the canonical `signed` part: what each signer confirms (`repo sign --expect`).
    pub digest: String,
    /// What the staged root changes against the published one, one line each.
    pub changes: Vec<String>,
    /// The published root's root role: (threshold, signed key ids, missing key ids).
    pub old: (u64, Vec<String>, Vec<String>),
    /// The staged root's own root role.
    pub new: (u64, Vec<String>, Vec<String>),
}

impl StagedStatus {
    pub fn complete(&self) -> bool {
        self.old.1.len() as u64 >= self.old.0 && self.new.1.len() as u64 >= self.new.0
    }
}

/// The staging directory of a repository.
pub fn staged_dir(repo: &Path) -> PathBuf {
    repo.join("staged")
}

/// Add a signature by the key at `key` to the staged root of `repo`, if the staged root is the
/// one the signer reviewed: `expect` is the sha256 of its canonical `signed` part, as `rotate`
/// and `status` print it (with what it changes).
pub fn sign_staged(repo: &Path, key_path: &Path, expect: &str) -> Result<StagedStatus, RepoError> {
    let _lock = RepoLock::acquire(repo)?;
    let state = RepoState::load(repo)?;
    let (path, mut md) = load_staged(repo, &state)?;
    let digest = body_digest(&md)?;
    if !digest.eq_ignore_ascii_case(expect.trim()) {
        return Err(RepoError::InvalidArgument(format!(
            "{} is not the root you expect: its body is sha256 {digest}, not {expect}; it changes:\n  {}",
            display_name(&path),
            describe_changes(&state.root.signed, &md.signed).join("\n  ")
        )));
    }
    check_new_root(&state.root.signed, &md)?;
    let key = keys::load(key_path)?;
    let ours = key.public_key();
    let keyid = [&state.root.signed, &md.signed]
        .iter()
        .find_map(|root| {
            let listed = root.roles.get("root")?;
            listed.keyids.iter().find(|id| {
                root.keys
                    .get(*id)
                    .and_then(|v| Key::from_value(v).ok())
                    .is_some_and(|k| k.identity() == ours.identity())
            })
        })
        .cloned()
        .ok_or_else(|| {
            RepoError::InvalidArgument(format!(
                "{}: this key (key id {}) is neither a root key of the published root nor of the staged one; refusing to sign",
                display_name(key_path),
                ours.compute_keyid()
            ))
        })?;
    let msg = md
        .canonical_signed()
        .map_err(|e| RepoError::Internal(e.to_string()))?;
    let sig = key.sign(&msg);
    if ours.verify(&msg, &sig) != Ok(true) {
        return Err(RepoError::Internal(format!(
            "the signature by {} does not verify with its public key",
            display_name(key_path)
        )));
    }
    md.signatures.retain(|s| s.keyid != keyid);
    md.signatures.push(Signature {
        keyid,
        sig: hex::encode(sig),
    });
    write_atomic(&path, &md.to_bytes(), 0o644)?;
    staged_status(&path, &state.root.signed, &md)
}

/// Publish the staged root of `repo` once both thresholds are met (then as
/// [`rotate`](super::rotate) does).
pub fn publish_staged(
    repo: &Path,
    keydir: &Path,
    expires: &Expiries,
) -> Result<(u64, Versions, Vec<PathBuf>), RepoError> {
    let _lock = RepoLock::acquire(repo)?;
    let state = RepoState::load(repo)?;
    let (path, md) = load_staged(repo, &state)?;
    let status = staged_status(&path, &state.root.signed, &md)?;
    check_new_root(&state.root.signed, &md)?;
    // The same checks a client makes (§5.3.4): a threshold of the old root and of the new one.
    for (which, root) in [("published", &state.root.signed), ("staged", &md.signed)] {
        let listed = root
            .roles
            .get("root")
            .ok_or_else(|| RepoError::Internal("root lists no root role".into()))?;
        verify_threshold("root", &md, &listed.keyids, listed.threshold, &root.keys).map_err(
            |source| {
                RepoError::InvalidArgument(format!(
                    "{} is short of signatures by the {which} root's keys ({source}); signed: {} of {} old, {} of {} new",
                    display_name(&path),
                    status.old.1.len(),
                    status.old.0,
                    status.new.1.len(),
                    status.new.0
                ))
            },
        )?;
    }
    let version = md.version();
    let (versions, retired) = publish_root(state, md, keydir, expires)?;
    fs::remove_file(&path).map_err(|e| RepoError::io("remove", &path, e))?;
    Ok((version, versions, retired))
}

/// The staged root, if any, and its signature status against the published root.
pub fn staged(repo: &Path) -> Result<Option<StagedStatus>, RepoError> {
    let state = RepoState::load(repo)?;
    if existing_staged(repo)?.is_none() {
        return Ok(None);
    }
    let (path, md) = load_staged(repo, &state)?;
    staged_status(&path, &state.root.signed, &md).map(Some)
}

/// The staged root file, whatever its version.
pub(super) fn existing_staged(repo: &Path) -> Result<Option<PathBuf>, RepoError> {
    let dir = staged_dir(repo);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RepoError::io("list", &dir, e)),
    };
    for e in entries {
        let e = e.map_err(|err| RepoError::io("list", &dir, err))?;
        if e.file_name().to_string_lossy().ends_with(".root.json") {
            return Ok(Some(e.path()));
        }
    }
    Ok(None)
}

/// The staged root: it must be the version after the published one (else stale).
fn load_staged(repo: &Path, state: &RepoState) -> Result<(PathBuf, Metadata<Root>), RepoError> {
    let published = state.root.version();
    let path = existing_staged(repo)?.ok_or_else(|| {
        RepoError::InvalidArgument(format!(
            "nothing is staged in {} (a rotation stages a root there when it needs signatures from elsewhere)",
            display_name(&staged_dir(repo))
        ))
    })?;
    let bytes = read_staged(&path)?;
    let md = Metadata::<Root>::from_slice(&display_name(&path).to_string(), &bytes).map_err(
        |source| RepoError::Untrusted {
            file: path.clone(),
            source,
        },
    )?;
    if Some(md.version()) != published.checked_add(1)
        || path.file_name() != Some(format!("{}.root.json", md.version()).as_ref())
    {
        return Err(RepoError::InvalidArgument(format!(
            "{} is stale: it is root version {}, but the published root is version {published} (stage the rotation again)",
            display_name(&path),
            md.version()
        )));
    }
    Ok((path, md))
}

/// Which keys of the published root's root role and of `md`'s own have signed `md`.
pub(super) fn staged_status(
    path: &Path,
    published: &Root,
    md: &Metadata<Root>,
) -> Result<StagedStatus, RepoError> {
    let msg = md
        .canonical_signed()
        .map_err(|e| RepoError::Internal(e.to_string()))?;
    let side = |root: &Root| -> (u64, Vec<String>, Vec<String>) {
        let Some(listed) = root.roles.get("root") else {
            return (1, Vec::new(), Vec::new());
        };
        let mut signed = Vec::new();
        let mut missing = Vec::new();
        // One key counts once, whatever ids it is listed under (as clients count).
        let mut counted: BTreeSet<Vec<u8>> = BTreeSet::new();
        for id in &listed.keyids {
            let key = root.keys.get(id).and_then(|v| Key::from_value(v).ok());
            let ok = key.as_ref().is_some_and(|k| {
                md.signatures.iter().any(|s| {
                    s.keyid == *id
                        && hex::decode(&s.sig).is_ok_and(|sig| k.verify(&msg, &sig) == Ok(true))
                }) && counted.insert(k.identity())
            });
            if ok {
                signed.push(id.clone());
            } else {
                missing.push(id.clone());
            }
        }
        (listed.threshold, signed, missing)
    };
    Ok(StagedStatus {
        path: path.to_owned(),
        version: md.version(),
        digest: body_digest(md)?,
        changes: describe_changes(published, &md.signed),
        old: side(published),
        new: side(&md.signed),
    })
}

/// The largest staged root read (clients download at most this much root metadata too).
const MAX_STAGED: u64 = 5_000_000;

/// Read the staged file: a regular file (never a FIFO or device), bounded.
fn read_staged(path: &Path) -> Result<Vec<u8>, RepoError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| RepoError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| RepoError::io("stat", path, e))?;
    if !meta.is_file() || meta.len() > MAX_STAGED {
        return Err(RepoError::InvalidArgument(format!(
            "{}: not a regular file of at most {MAX_STAGED} bytes",
            display_name(path)
        )));
    }
    let mut out = Vec::new();
    file.take(MAX_STAGED)
        .read_to_end(&mut out)
        .map_err(|e| RepoError::io("read", path, e))?;
    Ok(out)
}
