//! Slow bodies cannot pin the receiver's memory. Alone in its test binary
//! so that the process's resident size measures the receiver only.
//!
//! Before: 30 connections without a token, each announcing 16 MB and
//! sending 8 MiB, grew the process by about 240 MiB (the body was read
//! before the token was checked, with no timeout and no cap).

use hr_core::{DataType, MemorySink};
use hr_transport_rest::{serve_receiver, ReceiverConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const TOKEN: &str = "memory-test-token-0123456789abcdef01";
const CONNECTIONS: usize = 30;
const ANNOUNCED: usize = 16_000_000;
const SENT: usize = 4 << 20;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Opens a connection that announces `ANNOUNCED` bytes and sends up to
/// `SENT` of them (less if the server stops reading or closes), then stalls.
async fn slow_sender(addr: SocketAddr, authorization: Option<String>) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = authorization.map(|a| format!("authorization: {a}\r\n")).unwrap_or_default();
    let head = format!("POST /hr/v1/changes HTTP/1.1\r\nhost: receiver\r\ncontent-type: application/json\r\n{auth}content-length: {ANNOUNCED}\r\n\r\n");
    let chunk = vec![b' '; 64 << 10];
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        stream.write_all(head.as_bytes()).await?;
        for _ in 0..SENT / chunk.len() {
            stream.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    stream
}

/// Growth of the resident size while `CONNECTIONS` slow senders are held open.
async fn growth_with_slow_senders(addr: SocketAddr, authorization: Option<String>) -> f64 {
    let before = resident_bytes();
    let senders = futures::future::join_all((0..CONNECTIONS).map(|_| slow_sender(addr, authorization.clone()))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = resident_bytes().saturating_sub(before) as f64 / (1 << 20) as f64;
    drop(senders);
    tokio::time::sleep(Duration::from_millis(300)).await;
    grown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_keep_memory_flat() {
    let sink = Arc::new(MemorySink::default());
    // Default limits: 16 MiB bodies, 64 MiB in flight, 16 concurrent requests.
    let config = ReceiverConfig::new(sink, vec![DataType::MasterData]).with_token(TOKEN).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_receiver(listener, config).unwrap());
    // Warm up the runtime, the client and the allocator first.
    let _ = growth_with_slow_senders(addr, Some("Bearer wrong".into())).await;

    let without_token = growth_with_slow_senders(addr, None).await;
    let with_token = growth_with_slow_senders(addr, Some(format!("Bearer {TOKEN}"))).await;
    eprintln!(
        "resident growth with {CONNECTIONS} slow senders of {} MiB each: {without_token:.1} MiB without a token, {with_token:.1} MiB with it",
        SENT >> 20
    );
    // Without the token nothing of a body is read.
    assert!(without_token < 16.0, "{without_token:.1} MiB");
    // With it, the 64 MiB in-flight budget admits 4 bodies announcing 16 MB
    // (16 MiB sent), the other 26 are answered 503 unread.
    assert!(with_token < 48.0, "{with_token:.1} MiB");
}
