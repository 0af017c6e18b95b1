//! The byte form of a [`TargetIndex`] ([`TargetIndex::encode`], [`TargetIndex::decode`]): a cache
//! of what the metadata said, kept in the state directory and checked when read back.

use super::table::{Extra, Record, NONE};
use super::{Hashes, TargetIndex, TargetPath};

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
