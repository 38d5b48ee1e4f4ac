//! The hub never sends an expired grant as in force, and revokes grants
//! that expire between periodic runs when asked to (`--watch` asks each tick).
use hr_sync::hr_core::{ChangeEnvelope, DataType, HeldBack, Ledger, MergedState, PermissionGrant, PropagateError, Propagator, Receipt};
use hr_sync::{Hub, HubConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const CONFIG: &str = r#"
[routes]
permission = "recorder"

[targets.erp]
data_types = ["permission"]
"#;

/// A transport that keeps every batch it is handed.
#[derive(Default)]
struct Recorder(Mutex<Vec<ChangeEnvelope>>);

#[async_trait::async_trait]
impl Propagator for Recorder {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        self.0.lock().unwrap().extend(batch.iter().cloned());
        Ok(Receipt::default())
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        BTreeMap::from([("erp".to_string(), vec![DataType::Permission])])
    }
}

impl Recorder {
    /// The grants sent since the last call: key -> granted.
    fn take(&self) -> BTreeMap<String, bool> {
        let sent = std::mem::take(&mut *self.0.lock().unwrap());
        sent.iter().map(|c| (c.key.clone(), serde_json::from_str::<PermissionGrant>(c.payload_json().unwrap()).unwrap().granted)).collect()
    }
}

fn grant(role: &str, expires: Option<&str>) -> PermissionGrant {
    PermissionGrant {
        employee: "A-1".into(),
        system: "erp".into(),
        role: role.into(),
        granted: true,
        expires: expires.map(|e| e.parse().unwrap()),
        at: "2026-01-01T00:00:00Z".parse().unwrap(),
    }
}

#[tokio::test]
async fn expired_grants_go_out_revoked_and_enforce_expiry_revokes_those_that_lapse_later() {
    let recorder = Arc::new(Recorder::default());
    let config = HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap();
    let mut hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("recorder", recorder.clone() as Arc<dyn Propagator>)]).unwrap();
    let mut state = MergedState::default();
    for g in [grant("expired", Some("2026-01-31")), grant("later", Some("2099-12-31")), grant("lifelong", None)] {
        state.permissions.insert(g.key().into(), g);
    }

    hub.sync_with(&state, &HeldBack::default()).await.unwrap();
    let sent = recorder.take();
    assert_eq!(sent, BTreeMap::from([("A-1:erp:expired".into(), false), ("A-1:erp:later".into(), true), ("A-1:erp:lifelong".into(), true)]));

    let again = hub.sync_with(&state, &HeldBack::default()).await.unwrap();
    assert_eq!(again.sent, 0, "the revoked expired grant is not sent again: {:?}", recorder.take());

    let today = chrono::Utc::now().date_naive();
    assert_eq!(hub.enforce_expiry(today).await.unwrap().sent, 0, "nothing has lapsed since the run");
    let outcome = hub.enforce_expiry("2100-01-01".parse().unwrap()).await.unwrap();
    assert_eq!(outcome.sent, 1);
    assert_eq!(recorder.take(), BTreeMap::from([("A-1:erp:later".into(), false)]));
    assert_eq!(hub.enforce_expiry("2100-01-02".parse().unwrap()).await.unwrap().sent, 0, "a lapsed grant is revoked once");
}

#[tokio::test]
async fn a_real_time_grant_obeys_expiry_too() {
    let recorder = Arc::new(Recorder::default());
    let config = HubConfig::from_toml_str(CONFIG, "hub.toml").unwrap();
    let mut hub = Hub::with_transports(&config, Ledger::in_memory().unwrap(), [("recorder", recorder.clone() as Arc<dyn Propagator>)]).unwrap();

    // Already expired when it is sent: it goes out revoked.
    let expired = grant("expired", Some("2026-01-31"));
    hub.sync_changes(&[(expired.key().as_str(), Some(&expired))]).await.unwrap();
    assert_eq!(recorder.take(), BTreeMap::from([("A-1:erp:expired".into(), false)]));

    // Granted in real time until 2099, then extended to 2100: the extension counts.
    let later = grant("later", Some("2099-12-31"));
    hub.sync_changes(&[(later.key().as_str(), Some(&later))]).await.unwrap();
    let extended = grant("later", Some("2100-12-31"));
    hub.sync_changes(&[(extended.key().as_str(), Some(&extended))]).await.unwrap();
    recorder.take();
    assert_eq!(hub.enforce_expiry("2100-06-01".parse().unwrap()).await.unwrap().sent, 0, "the extended grant is still in force");
    assert_eq!(hub.enforce_expiry("2101-01-01".parse().unwrap()).await.unwrap().sent, 1);
    assert_eq!(recorder.take(), BTreeMap::from([("A-1:erp:later".into(), false)]));

    // A grant deleted in real time is not revoked later: nothing is left to revoke.
    let doomed = grant("doomed", Some("2099-12-31"));
    hub.sync_changes(&[(doomed.key().as_str(), Some(&doomed))]).await.unwrap();
    hub.sync_changes::<PermissionGrant>(&[(doomed.key().as_str(), None)]).await.unwrap();
    recorder.0.lock().unwrap().clear();
    assert_eq!(hub.enforce_expiry("2101-01-01".parse().unwrap()).await.unwrap().sent, 0);
}
