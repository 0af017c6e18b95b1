//! What each fuzz target does, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, thin
//! wrappers, nightly) and the corpus replay test (`tests/it/fuzz_corpus.rs`, stable), which both
//! include this file with `#[path]`.
//!
//! Every target takes arbitrary bytes and drives trustfs's public API with them. Errors are fine;
//! a panic is a bug: in trustfs, or an invariant asserted here that trustfs broke. Each target
//! returns the milestones the input reached (a bit set, see [`TARGETS`]); the replay test insists
//! that the committed corpus reaches every one of them, so a harness that silently stops early
//! (a fixture that no longer verifies, a seed that no longer parses) fails instead of passing.
//!
//! The targets:
//! - [`metadata`]: one metadata file of the role the first byte picks, verified against the
//!   example repository's root or a fixed delegation (paths, hash bins, threshold 2); or (first
//!   byte `5`) a whole repository run through the client workflow from an in-memory fetcher.
//! - [`cjson`]: canonical JSON of any JSON value, checked by a strict canonical parser.
//! - [`target_path`]: `TargetPath::parse` and delegation path matching.
//! - [`status_record`]: the status record of `trustfs status`: parse, write, judge.
//! - [`mountinfo`]: the `/proc/self/mountinfo` parser, and escaping round trips.
//! - [`http`]: `trust::HttpFetcher` against a local socket that answers with the input.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Number, Value};
use sha2::{Digest, Sha256, Sha512};
use trustfs::index::{TargetIndex, TargetInfo, TargetPath, TargetPathError};
use trustfs::schema::{
    self, DelegatedRole, Delegations, Key, Metadata, PublicKey, Root, Signed, SigningKey, Snapshot,
    Targets, Timestamp, UtcTime,
};
use trustfs::telemetry::status::{self, MountStatus};
use trustfs::trust::{self, Client, FetchError, Fetcher, Limits, TrustSummary};

/// A fuzz target: bytes in, milestones reached out.
pub type Target = fn(&[u8]) -> u32;

/// Milestones of a target: (bit, what reaching it means).
pub type Milestones = &'static [(u32, &'static str)];

/// Every target, by name, with the milestones its corpus must reach.
pub const TARGETS: &[(&str, Target, Milestones)] = &[
    ("metadata", metadata, METADATA_MILESTONES),
    ("cjson", cjson, CJSON_MILESTONES),
    ("target_path", target_path, TARGET_PATH_MILESTONES),
    ("status_record", status_record, STATUS_MILESTONES),
    ("mountinfo", mountinfo, MOUNTINFO_MILESTONES),
    ("http", http, HTTP_MILESTONES),
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<Target> {
    TARGETS.iter().find(|t| t.0 == name).map(|t| t.1)
}

// ---------------------------------------------------------------------------------------------
// Fixtures: the example repository's root and the demo keys that signed it (published on purpose,
// examples/keys), and a fixed delegation for single delegated-role files.

const EXAMPLE_ROOT: &[u8] = include_bytes!("../examples/repo/metadata/1.root.json");
const DEMO_KEYS: [(&str, &str); 4] = [
    ("root", include_str!("../examples/keys/root")),
    ("targets", include_str!("../examples/keys/targets")),
    ("snapshot", include_str!("../examples/keys/snapshot")),
    ("timestamp", include_str!("../examples/keys/timestamp")),
];

/// The time the client workflow runs at, unless the input names one (a `now` file).
pub const DEFAULT_NOW: &str = "2027-01-01T00:00:00Z";

struct Fixtures {
    /// The example repository's 1.root.json: the trusted root of the single-file modes and the
    /// default pin of the repository mode.
    root: Metadata<Root>,
    /// Demo key id (as computed from the key) → signing key.
    signers: HashMap<String, SigningKey>,
    /// Demo role name → key id.
    keyids: BTreeMap<&'static str, String>,
    /// The delegations single delegated-role files are verified against.
    parent: Delegations,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let root = Metadata::<Root>::from_slice("1.root.json", EXAMPLE_ROOT)
            .expect("examples/repo/metadata/1.root.json parses");
        let mut signers = HashMap::new();
        let mut keyids = BTreeMap::new();
        for (role, pem) in DEMO_KEYS {
            let key = SigningKey::from_pkcs8_pem(pem).expect("demo key parses");
            let keyid = key.public_key().compute_keyid();
            let listed = &root.signed.roles[role];
            assert!(
                listed.keyids.contains(&keyid),
                "examples/keys/{role} is not the {role} key of examples/repo/metadata/1.root.json"
            );
            keyids.insert(role, keyid.clone());
            signers.insert(keyid, key);
        }
        let k = |role: &str| keyids[role].clone();
        let parent: Delegations = serde_json::from_value(json!({
            "keys": root.signed.keys,
            "roles": [
                {"name": "docs", "keyids": [k("targets")], "threshold": 1,
                 "terminating": false, "paths": ["docs/*", "*.md"]},
                {"name": "bin-0", "keyids": [k("snapshot")], "threshold": 1,
                 "terminating": false,
                 "path_hash_prefixes": ["0", "1", "2", "3", "4", "5", "6", "7"]},
                {"name": "bin-8", "keyids": [k("snapshot")], "threshold": 1,
                 "terminating": false,
                 "path_hash_prefixes": ["8", "9", "a", "b", "c", "d", "e", "f"]},
                {"name": "pair", "keyids": [k("root"), k("timestamp")], "threshold": 2,
                 "terminating": true, "paths": ["release/*"]},
            ],
        }))
        .expect("fixed delegations parse");
        Fixtures {
            root,
            signers,
            keyids,
            parent,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// metadata

pub const M_ROOT: u32 = 1 << 0;
pub const M_TARGETS: u32 = 1 << 1;
pub const M_SNAPSHOT: u32 = 1 << 2;
pub const M_TIMESTAMP: u32 = 1 << 3;
pub const M_DELEGATED_PATHS: u32 = 1 << 4;
pub const M_DELEGATED_HASH_BIN: u32 = 1 << 5;
pub const M_DELEGATED_THRESHOLD_2: u32 = 1 << 6;
pub const M_ROOT_ECDSA: u32 = 1 << 7;
pub const M_ROOT_RSA: u32 = 1 << 8;
pub const M_REPO_REFRESHED: u32 = 1 << 9;
pub const M_REPO_ROTATED: u32 = 1 << 10;
pub const M_REPO_INDEXED: u32 = 1 << 11;
pub const M_REPO_DELEGATED: u32 = 1 << 12;
pub const M_REPO_HASH_BIN: u32 = 1 << 13;
pub const M_REPO_RESIGNED: u32 = 1 << 14;
pub const M_REPO_ECDSA: u32 = 1 << 15;
pub const M_REPO_RSA: u32 = 1 << 16;
pub const M_REPO_PROBLEMS: u32 = 1 << 17;
pub const M_REPO_SUCCINCT: u32 = 1 << 18;

const METADATA_MILESTONES: Milestones = &[
    (M_ROOT, "a root signed by the trusted root and by itself"),
    (
        M_TARGETS,
        "a targets file verified against the trusted root",
    ),
    (
        M_SNAPSHOT,
        "a snapshot file verified against the trusted root",
    ),
    (
        M_TIMESTAMP,
        "a timestamp file verified against the trusted root",
    ),
    (M_DELEGATED_PATHS, "a delegated role (paths) verified"),
    (
        M_DELEGATED_HASH_BIN,
        "a delegated role (hash bins) verified",
    ),
    (
        M_DELEGATED_THRESHOLD_2,
        "a delegated role with threshold 2 verified",
    ),
    (
        M_ROOT_ECDSA,
        "a self-signed root with ecdsa-sha2-nistp256 keys",
    ),
    (M_ROOT_RSA, "a self-signed root with rsassa-pss-sha256 keys"),
    (M_REPO_REFRESHED, "client workflow: refresh succeeded"),
    (M_REPO_ROTATED, "client workflow: root rotated"),
    (M_REPO_INDEXED, "client workflow: non-empty target index"),
    (
        M_REPO_DELEGATED,
        "client workflow: a target from a delegated role",
    ),
    (
        M_REPO_HASH_BIN,
        "client workflow: a target from a hash-bin role",
    ),
    (
        M_REPO_RESIGNED,
        "client workflow: refreshed with harness-signed files",
    ),
    (M_REPO_ECDSA, "client workflow: refreshed with ecdsa keys"),
    (M_REPO_RSA, "client workflow: refreshed with rsa keys"),
    (
        M_REPO_PROBLEMS,
        "client workflow: index built with a failed delegated role",
    ),
    (
        M_REPO_SUCCINCT,
        "client workflow: a target from a succinct hash bin (TAP 15)",
    ),
];

/// One metadata file, or a whole repository. The first byte picks (modulo 6, so the digits
/// `0`-`5` read naturally): 0 root, 1 targets, 2 snapshot, 3 timestamp, 4 a delegated targets
/// role, 5 a repository (see [`repository`]); the rest is the file.
pub fn metadata(data: &[u8]) -> u32 {
    let Some((&mode, rest)) = data.split_first() else {
        return 0;
    };
    match mode % 6 {
        0 => one_root(rest),
        1 => one_top_level::<Targets>("targets", rest),
        2 => one_top_level::<Snapshot>("snapshot", rest),
        3 => one_top_level::<Timestamp>("timestamp", rest),
        4 => one_delegated(rest),
        _ => repository(rest),
    }
}

/// Parse `bytes` as `T`; for a parsed file, check what must hold of every parsed file.
fn parse_checked<T: Signed>(file: &str, bytes: &[u8]) -> Option<Metadata<T>> {
    let md = match Metadata::<T>::from_slice(file, bytes) {
        Ok(md) => md,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return None;
        }
    };
    assert_eq!(
        schema::peek_type(bytes).as_deref(),
        Some(T::TYPE.as_str()),
        "a file that parses as {} must peek as one",
        T::TYPE.as_str()
    );
    // `expires` was validated by the parse; the accessor must agree, and the time must print in a
    // form that parses back to itself.
    let expires = UtcTime::parse(&md.signed.common().expires).expect("expires was validated");
    assert_eq!(md.expires(), expires);
    if expires.0 < UtcTime::parse("9999-12-31T23:59:59Z").unwrap().0 {
        assert_eq!(UtcTime::parse(&expires.to_string()), Ok(expires));
    }
    // What trustfs writes (to_bytes) must parse back to the same signed bytes and signatures.
    if let Ok(canonical) = md.canonical_signed() {
        let again = Metadata::<T>::from_slice(file, &md.to_bytes())
            .unwrap_or_else(|e| panic!("to_bytes output does not parse again: {e}"));
        assert_eq!(again.canonical_signed().ok(), Some(canonical));
        assert_eq!(again.signatures, md.signatures);
    }
    Some(md)
}

/// `verify_threshold`, with a check of its error message.
fn verify<T: Signed>(
    role: &str,
    md: &Metadata<T>,
    keyids: &[String],
    threshold: u64,
    keys: &BTreeMap<String, Value>,
) -> bool {
    match schema::verify_threshold(role, md, keyids, threshold, keys) {
        Ok(()) => {
            assert!(
                !md.signatures.is_empty(),
                "{role}: threshold {threshold} met without any signature"
            );
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            false
        }
    }
}

fn one_root(bytes: &[u8]) -> u32 {
    let Some(md) = parse_checked::<Root>("root.json", bytes) else {
        return 0;
    };
    let f = fixtures();
    let trusted = &f.root.signed.roles["root"];
    let by_trusted = verify(
        "root",
        &md,
        &trusted.keyids,
        trusted.threshold,
        &f.root.signed.keys,
    );
    let own = md
        .signed
        .roles
        .get("root")
        .expect("a parsed root lists a root role");
    let self_signed = verify("root", &md, &own.keyids, own.threshold, &md.signed.keys);
    let mut m = 0;
    if by_trusted && self_signed {
        m |= M_ROOT;
    }
    for keyid in &own.keyids {
        // The parse validated every key; a key of the root role must parse again.
        let key = Key::from_value(&md.signed.keys[keyid])
            .unwrap_or_else(|e| panic!("validated key {keyid}: {e}"));
        assert!(!key.identity().is_empty());
        assert_eq!(key.compute_keyid().len(), 64);
        match key.key {
            PublicKey::EcdsaP256(_) if self_signed => m |= M_ROOT_ECDSA,
            PublicKey::RsaPss(_) if self_signed => m |= M_ROOT_RSA,
            _ => {}
        }
    }
    m
}

fn one_top_level<T: Signed + TopLevel>(role: &str, bytes: &[u8]) -> u32 {
    let Some(md) = parse_checked::<T>(&format!("{role}.json"), bytes) else {
        return 0;
    };
    T::check(&md.signed);
    let f = fixtures();
    let keys = &f.root.signed.roles[role];
    if verify(role, &md, &keys.keyids, keys.threshold, &f.root.signed.keys) {
        T::MILESTONE
    } else {
        0
    }
}

/// What a parsed top-level role must satisfy, beyond parsing.
trait TopLevel {
    const MILESTONE: u32;
    fn check(&self);
}

impl TopLevel for Targets {
    const MILESTONE: u32 = M_TARGETS;
    fn check(&self) {
        check_targets("targets", self);
    }
}

impl TopLevel for Snapshot {
    const MILESTONE: u32 = M_SNAPSHOT;
    fn check(&self) {
        for (name, meta) in &self.meta {
            assert!(meta.version >= 1, "snapshot lists {name} at version 0");
        }
    }
}

impl TopLevel for Timestamp {
    const MILESTONE: u32 = M_TIMESTAMP;
    fn check(&self) {
        assert_eq!(
            self.meta.keys().collect::<Vec<_>>(),
            ["snapshot.json"],
            "a parsed timestamp lists exactly snapshot.json"
        );
    }
}

/// Every listed target has a safe path and decodable hashes; delegations match paths without
/// panicking, and hash prefixes match exactly the paths whose sha256 starts with them.
fn check_targets(role: &str, t: &Targets) {
    for (path, file) in &t.targets {
        TargetPath::parse(path).unwrap_or_else(|e| panic!("listed target {path:?}: {e}"));
        let info = trust::target_info(role, path, file)
            .unwrap_or_else(|e| panic!("listed target {path:?}: {e}"));
        assert_eq!(info.length, file.length);
        assert_eq!(info.hashes.len(), file.hashes.len());
    }
    if let Some(d) = &t.delegations {
        for r in d.roles() {
            for path in t.targets.keys().take(16) {
                check_role_matches(r, path);
            }
        }
    }
}

/// `role_matches` against what can be said independently of its implementation.
fn check_role_matches(role: &DelegatedRole, path: &str) -> bool {
    let matched = trust::role_matches(role, path);
    match (&role.paths, &role.path_hash_prefixes) {
        (Some(patterns), _) => {
            for p in patterns {
                if !p.contains(['*', '?', '[']) && p == path {
                    assert!(
                        matched,
                        "{:?} does not match its own literal {path:?}",
                        role.name
                    );
                }
            }
            if patterns.iter().all(|p| !p.contains(['*', '?', '['])) {
                assert_eq!(matched, patterns.iter().any(|p| p == path));
            }
            if patterns
                .iter()
                .all(|p| p.matches('/').count() != path.matches('/').count())
            {
                assert!(!matched, "a pattern matched across '/' for {path:?}");
            }
        }
        (None, Some(prefixes)) => {
            let digest = hex::encode(Sha256::digest(path.as_bytes()));
            let expected = prefixes
                .iter()
                .any(|p| digest.starts_with(&p.to_ascii_lowercase()));
            assert_eq!(matched, expected, "hash prefixes {prefixes:?} for {path:?}");
        }
        (None, None) => assert!(!matched, "a role with no paths matched {path:?}"),
    }
    matched
}

fn one_delegated(bytes: &[u8]) -> u32 {
    let Some(md) = parse_checked::<Targets>("role.json", bytes) else {
        return 0;
    };
    check_targets("role", &md.signed);
    let f = fixtures();
    let mut m = 0;
    for role in f.parent.roles() {
        if !verify(
            &role.name,
            &md,
            &role.keyids,
            role.threshold,
            &f.parent.keys,
        ) {
            continue;
        }
        m |= if role.path_hash_prefixes.is_some() {
            M_DELEGATED_HASH_BIN
        } else if role.threshold >= 2 {
            M_DELEGATED_THRESHOLD_2
        } else {
            M_DELEGATED_PATHS
        };
        for path in md.signed.targets.keys().take(64) {
            check_role_matches(role, path);
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// metadata, mode 5: a whole repository through the client workflow

/// The files of a repository input: sections `--- NAME\n` + bytes, up to the next `\n--- `.
/// `--- !NAME` asks the harness to sign NAME for real (below); `--- ?NAME` makes fetching NAME
/// fail with an I/O error. Special names: `pin` (the trusted root; default: the example root),
/// `now` (the time, `YYYY-MM-DDTHH:MM:SSZ`; default [`DEFAULT_NOW`]). The first section of a
/// name counts.
///
/// Signing: a `!` file is parsed as JSON; if it is a snapshot or timestamp, the `length` and
/// `hashes` (sha256, sha512) of each `meta` entry that has them are set to those of the file the
/// client would fetch for it; then every signature whose key id is a demo key's
/// (examples/keys) gets a real signature over the canonical `signed`. Targets files are signed
/// before snapshots, snapshots before timestamps. So mutated content still verifies and the
/// fuzzer reaches the rules behind the signature check.
pub struct RepoInput {
    pub files: BTreeMap<String, Vec<u8>>,
    pub to_sign: Vec<String>,
    pub failing: BTreeSet<String>,
}

const SEPARATOR: &[u8] = b"\n--- ";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl RepoInput {
    pub fn parse(data: &[u8]) -> RepoInput {
        let mut input = RepoInput {
            files: BTreeMap::new(),
            to_sign: Vec::new(),
            failing: BTreeSet::new(),
        };
        let mut rest = match data.strip_prefix(b"--- ") {
            Some(r) => r,
            None => match find(data, SEPARATOR) {
                Some(i) => &data[i + SEPARATOR.len()..],
                None => return input,
            },
        };
        loop {
            let (section, next) = match find(rest, SEPARATOR) {
                Some(i) => (&rest[..i], Some(&rest[i + SEPARATOR.len()..])),
                None => (rest, None),
            };
            let (header, body) = match section.iter().position(|&b| b == b'\n') {
                Some(i) => (&section[..i], &section[i + 1..]),
                None => (section, &[][..]),
            };
            if let Ok(header) = std::str::from_utf8(header) {
                let (name, sign, fail) = match header.as_bytes().first() {
                    Some(b'!') => (&header[1..], true, false),
                    Some(b'?') => (&header[1..], false, true),
                    _ => (header, false, false),
                };
                if !input.files.contains_key(name) {
                    input.files.insert(name.to_owned(), body.to_vec());
                    if sign {
                        input.to_sign.push(name.to_owned());
                    }
                    if fail {
                        input.failing.insert(name.to_owned());
                    }
                }
            }
            match next {
                Some(n) => rest = n,
                None => break,
            }
        }
        input
    }

    /// Sign the `!` files (see [`RepoInput`]).
    fn sign(&mut self) {
        let f = fixtures();
        let kind = |bytes: &[u8]| match schema::peek_type(bytes).as_deref() {
            Some("snapshot") => 1,
            Some("timestamp") => 2,
            _ => 0,
        };
        let mut order: Vec<(u8, String)> = self
            .to_sign
            .iter()
            .map(|n| (kind(&self.files[n]), n.clone()))
            .collect();
        order.sort_by_key(|(k, _)| *k);
        for (k, name) in order {
            let Ok(mut v) = serde_json::from_slice::<Value>(&self.files[&name]) else {
                continue;
            };
            if k > 0 {
                if let Some(meta) = v
                    .get_mut("signed")
                    .and_then(|s| s.get_mut("meta"))
                    .and_then(Value::as_object_mut)
                {
                    for (meta_name, entry) in meta.iter_mut() {
                        self.fix_meta(meta_name, entry);
                    }
                }
            }
            let Some(signed) = v.get("signed") else {
                continue;
            };
            let Ok(canonical) = schema::to_canonical(signed) else {
                continue;
            };
            if let Some(sigs) = v.get_mut("signatures").and_then(Value::as_array_mut) {
                for s in sigs {
                    let Some(key) = s
                        .get("keyid")
                        .and_then(Value::as_str)
                        .and_then(|id| f.signers.get(id))
                    else {
                        continue;
                    };
                    s["sig"] = Value::String(hex::encode(key.sign(&canonical)));
                }
            }
            if let Ok(bytes) = serde_json::to_vec_pretty(&v) {
                self.files.insert(name, bytes);
            }
        }
    }

    /// Set length and hashes of a `meta` entry to those of the file it names.
    fn fix_meta(&self, meta_name: &str, entry: &mut Value) {
        let Some(stem) = meta_name.strip_suffix(".json") else {
            return;
        };
        let Some(obj) = entry.as_object_mut() else {
            return;
        };
        let version = obj.get("version").and_then(Value::as_u64).unwrap_or(0);
        let quoted = trust::quote(stem);
        let Some(bytes) = [format!("{version}.{quoted}.json"), format!("{quoted}.json")]
            .iter()
            .find_map(|n| self.files.get(n))
        else {
            return;
        };
        if obj.contains_key("length") {
            obj.insert("length".into(), json!(bytes.len()));
        }
        if let Some(hashes) = obj.get_mut("hashes").and_then(Value::as_object_mut) {
            for (alg, h) in hashes.iter_mut() {
                match alg.as_str() {
                    "sha256" => *h = json!(hex::encode(Sha256::digest(bytes))),
                    "sha512" => *h = json!(hex::encode(Sha512::digest(bytes))),
                    _ => {}
                }
            }
        }
    }
}

/// Metadata files from memory. Also checks that the client only ever asks for plain file names.
struct MemFetcher {
    files: BTreeMap<String, Vec<u8>>,
    failing: BTreeSet<String>,
}

impl Fetcher for MemFetcher {
    fn fetch(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError> {
        assert!(
            !name.is_empty()
                && !name.contains(['/', '\\', '\0'])
                && name.ends_with(".json")
                && name != "pin"
                && name != "now",
            "the client asked for the unsafe or odd name {name:?}"
        );
        if self.failing.contains(name) {
            return Err(FetchError::Io {
                name: name.to_owned(),
                error: "injected failure".into(),
            });
        }
        match self.files.get(name) {
            Some(bytes) => trust::read_limited(&bytes[..], name, limit).map(Some),
            None => Ok(None),
        }
    }

    fn describe(&self) -> String {
        "fuzz input".into()
    }
}

/// Key types of a root's root role.
fn root_key_kinds(root: &Metadata<Root>) -> u32 {
    let mut m = 0;
    for keyid in &root.signed.roles["root"].keyids {
        match root.signed.keys.get(keyid).map(Key::from_value) {
            Some(Ok(Key {
                key: PublicKey::EcdsaP256(_),
                ..
            })) => m |= M_REPO_ECDSA,
            Some(Ok(Key {
                key: PublicKey::RsaPss(_),
                ..
            })) => m |= M_REPO_RSA,
            _ => {}
        }
    }
    m
}

/// Run the client workflow of `trust::load` (`Client::new`, `refresh`, `target_index`,
/// `TrustSummary::of`) over the repository in `data` (see [`RepoInput`]), and check what a
/// successful run promises: unexpired, consistent versions, and an index that agrees with the
/// delegation search for every path.
pub fn repository(data: &[u8]) -> u32 {
    let mut input = RepoInput::parse(data);
    let resigned = !input.to_sign.is_empty();
    input.sign();
    let pin = input
        .files
        .get("pin")
        .cloned()
        .unwrap_or_else(|| EXAMPLE_ROOT.to_vec());
    let now = input
        .files
        .get("now")
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| UtcTime::parse(s.trim()).ok())
        .unwrap_or_else(|| UtcTime::parse(DEFAULT_NOW).unwrap());
    // Every targets-shaped file in the input, whether or not the client reaches it: their paths
    // are asked of the search, their delegations vouch for delegated targets.
    let listed: Vec<Metadata<Targets>> = input
        .files
        .iter()
        .filter_map(|(n, b)| Metadata::<Targets>::from_slice(n, b).ok())
        .collect();
    let limits = Limits {
        max_root_rotations: 8,
        max_delegations: 8,
        max_roles: 64,
        ..Limits::default()
    };
    let fetcher = MemFetcher {
        files: input.files,
        failing: input.failing,
    };
    let mut client = match Client::new(&pin, "pin", Box::new(fetcher), None, now, limits) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return 0;
        }
    };
    let pinned_version = client.root().version();
    if let Err(e) = client.refresh() {
        assert!(!e.to_string().is_empty());
        return 0;
    }
    let mut m = M_REPO_REFRESHED | root_key_kinds(client.root());
    if resigned {
        m |= M_REPO_RESIGNED;
    }
    let root_version = client.root().version();
    assert!(
        root_version >= pinned_version,
        "root went back from the pin"
    );
    if root_version > pinned_version {
        m |= M_REPO_ROTATED;
    }
    let ts = client
        .timestamp()
        .expect("a refreshed client has a timestamp");
    let snap = client
        .snapshot()
        .expect("a refreshed client has a snapshot");
    let targets = client.targets().expect("a refreshed client has targets");
    assert_eq!(snap.version(), ts.signed.meta["snapshot.json"].version);
    assert_eq!(
        Some(targets.version()),
        snap.signed.meta.get("targets.json").map(|m| m.version),
        "targets version differs from what snapshot names"
    );
    for (role, expires) in [
        ("root", client.root().expires()),
        ("timestamp", ts.expires()),
        ("snapshot", snap.expires()),
        ("targets", targets.expires()),
    ] {
        assert!(
            expires > now,
            "trusted {role} expired at {expires} (now {now})"
        );
    }
    let in_snapshot: BTreeSet<String> = snap.signed.meta.keys().cloned().collect();
    let summary = TrustSummary::of(&client);
    assert_eq!(summary.root_version, root_version);
    assert_eq!(summary.targets_version, targets.version());
    let (index, problems) = match client.target_index() {
        Ok(x) => x,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return m;
        }
    };
    if !problems.is_empty() {
        m |= M_REPO_PROBLEMS;
    }
    let (_, earliest) = client.earliest_expiry();
    assert!(earliest > now, "a trusted role expired at {earliest}");
    if !index.is_empty() {
        m |= M_REPO_INDEXED;
    }
    for (path, info) in index.iter() {
        let role = index
            .listed_by(path)
            .expect("the index records the role of every target")
            .to_owned();
        assert!(
            in_snapshot.contains(&format!("{role}.json")),
            "{path}: listed by {role:?}, which snapshot does not list"
        );
        let found = match client.find_target(path) {
            Ok(Some(found)) => found,
            other => panic!("{path}: in the index, but the search says {other:?}"),
        };
        assert_eq!(found.info, info, "{path}: index and search disagree");
        assert_eq!(
            found.role, role,
            "{path}: index and search disagree on the role"
        );
        if role != "targets" {
            m |= M_REPO_DELEGATED;
            // Some delegation in the repository must give `path` to `role`.
            let delegations = || {
                listed
                    .iter()
                    .filter_map(|md| md.signed.delegations.as_ref())
            };
            let covering: Vec<&DelegatedRole> = delegations()
                .flat_map(|d| d.roles())
                .filter(|r| r.name == role && trust::role_matches(r, path))
                .collect();
            // Or succinct hash bins (TAP 15) whose bin for `path` is `role`.
            let succinct = delegations()
                .filter_map(|d| d.succinct_roles.as_ref())
                .any(|b| b.role_for(path) == role);
            assert!(
                !covering.is_empty() || succinct,
                "{path}: served from {role:?}, but no delegation to {role:?} covers it"
            );
            if covering.iter().any(|r| r.path_hash_prefixes.is_some()) {
                m |= M_REPO_HASH_BIN;
            }
            if succinct {
                m |= M_REPO_SUCCINCT;
            }
        }
    }
    // Any path any file lists: the search and the index agree.
    let paths: BTreeSet<&String> = listed
        .iter()
        .flat_map(|md| md.signed.targets.keys())
        .take(32)
        .collect();
    for path in paths {
        match client.find_target(path) {
            Ok(Some(found)) => assert_eq!(
                index.get(path),
                Some(found.info),
                "{path}: found by the search but not in the index"
            ),
            Ok(None) | Err(_) => assert!(
                index.get(path).is_none(),
                "{path}: in the index but not found by the search"
            ),
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// cjson

pub const C_PARSED: u32 = 1 << 0;
pub const C_CANONICAL: u32 = 1 << 1;
pub const C_SERDE_REPARSE: u32 = 1 << 2;
pub const C_RAW_CONTROL: u32 = 1 << 3;
pub const C_FLOAT_REFUSED: u32 = 1 << 4;
pub const C_SORTED_UNICODE: u32 = 1 << 5;
pub const C_ESCAPES: u32 = 1 << 6;

const CJSON_MILESTONES: Milestones = &[
    (C_PARSED, "JSON parsed"),
    (C_CANONICAL, "canonical form round-tripped"),
    (C_SERDE_REPARSE, "canonical form re-parsed by serde_json"),
    (C_RAW_CONTROL, "control characters kept raw and parsed back"),
    (C_FLOAT_REFUSED, "a float refused"),
    (C_SORTED_UNICODE, "object keys beyond ASCII sorted"),
    (C_ESCAPES, "quote and backslash escaped"),
];

/// Any JSON value: `to_canonical` fails exactly when the value holds a non-integer number;
/// otherwise its output is canonical (strictly sorted keys, no whitespace, only `\\` and `\"`
/// escaped, integers in shortest form), parses back to the same value, is a fixed point, and does
/// not depend on how the input was formatted.
pub fn cjson(data: &[u8]) -> u32 {
    let _ = schema::peek_type(data);
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return 0;
    };
    let mut m = C_PARSED;
    let stats = scan(&v);
    let c = match schema::to_canonical(&v) {
        Err(e) => {
            assert!(
                stats.float,
                "to_canonical refused a value without floats: {e}"
            );
            return m | C_FLOAT_REFUSED;
        }
        Ok(c) => c,
    };
    assert!(!stats.float, "to_canonical wrote a float");
    let back = parse_canonical(&c)
        .unwrap_or_else(|e| panic!("output is not canonical JSON: {e}: {:?}", lossy(&c)));
    assert_eq!(back, v, "canonical output parses to another value");
    assert_eq!(
        schema::to_canonical(&back).as_deref(),
        Ok(&c[..]),
        "not idempotent"
    );
    let compact: Value = serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
    let pretty: Value = serde_json::from_slice(&serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    assert_eq!(schema::to_canonical(&compact).as_deref(), Ok(&c[..]));
    assert_eq!(schema::to_canonical(&pretty).as_deref(), Ok(&c[..]));
    m |= C_CANONICAL;
    if stats.control {
        m |= C_RAW_CONTROL;
    } else {
        let reparsed: Value = serde_json::from_slice(&c)
            .unwrap_or_else(|e| panic!("serde_json refuses the canonical form: {e}"));
        assert_eq!(reparsed, v);
        m |= C_SERDE_REPARSE;
    }
    if stats.non_ascii_keys >= 2 {
        m |= C_SORTED_UNICODE;
    }
    if stats.escapes {
        m |= C_ESCAPES;
    }
    m
}

#[derive(Default)]
struct Scan {
    float: bool,
    control: bool,
    escapes: bool,
    non_ascii_keys: usize,
}

fn scan(v: &Value) -> Scan {
    fn string(t: &str, s: &mut Scan) {
        s.control |= t.bytes().any(|b| b < 0x20);
        s.escapes |= t.contains(['"', '\\']);
    }
    fn walk(v: &Value, s: &mut Scan) {
        match v {
            Value::Number(n) => s.float |= !(n.is_i64() || n.is_u64()),
            Value::String(t) => string(t, s),
            Value::Array(a) => a.iter().for_each(|x| walk(x, s)),
            Value::Object(o) => {
                for (k, x) in o {
                    string(k, s);
                    if !k.is_ascii() {
                        s.non_ascii_keys += 1;
                    }
                    walk(x, s);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
    let mut s = Scan::default();
    walk(v, &mut s);
    s
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned()
}

/// A strict parser for canonical JSON as securesystemslib writes it: no whitespace, strings with
/// only `\\` and `\"` escaped (all else raw), integers without leading zeros, object keys strictly
/// increasing by bytes. Anything else is an error.
pub fn parse_canonical(b: &[u8]) -> Result<Value, String> {
    let mut p = Canon { b, i: 0 };
    let v = p.value(0)?;
    if p.i != b.len() {
        return Err(format!("trailing bytes at {}", p.i));
    }
    Ok(v)
}

struct Canon<'a> {
    b: &'a [u8],
    i: usize,
}

impl Canon<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, lit: &[u8]) -> Result<(), String> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {:?} at {}", lossy(lit), self.i))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > 256 {
            return Err("too deep".into());
        }
        match self.peek().ok_or("unexpected end")? {
            b'n' => self.eat(b"null").map(|_| Value::Null),
            b't' => self.eat(b"true").map(|_| Value::Bool(true)),
            b'f' => self.eat(b"false").map(|_| Value::Bool(false)),
            b'"' => self.string().map(Value::String),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::Array(items));
                        }
                        _ => return Err(format!("expected , or ] at {}", self.i)),
                    }
                }
            }
            b'{' => {
                self.i += 1;
                let mut map = serde_json::Map::new();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Value::Object(map));
                }
                let mut last: Option<String> = None;
                loop {
                    if self.peek() != Some(b'"') {
                        return Err(format!("expected a key at {}", self.i));
                    }
                    let k = self.string()?;
                    if last.as_ref().is_some_and(|l| l.as_bytes() >= k.as_bytes()) {
                        return Err(format!("key {k:?} not after {last:?}"));
                    }
                    self.eat(b":")?;
                    let v = self.value(depth + 1)?;
                    map.insert(k.clone(), v);
                    last = Some(k);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Value::Object(map));
                        }
                        _ => return Err(format!("expected , or }} at {}", self.i)),
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                if self.peek() == Some(b'-') {
                    self.i += 1;
                }
                let digits = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.b[start..self.i]).unwrap();
                let d = &self.b[digits..self.i];
                if d.is_empty() || (d[0] == b'0' && (d.len() > 1 || start != digits)) {
                    return Err(format!("integer {text:?} is not in shortest form"));
                }
                if start != digits {
                    text.parse::<i64>()
                        .map(|n| Value::Number(Number::from(n)))
                        .map_err(|e| format!("{text}: {e}"))
                } else {
                    text.parse::<u64>()
                        .map(|n| Value::Number(Number::from(n)))
                        .map_err(|e| format!("{text}: {e}"))
                }
            }
            c => Err(format!("unexpected byte {c:#x} at {}", self.i)),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek().ok_or("unterminated string")? {
                b'"' => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|e| e.to_string());
                }
                b'\\' => {
                    match self.b.get(self.i + 1) {
                        Some(&c @ (b'\\' | b'"')) => out.push(c),
                        _ => return Err(format!("escape other than \\\\ or \\\" at {}", self.i)),
                    }
                    self.i += 2;
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// target_path

pub const P_ACCEPTED: u32 = 1 << 0;
pub const P_ACCEPTED_NESTED: u32 = 1 << 1;
pub const P_EMPTY: u32 = 1 << 2;
pub const P_ABSOLUTE: u32 = 1 << 3;
pub const P_NUL: u32 = 1 << 4;
pub const P_EMPTY_COMPONENT: u32 = 1 << 5;
pub const P_DOT: u32 = 1 << 6;
pub const P_DOT_DOT: u32 = 1 << 7;
pub const P_TOO_LONG: u32 = 1 << 8;
pub const P_GLOB_MATCH: u32 = 1 << 9;
pub const P_HASH_PREFIX_MATCH: u32 = 1 << 10;

const TARGET_PATH_MILESTONES: Milestones = &[
    (P_ACCEPTED, "a path accepted"),
    (P_ACCEPTED_NESTED, "a path with directories accepted"),
    (P_EMPTY, "refused: empty"),
    (P_ABSOLUTE, "refused: absolute"),
    (P_NUL, "refused: NUL"),
    (P_EMPTY_COMPONENT, "refused: empty component"),
    (P_DOT, "refused: '.' component"),
    (P_DOT_DOT, "refused: '..' component"),
    (P_TOO_LONG, "refused: too long"),
    (P_GLOB_MATCH, "a glob with wildcards matched"),
    (P_HASH_PREFIX_MATCH, "a non-empty hash prefix matched"),
];

/// The input (as UTF-8, lossily) is a target path: accepted paths are relative, NUL-free, made of
/// normal components only (by our split and by `std::path`), and stay under any directory they
/// are joined to; a refusal names a reason that is true. If the input has a newline, the text
/// before it is also used as a delegation glob and as a hash prefix for the text after it.
pub fn target_path(data: &[u8]) -> u32 {
    let raw = String::from_utf8_lossy(data);
    let mut m = check_target_path(&raw);
    if let Some((pattern, path)) = raw.split_once('\n') {
        let role = |paths: Option<Vec<String>>, prefixes: Option<Vec<String>>| DelegatedRole {
            name: "fuzz".into(),
            keyids: Vec::new(),
            threshold: 1,
            terminating: false,
            paths,
            path_hash_prefixes: prefixes,
            extra: Default::default(),
        };
        let glob = role(Some(vec![pattern.to_owned()]), None);
        if check_role_matches(&glob, path) && pattern.contains(['*', '?', '[']) {
            m |= P_GLOB_MATCH;
        }
        // One `*` per component matches any path with that many components.
        let stars = path.split('/').map(|_| "*").collect::<Vec<_>>().join("/");
        assert!(trust::role_matches(&role(Some(vec![stars]), None), path));
        let bins = role(None, Some(vec![pattern.to_owned()]));
        if check_role_matches(&bins, path) && !pattern.is_empty() {
            m |= P_HASH_PREFIX_MATCH;
        }
        // The path's own digest prefix, in either case, always matches.
        let digest = hex::encode(Sha256::digest(path.as_bytes()));
        let own = digest[..pattern.len().min(64)].to_ascii_uppercase();
        assert!(trust::role_matches(&role(None, Some(vec![own])), path));
        assert!(!trust::role_matches(&role(None, None), path));
        assert!(!trust::role_matches(&role(Some(vec![]), None), path));
    }
    m
}

fn check_target_path(raw: &str) -> u32 {
    let parts: Vec<&str> = raw.split('/').collect();
    match TargetPath::parse(raw) {
        Ok(p) => {
            assert_eq!(p.as_str(), raw);
            assert_eq!(p.to_string(), raw);
            assert!(!raw.is_empty() && raw.len() <= 4096);
            assert!(!raw.contains('\0') && !raw.starts_with('/'));
            let comps: Vec<&str> = p.components().collect();
            assert_eq!(comps, parts);
            assert_eq!(comps.join("/"), raw);
            for c in &comps {
                assert!(!c.is_empty() && *c != "." && *c != ".." && c.len() <= 255);
            }
            let std_comps: Vec<Component> = Path::new(raw).components().collect();
            assert_eq!(
                std_comps.len(),
                comps.len(),
                "std::path splits {raw:?} otherwise"
            );
            assert!(
                std_comps.iter().all(|c| matches!(c, Component::Normal(_))),
                "std::path sees a special component in accepted {raw:?}"
            );
            let base = Path::new("/srv/backing");
            assert!(base.join(raw).starts_with(base));
            let mut index = TargetIndex::builder();
            let info = TargetInfo {
                length: raw.len() as u64,
                hashes: Default::default(),
                custom: None,
                chunk_root: None,
            };
            index.insert_signed_by(p.clone(), info.clone(), "targets");
            let index = index.build();
            assert_eq!(index.get(raw), Some(info));
            assert_eq!(index.listed_by(raw), Some("targets"));
            // Every ancestor is a directory of the index, and lists the next component.
            for (at, _) in raw.match_indices('/') {
                let (dir, rest) = (&raw[..at], &raw[at + 1..]);
                assert!(index.is_dir(dir), "{dir:?} is a directory of {raw:?}");
                let name = rest.split('/').next().unwrap_or_default();
                assert_eq!(index.children(dir).len(), 1, "{dir:?} of {raw:?}");
                assert_eq!(index.children(dir)[0].name(), name);
            }
            assert!(!index.is_dir(raw));
            assert_eq!(TargetPath::parse(p.as_str()).as_ref(), Ok(&p));
            if comps.len() > 1 {
                P_ACCEPTED | P_ACCEPTED_NESTED
            } else {
                P_ACCEPTED
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            match e {
                TargetPathError::Empty => {
                    assert!(raw.is_empty());
                    P_EMPTY
                }
                TargetPathError::Absolute => {
                    assert!(raw.starts_with('/'));
                    P_ABSOLUTE
                }
                TargetPathError::Nul => {
                    assert!(raw.contains('\0'));
                    P_NUL
                }
                TargetPathError::EmptyComponent => {
                    assert!(parts.contains(&""));
                    P_EMPTY_COMPONENT
                }
                TargetPathError::DotComponent => {
                    assert!(parts.contains(&"."));
                    P_DOT
                }
                TargetPathError::DotDotComponent => {
                    assert!(parts.contains(&".."));
                    P_DOT_DOT
                }
                TargetPathError::TooLong => {
                    assert!(raw.len() > 4096 || parts.iter().any(|c| c.len() > 255));
                    P_TOO_LONG
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// status_record

pub const S_PARSED: u32 = 1 << 0;
pub const S_JUDGED: u32 = 1 << 1;
pub const S_VERIFIED: u32 = 1 << 2;
pub const S_NOT_VERIFIED: u32 = 1 << 3;

const STATUS_MILESTONES: Milestones = &[
    (S_PARSED, "a status record parsed"),
    (S_JUDGED, "a record written by status::write and judged"),
    (S_VERIFIED, "judged verified"),
    (S_NOT_VERIFIED, "judged not verified despite a record"),
];

/// A private runtime directory for status records (`TRUSTFS_RUNTIME_DIR`), made once per process.
pub fn status_runtime_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("trustfs-fuzz-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the runtime directory");
        std::env::set_var("TRUSTFS_RUNTIME_DIR", &dir);
        dir
    })
}

/// Values equal up to float rounding (a status record carries one float).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same_json(a, b))
        }
        _ => a == b,
    }
}

/// A status record (`MountStatus` JSON). Parsed ones get `seconds_until` for their times, are
/// written with `status::write` and judged with `status::judge` at two moments (fixed, and just
/// after the record's update): the record reads back as written, and the judgement is fail-closed
/// (verified only if the record says verified, is fresh, and all four roles are unexpired).
pub fn status_record(data: &[u8]) -> u32 {
    let s: MountStatus = match serde_json::from_slice(data) {
        Ok(s) => s,
        Err(_) => return 0,
    };
    let mut m = S_PARSED;
    let fixed_now = UtcTime::parse(DEFAULT_NOW).unwrap();
    let md = &s.metadata;
    for t in [
        &md.root_expires,
        &md.timestamp_expires,
        &md.snapshot_expires,
        &md.targets_expires,
        &md.expires,
        &s.started,
        &s.updated,
    ] {
        let secs = status::seconds_until(t, fixed_now);
        assert_eq!(
            secs,
            UtcTime::parse(t).ok().map(|e| e.0 - fixed_now.0),
            "seconds_until({t:?})"
        );
    }
    let dir = status_runtime_dir();
    let mountpoint = Path::new(&s.mountpoint);
    let name = status::instance_name(mountpoint);
    assert!(
        !name.is_empty() && !name.contains(['/', '\0']) && name != "." && name != "..",
        "instance name {name:?} of {mountpoint:?} is not a plain file name"
    );
    let path = status::status_path(mountpoint);
    assert_eq!(
        path.parent(),
        Some(dir),
        "status record outside the runtime dir"
    );
    if status::write(&s).is_err() {
        return m; // e.g. a name too long for the file system
    }
    let written = serde_json::to_value(&s).unwrap();
    for now in [fixed_now, UtcTime(s.updated_unix.saturating_add(1))] {
        let v = status::judge(mountpoint, now);
        let got = v
            .status
            .as_ref()
            .unwrap_or_else(|| panic!("the record just written does not read back: {v:?}"));
        assert!(
            same_json(&serde_json::to_value(got).unwrap(), &written),
            "the record reads back otherwise"
        );
        assert_eq!(v.verified, v.problems.is_empty());
        if v.verified {
            assert!(
                s.verified,
                "judged verified, but the record says not verified"
            );
            assert!(
                i128::from(now.0) - i128::from(s.updated_unix) <= i128::from(status::STALE_AFTER),
                "judged verified, but the record is stale"
            );
            for e in [
                &md.root_expires,
                &md.timestamp_expires,
                &md.snapshot_expires,
                &md.targets_expires,
            ] {
                let t = UtcTime::parse(e).expect("judged verified without a valid expiry");
                assert!(t > now, "judged verified, but metadata expired at {e}");
            }
            m |= S_VERIFIED;
        } else {
            m |= S_NOT_VERIFIED;
        }
        m |= S_JUDGED;
    }
    status::remove(mountpoint);
    assert!(!path.exists(), "status::remove left {path:?}");
    m
}

// ---------------------------------------------------------------------------------------------
// mountinfo

pub const I_FOUND: u32 = 1 << 0;
pub const I_ROUND_TRIP: u32 = 1 << 1;
pub const I_ESCAPED: u32 = 1 << 2;

const MOUNTINFO_MILESTONES: Milestones = &[
    (I_FOUND, "a trustfs mount found in fuzzed mountinfo text"),
    (
        I_ROUND_TRIP,
        "a mountpoint round-tripped through a mountinfo line",
    ),
    (
        I_ESCAPED,
        "a mountpoint with escaped characters round-tripped",
    ),
];

/// mountinfo escapes these four as `\ooo` (the kernel's `show_mountinfo`).
fn kernel_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The input (lossily UTF-8) as mountinfo text: `parse_mountinfo` must not panic, and finds at
/// most one mount a line. And as a mountpoint: escaped as the kernel does and put in a mountinfo
/// table between other mounts, it must come back exactly, once for each trustfs line.
pub fn mountinfo(data: &[u8]) -> u32 {
    let text = String::from_utf8_lossy(data);
    let mut m = 0;
    let found = status::parse_mountinfo(&text);
    assert!(found.len() <= text.lines().count());
    if !found.is_empty() {
        m |= I_FOUND;
    }
    let point = if text.starts_with('/') {
        text.into_owned()
    } else {
        format!("/{text}")
    };
    let escaped = kernel_escape(&point);
    assert_eq!(status::unescape_mountinfo(&escaped), point);
    let table = format!(
        "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n\
         36 25 0:52 / {escaped} rw,nosuid,nodev,relatime shared:190 - fuse.trustfs trustfs rw,user_id=0,group_id=0,default_permissions,allow_other\n\
         37 25 0:53 / {escaped} rw,relatime - fuse.sshfs host:/x rw,user_id=0\n\
         38 25 0:54 /sub {escaped} ro,relatime master:3 - fuse trustfs ro,user_id=0,group_id=0\n\
         39 25 0:55 / {escaped} rw - fuse other rw\n"
    );
    let got = status::parse_mountinfo(&table);
    let want = vec![PathBuf::from(&point), PathBuf::from(&point)];
    assert_eq!(got, want, "mountinfo round trip of {point:?}");
    m |= I_ROUND_TRIP;
    if escaped != point {
        m |= I_ESCAPED;
    }
    m
}

// ---------------------------------------------------------------------------------------------
// http: the HTTP response path of `trust::HttpFetcher` (status line, headers, framing, body
// limits, redirects), against a real socket on 127.0.0.1.

const H_BODY: u32 = 1 << 0;
const H_NOT_FOUND: u32 = 1 << 1;
const H_TOO_LARGE: u32 = 1 << 2;
const H_TRANSPORT: u32 = 1 << 3;
const H_STATUS: u32 = 1 << 4;
const H_REDIRECT_FOLLOWED: u32 = 1 << 5;
const H_REDIRECT_REFUSED: u32 = 1 << 6;
const H_CHUNKED_BODY: u32 = 1 << 7;

const HTTP_MILESTONES: Milestones = &[
    (H_BODY, "a body returned"),
    (H_NOT_FOUND, "not found"),
    (H_TOO_LARGE, "refused: larger than the limit"),
    (H_TRANSPORT, "a transport or framing error"),
    (H_STATUS, "refused: an unexpected status"),
    (H_REDIRECT_FOLLOWED, "a redirect followed"),
    (H_REDIRECT_REFUSED, "a redirect refused"),
    (H_CHUNKED_BODY, "a chunked body returned"),
];

/// Separates the responses of one input: the server answers its n-th connection with part n.
const NEXT_RESPONSE: &[u8] = b"\n=== next\n";

/// The responses the server gives, in order; shared with the server thread.
struct Script {
    responses: std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>,
    connections: std::sync::atomic::AtomicUsize,
}

fn http_server() -> &'static (std::net::SocketAddr, Script) {
    static SERVER: OnceLock<(std::net::SocketAddr, Script)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (_, script) = http_server();
                script
                    .connections
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                // Read the request head, then answer and close.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while find(&head, b"\r\n\r\n").is_none() && head.len() < 65536 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = script.responses.lock().unwrap().pop_front();
                if let Some(r) = response {
                    let _ = conn.write_all(&r);
                }
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        });
        (
            addr,
            Script {
                responses: Default::default(),
                connections: Default::default(),
            },
        )
    })
}

/// The first byte picks the byte limit (0–255, or 64 KiB when it is 255); the rest is what the
/// server sends back, one response per connection, parts separated by `\n=== next\n`. The fetch
/// runs through a fresh `HttpFetcher` (1 s deadlines) for `dir/file.json`. Checks: no panic
/// escapes, none is caught at the HTTP boundary either (that would be a bug in the stack), a
/// returned body is at most the limit, a connection is opened at most once per response (+1),
/// and a success came from a 200 response.
pub fn http(data: &[u8]) -> u32 {
    let Some((&first, rest)) = data.split_first() else {
        return 0;
    };
    let limit = if first == 255 {
        65536
    } else {
        u64::from(first)
    };
    let mut parts = Vec::new();
    let mut rest = rest;
    while let Some(i) = find(rest, NEXT_RESPONSE) {
        parts.push(rest[..i].to_vec());
        rest = &rest[i + NEXT_RESPONSE.len()..];
    }
    parts.push(rest.to_vec());
    let (addr, script) = http_server();
    let count = parts.len();
    *script.responses.lock().unwrap() = parts.into();
    let before = script.connections.load(std::sync::atomic::Ordering::SeqCst);
    let options = trust::HttpOptions {
        io_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let fetcher = trust::HttpFetcher::with_options(&format!("http://{addr}/dir/"), options)
        .expect("a valid base URL");
    let result = fetcher.fetch("file.json", limit);
    let connections = script.connections.load(std::sync::atomic::Ordering::SeqCst) - before;
    // Responses the client did not ask for must not answer the next input.
    script.responses.lock().unwrap().clear();
    assert!(
        connections <= count + 1,
        "{connections} connections for {count} responses"
    );
    let text = String::from_utf8_lossy(data);
    let mut m = 0;
    if connections > 1 {
        m |= H_REDIRECT_FOLLOWED;
    }
    match result {
        Ok(Some(body)) => {
            assert!(
                body.len() as u64 <= limit,
                "{} bytes returned, limit {limit}",
                body.len()
            );
            assert!(text.contains(" 200"), "a body without a 200 response");
            m |= H_BODY;
            if text
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                m |= H_CHUNKED_BODY;
            }
        }
        Ok(None) => m |= H_NOT_FOUND,
        Err(FetchError::TooLarge { .. }) => m |= H_TOO_LARGE,
        Err(FetchError::BadName(n)) => panic!("file.json refused as a name: {n}"),
        Err(FetchError::Io { error, .. }) => {
            // What `no_panic` makes of a panic. (`contains` would also match a hostile
            // Location header echoed in a refusal: the first long run's one "crash".)
            assert!(
                !error.starts_with("internal error in the HTTP client"),
                "a panic in the HTTP stack: {error}"
            );
            if error.contains("HTTP status") {
                m |= H_STATUS;
            } else if error.contains("redirect") {
                m |= H_REDIRECT_REFUSED;
            } else {
                m |= H_TRANSPORT;
            }
        }
        // The fuzzer's own descriptors ran out: not the server's doing.
        Err(FetchError::Descriptors { .. }) => m |= H_TRANSPORT,
    }
    m
}
