//! The resolver of [`HttpFetcher`](super::HttpFetcher)s: the last host's addresses, reused for
//! [`RESOLVE_TTL`] instead of a lookup (and a thread) per request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a host name's addresses are reused without asking the resolver again.
pub const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// The addresses of the last host resolved, reused for [`RESOLVE_TTL`].
///
/// ureq resolves the host before every request, also when a pooled keep-alive connection is
/// then used, and with a resolve deadline set (as here) it spawns a thread for each lookup: a
/// thread per small file fetched. This resolver asks ureq's own resolver (deadline and all) only
/// when the cached entry is for another host or older than [`RESOLVE_TTL`], and forgets it when
/// a request fails, so a host that moved is looked up again at the next request.
#[derive(Clone, Debug, Default)]
pub(super) struct CachingResolver {
    last: Arc<Mutex<Option<(String, ResolvedSocketAddrs, Instant)>>>,
}

impl CachingResolver {
    pub(super) fn forget(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str())
        );
        if let Some((k, addrs, at)) = &*self.last.lock().unwrap_or_else(|e| e.into_inner()) {
            if *k == key && at.elapsed() < RESOLVE_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = DefaultResolver::default().resolve(uri, config, timeout)?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((key, addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}
