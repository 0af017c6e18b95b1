//! Which paths a delegation covers ([`role_matches`]): `paths` patterns, matched component by
//! component as fnmatch does, or `path_hash_prefixes` of the path's sha256.

use sha2::{Digest, Sha256};

use crate::schema::DelegatedRole;

/// Does delegation `role` cover `path`? `paths` patterns match component by component with `*`
/// and `?` never crossing `/`; `path_hash_prefixes` match the hex sha256 of the path.
pub fn role_matches(role: &DelegatedRole, path: &str) -> bool {
    if let Some(patterns) = &role.paths {
        return patterns.iter().any(|p| glob_path(p, path));
    }
    if let Some(prefixes) = &role.path_hash_prefixes {
        let digest = hex::encode(Sha256::digest(path.as_bytes()));
        return prefixes
            .iter()
            .any(|p| digest.starts_with(&p.to_ascii_lowercase()));
    }
    false
}

fn glob_path(pattern: &str, path: &str) -> bool {
    let pc: Vec<&str> = pattern.split('/').collect();
    let tc: Vec<&str> = path.split('/').collect();
    pc.len() == tc.len()
        && pc
            .iter()
            .zip(&tc)
            .all(|(p, t)| fnmatch(p.as_bytes(), t.as_bytes()))
}

/// fnmatch for one path component: `*`, `?`, `[seq]`, `[!seq]`; iterative, linear backtracking.
fn fnmatch(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = match_class(&p[pi..], t[ti]) {
                        if matched {
                            pi += next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == b'[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Match `c` against a `[...]` class at the start of `p`; returns (matched, class length), or
/// None when the `[` does not open a well-formed class (then it is a literal).
fn match_class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&b'!');
    if negate {
        i += 1;
    }
    let start = i;
    let mut matched = false;
    while i < p.len() {
        if p[i] == b']' && i > start {
            return Some((matched != negate, i + 1));
        }
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_do_not_cross_slashes() {
        assert!(glob_path("*.txt", "a.txt"));
        assert!(!glob_path("*.txt", "dir/a.txt"));
        assert!(glob_path("dir/*", "dir/a.txt"));
        assert!(!glob_path("dir/*", "dir/sub/a.txt"));
        assert!(glob_path("dir/*/a.tx?", "dir/sub/a.txt"));
        assert!(!glob_path("a?c", "a/c"));
        assert!(glob_path("file[0-9].bin", "file7.bin"));
        assert!(!glob_path("file[!0-9].bin", "file7.bin"));
        assert!(glob_path("*", "anything"));
        assert!(glob_path("**", "x"));
        assert!(glob_path("*", "")); // as fnmatch; target paths are never empty anyway
        assert!(glob_path("a*b*c", "aXXbYYc"));
        assert!(!glob_path("a*b*c", "aXXbYY"));
    }

    #[test]
    fn hash_prefixes() {
        let role = DelegatedRole {
            name: "bin".into(),
            keyids: vec![],
            threshold: 1,
            terminating: false,
            paths: None,
            path_hash_prefixes: Some(vec![
                hex::encode(Sha256::digest(b"file.txt"))[..2].to_owned()
            ]),
            extra: Default::default(),
        };
        assert!(role_matches(&role, "file.txt"));
    }
}
