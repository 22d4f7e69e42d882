//! Clean shutdown (SIGTERM): it ends in bounded time whatever clients do,
//! and it keeps what was acknowledged.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::v1;
use sluice_record::{BatchBuilder, Compression};
use sluice_tests::{Standalone, fetch_request};

/// How long a clean shutdown may take, whatever clients are connected.
const GRACE: Duration = Duration::from_secs(10);

/// A batch of one record stamped now (old stamps would expire by retention).
fn one_record_batch(value: &str) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut builder = BatchBuilder::new(Compression::Lz4);
    builder
        .push(now, None, Some(value.as_bytes()), &[])
        .expect("push");
    builder.build().expect("build")
}

#[tokio::test]
async fn sigterm_exits_cleanly_when_no_client_is_connected() -> anyhow::Result<()> {
    let mut server = Standalone::start_temp(&[])?;
    server.create_topic("t", 1, None).await?;
    let started = Instant::now();
    server.terminate()?;
    let status = server.wait_exit(GRACE).await?;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        server.log()
    );
    assert!(started.elapsed() < GRACE);
    Ok(())
}

/// The signal handler must be in place by the time the server says it
/// listens: a SIGTERM then is a clean shutdown (exit 0), not death by signal.
/// The window is small; starting and stopping many times finds it, mostly
/// on a busy machine.
#[tokio::test]
async fn sigterm_right_after_startup_is_a_clean_shutdown() -> anyhow::Result<()> {
    let mut killed = 0;
    let attempts = 30;
    for _ in 0..attempts {
        let mut server = Standalone::start_temp(&[])?;
        server.terminate()?;
        let status = server.wait_exit(GRACE).await?;
        if !status.success() {
            killed += 1;
            println!("exit status {status}; log:\n{}", server.log());
        }
    }
    assert_eq!(
        killed, 0,
        "{killed} of {attempts} servers sent SIGTERM right after announcing their address died of it"
    );
    Ok(())
}

/// A client that connected and then went quiet (a stuck process, a
/// half-open connection, a health checker) must not hold the shutdown.
#[tokio::test]
async fn sigterm_exits_in_bounded_time_with_an_idle_connection_open() -> anyhow::Result<()> {
    let mut server = Standalone::start_temp(&[])?;
    // A request first, so the server is past its startup.
    server.create_topic("t", 1, None).await?;
    let idle = std::net::TcpStream::connect(server.addr)?;
    server.terminate()?;
    let exited = server.wait_exit(GRACE).await;
    drop(idle);
    let status = exited.map_err(|e| {
        anyhow::anyhow!(
            "{e}: SIGTERM with one idle TCP connection open; log:\n{}",
            server.log()
        )
    })?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

/// A long-poll fetch waiting for data must not delay the shutdown by its
/// whole max wait.
#[tokio::test]
async fn sigterm_exits_in_bounded_time_with_a_long_poll_waiting() -> anyhow::Result<()> {
    let mut server = Standalone::start_temp(&[])?;
    let topic = "waiting";
    server.create_topic(topic, 1, None).await?;
    let mut fetcher = server.data().await?;
    let mut request = fetch_request(topic, 0, 0);
    request.max_wait_ms = 60_000;
    let mut fetch = tokio::spawn(async move { fetcher.fetch(request).await });
    let early = tokio::time::timeout(Duration::from_millis(300), &mut fetch).await;
    assert!(early.is_err(), "the fetch should be waiting: {early:?}");
    server.terminate()?;
    let exited = server.wait_exit(GRACE).await;
    fetch.abort();
    let status = exited.map_err(|e| {
        anyhow::anyhow!(
            "{e}: SIGTERM with a 60 s long-poll fetch waiting; log:\n{}",
            server.log()
        )
    })?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

/// A clean shutdown (SIGTERM) must not drop what was acknowledged with
/// `acks=buffer` and is still waiting for its flush.
#[tokio::test]
async fn clean_shutdown_keeps_buffer_acknowledged_messages() -> anyhow::Result<()> {
    // A long flush interval: nothing is flushed before the shutdown.
    let server = Standalone::start_temp(&["--flush-interval-ms", "600000"])?;
    let topic = "buffered";
    server.create_topic(topic, 1, None).await?;
    let mut client = server.data().await?;
    let mut values = Vec::new();
    for n in 0..5 {
        let value = format!("buffered-{n}");
        let request = v1::ProduceRequest {
            topic: topic.into(),
            target: Some(v1::produce_request::Target::Partition(0)),
            records: one_record_batch(&value),
            acks: v1::AckMode::Buffer as i32,
        };
        let response = client.produce(request).await?.into_inner();
        assert_eq!(response.base_offset, n);
        values.push(value);
    }
    drop(client);
    let server = server.restart().await?;
    let mut client = server.data().await?;
    let stored: Vec<String> = sluice_tests::read_all(&mut client, topic, 0, 0)
        .await?
        .into_iter()
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
        .collect();
    assert_eq!(
        stored, values,
        "messages acknowledged with acks=buffer before a clean shutdown"
    );
    Ok(())
}
