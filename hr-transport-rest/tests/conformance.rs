//! The propagator conformance suite (`hr_core::conformance`) over loopback
//! REST: three receivers, each in front of a store the suite can stop.
use hr_core::conformance::{run_all, GatedSink, Harness, TARGETS};
use hr_core::{DataType, Propagator, Sink};
use hr_transport_rest::{serve_receiver, ReceiverConfig, RestConfig, RestPropagator, RestTarget};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "conformance-token";

struct Loopback {
    sinks: BTreeMap<&'static str, Arc<GatedSink>>,
    propagator: Arc<RestPropagator>,
}

impl Loopback {
    /// Receivers that accept compensation too (so a transport leaking it
    /// would show), behind targets that list only master data.
    async fn start() -> Self {
        let mut sinks = BTreeMap::new();
        let mut targets = vec![];
        for name in TARGETS {
            let sink = Arc::new(GatedSink::default());
            let config = ReceiverConfig::new(sink.clone(), vec![DataType::MasterData, DataType::Compensation]).with_token(TOKEN).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(serve_receiver(listener, config).unwrap());
            targets.push(RestTarget::new(name, &url, vec![DataType::MasterData]).with_token(TOKEN));
            sinks.insert(name, sink);
        }
        let mut config = RestConfig::new(targets);
        config.deadline = Duration::from_secs(3);
        Loopback { sinks, propagator: Arc::new(RestPropagator::new(config).unwrap()) }
    }
}

#[async_trait::async_trait]
impl Harness for Loopback {
    fn propagator(&self) -> Arc<dyn Propagator> {
        self.propagator.clone()
    }

    fn sink(&self, target: &str) -> Arc<dyn Sink> {
        self.sinks[target].clone()
    }

    async fn stop(&self, target: &str) {
        self.sinks[target].set_down(true);
    }

    async fn start(&self, target: &str) {
        self.sinks[target].set_down(false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_propagator_conforms() {
    run_all(&Loopback::start().await, "md.conformance.").await;
}
