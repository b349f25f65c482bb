//! `weir topics advise`: how many partitions a topic needs, by the classic rule
//!
//!     partitions = max(P / W, P / C) + headroom
//!
//! where P is the total produce rate, W what one partition takes, and C what one consumer
//! reads. W and C are measured on the cluster with short runs (a one-partition scratch topic,
//! written then read by `weir perf`'s producer and consumer) unless given as flags. Every
//! figure used is printed with the formula. With `--group` and `--topic`, a group with more
//! members than the topic has partitions is pointed out: its extra members sit idle.

use anyhow::{anyhow, bail, Result};
use clap::Args;
use weir_client::{AutoOffsetReset, NewTopic};

use crate::perf::{self, LoadArgs};
use crate::Connect;

#[derive(Debug, Args)]
pub(crate) struct AdviseArgs {
    #[command(flatten)]
    pub(crate) connect: Connect,
    /// The total rate the topic's producers will write, in MB/s.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) produce_rate: f64,
    /// What one consumer reads and processes per second, in MB/s [default: measured].
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) consume_rate: Option<f64>,
    /// What one partition takes per second, in MB/s [default: measured].
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) partition_write_rate: Option<f64>,
    /// Spare on top of the formula, as a fraction of it.
    #[arg(long, default_value_t = 0.25, allow_negative_numbers = true)]
    pub(crate) headroom: f64,
    /// Bytes per record of the measuring runs.
    #[arg(long, default_value_t = 1024)]
    pub(crate) record_size: usize,
    /// Records per measuring run.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) measure_records: u64,
    /// acks of the measuring produce run (all, 1 or 0).
    #[arg(long, default_value = "all")]
    pub(crate) acks: String,
    /// A consumer group to check against --topic.
    #[arg(long, requires = "topic")]
    pub(crate) group: Option<String>,
    /// An existing topic to compare with the advice.
    #[arg(long)]
    pub(crate) topic: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A rate and where it came from.
#[derive(Debug, Clone, Copy)]
struct Rate {
    mb_per_sec: f64,
    measured: bool,
}

/// The advice, from the figures: (by writes, by reads, recommended partitions).
pub(crate) fn recommend(produce: f64, write: f64, read: f64, headroom: f64) -> (f64, f64, u64) {
    let by_writes = produce / write;
    let by_reads = produce / read;
    let need = by_writes.max(by_reads) * (1.0 + headroom);
    (by_writes, by_reads, (need.ceil() as u64).max(1))
}

fn positive(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("--{name} must be a positive number of MB/s, not {v}");
    }
    Ok(())
}

/// Writes then reads a scratch topic of one partition: (write MB/s, read MB/s).
async fn measure(args: &AdviseArgs) -> Result<(f64, f64)> {
    let admin = args.connect.admin().await?;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    let topic = format!("weir-advise-{nonce:08x}");
    admin
        .create_topics(
            &[NewTopic {
                name: topic.clone(),
                partitions: 1,
                replication_factor: -1,
                configs: vec![],
            }],
            false,
        )
        .await?
        .pop()
        .ok_or_else(|| anyhow!("no answer to creating {topic}"))?
        .map_err(|e| anyhow!("cannot create the scratch topic {topic}: {e}"))?;
    let load = LoadArgs {
        connect: args.connect.clone(),
        topic: topic.clone(),
        num_records: Some(args.measure_records),
        throughput: -1,
        warmup_records: 0,
        record_size: args.record_size,
        acks: args.acks.clone(),
        compression: "none".into(),
        linger_ms: 5,
        batch_size: 65536,
        json: true,
        transactional_id: None,
        transaction_duration_ms: None,
        records_per_transaction: None,
        isolation_level: "read_uncommitted".into(),
        producers: 1,
        consumers: 1,
        chart: None,
        producer_props: Vec::new(),
    };
    let measured = async {
        let (n, took, _) = perf::run_produce(&load, false, None).await?;
        let write = n as f64 * args.record_size as f64 / took.as_secs_f64().max(1e-9) / 1e6;
        let consumers = perf::open_consumers(&load, AutoOffsetReset::Earliest).await?;
        let (n, took, _) =
            perf::run_consume(&load, consumers, args.measure_records, false, None).await?;
        let read = n as f64 * args.record_size as f64 / took.as_secs_f64().max(1e-9) / 1e6;
        Ok::<_, anyhow::Error>((write, read))
    }
    .await;
    let _ = admin.delete_topics(std::slice::from_ref(&topic)).await;
    measured
}

pub(crate) async fn run(args: AdviseArgs) -> Result<()> {
    positive("produce-rate", args.produce_rate)?;
    if let Some(r) = args.consume_rate {
        positive("consume-rate", r)?;
    }
    if let Some(r) = args.partition_write_rate {
        positive("partition-write-rate", r)?;
    }
    if !(args.headroom.is_finite() && args.headroom >= 0.0) {
        bail!(
            "--headroom must be a fraction of at least 0, not {}",
            args.headroom
        );
    }
    if args.measure_records == 0 || args.record_size == 0 {
        bail!("--measure-records and --record-size must be at least 1");
    }
    let measured = if args.consume_rate.is_none() || args.partition_write_rate.is_none() {
        Some(measure(&args).await?)
    } else {
        None
    };
    let write = match (args.partition_write_rate, measured) {
        (Some(r), _) => Rate {
            mb_per_sec: r,
            measured: false,
        },
        (None, Some((w, _))) => Rate {
            mb_per_sec: w,
            measured: true,
        },
        (None, None) => bail!("no partition write rate"),
    };
    let read = match (args.consume_rate, measured) {
        (Some(r), _) => Rate {
            mb_per_sec: r,
            measured: false,
        },
        (None, Some((_, r))) => Rate {
            mb_per_sec: r,
            measured: true,
        },
        (None, None) => bail!("no consume rate"),
    };
    let (by_writes, by_reads, partitions) = recommend(
        args.produce_rate,
        write.mb_per_sec,
        read.mb_per_sec,
        args.headroom,
    );
    let mut notes = Vec::new();
    let mut current = None;
    if let Some(topic) = &args.topic {
        let admin = args.connect.admin().await?;
        let info = admin
            .describe_topic(topic)
            .await
            .map_err(|e| anyhow!("cannot describe topic '{topic}': {e}"))?;
        let have = info.partitions.len() as u64;
        current = Some(have);
        if have < partitions {
            notes.push(format!(
                "topic {topic} has {have} partitions, {partitions} recommended: `weir topics alter --topic {topic} --partitions {partitions}` (keyed records then move to other partitions)"
            ));
        }
        if let Some(group) = &args.group {
            let g = admin
                .describe_group(group)
                .await
                .map_err(|e| anyhow!("cannot describe group '{group}': {e}"))?;
            let members = g.members.len() as u64;
            if members > have {
                notes.push(format!(
                    "group {group} has {members} members but topic {topic} has {have} partitions: {} members sit idle (a partition has at most one consumer per group)",
                    members - have
                ));
            }
        }
    }
    let source = |r: Rate| if r.measured { "measured" } else { "given" };
    if args.json {
        let v = serde_json::json!({
            "produce_rate_mb_s": args.produce_rate,
            "partition_write_rate_mb_s": write.mb_per_sec,
            "partition_write_rate": source(write),
            "consume_rate_mb_s": read.mb_per_sec,
            "consume_rate": source(read),
            "by_writes": by_writes,
            "by_reads": by_reads,
            "headroom": args.headroom,
            "recommended_partitions": partitions,
            "current_partitions": current,
            "warnings": notes,
        });
        println!("{v}");
        return Ok(());
    }
    let (p, w, c) = (args.produce_rate, write.mb_per_sec, read.mb_per_sec);
    println!("P  total produce rate         {p:.2} MB/s (given)");
    println!(
        "W  one partition's write rate {w:.2} MB/s ({})",
        source(write)
    );
    println!(
        "C  one consumer's read rate   {c:.2} MB/s ({})",
        source(read)
    );
    if measured.is_some() {
        println!(
            "   measured with {} records of {} B on a one-partition scratch topic, acks={}",
            args.measure_records, args.record_size, args.acks
        );
    }
    println!("partitions = max(P / W, P / C) × (1 + headroom)");
    println!(
        "           = max({p:.2} / {w:.2}, {p:.2} / {c:.2}) × {:.2} = max({by_writes:.2}, {by_reads:.2}) × {:.2}",
        1.0 + args.headroom,
        1.0 + args.headroom
    );
    println!("recommended partitions: {partitions}");
    for n in &notes {
        println!("warning: {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slower_side_decides_and_headroom_rounds_up() {
        let (w, r, n) = recommend(300.0, 100.0, 60.0, 0.25);
        assert!((w - 3.0).abs() < 1e-9 && (r - 5.0).abs() < 1e-9);
        assert_eq!(n, 7); // ceil(5 × 1.25)
        assert_eq!(recommend(1.0, 100.0, 100.0, 0.0).2, 1);
    }
}
