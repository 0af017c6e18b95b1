//! Content verification: streaming hashes of a file against what the metadata says.
//!
//! One pass computes every hash the metadata lists (sha256, sha512) and counts bytes; the result is
//! compared with the signed length and digests. Any algorithm trustfs cannot compute fails closed:
//! "every listed hash" is checked or the file is refused.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest, Sha256, Sha512};

use crate::index::TargetInfo;

/// Hash algorithms trustfs can check.
pub const SUPPORTED_HASHES: &[&str] = &["sha256", "sha512"];

/// Why content did not match its metadata.
#[derive(Debug)]
pub enum Mismatch {
    /// The metadata lists a hash algorithm trustfs does not implement.
    UnsupportedHash(String),
    /// The metadata lists no hash at all.
    NoHashes,
    /// More or fewer bytes than the signed length.
    Length { expected: u64, actual: u64 },
    /// A digest differs.
    Hash {
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    /// The chunk root (`trustfs-chunks/1`, see [`crate::chunks`]) differs from the signed one.
    ChunkRoot { expected: String, actual: String },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::UnsupportedHash(a) => write!(
                f,
                "metadata lists hash algorithm {a:?}, which trustfs cannot check"
            ),
            Mismatch::NoHashes => write!(f, "metadata lists no hashes for this target"),
            Mismatch::Length { expected, actual } => {
                if actual > expected {
                    write!(f, "length mismatch: signed length is {expected} bytes, content is longer (at least {actual})")
                } else {
                    write!(
                        f,
                        "length mismatch: signed length is {expected} bytes, content has {actual}"
                    )
                }
            }
            Mismatch::Hash {
                algorithm,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "{algorithm} mismatch: signed {expected}, content {actual}"
                )
            }
            Mismatch::ChunkRoot { expected, actual } => {
                write!(
                    f,
                    "chunk root (blake3, trustfs-chunks/1) mismatch: signed {expected}, content {actual}"
                )
            }
        }
    }
}

/// Computes every hash a target lists, in one streaming pass (or, [`MultiHasher::for_content`],
/// only its signed chunk root).
pub struct MultiHasher {
    sha256: Option<Sha256>,
    sha512: Option<Sha512>,
    /// The chunk tree being computed and the signed root it must have.
    chunks: Option<(crate::chunks::ChunkHasher, [u8; 32])>,
    length: u64,
}

impl MultiHasher {
    /// The fastest whole check the target allows: its signed chunk root (BLAKE3, several times
    /// faster than sha256 and as strong) when the metadata lists one, else every listed hash.
    pub fn for_content(info: &TargetInfo) -> Result<Self, Mismatch> {
        match info.chunk_root {
            Some(root) => Ok(MultiHasher {
                sha256: None,
                sha512: None,
                chunks: Some((crate::chunks::ChunkHasher::new(), root)),
                length: 0,
            }),
            None => MultiHasher::for_target(info),
        }
    }

    /// Prepare to check content against `info`; fails if a listed algorithm is unsupported.
    pub fn for_target(info: &TargetInfo) -> Result<Self, Mismatch> {
        if info.hashes.is_empty() {
            return Err(Mismatch::NoHashes);
        }
        let mut h = MultiHasher {
            sha256: None,
            sha512: None,
            chunks: None,
            length: 0,
        };
        for alg in info.hashes.keys() {
            match alg {
                "sha256" => h.sha256 = Some(Sha256::new()),
                "sha512" => h.sha512 = Some(Sha512::new()),
                other => return Err(Mismatch::UnsupportedHash(other.to_owned())),
            }
        }
        Ok(h)
    }

    /// A hasher that computes sha256 only (for publishing).
    pub fn sha256_only() -> Self {
        MultiHasher {
            sha256: Some(Sha256::new()),
            sha512: None,
            chunks: None,
            length: 0,
        }
    }

    /// A hasher that computes sha256 and sha512 (for publishing).
    pub fn sha256_and_sha512() -> Self {
        MultiHasher {
            sha256: Some(Sha256::new()),
            sha512: Some(Sha512::new()),
            chunks: None,
            length: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.length += data.len() as u64;
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha512 {
            h.update(data);
        }
        if let Some((h, _)) = &mut self.chunks {
            h.update(data);
        }
    }

    /// Bytes seen so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Finish and return (length, algorithm → digest) for everything computed.
    pub fn finish(self) -> (u64, Vec<(&'static str, Vec<u8>)>) {
        let mut out = Vec::new();
        if let Some(h) = self.sha256 {
            out.push(("sha256", h.finalize().to_vec()));
        }
        if let Some(h) = self.sha512 {
            out.push(("sha512", h.finalize().to_vec()));
        }
        (self.length, out)
    }

    /// Finish and compare with `info`: the length and every listed digest must match.
    pub fn check(mut self, info: &TargetInfo) -> Result<(), Mismatch> {
        if let Some((h, root)) = self.chunks.take() {
            let tree = h.finish();
            if tree.length != info.length {
                return Err(Mismatch::Length {
                    expected: info.length,
                    actual: tree.length,
                });
            }
            if tree.root != root {
                return Err(Mismatch::ChunkRoot {
                    expected: hex::encode(root),
                    actual: hex::encode(tree.root),
                });
            }
        }
        let (length, digests) = self.finish();
        if length != info.length {
            return Err(Mismatch::Length {
                expected: info.length,
                actual: length,
            });
        }
        for (alg, digest) in digests {
            let expected = info.hashes.get(alg).ok_or(Mismatch::NoHashes)?;
            // Digests are public values; constant-time comparison is not needed.
            if expected != digest {
                return Err(Mismatch::Hash {
                    algorithm: alg,
                    expected: hex::encode(expected),
                    actual: hex::encode(digest),
                });
            }
        }
        Ok(())
    }
}

/// Error of [`check_reader`]: reading failed, or the content does not match.
#[derive(Debug)]
pub enum CheckError {
    Io(io::Error),
    Mismatch(Mismatch),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Io(e) => write!(f, "read error: {e}"),
            CheckError::Mismatch(m) => m.fmt(f),
        }
    }
}

/// Hash everything `reader` yields, reading at most `info.length + 1` bytes (so endless or
/// oversized content is cut off), and compare with `info`.
pub fn check_reader(mut reader: impl Read, info: &TargetInfo) -> Result<(), CheckError> {
    let mut hasher = MultiHasher::for_target(info).map_err(CheckError::Mismatch)?;
    let limit = info.length.saturating_add(1);
    // Sized for the content (a million small files would otherwise each zero 256 KiB).
    let mut buf = vec![0u8; limit.min(256 * 1024) as usize];
    loop {
        let want = (limit - hasher.length()).min(buf.len() as u64) as usize;
        if want == 0 {
            break;
        }
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CheckError::Io(e)),
        };
        hasher.update(&buf[..n]);
    }
    hasher.check(info).map_err(CheckError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Hashes;

    #[test]
    fn content_is_checked_against_the_signed_chunk_root_when_there_is_one() {
        let data = vec![7u8; 200_000];
        let mut bad = data.clone();
        bad[150_000] ^= 1;
        let run = |info: &TargetInfo, content: &[u8]| {
            let mut h = MultiHasher::for_content(info).unwrap();
            h.update(content);
            h.check(info)
        };
        let mut info = info_for(&data);
        info.chunk_root = Some(crate::chunks::tree_of(&data).root);
        assert!(run(&info, &data).is_ok());
        assert!(matches!(run(&info, &bad), Err(Mismatch::ChunkRoot { .. })));
        assert!(matches!(
            run(&info, &data[..100]),
            Err(Mismatch::Length { .. })
        ));
        // A root that contradicts the content is refused even if the hashes match.
        info.chunk_root = Some([0; 32]);
        assert!(matches!(run(&info, &data), Err(Mismatch::ChunkRoot { .. })));
        // Without a root: the listed hashes.
        info.chunk_root = None;
        assert!(run(&info, &data).is_ok());
        assert!(matches!(run(&info, &bad), Err(Mismatch::Hash { .. })));
    }

    fn info_for(data: &[u8]) -> TargetInfo {
        let mut hashes = Hashes::new();
        hashes.insert("sha256", Sha256::digest(data).to_vec());
        hashes.insert("sha512", Sha512::digest(data).to_vec());
        TargetInfo {
            length: data.len() as u64,
            hashes,
            custom: None,
            chunk_root: None,
        }
    }

    #[test]
    fn intact_content_passes() {
        check_reader(&b"hello"[..], &info_for(b"hello")).unwrap();
    }

    #[test]
    fn altered_content_fails_on_hash() {
        let err = check_reader(&b"hellO"[..], &info_for(b"hello")).unwrap_err();
        assert!(
            matches!(
                err,
                CheckError::Mismatch(Mismatch::Hash {
                    algorithm: "sha256",
                    ..
                })
            ),
            "{err}"
        );
    }

    #[test]
    fn longer_and_shorter_content_fail_on_length() {
        let err = check_reader(&b"hello world"[..], &info_for(b"hello")).unwrap_err();
        assert!(
            matches!(
                err,
                CheckError::Mismatch(Mismatch::Length {
                    expected: 5,
                    actual: 6
                })
            ),
            "{err}"
        );
        let err = check_reader(&b"hell"[..], &info_for(b"hello")).unwrap_err();
        assert!(
            matches!(
                err,
                CheckError::Mismatch(Mismatch::Length {
                    expected: 5,
                    actual: 4
                })
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_algorithm_fails_closed() {
        let mut info = info_for(b"x");
        info.hashes.insert("md5", vec![0; 16]);
        assert!(
            matches!(MultiHasher::for_target(&info), Err(Mismatch::UnsupportedHash(a)) if a == "md5")
        );
    }

    #[test]
    fn endless_reader_is_cut_off() {
        let err = check_reader(io::repeat(b'a'), &info_for(b"aaaa")).unwrap_err();
        assert!(matches!(
            err,
            CheckError::Mismatch(Mismatch::Length {
                expected: 4,
                actual: 5
            })
        ));
    }
}
