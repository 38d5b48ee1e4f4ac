//! A wrapper that keeps personal data out of logs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What every redacted value, key or secret shows instead of itself.
pub const REDACTED: &str = "[redacted]";

/// A value that must never appear in logs or `Debug` output: salary, birth
/// date, phone number, person key.
///
/// It serializes as the plain value (the data must reach the systems allowed
/// to hold it), but `Debug` and `Display` print `[redacted]`.
///
/// ```
/// use hr_core::Sensitive;
/// let phone = Sensitive::new("010-1234-5678".to_string());
/// assert_eq!(format!("{phone:?}"), "[redacted]");
/// assert_eq!(serde_json::to_string(&phone).unwrap(), "\"010-1234-5678\"");
/// assert_eq!(phone.expose(), "010-1234-5678");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// Borrows the value; call sites that do this are the places to audit.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The schema of the wrapped value, marked `"x-sensitive": true` so that
/// systems in other languages know which fields to keep out of their logs.
impl<T: schemars::JsonSchema> schemars::JsonSchema for Sensitive<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = T::json_schema(generator);
        if let Some(object) = schema.as_object_mut() {
            object.insert("x-sensitive".into(), true.into());
        }
        schema
    }
}
