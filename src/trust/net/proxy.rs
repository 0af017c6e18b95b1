//! Which proxy an origin is reached through, as curl chooses: `--proxy`, else the scheme's
//! `*_proxy` variable, then `all_proxy`, never for a `no_proxy` host; proxy URLs checked before
//! use, and shown only [`redact`]ed.

use std::fmt;
use std::net::IpAddr;

use super::Origin;

/// Check a proxy URL: `http://` (or no scheme), `[user:password@]host[:port]`, an optional `/`
/// and nothing else. Errors never repeat the credentials.
pub(super) fn check_proxy_url(url: &str) -> Result<(), String> {
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
pub(super) struct ProxyChoice {
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
    pub(super) fn environment_urls(&self) -> Vec<(&'static str, &str)> {
        [
            ("http_proxy/HTTP_PROXY", &self.http),
            ("https_proxy/HTTPS_PROXY", &self.https),
            ("all_proxy/ALL_PROXY", &self.all),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_deref().map(|v| (n, v)))
        .collect()
    }

    pub(super) fn from_env(explicit: Option<String>) -> ProxyChoice {
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

    pub(super) fn for_origin(&self, origin: &Origin) -> Option<ureq::Proxy> {
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

    pub(super) fn describe(&self, origin: &Origin) -> Option<String> {
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
    use crate::trust::net::{NetOptions, Network};

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
}
