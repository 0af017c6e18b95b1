//! One fetch interface for metadata and targets: a local directory or an HTTP(S) base URL.
//!
//! Every fetch has a byte limit; a source that sends more is cut off and the fetch fails
//! (the endless-data attack). "Not found" is its own answer, distinct from a failure, because the
//! root rotation walk stops at the first missing `N.root.json`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a fetch failed.
#[derive(Debug)]
pub enum FetchError {
    /// More than `limit` bytes were offered.
    TooLarge { name: String, limit: u64 },
    /// I/O or transport failure.
    Io { name: String, error: String },
    /// The name is not safe to fetch (absolute, `..`, ...).
    BadName(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::TooLarge { name, limit } => {
                write!(f, "{name}: larger than the limit of {limit} bytes")
            }
            FetchError::Io { name, error } => write!(f, "{name}: {error}"),
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

/// Files under a local directory.
#[derive(Clone, Debug)]
pub struct DirFetcher {
    pub dir: PathBuf,
}

impl DirFetcher {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirFetcher { dir: dir.into() }
    }
}

/// Decode `%XX` escapes (names arrive URL-encoded, as for HTTP; see `trust::quote`).
fn percent_decode(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let v = u8::from_str_radix(name.get(i + 1..i + 3)?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Fetcher for DirFetcher {
    fn fetch(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError> {
        check_name(name)?;
        // A web server decodes %XX before looking up the file; so does this fetcher, and the
        // decoded name must still be a safe relative path (a role named "../x" is never a path).
        let decoded = percent_decode(name).ok_or_else(|| FetchError::BadName(name.to_owned()))?;
        check_name(&decoded)?;
        let path = self.dir.join(&decoded);
        let file = match open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(FetchError::Io {
                    name: path.display().to_string(),
                    error: e.to_string(),
                })
            }
        };
        read_limited(file, &path.display().to_string(), limit).map(Some)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Open a regular file without blocking on FIFOs; anything else is refused.
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// A streaming HTTP response body and its announced length, if any.
pub type HttpBody = (Box<dyn Read + Send + Sync>, Option<u64>);

/// Files under an HTTP(S) base URL, with connect and read timeouts.
pub struct HttpFetcher {
    base: String,
    agent: ureq::Agent,
    min_rate: u64,
}

impl HttpFetcher {
    /// `base` is a URL such as `https://example.com/metadata/` (a trailing `/` is added if missing).
    pub fn new(base: &str) -> Result<Self, String> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("{base:?} is not an http:// or https:// URL"));
        }
        let mut base = base.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(30))
            .redirects(5)
            .user_agent(concat!("trustfs/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(HttpFetcher {
            base,
            agent,
            min_rate: DEFAULT_MIN_BYTES_PER_WINDOW,
        })
    }

    /// The full URL of `name`, with each path component percent-encoded. A `%` that starts a
    /// valid escape is kept: metadata names arrive already encoded (see `trust::quote`).
    pub fn url(&self, name: &str) -> String {
        let mut url = self.base.clone();
        for (i, component) in name.split('/').enumerate() {
            if i > 0 {
                url.push('/');
            }
            let bytes = component.as_bytes();
            for (j, &b) in bytes.iter().enumerate() {
                let escape = b == b'%'
                    && bytes.get(j + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(j + 2).is_some_and(u8::is_ascii_hexdigit);
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || escape {
                    url.push(b as char);
                } else {
                    url.push_str(&format!("%{b:02X}"));
                }
            }
        }
        url
    }

    /// Open a streaming response for `name` (for large targets). `Ok(None)` on 404/403.
    pub fn open(&self, name: &str) -> Result<Option<HttpBody>, FetchError> {
        check_name(name)?;
        let url = self.url(name);
        match self.agent.get(&url).call() {
            Ok(resp) => {
                let len = resp.header("Content-Length").and_then(|v| v.parse().ok());
                let body = SlowRetrievalGuard::new(resp.into_reader(), self.min_rate);
                Ok(Some((Box::new(body), len)))
            }
            Err(ureq::Error::Status(404 | 403 | 410, _)) => Ok(None),
            Err(ureq::Error::Status(code, _)) => Err(FetchError::Io {
                name: url,
                error: format!("HTTP status {code}"),
            }),
            Err(e) => Err(FetchError::Io {
                name: url,
                error: e.to_string(),
            }),
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

impl Fetcher for HttpFetcher {
    fn fetch(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError> {
        let Some((reader, len)) = self.open(name)? else {
            return Ok(None);
        };
        if len.is_some_and(|l| l > limit) {
            return Err(FetchError::TooLarge {
                name: self.url(name),
                limit,
            });
        }
        read_limited(reader, &self.url(name), limit).map(Some)
    }

    fn describe(&self) -> String {
        self.base.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused() {
        let f = DirFetcher::new("/nonexistent");
        for n in ["../x", "/etc/passwd", "a//b", "a/./b", "", "a\0b"] {
            assert!(
                matches!(f.fetch(n, 10), Err(FetchError::BadName(_))),
                "{n:?}"
            );
        }
        assert!(matches!(f.fetch("missing.json", 10), Ok(None)));
        // Encoded names are decoded, then checked again.
        assert!(matches!(f.fetch("1.%2E%2E%2Fx.json", 10), Ok(None)));
        assert!(matches!(f.fetch("%2E%2E", 10), Err(FetchError::BadName(_))));
        assert!(matches!(
            f.fetch("a%2F..%2Fb", 10),
            Err(FetchError::BadName(_))
        ));
        assert_eq!(
            percent_decode("1.a%20b.json").as_deref(),
            Some("1.a b.json")
        );
    }

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

    #[test]
    fn urls_are_encoded() {
        let f = HttpFetcher::new("http://127.0.0.1:1/targets").unwrap();
        assert_eq!(
            f.url("a dir/1.x#y.txt"),
            "http://127.0.0.1:1/targets/a%20dir/1.x%23y.txt"
        );
        assert!(HttpFetcher::new("ftp://x").is_err());
    }
}
