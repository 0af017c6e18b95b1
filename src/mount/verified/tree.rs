//! [`TrustedTree`]: a chunk tree content may be checked against, because it matches signed
//! metadata (an outboard under the signed chunk root, or the daemon's saved record of a pass).

use crate::chunks::ChunkTree;
use crate::index::TargetInfo;

/// A chunk tree content may be checked against: it matches signed metadata.
#[derive(Debug)]
pub struct TrustedTree {
    pub(super) tree: ChunkTree,
}

impl TrustedTree {
    /// The tree of an outboard (the leaves, as `repo add` publishes them) that matches the
    /// target's signed chunk root and length.
    pub fn from_outboard(info: &TargetInfo, outboard: &[u8]) -> Result<TrustedTree, String> {
        let root = info
            .chunk_root
            .ok_or("the target lists no signed chunk root")?;
        ChunkTree::from_outboard(info.length, outboard, &root).map(|tree| TrustedTree { tree })
    }

    /// A tree this daemon computed earlier from content that matched the target's signed hashes
    /// and saved in its private state dir, with the root it computed then (a torn or damaged
    /// record does not match it).
    pub fn from_saved(
        info: &TargetInfo,
        outboard: &[u8],
        saved_root: &[u8; 32],
    ) -> Result<TrustedTree, String> {
        ChunkTree::from_outboard(info.length, outboard, saved_root).map(|tree| TrustedTree { tree })
    }

    pub fn length(&self) -> u64 {
        self.tree.length
    }

    pub fn root(&self) -> [u8; 32] {
        self.tree.root
    }

    pub fn outboard(&self) -> Vec<u8> {
        self.tree.outboard()
    }

    /// Whether `data` is chunk `index` of the file (a check only: it makes no
    /// [`VerifiedBytes`](super::VerifiedBytes)).
    pub fn chunk_matches(&self, index: u64, data: &[u8]) -> bool {
        usize::try_from(index).is_ok_and(|i| self.tree.chunk_matches(i, data))
    }

    /// Memory it holds (for the cache bound).
    pub fn bytes(&self) -> usize {
        self.tree.leaves.len() * 32 + 64
    }
}
