//! Settings of one log, with Kafka's topic-level names and defaults.

/// The per-log settings, taken from the topic's configs (`segment.bytes`, `retention.ms`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when it would grow beyond this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when its first batch is older than this.
    pub segment_ms: i64,
    /// `retention.ms`: delete closed segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest closed segments while the log is larger; -1 for no limit.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes between entries of the sparse offset and time indexes.
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: largest batch accepted.
    pub max_message_bytes: usize,
    /// `flush.messages`: fsync after this many records; Kafka's default never forces it.
    pub flush_messages: u64,
    /// `flush.ms`: fsync when the last one is older than this; Kafka's default never forces it.
    pub flush_ms: i64,
    /// `message.timestamp.type=LogAppendTime`: stamp batches with the broker's clock.
    pub log_append_time: bool,
    /// `cleanup.policy` contains `delete`: retention deletes old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`: the cleaner keeps the latest record per key.
    pub cleanup_compact: bool,
    /// `delete.retention.ms`: how long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// `write.caching` (Redpanda's name): `true` acknowledges acks=all writes once every ISR
    /// member has them in its page cache; `false` only once every ISR member has fsynced them,
    /// so they survive power loss of every broker at once.
    pub write_caching: bool,
    /// The most one stored batch may decompress to when the broker reads its records
    /// (ListOffsets by time, compaction).
    pub max_decompressed_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            flush_messages: i64::MAX as u64,
            flush_ms: i64::MAX,
            log_append_time: false,
            cleanup_delete: true,
            cleanup_compact: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            write_caching: false,
            max_decompressed_bytes: crate::decompress::DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}
