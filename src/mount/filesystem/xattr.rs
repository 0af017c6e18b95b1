//! Extended attributes: a registered file's signed hash and length, whether it was verified
//! during this mount and the role that listed it; the mount root's status record.

use std::ffi::OsStr;

use fuser::{Errno, INodeNo, ReplyXattr, Request};

use super::{Caller, Content, MountState, TrustFs};
use crate::mount::inodes::{Node, ROOT};
use crate::mount::lock;
use crate::telemetry::status::MountStatus;

/// Extended attributes of registered files (and of the mount root).
pub const XATTR_SHA256: &str = "user.trustfs.sha256";
pub const XATTR_LENGTH: &str = "user.trustfs.length";
pub const XATTR_VERIFIED: &str = "user.trustfs.verified";
pub const XATTR_STATUS: &str = "user.trustfs.status";
pub const XATTR_ROLE: &str = "user.trustfs.role";

impl MountState {
    /// Whether the content `node` stands for was verified during this mount and (local mount)
    /// the backing file is still the version that was verified.
    fn is_verified(&self, node: &Node, object: &str) -> bool {
        if !lock(&self.records).verified.contains(object) {
            return false;
        }
        match &self.content {
            Content::Remote(_) => true,
            Content::Backing(b) => match b.stat(node.path()) {
                Ok(stat) => lock(&self.records).object_of(node.path(), &stat.key) == Some(object),
                Err(_) => false,
            },
        }
    }

    /// The role that listed the content this inode stands for, while the metadata in force still
    /// lists exactly that content for its path (a stale inode after a switch has none).
    fn role_of(&self, node: &Node, object: &str) -> Option<String> {
        let gen = self.generation();
        let pos = gen.target_pos(node.path())?;
        if self.content_key(&gen.index.info_at(pos)) != object {
            return None;
        }
        gen.index.role_at(pos).map(str::to_owned)
    }

    /// The status record as `who` may see it: root sees everything; anyone else (with
    /// `--allow-other`, any uid) not the last denial or fault, which name other users' paths,
    /// pids and uids.
    fn status_for(&self, who: Caller) -> MountStatus {
        let mut st = self.status();
        if who.uid != 0 {
            st.counters.last_denial = None;
            st.counters.last_fault = None;
            st.counters.recent_denials.clear();
        }
        st
    }

    /// Extended attributes of inode `ino`: (name, value) pairs.
    fn xattrs(&self, who: Caller, ino: u64, node: &Node) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = Vec::new();
        if ino == ROOT {
            let status = serde_json::to_vec(&self.status_for(who)).unwrap_or_default();
            out.push((XATTR_STATUS, status));
        }
        if let Some(info) = node.target() {
            if let Some(sha) = info.sha256() {
                out.push((XATTR_SHA256, hex::encode(sha).into_bytes()));
            }
            out.push((XATTR_LENGTH, info.length.to_string().into_bytes()));
            let object = self.content_key(&info);
            let v: &[u8] = if self.is_verified(node, &object) {
                b"yes"
            } else {
                b"no"
            };
            out.push((XATTR_VERIFIED, v.to_vec()));
            if let Some(role) = self.role_of(node, &object) {
                out.push((XATTR_ROLE, role.into_bytes()));
            }
        }
        out
    }
}

/// Reply to a getxattr/listxattr `value` with the size-probe protocol: `size` 0 asks for the
/// length; a buffer too small is `ERANGE`.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

impl TrustFs {
    /// `getxattr`: the value of one known name (only that one is computed).
    pub(super) fn answer_getxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        // Only compute what is asked for (the status record is not free).
        let known = [
            XATTR_SHA256,
            XATTR_LENGTH,
            XATTR_VERIFIED,
            XATTR_STATUS,
            XATTR_ROLE,
        ];
        if !known.iter().any(|k| OsStr::new(k) == name) {
            reply.error(Errno::ENODATA);
            return;
        }
        match self
            .xattrs(Caller::of(req), ino.0, &node)
            .into_iter()
            .find(|(n, _)| OsStr::new(n) == name)
        {
            Some((_, value)) => reply_xattr(reply, size, &value),
            None => reply.error(Errno::ENODATA),
        }
    }

    /// `listxattr`: the names an inode has.
    pub(super) fn answer_listxattr(&self, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let Some(node) = self.node(ino) else {
            reply.error(Errno::ENOENT);
            return;
        };
        let mut names = Vec::new();
        if ino.0 == 1 {
            names.extend_from_slice(XATTR_STATUS.as_bytes());
            names.push(0);
        }
        if let Some(info) = node.target() {
            let mut list = vec![XATTR_LENGTH, XATTR_VERIFIED];
            if info.sha256().is_some() {
                list.insert(0, XATTR_SHA256);
            }
            if self.role_of(&node, &self.content_key(&info)).is_some() {
                list.push(XATTR_ROLE);
            }
            for n in list {
                names.extend_from_slice(n.as_bytes());
                names.push(0);
            }
        }
        reply_xattr(reply, size, &names);
    }
}
