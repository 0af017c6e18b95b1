//! What ends a request that would hang or crash its caller: the [`SlowRetrievalGuard`] on every
//! body (a minimum progress per window) and the panic boundary around the HTTP stack
//! ([`no_panic`], [`NoPanicReader`]).

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// Run `f`, turning a panic into an error: a bug in the HTTP stack must cost one request, never a
/// FUSE worker or the refresh thread. The last line of defence, not the fix.
pub(super) fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("internal error in the HTTP client during {what}: {msg}")
    })
}

/// A body reader whose panics become I/O errors (see [`no_panic`]).
pub(super) struct NoPanicReader<R>(pub(super) R);

impl<R: Read> Read for NoPanicReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match no_panic("a body read", || self.0.read(buf)) {
            Ok(r) => r,
            Err(msg) => Err(io::Error::other(msg)),
        }
    }
}

/// Fails a transfer that delivers less than `min_bytes` in any window of [`RATE_WINDOW`]: the
/// slow-retrieval attack (a mirror that drips a byte just often enough to beat read timeouts)
/// then ends in an error the caller can act on (next mirror, EIO) instead of a hung open.
pub struct SlowRetrievalGuard<R> {
    inner: R,
    min_bytes: u64,
    window_start: Instant,
    window_bytes: u64,
}

/// The window over which a transfer must make progress.
pub const RATE_WINDOW: Duration = Duration::from_secs(30);
/// Default minimum progress per window: 16 KiB (about 550 bytes/s).
pub const DEFAULT_MIN_BYTES_PER_WINDOW: u64 = 16 * 1024;

impl<R> SlowRetrievalGuard<R> {
    pub fn new(inner: R, min_bytes: u64) -> Self {
        SlowRetrievalGuard {
            inner,
            min_bytes,
            window_start: Instant::now(),
            window_bytes: 0,
        }
    }
}

impl<R: Read> Read for SlowRetrievalGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.window_bytes += n as u64;
        let elapsed = self.window_start.elapsed();
        if elapsed >= RATE_WINDOW {
            if self.window_bytes < self.min_bytes && n != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "slow retrieval: {} bytes in {} s, below the minimum of {} bytes per {} s",
                        self.window_bytes,
                        elapsed.as_secs(),
                        self.min_bytes,
                        RATE_WINDOW.as_secs()
                    ),
                ));
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns one byte per call, with `delay` before each.
    struct Drip(Duration);
    impl Read for Drip {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.0);
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn slow_retrieval_is_cut_off() {
        // Without waiting 30 s: a guard whose window has already elapsed judges the next read.
        let mut g = SlowRetrievalGuard::new(Drip(Duration::ZERO), 1024);
        g.window_start = Instant::now() - RATE_WINDOW;
        let err = g.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("slow retrieval"), "{err}");
        // Enough progress in the window: the window restarts and reading goes on.
        let mut g = SlowRetrievalGuard::new(&[7u8; 4096][..], 1024);
        g.window_start = Instant::now() - RATE_WINDOW;
        assert_eq!(g.read(&mut [0u8; 4096]).unwrap(), 4096);
        assert_eq!(g.window_bytes, 0);
    }
}
