//! The Kafka wire protocol of a standalone server, with a real Kafka
//! client: kcat (librdkafka). Every compression codec round-trips, the
//! metadata lists the server as the broker and leader, an idempotent
//! producer writes each message once, and bad frames close a connection
//! without hurting the server. (The rest of issue 6 — groups, admin APIs,
//! the Python clients and the cluster case — builds on this.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::{Standalone, read_all};

/// kcat, which scripts/test.sh installs; without it (a plain `cargo test`)
/// the tests are skipped unless the servers are required.
fn kcat() -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("kcat"))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("SLUICE_TEST_SERVERS_REQUIRED").is_none(),
            "kcat is not installed (apt-get install kcat; scripts/test.sh does)"
        );
        eprintln!("skipped: kcat is not installed");
    }
    found
}

fn kafka_server() -> anyhow::Result<(Standalone, SocketAddr)> {
    let server = Standalone::start_temp(&["--kafka-addr", "127.0.0.1:0"])?;
    let kafka = server
        .kafka_addr
        .ok_or_else(|| anyhow::anyhow!("the server did not announce its Kafka address"))?;
    Ok((server, kafka))
}

/// Runs kcat with `args` (and `stdin`), returning stdout; fails on a
/// non-zero exit or a 30 s stall.
fn run_kcat(kcat: &PathBuf, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<String> {
    let mut child = Command::new(kcat)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .map(|mut s| s.write_all(input))
            .transpose()?;
    }
    drop(child.stdin.take());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow::anyhow!("kcat {args:?} did not finish within 30 s"))??;
    anyhow::ensure!(
        output.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_round_trips_every_compression_codec() -> anyhow::Result<()> {
    let Some(kcat) = kcat() else { return Ok(()) };
    let (server, kafka) = kafka_server()?;
    let broker = kafka.to_string();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("lines-{codec}");
        server.create_topic(&topic, 3, None).await?;
        let lines: Vec<String> = (0..500).map(|i| format!("{codec}-line-{i}")).collect();
        let input = lines.join("\n") + "\n";
        run_kcat(
            &kcat,
            &[
                "-b", &broker, "-P", "-t", &topic, "-z", codec, "-X", "acks=all",
            ],
            Some(input.as_bytes()),
        )?;
        let output = run_kcat(
            &kcat,
            &[
                "-b",
                &broker,
                "-C",
                "-t",
                &topic,
                "-o",
                "beginning",
                "-e",
                "-q",
            ],
            None,
        )?;
        let mut got: Vec<&str> = output.lines().collect();
        got.sort_unstable();
        let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
        want.sort_unstable();
        assert_eq!(
            got, want,
            "{codec}: what was consumed is not what was produced"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_lists_the_server_as_the_broker_and_every_leader() -> anyhow::Result<()> {
    let Some(kcat) = kcat() else { return Ok(()) };
    let (server, kafka) = kafka_server()?;
    server.create_topic("orders", 4, None).await?;
    let listing = run_kcat(&kcat, &["-b", &kafka.to_string(), "-L"], None)?;
    assert!(
        listing.contains(&format!("broker 0 at {kafka}")),
        "{listing}"
    );
    assert!(
        listing.contains("topic \"orders\" with 4 partitions"),
        "{listing}"
    );
    for partition in 0..4 {
        assert!(
            listing.contains(&format!("partition {partition}, leader 0,")),
            "{listing}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_librdkafka_producer_writes_each_message_once() -> anyhow::Result<()> {
    let Some(kcat) = kcat() else { return Ok(()) };
    let (server, kafka) = kafka_server()?;
    server.create_topic("orders", 2, None).await?;
    let input: String = (0..2000).map(|i| format!("{i}\n")).collect();
    run_kcat(
        &kcat,
        &[
            "-b",
            &kafka.to_string(),
            "-P",
            "-t",
            "orders",
            "-X",
            "enable.idempotence=true",
            "-X",
            "linger.ms=5",
        ],
        Some(input.as_bytes()),
    )?;
    let mut client = server.data().await?;
    let mut values = Vec::new();
    for partition in 0..2 {
        for (_, value) in read_all(&mut client, "orders", partition, 0).await? {
            values.push(String::from_utf8(value)?.parse::<u32>()?);
        }
    }
    values.sort_unstable();
    assert_eq!(values, (0..2000).collect::<Vec<u32>>());
    Ok(())
}

/// Sends raw bytes on a new connection; returns what came back before the
/// server closed it (or the read timed out).
fn exchange(kafka: SocketAddr, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(kafka)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(bytes)?;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_and_spare_the_server() -> anyhow::Result<()> {
    let (server, kafka) = kafka_server()?;
    // A frame of 2 GB is refused before it is read: the connection closes.
    assert!(exchange(kafka, &i32::MAX.to_be_bytes())?.is_empty());
    // An unknown API key.
    let mut frame = 10i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert!(exchange(kafka, &frame)?.is_empty());
    // A truncated header.
    assert!(exchange(kafka, &[0, 0, 0, 2, 0, 18])?.is_empty());
    // A Metadata request (v1) whose topic array claims 2^31 - 1 entries in
    // a 14-byte frame: refused without allocating for them.
    let body = [0u8, 3, 0, 1, 0, 0, 0, 9, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff];
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    assert!(exchange(kafka, &frame)?.is_empty());
    // ApiVersions at a version not supported: Kafka's answer, version 0
    // with UNSUPPORTED_VERSION (35) and the supported versions.
    let mut frame = Vec::new();
    let body = [0u8, 18, 0, 99, 0, 0, 0, 7, 0, 0];
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(&body);
    let mut stream = TcpStream::connect(kafka)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&frame)?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut answer = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut answer)?;
    assert_eq!(&answer[..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(&answer[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    // The server is fine: gRPC answers and the Kafka port accepts.
    server.create_topic("still-up", 1, None).await?;
    assert!(TcpStream::connect(kafka).is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_admin_creates_grows_and_deletes_topics() -> anyhow::Result<()> {
    if !sluice_tests::python_has("confluent_kafka") {
        return Ok(());
    }
    let (_server, kafka) = kafka_server()?;
    sluice_tests::kafka::run_script("admin.py", &[&kafka.to_string()], Duration::from_secs(60))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_creates_a_topic_a_kafka_client_produces_to() -> anyhow::Result<()> {
    let Some(kcat) = kcat() else { return Ok(()) };
    let (server, kafka) = kafka_server()?;
    let broker = kafka.to_string();
    run_kcat(
        &kcat,
        &["-b", &broker, "-P", "-t", "fresh"],
        Some(b"a\nb\nc\n"),
    )?;
    let output = run_kcat(
        &kcat,
        &[
            "-b",
            &broker,
            "-C",
            "-t",
            "fresh",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        None,
    )?;
    assert_eq!(output.lines().collect::<Vec<_>>(), ["a", "b", "c"]);
    // Off by flag: an unknown topic stays unknown.
    drop(server);
    let server = Standalone::start_temp(&[
        "--kafka-addr",
        "127.0.0.1:0",
        "--kafka-auto-create-topics",
        "false",
    ])?;
    let broker = server.kafka_addr.map(|a| a.to_string()).unwrap_or_default();
    let listing = run_kcat(&kcat, &["-b", &broker, "-L", "-t", "fresh"], None)?;
    assert!(
        listing.contains("Broker: Unknown topic or partition"),
        "{listing}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_requests_get_an_error_code_and_the_connection_stays() -> anyhow::Result<()> {
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeAclsRequest, DescribeAclsResponse,
        EndTxnRequest, EndTxnResponse, FindCoordinatorRequest, FindCoordinatorResponse,
        ListGroupsRequest, ListGroupsResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    };
    use sluice_tests::kafka::KafkaConnection;
    const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    const UNSUPPORTED_VERSION: i16 = 35;
    const INVALID_REQUEST: i16 = 42;

    let (_server, kafka) = kafka_server()?;
    let mut connection = KafkaConnection::connect(kafka).await?;
    // APIs Sluice does not implement: Kafka's answer type, with an error.
    let acls: DescribeAclsResponse = connection
        .call(ApiKey::DescribeAcls, 1, &DescribeAclsRequest::default())
        .await?;
    assert_eq!(acls.error_code, UNSUPPORTED_VERSION);
    let sasl: SaslHandshakeResponse = connection
        .call(ApiKey::SaslHandshake, 1, &SaslHandshakeRequest::default())
        .await?;
    assert_eq!(sasl.error_code, UNSUPPORTED_SASL_MECHANISM);
    let end: EndTxnResponse = connection
        .call(ApiKey::EndTxn, 3, &EndTxnRequest::default())
        .await?;
    assert_eq!(end.error_code, UNSUPPORTED_VERSION);
    // A supported API at a version outside the advertised range.
    let groups: ListGroupsResponse = connection
        .call(ApiKey::ListGroups, 5, &ListGroupsRequest::default())
        .await?;
    assert_eq!(groups.error_code, UNSUPPORTED_VERSION);
    // One whose answer has no error code at that version: an empty answer.
    let coordinator: FindCoordinatorResponse = connection
        .call(
            ApiKey::FindCoordinator,
            6,
            &FindCoordinatorRequest::default(),
        )
        .await?;
    assert!(coordinator.coordinators.is_empty());
    // No transaction coordinator: a clear refusal, not a retry loop.
    let mut transactional = FindCoordinatorRequest::default();
    transactional.key = "tx-1".into();
    transactional.key_type = 1;
    let coordinator: FindCoordinatorResponse = connection
        .call(ApiKey::FindCoordinator, 3, &transactional)
        .await?;
    assert_eq!(coordinator.error_code, INVALID_REQUEST);
    // The same connection still serves what is supported.
    let versions: ApiVersionsResponse = connection
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await?;
    assert_eq!(versions.error_code, 0);
    assert!(
        versions
            .api_keys
            .iter()
            .any(|v| v.api_key == ApiKey::JoinGroup as i16),
        "JoinGroup is advertised"
    );
    assert!(
        !versions
            .api_keys
            .iter()
            .any(|v| v.api_key == ApiKey::DescribeAcls as i16),
        "DescribeAcls is not advertised"
    );
    Ok(())
}
