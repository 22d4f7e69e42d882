//! Cluster harness: a real etcd on free ports, and real `sluice controller`,
//! `broker` and `proxy` processes sharing one local-directory volume, all
//! in one temporary directory removed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::sluice_bin;

/// How long a process may take to announce itself.
const START_DEADLINE: Duration = Duration::from_secs(30);

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
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        self.child = Some(child);
        let line = receiver.recv_timeout(START_DEADLINE).map_err(|_| {
            anyhow::anyhow!("{} did not start in time; log:\n{}", self.name, self.log())
        })?;
        self.addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("grpc="))
            .with_context(|| format!("{} printed {line:?}; log:\n{}", self.name, self.log()))?
            .to_owned();
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
    pub volume: PathBuf,
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
        let dir = tempfile::tempdir()?;
        let volume = dir.path().join("volume");
        std::fs::create_dir_all(&volume)?;
        let etcd = Etcd::start(dir.path())?;
        let mut cluster = Self {
            proxies: Vec::new(),
            brokers: Vec::new(),
            controllers: Vec::new(),
            etcd,
            volume,
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
        let args = self.common("controller");
        self.controllers.push(Node::start(
            &format!("controller-{i}"),
            self.dir.path(),
            args,
        )?);
        Ok(())
    }

    pub fn add_broker(&mut self, id: u64, flags: &[&str]) -> anyhow::Result<()> {
        let mut args = self.common("broker");
        args.extend(["--id".to_owned(), id.to_string(), "--volume".to_owned()]);
        args.push(self.volume.to_string_lossy().into_owned());
        args.extend(flags.iter().map(|f| f.to_string()));
        self.brokers
            .push(Node::start(&format!("broker-{id}"), self.dir.path(), args)?);
        Ok(())
    }

    pub fn add_proxy(&mut self, i: usize) -> anyhow::Result<()> {
        let mut args = self.common("proxy");
        args.extend([
            "--volume".to_owned(),
            self.volume.to_string_lossy().into_owned(),
        ]);
        self.proxies
            .push(Node::start(&format!("proxy-{i}"), self.dir.path(), args)?);
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
