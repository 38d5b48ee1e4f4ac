//! The JSON Schemas in `schemas/` are the ones the Rust types generate, and
//! every envelope the hub produces for the demo's kind of data is valid
//! under `schemas/envelope.schema.json`, checked with the `jsonschema`
//! crate as a system in another language would: every data type, creates,
//! updates and deletes, and the copies sent to a target that goes without
//! phone numbers and birth dates. Envelopes that break the contract are not.

use hr_sync::hr_core::{
    load_input_dir, merge, schema_files, ChangeEnvelope, DataType, FieldScope, Ledger, Mapping, MergedState, PropagateError, Propagator, Receipt,
};
use hr_sync::{Hub, HubConfig};
use hr_testdata::{Dataset, GenerateOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

const CONFIG: &str = r#"
[routes]
employee = "recorder"
org_unit = "recorder"
master_data = "recorder"
permission = "recorder"
compensation = "recorder"

[targets.payroll]
data_types = ["employee", "org_unit", "master_data", "permission", "compensation"]

[targets.erp]
data_types = ["employee", "org_unit", "master_data", "permission"]
omit.employee = ["phone", "birth_date"]
"#;

fn erp_fields() -> FieldScope {
    FieldScope::full().omitting(DataType::Employee, ["phone", "birth_date"]).unwrap()
}

/// A transport that keeps every envelope it would put on the wire: each
/// change as payroll gets it and as erp gets it; and how many of erp's
/// copies lost fields.
#[derive(Default)]
struct Wire(Mutex<Vec<ChangeEnvelope>>, Mutex<usize>);

#[async_trait::async_trait]
impl Propagator for Wire {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        let mut wire = self.0.lock().unwrap();
        for change in batch {
            wire.push(change.clone());
            if change.data_type != DataType::Compensation {
                let scoped = erp_fields().apply(change).unwrap();
                if scoped.payload_json() != change.payload_json() {
                    *self.1.lock().unwrap() += 1;
                }
                wire.push(scoped.into_owned());
            }
        }
        Ok(Receipt::default())
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        let all = DataType::ALL.to_vec();
        let erp = all.iter().copied().filter(|t| *t != DataType::Compensation).collect();
        BTreeMap::from([("payroll".to_string(), all), ("erp".to_string(), erp)])
    }

    fn field_scope(&self, target: &str) -> FieldScope {
        if target == "erp" {
            erp_fields()
        } else {
            FieldScope::full()
        }
    }
}

fn merged(data: &Dataset, dir: &Path) -> MergedState {
    data.write(dir).unwrap();
    merge(load_input_dir(dir, &Mapping::default()).unwrap()).state
}

fn envelope_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string("schemas/envelope.schema.json").expect("schemas/envelope.schema.json exists");
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).expect("the envelope schema is a valid JSON Schema")
}

fn problems(validator: &jsonschema::Validator, envelope: &Value) -> Vec<String> {
    validator.iter_errors(envelope).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

#[test]
fn the_schema_files_are_the_ones_the_types_generate() {
    let generated = schema_files();
    for (name, schema) in &generated {
        let path = Path::new("schemas").join(name);
        let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default()).unwrap_or_default();
        assert_eq!(&committed, schema, "{} is stale: run `hr-sync schemas` (`cargo run -p hr-sync-cli -- schemas`)", path.display());
    }
    let names: Vec<String> = std::fs::read_dir("schemas").unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), generated.len(), "schemas/ holds exactly the generated files: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_envelope_the_hub_produces_is_valid_under_the_envelope_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig::from_toml_str(CONFIG, "schemas.toml").unwrap();
    let wire = Arc::new(Wire::default());
    let mut hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("recorder", wire.clone() as Arc<dyn Propagator>)]).unwrap();
    hub.allow_mass_delete(true);
    let mut data = Dataset::generate(&GenerateOptions::scaled(400));
    hub.sync(&merged(&data, &dir.path().join("first"))).await.unwrap();
    data.evolve(0.1, 20);
    hub.sync(&merged(&data, &dir.path().join("second"))).await.unwrap();

    let validator = envelope_validator();
    let sent = std::mem::take(&mut *wire.0.lock().unwrap());
    let mut seen: BTreeMap<(DataType, &str), usize> = BTreeMap::new();
    for change in &sent {
        let envelope: Value = serde_json::from_str(&change.to_json()).unwrap();
        let found = problems(&validator, &envelope);
        assert!(found.is_empty(), "{} {} v{}: {found:?}", change.data_type, change.key_for_logs(), change.version);
        *seen.entry((change.data_type, if change.payload.is_some() { "upsert" } else { "delete" })).or_default() += 1;
    }
    for t in DataType::ALL {
        assert!(seen.contains_key(&(t, "upsert")), "no {t} envelope was checked: {seen:?}");
    }
    assert!(seen.contains_key(&(DataType::Employee, "delete")), "no delete was checked: {seen:?}");
    let narrowed = *wire.1.lock().unwrap();
    assert!(narrowed > 100, "erp's copies without phone numbers and birth dates were checked: {narrowed}");
}

#[test]
fn envelopes_that_break_the_contract_are_invalid() {
    let validator = envelope_validator();
    let employee = json!({
        "id": "A-1", "source_ids": ["A-1"], "company": "A", "name": "김민수", "name_en": null, "email": null,
        "phone": "010-1234-5678", "birth_date": "1990-01-02", "org_unit": "A-D01", "grade": "G3", "status": "active",
        "hire_date": "2020-03-01", "termination_date": null, "manager": null, "updated_at": "2026-01-01T00:00:00Z"
    });
    let envelope = |data_type: &str, payload: Value| {
        json!({"event_id": "e-1", "data_type": data_type, "key": "A-1", "op": "upsert", "version": 1,
               "occurred_at": "2026-01-01T00:00:00Z", "origin": "hub", "schema": "hr.v1", "payload": payload})
    };
    assert!(problems(&validator, &envelope("employee", employee.clone())).is_empty(), "the valid one is valid");

    let mut fired = employee.clone();
    fired["status"] = json!("fired");
    let mut planted = employee.clone();
    planted["salary"] = json!(90_000_000);
    let mut unnamed = employee.clone();
    unnamed.as_object_mut().unwrap().remove("name");
    let mut too_new = envelope("employee", employee.clone());
    too_new["version"] = json!(1u64 << 54);
    let mut other_schema = envelope("employee", employee.clone());
    other_schema["schema"] = json!("hr.v2");
    for (what, bad) in [
        ("an unknown status", envelope("employee", fired)),
        ("a field the type does not define", envelope("employee", planted)),
        ("a required field missing", envelope("employee", unnamed)),
        ("an employee under data type org_unit", envelope("org_unit", employee.clone())),
        ("an unknown data type", envelope("salary", employee.clone())),
        ("a version above 2^53", too_new),
        ("another schema version", other_schema),
    ] {
        assert!(!problems(&validator, &bad).is_empty(), "{what} passed the schema");
    }
}
