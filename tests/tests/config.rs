//! Standalone configuration: flags, `SLUICE_…` environment variables and the
//! `--config` TOML file, in that order of precedence; bad configuration is
//! one clear line on stderr and a non-zero exit, never a panic.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use sluice_proto::v1;
use sluice_tests::sluice_bin;

struct KillOnDrop<'a>(&'a mut Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `sluice standalone` expecting it to refuse to start.
fn refused(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let output = Command::new(sluice_bin())
        .arg("standalone")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--grpc-addr", "127.0.0.1:0"])
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()?;
    assert!(
        !output.status.success(),
        "standalone started with {args:?} {envs:?}"
    );
    let stderr = String::from_utf8(output.stderr)?;
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.starts_with("error: "),
        "the last line should be the error: {stderr}"
    );
    Ok(last)
}

#[test]
fn bad_configuration_is_one_clear_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "segment_bytes = \"big\"\n")?;
    let unknown_key = dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "segmnet_bytes = 4096\n")?;
    let bad = bad_toml.to_string_lossy();
    let unknown = unknown_key.to_string_lossy();

    let line = refused(&["--config", &bad], &[])?;
    assert!(
        line.contains("bad.toml") && line.contains("segment_bytes"),
        "{line}"
    );
    let line = refused(&["--config", &unknown], &[])?;
    assert!(
        line.contains("segmnet_bytes"),
        "the unknown key is named: {line}"
    );
    let line = refused(&["--config", "/nonexistent/sluice.toml"], &[])?;
    assert!(line.contains("/nonexistent/sluice.toml"), "{line}");
    let line = refused(&["--segment-bytes", "10"], &[])?;
    assert!(line.contains("segment_bytes 10"), "{line}");
    let line = refused(&["--volume", "ftp://example/x"], &[])?;
    assert!(
        line.contains("ftp://example/x"),
        "the volume is named: {line}"
    );
    let line = refused(&[], &[("SLUICE_MAX_BATCH_BYTES", "1")])?;
    assert!(line.contains("max_batch_bytes 1"), "{line}");
    Ok(())
}

/// The effective defaults a topic shows (describe) come from the file, an
/// environment variable overrides the file, and a flag overrides both.
#[tokio::test]
async fn flags_override_environment_override_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "segment_bytes = 8192\nretention_ms = 3600000\nmax_batch_bytes = 65536\n",
    )?;
    // SLUICE_RETENTION_MS overrides the file; --max-batch-bytes overrides both.
    let mut child = Command::new(sluice_bin())
        .arg("standalone")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--grpc-addr", "127.0.0.1:0", "--config"])
        .arg(&config)
        .args(["--max-batch-bytes", "131072"])
        .env("SLUICE_RETENTION_MS", "7200000")
        .env("SLUICE_MAX_BATCH_BYTES", "4096")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let _guard = KillOnDrop(&mut child);
    let mut line = String::new();
    let stdout = _guard.0.stdout.take().expect("stdout");
    BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("grpc="))
        .expect("standalone announces its address");
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut admin = v1::admin_client::AdminClient::new(channel);
    let create = v1::CreateTopicRequest {
        name: "configured".into(),
        partitions: 1,
        config: None,
    };
    admin.create_topic(create).await?;
    let description = admin
        .describe_topic(v1::DescribeTopicRequest {
            name: "configured".into(),
        })
        .await?
        .into_inner();
    let effective = description.config.expect("a config");
    assert_eq!(effective.segment_bytes, Some(8192), "from the file");
    assert_eq!(
        effective.retention_ms,
        Some(7_200_000),
        "from the environment"
    );
    assert_eq!(effective.max_batch_bytes, Some(131_072), "from the flag");
    Ok(())
}
