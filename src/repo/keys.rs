//! Signing keys on disk: `PATH` holds a private key as PKCS#8 PEM (what python-tuf's
//! `CryptoSigner` and python's `cryptography` read and write) — ed25519 (the default),
//! ecdsa-p256 or rsa-pss, plain or passphrase-encrypted (`ENCRYPTED PRIVATE KEY`) — mode 0600;
//! `PATH.pub` holds the public key as TUF key JSON
//! (`{"keytype":"ed25519","scheme":"ed25519","keyval":{...}}`).
//!
//! A role key directory (KEYDIR) holds one such pair per key of each role: `root`, `targets`,
//! `snapshot`, `timestamp`, and `<role>@2`, `<role>@3`, ... for roles with more keys.
//!
//! Passphrases ([`set_passphrase_source`]): the environment variable `TRUSTFS_KEY_PASSPHRASE`,
//! a file descriptor (`--passphrase-fd N`: its first line), else a prompt on the terminal
//! (`/dev/tty`, not echoed), asked once per key file.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::schema::{Key, KeyType, SigningKey};

use super::atomic::{write_atomic, TempFile};
use super::error::{display_name, RepoError};

/// The environment variable a passphrase may come from.
pub const PASSPHRASE_ENV: &str = "TRUSTFS_KEY_PASSPHRASE";

/// Where passphrases come from when an encrypted key is loaded (or a key is encrypted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassphraseSource {
    /// `TRUSTFS_KEY_PASSPHRASE` if set, else a prompt on the terminal.
    Default,
    /// The first line read from this file descriptor (read once, used for every key).
    Fd(i32),
}

struct Passphrases {
    source: PassphraseSource,
    /// Read from the fd (it can be read only once).
    from_fd: Option<Vec<u8>>,
    /// Prompted for, by key file.
    prompted: BTreeMap<PathBuf, Vec<u8>>,
}

static PASSPHRASES: Mutex<Passphrases> = Mutex::new(Passphrases {
    source: PassphraseSource::Default,
    from_fd: None,
    prompted: BTreeMap::new(),
});

/// Choose where passphrases come from (the CLI's `--passphrase-fd`).
pub fn set_passphrase_source(source: PassphraseSource) {
    PASSPHRASES.lock().unwrap_or_else(|e| e.into_inner()).source = source;
}

/// The passphrase for the key file `path`: `purpose` says why it is asked (a prompt shows it).
fn passphrase_for(path: &Path, purpose: &str) -> Result<Vec<u8>, RepoError> {
    let bad = |reason: String| RepoError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let mut p = PASSPHRASES.lock().unwrap_or_else(|e| e.into_inner());
    if let PassphraseSource::Fd(fd) = p.source {
        if p.from_fd.is_none() {
            p.from_fd =
                Some(read_fd_line(fd).map_err(|e| bad(format!("--passphrase-fd {fd}: {e}")))?);
        }
        return Ok(p.from_fd.clone().unwrap_or_default());
    }
    if let Some(v) = std::env::var_os(PASSPHRASE_ENV) {
        use std::os::unix::ffi::OsStrExt;
        return Ok(v.as_bytes().to_vec());
    }
    if let Some(v) = p.prompted.get(path) {
        return Ok(v.clone());
    }
    let v = prompt(&format!("Passphrase {purpose} {}: ", display_name(path))).map_err(|e| {
        bad(format!(
            "needs a passphrase and there is no terminal to ask on ({e}); give it in {PASSPHRASE_ENV} or with --passphrase-fd"
        ))
    })?;
    p.prompted.insert(path.to_owned(), v.clone());
    Ok(v)
}

/// The first line of file descriptor `fd` (without its newline).
fn read_fd_line(fd: i32) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    if fd < 0 {
        return Err(std::io::Error::from(ErrorKind::InvalidInput));
    }
    // Our own descriptor to own and close; the caller's stays open.
    let mut f = crate::sys::dup(fd)?;
    // Up to the end of the first line (a pipe that stays open after it must not block us).
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match f.read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => out.push(byte[0]),
        }
        if out.len() > 4096 {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "the first line is longer than 4096 bytes",
            ));
        }
    }
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    Ok(out)
}

/// Ask on the terminal (`/dev/tty`) without echo.
fn prompt(question: &str) -> std::io::Result<Vec<u8>> {
    let tty = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let line = crate::sys::read_line_without_echo(&tty, question)?;
    Ok(line.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
}

/// The path of the public key file belonging to the private key at `path`: `path` + `.pub`.
pub fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Generate a new ed25519 key at `path` (and `path.pub`), unencrypted. See [`generate_with`].
pub fn generate(path: &Path, force: bool) -> Result<Key, RepoError> {
    generate_with(path, force, KeyType::Ed25519, false)
}

/// Generate a new key of `kind` at `path` (and `path.pub`), passphrase-encrypted if `encrypt`.
/// Refuses to replace an existing private or public key file unless `force`. The private key
/// file is created with mode 0600 from the start and appears under its final name only when
/// complete.
pub fn generate_with(
    path: &Path,
    force: bool,
    kind: KeyType,
    encrypt: bool,
) -> Result<Key, RepoError> {
    let public_path = pub_path(path);
    if !force {
        for p in [path, public_path.as_path()] {
            if fs::symlink_metadata(p).is_ok() {
                return Err(RepoError::KeyExists { path: p.to_owned() });
            }
        }
    }
    let bad = |reason: String| RepoError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let key = SigningKey::generate_of(kind).map_err(bad)?;
    let pem = match encrypt {
        true => {
            let pass = new_passphrase(path)?;
            key.to_encrypted_pem(&pass).map_err(bad)?
        }
        false => key.to_pkcs8_pem().map_err(bad)?,
    };
    write_private(path, &pem, force)?;
    let public = key.public_key();
    write_atomic(&public_path, &public_json(&public), 0o644)?;
    Ok(public)
}

/// A passphrase for encrypting the key at `path`: from the source, or asked twice on the
/// terminal. An empty one is refused.
fn new_passphrase(path: &Path) -> Result<Vec<u8>, RepoError> {
    let bad = |reason: String| RepoError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let from_source = {
        let p = PASSPHRASES.lock().unwrap_or_else(|e| e.into_inner());
        p.source != PassphraseSource::Default || std::env::var_os(PASSPHRASE_ENV).is_some()
    };
    let pass = if from_source {
        passphrase_for(path, "for")?
    } else {
        let first = passphrase_for(path, "to encrypt")?;
        let again = prompt(&format!("Again, for {}: ", display_name(path)))
            .map_err(|e| bad(e.to_string()))?;
        if first != again {
            return Err(bad("the two passphrases differ; nothing written".into()));
        }
        first
    };
    if pass.is_empty() {
        return Err(bad("an empty passphrase; nothing written".into()));
    }
    Ok(pass)
}

/// Encrypt the (unencrypted) key at `path` in place with a passphrase.
pub fn encrypt(path: &Path) -> Result<Key, RepoError> {
    let bad = |reason: String| RepoError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let pem = read_key_file(path)?;
    if SigningKey::is_encrypted_pem(&pem) {
        return Err(bad("is encrypted already".into()));
    }
    let key = SigningKey::from_pkcs8_pem(&pem).map_err(bad)?;
    let pass = new_passphrase(path)?;
    let encrypted = key.to_encrypted_pem(&pass).map_err(bad)?;
    write_private(path, &encrypted, true)?;
    Ok(key.public_key())
}

/// Whether the key file at `path` is passphrase-encrypted.
pub fn is_encrypted(path: &Path) -> Result<bool, RepoError> {
    Ok(SigningKey::is_encrypted_pem(&read_key_file(path)?))
}

fn read_key_file(path: &Path) -> Result<String, RepoError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(RepoError::KeyMissing {
            path: path.to_owned(),
        }),
        Err(e) => Err(RepoError::io("read", path, e)),
    }
}

/// Write a private key file: mode 0600 from the start, under its name only when complete.
fn write_private(path: &Path, pem: &str, force: bool) -> Result<(), RepoError> {
    let mut tmp = TempFile::beside(path, 0o600)?;
    // Whatever the umask did, the key is 0600 (umask can only have removed bits).
    set_mode(tmp.path(), 0o600)?;
    tmp.write_all(pem.as_bytes())?;
    if force {
        tmp.persist(path)
    } else {
        // Atomic no-overwrite: a key that appeared since the check above is not replaced.
        tmp.persist_noclobber(path)
    }
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
///
/// An encrypted key is decrypted with the passphrase from the source set by
/// [`set_passphrase_source`]; a wrong one is an error naming the file.
pub fn load(path: &Path) -> Result<SigningKey, RepoError> {
    let pem = read_key_file(path)?;
    let passphrase = match SigningKey::is_encrypted_pem(&pem) {
        true => Some(passphrase_for(path, "for")?),
        false => None,
    };
    let key =
        SigningKey::from_pem(&pem, passphrase.as_deref()).map_err(|reason| RepoError::KeyFile {
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
