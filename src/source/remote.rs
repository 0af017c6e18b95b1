//! Where remote bytes come from: the targets base URL and its mirrors, tried in order.
//!
//! This module only opens streams; it does not judge content. [`Mirrors::open`] asks one mirror
//! for one target under the name the repository stores it at ([`request_name`]: the
//! consistent-snapshot name `dir/<sha256>.<basename>` when the root says so, else the plain path)
//! and refuses early when the server announces a `Content-Length` other than the signed length.
//! The verified cache (`mount::store`) reads at most the signed length plus one byte from the stream
//! and hashes while it writes; the fetch loop in `mount::download` decides what a failure means.

use std::fmt;
use std::io::Read;

use crate::index::TargetInfo;
use crate::trust::{FetchError, Fetcher, HttpFetcher, HttpOptions};

/// Why one mirror could not deliver a target (before any content was judged).
#[derive(Debug)]
pub enum MirrorError {
    /// Connection refused or reset, timeout, TLS, an HTTP status other than 2xx/404/403/410.
    Unavailable(String),
    /// 404, 403 or 410: this mirror does not have the file.
    NotFound(String),
    /// This process is out of file descriptors (no mirror would help).
    Descriptors(String),
    /// The server announced a length other than the signed one (a wrong or endless file).
    WrongLength {
        url: String,
        announced: u64,
        signed: u64,
    },
}

impl fmt::Display for MirrorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorError::Unavailable(e) => write!(f, "unavailable: {e}"),
            MirrorError::NotFound(url) => write!(f, "{url}: not found (HTTP 404/403/410)"),
            MirrorError::Descriptors(e) => write!(f, "out of file descriptors: {e}"),
            MirrorError::WrongLength {
                url,
                announced,
                signed,
            } => write!(
                f,
                "{url}: server announces {announced} bytes, signed length is {signed}; not downloaded"
            ),
        }
    }
}

/// An open response body from one mirror.
pub struct Body {
    pub url: String,
    pub reader: Box<dyn Read + Send>,
}

/// The targets base URL followed by the mirrors, in the order they are tried.
pub struct Mirrors {
    fetchers: Vec<HttpFetcher>,
    consistent_snapshot: bool,
}

impl fmt::Debug for Mirrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirrors")
            .field("bases", &self.bases())
            .field("consistent_snapshot", &self.consistent_snapshot)
            .finish()
    }
}

impl Mirrors {
    /// `bases` are targets base URLs (http:// or https://), first tried first; every request
    /// gets the deadlines of `http`.
    pub fn new(
        bases: &[String],
        consistent_snapshot: bool,
        http: HttpOptions,
    ) -> Result<Mirrors, String> {
        if bases.is_empty() {
            return Err("no targets URL given".into());
        }
        let fetchers = bases
            .iter()
            .map(|b| HttpFetcher::with_options(b, http.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mirrors {
            fetchers,
            consistent_snapshot,
        })
    }

    pub fn len(&self) -> usize {
        self.fetchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fetchers.is_empty()
    }

    pub fn bases(&self) -> Vec<String> {
        self.fetchers.iter().map(|f| f.describe()).collect()
    }

    /// Open `path` (a target path from the index) on mirror `i`.
    pub fn open(&self, i: usize, path: &str, info: &TargetInfo) -> Result<Body, MirrorError> {
        let Some(fetcher) = self.fetchers.get(i) else {
            return Err(MirrorError::Unavailable(format!("no mirror number {i}")));
        };
        let name = request_name(path, info, self.consistent_snapshot);
        let url = fetcher.url(&name);
        match fetcher.open(&name, info.length) {
            Ok(Some((reader, announced))) => match announced {
                Some(n) if n != info.length => Err(MirrorError::WrongLength {
                    url,
                    announced: n,
                    signed: info.length,
                }),
                _ => Ok(Body { url, reader }),
            },
            Ok(None) => Err(MirrorError::NotFound(url)),
            Err(FetchError::Io { name, error }) => {
                Err(MirrorError::Unavailable(format!("{name}: {error}")))
            }
            Err(FetchError::Descriptors { name, error }) => {
                Err(MirrorError::Descriptors(format!("{name}: {error}")))
            }
            Err(e) => Err(MirrorError::Unavailable(e.to_string())),
        }
    }
}

impl Mirrors {
    /// Open `name` exactly as given (an outboard under a chunks base) on mirror `i`, expecting
    /// about `expected` bytes. Errors in words, naming the URL.
    pub fn open_plain(
        &self,
        i: usize,
        name: &str,
        expected: u64,
    ) -> Result<Box<dyn Read + Send>, String> {
        let fetcher = self
            .fetchers
            .get(i)
            .ok_or_else(|| format!("no mirror number {i}"))?;
        match fetcher.open(name, expected) {
            Ok(Some((reader, _))) => Ok(reader),
            Ok(None) => Err(format!("{}: not found", fetcher.url(name))),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Open bytes `start .. start + len` of the target `path` on mirror `i` (an HTTP range
    /// request; see [`crate::trust::HttpFetcher::open_range`]).
    pub fn open_range(
        &self,
        i: usize,
        path: &str,
        info: &TargetInfo,
        start: u64,
        len: u64,
    ) -> Result<Box<dyn Read + Send>, String> {
        let fetcher = self
            .fetchers
            .get(i)
            .ok_or_else(|| format!("no mirror number {i}"))?;
        let name = request_name(path, info, self.consistent_snapshot);
        match fetcher.open_range(&name, start, len) {
            Ok(Some(reader)) => Ok(reader),
            Ok(None) => Err(format!("{}: not found", fetcher.url(&name))),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The name under which the repository stores `path`: with consistent snapshots
/// `dir/<hash>.<basename>` (sha256 if listed, else the first listed algorithm), else `path`.
pub fn request_name(path: &str, info: &TargetInfo, consistent_snapshot: bool) -> String {
    if !consistent_snapshot {
        return path.to_owned();
    }
    let digest = info.sha256().or_else(|| info.hashes.values().next());
    let Some(digest) = digest else {
        return path.to_owned();
    };
    let hash = hex::encode(digest);
    match path.rsplit_once('/') {
        Some((dir, base)) => format!("{dir}/{hash}.{base}"),
        None => format!("{hash}.{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Hashes;

    #[test]
    fn consistent_snapshot_names() {
        let info = TargetInfo {
            length: 1,
            hashes: Hashes::from([("sha256".to_owned(), vec![0xab, 0xcd])]),
            custom: None,
            chunk_root: None,
        };
        assert_eq!(request_name("a/b/c.txt", &info, true), "a/b/abcd.c.txt");
        assert_eq!(request_name("c.txt", &info, true), "abcd.c.txt");
        assert_eq!(request_name("a/c.txt", &info, false), "a/c.txt");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Mirrors::new(&["ftp://x".into()], true, HttpOptions::default()).is_err());
        assert!(Mirrors::new(&[], true, HttpOptions::default()).is_err());
        let m = Mirrors::new(
            &["http://127.0.0.1:1/t".into()],
            false,
            HttpOptions::default(),
        )
        .unwrap();
        assert_eq!(m.bases(), vec!["http://127.0.0.1:1/t/".to_owned()]);
    }
}
