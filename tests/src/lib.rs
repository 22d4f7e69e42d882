//! Test harness: start the real `sluice` binary on a temporary directory and
//! a free port, wait until it listens, talk to it over gRPC, and kill it.
//!
//! Nothing here sleeps as synchronisation: every wait is for a condition,
//! with a deadline.

pub mod chaos;
pub mod cluster;
pub mod group;
pub mod kafka;
pub mod load;
pub mod servers;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use sluice_proto::v1;
use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::sluice_client::SluiceClient;
use sluice_record::Record;
use tonic::transport::Channel;

/// The first line a process prints, or `None` if none comes within `timeout`.
pub fn first_line(stdout: std::process::ChildStdout, timeout: Duration) -> Option<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    receiver.recv_timeout(timeout).ok()
}

/// The address in a role's announcement, "sluice ROLE: grpc=ADDR ...".
pub fn announced_addr(line: &str) -> Option<&str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix("grpc="))
}

/// The `sluice` binary built by cargo for this test run.
pub fn sluice_bin() -> PathBuf {
    if let Ok(path) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    // tests/ → target/<profile>/deps/<test binary>; the binary is in target/<profile>.
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("sluice")
}

/// How long a test waits for the server to start, stop or reach a state.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running `sluice standalone`.
pub struct Standalone {
    child: Child,
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    /// The Kafka listener's address, when started with `--kafka-addr`.
    pub kafka_addr: Option<SocketAddr>,
    extra_args: Vec<String>,
    stderr_log: PathBuf,
    /// The temporary directory holding `data_dir`, removed when the server is dropped.
    temp: Option<tempfile::TempDir>,
}

impl Standalone {
    /// Starts standalone on `data_dir` with extra flags, on a free port.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        Self::spawn(data_dir.to_owned(), extra_args, "127.0.0.1:0")
    }

    /// Starts standalone with extra flags on a new temporary data directory
    /// (removed on drop; the log lives beside the data, in the same directory).
    pub fn start_temp(extra_args: &[&str]) -> anyhow::Result<Self> {
        let temp = tempfile::Builder::new().prefix("sluice-test-").tempdir()?;
        let mut server = Self::start(&temp.path().join("data"), extra_args)?;
        server.temp = Some(temp);
        Ok(server)
    }

    fn spawn(data_dir: PathBuf, extra_args: Vec<String>, addr: &str) -> anyhow::Result<Self> {
        let stderr_log = data_dir.with_extension(format!("stderr-{}.log", std::process::id()));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)?;
        let mut child = Command::new(sluice_bin())
            .arg("standalone")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--grpc-addr")
            .arg(addr)
            .args(&extra_args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", sluice_bin().display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        // The first stdout line announces the address: "sluice standalone: grpc=ADDR ...".
        let line = first_line(stdout, DEADLINE).unwrap_or_default();
        let announced = announced_addr(&line);
        let Some(announced) = announced else {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "standalone did not announce its address; it printed {line:?}; see {}",
                stderr_log.display()
            );
        };
        Ok(Self {
            child,
            data_dir,
            addr: announced.parse()?,
            kafka_addr: line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("kafka="))
                .and_then(|a| a.parse().ok()),
            extra_args,
            stderr_log,
            temp: None,
        })
    }

    /// Restarts on the same data directory and port, and waits until every
    /// partition serves again. A running process is first stopped cleanly
    /// (SIGTERM, see [`Standalone::stop`]); call [`Standalone::kill9`]
    /// before to restart after a crash instead.
    pub async fn restart(mut self) -> anyhow::Result<Self> {
        if self.child.try_wait()?.is_none() {
            let status = self.stop().await?;
            if !status.success() {
                bail!(
                    "standalone exited with {status} on SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
        let addr = self.addr.to_string();
        let deadline = Instant::now() + DEADLINE;
        let mut restarted = loop {
            match Self::spawn(self.data_dir.clone(), self.extra_args.clone(), &addr) {
                Ok(restarted) => break restarted,
                // The port may linger for a moment; retry until the deadline.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        };
        restarted.temp = self.temp.take();
        restarted.wait_ready().await?;
        Ok(restarted)
    }

    /// Waits until every partition of every topic answers ListOffsets (after
    /// a start, partitions recover their checkpoints and answer "retry").
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let topics = wait_for("the topic list", DEADLINE, || async {
            let mut admin = self.admin().await?;
            Ok(Some(
                admin
                    .list_topics(v1::ListTopicsRequest {})
                    .await?
                    .into_inner()
                    .topics,
            ))
        })
        .await?;
        let client = self.data().await?;
        for topic in topics {
            for partition in 0..topic.partitions {
                let what = format!("{}/{partition} to recover", topic.name);
                wait_for(&what, DEADLINE, || {
                    let mut client = client.clone();
                    let topic = topic.name.clone();
                    async move { Ok(Some(latest(&mut client, &topic, partition).await?)) }
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Stops the process cleanly (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.terminate()?;
        self.wait_exit(DEADLINE).await
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        Ok(())
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let child = &mut self.child;
        wait_for("standalone to exit", timeout, || {
            let exited = child.try_wait().map_err(anyhow::Error::from);
            async move { exited }
        })
        .await
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    /// The process's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The directory of one partition on the default volume (DATA_DIR/data).
    pub fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.topic_dir(topic).join(partition.to_string())
    }

    /// The directory of a topic on the default volume (DATA_DIR/data).
    pub fn topic_dir(&self, topic: &str) -> PathBuf {
        self.data_dir.join("data").join(topic)
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let endpoint = Channel::from_shared(format!("http://{}", self.addr))?;
        Ok(endpoint.connect().await?)
    }

    pub async fn data(&self) -> anyhow::Result<SluiceClient<Channel>> {
        Ok(SluiceClient::new(self.channel().await?)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20))
    }

    pub async fn admin(&self) -> anyhow::Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel().await?))
    }

    /// Creates a topic.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        config: Option<v1::TopicConfig>,
    ) -> anyhow::Result<()> {
        let request = v1::CreateTopicRequest {
            name: name.to_owned(),
            partitions,
            config,
        };
        self.admin().await?.create_topic(request).await?;
        Ok(())
    }

    /// Runs the CLI against this server; returns stdout, or the error with stderr.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<String> {
        let output = run_cli(args, &self.server(), stdin)?;
        if !output.status.success() {
            bail!(
                "sluice {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?)
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sluice ARGS --server SERVER` and returns its whole output.
pub fn run_cli(
    args: &[&str],
    server: &str,
    stdin: Option<&[u8]>,
) -> anyhow::Result<std::process::Output> {
    use std::io::Write;
    let mut child = Command::new(sluice_bin())
        .args(args)
        .arg("--server")
        .arg(server)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().context("no stdin")?;
        match pipe.write_all(input) {
            // The command may fail (and exit) before it reads its input.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    Ok(child.wait_with_output()?)
}

/// Waits until `check` returns `Some`, trying again until `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last error: {last_error:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stable error code a status carries in the `sluice-error` metadata.
pub fn error_code(status: &tonic::Status) -> Option<&str> {
    status
        .metadata()
        .get(sluice_proto::ERROR_CODE_KEY)
        .and_then(|value| value.to_str().ok())
}

/// Produces `records` (one or more whole batches) to an explicit partition.
pub async fn produce(
    client: &mut SluiceClient<Channel>,
    topic: &str,
    partition: u32,
    records: Bytes,
) -> Result<v1::ProduceResponse, tonic::Status> {
    let request = v1::ProduceRequest {
        topic: topic.to_owned(),
        target: Some(v1::produce_request::Target::Partition(partition)),
        records,
        acks: v1::AckMode::Durable as i32,
    };
    Ok(client.produce(request).await?.into_inner())
}

/// A fetch request that answers at once.
pub fn fetch_request(topic: &str, partition: u32, offset: i64) -> v1::FetchRequest {
    v1::FetchRequest {
        topic: topic.to_owned(),
        partition,
        offset,
        max_bytes: 1 << 20,
        min_bytes: 0,
        max_wait_ms: 0,
    }
}

/// ListOffsets: earliest, latest or by timestamp.
pub async fn list_offset(
    client: &mut SluiceClient<Channel>,
    topic: &str,
    partition: u32,
    spec: v1::list_offsets_request::Spec,
) -> Result<Option<i64>, tonic::Status> {
    let request = v1::ListOffsetsRequest {
        topic: topic.to_owned(),
        partition,
        spec: Some(spec),
    };
    Ok(client.list_offsets(request).await?.into_inner().offset)
}

/// The earliest offset still stored.
pub async fn earliest(
    client: &mut SluiceClient<Channel>,
    topic: &str,
    partition: u32,
) -> anyhow::Result<i64> {
    let spec = v1::list_offsets_request::Spec::Earliest(v1::Empty {});
    list_offset(client, topic, partition, spec)
        .await?
        .context("ListOffsets earliest returned no offset")
}

/// The high watermark.
pub async fn latest(
    client: &mut SluiceClient<Channel>,
    topic: &str,
    partition: u32,
) -> anyhow::Result<i64> {
    let spec = v1::list_offsets_request::Spec::Latest(v1::Empty {});
    list_offset(client, topic, partition, spec)
        .await?
        .context("ListOffsets latest returned no offset")
}

/// Reads a whole partition from `offset` to its high watermark: every batch,
/// as the server returned its bytes, in order. The first batch may start
/// below `offset`.
pub async fn read_batches(
    client: &mut SluiceClient<Channel>,
    topic: &str,
    partition: u32,
    mut offset: i64,
) -> anyhow::Result<Vec<Bytes>> {
    let mut batches = Vec::new();
    loop {
        let response = client
            .fetch(fetch_request(topic, partition, offset))
            .await?
            .into_inner();
        if response.records.is_empty() {
            if offset >= response.high_watermark {
                return Ok(batches);
            }
            bail!(
                "empty fetch at offset {offset} below the high watermark {}",
                response.high_watermark
            );
        }
        for batch in sluice_record::BatchIter::new(response.records) {
            let batch = batch?;
            sluice_record::validate_batch(&batch.bytes)?;
            offset = offset.max(batch.header.next_offset());
            batches.push(batch.bytes);
        }
    }
}

/// Reads a whole partition from `offset` to its high watermark: every record
/// at or after `offset`, decoded, in order.
pub async fn read_records(
    client: &mut SluiceClient<Channel>,
    topic: &str,
    partition: u32,
    offset: i64,
) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    for batch in read_batches(client, topic, partition, offset).await? {
        for record in sluice_record::decode_records(&batch)? {
            if record.offset >= offset {
                records.push(record);
            }
        }
    }
    Ok(records)
}

/// Reads a whole partition from `offset` to its high watermark: every
/// record's (offset, value), in order.
pub async fn read_all(
    client: &mut SluiceClient<Channel>,
    topic: &str,
    partition: u32,
    offset: i64,
) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
    Ok(read_records(client, topic, partition, offset)
        .await?
        .into_iter()
        .map(|r| (r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()))
        .collect())
}

/// Checks that `offsets` run contiguously from `first`.
pub fn assert_contiguous(what: &str, first: i64, offsets: impl IntoIterator<Item = i64>) {
    for (index, offset) in offsets.into_iter().enumerate() {
        assert_eq!(
            offset,
            first + index as i64,
            "{what}: offsets are not contiguous from {first} (record #{index})"
        );
    }
}

/// Files under `dir` (not recursive) whose names end with `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// The seed of a randomised test: `SLUICE_TEST_SEED` to replay one, else
/// fresh. Printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("SLUICE_TEST_SEED") {
        Ok(text) => text.parse().expect("SLUICE_TEST_SEED must be a u64"),
        Err(_) => rand::random(),
    };
    println!("{test}: seed {seed} (replay with SLUICE_TEST_SEED={seed})");
    seed
}

/// Checks that `result` failed with gRPC `code` and Sluice error `name`;
/// returns the status for further checks.
#[track_caller]
pub fn expect_error<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    name: &str,
) -> tonic::Status {
    let status = match result {
        Ok(value) => panic!("{what}: expected {code:?} {name}, got success {value:?}"),
        Err(status) => status,
    };
    assert_eq!(
        (status.code(), error_code(&status)),
        (code, Some(name)),
        "{what}: wrong error (message {:?})",
        status.message()
    );
    assert!(
        !status.message().is_empty(),
        "{what}: the error has no message"
    );
    status
}

/// Whether `python3` can import `module` (scripts/testenv/install.sh
/// installs the Kafka clients); without it a test is skipped, unless the
/// servers are required (CI).
pub fn python_has(module: &str) -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("SLUICE_TEST_SERVERS_REQUIRED").is_none(),
            "python3 cannot import {module} (scripts/testenv/install.sh installs it)"
        );
        eprintln!("skipped: python3 cannot import {module}");
    }
    found
}
