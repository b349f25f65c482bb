//! Produce keyed records and wait for each acknowledgement.
//!
//!     cargo run -p weir-client --example producer -- 127.0.0.1:9092 demo

use weir_client::{Compression, Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), weir_client::Error> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());
    let mut config = ProducerConfig::new(&bootstrap);
    config.compression = Compression::Lz4;
    let producer = Producer::new(config).await?;
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let record = ProducerRecord::new(topic.clone(), format!("hello {i}"))
            .with_key(format!("user-{}", i % 3));
        deliveries.push(producer.send(record).await?);
    }
    for d in deliveries {
        let m = d.await?;
        println!("{}-{}@{}", m.topic, m.partition, m.offset);
    }
    producer.close().await;
    Ok(())
}
