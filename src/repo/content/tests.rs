//! The walk and the copy against a content directory changed under them: swapped, replaced or
//! moved entries are refused, never published.

use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use super::*;
use crate::repo::error::RepoError;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trustfs-content-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// CONTENT_DIR with `zz/secret` ("inside"), `a` ("a"), and beside it `outside/secret`
/// ("SECRET") and an empty `targets/`; the walk of CONTENT_DIR done.
struct Staged {
    base: PathBuf,
    content: PathBuf,
    outside: PathBuf,
    tdir: PathBuf,
    root: ContentRoot,
    files: Vec<ContentFile>,
}

fn stage(name: &str) -> Staged {
    let base = scratch(name);
    let content = base.join("content");
    fs::create_dir_all(content.join("zz")).unwrap();
    fs::write(content.join("zz/secret"), b"inside").unwrap();
    fs::write(content.join("a"), b"a").unwrap();
    let outside = base.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"SECRET").unwrap();
    let tdir = base.join("targets");
    fs::create_dir_all(&tdir).unwrap();
    let root = ContentRoot::open(&content).unwrap();
    let mut skipped = Vec::new();
    let files = root.walk(&[], &mut skipped).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let names: Vec<&str> = files.iter().map(|f| f.target.as_str()).collect();
    assert_eq!(names, ["a", "zz/secret"]);
    Staged {
        base,
        content,
        outside,
        tdir,
        root,
        files,
    }
}

impl Staged {
    /// Publish every walked file; the result for zz/secret.
    fn publish(&self) -> Result<Published, RepoError> {
        let a = publish_file(&self.root, &self.files[0], &self.tdir, false, true, None).unwrap();
        assert_eq!(a.published.length, 1, "untouched files still publish");
        publish_file(&self.root, &self.files[1], &self.tdir, false, true, None).map(|o| o.published)
    }

    /// No copy of outside/secret (by hash name or content) under targets/.
    fn assert_secret_not_copied(&self) {
        let secret_sha = hex::encode(Sha256::digest(b"SECRET"));
        for f in files_under(&self.tdir) {
            assert!(
                !f.to_string_lossy().contains(&secret_sha),
                "{}",
                f.display()
            );
            assert_ne!(fs::read(&f).unwrap(), b"SECRET", "{}", f.display());
        }
        fs::remove_dir_all(&self.base).unwrap();
    }
}

fn assert_changed(r: Result<Published, RepoError>, want_reason: &str) {
    match r {
        Err(RepoError::ContentChanged { path, reason }) => {
            assert!(path.ends_with("content/zz/secret"), "{}", path.display());
            assert!(reason.contains(want_reason), "{reason}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(p) => panic!("published {:?}", p.hashes),
    }
}

/// The attack of the Hardening issue, made deterministic: after the walk, a directory is
/// swapped for a symlink to a directory outside CONTENT_DIR that holds a file of the same
/// name. (It used to be followed: the outside file was copied and listed.)
#[test]
fn directory_swapped_for_symlink_after_the_walk_is_not_published() {
    let s = stage("swap-symlink");
    fs::rename(s.content.join("zz"), s.base.join("zz-away")).unwrap();
    std::os::unix::fs::symlink(&s.outside, s.content.join("zz")).unwrap();
    assert_changed(s.publish(), "symbolic link");
    let e = s.publish().err().unwrap().to_string();
    assert!(
        e.contains("zz/secret: changed while publishing")
            && e.ends_with("nothing was published, run add again"),
        "{e}"
    );
    s.assert_secret_not_copied();
}

/// The same with a real directory moved in from outside CONTENT_DIR: the path resolves beneath
/// the root, but to another inode than the walk listed.
#[test]
fn directory_replaced_by_one_moved_in_after_the_walk_is_not_published() {
    let s = stage("swap-moved");
    fs::rename(s.content.join("zz"), s.base.join("zz-away")).unwrap();
    fs::rename(&s.outside, s.content.join("zz")).unwrap();
    assert_changed(s.publish(), "another file took its place");
    s.assert_secret_not_copied();
}

/// A directory moved out of CONTENT_DIR after the walk (to where its owner may then replace
/// its files): its files are no longer beneath the root, so they are not published.
#[test]
fn directory_moved_out_after_the_walk_is_not_published() {
    let s = stage("moved-out");
    fs::rename(s.content.join("zz"), s.outside.join("zz")).unwrap();
    assert_changed(s.publish(), "no longer there");
    s.assert_secret_not_copied();
}

/// A walked file replaced by a symlink, a hard link to another file, or a FIFO.
#[test]
fn file_replaced_after_the_walk_is_not_published() {
    let s = stage("file-replaced");
    let secret = s.content.join("zz/secret");
    fs::remove_file(&secret).unwrap();
    std::os::unix::fs::symlink(s.outside.join("secret"), &secret).unwrap();
    assert_changed(s.publish(), "symbolic link");
    fs::remove_file(&secret).unwrap();
    fs::hard_link(s.outside.join("secret"), &secret).unwrap();
    assert_changed(s.publish(), "another file took its place");
    fs::remove_file(&secret).unwrap();
    crate::sys::mkfifo(&secret, 0o644).unwrap();
    assert_changed(s.publish(), "FIFO");
    s.assert_secret_not_copied();
}

/// A directory swapped for a symlink between being listed in its parent and being opened for
/// listing itself stops the walk; so does CONTENT_DIR given as a symlink.
#[test]
fn symlinks_are_refused_at_every_level_of_the_walk() {
    let base = scratch("walk-symlink");
    let content = base.join("content");
    fs::create_dir_all(content.join("d")).unwrap();
    fs::write(content.join("d/f"), b"f").unwrap();
    std::os::unix::fs::symlink(&content, base.join("link")).unwrap();
    match ContentRoot::open(&base.join("link")) {
        Err(RepoError::ContentName { reason, .. }) => {
            assert!(reason.contains("symbolic link"), "{reason}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    fs::write(base.join("file"), b"").unwrap();
    match ContentRoot::open(&base.join("file")) {
        Err(RepoError::ContentName { reason, .. }) => assert_eq!(reason, "not a directory"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let root = ContentRoot::open(&content).unwrap();
    let dir = Rc::new(root.fd.try_clone().unwrap());
    let (mut out, mut pending, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    root.list(&dir, "", &[], &mut skipped, &mut out, &mut pending)
        .unwrap();
    assert_eq!(pending.len(), 1);
    fs::rename(content.join("d"), base.join("d-away")).unwrap();
    std::os::unix::fs::symlink("/etc", content.join("d")).unwrap();
    match root.open_pending(pending.pop().unwrap()) {
        Err(RepoError::ContentChanged { reason, .. }) => {
            assert!(reason.contains("symbolic link"), "{reason}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Listed, then replaced by another directory of the same name.
    fs::remove_file(content.join("d")).unwrap();
    fs::rename(base.join("d-away"), content.join("d")).unwrap();
    root.list(&dir, "", &[], &mut skipped, &mut out, &mut pending)
        .unwrap();
    fs::rename(content.join("d"), base.join("d-away")).unwrap();
    fs::create_dir(content.join("d")).unwrap();
    match root.open_pending(pending.pop().unwrap()) {
        Err(RepoError::ContentChanged { reason, .. }) => {
            assert!(reason.contains("another directory"), "{reason}")
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    fs::remove_dir(content.join("d")).unwrap();
    std::os::unix::fs::symlink("/etc", content.join("d")).unwrap();
    let mut skipped = Vec::new();
    let files = root.walk(&[], &mut skipped).unwrap();
    assert!(files.is_empty());
    assert_eq!(skipped[0].reason, "symbolic link (not followed)");
    fs::remove_dir_all(&base).unwrap();
}
