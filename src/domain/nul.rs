//! NUL characters in client input. PostgreSQL text cannot hold them (the statement would
//! fail with a server error), and no name, search or message needs one, so every input
//! that carries one is refused with a 400 before any work.

use serde_json::Value;

/// Whether raw JSON text has a string holding NUL. JSON can only spell one as the escape
/// `\u0000` (a raw NUL byte is not valid JSON), and every backslash starts an escape, so
/// one pass that skips escapes finds them all, without parsing or allocating.
pub fn json_has_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json.get(i + 1..i + 6) == Some(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// The name of the innermost field whose key or string value (at any depth) holds a NUL.
pub fn field_with_nul(v: &Value) -> Option<String> {
    fn walk(v: &Value, name: &str) -> Option<String> {
        match v {
            Value::String(s) if s.contains('\0') => Some(name.to_owned()),
            Value::Array(items) => items.iter().find_map(|i| walk(i, name)),
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                if k.contains('\0') {
                    Some(k.replace('\0', ""))
                } else {
                    walk(v, k)
                }
            }),
            _ => None,
        }
    }
    walk(v, "body")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_escaped_nul_is_found_and_an_escaped_backslash_is_not_one() {
        assert!(json_has_nul(br#"{"a":"x\u0000"}"#));
        assert!(json_has_nul(br#"{"a\u0000":1}"#));
        assert!(!json_has_nul(br#"{"a":"x\\u0000"}"#));
        assert!(json_has_nul(br#"{"a":"x\\\u0000"}"#));
        assert!(json_has_nul(br#"{"a":"\u00001"}"#));
        assert!(!json_has_nul(br#"{"a":"plain \" quote","b":"\u0001"}"#));
    }

    #[test]
    fn the_field_holding_a_nul_is_named() {
        assert_eq!(
            field_with_nul(&json!({ "ok": "x", "search": "a\u{0}b" })),
            Some("search".to_owned())
        );
        assert_eq!(
            field_with_nul(&json!({ "conversations": { "x": ["a", "\u{0}"] } })),
            Some("x".to_owned())
        );
        assert_eq!(field_with_nul(&json!("a\u{0}")), Some("body".to_owned()));
        assert_eq!(field_with_nul(&json!({ "a": "b" })), None);
    }
}
