//! Cloud object-store volumes: `s3://bucket/prefix`, `gs://bucket/prefix`,
//! `az://container/prefix`, all through `object_store` and one
//! [`ObjectStoreVolume`].
//!
//! Configuration is the one each cloud's own tools read from the
//! environment (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_REGION`, `AWS_ALLOW_HTTP`, …; `GOOGLE_SERVICE_ACCOUNT`, …;
//! `AZURE_STORAGE_ACCOUNT_NAME`, …), overridden per volume by
//! [`VolumeOptions`] from the config file, with the key names `object_store`
//! accepts (`endpoint`, `access_key_id`, `region`, `allow_http`, `timeout`…).
//!
//! A volume is probed when it is opened (one LIST under its prefix), so wrong
//! credentials, a missing bucket or an unreachable endpoint stop the process
//! at start-up with a message naming the volume, instead of failing the first
//! write minutes later.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::RetryConfig;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::client::ClientConfigKey;
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path;
use object_store::prefix::PrefixStore;

use crate::error::{Result, StorageError};
use crate::object::ObjectStoreVolume;

/// Per-volume settings from the config file: `object_store` configuration
/// keys (with or without the `aws_`/`google_`/`azure_` prefix) and values.
pub type VolumeOptions = BTreeMap<String, String>;

/// Client settings applied unless the environment (`AWS_TIMEOUT`,
/// `GOOGLE_TIMEOUT`, …) or the volume's options set them: a stalled store
/// must fail a write in seconds, so the partition moves on to another
/// volume, rather than after object_store's defaults of 30 s per attempt
/// and 3 minutes of retries.
const CLIENT_DEFAULTS: [(ClientConfigKey, &str, &str); 2] = [
    (ClientConfigKey::ConnectTimeout, "CONNECT_TIMEOUT", "3s"),
    (ClientConfigKey::Timeout, "TIMEOUT", "10s"),
];

/// The [`CLIENT_DEFAULTS`] the environment (variables `{env_prefix}_NAME`)
/// does not set; the volume's options are applied after them.
fn client_defaults(env_prefix: &str) -> impl Iterator<Item = (ClientConfigKey, &'static str)> {
    let env_prefix = env_prefix.to_owned();
    CLIENT_DEFAULTS
        .into_iter()
        .filter(move |(_, name, _)| std::env::var_os(format!("{env_prefix}_{name}")).is_none())
        .map(|(key, _, value)| (key, value))
}

/// Retries of requests that failed for a retriable reason (a 5xx answer, a
/// dropped connection, a timeout), with exponential backoff.
fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
        ..RetryConfig::default()
    }
}

/// The cloud schemes this module opens.
pub(crate) const SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

/// Opens and probes the cloud volume `url` (`scheme://bucket/prefix`).
pub(crate) async fn open(
    url: &str,
    scheme: &str,
    rest: &str,
    options: &VolumeOptions,
) -> Result<ObjectStoreVolume> {
    let bad_url = |reason: String| StorageError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() || bucket.contains(['?', '#', '@', ':']) {
        return Err(bad_url(format!(
            "expected {scheme}://BUCKET/PREFIX with a plain bucket or container name"
        )));
    }
    let prefix = prefix.trim_end_matches('/');
    let location = if prefix.is_empty() {
        None
    } else {
        Some(
            Path::parse(prefix)
                .map_err(|error| bad_url(format!("bad prefix `{prefix}`: {error}")))?,
        )
    };
    let build = |timeout: Option<&str>| -> Result<Arc<dyn ObjectStore>> {
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => Arc::new(build_s3(bucket, options, timeout).map_err(bad_url)?),
            "gs" => Arc::new(build_gcs(bucket, options, timeout).map_err(bad_url)?),
            _ => Arc::new(build_azure(bucket, options, timeout).map_err(bad_url)?),
        };
        Ok(match &location {
            None => store,
            Some(location) => Arc::new(PrefixStore::new(store, location.clone())),
        })
    };
    let store = build(None)?;
    probe(url, bucket, &store).await?;
    // Merges move whole segments in one request: a client whose per-request
    // timeout fits hundreds of megabytes on a slow link.
    let bulk = build(Some(BULK_TIMEOUT))?;
    Ok(ObjectStoreVolume::new(url, store).with_bulk_store(bulk))
}

/// Per-request timeout of the client that merges segments.
const BULK_TIMEOUT: &str = "600s";

/// Applies `options` to a builder through its `with_config`, refusing unknown keys.
fn configure<B, K: FromStr<Err = object_store::Error>>(
    mut builder: B,
    options: &VolumeOptions,
    with_config: impl Fn(B, K, &str) -> B,
) -> std::result::Result<B, String> {
    for (key, value) in options {
        let parsed = K::from_str(key).map_err(|_| {
            format!("unknown option `{key}` (see object_store's configuration keys)")
        })?;
        builder = with_config(builder, parsed, value);
    }
    Ok(builder)
}

/// Builds one cloud's store: the environment (`{ENV}_*`), then
/// [`CLIENT_DEFAULTS`] the environment leaves unset, then the volume's
/// options, then the `timeout` override (for the merge client), then
/// [`retry_config`]. The three clouds' builders share no trait, hence a macro.
macro_rules! build_store {
    ($builder:expr, $key:ty, $env:literal, $options:expr, $timeout:expr) => {{
        let mut builder = $builder;
        for (key, value) in client_defaults($env) {
            builder = builder.with_config(<$key>::Client(key), value);
        }
        let mut builder = configure(builder, $options, |b, k: $key, v| b.with_config(k, v))?;
        if let Some(timeout) = $timeout {
            builder = builder.with_config(<$key>::Client(ClientConfigKey::Timeout), timeout);
        }
        builder
            .with_retry(retry_config())
            .build()
            .map_err(|error| error.to_string())
    }};
}

fn build_s3(
    bucket: &str,
    options: &VolumeOptions,
    timeout: Option<&str>,
) -> std::result::Result<impl ObjectStore, String> {
    let builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    build_store!(builder, AmazonS3ConfigKey, "AWS", options, timeout)
}

fn build_gcs(
    bucket: &str,
    options: &VolumeOptions,
    timeout: Option<&str>,
) -> std::result::Result<impl ObjectStore, String> {
    let builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    build_store!(builder, GoogleConfigKey, "GOOGLE", options, timeout)
}

fn build_azure(
    container: &str,
    options: &VolumeOptions,
    timeout: Option<&str>,
) -> std::result::Result<impl ObjectStore, String> {
    let builder = MicrosoftAzureBuilder::from_env().with_container_name(container);
    build_store!(builder, AzureConfigKey, "AZURE", options, timeout)
}

/// One LIST request (at most one key) under the volume's prefix: proves the
/// endpoint answers, the credentials are accepted and the bucket exists.
async fn probe(url: &str, bucket: &str, store: &Arc<dyn ObjectStore>) -> Result<()> {
    let bad = |reason: String| StorageError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let missing = || {
        bad(format!(
            "bucket `{bucket}` does not exist (create it first; Sluice never creates buckets)"
        ))
    };
    match store.list_with_delimiter(None).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::NotFound { .. }) => Err(missing()),
        Err(error) => {
            let cause = root_cause(&error);
            if cause.contains("NoSuchBucket") || cause.contains("NoSuchContainer") {
                Err(missing())
            } else if [
                "403 Forbidden",
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "AccessDenied",
            ]
            .iter()
            .any(|refusal| cause.contains(refusal))
            {
                Err(bad(format!(
                    "the store refused the credentials (check the access key and secret): {cause}"
                )))
            } else {
                Err(bad(format!(
                    "the store did not answer a listing of the volume: {cause}"
                )))
            }
        }
    }
}

/// The error and its sources on one line: object_store's outer messages
/// ("Generic S3 error") hide the useful part (403, connection refused).
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}
