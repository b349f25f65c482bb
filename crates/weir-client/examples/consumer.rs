//! Consume as a member of a group, in batches, committing after each batch.
//!
//!     cargo run -p weir-client --example consumer -- 127.0.0.1:9092 demo my-group

use std::time::Duration;

use weir_client::{AutoOffsetReset, Consumer, ConsumerConfig};

#[tokio::main]
async fn main() -> Result<(), weir_client::Error> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());
    let group = args.next().unwrap_or_else(|| "demo-group".into());
    let mut config = ConsumerConfig::new(&bootstrap).with_group(&group);
    config.auto_offset_reset = AutoOffsetReset::Earliest;
    config.enable_auto_commit = false;
    let mut consumer = Consumer::new(config).await?;
    consumer.subscribe(vec![topic]).await?;
    for _ in 0..10 {
        let batch = consumer.poll_batch(100, Duration::from_secs(1)).await?;
        for r in &batch {
            println!("{}-{}@{}: {:?}", r.topic, r.partition, r.offset, r.value);
        }
        consumer.commit().await?;
    }
    consumer.close().await
}
