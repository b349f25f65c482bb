//! Fetch: record bytes go from segment files to the socket with sendfile.
//!
//! The response is framed here, not by `kafka-protocol`, because its `records` fields are file
//! slices, not bytes in memory; the layout follows the FetchResponse schema for v4-v12.
//! Limits: `partition_max_bytes` per partition and `max_bytes` per response, except that the
//! first batch of the response is sent whole even when larger (KIP-74). A fetch that finds fewer
//! than `min_bytes` waits for appends until `max_wait_ms` passes. Fetch sessions (KIP-227) are
//! declined by answering session id 0, which every client treats as "send full requests".

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchRequest;
use tokio::sync::Notify;
use weir_log::FileSlice;
use weir_types::LeaderEpoch;

use crate::broker::Broker;
use crate::frame::{Body, Chunk};
use crate::partition::FetchAsk;
use crate::quota::{Client, Kind, QuotaManager};
use crate::security::authorizer::Access;
use crate::security::Session;
use weir_meta::acl::AclOperation;

/// Longest a fetch may park, whatever the client asks.
const MAX_WAIT_MS: u64 = 30_000;

struct PartitionResult {
    index: i32,
    error_code: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    /// `(producer id, first offset)` of aborted transactions, for `read_committed`.
    aborted: Option<Vec<(i64, i64)>>,
    /// Slices of records to send; `None` on errors. Either way the records field is written,
    /// empty when there is nothing.
    slices: Option<Vec<FileSlice>>,
    /// The partition read, with the bytes and offsets read, for its probe.
    read: Option<(Arc<crate::partition::Partition>, u64, u64)>,
}

struct TopicResult {
    name: String,
    partitions: Vec<PartitionResult>,
}

/// Reads every partition of the request. With `park`, each partition read is first told to
/// wake it (a fetch that may wait registers before it reads, so no append in between is missed).
fn read_all(
    broker: &Arc<Broker>,
    request: &FetchRequest,
    refused: &HashSet<String>,
    version: i16,
    record_progress: bool,
    park: Option<&Arc<Notify>>,
) -> (Vec<TopicResult>, u64, bool) {
    let replica_id = request.replica_id.0.max(request.replica_state.replica_id.0);
    let follower = replica_id >= 0;
    let response_max = if version >= 3 {
        request.max_bytes.max(0) as u64
    } else {
        u64::MAX
    };
    let mut total = 0u64;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let mut result = PartitionResult {
                index: p.partition,
                error_code: 0,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                aborted: None,
                slices: None,
                read: None,
            };
            if refused.contains(&name) {
                result.error_code = ResponseError::TopicAuthorizationFailed.code();
                any_error = true;
                partitions.push(result);
                continue;
            }
            let Some(partition) = broker.replicas.get(&name, p.partition) else {
                result.error_code = broker.not_hosted_code(&name, p.partition);
                any_error = true;
                partitions.push(result);
                continue;
            };
            let ask = FetchAsk {
                // A negative offset is out of range of every log: the read refuses it.
                fetch_offset: weir_types::Offset(p.fetch_offset),
                current_leader_epoch: LeaderEpoch::from_wire(p.current_leader_epoch)
                    .filter(|_| version >= 9),
                follower: follower.then_some(weir_types::BrokerId(replica_id)),
                record_progress,
                max_bytes: (p.partition_max_bytes.max(0) as u64)
                    .min(response_max.saturating_sub(total)),
                first: total == 0,
                read_committed: request.isolation_level == 1,
            };
            let read = partition.read_for_fetch(broker.node_id(), &ask, park);
            if follower && record_progress {
                crate::replication::maybe_alter_isr(broker, &partition, std::time::Instant::now());
            }
            total += read.bytes;
            any_error |= read.error_code != 0;
            result.error_code = read.error_code;
            result.high_watermark = weir_types::Offset::to_wire(read.high_watermark);
            result.last_stable_offset = weir_types::Offset::to_wire(read.last_stable_offset);
            result.log_start_offset = weir_types::Offset::to_wire(read.log_start_offset);
            result.aborted = read.aborted.map(|list| {
                list.iter()
                    .map(|t| (t.producer_id.0, t.first_offset.0))
                    .collect()
            });
            result.slices = read.slices;
            result.read = Some((partition, read.bytes, read.offsets));
            partitions.push(result);
        }
        topics.push(TopicResult { name, partitions });
    }
    (topics, total, any_error)
}

/// [`read_all`] on a blocking thread: reads look up indexes and batch headers, which may wait
/// for the disk, and never run on an async worker.
async fn read_on_blocking_thread(
    broker: &Arc<Broker>,
    request: &Arc<(FetchRequest, HashSet<String>)>,
    version: i16,
    record_progress: bool,
    park: Option<Arc<Notify>>,
) -> Option<(Vec<TopicResult>, u64, bool)> {
    let (broker, request) = (broker.clone(), request.clone());
    let task = tokio::task::spawn_blocking(move || {
        let (request, refused) = &*request;
        read_all(
            &broker,
            request,
            refused,
            version,
            record_progress,
            park.as_ref(),
        )
    });
    match task.await {
        Ok(read) => Some(read),
        Err(e) => {
            tracing::error!(error = %e, "a fetch's read failed");
            None
        }
    }
}

/// The answer to a follower's fetch from a principal without ClusterAction: every partition
/// refused (TOPIC_AUTHORIZATION_FAILED, as Kafka answers), so no forged replica id reads or
/// moves a high watermark.
fn refuse_follower(version: i16, request: &FetchRequest) -> Body {
    let code = ResponseError::TopicAuthorizationFailed.code();
    let topics: Vec<TopicResult> = request
        .topics
        .iter()
        .map(|t| TopicResult {
            name: t.topic.0.to_string(),
            partitions: t
                .partitions
                .iter()
                .map(|p| PartitionResult {
                    index: p.partition,
                    error_code: code,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    aborted: None,
                    slices: None,
                    read: None,
                })
                .collect(),
        })
        .collect();
    Body::Chunks(encode(version, 0, &topics))
}

pub(crate) async fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    mut request: FetchRequest,
    session: &Session,
    client: Client<'_>,
) -> Body {
    let replica_id = request.replica_id.0.max(request.replica_state.replica_id.0);
    let follower = replica_id >= 0;
    // A consumer over its byte-rate or request quota gets an empty answer and waits; one within
    // it gets at most one burst of its byte rate, and is throttled after the answer if that
    // took it over.
    let quota = if follower {
        None
    } else {
        let image = broker.image();
        (!image.quotas.is_empty()).then_some(image)
    };
    if let Some(image) = &quota {
        let now = std::time::Instant::now();
        let wait = broker
            .quotas
            .pending(&image.quotas, Kind::Fetch, client, now)
            .max(
                broker
                    .quotas
                    .pending(&image.quotas, Kind::Request, client, now),
            );
        if !wait.is_zero() {
            session.throttle(wait);
            return Body::Chunks(encode_throttled(version, 0, millis(wait), &[]));
        }
        if let Some(burst) = QuotaManager::burst(&image.quotas, Kind::Fetch, client) {
            let burst = i32::try_from(burst).unwrap_or(i32::MAX);
            request.max_bytes = if request.max_bytes > 0 {
                request.max_bytes.min(burst)
            } else {
                burst
            };
            // A wait for more than an answer may carry would always run to its end.
            request.min_bytes = request.min_bytes.min(request.max_bytes);
        }
    }
    let finish = |topics: &[TopicResult]| {
        let mut throttle = 0;
        if let Some(image) = &quota {
            let bytes: u64 = topics
                .iter()
                .flat_map(|t| &t.partitions)
                .filter_map(|p| p.read.as_ref())
                .map(|r| r.1)
                .sum();
            let wait = broker.quotas.record(
                &image.quotas,
                Kind::Fetch,
                client,
                bytes as f64,
                std::time::Instant::now(),
            );
            session.throttle(wait);
            throttle = millis(wait);
        }
        sent(version, topics, follower, throttle)
    };
    if replica_id >= 0 && !access.cluster(AclOperation::ClusterAction) {
        tracing::info!(
            replica_id,
            "a replica fetch from a principal without ClusterAction refused"
        );
        return refuse_follower(version, &request);
    }
    if follower {
        session
            .replication
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // Followers copy every topic they replicate; consumers need Read on each.
    let refused: HashSet<String> = if replica_id >= 0 {
        HashSet::new()
    } else {
        request
            .topics
            .iter()
            .map(|t| t.topic.0.to_string())
            .filter(|t| !access.topic(AclOperation::Read, t))
            .collect()
    };
    if version >= 7 {
        let session_error = if request.session_id != 0 {
            Some(ResponseError::FetchSessionIdNotFound.code())
        } else if request.session_epoch > 0 {
            Some(ResponseError::InvalidFetchSessionEpoch.code())
        } else {
            None
        };
        if let Some(code) = session_error {
            return Body::Chunks(encode(version, code, &[]));
        }
    }
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis((request.max_wait_ms.max(0) as u64).min(MAX_WAIT_MS));
    let min_bytes = request.min_bytes.max(0) as u64;
    // One waker for the whole request, registered with each partition it reads (only on the
    // first read: registrations last until the request is answered).
    // A fetch that cannot wait (min_bytes 0, or no time left) allocates none.
    let may_wait = min_bytes > 0 && tokio::time::Instant::now() < deadline;
    let waiter = may_wait.then(|| Arc::new(Notify::new()));
    let request = Arc::new((request, refused));
    let failed = || {
        Body::Chunks(encode(
            version,
            ResponseError::UnknownServerError.code(),
            &[],
        ))
    };
    let mut first = true;
    loop {
        let park = waiter.clone().filter(|_| first);
        let Some((topics, total, any_error)) =
            read_on_blocking_thread(broker, &request, version, first, park).await
        else {
            return failed();
        };
        first = false;
        let Some(waiter) = &waiter else {
            return finish(&topics);
        };
        if total >= min_bytes || any_error || tokio::time::Instant::now() >= deadline {
            return finish(&topics);
        }
        let _parked = broker.requests.park(crate::metrics::Purgatory::Fetch);
        // Park until one of its partitions changes or the wait is over, then read again.
        if tokio::time::timeout_at(deadline, waiter.notified())
            .await
            .is_err()
        {
            return match read_on_blocking_thread(broker, &request, version, false, None).await {
                Some((topics, _, _)) => finish(&topics),
                None => failed(),
            };
        }
    }
}

/// The answer to send, with what it carries counted by each partition's probe.
fn sent(version: i16, topics: &[TopicResult], follower: bool, throttle_time_ms: i32) -> Body {
    for p in topics.iter().flat_map(|t| &t.partitions) {
        if let Some((partition, bytes, offsets)) = &p.read {
            if *bytes > 0 {
                partition.probe.read(*bytes, *offsets, follower);
            }
        }
    }
    Body::Chunks(encode_throttled(version, 0, throttle_time_ms, topics))
}

fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

fn put_array_len(buf: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_uvarint(buf, n as u64 + 1);
    } else {
        buf.put_i32(n as i32);
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Frames a FetchResponse body (v4-v12) as chunks: bytes for the fields, file slices for records.
fn encode(version: i16, error_code: i16, topics: &[TopicResult]) -> Vec<Chunk> {
    encode_throttled(version, error_code, 0, topics)
}

/// [`encode`] with a throttle time (KIP-219).
fn encode_throttled(
    version: i16,
    error_code: i16,
    throttle_time_ms: i32,
    topics: &[TopicResult],
) -> Vec<Chunk> {
    let flexible = version >= 12;
    let mut chunks = Vec::new();
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(throttle_time_ms);
    if version >= 7 {
        buf.put_i16(error_code);
        buf.put_i32(0); // session_id: no session
    }
    put_array_len(&mut buf, flexible, topics.len());
    for topic in topics {
        if flexible {
            put_uvarint(&mut buf, topic.name.len() as u64 + 1);
        } else {
            buf.put_i16(topic.name.len() as i16);
        }
        buf.put_slice(topic.name.as_bytes());
        put_array_len(&mut buf, flexible, topic.partitions.len());
        for p in &topic.partitions {
            buf.put_i32(p.index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.high_watermark);
            buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                buf.put_i64(p.log_start_offset);
            }
            match &p.aborted {
                None if flexible => put_uvarint(&mut buf, 0),
                None => buf.put_i32(-1),
                Some(list) => {
                    put_array_len(&mut buf, flexible, list.len());
                    for (producer_id, first_offset) in list {
                        buf.put_i64(*producer_id);
                        buf.put_i64(*first_offset);
                        if flexible {
                            put_uvarint(&mut buf, 0);
                        }
                    }
                }
            }
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            // Records are never null, errors included, as Kafka sends them: librdkafka fails to
            // parse a v12 response with null records ("invalid MessageSetSize -1").
            let slices = p.slices.as_deref().unwrap_or_default();
            let len: u64 = slices.iter().map(|s| s.len).sum();
            if flexible {
                put_uvarint(&mut buf, len + 1);
            } else {
                buf.put_i32(len as i32);
            }
            if len > 0 {
                chunks.push(Chunk::Bytes(buf.split().freeze()));
                for slice in slices {
                    chunks.push(Chunk::File(slice.clone()));
                }
            }
            if flexible {
                put_uvarint(&mut buf, 0); // partition tagged fields
            }
        }
        if flexible {
            put_uvarint(&mut buf, 0); // topic tagged fields
        }
    }
    if flexible {
        put_uvarint(&mut buf, 0); // response tagged fields
    }
    chunks.push(Chunk::Bytes(buf.freeze()));
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::protocol::Decodable;

    /// Our hand-framed response must decode with `kafka-protocol` at every version we advertise.
    #[test]
    fn framing_matches_the_schema_at_every_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        for version in 4..=12 {
            let topics = vec![TopicResult {
                name: "t".into(),
                partitions: vec![
                    PartitionResult {
                        index: 0,
                        error_code: 0,
                        high_watermark: 7,
                        last_stable_offset: 5,
                        log_start_offset: 2,
                        aborted: Some(vec![(9, 3), (11, 4)]),
                        slices: Some(vec![FileSlice {
                            file: file.clone(),
                            position: 3,
                            len: 4,
                        }]),
                        read: None,
                    },
                    PartitionResult {
                        index: 1,
                        error_code: 3,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        aborted: None,
                        slices: None,
                        read: None,
                    },
                ],
            }];
            let mut bytes = Vec::new();
            for chunk in encode(version, 0, &topics) {
                match chunk {
                    Chunk::Bytes(b) => bytes.extend_from_slice(&b),
                    Chunk::File(f) => bytes.extend_from_slice(&f.read_to_vec().unwrap()),
                }
            }
            let mut buf = Bytes::from(bytes);
            let decoded = FetchResponse::decode(&mut buf, version).unwrap();
            assert_eq!(buf.len(), 0, "v{version} left bytes over");
            let parts = &decoded.responses[0].partitions;
            assert_eq!(parts[0].high_watermark, 7);
            assert_eq!(parts[0].last_stable_offset, 5);
            let aborted = parts[0].aborted_transactions.as_ref().unwrap();
            assert_eq!(
                aborted
                    .iter()
                    .map(|a| (a.producer_id.0, a.first_offset))
                    .collect::<Vec<_>>(),
                vec![(9, 3), (11, 4)]
            );
            assert!(parts[1].aborted_transactions.is_none());
            assert_eq!(parts[0].records.as_deref(), Some(&b"3456"[..]));
            assert_eq!(parts[1].error_code, 3);
            assert_eq!(parts[1].records.as_deref(), Some(&b""[..]), "v{version}");
            if version >= 5 {
                assert_eq!(parts[0].log_start_offset, 2);
            }
        }
    }
}
