//! Publishing the walked content files on all cores (the first failure in file order is the
//! error), with a progress line on stderr; freeing what `add` loaded on a thread of its own.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::repo::addcache::AddCache;
use crate::repo::content::{self, Outcome};
use crate::repo::error::RepoError;

/// Drop `value` on a thread of its own (here if none can be started).
pub(super) fn free_later<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("trustfs-free".into())
        .spawn(move || drop(value));
}

/// Publish every file of `files` ([`content::publish_file`]) on all cores: the outcomes in the
/// order of `files`, or the error of the first file (in that order) that failed. After a failure
/// no further file is started. With `progress`, a line on stderr shows files, bytes and rate.
pub(super) fn publish_all(
    root: &content::ContentRoot,
    files: &[content::ContentFile],
    tdir: &Path,
    consistent: bool,
    cache: &AddCache,
    sha512: &(dyn Fn(&str) -> bool + Sync),
    progress: bool,
) -> Result<Vec<Outcome>, RepoError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let finished = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<Outcome, RepoError>>>> =
        files.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        let reporter =
            progress.then(|| s.spawn(|| show_progress(&finished, &done, &bytes, files.len())));
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(i) else { break };
                        let name = f.target.as_str();
                        let r = content::publish_file(
                            root,
                            f,
                            tdir,
                            sha512(name),
                            consistent,
                            cache.get(name),
                        );
                        match &r {
                            Ok(o) if !o.reused => {
                                bytes.fetch_add(o.published.length, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(_) => failed.store(true, Ordering::Relaxed),
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    }
                })
            })
            .collect();
        for w in workers {
            // A worker that panicked leaves its file's slot empty (reported below).
            let _ = w.join();
        }
        finished.store(true, Ordering::Relaxed);
        if let Some(r) = reporter {
            let _ = r.join();
        }
    });
    // Files are claimed in order, so every file before a failed one has its outcome.
    let mut out = Vec::with_capacity(files.len());
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(o)) => out.push(o),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(RepoError::Internal(
                    "a content file was not published".into(),
                ))
            }
        }
    }
    Ok(out)
}

/// Until `finished`: from the first second on, about every 250 ms, rewrite one stderr line with
/// the files done, the bytes read and the read rate; end it with a newline if it was shown.
fn show_progress(finished: &AtomicBool, done: &AtomicUsize, bytes: &AtomicU64, total: usize) {
    use std::io::Write;
    let start = std::time::Instant::now();
    let line = |end: &str| {
        let secs = start.elapsed().as_secs_f64().max(0.001);
        let mib = bytes.load(Ordering::Relaxed) as f64 / 1048576.0;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Ktrustfs: {} of {total} files, {mib:.1} MiB read, {:.0} MiB/s{end}",
            done.load(Ordering::Relaxed),
            mib / secs,
        );
        let _ = err.flush();
    };
    let mut shown = false;
    let mut next = Duration::from_secs(1);
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if start.elapsed() >= next {
            line("");
            shown = true;
            next = start.elapsed() + Duration::from_millis(250);
        }
    }
    if shown {
        line("\n");
    }
}
