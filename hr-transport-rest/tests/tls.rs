//! HTTPS with a private CA: a local receiver serves TLS itself
//! (`ReceiverConfig::with_tls`, certificate and key files) with a
//! certificate signed by a throwaway CA; the propagator trusts it only
//! through `RestConfig::ca_pem`.

use hr_core::{ChangeEnvelope, DataType, MasterData, MemorySink, PropagateError, Propagator, Sink};
use hr_transport_rest::{serve_receiver, ReceiverConfig, RestConfig, RestPropagator, RestTarget, TlsIdentity};
use std::sync::Arc;
use std::time::Duration;

/// A CA, and a server certificate for 127.0.0.1 signed by it: (CA PEM, server cert PEM, server key PEM).
fn private_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: OpenSSL (librdkafka) takes a certificate whose issuer equals its subject for self-signed.
    ca_params.distinguished_name.push(DnType::CommonName, "hr-sync test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let server = leaf.signed_by(&server_key, &ca, &ca_key).unwrap();
    (ca.pem(), server.pem(), server_key.serialize_pem())
}

fn md() -> ChangeEnvelope {
    let md = MasterData { set: "grade".into(), code: "G1".into(), name: "Staff".into(), attributes: Default::default() };
    ChangeEnvelope::upsert(DataType::MasterData, md.key(), 1, "hr", &md).unwrap()
}

#[tokio::test]
async fn https_to_a_receiver_with_a_private_ca() {
    let (ca_pem, cert_pem, key_pem) = private_pki();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let sink = Arc::new(MemorySink::default());
    let config = ReceiverConfig::new(sink.clone(), vec![DataType::MasterData])
        .with_token("tls-test-token-0123456789abcdef012345")
        .unwrap()
        .with_tls(TlsIdentity::from_pem_files(&cert, &key).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_receiver(listener, config).unwrap());
    let target = RestTarget::new("payroll", &format!("https://{addr}"), vec![DataType::MasterData]).with_token("tls-test-token-0123456789abcdef012345");

    // Without the CA the certificate is not trusted: a clear failure, nothing applied.
    let mut untrusting = RestConfig::new(vec![target.clone()]);
    untrusting.deadline = Duration::from_secs(2);
    let err = RestPropagator::new(untrusting).unwrap().propagate(&[md()]).await.unwrap_err();
    let PropagateError::Incomplete { failures, .. } = &err else { panic!("{err}") };
    assert!(failures[0].cause.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(sink.digest(DataType::MasterData).await.unwrap().count, 0);

    // With the CA configured it is applied, and the digest is readable over TLS too.
    let mut trusting = RestConfig::new(vec![target]);
    trusting.ca_pem = Some(ca_pem.into_bytes());
    let propagator = RestPropagator::new(trusting).unwrap();
    assert_eq!(propagator.propagate(&[md()]).await.unwrap().delivered().total("payroll"), 1);
    assert_eq!(propagator.digests("payroll").await.unwrap()[&DataType::MasterData].count, 1);

    // Plain HTTP to the TLS port gets no answer a client could take for the receiver's.
    let plain = reqwest::Client::new().get(format!("http://{addr}/healthz")).timeout(Duration::from_secs(5)).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain http was served on the TLS port");
}

#[test]
fn a_key_file_that_is_not_a_key_is_a_clear_error_that_does_not_quote_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert_pem, _) = private_pki();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, "not-a-key-secret-material").unwrap();
    let err = TlsIdentity::from_pem_files(&cert, &key).unwrap_err().to_string();
    assert!(err.contains("key.pem") && err.contains("no readable PEM private key") && !err.contains("secret-material"), "{err}");
}

/// With a metrics token, `/metrics` answers only to it; `/healthz` stays open.
#[tokio::test]
async fn metrics_can_require_a_token_of_their_own() {
    let sink = Arc::new(MemorySink::default());
    let metrics_token = "metrics-token-0123456789abcdef01234567";
    let config = ReceiverConfig::new(sink, vec![DataType::MasterData])
        .with_token("receiver-token-0123456789abcdef0123456")
        .unwrap()
        .with_metrics(Arc::new(|| "hr_up 1\n".to_string()))
        .with_metrics_token(metrics_token)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve_receiver(listener, config).unwrap());
    let client = reqwest::Client::new();
    let without = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let wrong = client.get(format!("{url}/metrics")).bearer_auth("receiver-token-0123456789abcdef0123456").send().await.unwrap();
    assert_eq!(wrong.status(), 401, "the receiver's token is not the metrics token");
    let with = client.get(format!("{url}/metrics")).bearer_auth(metrics_token).send().await.unwrap();
    assert_eq!(with.status(), 200);
    assert_eq!(with.text().await.unwrap(), "hr_up 1\n");
    assert_eq!(client.get(format!("{url}/healthz")).send().await.unwrap().status(), 200);
    assert!(ReceiverConfig::new(Arc::new(MemorySink::default()), vec![]).with_metrics_token("short").is_err());
}

#[test]
fn a_ca_that_is_not_pem_is_a_clear_error() {
    let mut config = RestConfig::new(vec![]);
    config.ca_pem = Some(b"not a certificate".to_vec());
    match RestPropagator::new(config) {
        Err(e) => assert!(e.to_string().contains("CA certificate"), "{e}"),
        Ok(_) => panic!("a broken CA must be refused"),
    }
}
