//! [`SuccinctRoles`]: succinct hash bin delegations (TAP 15), and the names of their bins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use sha2::Digest;

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
