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
    pub hashes: Hashes,
    /// The target's `custom` object, if any (kept for display; never used for decisions).
    pub custom: Option<Box<serde_json::Value>>,
}

impl TargetInfo {
    /// The sha256 digest, if the metadata lists one.
    pub fn sha256(&self) -> Option<&[u8]> {
        self.hashes.get("sha256")
    }
}

/// The digests metadata lists for a target, by algorithm name, iterated in name order. Almost
/// every target lists exactly one 32-byte sha256, kept inline; anything else (sha512, a digest of
/// an unexpected length, an algorithm trustfs does not know) in a boxed list. A million targets
/// then cost 33 bytes of hashes each instead of a `BTreeMap` node, a key and a vector.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Hashes {
    sha256: Option<[u8; 32]>,
    /// Sorted by name; never holds a 32-byte `sha256`.
    others: Option<Box<[NamedDigest]>>,
}

/// An algorithm name and a digest.
type NamedDigest = (Box<str>, Box<[u8]>);

const SHA256: &str = "sha256";

impl Hashes {
    pub fn new() -> Hashes {
        Hashes::default()
    }

    /// Set the digest of `alg` (replacing one listed before).
    pub fn insert(&mut self, alg: impl Into<String>, digest: impl Into<Vec<u8>>) {
        let alg: String = alg.into();
        let digest: Vec<u8> = digest.into();
        self.remove(&alg);
        if alg == SHA256 {
            if let Ok(d) = <[u8; 32]>::try_from(digest.as_slice()) {
                self.sha256 = Some(d);
                return;
            }
        }
        let mut others = self.others.take().map(Vec::from).unwrap_or_default();
        let at = others.partition_point(|(a, _)| **a < *alg);
        others.insert(at, (alg.into_boxed_str(), digest.into_boxed_slice()));
        self.others = Some(others.into_boxed_slice());
    }

    fn remove(&mut self, alg: &str) {
        if alg == SHA256 {
            self.sha256 = None;
        }
        if let Some(others) = self.others.take() {
            let kept: Vec<NamedDigest> = Vec::from(others)
                .into_iter()
                .filter(|(a, _)| &**a != alg)
                .collect();
            self.others = (!kept.is_empty()).then(|| kept.into_boxed_slice());
        }
    }

    /// The digest listed for `alg`.
    pub fn get(&self, alg: &str) -> Option<&[u8]> {
        if alg == SHA256 {
            if let Some(d) = &self.sha256 {
                return Some(d);
            }
        }
        self.others
            .as_ref()?
            .iter()
            .find(|(a, _)| &**a == alg)
            .map(|(_, d)| &**d)
    }

    pub fn contains_key(&self, alg: &str) -> bool {
        self.get(alg).is_some()
    }

    /// (algorithm, digest) in algorithm name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let others = self.others.as_deref().unwrap_or(&[]);
        let split = others.partition_point(|(a, _)| &**a < SHA256);
        let (before, after) = others.split_at(split);
        fn pair((a, d): &NamedDigest) -> (&str, &[u8]) {
            (a, d)
        }
        before
            .iter()
            .map(pair)
            .chain(self.sha256.as_ref().map(|d| (SHA256, &d[..])))
            .chain(after.iter().map(pair))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(a, _)| a)
    }

    pub fn values(&self) -> impl Iterator<Item = &[u8]> {
        self.iter().map(|(_, d)| d)
    }

    pub fn len(&self) -> usize {
        usize::from(self.sha256.is_some()) + self.others.as_ref().map_or(0, |o| o.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Hashes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(a, d)| (a, hex::encode(d))))
            .finish()
    }
}

impl<A: Into<String>, D: Into<Vec<u8>>> FromIterator<(A, D)> for Hashes {
    fn from_iter<I: IntoIterator<Item = (A, D)>>(iter: I) -> Hashes {
        let mut h = Hashes::new();
        for (a, d) in iter {
            h.insert(a, d);
        }
        h
    }
}

impl<A: Into<String>, D: Into<Vec<u8>>, const N: usize> From<[(A, D); N]> for Hashes {
    fn from(pairs: [(A, D); N]) -> Hashes {
        pairs.into_iter().collect()
    }
}

/// A target path that passed the safety rules: relative, `/`-separated, no empty, `.` or `..`
/// components, no NUL, no backslash-free tricks. Constructed only by [`TargetPath::parse`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetPath(Box<str>);

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
        Ok(TargetPath(raw.into()))
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
    /// Each target with the position in `roles` of the role that listed it (`u32::MAX`: not
    /// recorded).
    targets: BTreeMap<TargetPath, (TargetInfo, u32)>,
    /// The roles that listed targets ("targets" or a delegated role), each once.
    roles: Vec<Box<str>>,
}

const NO_ROLE: u32 = u32::MAX;

impl TargetIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert a target; the first insertion for a path wins (delegation order is the caller's job).
    pub fn insert(&mut self, path: TargetPath, info: TargetInfo) {
        self.targets.entry(path).or_insert((info, NO_ROLE));
    }

    /// Insert a target together with the role that listed it (first insertion wins).
    pub fn insert_signed_by(&mut self, path: TargetPath, info: TargetInfo, role: &str) {
        if self.targets.contains_key(&path) {
            return;
        }
        // Roles are few and inserted in runs (one role's targets after another's).
        let at = match self.roles.iter().rposition(|r| &**r == role) {
            Some(i) => i,
            None => {
                self.roles.push(role.into());
                self.roles.len() - 1
            }
        };
        let at = u32::try_from(at).unwrap_or(NO_ROLE);
        self.targets.insert(path, (info, at));
    }

    /// The role that listed `path`, if recorded.
    pub fn signed_by(&self, path: &str) -> Option<&str> {
        let (_, role) = self.targets.get(path)?;
        self.roles.get(*role as usize).map(|r| &**r)
    }

    pub fn get(&self, path: &str) -> Option<&TargetInfo> {
        self.targets.get(path).map(|(info, _)| info)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TargetPath, &TargetInfo)> {
        self.targets.iter().map(|(p, (info, _))| (p, info))
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
            hashes: Hashes::new(),
            custom: None,
        };
        idx.insert(TargetPath::parse("a").unwrap(), info(1));
        idx.insert(TargetPath::parse("a").unwrap(), info(2));
        assert_eq!(idx.get("a").unwrap().length, 1);
        assert!(idx.get("b").is_none());
        idx.insert_signed_by(TargetPath::parse("b").unwrap(), info(3), "bins-1");
        idx.insert_signed_by(TargetPath::parse("c").unwrap(), info(4), "targets");
        idx.insert_signed_by(TargetPath::parse("d").unwrap(), info(5), "bins-1");
        idx.insert_signed_by(TargetPath::parse("b").unwrap(), info(6), "targets");
        assert_eq!(idx.signed_by("a"), None);
        assert_eq!(idx.signed_by("b"), Some("bins-1"));
        assert_eq!(idx.signed_by("c"), Some("targets"));
        assert_eq!(idx.signed_by("d"), Some("bins-1"));
        assert_eq!(idx.get("b").unwrap().length, 3);
        assert_eq!(idx.roles.len(), 2);
    }

    #[test]
    fn hashes_keep_name_order_and_every_digest() {
        let mut h = Hashes::new();
        assert!(h.is_empty());
        h.insert("sha512", vec![5; 64]);
        h.insert("sha256", vec![2; 32]);
        h.insert("blake2b", vec![1; 3]);
        h.insert("zz", vec![9]);
        let names: Vec<String> = h.keys().map(str::to_owned).collect();
        assert_eq!(names, ["blake2b", "sha256", "sha512", "zz"]);
        assert_eq!(h.get("sha256"), Some(&[2u8; 32][..]));
        assert_eq!(h.len(), 4);
        // A sha256 of the wrong length is kept as listed (and never matches a real digest).
        h.insert("sha256", vec![7; 5]);
        assert_eq!(h.get("sha256"), Some(&[7u8; 5][..]));
        assert_eq!(h.len(), 4);
        assert_eq!(h.keys().collect::<Vec<_>>(), names);
        h.insert("sha256", vec![3; 32]);
        assert_eq!(h.get("sha256"), Some(&[3u8; 32][..]));
        assert_eq!(h.len(), 4);
        let only = Hashes::from([("sha256", vec![1u8; 32])]);
        assert_eq!(only.len(), 1);
        assert!(only.others.is_none());
        assert_eq!(
            only,
            [("sha256".to_owned(), vec![1u8; 32])].into_iter().collect()
        );
    }
}
