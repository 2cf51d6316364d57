//! Text as Swift (Python) writes it: `json.dumps` JSON with fields in their order, and XML
//! escaping as ElementTree and `saxutils.escape` do. Clients parse these, but a sidecar that
//! answers for Swift should not be told apart by its bytes.

use serde::{Deserialize, Serialize};

/// A JSON object with its fields in the order they came or were made (Python dicts keep
/// insertion order; `serde_json::Map` would sort them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object(Vec<(String, serde_json::Value)>);

impl Object {
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn name(&self) -> Option<&str> {
        self.get("name").and_then(|v| v.as_str())
    }

    pub fn subdir(&self) -> Option<&str> {
        self.get("subdir").and_then(|v| v.as_str())
    }

    pub fn number(&self, key: &str) -> u64 {
        self.get(key).and_then(|v| v.as_u64()).unwrap_or(0)
    }

    pub fn set_name(&mut self, name: String) {
        if let Some(slot) = self.0.iter_mut().find(|(k, _)| k == "name") {
            slot.1 = serde_json::Value::String(name);
        }
    }

    pub fn new_subdir(dir: String) -> Object {
        Object(vec![("subdir".into(), serde_json::Value::String(dir))])
    }

    /// Sets a field, in place when present (its position kept), else at the end.
    pub fn set(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    pub fn from_pairs(pairs: Vec<(String, serde_json::Value)>) -> Object {
        Object(pairs)
    }
}

impl Serialize for Object {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Object, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Object;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<Object, M::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                    fields.push((k, v));
                }
                Ok(Object(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// XML text (`&`, `<`, `>`) or attribute (also quotes and whitespace controls) escaping.
pub fn xml_escape(text: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' if attribute => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#09;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON as Python's `json.dumps` writes it (Swift's listings and bulk answers): `", "` and `": "` separators, non-ASCII escaped.
pub fn dumps<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let compact = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    let mut out = String::with_capacity(compact.len() + compact.len() / 8);
    let mut in_string = false;
    let mut escaped = false;
    for c in compact.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            ',' => out.push_str(", "),
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_written_like_python() {
        let r: Vec<Object> =
            serde_json::from_str(r#"[{"name":"a,b:é","count":1,"bytes":2,"last_modified":"x"}]"#)
                .expect("json");
        assert_eq!(
            String::from_utf8(dumps(&r)).expect("utf8"),
            r#"[{"name": "a,b:\u00e9", "count": 1, "bytes": 2, "last_modified": "x"}]"#
        );
    }
}
