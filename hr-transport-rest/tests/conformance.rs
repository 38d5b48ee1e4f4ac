//! The propagator conformance suite (`hr_core::conformance`) over loopback
//! REST: three receivers, each in front of a store the suite can stop.
use hr_core::conformance::{narrowed, run_all, GatedHarness, NARROWED};
use hr_core::DataType;
use hr_transport_rest::{serve_receiver, ReceiverConfig, RestConfig, RestPropagator, RestTarget};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "conformance-token-0123456789abcdef01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_propagator_conforms() {
    let stores = GatedHarness::stores();
    let mut targets = vec![];
    for (name, store) in &stores {
        // The receivers accept compensation too, so a propagator leaking it
        // would show; the targets do not list it.
        let accepted = vec![DataType::MasterData, DataType::OrgUnit, DataType::Permission, DataType::Compensation];
        let config = ReceiverConfig::new(store.clone(), accepted).with_token(TOKEN).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve_receiver(listener, config).unwrap());
        let target = RestTarget::new(name, &url, vec![DataType::MasterData, DataType::OrgUnit, DataType::Permission]).with_token(TOKEN);
        targets.push(if *name == NARROWED { target.with_fields(narrowed()) } else { target });
    }
    let mut config = RestConfig::new(targets);
    config.deadline = Duration::from_secs(3);
    let propagator = Arc::new(RestPropagator::new(config).unwrap());
    run_all(&GatedHarness::new(propagator, stores).carrying_grants(), "md.conformance.").await;
}
