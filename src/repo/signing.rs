//! Signing: which key files in KEYDIR sign a role ([`Signers`] for the top-level roles,
//! [`find_role_keys`] for any role), signing an edited `signed` value with them, and the warning
//! about an unencrypted root key.
//!
//! Edits are made on the parsed `signed` JSON value, not on re-serialized structs, so fields trustfs
//! does not know (python-tuf's `unrecognized_fields`, a target's `custom`, delegations) survive a
//! re-sign byte for byte in canonical form.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::schema::{Key, Metadata, Signature, Signed, SigningKey};

use super::error::{display_name, RepoError};
use super::keys;
use super::state::RepoState;

/// The top-level roles, in the order their key files are looked for in KEYDIR.
pub const TOP_LEVEL_ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

pub(crate) fn keyfile(keydir: &Path, role: &str) -> PathBuf {
    keydir.join(role)
}

pub(crate) fn set_field(v: &mut Value, field: &str, value: Value) -> Result<(), RepoError> {
    v.as_object_mut()
        .ok_or_else(|| RepoError::Internal("signed value is not an object".into()))?
        .insert(field.to_owned(), value);
    Ok(())
}

/// Sign a `signed` value with one key: returns the metadata and the bytes to write. The bytes are
/// parsed back before they are returned, so trustfs never writes metadata it would not read.
pub(crate) fn sign<T: Signed>(
    value: Value,
    key: &SigningKey,
    keyid: &str,
) -> Result<(Metadata<T>, Vec<u8>), RepoError> {
    sign_all(value, &[(key, keyid)])
}

/// Sign a `signed` value with every key given (one signature per key id).
pub(crate) fn sign_all<T: Signed>(
    value: Value,
    keys: &[(&SigningKey, &str)],
) -> Result<(Metadata<T>, Vec<u8>), RepoError> {
    let role = T::TYPE.as_str();
    let internal = |e: String| RepoError::Internal(format!("signing {role}: {e}"));
    if keys.is_empty() {
        return Err(internal("no signing key".into()));
    }
    let signed: T = serde_json::from_value(value.clone()).map_err(|e| internal(e.to_string()))?;
    let mut md = Metadata {
        signed,
        signed_value: value,
        signatures: Vec::new(),
    };
    let msg = md.canonical_signed().map_err(|e| internal(e.to_string()))?;
    for (key, keyid) in keys {
        let sig = key.sign(&msg);
        // A key trustfs can sign with but a client cannot verify (an RSA key of an odd size)
        // must stop the command before anything is written.
        if key.public_key().verify(&msg, &sig) != Ok(true) {
            return Err(internal(format!(
                "the signature by key {keyid} does not verify with its public key"
            )));
        }
        md.signatures.push(Signature {
            keyid: (*keyid).to_owned(),
            sig: hex::encode(sig),
        });
    }
    let bytes = md.to_bytes();
    Metadata::<T>::from_slice(role, &bytes).map_err(|e| internal(e.to_string()))?;
    Ok((md, bytes))
}

/// The signing keys of some top-level roles: for each, the keys in KEYDIR (`<role>`,
/// `<role>@2`, ...) that the current root lists for it, matched by key material, at least as
/// many as its threshold.
pub(crate) struct Signers {
    keys: BTreeMap<String, Vec<(SigningKey, String)>>,
}

impl Signers {
    pub(crate) fn load(
        state: &RepoState,
        keydir: &Path,
        roles: &[&str],
    ) -> Result<Signers, RepoError> {
        let root = &state.root.signed;
        let mut out = BTreeMap::new();
        for role in roles {
            let listed = root
                .roles
                .get(*role)
                .ok_or_else(|| RepoError::Internal(format!("root lists no {role} role")))?;
            let found = match find_role_keys(
                keydir,
                role,
                &listed.keyids,
                listed.threshold,
                &root.keys,
                " (as the current root lists it)",
            ) {
                Ok(found) => found,
                // One key file that root does not list: say so plainly (a key from another
                // repository, or one retired by a rotation).
                Err(RepoError::NotEnoughKeys { held: 0, .. })
                    if keydir.join(role).exists() && listed.threshold <= 1 =>
                {
                    let path = keyfile(keydir, role);
                    let key = keys::load(&path)?;
                    return Err(RepoError::WrongKey {
                        role: role.to_string(),
                        path,
                        keyid: key.public_key().compute_keyid(),
                    });
                }
                Err(e) => return Err(e),
            };
            if *role == "root" {
                warn_unencrypted_root(keydir)?;
            }
            out.insert(role.to_string(), found);
        }
        Ok(Signers { keys: out })
    }

    /// The keys of `role`, with the key ids root lists them under.
    pub(crate) fn get(&self, role: &str) -> Result<Vec<(&SigningKey, &str)>, RepoError> {
        self.keys
            .get(role)
            .map(|v| v.iter().map(|(k, id)| (k, id.as_str())).collect())
            .ok_or_else(|| RepoError::Internal(format!("no {role} key loaded")))
    }

    pub(crate) fn has(&self, role: &str) -> bool {
        self.keys.contains_key(role)
    }
}

/// Root keys belong offline and encrypted: say so once when an unencrypted one is used.
pub(crate) fn warn_unencrypted_root(keydir: &Path) -> Result<(), RepoError> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let path = keyfile(keydir, "root");
    if path.exists() && !keys::is_encrypted(&path)? && !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!(
            "trustfs: warning: the root key {} is not encrypted; encrypt it (trustfs key encrypt) and keep it offline",
            display_name(&path)
        );
    }
    Ok(())
}

/// The key files in KEYDIR for role `name`: `<name>` and `<name>@<N>`, sorted.
fn key_files(keydir: &Path, name: &str) -> Result<Vec<PathBuf>, RepoError> {
    let entries = match fs::read_dir(keydir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RepoError::io("list", keydir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RepoError::io("list", keydir, e))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        let numbered = file
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('@'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if file == name || numbered {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Load every key file of role `name` in KEYDIR whose public key the delegation lists (by key
/// material: key ids are labels), one per key id; refuse when they are fewer than `threshold`.
pub(crate) fn find_role_keys(
    keydir: &Path,
    name: &str,
    keyids: &[String],
    threshold: u64,
    keys: &BTreeMap<String, Value>,
    context: &str,
) -> Result<Vec<(SigningKey, String)>, RepoError> {
    let listed: Vec<(&String, Key)> = keyids
        .iter()
        .filter_map(|id| {
            keys.get(id)
                .and_then(|v| Key::from_value(v).ok())
                .map(|k| (id, k))
        })
        .collect();
    let mut found: Vec<(SigningKey, String)> = Vec::new();
    for path in key_files(keydir, name)? {
        let key = keys::load(&path)?;
        let ours = key.public_key();
        let matched = listed.iter().find(|(_, k)| {
            k.keytype == ours.keytype
                && k.scheme == ours.scheme
                && k.public.eq_ignore_ascii_case(&ours.public)
        });
        if let Some((id, _)) = matched {
            if !found.iter().any(|(_, f)| f == *id) {
                found.push((key, (*id).clone()));
            }
        }
    }
    if (found.len() as u64) < threshold || found.is_empty() {
        let base = keyfile(keydir, name);
        return Err(RepoError::NotEnoughKeys {
            role: format!("{name}{context}"),
            threshold,
            held: found.len(),
            looked_at: format!("{0}, {0}@2, {0}@3, ...", display_name(&base)),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    use crate::schema::Targets;

    /// A targets file as python-tuf's JSONSerializer writes it (indent 1, sorted keys, non-ASCII
    /// escaped as `\uXXXX`), with fields trustfs does not know at every level.
    const PYTHON_TUF_TARGETS: &str = r#"{
 "signatures": [
  {
   "keyid": "aa",
   "sig": "00"
  }
 ],
 "signed": {
  "_type": "targets",
  "delegations": {
   "keys": {},
   "roles": [
    {
     "keyids": [],
     "name": "team",
     "paths": [
      "team/*"
     ],
     "terminating": false,
     "threshold": 1,
     "x-role": 1
    }
   ],
   "x-delegations": "d"
  },
  "expires": "2030-01-01T00:00:00Z",
  "spec_version": "1.0.31",
  "targets": {
   "caf\u00e9/a\"b.txt": {
    "custom": {
     "pem": "-----BEGIN-----\nAB\\C\n-----END-----\n"
    },
    "hashes": {
     "sha256": "ab"
    },
    "length": 3,
    "x-target": [
     true,
     null
    ]
   }
  },
  "version": 7,
  "x-unrecognized": {
   "nested": {
    "z": 1,
    "a": -2
   }
  }
 }
}"#;

    /// What securesystemslib's `encode_canonical` yields for the `signed` object above.
    const PYTHON_TUF_CANONICAL: &str = "{\"_type\":\"targets\",\"delegations\":{\"keys\":{},\"roles\":[{\"keyids\":[],\"name\":\"team\",\"paths\":[\"team/*\"],\"terminating\":false,\"threshold\":1,\"x-role\":1}],\"x-delegations\":\"d\"},\"expires\":\"2030-01-01T00:00:00Z\",\"spec_version\":\"1.0.31\",\"targets\":{\"caf\u{e9}/a\\\"b.txt\":{\"custom\":{\"pem\":\"-----BEGIN-----\nAB\\\\C\n-----END-----\n\"},\"hashes\":{\"sha256\":\"ab\"},\"length\":3,\"x-target\":[true,null]}},\"version\":7,\"x-unrecognized\":{\"nested\":{\"a\":-2,\"z\":1}}}";

    #[test]
    fn python_tuf_file_round_trips_through_re_signing() {
        let md = Metadata::<Targets>::from_slice("t", PYTHON_TUF_TARGETS.as_bytes()).unwrap();
        let canonical = md.canonical_signed().unwrap();
        assert_eq!(
            String::from_utf8(canonical.clone()).unwrap(),
            PYTHON_TUF_CANONICAL
        );

        let key = SigningKey::generate();
        let keyid = key.public_key().compute_keyid();
        let (signed, bytes) = sign::<Targets>(md.signed_value.clone(), &key, &keyid).unwrap();
        // Same signed bytes: every unknown field survived, and the signature covers them.
        assert_eq!(signed.canonical_signed().unwrap(), canonical);
        let reread = Metadata::<Targets>::from_slice("t", &bytes).unwrap();
        assert_eq!(reread.canonical_signed().unwrap(), canonical);
        let sig = hex::decode(&reread.signatures[0].sig).unwrap();
        assert_eq!(key.public_key().verify(&canonical, &sig), Ok(true));

        // An edit (what `add` and `refresh` do) changes only what it sets.
        let mut v = md.signed_value.clone();
        set_field(&mut v, "version", json!(8)).unwrap();
        let (edited, _) = sign::<Targets>(v, &key, &keyid).unwrap();
        let expected = PYTHON_TUF_CANONICAL.replace("\"version\":7", "\"version\":8");
        assert_eq!(
            String::from_utf8(edited.canonical_signed().unwrap()).unwrap(),
            expected
        );
    }
}
