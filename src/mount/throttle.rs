//! Repeats of one refusal are logged once a window: every denial and fault is counted (metrics,
//! status), but the `DENY`/`ERROR` line and the audit record of the same (caller uid, path,
//! reason) are written at most once per [`WINDOW`], the next one carrying how many were left
//! out. A reader looping on an unregistered file (hundreds of thousands of opens a second) so
//! cannot fill the log or the audit log's disk, and the first refusal of each kind is written at
//! once. Across all keys at most [`MAX_PER_SECOND`] lines a second are written (a reader cycling
//! through a million different names); what is left out is counted like the rest.

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
/// Lines written a second at most, all keys together.
pub(super) const MAX_PER_SECOND: u32 = 100;

type Key = (u32, OsString, &'static str);

#[derive(Debug, Default)]
pub(super) struct Throttle {
    seen: Mutex<HashMap<Key, (Instant, u64)>>,
    /// The current one-second window and the lines written in it.
    second: Mutex<Option<(Instant, u32)>>,
}

impl Throttle {
    /// Whether to write the line for this refusal now: Some(repeats left out since the last
    /// line written), or None to leave this one out (it is counted for the next).
    pub(super) fn admit(&self, uid: u32, path: &OsStr, label: &'static str) -> Option<u64> {
        self.admit_at(uid, path, label, Instant::now())
    }

    fn admit_at(&self, uid: u32, path: &OsStr, label: &'static str, now: Instant) -> Option<u64> {
        let n = self.admit_key(uid, path, label, now)?;
        let mut second = lock(&self.second);
        match &mut *second {
            Some((start, lines)) if now.duration_since(*start) < Duration::from_secs(1) => {
                if *lines >= MAX_PER_SECOND {
                    // Over the global rate: left out, and counted for this key's next line.
                    drop(second);
                    if let Some(slot) = lock(&self.seen).get_mut(&(uid, path.to_owned(), label)) {
                        slot.1 += n + 1;
                    }
                    return None;
                }
                *lines += 1;
            }
            _ => *second = Some((now, 1)),
        }
        Some(n)
    }

    fn admit_key(&self, uid: u32, path: &OsStr, label: &'static str, now: Instant) -> Option<u64> {
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

    #[test]
    fn many_different_names_are_capped_per_second() {
        let t = Throttle::default();
        let t0 = Instant::now();
        let written = (0..1000)
            .filter(|i| t.admit_at(0, OsStr::new(&i.to_string()), "x", t0).is_some())
            .count();
        assert_eq!(written, MAX_PER_SECOND as usize);
        // The next second writes again; a key left out reports its count when written later.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            t.admit_at(0, OsStr::new("999"), "x", t1),
            None,
            "within its window"
        );
        assert_eq!(
            t.admit_at(0, OsStr::new("999"), "x", t0 + WINDOW),
            Some(2),
            "both left-out lines are counted"
        );
    }
}
