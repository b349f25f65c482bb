//! DescribeLogDirs: the broker's log directory (Weir has one), the partitions it holds with
//! their sizes on disk, and (v4) the volume's total and usable bytes. Needs Describe on the
//! cluster, as in Kafka. A directory whose logs failed answers KAFKA_STORAGE_ERROR, without
//! partitions. Offset lag is 0: Weir moves no replica between directories (no future logs).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use weir_meta::acl::AclOperation;

use super::str_bytes;
use crate::broker::Broker;
use crate::security::authorizer::Access;

/// Kafka's answer for a volume size it cannot read.
const UNKNOWN_BYTES: i64 = -1;

/// (total, usable) bytes of the volume holding `dir`.
fn volume_bytes(dir: &std::path::Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let bytes =
                |blocks: u64| i64::try_from(blocks.saturating_mul(s.f_frsize)).unwrap_or(i64::MAX);
            (bytes(s.f_blocks), bytes(s.f_bavail))
        }
        Err(_) => (UNKNOWN_BYTES, UNKNOWN_BYTES),
    }
}

/// Runs on a blocking thread: each partition's size is read under its log's lock.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    access: &Access,
    version: i16,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if !access.cluster(AclOperation::Describe) {
        // v3+ says why; earlier versions answer with no directories.
        return DescribeLogDirsResponse::default().with_error_code(if version >= 3 {
            ResponseError::ClusterAuthorizationFailed.code()
        } else {
            0
        });
    }
    let dir = broker.replicas.data_dir();
    let path = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (total, usable) = volume_bytes(&path);
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(path.display().to_string()))
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    if broker.replicas.failed_log_dir().is_some() {
        return DescribeLogDirsResponse::default().with_results(vec![
            result.with_error_code(ResponseError::KafkaStorageError.code())
        ]);
    }
    // None asks for every partition. The request's own index lists are kept (sorted), keyed by
    // topic: a request may list millions of indexes, which must not be copied per index.
    let wanted: Option<HashMap<String, Vec<i32>>> = request.topics.map(|topics| {
        let mut wanted: HashMap<String, Vec<i32>> = HashMap::new();
        for t in topics {
            wanted
                .entry(t.topic.0.to_string())
                .or_default()
                .extend(t.partitions);
        }
        for indexes in wanted.values_mut() {
            indexes.sort_unstable();
        }
        wanted
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for partition in broker.replicas.all() {
        let asked = |w: &HashMap<String, Vec<i32>>| {
            w.get(&partition.topic)
                .is_some_and(|p| p.binary_search(&partition.index).is_ok())
        };
        if wanted.as_ref().is_some_and(|w| !asked(w)) {
            continue;
        }
        let size = partition.log().size_bytes();
        topics.entry(partition.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition.index)
                .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX)),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(vec![result.with_topics(topics)])
}
