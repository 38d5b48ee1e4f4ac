//! The router hands each batch to the transports that carry it without
//! copying it, keeps the batches' order per transport, and reports what one
//! part missed without holding back the next.

use async_trait::async_trait;
use hr_core::{ChangeEnvelope, DataType, PropagateError, PropagationReport, Propagator, Receipt, Router, RoutingPolicy, TargetFailure};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// One batch a transport was handed: where its envelopes live, and their keys.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    at: usize,
    keys: Vec<String>,
}

/// A transport that records each batch and delivers it to `payroll`,
/// except the calls it is told to miss payroll on.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    miss_payroll_on_call: Option<usize>,
    /// Fails this call whole, with an error that names no target.
    fail_on_call: Option<usize>,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Propagator for Recorder {
    async fn propagate(&self, batch: &[ChangeEnvelope]) -> Result<Receipt, PropagateError> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Call { at: batch.as_ptr() as usize, keys: batch.iter().map(|c| c.key.clone()).collect() });
            calls.len() - 1
        };
        let mut delivered = PropagationReport::default();
        if self.fail_on_call == Some(call) {
            return Err(PropagateError::NoRoute(batch[0].data_type));
        }
        if self.miss_payroll_on_call == Some(call) {
            let failure = TargetFailure { target: "payroll".into(), cause: "down".into(), retriable: true };
            return Err(PropagateError::incomplete(delivered, vec![failure]));
        }
        for change in batch {
            delivered.add("payroll", change.data_type, 1);
        }
        Ok(Receipt::applied_on_delivery(delivered))
    }

    fn targets(&self) -> BTreeMap<String, Vec<DataType>> {
        BTreeMap::new()
    }
}

fn change(data_type: DataType, key: &str) -> ChangeEnvelope {
    ChangeEnvelope::delete(data_type, key, 1, "hub")
}

/// Employees and org units over `kafka`, grants over `rest`; master data has no route.
fn router(kafka: &Arc<Recorder>, rest: &Arc<Recorder>) -> Router {
    let routes = [(DataType::Employee, "kafka"), (DataType::OrgUnit, "kafka"), (DataType::Permission, "rest")];
    let policy = RoutingPolicy { routes: routes.into_iter().map(|(t, name)| (t, name.to_string())).collect(), targets: BTreeMap::new() };
    Router::new(policy).with("kafka", kafka.clone()).with("rest", rest.clone())
}

/// Where a batch's envelopes live (compared, never followed).
fn address(batch: &[ChangeEnvelope]) -> usize {
    batch.as_ptr() as usize
}

fn keys(calls: &[Call]) -> Vec<Vec<&str>> {
    calls.iter().map(|c| c.keys.iter().map(String::as_str).collect()).collect()
}

#[tokio::test]
async fn each_batch_reaches_its_transports_as_it_is_in_order_and_only_a_mixed_one_is_split() {
    let (kafka, rest) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let employees = [change(DataType::Employee, "e1"), change(DataType::Employee, "e2")];
    let teams = [change(DataType::OrgUnit, "t1")];
    let grants = [change(DataType::Permission, "g1")];
    let mixed = [change(DataType::Employee, "e3"), change(DataType::Permission, "g2"), change(DataType::OrgUnit, "t2")];
    let receipt = router(&kafka, &rest).propagate_batches(&[&employees, &teams, &grants, &mixed], None).await.unwrap();

    let (kafka, rest) = (kafka.calls(), rest.calls());
    assert_eq!(keys(&kafka), [vec!["e1", "e2"], vec!["t1"], vec!["e3", "t2"]]);
    assert_eq!(keys(&rest), [vec!["g1"], vec!["g2"]]);
    assert_eq!((kafka[0].at, kafka[1].at, rest[0].at), (address(&employees), address(&teams), address(&grants)), "one route's batch is not copied");
    assert_ne!(kafka[2].at, address(&mixed), "a mixed batch is split into parts of its own");
    assert_eq!(receipt.delivered().total("payroll"), 7);
}

#[tokio::test]
async fn a_part_a_target_missed_is_reported_and_the_next_part_is_still_sent() {
    let kafka = Arc::new(Recorder { miss_payroll_on_call: Some(0), ..Recorder::default() });
    let rest = Arc::new(Recorder::default());
    let employees = [change(DataType::Employee, "e1")];
    let teams = [change(DataType::OrgUnit, "t1"), change(DataType::OrgUnit, "t2")];
    let grants = [change(DataType::Permission, "g1")];
    let err = router(&kafka, &rest).propagate_batches(&[&employees, &teams, &grants], None).await.unwrap_err();

    assert_eq!(keys(&kafka.calls()), [vec!["e1"], vec!["t1", "t2"]]);
    let PropagateError::Incomplete { delivered, failures } = err else { panic!("not incomplete: {err}") };
    assert_eq!(failures.iter().map(|f| f.target.as_str()).collect::<Vec<_>>(), ["payroll"]);
    assert_eq!(delivered.delivered["payroll"], BTreeMap::from([(DataType::OrgUnit, 2), (DataType::Permission, 1)]), "what did arrive is counted");
}

#[tokio::test]
async fn a_batch_with_no_route_stops_the_delivery_before_anything_is_sent() {
    let (kafka, rest) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let employees = [change(DataType::Employee, "e1")];
    let master_data = [change(DataType::MasterData, "m1")];
    let err = router(&kafka, &rest).propagate_batches(&[&employees, &master_data], None).await.unwrap_err();
    assert!(matches!(err, PropagateError::NoRoute(DataType::MasterData)), "{err}");
    assert!(kafka.calls().is_empty() && rest.calls().is_empty());
}

#[tokio::test]
async fn a_part_that_fails_whole_stops_its_transport_and_is_reported_with_what_arrived_before() {
    let kafka = Arc::new(Recorder { fail_on_call: Some(1), ..Recorder::default() });
    let rest = Arc::new(Recorder::default());
    let employees = [change(DataType::Employee, "e1")];
    let teams = [change(DataType::OrgUnit, "t1")];
    let more_employees = [change(DataType::Employee, "e2")];
    let err = router(&kafka, &rest).propagate_batches(&[&employees, &teams, &more_employees], None).await.unwrap_err();

    assert_eq!(keys(&kafka.calls()), [vec!["e1"], vec!["t1"]], "nothing more goes over a transport that failed whole");
    let PropagateError::Incomplete { delivered, failures } = err else { panic!("not incomplete: {err}") };
    assert_eq!(failures.iter().map(|f| f.target.as_str()).collect::<Vec<_>>(), ["kafka"]);
    assert_eq!(delivered.delivered["payroll"], BTreeMap::from([(DataType::Employee, 1)]), "what arrived before is counted");
}

/// A confirmation that takes `takes` and records the deadline it was given.
struct Slow {
    takes: std::time::Duration,
    given: Mutex<Option<std::time::Duration>>,
}

#[async_trait]
impl hr_core::Confirmation for Slow {
    async fn wait(&self, deadline: std::time::Duration, _: &mut (dyn FnMut(u64) + Send)) -> Result<PropagationReport, PropagateError> {
        *self.given.lock().unwrap() = Some(deadline);
        tokio::time::sleep(self.takes.min(deadline)).await;
        Ok(PropagationReport::default())
    }
}

#[tokio::test]
async fn a_receipt_of_several_batches_waits_for_them_within_one_deadline() {
    let (first, second) = [200, 0].map(|ms| Arc::new(Slow { takes: std::time::Duration::from_millis(ms), given: Mutex::new(None) })).into();
    let mut receipt = Receipt::awaiting(PropagationReport::default(), first.clone());
    receipt.merge(Receipt::awaiting(PropagationReport::default(), second.clone()));
    let deadline = std::time::Duration::from_secs(60);
    receipt.applied(deadline).await.unwrap();
    assert!(first.given.lock().unwrap().is_some_and(|given| given > deadline - std::time::Duration::from_secs(1)), "the first gets nearly all of it");
    let left = second.given.lock().unwrap().expect("the second confirmation was waited for");
    assert!(left <= deadline - std::time::Duration::from_millis(200), "the second batch gets what the first left: {left:?}");
}

/// Data types that share no transport are delivered apart (and can be
/// concurrently); the deliveries joined report what each sent and missed.
#[tokio::test]
async fn types_sharing_no_transport_are_delivered_apart_and_joined_deliveries_report_everything() {
    let kafka = Arc::new(Recorder { miss_payroll_on_call: Some(1), ..Recorder::default() });
    let rest = Arc::new(Recorder::default());
    let router = router(&kafka, &rest);
    let types = BTreeSet::from([DataType::Employee, DataType::OrgUnit, DataType::Permission]);
    let mut groups = router.independent_groups(&types, None).unwrap();
    groups.sort();
    assert_eq!(groups, [BTreeSet::from([DataType::Employee, DataType::OrgUnit]), BTreeSet::from([DataType::Permission])]);
    let with_master_data = BTreeSet::from([DataType::Employee, DataType::MasterData]);
    assert!(matches!(router.independent_groups(&with_master_data, None), Err(PropagateError::NoRoute(DataType::MasterData))));

    let (teams, employees, grants) = ([change(DataType::OrgUnit, "t1")], [change(DataType::Employee, "e1")], [change(DataType::Permission, "g1")]);
    let mut over_kafka = router.delivery(&groups[0], None).unwrap();
    let mut over_rest = router.delivery(&groups[1], None).unwrap();
    let (kafka_sent, rest_sent) = futures::join!(
        async {
            over_kafka.send(&teams).await?;
            over_kafka.send(&employees).await
        },
        over_rest.send(&grants)
    );
    kafka_sent.unwrap();
    rest_sent.unwrap();
    assert!(over_rest.send(&employees).await.is_err(), "a delivery takes only the data types it was started for");
    over_kafka.absorb(over_rest);
    let PropagateError::Incomplete { delivered, failures } = over_kafka.finish().unwrap_err() else { panic!("not incomplete") };
    assert_eq!(failures.iter().map(|f| f.target.as_str()).collect::<Vec<_>>(), ["payroll"], "the employees missed payroll");
    assert_eq!(delivered.delivered["payroll"], BTreeMap::from([(DataType::OrgUnit, 1), (DataType::Permission, 1)]));
}
