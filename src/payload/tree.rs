//! A JSON tree that borrows its strings from the body.
//!
//! The parser reads only a few dozen fields of each body, so decoding into
//! `serde_json::Value` (an owned `String` for every key and string, a `BTreeMap` for every
//! object) costs more than everything else the parser does. This tree keeps strings as slices
//! of the body wherever they hold no escapes, and objects as their entries in body order. The
//! body is still read by serde_json's deserializer, so what counts as JSON, the nesting limit
//! and the error messages are serde_json's.
//!
//! Lookups follow `serde_json::Map`: of two equal keys the later one wins, and entries are
//! listed in key order ([`Object::entries`]), so the parser reads the same fields either way.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// A JSON value whose strings borrow from the body they were read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as serde_json reads it.
    Number(Number),
    /// A string; borrowed unless it held escapes.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Json<'a>>),
    /// An object.
    Object(Object<'a>),
}

/// A JSON object: its entries in body order, duplicates included.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Json<'a> {
    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// How deeply this value nests: 1 for a scalar or an empty container. Recursive: serde_json
    /// refuses bodies nested deeper than 128 before a tree exists.
    pub fn depth(&self) -> usize {
        1 + match self {
            Json::Array(items) => items.iter().map(Json::depth).max().unwrap_or(0),
            Json::Object(o) => o.0.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }
}

impl<'a> Object<'a> {
    /// The value of `key`; of repeated keys, the last.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The entry whose key equals `key` ignoring ASCII case; of several such keys the first
    /// in key order, and of repeats of that key the last.
    pub fn get_ignore_case(&self, key: &str) -> Option<&Json<'a>> {
        let found = self.0.iter().filter(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(k, _)| k).min()?;
        self.get(found)
    }

    /// The distinct keys with their (last) values, in key order.
    pub fn entries(&self) -> Vec<(&str, &Json<'a>)> {
        let mut entries: Vec<(&str, &Json<'a>)> = Vec::with_capacity(self.0.len());
        // Walking backwards keeps the last of repeated keys; the stable sort keeps it first.
        for (k, v) in self.0.iter().rev() {
            entries.push((k, v));
        }
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        entries
    }

    /// Whether the object has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A string that borrows from the body when it can: object keys.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonVisitor;
        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
                Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
                Ok(Json::String(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
                Ok(Json::String(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
                Ok(Json::String(Cow::Owned(s)))
            }
            fn visit_unit<E>(self) -> Result<Json<'de>, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json<'de>, E> {
                Ok(Json::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((Text(k), v)) = map.next_entry()? {
                    entries.push((k, v));
                }
                Ok(Json::Object(Object(entries)))
            }
        }
        deserializer.deserialize_any(JsonVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Json<'_> {
        serde_json::from_str(body).expect("valid JSON")
    }

    #[test]
    fn strings_borrow_from_the_body_unless_escaped() {
        let v = read(r#"{"plain": "web1", "escaped": "a\"b"}"#);
        let o = v.as_object().expect("an object");
        assert!(matches!(o.get("plain"), Some(Json::String(Cow::Borrowed("web1")))));
        assert!(matches!(o.get("escaped"), Some(Json::String(Cow::Owned(s))) if s == "a\"b"));
    }

    #[test]
    fn lookups_agree_with_serde_json_maps() {
        // Repeated keys: serde_json keeps the last; keys are listed in order.
        let body = r#"{"b": 1, "A": 2, "a": 3, "b": 4, "Host": "x", "HOST": "y"}"#;
        let tree = read(body);
        let o = tree.as_object().expect("an object");
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body).expect("valid JSON");
        assert_eq!(o.entries().len(), map.len());
        let keys: Vec<&str> = o.entries().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, map.keys().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.get("b"), Some(&Json::Number(4.into())));
        // Case-insensitive: the first such key in key order, as a walk over the map finds it.
        let expected = map.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")).map(|(_, v)| v.clone());
        let got = o.get_ignore_case("host").map(|v| match v {
            Json::String(s) => serde_json::Value::String(s.to_string()),
            _ => serde_json::Value::Null,
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn numbers_and_depth() {
        let v = read(r#"[1, -2, 18446744073709551615, 2.5, [[[]]], {"a": {"b": null}}]"#);
        let items = v.as_array().expect("an array");
        assert_eq!(items[2], Json::Number(u64::MAX.into()));
        assert_eq!(items[3], Json::Number(Number::from_f64(2.5).expect("finite")));
        assert_eq!(v.depth(), 4);
        assert_eq!(read("7").depth(), 1);
    }
}
