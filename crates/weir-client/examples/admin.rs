//! Create a topic, describe it, and print the lag of a consumer group.
//!
//!     cargo run -p weir-client --example admin -- 127.0.0.1:9092 demo demo-group

use weir_client::{Admin, NewTopic};

#[tokio::main]
async fn main() -> Result<(), weir_client::Error> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());
    let group = args.next().unwrap_or_else(|| "demo-group".into());
    let admin = Admin::connect(&bootstrap).await?;
    let created = admin
        .create_topics(
            &[NewTopic {
                name: topic.clone(),
                partitions: 3,
                replication_factor: 1,
                configs: vec![],
            }],
            false,
        )
        .await?;
    println!(
        "create {topic}: {:?}",
        created[0].as_ref().map_err(|e| e.to_string())
    );
    let t = admin.describe_topic(&topic).await?;
    for p in &t.partitions {
        println!(
            "partition {} leader {} replicas {:?} isr {:?}",
            p.partition, p.leader, p.replicas, p.isr
        );
    }
    for lag in admin.group_lag(&group).await? {
        println!(
            "{}-{} committed {} end {} lag {}",
            lag.topic, lag.partition, lag.committed, lag.log_end_offset, lag.lag
        );
    }
    Ok(())
}
