//! JSON-lines files: one JSON object per line.

use super::fields::{check_id, missing, FieldError};
use super::reader::{for_each_record, Format};
use super::ImportError;
use crate::quarantine::{Origin, Quarantined, Reason};
use serde_json::{Map, Value};
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
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(object)) => each(origin, &JsonRow(&object)),
                Ok(_) => malformed.push(origin.quarantine(None, Reason::MalformedRow, "line is JSON but not an object")),
                Err(e) => malformed.push(origin.quarantine(None, Reason::MalformedRow, format!("not valid JSON: {}", crate::describe_json_error(&e)))),
            }
            Ok(())
        })?;
        quarantined.extend(malformed);
        Ok(())
    }
}

/// Typed access to one JSON object's fields, with errors that name the field.
pub(crate) struct JsonRow<'a>(&'a Map<String, Value>);

impl<'a> JsonRow<'a> {
    pub(crate) fn new(object: &'a Map<String, Value>) -> Self {
        JsonRow(object)
    }
    pub(crate) fn present(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }
    /// An id written as a number (`42`) or as a string (`"OU-42"`): its text
    /// either way, so `42` and `"42"` name the same record.
    pub(crate) fn id(&self, field: &str) -> Result<Option<String>, FieldError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|n| Some(n.to_string()))
                .ok_or_else(|| (Reason::MalformedRow, format!("field `{field}` is a number but not a whole non-negative one"))),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => check_id(s.trim(), field).map(|id| Some(id.to_string())),
            Some(_) => Err((Reason::MalformedRow, format!("field `{field}` is neither a number nor a string"))),
        }
    }
    pub(crate) fn required_id(&self, field: &str) -> Result<String, FieldError> {
        self.id(field)?.ok_or_else(|| missing(field))
    }
    pub(crate) fn text(&self, field: &str) -> Result<Option<String>, FieldError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(_) => Err((Reason::MalformedRow, format!("field `{field}` is not a string"))),
        }
    }
    pub(crate) fn required_text(&self, field: &str) -> Result<String, FieldError> {
        self.text(field)?.ok_or_else(|| missing(field))
    }
    pub(crate) fn bool(&self, field: &str) -> Result<bool, FieldError> {
        match self.present(field) {
            None => Err(missing(field)),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err((Reason::MalformedRow, format!("field `{field}` is not true or false"))),
        }
    }
}
