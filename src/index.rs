//! The target index: what the verified metadata vouches for, keyed by target path.
//!
//! This is the seam between the TUF client (`crate::trust`), which builds an index from signed
//! metadata (top-level targets plus delegations, resolved the way the specification orders them),
//! and its consumers (`trustfs verify`, the mounts), which only ever ask "what does the metadata
//! say about this path?". Nothing here is trusted by construction: an index is only as good as the
//! client that filled it.

use std::collections::BTreeMap;
use std::fmt;

/// What signed metadata says about one target file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    /// Exact length in bytes.
    pub length: u64,
    /// Hash algorithm name (as spelled in the metadata, e.g. `sha256`) to raw digest bytes.
    pub hashes: BTreeMap<String, Vec<u8>>,
    /// The target's `custom` object, if any (kept for display; never used for decisions).
    pub custom: Option<serde_json::Value>,
}

impl TargetInfo {
    /// The sha256 digest, if the metadata lists one.
    pub fn sha256(&self) -> Option<&[u8]> {
        self.hashes.get("sha256").map(Vec::as_slice)
    }
}

/// A target path that passed the safety rules: relative, `/`-separated, no empty, `.` or `..`
/// components, no NUL, no backslash-free tricks. Constructed only by [`TargetPath::parse`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetPath(String);

/// Why a target path from metadata was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPathError {
    Empty,
    Absolute,
    Nul,
    EmptyComponent,
    DotComponent,
    DotDotComponent,
    TooLong,
}

impl fmt::Display for TargetPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetPathError::Empty => "target path is empty",
            TargetPathError::Absolute => "target path is absolute (starts with '/')",
            TargetPathError::Nul => "target path contains a NUL byte",
            TargetPathError::EmptyComponent => {
                "target path has an empty component ('//' or trailing '/')"
            }
            TargetPathError::DotComponent => "target path has a '.' component",
            TargetPathError::DotDotComponent => "target path has a '..' component",
            TargetPathError::TooLong => {
                "target path is longer than 4096 bytes or a component longer than 255"
            }
        })
    }
}

impl std::error::Error for TargetPathError {}

impl TargetPath {
    /// Check a target path taken from (untrusted) metadata.
    pub fn parse(raw: &str) -> Result<TargetPath, TargetPathError> {
        if raw.is_empty() {
            return Err(TargetPathError::Empty);
        }
        if raw.len() > 4096 {
            return Err(TargetPathError::TooLong);
        }
        if raw.contains('\0') {
            return Err(TargetPathError::Nul);
        }
        if raw.starts_with('/') {
            return Err(TargetPathError::Absolute);
        }
        for component in raw.split('/') {
            match component {
                "" => return Err(TargetPathError::EmptyComponent),
                "." => return Err(TargetPathError::DotComponent),
                ".." => return Err(TargetPathError::DotDotComponent),
                c if c.len() > 255 => return Err(TargetPathError::TooLong),
                _ => {}
            }
        }
        Ok(TargetPath(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

// TargetPath derives its ordering from the inner String, so borrowing as str is consistent.
impl std::borrow::Borrow<str> for TargetPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every target the trusted metadata vouches for, after delegation resolution.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetIndex {
    targets: BTreeMap<TargetPath, TargetInfo>,
    /// The role whose metadata listed each target ("targets" or a delegated role), where known.
    signed_by: BTreeMap<TargetPath, String>,
}

impl TargetIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert a target; the first insertion for a path wins (delegation order is the caller's job).
    pub fn insert(&mut self, path: TargetPath, info: TargetInfo) {
        self.targets.entry(path).or_insert(info);
    }

    /// Insert a target together with the role that listed it (first insertion wins).
    pub fn insert_signed_by(&mut self, path: TargetPath, info: TargetInfo, role: &str) {
        if !self.targets.contains_key(&path) {
            self.signed_by.insert(path.clone(), role.to_owned());
            self.targets.insert(path, info);
        }
    }

    /// The role that listed `path`, if recorded.
    pub fn signed_by(&self, path: &str) -> Option<&str> {
        self.signed_by.get(path).map(String::as_str)
    }

    pub fn get(&self, path: &str) -> Option<&TargetInfo> {
        self.targets.get(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TargetPath, &TargetInfo)> {
        self.targets.iter()
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_target_paths_are_rejected() {
        for (raw, err) in [
            ("", TargetPathError::Empty),
            ("/etc/passwd", TargetPathError::Absolute),
            ("a/../../etc/passwd", TargetPathError::DotDotComponent),
            ("..", TargetPathError::DotDotComponent),
            ("a//b", TargetPathError::EmptyComponent),
            ("a/", TargetPathError::EmptyComponent),
            ("./a", TargetPathError::DotComponent),
            ("a\0b", TargetPathError::Nul),
        ] {
            assert_eq!(TargetPath::parse(raw), Err(err), "{raw:?}");
        }
        assert_eq!(
            TargetPath::parse("dir/file.txt").unwrap().as_str(),
            "dir/file.txt"
        );
        assert_eq!(TargetPath::parse("..hidden").unwrap().as_str(), "..hidden");
    }

    #[test]
    fn first_insert_wins() {
        let mut idx = TargetIndex::new();
        let info = |n| TargetInfo {
            length: n,
            hashes: BTreeMap::new(),
            custom: None,
        };
        idx.insert(TargetPath::parse("a").unwrap(), info(1));
        idx.insert(TargetPath::parse("a").unwrap(), info(2));
        assert_eq!(idx.get("a").unwrap().length, 1);
        assert!(idx.get("b").is_none());
    }
}
