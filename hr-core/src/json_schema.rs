//! JSON Schema (draft 2020-12) of the change envelope and of every record
//! type, derived from the Rust types with `schemars`, for systems written
//! in other languages: a Kafka consumer validates what it reads against
//! [`envelope_schema`], and the REST receiver's OpenAPI document embeds it.
//! Fields marked `"x-sensitive": true` hold personal data to keep out of logs.

use crate::envelope::ChangeEnvelope;
use crate::schema::{DataType, Record, RecordVisitor};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Value};

/// The schema of one record type: what an envelope's `payload` holds.
pub fn record_schema(data_type: DataType) -> Value {
    data_type.visit(RootSchema)
}

/// The schema of a change envelope, each record type under `$defs`: an
/// envelope of data type `employee` carries an `Employee` payload (or
/// `null`, a delete), and so on.
pub fn envelope_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let payload_rules: Vec<Value> = DataType::ALL
        .iter()
        .map(|t| {
            let record = t.visit(Reference(&mut generator));
            json!({
                "if": {"properties": {"data_type": {"const": t.as_str()}}},
                "then": {"properties": {"payload": {"anyOf": [record, {"type": "null"}]}}}
            })
        })
        .collect();
    let mut schema = generator.into_root_schema_for::<ChangeEnvelope>();
    schema.insert("$id".into(), json!(format!("https://hr-sync.example/schemas/{}", ENVELOPE_FILE)));
    schema.insert("allOf".into(), Value::Array(payload_rules));
    schema.to_value()
}

/// The file the envelope's schema is written to.
pub const ENVELOPE_FILE: &str = "envelope.schema.json";

/// Every schema as the files of a `schemas/` directory: the envelope's,
/// then one per record type (`employee.schema.json`, ...).
pub fn schema_files() -> Vec<(String, Value)> {
    let mut files = vec![(ENVELOPE_FILE.to_string(), envelope_schema())];
    files.extend(DataType::ALL.iter().map(|t| (format!("{}.schema.json", t.as_str()), record_schema(*t))));
    files
}

struct RootSchema;

impl RecordVisitor for RootSchema {
    type Output = Value;
    fn visit<R: Record>(self) -> Value {
        SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<R>().to_value()
    }
}

/// Adds a record type's definition to the generator; a `$ref` to it.
struct Reference<'a>(&'a mut SchemaGenerator);

impl RecordVisitor for Reference<'_> {
    type Output = Value;
    fn visit<R: Record>(self) -> Value {
        self.0.subschema_for::<R>().to_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_schema_defines_every_record_type_and_ties_each_to_its_data_type() {
        let schema = envelope_schema();
        for name in ["Employee", "OrgUnit", "MasterData", "PermissionGrant", "Compensation"] {
            assert!(schema["$defs"][name].is_object(), "{name} is defined");
        }
        assert_eq!(schema["allOf"].as_array().unwrap().len(), DataType::ALL.len());
        assert_eq!(schema["allOf"][0]["then"]["properties"]["payload"]["anyOf"][0]["$ref"], "#/$defs/Employee");
        assert_eq!(schema["properties"]["version"]["maximum"], crate::MAX_VERSION, "the schema's bound is the library's");
        assert_eq!(schema["properties"]["schema"]["const"], crate::SCHEMA);
    }

    #[test]
    fn sensitive_fields_are_marked_and_optional_ones_are_not_required() {
        let employee = record_schema(DataType::Employee);
        assert_eq!(employee["properties"]["phone"]["x-sensitive"], true, "{employee}");
        let required: Vec<&str> = employee["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(required.contains(&"id") && !required.contains(&"phone"), "{required:?}");
    }
}
