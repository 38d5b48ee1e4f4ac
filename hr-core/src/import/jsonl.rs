//! JSON-lines files: one JSON object per line.
//!
//! A line is split into its fields with each value left as written
//! ([`RawValue`]); a parser then reads only the fields it asks for, and text
//! without escapes is borrowed from the line. No tree of `serde_json::Value`
//! is built for a line, nor a `String` for each key.

use super::fields::{check_id, missing, FieldError};
use super::reader::{for_each_record, Format};
use super::ImportError;
use crate::quarantine::{Origin, Quarantined, Reason};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::path::Path;

/// A JSON-lines file; a line that is not a JSON object is quarantined.
pub(crate) struct Jsonl;

impl Format for Jsonl {
    type Row<'a> = JsonRow<'a>;

    fn for_each_row(
        &self,
        dir: &Path,
        file: &'static str,
        quarantined: &mut Vec<Quarantined>,
        each: &mut dyn FnMut(Origin, &JsonRow<'_>),
    ) -> Result<(), ImportError> {
        let mut malformed = Vec::new();
        for_each_record(dir, file, quarantined, |line, text| {
            let origin = Origin { file, line };
            match JsonRow::parse(text) {
                Ok(row) => each(origin, &row),
                Err(detail) => malformed.push(origin.quarantine(None, Reason::MalformedRow, detail)),
            }
            Ok(())
        })?;
        quarantined.extend(malformed);
        Ok(())
    }
}

/// Typed access to one JSON object's fields, with errors that name the field.
pub(crate) struct JsonRow<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> JsonRow<'a> {
    /// The object on one line, or why the line is not one (naming where
    /// the JSON breaks).
    pub(crate) fn parse(text: &'a str) -> Result<Self, String> {
        match serde_json::from_str::<JsonRow<'a>>(text) {
            Ok(row) => Ok(row),
            // Told apart only on the rare bad line: valid JSON of another kind, or no JSON.
            Err(e) => match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => Err("line is JSON but not an object".to_string()),
                Err(_) => Err(format!("not valid JSON: {}", crate::describe_json_error(&e))),
            },
        }
    }

    /// The field's value as written, unless absent or `null`. Of a key
    /// written twice the last counts, as in any JSON object reader.
    fn raw(&self, field: &str) -> Option<&'a RawValue> {
        // Lengths and first bytes differ for most keys: cheaper than comparing each whole.
        let same = |key: &str| key.len() == field.len() && key.as_bytes().first() == field.as_bytes().first() && key == field;
        self.0.iter().rev().find(|(key, _)| same(key)).map(|(_, value)| *value).filter(|v| v.get() != "null")
    }

    /// The field's value, unless absent or `null`.
    pub(crate) fn present(&self, field: &str) -> Option<Value> {
        self.raw(field).and_then(|raw| serde_json::from_str(raw.get()).ok())
    }

    /// The field's text if it is a string (escapes resolved), or else the
    /// value to report on; `None` if absent or `null`.
    fn string(&self, field: &str) -> Option<Result<Cow<'a, str>, Value>> {
        let raw = self.raw(field)?.get();
        // A value the line held as valid JSON parses again, as what it is.
        Some(match raw.starts_with('"') {
            true => serde_json::from_str::<Text<'a>>(raw).map(|Text(text)| text).map_err(|_| Value::Null),
            false => Err(serde_json::from_str(raw).unwrap_or(Value::Null)),
        })
    }

    /// An id written as a number (`42`) or as a string (`"OU-42"`): its text
    /// either way, so `42` and `"42"` name the same record.
    pub(crate) fn id(&self, field: &str) -> Result<Option<String>, FieldError> {
        match self.string(field) {
            None => Ok(None),
            Some(Ok(s)) if s.trim().is_empty() => Ok(None),
            Some(Ok(s)) => check_id(s.trim(), field).map(|id| Some(id.to_string())),
            Some(Err(Value::Number(n))) => n
                .as_u64()
                .map(|n| Some(n.to_string()))
                .ok_or_else(|| (Reason::MalformedRow, format!("field `{field}` is a number but not a whole non-negative one"))),
            Some(Err(_)) => Err((Reason::MalformedRow, format!("field `{field}` is neither a number nor a string"))),
        }
    }
    pub(crate) fn required_id(&self, field: &str) -> Result<String, FieldError> {
        self.id(field)?.ok_or_else(|| missing(field))
    }
    pub(crate) fn text(&self, field: &str) -> Result<Option<String>, FieldError> {
        match self.string(field) {
            None => Ok(None),
            Some(Ok(s)) if s.trim().is_empty() => Ok(None),
            Some(Ok(s)) => Ok(Some(s.trim().to_string())),
            Some(Err(_)) => Err((Reason::MalformedRow, format!("field `{field}` is not a string"))),
        }
    }
    pub(crate) fn required_text(&self, field: &str) -> Result<String, FieldError> {
        self.text(field)?.ok_or_else(|| missing(field))
    }
    pub(crate) fn bool(&self, field: &str) -> Result<bool, FieldError> {
        match self.raw(field).map(RawValue::get) {
            None => Err(missing(field)),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err((Reason::MalformedRow, format!("field `{field}` is not true or false"))),
        }
    }
}

impl<'de> Deserialize<'de> for JsonRow<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = JsonRow<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonRow<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Text(key), value)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    fields.push((key, value));
                }
                Ok(JsonRow(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A JSON string, borrowed from the input unless it holds escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Chars;
        impl<'de> Visitor<'de> for Chars {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_string())))
            }
        }
        deserializer.deserialize_str(Chars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_before_a_value_tree_would() {
        let row = JsonRow::parse(r#"{"a": " x ", "n": 42, "e": "A\u00e9\"", "z": null, "b": true, "a": "last", "o": {"k": 1}, "neg": -3}"#).unwrap();
        assert_eq!(row.text("a").unwrap().as_deref(), Some("last"), "a key written twice: the last counts");
        assert_eq!(row.id("n").unwrap().as_deref(), Some("42"));
        assert_eq!(row.text("e").unwrap().as_deref(), Some("Aé\""), "escapes resolved");
        assert_eq!(row.text("z").unwrap(), None);
        assert!(row.present("z").is_none() && row.present("missing").is_none());
        assert!(row.bool("b").unwrap());
        assert!(row.bool("n").is_err() && row.bool("z").is_err());
        assert!(matches!(row.present("o"), Some(Value::Object(_))));
        assert!(row.text("n").is_err() && row.text("o").is_err());
        assert!(row.id("neg").unwrap_err().1.contains("whole non-negative"));
        assert!(row.id("o").unwrap_err().1.contains("neither a number nor a string"));
    }

    #[test]
    fn a_line_that_is_not_an_object_says_which_it_is() {
        assert_eq!(JsonRow::parse("[1, 2]").err().unwrap(), "line is JSON but not an object");
        assert_eq!(JsonRow::parse("17").err().unwrap(), "line is JSON but not an object");
        assert!(JsonRow::parse(r#"{"a": 1"#).err().unwrap().starts_with("not valid JSON"));
        assert!(JsonRow::parse(r#"{"a": 1} x"#).err().unwrap().starts_with("not valid JSON"));
        assert!(JsonRow::parse(r#"{"\u0061": "escaped key"}"#).unwrap().text("a").unwrap().is_some());
    }
}
