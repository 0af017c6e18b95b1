//! One verification or download at a time per object: a second opener of the same object waits
//! (bounded) for the first and then finds the verified object — or, if an attempt that ended
//! after this open arrived failed on a fault (the mirrors could not deliver, the disk is full),
//! gets that fault at once instead of starting the same doomed download again behind it (opens
//! queued for the open pool count as waiting: what matters is when the open arrived). An open
//! that arrives after the failure tries again.
//!
//! The map holds a gate only while someone uses it: the last user out removes it, so the map does
//! not grow with every object ever opened. Failures are remembered for [`FAILURE_MEMORY`], at
//! most [`MAX_FAILURES`] of them.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use super::refusal::Fault;

/// How long a failed attempt is remembered (longer than any open waits: the gate wait is 5 min).
pub(super) const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// Failed attempts remembered at most.
const MAX_FAILURES: usize = 4096;

/// The gates of the objects being verified or downloaded right now, and recent failed attempts.
#[derive(Debug, Default)]
pub(super) struct Gates {
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// Object → when its last attempt failed, and the fault.
    failures: Mutex<HashMap<String, (Instant, Fault)>>,
}

/// Holding an object's gate; dropping it lets the next waiter in (also on unwind) and removes
/// the gate from the map if nobody else holds or waits for it.
pub(super) struct Pass<'a> {
    gates: &'a Gates,
    name: String,
    gate: Arc<Gate>,
}

/// Why [`Gates::enter`] did not let the caller in.
#[derive(Debug)]
pub(super) enum Shut {
    /// Still busy after the bounded wait.
    Busy,
    /// An attempt that ended after this caller arrived failed with this fault.
    Failed(Fault),
}

impl Gates {
    /// Enter the gate of `name` for an open that arrived at `arrived`, waiting at most `wait`
    /// for the holder.
    pub(super) fn enter(
        &self,
        name: &str,
        arrived: Instant,
        wait: Duration,
    ) -> Result<Pass<'_>, Shut> {
        self.failed_since(name, arrived)?;
        let gate = lock(&self.gates)
            .entry(name.to_owned())
            .or_default()
            .clone();
        let pass = match gate.enter(wait) {
            Ok(()) => Pass {
                gates: self,
                name: name.to_owned(),
                gate,
            },
            Err(shut) => {
                self.release_unused(name, &gate);
                return Err(shut);
            }
        };
        // An attempt may have failed while this one waited.
        self.failed_since(name, arrived)?;
        Ok(pass)
    }

    /// The fault of an attempt on `name` that ended after `arrived`, if one failed.
    fn failed_since(&self, name: &str, arrived: Instant) -> Result<(), Shut> {
        match lock(&self.failures).get(name) {
            Some((ended, fault)) if *ended > arrived => Err(Shut::Failed(fault.clone())),
            _ => Ok(()),
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

impl Pass<'_> {
    /// This attempt failed on `fault`: opens that arrived before now get the same answer.
    pub(super) fn failed(&self, fault: &Fault) {
        let now = Instant::now();
        let mut failures = lock(&self.gates.failures);
        if failures.len() >= MAX_FAILURES {
            failures.retain(|_, (at, _)| now.duration_since(*at) < FAILURE_MEMORY);
            if failures.len() >= MAX_FAILURES {
                failures.clear();
            }
        }
        failures.insert(self.name.clone(), (now, fault.clone()));
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
    fn enter(&self, wait: Duration) -> Result<(), Shut> {
        let deadline = Instant::now() + wait;
        let mut busy = lock(&self.busy);
        while *busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Shut::Busy);
            }
            busy = self
                .free
                .wait_timeout(busy, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *busy = true;
        Ok(())
    }

    fn leave(&self) {
        *lock(&self.busy) = false;
        self.free.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::FaultKind;

    #[test]
    fn a_waiter_on_a_busy_gate_gives_up_after_the_bound_and_gets_in_once_free() {
        let gates = Arc::new(Gates::default());
        let held = gates
            .enter("o", Instant::now(), Duration::from_secs(1))
            .unwrap();
        let started = Instant::now();
        assert!(matches!(
            gates.enter("o", Instant::now(), Duration::from_millis(200)),
            Err(Shut::Busy)
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Freed while a waiter waits: it gets in.
        let g2 = gates.clone();
        let waiter = std::thread::spawn(move || {
            g2.enter("o", Instant::now(), Duration::from_secs(60))
                .is_ok()
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(waiter.join().unwrap());
        assert!(gates.enter("o", Instant::now(), Duration::ZERO).is_ok());
    }

    #[test]
    fn waiters_share_the_fault_of_the_attempt_they_waited_for_and_later_opens_try_again() {
        let gates = Arc::new(Gates::default());
        let held = gates.enter("o", Instant::now(), Duration::ZERO).unwrap();
        let arrived = Instant::now();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let g = gates.clone();
                std::thread::spawn(
                    move || match g.enter("o", arrived, Duration::from_secs(60)) {
                        Err(Shut::Failed(f)) => f.kind,
                        other => panic!("expected the shared failure, got {:?}", other.is_ok()),
                    },
                )
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        held.failed(&Fault::eio(FaultKind::Network, "mirrors down"));
        drop(held);
        for w in waiters {
            assert_eq!(w.join().unwrap(), FaultKind::Network);
        }
        // An open that arrived before the failure but only comes now (it was queued) gets it too.
        assert!(matches!(
            gates.enter("o", arrived, Duration::ZERO),
            Err(Shut::Failed(_))
        ));
        // Nobody waits any more: the gate is gone; an open arriving now tries again.
        assert_eq!(gates.len(), 0);
        assert!(gates.enter("o", Instant::now(), Duration::ZERO).is_ok());
    }

    #[test]
    fn gates_are_removed_once_nobody_uses_them() {
        let gates = Gates::default();
        for i in 0..1000 {
            let pass = gates
                .enter(&format!("object-{i}"), Instant::now(), Duration::ZERO)
                .unwrap();
            assert_eq!(gates.len(), 1);
            drop(pass);
        }
        assert_eq!(gates.len(), 0);
        // A gate with a waiter stays until the waiter is done too.
        let pass = gates.enter("x", Instant::now(), Duration::ZERO).unwrap();
        assert!(gates
            .enter("x", Instant::now(), Duration::from_millis(10))
            .is_err());
        assert_eq!(gates.len(), 1);
        drop(pass);
        assert_eq!(gates.len(), 0);
    }
}
