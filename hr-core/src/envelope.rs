//! The change envelope: one change of one record, whatever the transport.

use crate::schema::{DataType, Record, RecordVisitor, SCHEMA};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;

/// The highest version an envelope may carry: 2^53.
///
/// The hub counts versions up by one per change and can never get near it,
/// while a version at the top of the integer range (2^63-1) would let one
/// forged or buggy delete freeze its key forever (nothing newer could ever
/// win). 2^53 is also the largest integer every JSON reader holds exactly.
pub const MAX_VERSION: u64 = 1 << 53;

/// What a change does to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Create or replace the record with the payload.
    Upsert,
    /// Remove the record (receivers keep a tombstone).
    Delete,
}

/// One change of one record, whatever the transport.
///
/// On the wire it is a JSON object:
///
/// ```json
/// {
///   "event_id": "7d0f…",                 // UUID v4, unique per emitted change
///   "data_type": "employee",             // employee | org_unit | master_data | permission | compensation
///   "key": "A-1001",                     // the record's unified key
///   "op": "upsert",                      // upsert | delete
///   "version": 3,                        // monotonic per (data_type, key), starting at 1
///   "occurred_at": "2026-11-24T05:00:00Z",
///   "origin": "hr-hub",                  // the system that published the change
///   "schema": "hr.v1",
///   "payload": { … }                     // the record (see the schema module); null for deletes
/// }
/// ```
///
/// A receiver applies a change only when its version is newer than what it
/// holds and keeps a tombstone for deletes, so duplicates, redelivery and
/// reordering never change the result.
///
/// ```
/// use hr_core::{ChangeEnvelope, DataType, MasterData};
/// let md = MasterData { set: "md.category".into(), code: "C01".into(), name: "Food".into(), attributes: Default::default() };
/// let change = ChangeEnvelope::upsert(DataType::MasterData, md.key(), 1, "sales", &md).unwrap();
/// let wire = change.to_json();
/// let back = ChangeEnvelope::from_json(wire.as_bytes()).unwrap();
/// assert_eq!(back.key, "md.category:C01");
/// back.validate().unwrap();
/// ```
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChangeEnvelope {
    /// Unique id of this emitted change (UUID).
    pub event_id: String,
    /// The kind of record.
    pub data_type: DataType,
    /// The record's unified key: 1 to 512 bytes of UTF-8 (the schema's
    /// length counts characters, so it is the loose bound).
    #[schemars(length(min = 1, max = 512))]
    pub key: String,
    /// Upsert or delete.
    pub op: Operation,
    /// Monotonic per (data type, key), starting at 1, at most [`MAX_VERSION`] (2^53).
    #[schemars(range(min = 1, max = 9_007_199_254_740_992u64))]
    pub version: u64,
    /// When the change was emitted.
    pub occurred_at: DateTime<Utc>,
    /// The publishing system.
    pub origin: String,
    /// Always [`SCHEMA`] for this version of the library.
    #[schemars(extend("const" = "hr.v1"))]
    pub schema: String,
    /// The record as JSON; `None` for deletes. A field its record type
    /// does not define is refused.
    #[schemars(with = "Option<serde_json::Value>")]
    pub payload: Option<Box<RawValue>>,
}

// Payloads may hold salaries and birth dates: Debug shows only the routing facts.
impl fmt::Debug for ChangeEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeEnvelope")
            .field("event_id", &self.event_id)
            .field("data_type", &self.data_type)
            .field("key", &self.key_for_logs())
            .field("op", &self.op)
            .field("version", &self.version)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ChangeEnvelope {
    fn eq(&self, other: &Self) -> bool {
        self.event_id == other.event_id
            && self.data_type == other.data_type
            && self.key == other.key
            && self.op == other.op
            && self.version == other.version
            && self.occurred_at == other.occurred_at
            && self.origin == other.origin
            && self.schema == other.schema
            && self.payload.as_ref().map(|p| p.get()) == other.payload.as_ref().map(|p| p.get())
    }
}

/// Why an envelope could not be built, decoded or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The bytes are not a JSON envelope. The message names the problem's
    /// kind, field and position, never the offending value.
    #[error("not a valid hr.v1 change envelope: {}", describe_json_error(.0))]
    Decode(#[source] serde_json::Error),
    /// The payload could not be serialized.
    #[error("payload of {data_type} could not be serialized: {source}")]
    Encode {
        /// The payload's data type.
        data_type: DataType,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The envelope is well-formed JSON but breaks a rule of the schema.
    #[error("invalid change envelope {event_id} ({data_type}): {problem}")]
    Invalid {
        /// The offending envelope's event id.
        event_id: String,
        /// Its data type.
        data_type: DataType,
        /// What is wrong.
        problem: String,
    },
}

impl ChangeEnvelope {
    /// An upsert of `record` under its own data type and key.
    pub fn of<R: Record>(record: &R, version: u64, origin: &str) -> Result<Self, EnvelopeError> {
        Self::upsert(R::DATA_TYPE, record.key(), version, origin, record)
    }

    /// Builds an upsert of `record` under `key` at `version`.
    pub fn upsert<T: Serialize>(data_type: DataType, key: impl Into<String>, version: u64, origin: &str, record: &T) -> Result<Self, EnvelopeError> {
        let payload = serde_json::value::to_raw_value(record).map_err(|source| EnvelopeError::Encode { data_type, source })?;
        Ok(Self::with_raw_payload(data_type, key.into(), version, origin, Some(payload)))
    }

    /// Builds a delete of `key` at `version`.
    pub fn delete(data_type: DataType, key: impl Into<String>, version: u64, origin: &str) -> Self {
        Self::with_raw_payload(data_type, key.into(), version, origin, None)
    }

    /// Builds an envelope around an already serialized payload (`None` = delete).
    pub fn with_raw_payload(data_type: DataType, key: String, version: u64, origin: &str, payload: Option<Box<RawValue>>) -> Self {
        ChangeEnvelope {
            event_id: Self::new_event_id(),
            data_type,
            key,
            op: if payload.is_some() { Operation::Upsert } else { Operation::Delete },
            version,
            occurred_at: Utc::now(),
            origin: origin.to_string(),
            schema: SCHEMA.to_string(),
            payload,
        }
    }

    /// A fresh event id (a random UUID).
    pub(crate) fn new_event_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// Serializes to the wire format.
    pub fn to_json(&self) -> String {
        // Every field serializes infallibly (strings, numbers, raw JSON).
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes one envelope from wire bytes (does not [`validate`](Self::validate)).
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        serde_json::from_slice(bytes).map_err(EnvelopeError::Decode)
    }

    /// Decodes and validates: what a receiver should call on untrusted bytes.
    pub fn decode_valid(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let envelope = Self::from_json(bytes)?;
        envelope.validate()?;
        Ok(envelope)
    }

    /// The payload's JSON text, if any.
    pub fn payload_json(&self) -> Option<&str> {
        self.payload.as_ref().map(|p| p.get())
    }

    /// The key as it may appear in logs: `[redacted]` for sensitive data
    /// types (a compensation key says whose salary the change carries).
    pub fn key_for_logs(&self) -> &str {
        self.data_type.shown_key(&self.key)
    }

    /// Checks the rules of `hr.v1`: schema name, non-empty key, version
    /// from 1 to [`MAX_VERSION`], a payload exactly for upserts, and a payload that parses as
    /// the data type's record whose own key equals the envelope key.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        self.canonical_payload().map(drop)
    }

    /// [`validate`](Self::validate)s and returns the body a sink stores: the
    /// payload parsed into its record type and serialized again, so fields
    /// outside the schema, duplicate keys and odd formatting never reach a
    /// store, and the content hash of the digest is the same wherever the
    /// record is held. `None` for deletes.
    pub fn canonical_payload(&self) -> Result<Option<String>, EnvelopeError> {
        let invalid = |problem: String| EnvelopeError::Invalid { event_id: self.event_id.clone(), data_type: self.data_type, problem };
        if self.schema != SCHEMA {
            return Err(invalid(format!("schema is {:?}, expected {SCHEMA:?}", self.schema)));
        }
        if self.key.is_empty() || self.key.len() > 512 {
            return Err(invalid("key must be 1 to 512 bytes".into()));
        }
        if self.version == 0 || self.version > MAX_VERSION {
            return Err(invalid("version must be between 1 and 2^53 (MAX_VERSION)".into()));
        }
        match (self.op, &self.payload) {
            (Operation::Delete, Some(p)) if p.get() != "null" => return Err(invalid("a delete must not carry a payload".into())),
            (Operation::Delete, _) => return Ok(None),
            (Operation::Upsert, None) => return Err(invalid("an upsert needs a payload".into())),
            (Operation::Upsert, Some(_)) => {}
        }
        let text = self.payload_json().unwrap_or("null");
        let (record_key, canonical) =
            self.data_type.visit(Canonical(text)).map_err(|e| invalid(format!("payload is not a valid {} record: {}", self.data_type, e)))?;
        if record_key != self.key {
            return Err(invalid(format!("payload belongs to key {:?}, not to the envelope key", self.data_type.shown_key(&record_key))));
        }
        Ok(Some(canonical))
    }
}

/// Parses a payload as its record type and serializes it again: the key and the canonical body.
pub(crate) struct Canonical<'a>(pub(crate) &'a str);

impl RecordVisitor for Canonical<'_> {
    /// The key and the canonical body, or what is wrong with the payload.
    type Output = Result<(String, String), String>;
    fn visit<R: Record>(self) -> Self::Output {
        let record: R = serde_json::from_str(self.0).map_err(|e| describe_json_error(&e))?;
        record.check().map_err(str::to_string)?;
        Ok((record.key(), serde_json::to_string(&record).map_err(|e| describe_json_error(&e))?))
    }
}

/// Describes a JSON error by kind and position only: serde's own messages
/// quote the offending value, which may be a salary or a birth date.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "wrong type, missing or unknown field",
        serde_json::error::Category::Eof => "unexpected end of input",
    };
    let message = e.to_string();
    // Field names are not sensitive and help the sender; values are cut off.
    let field = message.split("field `").nth(1).and_then(|rest| rest.split('`').next()).map(|f| format!(" (field `{f}`)")).unwrap_or_default();
    format!("{kind}{field} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compensation, Sensitive};

    fn pay() -> ChangeEnvelope {
        let c = Compensation {
            employee_id: "A-1".into(),
            base_salary: Sensitive::new(98_765_432),
            currency: "KRW".into(),
            effective_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        };
        ChangeEnvelope::upsert(DataType::Compensation, "A-1", 1, "hub", &c).unwrap()
    }

    #[test]
    fn debug_output_carries_no_payload_and_no_sensitive_key() {
        let text = format!("{:?}", pay());
        assert!(!text.contains("98765432") && !text.contains("A-1"), "{text}");
        assert!(text.contains("Compensation"), "{text}");
    }

    #[test]
    fn json_errors_name_the_field_but_not_the_value() {
        let e = serde_json::from_str::<Compensation>(r#"{"employee_id": "A-1", "base_salary": "98765432", "currency": "KRW", "effective_date": "2026-01-01"}"#)
            .unwrap_err();
        let text = describe_json_error(&e);
        assert!(!text.contains("98765432"), "{text}");
        assert!(text.contains("wrong type"), "{text}");
        let mut bad = pay();
        bad.payload = Some(serde_json::value::RawValue::from_string(r#"{"employee_id": "A-1", "base_salary": "98765432"}"#.into()).unwrap());
        let text = bad.validate().unwrap_err().to_string();
        assert!(!text.contains("98765432"), "{text}");
        let wire = pay().to_json().replace(r#""version":1"#, r#""version":"98765432""#);
        let text = ChangeEnvelope::from_json(wire.as_bytes()).unwrap_err().to_string();
        assert!(!text.contains("98765432") && text.contains("wrong type"), "{text}");
    }

    #[test]
    fn envelopes_are_equal_exactly_when_every_field_is() {
        let original = pay();
        assert_eq!(original, original.clone());
        type Edit = (&'static str, fn(&mut ChangeEnvelope));
        let edits: [Edit; 9] = [
            ("event_id", |e| e.event_id.push('x')),
            ("data_type", |e| e.data_type = DataType::Employee),
            ("key", |e| e.key.push('x')),
            ("op", |e| e.op = Operation::Delete),
            ("version", |e| e.version += 1),
            ("occurred_at", |e| e.occurred_at += chrono::Duration::seconds(1)),
            ("origin", |e| e.origin.push('x')),
            ("schema", |e| e.schema.push('x')),
            ("payload", |e| e.payload = None),
        ];
        for (field, edit) in edits {
            let mut edited = original.clone();
            edit(&mut edited);
            assert_ne!(original, edited, "envelopes differing in {field} compare equal");
        }
    }

    fn delete(key: &str, version: u64) -> ChangeEnvelope {
        ChangeEnvelope::delete(DataType::MasterData, key, version, "hub")
    }

    #[test]
    fn keys_of_1_to_512_bytes_and_versions_from_1_to_max_are_valid_and_nothing_beyond() {
        let (longest, too_long) = ("k".repeat(512), "k".repeat(513));
        let cases = [
            ("k", 1, true),
            (longest.as_str(), MAX_VERSION, true),
            ("", 1, false),
            (too_long.as_str(), 1, false),
            ("k", 0, false),
            ("k", MAX_VERSION + 1, false),
        ];
        for (key, version, valid) in cases {
            assert_eq!(delete(key, version).validate().is_ok(), valid, "key of {} bytes at version {version}", key.len());
        }
    }

    #[test]
    fn a_delete_may_carry_a_null_payload_but_no_record() {
        let mut change = delete("grade:G1", 2);
        change.payload = Some(RawValue::from_string("null".into()).unwrap());
        assert_eq!(change.canonical_payload().unwrap(), None);
        change.payload = Some(RawValue::from_string("{}".into()).unwrap());
        assert!(change.validate().unwrap_err().to_string().contains("a delete must not carry a payload"));
    }

    #[test]
    fn sensitive_keys_are_redacted_for_logs_and_others_are_not() {
        assert_eq!(pay().key_for_logs(), "[redacted]");
        assert_eq!(delete("grade:G1", 1).key_for_logs(), "grade:G1");
    }
}
