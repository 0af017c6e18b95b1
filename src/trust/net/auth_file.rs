//! The header lines of an `--auth-file` (`Authorization: Bearer …`): checked so that a file can
//! neither frame the request nor leak its secrets into an error message.

/// The most header lines an auth file may set.
const MAX_AUTH_HEADERS: usize = 32;

/// Header lines of an auth file, in order.
#[derive(Debug, Default)]
pub(super) struct Headers(pub(super) Vec<(String, String)>);

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
pub(super) fn parse_headers(bytes: &[u8]) -> Result<Headers, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
