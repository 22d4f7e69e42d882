//! Cluster harness: a real etcd on free ports, and real `sluice controller`,
//! `broker` and `proxy` processes sharing one local-directory volume, all
//! in one temporary directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::servers::Storage;
use anyhow::{Context, bail};
use sluice_proto::v1;
use sluice_proto::v1::admin_client::AdminClient;
use sluice_proto::v1::sluice_client::SluiceClient;
use tonic::transport::Channel;

use crate::{run_cli, sluice_bin, wait_for};

/// What a controller logs when it wins the election.
pub const LEADING: &str = "leading the cluster";

/// How long a process may take to announce itself.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Whether a controller's log says it leads now: it last started leading
/// after it last went back to campaigning.
fn leads_now(log: &str) -> bool {
    match (log.rfind(LEADING), log.rfind("campaigning again")) {
        (Some(led), Some(stepped_down)) => led > stepped_down,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; a test binds it soon after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A real etcd (Debian's etcd-server) on free ports.
pub struct Etcd {
    child: Option<Child>,
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Etcd {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut etcd = Self {
            child: None,
            endpoint: String::new(),
            client_port: free_port()?,
            peer_port: free_port()?,
            data_dir: dir.join("etcd-data"),
            log: dir.join("etcd.log"),
        };
        etcd.endpoint = format!("http://127.0.0.1:{}", etcd.client_port);
        etcd.spawn()?;
        Ok(etcd)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new("etcd")
            .args(["--name", "n0", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--logger=zap", "--listen-client-urls", &self.endpoint])
            .args(["--advertise-client-urls", &self.endpoint])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .arg(format!("--initial-cluster=n0={peer}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start etcd (install Debian's etcd-server; scripts/test.sh does)")?;
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", self.client_port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "etcd did not listen on {} in time; see {}",
                    self.endpoint,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// kill -9, then start again on the same data and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One sluice process of a cluster, started from its arguments.
pub struct Node {
    child: Option<Child>,
    args: Vec<String>,
    pub name: String,
    pub addr: String,
    /// The Kafka listener a proxy announced (`--kafka-addr`), if any.
    pub kafka_addr: Option<String>,
    log: PathBuf,
}

impl Node {
    /// Starts `sluice ARGS` and waits for its "sluice ROLE: ... grpc=ADDR" line.
    pub fn start(name: &str, dir: &Path, args: Vec<String>) -> anyhow::Result<Self> {
        let mut node = Self {
            child: None,
            args,
            name: name.to_owned(),
            addr: String::new(),
            kafka_addr: None,
            log: dir.join(format!("{name}.log")),
        };
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(sluice_bin())
            .args(&self.args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", sluice_bin().display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        self.child = Some(child);
        let line = crate::first_line(stdout, START_DEADLINE).with_context(|| {
            format!("{} did not start in time; log:\n{}", self.name, self.log())
        })?;
        self.addr = crate::announced_addr(&line)
            .with_context(|| format!("{} printed {line:?}; log:\n{}", self.name, self.log()))?
            .to_owned();
        self.kafka_addr = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("kafka="))
            .map(str::to_owned);
        Ok(())
    }

    /// Starts the process again with the same arguments (after a kill).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.as_ref().context("not running")?.id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the harness started it and did not kill it.
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the process runs (it was not killed and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Whether the process exited by itself (not killed by the harness).
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))))
    }

    /// Waits until the process exits by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let what = format!("{} to exit", self.name);
        let child = self.child.as_mut().context("not running")?;
        wait_for(&what, timeout, || {
            let exited = child.try_wait().map_err(anyhow::Error::from);
            async move { exited }
        })
        .await
    }

    /// Waits until the process's log holds `text`.
    pub async fn wait_log(&self, text: &str, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("{} to log {text:?}", self.name);
        wait_for(&what, timeout, || {
            let found = self.log().contains(text);
            async move { Ok(found.then_some(())) }
        })
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// etcd, one or more controllers, brokers and proxies on one shared volume.
pub struct Cluster {
    // Fields drop in order: processes before etcd, etcd before the directory.
    pub proxies: Vec<Node>,
    pub brokers: Vec<Node>,
    pub controllers: Vec<Node>,
    pub etcd: Etcd,
    /// The local volume directory (used when `storage` is local).
    pub volume: PathBuf,
    /// Where brokers write and proxies read.
    pub storage: Storage,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `controllers` controllers, `brokers` brokers (ids 1..) and `proxies` proxies.
    pub fn start(
        controllers: usize,
        brokers: usize,
        proxies: usize,
        broker_flags: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_on(None, controllers, brokers, proxies, broker_flags)
    }

    /// [`start`](Self::start) on `storage` (`None`: a local directory).
    pub fn start_on(
        storage: Option<Storage>,
        controllers: usize,
        brokers: usize,
        proxies: usize,
        broker_flags: &[&str],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let volume = dir.path().join("volume");
        std::fs::create_dir_all(&volume)?;
        let storage = storage.unwrap_or_else(|| Storage::local(&volume));
        std::fs::write(dir.path().join("storage.toml"), storage.config_toml())?;
        let etcd = Etcd::start(dir.path())?;
        let mut cluster = Self {
            proxies: Vec::new(),
            brokers: Vec::new(),
            controllers: Vec::new(),
            etcd,
            volume,
            storage,
            dir,
        };
        for i in 0..controllers {
            cluster.add_controller(i)?;
        }
        for id in 1..=brokers as u64 {
            cluster.add_broker(id, broker_flags)?;
        }
        for i in 0..proxies {
            cluster.add_proxy(i)?;
        }
        Ok(cluster)
    }

    fn common(&self, role: &str) -> Vec<String> {
        vec![
            role.to_owned(),
            "--etcd".into(),
            self.etcd.endpoint.clone(),
            "--lease-ttl-ms".into(),
            "2000".into(),
            "--grpc-addr".into(),
            "127.0.0.1:0".into(),
        ]
    }

    pub fn add_controller(&mut self, i: usize) -> anyhow::Result<()> {
        self.add_controller_with(i, &[])
    }

    /// A controller with extra flags (e.g. `--coordinator false`).
    pub fn add_controller_with(&mut self, i: usize, flags: &[&str]) -> anyhow::Result<()> {
        let mut args = self.common("controller");
        args.extend(flags.iter().map(|f| f.to_string()));
        self.controllers.push(Node::start(
            &format!("controller-{i}"),
            self.dir.path(),
            args,
        )?);
        Ok(())
    }

    /// A `sluice coordinator` process (kept with the controllers).
    pub fn add_coordinator(&mut self, i: usize) -> anyhow::Result<()> {
        let args = self.common("coordinator");
        self.controllers.push(Node::start(
            &format!("coordinator-{i}"),
            self.dir.path(),
            args,
        )?);
        Ok(())
    }

    pub fn add_broker(&mut self, id: u64, flags: &[&str]) -> anyhow::Result<()> {
        let mut args = self.common("broker");
        args.extend(["--id".to_owned(), id.to_string()]);
        args.extend(self.storage_args());
        args.extend(flags.iter().map(|f| f.to_string()));
        self.brokers
            .push(Node::start(&format!("broker-{id}"), self.dir.path(), args)?);
        Ok(())
    }

    pub fn add_proxy(&mut self, i: usize) -> anyhow::Result<()> {
        self.add_proxy_with(i, &[])
    }

    /// A proxy with extra flags (e.g. `--kafka-addr 127.0.0.1:0`).
    pub fn add_proxy_with(&mut self, i: usize, flags: &[&str]) -> anyhow::Result<()> {
        let mut args = self.common("proxy");
        args.extend(self.storage_args());
        args.extend(flags.iter().map(|f| f.to_string()));
        self.proxies
            .push(Node::start(&format!("proxy-{i}"), self.dir.path(), args)?);
        Ok(())
    }

    /// `--config` with the storage's volumes and their settings.
    fn storage_args(&self) -> [String; 2] {
        let config = self.dir.path().join("storage.toml");
        ["--config".to_owned(), config.to_string_lossy().into_owned()]
    }

    /// The broker with id `id` (ids are 1.. in start order).
    pub fn broker(&mut self, id: u64) -> &mut Node {
        &mut self.brokers[id as usize - 1]
    }

    /// Every proxy's address.
    pub fn proxy_addrs(&self) -> Vec<String> {
        self.proxies.iter().map(|p| p.addr.clone()).collect()
    }

    /// A data client of proxy `proxy`.
    pub async fn client(&self, proxy: usize) -> anyhow::Result<SluiceClient<Channel>> {
        Ok(SluiceClient::new(connect(&self.proxies[proxy].addr).await?))
    }

    /// An admin client of the first proxy (which forwards to the controller).
    pub async fn admin(&self) -> anyhow::Result<AdminClient<Channel>> {
        Ok(AdminClient::new(connect(&self.proxies[0].addr).await?))
    }

    /// Creates a topic through the first proxy.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
    ) -> anyhow::Result<v1::TopicDescription> {
        let request = v1::CreateTopicRequest {
            name: name.into(),
            partitions,
            config: None,
        };
        Ok(self
            .admin()
            .await?
            .create_topic(request)
            .await?
            .into_inner())
    }

    /// Admin DescribeTopic through the first proxy: each partition's broker
    /// and epoch as the controller assigned them.
    pub async fn describe(&self, topic: &str) -> anyhow::Result<v1::TopicDescription> {
        let request = v1::DescribeTopicRequest { name: topic.into() };
        Ok(self
            .admin()
            .await?
            .describe_topic(request)
            .await?
            .into_inner())
    }

    /// Waits until the topic's description satisfies `check`.
    pub async fn wait_description(
        &self,
        topic: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&v1::TopicDescription) -> bool,
    ) -> anyhow::Result<v1::TopicDescription> {
        let found = wait_for(what, timeout, || async {
            let description = self.describe(topic).await?;
            Ok(check(&description).then_some(description))
        })
        .await;
        found.with_context(|| format!("logs:\n{}", self.logs()))
    }

    /// The index of the leading controller: waits until exactly one
    /// running controller's log says it leads now (its last "leading the
    /// cluster" comes after its last "campaigning again").
    pub async fn leader(&self) -> anyhow::Result<usize> {
        wait_for("a controller to lead", START_DEADLINE, || {
            let leading: Vec<usize> = (0..self.controllers.len())
                .filter(|&i| {
                    self.controllers[i].is_started() && leads_now(&self.controllers[i].log())
                })
                .collect();
            async move {
                match leading[..] {
                    [] => Ok(None),
                    [one] => Ok(Some(one)),
                    // Right after a change both may still say so: look again.
                    _ => Ok(None),
                }
            }
        })
        .await
    }

    /// The checkpoints of a partition on the home volume, oldest first:
    /// (sequence, epoch of the writer that saved it).
    pub async fn checkpoints(
        &self,
        topic: &str,
        partition: u32,
    ) -> anyhow::Result<Vec<(u64, u64)>> {
        let url = &self.storage.volumes[0];
        let volume = sluice_storage::open_volume_with(url, &self.storage.options_of(url)).await?;
        let prefix = format!("{topic}/{partition}/checkpoint");
        let mut found = Vec::new();
        for key in volume.list(&prefix).await? {
            let Some(sequence) = key.rsplit('/').next().and_then(|n| n.parse().ok()) else {
                continue; // not a checkpoint
            };
            let data = volume.get(&key).await?;
            let text = String::from_utf8_lossy(&data);
            let epoch =
                checkpoint_epoch(&text).with_context(|| format!("no epoch in {key}: {text:?}"))?;
            found.push((sequence, epoch));
        }
        found.sort();
        Ok(found)
    }

    /// Runs the CLI against the first proxy (on a blocking thread, so
    /// producers in this runtime keep going); returns stdout, or the error
    /// with stderr.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let server = self.proxies[0].addr.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&server, &args)
        })
        .await?
    }

    /// The processes that exited by themselves (not killed by the harness).
    pub fn exited(&mut self) -> Vec<String> {
        self.controllers
            .iter_mut()
            .chain(&mut self.brokers)
            .chain(&mut self.proxies)
            .filter_map(|node| node.has_exited().then(|| node.name.clone()))
            .collect()
    }

    /// Reads `topic` through the second proxy (or the first, if alone) and
    /// checks that every acknowledged message is there exactly once, at the
    /// offset it was acknowledged with, with contiguous offsets.
    pub async fn check_exactly_once(
        &self,
        topic: &str,
        partitions: u32,
        acknowledged: &std::collections::BTreeMap<(u32, i64), String>,
    ) -> anyhow::Result<()> {
        let consumer = self.client(self.proxies.len().min(2) - 1).await?;
        let stored = crate::load::check_acknowledged(&consumer, topic, partitions, acknowledged)
            .await
            .with_context(|| format!("logs:\n{}", self.logs()))?;
        let duplicates = crate::load::duplicates(&stored);
        anyhow::ensure!(
            duplicates == 0,
            "{duplicates} messages written twice (retries must be deduplicated by request id); logs:\n{}",
            self.logs()
        );
        Ok(())
    }

    /// Every process's log, for assertion messages.
    pub fn logs(&self) -> String {
        let nodes = self
            .controllers
            .iter()
            .chain(&self.brokers)
            .chain(&self.proxies);
        nodes
            .map(|n| format!("==== {} ====\n{}", n.name, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `sluice ARGS --server SERVER`; returns stdout, or the error with stderr.
pub fn cli(server: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = run_cli(args, server, None)?;
    if !output.status.success() {
        bail!(
            "sluice {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// A gRPC channel to `addr` (host:port).
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

/// The writer's epoch in a stored checkpoint: a header line, then JSON whose
/// first `"epoch"` field is the checkpoint's own (log/src/checkpoint.rs
/// serializes `sequence`, then `epoch`, before any segment).
fn checkpoint_epoch(text: &str) -> Option<u64> {
    let (_header, body) = text.split_once('\n')?;
    let after = &body[body.find("\"epoch\":")? + "\"epoch\":".len()..];
    let digits: String = after
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
