//! State of idempotent producers for one partition (KIP-98).
//!
//! For each producer id the log keeps its epoch and the metadata of its last five batches, as
//! Kafka's `ProducerStateManager` does: a retried batch that is already in the log is answered with
//! its original offsets instead of being written twice, and a gap in sequence numbers is refused.
//! The state is rebuilt from the batch headers when the log opens, so it survives restarts.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::LogError;

/// How many recent batches per producer are remembered for duplicate detection (Kafka: 5).
const RECENT_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<BatchMeta>,
}

/// What the producer state says about a batch about to be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerAppendOutcome {
    /// A new batch: write it.
    Append,
    /// A retry of a batch already in the log at these offsets: do not write it again.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
        max_timestamp: i64,
    },
}

#[derive(Debug, Default)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStateManager {
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<ProducerAppendOutcome, LogError> {
        if !header.has_producer_id() {
            return Ok(ProducerAppendOutcome::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // Unknown producer (new, or its state was lost): accept, as Kafka does.
            return Ok(ProducerAppendOutcome::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(LogError::ProducerFenced {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                current: entry.epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            if header.base_sequence != 0 {
                return Err(LogError::OutOfOrderSequence {
                    producer_id: header.producer_id,
                    expected: 0,
                    got: header.base_sequence,
                });
            }
            return Ok(ProducerAppendOutcome::Append);
        }
        if let Some(dup) = entry.recent.iter().find(|b| {
            b.first_sequence == header.base_sequence && b.last_sequence == header.last_sequence()
        }) {
            return Ok(ProducerAppendOutcome::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
                max_timestamp: dup.max_timestamp,
            });
        }
        let expected = entry
            .recent
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if header.base_sequence != expected {
            return Err(LogError::OutOfOrderSequence {
                producer_id: header.producer_id,
                expected,
                got: header.base_sequence,
            });
        }
        Ok(ProducerAppendOutcome::Append)
    }

    /// Records a batch that is now in the log (with its final offsets).
    pub(crate) fn update(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.recent.clear();
        }
        if entry.recent.len() == RECENT_BATCHES {
            entry.recent.pop_front();
        }
        entry.recent.push_back(BatchMeta {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        });
    }

    pub(crate) fn clear(&mut self) {
        self.producers.clear();
    }
}
