//! The small HTTP/1.1 server on `--metrics-addr HOST:PORT`: what a mount says about itself to
//! dashboards and browsers.
//!
//! | path | answer |
//! |------|--------|
//! | `/`, `/status` | the status page ([`super::page::html`]), reloading itself |
//! | `/status.json` | the same verdict for machines (`trustfs status --json` for this mount) |
//! | `/badge.svg` | a small badge for dashboards |
//! | `/metrics` | Prometheus text format ([`super::metrics::render`]) |
//!
//! The page, the JSON and the badge judge the mount with [`status::verdict`] from the status
//! record the daemon publishes — the very function and record `trustfs status` uses, so the two
//! can never disagree. `/metrics` reads the live counters.
//!
//! Hostile or slow clients: one request per connection; the request head must arrive whole
//! within [`REQUEST_DEADLINE`] and fit in [`MAX_REQUEST_HEAD`] bytes (else `408`/`431`); methods
//! other than GET and HEAD get `405`, unknown paths `404`, anything unparsable `400`, a `Host`
//! that is not this machine's `421` (DNS rebinding: a web page cannot read the status through
//! a name its author controls). At most [`MAX_CLIENTS`] connections are served at once, at most
//! [`MAX_PER_PEER`] from one address, each on its own thread; more get `503` at once from the
//! accepting thread, which never reads from or waits on a client (and backs off when accept
//! fails, e.g. out of descriptors). Nothing here takes a lock the filesystem's requests wait
//! for while talking to a client.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::status::{self, MountStatus};
use crate::schema::UtcTime;

/// Produces the live status for each `/metrics` scrape.
pub type StatusFn = Arc<dyn Fn() -> MountStatus + Send + Sync>;

/// What the server answers about.
#[derive(Clone)]
pub struct Endpoints {
    /// The live status, for `/metrics`.
    pub status: StatusFn,
    /// The mount whose status record `/`, `/status.json` and `/badge.svg` judge.
    pub mountpoint: PathBuf,
}

/// Connections served at the same time; more are answered `503` at once.
pub const MAX_CLIENTS: usize = 32;
/// Connections served at the same time from one address.
pub const MAX_PER_PEER: usize = 8;
/// The whole request head must arrive within this time.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The largest request head (request line and headers) read.
pub const MAX_REQUEST_HEAD: usize = 8192;
/// Writing the answer must finish within this time.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Serve on `addr` in a background thread. Returns the bound address.
pub fn serve(addr: &str, endpoints: Endpoints) -> std::io::Result<SocketAddr> {
    serve_on(TcpListener::bind(addr)?, endpoints)
}

/// Serve on an already bound `listener` (bind first, so a busy address fails before anything
/// else starts) in a background thread. Returns the bound address.
pub fn serve_on(listener: TcpListener, endpoints: Endpoints) -> std::io::Result<SocketAddr> {
    let local = listener.local_addr()?;
    let slots = Arc::new(Slots::default());
    std::thread::Builder::new()
        .name("trustfs-http".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(50);
            for conn in listener.incoming() {
                let stream = match conn {
                    Ok(s) => s,
                    Err(_) => {
                        // Out of descriptors (or memory): wait for some to come back instead
                        // of spinning on accept.
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                backoff = Duration::from_millis(50);
                let Some(slot) = stream.peer_addr().ok().and_then(|p| slots.take(p.ip())) else {
                    turn_away(stream);
                    continue;
                };
                let endpoints = endpoints.clone();
                // The slot goes back when the thread ends, however it ends (or if it never
                // starts: the closure is dropped with it).
                let _ = std::thread::Builder::new()
                    .name("trustfs-http-client".into())
                    .spawn(move || {
                        let _slot = slot;
                        let _ = answer(stream, &endpoints);
                    });
            }
        })?;
    Ok(local)
}

/// Connections being served: at most [`MAX_CLIENTS`], at most [`MAX_PER_PEER`] from one
/// address, so one client cannot take every slot.
#[derive(Default)]
struct Slots {
    total: AtomicUsize,
    per_peer: Mutex<HashMap<IpAddr, usize>>,
}

/// A taken slot, given back on drop.
struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
}

impl Slots {
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut per_peer = self.per_peer.lock().unwrap_or_else(|e| e.into_inner());
        let mine = per_peer.entry(peer).or_insert(0);
        if *mine >= MAX_PER_PEER || self.total.load(Ordering::Acquire) >= MAX_CLIENTS {
            if *mine == 0 {
                per_peer.remove(&peer);
            }
            return None;
        }
        *mine += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Slot {
            slots: self.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_peer = self
            .slots
            .per_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                per_peer.remove(&self.peer);
            }
        }
        self.slots.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `503` without reading anything and without ever blocking: the few bytes fit in the empty
/// send buffer of a new connection, and a client that does not take them loses them.
fn turn_away(stream: TcpStream) {
    if stream.set_nonblocking(true).is_ok() {
        let _ = (&stream).write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        );
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Take what request bytes have arrived (without waiting): closing over unread bytes
        // would reset the connection and could lose the answer.
        let mut sink = [0u8; 4096];
        let _ = (&stream).read(&mut sink);
    }
}

/// An answer: status line, content type, extra headers, body (not sent for HEAD).
struct Response {
    status: &'static str,
    content_type: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn with(mut self, name: &'static str, value: &'static str) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// Why a request head could not be read.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// Longer than [`MAX_REQUEST_HEAD`].
    TooLarge,
    /// Not complete within [`REQUEST_DEADLINE`].
    Timeout,
    /// The client closed or the connection failed: nobody to answer.
    Gone,
}

/// Read the request head (up to the blank line) within `deadline`.
fn read_head(stream: &mut impl ReadWithTimeout, deadline: Instant) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(HeadError::Timeout)?;
        stream.timeout(left).map_err(|_| HeadError::Gone)?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(HeadError::Timeout)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(HeadError::Gone),
        };
        // Look for the end only where the new bytes could complete it.
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find_blank_line(&head[from..]) {
            head.truncate(from + end);
            if head.len() > MAX_REQUEST_HEAD {
                return Err(HeadError::TooLarge);
            }
            return Ok(head);
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Where the head ends (`\r\n\r\n`, or `\n\n` from lenient clients), as the offset after it.
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        if bytes[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if bytes[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// A reader whose read timeout can be set (a TCP stream; a fake in unit tests).
trait ReadWithTimeout: Read {
    fn timeout(&mut self, t: Duration) -> std::io::Result<()>;
}

impl ReadWithTimeout for TcpStream {
    fn timeout(&mut self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))
    }
}

/// The answer to the request `head` (request line first).
fn route(head: &[u8], endpoints: &Endpoints) -> (Response, bool) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line)
        .unwrap_or("")
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return (
            Response::text("400 Bad Request", "bad request line\n"),
            false,
        );
    };
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return (
            Response::text("400 Bad Request", "bad request line\n"),
            false,
        );
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return (
                Response::text("405 Method Not Allowed", "only GET and HEAD\n")
                    .with("Allow", "GET, HEAD"),
                false,
            )
        }
    };
    if let Some(host) = header(head, "host") {
        if !host_allowed(host) {
            return (
                Response::text(
                    "421 Misdirected Request",
                    "unknown Host: use this host's address or name\n",
                ),
                false,
            );
        }
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let now = UtcTime::now();
    let response = match path {
        "/metrics" => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            headers: Vec::new(),
            body: super::metrics::render(&(endpoints.status)(), now).into_bytes(),
        },
        "/" | "/status" | "/status.html" => Response {
            status: "200 OK",
            content_type: "text/html; charset=utf-8",
            // The page needs nothing from anywhere: no scripts, no fetches, no frames.
            headers: vec![(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            )],
            body: super::page::html(&status::verdict(&endpoints.mountpoint, now), now)
                .into_bytes(),
        },
        "/status.json" => {
            let v = status::verdict(&endpoints.mountpoint, now);
            let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
            body.push(b'\n');
            Response {
                status: "200 OK",
                content_type: "application/json",
                headers: Vec::new(),
                body,
            }
        }
        "/badge.svg" => Response {
            status: "200 OK",
            content_type: "image/svg+xml",
            headers: vec![("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")],
            body: super::page::badge(&status::verdict(&endpoints.mountpoint, now)).into_bytes(),
        },
        _ => Response::text(
            "404 Not Found",
            "not found; try / (status page), /status.json, /badge.svg or /metrics\n",
        ),
    };
    (response, head_only)
}

/// The value of header `name` in a request head (the first, trimmed), if it is UTF-8.
fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(head)
        .ok()?
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Whether a request's `Host` names this machine: an IP address, `localhost`, or this host's
/// name (with any port). A page in a browser that an attacker's DNS name was rebound to this
/// address sends the attacker's name, and is turned away (DNS rebinding).
fn host_allowed(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => {
            return rest
                .split_once(']')
                .is_some_and(|(a, _)| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || hostname().is_some_and(|h| h.eq_ignore_ascii_case(&name))
}

/// This machine's host name (`gethostname`).
fn hostname() -> Option<String> {
    crate::sys::hostname()
}

fn answer(mut stream: TcpStream, endpoints: &Endpoints) -> std::io::Result<()> {
    let (response, head_only) = match read_head(&mut stream, Instant::now() + REQUEST_DEADLINE) {
        Ok(head) => route(&head, endpoints),
        Err(HeadError::TooLarge) => (
            Response::text(
                "431 Request Header Fields Too Large",
                "request head too large\n",
            ),
            false,
        ),
        Err(HeadError::Timeout) => (
            Response::text("408 Request Timeout", "request not complete in time\n"),
            false,
        ),
        Err(HeadError::Gone) => return Ok(()),
    };
    stream.set_write_timeout(Some(WRITE_DEADLINE))?;
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nConnection: close\r\n",
        response.status,
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    for (name, value) in &response.headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&response.body);
    }
    let deadline = Instant::now() + WRITE_DEADLINE;
    let mut rest = &out[..];
    while !rest.is_empty() {
        // A reader that takes the answer a byte at a time still ends at the deadline.
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::from(ErrorKind::TimedOut))?;
        stream.set_write_timeout(Some(left))?;
        match stream.write(rest) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // End the answer cleanly (FIN). Request bytes never read (a 431's rest) may still make the
    // close a reset on some clients; the answer was sent before it.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests;
