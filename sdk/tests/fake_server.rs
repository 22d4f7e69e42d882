//! The producer and consumer against an in-process fake of the gRPC API:
//! a partition log with Kafka-style idempotent sequence checks, answers
//! that are lost or refused on purpose, and a one-member group coordinator.
//! It checks the client's mechanics (batching, ordered retries, offsets,
//! positions, rejoining), not the real servers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sluice_proto::v1;
use sluice_proto::v1::admin_server::{Admin as AdminApi, AdminServer};
use sluice_proto::v1::groups_server::{Groups as GroupsApi, GroupsServer};
use sluice_proto::v1::sluice_server::{Sluice as SluiceApi, SluiceServer};
use sluice_sdk::{
    Consumer, OffsetReset, Partitioner, Producer, RebalanceListener, Record, TopicPartition,
    async_trait,
};
use tonic::{Code, Request, Response, Status};

type Answer<T> = Result<Response<T>, Status>;

const TOPIC: &str = "t";
const PARTITIONS: u32 = 3;

#[derive(Default)]
struct ProducerState {
    next_sequence: i32,
    /// (base sequence, base offset, last offset) of recent batches.
    recent: VecDeque<(i32, i64, i64)>,
}

#[derive(Default)]
struct Log {
    batches: Vec<(i64, Bytes)>,
    next: i64,
    producers: HashMap<i64, ProducerState>,
}

#[derive(Default)]
struct Fake {
    logs: Mutex<HashMap<u32, Log>>,
    next_producer: AtomicI64,
    produce_calls: AtomicU64,
    /// Every Nth produce is appended but its answer lost (0: never).
    lose_every: u64,
    /// Every Nth produce is refused with NOT_OWNER before appending.
    refuse_every: u64,
    group: Mutex<GroupState>,
    rebalance: AtomicBool,
}

#[derive(Default)]
struct GroupState {
    member: String,
    generation: i32,
    committed: HashMap<(String, u32), i64>,
}

/// The fake as a service (the gRPC traits cannot be implemented for `Arc`).
#[derive(Clone)]
struct Shared(Arc<Fake>);

impl std::ops::Deref for Shared {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

fn refused(code: Code, name: &'static str) -> Status {
    sluice_proto::status(code, name, name.to_lowercase())
}

impl Fake {
    fn append(&self, partition: u32, records: Bytes) -> Result<v1::ProduceResponse, Status> {
        let batches = sluice_record::split_batches(records)
            .map_err(|_| refused(Code::InvalidArgument, "INVALID_BATCH"))?;
        let mut logs = self.logs.lock().map_err(|_| Status::internal("poisoned"))?;
        let log = logs.entry(partition).or_default();
        let mut first = None;
        let mut last = 0;
        let mut duplicate = false;
        for batch in batches {
            let header = batch.header;
            let count = header.records_count;
            if header.producer_id >= 0 {
                let state = log.producers.entry(header.producer_id).or_default();
                let sequence = header.base_sequence;
                if let Some(&(_, base, end)) =
                    state.recent.iter().find(|(seq, _, _)| *seq == sequence)
                {
                    first.get_or_insert(base);
                    last = end;
                    duplicate = true;
                    continue;
                }
                if sequence != state.next_sequence {
                    return Err(refused(Code::FailedPrecondition, "OUT_OF_ORDER_SEQUENCE"));
                }
                state.next_sequence = sequence + count;
                state
                    .recent
                    .push_back((sequence, log.next, log.next + i64::from(count) - 1));
                if state.recent.len() > 5 {
                    state.recent.pop_front();
                }
            }
            let mut bytes = batch.bytes.to_vec();
            sluice_record::set_base_offset(&mut bytes, log.next)
                .map_err(|_| Status::internal("set base offset"))?;
            first.get_or_insert(log.next);
            last = log.next + i64::from(count) - 1;
            log.batches.push((log.next, Bytes::from(bytes)));
            log.next += i64::from(count);
        }
        Ok(v1::ProduceResponse {
            partition,
            base_offset: first.unwrap_or(log.next),
            last_offset: last,
            duplicate,
        })
    }

    fn read(&self, partition: u32, offset: i64, max_bytes: usize) -> (Bytes, i64) {
        let Ok(logs) = self.logs.lock() else {
            return (Bytes::new(), 0);
        };
        let Some(log) = logs.get(&partition) else {
            return (Bytes::new(), 0);
        };
        let mut out = BytesMut::new();
        for (base, bytes) in &log.batches {
            let count = sluice_record::BatchHeader::parse(bytes)
                .map(|h| i64::from(h.records_count))
                .unwrap_or(0);
            if base + count <= offset {
                continue;
            }
            if !out.is_empty() && out.len() + bytes.len() > max_bytes {
                break;
            }
            out.extend_from_slice(bytes);
        }
        (out.freeze(), log.next)
    }

    fn values(&self, partition: u32) -> Vec<(i64, String)> {
        let Ok(logs) = self.logs.lock() else {
            return Vec::new();
        };
        let mut values = Vec::new();
        for (_, bytes) in logs.get(&partition).map_or(&[][..], |l| &l.batches[..]) {
            for record in sluice_record::decode_records(bytes).unwrap_or_default() {
                let value = record.value.unwrap_or_default();
                values.push((record.offset, String::from_utf8_lossy(&value).into_owned()));
            }
        }
        values
    }
}

#[tonic::async_trait]
impl SluiceApi for Shared {
    async fn produce(&self, request: Request<v1::ProduceRequest>) -> Answer<v1::ProduceResponse> {
        let request = request.into_inner();
        let Some(v1::produce_request::Target::Partition(partition)) = request.target else {
            return Err(Status::invalid_argument("the SDK names partitions"));
        };
        let call = self.produce_calls.fetch_add(1, Ordering::Relaxed) + 1;
        if self.refuse_every > 0 && call % self.refuse_every == 0 {
            return Err(refused(Code::Unavailable, "NOT_OWNER"));
        }
        let answer = self.append(partition, request.records)?;
        if self.lose_every > 0 && call % self.lose_every == 0 {
            return Err(Status::unavailable("answer lost"));
        }
        Ok(Response::new(answer))
    }

    async fn fetch(&self, request: Request<v1::FetchRequest>) -> Answer<v1::FetchResponse> {
        let request = request.into_inner();
        let waited =
            tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.into());
        loop {
            let (records, high_watermark) = self.read(
                request.partition,
                request.offset,
                request.max_bytes as usize,
            );
            if !records.is_empty() || tokio::time::Instant::now() >= waited {
                return Ok(Response::new(v1::FetchResponse {
                    records,
                    high_watermark,
                    log_start_offset: 0,
                }));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn list_offsets(
        &self,
        request: Request<v1::ListOffsetsRequest>,
    ) -> Answer<v1::ListOffsetsResponse> {
        let request = request.into_inner();
        let (_, end) = self.read(request.partition, i64::MAX, 0);
        let offset = match request.spec {
            Some(v1::list_offsets_request::Spec::Earliest(_)) => Some(0),
            Some(v1::list_offsets_request::Spec::Latest(_)) => Some(end),
            Some(v1::list_offsets_request::Spec::Timestamp(_)) | None => None,
        };
        Ok(Response::new(v1::ListOffsetsResponse {
            offset,
            timestamp: -1,
        }))
    }

    async fn init_producer(
        &self,
        _: Request<v1::InitProducerRequest>,
    ) -> Answer<v1::InitProducerResponse> {
        Ok(Response::new(v1::InitProducerResponse {
            producer_id: self.next_producer.fetch_add(1, Ordering::Relaxed) + 1000,
            producer_epoch: 0,
        }))
    }
}

fn unimplemented<T>() -> Answer<T> {
    Err(Status::unimplemented("not in the fake"))
}

#[tonic::async_trait]
impl AdminApi for Shared {
    async fn describe_topic(
        &self,
        request: Request<v1::DescribeTopicRequest>,
    ) -> Answer<v1::TopicDescription> {
        let name = request.into_inner().name;
        if name != TOPIC {
            return Err(refused(Code::NotFound, "UNKNOWN_TOPIC"));
        }
        Ok(Response::new(v1::TopicDescription {
            name,
            partitions: (0..PARTITIONS)
                .map(|partition| v1::PartitionDescription {
                    partition,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }))
    }
    async fn create_topic(
        &self,
        _: Request<v1::CreateTopicRequest>,
    ) -> Answer<v1::TopicDescription> {
        unimplemented()
    }
    async fn list_topics(
        &self,
        _: Request<v1::ListTopicsRequest>,
    ) -> Answer<v1::ListTopicsResponse> {
        unimplemented()
    }
    async fn delete_topic(
        &self,
        _: Request<v1::DeleteTopicRequest>,
    ) -> Answer<v1::DeleteTopicResponse> {
        unimplemented()
    }
    async fn add_partitions(
        &self,
        _: Request<v1::AddPartitionsRequest>,
    ) -> Answer<v1::TopicDescription> {
        unimplemented()
    }
    async fn cluster_status(
        &self,
        _: Request<v1::ClusterStatusRequest>,
    ) -> Answer<v1::ClusterStatusResponse> {
        unimplemented()
    }
    async fn drain_broker(
        &self,
        _: Request<v1::DrainBrokerRequest>,
    ) -> Answer<v1::DrainBrokerResponse> {
        unimplemented()
    }
    async fn move_partition(
        &self,
        _: Request<v1::MovePartitionRequest>,
    ) -> Answer<v1::MovePartitionResponse> {
        unimplemented()
    }
    async fn rebalance(&self, _: Request<v1::RebalanceRequest>) -> Answer<v1::RebalanceResponse> {
        unimplemented()
    }
    async fn volume_stats(
        &self,
        _: Request<v1::VolumeStatsRequest>,
    ) -> Answer<v1::VolumeStatsResponse> {
        unimplemented()
    }
}

#[tonic::async_trait]
impl GroupsApi for Shared {
    async fn join_group(
        &self,
        request: Request<v1::JoinGroupRequest>,
    ) -> Answer<v1::JoinGroupResponse> {
        let request = request.into_inner();
        let mut group = self
            .group
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        group.generation += 1;
        group.member = if request.member_id.is_empty() {
            format!("member-{}", group.generation)
        } else {
            request.member_id
        };
        self.rebalance.store(false, Ordering::Relaxed);
        Ok(Response::new(v1::JoinGroupResponse {
            member_id: group.member.clone(),
            generation: group.generation,
            assignor: "range".into(),
            leader_id: group.member.clone(),
            assignment: vec![v1::TopicPartitions {
                topic: TOPIC.into(),
                partitions: (0..PARTITIONS).collect(),
            }],
            heartbeat_interval_ms: 100,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Answer<v1::HeartbeatResponse> {
        let request = request.into_inner();
        let until = tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.into());
        loop {
            if let Ok(group) = self.group.lock()
                && group.generation != request.generation
            {
                return Err(refused(Code::FailedPrecondition, "ILLEGAL_GENERATION"));
            }
            if self.rebalance.load(Ordering::Relaxed) {
                return Ok(Response::new(v1::HeartbeatResponse { rebalance: true }));
            }
            if tokio::time::Instant::now() >= until {
                return Ok(Response::new(v1::HeartbeatResponse { rebalance: false }));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn leave_group(
        &self,
        _: Request<v1::LeaveGroupRequest>,
    ) -> Answer<v1::LeaveGroupResponse> {
        Ok(Response::new(v1::LeaveGroupResponse {}))
    }

    async fn commit_offsets(
        &self,
        request: Request<v1::CommitOffsetsRequest>,
    ) -> Answer<v1::CommitOffsetsResponse> {
        let request = request.into_inner();
        let mut group = self
            .group
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        if request.generation != group.generation || request.member_id != group.member {
            return Err(refused(Code::FailedPrecondition, "ILLEGAL_GENERATION"));
        }
        for commit in request.offsets {
            group
                .committed
                .insert((commit.topic, commit.partition), commit.offset);
        }
        Ok(Response::new(v1::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        _: Request<v1::FetchOffsetsRequest>,
    ) -> Answer<v1::FetchOffsetsResponse> {
        let group = self
            .group
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        Ok(Response::new(v1::FetchOffsetsResponse {
            offsets: group
                .committed
                .iter()
                .map(|((topic, partition), offset)| v1::CommittedOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: *offset,
                    ..Default::default()
                })
                .collect(),
        }))
    }

    async fn list_groups(
        &self,
        _: Request<v1::ListGroupsRequest>,
    ) -> Answer<v1::ListGroupsResponse> {
        unimplemented()
    }
    async fn describe_group(
        &self,
        _: Request<v1::DescribeGroupRequest>,
    ) -> Answer<v1::GroupDescription> {
        unimplemented()
    }
    async fn delete_group(
        &self,
        _: Request<v1::DeleteGroupRequest>,
    ) -> Answer<v1::DeleteGroupResponse> {
        unimplemented()
    }
}

/// Serve `fake` on 127.0.0.1:0; returns its address.
async fn serve(fake: Arc<Fake>) -> Result<String, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(serve_on(listener, fake, std::future::pending()));
    Ok(address)
}

/// Serve `fake` with `listener` until `stop` resolves.
async fn serve_on(
    listener: tokio::net::TcpListener,
    fake: Arc<Fake>,
    stop: impl std::future::Future<Output = ()>,
) {
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let served = tonic::transport::Server::builder()
        .add_service(SluiceServer::new(Shared(Arc::clone(&fake))))
        .add_service(AdminServer::new(Shared(Arc::clone(&fake))))
        .add_service(GroupsServer::new(Shared(fake)))
        .serve_with_incoming_shutdown(incoming, stop)
        .await;
    if let Err(error) = served {
        eprintln!("fake server: {error}");
    }
}

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::test]
async fn idempotent_retries_write_every_record_once_and_in_order() -> TestResult {
    let fake = Arc::new(Fake {
        lose_every: 3,
        refuse_every: 7,
        ..Fake::default()
    });
    let address = serve(Arc::clone(&fake)).await?;
    let producer = Producer::builder([address])
        .batch_bytes(200)
        .linger(Duration::from_millis(1))
        .max_in_flight(5)
        .partitioner(Partitioner::RoundRobin)
        .build()
        .await?;
    let mut deliveries = Vec::new();
    for i in 0..400 {
        let record = Record::new(TOPIC, format!("{i:05}"));
        let record = if i % 2 == 0 {
            record.with_key(format!("k{}", i % 10))
        } else {
            record
        };
        deliveries.push((i, producer.send(record).await?));
    }
    producer.flush().await?;
    let mut sent: HashMap<u32, Vec<(i64, String)>> = HashMap::new();
    for (i, delivery) in deliveries {
        let delivery = delivery.await?;
        sent.entry(delivery.partition)
            .or_default()
            .push((delivery.offset, format!("{i:05}")));
    }
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let written = fake.values(partition);
        let expected = sent.remove(&partition).unwrap_or_default();
        assert_eq!(
            written, expected,
            "partition {partition}: once each, in send order"
        );
        total += written.len();
    }
    assert_eq!(total, 400);
    let batches: usize = (0..PARTITIONS)
        .map(|p| {
            fake.logs
                .lock()
                .map(|l| l.get(&p).map_or(0, |l| l.batches.len()))
                .unwrap_or(0)
        })
        .sum();
    let calls = fake.produce_calls.load(Ordering::Relaxed) as usize;
    assert!(
        calls > batches + 10,
        "{calls} produce calls for {batches} batches: retries happened"
    );
    producer.close().await?;
    assert!(producer.send(Record::new(TOPIC, "late")).await.is_err());
    Ok(())
}

#[tokio::test]
async fn an_unknown_topic_fails_the_delivery() -> TestResult {
    let address = serve(Arc::new(Fake::default())).await?;
    let producer = Producer::builder([address]).build().await?;
    let error = producer.send(Record::new("nope", "x")).await?.await;
    assert_eq!(
        error.err().as_ref().and_then(|e| e.code()),
        Some("UNKNOWN_TOPIC")
    );
    let error = producer
        .send(Record::new(TOPIC, "x").with_partition(9))
        .await?
        .await;
    assert_eq!(
        error.err().as_ref().and_then(|e| e.code()),
        Some("PARTITION_OUT_OF_RANGE")
    );
    Ok(())
}

#[tokio::test]
async fn a_failover_to_the_live_endpoint() -> TestResult {
    let address = serve(Arc::new(Fake::default())).await?;
    // A port nothing listens on.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.to_string()
    };
    let producer = Producer::builder([dead.clone(), address.clone(), dead])
        .build()
        .await?;
    for _ in 0..5 {
        producer.send(Record::new(TOPIC, "x")).await?.await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_producer_reconnects_after_a_proxy_restart() -> TestResult {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(serve_on(listener, Arc::clone(&fake), async {
        let _ = stopped.await;
    }));
    let producer = Producer::builder([address.to_string()]).build().await?;
    producer.send(Record::new(TOPIC, "before")).await?.await?;
    let _ = stop.send(());
    first.await?;
    // Down for a while: the send is retried until the proxy is back.
    let during = producer.send(Record::new(TOPIC, "during")).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = tokio::net::TcpListener::bind(address).await?;
    tokio::spawn(serve_on(
        listener,
        Arc::clone(&fake),
        std::future::pending(),
    ));
    during.await?;
    producer.send(Record::new(TOPIC, "after")).await?.await?;
    let mut values: Vec<String> = (0..PARTITIONS)
        .flat_map(|p| fake.values(p))
        .map(|(_, value)| value)
        .collect();
    values.sort();
    assert_eq!(values, ["after", "before", "during"]);
    Ok(())
}

#[tokio::test]
async fn a_hand_assigned_consumer_reads_from_a_position() -> TestResult {
    let fake = Arc::new(Fake::default());
    let address = serve(Arc::clone(&fake)).await?;
    let producer = Producer::builder([address.clone()]).build().await?;
    for i in 0..50 {
        let _queued = producer
            .send(Record::new(TOPIC, format!("{i}")).with_partition(1))
            .await?;
    }
    producer.flush().await?;
    let mut consumer = Consumer::builder([address])
        .auto_offset_reset(OffsetReset::Earliest)
        .max_poll_records(20)
        .build()
        .await?;
    let tp = TopicPartition::new(TOPIC, 1);
    consumer.assign([tp.clone()])?;
    consumer.seek(&tp, 7)?;
    let mut offsets = Vec::new();
    while offsets.len() < 43 {
        let records = consumer.poll(Duration::from_secs(5)).await?;
        assert!(!records.is_empty(), "timed out at {offsets:?}");
        assert!(records.len() <= 20);
        offsets.extend(records.iter().map(|r| r.offset));
    }
    assert_eq!(offsets, (7..50).collect::<Vec<_>>());
    assert_eq!(consumer.position(&tp).await?, 50);
    consumer
        .seek_to_beginning(std::slice::from_ref(&tp))
        .await?;
    let again = consumer.poll(Duration::from_secs(5)).await?;
    assert_eq!(again.first().map(|r| r.offset), Some(0));
    assert!(consumer.commit().await.is_err(), "no group to commit to");
    Ok(())
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
}

#[async_trait]
impl RebalanceListener for Recorder {
    async fn on_revoked(&self, partitions: &[TopicPartition]) {
        if let Ok(mut events) = self.events.lock() {
            events.push(format!("revoked {}", partitions.len()));
        }
    }
    async fn on_assigned(&self, partitions: &[TopicPartition]) {
        if let Ok(mut events) = self.events.lock() {
            events.push(format!("assigned {}", partitions.len()));
        }
    }
}

#[tokio::test]
async fn a_group_member_commits_and_rejoins_on_a_rebalance() -> TestResult {
    let fake = Arc::new(Fake::default());
    let address = serve(Arc::clone(&fake)).await?;
    let producer = Producer::builder([address.clone()]).build().await?;
    for i in 0..30 {
        let _queued = producer.send(Record::new(TOPIC, format!("{i}"))).await?;
    }
    producer.flush().await?;
    let recorder = Arc::new(Recorder::default());
    let mut consumer = Consumer::builder([address])
        .group("g")
        .auto_commit(None)
        .auto_offset_reset(OffsetReset::Earliest)
        .rebalance_listener(recorder.clone())
        .build()
        .await?;
    consumer.subscribe([TOPIC])?;
    let mut seen = 0;
    while seen < 30 {
        let records = consumer.poll(Duration::from_secs(5)).await?;
        assert!(!records.is_empty());
        seen += records.len();
    }
    assert_eq!(consumer.member().map(|(_, generation)| generation), Some(1));
    consumer.commit().await?;
    let all: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(TOPIC, p))
        .collect();
    let committed = consumer.committed(&all).await?;
    assert_eq!(committed.values().sum::<i64>(), 30);

    // The coordinator starts a rebalance: the next poll rejoins promptly.
    fake.rebalance.store(true, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let records = consumer.poll(Duration::from_secs(3)).await?;
    assert!(records.is_empty());
    assert_eq!(consumer.member().map(|(_, generation)| generation), Some(2));
    assert!(started.elapsed() < Duration::from_secs(4));
    // Same partitions after the rebalance: kept, neither revoked nor assigned again.
    let events = recorder
        .events
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    assert_eq!(events, ["assigned 3"]);
    consumer.close().await?;
    Ok(())
}
