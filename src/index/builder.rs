//! [`IndexBuilder`]: collects targets in delegation order and sorts them into a [`TargetIndex`].

use super::table::{Extra, Record, NONE};
use super::{TargetIndex, TargetInfo, TargetPath};

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
