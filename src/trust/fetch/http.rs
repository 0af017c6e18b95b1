//! [`HttpFetcher`]: files under an HTTP(S) base URL, whole ([`HttpFetcher::open`], the
//! [`Fetcher`] interface) or as byte ranges ([`HttpFetcher::open_range`]): URLs encoded, the
//! network's proxy and credentials applied, statuses interpreted, redirects followed within the
//! origin, every body bounded.

use std::io::Read;

use ureq::unversioned::transport::DefaultConnector;

use super::describe::describe_error;
use super::guards::{no_panic, NoPanicReader, SlowRetrievalGuard, DEFAULT_MIN_BYTES_PER_WINDOW};
use super::redirect::{redirect_target, MAX_REDIRECTS};
use super::resolver::CachingResolver;
use super::{check_name, read_limited, FetchError, Fetcher, HttpOptions};
use crate::trust::net::Origin;

/// A streaming HTTP response body and its announced length, if any.
pub type HttpBody = (Box<dyn Read + Send>, Option<u64>);

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

/// Idle keep-alive connections an [`HttpFetcher`] keeps per host: the foreground opens and the
/// prefetch workers of a remote mount each reuse one (ureq's default of 3 made some of them
/// connect anew for every request).
pub const IDLE_CONNECTIONS_PER_HOST: usize = 16;

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
                crate::trust::net::redact(base)
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
                crate::trust::net::redact(&base)
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
    fn urls_are_encoded() {
        let f = HttpFetcher::new("http://127.0.0.1:1/targets").unwrap();
        assert_eq!(
            f.url("a dir/1.x#y.txt"),
            "http://127.0.0.1:1/targets/a%20dir/1.x%23y.txt"
        );
        assert!(HttpFetcher::new("ftp://x").is_err());
    }
}
