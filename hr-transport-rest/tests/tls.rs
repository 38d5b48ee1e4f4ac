//! HTTPS with a private CA: a local receiver serves TLS with a certificate
//! signed by a throwaway CA; the propagator trusts it only through
//! `RestConfig::ca_pem`.

use hr_core::{ChangeEnvelope, DataType, MasterData, MemorySink, PropagateError, Propagator, Sink};
use hr_transport_rest::{receiver, ReceiverConfig, RestConfig, RestPropagator, RestTarget};
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca_pem, cert_pem, key_pem) = private_pki();
    let sink = Arc::new(MemorySink::default());
    let app = receiver(ReceiverConfig::new(sink.clone(), vec![DataType::MasterData]).with_token("tls-token").unwrap());
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(cert_pem.into_bytes(), key_pem.into_bytes()).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum_server::from_tcp_rustls(listener, tls).serve(app.into_make_service()).await.unwrap() });
    let target = RestTarget::new("payroll", &format!("https://{addr}"), vec![DataType::MasterData]).with_token("tls-token");

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
