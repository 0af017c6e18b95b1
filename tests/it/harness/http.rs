//! A real HTTP/1.1 server on 127.0.0.1 for tests: serves files from a directory, counts requests,
//! and can misbehave on purpose (endless bodies, errors, redirects anywhere, dripped headers or
//! bodies, bodies cut short, lying lengths, resets, garbage) to stage a hostile mirror.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// How to answer a path.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Send `x` bytes with no Content-Length until the client hangs up.
    Endless,
    /// Answer with this status and no body.
    Status(u16),
    /// `302 Found` with this `Location`.
    Redirect(String),
    /// A status line, then one byte of a header every interval, never finishing the head.
    DripHeaders(std::time::Duration),
    /// The file's head with its true Content-Length, then one body byte every interval.
    DripBody(std::time::Duration),
    /// The file's head with its true Content-Length, then only this many body bytes, then close.
    Truncate(usize),
    /// The file's body, announced with this Content-Length (a lie), then close.
    AnnounceLength(u64),
    /// Close the connection without answering.
    Reset,
    /// `200 OK` with this body instead of the file.
    Body(Vec<u8>),
    /// The file's body in `Transfer-Encoding: chunked`, with this (meaningless) Content-Length
    /// as well if given.
    Chunked(Option<u64>),
}

pub struct HttpServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Per path; the entry under "*" applies to every path without its own.
    pub overrides: Arc<Mutex<HashMap<String, Behaviour>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Serve `root` on a free port of 127.0.0.1.
    pub fn serve(root: PathBuf) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let overrides: Arc<Mutex<HashMap<String, Behaviour>>> =
            Arc::new(Mutex::new(HashMap::new()));
        let (s, r, o) = (stop.clone(), requests.clone(), overrides.clone());
        let handle = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (root, r, o, s) = (root.clone(), r.clone(), o.clone(), s.clone());
                        thread::spawn(move || {
                            let _ = handle(stream, &root, &r, &o, &s);
                        });
                    }
                    Err(_) => thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        HttpServer {
            port,
            stop,
            requests,
            overrides,
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, path)
    }

    pub fn set(&self, path: &str, b: Behaviour) {
        self.overrides.lock().unwrap().insert(path.to_owned(), b);
    }

    /// Answer every path (without its own behaviour) with `b`.
    pub fn set_all(&self, b: Behaviour) {
        self.set("*", b);
    }

    /// Back to serving files everywhere.
    pub fn clear(&self) {
        self.overrides.lock().unwrap().clear();
    }

    /// The requests so far, one `GET /<path>` line each (for failure messages and checks).
    pub fn log(&self) -> String {
        let requests = self.requests.lock().unwrap();
        let lines: Vec<String> = requests.iter().map(|p| format!("GET /{p}\n")).collect();
        format!(
            "--- requests to 127.0.0.1:{} ---\n{}",
            self.port,
            lines.concat()
        )
    }

    /// Request counts per path.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.requests.lock().unwrap().iter() {
            *m.entry(r.clone()).or_insert(0) += 1;
        }
        m
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn handle(
    mut stream: TcpStream,
    root: &std::path::Path,
    requests: &Mutex<Vec<String>>,
    overrides: &Mutex<HashMap<String, Behaviour>>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_owned();
    let path = percent_decode(&path);
    requests.lock().unwrap().push(path.clone());
    let behaviour = {
        let o = overrides.lock().unwrap();
        o.get(&path).or_else(|| o.get("*")).cloned()
    };
    let file = root.join(&path);
    let file_body = || -> Option<Vec<u8>> {
        if path.split('/').any(|c| c == "..") || !file.is_file() {
            None
        } else {
            std::fs::read(&file).ok()
        }
    };
    let drip = |stream: &mut TcpStream, bytes: &[u8], every: std::time::Duration| {
        for b in bytes.iter().cycle() {
            if stop.load(Ordering::SeqCst) || stream.write_all(&[*b]).is_err() {
                break;
            }
            thread::sleep(every);
        }
    };
    match behaviour {
        Some(Behaviour::Redirect(location)) => write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Some(Behaviour::DripHeaders(every)) => {
            stream.write_all(b"HTTP/1.1 200 OK\r\n")?;
            drip(&mut stream, b"X-Drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", every);
            Ok(())
        }
        Some(Behaviour::DripBody(every)) => {
            let body = file_body().unwrap_or_else(|| vec![b'x'; 1 << 20]);
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            drip(&mut stream, &body, every);
            Ok(())
        }
        Some(Behaviour::Truncate(n)) => {
            let body = file_body().unwrap_or_default();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body[..n.min(body.len())])
        }
        Some(Behaviour::AnnounceLength(len)) => {
            let body = file_body().unwrap_or_default();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            )?;
            stream.write_all(&body)
        }
        Some(Behaviour::Reset) => Ok(()),
        Some(Behaviour::Body(body)) => ok_with_body(&mut stream, &body),
        Some(Behaviour::Chunked(announce)) => {
            let body = file_body().unwrap_or_default();
            let cl = announce.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
            write!(
                stream,
                "HTTP/1.1 200 OK\r\n{cl}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )?;
            for chunk in body.chunks(1000) {
                write!(stream, "{:x}\r\n", chunk.len())?;
                stream.write_all(chunk)?;
                stream.write_all(b"\r\n")?;
            }
            stream.write_all(b"0\r\n\r\n")
        }
        Some(Behaviour::Endless) => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let chunk = vec![b'x'; 64 * 1024];
            // Stops when the client hangs up (write error) or the server stops.
            while !stop.load(Ordering::SeqCst) {
                stream.write_all(&chunk)?;
            }
            Ok(())
        }
        Some(Behaviour::Status(code)) => {
            write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        }
        None => match file_body() {
            Some(body) => ok_with_body(&mut stream, &body),
            None => stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            ),
        },
    }
}

/// `200 OK` with `body` and its true length.
fn ok_with_body(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
