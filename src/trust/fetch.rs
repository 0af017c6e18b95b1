//! One fetch interface for metadata and targets: a local directory or an HTTP(S) base URL.
//!
//! Every fetch has a byte limit; a source that sends more is cut off and the fetch fails
//! (the endless-data attack). "Not found" is its own answer, distinct from a failure, because the
//! root rotation walk stops at the first missing `N.root.json`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::net::{Network, Origin};

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
    fn is_local(&self) -> bool {
        true
    }

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
pub type HttpBody = (Box<dyn Read + Send>, Option<u64>);

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
/// - and at least [`DEFAULT_MIN_BYTES_PER_WINDOW`] in every [`RATE_WINDOW`] ([`SlowRetrievalGuard`]).
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

/// Redirects followed per request, each only to the same scheme, host and port.
pub const MAX_REDIRECTS: usize = 5;

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

/// Files under an HTTP(S) base URL. Redirects are followed only within the base's origin (same
/// scheme, host and port), at most [`MAX_REDIRECTS`]; every request has the deadlines of
/// [`HttpOptions`]; a panic in the HTTP stack is turned into an error at this boundary.
pub struct HttpFetcher {
    base: String,
    origin: Origin,
    agent: ureq::Agent,
    resolver: CachingResolver,
    options: HttpOptions,
    min_rate: u64,
}

/// How long a host name's addresses are reused without asking the resolver again.
pub const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// Idle keep-alive connections an [`HttpFetcher`] keeps per host: the foreground opens and the
/// prefetch workers of a remote mount each reuse one (ureq's default of 3 made some of them
/// connect anew for every request).
pub const IDLE_CONNECTIONS_PER_HOST: usize = 16;

/// The addresses of the last host resolved, reused for [`RESOLVE_TTL`].
///
/// ureq resolves the host before every request, also when a pooled keep-alive connection is
/// then used, and with a resolve deadline set (as here) it spawns a thread for each lookup: a
/// thread per small file fetched. This resolver asks ureq's own resolver (deadline and all) only
/// when the cached entry is for another host or older than [`RESOLVE_TTL`], and forgets it when
/// a request fails, so a host that moved is looked up again at the next request.
#[derive(Clone, Debug, Default)]
struct CachingResolver {
    last: Arc<Mutex<Option<(String, ResolvedSocketAddrs, Instant)>>>,
}

impl CachingResolver {
    fn forget(&self) {
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

/// Where a redirect from `current` to `location` leads, if it stays within `origin`.
fn redirect_target(origin: &Origin, current: &str, location: &str) -> Result<String, String> {
    let location = location.trim();
    if location.is_empty() {
        return Err("a redirect without a Location".into());
    }
    if location.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "a redirect to {location:?}: the location has control characters"
        ));
    }
    // Absolute only with a scheme in front (`/a?next=https://x` is a path on this origin).
    let has_scheme = location.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let absolute = if has_scheme {
        location.to_owned()
    } else if location.starts_with("//") {
        format!("{}:{location}", origin.scheme)
    } else if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        // Relative to the current URL's directory.
        let cut = current.split(['?', '#']).next().unwrap_or(current);
        match cut.rfind('/') {
            Some(i) => format!("{}{location}", &cut[..=i]),
            None => return Err(format!("a redirect to {location:?} cannot be resolved")),
        }
    };
    let leaves = |to: &dyn fmt::Display| {
        Err(format!(
            "a redirect to {absolute:?} leaves the mirror's origin {origin} (for {to}); not followed"
        ))
    };
    let scheme = absolute.split("://").next().unwrap_or("");
    if !scheme.eq_ignore_ascii_case(&origin.scheme) {
        return leaves(&format_args!("the scheme {scheme:?}"));
    }
    match Origin::of(&absolute) {
        Ok(o) if &o == origin => Ok(absolute),
        Ok(o) => leaves(&o),
        Err(e) => Err(format!("a redirect to {location:?} refused: {e}")),
    }
}

/// Run `f`, turning a panic into an error: a bug in the HTTP stack must cost one request, never a
/// FUSE worker or the refresh thread. The last line of defence, not the fix.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
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
struct NoPanicReader<R>(R);

impl<R: Read> Read for NoPanicReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match no_panic("a body read", || self.0.read(buf)) {
            Ok(r) => r,
            Err(msg) => Err(io::Error::other(msg)),
        }
    }
}

impl HttpFetcher {
    /// `base` is a URL such as `https://example.com/metadata/` (a trailing `/` is added if
    /// missing), with the default deadlines.
    pub fn new(base: &str) -> Result<Self, String> {
        Self::with_options(base, HttpOptions::default())
    }

    /// As [`Self::new`], with the given deadlines.
    pub fn with_options(base: &str, options: HttpOptions) -> Result<Self, String> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "{:?} is not an http:// or https:// URL",
                super::net::redact(base)
            ));
        }
        let mut base = base.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        // Before parsing: a parse error would repeat the URL, credentials and all.
        if base
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
            .is_some_and(|authority| authority.contains('@'))
        {
            // They would be logged, published in the status record and shown on the status page.
            return Err(format!(
                "{}: credentials in a URL are not accepted (they would end up in logs and status); use --auth-file or --netrc",
                super::net::redact(&base)
            ));
        }
        let origin = Origin::of(&base)?;
        let t = Some(options.io_timeout);
        let net = &options.network;
        let mut config = ureq::Agent::config_builder();
        if origin.scheme == "https" {
            config = config.tls_config(net.tls().0.clone());
        }
        let config = config
            // Always set: ureq would otherwise read its own (not curl's) proxy variables.
            .proxy(net.proxy_for(&origin))
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_resolve(t)
            .timeout_connect(t)
            .timeout_send_request(t)
            .timeout_recv_response(t)
            .timeout_per_read(t)
            .timeout_per_write(t)
            .max_idle_connections(IDLE_CONNECTIONS_PER_HOST * 2)
            .max_idle_connections_per_host(IDLE_CONNECTIONS_PER_HOST)
            .user_agent(concat!("trustfs/", env!("CARGO_PKG_VERSION")))
            .build();
        let resolver = CachingResolver::default();
        let agent = ureq::Agent::with_parts(config, DefaultConnector::default(), resolver.clone());
        Ok(HttpFetcher {
            base,
            origin,
            agent,
            resolver,
            options,
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

    /// Open a streaming response for `name`, whose body is expected to be about `expected`
    /// bytes (it sets the body deadline). `Ok(None)` on 404/403/410.
    pub fn open(&self, name: &str, expected: u64) -> Result<Option<HttpBody>, FetchError> {
        self.request(name, expected, None)
    }

    /// Open bytes `start .. start + len` of `name` (an HTTP range request; `len` > 0). The answer
    /// must be `206 Partial Content` with exactly `Content-Range: bytes start-end/TOTAL` (and, if
    /// announced, a Content-Length of `len`); a server that ignores the range (`200`), answers
    /// another one, or no range, is an error (the caller tries the next mirror). The body is
    /// limited to `len` bytes; the caller checks it got them all. `Ok(None)` on 404/403/410.
    pub fn open_range(
        &self,
        name: &str,
        start: u64,
        len: u64,
    ) -> Result<Option<Box<dyn Read + Send>>, FetchError> {
        let end = start
            .checked_add(len)
            .and_then(|e| e.checked_sub(1))
            .filter(|_| len > 0)
            .ok_or_else(|| FetchError::Io {
                name: name.to_owned(),
                error: format!("no such range: {len} bytes from {start}"),
            })?;
        Ok(self
            .request(name, len, Some((start, end)))?
            .map(|(body, _)| Box::new(body.take(len)) as Box<dyn Read + Send>))
    }

    fn request(
        &self,
        name: &str,
        expected: u64,
        range: Option<(u64, u64)>,
    ) -> Result<Option<HttpBody>, FetchError> {
        check_name(name)?;
        let first = self.url(name);
        let io_err = |url: &str, error: String| FetchError::Io {
            name: url.to_owned(),
            error,
        };
        let mut url = first.clone();
        let mut seen = vec![url.clone()];
        loop {
            let deadline = self.options.body_deadline(expected);
            // Credentials only for this fetcher's own origin: a redirect never leaves it.
            let credentials = self.options.network.headers_for(&self.origin);
            let resp = no_panic("a request", || {
                let mut request = self.agent.get(&url);
                for (name, value) in &credentials {
                    request = request.header(name.as_str(), value.as_str());
                }
                if let Some((start, end)) = range {
                    request = request.header("range", format!("bytes={start}-{end}"));
                }
                request
                    .config()
                    .timeout_recv_body(Some(deadline))
                    .build()
                    .call()
            })
            .map_err(|e| io_err(&url, e))?
            .map_err(|e| {
                if let ureq::Error::Io(io) = &e {
                    if matches!(io.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                        return FetchError::Descriptors {
                            name: url.clone(),
                            error: io.to_string(),
                        };
                    }
                }
                // The host may have moved: look it up again next time.
                self.resolver.forget();
                io_err(&url, describe_error(&e, &self.options, &self.origin))
            })?;
            let status = resp.status().as_u16();
            match (status, range) {
                (206, Some((start, end))) => {
                    let headers = resp.headers();
                    let got = headers
                        .get("content-range")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    if parse_content_range(got) != Some((start, end)) {
                        return Err(io_err(
                            &url,
                            format!("asked for bytes {start}-{end}, the answer is for {got:?}"),
                        ));
                    }
                    let len = headers
                        .get("content-length")
                        .filter(|_| !headers.contains_key("transfer-encoding"))
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    if len.is_some_and(|n| n != end - start + 1) {
                        return Err(io_err(
                            &url,
                            format!(
                                "a range of {} bytes announced as {} bytes",
                                end - start + 1,
                                len.unwrap_or(0)
                            ),
                        ));
                    }
                    let reader = resp.into_body().into_with_config().reader();
                    let body = SlowRetrievalGuard::new(NoPanicReader(reader), self.min_rate);
                    return Ok(Some((Box::new(body), len)));
                }
                (200, Some(_)) => {
                    return Err(io_err(
                        &url,
                        format!("HTTP status {status}: the server ignores byte ranges"),
                    ))
                }
                (200, None) => {
                    // With a Transfer-Encoding, Content-Length means nothing (RFC 9112 §6.3):
                    // the body's framing and the hash decide.
                    let headers = resp.headers();
                    let len = headers
                        .get("content-length")
                        .filter(|_| !headers.contains_key("transfer-encoding"))
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok());
                    let reader = resp.into_body().into_with_config().reader();
                    let body = SlowRetrievalGuard::new(NoPanicReader(reader), self.min_rate);
                    return Ok(Some((Box::new(body), len)));
                }
                (404 | 403 | 410, _) => return Ok(None),
                (301 | 302 | 303 | 307 | 308, _) => {
                    let location = resp
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let next = redirect_target(&self.origin, &url, location)
                        .map_err(|e| io_err(&first, e))?;
                    if seen.contains(&next) {
                        return Err(io_err(
                            &first,
                            format!("redirect loop ({} -> {next})", seen.join(" -> ")),
                        ));
                    }
                    if seen.len() > MAX_REDIRECTS {
                        return Err(io_err(
                            &first,
                            format!("more than {MAX_REDIRECTS} redirects"),
                        ));
                    }
                    seen.push(next.clone());
                    url = next;
                }
                (401, _) => {
                    let hint = if credentials.is_empty() {
                        "the mirror wants credentials: give --auth-file or --netrc"
                    } else {
                        "the mirror refused the credentials sent"
                    };
                    return Err(io_err(&url, format!("HTTP status 401 ({hint})")));
                }
                (400, _)
                    if self.origin.scheme == "https"
                        && resp
                            .headers()
                            .get("content-type")
                            .is_some_and(|v| v.as_bytes().starts_with(b"text/html")) =>
                {
                    // nginx answers a missing or refused client certificate with a 400 page.
                    return Err(io_err(
                        &url,
                        "HTTP status 400 (if this mirror requires a client certificate: --client-cert and --client-key)".into(),
                    ));
                }
                (code, _) => return Err(io_err(&url, format!("HTTP status {code}"))),
            }
        }
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) → (START, END), END ≥ START.
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, _total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
    (b >= a).then_some((a, b))
}

/// A readable reason for a failed request.
fn describe_error(e: &ureq::Error, options: &HttpOptions, origin: &Origin) -> String {
    let tls = match e {
        ureq::Error::Rustls(t) => Some(t),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    if let Some(t) = tls {
        return describe_tls_error(t, origin);
    }
    match e {
        ureq::Error::Timeout(t) => format!(
            "no answer in time ({t:?} deadline; --http-timeout is {} s)",
            options.io_timeout.as_secs()
        ),
        ureq::Error::ConnectProxyFailed(why) => format!(
            "the proxy {} refused the tunnel to {}:{}: {why}",
            options
                .network
                .proxy_note(origin)
                .unwrap_or_else(|| "?".into()),
            origin.host,
            origin.port
        ),
        other => other.to_string(),
    }
}

/// A TLS failure in words, naming the host: mostly, why its certificate was refused.
fn describe_tls_error(e: &rustls::Error, origin: &Origin) -> String {
    use rustls::{AlertDescription, CertificateError};
    let host = format!("{}:{}", origin.host, origin.port);
    let why = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "its issuer is not a trusted CA (not in the system trust store, and no --ca-cert for it)".to_owned(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "it has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "it is not valid yet (check the clock)".to_owned()
            }
            CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. } => {
                format!("it is not valid for the name {:?}", origin.host)
            }
            CertificateError::Revoked => "it has been revoked".to_owned(),
            CertificateError::BadSignature => "its signature is invalid".to_owned(),
            other => format!("{other:?}"),
        },
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired)
        | rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
        | rustls::Error::AlertReceived(AlertDescription::BadCertificate) => {
            return format!(
                "TLS with {host} failed: the server refused the connection ({e}); if it requires a client certificate, give --client-cert and --client-key"
            );
        }
        other => return format!("TLS with {host} failed: {other}"),
    };
    format!("TLS: the certificate of {host} was refused: {why}")
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
        let Some((reader, len)) = self.open(name, limit)? else {
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

    /// A one-shot HTTP server on 127.0.0.1 answering each connection with the next canned
    /// response; returns its base URL and the request heads it saw.
    fn canned(answers: Vec<Vec<u8>>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/", l.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut s, _)) = l.accept() else { return };
                let mut head = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                log.lock().unwrap().push(head);
                let _ = s.write_all(&answer);
            }
        });
        (base, seen)
    }

    fn answer(status: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
        let mut a = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
        for h in headers {
            a.push_str(h);
            a.push_str("\r\n");
        }
        a.push_str("\r\n");
        let mut a = a.into_bytes();
        a.extend_from_slice(body);
        a
    }

    #[test]
    fn range_requests_take_only_the_exact_range() {
        let body = b"0123456789";
        let good = answer(
            "206 Partial Content",
            &["content-range: bytes 100-109/1000", "content-length: 10"],
            body,
        );
        let ignored = answer("200 OK", &["content-length: 1000"], &[b'x'; 1000]);
        let shifted = answer(
            "206 Partial Content",
            &["content-range: bytes 101-110/1000", "content-length: 10"],
            body,
        );
        let no_range = answer("206 Partial Content", &["content-length: 10"], body);
        let long = answer(
            "206 Partial Content",
            &["content-range: bytes 100-109/1000", "content-length: 11"],
            b"0123456789X",
        );
        let short = answer(
            "206 Partial Content",
            &["content-range: bytes 100-109/1000"],
            b"01234",
        );
        let (base, seen) = canned(vec![good, ignored, shifted, no_range, long, short]);
        let f = HttpFetcher::new(&base).unwrap();
        let mut got = Vec::new();
        f.open_range("t", 100, 10)
            .unwrap()
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, body);
        assert!(
            seen.lock().unwrap()[0].contains("range: bytes=100-109"),
            "{seen:?}"
        );
        for what in [
            "ignores byte ranges",
            "the answer is for \"bytes 101-110",
            "the answer is for \"\"",
            "announced as 11",
        ] {
            let e = f.open_range("t", 100, 10).err().unwrap().to_string();
            assert!(e.contains(what), "{what}: {e}");
        }
        // A body cut short: fewer bytes than the range (the caller sees and refuses it).
        let mut got = Vec::new();
        let r = f
            .open_range("t", 100, 10)
            .unwrap()
            .unwrap()
            .read_to_end(&mut got);
        assert!(r.is_err() || got.len() < 10, "{got:?}");
        assert!(f.open_range("t", u64::MAX, 2).is_err());
        assert!(f.open_range("t", 0, 0).is_err());
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0)));
        assert_eq!(parse_content_range("bytes 5-4/9"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn a_url_in_a_redirects_query_is_no_scheme_change() {
        let origin = Origin::of("https://m.example/").unwrap();
        assert_eq!(
            redirect_target(&origin, "https://m.example/a/b", "/x?next=https://y").unwrap(),
            "https://m.example:443/x?next=https://y"
        );
        assert!(redirect_target(&origin, "https://m.example/a", "http://m.example/").is_err());
        assert!(redirect_target(&origin, "https://m.example/a", "HTTPS://evil.example/").is_err());
    }

    #[test]
    fn credentials_in_urls_are_refused_without_being_repeated() {
        let e = HttpFetcher::new("https://alice:s3cret@mirror.example/metadata")
            .err()
            .unwrap();
        assert!(
            e.contains("credentials in a URL") && !e.contains("s3cret"),
            "{e}"
        );
        assert!(e.contains("https://***@mirror.example/metadata"), "{e}");
        let e = HttpFetcher::new("https://u:p ss/w@mirror.example/")
            .err()
            .unwrap();
        assert!(!e.contains("p ss"), "{e}");
        // An @ later in the path is no userinfo.
        assert!(HttpFetcher::new("https://mirror.example/a@b/").is_ok());
    }

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
    fn redirects_stay_within_the_origin() {
        let o = Origin::of("http://127.0.0.1:8080/targets/").unwrap();
        let cur = "http://127.0.0.1:8080/targets/a/b.txt";
        assert_eq!(
            redirect_target(&o, cur, "/other/b.txt").unwrap(),
            "http://127.0.0.1:8080/other/b.txt"
        );
        assert_eq!(
            redirect_target(&o, cur, "c.txt").unwrap(),
            "http://127.0.0.1:8080/targets/a/c.txt"
        );
        assert_eq!(
            redirect_target(&o, cur, "HTTP://127.0.0.1:8080/x").unwrap(),
            "HTTP://127.0.0.1:8080/x"
        );
        for bad in [
            "file:///etc/passwd",
            "https://127.0.0.1:8080/x",
            "http://127.0.0.1:8081/x",
            "http://evil.example/x",
            "//evil.example/x",
            "gopher://127.0.0.1:8080/x",
        ] {
            let e = redirect_target(&o, cur, bad).unwrap_err();
            assert!(e.contains("leaves the mirror's origin"), "{bad}: {e}");
        }
        assert!(redirect_target(&o, cur, "").is_err());
        assert!(redirect_target(&o, cur, "/a\nb").is_err());
        // The default port is the same origin as no port.
        let o80 = Origin::of("http://h/t/").unwrap();
        assert!(redirect_target(&o80, "http://h/t/x", "http://h:80/y").is_ok());
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
