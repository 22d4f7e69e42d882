//! The real storage servers tests run against, and the volumes on them.
//!
//! `scripts/testenv/servers.sh up DIR` (run by the test command) starts
//! Ceph RGW, moto and HDFS on free ports and writes their addresses to
//! `DIR/env`, which the test command exports. A test whose server is not
//! there prints that it is skipped and passes, unless
//! `SLUICE_TEST_SERVERS_REQUIRED` is set (as in CI), where it fails.
//!
//! Tests that stop a server (to see writes move to another volume) start a
//! private moto of their own with [`Moto::start`].

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// The value of `var`, or `None` when the test should be skipped.
pub fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var_os("SLUICE_TEST_SERVERS_REQUIRED").is_some() => {
            panic!("{var} is not set: start the servers with scripts/testenv/servers.sh up DIR")
        }
        _ => {
            eprintln!("skipped: {var} is not set (scripts/testenv/servers.sh starts the servers)");
            None
        }
    }
}

/// A name no other test (or run) uses, for bucket prefixes and HDFS paths.
pub fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Where a cluster or standalone process keeps its data: volume URLs (the
/// first holds checkpoints) and, for remote ones, their settings.
#[derive(Clone, Debug)]
pub struct Storage {
    pub volumes: Vec<String>,
    /// `(url, key, value)` settings written under `[volume_options."url"]`.
    pub options: Vec<(String, String, String)>,
}

impl Storage {
    /// One volume without settings (a local directory).
    pub fn local(path: &std::path::Path) -> Self {
        Self {
            volumes: vec![path.to_string_lossy().into_owned()],
            options: Vec::new(),
        }
    }

    /// A fresh prefix in bucket `sluice-test` on the shared Ceph RGW.
    pub fn rgw(test: &str) -> Option<Self> {
        let endpoint = server("SLUICE_TEST_RGW_ENDPOINT")?;
        let key = std::env::var("SLUICE_TEST_RGW_KEY").unwrap_or_else(|_| "RGWTESTKEY".into());
        let secret =
            std::env::var("SLUICE_TEST_RGW_SECRET").unwrap_or_else(|_| "RGWTESTSECRET".into());
        let url = format!("s3://sluice-test/{}", unique(test));
        Some(Self::s3(url, &endpoint, &key, &secret))
    }

    /// A fresh directory on the shared HDFS.
    pub fn hdfs(test: &str) -> Option<Self> {
        let namenode = server("SLUICE_TEST_HDFS")?;
        Some(Self {
            volumes: vec![format!("{namenode}/{}", unique(test))],
            options: Vec::new(),
        })
    }

    /// An S3 volume `url` at `endpoint` (plain HTTP) with these credentials.
    pub fn s3(url: String, endpoint: &str, key: &str, secret: &str) -> Self {
        let options = [
            ("endpoint", endpoint),
            ("access_key_id", key),
            ("secret_access_key", secret),
            ("region", "us-east-1"),
            ("allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (url.clone(), k.to_owned(), v.to_owned()))
        .collect();
        Self {
            volumes: vec![url],
            options,
        }
    }

    /// Adds the volumes of `other` after these.
    pub fn and(mut self, other: Storage) -> Self {
        self.volumes.extend(other.volumes);
        self.options.extend(other.options);
        self
    }

    /// Sets one more option on volume `url`.
    pub fn with_option(mut self, url: &str, key: &str, value: &str) -> Self {
        self.options
            .push((url.to_owned(), key.to_owned(), value.to_owned()));
        self
    }

    /// The config file text: `volumes` and `[volume_options."url"]` tables.
    pub fn config_toml(&self) -> String {
        let quoted: Vec<String> = self.volumes.iter().map(|v| format!("{v:?}")).collect();
        let mut text = format!("volumes = [{}]\n", quoted.join(", "));
        let mut urls: Vec<&String> = Vec::new();
        for (url, _, _) in &self.options {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        for url in urls {
            let settings: Vec<_> = self.options.iter().filter(|(u, _, _)| u == url).collect();
            let _ = writeln!(text, "\n[volume_options.{url:?}]");
            for (_, key, value) in settings {
                let _ = writeln!(text, "{key:?} = {value:?}");
            }
        }
        text
    }

    /// The settings of one volume, as `open_volume_with` takes them.
    pub fn options_of(&self, url: &str) -> std::collections::BTreeMap<String, String> {
        self.options
            .iter()
            .filter(|(u, _, _)| u == url)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A private moto S3 server on a free port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` and creates `buckets`.
    pub async fn start(buckets: &[&str]) -> anyhow::Result<Self> {
        let port = crate::cluster::free_port()?;
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start moto_server (pip install 'moto[server]')")?;
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let address = format!("127.0.0.1:{port}");
        crate::wait_for("moto to listen", Duration::from_secs(30), || async {
            Ok(tokio::net::TcpStream::connect(&address).await.ok())
        })
        .await?;
        for bucket in buckets {
            // moto accepts unsigned requests: a bare PUT creates a bucket.
            let response = http_put(&address, &format!("/{bucket}")).await?;
            anyhow::ensure!(
                response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
                "creating bucket {bucket} on moto: {response}"
            );
        }
        Ok(moto)
    }

    /// A volume `s3://bucket/prefix` on this server.
    pub fn storage(&self, bucket: &str, test: &str) -> Storage {
        let url = format!("s3://{bucket}/{}", unique(test));
        Storage::s3(url, &self.endpoint, "testing", "testing")
    }

    /// Sends SIGSTOP (`"STOP"`) or SIGCONT (`"CONT"`) to the server.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} moto failed");
        Ok(())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // A stopped process must be continued to die of SIGKILL promptly.
        let _ = self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 `PUT path` with an empty body; returns the status line.
async fn http_put(address: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .context("moto did not answer")??;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}
