//! §5.6.7, the delegation graph: the pre-order depth-first search for one path
//! ([`Client::find_target`]) and the index of every target any reachable role lists
//! ([`Client::target_index`]), which answers as that search would.

use std::collections::BTreeSet;
use std::rc::Rc;

use super::{err, role_matches, target_info, Client, FoundTarget};
use crate::index::{TargetIndex, TargetPath};
use crate::schema::SuccinctRoles;
use crate::trust::error::{TrustError, TrustErrorKind};

impl Client {
    /// §5.6.7: pre-order depth-first search for `path` through the delegation graph, in listed
    /// order, honouring terminating delegations, with a visited set and a cap on roles visited.
    pub fn find_target(&mut self, path: &str) -> Result<Option<FoundTarget>, TrustError> {
        self.refresh()?;
        let mut stack: Vec<(String, String)> = vec![("targets".to_owned(), "root".to_owned())];
        let mut visited = BTreeSet::new();
        let mut count = 0usize;
        while let Some((role, delegator)) = stack.pop() {
            if !visited.insert(role.clone()) {
                continue;
            }
            count += 1;
            if count > self.limits.max_delegations {
                return Err(err(
                    TrustErrorKind::Delegation,
                    format!(
                        "searching for {path:?} visited more than {} roles",
                        self.limits.max_delegations
                    ),
                ));
            }
            self.load_targets_role(&role, &delegator)?;
            let md = self
                .role(&role, &delegator)
                .ok_or_else(|| err(TrustErrorKind::Delegation, "role vanished"))?;
            if let Some(file) = md.signed.targets.get(path) {
                let info = target_info(&role, path, file)?;
                return Ok(Some(FoundTarget {
                    info,
                    file: file.clone(),
                    role,
                }));
            }
            if let Some(s) = md
                .signed
                .delegations
                .as_ref()
                .and_then(|d| d.succinct_roles.as_ref())
            {
                // TAP 15: exactly one bin covers each path, and every bin is terminating.
                let bin = s.role_for(path);
                stack.clear();
                stack.push((bin, role));
                continue;
            }
            if let Some(d) = &md.signed.delegations {
                let mut children = Vec::new();
                let mut terminate = false;
                for child in d.roles() {
                    if role_matches(child, path) {
                        children.push((child.name.clone(), role.clone()));
                        if child.terminating {
                            terminate = true;
                            break;
                        }
                    }
                }
                if terminate {
                    stack.clear();
                }
                stack.extend(children.into_iter().rev());
            }
        }
        Ok(None)
    }

    /// Resolve every target that any reachable role lists, each by the same search as
    /// [`Client::find_target`] (so an index answer always equals a search answer). Roles that fail
    /// to load are reported in the returned list of problems; their targets are left out unless
    /// the search finds them elsewhere first.
    pub fn target_index(&mut self) -> Result<(TargetIndex, Vec<TrustError>), TrustError> {
        self.refresh()?;
        // Walk every reachable role to collect candidate paths.
        let mut candidates = BTreeSet::new();
        let mut problems = Vec::new();
        // (role, delegator, its bin number and delegation when the role is a succinct hash bin)
        // (and whether that delegation is the top-level targets role's own)
        type Pending = (String, String, Option<(u64, Rc<SuccinctRoles>, bool)>);
        let mut queue: Vec<Pending> = vec![("targets".to_owned(), "root".to_owned(), None)];
        let mut index = TargetIndex::builder();
        let mut seen = BTreeSet::new();
        let (mut named, mut bins) = (0usize, 0u64);
        while let Some((role, delegator, bin)) = queue.pop() {
            if !seen.insert((role.clone(), delegator.clone())) {
                continue;
            }
            if bin.is_none() {
                named += 1;
            }
            if named > self.limits.max_roles {
                return Err(err(
                    TrustErrorKind::Delegation,
                    format!(
                        "the delegation graph has more than {} roles",
                        self.limits.max_roles
                    ),
                ));
            }
            if let Err(e) = self.load_targets_role(&role, &delegator) {
                problems.push(e);
                continue;
            }
            let Some(md) = self.role(&role, &delegator) else {
                continue;
            };
            // Bins delegated by the top-level targets role: the search for a path in its own
            // bin ends there (TAP 15: one bin per path, terminating) unless targets lists the
            // path itself, which it checks first. So these are indexed from here directly, without
            // a search per path (a million searches took most of a mount's start).
            let top = bin
                .as_ref()
                .filter(|(_, _, from_top)| *from_top)
                .and_then(|_| self.role("targets", "root"));
            match &bin {
                None => candidates.extend(md.signed.targets.keys().cloned()),
                Some((number, succinct, _)) => {
                    for (path, file) in &md.signed.targets {
                        // Never indexed from here: the search for `path` only visits its own bin.
                        if succinct.bin_of(path) != *number {
                            problems.push(err(
                                TrustErrorKind::Delegation,
                                format!(
                                    "hash bin {role:?} lists {path:?}, whose path hashes to bin \
                                     {:?}: a bin's key may only vouch for its own range, so this \
                                     listing is ignored",
                                    succinct.role_for(path)
                                ),
                            ));
                        } else if top.is_some_and(|t| !t.signed.targets.contains_key(path)) {
                            match target_info(&role, path, file) {
                                Ok(info) => {
                                    let tp = TargetPath::parse(path).map_err(|e| {
                                        err(
                                            TrustErrorKind::Malformed,
                                            format!("{role}: target {path:?}: {e}"),
                                        )
                                    })?;
                                    index.insert_signed_by(tp, info, &role);
                                }
                                Err(e) => {
                                    problems.push(err(e.kind, format!("target {path:?}: {e}")))
                                }
                            }
                        } else {
                            candidates.insert(path.clone());
                        }
                    }
                }
            }
            let Some(d) = &md.signed.delegations else {
                continue;
            };
            if let Some(s) = &d.succinct_roles {
                bins = bins.saturating_add(s.bin_count());
                if bins > self.limits.max_bins {
                    return Err(err(
                        TrustErrorKind::Delegation,
                        format!(
                            "{role:?} delegates to {} hash bins (bit_length {}); a full index \
                             loads at most {} bins",
                            s.bin_count(),
                            s.bit_length,
                            self.limits.max_bins
                        ),
                    ));
                }
                let s = Rc::new(s.clone());
                let names: Vec<String> = s.bin_names().collect();
                self.preload_roles(&names, &role);
                let from_top = role == "targets" && delegator == "root";
                for i in (0..s.bin_count()).rev() {
                    queue.push((s.bin_name(i), role.clone(), Some((i, s.clone(), from_top))));
                }
            } else {
                for child in d.roles() {
                    queue.push((child.name.clone(), role.clone(), None));
                }
            }
        }
        for path in candidates {
            match self.find_target(&path) {
                Ok(Some(found)) => {
                    let tp = TargetPath::parse(&path).map_err(|e| {
                        err(
                            TrustErrorKind::Malformed,
                            format!("{}: target {path:?}: {e}", found.role),
                        )
                    })?;
                    index.insert_signed_by(tp, found.info, &found.role);
                }
                Ok(None) => {}
                Err(e) => problems.push(err(e.kind, format!("target {path:?}: {e}"))),
            }
        }
        Ok((index.build(), problems))
    }
}
