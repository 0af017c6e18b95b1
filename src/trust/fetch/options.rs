//! [`HttpOptions`]: the deadlines of every HTTP request (each phase bounded, so a request always
//! ends) and the [`Network`] mirrors are reached through.

use std::sync::Arc;
use std::time::Duration;

use crate::trust::net::Network;

/// Deadlines of every HTTP request (metadata and targets, every mirror).
///
/// A mirror can be hostile: it may drip its status line and headers a byte at a time, drip the
/// body, or redirect anywhere. Every phase therefore has a bound, so a request always ends (with
/// an error the caller can act on: the next mirror, `EIO`, offline start) instead of hanging a
/// reader or the daemon:
/// - connecting (DNS, TCP, TLS), sending the request and receiving the complete response head
///   (status line and headers) each within `io_timeout`;
/// - no single read of the connection waits longer than `io_timeout`;
/// - the whole body within `io_timeout` plus its expected length at [`MIN_BODY_RATE`] (the signed
///   length for targets, the download limit for metadata);
/// - and at least [`DEFAULT_MIN_BYTES_PER_WINDOW`](super::guards::DEFAULT_MIN_BYTES_PER_WINDOW) in every
///   [`RATE_WINDOW`](super::guards::RATE_WINDOW) ([`SlowRetrievalGuard`](super::guards::SlowRetrievalGuard)).
///
/// `network` says how mirrors are reached: TLS roots and client certificate, proxies,
/// credentials ([`Network`]).
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub io_timeout: Duration,
    pub network: Arc<Network>,
}

/// Default of [`HttpOptions::io_timeout`].
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The slowest body transfer a deadline allows for: 32 KiB/s (a 1 GiB target gets 9.1 hours,
/// a 5 MB targets.json 2.5 minutes, on top of `io_timeout`).
pub const MIN_BODY_RATE: u64 = 32 * 1024;

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            io_timeout: DEFAULT_IO_TIMEOUT,
            network: Arc::new(Network::default()),
        }
    }
}

impl HttpOptions {
    /// The deadline for a body of `expected` bytes.
    pub fn body_deadline(&self, expected: u64) -> Duration {
        self.io_timeout
            .saturating_add(Duration::from_secs(expected / MIN_BODY_RATE + 1))
    }
}
