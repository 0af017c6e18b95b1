//! Unit tests of the object store: object names, what is published, which directory is cleared,
//! temporary names of daemons sharing a cache.

use std::os::unix::fs::FileExt;

use super::temps::temp_owner;
use super::*;
use crate::index::Hashes;

#[test]
fn object_names_depend_on_length_and_every_hash() {
    let mut a = TargetInfo {
        length: 1,
        hashes: Hashes::from([("sha256".to_owned(), vec![1; 32])]),
        custom: None,
        chunk_root: None,
    };
    let n1 = object_name(&a);
    a.length = 2;
    let n2 = object_name(&a);
    a.hashes.insert("sha512", vec![2; 64]);
    let n3 = object_name(&a);
    assert!(n1 != n2 && n2 != n3 && n1 != n3);
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("trustfs-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn info_of(data: &[u8]) -> TargetInfo {
    TargetInfo {
        length: data.len() as u64,
        hashes: Hashes::from([("sha256".to_owned(), Sha256::digest(data).to_vec())]),
        custom: None,
        chunk_root: None,
    }
}

#[test]
fn a_temporary_longer_than_the_signed_length_is_never_published() {
    let root = scratch("trailing");
    let dir = root.join("objects");
    let store = ObjectStore::create(&dir, u64::MAX, Arc::default()).unwrap();
    let data = b"signed bytes";
    let info = info_of(data);
    let name = object_name(&info);
    // The hashed (and verified) bytes are right, but stale bytes follow them in the file,
    // as a partial FICLONE followed by the copy from offset 0 could leave.
    let r = store.store_with(&info, &name, |tmp, mut hasher| {
        tmp.write_all_at(b"signed bytes and trailing junk", 0)
            .map_err(StoreError::Io)?;
        hasher.update(data);
        hasher.check(&info).map_err(StoreError::Mismatch)
    });
    assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
    assert!(!dir.join(&name).exists());
    assert!(!store.acquire(&name, info.length));
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert!(
        left.iter()
            .all(|e| e.file_name().to_string_lossy().starts_with('.')),
        "{left:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn only_a_marked_or_trustfs_only_directory_is_cleared() {
    let root = scratch("marker");
    let dir = root.join("objects");
    // Someone's files where --state-dir/objects points by mistake: refused, kept.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("precious.txt"), b"keep me").unwrap();
    let e = ObjectStore::create(&dir, u64::MAX, Arc::default()).unwrap_err();
    assert!(e.to_string().contains("refusing to clear"), "{e}");
    assert_eq!(std::fs::read(dir.join("precious.txt")).unwrap(), b"keep me");
    std::fs::remove_file(dir.join("precious.txt")).unwrap();
    // A store from before the marker (objects and temporaries only): cleared, then marked.
    let obj = format!("t-{}", "a".repeat(64));
    std::fs::write(dir.join(&obj), b"x").unwrap();
    std::fs::write(dir.join("tmp.12.7"), b"x").unwrap();
    let store = ObjectStore::create(&dir, u64::MAX, Arc::default()).unwrap();
    assert!(!dir.join(&obj).exists());
    assert!(dir.join(MARKER).is_file());
    drop(store);
    // A marked store is cleared whatever it holds.
    std::fs::write(dir.join("whatever"), b"x").unwrap();
    ObjectStore::create(&dir, u64::MAX, Arc::default()).unwrap();
    assert!(!dir.join("whatever").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn temp_names_carry_their_writer() {
    assert_eq!(temp_owner("tmp.1234.7"), Some(1234));
    assert_eq!(temp_owner("new.1.18f3a9c0deadbeef"), Some(1));
    for bad in [
        "tmp.x.1", "tmp.12", "t-abc", "tmp.12.x", "xtmp.1.2", "tmp.1.",
    ] {
        assert_eq!(temp_owner(bad), None, "{bad}");
    }
}

#[test]
fn temps_of_a_daemon_with_the_same_pid_do_not_collide_and_stay_locked_until_used() {
    let root = scratch("samepid");
    let dir = root.join("cache");
    let store = ObjectStore::open_cache(&dir, u64::MAX, Arc::default()).unwrap();
    // Another daemon with our pid (pid 1 in two containers) is writing its first temps,
    // under the names a counter alone would give ours.
    let pid = std::process::id();
    for n in 0..4 {
        std::fs::write(dir.join(format!("tmp.{pid}.{n}")), b"theirs").unwrap();
    }
    let data = b"object bytes";
    let info = info_of(data);
    let name = object_name(&info);
    let mut reader: &[u8] = data;
    store
        .fetch_and_store(&mut reader, &info, &name, &mut |_| {})
        .expect("a temp name collision must not fail the download");
    for n in 0..4 {
        assert!(dir.join(format!("tmp.{pid}.{n}")).exists());
    }
    // Published and held: a second daemon starting now with a bound of 0 (its evictor and
    // its stale-temp cleaner) does not take our object.
    let other = ObjectStore::open_cache(&dir, 0, Arc::default()).unwrap();
    assert!(dir.join(&name).exists(), "an object in use was evicted");
    store.release(&name);
    drop(other);
    let _ = std::fs::remove_dir_all(&root);
}
