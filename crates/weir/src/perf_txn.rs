//! `weir perf produce` in transactions (`--transactional-id`, `--transaction-duration-ms`,
//! `--records-per-transaction`, as kafka-producer-perf-test): records are sent inside
//! transactions committed by age or size; latency is send-to-acknowledgement, and the
//! throughput counts the commits' time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use weir_client::{ProducerRecord, TransactionalProducer};

use crate::perf::{bar, histogram, producer_config, LoadArgs};

pub(crate) async fn run(args: &LoadArgs) -> Result<(u64, Duration, Histogram<u64>)> {
    let config = producer_config(args, |config| {
        config.transactional_id = Some(
            args.transactional_id
                .clone()
                .unwrap_or_else(|| "performance-producer-default-transactional-id".into()),
        );
        Ok(())
    })?;
    let producer = TransactionalProducer::new(config)
        .await
        .map_err(|e| anyhow!("cannot start a transactional producer: {e}"))?;
    let per_txn = args.records_per_transaction.unwrap_or(u64::MAX).max(1);
    let max_age = args
        .transaction_duration_ms
        .map(Duration::from_millis)
        .unwrap_or(Duration::MAX);
    let pb = bar(args, args.records());
    let throttle = crate::perf::Throttle::new(args.throughput);
    let hist = Arc::new(std::sync::Mutex::new(histogram()?));
    let payload = vec![b'x'; args.record_size];
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut in_txn = 0u64;
    let mut opened = Instant::now();
    producer.begin_transaction()?;
    for i in 0..args.records() {
        if let Some(t) = &throttle {
            t.wait(i).await;
        }
        if in_txn >= per_txn || opened.elapsed() >= max_age {
            producer
                .commit_transaction()
                .await
                .map_err(|e| anyhow!("commit failed: {e}"))?;
            producer.begin_transaction()?;
            in_txn = 0;
            opened = Instant::now();
        }
        let sent = Instant::now();
        let fut = producer
            .send(ProducerRecord::new(args.topic.clone(), payload.clone()))
            .await
            .map_err(|e| anyhow!("produce failed: {e}"))?;
        in_txn += 1;
        let hist = hist.clone();
        let pb = pb.clone();
        tasks.push(tokio::spawn(async move {
            let r = fut.await;
            if r.is_ok() {
                let us = sent.elapsed().as_micros() as u64;
                let _ = hist
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(us.max(1));
            }
            pb.inc(1);
            r.map(|_| ())
        }));
    }
    producer
        .commit_transaction()
        .await
        .map_err(|e| anyhow!("commit failed: {e}"))?;
    let elapsed = start.elapsed();
    let mut failed = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    producer.close().await;
    pb.finish_and_clear();
    if failed > 0 {
        return Err(anyhow!("{failed} records were not acknowledged"));
    }
    let h = hist.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok((args.records(), elapsed, h))
}
