//! Repeats of one refusal are logged once a window: every denial and fault is counted (metrics,
//! status), but the `DENY`/`ERROR` line and the audit record of the same (caller uid, path,
//! reason) are written at most once per [`WINDOW`], the next one carrying how many were left
//! out. A reader looping on an unregistered file (hundreds of thousands of opens a second) so
//! cannot fill the log or the audit log's disk, and the first refusal of each kind is always
//! written at once.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lock;

/// At most one line per (uid, path, reason) in this long.
pub(super) const WINDOW: Duration = Duration::from_secs(10);
/// Keys remembered at most (older ones forgotten first; forgetting one only means its next
/// repeat is written at once).
const MAX_KEYS: usize = 4096;

type Key = (u32, OsString, &'static str);

#[derive(Debug, Default)]
pub(super) struct Throttle {
    seen: Mutex<HashMap<Key, (Instant, u64)>>,
}

impl Throttle {
    /// Whether to write the line for this refusal now: Some(repeats left out since the last
    /// line written), or None to leave this one out (it is counted for the next).
    pub(super) fn admit(&self, uid: u32, path: &OsStr, label: &'static str) -> Option<u64> {
        self.admit_at(uid, path, label, Instant::now())
    }

    fn admit_at(&self, uid: u32, path: &OsStr, label: &'static str, now: Instant) -> Option<u64> {
        let mut seen = lock(&self.seen);
        let key = (uid, path.to_owned(), label);
        if let Some((last, left_out)) = seen.get_mut(&key) {
            if now.duration_since(*last) < WINDOW {
                *left_out += 1;
                return None;
            }
            let n = *left_out;
            *last = now;
            *left_out = 0;
            return Some(n);
        }
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, (last, _)| now.duration_since(*last) < WINDOW);
            if seen.len() >= MAX_KEYS {
                seen.clear();
            }
        }
        seen.insert(key, (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_left_out_within_the_window_and_counted() {
        let t = Throttle::default();
        let t0 = Instant::now();
        let p = OsStr::new("f");
        assert_eq!(t.admit_at(1, p, "unregistered", t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(
                t.admit_at(1, p, "unregistered", t0 + Duration::from_millis(i)),
                None
            );
        }
        // Another caller, path or reason is its own line at once.
        assert_eq!(t.admit_at(2, p, "unregistered", t0), Some(0));
        assert_eq!(t.admit_at(1, OsStr::new("g"), "unregistered", t0), Some(0));
        assert_eq!(t.admit_at(1, p, "altered", t0), Some(0));
        assert_eq!(t.admit_at(1, p, "unregistered", t0 + WINDOW), Some(1000));
        assert_eq!(t.admit_at(1, p, "unregistered", t0 + WINDOW * 3), Some(0));
    }

    #[test]
    fn the_memory_is_bounded() {
        let t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..(3 * MAX_KEYS) {
            t.admit_at(0, OsStr::new(&i.to_string()), "x", t0);
        }
        assert!(lock(&t.seen).len() <= MAX_KEYS);
    }
}
