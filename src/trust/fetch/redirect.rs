//! Where a redirect may lead: only within the mirror's origin (same scheme, host and port), so
//! credentials and trust never follow a mirror elsewhere; at most [`MAX_REDIRECTS`] per request.

use std::fmt;

use crate::trust::net::Origin;

/// Redirects followed per request, each only to the same scheme, host and port.
pub const MAX_REDIRECTS: usize = 5;

/// Where a redirect from `current` to `location` leads, if it stays within `origin`.
pub(super) fn redirect_target(
    origin: &Origin,
    current: &str,
    location: &str,
) -> Result<String, String> {
    let location = location.trim();
    if location.is_empty() {
        return Err("a redirect without a Location".into());
    }
    if location.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!(
            "a redirect to {location:?}: the location has control characters"
        ));
    }
    // Absolute only with a scheme in front (`/a?next=https://x` is a path on this origin).
    let has_scheme = location.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let absolute = if has_scheme {
        location.to_owned()
    } else if location.starts_with("//") {
        format!("{}:{location}", origin.scheme)
    } else if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        // Relative to the current URL's directory.
        let cut = current.split(['?', '#']).next().unwrap_or(current);
        match cut.rfind('/') {
            Some(i) => format!("{}{location}", &cut[..=i]),
            None => return Err(format!("a redirect to {location:?} cannot be resolved")),
        }
    };
    let leaves = |to: &dyn fmt::Display| {
        Err(format!(
            "a redirect to {absolute:?} leaves the mirror's origin {origin} (for {to}); not followed"
        ))
    };
    let scheme = absolute.split("://").next().unwrap_or("");
    if !scheme.eq_ignore_ascii_case(&origin.scheme) {
        return leaves(&format_args!("the scheme {scheme:?}"));
    }
    match Origin::of(&absolute) {
        Ok(o) if &o == origin => Ok(absolute),
        Ok(o) => leaves(&o),
        Err(e) => Err(format!("a redirect to {location:?} refused: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_in_a_redirects_query_is_no_scheme_change() {
        let origin = Origin::of("https://m.example/").unwrap();
        assert_eq!(
            redirect_target(&origin, "https://m.example/a/b", "/x?next=https://y").unwrap(),
            "https://m.example:443/x?next=https://y"
        );
        assert!(redirect_target(&origin, "https://m.example/a", "http://m.example/").is_err());
        assert!(redirect_target(&origin, "https://m.example/a", "HTTPS://evil.example/").is_err());
    }

    #[test]
    fn redirects_stay_within_the_origin() {
        let o = Origin::of("http://127.0.0.1:8080/targets/").unwrap();
        let cur = "http://127.0.0.1:8080/targets/a/b.txt";
        assert_eq!(
            redirect_target(&o, cur, "/other/b.txt").unwrap(),
            "http://127.0.0.1:8080/other/b.txt"
        );
        assert_eq!(
            redirect_target(&o, cur, "c.txt").unwrap(),
            "http://127.0.0.1:8080/targets/a/c.txt"
        );
        assert_eq!(
            redirect_target(&o, cur, "HTTP://127.0.0.1:8080/x").unwrap(),
            "HTTP://127.0.0.1:8080/x"
        );
        for bad in [
            "file:///etc/passwd",
            "https://127.0.0.1:8080/x",
            "http://127.0.0.1:8081/x",
            "http://evil.example/x",
            "//evil.example/x",
            "gopher://127.0.0.1:8080/x",
        ] {
            let e = redirect_target(&o, cur, bad).unwrap_err();
            assert!(e.contains("leaves the mirror's origin"), "{bad}: {e}");
        }
        assert!(redirect_target(&o, cur, "").is_err());
        assert!(redirect_target(&o, cur, "/a\nb").is_err());
        // The default port is the same origin as no port.
        let o80 = Origin::of("http://h/t/").unwrap();
        assert!(redirect_target(&o80, "http://h/t/x", "http://h:80/y").is_ok());
    }
}
