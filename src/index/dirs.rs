//! The directories target paths imply: [`TargetIndex::is_dir`] and [`TargetIndex::children`]
//! (never stored: the targets under a directory are one range of the sorted table).

use super::TargetIndex;

/// One entry of a directory as the target paths imply it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child<'a> {
    /// A directory: some target path continues below it.
    Dir(&'a str),
    /// A target file at this position (and no target path continues below it).
    File(&'a str, usize),
}

impl<'a> Child<'a> {
    pub fn name(&self) -> &'a str {
        match self {
            Child::Dir(n) | Child::File(n, _) => n,
        }
    }
}

impl TargetIndex {
    /// Whether some target path continues below `dir` (`""`, the root, always is a directory).
    /// Asked at every lookup of a remote mount: no allocation.
    pub fn is_dir(&self, dir: &str) -> bool {
        if dir.is_empty() {
            return true;
        }
        // The first path not below "dir/" in order, compared without building "dir/".
        let below = |p: &str| {
            let (p, d) = (p.as_bytes(), dir.as_bytes());
            let n = p.len().min(d.len());
            match p[..n].cmp(&d[..n]) {
                std::cmp::Ordering::Equal => p.len() <= d.len() || p[d.len()] < b'/',
                o => o.is_lt(),
            }
        };
        let at = self.partition_point(below);
        at < self.len() && {
            let p = self.path_at(at).as_bytes();
            p.len() > dir.len() && p.starts_with(dir.as_bytes()) && p[dir.len()] == b'/'
        }
    }

    /// The entries of directory `dir` (`""`: the root) the target paths imply, sorted by name.
    /// A name that is both a target and a directory of other targets is the directory. Costs a
    /// binary search per subdirectory, nothing per target below them.
    pub fn children(&self, dir: &str) -> Vec<Child<'_>> {
        let prefix = match dir {
            "" => String::new(),
            d => format!("{d}/"),
        };
        let mut out = Vec::new();
        let mut at = self.lower_bound(&prefix);
        while at < self.len() {
            let Some(rest) = self.path_at(at).strip_prefix(prefix.as_str()) else {
                break;
            };
            match rest.split_once('/') {
                Some((name, _)) => {
                    out.push(Child::Dir(name));
                    // Past every path below `name/`: '0' is the byte after '/'.
                    at = self.lower_bound(&format!("{prefix}{name}0"));
                }
                None => {
                    out.push(Child::File(rest, at));
                    at += 1;
                }
            }
        }
        // A directory sorts after a target of the same name ("a" < "a-b" < "a/x"): put names in
        // order, and keep the directory where a name is both.
        out.sort_by(|a, b| {
            a.name()
                .cmp(b.name())
                .then_with(|| matches!(b, Child::Dir(_)).cmp(&matches!(a, Child::Dir(_))))
        });
        out.dedup_by(|later, first| later.name() == first.name());
        out
    }
}
