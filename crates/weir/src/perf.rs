//! `weir perf`: load generators. Throughput in records/s and MB/s, latency percentiles from an
//! HDR histogram (p50, p99, p99.9, max), a progress bar, and `--json` for scripts. Several
//! producers (`--producers`) share the records and the rate; several consumers (`--consumers`)
//! share the topic's partitions; `--chart` draws the run over time (`perf_chart.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use weir_client::{
    AutoOffsetReset, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
};

use crate::perf_chart::{SharedTimeline, Timeline};
use crate::produce::{parse_acks, parse_compression};
use crate::Connect;

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    pub(crate) connect: Connect,
    #[arg(long)]
    pub(crate) topic: String,
    /// Records to produce (default 100000); for consume, records to read (default: the topic
    /// up to its end when the run starts).
    #[arg(long)]
    pub(crate) num_records: Option<u64>,
    /// Produce at most this many records per second (Kafka's perf-test flag; -1: as fast as
    /// acknowledgements allow). Latency at a fixed rate is what OMB-style runs compare.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub(crate) throughput: i64,
    /// Records sent first and left out of the figures (connections, metadata, caches warm).
    #[arg(long, default_value_t = 0)]
    pub(crate) warmup_records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    pub(crate) record_size: usize,
    #[arg(long, default_value = "all")]
    pub(crate) acks: String,
    #[arg(long, default_value = "none")]
    pub(crate) compression: String,
    #[arg(long, default_value_t = 5)]
    pub(crate) linger_ms: u64,
    #[arg(long, default_value_t = 65536)]
    pub(crate) batch_size: usize,
    /// Print one JSON object instead of text, and no progress bar.
    #[arg(long)]
    pub(crate) json: bool,
    /// Produce in transactions with this transactional id (as kafka-producer-perf-test);
    /// `--transaction-duration-ms` or `--records-per-transaction` set when to commit.
    #[arg(long)]
    pub(crate) transactional_id: Option<String>,
    /// Commit the open transaction once it is this old (Kafka's perf-test flag).
    #[arg(long)]
    pub(crate) transaction_duration_ms: Option<u64>,
    /// Commit the open transaction after this many records.
    #[arg(long)]
    pub(crate) records_per_transaction: Option<u64>,
    /// read_committed or read_uncommitted, for consume and e2e.
    #[arg(long, default_value = "read_uncommitted")]
    pub(crate) isolation_level: String,
    /// Producers (produce, e2e), each a client of its own sending its share of the records
    /// and of the rate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) producers: u64,
    /// Consumers (consume, e2e), each a client of its own reading its share of the partitions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) consumers: u64,
    /// Draw records per second and latency (p50, p99) per second over the run, warm-up
    /// included, to this SVG file.
    #[arg(long)]
    pub(crate) chart: Option<PathBuf>,
    /// Kafka producer settings as key=value (Kafka's perf-test flag), applied after the flags
    /// above: buffer.memory, max.in.flight.requests.per.connection, enable.idempotence, ...
    #[arg(long = "producer-props", num_args = 1..)]
    pub(crate) producer_props: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PerfCommand {
    /// Produce records as fast as acknowledgements allow; latency is send-to-acknowledgement.
    Produce(LoadArgs),
    /// Read a topic from the beginning; throughput only.
    Consume(LoadArgs),
    /// Produce and consume at once; latency is produce-to-consume, from timestamps in the records.
    E2e(LoadArgs),
}

impl LoadArgs {
    /// Records to produce.
    pub(crate) fn records(&self) -> u64 {
        self.num_records.unwrap_or(100_000)
    }
}

/// Holds a producer to `--throughput`: the i-th record is not sent before start + i/rate.
/// Sleeps only when ahead by a millisecond or more, so a high rate costs no timer per record.
pub(crate) struct Throttle {
    start: Instant,
    per_sec: f64,
}

impl Throttle {
    pub(crate) fn new(per_sec: i64) -> Option<Throttle> {
        (per_sec > 0).then(|| Throttle {
            start: Instant::now(),
            per_sec: per_sec as f64,
        })
    }

    pub(crate) async fn wait(&self, sent: u64) {
        let due = self.start + Duration::from_secs_f64(sent as f64 / self.per_sec);
        if due > Instant::now() + Duration::from_millis(1) {
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

pub(crate) fn bar(args: &LoadArgs, total: u64) -> ProgressBar {
    if args.json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} records {per_sec} eta {eta}")
    {
        pb.set_style(style);
    }
    pb
}

fn report(
    kind: &str,
    args: &LoadArgs,
    count: u64,
    elapsed: Duration,
    latency: Option<&Histogram<u64>>,
) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rps = count as f64 / secs;
    let mbps = count as f64 * args.record_size as f64 / secs / 1e6;
    let lat = latency.filter(|h| !h.is_empty()).map(|h| {
        (
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.value_at_quantile(0.999) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
        )
    });
    if args.json {
        let mut v = serde_json::json!({
            "test": kind, "records": count, "record_size": args.record_size, "seconds": secs,
            "records_per_sec": rps, "mb_per_sec": mbps, "acks": args.acks, "compression": args.compression,
        });
        if let Some((p50, p99, p999, max)) = lat {
            v["latency_ms"] =
                serde_json::json!({"p50": p50, "p99": p99, "p99_9": p999, "max": max});
        }
        println!("{v}");
    } else {
        println!("{kind}: {count} records in {secs:.2} s: {rps:.0} records/s, {mbps:.2} MB/s");
        if let Some((p50, p99, p999, max)) = lat {
            println!("latency ms: p50 {p50:.2}, p99 {p99:.2}, p99.9 {p999:.2}, max {max:.2}");
        }
    }
}

/// A run's producer settings: the flags, what `extra` sets, then `--producer-props` (which also
/// decide idempotence).
pub(crate) fn producer_config(
    args: &LoadArgs,
    extra: impl FnOnce(&mut ProducerConfig) -> Result<()>,
) -> Result<ProducerConfig> {
    let mut config = ProducerConfig::new(&args.connect.bootstrap_server);
    config.client = args.connect.client()?;
    config.client.retries = u32::MAX;
    config.compression = parse_compression(&args.compression)?;
    config.linger = Duration::from_millis(args.linger_ms);
    config.batch_size = args.batch_size;
    extra(&mut config)?;
    crate::produce::apply_producer_properties(
        &mut config,
        &args.producer_props,
        "--producer-props",
    )?;
    Ok(config)
}

async fn producer(args: &LoadArgs) -> Result<Producer> {
    let config = producer_config(args, |config| {
        config.acks = parse_acks(&args.acks)?;
        Ok(())
    })?;
    Producer::new(config)
        .await
        .map_err(|e| crate::produce::start_failure(&args.connect.bootstrap_server, e))
}

pub(crate) fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| anyhow!("histogram: {e}"))
}

pub(crate) async fn run_produce(
    args: &LoadArgs,
    value_prefix_time: bool,
    timeline: Option<SharedTimeline>,
) -> Result<(u64, Duration, Histogram<u64>)> {
    if args.transactional_id.is_some()
        || args.transaction_duration_ms.is_some()
        || args.records_per_transaction.is_some()
    {
        return crate::perf_txn::run(args).await;
    }
    let (n, total) = (args.producers, args.records());
    let warmup = args.warmup_records.min(total);
    let pb = bar(args, total);
    let mut tasks = Vec::new();
    for i in 0..n {
        // Producer i sends its share of the records, the warm-up and the rate.
        let share = |x: u64| x / n + u64::from(i < x % n);
        let rate = if args.throughput > 0 {
            (share(args.throughput as u64).max(1)) as i64
        } else {
            -1
        };
        let part = Part {
            records: share(total),
            warmup: share(warmup),
            rate,
        };
        let (a, pb, tl) = (clone_args(args), pb.clone(), timeline.clone());
        tasks.push(tokio::spawn(async move {
            produce_one(&a, part, value_prefix_time, &pb, tl).await
        }));
    }
    let mut hist = histogram()?;
    let (mut count, mut elapsed) = (0, Duration::ZERO);
    for t in tasks {
        let (c, e, h) = t.await.map_err(|e| anyhow!("{e}"))??;
        count += c;
        elapsed = elapsed.max(e);
        hist.add(&h).map_err(|e| anyhow!("histogram: {e}"))?;
    }
    pb.finish_and_clear();
    Ok((count, elapsed, hist))
}

/// One producer's share of a run.
#[derive(Debug, Clone, Copy)]
struct Part {
    records: u64,
    warmup: u64,
    /// Records per second, -1 for as fast as acknowledgements allow.
    rate: i64,
}

async fn produce_one(
    args: &LoadArgs,
    part: Part,
    value_prefix_time: bool,
    pb: &ProgressBar,
    timeline: Option<SharedTimeline>,
) -> Result<(u64, Duration, Histogram<u64>)> {
    let producer = producer(args).await?;
    let (total, warmup) = (part.records, part.warmup);
    let throttle = Throttle::new(part.rate);
    let mut hist = histogram()?;
    let payload = bytes::Bytes::from(vec![b'x'; args.record_size]);
    let start = Instant::now();
    // Records sent and not yet acknowledged, oldest first (they are answered about in order):
    // reaped as they finish, without a task per record.
    // Each with its send time, and whether it counts (past the warm-up).
    type Waiting = std::collections::VecDeque<(Instant, bool, weir_client::DeliveryFuture)>;
    let mut waiting: Waiting = std::collections::VecDeque::new();
    let mut failed = 0u64;
    // `now`: when the acknowledgement was seen (read once per reaped run of records).
    let acked = |sent: Instant, now: Instant, counts: bool, hist: &mut Histogram<u64>| {
        let us = now.saturating_duration_since(sent).as_micros() as u64;
        if counts {
            let _ = hist.record(us.max(1));
        }
        if let Some(tl) = &timeline {
            let mut tl = tl.lock().unwrap_or_else(|p| p.into_inner());
            tl.record(now, Some(us));
        }
    };
    let mut reap = |waiting: &mut Waiting, hist: &mut Histogram<u64>| {
        let mut done = 0;
        let now = Instant::now();
        while let Some((sent, counts, fut)) = waiting.front_mut() {
            let Some(result) = fut.try_take() else { break };
            match result {
                Ok(_) => acked(*sent, now, *counts, hist),
                Err(_) => failed += 1,
            }
            waiting.pop_front();
            done += 1;
        }
        pb.inc(done);
    };
    let mut start = start;
    let mut sent = Instant::now();
    for i in 0..total {
        if i == warmup {
            start = Instant::now();
        }
        if let Some(t) = &throttle {
            t.wait(i).await;
            sent = Instant::now();
        }
        let value = if value_prefix_time {
            let mut value = payload.to_vec();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0);
            let stamp = now.to_be_bytes();
            let n = stamp.len().min(value.len());
            value[..n].copy_from_slice(&stamp[..n]);
            bytes::Bytes::from(value)
        } else {
            payload.clone()
        };
        // The send time, read every few records (a clock read costs as much as a send) unless
        // the rate is held, when it was just read.
        if throttle.is_none() && i % 8 == 0 {
            sent = Instant::now();
        }
        let fut = producer
            .send(ProducerRecord::new(args.topic.clone(), value))
            .await
            .map_err(|e| anyhow!("produce failed: {e}"))?;
        waiting.push_back((sent, i >= warmup, fut));
        if i % 256 == 255 {
            reap(&mut waiting, &mut hist);
        }
        if i % 10_000 == 9_999 {
            tokio::task::yield_now().await;
        }
    }
    while let Some((sent, counts, fut)) = waiting.pop_front() {
        match fut.await {
            Ok(_) => acked(sent, Instant::now(), counts, &mut hist),
            Err(_) => failed += 1,
        }
        pb.inc(1);
    }
    let elapsed = start.elapsed();
    producer.close().await;
    if failed > 0 {
        return Err(anyhow!("{failed} records were not acknowledged"));
    }
    Ok((total - warmup, elapsed, hist))
}

/// `--consumers` consumers sharing the topic's partitions (round robin), positioned by
/// `reset`; more consumers than partitions leaves the extra ones out.
pub(crate) async fn open_consumers(
    args: &LoadArgs,
    reset: AutoOffsetReset,
) -> Result<Vec<Consumer>> {
    let admin = args.connect.admin().await?;
    let info = admin
        .describe_topic(&args.topic)
        .await
        .map_err(|e| anyhow!("cannot read topic '{}': {e}", args.topic))?;
    let n = args.consumers.min(info.partitions.len().max(1) as u64) as usize;
    let mut shares: Vec<Vec<(String, i32)>> = vec![Vec::new(); n];
    for (i, p) in info.partitions.iter().enumerate() {
        shares[i % n].push((args.topic.clone(), p.partition));
    }
    let mut consumers = Vec::with_capacity(n);
    for share in shares {
        let mut config = ConsumerConfig::new(&args.connect.bootstrap_server);
        config.client = args.connect.client()?;
        config.auto_offset_reset = reset;
        config.enable_auto_commit = false;
        config.read_committed = crate::consume::parse_isolation(&args.isolation_level)?;
        let mut consumer = Consumer::new(config).await?;
        consumer.assign(share).await?;
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// How many records a consume run reads: `--num-records`, or what the topic holds now.
async fn records_in_topic(args: &LoadArgs) -> Result<u64> {
    if let Some(n) = args.num_records {
        return Ok(n);
    }
    let admin = args.connect.admin().await?;
    let offsets = |spec| {
        let admin = &admin;
        async move {
            admin
                .list_offsets(&args.topic, spec)
                .await
                .map_err(|e| anyhow!("cannot read the offsets of '{}': {e}", args.topic))
        }
    };
    let earliest = offsets(weir_client::OffsetSpec::Earliest).await?;
    let latest = offsets(weir_client::OffsetSpec::Latest).await?;
    Ok(latest
        .iter()
        .map(|(p, (end, _))| {
            let start = earliest.get(p).map_or(0, |(o, _)| *o);
            (end - start).max(0) as u64
        })
        .sum())
}

/// Reads with every consumer until `target` records came in together (or nothing came for
/// 30 s); with `e2e`, each record's produce-to-consume latency from its value's first 8 bytes.
pub(crate) async fn run_consume(
    args: &LoadArgs,
    consumers: Vec<Consumer>,
    target: u64,
    e2e: bool,
    timeline: Option<SharedTimeline>,
) -> Result<(u64, Duration, Histogram<u64>)> {
    let pb = bar(args, target);
    let start = Instant::now();
    let got = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut consumer in consumers {
        let (got, pb, tl) = (got.clone(), pb.clone(), timeline.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram()?;
            let mut idle = Instant::now();
            while got.load(Ordering::Relaxed) < target && idle.elapsed() < Duration::from_secs(30) {
                // For latency, records go out as soon as any are in; for throughput, in big
                // batches.
                let wait = if e2e { 2 } else { 500 };
                let batch = consumer
                    .poll_batch(10_000, Duration::from_millis(wait))
                    .await?;
                if !batch.is_empty() {
                    idle = Instant::now();
                }
                let now_us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(0);
                let mut tl = tl
                    .as_ref()
                    .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()));
                let at = Instant::now();
                for r in &batch {
                    let latency = r.value.as_ref().filter(|v| e2e && v.len() >= 8).map(|v| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&v[..8]);
                        now_us.saturating_sub(u64::from_be_bytes(b)).max(1)
                    });
                    if let Some(us) = latency {
                        let _ = hist.record(us);
                    }
                    if let Some(tl) = tl.as_deref_mut() {
                        tl.record(at, latency);
                    }
                }
                drop(tl);
                got.fetch_add(batch.len() as u64, Ordering::Relaxed);
                pb.inc(batch.len() as u64);
            }
            consumer.close().await?;
            Ok::<_, anyhow::Error>(hist)
        }));
    }
    let mut hist = histogram()?;
    for t in tasks {
        let h = t.await.map_err(|e| anyhow!("{e}"))??;
        hist.add(&h).map_err(|e| anyhow!("histogram: {e}"))?;
    }
    pb.finish_and_clear();
    Ok((got.load(Ordering::Relaxed), start.elapsed(), hist))
}

/// Writes the chart if `--chart` asked for one.
fn chart(args: &LoadArgs, kind: &str, timeline: Option<SharedTimeline>) -> Result<()> {
    let (Some(path), Some(tl)) = (&args.chart, timeline) else {
        return Ok(());
    };
    let tl = tl.lock().unwrap_or_else(|p| p.into_inner());
    tl.draw(path, &format!("weir perf {kind} ({})", args.topic))?;
    if !args.json {
        println!("chart: {}", path.display());
    }
    Ok(())
}

pub(crate) async fn run(cmd: PerfCommand) -> Result<()> {
    match cmd {
        PerfCommand::Produce(args) => {
            let timeline = args.chart.as_ref().map(|_| Timeline::shared());
            let (n, elapsed, hist) = run_produce(&args, false, timeline.clone()).await?;
            report("produce", &args, n, elapsed, Some(&hist));
            chart(&args, "produce", timeline)?;
        }
        PerfCommand::Consume(args) => {
            let target = records_in_topic(&args).await?;
            let consumers = open_consumers(&args, AutoOffsetReset::Earliest).await?;
            let timeline = args.chart.as_ref().map(|_| Timeline::shared());
            let (n, elapsed, _) =
                run_consume(&args, consumers, target, false, timeline.clone()).await?;
            report("consume", &args, n, elapsed, None);
            chart(&args, "consume", timeline)?;
        }
        PerfCommand::E2e(args) => {
            if args.record_size < 8 {
                return Err(anyhow!(
                    "--record-size must be at least 8 for end-to-end latency"
                ));
            }
            // Positioned at the end before producing starts, so only this run's records count.
            let consumers = open_consumers(&args, AutoOffsetReset::Latest).await?;
            let produce_args = LoadArgs {
                json: true,
                ..clone_args(&args)
            };
            let producing =
                tokio::spawn(
                    async move { run_produce(&produce_args, true, None).await.map(|_| ()) },
                );
            let timeline = args.chart.as_ref().map(|_| Timeline::shared());
            let (n, elapsed, hist) =
                run_consume(&args, consumers, args.records(), true, timeline.clone()).await?;
            producing.await.map_err(|e| anyhow!("{e}"))??;
            report("e2e", &args, n, elapsed, Some(&hist));
            chart(&args, "e2e", timeline)?;
        }
    }
    Ok(())
}

fn clone_args(a: &LoadArgs) -> LoadArgs {
    LoadArgs {
        connect: a.connect.clone(),
        topic: a.topic.clone(),
        num_records: a.num_records,
        throughput: a.throughput,
        warmup_records: a.warmup_records,
        record_size: a.record_size,
        acks: a.acks.clone(),
        compression: a.compression.clone(),
        linger_ms: a.linger_ms,
        batch_size: a.batch_size,
        json: a.json,
        transactional_id: a.transactional_id.clone(),
        transaction_duration_ms: a.transaction_duration_ms,
        records_per_transaction: a.records_per_transaction,
        isolation_level: a.isolation_level.clone(),
        producers: a.producers,
        consumers: a.consumers,
        chart: a.chart.clone(),
        producer_props: a.producer_props.clone(),
    }
}
