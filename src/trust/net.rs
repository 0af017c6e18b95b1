//! How trustfs reaches its mirrors on real networks: TLS roots and client certificates, proxies,
//! and credentials.
//!
//! TUF makes the transport untrusted for integrity — every byte is checked against signed
//! metadata — but people still have to *reach* their mirrors: over HTTPS signed by a company CA,
//! through a proxy, with a token. [`NetOptions`] is what the operator says; [`Network`] is the
//! prepared form every [`super::HttpFetcher`] of a mount shares.
//!
//! - **TLS roots**: the system trust store, found as curl and openssl find it (`SSL_CERT_FILE`,
//!   `SSL_CERT_DIR`, else the distribution's bundle, e.g. `/etc/ssl/certs`), plus every
//!   `--ca-cert` file. Only when the system store has no certificate at all (a bare container)
//!   and no `--ca-cert` is given are Mozilla's roots, compiled in, used instead.
//! - **Client certificates** (`--client-cert`, `--client-key`) for mirrors that require mTLS.
//! - **Proxies** like curl: `--proxy URL`, else `https_proxy`/`HTTPS_PROXY` for https URLs,
//!   `http_proxy`/`HTTP_PROXY` for http URLs, then `all_proxy`/`ALL_PROXY`; a host matching
//!   `no_proxy`/`NO_PROXY` (names and their subdomains, IP addresses, CIDR ranges, `*`) is
//!   reached directly. Proxy credentials come from the proxy URL's `user:password@`.
//! - **Credentials** (`--auth-file [ORIGIN=]FILE`: header lines such as `Authorization: Bearer
//!   …`, re-read when the file changes; `--netrc`/`--netrc-file FILE`: basic auth per host) are
//!   sent only to the origins the operator named (a redirect never leaves its mirror's origin,
//!   see `fetch.rs`), never logged, and their files must be private (no group or other
//!   permission bits) and owned by this user or root.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

/// What the operator configured (command line); see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    /// `--ca-cert FILE`: extra trusted CA certificates (PEM), on top of the system store.
    pub ca_certs: Vec<PathBuf>,
    /// `--proxy URL`: the proxy for every URL (except `no_proxy` hosts), over the environment's.
    pub proxy: Option<String>,
    /// `--auth-file [ORIGIN=]FILE`: header lines for every named origin, or only for ORIGIN.
    pub auth_files: Vec<String>,
    /// `--netrc` (`$NETRC` or `~/.netrc`) or `--netrc-file FILE`.
    pub netrc: Option<PathBuf>,
    /// `--client-cert FILE` and `--client-key FILE` (PEM), for mirrors that require mTLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The largest credentials file read (auth file, netrc).
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Scheme, host and port of a URL, lower-cased: what credentials and redirects are bound to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute `http://` or `https://` URL.
    pub fn of(url: &str) -> Result<Origin, String> {
        // Errors show the URL without anything that could be credentials.
        let shown = redact(url);
        let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{shown:?}: {e}"))?;
        let scheme = uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| format!("{shown:?} has no scheme"))?;
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("{shown:?} is not an http:// or https:// URL")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("{shown:?} has no host"))?
            .to_ascii_lowercase();
        Ok(Origin {
            scheme,
            host,
            port: uri.port_u16().unwrap_or(default_port),
        })
    }

    /// The host without IPv6 brackets.
    fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The prepared network configuration of a process, shared by all its fetchers.
pub struct Network {
    extra_cas: Vec<Certificate<'static>>,
    extra_ca_files: Vec<PathBuf>,
    client: Option<ClientCert>,
    /// Built at the first https fetcher: loading the system store costs a few milliseconds.
    tls: OnceLock<(TlsConfig, String)>,
    proxy: ProxyChoice,
    auth: Vec<(Option<Origin>, Watched<Headers>)>,
    netrc: Option<Watched<Netrc>>,
}

impl fmt::Debug for Network {
    // No credentials, ever: only where they come from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("extra_ca_files", &self.extra_ca_files)
            .field("client_cert", &self.client.is_some())
            .field("proxy", &self.proxy)
            .field(
                "auth_files",
                &self.auth.iter().map(|(_, w)| &w.path).collect::<Vec<_>>(),
            )
            .field("netrc", &self.netrc.as_ref().map(|w| &w.path))
            .finish()
    }
}

impl Default for Network {
    /// The system trust store, proxies from the environment, no credentials.
    fn default() -> Network {
        Network {
            extra_cas: Vec::new(),
            extra_ca_files: Vec::new(),
            client: None,
            tls: OnceLock::new(),
            proxy: ProxyChoice::from_env(None),
            auth: Vec::new(),
            netrc: None,
        }
    }
}

impl Network {
    /// Check and load everything `opts` names; every problem is a clear error now, not a failed
    /// request later.
    pub fn new(opts: &NetOptions) -> Result<Network, String> {
        let mut extra_cas = Vec::new();
        for path in &opts.ca_certs {
            let pem =
                read_public_file(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            let certs =
                pem_certificates(&pem).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            extra_cas.extend(certs);
        }
        let client = match (&opts.client_cert, &opts.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(client_cert(cert, key)?),
            _ => return Err("--client-cert and --client-key go together".into()),
        };
        if let Some(p) = &opts.proxy {
            if p.rsplit_once('@').is_some() {
                return Err(format!(
                    "--proxy {}: credentials on the command line are visible to every local user (ps); give the proxy URL with them in HTTPS_PROXY/HTTP_PROXY (the environment is private to the daemon) instead",
                    redact(p)
                ));
            }
            check_proxy_url(p).map_err(|e| format!("--proxy: {e}"))?;
        }
        let proxy = ProxyChoice::from_env(opts.proxy.clone());
        for (name, value) in proxy.environment_urls() {
            check_proxy_url(value).map_err(|e| format!("{name}: {e}"))?;
        }
        let mut auth = Vec::new();
        for spec in &opts.auth_files {
            let (scope, path) = match spec.split_once('=') {
                Some((origin, path))
                    if origin.starts_with("http://") || origin.starts_with("https://") =>
                {
                    let o = Origin::of(origin).map_err(|e| format!("--auth-file {spec}: {e}"))?;
                    (Some(o), PathBuf::from(path))
                }
                _ => (None, PathBuf::from(spec)),
            };
            let w = Watched::new(&path, "--auth-file", parse_headers)?;
            auth.push((scope, w));
        }
        let netrc = match &opts.netrc {
            Some(path) => Some(Watched::new(path, "netrc", parse_netrc)?),
            None => None,
        };
        Ok(Network {
            extra_cas,
            extra_ca_files: opts.ca_certs.clone(),
            client,
            tls: OnceLock::new(),
            proxy,
            auth,
            netrc,
        })
    }

    /// The TLS configuration of https fetchers (roots and client certificate), and a sentence
    /// saying where the roots come from.
    pub fn tls(&self) -> &(TlsConfig, String) {
        self.tls.get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let system: Vec<Certificate<'static>> = loaded
                .certs
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            let extra = self.extra_cas.len();
            let (roots, mut note) = if system.is_empty() && extra == 0 {
                (
                    RootCerts::WebPki,
                    "no certificates in the system trust store: using Mozilla's roots (compiled in)"
                        .to_owned(),
                )
            } else {
                let note = format!(
                    "{} CA certificates from the system trust store{}",
                    system.len(),
                    if extra > 0 {
                        format!(
                            ", {extra} from --ca-cert ({})",
                            self.extra_ca_files
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        String::new()
                    }
                );
                let mut all = system;
                all.extend(self.extra_cas.iter().cloned());
                (RootCerts::Specific(Arc::new(all)), note)
            };
            if !loaded.errors.is_empty() {
                note.push_str(&format!(
                    " ({} problems reading the store, the first: {})",
                    loaded.errors.len(),
                    loaded.errors[0]
                ));
            }
            if self.client.is_some() {
                note.push_str("; a client certificate is presented");
            }
            let config = TlsConfig::builder()
                .root_certs(roots)
                .client_cert(self.client.clone())
                .build();
            (config, note)
        })
    }

    /// The proxy for requests to `origin`, if any.
    pub fn proxy_for(&self, origin: &Origin) -> Option<ureq::Proxy> {
        self.proxy.for_origin(origin)
    }

    /// A description of the proxy for `origin` (credentials left out), for the start log.
    pub fn proxy_note(&self, origin: &Origin) -> Option<String> {
        self.proxy.describe(origin)
    }

    /// The credential headers for a request to `origin` (auth files first; netrc basic auth
    /// only when no auth file gives an `Authorization`).
    pub fn headers_for(&self, origin: &Origin) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (scope, file) in &self.auth {
            if scope.as_ref().is_none_or(|s| s == origin) {
                for (name, value) in &file.get().0 {
                    if !out.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                        out.push((name.clone(), value.clone()));
                    }
                }
            }
        }
        let has_auth = out
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        if let (false, Some(netrc)) = (has_auth, &self.netrc) {
            if let Some((login, password)) = netrc.get().for_host(origin.bare_host()) {
                use base64::Engine as _;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
                out.push(("Authorization".into(), format!("Basic {token}")));
            }
        }
        out
    }

    /// What a mount reaching `origin` should log once at start: encryption, proxy, credentials
    /// (by source, never their values).
    pub fn notes_for(&self, origin: &Origin) -> Vec<String> {
        let mut notes = Vec::new();
        let creds = !self.headers_for(origin).is_empty();
        if origin.scheme == "http" {
            notes.push(format!(
                "{origin}: plain HTTP, unencrypted (TUF still checks every byte against the signed metadata){}",
                if creds {
                    "; WARNING: credentials for it travel in clear text"
                } else {
                    ""
                }
            ));
        } else {
            notes.push(format!("{origin}: TLS with {}", self.tls().1));
        }
        if let Some(p) = self.proxy_note(origin) {
            notes.push(format!("{origin}: through the proxy {p}"));
        }
        if creds {
            let mut from: Vec<String> = self
                .auth
                .iter()
                .filter(|(scope, _)| scope.as_ref().is_none_or(|s| s == origin))
                .map(|(_, w)| w.path.display().to_string())
                .collect();
            if let Some(n) = &self.netrc {
                if n.get().for_host(origin.bare_host()).is_some() {
                    from.push(n.path.display().to_string());
                }
            }
            notes.push(format!("{origin}: credentials from {}", from.join(", ")));
        }
        notes
    }
}

/// The certificates in a PEM file; an error when there is none.
fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(format!("not valid PEM: {e}")),
        }
    }
    if out.is_empty() {
        return Err("no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(out)
}

fn client_cert(cert: &Path, key: &Path) -> Result<ClientCert, String> {
    let pem =
        read_public_file(cert).map_err(|e| format!("--client-cert {}: {e}", cert.display()))?;
    let chain =
        pem_certificates(&pem).map_err(|e| format!("--client-cert {}: {e}", cert.display()))?;
    let key_pem = read_secret(key).map_err(|e| format!("--client-key {}: {e}", key.display()))?;
    let private = PrivateKey::from_pem(&key_pem).map_err(|_| {
        format!(
            "--client-key {}: not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    // The pair must match, or every handshake would fail (in ureq, with a panic): check now.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der_chain: Vec<rustls::pki_types::CertificateDer<'static>> = chain
        .iter()
        .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
        .collect();
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(private.der().to_vec())
        .map_err(|e| format!("--client-key {}: {e}", key.display()))?;
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(der_chain, der_key)
        .map_err(|e| {
            format!(
                "--client-key {} does not go with --client-cert {}: {e}",
                key.display(),
                cert.display()
            )
        })?;
    Ok(ClientCert::new_with_certs(&chain, private))
}

/// The largest certificate file read (`--ca-cert`, `--client-cert`).
const MAX_CERT_FILE: u64 = 1 << 20;

/// Read a certificate file: a regular file (never blocking on a FIFO), at most [`MAX_CERT_FILE`].
fn read_public_file(path: &Path) -> Result<Vec<u8>, String> {
    let file = open_regular(path)?;
    let mut out = Vec::new();
    file.take(MAX_CERT_FILE + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > MAX_CERT_FILE {
        return Err(format!("larger than {MAX_CERT_FILE} bytes"));
    }
    Ok(out)
}

/// Open `path` for reading without blocking (a FIFO would hang the caller) and check that it is
/// a regular file.
fn open_regular(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    Ok(file)
}

/// Read a file holding secrets: a regular file (symlinks followed, as in Kubernetes secret
/// volumes) owned by this user or root, with no permission bits for group or others, at most
/// `MAX_SECRET_FILE` bytes.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let me = crate::sys::euid();
    check_dirs(path, me)?;
    let file = open_regular(path)?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not by this user (uid {me}) or root: another user could change the credentials",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} lets other users read or change it: it holds secrets (chmod 600 {})",
            path.display()
        ));
    }
    let mut out = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > MAX_SECRET_FILE {
        return Err(format!("larger than {MAX_SECRET_FILE} bytes"));
    }
    Ok(out)
}

/// Every directory on the way to `path` (symlinks resolved) must be owned by `me` or root and
/// not writable by group or others unless sticky (as `/tmp`), as ssh's StrictModes asks: whoever
/// could rename entries there could swap the credentials file for another private file.
fn check_dirs(path: &Path, me: u32) -> Result<(), String> {
    let real = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    let mut dir = real.parent();
    while let Some(d) = dir {
        let m = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
        let mode = m.mode();
        let open = mode & 0o022 != 0 && mode & 0o1000 == 0;
        if (m.uid() != me && m.uid() != 0) || open {
            return Err(format!(
                "the directory {} (owner uid {}, mode {:04o}) lets another user replace files in it",
                d.display(),
                m.uid(),
                mode & 0o7777
            ));
        }
        dir = d.parent();
    }
    Ok(())
}

/// The most header lines an auth file may set.
const MAX_AUTH_HEADERS: usize = 32;

/// Header lines of an auth file, in order.
#[derive(Debug, Default)]
struct Headers(Vec<(String, String)>);

/// Header names an auth file may not set: they frame the request or belong to the proxy.
const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "proxy-authorization",
];

/// `Name: value` lines; blank lines and `#` comments ignored. Errors name the line, never its
/// value.
fn parse_headers(bytes: &[u8]) -> Result<Headers, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = i + 1;
        // Errors say where, never what: the line may be a secret.
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {n}: not a `Name: value` header line"))?;
        let (name, value) = (name.trim(), value.trim());
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err(format!(
                "line {n}: the part before ':' is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
            ));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("line {n}: {name} cannot be set by an auth file"));
        }
        if value.is_empty() || !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
            return Err(format!(
                "line {n}: the value of {name} is empty or not visible ASCII"
            ));
        }
        out.push((name.to_owned(), value.to_owned()));
        if out.len() > MAX_AUTH_HEADERS {
            return Err(format!("more than {MAX_AUTH_HEADERS} header lines"));
        }
    }
    if out.is_empty() {
        return Err("no header lines in it (expected e.g. `Authorization: Bearer <token>`)".into());
    }
    Ok(Headers(out))
}

/// The machines of a netrc file: host → (login, password); `default` under the empty name.
#[derive(Debug, Default)]
struct Netrc(BTreeMap<String, (String, String)>);

impl Netrc {
    fn for_host(&self, host: &str) -> Option<(&str, &str)> {
        let host = host.to_ascii_lowercase();
        self.0
            .get(&host)
            .or_else(|| self.0.get(""))
            .map(|(l, p)| (l.as_str(), p.as_str()))
    }
}

/// The netrc format as curl reads it: `machine NAME`, `default`, `login`, `password`, `account`
/// (ignored) and `macdef NAME` (skipped to the next blank line) tokens, whitespace-separated;
/// the first entry for a machine wins.
fn parse_netrc(bytes: &[u8]) -> Result<Netrc, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())?;
    let mut machines = BTreeMap::new();
    let mut current: Option<(String, Option<String>, Option<String>)> = None;
    let finish = |m: &mut BTreeMap<String, (String, String)>,
                  cur: Option<(String, Option<String>, Option<String>)>| {
        if let Some((name, Some(login), password)) = cur {
            m.entry(name)
                .or_insert((login, password.unwrap_or_default()));
        }
    };
    let mut lines = text.lines();
    let mut words: Vec<String> = Vec::new();
    while let Some(line) = lines.next() {
        let tokens = netrc_tokens(line)?;
        for (quoted, w) in tokens {
            if !quoted && w == "macdef" {
                // The macro's body runs to the next empty line.
                for l in lines.by_ref() {
                    if l.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            if !quoted && w.starts_with('#') && words.is_empty() {
                break;
            }
            words.push(w);
        }
        let mut i = 0;
        while i < words.len() {
            let w = words[i].as_str();
            let arg = words.get(i + 1).cloned();
            match w {
                "machine" => {
                    finish(&mut machines, current.take());
                    let name = arg.ok_or("`machine` without a name")?;
                    current = Some((name.to_ascii_lowercase(), None, None));
                    i += 2;
                }
                "default" => {
                    finish(&mut machines, current.take());
                    current = Some((String::new(), None, None));
                    i += 1;
                }
                "login" | "password" | "account" => {
                    let v = arg.ok_or_else(|| format!("`{w}` without a value"))?;
                    let Some(cur) = current.as_mut() else {
                        return Err(format!("`{w}` before any `machine` or `default`"));
                    };
                    match w {
                        "login" => cur.1 = Some(v),
                        "password" => cur.2 = Some(v),
                        _ => {}
                    }
                    i += 2;
                }
                _ => {
                    return Err(format!(
                        "word {} is not a netrc keyword (machine, default, login, password, account, macdef)",
                        i + 1
                    ))
                }
            }
        }
        words.clear();
    }
    finish(&mut machines, current.take());
    Ok(Netrc(machines))
}

/// The tokens of one netrc line: whitespace-separated, or double-quoted with `\"` and `\\`
/// escapes (curl 7.84+); each with whether it was quoted.
fn netrc_tokens(line: &str) -> Result<Vec<(bool, String)>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '"' {
            chars.next();
            let mut t = String::new();
            loop {
                match chars.next() {
                    None => return Err("a quoted netrc token is not closed".into()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(e) => t.push(e),
                        None => return Err("a quoted netrc token is not closed".into()),
                    },
                    Some(ch) => t.push(ch),
                }
            }
            out.push((true, t));
        } else {
            let mut t = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() {
                    break;
                }
                t.push(ch);
                chars.next();
            }
            out.push((false, t));
        }
    }
    Ok(out)
}

/// What identifies a version of a file: re-read when it changes.
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// A private file read at start and again whenever it changes (a rotated token); a version that
/// cannot be read or parsed is logged once and the last good one kept.
struct Watched<T> {
    path: PathBuf,
    what: &'static str,
    parse: fn(&[u8]) -> Result<T, String>,
    state: Mutex<(Option<Stamp>, Arc<T>, bool)>,
}

impl<T> Watched<T> {
    fn new(
        path: &Path,
        what: &'static str,
        parse: fn(&[u8]) -> Result<T, String>,
    ) -> Result<Watched<T>, String> {
        let st = stamp(path);
        let value = read_secret(path)
            .and_then(|b| parse(&b))
            .map_err(|e| format!("{what} {}: {e}", path.display()))?;
        Ok(Watched {
            path: path.to_owned(),
            what,
            parse,
            state: Mutex::new((st, Arc::new(value), false)),
        })
    }

    fn get(&self) -> Arc<T> {
        let now = stamp(&self.path);
        {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if now.is_none() || now == state.0 {
                return state.1.clone();
            }
        }
        // Changed: read and parse without the lock (other requests keep the last good value).
        let fresh = read_secret(&self.path).and_then(|b| (self.parse)(&b));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now != state.0 {
            match fresh {
                Ok(v) => {
                    state.0 = now;
                    state.1 = Arc::new(v);
                    if state.2 {
                        crate::log_event!("{} {}: read again", self.what, self.path.display());
                    }
                    state.2 = false;
                }
                Err(e) => {
                    if !state.2 {
                        crate::log_event!(
                            "ERROR {} {} changed and cannot be used: {e}; keeping the credentials read before",
                            self.what,
                            self.path.display()
                        );
                    }
                    state.2 = true;
                }
            }
        }
        state.1.clone()
    }
}

/// Check a proxy URL: `http://` (or no scheme), `[user:password@]host[:port]`, an optional `/`
/// and nothing else. Errors never repeat the credentials.
fn check_proxy_url(url: &str) -> Result<(), String> {
    let shown = redact(url);
    let lower = url.to_ascii_lowercase();
    if lower.contains("://") && !lower.starts_with("http://") {
        return Err(format!(
            "{shown}: only http:// proxies (CONNECT) are supported"
        ));
    }
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = match rest.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(['/', '?', '#', '@']) => {
            return Err(format!(
                "{shown}: the user or password has '/', '?', '#' or '@' (percent-encode them)"
            ))
        }
        Some((_, h)) => h,
        None => rest,
    };
    let hostport = hostport.strip_suffix('/').unwrap_or(hostport);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, Some(p)),
        _ => (hostport, None),
    };
    let host_ok = !host.is_empty()
        && !host.contains(['/', '?', '#', '@', ' '])
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
    if !host_ok {
        return Err(format!(
            "{shown}: not a proxy URL of the form http://[user:password@]host[:port] (a password with '/', '?', '#' or '@' must be percent-encoded)"
        ));
    }
    ureq::Proxy::new(url)
        .map(|_| ())
        .map_err(|e| format!("{shown}: {e}"))
}

/// `url` without `user:password@`. Everything up to the last `@` goes, so a password holding
/// `/`, `?` or `#` is never shown in part (a path with an `@` is cut short instead: a log line
/// loses a little, a secret is never printed).
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Which proxy to use, read once (at start) from the command line and the environment.
#[derive(Clone, Default)]
struct ProxyChoice {
    /// `--proxy`, for every scheme.
    explicit: Option<String>,
    http: Option<String>,
    https: Option<String>,
    all: Option<String>,
    no_proxy: Option<String>,
}

impl fmt::Debug for ProxyChoice {
    // Proxy URLs may carry credentials: shown redacted only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = |v: &Option<String>| v.as_deref().map(redact);
        f.debug_struct("ProxyChoice")
            .field("explicit", &r(&self.explicit))
            .field("http", &r(&self.http))
            .field("https", &r(&self.https))
            .field("all", &r(&self.all))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

impl ProxyChoice {
    /// The proxy URLs taken from the environment, with the variable family they came from.
    fn environment_urls(&self) -> Vec<(&'static str, &str)> {
        [
            ("http_proxy/HTTP_PROXY", &self.http),
            ("https_proxy/HTTPS_PROXY", &self.https),
            ("all_proxy/ALL_PROXY", &self.all),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_deref().map(|v| (n, v)))
        .collect()
    }

    fn from_env(explicit: Option<String>) -> ProxyChoice {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok())
                .filter(|v| !v.trim().is_empty())
        };
        ProxyChoice {
            explicit,
            http: var(&["http_proxy", "HTTP_PROXY"]),
            https: var(&["https_proxy", "HTTPS_PROXY"]),
            all: var(&["all_proxy", "ALL_PROXY"]),
            no_proxy: var(&["no_proxy", "NO_PROXY"]),
        }
    }

    fn url_for(&self, origin: &Origin) -> Option<&str> {
        if self
            .no_proxy
            .as_deref()
            .is_some_and(|list| no_proxy_matches(list, origin.bare_host()))
        {
            return None;
        }
        let by_scheme = match origin.scheme.as_str() {
            "https" => self.https.as_deref(),
            _ => self.http.as_deref(),
        };
        self.explicit
            .as_deref()
            .or(by_scheme)
            .or(self.all.as_deref())
    }

    fn for_origin(&self, origin: &Origin) -> Option<ureq::Proxy> {
        let url = self.url_for(origin)?;
        // Network::new refuses these at start; a default Network (tests, the conformance
        // client) only logs them.
        match check_proxy_url(url).and_then(|()| ureq::Proxy::new(url).map_err(|e| e.to_string())) {
            Ok(p) => Some(p),
            Err(e) => {
                crate::log_event!(
                    "ERROR the proxy {} for {origin} cannot be used ({e}); connecting directly",
                    redact(url)
                );
                None
            }
        }
    }

    fn describe(&self, origin: &Origin) -> Option<String> {
        self.url_for(origin).map(redact)
    }
}

/// Whether `host` is in a `no_proxy` list, as curl reads it: `*` for all; a name matches itself
/// and its subdomains (a leading `.` is optional); an IP address matches itself; `ADDR/BITS`
/// matches a range.
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                let net: Option<IpAddr> = net.trim_matches(['[', ']']).parse().ok();
                let bits: Option<u32> = bits.parse().ok();
                return match (net, bits, host_ip) {
                    (Some(n), Some(b), Some(h)) => in_range(h, n, b),
                    _ => false,
                };
            }
            let entry = entry
                .trim_matches(['[', ']'])
                .trim_start_matches('.')
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if let (Some(h), Ok(e)) = (host_ip, entry.parse::<IpAddr>()) {
                return h == e;
            }
            host == entry
                || host
                    .strip_suffix(&entry)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
}

fn in_range(host: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (host, net) {
        (IpAddr::V4(h), IpAddr::V4(n)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(h) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(h), IpAddr::V6(n)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(h) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_like_curl() {
        let list = "localhost, .corp.example,10.0.0.0/8,::1, 192.168.1.7,[fd00::]/8";
        for host in [
            "localhost",
            "a.corp.example",
            "corp.example",
            "10.2.3.4",
            "::1",
            "192.168.1.7",
            "fd12::1",
            "LOCALHOST.",
        ] {
            assert!(no_proxy_matches(list, host), "{host}");
        }
        for host in [
            "notcorp.example",
            "example",
            "11.0.0.1",
            "192.168.1.70",
            "::2",
            "localhost.evil",
        ] {
            assert!(!no_proxy_matches(list, host), "{host}");
        }
        assert!(no_proxy_matches("*", "anything"));
        assert!(!no_proxy_matches("", "anything"));
        assert!(!no_proxy_matches("10.0.0.0/99,x/8", "10.0.0.1"));
        assert!(no_proxy_matches("0.0.0.0/0", "10.0.0.1"));
    }

    #[test]
    fn proxy_per_scheme_explicit_first_no_proxy_wins() {
        let p = ProxyChoice {
            explicit: None,
            http: Some("http://h:1".into()),
            https: Some("http://u:secret@s:2".into()),
            all: Some("http://a:3".into()),
            no_proxy: Some("direct.example".into()),
        };
        let o = |u: &str| Origin::of(u).unwrap();
        assert_eq!(p.url_for(&o("http://x/")), Some("http://h:1"));
        assert_eq!(p.url_for(&o("https://x/")), Some("http://u:secret@s:2"));
        assert_eq!(p.describe(&o("https://x/")).unwrap(), "http://***@s:2");
        assert_eq!(p.url_for(&o("https://a.direct.example/")), None);
        let q = ProxyChoice {
            explicit: Some("http://e:4".into()),
            https: None,
            ..p.clone()
        };
        assert_eq!(q.url_for(&o("https://x/")), Some("http://e:4"));
        let r = ProxyChoice { https: None, ..p };
        assert_eq!(r.url_for(&o("https://x/")), Some("http://a:3"));
    }

    #[test]
    fn redacts_userinfo() {
        assert_eq!(redact("http://u:p@proxy:3128"), "http://***@proxy:3128");
        assert_eq!(redact("http://proxy:3128/x@y"), "http://***@y");
        assert_eq!(redact("http://alice:pa/ss@proxy:1"), "http://***@proxy:1");
        assert_eq!(redact("u:p@proxy:1"), "***@proxy:1");
        assert_eq!(redact("http://proxy:1"), "http://proxy:1");
    }

    #[test]
    fn auth_files_parse_and_refuse_what_they_must() {
        let h =
            parse_headers(b"# token\nAuthorization: Bearer abc.def\n\nX-Api-Key:  k1 \n").unwrap();
        assert_eq!(
            h.0,
            vec![
                ("Authorization".to_owned(), "Bearer abc.def".to_owned()),
                ("X-Api-Key".to_owned(), "k1".to_owned())
            ]
        );
        for (bad, why) in [
            (&b"Bearer abc\n"[..], "not a `Name: value`"),
            (b"Host: evil\n", "cannot be set"),
            (b"Bad Name: x\n", "not a header name"),
            (b"Authorization:\n", "empty"),
            (b"# only a comment\n", "no header lines"),
            (b"\xff\n", "UTF-8"),
        ] {
            let e = parse_headers(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        // The error names the line, never the secret.
        let e = parse_headers(b"Authorization: ok\nX-Token: a\x01secret\n").unwrap_err();
        assert!(e.contains("line 2") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn proxy_urls_are_checked_without_repeating_credentials() {
        for ok in [
            "http://proxy:3128",
            "http://proxy:3128/",
            "proxy:3128",
            "http://u:p@proxy:1",
            "http://[::1]:3128",
        ] {
            assert!(check_proxy_url(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("socks5h://proxy:1080", "only http://"),
            ("https://proxy:443", "only http://"),
            ("http://alice:pa/ss@proxy:3128", "percent-encode"),
            ("http://proxy:31x8", "not a proxy URL"),
            ("http://proxy:3128/path", "not a proxy URL"),
        ] {
            let e = check_proxy_url(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("pa/ss"), "{e}");
        }
        let opts = NetOptions {
            proxy: Some("http://u:secret@proxy:1".into()),
            ..Default::default()
        };
        let e = Network::new(&opts).unwrap_err();
        assert!(
            e.contains("visible to every local user") && !e.contains("secret"),
            "{e}"
        );
        let dbg = format!(
            "{:?}",
            ProxyChoice {
                https: Some("http://u:secret@p:1".into()),
                ..Default::default()
            }
        );
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    #[test]
    fn netrc_quoted_tokens_and_errors_that_do_not_echo() {
        let n = parse_netrc(br#"machine m login "a b" password "p \"q\" \\ r""#).unwrap();
        assert_eq!(n.for_host("m"), Some(("a b", r#"p "q" \ r"#)));
        let e = parse_netrc(b"machine m login x password correct horse battery\n").unwrap_err();
        assert!(!e.contains("horse") && !e.contains("battery"), "{e}");
        assert!(parse_netrc(b"machine m password \"open").is_err());
        let e = parse_headers(b"Authorization Bearer tok3n:x\n").unwrap_err();
        assert!(!e.contains("tok3n"), "{e}");
        let e = parse_headers("X-Token: caf\u{e9}\n".as_bytes()).unwrap_err();
        assert!(e.contains("visible ASCII"), "{e}");
        let many: String = (0..40).map(|i| format!("X-{i}: v\n")).collect();
        assert!(parse_headers(many.as_bytes())
            .unwrap_err()
            .contains("more than"));
    }

    #[test]
    fn secret_files_in_directories_others_can_change_or_fifos_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("trustfs-net-dirs-{}", std::process::id()));
        let open = dir.join("open");
        std::fs::create_dir_all(&open).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let f = open.join("auth");
        std::fs::write(&f, "Authorization: Bearer t\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read_secret(&f).unwrap_err();
        assert!(e.contains("lets another user replace files"), "{e}");
        // Sticky, as /tmp: others cannot rename our files there.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(read_secret(&f).is_ok());
        // A FIFO is refused at once, never waited on.
        let fifo = dir.join("fifo");
        crate::sys::mkfifo(&fifo, 0o600).unwrap();
        assert!(read_secret(&fifo)
            .unwrap_err()
            .contains("not a regular file"));
        assert!(read_public_file(&fifo)
            .unwrap_err()
            .contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn netrc_like_curl() {
        let n = parse_netrc(
            b"machine Mirror.Example login alice password s3cret\n\
              macdef init\ncd /pub\n\n\
              machine other.example\n  login bob\n  password pw\n  account x\n\
              default login anon password guest\n",
        )
        .unwrap();
        assert_eq!(n.for_host("mirror.example"), Some(("alice", "s3cret")));
        assert_eq!(n.for_host("other.example"), Some(("bob", "pw")));
        assert_eq!(n.for_host("elsewhere"), Some(("anon", "guest")));
        let n =
            parse_netrc(b"machine a login x password y\nmachine a login z password w\n").unwrap();
        assert_eq!(n.for_host("a"), Some(("x", "y")));
        assert_eq!(
            parse_netrc(b"machine a login x\n").unwrap().for_host("a"),
            Some(("x", ""))
        );
        assert!(parse_netrc(b"login x\n").is_err());
        assert!(parse_netrc(b"machine\n").is_err());
        assert!(parse_netrc(b"machine a frobnicate\n").is_err());
        assert_eq!(parse_netrc(b"").unwrap().for_host("a"), None);
    }

    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("trustfs-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("auth");
        std::fs::write(&f, "Authorization: Bearer t\n").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o604, false),
            (0o620, false),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(read_secret(&f).is_ok(), ok, "{mode:o}");
        }
        assert!(read_secret(&dir)
            .unwrap_err()
            .contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ca_files_must_hold_certificates() {
        assert!(pem_certificates(b"hello")
            .unwrap_err()
            .contains("no PEM certificate"));
        assert!(pem_certificates(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
    }
}
