//! Fetching: one Fetch per leader for the assigned partitions, the record batches decoded
//! into the consumer's buffer (aborted transactions' records left out under read_committed).

use super::*;

impl Consumer {
    /// One Fetch per leader for the assigned partitions; appends what arrives to the buffer.
    pub(super) async fn fetch_once(&mut self, wait: Duration) -> Result<()> {
        // Never fetch a partition without a position (a failed look-up of its commit).
        self.init_positions().await?;
        // Fetch positions already point past buffered records, so every assigned partition can
        // be fetched again; the buffer stays bounded because poll_batch returns once it holds
        // `max_records`.
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for tp in &self.assignment {
            let leader = self.leader_of(&tp.0, tp.1).await?;
            by_leader.entry(leader).or_default().push(tp.clone());
        }
        if by_leader.is_empty() {
            tokio::time::sleep(wait.min(Duration::from_millis(10))).await;
            return Ok(());
        }
        for (leader, tps) in by_leader {
            let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
            for (t, p) in &tps {
                let offset = self
                    .fetch_positions
                    .get(&(t.clone(), *p))
                    .copied()
                    .unwrap_or(0);
                topics.entry(t.as_str()).or_default().push(
                    FetchPartition::default()
                        .with_partition(*p)
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
            let (response, _) = conn.request(&request, 12).await?;
            check(response.error_code)?;
            for t in response.responses {
                let topic = t.topic.0.to_string();
                for p in t.partitions {
                    let tp = (topic.clone(), p.partition_index);
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
        }
        Ok(())
    }
}
