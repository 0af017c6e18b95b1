//! One fetch interface for metadata and targets: a local directory or an HTTP(S) base URL.
//!
//! Every fetch has a byte limit; a source that sends more is cut off and the fetch fails
//! (the endless-data attack). "Not found" is its own answer, distinct from a failure, because the
//! root rotation walk stops at the first missing `N.root.json`.
//!
//! Three error types speak of fetching, one a layer:
//! - [`FetchError`] (here, layer `trust`): one request of one [`Fetcher`] failed: more than its
//!   limit offered, an I/O, transport or HTTP failure, out of file descriptors, or a name that is
//!   not safe to ask for. "Not found" is no error but `Ok(None)`. The client workflow turns it into
//!   a [`TrustError`](super::TrustError) of kind [`TrustErrorKind::Fetch`](super::TrustErrorKind)
//!   (`From`, "fetch failed: " in front), which, with `Missing`, is what `load_or_offline` treats
//!   as an unreachable repository.
//! - `source::remote::MirrorError` (layer `source`): one target from one mirror: unavailable, not
//!   found, out of descriptors, or a length other than the signed one announced; the fetch loop of
//!   `mount::download` chooses the next mirror by it.
//! - `mount::lazyremote::LazyError` (layer `mount`): a lazy range read: bytes refused, no mirror could
//!   deliver, or the cache's partial file failed.
//!
//! The last two are built from a [`FetchError`].
//!
//! The files:
//! - `mod.rs` (this file): [`FetchError`], the [`Fetcher`] interface, the name check and
//!   [`read_limited`], the byte limit every fetch goes through.
//! - `dir.rs`: [`DirFetcher`], files under a local directory.
//! - `http.rs`: [`HttpFetcher`], files under an HTTP(S) base URL: whole files and byte ranges.
//! - `options.rs`: [`HttpOptions`], the deadlines of every HTTP request, and the network to use.
//! - `guards.rs`: what ends a request that would hang or crash its caller: the slow-retrieval
//!   guard on bodies and the panic boundary around the HTTP stack.
//! - `redirect.rs`: where a redirect may lead (never out of the mirror's origin).
//! - `resolver.rs`: the cache of the last host's addresses.
//! - `describe.rs`: a failed request in words (timeouts, proxies, TLS certificates).
//!
//! `dir.rs` and `http.rs` use `mod.rs`; `http.rs` also uses every other file but `dir.rs`;
//! `describe.rs` uses `options.rs`; `options.rs`, `guards.rs`, `redirect.rs` and `resolver.rs` use
//! none of the others. Of `net/`, `options.rs` uses the `Network`; `http.rs`, `redirect.rs` and
//! `describe.rs` the `Origin`.

mod describe;
mod dir;
mod guards;
mod http;
mod options;
mod redirect;
mod resolver;

use std::fmt;
use std::io::Read;

pub use dir::DirFetcher;
pub use http::HttpFetcher;
pub use options::{HttpOptions, DEFAULT_IO_TIMEOUT};

/// Why a fetch failed.
#[derive(Debug)]
pub enum FetchError {
    /// More than `limit` bytes were offered.
    TooLarge { name: String, limit: u64 },
    /// I/O or transport failure.
    Io { name: String, error: String },
    /// This process ran out of file descriptors (`EMFILE`/`ENFILE`) opening a connection: a
    /// local resource fault, which another mirror would not cure.
    Descriptors { name: String, error: String },
    /// The name is not safe to fetch (absolute, `..`, ...).
    BadName(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::TooLarge { name, limit } => {
                write!(f, "{name}: larger than the limit of {limit} bytes")
            }
            FetchError::Io { name, error } | FetchError::Descriptors { name, error } => {
                write!(f, "{name}: {error}")
            }
            FetchError::BadName(n) => write!(f, "{n:?}: not a safe name to fetch"),
        }
    }
}

impl std::error::Error for FetchError {}

/// A place metadata or target files come from, addressed by relative names like `2.root.json`.
pub trait Fetcher: Send + Sync {
    /// Fetch `name`, reading at most `limit` bytes. `Ok(None)` when it does not exist.
    fn fetch(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError>;
    /// A human-readable description of the source, for logs and reports.
    fn describe(&self) -> String;
    /// Whether fetching is as cheap as reading a local file (a metadata directory): then copies
    /// of delegated roles in the state dir would only double the disk writes of a first load.
    fn is_local(&self) -> bool {
        false
    }
}

fn check_name(name: &str) -> Result<(), FetchError> {
    if name.is_empty()
        || name.starts_with('/')
        || name.contains('\0')
        || name.contains('\\')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(FetchError::BadName(name.to_owned()));
    }
    Ok(())
}

/// Read at most `limit` bytes; more is an error.
pub fn read_limited(mut r: impl Read, name: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
    let mut out = Vec::new();
    r.by_ref()
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| FetchError::Io {
            name: name.to_owned(),
            error: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            name: name.to_owned(),
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn limit_is_enforced() {
        assert!(read_limited(&b"12345"[..], "x", 5).is_ok());
        assert!(matches!(
            read_limited(&b"123456"[..], "x", 5),
            Err(FetchError::TooLarge { .. })
        ));
        assert!(matches!(
            read_limited(io::repeat(0), "x", 1 << 20),
            Err(FetchError::TooLarge { .. })
        ));
    }
}
