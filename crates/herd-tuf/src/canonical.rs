//! Canonical JSON as TUF signs it (the OLPC form python-tuf's securesystemslib writes): object
//! keys sorted by code point, no whitespace, strings escaping only `\` and `"`, integers only.
//! Two implementations that disagree on one byte disagree on every signature, so this follows
//! `securesystemslib.formats.encode_canonical` exactly.

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("canonical JSON has no floating-point numbers, found {0}")]
    Float(String),
}

/// The canonical encoding of `value`.
pub fn encode(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            if number.is_f64() {
                return Err(CanonicalError::Float(number.to_string()));
            }
            out.extend_from_slice(number.to_string().as_bytes());
        }
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // serde_json's map may keep insertion order: sort here. Rust orders strings by
            // their UTF-8 bytes, which is code point order, as Python's sort is.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for byte in text.bytes() {
        if byte == b'\\' || byte == b'"' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(value: Value) -> String {
        String::from_utf8(encode(&value).unwrap()).unwrap()
    }

    #[test]
    fn keys_are_sorted_and_nothing_is_spaced() {
        assert_eq!(
            canonical(json!({"b": [1, true, null], "a": {"d": "x", "c": -3}})),
            r#"{"a":{"c":-3,"d":"x"},"b":[1,true,null]}"#
        );
    }

    #[test]
    fn only_backslash_and_quote_are_escaped() {
        // securesystemslib leaves control characters and non-ASCII as they are.
        assert_eq!(
            canonical(json!({"k": "a\"b\\c\nd\u{e9}"})),
            "{\"k\":\"a\\\"b\\\\c\nd\u{e9}\"}"
        );
    }

    #[test]
    fn keys_sort_by_code_point() {
        assert_eq!(
            canonical(json!({"\u{e9}": 1, "z": 2, "Z": 3, "a": 4})),
            "{\"Z\":3,\"a\":4,\"z\":2,\"\u{e9}\":1}"
        );
    }

    #[test]
    fn floats_have_no_canonical_form() {
        assert!(matches!(
            encode(&json!({"x": 1.5})),
            Err(CanonicalError::Float(_))
        ));
    }
}
