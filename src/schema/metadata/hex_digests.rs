//! Hex digests as metadata spells them: checking, comparing and decoding without allocating more
//! than the result.

use std::collections::BTreeMap;

pub(super) fn check_hashes(what: &str, hashes: &BTreeMap<String, String>) -> Result<(), String> {
    if hashes.is_empty() {
        return Err(format!("{what} lists no hashes"));
    }
    for (alg, h) in hashes {
        if !is_hex(h) {
            return Err(format!("{what}: {alg} hash {h:?} is not hex"));
        }
    }
    Ok(())
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether `s` is hex as [`decode_hex`] takes it (an even number of hex digits, either case).
pub fn is_hex(s: &str) -> bool {
    s.len() % 2 == 0 && s.bytes().all(|c| nibble(c).is_some())
}

/// Whether `hex` (either case) spells `digest`, without allocating.
pub fn hex_eq(hex: &str, digest: &[u8]) -> bool {
    hex.len() == digest.len() * 2
        && hex
            .as_bytes()
            .chunks_exact(2)
            .zip(digest)
            .all(|(pair, &b)| match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => ((hi << 4) | lo) == b,
                _ => false,
            })
}

/// The bytes hex `s` spells (an even number of hex digits, either case). A million target
/// digests are decoded at every full load: a plain loop, about four times the `hex` crate's
/// speed.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks_exact(2) {
        out.push((nibble(pair[0])? << 4) | nibble(pair[1])?);
    }
    Some(out)
}
