//! A real nginx on 127.0.0.1 for tests: a minimal `nginx.conf` in a temp dir, a free port, the
//! server in the foreground (`daemon off; master_process off;`, one process), killed on drop.
//! Fails with a clear message when nginx is missing; never skips.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx serving `root`. Stop it with [`Nginx::stop`] (server down) and bring it back
/// on the same port with [`Nginx::start_again`].
pub struct Nginx {
    pub port: u16,
    pub prefix: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
    /// `http` or `https` ([`Nginx::start_tls`]).
    pub scheme: &'static str,
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port on 127.0.0.1")
}

impl Nginx {
    /// Serve `root` (e.g. a repository with `metadata/` and `targets/`).
    pub fn start(root: &Path) -> Nginx {
        Self::start_with(root, "")
    }

    /// Serve `root`, with `server_extra` added inside the `server { }` block (e.g. a
    /// `location /targets/ { limit_rate 4m; }`).
    pub fn start_with(root: &Path, server_extra: &str) -> Nginx {
        Self::start_listening(root, "", server_extra)
    }

    /// Serve `root` over TLS with the PEM certificate (chain) and key given, plus
    /// `server_extra` (e.g. `ssl_verify_client on;`). URLs are then `https://127.0.0.1:PORT/`.
    pub fn start_tls(root: &Path, cert: &Path, key: &Path, server_extra: &str) -> Nginx {
        let tls = format!(
            "ssl_certificate {};\n    ssl_certificate_key {};\n    {server_extra}",
            cert.display(),
            key.display()
        );
        let mut n = Self::start_listening(root, " ssl", &tls);
        n.scheme = "https";
        n
    }

    /// Write a new `server_extra` (TLS settings kept) and restart on the same port.
    pub fn reconfigure(&mut self, server_extra: &str) {
        let conf = std::fs::read_to_string(&self.conf).unwrap();
        let (head, _) = conf.split_once("# extra:begin").unwrap();
        let (_, tail) = conf.split_once("# extra:end").unwrap();
        let tls: String = conf
            .lines()
            .filter(|l| l.trim_start().starts_with("ssl_certificate"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(
            &self.conf,
            format!("{head}# extra:begin\n{tls}    {server_extra}\n    # extra:end{tail}"),
        )
        .unwrap();
        self.start_again();
    }

    fn start_listening(root: &Path, listen_suffix: &str, server_extra: &str) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "these tests need nginx at {NGINX} (apt-get install -y nginx-light, or run .ci/run)"
        );
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let prefix =
                std::env::temp_dir().join(format!("trustfs-nginx-{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&prefix);
            std::fs::create_dir_all(prefix.join("logs")).unwrap();
            let conf = prefix.join("nginx.conf");
            let p = prefix.display();
            std::fs::write(
                &conf,
                format!(
                    "daemon off;\n\
                     master_process off;\n\
                     worker_processes 1;\n\
                     pid {p}/nginx.pid;\n\
                     error_log {p}/error.log;\n\
                     events {{ worker_connections 256; }}\n\
                     http {{\n\
                     \x20 default_type application/octet-stream;\n\
                     \x20 log_format t '$request_method $uri $status $body_bytes_sent';\n\
                     \x20 access_log {p}/access.log t;\n\
                     \x20 client_body_temp_path {p}/body;\n\
                     \x20 proxy_temp_path {p}/proxy;\n\
                     \x20 fastcgi_temp_path {p}/fastcgi;\n\
                     \x20 uwsgi_temp_path {p}/uwsgi;\n\
                     \x20 scgi_temp_path {p}/scgi;\n\
                     \x20 sendfile on;\n\
                     \x20 server {{\n\
                     \x20   listen 127.0.0.1:{port}{listen_suffix};\n\
                     \x20   root {root};\n\
                     \x20   # extra:begin\n\
                     \x20   {server_extra}\n\
                     \x20   # extra:end\n\
                     \x20 }}\n\
                     }}\n",
                    root = root.display()
                ),
            )
            .unwrap();
            let mut n = Nginx {
                port,
                prefix,
                conf,
                child: None,
                scheme: "http",
            };
            match n.spawn() {
                Ok(()) => return n,
                Err(e) => last_err = e,
            }
        }
        panic!("nginx did not start: {last_err}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(NGINX)
            .arg("-c")
            .arg(&self.conf)
            .arg("-p")
            .arg(&self.prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {NGINX}: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    let log =
                        std::fs::read_to_string(self.prefix.join("error.log")).unwrap_or_default();
                    return Err(format!("nginx exited with {st}: {log}"));
                }
            }
            if Instant::now() > deadline {
                self.stop();
                return Err("nginx did not answer within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill nginx (the server goes down; the port stays reserved for [`Nginx::start_again`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the same server again on the same port.
    pub fn start_again(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("nginx did not come back: {e}");
        }
    }

    /// `http://127.0.0.1:PORT/<path>` (`https://` for [`Nginx::start_tls`]).
    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}/{path}", self.scheme, self.port)
    }

    /// Access log lines: `METHOD URI STATUS BYTES`.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.prefix.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Number of GET requests for URIs ending in `suffix`, once the access log has settled (no
    /// new line for 100 ms, at most 3 s): nginx writes a request's line after sending the
    /// response, which the daemon may already have read and acted on.
    pub fn gets(&self, suffix: &str) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let mut log = self.access_log();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = self.access_log();
            if now.len() == log.len() || std::time::Instant::now() > deadline {
                log = now;
                break;
            }
            log = now;
        }
        log.iter()
            .filter(|l| {
                let mut f = l.split(' ');
                f.next() == Some("GET") && f.next().is_some_and(|u| u.ends_with(suffix))
            })
            .count()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}
