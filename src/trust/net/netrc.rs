//! The netrc format as curl reads it: basic-auth login and password per host, from `--netrc`
//! or `--netrc-file`.

use std::collections::BTreeMap;

/// The machines of a netrc file: host → (login, password); `default` under the empty name.
#[derive(Debug, Default)]
pub(super) struct Netrc(BTreeMap<String, (String, String)>);

impl Netrc {
    pub(super) fn for_host(&self, host: &str) -> Option<(&str, &str)> {
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
pub(super) fn parse_netrc(bytes: &[u8]) -> Result<Netrc, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::net::auth_file::parse_headers;

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
}
