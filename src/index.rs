//! The target index: what the verified metadata vouches for, keyed by target path.
//!
//! This is the seam between the TUF client (`crate::trust`), which builds an index from signed
//! metadata (top-level targets plus delegations, resolved the way the specification orders them),
//! and its consumers (`trustfs verify`, the mounts), which only ever ask "what does the metadata
//! say about this path?". Nothing here is trusted by construction: an index is only as good as the
//! client that filled it.

use std::fmt;

pub use crate::schema::{TargetPath, TargetPathError};

/// What signed metadata says about one target file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetInfo {
    /// Exact length in bytes.
    pub length: u64,
    /// Hash algorithm name (as spelled in the metadata, e.g. `sha256`) to raw digest bytes.
    pub hashes: Hashes,
    /// The target's `custom` object, if any, without the trustfs chunk root (kept for display;
    /// never used for decisions).
    pub custom: Option<Box<serde_json::Value>>,
    /// The signed chunk root (`custom.trustfs.chunks`, see [`crate::chunks`]), if the target
    /// lists a well-formed one: what chunk-verified reads check the content against.
    pub chunk_root: Option<[u8; 32]>,
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

/// Every target the trusted metadata vouches for, after delegation resolution: a sorted, flat
/// table, built once ([`IndexBuilder`]) and then only read.
///
/// A target costs one 64-byte record plus its path's bytes (one shared buffer, in path order);
/// the few targets with more than a sha256 or with a `custom` object keep those in a side table,
/// and signed chunk roots (32 bytes each) are in another. At a million targets that is about 70 MB where a map of owned entries took several times
/// that. Positions (`0..len()`) are stable for the life of an index: the mount's inodes name
/// targets by position. Paths sort bytewise, so the targets under a directory are one range:
/// directories are derived ([`TargetIndex::is_dir`], [`TargetIndex::children`]), never stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetIndex {
    /// Every path, concatenated in sorted order; record `i` ends at `records[i].end`.
    names: Box<str>,
    records: Box<[Record]>,
    /// Hashes and `custom` of targets that do not fit a record.
    extras: Box<[Extra]>,
    /// The roles that listed targets ("targets" or a delegated role), each once.
    roles: Box<[Box<str>]>,
    /// Signed chunk roots of the targets that list one (a side table: a record grows by 8 bytes in
    /// memory, 4 encoded, where a `custom` object in `extras` would cost hundreds).
    chunk_roots: Box<[[u8; 32]]>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Record {
    /// End of this record's path in `names` (it starts where the previous one ends).
    end: u64,
    length: u64,
    /// The sha256 digest, when `extra` is [`NONE`].
    sha256: [u8; 32],
    /// Position in `roles` ([`NONE`]: not recorded).
    role: u32,
    /// Position in `extras` ([`NONE`]: the hashes are exactly `sha256`, no `custom`).
    extra: u32,
    /// Position in `chunk_roots` ([`NONE`]: no signed chunk root).
    chunks: u32,
}

#[derive(Clone, Debug, PartialEq)]
struct Extra {
    hashes: Hashes,
    custom: Option<Box<serde_json::Value>>,
}

const NONE: u32 = u32::MAX;

/// One entry of a directory as the target paths imply it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child<'a> {
    /// A directory: some target path continues below it.
    Dir(&'a str),
    /// A target file at this position (and no target path continues below it).
    File(&'a str, usize),
}

impl<'a> Child<'a> {
    pub fn name(&self) -> &'a str {
        match self {
            Child::Dir(n) | Child::File(n, _) => n,
        }
    }
}

impl TargetIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn builder() -> IndexBuilder {
        IndexBuilder::default()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The path of the target at `pos` (panics past `len()`, like slice indexing).
    pub fn path_at(&self, pos: usize) -> &str {
        let start = match pos {
            0 => 0,
            _ => self.records[pos - 1].end as usize,
        };
        &self.names[start..self.records[pos].end as usize]
    }

    /// What the metadata says about the target at `pos`.
    pub fn info_at(&self, pos: usize) -> TargetInfo {
        let r = &self.records[pos];
        let chunk_root = self.chunk_roots.get(r.chunks as usize).copied();
        match self.extras.get(r.extra as usize) {
            Some(e) => TargetInfo {
                length: r.length,
                hashes: e.hashes.clone(),
                custom: e.custom.clone(),
                chunk_root,
            },
            None => TargetInfo {
                length: r.length,
                hashes: Hashes {
                    sha256: Some(r.sha256),
                    others: None,
                },
                custom: None,
                chunk_root,
            },
        }
    }

    /// The role that listed the target at `pos`, if recorded.
    pub fn role_at(&self, pos: usize) -> Option<&str> {
        self.roles
            .get(self.records[pos].role as usize)
            .map(|r| &**r)
    }

    /// The first position whose path is not less than `key`.
    fn lower_bound(&self, key: &str) -> usize {
        self.partition_point(|p| p < key)
    }

    /// The position of `path`.
    pub fn position(&self, path: &str) -> Option<usize> {
        let at = self.lower_bound(path);
        (at < self.len() && self.path_at(at) == path).then_some(at)
    }

    pub fn get(&self, path: &str) -> Option<TargetInfo> {
        self.position(path).map(|pos| self.info_at(pos))
    }

    /// The role that listed `path`, if recorded.
    pub fn listed_by(&self, path: &str) -> Option<&str> {
        self.position(path).and_then(|pos| self.role_at(pos))
    }

    /// Every target, in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, TargetInfo)> {
        (0..self.len()).map(|pos| (self.path_at(pos), self.info_at(pos)))
    }

    /// Whether some target path continues below `dir` (`""`, the root, always is a directory).
    /// Asked at every lookup of a remote mount: no allocation.
    pub fn is_dir(&self, dir: &str) -> bool {
        if dir.is_empty() {
            return true;
        }
        // The first path not below "dir/" in order, compared without building "dir/".
        let below = |p: &str| {
            let (p, d) = (p.as_bytes(), dir.as_bytes());
            let n = p.len().min(d.len());
            match p[..n].cmp(&d[..n]) {
                std::cmp::Ordering::Equal => p.len() <= d.len() || p[d.len()] < b'/',
                o => o.is_lt(),
            }
        };
        let at = self.partition_point(below);
        at < self.len() && {
            let p = self.path_at(at).as_bytes();
            p.len() > dir.len() && p.starts_with(dir.as_bytes()) && p[dir.len()] == b'/'
        }
    }

    /// The first position whose path `less` says is not less (paths are sorted).
    fn partition_point(&self, less: impl Fn(&str) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.records.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if less(self.path_at(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The entries of directory `dir` (`""`: the root) the target paths imply, sorted by name.
    /// A name that is both a target and a directory of other targets is the directory. Costs a
    /// binary search per subdirectory, nothing per target below them.
    pub fn children(&self, dir: &str) -> Vec<Child<'_>> {
        let prefix = match dir {
            "" => String::new(),
            d => format!("{d}/"),
        };
        let mut out = Vec::new();
        let mut at = self.lower_bound(&prefix);
        while at < self.len() {
            let Some(rest) = self.path_at(at).strip_prefix(prefix.as_str()) else {
                break;
            };
            match rest.split_once('/') {
                Some((name, _)) => {
                    out.push(Child::Dir(name));
                    // Past every path below `name/`: '0' is the byte after '/'.
                    at = self.lower_bound(&format!("{prefix}{name}0"));
                }
                None => {
                    out.push(Child::File(rest, at));
                    at += 1;
                }
            }
        }
        // A directory sorts after a target of the same name ("a" < "a-b" < "a/x"): put names in
        // order, and keep the directory where a name is both.
        out.sort_by(|a, b| {
            a.name()
                .cmp(b.name())
                .then_with(|| matches!(b, Child::Dir(_)).cmp(&matches!(a, Child::Dir(_))))
        });
        out.dedup_by(|later, first| later.name() == first.name());
        out
    }
}

/// The first bytes of an encoded index ([`TargetIndex::encode`]); the version changes with the
/// layout.
const MAGIC: &[u8; 16] = b"trustfs-index-2\n";

/// A bounded little-endian reader over an encoded index.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn len(&mut self) -> Result<usize, String> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.0.len())
            .ok_or_else(|| format!("a length of {n} past the end"))
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|e| e.to_string())
    }
}

/// An extra entry as encoded: hashes by name (hex) and the custom object.
#[derive(serde::Serialize, serde::Deserialize)]
struct EncodedExtra {
    hashes: Vec<(String, String)>,
    custom: Option<Box<serde_json::Value>>,
}

impl TargetIndex {
    /// The index as bytes, for [`TargetIndex::decode`] (a cache of what metadata said, kept
    /// where the metadata is: the state directory).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.names.len() + self.records.len() * 60);
        out.extend_from_slice(MAGIC);
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u64).to_le_bytes());
            out.extend_from_slice(b);
        };
        out.extend_from_slice(&(self.roles.len() as u64).to_le_bytes());
        for r in self.roles.iter() {
            put(&mut out, r.as_bytes());
        }
        put(&mut out, self.names.as_bytes());
        out.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        for r in self.records.iter() {
            out.extend_from_slice(&r.end.to_le_bytes());
            out.extend_from_slice(&r.length.to_le_bytes());
            out.extend_from_slice(&r.sha256);
            out.extend_from_slice(&r.role.to_le_bytes());
            out.extend_from_slice(&r.extra.to_le_bytes());
            out.extend_from_slice(&r.chunks.to_le_bytes());
        }
        put(&mut out, &self.chunk_roots.concat());
        let extras: Vec<EncodedExtra> = self
            .extras
            .iter()
            .map(|e| EncodedExtra {
                hashes: e
                    .hashes
                    .iter()
                    .map(|(a, d)| (a.to_owned(), hex::encode(d)))
                    .collect(),
                custom: e.custom.clone(),
            })
            .collect();
        put(&mut out, &serde_json::to_vec(&extras).unwrap_or_default());
        out
    }

    /// An index from [`TargetIndex::encode`]'s bytes, checked to be one `encode` could have
    /// written: paths in strict order, in bounds, each a valid target path; roles and extras in
    /// range. Anything else is an error (the caller builds the index from metadata instead).
    pub fn decode(bytes: &[u8]) -> Result<TargetIndex, String> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err("not an encoded target index (or another version)".into());
        }
        let n_roles = r.len()?;
        let mut roles = Vec::with_capacity(n_roles);
        for _ in 0..n_roles {
            roles.push(Box::<str>::from(r.str()?));
        }
        let names = r.str()?;
        let n = r.u64()?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(60).is_some_and(|b| b <= r.0.len()))
            .ok_or("more records than bytes")?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            let end = r.u64()?;
            let length = r.u64()?;
            let mut sha256 = [0; 32];
            sha256.copy_from_slice(r.take(32)?);
            let role = r.u32()?;
            let extra = r.u32()?;
            let chunks = r.u32()?;
            records.push(Record {
                end,
                length,
                sha256,
                role,
                extra,
                chunks,
            });
        }
        let roots = r.len()?;
        if roots % 32 != 0 {
            return Err("chunk roots of a partial length".into());
        }
        let chunk_roots: Vec<[u8; 32]> = r
            .take(roots)?
            .chunks_exact(32)
            .map(|c| <[u8; 32]>::try_from(c).unwrap_or([0; 32]))
            .collect();
        let encoded: Vec<EncodedExtra> =
            serde_json::from_str(r.str()?).map_err(|e| format!("extras: {e}"))?;
        if !r.0.is_empty() {
            return Err("bytes after the end".into());
        }
        let mut extras = Vec::with_capacity(encoded.len());
        for e in encoded {
            let mut hashes = Hashes::new();
            for (alg, digest) in e.hashes {
                hashes.insert(alg, hex::decode(digest).map_err(|e| e.to_string())?);
            }
            extras.push(Extra {
                hashes,
                custom: e.custom,
            });
        }
        let index = TargetIndex {
            names: names.into(),
            records: records.into_boxed_slice(),
            extras: extras.into_boxed_slice(),
            roles: roles.into_boxed_slice(),
            chunk_roots: chunk_roots.into_boxed_slice(),
        };
        let mut start = 0u64;
        let mut previous: Option<&str> = None;
        for (pos, rec) in index.records.iter().enumerate() {
            if rec.end <= start || rec.end > index.names.len() as u64 {
                return Err(format!("record {pos}: path out of bounds"));
            }
            if !index.names.is_char_boundary(rec.end as usize) {
                return Err(format!("record {pos}: path ends inside a character"));
            }
            start = rec.end;
            let path = index.path_at(pos);
            TargetPath::parse(path).map_err(|e| format!("record {pos}: {e}"))?;
            if previous.is_some_and(|p| p >= path) {
                return Err(format!("record {pos}: paths out of order"));
            }
            previous = Some(path);
            if rec.role != NONE && rec.role as usize >= index.roles.len() {
                return Err(format!("record {pos}: no such role"));
            }
            if rec.extra != NONE && rec.extra as usize >= index.extras.len() {
                return Err(format!("record {pos}: no such extra"));
            }
            if rec.chunks != NONE && rec.chunks as usize >= index.chunk_roots.len() {
                return Err(format!("record {pos}: no such chunk root"));
            }
        }
        if start != index.names.len() as u64 {
            return Err("path bytes after the last record".into());
        }
        Ok(index)
    }
}

/// Collects targets in delegation order, then sorts them into a [`TargetIndex`]: for a path
/// listed more than once, the first insertion wins.
#[derive(Clone, Debug, Default)]
pub struct IndexBuilder {
    entries: Vec<(TargetPath, TargetInfo, u32)>,
    roles: Vec<Box<str>>,
}

impl IndexBuilder {
    /// Add a target (the first insertion for a path wins; delegation order is the caller's job).
    pub fn insert(&mut self, path: TargetPath, info: TargetInfo) {
        self.entries.push((path, info, NONE));
    }

    /// Add a target together with the role that listed it (the first insertion wins).
    pub fn insert_signed_by(&mut self, path: TargetPath, info: TargetInfo, role: &str) {
        // Roles are few and inserted in runs (one role's targets after another's).
        let at = match self.roles.iter().rposition(|r| &**r == role) {
            Some(i) => i,
            None => {
                self.roles.push(role.into());
                self.roles.len() - 1
            }
        };
        let role = u32::try_from(at).unwrap_or(NONE);
        self.entries.push((path, info, role));
    }

    /// Targets added so far (a path added twice counts twice).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn build(self) -> TargetIndex {
        let mut entries = self.entries;
        // Stable: among equal paths the first inserted stays first, and dedup keeps it.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, first| later.0 == first.0);
        let bytes: usize = entries.iter().map(|(p, _, _)| p.as_str().len()).sum();
        let mut names = String::with_capacity(bytes);
        let mut records = Vec::with_capacity(entries.len());
        let mut extras = Vec::new();
        let mut chunk_roots = Vec::new();
        for (path, info, role) in entries {
            names.push_str(path.as_str());
            let chunks = match info.chunk_root {
                Some(root) => {
                    chunk_roots.push(root);
                    u32::try_from(chunk_roots.len() - 1).unwrap_or(NONE)
                }
                None => NONE,
            };
            let plain = info.custom.is_none() && info.hashes.others.is_none();
            let (sha256, extra) = match info.hashes.sha256 {
                Some(d) if plain => (d, NONE),
                _ => {
                    extras.push(Extra {
                        hashes: info.hashes,
                        custom: info.custom,
                    });
                    // More than 4 billion unusual targets cannot come from bounded metadata.
                    let at = u32::try_from(extras.len() - 1).expect("extras fit u32");
                    ([0; 32], at)
                }
            };
            records.push(Record {
                end: names.len() as u64,
                length: info.length,
                sha256,
                role,
                extra,
                chunks,
            });
        }
        // Roles that listed only duplicates stay: harmless, and positions stay as recorded.
        TargetIndex {
            names: names.into_boxed_str(),
            records: records.into_boxed_slice(),
            extras: extras.into_boxed_slice(),
            roles: self.roles.into_boxed_slice(),
            chunk_roots: chunk_roots.into_boxed_slice(),
        }
    }
}

impl FromIterator<(TargetPath, TargetInfo)> for TargetIndex {
    fn from_iter<I: IntoIterator<Item = (TargetPath, TargetInfo)>>(iter: I) -> TargetIndex {
        let mut b = IndexBuilder::default();
        for (p, i) in iter {
            b.insert(p, i);
        }
        b.build()
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
        let mut idx = TargetIndex::builder();
        let info = |n| TargetInfo {
            length: n,
            hashes: Hashes::new(),
            custom: None,
            chunk_root: None,
        };
        idx.insert(TargetPath::parse("a").unwrap(), info(1));
        idx.insert(TargetPath::parse("a").unwrap(), info(2));
        idx.insert_signed_by(TargetPath::parse("b").unwrap(), info(3), "bins-1");
        idx.insert_signed_by(TargetPath::parse("c").unwrap(), info(4), "targets");
        idx.insert_signed_by(TargetPath::parse("d").unwrap(), info(5), "bins-1");
        idx.insert_signed_by(TargetPath::parse("b").unwrap(), info(6), "targets");
        let idx = idx.build();
        assert_eq!(idx.get("a").unwrap().length, 1);
        assert!(idx.get("e").is_none());
        assert_eq!(idx.listed_by("a"), None);
        assert_eq!(idx.listed_by("b"), Some("bins-1"));
        assert_eq!(idx.listed_by("c"), Some("targets"));
        assert_eq!(idx.listed_by("d"), Some("bins-1"));
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

    fn plain(n: u64) -> TargetInfo {
        TargetInfo {
            length: n,
            hashes: Hashes::from([("sha256", vec![n as u8; 32])]),
            custom: None,
            chunk_root: None,
        }
    }

    fn index_of(paths: &[&str]) -> TargetIndex {
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| (TargetPath::parse(p).unwrap(), plain(i as u64)))
            .collect()
    }

    #[test]
    fn positions_paths_and_infos_round_trip() {
        let mut b = TargetIndex::builder();
        let odd = TargetInfo {
            length: 7,
            hashes: Hashes::from([("sha512", vec![1u8; 64]), ("sha256", vec![2u8; 32])]),
            custom: Some(Box::new(serde_json::json!({"k": "v"}))),
            chunk_root: None,
        };
        let short = TargetInfo {
            length: 8,
            hashes: Hashes::from([("sha256", vec![3u8; 5])]),
            custom: None,
            chunk_root: None,
        };
        b.insert_signed_by(TargetPath::parse("z").unwrap(), plain(1), "targets");
        b.insert_signed_by(TargetPath::parse("m/odd").unwrap(), odd.clone(), "bins-0");
        b.insert_signed_by(TargetPath::parse("a").unwrap(), short.clone(), "targets");
        assert_eq!(b.len(), 3);
        let idx = b.build();
        let paths: Vec<&str> = idx.iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["a", "m/odd", "z"]);
        assert_eq!(idx.get("m/odd"), Some(odd));
        assert_eq!(idx.get("a"), Some(short));
        assert_eq!(idx.get("z"), Some(plain(1)));
        assert_eq!(idx.position("z"), Some(2));
        assert_eq!(idx.path_at(1), "m/odd");
        assert_eq!(idx.role_at(1), Some("bins-0"));
        assert_eq!(idx.listed_by("z"), Some("targets"));
        for missing in ["", "b", "m", "m/", "zz", "m/od"] {
            assert_eq!(idx.position(missing), None, "{missing:?}");
        }
        assert!(TargetIndex::new().get("a").is_none());
    }

    #[test]
    fn directories_are_derived_from_the_paths() {
        let idx = index_of(&["a", "a-b", "a/x", "a/y/z", "a.c", "b/c/d", "top"]);
        for d in ["", "a", "a/y", "b", "b/c"] {
            assert!(idx.is_dir(d), "{d:?}");
        }
        for f in ["a-b", "a/x", "top", "b/c/d", "nothing", "a/y/z/w"] {
            assert!(!idx.is_dir(f), "{f:?}");
        }
        let show = |d: &str| -> Vec<String> {
            idx.children(d)
                .iter()
                .map(|c| match c {
                    Child::Dir(n) => format!("{n}/"),
                    Child::File(n, pos) => {
                        assert_eq!(idx.path_at(*pos).rsplit('/').next(), Some(*n));
                        n.to_string()
                    }
                })
                .collect()
        };
        // "a" is a target and a directory of other targets: shown once, as the directory.
        assert_eq!(show(""), ["a/", "a-b", "a.c", "b/", "top"]);
        assert_eq!(show("a"), ["x", "y/"]);
        assert_eq!(show("a/y"), ["z"]);
        assert_eq!(show("b"), ["c/"]);
        assert!(show("top").is_empty());
        assert!(show("nothing").is_empty());
        // is_dir against the plain definition, for every prefix of every path and neighbours.
        let paths: Vec<&str> = idx.iter().map(|(p, _)| p).collect();
        let mut probes: Vec<String> = Vec::new();
        for p in &paths {
            for end in 1..=p.len() {
                probes.push(p[..end].to_owned());
                probes.push(format!("{}-", &p[..end]));
            }
        }
        for probe in probes.iter().map(String::as_str).chain(["0", "a/", "b/c/"]) {
            let plain = paths.iter().any(|p| p.starts_with(&format!("{probe}/")));
            assert_eq!(idx.is_dir(probe), plain, "{probe:?}");
        }
    }

    #[test]
    fn children_skip_whole_subtrees() {
        let mut paths: Vec<String> = (0..2000).map(|i| format!("d{}/f{i}", i % 7)).collect();
        paths.push("d3".into());
        paths.push("e".into());
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let idx = index_of(&refs);
        let root: Vec<&str> = idx.children("").iter().map(Child::name).collect();
        assert_eq!(root, ["d0", "d1", "d2", "d3", "d4", "d5", "d6", "e"]);
        assert!(idx
            .children("")
            .iter()
            .all(|c| c.name() == "e" || matches!(c, Child::Dir(_))));
        assert_eq!(
            idx.children("d3").len(),
            (0..2000).filter(|i| i % 7 == 3).count()
        );
    }

    #[test]
    fn an_index_survives_encoding_and_damage_is_refused() {
        let mut b = TargetIndex::builder();
        b.insert_signed_by(TargetPath::parse("dir/a").unwrap(), plain(1), "bins-0");
        b.insert(TargetPath::parse("b").unwrap(), plain(2));
        b.insert_signed_by(
            TargetPath::parse("caf\u{e9}/x").unwrap(),
            TargetInfo {
                length: 3,
                hashes: Hashes::from([("sha512", vec![9u8; 64])]),
                custom: Some(Box::new(serde_json::json!({"mode": 493}))),
                chunk_root: Some([4u8; 32]),
            },
            "targets",
        );
        b.insert(
            TargetPath::parse("c").unwrap(),
            TargetInfo {
                chunk_root: Some([5u8; 32]),
                ..plain(4)
            },
        );
        let idx = b.build();
        assert_eq!(idx.get("c").and_then(|i| i.chunk_root), Some([5u8; 32]));
        assert_eq!(idx.get("b").and_then(|i| i.chunk_root), None);
        assert_eq!(
            idx.get("caf\u{e9}/x").and_then(|i| i.chunk_root),
            Some([4u8; 32])
        );
        let bytes = idx.encode();
        assert_eq!(TargetIndex::decode(&bytes).unwrap(), idx);
        assert_eq!(
            TargetIndex::decode(&TargetIndex::new().encode()).unwrap(),
            TargetIndex::new()
        );
        // Every truncation and every flipped byte is refused or decodes to a valid index (a
        // digest byte or a length may change; structure never breaks).
        for cut in 0..bytes.len() {
            assert!(TargetIndex::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x5a;
            if let Ok(other) = TargetIndex::decode(&bad) {
                for pos in 0..other.len() {
                    TargetPath::parse(other.path_at(pos)).unwrap();
                    let _ = (other.info_at(pos), other.role_at(pos));
                }
            }
        }
    }
}
