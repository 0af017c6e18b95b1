//! A small TUF repository builder on trustfs's own schema API, for threat tests. Unlike the
//! publisher commands it can sign with the wrong keys, skip versions or expire roles on purpose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use trustfs::schema::{
    Common, DelegatedRole, Delegations, Key, MetaFile, Metadata, RoleKeys, Root, Signature, Signed,
    SigningKey, Snapshot, TargetFile, Targets, Timestamp, UtcTime, SPEC_VERSION,
};

/// A delegated targets role in a [`TestRepo`].
pub struct Deleg {
    /// The delegating role ("targets" or another delegated role's name).
    pub parent: String,
    pub name: String,
    pub paths: Option<Vec<String>>,
    pub prefixes: Option<Vec<String>>,
    pub terminating: bool,
    pub threshold: u64,
    pub keys: Vec<SigningKey>,
    /// Sign with these instead of `keys` (to stage attacks).
    pub signers: Option<Vec<SigningKey>>,
    pub files: BTreeMap<String, Vec<u8>>,
    pub version: u64,
}

impl Deleg {
    pub fn new(parent: &str, name: &str, paths: &[&str]) -> Deleg {
        Deleg {
            parent: parent.into(),
            name: name.into(),
            paths: Some(paths.iter().map(|p| p.to_string()).collect()),
            prefixes: None,
            terminating: false,
            threshold: 1,
            keys: vec![SigningKey::generate()],
            signers: None,
            files: BTreeMap::new(),
            version: 1,
        }
    }
}

pub struct TestRepo {
    pub dir: PathBuf,
    pub keys: BTreeMap<String, Vec<SigningKey>>,
    pub threshold: BTreeMap<String, u64>,
    pub root_version: u64,
    pub targets_version: u64,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
    pub files: BTreeMap<String, Vec<u8>>,
    /// Expiry per role (default: a year ahead).
    pub expires: BTreeMap<String, UtcTime>,
    /// Extra fields put into the targets `signed` object.
    pub targets_extra: BTreeMap<String, Value>,
    /// Delegated roles, published with the top-level targets.
    pub delegations: Vec<Deleg>,
    /// Delegated roles left out of snapshot's meta (to stage attacks).
    pub snapshot_omit: Vec<String>,
}

pub fn keyid(k: &SigningKey) -> String {
    k.public_key().compute_keyid()
}

pub fn sign<T: Signed>(md: &mut Metadata<T>, keys: &[&SigningKey]) {
    let msg = md.canonical_signed().expect("canonical");
    for k in keys {
        md.signatures.push(Signature {
            keyid: keyid(k),
            sig: hex::encode(k.sign(&msg)),
        });
    }
}

fn common(type_: &str, version: u64, expires: UtcTime) -> Common {
    Common {
        type_: type_.into(),
        spec_version: SPEC_VERSION.into(),
        version,
        expires: expires.to_string(),
    }
}

impl TestRepo {
    /// A repository in `dir/metadata` with content in `dir/content`: one key per role.
    pub fn new(dir: &Path) -> TestRepo {
        let mut keys = BTreeMap::new();
        let mut threshold = BTreeMap::new();
        for role in ["root", "targets", "snapshot", "timestamp"] {
            keys.insert(role.to_string(), vec![SigningKey::generate()]);
            threshold.insert(role.to_string(), 1);
        }
        std::fs::create_dir_all(dir.join("metadata")).unwrap();
        std::fs::create_dir_all(dir.join("content")).unwrap();
        let mut repo = TestRepo {
            dir: dir.to_owned(),
            keys,
            threshold,
            root_version: 1,
            targets_version: 1,
            snapshot_version: 1,
            timestamp_version: 1,
            files: BTreeMap::new(),
            expires: BTreeMap::new(),
            targets_extra: BTreeMap::new(),
            delegations: Vec::new(),
            snapshot_omit: Vec::new(),
        };
        repo.write_root(&["root"]);
        repo
    }

    pub fn metadata_dir(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    pub fn content_dir(&self) -> PathBuf {
        self.dir.join("content")
    }

    pub fn root_path(&self) -> PathBuf {
        self.dir.join("metadata/1.root.json")
    }

    fn expiry(&self, role: &str) -> UtcTime {
        self.expires
            .get(role)
            .copied()
            .unwrap_or_else(|| UtcTime::now().plus(std::time::Duration::from_secs(365 * 86400)))
    }

    /// Add (or replace) a file in content and in the next published targets.
    pub fn add_file(&mut self, path: &str, data: &[u8]) {
        let p = self.content_dir().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        self.files.insert(path.to_owned(), data.to_vec());
    }

    /// The root role as it would be written now.
    pub fn root(&self) -> Root {
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (role, ks) in &self.keys {
            for k in ks {
                keys.insert(keyid(k), k.public_key().to_value());
            }
            roles.insert(
                role.clone(),
                RoleKeys {
                    keyids: ks.iter().map(keyid).collect(),
                    threshold: self.threshold[role],
                    extra: BTreeMap::new(),
                },
            );
        }
        Root {
            common: common("root", self.root_version, self.expiry("root")),
            consistent_snapshot: Some(true),
            keys,
            roles,
            extra: BTreeMap::new(),
        }
    }

    /// Write `N.root.json` for the current root, signed by the keys of the listed roles' *current*
    /// key sets (pass extra keys through `sign_root_with`).
    pub fn write_root(&mut self, signers: &[&str]) {
        let mut md = Metadata::new(self.root()).unwrap();
        let keys: Vec<&SigningKey> = signers.iter().flat_map(|r| self.keys[*r].iter()).collect();
        sign(&mut md, &keys);
        self.write(&format!("{}.root.json", self.root_version), &md.to_bytes());
    }

    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.metadata_dir().join(name), bytes).unwrap();
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.metadata_dir().join(name)).unwrap()
    }

    pub fn targets(&self) -> Targets {
        Targets {
            common: common("targets", self.targets_version, self.expiry("targets")),
            targets: target_files(&self.files),
            delegations: self.delegations_of("targets"),
            extra: self.targets_extra.clone(),
        }
    }

    /// The `delegations` object of role `parent`, if it delegates at all.
    pub fn delegations_of(&self, parent: &str) -> Option<Delegations> {
        let children: Vec<&Deleg> = self
            .delegations
            .iter()
            .filter(|d| d.parent == parent)
            .collect();
        if children.is_empty() {
            return None;
        }
        let mut keys = BTreeMap::new();
        let roles = children
            .iter()
            .map(|d| {
                for k in &d.keys {
                    keys.insert(keyid(k), k.public_key().to_value());
                }
                DelegatedRole {
                    name: d.name.clone(),
                    keyids: d.keys.iter().map(keyid).collect(),
                    threshold: d.threshold,
                    terminating: d.terminating,
                    paths: d.paths.clone(),
                    path_hash_prefixes: d.prefixes.clone(),
                    extra: BTreeMap::new(),
                }
            })
            .collect();
        Some(Delegations {
            keys,
            roles,
            extra: BTreeMap::new(),
        })
    }

    /// Add a file to delegated role number `i` (and to the content dir).
    pub fn add_delegated_file(&mut self, i: usize, path: &str, data: &[u8]) {
        let p = self.content_dir().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        self.delegations[i]
            .files
            .insert(path.to_owned(), data.to_vec());
    }

    fn role_keys(&self, role: &str) -> Vec<&SigningKey> {
        self.keys[role].iter().collect()
    }

    /// Sign and write targets, snapshot and timestamp at the current versions.
    pub fn publish(&mut self) {
        let mut t = Metadata::new(self.targets()).unwrap();
        sign(&mut t, &self.role_keys("targets"));
        self.write_targets_md(&t);
    }

    /// Write given targets metadata, then a snapshot and timestamp that point at it.
    pub fn write_targets_md(&mut self, t: &Metadata<Targets>) {
        let tbytes = t.to_bytes();
        self.write(&format!("{}.targets.json", t.version()), &tbytes);
        let mut meta = BTreeMap::new();
        meta.insert(
            "targets.json".to_owned(),
            MetaFile {
                version: t.version(),
                length: None,
                hashes: None,
                extra: BTreeMap::new(),
            },
        );
        for d in &self.delegations {
            let mut md = Metadata::new(Targets {
                common: common("targets", d.version, self.expiry(&d.name)),
                targets: target_files(&d.files),
                delegations: self.delegations_of(&d.name),
                extra: BTreeMap::new(),
            })
            .unwrap();
            let signers: Vec<&SigningKey> = d.signers.as_ref().unwrap_or(&d.keys).iter().collect();
            sign(&mut md, &signers);
            self.write(&format!("{}.{}.json", d.version, d.name), &md.to_bytes());
            if self.snapshot_omit.contains(&d.name) {
                continue;
            }
            meta.insert(
                format!("{}.json", d.name),
                MetaFile {
                    version: d.version,
                    length: None,
                    hashes: None,
                    extra: BTreeMap::new(),
                },
            );
        }
        let mut s = Metadata::new(Snapshot {
            common: common("snapshot", self.snapshot_version, self.expiry("snapshot")),
            meta,
            extra: BTreeMap::new(),
        })
        .unwrap();
        sign(&mut s, &self.role_keys("snapshot"));
        let sbytes = s.to_bytes();
        self.write(&format!("{}.snapshot.json", self.snapshot_version), &sbytes);
        let mut meta = BTreeMap::new();
        let mut hashes = BTreeMap::new();
        hashes.insert("sha256".to_owned(), hex::encode(Sha256::digest(&sbytes)));
        meta.insert(
            "snapshot.json".to_owned(),
            MetaFile {
                version: self.snapshot_version,
                length: Some(sbytes.len() as u64),
                hashes: Some(hashes),
                extra: BTreeMap::new(),
            },
        );
        let mut ts = Metadata::new(Timestamp {
            common: common(
                "timestamp",
                self.timestamp_version,
                self.expiry("timestamp"),
            ),
            meta,
            extra: BTreeMap::new(),
        })
        .unwrap();
        sign(&mut ts, &self.role_keys("timestamp"));
        self.write("timestamp.json", &ts.to_bytes());
    }

    /// Bump targets, snapshot and timestamp versions and publish.
    pub fn bump_and_publish(&mut self) {
        self.targets_version += 1;
        self.snapshot_version += 1;
        self.timestamp_version += 1;
        self.publish();
    }
}

fn target_files(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, TargetFile> {
    files
        .iter()
        .map(|(p, d)| {
            let mut hashes = BTreeMap::new();
            hashes.insert("sha256".to_owned(), hex::encode(Sha256::digest(d)));
            (
                p.clone(),
                TargetFile {
                    length: d.len() as u64,
                    hashes,
                    custom: None,
                    extra: BTreeMap::new(),
                },
            )
        })
        .collect()
}

/// Rewrite a metadata file's JSON with `f` (signatures untouched).
pub fn tamper_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

pub fn key_of(k: &SigningKey) -> Key {
    k.public_key()
}
