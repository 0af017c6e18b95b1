//! A small TUF repository builder on trustfs's own schema API, for threat tests. Unlike the
//! publisher commands it can sign with the wrong keys, skip versions or expire roles on purpose.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};
use trustfs::schema::{
    Common, DelegatedRole, Delegations, MetaFile, Metadata, RoleKeys, Root, Signature, Signed,
    SigningKey, Snapshot, SuccinctRoles, TargetFile, Targets, Timestamp, UtcTime, SPEC_VERSION,
};

/// Succinct hash bins (TAP 15) delegated by one role of a [`TestRepo`]: every bin is written
/// unless the test says otherwise, each at its own version, signed by the bins' keys.
pub struct Bins {
    /// The delegating role ("targets" or a [`Deleg`]'s name).
    pub parent: String,
    pub succinct: SuccinctRoles,
    pub keys: Vec<SigningKey>,
    /// Sign every bin with these instead of `keys` (to stage attacks).
    pub signers: Option<Vec<SigningKey>>,
    /// Sign these bins with other keys (bin name → signers).
    pub bin_signers: BTreeMap<String, Vec<SigningKey>>,
    /// Files per bin name; [`TestRepo::add_binned_file`] puts a file in the bin it hashes to.
    pub files: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Version per bin name (default 1).
    pub versions: BTreeMap<String, u64>,
    /// The version snapshot names for a bin, when it should disagree with the file.
    pub snapshot_versions: BTreeMap<String, u64>,
    /// Bins left out of the repository (listed in snapshot, no file written).
    pub not_written: Vec<String>,
    /// List each bin in snapshot with its length and sha256 too (not just its version).
    pub pin_in_snapshot: bool,
    /// Publish only the first this many bins (the others are neither written nor listed in
    /// snapshot): for bit lengths too large to write every bin.
    pub only_first: Option<u64>,
}

impl Bins {
    /// `2^bit_length` bins `bins-…` delegated by `parent` to one fresh key, threshold 1.
    pub fn new(parent: &str, bit_length: u32) -> Bins {
        let keys = vec![SigningKey::generate()];
        Bins {
            parent: parent.into(),
            succinct: SuccinctRoles {
                keyids: keys.iter().map(keyid).collect(),
                threshold: 1,
                bit_length,
                name_prefix: "bins".into(),
                extra: BTreeMap::new(),
            },
            keys,
            signers: None,
            bin_signers: BTreeMap::new(),
            files: BTreeMap::new(),
            versions: BTreeMap::new(),
            snapshot_versions: BTreeMap::new(),
            not_written: Vec::new(),
            pin_in_snapshot: false,
            only_first: None,
        }
    }

    /// The bin `path` belongs to.
    pub fn bin_of(&self, path: &str) -> String {
        self.succinct.role_for(path)
    }

    pub fn version(&self, bin: &str) -> u64 {
        self.versions.get(bin).copied().unwrap_or(1)
    }
}

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
    /// Succinct hash bins, published with the top-level targets.
    pub bins: Option<Bins>,
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
            bins: None,
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

    /// `trustfs verify` of this repository's content against its metadata, `extra` options added.
    pub fn trustfs_verify(&self, extra: &[&str]) -> std::process::Output {
        let (root, md, content) = (self.root_path(), self.metadata_dir(), self.content_dir());
        let mut args = vec![
            "verify",
            "--root",
            root.to_str().unwrap(),
            "--metadata",
            md.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(content.to_str().unwrap());
        super::trustfs(&args)
    }

    /// trustfs's client pinned to this repository's `1.root.json`, the rest of the metadata from
    /// `fetcher`, rollback records in `state`, now.
    pub fn client_over(
        &self,
        fetcher: Box<dyn trustfs::trust::Fetcher>,
        state: Option<&Path>,
        limits: trustfs::trust::Limits,
    ) -> Result<trustfs::trust::Client, trustfs::trust::TrustError> {
        let root = std::fs::read(self.root_path()).unwrap();
        trustfs::trust::Client::new(&root, "1.root.json", fetcher, state, UtcTime::now(), limits)
    }

    /// [`Self::client_over`] the metadata directory.
    pub fn client(
        &self,
        state: Option<&Path>,
        limits: trustfs::trust::Limits,
    ) -> Result<trustfs::trust::Client, trustfs::trust::TrustError> {
        let fetcher = trustfs::trust::DirFetcher::new(self.metadata_dir());
        self.client_over(Box::new(fetcher), state, limits)
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
        if let Some(bins) = self.bins.as_ref().filter(|b| b.parent == parent) {
            let keys = bins
                .keys
                .iter()
                .map(|k| (keyid(k), k.public_key().to_value()))
                .collect();
            return Some(Delegations {
                keys,
                roles: None,
                succinct_roles: Some(bins.succinct.clone()),
                extra: BTreeMap::new(),
            });
        }
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
            roles: Some(roles),
            succinct_roles: None,
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

    /// Add a file to the hash bin its path belongs to (and to the content dir).
    pub fn add_binned_file(&mut self, path: &str, data: &[u8]) {
        let bin = self.bins.as_ref().expect("no bins").bin_of(path);
        self.add_file_to_bin(&bin, path, data);
    }

    /// Add a file to hash bin `bin`, whether or not its path hashes there (and to the content dir).
    pub fn add_file_to_bin(&mut self, bin: &str, path: &str, data: &[u8]) {
        let p = self.content_dir().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        let bins = self.bins.as_mut().expect("no bins");
        bins.files
            .entry(bin.to_owned())
            .or_default()
            .insert(path.to_owned(), data.to_vec());
    }

    /// Sign and write every bin (as configured), returning snapshot's entries for them.
    fn write_bins(&self) -> BTreeMap<String, MetaFile> {
        let mut meta = BTreeMap::new();
        let Some(bins) = &self.bins else {
            return meta;
        };
        let no_files = BTreeMap::new();
        let count = bins.only_first.unwrap_or(u64::MAX) as usize;
        for name in bins.succinct.bin_names().take(count) {
            let version = bins.version(&name);
            let mut pinned = None;
            if !bins.not_written.contains(&name) {
                let mut md = Metadata::new(Targets {
                    common: common("targets", version, self.expiry(&name)),
                    targets: target_files(bins.files.get(&name).unwrap_or(&no_files)),
                    delegations: self.delegations_of(&name),
                    extra: BTreeMap::new(),
                })
                .unwrap();
                let signers: Vec<&SigningKey> = bins
                    .bin_signers
                    .get(&name)
                    .or(bins.signers.as_ref())
                    .unwrap_or(&bins.keys)
                    .iter()
                    .collect();
                sign(&mut md, &signers);
                let bytes = md.to_bytes();
                self.write(&format!("{version}.{name}.json"), &bytes);
                if bins.pin_in_snapshot {
                    let mut hashes = BTreeMap::new();
                    hashes.insert("sha256".to_owned(), hex::encode(Sha256::digest(&bytes)));
                    pinned = Some((bytes.len() as u64, hashes));
                }
            }
            if self.snapshot_omit.contains(&name) {
                continue;
            }
            let listed = bins
                .snapshot_versions
                .get(&name)
                .copied()
                .unwrap_or(version);
            let (length, hashes) = match pinned {
                Some((l, h)) => (Some(l), Some(h)),
                None => (None, None),
            };
            meta.insert(
                format!("{name}.json"),
                MetaFile {
                    version: listed,
                    length,
                    hashes,
                    extra: BTreeMap::new(),
                },
            );
        }
        meta
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
        meta.extend(self.write_bins());
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
