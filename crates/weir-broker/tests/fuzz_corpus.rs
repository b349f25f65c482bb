//! Replays the fuzz corpora (`fuzz/corpus/*`) and generated seeds through the same entry points
//! the fuzz targets use. Seeds: a default request of every implemented API at every advertised
//! version, each cut at every length and with seeded random bit flips. None may panic.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::path::PathBuf;

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use rand::{Rng, SeedableRng};
use weir_broker::apis::APIS;
use weir_broker::fuzzing::{
    decode_group_record, decode_request, open_log_dir, open_log_dir_on_disk, read_frames,
    validate_record_batches,
};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry.path().is_file() {
                out.push(std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

fn encode_default(api: ApiKey, version: i16) -> Option<Vec<u8>> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(version))
        .ok()?;
    let body = match api {
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default()),
        ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::OffsetForLeaderEpoch => {
            RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default())
        }
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default())
        }
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![0, 1]),
            ])))
        }
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default()
                        .with_name(TopicName(StrBytes::from_static_str("t"))),
                ])
                .with_cursor(Some(
                    describe_topic_partitions_request::Cursor::default()
                        .with_topic_name(TopicName(StrBytes::from_static_str("t"))),
                )),
        ),
        _ => return None,
    };
    body.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

#[test]
fn request_corpus_and_mutations_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    // Corpus entries found by the fuzzer are replayed as they are.
    for entry in corpus("request") {
        decode_request(&entry);
    }
    let mut seeds = Vec::new();
    let mut decoded = 0;
    for spec in APIS {
        for version in spec.min..=spec.max {
            if let Some(seed) = encode_default(spec.key, version) {
                if decode_request(&seed) {
                    decoded += 1;
                }
                seeds.push(seed);
            }
        }
    }
    assert!(
        decoded > 50,
        "only {decoded} seeds decode: the seeds or the decoder are broken"
    );
    for seed in &seeds {
        for cut in 0..seed.len() {
            decode_request(&seed[..cut]);
        }
        for _ in 0..200 {
            let mut m = seed.clone();
            for _ in 0..rng.gen_range(1..4) {
                if m.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..m.len());
                m[at] = rng.gen();
            }
            decode_request(&m);
        }
    }
}

#[test]
fn record_batch_corpus_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for seed in corpus("record_batch") {
        validate_record_batches(&seed);
        for _ in 0..200 {
            let mut m = seed.clone();
            if !m.is_empty() {
                let at = rng.gen_range(0..m.len());
                m[at] = rng.gen();
            }
            validate_record_batches(&m);
        }
    }
}

/// Seeded random bit flips of `seed`, a few bytes at a time.
fn mutations(rng: &mut rand::rngs::StdRng, seed: &[u8], n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let mut m = seed.to_vec();
            for _ in 0..rng.gen_range(1..4) {
                if m.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..m.len());
                m[at] = rng.gen();
            }
            m
        })
        .collect()
}

#[test]
fn frame_reader_corpus_and_mutations_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for entry in corpus("frames") {
        read_frames(&entry);
    }
    // Three framed requests back to back, fed 1, 7 and 200 bytes at a time.
    let mut stream = Vec::new();
    for api in [ApiKey::Metadata, ApiKey::ApiVersions, ApiKey::Produce] {
        let body = encode_default(api, 3).unwrap();
        stream.extend_from_slice(&(body.len() as i32).to_be_bytes());
        stream.extend_from_slice(&body);
    }
    for chunk in [1u8, 7, 200] {
        let mut input = vec![chunk];
        input.extend_from_slice(&stream);
        assert_eq!(read_frames(&input), 3, "chunks of {chunk}");
        for cut in 0..input.len() {
            read_frames(&input[..cut]);
        }
        for m in mutations(&mut rng, &input, 300) {
            read_frames(&m);
        }
    }
}

#[test]
fn group_record_corpus_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for entry in corpus("group_record") {
        decode_group_record(&entry);
        for m in mutations(&mut rng, &entry, 200) {
            decode_group_record(&m);
        }
    }
}

#[test]
fn log_dir_corpus_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    for entry in corpus("log_dir") {
        open_log_dir(&entry);
        open_log_dir_on_disk(&entry);
        for m in mutations(&mut rng, &entry, 3) {
            open_log_dir(&m);
        }
    }
    for _ in 0..50 {
        let len = rng.gen_range(0..2048);
        let random: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        open_log_dir(&random);
    }
}
