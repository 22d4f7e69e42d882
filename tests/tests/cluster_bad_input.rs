//! Bad input through the proxies of a cluster: unknown topics and
//! partitions out of range fail at once with their stable codes (no hang,
//! no retry loop), a corrupt batch is refused by the owning broker and its
//! error passed through unchanged, and a produce to a partition whose
//! broker was just killed is retried until the new owner takes it: a delay,
//! not an error.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use sluice_proto::v1;
use sluice_tests::cluster::Cluster;
use sluice_tests::load::{Acknowledged, check_acknowledged, produce_request};
use sluice_tests::{expect_error, fetch_request, latest, list_offset, produce};
use tonic::Code;

/// A refusal must come at once: well under the proxy's retry budget.
const PROMPT: Duration = Duration::from_secs(2);

/// Awaits `request`, failing if it takes longer than `limit`.
async fn within<T>(what: &str, limit: Duration, request: impl Future<Output = T>) -> T {
    let started = Instant::now();
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result,
        Err(_) => panic!(
            "{what}: no answer within {limit:?} (hangs or retries; {:?} so far)",
            started.elapsed()
        ),
    }
}

fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_and_partitions_fail_at_once_on_every_proxy() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, 2, 2, &[])?;
    cluster.create_topic("real", 2).await?;
    for proxy in 0..2 {
        let mut client = cluster.client(proxy).await?;
        // The second proxy learns the topic from etcd shortly after.
        sluice_tests::wait_for("the proxy to know the topic", PROMPT * 5, || {
            let mut client = client.clone();
            async move { Ok(Some(latest(&mut client, "real", 1).await?)) }
        })
        .await?;
        let on = |what: &str| format!("proxy {proxy}: {what}");
        let records = sluice_tests::load::batch(&values("bad", 1))?;

        for (topic, partition, code, name) in [
            ("missing", 0, Code::NotFound, "UNKNOWN_TOPIC"),
            ("real", 2, Code::InvalidArgument, "PARTITION_OUT_OF_RANGE"),
            (
                "real",
                1000,
                Code::InvalidArgument,
                "PARTITION_OUT_OF_RANGE",
            ),
        ] {
            let what = on(&format!("produce to {topic}/{partition}"));
            let result = within(
                &what,
                PROMPT,
                produce(&mut client, topic, partition, records.clone()),
            )
            .await;
            expect_error(&what, result, code, name);

            // A long-poll fetch is refused at once too, not after its wait.
            let what = on(&format!("fetch from {topic}/{partition}"));
            let mut request = fetch_request(topic, partition, 0);
            request.min_bytes = 1;
            request.max_wait_ms = 10_000;
            let result = within(&what, PROMPT, client.fetch(request)).await;
            expect_error(&what, result, code, name);

            let what = on(&format!("list offsets of {topic}/{partition}"));
            let spec = v1::list_offsets_request::Spec::Latest(v1::Empty {});
            let result = within(
                &what,
                PROMPT,
                list_offset(&mut client, topic, partition, spec),
            )
            .await;
            expect_error(&what, result, code, name);
        }

        // A produce choosing its partition by key on an unknown topic.
        let what = on("produce by key to an unknown topic");
        let request = v1::ProduceRequest {
            topic: "missing".into(),
            target: Some(v1::produce_request::Target::Key(b"k".to_vec().into())),
            records: records.clone(),
            acks: v1::AckMode::Durable as i32,
        };
        let result = within(&what, PROMPT, client.produce(request)).await;
        expect_error(&what, result, Code::NotFound, "UNKNOWN_TOPIC");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_is_refused_by_the_broker_and_passed_through() -> anyhow::Result<()> {
    let cluster = Cluster::start(1, 2, 1, &[])?;
    let topic = "crc";
    cluster.create_topic(topic, 1).await?;
    let mut client = cluster.client(0).await?;
    let acknowledged = Acknowledged::default();
    let good = values("good", 3);
    let response = client.produce(produce_request(topic, 0, &good)?).await?;
    acknowledged.record(0, response.into_inner().base_offset, &good);

    let mut corrupt = sluice_tests::load::batch(&values("corrupt", 3))?.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    let corrupt = Bytes::from(corrupt);
    for attempt in 0..3 {
        let what = format!("corrupt batch, attempt {attempt}");
        let result = within(
            &what,
            PROMPT,
            produce(&mut client, topic, 0, corrupt.clone()),
        )
        .await;
        let status = expect_error(&what, result, Code::InvalidArgument, "CORRUPT_BATCH_CRC");
        assert!(
            status.message().to_lowercase().contains("crc"),
            "{what}: the broker's message is passed on: {:?}",
            status.message()
        );
    }
    // A good batch together with a corrupt one: nothing of the request is stored.
    let mut both = sluice_tests::load::batch(&values("good-with-corrupt", 2))?.to_vec();
    both.extend_from_slice(&corrupt);
    let what = "a good batch followed by a corrupt one";
    let result = within(
        what,
        PROMPT,
        produce(&mut client, topic, 0, Bytes::from(both)),
    )
    .await;
    expect_error(what, result, Code::InvalidArgument, "CORRUPT_BATCH_CRC");

    let after = values("after", 2);
    let response = client.produce(produce_request(topic, 0, &after)?).await?;
    acknowledged.record(0, response.into_inner().base_offset, &after);
    let stored = check_acknowledged(&client, topic, 1, &acknowledged.snapshot()).await?;
    let expected: Vec<String> = good.into_iter().chain(after).collect();
    assert_eq!(
        stored[&0], expected,
        "nothing of a refused request is stored"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_to_a_killed_owner_is_retried_until_the_new_owner_takes_it() -> anyhow::Result<()>
{
    let mut cluster = Cluster::start(1, 2, 2, &[])?;
    let topic = "moving";
    cluster.create_topic(topic, 2).await?;
    let acknowledged = Acknowledged::default();
    let mut client = cluster.client(0).await?;
    let before = values("before", 3);
    let response = client.produce(produce_request(topic, 0, &before)?).await?;
    acknowledged.record(0, response.into_inner().base_offset, &before);

    let description = cluster.describe(topic).await?;
    let owner = description.partitions[0].broker;
    cluster.broker(owner).kill9();
    // Sent at once, through both proxies: each waits for the new owner.
    let started = Instant::now();
    for proxy in 0..2 {
        let mut client = cluster.client(proxy).await?;
        let during = values(&format!("during-via-proxy-{proxy}"), 2);
        let what = format!("produce through proxy {proxy} while broker {owner} is dead");
        let response = within(
            &what,
            Duration::from_secs(15),
            client.produce(produce_request(topic, 0, &during)?),
        )
        .await
        .with_context(|| format!("{what}: the proxy should retry, not fail"))?;
        acknowledged.record(0, response.into_inner().base_offset, &during);
    }
    eprintln!(
        "produce after kill -9 of the owner answered in {:?}",
        started.elapsed()
    );
    let now = cluster.describe(topic).await?;
    assert_ne!(
        now.partitions[0].broker, owner,
        "partition 0 moved: {now:?}"
    );
    let consumer = cluster.client(1).await?;
    check_acknowledged(&consumer, topic, 1, &acknowledged.snapshot())
        .await
        .with_context(|| format!("logs:\n{}", cluster.logs()))?;
    Ok(())
}
