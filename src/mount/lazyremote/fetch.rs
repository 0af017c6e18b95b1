//! One fetch of a range of chunks: planned, received, checked, kept.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Instant;

use crate::chunks::CHUNK_SIZE;
use crate::index::TargetInfo;
use crate::mount::lock;
use crate::mount::verified::{CheckedChunks, TrustedTree};
use crate::source::remote::Mirrors;

use super::kept::next_data;
use super::*;

/// One partial file: the chunks it holds ([`KeptChunks`]) and its one running fetch.
pub(super) struct Partial {
    pub(super) kept: KeptChunks,
    pub(super) state: Mutex<FetchState>,
    /// Signalled at every chunk a fetch keeps and when it ends.
    pub(super) changed: Condvar,
}

#[derive(Default)]
pub(super) struct FetchState {
    /// Chunk ranges being fetched. A read whose chunks lie in one waits for it (readahead sends
    /// several READs at once; they would fetch the same window twice); others fetch their own.
    pub(super) active: Vec<Range<u64>>,
    /// Failed fetches, newest last (a few): a reader that waited for one gets its answer instead
    /// of repeating the doomed requests one by one; other readers are not told.
    pub(super) failed: Vec<Failed>,
    /// Readers' streams, most recent last: where each one's last fetch stopped, its window (in
    /// chunks) and how many fetches continued it. A fetch that starts at such an end continues
    /// it; once one has, the next window is fetched while this one is read, and from the
    /// second on the window doubles. A random read so costs one window, never a prefetch.
    pub(super) streams: Vec<Stream>,
}

#[derive(Clone, Copy)]
pub(super) struct Stream {
    pub(super) end: u64,
    pub(super) window: u64,
    pub(super) continued: u32,
}

/// Streams remembered per file.
pub(super) const STREAMS: usize = 4;

/// Failed fetches remembered per file.
pub(super) const FAILURES: usize = 8;

/// A fetch that failed: when it ended and why.
#[derive(Clone)]
pub(super) struct Failed {
    pub(super) at: Instant,
    /// The chunks it did not bring.
    pub(super) chunks: Range<u64>,
    pub(super) kind: FailKind,
    pub(super) why: String,
}

#[derive(Clone, Copy)]
pub(super) enum FailKind {
    /// Every mirror that delivered sent other bytes.
    Refused,
    /// No mirror delivered.
    Unavailable,
    /// The partial file could not be written.
    Cache,
}

/// A fetch of chunks `from .. until` of one partial file, marked running in its state. However
/// it ends (done, failed, a thread that could not start, a panic), [`Drop`] clears the mark and
/// wakes the readers waiting for it.
pub(super) struct Job {
    pub(super) partial: Arc<Partial>,
    pub(super) data: File,
    pub(super) from: u64,
    pub(super) until: u64,
    pub(super) started: bool,
    /// How it ended: the chunk it reached and why it stopped short.
    pub(super) outcome: Option<(u64, Option<Failed>)>,
}

impl Drop for Job {
    fn drop(&mut self) {
        let (reached, failed) = self.outcome.take().unwrap_or_else(|| {
            let failed = self.started.then(|| Failed {
                at: Instant::now(),
                chunks: self.from..self.until,
                kind: FailKind::Unavailable,
                why: "the fetch stopped before it ended (internal error)".into(),
            });
            (self.from, failed)
        });
        let mut st = lock(&self.partial.state);
        if let Some(i) = st.active.iter().position(|r| *r == (self.from..self.until)) {
            st.active.swap_remove(i);
        }
        if let Some(s) = st.streams.iter_mut().find(|s| s.end == self.from) {
            s.end = reached;
        }
        if let Some(f) = failed {
            if st.failed.len() >= FAILURES {
                st.failed.remove(0);
            }
            st.failed.push(f);
        }
        self.partial.changed.notify_all();
    }
}

/// What a fetch thread needs of the read that started it.
pub(super) struct Run {
    pub(super) targets: Arc<Mirrors>,
    pub(super) path: String,
    pub(super) info: TargetInfo,
    pub(super) tree: Arc<TrustedTree>,
    pub(super) running: Arc<AtomicUsize>,
    pub(super) space: Arc<PartialDir>,
    pub(super) recent: Arc<Recent>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Run {
    /// Check the batches the receiver sends and keep the chunks that match: in memory for the
    /// reads waiting (served at once), then written into the partial file and noted. Batches
    /// after a chunk that did not match are dropped until the receiver drains (its mirror was
    /// wrong; it asks the next one from that chunk). Ends when the receiver is done, or when a
    /// write fails (the error is the answer). Returns where the chunks kept end: the fetch
    /// reached that far.
    pub(super) fn check(
        &self,
        job: &Job,
        batches: mpsc::Receiver<ToCheck>,
        bad: &AtomicU64,
    ) -> (u64, io::Result<()>) {
        let mut reached = job.from;
        let mut found = None;
        for msg in batches {
            match msg {
                ToCheck::Drain(reply) => {
                    // Cleared before the answer: the receiver must never see this mirror's flag
                    // while it reads the next one.
                    bad.store(u64::MAX, Ordering::Release);
                    let _ = reply.send(found.take());
                }
                ToCheck::Batch(_) if found.is_some() => {}
                ToCheck::Batch(mut batch) => {
                    if let Err(index) = batch.check(&self.tree) {
                        found = Some(index);
                        bad.store(index, Ordering::Release);
                    }
                    let chunks = batch.chunks();
                    if let Err(e) = self.keep(job, batch) {
                        return (reached, Err(e));
                    }
                    if !chunks.is_empty() {
                        reached = reached.max(chunks.end);
                    }
                }
            }
        }
        (reached, Ok(()))
    }

    pub(super) fn keep(&self, job: &Job, batch: CheckedChunks) -> io::Result<()> {
        let chunks = batch.chunks();
        if chunks.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(batch);
        self.recent.keep(&job.partial, batch.clone());
        {
            let _st = lock(&job.partial.state);
            job.partial.changed.notify_all();
        }
        job.data
            .write_all_at(batch.bytes(), chunks.start * u64::from(CHUNK_SIZE))?;
        for i in chunks {
            job.partial.kept.set(i);
        }
        let _st = lock(&job.partial.state);
        job.partial.changed.notify_all();
        Ok(())
    }

    /// Fetch the job's chunks: received here, checked and kept on a second thread while the
    /// next ones arrive; readers are served the checked batches from memory at once.
    pub(super) fn fetch(self, mut job: Job) {
        let cs = u64::from(CHUNK_SIZE);
        let stop = (job.until * cs).min(self.tree.length());
        let (to_check, batches) = mpsc::sync_channel(4);
        let bad = AtomicU64::new(u64::MAX);
        let (at, refused, unavailable, cache) = std::thread::scope(|scope| {
            let checker = std::thread::Builder::new()
                .name("trustfs-check".into())
                .spawn_scoped(scope, || self.check(&job, batches, &bad));
            let checker = match checker {
                Ok(c) => c,
                Err(e) => {
                    let e = io::Error::other(format!("cannot start a checker thread: {e}"));
                    return (job.from, Vec::new(), Vec::new(), Some(e));
                }
            };
            let (at, refused, unavailable) = self.receive(&job, stop, &to_check, &bad);
            drop(to_check);
            // Where the fetch stopped: what was received but not kept does not count.
            match checker.join() {
                Ok((reached, kept)) => (reached.min(at), refused, unavailable, kept.err()),
                Err(_) => {
                    let e = io::Error::other("the checker thread failed (internal error)");
                    (job.from, refused, unavailable, Some(e))
                }
            }
        });
        let failed = if at >= job.until {
            None
        } else if let Some(e) = cache {
            Some(Failed {
                at: Instant::now(),
                chunks: at..job.until,
                kind: FailKind::Cache,
                why: e.to_string(),
            })
        } else {
            let all = [refused.as_slice(), unavailable.as_slice()]
                .concat()
                .join("; ");
            Some(Failed {
                at: Instant::now(),
                chunks: at..job.until,
                kind: match refused.is_empty() {
                    true => FailKind::Unavailable,
                    false => FailKind::Refused,
                },
                why: format!("bytes {}..{stop} of {:?}: {all}", at * cs, self.path),
            })
        };
        job.outcome = Some((at, failed));
        let written = (at - job.from) * cs;
        drop(job);
        self.space.wrote(written);
        self.space.fetched();
    }

    /// Receive the job's chunks from the first mirror that delivers them and send them to the
    /// checker a batch at a time. A mirror that fails, or sent a chunk the checker refused, hands
    /// over to the next one at that chunk. Returns where it stopped and what the mirrors did
    /// wrong (sent other bytes, could not deliver).
    pub(super) fn receive(
        &self,
        job: &Job,
        stop: u64,
        to_check: &mpsc::SyncSender<ToCheck>,
        bad: &AtomicU64,
    ) -> (u64, Vec<String>, Vec<String>) {
        let cs = u64::from(CHUNK_SIZE);
        let mut at = job.from;
        let (mut refused, mut unavailable) = (Vec::new(), Vec::new());
        let batch_at = |at: u64| {
            let until = (at / BATCH + 1).saturating_mul(BATCH).min(job.until);
            CheckedChunks::new(&self.tree, at, until - at, self.recent.buffer())
        };
        // What the checker refused since the last drain, once it has seen all that was sent;
        // Err when it stopped (it says why).
        let drain = || {
            let (reply, answer) = mpsc::sync_channel(1);
            to_check.send(ToCheck::Drain(reply)).map_err(drop)?;
            answer.recv().map_err(drop)
        };
        let mut i = 0;
        while i < self.targets.len() && at < job.until {
            let start = at * cs;
            let mut body =
                match self
                    .targets
                    .open_range(i, &self.path, &self.info, start, stop - start)
                {
                    Ok(b) => b,
                    Err(e) => {
                        unavailable.push(e);
                        i += 1;
                        continue;
                    }
                };
            let mut batch = batch_at(at);
            let cut = loop {
                let slot = batch.slot();
                let len = slot.len() as u64;
                if let Err(e) = body.read_exact(slot) {
                    break Some(format!(
                        "mirror {}: the range ended before byte {}: {e}",
                        i + 1,
                        at * cs + len
                    ));
                }
                batch.received();
                at += 1;
                if at >= job.until {
                    break None;
                }
                if batch.slot().is_empty() {
                    let full = std::mem::replace(&mut batch, batch_at(at));
                    if to_check.send(ToCheck::Batch(full)).is_err() {
                        return (at, refused, unavailable);
                    }
                    if bad.load(Ordering::Acquire) != u64::MAX {
                        break None;
                    }
                }
            };
            if to_check.send(ToCheck::Batch(batch)).is_err() {
                return (at, refused, unavailable);
            }
            match drain() {
                Err(()) => return (at, refused, unavailable),
                Ok(Some(index)) => {
                    refused.push(format!(
                        "mirror {}: chunk {index} (from byte {}) differs from the signed chunk root",
                        i + 1,
                        index * cs
                    ));
                    at = index;
                    i += 1;
                }
                Ok(None) => {
                    if let Some(why) = cut {
                        unavailable.push(why);
                        i += 1;
                    } else if at < job.until {
                        // Cannot happen (the flag is set only with a refused chunk); never ask
                        // the same mirror again and again.
                        unavailable
                            .push(format!("mirror {}: stopped early (internal error)", i + 1));
                        i += 1;
                    }
                }
            }
        }
        (at, refused, unavailable)
    }
}

/// What the receiver of a fetch sends its checker.
pub(super) enum ToCheck {
    Batch(CheckedChunks),
    /// Everything sent before is done: answer the chunk refused since the last drain, if any.
    Drain(mpsc::SyncSender<Option<u64>>),
}

/// The fetch of chunks `m0 ..` (at least to `m1`), marked running in `st`: a window to the
/// next [`WINDOW`] boundary; a fetch that continues a sequential reader's stream doubles its
/// window (to [`MAX_WINDOW`]). Never over chunks the partial file holds already or another fetch
/// brings.
pub(super) fn plan(
    st: &mut FetchState,
    p: &Arc<Partial>,
    data: &File,
    m0: u64,
    m1: u64,
    n: u64,
) -> Result<Job, LazyError> {
    let cs = u64::from(CHUNK_SIZE);
    let per = WINDOW / cs;
    let window = match st.streams.iter().position(|s| s.end == m0) {
        Some(i) => {
            let mut s = st.streams.remove(i);
            if s.continued > 0 {
                s.window = (s.window * 2).min(MAX_WINDOW / cs);
            }
            s.continued = s.continued.saturating_add(1);
            st.streams.push(s);
            s.window
        }
        None => {
            if st.streams.len() >= STREAMS {
                st.streams.remove(0);
            }
            st.streams.push(Stream {
                end: m0,
                window: per,
                continued: 0,
            });
            per
        }
    };
    let mut until = (m0 - m0 % per + window).min(n);
    // Never into a range another fetch brings (the read waits for that part).
    let m1 = match st.active.iter().map(|r| r.start).filter(|&a| a > m0).min() {
        Some(next) => {
            until = until.min(next);
            m1.min(next - 1)
        }
        None => m1,
    };
    // Readahead sends READs out of order: a window fetched from its middle must not be fetched
    // again for its start (holes of the partial file are what never came).
    if let Some(at) = next_data(data, (m1 + 1) * cs) {
        until = until.min(at / cs);
    }
    let until = until.max(m1 + 1);
    let data = data.try_clone().map_err(LazyError::Cache)?;
    st.active.push(m0..until);
    Ok(Job {
        partial: p.clone(),
        data,
        from: m0,
        until,
        started: false,
        outcome: None,
    })
}
