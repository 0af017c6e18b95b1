//! A real HTTP/1.1 server on 127.0.0.1 for tests: serves files from a directory, counts requests,
//! and can misbehave on purpose (endless bodies, errors) to stage network attacks.

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
    /// Send this many bytes of `x` with no Content-Length, then close (endless if huge).
    Endless,
    /// Answer with this status and no body.
    Status(u16),
}

pub struct HttpServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub requests: Arc<Mutex<Vec<String>>>,
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
    let behaviour = overrides.lock().unwrap().get(&path).cloned();
    match behaviour {
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
        None => {
            let file = root.join(&path);
            if path.split('/').any(|c| c == "..") || !file.is_file() {
                return stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
            let body = std::fs::read(file)?;
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)
        }
    }
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
