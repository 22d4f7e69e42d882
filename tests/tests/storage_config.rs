//! Bad storage configuration — wrong credentials, a missing bucket, an
//! unreachable NameNode or S3 endpoint — stops `sluice standalone` at
//! start-up with one clear line naming the volume, not a hang and not a
//! failure at the first write.

use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::servers::{Storage, server};
use sluice_tests::sluice_bin;

/// Longest a refused start may take: the connect and request timeouts of
/// the probe plus its retries.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(60);

/// Starts standalone on `storage` and returns the last stderr line, which
/// must be its error; fails if it starts or does not exit in time.
fn refused(storage: &Storage) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, storage.config_toml())?;
    let child = Command::new(sluice_bin())
        .arg("standalone")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--grpc-addr", "127.0.0.1:0", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(REFUSAL_DEADLINE) {
        Ok(output) => output?,
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            anyhow::bail!(
                "standalone on {:?} neither started nor failed in time",
                storage.volumes
            );
        }
    };
    let status = output.status;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!status.success(), "standalone started: {stdout}");
    assert!(stdout.is_empty(), "nothing announced: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(
        last.starts_with("error: "),
        "the last line is the error: {stderr}"
    );
    Ok(last)
}

#[test]
fn wrong_credentials_are_refused_at_start() -> anyhow::Result<()> {
    let Some(endpoint) = server("SLUICE_TEST_RGW_ENDPOINT") else {
        return Ok(());
    };
    let url = "s3://sluice-test/wrong-credentials".to_owned();
    let storage = Storage::s3(url.clone(), &endpoint, "RGWTESTKEY", "not-the-secret");
    let line = refused(&storage)?;
    assert!(line.contains(&url), "the volume is named: {line}");
    assert!(line.contains("refused the credentials"), "{line}");
    Ok(())
}

#[test]
fn a_missing_bucket_is_refused_at_start() -> anyhow::Result<()> {
    let Some(endpoint) = server("SLUICE_TEST_RGW_ENDPOINT") else {
        return Ok(());
    };
    let url = "s3://no-such-bucket-here/prefix".to_owned();
    let storage = Storage::s3(url.clone(), &endpoint, "RGWTESTKEY", "RGWTESTSECRET");
    let line = refused(&storage)?;
    assert!(line.contains(&url), "the volume is named: {line}");
    assert!(
        line.contains("bucket `no-such-bucket-here` does not exist"),
        "{line}"
    );
    Ok(())
}

/// A port nothing listens on.
fn closed_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[test]
fn an_unreachable_namenode_is_refused_at_start() -> anyhow::Result<()> {
    let url = format!("hdfs://127.0.0.1:{}/sluice", closed_port()?);
    let storage = Storage {
        volumes: vec![url.clone()],
        options: Vec::new(),
    };
    let line = refused(&storage)?;
    assert!(line.contains(&url), "the volume is named: {line}");
    assert!(line.contains("cannot reach the NameNode"), "{line}");
    Ok(())
}

#[test]
fn an_unreachable_s3_endpoint_is_refused_at_start() -> anyhow::Result<()> {
    let endpoint = format!("http://127.0.0.1:{}", closed_port()?);
    let url = "s3://bucket/prefix".to_owned();
    let line = refused(&Storage::s3(url.clone(), &endpoint, "key", "secret"))?;
    assert!(line.contains(&url), "the volume is named: {line}");
    assert!(line.contains("did not answer a listing"), "{line}");
    Ok(())
}

#[test]
fn options_for_an_unconfigured_volume_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("volume");
    let storage = Storage::local(&local).with_option("s3://typo/prefix", "region", "eu-west-1");
    let line = refused(&storage)?;
    assert!(line.contains("s3://typo/prefix"), "{line}");
    assert!(line.contains("not a configured volume"), "{line}");
    Ok(())
}
