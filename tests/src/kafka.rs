//! Raw Kafka requests, built with the kafka-protocol crate, for requests no
//! client library sends (or sends only in ways a test cannot steer).

use std::net::SocketAddr;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::DEADLINE;

/// One connection to a Kafka listener; requests go one at a time.
pub struct KafkaConnection {
    stream: TcpStream,
    correlation_id: i32,
}

impl KafkaConnection {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
            .await
            .with_context(|| format!("cannot connect to {addr} within {DEADLINE:?}"))??;
        Ok(Self {
            stream,
            correlation_id: 0,
        })
    }

    /// Sends `request` as `key` at `version`; the decoded response (its
    /// correlation id checked).
    pub async fn call<Q: Encodable, R: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Q,
    ) -> anyhow::Result<R> {
        self.correlation_id += 1;
        let correlation_id = self.correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-tests")));
        let mut frame = BytesMut::new();
        header.encode(&mut frame, key.request_header_version(version))?;
        request.encode(&mut frame, version)?;
        let stream = &mut self.stream;
        let exchange = async {
            stream
                .write_all(&(frame.len() as i32).to_be_bytes())
                .await?;
            stream.write_all(&frame).await?;
            let size = stream.read_i32().await?;
            let mut answer = vec![0; usize::try_from(size)?];
            stream.read_exact(&mut answer).await?;
            anyhow::Ok(Bytes::from(answer))
        };
        let mut answer = tokio::time::timeout(DEADLINE, exchange)
            .await
            .with_context(|| format!("no answer to {key:?} v{version} within {DEADLINE:?}"))??;
        let header = ResponseHeader::decode(&mut answer, key.response_header_version(version))?;
        anyhow::ensure!(
            header.correlation_id == correlation_id,
            "correlation id {} for request {correlation_id}",
            header.correlation_id
        );
        R::decode(&mut answer, version)
    }
}

/// One request on a new connection.
pub async fn call<Q: Encodable, R: Decodable>(
    addr: SocketAddr,
    key: ApiKey,
    version: i16,
    request: &Q,
) -> anyhow::Result<R> {
    KafkaConnection::connect(addr)
        .await?
        .call(key, version, request)
        .await
}

/// Runs `python3 tests/kafka/SCRIPT ARGS` and returns its stdout once it
/// exits 0 with "ok" as its last line; otherwise (or after `timeout`, when
/// it is killed with what it started) an error with its output.
pub async fn run_script(
    script: &str,
    args: &[&str],
    timeout: std::time::Duration,
) -> anyhow::Result<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("kafka")
        .join(script);
    let child = tokio::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run python3 {}", path.display()))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow::anyhow!("{script} {args:?} did not finish within {timeout:?}"))??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success() && stdout.lines().last() == Some("ok"),
        "{script} {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}
