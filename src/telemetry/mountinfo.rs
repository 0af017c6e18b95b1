//! Which trustfs mounts the kernel lists: parsing `/proc/self/mountinfo` (its escapes, the
//! mount on top at a path), for `trustfs status` and the status verdict.

use std::path::{Path, PathBuf};

/// Whether a mount of type `fstype` from `source` is trustfs: type `fuse` with source `trustfs`
/// (how the daemon mounts through mount(2)), or type `fuse.trustfs`.
fn is_trustfs(fstype: &str, source: &str) -> bool {
    fstype == "fuse.trustfs" || (fstype == "fuse" && source == "trustfs")
}

/// Mountpoints of trustfs mounts in `/proc/self/mountinfo`: type `fuse` with source `trustfs`
/// (how the daemon mounts through mount(2)), or type `fuse.trustfs`.
pub fn trustfs_mounts() -> Vec<PathBuf> {
    // Bytes, not a String: a mount elsewhere on the host whose path is not UTF-8 (the kernel
    // writes it raw) must not hide every trustfs mount.
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    parse_mountinfo(&String::from_utf8_lossy(&info))
}

/// The trustfs mountpoints listed in `text`, in the format of `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut fields = right.split(' ');
            if !is_trustfs(fields.next()?, fields.next()?) {
                return None;
            }
            left.split(' ')
                .nth(4)
                .map(|m| PathBuf::from(unescape_mountinfo(m)))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // `\ooo` up to `\377` (one byte); anything else is kept as it is.
        if b[i] == b'\\'
            && i + 3 < b.len()
            && (b'0'..=b'3').contains(&b[i + 1])
            && b[i + 2..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What is mounted on top at a path.
#[derive(Debug, PartialEq, Eq)]
pub enum TopMount {
    Trustfs,
    /// Another filesystem (its type) covers a trustfs mount there.
    Other(String),
}

/// The topmost mount at `mountpoint` in `mountinfo` (the format of `/proc/self/mountinfo`,
/// where later lines are mounted on top of earlier ones), if a trustfs mount is among those
/// there; `None` when none is.
pub fn top_mount(mountinfo: &str, mountpoint: &Path) -> Option<TopMount> {
    let want = mountpoint.to_string_lossy();
    let mut trustfs_seen = false;
    let mut top = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if left.split(' ').nth(4).map(unescape_mountinfo).as_deref() != Some(&*want) {
            continue;
        }
        let mut fields = right.split(' ');
        let (fstype, source) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let trustfs = is_trustfs(fstype, source);
        trustfs_seen |= trustfs;
        top = Some(if trustfs {
            TopMount::Trustfs
        } else {
            TopMount::Other(fstype.to_owned())
        });
    }
    top.filter(|_| trustfs_seen)
}
