//! Chunk roots of targets (`trustfs-chunks/1`): the signed value that lets a reader verify any
//! byte range of a file without reading all of it (issue 11; docs/chunks.md is the format).
//!
//! A target's content is cut into chunks of [`CHUNK_SIZE`] bytes (the last one shorter; an
//! empty file has no chunk). Each chunk's leaf is `BLAKE3(chunk)`. The **outboard** is the
//! leaves concatenated (32 bytes a chunk: 0.05 % of the content). The **root** is
//!
//! ```text
//! BLAKE3( "trustfs-chunks/1" || u64le(length) || u32le(CHUNK_SIZE) || leaf_0 || … || leaf_{n-1} )
//! ```
//!
//! so it binds the length, the chunk size, and every leaf at its position. `repo add` computes
//! it in the same read pass as the sha256 (they cannot disagree), lists it in the target's signed
//! `custom` as `{"trustfs": {"chunks": {"v": 1, "alg": "blake3", "size": 65536, "root": HEX}}}`
//! (the `hashes` dict is left as python-tuf and go-tuf require), and publishes the outboard as
//! `REPO/chunks/<sha256 of the content>`. A reader checks the outboard against the signed root
//! once, then each chunk it reads against its leaf.
//!
//! Why not BLAKE3's own tree (bao): one flat level of leaves is all a reader needs for files up
//! to tens of GiB (a 50 GB file has a 25 MB outboard, fetched and checked once), it needs no
//! second crate, and every implementation of BLAKE3 can check it.

/// Bytes per chunk.
pub const CHUNK_SIZE: u32 = 64 * 1024;

/// The domain separation prefix of the root.
const DOMAIN: &[u8] = b"trustfs-chunks/1";

/// Leaves and root of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkTree {
    pub length: u64,
    pub leaves: Vec<[u8; 32]>,
    pub root: [u8; 32],
}

impl ChunkTree {
    /// The outboard file: the leaves, concatenated.
    pub fn outboard(&self) -> Vec<u8> {
        self.leaves.concat()
    }

    /// Parse an outboard for a file of `length` bytes and check it against the signed `root`.
    pub fn from_outboard(
        length: u64,
        outboard: &[u8],
        root: &[u8; 32],
    ) -> Result<ChunkTree, String> {
        let want = chunk_count(length)
            .checked_mul(32)
            .ok_or("a length too large for chunks")?;
        if outboard.len() as u64 != want {
            return Err(format!(
                "the outboard has {} bytes; a file of {length} bytes needs {want}",
                outboard.len()
            ));
        }
        let leaves: Vec<[u8; 32]> = outboard
            .chunks_exact(32)
            .map(|c| {
                let mut l = [0u8; 32];
                l.copy_from_slice(c);
                l
            })
            .collect();
        let computed = root_of(length, &leaves);
        if &computed != root {
            return Err("the outboard does not match the signed chunk root".into());
        }
        Ok(ChunkTree {
            length,
            leaves,
            root: computed,
        })
    }

    /// The tree of a file of `length` bytes with these leaves.
    pub fn from_leaves(length: u64, leaves: Vec<[u8; 32]>) -> ChunkTree {
        let root = root_of(length, &leaves);
        ChunkTree {
            length,
            leaves,
            root,
        }
    }

    /// Whether `data` is chunk `index` of the file.
    pub fn chunk_matches(&self, index: usize, data: &[u8]) -> bool {
        let Some(leaf) = self.leaves.get(index) else {
            return false;
        };
        let start = index as u64 * u64::from(CHUNK_SIZE);
        let expected = (self.length - start.min(self.length)).min(u64::from(CHUNK_SIZE));
        data.len() as u64 == expected && blake3::hash(data).as_bytes() == leaf
    }
}

/// Split a target's signed `custom` object into the chunk root it lists (if a well-formed
/// `trustfs.chunks` of version 1: `alg` "blake3", `size` [`CHUNK_SIZE`], `root` 64 hex digits)
/// and what else it holds (None when nothing else). A malformed or unknown chunks entry is
/// left in `custom` and lists no root: such a target is checked against its hashes instead.
pub fn split_custom(
    custom: Option<serde_json::Value>,
) -> (Option<[u8; 32]>, Option<serde_json::Value>) {
    let Some(mut custom) = custom else {
        return (None, None);
    };
    let Some(root) = signed_root(&custom) else {
        return (None, Some(custom));
    };
    if let Some(obj) = custom.as_object_mut() {
        let empty = match obj.get_mut("trustfs").and_then(|t| t.as_object_mut()) {
            Some(ours) => {
                ours.remove("chunks");
                ours.is_empty()
            }
            None => false,
        };
        if empty {
            obj.remove("trustfs");
        }
        if obj.is_empty() {
            return (Some(root), None);
        }
    }
    (Some(root), Some(custom))
}

/// The chunk root a `custom` object lists, if well formed (see [`split_custom`]).
pub fn signed_root(custom: &serde_json::Value) -> Option<[u8; 32]> {
    let c = custom.get("trustfs")?.get("chunks")?;
    let ok = c.get("v")?.as_u64()? == 1
        && c.get("alg")?.as_str()? == "blake3"
        && c.get("size")?.as_u64()? == u64::from(CHUNK_SIZE);
    let hex = c.get("root")?.as_str()?;
    if !ok || hex.len() != 64 {
        return None;
    }
    let mut root = [0u8; 32];
    hex::decode_to_slice(hex, &mut root).ok()?;
    Some(root)
}

/// Chunks of a file of `length` bytes.
pub fn chunk_count(length: u64) -> u64 {
    length.div_ceil(u64::from(CHUNK_SIZE))
}

fn root_of(length: u64, leaves: &[[u8; 32]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(&length.to_le_bytes());
    h.update(&CHUNK_SIZE.to_le_bytes());
    for l in leaves {
        h.update(l);
    }
    *h.finalize().as_bytes()
}

/// Computes a [`ChunkTree`] from the bytes of a file, fed in pieces of any size.
#[derive(Default)]
pub struct ChunkHasher {
    current: blake3::Hasher,
    in_chunk: u32,
    length: u64,
    leaves: Vec<[u8; 32]>,
}

impl ChunkHasher {
    pub fn new() -> ChunkHasher {
        ChunkHasher::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (CHUNK_SIZE - self.in_chunk) as usize;
            let (now, rest) = data.split_at(room.min(data.len()));
            self.current.update(now);
            self.in_chunk += now.len() as u32;
            self.length += now.len() as u64;
            if self.in_chunk == CHUNK_SIZE {
                self.leaves.push(*self.current.finalize().as_bytes());
                self.current.reset();
                self.in_chunk = 0;
            }
            data = rest;
        }
    }

    pub fn finish(mut self) -> ChunkTree {
        if self.in_chunk > 0 {
            self.leaves.push(*self.current.finalize().as_bytes());
        }
        let root = root_of(self.length, &self.leaves);
        ChunkTree {
            length: self.length,
            leaves: self.leaves,
            root,
        }
    }
}

/// The whole tree of `data` at once.
pub fn tree_of(data: &[u8]) -> ChunkTree {
    let mut h = ChunkHasher::new();
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_of_any_size_give_the_same_tree_and_it_checks_chunks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = tree_of(&data);
        assert_eq!(whole.leaves.len(), 4); // 3 full chunks and 3,392 bytes
        for step in [1usize, 1000, 65_536, 70_000] {
            let mut h = ChunkHasher::new();
            for piece in data.chunks(step) {
                h.update(piece);
            }
            assert_eq!(h.finish(), whole, "step {step}");
        }
        let back =
            ChunkTree::from_outboard(data.len() as u64, &whole.outboard(), &whole.root).unwrap();
        assert_eq!(back, whole);
        assert!(whole.chunk_matches(1, &data[65_536..131_072]));
        assert!(whole.chunk_matches(3, &data[196_608..]));
        assert!(
            !whole.chunk_matches(2, &data[65_536..131_072]),
            "position is bound"
        );
        assert!(
            !whole.chunk_matches(3, &data[196_608..199_999]),
            "length is bound"
        );
        assert!(!whole.chunk_matches(4, b""));
    }

    #[test]
    fn the_signed_root_is_taken_from_custom_and_the_rest_kept() {
        let root = hex::encode([7u8; 32]);
        let chunks = serde_json::json!({"v": 1, "alg": "blake3", "size": 65536, "root": root});
        let only = serde_json::json!({"trustfs": {"chunks": chunks.clone()}});
        assert_eq!(split_custom(Some(only)), (Some([7u8; 32]), None));
        let more = serde_json::json!({"trustfs": {"chunks": chunks.clone(), "x": 1}, "mode": 420});
        let (r, rest) = split_custom(Some(more));
        assert_eq!(r, Some([7u8; 32]));
        assert_eq!(
            rest,
            Some(serde_json::json!({"trustfs": {"x": 1}, "mode": 420}))
        );
        for bad in [
            serde_json::json!({"v": 2, "alg": "blake3", "size": 65536, "root": root}),
            serde_json::json!({"v": 1, "alg": "sha256", "size": 65536, "root": root}),
            serde_json::json!({"v": 1, "alg": "blake3", "size": 4096, "root": root}),
            serde_json::json!({"v": 1, "alg": "blake3", "size": 65536, "root": "zz"}),
            serde_json::json!({"v": 1, "alg": "blake3", "size": 65536, "root": &root[..62]}),
            serde_json::json!({"v": 1, "alg": "blake3", "size": 65536}),
            serde_json::json!("chunks"),
        ] {
            let c = serde_json::json!({"trustfs": {"chunks": bad}});
            assert_eq!(split_custom(Some(c.clone())), (None, Some(c)));
        }
        assert_eq!(split_custom(None), (None, None));
    }

    #[test]
    fn a_changed_outboard_length_or_root_is_refused() {
        let data = vec![9u8; 100_000];
        let t = tree_of(&data);
        let mut ob = t.outboard();
        ob[40] ^= 1;
        assert!(ChunkTree::from_outboard(100_000, &ob, &t.root).is_err());
        assert!(ChunkTree::from_outboard(100_001, &t.outboard(), &t.root).is_err());
        assert!(ChunkTree::from_outboard(100_000, &t.outboard()[..32], &t.root).is_err());
        let mut other = t.root;
        other[0] ^= 1;
        assert!(ChunkTree::from_outboard(100_000, &t.outboard(), &other).is_err());
        // The empty file: no leaves, a root all the same.
        let e = tree_of(b"");
        assert!(e.leaves.is_empty());
        assert!(ChunkTree::from_outboard(0, b"", &e.root).is_ok());
        assert_ne!(e.root, tree_of(b"\0").root);
    }
}
