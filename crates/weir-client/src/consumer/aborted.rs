//! Filtering a `read_committed` fetch as Kafka's clients do (KIP-98): the broker answers up to
//! the last stable offset, with the aborted transactions that overlap what it sent as
//! `(producer id, first offset)`. A producer is "aborting" from its first aborted offset until
//! its abort marker; its transactional records in between are dropped. Control records are
//! never handed to the application.

use std::collections::{HashSet, VecDeque};

use kafka_protocol::records::Record;

/// The state of one partition's fetch answer.
#[derive(Debug, Default)]
pub(super) struct AbortFilter {
    /// `(producer id, first offset)`, oldest first, not reached yet.
    aborted: VecDeque<(i64, i64)>,
    aborting: HashSet<i64>,
}

impl AbortFilter {
    pub(super) fn new(mut aborted: Vec<(i64, i64)>) -> AbortFilter {
        aborted.sort_by_key(|(_, first)| *first);
        AbortFilter {
            aborted: aborted.into(),
            aborting: HashSet::new(),
        }
    }

    /// Whether the application gets this record.
    pub(super) fn keep(&mut self, r: &Record) -> bool {
        while self
            .aborted
            .front()
            .is_some_and(|(_, first)| *first <= r.offset)
        {
            if let Some((producer, _)) = self.aborted.pop_front() {
                self.aborting.insert(producer);
            }
        }
        if r.control {
            // Key: version (2 bytes), type (2 bytes): 0 is an abort.
            let abort = r
                .key
                .as_ref()
                .is_some_and(|k| k.len() >= 4 && k[2] == 0 && k[3] == 0);
            if abort {
                self.aborting.remove(&r.producer_id);
            }
            return false;
        }
        !(r.transactional && self.aborting.contains(&r.producer_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::records::TimestampType;

    fn rec(offset: i64, producer_id: i64, transactional: bool, control: Option<i16>) -> Record {
        Record {
            transactional,
            control: control.is_some(),
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: 0,
            timestamp: 0,
            key: control.map(|t| {
                let mut k = vec![0, 0];
                k.extend_from_slice(&t.to_be_bytes());
                Bytes::from(k)
            }),
            value: None,
            headers: Default::default(),
        }
    }

    #[test]
    fn aborted_records_are_dropped_until_their_marker() {
        // Producer 1 aborts [0, 3), producer 2 commits [1, 4), producer 1 writes again at 5.
        let mut f = AbortFilter::new(vec![(1, 0)]);
        let log = [
            rec(0, 1, true, None),
            rec(1, 2, true, None),
            rec(2, 1, true, None),
            rec(3, 1, true, Some(0)),
            rec(4, 2, true, Some(1)),
            rec(5, 1, true, None),
            rec(6, -1, false, None),
        ];
        let kept: Vec<i64> = log.iter().filter(|r| f.keep(r)).map(|r| r.offset).collect();
        assert_eq!(kept, vec![1, 5, 6]);
    }
}
