//! Checks a receiver makes on untrusted bytes before a sink sees them, and
//! the bounding of whatever an error answer echoes back.
//!
//! The sink's own validation parses each payload into its record type, which
//! silently skips fields the type does not know (an `ssn` planted in an
//! employee) and lets the last of two equal keys win inside a map. Those bytes
//! would reach the store verbatim, so the receiver refuses them first.

use hr_core::{ChangeEnvelope, Record, RecordVisitor};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Longest echo of one value (a field name, a schema string) in an error answer.
pub(crate) const ECHO_CHARS: usize = 64;
/// Longest message of an error answer.
pub(crate) const MESSAGE_CHARS: usize = 512;
/// Most unknown field names one answer lists.
const LISTED_FIELDS: usize = 5;

/// Cuts `text` to `max` characters, marking the cut with "…".
pub(crate) fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// Bounds a message built elsewhere (hr-core, serde_json): every quoted run
/// ("…" or `…`, where those messages put values and field names) to
/// [`ECHO_CHARS`], and the whole message to [`MESSAGE_CHARS`].
pub(crate) fn bound_echoes(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_CHARS * 4));
    let mut open: Option<char> = None;
    let mut inside = 0usize;
    // Debug-quoted values escape their own quotes: `\"` does not close the run.
    let mut escaped = false;
    for c in message.chars() {
        match open {
            Some(q) if c == q && !escaped => {
                open = None;
                out.push(c);
            }
            Some(_) => {
                escaped = !escaped && c == '\\';
                inside += 1;
                if inside <= ECHO_CHARS {
                    out.push(c);
                } else if inside == ECHO_CHARS + 1 {
                    out.push('…');
                }
            }
            None => {
                if c == '"' || c == '`' {
                    open = Some(c);
                    inside = 0;
                    escaped = false;
                }
                out.push(c);
            }
        }
    }
    bounded(&out, MESSAGE_CHARS)
}

/// Why a body was refused before any envelope was decoded.
pub(crate) enum Refusal {
    /// Not JSON, or nested deeper than serde_json's recursion limit (128).
    Malformed(serde_json::Error),
    /// An object holds the same key twice; the message names it.
    DuplicateKey(String),
}

/// Walks the whole body once: fails on an object holding a key twice, and,
/// through serde_json's recursion limit, on nesting deeper than 128, at any
/// depth (payloads and fields no type knows included) without deep recursion.
pub(crate) fn check_structure(body: &[u8]) -> Result<(), Refusal> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let walked = NoDuplicateKeys::deserialize(&mut deserializer).and_then(|_| deserializer.end());
    walked.map_err(|e| match e.classify() {
        // The walker accepts every JSON type, so its only data errors are its own.
        serde_json::error::Category::Data => Refusal::DuplicateKey(e.to_string()),
        _ => Refusal::Malformed(e),
    })
}

/// Any JSON value whose objects hold every key once.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(de::Error::custom(format!("duplicate key `{}`", bounded(&key, ECHO_CHARS))));
            }
            seen.insert(key);
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
}

/// The fields of `change`'s payload its record type does not know, as
/// dotted paths (`ssn`, `salary.note`); empty for deletes and for payloads
/// that do not parse (the sink's validation names those).
pub(crate) fn unknown_fields(change: &ChangeEnvelope) -> Vec<String> {
    let Some(text) = change.payload_json() else { return vec![] };
    change.data_type.visit(IgnoredFields(text))
}

/// The fields a payload holds that its record type would ignore.
struct IgnoredFields<'a>(&'a str);

impl RecordVisitor for IgnoredFields<'_> {
    type Output = Vec<String>;
    fn visit<R: Record>(self) -> Vec<String> {
        let mut ignored = vec![];
        let mut deserializer = serde_json::Deserializer::from_str(self.0);
        let parsed: Result<R, _> = serde_ignored::deserialize(&mut deserializer, |path| ignored.push(path.to_string()));
        if parsed.is_err() {
            return vec![];
        }
        ignored
    }
}

/// "`a`, `b` and 3 more", each name bounded.
pub(crate) fn list_fields(fields: &[String]) -> String {
    let mut listed: Vec<String> = fields.iter().take(LISTED_FIELDS).map(|f| format!("`{}`", bounded(f, ECHO_CHARS))).collect();
    if fields.len() > LISTED_FIELDS {
        listed.push(format!("{} more", fields.len() - LISTED_FIELDS));
    }
    listed.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_cut_at_64_characters_and_messages_at_512() {
        let long = "x".repeat(200_000);
        let message = bound_echoes(&format!("schema is \"{long}\", expected \"hr.v1\""));
        assert_eq!(message, format!("schema is \"{}…\", expected \"hr.v1\"", "x".repeat(64)));
        let quoted = format!("{:?}", format!("a\"{long}"));
        let message = bound_echoes(&format!("schema is {quoted}, expected \"hr.v1\""));
        assert!(message.ends_with("…\", expected \"hr.v1\"") && message.chars().count() < 100, "{message}");
        assert!(bound_echoes(&long).chars().count() <= MESSAGE_CHARS + 1);
    }

    #[test]
    fn up_to_five_fields_are_named_and_the_rest_counted() {
        let fields: Vec<String> = (1..=6).map(|i| format!("f{i}")).collect();
        assert_eq!(list_fields(&fields[..5]), "`f1`, `f2`, `f3`, `f4`, `f5`");
        assert_eq!(list_fields(&fields), "`f1`, `f2`, `f3`, `f4`, `f5`, 1 more");
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        assert!(check_structure(br#"[{"a": {"b": [1, {"c": 1, "d": 2}]}}]"#).is_ok());
        match check_structure(br#"[{"a": {"b": [1, {"c": 1, "c": 2}]}}]"#) {
            Err(Refusal::DuplicateKey(m)) => assert!(m.contains("duplicate key `c`"), "{m}"),
            _ => panic!("duplicate not found"),
        }
    }
}
