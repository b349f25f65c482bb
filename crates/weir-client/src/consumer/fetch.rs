//! Fetching, prefetched: one Fetch per leader for the assigned partitions, sent to every
//! leader at once and kept in flight while the application handles what the last ones
//! brought (a poll that returns starts the next round). An answer is applied only to
//! partitions still assigned at the offset it was asked for, so a seek, a revocation or a
//! reset in between drops what it brought for them. Record batches are decoded into the
//! consumer's buffer, their keys and values slices of the fetched bytes (aborted
//! transactions' records left out under read_committed).

use tokio::task::JoinHandle;

use super::*;

/// An answer awaited in a task of its own (a handle is `Sync`, as the consumer must be).
type FetchAnswer = JoinHandle<Result<FetchResponse>>;

/// A Fetch in flight to one leader.
pub(super) struct InFlight {
    /// Each partition's fetch position when it was asked.
    asked: BTreeMap<TopicPartition, i64>,
    answer: FetchAnswer,
}

impl InFlight {
    /// Stops waiting for the answer (the consumer closes).
    pub(super) fn abort(self) {
        self.answer.abort();
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("asked", &self.asked)
            .finish()
    }
}

impl Consumer {
    /// One round: fetches to every leader (those not already in flight), then their answers
    /// as they come, until `deadline`; what has not come by then stays in flight.
    pub(super) async fn fetch_once(&mut self, wait: Duration, deadline: Instant) -> Result<()> {
        self.start_fetches(wait).await?;
        if self.in_flight.is_empty() {
            tokio::time::sleep(wait.min(Duration::from_millis(10))).await;
            return Ok(());
        }
        let mut first_error = None;
        let mut pending = Vec::new();
        for mut f in std::mem::take(&mut self.in_flight) {
            match tokio::time::timeout_at(deadline.into(), &mut f.answer).await {
                Err(_) => pending.push(f),
                Ok(Ok(Ok(response))) => {
                    if let Err(e) = self.apply_fetch(response, &f.asked).await {
                        first_error.get_or_insert(e);
                    }
                }
                Ok(Ok(Err(e))) => {
                    first_error.get_or_insert(e);
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(Error::Protocol(format!("fetch task: {e}")));
                }
            }
        }
        self.in_flight = pending;
        first_error.map_or(Ok(()), Err)
    }

    /// Sends a Fetch to each leader of assigned partitions with none in flight, without
    /// waiting for the answers.
    pub(super) async fn start_fetches(&mut self, wait: Duration) -> Result<()> {
        // Never fetch a partition without a position (a failed look-up of its commit).
        self.init_positions().await?;
        let busy: BTreeSet<TopicPartition> = self
            .in_flight
            .iter()
            .flat_map(|f| f.asked.keys().cloned())
            .collect();
        // Fetch positions already point past buffered records, so every assigned partition can
        // be fetched again; the buffer stays bounded because poll_batch returns once it holds
        // `max_records`, and a round is started only when it holds fewer.
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for tp in &self.assignment {
            if busy.contains(tp) {
                continue;
            }
            let leader = self.leader_of(&tp.0, tp.1).await?;
            by_leader.entry(leader).or_default().push(tp.clone());
        }
        for (leader, tps) in by_leader {
            let mut asked = BTreeMap::new();
            let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
            for tp in &tps {
                let offset = self.fetch_positions.get(tp).copied().unwrap_or(0);
                asked.insert(tp.clone(), offset);
                topics.entry(tp.0.as_str()).or_default().push(
                    FetchPartition::default()
                        .with_partition(tp.1)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(self.config.max_partition_fetch_bytes),
                );
            }
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(wait.as_millis() as i32)
                .with_min_bytes(self.config.fetch_min_bytes)
                .with_max_bytes(self.config.fetch_max_bytes)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_isolation_level(i8::from(self.config.read_committed))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            FetchTopic::default()
                                .with_topic(TopicName(s(t)))
                                .with_partitions(ps)
                        })
                        .collect(),
                );
            let conn = self.cluster.broker(leader).await?;
            let answer = conn.start_request(&request, 12).await?;
            self.in_flight.push(InFlight {
                asked,
                answer: tokio::spawn(answer),
            });
        }
        Ok(())
    }

    /// Decodes an answer into the buffer, for the partitions still at the offset asked.
    async fn apply_fetch(
        &mut self,
        response: FetchResponse,
        asked: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        check(response.error_code)?;
        for t in response.responses {
            let topic = t.topic.0.to_string();
            for p in t.partitions {
                let tp = (topic.clone(), p.partition_index);
                let current = self.fetch_positions.get(&tp).copied();
                if current.is_none() || current != asked.get(&tp).copied() {
                    // Sought, revoked or reset since it was asked.
                    continue;
                }
                match ResponseError::try_from_code(p.error_code) {
                    None => {}
                    Some(ResponseError::OffsetOutOfRange) => {
                        let offset = self.reset_offset(&topic, p.partition_index).await?;
                        self.fetch_positions.insert(tp, offset);
                        continue;
                    }
                    Some(e) if e.is_retriable() => {
                        let _ = self.cluster.refresh(std::slice::from_ref(&topic)).await;
                        continue;
                    }
                    Some(_) => return Err(Error::from_code(p.error_code, None)),
                }
                let Some(mut records) = p.records else {
                    continue;
                };
                let position = self.fetch_positions.get(&tp).copied().unwrap_or(0);
                let mut next = position;
                let mut filter = aborted::AbortFilter::new(
                    p.aborted_transactions
                        .iter()
                        .flatten()
                        .map(|a| (a.producer_id.0, a.first_offset))
                        .collect(),
                );
                while records.len() >= 61 {
                    // A trailing partial batch (cut by the size limit) is left for the next fetch.
                    let len =
                        i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
                    if len < 49 || records.len() < len as usize + 12 {
                        break;
                    }
                    let Ok(set) = RecordBatchDecoder::decode(&mut records) else {
                        break;
                    };
                    for r in set.records {
                        next = next.max(r.offset + 1);
                        if !filter.keep(&r) || r.offset < position {
                            continue;
                        }
                        self.buffer.push_back(ConsumerRecord {
                            topic: topic.clone(),
                            partition: p.partition_index,
                            offset: r.offset,
                            timestamp: r.timestamp,
                            key: r.key,
                            value: r.value,
                            headers: r
                                .headers
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect(),
                        });
                    }
                }
                self.fetch_positions.insert(tp, next);
            }
        }
        Ok(())
    }
}
