//! [`Hashes`]: the digests metadata lists for one target, sized for a million of them.

use std::fmt;

/// The digests metadata lists for a target, by algorithm name, iterated in name order. Almost
/// every target lists exactly one 32-byte sha256, kept inline; anything else (sha512, a digest of
/// an unexpected length, an algorithm trustfs does not know) in a boxed list. A million targets
/// then cost 33 bytes of hashes each instead of a `BTreeMap` node, a key and a vector.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Hashes {
    pub(super) sha256: Option<[u8; 32]>,
    /// Sorted by name; never holds a 32-byte `sha256`.
    pub(super) others: Option<Box<[NamedDigest]>>,
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
