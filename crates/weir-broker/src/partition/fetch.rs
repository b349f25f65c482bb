//! The leader's side of a fetch of one partition, for a consumer or a follower. The fetch
//! handler and the replication simulation both serve fetches through it.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use tokio::sync::Notify;
use weir_log::{AbortedTxn, FileSlice};
use weir_types::{BrokerId, LeaderEpoch, Offset};

use super::Partition;
use crate::errors::log_error_code;

/// What a fetch asks of one partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchAsk {
    pub(crate) fetch_offset: Offset,
    /// The leader epoch the fetcher takes for current (Fetch v9+), if it says.
    pub(crate) current_leader_epoch: Option<LeaderEpoch>,
    /// The replica fetching, for a follower: it reads up to the log end, not the high
    /// watermark, and with `record_progress` its fetch offset counts as its progress.
    pub(crate) follower: Option<BrokerId>,
    pub(crate) record_progress: bool,
    /// Bytes it may take (`partition_max_bytes`, bounded by what the response has left).
    pub(crate) max_bytes: u64,
    /// Nothing was read before it in the response: a first batch larger than `max_bytes` is
    /// sent whole (KIP-74).
    pub(crate) first: bool,
    /// A consumer under `isolation_level=read_committed`: it reads below the last stable
    /// offset and is told the aborted transactions there.
    pub(crate) read_committed: bool,
}

/// What the partition answers.
#[derive(Debug, Clone)]
pub(crate) struct FetchRead {
    pub(crate) error_code: i16,
    /// Both none on errors.
    pub(crate) high_watermark: Option<Offset>,
    pub(crate) last_stable_offset: Option<Offset>,
    pub(crate) log_start_offset: Option<Offset>,
    /// The aborted transactions overlapping what a `read_committed` fetch may read.
    pub(crate) aborted: Option<Vec<AbortedTxn>>,
    /// Slices of records; `None` on errors.
    pub(crate) slices: Option<Vec<FileSlice>>,
    pub(crate) bytes: u64,
    /// Offsets read past the fetch offset.
    pub(crate) offsets: u64,
}

impl FetchRead {
    fn error(error: ResponseError) -> FetchRead {
        FetchRead {
            error_code: error.code(),
            high_watermark: None,
            last_stable_offset: None,
            log_start_offset: None,
            aborted: None,
            slices: None,
            bytes: 0,
            offsets: 0,
        }
    }
}

impl Partition {
    /// Serves one partition of a fetch as the leader `me`: checks leadership and the fetcher's
    /// epoch, records a follower's progress (which may move the high watermark), registers
    /// `park` to be woken by the next change, and reads. The registration comes before the read,
    /// so an append in between is not missed.
    pub(crate) fn read_for_fetch(
        &self,
        me: BrokerId,
        ask: &FetchAsk,
        park: Option<&Arc<Notify>>,
    ) -> FetchRead {
        let epoch = self.leader_epoch();
        if !self.is_leader(me) {
            return FetchRead::error(ResponseError::NotLeaderOrFollower);
        }
        match ask.current_leader_epoch {
            Some(e) if e < epoch => return FetchRead::error(ResponseError::FencedLeaderEpoch),
            Some(e) if e > epoch => return FetchRead::error(ResponseError::UnknownLeaderEpoch),
            _ => {}
        }
        if let Some(follower) = ask.follower.filter(|_| ask.record_progress) {
            // A follower's fetch offset is its log end: it holds everything before it. A moved
            // high watermark wakes the partition's parked fetches itself.
            self.record_follower_fetch(me, follower, ask.fetch_offset);
        }
        if let Some(waiter) = park {
            self.watch_fetch(waiter);
        }
        let high_watermark = self.high_watermark();
        let log = self.log();
        let last_stable_offset = log.last_stable_offset(high_watermark);
        let max_offset = if ask.follower.is_some() {
            log.log_end_offset()
        } else if ask.read_committed {
            last_stable_offset
        } else {
            high_watermark
        };
        let mut read = FetchRead {
            error_code: 0,
            high_watermark: Some(high_watermark),
            last_stable_offset: Some(last_stable_offset),
            log_start_offset: Some(log.log_start_offset()),
            aborted: None,
            slices: None,
            bytes: 0,
            offsets: 0,
        };
        match log.read(ask.fetch_offset, ask.max_bytes, max_offset, ask.first) {
            Ok(info) => {
                read.bytes = info.bytes;
                read.offsets = info
                    .end
                    .map_or(0, |end| (end.0 - ask.fetch_offset.0).max(0) as u64);
                // The aborts that overlap the batches returned, as Kafka bounds them.
                if ask.read_committed && ask.follower.is_none() {
                    let upper = info.end.unwrap_or(ask.fetch_offset);
                    read.aborted = Some(log.aborted_transactions(ask.fetch_offset, upper));
                }
                read.slices = Some(info.slices);
            }
            Err(e) => read.error_code = log_error_code(&e),
        }
        read
    }
}
