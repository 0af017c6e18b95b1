//! Opens that must verify or download run on their own threads, off the FUSE workers.
//!
//! A first open of a large local file copies and hashes it; a first open in a remote mount
//! downloads it, for as long as a slow mirror's deadlines allow. Done on a FUSE worker, a handful
//! of such opens (or a hostile mirror dripping its bytes) would hold every worker, and `ls`,
//! `stat` and opens of files already verified would wait behind them. So an open that finds its
//! object verified already is answered on the worker at once, and only the others are handed, with
//! their reply, to this pool: the workers stay free for everything else.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::lock;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug)]
pub(super) struct Openers {
    tx: Mutex<Option<Sender<Job>>>,
}

impl Openers {
    /// A pool of `threads` threads. If none can be started, jobs run on the caller's thread.
    pub(super) fn new(threads: usize) -> Openers {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("trustfs-open-{i}"))
                .spawn(move || work(&rx));
            if spawned.is_ok() {
                started += 1;
            }
        }
        Openers {
            tx: Mutex::new((started > 0).then_some(tx)),
        }
    }

    /// Run `job` on the pool (or here, if the pool is gone).
    pub(super) fn run(&self, job: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(job);
        let rejected = match &*lock(&self.tx) {
            Some(tx) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(job) = rejected {
            job();
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, not while running it.
        let job = match lock(rx).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn jobs_run_concurrently_off_the_callers_thread() {
        let pool = Openers::new(4);
        let (tx, rx) = mpsc::channel();
        let me = std::thread::current().id();
        for i in 0..4 {
            let tx = tx.clone();
            pool.run(move || {
                // All four must be running at once for each to see the others' sends.
                std::thread::sleep(Duration::from_millis(100));
                tx.send((i, std::thread::current().id())).unwrap();
            });
        }
        let started = std::time::Instant::now();
        let got: Vec<_> = (0..4).map(|_| rx.recv().unwrap()).collect();
        assert!(
            started.elapsed() < Duration::from_millis(390),
            "ran one after another"
        );
        assert!(got.iter().all(|(_, t)| *t != me));
    }
}
