//! The four top-level TUF 1.0 roles and delegated targets roles, as typed views over the parsed
//! JSON. The raw `signed` value is kept next to the typed view: signatures are checked over its
//! canonical form, so fields trustfs does not know are kept and still covered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use super::cjson;
use super::error::SchemaError;
use super::keys::Key;
use super::time::UtcTime;

/// The specification major version trustfs implements.
pub const SPEC_MAJOR: &str = "1";
/// The spec version trustfs writes.
pub const SPEC_VERSION: &str = "1.0.31";

/// One entry of `signatures`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signature {
    pub keyid: String,
    pub sig: String,
}

/// The role a metadata file claims to be (`signed._type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleType {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl RoleType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::Root => "root",
            RoleType::Targets => "targets",
            RoleType::Snapshot => "snapshot",
            RoleType::Timestamp => "timestamp",
        }
    }
}

/// Fields every role has.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Common {
    #[serde(rename = "_type")]
    pub type_: String,
    pub spec_version: String,
    pub version: u64,
    pub expires: String,
}

/// Keys and threshold of one top-level role in root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoleKeys {
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Root {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub consistent_snapshot: Option<bool>,
    pub keys: BTreeMap<String, Value>,
    pub roles: BTreeMap<String, RoleKeys>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Root {
    /// The keys and threshold of top-level role `name` ("root", "targets", "snapshot",
    /// "timestamp"; a validated root lists all four).
    pub fn role(&self, name: &str) -> Result<&RoleKeys, String> {
        self.roles
            .get(name)
            .ok_or_else(|| format!("root lists no {name:?} role"))
    }
}

/// A `meta` entry of timestamp or snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MetaFile {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timestamp {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Timestamp {
    /// The snapshot it names (a validated timestamp lists exactly "snapshot.json").
    pub fn snapshot(&self) -> Result<&MetaFile, String> {
        self.meta
            .get("snapshot.json")
            .ok_or_else(|| "timestamp meta does not list \"snapshot.json\"".to_owned())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(flatten)]
    pub common: Common,
    pub meta: BTreeMap<String, MetaFile>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One entry of `targets`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TargetFile {
    pub length: u64,
    pub hashes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A delegated targets role as listed in `delegations.roles`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DelegatedRole {
    pub name: String,
    pub keyids: Vec<String>,
    pub threshold: u64,
    #[serde(default)]
    pub terminating: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hash_prefixes: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Succinct hash bin delegations (TAP 15, python-tuf's `SuccinctRoles`): `2^bit_length` roles
/// named `{name_prefix}-{i:0Wx}` (W: hex digits of `2^bit_length - 1`), all with these keys and
/// threshold, all terminating. A target path belongs to the bin whose number is the first
/// `bit_length` bits of sha256(path); a bin may only vouch for paths that hash to it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SuccinctRoles {
    pub keyids: Vec<String>,
    pub threshold: u64,
    pub bit_length: u32,
    pub name_prefix: String,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl SuccinctRoles {
    /// Most bits a bin number may have (TAP 15: 1 to 32).
    pub const MAX_BIT_LENGTH: u32 = 32;

    /// How many bins there are: `2^bit_length`.
    pub fn bin_count(&self) -> u64 {
        1u64 << self.bit_length.min(Self::MAX_BIT_LENGTH)
    }

    /// Hex digits of a bin name's suffix: those of the last bin number, `2^bit_length - 1`.
    pub fn suffix_len(&self) -> usize {
        self.bit_length.div_ceil(4).max(1) as usize
    }

    /// The bin number of `path`: the first `bit_length` bits of sha256(path), big-endian.
    pub fn bin_of(&self, path: &str) -> u64 {
        let digest = sha2::Sha256::digest(path.as_bytes());
        let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        // validate() keeps bit_length in 1..=32, so the shift is in 0..=31; clamp regardless.
        let shift = 32 - self.bit_length.clamp(1, Self::MAX_BIT_LENGTH);
        u64::from(first >> shift)
    }

    /// The name of bin `i`: `{name_prefix}-{i:0Wx}`.
    pub fn bin_name(&self, i: u64) -> String {
        format!(
            "{}-{:0width$x}",
            self.name_prefix,
            i,
            width = self.suffix_len()
        )
    }

    /// The name of the bin responsible for `path`.
    pub fn role_for(&self, path: &str) -> String {
        self.bin_name(self.bin_of(path))
    }

    /// The bin number `name` stands for, if it is exactly the name of one of these bins (the
    /// prefix, `-`, W lowercase hex digits, in range; python-tuf's `is_delegated_role`, without
    /// its leniency for uppercase or `0x`).
    pub fn bin_number(&self, name: &str) -> Option<u64> {
        let suffix = name.strip_prefix(&self.name_prefix)?.strip_prefix('-')?;
        if suffix.len() != self.suffix_len()
            || !suffix
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let n = u64::from_str_radix(suffix, 16).ok()?;
        (n < self.bin_count()).then_some(n)
    }

    /// Every bin name, in bin order.
    pub fn bin_names(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.bin_count()).map(|i| self.bin_name(i))
    }

    /// The structural rules of TAP 15 plus the file-name safety of role names: `bit_length` 1 to
    /// 32, and a `name_prefix` that can be part of a file name and a URL component as it is.
    pub fn check(&self) -> Result<(), String> {
        if self.bit_length == 0 || self.bit_length > Self::MAX_BIT_LENGTH {
            return Err(format!(
                "succinct_roles bit_length {} is out of range (1 to {})",
                self.bit_length,
                Self::MAX_BIT_LENGTH
            ));
        }
        check_name_prefix(&self.name_prefix)
    }
}

/// A succinct `name_prefix` becomes part of every bin's file name (`N.{prefix}-{i}.json`) and URL:
/// no path characters, no `.`/`..` tricks, no NUL or control characters.
fn check_name_prefix(prefix: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "succinct_roles name_prefix {prefix:?} cannot name bin metadata files: {why}"
        ))
    };
    if prefix.is_empty() {
        return bad("it is empty");
    }
    if prefix.len() > 200 {
        return bad("it is longer than 200 bytes");
    }
    if prefix.contains('/') || prefix.contains('\\') {
        return bad("it contains a path separator");
    }
    if prefix.starts_with('.') {
        return bad("it starts with '.' (as '.' and '..' do)");
    }
    if prefix.chars().any(char::is_control) {
        return bad("it contains NUL or another control character");
    }
    Ok(())
}

/// A targets role's `delegations`: keys, and exactly one of `roles` (named roles with paths or
/// hash prefixes) and `succinct_roles` (hash bins, TAP 15).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Delegations {
    pub keys: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<DelegatedRole>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succinct_roles: Option<SuccinctRoles>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Delegations {
    /// The named delegated roles (none when the delegation is succinct).
    pub fn roles(&self) -> &[DelegatedRole] {
        self.roles.as_deref().unwrap_or(&[])
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Targets {
    #[serde(flatten)]
    pub common: Common,
    pub targets: BTreeMap<String, TargetFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Accessors every typed role offers.
pub trait Signed: serde::de::DeserializeOwned + Serialize {
    const TYPE: RoleType;
    fn common(&self) -> &Common;
    fn common_mut(&mut self) -> &mut Common;
    /// Role-specific structural checks beyond types (thresholds ≥ 1, hashes hex, ...).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

impl Signed for Root {
    const TYPE: RoleType = RoleType::Root;
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn validate(&self) -> Result<(), String> {
        for (keyid, key) in &self.keys {
            Key::from_value(key).map_err(|e| format!("key {keyid}: {e}"))?;
        }
        for name in ["root", "targets", "snapshot", "timestamp"] {
            let role = self
                .roles
                .get(name)
                .ok_or_else(|| format!("root lists no {name:?} role"))?;
            check_role_keys(name, &role.keyids, role.threshold, &self.keys)?;
        }
        Ok(())
    }
}

impl Signed for Timestamp {
    const TYPE: RoleType = RoleType::Timestamp;
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn validate(&self) -> Result<(), String> {
        if self.meta.len() != 1 || !self.meta.contains_key("snapshot.json") {
            return Err("timestamp meta must list exactly \"snapshot.json\"".into());
        }
        self.meta.iter().try_for_each(|(n, m)| check_meta(n, m))
    }
}

impl Signed for Snapshot {
    const TYPE: RoleType = RoleType::Snapshot;
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn validate(&self) -> Result<(), String> {
        self.meta.iter().try_for_each(|(n, m)| check_meta(n, m))
    }
}

impl Signed for Targets {
    const TYPE: RoleType = RoleType::Targets;
    fn common(&self) -> &Common {
        &self.common
    }
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
    fn validate(&self) -> Result<(), String> {
        for (path, t) in &self.targets {
            super::TargetPath::parse(path).map_err(|e| format!("target {path:?}: {e}"))?;
            check_hashes(&format!("target {path:?}"), &t.hashes)?;
        }
        if let Some(d) = &self.delegations {
            for (keyid, key) in &d.keys {
                Key::from_value(key).map_err(|e| format!("delegated key {keyid}: {e}"))?;
            }
            match (&d.roles, &d.succinct_roles) {
                (Some(_), Some(_)) => {
                    return Err(
                        "delegations sets both roles and succinct_roles; exactly one is allowed"
                            .into(),
                    )
                }
                (None, None) => {
                    return Err(
                        "delegations sets neither roles nor succinct_roles; exactly one is needed"
                            .into(),
                    )
                }
                _ => {}
            }
            if let Some(s) = &d.succinct_roles {
                s.check()?;
                check_role_keys(
                    &format!("{}-*", s.name_prefix),
                    &s.keyids,
                    s.threshold,
                    &d.keys,
                )?;
            }
            let mut names = std::collections::BTreeSet::new();
            for role in d.roles() {
                if !names.insert(role.name.as_str()) {
                    return Err(format!("delegated role {:?} is listed twice", role.name));
                }
                if ["root", "targets", "snapshot", "timestamp"].contains(&role.name.as_str()) {
                    return Err(format!("a delegated role may not be named {:?}", role.name));
                }
                // Role names become file names and URL components; they are always
                // percent-encoded there (trust::quote), so only emptiness and NUL are refused.
                if role.name.is_empty() || role.name.contains('\0') {
                    return Err(format!(
                        "delegated role name {:?} is empty or contains NUL",
                        role.name
                    ));
                }
                check_role_keys(&role.name, &role.keyids, role.threshold, &d.keys)?;
                match (&role.paths, &role.path_hash_prefixes) {
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "delegated role {:?} sets both paths and path_hash_prefixes",
                            role.name
                        ))
                    }
                    (None, Some(prefixes)) => {
                        for p in prefixes {
                            if !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                                return Err(format!(
                                    "delegated role {:?}: path hash prefix {p:?} is not hex",
                                    role.name
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn check_role_keys(
    role: &str,
    keyids: &[String],
    threshold: u64,
    keys: &BTreeMap<String, Value>,
) -> Result<(), String> {
    if threshold < 1 {
        return Err(format!(
            "role {role:?} has threshold {threshold}; it must be at least 1"
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for k in keyids {
        if !seen.insert(k) {
            return Err(format!("role {role:?} lists key id {k} twice"));
        }
        if !keys.contains_key(k) {
            return Err(format!(
                "role {role:?} lists key id {k}, which is not among the keys"
            ));
        }
    }
    Ok(())
}

fn check_meta(name: &str, m: &MetaFile) -> Result<(), String> {
    if m.version < 1 {
        return Err(format!("meta {name:?}: version must be at least 1"));
    }
    if let Some(h) = &m.hashes {
        check_hashes(&format!("meta {name:?}"), h)?;
    }
    Ok(())
}

fn check_hashes(what: &str, hashes: &BTreeMap<String, String>) -> Result<(), String> {
    if hashes.is_empty() {
        return Err(format!("{what} lists no hashes"));
    }
    for (alg, h) in hashes {
        if !is_hex(h) {
            return Err(format!("{what}: {alg} hash {h:?} is not hex"));
        }
    }
    Ok(())
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether `s` is hex as [`decode_hex`] takes it (an even number of hex digits, either case).
pub fn is_hex(s: &str) -> bool {
    s.len() % 2 == 0 && s.bytes().all(|c| nibble(c).is_some())
}

/// Whether `hex` (either case) spells `digest`, without allocating.
pub fn hex_eq(hex: &str, digest: &[u8]) -> bool {
    hex.len() == digest.len() * 2
        && hex
            .as_bytes()
            .chunks_exact(2)
            .zip(digest)
            .all(|(pair, &b)| match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => ((hi << 4) | lo) == b,
                _ => false,
            })
}

/// The bytes hex `s` spells (an even number of hex digits, either case). A million target
/// digests are decoded at every full load: a plain loop, about four times the `hex` crate's
/// speed.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks_exact(2) {
        out.push((nibble(pair[0])? << 4) | nibble(pair[1])?);
    }
    Some(out)
}

/// A parsed metadata file: the typed view, the raw `signed` value and the signatures.
#[derive(Clone, Debug)]
pub struct Metadata<T> {
    pub signed: T,
    pub signed_value: Value,
    pub signatures: Vec<Signature>,
}

impl<T: Signed> Metadata<T> {
    /// Parse `bytes` as metadata of role type `T`. `file` names the file in errors.
    pub fn from_slice(file: &str, bytes: &[u8]) -> Result<Self, SchemaError> {
        let malformed = |rule: String| SchemaError::Malformed {
            file: file.to_owned(),
            rule,
        };
        let mut value: Value =
            serde_json::from_slice(bytes).map_err(|e| malformed(format!("not valid JSON: {e}")))?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| malformed("top level must be a JSON object".into()))?;
        let signed_value = obj
            .remove("signed")
            .ok_or_else(|| malformed("no \"signed\" object".into()))?;
        if !signed_value.is_object() {
            return Err(malformed("\"signed\" must be a JSON object".into()));
        }
        let sigs = obj
            .remove("signatures")
            .ok_or_else(|| malformed("no \"signatures\" list".into()))?;
        let signatures: Vec<Signature> =
            serde_json::from_value(sigs).map_err(|e| malformed(format!("\"signatures\": {e}")))?;
        let mut keyids = std::collections::BTreeSet::new();
        for s in &signatures {
            if !keyids.insert(s.keyid.as_str()) {
                return Err(malformed(format!("two signatures from key id {}", s.keyid)));
            }
        }
        let type_ = signed_value
            .get("_type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if type_ != T::TYPE.as_str() {
            return Err(malformed(format!(
                "expected a {} role, but _type is {type_:?}",
                T::TYPE.as_str()
            )));
        }
        // Deserialized from a borrow of the value (a clone of a large targets role costs as
        // much as the parse).
        let signed = T::deserialize(&signed_value)
            .map_err(|e| malformed(format!("{} metadata: {e}", T::TYPE.as_str())))?;
        let common = signed.common();
        let major = common.spec_version.split('.').next().unwrap_or("");
        if major != SPEC_MAJOR || common.spec_version.split('.').count() < 2 {
            return Err(malformed(format!(
                "spec_version {:?} is not supported (trustfs implements {SPEC_MAJOR}.x)",
                common.spec_version
            )));
        }
        if common.version < 1 {
            return Err(malformed("version must be at least 1".into()));
        }
        UtcTime::parse(&common.expires).map_err(|e| malformed(format!("expires: {e}")))?;
        signed.validate().map_err(malformed)?;
        // Every signature must at least be hex, or the file is malformed.
        for s in &signatures {
            hex::decode(&s.sig)
                .map_err(|_| malformed(format!("signature of key id {} is not hex", s.keyid)))?;
        }
        Ok(Metadata {
            signed,
            signed_value,
            signatures,
        })
    }

    /// Wrap a freshly built role (publisher side); the raw value is derived from it.
    pub fn new(signed: T) -> Result<Self, SchemaError> {
        let signed_value = serde_json::to_value(&signed).map_err(|e| SchemaError::Malformed {
            file: T::TYPE.as_str().into(),
            rule: e.to_string(),
        })?;
        Ok(Metadata {
            signed,
            signed_value,
            signatures: Vec::new(),
        })
    }

    /// The bytes signatures are made over: the canonical form of the parsed `signed` value.
    pub fn canonical_signed(&self) -> Result<Vec<u8>, SchemaError> {
        cjson::to_canonical(&self.signed_value).map_err(|e| SchemaError::Malformed {
            file: T::TYPE.as_str().into(),
            rule: e.to_string(),
        })
    }

    pub fn version(&self) -> u64 {
        self.signed.common().version
    }

    /// Expiry time (validated at parse time).
    pub fn expires(&self) -> UtcTime {
        // from_slice and the publisher both validate `expires`; fall back to the epoch (expired)
        // rather than panic should that ever not hold.
        UtcTime::parse(&self.signed.common().expires).unwrap_or(UtcTime(0))
    }

    /// Serialize for writing: `{"signatures": [...], "signed": {...}}`, pretty-printed like
    /// python-tuf's JSONSerializer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let v = serde_json::json!({"signed": self.signed_value, "signatures": self.signatures});
        let mut out = serde_json::to_vec_pretty(&v).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// A metadata file, whatever its role, for commands that just need to look.
pub fn peek_type(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("signed")?.get("_type")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_eq_matches_either_case_and_nothing_else() {
        let d = [0xab, 0x01, 0xff];
        assert!(hex_eq("ab01ff", &d));
        assert!(hex_eq("AB01FF", &d));
        for other in ["ab01fe", "ab01f", "ab01ff0", "xb01ff", "", "+b01ff"] {
            assert!(!hex_eq(other, &d), "{other}");
        }
        assert!(hex_eq("", &[]));
    }

    #[test]
    fn hex_decodes_like_the_hex_crate() {
        for s in [
            "", "00", "ab01FF", "0", "abc", "zz", "0g", "+1", "é1", "ffff",
        ] {
            assert_eq!(decode_hex(s), hex::decode(s).ok(), "{s:?}");
            assert_eq!(is_hex(s), hex::decode(s).is_ok(), "{s:?}");
        }
        let all: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
        assert_eq!(decode_hex(&all), Some((0..=255u8).collect()));
        assert_eq!(decode_hex(&all.to_uppercase()), Some((0..=255u8).collect()));
    }

    fn bins(bit_length: u32, name_prefix: &str) -> SuccinctRoles {
        SuccinctRoles {
            keyids: vec![],
            threshold: 1,
            bit_length,
            name_prefix: name_prefix.into(),
            extra: BTreeMap::new(),
        }
    }

    /// The values python-tuf 7's `SuccinctRoles.get_role_for_target` and `get_roles` give.
    #[test]
    fn bin_names_and_numbers_are_python_tufs() {
        let paths = ["a", "dir/file.txt", "caf\u{e9}/x", ""];
        for (b, want, last) in [
            (1, ["bins-1", "bins-0", "bins-0", "bins-1"], "bins-1"),
            (4, ["bins-c", "bins-7", "bins-2", "bins-e"], "bins-f"),
            (5, ["bins-19", "bins-0f", "bins-05", "bins-1c"], "bins-1f"),
            (8, ["bins-ca", "bins-78", "bins-2a", "bins-e3"], "bins-ff"),
            (
                10,
                ["bins-32a", "bins-1e0", "bins-0aa", "bins-38e"],
                "bins-3ff",
            ),
            (
                15,
                ["bins-654b", "bins-3c09", "bins-1556", "bins-71d8"],
                "bins-7fff",
            ),
        ] {
            let s = bins(b, "bins");
            let got: Vec<String> = paths.iter().map(|p| s.role_for(p)).collect();
            assert_eq!(got, want, "bit_length {b}");
            assert_eq!(s.bin_names().last().unwrap(), last);
            assert_eq!(s.bin_names().count() as u64, 1 << b);
        }
        let s = bins(32, "bins");
        assert_eq!(s.role_for("a"), "bins-ca978112");
        assert_eq!(s.role_for(""), "bins-e3b0c442");
        assert_eq!(s.bin_count(), 1 << 32);
    }

    #[test]
    fn only_exact_bin_names_are_bins() {
        let s = bins(8, "bins");
        assert_eq!(s.bin_number("bins-00"), Some(0));
        assert_eq!(s.bin_number("bins-ff"), Some(255));
        for not in [
            "bins-0", "bins-100", "bins-FF", "bins-0x", "bins_00", "bin-00", "bins-+1",
        ] {
            assert_eq!(s.bin_number(not), None, "{not}");
        }
        let s = bins(5, "bins");
        assert_eq!(s.bin_number("bins-1f"), Some(31));
        assert_eq!(s.bin_number("bins-20"), None, "out of range");
    }

    #[test]
    fn bad_bit_lengths_and_prefixes_are_refused() {
        assert!(bins(0, "bins")
            .check()
            .unwrap_err()
            .contains("out of range"));
        assert!(bins(33, "bins")
            .check()
            .unwrap_err()
            .contains("out of range"));
        assert!(bins(1, "bins").check().is_ok());
        assert!(bins(32, "bins").check().is_ok());
        for (prefix, why) in [
            ("", "empty"),
            ("a/b", "path separator"),
            ("..", "starts with '.'"),
            (".hidden", "starts with '.'"),
            ("../../etc", "path separator"),
            ("a\\b", "path separator"),
            ("a\0b", "control character"),
            ("a\nb", "control character"),
        ] {
            let e = bins(8, prefix).check().unwrap_err();
            assert!(e.contains(why), "{prefix:?}: {e}");
        }
    }

    fn targets_with(delegations: Value) -> Result<Metadata<Targets>, SchemaError> {
        let md = serde_json::json!({
            "signed": {"_type": "targets", "spec_version": "1.0.31", "version": 1,
                       "expires": "2030-01-01T00:00:00Z", "targets": {},
                       "delegations": delegations},
            "signatures": []
        });
        Metadata::<Targets>::from_slice("t", &serde_json::to_vec(&md).unwrap())
    }

    #[test]
    fn delegations_hold_exactly_one_of_roles_and_succinct_roles() {
        let key = crate::schema::SigningKey::generate()
            .public_key()
            .to_value();
        let succinct = serde_json::json!({"keyids": ["k"], "threshold": 1, "bit_length": 4,
            "name_prefix": "bins", "x-unknown": 1});
        let md = targets_with(serde_json::json!({"keys": {"k": key},
            "succinct_roles": succinct, "x-deleg": true}))
        .unwrap();
        let d = md.signed.delegations.as_ref().unwrap();
        let s = d.succinct_roles.as_ref().unwrap();
        assert_eq!((s.bit_length, s.name_prefix.as_str()), (4, "bins"));
        assert!(d.roles().is_empty());
        // Unknown fields are kept, and covered by the canonical form.
        assert_eq!(s.extra["x-unknown"], 1);
        let canonical = String::from_utf8(md.canonical_signed().unwrap()).unwrap();
        assert!(canonical.contains("\"x-unknown\":1") && canonical.contains("\"x-deleg\":true"));

        let both = targets_with(serde_json::json!({"keys": {"k": key}, "roles": [],
            "succinct_roles": succinct}))
        .unwrap_err();
        assert!(
            both.to_string().contains("both roles and succinct_roles"),
            "{both}"
        );
        let neither = targets_with(serde_json::json!({"keys": {}})).unwrap_err();
        assert!(neither.to_string().contains("neither"), "{neither}");
        let unknown_key = targets_with(serde_json::json!({"keys": {},
            "succinct_roles": succinct}))
        .unwrap_err();
        assert!(
            unknown_key.to_string().contains("not among the keys"),
            "{unknown_key}"
        );
        let mut zero = succinct.clone();
        zero["bit_length"] = 0.into();
        let e = targets_with(serde_json::json!({"keys": {"k": key}, "succinct_roles": zero}))
            .unwrap_err();
        assert!(
            e.to_string().contains("bit_length 0 is out of range"),
            "{e}"
        );
        let mut slash = succinct.clone();
        slash["name_prefix"] = "../x".into();
        let e = targets_with(serde_json::json!({"keys": {"k": key}, "succinct_roles": slash}))
            .unwrap_err();
        assert!(e.to_string().contains("path separator"), "{e}");
    }
}
