//! Least privilege for fields: which fields of a record type a target must
//! not receive, and the copy of a change it gets instead.
//!
//! A target that holds employees need not hold their phone numbers and
//! birth dates. Its [`FieldScope`] names the fields it goes without; every
//! path to it (a REST request, its own Kafka topic, a repair) carries the
//! scoped copy, its digests compare the scoped content, and its
//! [`ScopedSink`](crate::ScopedSink) drops what it should never have been
//! sent. Only optional fields can be omitted: a record without them is
//! still a valid record, so every receiver reads it unchanged.

use crate::envelope::{Canonical, ChangeEnvelope, EnvelopeError};
use crate::json_text::RawFields;
use crate::schema::{DataType, Record, RecordVisitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The fields of each data type a target must not receive; by default none.
///
/// In a configuration file it is a target's `omit` table:
///
/// ```
/// use hr_core::{DataType, FieldScope};
/// let scope: FieldScope = toml::from_str(r#"employee = ["phone", "birth_date"]"#).unwrap();
/// assert_eq!(scope.omitted(DataType::Employee), ["birth_date", "phone"]);
/// assert_eq!(scope.audience(DataType::Employee).as_deref(), Some("without-birth_date-phone"));
/// assert_eq!(scope.audience(DataType::OrgUnit), None);
///
/// let typo = toml::from_str::<FieldScope>(r#"employee = ["phnoe"]"#).unwrap_err();
/// assert!(typo.to_string().contains("employee has no field \"phnoe\""), "{typo}");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<DataType, Vec<String>>", into = "BTreeMap<DataType, Vec<String>>")]
pub struct FieldScope {
    /// Per data type, the omitted fields, sorted, without duplicates; no
    /// entry for a type that keeps every field.
    omitted: BTreeMap<DataType, Vec<String>>,
}

/// A field a target was told to go without that it cannot go without.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldScopeError {
    /// The record type has no such field (a typo).
    #[error("{data_type} has no field {field:?}; the fields a target can go without are: {omittable}")]
    UnknownField {
        /// The record type.
        data_type: DataType,
        /// The name given.
        field: String,
        /// The optional fields, comma-separated.
        omittable: String,
    },
    /// The field is required: a record without it is not a valid record.
    #[error(
        "field {field:?} of {data_type} is required, so every target that receives {data_type} receives it; only optional fields can be omitted ({omittable})"
    )]
    Required {
        /// The record type.
        data_type: DataType,
        /// The required field.
        field: String,
        /// The optional fields, comma-separated.
        omittable: String,
    },
    /// A payload to scope is not a record of its data type.
    #[error("a {data_type} payload could not be scoped: {problem}")]
    Payload {
        /// The payload's data type.
        data_type: DataType,
        /// What is wrong with it.
        problem: String,
    },
}

impl FieldScope {
    /// Every field of every data type.
    pub fn full() -> Self {
        FieldScope::default()
    }

    /// This scope, and without `fields` of `data_type` too.
    pub fn omitting<I, F>(mut self, data_type: DataType, fields: I) -> Result<Self, FieldScopeError>
    where
        I: IntoIterator<Item = F>,
        F: Into<String>,
    {
        let fields: Vec<String> = fields.into_iter().map(Into::into).collect();
        let (properties, optional) = data_type.visit(FieldsOf);
        let omittable = || optional.join(", ");
        for field in &fields {
            if !properties.contains(field) {
                return Err(FieldScopeError::UnknownField { data_type, field: field.clone(), omittable: omittable() });
            }
            if !optional.contains(field) {
                return Err(FieldScopeError::Required { data_type, field: field.clone(), omittable: omittable() });
            }
        }
        let omitted = self.omitted.entry(data_type).or_default();
        omitted.extend(fields);
        omitted.sort();
        omitted.dedup();
        if omitted.is_empty() {
            self.omitted.remove(&data_type);
        }
        Ok(self)
    }

    /// The fields of `data_type` omitted, sorted.
    pub fn omitted(&self, data_type: DataType) -> &[String] {
        self.omitted.get(&data_type).map_or(&[], Vec::as_slice)
    }

    /// The data types that lose fields.
    pub fn narrowed_types(&self) -> impl Iterator<Item = DataType> + '_ {
        self.omitted.keys().copied()
    }

    /// The name of everyone who gets `data_type` with exactly these fields
    /// omitted (`without-<field>-<field>`), or `None` for the full record.
    /// Targets of one audience share a Kafka topic and the ledger's hashes.
    pub fn audience(&self, data_type: DataType) -> Option<String> {
        let omitted = self.omitted.get(&data_type)?;
        Some(format!("without-{}", omitted.join("-")))
    }

    /// The copy of `change` this scope admits: the same change without the
    /// omitted fields, its payload in canonical form (as a receiver stores
    /// it). Borrowed when nothing is omitted from it.
    pub fn apply<'a>(&self, change: &'a ChangeEnvelope) -> Result<Cow<'a, ChangeEnvelope>, EnvelopeError> {
        let Some(payload) = change.payload_json() else { return Ok(Cow::Borrowed(change)) };
        let scoped = self.scoped_payload(change.data_type, payload).map_err(|e| EnvelopeError::Invalid {
            event_id: change.event_id.clone(),
            data_type: change.data_type,
            problem: e.to_string(),
        })?;
        match scoped {
            Cow::Borrowed(_) => Ok(Cow::Borrowed(change)),
            Cow::Owned(scoped) => {
                let raw = RawValue::from_string(scoped).map_err(|source| EnvelopeError::Encode { data_type: change.data_type, source })?;
                let mut copy = change.clone();
                copy.payload = Some(raw);
                Ok(Cow::Owned(copy))
            }
        }
    }

    /// [`apply`](Self::apply) for a change whose payload is in canonical form
    /// already, as the hub serializes every record: the omitted fields'
    /// values become `null` in the text itself, which is then exactly the
    /// canonical copy, without parsing the record. Any other payload still
    /// loses the fields' values, but keeps its own form.
    pub fn apply_to_canonical<'a>(&self, change: &'a ChangeEnvelope) -> Result<Cow<'a, ChangeEnvelope>, EnvelopeError> {
        let omitted = self.omitted(change.data_type);
        let Some(payload) = change.payload_json().filter(|_| !omitted.is_empty()) else { return Ok(Cow::Borrowed(change)) };
        let invalid = |problem: String| EnvelopeError::Invalid { event_id: change.event_id.clone(), data_type: change.data_type, problem };
        let fields: RawFields<'_> = serde_json::from_str(payload).map_err(|e| invalid(format!("not a JSON object: {}", crate::describe_json_error(&e))))?;
        // A key written twice is no canonical payload: the parsing path keeps the last.
        if fields.0.iter().enumerate().any(|(i, (key, _))| fields.0[..i].iter().any(|(seen, _)| seen == key)) {
            return self.apply(change);
        }
        let mut text = String::with_capacity(payload.len());
        text.push('{');
        for (i, (key, value)) in fields.0.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(key.as_ref()).map_err(|e| invalid(crate::describe_json_error(&e)))?);
            text.push(':');
            text.push_str(if omitted.iter().any(|f| f == key) { "null" } else { value.get() });
        }
        text.push('}');
        let raw = RawValue::from_string(text).map_err(|source| EnvelopeError::Encode { data_type: change.data_type, source })?;
        Ok(Cow::Owned(ChangeEnvelope {
            event_id: change.event_id.clone(),
            data_type: change.data_type,
            key: change.key.clone(),
            op: change.op,
            version: change.version,
            occurred_at: change.occurred_at,
            origin: change.origin.clone(),
            schema: change.schema.clone(),
            payload: Some(raw),
        }))
    }

    /// `payload`, a record of `data_type`, without the omitted fields and in
    /// canonical form; borrowed when nothing is omitted from the type.
    pub fn scoped_payload<'a>(&self, data_type: DataType, payload: &'a str) -> Result<Cow<'a, str>, FieldScopeError> {
        let omitted = self.omitted(data_type);
        if omitted.is_empty() {
            return Ok(Cow::Borrowed(payload));
        }
        let invalid = |problem: String| FieldScopeError::Payload { data_type, problem };
        let mut fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(payload).map_err(|e| invalid(format!("not a JSON object: {}", crate::describe_json_error(&e))))?;
        omitted.iter().for_each(|field| drop(fields.remove(field)));
        let without = serde_json::to_string(&fields).map_err(|e| invalid(crate::describe_json_error(&e)))?;
        let (_, canonical) = data_type.visit(Canonical(&without)).map_err(invalid)?;
        Ok(Cow::Owned(canonical))
    }

    /// The omitted fields `change` carries with a value: what a receiver
    /// with this scope must not store.
    pub fn carried(&self, change: &ChangeEnvelope) -> Vec<String> {
        let omitted = self.omitted(change.data_type);
        let Some(payload) = change.payload_json().filter(|_| !omitted.is_empty()) else { return vec![] };
        // Each field's text as it came, not parsed into values: a receiver asks this of every change.
        let Ok(fields) = serde_json::from_str::<RawFields<'_>>(payload) else { return vec![] };
        omitted.iter().filter(|f| fields.0.iter().any(|(key, value)| key == f.as_str() && value.get() != "null")).cloned().collect()
    }
}

impl TryFrom<BTreeMap<DataType, Vec<String>>> for FieldScope {
    type Error = FieldScopeError;

    fn try_from(omitted: BTreeMap<DataType, Vec<String>>) -> Result<Self, Self::Error> {
        omitted.into_iter().try_fold(FieldScope::full(), |scope, (data_type, fields)| scope.omitting(data_type, fields))
    }
}

impl From<FieldScope> for BTreeMap<DataType, Vec<String>> {
    fn from(scope: FieldScope) -> Self {
        scope.omitted
    }
}

/// A record type's fields and, of those, the optional ones, as its JSON
/// Schema says.
struct FieldsOf;

impl RecordVisitor for FieldsOf {
    type Output = (Vec<String>, Vec<String>);
    fn visit<R: Record>(self) -> Self::Output {
        let schema = schemars::schema_for!(R);
        let names = |value: Option<&serde_json::Value>| -> Vec<String> {
            match value {
                Some(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
                Some(serde_json::Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
                _ => vec![],
            }
        };
        let properties = names(schema.get("properties"));
        let required = names(schema.get("required"));
        // Nullable as well as not required: a field with a serde default (an empty map) would come back as a value.
        let nullable = |name: &str| schema.get("properties").and_then(|p| p.get(name)).is_some_and(allows_null);
        let optional = properties.iter().filter(|p| !required.contains(p) && nullable(p)).cloned().collect();
        (properties, optional)
    }
}

/// Whether a property's schema admits `null`: `"type": [.., "null"]`, or
/// an `anyOf`/`oneOf` with a `null` branch (an optional reference).
fn allows_null(property: &serde_json::Value) -> bool {
    let null_type = |t: &serde_json::Value| t == "null" || t.as_array().is_some_and(|types| types.iter().any(|t| t == "null"));
    let null_branch = |key: &str| property.get(key).and_then(|v| v.as_array()).is_some_and(|branches| branches.iter().any(allows_null));
    property.get("type").is_some_and(null_type) || null_branch("anyOf") || null_branch("oneOf")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Company, Employee, EmployeeStatus};
    use crate::Sensitive;

    fn employee() -> Employee {
        Employee {
            id: "A-1".into(),
            source_ids: vec!["A-1".into()],
            company: Company::A,
            name: "김민수".into(),
            name_en: None,
            email: Some("a1@example.com".into()),
            phone: Some(Sensitive::new("010-1234-5678".into())),
            birth_date: Some(Sensitive::new("1990-01-02".parse().unwrap())),
            org_unit: "A-D01".into(),
            grade: "G3".into(),
            status: EmployeeStatus::Active,
            hire_date: "2020-03-01".parse().unwrap(),
            termination_date: None,
            manager: None,
            updated_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn without_phone_and_birth_date() -> FieldScope {
        FieldScope::full().omitting(DataType::Employee, ["phone", "birth_date"]).unwrap()
    }

    #[test]
    fn the_scoped_copy_is_the_record_without_the_fields_in_canonical_form() {
        let change = ChangeEnvelope::of(&employee(), 3, "hub").unwrap();
        let scoped = without_phone_and_birth_date().apply(&change).unwrap().into_owned();
        let expected = Employee { phone: None, birth_date: None, ..employee() };
        assert_eq!(scoped.payload_json().unwrap(), serde_json::to_string(&expected).unwrap());
        assert_eq!((scoped.key.as_str(), scoped.version, scoped.data_type), ("A-1", 3, DataType::Employee));
        assert_eq!(scoped.canonical_payload().unwrap().as_deref(), scoped.payload_json(), "a receiver stores it unchanged");
    }

    #[test]
    fn a_canonical_payload_is_scoped_in_its_text_to_the_same_copy() {
        let scope = without_phone_and_birth_date();
        for record in [employee(), Employee { phone: None, name: "Kim \"Q\" \u{e9}\n".into(), ..employee() }] {
            let change = ChangeEnvelope::of(&record, 3, "hub").unwrap();
            let fast = scope.apply_to_canonical(&change).unwrap();
            let parsed = scope.apply(&change).unwrap();
            assert_eq!(fast.payload_json(), parsed.payload_json());
            assert_eq!((fast.event_id.as_str(), fast.key.as_str(), fast.version), (change.event_id.as_str(), "A-1", 3));
        }
        let delete = ChangeEnvelope::delete(DataType::Employee, "A-1", 4, "hub");
        assert!(matches!(scope.apply_to_canonical(&delete).unwrap(), Cow::Borrowed(_)));
        let change = ChangeEnvelope::of(&employee(), 3, "hub").unwrap();
        assert!(matches!(FieldScope::full().apply_to_canonical(&change).unwrap(), Cow::Borrowed(_)));
        // Not canonical (spaced, reordered): the values still go, the form stays.
        let mut loose = change.clone();
        loose.payload = Some(RawValue::from_string(r#"{ "phone" : "010", "id": "A-1" }"#.into()).unwrap());
        assert_eq!(scope.apply_to_canonical(&loose).unwrap().payload_json(), Some(r#"{"phone":null,"id":"A-1"}"#));
        assert!(scope.carried(&scope.apply_to_canonical(&loose).unwrap()).is_empty());
        let mut twice = change.clone();
        let doubled = change.payload_json().unwrap().replacen('{', r#"{"name":"first","#, 1);
        twice.payload = Some(RawValue::from_string(doubled).unwrap());
        assert_eq!(scope.apply_to_canonical(&twice).unwrap().payload_json(), scope.apply(&twice).unwrap().payload_json(), "the last of a doubled key counts");
    }

    #[test]
    fn other_types_deletes_and_full_scopes_borrow_the_change() {
        let change = ChangeEnvelope::of(&employee(), 3, "hub").unwrap();
        assert!(matches!(FieldScope::full().apply(&change).unwrap(), Cow::Borrowed(_)));
        let delete = ChangeEnvelope::delete(DataType::Employee, "A-1", 4, "hub");
        assert!(matches!(without_phone_and_birth_date().apply(&delete).unwrap(), Cow::Borrowed(_)));
        let unit_scope = FieldScope::full().omitting(DataType::OrgUnit, ["leader"]).unwrap();
        assert!(matches!(unit_scope.apply(&change).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn carried_names_only_omitted_fields_with_a_value() {
        let scope = without_phone_and_birth_date();
        let change = ChangeEnvelope::of(&Employee { birth_date: None, ..employee() }, 1, "hub").unwrap();
        assert_eq!(scope.carried(&change), ["phone"]);
        let scoped = scope.apply(&change).unwrap().into_owned();
        assert!(scope.carried(&scoped).is_empty());
        assert!(FieldScope::full().carried(&change).is_empty());
    }

    #[test]
    fn required_and_unknown_fields_are_refused_naming_the_optional_ones() {
        let err = FieldScope::full().omitting(DataType::Employee, ["name"]).unwrap_err();
        assert!(matches!(err, FieldScopeError::Required { .. }), "{err}");
        assert!(err.to_string().contains("\"name\" of employee is required") && err.to_string().contains("phone"), "{err}");
        let err = FieldScope::full().omitting(DataType::Employee, ["phnoe"]).unwrap_err();
        assert!(matches!(err, FieldScopeError::UnknownField { .. }), "{err}");
        assert!(err.to_string().contains("birth_date"), "{err}");
    }

    #[test]
    fn only_nullable_fields_can_be_omitted() {
        // A map with a serde default is not required, but a copy without it would hold `{}`, not nothing.
        let err = FieldScope::full().omitting(DataType::MasterData, ["attributes"]).unwrap_err();
        assert!(matches!(err, FieldScopeError::Required { .. }), "{err}");
        FieldScope::full().omitting(DataType::OrgUnit, ["company", "leader"]).expect("an optional reference and an optional string");
    }

    #[test]
    fn omitting_sorts_merges_and_drops_empty_lists() {
        let scope = FieldScope::full().omitting(DataType::Employee, ["phone"]).unwrap().omitting(DataType::Employee, ["birth_date", "phone"]).unwrap();
        assert_eq!(scope.omitted(DataType::Employee), ["birth_date", "phone"]);
        let empty = FieldScope::full().omitting(DataType::Employee, Vec::<String>::new()).unwrap();
        assert_eq!(empty, FieldScope::full());
        assert_eq!(empty.audience(DataType::Employee), None);
        assert_eq!(scope.narrowed_types().collect::<Vec<_>>(), [DataType::Employee]);
    }
}
