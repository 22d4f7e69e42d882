//! The Kafka admin APIs of a standalone server (and DeleteRecords of a
//! cluster): DeleteRecords raises a partition's log start offset for good
//! (ListOffsets earliest and consumers start there, a fetch below it is
//! out of range, whole segments below it leave storage, and it survives a
//! restart, a kill -9 and a broker's loss); DescribeConfigs shows a topic's
//! settings under Kafka's names; OffsetForLeaderEpoch answers from the
//! epochs the batches carry; DescribeCluster lists the server as Metadata
//! does. confluent-kafka's AdminClient drives what it can (skipped without
//! it unless SLUICE_TEST_SERVERS_REQUIRED); requests no client library
//! sends are built with the kafka-protocol crate.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_proto::v1;
use sluice_record::{BatchBuilder, BatchHeader, Compression};
use sluice_tests::cluster::Cluster;
use sluice_tests::kafka::call;
use sluice_tests::{DEADLINE, Standalone, earliest, files_ending, latest, wait_for};

/// Kafka's error codes the tests expect.
const OFFSET_OUT_OF_RANGE: i16 = 1;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_REQUEST: i16 = 42;
const MISMATCHED_ENDPOINT_TYPE: i16 = 114;

/// Kafka's resource types and config sources.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;

fn kafka_server() -> anyhow::Result<(Standalone, SocketAddr)> {
    // Small segments: one per produce below, so deletions free whole ones.
    let server =
        Standalone::start_temp(&["--kafka-addr", "127.0.0.1:0", "--segment-bytes", "1024"])?;
    let kafka = server
        .kafka_addr
        .context("the server did not announce its Kafka address")?;
    Ok((server, kafka))
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A batch of `count` records of about 100 bytes each, "record-<first +
/// i>", timestamped now (older ones would go by the 7-day retention).
fn batch(first: usize, count: usize) -> anyhow::Result<Bytes> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let now = i64::try_from(now.as_millis())?;
    let mut builder = BatchBuilder::new(Compression::None);
    for i in first..first + count {
        let value = format!("record-{i}-{}", "x".repeat(90));
        builder.push(now, None, Some(value.as_bytes()), &[])?;
    }
    Ok(builder.build()?)
}

/// Writes `batches` batches of ten records to `topic`/`partition`, each
/// acknowledged once durable (a segment each, at 1024-byte segments).
async fn write(
    server: &Standalone,
    topic: &str,
    partition: u32,
    batches: usize,
) -> anyhow::Result<()> {
    let mut client = server.data().await?;
    let start = latest(&mut client, topic, partition).await? as usize;
    for i in 0..batches {
        sluice_tests::produce(&mut client, topic, partition, batch(start + 10 * i, 10)?).await?;
    }
    Ok(())
}

/// DeleteRecords of one partition (v2): (error code, low watermark).
async fn delete_records(
    kafka: SocketAddr,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<(i16, i64)> {
    let request = DeleteRecordsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(partition)
                        .with_offset(offset),
                ]),
        ]);
    let response: DeleteRecordsResponse = call(kafka, ApiKey::DeleteRecords, 2, &request).await?;
    let result = &response.topics[0].partitions[0];
    anyhow::ensure!(result.partition_index == partition);
    Ok((result.error_code, result.low_watermark))
}

/// A Kafka Fetch (v4) of one partition from `offset`: (error code, log
/// start offset, high watermark, base offset of the first batch).
async fn kafka_fetch(
    kafka: SocketAddr,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<(i16, i64, i64, Option<i64>)> {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    // v5 is the first with the log start offset.
    let response: FetchResponse = call(kafka, ApiKey::Fetch, 5, &request).await?;
    let data = &response.responses[0].partitions[0];
    let first = data
        .records
        .as_ref()
        .filter(|r| !r.is_empty())
        .map(|r| BatchHeader::parse(r).map(|h| h.base_offset))
        .transpose()?;
    Ok((
        data.error_code,
        data.log_start_offset,
        data.high_watermark,
        first,
    ))
}

async fn earliest_of(server: &Standalone, topic: &str, partition: u32) -> anyhow::Result<i64> {
    earliest(&mut server.data().await?, topic, partition).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_raises_the_log_start_for_good() -> anyhow::Result<()> {
    let (mut server, kafka) = kafka_server()?;
    server.create_topic("trimmed", 2, None).await?;
    write(&server, "trimmed", 0, 10).await?;
    let dir = server.partition_dir("trimmed", 0);
    let segments_before = files_ending(&dir, ".log").len();
    assert!(
        segments_before >= 10,
        "one segment per batch: {segments_before}"
    );

    assert_eq!(delete_records(kafka, "trimmed", 0, 35).await?, (0, 35));
    assert_eq!(earliest_of(&server, "trimmed", 0).await?, 35);
    // A fetch below the start is out of range; at it, the batch holding it.
    let (error, ..) = kafka_fetch(kafka, "trimmed", 0, 10).await?;
    assert_eq!(error, OFFSET_OUT_OF_RANGE);
    let (error, log_start, high_watermark, first) = kafka_fetch(kafka, "trimmed", 0, 35).await?;
    assert_eq!((error, log_start, high_watermark), (0, 35, 100));
    assert_eq!(
        first,
        Some(30),
        "the batch holding offset 35 is served whole"
    );
    // The three segments wholly below 35 leave storage.
    wait_for(
        "segments below the log start to be deleted",
        DEADLINE,
        || {
            let left = files_ending(&dir, ".log").len();
            async move { Ok((left == segments_before - 3).then_some(())) }
        },
    )
    .await?;

    // Below the start: nothing changes. Past the high watermark, an
    // unknown topic or partition: refused.
    assert_eq!(delete_records(kafka, "trimmed", 0, 20).await?, (0, 35));
    assert_eq!(
        delete_records(kafka, "trimmed", 0, 101).await?,
        (OFFSET_OUT_OF_RANGE, -1)
    );
    assert_eq!(
        delete_records(kafka, "trimmed", 0, -5).await?,
        (OFFSET_OUT_OF_RANGE, -1)
    );
    assert_eq!(
        delete_records(kafka, "nosuch", 0, 1).await?,
        (UNKNOWN_TOPIC_OR_PARTITION, -1)
    );
    assert_eq!(
        delete_records(kafka, "trimmed", 2, 1).await?,
        (UNKNOWN_TOPIC_OR_PARTITION, -1)
    );
    assert_eq!(
        delete_records(kafka, "trimmed", -1, 1).await?,
        (UNKNOWN_TOPIC_OR_PARTITION, -1)
    );
    // -1: everything up to the high watermark; writing goes on after it.
    write(&server, "trimmed", 1, 2).await?;
    assert_eq!(delete_records(kafka, "trimmed", 1, -1).await?, (0, 20));
    write(&server, "trimmed", 1, 1).await?;
    let (error, log_start, high_watermark, first) = kafka_fetch(kafka, "trimmed", 1, 20).await?;
    assert_eq!(
        (error, log_start, high_watermark, first),
        (0, 20, 30, Some(20))
    );
    // The CLI does the same through the admin API.
    let output = server.cli(
        &[
            "topic",
            "delete-records",
            "trimmed",
            "--partition",
            "0",
            "--offset",
            "42",
        ],
        None,
    )?;
    assert!(
        output.contains("trimmed/0 now starts at offset 42"),
        "{output}"
    );

    // A crash loses none of it.
    server.kill9();
    let server = server.restart().await?;
    let kafka = server
        .kafka_addr
        .context("no Kafka address after the restart")?;
    assert_eq!(earliest_of(&server, "trimmed", 0).await?, 42);
    assert_eq!(earliest_of(&server, "trimmed", 1).await?, 20);
    let (error, ..) = kafka_fetch(kafka, "trimmed", 0, 41).await?;
    assert_eq!(error, OFFSET_OUT_OF_RANGE);
    Ok(())
}

/// Runs tests/kafka/records.py against `kafka` in `phase`.
async fn records_py(kafka: SocketAddr, phase: &str) -> anyhow::Result<()> {
    let kafka = kafka.to_string();
    sluice_tests::kafka::run_script("records.py", &[&kafka, phase], Duration::from_secs(120))
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_deletes_records_and_describes_configs_and_the_cluster()
-> anyhow::Result<()> {
    if !sluice_tests::python_has("confluent_kafka") {
        return Ok(());
    }
    let (server, kafka) = kafka_server()?;
    records_py(kafka, "before").await?;
    let server = server.restart().await?;
    let kafka = server
        .kafka_addr
        .context("no Kafka address after the restart")?;
    records_py(kafka, "after").await?;
    Ok(())
}

/// DescribeConfigs (v4) of `resources`: (type, name, keys).
async fn describe_configs(
    kafka: SocketAddr,
    resources: &[(i8, &str, Option<&[&str]>)],
) -> anyhow::Result<DescribeConfigsResponse> {
    let resources = resources
        .iter()
        .map(|(kind, name, keys)| {
            DescribeConfigsResource::default()
                .with_resource_type(*kind)
                .with_resource_name(StrBytes::from_string((*name).to_owned()))
                .with_configuration_keys(keys.map(|keys| {
                    keys.iter()
                        .map(|k| StrBytes::from_string((*k).to_owned()))
                        .collect()
                }))
        })
        .collect();
    let request = DescribeConfigsRequest::default()
        .with_resources(resources)
        .with_include_synonyms(true)
        .with_include_documentation(true);
    call(kafka, ApiKey::DescribeConfigs, 4, &request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_shows_topic_settings_under_kafka_names() -> anyhow::Result<()> {
    let (server, kafka) = kafka_server()?;
    let config = v1::TopicConfig {
        retention_bytes: Some(1 << 30),
        ..Default::default()
    };
    server.create_topic("configured", 1, Some(config)).await?;
    let cluster: DescribeClusterResponse = call(
        kafka,
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    )
    .await?;
    let node = cluster.controller_id.0.to_string();
    let keys: &[&str] = &[
        "retention.bytes",
        "retention.ms",
        "cleanup.policy",
        "no.such.config",
    ];
    let response = describe_configs(
        kafka,
        &[
            (TOPIC, "configured", Some(keys)),
            (TOPIC, "nosuch", None),
            (BROKER, &node, None),
            (BROKER, "not-this-one", None),
            (BROKER_LOGGER, &node, None),
        ],
    )
    .await?;
    let [topic, missing, broker, other_broker, logger] = &response.results[..] else {
        bail!("{} results for 5 resources", response.results.len());
    };

    assert_eq!(topic.error_code, 0, "{:?}", topic.error_message);
    assert_eq!(topic.resource_name.as_str(), "configured");
    let names: Vec<&str> = topic.configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["retention.ms", "retention.bytes", "cleanup.policy"],
        "only the keys asked for"
    );
    let retention_bytes = &topic.configs[1];
    assert_eq!(retention_bytes.value.as_deref(), Some("1073741824"));
    assert_eq!(retention_bytes.config_source, DYNAMIC_TOPIC_CONFIG);
    assert!(!retention_bytes.read_only);
    let synonyms: Vec<(&str, i8)> = retention_bytes
        .synonyms
        .iter()
        .map(|s| (s.name.as_str(), s.source))
        .collect();
    assert_eq!(
        synonyms,
        [
            ("retention.bytes", DYNAMIC_TOPIC_CONFIG),
            ("log.retention.bytes", DEFAULT_CONFIG)
        ]
    );
    assert!(
        retention_bytes
            .documentation
            .as_ref()
            .is_some_and(|d| !d.is_empty())
    );
    let retention_ms = &topic.configs[0];
    assert_eq!(retention_ms.config_source, DEFAULT_CONFIG);
    assert_eq!(
        retention_ms.value.as_deref(),
        Some("604800000"),
        "the server's default: 7 days"
    );
    let cleanup = &topic.configs[2];
    assert_eq!(cleanup.value.as_deref(), Some("delete"));
    assert!(cleanup.read_only);

    assert_eq!(missing.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert!(missing.configs.is_empty());
    assert_eq!(broker.error_code, 0, "{:?}", broker.error_message);
    let segment_bytes = broker
        .configs
        .iter()
        .find(|c| c.name.as_str() == "log.segment.bytes")
        .context("log.segment.bytes")?;
    assert_eq!(
        segment_bytes.value.as_deref(),
        Some("1024"),
        "the server's --segment-bytes"
    );
    assert!(broker.configs.iter().all(|c| c.read_only));
    assert_eq!(other_broker.error_code, INVALID_REQUEST);
    assert_eq!(logger.error_code, INVALID_REQUEST);
    assert!(
        logger
            .error_message
            .as_ref()
            .is_some_and(|m| m.contains("not supported"))
    );

    // An older version, without documentation or types.
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(StrBytes::from_static_str("configured"))
            .with_configuration_keys(None),
    ]);
    let response: DescribeConfigsResponse =
        call(kafka, ApiKey::DescribeConfigs, 1, &request).await?;
    assert_eq!(response.results[0].error_code, 0);
    assert!(
        response.results[0].configs.len() >= 8,
        "{:?}",
        response.results[0].configs
    );
    Ok(())
}

/// OffsetForLeaderEpoch (v4) of one partition: (error, epoch, end offset).
async fn epoch_end(
    kafka: SocketAddr,
    topic: &str,
    partition: i32,
    leader_epoch: i32,
) -> anyhow::Result<(i16, i32, i64)> {
    let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
        OffsetForLeaderTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![
                OffsetForLeaderPartition::default()
                    .with_partition(partition)
                    .with_current_leader_epoch(-1)
                    .with_leader_epoch(leader_epoch),
            ]),
    ]);
    let response: OffsetForLeaderEpochResponse =
        call(kafka, ApiKey::OffsetForLeaderEpoch, 4, &request).await?;
    let result = &response.topics[0].partitions[0];
    Ok((result.error_code, result.leader_epoch, result.end_offset))
}

/// The partition leader epoch the broker wrote into the batch at `offset`.
async fn batch_epoch(kafka: SocketAddr, topic: &str, offset: i64) -> anyhow::Result<i32> {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response: FetchResponse = call(kafka, ApiKey::Fetch, 5, &request).await?;
    let records = response.responses[0].partitions[0]
        .records
        .clone()
        .context("no records")?;
    Ok(BatchHeader::parse(&records)?.partition_leader_epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_answers_from_the_epochs_batches_carry() -> anyhow::Result<()> {
    let (server, kafka) = kafka_server()?;
    server.create_topic("epochs", 1, None).await?;
    write(&server, "epochs", 0, 2).await?;
    let first = batch_epoch(kafka, "epochs", 0).await?;
    assert!(
        first > 0,
        "the broker writes its epoch into batches: {first}"
    );
    assert_eq!(epoch_end(kafka, "epochs", 0, first).await?, (0, first, 20));
    assert_eq!(
        epoch_end(kafka, "epochs", 0, -1).await?,
        (0, -1, -1),
        "no epoch"
    );
    assert_eq!(
        epoch_end(kafka, "epochs", 3, first).await?.0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        epoch_end(kafka, "nosuch", 0, first).await?.0,
        UNKNOWN_TOPIC_OR_PARTITION
    );

    // A restart takes every partition over under a newer epoch.
    let server = server.restart().await?;
    let kafka = server
        .kafka_addr
        .context("no Kafka address after the restart")?;
    write(&server, "epochs", 0, 1).await?;
    let second = batch_epoch(kafka, "epochs", 20).await?;
    assert!(second > first, "{second} after {first}");
    // The first epoch's records end where the second's begin.
    assert_eq!(epoch_end(kafka, "epochs", 0, first).await?, (0, first, 20));
    assert_eq!(
        epoch_end(kafka, "epochs", 0, second).await?,
        (0, second, 30)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_lists_the_server_as_metadata_does() -> anyhow::Result<()> {
    let (_server, kafka) = kafka_server()?;
    let versions: ApiVersionsResponse = call(
        kafka,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await?;
    for (key, min, max) in [
        (ApiKey::DeleteRecords, 0, 2),
        (ApiKey::DescribeConfigs, 1, 4),
        (ApiKey::OffsetForLeaderEpoch, 2, 4),
        (ApiKey::DescribeCluster, 0, 1),
    ] {
        let listed = versions
            .api_keys
            .iter()
            .find(|v| v.api_key == key as i16)
            .with_context(|| format!("{key:?} is not in ApiVersions"))?;
        assert_eq!(
            (listed.min_version, listed.max_version),
            (min, max),
            "{key:?}"
        );
    }
    for version in [0, 1] {
        let response: DescribeClusterResponse = call(
            kafka,
            ApiKey::DescribeCluster,
            version,
            &DescribeClusterRequest::default(),
        )
        .await?;
        assert_eq!(response.error_code, 0);
        assert_eq!(response.cluster_id.as_str(), "sluice");
        let brokers: Vec<(i32, &str, i32)> = response
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.host.as_str(), b.port))
            .collect();
        assert_eq!(
            brokers,
            [(
                response.controller_id.0,
                "127.0.0.1",
                i32::from(kafka.port())
            )]
        );
    }
    let controllers = DescribeClusterRequest::default().with_endpoint_type(2);
    let response: DescribeClusterResponse =
        call(kafka, ApiKey::DescribeCluster, 1, &controllers).await?;
    assert_eq!(response.error_code, MISMATCHED_ENDPOINT_TYPE);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_in_a_cluster_reaches_the_owner_and_outlives_it() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(1, 2, 2, &[])?;
    cluster.create_topic("trimmed", 1).await?;
    let mut client = cluster.client(1).await?;
    for i in 0..5 {
        sluice_tests::produce(&mut client, "trimmed", 0, batch(10 * i, 10)?).await?;
    }
    let request = v1::DeleteRecordsRequest {
        topic: "trimmed".into(),
        partition: 0,
        offset: 25,
    };
    let deleted = cluster
        .admin()
        .await?
        .delete_records(request)
        .await?
        .into_inner();
    assert_eq!(deleted.log_start_offset, 25);
    // The proxy that forwarded it sees it at once; the other one soon.
    assert_eq!(
        earliest(&mut cluster.client(0).await?, "trimmed", 0).await?,
        25
    );
    wait_for("the other proxy to see the new log start", DEADLINE, || {
        let mut client = client.clone();
        async move { Ok((earliest(&mut client, "trimmed", 0).await? == 25).then_some(())) }
    })
    .await?;
    // Past the high watermark: refused with Kafka's code.
    let past = v1::DeleteRecordsRequest {
        topic: "trimmed".into(),
        partition: 0,
        offset: 51,
    };
    let status = cluster
        .admin()
        .await?
        .delete_records(past)
        .await
        .expect_err("past the high watermark");
    assert_eq!(
        sluice_tests::error_code(&status),
        Some("OFFSET_OUT_OF_RANGE"),
        "{status:?}"
    );

    // The owner dies without a last checkpoint; the next owner keeps the start.
    let owner = cluster.describe("trimmed").await?.partitions[0].broker;
    cluster.broker(owner).kill9();
    cluster
        .wait_description(
            "trimmed",
            "the partition to move off the dead broker",
            DEADLINE,
            |d| d.partitions[0].broker != owner,
        )
        .await?;
    let after = wait_for("the new owner to serve", DEADLINE, || {
        let mut client = client.clone();
        async move {
            match sluice_tests::produce(&mut client, "trimmed", 0, batch(50, 10)?).await {
                Ok(_) => Ok(Some(earliest(&mut client, "trimmed", 0).await?)),
                Err(status) => Err(status.into()),
            }
        }
    })
    .await?;
    assert_eq!(after, 25);
    assert!(latest(&mut client, "trimmed", 0).await? >= 60);
    Ok(())
}
