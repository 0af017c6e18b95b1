//! Canonical JSON as securesystemslib (and so python-tuf) produces it: object keys sorted by code
//! point, no whitespace, strings with only `\` and `"` escaped (everything else, control characters
//! and PEM newlines included, is written raw as UTF-8), integers only.
//!
//! Compact `serde_json` output is *not* canonical: it escapes `\n` and other control characters,
//! which breaks signatures over PEM-encoded keys. Signatures are always checked over this form of
//! the *parsed* `signed` value, so unknown fields are covered too.

use serde_json::Value;

/// A value that has no canonical JSON form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalError(pub String);

impl std::fmt::Display for CanonicalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no canonical JSON form: {}", self.0)
    }
}

impl std::error::Error for CanonicalError {}

/// Serialize `value` in canonical JSON.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(4096);
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(CanonicalError(format!(
                    "floating-point number {n} (only integers are allowed)"
                )));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // serde_json's Map is a BTreeMap (no preserve_order feature), which iterates in
            // byte order of the UTF-8 keys: the same as code point order. Sort anyway so a
            // feature flag elsewhere in the build can never change signatures.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        String::from_utf8(to_canonical(&v).unwrap()).unwrap()
    }

    #[test]
    fn keys_sorted_no_whitespace() {
        assert_eq!(
            canon(json!({"b": 1, "a": [true, null, -3], "B": {}})),
            r#"{"B":{},"a":[true,null,-3],"b":1}"#
        );
    }

    #[test]
    fn only_backslash_and_quote_are_escaped() {
        // securesystemslib: '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'
        assert_eq!(canon(json!("a\"b\\c")), r#""a\"b\\c""#);
        assert_eq!(
            canon(json!("line1\nline2\ttab\u{1}")),
            "\"line1\nline2\ttab\u{1}\""
        );
    }

    #[test]
    fn pem_newlines_are_raw() {
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n";
        assert_eq!(
            canon(json!({"public": pem})),
            format!("{{\"public\":\"{pem}\"}}")
        );
    }

    #[test]
    fn unicode_is_raw_utf8_and_sorted_by_code_point() {
        // "é" (U+00E9) sorts after "z" (U+007A); "😀" (U+1F600) after "é".
        assert_eq!(
            canon(json!({"😀": 3, "é": 2, "z": 1})),
            "{\"z\":1,\"é\":2,\"😀\":3}"
        );
    }

    #[test]
    fn large_integers_kept_floats_refused() {
        assert_eq!(canon(json!(u64::MAX)), u64::MAX.to_string());
        assert_eq!(canon(json!(i64::MIN)), i64::MIN.to_string());
        assert!(to_canonical(&json!({"x": 1.5})).is_err());
    }

    #[test]
    fn parsed_escapes_are_normalised() {
        // "\u0041" in the source text is the letter A once parsed; the canonical form is raw.
        let v: Value = serde_json::from_str(r#"{"k":"\u0041\/\n"}"#).unwrap();
        assert_eq!(canon(v), "{\"k\":\"A/\n\"}");
    }
}
