//! Unit tests of the checks: chunk reads, received chunks, whole passes, trusted trees.

use super::whole::BLOCK;
use super::*;
use crate::chunks::tree_of;
use crate::hashing::Mismatch;
use crate::index::{Hashes, TargetInfo};
use sha2::{Digest, Sha256};
use std::io::Write;

fn file_with(data: &[u8]) -> File {
    let mut f = tempfile_in_tmp();
    f.write_all(data).unwrap();
    f
}

fn tempfile_in_tmp() -> File {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "trustfs-verified-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn info(data: &[u8], with_root: bool) -> TargetInfo {
    TargetInfo {
        length: data.len() as u64,
        hashes: Hashes::from([("sha256", Sha256::digest(data).to_vec())]),
        custom: None,
        chunk_root: with_root.then(|| tree_of(data).root),
    }
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 253) as u8).collect()
}

#[test]
fn reads_are_checked_chunk_by_chunk_and_a_changed_chunk_is_refused() {
    let d = data(300_000);
    let f = file_with(&d);
    let t = TrustedTree::from_outboard(&info(&d, true), &tree_of(&d).outboard()).unwrap();
    for (off, size) in [
        (0u64, 4096u32),
        (65_000, 2000),
        (131_072, 65_536),
        (299_990, 100),
        (1, 1 << 20),
    ] {
        let got = read_chunks(&t, &f, off, size).unwrap();
        let end = (off as usize + size as usize).min(d.len());
        assert_eq!(got.as_slice(), &d[off as usize..end], "{off}+{size}");
    }
    assert!(read_chunks(&t, &f, 300_000, 10)
        .unwrap()
        .as_slice()
        .is_empty());
    // One byte of chunk 2 changes: reads touching chunk 2 fail, others still serve.
    f.write_at(b"X", 140_000).unwrap();
    match read_chunks(&t, &f, 135_000, 10) {
        Err(ChunkError::Differs { offset, .. }) => assert_eq!(offset, 131_072),
        other => panic!("{other:?}"),
    }
    assert!(read_chunks(&t, &f, 0, 4096).is_ok());
    let mut sink = |_: u64, _: &VerifiedBytes| {};
    assert!(matches!(
        verify_whole(&t, &f, 2, &mut sink),
        Err(ChunkError::Differs {
            offset: 131_072,
            ..
        })
    ));
    // Truncated: the chunks past the end differ.
    f.set_len(200_000).unwrap();
    assert!(matches!(
        read_chunks(&t, &f, 250_000, 10),
        Err(ChunkError::Differs {
            offset: 200_000,
            ..
        })
    ));
}

#[test]
fn received_chunks_are_served_only_once_checked_and_never_past_a_wrong_one() {
    let cs = CHUNK_SIZE as usize;
    let d = data(3 * cs + 1000);
    let t = TrustedTree::from_outboard(&info(&d, true), &tree_of(&d).outboard()).unwrap();
    // Chunks 1..4 (the last one short), the third received wrong.
    let mut c = CheckedChunks::new(&t, 1, 8, vec![7u8; 5]);
    for k in 1..4 {
        let slot = c.slot();
        let from = k * cs;
        slot.copy_from_slice(&d[from..from + slot.len()]);
        if k == 3 {
            slot[10] ^= 1;
        }
        c.received();
    }
    assert!(c.slot().is_empty());
    assert!(
        c.serve(cs as u64, 10).is_none(),
        "served before it was checked"
    );
    assert_eq!(c.check(&t), Err(3));
    assert_eq!(c.chunks(), 1..3);
    assert_eq!(c.next(), 3);
    let got = c.serve(cs as u64 + 5, (2 * cs - 5) as u32).unwrap();
    assert_eq!(got.as_slice(), &d[cs + 5..3 * cs]);
    assert!(
        c.serve(cs as u64 + 5, (2 * cs) as u32).is_none(),
        "served past the check"
    );
    assert!(
        c.serve(3 * cs as u64, 1).is_none(),
        "the wrong chunk was served"
    );
    assert!(
        c.serve(0, 1).is_none(),
        "a chunk it does not hold was served"
    );
    // The wrong chunk received again, right: it is served.
    let slot = c.slot();
    slot.copy_from_slice(&d[3 * cs..]);
    c.received();
    assert_eq!(c.check(&t), Ok(()));
    assert_eq!(
        c.serve(3 * cs as u64, 5000).unwrap().as_slice(),
        &d[3 * cs..]
    );
    // The file's last chunk counts, short as it is.
    assert_eq!((c.chunks(), c.next()), (1..4, 4));
    // Only the tree it was made for checks it: another file of the same length does not.
    let other: Vec<u8> = d.iter().map(|b| b ^ 1).collect();
    let o = TrustedTree::from_outboard(&info(&other, true), &tree_of(&other).outboard()).unwrap();
    let mut c = CheckedChunks::new(&t, 0, 1, Vec::new());
    c.slot().copy_from_slice(&other[..cs]);
    c.received();
    assert_eq!(c.check(&o), Err(0));
}

#[test]
fn a_whole_pass_hands_out_every_verified_byte_once() {
    let d = data(BLOCK + 70_000);
    let f = file_with(&d);
    let t = TrustedTree::from_outboard(&info(&d, true), &tree_of(&d).outboard()).unwrap();
    let mut seen = Vec::new();
    verify_whole(&t, &f, 2, &mut |off, b| {
        assert_eq!(off as usize, seen.len());
        seen.extend_from_slice(b.as_slice());
    })
    .unwrap();
    assert_eq!(seen, d);
}

#[test]
fn one_pass_trusts_a_tree_only_if_the_signed_root_or_hashes_match() {
    for n in [0usize, 10, 65_536, BLOCK + 1] {
        let d = data(n);
        let f = file_with(&d);
        for with_root in [true, false] {
            for threads in [1, 2, 3] {
                let t = compute_tree(&info(&d, with_root), &f, threads).unwrap();
                assert_eq!(t.root(), tree_of(&d).root, "{n} {with_root} {threads}");
            }
        }
    }
    let d = data(200_000);
    let f = file_with(&d);
    let mut other = d.clone();
    other[199_999] ^= 1;
    for with_root in [true, false] {
        let i = info(&other, with_root);
        assert!(
            matches!(compute_tree(&i, &f, 2), Err(PassError::Mismatch(_))),
            "{with_root}"
        );
    }
    // Metadata that contradicts itself (the root of this content, the hashes of other
    // content of the same length) is refused by the pass.
    let mut mixed = info(&other, false);
    mixed.chunk_root = Some(tree_of(&d).root);
    assert!(matches!(
        compute_tree(&mixed, &f, 2),
        Err(PassError::Mismatch(Mismatch::Hash { .. }))
    ));
    // Longer and shorter files are refused on the length.
    let mut i = info(&d, false);
    i.length -= 1;
    assert!(matches!(
        compute_tree(&i, &f, 2),
        Err(PassError::Mismatch(Mismatch::Length { .. }))
    ));
    i.length += 2;
    assert!(matches!(
        compute_tree(&i, &f, 2),
        Err(PassError::Mismatch(Mismatch::Length { .. }))
    ));
    // An outboard that does not match the signed root is refused.
    let mut ob = tree_of(&d).outboard();
    ob[0] ^= 1;
    assert!(TrustedTree::from_outboard(&info(&d, true), &ob).is_err());
    assert!(TrustedTree::from_outboard(&info(&d, false), &tree_of(&d).outboard()).is_err());
}

/// Only `verified.rs` makes a [`VerifiedBytes`] (`tests/it/mount.rs` counts the makers there): the
/// submodules can see its fields, but none of them builds one.
#[test]
fn no_submodule_makes_verified_bytes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mount/verified");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let makers = text
            .lines()
            .filter(|l| l.contains(concat!("VerifiedBytes", " {")))
            .filter(|l| !["struct ", "impl ", "fn "].iter().any(|k| l.contains(k)))
            .count();
        assert_eq!(makers, 0, "{} makes a VerifiedBytes", path.display());
        read += 1;
    }
    assert!(read >= 3, "{read} files under {}", dir.display());
}
