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
use weir_broker::fuzzing::{decode_request, validate_record_batches};

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
