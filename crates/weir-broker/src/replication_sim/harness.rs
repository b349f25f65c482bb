//! The simulation's pieces that are not the simulation loop: its random source, the controller
//! stand-in, and record helpers.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir_meta::{election, ControllerOp, MetadataImage, MetadataRecord};
use weir_types::{BrokerId, LeaderEpoch, Offset};

use crate::replica_manager::Partition;

/// The seeded generator behind every choice of the simulation.
pub(super) struct Rng(rand::rngs::StdRng);

impl Rng {
    pub(super) fn seeded(seed: u64) -> Rng {
        Rng(rand::SeedableRng::seed_from_u64(seed))
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        rand::Rng::gen_range(&mut self.0, 0..n.max(1))
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The active controller: the real planner and elections on an image, without a quorum.
pub(super) struct Controller {
    pub(super) image: MetadataImage,
    /// Every version, for the epoch and ISR checkers.
    pub(super) history: Vec<Arc<MetadataImage>>,
    pub(super) last_heartbeat: BTreeMap<BrokerId, u64>,
}

impl Controller {
    pub(super) fn commit(&mut self, records: Vec<MetadataRecord>) {
        if records.is_empty() {
            return;
        }
        for r in &records {
            self.image.apply(r);
        }
        self.image.version += 1;
        self.history.push(Arc::new(self.image.clone()));
    }

    /// Plans and commits an op, then brings leadership in line as the active controller does.
    pub(super) fn run(&mut self, op: ControllerOp) -> Result<(), weir_meta::MetaError> {
        let (_, mut records) = op.plan(&self.image)?;
        if op.moves_leaders() && !records.is_empty() {
            let mut next = self.image.clone();
            for r in &records {
                next.apply(r);
            }
            records.extend(election::reconcile(&next, false));
        }
        self.commit(records);
        Ok(())
    }

    pub(super) fn fence(&mut self, broker_id: BrokerId) {
        let mut next = self.image.clone();
        let fence = MetadataRecord::FenceBroker { broker_id };
        next.apply(&fence);
        let mut records = vec![fence];
        records.extend(election::reconcile(&next, false));
        self.commit(records);
    }
}

/// A record batch holding one record whose value is `value`.
pub(super) fn batch(value: u64) -> Vec<u8> {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 0,
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &vec![record], &options).unwrap();
    buf.to_vec()
}

/// Every byte of a log from its start to `end`.
pub(super) fn log_bytes(p: &Partition, end: Offset) -> Vec<u8> {
    let log = p.log();
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < end {
        let info = log.read(offset, 1 << 20, end, true).unwrap();
        if info.slices.is_empty() {
            break;
        }
        let mut chunk = Vec::new();
        for slice in &info.slices {
            chunk.extend(slice.read_to_vec().unwrap());
        }
        offset = records_of(&chunk).last().map_or(end, |(o, _)| o.next());
        out.extend(chunk);
    }
    out
}

/// (offset, value) of every record in `bytes`.
pub(super) fn records_of(bytes: &[u8]) -> Vec<(Offset, u64)> {
    let mut buf = Bytes::from(bytes.to_vec());
    let mut out = Vec::new();
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        for r in set.records {
            let value = r.value.as_ref().unwrap();
            out.push((
                Offset(r.offset),
                std::str::from_utf8(value).unwrap().parse().unwrap(),
            ));
        }
    }
    out
}

/// Whether the leader refuses a follower's request in `epoch`, as `handlers/fetch.rs` and
/// `handlers/offset_for_leader_epoch.rs` check it (not the leader, or another epoch: KIP-320).
pub(super) fn refuses(leader: &Partition, leader_id: BrokerId, epoch: LeaderEpoch) -> bool {
    !leader.is_leader(leader_id) || leader.leader_epoch() != epoch
}
