//! Unit tests of the status server: routing, oversized heads, slow clients, connection limits,
//! host names.

use super::*;
use std::io::BufRead;

fn endpoints() -> Endpoints {
    Endpoints {
        status: Arc::new(crate::telemetry::metrics::tests::status),
        mountpoint: PathBuf::from("/nonexistent/trustfs-http-test"),
    }
}

/// Raw exchange: send `request`, read the whole answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn routes_methods_and_paths() {
    let addr = serve("127.0.0.1:0", endpoints()).unwrap();
    let metrics = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(metrics.starts_with("HTTP/1.1 200 OK"), "{metrics}");
    assert!(metrics.contains("trustfs_up 1"));
    let page = exchange(addr, b"GET /?x=1 HTTP/1.1\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("Content-Type: text/html"));
    assert!(page.contains("Content-Security-Policy: default-src 'none'"));
    // This path is no mount: the page says so, red.
    assert!(page.contains("is not a trustfs mount"), "{page}");
    assert!(page.contains("data-state=\"not-verified\""));
    let json = exchange(addr, b"GET /status.json HTTP/1.0\r\n\r\n");
    let body = json.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["verified"], false);
    let badge = exchange(addr, b"GET /badge.svg HTTP/1.1\r\n\r\n");
    assert!(badge.contains("Content-Type: image/svg+xml"), "{badge}");
    assert!(badge.contains("<svg"));
    let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    let post = exchange(addr, b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.contains("Allow: GET, HEAD"));
    for bad in [
        &b"GET /other HTTP/1.1\r\n\r\n"[..],
        b"GET /metrics/../x HTTP/1.1\r\n\r\n",
    ] {
        let r = exchange(addr, bad);
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    }
    for bad in [
        &b"GET\r\n\r\n"[..],
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\n\r\n",
        b"GET / SMTP/1.0\r\n\r\n",
        b"\xff\xfe / HTTP/1.1\r\n\r\n",
    ] {
        let r = exchange(addr, bad);
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    }
}

#[test]
fn oversized_heads_get_431() {
    let addr = serve("127.0.0.1:0", endpoints()).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    let mut request = b"GET / HTTP/1.1\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'a', MAX_REQUEST_HEAD + 10));
    // The server may close before taking everything; the answer is what counts.
    let _ = s.write_all(&request);
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 431"), "{line}");
}

/// A client that never finishes its request gets `408`, and while it (and more like it)
/// waits, other clients are answered.
#[test]
fn slow_clients_neither_block_others_nor_stay_forever() {
    let addr = serve("127.0.0.1:0", endpoints()).unwrap();
    let mut slow: Vec<TcpStream> = (0..MAX_PER_PEER - 1)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let mut answer = String::new();
    slow[0].read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// More connections from one address than [`MAX_PER_PEER`] are answered `503` at once,
/// never queued.
#[test]
fn connections_over_the_limit_get_503() {
    let addr = serve("127.0.0.1:0", endpoints()).unwrap();
    let _held: Vec<TcpStream> = (0..MAX_PER_PEER)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // The accepting thread counts the held ones in the order they arrive; a later one is
    // one too many.
    let mut extra = TcpStream::connect(addr).unwrap();
    let mut answer = String::new();
    extra.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

#[test]
fn only_this_hosts_names_are_answered() {
    for ok in [
        "127.0.0.1:9715",
        "127.0.0.1",
        "[::1]:9715",
        "[::1]",
        "localhost:9715",
        "LOCALHOST",
        "app.localhost",
        "10.1.2.3",
    ] {
        assert!(host_allowed(ok), "{ok}");
    }
    for bad in [
        "evil.example:9715",
        "evil.example",
        "127.0.0.1.evil.example",
        "[::1",
        "[evil]:1",
        "localhost.evil",
    ] {
        assert!(!host_allowed(bad), "{bad}");
    }
    if let Some(h) = hostname() {
        assert!(host_allowed(&format!("{h}:9715")));
    }
    let addr = serve("127.0.0.1:0", endpoints()).unwrap();
    let r = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: rebound.evil.example:9715\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 421"), "{r}");
    let r = exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHOST:  127.0.0.1:80 \r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

/// One address gets at most [`MAX_PER_PEER`] connections; others still get theirs.
#[test]
fn one_peer_cannot_take_every_slot() {
    let slots = Arc::new(Slots::default());
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    let held: Vec<Slot> = (0..MAX_PER_PEER).map(|_| slots.take(a).unwrap()).collect();
    assert!(slots.take(a).is_none());
    let other = slots.take(b).unwrap();
    drop(held);
    assert!(slots.take(a).is_some());
    drop(other);
    assert_eq!(slots.total.load(Ordering::Acquire), 0);
    assert!(slots.per_peer.lock().unwrap().is_empty());
}

struct Drip<'a>(&'a [u8]);
impl Read for Drip<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(buf.len()).min(3);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}
impl ReadWithTimeout for Drip<'_> {
    fn timeout(&mut self, _: Duration) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn heads_are_found_across_reads_and_cut_at_the_blank_line() {
    let far = Instant::now() + Duration::from_secs(60);
    let head = read_head(&mut Drip(b"GET / HTTP/1.1\r\nA: b\r\n\r\nBODY"), far).unwrap();
    assert_eq!(head, b"GET / HTTP/1.1\r\nA: b\r\n\r\n");
    let head = read_head(&mut Drip(b"GET / HTTP/1.0\n\n"), far).unwrap();
    assert_eq!(head, b"GET / HTTP/1.0\n\n");
    assert_eq!(
        read_head(&mut Drip(b"GET / HTTP/1.1\r\n"), far),
        Err(HeadError::Gone)
    );
    let past = Instant::now() - Duration::from_secs(1);
    assert_eq!(
        read_head(&mut Drip(b"GET / HTTP/1.1\r\n\r\n"), past),
        Err(HeadError::Timeout)
    );
}
