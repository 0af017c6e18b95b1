//! The target index saved in the state directory, so a start or a refresh whose metadata has not
//! changed skips loading every delegated role (at a million targets in hash bins: thousands of
//! files, seconds of parsing and signature checks).
//!
//! The file (`targets-index.bin`) holds a key — a digest of what the index was built from and by
//! what: the format, the program (a digest of its executable), the trusted root's version and the
//! canonical `signed` parts of the trusted snapshot and top-level targets roles (snapshot names the version of every other targets role) — the earliest
//! expiry among the delegated roles behind the index, the encoded index and a digest of all of it
//! (a torn or damaged file is ignored, never half-read). It is used only when the key matches
//! the metadata just verified and that expiry has not passed; otherwise the index is built from
//! the metadata and saved anew. Only an index built without problems (every role loaded) is saved.
//!
//! Like the verified objects next to it, the file is trusted because the state directory is: it
//! must belong to the daemon's user and not be writable by others ([`StateDir::open`]).

use sha2::{Digest, Sha256};

use super::client::Client;
use super::state::StateDir;
use crate::index::TargetIndex;
use crate::schema::UtcTime;

const FILE: &str = "targets-index.bin";
/// Bumped with any change in what an index holds or how it is built.
const FORMAT: &str = "trustfs saved index 1";

/// The earliest expiry among the delegated roles an index was built from, and that role.
pub type RoleExpiry = Option<(String, UtcTime)>;

/// What an index built now by `client` (refreshed) would be built from; None without a trusted
/// snapshot and top-level targets.
pub fn key(client: &Client) -> Option<[u8; 32]> {
    let snapshot = client.snapshot()?.canonical_signed().ok()?;
    let targets = client.targets()?.canonical_signed().ok()?;
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(build_id());
    h.update(client.root().version().to_le_bytes());
    for part in [&snapshot, &targets] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Some(h.finalize().into())
}

/// A digest of the running program: an index built by another build (whose client may order
/// delegations or filter listings differently) is never used, without relying on a format
/// version being bumped by hand. Empty when the program cannot be read (then only the format
/// and package version tell builds apart).
fn build_id() -> &'static [u8] {
    static ID: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let Ok(mut exe) = std::fs::File::open("/proc/self/exe") else {
            return Vec::new();
        };
        let mut h = Sha256::new();
        match std::io::copy(&mut exe, &mut h) {
            Ok(_) => h.finalize().to_vec(),
            Err(_) => Vec::new(),
        }
    })
}

/// The saved index for `key`, if there is one, intact, and its roles have not expired at `now`.
pub fn load(state: &StateDir, key: &[u8; 32], now: UtcTime) -> Option<(TargetIndex, RoleExpiry)> {
    let bytes = std::fs::read(state.path().join(FILE)).ok()?;
    let (body, digest) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    let (saved_key, rest) = body.split_at_checked(32)?;
    // Another key (metadata changed since it was saved): no need to check the rest.
    if saved_key != key || Sha256::digest(body)[..] != *digest {
        return None;
    }
    let (expiry, rest) = decode_expiry(rest)?;
    if let Some((_, t)) = &expiry {
        if *t <= now {
            return None;
        }
    }
    let index = TargetIndex::decode(rest).ok()?;
    Some((index, expiry))
}

/// Save `index` for `key` (a cache: atomically, without waiting for the disk).
pub fn save(state: &StateDir, key: &[u8; 32], expiry: &RoleExpiry, index: &TargetIndex) {
    let mut out = Vec::new();
    out.extend_from_slice(key);
    match expiry {
        Some((role, t)) => {
            out.push(1);
            out.extend_from_slice(&t.0.to_le_bytes());
            out.extend_from_slice(&(role.len() as u64).to_le_bytes());
            out.extend_from_slice(role.as_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&index.encode());
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    // Failing to save costs the next start time, nothing else.
    let _ = state.store_file(FILE, &out);
}

fn decode_expiry(b: &[u8]) -> Option<(RoleExpiry, &[u8])> {
    let (&tag, rest) = b.split_first()?;
    match tag {
        0 => Some((None, rest)),
        1 => {
            let (t, rest) = rest.split_at_checked(8)?;
            let t = i64::from_le_bytes(t.try_into().ok()?);
            let (n, rest) = rest.split_at_checked(8)?;
            let n = usize::try_from(u64::from_le_bytes(n.try_into().ok()?)).ok()?;
            let (role, rest) = rest.split_at_checked(n)?;
            let role = std::str::from_utf8(role).ok()?.to_owned();
            Some((Some((role, UtcTime(t))), rest))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Hashes, TargetInfo, TargetPath};

    #[test]
    fn only_an_intact_file_for_the_same_key_and_unexpired_roles_is_used() {
        let dir = std::env::temp_dir().join(format!("trustfs-saved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = StateDir::open(&dir).unwrap();
        let index: TargetIndex = [(
            TargetPath::parse("a/b").unwrap(),
            TargetInfo {
                length: 1,
                hashes: Hashes::from([("sha256", vec![1u8; 32])]),
                custom: None,
                chunk_root: None,
            },
        )]
        .into_iter()
        .collect();
        let key = [7u8; 32];
        let expiry = Some(("bins-0".to_owned(), UtcTime(2_000)));
        save(&state, &key, &expiry, &index);
        let (got, exp) = load(&state, &key, UtcTime(1_000)).unwrap();
        assert_eq!((got, exp), (index.clone(), expiry));
        assert!(
            load(&state, &[8u8; 32], UtcTime(1_000)).is_none(),
            "other key"
        );
        assert!(
            load(&state, &key, UtcTime(2_000)).is_none(),
            "a role expired"
        );
        // Any damaged byte: the digest no longer matches.
        let path = dir.join(FILE);
        let good = std::fs::read(&path).unwrap();
        for at in [0, 40, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert!(load(&state, &key, UtcTime(1_000)).is_none(), "byte {at}");
        }
        std::fs::write(&path, &good[..good.len() - 5]).unwrap();
        assert!(load(&state, &key, UtcTime(1_000)).is_none());
        save(&state, &key, &None, &index);
        assert_eq!(load(&state, &key, UtcTime(i64::MAX)).unwrap().1, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
