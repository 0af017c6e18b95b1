//! Unit tests of the target index.

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
