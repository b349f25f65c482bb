//! The offset tracker: commits only behind records that are fully processed.

use super::*;

/// Ordered commits for concurrent processing: records are registered when handed out and marked
/// done when processed, in any order; [`OffsetTracker::committable`] gives, per partition, the
/// offset below which every record is done — the only offset safe to commit. A crash then
/// redelivers only records that were not all done, never skips one.
#[derive(Debug, Clone, Default)]
pub struct OffsetTracker {
    inner: Arc<Mutex<HashMap<TopicPartition, InFlight>>>,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Registers records about to be processed.
    pub fn track(&self, records: &[ConsumerRecord]) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            let entry = map
                .entry((r.topic.clone(), r.partition))
                .or_insert_with(|| (BTreeSet::new(), r.offset));
            entry.0.insert(r.offset);
            entry.1 = entry.1.max(r.offset + 1);
        }
    }

    /// Marks a record as fully processed.
    pub fn done(&self, topic: &str, partition: i32, offset: i64) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&(topic.to_string(), partition)) {
            entry.0.remove(&offset);
        }
    }

    /// Per partition: the lowest offset still in progress, or the next offset when all are done.
    pub fn committable(&self) -> BTreeMap<TopicPartition, i64> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(tp, (open, next))| (tp.clone(), open.iter().next().copied().unwrap_or(*next)))
            .collect()
    }

    /// Records handed out and not yet done.
    pub fn in_progress(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(o, _)| o.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::ConsumerRecord;

    #[test]
    fn tracker_commits_only_behind_done_records() {
        let t = OffsetTracker::new();
        let recs: Vec<ConsumerRecord> = (10..15)
            .map(|o| ConsumerRecord {
                topic: "t".into(),
                partition: 0,
                offset: o,
                timestamp: 0,
                key: None,
                value: None,
                headers: vec![],
            })
            .collect();
        t.track(&recs);
        assert_eq!(t.committable()[&("t".to_string(), 0)], 10);
        t.done("t", 0, 12);
        t.done("t", 0, 11);
        assert_eq!(t.committable()[&("t".to_string(), 0)], 10);
        t.done("t", 0, 10);
        assert_eq!(t.committable()[&("t".to_string(), 0)], 13);
        t.done("t", 0, 14);
        t.done("t", 0, 13);
        assert_eq!(t.committable()[&("t".to_string(), 0)], 15);
        assert_eq!(t.in_progress(), 0);
    }
}
