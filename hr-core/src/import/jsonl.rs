//! JSON-lines files: one JSON object per line.
//!
//! A line is parsed once, as strictly as into a `serde_json::Value` (the
//! same syntax errors, number range, escapes and nesting limit), but only
//! into its fields: a string without escapes stays borrowed from the line,
//! and no map or `String` per key is built.

use super::fields::{missing, prefixed_id, FieldError};
use super::reader::{for_each_record, FilePart, Format};
use super::ImportError;
use crate::json_text::Text;
use crate::quarantine::{Origin, Quarantined, Reason};
use compact_str::CompactString;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::path::Path;

/// A JSON-lines file, or a part of one; a line that is not a JSON object
/// is quarantined.
pub(crate) struct Jsonl(pub(crate) FilePart);

impl Jsonl {
    /// The whole file.
    pub(crate) const WHOLE: Jsonl = Jsonl(FilePart::WHOLE);
}

impl Format for Jsonl {
    type Row<'a> = JsonRow<'a>;

    fn for_each_row(
        &self,
        dir: &Path,
        file: &'static str,
        quarantined: &mut Vec<Quarantined>,
        each: &mut dyn FnMut(Origin, &JsonRow<'_>),
    ) -> Result<u64, ImportError> {
        let mut malformed = Vec::new();
        let lines = for_each_record(dir, file, self.0, quarantined, |line, text| {
            let origin = Origin { file, line };
            match JsonRow::parse(text) {
                Ok(row) => each(origin, &row),
                Err(detail) => malformed.push(origin.quarantine(None, Reason::MalformedRow, detail)),
            }
            Ok(())
        })?;
        quarantined.extend(malformed);
        Ok(lines)
    }
}

/// Typed access to one JSON object's fields, with errors that name the field.
pub(crate) struct JsonRow<'a>(Vec<(Cow<'a, str>, Field<'a>)>);

/// One field's value: text, borrowed from the line unless it holds
/// escapes, or any other value.
enum Field<'a> {
    Text(Cow<'a, str>),
    Other(Value),
}

impl<'a> JsonRow<'a> {
    /// The object on one line, or why the line is not one (naming where
    /// the JSON breaks).
    pub(crate) fn parse(text: &'a str) -> Result<Self, String> {
        match serde_json::from_str::<Line<'a>>(text) {
            Ok(Line::Object(row)) => Ok(row),
            Ok(Line::Other) => Err("line is JSON but not an object".to_string()),
            Err(e) => Err(format!("not valid JSON: {}", crate::describe_json_error(&e))),
        }
    }

    /// The field's value, unless absent or `null`. Of a key written twice
    /// the last counts, as in any JSON object reader.
    fn field(&self, field: &str) -> Option<&Field<'a>> {
        // Lengths and first bytes differ for most keys: cheaper than comparing each whole.
        let same = |key: &str| key.len() == field.len() && key.as_bytes().first() == field.as_bytes().first() && key == field;
        self.0.iter().rev().find(|(key, _)| same(key)).map(|(_, value)| value).filter(|v| !matches!(v, Field::Other(Value::Null)))
    }

    /// The field's value, unless absent or `null`.
    #[cfg(test)]
    pub(crate) fn present(&self, field: &str) -> Option<Value> {
        self.field(field).map(|value| match value {
            Field::Text(text) => Value::String(text.to_string()),
            Field::Other(other) => other.clone(),
        })
    }

    /// The field's text if it is a string, or else its value; `None` if
    /// absent or `null`.
    pub(crate) fn string(&self, field: &str) -> Option<Result<&str, &Value>> {
        self.field(field).map(|value| match value {
            Field::Text(text) => Ok(text.as_ref()),
            Field::Other(other) => Err(other),
        })
    }

    /// An id written as a number (`42`) or as a string (`"OU-42"`), after
    /// `prefix`: its text either way, so `42` and `"42"` name the same
    /// record.
    pub(crate) fn prefixed_id(&self, field: &str, prefix: &str) -> Result<Option<CompactString>, FieldError> {
        match self.string(field) {
            None => Ok(None),
            Some(Ok(s)) => prefixed_id(prefix, s.trim(), field),
            Some(Err(Value::Number(n))) => n
                .as_u64()
                .map(|n| Some(compact_str::format_compact!("{prefix}{n}")))
                .ok_or_else(|| (Reason::MalformedRow, format!("field `{field}` is a number but not a whole non-negative one"))),
            Some(Err(_)) => Err((Reason::MalformedRow, format!("field `{field}` is neither a number nor a string"))),
        }
    }

    /// [`prefixed_id`](Self::prefixed_id), which must be there.
    pub(crate) fn required_prefixed_id(&self, field: &str, prefix: &str) -> Result<CompactString, FieldError> {
        self.prefixed_id(field, prefix)?.ok_or_else(|| missing(field))
    }

    /// The field's text, trimmed and borrowed; `None` if absent, `null` or blank.
    pub(crate) fn text_ref(&self, field: &str) -> Result<Option<&str>, FieldError> {
        match self.string(field) {
            None => Ok(None),
            Some(Ok(s)) => Ok(Some(s.trim()).filter(|s| !s.is_empty())),
            Some(Err(_)) => Err((Reason::MalformedRow, format!("field `{field}` is not a string"))),
        }
    }
    /// [`text_ref`](Self::text_ref), which must be there.
    pub(crate) fn required_text_ref(&self, field: &str) -> Result<&str, FieldError> {
        self.text_ref(field)?.ok_or_else(|| missing(field))
    }
    /// [`text_ref`](Self::text_ref) owned, for a value kept.
    pub(crate) fn text(&self, field: &str) -> Result<Option<CompactString>, FieldError> {
        self.text_ref(field).map(|text| text.map(CompactString::from))
    }
    /// [`text`](Self::text), which must be there.
    pub(crate) fn required_text(&self, field: &str) -> Result<CompactString, FieldError> {
        self.required_text_ref(field).map(CompactString::from)
    }
    pub(crate) fn bool(&self, field: &str) -> Result<bool, FieldError> {
        match self.field(field) {
            None => Err(missing(field)),
            Some(Field::Other(Value::Bool(b))) => Ok(*b),
            Some(_) => Err((Reason::MalformedRow, format!("field `{field}` is not true or false"))),
        }
    }
}

/// A line: an object's fields, or the fact that it holds other JSON.
enum Line<'a> {
    Object(JsonRow<'a>),
    Other,
}

impl<'de> Deserialize<'de> for Line<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LineVisitor;
        impl<'de> Visitor<'de> for LineVisitor {
            type Value = Line<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Text(key), value)) = map.next_entry::<Text<'de>, Field<'de>>()? {
                    fields.push((key, value));
                }
                Ok(Line::Object(JsonRow(fields)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Line<'de>, A::Error> {
                // Read to the end: invalid JSON further in must still be reported as such.
                while seq.next_element::<Field<'de>>()?.is_some() {}
                Ok(Line::Other)
            }
            fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Line<'de>, E> {
                Ok(Line::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Line<'de>, E> {
                Ok(Line::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Line<'de>, E> {
                Ok(Line::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Line<'de>, E> {
                Ok(Line::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Line<'de>, E> {
                Ok(Line::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Line<'de>, E> {
                Ok(Line::Other)
            }
            fn visit_unit<E>(self) -> Result<Line<'de>, E> {
                Ok(Line::Other)
            }
        }
        deserializer.deserialize_any(LineVisitor)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Builds what `serde_json::Value`'s own visitor would, but keeps text borrowed.
        struct FieldVisitor;
        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(text.to_string())))
            }
            fn visit_string<E>(self, text: String) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(text)))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::Number(n.into())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::Number(n.into())))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Field<'de>, E> {
                Ok(Field::Other(Number::from_f64(n).map_or(Value::Null, Value::Number)))
            }
            fn visit_unit<E>(self) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Field::Other)
            }
        }
        deserializer.deserialize_any(FieldVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What reading the line into a `serde_json::Value` says of it.
    fn as_a_value_tree_would(text: &str) -> Result<(), String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(_)) => Ok(()),
            Ok(_) => Err("line is JSON but not an object".to_string()),
            Err(e) => Err(format!("not valid JSON: {}", crate::describe_json_error(&e))),
        }
    }

    #[test]
    fn fields_read_as_before_a_value_tree_would() {
        let row = JsonRow::parse(r#"{"a": " x ", "n": 42, "e": "A\u00e9\"", "z": null, "b": true, "a": "last", "o": {"k": 1}, "neg": -3, "f": 1.0}"#).unwrap();
        assert_eq!(row.text("a").unwrap().as_deref(), Some("last"), "a key written twice: the last counts");
        assert_eq!(row.prefixed_id("n", "").unwrap().as_deref(), Some("42"));
        assert_eq!(row.text("e").unwrap().as_deref(), Some("Aé\""), "escapes resolved");
        assert_eq!(row.text("z").unwrap(), None);
        assert!(row.present("z").is_none() && row.present("missing").is_none());
        assert!(row.bool("b").unwrap());
        assert!(row.bool("n").is_err() && row.bool("z").is_err());
        assert!(matches!(row.present("o"), Some(Value::Object(_))));
        assert!(row.text("n").is_err() && row.text("o").is_err());
        assert!(row.prefixed_id("neg", "").unwrap_err().1.contains("whole non-negative"));
        assert!(row.prefixed_id("f", "").unwrap_err().1.contains("whole non-negative"));
        assert!(row.prefixed_id("o", "").unwrap_err().1.contains("neither a number nor a string"));
    }

    #[test]
    fn keys_alike_in_length_and_first_letter_are_told_apart_and_blank_text_is_absent() {
        let row = JsonRow::parse(r#"{"ab": "first", "ac": "second", "w": "   ", "i": " "}"#).unwrap();
        assert_eq!(row.text("ab").unwrap().as_deref(), Some("first"));
        assert_eq!(row.text("ac").unwrap().as_deref(), Some("second"));
        assert_eq!(row.text("w").unwrap(), None, "blank text is no value");
        assert_eq!(row.prefixed_id("i", "").unwrap(), None, "a blank id is no id");
        assert!(row.text("a").unwrap().is_none() && row.text("abc").unwrap().is_none());
    }

    #[test]
    fn a_bad_line_is_described_as_a_value_tree_would() {
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(200), "]".repeat(200));
        for line in [
            "[1, 2]",
            "17",
            "\"text\"",
            "[1, 2",
            "[1] x",
            "1.5.3",
            r#"{"a": 1"#,
            r#"{"a": 1} x"#,
            r#"{"a": -"#,
            r#"{"a": 1e"#,
            r#"{"a": 1e400}"#,
            r#"{"leave": "\udc00"}"#,
            r#"{"salary": {"amount": 5000, "x": 1e400}}"#,
            r#"[1e400]"#,
            &deep,
            r#"{"\u0061": "escaped key"}"#,
        ] {
            assert_eq!(JsonRow::parse(line).map(|_| ()), as_a_value_tree_would(line), "{line}");
        }
        assert!(JsonRow::parse(r#"{"\u0061": "escaped key"}"#).unwrap().text("a").unwrap().is_some());
    }

    proptest! {
        #[test]
        fn any_line_is_accepted_or_refused_as_a_value_tree_would(line in r#"[{}\[\]":, 0-9a-eEu.\\-]{0,40}"#) {
            prop_assert_eq!(JsonRow::parse(&line).map(|_| ()), as_a_value_tree_would(&line));
        }

        #[test]
        fn any_object_reads_as_a_value_tree_would(fields in proptest::collection::vec(("[ab]", prop_oneof![
            Just(Value::Null), any::<bool>().prop_map(Value::Bool), any::<i64>().prop_map(Value::from), any::<f64>().prop_map(Value::from),
            "[ a-z\\\\\"é]{0,6}".prop_map(Value::String), Just(serde_json::json!({"k": [1, "x"]})),
        ]), 0..4)) {
            let line = format!("{{{}}}", fields.iter().map(|(k, v)| format!("{:?}: {v}", k)).collect::<Vec<_>>().join(", "));
            let tree: serde_json::Map<String, Value> = serde_json::from_str(&line).unwrap();
            let row = JsonRow::parse(&line).unwrap();
            for key in ["a", "b"] {
                prop_assert_eq!(row.present(key), tree.get(key).filter(|v| !v.is_null()).cloned(), "{}", line);
            }
        }
    }
}
