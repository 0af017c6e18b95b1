//! One verification or download at a time per object: a second opener of the same object waits
//! (bounded) for the first and then finds the verified object.
//!
//! The map holds a gate only while someone uses it: the last user out removes it, so the map does
//! not grow with every object ever opened.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;

/// The gates of the objects being verified or downloaded right now.
#[derive(Debug, Default)]
pub(super) struct Gates {
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

/// Holding an object's gate; dropping it lets the next waiter in (also on unwind) and removes
/// the gate from the map if nobody else holds or waits for it.
pub(super) struct Pass<'a> {
    gates: &'a Gates,
    name: String,
    gate: Arc<Gate>,
}

impl Gates {
    /// Enter the gate of `name`, waiting at most `wait` for its holder; None if it is still busy.
    pub(super) fn enter(&self, name: &str, wait: Duration) -> Option<Pass<'_>> {
        let gate = lock(&self.gates)
            .entry(name.to_owned())
            .or_default()
            .clone();
        if gate.enter(wait) {
            Some(Pass {
                gates: self,
                name: name.to_owned(),
                gate,
            })
        } else {
            self.release_unused(name, &gate);
            None
        }
    }

    /// Gates in the map (objects being verified or waited for).
    pub(super) fn len(&self) -> usize {
        lock(&self.gates).len()
    }

    /// Drop `name`'s gate from the map if the map and `gate` are its only holders.
    fn release_unused(&self, name: &str, gate: &Arc<Gate>) {
        let mut gates = lock(&self.gates);
        // Strong count 2: the map and the caller. Waiters hold a clone, so they keep it.
        if Arc::strong_count(gate) == 2 && gates.get(name).is_some_and(|g| Arc::ptr_eq(g, gate)) {
            gates.remove(name);
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.leave();
        self.gates.release_unused(&self.name, &self.gate);
    }
}

/// A gate: busy while someone verifies or downloads; waiters give up after a bounded time.
#[derive(Debug, Default)]
struct Gate {
    busy: Mutex<bool>,
    free: Condvar,
}

impl Gate {
    fn enter(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut busy = lock(&self.busy);
        while *busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            busy = self
                .free
                .wait_timeout(busy, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *busy = true;
        true
    }

    fn leave(&self) {
        *lock(&self.busy) = false;
        self.free.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_on_a_busy_gate_gives_up_after_the_bound_and_gets_in_once_free() {
        let gates = Arc::new(Gates::default());
        let held = gates.enter("o", Duration::from_secs(1)).unwrap();
        let started = Instant::now();
        assert!(gates.enter("o", Duration::from_millis(200)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Freed while a waiter waits: it gets in.
        let g2 = gates.clone();
        let waiter = std::thread::spawn(move || g2.enter("o", Duration::from_secs(60)).is_some());
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(waiter.join().unwrap());
        assert!(gates.enter("o", Duration::ZERO).is_some());
    }

    #[test]
    fn gates_are_removed_once_nobody_uses_them() {
        let gates = Gates::default();
        for i in 0..1000 {
            let pass = gates.enter(&format!("object-{i}"), Duration::ZERO).unwrap();
            assert_eq!(gates.len(), 1);
            drop(pass);
        }
        assert_eq!(gates.len(), 0);
        // A gate with a waiter stays until the waiter is done too.
        let pass = gates.enter("x", Duration::ZERO).unwrap();
        assert!(gates.enter("x", Duration::from_millis(10)).is_none());
        assert_eq!(gates.len(), 1);
        drop(pass);
        assert_eq!(gates.len(), 0);
    }
}
