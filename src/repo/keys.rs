//! Signing keys on disk: `PATH` holds an ed25519 private key as unencrypted PKCS#8 PEM (what
//! python-tuf's `CryptoSigner` and securesystemslib read and write), mode 0600; `PATH.pub` holds
//! the public key as TUF key JSON (`{"keytype":"ed25519","scheme":"ed25519","keyval":{...}}`).
//!
//! A role key directory (KEYDIR) holds one such pair per top-level role: `root`, `targets`,
//! `snapshot`, `timestamp` (plus `.pub`).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::schema::{Key, SigningKey};

use super::atomic::{write_atomic, TempFile};
use super::error::{display_name, RepoError};

/// The path of the public key file belonging to the private key at `path`: `path` + `.pub`.
pub fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Generate a new ed25519 key at `path` (and `path.pub`). Refuses to replace an existing private
/// or public key file unless `force`. The private key file is created with mode 0600 from the
/// start and appears under its final name only when complete.
pub fn generate(path: &Path, force: bool) -> Result<Key, RepoError> {
    let public_path = pub_path(path);
    if !force {
        for p in [path, public_path.as_path()] {
            if fs::symlink_metadata(p).is_ok() {
                return Err(RepoError::KeyExists { path: p.to_owned() });
            }
        }
    }
    let key = SigningKey::generate();
    let pem = key.to_pkcs8_pem().map_err(|reason| RepoError::KeyFile {
        path: path.to_owned(),
        reason,
    })?;
    let mut tmp = TempFile::beside(path, 0o600)?;
    // Whatever the umask did, the key is 0600 (umask can only have removed bits).
    set_mode(tmp.path(), 0o600)?;
    tmp.write_all(pem.as_bytes())?;
    if force {
        tmp.persist(path)?;
    } else {
        // Atomic no-overwrite: a key that appeared since the check above is not replaced.
        tmp.persist_noclobber(path)?;
    }
    let public = key.public_key();
    write_atomic(&public_path, &public_json(&public), 0o644)?;
    Ok(public)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), RepoError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| RepoError::io("set permissions of", path, e))
}

/// The `.pub` file content: the key's TUF JSON, pretty-printed, newline-terminated.
fn public_json(key: &Key) -> Vec<u8> {
    // Serializing a `Value` of strings cannot fail; an empty file would fail to load, not mislead.
    let mut out = serde_json::to_vec_pretty(&key.to_value()).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Load the private key at `path`. If `path.pub` exists it must name the same public key.
pub fn load(path: &Path) -> Result<SigningKey, RepoError> {
    let pem = match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(RepoError::KeyMissing {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(RepoError::io("read", path, e)),
    };
    let key = SigningKey::from_pkcs8_pem(&pem).map_err(|reason| RepoError::KeyFile {
        path: path.to_owned(),
        reason,
    })?;
    let public_path = pub_path(path);
    match fs::read(&public_path) {
        Ok(bytes) => {
            let listed = load_public_bytes(&public_path, &bytes)?;
            let actual = key.public_key();
            if listed.keytype != actual.keytype || listed.public != actual.public {
                return Err(RepoError::KeyFile {
                    path: public_path,
                    reason: format!(
                        "does not hold the public key of {} (a mismatched key pair)",
                        display_name(path)
                    ),
                });
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(RepoError::io("read", &public_path, e)),
    }
    Ok(key)
}

/// Load the private key at `path`, generating a new pair there if neither file exists.
pub fn load_or_generate(path: &Path) -> Result<(SigningKey, bool), RepoError> {
    if fs::symlink_metadata(path).is_err() && fs::symlink_metadata(pub_path(path)).is_err() {
        generate(path, false)?;
        return Ok((load(path)?, true));
    }
    Ok((load(path)?, false))
}

/// Load a public key file (TUF key JSON).
pub fn load_public(path: &Path) -> Result<Key, RepoError> {
    let bytes = fs::read(path).map_err(|e| RepoError::io("read", path, e))?;
    load_public_bytes(path, &bytes)
}

fn load_public_bytes(path: &Path, bytes: &[u8]) -> Result<Key, RepoError> {
    let bad = |reason: String| RepoError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not TUF key JSON: {e}")))?;
    Key::from_value(&value).map_err(|e| bad(format!("not TUF key JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pub_path_appends_suffix() {
        assert_eq!(
            pub_path(Path::new("/k/targets")),
            PathBuf::from("/k/targets.pub")
        );
        assert_eq!(pub_path(Path::new("a.key")), PathBuf::from("a.key.pub"));
    }
}
