//! SCIM Bulk ([RFC 7644 §3.7](https://www.rfc-editor.org/rfc/rfc7644#section-3.7)):
//! many requests in one, within the limits a directory announces.
//!
//! The propagator decides what to send; this module only packs requests
//! into Bulk requests and unpacks the answers, one per request, in the
//! shape a single request's answer has, so a caller treats both alike.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The Bulk request schema.
pub(crate) const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// What a directory's `/ServiceProviderConfig` allows one Bulk request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BulkLimits {
    /// Operations per request (`maxOperations`).
    pub(crate) max_operations: usize,
    /// Bytes per request body (`maxPayloadSize`).
    pub(crate) max_payload_bytes: usize,
}

/// The payload limit assumed when a directory announces Bulk without one:
/// RFC 7644's example value, and what common providers take.
const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

impl BulkLimits {
    /// The limits `/ServiceProviderConfig`'s `bulk` announces; `None` when
    /// Bulk is not supported or allows no operation.
    pub(crate) fn announced(bulk: &Value) -> Option<Self> {
        if !bulk["supported"].as_bool().unwrap_or(false) {
            return None;
        }
        let max_operations = bulk["maxOperations"].as_u64().filter(|n| *n > 0)? as usize;
        let max_payload_bytes = bulk["maxPayloadSize"].as_u64().filter(|n| *n > 0).map_or(DEFAULT_MAX_PAYLOAD_BYTES, |n| n as usize);
        Some(BulkLimits { max_operations, max_payload_bytes })
    }
}

/// One request to a directory, sent alone or as an operation of a Bulk request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    /// The path below the base URL (`/Users`, `/Groups/{id}`).
    pub(crate) path: String,
    pub(crate) body: Option<Value>,
    /// The ETag the resource must still have (`If-Match`; a Bulk operation's `version`).
    pub(crate) if_match: Option<String>,
}

/// A directory's answer to one request.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) etag: Option<String>,
    /// The body: the resource, an error with `detail`, or (a Bulk
    /// operation's success) `{"id": ...}` taken from its location.
    pub(crate) body: Value,
}

/// Room a Bulk request's envelope takes beside its operations.
const ENVELOPE_BYTES: usize = 128;

/// `requests` in Bulk requests within `limits`: each a list of indexes into
/// `requests` and its body. A request too large to share a Bulk request's
/// payload with anything is left out (its index in the second list): it
/// goes alone.
pub(crate) fn pack(requests: &[Request], limits: BulkLimits) -> (Vec<(Vec<usize>, Value)>, Vec<usize>) {
    let mut packed = vec![];
    let mut alone = vec![];
    let mut indexes = vec![];
    let mut operations = vec![];
    let mut bytes = ENVELOPE_BYTES;
    let mut flush = |indexes: &mut Vec<usize>, operations: &mut Vec<Value>, bytes: &mut usize| {
        if !indexes.is_empty() {
            let body = json!({ "schemas": [BULK_REQUEST_SCHEMA], "Operations": std::mem::take(operations) });
            packed.push((std::mem::take(indexes), body));
        }
        *bytes = ENVELOPE_BYTES;
    };
    for (i, request) in requests.iter().enumerate() {
        let operation = operation(i, request);
        // One more byte for the comma between operations.
        let size = operation.to_string().len() + 1;
        if size + ENVELOPE_BYTES > limits.max_payload_bytes {
            alone.push(i);
            continue;
        }
        if indexes.len() == limits.max_operations || bytes + size > limits.max_payload_bytes {
            flush(&mut indexes, &mut operations, &mut bytes);
        }
        indexes.push(i);
        operations.push(operation);
        bytes += size;
    }
    flush(&mut indexes, &mut operations, &mut bytes);
    (packed, alone)
}

/// `request` as the Bulk operation numbered `i` (its `bulkId`).
fn operation(i: usize, request: &Request) -> Value {
    let mut operation = json!({ "method": request.method.as_str(), "bulkId": i.to_string(), "path": request.path });
    if let Some(body) = &request.body {
        operation["data"] = body.clone();
    }
    if let Some(etag) = &request.if_match {
        operation["version"] = json!(etag);
    }
    operation
}

/// The answer to each of `indexes` (the requests of one Bulk request, in
/// order) from the Bulk answer's `Operations`, matched by `bulkId` (by
/// position where a directory leaves it out). An operation the directory
/// did not answer (it stopped at `failOnErrors`) gets a 503 saying so.
pub(crate) fn unpack(indexes: &[usize], answer: &Value) -> Vec<Answer> {
    let outcomes = answer["Operations"].as_array().map(Vec::as_slice).unwrap_or_default();
    indexes
        .iter()
        .enumerate()
        .map(|(position, i)| {
            let id = i.to_string();
            let by_id = outcomes.iter().find(|o| o["bulkId"].as_str() == Some(id.as_str()));
            match by_id.or_else(|| outcomes.get(position).filter(|o| o["bulkId"].is_null())) {
                Some(outcome) => answer_of(outcome),
                None => Answer {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    etag: None,
                    body: json!({ "detail": "the directory did not answer this operation of a Bulk request" }),
                },
            }
        })
        .collect()
}

/// One Bulk operation's outcome as a single request's answer.
fn answer_of(outcome: &Value) -> Answer {
    let status = match &outcome["status"] {
        Value::String(s) => s.parse::<u16>().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    };
    let status = status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::BAD_GATEWAY);
    let etag = outcome["version"].as_str().map(str::to_string);
    let body = if status.is_success() {
        let id = outcome["location"].as_str().and_then(|l| l.trim_end_matches('/').rsplit('/').next()).unwrap_or_default();
        json!({ "id": id })
    } else {
        outcome.get("response").cloned().unwrap_or(Value::Null)
    };
    Answer { status, etag, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(i: usize, bytes: usize) -> Request {
        Request { method: Method::POST, path: "/Users".into(), body: Some(json!({ "userName": format!("{i}{}", "x".repeat(bytes)) })), if_match: None }
    }

    #[test]
    fn announced_limits_are_read_and_bulk_without_operations_is_no_bulk() {
        let limits = BulkLimits::announced(&json!({"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576})).unwrap();
        assert_eq!(limits, BulkLimits { max_operations: 1000, max_payload_bytes: 1 << 20 });
        assert_eq!(BulkLimits::announced(&json!({"supported": true, "maxOperations": 10})).unwrap().max_payload_bytes, DEFAULT_MAX_PAYLOAD_BYTES);
        assert!(BulkLimits::announced(&json!({"supported": false, "maxOperations": 1000})).is_none());
        assert!(BulkLimits::announced(&json!({"supported": true, "maxOperations": 0})).is_none());
        assert!(BulkLimits::announced(&Value::Null).is_none());
    }

    #[test]
    fn requests_are_packed_within_the_operation_and_payload_limits() {
        let requests: Vec<Request> = (0..7).map(|i| post(i, 10)).collect();
        let (packed, alone) = pack(&requests, BulkLimits { max_operations: 3, max_payload_bytes: 1 << 20 });
        let counts: Vec<Vec<usize>> = packed.iter().map(|(i, _)| i.clone()).collect();
        assert_eq!(counts, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert!(alone.is_empty());
        let (_, body) = &packed[0];
        assert_eq!(body["schemas"][0], BULK_REQUEST_SCHEMA);
        assert_eq!(body["Operations"][1], json!({"method": "POST", "bulkId": "1", "path": "/Users", "data": {"userName": format!("1{}", "x".repeat(10))}}));

        // Each operation is about 90 bytes: 400 bytes hold three beside the envelope; 5,000 bytes go alone.
        let mut requests: Vec<Request> = (0..5).map(|i| post(i, 10)).collect();
        requests.insert(2, post(9, 5000));
        let (packed, alone) = pack(&requests, BulkLimits { max_operations: 100, max_payload_bytes: 400 });
        assert_eq!(alone, vec![2]);
        for (_, body) in &packed {
            assert!(body.to_string().len() <= 400, "{} bytes", body.to_string().len());
        }
        let packed: Vec<usize> = packed.into_iter().flat_map(|(i, _)| i).collect();
        assert_eq!(packed, vec![0, 1, 3, 4, 5]);
    }

    #[test]
    fn a_patch_carries_its_etag_as_the_operations_version() {
        let request = Request { method: Method::PATCH, path: "/Users/7".into(), body: Some(json!({})), if_match: Some("W/\"3\"".into()) };
        assert_eq!(operation(4, &request), json!({"method": "PATCH", "bulkId": "4", "path": "/Users/7", "data": {}, "version": "W/\"3\""}));
    }

    #[test]
    fn answers_are_matched_by_bulk_id_and_one_left_unanswered_says_so() {
        let answer = json!({"Operations": [
            {"method": "PATCH", "bulkId": "8", "status": "404", "response": {"detail": "User 'x' not found", "status": "404"}},
            {"method": "POST", "bulkId": "7", "status": "201", "version": "W/\"1\"", "location": "https://d.example/v2/Users/abc"},
            {"method": "DELETE", "bulkId": "9", "status": 204},
        ]});
        let answers = unpack(&[7, 8, 9, 10], &answer);
        assert_eq!((answers[0].status, answers[0].etag.as_deref(), &answers[0].body), (StatusCode::CREATED, Some("W/\"1\""), &json!({"id": "abc"})));
        assert_eq!((answers[1].status, answers[1].body["detail"].as_str()), (StatusCode::NOT_FOUND, Some("User 'x' not found")));
        assert_eq!(answers[2].status, StatusCode::NO_CONTENT);
        assert_eq!(answers[3].status, StatusCode::SERVICE_UNAVAILABLE);
        // Without bulkIds, by position.
        let answers = unpack(&[0, 1], &json!({"Operations": [{"status": "200"}, {"status": "412"}]}));
        assert_eq!((answers[0].status, answers[1].status), (StatusCode::OK, StatusCode::PRECONDITION_FAILED));
        // A status that is no status is the directory's error.
        assert_eq!(unpack(&[0], &json!({"Operations": [{"bulkId": "0", "status": "teapot"}]}))[0].status, StatusCode::BAD_GATEWAY);
    }
}
