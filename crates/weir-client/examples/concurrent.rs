//! Process records concurrently and commit only behind records that are fully processed, so a
//! crash never skips a record (it may redeliver the ones still in progress).
//!
//!     cargo run -p weir-client --example concurrent -- 127.0.0.1:9092 demo workers

use std::time::Duration;

use weir_client::{AutoOffsetReset, Consumer, ConsumerConfig, OffsetTracker};

#[tokio::main]
async fn main() -> Result<(), weir_client::Error> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());
    let group = args.next().unwrap_or_else(|| "workers".into());
    let mut config = ConsumerConfig::new(&bootstrap).with_group(&group);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.enable_auto_commit = false;
    let mut consumer = Consumer::new(config).await?;
    consumer.subscribe(vec![topic]).await?;
    let tracker = OffsetTracker::new();
    for _ in 0..20 {
        let batch = consumer.poll_batch(100, Duration::from_millis(500)).await?;
        tracker.track(&batch);
        for r in batch {
            let tracker = tracker.clone();
            tokio::spawn(async move {
                // ... do the work for this record, in any order ...
                tracker.done(&r.topic, r.partition, r.offset);
            });
        }
        consumer.commit_offsets(&tracker.committable()).await?;
    }
    consumer.close().await
}
