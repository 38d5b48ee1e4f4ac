use serde_json::{json, Value};

/// How a digest is computed, for receivers written in other languages.
const DIGEST_ALGORITHM: &str = "content hash = first 16 bytes of SHA-256 of the stored JSON body (the canonical body: the record parsed and serialized again); \
entry hash = SHA-256(key length as u64 LE, key UTF-8 bytes, version as u64 LE, 1 byte: 1 for a tombstone else 0, 16-byte content hash or 16 zero bytes for a tombstone); \
hash = lane-wise wrapping sum of all entry hashes read as four u64 LE lanes, written as 4 x 16 hex digits (lane 0 first); \
count = live records, tombstones = deleted records.";

/// The OpenAPI 3.1 description of the receiver (whose JSON Schema dialect is
/// draft 2020-12: the envelope's schema is `hr_core`'s, its definitions
/// moved into `components/schemas`), as served at `/hr/v1/openapi.json`.
pub fn document() -> Value {
    let mut doc = described();
    let (envelope, definitions) = envelope_with_definitions();
    let schemas = doc["components"]["schemas"].as_object_mut().expect("the document has component schemas");
    schemas.insert("Envelope".into(), envelope);
    schemas.extend(definitions);
    doc
}

/// The envelope's schema with its `$defs` taken out, and every reference
/// to them pointed at `components/schemas`, where OpenAPI tools look.
fn envelope_with_definitions() -> (Value, serde_json::Map<String, Value>) {
    let mut envelope = hr_core::envelope_schema();
    let object = envelope.as_object_mut().expect("a schema object");
    let definitions = match object.remove("$defs") {
        Some(Value::Object(defs)) => defs,
        _ => serde_json::Map::new(),
    };
    object.remove("$schema");
    object.remove("$id");
    let mut all = Value::Object(definitions);
    repoint(&mut envelope);
    repoint(&mut all);
    let Value::Object(definitions) = all else { unreachable!("built as an object") };
    (envelope, definitions)
}

fn repoint(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                match inner {
                    Value::String(target) if key == "$ref" => *target = target.replace("#/$defs/", "#/components/schemas/"),
                    other => repoint(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(repoint),
        _ => {}
    }
}

/// The document without the envelope's schema.
fn described() -> Value {
    let error = json!({"type": "object", "required": ["error", "message"], "properties": {"error": {"type": "string"}, "message": {"type": "string"}}});
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "HR change receiver", "version": "1.1.0", "description": "Applies hr.v1 change envelopes to a target system's store. Only newer versions win; deletes leave tombstones; repeated idempotency keys change nothing. Every error answer is a JSON Error."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": error,
                "Digest": {"type": "object", "required": ["count", "tombstones", "hash"], "description": DIGEST_ALGORITHM,
                    "properties": {"count": {"type": "integer"}, "tombstones": {"type": "integer"}, "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
                "Entry": {"type": "object", "required": ["key", "version"], "properties": {
                    "key": {"type": "string"}, "version": {"type": "integer", "minimum": 1},
                    "content": {"type": ["string", "null"], "pattern": "^[0-9a-f]{32}$", "description": "First 16 bytes of SHA-256 of the stored body; null for a tombstone"}}}
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/hr/v1/changes": {"post": {
                "summary": "Apply a batch of changes atomically",
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false, "description": "Bound to the SHA-256 of the body: the same key with the same body gets the first answer and applies nothing; with another body, 422", "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[\\x20-\\x7e]+$"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Envelope"}}}}},
                "responses": {
                    "200": {"description": "Every change is held: `applied` were newer than what the store held, `stale` were not (duplicates, late arrivals) and changed nothing; `out_of_scope` were not stored because this system may not hold them (a grant for another system); `fields_dropped` were stored without fields this system may not hold (a phone number sent to a system that goes without it)", "content": {"application/json": {"schema": {"type": "object", "required": ["applied", "stale"], "properties": {"applied": {"type": "integer"}, "stale": {"type": "integer"}, "out_of_scope": {"type": "integer"}, "fields_dropped": {"type": "integer"}}}}}},
                    "400": err("Malformed JSON (malformed_json), a key twice in one object (duplicate_key), fields hr.v1 does not define (unknown_fields), an invalid envelope (invalid_envelope) or a bad Idempotency-Key; nothing applied. Echoed values are cut at 64 characters, messages at 512"),
                    "401": err("Missing or wrong bearer token; answered before any of the body is read"),
                    "403": err("A data type this system does not accept; nothing applied"),
                    "408": err("The request did not complete within the receiver's request timeout; retrying is safe"),
                    "413": err("Body over the receiver's limit (announced or sent); nothing applied"),
                    "415": err("Content-Type is not application/json; answered before any of the body is read"),
                    "422": err("The Idempotency-Key was already used with another body; nothing applied"),
                    "503": err("Busy (too many requests or body bytes in flight) or the store is unavailable; retry after Retry-After seconds")}}},
            "/hr/v1/digest": {"get": {"summary": "Digest per data type, from the digests the system maintains as it applies changes unless scan=full",
                "parameters": [{"name": "scan", "in": "query", "required": false, "schema": {"type": "string", "enum": ["full"]},
                    "description": "full: read and hash everything the system holds now (sees edits its store could not report)"}],
                "responses": {
                "200": {"description": "Digests", "content": {"application/json": {"schema": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Digest"}}}}},
                "400": err("scan is not `full`"),
                "401": err("Missing or wrong bearer token"),
                "503": err("The store is unavailable")}}},
            "/hr/v1/digest/{data_type}/buckets": {"get": {"summary": "One data type's digest per key bucket (256 buckets; a key's bucket is the first byte of SHA-256 of the key)",
                "parameters": [{"name": "data_type", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "256 digests, bucket 0 first", "content": {"application/json": {"schema": {"type": "object", "required": ["buckets"], "properties": {"buckets": {"type": "array", "minItems": 256, "maxItems": 256, "items": {"$ref": "#/components/schemas/Digest"}}}}}}},
                    "401": err("Missing or wrong bearer token"),
                    "403": err("A data type this system does not accept"),
                    "404": err("No such data type"),
                    "503": err("The store is unavailable")}}},
            "/hr/v1/entries/{data_type}": {"get": {"summary": "The entries (key, version, content hash) of some buckets",
                "parameters": [{"name": "data_type", "in": "path", "required": true, "schema": {"type": "string"}},
                               {"name": "buckets", "in": "query", "required": true, "schema": {"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}, "description": "Bucket numbers 0-255, comma separated"}],
                "responses": {
                    "200": {"description": "Entries", "content": {"application/json": {"schema": {"type": "object", "required": ["entries"], "properties": {"entries": {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}}}}}}},
                    "400": err("A bucket outside 0-255"),
                    "401": err("Missing or wrong bearer token"),
                    "403": err("A data type this system does not accept"),
                    "404": err("No such data type"),
                    "503": err("The store is unavailable")}}},
            "/healthz": {"get": {"summary": "Whether the system can do its work", "security": [], "responses": {"200": {"description": "Up"}, "503": err("Up, but unable to do its work (for example its Kafka brokers are unreachable); the message says why")}}},
            "/hr/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI document"}}}}
        }
    })
}
