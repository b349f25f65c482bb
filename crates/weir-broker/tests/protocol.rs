//! Wire-level tests against an in-process broker: hostile frames, version negotiation, error
//! codes, pipelining. Every hostile input must close (at most) its own connection while the
//! broker keeps answering others.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::{BrokerConfig, ServerHandle};

async fn start(dir: &std::path::Path) -> ServerHandle {
    let config = BrokerConfig {
        listeners: vec![weir_broker::security::ListenerConfig::plaintext(
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )],
        log_dir: dir.to_path_buf(),
        num_partitions: 2,
        socket_request_max_bytes: 1024 * 1024,
        ..BrokerConfig::default()
    };
    weir_broker::run(config).await.expect("broker starts")
}

fn frame<R: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("weir-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut out = BytesMut::new();
    out.put_i32(buf.len() as i32);
    out.put_slice(&buf);
    out.freeze()
}

async fn read_response(stream: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut size))
        .await
        .ok()?
        .ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

async fn call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    req: &Req,
) -> Resp {
    stream
        .write_all(&frame(api, version, 7, req))
        .await
        .unwrap();
    let mut bytes = read_response(stream).await.expect("a response");
    let header = ResponseHeader::decode(&mut bytes, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    Resp::decode(&mut bytes, version).unwrap()
}

/// The connection was closed by the broker (EOF, reset, or no answer).
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn still_serving(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let resp: ApiVersionsResponse = call(
        &mut s,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    )
    .await;
    assert_eq!(resp.error_code, 0);
}

fn batch(count: usize) -> Vec<u8> {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: 1000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'v'; 100])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.to_vec()
}

fn produce_request(topic: &str, records: Vec<u8>, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(records))),
            ])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let addr = server.local_addr;
    let mut hostile: Vec<Vec<u8>> = vec![
        (-5i32).to_be_bytes().to_vec(),                    // negative size
        (i32::MAX).to_be_bytes().to_vec(),                 // beyond socket.request.max.bytes
        [&4i32.to_be_bytes()[..], &[0, 3, 0, 1]].concat(), // too short for a header
    ];
    // Unknown API key 9999.
    let mut unknown = BytesMut::new();
    unknown.put_i32(10);
    unknown.put_i16(9999);
    unknown.put_i16(0);
    unknown.put_i32(1);
    unknown.put_i16(-1);
    hostile.push(unknown.to_vec());
    // Metadata v1 whose topic array claims 2^31-1 entries, in a 20-byte frame.
    let mut claim = BytesMut::new();
    claim.put_i16(ApiKey::Metadata as i16);
    claim.put_i16(1);
    claim.put_i32(1);
    claim.put_i16(-1);
    claim.put_i32(i32::MAX);
    claim.put_i16(3);
    hostile.push([&(claim.len() as i32).to_be_bytes()[..], &claim[..]].concat());
    // CreateTopics v5 (flexible) whose compact array claims a huge length.
    let mut compact = BytesMut::new();
    compact.put_i16(ApiKey::CreateTopics as i16);
    compact.put_i16(5);
    compact.put_i32(1);
    compact.put_i16(-1);
    compact.put_u8(0); // header tagged fields
    compact.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    hostile.push([&(compact.len() as i32).to_be_bytes()[..], &compact[..]].concat());
    // A well-formed request of an API we do not implement (DescribeDelegationToken).
    hostile.push(
        frame(
            ApiKey::DescribeDelegationToken,
            1,
            1,
            &DescribeDelegationTokenRequest::default(),
        )
        .to_vec(),
    );
    // A version beyond what we advertise for an API we do implement.
    let mut too_new = frame(ApiKey::Fetch, 12, 1, &FetchRequest::default()).to_vec();
    too_new[6..8].copy_from_slice(&99i16.to_be_bytes());
    hostile.push(too_new);
    // Produce v2 (legacy message sets) is advertised for librdkafka but refused.
    let mut legacy = frame(ApiKey::Metadata, 1, 1, &MetadataRequest::default()).to_vec();
    legacy[4..6].copy_from_slice(&(ApiKey::Produce as i16).to_be_bytes());
    legacy[6..8].copy_from_slice(&2i16.to_be_bytes());
    hostile.push(legacy);
    for (i, bytes) in hostile.iter().enumerate() {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        assert!(
            closed(&mut s).await,
            "hostile frame {i} did not close its connection"
        );
        still_serving(addr).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_of_an_unknown_version_answers_v0_with_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut s = TcpStream::connect(server.local_addr).await.unwrap();
    let mut f = frame(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default()).to_vec();
    f[6..8].copy_from_slice(&99i16.to_be_bytes());
    s.write_all(&f).await.unwrap();
    let mut bytes = read_response(&mut s).await.unwrap();
    assert_eq!(bytes.get_i32(), 7);
    let resp = ApiVersionsResponse::decode(&mut bytes, 0).unwrap();
    assert_eq!(resp.error_code, 35);
    let produce = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .unwrap();
    assert_eq!(
        produce.min_version, 0,
        "librdkafka needs Produce v0 advertised to compress"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_produce_input_gets_kafka_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut s = TcpStream::connect(server.local_addr).await.unwrap();
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("max.message.bytes"))
                    .with_value(Some(StrBytes::from_static_str("2000")))]),
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("bad/name")))
                .with_num_partitions(1)
                .with_replication_factor(1),
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("rf")))
                .with_num_partitions(1)
                .with_replication_factor(3),
        ]);
    let resp: CreateTopicsResponse = call(&mut s, ApiKey::CreateTopics, 5, &create).await;
    let codes: Vec<i16> = resp.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        vec![0, 17, 38],
        "ok, INVALID_TOPIC_EXCEPTION, INVALID_REPLICATION_FACTOR"
    );

    let ok: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        8,
        &produce_request("t", batch(3), -1),
    )
    .await;
    assert_eq!(ok.responses[0].partition_responses[0].error_code, 0);
    let mut corrupt = batch(3);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    let resp: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        8,
        &produce_request("t", corrupt, 1),
    )
    .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );
    let resp: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        8,
        &produce_request("t", batch(30), 1),
    )
    .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 10,
        "MESSAGE_TOO_LARGE"
    );
    let resp: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        8,
        &produce_request("nope", batch(1), 1),
    )
    .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let resp: ProduceResponse = call(
        &mut s,
        ApiKey::Produce,
        8,
        &produce_request("t", batch(1), 5),
    )
    .await;
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 21,
        "INVALID_REQUIRED_ACKS"
    );

    // acks=0 gets no answer; the next request's answer comes next, in order.
    s.write_all(&frame(
        ApiKey::Produce,
        8,
        100,
        &produce_request("t", batch(1), 0),
    ))
    .await
    .unwrap();
    let lo: ListOffsetsResponse = call(
        &mut s,
        ApiKey::ListOffsets,
        5,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ])]),
    )
    .await;
    assert_eq!(lo.topics[0].partitions[0].offset, 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut s = TcpStream::connect(server.local_addr).await.unwrap();
    let mut all = BytesMut::new();
    for i in 0..50 {
        let f = if i % 2 == 0 {
            frame(ApiKey::ApiVersions, 3, i, &ApiVersionsRequest::default())
        } else {
            frame(
                ApiKey::Metadata,
                9,
                i,
                &MetadataRequest::default().with_topics(None),
            )
        };
        all.put_slice(&f);
    }
    s.write_all(&all).await.unwrap();
    for i in 0..50 {
        let mut bytes = read_response(&mut s).await.unwrap();
        assert_eq!(bytes.get_i32(), i);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let addr = server.local_addr;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _: MetadataResponse = call(
        &mut s,
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(TopicName(StrBytes::from_static_str("lp"))))])),
    )
    .await;
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(10_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("lp")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let started = std::time::Instant::now();
    let waiter = tokio::spawn(async move {
        let resp: FetchResponse = call(&mut s, ApiKey::Fetch, 11, &fetch).await;
        resp
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut p = TcpStream::connect(addr).await.unwrap();
    let _: ProduceResponse = call(
        &mut p,
        ApiKey::Produce,
        8,
        &produce_request("lp", batch(2), 1),
    )
    .await;
    let resp = waiter.await.unwrap();
    let part = &resp.responses[0].partitions[0];
    assert_eq!(part.high_watermark, 2);
    assert!(part.records.as_ref().is_some_and(|r| !r.is_empty()));
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the fetch waited for its full max_wait"
    );
    server.shutdown().await;
}
