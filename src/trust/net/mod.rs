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
//!   see `fetch/redirect.rs`), never logged, and their files must be private (no group or other
//!   permission bits) and owned by this user or root.
//!
//! The files, one concept each:
//! - `mod.rs` (this file): [`NetOptions`], [`Origin`] and [`Network`]: what the operator says,
//!   checked and loaded at start ([`Network::new`]), and what each request to an origin gets
//!   (proxy, credential headers, the notes a mount logs at start).
//! - `tls.rs`: the TLS configuration ([`Network::tls`]): trust store, `--ca-cert` files, the
//!   client certificate and key (checked to match).
//! - `proxy.rs`: which proxy an origin is reached through (`--proxy`, the environment,
//!   [`no_proxy_matches`]), proxy URLs checked, and [`redact`] for every URL shown.
//! - `auth_file.rs`: the header lines of an `--auth-file`.
//! - `netrc.rs`: the netrc format, as curl reads it.
//! - `files.rs`: reading the operator's files without blocking and within a size bound:
//!   certificates, and secrets ([`read_secret`]: private, in directories no one else can change).
//! - `watched.rs`: a secrets file read again whenever it changes (a rotated token).
//!
//! `mod.rs` uses all the others; `tls.rs` and `watched.rs` use `files.rs`; `tls.rs` uses the
//! [`Network`] of `mod.rs`, `proxy.rs` its [`Origin`]; `auth_file.rs`, `netrc.rs` and
//! `files.rs` use none of them.

mod auth_file;
mod files;
mod netrc;
mod proxy;
mod tls;
mod watched;

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

use ureq::tls::{Certificate, ClientCert, TlsConfig};

use auth_file::{parse_headers, Headers};
use files::read_public_file;
use netrc::{parse_netrc, Netrc};
use proxy::{check_proxy_url, ProxyChoice};
use tls::{client_cert, pem_certificates};
use watched::Watched;

pub use files::read_secret;
pub use proxy::{no_proxy_matches, redact};

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
