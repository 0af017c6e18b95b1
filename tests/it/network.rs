//! Real networks between a remote mount and its mirrors, everything on 127.0.0.1: nginx over TLS
//! with a CA made here (refused without it, served with `--ca-cert` and with the CA in a
//! system-style trust directory), nginx demanding a bearer token or basic auth (`--auth-file`,
//! `--netrc-file`; the secret never in the log, the audit or the status record), a mirror
//! demanding a client certificate, and a CONNECT proxy (`HTTPS_PROXY` with credentials,
//! `NO_PROXY`, a proxy that refuses). Bad input: private-file checks, a CA file that is not PEM.
//! Needs root, /dev/fuse, nginx and openssl; fails, never skips.

use crate::harness::cli;
use crate::harness::nginx;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use cli::{errno_of, wait_for, World};
use nginx::Nginx;

const SECRET_TOKEN: &str = "s3cr3t-t0ken-for-the-mirror";
const SECRET_PASSWORD: &str = "n3trc-pa55word";

fn world(tag: &str) -> World {
    World::new(
        tag,
        &[
            ("hello.txt", b"hello over a real network\n"),
            ("sub/data.bin", &[9u8; 5000]),
            ("sub/more.txt", b"fetched later\n"),
        ],
        &[],
    )
}

/// Run `openssl ARGS` in `dir`; panics with its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("these tests need the openssl command (apt-get install openssl, or run .ci/run)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA made for the test, a server certificate for 127.0.0.1 and a client certificate it signed.
struct Pki {
    dir: PathBuf,
}

/// `openssl req` options for a new, unencrypted P-256 key.
const NEW_P256_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

impl Pki {
    /// nginx over TLS serving `repo` with this PKI's server certificate, `server_extra` added to
    /// its `server` block.
    fn nginx(&self, repo: &Path, server_extra: &str) -> Nginx {
        Nginx::start_tls(
            repo,
            &self.dir.join("server.pem"),
            &self.dir.join("server.key"),
            server_extra,
        )
    }

    /// A CA, a server certificate for 127.0.0.1 and a client certificate, in `<dir>/pki`.
    fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                &["req", "-x509"][..],
                &NEW_P256_KEY,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=trustfs test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        for (name, cn, ext) in [
            (
                "server",
                "127.0.0.1",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "trustfs-client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(
                dir.join(format!("{name}.ext")),
                format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
            )
            .unwrap();
            let (key, csr, subj) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("/CN={cn}"),
            );
            let args = [
                &["req"][..],
                &NEW_P256_KEY,
                &["-keyout", &key, "-out", &csr, "-subj", &subj],
            ];
            openssl(&dir, &args.concat());
            openssl(
                &dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &format!("{name}.pem"),
                    "-extfile",
                    &format!("{name}.ext"),
                ],
            );
        }
        std::fs::set_permissions(
            dir.join("client.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// `--metadata-url`/`--targets-url` of `server` and the world's cache, plus `extra`.
fn remote_args(w: &World, server: &Nginx, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--metadata-url".into(),
        server.url("metadata"),
        "--targets-url".into(),
        server.url("targets"),
        "--cache".into(),
        w.cache().display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// [`remote_args`] with the test CA, a client certificate and `key`.
fn mtls_args(w: &World, server: &Nginx, ca: &str, cert: &str, key: &str) -> Vec<String> {
    remote_args(
        w,
        server,
        &["--ca-cert", ca, "--client-cert", cert, "--client-key", key],
    )
}

/// Forget everything a previous mount of `w` kept (trusted metadata, cached files), so the next
/// one must reach the server for all of it.
fn forget(w: &World) {
    let _ = std::fs::remove_dir_all(&w.state);
    let _ = std::fs::remove_dir_all(w.cache());
}

fn assert_serves(w: &World) {
    assert_eq!(
        std::fs::read(w.at("hello.txt")).unwrap(),
        b"hello over a real network\n"
    );
    assert_eq!(
        std::fs::read(w.at("sub/data.bin")).unwrap(),
        vec![9u8; 5000]
    );
}

/// `trustfs mount` with `args` must exit before mounting, with `code`, and its stderr must say
/// each of `wants`.
/// [`assert_refused`] of a remote mount of `server` trusting the CA `ca` (exit 2).
fn assert_refused_with_ca(w: &World, server: &Nginx, ca: &str, wants: &[&str]) -> String {
    assert_refused(w, &remote_args(w, server, &["--ca-cert", ca]), 2, wants)
}

fn assert_refused(w: &World, args: &[String], code: i32, wants: &[&str]) -> String {
    match w.mount_with(args) {
        Ok(d) => panic!("mounted, but should not have: {}", d.log()),
        Err((c, log)) => {
            assert_eq!(c, code, "{log}");
            for want in wants {
                assert!(log.contains(want), "{want:?} missing:\n{log}");
            }
            log
        }
    }
}

#[test]
fn private_ca_refused_without_it_served_with_ca_cert_and_from_a_system_style_trust_dir() {
    let w = world("net-ca");
    let pki = Pki::new(&w.dir);
    let server = pki.nginx(&w.repo, "");
    let host = format!("127.0.0.1:{}", server.port);
    // Unknown CA: refused, naming the host and the reason.
    let log = assert_refused(
        &w,
        &remote_args(&w, &server, &[]),
        2,
        &[
            &format!("TLS: the certificate of {host} was refused: its issuer is not a trusted CA"),
            "--ca-cert",
        ],
    );
    assert!(log.contains("TLS with"), "{log}");

    // --ca-cert: served.
    forget(&w);
    let d = w
        .mount_with(&remote_args(
            &w,
            &server,
            &["--ca-cert", &pki.path("ca.pem")],
        ))
        .unwrap();
    assert_serves(&w);
    let log = d.stop();
    assert!(
        log.contains("CA certificates from the system trust store, 1 from --ca-cert"),
        "{log}"
    );

    // The CA in a trust directory, as update-ca-certificates or `openssl rehash` leave it
    // (SSL_CERT_DIR points there, as it may for openssl and curl): served without --ca-cert.
    forget(&w);
    let trust_dir = w.dir.join("trust-dir");
    std::fs::create_dir_all(&trust_dir).unwrap();
    std::fs::copy(
        pki.dir.join("ca.pem"),
        trust_dir.join("trustfs-test-ca.pem"),
    )
    .unwrap();
    let d = w
        .mount_with_env(
            &remote_args(&w, &server, &[]),
            &[("SSL_CERT_DIR", trust_dir.to_str().unwrap())],
        )
        .unwrap();
    assert_serves(&w);
    let log = d.stop();
    assert!(
        log.contains("CA certificates from the system trust store") && !log.contains("--ca-cert"),
        "{log}"
    );

    // A CA file that is not PEM: a usage error, nothing mounted.
    let not_pem = w.dir.join("not-a-ca.txt");
    std::fs::write(&not_pem, "hello\n").unwrap();
    assert_refused(
        &w,
        &remote_args(&w, &server, &["--ca-cert", not_pem.to_str().unwrap()]),
        64,
        &["--ca-cert", "no PEM certificate"],
    );
}

/// Whether any file the daemon writes for people (log, audit, status record) holds `secret`.
fn leaks(w: &World, log: &str, secret: &str) -> Option<String> {
    if log.contains(secret) {
        return Some("the daemon log".into());
    }
    for path in [w.audit.clone(), w.runtime.clone()] {
        let files: Vec<PathBuf> = if path.is_dir() {
            std::fs::read_dir(&path)
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default()
        } else {
            vec![path]
        };
        for f in files {
            if std::fs::read(&f).is_ok_and(|b| String::from_utf8_lossy(&b).contains(secret)) {
                return Some(f.display().to_string());
            }
        }
    }
    None
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn bearer_token_from_an_auth_file_401_without_served_with_rotated_and_never_logged() {
    let w = world("net-bearer");
    let pki = Pki::new(&w.dir);
    let require =
        |token: &str| format!("if ($http_authorization != \"Bearer {token}\") {{ return 401; }}");
    let mut server = pki.nginx(&w.repo, &require(SECRET_TOKEN));
    let ca = pki.path("ca.pem");
    assert_refused_with_ca(
        &w,
        &server,
        &ca,
        &["HTTP status 401 (the mirror wants credentials: give --auth-file or --netrc)"],
    );

    let auth = w.dir.join("auth");
    std::fs::write(
        &auth,
        format!("# the mirror's token\nAuthorization: Bearer {SECRET_TOKEN}\n"),
    )
    .unwrap();
    // Readable by the group: refused before anything happens, without the secret.
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o640)).unwrap();
    let log = assert_refused(
        &w,
        &remote_args(
            &w,
            &server,
            &["--ca-cert", &ca, "--auth-file", auth.to_str().unwrap()],
        ),
        64,
        &[
            "--auth-file",
            "mode 0640 lets other users read or change it",
        ],
    );
    assert!(!log.contains(SECRET_TOKEN));
    // Unreadable (a directory), and one for an origin that is not among the URLs.
    assert_refused(
        &w,
        &remote_args(
            &w,
            &server,
            &["--ca-cert", &ca, "--auth-file", w.dir.to_str().unwrap()],
        ),
        64,
        &["not a regular file"],
    );
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
    let scoped_elsewhere = format!("https://mirror.example:8443={}", auth.display());
    assert_refused(
        &w,
        &remote_args(
            &w,
            &server,
            &["--ca-cert", &ca, "--auth-file", &scoped_elsewhere],
        ),
        64,
        &["is not the origin of any URL given"],
    );

    // Scoped to the server's origin: served.
    let scoped = format!("https://127.0.0.1:{}={}", server.port, auth.display());
    let d = w
        .mount_with(&remote_args(
            &w,
            &server,
            &[
                "--ca-cert",
                &ca,
                "--auth-file",
                &scoped,
                "--audit-log",
                w.audit.to_str().unwrap(),
                // No background downloads: each open below is the request that uses the file.
                "--prefetch",
                "0",
            ],
        ))
        .unwrap();
    assert_eq!(
        std::fs::read(w.at("hello.txt")).unwrap(),
        b"hello over a real network\n"
    );
    // The token rotates: the server wants a new one and the file is replaced (atomically, as
    // a secrets manager does); the next download uses it without a restart.
    let new_token = "r0tated-t0ken";
    server.reconfigure(&require(new_token));
    let tmp = w.dir.join("auth.new");
    private_file(&tmp, &format!("Authorization: Bearer {new_token}\n"));
    std::fs::rename(&tmp, &auth).unwrap();
    assert_eq!(
        std::fs::read(w.at("sub/data.bin")).unwrap(),
        vec![9u8; 5000]
    );
    // A replacement others can read is not used: the last good token is kept, one log line.
    let tmp = w.dir.join("auth.bad");
    std::fs::write(&tmp, "Authorization: Bearer wrong\n").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&tmp, &auth).unwrap();
    assert_eq!(
        std::fs::read(w.at("sub/more.txt")).unwrap(),
        b"fetched later\n"
    );
    // While the daemon runs (a clean stop removes its status record): the record, the audit
    // log and the log so far hold no secret; then the whole log after the stop.
    wait_for(
        "the status record to count the opens",
        || d.log(),
        || {
            w.status_record()
                .is_some_and(|r| r["counters"]["served"] == 3)
        },
    );
    for secret in [SECRET_TOKEN, "r0tated-t0ken"] {
        assert_eq!(leaks(&w, &d.log(), secret), None, "{secret} leaked");
    }
    let log = d.stop();
    assert!(
        log.contains("changed and cannot be used")
            && log.contains("keeping the credentials read before"),
        "{log}"
    );
    assert!(log.contains("credentials from"), "{log}");
    for secret in [SECRET_TOKEN, new_token] {
        assert_eq!(leaks(&w, &log, secret), None, "{secret} leaked");
    }
}

#[test]
fn basic_auth_from_netrc_401_without_and_never_logged() {
    let w = world("net-netrc");
    let htpasswd = w.dir.join("htpasswd");
    let out = Command::new("openssl")
        .args(["passwd", "-apr1", SECRET_PASSWORD])
        .output()
        .expect("openssl");
    std::fs::write(
        &htpasswd,
        format!("alice:{}", String::from_utf8_lossy(&out.stdout)),
    )
    .unwrap();
    let server = Nginx::start_with(
        &w.repo,
        &format!(
            "auth_basic \"repo\";\n    auth_basic_user_file {};",
            htpasswd.display()
        ),
    );
    assert_refused(&w, &remote_args(&w, &server, &[]), 2, &["HTTP status 401"]);
    let netrc = w.dir.join("netrc");
    private_file(
        &netrc,
        &format!("machine 127.0.0.1\n  login alice\n  password {SECRET_PASSWORD}\n"),
    );
    let d = w
        .mount_with(&remote_args(
            &w,
            &server,
            &[
                "--netrc-file",
                netrc.to_str().unwrap(),
                "--audit-log",
                w.audit.to_str().unwrap(),
            ],
        ))
        .unwrap();
    assert_serves(&w);
    wait_for(
        "the status record to count the opens",
        || d.log(),
        || {
            w.status_record()
                .is_some_and(|r| r["counters"]["served"] == 2)
        },
    );
    assert_eq!(leaks(&w, &d.log(), SECRET_PASSWORD), None);
    let log = d.stop();
    // Plain http with credentials: said once, loudly.
    assert!(
        log.contains("unencrypted") && log.contains("credentials for it travel in clear text"),
        "{log}"
    );
    assert_eq!(leaks(&w, &log, SECRET_PASSWORD), None);
    // --netrc reads $NETRC.
    forget(&w);
    let d = w
        .mount_with_env(
            &remote_args(&w, &server, &["--netrc"]),
            &[("NETRC", netrc.to_str().unwrap())],
        )
        .unwrap();
    assert_serves(&w);
    d.stop();
}

#[test]
fn mirror_requiring_a_client_certificate_refuses_without_and_serves_with_it() {
    let w = world("net-mtls");
    let pki = Pki::new(&w.dir);
    let server = pki.nginx(
        &w.repo,
        &format!(
            "ssl_client_certificate {};\n    ssl_verify_client on;",
            pki.path("ca.pem")
        ),
    );
    let ca = pki.path("ca.pem");
    assert_refused_with_ca(&w, &server, &ca, &["--client-cert and --client-key"]);
    // A key others can read is refused.
    let open_key = w.dir.join("open.key");
    std::fs::copy(pki.dir.join("client.key"), &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cert = pki.path("client.pem");
    assert_refused(
        &w,
        &mtls_args(&w, &server, &ca, &cert, open_key.to_str().unwrap()),
        64,
        &["--client-key", "mode 0644"],
    );
    // A key that is not the certificate's: refused at start, not at every request.
    let other_key = w.dir.join("other.key");
    std::fs::copy(pki.dir.join("server.key"), &other_key).unwrap();
    std::fs::set_permissions(&other_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_refused(
        &w,
        &mtls_args(&w, &server, &ca, &cert, other_key.to_str().unwrap()),
        64,
        &["does not go with --client-cert"],
    );
    let d = w
        .mount_with(&mtls_args(&w, &server, &ca, &cert, &pki.path("client.key")))
        .unwrap();
    assert_serves(&w);
    assert!(d.stop().contains("a client certificate is presented"));
}

/// CONNECT targets and their `Proxy-Authorization`, as a proxy saw them.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A small CONNECT proxy: records each CONNECT target and its `Proxy-Authorization`, then
/// tunnels (or answers `403` when refusing).
struct ConnectProxy {
    port: u16,
    seen: Seen,
}

impl ConnectProxy {
    fn start(refuse: bool) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let seen = seen2.clone();
                std::thread::spawn(move || {
                    let _ = tunnel(client, refuse, &seen);
                });
            }
        });
        ConnectProxy { port, seen }
    }

    fn url(&self, userinfo: &str) -> String {
        format!("http://{userinfo}127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

fn tunnel(
    client: TcpStream,
    refuse: bool,
    seen: &Mutex<Vec<(String, Option<String>)>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("proxy-authorization") {
                auth = Some(value.trim().to_owned());
            }
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    seen.lock().unwrap().push((target.clone(), auth));
    let mut client_w = client.try_clone()?;
    if refuse || !line.starts_with("CONNECT ") {
        client_w.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    }
    let upstream = TcpStream::connect(&target)?;
    client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let (mut up_r, mut up_w) = (upstream.try_clone()?, upstream);
    // Bytes the client sent after the CONNECT head (already buffered) go first.
    let buffered = reader.buffer().to_vec();
    up_w.write_all(&buffered)?;
    let mut reader = reader.into_inner();
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_r, &mut client_w);
    let _ = client_w.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
    Ok(())
}

#[test]
fn https_proxy_with_credentials_no_proxy_honoured_and_a_refusing_proxy_is_a_clear_error() {
    let w = world("net-proxy");
    let pki = Pki::new(&w.dir);
    let server = pki.nginx(&w.repo, "");
    let ca = pki.path("ca.pem");
    let target = format!("127.0.0.1:{}", server.port);
    let proxy = ConnectProxy::start(false);
    let proxy_url = proxy.url("carol:pr0xy-pw@");
    let d = w
        .mount_with_env(
            &remote_args(&w, &server, &["--ca-cert", &ca]),
            &[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "example.invalid")],
        )
        .unwrap();
    assert_serves(&w);
    let log = d.stop();
    let seen = proxy.seen();
    assert!(!seen.is_empty(), "the proxy saw nothing:\n{log}");
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("carol:pr0xy-pw")
    );
    for (t, auth) in &seen {
        assert_eq!(t, &target);
        assert_eq!(auth.as_deref(), Some(basic.as_str()));
    }
    assert!(
        log.contains(&format!(
            "through the proxy http://***@127.0.0.1:{}",
            proxy.port
        )),
        "{log}"
    );
    assert!(!log.contains("pr0xy-pw"), "{log}");

    // NO_PROXY names the host: reached directly, the proxy sees nothing more.
    forget(&w);
    let before = proxy.seen().len();
    let d = w
        .mount_with_env(
            &remote_args(&w, &server, &["--ca-cert", &ca]),
            &[
                ("HTTPS_PROXY", &proxy_url),
                ("NO_PROXY", "localhost,127.0.0.0/8"),
            ],
        )
        .unwrap();
    assert_serves(&w);
    d.stop();
    assert_eq!(proxy.seen().len(), before);

    // --proxy wins over the environment; a proxy that refuses the tunnel is named with its
    // answer (and a mount that already runs keeps serving what it has).
    let refusing = ConnectProxy::start(true);
    forget(&w);
    assert_refused(
        &w,
        &remote_args(
            &w,
            &server,
            &["--ca-cert", &ca, "--proxy", &refusing.url("")],
        ),
        2,
        &[
            &format!(
                "the proxy {} refused the tunnel to {target}",
                refusing.url("")
            ),
            "403",
        ],
    );
    assert!(!refusing.seen().is_empty());
    // Credentials in --proxy would be on every user's `ps`: refused, without repeating them.
    let log = assert_refused(
        &w,
        &remote_args(
            &w,
            &server,
            &[
                "--proxy",
                &format!("http://carol:pr0xy-pw@127.0.0.1:{}", proxy.port),
            ],
        ),
        64,
        &["visible to every local user"],
    );
    assert!(!log.contains("pr0xy-pw"), "{log}");
    // A proxy from the environment that trustfs cannot use: refused at start.
    match w.mount_with_env(
        &remote_args(&w, &server, &["--ca-cert", &ca]),
        &[("HTTPS_PROXY", "socks5h://127.0.0.1:1")],
    ) {
        Ok(d) => panic!("mounted: {}", d.log()),
        Err((code, log)) => {
            assert_eq!(code, 64, "{log}");
            assert!(
                log.contains("https_proxy/HTTPS_PROXY") && log.contains("only http://"),
                "{log}"
            );
        }
    }
    // A proxy URL of another kind is a usage error.
    assert_refused(
        &w,
        &remote_args(&w, &server, &["--proxy", "socks5://127.0.0.1:1"]),
        64,
        &["only http:// proxies"],
    );
}

#[test]
fn a_running_mount_keeps_serving_what_it_verified_when_its_network_turns_hostile() {
    let w = world("net-running");
    let pki = Pki::new(&w.dir);
    let mut server = pki.nginx(&w.repo, "");
    let ca = pki.path("ca.pem");
    let d = w
        .mount_with(&remote_args(&w, &server, &["--ca-cert", &ca]))
        .unwrap();
    assert_eq!(
        std::fs::read(w.at("hello.txt")).unwrap(),
        b"hello over a real network\n"
    );
    // The mirror now demands a client certificate the mount does not have.
    server.reconfigure(&format!(
        "ssl_client_certificate {};\n    ssl_verify_client on;",
        pki.path("ca.pem")
    ));
    assert_eq!(
        std::fs::read(w.at("hello.txt")).unwrap(),
        b"hello over a real network\n"
    );
    assert_eq!(errno_of(std::fs::read(w.at("sub/more.txt"))), libc::EIO);
    let log = d.stop();
    assert!(log.contains("client certificate"), "{log}");
}

#[test]
fn network_options_are_documented_and_need_a_remote_mount() {
    let out = Command::new(cli::BIN)
        .args(["mount", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--ca-cert <FILE>",
        "--proxy <URL>",
        "--auth-file <[ORIGIN=]FILE>",
        "--netrc",
        "--netrc-file <FILE>",
        "--client-cert <FILE>",
        "--client-key <FILE>",
        "NO_PROXY",
    ] {
        assert!(help.contains(want), "{want} missing:\n{help}");
    }
    let out = Command::new(cli::BIN)
        .args(["mount", "--root", "r", "--metadata", "m", "--backing", "b"])
        .args(["--ca-cert", "x.pem", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
